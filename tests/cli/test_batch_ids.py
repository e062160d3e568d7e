"""``rag ask --batch``: a malformed input line's error output keeps the line's ``id`` (read
from the broken text when the line is not JSON) and says which line it was (``line``), so
an integrator can match every output line to its input."""

from __future__ import annotations

import json
import os

from conftest import run_rag

Q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"


def test_error_lines_keep_their_id_and_line_number(project_index, tmp_path):
    lines = [
        json.dumps({"id": "ok", "question": Q}, ensure_ascii=False).encode(),
        b'{"id": "broken-json", "question": "\xec\x98\x88\xec\x82\xb0"',  # the closing brace is missing
        b'{"id": 42, "question": 7}',  # valid JSON, the question is not text
        b'["a list", "not an object"]',
        b"",
        b'{"id": "blank", "question": "   "}',
        b'\xff\xfe{"id": "not-utf8", "question": "x"}',
        b"{not json at all",
        b'{"question": "no id here"',
    ]
    batch = tmp_path / "q.jsonl"
    batch.write_bytes(b"\n".join(lines) + b"\n")
    r = run_rag("ask", "--batch", str(batch), "--json", env=dict(os.environ))
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    rows = [json.loads(x) for x in r.stdout.decode("utf-8").splitlines()]
    assert [row["id"] for row in rows] == ["ok", "broken-json", 42, None, "blank", "not-utf8", None, None]
    assert [row.get("line") for row in rows] == [None, 2, 3, 4, 6, 7, 8, 9]
    assert rows[0]["answerable"] is True and "광주첨단산단" in rows[0]["answer"] and "error" not in rows[0]
    for row in rows[1:]:
        assert row["error"] and "\n" not in row["error"]
        assert set(row) <= {"id", "line", "question", "error"}
    assert rows[4]["question"] == "   "  # a question error echoes the question as before
