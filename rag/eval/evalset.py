"""The curated evaluation set (``evaluation/qa.jsonl``): loading, checking, and the
answer-matching rule used to decide whether a retrieved passage is relevant.

One JSON object per line with the fields ``id, question, answers, doc, section, type,
note, tags`` (see ``evaluation/qa.schema.json``). Answer strings are short spans copied
verbatim from the normalised document text; a passage is relevant when it contains an
answer string, compared with all whitespace removed so the judgement survives re-chunking.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from rag.config import PROJECT_ROOT
from rag.errors import InputError
from rag.ingest.corpus import load_corpus as load_documents
from rag.ingest.corpus import normalise_text
from rag.text.outside import check_json_value, decode_utf8

DEFAULT_QA_PATH = PROJECT_ROOT / "evaluation" / "qa.jsonl"
DEFAULT_SCHEMA_PATH = PROJECT_ROOT / "evaluation" / "qa.schema.json"
DEFAULT_CORPUS_DIR = PROJECT_ROOT / "corpus"

#: Question types; ``multi_doc`` and ``unanswerable`` have their own shape rules.
SINGLE_DOC_TYPES: frozenset[str] = frozenset(
    {"number", "table", "definition", "list", "entity", "date", "paraphrase"}
)
TYPES: frozenset[str] = SINGLE_DOC_TYPES | {"multi_doc", "unanswerable"}

#: Field name -> human-readable description of the accepted JSON type(s).
FIELDS: dict[str, str] = {
    "id": "string",
    "question": "string",
    "answers": "list of strings",
    "doc": "string, list of strings or null",
    "section": "string, list of strings or null",
    "type": "string",
    "note": "string",
    "tags": "list of strings",
}

#: An answer string may occur at most this many times in the whole corpus.
MAX_ANSWER_OCCURRENCES = 3
#: Answers are short spans; anything longer is almost certainly a copy-paste slip.
MAX_ANSWER_CHARS = 50
MAX_ANSWERS = 3
EVERYDAY_TAG = "everyday"

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class QAItem:
    """One evaluation question; ``doc`` and ``section`` are tuples aligned by position
    (empty for unanswerable items). ``raw`` keeps the record as read, for validation."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc: tuple[str, ...]
    section: tuple[str, ...]
    type: str
    note: str = ""
    tags: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    line: int = field(default=0, compare=False)

    @property
    def answerable(self) -> bool:
        return self.type != "unanswerable"

    @property
    def everyday(self) -> bool:
        return EVERYDAY_TAG in self.tags

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], line: int = 0) -> "QAItem":
        """Build an item leniently (wrong or missing fields become empty values);
        :func:`validate` reports what was wrong using ``raw``."""
        return cls(
            id=d.get("id") if isinstance(d.get("id"), str) else "",
            question=d.get("question") if isinstance(d.get("question"), str) else "",
            answers=_as_tuple(d.get("answers")),
            doc=_as_tuple(d.get("doc")),
            section=_as_tuple(d.get("section")),
            type=d.get("type") if isinstance(d.get("type"), str) else "",
            note=d.get("note") if isinstance(d.get("note"), str) else "",
            tags=_as_tuple(d.get("tags")),
            raw=dict(d),
            line=line,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: ``doc``/``section`` back to str, list or null by ``type``."""
        if self.type == "unanswerable":
            doc: Any = None
            section: Any = None
        elif self.type == "multi_doc":
            doc, section = list(self.doc), list(self.section)
        else:
            doc = self.doc[0] if self.doc else None
            section = self.section[0] if self.section else None
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "doc": doc,
            "section": section,
            "type": self.type,
            "note": self.note,
            "tags": list(self.tags),
        }


def _as_tuple(value: Any) -> tuple[str, ...]:
    """None -> (), a string -> (s,), a list -> tuple of its string members."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def squash(text: str) -> str:
    """NFC text with all whitespace removed (the form answers are matched in)."""
    return _WS.sub("", unicodedata.normalize("NFC", text))


def contains_answer(passage_text: str, answer: str) -> bool:
    """True when ``answer`` occurs in ``passage_text`` ignoring all whitespace on both
    sides (so an answer cut across a line break or re-spaced by chunking still matches).
    An empty answer never matches."""
    needle = squash(answer)
    return bool(needle) and needle in squash(passage_text)


def count_occurrences(haystack: str, needle: str) -> int:
    """Overlapping occurrences of ``needle`` in ``haystack`` (both already squashed)."""
    if not needle:
        return 0
    n, i = 0, haystack.find(needle)
    while i != -1:
        n += 1
        i = haystack.find(needle, i + 1)
    return n


def load_corpus(corpus_dir: str | Path = DEFAULT_CORPUS_DIR) -> dict[str, str]:
    """Document id -> normalised text, as :func:`rag.ingest.corpus.load_corpus` reads them."""
    return {d.doc_id: d.text for d in load_documents(Path(corpus_dir))}


def load_qa(path: str | Path = DEFAULT_QA_PATH) -> list[QAItem]:
    """Read a JSONL evaluation file (strict UTF-8, a leading BOM allowed). Blank lines are
    skipped; a file that is not UTF-8 raises :class:`InputError` naming the file, byte and
    line, and a line that is not a JSON object (or holds what cannot be written back as
    JSON: ``NaN``, ``1e999``, a ``\\ud800`` escape) raises ``ValueError`` (InputError)
    naming the line. Field problems are left to :func:`validate`."""
    items: list[QAItem] = []
    text = decode_utf8(Path(path).read_bytes(), f"질문 파일 {path}")
    for lineno, line in enumerate(re.split(r"\r\n?|\n", text), 1):  # the line ends open() reads
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: 올바른 JSON이 아닙니다 ({e.msg}, {e.colno}번째 글자)") from None
        except (ValueError, RecursionError):  # an integer of over 4,300 digits, nesting too deep
            raise InputError(f"{path}:{lineno}: 올바른 JSON이 아닙니다 (수가 너무 길거나 너무 깊게 중첩됨)") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{lineno}: JSON 객체여야 합니다")
        check_json_value(record, f"{path}:{lineno}의 값")
        items.append(QAItem.from_dict(record, line=lineno))
    return items


def load_schema(path: str | Path = DEFAULT_SCHEMA_PATH) -> dict[str, Any]:
    """The JSON Schema for one item."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- checks


def _field_problems(label: str, raw: Mapping[str, Any]) -> list[str]:
    problems = [f"{label}: missing field {k!r}" for k in FIELDS if k not in raw]
    problems += [f"{label}: unexpected field {k!r}" for k in raw if k not in FIELDS]

    def bad(key: str) -> None:
        problems.append(f"{label}: field {key!r} must be {FIELDS[key]}, got {raw[key]!r}")

    for key in ("id", "question", "type", "note"):
        if key in raw and not isinstance(raw[key], str):
            bad(key)
    for key in ("answers", "tags"):
        if key in raw and not (isinstance(raw[key], list) and all(isinstance(v, str) for v in raw[key])):
            bad(key)
    for key in ("doc", "section"):
        v = raw.get(key)
        if key in raw and not (
            v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        ):
            bad(key)
    for key in ("id", "question"):
        if isinstance(raw.get(key), str) and not raw[key].strip():
            problems.append(f"{label}: field {key!r} is empty")
    return problems


def _shape_problems(label: str, item: QAItem, corpus_ids: set[str]) -> list[str]:
    raw, problems = item.raw, []
    if item.type not in TYPES:
        return [f"{label}: unknown type {item.type!r}"]
    if item.type == "unanswerable":
        if item.answers:
            problems.append(f"{label}: unanswerable item has answers {list(item.answers)!r}")
        if raw.get("doc") is not None or raw.get("section") is not None:
            problems.append(f"{label}: unanswerable item must have doc and section null")
        if item.everyday:
            problems.append(f"{label}: unanswerable items may not be tagged {EVERYDAY_TAG!r}")
        return problems
    if not item.answers:
        problems.append(f"{label}: answerable item has no answers")
    if len(item.answers) > MAX_ANSWERS:
        problems.append(f"{label}: more than {MAX_ANSWERS} answers")
    if len(set(item.answers)) != len(item.answers):
        problems.append(f"{label}: repeated answer string")
    if item.type == "multi_doc":
        if not (isinstance(raw.get("doc"), list) and len(item.doc) == 2 and len(set(item.doc)) == 2):
            problems.append(f"{label}: multi_doc item needs doc as a list of two different ids")
        if not (isinstance(raw.get("section"), list) and len(item.section) == len(item.doc)):
            problems.append(f"{label}: multi_doc item needs section as a list aligned with doc")
        if len(item.answers) < 2:
            problems.append(f"{label}: multi_doc item needs an answer from each document")
    else:
        if not isinstance(raw.get("doc"), str):
            problems.append(f"{label}: {item.type} item needs doc as one id string")
        if not isinstance(raw.get("section"), str):
            problems.append(f"{label}: {item.type} item needs section as a string")
    for d in item.doc:
        if d not in corpus_ids:
            problems.append(f"{label}: unknown document id {d!r}")
    return problems


def _answer_problems(label: str, item: QAItem, corpus: Mapping[str, str],
                     squashed: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    docs = [d for d in item.doc if d in corpus]
    covered: set[str] = set()
    for ans in item.answers:
        if not ans.strip():
            problems.append(f"{label}: empty answer string")
            continue
        if "\n" in ans or "\r" in ans:
            problems.append(f"{label}: answer {ans!r} spans a line break")
        if len(ans) > MAX_ANSWER_CHARS:
            problems.append(f"{label}: answer {ans!r} is longer than {MAX_ANSWER_CHARS} characters")
        nfc = unicodedata.normalize("NFC", ans)
        found_in = [d for d in docs if nfc in corpus[d]]
        covered.update(found_in)
        if docs and not found_in:
            where = " or ".join(docs)
            problems.append(f"{label}: answer {ans!r} does not occur verbatim in document {where}")
        total = sum(count_occurrences(t, squash(ans)) for t in squashed.values())
        if total > MAX_ANSWER_OCCURRENCES:
            problems.append(
                f"{label}: answer {ans!r} occurs {total} times in the corpus "
                f"(max {MAX_ANSWER_OCCURRENCES}); choose a more specific string"
            )
    if item.type == "multi_doc":
        for d in docs:
            if d not in covered:
                problems.append(f"{label}: no answer string comes from listed document {d!r}")
    return problems


def validate(items: Iterable[QAItem | Mapping[str, Any]], corpus_texts: Mapping[str, str]) -> list[str]:
    """Human-readable problems with ``items`` against ``corpus_texts`` (doc id ->
    normalised text); an empty list means the set is valid. Plain dicts are accepted
    and read as :meth:`QAItem.from_dict` would."""
    corpus = {k: normalise_text(v) for k, v in corpus_texts.items()}
    squashed = {k: squash(v) for k, v in corpus.items()}
    problems: list[str] = []
    ids: Counter[str] = Counter()
    for n, obj in enumerate(items, 1):
        item = obj if isinstance(obj, QAItem) else QAItem.from_dict(obj)
        raw = item.raw if item.raw else item.to_dict()
        item = QAItem.from_dict(raw, line=item.line)
        label = f"item {item.id or '#' + str(n)}" + (f" (line {item.line})" if item.line else "")
        field_problems = _field_problems(label, raw)
        problems += field_problems
        if item.id:
            ids[item.id] += 1
        if any("missing field 'type'" in p or "field 'type' must" in p for p in field_problems):
            continue
        problems += _shape_problems(label, item, set(corpus))
        problems += _answer_problems(label, item, corpus, squashed)
    problems += [f"duplicate id {i!r} ({c} items)" for i, c in ids.items() if c > 1]
    return problems


# ------------------------------------------------------------------- JSON Schema


def schema_problems(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Problems of ``instance`` against ``schema`` (JSON Schema 2020-12, via jsonschema)."""
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(instance)]
