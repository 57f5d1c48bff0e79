"""Prompt templates, and the one renderer used by training, chat, serving and the demo.

Two kinds, one interface (`render`, `prompt`, `chat`, `end_of_turn`, `to_dict`):
- `Template`: a template as data (prompts/*.json), KoAlpaca's "### 질문: …\n\n### 답변: …" by default.
  `prompt_input` / `prompt_no_input` hold the question (with or without a row's input), `response` how the
  answer follows (" {output}"), `response_split` the marker that ends the prompt. Each answer ends with the
  tokenizer's end of text.
- `ChatTemplate`: the tokenizer's own chat template (instruct models: Qwen, Llama 3, Gemma, EXAONE, …), run by
  transformers' `apply_chat_template`. Each answer ends with the template's end-of-turn token, found once by
  rendering a probe conversation.
`load_template("auto", tokenizer)` picks the tokenizer's chat template when it has one, else koalpaca.
Training takes each answer's span from renders of the conversation's prefixes (kochat/conversations.py);
generation feeds `chat(...)`, the same text up to where the answer starts, so the model sees the same tokens.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import PROJECT_ROOT
from .cli import flag
from .errors import UserError

TEMPLATE_DIR = PROJECT_ROOT / "prompts"  # next to the code, never relative to the working directory
FIELDS = ("prompt_input", "prompt_no_input", "response", "response_split")
TURN_SEPARATOR = "\n\n"  # between an earlier answer and the next question in a conversation
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = "chat_template"  # the name a run saved with the tokenizer's chat template goes by
SLOT = "\x00slot\x00"  # stands for a question or answer while a template's fixed text is cut around it


def check_messages(messages: list[dict]) -> None:
    """A conversation to answer: messages with a known role and text content, the last one the user's.
    Raises ValueError (the server answers 400 with it)."""
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError("each message needs a role (system, user or assistant) and text content")
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("the last message must be the user's")


class Conversing:
    """What both kinds share: a single question and a conversation to answer, rendered by `render`."""

    def prompt(self, instruction: str, input: str = "") -> str:
        """The text the model is given for one question: everything up to where its answer starts."""
        return self.render([{"role": "user", "content": instruction, "context": input}], add_generation_prompt=True)

    def chat(self, messages: list[dict]) -> str:
        """A conversation ([{"role", "content"}], OpenAI style) as the text to answer its last user message:
        earlier answers as training saw them, each ended by `end_of_turn`. The last message may carry a
        "context" (retrieved passages, a row's input): it goes in as that question's input.
        Raises ValueError for a conversation that does not end with the user's message."""
        check_messages(messages)
        return self.render(messages, add_generation_prompt=True)


@dataclass(frozen=True)
class Template(Conversing):
    name: str
    description: str
    prompt_input: str
    prompt_no_input: str
    response: str
    response_split: str
    end_of_turn: str = ""  # the tokenizer's end of text, written after each answer (set by for_tokenizer)
    begin: str = ""        # the tokenizer's BOS text, where the tokenizer would add one itself (Llama, Gemma)

    @classmethod
    def load(cls, name_or_path: str) -> "Template":
        """A template by name (a file in prompts/) or by path to a .json file."""
        path = Path(name_or_path)
        if path.suffix != ".json":
            path = TEMPLATE_DIR / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(["auto", CHAT_TEMPLATE, *sorted(p.stem for p in TEMPLATE_DIR.glob("*.json"))])
            raise UserError(f"template {name_or_path!r} not found; use one of {known} or a path to a .json file")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"template {path} is not valid UTF-8 JSON: {e}") from None
        return cls.from_dict(spec, name=str(spec.get("name") or path.stem), where=str(path))

    @classmethod
    def from_dict(cls, spec: dict, name: str, where: str = "template") -> "Template":
        missing = [f for f in FIELDS if not isinstance(spec.get(f), str)]
        if missing:
            raise UserError(f"{where} lacks text fields: {', '.join(missing)} (see prompts/koalpaca.json)")
        t = cls(name=name, description=str(spec.get("description", "")), **{f: spec[f] for f in FIELDS})
        problems = []
        if "{instruction}" not in t.prompt_no_input or "{instruction}" not in t.prompt_input:
            problems.append("both prompts need {instruction}")
        if "{input}" not in t.prompt_input:
            problems.append("prompt_input needs {input}")
        if "{output}" not in t.response:
            problems.append("response needs {output}")
        if not t.response_split or t.response_split not in t.prompt_no_input.split("{instruction}")[-1]:
            problems.append("response_split must appear in prompt_no_input after {instruction}")
        for text, where_in, name in ((t.prompt_no_input, "prompt_no_input", "instruction"),
                                     (t.response, "response", "output")):
            try:
                if f"{{{name}}}" in text and text.format(**{name: SLOT}).count(SLOT) != 1:
                    problems.append(f"{where_in} must hold {{{name}}} once")
            except (KeyError, IndexError, ValueError):
                problems.append(f"{where_in} holds braces other than {{{name}}}: write a literal brace as {{{{ or }}}}")
        if problems:
            raise UserError(f"{where}: " + "; ".join(problems))
        return t

    def for_tokenizer(self, tokenizer) -> "Template":
        """This template ending answers with the tokenizer's end of text, and starting with its BOS text
        where the tokenizer adds one itself (polyglot-ko's adds none)."""
        ids = tokenizer("가", add_special_tokens=True)["input_ids"]
        bos = tokenizer.bos_token if tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id] else ""
        return replace(self, end_of_turn=tokenizer.eos_token, begin=bos or "")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("end_of_turn", "begin")}

    def pieces(self) -> tuple[str, str, str, str]:
        """The fixed text around a question and around an answer, as rendered (literal {{ }} as { }):
        (before the question, after it, before the answer, after it)."""
        question = self.prompt_no_input.format(instruction=SLOT).split(SLOT)
        answer = self.response.format(output=SLOT).split(SLOT)
        return question[0], question[1], answer[0], answer[1]

    def answer(self, output: str) -> str:
        """The text the model learns to write after the prompt, before its end of text."""
        return self.response.format(output=output)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """A conversation in this template: system text first, then each question as a prompt and each answer
        followed by the end of text; turns apart by TURN_SEPARATOR. A question's prompt already ends with
        the answer marker, so add_generation_prompt changes nothing. Two user messages in a row: the first
        goes unanswered; an assistant message with no question before it is left out."""
        system = "\n".join(m["content"].strip() for m in messages if m["role"] == "system")
        text, started, asked = self.begin + (system + TURN_SEPARATOR if system else ""), False, False
        for m in messages:
            if m["role"] == "user":
                question, extra = m["content"].strip(), (m.get("context") or "").strip()
                text += (TURN_SEPARATOR if started else "") + (
                    self.prompt_input.format(instruction=question, input=extra) if extra
                    else self.prompt_no_input.format(instruction=question))
                started = asked = True
            elif m["role"] == "assistant" and asked:
                text += self.answer(m["content"].strip()) + self.end_of_turn
                asked = False
        return text

    def rendered_row(self, text: str) -> list[tuple[str, bool]] | None:
        """A row already rendered in this form (a text column) as [(prompt, False), (answer and end of text,
        True)], the pieces kochat.conversations makes of a conversation; None if the marker is missing."""
        parts = self.split(text, self.end_of_turn)
        return None if parts is None else [(self.begin + parts[0], False), (parts[1] + self.end_of_turn, True)]

    def split(self, text: str, end_of_text: str) -> tuple[str, str] | None:
        """Split a row already rendered in this template's form into (prompt, answer), as strings.

        The prompt ends exactly as `prompt(...)` ends (marker plus what the template puts after it),
        and a trailing end-of-text string is removed from the answer. None if the marker is missing.
        """
        head, marker, tail = text.partition(self.response_split)
        if not marker:
            return None
        after_marker = self.prompt_no_input.rsplit(self.response_split, 1)[1]  # "" or "\n"
        if after_marker and tail.startswith(after_marker):
            tail = tail[len(after_marker):]
        answer = tail.rstrip()
        if end_of_text and answer.endswith(end_of_text):
            answer = answer[: -len(end_of_text)].rstrip()
        return head + marker + after_marker, answer


class TemplateRefused(ValueError):
    """A conversation the model's chat template raised on: the message says why in the template's own words (a
    data report counts skipped rows by this whole line)."""


@dataclass(frozen=True)
class ChatTemplate(Conversing):
    """The tokenizer's own chat template (Jinja), run by transformers' apply_chat_template with thinking off
    (Qwen3: the empty <think></think> block is part of the prompt, so answers are trained and given without
    one). A message's "context" goes into its content after a blank line."""
    tokenizer: object = field(repr=False, compare=False)
    source: str = ""        # the Jinja text, as the tokenizer holds it
    end_of_turn: str = ""   # the special token the template writes right after an answer, e.g. <|im_end|>
    name: str = CHAT_TEMPLATE
    description: str = "the tokenizer's own chat template (saved with the tokenizer)"

    @classmethod
    def of(cls, tokenizer) -> "ChatTemplate":
        if not tokenizer.chat_template:
            raise UserError(f"the tokenizer has no chat template; use {flag('TEMPLATE', 'koalpaca')} "
                            f"(or auto, which picks koalpaca for it)")
        template = cls(tokenizer, str(tokenizer.chat_template))
        return replace(template, end_of_turn=template.find_end_of_turn())

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        plain = [{"role": m["role"], "content": m["content"] + (f"\n\n{m['context']}" if m.get("context") else "")}
                 for m in messages]
        try:
            return self.tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                      enable_thinking=False)
        except Exception as e:  # jinja2's TemplateError, or the template's own raise_exception(...)
            raise TemplateRefused(f"the model's chat template refused this conversation ({e})") from None

    def find_end_of_turn(self) -> str:
        """The first special token after the answer in a rendered probe conversation: where answers stop."""
        probe = [{"role": "user", "content": "질문"}, {"role": "assistant", "content": "대답"}]
        try:
            before, after = self.render(probe[:1]), self.render(probe, add_generation_prompt=False)
        except ValueError as e:
            raise UserError(f"{e}; use {flag('TEMPLATE', 'koalpaca')}") from None
        if not after.startswith(before) or "대답" not in after[len(before):]:
            raise UserError("the tokenizer's chat template writes an answer's turn differently from the prompt it "
                            f"gives for it, so answers cannot be told apart; use {flag('TEMPLATE', 'koalpaca')}")
        tail = after[len(before):].rsplit("대답", 1)[1]
        specials = {t.content for t in self.tokenizer.added_tokens_decoder.values() if t.special}
        found = sorted((tail.find(t), t) for t in specials | set(self.tokenizer.all_special_tokens) if t and t in tail)
        if not found:
            raise UserError(f"the tokenizer's chat template writes no special token after an answer (only "
                            f"{tail!r}), so the model could not learn where to stop; use {flag('TEMPLATE', 'koalpaca')}")
        return found[0][1]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "end_of_turn": self.end_of_turn}


def load_template(name_or_path: str, tokenizer) -> Template | ChatTemplate:
    """The template to train and answer with: "auto" (the tokenizer's chat template if it has one, else
    koalpaca), "chat_template", a name in prompts/, or a path to a .json (a run's template.json included).
    A chat template's end of turn becomes the tokenizer's end of text: generation stops there, and the
    tokenizer saved with the run says so."""
    if name_or_path == "auto":
        name_or_path = CHAT_TEMPLATE if tokenizer.chat_template else "koalpaca"
    if name_or_path == CHAT_TEMPLATE or saved_name(name_or_path) == CHAT_TEMPLATE:
        template = ChatTemplate.of(tokenizer)
        tokenizer.eos_token = template.end_of_turn
        return template
    return Template.load(name_or_path).for_tokenizer(tokenizer)


def saved_name(path: str) -> str | None:
    """The "name" in a template .json file, if it is one."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("name") if path.endswith(".json") else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def questions_path(path: str) -> Path:
    """Where a questions file is: a relative path in the working directory, else in the project folder (its
    prompts/demo_questions.txt from anywhere)."""
    file = Path(path).expanduser()
    return PROJECT_ROOT / file if not file.is_absolute() and not file.exists() else file


def load_questions(path: str) -> list[tuple[str, str]]:
    """Demo questions: one a line, optionally a tab and an input. # starts a comment line, except before a Korean
    letter: a question may begin with a hashtag ("#해시태그란?"). A line with no question is left out.
    The file is found as questions_path finds it."""
    file = questions_path(path)
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the questions file {path}: {e.strerror or e}") from None
    from .documents.readers.base import Unreadable, decode_text

    try:  # as documents are read: UTF-8 (a byte-order mark is no text), UTF-16 (Notepad's "Unicode"), CP949
        lines = decode_text(raw).splitlines()
    except Unreadable as e:
        raise UserError(f"cannot read the questions file {path}: {e}") from None
    questions = []
    for line in lines:
        question, _, extra = line.partition("\t")
        question = question.strip()
        if question and not (question.startswith("#") and not "가" <= question[1:2] <= "힣"):
            questions.append((question, extra.strip()))
    return questions
