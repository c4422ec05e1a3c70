"""``runlog watch`` and ``runlog doctor --follow``, audited on live runs: a run that could not be listed at all
ends as an error (it ended ``idle`` with 0); a writer's leftover temporary file is a warning for ``--fail-on``;
steps a resumed writer replays come back as updates after a ``removed`` event (never a second new step); the
best and worst sample follow a late shard of the latest step; SIGTERM and SIGHUP restore the terminal and exit
143 and 129; an unreadable file is not also a gap; the NaN rewards of a step are counted in its event; the
screen's "last N steps" is the number of steps shown."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

import runlog.run as run_module
from runlog import RunWriter
from runlog.analysis.findings import Finding
from runlog.errors import DataError
from runlog.watch import Backoff, DoctorWatch, LiveRun, Watcher
from runlog.watch.findings import issue_finding
from runlog.watch.live import Issue
from runlog.watch.poll import run_lister
from runlog.watch.screen import Screen
from watch_helpers import Lines, child_env, written_run

from conftest import ROOT

STEP_FILE = "samples/train/step_{:08d}.p{}.parquet"


def _rows(step: int, n: int = 4, nan: int = 0) -> dict:
    r = [float("nan") if i < nan else (i + step) / 10 for i in range(n)]
    return {
        "sample_id": [f"s{step}-{i}" for i in range(n)],
        "reward": r,
        "solver_reward": r,
        "solver_kl": [0.01] * n,
        "completion": [f"answer {i}" for i in range(n)],
    }


def _write(run: Path, steps: range, *, closed: bool = True, **kw) -> None:
    with RunWriter(run, name="r", roles=["solver"]) as w:
        for s in steps:
            w.log_samples(s, _rows(s, **kw))
    if not closed:  # a run still being written: no end marker (a closed run ends the watch: "finished")
        for marker in run.glob(".writer.p*.json"):
            marker.unlink()


def _env() -> dict[str, str]:
    """``child_env``, but a PYTHONPATH given to the tests comes first (to run them against another tree)."""
    env = child_env()
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join([os.environ["PYTHONPATH"], env["PYTHONPATH"]])
    return env


def _kinds(events) -> list[str]:
    return [e.kind for e in events]


# -- 1: a run never listed is an error, not a run gone idle ------------------------------------------------
def test_a_run_that_cannot_be_listed_ends_unreachable_with_exit_1(tmp_path, cli, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()

    def no_credentials(*a, **kw):
        raise DataError(str(run), "no usable credentials (set GOOGLE_APPLICATION_CREDENTIALS)")

    monkeypatch.setattr(run_module, "list_files", no_credentials)
    fast = ("--interval", "0.1", "--idle-exit", "0.4", "--format", "json")
    r = cli("doctor", run, "--follow", "--fail-on", "error", *fast)
    end = json.loads(r.stdout.splitlines()[-1])
    assert r.exit_code == 1, r.stdout
    assert end["event"] == "end" and end["reason"] == "unreachable" and "no usable credentials" in end["message"]
    r = cli("watch", run, "--no-doctor", *fast)
    assert r.exit_code == 1 and json.loads(r.stdout.splitlines()[-1])["reason"] == "unreachable"


def test_a_listing_that_fails_once_and_then_succeeds_is_only_a_note(tmp_path):
    clock = [0.0]
    results = [{}, DataError("s3://b/run", "timed out"), {}]

    def lister():
        r = results.pop(0) if len(results) > 1 else results[0]
        if isinstance(r, Exception):
            raise r
        return r, {}

    w = Watcher(LiveRun(tmp_path), lister, Backoff(1.0, 1.0), idle_exit=5.0, clock=lambda: clock[0])
    w.poll()
    clock[0] = 1.0
    assert _kinds(w.poll()[0]) == ["note"]
    clock[0] = 5.0
    assert w.ended() == "unreachable"  # the listing fails when the limit comes, none succeeded in the window
    w.poll()
    assert w.ended() == "idle"  # listed again: the run was seen idle


# -- 2: a leftover temporary file is a warning for --fail-on ------------------------------------------------
def test_problem_kinds_map_to_doctors_severities():
    def severity(kind: str, sev: str) -> tuple[str, str]:
        f = issue_finding(Issue(kind, "samples/train/x", "m", 3, sev))
        return f.kind, f.severity

    assert severity("leftover_temporary", "warning") == ("data_problem", "warning")
    assert severity("warning", "warning") == ("data_problem", "info")  # inspect's warnings (docs/doctor.md)
    assert severity("unreadable", "error") == ("data_problem", "error")
    assert severity("newer_schema_version", "error") == ("data_problem", "error")
    assert severity("step_gap", "warning") == ("step_gaps", "warning")


def test_a_killed_writers_temporary_file_fails_doctor_follow_at_fail_on_warning(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(6))
    (run / "samples/train/.step_00000006.p0.parquet.tmp").write_bytes(b"PAR1")  # killed mid-file
    r = cli(
        "doctor", run, "--follow", "--fail-on", "warning", "--format", "json",
        "--interval", "0.1", "--settle", "0.2", "--idle-exit", "3",
    )  # fmt: skip
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 1 and events[-1]["reason"] == "failing", r.stdout
    [f] = [e for e in events if e["event"] == "finding"]
    assert f["kind"] == "data_problem" and f["severity"] == "warning" and f["onset_step"] == 6
    assert f["evidence"]["problem_kind"] == "leftover_temporary"


# -- 3: steps replayed or removed ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*resumed writer:runlog.writer.errors.WriterWarning")
def test_a_resumed_writer_replaying_steps_gives_updates_and_a_removed_event(tmp_path):
    run = tmp_path / "run"
    _write(run, range(5))
    live, lister = LiveRun(run), run_lister(run)
    assert [e.data["step"] for e in live.update(*lister()) if e.kind == "step"] == [0, 1, 2, 3, 4]
    with RunWriter(run, name="r", roles=["solver"]) as w:  # resumed from step 2: takes out 2-4, rewrites them
        w.log_samples(2, _rows(2, n=3))
        w.flush()
        events = live.update(*lister())
        steps = [e for e in events if e.kind == "step"]
        assert [(e.data["step"], e.data["rows"], e.data.get("update")) for e in steps] == [(2, 3, True)]
        assert [e.data for e in events if e.kind == "removed"] == [{"split": "train", "steps": [3, 4]}]
        assert live.latest is not None and live.latest.step == 2
        w.log_samples(3, _rows(3, n=3))
    events = live.update(*lister())
    steps = [e for e in events if e.kind == "step"]
    assert [(e.data["step"], e.data["rows"], e.data.get("update")) for e in steps] == [(3, 3, True)]  # came back
    os.remove(run / STEP_FILE.format(3, 0))  # deleted by hand: the latest step goes, said once
    events = live.update(*lister())
    assert [e.data for e in events if e.kind == "removed"] == [{"split": "train", "steps": [3]}]
    assert live.latest is not None and live.latest.step == 2


# -- 6: an unreadable file is not also a gap ----------------------------------------------------------------
def test_an_unreadable_file_is_not_also_reported_as_a_gap(tmp_path):
    run = tmp_path / "run"
    _write(run, range(5))
    (run / STEP_FILE.format(2, 0)).write_bytes(b"PAR1 not really")
    live = LiveRun(run, settle=0.0)
    lister = run_lister(run)
    events = live.update(*lister()) + live.update(*lister())
    problems = [(e.data["kind"], e.data["onset_step"]) for e in events if e.kind == "problem"]
    assert problems == [("unreadable", 2)]
    os.remove(run / STEP_FILE.format(2, 0))  # now the step is missing: a gap
    events = live.update(*lister())
    assert [(e.data["kind"], e.data["message"]) for e in events if e.kind == "problem"] == [
        ("step_gap", "1 step(s) missing (2)")
    ]


# -- 7: NaN rewards counted in the step event; the NaN finding's count updates ------------------------------
def test_a_steps_nan_rewards_are_counted_beside_the_mean(tmp_path):
    run = tmp_path / "run"
    _write(run, range(2), nan=1)
    events = LiveRun(run).update(*run_lister(run)())
    [role] = [e for e in events if e.kind == "step"][-1].data["roles"]
    assert role["role"] == "solver" and role["count"] == 3 and role["reward_nan"] == 1
    assert role["reward_mean"] == (2 + 3 + 4) / 30  # the NaN one left out, as summarize does


def test_the_nan_findings_count_comes_again_as_an_update(tmp_path):
    def nan_finding(n: int) -> Finding:
        return Finding("nan_rewards", "warning", f"{n} NaN rewards", None, 3, {"nan": n, "steps": [3]})

    watch = DoctorWatch(tmp_path, None)  # type: ignore[arg-type]
    assert [e.data.get("update") for e in watch.report([nan_finding(4)])] == [None]
    assert [(e.data["update"], e.data["evidence"]["nan"]) for e in watch.report([nan_finding(8)])] == [(True, 8)]
    assert watch.report([nan_finding(8)]) == []


# -- 8: the header says how many steps the sparklines show --------------------------------------------------
def test_the_header_says_the_number_of_steps_shown(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3))
    live = LiveRun(run)
    live.update(*run_lister(run)())
    buf = io.StringIO()
    Console(file=buf, width=80, no_color=True).print(Screen(live, None, [], interval=1))
    [header] = [x for x in buf.getvalue().splitlines() if x.startswith("role")]
    assert "reward, last 3 steps" in header


# -- 4, 5: the live screen on a pseudo-terminal -------------------------------------------------------------
class Pty:
    """``runlog watch ARGS`` on a pseudo-terminal; the parent keeps the terminal's end to read its mode."""

    def __init__(self, *args: str) -> None:
        self.master, self.slave = pty.openpty()
        env = _env() | {"COLUMNS": "100", "LINES": "30", "TERM": "xterm"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runlog", "watch", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.out = b""

    def wait_for(self, text: bytes, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while text not in self.out:
            assert time.monotonic() < end, self.out[-2000:]
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                self.out += os.read(self.master, 65536)

    def drain(self) -> None:
        while select.select([self.master], [], [], 0.2)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.out += chunk

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_the_best_sample_follows_a_late_shard_of_the_latest_step(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3), closed=False)
    term = Pty(str(run), "--interval", "0.2", "--no-doctor")
    try:
        term.wait_for(b"s2-3")  # the best of step 2
        table = pq.read_table(run / STEP_FILE.format(2, 0))
        for name, values in (("sample_id", ["late-best"] * 4), ("reward", [9.99, 0.0, 0.0, 0.0])):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
        tmp = run / "samples/train/.late.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, run / STEP_FILE.format(2, 1))  # a late shard of the latest step, from process 1
        term.wait_for(b"late-best")
        term.wait_for(b"9.99")
        os.write(term.master, b"q")
        assert term.proc.wait(timeout=15) == 0
    finally:
        term.close()


def test_sigterm_on_the_live_screen_restores_the_terminal_and_exits_143(tmp_path):
    run = tmp_path / "run"
    _write(run, range(2), closed=False)
    term = Pty(str(run), "--interval", "0.2", "--no-doctor")
    try:
        term.wait_for(b"step 1")  # the first poll done: the keys are read (cbreak)
        before = termios.tcgetattr(term.slave)
        assert not before[3] & termios.ICANON  # cbreak while it runs
        term.proc.send_signal(signal.SIGTERM)
        assert term.proc.wait(timeout=15) == 143
        term.drain()
        mode = termios.tcgetattr(term.slave)[3]
        assert mode & termios.ECHO and mode & termios.ICANON
        assert term.out.rfind(b"\x1b[?25h") > term.out.rfind(b"\x1b[?25l")  # the cursor shown again
        assert b"Traceback" not in term.out
    finally:
        term.close()


def test_sighup_off_a_terminal_ends_with_129(tmp_path):
    run = written_run(tmp_path / "run", 1)
    watch = subprocess.Popen(
        [sys.executable, "-m", "runlog", "watch", str(run), "--format", "json", "--interval", "0.2", "--no-doctor"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        out = Lines(watch.stdout)
        out.wait(lambda line: json.loads(line)["event"] == "step")
        watch.send_signal(signal.SIGHUP)
        assert watch.wait(timeout=15) == 129
        assert json.loads(out.wait(lambda line: json.loads(line)["event"] == "end"))["reason"] == "interrupted"
    finally:
        watch.kill()
        watch.wait()
