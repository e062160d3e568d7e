"""Shared fixtures: the real corpus, and a small real index built once per session."""

from __future__ import annotations

import os
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
