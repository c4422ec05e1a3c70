"""``runlog diff`` defects a second audit reproduced (its runs: a role with ±inf rewards, an infinite scalar, a
role of 1e300), each checked against a figure made here from the data written (numpy, or summarize):

4. ±inf rewards are values, as summarize counts them: a window's mean over them is ±inf or NaN, its count
   summarize's ``reward_count``, and there is no interval (a note says why);
5. an infinite scalar is shown as inf (table, CSV), never as missing; JSON writes null, and a note says so;
6. a paired comparison whose prompts have a NaN difference (rewards of +inf and -inf) says so: the mean of
   the differences is NaN with no interval, and the note counts the prompts in none of wins/losses/ties;
7. rounding is no difference: the same values in runs of different sizes (1e300 + 0.001 == 1e300, identical
   KL) have a difference of exactly 0, and every point lies within its interval."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.diff import DiffOptions, diff_runs
from runlog.analysis.diff.bootstrap import bootstrap_means, valid_mean
from runlog.analysis.scalars import summarize_scalars
from runlog.analysis.summarize import summarize

STEPS = 4
N = 16  # samples per step: 4 prompts of 4
INF = math.inf


def verifier(step: int, shift: float, with_inf: bool) -> np.ndarray:
    """The audit's ``verifier`` role: 0.25 (plus ``shift``) with a NaN and, in prompt 0, +inf and -inf."""
    r = np.full(N, 0.25 + shift)
    r[1] = np.nan
    if with_inf:
        r[2], r[3] = INF, -INF  # prompt 0: its mean is NaN
    return r


def write_run(path: Path, *, shift: float, n: int = N, with_inf: bool = True, plus_inf_only: bool = False) -> Path:
    """Roles ``verifier`` (above), ``plus`` (+inf in the run with ``plus_inf_only``, else finite), ``huge``
    (1e300 + shift: 1e300 whatever the shift) and ``kl`` (a constant KL); ``n`` samples per step."""
    with RunWriter(path, name=path.name, roles=["verifier", "plus", "huge"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            v = verifier(s, shift, with_inf)
            v = np.resize(v, n)
            plus = np.linspace(0.0, 1.0, n) + shift
            if plus_inf_only:
                plus[0] = INF  # prompt 0 of every step: its mean +inf
            w.log_samples(
                s,
                {
                    "reward": np.linspace(0.0, 1.0, n),
                    "verifier_reward": v,
                    "verifier_kl": np.full(n, 0.00025),
                    "plus_reward": plus,
                    "huge_reward": np.full(n, 1e300 + shift),
                    "huge_kl": np.full(n, 0.1 * 3),  # not exactly 0.3: its sums round
                    "group_id": [f"g{s}-{i // 4}" for i in range(n)],
                    "prompt": [f"q{s}-{i // 4}" for i in range(n)],
                },
            )
            w.log_scalars(s, {"infv": INF, "loss": 1.0 / (1 + s)})
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return write_run(tmp_path / "A", shift=0.0), write_run(tmp_path / "B", shift=0.001, n=12)


def points_of(d, role: str, metric: str = "reward") -> dict[str, dict]:
    rows = d.points.filter((pl.col("role") == role) & (pl.col("metric") == metric)).to_dicts()
    return {r["point"]: r for r in rows}


# ---------------------------------------------------------------------------------------------------------
# 4. ±inf rewards are values, as summarize counts them
# ---------------------------------------------------------------------------------------------------------


def test_means_and_counts_over_inf_rewards_are_summarizes(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """Before: the window's mean left ±inf out (0.25) and so did its count (summarize's less the infinities);
    summarize (and numpy) say NaN over ``reward_count`` values."""
    a, b = runs
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    for path, side in ((a, "baseline"), (b, "value")):
        s = summarize(open_run(path), ["role"], cache=False).filter(pl.col("role") == "verifier").to_dicts()[0]
        values = np.concatenate([np.resize(verifier(st, 0.0, True), N if path == a else 12) for st in range(STEPS)])
        assert s["reward_count"] == int((~np.isnan(values)).sum())
        with np.errstate(invalid="ignore"):  # inf - inf
            assert math.isnan(s["reward_mean"]) and math.isnan(float(np.nanmean(values)))
        for point, row in points_of(d, "verifier").items():
            n = row["baseline_n" if side == "baseline" else "n"]
            assert n == s["reward_count"], (point, row)
            assert math.isnan(row[side]), (point, row)
    for row in points_of(d, "verifier").values():
        assert row["ci_low"] is None and row["ci_high"] is None and row["verdict"] is None
    [head] = d.roles.filter(pl.col("role") == "verifier").to_dicts()
    assert math.isnan(head["reward_end_baseline"]) and head["verdict"] is None
    assert any("role verifier: the reward values of A and B" in n and "±inf" in n for n in d.notes), d.notes


def test_only_plus_inf_gives_an_infinite_mean(tmp_path: Path) -> None:
    a = write_run(tmp_path / "A", shift=0.0, with_inf=False)
    b = write_run(tmp_path / "B", shift=0.0, with_inf=False, plus_inf_only=True)
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    s = summarize(open_run(b), ["role"], cache=False).filter(pl.col("role") == "plus").to_dicts()[0]
    end = points_of(d, "plus")["end"]
    assert s["reward_mean"] == INF and end["value"] == INF and end["n"] == s["reward_count"] == STEPS * N
    assert end["diff"] == INF and end["ci_low"] is None and end["verdict"] is None
    assert any("role plus: the reward values of B" in n for n in d.notes), d.notes


# ---------------------------------------------------------------------------------------------------------
# 5. An infinite scalar is inf, not missing
# ---------------------------------------------------------------------------------------------------------


def test_an_infinite_scalar_is_shown_as_inf(runs: tuple[Path, Path], cli) -> None:
    """Before: ``infv`` was ``- │ - │ -`` (empty in CSV): its mean left the infinite steps out."""
    a, b = runs
    want = summarize_scalars(open_run(a)).filter(pl.col("key") == "infv").to_dicts()[0]
    assert want["mean"] == INF
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    rows = d.scalars.filter(pl.col("key") == "infv").to_dicts()
    assert [r["point"] for r in rows] == ["start", "end"]
    for r in rows:
        assert r["baseline"] == INF and r["value"] == INF
        assert math.isnan(r["diff"]) and r["ci_low"] is None and r["verdict"] is None  # inf - inf
    assert any("scalar key(s) infv have ±inf values" in n for n in d.notes), d.notes
    # the finite key beside it is unchanged: the mean of its steps
    [loss] = d.scalars.filter((pl.col("key") == "loss") & (pl.col("point") == "end")).to_dicts()
    assert loss["baseline"] == pytest.approx(np.mean([1.0 / (1 + s) for s in range(STEPS)]), rel=1e-15)

    r = cli("diff", a, b, "-f", "csv")
    assert r.exit_code == 0, r.output
    got = [row for row in csv.DictReader(io.StringIO(r.stdout)) if row["section"] == "scalars" and row["key"] == "infv"]
    assert [(row["baseline"], row["value"]) for row in got] == [("inf", "inf")] * 2
    r = cli("diff", a, b)
    line = next(ln for ln in r.stdout.splitlines() if "infv" in ln and "start" in ln)
    assert line.count("inf") >= 3, line  # key, baseline, value
    r = cli("diff", a, b, "-f", "json")
    out = json.loads(r.stdout)
    infv = [row for row in out["scalars"] if row["key"] == "infv"]
    assert all(row["baseline"] is None for row in infv)  # JSON has no inf: null, and a note says why
    assert any("infv" in n and "null in JSON" in n for n in out["notes"])


# ---------------------------------------------------------------------------------------------------------
# 6. Paired prompts without a defined difference
# ---------------------------------------------------------------------------------------------------------


def test_paired_nan_prompts_are_said_and_give_no_interval(runs: tuple[Path, Path]) -> None:
    """Before: mean_diff NaN inside a finite interval, wins + losses + ties < prompts, nothing said."""
    a, b = runs
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    [row] = d.paired.filter(pl.col("role") == "verifier").to_dicts()
    # by hand: per (step, prompt) the mean of the non-NaN rewards, B minus A
    diffs = []
    for s in range(STEPS):
        va, vb = verifier(s, 0.0, True), np.resize(verifier(s, 0.001, True), 12)
        for p in range(3):  # B has 12 samples: 3 prompts
            with np.errstate(invalid="ignore"):  # inf - inf
                ma, mb = np.nanmean(va[4 * p : 4 * p + 4]), np.nanmean(vb[4 * p : 4 * p + 4])
                diffs.append(mb - ma)
    d_np = np.array(diffs)
    nan = int(np.isnan(d_np).sum())
    assert nan == STEPS and row["prompts"] == len(d_np) == 12
    assert (row["wins"], row["losses"], row["ties"]) == (
        int((d_np > 0).sum()),
        int((d_np < 0).sum()),
        int((d_np == 0).sum()),
    )
    assert row["wins"] + row["losses"] + row["ties"] + nan == row["prompts"]
    assert math.isnan(row["mean_diff"]) and np.isnan(d_np).any()
    assert row["ci_low"] is None and row["ci_high"] is None and row["verdict"] is None
    said = [n for n in d.notes if "role verifier" in n and "paired prompts" in n]
    assert len(said) == 1 and f"{nan} of the {len(d_np)} paired prompts" in said[0], d.notes
    assert f"{nan} NaN (counted in none of wins, losses and ties)" in said[0]


def test_paired_infinite_prompts_count_as_wins(tmp_path: Path) -> None:
    a = write_run(tmp_path / "A", shift=0.0, with_inf=False)
    b = write_run(tmp_path / "B", shift=0.0, with_inf=False, plus_inf_only=True)
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    [row] = d.paired.filter(pl.col("role") == "plus").to_dicts()
    assert row["mean_diff"] == INF and row["wins"] == STEPS and row["ties"] == row["prompts"] - STEPS
    assert row["ci_low"] is None and row["verdict"] is None
    assert any("role plus" in n and f"{STEPS} infinite (counted as wins or losses)" in n for n in d.notes)


# ---------------------------------------------------------------------------------------------------------
# 7. Rounding is no difference; the point lies within its interval
# ---------------------------------------------------------------------------------------------------------


def test_the_same_values_in_runs_of_different_sizes_differ_by_exactly_0(tmp_path: Path) -> None:
    """Before: ``huge`` (1e300 + 0.001 == 1e300 in both) showed a diff of ~1e284 beside the interval [0, 0],
    and identical KL values a diff of ~1e-20: the means' rounding, which depends on the number of values."""
    a = write_run(tmp_path / "A", shift=0.0, n=1200)
    b = write_run(tmp_path / "B", shift=0.001, n=1040)
    assert 1e300 + 0.001 == 1e300
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=STEPS))
    for role, metric, value in (("huge", "reward", 1e300), ("huge", "kl", 0.1 * 3), ("verifier", "kl", 0.00025)):
        for point, row in points_of(d, role, metric).items():
            assert row["baseline"] == row["value"] == value, (role, metric, point, row)
            assert row["diff"] == 0.0 and row["ci_low"] == 0.0 == row["ci_high"] and row["verdict"] == "tie"
    [row] = d.paired.filter(pl.col("role") == "huge").to_dicts()
    assert row["mean_diff"] == 0.0 and row["ties"] == row["prompts"]
    # summarize agrees (to its own rounding)
    s = summarize(open_run(a), ["role"], cache=False).filter(pl.col("role") == "huge").to_dicts()[0]
    assert s["reward_mean"] == pytest.approx(1e300, rel=1e-12)


def test_every_point_lies_within_its_interval(tmp_path: Path) -> None:
    """Values far from 0 with a small spread (12345678.9 + noise): the bootstrap's float32 sums kept the
    magnitude and lost the spread, so the replicates, not the data, set the interval."""
    rng = np.random.default_rng(3)
    paths, written = [], []
    for name, shift in (("A", 0.0), ("B", 2e-4)):
        with RunWriter(tmp_path / name, name=name, roles=["big"], durable=False, clock=lambda: 1.7e9) as w:
            for s in range(STEPS):
                r = 12345678.9 + shift + rng.normal(0.0, 1e-3, 400)
                written.append(r)
                w.log_samples(s, {"reward": r, "big_reward": r, "group_id": [f"g{s}-{i // 4}" for i in range(400)]})
        paths.append(tmp_path / name)
    d = diff_runs([open_run(p) for p in paths], ["A", "B"], DiffOptions(window=STEPS))
    rows = d.points.filter(pl.col("metric") == "reward").to_dicts()
    assert rows
    for row in rows:
        assert row["ci_low"] <= row["diff"] <= row["ci_high"], row
        # the interval's width is the data's: about 2 * 1.96 * sqrt(2 / 1600) * 1e-3
        width = row["ci_high"] - row["ci_low"]
        assert 0.5 * 1.4e-4 < width < 2 * 1.4e-4, row
    # the point is the mean numpy takes of the same values (to its rounding)
    a_vals, b_vals = np.concatenate(written[:STEPS]), np.concatenate(written[STEPS:])
    end = next(r for r in rows if r["point"] == "end")
    assert end["baseline"] == pytest.approx(math.fsum(a_vals) / len(a_vals), rel=1e-15, abs=0)
    ulp = float(np.spacing(12345678.9))  # each mean is exact to half of one: the difference to one
    assert end["diff"] == pytest.approx(math.fsum(b_vals) / len(b_vals) - math.fsum(a_vals) / len(a_vals), abs=ulp)


def test_valid_mean_and_replicates_of_a_constant_are_the_constant() -> None:
    for v in (1e300, 0.1, 0.3, 12345678.9, -3.14159, 1e-300):
        for n in (3, 1040, 1200):
            col = np.full(n, v)
            assert valid_mean(col) == v
            reps = bootstrap_means(col, 200, np.random.default_rng(0))
            assert (reps == v).all()
    assert math.isnan(valid_mean(np.array([1.0, INF, -INF, np.nan])))
    assert valid_mean(np.array([1.0, INF, np.nan])) == INF
    assert valid_mean(np.array([np.nan])) is None
    wide = np.array([-1.7e308, 1.7e308, 1.0])
    assert valid_mean(wide) == pytest.approx(1 / 3, abs=1e292)  # the distances overflow: scaled, not inf
    x = np.random.default_rng(1).normal(5.0, 2.0, 10_001)
    assert valid_mean(x) == pytest.approx(math.fsum(x) / len(x), rel=1e-15)
