"""Audit a12 of ``runlog inspect``: one row base per report under ``--deep`` (a file found unreadable is out of the
numeric table too), ``--deep`` finds corrupt key columns (step, split, group_id) as summarize does, the verdict
counts every gap the table shows (as doctor does), plain inspect never reads the exception text, a named pipe or a
broken link named like a step file is said once (its step no "no file holds them"), and an unreadable file is no
"files deleted". Every expected figure comes from the raw files (pyarrow, os), not from runlog's readers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import runlog
from runlog.analysis.inspect import inspect_run
from runlog.run import open_run

TRAIN = "samples/train/step_{:08d}.p0.parquet"


def _write(root: Path, steps: list[int] | range = range(10), n: int = 8) -> Path:
    """A run written by ``RunWriter``: ``n`` samples a train step (ids, groups, two roles, a component,
    ``num_turns``; the last step's first sample failed, with an exception), eval at steps 0 and 5, a scalar per
    step."""
    with runlog.RunWriter(root, name=root.name, roles=["solver", "verifier"]) as w:
        for s in steps:
            rows = [
                {
                    "reward": 0.1 * i,
                    "sample_id": f"t{s}-{i}",
                    "group_id": f"g{s}-{i // 4}",
                    "roles": {"solver": {"reward": 0.5, "kl": 0.01}, "verifier": {"reward": 0.2, "kl": 0.02}},
                    "reward_components": {"format": 1.0},
                    "num_turns": 3,
                    "completion": "answer",
                    "exception": "boom" if s == steps[-1] and i == 0 else None,
                }
                for i in range(n)
            ]
            w.log_samples(s, rows)
            w.log_scalars(s, {"train/loss": 1.0 / (s + 1)})
            if s % 5 == 0:
                w.log_samples(s, {"reward": [0.5] * 4, "sample_id": [f"e{s}-{i}" for i in range(4)]}, split="eval")
    return root


def _corrupt_chunk(path: Path, column: str) -> None:
    """Overwrite the pages of one column chunk (inside its own byte range): the footer stays intact."""
    rg = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for k in range(start + 3, start + chunk.total_compressed_size - 2):
        data[k] = 0xAB
    path.write_bytes(bytes(data))


def _rows(root: Path, skip: set[Path], split: str | None = None) -> int:
    """Sample rows of the run's Parquet files less ``skip``, from their footers (pyarrow)."""
    files = sorted((root / "samples").rglob("*.parquet"))
    return sum(
        pq.ParquetFile(f).metadata.num_rows
        for f in files
        if f not in skip and (split is None or f.parent.name == split)
    )


def _report(cli, root: Path, *args: str) -> tuple[int, dict]:
    result = cli("inspect", root, "--no-cache", "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


# -- F1: --deep, one row base ----------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["sample_id", "reward_components.list.element.value"])
def test_deep_leaves_a_file_it_finds_unreadable_out_of_the_numeric_table_too(tmp_path, cli, column):
    """A corrupt ``sample_id`` (read by the repeated-id check, after the numeric table) or component value (read
    while the table's frames were being built): the file was skipped in the header and counted in the table
    (reward rows 88, role rows 80 beside 80 samples)."""
    root = _write(tmp_path / "r")
    bad = root / TRAIN.format(7)
    _corrupt_chunk(bad, column)
    code, r = _report(cli, root, "--deep")
    samples = _rows(root, {bad})  # 80: 9 train files of 8, two eval files of 4
    train = _rows(root, {bad}, "train")  # 72: the per-role rows are the train samples (eval rows have no roles)
    assert code == 1 and [p["path"] for p in r["problems"] if p["kind"] == "unreadable"] == [TRAIN.format(7)]
    assert r["rows_by_kind"]["samples"] == samples == 80
    assert r["numeric"]["reward"]["rows"] == samples
    for name in ("solver/reward", "solver/kl", "verifier/reward", "verifier/kl", "num_turns"):
        assert r["numeric"][name]["rows"] == train == 72, name
    assert r["numeric"]["component/format"]["rows"] == samples


# -- F2: --deep reads the key columns --------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["step", "split", "group_id"])
def test_deep_finds_a_corrupt_key_column_as_summarize_does(tmp_path, cli, column):
    """A corrupt data page in ``step``, ``split`` or ``group_id`` behind an intact footer: summarize and doctor skip
    the file; ``inspect --deep`` said "valid: no problems found." and counted its rows."""
    root = _write(tmp_path / "r")
    bad = root / TRAIN.format(7)
    _corrupt_chunk(bad, column)
    with pytest.raises(OSError):
        pq.read_table(bad, columns=[column])  # the truth: that column cannot be read
    code, r = _report(cli, root, "--deep")
    assert code == 1
    [problem] = [p for p in r["problems"] if p["kind"] == "unreadable"]
    assert problem["path"] == TRAIN.format(7) and f"corrupt data in {column}" in problem["message"]
    assert r["rows_by_kind"]["samples"] == r["numeric"]["reward"]["rows"] == _rows(root, {bad}) == 80
    assert r["step_gaps"]["train"] == [[7, 7]]  # the step of an unreadable file is a gap, and no lost step
    assert not [p for p in r["problems"] if "no file holds them" in p["message"]]
    summarize = cli("summarize", root, "--no-cache", "--split", "train", "--by", "step", "--format", "json")
    assert f"{TRAIN.format(7)}: corrupt data in {column}" in summarize.stderr
    plain_code, _ = _report(cli, root)
    assert plain_code == 0  # footers cannot tell (documented): plain inspect passes it


# -- F3: the verdict counts every gap the table shows ----------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "gaps"),
    [([0, 1, 3, 5, 7, 9, 10], [[2, 2], [4, 4], [6, 6], [8, 8]]), ([0, 3, 5], [[1, 2], [4, 4]])],
    ids=["every-other-step-lost", "three-steps"],
)
def test_gaps_the_table_shows_fail_strict_as_doctor_warns(tmp_path, cli, steps, gaps):
    """Steps lost at every other step (and a three-step run, whose one difference before the last tells no
    stride) were shown in red while the verdict said "valid: no problems found." and ``--strict`` exited 0;
    doctor warned of the same steps."""
    root = _write(tmp_path / "r", steps=steps, n=2)
    on_disk = sorted(int(p.name[5:13]) for p in (root / "samples" / "train").iterdir())
    assert on_disk == steps
    lost = sorted(set(range(steps[0], steps[-1] + 1)) - set(steps))  # stride 1: every step between is missing
    code, r = _report(cli, root)
    assert r["step_stride"]["train"] == 1 and r["step_gaps"]["train"] == gaps
    assert sum(b - a + 1 for a, b in gaps) == len(lost)
    [warning] = [p["message"] for p in r["problems"] if "missing" in p["message"]]
    assert f"{len(lost)} step(s) missing" in warning
    assert code == 0 and r["warnings"] == 1
    strict = cli("inspect", root, "--no-cache", "--strict")
    assert strict.exit_code == 1 and "--strict counts warnings" in strict.stdout
    findings = json.loads(cli("doctor", root, "--no-cache", "--format", "json").stdout)["findings"]
    [gap] = [f for f in findings if f["kind"] == "step_gaps"]
    assert gap["evidence"]["missing"] == len(lost) and gap["evidence"]["gaps"] == gaps


# -- F4: plain inspect never reads the exception text ----------------------------------------------------------


def _without_statistics(root: Path, steps: list[int]) -> None:
    for s in steps:
        f = root / TRAIN.format(s)
        pq.write_table(pq.read_table(f), f, write_statistics=False)


def test_plain_inspect_does_not_read_the_exception_text_of_a_file_without_statistics(tmp_path, cli, monkeypatch):
    """A file written without statistics had its whole ``exception`` column read (a 60 MB traceback: +250 MB of
    memory) though inspect "never reads text columns": the count is said unknown instead."""
    root = tmp_path / "r"
    with runlog.RunWriter(root, name="r") as w:
        for s in range(2):
            w.log_samples(s, {"reward": [None, 1.0], "exception": ["Traceback " * 1000, None]})
    _without_statistics(root, [0, 1])
    assert not pq.ParquetFile(root / TRAIN.format(0)).metadata.row_group(0).column(0).is_stats_set
    read: list[list[str] | None] = []
    real = pq.read_table

    def spy(source, *args, columns=None, **kwargs):
        read.append(columns)
        return real(source, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pq, "read_table", spy)
    report = inspect_run(open_run(root, cache=False))
    assert not [c for c in read if c is None or "exception" in c], read
    assert report.exceptions is None and report.errors == 0
    monkeypatch.undo()
    text = cli("inspect", root, "--no-cache")
    assert text.exit_code == 0 and "exceptions: not known" in text.stdout
    assert _report(cli, root)[1]["exceptions"] is None


def test_a_corrupt_exception_column_is_no_error_beside_a_counted_file(tmp_path, cli):
    """A corrupt ``exception`` page in a file without statistics was an ``unreadable`` error while the file's
    rows were still counted (readable in ``files``): a file said unreadable must be left out, and plain inspect
    does not read text (it passes such a page, as it passes a corrupt ``completion``)."""
    root = _write(tmp_path / "r", steps=range(4), n=4)
    _without_statistics(root, [3])
    _corrupt_chunk(root / TRAIN.format(3), "exception")
    code, r = _report(cli, root)
    said = {p["path"] for p in r["problems"] if p["kind"] != "warning"}
    unreadable = {f["path"] for f in r["files"] if not f["readable"]}
    assert said <= unreadable  # every file said unreadable is out of the figures
    assert code == 0 and r["rows_by_kind"]["samples"] == _rows(root, set())


# -- F5: a named pipe or a broken link named like a step file ------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "broken_link"])
def test_a_step_file_that_is_no_regular_file_is_named_once(tmp_path, cli, kind):
    """A named pipe named like a step file was named nowhere (only "1 step(s) missing (5): no file holds them",
    which is false); a broken link was an error and that warning too, where the docs say a step whose file is
    unreadable is that file's error already. Never opened: a pipe would wait for a writer."""
    root = _write(tmp_path / "r")
    target = root / TRAIN.format(5)
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
        assert stat.S_ISFIFO(os.lstat(target).st_mode)
    else:
        target.symlink_to(tmp_path / "nowhere.parquet")
    code, r = _report(cli, root)
    [problem] = [p for p in r["problems"] if p["path"] == TRAIN.format(5)]
    assert problem["kind"] == "unreadable"
    assert ("a named pipe, not a regular file" if kind == "fifo" else "broken") in problem["message"]
    assert not [p for p in r["problems"] if "no file holds them" in p["message"]]
    assert r["step_gaps"]["train"] == [[5, 5]]  # the table shows it, as for any unreadable file
    assert code == 1 and r["warnings"] == 0


def test_a_step_lost_beside_a_broken_link_is_still_a_lost_step(tmp_path, cli):
    """Only the step the link is named for is its error: a step no file names stays a warning."""
    root = _write(tmp_path / "r")
    (root / TRAIN.format(5)).unlink()
    (root / TRAIN.format(5)).symlink_to(tmp_path / "nowhere.parquet")
    (root / TRAIN.format(3)).unlink()
    _, r = _report(cli, root)
    assert [p["message"] for p in r["problems"] if p["kind"] == "warning"] == [
        "split 'train': 1 step(s) missing (3): no file holds them"
    ]


# -- F6: an unreadable file is no "files deleted" ------------------------------------------------------------


def _writer_warnings(r: dict) -> list[str]:
    return [p["message"] for p in r["problems"] if "closed its writer" in p["message"]]


def test_a_scalars_file_whose_lines_cannot_be_read_is_no_file_deleted(tmp_path, cli):
    """Every line of the scalars file damaged: its lines are errors, and the writer check added "its files here
    hold none: copied in part, or files deleted" though the file is there."""
    root = _write(tmp_path / "r")
    scalars = root / "scalars.p0.jsonl"
    n = len(scalars.read_bytes().splitlines())
    scalars.write_bytes(b"\x00not json\n" * n)
    code, r = _report(cli, root)
    assert code == 1 and any(p["path"] == "scalars.p0.jsonl" and p["kind"] != "warning" for p in r["problems"])
    assert _writer_warnings(r) == []


def test_an_unreadable_last_step_is_no_copy_in_part(tmp_path, cli):
    """The last train step's file truncated: one error for it, not also "closed its writer having written train
    up to step 9, but its files here hold step 8"."""
    root = _write(tmp_path / "r")
    last = root / TRAIN.format(9)
    last.write_bytes(last.read_bytes()[:100])
    code, r = _report(cli, root)
    assert code == 1 and [p["path"] for p in r["problems"] if p["kind"] == "unreadable"] == [TRAIN.format(9)]
    assert _writer_warnings(r) == [] and r["writers"]["incomplete"] == []


def test_a_scalars_file_without_read_permission_is_no_file_deleted(tmp_path, cli, monkeypatch):
    """A scalars file of mode 000: "cannot read file: Permission denied", and not also "its files here hold
    none: copied in part, or files deleted". Root reads such a file: its reads are then refused as the kernel
    refuses another user's (``PermissionError``)."""
    root = _write(tmp_path / "r")
    scalars = root / "scalars.p0.jsonl"
    scalars.chmod(0)
    try:
        scalars.read_bytes()
    except PermissionError:
        pass
    else:  # root
        import runlog.formats.common as common

        def refusing(read):  # noqa: ANN001, ANN202
            def refused(path):  # noqa: ANN001, ANN202
                if Path(path).name == scalars.name:
                    raise PermissionError(13, "Permission denied", str(path))
                return read(path)

            return refused

        monkeypatch.setattr(Path, "read_bytes", refusing(Path.read_bytes))
        monkeypatch.setattr(common, "read_bytes", refusing(common.read_bytes))
    try:
        code, r = _report(cli, root)
    finally:
        scalars.chmod(0o644)
    [problem] = [p for p in r["problems"] if p["path"] == "scalars.p0.jsonl"]
    assert code == 1 and "Permission denied" in problem["message"]
    assert _writer_warnings(r) == []
