"""`python index_ko.py` as a user runs it: build, update, search (text, JSON, a file of questions), bad input."""
import json
import shutil

from kochat import PROJECT_ROOT

DOCS = PROJECT_ROOT / "data" / "company_docs"


def test_build_update_and_search_as_a_user_does(run_script, tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "docs" / "old.hwp").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64))
    built = run_script("index_ko.py", "--docs=docs", "--index=idx", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    lines = built.stdout.splitlines()
    assert lines[0] == "[1] indexing docs -> idx"
    assert lines[1].startswith("files read: 7   unchanged: 0   removed: 0   skipped: 1   passages: ")
    assert lines[2] == "      skipped old.hwp: legacy .hwp is not read: save it as HWPX or PDF in Hancom Office"
    assert "Traceback" not in built.stderr

    (tmp_path / "docs" / "사내_동호회.html").unlink()
    forgot = run_script("index_ko.py", "--index=idx", cwd=tmp_path)  # --docs left out: the sample documents
    assert forgot.returncode == 2 and "indexes " in forgot.stderr and "pass --docs=" in forgot.stderr
    updated = run_script("index_ko.py", "--docs=docs", "--index=idx", cwd=tmp_path)
    assert updated.stdout.splitlines()[1].startswith("files read: 0   unchanged: 6   removed: 1   skipped: 1")
    assert "reads it when restarted" in updated.stdout
    again = run_script("index_ko.py", "--docs=docs", "--index=idx", cwd=tmp_path)
    assert "nothing changed: the index is as it was" in again.stdout and "restarted" not in again.stdout

    found = run_script("index_ko.py", "--index=idx", "--search=서울 출장 숙박비 상한은?", "--top_k=2", cwd=tmp_path)
    assert found.returncode == 0 and found.stdout.startswith("[1] ") and "출장비_규정.docx · 제6조 숙박비" in found.stdout
    assert found.stdout.count("\n[") == 1  # two hits
    as_json = run_script("index_ko.py", "--index=idx", "--search=휴가 신청 방법", "--json=true", cwd=tmp_path)
    hits = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(hits) == 5 and hits[0]["question"] == "휴가 신청 방법" and hits[0]["n"] == 1
    assert {"source", "page", "heading", "text", "score", "relevance"} <= set(hits[0])
    nothing = run_script("index_ko.py", "--index=idx", "--search=qwxz", "--json=true", cwd=tmp_path)
    assert nothing.returncode == 0 and nothing.stdout == "" and "no passage matches 'qwxz'" in nothing.stderr

    (tmp_path / "qs.txt").write_text("# 질문 목록\n본인 결혼 경조금은?\n회의실 예약은 몇 시간까지?\n주식 투자 추천해 주세요\n",
                                     encoding="utf-8")
    searched = run_script("index_ko.py", "--index=idx", "--search_file=qs.txt", "--top_k=3", cwd=tmp_path)
    assert searched.returncode == 0 and "3 questions searched" in searched.stdout
    assert searched.stdout.splitlines()[-2:] == ['1 would be answered "not covered" (no passage reaches relevance 0.3):',
                                                 "    주식 투자 추천해 주세요"]
    rows = [json.loads(line) for line in (tmp_path / "qs.hits.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["question"], r["covered"]) for r in rows] == [
        ("본인 결혼 경조금은?", True), ("회의실 예약은 몇 시간까지?", True), ("주식 투자 추천해 주세요", False)]
    rows = rows[:2]
    assert rows[0]["hits"][0]["source"] == "복리후생_안내.pdf" and rows[0]["hits"][0]["page"] == 1
    assert all(1 <= len(r["hits"]) <= 3 and [h["n"] for h in r["hits"]] == list(range(1, len(r["hits"]) + 1)) for r in rows)


def test_bad_input_is_one_line(run_script, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-bad").mkdir()
    (tmp_path / "only-bad" / "scan.pdf").write_bytes(b"%PDF-1.4 broken")
    for args, message in [(["--docs=missing"], "error: --docs=missing does not exist: give a folder of documents"),
                          (["--index=nowhere", "--search=연차"], "error: nowhere is not an index folder"),
                          (["--docs=empty", "--index=idx"], "error: no passages: empty holds no readable document"),
                          (["--index=idx", "--search=연차", "--top_k=0"], "error: --top_k must be at least 1, not 0"),
                          (["--index=idx", "--search="], "error: --search is empty: give a question"),  # no update
                          (["--index=idx", "--search_file", " "], "error: --search_file is empty"),
                          (["--chunk_chars=10"], "error: --chunk_chars must be at least 50, not 10"),
                          (["--overlap_chars=900"], "error: --overlap_chars must be from 0 to less than --chunk_chars"),
                          (["--docs=only-bad", "--index=bad"], "error: no passages: only-bad holds no readable document"),
                          (["--docs=", "--index=idx"], "error: --docs is empty: name a folder"),  # not the working one
                          (["--max_file_mb=inf"], "error: --max_file_mb must be a number above 0, not inf"),
                          (["--bm25_k1=nan"], "error: --bm25_k1 must be a number ≥ 0 and --bm25_b from 0 to 1")]:
        result = run_script("index_ko.py", *args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith(message), (args, result.stderr)
    assert not (tmp_path / "idx").exists() and not (tmp_path / "bad").exists()  # no empty index left behind
    assert "(the folder holds no files)" in run_script("index_ko.py", "--docs=empty", "--index=idx", cwd=tmp_path).stderr
