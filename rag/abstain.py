"""Whether the documents answer the question at all: abstention signals and the calibrated
policy.

Signals (each in [0, 1], higher = more likely answerable), computed per question from
what retrieval and answer composition already produced (no extra model call):

* ``coverage`` — share of the question's content weight (idf-weighted morphemes and
  numbers; question words such as 얼마/어디 left out; see :mod:`rag.answer`) found in the
  first answer line and its context (section path, table header, the line above).
  ``answer_coverage`` is the same over all answer lines, ``best_coverage`` over every
  candidate line of the top passages.
* ``numbers`` — share of the question's numbers, with the unit written after them
  ("2026년도", "제4차", "50%"), found in the answer lines or their context; a year may be
  written '26 there. "2026년도 실행계획의 예산" against a corpus that stops at 2025 fails here.
  ``first_numbers`` is the same over the first line and its context only.
* ``known_nouns`` — 1 minus the share of the question's weight carried by nouns that occur
  nowhere in the corpus (not a token of the index, not a substring of any document):
  "평균 *연봉*", "초대 *회장*", "*여성* 비중".
* ``type_match`` — the first answer line shows what the question asks for: a number with
  the unit asked with 몇 (명, 개, %…), a share, an amount of money, a date.
* ``bm25_ratio`` — the top passage's BM25 score over the question's own maximum (the sum,
  over its tokens, of the best score each token alone reaches in any chunk);
  ``dense_top`` — the best cosine of the e5 question vector to a passage. Recorded for the
  report; on this corpus they do not separate answerable from unanswerable questions.

The :class:`Policy` abstains when a *gate* signal falls below its minimum or the graded
``score`` signal falls below the threshold. Which gates, and the threshold, are chosen on
the curated set by ``python -m rag.calibrate`` and stored in ``rag/data/abstention.json``
together with the per-question signals, so the figures can be recomputed (the tests do).
Signals are few and coarse on purpose: a held-out set is scored the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

DATA_FILE = Path(__file__).resolve().parent / "data" / "abstention.json"

SIGNALS = ("coverage", "answer_coverage", "best_coverage", "numbers", "first_numbers", "known_nouns", "type_match",
           "bm25_ratio", "dense_top")


_NUMBER_PHRASE_RE = re.compile(
    r"(?<![\d.,])(\d[\d,]*(?:\.\d+)?)\s*(만|억|조|천)?\s*(년도|년|분기|월|일|차|개사|개교|개|명|곳|%|퍼센트|위|배|원|대|종|호)?"
)


def number_phrases(question: str) -> list[tuple[str, ...]]:
    """Each number of the question with the unit written after it, as the alternative
    squashed spellings a passage may use: "2026년도" → ("2026년", "'26", …), "제4차" →
    ("4차",), "50%" → ("50%",). Durations ("10년 넘게", "1년 예산") are left out: the
    documents state them in too many ways."""
    out = []
    for m in _NUMBER_PHRASE_RE.finditer(question):
        num = m.group(1).replace(",", "")
        mag = m.group(2) or ""
        unit = {"년도": "년", "퍼센트": "%"}.get(m.group(3) or "", m.group(3) or "")
        year = re.fullmatch(r"(?:19|20)\d\d", num) is not None and not mag
        if unit == "년" and not year:
            continue
        forms = [num + mag + unit]
        if year:
            short = num[2:]
            forms += [num, f"'{short}", f"’{short}", f"‘{short}", f"({short}.", f"{short}."]
        out.append(tuple(dict.fromkeys(forms)))
    return out


def numbers_found(phrases: Sequence[tuple[str, ...]], text: str) -> float:
    """Share of the question's number phrases found in ``text`` (squashed, commas removed)."""
    if not phrases:
        return 1.0
    hay = text.replace(",", "")
    return sum(1 for forms in phrases if any(f in hay for f in forms)) / len(phrases)


def _is_noun(token: str) -> bool:
    """Analysed predicates are lemmas ending in 다 ("늘다", "키우다"); everything else is
    a noun, a number or a foreign word."""
    return not (len(token) >= 2 and token.endswith("다") and re.match(r"^[가-힣]+$", token))


def compute_signals(question: str, terms, scored: Sequence, lines: Sequence, result, idf) -> dict[str, float]:
    """The abstention signals of one question (see the module doc), each in [0, 1].

    Args:
        question: the question as asked.
        terms: :class:`rag.answer.QuestionTerms` of the question.
        scored: :class:`rag.answer.Scored` candidates, best first.
        lines: the candidates the answer would be made of, first the best.
        result: the :class:`rag.retrieve.SearchResult` they came from.
        idf: the :class:`rag.answer._IdfTable` of the index.
    """
    from .answer import answer_kind, candidate_hits, expected_pattern, type_matches, weight_of

    first = candidate_hits(terms, lines[0]) if lines else set()
    covered: set[str] = set(first)
    for c in lines[1:]:
        covered |= candidate_hits(terms, c)
    best_cov = max((weight_of(terms, candidate_hits(terms, s.cand)) for s in scored[:50]), default=0.0)
    phrases = number_phrases(question)
    numbers = numbers_found(phrases, "|".join(c.own_text + "|" + c.context_text for c in lines))
    first_numbers = numbers_found(phrases, (lines[0].own_text + "|" + lines[0].context_text) if lines else "")
    full = sum(terms.weights.values())
    unknown = sum(terms.weights[t] for t in terms.oov if _is_noun(t)) / full if full > 0 else 1.0
    pattern = expected_pattern(question, answer_kind(question))
    uniq = list(dict.fromkeys(terms.all_tokens))
    attainable = sum(idf.max_score(t) for t in uniq)
    return {
        "coverage": round(weight_of(terms, first), 6),
        "answer_coverage": round(weight_of(terms, covered), 6),
        "best_coverage": round(best_cov, 6),
        "numbers": round(numbers, 6),
        "first_numbers": round(first_numbers, 6),
        "known_nouns": round(1.0 - unknown, 6),
        "type_match": 1.0 if lines and type_matches(pattern, lines[0]) else 0.0,
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


# --------------------------------------------------------------------------- calibration maths


@dataclass(frozen=True)
class Outcome:
    """One curated question answered without abstention: what calibration needs."""

    id: str
    answerable: bool
    contained: bool  # the answer text holds an expected answer string
    signals: Mapping[str, float]

    def to_dict(self) -> dict:
        return {"id": self.id, "answerable": self.answerable, "contained": self.contained, "signals": dict(self.signals)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Outcome":
        return cls(d["id"], bool(d["answerable"]), bool(d["contained"]), dict(d["signals"]))


def figures(policy: Policy, outcomes: Sequence[Outcome]) -> dict:
    """Shares under ``policy``: ``answered`` (answerable questions answered),
    ``abstained`` (unanswerable questions abstained on), ``containment`` (answerable
    questions answered with an expected string in the answer) and ``containment_answered``
    (the same among those answered)."""
    pos = [o for o in outcomes if o.answerable]
    neg = [o for o in outcomes if not o.answerable]
    answered = [o for o in pos if not policy.abstains(o.signals)]
    contained = [o for o in answered if o.contained]
    return {
        "answered": len(answered) / max(len(pos), 1),
        "abstained": sum(1 for o in neg if policy.abstains(o.signals)) / max(len(neg), 1),
        "containment": len(contained) / max(len(pos), 1),
        "containment_answered": len(contained) / max(len(answered), 1),
        "n_answerable": len(pos),
        "n_unanswerable": len(neg),
    }


def curve(policy: Policy, outcomes: Sequence[Outcome]) -> list[dict]:
    """The trade-off as the threshold on ``policy.score`` rises (gates kept): one row per
    distinct threshold, each placed halfway between consecutive observed scores."""
    values = sorted({round(float(o.signals.get(policy.score, 0.0)), 6) for o in outcomes})
    cuts = [float("-inf")] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6 if values else 0.0]
    return [{"threshold": c, **figures(policy.with_threshold(c), outcomes)} for c in cuts]


def choose(candidates: Sequence[Policy], outcomes: Sequence[Outcome], min_answered: float = 0.95,
           min_containment: float | None = None) -> tuple[Policy, dict]:
    """The operating point: among the candidate gate sets and every threshold, the one
    abstaining on the most unanswerable questions while answering at least
    ``min_answered`` of the answerable ones (and, when given and reachable, keeping
    containment at ``min_containment`` or above); ties go to higher containment, then
    to more answered, then to more gates (a check that costs nothing on the curated set still guards questions unlike
    them). The threshold is the middle of the range of scores over which those figures
    hold: the widest margin on both sides."""
    rows = []
    for base in candidates:
        for row in curve(base, outcomes):
            if row["answered"] + 1e-12 >= min_answered:
                rows.append((base, row))
    if min_containment is not None and any(r["containment"] + 1e-12 >= min_containment for _, r in rows):
        rows = [(b, r) for b, r in rows if r["containment"] + 1e-12 >= min_containment]
    if not rows:  # nothing answers enough: the most permissive policy
        base = candidates[0].with_threshold(float("-inf"))
        return base, figures(base, outcomes)
    def key(br):
        return (round(br[1]["abstained"], 9), round(br[1]["containment"], 9), round(br[1]["answered"], 9),
                len(br[0].gates))

    best_key = max(key(br) for br in rows)
    base = next(b for b, r in rows if key((b, r)) == best_key)
    # the run of thresholds of that gate set giving the same figures spans the observed
    # scores between two neighbours: take the middle (the widest margin on both sides)
    values = sorted({round(float(o.signals.get(base.score, 0.0)), 6) for o in outcomes})
    cuts = [r["threshold"] for r in curve(base, outcomes)]
    same = [i for i, c in enumerate(cuts) if any(b is base and r["threshold"] == c and key((b, r)) == best_key
                                                 for b, r in rows)]
    i, j = same[0], same[-1]
    while j + 1 < len(cuts) and (j + 1) in same:
        j += 1
    below = values[i - 1] if i >= 1 else 0.0  # the signals live in [0, 1]
    above = values[j] if j < len(values) else 1.0
    policy = base.with_threshold((below + above) / 2 if i >= 1 or j >= 1 else (0.0 + above) / 2)
    return policy, {**figures(policy, outcomes), "threshold": policy.threshold}


def cross_validate(candidates: Sequence[Policy], outcomes: Sequence[Outcome], folds: int = 5, seed: int = 0,
                   min_answered: float = 0.95, min_containment: float | None = None) -> dict:
    """Stratified k-fold estimate of the chosen operating point on unseen questions:
    choose on k-1 folds, score the held-out fold, pool the held-out decisions."""
    import random

    rng = random.Random(seed)
    pos = [o for o in outcomes if o.answerable]
    neg = [o for o in outcomes if not o.answerable]
    rng.shuffle(pos)
    rng.shuffle(neg)
    fold_of = {}
    for group in (pos, neg):
        for i, o in enumerate(group):
            fold_of[o.id] = i % folds
    held: list[tuple[Outcome, bool]] = []
    for f in range(folds):
        train = [o for o in outcomes if fold_of[o.id] != f]
        policy, _ = choose(candidates, train, min_answered, min_containment)
        held += [(o, policy.abstains(o.signals)) for o in outcomes if fold_of[o.id] == f]
    hp = [(o, a) for o, a in held if o.answerable]
    hn = [(o, a) for o, a in held if not o.answerable]
    return {
        "folds": folds,
        "answered": sum(1 for _, a in hp if not a) / max(len(hp), 1),
        "abstained": sum(1 for _, a in hn if a) / max(len(hn), 1),
        "containment": sum(1 for o, a in hp if not a and o.contained) / max(len(hp), 1),
    }
