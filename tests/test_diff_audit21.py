"""``runlog diff`` of runs whose rewards sit near the float64 limit (±1e308): the means are finite, but every
bootstrap replicate of their difference overflows. No raw numpy ``RuntimeWarning`` on stderr (the command's
output is one line per message), and a note says why there is no interval."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from runlog.writer import RunWriter

VALUES = (1e308, -1e308, 0.0, 1.0)


def _run(path: Path, seed: int) -> list[float]:
    rng = random.Random(seed)
    rewards: list[float] = []
    with RunWriter(path, name=path.name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(6):
            rows = []
            for g in range(4):
                for k in range(4):
                    r = rng.choice(VALUES)
                    rewards.append(r)
                    rows.append(
                        {
                            "sample_id": f"s{step}-{g}-{k}",
                            "group_id": f"g{g}",
                            "prompt": f"p{step}-{g}",
                            "completion": "x",
                            "reward": r,
                            "roles": {"solver": {"reward": r, "kl": 0.1}},
                        }
                    )
            w.log_samples(step, rows)
    return rewards


def test_a_diff_near_the_float_limit_says_why_it_has_no_interval_and_prints_no_raw_warning(tmp_path):
    a = _run(tmp_path / "a", 1)
    b = _run(tmp_path / "b", 2)
    env = {**os.environ, "RUNLOG_CACHE": "off", "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [sys.executable, "-m", "runlog", "diff", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "every bootstrap replicate of the reward difference" in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    rows = [r for r in out["points"] if r["metric"] == "reward"]
    assert rows, proc.stdout[:2000]
    # The means stay those of the values (exact: the window holds every step), with no interval and no verdict.
    exact_a, exact_b = (float(sum(map(Fraction, v)) / len(v)) for v in (a, b))
    for row in rows:
        assert row["ci_low"] is None and row["ci_high"] is None and row["verdict"] is None
        assert row["baseline"] == exact_a or abs(row["baseline"] - exact_a) <= 1e-12 * abs(exact_a)
        assert row["value"] == exact_b or abs(row["value"] - exact_b) <= 1e-12 * abs(exact_b)
