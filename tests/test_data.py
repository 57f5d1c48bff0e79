import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kochat.errors import UserError
from kochat.data import Columns, load_rows
from support import write

EOT = "<|endoftext|>"


def load(path, template, columns=Columns(), max_chars=20_000):
    return load_rows(str(path), columns, template, max_chars)


def jsonl(rows):
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def test_each_local_format_reads_the_same_rows(tmp_path, koalpaca_template):
    rows = [{"instruction": "한국의 수도는?", "input": "", "output": "서울입니다."},
            {"instruction": "반대말은?", "input": "크다", "output": "작다"}]
    files = [write(tmp_path / "a.jsonl", jsonl(rows)),
             write(tmp_path / "a.json", json.dumps(rows, ensure_ascii=False)),
             write(tmp_path / "a.csv", "instruction,input,output\n한국의 수도는?,,서울입니다.\n반대말은?,크다,작다\n"),
             write(tmp_path / "a.tsv", "instruction\tinput\toutput\n한국의 수도는?\t\t서울입니다.\n반대말은?\t크다\t작다\n")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    files.append(tmp_path / "a.parquet")
    for f in files:
        got, report = load(f, koalpaca_template)
        assert [(r["instruction"], r["input"], r["output"]) for r in got] == \
               [("한국의 수도는?", "", "서울입니다."), ("반대말은?", "크다", "작다")], f.name
        assert (report.read, report.kept, report.skipped) == (2, 2, 0)


def test_bad_rows_are_skipped_and_counted_with_their_reasons(tmp_path, koalpaca_template):
    lines = [
        {"instruction": "좋은 질문", "output": "좋은 답"},
        {"instruction": "답이 없음"},
        {"instruction": "빈 답", "output": "   "},
        {"instruction": "", "output": "질문이 비었음"},
        {"instruction": 42, "output": "숫자 질문"},
        {"instruction": "입력이 숫자", "input": 3, "output": "답"},
        {"instruction": "널 바이트", "output": "a\x00b"},
        {"instruction": "아주 긴 행", "output": "가" * 500},
        "{not json",
        "[1, 2]",
        {"text": "### 질문: 렌더된 행\n\n### 답변: 렌더된 답<|endoftext|>"},
        {"text": "### 질문: 표시가 없는 행"},
        {"text": "### 질문: 답이 빈 행\n\n### 답변: <|endoftext|>"},
        {"other": "열이 다름"},
    ]
    rows, report = load(write(tmp_path / "mixed.jsonl", jsonl(lines)), koalpaca_template, max_chars=300)
    assert [r["instruction"] or r["text"][:13] for r in rows] == ["좋은 질문", "### 질문: 렌더된 행"]
    assert report.read == 14 and report.kept == 2
    assert report.reasons == {
        "missing 'output'": 1, "empty answer": 2, "empty question": 1, "'instruction' is not text (int)": 1,
        "'input' is not text (int)": 1, "contains a NUL byte": 1, "longer than MAX_CHARS (300 characters)": 1,
        "not valid JSON (Expecting property name enclosed in double quotes)": 1,
        "not an object with named fields": 1, "'text' lacks the response marker '### 답변:'": 1,
        "no 'instruction'/'output', 'text' or 'messages' field": 1}
    assert report.first_row["missing 'output'"] == 2
    assert "  skipped 2 × empty answer (first: line 3)" in report.lines()


def test_skipped_rows_are_named_where_a_spreadsheet_or_editor_shows_them(tmp_path, koalpaca_template):
    sheet = ("instruction,output\n"             # row 1: the header
             "좋은 질문,좋은 답\n"                # row 2
             "\n"                                 # row 3: blank
             "여러 줄 질문,\"첫 줄\n둘째 줄\"\n"     # row 4, two lines of the file
             "빈 답,\n")                          # row 5
    _, report = load(write(tmp_path / "faq.csv", sheet), koalpaca_template)
    assert (report.read, report.kept) == (3, 2)
    assert "  skipped 1 × empty answer (first: row 5)" in report.lines()
    lines = '{"instruction": "좋은 질문", "output": "좋은 답"}\n\n{"instruction": "빈 답", "output": ""}\n'
    _, report = load(write(tmp_path / "faq.jsonl", lines), koalpaca_template)
    assert "  skipped 1 × empty answer (first: line 3)" in report.lines()  # the blank line 2 counted


def test_configurable_columns(tmp_path, koalpaca_template):
    f = write(tmp_path / "qa.csv", "Q,A\n연차는 며칠인가요?,15일입니다.\n")
    rows, _ = load(f, koalpaca_template, columns=Columns(question="Q", answer="A"))
    assert rows[0]["instruction"] == "연차는 며칠인가요?" and rows[0]["output"] == "15일입니다."


def test_bom_and_json_lines_under_a_json_name_are_fine(tmp_path, koalpaca_template):
    f = write(tmp_path / "bom.csv", "\ufeffinstruction,output\n질문,답\n")
    assert load(f, koalpaca_template)[0][0]["instruction"] == "질문"
    f = write(tmp_path / "lines.json", jsonl([{"instruction": f"질문 {i}", "output": "답"} for i in range(2)]))
    assert load(f, koalpaca_template)[1].kept == 2


@pytest.mark.parametrize("name, content, message", [
    ("cp949.csv", "instruction,output\n질문,답\n".encode("cp949"), "is not UTF-8 (bad byte 0x"),
    ("broken.json", '[{"instruction": "a", ', "is not valid JSON: Expecting"),
    ("scalar.json", '"just text"', "should hold a JSON array of rows"),
    ("dup.csv", "instruction,output,output\n질문,답,답\n", "duplicate columns: output"),
    ("wrong.csv", "Q,A\n질문,답\n", "has columns [A, Q], none of 'instruction', 'output' or 'text'"),
    ("wide.csv", "instruction,output\n질문,답,더\n", "no row could be read (the first: more fields than the header's 2)"),
    ("quote.csv", 'instruction,output\n질문,답\n"연차는,15일\n휴가는,3일\n', "a quote opened on line 3 is never"),
    ("table.jsonl", "instruction,output\n질문,답\n", "is not JSON Lines: no line is valid JSON (the first: not valid JSON"),
    ("empty_answers.jsonl", jsonl([{"instruction": "q", "output": ""}] * 3), "no usable rows in"),
    ("notes.txt", "hello", "unsupported file type .txt"),
    ("broken.parquet", b"PAR1 not really", "is not a readable Parquet file"),
])
def test_unusable_files_stop_with_one_clear_line(tmp_path, koalpaca_template, name, content, message):
    with pytest.raises(UserError) as e:
        load(write(tmp_path / name, content), koalpaca_template)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_stray_quote_inside_a_field_is_read_leniently_as_before(tmp_path, koalpaca_template):
    """Only a quote never closed stops the file (above); one inside a field loses no row."""
    f = write(tmp_path / "quoted.csv", 'instruction,output\n"그는 "안녕"이라고 말했다",답\n휴가는?,3일\n')
    rows = load(f, koalpaca_template)[0]
    assert [r["output"] for r in rows] == ["답", "3일"] and "안녕" in rows[0]["instruction"]


def test_no_usable_rows_says_why_and_what_to_do(tmp_path, koalpaca_template):
    with pytest.raises(UserError) as e:
        load(write(tmp_path / "empty.jsonl", ""), koalpaca_template)
    assert str(e.value).endswith("empty.jsonl: it holds no rows; add question/answer rows (columns 'instruction', "
                                 "'output', optional 'input') or point --data at another file")
    with pytest.raises(UserError) as e:
        load(write(tmp_path / "bad.jsonl", jsonl([{"instruction": "q", "output": ""}] * 3)), koalpaca_template)
    assert "all 3 rows were skipped (3 × empty answer); fix those rows, or name the right columns with " \
           "--question_column=… --answer_column=…" in str(e.value)


def test_a_missing_file_says_where_it_looked(tmp_path, koalpaca_template):
    with pytest.raises(UserError, match="data file ./nope.jsonl not found"):
        load_rows("./nope.jsonl", Columns(), koalpaca_template, 100)


def test_an_unreachable_hub_dataset_says_how_to_bring_it_in(koalpaca_template):
    with pytest.raises(UserError) as e:
        load_rows("beomi/KoAlpaca-v1.1a", Columns(), koalpaca_template, 100)
    assert "hf download beomi/KoAlpaca-v1.1a --repo-type dataset" in str(e.value)
    assert "HF_HUB_OFFLINE=1 is honoured" in str(e.value)


def test_a_folder_of_data_files_loads_through_datasets(tmp_path, koalpaca_template):
    folder = tmp_path / "KoAlpaca-v1.1a"
    folder.mkdir()
    write(folder / "train.jsonl", jsonl([{"instruction": f"질문 {i}", "output": "답", "url": "https://x"} for i in range(3)]))
    rows, report = load(folder, koalpaca_template)
    assert report.kept == 3 and rows[0]["output"] == "답"


def test_a_folder_that_datasets_cannot_read_says_why(tmp_path, koalpaca_template):
    (tmp_path / "odd").mkdir()
    write(tmp_path / "odd" / "a.jsonl", jsonl([{"instruction": "질문", "output": "답"}]))
    write(tmp_path / "odd" / "b.jsonl", jsonl([{"q": "질문", "a": "답"}]))  # other columns
    with pytest.raises(UserError) as e:  # not datasets' "An error occurred while generating the dataset"
        load(tmp_path / "odd", koalpaca_template)
    assert str(e.value).startswith(f"cannot read the folder {tmp_path / 'odd'} as a dataset (")
    assert "because column names don't match" in str(e.value)
    assert "point --data at one of its data files" in str(e.value)
