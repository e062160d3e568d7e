"""Retrieval metrics: whether a passage is relevant, hit@k, MRR, nDCG, full coverage,
section hits, and the summaries (overall, per type / document / tag, slices, latency) of
a list of :class:`Outcome`. Pure functions of rankings and texts, kept apart from the
searching so that the maths can be checked by hand (tests/test_evaluate.py).

How relevance is judged (the conventions of sentence-transformers'
``InformationRetrievalEvaluator``, with relevance decided by answer containment):

* a passage is **relevant** when its text (as returned, i.e. as in the document) contains
  any of the item's answer strings, compared with all whitespace removed
  (:func:`rag.eval.evalset.contains_answer`); this survives re-chunking;
* **hit@k**: a relevant passage among the top k; **full@5**: every answer string of the
  item is contained in one of the top 5 passages (they may be spread over several);
* **MRR@10**: 1 / rank of the first relevant passage within the top 10, else 0;
* **nDCG@10**: binary gains, DCG = Σ rel_i / log2(i + 1); the ideal DCG assumes
  ``min(10, R)`` relevant passages ranked first, where R is the number of chunks *in the
  index* that contain an answer (so returning two of three relevant chunks scores < 1);
* **section hit@5**: one of the top 5 passages comes from the gold document and lies in the
  gold section. The gold section is matched by its *last* heading, whitespace removed,
  contained in the passage's heading path; because the parser folds some headings into
  the text (slide titles such as ``정의``, ``제조업 경쟁력``; the short in-section labels of
  tables) and shortens very long ones with ``…``, the heading also matches when it occurs
  in the passage text or when a shortened path element is a prefix of it. Items whose gold
  section is the document root (the column and the news article have no headings) have no
  section to find and are left out of this one metric;
* multi-document items count as found when any answer is found (hit@k, MRR, nDCG) and
  under each of their documents in the per-document breakdown; full@5 asks for all;
* **unanswerable** items (``answers: []``) are excluded from retrieval metrics and only
  counted; their latency is still measured;
* **latency**: wall time of one warm ``Retriever.search`` call per question and mode
  (a warm-up query per mode first), p50 and p95.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from rag.eval.evalset import QAItem, squash

CUTOFFS = (1, 3, 5, 10)
#: Metric names in display order.
METRICS = ("hit@1", "hit@3", "hit@5", "hit@10", "full@5", "mrr@10", "ndcg@10", "section@5")
MODE_ORDER = ("bm25", "dense", "hybrid")
FAILURE_K = 5
EVERYDAY = "everyday"


def relevance(texts: Sequence[str], answers: Sequence[str]) -> list[bool]:
    """For each passage text, whether it contains any answer (whitespace-insensitive)."""
    needles = [squash(a) for a in answers if squash(a)]
    out = []
    for t in texts:
        s = squash(t)
        out.append(any(n in s for n in needles))
    return out


def hit_at_k(rels: Sequence[bool], k: int) -> float:
    """1.0 when a relevant passage is among the first ``k``, else 0.0."""
    return 1.0 if any(rels[:k]) else 0.0


def first_relevant_rank(rels: Sequence[bool]) -> int | None:
    """1-based rank of the first relevant passage, or None."""
    for i, r in enumerate(rels, 1):
        if r:
            return i
    return None


def reciprocal_rank(rels: Sequence[bool], k: int = 10) -> float:
    """1 / rank of the first relevant passage within the top ``k`` (0.0 when none)."""
    r = first_relevant_rank(rels[:k])
    return 0.0 if r is None else 1.0 / r


def ndcg_at_k(rels: Sequence[bool], k: int = 10, n_relevant: int | None = None) -> float:
    """Binary-gain nDCG@k (Järvelin & Kekäläinen 2002).

    Args:
        rels: relevance of the ranked passages, best first.
        k: cut-off.
        n_relevant: how many relevant passages exist in the whole index; the ideal ranking
            puts ``min(k, n_relevant)`` of them first. ``None`` uses the relevant passages
            present in ``rels`` (an "ideal re-ordering" of what was returned).
    Returns:
        A value in [0, 1]; 0.0 when nothing relevant exists.
    """
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(rels[:k], 1) if r)
    n = sum(1 for r in rels if r) if n_relevant is None else n_relevant
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, n) + 1))
    return 0.0 if ideal == 0 else dcg / ideal


def full_coverage(texts: Sequence[str], answers: Sequence[str], k: int = 5) -> bool:
    """Every answer string is contained in at least one of the first ``k`` texts."""
    needles = [squash(a) for a in answers if squash(a)]
    if not needles:
        return False
    top = [squash(t) for t in texts[:k]]
    return all(any(n in s for s in top) for n in needles)


def last_heading(section: str) -> str:
    """The last element of a ``" > "``-joined heading path ('' for the document root)."""
    parts = [p.strip() for p in section.split(" > ") if p.strip()]
    return parts[-1] if parts else ""


def section_matches(gold_doc: str, gold_section: str, doc_id: str, section_path: str, text: str) -> bool:
    """Whether a passage lies in the gold section (see the module docstring for the rule)."""
    heading = squash(last_heading(gold_section))
    if not heading or doc_id != gold_doc:
        return False
    if heading in squash(section_path) or heading in squash(text):
        return True
    for part in section_path.split(" > "):
        part = part.strip()
        if part.endswith("…"):
            stem = squash(part[:-1])
            if len(stem) >= 8 and heading.startswith(stem):
                return True
    return False


def section_hit(passages: Sequence[Any], golds: Sequence[tuple[str, str]], k: int = 5) -> bool | None:
    """Any of the top-``k`` passages in any gold (doc, section); None when no gold section."""
    golds = [(d, s) for d, s in golds if last_heading(s)]
    if not golds:
        return None
    return any(section_matches(d, s, p.doc_id, p.section, p.text) for p in passages[:k] for d, s in golds)


def percentile(values: Sequence[float], q: float) -> float | None:
    return None if not values else float(np.percentile(np.asarray(values, dtype=np.float64), q))



@dataclass
class Outcome:
    """How one question fared in one mode."""

    id: str
    mode: str
    type: str
    docs: tuple[str, ...]
    tags: tuple[str, ...]
    answerable: bool
    latency_ms: float
    rank: int | None = None  # first relevant rank (None: not in the top k)
    metrics: dict[str, float | None] = field(default_factory=dict)
    reachable: bool = True  # some chunk of the index contains an answer
    top: list[dict] = field(default_factory=list)  # top-3 passages, kept for misses only
    error: str | None = None

    def compact(self) -> dict:
        d = {"rank": self.rank, "ms": round(self.latency_ms, 2)}
        if self.answerable:
            d["full5"] = bool(self.metrics.get("full@5"))
            d["section5"] = self.metrics.get("section@5")
        if self.error:
            d["error"] = self.error
        return d


def _golds(item: QAItem) -> list[tuple[str, str]]:
    return [(d, s) for d, s in zip(item.doc, item.section)]


def score_passages(item: QAItem, passages: Sequence[Any], k: int, n_relevant: int) -> tuple[int | None, dict]:
    """First relevant rank and the metric values of one ranked list (``k``: depth retrieved)."""
    texts = [p.text for p in passages]
    rels = relevance(texts, item.answers)
    m: dict[str, float | None] = {}
    for c in CUTOFFS:
        m[f"hit@{c}"] = hit_at_k(rels, c) if c <= k else None
    m["full@5"] = (1.0 if full_coverage(texts, item.answers, 5) else 0.0) if k >= 5 else None
    m["mrr@10"] = reciprocal_rank(rels, min(10, k))
    m["ndcg@10"] = ndcg_at_k(rels, min(10, k), n_relevant)
    sh = section_hit(passages, _golds(item), 5)
    m["section@5"] = None if sh is None else (1.0 if sh else 0.0)
    return first_relevant_rank(rels), m


def summarize(outcomes: Sequence[Outcome]) -> dict:
    """Mean of each metric over answerable outcomes (``n``; section@5 has its own ``n_section``)."""
    scored = [o for o in outcomes if o.answerable]
    out: dict[str, Any] = {"n": len(scored)}
    for name in METRICS:
        vals = [o.metrics.get(name) for o in scored]
        vals = [v for v in vals if v is not None]
        out[name] = round(float(np.mean(vals)), 4) if vals else None
        if name == "section@5":
            out["n_section"] = len(vals)
    return out


def latency(outcomes: Sequence[Outcome]) -> dict:
    ms = [o.latency_ms for o in outcomes]
    p50, p95 = percentile(ms, 50), percentile(ms, 95)
    return {"n": len(ms), "p50_ms": None if p50 is None else round(p50, 2),
            "p95_ms": None if p95 is None else round(p95, 2)}


def _group(outcomes: Sequence[Outcome], keys: Callable[[Outcome], Iterable[str]]) -> dict[str, dict]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.answerable:
            for key in keys(o):
                groups[key].append(o)
    return {key: summarize(groups[key]) for key in sorted(groups)}


def mode_report(outcomes: Sequence[Outcome]) -> dict:
    """Overall / per type / per doc / per tag summaries and latency for one mode."""
    return {
        "overall": summarize(outcomes),
        "per_type": _group(outcomes, lambda o: [o.type]),
        "per_doc": _group(outcomes, lambda o: list(o.docs)),
        "per_tag": _group(outcomes, lambda o: list(o.tags) or ["untagged"]),
        "slices": slice_report(outcomes),
        "latency": latency(outcomes),
        "unanswerable": sum(1 for o in outcomes if not o.answerable),
        "unreachable": sorted(o.id for o in outcomes if o.answerable and not o.reachable),
    }


def slice_report(outcomes: Sequence[Outcome]) -> dict:
    """The issue-6 slices: items tagged ``everyday`` and the rest."""
    return {
        EVERYDAY: summarize([o for o in outcomes if EVERYDAY in o.tags]),
        "rest": summarize([o for o in outcomes if EVERYDAY not in o.tags]),
    }
