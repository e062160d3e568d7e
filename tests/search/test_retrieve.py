"""Fusion, min-max normalisation and the BM25 top-k selection of rag.search.retriever, by hand and
against their slow definitions; then the retriever's modes on the real index."""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import ConfigError, QuestionError
from rag.index.sparse import top_positive
from rag.query.checks import check_options, check_question
from rag.search.fusion import FusionConfig, _minmax, fuse

# ----------------------------------------------------------------------------- min-max


def test_minmax_maps_onto_zero_one():
    out = _minmax(np.array([2.0, 4.0, 3.0, 2.0]))
    np.testing.assert_allclose(out, [0.0, 1.0, 0.5, 0.0])


def test_minmax_of_equal_scores_is_all_ones():
    """One candidate, or all tied: each gets the full share (not 0/0)."""
    np.testing.assert_array_equal(_minmax(np.array([7.5])), [1.0])
    np.testing.assert_array_equal(_minmax(np.array([0.3, 0.3, 0.3])), [1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- fusion


def test_weighted_fusion_by_hand():
    sparse = {0: 10.0, 1: 5.0, 2: 0.0}  # normalised: 1, 0.5, 0
    dense = {1: 0.9, 3: 0.8, 0: 0.7}  # normalised: 1, 0.5, 0
    cfg = FusionConfig(method="weighted", weight=0.4)
    got = dict(fuse(sparse, dense, cfg))
    assert got[0] == pytest.approx(0.6 * 1.0 + 0.4 * 0.0)
    assert got[1] == pytest.approx(0.6 * 0.5 + 0.4 * 1.0)
    assert got[2] == pytest.approx(0.0)
    assert got[3] == pytest.approx(0.4 * 0.5)
    assert [row for row, _ in fuse(sparse, dense, cfg)] == [1, 0, 3, 2]


def test_rrf_by_hand():
    sparse = {5: 3.0, 6: 2.0}
    dense = {6: 0.9, 7: 0.8}
    cfg = FusionConfig(method="rrf", rrf_k=60)
    got = dict(fuse(sparse, dense, cfg))
    assert got[5] == pytest.approx(1 / 61)
    assert got[6] == pytest.approx(1 / 62 + 1 / 61)
    assert got[7] == pytest.approx(1 / 62)
    assert [row for row, _ in fuse(sparse, dense, cfg)] == [6, 5, 7]


def test_fusion_ties_go_to_the_lower_row_and_one_list_may_be_empty():
    cfg = FusionConfig(method="weighted", weight=0.5)
    assert fuse({9: 1.0, 4: 1.0}, {}, cfg) == [(4, 0.5), (9, 0.5)]
    assert fuse({}, {}, cfg) == []
    assert [r for r, _ in fuse({}, {3: 0.2, 1: 0.9}, cfg)] == [1, 3]


def test_fusion_weight_moves_the_ranking():
    sparse, dense = {0: 1.0, 1: 0.0}, {0: 0.0, 1: 1.0}
    assert fuse(sparse, dense, FusionConfig(weight=0.3))[0][0] == 0
    assert fuse(sparse, dense, FusionConfig(weight=0.7))[0][0] == 1


def test_unknown_fusion_method_is_refused():
    with pytest.raises(ConfigError, match="알 수 없는 결합 방식"):
        fuse({0: 1.0}, {0: 1.0}, FusionConfig(method="borda"))


# ----------------------------------------------------------------------------- top-k shortcut


def _slow_top(scores: np.ndarray, depth: int) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    return [int(r) for r in order if scores[r] > 0][:depth]


@pytest.mark.parametrize("seed", range(30))
def test_top_positive_equals_a_full_stable_sort(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # few distinct values, many zeros: ties everywhere, at the cut too
    scores = rng.choice([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.25], size=n).astype(np.float32)
    for depth in (1, 5, 50, n, n + 10):
        assert [int(r) for r in top_positive(scores, depth)] == _slow_top(scores, depth), (seed, depth)


def test_top_positive_drops_non_positive_scores():
    assert top_positive(np.array([0.0, -1.0, 0.0]), 5).size == 0
    assert list(top_positive(np.array([0.0, 2.0, 1.0, 2.0]), 2)) == [1, 3]


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("bad, message", [
    ("", "비어"), ("  \n\t", "비어"), ("가" * 2001, "2,001자"), ("뿌리\x00산업", "NUL"), (None, "텍스트"),
])
def test_check_question_refuses(bad, message):
    with pytest.raises(QuestionError, match=message):
        check_question(bad)


def test_check_question_strips_and_options_are_bounded():
    assert check_question("  뿌리산업이란?\n") == "뿌리산업이란?"
    check_options(1, "bm25")
    check_options(100, "dense")
    for k, mode in ((0, "hybrid"), (101, "hybrid"), (True, "hybrid"), (5, "sparse"), (2.0, "hybrid")):
        with pytest.raises(QuestionError):
            check_options(k, mode)


# ----------------------------------------------------------------------------- the real index


def test_modes_on_the_real_index(retriever):
    q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
    bm25 = retriever.search(q, k=10, mode="bm25")
    dense = retriever.search(q, k=10, mode="dense")
    hybrid = retriever.search(q, k=10, mode="hybrid")
    for res in (bm25, dense, hybrid):
        scores = [p.score for p in res.passages]
        assert scores == sorted(scores, reverse=True) and [p.rank for p in res.passages] == list(range(1, 11))
        for p in res.passages:
            assert retriever.doc_texts[p.doc_id][p.start:p.end] == p.text
    assert all(p.score > 0 for p in bm25.passages)
    assert all(-1.0 <= p.score <= 1.0 for p in dense.passages)  # cosines
    assert 0.0 <= hybrid.passages[-1].score <= hybrid.passages[0].score <= 1.0  # weights sum to 1
    assert "광주첨단산단" in hybrid.passages[0].text
    assert hybrid.sparse_top == pytest.approx(bm25.passages[0].score, rel=1e-5)
    assert hybrid.dense_top == pytest.approx(dense.passages[0].score, abs=1e-5)
    assert set(hybrid.timings_ms) == {"analyse", "bm25", "encode", "faiss", "fusion"}
