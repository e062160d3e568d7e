"""The ablation table: :class:`Variant` rows around the core's defaults (chunking, BM25
tokens, normalisation, BM25 k1/b, fusion, e5 prefixes), each an index built in memory by
:func:`rag.index.build.build_in_memory` (or the default index searched with another
:class:`FusionConfig`) and scored like the headline run; then the best row of each group
and whether the defaults are it. This is how the defaults are chosen (issue 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from rag.embed.encoder import Embedder
from rag.eval.evalset import QAItem
from rag.eval.metrics import EVERYDAY, Outcome, slice_report, summarize
from rag.eval.scoring import Progress, _noop, evaluate_mode, relevant_counts
from rag.eval.vector_cache import QueryMemo, VectorCache
from rag.search.fusion import FusionConfig
from rag.text.korean import get_analyzer


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
    # lazy: heavy dependency (faiss, bm25s via rag.index)
    from rag.index.sparse import BM25Params
    from rag.index.spec import BuildSpec

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
        docs: the corpus documents (``rag.ingest.corpus.load_corpus``) the variants are built from.
        settings: :class:`rag.config.Settings` (model and cache dir for a second embedder).
        base_outcomes: mode → outcomes of the headline run; reused for rows whose spec and
            fusion are the base's, instead of searching again.
        cache: persistent passage-vector cache passed to ``build_in_memory(reuse=…)``.
    Returns:
        One dict per variant: group, label, default, chunks, modes → summary, best flag.
    """
    # lazy: heavy dependency (faiss, bm25s via rag.index)
    from rag.index.build import build_in_memory, text_key
    from rag.index.spec import BuildSpec
    from rag.search.retriever import Retriever

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
