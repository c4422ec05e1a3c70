"""A reward component named twice in one sample's ``reward_components`` ([{dup: 1.0}, {dup: 0.0}]): summarize read
the first entry (mean 1.0 over 1 sample), ``inspect --deep`` counted both entries as values, and the W&B upload
logged their mean (0.5): three figures. Every command now reads the sample's first entry."""

from __future__ import annotations

import json
from pathlib import Path

from runlog import open_run
from runlog.sinks.plan import _component_means

from conftest import native_rows, native_run_of


def _run(tmp_path: Path) -> Path:
    rows = native_rows(0, 2)
    rows[0]["reward_components"] = [{"name": "dup", "value": 1.0}, {"name": "dup", "value": 0.0}]
    rows[1]["reward_components"] = [{"name": "other", "value": 1.0}]
    return native_run_of(tmp_path / "run", rows)


def test_summarize_inspect_and_the_wandb_plan_read_a_twice_named_component_alike(tmp_path: Path, cli) -> None:
    root = _run(tmp_path)
    row = json.loads(cli("summarize", root, "--format", "json").stdout)[0]
    dup = [row[f"sample:component/dup_{k}"] for k in ("mean", "count", "null")]
    assert dup == [1.0, 1, 1], dup
    deep = json.loads(cli("inspect", root, "--deep", "--format", "json").stdout)
    counts = deep["numeric"]["component/dup"]
    assert counts["rows"] == 2 and counts["null"] == 1 and counts["valid"] == 1, counts
    out: dict[int, dict[str, float]] = {}
    _component_means(open_run(root), "debate", out)
    assert out[0]["debate/component/dup"] == 1.0, out
