"""The shape of a question (rag.query.shape): what an answer line must show."""

from __future__ import annotations

import pytest

from rag.query.shape import analyse, answer_kind, expected_pattern, number_phrases


@pytest.mark.parametrize("question, names", [
    ("디팜스테크 직원은 몇 명이야?", ("디팜스테크",)),
    ("ASML의 2022년 매출액은 얼마야?", ("ASML",)),
    ("ASML '22년 매출액?", ("ASML",)),  # terse: the whole question is the phrase
    ("우주항공청 예산은 얼마야?", ("우주항공청",)),  # Kiwi splits it; the compound names a body
    ("뿌리산업 고용 규모: '23 첨단화 전략 vs '25 실행계획?", ()),  # "vs" is not a name
    ("뿌리산업 종사자들의 평균 연봉은 얼마 정도야?", ()),
])
def test_subject_names(question, names):
    assert analyse(question).subject == names


@pytest.mark.parametrize("question, qualifiers", [
    ("수출바우처는 기업 한 곳당 최대 얼마까지 지원받을 수 있어?", ("최대", "기업당")),
    ("새싹기업 100 프로젝트에 선정되면 기업당 얼마를 지원받아?", ("기업당",)),
    ("뿌리기업 매출은 지난 10년 동안 연평균으로 얼마나 성장했어?", ("평균",)),
    ("외국인 부족률은 전체 평균과 비교하면 어떤가?", ()),  # compared with the average, not an average
    ("요즘 공장마다 사람 구하기가 힘든데 몇 명이나 모자라?", ()),  # chatty 마다 is not per-unit
    ("기업상속공제 한도 늘리기 전에는 얼마였어?", ("최대", "이전")),  # a 한도 is a maximum
    ("새싹기업 100 프로젝트로 지금까지 몇 개 기업 선정됐어?", ("지금까지",)),
])
def test_qualifiers(question, qualifiers):
    assert analyse(question).qualifiers == qualifiers


def test_yes_no_predicate_but_not_requests():
    assert analyse("소부장 알키미스트 프로젝트는 예비타당성조사를 통과했어?").predicate == ("통과",)
    assert analyse("혁신역량 제고 분야에서 추진하는 과제들을 나열해줘").predicate == ()
    assert analyse("뿌리산업발전위원회 위원장은 누가 맡아?").predicate == ()  # has a question word


@pytest.mark.parametrize("question, cls", [
    ("용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?", "place"),  # where it is, not which body
    ("국가뿌리산업진흥센터는 어느 도시에 있어?", "place"),
    ("첨단화 전략 발표 행사는 어느 회사에서 열렸어?", "company"),
    ("글로벌 공급망 분석센터는 어느 기관이 운영해?", "org"),
    ("이 발표 기사를 쓴 기자는 누구야?", "person"),
    ("소부장 으뜸기업 66개가 어디어디야?", "names"),
    ("현재 66개인 소부장 으뜸기업에는 어떤 기업들이 포함돼 있나?", "names"),
    ("새싹기업에 환경부가 추가로 해주는 지원 사업 이름이 뭐야?", None),  # a programme's name: no class
])
def test_answer_class(question, cls):
    assert analyse(question).answer_class == cls


def test_expected_patterns():
    import re

    bare = expected_pattern("독일 뿌리기술 수준 지수는 몇이야?", "number")
    assert bare and re.search(bare, "93.6 → 94.7") and not re.search(bare, "하이테크2025('18)")
    terse = expected_pattern("수요-뿌리 동반투자 펀드 조성 규모?", answer_kind("수요-뿌리 동반투자 펀드 조성 규모?"))
    assert terse and not re.search(terse, "기금조성")
    assert expected_pattern("시험이 1년에 몇 번 있어?", "number") is not None
    dollars = expected_pattern("대만으로 소부장 몇 억 달러어치 수출했어?", "number")
    assert re.search(dollars, "1,042억불") and not re.search(dollars, "대만(5%)")


def test_number_phrases_mark_year_spans():
    (p,) = number_phrases("2026년 뿌리산업 지원예산?")
    assert "'26" in p.forms and not p.range_end
    (p,) = number_phrases("2026년까지 예산")
    assert p.range_end
    assert number_phrases("3D 프린팅 센터") == []
