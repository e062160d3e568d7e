"""A/B of what a change costs the answer step: warm hybrid search and ``answer_question``
latency (retrieval included) and ``rag index build`` from nothing, an earlier commit against the working
tree, measured in one run so that both see the same machine.

Usage::

    python benchmarks/ab_answer.py HEAD~1 [--rounds 3] [--builds 2]

The earlier commit is checked out into a temporary git worktree; both sides run with this
checkout's virtualenv and share the model cache. Latency: one warm child process per side
loads its retriever and answers the questions of ``evaluation/qa.jsonl`` (k=5, hybrid)
one at a time, the two sides taking turns question by question (this machine's speed
drifts by tens of percent within minutes), round after round; the first round is a
warm-up and is not counted. Build: each side builds a new index into an empty folder in a fresh process,
taking turns. Prints p50/p95 per side and the ratios; writes
``benchmarks/out/ab_answer.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic as S  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: The child: prints its question count, then for each line ``i`` read from stdin times a
#: hybrid search (k=5) and ``answer_question`` of question ``i`` and prints both in ms. It
#: opens the retriever as a server does (``warm=True``: the ONNX question engine) where
#: the commit has that, and forgets remembered tokens and question vectors before each
#: call, so every question costs what a new one would.
CHILD = r"""
import json, sys, time
import rag.answer.terms as terms
from rag.answer.pipeline import answer_question
from rag.search.retriever import Retriever
questions = [json.loads(l)["question"] for l in open("evaluation/qa.jsonl", encoding="utf-8") if l.strip()]
try:
    retriever = Retriever.open(warm=True)
except TypeError:  # a commit from before the warm question engine
    retriever = Retriever.open()
def forget():
    for memo in (getattr(retriever, "_tokens", None), getattr(terms, "_unexpanded_tokens", None)):
        if memo is not None:
            memo.cache_clear()
    engine = getattr(retriever.embedder, "_query_engine", None)
    if engine is not None:
        engine.clear_cache()
print(len(questions), flush=True)
for line in sys.stdin:
    q = questions[int(line)]
    forget()
    t0 = time.perf_counter()
    retriever.search(q, k=5)
    t1 = time.perf_counter()
    forget()
    t2 = time.perf_counter()
    answer_question(retriever, q, k=5)
    print(json.dumps([(t1 - t0) * 1e3, (time.perf_counter() - t2) * 1e3]), flush=True)
"""


def _env(checkout: Path, index_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(checkout), RAG_INDEX_DIR=str(index_dir), RAG_CORPUS_DIR=str(checkout / "corpus"),
               OMP_NUM_THREADS="1")
    return env


def _build(checkout: Path, index_dir: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rag.cli.main", "index", "build"], cwd=checkout,
                   env=_env(checkout, index_dir), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the earlier commit (baseline)")
    ap.add_argument("--rounds", type=int, default=3, help="counted latency rounds over all questions")
    ap.add_argument("--builds", type=int, default=2, help="index builds from nothing per side (at least 1)")
    args = ap.parse_args()
    args.builds = max(1, args.builds)  # the latency children use the first build
    sides = {"baseline": None, "current": ROOT}
    builds: dict[str, list[float]] = {k: [] for k in sides}
    latency: dict[str, list[float]] = {k: [] for k in sides}
    search: dict[str, list[float]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(old), args.rev], cwd=ROOT, check=True)
        sides["baseline"] = old
        try:
            for b in range(args.builds):
                for name, checkout in sides.items():
                    builds[name].append(_build(checkout, Path(tmp) / f"index-{name}-{b}"))
                    print(f"build {b + 1}/{args.builds} {name}: {builds[name][-1]:.1f} s", flush=True)
            children = {name: subprocess.Popen([sys.executable, "-c", CHILD], cwd=checkout, text=True,
                                               env=_env(checkout, Path(tmp) / f"index-{name}-0"),
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL)
                        for name, checkout in sides.items()}
            counts = {int(child.stdout.readline()) for child in children.values()}
            assert len(counts) == 1, "both sides must read the same question set"
            n = counts.pop()
            for r in range(args.rounds + 1):
                for i in range(n):
                    for name, child in children.items():
                        child.stdin.write(f"{i}\n")
                        child.stdin.flush()
                        search_ms, answer_ms = json.loads(child.stdout.readline())
                        if r > 0:  # round 0 warms caches
                            search[name].append(search_ms)
                            latency[name].append(answer_ms)
                print(f"latency round {r}/{args.rounds} done", flush=True)
            for child in children.values():
                child.stdin.close()
                child.wait(timeout=60)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)
    result = {"baseline_rev": args.rev, "machine": S.machine_info(), "questions_per_round": len(latency["current"])
              // max(args.rounds, 1),
              "answer_ms": {k: S.summary(v) for k, v in latency.items()},
              "search_ms": {k: S.summary(v) for k, v in search.items()},
              "build_s": {k: {"runs": [round(x, 2) for x in v], **S.summary(v)} for k, v in builds.items()}}
    result["ratio_answer_p50"] = S.ratio(result["answer_ms"]["current"]["p50"], result["answer_ms"]["baseline"]["p50"])
    result["ratio_answer_p95"] = S.ratio(result["answer_ms"]["current"]["p95"], result["answer_ms"]["baseline"]["p95"])
    result["ratio_search_p50"] = S.ratio(result["search_ms"]["current"]["p50"], result["search_ms"]["baseline"]["p50"])
    result["ratio_search_p95"] = S.ratio(result["search_ms"]["current"]["p95"], result["search_ms"]["baseline"]["p95"])
    result["ratio_build_p50"] = S.ratio(result["build_s"]["current"]["p50"], result["build_s"]["baseline"]["p50"])
    path = S.save_json("ab_answer", result)
    a, b, h = result["answer_ms"], result["build_s"], result["search_ms"]
    print(f"warm hybrid search (ms): baseline {args.rev} p50 {h['baseline']['p50']} p95 {h['baseline']['p95']}; "
          f"current p50 {h['current']['p50']} p95 {h['current']['p95']}; ratio p50 {result['ratio_search_p50']} "
          f"p95 {result['ratio_search_p95']}")
    print(f"warm answer_question (ms): baseline {args.rev} p50 {a['baseline']['p50']} p95 {a['baseline']['p95']}; "
          f"current p50 {a['current']['p50']} p95 {a['current']['p95']}; ratio p50 {result['ratio_answer_p50']} "
          f"p95 {result['ratio_answer_p95']}")
    print(f"index build from nothing (s): baseline p50 {b['baseline']['p50']}; current p50 {b['current']['p50']}; "
          f"ratio {result['ratio_build_p50']}")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
