"""The `rag` entry point end to end: real process, real (small) corpus and index.

Each test owns its state: the tests that need no index get an empty index folder of their
own; the others share one small index built by the module fixture, and a test that edits
the corpus works on its own copy of the corpus and of that index.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import make_small_corpus, run_rag

Q = "대구기계부품연구원은 어떤 클러스터를 조성하고 있어?"


def small_env(base: Path) -> dict[str, str]:
    """Environment for a two-document corpus copy and an index folder under ``base``."""
    e = dict(os.environ)
    e["RAG_CORPUS_DIR"] = str(make_small_corpus(base / "corpus"))
    e["RAG_INDEX_DIR"] = str(base / "index")
    e.pop("RAG_API_KEY", None)
    return e


def run(env, *args, stdin=None):
    return run_rag(*args, env=env, stdin=stdin)


@pytest.fixture()
def fresh_env(tmp_path):
    """A corpus copy with no index built yet."""
    return small_env(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A corpus copy with its index built by ``rag index build``; the build's result too."""
    env = small_env(tmp_path_factory.mktemp("cli"))
    return env, run(env, "index", "build")


@pytest.fixture(scope="module")
def env(built):
    return built[0]


def test_status_before_build_says_missing(fresh_env):
    r = run(fresh_env, "index", "status", "--json")
    assert r.returncode == 1
    status = json.loads(r.stdout)
    assert status["built"] is False and "색인이 없습니다" in status["reasons"][0]


def test_bad_input_fails_fast_and_writes_nothing(fresh_env):
    index_dir = Path(fresh_env["RAG_INDEX_DIR"])
    cases = [
        ("search", ""), ("search", "   "), ("ask", " \n\t"), ("search", "가" * 33_000),
        ("search", Q, "--mode", "fuzzy"), ("search", Q, "-k", "0"), ("ask", Q, "-k", "1000"),
    ]
    for args in cases:
        r = run(fresh_env, *args)
        assert r.returncode == 2, args
        lines = r.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("오류:"), r.stderr
        assert any("가" <= ch <= "힣" for ch in lines[0][3:]), lines[0]  # the reason itself is Korean
        assert r.stdout == b""
    assert not (index_dir / "current").exists()
    r = run(fresh_env, "search", "--batch", "x.jsonl")  # batch output is JSON lines only
    assert r.returncode == 2 and b"--json" in r.stderr
    assert not index_dir.exists() or not any(index_dir.iterdir())


def test_build_shows_progress_then_status_is_fresh(built):
    env, r = built
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "임베딩" in err and "built" in err
    status = json.loads(run(env, "index", "status", "--json").stdout)
    assert status["built"] and not status["stale"] and status["documents"] == 2


def test_search_json_contract(env):
    r = run(env, "search", Q, "-k", "3", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert "대구".encode() in r.stdout  # UTF-8, not \\uXXXX escapes
    out = json.loads(r.stdout)
    assert out["question"] == Q and out["mode"] == "hybrid"
    assert [p["rank"] for p in out["passages"]] == [1, 2, 3]
    texts = {p.name: p.read_text(encoding="utf-8") for p in Path(env["RAG_CORPUS_DIR"]).glob("*.txt")}
    by_id = {"002": next(t for n, t in texts.items() if n.startswith("002")),
             "003": next(t for n, t in texts.items() if n.startswith("003"))}
    for p in out["passages"]:
        assert set(p) == {"rank", "score", "chunk_id", "doc_id", "doc_title", "section", "text", "start", "end"}
        assert by_id[p["doc_id"]][p["start"]:p["end"]] == p["text"]
    assert "스마트 금형 고도화 클러스터" in out["passages"][0]["text"]
    scores = [p["score"] for p in out["passages"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", ["bm25", "dense"])
def test_single_modes(env, mode):
    out = json.loads(run(env, "search", Q, "--mode", mode, "--json").stdout)
    assert out["mode"] == mode
    assert "스마트 금형 고도화 클러스터" in out["passages"][0]["text"]
    if mode == "dense":
        assert len(out["passages"]) == 5
    else:  # BM25 returns only chunks sharing a term with the question
        assert 1 <= len(out["passages"]) <= 5 and all(p["score"] > 0 for p in out["passages"])


def test_batch_keeps_order_ids_and_reports_bad_lines(env, tmp_path):
    lines = [
        json.dumps({"id": "a", "question": Q}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": 7, "question": "전남테크노파크는 무엇을 지원해?"}, ensure_ascii=False),
        json.dumps({"id": "empty", "question": "  "}),
        json.dumps({"id": "no-question"}),
        "",
        json.dumps({"id": "last", "question": "4,000억원 규모 R&D"}, ensure_ascii=False),
    ]
    batch = tmp_path / "q.jsonl"
    batch.write_bytes(("\n".join(lines) + "\n").encode("utf-8") + b"\xff\xfe\n")
    r = run(env, "search", "--batch", str(batch), "--json", "-k", "10", "--mode", "hybrid")
    assert r.returncode == 0, r.stderr.decode()
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [row.get("id") for row in rows] == ["a", None, 7, "empty", "no-question", "last", None]
    assert len(rows[0]["passages"]) == 10 and rows[0]["mode"] == "hybrid"
    assert "error" in rows[1] and "2번째 줄" in rows[1]["error"]
    assert rows[3]["error"] == "질문이 비어 있습니다"
    assert "question" in rows[4]["error"]
    assert "UTF-8" in rows[6]["error"]
    assert "오류가 있습니다" in r.stderr.decode()
    # the same file through stdin
    r2 = run(env, "search", "--batch", "-", "--json", stdin=batch.read_bytes())
    assert len(r2.stdout.decode().splitlines()) == 7


def test_ask_json_and_batch(env, tmp_path):
    r = run(env, "ask", Q, "--json")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert {"id", "question", "answer", "answerable", "reason", "citations", "related"} <= set(out)
    assert out["answerable"] is True and out["reason"] == ""
    assert "스마트 금형산업 고도화 클러스터" in out["answer"] and "[1]" in out["answer"]
    docs = {p.name[:3]: p.read_text(encoding="utf-8") for p in Path(env["RAG_CORPUS_DIR"]).glob("*.txt")}
    for c in out["citations"]:  # every citation is the document's own text at its offsets
        assert docs[c["doc_id"]][c["start"]:c["end"]] == c["text"]
        assert docs[c["doc_id"]][c["quote_start"]:c["quote_end"]] == c["quote"]
    assert "스마트 금형산업 고도화 클러스터" in out["citations"][0]["quote"]
    batch = tmp_path / "ask.jsonl"
    batch.write_text(json.dumps({"id": "x1", "question": Q}, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = [json.loads(x) for x in run(env, "ask", "--batch", str(batch), "--json").stdout.decode().splitlines()]
    assert len(rows) == 1 and rows[0]["id"] == "x1"
    assert (rows[0]["answer"], rows[0]["citations"]) == (out["answer"], out["citations"])  # same as one by one


def test_human_output_is_a_table_with_korean_intact(env):
    r = run(env, "search", Q, "-k", "2")
    assert r.returncode == 0
    text = r.stdout.decode()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    # the first row holds rank 1, the document's offsets and the passage's own words
    assert rows and rows[0].split("│")[1].strip() == "1"
    assert "002 [" in text and "대구기계부품연구원(DMI)은" in text
    assert any(line.split("│")[1].strip() == "2" for line in rows)


def test_stale_index_is_rebuilt_with_a_notice(env, tmp_path):
    own = dict(env)  # its own copy of the corpus and of the built index: the edit stays here
    shutil.copytree(env["RAG_CORPUS_DIR"], tmp_path / "corpus")
    shutil.copytree(env["RAG_INDEX_DIR"], tmp_path / "index", symlinks=True)
    own["RAG_CORPUS_DIR"], own["RAG_INDEX_DIR"] = str(tmp_path / "corpus"), str(tmp_path / "index")
    doc = next((tmp_path / "corpus").glob("003_*.txt"))
    text = doc.read_text(encoding="utf-8")
    cut = text.index("\n\n") + 2  # after the headline: the end of a news page is web furniture, never indexed
    doc.write_text(text[:cut] + "추가 문단: 뿌리산업 테스트 문장.\n\n" + text[cut:], encoding="utf-8")
    r = run(own, "search", "추가 문단 뿌리산업 테스트 문장", "--json", "--mode", "bm25")
    assert r.returncode == 0, r.stderr.decode()
    assert "최신이 아닙니다" in r.stderr.decode() and "문서 003 변경됨" in r.stderr.decode()
    out = json.loads(r.stdout)  # stdout stays clean JSON
    assert "추가 문단: 뿌리산업 테스트 문장." in out["passages"][0]["text"]  # the rebuilt index has it
    status = json.loads(run(own, "index", "status", "--json").stdout)
    assert status["built"] and not status["stale"]
    assert json.loads(run(env, "index", "status", "--json").stdout)["stale"] is False  # the shared one untouched
