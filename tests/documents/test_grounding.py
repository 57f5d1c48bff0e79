"""Grounding a conversation: passages numbered into the last message's input, the follow-up searched with the
turn before it, passages that fit the context, and questions the documents do not cover."""
from kochat.documents import grounding
from kochat.prompts import Template


def user(text):
    return {"role": "user", "content": text}


def test_passages_go_into_the_last_message_numbered_with_their_source(sample_index):
    messages = [user("병가는 며칠인가요?"), {"role": "assistant", "content": "60일입니다."}, user("연차휴가는 며칠인가요?")]
    grounded, found = grounding.ground(sample_index, messages, top_k=3, min_relevance=0.3)
    assert found.covered and [h.n for h in found.hits] == list(range(1, len(found.hits) + 1))
    assert grounded[:2] == messages[:2] and "context" not in messages[-1]  # the caller's list is left alone
    context = grounded[-1]["context"]
    assert context.startswith(grounding.INSTRUCTION + "\n\n[1] ")
    assert "취업규칙.md · 제12조 연차휴가\n1. 입사 1년 미만인" in context
    assert found.sources()[0]["n"] == 1 and found.sources()[0]["text"] in context
    prompt = Template.load("koalpaca").chat(grounded)
    assert prompt.endswith("\n\n### 답변:") and prompt.index("### 질문: 연차휴가는 며칠인가요?") < prompt.index("[1] ")


def test_questions_the_documents_do_not_cover_and_passages_sharing_only_question_words(sample_index):
    for question in ["오늘 날씨 어때?", "회사 주가는 얼마인가요?", "화성 탐사 로켓의 발사 일정은?"]:
        grounded, found = grounding.ground(sample_index, [user(question)], top_k=3, min_relevance=0.3)
        assert not found.covered and found.hits == [] and "context" not in grounded[-1], question
    _, found = grounding.ground(sample_index, [user("비밀번호 규칙이 어떻게 되나요?")], top_k=3, min_relevance=0.3)
    assert found.covered and all(h.relevance > 0 for h in found.hits)  # the 회의실 FAQ ("어떻게 되나요") is gone
    assert "비밀번호" in found.hits[0].text


def test_the_lowest_passages_are_left_out_until_the_prompt_fits(sample_index, tiny_tokenizer):
    template = Template.load("koalpaca")
    messages = [user("연차휴가 신청 방법")]
    _, everything = grounding.ground(sample_index, messages, top_k=3, min_relevance=0.3)
    _, one = grounding.ground(sample_index, messages, top_k=3, min_relevance=0.3, tokenizer=tiny_tokenizer,
                              template=template, max_prompt_tokens=len(tiny_tokenizer(
                                  template.chat([{**messages[0], "context": grounding.context(everything.hits[:1])}])
                              )["input_ids"]) + 2)
    assert len(everything.hits) == 3 and [h.source for h in one.hits] == [everything.hits[0].source]
    _, none = grounding.ground(sample_index, messages, top_k=3, min_relevance=0.3, tokenizer=tiny_tokenizer,
                               template=template, max_prompt_tokens=10)
    assert not none.covered


def test_the_search_query_is_the_last_question_and_the_two_before_it():
    messages = [user("a"), {"role": "assistant", "content": "x"}, user("b"), user("c"), {"role": "system",
                                                                                         "content": "s"}, user("d")]
    assert grounding.search_query(messages) == ("d", ["b", "c"])
