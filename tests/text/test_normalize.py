"""rag.text.normalize: search expansions for hanja, two-digit years, units and abbreviations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.text import normalize
from rag.text.normalize import collapse_amount_spacing, expand, expansions

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"
HANJA_CHARS_RE = re.compile(f"[{normalize.HANJA_CLASS}]")


def corpus_texts() -> dict[str, str]:
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    return {m["id"]: (CORPUS / m["file"]).read_text(encoding="utf-8") for m in manifest}


def added(text: str) -> list[str]:
    """What expand() appended after the (collapsed) text."""
    base = collapse_amount_spacing(text)
    out = expand(text)
    assert out.startswith(base)
    rest = out[len(base):]
    return [x for x in rest.split(normalize.EXPANSION_SEP) if x]


# ----------------------------------------------------------------------------- hanja

HANJA_CASES = [
    # (text, expansions that must be added)
    ("(美) 93.6 → 94.7", ["미국"]),
    ("(中) 75.5 → 78.9", ["중국"]),
    ("뿌리기술의 지능화(獨·日)", ["독일", "일본"]),
    ("(英) 첨단소재, AI + 배터리", ["영국"]),
    ("(佛) 디지털헬스 + 친환경차", ["프랑스"]),
    ("(伊)IDRA", ["이탈리아"]),
    ("韓 27,413건(39%)", ["한국"]),
    ("韓中 소부장 수출경합도", ["한중", "한국", "중국"]),
    ("(강소기업) 中企 기술혁신개발", ["중소기업"]),
    ("국내 제조업 생산액 中 소부장 산업 생산액", ["중"]),  # "among"
    ("핵심 방산 소부장 中 민간분야 파급효과", ["중"]),
    ("(美·中) DARPA, 中 제조업 혁신센터", ["미국", "중국", "중국"]),  # after a comma: China
    ("생산거점을 中→아세안으로 다변화", ["중국"]),
    ("對日 100대 품목 기술투자", ["대일", "일본"]),
    ("對세계 소부장 수출액", ["대세계"]),
    ("국내 뿌리산업의 現주소", ["현주소"]),
    ("소부장 핵심전략기술 現 150대에서", ["현", "현재"]),
    ("6대 新산업 뿌리기업", ["신산업"]),
    ("분석(130개社), n-Tier", ["130개사", "개 회사"]),
    ("으뜸기업 200개社 선정", ["200개사"]),
    ("「보잉社 항공우주산업 포럼 2023」", ["보잉사", "회사"]),
    ("기본계획(’22.12月)", ["12월"]),
    ("② 無삽입재 접합", ["무삽입재"]),
    ("기존 뿌리기업 및 非뿌리기업이", ["비뿌리기업이"]),
    ("○ 高노동부하공정, 고난이도", ["고노동부하공정"]),
    ("(친환경 소부장)** 低탄소 대체소재", ["저탄소"]),
    ("선(先)지원 대상", ["선", "먼저"]),
    ("• 多수요-多공급 연쇄 R&D", ["다수요", "다공급"]),
    ("글로벌 첨단산업 경쟁下 제조혁신", ["경쟁하"]),
    ("'슈퍼 乙' 기업 육성", ["을"]),
    ("조선업 수출액은 同 기간 24.8% 증가", ["동", "같은"]),
    ("全산업 대비 소부장 산업 수출비중", ["전산업", "전체"]),
    ("例: (과기부) 원천", ["예", "예시"]),
    ("사업재편時 우대지원", ["사업재편시", "때"]),
    ("발전·조선·중장비用 초대형부품", ["중장비용"]),
    ("충청권 6.1%(0.4만개사) 順으로 분포", ["순으로"]),
    ("클러스터內 산학연계", ["클러스터내", "안"]),
    ("반도체 등 既지정 분야", ["기지정", "이미"]),
    ("▶ 學研 주도+産 참여", ["학연", "학계", "연구계", "산", "산업계"]),
    ("수요기업 訪韓시, 출입국 지원", ["방한시", "한국 방문"]),
    ("① 高平坦 가공", ["고평탄"]),
    ("マイ크로 성형 (無金形 정밀성형)", ["무금형"]),
    ("단순 物性 향상", ["물성"]),
    ("「조특법」上 '신성장·원천기술'", ["상"]),
]


@pytest.mark.parametrize("text,expected", HANJA_CASES)
def test_hanja(text, expected):
    got = added(text)
    for e in expected:
        assert e in got, (text, got)


def test_zhong_reading_depends_on_context():
    assert "중국" not in added("국내 제조업 생산액 中 소부장 산업")
    assert "중" not in added("DARPA, 中 제조업 혁신센터")


def test_corpus_hanja_are_all_in_the_table():
    table = normalize.load_hanja_table()
    missing = {}
    for doc_id, text in corpus_texts().items():
        for ch in HANJA_CHARS_RE.findall(text):
            if ch not in table:
                missing.setdefault(ch, doc_id)
    assert not missing, f"hanja missing from rag/data/hanja.tsv: {missing}"


def test_every_corpus_hanja_word_gets_a_hangul_expansion():
    for doc_id, text in corpus_texts().items():
        for line in text.splitlines():
            if HANJA_CHARS_RE.search(line):
                got = added(line)
                assert any(re.search("[가-힣]", g) for g in got), (doc_id, line, got)


# ----------------------------------------------------------------------------- years

YEAR_CASES = [
    ("'25년 실행방안 마련", ["2025년"]),
    ("’24년 추진실적", ["2024년"]),
    ("「제3차 뿌리산업진흥 기본계획(’23~’27)」", ["2023~2027"]),
    ("제1차 기본계획(’13~’17)은", ["2013~2017"]),
    ("사업기간 : '25~'30 (6년)", ["2025~2030"]),
    ("「차세대 공통·핵심뿌리기술개발사업」('25. ~ '30., '25년 77.1억원)", ["2025~2030", "2025년"]),
    ("('24.~'26., 총 54억원(정부 27억원))", ["2024~2026"]),
    ("소부장 특화단지('23.3분기) 지정", ["2023년 3분기"]),
    ("소부장 대전('23.4분기)", ["2023년 4분기"]),
    ("예타 신청 '23.下 3,000억원", ["2023년 하반기"]),
    ("확대 출범('23.上)", ["2023년 상반기"]),
    ("'23.하반기 예정", ["2023년 하반기"]),
    ("구축 완료(시흥, '25년말)", ["2025년 말"]),
    ("25년말 완공", ["2025년 말"]),
    ("디팜스테크('14, 뿌리기술 전문기업 지정)", ["2014"]),
    ("하이테크2025('18), 커넥티드인더스트리('17)", ["2018", "2017"]),
    ("DX 센터 구축(100억원, ~'27)", ["2027"]),
    ("기본계획(’22.12月)", ["2022년 12월"]),
    ("실행계획(안) 수립 (’25. 1월)", ["2025년 1월"]),
    ("(’25. 1월 ~ ’25. 3월)", ["2025년 1월", "2025년 3월"]),
    ("MOU 체결('23.3)", ["2023년 3월"]),
    ("수출규제(23.7월 예정)", ["2023년 7월"]),
    ("(22.10, 새정부 소부장산업 정책방향)", ["2022년 10월"]),
    ("('19→'22)", ["2019", "2022"]),
    ("뿌리숙련기술인력 양성기반 구축 ('23.15억)", ["2023"]),
    ("'27년까지 700억불 규모", ["2027년"]),
]


@pytest.mark.parametrize("text,expected", YEAR_CASES)
def test_two_digit_years(text, expected):
    got = added(text)
    for e in expected:
        assert e in got, (text, got)


@pytest.mark.parametrize(
    "text",
    [
        "2025년도 뿌리산업 진흥 실행계획",
        "2023~2027",
        "2023. 03. | 산업통상자원부",
        "사업재편(15년이상 업력)을 통해",
        "매출액은 10년째 정체",
        "표면 경도 700~1000Hv를 확보",
        "(23년 시행 예상)",
        "(②중복규제(14.3), ③오래된 법제도(7.1%))",
        "4,253,904",
    ],
)
def test_years_leave_other_numbers_alone(text):
    assert not any(re.search(r"20\d\d", g) for g in added(text)), added(text)


def test_typographic_and_ascii_quotes_agree():
    assert added("’23~’27") == added("'23~'27") == added("‘23~‘27")
    assert added("’25년") == added("'25년")


# ----------------------------------------------------------------------------- units

UNIT_CASES = [
    ("'27년까지 700억불 규모의 해외 신시장", ["700억 달러"]),
    ("무역수지 1,098억불", ["1,098억 달러"]),
    ("수출액 및 연평균 증가율 추이(억불)", ["억 달러"]),
    ("이차보전율(3%p)", ["3%포인트"]),
    ("시설자금 금리(△0.3%p)", ["0.3%포인트"]),
    ("설비보조금 2%p 추가", ["2%포인트"]),
    ("금리를 1%포인트 인하", ["1%p"]),
    ("몇 퍼센트포인트야?", ["%p"]),
    ("13퍼센트", ["13%"]),
]


@pytest.mark.parametrize("text,expected", UNIT_CASES)
def test_units(text, expected):
    got = added(text)
    for e in expected:
        assert e in got, (text, got)


@pytest.mark.parametrize("text", ["불량률을 절반 수준으로", "불확실성", "친환경 설비 불가"])
def test_bul_is_dollars_only_after_an_amount(text):
    assert "달러" not in " ".join(added(text))


@pytest.mark.parametrize(
    "spaced,compact",
    [
        ("4,000 억원 규모의 뿌리전용 R&D 추진", "4,000억원 규모의 뿌리전용 R&D 추진"),
        ("4,000억 원", "4,000억원"),
        ("143 조원", "143조원"),
        ("고용 49만 명", "고용 49만명"),
        ("3,000만 달러 이상", "3,000만달러 이상"),
    ],
)
def test_amount_spacing_variants_normalise_identically(spaced, compact):
    assert expand(spaced) == expand(compact)


# ----------------------------------------------------------------------------- synonyms

SYNONYM_CASES = [
    ("국내 소부장 산업의 경쟁력", ["소재·부품·장비"]),
    ("소재·부품·장비 글로벌화 전략", ["소부장"]),
    ("소재부품장비 특별회계", ["소부장"]),
    ("첨단소부장 산업의 미래", ["소재·부품·장비"]),
    ("(산업부) 실증, 상용화", ["산업통상자원부"]),
    ("산업통상자원부(장관 이창양)", ["산업부"]),
    ("창업성장 기술 개발 사업(중기부)", ["중소벤처기업부"]),
    ("중소벤처기업부 장관", ["중기부"]),
    ("(고용부) 기능인력양성", ["고용노동부"]),
    ("고용노동부의 장려금", ["고용부"]),
    ("과기부 미래소재 확보전략", ["과학기술정보통신부"]),
    ("과학기술정보통신부는", ["과기부"]),
    ("4,000억원 규모의 뿌리전용 신규 R&D 추진", ["연구개발"]),
    ("연구개발 예산", ["R&D"]),
    ("뿌리산업 DX 전환 지역거점 구축", ["디지털 전환"]),
    ("DX전환 사업 확대", ["디지털 전환"]),
    ("디지털 전환 지원", ["DX"]),
    ("과기부, 산업부, 중기부, 방산청 등", ["방사청", "방위사업청"]),
    ("산업부-방사청 국방 R&D", ["방산청", "방위사업청"]),
    ("방위사업청과 협력", ["방사청"]),
    ("7.4억원, 특허청)", ["지식재산처"]),
    ("(국가뿌리센터 내)", ["국가뿌리산업진흥센터"]),
    ("국가뿌리산업진흥센터 독립 전문기관화 검토", ["국가뿌리센터"]),
    ("한국뿌리산업진흥센터가 협력해", ["국가뿌리산업진흥센터"]),
    ("지역뿌리센터 연계", ["지역뿌리기술지원센터"]),
    ("('19, 산업연)", ["산업연구원"]),
    ("예타 신청", ["예비타당성조사"]),
    ("(인니)니켈, 주석", ["인도네시아"]),
    ("2차전지, 항공", ["이차전지"]),
    ("# 2025년도 부리산업 진흥 실행계획", ["뿌리산업"]),
    ("「조특법」上", ["조세특례제한법"]),
]


@pytest.mark.parametrize("text,expected", SYNONYM_CASES)
def test_synonyms(text, expected):
    got = added(text)
    for e in expected:
        assert e in got, (text, got)


@pytest.mark.parametrize(
    "text",
    [
        "高노동부하공정",  # 노동부 inside a longer word
        "공공연하게 알려진",  # 공공연 is not 공공연구기관 here
        "R&BD 지원",  # not R&D
        "MAIN 메뉴",  # AI inside a Latin word
        "뿌리산업 진흥",  # the correct spelling of a oneway group adds nothing
    ],
)
def test_synonyms_respect_boundaries(text):
    got = added(text)
    assert not any(g in got for g in ("고용노동부", "공공연구기관", "연구개발", "인공지능", "뿌리산업")), got


def test_contextual_country_abbreviations():
    assert "베트남" in added("中(28%), 美(14%), 베(13%), 대만(5%)")
    assert "미국" in added("소부장 510억불(미 수출의 46.4%)")


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize(
    "text",
    [
        "뿌리산업은 주조, 금형, 용접 등을 통해 소재를 부품으로",
        "* (獨·日) 하이테크2025('18), 커넥티드인더스트리('17)",
        "'27년까지 700억불 규모의 해외 신시장 창출",
        "소부장 알키미스트 프로젝트 '23.下 3,000억원 규모 예타 신청",
        "",
    ],
)
def test_original_text_is_kept(text):
    out = expand(text)
    assert out.startswith(text)
    assert expand(text) == out  # deterministic


def test_original_corpus_is_kept():
    for doc_id, text in corpus_texts().items():
        base = collapse_amount_spacing(text)
        assert expand(text).startswith(base), doc_id
        # only whitespace between numbers and units is touched
        assert re.sub(r"\s", "", base) == re.sub(r"\s", "", text), doc_id


def test_plain_text_is_unchanged():
    text = "뿌리산업은 주조, 금형, 용접 등을 통해 소재를 부품으로 생산하는 기초공정 산업"
    assert expand(text) == text


def test_expansions_matches_expand():
    text = "(美·中) DARPA '25년 소부장 700억불"
    assert expand(text) == text + "\n" + "\n".join(expansions(text))


@pytest.mark.parametrize("path", [normalize.HANJA_TSV, normalize.SYNONYMS_TSV])
def test_tables_have_header_and_how_to_extend_comment(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert not lines[0].startswith("#") and "\t" in lines[0]
    assert lines[1].startswith("#")
    for line in lines[2:]:
        assert line.startswith("#") or not line.strip() or len(line.split("\t")) >= 2, line


def test_synonym_forms_are_unique():
    seen = {}
    for group in normalize.load_synonym_groups():
        for form in group.forms:
            key = re.sub(r"[\s·・/,]+", "", form).lower()
            assert key not in seen or seen[key] is group, f"{form!r} is in two groups"
            seen[key] = group
