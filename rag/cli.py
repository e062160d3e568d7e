"""The `rag` command: search, ask, chat, index, eval, serve.

Output for people is a rich table on stdout; ``--json`` output is UTF-8 JSON (one object
per line in batch mode) with Korean left as is. Progress and notices go to stderr, so
stdout stays clean for pipes. Errors are one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.table import Table

from .cli_common import EXIT_BAD_INPUT, EXIT_FAILURE, MODE_HELP, err, fail, open_retriever, out, print_answer, print_json, progress_bar, section_cell

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Korean policy-document Q&A: cited answers from the bundled corpus.")
index_app = typer.Typer(no_args_is_help=True, help="Build or inspect the search index.")
app.add_typer(index_app, name="index")



def _validate(question: Optional[str], k: int, mode: str, batch: Optional[Path], as_json: bool) -> None:
    from .retrieve import QuestionError, check_options, check_question

    try:
        check_options(k, mode)
        if batch is None:
            if question is None:
                raise QuestionError("give a QUESTION or --batch FILE")
            check_question(question)
        elif question is not None:
            raise QuestionError("give either a QUESTION or --batch FILE, not both")
        elif not as_json:
            raise QuestionError("--batch writes JSON lines: add --json")
    except QuestionError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def _read_batch(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, item) for each non-blank line; a bad line yields an ``error`` item."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_BAD_INPUT)
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line.decode("utf-8"))
            if not isinstance(item, dict):
                raise ValueError("each line must be a JSON object")
            if not isinstance(item.get("question"), str):
                raise ValueError('the object needs a "question" string')
        except UnicodeDecodeError:
            yield n, {"id": None, "error": f"line {n} is not valid UTF-8"}
            continue
        except ValueError as exc:  # JSONDecodeError is a ValueError
            yield n, {"id": None, "error": f"line {n}: {exc}"}
            continue
        yield n, {"id": item.get("id", n), "question": item["question"]}


def _run_batch(path: Path, handle) -> None:
    """Answer every line in order, one JSON line each; bad lines get an ``error`` field."""
    from .retrieve import QuestionError

    failed = 0
    retriever = None
    for n, item in _read_batch(path):
        if "error" in item:
            failed += 1
            print_json(item)
            continue
        try:
            retriever = retriever or open_retriever()
            print_json({"id": item["id"], **handle(retriever, item["question"])})
        except QuestionError as exc:
            failed += 1
            print_json({"id": item["id"], "question": item["question"], "error": str(exc)})
    if failed:
        err.print(f"[yellow]{failed} line(s) had errors; see their \"error\" field[/]")


def _answer_or_search(question: Optional[str], k: int, mode: str, batch: Optional[Path], as_json: bool,
                      compute, to_json, render) -> None:
    """The flow ``search`` and ``ask`` share: validate, then batch, JSON or a rendered result.

    ``compute(retriever, q)`` returns the core's result, ``to_json(q, result)`` its JSON
    object (without ``id``), ``render(q, result)`` prints it for people.
    """
    _validate(question, k, mode, batch, as_json)
    if batch is not None:
        return _run_batch(batch, lambda retriever, q: to_json(q, compute(retriever, q)))
    retriever = open_retriever()
    result = compute(retriever, question)
    if as_json:
        print_json({"id": None, **to_json(question, result)})
    else:
        render(question, result)


def _print_search(question: str, k: int, mode: str, result) -> None:
    table = Table(title=f"{question}  [dim]({mode}, top {k})[/]", show_lines=True, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("점수", justify="right", width=7)
    table.add_column("문서 · 위치", ratio=2)
    table.add_column("본문", ratio=5)
    for p in result.passages:
        text = p.text if len(p.text) <= 400 else p.text[:400] + " …"
        table.add_row(str(p.rank), f"{p.score:.3f}", section_cell(p), text)
    out.print(table)


# The arguments search and ask share.
QuestionArg = Annotated[Optional[str], typer.Argument(help="The question, in Korean.")]
ModeOpt = Annotated[str, typer.Option("--mode", help=MODE_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]
BatchOpt = Annotated[Optional[Path], typer.Option("--batch", help="JSONL file of {id, question} (- for stdin).")]


@app.command()
def search(
    question: QuestionArg = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages.")] = 5,
    mode: ModeOpt = "hybrid",
    as_json: JsonOpt = False,
    batch: BatchOpt = None,
) -> None:
    """Ranked passages for a question, with where each stands in its document."""
    _answer_or_search(
        question, k, mode, batch, as_json,
        compute=lambda retriever, q: retriever.search(q, k=k, mode=mode),
        to_json=lambda q, result: {"question": q, "mode": mode, "passages": [p.to_dict() for p in result.passages]},
        render=lambda q, result: _print_search(q, k, mode, result),
    )


@app.command()
def ask(
    question: QuestionArg = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages to draw the answer from.")] = 5,
    mode: ModeOpt = "hybrid",
    as_json: JsonOpt = False,
    batch: BatchOpt = None,
) -> None:
    """A short answer built from the documents' own sentences, with verified citations."""
    from .answer import answer_question

    _answer_or_search(
        question, k, mode, batch, as_json,
        compute=lambda retriever, q: answer_question(retriever, q, k=k, mode=mode),
        to_json=lambda q, answer: answer.to_dict(),
        render=lambda q, answer: print_answer(answer),
    )


@index_app.command("build")
def index_build() -> None:
    """Build the index from corpus/ (reusing embeddings of unchanged chunks)."""
    from .corpus import CorpusError
    from .embedding import ModelNotAvailableError
    from .index.store import IndexError_, build_index
    from .config import Settings

    try:
        with progress_bar() as report:
            index = build_index(Settings(), progress=report)
    except (CorpusError, ModelNotAvailableError, IndexError_) as exc:
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
    from .config import Settings
    from .corpus import CorpusError
    from .index.store import index_status

    try:
        status = index_status(Settings(), verify=verify)
    except CorpusError as exc:
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


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
) -> None:
    """Start the HTTP API (POST /chat, POST /search, GET /health, /documents; docs at /docs)."""
    from .api.server import serve as run_server

    if not 0 < port < 65536:
        fail("--port must be between 1 and 65535", EXIT_BAD_INPUT)
    run_server(host=host, port=port)


from .cli_chat import chat_command  # noqa: E402
from .cli_eval import eval_command  # noqa: E402

app.command("eval")(eval_command)
app.command("chat")(chat_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
