"""TRL (audit 18): a reward function's column is a float one. TRL stores every function's value in the float
tensor ``rewards_per_func`` (a None as NaN), and writes ``**rewards, **extra`` into one table: an integer or
decimal column is a ``log_extra`` one (``tool_calls``: 3 in every row made the reward mean 4.0 where TRL's is 1.0),
as a boolean is. Such a column is kept in ``extra``, said in a note naming it, and never summed, also where another
file holds it as a float (pandas writes an integer column with a None as float).

Every expectation is computed here from the values written, never from runlog's reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run

ACC = [float(i % 2) for i in range(8)]
FMT = [0.5] * 8
TRUTH = [a + f for a, f in zip(ACC, FMT, strict=True)]  # TRL's reward: the sum of the two functions


def completions(root: Path, step: int, extra: pa.Array, name: str = "tool_calls") -> None:
    path = root / "completions" / f"completions_{step:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, Any] = {
        "step": [str(step)] * 8,
        "prompt": [f"q{i // 4}" for i in range(8)],
        "completion": [f"c{i}" for i in range(8)],
        "accuracy_reward": pa.array(ACC, pa.float64()),
        "format_reward": pa.array(FMT, pa.float64()),
        name: extra,
        "advantage": [0.0] * 8,
    }
    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize(
    "extra",
    [
        pa.array([3] * 8, pa.int64()),
        pa.array([2] * 8, pa.int32()),
        pa.array([1] * 8, pa.uint8()),
        pa.array([1] * 8, pa.decimal128(5, 2)),
    ],
    ids=["int64", "int32", "uint8", "decimal"],
)
def test_an_integer_or_decimal_log_extra_column_is_not_summed(cli, tmp_path: Path, extra: pa.Array) -> None:
    """The reaudit's run: ``tool_calls`` (int64, 3 per row) beside two float functions."""
    run = tmp_path / "run"
    for step in (1, 2):
        completions(run, step, extra)
    r = cli("summarize", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["reward_mean"] == pytest.approx(np.mean(TRUTH))  # 1.0, not 4.0

    opened = open_run(run)
    df = opened.samples.collect().sort("step", "sample_id")
    assert df["reward"].to_list() == pytest.approx(TRUTH * 2)
    names = {c["name"] for comps in df["reward_components"].to_list() for c in comps}
    assert names == {"accuracy_reward", "format_reward"}
    assert [float(json.loads(e)["tool_calls"]) for e in df["extra"].to_list()] == [float(extra[0].as_py())] * 16
    said = [n["message"] for n in opened.ctx.fidelity if "tool_calls" in n["message"] and "not summed" in n["message"]]
    assert len(said) == 1 and "integer" in said[0]


def test_an_integer_column_a_none_made_float_in_one_file_is_not_summed_there(tmp_path: Path) -> None:
    """pandas writes a ``log_extra`` list of ints with a None as float64 (NaN): the column is an integer one in
    the run's other files, so it is no reward function in that file either (TRL's functions are never ints)."""
    completions(tmp_path, 1, pa.array([3] * 8, pa.int64()))
    completions(tmp_path, 2, pa.array([3.0] * 7 + [float("nan")], pa.float64()))
    df = open_run(tmp_path).samples.collect().sort("step", "sample_id")
    assert df["reward"].to_list() == pytest.approx(TRUTH * 2)


def test_float_reward_functions_are_still_summed(tmp_path: Path) -> None:
    """The rule leaves TRL's own tables (float functions, one of them all NaN in a file) as they were."""
    completions(tmp_path, 1, pa.array([0.25] * 8, pa.float64()), name="judge_reward")
    df = open_run(tmp_path).samples.collect().sort("sample_id")
    assert df["reward"].to_list() == pytest.approx([t + 0.25 for t in TRUTH])
