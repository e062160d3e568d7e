"""Hostile input to the real ``rag`` entry point: bytes that are not UTF-8 in arguments,
batch files, question sets and chat lines; JSON escapes of half a character (``\\ud800``);
ids JSON cannot write back (``1e999``, ``NaN``); bad ``RAG_*`` variables.

Every refusal is one line on stderr (exit 2) or, in a batch, one ``error`` line for just
that input line; stdout stays strict JSON in UTF-8; nothing ends in a traceback. The
children run with strict standard streams (``PYTHONIOENCODING=utf-8:strict``, as under a
``en_US.UTF-8`` locale), where a lone surrogate that slips through cannot be written.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from conftest import RAG, ROOT

Q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
BIG_ID = 123456789012345678901234567890123  # no float holds it: echoed digit for digit


def rag(*args: str | bytes, env: dict | None = None, stdin: bytes | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """This checkout's ``rag`` with ``args`` as given (bytes pass through undecoded)."""
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", **(env or {})}
    return subprocess.run([*RAG, *args], env=full_env, input=stdin, capture_output=True, timeout=timeout, cwd=ROOT,
                          check=False)


def rag_all(runs: list[tuple]) -> list[subprocess.CompletedProcess]:
    """Several independent ``rag(*args, env=...)`` runs at once (the module stays fast)."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda run: rag(*run[0], env=run[1] if len(run) > 1 else None), runs))


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert b"Traceback" not in r.stdout + r.stderr, r.stderr.decode("utf-8", "replace")[-3000:]


def stderr_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.decode("utf-8").split("\n") if line.strip()]


def one_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one line a refused command prints (after checking the exit code and that
    nothing else was printed)."""
    no_traceback(r)
    assert r.returncode == code, r.stderr.decode("utf-8", "replace")[-3000:]
    lines = stderr_lines(r)
    assert len(lines) == 1 and lines[0].startswith("오류: "), lines
    assert r.stdout == b""
    return lines[0]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def strict_rows(stdout: bytes) -> list[dict]:
    """Every stdout line parsed as strict JSON (no NaN/Infinity) from strict UTF-8."""
    text = stdout.decode("utf-8")
    return [json.loads(line, parse_constant=_refuse_constant) for line in text.split("\n") if line]


# --------------------------------------------------------------- arguments, environment


def test_argument_bytes_that_are_not_utf8_are_one_line(tmp_path):
    named = tmp_path.as_posix().encode() + b"/q\xff.jsonl"  # exists: not refused for being missing
    with open(named, "wb") as fh:
        fh.write(json.dumps({"id": 1, "question": Q}, ensure_ascii=False).encode() + b"\n")
    cases = [
        ([b"ask", b"\xff\xfe \xec\x9a\xa9\xec\xa0\x91"], "2번째 인자 '\\xff\\xfe 용접'"),
        ([b"search", b"--batch", named, b"--json"], "3번째 인자"),
        ([b"ask", b"--mode", b"\xff", b"\xec\x9a\xa9\xec\xa0\x91"], "3번째 인자 '\\xff'"),
        ([b"eval", b"--set=\xed\xa0\x80.jsonl"], "2번째 인자 '--set=\\xed\\xa0\\x80.jsonl'"),
    ]
    for (args, where), r in zip(cases, rag_all([(args,) for args, _ in cases])):
        line = one_error(r)
        assert where in line and "UTF-8" in line, (args, line)


def test_a_long_path_is_one_unwrapped_line(tmp_path):
    path = tmp_path.joinpath(*["아주-긴-폴더-이름"] * 12, "questions.jsonl")  # 400 bytes, 250 columns
    line = one_error(rag("ask", "--batch", str(path), "--json", env={"COLUMNS": "40"}))
    assert line == f"오류: 질문 파일을 읽을 수 없습니다: {path} (파일이 없습니다)"


def test_an_error_holding_undecodable_text_prints_without_crashing():
    code = "from rag.cli.render import print_error; print_error('경로 /tmp/\\udcff.jsonl\\n둘째 \\ud800 [bold]')"
    r = subprocess.run([RAG[0], "-c", code], env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
                       capture_output=True, timeout=60, cwd=ROOT, check=False)
    no_traceback(r)
    assert r.returncode == 0
    assert stderr_lines(r) == ["오류: 경로 /tmp/\\xff.jsonl 둘째 \\ud800 [bold]"]


def test_bad_variables_are_one_line_for_every_command_and_the_server_but_not_help():
    with socket.socket() as s:  # a free port: were the server to start, the test would time out
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ask, serve, status, line, zero, help_ = rag_all([
        (["ask", Q], {"RAG_EMBED_BATCH": "abc"}),
        (["serve", "--port", port], {"RAG_EMBED_BATCH": "abc"}),
        (["index", "status"], {"RAG_INDEX_DIR": b"/tmp/\xff-index"}),
        (["ask", Q], {"RAG_ANSWER_LINE": "neural"}),
        (["search", Q], {"RAG_EMBED_BATCH": "0"}),
        (["ask", "--help"], {"RAG_EMBED_BATCH": "abc"}),
    ])
    for r in (ask, serve):
        assert one_error(r) == ("오류: 환경 변수 RAG_EMBED_BATCH='abc'이(가) 올바르지 않습니다: 1 이상의 정수여야 합니다 "
                                "(기본값 32; 쓰지 않으려면 변수를 지우세요)")
    assert "RAG_INDEX_DIR" in one_error(status) and "UTF-8" in one_error(status)
    assert "RAG_ANSWER_LINE='neural'" in one_error(line)
    assert "RAG_EMBED_BATCH='0'" in one_error(zero)
    assert help_.returncode == 0 and b"--batch" in help_.stdout


# ------------------------------------------------------------------------------- batch

# (input line, expected id, whether it is answered, what its error says)
BATCH = [
    (b"\xef\xbb\xbf" + json.dumps({"id": "bom", "question": Q}, ensure_ascii=False).encode(), "bom", True, None),
    ('{"id": 1, "question": "\\ud800 용접"}'.encode(), 1, False, "U+D800"),
    (f'{{"id": 1e999, "question": "{Q}"}}'.encode(), None, False, "유한한 수"),
    (f'{{"id": NaN, "question": "{Q}"}}'.encode(), None, False, "유한한 수"),
    (f'{{"id": -Infinity, "question": "{Q}"}}'.encode(), None, False, "유한한 수"),
    (f'{{"id": {BIG_ID}, "question": "{Q}"}}'.encode(), BIG_ID, True, None),
    (f'{{"id": "\\udcff", "question": "{Q}"}}'.encode(), None, False, "U+DCFF"),
    (b'{"id": "bytes", "question": "\xff\xfe \xec\x9a\xa9\xec\xa0\x91"}', "bytes", False, "바이트 29"),
    (b'{"id": 1e999, "question": "no closing brace"', None, False, "JSON"),
    (f'{{"id": 9, "question": "\\ud83d\\ude00 {Q}"}}'.encode(), 9, True, None),  # a valid pair: an emoji
    (b"[" * 100_000, None, False, "JSON"),
    (json.dumps({"id": "last", "question": Q}, ensure_ascii=False).encode() + b"\r", "last", True, None),
]


def _check_batch(r: subprocess.CompletedProcess, command: str) -> None:
    no_traceback(r)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    rows = strict_rows(r.stdout)
    assert [row["id"] for row in rows] == [expected_id for _, expected_id, _, _ in BATCH]
    for n, (row, (_, _, answered, error)) in enumerate(zip(rows, BATCH), 1):
        if answered:
            assert "error" not in row, row
            found = row["passages"] if command == "search" else row["citations"] + row["related"]
            assert found, row
        else:
            assert row["line"] == n and error in row["error"] and "\n" not in row["error"], (n, row)
            assert "question" not in row or row["question"].isprintable(), row
    answered = sum(1 for *_, a, _ in BATCH if a)
    assert stderr_lines(r) == [f'{len(BATCH) - answered}개 줄에 오류가 있습니다; 해당 줄의 "error" 필드를 보세요']


@pytest.fixture(scope="module")
def batch_bytes() -> bytes:
    return b"\n".join(line for line, *_ in BATCH) + b"\n"


def test_search_batch_file_answers_good_lines_and_one_error_per_bad_line(project_index, tmp_path, batch_bytes):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(batch_bytes)
    _check_batch(rag("search", "--batch", str(path), "--json", "-k", "2"), "search")


def test_ask_batch_on_stdin_answers_good_lines_and_one_error_per_bad_line(project_index, batch_bytes):
    _check_batch(rag("ask", "--batch", "-", "--json", "-k", "2", stdin=batch_bytes), "ask")


# ------------------------------------------------------------------------ question sets


def _one_question(**changes) -> bytes:
    item = {"id": "q1", "question": Q, "answers": ["광주첨단산단"], "doc": "001",
            "section": "참고", "type": "entity", "note": "", "tags": []}
    return json.dumps({**item, **changes}, ensure_ascii=False).encode()


def test_question_sets_that_are_not_clean_utf8_json_are_one_line(tmp_path):
    bom = b"\xef\xbb\xbf"  # allowed: the errors below are on the lines after it
    cases = [
        (bom + _one_question() + b"\n" + _one_question(id="q2").replace(b"q2", b"q\xff2"), "바이트 ", "2번째 줄"),
        (bom + _one_question() + b"\r\n" + _one_question(question="QQ").replace(b"QQ", b"\\ud800"), ":2", "U+D800"),
        (_one_question() + b"\n\n" + _one_question(id="q3").replace(b'"note": ""', b'"note": NaN'), ":3", "유한하지 않은"),
    ]
    paths = [tmp_path / f"set{i}.jsonl" for i in range(len(cases))]
    for path, (data, _, _) in zip(paths, cases):
        path.write_bytes(data + b"\n")
    results = rag_all([(["eval", "--set", str(path), "--mode", "bm25"],) for path in paths])
    for path, (_, where, why), r in zip(paths, cases, results):
        line = one_error(r)
        assert str(path) in line and where in line and why in line, line


# -------------------------------------------------------------------------------- chat


def test_chat_refuses_a_bad_line_and_answers_the_next(project_index):
    lines = [b"\xff\xfe \xec\x9a\xa9\xec\xa0\x91", b"\xed\xa0\x80", Q.encode(), b"/history"]
    r = rag("chat", stdin=b"\n".join(lines) + b"\n")
    no_traceback(r)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-3000:]
    out = r.stdout.decode("utf-8")
    refusals = [line for line in out.split("\n") if "질문을 처리할 수 없습니다" in line]
    assert len(refusals) == 2 and all("UTF-8" in line and "바이트 0" in line for line in refusals), refusals
    assert "광주첨단산단" in out  # the good line after them was answered
    assert f"1. {Q}" in out and "2. " not in out.split(f"1. {Q}", 1)[1]  # only it is in the history


# ------------------------------------------------------------------------ rich markup


def test_markup_in_a_question_or_a_passage_is_shown_as_typed():
    from rag.cli import render
    from rag.cli.search import _print_search
    from rag.types import Passage

    p = Passage(rank=1, score=0.5, chunk_id="001-0001", doc_id="001", doc_title="[/] 제목", section="[bold]절",
                text="본문 [/x] [link=http://x]끝", start=0, end=20)
    with render.out.capture() as captured:
        _print_search("[/x] 용접 [bold]", 1, "hybrid", SimpleNamespace(passages=[p]))
    shown = captured.get()
    for text in ("[/x] 용접 [bold]  (hybrid, top 1)", "[/] 제목", "[bold]절", "001 [0:20]", "본문 [/x] [link=http://x]끝"):
        assert text in shown, text
