"""Text from outside the program (command-line arguments, environment variables, batch
files, standard input, chat lines, HTTP bodies): the one place that turns it into a clean
``str`` or refuses it with one line.

Python hands over undecodable bytes as lone surrogates (``surrogateescape`` for argv,
environment values and file names, ``\\ud800`` escapes in JSON), which cannot be encoded
again: printed, analysed or embedded they end in a ``UnicodeEncodeError`` far from where
they came in. Every face calls :func:`check_text` (or :func:`decode_utf8` for raw bytes,
:func:`check_argument` for argv, :func:`check_json_value` for a parsed JSON value that
will be written back) at the door instead.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator

from rag.errors import InputError

#: Any surrogate code point in a Python ``str`` is a lone one (pairs decode to one character).
_SURROGATE = re.compile("[\ud800-\udfff]")

#: How much of a refused argument a message shows (characters).
_SHOWN_CHARS = 60


def check_text(text: str, what: str) -> str:
    """``text`` unchanged, or InputError when it holds a lone surrogate: bytes that were
    not UTF-8, or a ``\\ud800``-style escape of half a character. ``what`` names the
    input in the message (e.g. ``"질문"``)."""
    m = _SURROGATE.search(text)
    if m is not None:
        raise InputError(f"{what}에 UTF-8로 읽을 수 없는 문자가 있습니다 ({m.start() + 1}번째 글자, "
                         f"U+{ord(m.group()):04X}); UTF-8 텍스트로 주세요")
    return text


def decode_utf8(data: bytes, what: str, advice: str = "UTF-8로 저장해 주세요") -> str:
    """``data`` decoded strictly as UTF-8 (a leading BOM dropped), or InputError saying at
    which byte (and, for text of several lines, on which line) it stops being UTF-8."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        where = f"바이트 {exc.start}"
        if b"\n" in data:
            line = data.count(b"\n", 0, exc.start) + 1
            where += f", {line}번째 줄"
        raise InputError(f"{what}이(가) 올바른 UTF-8이 아닙니다 ({where}); {advice}") from None


def printable(text: str) -> str:
    """``text`` safe to print or encode whatever it holds: a lone surrogate from an
    undecodable byte is shown as ``\\xff``, any other as ``\\ud800``."""
    if _SURROGATE.search(text) is None:
        return text
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else
                   ch.encode("utf-8", "backslashreplace").decode("ascii") if 0xD800 <= ord(ch) <= 0xDFFF else ch
                   for ch in text)


def check_argument(arg: str, position: int) -> str:
    """A command-line argument unchanged, or InputError naming it (``position``: 1 for the
    first argument after the program) and the byte where it stops being UTF-8."""
    if _SURROGATE.search(arg) is None:
        return arg
    shown = printable(arg)
    shown = shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 1] + "…"
    what = f"명령줄의 {position}번째 인자 '{shown}'"
    try:
        data = os.fsencode(arg)  # the bytes as given (argv is decoded with surrogateescape)
    except UnicodeEncodeError:  # a surrogate that did not come from a byte (a caller's str)
        return check_text(arg, what)
    decode_utf8(data, what, advice="UTF-8로 주세요")
    return arg


def walk_json(value: object) -> Iterator[tuple[str, object, bool]]:
    """Everything inside a parsed JSON value, depth first and without recursion (as deep as
    the parser allowed): ``(path, item, is_key)``, where ``path`` names the item with dots
    (``messages.0.content``; ``""`` for the value itself) and a key comes with the path of
    the object holding it."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, v = stack.pop()
        yield path, v, False
        if isinstance(v, dict):
            for key, item in v.items():
                yield path, key, True
                stack.append((f"{path}.{key}" if path else str(key), item))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(v))


def check_json_value(value: object, what: str) -> object:
    """``value`` (as ``json.loads`` made it) unchanged when it can be written back as strict
    JSON in UTF-8, else InputError: a number that is not finite (``NaN``, ``Infinity``, or
    one too large for a float such as ``1e999``), or a string or key with a lone surrogate."""
    for _, v, _ in walk_json(value):
        if isinstance(v, float) and not math.isfinite(v):
            if v is value:
                raise InputError(f"{what}이(가) 유한한 수가 아닙니다 (NaN, Infinity, 또는 1e999처럼 너무 큰 수); "
                                 f"JSON으로 다시 쓸 수 없으니 문자열로 주세요")
            raise InputError(f"{what}에 유한하지 않은 수(NaN, Infinity, 또는 1e999처럼 너무 큰 수)가 있습니다; "
                             f"JSON으로 다시 쓸 수 없습니다")
        if isinstance(v, str):
            check_text(v, what)
    return value
