"""Where searches run: the interface the retriever searches through, its default
implementation over the index folder's files, and the factory that picks one by settings.

A backend answers two questions with index rows (positions in ``LoadedIndex.chunks``) and
scores: the sparse (BM25) top list of a question's tokens and the dense (cosine) top list
of its vector. Fusion stays in the retriever, so both backends rank alike. Writes go
through the published build: the files backend *is* that build; the Milvus backend
(:mod:`rag.index.milvus`) copies it into a collection, upserting changed chunks and
deleting removed ones.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from rag.config import Settings
from rag.errors import RagError
from rag.index.sparse import top_positive
from rag.index.spec import LoadedIndex


class SearchBackend(Protocol):
    """What the retriever needs of an index engine."""

    name: str

    def sparse_search(self, tokens: list[str], depth: int) -> dict[int, float]:
        """Up to ``depth`` rows with a positive BM25 score for these question tokens."""

    def dense_search(self, vector: np.ndarray, depth: int) -> dict[int, float]:
        """The ``depth`` rows nearest to a unit question vector, by cosine."""

    def stats(self) -> dict:
        """What it holds, for ``rag index status`` and ``/health``."""

    def close(self) -> None:
        """Let go of connections and files."""


class FileBackend:
    """The default: bm25s and faiss over the published build's files, in this process."""

    name = "files"

    def __init__(self, index: LoadedIndex):
        self.index = index

    def sparse_search(self, tokens: list[str], depth: int) -> dict[int, float]:
        scores = self.index.sparse.scores(tokens)
        return {int(r): float(scores[r]) for r in top_positive(scores, depth)}

    def dense_search(self, vector: np.ndarray, depth: int) -> dict[int, float]:
        rows, sims = self.index.dense.search(vector, depth)
        return {int(r): float(s) for r, s in zip(rows, sims)}

    def stats(self) -> dict:
        return {"backend": self.name, "rows": self.index.dense.size}

    def close(self) -> None:
        pass


def open_backend(settings: Settings, index: LoadedIndex, analyzer,
                 progress: Callable[[str, int, int], None] | None = None,
                 notice: Callable[[str], None] | None = None) -> SearchBackend:
    """The backend ``settings.backend`` names, over ``index``. Milvus is brought in sync
    with the index first when it is not (``notice`` says so, ``progress`` counts rows)."""
    if settings.backend == "milvus":
        # lazy: pymilvus is an optional extra
        from rag.index.milvus import MilvusBackend

        backend = MilvusBackend.connect(settings, index)
        try:
            backend.sync(index, analyzer, settings.index_dir, progress=progress, notice=notice)
        except BaseException:
            backend.close()
            raise
        return backend
    return FileBackend(index)


def add_backend_status(settings: Settings, status: dict) -> dict:
    """``status`` (of :func:`rag.index.store.index_status`) with the backend's part: for
    Milvus, where it is, its rows and whether it holds this build; a collection that does
    not is stale like an index that lags the corpus (``rag index build`` brings it in line)."""
    if settings.backend != "milvus":
        status["backend"] = {"backend": "files"}
        return status
    from rag.index.milvus import MilvusBackend  # lazy: pymilvus is an optional extra
    from rag.index.store import load_index

    part: dict = {"backend": "milvus", "collection": settings.milvus_collection}
    if status.get("built"):
        try:
            backend = MilvusBackend.connect(settings, load_index(settings.index_dir))
            try:
                part.update(backend.stats())
            finally:
                backend.close()
        except RagError as exc:
            part["error"] = str(exc)
        if not part.get("in_sync"):
            status["stale"] = True
            status["reasons"] = [*status.get("reasons", []),
                                 part.get("error") or f"Milvus 컬렉션 {settings.milvus_collection}이(가) 색인과 맞지 않습니다"]
    status["backend"] = part
    return status
