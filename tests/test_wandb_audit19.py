"""``upload-wandb``, audit 19: two seeds whose Parquet files have the very same sizes, the dry run after an
interrupted offline upload, an empty split name, the cut cells of rows the size budget drops, and the scalar merge's
notes of a resumed upload.

Uploads are real ``runlog`` processes writing offline W&B runs, read back with W&B's own reader (the helpers of
test_wandb_upload and test_wandb_audit9); refusals and run ids are decided before W&B starts, so those are dry runs.
Expected figures come from the raw files (pyarrow, numpy, ``hashlib``, ``json``), never from runlog's own helpers.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import open_run
from test_wandb_audit9 import env, logged, run_upload, upload
from test_wandb_upload import histories, sessions, table

pytest.importorskip("wandb")

ROLE_T = pa.list_(pa.struct([("role", pa.string()), ("reward", pa.float64()), ("kl", pa.float64())]))


def seed_run(root: Path, seed: int, steps: int, run_id: str | None = "exp") -> Path:
    """A seed of one config, samples only, written by ``RunWriter``: every step's batch has the same shape, so
    every seed's file of a step has the same size (checked by the tests), its rewards drawn from ``seed``."""
    rnd = random.Random(seed)
    with runlog.RunWriter(root, name="exp", run_id=run_id or "x", roles=["solver"], durable=False) as w:
        for s in range(steps):
            rows = []
            for i in range(8):
                r = rnd.random()
                rows.append(
                    {"sample_id": f"{s}-{i}", "group_id": f"g{i // 4}", "reward": r, "prompt": f"prompt {i // 4}",
                     "completion": f"answer {i}", "roles": [{"role": "solver", "reward": r, "kl": 0.01}]}
                )  # fmt: skip
            w.log_samples(s, rows)
    if run_id is None:  # as every non-native layout: the id is derived from the path
        manifest = json.loads((root / "run.json").read_text())
        del manifest["run_id"]
        (root / "run.json").write_text(json.dumps(manifest))
    return root


def parquet_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted((root / "samples").rglob("*.parquet"))}


def same_sizes_other_bytes(a: Path, b: Path) -> None:
    """The precondition: the two seeds' files of each common step have one size and different bytes."""
    fa, fb = parquet_files(a), parquet_files(b)
    common = sorted(fa.keys() & fb.keys())
    assert common
    for name in common:
        assert fa[name].stat().st_size == fb[name].stat().st_size, name
        assert fa[name].read_bytes() != fb[name].read_bytes(), name


def dry(root: Path, home: Path, *extra: str) -> dict[str, Any]:
    return upload(root, home, "--dry-run", *extra)


# ---------------------------------------------------------------------------------------------------------
# 1. Two seeds with one run id, Parquet files of the same sizes: refused, not mixed into one W&B run
# ---------------------------------------------------------------------------------------------------------


def test_two_seeds_with_same_sized_parquet_files_are_not_mixed_into_one_w_and_b_run(tmp_path):
    """The auditor's repro: seed 1 (5 steps) uploaded, then seed 2 (8 steps) with the same manifest run_id and the
    same --state. The files were compared by size alone, so seed 2 went on into seed 1's W&B run (steps 5-7 of
    seed 2 after 0-4 of seed 1, exit 0). Now refused: exit 2, one line naming both runs."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    s1, s2 = seed_run(tmp_path / "s1", 1, 5), seed_run(tmp_path / "s2", 2, 8)
    same_sizes_other_bytes(s1, s2)
    first = upload(s1, home, "--state", str(state))
    assert first["steps"] == 5

    res = run_upload(s2, home, "--state", str(state))
    assert res.returncode == 2 and res.stdout == ""
    [line] = res.stderr.splitlines()
    assert line.startswith("Error: ") and str(s1) in line and str(s2) in line and "--run-id" in line, line
    assert len(sessions(home, "exp")) == 1  # nothing started for the refused upload
    assert [it["_step"] for it in logged(home, "exp")] == list(range(5))

    # The same run copied (new modification times, the same bytes) still goes on into its W&B run.
    import shutil

    shutil.copytree(s1, tmp_path / "s1-copy")
    copy = dry(tmp_path / "s1-copy", home, "--state", str(state))
    assert copy["up_to_date"] and any("holds the same files (moved or copied)" in n for n in copy["notes"]), copy


def test_the_state_records_a_hash_of_each_parquet_file(tmp_path):
    """What tells the seeds apart: a SHA-256 of each Parquet file's bytes, in the state's fingerprint."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    s1 = seed_run(tmp_path / "s1", 1, 3)
    upload(s1, home, "--state", str(state), "--tables-every", "0")
    [entry] = json.loads(state.read_text())["destinations"].values()
    files = parquet_files(s1)
    assert files
    for name, path in files.items():
        size, _mtime, digest = entry["fingerprint"][name]
        assert size == path.stat().st_size and digest == hashlib.sha256(path.read_bytes()).hexdigest(), name


def test_a_seed_without_a_run_id_is_not_taken_for_a_moved_run(tmp_path):
    """Without a manifest run_id the id is derived from the path; an entry whose path is gone, with files of the
    same names and sizes as this seed's, was taken for this run moved there (the other seed's W&B run)."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    s1 = seed_run(tmp_path / "s1", 1, 3, run_id=None)
    first = upload(s1, home, "--state", str(state), "--tables-every", "0")
    s2 = seed_run(tmp_path / "s2", 2, 3, run_id=None)
    same_sizes_other_bytes(s1, s2)
    import shutil

    shutil.rmtree(s1)
    second = dry(s2, home, "--state", str(state), "--tables-every", "0")
    assert second["run_id"] != first["run_id"] and second["after"] is None, second
    assert not any(first["run_id"] in n for n in second["notes"]), second["notes"]


def test_a_state_without_parquet_hashes_compares_size_and_time_then_records_them(tmp_path):
    """A state written before runlog hashed Parquet files (their hash null): another seed, of other modification
    times, is refused (by size alone it was taken for the same run); the run itself is up to date, and its state
    gets the hashes."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    s1, s2 = seed_run(tmp_path / "s1", 1, 3), seed_run(tmp_path / "s2", 2, 3)
    same_sizes_other_bytes(s1, s2)
    upload(s1, home, "--state", str(state), "--tables-every", "0")
    data = json.loads(state.read_text())
    [entry] = data["destinations"].values()
    for name in parquet_files(s1):
        entry["fingerprint"][name][2] = None
    state.write_text(json.dumps(data))

    res = run_upload(s2, home, "--state", str(state), "--tables-every", "0", "--dry-run")
    assert res.returncode == 2 and str(s1) in res.stderr and str(s2) in res.stderr, res.stderr

    again = upload(s1, home, "--state", str(state), "--tables-every", "0")
    assert again["up_to_date"], again
    [entry] = json.loads(state.read_text())["destinations"].values()
    for name, path in parquet_files(s1).items():
        assert entry["fingerprint"][name][2] == hashlib.sha256(path.read_bytes()).hexdigest(), name
    assert len(sessions(home, "exp")) == 1


# ---------------------------------------------------------------------------------------------------------
# 2. The dry run resumes where the upload resumes after an interrupted offline session
# ---------------------------------------------------------------------------------------------------------


def write_steps(root: Path, steps: range, run_id: str = "dr") -> Path:
    """Native sample files by hand (pyarrow), 3 samples a step."""
    (root / "samples" / "train").mkdir(parents=True, exist_ok=True)
    if not (root / "run.json").exists():
        manifest = {"format": "runlog", "schema_version": 2, "run_id": run_id, "roles": ["solver"]}
        (root / "run.json").write_text(json.dumps(manifest))
    for s in steps:
        rw = [0.1 * i + s for i in range(3)]
        t = pa.table(
            {
                "schema_version": pa.array([2] * 3, pa.int32()),
                "step": pa.array([s] * 3, pa.int64()),
                "split": ["train"] * 3,
                "sample_id": [f"s{s}-{i}" for i in range(3)],
                "reward": pa.array(rw, pa.float64()),
                "roles": pa.array([[{"role": "solver", "reward": r, "kl": 0.1}] for r in rw], ROLE_T),
                "completion": [f"c{i}" for i in range(3)],
            }
        )
        pq.write_table(
            t.replace_schema_metadata({"runlog.schema_version": "2"}),
            root / "samples" / "train" / f"step_{s:08d}.p0.parquet",
        )
    return root


@pytest.mark.parametrize("recorded", [2, 7], ids=["state-lags-the-log", "state-leads-the-log"])
def test_the_dry_run_resumes_where_the_upload_resumes(tmp_path, recorded):
    """After an interrupted offline session the state's last step lags the session's log (saved every quarter
    second) or leads it (W&B's service died first); the upload resumes after the log's last step, the dry run
    took the state's (it said steps 209..599 where the upload logged 213..599). The interrupted session is built
    cheaply: a finished one, its state entry set back to unfinished at another step."""
    root, home, state = write_steps(tmp_path / "run", range(6)), tmp_path / "home", tmp_path / "state.json"
    upload(root, home, "--state", str(state), "--tables-every", "0")
    data = json.loads(state.read_text())
    [entry] = data["destinations"].values()
    entry["last_step"], entry["complete"] = recorded, False
    state.write_text(json.dumps(data))
    write_steps(root, range(6, 9))  # the run grew meanwhile

    [session] = sessions(home, "dr")
    [items] = histories([(session, env(home))])
    log_last = max(it["_step"] for it in items)  # the truth: what the interrupted session's log holds

    would = dry(root, home, "--state", str(state), "--tables-every", "0")
    assert (would["after"], would["first_step"], would["last_step"]) == (log_last, log_last + 1, 8), would
    did = upload(root, home, "--state", str(state), "--tables-every", "0")
    assert (did["after"], did["first_step"], did["last_step"], did["steps"]) == (
        would["after"],
        would["first_step"],
        would["last_step"],
        would["steps"],
    )
    assert [it["_step"] for it in logged(home, "dr")] == list(range(9))  # no step twice, none missing


# ---------------------------------------------------------------------------------------------------------
# 3. An empty split name: keys of their own, not '/...'; a step W&B refuses is one line, exit 1
# ---------------------------------------------------------------------------------------------------------


def write_split_rows(root: Path, splits: list[str], rewards: list[float], run_id: str) -> Path:
    """One native sample file of step 0 written by another tool (pyarrow): a sample per (split, reward)."""
    (root / "samples" / "train").mkdir(parents=True)
    manifest = {"format": "runlog", "schema_version": 2, "run_id": run_id, "roles": ["solver"]}
    (root / "run.json").write_text(json.dumps(manifest))
    n = len(splits)
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([0] * n, pa.int64()),
            "split": pa.array(splits, pa.string()),
            "sample_id": [f"s{i}" for i in range(n)],
            "reward": pa.array(rewards, pa.float64()),
            "roles": pa.array([[{"role": "solver", "reward": r, "kl": 0.1}] for r in rewards], ROLE_T),
            "completion": [f"c{i}" for i in range(n)],
        }
    )
    path = root / "samples" / "train" / "step_00000000.p0.parquet"
    pq.write_table(t.replace_schema_metadata({"runlog.schema_version": "2"}), path)
    return path


def test_an_empty_split_name_is_logged_under_keys_of_its_own(tmp_path):
    """Rows whose split is '' (another tool wrote them): the upload failed with an internal error (W&B refused
    the table key '/full_trajectories', exit 3), leaving an empty offline session at each try, and the keys were
    '/debate/...'. Now they are 'empty_split_2/...' here, since a split is literally named 'empty_split'."""
    root, home = tmp_path / "run", tmp_path / "home"
    splits = ["train", "train", "", "", "", "empty_split"]
    rewards = [0.1, 0.3, 0.5, 0.6, 1.0, 0.25]
    path = write_split_rows(root, splits, rewards, "es")
    raw = pq.read_table(path).to_pylist()

    def mean(split: str) -> float:
        return float(np.mean([r["reward"] for r in raw if r["split"] == split]))

    would = dry(root, home)
    assert not [k for k in would["keys"] if k.startswith("/")], would["keys"]
    out = upload(root, home)
    assert any("empty split name" in n and "empty_split_2/" in n for n in out["notes"]), out["notes"]
    [session] = sessions(home, "es")
    [[item]] = histories([(session, env(home))])
    assert not [k for k in item if k.startswith("/")]
    assert item["debate/reward_total"] == pytest.approx(mean("train"))
    assert item["empty_split_2/debate/reward_total"] == pytest.approx(mean(""))
    assert item["empty_split_2/debate/reward/solver"] == pytest.approx(mean(""))
    assert item["empty_split/debate/reward_total"] == pytest.approx(mean("empty_split"))
    assert item["empty_split_2/debate/samples"] == sum(1 for r in raw if r["split"] == "")
    rows = table(session, item, "empty_split_2/full_trajectories")
    sample = rows["columns"].index("sample")
    assert sorted(r[sample] for r in rows["data"]) == sorted(r["sample_id"] for r in raw if r["split"] == "")


def test_a_step_w_and_b_refuses_is_one_line_and_exit_1(tmp_path):
    """A split W&B cannot take as a key's part ('/a': its table key starts with '/'): W&B's ValueError was an
    internal error (exit 3, 'please report it'); now one line naming the step and W&B's reason, exit 1."""
    root, home = tmp_path / "run", tmp_path / "home"
    write_split_rows(root, ["train", "/a"], [0.1, 0.2], "bad")
    res = run_upload(root, home)
    assert res.returncode == 1, res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith("Error: W&B refused step 0 of run bad: ValueError: ") and "artifact path" in line, line
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------------------------------------------------
# 4. Cut cells: only those of the rows the tables keep
# ---------------------------------------------------------------------------------------------------------


def test_cut_cells_count_only_the_rows_the_budget_keeps(tmp_path, monkeypatch):
    """Every text cell over the cell budget is cut; the step's budget then drops rows, and the cut cells of those
    rows were counted too ('278 rows (1500 cells cut)' where the tables held 834). A small byte budget stands in
    for W&B's 16 MB."""
    from runlog.sinks import PlanOptions, build_plan
    from runlog.sinks import tables as T
    from runlog.sinks.wandb import upload_wandb

    root = tmp_path / "run"
    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "cc"}))
    n = 40
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([0] * n, pa.int64()),
            "split": ["train"] * n,
            "sample_id": [f"s{i:02d}" for i in range(n)],
            "reward": pa.array([i / n for i in range(n)], pa.float64()),
            "prompt": ["p" * 3000] * n,
            "completion": ["c" * 3000] * n,
        }
    )
    pq.write_table(
        t.replace_schema_metadata({"runlog.schema_version": "2"}), root / "samples/train/step_00000000.p0.parquet"
    )
    monkeypatch.setattr(T, "TABLE_BYTES_BUDGET", 60_000)
    options = PlanOptions(max_samples_per_step=n, max_cell_chars=1000, metrics=False)

    [p] = build_plan(open_run(root), options).payloads()
    kept = p.tables["full_trajectories"].rows
    marked = sum(1 for row in kept for cell in row if isinstance(cell, str) and "[truncated" in cell)
    assert 0 < len(kept) < n and marked > 0  # rows were dropped, and the kept ones have cut cells
    result = upload_wandb(
        root, project="p", mode="offline", wandb_dir=tmp_path / "wb", dry_run=True, options=options,
        state_path=tmp_path / "state.json",
    )  # fmt: skip
    assert (result.table_rows, result.cut_cells) == (len(kept), marked)


# ---------------------------------------------------------------------------------------------------------
# 5. The scalar merge's notes speak of the steps the session sends
# ---------------------------------------------------------------------------------------------------------


def test_a_resumed_upload_does_not_repeat_merge_notes_of_steps_it_does_not_send(tmp_path):
    """Shards that disagree on a __count weight at step 0 and one process logging a quantity under two of its names
    at step 1: said by the first upload; a later upload of steps 3-4 said them again ('first 0', 'first 1')."""
    root, home = tmp_path / "run", tmp_path / "home"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "mn"}))
    p0 = [
        {"step": 0, "time": 1, "k": 1, "k__count": 10},
        {"step": 1, "time": 2, "grad_global_norm": 1.0, "grad/global_norm": 2.0},
        {"step": 2, "time": 3, "k": 2},
    ]
    p1 = [{"step": 0, "time": 1, "k": 3}, {"step": 1, "time": 2, "k": 4}, {"step": 2, "time": 3, "k": 5}]
    for name, lines in (("scalars.p0.jsonl", p0), ("scalars.p1.jsonl", p1)):
        (root / name).write_text("".join(json.dumps(x) + "\n" for x in lines))
    merge = ("__count weight", "two of its names")
    first = upload(root, home)
    assert all(any(m in n for n in first["notes"]) for m in merge), first["notes"]

    with open(root / "scalars.p0.jsonl", "a") as fh:
        fh.write("".join(json.dumps({"step": s, "time": 1 + s, "k": s}) + "\n" for s in (3, 4)))
    second = upload(root, home)
    assert (second["after"], second["first_step"], second["last_step"]) == (2, 3, 4)
    assert not [n for n in second["notes"] if any(m in n for m in merge)], second["notes"]
