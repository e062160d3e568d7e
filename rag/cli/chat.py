"""``rag chat``: an interactive session over the documents.

The index, the analyser and the embedder are loaded once; every question is answered by
the same :func:`rag.answer.pipeline.answer_question` as ``rag ask`` and ``POST /chat``. Earlier
questions give context to follow-ups ("그럼 작년에는?") through
:func:`rag.query.followup.resolve_followup`, the function the HTTP API uses.

Commands at the prompt: ``/sources`` (the last answer's citations in full), ``/history``,
``/clear`` (forget the conversation: the next question stands alone), ``/help``, ``/exit``
or ``/quit``; ``exit``, ``quit`` or ``종료`` typed alone and Ctrl-D also end the session,
Ctrl-C cancels the line being typed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.text import Text

from rag.cli.render import (
    EXIT_BAD_INPUT,
    MODE_HELP,
    err,
    fail,
    open_retriever,
    out,
    print_answer,
    snippet,
)
from rag.errors import InputError, QuestionError
from rag.query.checks import check_options, check_question
from rag.query.followup import resolve_followup
from rag.text.outside import decode_utf8

if TYPE_CHECKING:
    from rag.answer.cite import Answer

PROMPT = "질문> "

#: Commands that end the session.
EXIT_COMMANDS = ("/exit", "/quit", "/q")
#: Words that end the session when typed alone (any case), instead of being asked.
EXIT_WORDS = ("exit", "quit", "종료")

HELP = """[bold]질문을 입력하면 문서에서 찾은 답과 근거를 보여 줍니다.[/]
  이전 질문을 이어서 물을 수 있습니다 (예: "그럼 작년에는?").
  [bold]/sources[/]  마지막 답변의 근거 전체 (문서, 위치, 인용문, 구절)
  [bold]/history[/]  지금까지의 질문
  [bold]/clear[/]    대화 기록 지우기 (다음 질문은 앞 질문과 잇지 않음)
  [bold]/help[/]     이 도움말
  [bold]/exit[/]     끝내기 (/quit, 또는 exit · quit · 종료만 입력해도, Ctrl-D도 됩니다)"""


def _enable_line_editing() -> None:
    """GNU readline when available: arrow keys, history, and lines longer than the
    terminal's 4 KB canonical-mode buffer (which would otherwise be cut silently)."""
    try:
        import readline  # noqa: F401  # lazy: importing it hooks input(); only chat reads lines
    except ImportError:  # pragma: no cover - not on every platform
        pass


def is_exit(text: str) -> bool:
    """Whether a stripped input line ends the session (``/exit``, ``/quit``, or a bare exit word)."""
    word = text.split()[0].lower() if text.startswith("/") else text.lower()
    return word in EXIT_COMMANDS or word in EXIT_WORDS


def _accept_any_bytes() -> None:
    """Let standard input hand over bytes that are not UTF-8 (as lone surrogates) instead
    of raising UnicodeDecodeError inside ``input()``: :func:`_read` gives each line back its
    bytes and decodes them strictly, so one bad line is refused and the session goes on."""
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")


def _read(prompt: str) -> str | None:
    """One line from the user, decoded strictly as UTF-8 (InputError when it is not);
    None at end of input (Ctrl-D) or when there is no standard input at all."""
    if sys.stdin is None:
        return None
    try:
        line = input(prompt)  # readline on a terminal; a plain line read otherwise
    except EOFError:
        return None
    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    return decode_utf8(line.encode(encoding, "surrogateescape"), "입력한 줄", advice="UTF-8로 입력해 주세요")


def _print_sources(answer: Optional[Answer]) -> None:
    if answer is None:
        out.print("[yellow]아직 답변이 없습니다.[/]")
        return
    if not answer.citations:
        out.print("[yellow]마지막 답변에는 근거가 없습니다 (문서에서 답을 찾지 못함).[/]")
        if answer.reason:
            out.print(answer.reason, style="yellow", markup=False, highlight=False)
        if answer.related:
            out.print("[dim]관련 있을 수 있는 구절:[/]")
            for p in answer.related:
                out.print(f"- {p.doc_title} · {p.section or '(문서 첫머리)'} · {p.doc_id} [{p.start}:{p.end}]",
                          style="dim", markup=False, highlight=False)
                out.print(f"  {snippet(p.text)}", markup=False, highlight=False)
        return
    for i, c in enumerate(answer.citations, 1):
        p = c.passage
        out.print(f"[{i}] {p.doc_title} ({p.doc_id})", style="bold", markup=False, highlight=False)
        out.print(f"    위치: {p.section or '(문서 첫머리)'}", markup=False, highlight=False)
        out.print(f"    인용 범위: 문자 {c.quote_start}–{c.quote_end} (구절 {p.chunk_id}, 문자 {p.start}–{p.end})",
                  highlight=False)
        if c.columns:
            out.print(f"    표의 열: {' | '.join(x for x in c.columns if x)}", markup=False, highlight=False)
        out.print("    인용문:", highlight=False)
        for line in c.quote.split("\n"):
            out.print(f"      {line.replace(chr(9), ' | ')}", highlight=False, markup=False)
        out.print("    구절 전체:", highlight=False)
        for line in p.text.split("\n"):
            out.print(f"      {line.replace(chr(9), ' | ')}", style="dim", highlight=False, markup=False)


def _print_refusal(exc: InputError) -> None:
    """Why a line was not asked, as one line (never wrapped: a pipe reads it whole)."""
    out.print(Text(f"질문을 처리할 수 없습니다: {exc}", style="yellow"), highlight=False, soft_wrap=True)


def chat_command(
    k: int = typer.Option(5, "-k", "--k", help="How many passages to draw each answer from."),
    mode: str = typer.Option("hybrid", "--mode", help=MODE_HELP),
) -> None:
    """Interactive questions and answers; the model stays loaded, follow-ups use the history."""
    try:
        check_options(k, mode)
    except QuestionError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    err.print("[dim]색인과 모델을 불러오는 중…[/]")
    from rag.answer.pipeline import answer_question  # lazy: start-up time

    retriever = open_retriever(warm=True)
    _enable_line_editing()
    _accept_any_bytes()
    out.print("[bold]뿌리산업·소부장 정책 문서 Q&A[/] — 질문을 입력하세요. [dim](/help 도움말, /exit 또는 종료 입력으로 끝내기)[/]")
    messages: list[dict] = []
    last = None
    while True:
        try:
            line = _read(PROMPT)
        except KeyboardInterrupt:
            out.print("\n[dim](입력 취소 — 끝내려면 /exit 또는 Ctrl-D)[/]")
            continue
        except InputError as exc:
            _print_refusal(exc)
            continue
        if line is None:
            out.print()
            break
        text = line.strip()
        if not text:
            out.print("[yellow]질문을 입력하세요.[/] [dim](/help 도움말)[/]")
            continue
        if is_exit(text):
            break
        if text.startswith("/"):
            cmd = text.split()[0].lower()
            if cmd in ("/help", "/h", "/?"):
                out.print(HELP)
            elif cmd in ("/sources", "/source", "/s"):
                _print_sources(last)
            elif cmd == "/history":
                asked = [m["content"] for m in messages if m["role"] == "user"]
                if not asked:
                    out.print("[dim]아직 질문이 없습니다.[/]")
                for i, q in enumerate(asked, 1):
                    out.print(f"{i}. {q}", markup=False, highlight=False)
            elif cmd == "/clear":
                messages.clear()
                last = None
                out.print("[dim]대화 기록을 지웠습니다. 다음 질문은 앞 질문과 잇지 않고 새로 검색합니다.[/]")
            else:
                out.print(f"[yellow]알 수 없는 명령입니다: {escape(cmd)}[/] [dim](/help 도움말)[/]", highlight=False)
            continue
        try:
            asked = check_question(text)
            turn = messages + [{"role": "user", "content": asked}]
            try:
                query = check_question(resolve_followup(turn))
            except QuestionError:  # the combined context was unusable: the message alone
                query = asked
            answer = answer_question(retriever, query, k=k, mode=mode)
        except QuestionError as exc:
            _print_refusal(exc)
            continue
        except KeyboardInterrupt:
            out.print("\n[dim](취소됨)[/]")
            continue
        if query != asked:
            out.print(f"[dim]↳ 이전 질문과 이어서 검색: {escape(query)}[/]", highlight=False)
        answer.question = asked
        print_answer(answer)
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answer.answer}]
        last = answer
    raise typer.Exit(0)
