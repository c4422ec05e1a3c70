"""doctor (audit 18, review of 4bf8072). The all-NaN last steps of a run: a step of fewer values than half the
median step's is passed over whatever it holds, as the docs say, so that a last step of one valid row after
three all-NaN steps of 16 does not turn the error into a warning (it did: ``all_nan_last_steps`` 0, exit 0
under ``--fail-on error``, where the same step with one NaN row was an error).

Every expectation is computed here from the values written."""

from __future__ import annotations

import json
from pathlib import Path

from runlog import RunWriter, open_run
from runlog.analysis.doctor import diagnose

NAN = float("nan")


def _run(path: Path, rows_of: dict[int, list[float | None]]) -> Path:
    with RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s, rewards in sorted(rows_of.items()):
            w.log_samples(s, [{"reward": r, "group_id": f"{s}-{i // 4}"} for i, r in enumerate(rewards)])
    return path


def _steps(last: list[float | None]) -> dict[int, list[float | None]]:
    """100 clean steps of 16, steps 100-102 all NaN, then step 103 holding ``last``."""
    out: dict[int, list[float | None]] = {s: [NAN if s >= 100 else (i % 4) / 4 for i in range(16)] for s in range(103)}
    out[103] = last
    return out


def _nan_finding(path: Path):  # noqa: ANN202
    [f] = [f for f in diagnose(open_run(path)).findings if f.kind == "nan_rewards"]
    return f


def test_a_small_last_step_with_a_valid_value_does_not_end_the_nan_tail(cli, tmp_path: Path) -> None:
    """Step 103 holds 1 valid row, fewer than 8 (half the median 16): steps 100-102 are still the tail."""
    run = _run(tmp_path / "r", _steps([0.5]))
    f = _nan_finding(run)
    assert f.evidence["nan"] == 48 and f.evidence["all_nan_last_steps"] == 3
    assert f.severity == "error" and "; an error: every value from step 100 on is NaN" in f.message
    r = cli("doctor", str(run), "--fail-on", "error", "--format", "json")
    assert r.exit_code == 1
    [said] = [x for x in json.loads(r.stdout)["findings"] if x["kind"] == "nan_rewards"]
    assert said["severity"] == "error" and said["evidence"]["all_nan_last_steps"] == 3


def test_a_small_last_step_of_valid_and_null_rows_does_not_end_the_nan_tail(tmp_path: Path) -> None:
    """Step 103 holds 2 valid rows and 14 null ones: 2 values that are numbers, below 8."""
    f = _nan_finding(_run(tmp_path / "r", _steps([0.5, 0.25, *([None] * 14)])))
    assert f.severity == "error" and f.evidence["all_nan_last_steps"] == 3


def test_a_full_size_last_step_with_one_valid_value_still_ends_the_tail(tmp_path: Path) -> None:
    """Step 103 of 16 rows, 15 NaN and 1 valid: the reward is still computed for some samples, no tail."""
    f = _nan_finding(_run(tmp_path / "r", _steps([*([NAN] * 15), 0.5])))
    assert f.evidence["all_nan_last_steps"] == 0
    assert "every value from step" not in f.message
