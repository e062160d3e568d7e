"""Load test of the HTTP API: N concurrent keep-alive clients against /search and /chat,
without and then with slow half-open connections held against the server.

Usage::

    python benchmarks/load_api.py --start                 # start a server itself, load it (10 s a phase)
    python benchmarks/load_api.py --start --duration 60   # the full run quoted in the report
    python benchmarks/load_api.py --url http://127.0.0.1:8000 --clients 8 --duration 20 --slow 0

Each endpoint (default /search then /chat) gets two phases, one after the other:

1. *plain*: a short warm-up, then ``--clients`` clients each sending requests back to back,
   mixing Korean questions (the evaluation set's, else a built-in list), for
   ``--duration`` seconds or until ``--max-requests`` requests, whichever comes first;
2. *slow*: the same load while ``--slow`` (default 50) slowloris connections are held
   against the server: each sends half a request header, then one more byte a second, and
   is opened again as soon as the server closes it (its header timeout; ``--slow 0``
   skips this phase). The report gives the slowdown of throughput and p95 against the
   plain phase (target: at most 20 % slower, 0 errors) and how long the server let a slow
   connection live.

Reported per phase: throughput, latency percentiles, errors, the server's own per-stage
timings (its ``Server-Timing`` header: Kiwi analysis, BM25, query embedding, faiss,
fusion) and, with ``--start`` or ``--server-pid``, server CPU per request and the server's
resident memory (RSS) before and after, so a leak under load shows as growth.

Outputs: a table on stdout, ``benchmarks/out/load_api.json``, and a section of
``benchmarks/report.md`` between ``<!-- load_api:start -->`` and ``<!-- load_api:end -->``
(the rest of the file is left as is).

The clients speak HTTP/1.1 over asyncio streams directly (a few dozen lines below) rather
than through httpx: on a 2-core machine the load generator shares the CPU with the server,
and a lighter client leaves more of it to the thing being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "benchmarks" / "out"
REPORT = ROOT / "benchmarks" / "report.md"
START_MARK, END_MARK = "<!-- load_api:start -->", "<!-- load_api:end -->"

TARGET = {"endpoint": "/search", "clients": 8, "min_rps": 50.0, "max_p95_ms": 200.0, "max_errors": 0}
#: The slow phase against the plain one: throughput at most this much lower, p95 at most
#: this much higher (fractions), and no errors.
SLOW_TARGET = {"max_slowdown": 0.20, "max_errors": 0}
#: What a slow connection sends first, then one more byte of it every SLOW_DRIP_S seconds.
SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: "
SLOW_DRIP_S = 1.0

FALLBACK_QUESTIONS = [
    "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?",
    "2025년 뿌리산업 지원예산 총액은?",
    "뿌리산업 특화단지 지원사업 올해 예산은?",
    "자동차 한 대 만들 때 들어가는 부품 중에 뿌리기술이랑 관련된 건 몇 개 정도야?",
    "누리호 개발에 참여한 회사들 가운데 뿌리기업은 몇 곳이었어?",
    "뿌리산업이 고용하고 있는 인원은 대략 몇 명이야?",
    "소부장 글로벌화 전략의 핵심 목표는 무엇인가요?",
    "4,000억원 규모의 뿌리전용 R&D는 무엇을 하나?",
    "지능형 뿌리공정 시스템 구축 예산은 작년 대비 몇 퍼센트 줄었어?",
    "K-뿌리산업 첨단화 전략은 언제 발표됐어?",
    "뿌리기업 긴급경영안정자금은 얼마야?",
    "작년 EU에 수출한 소부장 금액은?",
]


def load_questions(path: Optional[Path]) -> list[str]:
    """Questions from a JSONL file with a "question" field (default: evaluation/qa.jsonl)."""
    path = path or ROOT / "evaluation" / "qa.jsonl"
    questions = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                q = json.loads(line).get("question")
            except (ValueError, AttributeError):
                continue
            if isinstance(q, str) and q.strip():
                questions.append(q)
    questions = questions or list(FALLBACK_QUESTIONS)
    random.Random(7).shuffle(questions)
    return questions


# ----------------------------------------------------------------------------- a tiny HTTP/1.1 client


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{self.extra}\r\n")
        self.writer.write(head.encode("latin-1") + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed by the server")
        parts = status_line.split(b" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(chunks)
        else:
            data = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data


# ----------------------------------------------------------------------------- load phases


@dataclass
class PhaseResult:
    endpoint: str
    clients: int
    slow: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    server_cpu_s: Optional[float] = None
    client_cpu_s: float = 0.0
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    slow_stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        n = len(lat) + self.errors

        def pct(p: float) -> Optional[float]:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, max(0, int(round(p / 100 * len(lat) + 0.5)) - 1))], 2)

        out = {
            "endpoint": self.endpoint, "phase": f"+{self.slow} slow" if self.slow else "plain",
            "slow_connections": self.slow, "clients": self.clients, "seconds": round(self.seconds, 2),
            "requests": n, "ok": len(lat), "errors": self.errors,
            "rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
            "max_ms": round(lat[-1], 2) if lat else None,
            "server_stage_mean_ms": {k: round(statistics.fmean(v), 2) for k, v in self.stages.items() if v},
            "client_cpu_ms_per_req": round(1e3 * self.client_cpu_s / max(n, 1), 2),
        }
        if self.server_cpu_s is not None:
            out["server_cpu_ms_per_req"] = round(1e3 * self.server_cpu_s / max(n, 1), 2)
        if self.rss_start_mb is not None and self.rss_end_mb is not None:
            out["rss_start_mb"], out["rss_end_mb"] = self.rss_start_mb, self.rss_end_mb
            out["rss"] = f"{self.rss_start_mb:.0f} → {self.rss_end_mb:.0f}"
        if self.slow_stats:
            out["slow"] = dict(self.slow_stats)
        if self.error_samples:
            out["error_samples"] = self.error_samples[:5]
        return out


def _parse_server_timing(value: str, into: dict[str, list[float]]) -> None:
    for part in value.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                into.setdefault(name, []).append(float(rest[4:]))
            except ValueError:
                pass


def _proc_cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of a process and its threads (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _server_cpu(pids: list[int]) -> Optional[float]:
    values = [_proc_cpu_seconds(p) for p in pids]
    return None if not pids or any(v is None for v in values) else sum(values)  # type: ignore[misc]


def _rss_mb(pids: list[int]) -> float | None:
    """Resident memory of the processes (MB, Linux /proc), or None."""
    total = 0
    try:
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(total / 1024, 1) if pids else None


async def slow_connection(host: str, port: int, stop: asyncio.Event, stats: dict) -> None:
    """One slowloris client until ``stop``: half a request header, then a byte a second;
    opened again whenever the server closes it. Counts openings, closes by the server and
    how long the server let each connection live."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] = stats.get("connect_errors", 0) + 1
            await asyncio.sleep(0.5)
            continue
        opened = time.perf_counter()
        stats["opened"] = stats.get("opened", 0) + 1
        try:
            writer.write(SLOW_HEAD)
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(4096), SLOW_DRIP_S)
                except TimeoutError:
                    writer.write(b"a")  # never the end of the header
                    continue
                if not data:  # closed by the server (after its 408, if any)
                    stats["closed_by_server"] = stats.get("closed_by_server", 0) + 1
                    stats.setdefault("lifetimes_s", []).append(time.perf_counter() - opened)
                    break
                if data.startswith(b"HTTP/1.1 "):
                    status = data[9:12].decode("latin-1")
                    stats.setdefault("statuses", {}).setdefault(status, 0)
                    stats["statuses"][status] += 1
        except OSError:  # reset by the server
            stats["closed_by_server"] = stats.get("closed_by_server", 0) + 1
            stats.setdefault("lifetimes_s", []).append(time.perf_counter() - opened)
        finally:
            writer.close()


async def warm_up(host: str, port: int, endpoints: list[str], questions: list[str], headers: dict[str, str],
                  clients: int, n: int = 5) -> None:
    """A few requests to every endpoint from ``clients`` connections at once, so that what
    the server sets up on first use (Kiwi, the answer models, a memory arena per busy
    thread) is in place before its memory is first measured: growth after that is what
    the load itself leaves behind."""

    async def one(i: int) -> None:
        conn = Connection(host, port, headers)
        try:
            for endpoint in endpoints:
                for j in range(n):
                    q = questions[(i * n + j) % len(questions)]
                    status, _, data = await conn.post(endpoint, json.dumps({"question": q}, ensure_ascii=False).encode())
                    if status != 200:
                        raise SystemExit(f"error: warm-up request to {endpoint} failed: HTTP {status}: {data[:200]!r}")
        finally:
            await conn.close()

    await asyncio.gather(*(one(i) for i in range(clients)))


def _slow_summary(stats: dict, n: int) -> dict:
    lifetimes = sorted(stats.get("lifetimes_s", []))
    out = {"held": n, "opened": stats.get("opened", 0), "closed_by_server": stats.get("closed_by_server", 0),
           "server_answers": stats.get("statuses", {}), "connect_errors": stats.get("connect_errors", 0)}
    if lifetimes:
        out["lifetime_s_median"] = round(statistics.median(lifetimes), 2)
        out["lifetime_s_max"] = round(lifetimes[-1], 2)
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def run_phase(host: str, port: int, endpoint: str, questions: list[str], args: argparse.Namespace,
                    headers: dict[str, str], server_pids: list[int], slow: int = 0) -> PhaseResult:
    result = PhaseResult(endpoint, args.clients, slow)
    stop_slow = asyncio.Event()
    slow_stats: dict = {}
    slow_tasks = [asyncio.create_task(slow_connection(host, port, stop_slow, slow_stats)) for _ in range(slow)]

    def body_of(q: str) -> bytes:
        return json.dumps({"question": q, "k": args.k, "mode": args.mode}, ensure_ascii=False).encode()

    budget = {"left": args.max_requests}
    deadline = {"t": float("inf")}

    async def client(i: int) -> None:
        conn = Connection(host, port, headers)
        pos = (i * 37) % len(questions)
        try:
            for _ in range(args.warmup):  # not recorded: fills caches, opens the connection
                await conn.post(endpoint, body_of(questions[pos % len(questions)]))
                pos += 1
            ready["n"] += 1
            await start.wait()
            while time.perf_counter() < deadline["t"] and budget["left"] > 0:
                budget["left"] -= 1
                q = questions[pos % len(questions)]
                pos += 1
                t0 = time.perf_counter()
                try:
                    status, hdrs, data = await asyncio.wait_for(conn.post(endpoint, body_of(q)), args.timeout)
                except Exception as exc:  # timeouts, resets: an error, keep going
                    result.errors += 1
                    result.error_samples.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    continue
                ms = (time.perf_counter() - t0) * 1e3
                if status != 200 or not data:
                    result.errors += 1
                    result.error_samples.append(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
                    continue
                result.latencies_ms.append(ms)
                if "server-timing" in hdrs:
                    _parse_server_timing(hdrs["server-timing"], result.stages)
        finally:
            await conn.close()

    start = asyncio.Event()
    ready = {"n": 0}
    tasks = [asyncio.create_task(client(i)) for i in range(args.clients)]
    while ready["n"] < args.clients and not any(t.done() for t in tasks):  # all warm-ups finished
        await asyncio.sleep(0.02)
    for t in tasks:
        if t.done() and t.exception() is not None:
            raise SystemExit(f"error: warm-up request to {endpoint} failed: {t.exception()!r}")
    cpu0, srv0 = time.process_time(), _server_cpu(server_pids)
    result.rss_start_mb = _rss_mb(server_pids)
    t0 = time.perf_counter()
    deadline["t"] = t0 + args.duration
    start.set()
    try:
        await asyncio.gather(*tasks, return_exceptions=False)
    finally:
        stop_slow.set()
        await asyncio.gather(*slow_tasks, return_exceptions=True)
    result.seconds = time.perf_counter() - t0
    result.client_cpu_s = time.process_time() - cpu0
    srv1 = _server_cpu(server_pids)
    if srv0 is not None and srv1 is not None:
        result.server_cpu_s = srv1 - srv0
    result.rss_end_mb = _rss_mb(server_pids)
    if slow:
        result.slow_stats = _slow_summary(slow_stats, slow)
    return result


# ----------------------------------------------------------------------------- server management


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log_path = OUT_DIR / "load_api_server.log"
    kwargs = f"port={port}" + (f", workers={args.workers}" if args.workers != 1 else "")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-c", f"from rag.api.server import serve; serve({kwargs})"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.startup_timeout
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: the server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url, log_path
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    sys.exit(f"error: the server did not become ready in {args.startup_timeout:.0f} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- reporting


def table(rows: list[dict]) -> str:
    cols = [("endpoint", "endpoint"), ("phase", "phase"), ("clients", "clients"), ("requests", "requests"),
            ("errors", "errors"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
            ("max_ms", "max ms"), ("server_cpu_ms_per_req", "server CPU ms/req"), ("rss", "server RSS MB")]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(k) is None else str(r.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)


def stages_table(rows: list[dict]) -> str:
    names: list[str] = []
    for r in rows:
        for k in r["server_stage_mean_ms"]:
            if k not in names:
                names.append(k)
    if not names:
        return ""
    lines = ["| endpoint | phase | " + " | ".join(names) + " |", "|---|---|" + "|".join("---" for _ in names) + "|"]
    for r in rows:
        lines.append(f"| {r['endpoint']} | {r.get('phase', 'plain')} | "
                     + " | ".join(str(r["server_stage_mean_ms"].get(n, "")) for n in names) + " |")
    return "\n".join(lines)


def slowdowns(rows: list[dict]) -> list[dict]:
    """Per endpoint with both phases: the slow phase against the plain one."""
    out = []
    for plain in (r for r in rows if not r.get("slow_connections")):
        slow = next((r for r in rows if r["endpoint"] == plain["endpoint"] and r.get("slow_connections")), None)
        if slow is None or not plain["rps"] or not plain["p95_ms"] or slow["p95_ms"] is None:
            continue
        drop = 1 - slow["rps"] / plain["rps"]
        rise = slow["p95_ms"] / plain["p95_ms"] - 1
        errors = plain["errors"] + slow["errors"]
        ok = drop <= SLOW_TARGET["max_slowdown"] and rise <= SLOW_TARGET["max_slowdown"] and errors <= SLOW_TARGET["max_errors"]
        out.append({"endpoint": plain["endpoint"], "slow_connections": slow["slow_connections"],
                    "rps_plain": plain["rps"], "rps_slow": slow["rps"], "throughput_drop_pct": round(100 * drop, 1),
                    "p95_plain_ms": plain["p95_ms"], "p95_slow_ms": slow["p95_ms"], "p95_rise_pct": round(100 * rise, 1),
                    "errors": errors, "slow": slow.get("slow", {}), "verdict": "MET" if ok else "MISSED"})
    return out


def slowdown_table(rows: list[dict]) -> str:
    items = slowdowns(rows)
    if not items:
        return ""
    lines = [("| endpoint | slow connections | req/s plain → slow | throughput change | p95 ms plain → slow | p95 change "
              "| errors | slow connections opened / closed by the server | median life s | target (≤ 20 % slower, 0 errors) |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for d in items:
        s = d["slow"]
        lines.append(f"| {d['endpoint']} | {d['slow_connections']} | {d['rps_plain']} → {d['rps_slow']} | "
                     f"{-d['throughput_drop_pct']:+.1f} % | {d['p95_plain_ms']} → {d['p95_slow_ms']} | "
                     f"{d['p95_rise_pct']:+.1f} % | {d['errors']} | {s.get('opened', 0)} / {s.get('closed_by_server', 0)} | "
                     f"{s.get('lifetime_s_median', '')} | **{d['verdict']}** |")
    return "\n".join(lines)


def target_verdict(rows: list[dict], clients: int, mode: str) -> Optional[str]:
    """MET/MISSED against TARGET, for the run it is defined for (hybrid /search, 8 clients)."""
    row = next((r for r in rows if r["endpoint"] == TARGET["endpoint"] and not r.get("slow_connections")), None)
    if row is None or clients != TARGET["clients"] or mode != "hybrid":
        return None
    ok = (row["rps"] >= TARGET["min_rps"] and row["errors"] <= TARGET["max_errors"]
          and row["p95_ms"] is not None and row["p95_ms"] <= TARGET["max_p95_ms"])
    return (f"{'MET' if ok else 'MISSED'}: /search with {clients} clients: {row['rps']} req/s "
            f"(target ≥ {TARGET['min_rps']:.0f}), p95 {row['p95_ms']} ms (≤ {TARGET['max_p95_ms']:.0f}), "
            f"{row['errors']} errors (target 0)")


def write_report(payload: dict) -> None:
    rows = payload["results"]
    verdict = target_verdict(rows, payload["config"]["clients"], payload["config"]["mode"])
    m = payload["machine"]
    section = [
        START_MARK,
        "## HTTP API load (`benchmarks/load_api.py`)",
        "",
        f"Run {payload['finished']} on {m['cpus']} CPUs ({m['platform']}, Python {m['python']}), "
        f"load average before the run {m['loadavg_before']}, after it {m.get('loadavg_after')} "
        "(on 2 CPUs, a load average well above 2 means other jobs were running too).",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"{payload['config']['clients']} keep-alive clients per endpoint, {payload['config']['duration']} s per phase "
        f"(at most {payload['config']['max_requests']} requests), k={payload['config']['k']}, "
        f"mode={payload['config']['mode']}, {payload['config']['n_questions']} Korean questions in rotation; "
        "client and server share the machine; "
        + (f"server started by the script with {payload['config']['workers']} worker process(es), "
           f"OMP_NUM_THREADS={payload['config']['omp_num_threads']}."
           if payload["config"]["started_server"] else f"server at {payload['config']['url']}."),
        "",
        table(rows),
        "",
    ]
    rss = payload.get("server_rss_mb") or {}
    if rss.get("start") is not None and rss.get("end") is not None:
        section += [(f"Server RSS: {rss['start']:.0f} MB after a warm-up of each endpoint, {rss['end']:.0f} MB after "
                     f"the last phase ({rss['end'] - rss['start']:+.0f} MB over {rss['requests']:,} requests)."), ""]
    sd = slowdown_table(rows)
    if sd:
        section += [("With slow connections held (each sends half a request header, then a byte a second, and is "
                     "opened again when the server closes it; `phase` +N slow above), against the plain phase "
                     "just before it:"), "", sd, ""]
    st = stages_table(rows)
    if st:
        section += ["Server-side mean per request (ms, from the `Server-Timing` header: wall time inside the "
                    "server, so it includes waiting for a CPU; `encode` is the query embedding, `analyse` Kiwi, "
                    "`compose` the answer):", "", st, ""]
    if verdict:
        section += [f"Target: **{verdict}**.", ""]
    if payload.get("notes"):
        section += [payload["notes"], ""]
    section.append(END_MARK)
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else "# Benchmarks\n"
    block = "\n".join(section)
    if START_MARK in text and END_MARK in text:
        before, rest = text.split(START_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    REPORT.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------- main


def _command_line(argv: list[str]) -> str:
    """The command as run, with the free-text --notes value left out."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--notes":
            shown.append("--notes …")
            skip = True
        elif a.startswith("--notes="):
            shown.append("--notes=…")
        else:
            shown.append(a)
    return " ".join(["python benchmarks/load_api.py", *shown])


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("RAG_API_URL", "http://127.0.0.1:8000"))
    ap.add_argument("--start", action="store_true", help="start a server on a free port for the run")
    ap.add_argument("--workers", type=int, default=1, help="with --start: uvicorn worker processes")
    ap.add_argument("--server-pid", type=int, help="measure this server process's CPU (implied by --start)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per phase (the report's run: 60)")
    ap.add_argument("--max-requests", type=int, default=20_000, help="per endpoint")
    ap.add_argument("--endpoints", default="search,chat", help="comma-separated: search, chat")
    ap.add_argument("--slow", type=int, default=50,
                    help="slow half-open connections held during each endpoint's second phase (0: no second phase)")
    ap.add_argument("--mode", default="hybrid", choices=["hybrid", "bm25", "dense"])
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3, help="unrecorded requests per client before each phase")
    ap.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    ap.add_argument("--questions", type=Path, help="JSONL with a question field (default: evaluation/qa.jsonl)")
    ap.add_argument("--api-key", default=os.environ.get("RAG_API_KEY"))
    ap.add_argument("--startup-timeout", type=float, default=900.0)
    ap.add_argument("--notes", default="", help="free text added to the report section")
    ap.add_argument("--no-report", action="store_true", help="do not touch benchmarks/report.md")
    args = ap.parse_args(argv)

    questions = load_questions(args.questions)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    proc = None
    url = args.url
    if args.start:
        proc, url, log_path = start_server(args)
        print(f"started a server at {url} (log: {log_path})", file=sys.stderr)
    server_pids: list[int] = []
    if proc is not None:
        server_pids = [proc.pid] + _children(proc.pid)
    elif args.server_pid:
        server_pids = [args.server_pid] + _children(args.server_pid)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rows = []
    rss_end = rss_start = None
    names = [e.strip().lstrip("/") for e in args.endpoints.split(",") if e.strip()]
    for name in names:
        if name not in ("search", "chat"):
            sys.exit(f"error: unknown endpoint {name!r} (search, chat)")
    try:
        asyncio.run(warm_up(host, port, ["/" + n for n in names], questions, headers, args.clients))
        rss_start = _rss_mb(server_pids)
        for name in names:
            for slow in ([0, args.slow] if args.slow > 0 else [0]):
                extra = f", {slow} slow connections held" if slow else ""
                print(f"/{name}: {args.clients} clients, {args.duration:g} s{extra} …", file=sys.stderr)
                res = asyncio.run(run_phase(host, port, "/" + name, questions, args, headers, server_pids, slow))
                rows.append(res.summary())
        rss_end = _rss_mb(server_pids)
    finally:
        if proc is not None:
            stop_server(proc)

    print(table(rows))
    sd = slowdown_table(rows)
    if sd:
        print("\nwith slow connections held, against the plain phase:\n" + sd)
    if rss_start is not None and rss_end is not None:
        print(f"\nserver RSS: {rss_start:.0f} MB → {rss_end:.0f} MB ({rss_end - rss_start:+.0f} MB)")
    st = stages_table(rows)
    if st:
        print("\nserver-side mean per request (ms):\n" + st)
    verdict = target_verdict(rows, args.clients, args.mode)
    if verdict:
        print("\n" + verdict)
    for r in rows:
        for sample in r.get("error_samples", []):
            print(f"  {r['endpoint']} error: {sample}", file=sys.stderr)

    payload = {
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": _command_line(argv if argv is not None else sys.argv[1:]),
        "config": {"url": url, "started_server": bool(args.start), "workers": args.workers, "clients": args.clients,
                   "duration": args.duration, "max_requests": args.max_requests, "mode": args.mode, "k": args.k,
                   "slow": args.slow,
                   "warmup": args.warmup, "n_questions": len(questions),
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1 (serve() default)")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": loadavg_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "target": TARGET, "verdict": verdict, "results": rows, "notes": args.notes,
        "slow_target": SLOW_TARGET, "slowdowns": slowdowns(rows),
        "server_rss_mb": {"start": rss_start, "end": rss_end, "requests": sum(r["requests"] for r in rows)},
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "load_api.json").write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if not args.no_report:
        write_report(payload)
    return 0 if all(r["errors"] == 0 for r in rows) and all(d["verdict"] == "MET" for d in slowdowns(rows)) else 1


if __name__ == "__main__":
    sys.exit(main())
