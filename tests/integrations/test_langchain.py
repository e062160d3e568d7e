"""``rag.integrations.langchain.RagRetriever`` as LangChain code uses it: ``invoke`` on the
session's local index, and against a real server on loopback (with a UTF-8 API key).

What it proves: the question about the welding support centre returns, first, the passage
holding the 광주 … 광주첨단산단 row of corpus/001, as a ``Document`` whose text is exactly
the document's span and whose metadata say where it is and who published it; local and
remote give the same documents; the core package never imports langchain_core.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import langchain_core  # noqa: F401  (a test extra: missing, these tests fail, never skip)
import pytest
from live_server import ROOT, free_port, running

from rag.errors import QuestionError
from rag.integrations.langchain import RagRetriever, RagServerError

QUESTION = "용접 분야 지역뿌리기술지원센터는 어디야?"
GWANGJU_ROW = "광주\t용접\t22\t광주첨단산단"
KEY = "lc-키-0123456789"  # non-ASCII: the retriever sends the bearer token as UTF-8, as the server reads it
METADATA_KEYS = {"doc_id", "title", "section", "start", "end", "score", "chunk_id", "rank", "publisher", "date"}


@pytest.fixture(scope="module")
def local(project_index):
    return RagRetriever(k=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_index):
    with running(tmp_path_factory.mktemp("langchain-logs"), langchain={"RAG_API_KEY": KEY}) as started:
        yield started["langchain"]


def _check_gwangju(docs, corpus) -> None:
    from langchain_core.documents import Document

    assert len(docs) == 5 and all(isinstance(d, Document) for d in docs)
    first = docs[0]
    assert GWANGJU_ROW in first.page_content
    m = first.metadata
    assert set(m) == METADATA_KEYS
    assert m["doc_id"] == "001" and m["title"] == "2025년도 뿌리산업 진흥 실행계획"
    assert m["section"].endswith("지역뿌리기술지원센터 구축현황")
    assert (m["publisher"], m["date"]) == ("관계부처 합동", "2025-04")
    assert m["rank"] == 1 and m["score"] > 0 and m["chunk_id"].startswith("001-")
    for d in docs:  # every page is exactly the document's text at its offsets
        assert corpus[d.metadata["doc_id"]].text[d.metadata["start"]:d.metadata["end"]] == d.page_content
        assert d.metadata["publisher"] == corpus[d.metadata["doc_id"]].publisher
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3, 4, 5]


def test_local_index(local, corpus):
    _check_gwangju(local.invoke(QUESTION), corpus)


def test_local_in_a_chain_batch_and_async(local):
    from langchain_core.runnables import RunnableLambda

    chain = local | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs))
    assert "광주첨단산단" in chain.invoke(QUESTION)
    batch = local.batch([QUESTION, "2025년 뿌리산업 지원예산 총액은?"])
    assert len(batch) == 2 and GWANGJU_ROW in batch[0][0].page_content
    docs = asyncio.run(local.ainvoke(QUESTION))
    assert GWANGJU_ROW in docs[0].page_content
    assert len(RagRetriever(k=2, mode="bm25", retriever=local._local()).invoke(QUESTION)) <= 2


def test_server(server, local, corpus):
    remote = RagRetriever(base_url=server.url, api_key=KEY)
    docs = remote.invoke(QUESTION)
    _check_gwangju(docs, corpus)
    here = local.invoke(QUESTION)
    assert [(d.page_content, d.metadata["chunk_id"]) for d in docs] == [(d.page_content, d.metadata["chunk_id"]) for d in here]
    assert [d.metadata["score"] for d in docs] == pytest.approx([d.metadata["score"] for d in here], abs=1e-4)


def test_server_errors(server):
    with pytest.raises(RagServerError, match="401: wrong API key"):
        RagRetriever(base_url=server.url, api_key="wrong").invoke(QUESTION)
    with pytest.raises(RagServerError, match="401: missing API key"):
        RagRetriever(base_url=server.url).invoke(QUESTION)
    with pytest.raises(RagServerError, match="cannot reach"):
        RagRetriever(base_url=f"http://127.0.0.1:{free_port()}", timeout=5).invoke(QUESTION)
    with pytest.raises(QuestionError):  # checked before any request
        RagRetriever(base_url=server.url, api_key=KEY).invoke("   ")


def test_bad_settings_are_refused():
    from pydantic import ValidationError

    for kwargs in ({"k": 0}, {"mode": "fast"}, {"top_k": 3}):
        with pytest.raises(ValidationError):
            RagRetriever(**kwargs)


def test_the_core_never_imports_langchain():
    code = ("import sys, rag.api, rag.cli.main, rag.integrations, rag.search.retriever, rag.answer.pipeline; "
            "assert 'langchain_core' not in sys.modules, 'imported'; print('ok')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
