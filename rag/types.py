"""The two records that flow through the pipeline: a Chunk (indexed unit) and a Passage
(a ranked, citable chunk returned to a user). Their JSON shape is a contract other tools
rely on (see README, "Contracts")."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SECTION_SEP = " > "


@dataclass(frozen=True)
class Chunk:
    """A piece of one section of one document.

    ``text`` is exactly ``document_text[start:end]`` of the normalised document; ``section``
    is the heading path from the document root to the section holding the chunk.
    ``index_text`` is what gets analysed and embedded (heading path + text, table header
    repeated); it is never shown to users.
    """

    chunk_id: str
    doc_id: str
    section: tuple[str, ...]
    start: int
    end: int
    text: str
    index_text: str
    kind: str = "text"  # "text" | "table"

    @property
    def section_path(self) -> str:
        return SECTION_SEP.join(self.section)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["section"] = list(self.section)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Chunk":
        return cls(**{**d, "section": tuple(d["section"])})


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its rank (1-based) and fused score."""

    rank: int
    score: float
    chunk_id: str
    doc_id: str
    doc_title: str
    section: str
    text: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
