"""Time to first answer text and to the complete answer, as the staff web page sees them.

Usage::

    python benchmarks/bench_page_ttft.py                  # start a server itself (private index)
    python benchmarks/bench_page_ttft.py --url http://127.0.0.1:8000 --questions 20

Opens ``/`` in Debian's Chromium (``/usr/bin/chromium``, driven by Playwright; only
loopback reachable), then for each of ``--questions`` different questions of
``evaluation/qa.jsonl`` (a fixed sample): starts a new conversation (새 대화), types the
question, presses Enter and waits until the answer is complete. The page itself records,
with ``performance.now()``, the milliseconds from the submit to the first answer text put
on the page (``firstTextMs``: the first ``delta`` event's text, or the whole answer from
an older server that sends none) and to the complete answer (``completeMs``: the stream's
``done``), plus the server's own ``timing_ms`` (``window.__ragTimings``). One warm-up
question is asked first and left out of the figures.

Outputs: a table on stdout (median and p95 of each), ``benchmarks/out/page_ttft.json``
(every question's figures, the machine, the load average before and after).

With ``--start`` (the default without ``--url``) the server runs on a private copy of the
corpus and index under ``benchmarks/out/real/`` (see ``synthetic.real_settings``), so the
benchmark never touches ``index/``.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import synthetic  # benchmarks/synthetic.py: statistics, machine, output folder

CHROMIUM = os.environ.get("RAGTEST_CHROMIUM", "/usr/bin/chromium")
WARMUP_QUESTION = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"


def pick_questions(n: int, seed: int = 7) -> list[str]:
    """``n`` different questions of the curated set (a seeded sample, same every run)."""
    seen: list[str] = []
    for q in synthetic.questions():
        text = q.get("question", "").strip()
        if text and text not in seen and text != WARMUP_QUESTION:
            seen.append(text)
    if len(seen) < n:
        raise SystemExit(f"error: only {len(seen)} different questions in {synthetic.QA_FILE}")
    return random.Random(seed).sample(seen, n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(timeout: float) -> tuple[subprocess.Popen, str, Path]:
    """``rag.api.server.serve`` on a free loopback port, on the private corpus copy; returns
    (process, base URL, log path) once /health answers."""
    settings = synthetic.real_settings()
    port = _free_port()
    synthetic.OUT.mkdir(parents=True, exist_ok=True)
    log_path = synthetic.OUT / "page_ttft_server.log"
    env = {k: v for k, v in os.environ.items() if k != "RAG_API_KEY"}
    env.update(synthetic.env_for(settings))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-c", f"from rag.api.server import serve; serve(port={port})"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url, log_path
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"error: the server did not become ready in {timeout:.0f} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (kill it after 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ask_on_page(page, question: str, timeout_ms: float) -> dict:
    """New conversation, ask ``question``, wait for its turn to finish; the page's timing entry."""
    page.get_by_role("button", name="새 대화").click()
    before = page.evaluate("window.__ragTimings.length")
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.wait_for_function("n => window.__ragTimings.length > n", arg=before, timeout=timeout_ms)
    entry = page.evaluate("window.__ragTimings[window.__ragTimings.length - 1]")
    entry["answerable"] = page.locator(".turn").last.get_attribute("data-answerable")
    return entry


def measure(url: str, questions: list[str], timeout_ms: float) -> dict:
    """Run the page over ``questions`` in Chromium; the raw entries and the browser version."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--disable-dev-shm-usage", "--proxy-server=http://127.0.0.1:9",
                  "--proxy-bypass-list=127.0.0.1;localhost;[::1]"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="ko-KR")
            page.goto(url + "/")
            page.wait_for_function("() => window.__ragTimings !== undefined")
            warmup = ask_on_page(page, WARMUP_QUESTION, timeout_ms)
            entries = [ask_on_page(page, q, timeout_ms) for q in questions]
            return {"browser": f"Chromium {browser.version}", "warmup": warmup, "entries": entries}
        finally:
            browser.close()


def render(result: dict) -> str:
    """The figures as a small markdown table."""
    s = result["summary"]
    rows = ["| what | n | median ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for key, label in (("first_text_ms", "submit → first answer text on the page"),
                       ("complete_ms", "submit → complete answer"),
                       ("server_ms", "server's own time (done.timing_ms)")):
        v = s[key]
        rows.append(f"| {label} | {v.get('n', 0)} | {v.get('p50', '–')} | {v.get('p95', '–')} | {v.get('max', '–')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure, print and save; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running server (default: start one on a private index)")
    ap.add_argument("--questions", type=int, default=20, help="how many different questions (default 20)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer")
    ap.add_argument("--startup-timeout", type=float, default=900.0)
    args = ap.parse_args(argv)

    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"error: no Chromium at {CHROMIUM}: apt-get install -y chromium")
    questions = pick_questions(args.questions)
    load_before = synthetic.load_average()
    proc = None
    url = args.url
    if url is None:
        print("starting a server on the private index (benchmarks/out/real/) …", flush=True)
        proc, url, _ = start_server(args.startup_timeout)
    try:
        raw = measure(url.rstrip("/"), questions, args.timeout * 1000)
    finally:
        if proc is not None:
            stop_server(proc)
    entries = raw["entries"]
    failed = [e for e in entries if not e.get("ok")]
    ok = [e for e in entries if e.get("ok")]
    result = {
        "what": "staff page: submit → first answer text rendered, and → complete answer (browser-side, performance.now())",
        "url": url if args.url else "started by the benchmark (private index)",
        "browser": raw["browser"],
        "questions": len(entries),
        "errors": len(failed),
        "streamed_deltas": sum(int(e.get("deltas") or 0) for e in ok),
        "summary": {
            "first_text_ms": synthetic.summary(e["firstTextMs"] for e in ok),
            "complete_ms": synthetic.summary(e["completeMs"] for e in ok),
            "server_ms": synthetic.summary(e["serverMs"] for e in ok if e.get("serverMs") is not None),
        },
        "warmup": raw["warmup"],
        "per_question": [{"question": e["question"], "first_text_ms": round(e["firstTextMs"] or 0, 1),
                          "complete_ms": round(e["completeMs"] or 0, 1), "server_ms": e.get("serverMs"),
                          "deltas": e.get("deltas"), "answerable": e.get("answerable"), "ok": e.get("ok")}
                         for e in entries],
        "load_average": {"before": load_before, "after": synthetic.load_average()},
        "machine": synthetic.machine_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = synthetic.save_json("page_ttft", result)
    print(render(result))
    print(f"{len(entries)} questions, {len(failed)} errors, {result['streamed_deltas']} delta events; "
          f"load average {load_before[0]:.2f} → {result['load_average']['after'][0]:.2f}; wrote {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
