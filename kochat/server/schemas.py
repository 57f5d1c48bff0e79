"""What goes over the wire, in OpenAI's shapes: request bodies in, completion bodies, stream chunks and errors out.

Request bodies are pydantic models with OpenAI's field names; unknown fields are ignored, as
OpenAI-compatible servers do. Responses are plain dicts (or server-sent-event lines) built from a
generation.Answer. Nothing here knows the model or the queue.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from ..generation import Answer


# ---- errors --------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error a client caused (or the server's state, e.g. busy), answered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def error_response(status: int, message: str, type_: str = "invalid_request_error", code=None,
                   param=None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


# ---- request bodies ------------------------------------------------------------------------------
class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]  # a string, or OpenAI's content parts (many clients send these), joined by lines

    @field_validator("content", mode="before")
    @classmethod
    def text_parts_only(cls, content):
        """An image or audio part is one clear 400 (pydantic would name the union's string branch instead)."""
        if isinstance(content, list):
            kinds = {str(part.get("type", "(no type)")) for part in content if isinstance(part, dict)} - {"text"}
            if kinds:
                raise ValueError(f"this model reads text only: content parts of type 'text', not {sorted(kinds)}")
        return content

    @field_validator("content", mode="after")
    @classmethod
    def as_text(cls, content: str | list[TextPart]) -> str:
        return content if isinstance(content, str) else "\n".join(part.text for part in content)


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class Sampling(BaseModel):
    """The fields both endpoints share."""
    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(default=None)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = 1
    stream: StrictBool = False  # true or false, as OpenAI takes it: "yes" is a 400, not a stream
    stream_options: StreamOptions | None = None

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def answer_limit(self) -> int | None:
        """The answer's token limit the client asked for, if any."""
        return self.max_tokens


class ChatRequest(Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = None
    index: str | None = None      # kochat's own: the document index to answer from (server.library)
    retrieval: StrictBool = True  # kochat's own: false answers without documents

    @property
    def answer_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(Sampling):
    prompt: str | list[str]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


# ---- responses -----------------------------------------------------------------------------------
DONE = "data: [DONE]\n\n"  # the last line of every stream that was not cut short


def sse(body: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def stream_error(message: str) -> str:
    return sse({"error": {"message": message, "type": "server_error"}})


def usage(answer: Answer) -> dict:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.new_tokens,
            "total_tokens": answer.prompt_tokens + answer.new_tokens}


def finish_reason(answer: Answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


@dataclass
class Reply:
    """One response to one request: its id, time and kind (chat or text completion), shared by its whole
    body or by every chunk of its stream."""
    chat: bool
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = field(init=False)

    def __post_init__(self):
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex

    def head(self, obj: str, choices: list) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def completion(self, answer: Answer, sources: list[dict] | None = None) -> dict:
        """The whole (non-streamed) response body; with sources (a grounded answer) a top-level "sources"."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": answer.text},
                      "finish_reason": finish_reason(answer)}
        else:
            choice = {"index": 0, "text": answer.text, "logprobs": None, "finish_reason": finish_reason(answer)}
        body = {**self.head("chat.completion" if self.chat else "text_completion", [choice]), "usage": usage(answer)}
        return body if sources is None else {**body, "sources": sources}

    def chunk(self, text: str | None = None, reason: str | None = None, first: bool = False) -> str:
        """One stream event: a piece of the answer, or (reason set) its end; `first` opens a chat stream
        with the assistant's role."""
        if not self.chat:
            return sse(self.head("text_completion", [{"index": 0, "text": text or "", "logprobs": None,
                                                      "finish_reason": reason}]))
        delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
        return sse(self.head("chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": reason}]))

    def usage_chunk(self, answer: Answer) -> str:
        """The stream's last event before DONE when the client asked for usage: no choices, the token counts."""
        return sse({**self.head("chat.completion.chunk" if self.chat else "text_completion", []),
                    "usage": usage(answer)})

    def sources_chunk(self, sources: list[dict]) -> str:
        """A grounded stream's last event before DONE (after usage): no choices, the passages it was given."""
        return sse({**self.head("chat.completion.chunk", []), "sources": sources})
