"""``runlog inspect`` (audit 14): a split of two steps tells no stride (the scalars' steps between them tell the
lost ones); steps lost before a split's first step or after its last, and a process's shards lost at its start
or end; a verdict that says what was read; inspect_ai log versions tallied; zero-row steps, steps beyond the
int64 range, "1 key", rows per split. Expected figures come from the files the tests write."""

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


# -- 1. two steps ---------------------------------------------------------------------------------------------


def test_step_gaps_takes_the_stride_of_two_steps_from_the_evidence_between_them():
    """One difference tells no stride: alone it is the stride (eval at 0 and 8 is no gap); steps logged between
    them by other means set it (files of 0 and 9 only, scalars every step: 1-8 missing). ``doctor`` and
    ``watch`` call it as before."""
    assert step_gaps([0, 9]) == (9, [])
    assert step_gaps([0, 9], evidence=range(10)) == (1, [[1, 8]])
    assert step_gaps([3, 7], evidence=[0, 1, 2, 4, 5, 6, 8, 9]) == (1, [[4, 6]])
    assert step_gaps([0, 8], evidence=[2, 4, 6, 9]) == (2, [[2, 6]])
    # Three steps tell their own stride: the evidence is not used.
    assert step_gaps([0, 8, 16], evidence=range(17)) == (8, [])


def test_two_steps_whose_scalars_log_every_step_between_miss_those_steps(tmp_path, cli):
    """Train files of steps 0 and 9 only, scalars every step 0..9: it said stride 9, no gaps, 'valid: no problems
    found.' (exit 0 with --strict too). Steps 1-8 are missing, with the evidence said."""
    root = _run(tmp_path / "r", [0, 9])
    code, r = _report(cli, root, "--strict")
    assert code == 1
    assert r["step_stride"] == {"train": 1} and r["step_gaps"] == {"train": [[1, 8]]}
    assert r["step_stride_from"] == {"train": "scalars"}
    [gap] = [w for w in _warnings(r) if "missing" in w]
    assert gap.startswith("split 'train': 8 step(s) missing (1-8)") and "steps 0 and 9 only" in gap
    root = _run(tmp_path / "r37", [3, 7])
    _, r = _report(cli, root)
    assert r["step_gaps"] == {"train": [[4, 6]]}


def test_doctor_reports_the_steps_two_steps_and_the_scalars_tell(tmp_path, cli):
    """doctor's ``step_gaps`` finding comes from inspect's report: it gets the lost steps too."""
    root = _run(tmp_path / "r", [0, 9])
    out = cli("doctor", root, "--format", "json")
    gaps = [f for f in json.loads(out.stdout)["findings"] if f["kind"] == "step_gaps"]
    assert gaps and gaps[0]["evidence"]["gaps"] == [[1, 8]]


def test_two_eval_steps_beside_a_train_split_of_every_step_are_sparse_by_design(tmp_path, cli):
    """Eval at 0 and 5 beside train every step (train lost step 3: the scalars log it, no sample file holds it):
    the train split keeps the scalars' stride, so eval is sparser by design and no eval step is missing. Its
    stride is not known (two steps), and the table says so."""
    with runlog.RunWriter(tmp_path / "r", name="r") as w:
        for s in range(10):
            w.log_samples(s, {"reward": [0.5] * 4})
            w.log_scalars(s, {"train/loss": 1.0})
            if s % 5 == 0:
                w.log_samples(s, {"reward": [0.5] * 2}, split="eval")
    root = tmp_path / "r"
    (root / TRAIN.format(3, 0)).unlink()
    _, r = _report(cli, root)
    assert r["step_gaps"] == {"eval": [], "train": [[3, 3]]}
    assert r["step_stride"] == {"eval": 5, "train": 1}
    assert r["step_stride_from"] == {"eval": "unknown", "train": "steps"}
    assert _warnings(r) == ["split 'train': 1 step(s) missing (3): no file holds them"]
    table = cli("inspect", root)
    assert "'eval': files of two steps only, which tell no stride" in " ".join(table.stdout.split())


# -- 2. steps lost at the edges -------------------------------------------------------------------------------


def test_steps_lost_before_a_split_s_first_step_are_warned_where_the_scalars_log_them(tmp_path, cli):
    """Train files of steps 3..9, scalars 0..9: no gap (gaps are between the first and the last step), and no
    word of steps 0-2. Now a warning names them and the evidence."""
    root = _run(tmp_path / "r", list(range(3, 10)))
    code, r = _report(cli, root)
    assert code == 0 and r["step_gaps"] == {"train": []}
    [w] = _warnings(r)
    assert w.startswith("split 'train' starts at step 3, but the scalars log 3 step(s) before it") and "(0-2)" in w


def test_one_scalar_step_beyond_the_samples_is_by_design(tmp_path, cli):
    """A baseline logged before the first training step, or final metrics after the last: one step of scalars
    beyond the samples at either end is no loss."""
    root = _run(tmp_path / "r", list(range(1, 10)), scalars=range(0, 11))
    _, r = _report(cli, root)
    assert _warnings(r) == []


def test_a_process_whose_files_stop_or_start_inside_the_others_range_is_warned(tmp_path, cli):
    """Process 0 has steps 0..9, process 1 only 0..6 (or 3..9), no writer state files: steps 7-9 hold none of
    process 1's samples, and nothing was said (a hole inside its range was)."""
    root = make_native_run(tmp_path / "end", range(10), processes=2)
    for s in (7, 8, 9):
        (root / TRAIN.format(s, 1)).unlink()
    _, r = _report(cli, root)
    [w] = _warnings(r)
    assert w.startswith("process 1's last file of split 'train' is of step 6, but process 0 has files of 3 step(s)")
    assert "(7-9)" in w
    root = make_native_run(tmp_path / "start", range(10), processes=2)
    for s in (0, 1, 2):
        (root / TRAIN.format(s, 1)).unlink()
    _, r = _report(cli, root)
    [w] = _warnings(r)
    assert w.startswith("process 1's first file of split 'train' is of step 3") and "(0-2)" in w


def test_a_process_that_closed_its_writer_with_fewer_steps_is_not_warned(tmp_path, cli):
    """With writer state files, a process that closed having written up to step 6 (fewer processes after a
    resume) is no loss: the state files speak, not the others' files."""
    root = tmp_path / "r"
    for p, last in ((0, 9), (1, 6)):
        with runlog.RunWriter(root, name="r", process_index=p) as w:
            for s in range(last + 1):
                w.log_samples(s, {"reward": [0.5] * 2})
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


def test_doctor_says_the_steps_lost_at_the_edges_that_inspect_warns_of(tmp_path, cli):
    """The edge warnings are inspect's own reading of the steps (not discovery's problems): doctor said nothing of
    train steps 0-2 lost, nor of a process stopping at step 6 of 9, and called the run healthy."""
    root = _run(tmp_path / "r", list(range(3, 10)))
    out = json.loads(cli("doctor", root, "--format", "json").stdout)
    said = [f for f in out["findings"] if f["kind"] == "data_problem" and f["severity"] == "warning"]
    assert len(said) == 1 and "starts at step 3, but the scalars log 3 step(s) before it" in said[0]["message"]
    stop = make_native_run(tmp_path / "end", range(10), processes=2)
    for s in (7, 8, 9):
        (stop / TRAIN.format(s, 1)).unlink()
    out = json.loads(cli("doctor", stop, "--format", "json").stdout)
    assert any("process 1's last file of split 'train' is of step 6" in f["message"] for f in out["findings"])
    # A healthy run: nothing more.
    healthy = _run(tmp_path / "ok", list(range(10)))
    out = json.loads(cli("doctor", healthy, "--format", "json").stdout)
    assert not [f for f in out["findings"] if f["kind"] == "data_problem"]
