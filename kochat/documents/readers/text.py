"""The text formats: Markdown (headings, tables, links and code fences), HTML (headings, tables and block
elements, with scripts, styles and menus dropped) and question/answer FAQ files (.csv, .tsv, .jsonl), one section
per row whose columns are found by the names in QUESTION_COLUMNS, ANSWER_COLUMNS and INPUT_COLUMNS (other
columns, such as a category, follow the answer as "name: value" lines). Each reader takes text already decoded
by `decode_text`.
"""
from __future__ import annotations

import csv
import io
import re

from ... import records
from .base import Builder, Section, Unreadable, reason

QUESTION_COLUMNS = ("instruction", "question", "질문", "q", "title", "제목")
ANSWER_COLUMNS = ("output", "answer", "답변", "a", "text", "내용", "content")
INPUT_COLUMNS = ("input", "context")

_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def read_markdown(text: str) -> list[Section]:
    out, fenced = Builder(), False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced  # no headings inside code blocks; the fence line itself is dropped
            continue
        m = None if fenced else _MD_HEADING.match(line)
        if m:
            out.heading(len(m.group(1)), m.group(2).replace("**", ""))
        elif fenced or not _MD_TABLE_RULE.match(line):
            if not fenced and line.strip().startswith("|"):  # table row: cells joined by " | "
                line = " | ".join(c.strip() for c in line.strip().strip("|").split("|"))
            out.line(line if fenced else _MD_LINK.sub(r"\1", line).replace("**", ""))
    return out.done()


_HTML_DROP = ("script", "style", "noscript", "template", "nav")  # code and site menus, not content
_HTML_BLOCK = {"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "caption",
               "section", "article", "main", "aside", "header", "footer", "blockquote", "pre", "figure",
               "figcaption", "address", "form", "hr", "br", "body"}


def read_html(text: str) -> list[Section]:
    import lxml.html

    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # lxml refuses a str with an encoding declaration
    try:
        root = lxml.html.document_fromstring(text)
    except Exception:  # lxml's ParserError for a document with no elements
        raise Unreadable("empty: no text found") from None
    for bad in root.xpath("|".join(f"//{t}" for t in _HTML_DROP + ("comment()", "processing-instruction()"))):
        bad.drop_tree()
    title = " ".join((root.findtext(".//title") or "").split())
    out = Builder("" if root.xpath("//h1") else title)
    pieces: list[str] = []

    def newline():
        out.line("".join(pieces))
        pieces.clear()

    def walk(el):
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if tag == "head":
            pass  # the <title> is used above, or not at all
        elif re.fullmatch(r"h[1-6]", tag):
            newline()
            out.heading(int(tag[1]), el.text_content())
        elif tag == "tr":
            newline()
            cells = [" ".join(c.text_content().split()) for c in el if c.tag in ("td", "th")]
            out.line(" | ".join(c for c in cells if c))
        else:
            if tag in _HTML_BLOCK:
                newline()
            pieces.append(el.text or "")
            for child in el:
                walk(child)
            if tag in _HTML_BLOCK:
                newline()
        pieces.append(el.tail or "")

    walk(root)
    newline()
    return out.done()


def _faq_sections(records: list[tuple[int, object]], left_out: list[str] | None = None) -> list[Section]:
    """One section per (row number, record) with a question and an answer. The numbers are where a user finds the
    row: a sheet's row (its header is row 1) or a JSONL file's line. Each row left out (not a JSON object, or
    without a question or an answer) is noted in `left_out`, as one line."""
    sections, matched = [], not records  # no rows at all: "empty", not "no columns"
    why: dict[str, list[int]] = {}  # reason -> row numbers
    for number, record in records:
        if not isinstance(record, dict):
            why.setdefault("not JSON" if record is None else "not a JSON object", []).append(number)
            continue
        keys = {str(k).strip().lower(): k for k in record}
        q, a, i = (next((keys[c] for c in names if c in keys), None)
                   for names in (QUESTION_COLUMNS, ANSWER_COLUMNS, INPUT_COLUMNS))
        if q is None or a is None:
            why.setdefault("no answer field" if q is not None else "no question field", []).append(number)
            continue
        matched = True
        # the row's other columns (a category, a team, a link) as "name: value" lines after the answer: kept,
        # shown and searched
        others = [f"{str(k).strip()}: {cell_text(v)}" for k, v in record.items()
                  if k not in (q, a, i) and str(k).strip() and cell_text(v)]
        q, a, i = (cell_text(record.get(k)) if k is not None else "" for k in (q, a, i))
        if q and a:
            sections.append(Section("\n".join([q, *([i] if i else []), a, *others]), None, q, number))
        else:
            why.setdefault("empty answer" if q else "empty question", []).append(number)
    if not matched:
        raise Unreadable("no question/answer columns: name them question and answer (or 질문 and 답변)")
    note = "; ".join(f"{reason} (row{'s' if len(rows) > 1 else ''} {numbers(rows)})" for reason, rows in why.items())
    if why and not sections:
        raise Unreadable(f"no row has both a question and an answer: {note}")
    if why and left_out is not None:
        count = sum(map(len, why.values()))
        left_out.append(f"{count:,} row{'s' if count > 1 else ''} left out: {note}")
    return sections


def numbers(rows: list[int], shown: int = 5) -> str:
    """Row numbers as "3, 7, 9" (the first `shown`, then "… and N more")."""
    more = f" and {len(rows) - shown:,} more" if len(rows) > shown else ""
    return ", ".join(map(str, rows[:shown])) + more


def cell_text(value) -> str:
    """A cell as text: a list's items joined by commas; "" for an empty cell, a true/false, an object, NaN."""
    if isinstance(value, list):
        return ", ".join(filter(None, map(cell_text, value)))
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value != value:
        return ""
    return str(value).strip()


def read_csv(text: str, delimiter: str = "", left_out: list[str] | None = None) -> list[Section]:
    """An FAQ table; where not given, its delimiter (comma, tab or semicolon) is the one that shows a header row
    among its first rows, else the one in its first line. Rows left out are noted in `left_out` (_faq_sections)."""
    first = text.split("\n", 1)[0]
    guess = "," if "," in first else "\t" if "\t" in first else ";" if ";" in first else ","
    for candidate in [delimiter] if delimiter else [",", "\t", ";", guess]:
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=candidate))
        except csv.Error as e:
            raise Unreadable(f"not a readable CSV: {reason(e)}") from None
        top = header_row(rows)
        if top is not None:
            break
    delimiter, top = candidate, top or 0
    if not rows:
        return _faq_sections([])
    names = rows[top]
    lowered = [n.strip().lower() for n in names]
    twice = sorted({n for n in lowered if n and lowered.count(n) > 1})
    if twice:  # a row would keep one of them and lose the other
        raise Unreadable(f"duplicate columns: {', '.join(twice)}; give each column its own name")
    answer = next((lowered.index(c) for c in ANSWER_COLUMNS if c in lowered), len(names) - 1)
    # numbered as the sheet shows them (a blank line is a blank sheet row: skipped, but counted)
    return _faq_sections([(n, dict(zip(names, joined_overflow(cells, len(names), answer, delimiter))))
                          for n, cells in enumerate(rows[top + 1:], start=top + 2) if any(c.strip() for c in cells)],
                         left_out)


HEADER_WITHIN = 10  # rows of a sheet searched for its header (a title or a date may sit above it)


def header_row(rows: list[list[str]]) -> int | None:
    """The index of the row that names a question column and an answer column, within the first HEADER_WITHIN
    rows and with only titles above it (rows of one filled cell at most); None where there is none."""
    for n, cells in enumerate(rows[:HEADER_WITHIN]):
        lowered = {c.strip().lower() for c in cells}
        if lowered & set(QUESTION_COLUMNS) and lowered & set(ANSWER_COLUMNS):
            return n
        if sum(bool(c.strip()) for c in cells) > 1:  # a row of data, not a title: the header is not below it
            return None
    return None


def joined_overflow(cells: list[str], width: int, answer: int, delimiter: str) -> list[str]:
    """A row's cells, as many as the header has columns. A short row's missing cells are empty. A row with more
    (an unquoted comma, the usual slip in a hand-made sheet, and most likely in the answer, the column of prose):
    the extra cells go back into the answer, with the delimiters between them; the columns after the answer take
    the row's last cells."""
    while len(cells) > width and not cells[-1].strip():  # a delimiter at the end of a row (Excel's) is no cell
        cells = cells[:-1]
    extra = len(cells) - width
    if extra <= 0:  # a short row (no delimiters for its empty cells at the end): those cells are empty
        return cells + [""] * -extra
    return [*cells[:answer], delimiter.join(cells[answer:answer + extra + 1]), *cells[answer + extra + 1:]]


def read_jsonl(text: str, left_out: list[str] | None = None) -> list[Section]:
    """One FAQ row a line, read and numbered by line as training data is (kochat.records); a line that is not JSON
    is left out (noted in `left_out`), as a row without an answer."""
    rows = records.read_jsonl(text)
    return _faq_sections([(number, None if isinstance(row, records.BadRecord) else row)
                          for number, row in zip(rows.numbers, rows)], left_out)
