"""Index lifecycle on a real (small) index: build, status, staleness, atomic publish,
corruption, concurrent writers, and reuse of embeddings for unchanged chunks."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rag.errors import IndexBusyError, IndexCorruptError, IndexMissingError
from rag.index import store
from rag.index.build import build_index, ensure_index
from rag.index.spec import BuildSpec
from rag.index.store import build_lock, index_status, load_index


def build(settings, embedder, analyzer, **kw):
    return build_index(settings, embedder=embedder, analyzer=analyzer, **kw)


def test_build_then_load_and_status(small_settings, embedder, analyzer):
    stages = []
    index = build(small_settings, embedder, analyzer, progress=lambda s, a, t: stages.append(s))
    assert {"chunk", "analyse", "embed"} <= set(stages)
    loaded = load_index(small_settings.index_dir, verify=True)
    assert len(loaded.chunks) == index.manifest["n_chunks"] == loaded.dense.size == loaded.sparse.size
    assert {c.doc_id for c in loaded.chunks} == {"002", "003"}
    status = index_status(small_settings, verify=True)
    assert status["built"] and not status["stale"] and status["chunks"] == len(loaded.chunks)
    assert set(status["bytes_per_chunk"]) >= {"bm25", "dense.faiss", "vectors.npy", "chunks.jsonl"}


def test_missing_index_is_reported_and_then_built(small_settings, embedder, analyzer):
    with pytest.raises(IndexMissingError):
        load_index(small_settings.index_dir)
    assert index_status(small_settings)["built"] is False
    notes = []
    ensure_index(small_settings, notice=notes.append, embedder=embedder, analyzer=analyzer)
    assert notes and "색인이 아직 없습니다" in notes[0]


def test_changed_document_makes_it_stale_and_reembeds_only_its_chunks(small_settings, embedder, analyzer):
    first = build(small_settings, embedder, analyzer)
    n003 = sum(c.doc_id == "003" for c in first.chunks)
    path = next(small_settings.corpus_dir.glob("003_*.txt"))
    path.write_text(path.read_text(encoding="utf-8").replace("4,000억원 규모의", "5,000억원 규모의"), encoding="utf-8")
    status = index_status(small_settings)
    assert status["stale"] and "문서 003 변경됨" in status["reasons"]
    notes = []
    second = ensure_index(small_settings, notice=notes.append, embedder=embedder, analyzer=analyzer)
    assert "최신이 아닙니다" in notes[0]
    assert 1 <= second.manifest["reembedded"] <= n003
    unchanged = [i for i, c in enumerate(second.chunks) if c.doc_id == "002"]
    np.testing.assert_array_equal(np.asarray(second.vectors)[unchanged], np.asarray(first.vectors)[unchanged])


def test_settings_change_makes_it_stale(small_settings, embedder, analyzer):
    build(small_settings, embedder, analyzer)
    other = BuildSpec(use_prefixes=False)
    assert "설정 use_prefixes 변경됨" in index_status(small_settings, other)["reasons"]


def test_failed_build_leaves_the_previous_index(small_settings, embedder, analyzer, monkeypatch):
    first = build(small_settings, embedder, analyzer)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.DenseIndex, "build", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build(small_settings, embedder, analyzer)
    again = load_index(small_settings.index_dir)
    assert again.path == first.path
    assert not [p for p in (small_settings.index_dir / "builds").iterdir() if p.name.startswith(".tmp-")]


def test_killed_build_never_publishes_a_partial_index(small_settings, embedder, analyzer):
    """A process SIGKILLed just before publishing leaves the old index current and loadable."""
    first = build(small_settings, embedder, analyzer)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(store.__file__.rsplit('/rag/', 1)[0])!r})
        from rag.config import Settings
        from rag.index import build
        from rag.index.sparse import BM25Params
        from rag.index.spec import BuildSpec
        build.publish = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        s = Settings().with_(corpus_dir={str(small_settings.corpus_dir)!r}, index_dir={str(small_settings.index_dir)!r})
        build.build_index(s, spec=BuildSpec(bm25=BM25Params(k1=1.6)))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    loaded = load_index(small_settings.index_dir, verify=True)
    assert loaded.path == first.path
    assert loaded.manifest["spec"]["bm25"]["k1"] == first.manifest["spec"]["bm25"]["k1"]


def test_corrupt_artifact_is_detected_and_rebuilt(small_settings, embedder, analyzer):
    first = build(small_settings, embedder, analyzer)
    vec = first.path / "vectors.npy"
    vec.write_bytes(vec.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match="vectors.npy"):
        load_index(small_settings.index_dir)
    notes = []
    fixed = ensure_index(small_settings, notice=notes.append, embedder=embedder, analyzer=analyzer)
    assert "손상" in notes[0]
    assert fixed.path != first.path and len(fixed.vectors) == len(fixed.chunks)


def test_garbled_manifest_is_an_error_not_a_crash(small_settings, embedder, analyzer):
    first = build(small_settings, embedder, analyzer)
    (first.path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(small_settings.index_dir)
    assert index_status(small_settings)["corrupt"] is True


def test_checksum_mismatch_found_by_verify(small_settings, embedder, analyzer):
    first = build(small_settings, embedder, analyzer)
    chunks = first.path / "chunks.jsonl"
    data = bytearray(chunks.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")
    chunks.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="체크섬"):
        load_index(small_settings.index_dir, verify=True)


def test_second_writer_is_refused_while_one_builds(small_settings, embedder, analyzer):
    with build_lock(small_settings.index_dir):
        with pytest.raises(IndexBusyError, match="다른 프로세스"):
            build(small_settings, embedder, analyzer)
    assert not (small_settings.index_dir / "current").exists()


def test_old_builds_are_pruned(small_settings, embedder, analyzer):
    for k1 in (1.1, 1.2, 1.3):
        build(small_settings, embedder, analyzer, spec=BuildSpec(bm25=store.BM25Params(k1=k1)))
    builds = [p for p in (small_settings.index_dir / "builds").iterdir()]
    assert len(builds) <= 2


def test_bad_corpus_is_a_clear_error(small_settings, embedder, analyzer):
    from rag.ingest.corpus import CorpusError

    bad = small_settings.corpus_dir / "002_ba03025668601656.txt"
    bad.write_bytes("뿌리산업".encode("cp949"))
    with pytest.raises(CorpusError, match="올바른 UTF-8이 아닙니다"):
        build(small_settings, embedder, analyzer)
    assert not (small_settings.index_dir / "current").exists()
    manifest = small_settings.corpus_dir / "manifest.json"
    manifest.write_text(json.dumps([{"id": "x"}]), encoding="utf-8")
    with pytest.raises(CorpusError, match="값이 없습니다"):
        build(small_settings, embedder, analyzer)
