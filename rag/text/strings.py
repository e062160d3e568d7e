"""String forms shared by every stage: one helper for each meaning.

- :func:`squash` — whitespace removed (headings compared across line breaks);
- :func:`match_key` — whitespace removed and lower-cased: how a question's words are
  looked for in a candidate line (``"R&D"`` in ``"r&d 투자"``);
- :func:`answer_key` — NFC and whitespace removed: how an expected answer string is
  looked for in an answer or passage (evaluation; 4,000 억원 == 4,000억원);
- :data:`HTML_TAG_RE` — the inline HTML tags the exported documents leave in cells.
"""

from __future__ import annotations

import re
import unicodedata

_WS_RE = re.compile(r"\s+")

#: Inline HTML tags left in exported table cells and lines (``<b>``, ``<br/>``, ``<li>``).
HTML_TAG_RE = re.compile(r"</?(?:b|i|u|ul|ol|li|br|span|p|strong|em)(?:\s[^>]*)?/?>", re.IGNORECASE)


def squash(text: str) -> str:
    """``text`` with all whitespace removed."""
    return _WS_RE.sub("", text)


def match_key(text: str) -> str:
    """Whitespace removed, lower-cased: the form line matching works on."""
    return _WS_RE.sub("", text).lower()


def answer_key(text: str) -> str:
    """NFC text with all whitespace removed: the form expected answers are matched in."""
    return _WS_RE.sub("", unicodedata.normalize("NFC", text))
