"""Record what users see, then prove a refactor left it byte-identical.

For every question of ``evaluation/qa.jsonl`` and ``evaluation/heldout.jsonl``:
``rag search --batch --json -k 10`` in each mode and ``rag ask --batch --json``; plus
``rag eval --json`` on the curated set with its timing fields removed. Everything runs
through the real entry point against one index folder, so the snapshot speaks only of code.

Usage::

    python scripts/behaviour_snapshot.py record DIR     # before the change
    python scripts/behaviour_snapshot.py compare DIR    # after: exit 1 and a diff summary if anything moved

``RAG_INDEX_DIR`` chooses the index (default: the project's ``index/``, built if missing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = {"qa": ROOT / "evaluation" / "qa.jsonl", "heldout": ROOT / "evaluation" / "heldout.jsonl"}
MODES = ("hybrid", "bm25", "dense")
#: Fields of `rag eval --json` that measure time or the machine, not behaviour; and the
#: analyser's fingerprint, a hash of its source files, which any edit of them changes.
VOLATILE = {"fingerprint", "latency", "created", "eval_seconds", "wall_seconds", "load_avg", "cpus", "timings_ms", "p50_ms",
            "p95_ms", "seconds", "ms"}


def rag(*args: str, stdin: bytes | None = None) -> bytes:
    r = subprocess.run([sys.executable, "-m", "rag.cli.main", *args], cwd=ROOT, input=stdin, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"rag {' '.join(args)} failed:\n{r.stderr.decode(errors='replace')[-2000:]}")
    return r.stdout


def batch_of(path: Path) -> bytes:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return "".join(json.dumps({"id": it["id"], "question": it["question"]}, ensure_ascii=False) + "\n"
                   for it in lines).encode("utf-8")


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def snapshot(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in SETS.items():
        batch = batch_of(path)
        for mode in MODES:
            out = rag("search", "--batch", "-", "--json", "-k", "10", "--mode", mode, stdin=batch)
            (folder / f"search-{name}-{mode}.jsonl").write_bytes(out)
        (folder / f"ask-{name}.jsonl").write_bytes(rag("ask", "--batch", "-", "--json", stdin=batch))
        print(f"recorded {name}", flush=True)
    payload = json.loads(rag("eval", "--json", "--no-ablations", "--no-report"))
    (folder / "eval.json").write_text(json.dumps(strip_volatile(payload), ensure_ascii=False, indent=1, sort_keys=True),
                                      encoding="utf-8")


def compare(reference: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        now = Path(tmp)
        snapshot(now)
        names = sorted(p.name for p in reference.iterdir())
        changed = []
        for n in names:
            a, b = (reference / n).read_bytes(), (now / n).read_bytes() if (now / n).exists() else b""
            if n == "eval.json" and b:  # a snapshot recorded before a field became volatile still compares
                a, b = (json.dumps(strip_volatile(json.loads(x)), ensure_ascii=False, indent=1, sort_keys=True).encode()
                        for x in (a, b))
            if a != b:
                old, new = a.decode().splitlines(), b.decode().splitlines()
                differing = sum(x != y for x, y in zip(old, new)) + abs(len(old) - len(new))
                changed.append(f"{n}: {differing} of {len(old)} lines differ")
    for line in changed:
        print("CHANGED", line)
    print(f"{len(names) - len(changed)} of {len(names)} files byte-identical")
    return 1 if changed else 0


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("record", "compare"):
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    folder = Path(sys.argv[2])
    if sys.argv[1] == "record":
        snapshot(folder)
        print(f"snapshot in {folder}")
        return 0
    return compare(folder)


if __name__ == "__main__":
    sys.exit(main())
