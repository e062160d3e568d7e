"""Input checks on a question and its search options, and the search modes: one place that
every face (CLI, chat, HTTP) calls before anything is loaded."""

from __future__ import annotations

from rag.config import MAX_QUESTION_CHARS
from rag.errors import QuestionError

MODES = ("hybrid", "bm25", "dense")


MAX_K = 100


def check_question(question: object) -> str:
    """The question stripped, or QuestionError for empty, over-long or non-text input."""
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    q = question.strip()
    if not q:
        raise QuestionError("the question is empty")
    if len(q) > MAX_QUESTION_CHARS:
        raise QuestionError(f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    if "\x00" in q:
        raise QuestionError("the question contains a NUL character")
    return q


def check_options(k: int, mode: str) -> None:
    if mode not in MODES:
        raise QuestionError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise QuestionError(f"k must be a whole number from 1 to {MAX_K}")
