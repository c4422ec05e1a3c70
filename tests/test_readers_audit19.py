"""Audit 19 (readers): correlations pair values by the sample's row, not its id, and centre before correlating;
TRL conversational prompts are grouped on the whole prompt, not its last user turn."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal, getcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog


def _csv(text: str) -> list[dict[str, str]]:
    """The CSV table of a command's output (warnings go to stderr, which the runner keeps apart)."""
    return list(csv.DictReader(io.StringIO(text)))


def _pair(rows: list[dict[str, str]], x: str, y: str) -> dict[str, str]:
    [row] = [r for r in rows if {r["x"], r["y"]} == {x, y}]
    return row


def _exact_r(xs: list[float], ys: list[float]) -> float:
    """Pearson's r in exact rational arithmetic over the floats as stored, the root taken in 50-digit decimals."""
    fx, fy = [Fraction(v) for v in xs], [Fraction(v) for v in ys]
    mx, my = sum(fx) / len(fx), sum(fy) / len(fy)
    sxy = sum((a - mx) * (b - my) for a, b in zip(fx, fy, strict=True))
    sxx = sum((a - mx) ** 2 for a in fx)
    syy = sum((b - my) ** 2 for b in fy)
    r2 = sxy * sxy / (sxx * syy)
    getcontext().prec = 50
    r = float((Decimal(r2.numerator) / Decimal(r2.denominator)).sqrt())
    return r if sxy >= 0 else -r


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- 1. correlations: rows that share a sample id are samples each -------------------------------------------------
def test_correlations_count_each_row_of_two_verl_dumps_of_one_step(cli, tmp_path):
    """rollout/3.jsonl and rollout/3_retry.jsonl (two dumps of step 3) share their ids '3:0'..'3:5': summarize counts
    12 samples, --correlations kept the first row of each id (r 0.4, n 6); numpy over the 12 lines: r 0.6565."""
    run = tmp_path / "verl_dup"
    first = [{"input": f"prompt {i // 3}", "output": "o", "score": s, "step": 3, "acc": a} for i, (s, a) in
             enumerate([(1.0, 1.0), (0.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.0, 0.0), (1.0, 1.0)])]  # fmt: skip
    retry = [{"input": f"prompt {i // 3}", "output": "z", "score": float(i % 2), "step": 3, "acc": float(i % 2)}
             for i in range(6)]  # fmt: skip
    _jsonl(run / "rollout" / "3.jsonl", first)
    _jsonl(run / "rollout" / "3_retry.jsonl", retry)
    res = cli("summarize", run, "--correlations", "--format", "csv")
    assert res.exit_code == 0, res.output
    row = _pair(_csv(res.stdout), "reward", "component/acc")
    lines = [json.loads(line) for f in ("3.jsonl", "3_retry.jsonl") for line in (run / "rollout" / f).open()]
    truth = np.corrcoef([ln["score"] for ln in lines], [ln["acc"] for ln in lines])[0, 1]
    assert int(row["n"]) == len(lines) == 12
    assert float(row["pearson"]) == pytest.approx(truth, rel=1e-12)


def test_correlations_of_roles_pair_each_row_where_a_native_step_repeats_an_id(cli, tmp_path):
    """A native run whose step logs one sample_id on several rows: the role pivot kept the first row's reward of
    each role for the id, pairing one row's solver with another's total; each row is its own sample."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(12):
        s, j = float(rng.normal()), float(rng.normal())
        rows.append(
            {
                "sample_id": f"s{i % 3}",  # three ids, four rows each
                "reward": s + 0.5 * j,
                "solver_reward": s,
                "judge_reward": j,
                "reward_components": {"fmt": float(rng.normal()) + s},
            }
        )
    with runlog.RunWriter(tmp_path / "nat", name="nat", roles=["solver", "judge"]) as w:
        w.log_samples(0, rows)
    res = cli("summarize", tmp_path / "nat", "--correlations", "--format", "csv")
    assert res.exit_code == 0, res.output
    out = _csv(res.stdout)
    cols = {
        "reward": [r["reward"] for r in rows],
        "reward/solver": [r["solver_reward"] for r in rows],
        "reward/judge": [r["judge_reward"] for r in rows],
        "component/fmt": [r["reward_components"]["fmt"] for r in rows],
    }
    for x, y in [("reward", "reward/solver"), ("reward/solver", "reward/judge"), ("component/fmt", "reward/judge")]:
        row = _pair(out, x, y)
        assert int(row["n"]) == 12
        assert float(row["pearson"]) == pytest.approx(np.corrcoef(cols[x], cols[y])[0, 1], rel=1e-9, abs=1e-12)


# --- 3. correlations are centred: a reward near 1e12 keeps its digits ----------------------------------------------
@pytest.mark.parametrize(("offset", "spread", "noise"), [(1e12, 1e-3, 1e-4), (1e9, 0.1, 0.01), (-3e15, 8.0, 1.0)])
def test_correlation_at_a_large_offset_matches_exact_arithmetic(cli, tmp_path, offset, spread, noise):
    """reward/b = offset + x * spread + noise: scaled by its largest magnitude but not centred, r read 0.98799 for
    the exact 0.994813 at 1e12 (and was off by 1.8e-8 relative at 1e9, where numpy's is within 1e-13)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=40)
    b = [float(offset + v * spread + rng.normal() * noise) for v in x]
    rows = [{"reward": float(v), "a_reward": 0.1, "b_reward": bv} for v, bv in zip(x, b, strict=True)]
    with runlog.RunWriter(tmp_path / "c", name="c", roles=["a", "b"]) as w:
        w.log_samples(0, rows)
    res = cli("summarize", tmp_path / "c", "--correlations", "--format", "csv")
    assert res.exit_code == 0, res.output
    row = _pair(_csv(res.stdout), "reward", "reward/b")
    exact = _exact_r([float(v) for v in x], b)
    assert int(row["n"]) == 40
    assert float(row["pearson"]) == pytest.approx(exact, rel=1e-12)


def test_correlation_of_values_near_the_float_limits_matches_exact_arithmetic(cli, tmp_path):
    """Centring keeps the scaling that lets values near 1e300 and 1e-300 correlate (no overflow in the sums)."""
    rng = np.random.default_rng(3)
    x = [float(v) for v in rng.normal(size=20)]
    big = [float(1e300 * (2 + v + 0.3 * rng.normal())) for v in x]
    tiny = [float(1e-300 * (v - 0.2 * rng.normal())) for v in x]
    rows = [{"reward": v, "reward_components": {"big": g, "tiny": t}} for v, g, t in zip(x, big, tiny, strict=True)]
    with runlog.RunWriter(tmp_path / "lim", name="lim") as w:
        w.log_samples(0, rows)
    res = cli("summarize", tmp_path / "lim", "--correlations", "--format", "csv")
    assert res.exit_code == 0, res.output
    out = _csv(res.stdout)
    assert float(_pair(out, "component/big", "component/tiny")["pearson"]) == pytest.approx(
        _exact_r(big, tiny), rel=1e-12
    )
    assert float(_pair(out, "reward", "component/big")["pearson"]) == pytest.approx(_exact_r(x, big), rel=1e-12)


# --- 2. TRL conversational prompts: the whole prompt is the group --------------------------------------------------
def _trl(root: Path, rows: list[dict[str, Any]], step: int = 5) -> None:
    (root / "completions").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "completions" / f"completions_{step:05d}.parquet")


def _conv(system: str | None, user: str, reward: float) -> dict[str, Any]:
    prompt = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": user}
    ]
    return {
        "step": 5,
        "prompt": prompt,
        "completion": [{"role": "assistant", "content": "4"}],
        "accuracy_reward": reward,
        "advantage": 0.0,
    }


def _zero_adv_truth(rows: list[dict[str, Any]]) -> float:
    """The share of groups (rows with the same whole prompt, as JSON) whose rewards are all equal."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[json.dumps(r["prompt"], sort_keys=True)].append(r["accuracy_reward"])
    return float(np.mean([np.ptp(v) == 0 for v in groups.values()]))


def _zero_adv(cli, run: Path, *extra: str) -> float:
    res = cli("summarize", run, "--by", "step", "--prompt-groups", "--format", "csv", *extra)
    assert res.exit_code == 0, res.output
    [row] = _csv(res.stdout)
    return float(row["zero_adv_frac"])


def test_trl_prompts_that_differ_before_their_last_user_turn_are_two_groups(cli, tmp_path):
    """Two prompts whose system message holds the task ('compute 2+2', 'compute 3*7') and whose user turn is the same:
    grouped by the last user message they were one group of rewards 1, 1, 0, 0 (zero_adv_frac 0.0); truth 1.0."""
    rows = [_conv(s, "Answer the task above.", r) for s, rr in
            [("Task: compute 2+2.", [1.0, 1.0]), ("Task: compute 3*7.", [0.0, 0.0])] for r in rr]  # fmt: skip
    _trl(tmp_path / "trl_conv", rows)
    assert _zero_adv_truth(rows) == 1.0
    assert _zero_adv(cli, tmp_path / "trl_conv") == 1.0


def test_trl_prompt_groups_of_mixed_prompts_match_the_whole_prompt(cli, tmp_path):
    """Plain one-message prompts, a system prompt and a few-shot prompt ending in the same user turn: groups are the
    whole prompts (4 groups: two flat), not 2 by the last user text."""
    few_shot = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Q"},
    ]
    rows = [
        _conv(None, "Q", 1.0),
        _conv(None, "Q", 1.0),
        _conv("Be brief.", "Q", 0.0),
        _conv("Be brief.", "Q", 1.0),
        dict(_conv(None, "Q", 0.0), prompt=few_shot),
        dict(_conv(None, "Q", 0.0), prompt=few_shot),
        _conv(None, "R", 0.0),
        _conv(None, "R", 1.0),
    ]
    _trl(tmp_path / "trl_mixed", rows)
    truth = _zero_adv_truth(rows)
    assert truth == 0.5
    assert _zero_adv(cli, tmp_path / "trl_mixed") == truth


def test_doctor_counts_the_same_trl_groups_as_summarize(tmp_path):
    """doctor's share of prompt groups with two samples or more (``doctor._shared_groups``) reads this key over the
    numeric view: four samples of two system prompts are two groups of two (one group of four before)."""
    from runlog.analysis.aggregate import group_key_expr

    rows = [_conv(s, "Go.", r) for s in ("A", "B") for r in (1.0, 1.0)]
    _trl(tmp_path / "trl_doc", rows)
    run = runlog.open_run(tmp_path / "trl_doc")
    key = group_key_expr(run)
    assert key is not None
    [df] = run.collect(lambda: [run.numeric({"g": key}, []).group_by("g").agg(n=pl.len())])
    assert sorted(df["n"].to_list()) == [2, 2]


def test_trl_one_message_prompts_keep_their_text(tmp_path):
    """A prompt of one user message is still its text (what summaries, search and tables showed before); a longer
    prompt holds every message, in order."""
    rows = [_conv(None, "What is 2+2?", 1.0), _conv("Task: add.", "Answer.", 0.0)]
    _trl(tmp_path / "trl_text", rows)
    run = runlog.open_run(tmp_path / "trl_text")
    prompts = run.samples.select("prompt").collect()["prompt"].to_list()
    assert prompts[0] == "What is 2+2?"
    assert prompts[1] is not None and prompts[1].index("Task: add.") < prompts[1].index("Answer.")
