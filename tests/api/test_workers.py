"""``rag serve --workers N``: N server processes behind one port, each answering as one does."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from live_server import STARTUP_TIMEOUT, LiveServer

QUESTION = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


def test_two_workers_answer_alike(project_index, tmp_path):
    server = LiveServer("workers", tmp_path, {}, args=("--workers", "2"))
    try:
        server.wait_ready(time.monotonic() + STARTUP_TIMEOUT)
        # uvicorn's workers are spawned processes (beside them runs multiprocessing's resource tracker)
        workers = [c for c in _children(server.proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, (workers, server.log())
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answers = {client.post("/chat", json={"question": QUESTION}).json()["answer"] for _ in range(6)}
            assert len(answers) == 1 and "광주첨단산단" in answers.pop()  # whichever worker answered
            assert client.get("/health").json()["index"]["query_engine"] == "onnx"
    finally:
        server.stop()
