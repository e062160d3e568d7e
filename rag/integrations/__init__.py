"""Adapters that let other frameworks use the documents; each imports its framework only
when it is used, so the core package never needs them.

* :class:`rag.integrations.langchain.RagRetriever` — a LangChain retriever
  (``pip install 'rag-ko[langchain]'``), over the local index or a running server.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RagRetriever"]


def __getattr__(name: str) -> Any:
    if name == "RagRetriever":  # lazy: langchain-core is an optional extra
        from rag.integrations.langchain import RagRetriever

        return RagRetriever
    raise AttributeError(f"module 'rag.integrations' has no attribute {name!r}")
