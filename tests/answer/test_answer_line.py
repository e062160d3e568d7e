"""The default answer line (learned) on the questions the answers issue reported, and the
switch between it and the hand-set rules."""

import pytest

from rag.answer.pipeline import answer_line, answer_question
from rag.config import ANSWER_LINE_ENV
from rag.errors import ConfigError


@pytest.mark.parametrize("question, first_line_has", [
    ("뿌리산업의 정의는?", "주조, 금형, 용접 등을 통해 소재를 부품으로"),  # was answered with 테크맵 lines
    ("용접 분야 지원센터는 어디야?", "광주첨단산단"),  # was declined while the next one answered
    ("용접 지원센터 어디 있어?", "광주첨단산단"),
])
def test_reported_questions_answer_with_the_right_first_line(retriever, question, first_line_has):
    ans = answer_question(retriever, question)
    assert ans.answerable, ans.reason
    assert first_line_has in ans.answer.split("\n")[0]
    first = ans.citations[0]
    assert first.quote in retriever.doc_texts[first.doc_id]


@pytest.mark.parametrize("question, said", [
    ("2030년 환경부 예산?", "'2030년'"),  # was answered with 2030 targets
    ("디팜스테크의 2026년 매출은?", "'2026년'"),
])
def test_another_year_is_declined_for_that_reason(retriever, question, said):
    ans = answer_question(retriever, question)
    assert not ans.answerable and ans.citations == [] and len(ans.related) == 5
    assert said in ans.reason


def test_reasons_carry_no_template_artefacts(retriever):
    for q in ("외국인 기술인력 양성대학으로 지정된 12개 대학 이름을 알려줘", "부산 센터는 어느 기관이 운영해?",
              "2030년 환경부 예산?"):
        for line in ("learned", "rules"):
            ans = answer_question(retriever, q, line=line)
            if not ans.answerable:
                assert "(가)" not in ans.reason and "per-unit" not in ans.reason and ans.reason.endswith("다.")


def test_a_table_row_shows_its_unit(retriever):
    ans = answer_question(retriever, "차세대 뿌리산업 전문인력 양성 사업의 2025년 예산은?")
    assert ans.answerable
    first = ans.answer.split("\n")[0]
    assert "지원예산 '25년(B): 1,000" in first and "(단위: 백만원)" in first
    assert "(단위" not in ans.citations[0].quote  # the unit is shown, never put into the quote


def test_the_answer_line_is_chosen_by_setting(retriever, monkeypatch):
    monkeypatch.delenv(ANSWER_LINE_ENV, raising=False)
    assert answer_line() == "learned"
    q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
    learned = answer_question(retriever, q)
    assert "answerable_probability" in learned.signals
    monkeypatch.setenv(ANSWER_LINE_ENV, "rules")
    rules = answer_question(retriever, q)
    assert "answerable_probability" not in rules.signals and "coverage" in rules.signals
    monkeypatch.setenv(ANSWER_LINE_ENV, "magic")
    with pytest.raises(ConfigError, match="learned, rules 중 하나"):
        answer_question(retriever, q)
    with pytest.raises(ConfigError, match="알 수 없는 답변 방식"):
        answer_question(retriever, q, line="oracle")
