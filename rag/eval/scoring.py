"""Search a Q/A set in one mode through the real retriever, time each search and score
the ranked lists (:func:`evaluate_mode`). Every ranking comes from
:meth:`rag.search.retriever.Retriever.search`: nothing here re-implements search. Shared by
the headline run (:mod:`rag.eval.runs`) and every ablation variant
(:mod:`rag.eval.ablations`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

from rag.errors import QuestionError
from rag.eval.evalset import QAItem, squash
from rag.eval.metrics import FAILURE_K, Outcome, score_passages

#: ``progress(stage, advance, total)``; stages are free text (the face shows them as labels).
Progress = Callable[[str, int, int], None]


def _noop(stage: str, advance: int, total: int) -> None:  # pragma: no cover - trivial
    pass


def _passage_brief(p: Any, chars: int = 300) -> dict:
    text = p.text if len(p.text) <= chars else p.text[:chars] + " …"
    return {"rank": p.rank, "chunk_id": p.chunk_id, "doc_id": p.doc_id, "section": p.section,
            "score": p.score, "text": text}


def relevant_counts(index, items: Iterable[QAItem]) -> dict[str, int]:
    """Item id → number of chunks of ``index`` whose text contains one of its answers."""
    squashed = [squash(c.text) for c in index.chunks]
    out = {}
    for item in items:
        needles = [squash(a) for a in item.answers if squash(a)]
        out[item.id] = sum(1 for s in squashed if any(n in s for n in needles))
    return out


def evaluate_mode(retriever, items: Sequence[QAItem], mode: str, k: int = 10,
                  progress: Progress | None = None, stage: str | None = None,
                  n_relevant: dict[str, int] | None = None, warmup: bool = True) -> list[Outcome]:
    """Search every item in ``mode`` and score it.

    Args:
        retriever: a :class:`rag.search.retriever.Retriever` (the real one, or a variant's).
        items: the Q/A items (unanswerable ones are searched for latency, not scored).
        k: passages retrieved per question.
        progress: callback, advanced once per question.
        n_relevant: item id → relevant chunks in the index (computed when None).
        warmup: run one untimed query first so lazy model loads are not timed.
    Returns:
        One :class:`Outcome` per item, in order.
    """
    report = progress or _noop
    stage = stage or f"eval {mode}"
    n_relevant = n_relevant if n_relevant is not None else relevant_counts(retriever.index, items)
    if warmup and items:
        try:
            retriever.search(items[0].question, k=k, mode=mode)
        except QuestionError:
            pass
    report(stage, 0, len(items))
    outcomes = []
    for item in items:
        t0 = time.perf_counter()
        error = None
        try:
            passages = retriever.search(item.question, k=k, mode=mode).passages
        except QuestionError as exc:
            passages, error = [], str(exc)
        ms = (time.perf_counter() - t0) * 1e3
        o = Outcome(item.id, mode, item.type, item.doc, item.tags, item.answerable, ms, error=error)
        if item.answerable:
            nrel = n_relevant.get(item.id, 0)
            o.rank, o.metrics = score_passages(item, passages, k, nrel)
            o.reachable = nrel > 0
            if o.rank is None or o.rank > FAILURE_K:
                o.top = [_passage_brief(p) for p in passages[:3]]
        outcomes.append(o)
        report(stage, 1, len(items))
    return outcomes
