"""Object stores, audit 9: a URL read literally where it names something, a store that stops answering, client
options obstore takes, an object whose content always arrives cut short, the environment's client options
beside the command line's, and S3 "folder" marker objects.

The stores are moto on loopback (``tests/object_stores.py``); faults come from small servers in threads here:
one that accepts connections and never answers, and a proxy in front of moto that cuts one object's bodies
short. Expected figures are computed with pyarrow on the local copy of each run.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import math
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import runlog.run
import runlog.storage
import runlog.storage_config
from object_stores import s3_server  # noqa: F401
from runlog.storage import Store

from conftest import Cli, make_native_run

OPTION_ENV = ["AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
OPTION_ENV += ["AWS_TIMEOUT", "RUNLOG_REMOTE_CONCURRENCY"]


@pytest.fixture(autouse=True)
def _fresh_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OPTION_ENV:
        monkeypatch.delenv(name, raising=False)
    Store._cache.clear()
    yield
    Store._cache.clear()


@pytest.fixture
def s3(s3_server: Any) -> Any:  # noqa: F811
    return s3_server


def flags(server: Any, **override: str) -> list[str]:
    out: list[str] = []
    for key, value in {**server.storage_options, **override}.items():
        out += ["--storage-option", f"{key}={value}"]
    return out


def run_cli(*args: Any) -> Any:
    Store._cache.clear()
    return Cli()(*args)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr and "panicked" not in stderr
    return lines[0]


def role_truth(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[float, int]]:
    """(mean reward, count) per role over the run's sample files, with pyarrow."""
    values: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("*.parquet")):
        if path.name in skip:
            continue
        for roles in pq.read_table(path, columns=["roles"]).column("roles").to_pylist():
            for r in roles or []:
                values.setdefault(r["role"], []).append(r["reward"])
    return {role: (math.fsum(v) / len(v), len(v)) for role, v in values.items()}


def role_figures(stdout: str) -> dict[str, tuple[float, int]]:
    return {row["role"]: (row["reward_mean"], row["reward_count"]) for row in json.loads(stdout)}


def assert_figures(got: dict[str, tuple[float, int]], want: dict[str, tuple[float, int]]) -> None:
    assert got.keys() == want.keys()
    for role, (mean, count) in want.items():
        assert got[role][1] == count, role
        assert math.isclose(got[role][0], mean, rel_tol=1e-12), (role, got[role], mean)


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """An endpoint that accepts connections and never answers; closing everything at the end lets a client
    that still waits go on (the old code waited for ever)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        for c in [*conns, sock]:
            with contextlib.suppress(OSError):
                c.close()


def within(seconds: float, fn: Any) -> Any:
    """``fn()`` in a thread; fails the test (rather than hang it) when it has not returned in ``seconds``."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s: a store that never answers is waited on for ever"
    return out[0]


@contextlib.contextmanager
def cutting_proxy(upstream: str, cut: str) -> Iterator[str]:
    """A proxy in front of ``upstream`` that sends half of every GET body whose path contains ``cut`` (with the
    full Content-Length) and closes the connection: an object whose content always arrives cut short."""
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.forward()

        def do_HEAD(self) -> None:  # noqa: N802
            self.forward()

        def forward(self) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut in self.path and len(data) > 16:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_WR)
                return
            self.wfile.write(data)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- 1. a URL that names a folder literally is that run ------------------------------------------------------


def test_a_url_naming_a_folder_with_brackets_is_that_run(s3: Any, tmp_path: Path) -> None:
    """``s3://b/exp[1]`` beside ``exp1``: summarised as ``exp[1]``, as inspect reads it and as on disk (it
    summarised ``exp1``, a glob's match, without a word)."""
    bucket = s3.fresh_bucket()
    runs = {
        "exp[1]": make_native_run(tmp_path / "exp[1]", steps=range(4)),
        "exp1": make_native_run(tmp_path / "exp1", steps=[7]),
    }
    for name, local in runs.items():
        s3.upload_dir(local, f"s3://{bucket}/{name}")
    url = f"s3://{bucket}/exp[1]"
    want = role_truth(runs["exp[1]"])
    assert want != role_truth(runs["exp1"])
    r = run_cli("summarize", url, "--by", "role", "--format", "json", *flags(s3))
    assert r.exit_code == 0, r.stderr
    assert_figures(role_figures(r.stdout), want)
    assert "pooled" not in r.stderr  # one run, not a glob's fleet of one
    insp = run_cli("inspect", url, "--format", "json", *flags(s3))
    assert json.loads(insp.stdout)["run"] == url
    # A pattern that names nothing literally is still a glob.
    g = run_cli("summarize", f"s3://{bucket}/exp*", "--by", "run", "--by", "role", "--format", "json", *flags(s3))
    assert g.exit_code == 0, g.stderr
    assert {row["run"] for row in json.loads(g.stdout)} == {"exp[1]", "exp1"}
    # A folder named like a pattern, before a wildcard: that folder's runs only (as ``grp[1]/*`` on disk).
    s3.upload_dir(runs["exp[1]"], f"s3://{bucket}/grp[1]/a")
    s3.upload_dir(runs["exp1"], f"s3://{bucket}/grp1/b")
    f = run_cli("summarize", f"s3://{bucket}/grp[1]/*", "--by", "role", "--format", "json", *flags(s3))
    assert f.exit_code == 0, f.stderr
    assert_figures(role_figures(f.stdout), want)


# -- 2. a store that stops answering -------------------------------------------------------------------------


def test_the_data_reader_is_given_a_request_timeout_by_default(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = Store.for_url("s3://b", s3.storage_options).polars_options
    assert opts["timeout"] == runlog.storage_config.DEFAULT_TIMEOUT
    assert opts["retry_timeout_ms"] == runlog.storage_config.DEFAULT_RETRY_TIMEOUT_MS
    assert Store.for_url("s3://b", {**s3.storage_options, "timeout": "5s"}).polars_options["timeout"] == "5s"
    monkeypatch.setenv("AWS_TIMEOUT", "7s")  # the environment's own: polars reads it, so no default over it
    Store._cache.clear()
    assert "timeout" not in Store.for_url("s3://b", s3.storage_options).polars_options


def test_a_store_that_stops_answering_mid_command_ends(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery passes; then every request gets no answer: the documented one line, not a wait for ever
    (the defaults shortened here, to keep the test short)."""
    monkeypatch.setattr(runlog.storage_config, "DEFAULT_TIMEOUT", "1s", raising=False)
    monkeypatch.setattr(runlog.storage_config, "DEFAULT_RETRY_TIMEOUT_MS", 500, raising=False)
    local = make_native_run(tmp_path / "run", steps=range(3))
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.upload_dir(local, url)
    real_open_run = runlog.run.open_run
    with silent_server() as silent:

        def open_then_hang(*args: Any, **kwargs: Any) -> Any:
            run = real_open_run(*args, **kwargs)
            run.root.store.options["aws_endpoint_url"] = silent  # polars' reads go there
            return run

        monkeypatch.setattr(runlog.run, "open_run", open_then_hang)
        t0 = time.monotonic()
        r = within(30, lambda: run_cli("summarize", url, "--by", "role", "--no-cache", *flags(s3)))
    assert r.exit_code == 1, r.stderr
    assert one_line(r.stderr) == f"Error: {url}: reading the run failed: {runlog.storage.UNREACHABLE}"
    assert time.monotonic() - t0 < 20


def test_discovery_gets_bounded_retries_by_default(s3: Any) -> None:
    """obstore's own request timeout is 30 s (``DEFAULT_TIMEOUT``); its retries went on for 3 minutes."""
    store = Store.for_url("s3://b", s3.storage_options).store
    want = timedelta(milliseconds=runlog.storage_config.DEFAULT_RETRY_TIMEOUT_MS)
    assert store.retry_config["retry_timeout"] == want < timedelta(minutes=1)
    assert Store.for_url("s3://b", {**s3.storage_options, "timeout": "5s"}).store.client_options["timeout"] == "5s"


def test_discovery_on_a_store_that_never_answers_ends(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries stop at the bound (shortened here; requests given up after 1 s): the documented line at once
    (retries went on to obstore's 10 tries, 180 s at most: here 10 s and more)."""
    monkeypatch.setattr(runlog.storage_config, "DEFAULT_RETRY_TIMEOUT_MS", 1500, raising=False)
    url = "s3://some-bucket/run"
    with silent_server() as silent:
        t0 = time.monotonic()
        r = within(30, lambda: run_cli("inspect", url, *flags(s3, aws_endpoint_url=silent, timeout="1s")))
        elapsed = time.monotonic() - t0
    assert r.exit_code == 1, r.stderr
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {url}: ") and "cannot reach" in line
    assert elapsed < 8, f"{elapsed:.1f} s"


# -- 3. every client option obstore takes; a panic is one line -----------------------------------------------

CLIENT_OPTIONS = [
    "http2_keep_alive_interval=5s",
    "http2_keep_alive_timeout=5s",
    "http2_keep_alive_while_idle=true",
    "http2_max_frame_size=16384",
    "randomize_addresses=true",
    "read_timeout=30s",
]


@pytest.mark.parametrize("option", CLIENT_OPTIONS, ids=[o.split("=")[0] for o in CLIENT_OPTIONS])
def test_client_options_are_taken(s3: Any, tmp_path: Path, option: str) -> None:
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.upload_dir(make_native_run(tmp_path / "run", steps=range(2)), url)
    r = run_cli("inspect", url, "--format", "json", *flags(s3), "--storage-option", option)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["run"] == url


def test_a_panic_configuring_the_store_is_one_line(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import obstore.store

    try:  # pyo3's PanicException is not importable: get it from a panic (a client key given as config)
        obstore.store.from_url("s3://b", config={"aws_http2_max_frame_size": "1"})
        pytest.skip("this obstore does not panic here")
    except BaseException as exc:  # noqa: BLE001
        if type(exc).__name__ != "PanicException":
            pytest.skip(f"this obstore raises {type(exc).__name__} here")
        panic = type(exc)

    def from_url(*args: Any, **kwargs: Any) -> Any:
        raise panic("Expected config prefix to start with aws_")

    monkeypatch.setattr(obstore.store, "from_url", from_url)
    r = run_cli("inspect", "s3://b/run", *flags(s3))
    assert r.exit_code == 2
    assert one_line(r.stderr).startswith("Error: s3://b: cannot configure the object store: Expected config")


# -- 4. an object whose content always arrives cut short -----------------------------------------------------


def test_an_object_always_cut_short_is_skipped_and_named(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other files are still summarised (the run was lost whole), and the object is named with what
    happened to it (it was "cannot reach the object store", naming nothing). polars gives up at once here."""
    bad = "step_00000002.p0.parquet"
    local = make_native_run(tmp_path / "run", steps=range(4))
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.upload_dir(local, url)
    real = Store.polars_options
    monkeypatch.setattr(Store, "polars_options", property(lambda self: {**real.fget(self), "max_retries": 0}))  # type: ignore[attr-defined]
    with cutting_proxy(s3.endpoint, f"/samples/train/{bad}") as proxy:
        r = within(
            60,
            lambda: run_cli("summarize", url, "--by", "role", "--format", "json", *flags(s3, aws_endpoint_url=proxy)),
        )
    assert r.exit_code == 1, r.stderr
    assert f"error: samples/train/{bad}: " in r.stderr and "cut short" in r.stderr
    assert "cannot reach" not in r.stderr
    assert_figures(role_figures(r.stdout), role_truth(local, skip=(bad,)))


def test_a_body_error_is_not_an_unreachable_store() -> None:
    text = (
        "object-store error: Generic S3 error: HTTP error: request or response body error (path: s3://b/r/x)\n\n"
        "Caused by:\n    0: error reading a body from connection\n    1: end of file before message length reached"
    )
    reason = runlog.storage.remote_reason(OSError(text))
    assert reason != runlog.storage.UNREACHABLE and "cut short" in reason
    refused = "Generic S3 error: HTTP error: error sending request (path: s3://b/x)\n\nCaused by: connection refused"
    assert runlog.storage.remote_reason(OSError(refused)) == runlog.storage.UNREACHABLE


# -- 5a. the environment's client options and the command line's ---------------------------------------------


def test_a_client_option_keeps_the_environments(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``AWS_ALLOW_HTTP=true`` in the environment and ``timeout=30s`` on the command line: both apply (the
    environment's was dropped: "builder error")."""
    url = f"s3://{s3.fresh_bucket()}/run"
    local = make_native_run(tmp_path / "run", steps=range(2))
    s3.upload_dir(local, url)
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    r = run_cli("summarize", url, "--by", "role", "--format", "json", "--storage-option", "timeout=30s")
    assert r.exit_code == 0, r.stderr
    assert_figures(role_figures(r.stdout), role_truth(local))


# -- 6. S3 "folder" marker objects ---------------------------------------------------------------------------


def test_a_folder_marker_object_is_no_file(s3: Any, tmp_path: Path) -> None:
    """A zero-byte ``samples/eval/`` (the S3 console's "Create folder") is an empty folder, as on disk:
    ``inspect --strict`` agrees with the local run."""
    local = make_native_run(tmp_path / "run", steps=range(2))
    (local / "samples" / "eval").mkdir()
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.upload_dir(local, url)
    s3.put_bytes(f"{url}/samples/eval/", b"")
    s3.put_bytes(f"{url}/samples/", b"")  # a marker with objects below it
    lr = run_cli("inspect", str(local), "--strict", "--format", "json")
    r = run_cli("inspect", url, "--strict", "--format", "json", *flags(s3))
    assert (r.exit_code, lr.exit_code) == (0, 0), r.stderr
    assert [f["path"] for f in json.loads(r.stdout)["files"]] == [f["path"] for f in json.loads(lr.stdout)["files"]]


# -- 7. messages ---------------------------------------------------------------------------------------------


def test_a_glob_on_a_missing_bucket_names_the_pattern(s3: Any) -> None:
    pattern = "s3://no-such-bucket-a9/*"
    r = run_cli("summarize", pattern, "--by", "run", *flags(s3))
    assert r.exit_code == 2
    line = one_line(r.stderr)
    assert line.startswith(f"Error: {pattern}: ") and "NoSuchBucket" in line


def test_a_skipped_remote_run_is_named_once(s3: Any, tmp_path: Path) -> None:
    base = f"s3://{s3.fresh_bucket()}/fleet"
    s3.upload_dir(make_native_run(tmp_path / "a", steps=range(2)), f"{base}/a")
    r = run_cli("summarize", f"{base}/a", f"{base}/gone", "--by", "run", "--format", "json", *flags(s3))
    assert r.exit_code == 1, r.stderr
    line = next(line for line in r.stderr.splitlines() if "run skipped" in line)
    assert line.count(f"{base}/gone") == 1, line
    assert line.startswith("error: gone: run skipped: ")


# -- 7a. an object the store will not give ---------------------------------------------------------------------


def test_an_object_the_store_refuses_is_not_called_corrupt(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 403 on one object's footer read was said "unreadable Parquet (truncated or corrupt?): AccessDenied"; the
    store's refusal is said as such, and the other files are summarised."""
    import runlog.formats.common as common

    bad = "step_00000002.p0.parquet"
    local = make_native_run(tmp_path / "run", steps=range(4))
    url = f"s3://{s3.fresh_bucket()}/run"
    s3.upload_dir(local, url)
    real = common._open_footer

    def refusing(cand: Any) -> Any:
        if cand.rel.endswith(bad):
            raise PermissionError("Generic S3 error: <Code>AccessDenied</Code><Message>Access Denied</Message>")
        return real(cand)

    monkeypatch.setattr(common, "_open_footer", refusing)
    r = run_cli("summarize", url, "--by", "role", "--format", "json", "--no-cache", *flags(s3))
    assert f"error: samples/train/{bad}: cannot be read from the store: AccessDenied: Access Denied" in r.stderr
    assert "truncated or corrupt" not in r.stderr
    assert_figures(role_figures(r.stdout), role_truth(local, skip=(bad,)))
