"""Fleets (audit 22): a big run cut into chunks of steps keeps each step's rows in one chunk by the steps the rows
are of, not the step a file's name tells (a shard of step 2 written under step 3's name, a TRL copy of step 20
saved as ``completions_00021``), so that zero_adv_frac and the median of a run in a fleet are those of the run
alone; runs sharing files are refused pooled by their rows' steps too; the median note asks for no option given;
a glob of one run's files says that its prompt groups are cut. Expected figures come from the files (pyarrow,
numpy, fractions), never from runlog."""

from __future__ import annotations

import json
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis import summarize as S
from runlog.errors import UsageError
from runlog.fleet import plan_units, summarize_fleet

from conftest import REALDATA, write_native_samples

TRAIN = "samples/train"


def _frac(x: float) -> Fraction:
    """A share runlog printed as a float, as the fraction of small counts it is."""
    return Fraction(x).limit_denominator(1000)


def _rows(step: int, group: str, rewards: list[float], tag: str) -> list[dict]:
    return [
        {
            "schema_version": 2,
            "step": step,
            "split": "train",
            "sample_id": f"{tag}-{step}-{group}-{i}",
            "group_id": group,
            "env_name": "math",
            "reward": r,
            "reward_components": [],
            "roles": [{"role": "solver", "reward": r, "kl": 0.1}],
            "messages": [],
            "prompt": f"p-{group}",
            "completion": "x",
        }
        for i, r in enumerate(rewards)
    ]


def _run(root: Path) -> Path:
    """A native run of steps 0-3, each with two processes' shards (every group has samples in both), and
    ``step_00000003.p2.parquet`` holding rows of step 2: more samples of its groups g0 and g1, whose own rewards
    are all equal (alone they would be groups of zero advantage) but differ from the others' of the group."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": ["solver"]}))
    for step in range(4):
        p0 = _rows(step, "g0", [1.0, 1.0], "a") + _rows(step, "g1", [0.2, 0.4], "a") + _rows(step, "g2", [0.5], "a")
        p1 = _rows(step, "g0", [1.0, 1.0], "b") + _rows(step, "g1", [0.6, 0.8], "b") + _rows(step, "g2", [0.5], "b")
        write_native_samples(root / TRAIN / f"step_{step:08d}.p0.parquet", p0)
        write_native_samples(root / TRAIN / f"step_{step:08d}.p1.parquet", p1)
    extra = _rows(2, "g0", [0.0, 0.0], "c") + _rows(2, "g1", [0.3, 0.3], "c")
    write_native_samples(root / TRAIN / "step_00000003.p2.parquet", extra)
    return root


def _truth(root: Path) -> dict[int, tuple[Fraction, float]]:
    """Per step of its rows: the share of prompt groups (step, group_id) whose rewards are all equal, and the
    median reward, read with pyarrow from every sample file."""
    groups: dict[int, dict[str, list[float]]] = {}
    for f in sorted((root / TRAIN).glob("*.parquet")):
        t = pq.read_table(f, columns=["step", "group_id", "reward"]).to_pydict()
        for step, gid, r in zip(t["step"], t["group_id"], t["reward"], strict=True):
            groups.setdefault(step, {}).setdefault(gid, []).append(r)
    out = {}
    for step, of_step in groups.items():
        zero = sum(1 for rs in of_step.values() if len(set(rs)) == 1)
        rewards = [r for rs in of_step.values() for r in rs]
        out[step] = (Fraction(zero, len(of_step)), float(np.median(rewards)))
    return out


def _chunk_bytes(root: Path) -> int:
    """A chunk size that cuts the run into chunks of about one step (each step's two shards)."""
    return 2 * os.path.getsize(root / TRAIN / "step_00000000.p0.parquet") + 64


def test_a_step_whose_rows_a_file_of_another_steps_name_holds_is_read_in_one_chunk(tmp_path: Path):
    run = _run(tmp_path / "fleet" / "c")
    truth = _truth(run)
    assert truth[2][0] == Fraction(1, 3)  # g2 alone: g0 and g1 hold the c file's differing rewards
    task_bytes = _chunk_bytes(run)
    # The plan cuts the run by names: the file named step 3 is not in step 2's chunk (what made the cut).
    units, _ = plan_units([str(run)], task_bytes=task_bytes)
    step2 = next(u for u in units if f"{TRAIN}/step_00000002.p0.parquet" in (u.files or []))
    assert len(units) > 2 and f"{TRAIN}/step_00000003.p2.parquet" not in (step2.files or [])

    alone = S.summarize(open_run(run), ["step"], filters=S.Filters(splits=["train"]))
    result = summarize_fleet([str(run)], ["run", "step"], filters=S.Filters(splits=["train"]), task_bytes=task_bytes)
    frame = result.frame.drop("run")
    assert frame["step"].to_list() == alone["step"].to_list() == [0, 1, 2, 3]
    for got, want in zip(frame.iter_rows(named=True), alone.iter_rows(named=True), strict=True):
        zero, median = truth[got["step"]]
        assert got["zero_adv_frac"] == want["zero_adv_frac"] and _frac(got["zero_adv_frac"]) == zero
        assert got["reward_median"] == want["reward_median"] and math.isclose(got["reward_median"], median)
        assert got["reward_count"] == want["reward_count"]
    assert any("read again as one" in n for n in result.notes)
    assert not any("reward_median is left empty" in n for n in result.notes)


def test_per_role_zero_adv_frac_of_a_chunked_run_is_the_runs_alone(tmp_path: Path):
    run = _run(tmp_path / "fleet" / "c")
    truth = _truth(run)
    # Each group's solver rewards are its sample rewards: the share over every step's three groups.
    groups = 3 * len(truth)
    zero = sum(share * 3 for share, _ in truth.values())
    alone = S.summarize(open_run(run), ["role"])
    result = summarize_fleet([str(run)], ["run", "role"], task_bytes=_chunk_bytes(run))
    [row] = result.frame.to_dicts()
    assert _frac(row["zero_adv_frac"]) == zero / groups == _frac(alone["zero_adv_frac"][0])


def _trl(root: Path) -> Path:
    """TRL completions: step 10, step 20 with half of each prompt's samples (reward 1), and a copy of step 20's
    other half saved under step 21's name (reward 0): each prompt of step 20 has rewards 1, 1, 0, 0."""
    folder = root / "completions"
    folder.mkdir(parents=True)
    for name, step, reward in (("00010", 10, 1.0), ("00020", 20, 1.0), ("00021", 20, 0.0)):
        n = 8
        table = pa.table(
            {
                "step": [str(step)] * n,
                "prompt": [f"q{i // 2}" for i in range(n)],
                "completion": ["c"] * n,
                "accuracy_reward": [reward] * n,
            }
        )
        pq.write_table(table, folder / f"completions_{name}.parquet")
    return root


def test_a_trl_copy_of_a_step_saved_under_the_next_steps_name_keeps_its_prompt_groups(tmp_path: Path):
    run = _trl(tmp_path / "t")
    # Truth from the files: prompt groups (step column, prompt); all-equal ones over all of a step's.
    groups: dict[tuple[int, str], set[float]] = {}
    for f in sorted((run / "completions").glob("*.parquet")):
        t = pq.read_table(f).to_pydict()
        for step, prompt, r in zip(t["step"], t["prompt"], t["accuracy_reward"], strict=True):
            groups.setdefault((int(step), prompt), set()).add(r)
    share = {
        step: Fraction(sum(len(v) == 1 for (s, _), v in groups.items() if s == step), sum(s == step for s, _ in groups))
        for step in {s for s, _ in groups}
    }
    assert share == {10: 1, 20: 0}
    units, _ = plan_units([str(run)], task_bytes=3000)
    assert len(units) == 2  # 00021 in a chunk of its own, by its name
    for task_bytes in (3000, 10**9):
        result = summarize_fleet([str(run)], ["run", "step"], prompt_groups=True, task_bytes=task_bytes)
        got = dict(zip(result.frame["step"].to_list(), result.frame["zero_adv_frac"].to_list(), strict=True))
        assert {s: _frac(v) for s, v in got.items()} == share, task_bytes


def test_a_file_of_rows_of_several_steps_keeps_the_run_in_one_unit(tmp_path: Path):
    """A file whose rows are of several steps (named step 3, rows of steps 1 and 2) stands for no one step: the
    chunks its steps' other files are in are read with it, so every group is whole."""
    run = _run(tmp_path / "fleet" / "c")
    os.remove(run / TRAIN / "step_00000003.p2.parquet")
    extra = _rows(1, "g0", [0.0, 0.0], "c") + _rows(2, "g0", [0.0, 0.0], "c")
    write_native_samples(run / TRAIN / "step_00000003.p2.parquet", extra)
    truth = _truth(run)
    assert truth[1][0] == truth[2][0] == Fraction(1, 3)
    result = summarize_fleet([str(run)], ["run", "step"], task_bytes=_chunk_bytes(run))
    got = {r["step"]: r for r in result.frame.to_dicts()}
    for step, (zero, median) in truth.items():
        assert _frac(got[step]["zero_adv_frac"]) == zero and math.isclose(got[step]["reward_median"], median)


def test_shared_files_are_checked_by_the_steps_of_their_rows(tmp_path: Path):
    """b shares a's step-0 shard (a link) and has a file of its own named step 5 whose rows are of step 0: pooled,
    counting the shared shard in a alone would cut b's step-0 groups, though no name says step 0 twice."""
    root = tmp_path / "f"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": name}))
    write_native_samples(root / "a" / TRAIN / "step_00000000.p0.parquet", _rows(0, "g0", [1.0, 1.0], "a"))
    (root / "b" / TRAIN).mkdir(parents=True)
    os.symlink(root / "a" / TRAIN / "step_00000000.p0.parquet", root / "b" / TRAIN / "step_00000000.p0.parquet")
    write_native_samples(root / "b" / TRAIN / "step_00000005.p1.parquet", _rows(0, "g0", [0.0, 0.0], "b"))
    with pytest.raises(UsageError, match=r"b shares 1 file\(s\) with a .*\(split train, step 0\).*add --by run"):
        summarize_fleet([str(root / "a"), str(root / "b")], ["role"])
    per_run = summarize_fleet([str(root / "a"), str(root / "b")], ["run", "role"])
    assert per_run.frame["zero_adv_frac"].to_list() == [1.0, 0.0]  # b's one group: rewards 1, 1, 0, 0


def test_the_median_note_asks_for_no_option_given(tmp_path: Path):
    a, b = _run(tmp_path / "fleet" / "a"), _run(tmp_path / "fleet" / "b")
    pooled = summarize_fleet([str(a), str(b)], ["step"])
    [note] = [n for n in pooled.notes if n.startswith("reward_median is left empty")]
    assert "--by run" in note and "--by step" not in note
    chunked = summarize_fleet([str(a)], ["run", "role"], task_bytes=_chunk_bytes(a))
    [note] = [n for n in chunked.notes if n.startswith("reward_median is left empty")]
    assert "--by step" in note and "--by run" not in note


def test_a_glob_of_one_runs_files_says_its_prompt_groups_are_cut(cli, tmp_path: Path, monkeypatch):
    run = _run(tmp_path / "fleet" / "c")
    r = cli("summarize", f"{run}/{TRAIN}/step_0000000[01].*", "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert (
        f"4 runs are files of the same step of a run's samples (2 steps), in {run}/{TRAIN}, each read as a run" in said
    )
    assert "counts as a group in each (zero_adv_frac)" in said
    # What it says: each file's part of a group counted as a group (g2: one sample a file, its own group).
    zero = [len(set(t)) == 1 for f in sorted((run / TRAIN).glob("step_0000000[01].*")) for t in _groups(f)]
    assert _frac(json.loads(r.stdout)[0]["zero_adv_frac"]) == Fraction(sum(zero), len(zero))
    whole = cli("summarize", str(run), "--by", "role", "--format", "json")
    assert "files of the same step" not in whole.stderr
    # Typed in the split's folder, the paths lack their samples/<split>/ part: still files of one step.
    monkeypatch.chdir(run / TRAIN)
    r = cli("summarize", "step_00000001.p0.parquet", "step_00000001.p1.parquet", "--by", "run", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert "2 runs are files of the same step of a run's samples (1 step), in ." in " ".join(r.stderr.split())


def test_files_that_cut_no_group_get_no_note(cli, tmp_path: Path):
    """After review: the note fired for any two files of one folder: two unrelated dumps copied side by side
    (whose folder, pooled, is no run), and one process's step files (each holding its groups whole)."""
    run = _run(tmp_path / "fleet" / "c")
    one_process = sorted(str(f) for f in (run / TRAIN).glob("step_*.p0.parquet"))
    assert len(one_process) > 1
    r = cli("summarize", *one_process, "--by", "run", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert "files of the same step" not in r.stderr
    dumps = tmp_path / "evals"
    dumps.mkdir()
    for name in ("verifiers_math_python_gpt5nano_results.jsonl", "nemo_gym_tool_call_multireward_rollouts.jsonl"):
        shutil.copyfile(REALDATA / name, dumps / name)
    r = cli("summarize", *sorted(str(f) for f in dumps.iterdir()), "--by", "run", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert "files of one" not in r.stderr


def _groups(path: Path) -> list[tuple[float, ...]]:
    t = pq.read_table(path, columns=["group_id", "reward"]).to_pydict()
    out: dict[str, list[float]] = {}
    for g, r in zip(t["group_id"], t["reward"], strict=True):
        out.setdefault(g, []).append(r)
    return [tuple(v) for v in out.values()]


def test_plan_and_figures_of_a_run_whose_names_tell_its_steps_are_unchanged(tmp_path: Path):
    """Without a file of another step's name, no chunk is read twice: one read of each."""
    run = _run(tmp_path / "fleet" / "c")
    os.remove(run / TRAIN / "step_00000003.p2.parquet")
    units, _ = plan_units([str(run)], task_bytes=_chunk_bytes(run))
    result = summarize_fleet([str(run)], ["run", "step"], task_bytes=_chunk_bytes(run))
    assert result.units == len(units) > 2 and len(result.results) == len(units)
    assert not any("read again" in n for n in result.notes)
    truth = _truth(run)
    for row in result.frame.iter_rows(named=True):
        assert _frac(row["zero_adv_frac"]) == truth[row["step"]][0]
    assert pl.Series(result.frame["reward_median"]).null_count() == 0
