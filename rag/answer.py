"""Grounded extractive answers: the answer is made of the documents' own lines, each
carrying a citation marker that maps to a verified span of a document.

No generative model runs offline, so an answer can only say what a passage says. Each
candidate line of the top passages is scored by how much of the question it covers
(morphemes and numbers) and by its passage's rank; the best lines form the answer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from .retrieve import Retriever, SearchResult
from .types import Passage

log = logging.getLogger(__name__)

NOT_FOUND = "제공된 문서에서 해당 내용을 찾을 수 없습니다."
MAX_ANSWER_LINES = 3


@dataclass(frozen=True)
class Citation:
    """A passage plus the exact quoted span that the answer stands on."""

    passage: Passage
    quote: str
    quote_start: int
    quote_end: int

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

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.answer, "answerable": self.answerable,
            "citations": [c.to_dict() for c in self.citations],
            "related": [p.to_dict() for p in self.related],
        }


@dataclass(frozen=True)
class _Candidate:
    passage_index: int
    start: int  # offsets into the document
    end: int
    text: str


def _candidates(passages: list[Passage]) -> list[_Candidate]:
    out = []
    for i, p in enumerate(passages):
        pos = 0
        for line in p.text.split("\n"):
            stripped = line.strip()
            if len(stripped) >= 4 and not re.fullmatch(r"[#\-\s*|]+", stripped):
                lead = len(line) - len(line.lstrip())
                s = p.start + pos + lead
                out.append(_Candidate(i, s, s + len(stripped), stripped))
            pos += len(line) + 1
    return out


def verify_citation(doc_text: str, citation: Citation) -> bool:
    """The quote is exactly the document's text at the cited offsets."""
    return doc_text[citation.quote_start: citation.quote_end] == citation.quote


def compose(question: str, result: SearchResult, retriever: Retriever) -> Answer:
    """Pick the lines that best cover the question and cite each one."""
    passages = result.passages
    q_tokens = set(retriever.analyzer.tokenize(question))
    scored = []
    for cand in _candidates(passages):
        tokens = set(retriever.analyzer.tokenize(cand.text))
        overlap = len(q_tokens & tokens) / max(len(q_tokens), 1)
        rank_prior = 1.0 / (1 + cand.passage_index)
        scored.append((overlap + 0.3 * rank_prior, cand))
    scored.sort(key=lambda sc: -sc[0])
    chosen = [c for s, c in scored[:MAX_ANSWER_LINES] if s > 0.35][:1] or [c for _, c in scored[:1]]
    citations: list[Citation] = []
    lines = []
    for cand in chosen:
        p = passages[cand.passage_index]
        cit = Citation(p, cand.text, cand.start, cand.end)
        if not verify_citation(retriever.doc_texts[p.doc_id], cit):
            log.warning("dropped a citation whose quote does not match %s[%d:%d]", p.doc_id, cand.start, cand.end)
            continue
        citations.append(cit)
        lines.append(f"{cand.text} [{len(citations)}]")
    if not citations:
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=result.timings_ms)
    return Answer(question, "\n".join(lines), True, citations, related=passages, timings_ms=result.timings_ms)


def answer_question(retriever: Retriever, question: str, k: int = 5, mode: str = "hybrid") -> Answer:
    """Retrieve, then compose a cited answer (or say the documents do not answer it)."""
    result = retriever.search(question, k=k, mode=mode)
    return compose(question.strip(), result, retriever)
