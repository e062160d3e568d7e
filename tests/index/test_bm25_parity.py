"""BM25 scores from our bm25s index checked against rank-bm25's BM25Okapi, the reference,
on the same Kiwi tokens of the real corpus."""

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag.index.sparse import BM25Params, SparseIndex
from rag.ingest.chunking import chunk_document
from rag.text.korean import get_analyzer

QUESTIONS = [
    "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?",
    "2025년 뿌리산업 지원예산 총액은 얼마야?",
    "소부장 으뜸기업을 몇 개까지 늘릴 계획이야?",
    "외국인 기술인력 양성대학은 몇 개교로 늘었나?",
    "금형 업종의 사업체 수와 종사자 수",
    "전남테크노파크의 디지털 전환 지원사업",
    "새싹기업 100 프로젝트",
    "EU 핵심원자재법 재활용 목표",
]


def assert_same_ranking(got: np.ndarray, expected: np.ndarray, top: int, tie: float) -> None:
    """The reference's top ``top`` come out in the same order, except within near-ties:
    bm25s scores in float32, the reference in float64, so scores closer than ``tie``
    may swap. The top ``top`` as a set must agree beyond ties too."""
    ref = np.argsort(-expected, kind="stable")[:top]
    for i, a in enumerate(ref):
        for b in ref[i + 1:]:
            if expected[a] - expected[b] > tie:
                assert got[a] > got[b], (a, b, expected[a], expected[b], got[a], got[b])
    cut = expected[ref[-1]]
    clear_in = {int(i) for i in ref if expected[i] > cut + tie}
    clear_out = {int(i) for i in np.flatnonzero(expected < cut - tie)}
    ours = set(int(i) for i in np.argsort(-got, kind="stable")[:top])
    assert clear_in <= ours and not (clear_out & ours)


@pytest.fixture(scope="module")
def tokens(corpus):
    analyzer = get_analyzer()
    chunks = [c for d, doc in corpus.items() for c in chunk_document(d, doc.text)]
    return analyzer, analyzer.tokenize_many([c.index_text for c in chunks])


def test_scores_match_bm25okapi(tokens):
    """Robertson idf (what BM25Okapi computes) gives the same scores for terms that occur
    in fewer than half of the chunks; BM25Okapi floors negative idf at 0.25×mean idf,
    bm25s at 0, so very common terms are left out of the exact comparison. bm25s also
    drops the constant (k1 + 1) factor of the numerator, which cannot change a ranking."""
    analyzer, corpus_tokens = tokens
    ours = SparseIndex.build(corpus_tokens, BM25Params(k1=1.5, b=0.75, method="robertson"))
    ref = BM25Okapi(corpus_tokens, k1=1.5, b=0.75)
    n = len(corpus_tokens)
    for q in QUESTIONS:
        q_tokens = [t for t in set(analyzer.tokenize(q)) if 0 < sum(t in d for d in corpus_tokens) < n / 2]
        assert q_tokens, q
        expected = ref.get_scores(q_tokens)
        got = ours.scores(q_tokens) * (1.5 + 1)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        assert_same_ranking(got, expected, top=10, tie=1e-3)


def test_production_variant_ranks_like_the_reference(tokens):
    """The default (lucene idf, our k1) keeps the reference's top hit on every question."""
    analyzer, corpus_tokens = tokens
    ours = SparseIndex.build(corpus_tokens)
    ref = BM25Okapi(corpus_tokens, k1=ours.params.k1, b=ours.params.b)
    agree = 0
    for q in QUESTIONS:
        q_tokens = analyzer.tokenize(q)
        agree += int(np.argmax(ours.scores(q_tokens)) == np.argmax(ref.get_scores(q_tokens)))
    assert agree >= len(QUESTIONS) - 1


def test_unknown_and_empty_queries_score_zero(tokens):
    _, corpus_tokens = tokens
    ours = SparseIndex.build(corpus_tokens)
    assert not ours.scores([]).any()
    assert not ours.scores(["존재하지않는낱말xyz"]).any()
    assert ours.scores([]).shape == (len(corpus_tokens),)


def test_save_and_load_memory_mapped(tokens, tmp_path):
    analyzer, corpus_tokens = tokens
    built = SparseIndex.build(corpus_tokens)
    built.save(tmp_path / "bm25")
    loaded = SparseIndex.load(tmp_path / "bm25", built.params, mmap=True)
    q = analyzer.tokenize(QUESTIONS[0])
    np.testing.assert_allclose(loaded.scores(q), built.scores(q))
