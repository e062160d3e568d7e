"""``rag eval --compare``: read an earlier ``--json`` payload (:func:`load_payload`) and
the deltas of a new run against it (:func:`compare`): per metric, latency, per question
type, and which questions gained or lost a hit at 5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.eval.metrics import MODE_ORDER

COMPARE_METRICS = ("hit@1", "hit@5", "hit@10", "full@5", "mrr@10", "ndcg@10", "section@5")


def compare(old: dict, new: dict) -> dict:
    """Deltas of ``new`` against ``old`` (both ``--json`` payloads).

    Returns ``{"modes": {mode: {metric: {"old", "new", "delta"}}}, "latency": {mode: {...}},
    "per_type": {mode: {type: {metric: delta}}}, "flips": {mode: {"gained": [ids], "lost": [ids]}}}``;
    only modes present in both runs appear. ``gained``/``lost`` are items whose hit@5 changed.
    """
    out: dict[str, Any] = {"modes": {}, "latency": {}, "per_type": {}, "flips": {},
                           "old_created": old.get("meta", {}).get("created"),
                           "new_created": new.get("meta", {}).get("created")}
    for mode in [m for m in MODE_ORDER if m in old.get("modes", {}) and m in new.get("modes", {})]:
        o, n = old["modes"][mode], new["modes"][mode]
        out["modes"][mode] = {m: _delta(o["overall"].get(m), n["overall"].get(m)) for m in COMPARE_METRICS}
        out["latency"][mode] = {m: _delta(o.get("latency", {}).get(m), n.get("latency", {}).get(m))
                                for m in ("p50_ms", "p95_ms")}
        types = sorted(set(o.get("per_type", {})) | set(n.get("per_type", {})))
        out["per_type"][mode] = {
            t: {m: _delta(o.get("per_type", {}).get(t, {}).get(m), n.get("per_type", {}).get(t, {}).get(m))["delta"]
                for m in ("hit@5", "mrr@10")} for t in types}
        oq, nq = old.get("questions", {}).get(mode, {}), new.get("questions", {}).get(mode, {})
        gained, lost = [], []
        for qid in sorted(set(oq) & set(nq)):
            if "full5" not in nq[qid] and "full5" not in oq[qid]:
                continue  # unanswerable
            was, now = _hit5(oq[qid]), _hit5(nq[qid])
            if now and not was:
                gained.append(qid)
            elif was and not now:
                lost.append(qid)
        out["flips"][mode] = {"gained": gained, "lost": lost}
    return out


def _hit5(q: dict) -> bool:
    return q.get("rank") is not None and q["rank"] <= 5


def _delta(old: float | None, new: float | None) -> dict:
    d = None if old is None or new is None else round(new - old, 4)
    return {"old": old, "new": new, "delta": d}


def load_payload(path: Path) -> dict:
    """An earlier ``--json`` payload; ValueError with a one-line reason when unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path} 파일을 읽을 수 없습니다: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} 파일이 JSON이 아닙니다 ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("modes"), dict):
        raise ValueError(f"{path} 파일은 `rag eval --json` 결과가 아닙니다 (\"modes\" 없음)")
    return data
