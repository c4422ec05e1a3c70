"""Audit a18 (diff): rounding read as a difference, and paired verdicts from too few prompts.

- F1: the same samples in another row order (shards written in another order, a run re-read from an object
  store) gave wins and losses on identical data, a paired verdict ``behind`` (mean_diff -4.9e-18) and point
  differences of -2.2e-16: per-prompt and window means summed in row order, and no verdict allowed for rounding.
  Means are now summed in sorted order, and a difference within a few ulps of the values compared is a tie.
- F2: a scalar of one shard weighed by ``k__count`` was merged as ``v * w / w`` (0.1 * 3 / 3 =
  0.10000000000000002), and diff called it ``lower`` than another run's 0.1 (a width-0 interval read as
  certainty); 0.2 and 0.4 merged against a logged 0.3, likewise.
- F3: the paired verdict rested on a percentile bootstrap alone: 3 prompts, all won, were ``ahead`` (their signs
  have a chance of 1 in 4 under no difference), and null pairs of 3 to 10 prompts were called ahead or behind
  18-25 % of the time at 95 %. A paired verdict now also needs an exact sign-flip test at the same level; below
  the prompts that test needs (6 at 95 %) there is none, and a note says why.
The truth is how the inputs were built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import Diff, DiffOptions, diff_runs

TOO_FEW = "too few for a paired verdict"
NOT_BACKED = "paired interval not backed by a sign-flip test"


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOG_CACHE", "off")


def _write(path: Path, steps: dict[int, list[tuple[str, float]]], scalars: list[dict] | None = None) -> Path:
    """A run of ``steps``: per step, its (prompt text, reward) rows in the order given."""
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s, rows in steps.items():
            w.log_samples(s, [{"prompt": p, "reward": r, "group_id": p} for p, r in rows], split="train")
    if scalars is not None:
        (path / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scalars))
    return path


def _diff(a: Path, b: Path, **kw: object) -> Diff:
    return diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(**{"window": 10, "boot": 500, **kw}))


def _noisy(seed: int, steps: int = 20, prompts: int = 8, samples: int = 4) -> dict[int, list[tuple[str, float]]]:
    """Continuous rewards (6 decimals, as logged), each step ``prompts`` of 40 prompts drawn, ``samples`` each."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in range(steps):
        drawn = np.random.default_rng(1000 + s).choice(40, prompts, replace=False)
        out[s] = [
            (f"prompt number {k}", float(np.round(k / 40 + rng.normal(0, 0.3), 6)))
            for k in drawn
            for _ in range(samples)
        ]
    return out


def test_the_same_samples_in_another_row_order_are_no_difference(tmp_path: Path) -> None:
    """F1: every step's rows reversed: each (step, prompt) holds the same rewards in both runs, so every pair is a
    tie, the mean difference 0 and the verdict tie; every point's difference is exactly 0."""
    data = _noisy(1)
    a = _write(tmp_path / "a", data)
    b = _write(tmp_path / "b", {s: rows[::-1] for s, rows in data.items()})
    d = _diff(a, b)
    [row] = d.paired.to_dicts()
    assert (row["wins"], row["losses"], row["ties"]) == (0, 0, row["prompts"]) and row["prompts"] == 80
    assert row["mean_diff"] == 0 and row["verdict"] == "tie"
    assert d.points.height and set(d.points["diff"].to_list()) == {0.0}
    assert set(d.points["verdict"].drop_nulls().to_list()) == {"tie"}


def test_a_difference_within_rounding_is_a_tie_whatever_its_interval(tmp_path: Path) -> None:
    """F1/F2: a per-prompt difference of one ulp (0.1 + 0.2 against 0.3 at every prompt) is a tie, never a win;
    the unpaired interval of constant columns, width 0 at -5.6e-17, is a tie."""
    prompts = [f"p{k}" for k in range(8)]
    a = _write(tmp_path / "a", {s: [(p, 0.30000000000000004) for p in prompts for _ in range(2)] for s in range(10)})
    b = _write(tmp_path / "b", {s: [(p, 0.3) for p in prompts for _ in range(2)] for s in range(10)})
    d = _diff(a, b)
    [row] = d.paired.to_dicts()
    assert (row["wins"], row["losses"], row["ties"]) == (0, 0, 80) and row["verdict"] == "tie"
    rewards = d.points.filter(d.points["metric"] == "reward")
    assert rewards["diff"].to_list()[0] == pytest.approx(-5.55e-17, rel=0.01)
    assert set(rewards["verdict"].to_list()) == {"tie"}


def _scalar_runs(tmp_path: Path) -> dict[str, Path]:
    rows = {s: [("p", 0.5), ("p", 1.0)] for s in range(10)}
    out = {}
    for name, recs in {
        "c3": [{"step": s, "clip_frac": 0.1, "clip_frac__count": 3} for s in range(10)],
        "c4": [{"step": s, "clip_frac": 0.1, "clip_frac__count": 4} for s in range(10)],
        "one": [{"step": s, "acc": 0.3} for s in range(10)],
    }.items():
        out[name] = _write(tmp_path / name, rows, recs)
    two = _write(tmp_path / "two", rows, [{"step": s, "acc": 0.2} for s in range(10)])
    (two / "scalars.p1.jsonl").write_text("".join(json.dumps({"step": s, "acc": 0.4}) + "\n" for s in range(10)))
    out["two"] = two
    return out


def test_one_shard_weighed_by_its_count_is_its_value_and_no_difference(tmp_path: Path) -> None:
    """F2: clip_frac 0.1 at every step of both runs, only its __count differs (3 against 4): both means are 0.1
    exactly, the difference 0, the verdict tie (it was ``lower``, baseline 0.10000000000000002)."""
    runs = _scalar_runs(tmp_path)
    d = _diff(runs["c3"], runs["c4"], keys=("clip_frac",))
    assert d.scalars.height == 2
    for row in d.scalars.to_dicts():
        assert (row["baseline"], row["value"], row["diff"], row["verdict"]) == (0.1, 0.1, 0.0, "tie")


def test_two_shards_merged_against_their_mean_logged_is_a_tie(tmp_path: Path) -> None:
    """F2: acc 0.2 and 0.4 of two shards against 0.3 logged by one: a difference of one ulp (5.6e-17), a tie."""
    runs = _scalar_runs(tmp_path)
    d = _diff(runs["two"], runs["one"], keys=("acc",))
    assert d.scalars.height == 2
    for row in d.scalars.to_dicts():
        assert abs(row["diff"]) < 1e-16 and row["verdict"] == "tie"


def _per_step(diffs: list[float], base: float = 0.5) -> tuple[dict, dict]:
    """One prompt a step, 4 samples: the baseline's rewards around ``base``, the run's shifted by ``diffs``."""
    spread = [0.0, -0.1, 0.1, 0.0]
    a = {s: [(f"prompt of step {s}", base + e) for e in spread] for s in range(len(diffs))}
    b = {s: [(f"prompt of step {s}", base + e + x) for e in spread] for s, x in enumerate(diffs)}
    return a, b


@pytest.mark.parametrize("diffs", [[0.05, 0.15, 0.10], [0.01, 0.30]])
def test_three_prompts_all_won_give_no_paired_verdict_and_say_why(tmp_path: Path, diffs: list[float]) -> None:
    """F3: 3 (2) prompts, every one won: the percentile interval lies above 0, but their signs alone have a chance
    of 1 in 4 (1 in 2) under no difference: no paired verdict, its p the exact sign-flip test's, and a note."""
    da, db = _per_step(diffs)
    d = _diff(_write(tmp_path / "a", da), _write(tmp_path / "b", db))
    [row] = d.paired.to_dicts()
    assert row["ci_low"] > 0 and row["wins"] == len(diffs)
    assert row["verdict"] is None
    assert row["p_value"] == pytest.approx(2 / 2 ** len(diffs))
    [note] = [n for n in d.notes if TOO_FEW in n]
    assert f"has {len(diffs)} prompt(s)" in note and "6 or more are needed" in note


def test_an_interval_the_sign_flip_test_does_not_back_is_a_tie(tmp_path: Path) -> None:
    """F3: 6 prompts, 5 won by 0.1 and one lost by 0.01: the bootstrap's interval lies above 0, the sign-flip test
    gives p = 4/64 > 0.05: the paired verdict is tie, and a note says why."""
    da, db = _per_step([0.1, 0.1, 0.1, 0.1, 0.1, -0.01])
    d = _diff(_write(tmp_path / "a", da), _write(tmp_path / "b", db))
    [row] = d.paired.to_dicts()
    assert row["ci_low"] > 0 and row["verdict"] == "tie"
    assert row["p_value"] == pytest.approx(4 / 64)
    assert [n for n in d.notes if NOT_BACKED in n and "p = 0.0625" in n]


def test_a_clear_shift_over_many_prompts_keeps_its_verdict(tmp_path: Path) -> None:
    """F3: B 0.5 better from step 12 on 8 prompts a step (80 pairs in the end window 10..19, 64 of them shifted):
    still ``ahead``, with p far below 0.05 (the seeded Monte Carlo of 10,000 assignments beyond 16 prompts)."""
    data = _noisy(1)
    shifted = {s: [(p, r + (0.5 if s >= 12 else 0.0)) for p, r in rows] for s, rows in data.items()}
    d = _diff(_write(tmp_path / "a", data), _write(tmp_path / "b", shifted))
    [row] = d.paired.to_dicts()
    assert row["prompts"] == 80 and row["wins"] == 64 and row["verdict"] == "ahead"
    assert row["p_value"] == pytest.approx(1 / 10_001)
    assert not [n for n in d.notes if TOO_FEW in n or NOT_BACKED in n]


def test_sign_flip_p_is_exact_and_deterministic() -> None:
    """The exact test's p of all-positive differences is 2 / 2^n; zeros flip to themselves; beyond 16 prompts the
    Monte Carlo is seeded (the same p twice); 6 prompts are the fewest that can reach 0.05."""
    from runlog.analysis.diff.bootstrap import min_flip_prompts, sign_flip_p

    assert sign_flip_p(np.array([0.05, 0.15, 0.10])) == 0.25
    assert sign_flip_p(np.array([0.1] * 6 + [0.0] * 4)) == 2 / 64
    assert sign_flip_p(np.array([0.0, 0.0])) == 1.0
    # Differences of mixed signs: the share of the 16 assignments whose |sum| reaches the observed one.
    x = np.array([1.0, 2.0, 3.0, -2.0])
    signs = 1 - 2 * ((np.arange(16)[:, None] >> np.arange(4)) & 1)
    assert sign_flip_p(x) == np.mean(np.abs(signs @ x) >= abs(x.sum()))
    many = np.random.default_rng(3).normal(0.05, 1.0, 40)
    assert sign_flip_p(many, np.random.default_rng(7)) == sign_flip_p(many, np.random.default_rng(7))
    assert (min_flip_prompts(0.95), min_flip_prompts(0.99), min_flip_prompts(0.9)) == (6, 8, 5)


def test_the_cli_json_has_the_p_value_and_the_note(tmp_path: Path, cli) -> None:
    """F3 in the JSON: the paired row's p_value, verdict null, and the note among the notes (and on stderr)."""
    da, db = _per_step([0.05, 0.15, 0.10])
    res = cli("diff", _write(tmp_path / "a", da), _write(tmp_path / "b", db), "-f", "json", "--no-cache")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)["paired"]
    assert row["p_value"] == 0.25 and row["verdict"] is None
    assert [n for n in json.loads(res.stdout)["notes"] if TOO_FEW in n]
