"""BM25 over pre-analysed tokens, via bm25s.

Scoring follows Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond" (2009); the variants (``lucene`` idf = log(1 + (N - df + 0.5)/(df + 0.5)),
``robertson`` idf = log((N - df + 0.5)/(df + 0.5)) clamped at 0) are bm25s's, described in
Kamphuis et al., ECIR 2020. Tokens come from :mod:`rag.text.korean`, so analysis stays ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from scipy import sparse

logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True)
class BM25Params:
    k1: float = 0.9
    b: float = 0.75
    method: str = "lucene"


def top_positive(scores: np.ndarray, depth: int) -> np.ndarray:
    """The best ``depth`` rows with a positive score, ordered by (-score, row).

    Exactly what a stable argsort of every score gives, without sorting every chunk (at
    100k chunks that sort was ~90% of the BM25 stage; see benchmarks/report.md).
    """
    rows = np.flatnonzero(scores > 0)
    vals = scores[rows]
    if len(rows) > depth:
        cut = np.partition(vals, len(vals) - depth)[len(vals) - depth]
        keep = vals >= cut  # ties at the cut stay; the stable sort keeps the lowest rows
        rows, vals = rows[keep], vals[keep]
    return rows[np.argsort(-vals, kind="stable")[:depth]]


class SparseIndex:
    """BM25 scores for every chunk, given a query's tokens."""

    def __init__(self, model: bm25s.BM25, params: BM25Params):
        self._model = model
        self.params = params
        self._by_chunk: tuple[sparse.csr_matrix, list[str], np.ndarray] | None = None

    @classmethod
    def build(cls, corpus_tokens: list[list[str]], params: BM25Params = BM25Params()) -> "SparseIndex":
        model = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
        # an empty token list would be dropped by bm25s's vocabulary; keep every row
        model.index([toks or [""] for toks in corpus_tokens], show_progress=False)
        return cls(model, params)

    @property
    def size(self) -> int:
        return int(self._model.scores["num_docs"])

    def doc_freq(self, token: str) -> int:
        """How many chunks contain ``token`` (0 for a token the index does not know): the
        length of its column in bm25s's term-major score matrix."""
        tid = self._model.vocab_dict.get(token)
        if tid is None:
            return 0
        indptr = self._model.scores["indptr"]
        return int(indptr[tid + 1] - indptr[tid])

    def by_chunk(self) -> tuple[sparse.csr_matrix, list[str], np.ndarray]:
        """bm25s's term-major score matrix turned chunk-major: row ``d`` holds the score
        ``idf(t) * tf-part(t, d)`` of every token ``t`` of chunk ``d``; with the token of
        each column and its document frequency. Made on first use (a vector engine's
        writer reads chunks' weights from it instead of analysing them again)."""
        if self._by_chunk is None:
            s = self._model.scores
            indptr = np.asarray(s["indptr"])
            tokens = [""] * (len(indptr) - 1)
            for token, i in self._model.vocab_dict.items():
                if i < len(tokens):
                    tokens[i] = token
            by_term = sparse.csc_matrix((np.asarray(s["data"]), np.asarray(s["indices"]), indptr),
                                        shape=(self.size, len(tokens)))
            self._by_chunk = (by_term.tocsr(), tokens, np.diff(indptr))
        return self._by_chunk

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """Score of every chunk (float32, length ``size``); unknown tokens score nothing."""
        vocab = self._model.vocab_dict
        known = [t for t in query_tokens if t in vocab and t != ""]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._model.get_scores(known), dtype=np.float32)

    def save(self, folder: Path) -> None:
        self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, params: BM25Params, mmap: bool = True) -> "SparseIndex":
        model = bm25s.BM25.load(str(folder), mmap=mmap, show_progress=False)
        return cls(model, params)
