#!/usr/bin/env python
"""Does a repeated ``runlog summarize --by role`` cost only what is new? (issue 18, "Incremental partials")

On the 2,000-file Flink-v1 run of ``benchmarks/inspect_bench.py`` (1,024,000 samples, three roles), whole
processes (``python -m runlog summarize RUN --by role --format json``), timed around ``subprocess.run``,
against DuckDB's twin of the same aggregation (``summarize_bench.DUCKDB_CODE``, the faster ``unnest``
formulation) in the same rounds:

* **first**: the probe cache warm (footers known), no partials stored: every step is read and its partials
  stored;
* **repeat**: the same command again, nothing changed: the answer kept by the first (``runlog.cli.answers``)
  is printed after one listing of the run;
* **repeat, partials**: the same with ``RUNLOG_ANSWERS=off``: every step's partials come from the cache (what
  another question of an unchanged run costs, say ``--by role --by split`` after ``--by role``);
* **+100 files**: 1,900 steps summarised before (untimed), then 100 new files appear (fresh copies, dated a
  minute ago: neither probed nor summarised yet): the command probes and reads those 100;
* **cold**: ``RUNLOG_CACHE=off`` (no probe cache, no partials), for reference;
* **DuckDB**: the twin over the 2,000 files;
* **floor**: a process that only imports runlog's CLI and polars (what any command that computes pays first);
* **floor, CLI**: a process that only imports runlog's CLI (what a kept answer pays first).

The run is a folder of symbolic links to the generated files (``_data/incremental_run``), so that files can
be added and removed without copying 1.4 GB; each phase has its own cache folder. Phases are interleaved
round-robin after an untimed warm-up round; medians are reported with the load average before and after.
Before timing, runlog's JSON is checked against DuckDB's (every statistic within 1e-9 relative) for the
first, repeat and +100 answers. ``--profile`` prints where the time of a repeat goes inside one process.

Usage::

    python benchmarks/incremental_bench.py --reps 7 --markdown
    python benchmarks/incremental_bench.py --profile
    git archive COMMIT src | tar -x -C /tmp/before && python benchmarks/incremental_bench.py --baseline /tmp/before/src
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402
import summarize_bench as sb  # noqa: E402

FILES, ROWS, ADDED = 2000, 512, 100
RUN = ib.DATA_ROOT / "incremental_run"


def _link_run(source: Path, steps: range) -> None:
    """``RUN/flink_logs`` holding links to the generated files of ``steps`` (and no other)."""
    logs = RUN / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    want = {f"batch_debug_data_train_{s}.parquet" for s in steps}
    for p in logs.iterdir():
        if p.name not in want or not p.is_symlink():  # a copy left by the +100 phase: back to a link
            p.unlink()
    for name in want:
        link = logs / name
        if not link.exists():
            link.symlink_to(source / "flink_logs" / name)


def _runlog(env: dict[str, str]) -> tuple[float, str]:
    argv = [sys.executable, "-m", "runlog", "summarize", str(RUN), "--by", "role", "--format", "json"]
    t, proc = ib.run_once(argv, env)
    if proc.returncode != 0:
        raise SystemExit(f"runlog failed ({proc.returncode}): {proc.stderr[-800:]}")
    return t, proc.stdout


def _duckdb(env: dict[str, str], script: Path) -> tuple[float, str]:
    t, proc = ib.run_once([sys.executable, str(script), str(RUN), "role", "unnest"], env)
    if proc.returncode != 0:
        raise SystemExit(f"DuckDB failed: {proc.stderr[-800:]}")
    return t, proc.stdout


def _check(label: str, mine: str, theirs: str) -> None:
    check = sb.compare(label, json.loads(mine), json.loads(theirs), ("role",))
    if check.problems:
        raise SystemExit(f"{label}: runlog and DuckDB disagree: {check.problems[:5]}")
    print(f"check {label}: {check.groups} groups, {check.values} values, max rel. difference {check.max_rel:.1e}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


CACHED = ("first", "repeat", "partials", "added")  # the phases that use the caches (timed for the baseline too)


def measure(source: Path, reps: int, baseline: Path | None = None) -> dict[str, list[float]]:
    """Times of every phase; ``baseline``: the ``src`` folder of another checkout (the code before a
    change), whose cached phases are timed in the same rounds as ``before: <phase>``."""
    base = ib.child_env()
    tmp = Path(tempfile.mkdtemp(prefix="runlog-incremental-"))
    script = tmp / "duck.py"
    script.write_text(sb.DUCKDB_CODE)
    envs = {k: {**base, "RUNLOG_CACHE_DIR": str(tmp / k), "RUNLOG_ANSWERS": "on"} for k in CACHED}
    envs["partials"]["RUNLOG_ANSWERS"] = "off"
    if baseline is not None:
        path = str(baseline.resolve()) + os.pathsep + base["PYTHONPATH"]
        for k in CACHED:
            envs[f"before: {k}"] = {**envs[k], "PYTHONPATH": path, "RUNLOG_CACHE_DIR": str(tmp / f"b-{k}")}
    cold_env = {**base, "RUNLOG_CACHE": "off"}

    def first(env: dict[str, str]) -> tuple[float, str]:
        _link_run(source, range(FILES))
        _runlog(env)  # untimed: the probe cache knows every footer
        for kept in ("partials", "answers"):
            shutil.rmtree(Path(env["RUNLOG_CACHE_DIR"]) / kept, ignore_errors=True)
        return _runlog(env)

    def repeat(env: dict[str, str]) -> tuple[float, str]:
        _link_run(source, range(FILES))
        _runlog(env)  # untimed: everything cached
        return _runlog(env)

    def added(env: dict[str, str]) -> tuple[float, str]:
        _link_run(source, range(FILES - ADDED))
        _runlog(env)  # untimed: 1,900 steps cached
        # 100 new files: copies (new inodes and change times: nothing cached knows them), written a minute ago
        for s in range(FILES - ADDED, FILES):
            name = f"batch_debug_data_train_{s}.parquet"
            shutil.copyfile(source / "flink_logs" / name, RUN / "flink_logs" / name)
            ago = time.time() - 60
            os.utime(RUN / "flink_logs" / name, (ago, ago))
        return _runlog(env)

    def cold() -> tuple[float, str]:
        _link_run(source, range(FILES))
        return _runlog(cold_env)

    def duck() -> tuple[float, str]:
        _link_run(source, range(FILES))
        return _duckdb(base, script)

    def floor() -> tuple[float, str]:
        # What any runlog command pays before it computes: the interpreter, runlog's CLI and polars.
        t, _ = ib.run_once([sys.executable, "-c", "import runlog.cli.app, polars"], base)
        return t, ""

    def floor_cli() -> tuple[float, str]:
        t, _ = ib.run_once([sys.executable, "-c", "import runlog.cli.app"], base)
        return t, ""

    kinds = {"first": first, "repeat": repeat, "partials": repeat, "added": added}
    phases = {k: functools.partial(kinds[k.removeprefix("before: ")], env) for k, env in envs.items()}
    phases.update({"cold": cold, "duckdb": duck, "floor": floor, "floor_cli": floor_cli})
    times: dict[str, list[float]] = {k: [] for k in phases}
    try:
        outputs = {k: f()[1] for k, f in phases.items()}  # warm-up round, and the answers checked
        # The code of --baseline may report fewer columns (kl_nan, kl_null came later): only this code's answers
        # are checked against DuckDB; the baseline is timed.
        for k in [*(e for e in envs if not e.startswith("before: ")), "cold"]:
            _check(k, outputs[k], outputs["duckdb"])
        print(f"load before: {_load()}")
        for r in range(reps):
            for k, f in phases.items():
                times[k].append(f()[0])
            print(f"round {r + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
        print(f"load after: {_load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(RUN, ignore_errors=True)
    return times


PROFILED = {  # (module file, function) -> label, for the +100 breakdown
    ("run.py", "open_run"): "open_run (listing, probe cache, 100 new footers)",
    ("partial_cache.py", "units"): "stat every file, step identities",
    ("partial_cache.py", "load"): "read the stored segments",
    ("partials.py", "summarize_partials"): "read the 100 new steps (one query)",
    ("partial_cache.py", "save"): "store them (segment, index)",
    ("partial_cache.py", "summary_from_partials"): "merge every step, the median",
}


def profile(source: Path) -> None:
    """Where a repeat's and a +100's time goes, inside one process (imports measured by processes of their
    own: a run whose footers are all cached never imports pyarrow; new footers do)."""
    import cProfile
    import pstats

    env = ib.child_env()
    with tempfile.TemporaryDirectory(prefix="runlog-incremental-") as cache:
        os.environ["RUNLOG_CACHE_DIR"] = cache
        try:
            bare = statistics.median(ib.run_once([sys.executable, "-c", "pass"], env)[0] for _ in range(5))
            for code in ("import runlog.cli.app, polars", "import pyarrow.parquet"):
                t = statistics.median(ib.run_once([sys.executable, "-c", code], env)[0] for _ in range(5))
                print(f"python start-up {bare:.3f} s; `{code}` {t - bare:.3f} s more")
            from runlog import open_run
            from runlog.analysis.summarize import summarize

            for label, setup in (("repeat", False), ("+100 files", True)):
                _link_run(source, range(FILES - ADDED) if setup else range(FILES))
                summarize(open_run(RUN), ["role"])  # fill both caches
                if setup:
                    for s in range(FILES - ADDED, FILES):
                        name = f"batch_debug_data_train_{s}.parquet"
                        shutil.copyfile(source / "flink_logs" / name, RUN / "flink_logs" / name)
                        ago = time.time() - 60
                        os.utime(RUN / "flink_logs" / name, (ago, ago))
                prof = cProfile.Profile()
                t0 = time.perf_counter()
                prof.enable()
                summarize(open_run(RUN), ["role"])
                prof.disable()
                total = time.perf_counter() - t0
                stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
                parts = []
                for (file, _, func), (_, _, _, cum, _) in stats.items():
                    label_of = PROFILED.get((Path(file).name, func))
                    if label_of is not None:
                        parts.append(f"{label_of} {cum:.3f} s")
                print(f"{label}: open_run + summarize {total:.3f} s (profiled): " + "; ".join(sorted(parts)))
        finally:
            shutil.rmtree(RUN, ignore_errors=True)


def markdown(times: dict[str, list[float]], info: dict[str, str]) -> str:
    duck = statistics.median(times["duckdb"])
    labels = {
        "first": "first `summarize --by role` (probe cache warm, no partials)",
        "repeat": "repeat, nothing changed (the kept answer)",
        "partials": "repeat from partials (`RUNLOG_ANSWERS=off`)",
        "added": f"after {ADDED} new files",
        "cold": "no caches (`RUNLOG_CACHE=off`)",
        "duckdb": "DuckDB twin (`unnest`)",
        "floor": "floor: `python -c 'import runlog.cli.app, polars'`",
        "floor_cli": "floor of a kept answer: `python -c 'import runlog.cli.app'`",
    }
    targets = {"first": "≤ 1.0x", "repeat": "≤ 0.2x", "partials": "≤ 0.2x", "added": "≤ 0.3x"}
    labels.update({f"before: {k}": f"before: {labels[k]}" for k in CACHED})
    lines = ["| phase | median s | min–max s | vs DuckDB | target |", "| --- | ---: | ---: | ---: | :---: |"]
    for k, label in labels.items():
        if k not in times:
            continue
        v = times[k]
        med = statistics.median(v)
        lines.append(f"| {label} | {med:.2f} | {min(v):.2f}–{max(v):.2f} | {med / duck:.2f}x | {targets.get(k, '')} |")
    lines.append("")
    lines.append("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print the table for docs/benchmarks.md")
    ap.add_argument("--profile", action="store_true", help="where a repeat's time goes, in one process")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="the src/ folder of another checkout (say `git archive COMMIT src | tar -x -C DIR`): its cached "
        "phases are timed in the same rounds, as 'before: ...'",
    )
    args = ap.parse_args(argv)
    source, _ = ib.ensure_data(FILES, ROWS, False)
    if args.profile:
        profile(source)
        return 0
    times = measure(source, args.reps, args.baseline)
    info = {**ib.machine_info(), "duckdb": _duckdb_version()}
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v):.3f} s ({', '.join(f'{x:.2f}' for x in v)})")
    if args.markdown:
        print(markdown(times, info))
    return 0


def _duckdb_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("duckdb")
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    raise SystemExit(main())
