"""The documents as a LangChain retriever: :class:`RagRetriever` returns LangChain
``Document`` objects whose ``page_content`` is the passage text (exactly
``document[start:end]``) and whose metadata say where it stands::

    from rag.integrations.langchain import RagRetriever

    local = RagRetriever(k=3)                                  # this machine's index (RAG_* settings)
    remote = RagRetriever(base_url="http://127.0.0.1:8000", api_key="…")   # a running `rag serve`
    docs = local.invoke("용접 분야 지역뿌리기술지원센터는 어디야?")
    docs[0].metadata  # {"doc_id", "title", "section", "start", "end", "score", "chunk_id",
                      #  "rank", "publisher", "date"}

Locally the index is opened (built when missing or stale, as every ``rag`` command does)
on the first question and kept. Against a server each question is one ``POST /search``
(standard library HTTP; the key is sent as ``Authorization: Bearer <key>``).

Needs ``langchain-core`` (``pip install 'rag-ko[langchain]'``); nothing else in the
package imports this module.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Literal, Optional

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("rag.integrations.langchain needs langchain-core: pip install 'rag-ko[langchain]'") from exc
from pydantic import ConfigDict, Field, PrivateAttr

from rag.errors import RagError
from rag.query.checks import MAX_K, check_options, check_question

if TYPE_CHECKING:
    from rag.search.retriever import Retriever

log = logging.getLogger(__name__)

__all__ = ["RagRetriever", "RagServerError", "passage_document"]


class RagServerError(RagError, RuntimeError):
    """The server could not be reached or refused the search; the message says why in one line."""


def passage_document(passage: dict[str, Any], publisher: str = "", date: str = "") -> Document:
    """A LangChain Document for one passage (the Passage JSON contract).

    Args:
        passage: ``{"rank", "score", "chunk_id", "doc_id", "doc_title", "section", "text",
            "start", "end"}`` (extra keys such as the server's ``publisher``/``date`` are read too).
        publisher, date: the document's manifest values when the passage does not carry them.

    Returns:
        ``Document(page_content=text, metadata={doc_id, title, section, start, end, score,
        chunk_id, rank, publisher, date})``.
    """
    metadata = {
        "doc_id": passage["doc_id"], "title": passage["doc_title"], "section": passage["section"],
        "start": passage["start"], "end": passage["end"], "score": passage["score"],
        "chunk_id": passage["chunk_id"], "rank": passage["rank"],
        "publisher": passage.get("publisher", publisher), "date": passage.get("date", date),
    }
    return Document(page_content=passage["text"], metadata=metadata, id=passage["chunk_id"])


class RagRetriever(BaseRetriever):
    """Ranked passages of the Korean policy documents as LangChain ``Document``s.

    Args (fields):
        k: passages per question (1-100).
        mode: ``hybrid`` (BM25 + e5 vectors, default), ``bm25`` or ``dense``.
        base_url: a running server (``http://host:port``); when omitted, the local index.
        api_key: the server's key (``RAG_API_KEY`` there), sent as a bearer token.
        timeout: seconds to wait for the server.
        settings: local corpus/index/model settings (``rag.config.Settings()`` when omitted).
        retriever: an already open local ``rag.search.retriever.Retriever`` to use.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    k: int = Field(5, ge=1, le=MAX_K)
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    base_url: Optional[str] = None
    api_key: Optional[str] = Field(None, repr=False)
    timeout: float = 60.0
    settings: Optional[Any] = None
    retriever: Optional[Any] = Field(None, repr=False)

    _opened: Optional[Retriever] = PrivateAttr(default=None)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        question = check_question(query)
        check_options(self.k, self.mode)
        if self.base_url:
            return [passage_document(p) for p in self._search_server(question)]
        return self._search_local(question)

    # ------------------------------------------------------------------ local index

    def _local(self) -> Retriever:
        if self.retriever is not None:
            return self.retriever
        if self._opened is None:
            from rag.search.retriever import Retriever  # lazy: index, Kiwi, model

            # warm: a retriever object answers many questions, as a server does (and so
            # encodes them with the same engine as the server)
            self._opened = Retriever.open(self.settings, notice=lambda m: log.warning("%s", m), warm=True)
        return self._opened

    def _search_local(self, question: str) -> list[Document]:
        retriever = self._local()
        docs = retriever.index.docs  # the manifest entries the index was built from
        out = []
        for p in retriever.search(question, k=self.k, mode=self.mode).passages:
            meta = docs.get(p.doc_id, {})
            out.append(passage_document(p.to_dict(), meta.get("publisher", ""), meta.get("date", "")))
        return out

    # ------------------------------------------------------------------ server

    def _search_server(self, question: str) -> list[dict[str, Any]]:
        url = self.base_url.rstrip("/") + "/search"
        body = json.dumps({"question": question, "k": self.k, "mode": self.mode}, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        if self.api_key:  # bytes: a key with non-ASCII characters goes as UTF-8, as the server compares it
            request.add_header("Authorization", b"Bearer " + self.api_key.encode("utf-8"))  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise RagServerError(f"POST {url} failed with {exc.code}: {_error_message(exc)}") from None
        except urllib.error.URLError as exc:
            raise RagServerError(f"cannot reach {url}: {exc.reason}") from None
        return payload["passages"]


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The server's one-line ``error.message``, or the HTTP reason."""
    try:
        return str(json.loads(exc.read().decode("utf-8"))["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)
