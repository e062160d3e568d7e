"""JSON out of the HTTP API: UTF-8 with Korean left as is, and the ``Server-Timing`` header.

Apart from the error helpers (:mod:`rag.api.errors`) and the state, so that any router or
middleware can build a response without importing the app.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from fastapi.responses import JSONResponse


class KoreanJSONResponse(JSONResponse):
    """JSON as UTF-8 with Korean left as is (never ``\\uXXXX``), charset stated."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def dumps(obj: Any) -> str:
    """Compact JSON text with Korean unescaped (for SSE ``data:`` lines)."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def server_timing(stages: dict[str, float], total_ms: float) -> str:
    """A ``Server-Timing`` header value: per-stage core timings plus the handler total."""
    parts = [f"{name};dur={ms:.2f}" for name, ms in stages.items()]
    parts.append(f"total;dur={total_ms:.2f}")
    return ", ".join(parts)


#: Rough size of one streamed piece of an answer (characters): pieces end at a line end or
#: at the first whitespace after this many characters, so a ``[n]`` marker is never cut.
PIECE_CHARS = 20

_WORDS = re.compile(r"[^\S\n]*\S+[^\S\n]*|\n")


def split_pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in streaming pieces whose concatenation is exactly ``text``: a piece ends
    with a line end, or at the end of the word that takes it to ``size`` characters."""
    piece = ""
    pos = 0
    for m in _WORDS.finditer(text):
        if m.start() != pos:  # nothing is ever skipped (the pattern covers every character)
            piece += text[pos:m.start()]
        piece += m.group()
        pos = m.end()
        if m.group() == "\n" or len(piece) >= size:
            yield piece
            piece = ""
    piece += text[pos:]
    if piece:
        yield piece
