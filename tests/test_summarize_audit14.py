"""What audit 14 of summarize found, each checked against the raw files:

- a native shard copied under another process's name (``step_8.p0`` to ``step_8.p2``) was counted twice in every
  figure, and summarize said nothing (48 samples for 32, reward mean 0.7979 for 0.7625);
- several unreadable files were one line naming the first ("and 1 more file(s)"): which data was left out of
  the figures was not said;
- ``--by run`` on one run said "runs of this fleet", and a ``--by`` typo was told every key but ``run``;
- JSON wrote an infinite mean as ``null``, which reads as "no value", and said nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from conftest import SAMPLE_RUNS


def _copy_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run)
    return run


def _two_shards(tmp_path: Path, **options: object) -> Path:
    """The train folder of a run of two processes' files of step 0, one sample each (rewards 1 and 0): small files
    of fixed-width numbers, of one size. ``options``: pyarrow's ``write_table`` options."""
    import pyarrow as pa

    train = tmp_path / "run" / "samples" / "train"
    train.mkdir(parents=True)
    for p, reward in ((0, 1.0), (1, 0.0)):
        t = pa.table(
            {"schema_version": [2], "step": [0], "split": ["train"], "sample_id": [f"s{p}"], "reward": [reward]}
        )
        pq.write_table(t, train / f"step_00000000.p{p}.parquet", **options)
    return train


def test_a_shard_copied_under_another_process_is_said_by_summarize(cli, tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    train = run / "samples" / "train"
    shutil.copyfile(train / "step_00000008.p0.parquet", train / "step_00000008.p2.parquet")
    # The truth: the copy's sample ids are all the original's.
    ids = [pq.read_table(train / f"step_00000008.p{p}.parquet", columns=["sample_id"]).column(0) for p in (0, 2)]
    assert ids[0].to_pylist() == ids[1].to_pylist()
    r = cli("summarize", run, "--split", "train", "--steps", "8", "-f", "json")
    assert r.exit_code == 0
    said = [line for line in r.stderr.splitlines() if "byte for byte the same as" in line]
    assert len(said) == 1, r.stderr
    assert said[0].startswith("warning: samples/train/step_00000008.p2.parquet: ")
    assert "the same as samples/train/step_00000008.p0.parquet" in said[0]
    assert "count twice" in said[0]


def test_no_copy_is_said_of_the_sample_runs(cli) -> None:
    for run in sorted(p for p in SAMPLE_RUNS.iterdir() if p.is_dir()):
        r = cli("inspect", run, "-f", "json")
        assert "byte for byte" not in r.stdout + r.stderr, run.name


def test_two_processes_files_of_one_size_are_not_said(cli, tmp_path: Path) -> None:
    """Two writers' small files of fixed-width numbers can be of one size: only a copy's footer is the same."""
    train = _two_shards(tmp_path)
    sizes = {f.stat().st_size for f in train.iterdir()}
    assert len(sizes) == 1  # the case: one size
    r = cli("summarize", tmp_path / "run", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert "byte for byte" not in r.stderr


def test_every_unreadable_file_is_named(cli, tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    train = run / "samples" / "train"
    bad = ["step_00000003.p1.parquet", "step_00000009.p0.parquet"]
    for name in bad:
        data = (train / name).read_bytes()
        (train / name).write_bytes(data[: len(data) // 2])
    r = cli("summarize", run, "--split", "train", "-f", "json")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    for name in bad:
        assert any(f"samples/train/{name}" in line for line in errors), r.stderr
    assert "more file(s)" not in r.stderr


def test_more_unreadable_files_than_a_line_names_point_to_inspect(cli, tmp_path: Path) -> None:
    run = _copy_run(tmp_path)
    train = run / "samples" / "train"
    cut = sorted(train.glob("step_*.parquet"))[:7]
    for f in cut:
        f.write_bytes(b"not parquet at all")
    r = cli("summarize", run, "--split", "train", "-f", "json")
    assert r.exit_code == 1
    line = next(x for x in r.stderr.splitlines() if x.startswith("error:") and "more file(s)" in x)
    assert sum(f"samples/train/{f.name}" in line for f in cut) == 5
    assert "and 2 more file(s) (`runlog inspect` names them)" in line


def test_by_run_on_one_run_says_this_run(cli) -> None:
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--by", "run", "-f", "json")
    assert r.exit_code == 0
    assert "this run has the splits eval, train" in r.stderr
    assert "runs of this fleet" not in r.stderr


def test_a_by_typo_is_told_every_key(cli) -> None:
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--by", "rol")
    assert r.exit_code == 2
    assert "expected one of run, role, step, split, env, group" in r.stderr


def test_json_says_infinities_written_as_null(cli, tmp_path: Path) -> None:
    run = tmp_path / "scalars_run"
    run.mkdir()
    rows = ['{"step": 0, "loss": Infinity}', '{"step": 1, "loss": 1.0}', '{"step": 2, "loss": 2.0}']
    (run / "scalars.jsonl").write_text("\n".join(rows) + "\n")
    r = cli("summarize", run, "--scalars", "-f", "json")
    assert r.exit_code == 0
    (row,) = json.loads(r.stdout)
    assert row["mean"] is None and row["max"] is None and row["min"] == 1.0
    assert "note: 2 infinite value(s) written as null" in r.stderr
    # A frame with no NaN nor infinity says nothing.
    ok = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--split", "train", "-f", "json")
    assert "written as null" not in ok.stderr


def test_a_copy_of_the_second_of_two_same_size_shards_is_said(cli, tmp_path: Path) -> None:
    """Each file was compared with the first of its size only: p1 copied to p2, beside a p0 of p1's size, was
    read (96 rows for 64) and not said."""
    train = _two_shards(tmp_path)
    shutil.copyfile(train / "step_00000000.p1.parquet", train / "step_00000000.p2.parquet")
    assert len({f.stat().st_size for f in train.iterdir()}) == 1  # the case: three files of one size
    r = cli("summarize", tmp_path / "run", "-f", "json")
    said = [line for line in r.stderr.splitlines() if "byte for byte" in line]
    assert len(said) == 1 and "step_00000000.p2.parquet" in said[0] and "step_00000000.p1.parquet" in said[0]


def test_files_without_statistics_of_one_footer_are_told_apart_by_their_data(cli, tmp_path: Path) -> None:
    """Written without statistics nor compression, two processes' files of one size have one footer: their first
    pages tell them apart."""
    train = _two_shards(tmp_path, write_statistics=False, compression="none")
    a, b = (f.read_bytes() for f in sorted(train.iterdir()))
    assert len(a) == len(b) and a[-200:] == b[-200:]  # the case: one size, one footer
    r = cli("summarize", tmp_path / "run", "-f", "json")
    assert r.exit_code == 0 and "byte for byte" not in r.stderr
