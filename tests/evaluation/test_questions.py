"""Every question-file form, and the one line for a file in none of them."""
import json

import pytest

from kochat.errors import UserError
from kochat.evaluation.questions import Question, read_questions


def test_every_form(tmp_path):
    (tmp_path / "qs.txt").write_text("# 주석\n한국의 수도는?\n반대말을 쓰세요.\t크다\n\n", encoding="utf-8")
    (tmp_path / "qs.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"instruction": "한국의 수도는?"}, {"question": "반대말을 쓰세요.", "input": "크다", "id": "q2"}]), encoding="utf-8")
    kullm = [{"id": "user_oriented_task_0", "motivation_app": "Grammarly", "instruction": "문장을 고치세요.",
              "instances": [{"input": "나는 학교 갔다.", "output": "나는 학교에 갔다."}, {"input": "밥 먹엇다", "output": ""}]},
             {"id": "user_oriented_task_1", "instruction": "시를 쓰세요.", "instances": [{"input": "", "output": ""}]}]
    (tmp_path / "user_oriented_instructions.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in kullm), encoding="utf-8")
    (tmp_path / "qs.json").write_text(json.dumps(kullm, ensure_ascii=False), encoding="utf-8")

    assert read_questions(str(tmp_path / "qs.txt")) == [Question("1", "한국의 수도는?"), Question("2", "반대말을 쓰세요.", "크다")]
    assert read_questions(str(tmp_path / "qs.jsonl")) == [Question("1", "한국의 수도는?"), Question("q2", "반대말을 쓰세요.", "크다")]
    expected = [Question("user_oriented_task_0.1", "문장을 고치세요.", "나는 학교 갔다."),
                Question("user_oriented_task_0.2", "문장을 고치세요.", "밥 먹엇다"), Question("user_oriented_task_1", "시를 쓰세요.")]
    assert read_questions(str(tmp_path / "user_oriented_instructions.jsonl")) == expected
    assert read_questions(str(tmp_path / "qs.json")) == expected


@pytest.mark.parametrize("name, content, message", [
    ("qs.csv", "question\n한국의 수도는?\n", "unknown question file format .csv"),
    ("qs.jsonl", '{"prompt": "한국의 수도는?"}\n', r"no instruction or question \(keys: prompt\)"),
    ("qs.jsonl", "한국의 수도는?\n", r"record 1: not valid JSON"),  # read as kochat.records reads any .jsonl
    ("qs.json", '{"instruction": "x"}', "should hold a JSON array"),
    ("qs.jsonl", '{"instruction": "x", "instances": "y"}\n', "instances must be a list"),
    ("qs.txt", "# only a comment\n", "holds no questions"),
    ("missing.txt", None, "is not a file"),
])
def test_bad_question_files_are_one_line(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as e:
        read_questions(str(tmp_path / name))
    assert "\n" not in str(e.value)
