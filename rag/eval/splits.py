"""Section groups: the unit by which evaluation and training data are split.

A question belongs to the section group its answer stands in. Splitting by group, never by
question, keeps the same passage from sitting on both sides of a train/test split. A group
is the largest section node of at most ``MAX_GROUP_CHARS`` characters; a bigger node is
opened up, its own text before and between children forming a group of its own.

The sealed test side is chosen by a stable hash of the group key, so the split is the same
on every machine and does not move when other documents are added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rag.ingest.sections import Section, parse_sections

#: A section of up to this many characters stays whole (about one screen of a plan).
MAX_GROUP_CHARS = 2000
#: Share of groups (by hash) on the sealed test side.
TEST_SHARE = 0.30
#: Salt of the side hash; changing it draws a different split.
SPLIT_SALT = "sealed-2026-12"


@dataclass(frozen=True)
class Group:
    doc_id: str
    key: str  # section path joined with " > ", plus " ·본문" for a node's own text
    start: int
    end: int

    @property
    def side(self) -> str:
        return side_of(self.doc_id, self.key)


def side_of(doc_id: str, key: str) -> str:
    """'test' or 'train', from a stable hash of the group."""
    digest = hashlib.blake2b(f"{SPLIT_SALT}|{doc_id}|{key}".encode("utf-8"), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "big") / 2**64 < TEST_SHARE else "train"


def section_groups(doc_id: str, text: str, root: Section | None = None) -> list[Group]:
    """The document cut into section groups, in order; only blank text falls between them."""
    root = root or parse_sections(text)
    groups: list[Group] = []

    def visit(node: Section, path: tuple[str, ...]) -> None:
        key = " > ".join(path)
        if not node.children or node.end - node.start <= MAX_GROUP_CHARS:
            groups.append(Group(doc_id, key, node.start, node.end))
            return
        own_key = (key + " ·본문") if key else "·본문"
        cursor = node.start
        for child in node.children:
            if text[cursor:child.start].strip():
                groups.append(Group(doc_id, own_key, cursor, child.start))
            visit(child, path + (child.title,))
            cursor = max(cursor, child.end)
        if text[cursor:node.end].strip():
            groups.append(Group(doc_id, own_key, cursor, node.end))

    visit(root, ())
    return groups


def group_at(groups: list[Group], offset: int) -> Group | None:
    """The group that holds a character offset (None outside every group)."""
    for g in groups:
        if g.start <= offset < g.end:
            return g
    return None
