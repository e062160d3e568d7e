"""The FastAPI application: routers per feature, JSON errors everywhere, a body guard.

``create_app()`` is cheap; the retriever (index, Kiwi, embedder) is loaded once by the
lifespan before the server accepts connections. When loading fails the server refuses to
start and says why in one line (uvicorn then exits with status 3)::

    ERROR:    cannot start the API: no index in /srv/index; run `rag index build`
    ERROR:    Application startup failed. Exiting.

Every error is ``{"error": {"code", "message"}}`` with a one-line message saying what was
wrong; a bad request never takes the server down.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..retrieve import QuestionError, Retriever
from . import routes_chat, routes_documents, routes_health, routes_search
from .deps import API_KEY_ENV, CORS_ENV, ApiError, ApiState, KoreanJSONResponse, error_response, one_line

log = logging.getLogger("rag.api")

#: Largest request body accepted (bytes); the longest sensible conversation fits easily.
MAX_BODY_BYTES = 64 * 1024

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
                 503: "not_ready"}


# ----------------------------------------------------------------------------- body guard


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


# ----------------------------------------------------------------------------- errors


def _describe_validation(errors: list[dict[str, Any]]) -> str:
    """One line saying what was wrong with the request, from pydantic's error list."""
    if not errors:
        return "the request is invalid"
    first = errors[0]
    typ, loc = first.get("type", ""), tuple(first.get("loc", ()))
    if typ == "json_invalid":
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        why = (first.get("ctx") or {}).get("error", "")
        text = f"the body is not valid JSON ({why}{where})" if why else f"the body is not valid JSON{where}"
    else:
        fields = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
        path = ".".join(fields)
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if typ == "missing" and loc == ("body",):
            text = "the request needs a JSON body"
        elif not path and typ in ("model_type", "model_attributes_type", "dict_type"):
            text = "the body must be a JSON object"
        else:
            text = f"{path}: {msg}" if path else msg
            if typ not in ("missing", "extra_forbidden", "value_error") and "input" in first:
                got = first["input"]
                if not isinstance(got, (dict, list)):
                    shown = json.dumps(got, ensure_ascii=False)
                    text += f" (got {shown if len(shown) <= 40 else shown[:39] + '…'})"
    if len(errors) > 1:
        text += f"; and {len(errors) - 1} more problem(s)"
    return text


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> KoreanJSONResponse:
        return error_response(422, "invalid_request", _describe_validation(list(exc.errors())))

    @app.exception_handler(QuestionError)
    async def _question(request: Request, exc: QuestionError) -> KoreanJSONResponse:
        return error_response(422, "invalid_question", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> KoreanJSONResponse:
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> KoreanJSONResponse:
        log.error("unhandled error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "internal_error",
                              f"internal error ({type(exc).__name__}); the server log has the details")


# ----------------------------------------------------------------------------- app


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


def describe_startup_error(exc: BaseException) -> str:
    """The one line a failed startup is reported with (known core errors say what to do)."""
    from ..corpus import CorpusError
    from ..index.store import IndexError_

    known: tuple[type[BaseException], ...] = (CorpusError, IndexError_)
    try:
        from ..embedding import ModelNotAvailableError

        known += (ModelNotAvailableError,)
    except ImportError:
        pass
    why = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
    return "cannot start the API: " + one_line(why)


def load_state(settings: Settings) -> ApiState:
    """Open the retriever (building the index when missing or stale) and the documents."""
    def progress(stage: str, advance: int, total: int) -> None:
        if advance == 0:
            log.info("index build: %s (%d items)", stage, total)

    retriever = Retriever.open(settings, progress=progress, notice=lambda m: log.warning("%s", m))
    return ApiState.build(settings, retriever)


def create_app(settings: Optional[Settings] = None, retriever: Optional[Retriever] = None) -> FastAPI:
    """The API application.

    Args:
        settings: paths and model; ``Settings()`` (environment and defaults) when omitted.
        retriever: an already open retriever to serve (tests, ``rag chat``); when omitted
            the lifespan opens one at startup.

    Returns:
        The FastAPI app. ``RAG_API_KEY`` (read now) turns on bearer auth for everything but
        /health and the docs; ``RAG_CORS_ORIGINS`` (comma-separated) allows those origins.
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
    )
    app.state.rag = ApiState.build(settings, retriever) if retriever is not None else None
    app.state.startup_error = None
    app.state.api_key = os.environ.get(API_KEY_ENV) or None
    app.state.settings = settings

    for module in (routes_health, routes_search, routes_chat, routes_documents):
        app.include_router(module.router)
    _install_error_handlers(app)

    app.add_middleware(BodyGuard, limit=MAX_BODY_BYTES)
    origins = [o.strip() for o in os.environ.get(CORS_ENV, "").split(",") if o.strip()]
    if origins:  # outermost, so errors from the body guard carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Server-Timing"])
    return app


__all__ = ["create_app", "load_state", "describe_startup_error", "MAX_BODY_BYTES", "ApiError", "RagAPI"]
