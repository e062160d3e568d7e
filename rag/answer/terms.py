"""The question's content words, weighted by rarity, and how they are found in an answer
candidate.

Words are the analyser's tokens of the question as written (search expansions left out:
the candidates' analysis carries them), question words and phrasing (얼마, 알려줘 …) left
out, each weighted by its BM25 idf from the sparse index's own statistics so that rare
words count more; numbers count double. A word is found in a candidate as one of its
tokens, inside a compound the analyser kept whole ("취업매칭버스" shows "매칭"), or
through one of its search expansions ("퍼센트" ↔ "%").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Iterable

from rag.answer.candidates import Candidate
from rag.answer.tuning import IDF_POWER, NUMBER_WEIGHT
from rag.text.korean import get_analyzer
from rag.text.normalize import expansions
from rag.text.strings import match_key
from rag.text.wordlists import load_words

if TYPE_CHECKING:
    from rag.search.retriever import Retriever


#: Question words and phrasing that carry no topic (rag/data/words/question_fillers.txt).
QUESTION_FILLERS = frozenset(load_words("question_fillers"))

_NUMERIC_TOKEN = re.compile(r"^\d")


@dataclass(frozen=True)
class QuestionTerms:
    """The question's content tokens with their weights (BM25 idf; numbers count double)."""

    weights: dict[str, float]
    numbers: frozenset[str]
    oov: frozenset[str]  # tokens the corpus never contains
    all_tokens: tuple[str, ...]  # every analysed token, as retrieval saw them
    alts: dict[str, frozenset[str]] = field(default_factory=dict)  # token -> tokens of its search expansions ("퍼센트" -> "%")
    #: (tokens, text) -> the tokens they cover: each candidate is checked by several steps
    _hits: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @cached_property
    def total(self) -> float:
        """The weight a passage can cover: words the corpus never contains are left out
        (they count in the ``oov_free`` abstention signal instead)."""
        return sum(w for t, w in self.weights.items() if t not in self.oov)

    @cached_property
    def plan(self) -> tuple[tuple[str, frozenset[str], bool, bool], ...]:
        """Each token with what :func:`_covers` asks of it, worked out once: its expansions,
        whether it is a number, whether it may match inside a compound's text."""
        return tuple((t, self.alts.get(t, frozenset()), _NUMERIC_TOKEN.match(t) is not None,
                      _HANGUL_OR_LATIN.match(t) is not None) for t in self.weights)


class _IdfTable:
    """BM25 (lucene) idf of single tokens, from the sparse index's own statistics."""

    def __init__(self, sparse, doc_texts: dict[str, str] | None = None) -> None:
        self._sparse = sparse
        self._doc_texts = doc_texts or {}
        self._corpus: str | None = None
        self._idf: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._counts: dict[str, int] = {}
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
        return self.occurrences(tok) > 0

    def occurrences(self, text: str) -> int:
        """How often ``text`` (squashed) is written in the documents (whitespace removed);
        remembered, since every candidate line asks about the same few names."""
        key = text.lower()
        if key not in self._counts:
            if len(self._counts) > 100_000:  # a long-running server: forget, do not grow
                self._counts.clear()
            if self._corpus is None:
                self._corpus = "\n".join(match_key(t) for t in self._doc_texts.values())
            self._counts[key] = self._corpus.count(key)
        return self._counts[key]

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


def plain_tokens(text: str, retriever: Retriever) -> list[str]:
    """Tokens of the text as written (no search expansions)."""
    if not retriever.analyzer.normalize:
        return retriever.tokens(text)
    return list(_unexpanded_tokens(text, retriever.analyzer.mode))


@lru_cache(maxsize=4096)
def _unexpanded_tokens(text: str, mode: str) -> tuple[str, ...]:
    """Memo of the questions' (and their expansions') tokens as written."""
    return tuple(get_analyzer(normalize=False, mode=mode).tokenize(text))


def question_terms(question: str, retriever: Retriever) -> QuestionTerms:
    """Content tokens of the question as written (expansions excluded: the candidates'
    analysis carries them), each weighted by its idf. A token with a search expansion
    ("퍼센트" → "%", "美" → "미국") also counts as found when an expansion is."""
    all_tokens = tuple(retriever.tokens(question))
    plain = plain_tokens(question, retriever) if retriever.analyzer.normalize else list(all_tokens)
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
            alt = frozenset(plain_tokens(" ".join(exp), retriever)) - {t}
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


def _covers(tok: str, tokens: frozenset[str], text: str, alts: frozenset[str], numeric: bool, word: bool) -> bool:
    """Whether a question token occurs in a candidate: as one of its tokens, or (for a
    word of two or more letters) inside its text, so that a compound the analyser kept
    whole ("취업매칭버스") still shows its parts ("매칭", "버스"); or through one of its
    expansions (``alts``)."""
    if tok in tokens or (alts and not alts.isdisjoint(tokens)):
        return True
    if numeric:
        return len(tok) == 2 and f"20{tok}" in tokens  # '25 in the question, 2025 in the text
    return word and bool(text) and tok in text


def hits(terms: QuestionTerms, tokens: frozenset[str], text: str = "") -> frozenset[str]:
    """The question tokens a candidate (its tokens and squashed text) covers."""
    key = (tokens, text)
    found = terms._hits.get(key)
    if found is None:
        found = terms._hits[key] = frozenset(t for t, alts, numeric, word in terms.plan
                                             if _covers(t, tokens, text, alts, numeric, word))
    return found


def weight_of(terms: QuestionTerms, toks: Iterable[str]) -> float:
    """Share of the question's weight carried by ``toks`` (0..1)."""
    total = terms.total
    # fsum: exactly rounded whatever the set's iteration order (which changes per process)
    return math.fsum(terms.weights.get(t, 0.0) for t in set(toks) if t not in terms.oov) / total if total > 0 else 0.0


def coverage(terms: QuestionTerms, tokens: frozenset[str], text: str = "") -> float:
    """Share of the question's weight whose tokens occur in ``tokens``/``text`` (0..1)."""
    return weight_of(terms, hits(terms, tokens, text))


def phrase_terms(terms: QuestionTerms, forms: Iterable[str], known_only: bool = True) -> dict[str, float]:
    """The question's (non-numeric) terms that belong to the given surface forms of it
    ("주조 업종" → 주조, 업종), with their weights; ``known_only`` leaves out the words the
    corpus never uses."""
    keys = [match_key(f) for f in forms]
    return {t: w for t, w in terms.weights.items()
            if not t[:1].isdigit() and (not known_only or t not in terms.oov) and any(t in k for k in keys)}


def candidate_hits(terms: QuestionTerms, c: "Candidate", with_context: bool = True) -> frozenset[str]:
    own = hits(terms, c.own, c.own_text)
    if not with_context:
        return own
    return own | hits(terms, c.context, c.context_text)
