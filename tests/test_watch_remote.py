"""``runlog watch`` on an object store (moto's S3 on loopback): steps uploaded one by one are picked up by
polling the listing, each poll opens only the new objects, and a run whose objects are all deleted ends the
watch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runlog.run as run_module
from object_stores import s3_server  # noqa: F401
from runlog.storage import Store
from runlog.watch import RunGoneError, watcher_for
from watch_helpers import written_run

STEP = "samples/train/step_{:08d}.p0.parquet"


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


def test_watch_polls_an_object_store_and_opens_only_new_objects(s3_server: Any, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    local = written_run(tmp_path / "run", 4)
    bucket = s3_server.fresh_bucket()
    url = f"s3://{bucket}/runs/live"
    s3_server.put_bytes(f"{url}/run.json", (local / "run.json").read_bytes())
    for step in range(2):
        s3_server.put_bytes(f"{url}/{STEP.format(step)}", (local / STEP.format(step)).read_bytes())

    opened: list[Any] = []
    real = run_module.open_run

    def spy(path: Any, **kw: Any) -> Any:
        opened.append(kw.get("only"))
        return real(path, **kw)

    monkeypatch.setattr(run_module, "open_run", spy)
    w = watcher_for(url, storage_options=s3_server.storage_options, interval=1.0)
    events, delay = w.poll()
    assert [e.data["step"] for e in events if e.kind == "step"] == [0, 1]
    assert delay == 1.0 and w.backoff.max_interval == 15.0  # an object store: back-off up to 15 x interval
    events, delay = w.poll()
    assert events == [] and delay == 2.0 and len(opened) == 1  # nothing new: listed, nothing opened, wait longer
    for step in (2, 3):
        s3_server.put_bytes(f"{url}/{STEP.format(step)}", (local / STEP.format(step)).read_bytes())
    events, delay = w.poll()
    assert [e.data["step"] for e in events if e.kind == "step"] == [2, 3] and delay == 1.0
    assert sorted(opened[-1]) == ["run.json", STEP.format(2), STEP.format(3)]
    assert w.live.steps[3].rows == 8 and [r for r in w.live.steps[3].roles] == ["solver", "judge"]

    store = s3_server.obstore_store(f"s3://{bucket}")
    import obstore

    for key in ["run.json", *[STEP.format(s) for s in range(4)]]:
        obstore.delete(store, f"runs/live/{key}")
    with pytest.raises(RunGoneError):
        w.poll()
