"""Retrieval evaluation: run a Q/A set through the core's own :class:`Retriever` and score it.

Nothing here re-implements search: every ranking comes from :meth:`Retriever.search`, and
every ablation variant is an index built by :func:`rag.index.store.build_in_memory` with a
different :class:`BuildSpec` (or the same index searched with a different
:class:`FusionConfig`). This module never prints; progress goes through a callback
``progress(stage, advance, total)`` (the same shape as the index builder's), and the faces
(``rag eval``) turn it into a bar.

How relevance is judged (the conventions of sentence-transformers'
``InformationRetrievalEvaluator``, with relevance decided by answer containment):

* a passage is **relevant** when its text (as returned, i.e. as in the document) contains
  any of the item's answer strings, compared with all whitespace removed
  (:func:`rag.evalset.contains_answer`); this survives re-chunking;
* **hit@k**: a relevant passage among the top k; **full@5**: every answer string of the
  item is contained in one of the top 5 passages (they may be spread over several);
* **MRR@10**: 1 / rank of the first relevant passage within the top 10, else 0;
* **nDCG@10**: binary gains, DCG = Σ rel_i / log2(i + 1); the ideal DCG assumes
  ``min(10, R)`` relevant passages ranked first, where R is the number of chunks *in the
  index* that contain an answer (so returning two of three relevant chunks scores < 1);
* **section hit@5**: one of the top 5 passages comes from the gold document and lies in the
  gold section. The gold section is matched by its *last* heading, whitespace removed,
  contained in the passage's heading path; because the parser folds some headings into
  the text (slide titles such as ``정의``, ``제조업 경쟁력``; the short in-section labels of
  tables) and shortens very long ones with ``…``, the heading also matches when it occurs
  in the passage text or when a shortened path element is a prefix of it. Items whose gold
  section is the document root (the column and the news article have no headings) have no
  section to find and are left out of this one metric;
* multi-document items count as found when any answer is found (hit@k, MRR, nDCG) and
  under each of their documents in the per-document breakdown; full@5 asks for all;
* **unanswerable** items (``answers: []``) are excluded from retrieval metrics and only
  counted; their latency is still measured;
* **latency**: wall time of one warm ``Retriever.search`` call per question and mode
  (a warm-up query per mode first), p50 and p95.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .evalset import QAItem, squash

#: ``progress(stage, advance, total)``; stages are free text (the face shows them as labels).
Progress = Callable[[str, int, int], None]

CUTOFFS = (1, 3, 5, 10)
#: Metric names in display order.
METRICS = ("hit@1", "hit@3", "hit@5", "hit@10", "full@5", "mrr@10", "ndcg@10", "section@5")
MODE_ORDER = ("bm25", "dense", "hybrid")
FAILURE_K = 5
EVERYDAY = "everyday"
PAYLOAD_VERSION = 1


def _noop(stage: str, advance: int, total: int) -> None:  # pragma: no cover - trivial
    pass


# ------------------------------------------------------------------------------ metrics


def relevance(texts: Sequence[str], answers: Sequence[str]) -> list[bool]:
    """For each passage text, whether it contains any answer (whitespace-insensitive)."""
    needles = [squash(a) for a in answers if squash(a)]
    out = []
    for t in texts:
        s = squash(t)
        out.append(any(n in s for n in needles))
    return out


def hit_at_k(rels: Sequence[bool], k: int) -> float:
    """1.0 when a relevant passage is among the first ``k``, else 0.0."""
    return 1.0 if any(rels[:k]) else 0.0


def first_relevant_rank(rels: Sequence[bool]) -> int | None:
    """1-based rank of the first relevant passage, or None."""
    for i, r in enumerate(rels, 1):
        if r:
            return i
    return None


def reciprocal_rank(rels: Sequence[bool], k: int = 10) -> float:
    """1 / rank of the first relevant passage within the top ``k`` (0.0 when none)."""
    r = first_relevant_rank(rels[:k])
    return 0.0 if r is None else 1.0 / r


def ndcg_at_k(rels: Sequence[bool], k: int = 10, n_relevant: int | None = None) -> float:
    """Binary-gain nDCG@k (Järvelin & Kekäläinen 2002).

    Args:
        rels: relevance of the ranked passages, best first.
        k: cut-off.
        n_relevant: how many relevant passages exist in the whole index; the ideal ranking
            puts ``min(k, n_relevant)`` of them first. ``None`` uses the relevant passages
            present in ``rels`` (an "ideal re-ordering" of what was returned).
    Returns:
        A value in [0, 1]; 0.0 when nothing relevant exists.
    """
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(rels[:k], 1) if r)
    n = sum(1 for r in rels if r) if n_relevant is None else n_relevant
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, n) + 1))
    return 0.0 if ideal == 0 else dcg / ideal


def full_coverage(texts: Sequence[str], answers: Sequence[str], k: int = 5) -> bool:
    """Every answer string is contained in at least one of the first ``k`` texts."""
    needles = [squash(a) for a in answers if squash(a)]
    if not needles:
        return False
    top = [squash(t) for t in texts[:k]]
    return all(any(n in s for s in top) for n in needles)


def last_heading(section: str) -> str:
    """The last element of a ``" > "``-joined heading path ('' for the document root)."""
    parts = [p.strip() for p in section.split(" > ") if p.strip()]
    return parts[-1] if parts else ""


def section_matches(gold_doc: str, gold_section: str, doc_id: str, section_path: str, text: str) -> bool:
    """Whether a passage lies in the gold section (see the module docstring for the rule)."""
    heading = squash(last_heading(gold_section))
    if not heading or doc_id != gold_doc:
        return False
    if heading in squash(section_path) or heading in squash(text):
        return True
    for part in section_path.split(" > "):
        part = part.strip()
        if part.endswith("…"):
            stem = squash(part[:-1])
            if len(stem) >= 8 and heading.startswith(stem):
                return True
    return False


def section_hit(passages: Sequence[Any], golds: Sequence[tuple[str, str]], k: int = 5) -> bool | None:
    """Any of the top-``k`` passages in any gold (doc, section); None when no gold section."""
    golds = [(d, s) for d, s in golds if last_heading(s)]
    if not golds:
        return None
    return any(section_matches(d, s, p.doc_id, p.section, p.text) for p in passages[:k] for d, s in golds)


def percentile(values: Sequence[float], q: float) -> float | None:
    return None if not values else float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ------------------------------------------------------------------- one question, one mode


@dataclass
class Outcome:
    """How one question fared in one mode."""

    id: str
    mode: str
    type: str
    docs: tuple[str, ...]
    tags: tuple[str, ...]
    answerable: bool
    latency_ms: float
    rank: int | None = None  # first relevant rank (None: not in the top k)
    metrics: dict[str, float | None] = field(default_factory=dict)
    reachable: bool = True  # some chunk of the index contains an answer
    top: list[dict] = field(default_factory=list)  # top-3 passages, kept for misses only
    error: str | None = None

    def compact(self) -> dict:
        d = {"rank": self.rank, "ms": round(self.latency_ms, 2)}
        if self.answerable:
            d["full5"] = bool(self.metrics.get("full@5"))
            d["section5"] = self.metrics.get("section@5")
        if self.error:
            d["error"] = self.error
        return d


def _golds(item: QAItem) -> list[tuple[str, str]]:
    return [(d, s) for d, s in zip(item.doc, item.section)]


def score_passages(item: QAItem, passages: Sequence[Any], k: int, n_relevant: int) -> tuple[int | None, dict]:
    """First relevant rank and the metric values of one ranked list (``k``: depth retrieved)."""
    texts = [p.text for p in passages]
    rels = relevance(texts, item.answers)
    m: dict[str, float | None] = {}
    for c in CUTOFFS:
        m[f"hit@{c}"] = hit_at_k(rels, c) if c <= k else None
    m["full@5"] = (1.0 if full_coverage(texts, item.answers, 5) else 0.0) if k >= 5 else None
    m["mrr@10"] = reciprocal_rank(rels, min(10, k))
    m["ndcg@10"] = ndcg_at_k(rels, min(10, k), n_relevant)
    sh = section_hit(passages, _golds(item), 5)
    m["section@5"] = None if sh is None else (1.0 if sh else 0.0)
    return first_relevant_rank(rels), m


def _passage_brief(p: Any, chars: int = 300) -> dict:
    text = p.text if len(p.text) <= chars else p.text[:chars] + " …"
    return {"rank": p.rank, "chunk_id": p.chunk_id, "doc_id": p.doc_id, "section": p.section,
            "score": p.score, "text": text}


def relevant_counts(index, items: Iterable[QAItem]) -> dict[str, int]:
    """Item id → number of chunks of ``index`` whose text contains one of its answers."""
    squashed = [squash(c.text) for c in index.chunks]
    out = {}
    for item in items:
        needles = [squash(a) for a in item.answers if squash(a)]
        out[item.id] = sum(1 for s in squashed if any(n in s for n in needles))
    return out


def evaluate_mode(retriever, items: Sequence[QAItem], mode: str, k: int = 10,
                  progress: Progress | None = None, stage: str | None = None,
                  n_relevant: dict[str, int] | None = None, warmup: bool = True) -> list[Outcome]:
    """Search every item in ``mode`` and score it.

    Args:
        retriever: a :class:`rag.retrieve.Retriever` (the real one, or a variant's).
        items: the Q/A items (unanswerable ones are searched for latency, not scored).
        k: passages retrieved per question.
        progress: callback, advanced once per question.
        n_relevant: item id → relevant chunks in the index (computed when None).
        warmup: run one untimed query first so lazy model loads are not timed.
    Returns:
        One :class:`Outcome` per item, in order.
    """
    from .retrieve import QuestionError

    report = progress or _noop
    stage = stage or f"eval {mode}"
    n_relevant = n_relevant if n_relevant is not None else relevant_counts(retriever.index, items)
    if warmup and items:
        try:
            retriever.search(items[0].question, k=k, mode=mode)
        except QuestionError:
            pass
    report(stage, 0, len(items))
    outcomes = []
    for item in items:
        t0 = time.perf_counter()
        error = None
        try:
            passages = retriever.search(item.question, k=k, mode=mode).passages
        except QuestionError as exc:
            passages, error = [], str(exc)
        ms = (time.perf_counter() - t0) * 1e3
        o = Outcome(item.id, mode, item.type, item.doc, item.tags, item.answerable, ms, error=error)
        if item.answerable:
            nrel = n_relevant.get(item.id, 0)
            o.rank, o.metrics = score_passages(item, passages, k, nrel)
            o.reachable = nrel > 0
            if o.rank is None or o.rank > FAILURE_K:
                o.top = [_passage_brief(p) for p in passages[:3]]
        outcomes.append(o)
        report(stage, 1, len(items))
    return outcomes


# ------------------------------------------------------------------------------ summaries


def summarize(outcomes: Sequence[Outcome]) -> dict:
    """Mean of each metric over answerable outcomes (``n``; section@5 has its own ``n_section``)."""
    scored = [o for o in outcomes if o.answerable]
    out: dict[str, Any] = {"n": len(scored)}
    for name in METRICS:
        vals = [o.metrics.get(name) for o in scored]
        vals = [v for v in vals if v is not None]
        out[name] = round(float(np.mean(vals)), 4) if vals else None
        if name == "section@5":
            out["n_section"] = len(vals)
    return out


def latency(outcomes: Sequence[Outcome]) -> dict:
    ms = [o.latency_ms for o in outcomes]
    p50, p95 = percentile(ms, 50), percentile(ms, 95)
    return {"n": len(ms), "p50_ms": None if p50 is None else round(p50, 2),
            "p95_ms": None if p95 is None else round(p95, 2)}


def _group(outcomes: Sequence[Outcome], keys: Callable[[Outcome], Iterable[str]]) -> dict[str, dict]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.answerable:
            for key in keys(o):
                groups[key].append(o)
    return {key: summarize(groups[key]) for key in sorted(groups)}


def mode_report(outcomes: Sequence[Outcome]) -> dict:
    """Overall / per type / per doc / per tag summaries and latency for one mode."""
    return {
        "overall": summarize(outcomes),
        "per_type": _group(outcomes, lambda o: [o.type]),
        "per_doc": _group(outcomes, lambda o: list(o.docs)),
        "per_tag": _group(outcomes, lambda o: list(o.tags) or ["untagged"]),
        "slices": slice_report(outcomes),
        "latency": latency(outcomes),
        "unanswerable": sum(1 for o in outcomes if not o.answerable),
        "unreachable": sorted(o.id for o in outcomes if o.answerable and not o.reachable),
    }


def slice_report(outcomes: Sequence[Outcome]) -> dict:
    """The issue-6 slices: items tagged ``everyday`` and the rest."""
    return {
        EVERYDAY: summarize([o for o in outcomes if EVERYDAY in o.tags]),
        "rest": summarize([o for o in outcomes if EVERYDAY not in o.tags]),
    }


def failures(outcomes: Sequence[Outcome], items: Sequence[QAItem], k: int = FAILURE_K) -> list[dict]:
    """Answerable items with no relevant passage in the top ``k``, with what came back."""
    by_id = {i.id: i for i in items}
    out = []
    for o in outcomes:
        if o.answerable and (o.rank is None or o.rank > k):
            item = by_id[o.id]
            out.append({"id": o.id, "mode": o.mode, "type": o.type, "question": item.question,
                        "answers": list(item.answers), "doc": list(item.doc), "section": list(item.section),
                        "rank": o.rank, "reachable": o.reachable, "error": o.error, "top": o.top})
    return out


# ---------------------------------------------------------------------------- vector cache


def model_slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"


class VectorCache:
    """Passage embeddings by :func:`rag.index.store.text_key`, persisted across runs.

    One ``.npz`` per model (``keys``: the text keys, ``vectors``: float32 rows), written
    atomically (temp file + rename), so concurrent or interrupted runs never leave a file
    that does not load; the worst case is losing the other run's additions.
    """

    MAX_ENTRIES = 20000

    def __init__(self, path: Path | None):
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
                self.vectors = {str(k): np.asarray(v, np.float32) for k, v in zip(keys, vecs)}
            except Exception:  # unreadable cache: start afresh, it is only a cache
                self.vectors = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def add_index(self, index, use_prefixes: bool) -> int:
        """Remember the vectors of a built index; returns how many were new."""
        from .index.store import text_key

        new = 0
        for i, c in enumerate(index.chunks):
            key = text_key(c, use_prefixes)
            if key not in self.vectors:
                self.vectors[key] = np.array(index.vectors[i], dtype=np.float32)
                new += 1
        self._dirty = self._dirty or new > 0
        return new

    def save(self, keep: set[str] | None = None) -> None:
        if self.path is None or not self._dirty:
            return
        if len(self.vectors) > self.MAX_ENTRIES and keep:
            self.vectors = {k: v for k, v in self.vectors.items() if k in keep}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.vectors), dtype="U64")
        vecs = np.stack([self.vectors[k] for k in keys]) if len(keys) else np.zeros((0, 0), np.float32)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=keys, vectors=vecs.astype(np.float32))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False


class QueryMemo:
    """An embedder whose :meth:`encode_queries` remembers its answers (ablations ask the
    same 200 questions of many variants); everything else is the wrapped embedder's."""

    def __init__(self, embedder):
        self._embedder = embedder
        self._memo: dict[str, np.ndarray] = {}

    def prefill(self, texts: Iterable[str], batch_size: int = 64) -> None:
        """Embed all ``texts`` up front in batches (much faster than one call per question)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        for start in range(0, len(missing), batch_size):
            self.encode_queries(missing[start:start + batch_size])

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            for t, v in zip(missing, self._embedder.encode_queries(missing)):
                self._memo[t] = np.asarray(v, np.float32)
        if not texts:
            return np.zeros((0, self._embedder.dim), np.float32)
        return np.stack([self._memo[t] for t in texts])

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)


# ------------------------------------------------------------------------------ ablations


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table."""

    group: str
    label: str
    spec: Any  # BuildSpec
    fusion: Any  # FusionConfig
    modes: tuple[str, ...]
    default: bool = False


#: Chunk sizes (max_chars) swept besides the default.
CHUNK_SIZES = (500, 700, 900)
#: BM25 (k1, b) pairs swept besides the default.
BM25_GRID = ((1.2, 0.75), (0.7, 0.75), (1.5, 0.75), (0.9, 0.5), (0.9, 0.9))
#: Dense weights swept for weighted fusion.
FUSION_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RRF_KS = (20, 60)


def default_variants(spec=None, fusion=None) -> list[Variant]:
    """The ablation table's rows, built around the core's current defaults."""
    from .index.sparse import BM25Params
    from .retrieve import FusionConfig
    from .index.store import BuildSpec

    spec = spec or BuildSpec()
    fusion = fusion or FusionConfig()
    ch, an, bm = spec.chunking, spec.analyzer, spec.bm25
    rows: list[Variant] = []
    all3 = ("bm25", "dense", "hybrid")

    def size_label(c) -> str:
        return f"section, max {c.max_chars} chars" if c.strategy == "section" else \
            f"fixed {c.fixed_size} chars, overlap {c.fixed_overlap}"

    sizes = sorted(set(CHUNK_SIZES) | ({ch.max_chars} if ch.strategy == "section" else set()))
    for size in sizes:
        c = replace(ch, strategy="section", max_chars=size)
        rows.append(Variant("chunking", size_label(c), replace(spec, chunking=c), fusion, all3, c == ch))
    fixed = replace(ch, strategy="fixed", fixed_size=500, fixed_overlap=50)
    rows.append(Variant("chunking", size_label(fixed), replace(spec, chunking=fixed), fusion, all3, fixed == ch))

    for mode, label in (("morph", "Kiwi morphemes"), ("whitespace", "whitespace tokens")):
        a = replace(an, mode=mode)
        rows.append(Variant("BM25 tokens", label, replace(spec, analyzer=a), fusion, ("bm25", "hybrid"), a == an))
    for norm in (True, False):
        a = replace(an, normalize=norm)
        rows.append(Variant("normalisation", "on" if norm else "off", replace(spec, analyzer=a), fusion,
                            ("bm25", "hybrid"), a == an))
    grid = list(dict.fromkeys([(bm.k1, bm.b), *BM25_GRID]))
    for k1, b in grid:
        p = BM25Params(k1=k1, b=b, method=bm.method)
        rows.append(Variant("BM25 k1, b", f"k1={k1}, b={b}", replace(spec, bm25=p), fusion, ("bm25", "hybrid"), p == bm))
    fusions = [FusionConfig("rrf", fusion.weight, rk, fusion.depth) for rk in sorted(set(RRF_KS))]
    fusions += [FusionConfig("weighted", w, fusion.rrf_k, fusion.depth) for w in FUSION_WEIGHTS]
    if fusion not in fusions:
        fusions.append(fusion)
    for f in fusions:
        label = f"RRF, k={f.rrf_k}" if f.method == "rrf" else f"weighted, dense {f.weight:.1f}"
        is_default = (f.method, f.rrf_k if f.method == "rrf" else f.weight) == \
            (fusion.method, fusion.rrf_k if fusion.method == "rrf" else fusion.weight)
        rows.append(Variant("fusion", label, spec, f, ("hybrid",), is_default))
    for pre in (True, False):
        rows.append(Variant("e5 prefixes", "on" if pre else "off", replace(spec, use_prefixes=pre), fusion,
                            ("dense", "hybrid"), pre == spec.use_prefixes))
    return rows


def _variant_summary(outcomes: Sequence[Outcome]) -> dict:
    s = summarize(outcomes)
    sl = slice_report(outcomes)
    return {**s, "everyday_hit@5": sl[EVERYDAY]["hit@5"], "rest_hit@5": sl["rest"]["hit@5"],
            "n_everyday": sl[EVERYDAY]["n"], "n_rest": sl["rest"]["n"]}


def selection_score(row: dict) -> float:
    """How ablation rows are ranked: hybrid hit@5 + hybrid MRR@10 (both targets of issue 2)."""
    h = row["modes"].get("hybrid") or {}
    return (h.get("hit@5") or 0.0) + (h.get("mrr@10") or 0.0)


def run_ablations(base, items: Sequence[QAItem], docs, settings, base_outcomes: dict[str, list[Outcome]] | None = None,
                  variants: Sequence[Variant] | None = None, k: int = 10, progress: Progress | None = None,
                  cache: VectorCache | None = None, base_spec=None) -> list[dict]:
    """Evaluate every variant; rows in the order of ``variants``.

    Args:
        base: the real :class:`Retriever` (its index was built with ``base_spec``).
        docs: the corpus documents (``rag.corpus.load_corpus``) the variants are built from.
        settings: :class:`rag.config.Settings` (model and cache dir for a second embedder).
        base_outcomes: mode → outcomes of the headline run; reused for rows whose spec and
            fusion are the base's, instead of searching again.
        cache: persistent passage-vector cache passed to ``build_in_memory(reuse=…)``.
    Returns:
        One dict per variant: group, label, default, chunks, modes → summary, best flag.
    """
    from .embedding import Embedder
    from .index.store import BuildSpec, build_in_memory, text_key
    from .korean import get_analyzer
    from .retrieve import Retriever

    report = progress or _noop
    base_spec = base_spec or BuildSpec()
    variants = list(variants) if variants is not None else default_variants(base_spec, base.fusion)
    base_outcomes = base_outcomes or {}
    doc_texts = {d.doc_id: d.text for d in docs}
    cache = cache if cache is not None else VectorCache(None)
    cache.add_index(base.index, base_spec.use_prefixes)
    embedders: dict[bool, Any] = {base_spec.use_prefixes: QueryMemo(base.embedder)}
    indexes: dict[Any, Any] = {base_spec: base.index}
    rel_counts: dict[Any, dict[str, int]] = {}
    questions = [i.question for i in items if i.question.strip()]
    used_keys: set[str] = set()
    rows = []
    report("ablations", 0, len(variants))
    for n, v in enumerate(variants, 1):
        stage = f"ablation {n}/{len(variants)}: {v.group} · {v.label}"
        emb = embedders.get(v.spec.use_prefixes)
        if emb is None:
            emb = embedders[v.spec.use_prefixes] = QueryMemo(
                Embedder(settings.model, settings.cache_dir, use_prefixes=v.spec.use_prefixes))
        if any(m in ("dense", "hybrid") for m in v.modes):
            emb.prefill(questions)
        index = indexes.get(v.spec)
        if index is None:
            analyzer = get_analyzer(mode=v.spec.analyzer.mode, normalize=v.spec.analyzer.normalize)
            index = build_in_memory(docs, v.spec, emb, analyzer,
                                    progress=lambda s, a, t, _st=stage: report(f"{_st} · {s}", a, t),
                                    reuse=cache.vectors)
            cache.add_index(index, v.spec.use_prefixes)
            indexes[v.spec] = index
        if v.spec not in rel_counts:
            rel_counts[v.spec] = relevant_counts(index, items)
        used_keys.update(text_key(c, v.spec.use_prefixes) for c in index.chunks)
        analyzer = get_analyzer(mode=v.spec.analyzer.mode, normalize=v.spec.analyzer.normalize)
        retriever = Retriever(index, analyzer, emb, doc_texts, v.fusion)
        summaries = {}
        for mode in v.modes:
            if v.spec == base_spec and v.fusion == base.fusion and mode in base_outcomes:
                outs = base_outcomes[mode]
            else:
                outs = evaluate_mode(retriever, items, mode, k, progress=report, stage=f"{stage} · {mode}",
                                     n_relevant=rel_counts[v.spec], warmup=False)
            summaries[mode] = _variant_summary(outs)
        rows.append({"group": v.group, "label": v.label, "default": v.default, "chunks": len(index.chunks),
                     "spec": {"chunking": asdict(v.spec.chunking), "analyzer": asdict(v.spec.analyzer),
                              "bm25": asdict(v.spec.bm25), "use_prefixes": v.spec.use_prefixes},
                     "fusion": asdict(v.fusion), "modes": summaries})
        report("ablations", 1, len(variants))
    cache.save(keep=used_keys)
    mark_best(rows, tolerance=1.0 / max(1, sum(1 for i in items if i.answerable)))
    return rows


def mark_best(rows: Sequence[dict], tolerance: float = 0.0) -> None:
    """Set ``row["best"]`` on the best row of each group by :func:`selection_score`.

    A default row within ``tolerance`` of the top (the evaluation passes one question's
    worth, 1/n: a smaller gap is noise) is called best, so that defaults only move when
    the numbers say so by more than one question.
    """
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        best = max(members, key=selection_score)
        default = next((r for r in members if r["default"]), None)
        if default is not None and selection_score(best) - selection_score(default) <= tolerance + 1e-12:
            best = default
        for r in members:
            r["best"] = r is best


def defaults_check(rows: Sequence[dict]) -> list[dict]:
    """Per ablation group: the default row, the best row, and whether they agree."""
    out = []
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        default = next((r for r in members if r["default"]), None)
        best = next((r for r in members if r.get("best")), None)
        out.append({
            "group": group, "default": default["label"] if default else None,
            "best": best["label"] if best else None,
            "agrees": bool(default and best and default is best),
            "margin": round(selection_score(best) - selection_score(default), 4) if default and best else None,
        })
    return out


# -------------------------------------------------------------------------------- the run


@dataclass
class EvalRun:
    """Everything one ``rag eval`` produced; :meth:`payload` is the ``--json`` document."""

    meta: dict
    outcomes: dict[str, list[Outcome]]
    items: list[QAItem]
    ablations: list[dict] | None = None

    def payload(self) -> dict:
        modes = {m: mode_report(o) for m, o in self.outcomes.items()}
        fails = {m: failures(o, self.items) for m, o in self.outcomes.items()}
        return {
            "version": PAYLOAD_VERSION,
            "meta": self.meta,
            "modes": modes,
            "targets": targets(modes),
            "failures": fails,
            "questions": {m: {o.id: o.compact() for o in outs} for m, outs in self.outcomes.items()},
            "ablations": self.ablations,
            "defaults": defaults_check(self.ablations) if self.ablations else None,
        }


#: Issue 2's targets for hybrid on a held-out set of the same style.
TARGETS = {"hit@5": 0.95, "mrr@10": 0.85}


def targets(modes: dict[str, dict]) -> dict | None:
    """Whether hybrid meets issue 2's targets and beats both single modes on MRR@10 / hit@5."""
    h = modes.get("hybrid")
    if not h:
        return None
    ho = h["overall"]
    out: dict[str, Any] = {f"hybrid {m} ≥ {v}": (ho.get(m) or 0) >= v for m, v in TARGETS.items()}
    for single in ("bm25", "dense"):
        if single in modes:
            so = modes[single]["overall"]
            out[f"hybrid MRR@10 > {single}"] = (ho.get("mrr@10") or 0) > (so.get("mrr@10") or 0)
            out[f"hybrid hit@5 ≥ {single}"] = (ho.get("hit@5") or 0) >= (so.get("hit@5") or 0)
    return out


def run_eval(items: Sequence[QAItem], modes: Sequence[str] = MODE_ORDER, k: int = 10, settings=None,
             retriever=None, ablations: bool = False, progress: Progress | None = None,
             notice: Callable[[str], None] | None = None, set_path: str | None = None,
             cache_path: Path | None = None) -> EvalRun:
    """Run ``items`` through the real retriever in each mode (and the ablations).

    Args:
        items: the Q/A items (``rag.evalset.load_qa``).
        modes: any of bm25, dense, hybrid.
        k: passages retrieved per question (metrics beyond ``k`` are None).
        settings: :class:`rag.config.Settings` (default: from the environment).
        retriever: an open :class:`Retriever`; by default ``Retriever.open(settings)``,
            which builds the project index when missing or stale.
        ablations: also run the ablation table (builds variant indexes in memory).
        cache_path: the passage-vector cache for ablations; default
            ``<index_dir>/eval-cache/<model-slug>.npz``.
    Returns:
        An :class:`EvalRun`.
    """
    from .config import Settings
    from .corpus import load_corpus
    from .index.store import BuildSpec
    from .retrieve import Retriever, check_options

    for m in modes:
        check_options(k, m)
    started = time.perf_counter()
    settings = settings or Settings()
    report = progress or _noop
    if retriever is None:
        retriever = Retriever.open(settings, progress=lambda s, a, t: report(f"index · {s}", a, t), notice=notice)
    items = list(items)
    rel = relevant_counts(retriever.index, items)
    outcomes: dict[str, list[Outcome]] = {}
    for mode in [m for m in MODE_ORDER if m in modes]:
        outcomes[mode] = evaluate_mode(retriever, items, mode, k, progress=report, n_relevant=rel)
    eval_seconds = time.perf_counter() - started
    rows = None
    if ablations:
        docs = load_corpus(settings.corpus_dir)
        path = cache_path or settings.index_dir / "eval-cache" / f"{model_slug(settings.model)}.npz"
        rows = run_ablations(retriever, items, docs, settings, base_outcomes=outcomes, k=max(k, 10),
                             progress=report, cache=VectorCache(path), base_spec=BuildSpec())
    spec = retriever.index.manifest.get("spec", {})
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "set": set_path,
        "items": len(items),
        "answerable": sum(1 for i in items if i.answerable),
        "unanswerable": sum(1 for i in items if not i.answerable),
        "k": k,
        "modes": list(outcomes),
        "model": retriever.index.model,
        "chunks": len(retriever.index.chunks),
        "spec": spec,
        "fusion": asdict(retriever.fusion),
        "eval_seconds": round(eval_seconds, 2),
        "load_avg": _load_avg(),
        "cpus": os.cpu_count(),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    return EvalRun(meta, outcomes, items, rows)


def _load_avg() -> list[float] | None:
    """The machine's 1/5/15-minute load average at the end of the run (latency context)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


# -------------------------------------------------------------------------------- compare


COMPARE_METRICS = ("hit@1", "hit@5", "hit@10", "full@5", "mrr@10", "ndcg@10", "section@5")


def compare(old: dict, new: dict) -> dict:
    """Deltas of ``new`` against ``old`` (both ``--json`` payloads).

    Returns ``{"modes": {mode: {metric: {"old", "new", "delta"}}}, "latency": {mode: {...}},
    "per_type": {mode: {type: {metric: delta}}}, "flips": {mode: {"gained": [ids], "lost": [ids]}}}``;
    only modes present in both runs appear. ``gained``/``lost`` are items whose hit@5 changed.
    """
    out: dict[str, Any] = {"modes": {}, "latency": {}, "per_type": {}, "flips": {},
                           "old_created": old.get("meta", {}).get("created"),
                           "new_created": new.get("meta", {}).get("created")}
    for mode in [m for m in MODE_ORDER if m in old.get("modes", {}) and m in new.get("modes", {})]:
        o, n = old["modes"][mode], new["modes"][mode]
        out["modes"][mode] = {m: _delta(o["overall"].get(m), n["overall"].get(m)) for m in COMPARE_METRICS}
        out["latency"][mode] = {m: _delta(o.get("latency", {}).get(m), n.get("latency", {}).get(m))
                                for m in ("p50_ms", "p95_ms")}
        types = sorted(set(o.get("per_type", {})) | set(n.get("per_type", {})))
        out["per_type"][mode] = {
            t: {m: _delta(o.get("per_type", {}).get(t, {}).get(m), n.get("per_type", {}).get(t, {}).get(m))["delta"]
                for m in ("hit@5", "mrr@10")} for t in types}
        oq, nq = old.get("questions", {}).get(mode, {}), new.get("questions", {}).get(mode, {})
        gained, lost = [], []
        for qid in sorted(set(oq) & set(nq)):
            if "full5" not in nq[qid] and "full5" not in oq[qid]:
                continue  # unanswerable
            was, now = _hit5(oq[qid]), _hit5(nq[qid])
            if now and not was:
                gained.append(qid)
            elif was and not now:
                lost.append(qid)
        out["flips"][mode] = {"gained": gained, "lost": lost}
    return out


def _hit5(q: dict) -> bool:
    return q.get("rank") is not None and q["rank"] <= 5


def _delta(old: float | None, new: float | None) -> dict:
    d = None if old is None or new is None else round(new - old, 4)
    return {"old": old, "new": new, "delta": d}


def load_payload(path: Path) -> dict:
    """An earlier ``--json`` payload; ValueError with a one-line reason when unusable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("modes"), dict):
        raise ValueError(f"{path} is not a `rag eval --json` payload (no \"modes\")")
    return data


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------------------- report

REPORT_START = "<!-- retrieval:start -->"
REPORT_END = "<!-- retrieval:end -->"
REPORT_TITLE = "# Evaluation report\n"

GROUP_NOTES = {
    "chunking": "section chunks vs fixed-size 500-character windows with 50 overlap; section size swept",
    "BM25 tokens": "Kiwi content morphemes vs whitespace tokens for BM25 (dense unchanged)",
    "normalisation": "issue 6 layer (hanja, years, units, synonyms) on vs off for BM25",
    "BM25 k1, b": "BM25 saturation and length normalisation",
    "fusion": "reciprocal rank fusion vs min-max weighted sum, dense weight swept",
    "e5 prefixes": "`query: ` / `passage: ` prefixes on vs off",
}


def _f(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def ablation_cells(row: dict) -> list[str]:
    """The numeric cells of one ablation row, in :data:`ABLATION_COLUMNS` order."""
    m = row["modes"]
    g = lambda mode, key: _f((m.get(mode) or {}).get(key)) if mode in m else "—"  # noqa: E731
    return [str(row["chunks"]), g("bm25", "hit@5"), g("bm25", "mrr@10"), g("dense", "hit@5"), g("dense", "mrr@10"),
            g("hybrid", "hit@1"), g("hybrid", "hit@5"), g("hybrid", "mrr@10"), g("hybrid", "ndcg@10"),
            f"{g('bm25', 'everyday_hit@5')} / {g('hybrid', 'everyday_hit@5')}",
            f"{g('bm25', 'rest_hit@5')} / {g('hybrid', 'rest_hit@5')}"]


ABLATION_COLUMNS = ("chunks", "bm25 hit@5", "bm25 MRR", "dense hit@5", "dense MRR", "hybrid hit@1",
                    "hybrid hit@5", "hybrid MRR", "hybrid nDCG", "everyday hit@5 bm25/hyb", "rest hit@5 bm25/hyb")


def render_markdown(payload: dict, command: str = "rag eval") -> str:
    """The retrieval section of ``evaluation/report.md`` (between the markers)."""
    meta, modes = payload["meta"], payload["modes"]
    L: list[str] = [REPORT_START, "## Retrieval", ""]
    L.append(f"_Generated by `{command}` on {meta['created']} · set `{meta.get('set')}`: {meta['items']} questions, "
             f"{meta['answerable']} answerable, {meta['unanswerable']} unanswerable (counted, not scored) · "
             f"index {meta['chunks']} chunks, model `{meta['model']}` · k={meta['k']} · "
             f"eval {meta['eval_seconds']:.0f} s, wall time {meta['wall_seconds']:.0f} s "
             f"(including the ablations) on this machine._")
    L += ["", "### Headline", ""]
    rows = []
    for mode, r in modes.items():
        o, lat = r["overall"], r["latency"]
        rows.append([f"**{mode}**", str(o["n"]), *(_f(o.get(m)) for m in METRICS), _ms(lat["p50_ms"]), _ms(lat["p95_ms"])])
    L += _md_table(["mode", "n", "hit@1", "hit@3", "hit@5", "hit@10", "full@5", "MRR@10", "nDCG@10", "section hit@5",
                    "p50 ms", "p95 ms"], rows)
    if payload.get("targets"):
        L += ["", "Targets (issue 2, for hybrid): " + " · ".join(
            f"{name} {'✅' if ok else '❌'}" for name, ok in payload["targets"].items())]
    first = next(iter(modes.values()))
    n_sec = first["overall"].get("n_section")
    unreachable = first.get("unreachable") or []
    L += ["", f"Section hit@5 is over the {n_sec} items whose gold section is not the document root. "
          f"Latency is one warm `Retriever.search` call per question (p50/p95 over all {meta['items']}"
          + _load_note(meta) + "). "
          + (f"Answerable items no chunk contains (unreachable by construction): {', '.join(unreachable)}."
             if unreachable else "Every answer string is contained in some chunk of the index.")]

    for title, key in (("Per question type", "per_type"), ("Per document", "per_doc"), ("Per tag", "per_tag")):
        L += ["", f"### {title} (hit@5 / MRR@10)", ""]
        keys = sorted({k for r in modes.values() for k in r[key]})
        rows = []
        for k_ in keys:
            n = next((r[key][k_]["n"] for r in modes.values() if k_ in r[key]), 0)
            cells = [f"{_f(r[key].get(k_, {}).get('hit@5'))} / {_f(r[key].get(k_, {}).get('mrr@10'))}" for r in modes.values()]
            rows.append([k_, str(n), *cells])
        L += _md_table([key.split("_")[1], "n", *modes], rows)
        if key == "per_doc":
            L += ["", "Multi-document items count under each of their two documents."]

    abl = payload.get("ablations")
    if abl:
        L += ["", "### Ablations", "",
              "One row per variant; every variant is an index built in memory by the core's `build_in_memory` "
              "(or the default index searched with another fusion), evaluated on the same set. "
              "`default` marks the core's current defaults; ★ marks the best row of each group by "
              "hybrid hit@5 + hybrid MRR@10 (a default within one question's worth, 1/n, of the top keeps the star: "
              "smaller gaps are noise on a set this size). Everyday = the issue-6 slice tagged `everyday` "
              f"({abl[0]['modes'].get('hybrid', abl[0]['modes'].get('bm25', {})).get('n_everyday', '?')} items); "
              "rest = the other answerable items.", ""]
        rows = []
        for r in abl:
            label = r["label"] + (" (default)" if r["default"] else "") + (" ★" if r.get("best") else "")
            rows.append([r["group"], label, *ablation_cells(r)])
        L += _md_table(["group", "variant", *ABLATION_COLUMNS], rows)
        if payload.get("ablations_from"):
            L += ["", f"_Ablations carried over from the run of {payload['ablations_from']} (this run skipped them)._"]
        L += ["", "Groups: " + "; ".join(f"**{g}**: {t}" for g, t in GROUP_NOTES.items()) + "."]
    checks = payload.get("defaults")
    if checks:
        spec, fusion = meta["spec"], meta["fusion"]
        ch, bm = spec.get("chunking", {}), spec.get("bm25", {})
        an = spec.get("analyzer", {})
        L += ["", "### Defaults of the core", "",
              f"- Chunking: `{ch.get('strategy')}`, max_chars={ch.get('max_chars')}, min_chars={ch.get('min_chars')}, "
              f"table_rows_max_chars={ch.get('table_rows_max_chars')} (rag/chunking.py `ChunkingConfig`)",
              f"- BM25: analyser `{an.get('mode')}`, normalisation {'on' if an.get('normalize') else 'off'}, "
              f"k1={bm.get('k1')}, b={bm.get('b')}, idf `{bm.get('method')}` (rag/index/sparse.py `BM25Params`)",
              f"- Fusion: `{fusion['method']}`" + (f", dense weight {fusion['weight']}" if fusion["method"] == "weighted"
                                                   else f", k={fusion['rrf_k']}")
              + f", depth {fusion['depth']} (rag/retrieve.py `FusionConfig`)",
              f"- e5 prefixes: {'on' if spec.get('use_prefixes') else 'off'}", "",
              "These are the values the ablation table shows best: each default is the starred row of its group "
              "(issue 3). A ⚠ line below means the numbers now favour another value and the default in the named "
              "file should move.", ""]
        for c in checks:
            if c["agrees"]:
                L.append(f"- {c['group']}: the default ({c['default']}) is the best row of the table ✅")
            else:
                L.append(f"- {c['group']}: the default ({c['default']}) trails the best ({c['best']}) by "
                         f"{c['margin']:.3f} in hybrid hit@5 + MRR@10 ⚠")
        if payload.get("defaults_note"):
            L += ["", payload["defaults_note"]]

    fails = payload.get("failures", {})
    if fails:
        L += ["", "### Misses at k=5", ""]
        counts = ", ".join(f"{m} {len(f)}" for m, f in fails.items())
        L.append(f"Answerable questions without a relevant passage in the top 5: {counts}. Hybrid misses "
                 "(rank of the first relevant passage in the top 10, or –):")
        L.append("")
        for f in fails.get("hybrid", []):
            top = f["top"][0] if f["top"] else None
            got = f"{top['doc_id']} · {top['section'] or '(root)'}" if top else "nothing"
            L.append(f"- `{f['id']}` ({f['type']}, rank {f['rank'] or '–'}) {f['question']} — expected "
                     f"{' / '.join(repr(a) for a in f['answers'])} in {', '.join(f['doc'])}; top-1 was {got}")
    L += ["", "### How relevance is judged", "",
          "A passage is relevant when its returned text contains one of the item's answer strings with all "
          "whitespace removed. hit@k: a relevant passage in the top k; full@5: every answer string in the top 5 "
          "together; MRR@10: 1/rank of the first relevant passage; nDCG@10: binary gains, ideal = min(10, R) "
          "relevant chunks first, R = chunks of the index containing an answer; section hit@5: a top-5 passage "
          "from the gold document whose heading path contains the gold section's last heading (or whose text "
          "does, for headings the parser folds into text such as slide titles; a path element shortened with "
          "`…` matches by prefix). Unanswerable items are excluded from these metrics. "
          "See `rag/evaluate.py`.", REPORT_END]
    return "\n".join(L) + "\n"


def _load_note(meta: dict) -> str:
    load, cpus = meta.get("load_avg"), meta.get("cpus")
    if not load or not cpus:
        return ""
    return (f"; the 1-minute load average was {load[0]} on {cpus} CPUs at the end of the run: "
            "on a shared machine, a load above the CPU count inflates these times")


def write_report(path: Path, section: str) -> None:
    """Put ``section`` between the retrieval markers of ``path``, keeping everything else.

    A missing file is created with a title; a file without the markers gets the section
    appended. Written atomically.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else REPORT_TITLE
    start, end = text.find(REPORT_START), text.find(REPORT_END)
    if start != -1 and end != -1 and end > start:
        new = text[:start] + section.rstrip("\n") + text[end + len(REPORT_END):]
    else:
        new = text.rstrip("\n") + "\n\n" + section
    if not new.endswith("\n"):
        new += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
