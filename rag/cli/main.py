"""The `rag` command: search, ask, chat, index, eval, serve.

Output for people is a rich table on stdout; ``--json`` output is UTF-8 JSON (one object
per line in batch mode) with Korean left as is. Progress and notices go to stderr, so
stdout stays clean for pipes. Errors are one line on stderr with a non-zero exit.

This module only builds the typer app: each command lives in its own module
(:mod:`rag.cli.search`, :mod:`rag.cli.index`, :mod:`rag.cli.serve`, :mod:`rag.cli.eval`,
:mod:`rag.cli.chat`), and those modules load the heavy parts (index, models, FastAPI) only
when their command runs.
"""

from __future__ import annotations

import typer

from rag.cli.calibrate import calibrate_command
from rag.cli.chat import chat_command
from rag.cli.eval import eval_command
from rag.cli.index import index_app
from rag.cli.search import ask_command, search_command
from rag.cli.serve import serve_command
from rag.cli.train import train_command

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Korean policy-document Q&A: cited answers from the bundled corpus.")
app.add_typer(index_app, name="index")
app.command("search")(search_command)
app.command("ask")(ask_command)
app.command("serve")(serve_command)
app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)
app.command("train")(train_command)
app.command("chat")(chat_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
