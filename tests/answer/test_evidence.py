"""Evidence checks (rag.answer.evidence) on real answer candidates of the built index, and how
they steer answer selection and abstention (rag.answer.compose) for near-miss questions."""

from __future__ import annotations

import pytest

from rag.answer.abstain import NEVER
from rag.answer.compose import compose, passage_candidates
from rag.answer.evidence import support
from rag.answer.pipeline import answer_question
from rag.answer.scoring import doc_context
from rag.answer.terms import idf_table, question_terms
from rag.query.shape import analyse
from rag.search.retriever import SearchResult


def candidate(retriever, doc_id: str, needle: str):
    """The candidate line of ``doc_id`` that holds ``needle`` (and its passage)."""
    for row, chunk in enumerate(retriever.index.chunks):
        if chunk.doc_id == doc_id and needle in chunk.text:
            p = retriever._passage(1, row, 1.0)
            for c in passage_candidates(p, retriever.doc_texts[doc_id], retriever.analyzer):
                if needle in c.quote:
                    return p, c
    raise AssertionError(f"no candidate of {doc_id} holds {needle!r}")


def check(retriever, question: str, doc_id: str, needle: str):
    p, c = candidate(retriever, doc_id, needle)
    return support(analyse(question), question_terms(question, retriever), c, question,
                   doc_context(retriever, doc_id), idf_table(retriever).occurrences)


def test_subject_must_be_named(retriever):
    asml_staff = "전 직원의 36%가 R&D 인력"
    assert not check(retriever, "디팜스테크 직원은 몇 명이야?", "004", asml_staff).subject
    assert check(retriever, "ASML 직원 중 R&D 인력 비중은?", "004", asml_staff).complete


def test_hanja_country_counts_as_the_name(retriever):
    assert check(retriever, "독일은 뿌리기술 지능화를 어떤 정책으로 추진했어?", "000", "지능화(獨·日)").subject


def test_qualifiers_and_per_unit(retriever):
    budget_row = "31,080"  # 수출바우처's budget: a programme total, not what one company gets
    s = check(retriever, "수출바우처는 기업 한 곳당 최대 얼마까지 지원받을 수 있어?", "001", budget_row)
    assert s.failed() == ["qualifiers"]
    assert check(retriever, "수출바우처 2025년 예산은 얼마야?", "001", budget_row).complete
    assert check(retriever, "생태계형 R&D는 과제 하나에 1년 예산 어느 정도야?", "004", "약 30억원~50억원/연").qualifiers


def test_answer_class_needs_a_new_name(retriever):
    row = "광주첨단산단"
    assert check(retriever, "광주 지역뿌리기술지원센터는 어디에 있어?", "001", row).answer_class
    # the only "names" in this line are the question's own words or common ones (뿌리산업)
    assert not check(retriever, "외국인 기술인력 양성대학으로 지정된 12개 대학 이름을 알려줘", "001", "12개교").answer_class
    assert check(retriever, "이 발표 기사를 쓴 기자는 누구야?", "003", "엄재성").answer_class
    assert check(retriever, "첨단화 전략 발표 행사는 어느 회사에서 열렸어?", "003", "㈜디팜스테크에서").answer_class


def test_numbers_read_the_document_title(retriever):
    # 001 is "2025년도 뿌리산업 진흥 실행계획": its lines answer "2025년 실행계획에서…"
    assert check(retriever, "2025년 실행계획에서 청년일자리도약장려금은 최대 얼마야?", "001", "청년일자리도약").numbers
    assert not check(retriever, "2026년 실행계획에서 청년일자리도약장려금은 최대 얼마야?", "001", "청년일자리도약").numbers


def test_a_change_in_points_is_not_a_share(retriever):
    assert not check(retriever, "긴급경영안정자금 금리는 몇 퍼센트야?", "001", "이차보전율(3%p)").type


@pytest.mark.parametrize("question, failed, said", [
    ("디팜스테크 직원은 몇 명이야?", "subject", ""),
    ("수출바우처는 기업 한 곳당 최대 얼마까지 지원받을 수 있어?", "qualifiers", "조건(최대, 기업당)"),
    ("소부장 알키미스트 프로젝트는 예비타당성조사를 통과했어?", "predicate", "'통과' 여부"),
    ("외국인 기술인력 양성대학으로 지정된 12개 대학 이름을 알려줘", "answer_class", "이름이 나오지 않습니다"),
])
def test_near_misses_abstain_for_the_stated_reason(retriever, question, failed, said):
    rules = answer_question(retriever, question, line="rules")  # the hand-set gates, kept for comparison
    assert not rules.answerable and rules.signals[failed] == 0.0, rules.signals
    ans = answer_question(retriever, question)  # the default: the learned line
    assert not ans.answerable and ans.citations == [] and ans.related
    assert ans.reason and ans.to_dict()["reason"] == ans.reason  # says why, in Korean
    assert said in ans.reason and said in rules.reason
    for name in ("디팜스테크",):  # a reason never denies what the related passages say
        if any(name in p.text for p in ans.related):
            assert f"'{name}'에 관한 내용이 아닙니다" not in ans.reason + rules.reason


def test_a_supported_line_goes_first(retriever):
    """Of two near-best lines, the one naming the company asked about answers."""
    q = "디팜스테크 매출액은 얼마야?"
    p_asml, _ = candidate(retriever, "004", "전 직원의 36%가 R&D 인력")
    p_dfm, _ = candidate(retriever, "000", "디팜스테크('14")
    ans = compose(q, SearchResult([p_asml, p_dfm]), retriever, policy=NEVER)
    assert ans.answerable
    assert "580억원" in ans.answer.split("\n")[0]
