"""What an index is made of: the build spec (everything that shapes the artifacts and
makes an index stale when it changes), the artifact names, and the loaded index."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rag.index.dense import DenseIndex
from rag.index.line_vectors import LINE_KEYS, LINE_VECTORS, LINES_VERSION, LineTable
from rag.index.sparse import BM25Params, SparseIndex
from rag.ingest.chunking import CHUNKER_VERSION, ChunkingConfig
from rag.text.korean import analyzer_fingerprint
from rag.types import Chunk

#: 2: line vectors (:mod:`rag.index.line_vectors`) joined the artifacts.
INDEX_FORMAT = 2


MANIFEST = "manifest.json"


REQUIRED_FILES = ("manifest.json", "chunks.jsonl", "docs.json", "dense.faiss", "vectors.npy", "bm25",
                  LINE_VECTORS, LINE_KEYS)


#: ``progress(stage, advance, total)``: the faces turn this into a progress bar.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AnalyzerSpec:
    mode: str = "morph"  # "morph" (Kiwi) | "whitespace" (ablation baseline)
    normalize: bool = True


@dataclass(frozen=True)
class BuildSpec:
    """Everything that shapes the artifacts; any change makes an index stale."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    analyzer: AnalyzerSpec = field(default_factory=AnalyzerSpec)
    bm25: BM25Params = field(default_factory=BM25Params)
    use_prefixes: bool = True
    dense_kind: str = "auto"

    def describe(self, model: str) -> dict:
        return {
            "chunker_version": CHUNKER_VERSION,
            "lines_version": LINES_VERSION,
            "chunking": asdict(self.chunking),
            "analyzer": {**asdict(self.analyzer), "fingerprint": analyzer_fingerprint()},
            "bm25": asdict(self.bm25),
            "model": model,
            "use_prefixes": self.use_prefixes,
            "dense_kind": self.dense_kind,
        }


@dataclass
class LoadedIndex:
    """A published build, ready to search; rows of every chunk artifact line up with
    ``chunks``; ``lines`` holds the vectors of the chunks' answer lines."""

    path: Path | None  # None for an in-memory build
    manifest: dict
    chunks: list[Chunk]
    docs: dict[str, dict]
    sparse: SparseIndex
    dense: DenseIndex
    vectors: np.ndarray
    lines: LineTable

    @property
    def model(self) -> str:
        return self.manifest["spec"]["model"]
