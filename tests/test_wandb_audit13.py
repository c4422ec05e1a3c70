"""``upload-wandb``, thirteenth audit: samples without a split beside the train split's, upload options kept in
the state, +-inf rewards in the tables' best and worst picks, and escaped key names that are another key's.

Uploads are real ``runlog`` processes writing offline W&B runs, read back with W&B's own reader (the helpers of
test_wandb_upload); the table picks are read from the plan's payloads, as test_wandb_plan reads them. Expected
figures come from the raw files (``json``, pyarrow, numpy), never from runlog's own helpers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_wandb_audit9 import env, logged, run_upload, upload
from test_wandb_upload import histories, sessions, table

pytest.importorskip("wandb")

ROLE_T = pa.list_(pa.struct([("role", pa.string()), ("reward", pa.float64()), ("kl", pa.float64())]))


def write_step(root: Path, step: int, splits: list[str | None], rewards: list[float | None]) -> None:
    """One native sample file of ``step``: a sample per (split, reward), role ``solver`` with that reward."""
    n = len(rewards)
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([step] * n, pa.int64()),
            "split": pa.array(splits, pa.string()),
            "sample_id": [f"s{step}-{i}" for i in range(n)],
            "reward": pa.array(rewards, pa.float64()),
            "roles": pa.array([[{"role": "solver", "reward": r, "kl": 0.1}] for r in rewards], ROLE_T),
            "completion": [f"c{i}" for i in range(n)],
        }
    )
    (root / "samples" / "train").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        t.replace_schema_metadata({"runlog.schema_version": "2"}),
        root / "samples" / "train" / f"step_{step:08d}.p0.parquet",
    )


def make_run(root: Path, run_id: str = "a13") -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(
        json.dumps({"format": "runlog", "schema_version": 2, "run_id": run_id, "roles": ["solver"]})
    )
    return root


def truth_by_split(root: Path) -> dict[tuple[int, str | None], dict[str, Any]]:
    """Per (step, split): the sample ids, the valid rewards' mean and the finite rewards, from the raw files."""
    out: dict[tuple[int, str | None], dict[str, Any]] = {}
    for f in sorted((root / "samples").rglob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            d = out.setdefault((r["step"], r["split"]), {"ids": [], "rewards": []})
            d["ids"].append(r["sample_id"])
            d["rewards"].append(r["reward"])
    for d in out.values():
        x = np.array([v for v in d["rewards"] if v is not None], dtype=float)
        x = x[~np.isnan(x)]
        d["mean"], d["finite"] = float(x.mean()), int(np.isfinite(x).sum())
    return out


# ---------------------------------------------------------------------------------------------------------
# 1. Samples whose split is null beside the train split's: keyed apart, never mixed
# ---------------------------------------------------------------------------------------------------------


def test_samples_without_a_split_are_keyed_apart_from_the_train_split(tmp_path):
    """At each step 2 train samples and 3 without a split: W&B's unprefixed keys held one population's mean
    beside the other's histogram, and half the table rows were lost. Now each is logged under its own keys."""
    root, home = make_run(tmp_path / "run"), tmp_path / "home"
    for s in range(3):
        write_step(root, s, ["train", "train", None, None, None], [1.0 + s, 2.0, 0.0, -1.0 - s, 0.5])
    up = upload(root, home, "--max-samples-per-step", "8")
    truth = truth_by_split(root)
    [session] = sessions(home, "a13")
    [items] = histories([(session, env(home))])
    assert [it["_step"] for it in items] == [0, 1, 2]
    for it in items:
        s = it["_step"]
        for split, prefix in (("train", ""), (None, "no_split/")):
            t = truth[(s, split)]
            assert it[f"{prefix}debate/reward_total"] == pytest.approx(t["mean"])
            assert it[f"{prefix}debate/samples"] == len(t["ids"])
            assert it[f"{prefix}debate/reward/solver"] == pytest.approx(t["mean"])
            assert sum(it[f"{prefix}debate/reward_hist/solver.values"]) == t["finite"]
            rows = table(session, it, f"{prefix}full_trajectories")
            assert sorted(row[1] for row in rows["data"]) == sorted(t["ids"])  # every sample, its own table
    n_null = sum(len(t["ids"]) for (_, split), t in truth.items() if split is None)
    [note] = [n for n in up["notes"] if "no split" in n]
    assert note.startswith(f"{n_null} sample(s) at 3 step(s)") and "step_00000000.p0.parquet" in note, note


def test_a_run_without_splits_keeps_its_unprefixed_keys(tmp_path):
    from runlog import open_run
    from runlog.sinks import build_plan

    root = make_run(tmp_path / "run")
    write_step(root, 0, [None, None], [1.0, 3.0])
    plan = build_plan(open_run(root))
    [p] = plan.payloads()
    assert p.values["debate/samples"] == 2 and p.values["debate/reward_total"] == pytest.approx(np.mean([1.0, 3.0]))
    assert not [k for k in p.values if k.startswith("no_split")] and "full_trajectories" in p.tables
    assert not [n for n in plan.notes if "no split" in n]


# ---------------------------------------------------------------------------------------------------------
# 2. Upload options are part of the state
# ---------------------------------------------------------------------------------------------------------


def test_other_options_for_an_uploaded_run_are_refused(tmp_path):
    """A repeat upload asking for tables said "up to date" (no table ever logged), and a grown run uploaded
    with another --prefix split every per-role series at its first new step."""
    root, home = make_run(tmp_path / "run"), tmp_path / "home"
    for s in range(3):
        write_step(root, s, ["train"] * 3, [0.1, 0.2, 0.3 + s])
    upload(root, home, "--tables-every", "0")

    again = run_upload(root, home, "--tables-every", "1")
    assert again.returncode == 2 and again.stdout == ""
    [line] = again.stderr.splitlines()
    assert "--tables-every 0" in line and "--tables-every 1" in line and "--run-id" in line, line
    dry = run_upload(root, home, "--tables-every", "1", "--dry-run")
    assert dry.returncode == 2 and "--tables-every 0" in dry.stderr

    write_step(root, 3, ["train"] * 3, [0.4, 0.5, 0.6])  # the run grows
    other = run_upload(root, home, "--tables-every", "0", "--prefix", "rl")
    assert other.returncode == 2 and "--prefix debate" in other.stderr and "--prefix rl" in other.stderr
    assert len(sessions(home, "a13")) == 1  # nothing started for the refused uploads

    grown = upload(root, home, "--tables-every", "0")
    assert grown["after"] == 2 and grown["steps"] == 1
    items = logged(home, "a13")
    truth = truth_by_split(root)
    assert [it["_step"] for it in items] == [0, 1, 2, 3]
    for it in items:
        assert it["debate/reward/solver"] == pytest.approx(truth[(it["_step"], "train")]["mean"])
        assert not [k for k in it if k.startswith("rl/") or "full_trajectories" in k]


def test_an_entry_without_options_accepts_any(tmp_path):
    """An entry written before runlog kept the options is accepted as before (and records the next session's)."""
    root, home = make_run(tmp_path / "run"), tmp_path / "home"
    for s in range(2):
        write_step(root, s, ["train"] * 2, [0.1, 0.2 + s])
    upload(root, home, "--tables-every", "0")
    spath = root / ".runlog-wandb.json"
    state = json.loads(spath.read_text())
    [entry] = state["destinations"].values()
    assert entry["options"]["tables_every"] == 0 and entry["options"]["prefix"] == "debate"
    del entry["options"]
    spath.write_text(json.dumps(state))
    assert upload(root, home, "--tables-every", "1")["up_to_date"]
    write_step(root, 2, ["train"] * 2, [0.3, 0.4])
    assert upload(root, home, "--tables-every", "1")["steps"] == 1
    [entry] = json.loads(spath.read_text())["destinations"].values()
    assert entry["options"]["tables_every"] == 1


# ---------------------------------------------------------------------------------------------------------
# 3. +-inf rewards rank in the tables' best and worst, as in render-trajectory
# ---------------------------------------------------------------------------------------------------------


def test_infinite_rewards_are_the_tables_best_and_worst(tmp_path):
    from runlog import open_run
    from runlog.sinks import PlanOptions, build_plan

    root = make_run(tmp_path / "run")
    rewards = [0.9, math.inf, 0.5, math.nan, None, -math.inf, 0.7, 0.1, 0.3, math.inf, 0.2, -0.4]
    write_step(root, 0, ["train"] * len(rewards), rewards)
    raw = pq.read_table(root / "samples" / "train" / "step_00000000.p0.parquet").to_pylist()
    ranked = sorted(
        ((r["reward"], r["sample_id"]) for r in raw if r["reward"] is not None and not math.isnan(r["reward"])),
        key=lambda x: (-x[0], x[1]),
    )
    plan = build_plan(open_run(root), PlanOptions(max_samples_per_step=8, metrics=False))
    [p] = plan.payloads()
    t = p.tables["full_trajectories"]
    picks: dict[str, list[str]] = {}
    for row in t.rows:
        picks.setdefault(row[t.columns.index("pick")], []).append(row[t.columns.index("sample")])
    assert picks["best"] == [sid for _, sid in ranked[:2]] == ["s0-1", "s0-9"]  # both +inf
    assert picks["worst"] == [sid for _, sid in sorted(ranked, key=lambda x: (x[0], x[1]))[:2]] == ["s0-5", "s0-11"]


# ---------------------------------------------------------------------------------------------------------
# 4. A key whose escaped spelling is another key's: still escaped, with a suffix, and counted
# ---------------------------------------------------------------------------------------------------------


def test_a_key_whose_escaped_spelling_is_taken_is_still_escaped(tmp_path):
    root, home = make_run(tmp_path / "run"), tmp_path / "home"
    write_step(root, 0, ["train"] * 2, [0.1, 0.2])
    line = {"step": 0, "k\x1b[31m": 1.0, "k\\x1b[31m": 2.0, "\x07\\x07": 3.0, "\\x07\x07": 4.0, "ok": 5.0}
    (root / "scalars.p0.jsonl").write_text(json.dumps(line) + "\n")
    up = upload(root, home)
    [item] = logged(home, "a13")
    assert [k for k in item if not k.isprintable()] == []  # no raw control character sent
    raw = json.loads((root / "scalars.p0.jsonl").read_text())
    user = {k: v for k, v in item.items() if not k.startswith(("_", "debate/", "trainer/", "full_trajectories"))}
    # Every scalar of the line is its own series, with its own value: 5 names, 5 values.
    assert sorted(user.values()) == sorted(raw[k] for k in raw if k != "step")
    assert user["k\\x1b[31m"] == 2.0 and user["ok"] == 5.0
    [suffixed] = [k for k in user if k.startswith("k\\x1b[31m~")]
    assert user[suffixed] == 1.0
    assert len([k for k in user if k.startswith("\\x07\\x07")]) == 2
    [note] = [n for n in up["notes"] if "shown as escapes" in n]
    assert note.startswith("3 key or column name(s)") and "2 of them with ~" in note, note
