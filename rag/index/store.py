"""The on-disk index: its layout, the build lock, loading with checks, staleness, status,
and the atomic publish of a finished build (:mod:`rag.index.build` makes the builds).

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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from rag.config import Settings
from rag.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMissingError,
)
from rag.index.dense import DenseIndex
from rag.index.line_vectors import LineTable
from rag.index.sparse import BM25Params, SparseIndex
from rag.index.spec import (
    INDEX_FORMAT,
    MANIFEST,
    REQUIRED_FILES,
    BuildSpec,
    LoadedIndex,
)
from rag.ingest.corpus import Document, corpus_fingerprint, load_corpus
from rag.types import Chunk

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
                        f"다른 프로세스(pid {holder})가 {index_dir}에서 색인을 만들고 있습니다; 끝난 뒤 다시 시도하세요"
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


def file_digests(folder: Path) -> dict[str, dict]:
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
        raise IndexCorruptError(f"색인 매니페스트를 읽을 수 없습니다: {path} ({exc}); `rag index build`로 다시 만드세요") from exc


def load_index(index_dir: Path, verify: bool = False) -> LoadedIndex:
    """Open the published build, checking it is complete and self-consistent.

    ``verify`` also re-hashes every artifact against the manifest (slower; `index status`).
    """
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(f"색인이 없습니다: {index_dir}; `rag index build`로 만드세요")
    folder = _current(index_dir).resolve()
    bad = lambda why: IndexCorruptError(f"색인이 손상되었습니다: {folder} ({why}); `rag index build`로 다시 만드세요")  # noqa: E731
    if manifest.get("format") != INDEX_FORMAT:
        raise IndexCorruptError(f"색인이 다른 형식으로 만들어졌습니다: {folder} (형식 {manifest.get('format')}, "
                                f"이 버전의 형식 {INDEX_FORMAT}); `rag index build`로 다시 만드세요")
    for name in REQUIRED_FILES:
        if not (folder / name).exists():
            raise bad(f"{name} 파일이 없습니다")
    for name, info in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != info["bytes"]:
            raise bad(f"{name} 파일의 크기가 맞지 않습니다")
        if verify and _sha256(p) != info["sha256"]:
            raise bad(f"{name} 파일의 체크섬이 맞지 않습니다")
    try:
        chunks = [Chunk.from_dict(json.loads(line)) for line in
                  (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
        docs = json.loads((folder / "docs.json").read_text(encoding="utf-8"))
        spec = manifest["spec"]
        sparse = SparseIndex.load(folder / "bm25", BM25Params(**spec["bm25"]))
        dense = DenseIndex.load(folder / "dense.faiss")
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        lines = LineTable.load(folder)
    except Exception as exc:  # any parse or load failure means the same thing to the user
        raise bad(f"{type(exc).__name__}: {exc}") from exc
    n = len(chunks)
    if not (n == sparse.size == dense.size == len(vectors) == manifest.get("n_chunks")):
        raise bad(f"산출물 크기가 서로 다릅니다: chunks {n}, bm25 {sparse.size}, faiss {dense.size}, vectors {len(vectors)}")
    if len(lines) != len(lines.vectors) or len(lines) != manifest.get("n_lines"):
        raise bad(f"줄 벡터 수가 맞지 않습니다: 키 {len(lines)}, 벡터 {len(lines.vectors)}")
    return LoadedIndex(folder, manifest, chunks, docs, sparse, dense, vectors, lines)


def stale_reasons(manifest: dict, settings: Settings, spec: BuildSpec, docs: list[Document] | None = None) -> list[str]:
    """Why a built index no longer matches the corpus and settings (empty: up to date)."""
    docs = load_corpus(settings.corpus_dir) if docs is None else docs
    reasons = []
    built, now = manifest.get("corpus", {}), corpus_fingerprint(docs)
    for doc_id in sorted(set(built) | set(now)):
        if doc_id not in now:
            reasons.append(f"문서 {doc_id} 삭제됨")
        elif doc_id not in built:
            reasons.append(f"문서 {doc_id} 추가됨")
        elif built[doc_id] != now[doc_id]:
            reasons.append(f"문서 {doc_id} 변경됨")
    want = spec.describe(settings.model)
    for key, value in want.items():
        if manifest.get("spec", {}).get(key) != json.loads(json.dumps(value)):
            reasons.append(f"설정 {key} 변경됨")
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




def fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def publish(index_dir: Path, build: Path) -> None:
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


def prune(index_dir: Path) -> None:
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


