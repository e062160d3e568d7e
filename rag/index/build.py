"""Building the index: chunk, analyse, embed (reusing vectors of unchanged chunks) and
index the corpus in memory, then write a fresh build folder and publish it atomically;
``ensure_index`` builds only when the published one is missing, corrupt or stale."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from rag.config import DEFAULT_EMBED_BATCH, Settings
from rag.embed.encoder import Embedder
from rag.errors import (
    IndexBusyError,
    IndexCorruptError,
    IndexMissingError,
    IndexStoreError,
    IndexWriteError,
)
from rag.index.bm25_vectors import average_length
from rag.index.dense import DenseIndex
from rag.index.line_vectors import (
    LINE_KEYS,
    LINE_VECTORS,
    LineTable,
    corpus_lines,
    embedded_text,
    line_key,
    unit_rows,
)
from rag.index.sparse import SparseIndex
from rag.index.spec import INDEX_FORMAT, MANIFEST, BuildSpec, LoadedIndex, Progress
from rag.index.store import (
    build_lock,
    check_publishable,
    file_digests,
    foreign_current,
    fsync_tree,
    load_build,
    load_index,
    manifest_of,
    points_to,
    prune,
    publish,
    published_build,
    read_chunks,
    remove_orphans,
    stale_reasons,
    verified,
    write_error,
)
from rag.ingest.chunking import ChunkingConfig, chunk_document
from rag.ingest.corpus import Document, corpus_fingerprint, load_corpus
from rag.text.files import write_text_atomic
from rag.text.korean import get_analyzer
from rag.types import Chunk


def text_key(chunk: Chunk, use_prefixes: bool) -> str:
    """Identity of a chunk's embedding: its indexed text and whether prefixes were used."""
    return hashlib.sha256(f"{int(use_prefixes)}\0{chunk.index_text}".encode("utf-8")).hexdigest()


def previous_vectors(index_dir: Path, model: str, use_prefixes: bool) -> dict[str, np.ndarray]:
    """Embeddings of the published build, by chunk or line text, when it used the same model.

    Only vectors whose files still have the checksums their build recorded are reused
    (``vectors.npy`` with ``chunks.jsonl``, which gives their keys; ``line_vectors.npy`` with
    ``line_keys.json``), so damage elsewhere in the build (``dense.faiss``, ``bm25/``) costs
    no embedding, and damaged vectors are never carried on. A vector that is not finite and
    unit-norm is left out too (damaged before it was hashed), so it is embedded again.
    """
    try:
        folder = published_build(index_dir)
        manifest = manifest_of(folder)
        if (manifest.get("format") != INDEX_FORMAT or manifest["spec"]["model"] != model
                or manifest["spec"]["use_prefixes"] != use_prefixes):
            return {}
    except (IndexStoreError, KeyError, TypeError):
        return {}
    reuse: dict[str, np.ndarray] = {}
    if verified(folder, manifest, (LINE_VECTORS, LINE_KEYS)):
        try:
            lines = LineTable.load(folder)
            if len(lines) == len(lines.vectors):
                reuse.update(lines.reusable())
        except (OSError, ValueError, TypeError):
            pass
    if verified(folder, manifest, ("chunks.jsonl", "vectors.npy")):
        try:
            chunks = read_chunks(folder)
            vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            if len(vectors) == len(chunks):
                sound = unit_rows(vectors)
                reuse.update({text_key(c, use_prefixes): np.array(vectors[i])
                              for i, c in enumerate(chunks) if sound[i]})
        except (OSError, ValueError, TypeError, KeyError):
            pass
    return reuse


def chunk_corpus(docs: list[Document], cfg: ChunkingConfig, count_tokens: Callable[[str], int] | None) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d.doc_id, d.text, cfg, count_tokens)]


def build_in_memory(docs: list[Document], spec: BuildSpec, embedder, analyzer, progress: Progress | None = None,
                    reuse: dict[str, np.ndarray] | None = None, batch_size: int = DEFAULT_EMBED_BATCH) -> LoadedIndex:
    """Chunk, analyse, embed and index ``docs`` without touching disk (``path`` is None).

    ``reuse`` maps :func:`text_key` / :func:`line_key` → vector; chunks and lines found
    there are not embedded again. The evaluation's ablations build their variants this way.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, advance, total: None)
    report("chunk", 0, len(docs))
    chunks = chunk_corpus(docs, spec.chunking, lambda t: embedder.token_count(t))
    report("chunk", len(docs), len(docs))

    report("analyse", 0, len(chunks))
    tokens = analyzer.tokenize_many([c.index_text for c in chunks])
    report("analyse", len(chunks), len(chunks))

    reuse = reuse or {}
    keys = [text_key(c, spec.use_prefixes) for c in chunks]
    vectors, fresh = _embed(embedder, [c.index_text for c in chunks], keys, reuse, batch_size,
                            lambda n, total: report("embed", n, total))

    lines = corpus_lines(chunks, {d.doc_id: d.text for d in docs})
    line_texts = [embedded_text(ln) for _, ln in lines]
    line_keys = [line_key(t, spec.use_prefixes) for t in line_texts]
    line_vectors, fresh_lines = _embed(embedder, line_texts, line_keys, reuse, batch_size,
                                       lambda n, total: report("embed lines", n, total))
    manifest = {
        "format": INDEX_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "corpus": corpus_fingerprint(docs),
        "spec": spec.describe(embedder.model_id),
        "n_chunks": len(chunks),
        "n_lines": len(lines),
        "bm25_avgdl": average_length(tokens),  # the sparse vectors of a vector engine need it
        "reembedded": fresh,
        "reembedded_lines": fresh_lines,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return LoadedIndex(
        path=None, manifest=manifest, chunks=chunks, docs={d.doc_id: d.meta() for d in docs},
        sparse=SparseIndex.build(tokens, spec.bm25), dense=DenseIndex.build(vectors, spec.dense_kind), vectors=vectors,
        lines=LineTable([(c.chunk_id, ln.start) for c, ln in lines], line_keys, line_vectors),
    )


def _embed(embedder, texts: list[str], keys: list[str], reuse: dict[str, np.ndarray], batch_size: int,
           report: Callable[[int, int], None]) -> tuple[np.ndarray, int]:
    """Passage vectors of ``texts`` (those whose key is in ``reuse`` are not embedded
    again) and how many were embedded; ``report(advance, total)`` as they are done."""
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    todo = []
    for i, k in enumerate(keys):
        if k in reuse:
            vectors[i] = reuse[k]
        else:
            todo.append(i)
    report(len(texts) - len(todo), len(texts))  # progress advances by counts
    if todo:
        vectors[todo] = embedder.encode_passages([texts[i] for i in todo], batch_size=batch_size,
                                                 progress=lambda n: report(n, len(texts)))
    return vectors, len(todo)


def build_index(settings: Settings, spec: BuildSpec = BuildSpec(), progress: Progress | None = None,
                embedder=None, analyzer=None, docs: list[Document] | None = None) -> LoadedIndex:
    """Build every artifact from the corpus and publish it atomically.

    Vectors of chunks whose indexed text is unchanged since the published build are
    reused, so changing one document re-embeds only that document's chunks. A folder that
    cannot take the build (not writable, full disk, a foreign ``current``) raises
    :class:`IndexWriteError` and leaves the published index and no partial build behind.
    """

    started = time.perf_counter()
    index_dir = settings.index_dir
    check_publishable(index_dir)  # fail before the minutes of work, not after
    with build_lock(index_dir):
        check_publishable(index_dir)
        try:
            remove_orphans(index_dir)  # under the lock every .tmp- build is a dead builder's
        except OSError:
            pass
        docs = load_corpus(settings.corpus_dir) if docs is None else docs
        if not docs:
            raise IndexStoreError(f"코퍼스 {settings.corpus_dir}의 목록에 문서가 없습니다")
        embedder = embedder or Embedder(settings.model, settings.cache_dir, use_prefixes=spec.use_prefixes)
        analyzer = analyzer or get_analyzer(mode=spec.analyzer.mode, normalize=spec.analyzer.normalize)
        built = build_in_memory(docs, spec, embedder, analyzer, progress,
                                reuse=previous_vectors(index_dir, embedder.model_id, spec.use_prefixes),
                                batch_size=settings.embed_batch)
        loaded = _write_and_publish(index_dir, built, started)
        prune(index_dir)
    return loaded


def _write_and_publish(index_dir: Path, built: LoadedIndex, started: float) -> LoadedIndex:
    """Write ``built`` to a fresh build folder, check it loads with its checksums, point
    ``current`` at it; on any failure remove what was written and raise (OS errors as
    :class:`IndexWriteError`)."""
    builds = index_dir / "builds"
    build_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp = builds / f".tmp-{build_id}"
    final = builds / build_id
    try:
        builds.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise write_error(index_dir, exc) from exc
    try:
        with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
            for c in built.chunks:
                fh.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        (tmp / "docs.json").write_text(json.dumps(built.docs, ensure_ascii=False, indent=1), encoding="utf-8")
        built.sparse.save(tmp / "bm25")
        built.dense.save(tmp / "dense.faiss")
        np.save(tmp / "vectors.npy", built.vectors)
        built.lines.save(tmp)
        manifest = {**built.manifest, "build_seconds": round(time.perf_counter() - started, 2),
                    "files": file_digests(tmp)}
        write_text_atomic(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1), fsync=True)
        fsync_tree(tmp)
        os.rename(tmp, final)
        loaded = load_build(final)  # what readers will open, checksums and all, before they can
        publish(index_dir, final)
    except BaseException as exc:
        if not points_to(index_dir, final):  # never remove the build that is published
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(index_dir, exc) from exc
        raise
    return loaded


def ensure_index(settings: Settings, spec: BuildSpec = BuildSpec(), progress: Progress | None = None,
                 notice: Callable[[str], None] | None = None, embedder=None, analyzer=None,
                 docs: list[Document] | None = None) -> LoadedIndex:
    """The published index, built first when missing, corrupt (checksums included) or stale
    (``notice`` says why). Never returns an index that failed its checks: when the folder
    cannot take a new build, raises :class:`IndexWriteError` saying both what is wrong with
    the index and why it cannot be rebuilt."""
    try:
        index = load_index(settings.index_dir)
        reasons = stale_reasons(index.manifest, settings, spec, docs)
        if not reasons:
            return index
        why = "색인이 최신이 아닙니다 (" + "; ".join(reasons[:3]) + ")"
    except IndexMissingError:
        why = "색인이 아직 없습니다"
    except IndexCorruptError as exc:
        why = str(exc).split(";")[0]
    try:
        check_publishable(settings.index_dir)
    except IndexWriteError as exc:
        raise _cannot_rebuild(settings.index_dir, why, exc) from exc
    if notice:
        notice(f"{why}: 지금 만듭니다")
    try:
        return build_index(settings, spec, progress, embedder=embedder, analyzer=analyzer, docs=docs)
    except IndexBusyError:
        with build_lock(settings.index_dir, wait=True):
            pass  # the other builder finished; use its result
        return load_index(settings.index_dir)
    except IndexWriteError as exc:
        raise _cannot_rebuild(settings.index_dir, why, exc) from exc


def _cannot_rebuild(index_dir: Path, why: str, exc: IndexWriteError) -> IndexWriteError:
    """One line: what is wrong with the published index, and why no new one can be written."""
    if foreign_current(index_dir):  # the refusal's own message says it all
        return IndexWriteError(str(exc))
    return IndexWriteError(f"{why} — 다시 만들 수 없습니다: {exc}")
