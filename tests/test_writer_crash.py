"""A trainer killed with SIGKILL at a random moment leaves a run that ``runlog inspect`` reads cleanly: every
step on disk is whole (all its rows) and the steps are contiguous from 0.

benchmarks/writer_bench.py runs the same check over more trials.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from runlog import open_run

from conftest import ROOT

# The child writes steps as fast as it can; each step has a different number of rows and says how many it
# has, so a reader can tell a whole step from a part of one.
CHILD = textwrap.dedent(
    """
    import sys
    from runlog import RunWriter
    with RunWriter(sys.argv[1], roles=["solver", "judge"], max_queue=4) as w:
        print("ready", flush=True)
        for step in range(100000):
            n = 40 + step % 13
            w.log_samples(step, {
                "sample_id": [f"{step}-{i}" for i in range(n)],
                "reward": [i / n for i in range(n)],
                "solver_reward": [1.0] * n,
                "judge_kl": [0.01] * n,
                "completion": ["x" * 400] * n,
                "expected_rows": [n] * n,
            })
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1), "rows": n})
    """
)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def kill_at_random(run_dir: Path, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir)], stdout=subprocess.PIPE, env=child_env(), cwd=ROOT
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def check_run(run_dir: Path) -> dict[str, int]:
    """Assert what a crash must leave; return what was found (used by the benchmark's report too)."""
    res = subprocess.run(
        [sys.executable, "-m", "runlog", "inspect", str(run_dir), "--format", "json"],
        capture_output=True,
        env=child_env(),
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()
    report = json.loads(res.stdout)
    assert all(p["kind"] == "warning" for p in report["problems"])
    run = open_run(run_dir)
    if "expected_rows" not in run.samples.collect_schema():  # killed before the first step was written
        assert not [f for f in run.files if f.kind == "samples"]
        return {"steps": 0, "scalar_steps": 0, "warnings": len(report["problems"]), "tmp_left": 0}
    steps = (
        run.samples.group_by("step")
        .agg(pl.len().alias("rows"), pl.col("expected_rows").first(), pl.col("sample_id").n_unique().alias("ids"))
        .sort("step")
        .collect()
    )
    n = steps.height
    assert steps["step"].to_list() == list(range(n)), "steps are not contiguous from 0"
    assert steps["rows"].to_list() == steps["expected_rows"].to_list() == steps["ids"].to_list(), "a partial step"
    scalar_steps = sorted(set(run.scalars.collect()["step"].to_list()))
    assert scalar_steps == list(range(len(scalar_steps))), "scalar lines are not contiguous"
    return {
        "steps": n,
        "scalar_steps": len(scalar_steps),
        "warnings": len(report["problems"]),
        "tmp_left": sum(1 for p in report["problems"] if "temporary" in p["message"]),
    }


@pytest.mark.parametrize("trial", range(4))
def test_sigkill_leaves_whole_contiguous_steps(tmp_path, trial):
    rng = random.Random(trial)
    run_dir = tmp_path / "run"
    kill_at_random(run_dir, rng.uniform(0.15, 0.8))
    check_run(run_dir)
