"""BM25 as a sparse inner product, so that a vector engine scores exactly as bm25s does.

bm25s's Lucene variant scores a chunk d for a question q as
``sum over tokens t of q (with repeats): idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))``
(Kamphuis et al., ECIR 2020). Split into two sparse vectors, the sum is their inner product:
the chunk's vector holds the term-frequency part of every token it contains, the
question's holds ``idf(t) * count of t in q``. The IDF stays on the question's side, so
adding or removing documents changes no other chunk's vector; only the average length
``avgdl`` is baked into chunk vectors, and :data:`AVGDL_REWEIGHT_DRIFT` says when they are
rewritten for it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

from rag.index.sparse import BM25Params, SparseIndex

#: Chunk vectors are rewritten when the corpus's average length has moved by more than
#: this share since they were written. Below it, a chunk's term-frequency part moves by less
#: than b * 2% = 1.5% of its length term, i.e. well under 1% of its score, far below the
#: gaps that order passages; above it, every chunk is re-weighted (no embedding: the dense
#: vectors are sent again as they are).
AVGDL_REWEIGHT_DRIFT = 0.02


def indexed_tokens(tokens: list[str]) -> list[str]:
    """The tokens bm25s indexes for a chunk: an empty chunk is one empty token (see
    :meth:`rag.index.sparse.SparseIndex.build`), which no question can match."""
    return tokens or [""]


def average_length(corpus_tokens: list[list[str]]) -> float:
    """``avgdl``: the mean number of indexed tokens per chunk."""
    return sum(len(indexed_tokens(t)) for t in corpus_tokens) / max(1, len(corpus_tokens))


def chunk_weights(tokens: list[str], avgdl: float, params: BM25Params) -> dict[str, float]:
    """The chunk's side: token → ``tf / (tf + k1 * (1 - b + b * |d| / avgdl))``."""
    toks = indexed_tokens(tokens)
    norm = params.k1 * (1 - params.b + params.b * len(toks) / avgdl)
    return {t: tf / (tf + norm) for t, tf in Counter(toks).items() if t != ""}


def stored_chunk_weights(index: SparseIndex, rows: list[int]) -> list[dict[str, float]]:
    """:func:`chunk_weights` of these chunk rows as the index computed them at build: each
    token's stored score divided by its idf (exact to float32 rounding, no analysis; a
    token whose idf is 0 scores nothing either way, so its weight is 0)."""
    matrix, tokens, df = index.by_chunk()
    n, method = index.size, index.params.method
    out = []
    for row in rows:
        a, b = matrix.indptr[row], matrix.indptr[row + 1]
        weights = {}
        for col, score in zip(matrix.indices[a:b].tolist(), matrix.data[a:b].tolist()):
            if tokens[col]:
                w = idf(int(df[col]), n, method)
                weights[tokens[col]] = score / w if w > 0 else 0.0
        out.append(weights)
    return out


def idf(df: int, n: int, method: str) -> float:
    """bm25s's IDF for a token found in ``df`` of ``n`` chunks."""
    if method == "lucene":
        return math.log(1 + (n - df + 0.5) / (df + 0.5))
    if method == "robertson":
        return max(0.0, math.log((n - df + 0.5) / (df + 0.5)))
    raise ValueError(f"BM25 method {method!r} has no sparse-vector form here (lucene|robertson)")


def question_weights(tokens: list[str], doc_freq: Callable[[str], int], n: int, method: str) -> dict[str, float]:
    """The question's side: token → ``idf * count``; tokens no chunk contains are left out."""
    weights: dict[str, float] = {}
    for t, count in Counter(tokens).items():
        df = doc_freq(t) if t else 0
        if df > 0:
            weights[t] = idf(df, n, method) * count
    return weights
