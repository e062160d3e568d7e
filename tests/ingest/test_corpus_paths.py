"""Corpus paths stay inside the corpus folder: a manifest entry that leads out of it is
refused with one line, by the loader and by the real `rag` entry point, and nothing of the
outside file is indexed or served."""

from __future__ import annotations

import json
import os

import pytest

from rag.errors import CorpusError
from rag.ingest.corpus import load_corpus
from tests.conftest import make_small_corpus, run_rag

SECRET = "외부비밀문서 내용: 이 줄은 절대 검색되면 안 됩니다"


def _point_first_entry_at(corpus, target: str) -> None:
    manifest = corpus / "manifest.json"
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    entries[0]["file"] = target
    manifest.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")


@pytest.fixture()
def corpus_and_secret(tmp_path):
    corpus = make_small_corpus(tmp_path / "corpus")
    secret = tmp_path / "outside-secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    return corpus, secret


def test_inside_paths_load_as_before(corpus_and_secret):
    corpus, _ = corpus_and_secret
    docs = load_corpus(corpus)
    assert [d.doc_id for d in docs] == ["002", "003"]
    assert all(d.path.parent == corpus.resolve() for d in docs)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "folder itself"])
def test_a_path_out_of_the_corpus_is_refused(corpus_and_secret, how):
    corpus, secret = corpus_and_secret
    if how == "dotdot":
        target = "../outside-secret.txt"
    elif how == "absolute":
        target = str(secret)
    elif how == "symlink":
        os.symlink(secret, corpus / "link.txt")
        target = "link.txt"
    else:
        target = "."
    _point_first_entry_at(corpus, target)
    with pytest.raises(CorpusError, match="코퍼스 폴더 .* 밖을 가리킵니다"):
        load_corpus(corpus)


def test_the_cli_refuses_it_in_one_line_and_serves_nothing_of_it(corpus_and_secret, tmp_path):
    corpus, _ = corpus_and_secret
    _point_first_entry_at(corpus, "../outside-secret.txt")
    env = {**os.environ, "RAG_CORPUS_DIR": str(corpus), "RAG_INDEX_DIR": str(tmp_path / "index")}
    r = run_rag("search", "외부비밀문서", "--json", env=env)
    err = r.stderr.decode("utf-8")
    assert r.returncode == 1, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "밖을 가리킵니다" in err
    assert "외부비밀문서" not in r.stdout.decode("utf-8")
    assert not (tmp_path / "index" / "current").exists()
