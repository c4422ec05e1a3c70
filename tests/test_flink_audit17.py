"""Flink v1: a role with one of its two columns (``judge_reward`` without ``judge_kl``) counts the other as null
for each sample: a warning says why, so that ``kl_null`` 24 does not read as a KL logging that broke."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog.cli.app import app


def _run(root, kl_of_judge_at=()):
    logs = root / "flink_logs"
    logs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for s in range(3):
        n = 8
        cols = {
            "unique_sample_id": [f"s{s}-{i}" for i in range(n)],
            "reward": rng.random(n),
            "schema_version": [1] * n,
            "solver_reward": rng.random(n),
            "solver_kl": rng.random(n),
            "judge_reward": rng.random(n),
        }
        if s in kl_of_judge_at:
            cols["judge_kl"] = rng.random(n)
        pq.write_table(pa.table(cols), logs / f"batch_debug_data_train_{s}.parquet")
    return root


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_role_without_its_kl_column_is_said(tmp_path, cache):
    run = _run(tmp_path / "r", kl_of_judge_at=(2,))
    env = {"RUNLOG_CACHE_DIR": str(tmp_path / "c"), "RUNLOG_CACHE": cache}
    r = CliRunner().invoke(app, ["summarize", str(run), "--by", "role", "--format", "json"], env=env)
    assert r.exit_code == 0, r.output
    rows = {row["role"]: row for row in json.loads(r.stdout)}
    assert rows["judge"]["kl_null"] == 16 and rows["judge"]["kl_count"] == 8  # independent: 2 files x 8, 1 x 8
    said = [line for line in r.stderr.splitlines() if "judge_reward without judge_kl" in line]
    assert said == [
        "warning: flink_logs/batch_debug_data_train_0.parquet and 1 more file(s): judge_reward without judge_kl: "
        "the role's KL counts as null in this file"
    ], r.stderr
    assert "solver" not in " ".join(said)


def test_a_role_without_its_reward_column_is_said(tmp_path):
    run = tmp_path / "r"
    (run / "flink_logs").mkdir(parents=True)
    cols = {"unique_sample_id": ["a", "b"], "reward": [1.0, 0.0], "schema_version": [1, 1], "judge_kl": [0.1, 0.2]}
    t = pa.table(cols)
    pq.write_table(t, run / "flink_logs" / "batch_debug_data_train_0.parquet")
    r = CliRunner().invoke(app, ["inspect", str(run)], env={"RUNLOG_CACHE_DIR": str(tmp_path / "c"), "COLUMNS": "200"})
    assert "judge_kl without judge_reward: the role's reward counts as null in this file" in r.output


def test_whole_roles_are_not_said(tmp_path):
    run = _run(tmp_path / "r", kl_of_judge_at=(0, 1, 2))
    r = CliRunner().invoke(app, ["summarize", str(run), "--by", "role"], env={"RUNLOG_CACHE_DIR": str(tmp_path / "c")})
    assert r.exit_code == 0 and "without" not in r.stderr, r.stderr
