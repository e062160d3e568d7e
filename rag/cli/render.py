"""Terminal helpers shared by the `rag` commands: consoles, errors, JSON output, the
progress bar, opening the retriever, rendering an answer.

Kept apart from rag.cli.main so that command modules never import the entry-point module.
"""

from __future__ import annotations

import errno
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NoReturn

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
from typer.core import TyperCommand, TyperGroup

from rag.errors import ConfigError, InputError, RagError
from rag.eval.evalset import QAItem, load_qa
from rag.ingest.lines import clean_display
from rag.text.outside import printable

if TYPE_CHECKING:
    from rag.answer.cite import Answer
    from rag.search.retriever import Retriever
    from rag.types import Passage

out = Console(highlight=False, soft_wrap=False)
#: stderr: notices and errors are never wrapped (rich wraps at 80 columns when stderr is not
#: a terminal, which would cut a long path over several lines of a log).
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

MODE_HELP = "hybrid (default), bm25 or dense"


#: What every error line on stderr starts with.
ERROR_PREFIX = "오류:"


def print_error(message: str) -> None:
    """``오류: message`` on stderr as exactly one line: never wrapped, never read as markup,
    and printable whatever it holds (an undecodable byte echoed from the input shows as
    ``\\xff``)."""
    one_line = " ".join(part.strip() for part in printable(str(message)).splitlines() if part.strip())
    err.print(Text.assemble((ERROR_PREFIX, "bold red"), " ", one_line), soft_wrap=True, highlight=False)


def print_notice(message: str) -> None:
    """A notice (in yellow) on stderr as one line, never read as markup."""
    err.print(Text(printable(str(message)), style="yellow"), soft_wrap=True, highlight=False)


def exit_code(exc: RagError) -> int:
    """2 when the user's input or settings are wrong (:class:`InputError`, :class:`ConfigError`),
    1 when something the command needs is missing or broken."""
    return EXIT_BAD_INPUT if isinstance(exc, (InputError, ConfigError)) else EXIT_FAILURE


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``message`` as one error line and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def fail_with(exc: RagError) -> NoReturn:
    """Print an expected error as one line and exit with its :func:`exit_code`."""
    fail(str(exc), exit_code(exc))


_OS_REASONS = {
    errno.ENOENT: "파일이 없습니다",
    errno.EACCES: "읽을 권한이 없습니다",
    errno.EPERM: "읽을 권한이 없습니다",
    errno.EISDIR: "파일이 아니라 폴더입니다",
    errno.ENOTDIR: "경로 중간에 폴더가 아닌 것이 있습니다",
    errno.ENAMETOOLONG: "경로나 파일 이름이 너무 깁니다",
}


def os_reason(exc: OSError) -> str:
    """Why a file could not be read, in Korean (the system's own words when unusual)."""
    return _OS_REASONS.get(exc.errno or 0) or str(exc.strerror or exc)


def _flags_take_no_value(params: list[Any]) -> list[Any]:
    """Blank the type label of flag options, so help shows ``--json``, not ``--json <bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class FlagCommand(TyperCommand):
    """A typer command whose help shows boolean options as flags (typer 0.29 labels them ``<bool>``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_take_no_value(super().get_params(ctx))


class FlagGroup(TyperGroup):
    """A typer command group whose help shows boolean options as flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_take_no_value(super().get_params(ctx))


def percent(share: float | None) -> str:
    """A share as a table cell: ``95.0%``, or ``–`` when there was nothing to count."""
    return "–" if share is None else f"{100 * share:.1f}%"


def load_question_set(path: Path) -> list[QAItem]:
    """The questions of a JSONL set, or exit 2 with one line when it is unreadable or empty."""
    try:
        items = load_qa(path)
    except OSError as exc:
        fail(f"질문 파일을 읽을 수 없습니다: {path} ({os_reason(exc)})", EXIT_BAD_INPUT)
    except ValueError as exc:  # InputError (not UTF-8, not JSON, not writable back as JSON) included
        fail(str(exc), EXIT_BAD_INPUT)
    if not items:
        fail(f"질문 파일에 질문이 없습니다: {path}", EXIT_BAD_INPUT)
    return items


def print_json(obj: object) -> None:
    """``obj`` as one line of strict JSON in UTF-8 on stdout.

    Strict: ``NaN`` or an infinite number raises ValueError and a lone surrogate
    UnicodeEncodeError, instead of being written as ``NaN``/``Infinity`` (not JSON) or, with
    the C locale's ``surrogateescape``, as bytes that are not UTF-8. Input is checked at the
    door (:mod:`rag.text.outside`), so either one reaching here is a bug.
    """
    data = (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    buffer = getattr(sys.stdout, "buffer", None)
    sys.stdout.flush()
    if buffer is None:  # a text-only stream (a test's capture): it gets the same text
        sys.stdout.write(data.decode("utf-8"))
    else:
        buffer.write(data)
        buffer.flush()


@contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar on stderr fed by the core's ``progress(stage, advance, total)``."""
    labels = {"chunk": "문서 분할", "analyse": "형태소 분석", "embed": "임베딩", "embed lines": "줄 임베딩"}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=False)
    tasks: dict[str, int] = {}

    def report(stage: str, advance: int, total: int) -> None:
        if not tasks:  # started on the first report: nothing to show, nothing printed
            bar.start()
        if stage not in tasks:
            tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
        bar.update(tasks[stage], advance=advance, total=total)

    try:
        yield report
    finally:
        if tasks:
            bar.stop()


def open_retriever(warm: bool = False) -> Retriever:
    """Load the index (building it when missing or stale, with a bar), or exit with the
    reason; ``warm``: for a command that answers many questions (``Retriever.open``)."""
    from rag.search.retriever import Retriever  # lazy: start-up time

    try:
        with progress_bar() as report:
            return Retriever.open(progress=report, notice=print_notice, warm=warm)
    except RagError as exc:
        fail_with(exc)


#: How much of a related passage a decline shows (characters).
SNIPPET_CHARS = 160


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A passage's text on one line (markdown marks and line breaks removed), cut at ``limit``."""
    flat = clean_display(text.replace("\t", " | ").replace("#", ""))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def section_cell(p: Passage) -> Text:
    """Title, then section and offsets dimmed; text, never read as markup."""
    cell = Text(f"{p.doc_title}\n")
    cell.append(f"{p.section or '(문서 첫머리)'}\n{p.doc_id} [{p.start}:{p.end}]", style="dim")
    return cell


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
            out.print(Text(f"  {snippet(p.text)}"))
