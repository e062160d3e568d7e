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
Every load re-hashes every artifact against the sha256 its manifest recorded (2-5 ms
for the bundled corpus's 2.3 MB), so flipped bytes are never served: a damaged build is
treated like a stale one and rebuilt, or refused in one line when the folder cannot take a
new build. A folder or file at ``current`` that is not a link is never overwritten.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from rag.config import Settings
from rag.errors import (
    IndexBusyError,
    IndexChecksumError,
    IndexCorruptError,
    IndexMissingError,
    IndexWriteError,
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

# ---------------------------------------------------------------------------- paths & errors


def _current(index_dir: Path) -> Path:
    return index_dir / "current"


_WRITE_REASONS = {
    errno.EACCES: "쓸 권한이 없습니다",
    errno.EPERM: "쓸 권한이 없습니다",
    errno.EROFS: "읽기 전용 파일 시스템입니다",
    errno.ENOSPC: "디스크 공간이 부족합니다",
    errno.EDQUOT: "디스크 할당량을 넘었습니다",
    errno.EEXIST: "폴더를 만들 자리에 다른 것이 있습니다",
    errno.ENOTDIR: "경로 중간에 폴더가 아닌 것이 있습니다",
}


def write_error(index_dir: Path, exc: OSError) -> IndexWriteError:
    """One line for an OS error met while writing a build: why, and what to do."""
    reason = _WRITE_REASONS.get(exc.errno or 0) or str(exc.strerror or exc)
    where = f": {exc.filename}" if exc.filename and str(exc.filename) != str(index_dir) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = "공간을 비운 뒤 다시 실행하세요"
    else:
        todo = "쓰기 권한을 주거나 RAG_INDEX_DIR로 쓸 수 있는 폴더를 지정하세요"
    return IndexWriteError(f"색인 폴더 {index_dir}에 쓸 수 없습니다 ({reason}{where}); 지금 색인은 그대로 두었으니 {todo}")


def foreign_current(index_dir: Path) -> str | None:
    """What sits at ``current`` when it is not a link (a folder or file that is not ours)."""
    link = _current(index_dir)
    if link.is_symlink() or not os.path.lexists(link):
        return None
    return "폴더" if link.is_dir() else "파일"


def check_publishable(index_dir: Path) -> None:
    """Refuse early, before any work, when a build could not be published: the folder is
    not writable, or ``current`` is a folder or file that a build must not overwrite."""
    kind = foreign_current(index_dir)
    if kind:
        raise IndexWriteError(f"{_current(index_dir)}이(가) 빌드를 가리키는 링크가 아니라 {kind}입니다; "
                              f"지우지 않고 그대로 두었으니 다른 곳으로 옮긴 뒤 다시 실행하세요")
    probe = Path(index_dir)
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    for folder in (probe, index_dir / "builds"):
        if not os.path.lexists(folder):
            continue
        if not folder.is_dir():
            raise write_error(index_dir, OSError(errno.ENOTDIR, "not a directory", str(folder)))
        if not os.access(folder, os.W_OK | os.X_OK):
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
            code = errno.EROFS if read_only else errno.EACCES
            raise write_error(index_dir, OSError(code, os.strerror(code), str(folder)))


@contextmanager
def build_lock(index_dir: Path, wait: bool = False, timeout: float = 600.0) -> Iterator[None]:
    """Exclusive right to build; a second writer fails fast (or waits, for readers)."""
    with ExitStack() as stack:
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
            fh = stack.enter_context(open(index_dir / ".lock", "a+"))
        except OSError as exc:
            raise write_error(index_dir, exc) from exc
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
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
        except OSError as exc:
            fcntl.flock(fh, fcntl.LOCK_UN)
            raise write_error(index_dir, exc) from exc
        try:
            yield
        finally:
            try:
                fh.seek(0)
                fh.truncate()
            except OSError:
                pass  # the pid is only a hint for the busy message
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


def published_build(index_dir: Path) -> Path:
    """The build folder ``current`` points at; :class:`IndexMissingError` when nothing is
    published, :class:`IndexCorruptError` when ``current`` is not a link to a build."""
    link = _current(index_dir)
    try:
        kind = foreign_current(index_dir)
        if kind:
            raise IndexCorruptError(f"색인 폴더의 {link}이(가) 빌드를 가리키는 링크가 아니라 {kind}입니다; "
                                    f"다른 곳으로 옮긴 뒤 `rag index build`로 다시 만드세요")
        if not link.is_symlink():
            raise IndexMissingError(f"색인이 없습니다: {index_dir}; `rag index build`로 만드세요")
        folder = link.resolve()
        if not folder.is_dir():
            raise IndexCorruptError(f"색인이 손상되었습니다: {link}이(가) 없는 빌드 {folder}를 가리킵니다; "
                                    f"`rag index build`로 다시 만드세요")
    except OSError as exc:
        raise IndexCorruptError(f"색인 폴더를 읽을 수 없습니다: {link} ({exc.strerror or exc}); "
                                f"`rag index build`로 다시 만드세요") from exc
    return folder


def manifest_of(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorruptError(f"색인이 손상되었습니다: {folder} ({MANIFEST} 파일이 없습니다); "
                                f"`rag index build`로 다시 만드세요") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise IndexCorruptError(f"색인 매니페스트를 읽을 수 없습니다: {path} ({exc}); `rag index build`로 다시 만드세요") from exc
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"색인 매니페스트를 읽을 수 없습니다: {path} (객체가 아닙니다); `rag index build`로 다시 만드세요")
    return manifest


def verified(folder: Path, manifest: dict, names: tuple[str, ...]) -> bool:
    """Whether each of ``names`` is listed in the manifest with its size and sha256, and
    the file in ``folder`` still has both."""
    files = manifest.get("files")
    try:
        return isinstance(files, dict) and all(
            name in files and (folder / name).is_file()
            and (folder / name).stat().st_size == files[name]["bytes"]
            and _sha256(folder / name) == files[name]["sha256"]
            for name in names)
    except (OSError, KeyError, TypeError):
        return False


def read_chunks(folder: Path) -> list[Chunk]:
    return [Chunk.from_dict(json.loads(line)) for line in
            (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]


def read_manifest(index_dir: Path) -> dict | None:
    """The published build's manifest, or None when nothing is published."""
    try:
        folder = published_build(index_dir)
    except IndexMissingError:
        return None
    return manifest_of(folder)


def load_index(index_dir: Path, verify: bool = True) -> LoadedIndex:
    """Open the published build, checking it is complete and self-consistent and that
    every artifact still has the sha256 its build recorded (a few ms for this corpus).

    ``verify=False`` skips only the hashing; it is for tools that measure loading itself.
    """
    return load_build(published_build(index_dir), verify=verify)


def load_build(folder: Path, verify: bool = True) -> LoadedIndex:
    """Open one build folder with the checks of :func:`load_index`."""
    folder = folder.resolve()
    manifest = manifest_of(folder)
    bad = lambda why: IndexCorruptError(f"색인이 손상되었습니다: {folder} ({why}); `rag index build`로 다시 만드세요")  # noqa: E731
    if manifest.get("format") != INDEX_FORMAT:
        raise IndexCorruptError(f"색인이 다른 형식으로 만들어졌습니다: {folder} (형식 {manifest.get('format')}, "
                                f"이 버전의 형식 {INDEX_FORMAT}); `rag index build`로 다시 만드세요")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise bad("매니페스트에 파일 목록이 없습니다")
    for name in REQUIRED_FILES:
        if not (folder / name).exists():
            raise bad(f"{name} 파일이 없습니다")
        if name not in (MANIFEST, "bm25") and name not in files:
            raise bad(f"매니페스트에 {name} 파일의 체크섬이 없습니다")
    if not any(name.startswith("bm25/") for name in files):
        raise bad("매니페스트에 bm25 파일의 체크섬이 없습니다")
    for name, info in files.items():
        p = folder / name
        try:
            if not p.is_file() or p.stat().st_size != info["bytes"]:
                raise bad(f"{name} 파일의 크기가 맞지 않습니다")
            if verify and _sha256(p) != info["sha256"]:
                raise IndexChecksumError(f"색인이 손상되었습니다: {folder} ({name} 파일의 체크섬이 맞지 않습니다); "
                                         f"`rag index build`로 다시 만드세요", name)
        except OSError as exc:
            raise bad(f"{name} 파일을 읽을 수 없습니다: {exc.strerror or exc}") from exc
        except (KeyError, TypeError) as exc:
            raise bad(f"매니페스트의 {name} 항목이 잘못되었습니다") from exc
    try:
        chunks = read_chunks(folder)
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


def index_status(settings: Settings, spec: BuildSpec = BuildSpec(), verify: bool = True) -> dict:
    """What is built, whether it is stale and whether its checksums match, as a JSON-able
    dict (``checksums``: ``ok`` with ``checksum_files``, or ``mismatch`` with ``checksum_mismatch``)."""
    status: dict = {"index_dir": str(settings.index_dir), "built": False, "stale": True, "reasons": []}
    try:
        index = load_index(settings.index_dir, verify=verify)
    except IndexMissingError as exc:
        status["reasons"] = [str(exc)]
        return status
    except IndexCorruptError as exc:
        status["reasons"] = [str(exc)]
        status["corrupt"] = True
        if isinstance(exc, IndexChecksumError):
            status.update(checksums="mismatch", checksum_mismatch=exc.file)
        return status
    m = index.manifest
    reasons = stale_reasons(m, settings, spec)
    sizes = {name: info["bytes"] for name, info in m["files"].items()}
    status.update(
        built=True, stale=bool(reasons), reasons=reasons, build=index.path.name,
        created=m["created"], model=m["spec"]["model"], documents=len(m["corpus"]),
        chunks=m["n_chunks"], build_seconds=m.get("build_seconds"), bytes=sum(sizes.values()),
        bytes_per_chunk={k: round(v / max(m["n_chunks"], 1), 1) for k, v in _group_sizes(sizes).items()},
        checksums="ok" if verify else "unchecked", checksum_files=len(sizes),
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


def points_to(index_dir: Path, build: Path) -> bool:
    """Whether ``current`` is the link to ``build``."""
    try:
        return os.readlink(_current(index_dir)) == str(Path("builds") / build.name)
    except OSError:
        return False


def publish(index_dir: Path, build: Path) -> None:
    """Point ``current`` at ``build`` with one rename: readers see old or new, never neither.

    A folder or file at ``current`` that is not a link is never replaced (it is not ours).
    """
    check_publishable(index_dir)
    link = index_dir / f".current-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path("builds") / build.name, link)
    try:
        os.replace(link, _current(index_dir))
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    dir_fd = os.open(index_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def remove_orphans(index_dir: Path) -> None:
    """Remove what killed builds left: ``builds/.tmp-*`` folders and ``.current-*`` links.
    Call it holding :func:`build_lock`: no other builder can be writing them then."""
    for p in [*index_dir.glob(".current-*"), *(index_dir / "builds").glob(".tmp-*")]:
        _remove(p)


def prune(index_dir: Path) -> None:
    """Remove builds other than the current one and the one before, and orphans of killed
    builds (under :func:`build_lock`; best effort: a failure here never fails a build)."""
    try:
        current = _current(index_dir).resolve().name
        builds = sorted((index_dir / "builds").iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
    except OSError:
        return
    keep = {current}
    for p in builds:
        if not p.name.startswith(".tmp-") and p.name != current and p.is_dir() and not p.is_symlink():
            keep.add(p.name)
            break
    for p in builds:
        if p.name not in keep:
            _remove(p)
    remove_orphans(index_dir)
