"""Layout readers whose figures were not what they aggregate (audit 17, layouts): a TRL fork's ``kl`` and
``entropy`` summed into the reward (its ``reward`` column is summed as TRL sums a function of that name, said); a
TRL row with one unreadable reward value given the partial sum; an AReaL summary family's ``k/count`` not used as
its shard's weight; a JaxARC eval record dropping the train record of its step; a JaxARC ``null`` metric listed as
a key.

Every expectation is computed here from the values written (numpy or by hand), never from runlog's reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis import scalars as S
from runlog.formats.base import WARNING


def completions(root: Path, step: int, columns: dict[str, list[Any]]) -> None:
    path = root / "completions" / f"completions_{step:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(columns.values())))
    pq.write_table(pa.table({"step": [step] * n, "prompt": ["p"] * n, "completion": ["c"] * n, **columns}), path)


def jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def warnings(run: Any) -> list[str]:
    return [p.message for p in run.ctx.problems if p.kind == WARNING]


def scalar_rows(root: Path) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in S.summarize_scalars(open_run(root)).to_dicts()}


# --- TRL: a `reward` column is summed as a function (said), `kl` and `entropy` are no reward functions --------

FORK = {
    "acc": [1.0, 0.0],
    "fmt": [0.5, 0.5],
    "reward": [1.5, 0.5],  # a fork's logged total, acc + fmt, or a function named `reward`: the file cannot tell
    "kl": [0.01, 0.02],
    "entropy": [1.2, 1.1],
}
SUMMED = [a + f + r for a, f, r in zip(FORK["acc"], FORK["fmt"], FORK["reward"], strict=True)]


def test_trl_reward_column_is_summed_and_the_double_count_said(tmp_path: Path) -> None:
    """TRL writes no total and names each column after its function (``def reward``): every function column is
    summed as TRL does; that a fork's total would count the others twice is a warning naming the columns."""
    completions(tmp_path, 1, FORK)
    run = open_run(tmp_path)
    df = run.samples.collect()
    assert df["reward"].to_list() == pytest.approx(SUMMED)  # never kl or entropy (3.165 on average)
    names = [sorted(c["name"] for c in comps) for comps in df["reward_components"].to_list()]
    assert names == [["acc", "fmt", "reward"], ["acc", "fmt", "reward"]]
    assert [json.loads(e) for e in df["extra"].to_list()] == [
        {"kl": 0.01, "entropy": 1.2},
        {"kl": 0.02, "entropy": 1.1},
    ]
    said = [w for w in warnings(run) if "'reward'" in w]  # a warning: summarize and doctor print them
    assert len(said) == 1 and "twice" in said[0] and "acc, fmt" in said[0]


def test_trl_summarize_reward_mean_of_a_fork(cli, tmp_path: Path) -> None:  # noqa: ANN001
    completions(tmp_path / "run", 1, FORK)
    r = cli("summarize", str(tmp_path / "run"), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["reward_mean"] == pytest.approx(np.mean(SUMMED))
    assert "reward sums the column(s) 'reward'" in r.stderr


def test_trl_policy_quantities_are_never_summed(tmp_path: Path) -> None:
    completions(tmp_path, 1, {"acc": [1.0, 0.0], "kl": [0.5, 0.5], "ref_logps": [-3.0, -2.0], "loss": [0.1, 0.2]})
    df = open_run(tmp_path).samples.collect()
    assert df["reward"].to_list() == [1.0, 0.0]


def test_trl_lone_reward_column_is_a_reward_function(tmp_path: Path) -> None:
    """A function named ``reward`` (the only one) is summed as before: its value is the reward and a component."""
    completions(tmp_path, 1, {"reward": [1.0, 0.0]})
    run = open_run(tmp_path)
    df = run.samples.collect()
    assert df["reward"].to_list() == [1.0, 0.0]
    assert [[c["name"] for c in comps] for comps in df["reward_components"].to_list()] == [["reward"], ["reward"]]
    assert not [w for w in warnings(run) if "'reward'" in w]


# --- TRL: one unreadable reward value makes the reward unknown -----------------------------------------------


def test_trl_one_unreadable_value_gives_a_null_reward(tmp_path: Path) -> None:
    completions(tmp_path, 1, {"acc": [1.0, 0.0], "fmt": [0.5, 0.5]})
    path = tmp_path / "completions" / "completions_00002.parquet"
    table = {"step": ["2", "2"], "prompt": ["a", "a"], "completion": ["x", "y"], "acc": ["1.0", "bad"]}
    pq.write_table(pa.table({**table, "fmt": [0.5, 0.5]}), path)
    df = open_run(tmp_path).samples.filter(pl.col("step") == 2).sort("sample_id").collect()
    assert df["reward"].to_list() == [1.5, None]  # not [1.5, 0.5]: 'bad' is an unknown term, not 0


def test_trl_a_functions_none_still_adds_nothing(tmp_path: Path) -> None:
    """TRL's nansum: a function's None (null) is no unreadable value, the others' sum stands."""
    completions(tmp_path, 1, {"acc": [1.0, None], "fmt": [0.5, 0.5]})
    assert open_run(tmp_path).samples.collect()["reward"].to_list() == [1.5, 0.5]


# --- AReaL: a summary family weighed by its k/count where k/mean__count is absent ---------------------------


def family(values: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {
        "global_step": 1,
        "k/mean": float(values.mean()),
        "k/std": float(values.std()),
        "k/min": float(values.min()),
        "k/max": float(values.max()),
        "k/count": len(values),
        **extra,
    }


def test_areal_family_count_weighs_its_shard(tmp_path: Path) -> None:
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0])
    jsonl(tmp_path / "stats.rank0.jsonl", [family(a)])
    jsonl(tmp_path / "stats.rank1.jsonl", [family(b)])
    both = np.concatenate([a, b])
    rows = scalar_rows(tmp_path)
    assert rows["k/mean"]["last"] == pytest.approx(both.mean())  # 4.0, not the shards' plain mean 6.0
    assert rows["k/std"]["last"] == pytest.approx(both.std())  # 3.54, not 4.04
    assert rows["k/count"]["last"] == len(both)


def test_areal_family_companion_wins_over_count(tmp_path: Path) -> None:
    """``k/mean__count`` stays the weight where a record has it; a shard with only ``k/count`` is weighed by it,
    and no note says they disagree on a weight."""
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])
    jsonl(tmp_path / "stats.rank0.jsonl", [family(a, **{"k/mean__count": 3})])
    jsonl(tmp_path / "stats.rank1.jsonl", [family(b)])
    assert scalar_rows(tmp_path)["k/mean"]["last"] == pytest.approx(np.concatenate([a, b]).mean())
    assert S.mixed_weights(open_run(tmp_path)) is None


# --- JaxARC: records of one step with other keys are all kept; a null is no value ----------------------------


def test_jaxarc_eval_record_keeps_the_train_record_of_its_step(tmp_path: Path) -> None:
    jsonl(
        tmp_path / "batch_metrics.jsonl",
        [
            {"timestamp": 1.0, "step": 0, "metrics": {"reward_mean": 0.1}},
            {"timestamp": 2.0, "step": 10, "metrics": {"reward_mean": 0.5}},
            {"timestamp": 2.5, "step": 10, "metrics": {"eval_success": 0.7}},
        ],
    )
    run = open_run(tmp_path)
    rows = scalar_rows(tmp_path)
    got = rows["reward_mean"]
    assert (got["count"], got["last"], got["last_step"]) == (2, 0.5, 10)
    assert rows["eval_success"]["last"] == 0.7
    assert not [w for w in warnings(run) if "logged again" in w]  # no key of step 10 was logged twice


def test_jaxarc_key_logged_again_keeps_its_later_value_only(tmp_path: Path) -> None:
    jsonl(
        tmp_path / "batch_metrics.jsonl",
        [
            {"timestamp": 1.0, "step": 10, "metrics": {"loss": 1.0, "acc": 0.5}},
            {"timestamp": 2.0, "step": 10, "metrics": {"loss": 3.0}},  # the next record of the step logs loss again
        ],
    )
    run = open_run(tmp_path)
    rows = scalar_rows(tmp_path)
    assert (rows["loss"]["count"], rows["loss"]["last"]) == (1, 3.0)
    assert (rows["acc"]["count"], rows["acc"]["last"]) == (1, 0.5)
    said = [w for w in warnings(run) if "logged again" in w]
    assert len(said) == 1 and "line 2" in said[0]


def test_jaxarc_null_metric_gives_no_key(tmp_path: Path) -> None:
    jsonl(
        tmp_path / "batch_metrics.jsonl",
        [
            {"timestamp": 1.0, "step": 0, "metrics": {"loss": 1.0, "x": None}},
            {"timestamp": 2.0, "step": 1, "metrics": {"loss": 2.0, "x": None, "nested": {"y": None}}},
        ],
    )
    run = open_run(tmp_path)
    assert sorted(run.scalars.collect()["key"].unique().to_list()) == ["loss"]
    assert list(scalar_rows(tmp_path)) == ["loss"]
