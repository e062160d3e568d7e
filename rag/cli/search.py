"""``rag search`` and ``rag ask``: one question (or a ``--batch`` file of them) in, ranked
passages or a cited answer out.

Both commands share one flow (:func:`_answer_or_search`): check the input, which exits
with status 2 before anything heavy is loaded, then open the retriever and print a rich
table for people or JSON (one object per line in batch mode).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import typer
from rich.table import Table
from rich.text import Text

from rag.cli.render import (
    EXIT_BAD_INPUT,
    MODE_HELP,
    err,
    fail,
    open_retriever,
    os_reason,
    out,
    print_answer,
    print_json,
    section_cell,
)
from rag.errors import InputError, QuestionError
from rag.query.checks import check_options, check_question
from rag.text.outside import check_json_value, check_text, decode_utf8

if TYPE_CHECKING:
    from rag.answer.cite import Answer
    from rag.search.retriever import Retriever, SearchResult


def _validate(question: Optional[str], k: int, mode: str, batch: Optional[Path], as_json: bool) -> None:
    try:
        check_options(k, mode)
        if batch is None:
            if question is None:
                raise QuestionError("질문을 주거나 --batch FILE로 질문 파일을 주세요")
            check_question(question)
        elif question is not None:
            raise QuestionError("질문과 --batch FILE 중 하나만 주세요")
        elif not as_json:
            raise QuestionError("--batch는 JSON 줄로만 출력합니다; --json을 붙이세요")
    except QuestionError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


#: A line's ``"id"``: a JSON string or number, followed by what may follow a value.
_ID_FIELD = re.compile(rb'"id"\s*:\s*("(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(?=[,}\]]|$)')


def _line_id(line: bytes) -> Any:
    """The ``"id"`` a malformed line still shows (a string or a number that can be written
    back as JSON), else None."""
    m = _ID_FIELD.search(line)
    if m is None:
        return None
    try:
        return check_json_value(json.loads(m.group(1).decode("utf-8")), "id")
    except ValueError:  # not UTF-8, not JSON, too many digits, not finite, a lone surrogate
        return None


def _parse_line(n: int, line: bytes) -> dict:
    """One batch line as ``{"id", "question"}``, or ``{"id", "line", "error"}`` saying what
    is wrong with it. The id is echoed as given (a missing one is the line number); one
    that cannot be written back as JSON (``1e999``, ``NaN``, a lone surrogate) is an error
    with id null."""
    def error(message: str, id_: Any = None) -> dict:
        return {"id": id_, "line": n, "error": message}

    try:
        item = json.loads(decode_utf8(line, f"{n}번째 줄", advice="UTF-8로 저장해 주세요"))
    except InputError as exc:
        return error(str(exc), _line_id(line))
    except json.JSONDecodeError as exc:
        return error(f"{n}번째 줄이 올바른 JSON이 아닙니다 ({exc.colno}번째 글자)", _line_id(line))
    except (ValueError, RecursionError):  # an integer of over 4,300 digits, nesting too deep
        return error(f"{n}번째 줄이 올바른 JSON이 아닙니다 (수가 너무 길거나 너무 깊게 중첩됨)", _line_id(line))
    if not isinstance(item, dict):
        return error(f"{n}번째 줄: 각 줄은 JSON 객체여야 합니다")
    id_ = item.get("id", n)
    try:
        check_json_value(id_, "id")
    except InputError as exc:
        return error(f"{n}번째 줄: {exc}")
    if not isinstance(item.get("question"), str):
        return error(f'{n}번째 줄: "question" 문자열이 없습니다', id_)
    return {"id": id_, "question": item["question"]}


def _read_batch(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, item) for each non-blank line; a bad line yields an ``error`` item with
    its ``line`` number and the ``id`` it had (read from the broken text when it is not JSON)."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        fail(f"질문 파일을 읽을 수 없습니다: {path} ({os_reason(exc)})", EXIT_BAD_INPUT)
    for n, line in enumerate(raw.split(b"\n"), 1):
        if line.strip():
            yield n, _parse_line(n, line)


def _run_batch(path: Path, handle: Callable[[Retriever, str], dict]) -> None:
    """Answer every line in order, one JSON line each; bad lines get an ``error`` field."""
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
            row = {"id": item["id"], "line": n, "question": item["question"], "error": str(exc)}
            if not _writable(item["question"]):  # a lone surrogate: the error says where, not echoed
                del row["question"]
            print_json(row)
    if failed:
        err.print(f"[yellow]{failed}개 줄에 오류가 있습니다; 해당 줄의 \"error\" 필드를 보세요[/]")


def _writable(text: str) -> bool:
    try:
        check_text(text, "")
    except InputError:
        return False
    return True


def _answer_or_search(question: Optional[str], k: int, mode: str, batch: Optional[Path], as_json: bool,
                      compute: Callable[[Retriever, str], Any], to_json: Callable[[str, Any], dict],
                      render: Callable[[str, Any], None]) -> None:
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


def _print_search(question: str, k: int, mode: str, result: SearchResult) -> None:
    # the question and the passages are text, never rich markup: "[/x]" in either would raise
    table = Table(title=Text.assemble(question, (f"  ({mode}, top {k})", "dim")), show_lines=True, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("점수", justify="right", width=7)
    table.add_column("문서 · 위치", ratio=2)
    table.add_column("본문", ratio=5)
    for p in result.passages:
        text = p.text if len(p.text) <= 400 else p.text[:400] + " …"
        table.add_row(str(p.rank), f"{p.score:.3f}", section_cell(p), Text(text))
    out.print(table)


def _answer(retriever: Retriever, question: str, k: int, mode: str) -> Answer:
    from rag.answer.pipeline import answer_question  # lazy: start-up time

    return answer_question(retriever, question, k=k, mode=mode)


# The arguments search and ask share.
QuestionArg = Annotated[Optional[str], typer.Argument(help="The question, in Korean.")]
ModeOpt = Annotated[str, typer.Option("--mode", help=MODE_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")]
BatchOpt = Annotated[Optional[Path], typer.Option("--batch", help="JSONL file of {id, question} (- for stdin).")]


def search_command(
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


def ask_command(
    question: QuestionArg = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many passages to draw the answer from.")] = 5,
    mode: ModeOpt = "hybrid",
    as_json: JsonOpt = False,
    batch: BatchOpt = None,
) -> None:
    """A short answer built from the documents' own sentences, with verified citations."""
    _answer_or_search(
        question, k, mode, batch, as_json,
        compute=lambda retriever, q: _answer(retriever, q, k, mode),
        to_json=lambda q, answer: answer.to_dict(),
        render=lambda q, answer: print_answer(answer),
    )
