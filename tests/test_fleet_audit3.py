"""Many runs at once (audit 3): a run reached by two spellings counts once, every run with problems keeps a
line past the cap, a nested native samples/ tree is an error, diff and plot --diff label runs by their
location, and plot --diff draws nothing without saying so no more. Expected figures come from DuckDB reading
the Parquet files, never from runlog."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.run import open_run

from conftest import make_flink_run, native_rows, write_native_samples


def make_run(root: Path, name: str, base: float, steps=range(3), splits=("train",), n: int = 8) -> Path:
    """A native run whose rewards are ``base`` plus what ``native_rows`` writes (runs tell apart)."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "name": name, "roles": ["solver", "verifier"]}
    (root / "run.json").write_text(json.dumps(manifest))
    for split in splits:
        for step in steps:
            rows = native_rows(step, n, split=split)
            for r in rows:
                r["reward"] += base
                r["roles"] = [{**x, "reward": x["reward"] + base} for x in r["roles"]]
            write_native_samples(root / "samples" / split / f"step_{step:08d}.p0.parquet", rows)
    return root


def role_stats(*runs: Path, role: str = "solver", split: str = "train") -> tuple[int, float]:
    """(count, mean) of one role's rewards over the runs' files, each run once (DuckDB)."""
    files = [f for r in runs for f in sorted((r / "samples" / split).glob("*.parquet"))]
    return role_values(files, role)


def role_values(files: list[Path], role: str = "solver") -> tuple[int, float]:
    """(count, mean) of one role's rewards in these files (DuckDB)."""
    query = (
        "SELECT count(x.reward), avg(x.reward) FROM (SELECT unnest(roles) AS x FROM read_parquet(?)) WHERE x.role = ?"
    )
    count, mean = duckdb.connect().execute(query, [[str(f) for f in files], role]).fetchone()
    return int(count), float(mean)


def _csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text))


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    make_run(root / "a", "a", 0.0)
    make_run(root / "b", "b", 100.0, steps=range(4))
    os.symlink("a", root / "a_latest")  # runs/latest -> exp-123
    return root


# ---------------------------------------------------------------------------------------------------------
# 1. One run, several spellings
# ---------------------------------------------------------------------------------------------------------


def test_a_run_reached_by_a_link_counts_once_in_a_glob(cli, fleet):
    r = cli("summarize", f"{fleet}/*", "--by", "role", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    count, mean = role_stats(fleet / "a", fleet / "b")  # each run once: 24 + 32 = 56 solver values
    solver = _csv(r.stdout).filter(pl.col("role") == "solver").row(0, named=True)
    assert solver["reward_count"] == count  # was 80: a counted twice
    assert solver["reward_mean"] == pytest.approx(mean, rel=1e-12)
    assert f"note: the same run given twice, counted once: {fleet}/a_latest is {fleet}/a" in r.stderr
    assert "statistics pooled over the 2 runs" in r.stderr


@pytest.mark.parametrize("spelling", ["./fleet/a", "fleet/a/", "ABSOLUTE", "fleet/a_latest"])
def test_other_spellings_of_one_run_count_once(cli, fleet, monkeypatch, spelling):
    monkeypatch.chdir(fleet.parent)
    other = str(fleet / "a") if spelling == "ABSOLUTE" else spelling
    r = cli("summarize", "fleet/a", other, "--by", "role", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    count, _ = role_stats(fleet / "a")
    assert _csv(r.stdout).filter(pl.col("role") == "solver")["reward_count"].to_list() == [count]
    assert f"counted once: {other} is fleet/a" in r.stderr


def test_a_glob_and_a_runs_file_naming_one_run_count_it_once(cli, fleet, tmp_path):
    listed = tmp_path / "runs.txt"
    listed.write_text(f"{fleet}/b/\n")
    r = cli("summarize", f"{fleet}/b*", "--runs", listed, "--by", "role", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    count, mean = role_stats(fleet / "b")
    solver = _csv(r.stdout).filter(pl.col("role") == "solver").row(0, named=True)
    assert (solver["reward_count"], solver["reward_mean"]) == (count, pytest.approx(mean, rel=1e-12))
    assert f"{fleet}/b/ is {fleet}/b" in r.stderr


def test_a_run_and_one_of_its_files_count_as_the_run(cli, fleet):
    one = fleet / "a" / "samples" / "train" / "step_00000000.p0.parquet"
    for order in ([fleet / "a", one], [one, fleet / "a"]):
        r = cli("summarize", *order, "--by", "role", "--format", "csv")
        assert r.exit_code == 0, r.stderr
        count, _ = role_stats(fleet / "a")  # the file's 8 rows once, within the run
        assert _csv(r.stdout).filter(pl.col("role") == "solver")["reward_count"].to_list() == [count]
        assert f"{one} is a file of {fleet / 'a'}" in r.stderr


def test_one_run_of_an_object_store_by_two_spellings_counts_once(cli, fleet, request):
    """Bucket and key decide: ``s3a://`` is ``s3://``, a trailing ``/`` is none, and an object of a run given
    too is the run's."""
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    for run in ("a", "b"):
        server.upload_dir(fleet / run, f"s3://{bucket}/runs/{run}")
    opts = [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]
    one = f"s3://{bucket}/runs/a/samples/train/step_00000000.p0.parquet"
    r = cli("summarize", f"s3://{bucket}/runs/*", f"s3a://{bucket}/runs/a/", one, "--by", "role", "-f", "csv", *opts)
    assert r.exit_code == 0, r.stderr
    count, mean = role_stats(fleet / "a", fleet / "b")
    solver = _csv(r.stdout).filter(pl.col("role") == "solver").row(0, named=True)
    assert (solver["reward_count"], solver["reward_mean"]) == (count, pytest.approx(mean, rel=1e-12))
    said = f"s3a://{bucket}/runs/a/ is s3://{bucket}/runs/a; {one} is a file of s3://{bucket}/runs/a"
    assert said in r.stderr


def test_a_folder_of_runs_says_the_link_it_lists_once(cli, fleet):
    r = cli("summarize", fleet, "--by", "run", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    assert sorted(_csv(r.stdout)["run"].unique().to_list()) == ["a", "b"]
    assert f"counted once: {fleet}/a_latest is {fleet}/a" in r.stderr  # it was dropped without a word


def test_diff_of_one_run_reached_twice_says_so(cli, fleet):
    r = cli("diff", fleet / "a", fleet / "a_latest", "--boot", "100")
    assert r.exit_code == 0, r.stderr
    assert f"note: {fleet}/a_latest is {fleet}/a: the same run, compared with itself" in r.stderr


def test_a_glob_matching_one_run_keeps_the_run_column(cli, fleet):
    r = cli("summarize", f"{fleet}/b*", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    df = _csv(r.stdout)
    assert "run" in df.columns and df["run"].unique().to_list() == ["b"]
    count, mean = role_stats(fleet / "b")
    solver = df.filter(pl.col("role") == "solver").row(0, named=True)
    assert (solver["reward_count"], solver["reward_mean"]) == (count, pytest.approx(mean, rel=1e-12))


# ---------------------------------------------------------------------------------------------------------
# 2. The cap on problem lines keeps every run
# ---------------------------------------------------------------------------------------------------------


def test_every_run_with_problems_keeps_a_line_past_the_cap(cli, tmp_path):
    root = tmp_path / "f6"
    make_run(root / "ok", "ok", 0.0)
    make_run(root / "r1", "r1", 10.0, steps=range(25))
    make_run(root / "r2", "r2", 20.0, steps=range(5))
    for f in (root / "r1" / "samples" / "train").glob("*.parquet"):
        f.write_bytes(b"PAR1xyz")  # 25 unreadable files
    bad = root / "r2" / "samples" / "train" / "step_00000002.p0.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    r = cli("summarize", f"{root}/*", "--format", "csv")
    assert r.exit_code == 1
    # r2's figures are from its 4 readable files (DuckDB), and its lost file is said (it was cut out).
    good = [f for f in sorted((root / "r2" / "samples" / "train").glob("*.parquet")) if f != bad]
    want, _ = role_values(good)
    got = _csv(r.stdout).filter((pl.col("run") == "r2") & (pl.col("role") == "solver"))["reward_count"]
    assert got.to_list() == [want]
    lines = r.stderr.splitlines()
    assert any(line.startswith("error: r2") and "step_00000002.p0.parquet" in line for line in lines), r.stderr
    assert any(line.startswith("error: r1: 25 errors in 25 files; first: samples/train/") for line in lines)
    hint = lines[-1]
    assert hint.startswith("... ") and "more, of r1 (" in hint, r.stderr
    # The command it names works on that run (inspect takes one run, not the fleet).
    assert f"see `runlog inspect {root / 'r1'}`" in hint
    assert cli("inspect", root / "r1").exit_code == 1
    problem_lines = [line for line in lines if line.startswith(("error:", "warning:"))]
    assert len(problem_lines) <= 20


# ---------------------------------------------------------------------------------------------------------
# 3. A nested native samples/ tree
# ---------------------------------------------------------------------------------------------------------


def test_a_nested_native_samples_tree_is_an_error_naming_it(cli, tmp_path):
    parent = make_run(tmp_path / "parent", "parent", 0.0)
    make_run(tmp_path / "other", "other", 9.0, steps=range(100, 103))
    shutil.copytree(tmp_path / "other" / "samples", parent / "other_exp" / "samples")  # no run.json
    r = cli("summarize", parent, "--format", "csv")
    assert r.exit_code == 1, r.stderr  # was 0, with no word
    assert "error: other_exp/samples: a second samples/ tree" in r.stderr
    count, _ = role_stats(parent, tmp_path / "other")  # read as found, and said
    assert _csv(r.stdout).filter(pl.col("role") == "solver")["reward_count"].to_list() == [count]
    info = json.loads(cli("inspect", parent, "--format", "json").stdout)
    assert [(p["kind"], p["path"]) for p in info["problems"]] == [("nested_run", "other_exp/samples"), ("warning", ".")]
    assert info["problems"][1]["message"] == "split 'train': 97 step(s) missing (3-99): no file holds them"
    # With a manifest of its own it is a run: the folder is refused, as before.
    shutil.copy(tmp_path / "other" / "run.json", parent / "other_exp" / "run.json")
    r = cli("summarize", parent)
    assert r.exit_code == 2 and "holds 2 runs (., other_exp)" in r.stderr


def test_other_layouts_own_folders_are_no_nested_tree(tmp_path):
    """Flink's flink_logs/ beside samples/, and a folder holding a run's samples/ at its top, are one run; a
    second flink_logs/ below the run's is a nested run (tests/test_inspect_audit19.py), as a second samples/ is."""
    run = make_run(tmp_path / "run", "run", 0.0)
    make_flink_run(run, steps=range(1))
    assert not [p for p in open_run(run).problems if p.kind == "nested_run"]
    make_flink_run(run / "old", steps=range(1))
    assert [p.path for p in open_run(run).problems if p.kind == "nested_run"] == ["old/flink_logs"]
    holder = tmp_path / "holder"
    make_run(holder / "exp" / "run1", "run1", 0.0)
    assert not [p for p in open_run(holder).problems if p.kind == "nested_run"]


# ---------------------------------------------------------------------------------------------------------
# 4. Labels of diff and plot --diff
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    root = tmp_path / "seeds"
    for i in range(3):
        make_run(root / f"seed{i}", "same", float(i), steps=range(4))  # one config: one manifest name
    bad = root / "seed2" / "samples" / "train" / "step_00000001.p0.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    return root


def test_diff_labels_runs_by_location_and_gives_their_paths(cli, seeds):
    paths = [str(seeds / f"seed{i}") for i in range(3)]
    r = cli("diff", *paths, "--boot", "100", "--format", "json")
    assert r.exit_code == 1, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [(x["name"], x["path"]) for x in runs] == [("seed0", paths[0]), ("seed1", paths[1]), ("seed2", paths[2])]
    assert "error: seed2: samples/train/step_00000001.p0.parquet: unreadable" in r.stderr  # was same#3
    named = cli("diff", *paths[:2], "--name", "base", "--boot", "100", "--format", "json")
    assert [x["name"] for x in json.loads(named.stdout)["runs"]] == ["base", "seed1"]


def test_plot_diff_names_the_run_of_each_problem(cli, seeds, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "d.png"
    r = cli("plot", seeds / "seed0", "--diff", seeds / "seed1", "--diff", seeds / "seed2", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "error: seed2: samples/train/step_00000001.p0.parquet: unreadable" in r.stderr
    assert "note: seed2 in split train: compared with seed0" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# 5. plot --diff of a split a compared run lacks
# ---------------------------------------------------------------------------------------------------------


def test_plot_diff_of_a_split_no_compared_run_has_writes_nothing(cli, tmp_path):
    pytest.importorskip("matplotlib")
    both = make_run(tmp_path / "both", "both", 10.0, splits=("train", "eval"))
    train = make_run(tmp_path / "train_only", "train_only", 0.0)
    out = tmp_path / "p.png"
    r = cli("plot", both, "--diff", train, "--split", "eval", "-o", out)
    assert r.exit_code == 2 and not out.exists(), r.stderr  # was exit 0 and an image of a note
    assert r.stderr.startswith("Error: nothing to draw: train_only has no samples") and r.stderr.count("\n") == 1
    # Another compared run with the split: drawn, and the run without it said.
    other = make_run(tmp_path / "other", "other", 20.0, splits=("train", "eval"))
    r = cli("plot", both, "--diff", train, "--diff", other, "--split", "eval", "-o", out)
    assert r.exit_code == 0 and out.exists(), r.stderr
    assert "note: train_only has no samples at the steps and splits chosen" in r.stderr
