"""The Ollama Modelfile beside a GGUF export: FROM the file, its stop token, chat_ko.py's sampling defaults, and a Go
template (Ollama's TEMPLATE) written from the run's template: for a `Template` (KoAlpaca form) from its fields; for
a `ChatTemplate` (the tokenizer's Jinja) from the role markers it writes, found by rendering probe conversations and
accepted only when the Go form renders those conversations exactly as the Jinja does. Either way it iterates
Ollama's `.Messages`, so a conversation arrives as training saw it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..prompts import TURN_SEPARATOR, ChatTemplate, Template
from ..runs import write_text

MODELFILE_MARK = "Written by kochat's export_ko.py"  # export_ko.py --overwrite replaces only folders so marked


@dataclass(frozen=True)
class ChatForm:
    """A chat template as fixed text around each message: begin, then each message as prefix + content + suffix
    of its role, then the generation prompt. What an Ollama Go template can say without Jinja's logic."""
    begin: str
    around: dict  # role -> (prefix, suffix)
    generation: str

    def render(self, messages: list[dict]) -> str:
        return self.begin + "".join(self.around[m["role"]][0] + m["content"] + self.around[m["role"]][1]
                                    for m in messages) + self.generation

    @classmethod
    def of(cls, template: ChatTemplate) -> "ChatForm":
        """The form of a chat template, read from renders of probe conversations, and checked: it must render
        each probe exactly as the template does, else one line (the GGUF needs a hand-written TEMPLATE then)."""
        def render(messages, generation=True):
            return template.render([{"role": r, "content": c} for r, c in messages], add_generation_prompt=generation)

        try:
            asked = render([("user", "질문1")], generation=False)
            generation = render([("user", "질문1")])[len(asked):]
            turns = render([("user", "질문1"), ("assistant", "답1"), ("user", "질문2")], generation=False)
            head, user_suffix = asked.split("질문1")
            between, after_answer = turns.split("질문1", 1)[1].split("답1")
            after_answer = after_answer.split("질문2")[0]
            user_prefix = common_suffix(head, after_answer)
            begin = head[:len(head) - len(user_prefix)]
            answer_suffix = after_answer[:len(after_answer) - len(user_prefix)]
            around = {"user": (user_prefix, user_suffix),
                      "assistant": (between[len(user_suffix):], answer_suffix)}
            try:
                with_system = render([("system", "지시1"), ("user", "질문1")], generation=False)
            except ValueError:
                with_system = None  # a template that takes no system message: Ollama's is left out
            if with_system is not None:
                if not with_system.startswith(begin):
                    raise ValueError("it writes a conversation with a system message from another beginning")
                system_prefix, rest = with_system[len(begin):].split("지시1")
                around["system"] = (system_prefix, rest[:len(rest) - len(user_prefix + "질문1" + user_suffix)])
            form = cls(begin, around, generation)
            probes = [[("user", "안녕하세요?")],
                      [("user", "첫 질문"), ("assistant", "첫 대답"), ("user", "두 번째 질문")],
                      [("system", "친절하게 답하세요."), ("user", "질문"), ("assistant", "대답"), ("user", "다음 질문")]]
            for probe in probes:
                if "system" not in around and probe[0][0] == "system":
                    continue
                messages = [{"role": r, "content": c} for r, c in probe]
                if form.render(messages) != template.render(messages):
                    raise ValueError(f"the form renders {probe} differently")
        except ValueError as e:
            raise UserError(f"the chat template cannot be written as an Ollama TEMPLATE ({e}); export the GGUF with "
                            f"--template=koalpaca training, or write the Modelfile's TEMPLATE by hand") from None
        return form


def common_suffix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return a[len(a) - n:]


def go_text(text: str, trim: bool = False) -> str:
    """Literal text in a Go template, as a raw-string action (no escapes, newlines kept); "" for none. trim: the
    action also trims the template's own line break before it ({{- … }})."""
    if not text:
        return ""
    if "`" in text:
        raise UserError(f"the template text {text!r} holds a backquote, which an Ollama TEMPLATE cannot quote")
    return ("{{- `" if trim else "{{ `") + text + "` }}"


def modelfile_template(template) -> str:
    """The Go template (Ollama's TEMPLATE) that renders Ollama's messages as `template.chat(messages)` does, for
    conversations of alternating user and assistant messages after at most one system message. Ollama passes the
    system text as .System (several system messages joined by a blank line, where kochat joins them by a line
    break) and merges consecutive messages of one role; kochat's Template also strips each message, which Go cannot."""
    if isinstance(template, Template):
        prefix, suffix, before, after = template.pieces()
        system = ("{{- if .System }}", "{{ .System }}" + go_text(TURN_SEPARATOR) + "{{ end }}")
        user = (go_text(TURN_SEPARATOR).join(["{{ if $started }}", "{{ end }}"]) + go_text(prefix) + "{{ .Content }}"
                + go_text(suffix) + "{{ $started = true }}{{ $asked = true }}")
        assistant = go_text(before) + "{{ .Content }}" + go_text(after + template.end_of_turn) + "{{ $asked = false }}"
        lines = ["{{- $started := false }}{{- $asked := false }}", go_text(template.begin, trim=True),
                 "".join(system),
                 "{{- range .Messages }}",
                 '{{- if eq .Role "user" }}' + user,
                 '{{- else if and (eq .Role "assistant") $asked }}' + assistant,
                 "{{- end }}{{ end }}"]
    else:
        form = ChatForm.of(template)
        lines = [go_text(form.begin, trim=True)]
        if "system" in form.around:
            prefix, suffix = form.around["system"]
            lines.append("{{- if .System }}" + go_text(prefix) + "{{ .System }}" + go_text(suffix) + "{{ end }}")
        lines.append("{{- range .Messages }}")
        for i, role in enumerate(("user", "assistant")):
            prefix, suffix = form.around[role]
            lines.append(f'{{{{- {"else " if i else ""}if eq .Role "{role}" }}}}' + go_text(prefix) + "{{ .Content }}"
                         + go_text(suffix))
        lines += ["{{- end }}{{ end }}", go_text(form.generation, trim=True)]
    return "\n".join(line for line in lines if line)


def write_modelfile(gguf_file: Path, template, tokenizer, out_folder: Path, licence: str = "") -> Path:
    """An Ollama Modelfile next to the GGUF: FROM it, the TEMPLATE above, its end of turn as the stop token,
    chat_ko.py's sampling defaults with no repeat penalty (gen() applies none), and `licence` (the export's card,
    which `ollama show --license` prints). `ollama create NAME -f Modelfile`."""
    import gguf

    gguf_file, out_folder = Path(gguf_file), Path(out_folder)
    reader = gguf.GGUFReader(gguf_file)
    arch = reader.get_field("general.architecture").contents()
    context = reader.get_field(f"{arch}.context_length").contents()
    source = f"./{gguf_file.name}" if gguf_file.parent.resolve() == out_folder.resolve() else str(gguf_file.resolve())
    body = modelfile_template(template)
    stop = template.end_of_turn or tokenizer.eos_token
    if '"""' in body or '"' in stop:
        raise UserError("the template's text holds quotation marks an Ollama Modelfile cannot carry")
    licence = licence.strip().replace('"""', '"')  # a quoted block cannot hold its own closing quotes
    text = "\n".join([
        f"# Ollama: ollama create NAME -f Modelfile, then ollama run NAME. {MODELFILE_MARK}.",
        f"FROM {source}",
        f'TEMPLATE """{body}"""',
        f'PARAMETER stop "{stop}"',
        "PARAMETER temperature 0.7",
        "PARAMETER top_p 0.9",
        "PARAMETER repeat_penalty 1.0",
        f"PARAMETER num_ctx {context}",
        "PARAMETER num_predict 256",
        *([f'LICENSE """{licence}"""'] if licence else []),
        ""])
    path = out_folder / "Modelfile"
    write_text(path, text)
    return path
