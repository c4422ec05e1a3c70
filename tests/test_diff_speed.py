"""What makes ``runlog diff`` cheap does not change what it says: the per-step figures from the partial cache
equal the lean query's (and summarize's), and the bootstrap's two routes (by value for columns of few values,
by a count matrix otherwise) draw replicates with the distribution of resampling the units one by one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from runlog import open_run
from runlog.analysis.diff import DiffOptions, bootstrap_means, diff_runs, sides
from runlog.analysis.diff import bootstrap as B
from runlog.analysis.summarize import summarize


@pytest.mark.parametrize("layout", ["runlog", "flink"])
def test_per_step_figures_from_the_cache_are_the_cold_ones(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flink_gen import write_flink_run
    from test_diff import write_run

    if layout == "flink":
        path = tmp_path / "flink"
        write_flink_run(path, steps=12, prompts=3, group_size=4, seed=5)
    else:
        path = write_run(tmp_path / "A", seed=1, steps=12)
    past = time.time() - 3600  # files written seconds ago are not cached (a writer may be at work on them)
    for f in path.rglob("*"):
        os.utime(f, (past, past))
    opts = DiffOptions(window=3, seed=3)
    monkeypatch.setenv("RUNLOG_CACHE", "off")  # the lean query
    cold = diff_runs([open_run(path), open_run(path)], ["A", "B"], opts)
    monkeypatch.delenv("RUNLOG_CACHE")
    if layout == "flink":
        summarize(open_run(path), ["role"])  # keeps the per-step partials
    # else: the diff itself reads and keeps them (its first side), and the second side finds them
    calls: list[bool] = []
    real = sides._from_cache

    def spy(side, filters):  # noqa: ANN001, ANN202
        out = real(side, filters)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(sides, "_from_cache", spy)
    warm = diff_runs([open_run(path), open_run(path)], ["A", "B"], opts)
    assert calls == [True, True]
    for mine, theirs in zip(warm.per_step, cold.per_step, strict=True):
        assert mine.columns == theirs.columns and mine.height == theirs.height > 0
        for col in mine.columns:
            if mine[col].dtype.is_float():
                assert np.allclose(mine[col].to_numpy(), theirs[col].to_numpy(), equal_nan=True, rtol=1e-12), col
            else:
                assert mine[col].to_list() == theirs[col].to_list(), col
    for name in ("roles", "points", "paired"):
        assert warm.frames()[name].equals(cold.frames()[name]), name


def _naive(col: np.ndarray, boot: int, seed: int) -> np.ndarray:
    """The bootstrap by definition: draw n units with replacement, the mean of the valid values drawn."""
    rng = np.random.default_rng(seed)
    drawn = col[rng.integers(0, len(col), size=(boot, len(col)))]
    with np.errstate(invalid="ignore"):
        return np.nanmean(drawn, axis=1)


@pytest.mark.parametrize("kind", ["binary", "few", "continuous"])
def test_both_routes_resample_units(kind: str) -> None:
    rng = np.random.default_rng(11)
    n = 200
    if kind == "binary":
        col = (rng.random(n) < 0.3).astype(float)
    elif kind == "few":
        col = rng.integers(0, 5, n) / 4.0
    else:
        col = rng.normal(0.5, 0.2, n)
    col[rng.random(n) < 0.1] = np.nan  # invalid units are drawn, and left out of the mean
    assert (B._distinct(col) is None) == (kind == "continuous")
    boot = 20_000
    ours = bootstrap_means(col, boot, np.random.default_rng(1))[:, 0]
    ref = _naive(col, boot, 2)
    # Same distribution: mean, spread and the 95 % interval's ends agree to Monte Carlo error.
    se = np.nanstd(ref)
    assert abs(np.nanmean(ours) - np.nanmean(ref)) < 0.05 * se
    assert np.nanstd(ours) == pytest.approx(se, rel=0.05)
    assert np.allclose(np.nanpercentile(ours, [2.5, 97.5]), np.nanpercentile(ref, [2.5, 97.5]), atol=0.1 * se)


def test_the_routes_are_seeded_and_mix_in_one_call() -> None:
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.normal(size=300), (rng.random(300) < 0.5).astype(float), np.full(300, np.nan)])
    a = bootstrap_means(x, 500, np.random.default_rng(9))
    b = bootstrap_means(x, 500, np.random.default_rng(9))
    assert a.shape == (500, 3) and np.array_equal(a, b, equal_nan=True)
    assert np.isnan(a[:, 2]).all()  # no valid value: no replicate
    assert set(np.unique(a[:, 1] * 300).round(6)) <= set(np.arange(301.0))  # a mean of 300 draws of 0 and 1


def test_chunks_do_not_change_the_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count matrix is built in chunks; where they fall changes the draws' layout, not their law: each
    chunk's replicates are whole (n draws each), so the replicates of a small chunk size agree in law."""
    x = np.random.default_rng(3).normal(size=(500, 2))
    big = bootstrap_means(x, 4000, np.random.default_rng(1))
    monkeypatch.setattr(B, "CHUNK_CELLS", 700)  # one replicate per chunk
    small = bootstrap_means(x, 4000, np.random.default_rng(1))
    assert np.allclose(big.std(axis=0), small.std(axis=0), rtol=0.1)
    assert np.allclose(big.mean(axis=0), small.mean(axis=0), atol=0.01)


def test_each_column_counts_its_own_valid_draws() -> None:
    """Columns with different invalid units share the count matrix, each divided by its own valid draws: a
    column whose valid values are all 1 (or 3) has replicates of exactly 1 (or 3), whatever the other's NaN."""
    n = 200
    one = np.where(np.arange(n) < 120, 1.0, np.nan)
    three = np.where(np.arange(n) >= 50, 3.0, np.nan) + np.linspace(0, 1e-9, n)  # many values: by unit
    rest = np.random.default_rng(2).normal(size=n)  # no invalid unit
    reps = bootstrap_means(np.column_stack([one + np.linspace(0, 1e-9, n), three, rest]), 300, np.random.default_rng(4))
    assert np.allclose(reps[:, 0], 1.0, atol=1e-8) and np.allclose(reps[:, 1], 3.0, atol=1e-8)
    assert np.isfinite(reps).all() and reps[:, 2].std() > 0
