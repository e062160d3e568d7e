"""Fusion of the BM25 and dense rankings into one.

Methods:

* ``rrf`` — reciprocal rank fusion, score = Σ 1/(k + rank) over the two lists
  (Cormack, Clarke & Büttcher, SIGIR 2009);
* ``weighted`` — each list's scores min-max normalised over its top candidates, then
  ``w·dense + (1-w)·bm25``.

The default (method, weight) is the one the evaluation measured best (evaluation/report.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.errors import ConfigError


@dataclass(frozen=True)
class FusionConfig:
    method: str = "weighted"  # "rrf" | "weighted"
    weight: float = 0.4  # dense share, for "weighted"
    rrf_k: int = 60
    depth: int = 50  # candidates taken from each list before fusing


def _minmax(scores: np.ndarray) -> np.ndarray:
    lo, hi = float(scores.min()), float(scores.max())
    return np.ones_like(scores) if hi - lo < 1e-9 else (scores - lo) / (hi - lo)


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
        raise ConfigError(f"알 수 없는 결합 방식입니다: {cfg.method!r} (rrf|weighted)")
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
