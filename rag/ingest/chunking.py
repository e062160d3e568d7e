"""Cut a document into retrieval chunks that follow its sections.

Rules (each has a test):

* a chunk lies inside one section and carries that section's heading path;
* ``chunk.text == document_text[chunk.start:chunk.end]``: what users see is the source;
* tables (tab-separated rows) are cut into row groups; every group's ``index_text``
  repeats the table's header rows, so a row is never separated from its column names;
* a section's own text is packed line by line up to ``max_chars``, breaking preferably
  before a top-level bullet so that ``*`` notes stay with the bullet they explain;
* sections too small to stand alone merge with the following siblings;
* ``index_text`` (heading path + cleaned text) fits the embedding model's window.

Chunk ids are ``{doc_id}-{n:04d}`` in document order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from rag.ingest.sections import (
    Line,
    Section,
    bullet_level,
    classify_lines,
    is_table_row,
    parse_sections,
)
from rag.text.strings import HTML_TAG_RE
from rag.types import SECTION_SEP, Chunk

#: Bumped whenever chunk boundaries or index_text change, so built indexes go stale.
CHUNKER_VERSION = "3"

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class ChunkingConfig:
    """Sizes chosen by the evaluation (see evaluation/report.md)."""

    max_chars: int = 700
    min_chars: int = 150
    table_rows_max_chars: int = 600
    max_tokens: int = 512
    strategy: str = "section"  # "section" | "fixed" (fixed-size baseline for the ablation)
    fixed_size: int = 500
    fixed_overlap: int = 50


_RE_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)]+)\)")


def clean_for_index(text: str) -> str:
    """Markdown and HTML furniture removed, for analysis and embedding only."""
    t = _RE_LINK.sub(r"\1", text)
    t = HTML_TAG_RE.sub(" ", t)
    t = t.replace("**", "").replace("\\*", "*").replace("&amp;", "&").replace("\\", "")
    t = re.sub(r"^#{1,6}\s+", "", t, flags=re.MULTILINE)
    t = re.sub(r"[ \t]+", " ", t)
    return re.sub(r"\n\s*\n+", "\n", t).strip()


@dataclass
class _Piece:
    """A run of content lines (prose or one table) inside one section."""

    path: tuple[str, ...]
    lines: list[Line]
    table: bool

    @property
    def start(self) -> int:
        return self.lines[0].start

    @property
    def end(self) -> int:
        return self.lines[-1].end

    @property
    def size(self) -> int:
        return self.end - self.start


def _content_lines(text: str) -> dict[int, tuple[Line, str]]:
    """start offset → (line, kind) for every non-blank line that is not noise."""
    return {ln.start: (ln, kind) for ln, kind, _, _ in classify_lines(text) if kind != "noise"}


def _own_pieces(text: str, root: Section) -> list[_Piece]:
    """Each section's own lines (heading included, children excluded), split prose/table."""
    lines = _content_lines(text)
    starts = sorted(lines)
    pieces: list[_Piece] = []
    for path, node in root.walk():
        child_starts = [c.start for c in node.children]
        own_end = child_starts[0] if child_starts else node.end
        own = [lines[s][0] for s in starts if node.start <= s < own_end]
        if not own:
            continue
        only_heading = all(lines[ln.start][1] == "heading" for ln in own)
        if only_heading and node.children:
            continue  # the heading lives on in its children's paths
        current: _Piece | None = None
        for ln in own:
            table = is_table_row(ln.text)
            if current is None or current.table != table:
                current = _Piece(path, [], table)
                pieces.append(current)
            current.lines.append(ln)
    return pieces


def _common_path(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _merge_small(pieces: list[_Piece], cfg: ChunkingConfig) -> list[_Piece]:
    """Fold prose pieces smaller than ``min_chars`` into a neighbour of the same part.

    A small piece joins the piece after it (a caption or heading line joins the table it
    introduces, whatever the table's size), else the piece before it (a trailing note).
    The merged piece's path is the common ancestor, so it still lies in one section.
    """
    def small(p: _Piece) -> bool:
        return not p.table and p.size < cfg.min_chars

    def fits(a: _Piece, b: _Piece) -> bool:
        return bool(_common_path(a.path, b.path)) and (a.table or b.table or a.size + b.size <= cfg.max_chars + cfg.min_chars)

    out: list[_Piece] = []
    for piece in pieces:
        if out and small(out[-1]) and fits(out[-1], piece):
            last = out.pop()
            piece = _Piece(_common_path(last.path, piece.path), last.lines + piece.lines, piece.table)
        elif out and small(piece) and fits(out[-1], piece):
            last = out.pop()
            piece = _Piece(_common_path(last.path, piece.path), last.lines + piece.lines, last.table)
        out.append(piece)
    return out


def _table_header(lines: list[Line]) -> int:
    """How many leading rows of a table are header rows (1, or 2 for a split header)."""
    if len(lines) > 2:
        second = lines[1].text
        cells = [c.strip() for c in second.split("\t")]
        numeric = [c for c in cells if re.fullmatch(r"[△\-]?[\d,.]+%?", c)]
        if second.startswith("\t") and not numeric:
            return 2
    return 1


def _split_prose(lines: list[Line], max_chars: int) -> Iterator[list[Line]]:
    """Greedy line packing; a break before a top-level bullet is preferred to one before a note."""
    group: list[Line] = []
    for ln in lines:
        if group and ln.end - group[0].start > max_chars:
            level = bullet_level(ln.text)
            cut = len(group)
            if level is None or level >= 3:  # a note: move the group's tail bullet along with it
                for k in range(len(group) - 1, 0, -1):
                    lv = bullet_level(group[k].text)
                    if lv is not None and lv < 3:
                        cut = k
                        break
            yield group[:cut]
            group = group[cut:]
        group.append(ln)
    if group:
        yield group


def _fold_tail(groups: list[list[Line]], cfg: ChunkingConfig) -> list[list[Line]]:
    """A last group smaller than ``min_chars`` folded back into the one before."""
    if len(groups) > 1:
        tail = groups[-1][-1].end - groups[-1][0].start
        if tail < cfg.min_chars and groups[-1][-1].end - groups[-2][0].start <= cfg.max_chars + cfg.min_chars:
            groups[-2:] = [groups[-2] + groups[-1]]
    return groups


def _split_table(lines: list[Line], cfg: ChunkingConfig) -> tuple[list[Line], list[list[Line]]]:
    """The header rows and the row groups; the first group holds the header in its span."""
    n_head = _table_header([ln for ln in lines if is_table_row(ln.text)])
    leading = 0
    while leading < len(lines) and not is_table_row(lines[leading].text):
        leading += 1  # a caption merged in front of the table
    header = lines[leading: leading + n_head]
    groups: list[list[Line]] = [list(lines[: leading + n_head])]
    has_rows = False
    for ln in lines[leading + n_head:]:
        if has_rows and ln.end - groups[-1][0].start > cfg.table_rows_max_chars:
            groups.append([])
        groups[-1].append(ln)
        has_rows = True
    return header, _fold_tail(groups, cfg)


def _span_text(text: str, lines: list[Line]) -> tuple[int, int, str]:
    start, end = lines[0].start, lines[-1].end
    return start, end, text[start:end]


def _index_text(path: tuple[str, ...], body: str) -> str:
    """Heading path, then the cleaned body (its first line dropped when it repeats the path)."""
    cleaned = clean_for_index(body)
    first, _, rest = cleaned.partition("\n")
    if path and clean_for_index(path[-1]) == first.strip():
        cleaned = rest
    heading = clean_for_index(SECTION_SEP.join(path))
    return f"{heading}\n{cleaned}".strip() if heading else cleaned


def _fit(chunks: list[tuple[tuple[str, ...], list[Line], str, str]], text: str,
         count: TokenCounter | None, cfg: ChunkingConfig) -> Iterator[tuple[tuple[str, ...], int, int, str, str]]:
    """Split again, line by line then by sentence, any chunk whose index text overflows."""
    for path, lines, prefix, kind in chunks:
        start, end, body = _span_text(text, lines)
        index_text = _index_text(path, prefix + body)
        if count is None or count(index_text) <= cfg.max_tokens:
            yield path, start, end, index_text, kind
            continue
        if len(lines) > 1:
            half = len(lines) // 2
            yield from _fit([(path, lines[:half], prefix, kind), (path, lines[half:], prefix, kind)], text, count, cfg)
            continue
        # one over-long line: cut at sentence ends into halves
        cuts = [m.end() for m in re.finditer(r"[.?!。]\s+", body)] or [len(body) // 2]
        mid = min(cuts, key=lambda c: abs(c - len(body) // 2))
        for a, b in ((start, start + mid), (start + mid, end)):
            part = Line(a, b, text[a:b])
            yield from _fit([(path, [part], prefix, kind)], text, count, cfg)


def chunk_document(doc_id: str, text: str, cfg: ChunkingConfig = ChunkingConfig(),
                   count_tokens: TokenCounter | None = None) -> list[Chunk]:
    """All chunks of one normalised document, in document order."""
    if cfg.strategy == "fixed":
        return _fixed_chunks(doc_id, text, cfg)
    if cfg.strategy != "section":
        raise ValueError(f"unknown chunking strategy {cfg.strategy!r} (section|fixed)")
    root = parse_sections(text)
    planned: list[tuple[tuple[str, ...], list[Line], str, str]] = []
    for piece in _merge_small(_own_pieces(text, root), cfg):
        if piece.table:
            header, groups = _split_table(piece.lines, cfg)
            for group in groups:
                first = group[0].start <= header[0].start
                prefix = "" if first else "\n".join(h.text for h in header) + "\n"
                planned.append((piece.path, group, prefix, "table"))
        else:
            for group in _fold_tail(list(_split_prose(piece.lines, cfg.max_chars)), cfg):
                planned.append((piece.path, group, "", "text"))
    chunks = []
    for n, (path, start, end, index_text, kind) in enumerate(_fit(planned, text, count_tokens, cfg)):
        chunks.append(Chunk(
            chunk_id=f"{doc_id}-{n:04d}", doc_id=doc_id, section=path, start=start, end=end,
            text=text[start:end], index_text=index_text, kind=kind,
        ))
    return chunks


def _fixed_chunks(doc_id: str, text: str, cfg: ChunkingConfig) -> list[Chunk]:
    """The ablation baseline: fixed windows of characters with overlap, no structure."""
    chunks, n, step = [], 0, cfg.fixed_size - cfg.fixed_overlap
    for start in range(0, max(len(text) - cfg.fixed_overlap, 1), step):
        end = min(start + cfg.fixed_size, len(text))
        body = text[start:end]
        if body.strip():
            chunks.append(Chunk(f"{doc_id}-{n:04d}", doc_id, (), start, end, body, clean_for_index(body)))
            n += 1
    return chunks
