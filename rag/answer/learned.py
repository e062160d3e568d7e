"""The learned line ranker and answerability model, loaded from a small versioned artifact.

Both are gradient-boosted trees trained by ``rag train`` (LightGBM, :mod:`rag.eval.train`)
and exported as LightGBM's own JSON dump into ``rag/data/models/answer_models.json``,
with the feature names, the operating threshold chosen on held-out folds and the hash
of the data they were trained on. Loading it imports neither LightGBM nor scikit-learn
(importing them costs seconds; a one-shot question must stay fast): the trees are
evaluated here with numpy, all trees and rows at once, and a test checks the scores
against LightGBM's own ``predict`` on the same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from rag.config import DATA_DIR

ARTIFACT = DATA_DIR / "models" / "answer_models.json"
ARTIFACT_VERSION = 1


@dataclass(frozen=True)
class TreeEnsemble:
    """LightGBM trees (numerical splits) flattened into arrays: node ``i`` of the ensemble
    splits on ``feature[i]`` at ``threshold[i]`` (left when ``x <= threshold``) or, when
    ``feature[i] < 0``, is a leaf worth ``value[i]``; ``roots`` index each tree's root."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depth: int
    n_features: int

    @classmethod
    def from_dump(cls, dump: dict) -> "TreeEnsemble":
        """From ``Booster.dump_model()``."""
        feature, threshold, left, right, default_left, value, roots = [], [], [], [], [], [], []
        depth = 0

        def add(node: dict, level: int) -> int:
            nonlocal depth
            i = len(feature)
            for arr, v in ((feature, -1), (threshold, 0.0), (left, -1), (right, -1), (default_left, True),
                           (value, 0.0)):
                arr.append(v)
            if "leaf_value" in node:
                value[i] = float(node["leaf_value"])
                depth = max(depth, level)
                return i
            if node.get("decision_type", "<=") != "<=":
                raise ValueError(f"unsupported split {node.get('decision_type')!r} (numerical features only)")
            feature[i] = int(node["split_feature"])
            threshold[i] = float(node["threshold"])
            default_left[i] = bool(node.get("default_left", True))
            left[i] = add(node["left_child"], level + 1)
            right[i] = add(node["right_child"], level + 1)
            return i

        for tree in dump["tree_info"]:
            roots.append(add(tree["tree_structure"], 0))
        return cls(np.asarray(feature, np.int32), np.asarray(threshold, np.float64), np.asarray(left, np.int32),
                   np.asarray(right, np.int32), np.asarray(default_left, bool), np.asarray(value, np.float64),
                   np.asarray(roots, np.int32), depth, int(dump["max_feature_idx"]) + 1)

    @cached_property
    def _walk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The split arrays with every leaf turned into a node that leads to itself (split
        on feature 0 at +inf, both children itself), so a walk needs no leaf tests: after
        ``depth`` steps every row of every tree stands on its leaf."""
        leaf = self.feature < 0
        me = np.arange(len(self.feature), dtype=self.left.dtype)
        return (np.where(leaf, 0, self.feature), np.where(leaf, np.inf, self.threshold),
                np.where(leaf, me, self.left), np.where(leaf, me, self.right))

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """Sum of leaf values over the trees for each row of ``x`` (LightGBM's raw score;
        a missing value, NaN, goes the way its split's ``default_left`` says)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.n_features)
        feature, threshold, left, right = self._walk
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        missing = bool(np.isnan(x).any())
        for _ in range(self.depth):
            v = x[rows, feature[node]]
            go_left = v <= threshold[node]
            if missing:
                go_left = np.where(np.isnan(v), self.default_left[node], go_left)
            node = np.where(go_left, left[node], right[node])
        return self.value[node].sum(axis=1)


@dataclass(frozen=True)
class AnswerModels:
    """The line ranker, the answerability model and how to use them."""

    ranker: TreeEnsemble
    answerable: TreeEnsemble
    line_features: tuple[str, ...]
    question_features: tuple[str, ...]
    threshold: float  # answer when P(answerable) >= threshold
    meta: dict = field(default_factory=dict)

    def answerable_probability(self, q: np.ndarray) -> float:
        return float(1.0 / (1.0 + np.exp(-self.answerable.raw_score(q)[0])))

    def to_dict(self) -> dict:
        return dict(self.meta)


def models_from_dict(data: dict) -> AnswerModels:
    if data.get("version") != ARTIFACT_VERSION:
        raise ValueError(f"answer model artifact version {data.get('version')} (expected {ARTIFACT_VERSION})")
    return AnswerModels(
        TreeEnsemble.from_dump(data["ranker"]), TreeEnsemble.from_dump(data["answerable"]),
        tuple(data["line_features"]), tuple(data["question_features"]), float(data["threshold"]),
        {k: v for k, v in data.items() if k not in ("ranker", "answerable")},
    )


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> AnswerModels:
    return models_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def load_models(path: Path = ARTIFACT) -> AnswerModels | None:
    """The trained models (re-read when the file changes), or None when none are trained."""
    try:
        return _load(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None
