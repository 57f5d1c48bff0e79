"""One document file in, a list of plain-text sections out, or `Unreadable` with one line saying why.

Reads what Korean offices keep their rules in: text (UTF-8, UTF-16 with a BOM, CP949/EUC-KR), Markdown,
HTML, PDF (pypdf), DOCX (python-docx), HWPX (Hancom's zipped XML, read here with lxml) and question/answer
FAQ files (.csv, .jsonl). Sections keep the heading path, PDF page or FAQ row they came from, so that an
answer can cite its source. Legacy binary .hwp is refused with advice instead: the only library that
reads it (pyhwp) is AGPL and unmaintained since 2020, and Hancom Office saves any .hwp as HWPX or PDF.
Every failure of a bad file is an `Unreadable`; no library exception escapes, so one bad file in a
folder is reported and skipped, not fatal.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import logging
import re
import threading
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".hwpx", ".csv", ".jsonl")
QUESTION_COLUMNS = ("instruction", "question", "질문", "q", "title", "제목")
ANSWER_COLUMNS = ("output", "answer", "답변", "a", "text", "내용", "content")
INPUT_COLUMNS = ("input", "context")
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .hwp/.doc, and password-protected Office files
_HWP_TAG = re.compile(r"\{http://www\.hancom\.co\.kr/hwpml/\d{4}/paragraph\}(\w+)")  # hp: (2011), hp10: (2016)


@dataclass(frozen=True)
class Section:
    text: str          # plain text; paragraphs separated by "\n"
    page: int | None   # 1-based PDF page, else None
    heading: str       # heading path, outer to inner, joined by " > "; "" if none
    row: int | None    # 1-based data row of a .csv/.jsonl FAQ file, else None


class Unreadable(Exception):
    """Why one file cannot be read, as one line that says what to do."""


def read_document(path: Path, max_bytes: int = 50_000_000) -> list[Section]:
    """The sections of one file, in reading order, each with text; or Unreadable, one line saying why."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".hwp":
        raise Unreadable("legacy .hwp is not read: save it as HWPX or PDF in Hancom Office")
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
        reader = {".pdf": _read_pdf, ".docx": _read_docx, ".hwpx": _read_hwpx}.get(suffix)
        if reader:
            sections = reader(raw, max_bytes)
        else:
            text = decode_text(raw)
            sections = {".md": _read_markdown, ".html": _read_html, ".htm": _read_html, ".csv": _read_csv,
                        ".jsonl": _read_jsonl}.get(suffix, lambda t: [Section(t, None, "", None)])(text)
    except Unreadable:
        raise
    except Exception as e:  # the promise is one line per bad file, never a traceback (RecursionError too)
        raise Unreadable(f"not a readable {suffix[1:].upper()} file: {_reason(e)}") from None
    sections = [Section(t, s.page, _tidy(s.heading).replace("\n", " "), s.row)
                for s in sections if (t := _tidy(s.text))]
    if not sections:
        raise Unreadable("empty: no text found")
    return sections


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


def _tidy(text: str) -> str:
    """NFC (Mac files are often NFD), no control characters, single spaces, no blank lines."""
    text = unicodedata.normalize("NFC", _INVISIBLE.sub("", _NEWLINES.sub("\n", text)))
    return "\n".join(line for line in (_SPACES.sub(" ", s).strip() for s in text.split("\n")) if line)


class _Builder:
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


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def _read_markdown(text: str) -> list[Section]:
    out, fenced = _Builder(), False
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


def _read_html(text: str) -> list[Section]:
    import lxml.html

    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # lxml refuses a str with an encoding declaration
    try:
        root = lxml.html.document_fromstring(text)
    except Exception:  # lxml's ParserError for a document with no elements
        raise Unreadable("empty: no text found") from None
    for bad in root.xpath("|".join(f"//{t}" for t in _HTML_DROP + ("comment()", "processing-instruction()"))):
        bad.drop_tree()
    title = " ".join((root.findtext(".//title") or "").split())
    out = _Builder("" if root.xpath("//h1") else title)
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


_PDF_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_pypdf():
    """pypdf logs and warns a line for each flaw of a damaged file: say nothing during one read. The lock
    keeps the saved level right across threads, and costs no parallelism: pypdf is pure Python."""
    logger = logging.getLogger("pypdf")
    with _PDF_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            logger.setLevel(level)


def _read_pdf(raw: bytes, max_bytes: int) -> list[Section]:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError

    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(raw))
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise Unreadable("encrypted PDF: save it again without a password")
            pages = [Section(page.extract_text() or "", number, "", None)
                     for number, page in enumerate(reader.pages, start=1)]
        except Unreadable:
            raise
        except DependencyError:  # AES without the `cryptography` package
            raise Unreadable("encrypted PDF: save it again without a password") from None
        except Exception as e:  # pypdf raises many kinds (PdfReadError, KeyError, ValueError...) on damage
            raise Unreadable(f"not a readable PDF (damaged?): {_reason(e)}") from None
    if not any(_tidy(p.text) for p in pages):
        raise Unreadable("PDF has no text layer (a scan?): run OCR on it first")
    return pages


def _reason(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:150]


def _open_zip(raw: bytes, kind: str, max_bytes: int) -> zipfile.ZipFile:
    if raw.startswith(OLE_MAGIC):
        old = "legacy .hwp" if kind == "HWPX" else "legacy .doc"
        raise Unreadable(f"password-protected or a {old} file: save it again as {kind} without a password")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        unpacked = sum(i.file_size for i in archive.infolist() if i.filename.endswith((".xml", ".rels", ".hpf")))
    except Exception as e:
        raise Unreadable(f"not a readable {kind} (damaged?): {_reason(e)}") from None
    if unpacked > 4 * max_bytes:  # a zip bomb (or a damaged size) would exhaust memory when parsed
        raise Unreadable(f"its XML unpacks to more than {4 * max_bytes / 1e6:g} MB (damaged?): split it")
    return archive


def _read_docx(raw: bytes, max_bytes: int) -> list[Section]:
    import docx
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _open_zip(raw, "DOCX", max_bytes)
    out = _Builder()

    def level(par: Paragraph) -> int | None:
        style = par.style
        m = re.fullmatch(r"(?:heading|제목)\s*([1-9])", (style.name or "") if style is not None else "", re.I)
        if m:
            return int(m.group(1))
        for ppr in (par._p.pPr, style.element.pPr if style is not None else None):
            outline = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
            if outline is not None and (value := outline.get(qn("w:val"), "")).isdigit() and int(value) < 9:
                return int(value) + 1  # outline level 9 is body text
        return None

    def blocks(parent, document):
        for child in parent.iterchildren():
            if child.tag == qn("w:p"):
                par = Paragraph(child, document)
                depth = level(par)
                if depth:
                    out.heading(depth, par.text)
                else:
                    out.line(par.text)
            elif child.tag == qn("w:tbl"):
                for row in Table(child, document).rows:
                    cells, seen = [], set()
                    for cell in row.cells:  # a merged cell comes back once per grid column
                        if id(cell._tc) not in seen:
                            seen.add(id(cell._tc))
                            cells.append(" ".join(cell.text.split()))
                    out.line(" | ".join(c for c in cells if c))
            elif child.tag == qn("w:sdt"):  # content controls hold ordinary paragraphs and tables
                for content in child.iterchildren(qn("w:sdtContent")):
                    blocks(content, document)

    try:
        document = docx.Document(io.BytesIO(raw))
        blocks(document.element.body, document)
    except Exception as e:
        raise Unreadable(f"not a readable DOCX (damaged?): {_reason(e)}") from None
    return out.done()


def _read_hwpx(raw: bytes, max_bytes: int) -> list[Section]:
    from lxml import etree

    archive = _open_zip(raw, "HWPX", max_bytes)
    names = set(archive.namelist())
    order = [n for n in names if re.fullmatch(r"Contents/section\d+\.xml", n)]
    order.sort(key=lambda n: int(re.sub(r"\D", "", n)))
    try:  # the package's spine gives the reading order; numeric order when it is missing or odd
        hpf = etree.fromstring(archive.read("Contents/content.hpf"), _safe_parser())
        hrefs = {i.get("id"): i.get("href") for i in hpf.iter("{*}item")}
        spine = [hrefs.get(i.get("idref")) for i in hpf.iter("{*}itemref")]
        spine = [n for n in spine if n in order]
        if sorted(spine) == sorted(order):
            order = spine
    except Exception:
        pass
    if not order:
        raise Unreadable("not a readable HWPX (damaged?): it has no Contents/section0.xml")
    sections = []
    for name in order:
        try:
            root = etree.fromstring(archive.read(name), _safe_parser())
        except Exception as e:
            raise Unreadable(f"not a readable HWPX (damaged or password-protected?): {_reason(e)}") from None
        lines: list[str] = []
        _hwpx_walk(root, [], lines)
        sections.append(Section("\n".join(lines), None, "", None))
    return sections


def _safe_parser():
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _hwpx_walk(el, buf: list[str], lines: list[str]) -> None:
    """Text of hp:t runs; each hp:p a line; each hp:tr of an hp:tbl one line of cells joined by " | "."""
    for child in el:
        tag = _hwp_tag(child)
        if tag == "t":
            buf.append(child.text or "")
            for part in child:  # <hp:tab/>, <hp:lineBreak/> and others, with text in their tails
                buf.append({"tab": " ", "lineBreak": "\n"}.get(_hwp_tag(part), "") + (part.tail or ""))
        elif tag == "tbl":
            _flush(buf, lines)
            for tr in (row for row in child if _hwp_tag(row) == "tr"):
                cells = []
                for tc in (cell for cell in tr if _hwp_tag(cell) == "tc"):
                    cell_lines: list[str] = []
                    _hwpx_walk(tc, [], cell_lines)
                    cells.append(" ".join(" ".join(cell_lines).split()))
                lines.append(" | ".join(c for c in cells if c))
        elif tag == "p":  # a paragraph, also inside a table cell, text box or footnote
            _flush(buf, lines)
            inner: list[str] = []
            _hwpx_walk(child, inner, lines)
            _flush(inner, lines)
        else:
            _hwpx_walk(child, buf, lines)


def _hwp_tag(el) -> str:
    m = _HWP_TAG.fullmatch(el.tag) if isinstance(el.tag, str) else None
    return m.group(1) if m else ""


def _flush(buf: list[str], lines: list[str]) -> None:
    lines.append("".join(buf))
    buf.clear()


def _faq_sections(records: list) -> list[Section]:
    """One section per row with a question and an answer; rows numbered from 1, as kochat.data does."""
    sections, matched = [], not records  # no rows at all: "empty", not "no columns"
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            continue
        keys = {str(k).strip().lower(): k for k in record}
        q, a, i = (next((keys[c] for c in names if c in keys), None)
                   for names in (QUESTION_COLUMNS, ANSWER_COLUMNS, INPUT_COLUMNS))
        if q is None or a is None:
            continue
        matched = True
        q, a, i = (record.get(k) if k is not None else "" for k in (q, a, i))
        q, a, i = (str(v).strip() if isinstance(v, (str, int, float)) else "" for v in (q, a, i))
        if q and a:
            sections.append(Section(q + "\n" + (i + "\n" if i else "") + a, None, q, number))
    if not matched:
        raise Unreadable("no question/answer columns: name them question and answer (or 질문 and 답변)")
    return sections


def _read_csv(text: str) -> list[Section]:
    header = text.split("\n", 1)[0]
    delimiter = "," if "," in header else "\t" if "\t" in header else ";" if ";" in header else ","
    try:
        return _faq_sections(list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)))
    except csv.Error as e:
        raise Unreadable(f"not a readable CSV: {_reason(e)}") from None


def _read_jsonl(text: str) -> list[Section]:
    records = []
    for line in (line for line in text.splitlines() if line.strip()):
        try:
            records.append(json.loads(line))
        except ValueError:  # a bad line is skipped like a row without an answer
            records.append(None)
    return _faq_sections(records)
