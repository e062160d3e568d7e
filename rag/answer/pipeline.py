"""One question in, one answer out: retrieve, then compose a cited answer or decline
(used by ``rag ask``, ``rag chat`` and ``POST /chat``)."""

from __future__ import annotations

from rag.answer.cite import Answer
from rag.answer.compose import compose
from rag.search.retriever import Retriever


def answer_question(retriever: Retriever, question: str, k: int = 5, mode: str = "hybrid", policy=None) -> Answer:
    """Retrieve, then compose a cited answer (or say the documents do not answer it).

    Args:
        retriever: an open :class:`~rag.search.retriever.Retriever` (reused across questions).
        question: the question in Korean (checked by :func:`rag.query.checks.check_question`).
        k: how many passages to draw candidates from (and to return as ``related``).
        mode: retrieval mode, ``hybrid`` | ``bm25`` | ``dense``.
        policy: an :class:`rag.answer.abstain.Policy`; default: the calibrated one in
            ``rag/data/abstention.json``.

    Returns:
        An :class:`Answer`; ``answerable`` is false (and ``answer`` is :data:`NOT_FOUND`)
        when the documents do not answer the question.
    """
    result = retriever.search(question, k=k, mode=mode)
    return compose(question.strip(), result, retriever, policy=policy)
