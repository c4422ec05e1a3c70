"""doctor says what it is checking while it works (the texts of a large run take minutes): each stage once, in
order, to a callback; on a terminal a spinner on stderr, and nothing at all for a pipe or a log."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from runlog.analysis.doctor import STAGES, diagnose
from runlog.run import open_run

SAMPLE_RUNS = Path(__file__).resolve().parents[1] / "sample_runs"


def test_diagnose_tells_each_stage_in_order():
    seen: list[str] = []
    plain = diagnose(open_run(SAMPLE_RUNS / "debate_grpo"))
    told = diagnose(open_run(SAMPLE_RUNS / "debate_grpo"), progress=seen.append)
    assert seen == list(STAGES)
    assert [f.as_dict() for f in told.findings] == [f.as_dict() for f in plain.findings]


def test_a_run_without_samples_tells_the_first_stage_only(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "scalars.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n')
    seen: list[str] = []
    diagnose(open_run(run), progress=seen.append)
    assert seen == [STAGES[0]]


def test_the_spinner_is_on_a_terminal_only(cli):
    """A pipe gets the findings alone; a terminal's stderr shows the stages, cleared when done."""
    r = cli("doctor", SAMPLE_RUNS / "debate_grpo", "--format", "json")
    assert "checking" not in r.stderr
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.run(
        [sys.executable, "-m", "runlog", "doctor", str(SAMPLE_RUNS / "debate_grpo"), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        timeout=120,
    )
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:  # the terminal closed: all read
        pass
    os.close(leader)
    assert proc.returncode == 1 and proc.stdout.startswith(b"{")
    assert f"checking {STAGES[0]}".encode() in shown, shown[-500:]
