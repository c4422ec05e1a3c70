"""Audit 17 of ``watch`` / ``doctor --follow``: the age of a killed writer's newest file is measured when it is
said (not at the last check, up to ``--idle-exit`` seconds before); a NaN share of few values is no error (the
same rule in ``doctor`` and ``doctor --follow``, which judged the first steps' share and failed a CI job on a
run that ``doctor`` passes), and a NaN finding's last event has the run's figures; role names of wide
characters are measured in terminal cells on the live screen; prompt groups of one sample are no zero-advantage
finding; a gap is worded the same in ``watch`` and ``doctor``."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from runlog import RunWriter, open_run
from runlog.analysis.doctor import DoctorConfig, diagnose
from runlog.watch import DoctorWatch, LiveRun
from runlog.watch.findings import issue_finding
from runlog.watch.live import Issue, RoleStep, StepStats
from runlog.watch.poll import run_lister
from runlog.watch.screen import Screen

KILLED = """
import os, sys
sys.path[:0] = {path!r}
from runlog.writer import RunWriter
w = RunWriter({run!r}, roles=["solver"])
for s in range(3):
    w.log_samples(s, {{"reward": [0.1 * s, 1.0], "group_id": ["g", "g"]}})
w.flush()
os._exit(0)
"""


# -- 1: writer_not_closed said at --idle-exit has the age of then ---------------------------------------------
def test_the_age_of_a_killed_writers_newest_file_is_measured_when_the_follow_stops(tmp_path, monkeypatch):
    """The finding kept for the stop was worded at the last check: 'written 0 s ago' when the follow stopped
    ten minutes later (an ``--idle-exit 600``), which reads as a writer alive, the opposite of the truth."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-c", KILLED.format(path=sys.path, run=str(run))], check=True, timeout=120)
    watch = DoctorWatch(run, DoctorConfig())
    watch.changed()
    assert watch.poll() == []  # said only when the follow stops
    later = time.time() + 600
    monkeypatch.setattr(time, "time", lambda: later)
    [event] = watch.stopping()
    message = event.data["message"]
    assert "no process has closed its writer" in message
    assert message.endswith("(its newest file was written 10 min ago)"), message
    assert event.data["evidence"]["newest_age_s"] == pytest.approx(600, abs=5)
    [kept] = [f for f in watch.findings if f.evidence.get("problem_kind") == "writer_not_closed"]
    assert kept.message == message  # the screen shows the same words


# -- 2: a NaN share of few values --------------------------------------------------------------------------------
def _nan_run(run: Path, steps: int, nan_at: dict[int, int], rows: int = 16) -> None:
    with RunWriter(run, name="r", roles=["solver"], durable=False) as w:
        for s in range(steps):
            reward = [float("nan") if i < nan_at.get(s, 0) else 0.1 * (i % 5) for i in range(rows)]
            w.log_samples(s, {"reward": reward, "solver_reward": [0.5] * rows, "solver_kl": [0.01] * rows})


def _nan(run: Path, config: DoctorConfig | None = None):
    [f] = [f for f in diagnose(open_run(run), config).findings if f.kind == "nan_rewards"]
    return f


def test_a_few_nan_or_one_steps_burst_are_a_warning_rewards_that_turned_nan_an_error(tmp_path):
    """5 NaN among the first 64 rewards, all at step 1, are 7.8 %, graded an error (>= nan_error 5 %) though it
    is one step's burst of a run that may go on clean; 1 NaN in each of two 16-row steps (6.25 %) likewise. An
    error needs the share to be at least nan_error with nan_confidence (the lower end of its Wilson interval) and
    without the step with the most NaN too; every reward NaN at two steps, 3 steps of NaN in 40, or 8 % at every
    step of a large run, are errors."""
    _nan_run(tmp_path / "burst", 4, {1: 5})
    f = _nan(tmp_path / "burst")
    assert f.severity == "warning" and f.evidence["share"] == 5 / 64
    assert f.evidence["share_low"] < 0.05 and f.evidence["share_without_worst_step"] == 0  # few values, one step
    assert f.message.startswith("5 NaN total rewards (7.8%) in 1 step(s), first at step 1; a warning: at least ")
    assert f.message.endswith("0.0% without step 1 (nan_error=5% needs both)")
    _nan_run(tmp_path / "two", 2, {0: 1, 1: 1})
    assert _nan(tmp_path / "two").severity == "warning"  # too few values
    _nan_run(tmp_path / "first", 1, {0: 5})  # the first step alone (doctor --follow's first check)
    assert _nan(tmp_path / "first").severity == "warning"
    _nan_run(tmp_path / "turned", 5, {3: 8, 4: 8}, rows=8)
    assert _nan(tmp_path / "turned").severity == "error"
    _nan_run(tmp_path / "steady", 20, dict.fromkeys(range(20), 16), rows=200)  # 8 % at every step
    assert _nan(tmp_path / "steady").severity == "error"
    _nan_run(tmp_path / "burst3", 40, {10: 16, 11: 16, 12: 16})  # 3 steps of NaN in 40: 7.5 %
    assert _nan(tmp_path / "burst3").severity == "error"
    # nan_confidence=0.5: the share itself for the first condition (2 of 32 is then enough)
    assert _nan(tmp_path / "two", DoctorConfig(nan_confidence=0.5)).severity == "error"


def test_nan_confidence_is_a_threshold_with_a_range(cli, tmp_path):
    _nan_run(tmp_path / "run", 2, {0: 1, 1: 1})  # 2 of 32 (6.25 %), at two steps
    assert cli("doctor", tmp_path / "run", "--fail-on", "error").exit_code == 0
    assert cli("doctor", tmp_path / "run", "--fail-on", "error", "--set", "nan_confidence=0.5").exit_code == 1
    r = cli("doctor", tmp_path / "run", "--set", "nan_confidence=1")
    assert r.exit_code == 2 and "0.5 <= nan_confidence < 1" in r.stderr
    doc = (Path(__file__).resolve().parents[1] / "docs" / "doctor.md").read_text()
    assert "| `nan_confidence` | 0.95 |" in doc


def test_follow_grades_the_first_steps_as_doctor_does_and_ends_with_the_runs_share(tmp_path):
    """``doctor --follow`` judged 5 NaN at step 1 on the first two steps (15.6 %: an error, the CI job failed)
    while the finished run has 1.6 %, a warning for ``doctor``; and the finding's last event kept the early
    share when no NaN came after (its update was keyed on the count)."""
    run = tmp_path / "run"
    rows = 16
    w = RunWriter(run, name="r", roles=["solver"], durable=False)

    def step(s: int, nan: int = 0) -> None:
        reward = [float("nan") if i < nan else 0.1 * (i % 5) for i in range(rows)]
        w.log_samples(s, {"reward": reward, "solver_reward": [0.5] * rows, "solver_kl": [0.01] * rows})
        w.flush()

    step(0)
    step(1, nan=5)
    watch = DoctorWatch(run, DoctorConfig(), min_gap=0.0)
    watch.changed()
    [first] = [e.data for e in watch.poll() if e.data["kind"] == "nan_rewards"]
    assert first["severity"] == "warning" and "(15.6%)" in first["message"]
    for s in range(2, 20):
        step(s)
    w.close()
    watch.changed()
    last = [e.data for e in watch.final(settle_all=True) if e.data["kind"] == "nan_rewards"]
    assert [(e["severity"], e.get("update")) for e in last] == [("warning", True)]
    assert last[0]["message"] == "5 NaN total rewards (1.6%) in 1 step(s), first at step 1"
    assert last[0]["message"] == _nan(run).message  # what doctor says of the finished run


# -- 3: wide characters on the live screen ------------------------------------------------------------------------
def test_role_names_of_wide_characters_keep_their_line_within_the_screen(tmp_path):
    """A CJK name of 14 characters takes 27 cells: cut and padded by characters, its line ran past 80 columns
    and rich cut its KL to '0.0…' and dropped its trend."""
    live = LiveRun(tmp_path / "run")
    roles = ["solver", "中文角色名字很长的名字中文角色", "🙂" * 10]
    live.role_order = roles
    for s in range(12):
        live.steps[s] = StepStats(
            s, 8, {r: RoleStep(0.5 + 0.01 * s, 0.01648 + 1e-4 * s, 8) for r in roles}, time.time()
        )
    plain = io.StringIO()
    Console(file=plain, width=80, no_color=True).print(Screen(live, None, [], interval=1))
    lines = plain.getvalue().splitlines()
    assert all(cell_len(line) <= 80 for line in lines)
    mine = [line for line in lines if line.startswith(("中文", "🙂"))]
    assert len(mine) == 2
    # the sparklines start at the same cell on every role's line: the names are padded in cells
    rows = [line for line in lines if line.startswith(("solver", "中文", "🙂"))]
    assert len({cell_len(re.split("[▁▂▃▄▅▆▇█]", line)[0]) for line in rows}) == 1
    for line in mine:
        assert "0.01758" in line and "…" in line.split(" ")[0]
        assert line.rstrip().endswith("+0.0011"), line  # the KL trend, not cut


def test_cut_middle_cells_cuts_by_terminal_cells():
    from runlog.textsafe import cut_middle, cut_middle_cells, pad_cells

    name = "中文角色名字很长的名字中文角色"
    cut = cut_middle_cells(name, 14)
    assert cell_len(cut) <= 14 and cut.startswith("中文角") and cut.endswith("文角色") and "…" in cut
    assert cell_len(pad_cells(cut, 14)) == 14
    assert cut_middle_cells("verifier_math", 20) == "verifier_math"
    assert cut_middle_cells("verifier_math", 9) == cut_middle("verifier_math", 9)  # ASCII: as before
    assert cut_middle("中文角色名字很长的名字中文角色", 14) == "中文角色名字…的名字中文角色"  # other callers unchanged


# -- 4e: prompt groups of one sample ------------------------------------------------------------------------------
def _generations(run: Path, per_prompt: int) -> None:
    run.mkdir()
    with open(run / "generations.jsonl", "w") as fh:
        for step in range(12):
            for i in range(8):
                score = 0.5 if per_prompt > 1 else (step * 8 + i) % 7 / 7
                prompt = f"q{step}-{i // per_prompt}"
                fh.write(json.dumps({"step": step, "input": prompt, "output": f"a {i}", "score": score}) + "\n")


def test_prompt_groups_of_one_sample_are_no_zero_advantage(tmp_path, cli):
    """All prompts distinct (one rollout per prompt): every 'group' of one is trivially flat, and doctor said
    '100% of prompt groups have equal rewards ... no learning signal' of a run whose every step has spread, while
    summarize's zero_adv_frac is null. Judged as a run without groups, with a note; real groups still are."""
    _generations(tmp_path / "single", 1)
    d = diagnose(open_run(tmp_path / "single"))
    assert not [f for f in d.findings if f.kind == "zero_advantage"]
    assert any("all prompt groups hold one reward" in n for n in d.notes)
    summary = json.loads(cli("summarize", tmp_path / "single", "--by", "step", "--format", "json").stdout)
    assert all(r["zero_adv_frac"] is None for r in summary)
    _generations(tmp_path / "groups", 4)  # groups of 4, every reward 0.5: no signal at all
    [f] = [f for f in diagnose(open_run(tmp_path / "groups")).findings if f.kind == "zero_advantage"]
    assert f.evidence["groups"] is True and "of prompt groups" in f.message


# -- 4c: one wording for a gap --------------------------------------------------------------------------------------
def test_a_gap_reads_the_same_in_watch_doctor_follow_and_doctor(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, name="r", roles=["solver"], durable=False) as w:
        for s in [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]:
            w.log_samples(s, {"reward": [0.5, 0.25], "solver_reward": [0.5, 0.25], "solver_kl": [0.01, 0.02]})
    live = LiveRun(run, settle=0.0)
    lister = run_lister(run)
    events = live.update(*lister()) + live.update(*lister())
    [gap] = [e.data for e in events if e.kind == "problem"]
    assert gap["message"] == "1 step(s) missing (8)"
    followed = issue_finding(Issue(**gap))
    [plain] = [f for f in diagnose(open_run(run)).findings if f.kind == "step_gaps"]
    assert followed.message == plain.message == "split train: 1 step(s) missing (8)"
    assert not math.isnan(followed.onset_step or 0) and followed.onset_step == plain.onset_step == 8
