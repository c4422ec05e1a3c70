"""``runlog diff``: runs written with ``RunWriter`` where B beats A for the solver from a known step and ties
for the judge; the comparison finds exactly that (the tie's interval covers 0, with a seeded bootstrap), the
onset within 3 steps, a paired per-prompt comparison, runs logged at different strides, runs with nothing in
common, and the CLI's JSON, CSV and table output."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.diff import DiffOptions, bootstrap_means, diff_runs, diff_series, flat_config, step_z
from runlog.analysis.summarize import summarize

STEPS = 40
ONSET = 20
PROMPTS = 4
GROUP = 8
LIFT = 0.25  # the solver's reward lift in B from ONSET on
TOLERANCE = 3


def write_run(
    path: Path,
    *,
    seed: int,
    lift: float = 0.0,
    stride: int = 1,
    first: int = 0,
    steps: int = STEPS,
    config: dict | None = None,
) -> Path:
    """A debate run: the prompts of step s are the same in every run (drawn from s alone); the rewards are
    drawn from ``seed``. Solver and judge rewards rise slowly with the step; the solver gains ``lift`` from
    ONSET on. Scalars: a loss and a constant learning rate."""
    rng = random.Random(seed)
    cfg = {"lr": 1e-5, "optimizer": {"name": "adam", "beta2": 0.999}} if config is None else config
    with RunWriter(
        path, name=path.name, roles=["solver", "judge"], config=cfg, durable=False, clock=lambda: 1.7e9
    ) as w:
        for step in range(first, first + steps, stride):
            prompts = random.Random(step)
            level = 0.3 + 0.2 * step / STEPS
            rows = []
            for g in range(PROMPTS):
                question = f"Task {step}-{g}: {prompts.randint(10, 99)} * {prompts.randint(3, 19)}?"
                difficulty = prompts.uniform(-0.15, 0.15)  # per prompt, the same in both runs
                for _ in range(GROUP):
                    solver = level + difficulty + rng.gauss(0, 0.12) + (lift if step >= ONSET else 0.0)
                    judge = level + difficulty + rng.gauss(0, 0.12)
                    rows.append(
                        {
                            "group_id": f"s{step}-g{g}",
                            "prompt": question,
                            "completion": f"<think>{rng.random():.3f}</think><answer>{rng.randint(0, 9)}</answer>",
                            "reward": solver,
                            "roles": {"solver": {"reward": solver, "kl": 0.01}, "judge": {"reward": judge, "kl": 0.02}},
                        }
                    )
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 1.0 / (1 + step) + rng.gauss(0, 0.01), "train/lr": 1e-5})
    return path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("diff")
    a = write_run(root / "A", seed=1)
    b = write_run(root / "B", seed=2, lift=LIFT, config={"lr": 3e-5, "optimizer": {"name": "adam", "beta2": 0.99}})
    return a, b


@pytest.fixture(scope="module")
def result(pair: tuple[Path, Path]):
    return diff_runs([open_run(p) for p in pair], ["A", "B"], DiffOptions(seed=7))


def _row(df: pl.DataFrame, **eq) -> dict:
    for k, v in eq.items():
        df = df.filter(pl.col(k) == v)
    [row] = df.to_dicts()
    return row


def test_b_beats_a_for_the_solver_from_the_known_step_and_ties_for_the_judge(result) -> None:
    solver = _row(result.roles, role="solver")
    assert solver["verdict"] == "ahead" and solver["ci_low"] > 0.1, solver
    assert abs(solver["diff"] - LIFT) < 0.06, solver
    assert solver["ahead_from"] is not None and abs(solver["ahead_from"] - ONSET) <= TOLERANCE, solver
    assert solver["behind_from"] is None
    judge = _row(result.roles, role="judge")
    assert judge["verdict"] == "tie" and judge["ci_low"] <= 0 <= judge["ci_high"], judge
    assert judge["ahead_from"] is None and judge["behind_from"] is None, judge
    # The start: before the lift, the solver ties too.
    start = _row(result.points, role="solver", metric="reward", point="start")
    assert start["verdict"] == "tie" and start["steps"] == "0..9" and start["n"] == 10 * PROMPTS * GROUP
    # The best window of a rising reward is at the end; KL is the same in both runs.
    best = _row(result.points, role="solver", metric="reward", point="best")
    assert best["steps"] == "30..39" and best["verdict"] == "ahead"
    kl = _row(result.points, role="judge", metric="kl", point="end")
    assert kl["baseline"] == pytest.approx(0.02) and kl["value"] == pytest.approx(0.02) and kl["verdict"] == "tie"


def test_the_end_values_are_what_summarize_reports_for_those_steps(pair: tuple[Path, Path], result) -> None:
    from runlog.analysis.filters import Filters, StepRange

    run = open_run(pair[1])
    expected = summarize(run, ["role"], filters=Filters(steps=StepRange(30, 39)), prompt_groups=True)
    for role in ("solver", "judge"):
        row = _row(result.points, role=role, metric="reward", point="end")
        want = _row(expected, role=role)
        assert row["value"] == pytest.approx(want["reward_mean"], rel=1e-12)
        assert row["n"] == want["reward_count"]
        zero = _row(result.points, role=role, metric="zero_adv_frac", point="end")
        assert zero["value"] == pytest.approx(want["zero_adv_frac"]) and zero["n"] == 10 * PROMPTS


def test_the_bootstrap_is_seeded(pair: tuple[Path, Path], result) -> None:
    runs = [open_run(p) for p in pair]
    again = diff_runs(runs, ["A", "B"], DiffOptions(seed=7))
    assert again.points.equals(result.points) and again.paired.equals(result.paired)
    other = diff_runs(runs, ["A", "B"], DiffOptions(seed=8))
    assert not other.points["ci_low"].equals(result.points["ci_low"])
    # The verdicts do not hang on the seed.
    assert other.roles["verdict"].to_list() == result.roles["verdict"].to_list()


def test_paired_per_prompt_comparison(result) -> None:
    solver = _row(result.paired, role="solver")
    assert solver["prompts"] == 10 * PROMPTS and solver["steps"] == "30..39"
    assert solver["verdict"] == "ahead" and solver["wins"] > solver["losses"]
    judge = _row(result.paired, role="judge")
    assert judge["verdict"] == "tie" and judge["ci_low"] <= 0 <= judge["ci_high"]
    # Pairing removes the prompts' own difficulty: the paired interval is narrower than the unpaired one.
    unpaired = _row(result.roles, role="judge")
    assert judge["ci_high"] - judge["ci_low"] < unpaired["ci_high"] - unpaired["ci_low"]


def test_scalars_and_configs(result) -> None:
    lr = _row(result.scalars, key="train/lr", point="end")
    assert lr["diff"] == 0 and lr["verdict"] == "tie"
    assert set(result.scalars["key"]) == {"train/loss", "train/lr"}
    assert result.config.select("key", "config_baseline", "config_run").rows() == [
        ("lr", "1e-05", "3e-05"),
        ("optimizer/beta2", "0.999", "0.99"),
    ]


def test_wandb_style_configs_are_unwrapped() -> None:
    wandb = {
        "_wandb": {"value": {"cli_version": "0.17"}},
        "lr": {"desc": None, "value": 0.1},
        "model": {"value": {"d": 4}},
    }
    assert flat_config(wandb) == {"lr": 0.1, "model/d": 4}


def test_different_strides_are_compared_where_both_have_data(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    b = write_run(tmp_path / "B2", seed=2, lift=LIFT, stride=2)
    d = diff_runs([open_run(pair[0]), open_run(b)], ["A", "B2"])
    solver = _row(d.roles, role="solver")
    assert solver["common_steps"] == STEPS // 2 and solver["verdict"] == "ahead"
    assert abs(solver["ahead_from"] - ONSET) <= TOLERANCE
    assert _row(d.points, role="solver", metric="reward", point="end")["steps"] == "20..38 every 2"
    [note] = [n for n in d.notes if "step(s) both have" in n]
    assert "20 step(s) both have (0..38 every 2; A has 0..39, B2 has 0..38 every 2)" in note


def test_no_common_step_is_one_line_and_the_configs_are_still_compared(tmp_path: Path, pair, cli) -> None:
    late = write_run(tmp_path / "late", seed=3, first=100, steps=10, config={"lr": 1e-4})
    r = cli("diff", pair[0], late, "--format", "json")
    assert r.exit_code == 0, r.output
    lines = r.stderr.strip().splitlines()
    assert [ln for ln in lines if "no common step" in ln] == [lines[0]] and len(lines) == 2, lines
    assert "A: 0..39" in lines[0] and "late: 100..109" in lines[0]
    # The scalars, logged at those steps too, are said apart: keys in common, no step of them in common.
    assert "both log scalar key(s) train/loss, train/lr, but they have no step of them in common" in lines[1]
    out = json.loads(r.stdout)
    assert out["points"] == [] and out["roles"] == []
    assert {c["key"] for c in out["config"]} == {"lr", "optimizer/beta2", "optimizer/name"}


def test_nothing_in_common_at_all_is_a_one_line_usage_error(tmp_path: Path, cli) -> None:
    a = write_run(tmp_path / "a", seed=1, steps=5, config={})
    b = write_run(tmp_path / "b", seed=1, first=50, steps=5, config={})
    for path in (a, b):  # no scalars, no config: nothing but the samples, which share no step
        (path / "scalars.p0.jsonl").unlink()
    r = cli("diff", a, b)
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("Error: nothing to compare: ") and "no common step" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_usage_errors(pair, cli) -> None:
    r = cli("diff", pair[0])
    assert r.exit_code == 2 and "at least two runs" in r.stderr
    r = cli("diff", *pair, "--role", "critic")
    assert r.exit_code == 2 and "the runs' roles are solver, judge" in r.stderr
    r = cli("diff", *pair, "--keys", "nope/*")
    assert r.exit_code == 2 and "train/loss" in r.stderr
    r = cli("diff", *pair, "--window", "0")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1


def test_cli_json(pair, cli) -> None:
    r = cli("diff", *pair, "--name", "base", "--name", "lifted", "--seed", "7", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [x["name"] for x in out["runs"]] == ["base", "lifted"] and out["runs"][0]["baseline"]
    verdicts = {row["role"]: row["verdict"] for row in out["roles"]}
    assert verdicts == {"solver": "ahead", "judge": "tie"}
    assert out["settings"] == {"window": 10, "seed": 7, "boot": 1000, "ci": 0.95}


def test_cli_table_and_csv(pair, cli) -> None:
    r = cli("diff", *pair, "--name", "base", "--name", "lifted")
    assert r.exit_code == 0, r.output
    out = r.stdout
    for title in ("Runs, and the steps", "Per role", "Paired per prompt", "Scalars", "Config: the keys that differ"):
        assert title in out
    solver_line = next(ln for ln in out.splitlines() if "solver" in ln and "ahead" in ln)
    assert "lifted" in solver_line
    assert "optimizer/beta2" in out
    csv = cli("diff", *pair, "--format", "csv")
    frame = pl.read_csv(csv.stdout.encode())
    assert {"overlap", "roles", "points", "paired", "scalars", "config"} == set(frame["section"])


def test_the_text_of_model_output_is_not_interpreted(tmp_path: Path, cli) -> None:
    a = write_run(tmp_path / "a", seed=1, steps=12, config={"note": "\x1b[31mred[/] [bold]x"})
    b = write_run(tmp_path / "b", seed=2, steps=12, config={"note": "plain"})
    r = cli("diff", a, b, "--name", "\x1b[2Jrun")
    assert r.exit_code == 0
    assert "\x1b" not in r.stdout and "[bold]x" in r.stdout


def test_text_and_findings(tmp_path: Path, pair) -> None:
    d = diff_runs([open_run(p) for p in pair], ["A", "B"], DiffOptions(text=True, findings=True))
    assert d.text is not None and d.findings is not None
    metrics = set(d.text["metric"])
    assert {"distinct_2", "unique_frac", "format_adherence"} <= metrics
    fmt = _row(d.text, metric="format_adherence", point="end")
    assert fmt["baseline"] == 1.0 and fmt["value"] == 1.0
    kinds = {(r["kind"], r["role"], r["status"]) for r in d.findings.to_dicts()}
    assert all(status in ("appears", "disappears", "both") for _, _, status in kinds)


def test_series_for_plots(result) -> None:
    s = diff_series(result)
    solver = s.filter((pl.col("role") == "solver") & ~pl.col("baseline") & (pl.col("step") >= 30))
    assert solver.height == 10 and (solver["diff_lo"] > 0).all()
    base = s.filter((pl.col("role") == "solver") & pl.col("baseline"))
    assert base.height == STEPS and base["diff"].null_count() == STEPS
    assert (base["lo"] < base["mean"]).all() and (base["mean"] < base["hi"]).all()


def test_bootstrap_means_and_step_z() -> None:
    rng = np.random.default_rng(0)
    x = np.array([1.0, 2.0, np.nan, 4.0])
    reps = bootstrap_means(np.column_stack([x, np.ones(4)]), 500, rng)
    assert reps.shape == (500, 2) and np.allclose(reps[:, 1], 1.0)
    assert np.nanmin(reps[:, 0]) >= 1.0 and np.nanmax(reps[:, 0]) <= 4.0
    z = step_z(
        np.array([0.0, 0.0]),
        np.array([1.0, 0.0]),
        np.array([4, 4]),
        np.array([1.0, 1.0]),
        np.array([1.0, 0.0]),
        np.array([4, 4]),
    )
    assert z[0] == pytest.approx(1 / np.sqrt(0.5)) and np.isinf(z[1])


@pytest.mark.parametrize("layout", ["runlog", "flink"])
def test_the_per_step_figures_are_summarize_s(
    tmp_path: Path, pair: tuple[Path, Path], layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lean per-step query gives summarize's numbers, in the long view (native) and the wide one (Flink v1)."""
    from flink_gen import write_flink_run

    monkeypatch.setenv("RUNLOG_CACHE", "off")  # the lean query (with the cache on, the partials: test_diff_speed)
    from runlog.analysis.summarize import summarize

    if layout == "flink":
        path = tmp_path / "flink"
        write_flink_run(path, steps=12, prompts=3, group_size=4, seed=5)
    else:
        path = pair[0]
    run = open_run(path)
    d = diff_runs([run, open_run(path)], ["A", "B"], DiffOptions(window=3))
    mine = d.per_step[0]
    theirs = (
        summarize(run, ["split", "role", "step"]).select(mine.columns).sort("split", "role", "step", nulls_last=True)
    )
    assert mine.height == theirs.height > 0
    for col in mine.columns:
        if mine[col].dtype == pl.Float64:
            assert np.allclose(mine[col].to_numpy(), theirs[col].to_numpy(), equal_nan=True, rtol=1e-12), col
        else:
            assert mine[col].to_list() == theirs[col].to_list(), col


def test_cli_defaults_agree_with_the_library_and_start_light():
    import subprocess
    import sys

    from runlog.analysis import diff as D
    from runlog.cli import diff_cmd

    assert (diff_cmd.DEFAULT_WINDOW, diff_cmd.DEFAULT_BOOT) == (D.DEFAULT_WINDOW, D.DEFAULT_BOOT)
    code = "import sys, runlog.cli.app; print('numpy' in sys.modules, 'runlog.analysis.diff' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _diff_twins(tmp_path: Path, rewards: dict[int, list[float]]) -> Any:
    """``diff`` (window 3) of two runs A and B of one solver with these rewards per step, in groups of four."""
    paths = []
    for name in ("A", "B"):
        with RunWriter(tmp_path / name, name=name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
            for step, values in rewards.items():
                rows = [
                    {"group_id": f"{step}-{i // 4}", "reward": r, "roles": {"solver": {"reward": r, "kl": 0.0}}}
                    for i, r in enumerate(values)
                ]
                w.log_samples(step, rows)
        paths.append(tmp_path / name)
    return diff_runs([open_run(p) for p in paths], ["A", "B"], DiffOptions(window=3))


def test_the_best_window_is_the_one_whose_samples_score_highest(tmp_path: Path) -> None:
    """Steps of few valid samples must not pull the best window their way: the window is chosen by the mean
    over its samples, the figure it reports, and no window's mean over samples is higher (an independent
    count over the written rewards). Step 2 has one valid sample at 1.0 among NaNs: by the mean of the
    per-step means, the windows holding it would win."""
    rewards: dict[int, list[float]] = {}
    rng = random.Random(5)
    for step in range(12):
        if step == 2:
            rewards[step] = [1.0] + [float("nan")] * 15
        else:
            rewards[step] = [min(1.0, max(0.0, 0.4 + 0.02 * step + rng.gauss(0, 0.05))) for _ in range(16)]
    d = _diff_twins(tmp_path, rewards)
    best = _row(d.points, role="solver", metric="reward", point="best")
    end = _row(d.points, role="solver", metric="reward", point="end")

    def window_mean(first: int) -> float:
        vals = [v for s in range(first, first + 3) for v in rewards[s] if v == v]
        return sum(vals) / len(vals)

    means = {first: window_mean(first) for first in range(10)}
    top = max(means, key=lambda k: means[k])
    assert best["steps"] == f"{top}..{top + 2}"
    assert best["value"] == pytest.approx(means[top], rel=1e-12)
    assert best["value"] >= end["value"]
    # The old rule (mean of per-step means) would have picked a window with step 2 in it.
    by_step = {s: sum(v for v in vals if v == v) / sum(1 for v in vals if v == v) for s, vals in rewards.items()}
    old = max(range(10), key=lambda k: sum(by_step[s] for s in range(k, k + 3)) / 3)
    assert old in (0, 1, 2) and old != top


@pytest.mark.parametrize("bad", [float("-inf"), float("inf")])
def test_the_best_window_counts_an_infinite_reward_as_a_value(tmp_path: Path, bad: float) -> None:
    """±inf is a value, as in summarize: a window holding a -inf reward has a mean of -inf and is not the best
    (the finite steps alone once chose it, and the point then reported -inf, with no interval); one holding
    +inf is the best, and its figure is +inf. The best window and its figure agree with an independent count."""
    rng = random.Random(9)
    rewards = {s: [min(1.0, max(0.0, 0.3 + 0.03 * s + rng.gauss(0, 0.05))) for _ in range(8)] for s in range(12)}
    rewards[9][0] = bad  # step 9: the highest finite rewards, and one infinite value
    d = _diff_twins(tmp_path, rewards)
    best = _row(d.points, role="solver", metric="reward", point="best")
    means = {}
    for first in range(10):
        vals = [v for s in range(first, first + 3) for v in rewards[s]]
        means[first] = float(np.mean(vals))
    top = max(means, key=lambda k: means[k])  # the first on ties
    assert best["steps"] == f"{top}..{top + 2}"
    if bad > 0:
        assert top == 7 and best["value"] == float("inf")
    else:
        assert 9 not in range(top, top + 3) and best["value"] == pytest.approx(means[top], rel=1e-12)


def test_config_values_are_shown_inert(tmp_path: Path, pair, cli) -> None:
    """A config value holding an escape sequence or a bidi override ("Trojan Source") is shown escaped in the
    terminal table, as every other text from the data is."""
    b = write_run(tmp_path / "B", seed=2, steps=4, config={"lr": "\x1b[31mred\u202eevil", "optimizer": "x"})
    res = cli("diff", pair[0], b)
    assert "\u202e" not in res.stdout and "\x1b" not in res.stdout
    assert "\\u202e" in res.stdout and "\\x1b" in res.stdout


def test_findings_of_the_total_and_of_samples_without_roles_are_told_apart(cli) -> None:
    """flink_mixed has NaN total rewards and NaN rewards of samples without per-role data: two findings of one
    kind without a role, shown with their subject, and their role as "-" (not "(unknown)")."""
    from conftest import SAMPLE_RUNS

    res = cli("diff", SAMPLE_RUNS / "debate_grpo", SAMPLE_RUNS / "flink_mixed", "--split", "train", "--findings",
              "-f", "json")  # fmt: skip
    rows = [r for r in json.loads(res.stdout)["findings"] if r["kind"] == "nan_rewards" and r["role"] is None]
    assert sorted(str(r["subject"]) for r in rows) == ["None", "total"]
    table = cli("diff", SAMPLE_RUNS / "debate_grpo", SAMPLE_RUNS / "flink_mixed", "--split", "train", "--findings")
    assert "(unknown)" not in table.stdout.split("The doctor's findings")[1]
