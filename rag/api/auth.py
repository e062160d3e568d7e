"""API-key auth: a router dependency that asks for ``Authorization: Bearer <key>`` when the
server was started with a key (``rag.config.API_KEY_ENV``); without one the API is open.

The key is read once by :func:`rag.api.app.create_app` into ``app.state.api_key``. The
bearer form is also what OpenAI clients send (``OpenAI(api_key=…)`` → ``Authorization:
Bearer …``), so the ``/v1`` routes need nothing else; the scheme is case-insensitive.
"""

from __future__ import annotations

import hmac
from typing import Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.api.errors import ApiError
from rag.config import API_KEY_ENV

_bearer = HTTPBearer(auto_error=False, description=f"환경변수 {API_KEY_ENV}가 설정된 서버에서는 `Authorization: Bearer <key>`가 필요합니다.")


def require_api_key(request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
    """401 unless the request carries the configured key (no key configured: open)."""
    expected: Optional[str] = getattr(request.app.state, "api_key", None)
    if not expected:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    if creds is None:
        raise ApiError(401, "unauthorized", "missing API key: send the header 'Authorization: Bearer <key>'", challenge)
    # headers arrive decoded as latin-1: re-encoding gives the bytes sent, so a UTF-8 key works too
    if not hmac.compare_digest(creds.credentials.encode("latin-1"), expected.encode("utf-8")):
        raise ApiError(401, "unauthorized", "wrong API key", challenge)
