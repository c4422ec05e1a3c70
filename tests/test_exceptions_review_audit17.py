"""A native or Flink Parquet file whose exception column has no statistics: the probe does not read its text (inspect
reads none), so the scan reads its ``None`` / ``null`` texts as no failure itself (a review: summarize's
exception_rate 0.4 [0.2], render-trajectory --exceptions listed str(None) as failures)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog.cli.app import app
from runlog.writer import RunWriter


def _rewrite(path, values, **kw):
    t = pq.read_table(path)
    i = t.schema.get_field_index("exception")
    arr = pa.array(values, pa.string())
    t = t.set_column(i, pa.field("exception", pa.string()), arr).replace_schema_metadata(
        pq.read_metadata(path).metadata
    )
    pq.write_table(t, path, **kw)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_null_texts_of_a_file_without_statistics_are_no_failure(tmp_path, cache):
    root = tmp_path / "r"
    with RunWriter(root, name="r", roles=["solver"], durable=False) as w:
        for s in range(2):
            w.log_samples(s, {"reward": [1.0] * 5, "exception": ["x"] * 5})
    _rewrite(
        root / "samples/train/step_00000000.p0.parquet", ["None", "null", "boom", None, ""], write_statistics=False
    )
    _rewrite(root / "samples/train/step_00000001.p0.parquet", [None] * 5)
    env = {"RUNLOG_CACHE_DIR": str(tmp_path / "c"), "RUNLOG_CACHE": cache}
    r = CliRunner().invoke(app, ["summarize", str(root), "--format", "json"], env=env)
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["sample:exception_rate"] == 2 / 10  # 'boom' and '' (a message-less exception) of 10 rows
    t = CliRunner().invoke(app, ["render-trajectory", str(root), "--exceptions", "--format", "json"], env=env)
    assert sorted(x["exception"] for x in json.loads(t.stdout)) == ["", "boom"]
    i = CliRunner().invoke(app, ["inspect", str(root), "--format", "json"], env=env)
    assert json.loads(i.stdout)["exceptions"] is None  # not known from the footer, and the text is not read
