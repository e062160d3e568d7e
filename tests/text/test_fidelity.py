"""Korean fidelity (everyday wording ↔ the documents' hanja, years, units, abbreviations):
every pair in tests/data/fidelity_pairs.tsv must retrieve its passage with BM25 alone."""

import csv
from pathlib import Path

import pytest

PAIRS = [
    row for row in csv.DictReader(
        (line for line in (Path(__file__).resolve().parents[1] / "data" / "fidelity_pairs.tsv").read_text(encoding="utf-8").splitlines()
         if not line.startswith("#")),
        delimiter="\t",
    )
]


def test_table_is_substantial():
    assert len(PAIRS) >= 20


@pytest.mark.parametrize("row", PAIRS, ids=[r["question"][:30] for r in PAIRS])
def test_everyday_wording_retrieves_the_passage_in_bm25_mode(retriever, row):
    passages = retriever.search(row["question"], k=5, mode="bm25").passages
    hits = [p for p in passages if p.doc_id == row["doc_id"] and row["passage_substring"] in p.text]
    assert hits, [(p.chunk_id, p.text[:60]) for p in passages]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_germany_japan_example_in_top3(retriever, mode):
    passages = retriever.search("독일과 일본은 뿌리기술 지능화를 어떤 정책으로 추진했어?", k=3, mode=mode).passages
    assert any("(獨·日) 하이테크2025('18), 커넥티드인더스트리('17)" in p.text for p in passages)
