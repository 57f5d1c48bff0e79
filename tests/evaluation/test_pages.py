from kochat.evaluation import pages

DOC = {"run": "outputs/tiny", "questions": "qs.jsonl", "settings": {"max_new_tokens": 16}, "base_model": "base",
       "figures": {"base": {"answers": 1}, "adapter": {"answers": 1}},
       "items": [{"id": "t0", "question": "**며칠** <b>병가</b> `코드` #1 &amp;", "input": "# 제목처럼 보이는 줄\n```\n둘째 줄",
                  "answers": {"base": {"text": "", "new_tokens": 0, "finish_reason": "stop"},
                              "adapter": {"text": "가\n\n나 *별*", "new_tokens": 5, "finish_reason": "length"}}}]}


def test_markdown_shows_questions_inputs_and_answers_as_written():
    text = pages.markdown(DOC)
    assert "max_new_tokens=16\n\n| figure | base | adapter |" in text  # a blank line: every renderer sees a table
    assert "## t0. \\*\\*며칠\\*\\* \\<b\\>병가\\</b\\> \\`코드\\` \\#1 \\&amp;\n" in text  # no markup, no entity
    assert "\n    # 제목처럼 보이는 줄\n    ```\n    둘째 줄\n" in text  # the input verbatim, no heading, no fence
    assert "**base** (0 tokens)\n\n    (no answer)\n" in text
    assert "**adapter** (5 tokens, cut at the limit)\n\n    가\n    \n    나 *별*\n" in text


def test_the_page_says_no_answer_as_the_markdown_does():
    assert "<td>(no answer)<span class=meta>0 tokens</span></td>" in pages.page(DOC)
