"""Question files for the generative report, in the forms the field uses:

- `.txt`: one question a line (a tab, then its input; # starts a comment, "#해시태그…" is a question), as
  chat_ko.py --questions;
- `.jsonl` (or a `.json` array): objects with `instruction` or `question`, and an optional `input`;
- the KULLM / Self-Instruct user-oriented form (`user_oriented_instructions.jsonl`): `instruction` with
  `instances: [{"input": …, "output": …}]`, one question per instance.
Anything else is one line, before any model loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..prompts import load_questions
from ..records import BadRecord, read_file

FORMS = ".txt (one a line), .jsonl/.json (instruction or question, optional input; or instances[].input)"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    input: str = ""


def read_questions(path: str) -> list[Question]:
    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".json"):
        raise UserError(f"--questions={path}: unknown question file format {suffix or '(no suffix)'}; use {FORMS}")
    if not file.is_file():
        raise UserError(f"--questions={path} is not a file")
    if suffix == ".txt":
        found = [Question(str(i), q, extra) for i, (q, extra) in enumerate(load_questions(str(file)), start=1)]
    else:
        found = _from_records(path, _records(file))
    if not found:
        raise UserError(f"--questions={path} holds no questions")
    return found


def _records(file: Path) -> list[tuple[int, object]]:
    """The file's records, numbered, as kochat reads any .json/.jsonl (kochat.records); a bad line is one error."""
    found = []
    for n, record in enumerate(read_file(file), start=1):
        if isinstance(record, BadRecord):
            raise UserError(f"{file}, record {n}: {record.reason}; {FORMS}")
        found.append((n, record))
    return found


def _from_records(path: str, records) -> list[Question]:
    found = []
    for n, record in records:
        where = f"{path}, record {n}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected an object with instruction or question ({FORMS})")
        text = record.get("instruction") or record.get("question")
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{where}: no instruction or question (keys: {', '.join(record) or 'none'}); {FORMS}")
        rid = str(record.get("id", n))
        instances = record.get("instances")
        if instances is not None:
            if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
                raise UserError(f"{where}: instances must be a list of objects with an input")
            for k, instance in enumerate(instances or [{}], start=1):
                found.append(Question(rid if len(instances) <= 1 else f"{rid}.{k}", text.strip(),
                                      str(instance.get("input") or "").strip()))
        else:
            found.append(Question(rid, text.strip(), str(record.get("input") or "").strip()))
    return found
