"""The answer lines of a passage, as text: the sentences, list items and table rows of a
chunk, each with its exact span in the normalised document and the text an answer shows.

Prose *sentences* (a line broken mid-sentence, as slide exports do, is joined with its
continuation; a slide's short label line is read with the value under it:
``(伊)IDRA · 171개의 부품을 용접·조립``), *list items* (``-``, ``○``, ``*``, ``①`` …
bullets), and *table rows* (tab-separated; a row is read with its table's header, and
empty leading cells of merged rows are filled from the rows above, so that an answer
names the columns: ``광주 | 지원 분야: 용접 | 구축장비수(종): 22 | 센터 위치: 광주첨단산단``).

Pure text work, no analyser: the index build embeds every line (line vectors for the
answer step) and :mod:`rag.answer.candidates` adds the analysed tokens.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from rag.ingest.sections import bullet_level, heading_rank, is_noise, is_table_row


@dataclass(frozen=True)
class Line:
    """One answer line of a chunk. ``quote`` of an answer is ``doc_text[start:end]``."""

    start: int
    end: int
    display: str  # how an answer shows it (markdown removed, a row with its column names)
    kind: str  # "sentence" | "item" | "row" | "heading"
    level: int  # bullet depth (items), -1 otherwise
    group: int  # lines of one list / one table share a group number within the chunk
    own_text: str  # the text that is the line's own (a row: its cells, without column names)
    header: str = ""  # a row's column names, joined
    columns: tuple[str, ...] = ()
    unit: str = ""  # a row's table unit ("백만원"), shown with the row in an answer
    parent: int = -1  # index (in the chunk's lines) of the first line of the line it hangs under
    parent_text: str = ""  # the text of the line it hangs under


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
    unit: str = ""  # the table's unit line, "(단위: 백만원)" → "백만원"


_UNIT_RE = re.compile(r"^\(?\s*단위\s*[:：]\s*(?P<unit>[^()]+?)\s*\)?$")
_UNIT_LOOKBACK_LINES = 3  # a unit line stands right above its table, at most a caption away


def _unit_above(doc_text: str, first_row: int) -> str:
    """The unit of the table starting at ``first_row``, from a "(단위: …)" line above it."""
    p, seen = first_row, 0
    while p > 0 and seen < _UNIT_LOOKBACK_LINES:
        a, text = _line_at(doc_text, p - 1)
        p = a
        if not text.strip():
            continue
        seen += 1
        m = _UNIT_RE.match(text.strip())
        if m:
            return m.group("unit")
    return ""


_table_cache: OrderedDict[tuple, _TableInfo] = OrderedDict()
_table_lock = threading.Lock()


def _table_info(doc_text: str, row_start: int) -> _TableInfo:
    """The header of the table holding the row at ``row_start`` (walking back over the
    contiguous tab-separated rows to the table's first row)."""
    first, _ = _line_at(doc_text, row_start)
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
    info = _TableInfo((), frozenset(), first, _unit_above(doc_text, first))
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
            info = _TableInfo(tuple(names), frozenset([*captions, *(a for a, _ in lines[:n_head])]), first, info.unit)
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


def chunk_lines(text: str, start: int, doc_text: str) -> list[Line]:
    """The answer lines of the chunk ``text`` (which is ``doc_text[start:start+len(text)]``)."""
    units = _units(text, start)
    raw: list[dict] = []
    group = 0
    prev_kind = None
    for ui, u in enumerate(units):
        if u.kind != prev_kind or u.kind in ("heading", "prose"):
            group += 1
        prev_kind = u.kind
        line = doc_text[u.start:u.end]
        if u.kind == "row":
            info = _table_info(doc_text, u.start)
            if u.start in info.header_rows:
                continue
            cells = _inherited_cells(doc_text, u.start, info.first_row, _cells(line))
            display = _render_row(cells, info.names)
            if not _has_content(display):
                continue
            raw.append(dict(start=u.start, end=u.end, display=display, kind="row", level=-1, group=group,
                            header=" ".join(n for n in info.names if n), columns=info.names, unit=info.unit, ui=ui,
                            own_text=" ".join(c for c in cells if c)))
            continue
        spans = [(u.start, u.end)] if u.kind == "heading" else _sentences(line, u.start)
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
            entry = dict(start=a2, end=b2, display=display, kind=kind, level=u.level, group=group, ui=ui)
            if label is not None and si == 0:  # a slide's label and its value read as one line
                entry.update(start=label.start, display=f"{clean_display(doc_text[label.start:label.end])} · {display}")
            entry["own_text"] = entry["display"]
            raw.append(entry)
    parents = [_parent_of(units, ui) for ui in range(len(units))]
    first_of_unit: dict[int, int] = {}
    for i, r in enumerate(raw):
        first_of_unit.setdefault(r["ui"], i)
    out = []
    for r in raw:
        pj = parents[r.pop("ui")]
        out.append(Line(**r, parent=first_of_unit.get(pj, -1),
                        parent_text=clean_display(doc_text[units[pj].start:units[pj].end]) if pj >= 0 else ""))
    return out
