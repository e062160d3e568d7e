"""Search normalisation: pure text -> text, no Kiwi.

``expand(text)`` returns ``text`` followed by search expansions, so that the abbreviated
wording of the documents (美, '25년, 억불, 소부장, 산업부 ...) and the everyday wording of
questions (미국, 2025년, 억 달러, 소재·부품·장비, 산업통상자원부 ...) produce shared tokens.
It is applied identically to indexed text and to questions, just before analysis
(``rag.text.korean.KoreanAnalyzer``); its output is never shown to anyone.

Layout of the result::

    <text, unchanged except for one spacing canonicalisation (below)>
    <expansion 1>
    <expansion 2>
    ...

Expansions are appended (one per line) after the text instead of being spliced into
it, so that the analysis of the original text is never disturbed: the tokens of
``expand(t)`` are the tokens of ``t`` plus the tokens of the added lines. Every
occurrence adds its expansion (no de-duplication), so an abbreviated and an everyday
spelling of the same thing end up with the same term frequency.

The one in-place change: whitespace between a number and a magnitude/unit is removed
("4,000 억원" -> "4,000억원", "74만 명" -> "74만명"), so spacing variants of amounts
analyse identically in every analyser mode (``collapse_amount_spacing``).

Rules, in order of application (all precompiled; the whole corpus expands in a few ms):

* hanja (``data/hanja.tsv``): every word containing a hanja is added again with the
  hanja replaced by its reading ("現주소" -> "현주소", "130개社" -> "130개사"), plus any
  extra meanings in the table ("美" -> "미국", "對日" -> "대일", "일본"). Context rule:
  中 after a Hangul word means "among / in" and reads 중 ("생산액 中 소부장"); otherwise
  it is 중국.
* two-digit years and periods: "'25년" -> "2025년", "’23~’27" -> "2023~2027",
  "'23.3분기" -> "2023년 3분기", "'25.~'30." -> "2025~2030", "'23.下" -> "2023년 하반기",
  "’22.12月" -> "2022년 12월", "25년말" -> "2025년 말", "('14," -> "2014". Only
  two-digit years behind an apostrophe (ASCII ' or typographic ’ ‘) are read as years,
  except the unambiguous "YY년말/초" and "(YY.MM" forms; four-digit years and other
  numbers ("15년이상 업력") are left alone.
* units: "700억불" -> "700억 달러"; "3%p" <-> "3%포인트"; "퍼센트(포인트)" -> "%(p)".
* synonyms (``data/synonyms.tsv``): when any form of a group occurs (spacing-insensitive
  for forms of four or more syllables), the other forms are appended (소부장 <-> 소재·부품·장비, 산업부 <-> 산업통상자원부, R&D <-> 연구개발 ...).
* a few contextual abbreviations the tables cannot express ("베(13%)" -> 베트남,
  "(미 수출의 ..." -> 미국).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.config import DATA_DIR

HANJA_TSV = DATA_DIR / "hanja.tsv"
SYNONYMS_TSV = DATA_DIR / "synonyms.tsv"

#: Separator between the text and each appended expansion.
EXPANSION_SEP = "\n"

#: CJK ideograph ranges treated as hanja (URO, extension A, compatibility ideographs).
HANJA_CLASS = "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
HANJA_RE = re.compile(f"[{HANJA_CLASS}]")

_QUOTE = "['’‘`]"  # apostrophes used before two-digit years
_HANGUL = "가-힣"

# Particles that may follow a "word"-mode abbreviation ("산업부는", "중기부 ...").
_PARTICLES = (
    "에서의|에서는|에서도|에서|으로는|으로도|으로|과의|와의|에는|에도|에게|까지|부터|처럼|보다|"
    "장관|이며|이다|이나|이고|은|는|이|가|을|를|의|에|와|과|도|로|만|나|랑"
)
_WORD_END_RE = re.compile(f"(?:{_PARTICLES})?(?![{_HANGUL}])")


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class HanjaEntry:
    key: str
    reading: str  # replaces the key inside its word
    extras: tuple[str, ...]  # appended as separate words
    note: str


@dataclass(frozen=True)
class SynonymGroup:
    forms: tuple[str, ...]
    match: str  # "word" | "any" | "oneway"
    note: str


def _data_rows(path: Path) -> list[list[str]]:
    """Rows of a maintainers' TSV: first line is the header, '#' lines are comments."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append([c.strip() for c in line.split("\t")])
    return rows


@lru_cache(maxsize=None)
def load_hanja_table(path: Path = HANJA_TSV) -> dict[str, HanjaEntry]:
    table: dict[str, HanjaEntry] = {}
    for row in _data_rows(path):
        if len(row) < 2 or not row[0] or not row[1]:
            raise ValueError(f"{path}: malformed row {row!r}")
        expansions = [e.strip() for e in row[1].split("|") if e.strip()]
        table[row[0]] = HanjaEntry(row[0], expansions[0], tuple(expansions[1:]), row[2] if len(row) > 2 else "")
    return table


@lru_cache(maxsize=None)
def load_synonym_groups(path: Path = SYNONYMS_TSV) -> tuple[SynonymGroup, ...]:
    groups = []
    for row in _data_rows(path):
        forms = tuple(f.strip() for f in row[0].split("|") if f.strip())
        match = row[1] if len(row) > 1 and row[1] else "any"
        if len(forms) < 2 or match not in ("word", "any", "oneway"):
            raise ValueError(f"{path}: malformed row {row!r}")
        groups.append(SynonymGroup(forms, match, row[2] if len(row) > 2 else ""))
    return tuple(groups)


# --------------------------------------------------------------------------- amounts

_MAG = "십백천만억조"
_UNIT_AFTER_MAG = "원|달러|불|명|유로|엔|개사|개"
# "4,000 억원" -> "4,000억원"; "5 만명" -> "5만명"
_NUM_MAG_SPACE_RE = re.compile(rf"(?<=\d)[ \t\u00a0]+(?=[{_MAG}]+(?:{_UNIT_AFTER_MAG})?(?![{_HANGUL}]{{2}}))")
# "4,000억 원" -> "4,000억원"; "74만 명" -> "74만명"
_MAG_UNIT_SPACE_RE = re.compile(rf"(?<=\d[{_MAG}])[ \t\u00a0]+(?=(?:{_UNIT_AFTER_MAG})(?![{_HANGUL}]{{2}}))")


def collapse_amount_spacing(text: str) -> str:
    """Remove the optional space between a number, its magnitude and its unit."""
    if not any(ch in text for ch in _MAG):
        return text
    text = _NUM_MAG_SPACE_RE.sub("", text)
    return _MAG_UNIT_SPACE_RE.sub("", text)


# 억불 -> 억 달러 (불 only counts as dollars right after a number or magnitude).
_PARTICLE_OR_END = f"(?=$|[^{_HANGUL}]|(?:{_PARTICLES})(?:[^{_HANGUL}]|$))"
_BUL_RE = re.compile(rf"((?:\d[\d,]*(?:\.\d+)?)?[{_MAG}]*)[ \t]?불{_PARTICLE_OR_END}")
_PCT_P_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)?[ \t]?%[ \t]?[pP](?![A-Za-z])")
_PCT_POINT_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)?[ \t]?%[ \t]?포인트")
_PERCENT_WORD_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)?[ \t]?퍼센트(?:[ \t]?(포인트))?")


def _units(text: str, out: list[str]) -> None:
    if "불" in text:
        for m in _BUL_RE.finditer(text):
            amount = m.group(1)
            if amount and (amount[-1].isdigit() or amount[-1] in _MAG):
                out.append(f"{amount} 달러")
    if "%" in text:
        for m in _PCT_P_RE.finditer(text):
            out.append(f"{m.group(1) or ''}%포인트")
        for m in _PCT_POINT_RE.finditer(text):
            out.append(f"{m.group(1) or ''}%p")
    if "퍼센트" in text:  # questions say 퍼센트 / 퍼센트포인트, documents write % / %p
        for m in _PERCENT_WORD_RE.finditer(text):
            out.append(f"{m.group(1) or ''}%{'p' if m.group(2) else ''}")


# --------------------------------------------------------------------------- periods

_Y = r"(\d{2})(?!\d)"  # two-digit year
_PERIOD_RE = re.compile(
    "|".join(
        [
            # ’23~’27, '25.~'30., ('20 ~ '24), '25.~'30.
            rf"(?P<range>(?<!\d){_QUOTE}{_Y}\.?[ \t]*[~∼～–-][ \t]*{_QUOTE}?{_Y}\.?)",
            # '23.3분기, '23.4/4분기
            rf"(?P<quarter>(?<!\d){_QUOTE}{_Y}\.[ \t]?([1-4])(?:/4)?[ \t]?분기)",
            # '23.下, '23.上, '23.하반기
            rf"(?P<half>(?<!\d){_QUOTE}{_Y}\.[ \t]?(下|上|하반기|상반기))",
            # ’22.12月, '19.8월, ('25. 1월
            rf"(?P<ym>(?<!\d){_QUOTE}{_Y}\.[ \t]?(1[0-2]|0?[1-9])[ \t]?[월月])",
            # ('23.3)  MOU 체결('23.3) -- year.month closed by ')' or ','
            rf"(?P<ym2>(?<!\d){_QUOTE}{_Y}\.(1[0-2]|0?[1-9])(?=[ \t]*[),]))",
            # '25년말, 25년말, '25년 말
            rf"(?P<edge>(?<![\d.,]){_QUOTE}?{_Y}년[ \t]?(말|초(?!과)|중반|상반기|하반기){_PARTICLE_OR_END})",
            # '25년
            rf"(?P<year>(?<!\d){_QUOTE}{_Y}년)",
            # unquoted 23.7월 / 22.10월 (a month cannot be a decimal fraction)
            rf"(?P<ym3>(?<![\d.,'’‘`]){_Y}\.(1[0-2]|0?[1-9])[ \t]?[월月])",
            # unquoted "(22.10, 새정부 ...)": after "(" and before "," ("(14.3)" is a number)
            rf"(?P<ym4>(?<=\(){_Y}\.(1[0-2]|0?[1-9])(?=,))",
            # ('14,  '18)  ~'27  -- a bare apostrophe year
            rf"(?P<bare>(?<!\d){_QUOTE}{_Y})",
        ]
    )
)
_HALF = {"下": "하반기", "上": "상반기", "하반기": "하반기", "상반기": "상반기"}


def _periods(text: str, out: list[str]) -> None:
    if not any(ch.isdigit() for ch in text):
        return
    for m in _PERIOD_RE.finditer(text):
        kind = m.lastgroup
        g = [x for x in m.groups() if x is not None][1:]  # drop the outer named group
        if kind == "range":
            out.append(f"20{g[0]}~20{g[1]}")
        elif kind == "quarter":
            out.append(f"20{g[0]}년 {g[1]}분기")
        elif kind == "half":
            out.append(f"20{g[0]}년 {_HALF[g[1]]}")
        elif kind in ("ym", "ym2", "ym3", "ym4"):
            out.append(f"20{g[0]}년 {int(g[1])}월")
        elif kind == "edge":
            out.append(f"20{g[0]}년 {g[1]}")
        elif kind == "year":
            out.append(f"20{g[0]}년")
        else:  # bare
            out.append(f"20{g[0]}")


# --------------------------------------------------------------------------- hanja

_HANJA_WORD_RE = re.compile(f"[0-9{_HANGUL}{HANJA_CLASS}]*[{HANJA_CLASS}][0-9{_HANGUL}{HANJA_CLASS}]*")


@lru_cache(maxsize=None)
def _hanja_keys(path: Path = HANJA_TSV) -> tuple[tuple[str, HanjaEntry], ...]:
    table = load_hanja_table(path)
    return tuple(sorted(table.items(), key=lambda kv: -len(kv[0])))


def _is_among(text: str, start: int, end: int) -> bool:
    """中 right after a Hangul word ("생산액 中 소부장", "검토中") means among/in (중)."""
    i = start - 1
    if i >= 0 and re.match(f"[{_HANGUL}]", text[i]):
        return True
    if i >= 0 and text[i] in " \t":
        j = i - 1
        k = end
        while k < len(text) and text[k] in " \t":
            k += 1
        return (
            j >= 0 and bool(re.match(f"[{_HANGUL}]", text[j]))
            and end < len(text) and text[end] in " \t"
            and k < len(text) and bool(re.match(f"[{_HANGUL}]", text[k]))
        )
    return False


def _hanja(text: str, out: list[str]) -> None:
    if not HANJA_RE.search(text):
        return
    keys = _hanja_keys()
    for m in _HANJA_WORD_RE.finditer(text):
        word = m.group()
        pieces: list[str] = []
        extras: list[str] = []
        i = 0
        while i < len(word):
            for key, entry in keys:
                if word.startswith(key, i):
                    abs_start = m.start() + i
                    if key == "中" and _is_among(text, abs_start, abs_start + 1):
                        pieces.append("중")
                    else:
                        pieces.append(entry.reading)
                        extras.extend(entry.extras)
                    i += len(key)
                    break
            else:
                pieces.append(word[i])
                i += 1
        replaced = "".join(pieces)
        if replaced != word:
            out.append(replaced)
        out.extend(extras)


# --------------------------------------------------------------------------- synonyms


def _form_key(form: str) -> str:
    """Forms equal up to separators ("소재·부품·장비" / "소재부품장비") share a key."""
    return re.sub(r"[\s·・/,]+", "", form).lower()


def _form_pattern(form: str) -> str:
    """Separators in a form are optional; so are spaces inside long Hangul forms
    ("국가 뿌리산업 진흥센터" is still 국가뿌리산업진흥센터)."""
    parts = []
    for part in re.split(r"[\s·・]+", form):
        if not part:
            continue
        if len(_form_key(form)) >= 4 and re.fullmatch(f"[{_HANGUL}]+", part):
            parts.append("[ \t]?".join(re.escape(ch) for ch in part))
        else:
            parts.append(re.escape(part))
    return r"[\s·・/,]*".join(parts)


@dataclass(frozen=True)
class _SynonymIndex:
    regex: re.Pattern[str]
    by_key: dict[str, tuple[SynonymGroup, int]]  # form key -> (group, index of form)


@lru_cache(maxsize=None)
def _synonym_index(path: Path = SYNONYMS_TSV) -> _SynonymIndex:
    by_key: dict[str, tuple[SynonymGroup, int]] = {}
    patterns: list[str] = []
    for group in load_synonym_groups(path):
        for idx, form in enumerate(group.forms):
            if group.match == "oneway" and idx == 0:
                continue  # the correct spelling triggers nothing
            key = _form_key(form)
            if key in by_key:
                continue
            by_key[key] = (group, idx)
            patterns.append(form)
    patterns.sort(key=lambda f: -len(_form_key(f)))
    alternation = "|".join(_form_pattern(f) for f in patterns)
    return _SynonymIndex(re.compile(f"(?:{alternation})", re.IGNORECASE), by_key)


def _synonyms(text: str, out: list[str]) -> None:
    index = _synonym_index()
    for m in index.regex.finditer(text):
        surface = m.group()
        hit = index.by_key.get(_form_key(surface))
        if hit is None:
            continue
        group, idx = hit
        form = group.forms[idx]
        start, end = m.span()
        if re.search("[A-Za-z]", form):
            if (start > 0 and text[start - 1].isascii() and text[start - 1].isalpha()) or (
                end < len(text) and text[end].isascii() and text[end].isalpha()
            ):
                continue
        elif group.match == "word" and len(_form_key(form)) <= 3:
            if start > 0 and re.match(f"[{_HANGUL}]", text[start - 1]):
                continue
            if not _WORD_END_RE.match(text, end):
                continue
        if group.match == "oneway":
            if idx > 0:
                out.append(group.forms[0])
            continue
        key = _form_key(form)
        out.extend(f for f in group.forms if _form_key(f) != key)


# --------------------------------------------------------------------------- context

_CONTEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(f"(?<![{_HANGUL}])베(?=\\(\\d)"), "베트남"),  # "美(14%), 베(13%), 대만(5%)"
    (re.compile(r"(?<=\()미(?= 수출)"), "미국"),  # "소부장 510억불(미 수출의 46.4%)"
)


def _context(text: str, out: list[str]) -> None:
    for regex, expansion in _CONTEXT_RULES:
        for _ in regex.finditer(text):
            out.append(expansion)


# --------------------------------------------------------------------------- API


def expansions(text: str) -> list[str]:
    """The expansions ``expand`` would append, in order (one per occurrence)."""
    return _expansions_of(collapse_amount_spacing(text))


def _expansions_of(text: str) -> list[str]:
    out: list[str] = []
    _hanja(text, out)
    _periods(text, out)
    _units(text, out)
    _synonyms(text, out)
    _context(text, out)
    return out


def expand(text: str) -> str:
    """``text`` (amount spacing collapsed) followed by its search expansions, one per line."""
    text = collapse_amount_spacing(text)
    out = _expansions_of(text)
    if not out:
        return text
    return text + EXPANSION_SEP + EXPANSION_SEP.join(out)


def tables_fingerprint() -> str:
    """A short hash of the data tables, for indexes to record what shaped them."""

    h = hashlib.sha256()
    for path in (HANJA_TSV, SYNONYMS_TSV):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


__all__ = [
    "expand",
    "expansions",
    "collapse_amount_spacing",
    "load_hanja_table",
    "load_synonym_groups",
    "tables_fingerprint",
    "HANJA_RE",
    "HANJA_CLASS",
    "EXPANSION_SEP",
]
