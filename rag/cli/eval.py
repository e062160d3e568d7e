"""`rag eval`: run a Q/A set through the retriever in each mode and report the numbers.

Registered on the app in :mod:`rag.cli.main`. All the work is done by
:mod:`rag.eval.evaluate` (the core); this face parses options, shows a progress bar on stderr,
prints rich tables (or ``--json``) on stdout, and, only when asked (``--write-report``),
writes ``evaluation/report.md`` (between its retrieval markers) and ``evaluation/last_run.json``.
"""

from __future__ import annotations

import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator, List, Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from rag.cli import render as cli_common
from rag.config import Settings
from rag.errors import RagError
from rag.eval.evalset import DEFAULT_QA_PATH, PROJECT_ROOT, validate
from rag.eval.evalset import load_corpus as load_corpus_texts
from rag.query.checks import MAX_K, MODES
from rag.text.outside import check_json_value

REPORT_PATH = PROJECT_ROOT / "evaluation" / "report.md"
LAST_RUN_PATH = PROJECT_ROOT / "evaluation" / "last_run.json"


@contextmanager
def _eval_progress() -> Iterator:
    """A bar per stage on stderr: the overall ``ablations`` bar stays, step bars replace each other."""
    err = cli_common.err
    # disabled off a terminal: a transient bar shows nothing there, and rich ends it with a blank line
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, int] = {}
        current: list[str | None] = [None]

        def report(stage: str, advance: int, total: int) -> None:
            if stage not in tasks:
                if current[0] is not None and current[0] in tasks:
                    bar.remove_task(tasks.pop(current[0]))
                    current[0] = None
                tasks[stage] = bar.add_task(stage, total=total)
            if stage != "ablations":
                current[0] = stage
            bar.update(tasks[stage], advance=advance, total=total)

        yield report


def _parse_modes(values: Optional[List[str]]) -> Optional[set[str]]:
    """The modes asked for (None: all of them); an unknown one exits with status 2."""
    if not values:
        return None
    modes = [m.strip() for v in values for m in v.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        cli_common.fail(f"알 수 없는 검색 모드입니다: {', '.join(map(repr, bad)) or '(없음)'}; {', '.join(MODES)} 중에서 고르세요",
                        cli_common.EXIT_BAD_INPUT)
    return set(modes)


def _fmt(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _delta_cell(d: dict, digits: int = 3, lower_is_better: bool = False) -> str:
    if d["delta"] is None:
        return f"{_fmt(d['old'], digits)} → {_fmt(d['new'], digits)}"
    delta = d["delta"]
    good = delta < 0 if lower_is_better else delta > 0
    colour = "green" if good else ("red" if delta != 0 else "dim")
    return f"{_fmt(d['old'], digits)} → {_fmt(d['new'], digits)} [{colour}]({delta:+.{digits}f})[/]"


def _print_tables(payload: dict, show_failures: bool) -> None:
    from rag.eval.evaluate import METRICS  # lazy: start-up time (numpy)

    out = cli_common.out
    meta, modes = payload["meta"], payload["modes"]
    t = Table(title=f"retrieval · {escape(str(meta['set']))} · {meta['answerable']} answerable "
                    f"(+{meta['unanswerable']} unanswerable, not scored) · k={meta['k']} · {meta['chunks']} chunks")
    t.add_column("metric")
    for mode in modes:
        t.add_column(mode, justify="right")
    t.add_row("n", *(str(r["overall"]["n"]) for r in modes.values()))
    for m in METRICS:
        vals = [r["overall"].get(m) for r in modes.values()]
        best = max((v for v in vals if v is not None), default=None)
        t.add_row(m.replace("mrr", "MRR").replace("ndcg", "nDCG").replace("section", "section hit"),
                  *(f"[bold]{_fmt(v)}[/]" if v is not None and v == best and len(vals) > 1 else _fmt(v) for v in vals))
    t.add_row("latency p50 ms", *(_fmt(r["latency"]["p50_ms"], 1) for r in modes.values()))
    t.add_row("latency p95 ms", *(_fmt(r["latency"]["p95_ms"], 1) for r in modes.values()))
    out.print(t)
    if payload.get("targets"):
        out.print("targets: " + " · ".join(f"{escape(k)} {'[green]✓[/]' if v else '[red]✗[/]'}"
                                           for k, v in payload["targets"].items()))

    for title, key in (("per type", "per_type"), ("per document", "per_doc"), ("per tag", "per_tag")):
        t = Table(title=f"{title} · hit@5 / MRR@10")
        t.add_column(key.split("_")[1])
        t.add_column("n", justify="right")
        for mode in modes:
            t.add_column(mode, justify="right")
        for k_ in sorted({k for r in modes.values() for k in r[key]}):
            n = next((r[key][k_]["n"] for r in modes.values() if k_ in r[key]), 0)
            cells = []
            for r in modes.values():
                s = r[key].get(k_, {})
                h5 = s.get("hit@5")
                cell = f"{_fmt(h5)} / {_fmt(s.get('mrr@10'))}"
                cells.append(f"[red]{cell}[/]" if h5 is not None and h5 < 0.9 else cell)
            t.add_row(escape(k_), str(n), *cells)
        out.print(t)

    if payload.get("ablations"):
        t = Table(title="ablations · hit@5 / MRR@10 (★ best of group by hybrid hit@5 + MRR@10)" +
                  (f" · from {payload['ablations_from']}" if payload.get("ablations_from") else ""))
        t.add_column("variant")
        t.add_column("chunks", justify="right")
        for mode in ("bm25", "dense", "hybrid"):
            t.add_column(mode, justify="right")
        t.add_column("everyday h@5 bm25/hyb", justify="right")
        t.add_column("rest h@5 bm25/hyb", justify="right")
        last = None
        for r in payload["ablations"]:
            m = r["modes"]
            cell = lambda mode, key: _fmt((m.get(mode) or {}).get(key))  # noqa: E731
            pair = lambda mode: f"{cell(mode, 'hit@5')} / {cell(mode, 'mrr@10')}" if mode in m else "—"  # noqa: E731
            label = f"{escape(r['group'])} · {escape(r['label'])}" + (" [dim](default)[/]" if r["default"] else "") \
                + (" [yellow]★[/]" if r.get("best") else "")
            t.add_row(label, str(r["chunks"]), pair("bm25"), pair("dense"), pair("hybrid"),
                      f"{cell('bm25', 'everyday_hit@5')}/{cell('hybrid', 'everyday_hit@5')}",
                      f"{cell('bm25', 'rest_hit@5')}/{cell('hybrid', 'rest_hit@5')}",
                      end_section=last is not None and last != r["group"])
            last = r["group"]
        out.print(t)
        for c in payload.get("defaults") or []:
            mark = "[green]✓[/]" if c["agrees"] else f"[yellow]⚠ best is {escape(c['best'])} (+{c['margin']:.3f})[/]"
            out.print(f"default {escape(c['group'])}: {escape(c['default'] or '?')} {mark}")

    if show_failures:
        for mode, fails in payload["failures"].items():
            t = Table(title=f"{mode}: {len(fails)} missed at k=5", show_lines=True, expand=True)
            t.add_column("id", width=6)
            t.add_column("question · expected", ratio=3)
            t.add_column("top 3 returned", ratio=5)
            for f in fails:
                exp = escape(" / ".join(f["answers"]))
                where = escape(", ".join(f"{d} · {s or '(root)'}" for d, s in zip(f["doc"], f["section"])))
                tops = "\n".join(
                    f"{p['rank']}. {escape(p['doc_id'])} · {escape(p['section'] or '(root)')}\n"
                    f"   [dim]{escape(' '.join(p['text'].split())[:160])}[/]" for p in f["top"]) or "(nothing)"
                rank = f"first relevant at {f['rank']}" if f["rank"] else (
                    "not in top k" if f["reachable"] else "no chunk contains the answer")
                t.add_row(escape(f["id"]), f"{escape(f['question'])}\n[bold]{exp}[/]\n[dim]{escape(f['type'])} · {where} · {rank}[/]",
                          tops)
            out.print(t)


def _print_compare(cmp: dict) -> None:
    from rag.eval.evaluate import COMPARE_METRICS  # lazy: start-up time (numpy)

    out = cli_common.out
    t = Table(title=f"compared with the run of {escape(str(cmp.get('old_created')))} · old → new (Δ)")
    t.add_column("metric")
    for mode in cmp["modes"]:
        t.add_column(mode, justify="right")
    for m in COMPARE_METRICS:
        t.add_row(m, *(_delta_cell(cmp["modes"][mode][m]) for mode in cmp["modes"]))
    for m in ("p50_ms", "p95_ms"):
        t.add_row(f"latency {m.replace('_', ' ')}", *(_delta_cell(cmp["latency"][mode][m], 1, True) for mode in cmp["modes"]))
    out.print(t)
    for mode, f in cmp["flips"].items():
        if f["gained"] or f["lost"]:
            out.print(f"{mode}: hit@5 gained [green]{escape(' '.join(f['gained']) or '-')}[/] · "
                      f"lost [red]{escape(' '.join(f['lost']) or '-')}[/]")
    if not cmp["modes"]:
        out.print("[yellow]no mode in common with the earlier run[/]")


def eval_command(
    set_path: Path = typer.Option(DEFAULT_QA_PATH, "--set", help="Q/A set (JSONL, schema of evaluation/qa.jsonl)."),
    mode: Optional[List[str]] = typer.Option(None, "--mode", help="bm25, dense, hybrid; repeat or comma-separate (default: all three)."),
    k: int = typer.Option(10, "-k", "--k", help="Passages retrieved per question."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on stdout."),
    show_failures: bool = typer.Option(False, "--failures", help="List questions missed at k=5 with the top 3 passages."),
    compare_to: Optional[Path] = typer.Option(None, "--compare", help="An earlier --json run: print deltas against it."),
    ablations: Optional[bool] = typer.Option(None, "--ablations/--no-ablations", help="Run the ablation table (default: when writing the report)."),
    report: bool = typer.Option(False, "--write-report/--no-report", help="Also write the tracked evaluation/report.md and last_run.json (never by default)."),
    answers: bool = typer.Option(False, "--answers", help="Answer quality instead: answered, correct, declined, citations (as rag ask answers)."),
) -> None:
    """Retrieval evaluation: hit@k, MRR, nDCG, section hits and latency per mode, type and
    document; with --answers, the quality of the answers themselves."""
    wanted = _parse_modes(mode)
    if not 1 <= k <= MAX_K:
        cli_common.fail(f"k는 1부터 {MAX_K}까지의 정수여야 합니다", cli_common.EXIT_BAD_INPUT)
    items = cli_common.load_question_set(set_path)
    if answers:
        from rag.cli.answers import run_answers  # lazy: start-up time

        try:
            run_answers(items, set_path, as_json)
        except RagError as exc:
            cli_common.fail_with(exc)
        return
    from rag.eval import evaluate as ev  # lazy: start-up time (numpy)

    modes = [m for m in ev.MODE_ORDER if wanted is None or m in wanted]
    old = None
    if compare_to is not None:
        try:
            old = check_json_value(ev.load_payload(compare_to), f"{compare_to} 파일")
        except ValueError as exc:  # InputError included: NaN, 1e999 or a lone surrogate in it
            cli_common.fail(str(exc), cli_common.EXIT_BAD_INPUT)
    ablations = report if ablations is None else ablations

    try:
        settings = Settings()
    except RagError as exc:
        cli_common.fail_with(exc)
    try:
        problems = validate(items, load_corpus_texts(settings.corpus_dir))
    except (OSError, ValueError, KeyError) as exc:
        problems = [f"could not check the set against the corpus ({exc})"]
    if problems:
        cli_common.print_notice(f"warning: {len(problems)} problem(s) in {set_path}; first: {problems[0]}")

    started = time.perf_counter()
    try:
        with _eval_progress() as progress:
            run = ev.run_eval(items, modes, k, settings=settings, ablations=ablations, progress=progress,
                              notice=cli_common.print_notice, set_path=_display(set_path))
    except RagError as exc:
        cli_common.fail_with(exc)
    payload = run.payload()
    cli_common.err.print(f"[dim]{len(items)} questions × {len(modes)} mode(s)"
                  f"{' + ablations' if ablations else ''} in {time.perf_counter() - started:.1f} s[/]")

    if report:
        if not payload.get("ablations"):
            _carry_over_ablations(payload, ev)
        command = shlex.join(["rag", *sys.argv[1:]]) if Path(sys.argv[0]).name == "rag" else "rag eval"
        ev.write_json_atomic(LAST_RUN_PATH, payload)
        ev.write_report(REPORT_PATH, ev.render_markdown(payload, command))
        cli_common.err.print(f"[dim]wrote {_display(REPORT_PATH)} and {_display(LAST_RUN_PATH)}[/]")

    cmp = ev.compare(old, payload) if old is not None else None
    if as_json:
        cli_common.print_json({**payload, "compare": cmp} if cmp is not None else payload)
        return
    _print_tables(payload, show_failures)
    if cmp is not None:
        _print_compare(cmp)


def _carry_over_ablations(payload: dict, ev: ModuleType) -> None:
    """Keep the last ablation table in the report when this run skipped the ablations."""
    try:
        prev = ev.load_payload(LAST_RUN_PATH)
    except ValueError:
        return
    if prev.get("ablations") and prev.get("meta", {}).get("set") == payload["meta"].get("set"):
        payload["ablations"] = prev["ablations"]
        payload["ablations_from"] = prev.get("ablations_from") or prev["meta"].get("created")
        payload["defaults"] = ev.defaults_check(prev["ablations"])


def _display(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
