"""``python -m rag.cli``: the same entry point as ``rag``."""

from rag.cli.main import main

main()
