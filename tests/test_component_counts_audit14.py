"""Reward components' counts in ``summarize`` (fourteenth audit): each component's mean comes with the count of
the valid values it is over and the NaN and null values it leaves out (null: a sample without the component),
as the reward's and the KL's do, and every route gives the same figures: cold, from the partial cache (first
and warm), by step, by role, a fleet, ``--window``. Expected figures are counted here with pyarrow, not runlog.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from polars.testing import assert_frame_equal

from runlog import open_run
from runlog.analysis.filters import Filters, StepRange
from runlog.analysis.partial_cache import PartialStore, run_partials
from runlog.analysis.summarize import summarize
from runlog.fleet import summarize_fleet
from runlog.writer import RunWriter

SAMPLE_RUNS = Path(__file__).resolve().parent.parent / "sample_runs"
DEBATE = SAMPLE_RUNS / "debate_grpo"
NAN = float("nan")
OLD = 1_600_000_000  # file times in the past: the partial cache stores the steps (fresh files are not stored)
STATS = ("mean", "count", "nan", "null")


def pyarrow_counts(root: Path, names: list[str], by_step: bool = False) -> dict[tuple, dict[str, Any]]:
    """Per (split[, step], component): the valid values' mean and count, and the NaN and null values (a sample
    whose ``reward_components`` lack the component, or hold it as null), read with pyarrow."""
    out: dict[tuple, dict[str, Any]] = {}
    for path in sorted(root.glob("samples/*/*.parquet")):
        t = pq.read_table(path)
        comps = t.column("reward_components").to_pylist() if "reward_components" in t.column_names else None
        splits, steps = t.column("split").to_pylist(), t.column("step").to_pylist()
        for i in range(t.num_rows):
            got = {c["name"]: c["value"] for c in ((comps[i] if comps else None) or [])}
            for n in names:
                key = (splits[i], steps[i], n) if by_step else (splits[i], n)
                k = out.setdefault(key, {"sum": 0.0, "count": 0, "nan": 0, "null": 0})
                v = got.get(n)
                if v is None:
                    k["null"] += 1
                elif math.isnan(v):
                    k["nan"] += 1
                else:
                    k["count"] += 1
                    k["sum"] += v
    for k in out.values():
        k["mean"] = k.pop("sum") / k["count"] if k["count"] else None
    return out


def figures(row: dict[str, Any], name: str, prefix: str = "") -> tuple:
    return tuple(row[f"{prefix}component/{name}_{s}"] for s in STATS)


def same(got: tuple, want: dict[str, Any]) -> bool:
    mean, *counts = got
    if counts != [want["count"], want["nan"], want["null"]]:
        return False
    return mean is None and want["mean"] is None or math.isclose(mean, want["mean"], rel_tol=1e-12)


def test_debate_grpo_component_counts_equal_pyarrow_on_every_route() -> None:
    """sample_runs/debate_grpo's train split: correctness is over 1,005 of its 1,024 samples (4 NaN, 15 without
    it); every component's figures equal pyarrow's, cold, from partials (twice), by role and by step."""
    names = ["correctness", "format", "tool_use"]
    want = pyarrow_counts(DEBATE, names)
    assert {k: want[("train", "correctness")][k] for k in ("count", "nan", "null")} == {
        "count": 1005,
        "nan": 4,
        "null": 15,
    }
    for cache in (False, True, True):
        plain = summarize(open_run(DEBATE), [], cache=cache)
        per_role = summarize(open_run(DEBATE), ["role"], cache=cache)
        for r in plain.to_dicts():
            for n in names:
                assert same(figures(r, n), want[(r["split"], n)]), (cache, r["split"], n, figures(r, n))
        for r in per_role.to_dicts():
            assert "component/correctness_count" not in r  # per sample in the data: given once, not per role
            for n in names:
                assert same(figures(r, n, "sample:"), want[(r["split"], n)]), (cache, r["role"], n)
        step_want = pyarrow_counts(DEBATE, names, by_step=True)
        for by in (["step"], ["step", "role"]):
            prefix = "sample:" if "role" in by else ""
            for r in summarize(open_run(DEBATE), by, cache=cache).to_dicts():
                for n in names:
                    assert same(figures(r, n, prefix), step_want[(r["split"], r["step"], n)]), (cache, by, r, n)


def test_csv_json_fleet_and_window_carry_the_counts(cli, tmp_path: Path) -> None:
    """The CSV header holds each component's mean, count, nan and null side by side; --window and a fleet
    (--by run) give the same figures as the plain summary."""
    r = cli("summarize", DEBATE, "--format", "csv")
    assert r.exit_code == 0, r.stderr
    header = r.stdout.splitlines()[0].split(",")
    at = header.index("sample:component/correctness_mean")
    assert header[at : at + 4] == [f"sample:component/correctness_{s}" for s in STATS]
    plain = {(x["split"], x["role"]): x for x in json.loads(cli("summarize", DEBATE, "--format", "json").stdout)}
    windowed = json.loads(cli("summarize", DEBATE, "--window", "3", "--by", "step", "--format", "json").stdout)
    fleet = json.loads(cli("summarize", DEBATE, SAMPLE_RUNS / "flink_mixed", "--by", "run", "--format", "json").stdout)
    want = pyarrow_counts(DEBATE, ["correctness"], by_step=True)
    for x in windowed:
        assert same(figures(x, "correctness"), want[(x["split"], x["step"], "correctness")])
    rows = [x for x in fleet if x["run"] == "debate_grpo"]
    assert rows and all(x["component/correctness_count"] is not None for x in rows)
    for x in rows:
        one = plain[(x["split"], "judge")]
        assert figures(x, "correctness") == figures(one, "correctness", "sample:"), x["split"]


def test_the_table_shows_each_component_with_its_counts_in_80_columns(cli, monkeypatch) -> None:
    """One row per component under the per-sample figures, its mean beside its count, NaN and null, at most 80
    columns wide."""
    monkeypatch.setenv("COLUMNS", "80")
    r = cli("summarize", DEBATE, "--split", "train")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    head = next(i for i, line in enumerate(lines) if line.startswith("Reward components per sample"))
    table = "\n".join(lines[head:])
    assert [c.strip() for c in next(x for x in lines[head:] if "component" in x and "┃" in x).split("┃")[1:-1]] == [
        "component",
        "mean",
        "count",
        "nan",
        "null",
    ]
    row = next(x for x in lines[head:] if "correctness" in x)
    assert [c.strip() for c in row.split("│")[1:-1]] == ["correctness", "0.7592", "1,005", "4", "15"], table


def _write(root: Path, components_from: dict[str, int], seed: int) -> None:
    """Six steps of ten samples; a component logged from its step on, by 80 % of the samples (NaN, null, or a
    value); now and then a sample with no components at all."""
    rng = random.Random(seed)
    with RunWriter(root, name=root.name, roles=("solver", "judge"), durable=False) as w:
        for step in range(6):
            rows = []
            for i in range(10):
                comps = {
                    c: rng.choice([NAN, None, 0.0, 1.0, rng.random()])
                    for c, first in components_from.items()
                    if step >= first and rng.random() < 0.8
                }
                row: dict[str, Any] = {
                    "reward": rng.random(),
                    "group_id": f"g{i // 2}",
                    "solver_reward": rng.random(),
                    "judge_reward": rng.random(),
                }
                if comps or rng.random() < 0.5:
                    row["reward_components"] = comps
                rows.append(row)
            w.log_samples(step, rows, split="train")
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD, OLD))


def test_a_component_that_early_steps_lack_counts_their_samples_null_on_every_route(tmp_path: Path) -> None:
    """Steps 0-2 never log ``late``: their partials, stored by a summary of those steps, hold no column of it.
    Merged with the later steps' partials, their 30 samples are null for ``late`` as a cold read counts them; a
    fleet run without the component has every sample null for it."""
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, {"late": 3, "always": 0}, 1)
    _write(b, {"always": 0}, 2)
    want = pyarrow_counts(a, ["late", "always"])
    early = Filters(steps=StepRange.parse("0:2"))
    cold_early = summarize(open_run(a), ["role"], filters=early, cache=False)
    assert figures(cold_early.row(0, named=True), "late", "sample:") == (None, 0, 0, 30)
    for _ in range(2):
        assert summarize(open_run(a), ["role"], filters=early).equals(cold_early)
    opened = open_run(a)
    stored = run_partials(opened, "role", filters=early, store=PartialStore.open(opened.root))
    assert stored is not None and stored.reused == 3
    assert not any("late" in c for c in stored.frame.columns)  # the route this test is about
    for by in ([], ["role"], ["step"]):
        prefix = "sample:" if "role" in by else ""
        cold = summarize(open_run(a), by, cache=False)
        warm = summarize(open_run(a), by)
        for got in (cold, warm):
            if "step" in by:
                for r in got.to_dicts():
                    assert figures(r, "late")[1:] == ((0, 0, 10) if r["step"] < 3 else figures(r, "late")[1:])
                    assert sum(figures(r, "late")[1:]) == 10
            else:
                for n in ("late", "always"):
                    assert same(figures(got.row(0, named=True), n, prefix), want[("train", n)]), (by, n)
        assert_frame_equal(warm, cold, check_exact=False, rel_tol=1e-12)
    fleet = summarize_fleet([str(a), str(b)], ["run"]).frame
    rows = {r["run"]: r for r in fleet.to_dicts()}
    assert same(figures(rows["a"], "late"), want[("train", "late")])
    assert figures(rows["b"], "late") == (None, 0, 0, 60)
    pooled = summarize_fleet([str(a), str(b)], []).frame.row(0, named=True)
    assert figures(pooled, "late")[1:] == (want[("train", "late")]["count"], want[("train", "late")]["nan"], 39 + 60)


def test_a_stored_segment_without_a_components_counts_is_read_again(tmp_path: Path, capsys) -> None:
    """A segment whose component partial lacks its NaN and null counts (not written by this code) is reported
    unreadable and its steps read again: never merged as if nothing were left out."""
    import polars as pl

    from runlog.probe_cache import cache_dir

    run = tmp_path / "run"
    _write(run, {"always": 0}, 3)
    cold = summarize(open_run(run), [], cache=False)
    assert summarize(open_run(run), []).equals(cold)
    base = cache_dir()
    assert base is not None
    segments = list((base / "partials").glob("*/seg-*.arrow"))
    assert segments
    for seg in segments:
        frame = pl.read_ipc(seg)
        frame.drop([c for c in frame.columns if c.endswith(("_nan", "_null")) and "component/" in c]).write_ipc(seg)
    again = summarize(open_run(run), [])
    assert again.equals(cold)
    assert "unreadable (no component/always_nan" in capsys.readouterr().err
