"""``runlog doctor``: the twelfth audit's findings (a reward collapse's onset carried steps early by one noisy
step, Self-BLEU watched for a drop, a saturating 0/1 reward called "no learning signal", thresholds out of
range crashing or silently switching checks off).

Runs are written with the real ``RunWriter`` (roles solver and judge, prompt groups of 8); every expected
number is the planted truth or is counted here from the values written (numpy), never with runlog's helpers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from runlog import RunWriter, open_run
from runlog.analysis.changepoint import find_shift
from runlog.analysis.doctor import DoctorConfig, diagnose
from runlog.cli.app import app

ROLES = ("solver", "judge")
GROUPS, GSIZE = 4, 8
WORDS = [f"w{i}" for i in range(300)]

Reward = Callable[[int, int, str, np.random.Generator], float]


def write_run(
    path: Path,
    steps: int,
    reward: Reward,
    *,
    seed: int = 0,
    completion: Callable[[int, int, np.random.Generator], str] | None = None,
    kl: Callable[[int], float] | None = None,
) -> dict[str, np.ndarray]:
    """Write the run; returns each role's rewards as a (steps, samples) array."""
    rng = np.random.default_rng(seed)
    completion = completion or (lambda st, i, rng: " ".join(rng.choice(WORDS, size=12)))
    kl = kl or (lambda st: 0.01)
    written: dict[str, list[list[float]]] = {r: [] for r in ROLES}
    with RunWriter(path, name=path.name, roles=list(ROLES), durable=False, clock=lambda: 1.7e9) as w:
        for st in range(steps):
            rows = []
            for r in ROLES:
                written[r].append([])
            for i in range(GROUPS * GSIZE):
                rr = {r: reward(st, i, r, rng) for r in ROLES}
                for r in ROLES:
                    written[r][-1].append(rr[r])
                rows.append(
                    {
                        "group_id": f"s{st}-g{i // GSIZE}",
                        "prompt": f"prompt {i // GSIZE} at {st}",
                        "completion": completion(st, i, rng),
                        "roles": [{"role": r, "reward": rr[r], "kl": kl(st)} for r in ROLES],
                        "reward": float(sum(rr.values())),
                    }
                )
            w.log_samples(st, rows)
    return {r: np.array(v, dtype=float) for r, v in written.items()}


def findings(path: Path, config: DoctorConfig | None = None, kind: str | None = None) -> list[Any]:
    found = diagnose(open_run(path), config).findings
    return [f for f in found if kind is None or f.kind == kind]


# 1. A step change's onset is the step itself


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 5])
def test_a_lone_noisy_step_long_before_a_collapse_is_not_its_onset(tmp_path: Path, seed: int) -> None:
    """The solver's reward rises slowly (0.002 a step, within-step SD 0.25) and drops by 2 SDs at step 22 of
    75; step 12 alone dips a third of the way down (past the 30 % threshold, short of the midpoint). The
    onset was step 12: one point beyond, then 53 of 53 after the collapse (54 of 63, 86 %) passed 80 %."""
    onset, noisy = 22, 12

    def reward(st: int, i: int, role: str, rng: np.random.Generator) -> float:
        level = 0.3 + 0.002 * st
        if role == "solver" and st >= onset:
            level -= 0.5
        if role == "solver" and st == noisy:
            level -= 0.2
        return float(rng.normal(level, 0.25))

    written = write_run(tmp_path / "run", 75, reward, seed=seed)
    means = written["solver"].mean(axis=1)
    before, after = np.median(means[:onset]), np.median(means[onset:])
    threshold = before - 0.3 * (before - after)
    beyond = means < threshold
    assert beyond[noisy] and beyond[onset:].all()  # the planted shape is what the test says
    assert not beyond[noisy + 1 : onset].any()
    (f,) = findings(tmp_path / "run", kind="reward_collapse")
    assert (f.role, f.onset_step) == ("solver", onset)


def test_find_shift_onset_of_a_step_with_an_early_outlier_and_of_a_ramp() -> None:
    """The unit rule: a clean step with one earlier point beyond the threshold starts at the step; a ramp still
    starts where it passes 30 % of the way (not at the least-squares split in its middle)."""
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(30), np.zeros(40)] + rng.normal(0, 0.02, 70)
    y[24] = 0.6  # beyond the 0.7 threshold, once
    shift = find_shift(y, direction="down", min_delta=0.3)
    assert shift is not None and shift.onset == 30
    ramp = np.r_[np.ones(30), np.linspace(1, 0, 11)[1:], np.zeros(30)]
    shift = find_shift(ramp, direction="down", min_delta=0.3)
    first_past = int(np.flatnonzero(ramp < 1 - 0.3 * 1)[0])  # 30 % of the way from 1 to 0
    assert shift is not None and shift.onset == first_past == 33


# 2. Self-BLEU (higher: less diverse) is watched for a rise


def _texts(collapse_from: int | None, recover_from: int | None) -> Callable[[int, int, np.random.Generator], str]:
    def completion(st: int, i: int, rng: np.random.Generator) -> str:
        same = (collapse_from is not None and st >= collapse_from) or (recover_from is not None and st < recover_from)
        if same:
            return f"the same answer to prompt {i // GSIZE} every time"
        return " ".join(rng.choice(WORDS, size=12))

    return completion


def _steady(st: int, i: int, role: str, rng: np.random.Generator) -> float:
    return float(rng.normal(0.5, 0.25))


def test_self_bleu_rising_is_a_diversity_collapse_and_falling_is_not(tmp_path: Path) -> None:
    """Every prompt group answers one text from step 30 (unique share 100 % -> 1/8): Self-BLEU-2 rises to 1.
    It gave no finding; a run whose texts recover at step 30 gave a collapse."""
    write_run(tmp_path / "div", 60, _steady, completion=_texts(30, None))
    write_run(tmp_path / "rec", 60, _steady, completion=_texts(None, 30))
    cfg = DoctorConfig(diversity_metric="self_bleu_2")
    (f,) = findings(tmp_path / "div", cfg, kind="diversity_collapse")
    assert f.onset_step == 30
    assert f.evidence["after"] == pytest.approx(1.0) and f.evidence["before"] < 0.2
    assert f.evidence["unique_frac_after"] == pytest.approx(1 / GSIZE)
    assert "rose" in f.message and "higher is less diverse" in f.message
    assert findings(tmp_path / "rec", cfg, kind="diversity_collapse") == []


# 3. A 0/1 reward that saturates is solved


def test_a_saturating_01_reward_is_solved_info_not_a_warning(tmp_path: Path) -> None:
    """p(correct) = min(1, 0.4 + step / 30): every prompt solved from step 18. The flat groups are all at 1.0
    (counted here); the few mixed groups of the ramp after the onset made it a "no learning signal" warning."""

    def reward(st: int, i: int, role: str, rng: np.random.Generator) -> float:
        if role == "judge":
            return float(rng.normal(0.5, 0.25))
        return float(rng.random() < min(1.0, 0.4 + st / 30))

    written = write_run(tmp_path / "run", 60, reward, seed=420)
    groups = written["solver"].reshape(60, GROUPS, GSIZE)
    flat = groups.min(axis=2) == groups.max(axis=2)
    onset_guess = int(np.flatnonzero(flat.mean(axis=1) >= 0.5)[0])
    assert (groups[onset_guess:].min(axis=2)[flat[onset_guess:]] == 1.0).all()  # every flat group is solved
    (f,) = findings(tmp_path / "run", kind="zero_advantage")
    assert f.role == "solver" and f.severity == "info" and f.evidence["solved"] is True


def test_a_reward_flat_below_its_best_is_still_a_warning(tmp_path: Path) -> None:
    """The same 0/1 reward, but from step 30 half the groups are flat at 0 and half at 1: not solved."""

    def reward(st: int, i: int, role: str, rng: np.random.Generator) -> float:
        if role == "judge":
            return float(rng.normal(0.5, 0.25))
        if st >= 30:
            return float((i // GSIZE) % 2)
        return float(rng.random() < 0.6)

    write_run(tmp_path / "run", 60, reward, seed=3)
    (f,) = findings(tmp_path / "run", kind="zero_advantage")
    assert f.role == "solver" and f.severity == "warning"


# 4. Thresholds out of range are usage errors, or said in a note


@pytest.mark.parametrize(
    ("setting", "allowed"),
    [
        ("kl_ratio=0", "kl_ratio > 1"),
        ("hack_length=-1", "hack_length > 0"),
        ("min_segment=-1", "min_segment >= 1"),
        ("min_segment=0", "min_segment >= 1"),
        ("persist=1.5", "0 < persist <= 1"),
        ("kl_warmup=1.0", "0 <= kl_warmup < 1"),
        ("diversity_drop=2", "0 < diversity_drop < 1"),
        ("min_z=-1", "min_z > 0"),
        ("kl_floor=-1", "kl_floor > 0"),
        ("nan_error=0", "0 < nan_error <= 1"),
    ],
)
def test_out_of_range_thresholds_are_usage_errors(tmp_path: Path, setting: str, allowed: str) -> None:
    """These crashed (math domain error, IndexError: exit 3) or switched a check off without a word."""
    write_run(tmp_path / "run", 10, _steady)
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "run"), "--set", setting])
    assert result.exit_code == 2, result.output
    name = setting.split("=")[0]
    assert f"--set {name}=" in result.output and f"allowed: {allowed}" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_a_min_segment_longer_than_the_run_says_the_trend_checks_were_skipped(tmp_path: Path) -> None:
    """min_segment=100 on 60 steps: no change point can be found; it said "healthy" with no note."""

    def reward(st: int, i: int, role: str, rng: np.random.Generator) -> float:
        return float(rng.normal(0.5 if st < 30 or role == "judge" else -0.5, 0.25))

    write_run(tmp_path / "run", 60, reward)
    assert findings(tmp_path / "run", kind="reward_collapse")  # found with the defaults
    diag = diagnose(open_run(tmp_path / "run"), DoctorConfig(min_segment=100))
    assert not [f for f in diag.findings if f.kind == "reward_collapse"]
    assert any("min_segment=100" in n and "skipped" in n for n in diag.notes)


def test_a_kl_warmup_that_leaves_too_few_steps_is_said(tmp_path: Path) -> None:
    write_run(tmp_path / "run", 40, _steady, kl=lambda st: 0.01 if st < 38 else 1.0)
    diag = diagnose(open_run(tmp_path / "run"), DoctorConfig(kl_warmup=0.95))
    assert any("kl_blowup not checked" in n and "kl_warmup=0.95" in n for n in diag.notes)


def test_a_kl_rising_from_zero_says_it_was_zero(tmp_path: Path) -> None:
    """KL exactly 0 for the first steps (the policy was the reference), then 0.01: the finding said "102x its
    earlier level (0.0001)", the floor, a level the run never had. It says the earlier level as it was."""
    import runlog as _runlog
    from runlog import open_run as _open_run
    from runlog.analysis.doctor import diagnose as _diagnose

    run = tmp_path / "run"
    rng = np.random.default_rng(3)
    kl_of = {s: (0.0 if s < 10 else 0.01) for s in range(40)}
    with _runlog.RunWriter(run, name="r", roles=["solver"]) as w:
        for s, kl in kl_of.items():
            rewards = rng.uniform(0, 1, 8)
            w.log_samples(
                s, [{"reward": float(r), "roles": {"solver": {"reward": float(r), "kl": kl}}} for r in rewards]
            )
    before = [kl_of[s] for s in range(10)]
    found = [f for f in _diagnose(_open_run(run)).findings if f.kind == "kl_blowup"]
    assert found  # a rise of 100x the floor: a blow-up by the rule, said with the level the run had
    for f in found:
        assert f.evidence["kl_before_p90"] == float(np.percentile(before, 90)) == 0.0
        assert "from 0 before (below kl_floor=0.0001" in f.message, f.message
        assert "its earlier level (0.0001)" not in f.message


def test_an_unreadable_writer_state_is_not_also_a_writer_still_writing(tmp_path: Path) -> None:
    """A closed, finished run whose ``.writer.p0.json`` was damaged: the state's own warning, and no
    "no process has closed its writer: still being written, or killed" beside it (audit a12)."""
    import json as _json

    run = tmp_path / "run"
    with RunWriter(run, name="r") as w:
        for s in range(3):
            w.log_samples(s, {"reward": [0.1, 0.9]})
    state = run / ".writer.p0.json"
    assert _json.loads(state.read_text())["state"] == "closed"
    state.write_text("{not json")
    kinds = [f.evidence.get("problem_kind") for f in diagnose(open_run(run)).findings if f.kind == "data_problem"]
    assert "writer_state_unreadable" in kinds
    assert "writer_not_closed" not in kinds


def test_a_noiseless_shift_has_an_infinite_z() -> None:
    """A noiseless series (0/1 components, a straight ramp then flat) fits its lines to float rounding: its z
    was 7.8e15 in the evidence, where ``Shift.z`` promises inf (audit a12)."""
    y = np.r_[np.linspace(0, 0.3, 20), np.ones(20)]
    shift = find_shift(y, direction="up", min_delta=0.1)
    assert shift is not None and shift.z == float("inf")
    noisy = y + np.random.default_rng(0).normal(0, 0.01, len(y))
    shift = find_shift(noisy, direction="up", min_delta=0.1)
    assert shift is not None and 10 < shift.z < 1e6
