"""``rag index build`` and ``rag index status``: the ``index`` command group.

Building shows a progress bar on stderr; status prints a table (or ``--json``) and exits 1
when there is no index or it is stale, so scripts can test it.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from rag.cli.render import EXIT_FAILURE, err, fail, out, print_json, progress_bar
from rag.config import Settings
from rag.errors import RagError

index_app = typer.Typer(no_args_is_help=True, help="Build or inspect the search index.")


@index_app.command("build")
def index_build() -> None:
    """Build the index from corpus/ (reusing embeddings of unchanged chunks)."""
    from rag.index.build import build_index  # lazy: start-up time

    try:
        with progress_bar() as report:
            index = build_index(Settings(), progress=report)
    except RagError as exc:
        fail(str(exc))
    m = index.manifest
    err.print(f"[green]built[/] {m['n_chunks']} chunks from {len(m['corpus'])} documents in "
              f"{m['build_seconds']} s ({m['reembedded']} embedded, the rest reused) → {index.path}")


@index_app.command("status")
def index_status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash every artifact against the manifest."),
) -> None:
    """What is built, and whether it is stale against corpus/ and the settings."""
    from rag.index.store import index_status  # lazy: start-up time

    try:
        status = index_status(Settings(), verify=verify)
    except RagError as exc:
        fail(str(exc))
    if as_json:
        print_json(status)
    else:
        table = Table(show_header=False, title="index")
        for key, value in status.items():
            table.add_row(key, json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
        out.print(table)
    if not status["built"] or status["stale"]:
        raise typer.Exit(EXIT_FAILURE)
