"""End-to-end tests of the HTTP API against real uvicorn servers on loopback.

Two servers start once for the module, in parallel, on the real corpus and the session's
index (tests/conftest.py): one open, one with
``RAG_API_KEY`` (and a CORS origin) set. Everything else goes over HTTP with httpx.
A few pure tests cover :func:`rag.query.followup.resolve_followup`, and one in-process test
drives a failing retriever to see the error paths (500 JSON, ``event: error``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import ROOT, json_error, running
from live_server import free_port as _free_port

API_KEY = "test-키-0123456789"  # non-ASCII on purpose: sent and compared as UTF-8 bytes
CORS_ORIGIN = "https://portal.example.kr"

WELDING_Q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
BUDGET_Q = "2025년 뿌리산업 지원예산 총액은?"
DECLINE_Q = "디팜스테크 직원은 몇 명이야?"
PASSAGE_KEYS = {"rank", "score", "chunk_id", "doc_id", "doc_title", "section", "text", "start", "end"}
#: What the HTTP API adds to every passage and citation for integrators.
HTTP_KEYS = {"url", "date", "publisher"}
MANIFEST = {e["id"]: e for e in json.loads((ROOT / "corpus" / "manifest.json").read_text(encoding="utf-8"))}


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory, project_index):
    with running(tmp_path_factory.mktemp("api-logs"), open={},
                 keyed={"RAG_API_KEY": API_KEY, "RAG_CORS_ORIGINS": CORS_ORIGIN}) as started:
        yield started


@pytest.fixture(scope="module")
def api(servers):
    with httpx.Client(base_url=servers["open"].url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def keyed(servers):
    with httpx.Client(base_url=servers["keyed"].url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def welding_answer(api):
    r = api.post("/chat", json={"question": WELDING_Q})
    assert r.status_code == 200, r.text
    return r


def _error(r: httpx.Response, status: int) -> str:
    """Assert a JSON error with this status; return its message."""
    return json_error(r, status)["message"]


def _sse(r: httpx.Response) -> list[tuple[str, object]]:
    events, name, data = [], None, []
    for line in r.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name is not None:
            events.append((name, json.loads("\n".join(data))))
            name, data = None, []
    return events


# ----------------------------------------------------------------------------- health & documents


def test_health_reports_the_loaded_index(api):
    r = api.get("/health")
    assert r.status_code == 200
    assert "charset=utf-8" in r.headers["content-type"]
    body = r.json()
    assert body["status"] == "ok"
    index = body["index"]
    assert index["built"] is True and index["stale"] is False
    assert index["documents"] == 5 and index["chunks"] > 50
    assert index["model"]
    assert index["index_dir"] and index["build"]  # a server without a key tells everyone everything
    # a server answers many questions: the int8 engine encodes them, searches run on the files
    assert index["query_engine"] == "onnx" and index["backend"] == "files"


def test_documents_listing_and_section_tree(api):
    r = api.get("/documents")
    assert r.status_code == 200
    docs = r.json()
    assert [d["doc_id"] for d in docs] == ["000", "001", "002", "003", "004"]
    assert docs[1]["title"] == "2025년도 뿌리산업 진흥 실행계획"
    assert "뿌리산업".encode() in r.content  # UTF-8 bytes, not \\u escapes
    assert b"\\u" not in r.content

    r = api.get("/documents/001")
    assert r.status_code == 200
    detail = r.json()
    assert detail["doc_id"] == "001" and detail["title"] == docs[1]["title"]
    tree = detail["sections"]
    assert isinstance(detail["chars"], int) and all(isinstance(d["chars"], int) for d in docs)
    assert tree["title"] == "" and tree["start"] == 0 and tree["end"] <= detail["chars"]

    def walk(node, path=()):
        yield path, node
        for child in node["children"]:
            yield from walk(child, path + (child["title"],))

    nodes = list(walk(tree))
    budget = [(p, n) for p, n in nodes if p and p[-1] == "지원예산"]
    assert budget, [p for p, _ in nodes]
    path, node = budget[0]
    assert path[0].startswith("V.")
    span = api.get("/documents/001/text", params={"start": node["start"], "end": node["end"]}).json()["text"]
    assert "지원예산" in span.splitlines()[0] and "6,846억원" in span
    for _, n in nodes:  # children nest inside their parent
        for c in n["children"]:
            assert n["start"] <= c["start"] <= c["end"] <= n["end"]


def test_document_errors(api):
    assert "999" in _error(api.get("/documents/999"), 404)
    assert "999" in _error(api.get("/documents/999/text", params={"start": 0, "end": 5}), 404)
    for params in ({"start": 5, "end": 5}, {"start": -1, "end": 5}, {"start": 0, "end": 10**9}, {"start": 9, "end": 3}):
        assert "start" in _error(api.get("/documents/001/text", params=params), 422)
    assert "start" in _error(api.get("/documents/001/text", params={"start": "abc"}), 422)
    whole = api.get("/documents/003/text").json()
    assert whole["start"] == 0 and len(whole["text"]) == whole["end"]


# ----------------------------------------------------------------------------- chat & search


def test_korean_question_is_answered_with_exact_citations(api, welding_answer):
    body = welding_answer.json()
    assert set(body) >= {"answer", "answerable", "citations", "related", "query", "timing_ms"}
    assert body["answerable"] is True
    assert body["query"] == WELDING_Q and body["question"] == WELDING_Q
    assert body["citations"], body
    assert "광주" in body["answer"] + "".join(c["text"] for c in body["citations"])
    for n, c in enumerate(body["citations"], 1):
        assert f"[{n}]" in body["answer"]  # each citation is referenced by its marker
        assert PASSAGE_KEYS | HTTP_KEYS <= set(c)
        span = api.get(f"/documents/{c['doc_id']}/text", params={"start": c["start"], "end": c["end"]})
        assert span.status_code == 200
        assert span.json()["text"] == c["text"]
        quote = api.get(f"/documents/{c['doc_id']}/text", params={"start": c["quote_start"], "end": c["quote_end"]})
        assert quote.json()["text"] == c["quote"]
    for p in body["related"]:
        assert set(p) == PASSAGE_KEYS | HTTP_KEYS


def test_korean_is_not_escaped(welding_answer):
    raw = welding_answer.content
    assert "용접".encode("utf-8") in raw and b"\\u" not in raw
    assert welding_answer.headers["content-type"] == "application/json; charset=utf-8"


def test_search_has_the_cli_json_shape(api):
    r = api.post("/search", json={"question": WELDING_Q, "k": 3, "mode": "hybrid"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["question", "mode", "passages"]
    assert body["question"] == WELDING_Q and body["mode"] == "hybrid"
    assert [p["rank"] for p in body["passages"]] == [1, 2, 3]
    for p in body["passages"]:
        assert set(p) == PASSAGE_KEYS | HTTP_KEYS
    assert "total;dur=" in r.headers["server-timing"]
    for mode in ("bm25", "dense"):
        r = api.post("/search", json={"question": WELDING_Q, "mode": mode})
        assert r.status_code == 200 and len(r.json()["passages"]) == 5 and r.json()["mode"] == mode


def test_streaming_sends_citations_then_deltas_then_answer_then_done(api, welding_answer):
    with api.stream("POST", "/chat", json={"question": WELDING_Q, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    names = [name for name, _ in events]
    deltas = [data for name, data in events if name == "delta"]
    assert names == ["citations"] + ["delta"] * len(deltas) + ["answer", "done"]
    plain = welding_answer.json()
    assert events[0][1] == plain["citations"]
    # the answer arrives in several pieces that add up to exactly the whole answer
    assert len(deltas) >= 3 and all(set(d) == {"text"} and d["text"] for d in deltas)
    assert "".join(d["text"] for d in deltas) == plain["answer"]
    answer = events[-2][1]
    assert answer == {"answer": plain["answer"], "answerable": True, "reason": "", "related": plain["related"]}
    assert events[-1][1]["timing_ms"] > 0 and events[-1][1]["query"] == WELDING_Q


def test_streamed_decline_carries_reason_and_related(api):
    plain = api.post("/chat", json={"question": DECLINE_Q}).json()
    assert plain["answerable"] is False and plain["reason"] and plain["related"]
    with api.stream("POST", "/chat", json={"question": DECLINE_Q, "stream": True}) as r:
        events = _sse(r)
    names = [n for n, _ in events]
    assert names[0] == "citations" and names[-2:] == ["answer", "done"]
    assert events[0][1] == []
    answer = events[-2][1]
    assert answer["answerable"] is False
    assert answer["answer"] == plain["answer"] == "제공된 문서에서 해당 내용을 찾을 수 없습니다."
    assert answer["reason"] and answer["reason"] == plain["reason"]  # its wording is the answer module's
    assert answer["related"] == plain["related"] and answer["related"][0]["url"].startswith("/documents/")
    assert "".join(d["text"] for n, d in events if n == "delta") == answer["answer"]


# ----------------------------------------------------------------------------- integrator-friendly JSON


def test_citation_url_date_and_publisher(api, welding_answer):
    body = welding_answer.json()
    for c in body["citations"] + body["related"]:
        entry = MANIFEST[c["doc_id"]]
        assert (c["date"], c["publisher"]) == (entry["date"], entry["publisher"])
    for c in body["citations"]:  # a citation's url gives back exactly its quote
        assert c["url"] == f"/documents/{c['doc_id']}/text?start={c['quote_start']}&end={c['quote_end']}"
        span = api.get(c["url"])
        assert span.status_code == 200 and span.json()["text"] == c["quote"]
    for p in body["related"]:  # a passage's url gives back exactly its text
        assert api.get(p["url"]).json()["text"] == p["text"]
    gwangju = [c for c in body["citations"] if "광주첨단산단" in c["quote"]]
    assert gwangju and gwangju[0]["date"] == "2025-04" and gwangju[0]["publisher"] == "관계부처 합동"


@pytest.mark.parametrize("how", ["body", "query"])
def test_compact_leaves_out_passage_text(api, welding_answer, how):
    full = welding_answer.json()
    if how == "body":
        r = api.post("/chat", json={"question": WELDING_Q, "compact": True})
    else:
        r = api.post("/chat", params={"compact": "true"}, json={"question": WELDING_Q})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == full["answer"]
    assert len(r.content) < len(welding_answer.content) / 2
    for c, fc in zip(body["citations"], full["citations"], strict=True):
        assert "text" not in c
        assert c == {k: v for k, v in fc.items() if k != "text"}  # quote, offsets, url, date, publisher kept
    for p, fp in zip(body["related"], full["related"], strict=True):
        assert set(p) == PASSAGE_KEYS - {"text"} | HTTP_KEYS
        assert (p["chunk_id"], p["doc_title"], p["section"], p["start"], p["end"]) == \
               (fp["chunk_id"], fp["doc_title"], fp["section"], fp["start"], fp["end"])
    search = api.post("/search", json={"question": WELDING_Q, "k": 3, "compact": True}).json()
    assert search["passages"] and all("text" not in p and p["url"] for p in search["passages"])
    with api.stream("POST", "/chat", json={"question": WELDING_Q, "stream": True, "compact": True}) as s:
        events = {n: d for n, d in _sse(s) if n != "delta"}
    assert events["citations"] == body["citations"] and events["answer"]["related"] == body["related"]


def _numbers_are_numbers(value, path="$"):
    """Fail on a string that holds a number where a JSON number belongs (ids, quotes and
    passage text may hold digits: they are text)."""
    text_fields = {"doc_id", "chunk_id", "text", "quote", "answer", "question", "query", "title", "section",
                   "doc_title", "date", "created", "loaded_at", "build", "url", "source", "file", "publisher"}
    if isinstance(value, dict):
        for key, v in value.items():
            if key not in text_fields:
                _numbers_are_numbers(v, f"{path}.{key}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _numbers_are_numbers(v, f"{path}[{i}]")
    elif isinstance(value, str):
        assert not value.strip().lstrip("-").replace(".", "", 1).isdigit(), f"{path} is the string {value!r}"


def test_every_numeric_field_is_a_json_number(api, welding_answer):
    responses = [api.get("/health"), api.get("/documents"), api.get("/documents/001"),
                 api.get("/documents/001/text", params={"start": 0, "end": 10}),
                 api.post("/search", json={"question": WELDING_Q}), welding_answer,
                 api.get("/v1/models"),
                 api.post("/v1/chat/completions", json={"model": "rag-ko", "messages": [{"role": "user", "content": WELDING_Q}]})]
    for r in responses:
        assert r.status_code == 200, r.text
        _numbers_are_numbers(r.json())
    docs = responses[1].json()
    assert [d["chars"] for d in docs] == [len(api.get(f"/documents/{d['doc_id']}/text").json()["text"]) for d in docs]
    health = responses[0].json()["index"]
    assert isinstance(health["chunks"], int) and isinstance(health["documents"], int)
    for p in responses[4].json()["passages"]:
        assert isinstance(p["score"], float) and all(isinstance(p[k], int) for k in ("rank", "start", "end"))


def test_followup_is_resolved_against_the_previous_question(api):
    first = api.post("/chat", json={"question": BUDGET_Q}).json()
    messages = [
        {"role": "user", "content": BUDGET_Q},
        {"role": "assistant", "content": first["answer"]},
        {"role": "user", "content": "그럼 작년에는?"},
    ]
    r = api.post("/chat", json={"messages": messages})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["question"] == "그럼 작년에는?"
    query = body["query"]
    assert "뿌리산업 지원예산" in query and "2024" in query and "작년" in query
    passages = body["citations"] + body["related"]
    assert any("지원예산" in p["section"] for p in passages[:3]), [p["section"] for p in passages]
    assert any("640,099" in p["text"] or "'24년" in p["text"] for p in passages), "the 2024 column should be retrieved"
    # a question that stands on its own is not mixed with the previous one
    alone = messages[:2] + [{"role": "user", "content": WELDING_Q}]
    assert api.post("/chat", json={"messages": alone}).json()["query"] == WELDING_Q


def test_concurrent_requests_are_served(api):
    questions = [WELDING_Q, BUDGET_Q, "뿌리산업 특화단지 지원사업 올해 예산은?", "소부장 글로벌화 전략의 목표는?"] * 4

    def ask(i_q):
        i, q = i_q
        path = "/search" if i % 2 else "/chat"
        return api.post(path, json={"question": q})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, enumerate(questions)))
    assert [r.status_code for r in responses] == [200] * len(questions)
    # the same question gives the same passages whatever ran alongside it
    first = [r.json()["passages"] for i, r in enumerate(responses) if i % 4 == 1]
    assert all(p == first[0] for p in first)


# ----------------------------------------------------------------------------- bad input


BAD_REQUESTS = [
    # (name, kwargs for httpx .post("/chat" or path), status, words the message must contain;
    #  "a|b": either, for the question checks whose messages may be English or Korean)
    ("empty question", {"json": {"question": "   "}}, 422, "empty|비어"),
    ("question too long", {"json": {"question": "가" * 3000}}, 422, "limit|최대"),
    ("100 KB body", {"json": {"question": "가" * 40_000}}, 413, "limit"),
    ("question is a number", {"json": {"question": 123}}, 422, "question"),
    ("k is a string", {"json": {"question": "예산", "k": "5"}}, 422, "k:"),
    ("k out of range", {"json": {"question": "예산", "k": 0}}, 422, "k:"),
    ("k too large", {"json": {"question": "예산", "k": 1000}}, 422, "k:"),
    ("unknown mode", {"json": {"question": "예산", "mode": "fast"}}, 422, "mode"),
    ("stream not bool", {"json": {"question": "예산", "stream": "yes"}}, 422, "stream"),
    ("unknown field", {"json": {"question": "예산", "top_k": 3}}, 422, "top_k"),
    ("invalid JSON", {"content": b'{"question": "\xec\x98\x88\xec\x82\xb0",', "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("not UTF-8", {"content": b'{"question": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("body is a list", {"json": ["예산"]}, 422, "object"),
    ("no body", {"headers": {"content-type": "application/json"}}, 422, "body"),
    ("wrong content type", {"content": "question=예산".encode(), "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, "Content-Type"),
    ("text/plain", {"content": '{"question": "예산"}'.encode(), "headers": {"content-type": "text/plain"}}, 415, "JSON"),
    ("no content type", {"content": '{"question": "예산"}'.encode()}, 415, "missing"),
    ("both question and messages", {"json": {"question": "예산", "messages": [{"role": "user", "content": "예산"}]}}, 422, "not both"),
    ("neither question nor messages", {"json": {"k": 3}}, 422, "exactly one"),
    ("messages end with assistant", {"json": {"messages": [{"role": "assistant", "content": "안녕"}]}}, 422, "last message"),
    ("bad role", {"json": {"messages": [{"role": "system", "content": "예산"}]}}, 422, "role"),
    ("empty messages", {"json": {"messages": []}}, 422, "messages"),
]


@pytest.mark.parametrize("name,kwargs,status,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_chat_input_gets_a_json_error(api, name, kwargs, status, words):
    message = _error(api.post("/chat", **kwargs), status)
    assert any(w.lower() in message.lower() for w in words.split("|")), message


@pytest.mark.parametrize("payload,words", [
    ({"question": ""}, "empty|비어"),
    ({"question": "예산", "mode": "sparse"}, "mode"),
    ({"question": "예산", "k": 101}, "k:"),
    ({"k": 5}, "question"),
    ({"question": "예산\u0000"}, "NUL"),
])
def test_bad_search_input_gets_a_json_error(api, payload, words):
    message = _error(api.post("/search", json=payload), 422)
    assert any(w in message for w in words.split("|")), message


def test_body_over_limit_without_content_length_is_refused(api):
    def chunks():
        yield b'{"question": "'
        for _ in range(100):
            yield "가".encode() * 400  # 1.2 KB each, 120 KB in all, sent chunked
        yield b'"}'

    r = api.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert "limit" in _error(r, 413)


def test_unknown_endpoint_and_method_are_json_errors(api):
    assert "/nope" in _error(api.get("/nope"), 404)
    assert "GET" in _error(api.get("/search"), 405)


def test_server_keeps_serving_after_bad_requests(api):
    for _ in range(3):
        api.post("/chat", content=b"{", headers={"content-type": "application/json"})
        api.post("/chat", json={"question": "가" * 70_000})
    r = api.post("/search", json={"question": BUDGET_Q})
    assert r.status_code == 200 and r.json()["passages"]
    assert api.get("/health").json()["status"] == "ok"


# ----------------------------------------------------------------------------- auth & CORS


def test_auth_is_required_when_a_key_is_set(keyed):
    assert keyed.get("/health").status_code == 200  # open for probes
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200
    body = {"question": WELDING_Q}
    assert "missing" in _error(keyed.post("/search", json=body), 401)
    r = keyed.post("/search", json=body, headers={"Authorization": "Bearer wrong-key"})
    assert "wrong" in _error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    _error(keyed.post("/search", json=body, headers={"Authorization": f"Basic {API_KEY}".encode()}), 401)
    _error(keyed.get("/documents"), 401)
    _error(keyed.get("/documents/001/text", params={"start": 0, "end": 3}), 401)
    _error(keyed.post("/chat", json=body), 401)
    good = {"Authorization": f"Bearer {API_KEY}".encode()}
    assert keyed.post("/search", json=body, headers=good).status_code == 200
    assert keyed.get("/documents", headers=good).status_code == 200
    assert keyed.post("/chat", json=body, headers=good).json()["answerable"] is True


def test_no_key_means_open(api):
    assert api.post("/search", json={"question": BUDGET_Q}).status_code == 200
    assert api.get("/documents").status_code == 200


def test_cors_allows_only_configured_origins(keyed, api):
    pre = {"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type"}
    r = keyed.options("/chat", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == CORS_ORIGIN
    r = keyed.options("/chat", headers={**pre, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in api.get("/health", headers={"Origin": CORS_ORIGIN}).headers


def test_openapi_documents_every_endpoint(api):
    spec = api.get("/openapi.json").json()
    assert {"/chat", "/search", "/health", "/documents", "/documents/{doc_id}", "/documents/{doc_id}/text",
            "/v1/models", "/v1/chat/completions"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    chat = schemas["ChatRequest"]
    assert "question" in chat["properties"] and "messages" in chat["properties"] and "compact" in chat["properties"]
    assert "compact" in schemas["SearchRequest"]["properties"]
    assert {"url", "date", "publisher"} <= set(schemas["CitationOut"]["properties"])
    assert schemas["DocumentMeta"]["properties"]["chars"]["type"] == "integer"
    assert "event: delta" in spec["paths"]["/chat"]["post"]["description"]
    assert {"citations", "answerable", "reason"} <= set(schemas["ChatCompletionResponse"]["properties"])


# ----------------------------------------------------------------------------- in-process: failures


class _Broken:
    """Stands in for a Retriever whose search crashes (a bug, a bad index file)."""

    def __init__(self):
        from types import SimpleNamespace

        self.analyzer = SimpleNamespace(tokenize=lambda text: text.split())
        self.embedder = SimpleNamespace()
        self.index = SimpleNamespace(dense=SimpleNamespace(), manifest={}, chunks=[], path=Path("broken"))
        self.doc_texts = {}

    def search(self, question, k=5, mode="hybrid"):
        raise RuntimeError("disk on fire")


def test_internal_errors_are_json_and_streams_end_with_an_error_event():
    import asyncio

    from rag.api import create_app

    app = create_app(retriever=_Broken())

    async def go():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            plain = await client.post("/chat", json={"question": "예산"})
            streamed = await client.post("/chat", json={"question": "예산", "stream": True})
            search = await client.post("/search", json={"question": "예산"})
            return plain, streamed, search

    plain, streamed, search = asyncio.run(go())
    assert "RuntimeError" in _error(plain, 500)
    assert "RuntimeError" in _error(search, 500)
    assert "disk on fire" not in plain.text  # internals stay in the log
    assert streamed.status_code == 200
    events = _sse(streamed)
    assert [n for n, _ in events] == ["error"]
    assert events[0][1]["error"]["code"] == "internal_error"


def test_startup_failure_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAG_API_KEY"}
    env.update(RAG_CORPUS_DIR=str(tmp_path / "no-corpus"), RAG_INDEX_DIR=str(tmp_path / "index"),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", f"from rag.api.server import serve; serve(port={_free_port()})"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert errors and "cannot start the API" in errors[0] and "manifest.json" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- resolve_followup (pure)


def _conv(*turns: str) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def test_followup_resolves_relative_years():
    from rag.query.followup import resolve_followup

    q = resolve_followup(_conv(BUDGET_Q, "6,846억원입니다.", "그럼 작년에는?"))
    assert q.startswith(BUDGET_Q) and "작년" in q and "2024년" in q and "그럼" not in q
    q = resolve_followup(_conv(BUDGET_Q, "…", "그럼 작년에는?", "…", "그 전년은?"))
    assert "2023년" in q and "2024년" in q
    q = resolve_followup(_conv("'25년 특화단지 예산은?", "…", "내년은?"))
    assert "2026년" in q


def test_followup_keeps_standalone_questions():
    from rag.query.followup import resolve_followup

    assert resolve_followup(_conv("  " + WELDING_Q + " ")) == WELDING_Q
    assert resolve_followup(_conv(BUDGET_Q, "…", WELDING_Q)) == WELDING_Q
    standalone = "작년 EU에 수출한 소부장 금액은?"
    assert resolve_followup(_conv(BUDGET_Q, "…", standalone)) == standalone
    assert resolve_followup([]) == ""
    assert resolve_followup([{"role": "assistant", "content": "안녕하세요"}]) == ""


def test_followup_topics_and_linking_words():
    from rag.query.followup import resolve_followup

    q = resolve_followup(_conv(WELDING_Q, "광주에 있습니다.", "울산은?"))
    assert q.startswith(WELDING_Q) and q.endswith("울산은?")
    q = resolve_followup(_conv("뿌리산업 생산액은?", "…", "그리고 고용 인원은 몇 명이야?"))
    assert q == "뿌리산업 생산액은? 고용 인원은 몇 명이야?"
    q = resolve_followup(_conv("올해 예산은?", "…", "그럼 작년엔?"))  # no year to resolve against
    assert q == "올해 예산은? 작년엔?"


# ----------------------------------------------------------------------------- documented models


def test_responses_match_their_documented_models(api, welding_answer):
    """Every field a response has is in the pydantic model that documents it in /docs, and the model accepts it."""
    from rag.api import models as m

    def check(model, data):
        model.model_validate(data)
        extra = set(data) - set(model.model_fields)
        assert not extra, f"{model.__name__} does not document {extra}"

    body = welding_answer.json()
    check(m.ChatResponse, body)
    for c in body["citations"]:
        check(m.CitationOut, c)
    for p in body["related"]:
        check(m.PassageOut, p)
    search = api.post("/search", json={"question": WELDING_Q, "compact": True}).json()
    check(m.SearchResponse, search)
    for p in search["passages"]:
        check(m.PassageOut, p)
    for d in api.get("/documents").json():
        check(m.DocumentMeta, d)
    with api.stream("POST", "/chat", json={"question": WELDING_Q, "stream": True}) as r:
        events = _sse(r)
    for name, data in events:
        if name == "delta":
            check(m.StreamDelta, data)
        elif name == "answer":
            check(m.StreamAnswer, data)
    check(m.ModelList, api.get("/v1/models").json())
    done = api.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": WELDING_Q}]}).json()
    check(m.ChatCompletionResponse, done)
    with api.stream("POST", "/v1/chat/completions",
                    json={"stream": True, "messages": [{"role": "user", "content": WELDING_Q}]}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    for chunk in chunks[:-1]:
        check(m.ChatCompletionChunk, chunk)
    m.ChatCompletionChunk.model_validate(chunks[-1])  # the last one also carries the extra fields
    assert set(chunks[-1]) - set(m.ChatCompletionChunk.model_fields) == {"citations", "related", "answerable", "reason", "query"}
