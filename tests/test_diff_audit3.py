"""``runlog diff`` defects a third audit reproduced, each checked against a figure made here from the files
written (pyarrow and numpy, not runlog's reader):

F1. a role with one valid reward per step has no sample SD (ddof=1): its per-step Welch z is undefined, so
    pure noise gives no "stable" onset (the SD was taken as 0: every step's z infinite), and one side of one
    sample does not shrink the SE to the other side's alone;
F3. the best window is chosen among windows of which at least half the steps hold rewards of the role (a
    role that begins late had its "best" made by one step), and a window with steps without the role's
    rewards is said in a note (an empty start window included);
F5. ``-o d.png`` (an image's name) is refused, pointing to ``runlog plot A --diff B``;
F6. a folder of runs given to diff gets diff's fix (``runlog diff A 'runs/*'``), not summarize's ``--by run``;
F7. docs/diff.md says what the bootstrap's Monte-Carlo noise does to the digits shown."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.diff import DiffOptions, diff_runs, step_z

from conftest import ROOT, SAMPLE_RUNS

STEPS = 40
N = 16  # samples per step: 4 prompts of 4


def write_run(path: Path, solver: np.ndarray, verifier: np.ndarray) -> Path:
    """A run of ``STEPS`` steps: ``solver[s]`` and ``verifier[s]`` are step ``s``'s rewards of each role (NaN:
    no valid reward), ``N`` samples."""
    with RunWriter(path, name=path.name, roles=["solver", "verifier"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            w.log_samples(
                s,
                {
                    "reward": np.nan_to_num(solver[s]),
                    "solver_reward": solver[s],
                    "verifier_reward": verifier[s],
                    "group_id": [f"g{s}-{i // 4}" for i in range(N)],
                    "prompt": [f"q{s}-{i // 4}" for i in range(N)],
                },
            )
    return path


def raw_rewards(path: Path, split: str = "train") -> dict[str, dict[int, list[float]]]:
    """Per role and step, the valid rewards in the run's sample files (pyarrow, the native ``roles`` list)."""
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for f in sorted((path / "samples" / split).glob("step_*.parquet")):
        for row in pq.read_table(f, columns=["step", "roles"]).to_pylist():
            for r in row["roles"] or []:
                if r["reward"] is not None and not math.isnan(r["reward"]):
                    out[r["role"]][row["step"]].append(r["reward"])
    return out


def welch_z(a: dict[int, list[float]], b: dict[int, list[float]], steps: list[int]) -> np.ndarray:
    """The per-step Welch z of b - a (NaN where a side has fewer than two values: no sample SD)."""
    z = []
    for s in steps:
        xa, xb = np.array(a.get(s, [])), np.array(b.get(s, []))
        if len(xa) < 2 or len(xb) < 2:
            z.append(np.nan)
            continue
        se = math.sqrt(xa.var(ddof=1) / len(xa) + xb.var(ddof=1) / len(xb))
        d = xb.mean() - xa.mean()
        z.append(d / se if se > 0 else (math.copysign(math.inf, d) if d else 0.0))
    return np.array(z)


def sustained(z: np.ndarray, crit: float, persist: float = 0.8, min_run: int = 3) -> int | None:
    """The documented onset rule, by a plain scan: the first index at or above ``crit`` from which at least
    ``persist`` of the remaining non-NaN values, and ``min_run`` of them, are too."""
    for i, v in enumerate(z):
        if np.isnan(v) or v < crit:
            continue
        rest = z[i:][~np.isnan(z[i:])]
        beyond = int((rest >= crit).sum())
        if beyond >= persist * len(rest) and beyond >= min_run:
            return i
    return None


def one_per_step(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Per step, ``N`` rewards of which only the first is valid: ``values[s]``."""
    out = np.full((STEPS, N), np.nan)
    out[:, 0] = values
    return out


def role_row(d, role: str) -> dict:
    return d.roles.filter(pl.col("role") == role).to_dicts()[0]


# F1 -----------------------------------------------------------------------------------------------------------


def test_one_sample_per_step_gives_no_onset_in_noise(tmp_path: Path) -> None:
    """Both runs' verifier has one valid reward per step from the same N(0.5, 0.2); in the last ten steps the
    run's happens to lie 0.01 above the baseline's. With one value a side has no SD: no step has a z, so no
    onset (the SD taken as 0 made each step's z +inf, and ``ahead_from`` the first of those steps)."""
    rng = np.random.default_rng(7)
    solver = rng.normal(0.5, 0.1, (STEPS, N))
    va = rng.normal(0.5, 0.2, STEPS)
    vb = rng.normal(0.5, 0.2, STEPS)
    vb[30:] = va[30:] + 0.01
    a = write_run(tmp_path / "a", solver, one_per_step(rng, va))
    b = write_run(tmp_path / "b", solver, one_per_step(rng, vb))
    ra, rb = raw_rewards(a), raw_rewards(b)
    assert all(len(v) == 1 for v in ra["verifier"].values()) and len(ra["verifier"]) == STEPS
    truth = welch_z(ra["verifier"], rb["verifier"], list(range(STEPS)))
    assert np.isnan(truth).all()
    d = diff_runs([open_run(a), open_run(b)], ["a", "b"], DiffOptions(seed=0))
    row = role_row(d, "verifier")
    assert (row["ahead_from"], row["behind_from"]) == (None, None)


def test_one_side_of_one_sample_has_no_z(tmp_path: Path) -> None:
    """The baseline's verifier has 16 rewards per step, the run's one, 0.15 above the baseline's step mean:
    Welch's z needs the run's SD, which one value has not; the SE is not the baseline's alone (0.2/4 = 0.05,
    a z of 3 at every step: ``ahead_from 0`` before)."""
    rng = np.random.default_rng(3)
    solver = rng.normal(0.5, 0.1, (STEPS, N))
    va = rng.normal(0.5, 0.2, (STEPS, N))
    a = write_run(tmp_path / "a", solver, va)
    b = write_run(tmp_path / "b", solver, one_per_step(rng, va.mean(axis=1) + 0.15))
    ra, rb = raw_rewards(a), raw_rewards(b)
    assert np.isnan(welch_z(ra["verifier"], rb["verifier"], list(range(STEPS)))).all()
    row = role_row(diff_runs([open_run(a), open_run(b)], ["a", "b"]), "verifier")
    assert (row["ahead_from"], row["behind_from"]) == (None, None)
    z = step_z(
        np.array([0.0, 0.0, 0.0]),
        np.array([0.2, 0.2, 0.0]),
        np.array([16, 1, 4]),
        np.array([0.15, 0.15, 1.0]),
        np.array([np.nan, np.nan, 0.0]),
        np.array([1, 1, 4]),
    )
    assert np.isnan(z[0]) and np.isnan(z[1]) and z[2] == math.inf  # two or more values and no spread: infinite


def test_onsets_with_two_samples_per_step_are_welchs(tmp_path: Path) -> None:
    """With two valid rewards per step on both sides the onset is still found, at the step the documented
    rule gives on the Welch z computed here."""
    rng = np.random.default_rng(11)
    solver = rng.normal(0.5, 0.1, (STEPS, N))
    va = np.full((STEPS, N), np.nan)
    vb = np.full((STEPS, N), np.nan)
    va[:, :2] = rng.normal(0.5, 0.05, (STEPS, 2))
    vb[:, :2] = rng.normal(0.5, 0.05, (STEPS, 2)) + np.where(np.arange(STEPS) >= 24, 0.4, 0.0)[:, None]
    a, b = write_run(tmp_path / "a", solver, va), write_run(tmp_path / "b", solver, vb)
    z = welch_z(raw_rewards(a)["verifier"], raw_rewards(b)["verifier"], list(range(STEPS)))
    crit = NormalDist().inv_cdf(0.975)
    expected = sustained(z, crit)
    assert expected is not None and 20 <= expected <= 26
    row = role_row(diff_runs([open_run(a), open_run(b)], ["a", "b"]), "verifier")
    assert row["ahead_from"] == expected and row["behind_from"] == sustained(-z, crit)


# F3 -----------------------------------------------------------------------------------------------------------


def write_sparse(path: Path, first: int, mu, seed: int) -> Path:
    """The audit's S_base / S_sparse: role ``solver`` at every step, ``critic`` from step ``first`` on, its
    rewards around ``mu(step)`` (sd 0.05)."""
    rng = np.random.default_rng(seed)
    with RunWriter(path, name=path.name, roles=["solver", "critic"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            rows = []
            for i in range(N):
                roles = [{"role": "solver", "reward": float(rng.normal(0.5, 0.1)), "kl": 0.1}]
                if s >= first:
                    roles.append({"role": "critic", "reward": float(rng.normal(mu(s), 0.05)), "kl": 0.1})
                rows.append({"reward": 1.0, "roles": roles, "group_id": f"g{s}-{i // 4}", "prompt": f"p{s}-{i // 4}"})
            w.log_samples(s, rows)
    return path


def best_scan(by_step: dict[int, list[float]], steps: list[int], w: int) -> tuple[list[int], float, int]:
    """The best window by the documented rule, by a plain scan: the windows of ``w`` consecutive ``steps`` of
    which at least half (rounded up) hold values compete (none such: those holding any); the highest mean over
    the window's values, the first on ties. (window, mean, values)."""
    windows = [steps[i : i + w] for i in range(len(steps) - w + 1)]
    held = [sum(1 for s in win if by_step.get(s)) for win in windows]
    need = math.ceil(w / 2)
    competing = [k for k, h in enumerate(held) if h >= need] or [k for k, h in enumerate(held) if h > 0]
    best, best_mean = None, -math.inf
    for k in competing:
        values = [v for s in windows[k] for v in by_step.get(s, [])]
        m = float(np.mean(values))
        if m > best_mean:
            best, best_mean = k, m
    assert best is not None
    win = windows[best]
    return win, best_mean, sum(len(by_step.get(s, [])) for s in win)


@pytest.mark.parametrize(("first", "window"), [(25, 10), (25, 30), (38, 10)])
def test_the_best_window_of_a_role_that_begins_late(tmp_path: Path, first: int, window: int) -> None:
    """S_sparse's critic begins at step ``first`` with a spike (1.0), then 0.5; S_base's is 0.6 throughout.
    The best window is the scan's (before: 16..25, the one step of the spike, "ahead by 0.39"), and the notes
    say how many steps of each window hold the critic's rewards."""
    base = write_sparse(tmp_path / "S_base", 0, lambda s: 0.6, 41)
    sparse = write_sparse(tmp_path / "S_sparse", first, lambda s: 1.0 if s == first else 0.5, 42)
    d = diff_runs([open_run(base), open_run(sparse)], ["S_base", "S_sparse"], DiffOptions(window=window, seed=0))
    steps = list(range(STEPS))
    critic = raw_rewards(sparse)["critic"]
    win, mean, n = best_scan(critic, steps, window)
    bwin, bmean, bn = best_scan(raw_rewards(base)["critic"], steps, window)
    best = d.points.filter(
        (pl.col("role") == "critic") & (pl.col("metric") == "reward") & (pl.col("point") == "best")
    ).to_dicts()[0]
    assert best["steps"] == f"{win[0]}..{win[-1]}" and best["baseline_steps"] == f"{bwin[0]}..{bwin[-1]}"
    assert best["value"] == pytest.approx(mean, rel=1e-12) and best["n"] == n
    assert best["baseline"] == pytest.approx(bmean, rel=1e-12) and best["baseline_n"] == bn
    held = sum(1 for s in win if critic.get(s))
    start = steps[:window]
    start_held = sum(1 for s in start if critic.get(s))
    note = next(x for x in d.notes if x.startswith("S_sparse in split train, role critic:"))
    assert f"start {start[0]}..{start[-1]}: {start_held} of {window}" in note
    assert held < window and f"best {win[0]}..{win[-1]}: {held} of {window}" in note
    if first == 25 and window == 10:
        assert (win[0], held) == (20, 5) and best["verdict"] == "tie"  # not "ahead" by a one-step window
    assert not any(x.startswith("S_base in split train, role") for x in d.notes)  # every step holds its rewards


# F5, F6 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.png", "d.svg", "d.PDF", "d.jpg"])
@pytest.mark.parametrize("fmt", [[], ["--format", "json"]])
def test_an_image_name_is_refused(cli, tmp_path: Path, name: str, fmt: list[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.1, (STEPS, N))
    a, b = write_run(tmp_path / "a", x, x), write_run(tmp_path / "b", x, x)
    out = tmp_path / name
    res = cli("diff", a, b, "-o", out, *fmt)
    assert res.exit_code == 2 and not out.exists()
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"Error: -o {name}: diff writes tables")
    assert f"runlog plot {a} --diff {b} -o {out}" in res.stderr


def test_a_fleet_folder_gets_diffs_fix(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.1, (STEPS, N))
    runs = tmp_path / "runs"
    for k in ("a", "b", "c"):
        write_run(runs / k, x, x)
    for args, baseline in (([runs / "a", runs], runs / "a"), ([runs, runs / "a"], runs / "a")):
        res = cli("diff", *args)
        assert res.exit_code == 2 and res.stderr.count("\n") == 1
        assert res.stderr.startswith(f"Error: {runs}: holds 3 runs (a, b, c): ")
        assert f"(runlog diff {baseline} '{runs}/*')" in res.stderr and "--by run" not in res.stderr
    ok = cli("diff", runs / "a", f"{runs}/*", "-f", "json")  # the fix given works
    assert ok.exit_code == 0 and [r["name"] for r in json.loads(ok.stdout)["runs"]] == ["a", "b", "c"]


# F7 -----------------------------------------------------------------------------------------------------------


def test_the_docs_say_what_the_bootstrap_noise_moves() -> None:
    text = " ".join((ROOT / "docs" / "diff.md").read_text().split())
    assert "the seed only moves the intervals' last digits" not in text
    assert "Monte-Carlo noise of a few percent of its width" in text
    assert "the second or third digit shown can move with `--seed`, and with the other runs in the command" in text
    assert "`--boot 10000` narrows" in text


def test_flink_mixed_windows_say_their_steps_without_roles() -> None:
    """The bundled flink_mixed: its steps 0..9 are v0 files without per-role columns (their schemas, read here),
    so each role's start window holds none of its rewards, and the verifier's best window, which starts at step 9,
    holds them at 9 of its 10 steps: both said in notes."""

    def columns(step: int) -> list[str]:
        folder = SAMPLE_RUNS / "flink_mixed" / "flink_logs"
        path = folder / f"batch_debug_data_train_{step}.parquet"
        if path.exists():
            return pq.read_schema(path).names
        return pacsv.read_csv(folder / f"batch_debug_data_train_{step}.csv").schema.names

    d = diff_runs([open_run(SAMPLE_RUNS / "debate_grpo"), open_run(SAMPLE_RUNS / "flink_mixed")], ["native", "flink"])
    for role in ("solver", "verifier", "judge"):
        held = sum(f"{role}_reward" in columns(s) for s in range(10))
        assert any(
            n.startswith("flink in split train, ") and role in n and f"start 0..9: {held} of 10" in n for n in d.notes
        )
    best = d.points.filter(
        (pl.col("role") == "verifier") & (pl.col("metric") == "reward") & (pl.col("point") == "best")
    ).to_dicts()[0]
    first, last = (int(x) for x in best["steps"].split(".."))
    held = sum("verifier_reward" in columns(s) for s in range(first, last + 1))
    assert held >= 5 and any(f"best {first}..{last}: {held} of 10" in n for n in d.notes if "verifier" in n)
