"""Retrieval evaluation: run a Q/A set through the core's own :class:`Retriever` and score it.

This module is the one door the faces (``rag eval``) and the tests go through; the work is
done in small modules, each with one job:

* :mod:`rag.eval.metrics` — relevance, hit@k, MRR, nDCG, section hits, summaries (and how
  relevance is judged);
* :mod:`rag.eval.scoring` — one Q/A set searched and scored in one mode;
* :mod:`rag.eval.vector_cache` — passage and question embedding caches for the ablations;
* :mod:`rag.eval.ablations` — the ablation table and the check of the core's defaults;
* :mod:`rag.eval.runs` — a whole ``rag eval`` run and its ``--json`` payload;
* :mod:`rag.eval.compare` — deltas against an earlier payload;
* :mod:`rag.eval.report` — the misses, the markdown section and its writing.

Nothing here re-implements search: every ranking comes from :meth:`Retriever.search`, and
every ablation variant is an index built by :func:`rag.index.build.build_in_memory` with a
different :class:`BuildSpec` (or the same index searched with a different
:class:`FusionConfig`). Nothing here prints; progress goes through a callback
``progress(stage, advance, total)`` (the same shape as the index builder's), and the faces
turn it into a bar.
"""

from __future__ import annotations

from rag.eval.ablations import (
    BM25_GRID,
    CHUNK_SIZES,
    FUSION_WEIGHTS,
    RRF_KS,
    Variant,
    default_variants,
    defaults_check,
    mark_best,
    run_ablations,
    selection_score,
)
from rag.eval.compare import COMPARE_METRICS, compare, load_payload
from rag.eval.metrics import (
    CUTOFFS,
    EVERYDAY,
    FAILURE_K,
    METRICS,
    MODE_ORDER,
    Outcome,
    first_relevant_rank,
    full_coverage,
    hit_at_k,
    last_heading,
    latency,
    mode_report,
    ndcg_at_k,
    percentile,
    reciprocal_rank,
    relevance,
    score_passages,
    section_hit,
    section_matches,
    slice_report,
    summarize,
)
from rag.eval.report import (
    ABLATION_COLUMNS,
    GROUP_NOTES,
    REPORT_END,
    REPORT_START,
    REPORT_TITLE,
    ablation_cells,
    failures,
    render_markdown,
    write_report,
)
from rag.eval.runs import PAYLOAD_VERSION, TARGETS, EvalRun, run_eval, targets
from rag.eval.scoring import Progress, evaluate_mode, relevant_counts
from rag.eval.vector_cache import QueryMemo, VectorCache, model_slug
from rag.text.files import write_json_atomic

__all__ = [
    "ABLATION_COLUMNS", "BM25_GRID", "CHUNK_SIZES", "COMPARE_METRICS", "CUTOFFS", "EVERYDAY", "FAILURE_K",
    "FUSION_WEIGHTS", "GROUP_NOTES", "METRICS", "MODE_ORDER", "PAYLOAD_VERSION", "REPORT_END", "REPORT_START",
    "REPORT_TITLE", "RRF_KS", "TARGETS",
    "EvalRun", "Outcome", "Progress", "QueryMemo", "Variant", "VectorCache",
    "ablation_cells", "compare", "default_variants", "defaults_check", "evaluate_mode", "failures",
    "first_relevant_rank", "full_coverage", "hit_at_k", "last_heading", "latency", "load_payload", "mark_best",
    "mode_report", "model_slug", "ndcg_at_k", "percentile", "reciprocal_rank", "relevance", "relevant_counts",
    "render_markdown", "run_ablations", "run_eval", "score_passages", "section_hit", "section_matches",
    "selection_score", "slice_report", "summarize", "targets", "write_json_atomic", "write_report",
]
