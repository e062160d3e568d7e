"""The Milvus backend (milvus-lite) against the files backend (bm25s + faiss) on synthetic
indexes: sync time, search latency per engine and end to end, memory, disk and parity.

    python benchmarks/bench_milvus.py                          # 10k and 100k chunks
    python benchmarks/bench_milvus.py --sizes 2000 --limit 20  # a quick smoke run

Per size, each in a fresh child process: the synthetic index (bench_build.py's build) unless
present; ``sync`` into a fresh milvus-lite file under benchmarks/out/milvus/; ``mem`` per
backend; ``search``, both backends in one process alternating question by question. Questions
are encoded (real ``Embedder.encode_queries``) and analysed once up front, and both backends
get the same vectors and tokens. Results: benchmarks/out/bench_milvus.json and a subsection of
the bench block of benchmarks/report.md (``run_all.py`` rewrites that block: rerun this after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic as S

MODES = ("bm25", "dense", "hybrid")
K = 10
TIE = 1e-4  # scores this close are ties: the engines may order them differently
HERE = str(Path(__file__).resolve())
WORK = S.OUT / "milvus"
QFILE = WORK / "questions.npz"
MARK_START, MARK_END = "<!-- milvus:start -->", "<!-- milvus:end -->"


def _milvus_settings(size: int, seed: int):
    db = WORK / f"{size}-{seed}" / "milvus.db"
    return S.synthetic_settings(size, seed).with_(backend="milvus", milvus_uri=str(db), milvus_collection="rag_chunks")


def _disk_mib(path: Path) -> float:
    """Bytes allocated on disk under ``path`` (a file or a folder), in MiB."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return round(sum(p.stat().st_blocks * 512 for p in files) / 1024**2, 1)


def _children() -> list[dict]:
    """Child processes of this one (the milvus-lite server) with their RSS, from /proc."""
    out = []
    for pid in [p for t in Path("/proc/self/task").iterdir() for p in (t / "children").read_text().split()]:
        st = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in ln)
        out.append({"pid": int(pid), "comm": st["Name"].strip(), "rss_mib": round(int(st["VmRSS"].split()[0]) / 1024, 1),
                    "hwm_mib": round(int(st["VmHWM"].split()[0]) / 1024, 1)})
    return out


def _mib(status: dict) -> dict:
    return {k: round(v / 1024, 1) for k, v in status.items()}


def _analyzer():
    from rag.index.spec import BuildSpec
    from rag.text.korean import get_analyzer

    spec = BuildSpec().analyzer
    return get_analyzer(mode=spec.mode, normalize=spec.normalize)


def _questions(qfile: Path):
    data = np.load(qfile, allow_pickle=False)
    return list(data["questions"]), [json.loads(t) for t in data["tokens"]], data["vectors"]


class FixedEmbedder:
    """The retrievers' embedder: the vector encoded up front for each question."""

    def __init__(self, questions: list[str], vectors: np.ndarray):
        self.vectors = dict(zip(questions, vectors))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def child_build(size: int, seed: int) -> dict:
    """bench_build.py's synthetic build."""
    import bench_build

    return bench_build.child_synth_build(size, seed, regen=False)


def child_sync(size: int, seed: int) -> dict:
    from rag.index.milvus import MilvusBackend
    from rag.index.store import load_index

    st, ms = S.synthetic_settings(size, seed), _milvus_settings(size, seed)
    shutil.rmtree(Path(ms.milvus_uri).parent, ignore_errors=True)
    index = load_index(st.index_dir)
    analyzer = S.RecordingAnalyzer(_analyzer())
    analyzer.tokenize("워밍업")  # load Kiwi before the clock starts
    done = [0]

    def progress(stage: str, advance: int, total: int) -> None:
        done[0] += advance
        if advance and (done[0] % 10_000 < advance or done[0] == total):
            with open(WORK / "progress.log", "a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%H:%M:%S')} {size}: {done[0]:,}/{total:,} rows\n")

    t0 = time.perf_counter()
    backend = MilvusBackend.connect(ms, index)
    t1 = time.perf_counter()
    written = backend.sync(index, analyzer, st.index_dir, progress=progress)
    sync_s = time.perf_counter() - t1
    stats, server = backend.stats(), _children()
    backend.close()
    n = len(index.chunks)
    return {"n_chunks": n, "connect_s": round(t1 - t0, 2), "sync_s": round(sync_s, 2), **written, "stats": stats,
            "kiwi_s": round(analyzer.seconds, 2), "rows_per_s": round(n / sync_s, 1),
            "rows_per_s_without_kiwi": round(n / (sync_s - analyzer.seconds), 1),
            "python": _mib(S.proc_status()), "python_peak_mib": S.peak_rss_mib(), "server": server}


def _connect_milvus(size: int, seed: int, index):
    from rag.index.milvus import MilvusBackend

    t0 = time.perf_counter()
    backend = MilvusBackend.connect(_milvus_settings(size, seed), index)
    if not backend.in_sync(index):
        raise SystemExit("the milvus-lite collection does not hold this build: run the sync child first")
    return backend, time.perf_counter() - t0


def child_mem(size: int, seed: int, backend_name: str, qfile: Path) -> dict:
    """RSS after load and one search of every question; no Kiwi, no encoder here."""
    from rag.index.backend import FileBackend
    from rag.index.store import load_index

    _, tokens, vectors = _questions(qfile)
    base = S.proc_status()
    index = load_index(S.synthetic_settings(size, seed).index_dir)
    loaded = S.proc_status()
    backend, open_s = (FileBackend(index), 0.0) if backend_name == "files" else _connect_milvus(size, seed, index)
    for toks, vec in zip(tokens, vectors):
        backend.sparse_search(toks, 50)
        backend.dense_search(vec, 50)
    out = {"backend": backend_name, "open_s": round(open_s, 2), "base": _mib(base), "loaded": _mib(loaded),
           "searched": _mib(S.proc_status()), "server": _children()}
    backend.close()
    return out


def _parity(pairs: list[tuple[list, list]]) -> dict:
    """Share of questions whose top-10 rows are identical in order; the same up to ties (rank
    by rank the scores agree within TIE, and so do the scores of rows in both lists: rows may
    differ only where scores tie, e.g. duplicate synthetic chunks); the max |score difference|."""
    same = tied = 0
    diff = 0.0
    for a, b in pairs:
        same += [r for r, _ in a] == [r for r, _ in b]
        da, db = dict(a), dict(b)
        d = max([abs(sa - sb) for (_, sa), (_, sb) in zip(a, b)] + [abs(da[r] - db[r]) for r in da.keys() & db.keys()],
                default=0.0)
        tied += len(a) == len(b) and d <= TIE
        diff = max(diff, d)
    n = max(len(pairs), 1)
    return {"identical": round(same / n, 4), "same_up_to_ties": round(tied / n, 4), "max_abs_diff": diff}


def child_search(size: int, seed: int, repeats: int, qfile: Path) -> dict:
    from rag.index.backend import FileBackend
    from rag.index.store import load_index
    from rag.search.retriever import Retriever

    questions, tokens, vectors = _questions(qfile)
    index = load_index(S.synthetic_settings(size, seed).index_dir)
    analyzer, emb = _analyzer(), FixedEmbedder(questions, vectors)
    milvus, reopen_s = _connect_milvus(size, seed, index)
    backends = {"files": FileBackend(index), "milvus": milvus}
    retr = {n: Retriever(index, analyzer, emb, {}, backend=b) for n, b in backends.items()}
    depth = retr["files"].fusion.depth
    for q in questions[:10]:  # warm-up: Kiwi, the index's pages, the server's segments
        for r in retr.values():
            for mode in MODES:
                r.search(q, K, mode)
    data = {n: {s: [] for s in ("sparse", "dense", *(f"e2e_{m}" for m in MODES))} for n in backends}
    tops: dict = {n: {"sparse": [], "dense": [], "hybrid": []} for n in backends}
    top = lambda d: sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:K]
    load_before = [round(x, 2) for x in os.getloadavg()]
    t_run = time.perf_counter()
    for rep in range(repeats):
        for i, q in enumerate(questions):
            for name in (("files", "milvus") if i % 2 == 0 else ("milvus", "files")):  # alternate who goes first
                b, r, d = backends[name], retr[name], data[name]
                t0 = time.perf_counter()
                sp = b.sparse_search(tokens[i], depth)
                t1 = time.perf_counter()
                de = b.dense_search(vectors[i], depth)
                d["sparse"].append((t1 - t0) * 1e3)
                d["dense"].append((time.perf_counter() - t1) * 1e3)
                for mode in MODES:
                    t0 = time.perf_counter()
                    res = r.search(q, K, mode)
                    d[f"e2e_{mode}"].append((time.perf_counter() - t0) * 1e3)
                if rep == 0:  # res: the hybrid search
                    tops[name]["sparse"].append(top(sp))
                    tops[name]["dense"].append(top(de))
                    tops[name]["hybrid"].append([(row, p.score) for row, p in zip(res.rows, res.passages)])
    out = {"n_chunks": len(index.chunks), "questions": len(questions), "repeats": repeats, "depth": depth,
           "reopen_s": round(reopen_s, 2), "run_s": round(time.perf_counter() - t_run, 1), "load_before": load_before,
           "load_after": [round(x, 2) for x in os.getloadavg()],
           "stats": {n: {s: S.summary(v) for s, v in d.items()} for n, d in data.items()},
           "parity": {s: _parity(list(zip(tops["files"][s], tops["milvus"][s]))) for s in tops["files"]}}
    milvus.close()
    return out


def encode_questions(limit: int | None, log=print) -> Path:
    """Every question analysed and encoded once, one at a time as the retriever does."""
    from rag.config import Settings
    from rag.embed.encoder import Embedder
    from rag.index.spec import BuildSpec
    from rag.query.checks import check_question

    qs = [check_question(q["question"]) for q in S.questions()][:limit]
    settings = Settings()
    emb, analyzer = Embedder(settings.model, settings.cache_dir, use_prefixes=BuildSpec().use_prefixes), _analyzer()
    t0 = time.perf_counter()
    vectors = np.stack([emb.encode_queries([q])[0] for q in qs]).astype(np.float32)
    tokens = [json.dumps(analyzer.tokenize(q), ensure_ascii=False) for q in qs]
    log(f"encoded and analysed {len(qs)} questions in {time.perf_counter() - t0:.1f} s")
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(QFILE, questions=np.array(qs), tokens=np.array(tokens), vectors=vectors)
    return QFILE


def run(sizes: list[int], repeats: int, seed: int, limit: int | None, notes: str = "", log=print) -> dict:
    from rag.index.store import published_build

    result: dict = {"machine": S.machine_info(), "command": " ".join(["python", "benchmarks/bench_milvus.py", *sys.argv[1:]]),
                    "repeats": repeats, "k": K, "notes": notes, "results": {}}
    qfile = encode_questions(limit, log)
    for size in sizes:
        st, common, r = S.synthetic_settings(size, seed), ["--size", str(size), "--seed", str(seed)], {}
        if not (st.index_dir / "current").exists():
            log(f"no synthetic index for {size}: building it (bench_build.py's build) …")
            r["build"] = b = S.run_child([HERE, "--child", "build", *common])
            log(f"  {b['n_chunks']:,} chunks in {b['build_s']} s ({b['pool_fallback_embedded']} distinct texts "
                f"embedded by the real model)")
        log(f"{size}: milvus-lite connect + sync of every row (progress in {WORK / 'progress.log'}) …")
        r["sync"] = sy = S.run_child([HERE, "--child", "sync", *common])
        log(f"  {sy['n_chunks']:,} rows in {sy['sync_s']} s ({sy['rows_per_s']:,} rows/s; Kiwi {sy['kiwi_s']} s of it)")
        r["mem"] = mem = {b: S.run_child([HERE, "--child", "mem", "--backend", b, "--qfile", str(qfile), *common])
                          for b in ("files", "milvus")}
        log(f"  RSS files {mem['files']['searched']['VmRSS']} MiB; milvus Python {mem['milvus']['searched']['VmRSS']} "
            f"MiB + server {sum(c['rss_mib'] for c in mem['milvus']['server'])} MiB")
        log(f"{size}: search timings ({repeats} pass(es), load {S.load_average()[0]:.2f}) …")
        r["search"] = se = S.run_child([HERE, "--child", "search", "--repeats", str(repeats), "--qfile", str(qfile), *common])
        r["disk"] = {"index_mib": _disk_mib(published_build(st.index_dir)),
                     "milvus_mib": _disk_mib(Path(_milvus_settings(size, seed).milvus_uri).parent)}
        result["results"][str(size)] = r
        s = se["stats"]
        log("  " + ", ".join(f"{k} p50 files {s['files'][k]['p50']:.2f} / milvus {s['milvus'][k]['p50']:.2f} ms"
                             for k in ("sparse", "dense", "e2e_hybrid")) + f"; parity {se['parity']}")
    result["load_average_end"] = [round(x, 2) for x in S.load_average()]
    return result


STAGES = {"sparse": "sparse_search (engine)", "dense": "dense_search (engine)", "e2e_bm25": "search bm25 (end to end)",
          "e2e_dense": "search dense (end to end)", "e2e_hybrid": "search hybrid (end to end)"}


def render(result: dict) -> tuple[str, str]:
    """(the latency table, the report section)."""
    from rag.index.milvus import UPSERT_BATCH

    rows, other = [], []
    for r in result["results"].values():
        se, sy, mem, p = r["search"], r["sync"], r["mem"], r["search"]["parity"]
        for key, label in STAGES.items():
            f, m = se["stats"]["files"][key], se["stats"]["milvus"][key]
            rows.append([f"{se['n_chunks']:,}", label, f["p50"], f["p95"], m["p50"], m["p95"],
                         S.ratio(m["p50"], f["p50"]), S.ratio(m["p95"], f["p95"])])
        other.append([f"{sy['n_chunks']:,}", sy["sync_s"], sy["kiwi_s"], f"{sy['rows_per_s']:,.0f}",
                      se["reopen_s"], mem["files"]["searched"]["VmRSS"], mem["milvus"]["searched"]["VmRSS"],
                      sum(c["rss_mib"] for c in mem["milvus"]["server"]), r["disk"]["index_mib"], r["disk"]["milvus_mib"],
                      *(f"{p[k]['identical']:.1%} / {p[k]['same_up_to_ties']:.1%} / {p[k]['max_abs_diff']:.1e}"
                        for k in ("sparse", "dense", "hybrid"))])
    head = ["chunks", "stage", "files p50", "files p95", "milvus p50", "milvus p95", "ratio p50", "ratio p95"]
    table, m = S.md_table(head, rows), result["machine"]
    first = next(iter(result["results"].values()))["search"]
    loads = "; ".join(f"{size}: {r['search']['load_before'][0]} → {r['search']['load_after'][0]}"
                      for size, r in result["results"].items())
    side = S.md_table(["chunks", "sync s", "of it Kiwi s", "rows/s", "reopen s", "files RSS MiB", "milvus Python RSS MiB",
                       "milvus-lite server RSS MiB", "index on disk MiB", "milvus-lite db MiB", "sparse parity",
                       "dense parity", "hybrid parity"], other)
    body = f"""### Milvus backend (milvus-lite) vs files

Command: `{result['command']}` — {m['date']}, {m['cores']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, pymilvus
{S._dist_version('pymilvus')}, milvus-lite {S._dist_version('milvus-lite')}, faiss-cpu {m['faiss']}, bm25s {m['bm25s']}. 1-min load
average over each timed loop (start → end): {loads}; other jobs shared these 2 cores, so timings are noisy.

milvus-lite is a functional stand-in running the real engine in one local process; its figures are not a cluster's.

Synthetic indexes (see "How the synthetic corpora are made"; the pool fallback, now mostly answer lines, embedded once
per distinct text), {first['questions']} questions of evaluation/qa.jsonl × {first['repeats']} pass(es), both backends in one
process alternating question by question, each question encoded and analysed once up front so both get the same vector
and tokens (no encoder in these times). Engine rows: `sparse_search`/`dense_search` at depth {first['depth']}; end to end:
`Retriever.search`, k = {K} (Kiwi on the question, remembered by the retriever after the bm25 row, then both
searches, fusion, passages). Milvus: FLAT/IP dense and
SPARSE_INVERTED_INDEX/IP sparse over gRPC to the milvus-lite server process; files: faiss FlatIP and bm25s in process.

{table}

Sync: `connect` + `sync` into a fresh file (sparse weights of every chunk, vocabulary, upserts of {UPSERT_BATCH}
rows, flush; *Kiwi s* is its time in the analyser). Reopen: `connect` to the synced file in a fresh process (server start, collection load). RSS: after
loading and searching every question once, in a fresh process without Kiwi or the encoder; the milvus Python process
still loads the index (answers and the question's IDF need it) and the db sits beside the index folder. Parity of the
top-10 rows: identical in order / identical up to ties (|Δ| ≤ {TIE}) / max |score difference| rank by rank.

{side}

{result.get('notes', '')}
"""
    return table, body


def write_report(body: str) -> None:
    """Append (or replace) this subsection at the end of the bench block, keeping the rest."""
    text = S.REPORT.read_text(encoding="utf-8") if S.REPORT.exists() else ""
    current = text.split(S.BENCH_START, 1)[1].split(S.BENCH_END, 1)[0] if S.BENCH_START in text else ""
    current = re.sub(rf"\s*{re.escape(MARK_START)}.*?{re.escape(MARK_END)}", "", current, flags=re.DOTALL).strip()
    S.write_report_section(f"{current}\n\n{MARK_START}\n{body.strip()}\n{MARK_END}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["10000", "100000"], help="synthetic sizes in chunks")
    ap.add_argument("--repeats", type=int, default=1, help="passes over the question set")
    ap.add_argument("--seed", type=int, default=S.SEED)
    ap.add_argument("--limit", type=int, help="use only the first N questions (smoke runs)")
    ap.add_argument("--no-report", action="store_true", help="do not touch benchmarks/report.md")
    ap.add_argument("--notes", default="", help="free text added to the report section")
    ap.add_argument("--render-only", action="store_true", help="rewrite the report from benchmarks/out/bench_milvus.json")
    ap.add_argument("--child", choices=["build", "sync", "mem", "search"], help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=["files", "milvus"], help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--qfile", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return S.emit({"build": lambda: child_build(args.size, args.seed), "sync": lambda: child_sync(args.size, args.seed),
                       "mem": lambda: child_mem(args.size, args.seed, args.backend, args.qfile),
                       "search": lambda: child_search(args.size, args.seed, args.repeats, args.qfile)}[args.child]())
    if args.render_only:
        result = {**S.load_json("bench_milvus"), **({"notes": args.notes} if args.notes else {})}
    else:
        sizes = [int(s) for arg in args.sizes for s in arg.split(",") if s.strip()]
        result = run(sizes, args.repeats, args.seed, args.limit, args.notes)
    print(f"wrote {S.save_json('bench_milvus', result)}")
    table, body = render(result)
    print(table)
    if not args.no_report:
        write_report(body)
        print(f"updated {S.REPORT}")


if __name__ == "__main__":
    main()
