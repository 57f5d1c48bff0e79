"""The real HTTP server on a loopback port, called with the official openai client and raw HTTP."""
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from kochat.tokenization import encode_prompt
from support import KEY

QUESTIONS = ["한국의 수도는 어디인가요?", "하늘은 왜 파란가요?", "김치는 어떻게 만드나요?", "물은 몇 도에서 끓나요?"]


def chat(question):
    return [{"role": "user", "content": question}]


def test_chat_completion_with_the_openai_client(served):
    reply = served.client().chat.completions.create(model="tiny", messages=chat(QUESTIONS[0]), temperature=0)
    expected = served.greedy(chat(QUESTIONS[0]))
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].message.role == "assistant" and reply.object == "chat.completion"
    assert reply.choices[0].finish_reason == "stop"
    prompt_tokens = len(encode_prompt(served.tokenizer, served.template.chat(chat(QUESTIONS[0]))))
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == expected.new_tokens
    assert reply.usage.total_tokens == prompt_tokens + expected.new_tokens


def test_streamed_chat_matches_the_plain_answer(served):
    client = served.client()
    plain = client.chat.completions.create(model="tiny", messages=chat(QUESTIONS[1]), temperature=0, max_tokens=40)
    chunks = list(client.chat.completions.create(model="tiny", messages=chat(QUESTIONS[1]), temperature=0,
                                                 max_tokens=40, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == plain.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_content_parts_are_read_as_their_text(served):
    parts = [{"role": "user", "content": [{"type": "text", "text": "한국의 수도는"}, {"type": "text", "text": "어디인가요?"}]}]
    reply = served.client().chat.completions.create(model="tiny", messages=parts, temperature=0)
    assert reply.choices[0].message.content == served.greedy(chat("한국의 수도는\n어디인가요?")).text
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    r = httpx.post(served.url + "/v1/chat/completions", json={"model": "tiny", "messages": image})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content"
    assert r.json()["error"]["message"] == ("messages.0.content: this model reads text only: content parts of type "
                                            "'text', not ['image_url']")
    # a body sent without its content type (curl -d without -H) is not a JSON object to FastAPI
    r = httpx.post(served.url + "/v1/chat/completions", content='{"model": "tiny", "messages": []}')
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]["message"]


def test_max_tokens_gives_length_and_stop_strings_give_stop(served):
    client = served.client()
    short = client.chat.completions.create(model="tiny", messages=chat(QUESTIONS[1]), temperature=0, max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    full = served.greedy(chat(QUESTIONS[1]))
    word = full.text.split()[1]
    cut = client.chat.completions.create(model="tiny", messages=chat(QUESTIONS[1]), temperature=0, stop=[word])
    assert cut.choices[0].message.content == full.text[: full.text.index(word)].strip()
    assert cut.choices[0].finish_reason == "stop"


def test_completions_continue_a_raw_prompt(served):
    prompt = served.template.prompt(QUESTIONS[2])
    client = served.client()
    reply = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=30)
    assert reply.choices[0].text == served.greedy(chat(QUESTIONS[2]), 30).text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt=prompt, temperature=0, max_tokens=30, stream=True) if c.choices)
    assert streamed.strip() == reply.choices[0].text


def test_chat_and_completion_requests_in_one_batch_each_get_their_own_answer(served):
    prompt = served.template.prompt(QUESTIONS[3])  # the same question, asked both ways

    def ask(i):
        client = served.client()
        if i % 2:
            return client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=20).choices[0].text
        return client.chat.completions.create(model="tiny", messages=chat(QUESTIONS[3]), temperature=0,
                                              max_tokens=20).choices[0].message.content

    expected = served.greedy(chat(QUESTIONS[3]), 20).text
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == [expected] * 8


def test_models_and_health(served):
    assert [m.id for m in served.client().models.list()] == ["tiny"]
    health = httpx.get(served.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


@pytest.mark.parametrize("body, status, message", [
    ('{"model": "tiny", "messages": [', 400, "request body is not valid JSON"),
    ('{"model": "tiny", "messages": "hello"}', 400, "messages"),
    ('{"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}', 400, "messages.0.role"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": 5}]}', 400, "messages.0.content"),
    ('{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', 404, "model 'gpt-4' not found"),
    ('{"model": "tiny", "messages": []}', 400, "messages must not be empty"),
    ('{"model": "tiny", "messages": [{"role": "assistant", "content": "x"}]}', 400, "the last message must be"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400, "max_tokens must be"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 99999}', 400, "max_tokens must be"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "only n=1"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": 7}', 400, "temperature"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}', 400, "at most 4"),
    ('{"model": "tiny"}', 400, "messages"),
    ('[1, 2]', 400, "the request body must be a JSON object, sent with Content-Type: application/json"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream"),
])
def test_bad_requests_get_openai_style_4xx(served, body, status, message):
    r = httpx.post(served.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_a_prompt_longer_than_the_context_and_an_oversize_body(served):
    long = "가나다라마바사 " * 400  # well over the tiny model's 1,024-token context
    r = httpx.post(served.url + "/v1/chat/completions", json={"model": "tiny", "messages": chat(long)})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = httpx.post(served.url + "/v1/completions", json={"model": "tiny", "prompt": "x" * 300_000})
    assert r.status_code == 413 and "request body over" in r.json()["error"]["message"]


def test_32_concurrent_streams_all_complete_correctly_in_batches(served):
    questions = [QUESTIONS[i % 4] + " " * (i // 4) for i in range(32)]
    expected = {q: served.greedy(chat(q), 24).text for q in set(questions)}

    def ask(q):
        stream = served.client().chat.completions.create(model="tiny", messages=chat(q), temperature=0,
                                                         max_tokens=24, stream=True)
        return q, "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()

    before = dict(served.engine.batch_sizes)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(ask, questions))
    assert all(text == expected[q] for q, text in results)
    grown = {size: n - before.get(size, 0) for size, n in served.engine.batch_sizes.items() if n > before.get(size, 0)}
    assert max(grown) > 1  # requests that arrived together were generated together


def test_a_client_that_leaves_mid_stream_frees_its_slot(served):
    body = {"model": "tiny", "messages": chat(QUESTIONS[3]), "max_tokens": 1000, "stream": True}
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # one real piece of the answer, then hang up
    deadline = time.time() + 20
    while served.engine.status()["in_flight"] and time.time() < deadline:
        time.sleep(0.1)
    assert served.engine.status()["in_flight"] == 0


def test_prompts_and_answers_stay_out_of_the_log(served, caplog):
    with caplog.at_level(logging.DEBUG):
        served.client().chat.completions.create(model="tiny", messages=chat("비밀 프로젝트 이름은?"), max_tokens=5)
    assert "비밀 프로젝트" not in caplog.text


def test_without_a_valid_key_every_api_call_is_401(keyed):
    url = keyed.url + "/v1/chat/completions"
    body = {"model": "tiny", "messages": chat(QUESTIONS[0]), "max_tokens": 3}
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"X-API-Key": KEY},
                    {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY}x"}]:
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", headers
    assert httpx.post(url, content="{bad", headers={"Content-Type": "application/json"}).status_code == 401
    assert httpx.get(keyed.url + "/v1/models").status_code == 401
    with pytest.raises(openai.AuthenticationError):
        keyed.client("wrong").chat.completions.create(model="tiny", messages=chat("x"))
    for key in (KEY, "second-key"):
        assert keyed.client(key).chat.completions.create(model="tiny", messages=chat("x"), max_tokens=3).choices
    assert httpx.get(keyed.url + "/health").status_code == 200 and httpx.get(keyed.url + "/").status_code == 200


def test_too_many_requests_get_429_with_a_clear_message(keyed):
    def ask(_):
        r = httpx.post(keyed.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "tiny", "messages": chat(QUESTIONS[1]), "max_tokens": 200,
                             "temperature": 0.5}, timeout=60)
        return r.status_code, r.json()

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(ask, range(12)))
    codes = [code for code, _ in results]
    assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 3
    busy = next(body for code, body in results if code == 429)["error"]
    assert busy["type"] == "rate_limit_error" and "--max_concurrent" in busy["message"]


def test_a_request_stops_counting_against_max_concurrent_when_answered_not_when_its_batch_ends():
    """A client that sends its next request on hearing its answer is not refused (429) while its batch still
    answers the others."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from kochat.server.engine import Busy, Engine, Job

    loop, resubmitted, results = asyncio.new_event_loop(), threading.Event(), {}

    class HalfwayEngine(Engine):  # answers the first batch's first request, then submits another before the rest
        def generate(self, jobs):
            self.finish(jobs[0], "done", "first")
            if not resubmitted.is_set():  # once: C's own batch must not submit again (the worker would spin on)
                try:
                    self.submit(job("C"))
                    results["C"] = "accepted"
                except Busy:
                    results["C"] = "busy"
                resubmitted.set()
            for j in jobs[1:]:
                self.finish(j, "done", "later")

    def job(prompt):
        return Job(prompt=prompt, max_tokens=4, temperature=0.0, top_p=1.0, stop=[], loop=loop)

    engine = HalfwayEngine(SimpleNamespace(config=PretrainedConfig(max_position_embeddings=64)), None, None, "stub",
                           max_batch=2, max_concurrent=2)
    with engine.lock:  # both queued before the worker looks: one batch of two
        for prompt in ("A", "B"):
            engine.waiting.append(job(prompt))
            engine.in_flight += 1
        engine.lock.notify()
    assert resubmitted.wait(10) and results["C"] == "accepted"
    deadline = time.monotonic() + 10
    while engine.in_flight and time.monotonic() < deadline:  # C is answered too, and nothing is left running
        time.sleep(0.01)
    assert engine.in_flight == 0 and not engine.waiting


def test_a_batch_waits_a_little_for_the_last_batchs_clients_then_goes():
    """Clients send their next requests as their answers arrive; the one early request waits for them and for
    those that waited through the last batch (one batch, not two taking turns), only for a while after that batch
    (gather_share of its time), and not at all once that while is over."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from transformers import PretrainedConfig

    from kochat.server.engine import Engine, Job

    loop, batches, done, started = asyncio.new_event_loop(), [], threading.Semaphore(0), threading.Event()

    class Recording(Engine):  # a batch of more than one row takes half a second
        def generate(self, jobs):
            if len(jobs) > 1:
                started.set()
                time.sleep(0.5)
            batches.append(sorted(j.prompt for j in jobs))
            for j in jobs:
                self.finish(j, "done", None)
            done.release()

    def submit(engine, *prompts):
        with engine.lock:  # at once
            for prompt in prompts:
                engine.submit(Job(prompt=prompt, max_tokens=4, temperature=0.0, top_p=1.0, stop=[], loop=loop))

    def answered_alone(engine, prompt) -> float:
        submitted = time.monotonic()
        submit(engine, prompt)
        assert done.acquire(timeout=10) and batches[-1] == [prompt]
        return time.monotonic() - submitted

    model = SimpleNamespace(config=PretrainedConfig(max_position_embeddings=64))
    engine = Recording(model, None, None, "stub", max_batch=4, gather_share=10.0, gather_max_s=5.0)
    for prompt in ("A", "B"):  # after a batch of one there is nobody to wait for: each goes at once
        assert answered_alone(engine, prompt) < 2
    submit(engine, "C", "D", "E")
    assert started.wait(10)
    submit(engine, "X")  # comes while they are answered: it waits for that batch, and then with its clients
    assert done.acquire(timeout=10)
    submit(engine, "F")  # early: it and X wait for the others (up to 5 s)
    time.sleep(0.2)
    submit(engine, "G", "H")
    assert done.acquire(timeout=10) and batches[-2:] == [["C", "D", "E"], ["F", "G", "H", "X"]]
    later = Recording(model, None, None, "stub", max_batch=4, gather_share=4.0, gather_max_s=2.0)
    for pause, waits in ((0.0, True), (2.5, False)):  # a batch of two: 2 s (4 x 0.5 s, at most 2) for its clients
        submit(later, "A", "B")
        assert done.acquire(timeout=10)
        time.sleep(pause)
        took = answered_alone(later, "C")  # nobody else comes: alone once the 2 s are over, at once after them
        assert took >= 1 if waits else took < 1
    loop.close()


def test_warm_up_answers_one_batch_of_each_size_through_the_worker_before_serving(served):
    """serve_ko.py warms up where fast mode compiles (a GPU: not here, so it would skip). The warm-up itself runs
    on any machine: one batch of each size fast mode pads to, queued as requests are, answered by the worker."""
    import threading

    import torch

    from kochat.errors import UserError
    from kochat.generation import compiles, render
    from kochat.server.engine import Engine

    answered = []

    class Recording(Engine):
        def generate(self, jobs):
            answered.append((len(jobs), threading.current_thread().name))
            super().generate(jobs)

    class Failing(Engine):
        def __init__(self, error, *args, **kwargs):
            self.error = error
            super().__init__(*args, **kwargs)

        def generate(self, jobs):
            self.finish(jobs[0], "done", None)  # the others fail after one row was answered
            raise self.error

    assert not compiles(served.model)  # a CPU: serve_ko.py does not warm up here
    prompt = render(served.template, "안녕하세요")[0]
    model = (served.model, served.tokenizer, served.template, "tiny")
    engine = Recording(*model, max_batch=5, fast=True)
    assert engine.warm_up(prompt, max_tokens=4, progress=False) == [1, 2, 4, 5]
    assert answered == [(size, "kochat-generate") for size in (1, 2, 4, 5)]  # one batch each, in the worker
    assert engine.status() == {"waiting": 0, "in_flight": 0, "batch_sizes": {}}
    assert engine.expected == 0  # the first client does not wait for the warm-up's rows to come back
    assert Recording(*model, max_batch=16, max_concurrent=3).warm_up(prompt, 4, progress=False) == [1, 2, 3]
    out_of_memory = Failing(torch.cuda.OutOfMemoryError("CUDA out of memory"), *model, max_batch=2, fast=True)
    with pytest.raises(UserError, match=r"a batch of 2 failed \(generation failed: OutOfMemoryError\): lower "
                                        r"--max_batch or --max_tokens, or skip this with --warmup=false"):
        out_of_memory.warm_up(prompt, max_tokens=4, progress=False)
    broken = Failing(RuntimeError("a compile error"), *model, max_batch=2, fast=True)
    with pytest.raises(UserError, match=r"\(generation failed: RuntimeError\): --fast=false answers without "
                                        r"compiling, or skip this with --warmup=false"):
        broken.warm_up(prompt, max_tokens=4, progress=False)
    for failed in (out_of_memory, broken):  # every row heard back: nothing left running, the worker still alive
        assert failed.status()["in_flight"] == 0 and failed.worker.is_alive()
