"""Line vectors: the e5 vector of every answer line of every chunk, computed at index
build so the answer step can compare a question with single lines (a paraphrase that
shares no word with the line it asks for) without encoding anything at question time.

Lines are :func:`rag.ingest.lines.chunk_lines` of each chunk; a line is keyed by
``(chunk_id, start)``, which is how the answer step names its candidates. A line's
vector is reused from the previous build when its embedded text is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.ingest.lines import Line, chunk_lines
from rag.types import Chunk

#: Artifact names inside a build folder.
LINE_VECTORS = "line_vectors.npy"
LINE_KEYS = "line_keys.json"
#: Bump when what a line is or what is embedded for it changes: the index goes stale.
LINES_VERSION = 1

#: How far from 1 a stored embedding's L2 norm may be and still be reused by a build.
UNIT_NORM_TOLERANCE = 1e-3


def unit_rows(vectors: np.ndarray, tol: float = UNIT_NORM_TOLERANCE) -> np.ndarray:
    """Which rows are finite and L2-normalised (what every stored embedding must be); a row
    that is not was damaged after it was embedded and must not be reused."""
    if np.ndim(vectors) != 2:
        return np.zeros(len(vectors), dtype=bool)
    out = np.zeros(len(vectors), dtype=bool)
    for at in range(0, len(vectors), 8192):  # in blocks: a large memory-mapped table is not copied whole
        v = np.asarray(vectors[at:at + 8192], dtype=np.float64)
        with np.errstate(all="ignore"):
            norms = np.sqrt(np.square(v).sum(axis=1))
        out[at:at + len(v)] = np.isfinite(v).all(axis=1) & (np.abs(norms - 1.0) <= tol)
    return out


@dataclass
class LineTable:
    """The line vectors of one build: ``vectors[i]`` is the line ``keys[i]`` =
    ``(chunk_id, start)``, whose embedded text has the hash ``text_keys[i]``."""

    keys: list[tuple[str, int]]
    text_keys: list[str]
    vectors: np.ndarray
    row: dict[tuple[str, int], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.row = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def cosines(self, keys: list[tuple[str, int]], query_vector: np.ndarray | None) -> np.ndarray:
        """Cosine of ``query_vector`` to each line of ``keys`` (0 for a line or a query
        without a vector: sparse-only search, or a line this build does not hold)."""
        out = np.zeros(len(keys), dtype=np.float64)
        if query_vector is None or not keys:
            return out
        rows = [self.row.get(k, -1) for k in keys]
        have = [i for i, r in enumerate(rows) if r >= 0]
        if have:
            out[have] = np.asarray(self.vectors[[rows[i] for i in have]], dtype=np.float32) @ query_vector
        return out

    def reusable(self) -> dict[str, np.ndarray]:
        """Vectors by embedded-text key, for the next build to reuse; a vector that is not
        finite and unit-norm (damaged since it was embedded) is left out, to be embedded again."""
        sound = unit_rows(self.vectors) if len(self.text_keys) else np.zeros(0, dtype=bool)
        return {k: np.array(self.vectors[i]) for i, k in enumerate(self.text_keys) if sound[i]}

    def save(self, folder: Path) -> None:
        np.save(folder / LINE_VECTORS, self.vectors)
        rows = [[c, s, t] for (c, s), t in zip(self.keys, self.text_keys)]
        (folder / LINE_KEYS).write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LineTable:
        rows = json.loads((folder / LINE_KEYS).read_text(encoding="utf-8"))
        return cls([(str(c), int(s)) for c, s, _ in rows], [str(t) for _, _, t in rows],
                   np.load(folder / LINE_VECTORS, mmap_mode="r"))


def embedded_text(line: Line) -> str:
    """What is embedded for a line: the text an answer shows (a row with its column names)."""
    return line.display


def line_key(text: str, use_prefixes: bool) -> str:
    """Identity of a line's embedding (kept apart from chunk keys by its tag)."""
    return hashlib.sha256(f"line\0{int(use_prefixes)}\0{text}".encode("utf-8")).hexdigest()


def corpus_lines(chunks: list[Chunk], doc_texts: dict[str, str]) -> list[tuple[Chunk, Line]]:
    """Every answer line of every chunk, in chunk order."""
    return [(c, ln) for c in chunks for ln in chunk_lines(c.text, c.start, doc_texts[c.doc_id])]
