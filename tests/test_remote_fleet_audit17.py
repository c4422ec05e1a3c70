"""Audit 17, object stores and fleets: a glob matching a folder marker alone says "no files found", as
docs/scaling.md does; a body cut short names no stray "}" as its cause; and the fleet's notes say what is true (a
run given and found inside another PATH names both; a folder of runs that is skipped shares no files with the runs
read). (``s3://b/fleet//run`` is not ``fleet/run``, another key: tests/test_empty_key_segment_audit17.py.)"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.storage import Store, remote_reason

from conftest import native_rows, write_native_samples


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


def make_run(root: Path, steps: int = 3, n: int = 8) -> Path:
    """A native run of ``steps`` train steps of ``n`` samples."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "name": root.name, "roles": ["solver", "verifier"]}
    (root / "run.json").write_text(json.dumps(manifest))
    for step in range(steps):
        rows = native_rows(step, n, split="train", roles=("solver", "verifier"))
        write_native_samples(root / "samples" / "train" / f"step_{step:08d}.p0.parquet", rows)
    return root


def _options(server: Any) -> list[str]:
    return [a for k, v in server.storage_options.items() for a in ("--storage-option", f"{k}={v}")]


# -- Finding 4: a folder marker alone -----------------------------------------------------------------------------


def test_a_glob_matching_a_real_folder_marker_alone_says_no_files_found(
    cli: Any,
    tmp_path: Path,
    s3_server: Any,  # noqa: F811
) -> None:
    """What the S3 console's "Create folder" writes is the key ``runs/empty/`` (with its slash): it said "no such
    object or prefix" (a missing run), where docs/scaling.md and an empty folder on disk say "no files found"."""
    bucket = s3_server.fresh_bucket()
    s3_server.upload_dir(make_run(tmp_path / "r1"), f"s3://{bucket}/runs/r1")
    s3_server._put(bucket, "runs/empty/", b"")
    opts = _options(s3_server)
    fleet = cli("summarize", f"s3://{bucket}/runs/*", "--by", "run", "-f", "csv", *opts)
    assert fleet.exit_code == 1, fleet.stderr
    assert (
        f"error: empty: run skipped: s3://{bucket}/runs/empty: no files found (an empty folder: its marker "
        "object only)" in fleet.stderr
    )
    alone = cli("summarize", f"s3://{bucket}/runs/empty", "-f", "csv", *opts)
    assert alone.exit_code == 2
    assert "no files found" in alone.stderr and "no such object" not in alone.stderr


# -- Finding 5: a body cut short -----------------------------------------------------------------------------------

DEBUG_DUMP = (
    'Generic S3 error: HTTP error: request or response body error\n\nDebug source:\nGeneric {\n    store: "S3",\n'
    "    source: HttpError {\n        kind: Interrupted,\n        source: hyper::Error(\n            Body,\n"
    "            Custom {\n                kind: UnexpectedEof,\n                error: IncompleteBody,\n"
    "            },\n        ),\n    },\n}"
)
CAUSED_BY = (
    "object-store error: Generic S3 error: HTTP error: request or response body error (path: s3://b/r/x.parquet)"
    "\n\nCaused by:\n    0: error reading a body from connection\n    1: end of file before message length reached"
)


def test_a_body_cut_short_names_no_bracket_as_its_cause() -> None:
    """obstore's text may end with a Rust ``Debug`` dump whose last line is "}": that was given as the cause."""
    assert remote_reason(OSError(DEBUG_DUMP)) == "the object's content arrived cut short"
    assert remote_reason(OSError(CAUSED_BY)) == (
        "the object's content arrived cut short (end of file before message length reached)"
    )


# -- Finding 6: the fleet's notes ----------------------------------------------------------------------------------


def test_a_run_given_and_found_inside_another_path_is_said_with_both_paths(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``outer outer/sub/inner --by run``: ``outer`` stands for itself and its inner run; the note named one path
    ("the same run given twice, counted once: outer/sub/inner"), as if it had been typed twice."""
    make_run(tmp_path / "outer")
    make_run(tmp_path / "outer" / "sub" / "inner", steps=2)
    monkeypatch.chdir(tmp_path)
    r = cli("summarize", "outer", "outer/sub/inner", "--by", "run", "-f", "csv")
    assert r.exit_code == 0, r.stderr
    assert sorted(pl.read_csv(io.StringIO(r.stdout))["run"].unique().to_list()) == ["outer", "outer/sub/inner"]
    notes = [line for line in r.stderr.splitlines() if "given twice" in line]
    assert notes == [
        "note: the same run given twice, counted once: outer/sub/inner is also a run of outer (--by run)"
    ], r.stderr


def test_a_skipped_folder_of_runs_shares_no_files_with_the_runs_read(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``links/*`` with ``latest -> ../fleet/a`` and ``fleetlink -> ../fleet``: fleetlink holds several runs and is
    skipped, yet a warning said latest's files "are fleetlink's too ... each run's rows count them": no row of
    fleetlink counted anything."""
    make_run(tmp_path / "fleet" / "a")
    make_run(tmp_path / "fleet" / "b")
    (tmp_path / "links").mkdir()
    os.symlink("../fleet/a", tmp_path / "links" / "latest")
    os.symlink("../fleet", tmp_path / "links" / "fleetlink")
    monkeypatch.chdir(tmp_path)
    r = cli("summarize", "links/*", "--by", "run", "-f", "csv")
    assert r.exit_code == 1, r.stderr
    assert "fleetlink: run skipped" in r.stderr and "holds 2 runs" in r.stderr
    assert "fleetlink's too" not in r.stderr, r.stderr
    assert pl.read_csv(io.StringIO(r.stdout))["run"].unique().to_list() == ["latest"]
