"""Layout readers after review 3 of audit 17: a TRL reward function named ``reward`` (``rewards``,
``total_reward``) taken for a fork's logged total, the other functions dropped from the reward; a TRL boolean
``log_extra`` column summed into the reward; a resumed JaxARC run keeping the abandoned run's values of keys it
did not log again.

Every expectation is computed here from the values written (numpy or by hand), never from runlog's reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
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
    table = {"step": [str(step)] * n, "prompt": [f"q{i // 4}" for i in range(n)], "completion": ["c"] * n}
    pq.write_table(pa.table({**table, **columns, "advantage": [0.0] * n}), path)


def warnings(run: Any) -> list[str]:
    return [p.message for p in run.ctx.problems if p.kind == WARNING]


# --- TRL: every reward-function column is summed, whatever its name ------------------------------------------

ACC = [float(i % 2) for i in range(8)]
FMT = [0.2 if i % 4 < 2 else 0.0 for i in range(8)]


@pytest.mark.parametrize("name", ["reward", "rewards", "total_reward"])
def test_trl_function_named_reward_is_summed_with_the_others(cli, tmp_path: Path, name: str) -> None:  # noqa: ANN001
    """``reward_funcs=[reward, format_reward]``: TRL names the columns after the functions and trains on their
    sum (nansum, weights 1.0), so the reward is the sum, and the name's ambiguity is said by summarize."""
    run = tmp_path / "run"
    for step in (1, 2):
        completions(run, step, {name: ACC, "format_reward": FMT})
    truth = np.array(ACC * 2) + np.array(FMT * 2)
    r = cli("summarize", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["reward_mean"] == pytest.approx(truth.mean())  # 0.6, not 0.5 (the 'total' alone)
    assert row["reward_max"] == pytest.approx(truth.max())  # 1.2, not 1.0
    said = [line for line in r.stderr.splitlines() if line.startswith("warning") and f"'{name}'" in line]
    assert len(said) == 1 and "format_reward" in said[0] and "twice" in said[0], r.stderr

    df = open_run(run).samples.collect()
    names = {c["name"] for comps in df["reward_components"].to_list() for c in comps}
    assert names == {name, "format_reward"}  # the function named `reward` is a component like the others


def test_trl_lone_total_named_column_is_not_warned(tmp_path: Path) -> None:
    """Nothing else summed with it: no double count possible, nothing to say."""
    completions(tmp_path, 1, {"reward": ACC})
    run = open_run(tmp_path)
    assert run.samples.collect()["reward"].to_list() == ACC
    assert not [w for w in warnings(run) if "twice" in w]


# --- TRL: a boolean log_extra column is no reward function -----------------------------------------------------


def test_trl_boolean_log_extra_column_is_not_summed(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """TRL writes ``**rewards, **extra``: ``log_extra("prm_valid", flags)`` sits beside the functions. TRL stores
    every function's value as a float, so a boolean column is no function: kept in ``extra``, said."""
    prm = [0.25 * (i % 4) for i in range(8)]
    valid = [i % 2 == 0 for i in range(8)]
    completions(tmp_path / "run", 1, {"prm_reward": prm, "prm_valid": valid, "prm_step_scores": ["[0.1,0.2]"] * 8})
    r = cli("summarize", str(tmp_path / "run"), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["reward_mean"] == pytest.approx(np.mean(prm))  # 0.375, not 0.875

    run = open_run(tmp_path / "run")
    df = run.samples.collect()
    assert [json.loads(e)["prm_valid"] for e in df["extra"].to_list()] == valid
    notes = [n["message"] for n in run.ctx.fidelity if "prm_valid" in n["message"] and "not summed" in n["message"]]
    assert len(notes) == 1


def test_trl_float_reward_column_beside_a_boolean_still_summed(tmp_path: Path) -> None:
    """The boolean rule leaves real TRL tables (float functions) as they were: both floats summed."""
    completions(tmp_path, 1, {"accuracy_reward": ACC, "format_reward": FMT, "parsed": [True] * 8})
    df = open_run(tmp_path).samples.collect()
    assert df["reward"].to_list() == pytest.approx([a + f for a, f in zip(ACC, FMT, strict=True)])


# --- JaxARC: a resume replaces the abandoned run's records of a step whole ------------------------------------


def jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def scalar_rows(root: Path) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in S.summarize_scalars(open_run(root)).to_dicts()}


def test_jaxarc_resume_drops_the_abandoned_runs_keys_not_logged_again(tmp_path: Path) -> None:
    """Steps 0..5 (eval at 0 and 4), then a resume from step 3 logging 3..8 (eval at 5 only): the resumed
    timeline is steps 0..2 of the first run and 3..8 of the second; the abandoned step-4 eval is in neither."""
    records: list[dict[str, Any]] = []
    for s in range(6):
        m: dict[str, float] = {"train/loss": 1.0 / (s + 1)}
        if s in (0, 4):
            m["eval/acc"] = 0.1 * s
        records.append({"step": s, "timestamp": 1000 + s, "metrics": m})
    for s in range(3, 9):
        m = {"train/loss": 0.5 / (s + 1)}
        if s == 5:
            m["eval/acc"] = 0.9
        records.append({"step": s, "timestamp": 2000 + s, "metrics": m})
    jsonl(tmp_path / "batch_metrics.jsonl", records)
    rows = scalar_rows(tmp_path)
    assert (rows["eval/acc"]["count"], rows["eval/acc"]["mean"]) == (2, pytest.approx((0.0 + 0.9) / 2))
    loss = [1.0 / (s + 1) for s in range(3)] + [0.5 / (s + 1) for s in range(3, 9)]
    assert (rows["train/loss"]["count"], rows["train/loss"]["mean"]) == (9, pytest.approx(np.mean(loss)))
    said = [w for w in warnings(open_run(tmp_path)) if "logged again" in w]
    assert len(said) == 1 and "line 7" in said[0] and "3, 4, 5" in said[0] and "whole" in said[0]


def test_jaxarc_resumed_step_keeps_its_own_train_and_eval_records(tmp_path: Path) -> None:
    """After a resume, the resumed run's consecutive records of one step (train, then eval) merge as before."""
    jsonl(
        tmp_path / "batch_metrics.jsonl",
        [
            {"step": 9, "metrics": {"loss": 1.0}},
            {"step": 10, "metrics": {"loss": 2.0, "old_only": 5.0}},
            {"step": 10, "metrics": {"acc": 0.1}},
            {"step": 9, "metrics": {"loss": 3.0}},  # resumed from step 9
            {"step": 10, "metrics": {"loss": 4.0}},
            {"step": 10, "metrics": {"acc": 0.7}},
        ],
    )
    rows = scalar_rows(tmp_path)
    assert (rows["loss"]["count"], rows["loss"]["mean"], rows["loss"]["last"]) == (2, 3.5, 4.0)
    assert (rows["acc"]["count"], rows["acc"]["last"]) == (1, 0.7)
    assert "old_only" not in rows  # the abandoned step 10's key, not logged by the resumed run
    assert not [w for w in warnings(open_run(tmp_path)) if "following record" in w]  # no key merged twice


def test_jaxarc_eval_written_after_the_next_step_joins_its_step(tmp_path: Path) -> None:
    """A review: an eval record of step N written after step N+1's record was taken for a resume and deleted
    step N's train metrics (loss count 41 [50], mean 24.61 [24.5]), warning of a resume that never happened."""
    import json

    from typer.testing import CliRunner

    from runlog.cli.app import app

    run = tmp_path / "r"
    run.mkdir()
    recs = []
    for s in range(50):
        recs.append({"timestamp": float(s), "step": s, "metrics": {"loss": float(s)}})
        if s % 5 == 0 and s > 0:
            recs.append({"timestamp": float(s), "step": s - 1, "metrics": {"eval_acc": float(s)}})
    (run / "batch_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = CliRunner().invoke(
        app, ["summarize", str(run), "--scalars", "--format", "json"], env={"RUNLOG_CACHE_DIR": str(tmp_path / "c")}
    )
    got = {x["key"]: x for x in json.loads(r.stdout)}
    assert got["loss"]["count"] == 50 and got["loss"]["mean"] == 24.5
    assert got["eval_acc"]["count"] == 9
    assert "went back" not in r.stderr


def test_jaxarc_a_late_eval_logged_twice_keeps_its_steps_train_metrics(tmp_path: Path) -> None:
    """A review: a second eval of step 0 written after step 10 was taken for a resume (its first late eval held
    the key): the step's train loss was wiped (count 3 [4], mean 3.0 [2.5])."""
    import json

    from typer.testing import CliRunner

    from runlog.cli.app import app

    run = tmp_path / "r"
    run.mkdir()
    recs = [{"step": s, "metrics": {"loss": float(s)}} for s in (0, 1, 2)]
    recs += [{"step": 0, "metrics": {"eval_acc": 0.5}}, {"step": 10, "metrics": {"loss": 7.0}}]
    recs += [{"step": 0, "metrics": {"eval_acc": 0.7}}]
    (run / "batch_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = CliRunner().invoke(
        app, ["summarize", str(run), "--scalars", "--format", "json"], env={"RUNLOG_CACHE_DIR": str(tmp_path / "c")}
    )
    got = {x["key"]: x for x in json.loads(r.stdout)}
    assert got["loss"]["count"] == 4 and got["loss"]["mean"] == 2.5
    assert got["eval_acc"]["count"] == 1 and got["eval_acc"]["last"] == 0.7  # the later value of the key kept
