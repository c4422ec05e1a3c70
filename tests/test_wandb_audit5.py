"""``upload-wandb``, fifth audit: what is logged, and what is said, checked against the written data.

Every upload is a real ``runlog`` process writing an offline W&B run, read back with W&B's own reader (the
helpers of test_wandb_upload); the expected numbers come from the rows written (plain Python), the Parquet
files (pyarrow) and numpy, never from runlog's own helpers. The ``runlog`` that uploads is the one this test
imports (``PYTHONPATH``), so the test runs against whichever source tree is under test.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import runlog
from runlog.sinks import tables as T
from test_wandb_upload import histories, sessions, table, wandb_env

pytest.importorskip("wandb")

SRC = str(Path(runlog.__file__).resolve().parents[1])  # the runlog under test


def env(home: Path) -> dict[str, str]:
    e = wandb_env(home)
    e["PYTHONPATH"] = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    return e


def upload(run_dir: Path, home: Path, *extra: str) -> dict[str, Any]:
    """One ``upload-wandb`` process (offline, JSON report); its report, with ``stderr``."""
    cmd = [sys.executable, "-m", "runlog", "upload-wandb", str(run_dir), "--project", "p", "--mode", "offline",
           "--wandb-dir", str(home / "wb"), "--no-metrics", "--format", "json", *extra]  # fmt: skip
    res = subprocess.run(cmd, env=env(home), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    out["stderr"] = res.stderr
    return out


def items_of(home: Path, run_id: str) -> list[tuple[Path, dict[str, Any]]]:
    e = env(home)
    found = sessions(home, run_id)
    return [(s, item) for s, items in zip(found, histories([(s, e) for s in found]), strict=True) for item in items]


def clock():
    """A writer's clock: one second later at each call."""
    return itertools.count(1_700_000_001.0).__next__


def rows_for(step: int, rewards: list[float], *, kl: float = 0.01) -> list[dict[str, Any]]:
    return [
        {
            "reward": r,
            "sample_id": f"s{step}-{i}",
            "group_id": f"s{step}-g{i // 2}",
            "prompt": f"task {i // 2} of step {step}",
            "completion": f"answer {i}",
            "roles": {"solver": {"reward": r, "kl": kl}},
        }
        for i, r in enumerate(rewards)
    ]


# ---------------------------------------------------------------------------------------------------------
# 1. --max-samples-per-step 0..3
# ---------------------------------------------------------------------------------------------------------

REWARDS = {  # step -> rewards of its samples (distinct: one best, one worst)
    0: [0.3, 0.9, 0.1, 0.5, 0.7, 0.2],
    1: [0.4, 0.05, 0.8, 0.6, 0.35, 0.95],
    2: [1.0, 0.0, 0.5, 0.25, 0.75, 0.6],
}


def make_cap_run(root: Path) -> Path:
    with runlog.RunWriter(root, roles=["solver"], process_index=0, run_id="audit5-cap", clock=clock(),
                          durable=False) as w:  # fmt: skip
        for step, rewards in REWARDS.items():
            w.log_samples(step, rows_for(step, rewards))
            w.log_scalars(step, {"train/loss": 1.0 / (step + 1)})
    return root


def parquet_rewards(root: Path) -> dict[int, dict[str, float]]:
    """Per step, sample id -> total reward, read with pyarrow."""
    out: dict[int, dict[str, float]] = {}
    for f in sorted((root / "samples" / "train").glob("step_*.parquet")):
        t = pq.read_table(f, columns=["step", "sample_id", "reward"]).to_pylist()
        for r in t:
            out.setdefault(r["step"], {})[r["sample_id"]] = r["reward"]
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_pick_indices_never_exceeds_the_cap(n):
    """The picks of a step with more samples than the cap: never more than the cap (1 crashed: best + worst
    were 2, and the random draw was asked for -1); with 1 the best alone, with 2 the best and the worst."""
    rewards = [0.3, 0.9, 0.1, 0.5, float("nan"), 0.7, None, 0.2]
    ids = [f"x{i}" for i in range(len(rewards))]
    picked = T.pick_indices(ids, rewards, n, seed=0, key="train:0")
    assert len(picked) == n and len({i for i, _ in picked}) == n
    finite = [(r, i) for i, r in enumerate(rewards) if isinstance(r, float) and math.isfinite(r)]
    best, worst = max(finite)[1], min(finite)[1]
    kinds = dict((i, k) for i, k in picked)
    if n >= 1:
        assert kinds[best] == "best"
    if n >= 2:
        assert kinds[worst] == "worst"
    if n == 3:
        assert sorted(kinds.values()) == ["best", "random", "worst"]


def test_max_samples_per_step_one_uploads_the_best_sample(tmp_path):
    """``--max-samples-per-step 1`` (inside the documented 0..10,000) crashed with an internal error and
    uploaded nothing. Now: one table per step, one row each, the step's best sample by total reward (pyarrow's
    count), and every step's numbers logged."""
    root = make_cap_run(tmp_path / "run")
    truth = parquet_rewards(root)
    up = upload(root, tmp_path / "home", "--max-samples-per-step", "1")
    assert up["steps"] == 3 and up["tables"] == 3 and up["table_rows"] == 3
    seen = {}
    for session, item in items_of(tmp_path / "home", "audit5-cap"):
        t = table(session, item, "full_trajectories")
        cols = t["columns"]
        [row] = t["data"]
        seen[item["_step"]] = (row[cols.index("sample")], row[cols.index("pick")])
        rewards = truth[item["_step"]]
        assert item["debate/reward_total"] == pytest.approx(sum(rewards.values()) / len(rewards))
    assert seen == {s: (max(r, key=r.get), "best") for s, r in truth.items()}


@pytest.mark.parametrize("n", [0, 2, 3])
def test_max_samples_per_step_dry_run_counts(tmp_path, n):
    """The dry run's table rows for 0, 2 and 3: min(n, samples) per step (an independent count), no table
    at all with 0."""
    root = make_cap_run(tmp_path / "run")
    truth = parquet_rewards(root)
    up = upload(root, tmp_path / "home", "--max-samples-per-step", str(n), "--dry-run")
    assert up["table_rows"] == sum(min(n, len(r)) for r in truth.values())
    assert up["tables"] == (0 if n == 0 else len(truth))


# ---------------------------------------------------------------------------------------------------------
# 2. a scalars shard that appears after an upload, holding uploaded steps
# ---------------------------------------------------------------------------------------------------------


def test_a_late_new_scalars_shard_is_noted(tmp_path):
    """After an upload of steps 0-2, a new ``scalars.p1.jsonl`` (a process that lagged behind) holds steps 0
    and 2, already in W&B, and step 3, new. Only step 3 can be sent (W&B keeps a step's first row); the
    other two were dropped without a word. Now one note names the file and the steps 0, 2, as for lines
    appended to an existing shard; step 3 is logged with the shard's value, steps 0-2 not again."""
    root = make_cap_run(tmp_path / "run")
    home = tmp_path / "home"
    upload(root, home, "--tables-every", "0")
    lines = [{"step": 0, "time": 1_700_000_100.0, "train/loss": 50.0}, {"step": 2, "time": 1_700_000_101.0,
             "train/loss": 60.0}, {"step": 3, "time": 1_700_000_102.0, "train/loss": 70.0}]  # fmt: skip
    (root / "scalars.p1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    up = upload(root, home, "--tables-every", "0")
    late = [n for n in up["notes"] if "scalars.p1.jsonl" in n]
    assert len(late) == 1, up["notes"]
    assert "new file with lines for step(s) 0, 2 (at or before the last uploaded step 2" in late[0]
    assert "not sent" in late[0]
    assert late[0] in up["stderr"]
    logged = [item for _, item in items_of(home, "audit5-cap")]
    assert [item["_step"] for item in logged] == [0, 1, 2, 3]
    last = [item for item in logged if item["_step"] == 3]
    assert last[0]["train/loss"] == 70.0


# ---------------------------------------------------------------------------------------------------------
# 4. a role named "unknown" beside samples without per-role data; 5. rewards beyond the float range
# ---------------------------------------------------------------------------------------------------------


def test_role_named_unknown_keeps_its_own_keys(tmp_path):
    """Role ``unknown`` (rewards 0.0, 0.2, KL 0.5) and samples without per-role data (rewards 10, 12): they
    shared ``debate/reward/unknown`` (10 logged, the role-less samples' mean), ``debate/kl/unknown`` (the
    role's 0.5) and one histogram of both. Now the role keeps its keys and the role-less samples are under
    ``debate/no_role/...``, said in a note."""
    root = tmp_path / "run"
    named = [0.0, 0.2]
    loose = [10.0, 12.0]
    with runlog.RunWriter(root, roles=["unknown", "solver"], process_index=0, run_id="audit5-unk", clock=clock(),
                          durable=False) as w:  # fmt: skip
        rows = [
            {
                "reward": 1.0,
                "sample_id": f"a{i}",
                "roles": {"unknown": {"reward": r, "kl": 0.5}, "solver": {"reward": 1.0, "kl": 0.1}},
            }  # fmt: skip
            for i, r in enumerate(named)
        ]
        rows += [{"reward": r, "sample_id": f"b{i}"} for i, r in enumerate(loose)]
        w.log_samples(0, rows)
    home = tmp_path / "home"
    up = upload(root, home, "--tables-every", "0")
    [(_, item)] = items_of(home, "audit5-unk")
    assert item["debate/reward/unknown"] == pytest.approx(sum(named) / len(named))
    assert item["debate/kl/unknown"] == pytest.approx(0.5)
    assert item["debate/no_role/reward"] == pytest.approx(sum(loose) / len(loose))
    assert "debate/no_role/kl" not in item
    assert sum(item["debate/reward_hist/unknown.values"]) == len(named)
    assert sum(item["debate/no_role/reward_hist.values"]) == len(loose)
    bins = item["debate/no_role/reward_hist.bins"]
    assert bins[0] == min(loose) and bins[-1] == max(loose)
    assert [n for n in up["notes"] if "debate/no_role/reward" in n and "'unknown'" in n], up["notes"]


def test_samples_without_roles_keep_the_documented_key(tmp_path):
    """Without a role named ``unknown`` nothing changes for existing dashboards: samples without per-role data
    are ``debate/reward/unknown`` (their mean, by hand), no ``no_role`` key and no note."""
    root = tmp_path / "run"
    with runlog.RunWriter(root, process_index=0, run_id="audit5-norole", clock=clock(), durable=False) as w:
        w.log_samples(0, [{"reward": r, "sample_id": f"b{i}"} for i, r in enumerate([1.0, 3.0])])
    up = upload(root, tmp_path / "home", "--tables-every", "0")
    [(_, item)] = items_of(tmp_path / "home", "audit5-norole")
    assert item["debate/reward/unknown"] == pytest.approx(2.0)
    assert not [k for k in item if "no_role" in k] and not [n for n in up["notes"] if "no_role" in n]


def test_histogram_of_rewards_beyond_the_float_range(tmp_path):
    """Rewards -1.7e308, 0 and 1.7e308: the bin width overflowed, the edges were NaN and every count 0, with
    no note. Now the edges are finite, from the min to the max, and the counts are numpy's with those edges:
    3 values in the bins."""
    values = [-1.7e308, 0.0, 1.7e308]
    root = tmp_path / "run"
    with runlog.RunWriter(root, roles=["solver"], process_index=0, run_id="audit5-hist", clock=clock(),
                          durable=False) as w:  # fmt: skip
        w.log_samples(0, [{"reward": v, "sample_id": f"h{i}", "roles": {"solver": {"reward": v}}}
                          for i, v in enumerate(values)])  # fmt: skip
    home = tmp_path / "home"
    upload(root, home, "--tables-every", "0")
    [(_, item)] = items_of(home, "audit5-hist")
    counts = item["debate/reward_hist/solver.values"]
    bins = item["debate/reward_hist/solver.bins"]
    assert all(isinstance(b, float) and math.isfinite(b) for b in bins), bins  # NaN edges read back as 'NaN'
    assert bins == sorted(bins)
    assert bins[0] == min(values) and bins[-1] == max(values)
    assert sum(counts) == len(values)
    assert counts == np.histogram(np.array(values), bins=np.array(bins))[0].tolist()


# ---------------------------------------------------------------------------------------------------------
# 7. a resumed upload speaks of its own steps
# ---------------------------------------------------------------------------------------------------------


def test_resumed_upload_does_not_repeat_notes_of_earlier_steps(tmp_path):
    """Step 1 has a +inf reward (in no histogram bin: a note). After the run grows by steps 3-4 (finite
    rewards), the second upload sends steps 3-4 only, and said again that step 1's value is in no histogram.
    Now it says nothing of it; a third upload, of a step 5 with -inf, names step 5."""
    root = tmp_path / "run"
    with runlog.RunWriter(root, roles=["solver"], process_index=0, run_id="audit5-resume", clock=clock(),
                          durable=False) as w:  # fmt: skip
        for step in range(3):
            w.log_samples(step, rows_for(step, [0.1, float("inf") if step == 1 else 0.5, 0.9]))
    home = tmp_path / "home"
    first = upload(root, home, "--tables-every", "0")
    assert [n for n in first["notes"] if "infinite" in n and "first: step 1" in n], first["notes"]

    with runlog.RunWriter(root, roles=["solver"], process_index=0, run_id="audit5-resume", durable=False) as w:
        for step in (3, 4):
            w.log_samples(step, rows_for(step, [0.2, 0.4, 0.6]))
    second = upload(root, home, "--tables-every", "0")
    assert (second["first_step"], second["last_step"], second["after"]) == (3, 4, 2)
    assert not [n for n in second["notes"] if "infinite" in n], second["notes"]
    assert "infinite" not in second["stderr"]

    with runlog.RunWriter(root, roles=["solver"], process_index=0, run_id="audit5-resume", durable=False) as w:
        w.log_samples(5, rows_for(5, [0.2, float("-inf"), 0.6]))
    third = upload(root, home, "--tables-every", "0")
    [note] = [n for n in third["notes"] if "infinite" in n]
    assert note.startswith("1 infinite reward(s)") and "first: step 5" in note
    logged = [item["_step"] for _, item in items_of(home, "audit5-resume")]
    assert logged == list(range(6))
