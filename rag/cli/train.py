"""`rag train`: learn the line ranker and the answerability model from the training
questions (:mod:`rag.eval.train` does the work), print the cross-validated figures and
write ``rag/data/models/answer_models.json``."""

from __future__ import annotations

import typer
from rich.table import Table

from rag.cli import render
from rag.cli.render import percent
from rag.errors import RagError


def train_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Train and report, write nothing."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON on stdout."),
) -> None:
    """Train the answer line's ranker and answerability model (CPU, about two minutes)."""
    from rag.eval import train  # lazy: start-up time (LightGBM, scikit-learn)

    retriever = render.open_retriever()
    try:
        items = train.load_items(retriever.doc_texts)
        with render.progress_bar() as progress:
            examples = train.collect(retriever, items, progress=lambda n: progress("질문 준비", n, len(items)))
            progress("학습", 0, 1)
            artifact, report = train.train_models(examples, retriever)
            progress("학습", 1, 1)
    except RagError as exc:
        render.fail_with(exc)
    report["model_sha256"] = train.model_hash(artifact)
    report["data_sha256"] = artifact["data_sha256"]
    if not dry_run:
        train.save_artifact(artifact)
    if as_json:
        render.print_json(report)
    else:
        t = Table(title=f"answer line — {artifact['trained_on']['questions']} training questions "
                        f"({artifact['trained_on']['unanswerable']} unanswerable)", title_justify="left")
        for col in ("protocol", "answered", "correct (top line)", "declined", "top line correct", "pool ceiling"):
            t.add_column(col, justify="right" if col != "protocol" else "left")
        for name, key in (("grouped 5-fold CV (by section)", "cv"), ("leave one document out", "lodo")):
            f = report[key]
            t.add_row(name, percent(f["answered"]), percent(f["correct_answered"]), percent(f["declined"]),
                      percent(f["top_line_correct"]), percent(f["pool_ceiling"]))
        render.out.print(t)
        if "cv_composed" in report:
            c = Table(title="whole answers, grouped 5-fold CV: learned vs the hand-set rules (rag ask today)",
                      title_justify="left")
            for col in ("path", "answered", "correct", "first line correct", "declined"):
                c.add_column(col, justify="right" if col != "path" else "left")
            for path, f in report["cv_composed"].items():
                c.add_row(path, percent(f["answered"]), percent(f["correct"]), percent(f["first_line_correct"]),
                          percent(f["declined"]))
            render.out.print(c)
        for key, title in (("importance_ranker", "ranker"), ("importance_answerable", "answerability")):
            render.out.print(f"{title} features by gain: " + ", ".join(f"{n} {g:.0f}" for n, g in report[key][:8]))
        render.out.print(f"threshold {report['cv_threshold']:.4f}; model {report['model_sha256'][:12]}; "
                         f"data {report['data_sha256'][:12]}" + (" (not written: --dry-run)" if dry_run else ""))
    if not dry_run:
        render.err.print("wrote rag/data/models/answer_models.json", markup=False)
