"""Embedding caches for the ablations: :class:`VectorCache` keeps passage vectors across
runs (one ``.npz`` per model), :class:`QueryMemo` keeps question vectors within a run.
Twenty-odd variant indexes share most passages and all questions, so the expensive model
calls happen once.

The ``.npz`` is binary, so :meth:`VectorCache.save` writes it atomically itself (with an
fsync) rather than through the text writers of :mod:`rag.text.files`.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np


def model_slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"


class VectorCache:
    """Passage embeddings by :func:`rag.index.store.text_key`, persisted across runs.

    One ``.npz`` per model (``keys``: the text keys, ``vectors``: float32 rows), written
    atomically (temp file + rename), so concurrent or interrupted runs never leave a file
    that does not load; the worst case is losing the other run's additions.
    """

    MAX_ENTRIES = 20000

    def __init__(self, path: Path | None):
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
                self.vectors = {str(k): np.asarray(v, np.float32) for k, v in zip(keys, vecs)}
            except Exception:  # unreadable cache: start afresh, it is only a cache
                self.vectors = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def add_index(self, index, use_prefixes: bool) -> int:
        """Remember the vectors of a built index; returns how many were new."""
        # lazy: heavy dependency (faiss, bm25s via rag.index)
        from rag.index.build import text_key

        new = 0
        for i, c in enumerate(index.chunks):
            key = text_key(c, use_prefixes)
            if key not in self.vectors:
                self.vectors[key] = np.array(index.vectors[i], dtype=np.float32)
                new += 1
        self._dirty = self._dirty or new > 0
        return new

    def save(self, keep: set[str] | None = None) -> None:
        if self.path is None or not self._dirty:
            return
        if len(self.vectors) > self.MAX_ENTRIES and keep:
            self.vectors = {k: v for k, v in self.vectors.items() if k in keep}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.vectors), dtype="U64")
        vecs = np.stack([self.vectors[k] for k in keys]) if len(keys) else np.zeros((0, 0), np.float32)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=keys, vectors=vecs.astype(np.float32))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False


class QueryMemo:
    """An embedder whose :meth:`encode_queries` remembers its answers (ablations ask the
    same 200 questions of many variants); everything else is the wrapped embedder's."""

    def __init__(self, embedder):
        self._embedder = embedder
        self._memo: dict[str, np.ndarray] = {}

    def prefill(self, texts: Iterable[str], batch_size: int = 64) -> None:
        """Embed all ``texts`` up front in batches (much faster than one call per question)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        for start in range(0, len(missing), batch_size):
            self.encode_queries(missing[start:start + batch_size])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for t, v in zip(missing, self._embedder.encode_queries(missing)):
                self._memo[t] = np.asarray(v, np.float32)
        if not texts:
            return np.zeros((0, self._embedder.dim), np.float32)
        return np.stack([self._memo[t] for t in texts])

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)
