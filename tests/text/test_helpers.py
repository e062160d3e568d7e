"""The shared text helpers: string forms, word lists from rag/data, atomic writes and
marked report sections."""

from __future__ import annotations

import os

import pytest

from rag.text.files import replace_marked_section, write_json_atomic, write_text_atomic
from rag.text.strings import HTML_TAG_RE, answer_key, match_key, squash
from rag.text.wordlists import WORDS_DIR, load_words


def test_string_forms():
    assert squash(" 4,000 억원\n규모 ") == "4,000억원규모"
    assert match_key("R&D 투자 ") == "r&d투자"
    decomposed = "\u1112\u1161\u11ab"  # 한 as jamo
    assert answer_key(decomposed + " 국") == "한국"
    assert HTML_TAG_RE.sub("", "<b>굵게</b><br/>끝") == "굵게끝"


def test_word_lists_are_data_files():
    names = {p.stem for p in WORDS_DIR.glob("*.txt")}
    assert {"question_fillers", "places", "question_words", "modal_nouns", "followup_stop_words",
            "followup_particles"} <= names
    for name in names:
        words = load_words(name)
        assert words and len(words) == len(set(words)) and not any(w.startswith("#") for w in words)
    assert "서울" in load_words("places") and "얼마" in load_words("question_fillers")


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic(path, {"답": "광주", "n": 1})
    assert path.read_text(encoding="utf-8") == '{\n "답": "광주",\n "n": 1\n}\n'
    write_text_atomic(path, "새 내용", fsync=True)
    assert path.read_text(encoding="utf-8") == "새 내용"
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_text_atomic(path, None)  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_marked_section_replaced_or_appended():
    start, end = "<!-- a:start -->", "<!-- a:end -->"
    text = f"# T\n\n{start}\nold\n{end}\n\ntail\n"
    assert replace_marked_section(text, start, end, f"{start}\nnew\n{end}\n") == f"# T\n\n{start}\nnew\n{end}\n\ntail\n"
    assert replace_marked_section("# T\n", start, end, f"{start}\nx\n{end}") == f"# T\n\n{start}\nx\n{end}\n"
