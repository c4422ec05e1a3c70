"""``inspect`` on every bundled sample run, against golden JSON (volatile fields normalised).

Regenerate the goldens after an intended change with ``RUNLOG_UPDATE_GOLDEN=1 pytest tests/test_sample_runs.py``
and review the diff.
"""

from __future__ import annotations

import json
import os

import polars as pl
import pytest

from runlog import open_run
from runlog.analysis.inspect import inspect_run

from conftest import ROOT, SAMPLE_RUNS

GOLDEN = ROOT / "tests" / "golden"
RUNS = ["debate_grpo", "flink_mixed", "jaxarc", "damaged"]


def normalise(report: dict) -> dict:
    """Drop what depends on the machine or the pyarrow that wrote the files (paths, byte sizes)."""
    report = json.loads(json.dumps(report))
    report.pop("run")
    report.pop("bytes")
    for f in report["files"]:
        f.pop("bytes")
    for entry in report["layouts"].values():
        entry.pop("bytes")
    for p in report["problems"]:
        # pyarrow's wording of a corrupt file differs between versions; the kind and path are the contract.
        if p["kind"] == "unreadable":
            p["message"] = p["message"].split(":")[0]
    return report


@pytest.mark.parametrize("name", RUNS)
@pytest.mark.parametrize("deep", [False, True], ids=["footers", "deep"])
def test_inspect_golden(name, deep):
    report = normalise(inspect_run(open_run(SAMPLE_RUNS / name), deep=deep).as_dict())
    path = GOLDEN / f"inspect_{name}{'_deep' if deep else ''}.json"
    if os.environ.get("RUNLOG_UPDATE_GOLDEN"):
        path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert report == expected


def test_debate_run_facts():
    """The facts the sample run was built with (sample_runs/README.md), not just whatever inspect says."""
    r = inspect_run(open_run(SAMPLE_RUNS / "debate_grpo"), deep=True)
    assert r["roles"] == ["solver", "verifier", "judge"]
    assert r["steps"] == {"eval": [0, 24], "train": [0, 31]}
    assert r["step_stride"] == {"eval": 8, "train": 1}
    assert r["step_gaps"] == {"eval": [], "train": []}
    assert r["rows_by_kind"]["samples"] == 32 * 32 + 4 * 16
    assert r["exceptions"] == 15
    assert r["numeric"]["reward"] == {"rows": 1088, "null": 15, "nan": 4, "inf": 0, "valid": 1069}
    assert r["problems"] == []
    # Written by the example trainer through RunWriter: two process shards per train step, and it learned.
    run = open_run(SAMPLE_RUNS / "debate_grpo")
    train = [f for f in run.files if f.kind == "samples" and f.split == "train"]
    assert sorted({f.process for f in train}) == [0, 1] and len(train) == 64
    means = dict(run.scalars.filter(pl.col("key") == "train/reward/mean").select("step", "value").collect().iter_rows())
    assert means[31] > means[0] + 0.4


def test_damaged_run_reports_every_damage():
    r = inspect_run(open_run(SAMPLE_RUNS / "damaged"))
    kinds = sorted((p["kind"], p["path"]) for p in r["problems"])
    assert ("unreadable", "samples/train/step_00000001.p0.parquet") in kinds
    assert ("newer_schema_version", "samples/train/step_00000004.p0.parquet") in kinds
    assert ("bad_line", "scalars.p0.jsonl") in kinds
    assert ("warning", "scalars.p0.jsonl") in kinds  # the torn last line
    assert ("warning", "notes.txt") in kinds
    assert r["step_gaps"]["train"] == [[1, 1], [3, 4]]
    assert r["unmatched"] == ["notes.txt"]


def test_flink_mixed_versions_and_csv():
    r = inspect_run(open_run(SAMPLE_RUNS / "flink_mixed"))
    assert r["schema_versions"] == {"0": 11, "1": 11}
    assert r["roles"] == ["solver", "verifier", "judge"]
    assert [p["kind"] for p in r["problems"]] == ["warning"]
    assert any(f["path"].endswith(".csv") and f["rows"] == 16 for f in r["files"])
