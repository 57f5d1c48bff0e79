"""Rows in: a hub dataset id or a local file (read by kochat.records), mapped through configurable columns,
every row validated; a bad row is skipped and counted with its reason. Result: rows of
instruction/input/output or text, and the skip report.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .cli import flag
from .errors import UserError
from .prompts import Template
from .records import BadRecord, read_records


@dataclass(frozen=True)
class Columns:
    question: str = "instruction"
    input: str = "input"
    answer: str = "output"
    text: str = "text"  # rows already rendered in the template's form


@dataclass
class SkipReport:
    """How many rows were read, kept, and skipped for which reason (with the first row number)."""
    read: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_row: dict = field(default_factory=dict)

    def skip(self, reason: str, row_number: int | None = None, count: int = 1) -> None:
        if count == 0:
            return
        self.reasons[reason] += count
        if row_number is not None:
            self.first_row.setdefault(reason, row_number)

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    @property
    def kept(self) -> int:
        return self.read - self.skipped

    def lines(self) -> list[str]:
        out = [f"rows read: {self.read:,}   kept: {self.kept:,}   skipped: {self.skipped:,}"]
        for reason, n in self.reasons.most_common():
            where = f" (first: row {self.first_row[reason]})" if reason in self.first_row else ""
            out.append(f"  skipped {n:,} × {reason}{where}")
        return out

    def to_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": dict(self.reasons)}


def load_rows(source: str, columns: Columns, template: Template, end_of_text: str,
              max_chars: int) -> tuple[list[dict], SkipReport]:
    """Read `source` and return its usable rows, plus the skip report.

    Rows with question/answer columns are mapped to instruction/input/output; rows with only a text
    column must already be in the template's form (checked here, split at its marker when rendered).
    """
    records = read_records(source)
    check_columns(records, columns, source)
    report = SkipReport(read=len(records))
    rows = []
    for number, record in enumerate(records, start=1):
        row = validate_row(record, columns, template, end_of_text, max_chars)
        if isinstance(row, str):
            report.skip(row, number)
        else:
            rows.append(row)
    if not rows:
        raise UserError(no_rows_message(source, columns, report))
    return rows, report


def no_rows_message(source: str, columns: Columns, report: SkipReport) -> str:
    """Why nothing is left to train on, and what to do about it."""
    if report.read == 0:
        return (f"no usable rows in {source}: it holds no rows; add question/answer rows (columns "
                f"'{columns.question}', '{columns.answer}', optional '{columns.input}') or point {flag('DATA')} "
                f"at another file")
    why = "; ".join(f"{n:,} × {reason}" for reason, n in report.reasons.most_common(3))
    return (f"no usable rows in {source}: all {report.read:,} rows were skipped ({why}); fix those rows, "
            f"or name the right columns with {flag('QUESTION_COLUMN', '…')} {flag('ANSWER_COLUMN', '…')}")


def validate_row(record, columns: Columns, template: Template, end_of_text: str, max_chars: int):
    """The row as {"instruction", "input", "output", "text"} (unused ones "") or the reason (a string)
    it is skipped. Rendering it with `template` gives a non-empty question and answer."""
    if isinstance(record, BadRecord):
        return record.reason
    if not isinstance(record, dict):
        return "not an object with named fields"
    row = {"instruction": "", "input": "", "output": "", "text": ""}
    if columns.question in record or columns.answer in record:
        for key, name, required in (("instruction", columns.question, True), ("input", columns.input, False),
                                    ("output", columns.answer, True)):
            value = record.get(name)
            if value is None and required:
                return f"missing '{name}'"
            if value is not None and not isinstance(value, str):
                return f"'{name}' is not text ({type(value).__name__})"
            row[key] = (value or "").strip()
        if not row["instruction"]:
            return "empty question"
        if not row["output"]:
            return "empty answer"
    elif columns.text in record:
        text = record[columns.text]
        if not isinstance(text, str):
            return f"'{columns.text}' is not text ({type(text).__name__})"
        row["text"] = text.strip()
        if not row["text"]:
            return "empty text"
    else:
        return f"no '{columns.question}'/'{columns.answer}' or '{columns.text}' field"
    if any("\x00" in v for v in row.values()):
        return "contains a NUL byte"
    if not all(_encodable(v) for v in row.values()):  # JSON's "\ud800": no tokenizer can take it
        return "contains a lone UTF-16 surrogate (broken escape)"
    if sum(len(v) for v in row.values()) > max_chars:
        return f"longer than MAX_CHARS ({max_chars:,} characters)"
    rendered = template.render(row, end_of_text)
    if rendered is None:
        return f"'{columns.text}' lacks the response marker {template.response_split!r}"
    question_prefix = template.prompt_no_input.split("{instruction}")[0].strip()
    question = rendered["prompt"].rsplit(template.response_split, 1)[0].strip().removeprefix(question_prefix)
    if not question.strip():
        return "empty question"
    if not rendered["answer"].strip():
        return "empty answer"
    return row


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_columns(records: list, columns: Columns, source: str) -> None:
    """Stop early with the columns found when none of the configured ones are there."""
    seen: set[str] = set()
    for record in records:
        if isinstance(record, dict):
            seen.update(str(k) for k in record)
    wanted = {columns.question, columns.answer, columns.text}
    if records and not (seen & wanted):
        found = ", ".join(sorted(seen)[:12]) or "none"
        raise UserError(
            f"{source} has columns [{found}], none of '{columns.question}', '{columns.answer}' or "
            f"'{columns.text}': name yours with {flag('QUESTION_COLUMN', '…')} {flag('ANSWER_COLUMN', '…')} "
            f"(and {flag('INPUT_COLUMN', '…')}), or {flag('TEXT_COLUMN', '…')} for rendered rows")
