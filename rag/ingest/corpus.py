"""Load the corpus: the manifest of documents and their normalised text.

The normalised text is what every offset in the system points into: Unicode NFC, line
ends as ``\\n``, no byte-order mark. Nothing else is changed, so a cited span is the
document's own wording.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rag.errors import CorpusError

MANIFEST_NAME = "manifest.json"
REQUIRED_FIELDS = ("id", "file", "title", "publisher", "date", "kind")


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    publisher: str
    date: str
    kind: str
    source: str
    path: Path
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def meta(self) -> dict[str, str]:
        """The manifest entry as served to users (no text)."""
        return {
            "doc_id": self.doc_id, "title": self.title, "publisher": self.publisher,
            "date": self.date, "kind": self.kind, "source": self.source, "file": self.path.name,
            "chars": str(len(self.text)),
        }


def normalise_text(raw: str) -> str:
    """NFC, ``\\n`` line ends, no BOM: the canonical text that offsets refer to."""
    text = raw.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def read_text(path: Path) -> str:
    """Read a UTF-8 file strictly: a wrong encoding is an error, never mojibake."""
    try:
        return normalise_text(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path.name} 파일이 올바른 UTF-8이 아닙니다 (바이트 {exc.start}); 먼저 UTF-8로 변환하세요") from exc


def load_manifest(corpus_dir: Path) -> list[dict[str, str]]:
    path = corpus_dir / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"{corpus_dir}에 {MANIFEST_NAME} 파일이 없습니다")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path} 파일이 올바른 UTF-8 JSON이 아닙니다: {exc}") from exc
    if not isinstance(entries, list):
        raise CorpusError(f"{path} 파일은 문서 목록(JSON 배열)이어야 합니다")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        missing = [f for f in REQUIRED_FIELDS if not isinstance(entry, dict) or not entry.get(f)]
        if missing:
            raise CorpusError(f"{path}의 {i}번째 항목에 {', '.join(missing)} 값이 없습니다")
        if entry["id"] in seen:
            raise CorpusError(f"{path}: 문서 id {entry['id']!r}가 중복됩니다")
        seen.add(entry["id"])
    return entries


def document_path(corpus_dir: Path, name: object) -> Path:
    """Where a manifest's ``file`` lives, resolved (symbolic links followed) and required to
    stay inside the corpus folder: a manifest must not serve ``../secret.txt``, an absolute
    path or a link that leads out of the folder."""
    if not isinstance(name, str):
        raise CorpusError(f"매니페스트의 file 값은 파일 이름이어야 합니다: {name!r}")
    root = Path(corpus_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise CorpusError(f"매니페스트의 파일 {name!r}이(가) 코퍼스 폴더 {root} 밖을 가리킵니다; "
                          "문서는 코퍼스 폴더 안에 두세요")
    return path


def load_corpus(corpus_dir: Path) -> list[Document]:
    """All documents of the manifest, in manifest order; every listed file must exist."""
    docs = []
    for entry in load_manifest(corpus_dir):
        path = document_path(corpus_dir, entry["file"])
        if not path.is_file():
            raise CorpusError(f"매니페스트에 있는 {entry['file']} 파일이 {corpus_dir}에 없습니다")
        docs.append(Document(
            doc_id=entry["id"], title=entry["title"], publisher=entry["publisher"],
            date=entry["date"], kind=entry["kind"], source=entry.get("source", ""),
            path=path, text=read_text(path),
        ))
    return docs


def corpus_fingerprint(docs: list[Document]) -> dict[str, str]:
    """doc id → sha256 of its normalised text and metadata: what makes an index stale."""
    out = {}
    for d in docs:
        meta = json.dumps(d.meta(), ensure_ascii=False, sort_keys=True)
        out[d.doc_id] = hashlib.sha256((d.sha256 + meta).encode("utf-8")).hexdigest()
    return out
