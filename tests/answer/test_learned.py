"""The learned answer line: the numpy tree evaluator against LightGBM itself, the artifact
loading without heavy imports, features of real candidates, reproducible training on the
honest split, and true decline reasons."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import lightgbm as lgb  # a test dependency: missing, the suite fails here rather than skipping
import numpy as np
import pytest
from conftest import ROOT

from rag.answer.features import CHECK_FEATURES, LINE_FEATURES, QUESTION_FEATURES
from rag.answer.learned import ARTIFACT, TreeEnsemble, load_models
from rag.answer.learned_compose import compose_learned, prepare
from rag.eval import train
from rag.eval.splits import side_of

COMMON = dict(random_state=3, n_jobs=1, deterministic=True, force_row_wise=True, verbose=-1)


@pytest.mark.parametrize("objective", ["binary", "lambdarank"])
def test_tree_evaluator_equals_lightgbm(objective):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    x[rng.random(x.shape) < 0.05] = 0.0  # exact ties with thresholds happen on real features
    y = ((x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.3, size=400)) > 0).astype(int)
    if objective == "binary":
        model = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, **COMMON).fit(x, y)
    else:
        model = lgb.LGBMRanker(n_estimators=40, num_leaves=7, **COMMON).fit(x, y, group=[20] * 20)
    ours = TreeEnsemble.from_dump(model.booster_.dump_model())
    test = rng.normal(size=(200, 6))
    np.testing.assert_allclose(ours.raw_score(test), model.booster_.predict(test, raw_score=True), rtol=1e-9,
                               atol=1e-9)


def test_artifact_loads_without_lightgbm_sklearn_or_torch():
    code = textwrap.dedent(f"""
        import sys, json
        for m in ("lightgbm", "sklearn", "torch", "sentence_transformers"):
            sys.modules[m] = None
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from rag.answer.learned import load_models
        m = load_models()
        x = np.zeros((3, len(m.line_features)))
        print(json.dumps({{"scores": m.ranker.raw_score(x).tolist(),
                          "p": m.answerable_probability(np.zeros(len(m.question_features)))}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["scores"]) == 3 and all(np.isfinite(out["scores"])) and 0.0 <= out["p"] <= 1.0


def test_artifact_matches_the_features_it_is_fed():
    """A feature added or renamed without retraining fails here (run `rag train`)."""
    models = load_models()
    assert models is not None, f"{ARTIFACT} is missing: run `rag train`"
    assert models.line_features == LINE_FEATURES and models.question_features == QUESTION_FEATURES
    assert models.ranker.n_features == len(LINE_FEATURES)
    assert models.answerable.n_features == len(QUESTION_FEATURES)
    assert 0.0 < models.threshold < 1.0
    assert len(models.meta["data_sha256"]) == 64 and models.meta["trained_on"]["unanswerable"] >= 300


def test_features_of_real_candidates(retriever):
    q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
    result = retriever.search(q)
    prep = prepare(q, result, retriever)
    x = prep.features
    assert x.shape == (len(prep.pool), len(LINE_FEATURES)) and len(prep.pool) == 20 and np.isfinite(x).all()
    col = {n: i for i, n in enumerate(LINE_FEATURES)}
    row = next(i for i, s in enumerate(prep.pool) if "광주첨단산단" in s.cand.quote)
    assert x[row, col["kind_row"]] == 1.0 and x[row, col["n_columns"]] == 4.0
    assert x[:, col["lex_rank"]].tolist() == sorted(x[:, col["lex_rank"]].tolist())  # pool in lexical order
    # passage cosines come from the retrieval vector and the stored passage vectors
    cos = prep.context.passage_cos
    assert len(cos) == len(result.passages) and all(-1.0 <= c <= 1.0 for c in cos)
    assert max(cos) <= result.dense_top + 1e-4  # the best cosine of all chunks bounds these five
    # line cosines: the retrieval vector against each line's stored vector, never re-encoded
    lc = x[:, col["line_cos"]]
    assert np.all((lc > 0.5) & (lc <= 1.0))
    keys = [(s.cand.chunk_id, s.cand.start) for s in prep.pool]
    stored = np.asarray(retriever.index.lines.vectors)[[retriever.index.lines.row[k] for k in keys]]
    np.testing.assert_allclose(lc, stored @ result.query_vector, rtol=0, atol=1e-5)
    assert x[:, col["line_cos_gap"]].min() == 0.0 and np.all(x[:, col["line_cos_gap"]] >= 0)


def test_year_and_place_checks_of_real_lines(retriever):
    q = "2023년 EU R&D 프로젝트 투자액은?"  # the document's line says '22년
    prep = prepare(q, retriever.search(q), retriever)
    chk = {n: i for i, n in enumerate(CHECK_FEATURES)}
    row = next(i for i, s in enumerate(prep.pool) if "14.7백만 유로" in s.cand.display)
    assert prep.checks[row, chk["year_conflict"]] == 1.0 and prep.checks[row, chk["year_missing"]] == 1.0
    q = "인천 지역뿌리기술지원센터의 지원 분야는?"  # no centre in 인천; 시흥's row names 시흥
    prep = prepare(q, retriever.search(q), retriever)
    rows = [i for i, s in enumerate(prep.pool) if "시흥" in s.cand.display and s.cand.kind == "row"]
    assert rows and all(prep.checks[i, chk["place_conflict"]] == 1.0 for i in rows)
    q = "광주 지역뿌리기술지원센터의 지원 분야는?"
    prep = prepare(q, retriever.search(q), retriever)
    row = next(i for i, s in enumerate(prep.pool) if "광주첨단산단" in s.cand.display)
    assert prep.checks[row].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_training_items_keep_off_the_sealed_side(corpus):
    items = train.load_items({d: doc.text for d, doc in corpus.items()})
    assert len(items) > 1500 and sum(1 for it in items if not it.answers) >= 300
    sealed = {json.loads(x)["id"] for x in (ROOT / "evaluation" / "sealed_test.jsonl").read_text().splitlines() if x}
    assert not sealed & {it.id for it in items}
    for it in items:
        doc, _, key = it.group.partition("|")
        if doc != "none":
            assert side_of(doc, key) == "train", it.id


def test_training_is_reproducible(retriever, corpus):
    items = train.load_items({d: doc.text for d, doc in corpus.items()})
    pick = [it for it in items if it.answers][:60] + [it for it in items if not it.answers][:25]
    examples = train.collect(retriever, pick)
    first, _ = train.fit_artifact(examples)
    second, _ = train.fit_artifact(examples)
    assert first["data_sha256"] == second["data_sha256"]
    assert train.model_hash(first) == train.model_hash(second)


def test_learned_path_answers_and_declines_with_true_reasons(retriever):
    models = load_models()
    ok = compose_learned("용접 분야 지원센터는 어디야?", retriever.search("용접 분야 지원센터는 어디야?"), retriever,
                         models=models)
    assert ok.answerable and "광주첨단산단" in ok.answer.split("\n")[0]
    q = "디팜스테크 직원은 몇 명이야?"
    ans = compose_learned(q, retriever.search(q), retriever, models=models)
    assert not ans.answerable and ans.reason
    if any("디팜스테크" in p.text for p in ans.related):  # never claim the passages are about something else
        assert "디팜스테크'에 관한 내용이 아닙니다" not in ans.reason
    q = "뿌리산업법 시행령은 언제 개정됐어?"  # 뿌리산업법 is in 001: never "not in the documents"
    ans = compose_learned(q, retriever.search(q), retriever, models=models)
    assert "뿌리산업법'에 관한 내용이 없습니다" not in ans.reason
