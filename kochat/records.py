"""Records from a local .jsonl/.json/.csv/.tsv/.parquet file, a folder of them, or a hub dataset's train split.

Local files are read here rather than by `datasets`, so that one bad line becomes one skipped row (a
BadRecord, whose reason kochat.data reports) instead of failing the whole file with an Arrow error. Whole-file
problems (not UTF-8, not JSON, duplicate columns, unreadable) are one line saying what to do.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from . import hub
from .cli import flag
from .errors import UserError

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


class Records(list):
    """A source's records, each with where it stands there (`numbers`, in `unit`s): a CSV/TSV file's row as a
    spreadsheet shows it (the header is row 1; blank rows and rows of several lines counted as the sheet counts
    them), a JSONL file's line; elsewhere (a JSON array, a Parquet file, a folder or dataset) the data row, from 1.
    The skip report names rows so, as index_ko.py names FAQ rows."""

    def __init__(self, items=(), numbers=None, unit: str = "data row"):
        super().__init__(items)
        self.numbers = list(numbers) if numbers is not None else list(range(1, len(self) + 1))
        self.unit = unit


class BadRecord:
    """A record that could not be parsed (a bad JSON line); validation reports its reason."""

    def __init__(self, reason: str):
        self.reason = reason


def read_records(source: str) -> Records:
    """All records of a local file or folder, or of a hub dataset's train split."""
    path = Path(source).expanduser()
    if path.is_file():
        return read_file(path)
    if path.is_dir():
        return read_hub_or_folder(str(path), local=True)
    if path.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~")):
        raise UserError(f"data file {source} not found (working directory: {Path.cwd()})")
    return read_hub_or_folder(source, local=False)


def read_file(path: Path) -> Records:
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


def read_jsonl(text: str) -> Records:
    records, numbers = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028 …
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            records.append(BadRecord(f"not valid JSON ({e.msg})"))
        numbers.append(number)
    return Records(records, numbers, unit="line")


def read_json(text: str, path: Path) -> Records:
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
    return Records(value)


def read_csv(text: str, path: Path, delimiter: str) -> Records:
    csv.field_size_limit(2**31 - 1)  # very long fields are skipped by MAX_CHARS, with a reason
    rows = csv_rows(text, path, delimiter)
    if not rows:
        return Records(unit="row")
    header = [h.strip() for h in rows[0]]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise UserError(f"{path} has duplicate columns: {', '.join(duplicates)}; rename them")
    records, numbers = [], []
    for number, values in enumerate(rows[1:], start=2):  # the sheet's rows: the header is row 1
        if not any(v.strip() for v in values):
            continue
        records.append(BadRecord(f"more fields than the header's {len(header)}") if len(values) > len(header)
                       else {h: v for h, v in zip(header, values)})
        numbers.append(number)
    return Records(records, numbers, unit="row")


def csv_rows(text: str, path: Path, delimiter: str) -> list[list[str]]:
    """The file's rows as the csv module reads them leniently (a quote inside a field kept as text: KoBEST's BoolQ
    has fields that begin with a quoted title), except a quote opened and never closed: leniently, the rest of
    the file would be read into that one field, its rows silently lost. That is one line naming where it opens."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows, record_ends = [], 0
    try:
        for values in reader:
            rows.append(values)
            record_ends = reader.line_num
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise UserError(f"{path} is not valid {kind}: a quote opened on line {record_ends + 1} is never closed; "
                            f"close it, or double a quote meant as text (\"\")") from None
        try:  # another stray quote: read as it always was
            return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        except csv.Error as e:
            raise UserError(f"{path} is not valid {kind}: {e}") from None
    return rows


def read_parquet(path: Path, raw: bytes) -> Records:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return Records(pq.read_table(pa.BufferReader(raw)).to_pylist())
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file: {str(e).strip().splitlines()[0]}") from None


def summary(error: BaseException) -> str:
    """An error's message in one line: its first, and its last where it has more ("Couldn't cast … because
    column names don't match")."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return (lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}")[:200]


def read_hub_or_folder(source: str, local: bool) -> Records:
    """A hub dataset id, or a folder of data files (such as a downloaded copy of one)."""
    import datasets

    datasets.logging.set_verbosity_error()
    if not local:
        hub.use_offline_if_unreachable()
    try:
        table = datasets.load_dataset(source, split="train")
    except Exception as e:  # the hub client raises many types: offline, not found, gated, bad files
        if local:  # datasets raises "An error occurred while generating the dataset" from what went wrong
            cause, seen = e, {id(e)}
            while cause.__cause__ is not None and id(cause.__cause__) not in seen:
                cause = cause.__cause__
                seen.add(id(cause))
            raise UserError(f"cannot read the folder {source} as a dataset ({summary(cause)}); "
                            f"point {flag('DATA')} at one of its data files instead") from None
        raise UserError(f"cannot load dataset {source!r}: it is not a local file and the hub did not provide it "
                        f"({summary(e)}); " + hub.download_hint(source, "dataset")) from None
    return Records(table)
