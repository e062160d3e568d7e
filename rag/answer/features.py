"""Features of (question, candidate line) pairs and of a question's best line, for the
learned line ranker and answerability model (:mod:`rag.answer.learned`).

Everything here is computed from what the pipeline already has: the question read once
(:class:`rag.query.shape.QuestionShape`), its weighted terms, the lexical scores of the
candidates, the evidence checks (:mod:`rag.answer.evidence`) and retrieval (ranks, fused
scores), and the cosine of the question vector to each passage and to each candidate
line, from vectors stored at index build (:mod:`rag.index.line_vectors`): nothing is
encoded twice, and a paraphrase that shares no word with its line still finds it. Checks that were hard gates are features here:
the models learn how much each one matters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rag.answer.evidence import Support, numbers_found, type_matches
from rag.answer.scoring import Scored
from rag.answer.terms import QuestionTerms, candidate_hits
from rag.query.shape import QuestionShape
from rag.search.retriever import SearchResult
from rag.text.strings import match_key
from rag.text.wordlists import load_words

KINDS = ("sentence", "item", "row", "heading")
ASKED_KINDS = ("number", "date", "definition", "other")
CLASSES = ("place", "company", "org", "person", "names")

LINE_FEATURES = (
    "lex_score", "lex_rel", "lex_gap", "lex_rank", "own_cov", "ctx_cov",
    "passage_rank", "passage_score", "passage_cos", "passage_cos_gap", "line_cos", "line_cos_gap", "line_cos_rank",
    *(f"kind_{k}" for k in KINDS), "lead_in", "log_chars", "n_columns",
    "type_asked", "type_match", "numbers_asked", "numbers_own", "numbers_ctx",
    "subject", "qualifiers", "predicate", "answer_class", "complete", "topic",
    "missing_max", "missing_share", "missing_count",
    *(f"q_{k}" for k in ASKED_KINDS), "q_list", "q_two_sources", "q_parts", "q_subject", "q_qualifiers",
    "q_predicate", *(f"q_class_{c}" for c in CLASSES), "q_terms", "q_oov_share",
    "rules_first", "rules_line",
)

#: The hand-set answer path's signals (:mod:`rag.answer.abstain`), fed to the
#: answerability model: what the calibrated rules knew, the trees may weigh anew.
RULE_SIGNALS = ("coverage", "answer_coverage", "best_coverage", "subject_coverage", "numbers", "first_numbers",
                "known_nouns", "known_subject", "type_match", "subject", "qualifiers", "predicate",
                "answer_class", "shape", "bm25_ratio", "declines")

#: Checks of a line against the question that only the answerability model sees (as the
#: best line's): in the ranker they cost more ranking than they taught (grouped CV).
#: A near miss often names another year or place than the line it finds.
CHECK_FEATURES = ("year_conflict", "year_missing", "place_conflict", "place_missing")

QUESTION_FEATURES = (
    "rank_top", "rank_gap", "rank_top_raw", "top_lex_rel", "top_own_cov", "top_ctx_cov", "top_complete",
    "top_subject", "top_qualifiers", "top_predicate", "top_answer_class", "top_type_match", "top_numbers",
    "top_missing_max", "top_missing_share", "top_topic", "top_passage_cos", "top_line_cos", "top_line_cos_gap",
    "best_line_cos", "dense_top", "bm25_top",
    "best_cov_any", "q_oov_share", "q_oov_subject", "q_numbers", *(f"q_{k}" for k in ASKED_KINDS),
    "q_list", "q_subject", "q_qualifiers", "q_predicate", "q_class", "top_is_rules_first",
    *(f"rule_{n}" for n in RULE_SIGNALS), *(f"top_{n}" for n in CHECK_FEATURES),
)


@dataclass(frozen=True)
class QuestionContext:
    """What every candidate of one question shares."""

    shape: QuestionShape
    terms: QuestionTerms
    result: SearchResult
    passage_cos: Sequence[float]  # cosine of the question vector to each passage's vector
    rules_lines: tuple[tuple[str, int], ...] = ()  # (chunk id, start) of the rules' answer lines, first first
    rule_signals: dict = field(default_factory=dict)  # the rules' abstention signals


def _question_part(ctx: QuestionContext) -> list[float]:
    shape, terms = ctx.shape, ctx.terms
    total = terms.total or 1.0
    return [
        *(float(shape.kind == k) for k in ASKED_KINDS), float(shape.is_list), float(shape.two_sources),
        float(len(shape.parts)), float(bool(shape.subject)), float(bool(shape.qualifiers)),
        float(bool(shape.predicate)), *(float(shape.answer_class == c) for c in CLASSES),
        float(len(terms.weights)), math.fsum(terms.weights[t] for t in terms.oov) / total,
    ]


def line_features(ctx: QuestionContext, scored: Sequence[Scored], supports: Sequence[Support | None],
                  line_cos: np.ndarray) -> np.ndarray:
    """One row of :data:`LINE_FEATURES` per candidate in ``scored`` (best lexical first);
    ``supports[i]`` is None where the evidence checks were not run (coded as -1);
    ``line_cos[i]`` is the cosine of the question vector to candidate ``i``'s line vector."""
    shape, terms = ctx.shape, ctx.terms
    best = scored[0].score if scored else 0.0
    total = terms.total or 1.0
    qpart = _question_part(ctx)
    cos_top = max(ctx.passage_cos, default=0.0)
    passages = ctx.result.passages
    top_score = passages[0].score if passages else 0.0
    best_line = float(line_cos.max()) if len(line_cos) else 0.0
    line_rank = np.argsort(np.argsort(-line_cos, kind="stable"), kind="stable")
    rows = []
    for i, s in enumerate(scored):
        c = s.cand
        found = candidate_hits(terms, c)
        missing = [terms.weights[t] for t in terms.weights if t not in found and t not in terms.oov]
        sup = supports[i] if i < len(supports) else None
        own_text = c.own_text
        flags = ([float(sup.subject), float(sup.qualifiers), float(sup.predicate), float(sup.answer_class),
                  float(sup.complete), sup.topic] if sup is not None else [-1.0] * 6)
        p = passages[s.passage_index]
        pcos = ctx.passage_cos[s.passage_index] if s.passage_index < len(ctx.passage_cos) else 0.0
        rows.append([
            s.score, s.score / best if best > 0 else 0.0, best - s.score, math.log1p(i), s.own_cov, s.ctx_cov,
            float(s.passage_index), p.score / top_score if top_score > 0 else 0.0, pcos, cos_top - pcos,
            float(line_cos[i]), best_line - float(line_cos[i]), math.log1p(float(line_rank[i])),
            *(float(c.kind == k) for k in KINDS), float(c.display.endswith(":")), math.log1p(len(c.display)),
            float(len(c.columns)),
            float(shape.pattern is not None), float(shape.pattern is not None and type_matches(shape.pattern, c)),
            float(len(shape.numbers)), numbers_found(shape.numbers, own_text) if shape.numbers else 1.0,
            numbers_found(shape.numbers, own_text + "|" + c.context_text) if shape.numbers else 1.0,
            *flags,
            max(missing, default=0.0) / total, sum(missing) / total, float(len(missing)),
            *qpart,
            float(ctx.rules_lines[:1] == ((c.chunk_id, c.start),)),
            float((c.chunk_id, c.start) in ctx.rules_lines),
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(LINE_FEATURES))


_YEAR_RE = re.compile(r"(?<!\d)(20\d{2})\s*년|['’‘](\d{2})(?!\d)")


def years_in(text: str) -> set[int]:
    """The years a text names: "2025년", "'25", "’25년"."""
    return {int(full) if full else 2000 + int(short) for full, short in _YEAR_RE.findall(text)}


def places_in(key: str) -> set[str]:
    """The places of ``rag/data/words/places.txt`` in a :func:`match_key` text."""
    return {p for p in load_words("places") if p in key}


def line_checks(question: str, scored: Sequence[Scored]) -> np.ndarray:
    """One row of :data:`CHECK_FEATURES` per candidate: whether the line (with its context)
    names other years / places than the question and none of the question's."""
    q_years, q_places = years_in(question), places_in(match_key(question))
    rows = []
    for s in scored:
        c = s.cand
        text = c.own_text + "|" + match_key(c.display) + "|" + c.context_text
        years, places = years_in(text), places_in(text)
        rows.append([float(bool(q_years) and bool(years) and q_years.isdisjoint(years)),
                     float(bool(q_years) and q_years.isdisjoint(years)),
                     float(bool(q_places) and bool(places) and q_places.isdisjoint(places)),
                     float(bool(q_places) and q_places.isdisjoint(places))])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(CHECK_FEATURES))


def question_features(ctx: QuestionContext, lines: np.ndarray, checks: np.ndarray, rank_scores: np.ndarray,
                      order: np.ndarray) -> np.ndarray:
    """The :data:`QUESTION_FEATURES` of one question, from its line features and checks,
    the ranker's raw scores and the order they give (best first)."""
    col = {name: i for i, name in enumerate(LINE_FEATURES)}
    shape, terms = ctx.shape, ctx.terms
    if len(order) == 0:
        top = np.full(len(LINE_FEATURES), 0.0)
        probs = np.zeros(0)
    else:
        top = lines[order[0]]
        z = rank_scores - rank_scores.max()
        probs = np.exp(z) / np.exp(z).sum()
    total = terms.total or 1.0
    subject_oov = sum(1 for t in terms.oov if any(t in s for s in shape.subject + shape.phrase + shape.asked))
    return np.asarray([
        probs[order[0]] if len(order) else 0.0,
        (probs[order[0]] - probs[order[1]]) if len(order) > 1 else (1.0 if len(order) else 0.0),
        rank_scores[order[0]] if len(order) else -10.0,
        top[col["lex_rel"]], top[col["own_cov"]], top[col["ctx_cov"]], top[col["complete"]],
        top[col["subject"]], top[col["qualifiers"]], top[col["predicate"]], top[col["answer_class"]],
        top[col["type_match"]] - top[col["type_asked"]], top[col["numbers_ctx"]],
        top[col["missing_max"]], top[col["missing_share"]], top[col["topic"]], top[col["passage_cos"]],
        top[col["line_cos"]], top[col["line_cos_gap"]], float(lines[:, col["line_cos"]].max()) if len(lines) else 0.0,
        ctx.result.dense_top, ctx.result.sparse_top,
        float(lines[:, col["own_cov"]].max()) if len(lines) else 0.0,
        math.fsum(terms.weights[t] for t in terms.oov) / total, float(subject_oov), float(len(shape.numbers)),
        *(float(shape.kind == k) for k in ASKED_KINDS), float(shape.is_list), float(bool(shape.subject)),
        float(bool(shape.qualifiers)), float(bool(shape.predicate)), float(shape.answer_class is not None),
        top[col["rules_first"]], *(float(ctx.rule_signals.get(n, 0.0)) for n in RULE_SIGNALS),
        *(checks[order[0]] if len(order) else np.zeros(len(CHECK_FEATURES))),
    ], dtype=np.float64)
