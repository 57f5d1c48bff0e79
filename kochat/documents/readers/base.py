"""What every format reader shares: the `Section` it returns and the `Unreadable` it raises, the decoding of
text files (UTF-8, UTF-16 with a BOM, CP949/EUC-KR), the tidying of extracted text, the `Builder` that files
lines under their heading path, and the short one-line `reason` a library exception is reported with.
"""
from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    text: str          # plain text; paragraphs separated by "\n"
    page: int | None   # 1-based PDF page, else None
    heading: str       # heading path, outer to inner, joined by " > "; "" if none
    row: int | None    # an FAQ row: its row in the sheet (header = 1) or its line in a .jsonl; else None


class Unreadable(Exception):
    """Why one file cannot be read, as one line that says what to do."""


def decode_text(raw: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, or CP949 (a superset of EUC-KR), each decoded strictly."""
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    for encoding in ("utf-16",) if utf16 else ("utf-8-sig", "cp949"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" not in text:
            return text
    if "\x00" in (raw.decode("utf-16", "replace") if utf16 else raw.decode("latin-1")):
        raise Unreadable("binary file, not text (it has NUL bytes): save it as UTF-8 text")
    raise Unreadable("not UTF-8, UTF-16 or CP949/EUC-KR text: save it as UTF-8")


_NEWLINES = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\u200b\u00ad]")
_SPACES = re.compile(r"[^\S\n]+")


def tidy(text: str) -> str:
    """NFC (Mac files are often NFD), no control characters, single spaces, no blank lines."""
    text = unicodedata.normalize("NFC", _INVISIBLE.sub("", _NEWLINES.sub("\n", text)))
    return "\n".join(line for line in (_SPACES.sub(" ", s).strip() for s in text.split("\n")) if line)


def reason(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:150]


class Builder:
    """Collects lines under a heading path; a heading of level N replaces the path below level N."""

    def __init__(self, outer: str = ""):
        self.path: list[tuple[int, str]] = [(0, outer)] if outer.strip() else []
        self.sections: list[Section] = []
        self.lines: list[str] = []

    def heading(self, level: int, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            return
        self.flush()
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, title))

    def line(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        text = "\n".join(self.lines)
        if text.strip():
            self.sections.append(Section(text, None, " > ".join(t for _, t in self.path), None))
        self.lines = []

    def done(self) -> list[Section]:
        self.flush()
        return self.sections
