"""`rag eval --answers`: answer quality through the real entry point on a small set, and
the figures' arithmetic."""

from __future__ import annotations

import json
import os

from conftest import ROOT, run_rag

from rag.eval.answers import contains, figures

QUESTIONS = [
    {"id": "a1", "question": "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?", "answers": ["광주첨단산단"],
     "doc": "001", "section": "참고", "type": "entity", "note": "", "tags": []},
    {"id": "a2", "question": "누리호 개발에 참여한 회사들 가운데 뿌리기업은 몇 곳이었어?", "answers": ["19개사"],
     "doc": "000", "section": "I", "type": "number", "note": "", "tags": []},
    {"id": "u1", "question": "오늘 서울 날씨는 어때?", "answers": [], "doc": None, "section": None,
     "type": "unanswerable", "note": "", "tags": []},
]


def test_figures_by_hand():
    rows = [
        {"answerable": True, "answered": True, "correct": True, "first_line_correct": False, "citations": 2, "verbatim": 2},
        {"answerable": True, "answered": False, "correct": False, "first_line_correct": False, "citations": 0, "verbatim": 0},
        {"answerable": False, "answered": False, "correct": False, "first_line_correct": False, "citations": 0, "verbatim": 0},
        {"answerable": False, "answered": True, "correct": False, "first_line_correct": False, "citations": 1, "verbatim": 1},
    ]
    f = figures(rows)
    assert f == {"answerable": 2, "unanswerable": 2, "answered": 0.5, "correct": 0.5, "first_line_correct": 0.0,
                 "declined": 0.5, "citations_verbatim": 1.0}
    assert contains("센터 위치: 광주 첨단산단 [1]", ["광주첨단산단"]) and not contains("울산", ["광주"])


def test_eval_answers_end_to_end(tmp_path, project_index):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), encoding="utf-8")
    report = ROOT / "evaluation" / "report.md"
    before = report.stat().st_mtime_ns
    r = run_rag("eval", "--answers", "--set", str(small), "--json")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["overall"]["answerable"] == 2 and out["overall"]["unanswerable"] == 1
    assert out["overall"]["correct"] == 1.0 and out["overall"]["declined"] == 1.0
    assert out["overall"]["citations_verbatim"] == 1.0
    assert [q["id"] for q in out["questions"]] == ["a1", "a2", "u1"]
    assert set(out["per_doc"]) == {"000", "001", "(none)"} and out["latency"]["p95_ms"] > 0
    assert report.stat().st_mtime_ns == before  # evaluating writes no tracked file
    human = run_rag("eval", "--answers", "--set", str(small), env={**os.environ, "COLUMNS": "200"})
    assert human.returncode == 0 and "declined" in human.stdout.decode() and "per document" in human.stdout.decode()
