"""Summarize audit 20: a TRL file written without Parquet column statistics counted its rows at the step its
name tells (``completions_00003.parquet`` holding rows of steps 3 and 4 gave step 3 three rows, and step 4
none), silently: it still does (its step column is not read on every command) but a warning names it;
``runlog.summarize(run, by="step")`` read the string character by character; finite rewards near the float64
limit gave a mean of inf with no note saying why.

Every expectation is computed here from the values written (duckdb or plain Python over the same files), never
from runlog's reading."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from object_stores import s3_server  # noqa: F401
from runlog import RunWriter, open_run
from runlog.analysis.partial_cache import units

# (file name's step, rows' own steps, rewards): the audit's run.
FILES = [(2, [2, 2], [1.0, 0.0]), (3, [3, 4, 4], [1.0, 1.0, 0.5]), (6, [7], [0.25])]


def trl_run(root: Path, files: list[tuple[int, list[int], list[float]]], *, statistics: bool) -> Path:
    """TRL's completion files (its ``step`` column as text, as ``GRPOTrainer`` writes it)."""
    folder = root / "completions"
    folder.mkdir(parents=True, exist_ok=True)
    for named, steps, rewards in files:
        table = pa.table(
            {
                "step": [str(s) for s in steps],
                "prompt": ["A"] * len(steps),
                "completion": ["c"] * len(steps),
                "acc_reward": pa.array(rewards, pa.float64()),
            }
        )
        pq.write_table(table, folder / f"completions_{named:05d}.parquet", write_statistics=statistics)
    return root


def truth(root: Path, where: str = "true") -> dict[int, tuple[float, int]]:
    """Step -> (mean reward, rows), by each row's own ``step`` column (duckdb)."""
    rows = duckdb.sql(
        "select cast(step as bigint), avg(acc_reward), count(*) "
        f"from read_parquet('{root}/completions/*.parquet') where {where} group by 1 order by 1"
    ).fetchall()
    return {s: (m, n) for s, m, n in rows}


def by_step(cli: Any, root: Path, *args: str) -> dict[int, tuple[float, int]]:
    r = cli("summarize", root, "--by", "step", "--format", "csv", *args)
    assert r.exit_code == 0, r.stderr
    return {
        int(row["step"]): (float(row["reward_mean"]), int(row["reward_count"]))
        for row in csv.DictReader(io.StringIO(r.stdout))
    }


UNCHECKED = "written without (exact) statistics of its step column"


def by_name(root: Path) -> dict[int, tuple[float, int]]:
    """Step -> (mean reward, rows), by the step each file's name tells (duckdb over the file names)."""
    rows = duckdb.sql(
        "select cast(regexp_extract(filename, 'completions_(\\d+)', 1) as bigint), avg(acc_reward), count(*) "
        f"from read_parquet('{root}/completions/*.parquet', filename=true) group by 1 order by 1"
    ).fetchall()
    return {s: (m, n) for s, m, n in rows}


@pytest.mark.parametrize("cache", ["on", "off"])
def test_trl_file_without_statistics_counts_at_its_names_step_and_says_so(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    """The audit's run: a file named step 3 holding rows of steps 3, 4, 4, and one named step 6 holding step 7.
    Without statistics the rows' steps are not read (reading the column of every such file on every command cost
    10x a discovery): each file counts at its name's step, as before, and a warning names the files, cold and
    again from the partials a first summary kept."""
    if cache == "off":
        monkeypatch.setenv("RUNLOG_CACHE", "off")
    run = trl_run(tmp_path / "run", FILES, statistics=False)
    expected = by_name(run)
    assert expected == {2: (0.5, 2), 3: (2.5 / 3, 3), 6: (0.25, 1)}
    for _ in range(2):  # the second reads what the first kept (with the cache on)
        r = cli("summarize", run, "--by", "step", "--format", "csv")
        assert r.exit_code == 0, r.stderr
        got = {
            int(x["step"]): (float(x["reward_mean"]), int(x["reward_count"]))
            for x in csv.DictReader(io.StringIO(r.stdout))
        }
        assert got.keys() == expected.keys()
        for step, (mean, n) in expected.items():
            assert got[step] == (pytest.approx(mean), n)
        # One line for the three files (the first named, the others counted).
        (line,) = [x for x in r.stderr.splitlines() if UNCHECKED in x]
        assert line.startswith("warning: completions/completions_00002.parquet and 2 more file(s): ")


def test_trl_inspect_names_each_file_without_statistics(cli: Any, tmp_path: Path) -> None:
    run = trl_run(tmp_path / "run", [*FILES[:1], (4, [4], [1.0])], statistics=False)
    trl_run(run, [(3, [3], [0.5])], statistics=True)
    r = cli("inspect", run, "--format", "json")
    assert r.exit_code == 0, r.stderr
    said = {p["path"] for p in json.loads(r.stdout)["problems"] if UNCHECKED in p["message"]}
    assert said == {"completions/completions_00002.parquet", "completions/completions_00004.parquet"}


@pytest.mark.parametrize("statistics", [True, False])
def test_trl_file_of_its_named_step_keeps_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statistics: bool
) -> None:
    """A file whose rows are of the step its name tells stands for that step (a summary is kept per step), with
    statistics from its footer alone: no data page is read while the run is opened."""
    run = trl_run(tmp_path / "run", [(1, [1, 1], [1.0, 0.0]), (2, [2], [0.5])], statistics=statistics)
    if statistics:

        def no_read(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a data page was read")

        monkeypatch.setattr(pq, "read_table", no_read)
    opened = open_run(run, cache=False)
    assert {f.path: f.step for f in opened.files} == {
        "completions/completions_00001.parquet": 1,
        "completions/completions_00002.parquet": 2,
    }
    found = units(opened)
    assert found is not None and sorted(found) == [1, 2]


def test_api_by_a_single_string_is_one_key() -> None:
    """``runlog.summarize(run, by="step")`` was a usage error: "--by 's': expected one of ..."."""
    root = Path(__file__).resolve().parents[1] / "sample_runs" / "debate_grpo"
    run = open_run(root)
    one = runlog.summarize(run, by="step", cache=False)
    listed = runlog.summarize(run, by=["step"], cache=False)
    assert one.equals(listed)
    ((steps,),) = duckdb.sql(
        f"select count(distinct (split, step)) from read_parquet('{root}/samples/*/*.parquet')"
    ).fetchall()
    assert one.height == steps


def test_overflowing_sum_of_finite_rewards_is_said(cli: Any, tmp_path: Path) -> None:
    """Two rewards of 1e308: the float64 sum is inf, so the mean is inf (as numpy's) and the std NaN (the documented
    figures); a note says why, and it is not the note for infinite values, since none is."""
    import numpy as np

    run = tmp_path / "run"
    values = [1e308, 1e308]
    with RunWriter(run) as w:
        w.log_samples(0, [{"reward": v, "group_id": "g"} for v in values])
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.mean(values)
    assert math.isinf(mean) and all(math.isfinite(v) for v in values)
    r = cli("summarize", run, "--by", "step", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    (row,) = csv.DictReader(io.StringIO(r.stdout))
    assert float(row["reward_mean"]) == mean
    assert math.isnan(float(row["reward_std"]))
    assert "too large for sums in float64" in r.stderr
    assert "are infinite (min -inf or max inf)" not in r.stderr


def test_trl_object_without_statistics_counts_at_its_names_step_and_says_so(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An object without statistics is not fetched whole to tell its steps: as a local file, it counts at its
    name's step, said."""
    local = trl_run(tmp_path / "run", FILES, statistics=False)
    expected = by_name(local)
    url = f"{s3_server.scheme}://{s3_server.fresh_bucket()}/run"
    s3_server.upload_dir(local, url)
    run = open_run(url, storage_options=s3_server.storage_options, cache=False)
    assert {f.path for f in run.files} == {p.path for p in run.problems if UNCHECKED in p.message}
    out = runlog.summarize(run, by="step", cache=False)
    got = {r["step"]: (r["reward_mean"], r["reward_count"]) for r in out.iter_rows(named=True)}
    assert got.keys() == expected.keys()
    for step, (mean, n) in expected.items():
        assert got[step] == (pytest.approx(mean), n)
