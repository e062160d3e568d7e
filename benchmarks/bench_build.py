"""Index build time and peak memory at each size; incremental update of one document.

Usage::

    python benchmarks/bench_build.py                       # real corpus + 10k/50k/100k
    python benchmarks/bench_build.py --sizes 2000 --skip-real   # a quick smoke run

Every build runs in a fresh child process (``--child …``) so that its peak RSS
(``ru_maxrss``) and its import/model-load costs are its own. What is measured:

* **real corpus**, from an empty index folder: ``rag index build`` wall time (fresh
  process, imports included) and, in an instrumented child, the stages of
  :func:`rag.index.build.build_index` (chunk, Kiwi analysis, embedding, BM25, faiss,
  write, checksums, verify-load) and peak RSS; the real passage-embedding throughput;
* **incremental update**: one document of a copy of the corpus is changed and the index
  rebuilt; the manifest's ``reembedded`` count is checked against the chunks whose
  indexed text is new (all of which must belong to the changed document); plus a rebuild
  with nothing changed;
* **synthetic 10k/50k/100k**: the same ``build_index`` over a synthetic corpus (see
  ``synthetic.py``) with :class:`PoolEmbedder` standing in for passage embedding; build
  time is reported as measured and extrapolated to the real model's throughput;
* after each build, a fresh child loads the index and reports RSS after load (anonymous
  vs file-backed), which artifacts are memory-mapped, and bytes per chunk per artifact
  (``rag index status --json``).

Results: ``benchmarks/out/bench_build.json`` (``run_all.py`` renders the report).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic as S  # noqa: E402

CHANGED_DOC = "003"  # the news article; a line in its first and in its last chunk is edited


# ----------------------------------------------------------------------------- instrumentation


class StageClock:
    """Times the stages of build_index by wrapping the real functions it calls."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.spans: dict[str, float] = {}
        self.calls: dict[str, list[float]] = {}

    def progress(self, stage: str, advance: int, total: int) -> None:
        now = time.perf_counter()
        self.marks.setdefault(f"{stage}:first", now)
        self.marks[f"{stage}:last"] = now

    def wrap(self, owner, name: str, label: str, static: bool = False) -> None:
        fn = getattr(owner, name)
        func = getattr(fn, "__func__", fn)
        spans, calls = self.spans, self.calls

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                spans[label] = spans.get(label, 0.0) + dt
                calls.setdefault(label, []).append(dt)

        if isinstance(owner, type) and hasattr(fn, "__func__"):
            setattr(owner, name, classmethod(timed))
        else:
            setattr(owner, name, timed)

    def install(self) -> None:
        import rag.index.build as store
        from rag.index.dense import DenseIndex
        from rag.index.sparse import SparseIndex

        self.wrap(store, "load_corpus", "load corpus")
        self.wrap(store, "previous_vectors", "read previous vectors")
        self.wrap(store, "chunk_corpus", "chunk")
        self.wrap(SparseIndex, "build", "bm25 index")
        self.wrap(DenseIndex, "build", "faiss index")
        self.wrap(SparseIndex, "save", "write bm25")
        self.wrap(DenseIndex, "save", "write faiss")
        self.wrap(store, "file_digests", "checksums")
        self.wrap(store, "fsync_tree", "fsync")
        self.wrap(store, "load_index", "verify-load")

    def stages(self, analyse_s: float | None = None, embed_s: float | None = None) -> dict[str, float]:
        out = dict(self.spans)
        if "verify-load" in self.calls:  # previous_vectors loads the old index too: keep the last call
            out["verify-load"] = self.calls["verify-load"][-1]
        m = self.marks
        if analyse_s is None and "analyse:first" in m and "embed:first" in m:
            analyse_s = m["embed:first"] - m["analyse:first"]
        if analyse_s is not None:
            out["kiwi analysis"] = analyse_s
        if embed_s is None and "embed:first" in m:
            embed_s = m["embed:last"] - m["embed:first"]
        if embed_s is not None:
            out["embed"] = embed_s
        return {k: round(v, 3) for k, v in out.items()}


# ----------------------------------------------------------------------------- children


def child_real_build(index_dir: Path, corpus_dir: Path) -> dict:
    """A full build from nothing (fresh process): stages, throughput, peak RSS."""
    t_start = time.perf_counter()
    import rag.index.build as store
    from rag.config import Settings

    t_import = time.perf_counter() - t_start
    from rag.embed.encoder import Embedder

    settings = Settings().with_(corpus_dir=corpus_dir, index_dir=index_dir)
    clock = StageClock()
    clock.install()
    t0 = time.perf_counter()
    emb = Embedder(settings.model, settings.cache_dir)  # what build_index would make itself
    index = store.build_index(settings, progress=clock.progress, embedder=emb)
    build_s = time.perf_counter() - t0
    m = index.manifest
    peak = S.peak_rss_mib()
    # real passage-embedding throughput, warm: the build's model, already loaded
    texts = [c.index_text for c in index.chunks]
    t1 = time.perf_counter()
    emb.encode_passages(texts)
    warm = time.perf_counter() - t1
    chars = sum(map(len, texts)) / max(len(texts), 1)
    return {
        "n_chunks": m["n_chunks"], "reembedded": m["reembedded"], "build_seconds_manifest": m["build_seconds"],
        "build_s": round(build_s, 2), "import_s": round(t_import, 2), "stages": clock.stages(),
        "peak_rss_mib": peak, "embed_throughput_per_s": round(len(texts) / warm, 2),
        "embed_warm_s": round(warm, 2), "mean_index_chars": round(chars, 1),
        "process_s": round(time.perf_counter() - t_start, 2),
    }


def _keys(index) -> dict[str, str]:
    from rag.index.build import text_key

    return {text_key(c, index.manifest["spec"]["use_prefixes"]): c.doc_id for c in index.chunks}


def child_incremental(index_dir: Path, corpus_dir: Path, change: bool) -> dict:
    """Change one document (or nothing) and rebuild; which chunks were embedded again?"""
    t_start = time.perf_counter()
    import rag.index.build as store
    from rag.config import Settings
    from rag.ingest.corpus import load_manifest

    settings = Settings().with_(corpus_dir=corpus_dir, index_dir=index_dir)
    old = store.load_index(index_dir)
    old_keys = _keys(old)
    old_doc_chunks = sum(1 for c in old.chunks if c.doc_id == CHANGED_DOC)
    edits = []
    if change:
        # edit one line inside the document's first chunk and one inside its last chunk
        entry = next(e for e in load_manifest(corpus_dir) if e["id"] == CHANGED_DOC)
        path = corpus_dir / entry["file"]
        from rag.ingest.corpus import read_text

        text = read_text(path)
        doc_chunks = [c for c in old.chunks if c.doc_id == CHANGED_DOC]
        for c in sorted({doc_chunks[0], doc_chunks[-1]}, key=lambda c: -c.start):  # back to front: offsets hold
            line = max((ln for ln in c.text.split("\n") if ln.strip()), key=len)
            at = text.index(line, c.start)
            text = text[:at] + line + " (개정)" + text[at + len(line):]
            edits.append(c.chunk_id)
        path.write_text(text, encoding="utf-8")
    clock = StageClock()
    clock.install()
    t0 = time.perf_counter()
    index = store.build_index(settings, progress=clock.progress)
    build_s = time.perf_counter() - t0
    new_keys = _keys(index)
    fresh = [doc for key, doc in new_keys.items() if key not in old_keys]
    import sys as _sys

    return {
        "changed": change, "doc": CHANGED_DOC if change else None, "edited_chunks": edits,
        "n_chunks": index.manifest["n_chunks"],
        "reembedded": index.manifest["reembedded"], "new_text_chunks": len(fresh),
        "new_text_docs": sorted(set(fresh)), "doc_chunks_before": old_doc_chunks,
        "doc_chunks_after": sum(1 for c in index.chunks if c.doc_id == CHANGED_DOC),
        "build_s": round(build_s, 2), "build_seconds_manifest": index.manifest["build_seconds"],
        "stages": clock.stages(), "peak_rss_mib": S.peak_rss_mib(),
        "torch_imported": "torch" in _sys.modules, "process_s": round(time.perf_counter() - t_start, 2),
    }


def child_synth_build(size: int, seed: int, regen: bool) -> dict:
    """Write (if needed) and index a synthetic corpus of about ``size`` chunks."""
    t_start = time.perf_counter()
    import rag.index.build as store
    from rag.embed.encoder import Embedder
    from rag.text.korean import get_analyzer, get_kiwi

    settings = S.synthetic_settings(size, seed)
    write_s = None
    if regen or not (settings.corpus_dir / "manifest.json").exists():
        t = time.perf_counter()
        S.write_synthetic_corpus(size, settings.corpus_dir, seed, log=lambda m: print(m, file=sys.stderr))
        write_s = round(time.perf_counter() - t, 2)
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    real = Embedder(settings.model, settings.cache_dir)
    vectors = S.pool_vectors(real, log=lambda m: print(m, file=sys.stderr))
    emb = S.PoolEmbedder(real, vectors)
    get_kiwi()
    analyzer = S.RecordingAnalyzer(get_analyzer())
    clock = StageClock()
    clock.install()
    rss_before = S.proc_status()["VmRSS"] / 1024
    t0 = time.perf_counter()
    index = store.build_index(settings, progress=clock.progress, embedder=emb, analyzer=analyzer)
    build_s = time.perf_counter() - t0
    peak = S.peak_rss_mib()
    m = index.manifest
    tokens_path = settings.index_dir.parent / "tokens.tsv"
    if analyzer.last is not None:
        S.save_tokens(analyzer.last, tokens_path)
    stages = clock.stages(analyse_s=analyzer.seconds, embed_s=emb.seconds)
    return {
        "size": size, "seed": seed, "n_chunks": m["n_chunks"], "documents": len(m["corpus"]),
        "corpus_write_s": write_s, "build_s": round(build_s, 2), "build_seconds_manifest": m["build_seconds"],
        "stages": stages, "pool_embed_s": round(emb.seconds, 2), "peak_rss_mib": peak,
        "rss_before_build_mib": round(rss_before, 1),
        "pool_lines_seen": emb.lines_seen, "pool_lines_missed": emb.lines_missed,
        "pool_fallback_texts": emb.fallback_texts, "pool_fallback_embedded": emb.fallback_embedded,
        "mean_index_chars": round(sum(len(c.index_text) for c in index.chunks) / max(len(index.chunks), 1), 1),
        "dense_kind": type(index.dense._index).__name__,
        "process_s": round(time.perf_counter() - t_start, 2),
    }


def child_load(index_dir: Path, corpus_dir: Path) -> dict:
    """RSS after loading the published index, and which artifacts are memory-mapped."""
    t_start = time.perf_counter()
    import rag.index.build as store

    t_imp = time.perf_counter()
    base = S.proc_status()
    t0 = time.perf_counter()
    index = store.load_index(index_dir)
    load_s = time.perf_counter() - t0
    after = S.proc_status()
    folder = index.path
    mapped = [str(Path(p).relative_to(folder)) for p in S.mapped_files(folder)]
    # touch every artifact once (one BM25 query and one faiss search), then measure again
    import numpy as np

    q = np.asarray(index.vectors[0], dtype=np.float32)
    index.dense.search(q, 50)
    index.sparse.scores(list(index.sparse._model.vocab_dict)[:3])
    touched = S.proc_status()
    return {
        "n_chunks": len(index.chunks), "load_s": round(load_s, 3), "import_s": round(t0 - t_imp, 3),
        "rss_before_mib": round(base["VmRSS"] / 1024, 1),
        "rss_after_load_mib": round(after["VmRSS"] / 1024, 1),
        "anon_after_load_mib": round(after["RssAnon"] / 1024, 1),
        "file_after_load_mib": round(after["RssFile"] / 1024, 1),
        "rss_after_query_mib": round(touched["VmRSS"] / 1024, 1),
        "delta_anon_mib": round((after["RssAnon"] - base["RssAnon"]) / 1024, 1),
        "delta_file_mib": round((after["RssFile"] - base["RssFile"]) / 1024, 1),
        "mapped": mapped,
        "bm25_mmapped": any(p.startswith("bm25/") for p in mapped),
        "faiss_mmapped": "dense.faiss" in mapped,
        "vectors_mmapped": "vectors.npy" in mapped,
        "dense_kind": type(index.dense._index).__name__,
        "process_s": round(time.perf_counter() - t_start, 2),
    }


# ----------------------------------------------------------------------------- parent


def index_status_cli(settings) -> dict:
    """``rag index status --json`` for ``settings``' folders (bytes per chunk per artifact)."""
    rag = Path(sys.executable).with_name("rag")
    cmd = [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli.main"]
    proc = subprocess.run([*cmd, "index", "status", "--json"], capture_output=True, text=True,
                          env={**os.environ, **S.env_for(settings)}, cwd=S.ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), "{}")
    return json.loads(line)


def _cli_build_wall(settings) -> float:
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    rag = Path(sys.executable).with_name("rag")
    t0 = time.perf_counter()
    subprocess.run([str(rag), "index", "build"], check=True, capture_output=True,
                   env={**os.environ, **S.env_for(settings)}, cwd=S.ROOT)
    return round(time.perf_counter() - t0, 2)


def run(sizes: list[int], seed: int, skip_real: bool = False, regen: bool = False, log=print) -> dict:
    here = str(Path(__file__).resolve())
    result: dict = {"machine": S.machine_info(), "sizes": sizes, "seed": seed}
    if not skip_real:
        settings = S.real_settings()
        log("real corpus: `rag index build` from an empty index (fresh process) …")
        result["real_cli_build_wall_s"] = _cli_build_wall(settings)
        log(f"  {result['real_cli_build_wall_s']} s")
        # a private copy for the instrumented build and the incremental update
        base = S.OUT / "real-build"
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(settings.corpus_dir, base / "corpus")
        args = ["--index-dir", str(base / "index"), "--corpus-dir", str(base / "corpus")]
        log("real corpus: instrumented full build …")
        result["real_build"] = S.run_child([here, "--child", "real-build", *args])
        log(f"  {result['real_build']['build_s']} s, peak RSS {result['real_build']['peak_rss_mib']} MiB, "
            f"{result['real_build']['embed_throughput_per_s']} passages/s warm")
        log("real corpus: rebuild with nothing changed …")
        result["real_nochange"] = S.run_child([here, "--child", "incremental", "--no-change", *args])
        log(f"  reembedded {result['real_nochange']['reembedded']} in {result['real_nochange']['build_s']} s")
        log(f"real corpus: change document {CHANGED_DOC} and rebuild …")
        result["real_incremental"] = S.run_child([here, "--child", "incremental", *args])
        inc = result["real_incremental"]
        log(f"  reembedded {inc['reembedded']} (new-text chunks {inc['new_text_chunks']}, docs {inc['new_text_docs']}, "
            f"doc has {inc['doc_chunks_after']} chunks) in {inc['build_s']} s")
        result["real_load"] = S.run_child([here, "--child", "load", "--index-dir", str(settings.index_dir),
                                          "--corpus-dir", str(settings.corpus_dir)])
        result["real_status"] = index_status_cli(settings)
    result["synthetic"] = {}
    for size in sizes:
        log(f"synthetic {size:,}: build …")
        b = S.run_child([here, "--child", "synth-build", "--size", str(size), "--seed", str(seed),
                         *(["--regen"] if regen else [])])
        st = S.synthetic_settings(size, seed)
        load = S.run_child([here, "--child", "load", "--index-dir", str(st.index_dir),
                            "--corpus-dir", str(st.corpus_dir)])
        status = index_status_cli(st)
        result["synthetic"][str(size)] = {"build": b, "load": load, "status": status}
        log(f"  {b['n_chunks']:,} chunks in {b['build_s']} s (pool stand-in {b['pool_embed_s']} s), "
            f"peak RSS {b['peak_rss_mib']} MiB; RSS after load {load['rss_after_load_mib']} MiB")
    thr = result.get("real_build", {}).get("embed_throughput_per_s") or (S.load_json("bench_build") or {}).get(
        "real_build", {}).get("embed_throughput_per_s")
    if thr:
        for size, r in result["synthetic"].items():
            b = r["build"]
            b["extrapolated_real_embed_s"] = round(b["n_chunks"] / thr, 1)
            b["extrapolated_real_build_s"] = round(b["build_s"] - b["pool_embed_s"] + b["n_chunks"] / thr, 1)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, S.SIZES)), help="synthetic sizes in chunks, comma-separated ('' for none)")
    ap.add_argument("--seed", type=int, default=S.SEED)
    ap.add_argument("--skip-real", action="store_true", help="skip the real-corpus builds")
    ap.add_argument("--regen", action="store_true", help="rewrite the synthetic corpora even if present")
    ap.add_argument("--child", choices=["real-build", "incremental", "synth-build", "load"], help=argparse.SUPPRESS)
    ap.add_argument("--no-change", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--index-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--corpus-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "real-build":
        shutil.rmtree(args.index_dir, ignore_errors=True)
        return S.emit(child_real_build(args.index_dir, args.corpus_dir))
    if args.child == "incremental":
        return S.emit(child_incremental(args.index_dir, args.corpus_dir, change=not args.no_change))
    if args.child == "synth-build":
        return S.emit(child_synth_build(args.size, args.seed, args.regen))
    if args.child == "load":
        return S.emit(child_load(args.index_dir, args.corpus_dir))
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result = run(sizes, args.seed, skip_real=args.skip_real, regen=args.regen)
    path = S.save_json("bench_build", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
