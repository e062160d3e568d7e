"""The retrieval evaluation: metric maths on hand-made rankings, scoring and summaries on a
fake retriever, the report markers, ``--compare`` deltas, the vector cache, the ablation
machinery, the ``rag eval`` command end to end, and the CI gate on the curated set."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import RAG

from rag.eval import evaluate as ev
from rag.eval.evalset import DEFAULT_QA_PATH, QAItem, load_qa

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = ROOT / "evaluation" / "thresholds.json"

# ------------------------------------------------------------------------- metric maths

R, N = True, False  # relevant / not relevant


def test_hit_at_k_by_hand():
    rels = [N, N, R, N, R]
    assert [ev.hit_at_k(rels, k) for k in (1, 2, 3, 5, 10)] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert ev.hit_at_k([], 5) == 0.0
    assert ev.hit_at_k([N] * 10, 10) == 0.0


def test_reciprocal_rank_by_hand():
    assert ev.reciprocal_rank([R, N, N]) == 1.0
    assert ev.reciprocal_rank([N, N, R, R]) == pytest.approx(1 / 3)
    assert ev.reciprocal_rank([N] * 10 + [R], k=10) == 0.0  # rank 11 is past the cut-off
    assert ev.reciprocal_rank([N, N, N, R], k=3) == 0.0
    assert ev.first_relevant_rank([N, N, N, R]) == 4
    assert ev.first_relevant_rank([N, N]) is None


def test_ndcg_by_hand():
    # one relevant chunk in the index, found at rank 2: DCG = 1/log2(3), IDCG = 1
    assert ev.ndcg_at_k([N, R, N], 10, n_relevant=1) == pytest.approx(1 / math.log2(3))
    # two relevant in the index, found at ranks 1 and 3: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ev.ndcg_at_k([R, N, R], 10, n_relevant=2) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    # three relevant in the index but only one returned, at rank 1
    assert ev.ndcg_at_k([R, N, N], 10, n_relevant=3) == pytest.approx(1 / (1 + 1 / math.log2(3) + 0.5))
    # ideal order of what came back (n_relevant=None)
    assert ev.ndcg_at_k([R, R, N], 10) == pytest.approx(1.0)
    assert ev.ndcg_at_k([N, N], 10, n_relevant=0) == 0.0
    assert ev.ndcg_at_k([N] * 10 + [R], 10, n_relevant=1) == 0.0


def test_relevance_and_full_coverage_ignore_whitespace():
    texts = ["예산은 4,000 억원 규모", "금형\t9,659\t72,670", "무관한 문장"]
    assert ev.relevance(texts, ["4,000억원"]) == [R, N, N]
    assert ev.relevance(texts, ["금형 9,659 72,670", "없는 답"]) == [N, R, N]
    assert ev.full_coverage(texts, ["4,000억원", "9,659"], k=5)
    assert not ev.full_coverage(texts, ["4,000억원", "없는 답"], k=5)
    assert not ev.full_coverage(texts, ["4,000억원", "9,659"], k=1)  # the second is at rank 2
    assert not ev.full_coverage(texts, [], k=5)


def test_section_match_rules():
    gold = "I. 뿌리산업의 개념 및 중요성 > 제조업 경쟁력"
    # heading in the path
    assert ev.section_matches("000", gold, "000", "I. 뿌리산업의 개념 및 중요성 > 제조업 경쟁력", "…")
    # heading folded into the text (slide titles)
    assert ev.section_matches("000", gold, "000", "I. 뿌리산업의 개념 및 중요성", "제조업 경쟁력\n\n자동차 1대")
    # whitespace-insensitive
    assert ev.section_matches("000", gold, "000", "I. 뿌리산업의 개념 및 중요성 > 제조업경쟁력", "")
    # wrong document never matches
    assert not ev.section_matches("000", gold, "001", "제조업 경쟁력", "제조업 경쟁력")
    # a path element shortened with … matches by prefix
    long = "□ (공정 첨단화·자동화) 공정혁신, 수작업 의존도 해소 등 뿌리기업 고도화 지원을 위한 솔루션 개발 및 보급"
    assert ev.section_matches("001", f"II. 실적 > {long}", "001", "II. 실적 > □ (공정 첨단화·자동화) 공정혁신, 수작업…", "")
    # the document root has no section to find
    assert ev.section_hit([SimpleNamespace(doc_id="002", section="", text="x")], [("002", "")]) is None


# ------------------------------------------------------------ scoring on a fake retriever


def _p(rank, doc, section, text):
    return SimpleNamespace(rank=rank, score=1.0 / rank, chunk_id=f"{doc}-{rank:04d}", doc_id=doc,
                           section=section, text=text, start=0, end=len(text))


class FakeRetriever:
    """Returns fixed rankings per question; its index holds the chunks of those rankings."""

    def __init__(self, rankings: dict[str, list]):
        self.rankings = rankings
        chunks = {p.chunk_id: p for ps in rankings.values() for p in ps}
        self.index = SimpleNamespace(chunks=list(chunks.values()))

    def search(self, question, k=5, mode="hybrid"):
        return SimpleNamespace(passages=self.rankings.get(question, [])[:k])


def _item(id_, q, answers, type_="number", doc=("000",), section=("A > B",), tags=()):
    return QAItem(id=id_, question=q, answers=tuple(answers), doc=tuple(doc), section=tuple(section),
                  type=type_, tags=tuple(tags))


@pytest.fixture()
def fake_run():
    items = [
        _item("a", "qa", ["정답A"], tags=("everyday",)),
        _item("b", "qb", ["정답B"], type_="table"),
        _item("c", "qc", ["정답C1", "정답C2"], type_="multi_doc", doc=("000", "001"), section=("A > B", "X > Y")),
        _item("u", "qu", [], type_="unanswerable", doc=(), section=()),
    ]
    rankings = {
        "qa": [_p(1, "000", "A > B", "정답A 있음"), _p(2, "000", "A", "무관")],  # hit at 1, section hit
        "qb": [_p(i, "000", "A", "무관") for i in range(1, 6)] + [_p(6, "000", "A > B", "정답B")],  # rank 6
        "qc": [_p(1, "001", "X", "무관"), _p(2, "001", "X > Y", "정답C2"), _p(3, "000", "Q", "정답C1")],
        "qu": [_p(1, "004", "Z", "아무거나")],
    }
    return items, FakeRetriever(rankings)


def test_evaluate_mode_scores_and_excludes_unanswerable(fake_run):
    items, retriever = fake_run
    outs = ev.evaluate_mode(retriever, items, "hybrid", k=10)
    by = {o.id: o for o in outs}
    assert by["a"].rank == 1 and by["a"].metrics["hit@1"] == 1.0 and by["a"].metrics["section@5"] == 1.0
    assert by["b"].rank == 6 and by["b"].metrics["hit@5"] == 0.0 and by["b"].metrics["hit@10"] == 1.0
    assert by["b"].metrics["mrr@10"] == pytest.approx(1 / 6)
    assert by["b"].top and by["b"].top[0]["rank"] == 1  # misses keep their top 3 for --failures
    assert by["c"].rank == 2 and by["c"].metrics["full@5"] == 1.0 and by["c"].metrics["section@5"] == 1.0
    assert by["u"].metrics == {} and not by["u"].answerable
    s = ev.summarize(outs)
    assert s["n"] == 3  # the unanswerable item is not scored
    assert s["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["hit@10"] == pytest.approx(1.0)
    assert s["mrr@10"] == pytest.approx((1 + 1 / 6 + 1 / 2) / 3, abs=1e-4)
    rep = ev.mode_report(outs)
    assert rep["unanswerable"] == 1
    assert rep["per_doc"]["001"]["n"] == 1 and rep["per_doc"]["000"]["n"] == 3  # multi-doc counts under both
    assert rep["per_tag"]["everyday"]["n"] == 1 and rep["slices"]["rest"]["n"] == 2
    assert rep["latency"]["n"] == 4  # latency covers every question
    fails = ev.failures(outs, items)
    assert [f["id"] for f in fails] == ["b"] and fails[0]["answers"] == ["정답B"]


def test_metrics_beyond_k_are_none(fake_run):
    items, retriever = fake_run
    outs = ev.evaluate_mode(retriever, items, "bm25", k=3)
    s = ev.summarize(outs)
    assert s["hit@3"] is not None and s["hit@5"] is None and s["hit@10"] is None


# ------------------------------------------------------------------------------ compare


def _payload(created, hybrid_overall, questions):
    return {"meta": {"created": created},
            "modes": {"hybrid": {"overall": hybrid_overall, "latency": {"p50_ms": 10.0, "p95_ms": 20.0},
                                 "per_type": {"table": {"hit@5": hybrid_overall["hit@5"], "mrr@10": 0.5}}}},
            "questions": {"hybrid": questions}}


def test_compare_deltas_and_flips(tmp_path):
    old = _payload("t0", {"hit@1": 0.5, "hit@5": 0.8, "hit@10": 0.9, "full@5": 0.7, "mrr@10": 0.6,
                          "ndcg@10": 0.65, "section@5": 0.7},
                   {"q1": {"rank": 1, "full5": True}, "q2": {"rank": 7, "full5": False},
                    "q3": {"rank": 2, "full5": True}, "u1": {"rank": None}})
    new = _payload("t1", {"hit@1": 0.6, "hit@5": 0.75, "hit@10": 0.9, "full@5": 0.7, "mrr@10": 0.65,
                          "ndcg@10": 0.6, "section@5": None},
                   {"q1": {"rank": 1, "full5": True}, "q2": {"rank": 3, "full5": True},
                    "q3": {"rank": None, "full5": False}, "u1": {"rank": None}})
    new["modes"]["hybrid"]["latency"] = {"p50_ms": 12.5, "p95_ms": 15.0}
    cmp = ev.compare(old, new)
    d = cmp["modes"]["hybrid"]
    assert d["hit@1"] == {"old": 0.5, "new": 0.6, "delta": 0.1}
    assert d["hit@5"]["delta"] == -0.05
    assert d["mrr@10"]["delta"] == 0.05 and d["hit@10"]["delta"] == 0.0
    assert d["section@5"]["delta"] is None  # missing on one side: no delta, no crash
    assert cmp["latency"]["hybrid"]["p50_ms"]["delta"] == 2.5
    assert cmp["per_type"]["hybrid"]["table"]["hit@5"] == -0.05
    assert cmp["flips"]["hybrid"] == {"gained": ["q2"], "lost": ["q3"]}
    # a mode only in one run is skipped
    new["modes"]["dense"] = new["modes"]["hybrid"]
    assert "dense" not in ev.compare(old, new)["modes"]
    # load_payload rejects what is not a payload
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="`rag eval --json` 결과가 아닙니다"):
        ev.load_payload(bad)


# --------------------------------------------------------------------- report & caches


def test_write_report_keeps_other_sections(tmp_path):
    path = tmp_path / "report.md"
    ev.write_report(path, f"{ev.REPORT_START}\nfirst\n{ev.REPORT_END}\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Evaluation report") and "first" in text
    answers = "<!-- answers:start -->\nanswer section\n<!-- answers:end -->\n"
    path.write_text(text + "\n" + answers, encoding="utf-8")
    ev.write_report(path, f"{ev.REPORT_START}\nsecond\n{ev.REPORT_END}\n")
    text = path.read_text(encoding="utf-8")
    assert "second" in text and "first" not in text and answers in text
    assert text.count(ev.REPORT_START) == 1 and text.count(ev.REPORT_END) == 1


def test_vector_cache_roundtrip(tmp_path):
    path = tmp_path / "cache" / "m.npz"
    chunks = [SimpleNamespace(index_text=t) for t in ("가", "나")]
    index = SimpleNamespace(chunks=chunks, vectors=np.eye(2, dtype=np.float32))
    cache = ev.VectorCache(path)
    assert len(cache) == 0 and cache.add_index(index, True) == 2 and cache.add_index(index, True) == 0
    cache.save()
    assert path.exists() and not list(path.parent.glob(".tmp-*"))
    again = ev.VectorCache(path)
    from rag.index.build import text_key

    assert np.array_equal(again.vectors[text_key(chunks[1], True)], [0.0, 1.0])
    path.write_bytes(b"garbage")
    assert len(ev.VectorCache(path)) == 0  # an unreadable cache is ignored, not fatal


def test_render_markdown_has_tables(fake_run):
    items, retriever = fake_run
    outcomes = {"hybrid": ev.evaluate_mode(retriever, items, "hybrid", k=10)}
    meta = {"created": "now", "set": "x.jsonl", "items": 4, "answerable": 3, "unanswerable": 1, "k": 10,
            "chunks": 9, "model": "m", "spec": {}, "fusion": {"method": "weighted", "weight": 0.4},
            "eval_seconds": 1.0, "wall_seconds": 1.0, "load_avg": [0.1, 0.1, 0.1], "cpus": 2}
    md = ev.render_markdown(ev.EvalRun(meta, outcomes, items).payload())
    assert md.startswith(ev.REPORT_START) and md.rstrip().endswith(ev.REPORT_END)
    assert "| **hybrid** | 3 |" in md and "### Per question type" in md and "`b` (table, rank 6)" in md


# ------------------------------------------------------------------ the real pipeline


@pytest.fixture(scope="module")
def real(settings, retriever):
    """The real retriever over the session's index and the curated set."""
    return settings, retriever, load_qa(DEFAULT_QA_PATH)


def test_ablation_machinery_builds_variants_in_memory(real, tmp_path):
    """Two cheap variants (no new embeddings) on a slice of the set, through build_in_memory."""
    from dataclasses import replace

    from rag.index.spec import AnalyzerSpec, BuildSpec
    from rag.ingest.corpus import load_corpus
    from rag.search.fusion import FusionConfig

    settings, retriever, items = real
    items = [i for i in items if i.answerable][:12]
    spec = BuildSpec()
    variants = [
        ev.Variant("BM25 tokens", "Kiwi", spec, retriever.fusion, ("bm25",), True),
        ev.Variant("BM25 tokens", "whitespace", replace(spec, analyzer=AnalyzerSpec(mode="whitespace")),
                   retriever.fusion, ("bm25",)),
        ev.Variant("fusion", "rrf", spec, FusionConfig(method="rrf"), ("hybrid",), True),
    ]
    cache = ev.VectorCache(tmp_path / "c.npz")
    rows = ev.run_ablations(retriever, items, load_corpus(settings.corpus_dir), settings, variants=variants,
                            cache=cache)
    assert [r["label"] for r in rows] == ["Kiwi", "whitespace", "rrf"]
    assert rows[0]["chunks"] == rows[1]["chunks"] == len(retriever.index.chunks)
    assert rows[1]["spec"]["analyzer"]["mode"] == "whitespace"
    assert all(r["modes"][m]["n"] == 12 for r in rows for m in r["modes"])
    assert sum(r["best"] for r in rows if r["group"] == "BM25 tokens") == 1
    assert (tmp_path / "c.npz").exists()  # the embeddings were cached for the next run


def test_cli_end_to_end_on_a_small_set(tmp_path, project_index):
    """The real entry point on a five-question file: JSON on stdout, nothing written to the repo."""
    items = load_qa(DEFAULT_QA_PATH)
    pick = [i for i in items if i.type == "table"][:2] + [i for i in items if i.type == "multi_doc"][:2] \
        + [i for i in items if i.type == "unanswerable"][:1]
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in pick), encoding="utf-8")
    report = ROOT / "evaluation" / "report.md"
    before = report.stat().st_mtime_ns if report.exists() else None
    proc = subprocess.run([*RAG, "eval", "--set", str(small), "--json", "--no-ablations", "--no-report",
                           "--mode", "bm25,hybrid"], capture_output=True, cwd=ROOT, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert list(payload["modes"]) == ["bm25", "hybrid"]
    assert payload["meta"]["items"] == 5 and payload["meta"]["unanswerable"] == 1
    assert payload["modes"]["hybrid"]["overall"]["n"] == 4
    assert set(payload["questions"]["hybrid"]) == {i.id for i in pick}
    assert payload["ablations"] is None
    assert (report.stat().st_mtime_ns if report.exists() else None) == before

    old = tmp_path / "old.json"
    old.write_text(proc.stdout, encoding="utf-8")
    again = subprocess.run([*RAG, "eval", "--set", str(small), "--no-ablations", "--no-report", "--mode", "bm25",
                            "--compare", str(old), "--failures"], capture_output=True, cwd=ROOT, text=True, timeout=600,
                           env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    assert again.returncode == 0, again.stderr
    assert "compared with" in again.stdout and "hit@5" in again.stdout

    bad = subprocess.run([*RAG, "eval", "--set", str(small), "--mode", "sparse", "--no-report"],
                         capture_output=True, cwd=ROOT, text=True, timeout=120)
    assert bad.returncode == 2 and "알 수 없는 검색 모드" in bad.stderr and bad.stdout == ""
    missing = subprocess.run([*RAG, "eval", "--set", str(tmp_path / "nope.jsonl")], capture_output=True, cwd=ROOT, text=True,
                             timeout=120)
    assert missing.returncode == 2 and "읽을 수 없습니다" in missing.stderr


def test_ci_gate_on_the_curated_set(real):
    """Regressions fail: hybrid hit@5 and MRR@10 stay above the floors, and hybrid beats both
    single modes on MRR@10. Floors sit just under the measured values (evaluation/thresholds.json)."""
    from rag.search.retriever import Retriever

    settings, real_retriever, items = real
    floors = json.loads(THRESHOLDS.read_text(encoding="utf-8"))["hybrid"]
    # the same index, analyser, fusion and search code; question vectors are embedded once,
    # in batches, and shared by dense and hybrid (latency is not what this test checks)
    memo = ev.QueryMemo(real_retriever.embedder)
    memo.prefill(i.question for i in items)
    retriever = Retriever(real_retriever.index, real_retriever.analyzer, memo, real_retriever.doc_texts,
                          real_retriever.fusion)
    run = ev.run_eval(items, ("bm25", "dense", "hybrid"), 10, settings=settings, retriever=retriever)
    modes = run.payload()["modes"]
    h, b, d = (modes[m]["overall"] for m in ("hybrid", "bm25", "dense"))
    summary = {m: (modes[m]["overall"]["hit@5"], modes[m]["overall"]["mrr@10"]) for m in modes}
    assert h["hit@5"] >= floors["hit@5"], summary
    assert h["mrr@10"] >= floors["mrr@10"], summary
    assert h["mrr@10"] > b["mrr@10"] and h["mrr@10"] > d["mrr@10"], summary
