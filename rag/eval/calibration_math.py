"""The calibration maths: which abstention policy to choose, and how well it does.

:class:`Outcome` is one curated question answered without abstention (its signals and
whether the answer holds an expected string); :func:`figures` are the shares a
:class:`rag.answer.abstain.Policy` answers / abstains / contains on such outcomes,
:func:`curve` the trade-off over the threshold, :func:`choose` the operating point and
:func:`cross_validate` its estimate on unseen questions. Only calibration and its tests
need these; answering at run time needs just the policy (:mod:`rag.answer.abstain`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from rag.answer.abstain import Policy


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
