"""`python chat_ko.py` against the tiny preset's run folder, as a user runs it."""
import json

from kochat import modeling, runs
from kochat.generation import gen


def greedy_answer(run_folder, question):
    run = runs.open_run(str(run_folder))
    tokenizer = modeling.load_tokenizer(run.tokenizer_dir)
    model = modeling.load_model(run.base_model, tokenizer, adapter=run.adapter).eval()
    return gen(model, tokenizer, run.template, question, max_new_tokens=32)[0].text


def test_one_question_streams_the_same_answer_as_gen(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    result = run_script("chat_ko.py", "--adapter", str(run), "--question", "한국의 수도는 어디인가요?",
                        "--temperature=0", "--max_new_tokens=32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == greedy_answer(run, "한국의 수도는 어디인가요?")


def test_a_conversation_keeps_turns_until_reset(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    stdin = "한국의 수도는 어디인가요?\n그럼 일본은요?\n/reset\n하늘은 왜 파란가요?\n/exit\n"
    result = run_script("chat_ko.py", f"--adapter={run}", "--temperature=0", "--max_new_tokens=24", cwd=tmp_path,
                        stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("답변> ") == 3 and "(conversation cleared)" in result.stdout
    assert "koalpaca template" in result.stdout  # read from the run folder
    first = result.stdout.split("답변> ")[1].split("\n")[0]
    assert first == greedy_answer(run, "한국의 수도는 어디인가요?")


def test_a_questions_file_is_answered_into_jsonl(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    (tmp_path / "qs.txt").write_text("# 주석\n한국의 수도는?\n다음 단어의 반대말을 쓰세요.\t크다\n", encoding="utf-8")
    result = run_script("chat_ko.py", f"--adapter={run}", "--questions=qs.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in (tmp_path / "qs.answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(a["question"], a["input"]) for a in answers] == [("한국의 수도는?", ""), ("다음 단어의 반대말을 쓰세요.", "크다")]
    assert all(a["seconds"] > 0 and a["new_tokens"] > 0 and a["tokens_per_s"] > 0 for a in answers)


def test_a_folder_that_is_not_a_run_is_one_clear_line(run_script, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in [("missing", "error: missing is not a folder"),
                            ("empty", "error: empty has no template.json: it is not a run folder")]:
        result = run_script("chat_ko.py", f"--adapter={folder}", "--question=x", cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message)
