"""Audit a18 (diff, #3 continued): the unpaired verdict (``roles.verdict``, each point's) from too few units.

A percentile bootstrap of the means of 2 to 4 units (the prompts a window's interval resamples) is far too narrow:
two prompts a side whose baseline means are equal gave an interval above 0 and ``ahead``, and null pairs of 2, 3
and 4 prompts a side were called ahead or behind about 34, 18 and 13 % of the time at 95 %. A verdict now needs a
two-sample permutation test of the units at the interval's level besides the interval; with fewer units than
that test can ever find significant (3 and 3 at 95 %: its least p is 2 / C(6, 3) = 0.1) there is none, and a
note says why. The same holds for the scalars' verdicts, whose units are the window's steps.
The truth is how the inputs were built."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import Diff, DiffOptions, diff_runs

TOO_FEW = "too few for a verdict at 95%"
NOT_BACKED = "interval not backed by a permutation test"


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOG_CACHE", "off")


def _write(path: Path, units: list[float], tag: str, scalars: list[dict] | None = None) -> Path:
    """One prompt a step (its own text, ``tag``'s), 4 samples around the step's prompt mean ``units[step]``."""
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s, u in enumerate(units):
            spread = (0, -0.1, 0.1, 0)
            rows = [{"prompt": f"{tag} prompt {s}", "reward": u + e, "group_id": f"{tag}{s}"} for e in spread]
            w.log_samples(s, rows, split="train")
    if scalars is not None:
        (path / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scalars))
    return path


def _diff(a: Path, b: Path, **kw: object) -> Diff:
    return diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(**{"window": 10, "boot": 500, **kw}))


def _end(d: Diff) -> dict:
    [row] = d.points.filter((d.points["metric"] == "reward") & (d.points["point"] == "end")).to_dicts()
    return row


@pytest.mark.parametrize(("ua", "ub"), [([0.5, 0.5], [0.51, 0.8]), ([0.5, 0.4, 0.6], [0.65, 0.7, 0.75])])
def test_two_or_three_prompts_a_side_give_no_verdict_and_say_why(tmp_path: Path, ua: list, ub: list) -> None:
    """The auditor's case: 2 prompts a side (the baseline's two means equal: no spread), the run's both higher:
    the interval lies above 0, but no split of 4 units can reach p <= 0.05 (2 / C(4, 2) = 0.33): no verdict (was
    ``ahead``), the interval kept, the p and the units given, a note naming the units and the least p."""
    d = _diff(_write(tmp_path / "a", ua, "a"), _write(tmp_path / "b", ub, "b"))
    [head] = d.roles.to_dicts()
    end = _end(d)
    n = len(ua)
    assert head["ci_low"] > 0 and head["verdict"] is None and end["verdict"] is None
    assert (end["baseline_units"], end["units"]) == (n, n)
    assert head["p_value"] == end["p_value"] == pytest.approx(2 / {2: 6, 3: 20}[n])
    assert set(d.points["verdict"].to_list()) == {None}
    [note] = [x for x in d.notes if TOO_FEW in x]
    assert f"{n} and {n} unit(s)" in note and f"2 / C({2 * n}, {n})" in note and "reward end" in note


def test_four_prompts_a_side_an_interval_the_permutation_test_does_not_back_is_a_tie(tmp_path: Path) -> None:
    """4 and 4 prompts can reach p = 2 / 70: a verdict is possible. The baseline's 4 prompts all at 0.5 (no spread),
    the run's 0.5, 0.6, 0.7, 0.8: the interval [0.05, 0.25] lies above 0, the permutation test gives p = 10 / 70
    (the splits whose difference reaches 0.15): tie (was ``ahead``), and a note says why."""
    d = _diff(_write(tmp_path / "a", [0.5] * 4, "a"), _write(tmp_path / "b", [0.5, 0.6, 0.7, 0.8], "b"))
    [head] = d.roles.to_dicts()
    assert head["ci_low"] > 0 and head["verdict"] == "tie"
    assert head["p_value"] == pytest.approx(10 / 70)
    assert [x for x in d.notes if NOT_BACKED in x and "reward end" in x and "p = 0.143 over 4 and 4" in x]
    assert not [x for x in d.notes if TOO_FEW in x]


def test_four_prompts_a_side_clearly_apart_keep_their_verdict(tmp_path: Path) -> None:
    """4 and 4 prompts, every one of the run's 0.5 above the baseline's: the most extreme split of 70, p = 2 / 70:
    ``ahead``, no note."""
    d = _diff(_write(tmp_path / "a", [0.4, 0.5, 0.5, 0.6], "a"), _write(tmp_path / "b", [0.9, 1.0, 1.0, 1.1], "b"))
    [head] = d.roles.to_dicts()
    assert head["verdict"] == "ahead" and head["p_value"] == pytest.approx(2 / 70)
    assert not [x for x in d.notes if TOO_FEW in x or NOT_BACKED in x]


def test_a_clear_shift_over_many_prompts_keeps_its_verdict(tmp_path: Path) -> None:
    """The auditor's shift test: 8 of 40 prompts a step, B 0.5 better from step 12: the end window (10..19, 36
    prompts a side) ``ahead``, its p the Monte Carlo's least, 1 / 2,001 (36 and 36 units: 72 together, within
    the test's reach); the start window a tie (its interval covers 0: no Monte Carlo drawn, no p)."""
    rng = np.random.default_rng(1)
    a: dict[int, list[tuple[str, float]]] = {}
    for s in range(20):
        drawn = np.random.default_rng(1000 + s).choice(40, 8, replace=False)
        a[s] = [(f"prompt number {k}", round(k / 40 + float(rng.normal(0, 0.3)), 6)) for k in drawn for _ in range(4)]
    b = {s: [(p, r + (0.5 if s >= 12 else 0.0)) for p, r in rows] for s, rows in a.items()}
    paths = []
    for name, data in (("a", a), ("b", b)):
        with runlog.RunWriter(tmp_path / name, name=name, durable=False, clock=lambda: 1.7e9) as w:
            for s, rows in data.items():
                w.log_samples(s, [{"prompt": p, "reward": r, "group_id": p} for p, r in rows], split="train")
        paths.append(tmp_path / name)
    d = _diff(*paths)
    [head] = d.roles.to_dicts()
    assert head["verdict"] == "ahead" and head["ahead_from"] == 12 and head["p_value"] == pytest.approx(1 / 2_001)
    start = d.points.filter((d.points["metric"] == "reward") & (d.points["point"] == "start")).to_dicts()[0]
    assert start["verdict"] == "tie" and start["baseline_units"] > 20 and start["p_value"] is None


def test_three_steps_of_a_scalar_give_no_verdict(tmp_path: Path) -> None:
    """Scalars: ``--window 3``, acc 0.1, 0.2, 0.3 against 0.6, 0.7, 0.8: the interval over 3 steps lies above 0,
    but 3 and 3 steps cannot reach p <= 0.05: no verdict (was ``higher``), a note; over 10 steps, ``higher``."""
    rows = [0.5] * 10
    a = _write(tmp_path / "a", rows, "a", [{"step": s, "acc": 0.1 * (s % 3 + 1)} for s in range(10)])
    b = _write(tmp_path / "b", rows, "b", [{"step": s, "acc": 0.1 * (s % 3 + 6)} for s in range(10)])
    d = _diff(a, b, keys=("acc",), window=3)
    assert d.scalars.height == 2
    for row in d.scalars.to_dicts():
        assert row["ci_low"] > 0 and row["verdict"] is None and row["p_value"] == pytest.approx(0.1)
    [note] = [x for x in d.notes if TOO_FEW in x and ": scalar: " in x]
    assert "acc start, acc end: 3 and 3 unit(s) (steps with a finite value)" in note
    wide = _diff(a, b, keys=("acc",), window=10)
    assert set(wide.scalars["verdict"].to_list()) == {"higher"}


def _brute(a: list, wa: list, b: list, wb: list) -> float:
    """Every split of the units into sets of the runs' sizes: the share whose |difference of weighted means|
    reaches the observed one (within 1e-12)."""
    x, w = np.array(a + b, dtype=float), np.array(wa + wb, dtype=float)
    n = len(x)

    def gap(ia: tuple[int, ...]) -> float:
        m = np.zeros(n, dtype=bool)
        m[list(ia)] = True
        return abs(np.sum(w[~m] * x[~m]) / np.sum(w[~m]) - np.sum(w[m] * x[m]) / np.sum(w[m]))

    obs = gap(tuple(range(len(a))))
    gaps = [gap(ia) for ia in itertools.combinations(range(n), len(a))]
    return float(np.mean([g >= obs - 1e-12 for g in gaps]))


def test_permutation_p_is_exact_weighted_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact test against a brute force over every split (units of unequal weights, unequal sizes); the least
    p (2 / C(2n, n) with equal sizes, 1 / C otherwise); the seeded Monte Carlo (both of its ways to draw a subset)
    near the exact p where the splits are forced beyond the exact route, and the same twice."""
    from runlog.analysis.diff import bootstrap as bs

    cases = [
        ([0.1, 0.4, 0.35], [1, 3, 2], [0.5, 0.2, 0.9, 0.7], [4, 1, 2, 2]),
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], [2.5, 3.5, 5.0, 6.0, 7.0], [1, 1, 1, 1, 1]),
        ([12345678.9, 12345679.0, 12345678.8], [1, 1, 1], [12345679.3, 12345679.2, 12345679.4], [1, 1, 1]),
    ]
    rng = np.random.default_rng(0)
    for a, wa, b, wb in cases:
        p = bs.permutation_p(np.array(a), np.array(wa, float), np.array(b), np.array(wb, float), rng)
        assert p == pytest.approx(_brute(a, wa, b, wb), abs=1e-12)
    assert bs.least_permutation_p(3, 3) == pytest.approx(0.1) and bs.least_permutation_p(4, 4) == pytest.approx(2 / 70)
    assert bs.least_permutation_p(3, 4) == pytest.approx(1 / 35)
    big_a, big_b = np.random.default_rng(1).normal(0, 1, 30), np.random.default_rng(2).normal(0.6, 1, 9)
    exact = bs.permutation_p(big_a, np.ones(30), big_b, np.ones(9), np.random.default_rng(0))  # C(39, 9): Monte Carlo
    monkeypatch.setattr(bs, "EXACT_SPLITS", 10)
    small_a, small_b = np.array(cases[1][0]), np.array(cases[1][2])
    for x, y in ((small_a, small_b), (big_a[:6], big_b[:3])):  # k^2 > n: random keys; k^2 <= n: draws, no repeat
        mc = bs.permutation_p(x, np.ones(len(x)), y, np.ones(len(y)), np.random.default_rng(5), 20_000)
        monkeypatch.setattr(bs, "EXACT_SPLITS", 1 << 30)
        truth = bs.permutation_p(x, np.ones(len(x)), y, np.ones(len(y)), rng)
        monkeypatch.setattr(bs, "EXACT_SPLITS", 10)
        assert mc == pytest.approx(truth, abs=0.015)
    twice = bs.permutation_p(big_a, np.ones(30), big_b, np.ones(9), np.random.default_rng(0))
    assert exact is not None and exact == twice
    # Many units on each side: not run (the bootstrap alone decides there).
    assert bs.permutation_p(np.zeros(300), np.ones(300), np.ones(300), np.ones(300), rng) is None


def test_the_window_cache_keeps_the_units_and_an_entry_without_them_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A diff answered from its kept windows gives the same p and verdicts as one computed afresh (the units are
    kept); an entry without the units (format 5's columns) is said unreadable and computed again, never read as
    a side without units."""
    import polars as pl

    from runlog.analysis.diff import window_cache

    a = _write(tmp_path / "a", [0.5] * 4, "a")
    b = _write(tmp_path / "b", [0.5, 0.6, 0.7, 0.8], "b")
    past = time.time() - 3600  # files written seconds ago are not kept (a writer may be at work on them)
    for f in tmp_path.rglob("*"):
        os.utime(f, (past, past))
    cold = _diff(a, b)
    monkeypatch.delenv("RUNLOG_CACHE")
    _diff(a, b)  # computes and keeps the windows
    entries = sorted(Path(os.environ["RUNLOG_CACHE_DIR"]).rglob("window-*.arrow"))
    assert len(entries) == 2
    warm = _diff(a, b)
    for name in ("roles", "points"):
        assert warm.frames()[name].equals(cold.frames()[name]), name
    assert warm.roles["verdict"][0] == "tie" and warm.roles["p_value"][0] == pytest.approx(10 / 70)
    for entry in entries:  # as format 5 kept them: no units, no weights
        pl.read_ipc(entry).drop("units", "weights").write_ipc(entry)
    window_cache._reported.clear()
    again = _diff(a, b)
    for name in ("roles", "points"):
        assert again.frames()[name].equals(cold.frames()[name]), name
