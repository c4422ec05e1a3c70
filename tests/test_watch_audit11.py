"""``runlog watch`` and ``runlog doctor --follow`` on runs a ``RunWriter`` writes live (audit 11): idle is what a
listing made after doctor's check saw, never the time the check took; a closed writer's files still being
copied (the state files came first) are waited for; a live writer's ``.tmp`` files are in flight, not leftovers
(its lock tells, as in ``inspect``); steps never shown are neither ``removed`` nor ``update``; a ``--split`` the
run does not have is said once its first sample file comes; SIGTERM and SIGHUP end ``doctor --follow`` with an
``end`` line; the last steps are printed before the last checks; a writer's lock is no file of the run; a
process whose writer holds its lock is "still writing (its writer is open)", as inspect says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import runlog.analysis.doctor as doctor_module
import runlog.cli.watch_cmd as watch_cmd
from runlog import RunWriter
from runlog.analysis.doctor import DoctorConfig
from runlog.watch import Backoff, DoctorWatch, Event, LiveRun, Watcher, follow_findings, watcher_for
from runlog.watch.poll import run_lister
from watch_helpers import Lines, Trainer, child_env

from conftest import ROOT

STEP_FILE = "samples/train/step_{:08d}.p{}.parquet"
RESUMED = "ignore:.*resumed writer:runlog.writer.errors.WriterWarning"


def _env() -> dict[str, str]:
    """``child_env``, but a PYTHONPATH given to the tests comes first (to run them against another tree)."""
    env = child_env()
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join([os.environ["PYTHONPATH"], env["PYTHONPATH"]])
    return env


def _runlog(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runlog", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )


def _rows(step: int, n: int = 4, shift: float = 0.0, nan: int = 0) -> dict:
    r = [float("nan") if i < nan else shift + (i + step) / 10 for i in range(n)]
    return {
        "sample_id": [f"s{step}-{i}" for i in range(n)],
        "reward": r,
        "solver_reward": r,
        "solver_kl": [0.01] * n,
        "completion": [f"answer {i}" for i in range(n)],
    }


def _write(run: Path, steps: range, *, closed: bool = True, split: str = "train", **kw) -> None:
    with RunWriter(run, name="r", roles=["solver"]) as w:
        for s in steps:
            w.log_samples(s, _rows(s, **kw), split=split)
    if not closed:  # killed: its state stays open
        state = run / ".writer.p0.json"
        state.write_text(json.dumps({"process": 0, "state": "open"}))


def _rows_on_disk(run: Path, step: int) -> int:
    """A step's rows, from its files with pyarrow."""
    return sum(pq.read_metadata(f).num_rows for f in run.glob(f"samples/train/step_{step:08d}.p*.parquet"))


# -- 1: idle is what a listing after the check saw --------------------------------------------------------------
class _SlowCheck:
    """A doctor whose check (in the foreground, as ``doctor --follow`` runs it) takes ``cost`` seconds of the
    watcher's clock, while the trainer writes one more step."""

    def __init__(self, clock: list[float], cost: float, during) -> None:
        self.clock, self.cost, self.during = clock, cost, during
        self.dirty = False

    def changed(self) -> None:
        self.dirty = True

    def poll(self) -> list[Event]:
        if self.dirty:
            self.dirty = False
            self.clock[0] += self.cost
            self.during()
        return []

    def final(self, settle_all: bool = False) -> list[Event]:
        return []


def test_a_check_longer_than_idle_exit_is_not_idle_time(tmp_path):
    """``doctor --follow --idle-exit 4`` ended "idle" (exit 0) 0.56 s after the writer's last step, while it went
    on writing: the check (13 s on the audit's run) ran in the foreground, and the time it took was counted as
    idle without listing the run again. Now only a listing begun 4 s after the last change that finds none
    ends it."""
    run = tmp_path / "run"
    _write(run, range(2), closed=False)
    clock = [100.0]
    written = []

    def one_more_step() -> None:  # the trainer writes while the check runs
        step = 2 + len(written)
        with RunWriter(run, name="r", roles=["solver"]) as w:
            w.log_samples(step, _rows(step))
        (run / ".writer.p0.json").write_text(json.dumps({"process": 0, "state": "open"}))
        written.append(step)

    w = Watcher(
        LiveRun(run),
        run_lister(run),
        Backoff(0.5, 0.5),
        doctor=_SlowCheck(clock, 13.0, one_more_step),  # type: ignore[arg-type]
        idle_exit=4.0,
        clock=lambda: clock[0],
    )
    w.poll()  # the first listing: a change, a 13 s check during which step 2 was written
    assert written == [2]
    assert w.ended() is None  # was "idle": 13 s since the change, but no listing saw them quiet
    assert w.until_end() == 0.0  # list again at once
    events, _ = w.poll()  # sees step 2 (a change: a check again, step 3 written meanwhile)
    assert [e.data["step"] for e in events if e.kind == "step"] == [2] and w.ended() is None
    clock[0] += 0.5
    w.doctor.during = lambda: None  # type: ignore[union-attr]  (the trainer stopped)
    events, _ = w.poll()  # sees step 3, checks (13 s), nothing written meanwhile
    assert [e.data["step"] for e in events if e.kind == "step"] == [3] and w.ended() is None
    w.poll()  # a listing 13 s after the change that finds none: idle now
    assert w.ended() == "idle"


def test_doctor_follow_with_a_slow_check_follows_until_the_writer_stops(tmp_path, cli, monkeypatch):
    """End to end: a check that takes 1.5 s, ``--idle-exit 1``, a trainer in another process writing a step
    every 0.3 s for about 3 s: ``doctor --follow`` ended "idle" at its first check; now it ends once the
    trainer stopped (its last step on disk 1 s or more before the end)."""
    run = tmp_path / "run"
    trainer = Trainer(run)
    trainer.step()
    real = doctor_module.diagnose

    def slow(*a, **kw):
        time.sleep(1.5)
        return real(*a, **kw)

    monkeypatch.setattr(doctor_module, "diagnose", slow)
    last: list[float] = []

    def train() -> None:
        for _ in range(10):
            time.sleep(0.3)
            trainer.step()
            last.append(time.time())

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    try:
        args = ("doctor", run, "--follow", "--fail-on", "error", "--format", "json", "--interval", "0.2")
        r = cli(*args, "--idle-exit", "1")
        ended, steps_then = time.time(), len(last)
        thread.join(timeout=30)
    finally:
        trainer.kill()
    assert json.loads(r.stdout.splitlines()[-1])["reason"] == "idle" and r.exit_code == 0, r.stdout
    assert steps_then == 10, f"ended while the trainer had written {steps_then} of its 10 steps"
    assert ended - last[-1] >= 1.0


# -- 2: a copy that brought the state files first --------------------------------------------------------------
def test_doctor_follow_waits_for_a_copy_that_brought_the_state_files_first(tmp_path):
    """A finished run copied state files first, then a step file every 0.3 s: ``doctor --follow`` failed (exit 1)
    on ``writer_incomplete`` 1.5 s after the state files came, inside ``--settle``; ``watch`` waits for such a
    copy (docs/watch.md). Now it waits as well and ends "finished", exit 0."""
    src, run = tmp_path / "src", tmp_path / "run"
    _write(src, range(6))
    (run / "samples" / "train").mkdir(parents=True)
    doctor = _runlog(
        "doctor", str(run), "--follow", "--format", "json", "--interval", "0.2", "--settle", "3", "--idle-exit", "20"
    )
    try:
        time.sleep(0.5)
        for name in ("run.json", ".writer.p0.json"):
            shutil.copy(src / name, run / name)
        for f in sorted((src / "samples" / "train").iterdir()):
            time.sleep(0.3)
            shutil.copy(f, run / "samples" / "train" / f.name)
        for f in src.glob("scalars.p*.jsonl"):
            shutil.copy(f, run / f.name)
        assert doctor.wait(timeout=60) == 0
    finally:
        doctor.kill()
        doctor.wait()
    events = [json.loads(line) for line in doctor.stdout.read().splitlines()]
    assert not [e for e in events if e["event"] == "finding"], events
    assert events[-1]["reason"] == "finished"


def test_a_copy_that_stops_short_still_fails_once_it_held_for_settle(tmp_path):
    """The same finding counts once the run has stayed short of what its writer wrote, unchanged, for
    ``--settle`` seconds (a copy that stopped, files deleted)."""
    src, run = tmp_path / "src", tmp_path / "run"
    _write(src, range(6))
    (run / "samples" / "train").mkdir(parents=True)
    for name in ("run.json", ".writer.p0.json"):
        shutil.copy(src / name, run / name)
    for f in sorted((src / "samples" / "train").iterdir())[:3]:
        shutil.copy(f, run / "samples" / "train" / f.name)
    t0 = time.monotonic()
    doctor = _runlog(
        "doctor", str(run), "--follow", "--format", "json", "--interval", "0.2", "--settle", "1", "--idle-exit", "30"
    )
    try:
        assert doctor.wait(timeout=60) == 1
    finally:
        doctor.kill()
        doctor.wait()
    assert time.monotonic() - t0 < 25  # at once once settled, not at --idle-exit
    events = [json.loads(line) for line in doctor.stdout.read().splitlines()]
    [finding] = [e for e in events if e["event"] == "finding"]
    assert finding["evidence"]["problem_kind"] == "writer_incomplete" and "hold step 2" in finding["message"]
    assert events[-1]["reason"] == "failing"


# -- 3: a live writer's temporary file is in flight ------------------------------------------------------------
def test_a_live_writers_temporary_file_is_no_leftover_until_its_writer_is_gone(tmp_path):
    """A ``.step_*.tmp`` file unchanged for longer than ``--settle`` while its writer is alive (a large step ahead
    of it is published first) was a ``leftover_temporary`` warning, "a writer stopped mid-file (killed?)", and
    could fail ``doctor --follow --fail-on warning`` on a healthy run. ``inspect``'s rule now: the writer holds
    its lock, so the file is in flight. Once the writer is killed (its lock gone), it is a leftover."""
    run = tmp_path / "run"
    trainer = Trainer(run)
    try:
        trainer.step()
        tmp = run / "samples" / "train" / ".step_00000001.p0.parquet.tmp"
        tmp.write_bytes(b"PAR1 being written")
        old = time.time() - 60
        os.utime(tmp, (old, old))  # unchanged for a minute: past any settle
        live, lister = LiveRun(run, settle=0.2), run_lister(run)
        assert [e for e in live.update(*lister()) if e.kind == "problem"] == []
        assert [e for e in live.update(*lister()) if e.kind == "problem"] == []
    finally:
        trainer.kill()  # killed: the kernel releases its lock
    [problem] = [e.data for e in live.update(*lister()) if e.kind == "problem"]
    assert (problem["kind"], problem["onset_step"]) == ("leftover_temporary", 1)


# -- 4: steps never shown --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings(RESUMED)
def test_steps_never_shown_are_neither_removed_nor_updates(tmp_path, monkeypatch, capsys):
    """Watch started after a writer was killed at step 8 shows only step 7; a resume from step 5 then gave
    ``step 5 update``, ``removed [6, 7]``, ``step 6 update``: steps 5 and 6 were never shown. Now: ``step 5``
    new, ``removed [7]``, ``step 6`` new, ``step 7`` an update (it was shown)."""
    run = tmp_path / "run"
    _write(run, range(8), closed=False)
    watcher = watcher_for(str(run), interval=0.01, idle_exit=60, settle=60)
    resumed: list[RunWriter] = []

    def sleep(_: float) -> None:
        if not resumed:  # the resume takes steps 5-7 out of the run and writes step 5 again
            w = RunWriter(run, name="r", roles=["solver"])
            w.log_samples(5, _rows(5, n=3, shift=1.0))
            w.flush()
            resumed.append(w)
        elif len(resumed) == 1:
            w = resumed[0]
            w.log_samples(6, _rows(6, n=3, shift=1.0))
            w.log_samples(7, _rows(7, n=3, shift=1.0))
            w.close()
            resumed.append(w)

    monkeypatch.setattr(watch_cmd.time, "sleep", sleep)
    assert watch_cmd._lines(watcher, as_json=True) == "finished"
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said = [
        (e["event"], e.get("step", e.get("steps")), bool(e.get("update")))
        for e in events
        if e["event"] in ("step", "removed")
    ]
    assert said == [
        ("step", 7, False),
        ("step", 5, False),
        ("removed", [7], False),
        ("step", 6, False),
        ("step", 7, True),
    ]
    last = {e["step"]: e for e in events if e["event"] == "step"}
    for s in (5, 6, 7):  # the resumed run's figures, from the files
        table = pq.read_table(run / STEP_FILE.format(s, 0))
        assert last[s]["rows"] == _rows_on_disk(run, s) == 3
        assert last[s]["roles"][0]["reward_mean"] == pytest.approx(float(np.mean(table.column("reward").to_numpy())))


# -- 5: a --split the run does not have ------------------------------------------------------------------------
def test_a_split_not_written_is_said_when_the_first_sample_file_comes(tmp_path):
    """``watch --split test`` begun on an empty folder said nothing, and ended "finished" having shown no step:
    the split was checked only when the run was first read (its manifest, before any sample file)."""
    run = tmp_path / "run"
    run.mkdir()
    live, lister = LiveRun(run, split="test"), run_lister(run)
    assert live.update(*lister()) == []
    w = RunWriter(run, name="r", roles=["solver"])
    try:
        assert [e for e in live.update(*lister()) if e.kind == "note"] == []  # the manifest only: nothing to tell
        w.log_samples(0, _rows(0))
        w.log_samples(0, _rows(0), split="eval")
        w.flush()
        notes = [e.data["message"] for e in live.update(*lister()) if e.kind == "note"]
        assert notes == ["no step of split test yet (this run has: eval, train)"]
        w.log_samples(1, _rows(1))
        w.flush()
        assert [e for e in live.update(*lister()) if e.kind == "note"] == []  # said once
    finally:
        w.close()


# -- 6: doctor --follow on SIGTERM and SIGHUP -----------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_doctor_follow_stopped_by_a_signal_says_end_and_exits_128_plus_it(tmp_path, sig):
    """``timeout 600 runlog doctor RUN --follow`` (CI): SIGTERM killed it (-15) with no ``end`` line; ``watch``
    ends on it as on Ctrl-C. Now doctor --follow does too: ``end interrupted``, exit 143 (SIGHUP: 129)."""
    run = tmp_path / "run"
    _write(run, range(3), closed=False, nan=4)
    doctor = _runlog("doctor", str(run), "--follow", "--fail-on", "never", "--format", "json", "--interval", "0.2")
    try:
        out = Lines(doctor.stdout)
        out.wait(lambda line: json.loads(line)["event"] == "finding", timeout=60)  # it is following now
        doctor.send_signal(sig)
        assert doctor.wait(timeout=20) == 128 + sig
        end = json.loads(out.wait(lambda line: json.loads(line)["event"] == "end"))
        assert end["reason"] == "interrupted"
    finally:
        doctor.kill()
        doctor.wait()
    assert "Traceback" not in doctor.stderr.read()


# -- 7: the last steps before the last checks -----------------------------------------------------------------
def test_the_last_step_lines_are_printed_before_doctors_last_check(tmp_path, monkeypatch, capsys):
    """Once the run finished, its last step lines waited for doctor's last check (23 s on the audit's run, 2 s
    with --no-doctor): they are printed first now, then what the check finds, then the end."""
    run = tmp_path / "run"
    _write(run, range(3))
    printed_before: list[str] = []

    def final(self, settle_all: bool = False) -> list[Event]:
        printed_before.append(capsys.readouterr().out)
        return [Event("finding", {"kind": "k", "severity": "info", "onset_step": None, "message": "m"})]

    monkeypatch.setattr(DoctorWatch, "final", final)
    doctor = DoctorWatch(run, DoctorConfig(), background=True)
    watcher = watcher_for(str(run), interval=0.01, doctor=doctor)
    assert watch_cmd._lines(watcher, as_json=True) == "finished"
    doctor.close()
    [before] = printed_before
    assert [json.loads(line)["event"] for line in before.splitlines()] == ["step", "ended"]
    after = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert after[0] == "finding" and after[-1] == "end"


def test_doctor_follow_gives_what_a_poll_found_before_the_last_check(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _write(run, range(3), closed=False)
    (run / "samples" / "train" / ".step_00000003.p0.parquet.tmp").write_bytes(b"PAR1")  # killed mid-file
    given: list[Event] = []
    at_final: list[int] = []

    def final(self, settle_all: bool = False) -> list[Event]:
        at_final.append(len(given))
        return []

    monkeypatch.setattr(DoctorWatch, "final", final)
    watcher = watcher_for(str(run), idle_exit=0, settle=0, doctor=DoctorWatch(run, DoctorConfig()))
    for e in follow_findings(watcher, None, sleep=lambda _: None):
        given.append(e)
    kinds = [e.data["evidence"]["problem_kind"] for e in given if e.kind == "finding"]
    assert kinds == ["leftover_temporary", "writer_not_closed"]
    assert at_final == [1]  # the finding was given before the last check began


# -- 8: a writer's lock is no file of the run ------------------------------------------------------------------
def test_a_writers_lock_going_away_at_close_is_no_note(tmp_path):
    """Every run whose writer closed gave ``note: .writer.p0.lock: removed``: the lock was listed as a file of
    the run."""
    run = tmp_path / "run"
    live, lister = LiveRun(run), run_lister(run)
    w = RunWriter(run, name="r", roles=["solver"])
    w.log_samples(0, _rows(0))
    w.flush()
    assert (run / ".writer.p0.lock").exists()
    data, temp = lister()
    assert ".writer.p0.lock" not in data and ".writer.p0.lock" not in temp
    live.update(data, temp)
    w.close()
    assert not (run / ".writer.p0.lock").exists()
    events = live.update(*lister())
    assert [e.data["message"] for e in events if e.kind == "note"] == []
    assert [e.data["finished"] for e in events if e.kind == "ended"] == [True]


# -- 9: the words for a writer that holds its lock ---------------------------------------------------------------
OPEN_P1 = """
import sys
from runlog.writer import RunWriter
w = RunWriter(sys.argv[1], name="r", roles=["solver"], process_index=1)
w.log_samples(0, {"reward": [0.5, 0.5], "solver_reward": [0.5, 0.5]})
w.flush()
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_process_whose_writer_holds_its_lock_is_still_writing_as_inspect_says(tmp_path):
    """Process 0 closed, process 1 open and alive (its writer holds its lock): watch said "not closed by process
    1 (still writing, or killed)"; inspect says "process 1 still writing (its writer is open)", and so does
    watch now, from the same ``EndState.summary``."""
    run = tmp_path / "run"
    _write(run, range(3))
    p1 = subprocess.Popen(
        [sys.executable, "-c", OPEN_P1, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        Lines(p1.stdout).wait(lambda line: line == "ready", timeout=30)
        [ended] = [e.data for e in LiveRun(run).update(*run_lister(run)()) if e.kind == "ended"]
    finally:
        p1.kill()
        p1.wait()
    assert ended["message"] == "process 1 still writing (its writer is open); closed by process 0"
    assert ended["finished"] is False and ended["missing"] == [1]
