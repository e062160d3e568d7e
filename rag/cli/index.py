"""``rag index build`` and ``rag index status``: the ``index`` command group.

Building shows a progress bar on stderr; status prints a table of key/value rows for
people (or ``--json`` for machines) and exits 1 when there is no index or it is stale, so
scripts can test it.
"""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table
from rich.text import Text

from rag.cli.render import (
    EXIT_FAILURE,
    FlagCommand,
    FlagGroup,
    err,
    fail,
    out,
    print_json,
    progress_bar,
)
from rag.config import Settings
from rag.errors import RagError

index_app = typer.Typer(cls=FlagGroup, no_args_is_help=True, help="Build or inspect the search index.")

#: How ``rag index build`` stamps a build (``created`` in the manifest and the status).
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def local_time(created: str) -> str:
    """A build's ``created`` stamp as local date and time, e.g. ``2026-12-03 19:18:58 KST``;
    the stamp as is when it cannot be read."""
    try:
        when = datetime.strptime(created, CREATED_FORMAT).astimezone()
    except (TypeError, ValueError):
        return str(created)
    return f"{when:%Y-%m-%d %H:%M:%S} {when.tzname() or when.strftime('%z')}".rstrip()


def megabytes(n: int) -> str:
    """A size in bytes as megabytes (10^6 bytes), e.g. ``0.79 MB``."""
    return f"{n / 1_000_000:,.2f} MB"


def status_rows(status: dict) -> list[tuple[str, Text]]:
    """The rows of the ``index status`` table: a Korean label and a readable value."""
    reasons = "; ".join(status.get("reasons") or [])
    if not status.get("built"):
        state = Text("손상됨" if status.get("corrupt") else "없음", style="red")
        rows = [("상태", state)]
        if reasons:
            rows.append(("이유", Text(reasons)))
        if status.get("checksums") == "mismatch":
            rows.append(("체크섬", Text(f"불일치 ({status.get('checksum_mismatch')})", style="red")))
        rows.append(("경로", Text(status["index_dir"])))
        return rows
    if status.get("stale"):
        current = Text(f"아니요 — 다시 만들어야 합니다 ({reasons})", style="yellow")
    else:
        current = Text("예 — 코퍼스·설정과 일치", style="green")
    rows = [
        ("상태", Text("만들어짐", style="green")),
        ("최신 여부", current),
        ("문서 수", Text(f"{status['documents']:,}")),
        ("청크 수", Text(f"{status['chunks']:,}")),
        ("임베딩 모델", Text(str(status["model"]))),
        ("만든 시각", Text(local_time(status["created"]))),
    ]
    if status.get("build_seconds") is not None:
        rows.append(("만드는 데 걸린 시간", Text(f"{status['build_seconds']:.1f}초")))
    if status.get("checksums") == "ok":
        rows.append(("체크섬", Text(f"일치 ({status.get('checksum_files', 0)}개 파일)", style="green")))
    rows += [
        ("디스크 크기", Text(megabytes(status["bytes"]))),
        ("경로", Text(status["index_dir"])),
        ("빌드", Text(str(status["build"]))),
    ]
    backend = status.get("backend") or {}
    if backend.get("backend") == "milvus":
        synced = (Text(f"예 ({backend.get('rows', 0):,}행)", style="green") if backend.get("in_sync")
                  else Text(f"아니요 — {backend.get('error') or '`rag index build`로 맞추세요'}", style="yellow"))
        rows += [("검색 백엔드", Text(f"Milvus {backend.get('uri', '')} · {backend['collection']}")),
                 ("Milvus 일치", synced)]
    return rows


@index_app.command("build", cls=FlagCommand)
def index_build() -> None:
    """Build the index from corpus/ (reusing embeddings of unchanged chunks)."""
    from rag.index.backend import open_backend  # lazy: start-up time
    from rag.index.build import build_index
    from rag.index.spec import BuildSpec
    from rag.text.korean import get_analyzer

    settings = Settings()
    try:
        with progress_bar() as report:
            index = build_index(settings, progress=report)
            if settings.backend != "files":
                spec = BuildSpec()
                analyzer = get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
                open_backend(settings, index, analyzer, progress=report,
                             notice=lambda text: err.print(text, soft_wrap=True)).close()
    except RagError as exc:
        fail(str(exc))
    m = index.manifest
    err.print(f"[green]built[/] {m['n_chunks']} chunks from {len(m['corpus'])} documents in "
              f"{m['build_seconds']} s ({m['reembedded']} embedded, the rest reused) → {index.path}")
    if settings.backend != "files":
        err.print(f"[green]synced[/] Milvus collection {settings.milvus_collection}")


@index_app.command("status", cls=FlagCommand)
def index_status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash every artifact against the manifest "
                                "(every load does this now; kept for scripts)."),
) -> None:
    """What is built, and whether it is stale against corpus/ and the settings."""
    from rag.index.backend import add_backend_status  # lazy: start-up time
    from rag.index.store import index_status

    try:
        settings = Settings()
        # checksums are always checked; --verify is kept for scripts
        status = add_backend_status(settings, index_status(settings))
    except RagError as exc:
        fail(str(exc))
    if as_json:
        print_json(status)
    else:
        table = Table(show_header=False, title="색인 상태", title_justify="left")
        table.add_column("항목", style="bold", no_wrap=True)
        table.add_column("값", overflow="fold")
        for label, value in status_rows(status):
            table.add_row(label, value)
        out.print(table)
    if not status["built"] or status["stale"]:
        raise typer.Exit(EXIT_FAILURE)
