"""Many runs at once (audit 4): an object-store glob matches single files as a local one does, a quoted glob
given to a command of one run says so (and `diff` expands it), and the fleet help and docs say what a fleet
refuses, where problems go and how close a fleet's numbers are to one run's. Expected figures come from
DuckDB reading the Parquet files, never from runlog."""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.errors import RunNotFoundError
from runlog.run import open_run

from conftest import ROOT, native_rows, write_native_samples


def make_run(root: Path, name: str, base: float, steps=range(3), n: int = 8) -> Path:
    """A native run whose solver rewards are ``base`` plus values that differ by step and sample (no two
    files alike), so that a figure tells which files it was computed from."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "name": name, "roles": ["solver", "verifier"]}
    (root / "run.json").write_text(json.dumps(manifest))
    for step in steps:
        rows = native_rows(step, n)
        for i, r in enumerate(rows):
            value = base + math.sin(1.7 * i + 0.31 * step) / 3 + step / 7
            r["reward"] = value
            r["roles"] = [{**x, "reward": value + k / 11} for k, x in enumerate(r["roles"])]
        write_native_samples(root / "samples" / "train" / f"step_{step:08d}.p0.parquet", rows)
    return root


def role_values(files: list[Path], role: str = "solver") -> tuple[int, float, float]:
    """(count, mean, sample std) of one role's rewards in these files (DuckDB)."""
    query = (
        "SELECT count(x.reward), avg(x.reward), stddev_samp(x.reward) "
        "FROM (SELECT unnest(roles) AS x FROM read_parquet(?)) WHERE x.role = ?"
    )
    count, mean, std = duckdb.connect().execute(query, [[str(f) for f in files], role]).fetchone()
    return int(count), float(mean), float(std)


def step_files(run: Path) -> list[Path]:
    return sorted((run / "samples" / "train").glob("*.parquet"))


def _csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text))


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    make_run(root / "a", "same", 0.0)
    make_run(root / "b", "same", 5.0, steps=range(4))  # seeds of one config: one manifest name
    return root


def _opts(server) -> list[str]:  # noqa: ANN001
    return [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]


# ---------------------------------------------------------------------------------------------------------
# 6. An object-store glob matches single files, as a local glob does
# ---------------------------------------------------------------------------------------------------------


def test_an_s3_glob_matches_single_files_as_a_local_glob_does(cli, fleet, request):
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    server.upload_dir(fleet / "b", f"s3://{bucket}/runs/b")
    server.put_bytes(f"s3://{bucket}/runs/b/samples/train/notes.txt", b"not a run")  # not of a run's kinds
    server.put_bytes(f"s3://{bucket}/runs/b/samples/train/.hidden.parquet", b"PAR1")  # hidden: never a match
    glob = f"s3://{bucket}/runs/b/samples/train/*"
    remote = cli("summarize", glob, "--by", "run", "--by", "role", "-f", "csv", *_opts(server))
    assert remote.exit_code == 0, remote.stderr  # was exit 2: "matches no run"
    local = cli("summarize", f"{fleet}/b/samples/train/*", "--by", "run", "--by", "role", "-f", "csv")
    assert local.exit_code == 0, local.stderr
    got = _csv(remote.stdout).filter(pl.col("role") == "solver").sort("run")
    files = step_files(fleet / "b")
    assert got["run"].to_list() == [f.name for f in files] and len(files) == 4  # a run per step file
    for row, f in zip(got.iter_rows(named=True), files, strict=True):
        count, mean, std = role_values([f])
        assert row["reward_count"] == count == 8
        assert row["reward_mean"] == pytest.approx(mean, rel=1e-12)
        assert row["reward_std"] == pytest.approx(std, rel=1e-9)
    # The same runs, names and numbers as the local glob.
    mine = _csv(local.stdout).filter(pl.col("role") == "solver").sort("run")
    assert mine["run"].to_list() == got["run"].to_list()
    assert mine["reward_mean"].to_list() == pytest.approx(got["reward_mean"].to_list(), rel=1e-12)


def test_an_s3_glob_matches_only_what_is_there_after_a_wildcard(cli, fleet, request):
    """``s3://b/*/a``: a folder holding no ``a`` gives no location (it was a run skipped, exit 1)."""
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    server.upload_dir(fleet / "a", f"s3://{bucket}/runs/a")
    server.upload_dir(fleet / "a", f"s3://{bucket}/runs2/a")
    server.upload_dir(fleet / "b", f"s3://{bucket}/runs3/b")  # no runs3/a
    r = cli("summarize", f"s3://{bucket}/*/a", "--by", "run", "--by", "role", "-f", "csv", *_opts(server))
    assert r.exit_code == 0, r.stderr
    df = _csv(r.stdout).filter(pl.col("role") == "solver")
    assert sorted(df["run"].to_list()) == ["runs/a", "runs2/a"]
    count, mean, _ = role_values(step_files(fleet / "a"))
    assert df["reward_count"].to_list() == [count, count]
    assert df["reward_mean"].to_list() == pytest.approx([mean, mean], rel=1e-12)
    assert "run skipped" not in r.stderr


# ---------------------------------------------------------------------------------------------------------
# 7. A glob given to a command of one run, or to diff
# ---------------------------------------------------------------------------------------------------------


def _one_line_error(r) -> str:  # noqa: ANN001
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    return r.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["doctor"],
        ["doctor", "--follow", "--idle-exit", "1"],
        ["render-trajectory"],
        ["report", "-o", "OUT/r.html"],
        ["plot", "-o", "OUT/p.png"],
        ["upload-wandb", "--project", "p", "--dry-run"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_command_of_one_run_says_a_glob_takes_one_run_and_what_it_matches(cli, fleet, tmp_path, command):
    if command[0] in ("report", "plot"):
        pytest.importorskip("matplotlib")
    args = [a.replace("OUT", str(tmp_path)) for a in command]
    r = cli(args[0], f"{fleet}/*", *args[1:])
    said = _one_line_error(r)  # was: "fleet/*: no such file or directory"
    pattern = f"'{fleet}/*'"
    want = (
        f"Error: runlog {args[0]} takes one run, not a glob: {pattern} matches 2 ({fleet}/a, {fleet}/b): "
        "pass one of them (summarize, metrics, diff and plot --diff take globs)\n"
    )
    assert said == want


def test_a_glob_matching_one_run_or_none(cli, fleet, tmp_path):
    r = cli("inspect", f"{fleet}/a*")
    assert f"takes one run, not a glob: '{fleet}/a*' matches one ({fleet}/a): pass it" in _one_line_error(r)
    r = cli("inspect", f"{fleet}/zz*")  # matches nothing: the path does not exist, as before
    assert _one_line_error(r) == f"Error: {fleet}/zz*: no such file or directory\n"
    pytest.importorskip("matplotlib")
    r = cli("report", fleet / "a", "--against", f"{fleet}/*", "-o", tmp_path / "r.html")
    assert "Error: runlog report takes one run, not a glob:" in _one_line_error(r)
    # A folder whose name only looks like a glob is that folder.
    odd = make_run(tmp_path / "run[1]", "odd", 0.0)
    make_run(tmp_path / "run1", "one", 0.0)
    assert cli("inspect", odd).exit_code == 0


def test_open_run_of_a_glob_raises_a_not_found_error_naming_the_matches(fleet):
    from runlog.listing import GlobGivenError

    with pytest.raises(GlobGivenError) as info:
        open_run(f"{fleet}/*")
    assert isinstance(info.value, RunNotFoundError)  # code catching "not found" still does
    assert info.value.matches == [str(fleet / "a"), str(fleet / "b")]
    assert str(info.value).startswith(f"one run is read here, not a glob: '{fleet}/*' matches 2")


def test_an_object_store_glob_given_to_a_command_of_one_run(cli, fleet, request):
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    for run in ("a", "b"):
        server.upload_dir(fleet / run, f"s3://{bucket}/runs/{run}")
    r = cli("inspect", f"s3://{bucket}/runs/*", *_opts(server))
    said = _one_line_error(r)  # was: "no such object or prefix"
    assert f"runlog inspect takes one run, not a glob: 's3://{bucket}/runs/*' matches 2 " in said
    assert f"(s3://{bucket}/runs/a, s3://{bucket}/runs/b)" in said


def _end_means(run: Path, steps: range, role: str = "solver") -> float:
    """The mean of a role's rewards over these steps (diff's end window over the common steps), DuckDB."""
    return role_values([f for f in step_files(run) if int(f.name[5:13]) in steps], role)[1]


def test_diff_expands_a_glob_the_first_match_the_baseline(cli, fleet):
    make_run(fleet / "c", "same", 9.0)
    r = cli("diff", f"{fleet}/*", "--boot", "100", "-f", "json")
    assert r.exit_code == 0, r.stderr  # was exit 2: "needs at least two runs"
    out = json.loads(r.stdout)
    runs = [(x["name"], x["path"], x["baseline"]) for x in out["runs"]]
    assert runs == [("a", f"{fleet}/a", True), ("b", f"{fleet}/b", False), ("c", f"{fleet}/c", False)]
    assert f"note: the baseline is {fleet}/a, the first run '{fleet}/*' matches" in r.stderr
    # The end window is the 3 steps every run has (0..2): the solver's mean there, from DuckDB.
    roles = {x["run"]: x for x in out["roles"] if x["role"] == "solver"}
    assert roles["b"]["reward_end_baseline"] == pytest.approx(_end_means(fleet / "a", range(3)), rel=1e-12)
    assert roles["b"]["reward_end"] == pytest.approx(_end_means(fleet / "b", range(3)), rel=1e-12)
    assert roles["c"]["reward_end"] == pytest.approx(_end_means(fleet / "c", range(3)), rel=1e-12)
    # --name labels the runs the glob gave, in order; the help says a glob is taken.
    r = cli("diff", f"{fleet}/*", "--name", "x", "--name", "y", "--boot", "100", "-f", "json")
    assert [x["name"] for x in json.loads(r.stdout)["runs"]] == ["x", "y", "c"]
    assert "a quoted glob such as 'runs/*' stands for the runs it matches" in _help(cli, "diff")


def test_diff_of_a_baseline_and_a_glob_compares_it_with_the_others_once(cli, fleet):
    os.symlink("a", fleet / "a_latest")  # runs/latest -> exp-123
    make_run(fleet / "c", "same", 9.0)
    r = cli("diff", fleet / "b", f"{fleet}/*", "--boot", "100", "-f", "json")
    assert r.exit_code == 0, r.stderr  # was: "fleet/*: no such file or directory"
    names = [x["name"] for x in json.loads(r.stdout)["runs"]]
    assert names == ["b", "a", "c"]  # b not against itself, a_latest not a second a
    assert f"note: the same run matched twice, compared once: {fleet}/a_latest is {fleet}/a" in r.stderr
    assert "the baseline is" not in r.stderr  # the baseline was given


def test_diff_of_a_glob_skips_a_match_that_is_no_run_and_says_one_match_is_too_few(cli, fleet):
    (fleet / "empty").mkdir()
    r = cli("diff", f"{fleet}/*", "--boot", "100", "-f", "json")
    assert r.exit_code == 1, r.stderr  # the others compared, the empty folder said
    assert [x["name"] for x in json.loads(r.stdout)["runs"]] == ["a", "b"]
    assert f"error: {fleet}/empty: run skipped: no files found" in r.stderr
    r = cli("diff", f"{fleet}/a*")
    said = _one_line_error(r)
    assert "diff needs at least two runs" in said and f"('{fleet}/a*' gives {fleet}/a)" in said
    # A folder given as such that is no run stays a usage error.
    r = cli("diff", fleet / "a", fleet / "empty")
    assert _one_line_error(r) == f"Error: {fleet}/empty: no files found\n"


# ---------------------------------------------------------------------------------------------------------
# 9. Help and docs: a fleet example, what a fleet refuses, where problems go, how close the numbers are
# ---------------------------------------------------------------------------------------------------------


def _help(cli, *args) -> str:  # noqa: ANN001
    r = cli(*args, "--help")
    assert r.exit_code == 0
    return " ".join(r.stdout.replace("│", " ").split())


def test_summarize_help_shows_a_fleet_and_what_it_refuses(cli):
    text = _help(cli, "summarize")
    assert "runlog summarize 'sample_runs/*' --by run --by role" in text
    assert "--window, --scalars and --correlations take one run: with a fleet they are a usage error" in text
    for option in ("moving averages over the last N logged steps", "scalar metrics (JSONL) instead", "role rewards"):
        assert re.search(re.escape(option) + r"[^.]*\(one run; not for a fleet\)", text), option
    assert "alone to 1e-12 relative" in text
    assert "--format json and csv hold the table alone" in text


def test_a_fleet_refuses_window_scalars_and_correlations_as_the_docs_say(cli, fleet):
    docs = " ".join((ROOT / "docs" / "scaling.md").read_text().split())
    quoted = re.search(r"\(exit 2, `(Error: [^`]*)`\)", docs)
    assert quoted, "scaling.md quotes the error"
    for option in (["--window", "3"], ["--scalars"], ["--correlations"]):
        r = cli("summarize", f"{fleet}/*", *option)
        assert _one_line_error(r) == quoted.group(1) + "\n"


def test_a_fleets_json_is_the_table_and_its_problems_are_on_stderr(cli, fleet):
    bad = fleet / "b" / "samples" / "train" / "step_00000001.p0.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    r = cli("summarize", f"{fleet}/*", "-f", "json")
    assert r.exit_code == 1
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and {x["run"] for x in rows} == {"a", "b"}
    b = next(x for x in rows if x["run"] == "b" and x["role"] == "solver")
    count, mean, _ = role_values([f for f in step_files(fleet / "b") if f != bad])
    assert (b["reward_count"], b["reward_mean"]) == (count, pytest.approx(mean, rel=1e-12))
    assert f"error: b/samples/train/{bad.name}: unreadable" in r.stderr
    docs = " ".join((ROOT / "docs" / "scaling.md").read_text().split())
    assert "Problems go to stderr only, never into the output, for a fleet as for one run" in docs


def test_a_run_in_a_fleet_gives_its_own_numbers_to_1e_12_as_the_docs_say(cli, fleet):
    docs = " ".join((ROOT / "docs" / "scaling.md").read_text().split())
    assert "exactly the numbers" not in docs
    assert "the numbers of `summarize` on that run alone to 1e-12 relative" in docs
    r = cli("summarize", f"{fleet}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    fleet_rows = _csv(r.stdout)
    for run in ("a", "b"):
        one = cli("summarize", fleet / run, "--by", "role", "-f", "csv")
        alone = _csv(one.stdout).sort("role")
        mine = fleet_rows.filter(pl.col("run") == run).drop("run").sort("role")
        for col in ("reward_mean", "reward_std", "kl_mean", "kl_std"):
            assert mine[col].to_list() == pytest.approx(alone[col].to_list(), rel=1e-12, abs=0), col
        count, mean, std = role_values(step_files(fleet / run))
        solver = mine.filter(pl.col("role") == "solver").row(0, named=True)
        assert (solver["reward_count"], solver["reward_mean"]) == (count, pytest.approx(mean, rel=1e-12))
        assert solver["reward_std"] == pytest.approx(std, rel=1e-9)


def test_watch_refuses_a_glob_and_plot_diff_expands_one(tmp_path: Path, cli) -> None:
    pytest.importorskip("matplotlib")
    from conftest import make_native_run

    for name in ("a", "b"):
        make_native_run(tmp_path / "runs" / name)
    r = cli("watch", str(tmp_path / "runs" / "*"), "--once")
    assert r.exit_code == 2 and "takes one run, not a glob" in r.stderr and "matches 2" in r.stderr, r.stderr
    out = tmp_path / "d.png"
    r = cli("plot", tmp_path / "runs" / "a", "--diff", str(tmp_path / "runs" / "*"), "-o", out)
    assert r.exit_code == 0 and out.exists(), r.stderr
    r = cli("plot", tmp_path / "runs" / "a", "--diff", str(tmp_path / "runs" / "a*"), "-o", out)
    assert r.exit_code == 2 and "--diff needs at least two runs" in r.stderr, r.stderr


def test_plot_diff_of_a_glob_skips_a_match_that_is_no_run(tmp_path: Path, cli) -> None:
    pytest.importorskip("matplotlib")
    from conftest import make_native_run

    for name in ("a", "b"):
        make_native_run(tmp_path / "runs" / name)
    (tmp_path / "runs" / "c_empty").mkdir()
    out = tmp_path / "d.png"
    r = cli("plot", str(tmp_path / "runs" / "*"), "--diff", str(tmp_path / "runs" / "*"), "-o", out)
    # The overlay of the runs that were read is drawn; the skipped match is an error (exit 1), as in diff.
    assert r.exit_code == 1 and out.exists(), r.stderr
    assert f"{tmp_path / 'runs' / 'c_empty'}: run skipped" in r.stderr


def test_a_link_that_sorts_first_leaves_the_run_its_own_name(tmp_path: Path, cli) -> None:
    from conftest import make_native_run

    make_native_run(tmp_path / "fleet" / "r1")
    make_native_run(tmp_path / "fleet" / "r2")
    (tmp_path / "fleet" / "latest").symlink_to(tmp_path / "fleet" / "r2")
    r = cli("summarize", str(tmp_path / "fleet" / "*"), "--by", "run", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    runs = {line.split(",")[0] for line in r.stdout.strip().splitlines()[1:]}
    assert runs == {"r1", "r2"}, runs  # was {"latest", "r1"}: the link's name kept, the folder's dropped
    assert f"{tmp_path / 'fleet' / 'latest'} is {tmp_path / 'fleet' / 'r2'}" in r.stderr
