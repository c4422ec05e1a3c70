"""Lead's tests for the sixteenth round of audits (a new user's walk through the README and the docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"


def test_a_misspelt_threshold_gets_a_close_match(cli):
    """`--set kl_raito=2` listed all 26 names with no hint, where every other typo gets one."""
    r = cli("doctor", SAMPLES / "debate_grpo", "--set", "kl_raito=2")
    assert r.exit_code == 2
    assert "unknown threshold 'kl_raito' (did you mean 'kl_ratio'?)" in r.stderr


def test_a_long_option_with_one_dash_is_said_as_such():
    """`-by role` reads as `-b y`: the error named a value, 'y', that the user never typed."""
    proc = subprocess.run(
        [sys.executable, "-m", "runlog", "summarize", str(SAMPLES / "debate_grpo"), "-by", "role"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "'-by' reads as '-b y': a long option takes two dashes, '--by'" in proc.stderr


def test_one_dash_hint_needs_the_quoted_tail(monkeypatch):
    from runlog.cli.common import _one_dash_hint

    monkeypatch.setattr(sys, "argv", ["runlog", "summarize", "RUN", "-by", "role"])
    assert _one_dash_hint("--by 'y': expected one of run, role") != ""
    assert _one_dash_hint("RUN: no such file or directory") == ""


def test_one_step_file_of_a_run_is_said_to_be_read_alone(cli):
    """A step file given as the run: its figures are one step's, and inspect said "run.json lists none" although
    run.json lists three roles (it was not read)."""
    step = SAMPLES / "debate_grpo" / "samples" / "train" / "step_00000003.p0.parquet"
    r = cli("summarize", step, "--format", "json")
    assert r.exit_code == 0
    assert "one file of the run at" in r.stderr and "read alone" in r.stderr
    r = cli("inspect", step)
    assert "no run.json read" in r.stdout and "run.json lists none" not in r.stdout
    whole = cli("summarize", SAMPLES / "debate_grpo", "--format", "json")
    assert "read alone" not in whole.stderr


def test_watch_says_a_plain_warning_once(cli):
    r = cli("watch", SAMPLES / "damaged", "--once")
    line = next(x for x in r.stdout.splitlines() if "notes.txt" in x)
    assert line.startswith("problem warning step - notes.txt: ") and line.count("warning") == 1, line
