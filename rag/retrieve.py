"""Hybrid retrieval: BM25 over Kiwi morphemes and e5 vectors, fused into one ranking.

Fusion methods:

* ``rrf`` — reciprocal rank fusion, score = Σ 1/(k + rank) over the two lists
  (Cormack, Clarke & Büttcher, SIGIR 2009);
* ``weighted`` — each list's scores min-max normalised over its top candidates, then
  ``w·dense + (1-w)·bm25``.

The default (method, weight) is the one the evaluation measured best (evaluation/report.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .config import MAX_QUESTION_CHARS, Settings
from .index.store import BuildSpec, LoadedIndex, ensure_index
from .types import Passage

MODES = ("hybrid", "bm25", "dense")
MAX_K = 100


class QuestionError(ValueError):
    """The question or search options are unusable; the message says why, in one line."""


@dataclass(frozen=True)
class FusionConfig:
    method: str = "weighted"  # "rrf" | "weighted"
    weight: float = 0.4  # dense share, for "weighted"
    rrf_k: int = 60
    depth: int = 50  # candidates taken from each list before fusing


def check_question(question: object) -> str:
    """The question stripped, or QuestionError for empty, over-long or non-text input."""
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    q = question.strip()
    if not q:
        raise QuestionError("the question is empty")
    if len(q) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    if "\x00" in q:
        raise QuestionError("the question contains a NUL character")
    return q


def check_options(k: int, mode: str) -> None:
    if mode not in MODES:
        raise QuestionError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise QuestionError(f"k must be a whole number from 1 to {MAX_K}")


def _minmax(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(scores.min()), float(scores.max())
    return np.ones_like(scores) if hi - lo < 1e-9 else (scores - lo) / (hi - lo)


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


def fuse(sparse: dict[int, float], dense: dict[int, float], cfg: FusionConfig) -> list[tuple[int, float]]:
    """Rows and fused scores, best first. Inputs map chunk row → score for each list."""
    if cfg.method == "rrf":
        fused: dict[int, float] = {}
        for ranking in (sparse, dense):
            ordered = sorted(ranking, key=lambda r: -ranking[r])
            for rank, row in enumerate(ordered, 1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (cfg.rrf_k + rank)
    elif cfg.method == "weighted":
        fused = {}
        for ranking, w in ((sparse, 1.0 - cfg.weight), (dense, cfg.weight)):
            if not ranking:
                continue
            rows = list(ranking)
            norm = _minmax(np.array([ranking[r] for r in rows], dtype=np.float64))
            for row, s in zip(rows, norm):
                fused[row] = fused.get(row, 0.0) + w * float(s)
    else:
        raise QuestionError(f"unknown fusion method {cfg.method!r} (rrf|weighted)")
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


@dataclass
class SearchResult:
    passages: list[Passage]
    timings_ms: dict[str, float] = field(default_factory=dict)
    sparse_top: float = 0.0  # best raw BM25 score: an abstention signal
    dense_top: float = 0.0  # best cosine


class Retriever:
    """Searches a loaded index; one instance serves many questions (CLI chat, HTTP server)."""

    def __init__(self, index: LoadedIndex, analyzer, embedder, doc_texts: dict[str, str],
                 fusion: FusionConfig = FusionConfig()):
        self.index = index
        self.doc_texts = doc_texts  # normalised text by doc id: citations are checked against it
        self.analyzer = analyzer
        self.embedder = embedder
        self.fusion = fusion

    @classmethod
    def open(cls, settings: Settings | None = None, spec: BuildSpec = BuildSpec(), fusion: FusionConfig = FusionConfig(),
             progress=None, notice=None) -> "Retriever":
        """Load (building when missing or stale) the index, the analyser and the embedder."""
        from .corpus import load_corpus
        from .embedding import Embedder
        from .korean import get_analyzer

        settings = settings or Settings()
        docs = load_corpus(settings.corpus_dir)
        embedder = Embedder(settings.model, settings.cache_dir, use_prefixes=spec.use_prefixes)
        analyzer = get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
        index = ensure_index(settings, spec, progress=progress, notice=notice, embedder=embedder,
                             analyzer=analyzer, docs=docs)
        return cls(index, analyzer, embedder, {d.doc_id: d.text for d in docs}, fusion)

    def _passage(self, rank: int, row: int, score: float) -> Passage:
        c = self.index.chunks[row]
        title = self.index.docs.get(c.doc_id, {}).get("title", c.doc_id)
        return Passage(rank=rank, score=round(float(score), 6), chunk_id=c.chunk_id, doc_id=c.doc_id,
                       doc_title=title, section=c.section_path, text=c.text, start=c.start, end=c.end)

    def search(self, question: str, k: int = 5, mode: str = "hybrid") -> SearchResult:
        """The top-k passages for a question, best first, with per-stage timings."""
        q = check_question(question)
        check_options(k, mode)
        t: dict[str, float] = {}
        depth = max(k, self.fusion.depth)
        sparse: dict[int, float] = {}
        dense: dict[int, float] = {}
        if mode in ("bm25", "hybrid"):
            t0 = time.perf_counter()
            tokens = self.analyzer.tokenize(q)
            t1 = time.perf_counter()
            scores = self.index.sparse.scores(tokens)
            sparse = {int(r): float(scores[r]) for r in top_positive(scores, depth)}
            t["analyse"], t["bm25"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        if mode in ("dense", "hybrid"):
            t0 = time.perf_counter()
            vec = self.embedder.encode_queries([q])[0]
            t1 = time.perf_counter()
            rows, sims = self.index.dense.search(vec, depth)
            dense = {int(r): float(s) for r, s in zip(rows, sims)}
            t["encode"], t["faiss"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        t0 = time.perf_counter()
        if mode == "bm25":
            ranked = sorted(sparse.items(), key=lambda kv: (-kv[1], kv[0]))
        elif mode == "dense":
            ranked = sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))
        else:
            ranked = fuse(sparse, dense, self.fusion)
        t["fusion"] = (time.perf_counter() - t0) * 1e3
        passages = [self._passage(i, row, s) for i, (row, s) in enumerate(ranked[:k], 1)]
        return SearchResult(
            passages, {k_: round(v, 3) for k_, v in t.items()},
            sparse_top=max(sparse.values(), default=0.0), dense_top=max(dense.values(), default=0.0),
        )
