"""Whether the documents answer the question at all: abstention signals and the calibrated
policy.

Signals (each in [0, 1], higher = more likely answerable), computed per question from
what retrieval and answer composition already produced (no extra model call):

* ``coverage`` — share of the question's content weight (idf-weighted morphemes and
  numbers; question words such as 얼마/어디 left out; see :mod:`rag.answer.compose`) found in the
  first answer line and its context (section path, table header, the line above).
  ``answer_coverage`` is the same over all answer lines, ``best_coverage`` over every
  candidate line of the top passages, ``subject_coverage`` over the nouns of the phrase the
  question word hangs on only ("*주조 업종* 2022년 *사업체* 수는 몇 개" — a line about
  another industry's figures covers the year but not the subject).
* ``numbers`` — share of the question's numbers, with the unit written after them
  ("2026년도", "제4차", "50%"), found in the answer lines or their context; a year may be
  written '26 there. "2026년도 실행계획의 예산" against a corpus that stops at 2025 fails here.
  ``first_numbers`` is the same over the first line and its context only.
* ``known_nouns`` — 1 minus the share of the question's weight carried by nouns that occur
  nowhere in the corpus (not a token of the index, not a substring of any document):
  "평균 *연봉*", "초대 *회장*", "*여성* 비중". ``known_subject`` is the same over the phrase
  the question word hangs on and the noun after 어느/몇 ("어느 *도시*") only: a chatty
  question's everyday words elsewhere ("하늘의 별 따기인데요") do not count against it.
* ``type_match`` — the first answer line shows what the question asks for: a number with
  the unit asked with 몇 (명, 개, %…), a share, an amount of money, a date.
* ``subject``, ``qualifiers``, ``predicate``, ``answer_class`` — the first answer line
  passes that check of :func:`rag.answer.evidence.support` against the question's shape
  (:mod:`rag.query.shape`): it is about the name the question is about ("*디팜스테크* 직원"
  is not answered by ASML's staff), it carries the question's restrictive words (최대,
  기업당, 평균, 초대…), the verb of a yes/no question ("예타를 *통과*했어?" is not answered
  by a plan to apply), and a name of the kind asked (어느 지역 → a place, 누구 → a person)
  that the question does not already contain. ``shape`` is the least of the four.
  For a two-part question any answer line may pass them.
* ``bm25_ratio`` — the top passage's BM25 score over the question's own maximum (the sum,
  over its tokens, of the best score each token alone reaches in any chunk);
  ``dense_top`` — the best cosine of the e5 question vector to a passage. Recorded for the
  report; on this corpus they do not separate answerable from unanswerable questions.

The :class:`Policy` abstains when a *gate* signal falls below its minimum or the graded
``score`` signal falls below the threshold. Which gates, and the threshold, are chosen on
the curated set by ``rag calibrate`` (:mod:`rag.eval.calibration`, whose maths are in
:mod:`rag.eval.calibration_math`) and stored in ``rag/data/abstention.json`` together with
the per-question signals, so the figures can be recomputed (the tests do). Signals are few
and coarse on purpose: a held-out set is scored the same way.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

from rag.answer.candidates import Candidate
from rag.answer.evidence import Support, numbers_found
from rag.answer.terms import QuestionTerms, candidate_hits, phrase_terms, weight_of
from rag.answer.tuning import BEST_COVERAGE_DEPTH
from rag.config import DATA_DIR
from rag.query.shape import QuestionShape
from rag.text.strings import match_key
from rag.types import Passage

DATA_FILE = DATA_DIR / "abstention.json"

SIGNALS = ("coverage", "answer_coverage", "best_coverage", "subject_coverage", "numbers", "first_numbers", "known_nouns", "known_subject", "type_match",
           "subject", "qualifiers", "predicate", "answer_class", "shape", "bm25_ratio", "dense_top")


def _is_noun(token: str) -> bool:
    """Analysed predicates are lemmas ending in 다 ("늘다", "키우다"); everything else is
    a noun, a number or a foreign word."""
    return not (len(token) >= 2 and token.endswith("다") and re.match(r"^[가-힣]+$", token))


def compute_signals(terms: "QuestionTerms", shape: "QuestionShape", scored: Sequence, lines: Sequence,
                    supports: Sequence["Support"], contexts: Sequence[str], result, idf,
                    multipart: bool = False) -> dict[str, float]:
    """The abstention signals of one question (see the module doc), each in [0, 1].

    Args:
        terms: :class:`rag.answer.terms.QuestionTerms` of the question.
        shape: :func:`rag.query.shape.analyse` of the question.
        scored: :class:`rag.answer.compose.Scored` candidates, best first.
        lines: the candidates the answer would be made of, first the best.
        supports: :func:`rag.answer.evidence.support` of each line.
        contexts: each line's document title.
        result: the :class:`rag.search.retriever.SearchResult` they came from.
        idf: the idf table of the index (:func:`rag.answer.terms.idf_table`).
        multipart: the question asks two things; its checks may be met by different lines.
    """
    first = candidate_hits(terms, lines[0]) if lines else set()
    covered: set[str] = set(first)
    for c in lines[1:]:
        covered |= candidate_hits(terms, c)
    best_cov = max((weight_of(terms, candidate_hits(terms, s.cand)) for s in scored[:BEST_COVERAGE_DEPTH]), default=0.0)
    texts = [c.own_text + "|" + c.context_text + "|" + match_key(x) for c, x in zip(lines, contexts)]
    full = sum(terms.weights.values())
    unknown = math.fsum(terms.weights[t] for t in terms.oov if _is_noun(t)) / full if full > 0 else 1.0
    uniq = list(dict.fromkeys(terms.all_tokens))
    attainable = sum(idf.max_score(t) for t in uniq)

    def check(name: str) -> float:  # the first line passes; for a two-part question, any line
        if not supports:
            return 0.0
        chosen = supports if multipart else supports[:1]
        return 1.0 if any(getattr(s, name) for s in chosen) else 0.0

    shape_checks = ("subject", "qualifiers", "predicate", "answer_class")
    asked = phrase_terms(terms, shape.phrase + shape.asked, known_only=False)
    asked_total = sum(asked.values())
    asked_unknown = sum(w for t, w in asked.items() if t in terms.oov and _is_noun(t))
    return {
        "coverage": round(weight_of(terms, first), 6),
        "answer_coverage": round(weight_of(terms, covered), 6),
        "best_coverage": round(best_cov, 6),
        "subject_coverage": round(supports[0].topic, 6) if supports else 0.0,
        "numbers": round(numbers_found(shape.numbers, "|".join(texts)), 6),
        "first_numbers": round(numbers_found(shape.numbers, "|".join(texts if multipart else texts[:1])), 6),
        "known_nouns": round(1.0 - unknown, 6),
        "known_subject": round(1.0 - asked_unknown / asked_total, 6) if asked_total > 0 else 1.0,
        "type_match": check("type"),
        **{name: check(name) for name in shape_checks},
        "shape": min((check(name) for name in shape_checks), default=1.0),
        "bm25_ratio": round(min(1.0, result.sparse_top / attainable) if attainable > 0 else 0.0, 6),
        "dense_top": round(float(result.dense_top), 6),
    }


@dataclass(frozen=True)
class Policy:
    """Abstain when a gate signal falls below its minimum, or when the ``score`` signal
    falls below ``threshold``.

    ``gates`` are the checks that say "this answer cannot be it" (a number of the
    question missing from the answer, key nouns unknown to the corpus, an answer of the
    wrong kind); ``score``/``threshold`` is the graded one (how much of the question the
    answer covers), the knob of the trade-off curve.
    """

    gates: Mapping[str, float] = field(default_factory=dict)
    score: str = "coverage"
    threshold: float = float("-inf")
    meta: Mapping[str, object] = field(default_factory=dict)

    def failed_gates(self, signals: Mapping[str, float]) -> list[str]:
        return [g for g, minimum in self.gates.items() if float(signals.get(g, 0.0)) < minimum]

    def abstains(self, signals: Mapping[str, float]) -> bool:
        return bool(self.failed_gates(signals)) or float(signals.get(self.score, 0.0)) < self.threshold

    def with_threshold(self, threshold: float) -> "Policy":
        return Policy(dict(self.gates), self.score, threshold, dict(self.meta))

    def to_dict(self) -> dict:
        return {"gates": dict(self.gates), "score": self.score, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Policy":
        return cls(dict(d.get("gates", {})), str(d.get("score", "coverage")), float(d["threshold"]),
                   {k: v for k, v in d.items() if k not in ("gates", "score", "threshold")})


#: Answers everything: used while calibrating.
NEVER = Policy({}, "coverage", float("-inf"))


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Policy:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Policy.from_dict(data["policy"])


def load_policy(path: Path = DATA_FILE) -> Policy:
    """The calibrated policy in ``rag/data/abstention.json`` (re-read when the file
    changes); a policy that never abstains when the file is missing."""
    try:
        return _load(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        return NEVER


# --------------------------------------------------------------------------- reasons

#: The kinds of name a question may ask for, with the subject particle each takes.
_CLASS_SUBJECTS = {"place": "장소가", "company": "회사가", "org": "기관이", "person": "인물이", "names": "이름이"}
NO_PASSAGE = "관련 구절이 없습니다."
GENERIC = "관련 구절이 질문에 답하지 않습니다."


def decline_reason(shape: QuestionShape, terms: QuestionTerms, top: Candidate | None, sup: Support | None,
                   passages: Sequence[Passage], occurrences: Callable[[str], int]) -> str:
    """Why an answer is declined, in one Korean sentence that is true of the documents:
    a question word no document contains (looked for in their text, not only among index
    tokens), numbers the best line lacks, a name no related passage mentions, a
    restriction or yes/no verb the best line does not state, a kind of name it does not show."""
    if top is None or sup is None:
        return NO_PASSAGE
    asked = shape.subject + shape.phrase + shape.asked
    unknown = [t for t in terms.weights if t in terms.oov and _is_noun(t) and len(t) >= 2
               and occurrences(match_key(t)) == 0 and any(t in a for a in asked)]
    if unknown:
        return f"문서에 '{unknown[0]}'에 관한 내용이 없습니다."
    if shape.numbers and not sup.numbers:
        return f"관련 구절에 질문의 '{', '.join(p.forms[0] for p in shape.numbers)}'에 해당하는 내용이 없습니다."
    if not sup.subject and shape.subject:
        where = match_key(" ".join(p.text for p in passages))
        absent = [s for s in shape.subject if match_key(s) not in where]
        if absent:
            return f"관련 구절이 '{', '.join(absent)}'에 관한 내용이 아닙니다."
    if not sup.qualifiers and shape.qualifiers:
        return f"관련 구절에 질문의 조건({', '.join(shape.qualifiers)})에 맞는 내용이 없습니다."
    if not sup.predicate and shape.predicate:
        return f"문서는 '{shape.predicate[0]}' 여부를 말하지 않습니다."
    if not sup.answer_class and shape.answer_class:
        return f"관련 구절에 질문이 묻는 {_CLASS_SUBJECTS.get(shape.answer_class, '대상이')} 나오지 않습니다."
    if not sup.type and shape.pattern is not None:
        return "관련 구절에 질문이 묻는 형태의 답(수치·날짜 등)이 없습니다."
    return GENERIC
