"""doctor's NaN rule (a review): a last step whose every reward is NaN is no burst to leave out: the rewards turned
NaN and nothing after says they came back. A run of 10 steps of 16 rows ending in an all-NaN step (10 % of its
rewards) and one of 4 x 512 ending so (25 %) passed ``--fail-on error``; a burst inside the run, or a last step
partly NaN, stays a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from runlog import RunWriter, open_run
from runlog.analysis.doctor import diagnose


def _run(path: Path, steps: int, rows: int, nan_at: dict[int, int]) -> Path:
    with RunWriter(path, name=path.name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(steps):
            rewards = [float("nan") if i < nan_at.get(s, 0) else 0.5 + 0.01 * (i % 7) for i in range(rows)]
            w.log_samples(s, [{"reward": r, "group_id": f"{s}-{i // 4}"} for i, r in enumerate(rewards)])
    return path


def _severity(path: Path) -> str:
    [f] = [f for f in diagnose(open_run(path)).findings if f.kind == "nan_rewards"]
    return f.severity


@pytest.mark.parametrize(("steps", "rows"), [(10, 16), (4, 512)])
def test_a_run_that_ends_all_nan_is_an_error(tmp_path, steps, rows):
    assert _severity(_run(tmp_path / "r", steps, rows, {steps - 1: rows})) == "error"


def test_an_all_nan_step_the_run_came_back_from_is_a_burst(tmp_path):
    assert _severity(_run(tmp_path / "r", 10, 16, {4: 16})) == "warning"


def test_a_last_step_partly_nan_is_a_burst(tmp_path):
    assert _severity(_run(tmp_path / "r", 2, 16, {1: 5})) == "warning"


def test_one_repeated_prompt_does_not_make_single_sample_groups_zero_advantage(tmp_path):
    """A review: every prompt distinct but one repeated once: 99.8 % of 'groups' of one sample were flat again
    (the first rule asked for every group to hold one reward). Most groups of one: judged on each step's rewards."""
    import json

    run = tmp_path / "r"
    run.mkdir()
    with open(run / "generations.jsonl", "w") as fh:
        for step in range(12):
            for i in range(16):
                prompt = "the repeated one" if (step, i) in ((5, 0), (5, 1)) else f"q{step}-{i}"
                score = (step * 16 + i) % 7 / 7
                fh.write(json.dumps({"step": step, "input": prompt, "output": f"a {i}", "score": score}) + "\n")
    d = diagnose(open_run(run))
    assert not [f for f in d.findings if f.kind == "zero_advantage"]
    assert any("of the prompt groups hold one reward" in n for n in d.notes), d.notes


def test_groups_whose_failed_samples_have_no_reward_are_still_groups(tmp_path):
    """A review: GRPO groups of 8 whose failed trajectories have a null reward held one valid reward each, and
    the 'most groups hold one reward' rule judged whole steps instead: the zero_advantage finding was gone."""
    run = tmp_path / "r"
    with RunWriter(run, name="r", durable=False, clock=lambda: 1.7e9) as w:
        for s in range(20):
            rewards: list[float | None] = []
            for g in range(8):
                rewards += ([float(g % 2)] + [None] * 7) if g < 6 else ([0.0, 0.0] + [None] * 6)
            w.log_samples(s, {"reward": rewards, "group_id": [f"g{s}-{i // 8}" for i in range(64)]})
    d = diagnose(open_run(run))
    assert [f.kind for f in d.findings if f.kind == "zero_advantage"] == ["zero_advantage"]
    assert not any("hold one reward" in n for n in d.notes)


def test_a_run_ending_all_nan_after_a_larger_burst_is_an_error(tmp_path):
    """A review: the all-NaN last step was taken whole only where it was also the step of the most NaN; after an
    earlier burst of 32 NaN, a run ending on 16 all-NaN rewards was a warning ('2.7% without step 5')."""
    run = tmp_path / "r"
    with RunWriter(run, name="r", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(40):
            n = {5: 32, 39: 16}.get(s, 0)
            rows = 32 if s == 5 else 16
            rewards = [float("nan") if i < n else 0.5 + 0.01 * (i % 7) for i in range(rows)]
            w.log_samples(s, [{"reward": r, "group_id": f"{s}-{i // 4}"} for i, r in enumerate(rewards)])
    assert _severity(run) == "error"


def test_a_recovered_burst_with_one_nan_row_as_last_step_stays_a_warning(tmp_path):
    """A review: step 3 all NaN, steps 4-9 clean, a last step of one NaN row: 0.7 % without step 3, a burst, but
    the one-row last step 'all NaN' made it an error."""
    run = tmp_path / "r"
    with RunWriter(run, name="r", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for s in range(11):
            rows, n = (1, 1) if s == 10 else (16, 16 if s == 3 else 0)
            rewards = [float("nan") if i < n else 0.5 + 0.01 * (i % 7) for i in range(rows)]
            w.log_samples(s, [{"reward": r, "group_id": f"{s}-{i // 4}"} for i, r in enumerate(rewards)])
    [f] = [f for f in diagnose(open_run(run)).findings if f.kind == "nan_rewards"]
    assert f.severity == "warning" and "without step 3" in f.message
    assert f.evidence["share_without_worst_step"] == 1 / 145  # the one NaN of the last step, of 145 values
