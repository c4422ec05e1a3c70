"""render-trajectory: a role of the run that the selected steps do not log is no match (exit 1), said after the
run's problems, as any other no match is (the reason the selection came out empty may be among them)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from runlog.cli.app import app

SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"


def test_a_role_not_logged_at_the_steps_is_said_after_the_runs_problems() -> None:
    res = CliRunner().invoke(
        app, ["render-trajectory", str(SAMPLE_RUNS / "flink_mixed"), "--steps", "3", "--best", "1", "--role", "judge"]
    )
    assert res.exit_code == 1, res.output
    problem = res.stderr.index("CSV fallback file")
    said = res.stderr.index("role 'judge' is not logged at the selected steps")
    assert problem < said, res.stderr
    assert "Traceback" not in res.output
