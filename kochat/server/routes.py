"""The HTTP app: OpenAI's chat and completion endpoints, the model list, health and the chat page.

create_app wires it: Guard in front, OpenAI's error JSON for every error, the routes below, which find
the engine and the defaults in app.state. A request is answered in three plain steps: `prompt_text` (the
text the model continues), `to_job` (the request checked against the model: a Job, or a 4xx) and
`answer` (queued; the result as one JSON body or as server-sent events). A chat request to a server with
document indexes is grounded first (library.Library): the retrieved passages go into its prompt and come
back as `sources`. Prompts and answers are never logged here.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import PROJECT_ROOT
from ..generation import Answer
from ..prompts import Template
from ..tokenization import encode_prompt
from .engine import Busy, Engine, Job
from .guard import Guard, Keys
from .library import Library, index_not_found
from .schemas import (DONE, ApiError, ChatRequest, CompletionRequest, Reply, error_response, finish_reason,
                      stream_error)

log = logging.getLogger(__name__)
WEB_PAGE = PROJECT_ROOT / "kochat" / "web" / "chat.html"
MAX_STOPS = 4  # stop strings a request may send, as OpenAI allows

router = APIRouter()


@dataclass(frozen=True)
class Defaults:
    """What a request gets for a field it leaves out."""
    max_tokens: int
    temperature: float
    top_p: float
    system: str = ""  # a system message, for a conversation that carries none (serve_ko.py --system)


def create_app(engine: Engine, api_keys: list[str] | Keys, max_body_bytes: int = 1_000_000,
               body_timeout_s: float = 30.0, default_max_tokens: int = 256, default_temperature: float = 0.7,
               default_top_p: float = 0.9, default_system: str = "", library: Library | None = None) -> FastAPI:
    """The app for one engine. No api_keys: no key asked (serve_ko.py allows that on loopback only). api_keys
    as a dict: key -> the index names it may use (None: all). library: the document indexes, if any."""
    app = FastAPI(title="kochat", version="1", docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.defaults = Defaults(default_max_tokens, default_temperature, default_top_p, default_system)
    app.state.library = library
    keys = api_keys if isinstance(api_keys, dict) else dict.fromkeys(api_keys)
    app.add_middleware(Guard, api_keys=keys, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    app.include_router(router)
    return app


# ---- errors, all as OpenAI's error JSON ------------------------------------------------------------
async def api_error(request: Request, e: ApiError) -> JSONResponse:
    return error_response(e.status, e.message, e.type, e.code, e.param)


async def invalid_body(request: Request, e: RequestValidationError) -> JSONResponse:
    """pydantic's first complaint about a body, as one 400 naming the field."""
    first = e.errors()[0] if e.errors() else {}
    if first.get("type") == "json_invalid":
        return error_response(400, "request body is not valid JSON")
    if tuple(first.get("loc", ())) == ("body",):  # a JSON array or string, or a body without its content type
        return error_response(400, "the request body must be a JSON object, sent with Content-Type: application/json")
    where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
    # a validator's own message as it wrote it, without pydantic's "Value error, " before it
    message = str(first["ctx"]["error"]) if first.get("type") == "value_error" else first.get("msg", "invalid value")
    return error_response(400, f"{where or 'body'}: {message}", param=where)


async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
    return error_response(e.status_code, str(e.detail))


async def unexpected(request: Request, e: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return error_response(500, "internal error", "server_error")


# ---- routes --------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(WEB_PAGE.read_text(encoding="utf-8"))


@router.get("/health")
async def health(request: Request):
    engine: Engine = request.app.state.engine
    return {"status": "ok", "model": engine.model_name, **engine.status()}


@router.get("/v1/models")
async def models(request: Request):
    return {"object": "list", "data": [{"id": request.app.state.engine.model_name, "object": "model", "created": 0,
                                        "owned_by": "kochat"}]}


@router.get("/v1/indexes")
async def indexes(request: Request):
    """The document indexes this key may answer from (kochat's own endpoint; the chat page lists them)."""
    library: Library | None = request.app.state.library
    return {"object": "list", "data": library.describe(request.state.key_scope) if library else []}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    if not body.messages:
        raise ApiError(400, "messages must not be empty", param="messages")
    return await answer(request, body)


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    if len(body.prompts) != 1 or not body.prompts[0]:
        raise ApiError(400, "prompt must be one non-empty string", param="prompt")
    return await answer(request, body)


# ---- from a request to its answer ------------------------------------------------------------------
def chat_messages(body: ChatRequest, defaults: Defaults) -> list[dict]:
    """The request's messages, after the server's system message where they carry none of their own."""
    messages = [m.model_dump() for m in body.messages]
    if defaults.system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": defaults.system})
    return messages


def prompt_text(body: ChatRequest | CompletionRequest, template: Template, defaults: Defaults,
                messages: list[dict] | None = None) -> str:
    """The text the model continues: chat messages (the request's, or those grounded in documents) rendered in
    the run's template, or a completion's prompt as it is. Rendered here, once, so that one batch may mix
    chat and completion requests."""
    if isinstance(body, CompletionRequest):
        return body.prompts[0]
    try:
        return template.chat(messages or chat_messages(body, defaults))
    except ValueError as e:  # e.g. the last message is not the user's
        raise ApiError(400, str(e), param="messages") from None


def check_model(body: ChatRequest | CompletionRequest, engine: Engine) -> None:
    """This server's model and n=1, else an ApiError (404 for another model, else 400)."""
    if body.model != engine.model_name:
        raise ApiError(404, f"model '{body.model}' not found; this server serves '{engine.model_name}'",
                       code="model_not_found", param="model")
    if body.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")


def to_job(body: ChatRequest | CompletionRequest, engine: Engine, defaults: Defaults,
           messages: list[dict] | None = None) -> Job:
    """The request as the engine's Job, once it fits: a prompt and an answer limit within the context, at most
    MAX_STOPS stop strings. Otherwise an ApiError (400)."""
    prompt = prompt_text(body, engine.template, defaults, messages)
    prompt_tokens = len(encode_prompt(engine.tokenizer, prompt))
    room = engine.context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's context is {engine.context}",
                       code="context_length_exceeded",
                       param="messages" if isinstance(body, ChatRequest) else "prompt")
    limit = body.answer_limit if body.answer_limit is not None else min(defaults.max_tokens, room)
    if not 1 <= limit <= room:
        raise ApiError(400, f"max_tokens must be between 1 and {room} (the context of {engine.context} tokens "
                            f"less the prompt's {prompt_tokens})", param="max_tokens")
    if len(body.stops) > MAX_STOPS:
        raise ApiError(400, f"at most {MAX_STOPS} stop sequences", param="stop")
    temperature = defaults.temperature if body.temperature is None else body.temperature
    top_p = defaults.top_p if body.top_p is None else body.top_p
    return Job(prompt, limit, temperature, top_p, body.stops, asyncio.get_running_loop())


async def ground(request: Request, body: ChatRequest, engine: Engine):
    """(messages with the passages attached, sources) for a chat request to a server with documents; (None,
    None) when it answers without them; (None, []) when the documents do not cover the question."""
    library: Library | None = request.app.state.library
    if library is None and body.index is not None:
        raise index_not_found(body.index, [])
    searcher = library.choose(body, request.state.key_scope) if library else None
    if searcher is None:
        return None, None
    limit = body.answer_limit if body.answer_limit is not None else request.app.state.defaults.max_tokens
    messages = chat_messages(body, request.app.state.defaults)
    # Kiwi and BM25 take milliseconds to tens of them: off the event loop, which serves every other client
    grounded, found = await asyncio.to_thread(library.ground, searcher, messages, engine.tokenizer, engine.template,
                                              engine.context - min(limit, engine.context // 2))
    if found.too_long:
        raise ApiError(400, "the conversation leaves no room in this model's context for the documents' passages: "
                            "send fewer earlier turns (start a new conversation)", code="context_length_exceeded",
                       param="messages")
    return (grounded, found.sources()) if found.covered else (None, [])


def not_covered(library: Library) -> Job:
    """A finished Job whose answer says the documents do not cover the question: the model is not asked."""
    job = Job("", 0, 0.0, 1.0, [], asyncio.get_running_loop())
    job.events.put_nowait(("delta", library.not_covered))
    job.events.put_nowait(("done", Answer("", "", library.not_covered, 0, 0.0, "stop", 0)))
    return job


async def answer(request: Request, body: ChatRequest | CompletionRequest) -> Response:
    """Queue the request (429 when the engine is full); its answer as one JSON body, or streamed."""
    engine: Engine = request.app.state.engine
    check_model(body, engine)
    job = to_job(body, engine, request.app.state.defaults)  # every 400 before any retrieval, covered or not
    messages, sources = await ground(request, body, engine) if isinstance(body, ChatRequest) else (None, None)
    if sources == []:
        job = not_covered(request.app.state.library)
    else:
        if messages is not None:
            job = to_job(body, engine, request.app.state.defaults, messages)
        try:
            engine.submit(job)
        except Busy:
            raise ApiError(429, f"the server is busy: {engine.max_concurrent} requests are in progress "
                                f"(serve_ko.py --max_concurrent); retry shortly", "rate_limit_error",
                           "too_many_requests") from None
    reply = Reply(chat=isinstance(body, ChatRequest), model=engine.model_name)
    if body.stream:
        return StreamingResponse(events(request, job, reply, body.include_usage, sources),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        while True:
            kind, value = await job.events.get()
            if kind == "error":
                raise ApiError(500, value, "server_error")
            if kind == "done":
                return JSONResponse(reply.completion(value, sources))
    except asyncio.CancelledError:  # the client went away: free the row
        job.cancelled = True
        raise


async def events(request: Request, job: Job, reply: Reply, include_usage: bool, sources: list[dict] | None = None):
    """The answer as server-sent events: (for chat) the assistant's role, each piece of text, the finish
    reason, usage if asked, the sources of a grounded answer, [DONE]. A client that leaves mid-stream
    cancels its row."""
    try:
        if reply.chat:
            yield reply.chunk(first=True)
        while True:
            try:
                kind, value = await asyncio.wait_for(job.events.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if kind == "delta":
                yield reply.chunk(value)
            elif kind == "error":
                yield stream_error(value)
                return
            else:
                yield reply.chunk(reason=finish_reason(value))
                if include_usage:
                    yield reply.usage_chunk(value)
                if sources is not None:
                    yield reply.sources_chunk(sources)
                yield DONE
                return
    finally:  # the client went away mid-stream (or the stream ended): free the row
        job.cancelled = True
