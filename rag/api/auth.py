"""API-key auth: ``Authorization: Bearer <key>`` when the server was started with a key
(``rag.config.API_KEY_ENV``); without one the API is open.

The check is :class:`ApiKeyGate`, a pure-ASGI middleware that sits outside everything but
CORS: a request without the key is answered ``401`` from its headers alone, before its
body is read or judged, so a client without the key learns nothing from the server's
other answers (413, 415, 422, 503) and costs it nothing but the headers. Public, with or
without a key: ``GET /health`` (which then tells less, see
:func:`rag.api.routers.health.health`), the staff page ``/`` and its ``/static`` files, and
the API docs (``/docs``, ``/redoc``, ``/openapi.json``): they hold no data.

The key is read once by :func:`rag.api.app.create_app` into ``app.state.api_key``. The
bearer form is also what OpenAI clients send (``OpenAI(api_key=…)`` → ``Authorization:
Bearer …``), so the ``/v1`` routes need nothing else; the scheme is case-insensitive.
The :func:`require_api_key` dependency on the routers makes the same check again and
puts the scheme in the OpenAPI document.
"""

from __future__ import annotations

import hmac
from typing import Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.api.errors import ApiError, error_response
from rag.config import API_KEY_ENV

_bearer = HTTPBearer(auto_error=False, description=f"환경변수 {API_KEY_ENV}가 설정된 서버에서는 `Authorization: Bearer <key>`가 필요합니다.")

#: Paths served without the key (exact), and path prefixes (``/static/…``).
PUBLIC_PATHS = frozenset({"/", "/health", "/docs", "/redoc", "/openapi.json", "/static"})
PUBLIC_PREFIXES = ("/static/",)

MISSING = "missing API key: send the header 'Authorization: Bearer <key>'"
WRONG = "wrong API key"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def is_public(path: str) -> bool:
    """Whether ``path`` (without the root path) is served without the key."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def key_problem(authorization: bytes | None, expected: bytes) -> str | None:
    """None when the ``Authorization`` header value (raw bytes) carries the key, else what
    is wrong (:data:`MISSING` or :data:`WRONG`). The bytes are compared as sent, in
    constant time, so a UTF-8 key works too."""
    if not authorization:
        return MISSING
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        return MISSING
    return None if hmac.compare_digest(token, expected) else WRONG


def _route_path(scope: Scope) -> str:
    path = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class ApiKeyGate:
    """Pure-ASGI middleware: 401 for a protected path without the key, from the headers
    alone (the body is never read; a request that has one is answered with
    ``Connection: close``, so the unread body cannot hold the connection)."""

    def __init__(self, app: ASGIApp, key: str | None):
        self.app = app
        self.key = key.encode("utf-8") if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or is_public(_route_path(scope)):
            return await self.app(scope, receive, send)
        authorization = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value if authorization is None else authorization  # the first, as Starlette reads it
            elif name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
                has_body = True
        problem = key_problem(authorization, self.key)
        if problem is None:
            return await self.app(scope, receive, send)
        headers = dict(CHALLENGE)
        if has_body:
            headers["Connection"] = "close"
        await error_response(401, "unauthorized", problem, headers=headers)(scope, receive, send)


def _request_problem(request: Request) -> str | None:
    """None when no key is configured or ``request`` carries it, else what is wrong."""
    expected: str | None = getattr(request.app.state, "api_key", None)
    if not expected:
        return None
    raw = next((v for k, v in request.scope["headers"] if k == b"authorization"), None)
    return key_problem(raw, expected.encode("utf-8"))


def is_authorized(request: Request) -> bool:
    """Whether ``request`` may see everything: no key is configured, or it carries the key."""
    return _request_problem(request) is None


def require_api_key(request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
    """401 unless the request carries the configured key (no key configured: open)."""
    problem = _request_problem(request)
    if problem is not None:
        raise ApiError(401, "unauthorized", problem, CHALLENGE)
