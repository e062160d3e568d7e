"""Faults of the on-disk index, on a real small index: nothing wrong is ever served.

Flipped bytes in any artifact are caught on load (checksums), reported by ``index status``
and rebuilt from the parts that still verify; damaged vectors are never carried into the
next build; a folder that cannot take a build (read-only, full disk, a foreign object at
``current``) gives one Korean line and leaves the published index as it was, with no
half-written build behind; orphans of killed builds go at the next build. Every served
passage is checked against its document, and results are compared with a clean build's.

Only OS calls are patched (to play a full disk, a read-only folder for root); the index
itself is always real. One build is made per module and copied for each test.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import make_small_corpus, run_rag

from rag.errors import IndexChecksumError, IndexCorruptError, IndexWriteError
from rag.index import store
from rag.index.build import build_index, ensure_index
from rag.index.line_vectors import LINE_VECTORS, LineTable, unit_rows
from rag.index.store import index_status, load_index
from rag.ingest.corpus import load_corpus
from rag.search.retriever import Retriever

QUESTIONS = (
    "K-뿌리산업 첨단화 전략은 어디에서 발표됐어?",
    "뿌리 신산업 새싹기업은 몇 개를 육성해?",
    "스마트 뿌리공장 구축 지원으로 에너지 사용량을 얼마나 줄였어?",
)
MODES = ("hybrid", "bm25", "dense")
BM25_FILE = "bm25/data.csc.index.npy"
IS_ROOT = os.geteuid() == 0


@dataclass
class Clean:
    settings: object
    build: str  # the build folder's name
    results: dict
    vectors: np.ndarray
    line_vectors: np.ndarray
    n_chunks: int
    n_lines: int


def served(index, settings, analyzer, embedder) -> dict:
    """(question, mode) → [(chunk_id, start, end, score)]; every passage is checked to be
    exactly its document's text at its offsets (the contract a wrong index would break)."""
    doc_texts = {d.doc_id: d.text for d in load_corpus(settings.corpus_dir)}
    retriever = Retriever(index, analyzer, embedder, doc_texts)
    out = {}
    for q in QUESTIONS:
        for mode in MODES:
            passages = retriever.search(q, k=5, mode=mode).passages
            assert passages, (q, mode)
            for p in passages:
                assert p.text == doc_texts[p.doc_id][p.start:p.end], (q, mode, p.chunk_id)
            out[(q, mode)] = [(p.chunk_id, p.start, p.end, p.score) for p in passages]
    return out


def assert_same_results(got: dict, want: dict, atol: float = 1e-4) -> None:
    assert got.keys() == want.keys()
    for key, expected in want.items():
        assert [g[:3] for g in got[key]] == [w[:3] for w in expected], key
        np.testing.assert_allclose([g[3] for g in got[key]], [w[3] for w in expected], atol=atol, err_msg=str(key))


def tree(index_dir: Path) -> dict[str, str]:
    """Everything in the index folder (the lock's pid aside): path → link target or size."""
    out = {}
    for p in sorted(index_dir.rglob("*")):
        rel = str(p.relative_to(index_dir))
        if rel == ".lock":
            continue
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else ("dir" if p.is_dir() else str(p.stat().st_size))
    return out


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


def flip(path: Path, at: int | None = None, n: int = 4) -> None:
    """Change ``n`` bytes in the middle of ``path``, keeping its size (a bad sector, a bad copy)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    for i in range(at, at + n):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def shift_an_offset(path: Path) -> None:
    """Change one digit of a chunk's ``start``: still valid JSON, but the wrong text."""
    data = path.read_bytes()
    i = data.index(b'"start": ', len(data) // 2) + len(b'"start": ')
    digit = data[i] - ord("0")
    path.write_bytes(data[:i] + str((digit + 1) % 10).encode() + data[i + 1:])


@pytest.fixture(scope="module")
def clean(tmp_path_factory, settings, embedder, analyzer) -> Clean:
    folder = tmp_path_factory.mktemp("faults")
    small = settings.with_(corpus_dir=make_small_corpus(folder / "corpus"), index_dir=folder / "index")
    index = build_index(small, embedder=embedder, analyzer=analyzer)
    return Clean(small, index.path.name, served(index, small, analyzer, embedder), np.array(index.vectors),
                 np.array(index.lines.vectors), len(index.chunks), len(index.lines))


@pytest.fixture()
def copy(clean, tmp_path):
    """A private copy of the clean corpus and index (``current`` stays a relative link)."""
    shutil.copytree(clean.settings.corpus_dir, tmp_path / "corpus")
    shutil.copytree(clean.settings.index_dir, tmp_path / "index", symlinks=True)
    return clean.settings.with_(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")


def make_stale(settings) -> tuple[Path, str]:
    path = next(settings.corpus_dir.glob("003_*.txt"))
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("4,000억원 규모의", "5,000억원 규모의"), encoding="utf-8")
    return path, text


# ---------------------------------------------------------------------------- checksums


def test_status_reports_the_checksums(copy, clean):
    status = index_status(copy)
    assert status["built"] and not status["stale"] and status["checksums"] == "ok"
    manifest = json.loads((copy.index_dir / "current" / "manifest.json").read_text(encoding="utf-8"))
    assert status["checksum_files"] == len(manifest["files"]) >= 10


@pytest.mark.parametrize("name", ["dense.faiss", BM25_FILE, "chunks.jsonl", "vectors.npy", LINE_VECTORS])
def test_flipped_bytes_are_never_served_and_are_rebuilt_from_what_verifies(copy, clean, name, embedder, analyzer):
    path = copy.index_dir / "current" / name
    size = path.stat().st_size
    shift_an_offset(path) if name == "chunks.jsonl" else flip(path)
    assert path.stat().st_size == size
    with pytest.raises(IndexChecksumError, match="체크섬") as caught:
        load_index(copy.index_dir)
    assert caught.value.file == name
    status = index_status(copy)
    assert status["corrupt"] and not status["built"]
    assert (status["checksums"], status["checksum_mismatch"]) == ("mismatch", name)

    notes = []
    fixed = ensure_index(copy, notice=notes.append, embedder=embedder, analyzer=analyzer)
    assert len(notes) == 1 and "체크섬" in one_line(notes[0]) and name in notes[0]
    assert fixed.path.name != clean.build
    # only what the damaged file held is embedded again; sound vectors are reused
    chunk_vectors_damaged = name in ("chunks.jsonl", "vectors.npy")
    assert fixed.manifest["reembedded"] == (clean.n_chunks if chunk_vectors_damaged else 0)
    assert fixed.manifest["reembedded_lines"] == (clean.n_lines if name == LINE_VECTORS else 0)
    np.testing.assert_allclose(np.asarray(fixed.vectors), clean.vectors, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fixed.lines.vectors), clean.line_vectors, atol=1e-5)
    again = load_index(copy.index_dir)
    assert again.path == fixed.path and index_status(copy)["checksums"] == "ok"
    assert_same_results(served(again, copy, analyzer, embedder), clean.results)


def test_damaged_vectors_that_still_match_their_checksums_are_embedded_again(copy, clean, embedder, analyzer):
    """Damage before hashing (memory, a bad copy that was re-hashed): the next build must
    not carry it on. Vectors that are not finite and unit-norm are embedded again."""
    folder = (copy.index_dir / "current").resolve()
    vectors = np.load(folder / "vectors.npy")
    vectors[1] = 3.8e27
    np.save(folder / "vectors.npy", vectors)
    lines = np.load(folder / LINE_VECTORS)
    lines[2] = np.nan
    lines[5] *= 1.01
    np.save(folder / LINE_VECTORS, lines)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = store.file_digests(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    assert index_status(copy)["checksums"] == "ok"  # the checksums cannot see this damage

    rebuilt = build_index(copy, embedder=embedder, analyzer=analyzer)
    assert (rebuilt.manifest["reembedded"], rebuilt.manifest["reembedded_lines"]) == (1, 2)
    assert unit_rows(rebuilt.vectors).all() and unit_rows(rebuilt.lines.vectors).all()
    np.testing.assert_allclose(np.asarray(rebuilt.vectors), clean.vectors, atol=1e-4)
    np.testing.assert_allclose(np.asarray(rebuilt.lines.vectors), clean.line_vectors, atol=1e-4)
    got = served(load_index(copy.index_dir), copy, analyzer, embedder)
    assert max(s for key in got if key[1] == "dense" for *_, s in got[key]) <= 1.0 + 1e-3
    assert_same_results(got, clean.results)


def test_unit_rows_and_reusable_leave_out_damaged_vectors():
    v = np.eye(6, 4, dtype=np.float32)
    v[4:] = v[0]
    v[1] = np.nan
    v[2] = 3.8e27
    v[3] *= 1.01
    v[5] *= 1.0005  # within the tolerance
    assert unit_rows(v).tolist() == [True, False, False, False, True, True]
    table = LineTable([("a", i) for i in range(6)], list("uvwxyz"), v)
    assert set(table.reusable()) == {"u", "y", "z"}


# ---------------------------------------------------------------------------- a folder that cannot take a build


@pytest.mark.parametrize("how", ["chmod", "access", "symlink"])
def test_read_only_folder_with_a_stale_index_is_refused_in_one_line(copy, clean, how, monkeypatch, embedder, analyzer):
    """``chmod -w index`` for real (not as root: root writes anyway), a read-only
    ``access()`` (found before any work) or the link swap refused (found at publishing)."""
    if how == "chmod" and IS_ROOT:
        pytest.skip("runs as root, which chmod -w does not stop (the access and symlink cases play it)")
    doc, text = make_stale(copy)
    before = tree(copy.index_dir)
    index_dir = str(copy.index_dir)
    if how == "chmod":
        os.chmod(copy.index_dir, 0o555)
    elif how == "access":
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(index_dir)
                            and mode & os.W_OK else real_access(p, mode, **kw))
    else:
        real_symlink = os.symlink

        def refuse(src, dst, *a, **kw):
            if str(dst).startswith(index_dir):
                raise PermissionError(errno.EACCES, "Permission denied", str(dst))
            return real_symlink(src, dst, *a, **kw)

        monkeypatch.setattr(os, "symlink", refuse)
    notes = []
    try:
        with pytest.raises(IndexWriteError) as caught:
            ensure_index(copy, notice=notes.append, embedder=embedder, analyzer=analyzer)
    finally:
        os.chmod(copy.index_dir, 0o755)
        monkeypatch.undo()
    message = one_line(str(caught.value))
    assert "최신이 아닙니다 (문서 003 변경됨)" in message and "쓸 수 없습니다" in message and "권한" in message
    assert len(notes) == (1 if how == "symlink" else 0)  # refused before any work where it can be seen
    assert tree(copy.index_dir) == before  # no new build, no temp folder, no stray link
    doc.write_text(text, encoding="utf-8")
    again = load_index(copy.index_dir)
    assert again.path.name == clean.build
    assert_same_results(served(again, copy, analyzer, embedder), clean.results)


@pytest.mark.parametrize("call, code, words", [("fsync", errno.ENOSPC, "디스크 공간이 부족합니다"),
                                               ("rename", errno.EROFS, "읽기 전용 파일 시스템입니다")])
def test_full_disk_or_read_only_while_writing_leaves_the_old_index(copy, clean, call, code, words, monkeypatch,
                                                                  embedder, analyzer):
    orphan = copy.index_dir / "builds" / ".tmp-20000101T000000-1-dead00"  # a killed build's leftovers
    orphan.mkdir()
    (orphan / "chunks.jsonl").write_text("{}\n", encoding="utf-8")
    before = tree(copy.index_dir)
    real = getattr(os, call)
    calls = []

    def fail(*args, **kw):
        calls.append(args)
        raise OSError(code, os.strerror(code), *([str(args[0])] if call == "rename" else []))

    monkeypatch.setattr(os, call, fail if call == "fsync" else
                        lambda src, dst, *a, **kw: fail(src) if ".tmp-" in str(src) else real(src, dst, *a, **kw))
    with pytest.raises(IndexWriteError) as caught:
        build_index(copy, embedder=embedder, analyzer=analyzer)
    monkeypatch.undo()
    assert calls and words in one_line(str(caught.value)) and "그대로 두었으니" in str(caught.value)
    after = tree(copy.index_dir)
    assert after == {k: v for k, v in before.items() if not k.startswith("builds/.tmp-")}
    assert not [p for p in (copy.index_dir / "builds").iterdir() if p.name.startswith(".tmp-")]
    again = load_index(copy.index_dir)
    assert again.path.name == clean.build
    assert_same_results(served(again, copy, analyzer, embedder), clean.results)


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_foreign_current_is_never_served_nor_overwritten(copy, clean, kind, embedder, analyzer):
    current = copy.index_dir / "current"
    current.unlink()
    if kind == "dir":
        current.mkdir()
        (current / "mine.txt").write_text("사용자 파일", encoding="utf-8")
    else:
        current.write_text("사용자 파일", encoding="utf-8")
    before = tree(copy.index_dir)
    with pytest.raises(IndexCorruptError, match="링크가 아니라"):
        load_index(copy.index_dir)
    assert index_status(copy)["corrupt"] is True
    notes = []
    for attempt in (lambda: ensure_index(copy, notice=notes.append, embedder=embedder, analyzer=analyzer),
                    lambda: build_index(copy, embedder=embedder, analyzer=analyzer)):
        with pytest.raises(IndexWriteError, match="옮긴 뒤") as caught:
            attempt()
        one_line(str(caught.value))
    assert notes == [] and tree(copy.index_dir) == before
    # moved away by the user, the published build is there as it was
    shutil.move(current, copy.index_dir.parent / "moved")
    os.symlink(Path("builds") / clean.build, current)
    assert_same_results(served(load_index(copy.index_dir), copy, analyzer, embedder), clean.results)


def test_next_build_removes_orphans_and_old_builds(copy, clean, embedder, analyzer):
    builds = copy.index_dir / "builds"
    (builds / ".tmp-20000101T000000-7-aaaaaa").mkdir()
    (builds / ".tmp-20000101T000000-7-aaaaaa" / "dense.faiss").write_bytes(b"x" * 10)
    (builds / ".tmp-20000101T000000-8-bbbbbb").write_bytes(b"")
    for old in ("19990101T000000-1-cccccc", "19990102T000000-1-dddddd"):
        (builds / old).mkdir()
        os.utime(builds / old, (1e9, 1e9))
    os.symlink(Path("builds") / clean.build, copy.index_dir / ".current-424242")
    new = build_index(copy, embedder=embedder, analyzer=analyzer)
    assert sorted(p.name for p in builds.iterdir()) == sorted([clean.build, new.path.name])
    assert not list(copy.index_dir.glob(".current-*"))
    assert_same_results(served(load_index(copy.index_dir), copy, analyzer, embedder), clean.results)


def test_a_dangling_current_is_corrupt_not_missing(copy):
    current = copy.index_dir / "current"
    current.unlink()
    os.symlink(Path("builds") / "20000101T000000-1-gone00", current)
    with pytest.raises(IndexCorruptError, match="없는 빌드"):
        load_index(copy.index_dir)
    status = index_status(copy)
    assert status["corrupt"] is True and "없는 빌드" in status["reasons"][0]


# ---------------------------------------------------------------------------- through the CLI


def cli_env(settings, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAG_CORPUS_DIR=str(settings.corpus_dir), RAG_INDEX_DIR=str(settings.index_dir), **extra)
    env.pop("RAG_API_KEY", None)
    return env


def test_cli_search_never_serves_a_flipped_index(copy, clean):
    flip(copy.index_dir / "current" / BM25_FILE)
    r = run_rag("search", QUESTIONS[1], "--json", env=cli_env(copy))
    stderr = r.stderr.decode()
    assert r.returncode == 0, stderr
    assert "Traceback" not in stderr and "체크섬이 맞지 않습니다" in stderr
    passages = json.loads(r.stdout)["passages"]
    texts = {d.doc_id: d.text for d in load_corpus(copy.corpus_dir)}
    assert all(p["text"] == texts[p["doc_id"]][p["start"]:p["end"]] for p in passages)
    assert [p["chunk_id"] for p in passages] == [c for c, *_ in clean.results[(QUESTIONS[1], "hybrid")]]
    assert index_status(copy)["checksums"] == "ok"


READ_ONLY_SITE = """
import os
_index = os.environ["RAG_INDEX_DIR"]
_access = os.access
os.access = lambda p, mode, **kw: False if str(p).startswith(_index) and mode & os.W_OK else _access(p, mode, **kw)
"""


@pytest.mark.parametrize("fault", ["read-only", "foreign current"])
def test_cli_faults_are_one_line_and_leave_the_index(copy, clean, fault, tmp_path):
    extra = {}
    if fault == "read-only":
        make_stale(copy)
        if IS_ROOT:  # root writes through chmod -w: play the read-only folder at access()
            (tmp_path / "site").mkdir()
            (tmp_path / "site" / "sitecustomize.py").write_text(READ_ONLY_SITE, encoding="utf-8")
            extra["PYTHONPATH"] = str(tmp_path / "site") + os.pathsep + os.environ.get("PYTHONPATH", "")
        else:
            os.chmod(copy.index_dir, 0o555)
        want = "쓸 수 없습니다"
    else:
        (copy.index_dir / "current").unlink()
        (copy.index_dir / "current").mkdir()
        want = "링크가 아니라 폴더입니다"
    before = tree(copy.index_dir)
    commands = [("search", QUESTIONS[0])] + ([("index", "build")] if fault == "read-only" else [])
    try:  # (the foreign current's `index build` and `status` are covered above, in-process)
        for args in commands:
            r = run_rag(*args, env=cli_env(copy, **extra))
            stderr = r.stderr.decode().strip()
            assert r.returncode == 1, (args, stderr)
            assert r.stdout == b"" and len(stderr.splitlines()) == 1, (args, stderr)
            assert stderr.startswith("오류:") and want in stderr and "Traceback" not in stderr, (args, stderr)
    finally:
        os.chmod(copy.index_dir, 0o755)
    assert tree(copy.index_dir) == before

