"""Answer lines cut from the real documents: exact spans, rows read with their header and
their table's unit, and no unit where the table has none."""

import pytest

from rag.ingest.lines import chunk_lines


@pytest.fixture(scope="module")
def lines_001(corpus):
    text = corpus["001"].text
    return text, chunk_lines(text, 0, text)


def test_every_line_is_an_exact_span(lines_001):
    text, lines = lines_001
    assert len(lines) > 300
    assert all(0 <= ln.start < ln.end <= len(text) for ln in lines)
    # prose and items start and end on text; a row keeps its leading tabs (they place its cells)
    assert all(text[ln.start:ln.end].strip() == text[ln.start:ln.end] for ln in lines if ln.kind != "row")
    assert [ln.start for ln in lines] == sorted(ln.start for ln in lines)


def test_a_budget_row_names_its_columns_and_its_unit(lines_001):
    _, lines = lines_001
    row = next(ln for ln in lines if ln.kind == "row" and "차세대 뿌리산업 전문인력 양성" in ln.display)
    assert row.unit == "백만원"
    assert "지원예산 '25년(B): 1,000" in row.display
    # the merged first cell is filled from the row above
    assert row.display.startswith("뿌리기업의 성장지원 강화 | ")


def test_a_table_without_a_unit_line_has_no_unit(lines_001):
    _, lines = lines_001
    centre = next(ln for ln in lines if ln.kind == "row" and "광주첨단산단" in ln.display)
    assert centre.unit == ""
    assert centre.display == "광주 | 지원 분야: 용접 | 구축장비수(종): 22 | 센터 위치: 광주첨단산단"


def test_a_list_item_hangs_under_its_lead_line(lines_001):
    _, lines = lines_001
    items = [ln for ln in lines if ln.kind == "item" and ln.parent >= 0]
    assert items
    for ln in items[:50]:
        assert lines[ln.parent].start < ln.start and ln.parent_text
