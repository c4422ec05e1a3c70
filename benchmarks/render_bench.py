#!/usr/bin/env python
"""How long does ``runlog render-trajectory`` take to show one sample of a 2,000-file, 1 M-row run?

Issue 5 ("Speed") asks: selecting one sample by step and sample id reads only the files and row groups it
needs, and rendering it takes < 0.5 s, process start-up excluded, against a full scan.

Each phase runs in its own fresh Python process (so no polars cache or memoised footer carries over), with
the imports (polars, pyarrow, rich, runlog) done **before** the clock starts: the figure is the time to
discover the run, select, read and render, "minus process start-up". The start-up (interpreter and those
imports) is measured separately in the same processes and reported beside it. Phases are interleaved
round-robin after one untimed warm-up round, so the page cache is warm and drift hits all alike.

* **step + id**: ``--step S --sample-id ID``, the path the target is about (one file is read).
* **id only**: ``--sample-id ID`` without a step: the ``sample_id`` column of every file is scanned
  (row-group statistics cannot skip a snappy file with one row group whose id range covers the id).
* **full scan**: what a renderer without selection would do: collect every column of every row, then
  filter in memory.

The data is the Flink-v1 run ``benchmarks/inspect_bench.py`` generates (2,000 files x 512 rows, 1-2 KB of
unique text per row); its generator is imported and the copy in ``benchmarks/_data/`` is reused.

Usage::

    python benchmarks/render_bench.py                  # 5 interleaved repetitions
    python benchmarks/render_bench.py --reps 7 --markdown
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402  (the shared Flink-v1 generator and machine helpers)

STEP = 1500
ROWS = 512
SAMPLE_ID = f"debate_train:{STEP * ROWS + 100:09d}"

PHASE_CODE = """
import sys, time, json
t0 = time.perf_counter()
from io import StringIO
import polars as pl
from rich.console import Console
from runlog import open_run
from runlog.render import Criteria, conversations, conversation_from_row, prepared
from runlog.render.select import plan_keep
from runlog.render.terminal import render_all
from runlog.run import list_names
t1 = time.perf_counter()
path, mode, step, sid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if mode == "full":
    run = open_run(path)
    t2 = time.perf_counter()
    df = run.samples.collect()
    rows = df.filter(pl.col("sample_id") == sid).to_dicts()
    convs = [prepared(conversation_from_row(r)) for r in rows]
else:
    # As the CLI does: file names decide which files are opened at all (list_names + plan_keep).
    crit = Criteria(steps=str(step), sample_ids=(sid,)) if mode == "step" else Criteria(sample_ids=(sid,))
    run = open_run(path, keep=plan_keep(list_names(path), crit))
    t2 = time.perf_counter()
    convs, _ = conversations(run, crit)
buf = StringIO()
Console(file=buf, width=100, color_system=None).print(render_all(convs))
t3 = time.perf_counter()
assert len(convs) == 1 and sid in buf.getvalue(), "the sample was not rendered"
print(json.dumps({"startup_imports": t1 - t0, "discover": t2 - t1, "work": t3 - t1}))
"""

PHASES = {
    "step + id": "step",
    "id only": "id",
    "full scan": "full",
}


def run_phase(root: Path, mode: str) -> dict[str, float]:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PHASE_CODE, str(root), mode, str(STEP), SAMPLE_ID],
        capture_output=True,
        text=True,
        check=True,
        cwd=ib.REPO_ROOT,
        env=ib.child_env(),
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process"] = time.perf_counter() - t
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print a section for docs/benchmarks.md")
    args = ap.parse_args(argv)
    root, size = ib.ensure_data(2000, ROWS, regenerate=False)
    for mode in PHASES.values():  # warm-up, untimed
        run_phase(root, mode)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in PHASES}
    for _ in range(args.reps):
        for name, mode in PHASES.items():
            results[name].append(run_phase(root, mode))
    print(f"data: {root} ({size / 2**30:.2f} GiB), sample {SAMPLE_ID} at step {STEP}; {args.reps} reps")
    lines = [
        "| phase | work median (s) | min (s) | max (s) | of which discovery (s) | start-up + imports (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rs in results.items():
        work = [r["work"] for r in rs]
        lines.append(
            f"| {name} | {statistics.median(work):.3f} | {min(work):.3f} | {max(work):.3f} | "
            f"{statistics.median(r['discover'] for r in rs):.3f} | "
            f"{statistics.median(r['startup_imports'] for r in rs):.3f} |"
        )
    print("\n".join(lines))
    if args.markdown:
        info = ib.machine_info()
        print("\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
