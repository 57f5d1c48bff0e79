"""The server under hostile clients: generated malformed requests, oversize and slow bodies, auth tricks.
Nothing may answer 5xx, crash the worker, or grow memory without bound."""
import hmac
import json
import socket
import time

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import KEY

ALLOWED = {200, 400, 401, 404, 405, 408, 413, 422, 429}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "", "USER"]) | json_values,
                                 "content": st.text(max_size=120) | json_values})
sampling = {"max_tokens": st.integers(-3, 24) | st.sampled_from([0, 10**9, -(2**63)]) | json_values,
            "temperature": st.floats(-1, 3) | json_values, "top_p": st.floats(-1, 2) | json_values,
            "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=6) | json_values,
            "stream": st.booleans() | json_values, "n": st.integers(-1, 3) | json_values,
            "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values}
chat_body = st.fixed_dictionaries({"model": st.just("tiny") | json_values,
                                   "messages": st.lists(message, max_size=3) | json_values},
                                  optional={**sampling, "max_completion_tokens": st.integers(-3, 24) | json_values})
completion_body = st.fixed_dictionaries({"model": st.just("tiny") | json_values,
                                         "prompt": st.text(max_size=120) | st.lists(st.text(max_size=20), max_size=3)
                                         | json_values}, optional=sampling)
near_valid = {"max_tokens": st.integers(1, 24), "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1),
              "stop": st.lists(st.text(min_size=1, max_size=3), max_size=4), "stream": st.booleans()}
valid_chat = st.fixed_dictionaries({"model": st.just("tiny"), "messages": st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=80)}), min_size=1, max_size=3)},
    optional=near_valid)
valid_completion = st.fixed_dictionaries({"model": st.just("tiny"), "prompt": st.text(min_size=1, max_size=80)},
                                         optional=near_valid)
request = st.one_of(
    st.tuples(st.just("POST"), st.just("/v1/chat/completions"), valid_chat.map(json.dumps)),
    st.tuples(st.just("POST"), st.just("/v1/completions"), valid_completion.map(json.dumps)),
    st.tuples(st.just("POST"), st.just("/v1/chat/completions"), chat_body.map(json.dumps)),
    st.tuples(st.just("POST"), st.just("/v1/completions"), completion_body.map(json.dumps)),
    st.tuples(st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH"]),
              st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/nope", "/health", "/"]),
              st.binary(max_size=300).map(lambda b: b.decode("latin-1")) | json_values.map(json.dumps)))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def call(client, method, path, body):
    """One request; a 200 stream is read to its end, as a client would."""
    with client.stream(method, path, content=body.encode("utf-8", "surrogatepass"),
                       headers={"Content-Type": "application/json"}) as r:
        text = "".join(r.iter_text())
    assert r.status_code in ALLOWED, (method, path, body[:300], r.status_code, text[:300])
    if r.status_code >= 400:
        assert "error" in json.loads(text), text[:300]
    elif r.headers.get("content-type", "").startswith("text/event-stream"):
        assert text.rstrip().endswith("data: [DONE]"), text[-300:]
    return r.status_code


def test_generated_requests_never_get_a_5xx_and_memory_stays_flat(served):
    seen = {}
    with httpx.Client(base_url=served.url, timeout=60) as client:
        def run_examples(n):
            @settings(max_examples=n, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(request)
            def one(req):
                status = call(client, *req)
                seen[status] = seen.get(status, 0) + 1
            one()

        run_examples(200)  # warm up: caches, compiled regexes, the allocator
        before = rss_mb()
        run_examples(800)
        grown = rss_mb() - before
    print(f"statuses {dict(sorted(seen.items()))}; memory grew {grown:.1f} MB over 800 requests")
    assert grown < 100, f"memory grew {grown:.0f} MB"
    assert seen.get(200, 0) > 100 and seen.get(400, 0) > 100  # the fuzz reached both the model and the checks
    assert httpx.get(served.url + "/health").json()["status"] == "ok"  # the worker is alive


def test_a_chunked_body_over_the_limit_is_cut_off_with_413(served):
    def chunks():
        for _ in range(30):
            yield b"x" * 10_000  # 300 kB without a Content-Length; the limit is 200 kB

    r = httpx.post(served.url + "/v1/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "request body over 200,000 bytes" in r.json()["error"]["message"]


def response_from(s: socket.socket) -> str:
    """One HTTP response read whole (its headers and its body may arrive in separate packets), or what came
    before the server closed the connection."""
    data = b""
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(body) >= length:
            return data.decode()
        more = s.recv(4096)
        if not more:
            return data.decode()
        data += more


def test_a_slow_body_times_out_with_408(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\": ")  # then nothing more
        start = time.monotonic()
        reply = response_from(s)
    assert reply.startswith("HTTP/1.1 408") and "not received within 2 s" in reply
    assert 1.5 < time.monotonic() - start < 6


def test_a_client_trickling_its_headers_is_disconnected(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        start = time.monotonic()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\n")
        closed = False
        for _ in range(20):  # a header byte every 0.3 s: each one would reset a keep-alive timer
            time.sleep(0.3)
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if not closed:
            s.settimeout(3)
            closed = s.recv(100) == b""
    assert closed and 1.5 < time.monotonic() - start < 7


def test_a_kept_alive_connection_serves_several_requests(served):
    with httpx.Client(base_url=served.url) as client:  # the header clock restarts after every response
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.8)


def test_no_path_spelling_or_header_gets_past_the_key(keyed):
    for path in ["/v1/models", "//v1/models", "/v1//models", "/V1/models", "/v1/models/", "/v1/../v1/models",
                 "/v1%2Fmodels", "/docs", "/openapi.json"]:
        for headers in [{}, {"Authorization": "Bearer"}, {"Authorization": "bearer"}, {"X-API-Key": KEY},
                        {"Api-Key": KEY}, {"Authorization": f"Token {KEY}"}, {"Cookie": f"key={KEY}"}]:
            r = httpx.get(keyed.url + path + f"?api_key={KEY}", headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code)


def test_keys_are_compared_in_constant_time_against_every_key(keyed, monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for header in [f"Bearer {KEY}", "Bearer second-key", "Bearer wrong", "Bearer " + KEY[:-1]]:
        calls.clear()
        httpx.get(keyed.url + "/v1/models", headers={"Authorization": header})
        assert len(calls) == 2, header  # both keys compared whether the first matched, the second, or none
