"""Audit 17 (layouts, finding 1): render-trajectory picks its step (``last``, or ``--steps``) by the step the rows
are at, as every other command counts them, not by the step a file's name tells. A file whose rows are of
another step than its name (a copy, a rename, a TRL file that spans two steps) used to be left unopened: a TRL
run's last step, 4, was looked for in ``completions_00005.parquet`` alone (its name's 5 being the last name), and
the step-4 rows of ``completions_00003.parquet`` were never read: best reward 0.0 where step 4's best is 1.0.

Each expected figure is the one written into the files (the best reward among the rows whose own step is the
step asked for), never one of runlog's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.render.select import Criteria, plan_keep
from runlog.run import list_names

from conftest import make_flink_run, native_rows, write_native_samples


def _native(root: Path, files: dict[int, list[tuple[int, float]]]) -> Path:
    """A native run: for each step a file is named after, the (row step, reward) of its rows."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": ["solver"]}))
    for named, rows in files.items():
        out = []
        for i, (step, reward) in enumerate(rows):
            [row] = native_rows(step, 1, roles=("solver",))
            out.append({**row, "sample_id": f"f{named}-{i}", "reward": reward})
        write_native_samples(root / "samples" / "train" / f"step_{named:08d}.p0.parquet", out)
    return root


def _trl(root: Path, files: dict[int, list[tuple[int, float]]]) -> Path:
    """A TRL run (``completions/completions_NNNNN.parquet``, one reward function ``acc``), as ``_native``."""
    (root / "completions").mkdir(parents=True)
    for named, rows in files.items():
        table = {
            "step": [str(s) for s, _ in rows],  # TRL writes str(global_step)
            "prompt": ["p"] * len(rows),
            "completion": [f"c{named}-{i}" for i in range(len(rows))],
            "acc": [r for _, r in rows],
        }
        pq.write_table(pa.table(table), root / "completions" / f"completions_{named:05d}.parquet")
    return root


def _verl(root: Path, files: dict[int, list[tuple[int, float]]]) -> Path:
    """A verl run (``rollout/{step}.jsonl``, each line with its own ``step``), as ``_native``."""
    (root / "rollout").mkdir(parents=True)
    for named, rows in files.items():
        lines = [
            json.dumps({"input": "p", "output": f"c{named}-{i}", "gts": "4", "score": r, "step": s})
            for i, (s, r) in enumerate(rows)
        ]
        (root / "rollout" / f"{named}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return root


MAKERS = {"native": _native, "trl": _trl, "verl": _verl}

# The audit's run: the file named 3 holds steps 3 and 4, the file named 5 holds step 4 only.
SPANS = {3: [(3, 0.5), (3, 0.5), (4, 0.0), (4, 1.0)], 5: [(4, 0.0), (4, 0.0)]}
# A file named 5 whose rows are of step 3 (a copy renamed by hand): step 3 is the last, and its best is there.
RENAMED = {3: [(3, 0.2), (3, 0.1)], 5: [(3, 0.9), (3, 0.3)]}


def _truth(files: dict[int, list[tuple[int, float]]], step: int | None) -> tuple[int, float, float]:
    """(step, best reward, worst reward) of the rows whose own step is ``step`` (the last when None)."""
    rows = [r for part in files.values() for r in part]
    at = max(s for s, _ in rows) if step is None else step
    rewards = [r for s, r in rows if s == at]
    return at, max(rewards), min(rewards)


def _shown(cli: Any, root: Path, *args: str) -> list[tuple[int, float]]:
    r = cli("render-trajectory", root, "--format", "json", *args)
    assert r.exit_code == 0, r.output
    return [(c["step"], c["reward"]["total"]) for c in json.loads(r.stdout)]


@pytest.mark.parametrize("layout", sorted(MAKERS))
@pytest.mark.parametrize(
    ("files", "steps"),
    [(SPANS, None), (SPANS, "last"), (RENAMED, None), (RENAMED, "3")],
    ids=["spans-default", "spans-last", "renamed-default", "renamed-steps-3"],
)
def test_the_step_is_the_rows_step_not_the_names(cli, tmp_path, layout, files, steps):
    """The default (best and worst of the last step), ``--steps last`` and ``--steps N`` choose among every row
    at that step, wherever its file's name puts it (before: native and TRL showed the best of step 4 as 0.0
    and, with the renamed copy, no sample of the last step, or step 3's best as 0.2, not 0.9)."""
    root = MAKERS[layout](tmp_path / "run", files)
    step, best, worst = _truth(files, None if steps in (None, "last") else int(steps))
    extra = () if steps is None else ("--steps", steps)
    assert _shown(cli, root, *extra) == [(step, best), (step, worst)]
    assert _shown(cli, root, *extra, "--best", "1") == [(step, best)]


def test_the_default_and_steps_last_agree_with_steps_n(cli, tmp_path):
    """``--steps last`` and ``--steps 4`` (4 being the last step of the rows) answer alike (before: 0.0 and 1.0)."""
    root = _trl(tmp_path / "run", SPANS)
    assert _shown(cli, root, "--best", "1") == _shown(cli, root, "--steps", "4", "--best", "1") == [(4, 1.0)]


def test_names_leave_files_unopened_only_where_they_are_the_rows(tmp_path):
    """Where a file's rows count at their own step (native, TRL), every file is opened (its footer tells its
    rows' steps); a Flink file's rows are of its name's split and step whatever it holds, so there the names
    still settle which files are opened."""
    flink = make_flink_run(tmp_path / "flink", steps=range(3))
    native = _native(tmp_path / "native", {1: [(1, 0.0)], 2: [(2, 1.0)]})
    trl = _trl(tmp_path / "trl", {1: [(1, 0.0)], 2: [(2, 1.0)]})
    keep = plan_keep(list_names(flink), Criteria())
    assert keep is not None and keep("train", 2) and not keep("train", 1)
    assert plan_keep(list_names(native), Criteria()) is None
    assert plan_keep(list_names(trl), Criteria(steps="1")) is None


def test_a_split_whose_files_cannot_be_read_is_no_match_not_another_split(cli, tmp_path):
    """Every file is now opened (a native run's names settle nothing): a train split whose files cannot be read
    is still the default split, with no match and the files' reason (exit 1), not the eval samples shown in its
    place; ``--split train`` and ``--steps 2`` of it say the same, not an unknown split or step (exit 2)."""
    root = _native(tmp_path / "run", {1: [(1, 0.5)], 2: [(2, 1.0)]})
    eval_file = root / "samples" / "eval" / "step_00000002.p0.parquet"
    [row] = native_rows(2, 1, split="eval", roles=("solver",))
    write_native_samples(eval_file, [row])
    for f in (root / "samples" / "train").iterdir():
        f.write_bytes(f.read_bytes()[:40])  # truncated: no footer
    for args in ((), ("--split", "train"), ("--steps", "2")):
        res = cli("render-trajectory", root, "--format", "json", *args)
        assert res.exit_code == 1, (args, res.output)
        assert "no sample matches the selectors (split train" in res.stderr
        assert "step_00000002.p0.parquet" in res.stderr
    shown = cli("render-trajectory", root, "--split", "eval", "--format", "json")
    assert shown.exit_code == 0 and [c["split"] for c in json.loads(shown.stdout)] == ["eval"]
