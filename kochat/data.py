"""Rows in: a hub dataset id or a local file, mapped through configurable columns, every row validated.

Local files are read here rather than by `datasets`, so that one bad row is skipped with a reason
instead of failing the whole file with an Arrow error. Result: rows of instruction/input/output or text.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import hub
from .errors import UserError
from .prompts import Template

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


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
        raise UserError(f"no usable rows in {source}: " + "; ".join(report.lines()[1:4]))
    return rows, report


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
            f"'{columns.text}': name yours with --question_column=… --answer_column=… "
            f"(and --input_column=…), or --text_column=… for rendered rows")


class BadRecord:
    """A record that could not be parsed (a bad JSON line); validation reports its reason."""

    def __init__(self, reason: str):
        self.reason = reason


def read_records(source: str) -> list:
    """All records of a local file or folder, or of a hub dataset's train split."""
    path = Path(source).expanduser()
    if path.is_file():
        return read_file(path)
    if path.is_dir():
        return read_hub_or_folder(str(path), local=True)
    if path.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~")):
        raise UserError(f"data file {source} not found (working directory: {Path.cwd()})")
    return read_hub_or_folder(source, local=False)


def read_file(path: Path) -> list:
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise UserError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(LOCAL_SUFFIXES)}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if suffix == ".parquet":
        return read_parquet(path, raw)
    try:
        text = raw.decode("utf-8-sig")  # a BOM from Excel or Notepad is fine
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not UTF-8 (bad byte 0x{raw[e.start]:02x} at offset {e.start}); re-save it as UTF-8, "
            f"e.g. iconv -f cp949 -t utf-8 {path.name} > utf8_{path.name}") from None
    if suffix == ".jsonl":
        return read_jsonl(text)
    if suffix == ".json":
        return read_json(text, path)
    return read_csv(text, path, delimiter="\t" if suffix == ".tsv" else ",")


def read_jsonl(text: str) -> list:
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            records.append(BadRecord(f"not valid JSON ({e.msg})"))
    return records


def read_json(text: str, path: Path) -> list:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several JSON values, one per line: JSON Lines under a .json name
            return read_jsonl(text)
        raise UserError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            value = lists[0]
    if not isinstance(value, list):
        raise UserError(f"{path} should hold a JSON array of rows like [{{\"instruction\": …, \"output\": …}}]")
    return value


def read_csv(text: str, path: Path, delimiter: str) -> list:
    csv.field_size_limit(2**31 - 1)  # very long fields are skipped by MAX_CHARS, with a reason
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return []
        header = [h.strip() for h in header]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise UserError(f"{path} has duplicate columns: {', '.join(duplicates)}; rename them")
        records = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                records.append(BadRecord(f"more fields than the header's {len(header)}"))
                continue
            records.append({h: v for h, v in zip(header, values)})
        return records
    except csv.Error as e:
        raise UserError(f"{path} is not valid {'TSV' if delimiter == chr(9) else 'CSV'} (line {reader.line_num}): {e}") from None


def read_parquet(path: Path, raw: bytes) -> list:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(raw)).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file: {str(e).strip().splitlines()[0]}") from None


def read_hub_or_folder(source: str, local: bool) -> list:
    """A hub dataset id, or a folder of data files (such as a downloaded copy of one)."""
    import datasets

    datasets.logging.set_verbosity_error()
    if not local:
        hub.use_offline_if_unreachable()
    try:
        table = datasets.load_dataset(source, split="train")
    except Exception as e:  # the hub client raises many types: offline, not found, gated, bad files
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if local:
            raise UserError(f"cannot read the folder {source} as a dataset ({first}); "
                            f"point --data at one of its data files instead") from None
        raise UserError(f"cannot load dataset {source!r}: it is not a local file and the hub did not provide it "
                        f"({first}); " + hub.download_hint(source, "dataset")) from None
    return list(table)
