"""``--no-cache``: every command that opens a run takes it, and then nothing is read from or written to the
caches (the probe cache and the stored partials), with the same answer."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "sample_runs" / "debate_grpo"


def _runlog(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUNLOG_CACHE"}
    env["RUNLOG_CACHE_DIR"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "runlog", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _frame(csv: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(csv), infer_schema_length=None)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_no_cache_writes_nothing_and_answers_the_same(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    for p in run.rglob("*"):  # not "just written": such files are never cached
        os.utime(p, (1_600_000_000, 1_600_000_000))
    cold_cache, warm_cache = tmp_path / "cold", tmp_path / "warm"
    args = ["summarize", str(run), "--by", "role", "--by", "step", "-f", "csv"]
    cold = _runlog([*args, "--no-cache"], cold_cache)
    assert cold.returncode == 0, cold.stderr
    assert _files(cold_cache) == []
    warm = _runlog(args, warm_cache)
    assert warm.returncode == 0, warm.stderr
    assert any("partials" in p.parts for p in _files(warm_cache))  # the default does cache
    assert_frame_equal(_frame(warm.stdout), _frame(cold.stdout), check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize(
    "args",
    [
        ["inspect"],
        ["doctor"],
        ["metrics", "diversity"],
        ["metrics", "format"],
        ["render-trajectory", "--steps", "31", "--limit", "1"],
        ["watch", "--once", "--format", "json"],
    ],
)
def test_every_command_that_opens_a_run_takes_no_cache(tmp_path, args):
    cache = tmp_path / "cache"
    command = 2 if args[0] == "metrics" else 1
    proc = _runlog([*args[:command], str(RUN), *args[command:], "--no-cache"], cache)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(cache) == []
