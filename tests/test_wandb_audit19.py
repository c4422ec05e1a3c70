"""``upload-wandb``, audit 19: two seeds whose Parquet files have the very same sizes, the dry run after an
interrupted offline upload, an empty split name, the cut cells of rows the size budget drops, and the scalar merge's
notes of a resumed upload; then the review of that work: a dry run without W&B's reader, split names W&B refuses and
key parts that stay over uploads, copies and moves told by the files' bytes, and each file hashed once.

Uploads are real ``runlog`` processes writing offline W&B runs, read back with W&B's own reader (the helpers of
test_wandb_upload and test_wandb_audit9); refusals and run ids are decided before W&B starts, so those are dry runs.
Expected figures come from the raw files (pyarrow, numpy, ``hashlib``, ``json``), never from runlog's own helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from test_wandb_audit9 import SRC, env, logged, run_upload, upload
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
    shutil.copytree(s1, tmp_path / "s1-copy", copy_function=shutil.copy)  # copy, not copy2: new times
    new_times(s1, tmp_path / "s1-copy")
    copy = dry(tmp_path / "s1-copy", home, "--state", str(state))
    assert copy["up_to_date"] and any("holds the same files (moved or copied)" in n for n in copy["notes"]), copy


def new_times(original: Path, copy: Path) -> None:
    """The precondition of a copy that did not keep the files' times: every Parquet file's differs."""
    for name, path in parquet_files(copy).items():
        assert path.stat().st_mtime_ns != (original / name).stat().st_mtime_ns, name


def drop_parquet_hashes(state: Path, root: Path) -> None:
    """The state as runlog wrote it before it hashed Parquet files: no hash of ``root``'s Parquet files."""
    data = json.loads(state.read_text())
    [entry] = data["destinations"].values()
    for name in parquet_files(root):
        entry["fingerprint"][name][2] = None
    state.write_text(json.dumps(data))


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
    drop_parquet_hashes(state, s1)

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


def hooked_env(home: Path, hook: Path, code: str) -> dict[str, str]:
    """The upload's environment with ``code`` run at the start of each Python process (``sitecustomize``): what a
    test needs changed inside the ``runlog`` process it starts."""
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(code)
    return env(home, PYTHONPATH=str(hook) + os.pathsep + SRC)


def test_a_step_w_and_b_refuses_is_one_line_and_exit_1(tmp_path):
    """W&B refusing a step (its ``run.log`` raising ValueError, as it did for a split named '/a': split names it
    refuses are now keyed apart, below): W&B's ValueError was an internal error (exit 3, 'please report it'); now
    one line naming the step and W&B's reason, exit 1."""
    root, home = tmp_path / "run", tmp_path / "home"
    write_split_rows(root, ["train", "eval"], [0.1, 0.2], "bad")
    refuse = (
        "import wandb.sdk.wandb_run as r\n"
        "def log(self, data, step=None, commit=None):\n"
        "    raise ValueError(\"Invalid artifact path: 'x'\")\n"
        "r.Run.log = log\n"
    )
    res = run_upload(root, home, environ=hooked_env(home, tmp_path / "hook", refuse))
    assert res.returncode == 1, res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith("Error: W&B refused step 0 of run bad: ValueError: ") and "artifact path" in line, line
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------------------------------------------------
# 4. Cut cells: only those of the rows the tables keep
# ---------------------------------------------------------------------------------------------------------


def test_cut_cells_count_only_the_rows_the_budget_keeps(tmp_path):
    """Every text cell over the cell budget is cut; the step's budget then drops rows, and the cut cells of those
    rows were counted too ('278 rows (1500 cells cut)' where the tables held 834). Compared with the table W&B
    logged (read back from the offline run's files); a small byte budget stands in for W&B's 16 MB."""
    root, home = tmp_path / "run", tmp_path / "home"
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
            "prompt": ["p" * 30_000] * n,  # over the 20,000 characters a cell keeps
            "completion": ["c" * 30_000] * n,
        }
    )
    pq.write_table(
        t.replace_schema_metadata({"runlog.schema_version": "2"}), root / "samples/train/step_00000000.p0.parquet"
    )
    budget = "import runlog.sinks.tables as T\nT.TABLE_BYTES_BUDGET = 300_000\n"
    res = run_upload(root, home, "--max-samples-per-step", str(n), environ=hooked_env(home, tmp_path / "hook", budget))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)

    [session] = sessions(home, "cc")
    [[item]] = histories([(session, env(home))])
    logged_rows = table(session, item, "full_trajectories")["data"]
    marked = sum(1 for row in logged_rows for cell in row if isinstance(cell, str) and "[truncated" in cell)
    assert 0 < len(logged_rows) < n and marked > 0  # rows were dropped, and the kept ones have cut cells
    assert (result["table_rows"], result["cut_cells"]) == (len(logged_rows), marked)


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


# ---------------------------------------------------------------------------------------------------------
# 6. The review of the above. A dry run that cannot read the interrupted session's log (no wandb, or W&B's reader
#    failing) takes the state's last step and says so; the upload says where it resumed
# ---------------------------------------------------------------------------------------------------------


def interrupt(state: Path, last_step: int, session_after: int) -> dict[str, Any]:
    """Set the state's one entry back to an interrupted session (the cheap way of test 2): returns the entry."""
    data = json.loads(state.read_text())
    [entry] = data["destinations"].values()
    entry.update(complete=False, last_step=last_step, session_after=session_after)
    state.write_text(json.dumps(data))
    return entry


def test_a_dry_run_without_w_and_b_s_reader_takes_the_states_last_step_and_says_so(tmp_path):
    """Without wandb importable the dry run planned from where the interrupted session began ('6 of 8 steps: 2..7,
    after step 1'), unsaid; the state's last step is 3. Now steps 4..7, with a note that the log was not read."""
    root, home, state = write_steps(tmp_path / "run", range(8)), tmp_path / "home", tmp_path / "state.json"
    upload(root, home, "--state", str(state), "--tables-every", "0")
    entry = interrupt(state, last_step=3, session_after=1)
    fake = tmp_path / "fake" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'wandb\'", name="wandb")\n')

    e = env(home, PYTHONPATH=str(fake.parent) + os.pathsep + SRC)
    res = run_upload(root, home, "--state", str(state), "--tables-every", "0", "--dry-run", environ=e)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["after"], out["first_step"], out["last_step"], out["steps"]) == (3, 4, 7, 4), out
    [note] = [n for n in out["notes"] if "could not be read" in n]
    assert entry["session_file"] in note and "step 3" in note and "after step 1" in note, note


def test_an_upload_that_cannot_read_the_interrupted_log_says_where_it_resumed(tmp_path):
    """A log W&B's reader refuses (not a W&B log): the upload resumes after the step the interrupted session began
    after, as before (no step skipped), and now says so."""
    root, home, state = write_steps(tmp_path / "run", range(6)), tmp_path / "home", tmp_path / "state.json"
    upload(root, home, "--state", str(state), "--tables-every", "0")
    entry = interrupt(state, last_step=4, session_after=1)
    Path(entry["session_file"]).write_bytes(b"not a W&B log")

    out = upload(root, home, "--state", str(state), "--tables-every", "0")
    assert (out["after"], out["first_step"], out["last_step"]) == (1, 2, 5), out
    [note] = [n for n in out["notes"] if "could not be read" in n]
    assert entry["session_file"] in note and "after step 1" in note, note
    second = sessions(home, "dr")[1]
    [items] = histories([(second, env(home))])
    assert [it["_step"] for it in items] == [2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------------------
# 7. Split names W&B refuses in a key get a key part of their own, as the empty one does
# ---------------------------------------------------------------------------------------------------------


def split_means(path: Path) -> dict[str | None, float]:
    rows = pq.read_table(path).to_pylist()
    return {s: float(np.mean([r["reward"] for r in rows if r["split"] == s])) for s in {r["split"] for r in rows}}


def split_ids(path: Path, split: str | None) -> list[str]:
    return sorted(r["sample_id"] for r in pq.read_table(path).to_pylist() if r["split"] == split)


def test_split_names_w_and_b_refuses_are_logged_under_key_parts_of_their_own(tmp_path):
    """'/eval' (a key that starts with '/'), '..' and 'c:' (a Windows drive): W&B refused the table key of each
    ('Invalid artifact path'), so the whole upload failed at step 0, exit 1, nothing logged. Now each is keyed
    renamed_split/ (numbered in the order the splits appear, then by name), with a note naming it."""
    root, home = tmp_path / "run", tmp_path / "home"
    splits = ["train", "train", "/eval", "/eval", "..", "..", "c:", "c:"]
    path = write_split_rows(root, splits, [0.1, 0.3, 1.2, 1.4, 2.5, 2.9, 3.0, 3.5], "hs")
    means = split_means(path)

    out = upload(root, home)
    [session] = sessions(home, "hs")
    [[item]] = histories([(session, env(home))])
    assert item["debate/reward_total"] == pytest.approx(means["train"])
    for split, part in {"..": "renamed_split", "/eval": "renamed_split_2", "c:": "renamed_split_3"}.items():
        assert item[f"{part}/debate/reward_total"] == pytest.approx(means[split]), split
        assert item[f"{part}/debate/reward/solver"] == pytest.approx(means[split]), split
        rows = table(session, item, f"{part}/full_trajectories")
        sample = rows["columns"].index("sample")
        assert sorted(r[sample] for r in rows["data"]) == split_ids(path, split)
        assert any(repr(split) in n and f"{part}/..." in n for n in out["notes"]), (split, out["notes"])
    assert not [k for k in item if k.startswith(("/", "../", "c:"))], sorted(item)


def test_a_split_whose_table_name_is_too_long_for_w_and_b_gets_a_key_part_of_its_own(tmp_path):
    """W&B names a table's artifact run-<run id>-<key> and refuses a name over 128 characters: a 45-character split
    with a 64-character --run-id failed the upload ('Artifact name is longer than 128 characters'), exit 1."""
    root, home = tmp_path / "run", tmp_path / "home"
    long, rid = "eval_" + "x" * 40, "r" * 64
    path = write_split_rows(root, ["train", "train", long, long], [0.1, 0.3, 1.2, 1.6], "ln")
    means = split_means(path)

    out = upload(root, home, "--run-id", rid)
    [session] = sessions(home, rid)
    [[item]] = histories([(session, env(home))])
    assert item["renamed_split/debate/reward_total"] == pytest.approx(means[long])
    assert not [k for k in item if k.startswith(long)]
    rows = table(session, item, "renamed_split/full_trajectories")
    assert sorted(r[rows["columns"].index("sample")] for r in rows["data"]) == split_ids(path, long)
    assert any(long in n and "128" in n for n in out["notes"]), out["notes"]


def test_the_split_names_refused_are_those_w_and_b_refuses():
    """runlog's rule against W&B's own checks (its artifact path validation and artifact name sanitising), over
    names near each edge, with a short and a 64-character run id."""
    paths = pytest.importorskip("wandb.sdk.lib.paths")
    internal = pytest.importorskip("wandb.sdk.artifacts._internal_artifact")
    from runlog.sinks.splits import refused

    rnd = random.Random(19)
    names = ["eval", "/eval", "eval/", "..", ".", "./x", "a/../b", "a\\..\\b", "\\a", "c:", "c:x", ":x", "a//b", " ",
             "x" * 30, "x" * 50, "é" * 60, "a b/c"]  # fmt: skip
    names += ["".join(rnd.choice("ab./\\: é") for _ in range(rnd.randint(1, 70))) for _ in range(300)]
    for rid in ("exp", "r" * 64):
        for split in names:
            key = f"{split}/full_trajectories"
            try:
                paths.validate_relpath(f"{key}.table.json")
                path_ok = True
            except ValueError:
                path_ok = False
            name_ok = len(internal.sanitize_artifact_name(f"run-{rid}-{key}")) <= 128
            assert (refused(split, rid) is None) == (path_ok and name_ok), (split, rid)


# ---------------------------------------------------------------------------------------------------------
# 8. A split's key part stays over uploads: a split that appears later never takes another's keys
# ---------------------------------------------------------------------------------------------------------


def write_step_splits(root: Path, step: int, splits: list[str | None], run_id: str, process: int = 0) -> Path:
    """A native sample file of one step written by another tool (pyarrow), one sample per split given; split k's
    rewards in [k, k + 1), so that no two splits' means can be taken for each other."""
    (root / "samples" / "train").mkdir(parents=True, exist_ok=True)
    if not (root / "run.json").exists():
        manifest = {"format": "runlog", "schema_version": 2, "run_id": run_id, "roles": ["solver"]}
        (root / "run.json").write_text(json.dumps(manifest))
    names = list(dict.fromkeys(splits))
    rewards = [names.index(s) + 0.1 * (i % 7) + 0.01 * step for i, s in enumerate(splits)]
    n = len(splits)
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([step] * n, pa.int64()),
            "split": pa.array(splits, pa.string()),
            "sample_id": [f"s{step}-{process}-{i}" for i in range(n)],
            "reward": pa.array(rewards, pa.float64()),
            "roles": pa.array([[{"role": "solver", "reward": r, "kl": 0.1}] for r in rewards], ROLE_T),
            "completion": [f"c{i}" for i in range(n)],
        }
    )
    path = root / "samples" / "train" / f"step_{step:08d}.p{process}.parquet"
    pq.write_table(t.replace_schema_metadata({"runlog.schema_version": "2"}), path)
    return path


@pytest.mark.parametrize(("odd", "literal"), [("", "empty_split"), (None, "no_split")], ids=["empty", "null"])
def test_a_split_that_appears_later_never_takes_the_keys_of_a_renamed_one(tmp_path, odd, literal):
    """Steps 0-1 with samples of the split '' (or of no split) beside train, uploaded: keyed empty_split/ (no_split/).
    Step 2 adds a split literally named empty_split (no_split): the renamed samples went to empty_split_2/ and the
    literal split took empty_split/, one key holding two populations. Now the literal split gets the other name."""
    root, home = tmp_path / "run", tmp_path / "home"
    files = [write_step_splits(root, s, ["train", "train", odd, odd], "mid") for s in (0, 1)]
    upload(root, home)
    files.append(write_step_splits(root, 2, ["train", "train", odd, odd, literal, literal], "mid"))
    out = upload(root, home)
    assert (out["first_step"], out["last_step"]) == (2, 2), out

    items = {it["_step"]: it for it in logged(home, "mid")}
    assert sorted(items) == [0, 1, 2]
    for step, path in enumerate(files):
        means = split_means(path)
        assert items[step][f"{literal}/debate/reward_total"] == pytest.approx(means[odd]), step
    assert items[2][f"{literal}_2/debate/reward_total"] == pytest.approx(split_means(files[2])[literal])
    assert not [k for s in (0, 1) for k in items[s] if k.startswith(f"{literal}_2/")]
    assert any(f"'{literal}'" in n and f"{literal}_2/..." in n for n in out["notes"]), out["notes"]


def test_the_state_keeps_each_splits_key_part_whatever_files_come_later(tmp_path):
    """The key parts are recorded in the state: a late file of step 0 (another process) holding a split literally
    named empty_split, at a step the split '' is at too, does not move the '' samples off empty_split/."""
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    for s in (0, 1):
        write_step_splits(root, s, ["train", "", ""], "rec")
    upload(root, home, "--state", str(state))
    [entry] = json.loads(state.read_text())["destinations"].values()
    assert entry["splits"] == [["", "empty_split"], ["train", "train"]]

    write_step_splits(root, 0, ["empty_split", "empty_split"], "rec", process=1)  # late: step 0 was uploaded
    step2 = write_step_splits(root, 2, ["train", "", "", "empty_split", "empty_split"], "rec")
    out = upload(root, home, "--state", str(state))
    assert (out["first_step"], out["last_step"]) == (2, 2), out
    items = {it["_step"]: it for it in logged(home, "rec")}
    means = split_means(step2)
    assert items[2]["empty_split/debate/reward_total"] == pytest.approx(means[""])
    assert items[2]["empty_split_2/debate/reward_total"] == pytest.approx(means["empty_split"])


def test_a_damaged_split_record_is_a_damaged_state(tmp_path):
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    write_step_splits(root, 0, ["train", ""], "dmg")
    wdir = str((home / "wb").resolve())
    entry = {"run_id": "dmg", "project": "p", "entity": None, "mode": "offline", "wandb_dir": wdir, "last_step": 0,
             "complete": True, "splits": [["", 3]]}  # fmt: skip
    data = {"format": "runlog-wandb-state", "version": 1, "destinations": {f"offline:{wdir}||p|dmg": entry}}
    state.write_text(json.dumps(data))
    res = run_upload(root, home, "--state", str(state), "--dry-run")
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.splitlines()
    assert "damaged upload state" in line and "splits" in line and str(state) in line, line


# ---------------------------------------------------------------------------------------------------------
# 9. Copies and moves are told by the files' bytes: new modification times are not changes, a file rewritten is
#    one file changed, not another run; a state without hashes says so
# ---------------------------------------------------------------------------------------------------------


def step_file(seed: int, step: int, tmp_path: Path) -> Path:
    """The Parquet file of ``step`` of seed ``seed`` (a run of that seed with one step more, written aside)."""
    full = tmp_path / f"full-{seed}-{step}"
    if not full.exists():
        seed_run(full, seed, step + 1)
    return parquet_files(full)[f"samples/train/step_{step:08d}.p0.parquet"]


def test_a_copy_with_new_modification_times_is_not_said_changed(tmp_path):
    """A run copied with ``cp -r`` (or unpacked from tar): every Parquet file of an uploaded step was said 'changed
    since; not re-sent' (thousands of lines on a real run), though the state's hashes show the same bytes."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    a = seed_run(tmp_path / "a", 1, 3)
    upload(a, home, "--state", str(state), "--tables-every", "0")
    b = tmp_path / "b"
    shutil.copytree(a, b, copy_function=shutil.copy)
    new_times(a, b)
    shutil.rmtree(a)
    shutil.copy(step_file(1, 3, tmp_path), b / "samples" / "train")

    out = upload(b, home, "--state", str(state), "--tables-every", "0")
    assert not [n for n in out["notes"] if "changed since" in n], out["notes"]
    assert (out["after"], out["first_step"], out["last_step"]) == (2, 3, 3), out
    assert [it["_step"] for it in logged(home, "exp")] == [0, 1, 2, 3]


def test_a_state_without_hashes_that_cannot_tell_a_copy_says_so(tmp_path):
    """A state written before runlog hashed Parquet files, and the run moved by tar (whole-second times): refused,
    as it cannot be told from another run, but the message said 'another run than ...'; now it says the state
    predates the hashes and how to go on."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    a = seed_run(tmp_path / "a", 1, 3)
    upload(a, home, "--state", str(state), "--tables-every", "0")
    drop_parquet_hashes(state, a)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    for name, path in parquet_files(b).items():
        whole = (a / name).stat().st_mtime_ns // 10**9 * 10**9  # tar keeps whole seconds
        os.utime(path, ns=(whole, whole))
    new_times(a, b)
    shutil.rmtree(a)

    res = run_upload(b, home, "--state", str(state), "--tables-every", "0", "--dry-run")
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.splitlines()
    assert "before runlog hashed Parquet files" in line and "--state FILE" in line and "--run-id" in line, line
    assert str(tmp_path / "a") in line and "another run than" not in line, line


def test_a_moved_run_with_one_file_rewritten_goes_on_and_says_that_file(tmp_path):
    """One uploaded step file rewritten in place (same size, other bytes), then the run moved: refused as another
    run (exit 2). Most files are the same bytes: the same run, the changed file said."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    a = seed_run(tmp_path / "a", 1, 5)
    upload(a, home, "--state", str(state), "--tables-every", "0")
    target = a / "samples" / "train" / "step_00000002.p0.parquet"
    other = step_file(2, 2, tmp_path)
    assert other.stat().st_size == target.stat().st_size and other.read_bytes() != target.read_bytes()
    shutil.copy(other, target)
    b = tmp_path / "b"
    a.rename(b)
    shutil.copy(step_file(1, 5, tmp_path), b / "samples" / "train")

    out = upload(b, home, "--state", str(state), "--tables-every", "0")
    assert (out["after"], out["first_step"], out["last_step"]) == (4, 5, 5), out
    changed = [n for n in out["notes"] if "changed since" in n and n.startswith("samples/")]
    assert changed == ["samples/train/step_00000002.p0.parquet: step 2 was uploaded and the file changed since; "
                       "not re-sent"], out["notes"]  # fmt: skip
    assert any("1 of its 5 files changed since" in n for n in out["notes"]), out["notes"]


def test_two_seeds_sharing_a_file_are_still_two_runs(tmp_path):
    """Seeds whose step 0 is the very same file (a deterministic first eval): the other files differ, so the
    second seed is still refused."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    s1, s2 = seed_run(tmp_path / "s1", 1, 4), seed_run(tmp_path / "s2", 2, 4)
    shutil.copy(s1 / "samples" / "train" / "step_00000000.p0.parquet", s2 / "samples" / "train")
    upload(s1, home, "--state", str(state), "--tables-every", "0")
    res = run_upload(s2, home, "--state", str(state), "--tables-every", "0", "--dry-run")
    assert res.returncode == 2 and "another run than" in res.stderr, res.stderr


def test_a_fork_of_a_run_still_where_it_was_is_refused(tmp_path):
    """A copy of an uploaded run, resumed from a checkpoint as another run (its last steps rewritten, more
    added) beside the original, which still holds its files as they were: most files are the original's, so it was
    taken for the run moved and its new steps went into the original's W&B run. Refused (exit 2); the original
    moved away instead still goes on."""
    home, state = tmp_path / "home", tmp_path / "state.json"
    a = seed_run(tmp_path / "a", 1, 6)
    upload(a, home, "--state", str(state), "--tables-every", "0")
    fork = tmp_path / "fork"
    shutil.copytree(a, fork)
    for step in (4, 5):  # resumed from the step-3 checkpoint with another seed: same sizes, other bytes
        other = step_file(7, step, tmp_path)
        target = fork / "samples" / "train" / f"step_{step:08d}.p0.parquet"
        assert other.stat().st_size == target.stat().st_size and other.read_bytes() != target.read_bytes()
        shutil.copy(other, target)
    shutil.copy(step_file(7, 6, tmp_path), fork / "samples" / "train")
    res = run_upload(fork, home, "--state", str(state), "--tables-every", "0", "--dry-run")
    assert res.returncode == 2 and "a fork" in res.stderr and str(a) in res.stderr, res.stderr
    moved = tmp_path / "moved"
    a.rename(moved)
    out = upload(moved, home, "--state", str(state), "--tables-every", "0", "--dry-run")
    assert out["up_to_date"], out


# ---------------------------------------------------------------------------------------------------------
# 10. Each file hashed once: shared by the checks of one upload, kept over uploads after a move; an object is
#     hashed a chunk at a time
# ---------------------------------------------------------------------------------------------------------


def test_a_moved_run_is_hashed_once_and_its_new_path_recorded(tmp_path, monkeypatch):
    """Moved (state kept apart): each Parquet file was hashed twice per upload (the source check, then the
    fingerprint), and at every later upload again, the state's path never updated. Now once, and the upload (not a
    dry run) records the new path and times: the next one reads nothing."""
    from runlog.sinks import PlanOptions
    from runlog.sinks import state as S
    from runlog.sinks.wandb import upload_wandb

    home, state = tmp_path / "home", tmp_path / "state.json"
    a = seed_run(tmp_path / "a", 1, 4)
    upload(a, home, "--state", str(state), "--tables-every", "0")
    b = tmp_path / "b"
    a.rename(b)

    reads: Counter[str] = Counter()
    original = S._head_sha

    def counted(path: Any, size: int) -> str | None:
        reads[Path(str(path)).name] += 1
        return original(path, size)

    monkeypatch.setattr(S, "_head_sha", counted)

    def check(dry_run: bool) -> Any:
        reads.clear()
        options = PlanOptions(tables_every=0, metrics=False)
        return upload_wandb(
            b, project="p", mode="offline", wandb_dir=home / "wb", state_path=state, options=options, dry_run=dry_run
        )

    def source() -> str:
        [entry] = json.loads(state.read_text())["destinations"].values()
        return entry["source"]

    names = {p.name for p in parquet_files(b).values()}
    assert check(dry_run=True).up_to_date
    assert {k: n for k, n in reads.items() if k in names} == dict.fromkeys(names, 1)
    assert source() == str(a.resolve())  # a dry run records nothing
    assert check(dry_run=False).up_to_date
    assert {k: n for k, n in reads.items() if k in names} == dict.fromkeys(names, 1)
    assert source() == str(b.resolve())
    assert check(dry_run=False).up_to_date
    assert not [k for k in reads if k in names], reads


def test_an_object_is_hashed_a_piece_at_a_time(monkeypatch):
    """A Parquet object of a run in an object store was read whole into memory to hash it (one read of its size: a
    step's file can be hundreds of megabytes); now a few megabytes at a time. An in-memory object store holds a
    20 MiB object; every read of it is recorded."""
    import obstore
    from obstore.store import MemoryStore

    from runlog.sinks import state as S
    from runlog.storage import ObjectMeta, ObjectPath, Store

    data = bytes(range(256)) * (80 * 1024) + b"!"
    key = "run/samples/train/step_00000000.p0.parquet"
    store = Store.__new__(Store)  # a bucket in memory: the attributes a read uses
    store.store, store._whole, store._tails, store._meta = MemoryStore(), {}, {}, {}
    obstore.put(store.store, key, data)
    store._meta[key] = ObjectMeta(key, len(data), 1.0)
    f = SimpleNamespace(path="samples/train/step_00000000.p0.parquet", abspath=ObjectPath(store, key), fmt="parquet")

    spans: list[int] = []
    get_range, get = obstore.get_range, obstore.get

    def ranged(store: Any, path: str, *, start: int, end: int | None = None, length: int | None = None) -> Any:
        spans.append((end if end is not None else start + (length or 0)) - start)
        return get_range(store, path, start=start, end=end, length=length)

    def whole(*args: Any, **kwargs: Any) -> Any:
        spans.append(len(data))  # a GET of the whole object
        return get(*args, **kwargs)

    monkeypatch.setattr(obstore, "get_range", ranged)
    monkeypatch.setattr(obstore, "get", whole)
    fp = S.fingerprint(SimpleNamespace(files=[f]))  # type: ignore[arg-type]
    assert fp == {f.path: [len(data), 10**9, hashlib.sha256(data).hexdigest()]}
    assert spans and sum(spans) == len(data) and max(spans) <= 8 << 20, spans
