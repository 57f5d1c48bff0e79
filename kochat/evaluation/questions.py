"""Question files for the generative report, in the forms the field uses:

- `.txt`: one question a line (a tab, then its input; # starts a comment), as chat_ko.py --questions;
- `.jsonl` (or a `.json` array): objects with `instruction` or `question`, and an optional `input`;
- the KULLM / Self-Instruct user-oriented form (`user_oriented_instructions.jsonl`): `instruction` with
  `instances: [{"input": …, "output": …}]`, one question per instance.
Anything else is one line, before any model loads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..prompts import load_questions

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
        found = _from_records(path, _records(file, suffix))
    if not found:
        raise UserError(f"--questions={path} holds no questions")
    return found


def _records(file: Path, suffix: str) -> list[tuple[int, object]]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the questions file {file}: {e}") from None
    try:
        if suffix == ".json":
            value = json.loads(text)
            if not isinstance(value, list):
                raise UserError(f"{file}: a .json questions file is an array of objects ({FORMS})")
            return list(enumerate(value, start=1))
        return [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    except json.JSONDecodeError as e:
        raise UserError(f"{file}: not JSON ({e.msg}, line {getattr(e, 'lineno', '?')}); {FORMS}") from None


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
