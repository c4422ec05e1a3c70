"""``runlog inspect`` (audit 14): a split of two steps tells no stride, and says so (the scalars' steps do not tell
it: healthy schedules were called lossy); a verdict that says what was read; inspect_ai log versions tallied;
zero-row steps, steps beyond the int64 range, "1 key", rows per split. Expected figures come from the files the
tests write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

import runlog
from runlog.analysis.inspect import step_gaps

from conftest import REALDATA, make_native_run, native_rows, need_realdata, write_native_samples

TRAIN = "samples/train/step_{:08d}.p{}.parquet"


def _report(cli, root: Path, *args: str) -> tuple[int, dict]:
    r = cli("inspect", root, "--format", "json", *args)
    return r.exit_code, json.loads(r.stdout)


def _warnings(r: dict) -> list[str]:
    return [p["message"] for p in r["problems"] if p["kind"] == "warning"]


def _run(root: Path, steps: list[int], scalars: range | list[int] | None = None, processes: int = 1) -> Path:
    """A native run (no writer state files) with train files of ``steps`` only, and a scalar line per step of
    ``scalars`` (default: every step 0 to the last)."""
    make_native_run(root, range(max(steps) + 1), processes=processes, scalars=False)
    for s in range(max(steps) + 1):
        if s not in steps:
            for p in range(processes):
                (root / TRAIN.format(s, p)).unlink()
    with open(root / "scalars.p0.jsonl", "w") as fh:
        for s in range(max(steps) + 1) if scalars is None else scalars:
            fh.write(json.dumps({"step": s, "time": 1000.0 + s, "train/loss": 1.0}) + "\n")
    return root


# -- 1. two steps, and the steps beyond a split's first and last --------------------------------------------


def test_two_steps_tell_no_stride_and_the_table_says_so(tmp_path, cli):
    """Train files of steps 0 and 9 only: one difference is no stride. It said stride 9 and nothing more; now the
    table says the stride is not known, and that steps lost between them cannot be told from a sparser schedule.
    (A first fix took the scalars' steps between them as the stride: 99 steps "missing" in healthy runs, below.)"""
    assert step_gaps([0, 9]) == (9, [])
    root = _run(tmp_path / "r", [0, 9])
    code, r = _report(cli, root, "--strict")
    assert code == 0 and r["step_stride"] == {"train": 9} and r["step_stride_from"] == {"train": "unknown"}
    table = " ".join(cli("inspect", root).stdout.split())
    assert "9 (not known)" in table and "cannot be told from a sparser schedule" in table


def _schedule(root: Path, train: range, evals: list[int], scalars: range) -> Path:
    with runlog.RunWriter(root, name="r") as w:
        for s in sorted(set(train) | set(evals) | set(scalars)):
            if s in train:
                w.log_samples(s, {"reward": [0.5] * 2})
            if s in evals:
                w.log_samples(s, {"reward": [0.5] * 2}, split="eval")
            if s in scalars:
                w.log_scalars(s, {"train/loss": 1.0})
    return root


def test_healthy_schedules_are_not_said_lost(tmp_path, cli):
    """Schedules an audit found called lossy by the scalars' steps (a first fix of this audit): a baseline eval at
    0 and a final one at 100 beside train saved every 10 and the loss every step ("99 step(s) missing"); samples
    every 50 and scalars every 10 (JaxARC's defaults); eval from step 100 after a warm-up. None has lost a step."""
    runs = [
        _schedule(tmp_path / "a", range(0, 101, 10), [0, 100], range(0, 101)),
        _schedule(tmp_path / "b", range(0, 51, 50), [], range(0, 91, 10)),
        _schedule(tmp_path / "c", range(0, 201, 50), list(range(100, 201, 20)), range(0, 201, 10)),
    ]
    for root in runs:
        code, r = _report(cli, root, "--strict")
        assert code == 0 and _warnings(r) == [], (root.name, _warnings(r))
        doctor = json.loads(cli("doctor", root, "--format", "json").stdout)
        assert not [f for f in doctor["findings"] if f["kind"] in ("step_gaps", "data_problem")], root.name


def test_processes_that_start_late_or_stop_early_are_not_said_lost(tmp_path, cli):
    """Without writer state files, a process whose files start after another's or stop before (a process that
    joined late, a final eval sharded over more processes) is no loss to be told: nothing is said (a hole inside
    a process's own steps is, by discovery)."""
    root = make_native_run(tmp_path / "late", range(10), processes=2)
    for s in (0, 1, 2):
        (root / TRAIN.format(s, 1)).unlink()
    _, r = _report(cli, root)
    assert _warnings(r) == []


# -- 3. the verdict says what was read ------------------------------------------------------------------------


def test_the_verdict_says_plain_inspect_read_the_parquet_footers_only(tmp_path, cli):
    """A corrupt data page behind an intact footer passes plain inspect: its verdict said 'valid: no problems
    found.' with no word of what it read."""
    root = make_native_run(tmp_path / "r", range(3))
    last = cli("inspect", root).stdout.strip().splitlines()[-1]
    assert last.startswith("valid: no problems found.") and "footers read, not their data pages" in last
    last = cli("inspect", root, "--deep").stdout.strip().splitlines()[-1]
    assert "footers and the numeric and key columns read" in last


# -- 4. inspect_ai versions -----------------------------------------------------------------------------------


def test_inspect_ai_log_versions_are_tallied(tmp_path, cli):
    """A v2 log and a copy edited to v3: schema_versions was {} and by_version {'-': 1, 'unreadable': 1}."""
    need_realdata("inspect_ai_security_guide_eval_log.json")
    text = (REALDATA / "inspect_ai_security_guide_eval_log.json").read_text()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "v3.json").write_text(text.replace('"version": 2', '"version": 3', 1))
    shutil.copy(REALDATA / "inspect_ai_security_guide_eval_log.json", tmp_path / "d" / "v2.json")
    code, r = _report(cli, tmp_path / "d")
    assert code == 1
    assert r["schema_versions"] == {"2": 1, "3": 1}
    assert r["layouts"]["inspect_ai"]["by_version"] == {"2": 1, "3 (skipped)": 1}
    assert {f["path"]: f["schema_version"] for f in r["files"]} == {"v2.json": 2, "v3.json": 3}


# -- 5. minor ------------------------------------------------------------------------------------------------


def test_a_step_whose_file_holds_no_rows_is_said(tmp_path, cli):
    """A zero-row file (a step whose rollouts were all filtered out) counts its step as present, as documented,
    and is now said: ``empty_steps`` and a line under the Splits table."""
    root = make_native_run(tmp_path / "r", [0, 1, 3])
    write_native_samples(root / TRAIN.format(2, 0), [])
    code, r = _report(cli, root)
    assert code == 0 and r["step_gaps"] == {"train": []} and r["empty_steps"] == {"train": [2]}
    assert "step(s) 2 hold no rows" in " ".join(cli("inspect", root).stdout.split())


def test_a_step_beyond_the_int64_range_is_refused_not_counted_as_billions_missing(tmp_path, cli):
    """A uint64 step column holding 2**63 + 5 made "9223372036854775810 step(s) missing"."""
    root = make_native_run(tmp_path / "r", [0, 1, 3])
    table = pa.Table.from_pylist(native_rows(2, 4), schema=runlog.schema.NATIVE_SAMPLE_SCHEMA)
    i = table.schema.get_field_index("step")
    table = table.set_column(i, pa.field("step", pa.uint64()), pa.array([2**63 + 5] * 4, pa.uint64()))
    pq.write_table(table.replace_schema_metadata({"runlog.schema_version": "2"}), root / TRAIN.format(2, 0))
    code, r = _report(cli, root)
    assert code == 1 and r["steps"] == {"train": [0, 3]}
    assert any(p["kind"] == "wrong_type" and "9223372036854775813" in p["message"] for p in r["problems"])
    assert "split 'train': 1 step(s) missing (2): no file holds them" in _warnings(r)


def test_rows_per_split_and_one_key_in_the_singular(tmp_path, cli):
    """The Splits table has the rows of each split (they were only in the JSON's files), and a scalars file
    of one key says '1 key'."""
    with runlog.RunWriter(tmp_path / "r", name="r") as w:
        for s in range(3):
            w.log_samples(s, {"reward": [0.5] * 4})
            w.log_scalars(s, {"train/loss": 1.0})
        w.log_samples(0, {"reward": [0.5] * 2}, split="eval")
    _, r = _report(cli, tmp_path / "r")
    assert r["rows_by_split"] == {"eval": 2, "train": 12}
    out = cli("inspect", tmp_path / "r").stdout
    assert "scalars: 3 records, 1 key, steps 0..2" in out
    row = next(line for line in out.splitlines() if "│ train" in line)
    assert "12" in row.split("│")[4]
