"""The HTTP server's limits: how long a client may take to send a request, how many
connections it may hold, how many expensive requests run at once. Each has a default
sized for the 2-core machine this runs on, with its reason, and an environment variable
(names in :mod:`rag.config`) to change it per deployment or test.

Where each one is enforced:

* the read timeouts and the connection cap: :mod:`rag.api.protocol`, the HTTP protocol
  the server runs (uvicorn has no timeout for reading a request, only an idle one between
  requests, and its ``limit_concurrency`` answers in plain text);
* the cap on expensive requests in flight and their short queue: :class:`HeavyGate`, a
  pure-ASGI middleware of the app.

All limits are per worker process (``rag serve`` runs one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from starlette.types import ASGIApp, Receive, Scope, Send

from rag.api.errors import error_response
from rag.config import (
    BODY_TIMEOUT_ENV,
    HEADER_TIMEOUT_ENV,
    MAX_CONNECTIONS_ENV,
    MAX_INFLIGHT_ENV,
    MAX_QUEUE_ENV,
    QUEUE_WAIT_ENV,
)
from rag.errors import ConfigError, InputError
from rag.text.outside import check_text

log = logging.getLogger("rag.api")


def cores() -> int:
    """CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


#: Seconds a client has to send a request's line and headers, from its first byte (from
#: the connection's opening for a new connection). Any honest client sends them in one
#: packet within milliseconds, a phone on a poor link within a couple of seconds; without
#: this a client that sends half a header (slowloris) holds its connection for ever.
HEADER_TIMEOUT_S = 10.0
#: Seconds a client has to send a request's body once its headers are in. Bodies are at
#: most 64 KB (:data:`rag.api.app.MAX_BODY_BYTES`), a second's work on the slowest link.
BODY_TIMEOUT_S = 10.0
#: Connections held at once (idle keep-alive ones included); the next ones get a 503 and
#: are closed. An open connection costs a file descriptor and a few KB; the common limit of
#: 1,024 descriptors per process also covers the index files and the thread pool. Far above
#: what a 2-core server answers usefully (8 busy clients saturate it), far below what
#: exhausts it.
MAX_CONNECTIONS = 512
#: Expensive requests (/search, /chat, /v1/…) running at once: four per core. They are
#: CPU-bound (30-100 ms of embedding, Kiwi and answering each), so more at once only
#: makes each slower; four per core keeps the cores busy while one request waits on
#: another's lock (Kiwi's) or on the GIL.
MAX_INFLIGHT_PER_CORE = 4
#: Expensive requests allowed to wait for a slot when all are taken, per slot: a short
#: burst is smoothed out instead of refused.
QUEUE_PER_SLOT = 2
#: Seconds a queued request waits for a slot before it is answered 503. At the usual
#: 30-100 ms a request, a full queue drains well within it; a longer wait means the
#: server is overloaded and the client does better to retry later.
QUEUE_WAIT_S = 5.0
#: ``Retry-After`` (seconds) of a 503: by then a burst has usually drained.
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Limits:
    """The limits in force (see the module constants for the defaults and their reasons)."""

    header_timeout: float = HEADER_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_inflight: int = MAX_INFLIGHT_PER_CORE * 2
    max_queue: int = QUEUE_PER_SLOT * MAX_INFLIGHT_PER_CORE * 2
    queue_wait: float = QUEUE_WAIT_S
    retry_after: int = RETRY_AFTER_S

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults (in-flight and queue sized to this process's cores), overridden by
        the environment; ConfigError naming the variable when a value is not usable."""
        inflight = _env_number(MAX_INFLIGHT_ENV, MAX_INFLIGHT_PER_CORE * cores(), integer=True, minimum=1)
        return cls(
            header_timeout=_env_number(HEADER_TIMEOUT_ENV, HEADER_TIMEOUT_S, minimum=0.1),
            body_timeout=_env_number(BODY_TIMEOUT_ENV, BODY_TIMEOUT_S, minimum=0.1),
            max_connections=_env_number(MAX_CONNECTIONS_ENV, MAX_CONNECTIONS, integer=True, minimum=1),
            max_inflight=inflight,
            max_queue=_env_number(MAX_QUEUE_ENV, QUEUE_PER_SLOT * inflight, integer=True, minimum=0),
            queue_wait=_env_number(QUEUE_WAIT_ENV, QUEUE_WAIT_S, minimum=0.0),
        )

    def describe(self) -> str:
        return (f"limits: headers in {self.header_timeout:g} s, body in {self.body_timeout:g} s, "
                f"{self.max_connections} connections, {self.max_inflight} searches/answers at once "
                f"+ {self.max_queue} waiting up to {self.queue_wait:g} s")


def _env_number(name: str, default, *, integer: bool = False, minimum: float = 0.0):
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        text = check_text(raw, f"환경 변수 {name}").strip()
        value = int(text) if integer else float(text)
    except (InputError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        kind = "정수" if integer else "수"
        raise ConfigError(f"환경 변수 {name}={raw[:40]!r}이(가) 올바르지 않습니다: {minimum:g} 이상의 {kind}여야 합니다 "
                          f"(기본값 {default:g})")
    return value


@lru_cache(maxsize=1)
def current_limits() -> Limits:
    """:meth:`Limits.from_env`, read once per process."""
    return Limits.from_env()


# ----------------------------------------------------------------------------- expensive requests


def is_heavy(path: str) -> bool:
    """Whether a request to ``path`` (without the root path) searches or answers."""
    return path in ("/search", "/chat") or path.startswith("/v1/")


class HeavyGate:
    """Pure-ASGI middleware: at most ``limit`` expensive requests (:func:`is_heavy`) run at
    once, until their response is complete (a stream included). When all slots are taken,
    up to ``queue`` more wait, first come first served, at most ``wait`` seconds each; any
    other is answered at once with 503, a ``Retry-After`` header and the usual JSON error
    body. Other requests (health, documents, the page) pass untouched.

    A freed slot is handed straight to the oldest waiter (never released and re-taken),
    so a waiter that times out at the same moment cannot lose or leak it.
    """

    def __init__(self, app: ASGIApp, limit: int, queue: int, wait: float, retry_after: int = RETRY_AFTER_S):
        self.app = app
        self.limit = max(1, int(limit))
        self.queue = max(0, int(queue))
        self.wait = float(wait)
        self.retry_after = int(retry_after)
        self.active = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        if not is_heavy(path):
            return await self.app(scope, receive, send)
        if not await self._enter():
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                log.warning("busy: %d searches/answers running and %d waiting; refused %d request(s) with 503 so far",
                            self.active, len(self.waiters), self.refused)
            resp = error_response(503, "busy", f"the server is busy ({self.active} searches or answers running, "
                                               f"{len(self.waiters)} waiting); retry in {self.retry_after} s",
                                  headers={"Retry-After": str(self.retry_after)})
            return await resp(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            self._leave()

    async def _enter(self) -> bool:
        """Take a slot (True), waiting in the queue if there is room, or False."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return True
        if len(self.waiters) >= self.queue or self.wait <= 0:
            return False
        loop = asyncio.get_running_loop()
        slot = loop.create_future()
        self.waiters.append(slot)
        timer = loop.call_later(self.wait, _expire, slot)
        try:
            await slot  # True: a slot was handed over; False: the wait expired
        except BaseException:  # cancelled (shutdown): give back a slot handed over meanwhile
            if slot.done() and not slot.cancelled() and slot.result():
                self._leave()
            raise
        finally:
            timer.cancel()
            try:
                self.waiters.remove(slot)
            except ValueError:
                pass
        return slot.result()

    def _leave(self) -> None:
        while self.waiters:
            slot = self.waiters.popleft()
            if not slot.done():
                slot.set_result(True)  # the slot passes on: active stays the same
                return
        self.active -= 1


def _expire(slot: asyncio.Future) -> None:
    if not slot.done():
        slot.set_result(False)


__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "MAX_INFLIGHT_PER_CORE", "QUEUE_PER_SLOT",
           "QUEUE_WAIT_S", "RETRY_AFTER_S", "HeavyGate", "Limits", "cores", "current_limits", "is_heavy"]
