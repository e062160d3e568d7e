"""The `rag` command: search, ask, chat, index, eval, serve.

Output for people is a rich table on stdout; ``--json`` output is UTF-8 JSON (one object
per line in batch mode) with Korean left as is. Progress and notices go to stderr, so
stdout stays clean for pipes. Errors are one line on stderr, in Korean, with a non-zero
exit: 2 for a wrong command line or input (typer's own usage errors included, translated
here), 1 when something the command needs is missing or broken.

This module only builds the typer app: each command lives in its own module
(:mod:`rag.cli.search`, :mod:`rag.cli.index`, :mod:`rag.cli.serve`, :mod:`rag.cli.eval`,
:mod:`rag.cli.chat`), and those modules load the heavy parts (index, models, FastAPI) only
when their command runs.
"""

from __future__ import annotations

import re
import sys
from difflib import get_close_matches
from importlib import metadata
from typing import Annotated

import typer
from typer._click import (
    exceptions as click_errors,  # typer 0.29 vendors click: its errors are here
)

from rag.cli.calibrate import calibrate_command
from rag.cli.chat import chat_command
from rag.cli.eval import eval_command
from rag.cli.index import index_app
from rag.cli.render import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    FlagCommand,
    FlagGroup,
    print_error,
)
from rag.cli.search import ask_command, search_command
from rag.cli.serve import serve_command
from rag.cli.train import train_command
from rag.config import PROJECT_ROOT, check_environment
from rag.errors import ConfigError, InputError, RagError
from rag.text.outside import check_argument

#: The distribution name (pyproject's ``[project] name``); ``rag --version`` prints it.
DISTRIBUTION = "rag-ko"
PROG_NAME = "rag"

app = typer.Typer(cls=FlagGroup, add_completion=False, no_args_is_help=True,
                  help="Korean policy-document Q&A: cited answers from the bundled corpus.")
app.add_typer(index_app, name="index")
app.command("search", cls=FlagCommand)(search_command)
app.command("ask", cls=FlagCommand)(ask_command)
app.command("serve", cls=FlagCommand)(serve_command)
app.command("eval", cls=FlagCommand)(eval_command)
app.command("calibrate", cls=FlagCommand)(calibrate_command)
app.command("train", cls=FlagCommand)(train_command)
app.command("chat", cls=FlagCommand)(chat_command)


def package_version() -> str:
    """The installed package's version, or pyproject's when the package is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import tomllib  # lazy: only needed when running from an uninstalled checkout

        with open(PROJECT_ROOT / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{DISTRIBUTION} {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool | None, typer.Option(
        "--version", "-V", is_eager=True, callback=_print_version, help="Print the version (rag-ko X.Y.Z) and exit.",
    )] = None,
) -> None:
    """Korean policy-document Q&A: cited answers from the bundled corpus."""


# ------------------------------------------------------------------- usage errors, in Korean

#: Pydantic error types (typer 0.29 converts values with pydantic) and what was expected.
_KINDS = {"int": "정수가", "float": "수가", "bool": "참/거짓 값이", "string": "글자열이", "path": "경로가"}


def _value_problem(exc: click_errors.BadParameter) -> str:
    """Why typer refused a value, in Korean where the reason is known."""
    errors = getattr(exc.__cause__, "errors", list)()
    if errors:
        kind, value = str(errors[0].get("type", "")), errors[0].get("input")
        expected = next((word for prefix, word in _KINDS.items() if kind.startswith(prefix)), None)
        if expected and kind.endswith(("_parsing", "_type")):
            return f"{value!r}은(는) {expected} 아닙니다"
    message = exc.message or ""
    m = re.match(r"(?:File|Directory|Path) '(.*)' does not exist", message)
    if m:
        return f"'{m.group(1)}'이(가) 없습니다"
    m = re.match(r"'(.*)' is not one of (.*)\.", message)
    if m:
        return f"'{m.group(1)}'은(는) 고를 수 있는 값({m.group(2)})이 아닙니다"
    return message.rstrip(".")


def _param_hint(exc: click_errors.BadParameter) -> str:
    hint = exc.param_hint
    if hint is None and exc.param is not None:
        hint = "/".join(getattr(exc.param, "opts", [])) or exc.param.get_error_hint()
    if isinstance(hint, (list, tuple)):
        hint = " / ".join(hint)
    return str(hint or "").strip("'") or "값"


def usage_message(exc: click_errors.UsageError) -> str:
    """One Korean line for a usage error (unknown option or command, missing or bad value)."""
    text = exc.message or ""
    if isinstance(exc, click_errors.NoSuchOption):
        line = f"알 수 없는 옵션입니다: {exc.option_name}"
        if exc.possibilities:
            line += f" (혹시 {', '.join(sorted(exc.possibilities))}?)"
        return line
    if isinstance(exc, click_errors.MissingParameter):
        kind = exc.param_type or (exc.param.param_type_name if exc.param is not None else "")
        what = {"option": "옵션 값", "argument": "인자"}.get(kind, "값")
        return f"필요한 {what}이(가) 없습니다: {_param_hint(exc)}"
    if isinstance(exc, click_errors.BadParameter):
        return f"{_param_hint(exc)}의 값이 올바르지 않습니다: {_value_problem(exc)}"
    m = re.match(r"Option '(.+)' requires (?:an argument|\d+ arguments)", text)
    if m:
        return f"{m.group(1)} 옵션에는 값이 필요합니다"
    m = re.match(r"Option '(.+)' does not take a value", text)
    if m:
        return f"{m.group(1)} 옵션은 값을 받지 않습니다"
    m = re.match(r"No such command '(.+?)'", text)
    if m:
        line = f"알 수 없는 명령입니다: {m.group(1)}"
        commands = list(getattr(exc.ctx.command, "commands", {}) if exc.ctx else [])
        close = get_close_matches(m.group(1), commands)
        return line + (f" (혹시 {', '.join(close)}?)" if close else "")
    m = re.match(r"Got unexpected extra argument(?:s|\(s\))? \((.*)\)", text)
    if m:
        return f"인자가 너무 많습니다: {m.group(1)} (빈칸이 있는 질문은 따옴표로 감싸세요)"
    return text.rstrip(".")


def _command_path(command: typer.core.TyperGroup, args: list[str]) -> str:
    """``rag`` plus the (sub)command names that start ``args``, e.g. ``rag index status``."""
    path, current = [PROG_NAME], command
    for token in args:
        sub = getattr(current, "commands", {}).get(token)
        if sub is None:
            break
        path.append(token)
        current = sub
    return " ".join(path)


def _help_hint(exc: click_errors.UsageError, command: typer.core.TyperGroup, args: list[str]) -> str:
    """Where to read the usage: the failing command's ``--help``."""
    path = exc.ctx.command_path if exc.ctx is not None else _command_path(command, args)
    return f"; 사용법: {path} --help"


#: Options that print something and exit, whatever the environment says.
_HELP_OPTIONS = ("--help", "--version", "-V")


def _only_help(args: list[str]) -> bool:
    """Whether the command line only asks for help or the version (or is empty: help)."""
    options = args[: args.index("--")] if "--" in args else args
    return not args or any(a in _HELP_OPTIONS for a in options)


def main(args: list[str] | None = None) -> None:
    """Run the app; usage errors and the core's expected errors end as one Korean line."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if args is None else list(args)
    try:
        for position, arg in enumerate(args, 1):  # undecodable bytes in argv: refused here, once
            check_argument(arg, position)
        if not _only_help(args):  # a bad RAG_* variable stops every command at once, with one line
            check_environment()
        code = command.main(args=args, prog_name=PROG_NAME, standalone_mode=False)
    except click_errors.NoArgsIsHelpError:  # the help is already printed
        code = EXIT_BAD_INPUT
    except click_errors.UsageError as exc:
        print_error(usage_message(exc) + _help_hint(exc, command, args))
        code = EXIT_BAD_INPUT
    except click_errors.ClickException as exc:
        print_error(exc.format_message())
        code = exc.exit_code
    except typer.Abort:
        print_error("중단되었습니다")
        code = EXIT_FAILURE
    except (InputError, ConfigError) as exc:  # QuestionError is an InputError
        print_error(str(exc))
        code = EXIT_BAD_INPUT
    except RagError as exc:
        print_error(str(exc))
        code = EXIT_FAILURE
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
