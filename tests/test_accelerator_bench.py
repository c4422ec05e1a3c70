"""Issue 17's accelerator benchmark stays runnable: its CPU mode (small sizes) completes and prints every loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "accelerator_writer_bench.py"


def test_accelerator_writer_bench_runs_on_cpu_jax():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--small", "--steps", "3", "--reps", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    loops = [row.split("|")[2].strip() for row in rows]
    assert loops == ["none", "float", "plain", "runlog", "runlog+st"] * 2, proc.stdout
    for row in rows:
        per_step = float(row.split("|")[3])
        assert per_step > 0
