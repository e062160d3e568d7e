"""Build, publish, validate and load the on-disk index.

Layout of ``index/``::

    current -> builds/<build-id>      (symlink, swapped atomically)
    builds/<build-id>/manifest.json   (what built it: corpus hashes, chunker, analyzer, model)
                      chunks.jsonl    (one Chunk per line)
                      docs.json       (document metadata)
                      bm25/           (bm25s arrays, memory-mapped on load)
                      dense.faiss     (faiss index)
                      vectors.npy     (embeddings, reused by later builds for unchanged chunks)
    .lock                             (held by the one process that is building)

A build writes a fresh folder, verifies it loads, and only then points ``current`` at it,
so a crash at any moment leaves either the old index or the new one, never half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..chunking import CHUNKER_VERSION, ChunkingConfig, chunk_document
from ..config import DEFAULT_EMBED_BATCH, Settings
from ..corpus import Document, corpus_fingerprint, load_corpus
from ..types import Chunk
from .dense import DenseIndex
from .sparse import BM25Params, SparseIndex

INDEX_FORMAT = 1
MANIFEST = "manifest.json"
REQUIRED_FILES = ("manifest.json", "chunks.jsonl", "docs.json", "dense.faiss", "vectors.npy", "bm25")

#: ``progress(stage, advance, total)``: the faces turn this into a progress bar.
Progress = Callable[[str, int, int], None]


class IndexError_(RuntimeError):
    """Base of index problems; messages are one line and say what to do."""


class IndexMissingError(IndexError_):
    pass


class IndexCorruptError(IndexError_):
    pass


class IndexBusyError(IndexError_):
    pass


@dataclass(frozen=True)
class AnalyzerSpec:
    mode: str = "morph"  # "morph" (Kiwi) | "whitespace" (ablation baseline)
    normalize: bool = True


@dataclass(frozen=True)
class BuildSpec:
    """Everything that shapes the artifacts; any change makes an index stale."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    analyzer: AnalyzerSpec = field(default_factory=AnalyzerSpec)
    bm25: BM25Params = field(default_factory=BM25Params)
    use_prefixes: bool = True
    dense_kind: str = "auto"

    def describe(self, model: str) -> dict:
        from ..korean import analyzer_fingerprint

        return {
            "chunker_version": CHUNKER_VERSION,
            "chunking": asdict(self.chunking),
            "analyzer": {**asdict(self.analyzer), "fingerprint": analyzer_fingerprint()},
            "bm25": asdict(self.bm25),
            "model": model,
            "use_prefixes": self.use_prefixes,
            "dense_kind": self.dense_kind,
        }


@dataclass
class LoadedIndex:
    """A published build, ready to search; rows of every artifact line up with ``chunks``."""

    path: Path | None  # None for an in-memory build
    manifest: dict
    chunks: list[Chunk]
    docs: dict[str, dict]
    sparse: SparseIndex
    dense: DenseIndex
    vectors: np.ndarray

    @property
    def model(self) -> str:
        return self.manifest["spec"]["model"]


# ---------------------------------------------------------------------------- paths & lock


def _current(index_dir: Path) -> Path:
    return index_dir / "current"


@contextmanager
def build_lock(index_dir: Path, wait: bool = False, timeout: float = 600.0) -> Iterator[None]:
    """Exclusive right to build; a second writer fails fast (or waits, for readers)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or time.monotonic() > deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "?"
                    raise IndexBusyError(
                        f"another process (pid {holder}) is building the index in {index_dir}; try again when it finishes"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- load & status


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_digests(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[str(p.relative_to(folder))] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    return out


def read_manifest(index_dir: Path) -> dict | None:
    """The published build's manifest, or None when nothing is published."""
    path = _current(index_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise IndexCorruptError(f"index manifest {path} is unreadable ({exc}); run `rag index build`") from exc


def load_index(index_dir: Path, verify: bool = False) -> LoadedIndex:
    """Open the published build, checking it is complete and self-consistent.

    ``verify`` also re-hashes every artifact against the manifest (slower; `index status`).
    """
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(f"no index in {index_dir}; run `rag index build`")
    folder = _current(index_dir).resolve()
    bad = lambda why: IndexCorruptError(f"index in {folder} is corrupt: {why}; run `rag index build`")  # noqa: E731
    if manifest.get("format") != INDEX_FORMAT:
        raise bad(f"format {manifest.get('format')} (expected {INDEX_FORMAT})")
    for name in REQUIRED_FILES:
        if not (folder / name).exists():
            raise bad(f"{name} is missing")
    for name, info in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != info["bytes"]:
            raise bad(f"{name} has the wrong size")
        if verify and _sha256(p) != info["sha256"]:
            raise bad(f"{name} does not match its checksum")
    try:
        chunks = [Chunk.from_dict(json.loads(line)) for line in
                  (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
        docs = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
        spec = manifest["spec"]
        sparse = SparseIndex.load(folder / "bm25", BM25Params(**spec["bm25"]))
        dense = DenseIndex.load(folder / "dense.faiss")
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    except Exception as exc:  # any parse or load failure means the same thing to the user
        raise bad(f"{type(exc).__name__}: {exc}") from exc
    n = len(chunks)
    if not (n == sparse.size == dense.size == len(vectors) == manifest.get("n_chunks")):
        raise bad(f"artifact sizes disagree (chunks {n}, bm25 {sparse.size}, faiss {dense.size}, vectors {len(vectors)})")
    return LoadedIndex(folder, manifest, chunks, docs, sparse, dense, vectors)


def stale_reasons(manifest: dict, settings: Settings, spec: BuildSpec, docs: list[Document] | None = None) -> list[str]:
    """Why a built index no longer matches the corpus and settings (empty: up to date)."""
    docs = load_corpus(settings.corpus_dir) if docs is None else docs
    reasons = []
    built, now = manifest.get("corpus", {}), corpus_fingerprint(docs)
    for doc_id in sorted(set(built) | set(now)):
        if doc_id not in now:
            reasons.append(f"document {doc_id} was removed")
        elif doc_id not in built:
            reasons.append(f"document {doc_id} was added")
        elif built[doc_id] != now[doc_id]:
            reasons.append(f"document {doc_id} changed")
    want = spec.describe(settings.model)
    for key, value in want.items():
        if manifest.get("spec", {}).get(key) != json.loads(json.dumps(value)):
            reasons.append(f"{key} changed")
    return reasons


def index_status(settings: Settings, spec: BuildSpec = BuildSpec(), verify: bool = False) -> dict:
    """What is built and whether it is stale, as a JSON-able dict."""
    status: dict = {"index_dir": str(settings.index_dir), "built": False, "stale": True, "reasons": []}
    try:
        index = load_index(settings.index_dir, verify=verify)
    except IndexMissingError as exc:
        status["reasons"] = [str(exc)]
        return status
    except IndexCorruptError as exc:
        status["reasons"] = [str(exc)]
        status["corrupt"] = True
        return status
    m = index.manifest
    reasons = stale_reasons(m, settings, spec)
    sizes = {name: info["bytes"] for name, info in m["files"].items()}
    status.update(
        built=True, stale=bool(reasons), reasons=reasons, build=index.path.name,
        created=m["created"], model=m["spec"]["model"], documents=len(m["corpus"]),
        chunks=m["n_chunks"], build_seconds=m.get("build_seconds"), bytes=sum(sizes.values()),
        bytes_per_chunk={k: round(v / max(m["n_chunks"], 1), 1) for k, v in _group_sizes(sizes).items()},
    )
    return status


def _group_sizes(sizes: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, n in sizes.items():
        key = name.split("/", 1)[0]
        out[key] = out.get(key, 0) + n
    return out


# ---------------------------------------------------------------------------- build


def text_key(chunk: Chunk, use_prefixes: bool) -> str:
    """Identity of a chunk's embedding: its indexed text and whether prefixes were used."""
    return hashlib.sha256(f"{int(use_prefixes)}\0{chunk.index_text}".encode("utf-8")).hexdigest()


def previous_vectors(index_dir: Path, model: str, use_prefixes: bool) -> dict[str, np.ndarray]:
    """Embeddings of the published build, by chunk text, when it used the same model."""
    try:
        old = load_index(index_dir)
    except IndexError_:
        return {}
    if old.model != model or old.manifest["spec"]["use_prefixes"] != use_prefixes:
        return {}
    return {text_key(c, use_prefixes): np.array(old.vectors[i]) for i, c in enumerate(old.chunks)}


def chunk_corpus(docs: list[Document], cfg: ChunkingConfig, count_tokens: Callable[[str], int] | None) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d.doc_id, d.text, cfg, count_tokens)]


def build_in_memory(docs: list[Document], spec: BuildSpec, embedder, analyzer, progress: Progress | None = None,
                    reuse: dict[str, np.ndarray] | None = None, batch_size: int = DEFAULT_EMBED_BATCH) -> LoadedIndex:
    """Chunk, analyse, embed and index ``docs`` without touching disk (``path`` is None).

    ``reuse`` maps :func:`text_key` → vector; chunks found there are not embedded again.
    The evaluation's ablations build their variants this way.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, advance, total: None)
    report("chunk", 0, len(docs))
    chunks = chunk_corpus(docs, spec.chunking, lambda t: embedder.token_count(t))
    report("chunk", len(docs), len(docs))

    report("analyse", 0, len(chunks))
    tokens = analyzer.tokenize_many([c.index_text for c in chunks])
    report("analyse", len(chunks), len(chunks))

    reuse = reuse or {}
    keys = [text_key(c, spec.use_prefixes) for c in chunks]
    todo = [i for i, k in enumerate(keys) if k not in reuse]
    vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    for i, k in enumerate(keys):
        if k in reuse:
            vectors[i] = reuse[k]
    report("embed", len(chunks) - len(todo), len(chunks))
    if todo:
        vectors[todo] = embedder.encode_passages([chunks[i].index_text for i in todo], batch_size=batch_size,
                                                 progress=lambda n: report("embed", n, len(chunks)))
    manifest = {
        "format": INDEX_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "corpus": corpus_fingerprint(docs),
        "spec": spec.describe(embedder.model_id),
        "n_chunks": len(chunks),
        "reembedded": len(todo),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return LoadedIndex(
        path=None, manifest=manifest, chunks=chunks, docs={d.doc_id: d.meta() for d in docs},
        sparse=SparseIndex.build(tokens, spec.bm25), dense=DenseIndex.build(vectors, spec.dense_kind), vectors=vectors,
    )


def build_index(settings: Settings, spec: BuildSpec = BuildSpec(), progress: Progress | None = None,
                embedder=None, analyzer=None) -> LoadedIndex:
    """Build every artifact from the corpus and publish it atomically.

    Vectors of chunks whose indexed text is unchanged since the published build are
    reused, so changing one document re-embeds only that document's chunks.
    """
    from ..embedding import Embedder
    from ..korean import get_analyzer

    started = time.perf_counter()
    index_dir = settings.index_dir
    with build_lock(index_dir):
        docs = load_corpus(settings.corpus_dir)
        if not docs:
            raise IndexError_(f"the corpus in {settings.corpus_dir} lists no documents")
        embedder = embedder or Embedder(settings.model, settings.cache_dir, use_prefixes=spec.use_prefixes)
        analyzer = analyzer or get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
        built = build_in_memory(docs, spec, embedder, analyzer, progress,
                                reuse=previous_vectors(index_dir, embedder.model_id, spec.use_prefixes),
                                batch_size=settings.embed_batch)
        builds = index_dir / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        build_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp = builds / f".tmp-{build_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
                for c in built.chunks:
                    fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
            (tmp / "docs.json").write_text(json.dumps(built.docs, ensure_ascii=False, indent=1), encoding="utf-8")
            built.sparse.save(tmp / "bm25")
            built.dense.save(tmp / "dense.faiss")
            np.save(tmp / "vectors.npy", built.vectors)
            manifest = {**built.manifest, "build_seconds": round(time.perf_counter() - started, 2),
                        "files": _file_digests(tmp)}
            _write_atomic(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
            _fsync_tree(tmp)
            final = builds / build_id
            os.rename(tmp, final)
            _publish(index_dir, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _prune(index_dir)
    return load_index(index_dir)


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_suffix(path.suffix + ".part")
    with open(part, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _publish(index_dir: Path, build: Path) -> None:
    """Point ``current`` at ``build`` with one rename: readers see old or new, never neither."""
    link = index_dir / f".current-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path("builds") / build.name, link)
    os.replace(link, _current(index_dir))
    dir_fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _prune(index_dir: Path) -> None:
    """Remove builds other than the current one and the one before (and stale temp dirs)."""
    current = _current(index_dir).resolve().name
    builds = sorted((index_dir / "builds").iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    keep = {current}
    for p in builds:
        if not p.name.startswith(".tmp-") and p.name != current:
            keep.add(p.name)
            break
    for p in builds:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def ensure_index(settings: Settings, spec: BuildSpec = BuildSpec(), progress: Progress | None = None,
                 notice: Callable[[str], None] | None = None, embedder=None, analyzer=None,
                 docs: list[Document] | None = None) -> LoadedIndex:
    """The published index, built first when missing, corrupt or stale (``notice`` says why)."""
    try:
        index = load_index(settings.index_dir)
        reasons = stale_reasons(index.manifest, settings, spec, docs)
        if not reasons:
            return index
        why = "index is stale (" + "; ".join(reasons[:3]) + ")"
    except IndexMissingError:
        why = "no index yet"
    except IndexCorruptError as exc:
        why = str(exc).split(";")[0]
    if notice:
        notice(f"{why}: building it now")
    try:
        return build_index(settings, spec, progress, embedder=embedder, analyzer=analyzer)
    except IndexBusyError:
        with build_lock(settings.index_dir, wait=True):
            pass  # the other builder finished; use its result
        return load_index(settings.index_dir)
