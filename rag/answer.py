"""Grounded extractive answers: the answer is made of the documents' own words, every
line ending with a citation marker ``[n]`` that maps to a verified span of a document.

No generative model runs offline, so an answer can only say what a passage says.

Pipeline for one question (:func:`answer_question`, used by ``rag ask``, ``rag chat`` and
``POST /chat``):

1. **Retrieve** the top-k passages (:meth:`rag.retrieve.Retriever.search`).
2. **Candidates.** Each passage is cut into sentences, list items and table rows, each
   with its exact span in the normalised document (:mod:`rag.candidates`).
3. **Score** each candidate by the share of the question it covers: the question's content
   morphemes and numbers (Kiwi, :mod:`rag.korean`; question words such as 얼마/어디 left
   out), weighted by their BM25 idf so rare words count more, matched as tokens, inside
   compounds, or through search expansions (퍼센트 ↔ %); words found only in the
   candidate's *context* (section path, table header, the line above or the line a list
   item hangs under) count at :data:`CONTEXT_WEIGHT`; a candidate of the kind the question
   asks for (a number with the unit asked with 몇, a share, an amount, a date) gains
   :data:`TYPE_BONUS`, one that is not loses it; the passage's retrieval rank breaks ties.
   Among the near-best candidates (within :data:`SUPPORT_WINDOW` of the best), one that
   carries everything the question's shape asks for (:mod:`rag.question`,
   :mod:`rag.evidence`: its numbers, the name it is about, 최대/기업당…, the kind of
   answer) goes first.
4. **Compose** one to three lines: the best candidate (for a list question, or when it is a
   heading or a lead-in ending with ':', the items under it as a compact list; a starred
   word's footnote), then the best candidate of each part of a two-part question, then
   candidates that cover question words the earlier lines do not, or that nearly tie.
5. **Cite and verify.** Each line becomes a :class:`Citation` whose ``quote`` must equal
   ``document[quote_start:quote_end]``; one that does not is dropped and logged.
6. **Abstain** when the calibrated policy (:mod:`rag.abstain`) says the answer does not
   stand: the answer is :data:`NOT_FOUND`, ``answerable`` false, no citations, and the
   closest passages as ``related``.

Cost: a few milliseconds per question once a passage's candidates are cached (per chunk,
in memory); building them for a new passage is one batched Kiwi call. Nothing here
imports torch or calls the embedding model.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .candidates import Candidate, passage_candidates
from .evidence import Support, support, type_matches
from .question import analyse, answer_kind, expected_pattern, is_list_question, question_parts, wants_two_sources
from .retrieve import Retriever, SearchResult
from .terms import QuestionTerms, candidate_hits, idf_table, plain_tokens, question_terms, weight_of
from .types import Passage

log = logging.getLogger(__name__)

NOT_FOUND = "제공된 문서에서 해당 내용을 찾을 수 없습니다."
MAX_ANSWER_LINES = 3
MAX_LIST_ITEMS = 8

# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Citation:
    """A passage plus the exact quoted span that the answer stands on.

    ``quote == document_text[quote_start:quote_end]`` (checked by :func:`verify_citation`
    before an answer is returned). For a table row, ``columns`` holds the table's header
    names (shown in the answer, not part of the quote)."""

    passage: Passage
    quote: str
    quote_start: int
    quote_end: int
    columns: tuple[str, ...] = ()

    @property
    def doc_id(self) -> str:
        return self.passage.doc_id

    def to_dict(self) -> dict:
        return {**self.passage.to_dict(), "quote": self.quote, "quote_start": self.quote_start, "quote_end": self.quote_end}


@dataclass
class Answer:
    question: str
    answer: str
    answerable: bool
    citations: list[Citation]
    related: list[Passage] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)  # abstention inputs (see rag.abstain)
    reason: str = ""  # why the documents do not answer (empty when they do)

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.answer, "answerable": self.answerable, "reason": self.reason,
            "citations": [c.to_dict() for c in self.citations],
            "related": [p.to_dict() for p in self.related],
        }


# --------------------------------------------------------------------------- scoring

#: Discount on question words found only in a candidate's context (heading path, table
#: header, the line above / the line a list item hangs under).
CONTEXT_WEIGHT = 0.7
RANK_WEIGHT = 0.08
#: Bonus for a candidate of the kind the question asks for (a number for 몇/얼마, a date
#: for 언제), and the malus for one that is not.
TYPE_BONUS = 0.12
#: A candidate within this share of the best score is shown too (1-3 lines in all).
NEAR_TIE = 0.8
#: A further candidate joins the answer when it covers this share of the question's
#: weight that the lines already chosen do not (multi-part questions).
PART_GAIN = 0.15

_SUBJECT_RE = re.compile(r"^[「‘'\"(]*([가-힣A-Za-z0-9·\-]{2,20}?)[」’'\")]*(?:은|는|이란|란|이라\s*함은)\s")


@dataclass
class Scored:
    cand: Candidate
    passage_index: int
    score: float
    own_cov: float
    ctx_cov: float



def score_candidates(terms: QuestionTerms, passages: Sequence[Passage], cands_by_passage: Sequence[list[Candidate]],
                     kind: str = "other", question: str = "") -> list[Scored]:
    """Every candidate scored (see the module doc), best first."""
    out = []
    pattern = expected_pattern(question, kind) if question else None
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
                s -= 0.05
            out.append(Scored(c, pi, s, own, ctx))
    # ties: the earlier passage, the earlier line, then the longer one (a slide's label
    # read with its value rather than the label alone)
    out.sort(key=lambda x: (-x.score, x.passage_index, x.cand.start, x.cand.start - x.cand.end))
    return out


#: A candidate scoring at least this share of the best may go first when it, and not the
#: best, carries everything the question asks for.
SUPPORT_WINDOW = 0.75
SUPPORT_DEPTH = 12
#: ... and when it covers the question's subject phrase nearly as well as the best (a line
#: about another industry's 2022 figures does not answer "주조 업종 2022년 사업체 수").
TOPIC_SLACK = 0.25


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



# --------------------------------------------------------------------------- composition


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



def part_terms(terms: QuestionTerms, part: str, retriever: Retriever) -> QuestionTerms:
    """The question's terms restricted to the words of one of its parts."""
    own = set(plain_tokens(part, retriever))
    w = {t: v for t, v in terms.weights.items() if t in own}
    return QuestionTerms(w, terms.numbers & frozenset(w), terms.oov & frozenset(w), terms.all_tokens,
                         {t: a for t, a in terms.alts.items() if t in w})


#: A part's best candidate joins the answer when it covers this share of the part.
PART_MIN_COVERAGE = 0.5


def compose_picks(question: str, terms: QuestionTerms, scored: list[Scored],
                  cands_by_passage: Sequence[list[Candidate]], passages: Sequence[Passage],
                  parts: Sequence[tuple[QuestionTerms, list[Scored]]] = ()) -> list[_Pick]:
    """The lines of the answer: the best candidate (with its items for a list question or
    a lead-in line), then the best candidate of each part of a multi-part question that
    the lines so far do not answer, then candidates that add uncovered words or tie."""
    if not scored:
        return []
    best = scored[0]
    list_q = is_list_question(question)
    if list_q:  # a near-best line that leads a list answers a list question better
        for s in scored[:5]:
            if s.score < 0.9 * best.score:
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
    two_sources = wants_two_sources(question)
    for pterms, pscored in parts:
        if len(picks) >= MAX_ANSWER_LINES or not pscored or pterms.total <= 0:
            break
        if weight_of(pterms, covered) >= 0.75:
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
        other_doc = two_sources and doc not in docs and s.score >= 0.6 * best.score
        if (gain >= PART_GAIN and s.score >= 0.55 * best.score) or near_tie or other_doc:
            picks.append(_Pick(s.passage_index, [s.cand]))
            used.add(key)
            docs.add(doc)
            covered |= candidate_hits(terms, s.cand)
    return picks


def verify_citation(doc_text: str, citation: Citation) -> bool:
    """The quote is exactly the document's text at the cited offsets."""
    return (0 <= citation.quote_start <= citation.quote_end <= len(doc_text)
            and doc_text[citation.quote_start: citation.quote_end] == citation.quote)


def checked_citations(citations: Iterable[Citation], doc_texts: dict[str, str]) -> tuple[list[Citation], list[Citation]]:
    """(kept, dropped): every citation whose quote is not the document's text at its
    offsets is dropped and logged."""
    kept, dropped = [], []
    for c in citations:
        text = doc_texts.get(c.passage.doc_id)
        if text is not None and verify_citation(text, c):
            kept.append(c)
        else:
            dropped.append(c)
            log.warning("dropped a citation whose quote does not match %s[%d:%d]: %r",
                        c.passage.doc_id, c.quote_start, c.quote_end, c.quote[:60])
    return kept, dropped


def _render(picks: list[_Pick], passages: Sequence[Passage], doc_texts: dict[str, str]) -> tuple[str, list[Citation]]:
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
            lines.extend(f"- {c.display} [{n}]" for c in pick.cands)
        else:
            lines.append(f"{pick.cands[0].display} [{n}]")
    return "\n".join(lines), citations


def compose(question: str, result: SearchResult, retriever: Retriever, policy=None) -> Answer:
    """Pick the candidates that best answer the question, cite each one, and decide
    (with the calibrated abstention policy) whether to answer at all."""
    from . import abstain

    t0 = time.perf_counter()
    passages = result.passages
    terms = question_terms(question, retriever)
    shape = analyse(question)
    cands = [passage_candidates(p, retriever.doc_texts.get(p.doc_id, ""), retriever.analyzer) for p in passages]
    contexts = [doc_context(retriever, p.doc_id) for p in passages]
    idf = idf_table(retriever)

    supports: dict[tuple[str, int, int], Support] = {}  # the answer's lines are mostly among the head

    def support_of(c: Candidate, pi: int) -> Support:
        key = (c.chunk_id, c.start, c.end)
        if key not in supports:
            supports[key] = support(shape, terms, c, question, contexts[pi], idf.occurrences)
        return supports[key]

    scored = score_candidates(terms, passages, cands, shape.kind, question)
    head = scored[:SUPPORT_DEPTH]
    scored = prefer_supported(head, [support_of(s.cand, s.passage_index) for s in head]) + scored[SUPPORT_DEPTH:]
    parts = []
    split = question_parts(question)
    for part in split if len(split) > 1 else ():
        pt = part_terms(terms, part, retriever)
        if pt.total > 0:
            parts.append((pt, score_candidates(pt, passages, cands, answer_kind(part), part)))
    picks = compose_picks(question, terms, scored, cands, passages, parts)
    lines = [(c, p.passage_index) for p in picks for c in p.cands]
    signals = abstain.compute_signals(
        terms, shape, scored, [c for c, _ in lines], [support_of(c, pi) for c, pi in lines],
        [contexts[pi] for _, pi in lines], result, idf, multipart=len(parts) > 1)
    policy = policy if policy is not None else abstain.load_policy()
    timings = dict(result.timings_ms)
    if not picks or policy.abstains(signals):
        timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
        reason = abstain.abstention_reason(policy, signals, shape) if picks else "관련 구절이 없습니다."
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals,
                      reason=reason)
    text, citations = _render(picks, passages, retriever.doc_texts)
    timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
    if not citations:
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals,
                      reason="인용을 원문과 대조하지 못했습니다.")
    return Answer(question, text, True, citations, related=passages, timings_ms=timings, signals=signals)


def answer_question(retriever: Retriever, question: str, k: int = 5, mode: str = "hybrid", policy=None) -> Answer:
    """Retrieve, then compose a cited answer (or say the documents do not answer it).

    Args:
        retriever: an open :class:`~rag.retrieve.Retriever` (reused across questions).
        question: the question in Korean (checked by :func:`rag.retrieve.check_question`).
        k: how many passages to draw candidates from (and to return as ``related``).
        mode: retrieval mode, ``hybrid`` | ``bm25`` | ``dense``.
        policy: an :class:`rag.abstain.Policy`; default: the calibrated one in
            ``rag/data/abstention.json``.

    Returns:
        An :class:`Answer`; ``answerable`` is false (and ``answer`` is :data:`NOT_FOUND`)
        when the documents do not answer the question.
    """
    result = retriever.search(question, k=k, mode=mode)
    return compose(question.strip(), result, retriever, policy=policy)
