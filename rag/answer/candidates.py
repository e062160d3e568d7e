"""Answer candidates: the answer lines of a passage (:mod:`rag.ingest.lines`: sentences,
list items and table rows, each with its exact span in the normalised document) with the
analysed tokens of their own text and of their *context* (section path, table header,
the line they hang under), so that matching a question against a candidate is a set
operation. Candidates are cached per chunk span; building them for a new passage is one
batched Kiwi call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from rag.ingest.lines import chunk_lines, clean_display
from rag.text.strings import match_key
from rag.types import Passage

__all__ = ["Candidate", "clean_display", "passage_candidates"]


@dataclass(frozen=True)
class Candidate:
    """One answer candidate of one passage.

    ``start``/``end`` are offsets into the normalised document and ``quote`` is the text
    there; ``display`` is how the answer shows it (markdown removed, line breaks joined,
    a table row with its column names; its table's unit is in ``unit``)."""

    def shown(self) -> str:
        """The line as an answer shows it: a table row with its unit."""
        return f"{self.display} (단위: {self.unit})" if self.unit else self.display

    chunk_id: str
    start: int
    end: int
    quote: str
    display: str
    kind: str  # "sentence" | "item" | "row" | "heading"
    level: int  # bullet depth (items), -1 otherwise
    group: int  # candidates of one list / one table share a group number within the passage
    own: frozenset[str]  # analysed tokens of the candidate
    context: frozenset[str]  # tokens of its section path, table header, parent line
    columns: tuple[str, ...] = ()
    unit: str = ""  # a table row's unit ("백만원"), from the "(단위: …)" line above its table
    parent: int = -1  # index (within the passage's candidates) of the line it hangs under
    own_text: str = ""  # the candidate's text, whitespace removed (substring matching)
    context_text: str = ""


_CACHE_SIZE = 512
_cache: OrderedDict[tuple, list[Candidate]] = OrderedDict()
_cache_lock = threading.Lock()


def passage_candidates(passage: Passage, doc_text: str, analyzer) -> list[Candidate]:
    """The answer candidates of one passage (cached per chunk span and analyser)."""
    key = (passage.chunk_id, passage.start, passage.end, id(analyzer), hash(passage.text))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    cands = _build_candidates(passage, doc_text, analyzer)
    with _cache_lock:
        _cache[key] = cands
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return cands


def _build_candidates(passage: Passage, doc_text: str, analyzer) -> list[Candidate]:
    lines = chunk_lines(passage.text, passage.start, doc_text)
    # analyse every distinct text (lines, section path, table headers, parent lines) once,
    # in one batched Kiwi call; a context is the union of its pieces' tokens
    section = passage.section.replace(" > ", "\n") if isinstance(passage.section, str) else "\n".join(passage.section)
    ctx_parts = [tuple(x for x in (section, ln.header, ln.parent_text) if x) for ln in lines]
    texts = list(dict.fromkeys([ln.own_text for ln in lines] + [x for parts in ctx_parts for x in parts]))
    tokens = dict(zip(texts, (frozenset(t) for t in analyzer.tokenize_many(texts))))
    out = []
    for ln, parts in zip(lines, ctx_parts):
        own = tokens[ln.own_text]
        context = frozenset().union(*(tokens[x] for x in parts)) if parts else frozenset()
        out.append(Candidate(
            chunk_id=passage.chunk_id, start=ln.start, end=ln.end, quote=doc_text[ln.start:ln.end],
            display=ln.display, kind=ln.kind, level=ln.level, group=ln.group, own=own,
            context=context - own, columns=ln.columns, unit=ln.unit, parent=ln.parent,
            own_text=match_key(ln.own_text), context_text=match_key("\n".join(parts)),
        ))
    return out
