"""Runs in object stores (``s3://``, ``gs://``) read where they are: every command gives what it gives on the
same run as a local directory.

The stores are real servers on loopback (``tests/object_stores.py``: moto for S3, fake-gcs-server for GCS).
Each sample run (and two real data dumps) is uploaded once per store; tests that damage a run upload their
own copy to a fresh bucket. Options reach runlog as ``--storage-option`` flags, as ``open_run(...,
storage_options=...)``, and through the environment (``AWS_*``, ``GOOGLE_BASE_URL`` / ``GOOGLE_SKIP_SIGNATURE``).

"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polars.testing import assert_frame_equal

import runlog.run
import runlog.storage
from object_stores import gcs_server, s3_server  # noqa: F401
from runlog.analysis.summarize import summarize
from runlog.run import open_run
from runlog.storage import Store

from conftest import REALDATA, SAMPLE_RUNS, Cli, make_flink_run, make_native_run

SERVERS = {"s3": "s3_server", "gs": "gcs_server"}
SAMPLE_NAMES = ["debate_grpo", "flink_mixed", "jaxarc", "damaged"]
# Real dumps, each uploaded as a run folder of its own (the files as they are).
REAL_RUNS = {
    "verifiers": ["verifiers_math_python_gpt5nano_results.jsonl", "verifiers_math_python_gpt5nano_metadata.json"],
    "nemo_gym": ["nemo_gym_tool_call_multireward_rollouts.jsonl"],
}
RUN_NAMES = SAMPLE_NAMES + list(REAL_RUNS)
# render-trajectory of one step of each run (jaxarc has no per-sample data: it fails the same way both times).
RENDER_STEP = {
    "debate_grpo": ["--step", "5", "--split", "train"],
    "flink_mixed": ["--step", "7"],
    "jaxarc": ["--step", "0"],
    "damaged": ["--step", "2"],
    "verifiers": ["--step", "0", "--split", "eval"],
    "nemo_gym": ["--step", "0"],
}
# Every env variable the two servers' options can come from: cleared unless a test passes options that way.
OPTION_ENV = [
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "GOOGLE_BASE_URL",
    "GOOGLE_SKIP_SIGNATURE",
    "RUNLOG_REMOTE_CONCURRENCY",
]


# -- fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No store (and no process-wide option) survives a test: each one configures its own."""
    for name in OPTION_ENV:
        monkeypatch.delenv(name, raising=False)
    Store._cache.clear()
    yield
    Store._cache.clear()


@pytest.fixture
def s3(s3_server: Any) -> Any:  # noqa: F811  (the session fixture, under a name that does not shadow its import)
    return s3_server


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(SERVERS[request.param])


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders by name: the sample runs, and the real dumps copied into folders of their own."""
    runs = {name: SAMPLE_RUNS / name for name in SAMPLE_NAMES}
    if REALDATA.is_dir():
        base = tmp_path_factory.mktemp("realdata")
        for name, files in REAL_RUNS.items():
            if all((REALDATA / f).is_file() for f in files):
                (base / name).mkdir()
                for f in files:
                    shutil.copy(REALDATA / f, base / name / f)
                runs[name] = base / name
    return runs


class Uploaded:
    """Every run of ``local_runs`` uploaded below ``scheme://bucket/<name>`` of one server."""

    def __init__(self, server: Any, bucket: str, runs: dict[str, Path]):
        self.server = server
        self.bucket = bucket
        self.base = f"{server.scheme}://{bucket}"
        self.runs = runs

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def local(self, name: str) -> Path:
        if name not in self.runs:
            pytest.skip(f"real data for {name!r} not found in {REALDATA} (the shared/realdata checkout)")
        return self.runs[name]


@pytest.fixture(scope="module", params=list(SERVERS))
def uploaded(request: pytest.FixtureRequest, local_runs: dict[str, Path]) -> Uploaded:
    server = request.getfixturevalue(SERVERS[request.param])
    bucket = server.fresh_bucket("runs")
    for name, path in local_runs.items():
        server.upload_dir(path, f"{server.scheme}://{bucket}/{name}")
    return Uploaded(server, bucket, local_runs)


def flags(server: Any, **override: str) -> list[str]:
    """``--storage-option KEY=VALUE`` for each of the server's options (``override`` replaces some)."""
    out: list[str] = []
    for key, value in {**server.storage_options, **override}.items():
        out += ["--storage-option", f"{key}={value}"]
    return out


def pass_options(server: Any, via: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CLI arguments that configure ``server``: flags, or nothing with the options in the environment."""
    if via == "flags":
        return flags(server)
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    return []


def run_cli(cmd: tuple[str, ...] | list[str], path: str | Path, *extra: str) -> Any:
    """``runlog CMD PATH EXTRA...`` in this process (``metrics X`` is a two-word command)."""
    words = 2 if cmd[0] == "metrics" else 1
    Store._cache.clear()
    return Cli()(*cmd[:words], path, *cmd[words:], *extra)


_LOCAL: dict[tuple, tuple[int, str, str]] = {}


def local_result(cmd: tuple[str, ...], path: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command on a local run, computed once per session."""
    key = (cmd, str(path))
    if key not in _LOCAL:
        r = run_cli(cmd, path)
        _LOCAL[key] = (r.exit_code, r.stdout, r.stderr)
    return _LOCAL[key]


def assert_same_csv(remote: str, local: str) -> None:
    """Byte-identical, except that a float may differ in its last bits: polars' parallel aggregations add in
    an order that depends on how the rows arrived, and the object-store reader delivers them in chunks of
    its own (seen on flink_mixed: a std 0.3999779628921804 vs ...805). Everything else must be identical."""
    if remote == local:
        return
    r_rows, l_rows = list(csv.reader(io.StringIO(remote))), list(csv.reader(io.StringIO(local)))
    assert len(r_rows) == len(l_rows) and r_rows[:1] == l_rows[:1], f"remote:\n{remote}\nlocal:\n{local}"
    for i, (r_row, l_row) in enumerate(zip(r_rows, l_rows, strict=True)):
        assert len(r_row) == len(l_row), f"row {i}: {r_row} != {l_row}"
        for col, a, b in zip(r_rows[0], r_row, l_row, strict=True):
            if a == b:
                continue
            try:
                fa, fb = float(a), float(b)
            except ValueError:
                raise AssertionError(f"row {i}, {col}: {a!r} != {b!r}") from None
            assert math.isclose(fa, fb, rel_tol=1e-12, abs_tol=1e-15), f"row {i}, {col}: {a} != {b}"


def inspect_json(stdout: str, run: str) -> dict[str, Any]:
    """``inspect --format json`` output without the run's location, after checking that it is ``run``."""
    report = json.loads(stdout)
    assert report.pop("run") == run
    return report


def one_line(stderr: str) -> str:
    """The single ``Error: ...`` line a failing command writes (and nothing else)."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def bucket_keys(server: Any, bucket: str) -> list[str]:
    import obstore

    store = server.obstore_store(f"{server.scheme}://{bucket}")
    return sorted(m["path"] for chunk in obstore.list(store) for m in chunk)


def upload_copy(server: Any, local: Path) -> str:
    """``local`` uploaded to a fresh bucket; returns the run's URL."""
    url = f"{server.scheme}://{server.fresh_bucket()}/run"
    server.upload_dir(local, url)
    return url


def corrupt_data_page(path: Path) -> None:
    """Damage the data pages of a Parquet file and leave its footer intact (so discovery cannot tell)."""
    data = bytearray(path.read_bytes())
    for i in range(200, 1200):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


# -- 1. every command: the same result remote as local ------------------------------------------------------

COMMANDS: list[tuple[str, ...]] = [
    ("inspect", "--format", "json"),
    ("summarize", "--by", "role", "--by", "step", "--format", "csv"),
    ("summarize", "--scalars", "--format", "csv"),
    ("render-trajectory", "--format", "json"),  # + the run's RENDER_STEP
    ("metrics", "format", "--format", "csv"),
]


# Options as flags for every run; through the environment for one run of each kind of data (Parquet through
# polars' reader, JSONL and JSON through runlog's own reads).
CASES = [(name, "flags") for name in RUN_NAMES] + [("damaged", "env"), ("verifiers", "env")]


@pytest.mark.parametrize(("name", "via"), CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_commands_match_local(uploaded: Uploaded, name: str, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    local = uploaded.local(name)
    url = uploaded.url(name)
    extra = pass_options(uploaded.server, via, monkeypatch)
    for base in COMMANDS:
        cmd = (*base, *RENDER_STEP[name]) if base[0] == "render-trajectory" else base
        code, out, err = local_result(cmd, local)
        r = run_cli(cmd, url, *extra)
        what = f"{' '.join(cmd)} on {url}"
        assert r.exit_code == code, f"{what}: exit {r.exit_code} (local {code})\n{r.stderr}"
        # Problems name run-relative paths; an error about the run itself names its location.
        assert r.stderr.replace(url, str(local)) == err, what
        if base[0] == "inspect":
            assert inspect_json(r.stdout, url) == inspect_json(out, str(local)), what
        elif "csv" in cmd:
            assert_same_csv(r.stdout, out)
        else:
            assert r.stdout == out, what
    if name == "damaged":  # the run broken on purpose: problems found both ways
        assert local_result(COMMANDS[0], local)[0] == 1


# -- 2. the library -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RUN_NAMES)
def test_open_run_matches_local(uploaded: Uploaded, name: str) -> None:
    local = open_run(uploaded.local(name))
    remote = open_run(uploaded.url(name), storage_options=uploaded.server.storage_options)
    assert str(remote.root) == uploaded.url(name)
    assert [f.path for f in remote.files] == [f.path for f in local.files]
    assert [(f.layout, f.kind, f.rows, f.readable) for f in remote.files] == [
        (f.layout, f.kind, f.rows, f.readable) for f in local.files
    ]
    assert remote.name == local.name
    assert [p.as_dict() for p in remote.problems] == [p.as_dict() for p in local.problems]
    assert_frame_equal(summarize(remote, ["role"]), summarize(local, ["role"]), rel_tol=1e-12, abs_tol=1e-12)
    assert_frame_equal(remote.scalars.collect(), local.scalars.collect())


def test_store_is_shared_per_bucket_and_options(s3: Any) -> None:
    bucket = s3.fresh_bucket()
    opts = s3.storage_options
    a = runlog.storage.location(f"s3://{bucket}/a", opts)
    b = runlog.storage.location(f"s3://{bucket}/b/c", dict(opts))
    other = runlog.storage.location(f"s3://{bucket}/a", {**opts, "aws_region": "eu-west-1"})
    same = runlog.storage.location(f"s3://{bucket}/d", runlog.storage.StorageOptions.of(opts))
    assert a.store is b.store is same.store and a.store is not other.store
    assert len(Store._cache) == 2


# -- 3. inspect reads footers, never whole Parquet objects ---------------------------------------------------


class ReadLog:
    """Records the reads runlog's own store layer makes (polars' data reads do not pass through it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import obstore

        self.whole: list[str] = []  # keys read in full
        self.ranges: list[tuple[str, int, int]] = []  # (key, start, end)
        self.store_reads: list[str] = []  # Parquet keys asked of Store.read
        self.prefetch: list[tuple[list[str], list[str]]] = []  # (whole keys, footer keys) per call
        self.inflight = self.peak = 0
        orig_get, orig_get_async = obstore.get, obstore.get_async
        orig_range, orig_range_async = obstore.get_range, obstore.get_range_async
        orig_read, orig_prefetch = Store.read, Store.prefetch

        def get(store: Any, key: str, *args: Any, **kw: Any) -> Any:
            self.whole.append(key)
            return orig_get(store, key, *args, **kw)

        async def get_async(store: Any, key: str, *args: Any, **kw: Any) -> Any:
            self.whole.append(key)
            return await orig_get_async(store, key, *args, **kw)

        def get_range(store: Any, key: str, *, start: int, end: int) -> Any:
            self.ranges.append((key, start, end))
            return orig_range(store, key, start=start, end=end)

        async def get_range_async(store: Any, key: str, *, start: int, end: int) -> Any:
            self.ranges.append((key, start, end))
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            try:
                return await orig_range_async(store, key, start=start, end=end)
            finally:
                self.inflight -= 1

        def read(store: Store, key: str) -> bytes:
            if key.endswith(".parquet"):
                self.store_reads.append(key)
                raise AssertionError(f"whole Parquet object read: {key}")
            return orig_read(store, key)

        def prefetch(store: Store, whole: Any = (), footers: Any = ()) -> None:
            self.prefetch.append(([m.key for m in whole], [m.key for m in footers]))
            return orig_prefetch(store, whole, footers)

        monkeypatch.setattr(obstore, "get", get)
        monkeypatch.setattr(obstore, "get_async", get_async)
        monkeypatch.setattr(obstore, "get_range", get_range)
        monkeypatch.setattr(obstore, "get_range_async", get_range_async)
        monkeypatch.setattr(Store, "read", read)
        monkeypatch.setattr(Store, "prefetch", prefetch)


def test_inspect_reads_only_footers(uploaded: Uploaded, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "debate_grpo"
    local, url = uploaded.local(name), uploaded.url(name)
    sizes = {f"{name}/{p.relative_to(local).as_posix()}": p.stat().st_size for p in local.rglob("*.parquet")}
    assert len(sizes) == 68
    # A tail smaller than the footers: each footer then needs its second, exact request.
    monkeypatch.setattr(runlog.storage, "TAIL_BYTES", 2048)
    log = ReadLog(monkeypatch)
    r = run_cli(COMMANDS[0], url, *flags(uploaded.server))
    code, out, _ = local_result(COMMANDS[0], local)
    assert r.exit_code == code == 0, r.stderr
    assert inspect_json(r.stdout, url) == inspect_json(out, str(local))
    assert log.store_reads == []
    assert not [k for k in log.whole if k.endswith(".parquet")]
    parquet_ranges = [(k, s, e) for k, s, e in log.ranges if k.endswith(".parquet")]
    assert {k for k, _, _ in parquet_ranges} == set(sizes)
    for key, start, end in parquet_ranges:
        assert end == sizes[key] and start > 0, (key, start, end)  # the end of the object, never all of it
    assert max(sum(1 for k, _, _ in parquet_ranges if k == key) for key in sizes) == 2
    # ... and the footers came from the prefetch, in one batch with every Parquet file of the run.
    footer_batches = [f for _, f in log.prefetch if f]
    assert len(footer_batches) == 1 and sorted(footer_batches[0]) == sorted(sizes)


# -- 4. discovery reads concurrently; the concurrency does not change results -------------------------------


def test_prefetch_is_one_concurrent_batch(uploaded: Uploaded, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "flink_mixed"  # 21 Parquet files and a CSV one
    local, url = uploaded.local(name), uploaded.url(name)
    parquet = sorted(f"{name}/{p.relative_to(local).as_posix()}" for p in local.rglob("*.parquet"))
    other = sorted(f"{name}/{p.relative_to(local).as_posix()}" for p in local.rglob("*") if p.is_file())
    other = [k for k in other if not k.endswith(".parquet")]
    # The setting changes how discovery reads (footers, small files), not what polars reads later.
    cmds = [COMMANDS[0], COMMANDS[1]]  # (the run has no scalars: summarize --scalars is a usage error on it)
    monkeypatch.setenv("RUNLOG_CACHE", "off")  # every command reads the footers (no probes kept between them)

    results = {}
    for setting in ("1", None):
        if setting is None:
            monkeypatch.delenv("RUNLOG_REMOTE_CONCURRENCY", raising=False)
        else:
            monkeypatch.setenv("RUNLOG_REMOTE_CONCURRENCY", setting)
        with monkeypatch.context() as m:
            log = ReadLog(m)
            outs = []
            for cmd in cmds:
                r = run_cli(cmd, url, *flags(uploaded.server))
                assert r.exit_code == 0, r.stderr
                outs.append(r.stdout)
        results[setting] = outs
        # Per command: the small files in one batch, then the footers of every Parquet file in one batch.
        assert [(sorted(w), sorted(f)) for w, f in log.prefetch] == [(other, []), ([], parquet)] * len(cmds)
        if setting == "1":
            assert log.peak == 1
        else:
            assert log.peak == min(runlog.storage.DEFAULT_CONCURRENCY, len(parquet)), log.peak
    assert results["1"] == results[None]
    assert inspect_json(results[None][0], url) == inspect_json(local_result(cmds[0], local)[1], str(local))
    assert_same_csv(results[None][1], local_result(cmds[1], local)[1])


# -- 5. errors: one line naming the location, the documented exit code --------------------------------------


def test_missing_bucket_s3(s3: Any) -> None:
    url = f"s3://{s3.fresh_bucket()}-missing/run"
    r = run_cli(COMMANDS[0], url, *flags(s3))
    assert r.exit_code == 2
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {url}: ") and "NoSuchBucket" in line


def serve_404(body: bytes) -> Iterator[str]:
    """An HTTP endpoint on loopback answering every request 404 with ``body``; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "application/xml; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = answer

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def gcs_no_such_bucket() -> Iterator[str]:
    """GCS's XML API for a bucket that does not exist: 404 and the body below.

    fake-gcs-server answers a listing of a missing bucket with HTTP 500 (``no bucket named X``), which
    object_store retries and runlog rightly reports as a failure of the store (exit 1): that would test the
    emulator, not runlog."""
    yield from serve_404(
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchBucket</Code>"
        b"<Message>The specified bucket does not exist.</Message></Error>"
    )


@pytest.fixture
def no_metadata_service() -> Iterator[str]:
    """An instance metadata endpoint that has no credentials to give."""
    yield from serve_404(b"Not Found")


def test_missing_bucket_gcs(gcs_no_such_bucket: str) -> None:
    url = "gs://no-such-bucket/run"
    opts = ["--storage-option", f"google_base_url={gcs_no_such_bucket}", "--storage-option", "google_skip_signature=1"]
    r = run_cli(COMMANDS[0], url, *opts)
    assert r.exit_code == 2
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {url}: ") and "NoSuchBucket" in line


@pytest.mark.parametrize("cmd", [COMMANDS[0], COMMANDS[1]], ids=["inspect", "summarize"])
def test_missing_prefix(server: Any, cmd: tuple[str, ...]) -> None:
    bucket = server.fresh_bucket()
    server.put_bytes(f"{server.scheme}://{bucket}/other/run.json", b"{}")
    url = f"{server.scheme}://{bucket}/nothing/here"
    r = run_cli(cmd, url, *flags(server))
    assert r.exit_code == 2
    assert one_line(r.stderr).startswith(f"Error: {url}: ")


def test_endpoint_not_listening(s3: Any) -> None:
    """Once, on S3: the GCS client fails the same way, and each try costs seconds of retries."""
    url = "s3://some-bucket/run"
    t0 = time.monotonic()
    r = run_cli(COMMANDS[0], url, *flags(s3, aws_endpoint_url="http://127.0.0.1:1"))
    elapsed = time.monotonic() - t0
    assert r.exit_code == 1
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {url}: ") and "cannot reach" in line
    assert elapsed < 60, f"{elapsed:.1f}s to give up on a closed port"  # retries with jittered back-off: 2-20 s


def test_no_credentials_s3(s3: Any, no_metadata_service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.put_bytes(f"{url}/run.json", b"{}")
    opts = {k: v for k, v in s3.storage_options.items() if k not in ("aws_access_key_id", "aws_secret_access_key")}
    # No credentials anywhere: not in files, and no instance metadata service (on a cloud machine there is one).
    opts["aws_metadata_endpoint"] = no_metadata_service
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    args = [a for k, v in opts.items() for a in ("--storage-option", f"{k}={v}")]
    r = run_cli(COMMANDS[0], url, *args)
    assert r.exit_code == 1, r.stderr
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {url}: ") and "credentials" in line


# Every command, with the arguments it needs besides the run: each must take --storage-option.
ALL_COMMANDS: list[tuple[str, ...]] = [
    ("inspect",),
    ("summarize",),
    ("metrics", "diversity"),
    ("metrics", "format"),
    ("render-trajectory",),
    ("plot", "-o", "x.png"),
    ("doctor",),
    ("report", "-o", "x.html"),
    ("upload-wandb", "--project", "p", "--dry-run"),
]


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=[" ".join(c[:2]) for c in ALL_COMMANDS])
def test_malformed_storage_option(s3: Any, cmd: tuple[str, ...], tmp_path: Path, monkeypatch) -> None:
    if cmd[0] in ("plot", "report"):
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    r = run_cli(cmd, "s3://bucket/run", "--storage-option", "foo", *flags(s3))
    assert r.exit_code == 2
    line = one_line(r.stderr)
    assert "--storage-option 'foo'" in line and "KEY=VALUE" in line


def test_unknown_storage_option_key(server: Any) -> None:
    prefix = "aws" if server.scheme == "s3" else "google"
    bucket = server.fresh_bucket()
    url = f"{server.scheme}://{bucket}/run"
    r = run_cli(COMMANDS[0], url, *flags(server), "--storage-option", f"{prefix}_bogus=1")
    assert r.exit_code == 2
    line = one_line(r.stderr)
    # The store is configured per bucket: the line names the bucket, and the offending key.
    assert line.startswith(f"Error: {server.scheme}://{bucket}") and f"{prefix}_bogus" in line


@pytest.fixture
def small_run(tmp_path: Path) -> Path:
    """A small good native run (4 steps): tests damage one of its files, locally, then upload it."""
    return make_native_run(tmp_path / "run", steps=range(4), n=8)


def compare(url: str, local: Path, server: Any, cmds: list[tuple[str, ...]]) -> list[Any]:
    """Run each command remote and local; assert the same exit code, stdout and stderr; return the remote."""
    out = []
    for cmd in cmds:
        r, lr = run_cli(cmd, url, *flags(server)), run_cli(cmd, local)
        assert (r.exit_code, r.stderr.replace(url, str(local))) == (lr.exit_code, lr.stderr), cmd
        if cmd[0] == "inspect":
            assert inspect_json(r.stdout, url) == inspect_json(lr.stdout, str(local))
        else:
            assert_same_csv(r.stdout, lr.stdout)
        out.append(r)
    return out


def test_corrupt_parquet_object_is_a_problem(server: Any, small_run: Path) -> None:
    bad = "samples/train/step_00000002.p0.parquet"
    (small_run / bad).write_bytes(b"PAR1 this is not a Parquet file at all")
    url = upload_copy(server, small_run)
    cmds = [("inspect", "--format", "json"), ("summarize", "--by", "step", "--format", "csv")]
    insp, summ = compare(url, small_run, server, cmds)
    assert insp.exit_code == summ.exit_code == 1
    report = json.loads(insp.stdout)
    assert [(p["kind"], p["path"]) for p in report["problems"]] == [("unreadable", bad)]
    assert f"error: {bad}: unreadable Parquet" in summ.stderr
    steps = [row["step"] for row in csv.DictReader(io.StringIO(summ.stdout))]
    assert steps == ["0", "1", "3"]  # the rest of the run was analysed


def test_corrupt_data_page_inspect_deep(server: Any, small_run: Path) -> None:
    """The footer is intact, so discovery cannot tell; reading the data (--deep) finds it, remote as local."""
    corrupt_data_page(small_run / "samples/train/step_00000002.p0.parquet")
    url = upload_copy(server, small_run)
    (r,) = compare(url, small_run, server, [("inspect", "--deep", "--format", "json")])
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["errors"] == 1
    assert report["numeric"]["reward"]["rows"] == 24  # 3 of 4 steps read; the damaged file left out


def test_corrupt_data_page_inspect_deep_names_the_file(s3: Any, small_run: Path) -> None:
    bad = "samples/train/step_00000002.p0.parquet"
    corrupt_data_page(small_run / bad)
    r = run_cli(("inspect", "--deep", "--format", "json"), upload_copy(s3, small_run), *flags(s3))
    report = json.loads(r.stdout)
    assert [p["path"] for p in report["problems"]] == [bad]
    assert not next(f for f in report["files"] if f["path"] == bad)["readable"]


@pytest.mark.parametrize("cmd", [("summarize", "--format", "csv"), ("metrics", "format", "--format", "csv")])
def test_corrupt_data_page_summarize(s3: Any, small_run: Path, cmd: tuple[str, ...]) -> None:
    bad = "samples/train/step_00000002.p0.parquet"
    corrupt_data_page(small_run / bad)
    r = run_cli(cmd, upload_copy(s3, small_run), *flags(s3))
    assert r.exit_code == 1, r.stderr
    assert f"error: {bad}: corrupt data" in r.stderr


def test_object_gone_after_discovery_names_it(s3: Any, small_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object deleted between listing and reading (a run being cleaned up): reported by name, the rest read."""
    url = upload_copy(s3, small_run)
    bucket, prefix = url.split("://")[1].split("/", 1)
    gone = f"{prefix}/samples/train/step_00000002.p0.parquet"
    real_open_run = runlog.run.open_run

    def open_then_delete(*args: Any, **kwargs: Any) -> Any:
        run = real_open_run(*args, **kwargs)
        s3._client.delete_object(Bucket=bucket, Key=gone)
        return run

    monkeypatch.setattr(runlog.run, "open_run", open_then_delete)
    r = run_cli(("summarize", "--by", "step", "--format", "csv"), url, *flags(s3))
    assert r.exit_code == 1, r.stderr
    assert "error: samples/train/step_00000002.p0.parquet: gone since the run was listed" in r.stderr
    steps = [row["step"] for row in csv.DictReader(io.StringIO(r.stdout))]
    assert steps == ["0", "1", "3"]  # the rest of the run was analysed


def test_a_store_gone_mid_command_is_one_error_at_once(
    s3: Any, small_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server going away after discovery: the query fails, and looking for the files that fail read each of
    them, each waiting out the client's retries (report on the sample run: still running at 150 s). Now one
    line for the run, exit 1, and at most one file is tried on its own. The query's client gives up at once
    (``max_retries`` 0: its retries, about ten seconds, are not what is checked): the files tried are counted."""
    url = upload_copy(s3, small_run)
    real_open_run = runlog.run.open_run
    tried: list[str] = []

    def open_then_lose_the_server(*args: Any, **kwargs: Any) -> Any:
        run = real_open_run(*args, **kwargs)
        store = run.root.store
        gone_options = {"aws_endpoint_url": "http://127.0.0.1:1", "max_retries": 0}
        monkeypatch.setattr(type(store), "polars_options", property(lambda self: {**self.options, **gone_options}))

        def gone(self: Any, key: str) -> bytes:
            tried.append(key)
            raise runlog.storage.UnreachableError(runlog.storage.UNREACHABLE)

        monkeypatch.setattr(type(store), "read", gone)
        return run

    monkeypatch.setattr(runlog.run, "open_run", open_then_lose_the_server)
    r = run_cli(("summarize", "--by", "step", "--format", "csv"), url, *flags(s3), "--no-cache")
    assert r.exit_code == 1, r.stderr
    assert one_line(r.stderr) == f"Error: {url}: reading the run failed: {runlog.storage.UNREACHABLE}"
    assert len(tried) <= 1, tried  # the first file's failure says it: no other is tried


def test_truncated_jsonl_line_in_scalars(server: Any, small_run: Path) -> None:
    path = small_run / "scalars.p0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # a torn line in the middle: an error, not a warning
    path.write_text("".join(lines))
    url = upload_copy(server, small_run)
    cmds = [("inspect", "--format", "json"), ("summarize", "--scalars", "--format", "csv")]
    insp, scal = compare(url, small_run, server, cmds)
    assert insp.exit_code == scal.exit_code == 1
    problems = json.loads(insp.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("bad_line", "scalars.p0.jsonl")]
    assert "line 2" in problems[0]["message"]
    rows = {row["key"]: row for row in csv.DictReader(io.StringIO(scal.stdout))}
    assert rows["train/loss"]["count"] == "3"  # the other lines were read


# -- 6. a single remote file --------------------------------------------------------------------------------

SINGLE_FILES = [
    ("flink_mixed", "flink_logs/batch_debug_data_train_7.parquet"),
    ("jaxarc", "batch_metrics.jsonl"),
    ("verifiers", "verifiers_math_python_gpt5nano_results.jsonl"),
]


@pytest.mark.parametrize(("name", "rel"), SINGLE_FILES, ids=[n for n, _ in SINGLE_FILES])
def test_single_file_url(uploaded: Uploaded, name: str, rel: str) -> None:
    local = uploaded.local(name) / rel
    url = f"{uploaded.url(name)}/{rel}"
    folder = uploaded.url(name)  # the run of a single file is its run folder (flink_logs/ is the Flink run's own)
    cmds = [COMMANDS[0], COMMANDS[1], ("summarize", "--scalars", "--format", "csv")]
    for cmd in cmds:
        r, (code, out, err) = run_cli(cmd, url, *flags(uploaded.server)), local_result(cmd, local)
        assert r.exit_code == code and r.stderr.replace(url, str(local)) == err, (cmd, r.stderr)
        if cmd[0] == "inspect":
            report = inspect_json(r.stdout, folder)
            assert report == inspect_json(out, str(uploaded.local(name)))  # as locally
            assert [f["path"] for f in report["files"]] == [rel]
        else:
            assert_same_csv(r.stdout, out)


# -- every other command on a remote run -------------------------------------------------------------------


def test_doctor_diversity_plot_report(uploaded: Uploaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if uploaded.server.scheme != "gs":
        pytest.skip("once is enough (on the faster server): past discovery these commands read as summarize does")
    name = "flink_mixed"
    local, url = uploaded.local(name), uploaded.url(name)
    opts = flags(uploaded.server)
    doctor = ("doctor", "--format", "json")
    r, (code, out, _) = run_cli(doctor, url, *opts), local_result(doctor, local)
    assert r.exit_code == code and json.loads(r.stdout) == json.loads(out)
    # Diversity is compared with a tolerance: it differs in the last bits even between two local runs.
    diversity = ("metrics", "diversity", "--by", "step", "--format", "csv")
    r, (code, out, _) = run_cli(diversity, url, *opts), local_result(diversity, local)
    assert r.exit_code == code == 0
    assert_same_csv(r.stdout, out)
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    r = run_cli(("plot", "--what", "reward", "-o", "reward.svg"), url, *opts)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "reward.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    r = run_cli(("report", "-o", "report.html"), url, *opts)
    assert r.exit_code == 0, r.stderr
    html = (tmp_path / "report.html").read_text()
    assert "batch_debug_data" in html or name in html


# -- 7. upload-wandb: the state file of a remote run is local -------------------------------------------------


def test_upload_wandb_dry_run_state_in_cwd(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = make_flink_run(tmp_path / "src", steps=range(3))
    url = upload_copy(server, local)
    bucket = url.split("://")[1].split("/")[0]
    before = bucket_keys(server, bucket)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cmd = ("upload-wandb", "--project", "p", "--dry-run", "--format", "json")
    r, again = run_cli(cmd, url, *flags(server)), run_cli(cmd, url, *flags(server))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == again.stdout  # the W&B run id derived from the URL is stable
    result, expected = json.loads(r.stdout), json.loads(run_cli(cmd, local).stdout)
    # Named after the URL, in the current directory (a dry run does not write it).
    assert result.pop("state_path") == f".runlog-wandb-{bucket}_run-{hashlib.sha256(url.encode()).hexdigest()[:8]}.json"
    assert expected.pop("state_path") == str(local / ".runlog-wandb.json")
    # A run without a manifest gets an id derived from where it is; what would be logged is the same.
    assert result.pop("run_id").startswith("runlog-") and expected.pop("run_id").startswith("runlog-")
    assert result == expected
    assert bucket_keys(server, bucket) == before
    assert os.listdir(work) == []  # a dry run writes nothing


def test_upload_wandb_offline_state_in_cwd(s3: Any, tmp_path: Path) -> None:
    """A real offline upload (a runlog process, options from the environment), twice: the state is written in
    the current directory, the bucket is left alone, and the second upload finds nothing new."""
    pytest.importorskip("wandb")
    url = upload_copy(s3, make_native_run(tmp_path / "src", steps=range(3), n=4))
    bucket = url.split("://")[1].split("/")[0]
    before = bucket_keys(s3, bucket)
    home, work = tmp_path / "wandb", tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "AWS_", "GOOGLE_"))}
    env.update(
        s3.env,
        WANDB_MODE="offline",
        WANDB_DIR=str(home / "wb"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONSOLE="off",
        PYTHONPATH=os.pathsep.join([str(Path(runlog.storage.__file__).parents[1]), env.get("PYTHONPATH", "")]),
    )
    cmd = [sys.executable, "-m", "runlog", "upload-wandb", url, "--project", "p", "--mode", "offline",
           "--wandb-dir", str(home / "wb"), "--format", "json"]  # fmt: skip
    results = []
    for _ in range(2):
        res = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        results.append(json.loads(res.stdout))
    first, second = results
    assert first["steps"] == 3 and not first["up_to_date"]
    assert second["up_to_date"] and second["after"] == 2
    state = work / first["state_path"]
    assert first["state_path"] == second["state_path"] and state.is_file()
    assert [p.name for p in work.iterdir()] == [state.name]
    assert bucket_keys(s3, bucket) == before
    entry = next(iter(json.loads(state.read_text())["destinations"].values()))
    assert entry["complete"] and entry["last_step"] == 2
