"""The curated evaluation set: it validates against the corpus, matches its schema, meets
the agreed distribution, and the validator catches planted mistakes."""

from __future__ import annotations

import copy
import json
from collections import Counter

import jsonschema
import pytest

from rag.eval.evalset import (
    DEFAULT_QA_PATH,
    DEFAULT_SCHEMA_PATH,
    QAItem,
    contains_answer,
    load_corpus,
    load_qa,
    load_schema,
    schema_problems,
    validate,
)

MIN_PER_TYPE = {
    "number": 12,
    "table": 12,
    "definition": 12,
    "list": 12,
    "entity": 12,
    "date": 12,
    "paraphrase": 12,
    "multi_doc": 10,
    "unanswerable": 20,
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    return load_corpus()


@pytest.fixture(scope="module")
def items() -> list[QAItem]:
    return load_qa(DEFAULT_QA_PATH)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    with open(DEFAULT_QA_PATH, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _first(items: list[QAItem], type_: str) -> dict:
    return copy.deepcopy(next(i for i in items if i.type == type_).to_dict())


# ------------------------------------------------------------------ the real set


def test_real_set_is_valid(items, corpus):
    assert len(items) >= 185
    assert validate(items, corpus) == []


def test_file_is_utf8_with_unescaped_korean():
    text = DEFAULT_QA_PATH.read_text(encoding="utf-8")
    assert "\\u" not in text
    assert "뿌리" in text


def test_schema_is_valid_json_and_every_item_satisfies_it(records):
    schema = json.loads(DEFAULT_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"].endswith("/draft/2020-12/schema")
    jsonschema.Draft202012Validator.check_schema(schema)
    problems = {r["id"]: schema_problems(r, schema) for r in records}
    assert {k: v for k, v in problems.items() if v} == {}


def test_schema_rejects_bad_records(records):
    schema = load_schema()
    good = next(r for r in records if r["type"] == "number")
    assert schema_problems(good, schema) == []
    assert schema_problems({**good, "extra": 1}, schema)
    assert schema_problems({k: v for k, v in good.items() if k != "note"}, schema)
    assert schema_problems({**good, "type": "trivia"}, schema)
    assert schema_problems({**good, "doc": None}, schema)  # answerable needs a doc
    unans = next(r for r in records if r["type"] == "unanswerable")
    assert schema_problems({**unans, "answers": ["x"]}, schema)


def test_type_distribution(items):
    counts = Counter(i.type for i in items)
    short = {t: (counts[t], n) for t, n in MIN_PER_TYPE.items() if counts[t] < n}
    assert short == {}


def test_unanswerable_share_at_least_ten_percent(items):
    n = sum(i.type == "unanswerable" for i in items)
    assert n / len(items) >= 0.10


def test_everyday_items(items):
    everyday = [i for i in items if i.everyday]
    assert len(everyday) >= 24
    assert all(i.type != "unanswerable" for i in everyday)


def test_every_document_is_covered(items, corpus):
    per_doc = Counter(i.doc[0] for i in items if i.type not in ("multi_doc", "unanswerable"))
    assert set(per_doc) == set(corpus)
    # rough proportion to document size: the biggest documents get the most questions
    assert per_doc["004"] > per_doc["001"] > per_doc["000"] > per_doc["002"] >= per_doc["003"]


def test_multi_doc_items_answer_from_both_documents(items, corpus):
    for item in (i for i in items if i.type == "multi_doc"):
        for d in item.doc:
            assert any(a in corpus[d] for a in item.answers), (item.id, d)


def test_normalisation_of_doc_and_section(items):
    for item in items:
        if item.type == "unanswerable":
            assert item.doc == () and item.section == ()
        elif item.type == "multi_doc":
            assert len(item.doc) == 2 and len(item.section) == 2
        else:
            assert len(item.doc) == 1 and len(item.section) == 1


# ------------------------------------------------------------------ planted errors


def test_duplicate_id_is_caught(items, corpus):
    a, b = _first(items, "number"), _first(items, "table")
    b["id"] = a["id"]
    problems = validate([a, b], corpus)
    assert any("duplicate id" in p for p in problems)


def test_answer_not_in_document_is_caught(items, corpus):
    d = _first(items, "entity")
    d["answers"] = ["이 문자열은 코퍼스에 없다"]
    problems = validate([d], corpus)
    assert any("does not occur" in p for p in problems)


def test_answer_from_another_document_is_caught(items, corpus):
    d = _first(items, "entity")
    other = next(k for k in corpus if k != d["doc"])
    d["doc"] = other
    problems = validate([d], corpus)
    assert any("does not occur" in p for p in problems)


def test_missing_field_is_caught(items, corpus):
    d = _first(items, "definition")
    del d["section"]
    problems = validate([d], corpus)
    assert any("missing field 'section'" in p for p in problems)


def test_extra_and_wrong_typed_fields_are_caught(items, corpus):
    d = _first(items, "list")
    d["score"] = 1
    d["tags"] = "everyday"
    problems = validate([d], corpus)
    assert any("unexpected field 'score'" in p for p in problems)
    assert any("field 'tags' must be" in p for p in problems)


def test_over_common_answer_is_caught(items, corpus):
    d = _first(items, "paraphrase")
    d["answers"] = ["뿌리산업"]
    problems = validate([d], corpus)
    assert any("occurs" in p and "times in the corpus" in p for p in problems)


def test_unknown_type_is_caught(items, corpus):
    d = _first(items, "date")
    d["type"] = "trivia"
    assert any("unknown type" in p for p in validate([d], corpus))


def test_answer_presence_matches_type(items, corpus):
    answerable = _first(items, "number")
    unanswerable = _first(items, "unanswerable")
    unanswerable["answers"] = list(answerable["answers"])
    answerable["answers"] = []
    problems = validate([answerable, unanswerable], corpus)
    assert any("no answers" in p for p in problems)
    assert any("unanswerable item has answers" in p for p in problems)


def test_multi_doc_needs_an_answer_from_each_document(items, corpus):
    d = _first(items, "multi_doc")
    d["answers"] = d["answers"][:1]
    problems = validate([d], corpus)
    assert any("multi_doc" in p or "no answer string comes from" in p for p in problems)


def test_validate_accepts_items_and_dicts_alike(items, corpus):
    sample = items[:5]
    assert validate(sample, corpus) == validate([i.to_dict() for i in sample], corpus) == []


# ------------------------------------------------------------------ matching


def test_contains_answer_ignores_whitespace():
    assert contains_answer("예산은 6,846\n억원 으로 증가", "6,846억원")
    assert contains_answer("K-뿌리산업\t첨단화 전략", "K-뿌리산업 첨단화")
    assert not contains_answer("예산은 6,846억원", "6,900억원")
    assert not contains_answer("아무 텍스트", "")


def test_contains_answer_normalises_unicode():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "광주첨단산단")
    assert contains_answer(f"센터 위치: {decomposed}", "광주첨단산단")


def test_each_answer_is_found_in_its_own_document_text(items, corpus):
    for item in items:
        if item.type in ("multi_doc", "unanswerable"):
            continue
        for a in item.answers:
            assert contains_answer(corpus[item.doc[0]], a), (item.id, a)
