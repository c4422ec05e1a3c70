"""Audit 15 (fleets): runs made of links into another run's files count those files once in pooled statistics;
a copy of a run (the same run_id) is said; a run with another run in a sub-folder is read without it; a glob
that matches an empty folder says so on S3 as on disk; --role does not add ``split`` for splits with no row;
pooled rows say how many runs each holds (``runs``)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.errors import SeveralRunsError, UsageError
from runlog.fleet import summarize_fleet

from conftest import native_rows, write_native_samples


def make_run(
    root: Path,
    *,
    run_id: str | None = None,
    roles: tuple[str, ...] = ("solver", "verifier"),
    splits: tuple[str, ...] = ("train",),
    steps: int = 3,
    n: int = 8,
) -> Path:
    """A native run (``run_id`` in its manifest when given)."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "name": root.name, "roles": list(roles)}
    if run_id is not None:
        manifest["run_id"] = run_id
    (root / "run.json").write_text(json.dumps(manifest))
    for split in splits:
        for step in range(steps):
            rows = native_rows(step, n, split=split, roles=roles)
            write_native_samples(root / "samples" / split / f"step_{step:08d}.p0.parquet", rows)
    return root


def role_count(role: str, *files: Path) -> int:
    """Valid rewards of ``role`` in these Parquet files, counted with pyarrow (not runlog)."""
    n = 0
    for f in files:
        for roles in pq.read_table(f, columns=["roles"]).column("roles").to_pylist():
            n += sum(1 for x in roles if x["role"] == role and x["reward"] is not None)
    return n


def _rows(r) -> list[dict]:  # noqa: ANN001
    return pl.read_csv(io.StringIO(r.stdout)).to_dicts()


def _count(r, role: str, **keys: object) -> int:  # noqa: ANN001
    [row] = [x for x in _rows(r) if x["role"] == role and all(x[k] == v for k, v in keys.items())]
    return int(row["reward_count"])


# ---------------------------------------------------------------------------------------------------------
# Finding 1: runs made of links into another run's files
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """``a`` a run; ``x`` its manifest and a link to a's samples folder; ``y`` its manifest and links to each
    of a's sample files."""
    root = tmp_path / "f"
    make_run(root / "a", run_id="a")
    (root / "x").mkdir()
    shutil.copy(root / "a" / "run.json", root / "x" / "run.json")
    os.symlink("../a/samples", root / "x" / "samples")
    (root / "y" / "samples" / "train").mkdir(parents=True)
    shutil.copy(root / "a" / "run.json", root / "y" / "run.json")
    for f in sorted((root / "a" / "samples" / "train").iterdir()):
        os.symlink(f, root / "y" / "samples" / "train" / f.name)
    return root


def test_files_two_runs_share_count_once_pooled(cli, linked):
    distinct = sorted((linked / "a" / "samples" / "train").glob("*.parquet"))
    r = cli("summarize", f"{linked}/*", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert _count(r, "solver") == role_count("solver", *distinct) == 24  # was 72: each file three times
    assert _rows(r)[0]["runs"] == 1
    said = "warning: x/samples/train: 3 file(s) here are a's too (the same files, through links): counted once"
    assert said in r.stderr
    assert "warning: y/samples/train: 3 file(s) here are a's too" in r.stderr
    assert "statistics pooled over the 1 run:" in r.stderr


def test_files_two_runs_share_are_each_runs_own_by_run(cli, linked):
    """Each run's rows equal that run alone (a view of a's files is a's numbers): said, not changed."""
    r = cli("summarize", f"{linked}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert [_count(r, "solver", run=name) for name in ("a", "x", "y")] == [24, 24, 24]
    assert "warning: y/samples/train: 3 file(s) here are a's too" in r.stderr
    assert "each run's rows count them" in r.stderr


def test_a_run_with_shared_and_own_files_keeps_its_own_pooled(tmp_path: Path):
    root = tmp_path / "f"
    make_run(root / "a", run_id="a")
    make_run(root / "b", run_id="b", steps=2)  # b: steps 0, 1 of its own
    name = "samples/train/step_00000002.p0.parquet"
    os.symlink(root / "a" / name, root / "b" / name)
    frame = summarize_fleet([str(root / "a"), str(root / "b")], ["role"]).frame
    solver = frame.filter(pl.col("role") == "solver").row(0, named=True)
    assert solver["reward_count"] == 24 + 16 and solver["runs"] == 2  # a's 3 steps once, and b's own 2


def test_a_step_of_shared_and_own_files_is_refused_pooled(tmp_path: Path):
    """A step of b with a's file and a file of its own: counting a's once would cut b's prompt groups of that
    step in two, so pooled statistics are refused (each run whole with --by run)."""
    root = tmp_path / "f"
    make_run(root / "a", run_id="a", steps=1)
    make_run(root / "b", run_id="b", steps=1)
    os.replace(root / "b/samples/train/step_00000000.p0.parquet", root / "b/samples/train/step_00000000.p1.parquet")
    os.symlink(root / "a/samples/train/step_00000000.p0.parquet", root / "b/samples/train/step_00000000.p0.parquet")
    with pytest.raises(UsageError, match=r"b shares 1 file\(s\) with a .*split train, step 0.*add --by run"):
        summarize_fleet([str(root / "a"), str(root / "b")], ["role"])
    per_run = summarize_fleet([str(root / "a"), str(root / "b")], ["run", "role"])
    assert per_run.frame.filter(pl.col("role") == "solver")["reward_count"].to_list() == [8, 16]


# ---------------------------------------------------------------------------------------------------------
# Finding 2: a copy of a run (the same run_id)
# ---------------------------------------------------------------------------------------------------------


def test_a_copy_of_a_run_is_said_identical(cli, tmp_path: Path):
    root = tmp_path / "f"
    make_run(root / "exp-123", run_id="exp-123")
    shutil.copytree(root / "exp-123", root / "exp-123.bak")
    r = cli("summarize", f"{root}/*", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert _count(r, "solver") == 48  # both runs, as asked: said, not refused
    assert (
        "warning: exp-123.bak/run.json: an identical copy of run exp-123 (the same run_id 'exp-123'" in r.stderr
        and "its rows are counted twice in the pooled statistics: leave one out" in r.stderr
    )


def test_two_runs_of_one_run_id_are_said_maybe_a_copy(cli, tmp_path: Path):
    root = tmp_path / "f"
    make_run(root / "seed1", run_id="grpo-{seed}")
    make_run(root / "seed2", run_id="grpo-{seed}", steps=2)
    make_run(root / "other", run_id="other")
    r = cli("summarize", f"{root}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert "warning: seed2/run.json: the same run_id 'grpo-{seed}' as run seed1: a copy of it?" in r.stderr
    assert "two seeds, can also share a templated run_id" in r.stderr and "identical" not in r.stderr
    assert "other/run.json" not in r.stderr


def test_a_copy_in_an_object_store_is_said_identical(cli, tmp_path: Path, request):
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    run = make_run(tmp_path / "exp-7", run_id="exp-7")
    server.upload_dir(run, f"s3://{bucket}/runs/exp-7")
    server.upload_dir(run, f"s3://{bucket}/runs/exp-7-copy")
    opts = [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]
    r = cli("summarize", f"s3://{bucket}/runs/*", "--by", "role", "-f", "csv", *opts)
    assert r.exit_code == 0, r.stderr
    assert "warning: exp-7-copy/run.json: an identical copy of run exp-7" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# Finding 3: a run with another run in a sub-folder
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    root = tmp_path / "f"
    make_run(root / "a")
    make_run(root / "b", steps=4)
    make_run(root / "b" / "inner" / "c2", roles=("solver",), steps=2)
    return root


def test_a_run_with_a_run_inside_is_read_without_it(cli, nested):
    b = nested / "b"
    r = cli("summarize", f"{nested}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert r.exit_code == 1, r.stderr  # the run inside is not read: said as an error
    assert _count(r, "solver", run="b") == role_count("solver", *sorted((b / "samples").rglob("*.parquet"))) == 32
    assert "run skipped" not in r.stderr
    said = "error: b/inner/c2: another run inside this run's folder (its own run.json): left out of this run's rows"
    assert f"{said} (3 file(s)) and not read: pass {b}/inner/c2 as a run of its own" in r.stderr


def test_a_run_and_the_run_inside_it_are_each_a_run(cli, nested):
    b = nested / "b"
    for args in ([b, b / "inner" / "c2"], [b]):  # both given, or the run grouped by run
        r = cli("summarize", *args, "--by", "run", "--by", "role", "-f", "csv")
        assert r.exit_code == 0, r.stderr
        assert _count(r, "solver", run="b") == 32
        inner = [x for x in _rows(r) if x["run"].endswith("inner/c2")]
        assert [x["reward_count"] for x in inner] == [16]
        assert (
            "warning: b/inner/c2: a run of its own inside this run's folder (its own run.json): read as such"
            in r.stderr
        )


def test_the_hint_for_a_run_with_a_run_inside_names_a_way(cli, nested):
    b = nested / "b"
    r = cli("inspect", b)
    assert r.exit_code == 2
    assert (
        f"it is a run itself, with the run(s) inner/c2 in a sub-folder: `runlog summarize|metrics {b} --by run`"
        in r.stderr
    )
    assert f"move {b}/inner/c2 out of {b}" in r.stderr
    with pytest.raises(SeveralRunsError):  # (the library's refusal is unchanged)
        from runlog import open_run

        open_run(b)


# ---------------------------------------------------------------------------------------------------------
# Finding 4: a glob matching an empty folder, on disk and in an object store
# ---------------------------------------------------------------------------------------------------------


def test_an_empty_folder_matched_in_s3_is_a_run_with_no_files(cli, tmp_path: Path, request):
    server = request.getfixturevalue("s3_server")
    bucket = server.fresh_bucket()
    runs = tmp_path / "runs"
    make_run(runs / "grpo-a")
    (runs / "grpo-empty").mkdir()
    server.upload_dir(runs, f"s3://{bucket}/runs")
    server.put_bytes(f"s3://{bucket}/runs/grpo-empty/", b"")  # what "Create folder" writes
    opts = [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]
    local = cli("summarize", f"{runs}/grpo-*", "-f", "csv")
    remote = cli("summarize", f"s3://{bucket}/runs/grpo-*", "-f", "csv", *opts)
    assert local.exit_code == remote.exit_code == 1, remote.stderr  # was 0 on S3, without a word
    assert "error: grpo-empty: run skipped: " in local.stderr
    assert f"error: grpo-empty: run skipped: s3://{bucket}/runs/grpo-empty: no files found" in remote.stderr
    assert local.stdout == remote.stdout


# ---------------------------------------------------------------------------------------------------------
# Finding 5: --role and the splits of runs with no row
# ---------------------------------------------------------------------------------------------------------


def test_role_in_one_split_adds_no_split_key(cli, tmp_path: Path):
    root = tmp_path / "f"
    make_run(root / "b", roles=("solver", "verifier"))
    make_run(root / "c", roles=("solver",), splits=("train", "eval"))
    r = cli("summarize", f"{root}/*", "--role", "verifier", "-f", "csv")
    alone = cli("summarize", root / "b", "--role", "verifier", "-f", "csv")
    assert r.exit_code == alone.exit_code == 0, r.stderr
    rows = _rows(r)
    assert list(rows[0])[:2] == ["run", "role"] and "split" not in rows[0]  # was run, split, role
    assert "the splits train" not in r.stderr
    # The same figures, to rounding: a sum of floats over threads may end in another last digit (docs/cli.md: 1e-12).
    mine, theirs = {k: v for k, v in rows[0].items() if k != "run"}, _rows(alone)[0]
    assert mine.keys() == theirs.keys()
    for k, v in theirs.items():
        assert mine[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
    pooled = summarize_fleet([str(root / "b"), str(root / "c")], ["role"], filters=_role("verifier")).frame
    assert "split" not in pooled.columns and pooled["reward_count"].to_list() == [24]


def _role(role: str):  # noqa: ANN202
    from runlog.analysis.filters import Filters

    return Filters.from_options(None, None, [role])


# ---------------------------------------------------------------------------------------------------------
# Finding 6: how many runs each pooled row holds
# ---------------------------------------------------------------------------------------------------------


def test_pooled_rows_say_how_many_runs_they_hold(cli, tmp_path: Path):
    root = tmp_path / "f"
    make_run(root / "a", roles=("solver", "judge"))
    make_run(root / "b", roles=("solver", "verifier", "judge"))
    make_run(root / "c", roles=("solver",), splits=("train", "eval"))
    r = cli("summarize", f"{root}/*", "--by", "role", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    got = {(x["split"], x["role"]): x["runs"] for x in _rows(r)}
    assert got == {("eval", "solver"): 1, ("train", "judge"): 2, ("train", "solver"): 3, ("train", "verifier"): 1}
    assert list(_rows(r)[0])[:3] == ["split", "role", "runs"]
    table = cli("summarize", f"{root}/*", "--by", "role")
    assert "runs" in table.stdout.splitlines()[2]
    per_run = cli("summarize", f"{root}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert "runs" not in _rows(per_run)[0]
    whole = summarize_fleet([str(root / n) for n in "abc"], []).frame  # no key but the split
    assert whole.select("split", "runs").rows() == [("eval", 1), ("train", 3)]


def test_a_run_with_a_run_inside_opens_as_the_fleet_reads_it(nested):
    """What the filters' check opens of each run of a fleet (``open_fleet_run``): the run without the run inside."""
    from runlog.fleet import open_fleet_run

    run = open_fleet_run(str(nested / "b"))
    assert sorted({f.path.split("/")[0] for f in run.files}) == ["run.json", "samples"]
    assert run.role_names() == ["solver", "verifier"]
    with pytest.raises(SeveralRunsError):
        open_fleet_run(str(nested))  # a folder of runs is still several
