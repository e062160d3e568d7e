"""The FastAPI application: routers per feature, JSON errors everywhere, and the guards in
front of them, outermost first:

1. CORS (when origins are configured), so that every answer below carries its headers;
2. :class:`rag.api.auth.ApiKeyGate`: 401 from the headers alone, before any body is read;
3. :class:`BodyGuard`: size (413), type (415) and encoding (422) of the body;
4. :class:`rag.api.limits.HeavyGate`: searches and answers in flight, a short queue, 503
   with ``Retry-After`` beyond;
5. the routers, whose models refuse any text a client sends that is not UTF-8 (422).

Slow clients and too many connections are stopped before the app, in the HTTP protocol
(:mod:`rag.api.protocol`).

``create_app()`` is cheap; the retriever (index, Kiwi, embedder) is loaded once by the
lifespan before the server accepts connections. When loading fails the server refuses to
start and says why in one line (uvicorn then exits with status 3)::

    ERROR:    cannot start the API: no index in /srv/index; run `rag index build`
    ERROR:    Application startup failed. Exiting.

Every error is ``{"error": {"code", "message"}}`` with a one-line message saying what was
wrong (:mod:`rag.api.errors`); a bad request never takes the server down.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.auth import ApiKeyGate
from rag.api.errors import (
    describe_startup_error,
    error_response,
    install_error_handlers,
)
from rag.api.limits import HeavyGate, Limits, current_limits
from rag.api.responses import KoreanJSONResponse
from rag.api.routers import chat, documents, health, openai_compat, search
from rag.api.routers.page import install_page
from rag.api.state import ApiState, load_state
from rag.config import API_KEY_ENV, CORS_ORIGINS_ENV, Settings
from rag.search.retriever import Retriever

log = logging.getLogger("rag.api")

#: Largest request body accepted (bytes); the longest sensible conversation fits easily.
MAX_BODY_BYTES = 64 * 1024


class BodyGuard:
    """Pure-ASGI middleware for requests with a body: the body must be at most ``limit``
    bytes (413; judged by Content-Length when given and by the bytes actually received in
    any case), sent as ``application/json`` (415) and UTF-8 (422). The accepted body is
    replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype and not (ctype == "application/json" or ctype.endswith("+json")):
            resp = error_response(415, "unsupported_media_type",
                                  f"the body must be JSON sent with 'Content-Type: application/json', not {ctype!r}")
            return await resp(scope, receive, send)
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await error_response(400, "bad_request", "the Content-Length header is not a number")(scope, receive, send)
            if size > self.limit:
                return await self._too_large(size, scope, receive, send)
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            if total > self.limit:
                return await self._too_large(total, scope, receive, send, at_least=True)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        if data and not ctype:
            resp = error_response(415, "unsupported_media_type",
                                  "the body must be JSON sent with 'Content-Type: application/json' (the header is missing)")
            return await resp(scope, receive, send)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            resp = error_response(422, "invalid_request", f"the body is not valid JSON: it is not UTF-8 (byte {exc.start})")
            return await resp(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, size: int, scope: Scope, receive: Receive, send: Send, at_least: bool = False) -> None:
        more = "more than " if at_least else ""
        resp = error_response(413, "payload_too_large",
                              f"the body is {more}{size:,} bytes; the limit is {self.limit:,} bytes",
                              headers={"Connection": "close"})
        await resp(scope, receive, send)


class RagAPI(FastAPI):
    """FastAPI that reports a failed startup as its one-line reason rather than a traceback."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await super().__call__(scope, receive, send)

        async def send_short(message: Message) -> None:
            reason = getattr(self.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and reason:
                message = {**message, "message": reason}
            await send(message)

        await super().__call__(scope, receive, send_short)


def create_app(settings: Optional[Settings] = None, retriever: Optional[Retriever] = None,
               limits: Limits | None = None) -> FastAPI:
    """The API application.

    Args:
        settings: paths and model; ``Settings()`` (environment and defaults) when omitted.
        retriever: an already open retriever to serve (tests, ``rag chat``); when omitted
            the lifespan opens one at startup.
        limits: the in-flight cap and queue of :class:`rag.api.limits.HeavyGate`;
            :func:`rag.api.limits.current_limits` (environment and defaults) when omitted.

    Returns:
        The FastAPI app. The API key variable (``rag.config.API_KEY_ENV``, read now) turns
        on bearer auth for everything but /health, the docs and the page (/, /static); the CORS variable
        (``rag.config.CORS_ORIGINS_ENV``, comma-separated) allows those origins.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.rag is None:
            try:
                app.state.rag = load_state(settings)
            except Exception as exc:
                app.state.startup_error = describe_startup_error(exc)
                log.debug("startup failed", exc_info=True)
                raise
            m = app.state.rag.retriever.index.manifest
            log.info("loaded index %s: %s chunks from %d documents",
                     app.state.rag.retriever.index.path.name, m.get("n_chunks"), len(app.state.rag.docs))
        yield

    app = RagAPI(
        title="한국어 정책문서 Q&A API",
        version="0.1.0",
        summary="뿌리산업·소재부품장비 정책 문서에 근거한 답변과 인용",
        description="질문에 문서 원문 문장으로 답하고, 각 문장의 근거 위치(문서·절·문자 위치)를 함께 돌려줍니다. "
                    f"`{API_KEY_ENV}`가 설정된 서버는 /health와 문서(/docs) 외의 모든 요청에 "
                    "`Authorization: Bearer <key>`가 필요합니다. 오류는 항상 `{\"error\": {\"code\", \"message\"}}`입니다.",
        default_response_class=KoreanJSONResponse,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from the page router, on vendored assets (no CDN)
        redoc_url=None,
    )
    app.state.rag = ApiState.build(settings, retriever) if retriever is not None else None
    app.state.startup_error = None
    app.state.api_key = os.environ.get(API_KEY_ENV) or None
    app.state.settings = settings

    for module in (health, search, chat, documents, openai_compat):
        app.include_router(module.router)
    install_page(app)  # GET / (the staff page), /static, /docs, /redoc: public
    install_error_handlers(app)

    limits = limits or current_limits()
    app.state.limits = limits
    # added innermost first: Starlette wraps each new middleware around the previous ones
    app.add_middleware(HeavyGate, limit=limits.max_inflight, queue=limits.max_queue, wait=limits.queue_wait,
                       retry_after=limits.retry_after)
    app.add_middleware(BodyGuard, limit=MAX_BODY_BYTES)
    app.add_middleware(ApiKeyGate, key=app.state.api_key)
    origins = [o.strip() for o in os.environ.get(CORS_ORIGINS_ENV, "").split(",") if o.strip()]
    if origins:  # outermost, so errors from the guards carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Server-Timing"])
    return app


__all__ = ["create_app", "BodyGuard", "MAX_BODY_BYTES", "RagAPI"]
