"""Review of the session's own fixes (a12): what the first versions got wrong.

- Aliases: two records of one name at one step (AReaL's stats: merged as shards are, 2.5) kept only the last
  (3) once the run held an old name anywhere: only the rows of a quantity logged under two names choose.
- summarize --steps 2 where step 2's only file is corrupt: a usage error (exit 2, "no sample matches"): the
  samples match and could not be read: exit 1, said as that.
- inspect --deep read a Flink run's trajectory text (its group_id is derived from it): 3 s -> 129 s on 2,000
  files, and a corrupt text page skipped the file that summarize counts.

Every expected figure is computed here from the files written (json, pyarrow), never with runlog's code."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

import runlog

from conftest import make_flink_run


def test_two_records_of_one_name_still_merge_beside_an_alias(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"global_step": 1, "grad/global_norm": 1.0, "grad/global_norm__count": 1},
        {"global_step": 1, "grad/global_norm": 3.0, "grad/global_norm__count": 3},
        {"global_step": 2, "grad_global_norm": 5.0},  # the old name, at another step
    ]
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    step1 = [r for r in records if r["global_step"] == 1]
    want1 = sum(r["grad/global_norm"] * r["grad/global_norm__count"] for r in step1) / sum(
        r["grad/global_norm__count"] for r in step1
    )
    r = cli("summarize", str(run), "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = [x for x in json.loads(r.stdout) if x["key"] == "grad/global_norm"]
    assert (row["min"], row["max"], row["count"]) == (want1, 5.0, 2)
    assert "two of its names" not in r.stderr


def test_a_step_whose_file_is_corrupt_is_a_problem_not_a_usage_error(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    with runlog.RunWriter(run, name="r") as w:
        for s in range(3):
            w.log_samples(s, {"reward": [0.5, 1.0, 0.0, 1.0], "group_id": [f"g{s}"] * 4})
    f = sorted((run / "samples" / "train").glob("*.parquet"))[-1]
    data = bytearray(f.read_bytes())
    data[8:200] = b"\xff" * 192  # the first data pages; the footer intact
    f.write_bytes(bytes(data))
    assert pq.read_metadata(f).num_rows == 4  # its footer says it holds step 2's samples
    r = cli("summarize", str(run), "--steps", "2", "--format", "json")
    assert r.exit_code == 1, r.stderr
    assert "could not be read" in r.stderr and f.name in r.stderr
    assert "Error:" not in r.stderr


def test_deep_inspect_reads_no_flink_text(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """A corrupt page of a Flink file's trajectory text: --deep reads no text (its group_id would be derived
    from it), so the file is valid for inspect as for summarize, which counts its rows."""
    run = make_flink_run(tmp_path / "run", steps=range(3))
    f = run / "flink_logs" / "batch_debug_data_train_1.parquet"
    meta = pq.ParquetFile(f).metadata.row_group(0)
    (col,) = [meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "trajectory"]
    data = bytearray(f.read_bytes())
    start = col.data_page_offset
    data[start : start + col.total_compressed_size] = b"\xab" * col.total_compressed_size
    f.write_bytes(bytes(data))
    rows = sum(pq.read_metadata(p).num_rows for p in (run / "flink_logs").glob("*.parquet"))
    deep = cli("inspect", str(run), "--deep", "--format", "json")
    assert deep.exit_code == 0, deep.stderr
    assert json.loads(deep.stdout)["rows_by_kind"]["samples"] == rows
    summary = cli("summarize", str(run), "--by", "split", "--format", "json")
    assert json.loads(summary.stdout)[0]["reward_count"] == rows


def test_steps_in_a_gap_are_said_missing(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """``--steps 11`` of a run of steps 0..10 and 12..19 said "this run has steps 0..19 (train, 19 steps)": 11
    read as inside the range. The steps missing on the run's cadence are named (plot audit a12)."""
    run = tmp_path / "run"
    with runlog.RunWriter(run, name="r") as w:
        for s in [*range(11), *range(12, 20)]:
            w.log_samples(s, {"reward": [0.5, 1.0]})
    steps = sorted(
        pq.read_table(f, columns=["step"]).column(0)[0].as_py() for f in (run / "samples" / "train").glob("*")
    )
    lost = sorted(set(range(steps[0], steps[-1] + 1)) - set(steps))
    r = cli("summarize", str(run), "--steps", "11")
    assert r.exit_code == 2
    assert f"{len(steps)} steps; missing {', '.join(map(str, lost))})" in r.stderr, r.stderr
