"""What the HTTP handlers share: the open retriever and the documents, loaded once at
start-up (:func:`load_state`) and reached through the :func:`get_state` dependency.

Start-up reads the corpus once and hands the documents to both the retriever (whose index
is checked against them) and the state (which serves them at /documents).

The state also shapes the core's passages for HTTP clients (:meth:`ApiState.passage_json`):
the core's dicts know nothing of URLs, so the document's ``date`` and ``publisher`` and a
``url`` to the exact span are added here, and ``compact`` drops the passage text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import quote as url_quote

from fastapi import Request

from rag.api.errors import ApiError
from rag.api.threads import guard_retriever
from rag.config import Settings
from rag.embed.encoder import sanitize_text
from rag.ingest.corpus import Document, load_corpus
from rag.ingest.sections import parse_sections
from rag.search.retriever import Retriever

log = logging.getLogger("rag.api")


def _corpus_snapshot(settings: Settings, docs: Iterable[Document]) -> tuple:
    """Size and mtime of the manifest and every document: cheap to recompute, changes when
    someone edits the corpus."""
    paths = [settings.corpus_dir / "manifest.json", *(d.path for d in docs)]
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


@dataclass
class ApiState:
    """Everything the handlers share, loaded once at startup."""

    settings: Settings
    retriever: Retriever
    docs: dict[str, Document]
    loaded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _snapshot: tuple = ()
    _sections: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, retriever: Retriever, docs: Optional[list[Document]] = None) -> "ApiState":
        """The state for ``retriever``; ``docs`` are the documents it was opened on (read
        from ``settings.corpus_dir`` when not given)."""
        docs = load_corpus(settings.corpus_dir) if docs is None else docs
        state = cls(settings, guard_retriever(retriever), {d.doc_id: d for d in docs})
        state._snapshot = _corpus_snapshot(settings, docs)
        return state

    def text_of(self, doc_id: str) -> str:
        """The normalised text citations point into (the retriever's copy)."""
        text = self.retriever.doc_texts.get(doc_id)
        return text if text is not None else self.docs[doc_id].text

    def sections_of(self, doc_id: str) -> dict:
        """The document's section tree as a dict, parsed once and cached."""
        tree = self._sections.get(doc_id)
        if tree is None:
            tree = parse_sections(self.text_of(doc_id)).to_dict()
            self._sections[doc_id] = tree
        return tree

    def meta_of(self, doc_id: str) -> dict[str, Any]:
        """The manifest entry of a document, every number a JSON number (the core's
        ``Document.meta()`` keeps ``chars`` as a string: it feeds the index fingerprint)."""
        doc = self.docs[doc_id]
        return {**doc.meta(), "chars": len(self.text_of(doc_id))}

    def passage_json(self, passage: dict[str, Any], *, compact: bool = False, root_path: str = "") -> dict[str, Any]:
        """A core passage or citation dict for HTTP clients.

        Adds ``url`` (the span in ``GET /documents/{doc_id}/text``: the quote's span for a
        citation, the passage's otherwise, relative to the server), and the document's
        ``date`` and ``publisher``. ``compact`` drops the passage ``text`` (a citation keeps
        its ``quote``). Every original field keeps its name and meaning.
        """
        out = {k: v for k, v in passage.items() if not (compact and k == "text")}
        doc_id = passage["doc_id"]
        if "quote_start" in passage:
            start, end = passage["quote_start"], passage["quote_end"]
        else:
            start, end = passage["start"], passage["end"]
        out["url"] = f"{root_path}/documents/{url_quote(str(doc_id), safe='')}/text?start={start}&end={end}"
        doc = self.docs.get(doc_id)
        out["date"] = doc.date if doc is not None else ""
        out["publisher"] = doc.publisher if doc is not None else ""
        return out

    def answer_json(self, result: dict[str, Any], *, compact: bool = False, root_path: str = "") -> dict[str, Any]:
        """``Answer.to_dict()`` with every citation and related passage shaped by :meth:`passage_json`."""
        return {
            **result,
            "citations": [self.passage_json(c, compact=compact, root_path=root_path) for c in result["citations"]],
            "related": [self.passage_json(p, compact=compact, root_path=root_path) for p in result["related"]],
        }

    def query_of(self, question: str) -> str:
        """The part of a checked question that search and answer read: the question itself,
        unless it is longer than the query encoder's token budget
        (:data:`rag.config.QUERY_TOKEN_BUDGET`), then the prefix the encoder keeps
        (:meth:`rag.embed.encoder.Embedder.cut_query`, at a word's end). One budget for every stage: a
        2,000-character question costs about what its first ~230 characters cost, in the
        encoder and also in Kiwi's analysis and in composing the answer, which grow with
        the question too. No real question is that long (the longest asked in the
        evaluation sets is 61 tokens); /chat reports what was read as ``query``."""
        cut = getattr(getattr(self.retriever, "embedder", None), "cut_query", None)
        part = cut(question) if cut is not None else question
        return part if isinstance(part, str) and part != sanitize_text(question) else question

    def index_info(self) -> dict:
        """What /health reports: the loaded build, and whether the corpus moved since (a few stat calls)."""
        m = self.retriever.index.manifest
        reasons = []
        if _corpus_snapshot(self.settings, self.docs.values()) != self._snapshot:
            reasons.append("the corpus changed since the server loaded the index; restart the server to rebuild it")
        return {
            "built": True, "stale": bool(reasons), "reasons": reasons,
            "chunks": int(m.get("n_chunks", len(self.retriever.index.chunks))),
            "documents": len(m.get("corpus", self.docs)),
            "model": m.get("spec", {}).get("model", self.settings.model),
            "index_dir": str(self.settings.index_dir),
            "build": self.retriever.index.path.name, "created": m.get("created"),
            "backend": self.retriever.backend.name,
            "query_engine": self.retriever.embedder.query_engine,
            "loaded_at": self.loaded_at,
        }


def load_state(settings: Settings) -> ApiState:
    """Read the corpus, open the retriever on it (building the index when missing or
    stale) and keep both; raises what the core raises (:func:`rag.api.errors.describe_startup_error` says it in one line)."""
    def progress(stage: str, advance: int, total: int) -> None:
        if advance == 0:
            log.info("index build: %s (%d items)", stage, total)

    docs = load_corpus(settings.corpus_dir)
    retriever = Retriever.open(settings, docs=docs, progress=progress, notice=lambda m: log.warning("%s", m),
                               warm=True)
    return ApiState.build(settings, retriever, docs)


def get_state(request: Request) -> ApiState:
    """The loaded state, or 503 while the server is still starting."""
    state = getattr(request.app.state, "rag", None)
    if state is None:
        raise ApiError(503, "not_ready", "the index is not loaded yet; try again shortly")
    return state
