"""How the HTTP API reports errors: always ``{"error": {"code", "message"}}`` with a one-line
message, whatever failed (a handler's :class:`ApiError`, request validation, a bad
question, an unknown route, a bug) and a one-line reason when start-up fails.

Gathered here so that the body guard, the routers and the app all speak the same shape.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from rag.api.responses import KoreanJSONResponse
from rag.errors import QuestionError, RagError

log = logging.getLogger("rag.api")

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 429: "too_many_requests",
                 503: "not_ready"}


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code; rendered as the JSON error body."""

    def __init__(self, status_code: int, code: str, message: str, headers: Optional[dict] = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def one_line(text: str, limit: int = 500) -> str:
    """``text`` squeezed onto one line (and shortened), for error messages. A lone
    surrogate (a client's ``\\ud800`` echoed back) is written as its escape, since it cannot
    be encoded: an error message must never become a second error."""
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return flat.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": one_line(message)}}


def error_response(status: int, code: str, message: str, headers: Optional[dict] = None) -> KoreanJSONResponse:
    return KoreanJSONResponse(error_body(code, message), status_code=status, headers=headers)


def describe_startup_error(exc: BaseException) -> str:
    """The one line a failed startup is reported with (expected failures say what to do)."""
    why = str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
    return "cannot start the API: " + one_line(why)


def describe_validation(errors: list[dict[str, Any]]) -> str:
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


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as the JSON error body (a 500 keeps the details in the log)."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> KoreanJSONResponse:
        return error_response(422, "invalid_request", describe_validation(list(exc.errors())))

    @app.exception_handler(QuestionError)
    async def _question(request: Request, exc: QuestionError) -> KoreanJSONResponse:
        return error_response(422, "invalid_question", str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> KoreanJSONResponse:
        code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's words when json.loads fails with anything but a JSONDecodeError: the
            # body is UTF-8 (the body guard checked), so in practice it is nested too deeply
            message = "the body could not be read as JSON (nested too deeply?)"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> KoreanJSONResponse:
        log.error("unhandled error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "internal_error",
                              f"internal error ({type(exc).__name__}); the server log has the details")
