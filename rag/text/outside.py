"""Text from outside the program (command-line arguments, batch files, standard input,
chat lines, HTTP bodies): the one place that turns it into a clean ``str`` or refuses it
with one line.

Python hands over undecodable bytes as lone surrogates (``surrogateescape`` for argv and
file names, ``\\ud800`` escapes in JSON), which cannot be encoded again: printed, analysed
or embedded they end in a ``UnicodeEncodeError`` far from where they came in. Every face
calls :func:`check_text` (or :func:`decode_utf8` for raw bytes) at the door instead.
"""

from __future__ import annotations

import re

from rag.errors import InputError

#: Any surrogate code point in a Python ``str`` is a lone one (pairs decode to one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, what: str) -> str:
    """``text`` unchanged, or InputError when it holds a lone surrogate: bytes that were
    not UTF-8, or a ``\\ud800``-style escape of half a character. ``what`` names the
    input in the message (e.g. ``"질문"``)."""
    m = _SURROGATE.search(text)
    if m is not None:
        raise InputError(f"{what}에 UTF-8로 읽을 수 없는 문자가 있습니다 ({m.start() + 1}번째 글자, "
                         f"U+{ord(m.group()):04X}); UTF-8 텍스트로 주세요")
    return text


def decode_utf8(data: bytes, what: str) -> str:
    """``data`` decoded strictly as UTF-8 (a leading BOM dropped), or InputError saying at
    which byte it stops being UTF-8."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}이(가) 올바른 UTF-8이 아닙니다 (바이트 {exc.start}); UTF-8로 저장해 주세요") from None
