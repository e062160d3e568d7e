"""Terminal helpers shared by the `rag` commands: consoles, errors, JSON output, the
progress bar, opening the retriever, rendering an answer.

Kept apart from rag.cli.main so that command modules never import the entry-point module.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from rag.errors import RagError
from rag.eval.evalset import QAItem, load_qa

if TYPE_CHECKING:
    from rag.answer.cite import Answer
    from rag.search.retriever import Retriever
    from rag.types import Passage

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

MODE_HELP = "hybrid (default), bm25 or dense"


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def percent(share: float | None) -> str:
    """A share as a table cell: ``95.0%``, or ``–`` when there was nothing to count."""
    return "–" if share is None else f"{100 * share:.1f}%"


def load_question_set(path: Path) -> list[QAItem]:
    """The questions of a JSONL set, or exit 2 with one line when it is unreadable or empty."""
    try:
        items = load_qa(path)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT)
    except (ValueError, UnicodeDecodeError) as exc:
        fail(str(exc).splitlines()[0], EXIT_BAD_INPUT)
    if not items:
        fail(f"{path} holds no questions", EXIT_BAD_INPUT)
    return items


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar on stderr fed by the core's ``progress(stage, advance, total)``."""
    labels = {"chunk": "문서 분할", "analyse": "형태소 분석", "embed": "임베딩"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, advance: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], advance=advance, total=total)

        yield report


def open_retriever() -> Retriever:
    """Load the index (building it when missing or stale, with a bar), or exit with the reason."""
    from rag.search.retriever import Retriever  # lazy: start-up time

    try:
        with progress_bar() as report:
            return Retriever.open(progress=report, notice=lambda m: err.print(f"[yellow]{m}[/]"))
    except RagError as exc:
        fail(str(exc))


def section_cell(p: Passage) -> str:
    return f"{p.doc_title}\n[dim]{p.section or '(문서 첫머리)'}\n{p.doc_id} [{p.start}:{p.end}][/]"


def print_answer(ans: Answer) -> None:
    """The answer in a panel, then each citation: its number, document, section, the
    exact span (document offsets) and the quoted text; or, when the documents do not
    answer, the closest passages."""
    style = "green" if ans.answerable else "yellow"
    out.print(Panel(Text(ans.answer), title=Text(ans.question, style="bold"), border_style=style, expand=True))
    if ans.citations:
        table = Table(title="근거 (citations)", show_lines=True, expand=True)
        table.add_column("\\[n]", width=4)
        table.add_column("문서 · 위치", ratio=2)
        table.add_column("인용 (문서 원문 그대로)", ratio=5)
        for i, c in enumerate(ans.citations, 1):
            p = c.passage
            loc = Text(f"{p.doc_title}\n")
            loc.append(f"{p.section or '(문서 첫머리)'}\n{p.doc_id} [{c.quote_start}:{c.quote_end}]", style="dim")
            quote = Text(c.quote.replace("\t", " | "))
            if getattr(c, "columns", ()):
                quote.append(f"\n(열: {' | '.join(x for x in c.columns if x)})", style="dim")
            table.add_row(f"[{i}]", loc, quote)
        out.print(table)
    elif ans.related:
        if getattr(ans, "reason", ""):
            out.print(Text(ans.reason, style="yellow"))
        out.print("[dim]관련 있을 수 있는 구절:[/]")
        for p in ans.related[:3]:
            out.print(Text(f"- {p.doc_title} · {p.section or '(문서 첫머리)'} · {p.doc_id} [{p.start}:{p.end}]", style="dim"))
