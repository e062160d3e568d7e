"""Baselines measured in the same process as the thing they are compared with.

Usage::

    python benchmarks/bench_baselines.py                    # bm25 at real/10k/50k, faiss at 10k/50k/100k
    python benchmarks/bench_baselines.py --bm25-sizes real --faiss-sizes 2000   # smoke run

* **rank-bm25 vs bm25s** on the same tokens: the chunks' Kiwi tokens exactly as the index
  build produced them (real corpus: re-analysed; synthetic: recorded by bench_build.py),
  indexed by ``rank_bm25.BM25Okapi`` and by our :class:`rag.index.sparse.SparseIndex`
  (bm25s, loaded memory-mapped from the built index); every question's tokens scored by
  both, interleaved, plus a top-50 selection. Ratio = rank-bm25 / bm25s.
* **faiss flat vs HNSW**: the built index's vectors in an exact ``IndexFlatIP`` and in the
  HNSW graph :class:`rag.index.dense.DenseIndex` builds (loaded from the index when the
  build chose HNSW, else built here), searched for every question's vector at depth 50
  (the hybrid fusion depth), interleaved. Recall@10 / @50 of HNSW against exact search,
  and how often the *hybrid* top-10 differs when the flat index replaces HNSW; a
  score-aware recall@10 (a hit counts when it scores at least the exact 10th score, so
  near-duplicate chunks are not counted as misses); an efSearch sweep; and exact search
  through faiss directly with its default OpenMP threads (``flat_faiss_threads``) next to
  ``DenseIndex.search`` (one thread per query).

Results: ``benchmarks/out/bench_baselines.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic as S  # noqa: E402

DEPTH = 50


def _settings(target: str, seed: int):
    return S.real_settings() if target == "real" else S.synthetic_settings(int(target), seed)


def child_bm25(target: str, seed: int, limit: int | None) -> dict:
    from rank_bm25 import BM25Okapi

    from rag.index.sparse import BM25Params, SparseIndex
    from rag.index.store import load_index
    from rag.text.korean import get_analyzer

    settings = _settings(target, seed)
    index = load_index(settings.index_dir)
    analyzer = get_analyzer()
    if target == "real":
        tokens = analyzer.tokenize_many([c.index_text for c in index.chunks])
    else:
        path = settings.index_dir.parent / "tokens.tsv"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench_build.py for {target}")
        tokens = S.read_tokens(path)
    if len(tokens) != len(index.chunks):
        raise SystemExit(f"{len(tokens)} token lists for {len(index.chunks)} chunks: rebuild {target}")
    params = BM25Params(**index.manifest["spec"]["bm25"])
    t0 = time.perf_counter()
    ours_mem = SparseIndex.build(tokens, params)
    bm25s_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = BM25Okapi([t or [""] for t in tokens], k1=params.k1, b=params.b)
    rank_build = time.perf_counter() - t0
    ours = index.sparse  # the production artifact, memory-mapped
    qtoks = [analyzer.tokenize(q["question"]) for q in S.questions()[:limit]]
    # the same scores as the in-memory build (sanity)
    assert np.allclose(ours.scores(qtoks[0]), ours_mem.scores(qtoks[0]), atol=1e-5)
    for q in qtoks[:5]:  # warm-up
        ours.scores(q)
        ref.get_scores(q)
    t_ours, t_ref, top1, overlap = [], [], 0, []
    for q in qtoks:
        t = time.perf_counter()
        s = ours.scores(q)
        a = np.argsort(-s, kind="stable")[:DEPTH]
        t_ours.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        r = np.asarray(ref.get_scores(q))
        b = np.argsort(-r, kind="stable")[:DEPTH]
        t_ref.append((time.perf_counter() - t) * 1e3)
        top1 += int(a[0] == b[0])
        overlap.append(len(set(a[:10]) & set(b[:10])) / 10)
    so, sr = S.summary(t_ours), S.summary(t_ref)
    return {
        "target": target, "n_chunks": len(tokens), "questions": len(qtoks),
        "mean_tokens_per_chunk": round(sum(map(len, tokens)) / len(tokens), 1),
        "vocab": len(ours._model.vocab_dict),
        "bm25s": so, "rank_bm25": sr,
        "ratio_p50": S.ratio(sr["p50"], so["p50"]), "ratio_p95": S.ratio(sr["p95"], so["p95"]),
        "build_s": {"bm25s": round(bm25s_build, 3), "rank_bm25": round(rank_build, 3)},
        "top1_agree": round(top1 / len(qtoks), 3), "top10_overlap": round(float(np.mean(overlap)), 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def child_faiss(target: str, seed: int, limit: int | None) -> dict:
    import faiss

    from rag.index.dense import DenseIndex
    from rag.search.retriever import Retriever

    settings = _settings(target, seed)
    r = Retriever.open(settings)
    index = r.index
    vectors = np.ascontiguousarray(np.asarray(index.vectors, dtype=np.float32))
    qs = [q["question"] for q in S.questions()[:limit]]
    qv = r.embedder.encode_queries(qs)
    t0 = time.perf_counter()
    flat = DenseIndex.build(vectors, "flat")
    flat_build = time.perf_counter() - t0
    if isinstance(index.dense._index, faiss.IndexHNSW):
        hnsw, hnsw_build, hnsw_source = index.dense, None, "built index (memory-mapped)"
    else:
        t0 = time.perf_counter()
        hnsw = DenseIndex.build(vectors, "hnsw")
        hnsw_build, hnsw_source = time.perf_counter() - t0, "built here"
    ef = int(hnsw._index.hnsw.efSearch)
    raw_flat = flat._index  # faiss itself, with its default OpenMP threads (no per-call pinning)
    for v in qv[:5]:
        flat.search(v, DEPTH)
        hnsw.search(v, DEPTH)
        raw_flat.search(v.reshape(1, -1), DEPTH)
    t_flat, t_flat_omp, t_hnsw, rec10, rec50, rec10_score = [], [], [], [], [], []
    exact = []
    for v in qv:
        t = time.perf_counter()
        fr, fs = flat.search(v, DEPTH)
        t_flat.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        raw_flat.search(v.reshape(1, -1), DEPTH)
        t_flat_omp.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        hr, hs = hnsw.search(v, DEPTH)
        t_hnsw.append((time.perf_counter() - t) * 1e3)
        exact.append((fr, fs))
        rec10.append(len(set(fr[:10]) & set(hr[:10])) / 10)
        rec50.append(len(set(fr[:DEPTH]) & set(hr[:DEPTH])) / DEPTH)
        # near-duplicate chunks tie: a hit scoring at least the exact 10th score counts
        rec10_score.append(float(np.mean(hs[:10] >= fs[9] - 1e-6)) if len(fs) >= 10 else 1.0)
    # recall / latency trade-off of efSearch on the same graph
    sweep = {}
    params = faiss.SearchParametersHNSW()
    for ef_s in (64, 128, 256, 512):
        params.efSearch = ef_s
        ts, rc = [], []
        for v, (fr, _) in zip(qv, exact):
            t = time.perf_counter()
            _, hi = hnsw._index.search(v.reshape(1, -1), DEPTH, params=params)
            ts.append((time.perf_counter() - t) * 1e3)
            rc.append(len(set(fr[:10]) & set(hi[0][:10])) / 10)
        sweep[str(ef_s)] = {"p50_ms": round(float(np.percentile(ts, 50)), 3), "recall_at_10": round(float(np.mean(rc)), 4)}
    # the ranking users see: hybrid top-10 with HNSW vs with exact search
    same = 0
    original = index.dense
    for q in qs:
        index.dense = hnsw
        a = [p.chunk_id for p in r.search(q, 10, "hybrid").passages]
        index.dense = flat
        b = [p.chunk_id for p in r.search(q, 10, "hybrid").passages]
        same += int(a == b)
    index.dense = original
    sf, sh = S.summary(t_flat), S.summary(t_hnsw)
    return {
        "target": target, "n_chunks": len(vectors), "questions": len(qs), "depth": DEPTH,
        "hnsw": {"M": int(hnsw._index.hnsw.nb_neighbors(1)), "efSearch": ef, "source": hnsw_source,
                 "build_s": None if hnsw_build is None else round(hnsw_build, 2)},
        "flat_build_s": round(flat_build, 3), "flat": sf, "hnsw_lat": sh, "flat_faiss_threads": S.summary(t_flat_omp),
        "recall_at_10_score": round(float(np.mean(rec10_score)), 4), "ef_sweep": sweep,
        "ratio_p50": S.ratio(sf["p50"], sh["p50"]), "ratio_p95": S.ratio(sf["p95"], sh["p95"]),
        "recall_at_10": round(float(np.mean(rec10)), 4), "recall_at_50": round(float(np.mean(rec50)), 4),
        "min_recall_at_10": round(float(np.min(rec10)), 2),
        "hybrid_top10_identical": round(same / len(qs), 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run(bm25_sizes: list[str], faiss_sizes: list[str], seed: int, limit: int | None = None, log=print) -> dict:
    here = str(Path(__file__).resolve())
    out: dict = {"machine": S.machine_info(), "bm25": {}, "faiss": {}}
    extra = ["--seed", str(seed)] + (["--limit", str(limit)] if limit else [])
    for t in bm25_sizes:
        log(f"rank-bm25 vs bm25s at {t} …")
        r = S.run_child([here, "--child", "bm25", "--target", t, *extra])
        out["bm25"][t] = r
        log(f"  bm25s p50 {r['bm25s']['p50']:.2f} ms, rank-bm25 p50 {r['rank_bm25']['p50']:.2f} ms "
            f"(×{r['ratio_p50']}); top-1 agree {r['top1_agree']}")
    for t in faiss_sizes:
        log(f"faiss flat vs HNSW at {t} …")
        r = S.run_child([here, "--child", "faiss", "--target", t, *extra])
        out["faiss"][t] = r
        log(f"  flat p50 {r['flat']['p50']:.2f} ms, HNSW p50 {r['hnsw_lat']['p50']:.2f} ms (×{r['ratio_p50']}); "
            f"recall@10 {r['recall_at_10']}, hybrid top-10 identical {r['hybrid_top10_identical']}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bm25-sizes", default="real,10000,50000")
    ap.add_argument("--faiss-sizes", default="10000,50000,100000")
    ap.add_argument("--seed", type=int, default=S.SEED)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--child", choices=["bm25", "faiss"], help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "bm25":
        return S.emit(child_bm25(args.target, args.seed, args.limit))
    if args.child == "faiss":
        return S.emit(child_faiss(args.target, args.seed, args.limit))
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    out = run(split(args.bm25_sizes), split(args.faiss_sizes), args.seed, args.limit)
    print(f"wrote {S.save_json('bench_baselines', out)}")


if __name__ == "__main__":
    main()
