"""`python eval_ko.py` on the tiny preset's run, as a user runs it: the run and its base scored on KoBEST dev
(a few items a task) and a KULLM-form question file answered side by side, in one command; bad input is one
line before any model loads (each form of bad input: tests/evaluation)."""
import json

import pytest

from support import SHARED_DATA

KOBEST = SHARED_DATA / "kobest"


def test_scores_and_answers_base_vs_adapter(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    questions = tmp_path / "user_oriented_instructions.jsonl"
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "t0", "instruction": "다음 문장을 고치세요.", "instances": [{"input": "나는 학교 갔다.", "output": ""}]},
        {"id": "t1", "instruction": "한국의 수도는 어디인가요?", "instances": [{"input": "", "output": ""}]}]), encoding="utf-8")
    scored = KOBEST.is_dir()
    tasks = ["--tasks=kobest", f"--kobest_dir={KOBEST}", "--split=dev", "--limit=6", "--batch_size=8"] if scored else []
    result = run_script("eval_ko.py", f"--adapter={run}", *tasks, f"--questions={questions}", "--max_new_tokens=16",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = run / "eval"
    report = json.loads((eval_dir / "answers-user_oriented_instructions.json").read_text(encoding="utf-8"))
    assert list(report["figures"]) == ["base", "adapter"] and report["figures"]["adapter"]["answers"] == 2
    assert [i["id"] for i in report["items"]] == ["t0", "t1"]
    assert all(i["answers"]["base"]["new_tokens"] > 0 for i in report["items"])
    page = (eval_dir / "answers-user_oriented_instructions.html").read_text(encoding="utf-8")
    assert "다음 문장을 고치세요." in page and "Hangul share" in page
    markdown = (eval_dir / "answers-user_oriented_instructions.md").read_text(encoding="utf-8")
    assert "## t0. 다음 문장을 고치세요.\n\n    나는 학교 갔다.\n\n**base** (" in markdown  # the answers, not only figures
    first = (report["items"][0]["answers"]["adapter"]["text"].splitlines() or ["(no answer)"])[0]
    assert f"**adapter** ({report['items'][0]['answers']['adapter']['new_tokens']} tokens" in markdown
    assert f"    {first}" in markdown and "| Hangul share |" in markdown
    if not scored:
        pytest.skip(f"KoBEST not found at {KOBEST} (fresh clone): only the answers were checked")
    assert not (eval_dir / "kobest-dev.json").exists()  # a limited run never takes the whole split's name (a trial)
    doc = json.loads((eval_dir / "kobest-dev-first6.json").read_text(encoding="utf-8"))
    assert doc["models"] == ["base", "adapter"] and doc["harness"]["version"]
    assert set(doc["tasks"]) == {"kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg", "kobest_wic"}
    assert all(0 <= t[m]["acc"] <= 1 and t[m]["items"] == 6 for t in doc["tasks"].values() for m in ("base", "adapter"))
    assert "f1" in doc["tasks"]["kobest_boolq"]["adapter"]
    table = (eval_dir / "kobest-dev-first6.md").read_text(encoding="utf-8")
    assert "| kobest_copa | accuracy |" in table and "Δ adapter − base" in table and table in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--tasks=kobest", "--kobest_dir=/nonexistent"], "error: --kobest_dir=/nonexistent is not a folder"),
    (["--questions=qs.csv"], "unknown question file format .csv"),
    (["--questions=qs.txt", "--answer_batch=0"], "error: --answer_batch must be at least 1, not 0"),
    (["--questions=qs.txt", "--top_p=0"], "error: --top_p must be above 0 and at most 1, not 0"),
    (["--questions=qs.txt", "--limit=5"], "error: --limit and --split choose a benchmark's items: give them with --tasks"),
    (["--questions=qs.txt", "--split=bogus"], "error: --limit and --split choose a benchmark's items"),
    (["--questions=qs.txt", "--out=qs.txt"], "error: --out=qs.txt is the file this reads (qs.txt)"),
    (["--questions=qs.txt", "--out=."], "error: --out=. is a folder; name a file"),
])
def test_bad_input_is_one_line_before_loading(tiny_run, run_script, tmp_path, args, message):
    run, _ = tiny_run
    (tmp_path / "qs.txt").write_text("한국의 수도는?\n", encoding="utf-8")
    result = run_script("eval_ko.py", f"--adapter={run}", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "qs.txt").read_text(encoding="utf-8") == "한국의 수도는?\n"


def test_a_question_longer_than_the_model_takes_is_left_out_with_a_line(tiny_run, run_script, tmp_path):
    """A new user's trial: a 24,000-character question ran for 91 s at 12 GB and was answered as noise."""
    run, _ = tiny_run
    (tmp_path / "qs.txt").write_text("한국의 수도는?\n" + "아주 긴 질문입니다. " * 2000 + "\n", encoding="utf-8")
    result = run_script("eval_ko.py", f"--adapter={run}", "--questions=qs.txt", "--max_new_tokens=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out 1 question(s) longer than this model takes" in result.stdout
    report = json.loads((run / "eval" / "answers-qs.json").read_text(encoding="utf-8"))
    assert [i["question"] for i in report["items"]] == ["한국의 수도는?"]
