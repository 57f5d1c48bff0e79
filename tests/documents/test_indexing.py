"""Building and updating an index folder: incremental by content hash, bad files reported, never half-written."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from support import INDEX_SETTINGS

from kochat import PROJECT_ROOT
from kochat.documents import indexing, korean, readers, store
from kochat.documents.retrieval import Searcher
from kochat.errors import UserError


def update(docs, folder, **extra):
    return indexing.update_index(str(docs), str(folder), **{**INDEX_SETTINGS, **extra})


def sources(folder):
    return {p["source"] for p in store.open_index(folder).passages}


def test_every_sample_format_is_indexed_and_an_unchanged_folder_reads_nothing(docs, tmp_path):
    first = update(docs, tmp_path / "index")
    assert (first.read, first.unchanged, first.skipped) == (7, 0, {})
    assert sources(tmp_path / "index") == {"취업규칙.md", "출장비_규정.docx", "정보보안_규정.hwpx", "복리후생_안내.pdf",
                                           "사내_FAQ.csv", "회의실_이용_안내.txt", "사내_동호회.html"}
    again = update(docs, tmp_path / "index")
    assert (again.read, again.unchanged, again.removed, again.passages) == (0, 7, 0, first.passages)
    assert not again.written and again.lines()[-1] == "nothing changed: the index is as it was"
    assert sorted(p.name for p in (tmp_path / "index").glob("g*")) == ["g000001"]  # no copy written
    index = store.open_index(tmp_path / "index")
    assert index.settings["passages"] == first.passages == len(index.passages) and index.settings["files"] == 7
    for n in (1, 2):
        with open(docs / "취업규칙.md", "a", encoding="utf-8") as f:
            f.write(f"\n추가 안내 {n}.\n")
        changed = update(docs, tmp_path / "index")
        assert changed.written and (changed.read, changed.unchanged) == (1, 6)
    # the previous generation stays for readers that opened it; the next update removes it
    assert sorted(p.name for p in (tmp_path / "index").glob("g*")) == ["g000002", "g000003"]
    assert update(docs, tmp_path / "index", b=0.5).written  # a setting changed: written again


def test_changed_files_are_read_again_and_deleted_files_leave(docs, tmp_path):
    update(docs, tmp_path / "index")
    rules = docs / "취업규칙.md"
    rules.write_text(rules.read_text(encoding="utf-8").replace("15일", "17일"), encoding="utf-8")
    (docs / "사내_동호회.html").unlink()
    (docs / "new").mkdir()
    (docs / "new" / "주차_안내.md").write_text("# 주차\n\n지하 2층 주차장은 직원 전용이며 하루 4시간까지 무료입니다.\n",
                                             encoding="utf-8")
    (docs / ".hidden.md").write_text("# 숨김\n\n보이지 않아야 하는 주차 문서.\n", encoding="utf-8")
    report = update(docs, tmp_path / "index")
    assert (report.read, report.unchanged, report.removed) == (2, 5, 1)
    assert "사내_동호회.html" not in sources(tmp_path / "index")
    searcher = Searcher(store.open_index(tmp_path / "index"))
    best = searcher.search("1년 이상 근속하면 연차휴가는 며칠인가요?", top_k=1)[0]
    assert best.source == "취업규칙.md" and "17일" in best.text and "15일" not in best.text
    parking = searcher.search("주차장 무료 시간", top_k=3)
    assert parking[0].source == "new/주차_안내.md" and all(h.source != ".hidden.md" for h in parking)


def test_bad_files_are_skipped_with_one_line_and_reported_again(docs, tmp_path):
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "old.hwp").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    (docs / "empty.txt").write_bytes(b"")
    (docs / "notes.xyz").write_text("무엇", encoding="utf-8")
    faq = '{"질문": "주차 등록은?", "답변": "총무팀에 신청"}\n{"질문": "빈 답", "답변": ""}\n'
    (docs / "faq.jsonl").write_text(faq, encoding="utf-8")
    report = update(docs, tmp_path / "index")
    assert set(report.skipped) == {"scan.pdf", "old.hwp", "empty.txt", "notes.xyz"} and report.read == 8
    assert report.notes == {"faq.jsonl": "1 row left out: empty answer (row 2)"}  # read, and what it left out
    assert "HWPX or PDF" in report.skipped["old.hwp"] and "empty" in report.skipped["empty.txt"]
    lines = report.lines()
    assert lines[0].startswith("files read: 8   unchanged: 0   removed: 0   skipped: 4")
    assert "      faq.jsonl: 1 row left out: empty answer (row 2)" in lines
    assert all("\n" not in line for line in lines)
    assert any(line.strip().startswith("skipped scan.pdf:") for line in lines)
    again = update(docs, tmp_path / "index")
    assert again.read == 0 and set(again.skipped) == set(report.skipped)  # tried again (cheap), reported again
    assert again.notes == report.notes  # unchanged, still leaving its row out: said again
    files = json.loads((store.open_index(tmp_path / "index").generation / "files.json").read_text(encoding="utf-8"))
    assert "skipped" in files["old.hwp"] and files["취업규칙.md"]["passages"] > 0
    (docs / "notes.xyz").unlink()  # junk gone held no passages: not a removed document
    (docs / "사내_동호회.html").unlink()
    assert update(docs, tmp_path / "index").removed == 1


def test_cp949_text_is_indexed_as_korean(docs, tmp_path):
    update(docs, tmp_path / "index")
    hits = Searcher(store.open_index(tmp_path / "index")).search("회의실 예약 시간", top_k=5)
    assert any(h.source == "회의실_이용_안내.txt" and "예약" in h.text for h in hits)


def test_changed_chunks_analysis_or_readers_reread_everything_and_bad_folders_are_one_line(docs, tmp_path,
                                                                                           monkeypatch):
    update(docs, tmp_path / "index")
    assert update(docs, tmp_path / "index", chunk_chars=300).read == 7
    assert update(docs, tmp_path / "index", chunk_chars=300).read == 0
    monkeypatch.setattr(korean, "ANALYSIS", korean.ANALYSIS + 1)  # terms made another way: every file read again
    assert update(docs, tmp_path / "index", chunk_chars=300).read == 7
    assert store.out_of_date(store.open_index(tmp_path / "index")) is None
    monkeypatch.setattr(readers, "VERSION", readers.VERSION + 1)  # files read another way: the same
    line = store.out_of_date(store.open_index(tmp_path / "index"))  # chat and serve say so until it is updated
    assert line == (f"note: {tmp_path / 'index'} was made by an older kochat (FAQ row numbers, among others, are read "
                    f"differently now); update it: python3 index_ko.py --docs={docs.resolve()} --index={tmp_path / 'index'}")
    assert update(docs, tmp_path / "index", chunk_chars=300).read == 7
    assert store.out_of_date(store.open_index(tmp_path / "index")) is None
    with pytest.raises(UserError, match="does not exist: give a folder of documents"):
        update(tmp_path / "missing", tmp_path / "index")
    with pytest.raises(UserError, match="is a file: give a folder that holds the documents"):
        update(docs / "취업규칙.md", tmp_path / "index")
    with pytest.raises(UserError, match="overlap"):
        update(docs, docs / "index")
    with pytest.raises(UserError, match="not an index folder"):
        store.open_index(tmp_path)


def test_a_folder_that_is_not_an_index_is_told_what_to_pass_instead(docs, tmp_path):
    """An HR admin's trial: the hint for a documents folder, or one version of an index, named a command that
    fails (an index inside its documents), or the wrong folder."""
    with pytest.raises(UserError, match=f"a folder of documents.*--docs={docs} --index=outputs/index"):
        store.open_index(docs)
    update(docs, tmp_path / "index")
    version = store.current_generation(tmp_path / "index")
    with pytest.raises(UserError, match=f"one version inside an index: pass the index folder, --index={version.parent}$"):
        store.open_index(version)


@pytest.mark.parametrize("where", ["bm25", "switch"])
def test_an_update_stopped_before_it_finishes_leaves_the_previous_index(docs, tmp_path, monkeypatch, where):
    """Ctrl-C while the new generation is written, or just before it becomes current: the old one stays in use,
    and the next update removes the leftover and finishes."""
    update(docs, tmp_path / "index")
    before = store.open_index(tmp_path / "index")
    (docs / "취업규칙.md").unlink()

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(*(("bm25s.BM25.save", stop) if where == "bm25" else ("kochat.documents.store.os.replace", stop)))
    with pytest.raises(KeyboardInterrupt):
        update(docs, tmp_path / "index")
    monkeypatch.undo()
    after = store.open_index(tmp_path / "index")
    assert after.generation == before.generation and after.passages == before.passages
    assert len(list((tmp_path / "index").glob("g*"))) == 2  # the unfinished one, left for the next update
    report = update(docs, tmp_path / "index")
    assert report.removed == 1 and "취업규칙.md" not in sources(tmp_path / "index")
    after = store.open_index(tmp_path / "index")  # the unfinished one was removed; its name is used again
    assert sorted(p.name for p in (tmp_path / "index").glob("g*")) == [before.generation.name, after.generation.name]


def test_index_ko_killed_at_a_random_moment_leaves_a_usable_index(docs, tmp_path):
    """SIGKILL of the real script at a seeded random moment of an update: the index is the old or the new one,
    whole, and the next run completes."""
    seed = int(os.environ.get("KOCHAT_TEST_SEED", time.time_ns() % 10_000))
    print(f"kill seed {seed} (rerun with KOCHAT_TEST_SEED={seed})")
    for n in range(120):  # enough files that the update takes a while
        (docs / f"memo{n:03d}.md").write_text(f"# 메모 {n}\n\n" + "회의 결과를 공유합니다. 다음 주까지 검토 부탁드립니다. " * 20,
                                               encoding="utf-8")
    index = tmp_path / "index"
    update(docs, index)
    before = store.open_index(index)
    for n in range(1, 120):  # every memo changed: the update reads them all again, seconds of work to interrupt
        with open(docs / f"memo{n:03d}.md", "a", encoding="utf-8") as f:
            f.write("검토를 마쳤습니다.\n")
    (docs / "memo000.md").write_text("# 메모 0\n\n보안 점검은 매월 첫째 주 월요일에 합니다.\n", encoding="utf-8")
    (docs / "취업규칙.md").unlink()
    command = [sys.executable, str(PROJECT_ROOT / "index_ko.py"), f"--docs={docs}", f"--index={index}"]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(2.0, 7.0))  # start-up takes ~2 s, the update ~5 s
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    print(f"killed after {time.monotonic() - started:.1f} s")
    during = store.open_index(index)
    assert during.passages == before.passages or (
        "취업규칙.md" not in {p["source"] for p in during.passages} and during.generation != before.generation)
    Searcher(during).search("보안 점검", top_k=3)  # usable either way
    report = update(docs, index)
    assert report.removed in (0, 1) and "취업규칙.md" not in sources(index)
    assert Searcher(store.open_index(index)).search("보안 점검은 언제 하나요?", top_k=1)[0].source == "memo000.md"


def test_only_generations_are_ever_removed_and_a_bad_pointer_is_no_index(docs, tmp_path):
    """Found in review: a glob removed any g<digit> folder, and an empty CURRENT pointed at the folder itself."""
    project = tmp_path / "project"
    (project / "g2024_archive").mkdir(parents=True)
    with pytest.raises(UserError, match="holds other files and is not an index folder"):
        update(docs, project)
    with pytest.raises(UserError, match="overlap"):
        update(docs, docs.parent)  # the documents inside the index folder
    assert (project / "g2024_archive").is_dir()
    index = tmp_path / "index"
    update(docs, index)
    (index / "CURRENT").write_text("\n", encoding="utf-8")
    with pytest.raises(UserError, match="not an index folder"):
        store.open_index(index)
    update(docs, index, rebuild=True)
    assert index.is_dir() and store.open_index(index).passages and len(store.generations(index)) == 1


def test_a_reader_that_opened_the_previous_generation_still_reads_it(docs, tmp_path):
    """A server that resolved CURRENT just before an update switched it still finds that generation."""
    index = tmp_path / "index"
    update(docs, index)
    first, before = store.current_generation(index), store.open_index(index).passages
    (docs / "회의실_이용_안내.txt").unlink()
    update(docs, index)
    assert store.current_generation(index) != first
    assert store._read(index, first).passages == before != store.open_index(index).passages


def test_skipped_files_are_tried_again_and_an_empty_folder_keeps_a_good_index(docs, tmp_path):
    index = tmp_path / "index"
    small = update(docs, index, max_file_bytes=20_000)
    assert "복리후생_안내.pdf" in small.skipped  # 44 KB
    again = update(docs, index)  # the limit raised: the same unchanged file is read now
    assert again.read == len(small.skipped) and "복리후생_안내.pdf" not in again.skipped
    for path in docs.iterdir():  # the share not mounted: the same folder, empty
        path.unlink()
    with pytest.raises(UserError, match="the index keeps its"):
        update(docs, index)
    assert store.open_index(index).passages
    other = tmp_path / "other-docs"
    other.mkdir()
    with pytest.raises(UserError, match="indexes .*, not .*: pass --docs="):
        update(other, index)  # another folder: named, not mixed in
