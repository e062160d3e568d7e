"""The answer record and its citations: every quote is checked against the document text
at its offsets before an answer is returned, and one that does not match is dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

from rag.types import Passage

log = logging.getLogger(__name__)


NOT_FOUND = "제공된 문서에서 해당 내용을 찾을 수 없습니다."


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
    signals: dict[str, float] = field(default_factory=dict)  # abstention inputs (see rag.answer.abstain)
    reason: str = ""  # why the documents do not answer (empty when they do)

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.answer, "answerable": self.answerable, "reason": self.reason,
            "citations": [c.to_dict() for c in self.citations],
            "related": [p.to_dict() for p in self.related],
        }


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
