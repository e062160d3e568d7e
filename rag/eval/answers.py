"""Answer quality on a question set, scored as a user sees ``rag ask --json``:

- *answered*: an answerable question got ``answerable: true``;
- *correct*: an expected answer string is inside ``answer`` (whitespace and Unicode
  normalisation aside);
- *first line correct*: … inside the answer's first line;
- *declined*: an unanswerable question got ``answerable: false``;
- *citations verbatim*: every citation's quote is the document's text at its offsets.

Per question type and per document, with answer latency (p50/p95, retrieval included).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Iterable

import numpy as np

from rag.answer.cite import verify_citation
from rag.answer.pipeline import answer_question
from rag.eval.evalset import QAItem
from rag.search.retriever import Retriever
from rag.text.strings import answer_key


def contains(text: str, answers: Iterable[str]) -> bool:
    hay = answer_key(text)
    return any(answer_key(a) and answer_key(a) in hay for a in answers)


def score_answers(retriever: Retriever, items: list[QAItem],
                  progress: Callable[[int], None] | None = None) -> dict:
    """Answer every question and return the figures (overall, per type, per document),
    latency, and one row per question."""
    rows = []
    for it in items:
        t0 = time.perf_counter()
        ans = answer_question(retriever, it.question)
        ms = (time.perf_counter() - t0) * 1e3
        first = ans.answer.split("\n")[0] if ans.answerable else ""
        rows.append({
            "id": it.id, "type": it.type, "doc": it.doc[0] if it.doc else None, "answerable": it.answerable,
            "answered": ans.answerable, "correct": ans.answerable and contains(ans.answer, it.answers),
            "first_line_correct": ans.answerable and contains(first, it.answers),
            "citations": len(ans.citations),
            "verbatim": sum(verify_citation(retriever.doc_texts[c.passage.doc_id], c) for c in ans.citations),
            "reason": ans.reason, "ms": round(ms, 2),
        })
        if progress:
            progress(1)
    by_type: dict[str, list] = defaultdict(list)
    by_doc: dict[str, list] = defaultdict(list)
    for r in rows:
        by_type[r["type"]].append(r)
        by_doc[r["doc"] or "(none)"].append(r)
    ms = np.array([r["ms"] for r in rows]) if rows else np.zeros(1)
    return {
        "overall": figures(rows),
        "per_type": {k: figures(v) for k, v in sorted(by_type.items())},
        "per_doc": {k: figures(v) for k, v in sorted(by_doc.items())},
        "latency": {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)},
        "questions": rows,
    }


def figures(rows: list[dict]) -> dict:
    pos = [r for r in rows if r["answerable"]]
    neg = [r for r in rows if not r["answerable"]]
    share = lambda n, d: round(n / d, 4) if d else None  # noqa: E731
    cited = sum(r["citations"] for r in rows)
    return {
        "answerable": len(pos), "unanswerable": len(neg),
        "answered": share(sum(r["answered"] for r in pos), len(pos)),
        "correct": share(sum(r["correct"] for r in pos), len(pos)),
        "first_line_correct": share(sum(r["first_line_correct"] for r in pos), len(pos)),
        "declined": share(sum(not r["answered"] for r in neg), len(neg)),
        "citations_verbatim": share(sum(r["verbatim"] for r in rows), cited),
    }
