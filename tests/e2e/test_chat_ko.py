"""`python chat_ko.py` against the tiny preset's run folder, as a user runs it."""
import json

from kochat import PROJECT_ROOT, answering
from kochat.generation import gen


def greedy_answer(run_folder, question):
    run, tokenizer, model = answering.load_for_answering(str(run_folder))
    return gen(model, tokenizer, run.template, question, max_new_tokens=32)[0].text


def test_one_question_streams_the_same_answer_as_gen(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    result = run_script("chat_ko.py", "--adapter", str(run), "--question", "한국의 수도는 어디인가요?",
                        "--temperature=0", "--max_new_tokens=32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == greedy_answer(run, "한국의 수도는 어디인가요?")



def test_a_system_message_goes_before_the_question(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    system, question = "당신은 한빛소프트 인사팀의 안내 도우미입니다.", "한국의 수도는 어디인가요?"
    result = run_script("chat_ko.py", f"--adapter={run}", f"--system={system}", f"--question={question}",
                        "--temperature=0", "--max_new_tokens=32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with_system = greedy_answer(run, [{"role": "system", "content": system}, {"role": "user", "content": question}])
    assert result.stdout.strip() == with_system != greedy_answer(run, question)

def test_a_conversation_keeps_turns_until_reset(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    stdin = "한국의 수도는 어디인가요?\n그럼 일본은요?\n/reset\n/help\n하늘은 왜 파란가요?\n/exit\n"
    result = run_script("chat_ko.py", f"--adapter={run}", "--temperature=0", "--max_new_tokens=24", cwd=tmp_path,
                        stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("답변> ") == 3 and "(conversation cleared)" in result.stdout
    assert "질문> 한국의 수도는 어디인가요?\n답변> " in result.stdout  # piped: each question shown before its answer
    assert "(/reset forgets earlier turns, /exit leaves)" in result.stdout  # /help is not sent as a question
    assert "koalpaca template" in result.stdout  # read from the run folder
    first = result.stdout.split("답변> ")[1].split("\n")[0]
    assert first == greedy_answer(run, "한국의 수도는 어디인가요?")


def test_a_long_conversation_drops_its_oldest_turns_and_a_question_too_long_is_one_line(tiny_run, run_script,
                                                                                         tmp_path):
    run, _ = tiny_run
    long, too_long = "연차휴가 규정에 대해 자세히 설명해 주세요. " * 25, "연차휴가 규정에 대해 자세히 설명해 주세요. " * 120
    # ~450 tokens a question: the third no longer fits the tiny model's 1,024 beside the earlier turns; ~2,100 alone
    stdin = f"{long}\n{long}\n{long}\n{too_long}\n한국의 수도는?\n/exit\n"
    result = run_script("chat_ko.py", f"--adapter={run}", "--temperature=0", "--max_new_tokens=24", cwd=tmp_path,
                        stdin=stdin)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("tokens/s") == 4  # every question that fits is answered
    assert result.stdout.count("(질문이 너무 깁니다: 이 모델은 답 24 토큰과 함께 1024 토큰까지 받습니다.") == 1
    (tmp_path / "qs.txt").write_text(f"{too_long}\n", encoding="utf-8")
    result = run_script("chat_ko.py", f"--adapter={run}", "--questions=qs.txt", cwd=tmp_path)
    answer = json.loads((tmp_path / "qs.answers.jsonl").read_text(encoding="utf-8"))
    assert answer["finish_reason"] == "too_long" and answer["text"].startswith("(질문이 너무 깁니다")


def test_settings_out_of_range_are_one_line_naming_the_one_broken(run_script, tmp_path):
    for setting, message in [("--temperature=-1", "--temperature must be from 0 (greedy) to 2, not -1"),
                             ("--temperature=7", "--temperature must be from 0 (greedy) to 2, not 7"),  # as the server
                             ("--top_p=2", "--top_p must be above 0 and at most 1, not 2"),
                             ("--max_turns=-1", "--max_turns must be 0 or more, not -1"),
                             ("--max_new_tokens=0", "--max_new_tokens must be at least 1, not 0"),
                             ("--top_k=0", "--top_k must be at least 1, not 0"),
                             ("--min_relevance=1.5", "--min_relevance must be from 0 to 1, not 1.5")]:
        result = run_script("chat_ko.py", "--adapter=missing", setting, "--question=x", cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
    empty = run_script("chat_ko.py", "--adapter=missing", "--question=", cwd=tmp_path)  # an unset shell variable
    assert empty.returncode == 2 and "error: --question is empty: give a question" in empty.stderr


def test_a_questions_file_is_answered_into_jsonl(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    (tmp_path / "qs.txt").write_text("# 주석\n한국의 수도는?\n다음 단어의 반대말을 쓰세요.\t크다\n", encoding="utf-8")
    result = run_script("chat_ko.py", f"--adapter={run}", "--questions=qs.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in (tmp_path / "qs.answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(a["question"], a["input"]) for a in answers] == [("한국의 수도는?", ""), ("다음 단어의 반대말을 쓰세요.", "크다")]
    assert all(a["seconds"] > 0 and a["new_tokens"] > 0 and a["tokens_per_s"] > 0 for a in answers)


def test_a_questions_file_it_cannot_answer_into_is_one_line_before_loading(tiny_run, run_script, tmp_path):
    run, _ = tiny_run
    (tmp_path / "qs.txt").write_text("한국의 수도는?\n", encoding="utf-8")
    (tmp_path / "comments.txt").write_text("# 주석만\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    for args, message in [(["--questions=qs.txt", "--output=qs.txt"], "error: --output=qs.txt is the file this reads"),
                          (["--questions=qs.txt", "--output=folder"], "error: --output=folder is a folder"),
                          (["--questions=comments.txt"], "error: --questions=comments.txt holds no questions")]:
        result = run_script("chat_ko.py", f"--adapter={run}", *args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines()[-1].startswith(message), (args, result.stderr)
    assert (tmp_path / "qs.txt").read_text(encoding="utf-8") == "한국의 수도는?\n"  # its questions kept


def test_a_folder_that_is_not_a_run_is_one_clear_line(run_script, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder, message in [("missing", "error: missing is not a folder"),
                            ("empty", "error: empty has no template.json: it is not a run folder")]:
        result = run_script("chat_ko.py", f"--adapter={folder}", "--question=x", cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_answers_from_an_index_are_grounded_and_cite_their_sources(tiny_run, run_script, tmp_path):
    """--index: the passages go into the prompt (the answer is gen() on the grounded conversation), the sources
    are printed and kept in the JSONL, and a question the documents do not cover gets NOT_COVERED, not the model."""
    from kochat.documents import grounding, indexing, store
    from kochat.documents.retrieval import Searcher

    run, _ = tiny_run
    index = tmp_path / "index"
    indexing.update_index(str(PROJECT_ROOT / "data" / "company_docs"), str(index), chunk_chars=800, overlap_chars=100,
                          k1=1.2, b=0.9, max_file_bytes=10_000_000)
    (tmp_path / "qs.txt").write_text("1년 이상 근속한 직원의 연차휴가는 며칠인가요?\n화성 탐사 로켓의 발사 일정은?\n",
                                     encoding="utf-8")
    result = run_script("chat_ko.py", f"--adapter={run}", f"--index={index}", "--questions=qs.txt", "--temperature=0",
                        "--max_new_tokens=16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    covered, not_covered = [json.loads(line) for line in (tmp_path / "qs.answers.jsonl").read_text(encoding="utf-8")
                            .splitlines()]
    assert covered["sources"][0]["source"] == "취업규칙.md" and covered["sources"][0]["n"] == 1
    assert "   [1] 취업규칙.md · 제12조 연차휴가" in result.stdout.splitlines()
    assert not_covered == {"question": "화성 탐사 로켓의 발사 일정은?", "input": "", "text": grounding.NOT_COVERED,
                           "new_tokens": 0, "finish_reason": "not_covered", "sources": []}

    r, tokenizer, model = answering.load_for_answering(str(run))
    messages, found = grounding.ground(Searcher(store.open_index(index)), [{"role": "user", "content": covered["question"]}],
                                       top_k=3, min_relevance=0.3, tokenizer=tokenizer, template=r.template,
                                       max_prompt_tokens=model.config.max_position_embeddings - 16)
    assert "[1] 취업규칙.md · 제12조 연차휴가\n" in messages[-1]["context"]
    assert [h.to_dict() for h in found.hits] == covered["sources"]
    assert covered["text"] == gen(model, tokenizer, r.template, messages, max_new_tokens=16)[0].text
