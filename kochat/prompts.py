"""Prompt templates as data (prompts/*.json), and the one renderer used by training and generation.

A template has `prompt_input` / `prompt_no_input` (the question, with or without a row's input),
`response` (how the answer follows the prompt, e.g. " {output}") and `response_split` (the marker
that ends the prompt). Training tokenizes `prompt(...)` and `answer(...)` separately; generation
feeds `prompt(...)` alone, so the model sees the same tokens in both.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import PROJECT_ROOT
from .errors import UserError

TEMPLATE_DIR = PROJECT_ROOT / "prompts"  # next to the code, never relative to the working directory
FIELDS = ("prompt_input", "prompt_no_input", "response", "response_split")
TURN_SEPARATOR = "\n\n"  # between an earlier answer and the next question in a conversation
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    prompt_input: str
    prompt_no_input: str
    response: str
    response_split: str

    @classmethod
    def load(cls, name_or_path: str) -> "Template":
        """A template by name (a file in prompts/) or by path to a .json file."""
        path = Path(name_or_path)
        if path.suffix != ".json":
            path = TEMPLATE_DIR / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in TEMPLATE_DIR.glob("*.json")))
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
        if problems:
            raise UserError(f"{where}: " + "; ".join(problems))
        return t

    def to_dict(self) -> dict:
        return asdict(self)

    def prompt(self, instruction: str, input: str = "") -> str:
        """The text the model is given: everything up to and including the response marker."""
        if input:
            return self.prompt_input.format(instruction=instruction, input=input)
        return self.prompt_no_input.format(instruction=instruction)

    def answer(self, output: str) -> str:
        """The text the model learns to write after the prompt (end of text is added as a token id)."""
        return self.response.format(output=output)

    def render(self, row: dict, end_of_text: str) -> dict | None:
        """A validated row ({"instruction", "input", "output"} or {"text"}) as {"prompt", "answer"} text.

        None for a text row without this template's response marker."""
        if row.get("text"):
            parts = self.split(row["text"], end_of_text)
            return None if parts is None else {"prompt": parts[0], "answer": parts[1]}
        return {"prompt": self.prompt(row["instruction"], row.get("input", "")), "answer": self.answer(row["output"])}

    def chat(self, messages: list[dict]) -> str:
        """A conversation ([{"role", "content"}], OpenAI style) as one prompt: earlier questions and answers in
        this template, then the last user message as the question. A system message goes first, as text.
        The last message may carry a "context" (retrieved passages): it goes in as the question's input.
        Raises ValueError for a conversation that does not end with the user's message."""
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError("each message needs a role (system, user or assistant) and text content")
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("the last message must be the user's")
        system = "\n".join(m["content"].strip() for m in messages if m["role"] == "system")
        text, question = (system + TURN_SEPARATOR) if system else "", None
        for m in messages:
            if m["role"] == "user":
                if question is not None:  # two user messages in a row: the first goes unanswered
                    text += self.prompt(question) + TURN_SEPARATOR
                question = m["content"].strip()
            elif m["role"] == "assistant" and question is not None:
                text += self.prompt(question) + self.answer(m["content"].strip()) + TURN_SEPARATOR
                question = None
        return text + self.prompt(question, messages[-1].get("context", ""))

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


def load_questions(path: str) -> list[tuple[str, str]]:
    """Demo questions: one a line, optionally a tab and an input; # starts a comment line.
    A relative path is looked up in the working directory, then in the project folder."""
    file = Path(path).expanduser()
    if not file.is_absolute() and not file.exists():
        file = PROJECT_ROOT / file
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the questions file {path}: {e}") from None
    questions = []
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            question, _, extra = line.partition("\t")
            questions.append((question.strip(), extra.strip()))
    return questions
