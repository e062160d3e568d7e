"""Grounded extractive answers: the answer is made of the documents' own words, every
line ending with a citation marker ``[n]`` that maps to a verified span of a document.

No generative model runs offline, so an answer can only say what a passage says.

Pipeline for one question (:func:`answer_question`, used by ``rag ask``, ``rag chat`` and
``POST /chat``):

1. **Retrieve** the top-k passages (:meth:`rag.retrieve.Retriever.search`).
2. **Candidates.** Each passage is cut into answer candidates, each with its exact span in
   the normalised document: prose *sentences* (a line broken mid-sentence, as slide exports
   do, is joined with its continuation; a slide's short label line is read with the value
   under it: ``(伊)IDRA · 171개의 부품을 용접·조립``), *list items* (``-``, ``○``, ``*``,
   ``①`` … bullets, with the line they hang under), and *table rows* (tab-separated; a row
   is read with its table's header, and empty leading cells of merged rows are filled from
   the rows above, so the answer names the columns:
   ``광주 | 지원 분야: 용접 | 구축장비수(종): 22 | 센터 위치: 광주첨단산단``).
3. **Score** each candidate by the share of the question it covers: the question's content
   morphemes and numbers (Kiwi, :mod:`rag.korean`; question words such as 얼마/어디 left
   out), weighted by their BM25 idf so rare words count more, matched as tokens, inside
   compounds, or through search expansions (퍼센트 ↔ %); words found only in the
   candidate's *context* (section path, table header, the line above or the line a list
   item hangs under) count at :data:`CONTEXT_WEIGHT`; a candidate of the kind the question
   asks for (a number with the unit asked with 몇, a share, an amount, a date) gains
   :data:`TYPE_BONUS`, one that is not loses it; the passage's retrieval rank breaks ties.
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
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .retrieve import Retriever, SearchResult
from .sections import bullet_level, heading_rank, is_noise, is_table_row
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

    def to_dict(self) -> dict:
        return {
            "question": self.question, "answer": self.answer, "answerable": self.answerable,
            "citations": [c.to_dict() for c in self.citations],
            "related": [p.to_dict() for p in self.related],
        }


@dataclass(frozen=True)
class Candidate:
    """One answer candidate of one passage.

    ``start``/``end`` are offsets into the normalised document and ``quote`` is the text
    there; ``display`` is how the answer shows it (markdown removed, line breaks joined,
    a table row with its column names)."""

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
    parent: int = -1  # index (within the passage's candidates) of the line it hangs under
    own_text: str = ""  # the candidate's text, whitespace removed (substring matching)
    context_text: str = ""


# --------------------------------------------------------------------------- text helpers

_MD_RE = re.compile(r"\*\*|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]{0,200})?/?>|\\(?=[*_#\[\]()-])")
_HEADING_MARK_RE = re.compile(r"^#{1,6}\s+")
_TERMINAL_RE = re.compile(r"(?:[.!?。…]|[다요음함됨임])\s*$")
#: A sentence ends at . ! ? after a letter or a closing bracket (never after a digit:
#: "2023. 03." and "'19.8월" are not sentence ends), before whitespace.
_SENT_END_RE = re.compile(r"(?<=[가-힣A-Za-z)\]」』’”][.!?。])\s+")
_WS_RE = re.compile(r"\s+")
_MIN_CANDIDATE_CHARS = 4
_MAX_HEADING_CHARS = 60  # a longer "heading" ("셋째, …다.") is read as prose
_MAX_JOIN_CHARS = 320


def clean_display(text: str) -> str:
    """Markdown emphasis, escapes and HTML tags removed; whitespace collapsed."""
    return _WS_RE.sub(" ", _MD_RE.sub("", _HEADING_MARK_RE.sub("", text.strip()))).strip()


def _cells(row: str) -> list[str]:
    return [clean_display(c) for c in row.split("\t")]


def _squash(text: str) -> str:
    return _WS_RE.sub("", text).lower()


def _has_content(text: str) -> bool:
    return bool(re.search(r"[가-힣A-Za-z0-9]", text))


@dataclass
class _Unit:
    """A logical line: one physical line, or a prose line joined with its continuations."""

    start: int
    end: int
    kind: str  # "prose" | "item" | "row" | "heading"
    level: int


_BULLET_MARK_RE = re.compile(r"^(?:[-*•▪○◇◆□■❖]\s*)+")


def _line_kind(line: str) -> tuple[str, int]:
    if is_table_row(line):
        return "row", -1
    s = line.strip()
    if len(s) <= _MAX_HEADING_CHARS and (s.startswith("#") or (bullet_level(line) is None and heading_rank(line) is not None)):
        return "heading", -1
    lvl = bullet_level(line)
    if lvl is not None:
        return "item", lvl
    if re.match(r"^[①-⑳□■]", s):
        return "item", 0
    return "prose", -1


def _units(text: str, base: int) -> list[_Unit]:
    """Logical lines of a passage's text (offsets made absolute by ``base``)."""
    units: list[_Unit] = []
    pos = 0
    prev_blank = True
    for raw in text.split("\n"):
        line_base = base + pos
        pos += len(raw) + 1
        s = raw.strip()
        if not s:
            prev_blank = True
            continue
        if is_noise(raw) or re.fullmatch(r"[#\-\s*|=_]+", s):
            prev_blank = True
            continue
        kind, level = _line_kind(raw)
        if kind == "row":  # a row keeps its leading tabs: they say which column a cell is in
            body = raw.rstrip()
            line_start = line_base + (len(body) - len(body.lstrip(" ")))
            line_end = line_base + len(body)
        else:
            line_start = line_base + (len(raw) - len(raw.lstrip()))
            line_end = line_start + len(s)
        if (
            kind == "prose" and not prev_blank and units and units[-1].kind in ("prose", "item")
            and not _TERMINAL_RE.search(text[units[-1].start - base: units[-1].end - base])
            and line_end - units[-1].start <= _MAX_JOIN_CHARS
        ):
            units[-1].end = line_end  # a line broken mid-sentence: join it
        else:
            units.append(_Unit(line_start, line_end, kind, level))
        prev_blank = False
    return units


def _sentences(text: str, start: int) -> list[tuple[int, int]]:
    """(start, end) document spans of the sentences of ``text`` (which starts at ``start``)."""
    spans = []
    pos = 0
    for m in _SENT_END_RE.finditer(text):
        spans.append((start + pos, start + m.start()))
        pos = m.end()
    spans.append((start + pos, start + len(text)))
    return [(a, b) for a, b in spans if b > a]


def _line_at(doc_text: str, start: int) -> tuple[int, str]:
    """(start, text) of the document line that starts at or holds ``start``."""
    a = doc_text.rfind("\n", 0, start) + 1
    b = doc_text.find("\n", start)
    return a, doc_text[a: len(doc_text) if b < 0 else b]


@dataclass(frozen=True)
class _TableInfo:
    names: tuple[str, ...]  # column names ("" where unknown); empty when no header row
    header_rows: frozenset[int]  # start offsets of the header rows
    first_row: int


_table_cache: "OrderedDict[tuple, _TableInfo]" = OrderedDict()
_table_lock = threading.Lock()


def _table_info(doc_text: str, row_start: int) -> _TableInfo:
    """The header of the table holding the row at ``row_start`` (walking back over the
    contiguous tab-separated rows to the table's first row)."""
    first, line = _line_at(doc_text, row_start)
    while first > 0:
        prev_start, prev = _line_at(doc_text, first - 1)
        if not is_table_row(prev):
            break
        first = prev_start
    key = (len(doc_text), first, doc_text[first:first + 80])
    with _table_lock:
        hit = _table_cache.get(key)
    if hit is not None:
        return hit
    lines: list[tuple[int, str]] = []
    p = first
    while len(lines) < 3 and p <= len(doc_text):
        a, text = _line_at(doc_text, p)
        if not is_table_row(text):
            break
        lines.append((a, text))
        p = a + len(text) + 1
    info = _TableInfo((), frozenset(), first)
    captions = []
    while len(lines) > 1 and sum(1 for c in _cells(lines[0][1]) if c) <= 1:  # a caption row spanning the table
        captions.append(lines.pop(0)[0])
        a, text = _line_at(doc_text, lines[-1][0] + len(lines[-1][1]) + 1)
        if is_table_row(text) and a > lines[-1][0]:
            lines.append((a, text))
    if lines:
        head = _cells(lines[0][1])
        header_like = (
            all(len(c) <= 24 for c in head) and sum(1 for c in head if c) >= 2
            and not any(re.fullmatch(r"[△▲\-+]?[\d,.]+%?", c) or re.search(r"\d%", c) for c in head)
        )
        if header_like:
            n_head = 1
            sub: list[str] = []
            if len(lines) > 2 and lines[1][1].startswith("\t"):
                sc = _cells(lines[1][1])
                if not any(re.fullmatch(r"[△\-]?[\d,.]+%?", c) for c in sc) and all(len(c) <= 24 for c in sc):
                    n_head, sub = 2, sc
            names = []
            filled = ""
            for i in range(max(len(head), len(sub))):
                top = head[i] if i < len(head) else ""
                filled = top or filled
                below = sub[i] if i < len(sub) else ""
                upper = (top or (filled if below else "")) if n_head == 2 else top
                names.append(" ".join(x for x in (upper, below) if x))
            info = _TableInfo(tuple(names), frozenset([*captions, *(a for a, _ in lines[:n_head])]), first)
    with _table_lock:
        _table_cache[key] = info
        while len(_table_cache) > 256:
            _table_cache.popitem(last=False)
    return info


def _inherited_cells(doc_text: str, row_start: int, table_first: int, cells: list[str]) -> list[str]:
    """A row's cells with its empty *leading* cells filled from the rows above (tables
    exported from merged cells leave them empty: "\t\t▶ 사업공고(4월) …" belongs to the
    row group and the 사업명 above it)."""
    lead = 0
    while lead < len(cells) - 1 and not cells[lead]:
        lead += 1
    if lead == 0:
        return cells
    filled = list(cells)
    missing = set(range(lead))
    p = row_start
    while missing and p > table_first:
        a, text = _line_at(doc_text, p - 1)
        above = _cells(text)
        for i in sorted(missing):
            if i < len(above) and above[i]:
                filled[i] = above[i]
                missing.discard(i)
        p = a
    return filled


def _render_row(cells: list[str], names: Sequence[str]) -> str:
    """``label | name: cell | …`` (the first column is the row's label)."""
    parts = []
    for i, c in enumerate(cells):
        if not c:
            continue
        name = names[i] if i < len(names) else ""
        if i == 0 or not name:
            parts.append(c)
        else:
            parts.append(f"{name}: {c}")
    return " | ".join(parts)


# --------------------------------------------------------------------------- candidates

_CACHE_SIZE = 512
_cache: "OrderedDict[tuple, list[Candidate]]" = OrderedDict()
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


def _parent_of(units: list[_Unit], ui: int) -> int:
    """The unit a unit hangs under: for an item, the nearest line above that is not an
    item at its depth or deeper; for a row, the line above its table; for prose, the
    line right above (slides put a label and its value on neighbouring lines)."""
    u = units[ui]
    for pj in range(ui - 1, -1, -1):
        pu = units[pj]
        if u.kind == "row":
            if pu.kind != "row":
                return pj
        elif u.kind == "item":
            if pu.kind != "item" or pu.level < u.level:
                return pj
        else:
            return pj if pu.kind != "row" else -1
    return -1


_LABEL_MAX_CHARS = 20


def _label_before(units: list[_Unit], ui: int, doc_text: str) -> _Unit | None:
    """The short label line right above a prose line, as slides lay out "label / value"
    pairs ("(伊)IDRA" above "171개의 부품을 용접·조립"): prose, at most 20 characters, no
    digits, no sentence end, and not itself a value (a line following another label)."""
    u = units[ui]
    if u.kind != "prose" or ui == 0:
        return None
    value = doc_text[u.start:u.end]
    if len(value) <= _LABEL_MAX_CHARS and not re.search(r"\d", value):  # a label or a lead-in itself
        return None
    lab = units[ui - 1]
    text = doc_text[lab.start:lab.end].strip()
    if lab.kind != "prose" or len(text) > _LABEL_MAX_CHARS or re.search(r"\d", text) or _TERMINAL_RE.search(text) \
            or text.endswith(":"):
        return None
    if doc_text.count("\n", lab.end, u.start) > 3:  # too far apart
        return None
    return lab


def _build_candidates(passage: Passage, doc_text: str, analyzer) -> list[Candidate]:
    units = _units(passage.text, passage.start)
    raw: list[dict] = []
    group = 0
    prev_kind = None
    parents = [_parent_of(units, ui) for ui in range(len(units))]
    for ui, u in enumerate(units):
        if u.kind != prev_kind or u.kind in ("heading", "prose"):
            group += 1
        prev_kind = u.kind
        text = doc_text[u.start:u.end]
        if u.kind == "row":
            info = _table_info(doc_text, u.start)
            if u.start in info.header_rows:
                continue
            cells = _inherited_cells(doc_text, u.start, info.first_row, _cells(text))
            display = _render_row(cells, info.names)
            if not _has_content(display):
                continue
            raw.append(dict(start=u.start, end=u.end, display=display, kind="row", level=-1, group=group,
                            ctx=" ".join(n for n in info.names if n),
                            columns=info.names, unit=ui, own_text=" ".join(c for c in cells if c)))
            continue
        spans = [(u.start, u.end)] if u.kind == "heading" else _sentences(text, u.start)
        label = _label_before(units, ui, doc_text)
        for si, (a, b) in enumerate(spans):
            quote = doc_text[a:b]
            a2 = a + (len(quote) - len(quote.lstrip()))  # quotes start and end on text
            b2 = b - (len(quote) - len(quote.rstrip()))
            if b2 <= a2:
                continue
            display = _BULLET_MARK_RE.sub("", clean_display(doc_text[a2:b2])).strip()
            if len(display) < (2 if u.kind == "item" else _MIN_CANDIDATE_CHARS) or not _has_content(display):
                continue
            kind = {"prose": "sentence", "item": "item", "heading": "heading"}[u.kind]
            entry = dict(start=a2, end=b2, display=display, kind=kind, level=u.level, group=group,
                         ctx="", columns=(), unit=ui)
            if label is not None and si == 0:  # a slide's label and its value read as one line
                entry.update(start=label.start, display=f"{clean_display(doc_text[label.start:label.end])} · {display}")
                entry["own_text"] = entry["display"]
            raw.append(entry)
    # analyse every distinct text (candidates, section path, table headers, parent lines)
    # once, in one batched Kiwi call; a context is the union of its pieces' tokens
    unit_text = {ui: clean_display(doc_text[units[ui].start:units[ui].end]) for ui in range(len(units))}
    section = passage.section.replace(" > ", "\n") if isinstance(passage.section, str) else "\n".join(passage.section)
    ctx_parts = []
    for r in raw:
        pj = parents[r["unit"]]
        ctx_parts.append(tuple(x for x in (section, r["ctx"], unit_text.get(pj, "")) if x))
    texts = list(dict.fromkeys([r.get("own_text", r["display"]) for r in raw] + [x for parts in ctx_parts for x in parts]))
    tokens = dict(zip(texts, (frozenset(t) for t in analyzer.tokenize_many(texts))))
    unit_to_first: dict[int, int] = {}
    for i, r in enumerate(raw):
        unit_to_first.setdefault(r["unit"], i)
    out = []
    for i, r in enumerate(raw):
        own_text = r.get("own_text", r["display"])
        own = tokens[own_text]
        context = frozenset().union(*(tokens[x] for x in ctx_parts[i])) if ctx_parts[i] else frozenset()
        pj = parents[r["unit"]]
        out.append(Candidate(
            chunk_id=passage.chunk_id, start=r["start"], end=r["end"], quote=doc_text[r["start"]:r["end"]],
            display=r["display"], kind=r["kind"], level=r["level"], group=r["group"], own=own,
            context=context - own, columns=r["columns"], parent=unit_to_first.get(pj, -1),
            own_text=_squash(own_text), context_text=_squash("\n".join(ctx_parts[i])),
        ))
    return out


# --------------------------------------------------------------------------- question terms

#: Question words and phrasing that carry no topic: they never count for or against a
#: candidate ("얼마야", "몇 개 정도", "알려줘", "뭐가 있어").
QUESTION_FILLERS = frozenset(
    """
    얼마 몇 무엇 뭐 뭣 무슨 어디 어느 언제 누구 어떻다 어떠하다 어찌 왜 거 것 때 말 정도 대략 약 뜻 곳 이름
    알리다 알려주다 말하다 나열 설명 확인 각각 둘 구체 구체적 정확 내용 경우 얘기 가지 혹시 좀 다 모두 전부
    궁금 궁금하다 알다 싶다 주다 보다 가다 오다 나오다 들다 어떻 중
    비교 작년 올해 내년 지금 현재 며칠 시작 이유 방법 사람 도움 쪽 몫 종류 목록 예시 수치 금액 총액
    문서 자료 보고서 칼럼 기사 보도 약자 장소
    """.split()
)

_NUMERIC_TOKEN = re.compile(r"^\d")
#: Term weight = idf ** IDF_POWER, numbers times NUMBER_WEIGHT (a number in the question
#: is nearly always the key to the answer).
IDF_POWER = 1.0
NUMBER_WEIGHT = 2.0


@dataclass(frozen=True)
class QuestionTerms:
    """The question's content tokens with their weights (BM25 idf; numbers count double)."""

    weights: dict[str, float]
    numbers: frozenset[str]
    oov: frozenset[str]  # tokens the corpus never contains
    all_tokens: tuple[str, ...]  # every analysed token, as retrieval saw them
    alts: dict[str, frozenset[str]] = field(default_factory=dict)  # token -> tokens of its search expansions ("퍼센트" -> "%")

    @property
    def total(self) -> float:
        """The weight a passage can cover: words the corpus never contains are left out
        (they count in the ``oov_free`` abstention signal instead)."""
        return sum(w for t, w in self.weights.items() if t not in self.oov)


class _IdfTable:
    """BM25 (lucene) idf of single tokens, from the sparse index's own statistics."""

    def __init__(self, sparse, doc_texts: dict[str, str] | None = None) -> None:
        self._sparse = sparse
        self._doc_texts = doc_texts or {}
        self._corpus: str | None = None
        self._idf: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self.n = max(int(sparse.size), 1)

    def _fill(self, tok: str) -> None:
        scores = self._sparse.scores([tok])
        df = int((scores > 0).sum())
        self._idf[tok] = math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))
        self._max[tok] = float(scores.max()) if df else 0.0

    def idf(self, tok: str) -> float:
        if tok not in self._idf:
            self._fill(tok)
        return self._idf[tok]

    def max_score(self, tok: str) -> float:
        """The best BM25 score the token alone reaches in any chunk (0 when unseen)."""
        if tok not in self._max:
            self._fill(tok)
        return self._max[tok]

    def in_corpus_text(self, tok: str) -> bool:
        """Whether the token occurs anywhere in the documents' text (whitespace removed),
        e.g. inside a compound the analyser keeps whole ("누리" in "누리호")."""
        if self._corpus is None:
            self._corpus = "\n".join(_squash(t) for t in self._doc_texts.values())
        return tok.lower() in self._corpus

    def df_zero(self, tok: str) -> bool:
        return self.max_score(tok) <= 0.0


_idf_tables: dict[int, _IdfTable] = {}


def idf_table(retriever: Retriever) -> _IdfTable:
    """The idf table of a retriever's sparse index (one per loaded index)."""
    key = id(retriever.index.sparse)
    table = _idf_tables.get(key)
    if table is None or table._sparse is not retriever.index.sparse:
        if len(_idf_tables) >= 8:  # indexes reloaded many times (tests, rebuilds): forget old ones
            _idf_tables.clear()
        table = _idf_tables[key] = _IdfTable(retriever.index.sparse, retriever.doc_texts)
    return table


def _plain_tokens(text: str, retriever: Retriever) -> list[str]:
    """Tokens of the text as written (no search expansions)."""
    from .korean import get_analyzer

    analyzer = retriever.analyzer
    if not analyzer.normalize:
        return analyzer.tokenize(text)
    return get_analyzer(normalize=False, mode=analyzer.mode).tokenize(text)


def question_terms(question: str, retriever: Retriever) -> QuestionTerms:
    """Content tokens of the question as written (expansions excluded: the candidates'
    analysis carries them), each weighted by its idf. A token with a search expansion
    ("퍼센트" → "%", "美" → "미국") also counts as found when an expansion is."""
    from .normalize import expansions

    all_tokens = tuple(retriever.analyzer.tokenize(question))
    plain = _plain_tokens(question, retriever) if retriever.analyzer.normalize else list(all_tokens)
    idf = idf_table(retriever)
    weights: dict[str, float] = {}
    numbers = set()
    oov = set()
    alts: dict[str, frozenset[str]] = {}
    for t in plain:
        if t in QUESTION_FILLERS or t in weights:
            continue
        exp = expansions(t) if retriever.analyzer.normalize else []
        if exp:
            alt = frozenset(_plain_tokens(" ".join(exp), retriever)) - {t}
            if alt:
                alts[t] = alt
        w = idf.idf(t) ** IDF_POWER
        if _NUMERIC_TOKEN.match(t):
            numbers.add(t)
            w *= NUMBER_WEIGHT
        if idf.df_zero(t) and all(idf.df_zero(a) for a in alts.get(t, ())) and not idf.in_corpus_text(t):
            oov.add(t)
        weights[t] = w
    return QuestionTerms(weights, frozenset(numbers), frozenset(oov), all_tokens, alts)


_HANGUL_OR_LATIN = re.compile(r"^[가-힣A-Za-z&]{2,}$")


def _covers(tok: str, tokens: frozenset[str], text: str = "", alts: frozenset[str] = frozenset()) -> bool:
    """Whether a question token occurs in a candidate: as one of its tokens, or (for a
    word of two or more letters) inside its text, so that a compound the analyser kept
    whole ("취업매칭버스") still shows its parts ("매칭", "버스"); or through one of its
    expansions (``alts``)."""
    if tok in tokens or (alts and not alts.isdisjoint(tokens)):
        return True
    if _NUMERIC_TOKEN.match(tok):
        return len(tok) == 2 and f"20{tok}" in tokens  # '25 in the question, 2025 in the text
    return bool(text) and _HANGUL_OR_LATIN.match(tok) is not None and tok in text


def hits(terms: QuestionTerms, tokens: frozenset[str], text: str = "") -> set[str]:
    """The question tokens a candidate (its tokens and squashed text) covers."""
    return {t for t in terms.weights if _covers(t, tokens, text, terms.alts.get(t, frozenset()))}


def weight_of(terms: QuestionTerms, toks: Iterable[str]) -> float:
    """Share of the question's weight carried by ``toks`` (0..1)."""
    total = terms.total
    return sum(terms.weights.get(t, 0.0) for t in set(toks) if t not in terms.oov) / total if total > 0 else 0.0


def coverage(terms: QuestionTerms, tokens: frozenset[str], text: str = "") -> float:
    """Share of the question's weight whose tokens occur in ``tokens``/``text`` (0..1)."""
    return weight_of(terms, hits(terms, tokens, text))


def candidate_hits(terms: QuestionTerms, c: "Candidate", with_context: bool = True) -> set[str]:
    own = hits(terms, c.own, c.own_text)
    if not with_context:
        return own
    return own | hits(terms, c.context, c.context_text)


# --------------------------------------------------------------------------- scoring

#: Discount on question words found only in a candidate's context (heading path, table
#: header, the line above / the line a list item hangs under).
CONTEXT_WEIGHT = 0.7
RANK_WEIGHT = 0.08
#: Bonus for a candidate of the kind the question asks for (a number for 몇/얼마, a date
#: for 언제), and the malus for one that is not.
TYPE_BONUS = 0.12
#: A candidate within this share of the best score is shown too (1-3 lines in all).
NEAR_TIE = 0.85
#: A further candidate joins the answer when it covers this share of the question's
#: weight that the lines already chosen do not (multi-part questions).
PART_GAIN = 0.15

_LIST_RE = re.compile(
    r"(뭐가\s*있|무엇이\s*있|뭐뭐|무엇무엇|나열|종류|목록|어떤\s*(?:것|게|거)들|어떤\s*게\s*(?:있|나와)|"
    r"어디\s*어디|(?:과제|사업|기술|분야|품목|방식|기관|지역|업종)들|(?:네|세|두|다섯)\s*가지|\d+\s*(?:대|가지)\s*\S*(?:이|가|은|는)?\s*(?:뭐|무엇|어디))"
)
_MULTI_DOC_RE = re.compile(r"(둘\s*다|각각|양쪽|모두\s*확인|달라|다른가|다르|차이|비교해)")
_NUMBER_Q_RE = re.compile(r"(몇|얼마|비중|비율|퍼센트|%|규모|예산|금액|총액|점유율|인원|건수|개수|매출|수출액|목표)")
_DATE_Q_RE = re.compile(r"(언제|며칠|몇\s*월|몇\s*년도|시기|기한)")
_DEFINITION_Q_RE = re.compile(r"(뜻|의미|정의|개념|(?:이|가)?란\s*(?:뭐|무엇)|말하는\s*거)")
_SUBJECT_RE = re.compile(r"^[「‘'\"(]*([가-힣A-Za-z0-9·\-]{2,20}?)[」’'\")]*(?:은|는|이란|란|이라\s*함은)\s")


@dataclass
class Scored:
    cand: Candidate
    passage_index: int
    score: float
    own_cov: float
    ctx_cov: float


def answer_kind(question: str) -> str:
    """What the question asks for: ``date``, ``number``, ``definition`` or ``other``."""
    if _DEFINITION_Q_RE.search(question):
        return "definition"
    if _DATE_Q_RE.search(question):
        return "date"
    if _NUMBER_Q_RE.search(question):
        return "number"
    return "other"


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
    out.sort(key=lambda x: (-x.score, x.passage_index, x.cand.start))
    return out


def is_list_question(question: str) -> bool:
    return bool(_LIST_RE.search(question))


def wants_two_sources(question: str) -> bool:
    return bool(_MULTI_DOC_RE.search(question))


_UNIT_Q_RE = re.compile(r"몇\s*(퍼센트|%|개사|개교|개|곳|명|건|배|위|조\s*원|억\s*원|만\s*원|원|년도|년|월|일|종|회|차)")
_PERCENT_Q_RE = re.compile(r"(퍼센트|%|비율|점유율)")
_MONEY_Q_RE = re.compile(r"(예산|매출|금액|비용|지원금|자금|보조금|투자액|사업비|연봉|임금|가격|지원받|지원해|보태)")
_DATE_RE = r"(\d+\s*[월일]|['’‘]\d{2}|(?:19|20)\d{2}|[상하]반기|분기)"
#: The unit an answer must mention (next to a number, or as a table column's unit) for
#: the unit a question asks about with 몇.
_UNIT_WORDS = {
    "퍼센트": r"%", "%": r"%", "개사": r"개사|개|社|곳", "개교": r"개교|개|곳", "개": r"개|종|곳|건|社|대",
    "곳": r"곳|개|社", "명": r"명", "건": r"건", "배": r"배", "위": r"위", "조원": r"조", "억원": r"억",
    "만원": r"만", "원": r"원", "년도": _DATE_RE + r"|\d\s*년", "년": r"년|['’‘]\d{2}|(?:19|20)\d{2}", "월": r"월",
    "일": r"일", "종": r"종|개", "회": r"회|번", "차": r"차",
}


#: A share: a number with %, or a table row whose column says (%).
PERCENT = "percent"


def type_matches(pattern: str | None, cand: "Candidate") -> bool:
    """Whether a candidate shows what :func:`expected_pattern` asks for."""
    if pattern is None:
        return True
    if pattern == PERCENT:
        return bool(re.search(r"\d\s*%", cand.display)) or (cand.kind == "row" and "%" in cand.display
                                                            and re.search(r"\d", cand.display) is not None)
    return re.search(pattern, cand.display, re.S) is not None


def expected_pattern(question: str, kind: str) -> str | None:
    """What the best answer line must show for the kind of answer the question asks
    for: a number with the unit asked with 몇, a share (%), an amount (원, 달러 or a
    share) for 얼마 with a money word, a number for another 얼마, a date; or None
    (also for 얼마나 "how much / to what degree", often answered in words)."""
    m = _UNIT_Q_RE.search(question)
    if m:
        unit = re.sub(r"\s+", "", m.group(1))
        if unit in ("퍼센트", "%"):
            return PERCENT
        return rf"(?=.*\d)(?=.*(?:{_UNIT_WORDS.get(unit, '')}))"
    if kind == "number":
        if _PERCENT_Q_RE.search(question):
            return PERCENT
        if re.search(r"얼마(?!나)", question):
            if _MONEY_Q_RE.search(question):
                return r"(?=.*\d)(?=.*(?:원|달러|불|\$|%))"
            return r"\d"
        return None
    if kind == "date":
        return _DATE_RE
    return None


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


_PART_SPLIT_RE = re.compile(r"(?<=[가-힣](?:고|며))\s*,?\s+|[,?？]\s+|\s+(?:그리고|또|또한)\s+")


def question_parts(question: str) -> list[str]:
    """The clauses of a question that asks two things ("…몇 개 기술로 넓어졌고, 그 사업체는
    모두 몇 개사야?"): split after a clause ending 고/며, a comma or a question mark."""
    parts = [p.strip() for p in _PART_SPLIT_RE.split(question.strip()) if p and p.strip()]
    return parts if len(parts) >= 2 else [question.strip()]


def part_terms(terms: QuestionTerms, part: str, retriever: Retriever) -> QuestionTerms:
    """The question's terms restricted to the words of one of its parts."""
    own = set(_plain_tokens(part, retriever))
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
    cands = [passage_candidates(p, retriever.doc_texts.get(p.doc_id, ""), retriever.analyzer) for p in passages]
    kind = answer_kind(question)
    scored = score_candidates(terms, passages, cands, kind, question)
    parts = []
    split = question_parts(question)
    for part in split if len(split) > 1 else ():
        pt = part_terms(terms, part, retriever)
        if pt.total > 0:
            parts.append((pt, score_candidates(pt, passages, cands, answer_kind(part), part)))
    picks = compose_picks(question, terms, scored, cands, passages, parts)
    lines = [c for p in picks for c in p.cands]
    signals = abstain.compute_signals(question, terms, scored, lines, result, idf_table(retriever))
    policy = policy if policy is not None else abstain.load_policy()
    timings = dict(result.timings_ms)
    if not picks or policy.abstains(signals):
        timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals)
    text, citations = _render(picks, passages, retriever.doc_texts)
    timings["compose"] = round((time.perf_counter() - t0) * 1e3, 3)
    if not citations:
        return Answer(question, NOT_FOUND, False, [], related=passages, timings_ms=timings, signals=signals)
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
