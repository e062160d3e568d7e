"""Inner-product search over L2-normalised embeddings (cosine), via faiss.

Exact search (``IndexFlatIP``) below ``HNSW_FROM`` vectors; above it an HNSW graph, whose
recall against exact search is measured in benchmarks/. Exact search on one thread costs
4-7 ms at 50k-100k vectors, while HNSW at efSearch 128 kept only 0.77-0.68 of the exact
top-10 there (benchmarks/report.md), so the graph is used only where exact search would
outgrow the latency budget.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

HNSW_FROM = 200_000
HNSW_EF_SEARCH = 512  # recall@10 0.95 at 50k synthetic vectors for ~0.5 ms
HNSW_M = 32


class DenseIndex:
    def __init__(self, index: faiss.Index):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto") -> "DenseIndex":
        """``kind``: flat | hnsw | auto (hnsw from HNSW_FROM vectors on)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        if kind == "auto":
            kind = "hnsw" if len(vectors) >= HNSW_FROM else "flat"
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = HNSW_EF_SEARCH
        else:
            raise ValueError(f"unknown dense index kind {kind!r} (flat|hnsw|auto)")
        index.add(vectors)
        return cls(index)

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(chunk rows, cosine scores) of the k nearest chunks, best first."""
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        # One question is too little work to split: exact search would fan it out over
        # OpenMP threads whose barriers, on a busy 2-core machine, wait for time slices
        # (16-24 ms instead of 0.3-2.5 ms at 10k-50k vectors; benchmarks/report.md).
        # Same results; the setting belongs to the calling thread only.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, rows = self._index.search(q, min(k, self.size))
        finally:
            faiss.omp_set_num_threads(threads)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def save(self, path: Path) -> None:
        # Written from Python rather than by faiss's own fwrite, which ignores a failed
        # close: a full disk is then an OSError (ENOSPC), not a silently short file.
        data = faiss.serialize_index(self._index)
        with open(path, "wb") as fh:
            fh.write(memoryview(data))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> "DenseIndex":
        # IO_FLAG_MMAP only maps on-disk inverted lists and copies flat/HNSW storage into
        # RAM; IO_FLAG_MMAP_IFC (faiss >= 1.10) maps the vectors and the graph zero-copy
        # (benchmarks/: RSS after load is file-backed, not anonymous).
        mmap_flag = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
        flags = mmap_flag | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            return cls(faiss.read_index(str(path), flags))
        except RuntimeError:  # HNSW indexes cannot be memory-mapped by every faiss build
            return cls(faiss.read_index(str(path)))
