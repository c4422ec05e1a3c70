"""doctor (audit 18). NaN rewards: the run's last steps whose every reward is NaN are an error whatever the
run's length (100 clean steps then 3 all-NaN steps were 2.9 % of the run: a warning, exit 0 under
``--fail-on error``); a last step mostly but not all NaN stays a one-step burst, a warning. Repeated sample ids:
the rows of an id repeated within a step that sit at its other steps are said, with their count, so that the
finding's count and ``inspect --deep``'s (which counts them) are not read as one figure told twice.

Every expectation is computed here from the values written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runlog import RunWriter, open_run
from runlog.analysis.doctor import diagnose

NAN = float("nan")


def _run(path: Path, rows_of: dict[int, list[float | None]]) -> Path:
    with RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s, rewards in sorted(rows_of.items()):
            w.log_samples(s, [{"reward": r, "group_id": f"{s}-{i // 4}"} for i, r in enumerate(rewards)])
    return path


def _clean(i: int) -> float:
    return (i % 4) / 4


def _nan_finding(path: Path):  # noqa: ANN202
    [f] = [f for f in diagnose(open_run(path)).findings if f.kind == "nan_rewards"]
    return f


def test_a_long_run_whose_last_steps_are_all_nan_is_an_error(cli, tmp_path: Path) -> None:
    """The reaudit's run: 100 clean steps of 16, then steps 100-102 with every reward NaN (48 of 1648, 2.9 %)."""
    steps = {s: [NAN if s >= 100 else _clean(i) for i in range(16)] for s in range(103)}
    run = _run(tmp_path / "r", steps)
    f = _nan_finding(run)
    assert f.severity == "error"
    assert f.evidence["nan"] == 48 and f.evidence["all_nan_last_steps"] == 3
    assert f.message.startswith("48 NaN rewards (2.9%) in 3 step(s), first at step 100; an error: ")
    assert "; an error: every value from step 100 on is NaN" in f.message
    r = cli("doctor", str(run), "--fail-on", "error", "--format", "json")
    assert r.exit_code == 1
    [said] = [x for x in json.loads(r.stdout)["findings"] if x["kind"] == "nan_rewards"]
    assert said["severity"] == "error"


def test_one_all_nan_last_step_of_a_long_run_is_an_error(tmp_path: Path) -> None:
    """16 NaN of 1616 rewards (1 %): the rewards turned NaN at the last step written."""
    steps = {s: [NAN if s == 100 else _clean(i) for i in range(16)] for s in range(101)}
    f = _nan_finding(_run(tmp_path / "r", steps))
    assert f.severity == "error" and "; an error: every value from step 100 on is NaN" in f.message


def test_all_null_last_steps_say_nothing_of_nan_rewards_before_them(tmp_path: Path) -> None:
    """Steps 30-31 all NaN, then a step whose every reward is null (failed trajectories): no value came back,
    so the NaN steps are still the rewards' last (32 of 512 numbers, 6.25 %, 3.2 % without step 30: was a
    warning)."""
    steps: dict[int, list[float | None]] = {s: [_clean(i) for i in range(16)] for s in range(30)}
    steps |= {30: [NAN] * 16, 31: [NAN] * 16, 32: [None] * 16}
    f = _nan_finding(_run(tmp_path / "r", steps))
    assert f.severity == "error" and f.evidence["all_nan_last_steps"] == 2
    assert "; an error: every value from step 30 on is NaN" in f.message


def test_a_one_row_nan_step_after_an_all_nan_tail_does_not_end_it(tmp_path: Path) -> None:
    """100 clean steps, steps 100-102 all NaN, then a last step of one NaN row: too small to count as a step of
    NaN rewards, it is no sign that the rewards came back either."""
    steps: dict[int, list[float | None]] = {s: [NAN if s >= 100 else _clean(i) for i in range(16)] for s in range(103)}
    steps[103] = [NAN]
    f = _nan_finding(_run(tmp_path / "r", steps))
    assert f.severity == "error" and f.evidence["all_nan_last_steps"] == 3
    assert "; an error: every value from step 100 on is NaN" in f.message


@pytest.mark.parametrize(("nan_last", "severity"), [(16, "error"), (15, "warning")])
def test_a_last_step_mostly_nan_is_a_burst(tmp_path: Path, nan_last: int, severity: str) -> None:
    """10 steps of 16, the last with 15 NaN and one valid reward: the reward is still computed for some samples,
    and one step's burst is left out (0 % without it), a warning, as docs/doctor.md says; 16 of 16 an error."""
    steps = {s: [NAN if s == 9 and i < nan_last else _clean(i) for i in range(16)] for s in range(10)}
    f = _nan_finding(_run(tmp_path / "r", steps))
    assert f.severity == severity
    assert f.evidence["all_nan_last_steps"] == (1 if nan_last == 16 else 0)
    if severity == "warning":
        assert "0.0% without step 9 (nan_error=5% needs both)" in f.message


def test_an_all_nan_tail_after_which_rewards_came_back_is_no_tail(tmp_path: Path) -> None:
    """Steps 50-52 all NaN, then clean steps 53-99: a burst the run came back from (3 % of 1600), a warning."""
    steps = {s: [NAN if 50 <= s <= 52 else _clean(i) for i in range(16)] for s in range(100)}
    f = _nan_finding(_run(tmp_path / "r", steps))
    assert f.severity == "warning" and f.evidence["all_nan_last_steps"] == 0


# --- repeated sample ids ---------------------------------------------------------------------------------------


def _ids_run(path: Path, twice_at: int, also_at: list[int]) -> Path:
    with (
        pytest.warns(Warning, match="hold the sample_id 'dup' more than once"),
        RunWriter(path, name="r", durable=False, clock=lambda: 1.7e9) as w,
    ):
        for s in range(3):
            times = 2 if s == twice_at else 1 if s in also_at else 0
            rows = [{"sample_id": f"u{s}", "group_id": "g", "reward": 0.0}]
            w.log_samples(s, rows + [{"sample_id": "dup", "group_id": "g", "reward": 1.0}] * times)
    return path


def _repeated(path: Path):  # noqa: ANN202
    d = diagnose(open_run(path))
    [f] = [f for f in d.findings if f.evidence.get("problem_kind") == "repeated_sample_ids"]
    return f


def test_an_id_repeated_within_a_step_and_at_other_steps_says_both(cli, tmp_path: Path) -> None:
    """'dup' twice at step 1 and once at steps 0 and 2 (4 rows): 1 extra row within step 1 (the finding's
    definition) and 2 rows at other steps, which inspect --deep counts among its 3 extra rows."""
    run = _ids_run(tmp_path / "r", twice_at=1, also_at=[0, 2])
    f = _repeated(run)
    assert f.evidence["count"] == 1 and f.evidence["extra_rows"] == 1
    assert f.evidence["rows_at_other_steps"] == 2
    assert "1 sample id(s) occur more than once within their step (1 extra row(s); step 1;" in f.message
    assert "; 2 more row(s) of these id(s) at other steps of the split" in f.message
    deep = cli("inspect", str(run), "--deep")
    assert "1 sample id(s) occur more than once (3 extra row(s)" in deep.stdout  # 1 + 2: the two figures agree


def test_an_id_repeated_only_within_its_step_says_no_other_rows(tmp_path: Path) -> None:
    f = _repeated(_ids_run(tmp_path / "r", twice_at=1, also_at=[]))
    assert f.evidence["rows_at_other_steps"] == 0 and "more row(s)" not in f.message
