"""A/B cold start of a one-shot ``rag ask``: an earlier commit against the working tree,
runs alternating in one session so that both see the same machine load.

Usage::

    python benchmarks/ab_coldstart.py 0071a65 [--runs 7] [--question "…"]

The earlier commit is checked out into a temporary git worktree with its own index (built
first, not timed); both run with this checkout's virtualenv. Prints the median, p95 and
the ratio (working tree / commit) and writes benchmarks/out/ab_coldstart.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "ab_coldstart.json"


def _ask(cwd: Path, env: dict, question: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli.main", "ask", question], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _summary(values: list[float]) -> dict:
    v = sorted(values)
    return {"median_s": round(statistics.median(v), 3), "p95_s": round(v[min(len(v) - 1, int(0.95 * len(v)))], 3),
            "runs": [round(x, 3) for x in values]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the earlier commit (baseline)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--question", default="디팜스테크 매출액은 얼마야?")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), args.rev], cwd=ROOT, check=True)
        try:
            old_env = {**os.environ, "PYTHONPATH": str(old), "RAG_INDEX_DIR": str(Path(tmp) / "index")}
            subprocess.run([sys.executable, "-m", "rag.cli.main", "index", "build"], cwd=old, env=old_env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            new_env = dict(os.environ)
            _ask(ROOT, new_env, args.question)  # make sure this checkout's index is built
            times: dict[str, list[float]] = {"baseline": [], "current": []}
            for _ in range(args.runs):
                times["baseline"].append(_ask(old, old_env, args.question))
                times["current"].append(_ask(ROOT, new_env, args.question))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    result = {"baseline_rev": args.rev, "question": args.question,
              **{k: _summary(v) for k, v in times.items()}}
    result["ratio_median"] = round(result["current"]["median_s"] / result["baseline"]["median_s"], 3)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"cold `rag ask` ({args.runs} runs each, alternating): baseline {args.rev} median "
          f"{result['baseline']['median_s']} s p95 {result['baseline']['p95_s']} s; current median "
          f"{result['current']['median_s']} s p95 {result['current']['p95_s']} s; ratio {result['ratio_median']}")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
