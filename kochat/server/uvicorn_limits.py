"""The one place that reaches into uvicorn's internals: a time limit on a request's headers.

uvicorn has limits for keep-alive and for the whole server, but none for a client that opens a connection
and trickles its header bytes (each byte resets the keep-alive timer), holding the connection forever.
No public option or ASGI middleware can see a request before its headers are complete, so this
subclasses uvicorn's HTTP/1.1 protocol (h11_impl.H11Protocol), relying on its `loop`, `transport`,
`cycle` and `on_response_complete` (two tests in tests/test_server_abuse.py say whether a newer uvicorn
still fits). Bodies have their own limits, in guard.Guard.
"""
from __future__ import annotations


def slow_header_protocol(header_timeout_s: float):
    """uvicorn's HTTP/1.1 protocol (h11) where a request's headers must arrive within header_timeout_s of the
    connection opening or of the previous response, else the connection is closed. Pass as uvicorn's `http=`."""
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
