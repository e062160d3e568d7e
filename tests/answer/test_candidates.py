"""Answer candidates (rag.answer.candidates): sentences, list items and table rows with exact spans,
on a hand-made passage whose every candidate is known, and as invariants over every chunk
of the real index."""

from __future__ import annotations

import pytest

from rag.answer.candidates import clean_display, passage_candidates
from rag.text.strings import match_key
from rag.types import Passage

DOC = """# 1. 지원 사업
□ 스마트 공장 보급을 확대하고
중소기업 지원을 강화한다. 2023. 03. 발표된 계획에 따른다. 예산은 66억원이다.
- 로봇
- 센서
  * 세부: 비전 센서
지역\t지원 분야\t장비(종)
광주\t용접\t22
\t주조\t17
울산\t주조, 용접\t17
"""


def _passage(text: str, start: int = 0, chunk_id: str = "t-0001") -> Passage:
    return Passage(rank=1, score=1.0, chunk_id=chunk_id, doc_id="t", doc_title="시험 문서", section="1. 지원 사업",
                   text=text, start=start, end=start + len(text))


@pytest.fixture(scope="module")
def cands(analyzer):
    return passage_candidates(_passage(DOC), DOC, analyzer)


def test_every_line_becomes_the_candidate_it_should(cands):
    got = [(c.kind, c.quote, c.display) for c in cands]
    assert got == [
        ("heading", "# 1. 지원 사업", "1. 지원 사업"),
        ("heading", "□ 스마트 공장 보급을 확대하고", "스마트 공장 보급을 확대하고"),
        ("sentence", "중소기업 지원을 강화한다.", "중소기업 지원을 강화한다."),
        # no sentence end after a digit: "2023. 03." is a date
        ("sentence", "2023. 03. 발표된 계획에 따른다.", "2023. 03. 발표된 계획에 따른다."),
        ("sentence", "예산은 66억원이다.", "예산은 66억원이다."),
        ("item", "- 로봇", "로봇"),
        ("item", "- 센서", "센서"),
        ("item", "* 세부: 비전 센서", "세부: 비전 센서"),
        ("row", "광주\t용접\t22", "광주 | 지원 분야: 용접 | 장비(종): 22"),
        # an empty leading cell (a merged cell) is filled from the row above
        ("row", "\t주조\t17", "광주 | 지원 분야: 주조 | 장비(종): 17"),
        ("row", "울산\t주조, 용접\t17", "울산 | 지원 분야: 주조, 용접 | 장비(종): 17"),
    ]


def test_spans_are_exact_and_structure_is_kept(cands):
    for c in cands:
        assert DOC[c.start:c.end] == c.quote
    rows = [c for c in cands if c.kind == "row"]
    assert all(c.columns == ("지역", "지원 분야", "장비(종)") for c in rows)
    assert len({c.group for c in rows}) == 1  # one table, one group
    items = [c for c in cands if c.kind == "item"]
    assert [c.level for c in items] == [2, 2, 4]
    assert cands[items[2].parent].quote == "- 센서"  # the sub-item hangs under its item
    assert cands[items[0].parent].quote == "중소기업 지원을 강화한다."  # the line above the list
    sentences = [c for c in cands if c.kind == "sentence"]
    assert len({c.group for c in sentences}) == 1  # one paragraph


def test_tokens_of_line_and_context(cands, analyzer):
    row = next(c for c in cands if c.quote.startswith("울산"))
    assert "울산" in row.own and "용접" in row.own
    assert "지역" in row.context  # the table header is context, not the row's own text
    assert row.own_text == match_key("울산 주조, 용접 17")


def test_offsets_follow_the_passage_start(analyzer):
    """A passage in the middle of a document: spans are document offsets, not passage ones."""
    doc = "앞 문단이다.\n\n" + DOC
    base = doc.index("# 1.")
    cands = passage_candidates(_passage(doc[base:], start=base, chunk_id="t-0002"), doc, analyzer)
    assert cands and all(doc[c.start:c.end] == c.quote and c.start >= base for c in cands)


def test_clean_display_removes_markup():
    assert clean_display("  **굵게** 쓴 <b>말</b>\\* 과  공백 ") == "굵게 쓴 말* 과 공백"
    assert clean_display("### 제목") == "제목"


def test_every_chunk_of_the_real_index(retriever):
    """Over the whole corpus: spans verbatim inside their passage, kinds known, rows named."""
    kinds = set()
    for row in range(len(retriever.index.chunks)):
        p = retriever._passage(1, row, 1.0)
        doc = retriever.doc_texts[p.doc_id]
        cands = passage_candidates(p, doc, retriever.analyzer)
        assert cands, p.chunk_id
        for c in cands:
            assert doc[c.start:c.end] == c.quote, (p.chunk_id, c.quote)
            assert p.start <= c.start < c.end <= p.end
            assert c.display.strip() and "\n" not in c.display
            assert c.kind in ("sentence", "item", "row", "heading")
            assert -1 <= c.parent < len(cands)
            kinds.add(c.kind)
            if c.kind == "row" and c.columns:
                assert " | " in c.display or len([x for x in c.quote.split("\t") if x.strip()]) == 1
    assert kinds == {"sentence", "item", "row", "heading"}
