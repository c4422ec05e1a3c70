"""Audit 6: a run reached through the folder that holds it and through its own path counts once, with the note
docs/scaling.md promises (also for the very same path twice, and a glob plus a path it matches); diff says two
spellings of one run are the same run; pooled statistics say which runs gave rows."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.fleet import distinct_runs, fleet_locations

from conftest import native_rows, write_native_samples


def make_run(root: Path, value: float, steps: int = 3, n: int = 8) -> Path:
    """A native run whose solver rewards are all ``value`` (a pooled mean tells which runs it holds)."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "name": root.name, "roles": ["solver", "verifier"]}
    (root / "run.json").write_text(json.dumps(manifest))
    for step in range(steps):
        rows = native_rows(step, n)
        for r in rows:
            r["reward"] = value
            r["roles"] = [{**x, "reward": value} for x in r["roles"]]
        write_native_samples(root / "samples" / "train" / f"step_{step:08d}.p0.parquet", rows)
    return root


def solver_count(*runs: Path) -> int:
    """Solver rewards in these runs' sample files, counted with pyarrow (not runlog)."""
    n = 0
    for run in runs:
        for f in sorted(run.rglob("*.parquet")):
            for roles in pq.read_table(f, columns=["roles"]).column("roles").to_pylist():
                n += sum(1 for x in roles if x["role"] == "solver" and x["reward"] is not None)
    return n


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    make_run(root / "a", 1.0)
    make_run(root / "deep" / "x" / "y", 6.0)  # a folder holding one run, deeper
    make_run(root / "g1" / "same", 5.0)  # g1 holds exactly one run
    make_run(root / "g2" / "same", 7.0)
    return root


def _csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text))


def _solver(r) -> dict:  # noqa: ANN001
    assert r.exit_code in (0, 1), r.stderr
    return _csv(r.stdout).filter(pl.col("role") == "solver").row(0, named=True)


# ---------------------------------------------------------------------------------------------------------
# Finding 2: a run given through its parent folder and its own path
# ---------------------------------------------------------------------------------------------------------


def test_a_run_and_the_folder_holding_it_count_once_pooled(cli, fleet):
    g1 = fleet / "g1"
    assert solver_count(g1) == 24  # g1 holds one run: 3 steps of 8
    r = cli("summarize", g1, g1 / "same", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert _solver(r)["reward_count"] == 24  # was 48
    assert f"note: the same run given twice, counted once: {g1}/same is {g1}" in r.stderr
    assert "statistics pooled over the 1 run:" in r.stderr  # was "the 2 runs"


def test_a_run_and_the_folder_holding_it_are_one_row_by_run(cli, fleet):
    g1 = fleet / "g1"
    for order in ([g1, g1 / "same"], [g1 / "same", g1]):
        r = cli("summarize", *order, "--by", "run", "--by", "role", "-f", "csv")
        assert r.exit_code == 0, r.stderr
        df = _csv(r.stdout).filter(pl.col("role") == "solver")
        assert df.height == 1 and df["reward_count"].to_list() == [24]  # was two rows, g1 and g1/same
        assert f"{order[1]} is {order[0]}" in r.stderr  # the first spelling is kept


def test_a_glob_and_a_run_deep_in_one_of_its_matches_count_once(cli, fleet):
    r = cli("summarize", f"{fleet}/*", fleet / "deep" / "x" / "y", "--by", "role", "--split", "train", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    runs = [fleet / "a", fleet / "deep", fleet / "g1", fleet / "g2"]
    assert _solver(r)["reward_count"] == solver_count(*runs) == 96  # was 120
    assert _solver(r)["reward_mean"] == pytest.approx((1 + 6 + 5 + 7) / 4, rel=1e-12)
    assert f"counted once: {fleet}/deep/x/y is {fleet}/deep" in r.stderr
    assert "statistics pooled over the 4 runs:" in r.stderr  # was "the 5 runs"


def test_a_folder_between_the_folder_given_and_its_run_is_that_run(fleet):
    deep = fleet / "deep"
    kept, same = distinct_runs([str(deep), str(deep / "x")])
    assert kept == [str(deep)] and same == [(str(deep / "x"), str(deep), "is")]


def test_a_folder_or_file_inside_a_run_is_a_part_of_it(cli, fleet):
    run = fleet / "g1" / "same"
    one = run / "samples" / "train" / "step_00000001.p0.parquet"
    kept, same = distinct_runs([str(one), str(fleet / "g1")])
    assert kept == [str(fleet / "g1")] and same == [(str(one), str(fleet / "g1"), "is a file of")]
    r = cli("summarize", run, run / "samples" / "train", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert _solver(r)["reward_count"] == 24
    assert f"{run}/samples/train is a part of {run}" in r.stderr


def test_a_copy_in_a_hidden_folder_is_no_part_of_the_run(fleet):
    """A run's listing skips hidden folders: what lies there is not among the run's rows."""
    run = fleet / "g2" / "same"
    shutil.copytree(fleet / "a", run / ".backup")
    kept, same = distinct_runs([str(run), str(run / ".backup")])
    assert kept == [str(run), str(run / ".backup")] and same == []


def test_a_folder_of_several_runs_is_not_taken_for_one_of_them(cli, fleet):
    # Without --by run a folder of runs is refused when it is opened: the run given beside it still counts.
    kept, same = distinct_runs([str(fleet), str(fleet / "g1" / "same")])
    assert kept == [str(fleet), str(fleet / "g1" / "same")] and same == []
    # With --by run it stands for its runs: the one given again (by its folder) counts once.
    locs = fleet_locations([str(fleet), str(fleet / "g1")], by=["run"])
    assert sorted(locs) == sorted(str(fleet / p) for p in ("a", "deep/x/y", "g1/same", "g2/same"))
    assert locs.notes == [f"the same run given twice, counted once: {fleet}/g1 is {fleet}/g1/same"]


def test_diff_of_a_run_and_the_folder_holding_it_says_it_is_the_same_run(cli, fleet):
    g1 = fleet / "g1"
    r = cli("diff", g1, g1 / "same", "--boot", "100", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert f"note: {g1}/same is {g1}: the same run, compared with itself" in r.stderr


def test_diff_does_not_match_again_the_run_of_a_folder_given(cli, fleet):
    r = cli("diff", fleet / "g1", f"{fleet}/*/same", "--boot", "100", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert [x["name"] for x in json.loads(r.stdout)["runs"]] == ["g1", "g2/same"]  # not g1 against itself
    assert f"the same run matched twice, compared once: {fleet}/g1/same is {fleet}/g1" in r.stderr


def test_an_object_store_run_and_the_prefix_holding_it_count_once(cli, fleet, request):
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    server.upload_dir(fleet / "g1", f"s3://{bucket}/runs/g1")
    opts = [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]
    prefix = f"s3://{bucket}/runs/g1"
    r = cli("summarize", prefix, f"{prefix}/same/", "--by", "role", "-f", "csv", *opts)
    assert r.exit_code == 0, r.stderr
    assert _solver(r)["reward_count"] == solver_count(fleet / "g1") == 24
    assert f"counted once: {prefix}/same/ is {prefix}" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# Finding 5a: the note for a run given twice by one spelling
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same path", "glob and path"])
def test_one_run_given_twice_by_one_spelling_says_so(cli, fleet, how):
    run = fleet / "g1" / "same"
    first = str(run) if how == "same path" else f"{fleet}/*/same"
    r = cli("summarize", first, run, "--by", "run", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    df = _csv(r.stdout).filter(pl.col("role") == "solver")
    assert df["reward_count"].to_list() == [24] * df.height and df.height == (1 if how == "same path" else 2)
    assert f"note: the same run given twice, counted once: {run}\n" in r.stderr  # was silent


# ---------------------------------------------------------------------------------------------------------
# Finding 5b: pooled statistics name the runs that gave no row
# ---------------------------------------------------------------------------------------------------------


def test_pooled_statistics_count_only_the_runs_with_rows_and_name_the_others(cli, fleet):
    bad = make_run(fleet / "bad", 9.0)
    for f in (bad / "samples" / "train").glob("*.parquet"):
        f.write_bytes(f.read_bytes()[:40])  # every sample file truncated: no row
    r = cli("summarize", f"{fleet}/*", "--by", "role", "-f", "csv")
    assert r.exit_code == 1, r.stderr
    assert _solver(r)["reward_count"] == solver_count(fleet / "a", fleet / "deep", fleet / "g1", fleet / "g2")
    assert "note: statistics pooled over the 4 runs with rows: add --by run" in r.stderr  # was "the 5 runs"
    assert "note: run(s) with no row, not in the pooled statistics: bad (" in r.stderr
    # A filter that leaves a run without rows says so the same way, as --by run does.
    long = make_run(fleet.parent / "long", 3.0, steps=5)
    r = cli("summarize", fleet / "a", long, "--by", "step", "--steps", "4:4", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert _csv(r.stdout)["reward_count"].to_list() == [8]
    assert "statistics pooled over the 1 run with rows:" in r.stderr
    assert "run(s) with no row, not in the pooled statistics: fleet/a (" in r.stderr
    r = cli("summarize", fleet / "a", long, "--by", "step", "--steps", "0:0", "-f", "csv")
    assert "statistics pooled over the 2 runs:" in r.stderr and "with no row" not in r.stderr
