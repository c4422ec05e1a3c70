"""Audit 13, object stores: a watch sees the writer close (its state file read afresh once rewritten), one key
object_store cannot take costs its own object and not the run or the fleet, and a missing bucket is an error
for ``watch`` as for every other command. Each remote result is compared with the same run read locally."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import runlog
from object_stores import s3_server  # noqa: F401
from runlog.storage import Store
from runlog.watch import watcher_for


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    Store._cache.clear()
    yield
    Store._cache.clear()


def _run(root: Path) -> Path:
    with runlog.RunWriter(root, name="r", roles=["solver"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [{"reward": 0.5 * i, "roles": {"solver": {"reward": 0.5 * i}}} for i in range(4)])
    return root


def _upload(server: Any, local: Path, url: str, extra: dict[str, bytes] | None = None) -> None:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    server.make_bucket(bucket)
    for p in sorted(q for q in local.rglob("*") if q.is_file()):
        server._put(bucket, f"{prefix}/{p.relative_to(local).as_posix()}", p.read_bytes())
    for rel, data in (extra or {}).items():
        server._put(bucket, f"{prefix}/{rel}", data)  # put raw: the helper's URL parsing drops a tab


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "runlog", *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


def _truth(local: Path) -> tuple[float, int]:
    """The mean reward and row count of the run's sample files, by pyarrow."""
    values = [
        v for f in sorted(local.rglob("*.parquet")) for v in pq.read_table(f, columns=["reward"])["reward"].to_pylist()
    ]
    return sum(values) / len(values), len(values)


def test_a_watch_on_s3_ends_finished_when_the_state_file_is_rewritten_closed(s3_server: Any, tmp_path: Path) -> None:  # noqa: F811
    local = _run(tmp_path / "run")
    closed = (local / ".writer.p0.json").read_bytes()
    assert json.loads(closed)["state"] == "closed"
    opened = json.dumps({**json.loads(closed), "state": "open"}).encode()
    url = f"s3://{s3_server.fresh_bucket()}/runs/live"
    _upload(s3_server, local, url, {".writer.p0.json": opened})
    (local / ".writer.p0.json").write_bytes(opened)

    ends = {}
    for where in (str(local), url):
        w = watcher_for(where, storage_options=s3_server.storage_options, interval=0.01)
        w.poll()
        assert not w.live.finished
        if where == url:
            s3_server.put_bytes(f"{url}/.writer.p0.json", closed)
        else:
            (local / ".writer.p0.json").write_bytes(closed)
        events, _ = w.poll()
        ends[where] = ([e.data["finished"] for e in events if e.kind == "ended"], w.live.finished)
    assert ends[str(local)] == ends[url] == ([True], True)


def test_a_key_with_a_tab_is_one_warning_and_the_rest_is_read(s3_server: Any, tmp_path: Path) -> None:  # noqa: F811
    local = _run(tmp_path / "run")
    (local / "notes").mkdir()
    (local / "notes" / "a\tb.txt").write_text("hello")
    (local / "README.md").write_text("before")  # in the listing page of the bad key, before it
    url = f"s3://{s3_server.fresh_bucket()}/runs/one"
    _upload(s3_server, local, url)
    mean, count = _truth(local)
    out = {}
    for where in (str(local), url):
        res = _cli("summarize", where, "--format", "json", env=s3_server.env)
        rows = json.loads(res.stdout)
        out[where] = (res.returncode, rows[0]["reward_mean"], rows[0]["reward_count"])
        assert "\t" not in res.stderr and ("notes/a\\tb.txt" in res.stderr or "1 more file" in res.stderr), res.stderr
    assert out[url] == out[str(local)]
    assert out[url][0] == 0 and out[url][1] == pytest.approx(mean, rel=1e-12) and out[url][2] == count


@pytest.mark.parametrize("bad", ["bad\tname", "bad\x7fname"])
def test_a_fleet_folder_named_with_a_control_character_costs_only_that_run(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
    bad: str,
) -> None:
    local = _run(tmp_path / "fleet" / "ok")
    url = f"s3://{s3_server.fresh_bucket()}/fleet"
    _upload(s3_server, local, f"{url}/ok")
    _upload(s3_server, local, f"{url}/{bad}")
    mean, count = _truth(local)
    res = _cli("summarize", f"{url}/*", "--by", "run", "--format", "json", env=s3_server.env)
    rows = {r["run"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"ok"}, (res.stderr, rows)
    for name in ("ok",):
        assert rows[name]["reward_mean"] == pytest.approx(mean, rel=1e-12) and rows[name]["reward_count"] == count
    assert res.returncode == 1 and not any(c in res.stderr for c in "\t\x7f\r"), res.stderr
    assert all("\n" not in line for line in res.stderr.splitlines())


def test_watch_once_on_a_missing_bucket_is_an_error(s3_server: Any, tmp_path: Path) -> None:  # noqa: F811
    one_shot = _cli("summarize", "s3://no-such-bkt-a13/run", env=s3_server.env)
    watch = _cli("watch", "s3://no-such-bkt-a13/run", "--once", env=s3_server.env)
    assert one_shot.returncode == 2 and "NoSuchBucket" in one_shot.stderr
    assert watch.returncode == one_shot.returncode and watch.stderr.strip() == one_shot.stderr.strip()
    follow = _cli("doctor", "s3://no-such-bkt-a13/run", "--follow", "--timeout", "5", env=s3_server.env)
    assert follow.returncode == 2 and "NoSuchBucket" in follow.stderr
    # A prefix with no object yet in a bucket that exists is still waited for.
    bucket = s3_server.fresh_bucket()
    empty = _cli("watch", f"s3://{bucket}/run", "--once", env=s3_server.env)
    assert empty.returncode == 0 and "waiting for the first object" in empty.stderr
