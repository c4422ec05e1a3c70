"""Audit 17 (review of 26e944c): when a read fails, a run of more objects than ``HEADS_AT_MOST`` is listed once to
tell which changed since the run was listed, but a run at a bucket's root (an empty key) was asked one HEAD per
object instead: a 10,000-file run, 10,000 HEADs one after the other. It is listed too, with the same verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runlog
import runlog.run as run_module
from object_stores import s3_server  # noqa: F401
from runlog.analysis.summarize import summarize
from runlog.storage import Store
from test_changed_files_audit17 import CHANGED_FILE, PER_STEP, STEPS, _rewritten, _run


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


def _counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the HEAD requests and listings made through ``Store`` from now on."""
    n = {"head": 0, "list": 0}
    head, listing = Store.head, Store.list

    def counted_head(self: Store, key: str) -> Any:
        n["head"] += 1
        return head(self, key)

    def counted_list(self: Store, prefix: str) -> Any:
        n["list"] += 1
        return listing(self, prefix)

    monkeypatch.setattr(Store, "head", counted_head)
    monkeypatch.setattr(Store, "list", counted_list)
    return n


@pytest.mark.parametrize("where", ["", "/runs/r"], ids=["bucket-root", "prefix"])
def test_a_run_at_a_bucket_root_is_listed_once_to_tell_what_changed(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_module, "HEADS_AT_MOST", 2)
    local = _run(tmp_path / "r")
    url = f"s3://{s3_server.fresh_bucket()}{where}"
    s3_server.upload_dir(local, url)
    run = runlog.open_run(url, storage_options=s3_server.storage_options, cache=False)
    assert len(run.files) > run_module.HEADS_AT_MOST
    s3_server.put_bytes(f"{url}/{CHANGED_FILE}", _rewritten((local / CHANGED_FILE).read_bytes(), "trunc"))
    n = _counted(monkeypatch)
    changed, unknown = run._changed_files()
    assert [f.path for f in changed] == [CHANGED_FILE] and unknown == []
    assert n == {"head": 0, "list": 1}
    out = summarize(run, by=["split"], cache=False)
    assert out["reward_count"].to_list() == [(STEPS - 1) * PER_STEP]
    said = [p.message for p in run.problems if p.path == CHANGED_FILE]
    assert len(said) == 1 and said[0].startswith("changed while it was read"), said
