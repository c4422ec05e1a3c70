"""Audit 17, files changed between listing and reading: one rewritten with another column type (or without a
column) is named and left out as changed while it was read, and the other files are analysed; an object cut
short after listing is said changed (as a local file is), not "corrupt data (the footer is intact)"."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from object_stores import gcs_server, s3_server  # noqa: F401
from runlog.analysis.summarize import summarize
from runlog.storage import Store

STEPS = 4
PER_STEP = 4
CHANGED_FILE = "samples/train/step_00000002.p0.parquet"


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


def _run(root: Path) -> Path:
    with runlog.RunWriter(root, name="r", roles=["solver"], durable=False) as w:
        for step in range(STEPS):
            w.log_samples(
                step, [{"reward": 0.5 * i, "roles": {"solver": {"reward": 0.5 * i}}} for i in range(PER_STEP)]
            )
    return root


def _rewritten(data: bytes, mode: str) -> bytes:
    """``data`` (a Parquet file) with ``reward`` as text, without ``roles``, or cut to its first half."""
    if mode == "trunc":
        return data[: len(data) // 2]
    t = pq.read_table(pa.BufferReader(data))
    if mode == "schema":
        t = t.set_column(t.schema.get_field_index("reward"), "reward", t["reward"].cast(pa.string()))
    else:
        t = t.drop_columns(["roles"])
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


def _where(tmp_path: Path, server: Any, remote: bool) -> tuple[str, Any, Any]:
    """The run's location, its storage options, and a function that rewrites its changed file by mode."""
    local = _run(tmp_path / "r")
    target = local / CHANGED_FILE
    if not remote:

        def rewrite_local(mode: str) -> None:
            new = _rewritten(target.read_bytes(), mode)
            tmp = target.with_suffix(".new")
            tmp.write_bytes(new)
            tmp.replace(target)

        return str(local), None, rewrite_local
    url = f"{server.scheme}://{server.fresh_bucket()}/r"
    server.upload_dir(local, url)

    def rewrite_remote(mode: str) -> None:
        server.put_bytes(f"{url}/{CHANGED_FILE}", _rewritten(target.read_bytes(), mode))

    return url, server.storage_options, rewrite_remote


def _problems_of(run: Any) -> list[str]:
    return [p.message for p in run.problems if p.path == CHANGED_FILE]


@pytest.mark.parametrize("remote", [False, True], ids=["local", "s3"])
@pytest.mark.parametrize("mode", ["schema", "dropcol"])
def test_a_file_rewritten_with_other_columns_is_named_and_the_rest_summarised(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
    mode: str,
    remote: bool,
) -> None:
    """Rewritten after listing with ``reward`` as text (or without ``roles``): it read whole on its own, so no
    file was found failing, and the run failed as a whole ("data type mismatch for column reward") without
    naming it. It is now left out as changed while read, naming what changed; the other files are counted."""
    where, options, rewrite = _where(tmp_path, s3_server, remote)
    run = runlog.open_run(where, storage_options=options, cache=False)
    rewrite(mode)
    out = summarize(run, by=["split"], cache=False)
    assert out["reward_count"].to_list() == [(STEPS - 1) * PER_STEP]
    said = _problems_of(run)
    assert len(said) == 1, said
    assert said[0].startswith("changed while it was read"), said
    assert said[0].endswith("file skipped"), said
    assert ("reward" if mode == "schema" else "roles") in said[0], said


@pytest.mark.parametrize("store", ["local", "s3", "gs"])
def test_an_object_cut_short_after_listing_is_said_changed_as_a_local_file_is(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """An object rewritten with its first half after listing was "corrupt data (the footer is intact)" on S3,
    "changed while it was read" locally: the store's HEAD (size and ETag against the listing's) tells."""
    server = None if store == "local" else request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[store])
    where, options, rewrite = _where(tmp_path, server, store != "local")
    run = runlog.open_run(where, storage_options=options, cache=False)
    rewrite("trunc")
    out = summarize(run, by=["split"], cache=False)
    assert out["reward_count"].to_list() == [(STEPS - 1) * PER_STEP]
    said = _problems_of(run)
    assert len(said) == 1 and said[0].startswith("changed while it was read"), said
    assert "footer is intact" not in said[0]


@pytest.mark.parametrize("mode", ["schema", "trunc"])
def test_many_objects_are_checked_by_one_listing_with_the_same_verdict(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run of more objects than are asked one HEAD each (``HEADS_AT_MOST``) is listed once to tell which
    changed: the same verdict, the same figures."""
    import runlog.run as run_module

    monkeypatch.setattr(run_module, "HEADS_AT_MOST", 0, raising=False)
    where, options, rewrite = _where(tmp_path, s3_server, True)
    run = runlog.open_run(where, storage_options=options, cache=False)
    rewrite(mode)
    out = summarize(run, by=["split"], cache=False)
    assert out["reward_count"].to_list() == [(STEPS - 1) * PER_STEP]
    said = _problems_of(run)
    assert len(said) == 1 and said[0].startswith("changed while it was read"), said


def test_an_object_whose_version_the_store_does_not_tell_is_not_called_corrupt(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A store that gives neither ETag nor time (no stamp) cannot tell a replaced object from a corrupt one: the
    file is left out as before, and the words claim neither ("footer is intact" was a claim it could not know)."""
    where, options, rewrite = _where(tmp_path, s3_server, True)
    run = runlog.open_run(where, storage_options=options, cache=False)
    for f in run.files:
        f.stamp = None
    rewrite("trunc")
    out = summarize(run, by=["split"], cache=False)
    assert out["reward_count"].to_list() == [(STEPS - 1) * PER_STEP]
    said = _problems_of(run)
    assert len(said) == 1, said
    assert said[0].startswith("unreadable data (corrupt, or changed since it was listed"), said
    assert "footer is intact" not in said[0] and said[0].endswith("file skipped")


def test_a_listing_and_a_head_of_one_version_agree_however_the_store_quotes_its_etag() -> None:
    """A GCS listing gives an ETag bare where its HEAD quotes it; S3's listing times may carry milliseconds a HEAD
    lacks: neither is a new version (an object taken as changed would be said "changed while it was read")."""
    from runlog.storage import same_version

    assert same_version((5, "abc==", 1.0), (5, '"abc=="', 1.0)) is True
    assert same_version((5, None, 1.25), (5, None, 1.0)) is True
    assert same_version((5, '"abc"', 1.0), (6, '"abc"', 1.0)) is False
    assert same_version((5, '"abc"', 1.0), (5, '"abd"', 1.0)) is False
    assert same_version(None, (5, '"abc"', 1.0)) is None
