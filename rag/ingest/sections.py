"""Parse a normalised document into its section tree, keeping character offsets.

Korean government documents mark structure with a small set of conventions, often mixed
within one file and with inconsistent markdown levels. A heading's depth is therefore
decided by its *marker* rather than by its ``#`` count:

====  ===========================================  =========================
rank  marker                                       example
====  ===========================================  =========================
1     Roman numeral; ``#`` h1 without marker;       ``# I. 실행계획 개요``, ``## 참고``
      참고/붙임 appendix headings
2     number followed by a space (``1 ``, ``01``)   ``### 1 뿌리기업의 성장지원 강화``
3     ``1.``, ``①``, ``1 [..]``, ``#1.``, 첫째      ``#### 1. 수요 맞춤형 인력 ...``
4     ``□``; ``◇ ◆ ❖`` when written as a heading   ``## □ 수립 배경``
5     other markdown headings, bold-only lines,     ``### < 뿌리산업의 위상 >``
      table captions ``< >`` ``【 】``
====  ===========================================  =========================

Bullets (``○ - * ▪ •`` and unheaded ``◇ ◆``) stay inside their section as content; their
level is exposed by :func:`bullet_level` so chunking can split long sections between
top-level bullets. Page noise (rules, empty headings, tables of contents, web-page UI
lines) is recorded as such and never becomes content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from rag.text.strings import HTML_TAG_RE, squash

MAX_TITLE_CHARS = 60

_ROMAN = r"(?:X{0,3}(?:IX|IV|V?I{0,3})|[ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩ])"
_RE_MD = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_RE_ROMAN = re.compile(rf"^(?=[IVXⅠ-Ⅹ]){_ROMAN}(?:\.\s*|\s+)(?=\S)")
_RE_NUM_SPACE = re.compile(r"^\d{1,2}[ \t]+(?![\d년개억조만명%대세월일차위])(?=[^\s\[])")
_RE_NUM_BRACKET = re.compile(r"^\d{1,2}[ \t]+\[")
_RE_NUM_DOT = re.compile(r"^\d{1,2}\.[ \t]+\S")
_RE_CIRCLED = re.compile(r"^[①-⑳]\s*\S")
_RE_HASH_NUM = re.compile(r"^#\d{1,2}\.\s*\S")
_RE_ORDINAL = re.compile(r"^(첫째|둘째|셋째|넷째|다섯째|여섯째|일곱째|여덟째|아홉째|열째)\s*,")
_RE_NUMBER_ONLY = re.compile(r"^0?\d{1,2}$")
_RE_CAPTION = re.compile(r"^(?:<\s*.{1,40}\s*>|【.{1,40}】|\[\s*.{1,40}\s*\])$")
_RE_BOLD_ONLY = re.compile(r"^\*\*([^*].*?)\*\*$")
_RE_TOC_ENTRY = re.compile(r"\.{3,}\s*\d+\s*$")
_RE_TOC_HEAD = re.compile(r"^#*\s*(?:목\s*차|CONTENTS|차\s*례)$", re.IGNORECASE)
_APPENDIX = re.compile(r"^(?:참고|붙임|별첨)\s*\d*$")

#: Lines that are page furniture, not content. Maintainers extend this list when a new
#: source (another news site, a PDF export) brings its own furniture.
NOISE_PATTERNS = [
    re.compile(p)
    for p in (
        r"^-{3,}$",
        r"^#{1,6}$",
        r"^\s*•\s*(?:승인|댓글|입력|수정)\b.*$",
        r"^\s+•\s*\S{1,10}$",
        r"^이 기사를 공유합니다$",
        r"^저작권자\s*[©ⓒ]",
        r"^댓글삭제$",
        r"^삭제한 댓글은 다시 복구할 수 없습니다\.?$",
        r"^본문 수집 시각\s*:",
        r"^감사합니다\.?$",
        r"^그래도 삭제하시겠습니까\?$",
        r"^댓글\s*\d*$|^댓글쓰기$",
    )
]

#: A line that ends the article: everything after it is the web page's footer.
FOOTER_START = re.compile(r"^저작권자\s*[©ⓒ]|무단\s*전재\s*(?:및|&)\s*재배포\s*금지")


@dataclass
class Section:
    """A node of the section tree; ``start``/``end`` cover the node and its descendants."""

    title: str
    rank: int
    start: int
    end: int
    heading_end: int  # end of the heading line(s); == start for the root
    children: list["Section"] = field(default_factory=list)

    def walk(self, path: tuple[str, ...] = ()):
        """Yield ``(path, section)`` in document order; the root has the empty path."""
        here = path + (self.title,) if self.rank > 0 else path
        yield here, self
        for child in self.children:
            yield from child.walk(here)

    def to_dict(self) -> dict:
        return {
            "title": self.title, "start": self.start, "end": self.end,
            "children": [c.to_dict() for c in self.children],
        }


@dataclass(frozen=True)
class Line:
    start: int
    end: int  # exclusive, without the newline
    text: str

    @property
    def stripped(self) -> str:
        return self.text.strip()


def split_lines(text: str) -> list[Line]:
    """Every line with its offsets (newline excluded)."""
    lines, pos = [], 0
    for raw in text.split("\n"):
        lines.append(Line(pos, pos + len(raw), raw))
        pos += len(raw) + 1
    return lines


def is_noise(line: str) -> bool:
    return any(p.match(line) for p in NOISE_PATTERNS)


def is_table_row(line: str) -> bool:
    return "\t" in line.strip("\n") and not _RE_TOC_ENTRY.search(line)


def clean_title(text: str) -> str:
    """Heading text without markdown marks, bold, escapes or tags, cut to a readable length."""
    t = HTML_TAG_RE.sub("", text)
    t = t.replace("**", "").replace("\\*", "*").replace("\\", "")
    t = re.sub(r"\s+", " ", t).strip()
    return t if len(t) <= MAX_TITLE_CHARS else t[: MAX_TITLE_CHARS - 1].rstrip() + "…"


def bullet_level(line: str) -> int | None:
    """Depth of a content bullet (0 = top), or None for a line that is not a bullet.

    Indentation adds depth: markdown-exported documents nest ``- *`` notes by two spaces.
    """
    indent = len(line) - len(line.lstrip(" "))
    s = line.strip().replace("\\*", "*")
    s = re.sub(r"^-\s+(?=[◆◇❖○▪•*])", "", s)
    order = ("◆◇❖", "○", "-▪•", "*※")
    for depth, marks in enumerate(order):
        if s[:1] and s[0] in marks:
            return depth + indent // 2
    return None


def heading_rank(line: str, after_numbered: bool = False) -> tuple[int, str] | None:
    """``(rank, title)`` when the line is a heading, else None. See the module table.

    ``after_numbered``: a Roman-numbered part has been seen, so an unnumbered ``#`` heading
    is a box inside it (rank 5), not a new part.
    """
    s = line.strip()
    if not s or is_table_row(line):
        return None
    md = _RE_MD.match(s)
    inner = md.group(2).strip() if md else s
    bold = _RE_BOLD_ONLY.match(inner)
    if bold:
        inner = bold.group(1).strip()
    plain = inner.replace("**", "").strip()
    if not plain:
        return None
    if _RE_ROMAN.match(plain):
        return 1, plain
    if _RE_HASH_NUM.match(plain) and not md:
        return 3, plain
    if _RE_NUM_BRACKET.match(plain) or _RE_NUM_DOT.match(plain) or _RE_CIRCLED.match(plain):
        return 3, plain
    if _RE_NUM_SPACE.match(plain) and (md or bold or len(plain) <= 40):
        return 2, plain
    if _RE_ORDINAL.match(plain) and not md:
        return 3, re.split(r"(?<=[.?!])[\"”’]?\s", plain, maxsplit=1)[0]
    if plain[0] == "□" and len(plain) > 1:
        return 4, plain
    if plain[0] in "◇◆❖" and line[:1] in "#◇◆❖":
        return 4, plain
    if md:
        if _APPENDIX.match(plain) or (len(md.group(1)) == 1 and not after_numbered):
            return 1, plain
        return 5, plain
    if bold or _RE_CAPTION.match(plain):
        return 5, plain
    return None


def _toc_label(bare: str, toc: dict[str, str]) -> str | None:
    """The numbered TOC entry a plain line repeats (slides drop the numeral), if any."""
    key = squash(bare)
    if not key or len(key) > 40:
        return None
    for title, label in toc.items():
        if title == key or (len(key) >= 6 and SequenceMatcher(None, title, key).ratio() >= 0.85):
            return label
    return None


def _toc_titles(lines: list[Line]) -> tuple[set[int], dict[str, str]]:
    """Line indexes of table-of-contents blocks, and their entries: squashed title → label."""
    skip: set[int] = set()
    titles: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if _RE_TOC_HEAD.match(lines[i].stripped):
            skip.add(i)
            j = i + 1
            while j < len(lines):
                s = lines[j].stripped
                if not s or _RE_TOC_HEAD.match(s):
                    skip.add(j)
                elif _RE_TOC_ENTRY.search(s) or (_RE_ROMAN.match(s) and not _RE_MD.match(s)):
                    skip.add(j)
                    entry = _RE_TOC_ENTRY.sub("", s).strip()
                    numeral = _RE_ROMAN.match(entry)
                    title = _RE_ROMAN.sub("", entry).strip()
                    label = f"{numeral.group(0).strip().rstrip('.')}. {title}" if numeral else title
                    titles[squash(title)] = label
                else:
                    break
                j += 1
            i = j
        else:
            i += 1
    return skip, titles


def classify_lines(text: str) -> list[tuple[Line, str, int, str]]:
    """Each non-blank line as ``(line, kind, rank, title)``; kind is heading|noise|content.

    A line holding only a number (``01``, ``## 2``) followed by a title line is folded into
    one heading spanning both lines (the slides and markdown exports split them).
    """
    lines = split_lines(text)
    toc_skip, toc_titles = _toc_titles(lines)
    out: list[tuple[Line, str, int, str]] = []
    previous = ""
    after_numbered = False
    footer = False
    open_titles: dict[int, str] = {}  # rank → title of the latest heading of that rank
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.stripped
        if not s:
            i += 1
            continue
        footer = footer or bool(FOOTER_START.search(s))
        if footer or i in toc_skip or is_noise(line.text) or s == previous:
            out.append((line, "noise", 0, ""))
            previous = s
            i += 1
            continue
        previous = s
        bare = _RE_MD.sub(r"\2", s).strip()
        if _RE_NUMBER_ONLY.match(bare):
            j = i + 1
            while j < len(lines) and not lines[j].stripped:
                j += 1
            if j < len(lines) and not is_table_row(lines[j].text):
                nxt = _RE_MD.sub(r"\2", lines[j].stripped).replace("**", "").strip()
                if nxt and not _RE_NUMBER_ONLY.match(nxt) and len(nxt) <= 40:
                    merged = Line(line.start, lines[j].end, text[line.start: lines[j].end])
                    out.append((merged, "heading", 2, f"{bare} {nxt}"))
                    previous = lines[j].stripped
                    i = j + 1
                    continue
        ranked = heading_rank(line.text, after_numbered)
        if ranked is None and (label := _toc_label(bare, toc_titles)):
            ranked = (1, label)
        if ranked and ranked[0] == 1 and _RE_ROMAN.match(ranked[1]):
            after_numbered = True
        if ranked and open_titles.get(ranked[0]) == clean_title(ranked[1]):
            out.append((line, "noise", 0, ""))  # a running header repeating its own section
        elif ranked:
            title = clean_title(ranked[1])
            open_titles = {r: t for r, t in open_titles.items() if r < ranked[0]}
            open_titles[ranked[0]] = title
            out.append((line, "heading", ranked[0], title))
        else:
            out.append((line, "content", 0, ""))
        i += 1
    return out


def parse_sections(text: str) -> Section:
    """The document's section tree; the root spans the whole text and has rank 0."""
    root = Section(title="", rank=0, start=0, end=len(text), heading_end=0)
    stack = [root]
    for line, kind, rank, title in classify_lines(text):
        if kind != "heading":
            continue
        while stack[-1].rank >= rank:
            closed = stack.pop()
            closed.end = line.start
        node = Section(title=title, rank=rank, start=line.start, end=len(text), heading_end=line.end)
        stack[-1].children.append(node)
        stack.append(node)
    _trim_ends(root, text)
    return root


def _trim_ends(node: Section, text: str) -> None:
    """Pull each node's end back to the end of its last non-blank line."""
    for child in node.children:
        _trim_ends(child, text)
    end = node.end
    while end > node.start and text[end - 1] in " \t\n":
        end -= 1
    line_end = text.find("\n", end)
    node.end = min(node.end, len(text) if line_end < 0 else line_end)
