"""The HTTP/1.1 protocol the server runs: uvicorn's h11 protocol plus read timeouts and a
connection cap (:mod:`rag.api.limits` has the numbers and their reasons).

Why a subclass: uvicorn (0.55) has no timeout for *reading* a request. Its
``timeout_keep_alive`` closes a connection idle between two requests, but it is armed only
after a response and cancelled by any byte received, so a client that opens a connection
and sends nothing, or sends half a header and then a byte now and then (slowloris), holds
the connection for ever; ASGI middleware cannot help, since the app is called only once the
headers are complete. h11 is sans-IO and has no timers either. So this protocol arms:

* a **header timer** when a connection opens, and when the first bytes of a later request
  arrive on a kept-alive connection; it is cancelled once the request's line and headers
  are complete. It is a deadline, not an idle timer: trickling bytes does not extend it;
* a **body timer** once the headers are complete and the body is not; cancelled when the
  body is complete (a request without a body never arms it).

On expiry the connection is closed; a client that had sent part of a request first gets a
``408`` with the usual JSON error body (a connection that never sent a byte is closed
silently, as browsers' pre-opened connections expect). Once a request is read, nothing here
limits how long the answer takes (streams included).

The **connection cap**: a connection opened while ``max_connections`` are already open gets
``503`` with ``Retry-After`` and the JSON error body to its first request, and is closed.
uvicorn's own ``limit_concurrency`` is left off: it counts connections and running requests
together and answers ``Service Unavailable`` in plain text; the in-flight cap on expensive
requests is :class:`rag.api.limits.HeavyGate`.

Pass the class to uvicorn as ``http=GuardedH11Protocol`` (``rag serve`` does). The h11
implementation is used whether or not ``httptools`` is installed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from rag.api.errors import error_body
from rag.api.limits import Limits, current_limits
from rag.api.responses import dumps

log = logging.getLogger("rag.api")


def _raw_response(status: int, reason: str, code: str, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole HTTP/1.1 response with the JSON error body, ending the connection."""
    body = dumps(error_body(code, message)).encode("utf-8")
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json; charset=utf-8",
            f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with a header timeout, a body timeout and a connection cap."""

    #: The limits for every connection; read from the environment once per process when None.
    limits: Limits | None = None
    #: Connections closed for being too slow, and refused over the cap, in this process
    #: (the log says so at the first and every 100th, not once per connection).
    timed_out = 0
    refused = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lim = self.limits or current_limits()
        self._header_timeout = lim.header_timeout
        self._body_timeout = lim.body_timeout
        self._max_connections = lim.max_connections
        self._retry_after = lim.retry_after
        self.limit_concurrency = None  # replaced by the connection cap below and HeavyGate
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._got_bytes = False

    # -- connection events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            self.app = self._refuse_connection
        self._header_timer = self.loop.call_later(self._header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header()
        self._cancel_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        super().data_received(data)
        self._sync_timers(receiving=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync_timers(receiving=False)

    # -- timers --------------------------------------------------------------------------

    def _sync_timers(self, receiving: bool) -> None:
        """Arm or cancel the timers for where the client's request stands now."""
        if self.transport is None or self.transport.is_closing():
            self._cancel_header()
            self._cancel_body()
            return
        state = self.conn.their_state
        if state is h11.IDLE:  # between requests, or part of a request line/headers buffered
            self._cancel_body()
            if receiving and self._header_timer is None:  # the first bytes of a new request
                self._header_timer = self.loop.call_later(self._header_timeout, self._on_header_timeout)
        elif state is h11.SEND_BODY:
            self._cancel_header()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self._body_timeout, self._on_body_timeout)
        else:  # DONE (the whole request is in), MUST_CLOSE, CLOSED, ERROR
            self._cancel_header()
            self._cancel_body()

    def _cancel_header(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self._got_bytes:
            log.debug("closing %s: no complete request headers within %g s", self.client, self._header_timeout)
            self.transport.write(_raw_response(
                408, "Request Timeout", "request_timeout",
                f"the request line and headers did not arrive within {self._header_timeout:g} s"))
        self._close()

    def _on_body_timeout(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        log.debug("closing %s: request body incomplete after %g s", self.client, self._body_timeout)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # the app may be waiting for the body: tell it the client is gone, answer for it
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.write(_raw_response(
                408, "Request Timeout", "request_timeout",
                f"the request body did not arrive within {self._body_timeout:g} s of the headers"))
        self._close()

    def _close(self) -> None:
        cls = GuardedH11Protocol
        cls.timed_out += 1
        if cls.timed_out == 1 or cls.timed_out % 100 == 0:
            log.warning("closed %d connection(s) so far that were too slow to send a request "
                        "(headers in %g s, body in %g s)", cls.timed_out, self._header_timeout, self._body_timeout)
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass
        self.transport.close()

    # -- the connection cap ------------------------------------------------------------

    async def _refuse_connection(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app of a connection opened over the cap: 503, then the connection closes."""
        cls = GuardedH11Protocol
        cls.refused += 1
        if cls.refused == 1 or cls.refused % 100 == 0:
            log.warning("refused %d connection(s) so far over the cap of %d", cls.refused, self._max_connections)
        body = dumps(error_body("too_many_connections",
                                f"the server holds its maximum of {self._max_connections} connections; "
                                f"retry in {self._retry_after} s")).encode("utf-8")
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), (b"retry-after", str(self._retry_after).encode())]})
        await send({"type": "http.response.body", "body": body})


__all__ = ["GuardedH11Protocol"]
