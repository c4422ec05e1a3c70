"""What makes ``runlog diff`` cheap does not change what it says: the per-step figures from the partial cache
equal the lean query's (and summarize's), and the bootstrap's two routes (by value for columns of few values,
by a count matrix otherwise) draw replicates with the distribution of resampling the units one by one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl
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


def _aged(path: Path, seconds: float = 3600) -> None:
    """Files written seconds ago are not cached (a writer may be at work on them): date them back."""
    past = time.time() - seconds
    for f in path.rglob("*"):
        os.utime(f, (past, past))


def _same(a, b) -> None:  # noqa: ANN001
    for name in ("roles", "points", "paired"):
        assert a.frames()[name].equals(b.frames()[name]), name


@pytest.fixture
def flink_pair(tmp_path: Path) -> tuple[Path, Path]:
    from flink_gen import write_flink_run

    a, b = tmp_path / "A", tmp_path / "B"
    write_flink_run(a, steps=12, prompts=3, group_size=4, seed=5)
    write_flink_run(b, steps=12, prompts=3, group_size=4, seed=5)  # the same prompts: pairs
    _aged(a)
    _aged(b)
    return a, b


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each side's windows came from the cache (True) or were read (False)."""
    from runlog.analysis.diff import window_cache

    calls: list[bool] = []
    real = window_cache.restore

    def spy(side, path, opts):  # noqa: ANN001, ANN202
        out = real(side, path, opts)
        calls.append(out)
        return out

    monkeypatch.setattr(window_cache, "restore", spy)
    return calls


@pytest.mark.parametrize("layout", ["runlog", "flink"])
def test_kept_windows_give_the_numbers_of_a_fresh_read(
    tmp_path: Path, layout: str, flink_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_diff import LIFT, write_run

    if layout == "flink":
        a, b = flink_pair
    else:
        a, b = write_run(tmp_path / "rA", seed=1, steps=30), write_run(tmp_path / "rB", seed=2, steps=30, lift=LIFT)
        _aged(a)
        _aged(b)
    opts = DiffOptions(window=3, seed=3)
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    cold = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    monkeypatch.delenv("RUNLOG_CACHE")
    calls = _spy(monkeypatch)
    first = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    again = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    assert calls == [False, False, True, True]
    _same(first, cold)
    _same(again, cold)
    assert again.paired.height > 0 and again.points.height > 0
    # Another seed, another stream: not the kept replicates (the ends of the intervals move).
    other = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=3, seed=4))
    assert calls[-2:] == [False, False]
    assert not other.points["ci_low"].equals(cold.points["ci_low"])
    # The runs swapped: each run's stream is its place's, so nothing kept is used for the other place.
    diff_runs([open_run(b), open_run(a)], ["B", "A"], opts)
    assert calls[-2:] == [False, False]


def test_a_window_file_rewritten_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_diff import LIFT, write_run

    a, b = write_run(tmp_path / "A", seed=1, steps=30), write_run(tmp_path / "B", seed=2, steps=30, lift=LIFT)
    _aged(a)
    _aged(b)
    opts = DiffOptions(window=3, seed=3)
    calls = _spy(monkeypatch)
    diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    # B's last step rewritten in place with another run's rows (an end-window step): its entry no longer fits.
    c = write_run(tmp_path / "C", seed=9, steps=30)
    last = sorted((b / "samples").rglob("*.parquet"))[-1]
    twin = c / last.relative_to(b)
    last.write_bytes(twin.read_bytes())
    _aged(b, 1800)
    warm = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    assert calls[-2:] == [True, False]
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    cold = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    _same(warm, cold)


def test_windows_of_files_just_written_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_diff import write_run

    a, b = write_run(tmp_path / "A", seed=1, steps=12), write_run(tmp_path / "B", seed=2, steps=12)
    calls = _spy(monkeypatch)
    for _ in range(2):
        diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=3))
    assert calls == [False, False, False, False]


def test_an_unreadable_entry_is_said_once_and_computed_again(
    flink_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runlog.analysis.diff import window_cache

    a, b = flink_pair
    opts = DiffOptions(window=3, seed=3)
    first = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    entries = sorted(Path(os.environ["RUNLOG_CACHE_DIR"]).rglob("window-*.arrow"))
    assert len(entries) == 2
    for e in entries:
        e.write_bytes(b"\x1b[31mnot arrow")
    window_cache._reported.clear()
    calls = _spy(monkeypatch)
    again = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    assert calls == [False, False]
    _same(again, first)
    err = capsys.readouterr().err
    assert err.count("the diff cache entry") == 2 and "\x1b" not in err
    diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)  # rewritten whole by the run before
    assert calls[-2:] == [True, True]
    assert capsys.readouterr().err.count("the diff cache entry") == 0
    # Said once per entry, however often it is met (a watch loop, a report and a plot of one diff).
    entries[0].write_bytes(b"torn")
    window_cache._reported.clear()
    side = type("S", (), {"windows": set()})()
    assert not window_cache.restore(side, entries[0], opts) and not window_cache.restore(side, entries[0], opts)
    assert capsys.readouterr().err.count("the diff cache entry") == 1


def test_an_entry_with_other_windows_or_replicates_is_not_used(
    flink_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry under the right name whose contents do not fit (a window missing, fewer replicates: a copy
    from elsewhere, bit rot) is said and computed again, never used nor a traceback."""
    a, b = flink_pair
    opts = DiffOptions(window=3, seed=3)
    first = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    [ea, eb] = sorted(Path(os.environ["RUNLOG_CACHE_DIR"]).rglob("window-*.arrow"), key=os.path.getmtime)
    frame = pl.read_ipc(ea)
    boots = frame.filter(pl.col("kind") == "boot")
    pl.concat([boots.head(1), frame.filter(pl.col("kind") == "prompt")]).write_ipc(ea)  # windows missing
    frame.with_columns(pl.col("reps").list.head(10)).write_ipc(eb)  # 10 replicates, not 1,000
    calls = _spy(monkeypatch)
    again = diff_runs([open_run(a), open_run(b)], ["A", "B"], opts)
    assert calls == [False, False]
    _same(again, first)
    err = capsys.readouterr().err
    assert "its windows are not the diff's" in err and "replicates other than the 1000" in err


def test_windows_read_without_a_file_that_failed_are_not_kept_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:  # noqa: ANN001
    """A window file whose text column is corrupt (the footer intact: discovery finds it readable) is left out
    of the windows and said; what was computed without it is not kept under the name of the files as listed,
    so every later diff says it again (and its exit code stays 1)."""
    import pyarrow.parquet as pq

    from flink_gen import write_flink_run

    a, b = tmp_path / "A", tmp_path / "B"
    write_flink_run(a, steps=12, prompts=3, group_size=4, seed=5)
    write_flink_run(b, steps=12, prompts=3, group_size=4, seed=5)
    bad = sorted((b / "flink_logs").glob("*train_11*.parquet"))[0]
    rg = pq.ParquetFile(bad).metadata.row_group(0)
    col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == "trajectory")
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(bad.read_bytes())
    for i in range(start + 20, start + col.total_compressed_size - 4):
        data[i] ^= 0x5A
    bad.write_bytes(bytes(data))
    _aged(a)
    _aged(b)
    argv = ["diff", str(a), str(b), "--window", "3", "--format", "json"]
    for _ in range(3):
        r = cli(*argv)
        assert r.exit_code == 1 and "corrupt data" in r.stderr, r.stderr
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    cold = cli(*argv)
    assert cold.exit_code == 1 and cold.stdout == r.stdout


def test_at_most_keep_entries_per_run(flink_pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from runlog.analysis.diff import window_cache

    monkeypatch.setattr(window_cache, "KEEP", 3)
    a, b = flink_pair
    for seed in range(5):
        diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=3, seed=seed))
        time.sleep(0.01)  # distinct modification times: the oldest are the first seeds'
    counts = [len(list(d.glob("window-*.arrow"))) for d in Path(os.environ["RUNLOG_CACHE_DIR"]).glob("partials/*")]
    assert sorted(counts) == [3, 3]  # one folder per run, each with its 3 newest entries
    calls = _spy(monkeypatch)
    for seed in (4, 3, 2, 1):
        diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=3, seed=seed))
    assert calls == [True, True, True, True, True, True, False, False]
