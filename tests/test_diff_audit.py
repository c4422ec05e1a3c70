"""``runlog diff`` defects an audit reproduced, each checked against a count made here from the data written:

- an onset from steps whose z is infinite (a role with no spread in either run, the means apart): such a z is
  decisive, not missing, so ``ahead_from`` (``behind_from``) is the first step of the lead, also where
  finite and infinite z alternate;
- a diff with nothing to show (no common step in ``--steps``, identical configs) is the usage error "nothing
  to compare" (exit 2), and the scalars' note says that a run has no step of the common keys there rather
  than that the runs have no key in common."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from runlog import RunWriter, open_run
from runlog.analysis.changepoint import first_sustained
from runlog.analysis.diff import DiffOptions, diff_runs
from runlog.analysis.doctor_config import DoctorConfig

NAN, INF = math.nan, math.inf
CFG = DoctorConfig()


def reference_onset(values: list[float], threshold: float, persist: float, min_run: int) -> int | None:
    """docs/diff.md's onset rule, counted by hand: the first index (NaN left out) at or above ``threshold``
    from which at least ``persist`` of the remaining non-NaN values, and at least ``min_run`` of them, are at
    or above it; +inf is above any threshold and -inf below, as they compare."""
    for i, v in enumerate(values):
        if math.isnan(v) or not v >= threshold:
            continue
        tail = [x for x in values[i:] if not math.isnan(x)]
        beyond = sum(1 for x in tail if x >= threshold)
        if beyond >= persist * len(tail) and beyond >= min_run:
            return i
    return None


# ---------------------------------------------------------------------------------------------------------
# 1. Infinite z in the onset
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ([0.0] * 10 + [INF] * 10, 10),  # no spread from step 10 on: every z infinite
        ([0.0] * 10 + [INF, 3.0] * 5, 10),  # infinite and finite z alternating: the lead starts at the first
        ([0.0] * 10 + [3.0, INF] * 5, 10),
        ([0.0] * 5 + [NAN, INF, INF, NAN, INF, INF, INF], 6),  # NaN stays a missing step
        ([0.0] * 10 + [INF] * 4 + [-INF] + [INF] * 5, 10),  # one step against, 9 of 10 with it: still stable
        ([INF] * 5 + [-INF] * 5, None),  # a lead that came and went
        ([-INF] * 10, None),  # -inf is below any threshold, never beyond it
        ([0.0, 3.0, 0.0, 3.0] * 5, None),  # finite values alone: the rule as before
    ],
)
def test_first_sustained_counts_infinite_values_as_decisive(values: list[float], want: int | None) -> None:
    crit = 1.96
    assert reference_onset(values, crit, CFG.persist, CFG.min_segment) == want  # the count agrees with the case
    assert first_sustained(values, crit, persist=CFG.persist, min_run=CFG.min_segment) == want
    # The behind side (``compare._onsets``): B behind by the same z is found on -z.
    behind_z = -np.asarray(values)
    assert first_sustained(-1.0 * behind_z, crit, persist=CFG.persist, min_run=CFG.min_segment) == want


STEPS, N = 30, 16
LEAD = 10  # Q's critic is ahead from this step on


def critic_rewards(q: bool, step: int, mixed: bool) -> np.ndarray:
    """P's critic: 0.0 at every step. Q's: the same before LEAD, then 1.0 for every sample (no spread: an
    infinite z); ``mixed``: on odd steps one sample of 0.0 among the 1.0s (some spread: a finite z)."""
    if not q or step < LEAD:
        return np.zeros(N)
    out = np.ones(N)
    if mixed and step % 2:
        out[0] = 0.0
    return out


def write_critic_run(path: Path, *, q: bool, mixed: bool) -> Path:
    with RunWriter(path, name=path.name, roles=["critic"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            r = critic_rewards(q, s, mixed)
            w.log_samples(
                s,
                {
                    "reward": r,
                    "critic_reward": r,
                    "critic_kl": np.zeros(N),
                    "group_id": [f"g{s}-{i // 8}" for i in range(N)],
                    "prompt": [f"q{s}-{i // 8}" for i in range(N)],
                },
            )
    return path


def welch_z(a: np.ndarray, b: np.ndarray) -> float:
    """The Welch z of ``mean(b) - mean(a)`` by hand: +-inf when neither has spread and the means differ."""
    d = float(b.mean() - a.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se > 0:
        return d / se
    return 0.0 if d == 0 else math.copysign(INF, d)


@pytest.mark.parametrize("mixed", [False, True], ids=["no-spread", "spread-on-odd-steps"])
def test_ahead_and_behind_from_the_first_step_of_a_lead_without_spread(tmp_path: Path, mixed: bool) -> None:
    """The audit's repro (tmp gen2.py): before the fix ``ahead_from`` was None with verdict ``ahead`` and CI
    [1, 1] (no-spread), or the first step with spread, 11, (spread-on-odd-steps): the infinite z were dropped."""
    p = write_critic_run(tmp_path / "P", q=False, mixed=mixed)
    q = write_critic_run(tmp_path / "Q", q=True, mixed=mixed)
    z = [welch_z(critic_rewards(False, s, mixed), critic_rewards(True, s, mixed)) for s in range(STEPS)]
    crit = 1.959963984540054  # 95 %
    want = reference_onset(z, crit, CFG.persist, CFG.min_segment)
    assert want == LEAD
    assert reference_onset([-v for v in z], crit, CFG.persist, CFG.min_segment) is None

    d = diff_runs([open_run(p), open_run(q)], ["P", "Q"], DiffOptions(roles=("critic",)))
    [row] = d.roles.to_dicts()
    assert row["verdict"] == "ahead" and row["ahead_from"] == want and row["behind_from"] is None, row

    back = diff_runs([open_run(q), open_run(p)], ["Q", "P"], DiffOptions(roles=("critic",)))
    [row] = back.roles.to_dicts()
    assert row["verdict"] == "behind" and row["behind_from"] == want and row["ahead_from"] is None, row


# ---------------------------------------------------------------------------------------------------------
# 2. Nothing to show is "nothing to compare"
# ---------------------------------------------------------------------------------------------------------


def write_loss_run(path: Path, steps: int, config: dict) -> Path:
    """Samples of one role and a scalar ``loss`` at steps 0..steps-1."""
    with RunWriter(path, name=path.name, roles=["solver"], config=config, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(steps):
            r = np.linspace(0.0, 1.0, N)
            w.log_samples(s, {"reward": r, "solver_reward": r, "group_id": [f"g{s}-{i // 8}" for i in range(N)]})
            w.log_scalars(s, {"loss": 1.0 / (1 + s)})
    return path


@pytest.fixture
def a_and_c(tmp_path: Path) -> tuple[Path, Path]:
    """The audit's runs/A and runs/C: A logs steps 0..39, C 0..24, with the same config."""
    return write_loss_run(tmp_path / "A", 40, {"lr": 1e-5}), write_loss_run(tmp_path / "C", 25, {"lr": 1e-5})


def test_identical_configs_alone_are_nothing_to_compare(a_and_c: tuple[Path, Path], cli) -> None:
    """Before: exit 0 with every table empty and the note "A and C have no scalar key in common", false:
    both log ``loss``, C only has no step of it in 30..39."""
    a_steps = [s for s in range(40) if 30 <= s <= 39]
    c_steps = [s for s in range(25) if 30 <= s <= 39]
    assert (a_steps, c_steps) == (list(range(30, 40)), [])
    r = cli("diff", *a_and_c, "--steps", "30:39", "-f", "json")
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: nothing to compare: C has no samples at the steps and splits chosen")
    assert "A and C both log scalar key(s) loss, but C has no step of them in --steps 30:39" in line
    assert "(A: 30..39; C: none): no scalar comparison" in line
    assert "no scalar key in common" not in line

    d = diff_runs([open_run(p) for p in a_and_c], ["A", "C"], DiffOptions(steps=_steps("30:39")))
    assert not d.compared
    assert all(df.height == 0 for name, df in d.frames().items() if name != "overlap")


def test_a_key_logged_by_both_outside_the_steps_is_no_usage_error_of_keys(a_and_c: tuple[Path, Path], cli) -> None:
    """``--keys loss`` names a key both runs log: it matches; what is missing is C's steps there."""
    r = cli("diff", *a_and_c, "--steps", "30:39", "--keys", "loss")
    assert r.exit_code == 2
    assert "--keys" not in r.stderr and "C has no step of them in --steps 30:39" in r.stderr


def test_what_can_be_shown_still_is(a_and_c: tuple[Path, Path], tmp_path: Path, cli) -> None:
    """Configs that differ are a comparison; so are the steps both have."""
    other = write_loss_run(tmp_path / "C2", 25, {"lr": 3e-5})
    r = cli("diff", a_and_c[0], other, "--steps", "30:39", "-f", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [(c["key"], c["config_run"]) for c in out["config"]] == [("lr", "3e-05")]
    assert out["points"] == [] and out["scalars"] == []

    r = cli("diff", *a_and_c, "--steps", "20:39", "-f", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    want = [s for s in range(25) if 20 <= s <= 39]  # C's steps in range, all of them A's too
    assert {row["steps"] for row in out["scalars"]} == {f"{want[0]}..{want[-1]}"}
    assert pl.DataFrame(out["points"])["steps"].unique().to_list() == [f"{want[0]}..{want[-1]}"]


def _steps(text: str):
    from runlog.analysis.filters import StepRange

    return StepRange.parse(text)


def test_keys_a_third_run_lacks_is_a_note_for_that_pair(a_and_c: tuple[Path, Path], tmp_path: Path, cli) -> None:
    """``--keys`` was checked pair by pair: a third run without the key stopped the whole diff (exit 2,
    "this run has no scalar metrics", naming no run), though A and C compare. Now that pair gets a note; only
    a glob no run's key matches is a usage error."""
    third = tmp_path / "B"
    with RunWriter(third, name="B", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(10):
            w.log_samples(s, {"reward": np.linspace(0.0, 1.0, N), "solver_reward": np.linspace(0.0, 1.0, N)})
            w.log_scalars(s, {"other": float(s)})
    r = cli("diff", *a_and_c, third, "--keys", "loss", "-f", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {(row["key"], row["run"]) for row in out["scalars"]} == {("loss", "C")}
    assert "A and B have no scalar key in common: no scalar comparison" in out["notes"]
    r = cli("diff", *a_and_c, third, "--keys", "nope*")
    assert r.exit_code == 2
    assert "--keys 'nope*': matches none of the 2 scalar key(s) of the runs compared: loss, other" in r.stderr


def test_keys_that_match_no_key_a_pair_shares_is_said_for_that_pair(a_and_c, tmp_path: Path, cli) -> None:
    """B logs ``loss`` and ``other``; A and C log ``loss``: ``--keys other`` matches B's key, but no key either
    pair shares. Each pair is said, and no scalar is compared."""
    third = tmp_path / "B"
    with RunWriter(third, name="B", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(10):
            w.log_samples(s, {"reward": np.linspace(0.0, 1.0, N), "solver_reward": np.linspace(0.0, 1.0, N)})
            w.log_scalars(s, {"loss": 1.0, "other": float(s)})
    d = diff_runs([open_run(p) for p in (a_and_c[0], third)], ["A", "B"], DiffOptions(keys=("other",)))
    assert "A and B: --keys 'other' matches none of the 1 scalar key(s) they have in common" in " ".join(d.notes)
    assert d.scalars.height == 0
