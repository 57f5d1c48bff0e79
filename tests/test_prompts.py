import json
import re

import pytest

from kochat.errors import UserError
from kochat.prompts import TEMPLATE_DIR, Template, load_questions


def test_koalpaca_renders_the_recipe_form(koalpaca_template):
    t = koalpaca_template
    assert t.prompt("한국의 수도는?") + t.answer("서울입니다.") == "### 질문: 한국의 수도는?\n\n### 답변: 서울입니다."
    assert t.prompt("번역하세요.", "안녕") == "### 질문: 번역하세요.\n\n안녕\n\n### 답변:"


def test_alpaca_ko_renders_with_and_without_input():
    t = Template.load("alpaca_ko")
    without = t.prompt("세 가지 기본 색은?")
    with_input = t.prompt("반대말을 쓰세요.", "크다")
    assert without.endswith("### 명령어:\n세 가지 기본 색은?\n\n### 응답:\n") and "### 입력:" not in without
    assert "### 입력:\n크다\n\n### 응답:\n" in with_input
    assert t.answer("작다") == "작다"


def test_split_of_a_rendered_row_matches_rendering_the_columns(koalpaca_template):
    t = koalpaca_template
    text = "### 질문: 양파는 식물의 어떤 부위인가요?\n\n### 답변: 줄기입니다.<|endoftext|>"
    prompt, answer = t.split(text, "<|endoftext|>")
    assert (prompt, answer) == (t.prompt("양파는 식물의 어떤 부위인가요?"), t.answer("줄기입니다."))
    assert t.split("### 질문: 답 없는 질문", "<|endoftext|>") is None


def test_split_keeps_what_the_template_puts_after_the_marker_in_the_prompt():
    t = Template.load("alpaca_ko")
    rendered = t.prompt("반대말을 쓰세요.", "크다") + t.answer("작다") + "</s>"
    assert t.split(rendered, "</s>") == (t.prompt("반대말을 쓰세요.", "크다"), "작다")


def test_templates_load_by_name_wherever_the_working_directory_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Template.load("koalpaca").response_split == "### 답변:"
    assert {p.stem for p in TEMPLATE_DIR.glob("*.json")} >= {"koalpaca", "alpaca_ko"}


def test_template_by_path_and_its_errors(tmp_path):
    good = json.loads((TEMPLATE_DIR / "koalpaca.json").read_text(encoding="utf-8"))
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(good), encoding="utf-8")
    assert Template.load(str(path)).name == "mine"
    with pytest.raises(UserError, match="template 'nope' not found; use one of auto, chat_template, alpaca_ko, koalpaca"):
        Template.load("nope")
    path.write_text(json.dumps({**good, "response": "no placeholder"}), encoding="utf-8")
    with pytest.raises(UserError, match="response needs {output}"):
        Template.load(str(path))
    for field, text, problem in [("response", " {output} {output}", "response must hold {output} once"),
                                 ("prompt_no_input", "{x} ### 질문: {instruction}\n\n### 답변:",
                                  "prompt_no_input holds braces other than {instruction}: write a literal brace as")]:
        path.write_text(json.dumps({**good, field: text}), encoding="utf-8")
        with pytest.raises(UserError, match=re.escape(problem)):
            Template.load(str(path))
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(UserError, match="not valid UTF-8 JSON"):
        Template.load(str(path))


def test_load_questions_reads_inputs_and_skips_comments(tmp_path, monkeypatch):
    f = tmp_path / "q.txt"
    f.write_text("# comment\n#\n#old-style\n## 섹션\n한국의 수도는?\n\n번역하세요.\t안녕하세요\n\t입력만\n#해시태그란?\n",
                 encoding="utf-8")
    assert load_questions(str(f)) == [("한국의 수도는?", ""), ("번역하세요.", "안녕하세요"), ("#해시태그란?", "")]
    f.write_bytes("\ufeff# 주석 줄입니다\n한국의 수도는?\n".encode())  # saved by Notepad: a byte-order mark first
    assert load_questions(str(f)) == [("한국의 수도는?", "")]
    f.write_bytes("한국의 수도는?\n연차는 며칠?\n".encode("cp949"))  # saved by an older Notepad or Excel
    assert load_questions(str(f)) == [("한국의 수도는?", ""), ("연차는 며칠?", "")]
    f.write_bytes("한국의 수도는?\n".encode("utf-16"))  # Notepad's "Unicode"
    assert load_questions(str(f)) == [("한국의 수도는?", "")]
    f.write_bytes(b"\xff\xfe\x00\xd8")
    with pytest.raises(UserError, match="save it as UTF-8$"):
        load_questions(str(f))
    monkeypatch.chdir(tmp_path)
    assert len(load_questions("prompts/demo_questions.txt")) >= 3  # found in the project, not the cwd
    with pytest.raises(UserError, match="cannot read the questions file"):
        load_questions("missing.txt")


def test_a_conversation_renders_earlier_turns_in_the_template(koalpaca_template):
    messages = [{"role": "system", "content": "친절하게 답하세요."},
                {"role": "user", "content": "한국의 수도는?"}, {"role": "assistant", "content": "서울입니다."},
                {"role": "user", "content": "일본은?"}]
    assert koalpaca_template.chat(messages) == ("친절하게 답하세요.\n\n### 질문: 한국의 수도는?\n\n### 답변: 서울입니다."
                                                "<|endoftext|>\n\n### 질문: 일본은?\n\n### 답변:")
    assert koalpaca_template.chat([{"role": "user", "content": "안녕"}]) == koalpaca_template.prompt("안녕")


@pytest.mark.parametrize("messages", [[], [{"role": "assistant", "content": "a"}],
                                      [{"role": "user", "content": 3}], [{"role": "robot", "content": "a"}],
                                      [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]])
def test_a_conversation_that_does_not_end_with_a_question_is_refused(koalpaca_template, messages):
    with pytest.raises(ValueError):
        koalpaca_template.chat(messages)


def test_a_saved_template_keeps_its_name(tmp_path, koalpaca_template):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(koalpaca_template.to_dict(), ensure_ascii=False), encoding="utf-8")
    assert Template.load(str(path)) == Template.load("koalpaca")  # the end of text comes from the tokenizer


def test_a_conversations_last_message_may_carry_retrieved_passages_as_its_input(koalpaca_template):
    messages = [{"role": "user", "content": "연차는?"}, {"role": "assistant", "content": "15일입니다."},
                {"role": "user", "content": "2년차는요?", "context": "[1] 취업규칙.md\n2년차는 15일."}]
    assert koalpaca_template.chat(messages) == ("### 질문: 연차는?\n\n### 답변: 15일입니다.<|endoftext|>\n\n"
                                                "### 질문: 2년차는요?\n\n[1] 취업규칙.md\n2년차는 15일.\n\n### 답변:")
