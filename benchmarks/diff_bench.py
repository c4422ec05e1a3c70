#!/usr/bin/env python
"""What does ``runlog diff A B`` cost against the two summaries it replaces?

Issue 19 ("Speed"): comparing two 1 M-row runs costs at most the two summarizes plus 20 %. The runs:

* **A**: the Flink-v1 run of ``benchmarks/inspect_bench.py`` (2,000 files x 512 rows, 1-2 KB of unique text per
  row), reused from ``benchmarks/_data/`` (generated if missing);
* **B**: its perturbed twin, written cheaply: each of A's files is read with pyarrow and written again with
  the solver's reward lifted by 0.05 from step 1,000 on and every role's reward jittered (a generator
  seeded by the step), the text columns as they are. Cached next to A (``flink_v1_2000x512_twin``).

Phases, each timed **in one Python process** (the imports done before the clock starts; every phase opens
its runs itself, so discovery counts; the probe cache is warm after the untimed warm-up round), interleaved
round-robin so that drift in machine load hits all alike:

* ``summarize A`` + ``summarize B`` by role (``runlog summarize DIR``, the default: the issue's peer), and by
  role and step (the per-step summary a comparison over steps needs), each pair summed;
* ``diff A B``: ``diff_runs`` with the defaults of ``runlog diff`` (window 10, 1,000 resamples).

Two regimes of summarize's partial cache (``runlog.analysis.partial_cache``), each measured on its own:
``off`` (``RUNLOG_CACHE=off``: every phase reads the runs), and ``warm`` (a cache folder of the benchmark's
own, filled by the warm-up round: summarize answers from the per-step partials, and so do the diff's
per-step figures; ``RUNLOG_ANSWERS=off``: the commands compute, as for a question not asked before). A third,
``kept`` (with ``--cli``), leaves the commands' kept answers on (``runlog.cli.answers``): each command of a
round asks what it asked in the round before, of unchanged runs, and prints the kept answer. And ``first``
(``--cli`` only): each command starts with the probe cache warm and no partials, as the first question asked
of finished runs (the diff reads and stores the partials as the two summaries do).

The ratio is diff's median over the pair's median, in the same regime, of wall seconds and of the process's
CPU seconds (all threads: what the work costs, which other jobs on a shared machine change much less than the
wall clock). ``--cli`` also times the whole commands as processes, as a user runs them (``runlog diff A B``
against ``runlog summarize A`` then ``runlog summarize B``), wall and the children's CPU seconds.

Usage::

    python benchmarks/diff_bench.py                 # 5 interleaved repetitions, both regimes
    python benchmarks/diff_bench.py --reps 7 --markdown --cli --cache off
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402  (the shared Flink-v1 generator and machine helpers)

TWIN_VERSION = 1
LIFT = 0.05
LIFT_FROM = 1000


def write_twin_file(args: tuple[Path, int], source: Path) -> int:
    """A's file of ``step``, written again into ``logs`` with perturbed role rewards (seeded by the step)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    logs, step = args
    name = f"batch_debug_data_train_{step}.parquet"
    table = pq.read_table(source / "flink_logs" / name)
    rng = np.random.default_rng(10_000 + step)
    for role in ib.ROLES:
        col = f"{role}_reward"
        values = table.column(col).to_numpy(zero_copy_only=False).astype(float)
        values = values + rng.normal(0, 0.02, len(values)) + (LIFT if role == "solver" and step >= LIFT_FROM else 0.0)
        mask = table.column(col).is_null().to_numpy(zero_copy_only=False)
        array = pa.array(np.clip(values, 0.0, 1.0).round(4), pa.float64(), mask=mask)
        table = table.set_column(table.schema.get_field_index(col), col, array)
    path = logs / name
    pq.write_table(table, path, compression="snappy")
    return path.stat().st_size


def ensure_twin(source: Path, files: int, rows: int, regenerate: bool) -> Path:
    params = {"twin_version": TWIN_VERSION, "of": source.name, "generator_version": ib.GENERATOR_VERSION}
    params |= {"files": files, "rows": rows, "lift": LIFT, "lift_from": LIFT_FROM}
    build = functools.partial(write_twin_file, source=source)
    run, _ = ib.cached_run(f"{source.name}_twin", params, build, files, regenerate=regenerate)
    return run


def timed_phases(a: Path, b: Path) -> dict[str, float]:
    """One repetition of every in-process phase (imports already done): wall seconds, and ``cpu: `` the CPU
    seconds of the process (all its threads), which other jobs on a shared machine disturb much less."""
    from runlog import open_run
    from runlog.analysis.diff import diff_runs
    from runlog.analysis.summarize import summarize

    out: dict[str, float] = {}
    for by, key in ((["role"], "summarize A + B by role"), (["role", "step"], "summarize A + B by role, step")):
        wall = cpu = 0.0
        for path in (a, b):
            t0, c0 = time.perf_counter(), time.process_time()
            summarize(open_run(path), by)
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        out[key], out[f"cpu: {key}"] = wall, cpu
    t0, c0 = time.perf_counter(), time.process_time()
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"])
    out["diff A B"], out["cpu: diff A B"] = time.perf_counter() - t0, time.process_time() - c0
    solver = d.roles.filter(d.roles["role"] == "solver").to_dicts()[0]
    if solver["verdict"] != "ahead" or abs(solver["diff"] - LIFT) > 0.02:
        raise SystemExit(f"diff did not find the planted lift: {solver}")
    return out


def cli_phases(a: Path, b: Path, env: dict[str, str], first: bool = False) -> dict[str, float]:
    """The commands as processes; ``first``: each starts with no partials (the probe cache kept)."""
    out: dict[str, float] = {}
    commands = {
        "runlog summarize A; runlog summarize B (processes)": [
            [sys.executable, "-m", "runlog", "summarize", str(a)],
            [sys.executable, "-m", "runlog", "summarize", str(b)],
        ],
        "runlog diff A B (process)": [[sys.executable, "-m", "runlog", "diff", str(a), str(b)]],
    }
    for key, argvs in commands.items():
        total = cpu = 0.0
        for argv in argvs:
            if first:
                for kept in ("partials", "answers"):
                    shutil.rmtree(Path(env["RUNLOG_CACHE_DIR"]) / kept, ignore_errors=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            total += time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
        out[key] = total
        out[f"cpu: {key}"] = cpu  # the children's CPU seconds, all threads
    return out


def measure(a: Path, b: Path, reps: int, cli: bool, env: dict[str, str], first: bool = False) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for rep in range(reps + 1):
        got = {} if first else timed_phases(a, b)
        if cli:
            got |= cli_phases(a, b, env, first)
        if rep == 0:
            continue  # warm-up: page cache, probe cache, partial cache
        for k, v in got.items():
            times.setdefault(k, []).append(v)
        shown = ", ".join(f"{k} {v:.2f}s" for k, v in got.items() if not k.startswith("cpu: "))
        print(f"rep {rep}: {shown}", file=sys.stderr)
    return times


def table(times: dict[str, list[float]]) -> list[tuple[str, float, float, float, str]]:
    """Per phase: median, min, max and, for the diff, its median over each pair's median (wall and CPU)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for k, v in times.items():
        ratio = ""
        if k.removeprefix("cpu: ") == "diff A B":
            cpu = "cpu: " if k.startswith("cpu: ") else ""
            ratio = " / ".join(
                f"{med[k] / med[cpu + p]:.2f} ({p.removeprefix('summarize A + B ')})"
                for p in ("summarize A + B by role", "summarize A + B by role, step")
            )
        elif k.removeprefix("cpu: ").startswith("runlog diff"):
            cpu = "cpu: " if k.startswith("cpu: ") else ""
            ratio = f"{med[k] / med[cpu + 'runlog summarize A; runlog summarize B (processes)']:.2f}"
        rows.append((k, med[k], min(v), max(v), ratio))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cache", choices=["off", "warm", "first", "kept", "both", "all"], default="both")
    parser.add_argument("--cli", action="store_true", help="also time the commands as whole processes")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args(argv)
    a, _ = ib.ensure_data(args.files, args.rows, args.regenerate)
    b = ensure_twin(a, args.files, args.rows, args.regenerate)
    load = [os.getloadavg()[0]]
    regimes = {"both": ("off", "warm"), "all": ("off", "warm", "first", "kept")}.get(args.cache, (args.cache,))
    if {"first", "kept"} & set(regimes) and not args.cli:
        parser.error("--cache first and --cache kept measure the commands: add --cli")
    for regime in regimes:
        if regime == "off":
            os.environ["RUNLOG_CACHE"] = "off"
        else:
            os.environ.pop("RUNLOG_CACHE", None)
            folder = Path(tempfile.mkdtemp(prefix="runlog-diff-bench-"))
            os.environ["RUNLOG_CACHE_DIR"] = str(folder)  # a cache of its own, filled by the warm-up round
        if regime == "kept":
            os.environ["RUNLOG_ANSWERS"] = "on"
        else:
            os.environ["RUNLOG_ANSWERS"] = "off"
        times = measure(a, b, args.reps, args.cli, ib.child_env(), first=regime == "first")
        load.append(os.getloadavg()[0])
        print(f"\n### partial cache {regime}\n" if args.markdown else f"partial cache {regime}:")
        if args.markdown:
            print("| phase (wall, or cpu: CPU seconds) | median (s) | min (s) | max (s) | diff / the two summaries |")
            print("| --- | ---: | ---: | ---: | --- |")
        for k, m, lo, hi, ratio in table(times):
            if args.markdown:
                print(f"| {k} | {m:.3f} | {lo:.3f} | {hi:.3f} | {ratio} |")
            else:
                print(f"{k:55s} median {m:7.3f}s  min {lo:7.3f}s  max {hi:7.3f}s  {ratio}")
        if regime != "off":
            shutil.rmtree(folder, ignore_errors=True)
    info = ib.machine_info()
    print()
    loads = ", ".join(f"{x:.1f}" for x in load)
    print(", ".join(f"{k}: {v}" for k, v in info.items()) + f"; 1-min load: {loads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
