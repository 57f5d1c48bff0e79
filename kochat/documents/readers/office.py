"""The office formats, each a binary file read with its library: PDF (pypdf, its logging silenced during a
read), DOCX (python-docx) and HWPX (Hancom's zipped XML, read with lxml). DOCX and HWPX are zip packages,
opened by `_open_zip`, which refuses a zip bomb and tells a legacy or password-protected OLE file by its magic.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import warnings
import zipfile

from .base import Builder, Section, Unreadable, reason, tidy

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .hwp/.doc, and password-protected Office files
_HWP_TAG = re.compile(r"\{http://www\.hancom\.co\.kr/hwpml/\d{4}/paragraph\}(\w+)")  # hp: (2011), hp10: (2016)
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


def read_pdf(raw: bytes, max_bytes: int) -> list[Section]:
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
            raise Unreadable(f"not a readable PDF (damaged?): {reason(e)}") from None
    if not any(tidy(p.text) for p in pages):
        raise Unreadable("PDF has no text layer (a scan?): run OCR on it first")
    return pages


def _open_zip(raw: bytes, kind: str, max_bytes: int) -> zipfile.ZipFile:
    if raw.startswith(OLE_MAGIC):
        old = "legacy .hwp" if kind == "HWPX" else "legacy .doc"
        raise Unreadable(f"password-protected or a {old} file: save it again as {kind} without a password")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        unpacked = sum(i.file_size for i in archive.infolist() if i.filename.endswith((".xml", ".rels", ".hpf")))
    except Exception as e:
        raise Unreadable(f"not a readable {kind} (damaged?): {reason(e)}") from None
    if unpacked > 4 * max_bytes:  # a zip bomb (or a damaged size) would exhaust memory when parsed
        raise Unreadable(f"its XML unpacks to more than {4 * max_bytes / 1e6:g} MB (damaged?): split it")
    return archive


def read_docx(raw: bytes, max_bytes: int) -> list[Section]:
    import docx
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _open_zip(raw, "DOCX", max_bytes)
    out = Builder()

    def level(par: Paragraph) -> int | None:
        style = par.style
        name = (style.name or "") if style is not None else ""
        if re.fullmatch(r"title|제목", name, re.I):  # the document's title: above every heading, as markdown's #
            return 0
        m = re.fullmatch(r"(?:heading|제목)\s*([1-9])", name, re.I)
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
                if depth is not None:
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
        raise Unreadable(f"not a readable DOCX (damaged?): {reason(e)}") from None
    return out.done()


def read_hwpx(raw: bytes, max_bytes: int) -> list[Section]:
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
            raise Unreadable(f"not a readable HWPX (damaged or password-protected?): {reason(e)}") from None
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

