"""The door: API keys and request bodies are checked here, before any route or the model sees a request.

Guard is plain ASGI middleware. Every path but PUBLIC_PATHS needs a key, however the path is spelled
(401); the body is then read here, whole and bounded: over max_body_bytes by Content-Length or as it
arrives, chunked included (413), or not finished within body_timeout_s (408). A client cannot make the
server hold more than max_body_bytes or wait on a slow upload; the app then reads the body from memory.
Headers that never finish are uvicorn_limits' concern.
"""
from __future__ import annotations

import asyncio
import hmac

from fastapi.responses import JSONResponse

from .schemas import error_response

PUBLIC_PATHS = {"/", "/health"}  # the page (it asks for the key itself) and the health check; all else needs a key


Keys = dict[str, "frozenset[str] | None"]  # key -> the index names it may use (None: all of them)


def find_key(keys: list[tuple[bytes, frozenset | None]], authorization: str) -> tuple[bool, frozenset | None]:
    """Whether an Authorization header carries one of the keys ("Bearer <key>"), and that key's index scope;
    (True, None) when there are no keys. Compared with every key, in constant time: how long it takes says
    nothing about which key, if any, matched."""
    if not keys:
        return True, None
    given = authorization[7:].strip().encode() if authorization[:7].lower() == "bearer " else b""
    matched, scope = False, None
    for key, key_scope in keys:
        same = hmac.compare_digest(given, key)
        scope = key_scope if same else scope
        matched |= same
    return matched, scope


class Guard:
    """ASGI middleware: the key, then the body, as the module says. `app.add_middleware(Guard, api_keys=...,
    max_body_bytes=..., body_timeout_s=...)`. The matched key's index scope goes to the routes as
    `request.state.key_scope`."""

    def __init__(self, app, api_keys: Keys, max_body_bytes: int, body_timeout_s: float):
        self.app, self.max_body_bytes, self.body_timeout_s = app, max_body_bytes, body_timeout_s
        self.keys = [(k.encode(), scope) for k, scope in api_keys.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        matched, key_scope = find_key(self.keys, headers.get("authorization", ""))
        if scope["path"] not in PUBLIC_PATHS and not matched:
            return await error_response(401, "missing or invalid API key: send the header 'Authorization: Bearer "
                                             "<key>'", code="invalid_api_key")(scope, receive, send)
        scope.setdefault("state", {})["key_scope"] = key_scope if matched else frozenset()
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await self.too_large()(scope, receive, send)
        body = await self.read_body(receive)
        if body is None:  # the client left
            return
        if not isinstance(body, bytes):
            return await body(scope, receive, send)
        replayed = False

        async def replay():  # the body once, then the real channel (it reports a client leaving mid-stream)
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def read_body(self, receive) -> bytes | JSONResponse | None:
        """The whole body; or the error to answer instead (413 past max_body_bytes, 408 past body_timeout_s);
        None if the client left."""
        loop = asyncio.get_running_loop()
        parts, size, deadline = [], 0, loop.time() + self.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except asyncio.TimeoutError:
                return error_response(408, f"request body not received within {self.body_timeout_s:g} s")
            if message["type"] == "http.disconnect":
                return None
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_body_bytes:
                return self.too_large()
            if not message.get("more_body", False):
                return b"".join(parts)

    def too_large(self) -> JSONResponse:
        return error_response(413, f"request body over {self.max_body_bytes:,} bytes")
