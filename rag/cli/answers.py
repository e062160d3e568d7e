"""`rag eval --answers`: answer quality on a question set, as ``rag ask`` answers it
(:mod:`rag.eval.answers` does the work; this face shows a bar, tables or JSON)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from rag.cli import render
from rag.cli.render import percent


def _table(title: str, groups: dict[str, dict]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("", "answerable", "answered", "correct", "first line", "unanswerable", "declined", "verbatim"):
        t.add_column(col, justify="right" if col else "left")
    for name, f in groups.items():
        t.add_row(name, str(f["answerable"]), percent(f["answered"]), percent(f["correct"]), percent(f["first_line_correct"]),
                  str(f["unanswerable"]), percent(f["declined"]), percent(f["citations_verbatim"]))
    return t


def run_answers(items: list, set_path: Path, as_json: bool) -> None:
    """Score ``items`` (already loaded and checked) and print the figures."""
    from rag.eval.answers import score_answers  # lazy: start-up time

    retriever = render.open_retriever()
    with render.progress_bar() as progress:
        result = score_answers(retriever, items, progress=lambda n: progress("답변", n, len(items)))
    if as_json:
        render.print_json({"set": str(set_path), **result})
        return
    render.out.print(_table(f"answers — {set_path.name}", {"overall": result["overall"]}))
    render.out.print(_table("per question type", result["per_type"]))
    render.out.print(_table("per document", result["per_doc"]))
    lat = result["latency"]
    render.out.print(f"answer latency (retrieval included): p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms")
