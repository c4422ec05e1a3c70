"""``runlog doctor``: the fifteenth audit's findings (a detection-calibration audit over synthetic GRPO runs).

1. A KL that grows smoothly by a steady factor a step from below ``kl_floor`` (1e-5 to 1e-2) was a
   ``kl_blowup`` error: every value under the floor was clamped to it, so the series read flat, then rising.
3. The scalars were never read: a run whose loss went NaN was called healthy, without a word on the scalars.
4. The diversity message said "within prompt groups" in a run that has none.

Runs are written with the real ``RunWriter``; every expected number is the planted truth or counted here with
numpy from the values written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from runlog import RunWriter, open_run
from runlog.analysis.doctor import diagnose
from runlog.cli.app import app

WORDS = [f"w{i}" for i in range(300)]


def write_run(
    path: Path,
    steps: int,
    *,
    kl: Callable[[int, np.random.Generator], float] = lambda st, rng: 0.01,
    completion: Callable[[int, int, np.random.Generator], str] | None = None,
    groups: bool = True,
    scalars: Callable[[int], dict[str, float]] | None = None,
    samples: bool = True,
    seed: int = 0,
) -> list[float]:
    """One role (solver), 32 samples a step in prompt groups of 8 (or none), reward rising slowly; returns the
    per-step KL written (one value a step, the same for each sample)."""
    rng = np.random.default_rng(seed)
    completion = completion or (lambda st, i, rng: " ".join(rng.choice(WORDS, size=12)))
    kls = []
    with RunWriter(path, name=path.name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for st in range(steps):
            k = kl(st, rng)
            kls.append(k)
            if samples:
                rows = []
                for i in range(32):
                    r = float(np.clip(rng.normal(0.3 + 0.004 * st, 0.2), 0, 1))
                    row: dict[str, Any] = {
                        "completion": completion(st, i, rng),
                        "roles": [{"role": "solver", "reward": r, "kl": k}],
                        "reward": r,
                    }
                    if groups:
                        row.update(group_id=f"s{st}-g{i // 8}", prompt=f"prompt {i // 8} at {st}")
                    rows.append(row)
                w.log_samples(st, rows)
            if scalars is not None:
                w.log_scalars(st, scalars(st))
    return kls


# 1. kl_blowup: a smooth rise through kl_floor is no jump


@pytest.mark.parametrize("steps", [60, 200])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_kl_growing_smoothly_from_below_the_floor_is_not_a_blowup(tmp_path: Path, steps: int, seed: int) -> None:
    """KL 1e-5 at step 0 to 1e-2 at the last, a steady factor a step with log-normal noise (sigma 0.2): no
    step is a jump (the audit: 'KL jumped to 0.0026 from step 18 on' where KL merely crossed 1e-4)."""
    kls = write_run(
        tmp_path / "run",
        steps,
        kl=lambda st, rng: 1e-5 * 1000 ** (st / (steps - 1)) * math.exp(rng.normal(0, 0.2)),
        seed=seed,
    )
    assert min(kls) < 1e-4 < max(kls)  # it does cross the floor
    found = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "kl_blowup"]
    assert found == [], [f.message for f in found]


@pytest.mark.parametrize("factor", [20, 50])
def test_a_kl_jump_on_a_smoothly_growing_kl_is_still_a_blowup_at_its_step(tmp_path: Path, factor: int) -> None:
    """The same growth, with a sustained x20 (x50) from step 35: still a blow-up, at the step."""
    write_run(
        tmp_path / "run",
        60,
        kl=lambda st, rng: 1e-5 * 1000 ** (st / 59) * math.exp(rng.normal(0, 0.2)) * (factor if st >= 35 else 1),
    )
    [f] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "kl_blowup"]
    assert f.onset_step == 35, f.as_dict()


def test_kl_exactly_zero_then_a_level_is_still_a_blowup_from_zero(tmp_path: Path) -> None:
    """KL 0 (the policy was the reference) until step 20, then 0.01: a KL of 0 is raised to the floor (log 0
    has no value), and the rise is said from 0, as before."""
    write_run(tmp_path / "run", 40, kl=lambda st, rng: 0.0 if st < 20 else 0.01 * math.exp(rng.normal(0, 0.1)))
    [f] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "kl_blowup"]
    assert f.onset_step == 20 and f.evidence["kl_before_p90"] == 0.0, f.as_dict()


# 3. The scalars: non-finite values found, and never taken as checked


def test_a_loss_gone_nan_is_a_scalar_nonfinite_warning(tmp_path: Path) -> None:
    """train/loss NaN from step 30 of 60 and train/grad_norm inf from step 40: one warning naming both keys,
    onset 30, with each key's first step and count; the exit code is 1."""

    def scalars(st: int) -> dict[str, float]:
        return {
            "train/loss": math.nan if st >= 30 else 1.0 / (1 + st),
            "train/grad_norm": math.inf if st >= 40 else 1.0,
            "train/entropy": 0.5,
        }

    write_run(tmp_path / "run", 60, scalars=scalars)
    diag = diagnose(open_run(tmp_path / "run"))
    [f] = [f for f in diag.findings if f.evidence.get("problem_kind") == "scalar_nonfinite"]
    assert (f.kind, f.severity, f.onset_step) == ("data_problem", "warning", 30)
    keys = {k["key"]: k for k in f.evidence["keys"]}
    assert set(keys) == {"train/loss", "train/grad_norm"}
    assert (keys["train/loss"]["first_step"], keys["train/loss"]["count"], keys["train/loss"]["nan"]) == (30, 30, 30)
    assert (keys["train/grad_norm"]["first_step"], keys["train/grad_norm"]["count"]) == (40, 20)
    assert keys["train/grad_norm"]["nan"] == 0
    assert "train/loss from step 30 (30 value(s), NaN)" in f.message, f.message
    assert "train/grad_norm from step 40 (20 value(s), infinite)" in f.message, f.message
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "run"), "--format", "json"])
    assert result.exit_code == 1, result.output
    assert any(x["evidence"].get("problem_kind") == "scalar_nonfinite" for x in json.loads(result.stdout)["findings"])


def test_a_scalars_only_run_with_a_nan_loss_is_not_exit_0(tmp_path: Path) -> None:
    """No samples at all, the loss NaN from step 30: the audit's run got "findings: []" and exit 0."""
    write_run(tmp_path / "run", 60, samples=False, scalars=lambda st: {"train/loss": math.nan if st >= 30 else 1.0})
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "run"), "--format", "json"])
    assert result.exit_code == 1, result.output
    [f] = json.loads(result.stdout)["findings"]
    assert f["evidence"]["problem_kind"] == "scalar_nonfinite" and f["onset_step"] == 30


def test_scalars_that_are_finite_or_nan_now_and_then_give_no_finding_but_a_note(tmp_path: Path) -> None:
    """A key NaN at a few steps only (then finite again) and one NaN at the last step only (fewer than
    min_segment) are not judged; the run's 3 keys are said in a note naming what was not checked."""

    def scalars(st: int) -> dict[str, float]:
        return {
            "a": math.nan if st in (10, 11, 12, 13) else 1.0,
            "b": math.nan if st == 59 else 2.0,
            "c": float(st),
        }

    write_run(tmp_path / "run", 60, scalars=scalars)
    diag = diagnose(open_run(tmp_path / "run"))
    assert not [f for f in diag.findings if f.evidence.get("problem_kind") == "scalar_nonfinite"]
    [note] = [n for n in diag.all_notes if "scalars" in n]
    assert "(3 key(s))" in note and "runlog summarize RUN --scalars" in note and "not judged" in note


# 4. diversity_collapse without prompt groups says what was measured


def test_the_diversity_message_of_a_run_without_groups_does_not_say_prompt_groups(tmp_path: Path) -> None:
    """No group_id and no prompt: diversity is measured over each step's texts as a whole; the solver's texts
    all one from step 30 on. The message said "within prompt groups"."""
    write_run(
        tmp_path / "run",
        60,
        groups=False,
        completion=lambda st, i, rng: "the same answer every time" if st >= 30 else " ".join(rng.choice(WORDS, 12)),
    )
    diag = diagnose(open_run(tmp_path / "run"))
    [f] = [f for f in diag.findings if f.kind == "diversity_collapse"]
    assert "prompt groups" not in f.message.replace("(no prompt groups)", ""), f.message
    assert "across each step (no prompt groups)" in f.message, f.message
    assert f.onset_step == 30


def test_the_diversity_message_of_a_run_with_groups_still_says_within_prompt_groups(tmp_path: Path) -> None:
    write_run(
        tmp_path / "run",
        60,
        completion=lambda st, i, rng: "the same answer every time" if st >= 30 else " ".join(rng.choice(WORDS, 12)),
    )
    [f] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "diversity_collapse"]
    assert "within prompt groups collapsed from step 30 on" in f.message, f.message


@pytest.mark.parametrize("decades", [2, 3])
def test_a_x10_jump_after_a_steady_rise_of_decades_is_a_blowup(tmp_path: Path, decades: int) -> None:
    """A review: a KL rising 2-3 decades by a steady factor, then a sustained x10 at step 40 of 60, was no finding
    (the trend was extrapolated from the middle of the rise, which overshot where the jump landed)."""
    write_run(
        tmp_path / "run",
        60,
        kl=lambda st, rng: (
            10 ** (-2 - decades + decades * min(st, 40) / 40) * math.exp(rng.normal(0, 0.2)) * (10 if st >= 40 else 1)
        ),
    )
    found = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "kl_blowup"]
    assert len(found) == 1 and found[0].onset_step is not None and 28 <= found[0].onset_step <= 40, found


def test_an_eval_metric_nan_between_evals_is_no_scalar_nonfinite(tmp_path: Path) -> None:
    """A review: `eval/acc` finite every 20th step and NaN at the others ends in NaN after its last eval: it was
    called a diverged loss (warning, exit 1). A key finite at fewer than 90 % of its steps before the tail is not
    judged; a dense loss that goes NaN still is."""
    write_run(
        tmp_path / "run",
        60,
        scalars=lambda st: {
            "eval/acc": (0.5 + st / 200) if st % 20 == 0 else math.nan,
            "train/loss": 1.0 / (1 + st) if st < 50 else math.nan,
        },
    )
    [f] = [f for f in diagnose(open_run(tmp_path / "run")).findings if f.kind == "data_problem"]
    assert [k["key"] for k in f.evidence["keys"]] == ["train/loss"] and f.onset_step == 50, f.as_dict()
