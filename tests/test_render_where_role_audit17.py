"""render-trajectory ``--where role:NAME`` on a run whose selected files are opened alone (Flink: by names) and lack
that role: no sample matches (exit 1), as ``--role NAME`` does; it said "unknown role 'judge'; this run's roles:
(none)", exit 2, of flink_mixed's judge, which steps 10-19 hold (a review)."""

from __future__ import annotations

from typer.testing import CliRunner

from runlog.cli.app import app

from conftest import SAMPLE_RUNS

FLINK = str(SAMPLE_RUNS / "flink_mixed")


def _run(tmp_path, *args):
    return CliRunner().invoke(app, ["render-trajectory", FLINK, *args], env={"RUNLOG_CACHE_DIR": str(tmp_path / "c")})


def test_a_role_of_other_steps_in_where_is_no_match(tmp_path):
    r = _run(tmp_path, "--where", "role:judge > 0.5", "--steps", "0:9")
    assert r.exit_code == 1, r.output
    assert "unknown role" not in r.output and "no sample matches" in r.output
    assert _run(tmp_path, "--role", "judge", "--steps", "5").exit_code == 1  # as --role says it


def test_the_role_where_its_steps_are_open_still_filters(tmp_path):
    r = _run(tmp_path, "--where", "role:judge > 0.5", "--steps", "10:19", "--format", "json")
    assert r.exit_code == 0, r.output
