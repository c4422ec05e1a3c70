"""A Flink ``reward_metrics`` column stored as an Arrow ``map<string, double>`` (docs/format.md: "struct, map or
JSON text"): polars 2 reads it as its own map type, which neither the summary nor the samples' view read, so every
component value was lost unsaid (a map-only run had no component at all). Truth counted with pyarrow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runlog import open_run

METRICS = [[("correct", 1.0), ("format", float("nan"))], [("correct", 0.5)], None, [("format", 2.0), ("correct", None)]]


def _run(root: Path) -> Path:
    (root / "flink_logs").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "unique_sample_id": [f"0-{i}" for i in range(4)],
                "reward": [1.0] * 4,
                "reward_metrics": pa.array(METRICS, type=pa.map_(pa.string(), pa.float64())),
            }
        ),
        root / "flink_logs" / "batch_debug_data_train_0.parquet",
    )
    return root


def _truth(name: str) -> dict:
    vals = [dict(r).get(name) if r is not None else None for r in METRICS]
    ok = [v for v in vals if v is not None and not math.isnan(v)]
    nan = sum(1 for v in vals if v is not None and math.isnan(v))
    return {"mean": sum(ok) / len(ok), "count": len(ok), "nan": nan, "null": sum(v is None for v in vals)}


def test_a_map_of_reward_metrics_is_read_by_the_summary(tmp_path: Path, cli) -> None:
    root = _run(tmp_path / "run")
    r = cli("summarize", root, "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    for name in ("correct", "format"):
        got = {k: row[f"sample:component/{name}_{k}"] for k in ("mean", "count", "nan", "null")}
        assert got == _truth(name), name


def test_a_map_of_reward_metrics_is_read_by_the_samples_view(tmp_path: Path) -> None:
    run = open_run(_run(tmp_path / "run"))
    comps = run.samples.select("reward_components").collect()["reward_components"].to_list()
    assert {c["name"]: c["value"] for c in comps[0]}.get("correct") == 1.0
    assert comps[2] in (None, [])
    assert {c["name"]: c["value"] for c in comps[3]}.get("format") == 2.0
