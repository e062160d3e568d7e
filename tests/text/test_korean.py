"""rag.text.korean: the Kiwi analyser used for BM25 (same function for documents and questions)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.text.korean import (
    KoreanAnalyzer,
    analyzer_fingerprint,
    get_analyzer,
    get_kiwi,
    kiwi_load_seconds,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"
FIDELITY = Path(__file__).resolve().parents[1] / "data" / "fidelity_pairs.tsv"


@pytest.fixture(scope="module")
def morph() -> KoreanAnalyzer:
    return get_analyzer()


@pytest.fixture(scope="module")
def plain() -> KoreanAnalyzer:
    return get_analyzer(normalize=False)


def corpus_texts() -> dict[str, str]:
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    return {m["id"]: (CORPUS / m["file"]).read_text(encoding="utf-8") for m in manifest}


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "variants,expected",
    [
        (["4,000억원", "4,000 억원", "4,000억 원", "4000억원", "4천억원", "4천억 원"], ["4000억", "원"]),
        (["143조원", "143 조원"], ["143조", "원"]),
        (["49만명", "49만 명", "49 만명"], ["49만", "명"]),
        (["1.4조원"], ["1.4조", "원"]),
        (["2천5백억"], ["2500억"]),
        (["1조 2천억원"], ["1조", "2000억", "원"]),
        (["3,000만 달러"], ["3000만", "달러"]),
    ],
)
def test_amounts_have_one_spelling_independent_token(morph, plain, variants, expected):
    for analyzer in (morph, plain):
        results = [analyzer.tokenize(v) for v in variants]
        assert all(r == results[0] for r in results), dict(zip(variants, results))
        assert results[0] == expected


def test_numbers_and_percent(morph):
    assert morph.tokenize("17.8%") == ["17.8", "%"]
    assert morph.tokenize("740,396명") == ["740396", "명"]
    assert morph.tokenize("2023. 03.") == ["2023", "3"]


def test_two_digit_year_becomes_four_digits(morph, plain):
    toks = morph.tokenize("'27년까지")
    assert "2027" in toks and "년" in toks
    assert "2027" not in plain.tokenize("'27년까지")


def test_dollars(morph):
    doc = morph.tokenize("'27년까지 700억불 규모의 해외 신시장 창출")
    query = morph.tokenize("2027년까지 700억 달러 규모")
    assert {"700억", "달러", "2027"} <= set(doc) & set(query)


def test_percent_points(morph):
    assert {"%", "포인트"} <= set(morph.tokenize("이차보전율(3%p)")) & set(morph.tokenize("3%포인트"))


# ----------------------------------------------------------------------------- spacing


@pytest.mark.parametrize(
    "a,b",
    [
        ("애로해결", "애로 해결"),
        ("뿌리기업 긴급 애로해결", "뿌리기업 긴급 애로 해결"),
        ("뿌리기업", "뿌리 기업"),
        ("뿌리산업", "뿌리 산업"),
        ("뿌리산업특화단지", "뿌리산업 특화단지"),
        ("국가뿌리산업진흥센터", "국가 뿌리산업 진흥센터"),
        ("으뜸기업", "으뜸 기업"),
        ("소성가공", "소성 가공"),
        ("핵심전략기술", "핵심 전략 기술"),
        ("청년일자리도약장려금", "청년일자리 도약 장려금"),
        ("긴급경영안정자금", "긴급 경영안정자금"),
    ],
)
def test_compounds_meet_regardless_of_spacing(morph, a, b):
    assert morph.tokenize(a) == morph.tokenize(b)


def test_compound_kept_by_kiwi_in_context_is_decomposed(morph):
    # Kiwi reads 뿌리산업 as one noun in some contexts and as 뿌리+산업 in others
    for text in ["뿌리산업의 개념", "그 뿌리산업의 지원", "뿌리산업 진흥과 첨단화에 관한 법률"]:
        toks = morph.tokenize(text)
        assert "뿌리" in toks and "산업" in toks and "뿌리산업" not in toks, toks


def test_loanwords_are_not_cut_into_lookalike_words(morph):
    assert "자동" not in morph.tokenize("자동차 부품")
    assert "데이" not in morph.tokenize("데이터 기반")


# ----------------------------------------------------------------------------- content


@pytest.mark.parametrize("word", ["뿌리기업이", "뿌리기업을", "뿌리기업의", "뿌리기업에서", "뿌리기업과", "뿌리기업은"])
def test_particles_are_dropped(morph, word):
    assert morph.tokenize(word) == morph.tokenize("뿌리기업") == ["뿌리", "기업"]


def test_only_content_tokens(morph):
    toks = morph.tokenize("뿌리산업을 고부가 첨단산업으로 전면전환(Lift-Shift)할 필요가 있다.")
    for t in toks:
        assert not re.fullmatch(r"[^\w%]+", t), t
    assert not {"을", "으로", "할", "다", "."} & set(toks)
    assert {"lift", "shift", "첨단", "산업", "필요"} <= set(toks)


def test_predicates_as_lemmas(morph):
    assert "높이다" in morph.tokenize("효율을 높이고")
    assert "하다" not in morph.tokenize("지원을 하고 있다")


def test_latin_is_lowercased_and_r_and_d_is_one_token(morph):
    toks = morph.tokenize("IP-R&D 특허전략, AI 기반")
    assert "r&d" in toks and "ip" in toks and "ai" in toks
    assert morph.tokenize("<b>R&amp;D</b>") == morph.tokenize("R&D")


def test_hanja_kept_and_read(morph):
    toks = morph.tokenize("(美·中) 추구")
    assert {"美", "中", "미국", "중국"} <= set(toks)


# ----------------------------------------------------------------------------- doc/query pairs


@pytest.mark.parametrize(
    "doc,query",
    [
        ("’23~’27", "'23~'27"),
        ("소재·부품·장비", "소재부품장비"),
        ("4,000 억원", "4,000억원"),
        ("DX 전환", "DX전환"),
        ("뿌리기업 긴급 애로해결", "뿌리기업 긴급 애로 해결"),
        ("(국가뿌리센터 내)", "(국가뿌리센터 내)"),
    ],
)
def test_identical_analysis_for_wording_pairs(morph, doc, query):
    assert morph.tokenize(doc) == morph.tokenize(query)


@pytest.mark.parametrize(
    "doc,query,shared",
    [
        ("(美) 93.6 → 94.7", "미국", {"미국"}),
        ("뿌리기술의 지능화(獨·日)", "독일 일본", {"독일", "일본"}),
        ("'25년 실행방안", "2025년", {"2025", "년"}),
        ("소부장 핵심전략기술", "소재·부품·장비 핵심 전략 기술", {"소재", "부품", "장비", "소부장", "핵심", "전략", "기술"}),
        ("(산업부) 실증", "산업통상자원부", {"산업", "통상"}),
        ("창업성장 기술 개발 사업(중기부)", "중소벤처기업부", {"중소", "벤처"}),
        ("R&D 추진", "연구개발", {"r&d", "연구", "개발"}),
        ("(中) 75.5 → 78.9", "중국", {"중국"}),
    ],
)
def test_everyday_wording_meets_document_wording(morph, doc, query, shared):
    assert shared <= set(morph.tokenize(doc)) & set(morph.tokenize(query))


# ----------------------------------------------------------------------------- modes, batching


def test_whitespace_mode():
    ws = KoreanAnalyzer(normalize=False, mode="whitespace")
    assert ws.tokenize("뿌리기업이 R&D를 추진한다.") == ["뿌리기업이", "r&d를", "추진한다"]
    assert ws.tokenize("(美) 93.6") == ["美", "93.6"]
    wsn = KoreanAnalyzer(normalize=True, mode="whitespace")
    assert "미국" in wsn.tokenize("(美) 93.6")
    assert wsn.tokenize("4,000 억원") == wsn.tokenize("4,000억원")


def test_invalid_mode():
    with pytest.raises(ValueError):
        KoreanAnalyzer(mode="bpe")


def test_empty(morph):
    assert morph.tokenize("") == []
    assert morph.tokenize("   \n") == []
    assert morph.tokenize_many([]) == []


@pytest.mark.parametrize("normalize,mode", [(True, "morph"), (False, "morph"), (True, "whitespace")])
def test_batching_equals_single_calls(normalize, mode):
    analyzer = get_analyzer(normalize=normalize, mode=mode)
    texts = []
    for text in corpus_texts().values():
        texts.extend(line for line in text.splitlines() if line.strip())
    texts = texts[::7] + ["", "美", "4,000 억원"]
    assert analyzer.tokenize_many(texts) == [analyzer.tokenize(t) for t in texts]


def test_whole_documents_batch_equals_single(morph):
    texts = list(corpus_texts().values())
    assert morph.tokenize_many(texts) == [morph.tokenize(t) for t in texts]


def test_shared_analyzer_and_kiwi():
    assert get_analyzer() is get_analyzer()
    assert get_kiwi() is get_kiwi()
    assert kiwi_load_seconds() is not None and kiwi_load_seconds() > 0  # recorded for the benchmarks


def test_signature_names_what_shapes_the_tokens():
    sig = get_analyzer().signature
    assert "morph" in sig and "normalize=1" in sig and "tables=" in sig and "kiwipiepy=" in sig
    assert get_analyzer(normalize=False).signature != sig
    fp = analyzer_fingerprint()
    assert fp.startswith("korean-v") and fp in sig and fp == analyzer_fingerprint()


# ----------------------------------------------------------------------------- fidelity pairs


def fidelity_rows():
    rows = []
    for line in FIDELITY.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        rows.append(pytest.param(*cols[:3], len(cols) > 3 and cols[3] == "plain_ok", id=cols[0][:24]))
    return rows


def test_fidelity_table_size():
    assert len(fidelity_rows()) >= 20


@pytest.mark.parametrize("question,doc_id,passage,plain_ok", fidelity_rows())
def test_fidelity_pair(morph, plain, question, doc_id, passage, plain_ok):
    text = corpus_texts()[doc_id]
    lines = [line for line in text.splitlines() if passage in line]
    assert lines, f"{passage!r} is not in document {doc_id}"
    line = lines[0]
    shared_norm = set(morph.tokenize(question)) & set(morph.tokenize(line))
    shared_plain = set(plain.tokenize(question)) & set(plain.tokenize(line))
    if plain_ok:
        assert shared_plain, (question, line)
        assert shared_plain <= shared_norm
    else:
        assert shared_norm - shared_plain, (question, line, shared_norm, shared_plain)
