#!/usr/bin/env python
"""``runlog doctor`` on a Flink run with conversations, against the code before a change (``--baseline``).

doctor reads the texts four ways (diversity per prompt group and per role, format adherence, the reasoning
note), and a Flink conversation is parsed from its ``agent_trajectories`` JSON in Python (about 100 us a
sample). The first ``--files`` files of the 2,000-file Flink-v1 run of ``benchmarks/inspect_bench.py``
(generated there, 512 rows each) are linked into a folder of their own; each phase is a whole process,
``python -m runlog doctor RUN --format json`` with no caches (``RUNLOG_CACHE=off``), interleaved after an
untimed warm-up, medians reported. The two codes' JSON must be identical (checked before timing).

There is no outside peer for doctor's checks: the peer is runlog's own code before the change, as its users
run it (``git archive COMMIT src | tar -x -C /tmp/before``).

Usage::

    git archive 6f3655d src | tar -x -C /tmp/before
    python benchmarks/doctor_bench.py --baseline /tmp/before/src --files 100 --reps 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inspect_bench as ib  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100, help="how many of the 2,000 files (default 100)")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per phase (default 3)")
    parser.add_argument("--baseline", type=Path, help="the src/ folder of the code before the change")
    args = parser.parse_args(argv)
    source, _ = ib.ensure_data(2000, 512, regenerate=False)
    tmp = Path(tempfile.mkdtemp(prefix="runlog-doctor-"))
    run = tmp / "run"
    (run / "flink_logs").mkdir(parents=True)
    for s in range(args.files):
        name = f"batch_debug_data_train_{s}.parquet"
        (run / "flink_logs" / name).symlink_to(source / "flink_logs" / name)
    base = {**ib.child_env(), "RUNLOG_CACHE": "off"}
    envs = {"runlog doctor": base}
    if args.baseline is not None:
        envs["before"] = {**base, "PYTHONPATH": str(args.baseline.resolve()) + os.pathsep + base["PYTHONPATH"]}
    argv_ = [sys.executable, "-m", "runlog", "doctor", str(run), "--format", "json"]
    times: dict[str, list[float]] = {k: [] for k in envs}
    try:
        outputs = {k: ib.run_once(argv_, env)[1].stdout for k, env in envs.items()}  # warm-up, and the check
        if len(set(outputs.values())) != 1:
            raise SystemExit("the two codes' doctor JSON differ: not timed")
        print(f"{args.files} files x 512 rows; load before: {os.getloadavg()[0]:.2f}")
        for r in range(args.reps):
            for k, env in envs.items():
                times[k].append(ib.run_once(argv_, env)[0])
            print(f"round {r + 1}/{args.reps}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in times.items():
        print(f"{k}: median {statistics.median(v):.2f} s ({', '.join(f'{x:.2f}' for x in v)})")
    if args.baseline is not None:
        print(f"speed-up: {statistics.median(times['before']) / statistics.median(times['runlog doctor']):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
