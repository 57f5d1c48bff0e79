"""The HTTP app behind serve_ko.py: OpenAI-compatible chat and completions, a web chat page, API keys.

Requests wait in one first-in-first-out queue. One worker thread takes the oldest request and every
other waiting request with the same sampling settings (up to max_batch) and answers them together with
gen(), each row with its own token limit, stop strings, stream and cancellation. Streams are server-sent
events in OpenAI's format. Errors are OpenAI's error JSON; prompts and answers are never logged unless
log_prompts is set.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import PROJECT_ROOT
from .generation import gen
from .tokenization import encode_prompt

log = logging.getLogger("kochat.server")
WEB_PAGE = PROJECT_ROOT / "kochat" / "web" / "chat.html"


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def error_response(status: int, message: str, type_: str = "invalid_request_error", code=None, param=None):
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


# ---- request bodies (OpenAI's fields; unknown fields are ignored, as OpenAI-compatible servers do) ----
class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(default=None)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class ChatRequest(Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]


# ---- the generation worker -----------------------------------------------------------------------
@dataclass
class Job:
    prompt: str                       # the full prompt text: chat messages rendered once, in the template
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def send(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Engine:
    """One model, one worker thread, a fair queue, batches of waiting requests with equal sampling."""

    def __init__(self, model, tokenizer, template, model_name: str, max_batch: int = 16,
                 max_concurrent: int = 64, fast: bool = False, log_prompts: bool = False):
        self.model, self.tokenizer, self.template, self.model_name = model, tokenizer, template, model_name
        self.max_batch, self.max_concurrent, self.fast, self.log_prompts = max_batch, max_concurrent, fast, log_prompts
        self.context = getattr(model.config, "max_position_embeddings", 2048)
        self.waiting: deque[Job] = deque()
        self.in_flight = 0
        self.batch_sizes: Counter = Counter()  # how many batches of each size were generated
        self.lock = threading.Condition()
        self.worker = threading.Thread(target=self.work, name="kochat-generate", daemon=True)
        self.worker.start()

    def prompt_text(self, item, raw: bool) -> str:
        """Chat messages in the run's template, or a completion's raw text as it is. Rendered here, once,
        so a batch may mix chat and completion requests."""
        return item if raw else self.template.chat(item)

    def submit(self, job: Job) -> None:
        with self.lock:
            if self.in_flight >= self.max_concurrent:
                raise ApiError(429, f"the server is busy: {self.max_concurrent} requests are in progress "
                                    f"(serve_ko.py --max_concurrent); retry shortly", "rate_limit_error",
                               "too_many_requests")
            self.in_flight += 1
            self.waiting.append(job)
            self.lock.notify()

    def status(self) -> dict:
        with self.lock:
            return {"waiting": len(self.waiting), "in_flight": self.in_flight,
                    "batch_sizes": dict(sorted(self.batch_sizes.items()))}

    def work(self) -> None:
        while True:
            with self.lock:
                while not self.waiting:
                    self.lock.wait()
                first = self.waiting.popleft()
                batch = [first]
                for job in list(self.waiting):  # the oldest first; same sampling, so one generate() call
                    if len(batch) >= self.max_batch:
                        break
                    if (job.temperature, job.top_p) == (first.temperature, first.top_p):
                        self.waiting.remove(job)
                        batch.append(job)
            live = [job for job in batch if not job.cancelled]
            self.batch_sizes[len(live)] += 1
            try:
                if live:
                    self.generate(live)
            except Exception as e:  # a failed batch fails its requests, never the server
                log.exception("generation failed")
                for job in live:
                    job.send("error", f"generation failed: {type(e).__name__}")
            finally:
                with self.lock:
                    self.in_flight -= len(batch)

    def generate(self, jobs: list[Job]) -> None:
        answers = gen(self.model, self.tokenizer, None, [j.prompt for j in jobs],
                      max_new_tokens=[j.max_tokens for j in jobs], temperature=jobs[0].temperature,
                      top_p=jobs[0].top_p, stop=[j.stop for j in jobs], fast=self.fast,
                      stream=lambda i, text: jobs[i].send("delta", text), cancelled=lambda i: jobs[i].cancelled)
        for job, answer in zip(jobs, answers):
            if self.log_prompts:
                log.info("prompt=%r answer=%r", job.prompt, answer.text)
            job.send("done", answer)


# ---- the app -------------------------------------------------------------------------------------
def slow_header_protocol(header_timeout_s: float):
    """uvicorn's HTTP/1.1 protocol (h11) plus the one limit uvicorn lacks: a request's headers must arrive
    within header_timeout_s of the connection opening or of the previous response, else the connection is
    closed. Without it a client trickling header bytes holds a connection forever (each byte resets the
    keep-alive timer). Bodies have their own limit in Guard. Pass as uvicorn's `http=`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self.waiting_since = self.loop.time()
            self.header_timer = self.loop.call_later(header_timeout_s, self.check_headers)

        def on_response_complete(self):
            super().on_response_complete()
            self.waiting_since = self.loop.time()

        def check_headers(self):
            if self.transport.is_closing():
                return
            busy = self.cycle is not None and not self.cycle.response_complete  # headers in, answering
            waited = self.loop.time() - self.waiting_since
            if not busy and waited >= header_timeout_s:
                self.transport.close()
                return
            self.header_timer = self.loop.call_later(header_timeout_s if busy else header_timeout_s - waited,
                                                     self.check_headers)

        def connection_lost(self, exc):
            self.header_timer.cancel()
            super().connection_lost(exc)

    return HeaderTimeoutH11


PUBLIC_PATHS = {"/", "/health"}  # the page (it asks for the key itself) and the health check; all else needs a key


class Guard:
    """ASGI middleware in front of every request, before any body byte is read: the API key on every path
    but PUBLIC_PATHS, however spelled (401),
    then the body, read here whole: over max_body_bytes by Content-Length or as it arrives, chunked
    included (413), or not finished within body_timeout_s (408). A client cannot make the server hold
    more than max_body_bytes or wait on a slow upload; the app then reads the body from memory."""

    def __init__(self, app, key_ok, max_body_bytes: int, body_timeout_s: float):
        self.app, self.key_ok, self.max_body_bytes, self.body_timeout_s = app, key_ok, max_body_bytes, body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"] not in PUBLIC_PATHS and not self.key_ok(headers.get("authorization", "")):
            return await error_response(401, "missing or invalid API key: send the header 'Authorization: Bearer "
                                             "<key>'", code="invalid_api_key")(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await self.too_large(scope, receive, send)
        body, deadline = [], asyncio.get_running_loop().time() + self.body_timeout_s
        size, more = 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                return await error_response(408, f"request body not received within {self.body_timeout_s:g} s")(
                    scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            body.append(message.get("body", b""))
            size += len(body[-1])
            if size > self.max_body_bytes:
                return await self.too_large(scope, receive, send)
            more = message.get("more_body", False)
        replayed = False

        async def replay():  # the body once, then the real channel (it reports a client leaving mid-stream)
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def too_large(self, scope, receive, send):
        await error_response(413, f"request body over {self.max_body_bytes:,} bytes")(scope, receive, send)


def create_app(engine: Engine, api_keys: list[str], max_body_bytes: int = 1_000_000, body_timeout_s: float = 30.0,
               default_max_tokens: int = 256, default_temperature: float = 0.7, default_top_p: float = 0.9) -> FastAPI:
    app = FastAPI(title="kochat", version="1", docs_url=None, redoc_url=None)
    keys = [k.encode() for k in api_keys]

    def key_ok(header: str) -> bool:
        if not keys:
            return True
        given = header[7:].strip().encode() if header[:7].lower() == "bearer " else b""
        matched = False
        for key in keys:  # compare with every key, in constant time: timing says nothing about which
            matched |= hmac.compare_digest(given, key)
        return matched

    app.add_middleware(Guard, key_ok=key_ok, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e.status, e.message, e.type, e.code, e.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "request body is not valid JSON")
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(400, f"{where or 'body'}: {first.get('msg', 'invalid value')}", param=where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(request, e: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal error", "server_error")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(WEB_PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": engine.model_name, **engine.status()}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": engine.model_name, "object": "model", "created": 0,
                                            "owned_by": "kochat"}]}

    def validate(body: Sampling, item, raw: bool, max_tokens: int | None) -> Job:
        if body.model != engine.model_name:
            raise ApiError(404, f"model '{body.model}' not found; this server serves '{engine.model_name}'",
                           code="model_not_found", param="model")
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n")
        try:
            prompt = engine.prompt_text(item, raw)
        except ValueError as e:
            raise ApiError(400, str(e), param="messages") from None
        prompt_tokens = len(encode_prompt(engine.tokenizer, prompt))
        room = engine.context - prompt_tokens
        if room < 1:
            raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's context is {engine.context}",
                           code="context_length_exceeded", param="messages" if not raw else "prompt")
        limit = max_tokens if max_tokens is not None else min(default_max_tokens, room)
        if not 1 <= limit <= room:
            raise ApiError(400, f"max_tokens must be between 1 and {room} (the context of {engine.context} tokens "
                                f"less the prompt's {prompt_tokens})", param="max_tokens")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4:
            raise ApiError(400, "at most 4 stop sequences", param="stop")
        temperature = default_temperature if body.temperature is None else body.temperature
        top_p = default_top_p if body.top_p is None else body.top_p
        return Job(prompt, limit, temperature, top_p, stop, asyncio.get_running_loop())

    async def answer(request: Request, job: Job, chat: bool, stream: bool, include_usage: bool):
        engine.submit(job)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        if not stream:
            try:
                while True:
                    kind, value = await job.events.get()
                    if kind == "error":
                        raise ApiError(500, value, "server_error")
                    if kind == "done":
                        return JSONResponse(completion(ident, created, chat, value))
            except asyncio.CancelledError:
                job.cancelled = True
                raise
        return StreamingResponse(events(request, job, ident, created, chat, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def completion(ident, created, chat, answer) -> dict:
        usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.new_tokens,
                 "total_tokens": answer.prompt_tokens + answer.new_tokens}
        reason = "length" if answer.finish_reason == "length" else "stop"
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": answer.text, "logprobs": None, "finish_reason": reason}
        return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": engine.model_name, "choices": [choice], "usage": usage}

    async def events(request: Request, job: Job, ident, created, chat, include_usage):
        def chunk(delta: str | None, reason: str | None = None, usage=None, first=False) -> str:
            if chat:
                d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta else {})
                choices = [] if usage else [{"index": 0, "delta": d, "finish_reason": reason}]
                body = {"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": engine.model_name, "choices": choices}
            else:
                choices = [] if usage else [{"index": 0, "text": delta or "", "logprobs": None, "finish_reason": reason}]
                body = {"id": ident, "object": "text_completion", "created": created, "model": engine.model_name,
                        "choices": choices}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        try:
            if chat:
                yield chunk(None, first=True)
            while True:
                try:
                    kind, value = await asyncio.wait_for(job.events.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        job.cancelled = True
                        return
                    continue
                if kind == "delta":
                    yield chunk(value)
                elif kind == "error":
                    yield f"data: {json.dumps({'error': {'message': value, 'type': 'server_error'}})}\n\n"
                    return
                else:
                    yield chunk(None, "length" if value.finish_reason == "length" else "stop")
                    if include_usage:
                        yield chunk(None, usage={"prompt_tokens": value.prompt_tokens,
                                                 "completion_tokens": value.new_tokens,
                                                 "total_tokens": value.prompt_tokens + value.new_tokens})
                    yield "data: [DONE]\n\n"
                    return
        finally:  # the client went away mid-stream (or the stream ended): free the row
            job.cancelled = True

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        if not body.messages:
            raise ApiError(400, "messages must not be empty", param="messages")
        messages = [m.model_dump() for m in body.messages]
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        job = validate(body, messages, raw=False, max_tokens=max_tokens)
        return await answer(request, job, True, body.stream, bool(body.stream_options and body.stream_options.include_usage))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1 or not prompts[0]:
            raise ApiError(400, "prompt must be one non-empty string", param="prompt")
        job = validate(body, prompts[0], raw=True, max_tokens=body.max_tokens)
        return await answer(request, job, False, body.stream, bool(body.stream_options and body.stream_options.include_usage))

    return app
