"""The real server answering from document indexes: sources in OpenAI-parsable bodies and streams, answers
equal to gen() on the grounded conversation, NOT_COVERED without the model, follow-ups retrieved with the
conversation, and each key limited to its indexes."""
import unicodedata

import httpx
import openai
import pytest
from support import INDEX_SETTINGS

from kochat.documents import grounding
from kochat.tokenization import encode_prompt

LEAVE = "1년 이상 근속한 직원의 연차휴가는 며칠인가요?"


def grounded_greedy(server, library, messages, index="hr", max_tokens=24):
    grounded, found = library.ground(library.searchers[index], messages, server.tokenizer, server.template,
                                     server.engine.context - max_tokens)
    return server.greedy(grounded, max_tokens=max_tokens).text, found.sources()


def test_a_grounded_answer_carries_its_sources_through_the_openai_client(docs_server, docs_library):
    client = docs_server.client("hr-key")
    messages = [{"role": "user", "content": LEAVE}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, extra_body={"index": "hr"})
    text, sources = grounded_greedy(docs_server, docs_library, messages)
    assert reply.choices[0].message.content == text and reply.model_extra["sources"] == sources
    assert sources[0]["source"] == "취업규칙.md" and sources[0]["heading"].endswith("제12조 연차휴가")
    assert {"n", "source", "page", "heading", "text", "score"} <= set(sources[0])
    assert reply.usage.prompt_tokens > 200  # the passages are in the prompt

    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].model_extra["sources"] == sources  # last, before [DONE]


def test_the_servers_system_message_goes_before_a_grounded_conversation(tiny_run_folder, docs_library):
    from support import Served

    system = "당신은 한빛소프트 인사팀의 안내 도우미입니다."
    server = Served(tiny_run_folder, [], library=docs_library, system=system, max_batch=2)
    try:
        messages = [{"role": "user", "content": LEAVE}]
        reply = server.client().chat.completions.create(model="tiny", messages=messages, max_tokens=24,
                                                        extra_body={"index": "hr"})
        sent = [{"role": "system", "content": system}, *messages]
        text, sources = grounded_greedy(server, docs_library, sent)
        assert reply.choices[0].message.content == text and reply.model_extra["sources"] == sources
        # the prompt is the grounded conversation after the system message (its tokens counted), not without it
        grounded, _ = docs_library.ground(docs_library.searchers["hr"], sent, server.tokenizer, server.template,
                                          server.engine.context - 24)
        assert reply.usage.prompt_tokens == len(encode_prompt(server.tokenizer, server.template.chat(grounded)))
        assert system in server.template.chat(grounded) and sources
    finally:
        server.stop()


def test_a_question_the_documents_do_not_cover_is_answered_so_without_the_model(docs_server):
    client = docs_server.client("hr-key")
    messages = [{"role": "user", "content": "화성 탐사 로켓의 발사 일정은?"}]
    before = docs_server.engine.status()["batch_sizes"]
    reply = client.chat.completions.create(model="tiny", messages=messages)
    assert reply.choices[0].message.content == grounding.NOT_COVERED and reply.model_extra["sources"] == []
    assert reply.usage.completion_tokens == 0 and reply.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == grounding.NOT_COVERED
    assert chunks[-1].model_extra["sources"] == []
    assert docs_server.engine.status()["batch_sizes"] == before  # the model was never asked


def test_retrieval_off_answers_as_a_server_without_documents(docs_server):
    messages = [{"role": "user", "content": LEAVE}]
    reply = docs_server.client("hr-key").chat.completions.create(model="tiny", messages=messages, max_tokens=16,
                                                                 extra_body={"retrieval": False})
    assert "sources" not in (reply.model_extra or {})
    assert reply.choices[0].message.content == docs_server.greedy(messages, max_tokens=16).text


def test_a_follow_up_is_retrieved_with_the_conversation(docs_server):
    client = docs_server.client("team-key")
    for first, expected in [("연차휴가는 며칠인가요?", "연차.md"), ("신입사원 교육은 몇 시간인가요?", "교육.md")]:
        messages = [{"role": "user", "content": first}, {"role": "assistant", "content": "안내해 드릴게요."},
                    {"role": "user", "content": "그럼 2년차는요?"}]
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8)
        assert reply.model_extra["sources"][0]["source"] == expected


def test_an_index_is_described_by_the_files_it_holds_passages_from(tmp_path):
    import shutil

    from kochat import PROJECT_ROOT
    from kochat.documents import indexing, store
    from kochat.documents.retrieval import Searcher
    from kochat.server import Library

    shutil.copytree(PROJECT_ROOT / "data" / "company_docs", tmp_path / "docs")
    (tmp_path / "docs" / "old.hwp").write_bytes(b"\xd0\xcf\x11\xe0")  # skipped: counted apart, not as a file read
    indexing.update_index(str(tmp_path / "docs"), str(tmp_path / "index"), **INDEX_SETTINGS)
    [described] = Library({"hr": Searcher(store.open_index(tmp_path / "index"))}, top_k=3, min_relevance=0.3
                          ).describe(None)
    assert (described["name"], described["files"], described["skipped"]) == ("hr", 7, 1) and described["passages"]


def test_a_key_never_retrieves_from_an_index_it_is_not_given(docs_server):
    def indexes(key):
        r = httpx.get(docs_server.url + "/v1/indexes", headers={"Authorization": f"Bearer {key}"})
        return [d["name"] for d in r.json()["data"]]

    assert indexes("hr-key") == ["hr"] and indexes("team-key") == ["team"] and indexes("all-key") == ["hr", "team"]
    assert httpx.get(docs_server.url + "/v1/indexes").status_code == 401
    messages = [{"role": "user", "content": LEAVE}]
    for key, asked in [("team-key", "hr"), ("hr-key", "team"), ("all-key", "payroll")]:
        with pytest.raises(openai.NotFoundError) as caught:
            docs_server.client(key).chat.completions.create(model="tiny", messages=messages, extra_body={"index": asked})
        assert caught.value.body["code"] == "index_not_found" and f"index '{asked}' not found" in caught.value.message
    team_only = docs_server.client("team-key").chat.completions.create(model="tiny", messages=messages, max_tokens=8)
    assert {s["source"] for s in team_only.model_extra["sources"]} <= {"연차.md", "교육.md", "동호회.md"}
    both = docs_server.client("all-key").chat.completions.create(model="tiny", messages=messages, max_tokens=8,
                                                                 extra_body={"index": "team"})
    assert {s["index"] for s in both.model_extra["sources"]} == {"team"}


def test_requests_are_checked_before_retrieval_and_a_topic_change_is_not_covered(docs_server, served):
    """Found in review: a conversation ending on the assistant was a 500 with retrieval on, a not-covered
    request skipped the request checks, an earlier question's words made an off-topic one covered, an
    index named on a server without indexes was ignored, and an NFD question found nothing."""
    client = docs_server.client("hr-key")
    with pytest.raises(openai.BadRequestError, match="the last message must be the user's"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": LEAVE},
                                                               {"role": "assistant", "content": "15일"}])
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="tiny", max_tokens=-5,
                                       messages=[{"role": "user", "content": "오늘 날씨 어때?"}])
    topic_change = [{"role": "user", "content": LEAVE}, {"role": "assistant", "content": "15일입니다."},
                    {"role": "user", "content": "오늘 날씨 어때?"}]
    reply = client.chat.completions.create(model="tiny", messages=topic_change)
    assert reply.choices[0].message.content == grounding.NOT_COVERED
    nfd = unicodedata.normalize("NFD", LEAVE)
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": nfd}], max_tokens=4)
    assert reply.model_extra["sources"][0]["source"] == "취업규칙.md"
    with pytest.raises(openai.NotFoundError, match="index 'hr' not found"):
        served.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": LEAVE}],
                                                extra_body={"index": "hr"})
