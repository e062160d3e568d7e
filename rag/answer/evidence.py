"""Does an answer candidate carry what the question asks for? One check per part of the
question's shape (:mod:`rag.query.shape`), each true or false for one candidate.

The checks read the candidate's own text and its context (section path, table header, the
line it hangs under) and, for numbers and names, the document's title — "2025년
실행계획에서" is answered by a line of the document titled 2025년도 … 실행계획. They are
used twice: to prefer, among near-best candidates, one that passes them all (so that the
answer is about 디팜스테크 when the question is), and as abstention signals when no
candidate does (:mod:`rag.answer.abstain`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from rag.answer.candidates import Candidate
from rag.answer.terms import QuestionTerms, candidate_hits, phrase_terms
from rag.query.shape import PERCENT, PLACES, QUALIFIERS, NumberPhrase, QuestionShape
from rag.text.strings import match_key

#: The checks, in the order they are reported.
CHECKS = ("numbers", "type", "subject", "qualifiers", "predicate", "answer_class")


def type_matches(pattern: str | None, cand: Candidate) -> bool:
    """Whether a candidate shows what :func:`rag.query.shape.expected_pattern` asks for."""
    if pattern is None:
        return True
    if pattern == PERCENT:  # a share, not a change in points (%p)
        if cand.kind != "row":
            return bool(re.search(r"\d\s*%(?!\s*p)", cand.display))
        # a row: a value with %, a "증감 %: △36.7" column, or values under a (%) label
        # ("비중(%) | …: 17.8");
        # not a % in the row's label alone ("점유율 50% 이상 | 일본: 283개")
        values = cand.display.partition(" | ")[2]
        return bool(re.search(r"\d\s*%(?!\s*p)|%\s*:\s*[△▲+\-]?\s*\d", values)) or (
            "(%" in cand.display or "%)" in cand.display) and re.search(r"\d", values) is not None
    return re.search(pattern, cand.display, re.S) is not None


def _found(phrase: NumberPhrase, hay: str) -> bool:
    for form in phrase.forms:
        i = hay.find(form)
        while i >= 0:
            before = hay[:i].rstrip("'’‘(")
            if phrase.range_end or not before.endswith(("~", "∼", "-")):
                return True
            i = hay.find(form, i + 1)
    return False


def numbers_found(phrases: Sequence[NumberPhrase], text: str) -> float:
    """Share of the question's number phrases found in ``text`` (squashed, commas removed;
    hanja 月 read as 월)."""
    if not phrases:
        return 1.0
    hay = text.replace(",", "").replace("月", "월")
    return sum(1 for p in phrases if _found(p, hay)) / len(phrases)


# --------------------------------------------------------------------------- names

_PLACE_RE = re.compile(rf"(?:{PLACES})|[美中日獨英佛伊蘭印]")
#: Named sites: "광주첨단산단", "다산주물단지" (rare in the corpus, unlike 특화단지).
_SITE_RE = re.compile(r"[가-힣]{2,8}(?:산단|산업단지|단지|테크노파크|밸리|캠퍼스)")
#: How a firm's name is marked: ㈜디팜스테크, (주)무담, 코텍社, TSMC.
_FIRM_MARKS = r"㈜\s*[가-힣A-Za-z]+|\(주\)\s*[가-힣A-Za-z]+|(?<![\d개])[가-힣A-Za-z]{2,}社|[A-Z][A-Za-z&]+"
_ORG_RE = re.compile(
    _FIRM_MARKS + r"|[가-힣]{2,}(?:연구원|진흥원|진흥회|센터|대학교|대학|공단|공사|협회|조합|재단|연구소|위원회|"
    r"평가원|기술원|공업|전자|화학|중공업|테크|텍|디펜스|테크노파크)|[가-힣]{2,4}대(?=[·,\s)])"
)
#: A company: ㈜디팜스테크, 코텍社, TSMC, 한화디펜스 — not a committee or an association.
_COMPANY_RE = re.compile(
    _FIRM_MARKS + r"|[가-힣]{2,}(?:공업|전자|화학|중공업|테크|텍|디펜스|스틸|제철|모터스|건설|물산|정밀)"
)
#: Ministries and agencies are named often, so they are names even when frequent.
_MINISTRY_RE = re.compile(
    r"(?:산업|중기|고용|교육|과기정통|과기|기재|국토|환경|외교|해수|국방|복지|농식품|문체|행안|법무|노동)(?:부|/)|"
    r"[가-힣]{2,8}(?:부|처|청)(?=[\s),·/]|$)|산업/중기|KOTRA|KOITA"
)
_TITLES = r"장관|차관|위원장|회장|대표|기자|청장|총리|대통령|교수|박사|원장|센터장|이사장|칼럼니스트"
#: A person: a title (its name may follow or precede it: "장관 이창양", "엄재성 기자"); the
#: name group, when there is one, is what must be new to the question.
_PERSON_RE = re.compile(rf"(?:{_TITLES})\s+(?P<after>[가-힣]{{2,4}})(?![가-힣])|(?P<before>[가-힣]{{2,4}})\s*(?:{_TITLES})|(?:{_TITLES})")
#: A "name" written more often than this in the whole corpus is a common word (뿌리산업,
#: R&D, 정부), not the name of one place or body.
MAX_NAME_OCCURRENCES = 12


def _new_names(pattern: re.Pattern, text: str, question: str, occurrences=None) -> list[str]:
    """Matches of ``pattern`` in ``text`` that the question does not already contain (and,
    given ``occurrences``, that are rare enough in the corpus to be names)."""
    q = match_key(question)
    out = []
    for m in pattern.finditer(text):
        groups = [v for v in m.groupdict().values() if v]  # a person's name without the title
        name = match_key(groups[0] if groups else m.group(0))
        if len(name) < 2 or name in q:
            continue
        if occurrences is not None and occurrences(name) > MAX_NAME_OCCURRENCES:
            continue
        out.append(name)
    return out


def names_answer_class(answer_class: str | None, cand: Candidate, question: str, occurrences=None) -> bool:
    """Whether the candidate names a place / organisation / person that the question does
    not already name (any of them for ``names``). ``occurrences(squashed_text)`` counts a
    name in the corpus (common words are not names)."""
    if answer_class is None:
        return True
    text = re.sub(r"\([A-Z]{2,6}\)", "", cand.display)  # "조기경보시스템(EWS)": an abbreviation, not a name
    if answer_class in ("place", "org") and re.search(r"https?://|www\.", text):  # "어디에서 신청해?"
        return True
    def place() -> bool:
        return bool(_new_names(_PLACE_RE, text, question) or _new_names(_SITE_RE, text, question, occurrences))

    def org() -> bool:
        return bool(_new_names(_ORG_RE, text, question, occurrences) or _new_names(_MINISTRY_RE, text, question))

    if answer_class == "place":
        return place()
    if answer_class == "company":
        return bool(_new_names(_COMPANY_RE, text, question, occurrences))
    if answer_class == "org":
        return org()
    if answer_class == "person":
        return bool(_new_names(_PERSON_RE, text, question))
    return place() or org()  # names


# --------------------------------------------------------------------------- all checks


#: A noun of the asked phrase written this rarely in the corpus names one thing (디팜스테크,
#: 영광YKMC) even when Kiwi tags it as a common noun: the answer must name it too.
MAX_RARE_OCCURRENCES = 3


def _rare_nouns(shape: QuestionShape, occurrences) -> tuple[str, ...]:
    if occurrences is None:
        return ()
    return tuple(f for f in shape.phrase if len(f) >= 4 and f not in shape.subject
                 and 0 < occurrences(match_key(f)) <= MAX_RARE_OCCURRENCES)


@dataclass(frozen=True)
class Support:
    """The result of every check for one candidate (see :data:`CHECKS`)."""

    numbers: bool
    type: bool
    subject: bool
    qualifiers: bool
    predicate: bool
    answer_class: bool
    topic: float = 1.0  # share of the nouns of the question's phrase found (not a check)

    @property
    def complete(self) -> bool:
        return all(getattr(self, c) for c in CHECKS)

    def failed(self) -> list[str]:
        return [c for c in CHECKS if not getattr(self, c)]


def support(shape: QuestionShape, terms: "QuestionTerms", cand: Candidate, question: str,
            doc_context: str = "", occurrences=None) -> Support:
    """Every check of ``cand`` against the question's shape.

    Args:
        shape: :func:`rag.query.shape.analyse` of the question.
        terms: the question's terms (names are matched through them, with expansions:
            미국 is found in a line that says 美).
        cand: the candidate.
        question: the question as asked.
        doc_context: the candidate's document title (squashed or not).
        occurrences: counts a squashed string in the corpus (names must be rare).
    """

    where = cand.own_text + "|" + cand.context_text + "|" + match_key(doc_context)
    found = candidate_hits(terms, cand)

    def named(name: str) -> bool:  # every word of the name, or the name as written
        key = match_key(name)
        words = [t for t in terms.weights if t in key]
        return (bool(words) and all(t in found for t in words)) or key in where

    phrase = phrase_terms(terms, shape.phrase)
    total = sum(phrase.values())
    shown = cand.display + " " + cand.context_text
    return Support(
        numbers=numbers_found(shape.numbers, where) >= 1.0,
        type=type_matches(shape.pattern, cand),
        subject=all(named(n) for n in shape.subject + _rare_nouns(shape, occurrences)),
        qualifiers=all(re.search(QUALIFIERS[q][1], shown) for q in shape.qualifiers),
        predicate=all(p in cand.own_text for p in shape.predicate),
        answer_class=names_answer_class(shape.answer_class, cand, question, occurrences),
        topic=sum(w for t, w in phrase.items() if t in found) / total if total > 0 else 1.0,
    )
