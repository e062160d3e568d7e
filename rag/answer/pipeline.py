"""One question in, one answer out: retrieve, then compose a cited answer or decline
(used by ``rag ask``, ``rag chat``, ``POST /chat`` and ``rag eval --answers``).

The answer line is the learned one (:mod:`rag.answer.learned_compose`); the hand-set
rules it replaced (:mod:`rag.answer.compose`) stay available with
``RAG_ANSWER_LINE=rules`` or an explicit abstention ``policy``, for comparison.
"""

from __future__ import annotations

from rag.answer.cite import Answer
from rag.answer.compose import compose
from rag.answer.learned_compose import compose_learned
from rag.config import ANSWER_LINES, answer_line_setting
from rag.errors import ConfigError
from rag.search.retriever import Retriever


def answer_line() -> str:
    """The configured answer line (``$RAG_ANSWER_LINE``, default ``learned``)."""
    return answer_line_setting()


def answer_question(retriever: Retriever, question: str, k: int = 5, mode: str = "hybrid", policy=None,
                    line: str | None = None) -> Answer:
    """Retrieve, then compose a cited answer (or say the documents do not answer it).

    Args:
        retriever: an open :class:`~rag.search.retriever.Retriever` (reused across questions).
        question: the question in Korean (checked by :func:`rag.query.checks.check_question`).
        k: how many passages to draw candidates from (and to return as ``related``).
        mode: retrieval mode, ``hybrid`` | ``bm25`` | ``dense``.
        policy: an :class:`rag.answer.abstain.Policy` for the hand-set rules (implies
            ``line="rules"``).
        line: ``learned`` | ``rules``; default :func:`answer_line`.

    Returns:
        An :class:`Answer`; ``answerable`` is false (and ``answer`` is :data:`NOT_FOUND`)
        when the documents do not answer the question, with the reason.
    """
    line = "rules" if policy is not None else (line or answer_line())
    if line not in ANSWER_LINES:
        raise ConfigError(f"알 수 없는 답변 방식입니다: {line!r} ({' | '.join(ANSWER_LINES)})")
    result = retriever.search(question, k=k, mode=mode)
    if line == "rules":
        return compose(question.strip(), result, retriever, policy=policy)
    return compose_learned(question.strip(), result, retriever)
