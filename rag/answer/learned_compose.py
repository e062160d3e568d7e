"""The learned answer line: the same candidates and composition as :mod:`rag.answer.compose`,
with the first line chosen by the learned ranker and the decision to answer taken by the
learned answerability model (:mod:`rag.answer.learned`, trained by ``rag train``).

The default answer line (:mod:`rag.answer.pipeline`): on the sealed test it answers more,
more correctly and declines more near misses than the hand-set rules, whose composition
it still uses for the lines under its first one and whose signals it reads as features.
:func:`prepare` is also what training describes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from rag.answer.abstain import NEVER, decline_reason, load_policy
from rag.answer.cite import NOT_FOUND, Answer
from rag.answer.compose import Reading, cited_answer, compose, compose_picks, read
from rag.answer.evidence import Support
from rag.answer.features import (
    QuestionContext,
    line_checks,
    line_features,
    question_features,
)
from rag.answer.learned import AnswerModels, load_models
from rag.answer.scoring import Scored
from rag.answer.terms import QuestionTerms
from rag.answer.tuning import POOL_SIZE
from rag.errors import AnswerModelError
from rag.query.shape import QuestionShape
from rag.search.retriever import Retriever, SearchResult


@dataclass
class Prepared:
    """One question's candidates, scored lexically and described for the learned models."""

    context: QuestionContext
    reading: Reading  # the question read once, its candidates scored lexically
    pool: list[Scored]  # the POOL_SIZE best: what the ranker orders
    supports: list[Support]  # evidence checks of the pool
    features: np.ndarray  # LINE_FEATURES of the pool
    checks: np.ndarray  # CHECK_FEATURES of the pool
    rules: Answer  # what the hand-set rules compose (never declining)

    @property
    def shape(self) -> QuestionShape:
        return self.context.shape

    @property
    def terms(self) -> QuestionTerms:
        return self.context.terms


def prepare(question: str, result: SearchResult, retriever: Retriever) -> Prepared:
    """Read the question once (:func:`rag.answer.compose.read`, shared with the rules'
    composition), check the best candidates against the question's shape and describe
    them (training uses this too)."""
    reading = read(question, result, retriever)
    pool = reading.scored[:POOL_SIZE]
    supports = [reading.support_of(question, s.cand, s.passage_index) for s in pool]
    rules = compose(question, result, retriever, policy=NEVER, reading=reading)  # the rules' answer, never declined
    rule_signals = {**rules.signals, "declines": float(load_policy().abstains(rules.signals))}
    context = QuestionContext(reading.shape, reading.terms, result, result.passage_cosines(retriever.index.vectors),
                              tuple((c.passage.chunk_id, c.quote_start) for c in rules.citations), rule_signals)
    line_cos = retriever.index.lines.cosines([(s.cand.chunk_id, s.cand.start) for s in pool], result.query_vector)
    return Prepared(context, reading, pool, supports, line_features(context, pool, supports, line_cos),
                    line_checks(question, pool), rules)


def compose_learned(question: str, result: SearchResult, retriever: Retriever,
                    models: AnswerModels | None = None) -> Answer:
    """Order the candidate lines with the learned ranker, compose one to three cited lines
    from the best, and answer only when the answerability model says the documents do.

    ``models``: the trained models (default: the artifact in ``rag/data/models``)."""
    t0 = time.perf_counter()
    models = models or load_models()
    if models is None:
        raise AnswerModelError("학습된 답변 모델이 rag/data/models에 없습니다; `rag train`으로 만드세요")
    prep = prepare(question, result, retriever)
    shape, terms, passages = prep.shape, prep.terms, result.passages
    raw = models.ranker.raw_score(prep.features) if prep.pool else np.zeros(0)
    order = np.argsort(-raw, kind="stable")
    share = np.exp(raw - raw.max()) / np.exp(raw - raw.max()).sum() if len(raw) else raw
    # the ranker's order, each line scored by its share of the ranker's belief
    ranked = [replace(prep.pool[i], score=float(share[i])) for i in order]
    picks = compose_picks(shape, terms, ranked, prep.reading.cands, passages, prep.reading.parts)
    p_answer = models.answerable_probability(question_features(prep.context, prep.features, prep.checks, raw, order))
    signals = {"answerable_probability": round(p_answer, 6), "threshold": models.threshold,
               "top_line_share": round(float(share[order[0]]), 6) if len(order) else 0.0}
    timings = dict(result.timings_ms)
    if not picks or p_answer < models.threshold:
        timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
        top = order[0] if len(order) else None
        reason = decline_reason(shape, terms, prep.pool[top].cand if top is not None else None,
                                prep.supports[top] if top is not None else None, passages,
                                prep.reading.occurrences)
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals,
                      reason=reason)
    top = prep.pool[order[0]].cand
    if prep.context.rules_lines[:1] == ((top.chunk_id, top.start),) and prep.rules.answerable:
        # the ranker agrees with the rules on the first line: keep their lines under it
        timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
        return replace(prep.rules, timings_ms=timings, signals=signals, reason="")
    return cited_answer(question, picks, passages, retriever.doc_texts, timings, signals, t0)
