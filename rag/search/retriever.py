"""Hybrid retrieval: BM25 over Kiwi morphemes and e5 vectors, fused into one ranking
(:mod:`rag.search.fusion`), over a loaded index."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rag.config import Settings
from rag.embed.encoder import Embedder
from rag.index.backend import FileBackend, SearchBackend, open_backend
from rag.index.build import ensure_index
from rag.index.spec import BuildSpec, LoadedIndex
from rag.ingest.corpus import Document, load_corpus
from rag.query.checks import check_options, check_question
from rag.search.fusion import FusionConfig, fuse
from rag.text.korean import get_analyzer
from rag.types import Passage

#: Question texts whose tokens a retriever remembers (a few MB at most).
TOKEN_MEMO = 4096


@dataclass
class SearchResult:
    passages: list[Passage]
    timings_ms: dict[str, float] = field(default_factory=dict)
    sparse_top: float = 0.0  # best raw BM25 score: an abstention signal
    dense_top: float = 0.0  # best cosine
    rows: list[int] = field(default_factory=list)  # index row of each passage
    query_vector: np.ndarray | None = None  # the question's e5 vector (dense and hybrid modes)

    def passage_cosines(self, vectors: np.ndarray) -> list[float]:
        """Cosine of the question vector to each passage's stored vector (0 without one):
        the answer step reuses the retrieval encoding instead of encoding again."""
        if self.query_vector is None or not self.rows:
            return [0.0] * len(self.passages)
        return [float(v) for v in np.asarray(vectors[self.rows], dtype=np.float32) @ self.query_vector]


class Retriever:
    """Searches a loaded index; one instance serves many questions (CLI chat, HTTP server)."""

    def __init__(self, index: LoadedIndex, analyzer, embedder, doc_texts: dict[str, str],
                 fusion: FusionConfig = FusionConfig(), backend: SearchBackend | None = None):
        self.index = index
        self.backend = backend or FileBackend(index)  # where the two searches run
        self.doc_texts = doc_texts  # normalised text by doc id: citations are checked against it
        self.analyzer = analyzer
        self.embedder = embedder
        self.fusion = fusion
        # a question is analysed by the search and again by the answer step; portals repeat
        self._tokens = lru_cache(maxsize=TOKEN_MEMO)(lambda text: tuple(analyzer.tokenize(text)))

    @classmethod
    def open(cls, settings: Settings | None = None, spec: BuildSpec = BuildSpec(), fusion: FusionConfig = FusionConfig(),
             progress=None, notice=None, docs: list[Document] | None = None, warm: bool = False) -> "Retriever":
        """Load (building when missing or stale) the index, the analyser and the embedder;
        ``docs``: the corpus when the caller has read it already (it is read once);
        ``warm``: the caller will answer many questions (a server, a chat), so the faster
        question engine is worth its load time (``settings.query_engine``)."""
        settings = settings or Settings()
        docs = load_corpus(settings.corpus_dir) if docs is None else docs
        embedder = Embedder(settings.model, settings.cache_dir, use_prefixes=spec.use_prefixes)
        if settings.query_engine == "onnx" or (settings.query_engine == "auto" and warm):
            embedder.use_onnx_queries(cache_size=settings.query_cache)
        analyzer = get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
        index = ensure_index(settings, spec, progress=progress, notice=notice, embedder=embedder,
                             analyzer=analyzer, docs=docs)
        backend = open_backend(settings, index, analyzer, progress=progress, notice=notice)
        return cls(index, analyzer, embedder, {d.doc_id: d.text for d in docs}, fusion, backend)

    def tokens(self, text: str) -> list[str]:
        """The analyser's tokens of ``text`` (the last :data:`TOKEN_MEMO` texts remembered)."""
        return list(self._tokens(text))

    def _passage(self, rank: int, row: int, score: float) -> Passage:
        c = self.index.chunks[row]
        title = self.index.docs.get(c.doc_id, {}).get("title", c.doc_id)
        return Passage(rank=rank, score=round(float(score), 6), chunk_id=c.chunk_id, doc_id=c.doc_id,
                       doc_title=title, section=c.section_path, text=c.text, start=c.start, end=c.end)

    def search(self, question: str, k: int = 5, mode: str = "hybrid") -> SearchResult:
        """The top-k passages for a question, best first, with per-stage timings."""
        q = check_question(question)
        check_options(k, mode)
        t: dict[str, float] = {}
        depth = max(k, self.fusion.depth)
        sparse: dict[int, float] = {}
        dense: dict[int, float] = {}
        vec = None
        if mode in ("bm25", "hybrid"):
            t0 = time.perf_counter()
            tokens = self.tokens(q)
            t1 = time.perf_counter()
            sparse = self.backend.sparse_search(tokens, depth)
            t["analyse"], t["bm25"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        if mode in ("dense", "hybrid"):
            t0 = time.perf_counter()
            vec = self.embedder.encode_queries([q])[0]
            t1 = time.perf_counter()
            dense = self.backend.dense_search(vec, depth)
            t["encode"], t["faiss"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        t0 = time.perf_counter()
        if mode == "bm25":
            ranked = sorted(sparse.items(), key=lambda kv: (-kv[1], kv[0]))
        elif mode == "dense":
            ranked = sorted(dense.items(), key=lambda kv: (-kv[1], kv[0]))
        else:
            ranked = fuse(sparse, dense, self.fusion)
        t["fusion"] = (time.perf_counter() - t0) * 1e3
        passages = [self._passage(i, row, s) for i, (row, s) in enumerate(ranked[:k], 1)]
        return SearchResult(
            passages, {k_: round(v, 3) for k_, v in t.items()},
            sparse_top=max(sparse.values(), default=0.0), dense_top=max(dense.values(), default=0.0),
            rows=[row for row, _ in ranked[:k]], query_vector=vec,
        )
