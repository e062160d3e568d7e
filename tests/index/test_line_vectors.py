"""Line vectors on a real (small) index: every answer line of every chunk has the e5
vector of the text an answer shows, they survive save/load, unchanged lines are reused
by the next build, and a damaged line table is never loaded."""

import json
import shutil

import numpy as np
import pytest
from conftest import make_small_corpus

from rag.errors import IndexCorruptError
from rag.index.build import build_index
from rag.index.line_vectors import LINE_KEYS, LineTable, corpus_lines, embedded_text
from rag.index.store import load_index
from rag.ingest.corpus import load_corpus


def build(settings, embedder, analyzer):
    return build_index(settings, embedder=embedder, analyzer=analyzer)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, settings, embedder, analyzer):
    """One real build of a two-document corpus for the module (tests that change it copy it)."""
    folder = tmp_path_factory.mktemp("lines")
    small = settings.with_(corpus_dir=make_small_corpus(folder / "corpus"), index_dir=folder / "index")
    return small, build(small, embedder, analyzer)


@pytest.fixture()
def build_copy(small_build, tmp_path):
    """A private copy of the module's corpus and index, free to edit."""
    small, _ = small_build
    shutil.copytree(small.corpus_dir, tmp_path / "corpus")
    shutil.copytree(small.index_dir, tmp_path / "index", symlinks=True)
    return small.with_(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")


def test_every_answer_line_has_its_own_vector(small_build, embedder):
    small_settings, built = small_build
    loaded = load_index(small_settings.index_dir, verify=True)
    docs = {d.doc_id: d.text for d in load_corpus(small_settings.corpus_dir)}
    lines = corpus_lines(loaded.chunks, docs)
    assert len(lines) > 40 and len(loaded.lines) == len(lines) == loaded.manifest["n_lines"]
    assert loaded.lines.keys == [(c.chunk_id, ln.start) for c, ln in lines]
    np.testing.assert_array_equal(np.asarray(loaded.lines.vectors), np.asarray(built.lines.vectors))
    norms = np.linalg.norm(np.asarray(loaded.lines.vectors), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)
    # a line's vector is the passage embedding of what the answer shows for it
    sample = [0, len(lines) // 2, len(lines) - 1]
    fresh = embedder.encode_passages([embedded_text(lines[i][1]) for i in sample])
    got = np.asarray(loaded.lines.vectors)[sample]
    assert np.all(np.sum(fresh * got, axis=1) > 0.999)


def test_cosines_rank_a_line_above_unrelated_ones(small_build, embedder):
    small_settings, index = small_build
    table = index.lines
    target = next(k for k, (_, ln) in zip(table.keys, corpus_lines(index.chunks, {
        d.doc_id: d.text for d in load_corpus(small_settings.corpus_dir)})) if "4,000억원 규모의 뿌리전용" in ln.display)
    q = embedder.encode_queries(["뿌리산업 전용 R&D 규모는?"])[0]
    cos = table.cosines(table.keys, q)
    assert table.row[target] in np.argsort(-cos)[:2].tolist()
    # an unknown line or a search without a query vector (sparse mode) scores 0
    assert table.cosines([("no-such-chunk", 0)], q).tolist() == [0.0]
    assert table.cosines(table.keys[:3], None).tolist() == [0.0, 0.0, 0.0]


def test_unchanged_lines_are_reused_by_the_next_build(build_copy, embedder, analyzer):
    small_settings = build_copy
    first = load_index(small_settings.index_dir)
    again = build(small_settings, embedder, analyzer)
    assert again.manifest["reembedded_lines"] == 0 and again.manifest["reembedded"] == 0
    path = next(small_settings.corpus_dir.glob("003_*.txt"))
    path.write_text(path.read_text(encoding="utf-8").replace("4,000억원 규모의", "5,000억원 규모의"), encoding="utf-8")
    third = build(small_settings, embedder, analyzer)
    assert 1 <= third.manifest["reembedded_lines"] < len(third.lines) // 2
    kept = [(k, i) for i, k in enumerate(first.lines.keys) if k[0].startswith("002")]
    assert kept
    np.testing.assert_array_equal(np.asarray(third.lines.vectors)[[third.lines.row[k] for k, _ in kept]],
                                  np.asarray(first.lines.vectors)[[i for _, i in kept]])


def test_a_damaged_line_table_is_never_loaded(build_copy):
    small_settings = build_copy
    folder = load_index(small_settings.index_dir).path
    keys = json.loads((folder / LINE_KEYS).read_text(encoding="utf-8"))
    (folder / LINE_KEYS).write_text(json.dumps(keys[:-1], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(IndexCorruptError):
        load_index(small_settings.index_dir)


def test_line_table_round_trip(tmp_path):
    vectors = np.eye(3, 4, dtype=np.float32)
    table = LineTable([("a-1", 0), ("a-1", 10), ("b-2", 5)], ["x", "y", "z"], vectors)
    table.save(tmp_path)
    back = LineTable.load(tmp_path)
    assert back.keys == table.keys and back.text_keys == table.text_keys and back.row[("b-2", 5)] == 2
    np.testing.assert_array_equal(np.asarray(back.vectors), vectors)
    assert set(back.reusable()) == {"x", "y", "z"}
