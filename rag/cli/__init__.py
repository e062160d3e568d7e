"""The terminal face (typer + rich): ``rag search|ask|chat|index|eval|serve``.

The app lives in :mod:`rag.cli.main`; this package does not import it, so that
``python -m rag.cli.main`` (how the tests and benchmarks run the CLI) executes that module
once, as ``__main__``, instead of finding it already imported.
"""


def main() -> None:
    """The ``rag`` console script (``rag.cli:main``)."""
    from rag.cli.main import (
        main as run,  # lazy: `python -m rag.cli.main` must not find it imported already
    )

    run()
