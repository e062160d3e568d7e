"""One ``rag eval`` run: the Q/A set through the real retriever in each mode (and, when
asked, the ablations), gathered into an :class:`EvalRun` whose :meth:`EvalRun.payload` is
the ``--json`` document that the report, ``--compare`` and ``evaluation/last_run.json``
are made from. Never prints; progress goes through ``progress(stage, advance, total)``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rag.config import Settings
from rag.eval.ablations import defaults_check, run_ablations
from rag.eval.evalset import QAItem
from rag.eval.metrics import MODE_ORDER, Outcome, mode_report
from rag.eval.report import failures
from rag.eval.scoring import Progress, _noop, evaluate_mode, relevant_counts
from rag.eval.vector_cache import VectorCache, model_slug
from rag.ingest.corpus import load_corpus
from rag.query.checks import check_options

PAYLOAD_VERSION = 1


@dataclass
class EvalRun:
    """Everything one ``rag eval`` produced; :meth:`payload` is the ``--json`` document."""

    meta: dict
    outcomes: dict[str, list[Outcome]]
    items: list[QAItem]
    ablations: list[dict] | None = None

    def payload(self) -> dict:
        modes = {m: mode_report(o) for m, o in self.outcomes.items()}
        fails = {m: failures(o, self.items) for m, o in self.outcomes.items()}
        return {
            "version": PAYLOAD_VERSION,
            "meta": self.meta,
            "modes": modes,
            "targets": targets(modes),
            "failures": fails,
            "questions": {m: {o.id: o.compact() for o in outs} for m, outs in self.outcomes.items()},
            "ablations": self.ablations,
            "defaults": defaults_check(self.ablations) if self.ablations else None,
        }


#: Issue 2's targets for hybrid on a held-out set of the same style.
TARGETS = {"hit@5": 0.95, "mrr@10": 0.85}


def targets(modes: dict[str, dict]) -> dict | None:
    """Whether hybrid meets issue 2's targets and beats both single modes on MRR@10 / hit@5."""
    h = modes.get("hybrid")
    if not h:
        return None
    ho = h["overall"]
    out: dict[str, Any] = {f"hybrid {m} ≥ {v}": (ho.get(m) or 0) >= v for m, v in TARGETS.items()}
    for single in ("bm25", "dense"):
        if single in modes:
            so = modes[single]["overall"]
            out[f"hybrid MRR@10 > {single}"] = (ho.get("mrr@10") or 0) > (so.get("mrr@10") or 0)
            out[f"hybrid hit@5 ≥ {single}"] = (ho.get("hit@5") or 0) >= (so.get("hit@5") or 0)
    return out


def run_eval(items: Sequence[QAItem], modes: Sequence[str] = MODE_ORDER, k: int = 10, settings=None,
             retriever=None, ablations: bool = False, progress: Progress | None = None,
             notice: Callable[[str], None] | None = None, set_path: str | None = None,
             cache_path: Path | None = None) -> EvalRun:
    """Run ``items`` through the real retriever in each mode (and the ablations).

    Args:
        items: the Q/A items (``rag.eval.evalset.load_qa``).
        modes: any of bm25, dense, hybrid.
        k: passages retrieved per question (metrics beyond ``k`` are None).
        settings: :class:`rag.config.Settings` (default: from the environment).
        retriever: an open :class:`Retriever`; by default ``Retriever.open(settings)``,
            which builds the project index when missing or stale.
        ablations: also run the ablation table (builds variant indexes in memory).
        cache_path: the passage-vector cache for ablations; default
            ``<index_dir>/eval-cache/<model-slug>.npz``.
    Returns:
        An :class:`EvalRun`.
    """
    # lazy: heavy dependency (faiss, bm25s via rag.index)
    from rag.index.spec import BuildSpec
    from rag.search.retriever import Retriever

    for m in modes:
        check_options(k, m)
    started = time.perf_counter()
    settings = settings or Settings()
    report = progress or _noop
    if retriever is None:
        # no remembered question vectors: each mode asks the same questions, and its
        # latency must be that of encoding them
        retriever = Retriever.open(settings.with_(query_cache=0), progress=lambda s, a, t: report(f"index · {s}", a, t),
                                   notice=notice)
    items = list(items)
    rel = relevant_counts(retriever.index, items)
    outcomes: dict[str, list[Outcome]] = {}
    for mode in [m for m in MODE_ORDER if m in modes]:
        outcomes[mode] = evaluate_mode(retriever, items, mode, k, progress=report, n_relevant=rel)
    eval_seconds = time.perf_counter() - started
    rows = None
    if ablations:
        docs = load_corpus(settings.corpus_dir)
        path = cache_path or settings.index_dir / "eval-cache" / f"{model_slug(settings.model)}.npz"
        rows = run_ablations(retriever, items, docs, settings, base_outcomes=outcomes, k=max(k, 10),
                             progress=report, cache=VectorCache(path), base_spec=BuildSpec())
    spec = retriever.index.manifest.get("spec", {})
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "set": set_path,
        "items": len(items),
        "answerable": sum(1 for i in items if i.answerable),
        "unanswerable": sum(1 for i in items if not i.answerable),
        "k": k,
        "modes": list(outcomes),
        "model": retriever.index.model,
        "chunks": len(retriever.index.chunks),
        "spec": spec,
        "fusion": asdict(retriever.fusion),
        "eval_seconds": round(eval_seconds, 2),
        "load_avg": _load_avg(),
        "cpus": os.cpu_count(),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    return EvalRun(meta, outcomes, items, rows)


def _load_avg() -> list[float] | None:
    """The machine's 1/5/15-minute load average at the end of the run (latency context)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None
