"""A real API server on loopback for end-to-end tests: ``rag serve --port …`` (the CLI entry
point, ``python -m rag.cli.main serve``) in a child process, on the session's corpus and
index (tests/conftest.py sets ``RAG_*``), with extra environment (an API key, CORS origins,
the server's limits such as ``RAG_HEADER_TIMEOUT``) per server. Used by tests/api,
tests/integrations and tests/web; not a test module itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = float(os.environ.get("RAG_TEST_STARTUP_TIMEOUT", "900"))  # a first index build is ~1 min


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Variables of the caller that would change a server's behaviour; a server gets only its own.
SERVER_ENV = ("RAG_API_KEY", "RAG_CORS_ORIGINS", "RAG_HEADER_TIMEOUT", "RAG_BODY_TIMEOUT", "RAG_MAX_CONNECTIONS",
              "RAG_MAX_INFLIGHT", "RAG_MAX_QUEUE", "RAG_QUEUE_WAIT")


class LiveServer:
    """``rag serve`` in a child process; its output goes to ``log_dir/name.log``."""

    def __init__(self, name: str, log_dir: Path, extra_env: dict[str, str], args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV}
        env.update(extra_env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli.main", "serve", "--port", str(self.port), *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def log(self, tail: int = 3000) -> str:
        """The last ``tail`` characters of the server's output (all of it with ``tail=0``)."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-tail:] if tail else text

    def wait_ready(self, deadline: float) -> None:
        """Poll /health until 200; fail the test with the server's log if it dies or never answers."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode} during startup:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        pytest.fail(f"server not ready after {STARTUP_TIMEOUT:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextmanager
def running(log_dir: Path, **servers: dict[str, str]) -> Iterator[dict[str, LiveServer]]:
    """Start one server per keyword (its name) with that extra environment, all at once;
    yield them by name when every one answers /health, stop them all afterwards."""
    started: dict[str, LiveServer] = {}
    try:
        for name, env in servers.items():
            started[name] = LiveServer(name, log_dir, env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for srv in started.values():
            srv.wait_ready(deadline)
        yield started
    finally:
        for srv in started.values():
            srv.stop()


def json_error(r: httpx.Response, status: int) -> dict:
    """Assert the API's one-line JSON error with this status; return its ``error`` object."""
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    return body["error"]
