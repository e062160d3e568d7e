"""Word lists live in ``rag/data/words/*.txt`` (data, not code): whitespace-separated
words, ``#`` starts a comment. Each list is read once per process."""

from __future__ import annotations

from functools import lru_cache

from rag.config import DATA_DIR

WORDS_DIR = DATA_DIR / "words"


@lru_cache(maxsize=None)
def load_words(name: str) -> tuple[str, ...]:
    """The words of ``rag/data/words/<name>.txt`` in file order (duplicates kept once)."""
    words: list[str] = []
    for line in (WORDS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        words.extend(line.split("#", 1)[0].split())
    return tuple(dict.fromkeys(words))
