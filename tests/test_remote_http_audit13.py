"""Audit 13 (remote): a plain-http endpoint (an emulator, a local gateway) worked from the environment alone, then
failed with "HTTP error: builder error" (exit 1) once any client option was given on the command line
(``--storage-option timeout=20s``): obstore's HTTP client refuses http unless ``allow_http`` is among the client
options it is given. An ``http://`` endpoint the user chose is now allowed. The figures are pyarrow's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import runlog
from object_stores import gcs_server, s3_server  # noqa: F401
from runlog.storage import Store
from runlog.storage_config import obstore_options


def _run(root: Path) -> Path:
    with runlog.RunWriter(root, name="r", roles=["solver"], durable=False) as w:
        for step in range(3):
            w.log_samples(step, [{"reward": 0.5 * i, "roles": {"solver": {"reward": 0.5 * i}}} for i in range(4)])
    return root


def test_a_client_option_keeps_a_plain_http_gcs_endpoint_working(gcs_server: Any, tmp_path: Path) -> None:  # noqa: F811
    Store._cache.clear()
    local = _run(tmp_path / "run")
    url = f"gs://{gcs_server.fresh_bucket()}/runs/r"
    gcs_server.upload_dir(local, url)
    values = [
        v for f in sorted(local.rglob("*.parquet")) for v in pq.read_table(f, columns=["reward"])["reward"].to_pylist()
    ]
    env = {**os.environ, **gcs_server.env, "RUNLOG_CACHE": "off"}
    res = subprocess.run(
        [sys.executable, "-m", "runlog", "summarize", url, "--storage-option", "timeout=20s", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "builder error" not in res.stderr
    [row] = [r for r in json.loads(res.stdout) if r["role"] == "solver"]  # its reward is the sample's here
    assert row["reward_count"] == len(values)
    assert abs(row["reward_mean"] - sum(values) / len(values)) < 1e-12


def test_allow_http_is_set_only_for_a_plain_http_endpoint_and_never_over_the_users() -> None:
    http = {"GOOGLE_BASE_URL": "http://127.0.0.1:1"}
    assert obstore_options("gs", {"timeout": "20s"}, http)[1] == {"timeout": "20s", "allow_http": True}
    assert obstore_options("gs", {"timeout": "20s", "allow_http": "false"}, http)[1]["allow_http"] is False
    assert "allow_http" not in obstore_options("s3", {"timeout": "20s"}, {"AWS_ENDPOINT_URL": "https://x"})[1]
    assert obstore_options("s3", {"timeout": "20s", "endpoint_url": "http://h:9000"}, {})[1]["allow_http"] is True
    assert obstore_options("s3", {}, {"AWS_ENDPOINT_URL": "http://x"})[1] == {}  # none given: obstore reads the env
