"""Reward component names from the probed footer types agree with polars' reading of the footers.

A repeated summary answers from stored partials and needs only the component names of the run: reading them
from the probed Arrow type strings saves building a scan of every file. Each case writes Flink files whose
``reward_metrics`` column differs, and compares the names with what polars gives (the path taken when the
type strings are not plain).
"""

from __future__ import annotations

import decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.formats import flink

from conftest import SAMPLE_RUNS

TYPES = {
    "doubles": pa.struct([("correct", pa.float64()), ("format", pa.float64())]),
    "mixed": pa.struct([("b", pa.bool_()), ("i", pa.int32()), ("s", pa.string()), ("f", pa.float32())]),
    "nested": pa.struct([("a", pa.float64()), ("inner", pa.struct([("x", pa.float64())]))]),
    "decimal": pa.struct([("d", pa.decimal128(10, 2)), ("a", pa.float64())]),
    "date": pa.struct([("when", pa.date32()), ("a", pa.float64())]),
    "not_null": pa.struct([pa.field("a", pa.float64(), nullable=False)]),
    "odd_name": pa.struct([("has space", pa.float64()), ("a", pa.float64())]),
    "string_cells": pa.string(),
}
VALUES = {
    "doubles": {"correct": 1.0, "format": 0.5},
    "mixed": {"b": True, "i": 3, "s": "x", "f": 0.25},
    "nested": {"a": 1.0, "inner": {"x": 2.0}},
    "decimal": {"d": decimal.Decimal("1.50"), "a": 1.0},
    "date": {"when": None, "a": 1.0},
    "not_null": {"a": 1.0},
    "odd_name": {"has space": 1.0, "a": 2.0},
    "string_cells": '{"correct": 1.0, "len": 3}',
}


def _write(root, kinds: list[str]) -> None:
    logs = root / "flink_logs"
    logs.mkdir(parents=True)
    for step, kind in enumerate(kinds):
        metrics = pa.array([VALUES[kind]] * 2, type=TYPES[kind])
        table = pa.table(
            {
                "reward": [1.0, 0.0],
                "reward_metrics": metrics,
                "prompt": ["p", "p"],
                "solver_reward": [1.0, 0.0],
                "solver_kl": [0.1, 0.2],
            }
        )
        pq.write_table(table, logs / f"batch_debug_data_train_{step}.parquet")


def _both(path, monkeypatch) -> tuple[list[str], list[str]]:
    fast = open_run(path).component_names()
    with monkeypatch.context() as m:
        m.setattr(flink, "probed_component_names", lambda files: None)
        slow = open_run(path).component_names()
    return fast, slow


@pytest.mark.parametrize("kinds", [[k] for k in TYPES] + [["doubles", "mixed", "doubles"], ["mixed", "nested"]])
def test_probed_names_equal_polars_names(tmp_path, monkeypatch, kinds):
    _write(tmp_path, kinds)
    fast, slow = _both(tmp_path, monkeypatch)
    assert fast == slow


def test_plain_types_are_answered_without_polars(tmp_path):
    _write(tmp_path, ["doubles", "mixed"])
    run = open_run(tmp_path)
    files = [f for f in run.files if f.kind == "samples"]
    assert flink.probed_component_names(files) == ["correct", "format", "b", "i", "f"]
    _write(tmp_path / "nested", ["nested"])
    nested = [f for f in open_run(tmp_path / "nested").files if f.kind == "samples"]
    assert flink.probed_component_names(nested) is None  # asked of polars instead


def test_the_bundled_flink_run_agrees(monkeypatch):
    fast, slow = _both(SAMPLE_RUNS / "flink_mixed", monkeypatch)
    assert fast == slow and fast
