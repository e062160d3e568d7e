"""`rag calibrate`: choose when to abstain on the curated set, and measure the answers.

Registered on the main app in :mod:`rag.cli.main`. All the work is done by
:mod:`rag.eval.calibration` (the core); this face parses options, shows a progress bar on
stderr, prints the report section on stdout, and writes ``rag/data/abstention.json`` and
the answers section of ``evaluation/report.md`` (only between its markers).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from rag.cli import render as cli_common
from rag.config import PROJECT_ROOT
from rag.errors import RagError

EVALUATION = PROJECT_ROOT / "evaluation"


@contextmanager
def _progress() -> Iterator:
    """One bar per question set on stderr, gone when the command ends."""
    # disabled off a terminal: a transient bar shows nothing there, and rich ends it with a blank line
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=cli_common.err, transient=True, disable=not cli_common.err.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, advance: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], advance=advance, total=total)

        yield report



def calibrate_command(
    qa: Path = typer.Option(EVALUATION / "qa.jsonl", "--qa", help="Curated set (JSONL)."),
    heldout: Path = typer.Option(EVALUATION / "heldout.jsonl", "--heldout", help="Questions scored, never used to choose."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the figures, write nothing."),
    report_only: bool = typer.Option(False, "--report-only",
                                     help="Rewrite the report section from rag/data/abstention.json without re-running."),
) -> None:
    """Calibrate when to abstain, and measure the answers, on the curated set."""
    from rag.eval.calibration import (  # lazy: start-up time (the answer modules)
        DATA_FILE,
        REPORT,
        load_data,
        report_section,
        run_calibration,
        write_data,
        write_report,
    )

    if report_only:
        try:
            data = load_data()
        except OSError as exc:
            cli_common.fail(f"{DATA_FILE}을(를) 읽을 수 없습니다 ({cli_common.os_reason(exc)})")
        except ValueError as exc:
            cli_common.fail(f"{DATA_FILE}이(가) 올바른 JSON 파일이 아닙니다 ({exc})")
        write_report(report_section(data))
        return
    cli_common.load_question_set(qa)
    if heldout.exists():
        cli_common.load_question_set(heldout)
    retriever = cli_common.open_retriever()
    try:
        with _progress() as progress:
            data = run_calibration(retriever, qa, heldout, progress=progress)
    except RagError as exc:
        cli_common.fail_with(exc)
    section = report_section(data)
    typer.echo(section)
    if not dry_run:
        write_data(data)
        write_report(section)
        cli_common.err.print(f"wrote {DATA_FILE.relative_to(PROJECT_ROOT)} and the answers section of "
                             f"{REPORT.relative_to(PROJECT_ROOT)}", markup=False, soft_wrap=True)
