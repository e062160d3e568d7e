"""The Milvus backend: the published build copied into a Milvus collection, searched there.

Milvus (a server or cluster at ``http://host:19530``, or milvus-lite, the same engine in a
local file) holds one row per chunk: its id, document, section path, offsets, text, a
content key, and two vectors, the e5 passage vector (FLAT, inner product) and our BM25
weights as a sparse vector (:mod:`rag.index.bm25_vectors`: the server's sparse inner
product equals the bm25s score). Korean analysis stays ours: Milvus never sees text to
analyse, only Kiwi morphemes turned into stable dimension ids, kept append-only in
``<name>_vocab``. ``<name>_meta`` records which build the collection was last brought in
line with, written last, so a writer killed half-way is finished by the next one.

Fusion is not left to the server: Milvus's WeightedRanker normalises scores with arctan,
not our min-max, so the retriever asks for the sparse and the dense top lists and fuses
them itself (:mod:`rag.search.fusion`), ranking exactly as the files backend does.

The published build stays the source of truth and is still needed beside Milvus: the
answer step reads its chunks and line vectors, and the question's IDF comes from its
document frequencies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.config import (
    MILVUS_PASSWORD_ENV,
    MILVUS_TOKEN_ENV,
    MILVUS_USER_ENV,
    Settings,
    env_text,
)
from rag.errors import SearchBackendError
from rag.index.bm25_vectors import (
    AVGDL_REWEIGHT_DRIFT,
    average_length,
    question_weights,
    stored_chunk_weights,
)
from rag.index.spec import LoadedIndex
from rag.index.store import build_lock

#: Rows sent per upsert: about 2 MB of vectors and text per call at e5-small's 384
#: dimensions, well under Milvus's 64 MB gRPC message limit.
UPSERT_BATCH = 500
#: Rows read per page when listing what the collection holds.
QUERY_BATCH = 2000
#: Seconds to wait for a server before saying it cannot be reached.
CONNECT_TIMEOUT = 10.0
#: Bytes of a VARCHAR field: Milvus's largest. Longer text is cut on a character boundary
#: (the text shown to users always comes from the build, never from Milvus).
MAX_VARCHAR = 65535
#: Milvus requires a vector field in every collection; the vocabulary and meta
#: collections carry this dummy one.
_DUMMY = [0.0, 0.0]

SPARSE_PARAMS = {"metric_type": "IP", "params": {"drop_ratio_search": 0.0}}  # exact: drop nothing
DENSE_PARAMS = {"metric_type": "IP"}


def _pymilvus():
    """The pymilvus module, imported quietly (milvus-lite warns about pkg_resources)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pymilvus  # lazy: an optional extra, heavy to import
        # pymilvus gives its loggers stderr handlers of their own on import; its errors
        # become our one line instead
        for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        return pymilvus
    except ImportError as exc:
        raise SearchBackendError(f"RAG_BACKEND=milvus에는 pymilvus와 milvus-lite가 필요합니다: "
                                 f"pip install 'rag-ko[milvus]' ({exc})") from None


def _cut(text: str, limit: int = MAX_VARCHAR) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def shown_uri(uri: str) -> str:
    """The URI without credentials, for messages and status."""
    if "@" in uri and "://" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return uri


def milvus_uri(settings: Settings) -> str:
    """``RAG_MILVUS_URI``, or milvus-lite in the index folder."""
    if settings.milvus_uri:
        return settings.milvus_uri if is_server_uri(settings.milvus_uri) else str(Path(settings.milvus_uri).expanduser().resolve())
    return str(settings.index_dir / "milvus.db")


def build_record(index: LoadedIndex) -> dict:
    """What ``<name>_meta`` says once the collection holds exactly this build."""
    m = index.manifest
    build = hashlib.sha256(json.dumps({"corpus": m["corpus"], "spec": m["spec"]}, sort_keys=True,
                                      ensure_ascii=False).encode("utf-8")).hexdigest()[:24]
    return {"build": build, "rows": len(index.chunks), "dim": int(index.vectors.shape[1])}


def row_keys(index: LoadedIndex) -> list[str]:
    """Each chunk's content key: its fields and everything in the spec that shapes its
    vectors; a row whose key differs is written again."""
    spec = json.dumps(index.manifest["spec"], sort_keys=True, ensure_ascii=False)
    return [hashlib.sha256(f"{spec}\0{json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False)}".encode("utf-8"))
            .hexdigest()[:32] for c in index.chunks]


class MilvusBackend:
    """Sparse and dense search on a Milvus collection; rows map back to the build's chunks."""

    name = "milvus"

    def __init__(self, client, uri: str, collection: str, index: LoadedIndex):
        self._client = client
        self.uri = uri
        self.collection = collection
        self._index = index
        self._rows = {c.chunk_id: i for i, c in enumerate(index.chunks)}
        self._vocab: dict[str, int] = {}

    # ------------------------------------------------------------------ connection

    @classmethod
    def connect(cls, settings: Settings, index: LoadedIndex) -> "MilvusBackend":
        """Open the Milvus at ``settings``' URI: one line saying why when it cannot."""
        pm = _pymilvus()
        uri = milvus_uri(settings)
        kwargs: dict = {"uri": uri, "timeout": CONNECT_TIMEOUT}
        token = env_text(MILVUS_TOKEN_ENV)
        if token:
            kwargs["token"] = token
        elif env_text(MILVUS_USER_ENV):
            kwargs["user"] = env_text(MILVUS_USER_ENV)
            kwargs["password"] = env_text(MILVUS_PASSWORD_ENV) or ""
        if not is_server_uri(uri):
            try:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SearchBackendError(f"milvus-lite 파일의 폴더를 만들 수 없습니다: {uri} ({exc.strerror})") from None
        quiet = logging.NullHandler()  # milvus-lite logs its failures on the root logger
        logging.getLogger().addHandler(quiet)
        try:
            with warnings.catch_warnings():  # milvus-lite warns about pkg_resources on import
                warnings.simplefilter("ignore")
                client = pm.MilvusClient(**kwargs)
        except Exception as exc:  # pymilvus raises its own and gRPC's exceptions
            raise SearchBackendError(_connect_message(uri, exc)) from None
        finally:
            logging.getLogger().removeHandler(quiet)
        backend = cls(client, uri, settings.milvus_collection, index)
        try:
            backend._ensure_side_collections()
            backend._vocab = backend._read_vocab()
        except SearchBackendError:
            backend.close()
            raise
        return backend

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a broken connection has nothing left to report
            pass

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        """One Milvus call; its failure becomes a one-line :class:`SearchBackendError`."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise SearchBackendError(f"Milvus {what}에 실패했습니다 ({shown_uri(self.uri)}, "
                                     f"{self.collection}): {_reason(exc)}") from None

    # ------------------------------------------------------------------ collections

    @property
    def _vocab_name(self) -> str:
        return f"{self.collection}_vocab"

    @property
    def _meta_name(self) -> str:
        return f"{self.collection}_meta"

    def _ensure_side_collections(self) -> None:
        pm = _pymilvus()
        DataType = pm.DataType
        for name, key, value in ((self._vocab_name, "token", ("tid", DataType.INT64)),
                                 (self._meta_name, "key", ("value", DataType.VARCHAR))):
            if not self._call("컬렉션 확인", self._client.has_collection, name):
                schema = self._client.create_schema(auto_id=False)
                schema.add_field(key, DataType.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
                extra = {"max_length": MAX_VARCHAR} if value[1] == DataType.VARCHAR else {}
                schema.add_field(value[0], value[1], **extra)
                schema.add_field("v", DataType.FLOAT_VECTOR, dim=len(_DUMMY))
                self._call("컬렉션 만들기", self._client.create_collection, name, schema=schema)
            self._ready(name, {"v": ("FLAT", "L2")})

    def _ensure_chunk_collection(self, dim: int) -> None:
        """The chunk collection with ``dim``-wide dense vectors; one of another width (the
        model changed) is dropped, since every row must be embedded again anyway."""
        pm = _pymilvus()
        DataType = pm.DataType
        if self._call("컬렉션 확인", self._client.has_collection, self.collection):
            fields = self._call("컬렉션 읽기", self._client.describe_collection, self.collection)["fields"]
            dims = [f.get("params", {}).get("dim") for f in fields if f["name"] == "dense"]
            if not dims or int(dims[0]) != dim:
                self._call("컬렉션 지우기", self._client.drop_collection, self.collection)
        if not self._call("컬렉션 확인", self._client.has_collection, self.collection):
            schema = self._client.create_schema(auto_id=False)
            schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=1024)
            schema.add_field("doc_id", DataType.VARCHAR, max_length=1024)
            schema.add_field("section", DataType.VARCHAR, max_length=MAX_VARCHAR)
            schema.add_field("start", DataType.INT64)
            schema.add_field("end", DataType.INT64)
            schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
            schema.add_field("key", DataType.VARCHAR, max_length=64)
            schema.add_field("avgdl", DataType.DOUBLE)
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            self._call("컬렉션 만들기", self._client.create_collection, self.collection, schema=schema)
        self._ready(self.collection, {"dense": ("FLAT", "IP"), "sparse": ("SPARSE_INVERTED_INDEX", "IP")})

    def _ready(self, name: str, indexes: dict[str, tuple[str, str]]) -> None:
        """Make the missing vector indexes of ``name`` and load it. Created apart from the
        collection, so a writer killed between the two steps is finished by the next one."""
        have = set(self._call("색인 확인", self._client.list_indexes, name))
        missing = {f: spec for f, spec in indexes.items() if f not in have}
        if missing:
            params = self._client.prepare_index_params()
            for field, (kind, metric) in missing.items():
                params.add_index(field, index_name=field, index_type=kind, metric_type=metric)
            self._call("색인 만들기", self._client.create_index, name, params)
        self._call("불러오기", self._client.load_collection, name)

    def _pages(self, name: str, fields: list[str]) -> Iterable[dict]:
        """Every row of a collection (``fields`` only), page by page."""
        pk = {self.collection: "chunk_id", self._vocab_name: "token", self._meta_name: "key"}[name]
        it = self._call("읽기", self._client.query_iterator, name, batch_size=QUERY_BATCH,
                        filter=f'{pk} != ""', output_fields=fields)
        try:
            while True:
                page = self._call("읽기", it.next)
                if not page:
                    return
                yield from page
        finally:
            it.close()

    def _read_vocab(self) -> dict[str, int]:
        return {r["token"]: int(r["tid"]) for r in self._pages(self._vocab_name, ["token", "tid"])}

    def _meta(self) -> dict | None:
        got = self._call("읽기", self._client.get, self._meta_name, ids=["build"], output_fields=["value"])
        return json.loads(got[0]["value"]) if got else None

    def _count(self) -> int:
        if not self._call("컬렉션 확인", self._client.has_collection, self.collection):
            return -1
        got = self._call("세기", self._client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(got[0]["count(*)"])

    # ------------------------------------------------------------------ keeping in line with the build

    def in_sync(self, index: LoadedIndex, rows: int | None = None) -> bool:
        """Does the collection hold exactly this build (its record, and as many rows;
        ``rows``: its row count when the caller has it)?"""
        if self._meta() != build_record(index):
            return False
        return (self._count() if rows is None else rows) == len(index.chunks)

    def sync(self, index: LoadedIndex, analyzer, index_dir: Path,
             progress: Callable[[str, int, int], None] | None = None,
             notice: Callable[[str], None] | None = None) -> dict:
        """Bring the collection in line with ``index``: upsert new and changed chunks (and
        every chunk whose BM25 weights were made with an average length more than
        :data:`AVGDL_REWEIGHT_DRIFT` away), delete chunks the build no longer has, flush,
        then record the build. Under the index's build lock: one writer at a time.
        Returns what it did (``written``, ``deleted``)."""
        done = {"written": 0, "deleted": 0}
        if self.in_sync(index):
            return done
        with build_lock(index_dir, wait=True):
            if self.in_sync(index):  # another process did it while we waited
                return done
            if notice:
                notice(f"Milvus 컬렉션 {self.collection}을(를) 색인에 맞춥니다 ({shown_uri(self.uri)})")
            record = build_record(index)
            self._ensure_chunk_collection(record["dim"])
            avgdl = float(index.manifest.get("bm25_avgdl") or 0.0)
            if avgdl <= 0:  # a build made before the average was recorded
                avgdl = average_length(analyzer.tokenize_many([c.index_text for c in index.chunks]))
            stored = {r["chunk_id"]: (r["key"], float(r["avgdl"]))
                      for r in self._pages(self.collection, ["chunk_id", "key", "avgdl"])}
            keys = row_keys(index)
            todo = [i for i, c in enumerate(index.chunks)
                    if stored.get(c.chunk_id, ("", 0.0))[0] != keys[i]
                    or abs(stored[c.chunk_id][1] - avgdl) > AVGDL_REWEIGHT_DRIFT * avgdl]
            gone = sorted(set(stored) - set(self._rows))
            self._write(index, todo, keys, avgdl, progress)
            for start in range(0, len(gone), UPSERT_BATCH):
                self._call("지우기", self._client.delete, self.collection, ids=gone[start:start + UPSERT_BATCH])
            self._call("flush", self._client.flush, self.collection)
            self._call("기록", self._client.upsert, self._meta_name,
                       [{"key": "build", "value": json.dumps(record), "v": _DUMMY}])
            self._call("flush", self._client.flush, self._meta_name)
            done = {"written": len(todo), "deleted": len(gone)}
        return done

    def _write(self, index: LoadedIndex, todo: list[int], keys: list[str], avgdl: float,
               progress: Callable[[str, int, int], None] | None) -> None:
        report = progress or (lambda stage, advance, total: None)
        report("milvus", 0, len(todo))
        for start in range(0, len(todo), UPSERT_BATCH):
            part = todo[start:start + UPSERT_BATCH]
            chunks = [index.chunks[i] for i in part]
            weights = stored_chunk_weights(index.sparse, part)
            self._add_tokens({t for w in weights for t in w})
            rows = [{
                "chunk_id": c.chunk_id, "doc_id": c.doc_id, "section": _cut(c.section_path), "start": c.start,
                "end": c.end, "text": _cut(c.text), "key": keys[i], "avgdl": avgdl,
                "dense": np.asarray(index.vectors[i], dtype=np.float32).tolist(),
                "sparse": {self._vocab[t]: float(v) for t, v in w.items() if t in self._vocab},
            } for i, c, w in zip(part, chunks, weights)]
            self._call("쓰기", self._client.upsert, self.collection, rows)
            report("milvus", len(part), len(todo))

    def _add_tokens(self, tokens: set[str]) -> None:
        """Give new tokens the next free dimension ids (ids are never reused or moved, so
        rows written earlier keep their meaning)."""
        new = sorted(t for t in tokens if t not in self._vocab and len(t.encode("utf-8")) <= MAX_VARCHAR)
        if not new:
            return
        first = max(self._vocab.values(), default=-1) + 1
        rows = [{"token": t, "tid": first + n, "v": _DUMMY} for n, t in enumerate(new)]
        for start in range(0, len(rows), UPSERT_BATCH * 4):
            self._call("어휘 쓰기", self._client.insert, self._vocab_name, rows[start:start + UPSERT_BATCH * 4])
        self._call("flush", self._client.flush, self._vocab_name)
        self._vocab.update({r["token"]: r["tid"] for r in rows})

    # ------------------------------------------------------------------ search

    def sparse_search(self, tokens: list[str], depth: int) -> dict[int, float]:
        sparse = self._index.sparse
        weights = question_weights(tokens, sparse.doc_freq, sparse.size, sparse.params.method)
        query = {self._vocab[t]: w for t, w in weights.items() if t in self._vocab and w > 0}
        if not query:
            return {}
        hits = self._call("검색", self._client.search, self.collection, data=[query], anns_field="sparse",
                          limit=depth, search_params=SPARSE_PARAMS)[0]
        return {self._rows[h["id"]]: float(h["distance"]) for h in hits
                if h["id"] in self._rows and h["distance"] > 0}

    def dense_search(self, vector: np.ndarray, depth: int) -> dict[int, float]:
        hits = self._call("검색", self._client.search, self.collection,
                          data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="dense",
                          limit=depth, search_params=DENSE_PARAMS)[0]
        return {self._rows[h["id"]]: float(h["distance"]) for h in hits if h["id"] in self._rows}

    def stats(self) -> dict:
        rows = self._count()
        return {"backend": self.name, "uri": shown_uri(self.uri), "collection": self.collection,
                "rows": rows, "in_sync": self.in_sync(self._index, rows)}


def _reason(exc: Exception) -> str:
    """pymilvus's own message of an error, else the first line of its text."""
    return getattr(exc, "message", None) or str(exc).splitlines()[0]


def _connect_message(uri: str, exc: Exception) -> str:
    reason = _reason(exc)
    if not is_server_uri(uri):
        if "Open local milvus failed" in reason:
            return (f"milvus-lite 파일을 열 수 없습니다: {uri} — 다른 프로세스가 열고 있을 수 있습니다 "
                    f"(milvus-lite는 한 번에 한 프로세스만 엽니다; 여러 프로세스가 함께 쓰려면 Milvus 서버를 "
                    f"RAG_MILVUS_URI=http://호스트:19530 으로 지정하세요)")
        return f"milvus-lite 파일을 열 수 없습니다: {uri} ({reason})"
    return f"Milvus 서버에 연결할 수 없습니다: {shown_uri(uri)} ({reason})"
