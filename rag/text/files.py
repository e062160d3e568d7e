"""Writing files so that a reader never sees half of one, and updating one marked section
of a report while leaving the rest of the file as it is."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, fsync: bool = False) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over
    ``path``: readers see the old file or the new one, never a part. ``fsync`` also
    flushes it to disk first (for files a crash must not lose)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON (Korean unescaped), written atomically."""
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def replace_marked_section(text: str, start: str, end: str, block: str) -> str:
    """``text`` with the part from marker ``start`` through marker ``end`` replaced by
    ``block`` (which carries the markers itself); appended after a blank line when the
    markers are missing. The result ends with one newline."""
    i, j = text.find(start), text.find(end)
    if i != -1 and j != -1 and j > i:
        new = text[:i] + block.rstrip("\n") + text[j + len(end):]
    else:
        new = text.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n"
    return new if new.endswith("\n") else new + "\n"
