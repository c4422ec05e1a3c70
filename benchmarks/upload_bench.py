#!/usr/bin/env python
"""Does ``runlog upload-wandb`` cost no more than W&B itself? (issue 7: target <= 1.2x)

A run of 10,000 steps x 50 scalar keys (native layout, ``scalars.p0.jsonl``) is uploaded in offline mode by
``runlog upload-wandb`` and, as the peer, by a bare loop of ``run.log`` calls: the same rows (the 50 keys,
``trainer/step`` and ``_timestamp``), the same explicit steps, the same ``define_metric`` calls and W&B
settings, with the rows computed in memory (the peer reads no file). Each phase is a whole process timed
around ``subprocess.run``, so interpreter start-up, imports, ``wandb.init`` and ``finish`` count on both
sides; runlog also reads the run, plans the rows and keeps its state file. The phases are interleaved
(one untimed warm-up round first) and the medians compared. Both offline logs are then read back with
``wandb leet inspect --summary --json`` and their last values compared, so that the two did the same work.

Usage::

    python benchmarks/upload_bench.py                   # 5 repetitions
    python benchmarks/upload_bench.py --reps 7 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS, KEYS = 10_000, 50
T0 = 1_770_000_000.0

ROWS = """
def row(step):
    return {f"bench/k{j:02d}": step * 0.001 + j * 0.5 for j in range(KEYS)}
"""
exec(ROWS.replace("KEYS", str(KEYS)))  # one definition of the rows, shared with the peer's source

BARE = (
    "import sys, wandb\n"
    + ROWS.replace("KEYS", str(KEYS))
    + """
wdir, rid = sys.argv[1], sys.argv[2]
settings = wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True, x_disable_meta=True)
run = wandb.init(project="bench", id=rid, config={}, resume="allow", dir=wdir, mode="offline", settings=settings)
run.define_metric("trainer/step")
run.define_metric("*", step_metric="trainer/step")
for step in range(STEPS):
    data = row(step)
    data["trainer/step"] = step
    data["_timestamp"] = T0 + step
    run.log(data, step=step)
run.finish()
""".replace("STEPS", str(STEPS)).replace("T0", repr(T0))
)


def make_run(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "run_id": "bench", "name": "bench", "config": {}, "roles": []}
    (root / "run.json").write_text(json.dumps(manifest))
    with open(root / "scalars.p0.jsonl", "w") as fh:
        for step in range(STEPS):
            fh.write(json.dumps({"step": step, "time": T0 + step, **row(step)}) + "\n")  # noqa: F821


def env_for(home: Path) -> dict[str, str]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import inspect_bench

    inspect_bench.compile_sources()  # as an installed copy is (see inspect_bench.compile_sources)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(home / "wb"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONSOLE="off",
        PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    time.sleep(1.0)  # let the previous phase's W&B service process finish writing and exit
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return elapsed


def last_values(session: Path, env: dict[str, str]) -> dict[str, float]:
    wandb = str(Path(sys.executable).parent / "wandb")
    out = subprocess.run([wandb, "leet", "inspect", "--summary", "--json", str(session)], env=env, capture_output=True)
    summary = json.loads(out.stdout)["summary"]
    return {k: v for k, v in summary.items() if k.startswith(("bench/", "trainer/")) or k == "_timestamp"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print a section for docs/benchmarks.md")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="runlog-upload-bench-"))
    try:
        run_dir = home / "run"
        make_run(run_dir)
        env = env_for(home)
        wdir = home / "wb"
        wdir.mkdir()
        bare_py = home / "bare.py"
        bare_py.write_text(BARE)
        times: dict[str, list[float]] = {"runlog": [], "bare": []}
        for rep in range(args.reps + 1):  # rep 0 is the untimed warm-up
            rid = f"r{rep}"
            state = str(home / f"{rid}.json")
            cmd = [sys.executable, "-m", "runlog", "upload-wandb", str(run_dir), "--project", "bench"]
            cmd += ["--mode", "offline", "--wandb-dir", str(wdir), "--run-id", f"runlog-{rid}", "--state", state]
            t_runlog = timed(cmd, env)
            t_bare = timed([sys.executable, str(bare_py), str(wdir), f"bare-{rid}"], env)
            if rep:
                times["runlog"].append(t_runlog)
                times["bare"].append(t_bare)
            print(f"rep {rep}{' (warm-up)' if not rep else ''}: runlog {t_runlog:.2f} s, bare run.log {t_bare:.2f} s")
        sessions = wdir / "wandb"
        a = last_values(next(sessions.glob("offline-run-*-runlog-r1")), env)
        b = last_values(next(sessions.glob("offline-run-*-bare-r1")), env)
        if a != b:
            sys.exit(f"the two uploads differ: {sorted(set(a.items()) ^ set(b.items()))[:5]}")
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["runlog"] / med["bare"]
        print(f"median: runlog {med['runlog']:.2f} s, bare {med['bare']:.2f} s, ratio {ratio:.2f}x (target <= 1.2x)")
        if args.markdown:
            print(markdown(times, med, ratio))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def markdown(times: dict[str, list[float]], med: dict[str, float], ratio: float) -> str:
    import wandb

    cpu = platform.processor() or platform.machine()
    runs = {k: ", ".join(f"{t:.2f}" for t in v) for k, v in times.items()}
    return f"""
## `runlog upload-wandb`: 10,000 steps x 50 keys, offline

`python benchmarks/upload_bench.py --reps {len(times["runlog"])} --markdown` ({cpu}, {os.cpu_count()} CPUs,
Python {platform.python_version()}, wandb {wandb.__version__}). Whole processes, interleaved, one untimed
warm-up round; the peer is a bare loop of `run.log(row, step=step)` with the same rows, steps,
`define_metric` calls and settings, its rows computed in memory. Both offline logs end with the same values
(checked with `wandb leet inspect --summary --json`).

| phase | median (s) | runs (s) |
| --- | ---: | --- |
| `runlog upload-wandb` (read run, plan, log, state file) | {med["runlog"]:.2f} | {runs["runlog"]} |
| bare `run.log` loop | {med["bare"]:.2f} | {runs["bare"]} |
| **ratio** | **{ratio:.2f}x** | target <= 1.2x |
"""


if __name__ == "__main__":
    main()
