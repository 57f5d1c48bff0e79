"""kochat.documents.readers on the project's sample documents (data/company_docs) and on bad files made here."""
import codecs
import io
import json
import logging
import random
import unicodedata
import zipfile
from pathlib import Path

import pytest

from kochat.documents.readers import SUPPORTED, Section, Unreadable, decode_text, read_document

DOCS = Path(__file__).resolve().parents[2] / "data" / "company_docs"


def by_heading(sections):
    return {s.heading: s for s in sections}


def unreadable(path, *words, **kwargs) -> str:
    """read_document(path) raises Unreadable whose message is one line holding every word."""
    with pytest.raises(Unreadable) as caught:
        read_document(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, (word, message)
    return message


def write(tmp_path, name, data) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# --- the sample documents ---------------------------------------------------------------------------------

def test_markdown_sections_follow_heading_levels():
    sections = read_document(DOCS / "취업규칙.md")
    assert all(s.page is None and s.row is None for s in sections)
    assert sections[0].heading == "한빛소프트 취업규칙" and "시행 2024년 1월 1일" in sections[0].text
    leave = by_heading(sections)["한빛소프트 취업규칙 > 제2장 근무 > 제12조 연차휴가"]
    assert "입사 1년 미만인 직원에게는 1개월 개근 시 1일의 유급휴가를 준다." in leave.text
    assert "1년 이상 근속한 직원에게는 15일의 연차휴가를 준다." in leave.text
    assert "최대 25일" in leave.text and "병가" not in leave.text
    headings = [s.heading for s in sections]
    assert "한빛소프트 취업규칙 > 제2장 근무 > 제10조 근무시간" in headings
    assert "한빛소프트 취업규칙 > 제1장 총칙 > 제1조 목적" in headings
    assert headings[-1] == "한빛소프트 취업규칙 > 부칙"  # a ## after ### pops back to the chapter level
    holidays = by_heading(sections)["한빛소프트 취업규칙 > 제2장 근무 > 제14조 휴일"].text
    assert "근로자의 날 | 5월 1일 | 유급" in holidays and "---" not in holidays
    assert not any("**" in s.text or "#" in s.text for s in sections)


def test_docx_headings_and_table_in_body_order():
    sections = read_document(DOCS / "출장비_규정.docx")
    # Word's Title style heads the document, as markdown's #: no passage of the title alone
    title = "한빛소프트 출장비 규정"
    assert sections[0].heading == title and sections[0].text.startswith("제정 2022년 3월 2일")
    assert [s.heading.removeprefix(f"{title} > ") for s in sections[1:4]] == [
        "제1장 총칙 > 제1조 목적", "제1장 총칙 > 제2조 출장의 구분", "제2장 국내 출장 > 제5조 일비"]
    lodging = by_heading(sections)[f"{title} > 제2장 국내 출장 > 제6조 숙박비"].text.split("\n")
    assert lodging == ["숙박비는 1박당 아래 상한 안에서 실비로 지급한다. 상한을 넘는 금액은 본인이 부담한다.",
                       "지역 | 일비(1일) | 숙박비 상한(1박)",
                       "서울특별시 | 25,000원 | 100,000원",
                       "그 밖의 지역 | 25,000원 | 80,000원"]
    assert "복귀 후 7일 이내" in by_heading(sections)[f"{title} > 제4장 정산 > 제15조 정산 기한"].text


def test_docx_korean_heading_styles_outline_levels_and_merged_cells(tmp_path):
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    document = docx.Document()
    document.styles.add_style("제목 1", WD_STYLE_TYPE.PARAGRAPH)  # what Korean Word may save
    document.add_paragraph("제1장 총칙", style="제목 1")
    outlined = document.add_paragraph("제1조 목적")
    level = OxmlElement("w:outlineLvl")
    level.set(qn("w:val"), "1")  # outline level 2, set on the paragraph, not by a heading style
    outlined._p.get_or_add_pPr().append(level)
    document.add_paragraph("본문")
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "합친 칸"
    table.cell(0, 2).text = "셋째"
    document.save(tmp_path / "a.docx")
    (section,) = read_document(tmp_path / "a.docx")
    assert section.heading == "제1장 총칙 > 제1조 목적" and section.text == "본문\n합친 칸 | 셋째"


def test_hwpx_one_section_per_section_file():
    first, second = read_document(DOCS / "정보보안_규정.hwpx")
    assert first.heading == second.heading == "" and first.page is None
    assert "1. 비밀번호는 12자 이상으로 하고" in first.text and "90일마다 변경" in first.text
    assert "VPN" in second.text and "VPN" not in first.text
    assert "악성코드 의심 메일 | 보안팀 내선 1234 | 1시간 이내" in second.text.split("\n")
    assert "제10조 외부 저장장치" in second.text


def test_hwpx_reads_sections_in_the_order_of_content_hpf(tmp_path):
    with zipfile.ZipFile(DOCS / "정보보안_규정.hwpx") as z:
        parts = {name: z.read(name) for name in z.namelist()}
    hpf = parts["Contents/content.hpf"].decode()
    a, b = '<opf:itemref idref="section0" linear="yes"/>', '<opf:itemref idref="section1" linear="yes"/>'
    parts["Contents/content.hpf"] = hpf.replace(a + b, b + a).encode()
    first, _ = read_document(write(tmp_path, "x.hwpx", make_zip(parts)))
    assert "VPN" in first.text


def test_hwpx_tabs_line_breaks_and_nested_paragraphs(tmp_path):
    hp = "http://www.hancom.co.kr/hwpml/2011/paragraph"
    section = (f'<hs:sec xmlns:hs="http://www.hancom.co.kr/hwpml/2011/section" xmlns:hp="{hp}"><hp:p><hp:run>'
               '<hp:t>가<hp:tab/>나<hp:lineBreak/>다</hp:t><hp:footNote><hp:subList><hp:p><hp:run><hp:t>각주'
               '</hp:t></hp:run></hp:p></hp:subList></hp:footNote><hp:t>라</hp:t></hp:run></hp:p></hs:sec>')
    path = write(tmp_path, "a.hwpx", make_zip({"mimetype": b"application/hwp+zip",
                                               "Contents/section0.xml": section.encode()}))
    assert read_document(path) == [Section("가 나\n다\n각주\n라", None, "", None)]


def test_pdf_one_section_per_page():
    sections = read_document(DOCS / "복리후생_안내.pdf")
    assert [s.page for s in sections] == [1, 2, 3] and all(s.heading == "" for s in sections)
    assert "한빛소프트 복리후생 안내" in sections[0].text and "1,000,000원" in sections[0].text
    assert "연 100만원" in sections[1].text and "월 5만원" in sections[1].text
    assert "내선 3100" in sections[2].text


def test_csv_faq_rows():
    sections = read_document(DOCS / "사내_FAQ.csv")
    assert [s.row for s in sections] == list(range(2, 17))  # as the sheet numbers them: header = 1
    second = sections[1]
    assert second.heading == "남은 연차 일수는 어디서 보나요?"
    assert second.text == second.heading + "\n" + "한빛포털 첫 화면의 [나의 근태] 상자에 올해 받은 연차와 쓴 연차, 남은 연차가 나옵니다."
    assert any("명함" in s.heading for s in sections) and any("주차" in s.heading for s in sections)


def test_cp949_text_with_crlf():
    raw = (DOCS / "회의실_이용_안내.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # so the file really tests the CP949 fallback
    (section,) = read_document(DOCS / "회의실_이용_안내.txt")
    assert section == Section(section.text, None, "", None)
    assert "회의실 예약은 한빛포털의 [회의실] 메뉴에서 합니다." in section.text.split("\n")
    assert "\r" not in section.text


def test_html_headings_table_and_no_script():
    sections = read_document(DOCS / "사내_동호회.html")
    assert [s.heading for s in sections] == [
        "한빛소프트 사내 동호회", "한빛소프트 사내 동호회 > 동호회 목록",
        "한빛소프트 사내 동호회 > 가입과 활동 > 가입 방법", "한빛소프트 사내 동호회 > 가입과 활동 > 새 동호회 만들기"]
    text = "\n".join(s.text for s in sections)
    assert "한빛 축구회 | 격주 토요일 오전 | 김민준 | 내선 4101" in sections[1].text.split("\n")
    assert "1인당 월 2만원의 활동비" in sections[0].text
    assert "내면\n심사를" in sections[3].text  # <br>
    for gone in ("trackVisit", "방문 기록", "border-collapse", "자바스크립트", "한빛포털 홈"):
        assert gone not in text


def test_html_title_is_the_outer_heading_without_h1(tmp_path):
    path = write(tmp_path, "a.htm", "<?xml version='1.0' encoding='utf-8'?><html><head><title>안내</title></head>"
                                    "<body><p>첫 문단</p><h2>절</h2><p>둘째<!-- 주석 --> 문단</p></body></html>")
    assert [(s.heading, s.text) for s in read_document(path)] == [("안내", "첫 문단"), ("안내 > 절", "둘째 문단")]


def test_every_sample_reads_and_the_folder_is_small():
    files = [p for p in DOCS.iterdir() if p.suffix in SUPPORTED]
    assert len(files) == 7 and sum(p.stat().st_size for p in DOCS.iterdir()) < 400_000
    for path in files:
        assert read_document(path), path


# --- text decoding and tidying ------------------------------------------------------------------------------

def test_decode_text_encodings():
    text = "연차휴가 15일"
    assert decode_text(codecs.BOM_UTF8 + text.encode()) == text
    assert decode_text(text.encode("utf-16")) == text  # with its BOM
    assert decode_text(codecs.BOM_UTF16_BE + text.encode("utf-16-be")) == text
    assert decode_text(text.encode("euc-kr")) == text
    assert decode_text("똠방각하".encode("cp949")) == "똠방각하"  # not in EUC-KR, only in CP949


def test_unknown_8bit_encoding(tmp_path):
    raw = "Größe ändern: Übung für 10 Minuten, à côté.".encode("cp1252")
    for encoding in ("utf-8", "cp949"):
        with pytest.raises(UnicodeDecodeError):
            raw.decode(encoding)
    unreadable(write(tmp_path, "a.txt", raw), "not UTF-8, UTF-16 or CP949/EUC-KR", "save it as UTF-8")


def test_nul_bytes_are_binary(tmp_path):
    unreadable(write(tmp_path, "a.txt", b"abc\x00\x01\x02def"), "binary")
    unreadable(write(tmp_path, "a.md", "가".encode("utf-16-le")), "binary")  # UTF-16 without its BOM


def test_text_is_tidied_to_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "연차휴가")
    assert nfd != "연차휴가"
    raw = f"  {nfd}\t\t15일 \u200b\r\n\r\n\x07다음\u3000줄\x0c끝  ".encode()
    (section,) = read_document(write(tmp_path, "a.txt", raw))
    assert section.text == "연차휴가 15일\n다음 줄\n끝"


def test_markdown_text_before_first_heading_and_code_fences(tmp_path):
    md = "머리말\n\n# 가\n본문 [링크](http://x)\n```\n# 코드 주석\n```\n## 나\n- 항목\n# 다\n"
    sections = read_document(write(tmp_path, "a.md", md))
    assert [(s.heading, s.text) for s in sections] == [
        ("", "머리말"), ("가", "본문 링크\n# 코드 주석"), ("가 > 나", "- 항목")]  # 다 has no text


def test_jsonl_faq_rows(tmp_path):
    lines = ['{"instruction": "연차는 며칠?", "input": "3년 근속", "output": "16일입니다."}',
             "not json", "", '{"instruction": "빈 답", "output": ""}', '{"Question": "Q2", "ANSWER": 5}']
    left_out = []
    sections = read_document(write(tmp_path, "a.jsonl", "\n".join(lines)), left_out=left_out)
    assert sections == [Section("연차는 며칠?\n3년 근속\n16일입니다.", None, "연차는 며칠?", 1),
                        Section("Q2\n5", None, "Q2", 5)]  # numbered by line, blank ones counted
    assert left_out == ["2 rows left out: not JSON (row 2); empty answer (row 4)"]  # noted, not dropped silently


def test_faq_rows_left_out_are_noted_and_a_sheet_with_none_to_keep_says_why(tmp_path):
    left_out = []
    sheet = "질문,답변\n" + "".join(f"질문 {i},\n" for i in range(7)) + "연차는?,15일\n,,\n\n,답만 있는 줄\n"
    assert [s.row for s in read_document(write(tmp_path, "a.csv", sheet), left_out=left_out)] == [9]
    # numbered as the sheet shows them; blank rows (",," as Excel writes one, or an empty line) are no rows
    assert left_out == ["8 rows left out: empty answer (rows 2, 3, 4, 5, 6 and 2 more); empty question (row 12)"]
    unreadable(write(tmp_path, "b.csv", "질문,답변\n연차는?,\n"),
               "no row has both a question and an answer: empty answer (row 2)")
    left_out = []
    read_document(write(tmp_path, "c.jsonl", '{"질문": "Q", "답변": "A"}\n{"질문": "답 없음"}\n{"답변": "질문 없음"}\n'),
                  left_out=left_out)
    assert left_out == ["2 rows left out: no answer field (row 2); no question field (row 3)"]


def test_a_title_row_above_the_header_is_passed_over(tmp_path):
    sheet = "인사팀 FAQ (2024.01 기준),,\n\n분류,질문,답변\n근태,연차는 며칠?,15일입니다.\n"
    assert read_document(write(tmp_path, "a.csv", sheet)) == [
        Section("연차는 며칠?\n15일입니다.\n분류: 근태", None, "연차는 며칠?", 4)]  # the sheet's row 4
    for title in ("인사팀 FAQ", "FAQ, 2024;;"):  # the delimiter is the one that shows the header, not the title's
        assert read_document(write(tmp_path, "b.csv", f"{title}\n질문;답변\n연차는?;15일\n")) == [
            Section("연차는?\n15일", None, "연차는?", 3)]
    # a data row that happens to hold "q" and "a" below an unknown header is no header: the header must be named
    unreadable(write(tmp_path, "c.csv", "번호,문의,회신\n1,q,a\n2,연차?,15일\n"), "no question/answer columns")


def test_a_short_row_has_empty_cells_and_a_json_string_may_hold_a_line_separator(tmp_path):
    left_out = []
    assert read_document(write(tmp_path, "a.csv", "질문,답변\n연차는?,15일\n병가?\n"), left_out=left_out) == [
        Section("연차는?\n15일", None, "연차는?", 2)]
    assert left_out == ["1 row left out: empty answer (row 3)"]  # an empty cell, not "no answer field"
    line = json.dumps({"질문": "줄\u2028바꿈?", "답변": "네"}, ensure_ascii=False)  # U+2028 written as it is
    assert [s.row for s in read_document(write(tmp_path, "b.jsonl", line + "\n" + line))] == [1, 2]


def test_faq_columns_besides_question_and_answer_follow_the_answer(tmp_path):
    path = write(tmp_path, "a.csv", "분류,질문,답변,담당\n근태,연차는 며칠?,15일입니다.,인사팀\n복지,헬스장 지원?,월 5만원.,\n")
    assert read_document(path) == [Section("연차는 며칠?\n15일입니다.\n분류: 근태\n담당: 인사팀", None, "연차는 며칠?", 2),
                                   Section("헬스장 지원?\n월 5만원.\n분류: 복지", None, "헬스장 지원?", 3)]
    line = ('{"instruction": "Q", "output": "A", "url": "https://wiki/q", "tags": ["연차", "휴가"], "ok": true, '
            '"id": 7, "score": NaN, "meta": {"a": 1}}')
    assert read_document(write(tmp_path, "a.jsonl", line)) == [
        Section("Q\nA\nurl: https://wiki/q\ntags: 연차, 휴가\nid: 7", None, "Q", 1)]


def test_an_unquoted_comma_stays_in_the_answer_wherever_its_column_is(tmp_path):
    path = write(tmp_path, "a.csv", "질문,답변\n연차는 며칠?,15일, 단 첫해는 11일\n")
    assert read_document(path) == [Section("연차는 며칠?\n15일, 단 첫해는 11일", None, "연차는 며칠?", 2)]
    path = write(tmp_path, "b.csv", "질문,답변,분류\n정산은?,영수증, 보고서를 첨부합니다.,출장\n짧은 답?,네.,기타,\n")
    assert read_document(path) == [Section("정산은?\n영수증, 보고서를 첨부합니다.\n분류: 출장", None, "정산은?", 2),
                                   Section("짧은 답?\n네.\n분류: 기타", None, "짧은 답?", 3)]  # a comma at the end


def test_a_faq_sheet_with_a_column_name_twice_is_refused_in_one_line(tmp_path):
    unreadable(write(tmp_path, "a.csv", "질문,답변,답변\n연차는?,15일,11일\n"), "duplicate columns: 답변")


def test_tsv_faq_rows(tmp_path):
    path = write(tmp_path, "a.tsv", "질문\t답변\n연차는 며칠?\t15일, 첫해는 11일\n")
    assert read_document(path) == [Section("연차는 며칠?\n15일, 첫해는 11일", None, "연차는 며칠?", 2)]


def test_csv_semicolons_and_bom(tmp_path):
    path = write(tmp_path, "a.csv", codecs.BOM_UTF8 + "제목;내용\n주차;3시간 무료\n".encode())
    assert read_document(path) == [Section("주차\n3시간 무료", None, "주차", 2)]


# --- bad files ----------------------------------------------------------------------------------------------

def test_empty_files(tmp_path):
    unreadable(write(tmp_path, "a.txt", b""), "empty")
    unreadable(write(tmp_path, "a.md", " \n\t\n"), "empty")
    unreadable(write(tmp_path, "a.pdf", b""), "empty")
    unreadable(write(tmp_path, "a.html", "<html><body><script>x()</script></body></html>"), "empty")
    unreadable(write(tmp_path, "a.csv", "question,answer\n"), "empty")


def test_damaged_pdf(tmp_path, caplog):
    raw = (DOCS / "복리후생_안내.pdf").read_bytes()
    with caplog.at_level(logging.WARNING):
        unreadable(write(tmp_path, "a.pdf", raw[: len(raw) // 2]), "not a readable PDF (damaged?)")
        unreadable(write(tmp_path, "b.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4), "not a readable PDF")
        unreadable(write(tmp_path, "c.pdf", b"this is not a PDF at all"), "not a readable PDF")
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # pypdf kept quiet
    assert logging.getLogger("pypdf").level == logging.NOTSET  # and its level put back


def _pdf(tmp_path, name, **encrypt) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(DOCS / "복리후생_안내.pdf"))
    if encrypt:
        writer.encrypt(**encrypt)
    buffer = io.BytesIO()
    writer.write(buffer)
    return write(tmp_path, name, buffer.getvalue())


def test_encrypted_pdf(tmp_path):
    unreadable(_pdf(tmp_path, "user.pdf", user_password="secret", owner_password="owner"),
               "encrypted PDF", "without a password")
    unreadable(_pdf(tmp_path, "aes.pdf", user_password="secret", algorithm="AES-256"), "encrypted PDF")
    sections = read_document(_pdf(tmp_path, "owner.pdf", user_password="", owner_password="owner"))
    assert [s.page for s in sections] == [1, 2, 3] and "연 100만원" in sections[1].text


def test_pdf_without_text(tmp_path):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    buffer = io.BytesIO()
    writer.write(buffer)
    unreadable(write(tmp_path, "scan.pdf", buffer.getvalue()), "no text layer", "OCR")


def test_damaged_docx(tmp_path):
    unreadable(write(tmp_path, "a.docx", random.Random(1).randbytes(3000)), "not a readable DOCX (damaged?)")
    unreadable(write(tmp_path, "b.docx", make_zip({"hello.txt": b"hi"})), "not a readable DOCX")
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)  # what Word writes for a password-protected file
    unreadable(write(tmp_path, "c.docx", ole), "password", "legacy .doc")


def test_damaged_hwpx(tmp_path):
    parts = {"mimetype": b"application/hwp+zip", "version.xml": b"<v/>", "Contents/header.xml": b"<h/>"}
    unreadable(write(tmp_path, "a.hwpx", make_zip(parts)), "HWPX", "section0.xml")
    parts["Contents/section0.xml"] = b"<hs:sec xmlns:hs='x'><unclosed>"
    unreadable(write(tmp_path, "b.hwpx", make_zip(parts)), "not a readable HWPX")
    unreadable(write(tmp_path, "c.hwpx", b"PK\x03\x04 truncated"), "not a readable HWPX")
    unreadable(write(tmp_path, "d.hwpx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)), "legacy .hwp")


def test_zip_bomb_is_refused_before_parsing(tmp_path):
    parts = {"Contents/section0.xml": b"<a>" + b" " * 3_000_000 + b"</a>"}
    unreadable(write(tmp_path, "a.hwpx", make_zip(parts)), "unpacks to more than", max_bytes=500_000)


def test_refused_types_size_and_missing_files(tmp_path):
    unreadable(write(tmp_path, "규정.hwp", b"\xd0\xcf\x11\xe0"), "legacy .hwp is not read", "HWPX or PDF")
    # office files of another kind: what to save them as
    unreadable(write(tmp_path, "a.xlsx", b"PK"), "spreadsheets are not read", "CSV (question and answer columns)")
    unreadable(write(tmp_path, "a.doc", b"\xd0\xcf\x11\xe0"), "legacy Word .doc is not read", "DOCX or PDF")
    unreadable(write(tmp_path, "a.PPTX", b"PK"), "slides are not read", "PDF")
    message = unreadable(write(tmp_path, "a.zip", b"PK"), "unsupported file type .zip")
    assert all(suffix in message for suffix in SUPPORTED)
    unreadable(write(tmp_path, "noext", b"x"), "unsupported file type (none)")
    unreadable(write(tmp_path, "big.txt", b"a" * 2_000_001), "larger than 2 MB", "MAX_FILE_MB", max_bytes=2_000_000)
    assert read_document(write(tmp_path, "fits.txt", b"a" * 2_000_000), max_bytes=2_000_000)
    unreadable(tmp_path / "missing.txt", "cannot read", "No such file")
    (tmp_path / "folder.md").mkdir()
    unreadable(tmp_path / "folder.md", "cannot read")


def test_faq_without_question_and_answer_columns(tmp_path):
    unreadable(write(tmp_path, "a.csv", "이름,전화\n김민준,4101\n"), "no question/answer columns", "질문 and 답변")
    unreadable(write(tmp_path, "a.jsonl", '{"text": "### 질문: 가\\n\\n### 답변: 나"}\n'), "no question/answer")


# --- random damage to the binary samples: an Unreadable or sections, never another exception ---------------

def make_zip(parts: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return buffer.getvalue()


def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    kind = rng.randrange(4)
    if kind == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # cut short
        del data[rng.randrange(1, len(data)):]
    elif kind == 2:  # drop a chunk
        start = rng.randrange(len(data))
        del data[start:start + rng.randint(1, 2000)]
    else:  # insert junk
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    return bytes(data)


@pytest.mark.parametrize("name, count", [("복리후생_안내.pdf", 80), ("출장비_규정.docx", 80),
                                         ("정보보안_규정.hwpx", 200)])
def test_random_damage_never_escapes(tmp_path, name, count):
    raw = (DOCS / name).read_bytes()
    rng = random.Random(name)
    inner = {}
    if raw.startswith(b"PK"):  # damage inside the XML too, not only the zip (whose CRCs catch most flips)
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            inner = {n: z.read(n) for n in z.namelist()}
        xml_names = sorted(n for n in inner if n.endswith((".xml", ".hpf", ".rels")))
    outcomes = {"read": 0, "unreadable": 0}
    for i in range(count):
        if inner and i % 2:
            parts = dict(inner)
            target = rng.choice(xml_names)
            parts[target] = mutate(parts[target], rng)
            data = make_zip(parts)
        else:
            data = mutate(raw, rng)
        path = write(tmp_path, f"{i}{Path(name).suffix}", data)
        try:
            sections = read_document(path)
        except Unreadable as e:
            assert "\n" not in str(e) and str(e)
            outcomes["unreadable"] += 1
        else:
            assert sections and all(isinstance(s, Section) and s.text for s in sections)
            outcomes["read"] += 1
    assert outcomes["unreadable"] > 0, outcomes
