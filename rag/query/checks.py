"""Input checks on a question and its search options, and the search modes: one place that
every face (CLI, chat, HTTP) calls before anything is loaded."""

from __future__ import annotations

from rag.config import MAX_QUESTION_CHARS
from rag.errors import InputError, QuestionError
from rag.text.outside import check_text

MODES = ("hybrid", "bm25", "dense")


MAX_K = 100


def check_question(question: object) -> str:
    """The question stripped, or QuestionError for empty, over-long or non-text input."""
    if not isinstance(question, str):
        raise QuestionError("질문은 텍스트여야 합니다")
    q = question.strip()
    if not q:
        raise QuestionError("질문이 비어 있습니다")
    if len(q) > MAX_QUESTION_CHARS:
        raise QuestionError(f"질문이 너무 깁니다: {len(q):,}자 (최대 {MAX_QUESTION_CHARS:,}자)")
    if "\x00" in q:
        raise QuestionError("질문에 NUL 문자가 들어 있습니다")
    try:
        return check_text(q, "질문")
    except InputError as exc:  # callers handle a bad question as one kind of error
        raise QuestionError(str(exc)) from None


def check_options(k: int, mode: str) -> None:
    if mode not in MODES:
        raise QuestionError(f"알 수 없는 검색 모드입니다: {mode!r}; {', '.join(MODES)} 중 하나를 고르세요")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise QuestionError(f"k는 1부터 {MAX_K}까지의 정수여야 합니다")
