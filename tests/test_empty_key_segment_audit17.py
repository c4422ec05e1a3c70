"""Audit 17 (review of 26e944c), a URL whose key holds an empty segment (``s3://b/runs//x``): an S3 key may hold
``//``, so ``runs//x`` and ``runs/x`` are two keys (two runs, both may exist). The URL read the other run,
``runs/x`` (its rows, exit 0, nothing said), and where only the ``//`` keys exist said "no such object or prefix"
for ``only/y``. Now it is refused in one line naming the URL (exit 2), and nothing else is read; a fleet keeps the
two spellings apart."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from object_stores import s3_server  # noqa: F401
from runlog.errors import EXIT_USAGE, UsageError
from runlog.storage import Store, split_url
from test_remote_fleet_audit17 import _options, make_run


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


@pytest.mark.parametrize("url", ["s3://b/runs//x", "s3://b//x", "gs://b/a///b/", "s3://b/runs/x//"])
def test_a_key_with_an_empty_segment_is_refused_naming_the_url(url: str) -> None:
    with pytest.raises(UsageError) as err:
        split_url(url)
    assert str(err.value).startswith(f"{url}: the key ")
    assert "empty segment ('//')" in str(err.value) and "not read in its place" in str(err.value)


def test_a_folder_url_and_a_plain_one_are_split_as_before() -> None:
    assert split_url("s3://b/runs/x/") == ("s3", "b", "runs/x")
    assert split_url("s3a://b/runs/x") == ("s3", "b", "runs/x")
    assert split_url("s3://b/") == split_url("s3://b") == ("s3", "b", "")


def _two_runs(tmp_path: Path, server: Any) -> str:
    """A bucket holding a 2-step run at ``runs//x`` (keys with ``//``) and a 5-step run at ``runs/x``."""
    bucket = server.fresh_bucket()
    server.upload_dir(make_run(tmp_path / "double", steps=2), f"s3://{bucket}/runs//x")
    server.upload_dir(make_run(tmp_path / "plain", steps=5), f"s3://{bucket}/runs/x")
    return bucket


def test_a_double_slash_url_reads_no_other_run(
    cli: Any,
    tmp_path: Path,
    s3_server: Any,  # noqa: F811
) -> None:
    bucket = _two_runs(tmp_path, s3_server)
    opts = _options(s3_server)
    plain = cli("summarize", f"s3://{bucket}/runs/x", "-f", "csv", *opts)
    assert plain.exit_code == 0, plain.stderr
    assert pl.read_csv(io.StringIO(plain.stdout))["reward_count"].to_list() == [40, 40]  # runs/x: 5 steps x 8
    double = cli("summarize", f"s3://{bucket}/runs//x", "-f", "csv", *opts)
    assert double.exit_code == EXIT_USAGE
    assert double.stdout == ""
    lines = double.stderr.strip().splitlines()
    assert lines == [
        f"Error: s3://{bucket}/runs//x: the key runs//x holds an empty segment ('//'), which the object-store "
        f"client cannot read; s3://{bucket}/runs/x is another key, not read in its place"
    ]


def test_a_run_whose_keys_hold_a_double_slash_is_not_said_missing(
    cli: Any,
    tmp_path: Path,
    s3_server: Any,  # noqa: F811
) -> None:
    bucket = s3_server.fresh_bucket()
    s3_server.upload_dir(make_run(tmp_path / "double", steps=2), f"s3://{bucket}/only//y")
    out = cli("summarize", f"s3://{bucket}/only//y", "-f", "csv", *_options(s3_server))
    assert out.exit_code == EXIT_USAGE
    assert f"s3://{bucket}/only//y: the key only//y holds an empty segment" in out.stderr
    assert "no such object" not in out.stderr


def test_a_fleet_does_not_take_the_double_slash_url_for_the_plain_run(
    cli: Any,
    tmp_path: Path,
    s3_server: Any,  # noqa: F811
) -> None:
    """Given both spellings, the fleet said "the same run given twice, counted once" and read ``runs/x`` once:
    they are two runs, and the one that cannot be read is said, not merged into the other."""
    bucket = _two_runs(tmp_path, s3_server)
    both = cli(
        "summarize", f"s3://{bucket}/runs/x", f"s3://{bucket}/runs//x", "--by", "run", "-f", "csv", *_options(s3_server)
    )
    assert "the same run given twice" not in both.stderr
    assert f"s3://{bucket}/runs//x: the key runs//x holds an empty segment" in both.stderr
    assert both.exit_code != 0
