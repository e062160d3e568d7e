"""Grounded extractive answers: the answer is made of the documents' own words, every
line ending with a citation marker ``[n]`` that maps to a verified span of a document.

No generative model runs offline, so an answer can only say what a passage says.

Pipeline for one question (:func:`answer_question`, used by ``rag ask``, ``rag chat`` and
``POST /chat``):

1. **Retrieve** the top-k passages (:meth:`rag.search.retriever.Retriever.search`).
2. **Candidates.** Each passage is cut into sentences, list items and table rows, each
   with its exact span in the normalised document (:mod:`rag.answer.candidates`).
3. **Score** each candidate by the share of the question it covers: the question's content
   morphemes and numbers (Kiwi, :mod:`rag.text.korean`; question words such as 얼마/어디 left
   out), weighted by their BM25 idf so rare words count more, matched as tokens, inside
   compounds, or through search expansions (퍼센트 ↔ %); words found only in the
   candidate's *context* (section path, table header, the line above or the line a list
   item hangs under) count at :data:`CONTEXT_WEIGHT`; a candidate of the kind the question
   asks for (a number with the unit asked with 몇, a share, an amount, a date) gains
   :data:`TYPE_BONUS`, one that is not loses it; the passage's retrieval rank breaks ties.
   Among the near-best candidates (within :data:`SUPPORT_WINDOW` of the best), one that
   carries everything the question's shape asks for (:mod:`rag.query.shape`,
   :mod:`rag.answer.evidence`: its numbers, the name it is about, 최대/기업당…, the kind of
   answer) goes first.
4. **Compose** one to three lines: the best candidate (for a list question, or when it is a
   heading or a lead-in ending with ':', the items under it as a compact list; a starred
   word's footnote), then the best candidate of each part of a two-part question, then
   candidates that cover question words the earlier lines do not, or that nearly tie.
5. **Cite and verify.** Each line becomes a :class:`Citation` whose ``quote`` must equal
   ``document[quote_start:quote_end]``; one that does not is dropped and logged.
6. **Abstain** when the calibrated policy (:mod:`rag.answer.abstain`) says the answer does not
   stand: the answer is :data:`NOT_FOUND`, ``answerable`` false, no citations, and the
   closest passages as ``related``.

Cost: a few milliseconds per question once a passage's candidates are cached (per chunk,
in memory); building them for a new passage is one batched Kiwi call. Nothing here
imports torch or calls the embedding model.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from rag.answer import abstain
from rag.answer.candidates import Candidate, passage_candidates
from rag.answer.cite import NOT_FOUND, Answer, Citation, checked_citations
from rag.answer.evidence import Support, support
from rag.answer.scoring import (
    Scored,
    doc_context,
    part_terms,
    prefer_supported,
    score_candidates,
)
from rag.answer.terms import (
    QuestionTerms,
    candidate_hits,
    idf_table,
    question_terms,
    weight_of,
)
from rag.answer.tuning import (
    CONTEXT_WEIGHT,
    GAIN_MIN_SCORE,
    LIST_LEAD_DEPTH,
    LIST_LEAD_WINDOW,
    MAX_ANSWER_LINES,
    MAX_LIST_ITEMS,
    NEAR_TIE,
    OTHER_DOC_MIN_SCORE,
    PART_COVERED,
    PART_GAIN,
    PART_MIN_COVERAGE,
    SUPPORT_DEPTH,
)
from rag.query.shape import QuestionShape, analyse
from rag.search.retriever import Retriever, SearchResult
from rag.types import Passage


@dataclass
class _Pick:
    passage_index: int
    cands: list[Candidate]  # one candidate, or the items of a list (one citation)
    list_lead: str = ""


def _children(idx: int, cands: list[Candidate]) -> list[Candidate]:
    """The candidates right under candidate ``idx``: the items of the list (or rows of the
    table) it leads; for a heading or a lead-in ending with ':', also the prose below."""
    lead = cands[idx]
    kinds = ("item", "row", "sentence") if (lead.kind == "heading" or lead.display.endswith(":")) else ("item", "row")
    kids = [x for x in cands[idx + 1:] if x.parent == idx and x.kind in kinds]
    if kids and kids[0].kind in ("item", "row"):
        first = kids[0]
        kids = [x for x in kids if x.kind == first.kind and x.level == first.level]
    return kids


def _list_pick(best: Scored, cands: list[Candidate]) -> list[Candidate] | None:
    """For a list question: the items right under ``best`` when it leads a list, else the
    items of the list ``best`` belongs to (at least two), else None."""
    idx = cands.index(best.cand)
    c = best.cand
    kids = _children(idx, cands)
    if kids:
        return kids[:MAX_LIST_ITEMS]
    if c.kind in ("item", "row"):
        siblings = [x for x in cands if x.group == c.group and x.kind == c.kind and x.level == c.level
                    and x.parent == c.parent]
        if len(siblings) >= 2:
            return siblings[:MAX_LIST_ITEMS]
    return None


def compose_picks(shape: QuestionShape, terms: QuestionTerms, scored: list[Scored],
                  cands_by_passage: Sequence[list[Candidate]], passages: Sequence[Passage],
                  parts: Sequence[tuple[QuestionTerms, list[Scored]]] = ()) -> list[_Pick]:
    """The lines of the answer: the best candidate (with its items for a list question or
    a lead-in line), then the best candidate of each part of a multi-part question that
    the lines so far do not answer, then candidates that add uncovered words or tie."""
    if not scored:
        return []
    best = scored[0]
    list_q = shape.is_list
    if list_q:  # a near-best line that leads a list answers a list question better
        for s in scored[:LIST_LEAD_DEPTH]:
            if s.score < LIST_LEAD_WINDOW * best.score:
                break
            pc = cands_by_passage[s.passage_index]
            if _children(pc.index(s.cand), pc):
                best = s
                break
    pcands = cands_by_passage[best.passage_index]
    picks = [_Pick(best.passage_index, [best.cand])]
    items = _list_pick(best, pcands) if list_q else None
    if items is None and (best.cand.kind == "heading" or best.cand.display.endswith(":")):
        kids = _children(pcands.index(best.cand), pcands)[:MAX_LIST_ITEMS]
        items = kids or None
    if items:
        lead = best.cand.display.rstrip(":").strip() if best.cand not in items else ""
        picks = [_Pick(best.passage_index, items, lead)]
    elif "*" in best.cand.display or "※" in best.cand.display:
        # a starred word is explained by the footnote right under the line
        idx = pcands.index(best.cand)
        notes = [x for x in pcands[idx + 1:] if x.parent == idx and re.match(r"^(?:\\?\*|※)", x.quote.lstrip("- "))]
        if notes:
            picks.append(_Pick(best.passage_index, [notes[0]]))
    chosen = [c for p in picks for c in p.cands] + [best.cand]
    covered: set[str] = set()
    for c in chosen:
        covered |= candidate_hits(terms, c)
    used = {(c.chunk_id, c.start) for c in chosen}
    docs = {passages[best.passage_index].doc_id}
    two_sources = shape.two_sources
    for pterms, pscored in parts:
        if len(picks) >= MAX_ANSWER_LINES or not pscored or pterms.total <= 0:
            break
        if weight_of(pterms, covered) >= PART_COVERED:
            continue
        top = pscored[0]
        key = (top.cand.chunk_id, top.cand.start)
        if key in used or top.own_cov + CONTEXT_WEIGHT * top.ctx_cov < PART_MIN_COVERAGE:
            continue
        picks.append(_Pick(top.passage_index, [top.cand]))
        used.add(key)
        docs.add(passages[top.passage_index].doc_id)
        covered |= candidate_hits(terms, top.cand)
    for s in scored:
        if s is best:
            continue
        if len(picks) >= MAX_ANSWER_LINES:
            break
        key = (s.cand.chunk_id, s.cand.start)
        if key in used or any(s.cand.quote in c.quote or c.quote in s.cand.quote for p in picks for c in p.cands):
            continue
        doc = passages[s.passage_index].doc_id
        gain = weight_of(terms, candidate_hits(terms, s.cand, with_context=False) - covered)
        near_tie = s.score >= NEAR_TIE * best.score and len(picks[0].cands) == 1
        other_doc = two_sources and doc not in docs and s.score >= OTHER_DOC_MIN_SCORE * best.score
        if (gain >= PART_GAIN and s.score >= GAIN_MIN_SCORE * best.score) or near_tie or other_doc:
            picks.append(_Pick(s.passage_index, [s.cand]))
            used.add(key)
            docs.add(doc)
            covered |= candidate_hits(terms, s.cand)
    return picks


def render_picks(picks: list[_Pick], passages: Sequence[Passage], doc_texts: dict[str, str]) -> tuple[str, list[Citation]]:
    """The answer text and its citations (verified; lines whose citation fails are left out)."""
    planned: list[tuple[_Pick, Citation]] = []
    for pick in picks:
        p = passages[pick.passage_index]
        first, last = pick.cands[0], pick.cands[-1]
        planned.append((pick, Citation(p, doc_texts.get(p.doc_id, "")[first.start:last.end] if len(pick.cands) > 1
                                       else first.quote, first.start, last.end, first.columns)))
    kept, _ = checked_citations([c for _, c in planned], doc_texts)
    kept_ids = {id(c) for c in kept}
    lines: list[str] = []
    citations: list[Citation] = []
    for pick, cit in planned:
        if id(cit) not in kept_ids:
            continue
        citations.append(cit)
        n = len(citations)
        if len(pick.cands) > 1:
            if pick.list_lead:
                lines.append(f"{pick.list_lead}:")
            lines.extend(f"- {c.shown()} [{n}]" for c in pick.cands)
        else:
            lines.append(f"{pick.cands[0].shown()} [{n}]")
    return "\n".join(lines), citations


def cited_answer(question: str, picks: list[_Pick], passages: Sequence[Passage], doc_texts: dict[str, str],
                 timings: dict[str, float], signals: dict[str, float], t0: float) -> Answer:
    """The answer made of ``picks``, each line cited and verified (declined with the reason
    when no citation survives the check); ``timings`` gains the time since ``t0``."""
    text, citations = render_picks(picks, passages, doc_texts)
    timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
    if not citations:
        return Answer(question, NOT_FOUND, False, [], related=list(passages), timings_ms=timings, signals=signals,
                      reason="인용을 원문과 대조하지 못했습니다.")
    return Answer(question, text, True, citations, related=list(passages), timings_ms=timings, signals=signals)


@dataclass(frozen=True)
class Reading:
    """What composing reads off a question and its passages, computed once: both answer
    lines (the rules here, the learned one in :mod:`rag.answer.learned_compose`) use it."""

    terms: QuestionTerms
    shape: QuestionShape
    cands: list[list[Candidate]]  # per passage
    contexts: list  # per passage: its document's title context (:func:`doc_context`)
    scored: list[Scored]  # every candidate, lexical order
    parts: list[tuple[QuestionTerms, list[Scored]]]  # the parts of a multi-part question, scored
    occurrences: dict  # the corpus's term occurrences (:func:`idf_table`), for the evidence checks
    _supports: dict[tuple[str, int, int], Support] = field(default_factory=dict, repr=False, compare=False)

    def support_of(self, question: str, cand: Candidate, passage_index: int) -> Support:
        """The evidence checks of one candidate line, computed once per question however
        many times the rules and the learned line ask."""
        key = (cand.chunk_id, cand.start, cand.end)
        if key not in self._supports:
            self._supports[key] = support(self.shape, self.terms, cand, question, self.contexts[passage_index],
                                          self.occurrences)
        return self._supports[key]


def read(question: str, result: SearchResult, retriever: Retriever) -> Reading:
    """Read the question once, cut the passages into candidate lines and score them."""
    passages = result.passages
    terms = question_terms(question, retriever)
    shape = analyse(question, retriever.analyzer)
    cands = [passage_candidates(p, retriever.doc_texts.get(p.doc_id, ""), retriever.analyzer) for p in passages]
    parts = []
    for part in shape.parts:
        pt = part_terms(terms, part.text, retriever)
        if pt.total > 0:
            parts.append((pt, score_candidates(pt, passages, cands, part.kind, part.pattern, part.text)))
    return Reading(terms, shape, cands, [doc_context(retriever, p.doc_id) for p in passages],
                   score_candidates(terms, passages, cands, shape.kind, shape.pattern, question), parts,
                   idf_table(retriever).occurrences)


def compose(question: str, result: SearchResult, retriever: Retriever, policy=None,
            reading: Reading | None = None) -> Answer:
    """Pick the candidates that best answer the question, cite each one, and decide
    (with the calibrated abstention policy) whether to answer at all. ``reading``: the
    question already read (:func:`read`)."""
    t0 = time.perf_counter()
    passages = result.passages
    reading = reading or read(question, result, retriever)
    terms, shape, cands, contexts, parts = reading.terms, reading.shape, reading.cands, reading.contexts, reading.parts
    idf = idf_table(retriever)

    def support_of(c: Candidate, pi: int) -> Support:
        return reading.support_of(question, c, pi)

    head = reading.scored[:SUPPORT_DEPTH]
    scored = prefer_supported(head, [support_of(s.cand, s.passage_index) for s in head]) + reading.scored[SUPPORT_DEPTH:]
    picks = compose_picks(shape, terms, scored, cands, passages, parts)
    lines = [(c, p.passage_index) for p in picks for c in p.cands]
    signals = abstain.compute_signals(
        terms, shape, scored, [c for c, _ in lines], [support_of(c, pi) for c, pi in lines],
        [contexts[pi] for _, pi in lines], result, idf, multipart=len(parts) > 1)
    policy = policy if policy is not None else abstain.load_policy()
    timings = dict(result.timings_ms)
    if not picks or policy.abstains(signals):
        timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
        first = lines[0] if lines else None
        reason = abstain.decline_reason(shape, terms, first[0] if first else None,
                                        support_of(*first) if first else None, passages, idf.occurrences)
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals,
                      reason=reason)
    return cited_answer(question, picks, passages, retriever.doc_texts, timings, signals, t0)
