"""One document file in, a list of plain-text sections out, or `Unreadable` with one line saying why.

Reads what Korean offices keep their rules in: text (UTF-8, UTF-16 with a BOM, CP949/EUC-KR), Markdown,
HTML, PDF (pypdf), DOCX (python-docx), HWPX (Hancom's zipped XML, read here with lxml) and question/answer
FAQ files (.csv, .tsv, .jsonl). Sections keep the heading path, PDF page or FAQ row they came from, so that an
answer can cite its source. Legacy binary .hwp is refused with advice instead: the only library that
reads it (pyhwp) is AGPL and unmaintained since 2020, and Hancom Office saves any .hwp as HWPX or PDF.
Every failure of a bad file is an `Unreadable`; no library exception escapes, so one bad file in a
folder is reported and skipped, not fatal.

This module checks a file (type, size, emptiness), hands its bytes to the reader for its suffix and tidies what
comes back. The readers live by concern: base.py holds what they all share (Section, Unreadable, decoding,
tidying, the heading-path Builder), text.py the formats read from decoded text (Markdown, HTML, FAQ rows) and
office.py the binary ones read with a library (PDF, DOCX, HWPX). A new format gets a reader in text.py
(str -> sections) or office.py (bytes, max_bytes -> sections), its suffix in SUPPORTED and an entry in the
dispatch of read_document.
"""
from __future__ import annotations

from pathlib import Path

from .base import Section, Unreadable, decode_text, reason, tidy
from .office import read_docx, read_hwpx, read_pdf
from .text import read_csv, read_html, read_jsonl, read_markdown

__all__ = ["SUPPORTED", "VERSION", "Section", "Unreadable", "decode_text", "read_document"]

# Counts changes to the sections a file becomes (2: an FAQ row's other columns kept; 3: an unquoted comma kept in
# the answer; 4: FAQ rows numbered as the sheet or file shows them): an index made under another reads its files
# again on its next update.
VERSION = 4

SUPPORTED = (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".hwpx", ".csv", ".tsv", ".jsonl")
# Office files of another kind: what to save them as, in the program that made them
SHEETS = "spreadsheets are not read: save an FAQ sheet as CSV (question and answer columns), other sheets as PDF"
SLIDES = "slides are not read: save them as PDF"
SAVE_AS = {
    ".hwp": "legacy .hwp is not read: save it as HWPX or PDF in Hancom Office",
    ".doc": "legacy Word .doc is not read: save it as DOCX or PDF in Word",
    ".rtf": "RTF is not read: save it as DOCX or PDF",
    ".odt": "ODT is not read: save it as DOCX or PDF",
    ".xlsx": SHEETS, ".xls": SHEETS, ".ods": SHEETS,
    ".pptx": SLIDES, ".ppt": SLIDES, ".odp": SLIDES,
}


def read_document(path: Path, max_bytes: int = 50_000_000, left_out: list[str] | None = None) -> list[Section]:
    """The sections of one file, in reading order, each with text; or Unreadable, one line saying why. What an
    FAQ file's reader left out (rows without an answer, lines that are not JSON) is noted in `left_out`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAVE_AS:
        raise Unreadable(SAVE_AS[suffix])
    if suffix not in SUPPORTED:
        raise Unreadable(f"unsupported file type {suffix or '(none)'}: use one of {', '.join(SUPPORTED)}")
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)  # never more than the limit, even if the file grows meanwhile
    except OSError as e:
        raise Unreadable(f"cannot read: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        raise Unreadable(f"larger than {max_bytes / 1e6:g} MB: split it, or raise MAX_FILE_MB")
    if not raw.strip():
        raise Unreadable("empty: no text found")
    try:
        reader = {".pdf": read_pdf, ".docx": read_docx, ".hwpx": read_hwpx}.get(suffix)
        if reader:
            sections = reader(raw, max_bytes)
        else:
            text = decode_text(raw)
            sections = {".md": read_markdown, ".html": read_html, ".htm": read_html,
                        ".csv": lambda t: read_csv(t, left_out=left_out),
                        ".tsv": lambda t: read_csv(t, delimiter="\t", left_out=left_out),
                        ".jsonl": lambda t: read_jsonl(t, left_out),
                        }.get(suffix, lambda t: [Section(t, None, "", None)])(text)
    except Unreadable:
        raise
    except Exception as e:  # the promise is one line per bad file, never a traceback (RecursionError too)
        raise Unreadable(f"not a readable {suffix[1:].upper()} file: {reason(e)}") from None
    sections = [Section(t, s.page, tidy(s.heading).replace("\n", " "), s.row)
                for s in sections if (t := tidy(s.text))]
    if not sections:
        raise Unreadable("empty: no text found")
    return sections
