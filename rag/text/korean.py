"""The Korean analyser behind BM25: documents and questions go through the same function.

Usage::

    from rag.text.korean import get_analyzer
    analyzer = get_analyzer()                     # morph mode, with rag.text.normalize.expand
    analyzer.tokenize("'27년까지 700억불 규모")
    # -> ['27', '년', '700억', '불', '규모', '2027', '년', '700억', '달러']
    #    (the original wording's tokens first, then those of the normalize expansions)
    analyzer.tokenize_many(chunk_texts)           # batched through Kiwi's thread pool

Modes
-----
``"morph"`` (default): Kiwi morphemes, keeping content parts of speech only:
nouns (NNG, NNP, NNB minus a few function nouns, NR), verb/adjective stems as lemmas
("높이다"; VV*, VA* minus 하다/있다/되다/위하다/통하다/...), roots (XR), noun prefixes (XPN),
foreign letters (SL, lowercased; "R&D" -> "r&d"), hanja (SH), numbers (SN), "%",
URLs and e-mail addresses (lowercased). Particles, endings, suffixes, punctuation and
symbols are dropped.

``"whitespace"``: lowercased whitespace tokens with surrounding punctuation stripped (the
ablation baseline).

Token format for numbers in morph mode (with or without normalize; whitespace mode only
gets spacing variants aligned through ``rag.text.normalize.collapse_amount_spacing``):

* a number becomes its plain decimal value: "4,000" -> "4000", "03" -> "3", "17.8" -> "17.8";
* a number followed by a magnitude (만/억/조, also 십/백/천) becomes ONE token with the
  magnitude kept as its suffix: "4,000억원" / "4,000 억원" / "4천억 원" -> "4000억", "원";
  "74만명" -> "74만", "명"; "1조 2천억" -> "1조", "2000억"; "1.4조원" -> "1.4조", "원";
* the unit is a separate token: "원", "달러", "불", "명", "개", "년", "월", "%";
* a magnitude without a number stays as is ("억").

Compound nouns: Kiwi sometimes keeps a compound as one noun ("뿌리산업/NNG",
"국가뿌리산업진흥센터/NNP") and sometimes splits it, depending on context and spacing.
Every Hangul noun of three or more syllables is therefore decomposed once (cached) with
Kiwi itself (the compound blocked, out-of-vocabulary nouns split by rule); when it splits
into nouns of two or more syllables that spell it exactly, the pieces replace it
("뿌리산업" -> "뿌리", "산업" in every context and spacing); when a one-syllable piece
is a known Sino-Korean affix ("산업부" -> 산업 + 부, "매출액" -> 매출 + 액, "원자재" -> 원 +
자재), the compound is kept and its longer pieces are added; any other split is ignored
(loanwords: "자동차" is not 자동 + 차, "데이터" is not 데이 + 터).
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import time
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable, Sequence

from rag.text import normalize as _normalize

#: Bump when the token stream for the same input changes (indexes record it).
ANALYZER_VERSION = "1"

MODES = ("morph", "whitespace")

#: Kiwi construction options. The default (Wikipedia proper-noun), multi-word (WikiData)
#: and typo dictionaries are off: with them Kiwi takes ~2.3 s to load instead of ~0.8 s,
#: and on this corpus they only change how some compounds are split, which the
#: decomposition below normalises anyway.
KIWI_OPTIONS: dict = dict(
    num_workers=-1,
    load_default_dict=False,
    load_typo_dict=False,
    load_multi_dict=False,
    model_type="cong",
)

#: Domain words Kiwi would otherwise mangle (소부장 -> 소/NNP + 부장/NNG).
USER_WORDS: tuple[tuple[str, str], ...] = (("소부장", "NNP"),)
_USER_FORMS = frozenset(w for w, _ in USER_WORDS)

#: Only URLs and e-mails are matched as special tokens; Kiwi's SERIAL/HASHTAG patterns
#: would swallow dates ("2023. 03.") and ranges ("5-10") into opaque tokens.
def _match_options() -> int:
    from kiwipiepy.const import (
        Match,  # lazy: heavy dependency (Kiwi's model loads with it)
    )

    return int(Match.URL | Match.EMAIL)


NOUN_TAGS = frozenset({"NNG", "NNP"})
#: Dependent nouns that carry no content (units such as 원/명/개/년 are kept).
NNB_STOP = frozenset({"것", "수", "등", "데", "바", "뿐", "따위", "때문", "듯", "즈음", "터", "지", "줄", "척", "채", "나름", "김", "대로", "만큼"})
#: Question numerals.
NR_STOP = frozenset({"몇"})
#: Light verbs / functional predicates.
PRED_STOP = frozenset({"하다", "있다", "되다", "없다", "않다", "같다", "이다", "아니다", "위하다", "통하다", "대하다", "따르다", "관하다"})

_SMALL = {"십": 10, "백": 100, "천": 1000}
_BIG = "만억조"
_NUMERIC_NR = re.compile(f"^[{''.join(_SMALL)}{_BIG}]+$")
_HANGUL_WORD = re.compile("^[가-힣]+$")
_TAG_RE = re.compile(r"</?[A-Za-z][^>]{0,200}>")
_EDGE_PUNCT = "\"'`’‘“”()[]{}<>「」『』【】〈〉《》,.;:!?·・…※*•○□■◆◇▪▶☞⇒→←↑↓~-–—/\\|#"


# --------------------------------------------------------------------------- Kiwi

_kiwi = None
_kiwi_lock = threading.Lock()
_kiwi_load_seconds: float | None = None


def get_kiwi():
    """The process-wide Kiwi instance (constructed and warmed up once; thread-safe)."""
    global _kiwi, _kiwi_load_seconds
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                t0 = time.perf_counter()
                from kiwipiepy import (
                    Kiwi,  # lazy: heavy dependency (timed as the Kiwi load)
                )

                kiwi = Kiwi(**KIWI_OPTIONS)
                for word, tag in USER_WORDS:
                    kiwi.add_user_word(word, tag)
                kiwi.tokenize("뿌리산업 첨단화")  # the model is loaded lazily on first use
                _kiwi_load_seconds = time.perf_counter() - t0
                _kiwi = kiwi
    return _kiwi


def kiwi_load_seconds() -> float | None:
    """Seconds the first ``get_kiwi()`` took (import + construction + warm-up), or None."""
    return _kiwi_load_seconds


# --------------------------------------------------------------------------- helpers


def preclean(text: str) -> str:
    """NFKC, HTML entities and tags (the corpus tables carry <b>, &amp;) -> plain text."""
    text = unicodedata.normalize("NFKC", text)
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def _number(form: str) -> Decimal | None:
    s = form.replace(",", "").rstrip(".")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def _fmt(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _gap_is_space(text: str, a, b) -> bool:
    """True when nothing but whitespace separates token a from token b."""
    return not text[a.end : b.start].strip()


#: One-syllable nouns that Kiwi splits off a compound and that really are Sino-Korean
#: suffixes/prefixes ("매출액" -> 매출 + 액, "원자재" -> 원 + 자재). A split into some other
#: one-syllable piece is usually a loanword cut at random ("자동차" -> 자동 + 차,
#: "데이터" -> 데이 + 터) and is ignored.
SUFFIX_SYLLABLES = frozenset("액량률율금료비처부청망력직권국원회장실관단도점판위연사업강" "화성형적별급식기자가인")
PREFIX_SYLLABLES = frozenset("원부완극시중실선직광노" "고신비범초저재총탈반무미다")


@lru_cache(maxsize=65536)
def _decompose(form: str) -> tuple[tuple[str, ...], bool]:
    """(pieces, keep_whole) for a Hangul noun of 3+ syllables (see the module doc)."""
    kiwi = get_kiwi()
    toks = kiwi.tokenize(form, blocklist=[form], oov_handling="rule", match_options=_match_options())
    if len(toks) < 2 or "".join(t.form for t in toks) != form:
        return (), True
    if any(t.tag not in ("NNG", "NNP", "XSN", "XPN") for t in toks):
        return (), True
    nouns = [t for t in toks if t.tag in NOUN_TAGS and len(t.form) >= 2]
    if not nouns:
        return (), True
    exact = len(nouns) == len(toks)
    if not exact:
        for idx, t in enumerate(toks):
            if len(t.form) >= 2 and t.tag in NOUN_TAGS:
                continue
            if not ((idx == len(toks) - 1 and t.form in SUFFIX_SYLLABLES) or (idx == 0 and t.form in PREFIX_SYLLABLES)):
                return (), True
    pieces: list[str] = []
    for t in nouns:
        if len(t.form) >= 3 and t.form not in _USER_FORMS:
            sub, keep = _decompose(t.form)
            if sub:
                pieces.extend(sub)
                if keep:
                    pieces.append(t.form)
                continue
        pieces.append(t.form)
    return tuple(pieces), not exact


def _content_tokens(text: str, toks: Sequence) -> list[str]:
    out: list[str] = []
    n = len(toks)
    i = 0
    while i < n:
        t = toks[i]
        tag = t.tag
        if tag == "SN" or (tag == "NR" and _NUMERIC_NR.match(t.form)):
            i = _numeral_run(text, toks, i, out)
            continue
        form = t.form
        if form.startswith("%") and len(form) > 1:  # Kiwi sometimes reads "%포인트" as one noun
            out.append("%")
            out.append(form[1:])
        elif tag in NOUN_TAGS:
            if len(form) >= 3 and _HANGUL_WORD.match(form) and form not in _USER_FORMS:
                pieces, keep = _decompose(form)
                if keep:
                    out.append(form)
                out.extend(pieces)
            else:
                out.append(form.lower())
        elif tag == "NNB":
            if form not in NNB_STOP:
                out.append(form)
        elif tag == "NR":
            if form not in NR_STOP:
                out.append(form)
        elif tag == "XR" or tag == "XPN" or tag == "SH":
            out.append(form)
        elif tag.startswith("VV") or tag.startswith("VA"):
            lemma = t.lemma
            if lemma not in PRED_STOP:
                out.append(lemma)
        elif tag == "SL":
            # "R&D": SL & SL with nothing in between -> one token
            if (
                i + 2 < n and toks[i + 1].form == "&" and toks[i + 2].tag == "SL"
                and toks[i + 1].start == t.end and toks[i + 2].start == toks[i + 1].end
            ):
                out.append(f"{form}&{toks[i + 2].form}".lower())
                i += 3
                continue
            out.append(form.lower())
        elif tag == "SW":
            if form == "%":
                out.append("%")

        elif tag in ("W_URL", "W_EMAIL"):
            out.append(form.lower())
        i += 1
    return out


def _numeral_run(text: str, toks: Sequence, i: int, out: list[str]) -> int:
    """Consume SN/NR tokens from i (see module doc for the format); return the next index."""
    section = Decimal(0)
    cur: Decimal | None = None
    seen_number = False
    n = len(toks)
    j = i
    while j < n:
        t = toks[j]
        if j > i and not _gap_is_space(text, toks[j - 1], t):
            break
        if t.tag == "SN":
            if cur is not None:  # two numbers in a row: "2023 2027"
                break
            val = _number(t.form)
            if val is None:
                if j == i:
                    out.append(t.form.replace(",", "").rstrip("."))
                    return j + 1
                break
            cur = val
            seen_number = True
        elif t.tag == "NR" and _NUMERIC_NR.match(t.form):
            if not seen_number:  # a bare magnitude: "(억불)" -> "억"
                out.append(t.form)
                return j + 1
            for ch in t.form:
                if ch in _SMALL:
                    section += (cur if cur is not None else Decimal(1)) * _SMALL[ch]
                    cur = None
                else:
                    value = section + (cur if cur is not None else Decimal(0))
                    out.append(f"{_fmt(value if value else Decimal(1))}{ch}")
                    section, cur = Decimal(0), None
        else:
            break
        j += 1
    if cur is not None or section:
        out.append(_fmt(section + (cur if cur is not None else Decimal(0))))
    return j


def _whitespace_tokens(text: str) -> list[str]:
    out = []
    for w in text.split():
        w = w.strip(_EDGE_PUNCT).lower()
        if w:
            out.append(w)
    return out


# --------------------------------------------------------------------------- analyser


class KoreanAnalyzer:
    """Text -> list of str tokens, identical for documents and questions."""

    def __init__(self, normalize: bool = True, mode: str = "morph") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.normalize = normalize
        self.mode = mode

    def __repr__(self) -> str:
        return f"KoreanAnalyzer(normalize={self.normalize!r}, mode={self.mode!r})"

    @property
    def kiwi(self):
        """The Kiwi instance behind this analyser (shared, loaded once)."""
        return get_kiwi()

    @property
    def signature(self) -> str:
        """Identifies everything that shapes this analyser's tokens (record it in an index)."""
        parts = [f"korean-v{ANALYZER_VERSION}", self.mode, f"normalize={int(self.normalize)}"]
        if self.normalize:
            parts.append(f"tables={_normalize.tables_fingerprint()}")
        if self.mode == "morph":
            parts.append(f"kiwipiepy={_dist_version('kiwipiepy')}")
            parts.append(f"model={KIWI_OPTIONS['model_type']}")
        parts.append(f"code={analyzer_fingerprint()}")
        return ";".join(parts)

    def prepare(self, text: str) -> str:
        """The exact string handed to the tokeniser (pre-cleaned, expanded if normalize)."""
        text = preclean(text)
        if self.normalize:
            text = _normalize.expand(text)
        return text

    def tokenize(self, text: str) -> list[str]:
        prepared = self.prepare(text)
        if self.mode == "whitespace":
            return _whitespace_tokens(prepared)
        if not prepared.strip():
            return []
        toks = get_kiwi().tokenize(prepared, match_options=_match_options())
        return _content_tokens(prepared, toks)

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        prepared = [self.prepare(t) for t in texts]
        if self.mode == "whitespace":
            return [_whitespace_tokens(p) for p in prepared]
        kiwi = get_kiwi()
        # Kiwi rejects nothing, but an empty string yields []: keep positions aligned.
        results = list(kiwi.tokenize(prepared, match_options=_match_options()))
        return [_content_tokens(p, toks) for p, toks in zip(prepared, results)]

    __call__ = tokenize


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


@lru_cache(maxsize=1)
def analyzer_fingerprint() -> str:
    """A short hash of everything that can change tokens for the same (mode, normalize):
    this module's and rag.text.normalize's source, the data tables, the Kiwi options, user
    words and the kiwipiepy / model versions. Cheap (no Kiwi load); indexes record it and
    are stale when it differs."""
    h = hashlib.sha256()
    h.update(f"v{ANALYZER_VERSION}|{sorted(KIWI_OPTIONS.items())}|{USER_WORDS}".encode())
    h.update(f"|kiwipiepy={_dist_version('kiwipiepy')}|model={_dist_version('kiwipiepy_model')}|".encode())
    for path in (Path(__file__), Path(_normalize.__file__), _normalize.HANJA_TSV, _normalize.SYNONYMS_TSV):
        h.update(path.read_bytes())
    return f"korean-v{ANALYZER_VERSION}-{h.hexdigest()[:12]}"


_analyzers: dict[tuple[bool, str], KoreanAnalyzer] = {}


def get_analyzer(normalize: bool = True, mode: str = "morph") -> KoreanAnalyzer:
    """A shared analyser (all morph analysers share one Kiwi instance)."""
    key = (normalize, mode)
    analyzer = _analyzers.get(key)
    if analyzer is None:
        analyzer = _analyzers.setdefault(key, KoreanAnalyzer(normalize=normalize, mode=mode))
    return analyzer


def tokenize(text: str) -> list[str]:
    """``get_analyzer().tokenize(text)``: the default analysis used for BM25."""
    return get_analyzer().tokenize(text)


__all__ = [
    "KoreanAnalyzer",
    "get_analyzer",
    "analyzer_fingerprint",
    "get_kiwi",
    "kiwi_load_seconds",
    "tokenize",
    "preclean",
    "ANALYZER_VERSION",
    "KIWI_OPTIONS",
    "MODES",
]
