"""``runlog doctor``: the sixteenth audit's doctor findings (false negatives).

1. ``kl_blowup``: a KL that rose three decades in warm-up (1e-5 to 1e-2 over 40 steps), held at 0.01, then
   jumped x20 was no finding: ``find_shift``'s one change point was the warm-up rise, the trend test rejected it,
   and the later jump was never looked at. A x50 there was found, from a step inside the plateau.
2. ``scalar_nonfinite``: a grad norm inf at some early steps (fp16 loss-scale overflow), then inf for good, was
   not judged: only keys finite at 90 % of their earlier steps were.

Runs are written with the real ``RunWriter``; every expected step is the planted truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.doctor import Finding, diagnose


def write_kl_run(path: Path, kl: np.ndarray, seed: int) -> None:
    """One role (solver), 8 samples a step, each with the step's KL times log-normal noise (sigma 0.2)."""
    rng = np.random.default_rng(seed)
    with RunWriter(path, name=path.name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for st, k in enumerate(kl):
            noisy = float(k * math.exp(rng.normal(0, 0.2)))
            rows = []
            for i in range(8):
                r = float(rng.random())
                rows.append(
                    {"reward": r, "roles": [{"role": "solver", "reward": r, "kl": noisy}], "group_id": f"{i // 4}"}
                )
            w.log_samples(st, rows)


def kl_findings(path: Path) -> list[Finding]:
    return [f for f in diagnose(open_run(path)).findings if f.kind == "kl_blowup"]


def rise_plateau(plateau: int, factor: float) -> np.ndarray:
    """KL 1e-5 to 1e-2 over 40 steps (warm-up), ``plateau`` steps at 0.01, then 20 steps at 0.01 x ``factor``."""
    parts = [np.logspace(-5, -2, 40), np.full(plateau, 0.01)]
    return np.concatenate(parts + ([np.full(20, 0.01 * factor)] if factor else []))


# 1. kl_blowup after a warm-up rise and a plateau


@pytest.mark.parametrize("plateau", [12, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_x20_jump_after_a_warmup_rise_and_a_plateau_is_a_blowup_at_its_step(
    tmp_path: Path, plateau: int, seed: int
) -> None:
    """The review's runs: rise, plateau, then 0.2 (x20) from step 40 + plateau: one kl_blowup, at that step,
    measured against the plateau (its 90th percentile within the noise of 0.01)."""
    write_kl_run(tmp_path / "run", rise_plateau(plateau, 20), seed)
    found = kl_findings(tmp_path / "run")
    assert [f.onset_step for f in found] == [40 + plateau], [f.message for f in found]
    assert 0.01 <= found[0].evidence["kl_before_p90"] <= 0.02 and 15 <= found[0].evidence["ratio"] <= 25


@pytest.mark.parametrize("seed", [2, 5])
def test_a_x50_jump_after_a_warmup_rise_is_said_from_its_step_not_from_the_plateau(tmp_path: Path, seed: int) -> None:
    """A x50 after 12 steps at 0.01 was found with the warm-up rise as its earlier level: the plateau sat above
    that level's median, and the onset was put inside it (step 47 or 41 for these seeds, where the jump is at 52)."""
    write_kl_run(tmp_path / "run", rise_plateau(12, 50), seed)
    assert [f.onset_step for f in kl_findings(tmp_path / "run")] == [52]


@pytest.mark.parametrize("plateau", [12, 40])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_warmup_rise_then_a_plateau_without_a_jump_is_no_blowup(tmp_path: Path, plateau: int, seed: int) -> None:
    """The search that goes on after the rise finds nothing in a plateau that follows it."""
    write_kl_run(tmp_path / "run", rise_plateau(plateau, 0), seed)
    assert kl_findings(tmp_path / "run") == []


# 2. scalar_nonfinite: a key with earlier non-finite steps that then stays non-finite


def write_scalars_run(path: Path, steps: int, scalars: Callable[[int], dict[str, float]]) -> None:
    with RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for st in range(steps):
            w.log_scalars(st, scalars(st))


def nonfinite_keys(path: Path) -> dict[str, dict]:
    found = [f for f in diagnose(open_run(path)).findings if f.evidence.get("problem_kind") == "scalar_nonfinite"]
    assert len(found) <= 1
    return {k["key"]: k for f in found for k in f.evidence["keys"]}


def test_a_grad_norm_that_overflowed_now_and_then_and_then_for_good_is_scalar_nonfinite(tmp_path: Path) -> None:
    """The review's run: grad/global_norm inf at 8 of its first 50 steps (16 %), then at all 30 last; the loss
    stays finite (a stuck loss scaler: every update skipped). The grad norm is the only signal, and is said."""
    overflow = {3, 9, 10, 17, 25, 31, 38, 44}
    write_scalars_run(
        tmp_path / "run",
        80,
        lambda st: {"grad/global_norm": math.inf if st in overflow or st >= 50 else 1.5, "train/loss": 0.7},
    )
    keys = nonfinite_keys(tmp_path / "run")
    assert list(keys) == ["grad/global_norm"], keys
    assert (keys["grad/global_norm"]["first_step"], keys["grad/global_norm"]["count"]) == (50, 30)


@pytest.mark.parametrize("every", [2, 5, 20])
def test_an_eval_metric_nan_between_evals_is_still_no_scalar_nonfinite(tmp_path: Path, every: int) -> None:
    """An eval metric finite every ``every`` steps, NaN between, ends in NaN after its last eval: a gap no longer
    than those before it, not a divergence. A loss gone NaN in the same run is still said."""
    write_scalars_run(
        tmp_path / "run",
        63,
        lambda st: {
            "eval/acc": 0.5 if st % every == 0 else math.nan,
            "train/loss": 1.0 if st < 50 else math.nan,
        },
    )
    assert list(nonfinite_keys(tmp_path / "run")) == ["train/loss"]


def test_a_tail_no_longer_than_an_earlier_nonfinite_run_is_not_judged(tmp_path: Path) -> None:
    """A key NaN for 10 steps mid-run (and finite again) that ends with 6 NaN is not judged; one that ends with
    12 NaN after the same gap is, from its first NaN of the tail."""
    write_scalars_run(
        tmp_path / "run",
        60,
        lambda st: {
            "short": math.nan if 20 <= st < 30 or st >= 54 else 1.0,
            "long": math.nan if 20 <= st < 30 or st >= 48 else 1.0,
        },
    )
    keys = nonfinite_keys(tmp_path / "run")
    assert list(keys) == ["long"] and (keys["long"]["first_step"], keys["long"]["count"]) == (48, 12), keys
