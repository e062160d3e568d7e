"""The split by section group: groups cover the documents, sides are stable, and the
written question sets keep to their sides (no passage answers questions on both)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from rag.eval.splits import TEST_SHARE, group_at, section_groups, side_of


@pytest.fixture(scope="module")
def groups(corpus):
    return {d: section_groups(d, doc.text) for d, doc in corpus.items()}


def test_groups_cover_every_non_blank_character_once(corpus, groups):
    for doc_id, doc in corpus.items():
        spans = sorted((g.start, g.end) for g in groups[doc_id])
        for (a, b), (c, _) in zip(spans, spans[1:]):
            assert b <= c  # no overlap
            assert not doc.text[b:c].strip()  # only blank text between groups
        assert not doc.text[:spans[0][0]].strip() and not doc.text[spans[-1][1]:].strip()


def test_sides_are_stable_and_both_used(groups):
    sides = [g.side for gs in groups.values() for g in gs]
    assert side_of("001", "V. 지원예산 및 추진일정") == side_of("001", "V. 지원예산 및 추진일정")
    assert {"test", "train"} == set(sides)
    share = sides.count("test") / len(sides)
    assert abs(share - TEST_SHARE) < 0.2


@pytest.mark.parametrize("name, side", [("sealed_test.jsonl", "test"), ("train.jsonl", "train")])
def test_written_sets_keep_to_their_side(corpus, groups, name, side):
    rows = [json.loads(x) for x in (ROOT / "evaluation" / name).read_text(encoding="utf-8").splitlines() if x.strip()]
    assert rows
    for r in rows:
        doc = r["doc"][0] if isinstance(r["doc"], list) else r["doc"]
        text = corpus[doc].text
        i = text.find(r["quote"])
        assert i >= 0, r["id"]
        assert {g.side for g in groups[doc] if g.start < i + len(r["quote"]) and g.end > i} == {side}, r["id"]
        for a in r["answers"]:
            assert a in text, (r["id"], a)
        assert group_at(groups[doc], i) is not None
