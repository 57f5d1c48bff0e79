"""Rows in: a hub dataset id or a local file (read by kochat.records), mapped through configurable columns,
every row validated; a bad row, and an exact duplicate of an earlier one, is skipped and counted with its
reason. Result: rows of instruction/input/output, of text, or of messages (a conversation in OpenAI
`messages` or ShareGPT `conversations` form, kochat/conversations.py), and the report.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from . import conversations
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
    """How many rows were read, kept, and skipped for which reason (with where the first stands in the source:
    a CSV's row as a spreadsheet shows it, a JSONL file's line; kochat.records.Records)."""
    read: int = 0
    reasons: Counter = field(default_factory=Counter)
    first_row: dict = field(default_factory=dict)
    unit: str = "data row"  # what first_row counts: "row" (of a sheet), "line" (of a JSONL file) or "data row"
    counts: Counter = field(default_factory=Counter)  # what the kept rows hold: conversations, answers, …
    counted: dict = field(default_factory=dict)       # each row's part of `counts`, by its index, until tokenized

    def skip(self, reason: str, row_number: int | None = None, count: int = 1) -> None:
        if count == 0:
            return
        self.reasons[reason] += count
        if row_number is not None:
            self.first_row.setdefault(reason, row_number)

    def count(self, row: int, counts: dict) -> None:
        """Add what row `row` holds (data.row_counts) to what the kept rows hold."""
        self.counted[row] = Counter(counts)
        self.counts.update(self.counted[row])

    def uncount(self, rows) -> None:
        """Take rows skipped after they were counted (too long once tokenized) out of what the kept rows hold, then
        let every row's part go: tokenizing is the last step that skips rows, and the report lives as long as the
        run."""
        for row in rows:
            self.counts.subtract(self.counted[row])
        self.counted.clear()

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())

    @property
    def kept(self) -> int:
        return self.read - self.skipped

    def lines(self) -> list[str]:
        out = [f"rows read: {self.read:,}   kept: {self.kept:,}   skipped: {self.skipped:,}"]
        for reason, n in self.reasons.most_common():
            where = f" (first: {self.unit} {self.first_row[reason]})" if reason in self.first_row else ""
            out.append(f"  skipped {n:,} × {reason}{where}")
        c = self.counts
        if c["conversations"]:
            out.append(f"conversations: {c['conversations']:,} ({c['multi-turn']:,} with several answers, "
                       f"{c['with a system message']:,} with a system message); answers: {c['answers']:,}")
        if c["split per answer"]:
            out.append(f"  {c['split per answer']:,} conversations trained as one example per answer (the template "
                       f"renders earlier answers differently)")
        return out

    def to_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": dict(self.reasons), **dict(self.counts)}


def load_rows(source: str, columns: Columns, template: Template, max_chars: int) -> tuple[list[dict], SkipReport]:
    """Read `source` and return its usable rows, plus the report.

    Rows with question/answer columns are mapped to instruction/input/output; rows with a text column must
    already be in the template's form (checked here, split at its marker when rendered); rows with a
    `messages` or `conversations` column are conversations, checked turn by turn.
    """
    records = read_records(source)
    check_columns(records, columns, source)
    report = SkipReport(read=len(records), unit=records.unit)
    rows, seen = [], set()
    for number, record in zip(records.numbers, records):
        row = validate_row(record, columns, template, max_chars)
        if isinstance(row, str):
            report.skip(row, number)
            continue
        key = json.dumps(row, ensure_ascii=False, sort_keys=True)
        if key in seen:
            report.skip("exact duplicate of an earlier row", number)
            continue
        seen.add(key)
        rows.append(row)
    if not rows:
        raise UserError(no_rows_message(source, columns, report))
    return rows, report


def row_counts(row: dict) -> dict:
    """What a usable row holds, for the report: a conversation's answers and kind, or one answer."""
    if not row["messages"]:
        return {"answers": 1}
    answers = sum(m["role"] == "assistant" for m in row["messages"])
    return {"conversations": 1, "multi-turn": int(answers > 1), "answers": answers,
            "with a system message": int(row["messages"][0]["role"] == "system")}


def no_rows_message(source: str, columns: Columns, report: SkipReport) -> str:
    """Why nothing is left to train on, and what to do about it."""
    if report.read == 0:
        return (f"no usable rows in {source}: it holds no rows; add question/answer rows (columns "
                f"'{columns.question}', '{columns.answer}', optional '{columns.input}') or point {flag('DATA')} "
                f"at another file")
    why = "; ".join(f"{n:,} × {reason}" for reason, n in report.reasons.most_common(3))
    return (f"no usable rows in {source}: all {report.read:,} rows were skipped ({why}); fix those rows, "
            f"or name the right columns with {flag('QUESTION_COLUMN', '…')} {flag('ANSWER_COLUMN', '…')}")


def validate_row(record, columns: Columns, template: Template, max_chars: int):
    """The row as {"instruction", "input", "output", "text", "messages"} (unused ones empty) or the reason
    (a string) it is skipped. Rendering it with `template` gives a non-empty question and answer."""
    if isinstance(record, BadRecord):
        return record.reason
    if not isinstance(record, dict):
        return "not an object with named fields"
    row = {"instruction": "", "input": "", "output": "", "text": "", "messages": []}
    conversation = next((c for c in conversations.COLUMNS if record.get(c) not in (None, "", [])), None)
    if conversation:
        messages = conversations.parse(record[conversation])
        if isinstance(messages, str):
            return messages
        row["messages"] = messages
    elif columns.question in record or columns.answer in record:
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
    elif any(record.get(c) == [] for c in conversations.COLUMNS):  # [] beside a question is a shared schema's
        return "an empty conversation"
    else:
        return f"no '{columns.question}'/'{columns.answer}', '{columns.text}' or 'messages' field"
    texts = [v for v in row.values() if isinstance(v, str)] + [m["content"] for m in row["messages"]]
    if any("\x00" in v for v in texts):
        return "contains a NUL byte"
    if not all(_encodable(v) for v in texts):  # JSON's "\ud800": no tokenizer can take it
        return "contains a lone UTF-16 surrogate (broken escape)"
    if sum(len(v) for v in texts) > max_chars:
        return f"longer than MAX_CHARS ({max_chars:,} characters)"
    if row["text"]:
        return check_rendered_text(row, columns, template)
    return row


def check_rendered_text(row: dict, columns: Columns, template: Template):
    """A text row already in the template's form: the row, or why it is skipped."""
    if not isinstance(template, Template):
        return f"'{columns.text}' rows are in a prompt template's form; train them with {flag('TEMPLATE', 'koalpaca')}"
    parts = template.split(row["text"], template.end_of_turn)
    if parts is None:
        return f"'{columns.text}' lacks the response marker {template.response_split!r}"
    question_prefix = template.prompt_no_input.split("{instruction}")[0].strip()
    question = parts[0].rsplit(template.response_split, 1)[0].strip().removeprefix(question_prefix)
    if not question.strip():
        return "empty question"
    if not parts[1].strip():
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
    wanted = {columns.question, columns.answer, columns.text, *conversations.COLUMNS}
    if records and all(isinstance(r, BadRecord) for r in records):  # no row read at all: its columns say nothing
        if records[0].reason.startswith("not valid JSON"):
            raise UserError(f"{source} is not JSON Lines: no line is valid JSON (the first: {records[0].reason}); "
                            f"write one {{\"instruction\": …, \"output\": …}} a line, or save a table as .csv")
        raise UserError(f"{source}: no row could be read (the first: {records[0].reason}); quote cells that hold "
                        f"the delimiter")
    if records and not (seen & wanted):
        found = ", ".join(sorted(seen)[:12]) or "none"
        raise UserError(
            f"{source} has columns [{found}], none of '{columns.question}', '{columns.answer}' or "
            f"'{columns.text}': name yours with {flag('QUESTION_COLUMN', '…')} {flag('ANSWER_COLUMN', '…')} "
            f"(and {flag('INPUT_COLUMN', '…')}), or {flag('TEXT_COLUMN', '…')} for rendered rows; conversations go "
            f"in a 'messages' (OpenAI) or 'conversations' (ShareGPT) column")
