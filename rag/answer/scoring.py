"""Scoring candidate lines against the question: idf-weighted coverage of its words by the
line and by the line's context, the kind of answer asked for, the passage's rank; then the
near-best line that carries everything the question's shape asks for goes first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rag.answer.candidates import Candidate
from rag.answer.evidence import Support, type_matches
from rag.answer.terms import QuestionTerms, candidate_hits, plain_tokens, weight_of
from rag.answer.tuning import (
    CONTEXT_WEIGHT,
    HEADING_MALUS,
    RANK_WEIGHT,
    SUPPORT_WINDOW,
    TOPIC_SLACK,
    TYPE_BONUS,
)
from rag.search.retriever import Retriever
from rag.types import Passage

_SUBJECT_RE = re.compile(r"^[「‘'\"(]*([가-힣A-Za-z0-9·\-]{2,20}?)[」’'\")]*(?:은|는|이란|란|이라\s*함은)\s")


@dataclass
class Scored:
    cand: Candidate
    passage_index: int
    score: float
    own_cov: float
    ctx_cov: float


def score_candidates(terms: QuestionTerms, passages: Sequence[Passage], cands_by_passage: Sequence[list[Candidate]],
                     kind: str = "other", pattern: str | None = None, question: str = "") -> list[Scored]:
    """Every candidate scored, best first. ``kind`` and ``pattern`` are what the question
    (or one of its parts, ``question``) asks for: :class:`rag.query.shape.QuestionShape`."""
    out = []
    pattern = pattern if question else None
    for pi, cands in enumerate(cands_by_passage):
        rank_prior = 1.0 / (1.0 + pi)
        for c in cands:
            own_hits = candidate_hits(terms, c, with_context=False)
            own = weight_of(terms, own_hits)
            ctx = weight_of(terms, candidate_hits(terms, c) - own_hits)
            s = own + CONTEXT_WEIGHT * ctx + RANK_WEIGHT * rank_prior
            if pattern is not None:
                s += TYPE_BONUS if type_matches(pattern, c) else -TYPE_BONUS
            elif kind == "definition" and question:
                m = _SUBJECT_RE.match(c.display)
                if m and m.group(1) in question.replace(" ", ""):
                    s += TYPE_BONUS
            if c.kind == "heading" or c.display.endswith(":"):
                s -= HEADING_MALUS
            out.append(Scored(c, pi, s, own, ctx))
    # ties: the earlier passage, the earlier line, then the longer one (a slide's label
    # read with its value rather than the label alone)
    out.sort(key=lambda x: (-x.score, x.passage_index, x.cand.start, x.cand.start - x.cand.end))
    return out


def doc_context(retriever: Retriever, doc_id: str) -> str:
    """A document's title: what "2025년 실행계획에서" or "K-뿌리산업 첨단화 전략" in a
    question refers to. (Not its date: a 2023 publication does not make every line of it
    a statement about 2023.)"""
    return str(retriever.index.docs.get(doc_id, {}).get("title", ""))


def prefer_supported(scored: list[Scored], supports: Sequence[Support]) -> list[Scored]:
    """``scored`` with the first near-best candidate whose :class:`Support` is complete,
    and that covers the question's subject phrase nearly as well as the best does, moved
    to the front (unchanged when the best is complete, or none is)."""
    if not scored or supports[0].complete:
        return scored
    floor = SUPPORT_WINDOW * scored[0].score
    for i, (s, sup) in enumerate(zip(scored, supports)):
        if s.score < floor:
            break
        if sup.complete and sup.topic >= supports[0].topic - TOPIC_SLACK:
            return [s] + scored[:i] + scored[i + 1:]
    return scored


def part_terms(terms: QuestionTerms, part: str, retriever: Retriever) -> QuestionTerms:
    """The question's terms restricted to the words of one of its parts."""
    own = set(plain_tokens(part, retriever))
    w = {t: v for t, v in terms.weights.items() if t in own}
    return QuestionTerms(w, terms.numbers & frozenset(w), terms.oov & frozenset(w), terms.all_tokens,
                         {t: a for t, a in terms.alts.items() if t in w})
