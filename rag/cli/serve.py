"""``rag serve``: run the HTTP API (:mod:`rag.api`) with uvicorn.

The port is checked before FastAPI, uvicorn and the index are loaded, so a typo fails at once.
"""

from __future__ import annotations

import os

import typer

from rag.cli.render import EXIT_BAD_INPUT, fail


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", help="Server processes; 0: one per CPU core. Each loads "
                                "the index and the question engine (~0.8 GB)."),
) -> None:
    """Start the HTTP API (POST /chat, POST /search, GET /health, /documents; docs at /docs)."""
    if not 0 < port < 65536:
        fail(f"--port는 1부터 65535 사이의 수여야 합니다 (받은 값: {port})", EXIT_BAD_INPUT)
    if workers < 0:
        fail(f"--workers는 0(코어마다 하나) 이상이어야 합니다 (받은 값: {workers})", EXIT_BAD_INPUT)
    from rag.api.server import (
        serve,  # lazy: start-up time (FastAPI, uvicorn, the index)
    )

    serve(host=host, port=port, workers=workers or os.cpu_count() or 1)
