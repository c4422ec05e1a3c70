"""Fleets: exact mergeable partials (Chan), ``summarize_fleet`` against per-run ``summarize``, the Ray engine
against the local one, big runs split into step chunks, location handling, and the fleet CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from runlog import open_run
from runlog.analysis import summarize as S
from runlog.analysis import texts as M
from runlog.errors import UsageError
from runlog.fleet import (
    plan_units,
    read_runs_file,
    resolve_locations,
    run_names,
    summarize_fleet,
)
from runlog.fleet.engine import LocalEngine, get_engine
from runlog.writer import RunWriter

from conftest import REALDATA, SAMPLE_RUNS

# A run read in chunks of its steps, tabled by run (and not step): its medians are those of several parts.
CHUNKED_MEDIAN_NOTE = (
    "reward_median is left empty for groups whose rows were summarised in more than one part (medians do not "
    "merge): a run was read in several parts (chunks of its steps); add --by step to get them"
)

NAN = float("nan")
SAMPLE_NAMES = ["debate_grpo", "flink_mixed", "jaxarc", "damaged"]
REAL_FILES = ["nemo_gym_tool_call_multireward_rollouts.jsonl", "verifiers_math_python_gpt5nano_results.jsonl"]
BYS = [["role"], ["role", "step"], ["step"], [], ["split", "role"]]
SUMMARY_COLUMNS = [*S.REWARD_STATS, *S.KL_STATS, "zero_adv_frac", "exception_rate"]


def _all_runs() -> list[Path]:
    runs = [SAMPLE_RUNS / n for n in SAMPLE_NAMES]
    runs += [REALDATA / f for f in REAL_FILES if (REALDATA / f).exists()]
    return runs


# ---------------------------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------------------------


def _same(a, b, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return a == b
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return a == b


def assert_close(actual: pl.DataFrame, expected: pl.DataFrame, *, skip=(), rel: float = 1e-9, what: str = "") -> None:
    """Same columns (in expected's order), same rows in order; floats within ``rel``; NaN == NaN, None == None."""
    assert actual.columns == expected.columns, f"{what}: columns {actual.columns} != {expected.columns}"
    assert actual.height == expected.height, f"{what}: {actual.height} rows != {expected.height}\n{actual}\n{expected}"
    for col in expected.columns:
        if col in skip:
            continue
        got, want = actual[col].to_list(), expected[col].to_list()
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert _same(g, w, rel), f"{what}: column {col!r} row {i}: {g!r} != {w!r}"


def _cells_close(a: str, b: str, rel: float) -> bool:
    if a == b:
        return True
    try:
        return _same(float(a), float(b), rel)
    except ValueError:
        return False


def assert_csv_close(actual: str, expected: str, rel: float = 1e-12) -> None:
    """CSV texts equal cell by cell, numbers within ``rel`` (polars' multi-threaded aggregations may differ in
    the last bit from one call to the next, so engines agree to rounding, not bit for bit)."""
    got, want = list(csv.reader(io.StringIO(actual))), list(csv.reader(io.StringIO(expected)))
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert len(g) == len(w) and all(_cells_close(x, y, rel) for x, y in zip(g, w, strict=True)), (i, g, w)


def _key_tuples(frame: pl.DataFrame, keys: list[str]) -> list[tuple]:
    return [tuple(r) for r in frame.select(keys).iter_rows()] if keys else [() for _ in range(frame.height)]


# ---------------------------------------------------------------------------------------------------------
# Synthetic fleet (runlog's own writer)
# ---------------------------------------------------------------------------------------------------------


def _rows(rng, step, roles, n, nan_frac, *, all_nan_role=None, null_frac=0.0, exceptions=False):
    rows = []
    for i in range(n):
        row = {
            "reward": float(rng.random()),
            "group_id": f"s{step}-g{i // 4}",
            "prompt": f"prompt {i // 4}",
            "completion": " ".join(rng.choice(["<think>a</think>", "b", "c", "<answer>d</answer>"], size=4)),
            "env_name": "math" if i % 3 else "code",
            "reward_components": {"fmt": float(rng.integers(0, 2)), "len": float(rng.random())},
            "exception": "Traceback: boom" if exceptions and i % 5 == 0 else None,
        }
        for role in roles:
            value = float(rng.integers(0, 3)) / 2  # few distinct values: some prompt groups are zero-advantage
            if role == all_nan_role or rng.random() < nan_frac:
                value = NAN
            elif rng.random() < null_frac:
                value = None
            row[f"{role}_reward"] = value
            row[f"{role}_kl"] = float(rng.random() * 0.1)
        rows.append(row)
    return rows


def write_run(root: Path, seed: int, roles, *, steps=4, n=12, nan_frac=0.15, eval_steps=(), processes=1, **kw):
    """A native run; with ``processes=2`` each step is two shards and every prompt group spans both."""
    rng = np.random.default_rng(seed)
    writers = [
        RunWriter(root, name=f"seed{seed}", roles=list(roles), process_index=p, run_id=f"r{seed}", durable=False)
        for p in range(processes)
    ]
    for step in range(steps):
        for split in ["train", *(["eval"] if step in eval_steps else [])]:
            rows = _rows(rng, step, roles, n, nan_frac, **kw)
            for p, w in enumerate(writers):
                w.log_samples(step, rows[p::processes], split=split)
        writers[0].log_scalars(step, {"train/loss": 1.0 / (step + 1)})
    for w in writers:
        w.close()
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """7 runs (6 written by RunWriter with different seeds, roles, NaN/null rewards, shards, an eval split;
    one Flink copy), beside a README, a stray text file and a hidden folder that are not runs."""
    root = tmp_path_factory.mktemp("fleet")
    write_run(root / "seed0", 0, ["solver", "verifier"], eval_steps=(0, 2))
    write_run(root / "seed1", 1, ["solver", "verifier"], nan_frac=0.3)
    write_run(root / "seed2", 2, ["solver", "verifier", "judge"])
    write_run(root / "seed3", 3, ["solver", "verifier"], steps=6, n=16, processes=2)
    write_run(root / "seed4", 4, ["solver", "verifier"], all_nan_role="verifier", null_frac=0.2, exceptions=True)
    write_run(root / "seed5", 5, ["solver"], n=8, null_frac=0.3)
    shutil.copytree(SAMPLE_RUNS / "flink_mixed", root / "zflink")
    (root / "README.md").write_text("# these are runs\n")
    (root / "notes.txt").write_text("not a run\n")
    shutil.copytree(root / "seed0", root / ".hidden")
    return root


FLEET_RUNS = ["seed0", "seed1", "seed2", "seed3", "seed4", "seed5", "zflink"]
ZFLINK_HINT = f"run(s) zflink: {S.PROMPT_GROUPS_NOTE}"  # as `runlog summarize` of flink_mixed says it


def _locs(fleet: Path) -> list[str]:
    return [str(fleet / n) for n in FLEET_RUNS]


# ---------------------------------------------------------------------------------------------------------
# 1. Partials are exact
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _all_runs(), ids=lambda p: p.name)
def test_whole_run_partials_combine_to_summarize(path):
    run = open_run(path)
    for by in BYS:
        expected = S.summarize(run, by, split_key=False)
        combined, notes = S.combine_partials(S.summarize_partials(run, by), by)
        assert notes == []
        assert_close(combined.select(expected.columns), expected, what=f"{path.name} by {by}")


def _halves(run):
    """Alternate readable sample files (so that most groups have rows in both halves); unreadable ones go to
    the first half."""
    samples = sorted((f for f in run.files if f.kind == "samples" and f.readable), key=lambda f: f.path)
    broken = [f for f in run.files if f.kind == "samples" and not f.readable]
    return [S._sub_run(run, broken + samples[0::2]), S._sub_run(run, samples[1::2])]


@pytest.mark.parametrize("name", ["debate_grpo", "flink_mixed", "damaged"])
def test_two_halves_combine_to_the_whole_run(name):
    run = open_run(SAMPLE_RUNS / name)
    comps = run.component_names()
    halves = _halves(run)
    for by in BYS:
        expected = S.summarize(run, by, split_key=False)
        parts = [S.summarize_partials(h, by, components=comps) for h in halves]
        combined, notes = S.combine_partials(pl.concat(parts, how="diagonal_relaxed"), by)
        combined = combined.select(expected.columns)
        skip = ["reward_median"] + ([] if "step" in by else ["zero_adv_frac"])
        assert_close(combined, expected, skip=skip, what=f"{name} halves by {by}")
        # Groups with valid rewards in both halves lose their median; the others keep it exactly.
        role_rows = [p.filter(pl.col("level") == "role") if "level" in p.columns else p for p in parts]
        with_rewards = [set(_key_tuples(p.filter(pl.col("reward_n") > 0), by)) for p in role_rows]
        both = with_rewards[0] & with_rewards[1]
        for key, got, want in zip(
            _key_tuples(combined, by), combined["reward_median"], expected["reward_median"], strict=True
        ):
            assert _same(got, None if key in both else want), (name, by, key, got, want)
        assert notes == ([S.MEDIAN_NOTE] if both else []), (name, by)
        if by in (["role"], []):
            assert both, f"{name} by {by}: the halves were meant to overlap"


def test_zero_adv_frac_merges_exactly_when_groups_do_not_span_files():
    """The sample runs keep each prompt group inside one file, so group counts add up exactly across halves
    whatever the keys."""
    for name in ("debate_grpo", "flink_mixed"):
        run = open_run(SAMPLE_RUNS / name)
        comps = run.component_names()
        for by in BYS:
            expected = S.summarize(run, by, split_key=False)
            parts = [S.summarize_partials(h, by, components=comps) for h in _halves(run)]
            combined, _ = S.combine_partials(pl.concat(parts, how="diagonal_relaxed"), by)
            assert_close(combined.select(by + ["zero_adv_frac"]), expected.select(by + ["zero_adv_frac"]))


def test_one_part_per_file_combines_to_the_whole_run():
    run = open_run(SAMPLE_RUNS / "debate_grpo")
    comps = run.component_names()
    samples = [f for f in run.files if f.kind == "samples"]
    for by in (["role"], ["split", "role"]):
        parts = [S.summarize_partials(S._sub_run(run, [f]), by, components=comps) for f in samples]
        combined, notes = S.combine_partials(pl.concat(parts, how="diagonal_relaxed"), by)
        expected = S.summarize(run, by, split_key=False)
        assert_close(combined.select(expected.columns), expected, skip=["reward_median"], what=f"per file by {by}")
        assert combined["reward_median"].null_count() == combined.height and notes == [S.MEDIAN_NOTE]


def _partial_row(group: str, values: np.ndarray, kl: np.ndarray) -> dict:
    """A hand-made partial (the columns ``summarize_partials`` produces) of one part of one group."""

    def moments(name, a):
        n = len(a)
        mean = float(a.mean()) if n else None
        return {
            f"{name}_n": n,
            f"{name}_mean": mean,
            f"{name}_m2": float(((a - mean) ** 2).sum()) if n else None,
            f"{name}_min": float(a.min()) if n else None,
            f"{name}_max": float(a.max()) if n else None,
        }

    return {
        "role": group,
        **moments("reward", values),
        "reward_median": float(np.median(values)) if len(values) else None,
        "reward_nan": 1,
        "reward_null": 0,
        **moments("kl", kl),
        "kl_nan": 2,
        "kl_null": 1,
        "exception_sum": 0.0,
        "exception_n": len(values),
        "rows": len(values) + 1,
        "component/c_n": len(values),
        "component/c_mean": float(values.mean()) if len(values) else None,
        "component/c_nan": 1,
        "component/c_null": 0,
        "zero_groups": 1,
        "groups": 2,
        "parts": 1,
    }


def test_chan_merge_matches_numpy_on_many_small_parts():
    rng = np.random.default_rng(7)
    rows, pooled, pooled_kl = [], {"a": [], "b": [], "c": []}, {"a": [], "b": [], "c": []}
    for i in range(120):
        group = "abc"[i % 3]
        n = int(rng.choice([0, 0, 1, 1, 2, 3, 5, 8]))
        # A large offset: naive sums of squares would lose every digit of the variance here.
        values = 1e4 + rng.normal(0.0, 1.0 + i % 4, size=n)
        kl = rng.random(n) * 0.01
        rows.append(_partial_row(group, values, kl))
        pooled[group] += values.tolist()
        pooled_kl[group] += kl.tolist()
    # Group c: only parts with n=0 or n=1 (a part with one value has M2 = 0).
    rows += [_partial_row("c", np.array([]), np.array([])), _partial_row("c", np.array([3.0]), np.array([0.5]))]
    pooled["c"] += [3.0]
    pooled_kl["c"] += [0.5]
    rows += [_partial_row("d", np.array([]), np.array([])), _partial_row("e", np.array([2.5]), np.array([0.1]))]
    frame = pl.DataFrame(rows)
    out, notes = S.combine_partials(frame, ["role"])
    assert out["role"].to_list() == ["a", "b", "c", "d", "e"] and notes == [S.MEDIAN_NOTE]
    for g in "abc":
        row = out.filter(pl.col("role") == g).row(0, named=True)
        v, k = np.array(pooled[g]), np.array(pooled_kl[g])
        assert row["reward_count"] == len(v) and row["kl_count"] == len(k)
        assert math.isclose(row["reward_mean"], v.mean(), rel_tol=1e-12)
        assert math.isclose(row["reward_std"], v.std(ddof=1), rel_tol=1e-9), (g, row["reward_std"], v.std(ddof=1))
        assert math.isclose(row["kl_mean"], k.mean(), rel_tol=1e-12)
        assert math.isclose(row["kl_std"], k.std(ddof=1), rel_tol=1e-9)
        assert row["reward_min"] == v.min() and row["reward_max"] == v.max()
        assert row["reward_median"] is None
        assert math.isclose(row["component/c_mean"], v.mean(), rel_tol=1e-12)
        assert row["reward_nan"] == sum(r["role"] == g for r in rows)
        assert (row["component/c_count"], row["component/c_nan"], row["component/c_null"]) == (
            len(v),
            row["reward_nan"],
            0,
        )
        assert row["kl_nan"] == 2 * row["reward_nan"] and row["kl_null"] == row["reward_nan"]
        assert row["zero_adv_frac"] == 0.5
    d = out.filter(pl.col("role") == "d").row(0, named=True)
    assert d["reward_count"] == 0 and d["reward_mean"] is None and d["reward_std"] is None
    assert d["reward_median"] is None and d["component/c_mean"] is None
    e = out.filter(pl.col("role") == "e").row(0, named=True)
    assert (e["reward_count"], e["reward_mean"], e["reward_std"], e["reward_median"]) == (1, 2.5, None, 2.5)
    # No keys: everything pooled into one row.
    flat, _ = S.combine_partials(frame, [])
    v = np.array([x for g in "abce" for x in pooled.get(g, [])] + [2.5])
    assert flat.height == 1 and flat["reward_count"][0] == len(v)
    assert math.isclose(flat["reward_mean"][0], v.mean(), rel_tol=1e-12)
    assert math.isclose(flat["reward_std"][0], v.std(ddof=1), rel_tol=1e-9)
    # The merge does not depend on the order of the parts (up to rounding).
    shuffled, _ = S.combine_partials(frame.sample(fraction=1.0, shuffle=True, seed=3), ["role"])
    assert_close(shuffled, out, rel=1e-9)


# ---------------------------------------------------------------------------------------------------------
# 2. summarize_fleet against summarize, run by run and pooled
# ---------------------------------------------------------------------------------------------------------


def _per_run_check(result, fleet, inner, names=FLEET_RUNS, skip=()):
    frame = result.frame
    assert frame.columns[0] == "run"
    assert sorted(set(frame["run"].to_list())) == sorted(names)
    keys = [c for c in frame.columns if c in S.KEYS]  # the fleet's keys (split added when it has several)
    for name in names:
        expected = S.summarize(open_run(fleet / name), keys, split_key=False)
        rows = frame.filter(pl.col("run") == name).drop("run")
        assert_close(rows.select(expected.columns), expected, skip=skip, what=f"{name} by {inner}")
        _others_components(rows, expected, name)


def _others_components(rows: pl.DataFrame, expected: pl.DataFrame, name: str) -> None:
    """Another run's components in ``rows`` (one run's rows of a fleet): this run has no value of them, and every
    sample of its rows is without them (null), as a run whose early steps lack a component counts those steps'
    samples."""
    extra = [c for c in rows.columns if c not in expected.columns]
    assert all(rows[c].null_count() == rows.height for c in extra if c.endswith("_mean")), (name, extra)
    assert all((rows[c] == 0).all() for c in extra if c.endswith(("_count", "_nan"))), (name, extra)
    for c in (c for c in extra if c.endswith("_null")):
        samples = rows["reward_count"] + rows["reward_nan"] + rows["reward_null"]
        assert (rows[c] == samples).all() if "role" not in rows.columns else rows[c].min() >= 1, (name, c)
    assert all(c.endswith(("_mean", "_count", "_nan", "_null")) for c in extra), (name, extra)


@pytest.mark.parametrize("inner", [["role"], ["role", "step"], ["split"], ["split", "role"], []])
def test_fleet_by_run_equals_each_run_alone(fleet, inner):
    result = summarize_fleet(_locs(fleet), ["run", *inner])
    # The Flink copy has no group_id: the --prompt-groups hint that its summary alone gives, naming it.
    assert result.failures == [] and result.notes == [ZFLINK_HINT] and result.units == len(FLEET_RUNS)
    # seed0 and the Flink copy have an eval split: split is a key of the fleet's rows (never pooled silently)
    split = [] if "split" in inner else ["split"]
    assert result.frame.columns[: 1 + len(split) + len(inner)] == ["run", *split, *inner]
    _per_run_check(result, fleet, inner)


def test_fleet_pooled_by_role_matches_numpy(fleet):
    # Both splits named: pooled on purpose.
    result = summarize_fleet(_locs(fleet), ["role"], filters=S.Filters(splits=["train", "eval"]))
    frames = []
    for name in FLEET_RUNS:
        run = open_run(fleet / name)
        frames.append(run.numeric({}, []).select("role", "reward", "kl").collect())
    rows = pl.concat(frames, how="vertical_relaxed")
    out = result.frame
    assert out.columns[0] == "role" and "run" not in out.columns
    assert out["role"].to_list() == ["judge", "solver", "verifier", None]
    for role in out["role"].to_list():
        mine = rows.filter(pl.col("role").is_null() if role is None else pl.col("role") == role)
        r = mine["reward"].to_numpy()
        valid = r[~np.isnan(r)]
        k = mine["kl"].drop_nulls().drop_nans().to_numpy()
        got = out.filter(pl.col("role").is_null() if role is None else pl.col("role") == role).row(0, named=True)
        assert got["reward_count"] == len(valid) and got["reward_nan"] == int(mine["reward"].is_nan().sum())
        assert got["reward_null"] == mine["reward"].null_count()
        assert math.isclose(got["reward_mean"], valid.mean(), rel_tol=1e-9)
        assert math.isclose(got["reward_std"], valid.std(ddof=1), rel_tol=1e-9)
        assert got["reward_min"] == valid.min() and got["reward_max"] == valid.max()
        assert got["kl_count"] == len(k)
        if len(k):
            assert math.isclose(got["kl_mean"], k.mean(), rel_tol=1e-9)
            assert math.isclose(got["kl_std"], k.std(ddof=1), rel_tol=1e-9)
        # The null role (Flink v0 rows) is in the Flink copy only: one part holds it, its median stays.
        if role is None:
            assert math.isclose(got["reward_median"], float(np.median(valid)), rel_tol=1e-12)
        else:
            assert got["reward_median"] is None
    pooled = f"statistics pooled over the {len(FLEET_RUNS)} runs: add --by run for one row per run"
    assert result.notes == [pooled, S.MEDIAN_NOTE, ZFLINK_HINT]


def test_fleet_with_filters_equals_each_run_alone(fleet):
    filters = S.Filters(splits=["train"], steps=S.StepRange.parse("1:2"), roles=["solver"])
    names = FLEET_RUNS[:6]
    result = summarize_fleet([str(fleet / n) for n in names], ["run", "step", "role"], filters=filters)
    for name in names:
        expected = S.summarize(open_run(fleet / name), ["step", "role"], filters=filters)
        rows = result.frame.filter(pl.col("run") == name).drop("run")
        assert_close(rows.select(expected.columns), expected, what=name)
    assert set(result.frame["role"].to_list()) == {"solver"} and set(result.frame["step"].to_list()) == {1, 2}


def test_fleet_progress_and_problems_of_a_damaged_run(tmp_path, fleet):
    shutil.copytree(SAMPLE_RUNS / "damaged", tmp_path / "damaged")
    shutil.copytree(fleet / "seed0", tmp_path / "good")
    calls = []
    result = summarize_fleet(
        [str(tmp_path / "damaged"), str(tmp_path / "good")], ["run", "role"], progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1] == (2, 2)
    problems = result.problems()
    assert problems and {p[0] for p in problems} == {"damaged"}
    expected = {(p.path, p.kind, p.message) for p in open_run(tmp_path / "damaged").problems}
    assert {p[1:] for p in problems} == expected
    _per_run_check(result, tmp_path, ["role"], names=["damaged", "good"])


# ---------------------------------------------------------------------------------------------------------
# 3. Engines
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_engine():
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    engine = get_engine("ray", num_cpus=2)
    yield engine
    engine.close()


def test_ray_engine_gives_the_local_engines_frames(fleet, ray_engine):
    locs = _locs(fleet) + [str(SAMPLE_RUNS / "damaged"), str(fleet / "missing")]
    for by in (["run", "role"], ["role"], ["run", "split", "step"], ["run"]):
        local = summarize_fleet(locs, by, engine=LocalEngine())
        remote = summarize_fleet(locs, by, engine=ray_engine)
        assert remote.frame.schema == local.frame.schema
        assert_close(remote.frame, local.frame, rel=1e-12, what=f"ray by {by}")
        assert remote.notes == local.notes and remote.failures == local.failures
        assert remote.problems() == local.problems() and remote.batches == local.batches
    assert [name for name, _ in remote.failures] == [run_names(locs)[-1]]  # under its run's name, as when read


def test_ray_engine_splits_big_runs_like_the_local_engine(fleet, ray_engine):
    locs = [str(SAMPLE_RUNS / "debate_grpo"), str(fleet / "seed3")]
    local = summarize_fleet(locs, ["run", "role"], task_bytes=60_000)
    remote = summarize_fleet(locs, ["run", "role"], task_bytes=60_000, engine=ray_engine)
    assert local.units > 2 and remote.units == local.units
    assert_close(remote.frame, local.frame, rel=1e-12)
    assert remote.notes == local.notes == [CHUNKED_MEDIAN_NOTE]


def test_ray_engine_metrics_fleet(fleet, ray_engine):
    from runlog.fleet import DiversityJob, metrics_fleet

    job = DiversityJob(text="completion")
    local = metrics_fleet(job, _locs(fleet)[:3], ["step"])
    remote = metrics_fleet(job, _locs(fleet)[:3], ["step"], engine=ray_engine)
    assert_close(remote.frame, local.frame, rel=1e-12)


def test_ray_engine_batches_of_several_runs(fleet, ray_engine, monkeypatch):
    import runlog.fleet as F

    monkeypatch.setattr(F, "BATCHES_PER_FLEET", 2)  # a few batches of several runs each
    locs = _locs(fleet)
    local = summarize_fleet(locs, ["run", "role"])
    remote = summarize_fleet(locs, ["run", "role"], engine=ray_engine)
    assert 1 < remote.batches == local.batches < len(locs)
    assert [r.name for r in remote.results] == [r.name for r in local.results] == FLEET_RUNS
    assert_close(remote.frame, local.frame, rel=1e-12)
    _per_run_check(remote, fleet, ["role"])


def test_plan_batches_packs_consecutive_units():
    from runlog.fleet import BATCHES_PER_FLEET, Unit, plan_batches

    units = [Unit(i, f"r{i}", f"/x/r{i}", None, b) for i, b in enumerate([10] * 20 + [5000, 10, 10])]
    total = sum(u.bytes for u in units)
    batches = plan_batches(units)
    target = total // BATCHES_PER_FLEET
    assert [u for b in batches for u in b] == units
    assert all(len(b) == 1 or sum(u.bytes for u in b) <= target for b in batches)
    assert any(len(b) > 1 for b in batches) and [units[20]] in batches
    # task_bytes caps a batch; every unit gets its own batch when it is smaller than a unit.
    assert plan_batches(units, task_bytes=1) == [[u] for u in units]
    assert plan_batches([]) == []


def test_cli_engine_ray_prints_the_same_csv(cli, fleet, ray_engine):
    # Ray is already up in this process (the fixture): the CLI's engine joins it and leaves it running.
    import ray

    args = ["summarize", f"{fleet}/*", "--by", "run", "--by", "role", "--format", "csv"]
    local = cli(*args)
    remote = cli(*args, "--engine", "ray")
    assert local.exit_code == remote.exit_code == 0, remote.stderr
    assert remote.stdout.startswith("run,split,role,")
    assert_csv_close(remote.stdout, local.stdout)
    assert ray.is_initialized()


def test_unknown_engine_and_ray_address_without_ray_are_usage_errors():
    with pytest.raises(UsageError, match="dask"):
        get_engine("dask")
    with pytest.raises(UsageError, match="--ray-address needs --engine ray"):
        get_engine("local", ray_address="x")


# ---------------------------------------------------------------------------------------------------------
# 4. Big runs split into chunks of whole steps
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["debate_grpo", "flink_mixed"])
def test_plan_units_chunks_partition_a_big_runs_sample_files(name):
    loc = str(SAMPLE_RUNS / name)
    run = open_run(loc)
    samples = {f.path for f in run.files if f.kind == "samples"}
    total = sum(os.path.getsize(os.path.join(loc, p)) for p in samples)
    whole, failures = plan_units([loc])
    assert failures == [] and len(whole) == 1 and whole[0].files is None
    units, failures = plan_units([loc], task_bytes=total // 5)
    assert failures == [] and len(units) > 2
    assert [u.index for u in units] == list(range(len(units))) and {u.name for u in units} == {name}
    chunks = [set(u.files) & samples for u in units]
    assert all(chunks)
    assert set().union(*chunks) == samples and sum(len(c) for c in chunks) == len(samples)
    manifests = {f.path for f in run.files if f.kind == "manifest"}
    for u in units:
        assert manifests <= set(u.files)
    # Chunks hold whole steps: no (split, step) is cut in two.
    step_of = {f.path: f.step for f in run.files if f.kind == "samples"}
    steps = [{step_of[p] for p in c} for c in chunks]
    for i, a in enumerate(steps):
        for b in steps[i + 1 :]:
            assert not (a & b) or name == "flink_mixed"  # Flink's eval files share step numbers with train
    others = {f.path for f in run.files if f.kind not in ("samples", "manifest")}
    assert others <= set(units[0].files)


def test_plan_units_keeps_small_runs_whole_and_reports_unlistable_ones(fleet):
    units, failures = plan_units([*_locs(fleet), str(fleet / "missing")], task_bytes=10**9)
    assert [u.name for u in units] == [*FLEET_RUNS]
    assert all(u.files is None for u in units)
    # Under the run's name (as a run that fails when read); the message names its location.
    assert failures and failures[0][0] == "missing" and f"{fleet / 'missing'}: no such file" in failures[0][1]


def test_split_runs_give_the_same_numbers(fleet):
    locs = [str(SAMPLE_RUNS / "debate_grpo"), str(fleet / "seed3"), str(fleet / "seed0"), str(SAMPLE_RUNS / "damaged")]
    for by in (["run", "role", "step"], ["run", "split", "step", "role"]):
        whole = summarize_fleet(locs, by)
        split = summarize_fleet(locs, by, task_bytes=50_000)
        assert split.units > whole.units == len(locs)
        assert_close(split.frame, whole.frame, what=f"split by {by}")
        assert split.notes == [] and sorted(split.problems()) == sorted(whole.problems())
        assert len(set(split.problems())) == len(split.problems())
    whole = summarize_fleet(locs, ["run", "role"])
    split = summarize_fleet(locs, ["run", "role"], task_bytes=50_000)
    # Prompt groups of seed3 span two shards of one step: chunks of whole steps keep them whole, so
    # zero_adv_frac stays exact too; only the median is lost, where a run was cut.
    assert_close(split.frame, whole.frame, skip=["reward_median"])
    cut = {u.name for u in plan_units(locs, task_bytes=50_000)[0] if u.files is not None}
    assert cut and cut != {"debate_grpo", "seed3", "seed0", "damaged"}
    for run in split.frame["run"].unique().to_list():
        medians = split.frame.filter(pl.col("run") == run)["reward_median"]
        if run in cut:
            # Lost where the cut split a group's rows; kept where one chunk holds them all (an eval split).
            wanted = whole.frame.filter(pl.col("run") == run)["reward_median"]
            assert medians.null_count() > 0
            assert all(g is None or g == w for g, w in zip(medians, wanted, strict=True))
        else:
            assert_close(
                split.frame.filter(pl.col("run") == run).select("reward_median"),
                whole.frame.filter(pl.col("run") == run).select("reward_median"),
            )
    assert split.notes == [CHUNKED_MEDIAN_NOTE] and whole.notes == []
    # A run's chunks share its manifest: its problems are reported once.
    assert sorted(split.problems()) == sorted(whole.problems()) and whole.problems()


# ---------------------------------------------------------------------------------------------------------
# 5. Locations
# ---------------------------------------------------------------------------------------------------------


def test_resolve_locations_globs(fleet, tmp_path):
    got = resolve_locations([f"{fleet}/*"])
    assert got == sorted(got) == _locs(fleet)
    # Several patterns keep their order; duplicates are dropped; plain paths pass through unchecked.
    got = resolve_locations([f"{fleet}/seed5", f"{fleet}/seed[01]", f"{fleet}/seed0", "plain/path"])
    assert got == [f"{fleet}/seed5", f"{fleet}/seed0", f"{fleet}/seed1", "plain/path"]
    # Single run files match (by suffix), other files do not.
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    (tmp_path / "c.md").write_text("x")
    (tmp_path / ".d.jsonl").write_text("{}\n")
    assert resolve_locations([f"{tmp_path}/*"]) == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")]
    with pytest.raises(UsageError, match="matches no run"):
        resolve_locations([f"{tmp_path}/nothing*"])
    with pytest.raises(UsageError, match="matches no run"):
        resolve_locations([f"{fleet}/*.md"])


def test_read_runs_file(tmp_path):
    f = tmp_path / "runs.txt"
    f.write_text("# my runs\n\n  /a/run1  \n#/skipped\n/a/run2\n\n")
    assert read_runs_file(f) == ["/a/run1", "/a/run2"]
    f.write_text("# nothing\n\n   \n")
    with pytest.raises(UsageError, match="lists no run"):
        read_runs_file(f)
    with pytest.raises(UsageError, match="cannot read"):
        read_runs_file(tmp_path / "missing.txt")


def test_run_names():
    assert run_names(["/data/runs/a", "/data/runs/b/"]) == ["a", "b"]
    assert run_names(["/data/x/r1", "/data/y/r1"]) == ["x/r1", "y/r1"]
    assert run_names(["s3://bucket/runs/a", "s3://bucket/runs/b"]) == ["a", "b"]
    assert run_names(["runs/a", "runs/a/b"]) == ["a", "a/b"]
    assert run_names(["/only/one/run"]) == ["run"]
    assert run_names(["runs/a.jsonl", "runs/b.jsonl"]) == ["a.jsonl", "b.jsonl"]
    # Names that would collide fall back to the full locations.
    assert run_names(["runs/a", "runs/a/"]) == ["runs/a", "runs/a/"]
    for locs in (["/x/a", "/x/b", "/y/a"], ["a/b/c", "a/b/d", "a/e"]):
        names = run_names(locs)
        assert len(set(names)) == len(names)


# ---------------------------------------------------------------------------------------------------------
# 6. CLI
# ---------------------------------------------------------------------------------------------------------


def _csv(text: str) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text), infer_schema_length=None)


def test_cli_summarize_glob_by_run_and_role(cli, fleet):
    r = cli("summarize", f"{fleet}/*", "--by", "run", "--by", "role", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0][:3] == ["run", "split", "role"]  # two runs have an eval split: never pooled silently
    expected = sum(S.summarize(open_run(fleet / n), ["split", "role"]).height for n in FLEET_RUNS)
    assert len(rows) - 1 == expected
    pairs = [(row[0], row[1], row[2]) for row in rows[1:]]
    assert len(set(pairs)) == len(pairs)
    assert {p[0] for p in pairs} == set(FLEET_RUNS)
    assert "7 run part(s)" in r.stderr and "0 run(s) skipped" in r.stderr
    # Exact numbers in the CSV: one run's rows equal that run's own summary.
    df = _csv(r.stdout)
    expected = S.summarize(open_run(fleet / "seed3"), ["split", "role"])
    assert_close(df.filter(pl.col("run") == "seed3").select(expected.columns), expected, rel=1e-12)


def test_cli_several_paths_and_runs_file(cli, fleet, tmp_path):
    a = cli("summarize", fleet / "seed0", fleet / "seed4", "--format", "csv")
    assert a.exit_code == 0, a.stderr
    assert a.stdout.startswith("run,split,role,")  # seed0 has an eval split
    assert set(_csv(a.stdout)["run"].to_list()) == {"seed0", "seed4"}
    runs = tmp_path / "runs.txt"
    runs.write_text(f"# two runs\n{fleet / 'seed0'}\n\n{fleet / 'seed4'}\n")
    b = cli("summarize", "--runs", runs, "--by", "run", "--by", "role", "--format", "csv")
    assert b.exit_code == 0, b.stderr
    assert b.stdout == a.stdout
    # A --runs file with one run is still a fleet (a run column), and it may hold globs.
    runs.write_text(f"{fleet}/seed[45]\n")
    c = cli("summarize", "--runs", runs, "--format", "csv")
    assert c.exit_code == 0 and set(_csv(c.stdout)["run"].to_list()) == {"seed4", "seed5"}
    # Without --by run, a fleet is pooled over its runs (medians empty where several runs hold a group).
    d = cli("summarize", fleet / "seed0", fleet / "seed1", "--by", "role", "--format", "csv")
    assert d.exit_code == 0 and d.stdout.startswith("split,role,") and S.MEDIAN_NOTE in " ".join(d.stderr.split())
    # seed0 alone has eval rows (their medians stay); both runs hold the train rows of each role.
    pooled = _csv(d.stdout)
    assert pooled.filter(pl.col("split") == "train")["reward_median"].null_count() == 2
    assert pooled.filter(pl.col("split") == "eval")["reward_median"].null_count() == 0


def test_cli_single_run_by_run_is_a_fleet_of_one(cli, fleet):
    r = cli("summarize", fleet / "seed2", "--by", "run", "--by", "role", "--format", "csv")
    assert r.exit_code == 0
    plain = cli("summarize", fleet / "seed2", "--by", "role", "--format", "csv")
    lines, single = r.stdout.splitlines(), plain.stdout.splitlines()
    assert lines[0] == "run," + single[0]
    # The plain summary merges the run's per-step partials (the partial cache), the fleet reads it in one
    # pass: the same figures, to rounding.
    fleet_rows, plain_rows = _csv(r.stdout), _csv(plain.stdout)
    assert fleet_rows["run"].to_list() == ["seed2"] * plain_rows.height
    assert_frame_equal(fleet_rows.drop("run"), plain_rows, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def test_cli_damaged_run_in_a_fleet(cli, fleet, tmp_path):
    shutil.copytree(SAMPLE_RUNS / "damaged", tmp_path / "damaged")
    shutil.copytree(fleet / "seed0", tmp_path / "good")
    r = cli("summarize", f"{tmp_path}/*", "--by", "run", "--by", "role", "--format", "csv")
    assert r.exit_code == 1
    assert set(_csv(r.stdout)["run"].to_list()) == {"damaged", "good"}
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line.startswith("error: damaged/") for line in errors)
    assert "error: damaged/samples/train/step_00000001.p0.parquet: unreadable" in r.stderr
    assert "good/" not in r.stderr


def test_cli_unreadable_locations_are_skipped(cli, fleet, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    # A second location that exists and holds no run (a missing one is a usage error: test_cli_audit21).
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "readme.md").write_text("no run")
    runs = tmp_path / "runs.txt"
    runs.write_text(f"{fleet / 'seed0'}\n{blank}\n{empty}\n{fleet / 'seed1'}\n")
    r = cli("summarize", "--runs", runs, "--format", "csv")
    assert r.exit_code == 1
    names = run_names([str(fleet / "seed0"), str(blank), str(empty), str(fleet / "seed1")])
    assert set(_csv(r.stdout)["run"].to_list()) == {names[0], names[3]}
    skipped = [line for line in r.stderr.splitlines() if "run skipped" in line]
    assert len(skipped) == 2, r.stderr
    assert any("blank" in line for line in skipped)
    assert any("empty" in line for line in skipped)
    assert "2 run(s) skipped: " in r.stderr
    # A run skipped is said before, not behind, the capped lines of another run's damaged files.
    for i in range(30):
        (fleet / "seed0" / f"junk_{i:02d}.parquet").write_text("junk")
    r = cli("summarize", "--runs", runs, "--format", "csv")
    lines = r.stderr.splitlines()
    # The hint names the run cut and a command that takes it (``inspect`` takes one run, not the fleet).
    assert f"more, of {names[0]} (" in r.stderr and f"see `runlog inspect {fleet / 'seed0'}`" in r.stderr, r.stderr
    assert sum("run skipped" in line for line in lines) == 2, r.stderr
    # Nothing readable at all: a usage error.
    runs.write_text(f"{blank}\n{empty}\n")
    r = cli("summarize", "--runs", runs)
    assert r.exit_code == 2 and "no run of the fleet could be read" in r.stderr


def test_cli_fleet_usage_errors(cli, fleet, tmp_path):
    glob = f"{fleet}/*"
    for args in (
        [glob, "--scalars"],
        [glob, "--correlations"],
        [glob, "--window", "3"],
        [glob, "--engine", "dask"],
        [fleet / "seed0", "--engine", "dask"],
        [glob, "--ray-address", "x"],
        [glob, "--by", "run", "--by", "bogus"],
        [f"{tmp_path}/nothing*"],
        ["--runs", tmp_path / "missing.txt"],
    ):
        r = cli("summarize", *args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip().startswith("Error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert cli("metrics", "format", glob, "--per-sample").exit_code == 2
    assert cli("metrics", "diversity", glob, "--engine", "dask").exit_code == 2


def test_cli_metrics_format_by_run(cli, fleet):
    r = cli("metrics", "format", f"{fleet}/*", "--spec", "open-r1", "--by", "run", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    df = _csv(r.stdout)
    assert df.columns[:3] == ["run", "split", "texts"]  # two runs have eval rows: never pooled with train
    assert df.unique("run", maintain_order=True)["run"].to_list() == FLEET_RUNS  # rows per run and split
    for name in FLEET_RUNS:
        expected = M.format_frame(open_run(fleet / name), "open-r1", ["split"], split_key=False)
        rows = df.filter(pl.col("run") == name).drop("run")
        assert_close(rows.select(expected.columns), expected, rel=1e-12, what=name)
        _others_components(rows, expected, name)
    # With a step key, each run's rows equal the single-run command's output.
    r = cli("metrics", "format", f"{fleet}/seed[02]", "--spec", "open-r1", "--by", "run", "--by", "step", "-f", "csv")
    assert r.exit_code == 0
    df = _csv(r.stdout)
    for name in ("seed0", "seed2"):
        alone = cli("metrics", "format", fleet / name, "--spec", "open-r1", "--format", "csv")
        expected = _csv(alone.stdout)
        rows = df.filter(pl.col("run") == name).drop("run")
        assert_close(rows.select(expected.columns), expected, rel=1e-12, what=name)


def test_cli_metrics_diversity_by_run_and_step(cli, fleet):
    glob = f"{fleet}/seed*"
    r = cli("metrics", "diversity", glob, "--by", "run", "--by", "step", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("run,split,step,")  # seed0 has eval rows: split is a key of the fleet
    got: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, rest = line.partition(",")
        got.setdefault(name, []).append(rest)
    assert sorted(got) == FLEET_RUNS[:6]
    for name in got:
        alone = cli("metrics", "diversity", fleet / name, "--by", "split", "--by", "step", "--format", "csv")
        assert alone.exit_code == 0
        assert "run," + alone.stdout.splitlines()[0] == lines[0]
        assert_csv_close("\n".join(got[name]), "\n".join(alone.stdout.splitlines()[1:]))
        assert len(got[name]) == M.diversity_frame(open_run(fleet / name), ["split", "step"]).height
    # The API agrees, and the default keys of a fleet are run and step.
    api = M.diversity_frame(open_run(fleet / "seed2"), ["step"])
    default = cli("metrics", "diversity", fleet / "seed2", fleet / "seed3", "--format", "csv")
    assert default.exit_code == 0 and default.stdout.startswith("run,step,")
    rows = _csv(default.stdout).filter(pl.col("run") == "seed2").drop("run")
    assert_close(rows.select(api.columns), api, rel=1e-12)


def test_cli_a_folder_of_runs_by_run_is_the_fleet_of_its_runs(cli):
    """``summarize ROOT --by run`` is ``summarize 'ROOT/*' --by run`` (each run a row, nothing added up); without
    ``run`` among the keys the folder is still refused (exit 2) and its runs named."""
    folder = cli("summarize", SAMPLE_RUNS, "--by", "run", "--by", "role", "--format", "csv")
    glob_ = cli("summarize", f"{SAMPLE_RUNS}/*", "--by", "run", "--by", "role", "--format", "csv")
    assert folder.exit_code == glob_.exit_code == 1  # the damaged run's errors
    assert folder.stdout == glob_.stdout
    assert set(_csv(folder.stdout)["run"].to_list()) == {"damaged", "debate_grpo", "flink_mixed"}  # jaxarc: scalars
    one = cli("summarize", SAMPLE_RUNS, "--by", "role")
    assert one.exit_code == 2
    assert "holds 4 runs (damaged, debate_grpo, flink_mixed, jaxarc)" in one.stderr
    metrics = cli("metrics", "diversity", SAMPLE_RUNS, "--by", "run", "--format", "csv")
    assert metrics.exit_code in (0, 1)
    assert {"debate_grpo", "flink_mixed"} <= set(_csv(metrics.stdout)["run"].to_list())


def test_a_fleet_by_group_keeps_each_step_s_groups_apart(tmp_path, cli):
    """Group ids that come again at every step (g0, g1 each step): a fleet by run and group has one row per
    run, step and group, the rows each run's own summary gives, and says that step was added."""
    from runlog import RunWriter

    for name, lift in (("a", 0.0), ("b", 0.25)):
        with RunWriter(tmp_path / name, name=name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
            for step in range(3):
                rows = [
                    {"group_id": f"g{i % 2}", "reward": r, "roles": {"solver": {"reward": r, "kl": 0.0}}}
                    for i in range(4)
                    for r in [0.1 * step + 0.1 * i + lift]
                ]
                w.log_samples(step, rows)
    fleet = cli("summarize", f"{tmp_path}/*", "--by", "run", "--by", "group", "-f", "json")
    assert fleet.exit_code == 0, fleet.output
    assert "a prompt group is one group id within a step: `step` was added to the keys" in fleet.stderr
    rows = json.loads(fleet.stdout)
    assert len(rows) == 2 * 3 * 2
    for name in ("a", "b"):
        own = json.loads(cli("summarize", tmp_path / name, "--by", "group", "-f", "json").stdout)
        mine = [{k: v for k, v in r.items() if k != "run"} for r in rows if r["run"] == name]
        assert [(r["step"], r["group"], r["reward_count"]) for r in mine] == [
            (r["step"], r["group"], r["reward_count"]) for r in own
        ]
        for x, y in zip(mine, own, strict=True):
            assert x["reward_mean"] == pytest.approx(y["reward_mean"], abs=1e-12)


def test_a_fleet_without_by_run_says_it_pools_the_runs(cli):
    pooled = cli("summarize", f"{SAMPLE_RUNS}/*", "--by", "role", "-f", "json")
    # jaxarc holds scalars only: it gives no row, and is named, not counted among the pooled runs
    assert "note: statistics pooled over the 3 runs with rows: add --by run for one row per run" in pooled.stderr
    assert "run(s) with no row, not in the pooled statistics: jaxarc" in pooled.stderr
    per_run = cli("summarize", f"{SAMPLE_RUNS}/*", "--by", "run", "--by", "role", "-f", "json")
    assert "statistics pooled over" not in per_run.stderr
