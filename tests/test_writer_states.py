"""Writer state files (``.writer.p{process}.json``, ``runlog.ends``): each process says "open" when its writer
opens and "closed" when it closes, so that ``inspect``, ``doctor``, ``watch`` and ``doctor --follow`` tell a
finished run from one still being written or killed, know a process before its first file, and see a closed
run whose files are not all there (a copy in progress); runs of other writers claim nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.doctor import END_GRACE_S, _end_findings, diagnose
from runlog.watch import Backoff, LiveRun, Watcher, run_lister
from runlog.writer import RunWriter

T0 = 1_700_000_000.0  # the writers' clock: states dated 2023-11-14T22:13:20Z
ROOT = Path(__file__).resolve().parents[1]


def _rows(step: int, n: int = 4) -> dict:
    return {"reward": [float(step + i) for i in range(n)], "group_id": [f"g{step}"] * n}


CHILD = """
import os, sys
sys.path[:0] = {path!r}
from runlog.writer import RunWriter
w = RunWriter({run!r}, roles=["solver"], process_index={process}, clock=lambda: {t0})
for s in {steps!r}:
    w.log_samples(s, {{"reward": [float(s), 1.0], "group_id": ["g", "g"]}})
    w.log_scalars(s, {{"loss": 1.0}})
if {close!r} == "kill":
    w.flush()
    os._exit(0)
if {close!r} == "exception":
    try:
        with w:
            raise ValueError("loss is NaN")
    except ValueError:
        pass
elif {close!r} == "exit0":
    with w:
        sys.exit(0)
else:
    w.close()
"""


def _write(run: Path, steps: range, *, process: int = 0, close: str = "close") -> None:
    """``close``: 'close', 'kill' (the process dies: its state stays open), 'exception', 'exit0'."""
    code = CHILD.format(path=sys.path, run=str(run), process=process, t0=T0, steps=list(steps), close=close)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _state(run: Path, process: int = 0) -> dict:
    return json.loads((run / f".writer.p{process}.json").read_text())


# -- the writer ---------------------------------------------------------------------------------------------
def test_the_state_is_open_from_the_start_and_closed_with_what_was_written(tmp_path):
    run = tmp_path / "run"
    w = RunWriter(run, roles=["solver"], clock=lambda: T0)
    assert _state(run) == {"process": 0, "state": "open", "heartbeat_s": 30}
    for s in range(3):
        w.log_samples(s, _rows(s))
        w.log_scalars(s, {"loss": 1.0})
    w.log_samples(2, _rows(2), split="eval")
    w.close()
    end = _state(run)
    assert (end["state"], end["how"], end["exception"], end["error"]) == ("closed", "close", None, None)
    assert end["ended"] == "2023-11-14T22:13:20Z" and end["last_step"] == {"eval": 2, "train": 2}
    assert (end["last_scalar_step"], end["rows_written"], end["files_written"], end["scalar_lines"]) == (2, 16, 4, 3)
    assert json.loads((run / "run.json").read_text())["writer"]["state_files"] is True

    with pytest.raises(ZeroDivisionError), RunWriter(run, process_index=1, clock=lambda: T0) as w1:
        w1.log_samples(0, _rows(0))
        _ = 1 / 0
    end = _state(run, 1)
    assert (end["how"], end["exception"]) == ("exception", "ZeroDivisionError: division by zero")
    assert end["last_step"] == {"train": 0}
    with pytest.raises(KeyboardInterrupt), RunWriter(run, process_index=2, clock=lambda: T0):
        raise KeyboardInterrupt
    assert _state(run, 2)["exception"] == "KeyboardInterrupt"  # no colon after a name with no message


def test_sys_exit_0_in_the_block_is_a_normal_end(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3), close="exit0")
    assert _state(run)["how"] == "close" and _state(run)["exception"] is None
    assert not _end_findings(open_run(run))


def test_a_resumed_writer_opens_its_state_again_until_it_closes(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, clock=lambda: T0) as w:
        w.log_samples(0, _rows(0))
        w.log_samples(1, _rows(1))
    w = RunWriter(run, clock=lambda: T0)
    assert _state(run)["state"] == "open" and not open_run(run).end_state.finished
    w.close()  # nothing new logged: the last step is still the one on disk
    assert _state(run)["last_step"] == {"train": 1} and open_run(run).end_state.finished


def test_a_state_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    from runlog.writer import run_writer

    run = tmp_path / "run"
    w = RunWriter(run, clock=lambda: T0)
    w.log_samples(0, _rows(0))

    def full_disk(path, data, *, durable):
        path.with_name(f".{path.name}.tmp").write_bytes(b"")  # as a write that fails half-way leaves it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_writer, "atomic_write_bytes", full_disk)
    with pytest.warns(run_writer.WriterWarning, match="state could not be written"):
        w.close()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == [".writer.p0.json"]  # still "open"
    assert _state(run)["state"] == "open"


def test_a_multiprocessing_child_that_forgets_close_still_writes_and_closes(tmp_path):
    """A fork child ends with ``os._exit``: no atexit hook; multiprocessing's finalizers close the writer. (In a
    process of its own: forking this one, whose polars has started threads, could deadlock.)"""
    run = tmp_path / "run"
    code = f"""
import sys
sys.path[:0] = {sys.path!r}
import multiprocessing as mp
from runlog.writer import RunWriter

def child(process):
    w = RunWriter({str(run)!r}, process_index=process, clock=lambda: {T0})
    for s in range(3):
        w.log_samples(s, {{"reward": [1.0, 2.0], "group_id": ["g", "g"]}})

if __name__ == "__main__":
    procs = [mp.get_context("fork").Process(target=child, args=(p,)) for p in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    sys.exit(max(p.exitcode for p in procs))
"""
    script = tmp_path / "forked.py"
    script.write_text(code)
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    state = open_run(run).end_state
    assert state.finished and [_state(run, p)["how"] for p in (0, 1)] == ["exit", "exit"]
    assert sum(1 for _ in (run / "samples" / "train").glob("*.parquet")) == 6


# -- reading: inspect and doctor ----------------------------------------------------------------------------
def test_a_killed_process_is_told_from_a_finished_run(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(10), process=0)
    _write(run, range(6), process=1, close="kill")  # died at step 5
    state = open_run(run).end_state
    assert state.expected and not state.finished and state.missing == [1] and state.processes == [0, 1]
    r = cli("inspect", run)
    assert r.exit_code == 0, r.stderr  # not a file problem: inspect says it in its header
    assert "writer: not closed by process 1 (still writing, or killed); closed by process 0" in r.stdout
    js = json.loads(cli("inspect", run, "--format", "json").stdout)["writers"]
    assert (js["finished"], js["missing"], js["states"][0]["last_step"]) == (False, [1], {"train": 9})
    # behind the others, which closed long ago by the files' own times (the writers' clock said 2023) -> warning
    [f] = _end_findings(open_run(run), now=time.time() + END_GRACE_S + 1)
    assert f.severity == "warning" and f.evidence["problem_kind"] == "writer_not_closed"
    assert "process 1 did not close its writer and stopped behind process 0 (train: its last step 5, theirs 9" in (
        f.message
    )
    assert f.evidence["path"] == ".writer.p1.json"
    [f] = _end_findings(open_run(run))  # just closed: info, whatever the writers' clock says
    assert f.severity == "info" and "has not closed its writer yet" in f.message


def test_a_process_that_has_written_no_file_yet_is_known(tmp_path, cli):
    """Process 0 logged nothing and closed; process 1 opened and has no file yet (or was killed before one):
    the run is not finished, and inspect names process 1."""
    run = tmp_path / "run"
    RunWriter(run, process_index=1, clock=lambda: T0)  # open, never closed (as if killed: no atexit here)
    with RunWriter(run, process_index=0, clock=lambda: T0):
        pass
    state = open_run(run).end_state
    assert state.processes == [0, 1] and state.missing == [1] and not state.finished
    # Its writer object still holds the run's lock here (it was never closed): said to be writing.
    assert "process 1 still writing (its writer is open)" in cli("inspect", run).stdout


def test_a_process_killed_with_only_scalars_is_behind_on_them(tmp_path):
    run = tmp_path / "run"
    _write(run, range(8), process=0)
    code = CHILD.format(path=sys.path, run=str(run), process=1, t0=T0, steps=[], close="kill")
    code = code.replace("w.flush()", "w.log_scalars(0, {'loss': 1.0}); w.flush()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    [f] = _end_findings(open_run(run), now=time.time() + END_GRACE_S + 1)
    assert f.severity == "warning" and "scalars: its last step 0, theirs 7" in f.message


def test_a_run_every_process_closed_has_no_finding_and_says_so(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(6), process=0)
    _write(run, range(6), process=1)
    state = open_run(run).end_state
    assert state.finished and state.missing == [] and state.incomplete == []
    assert "writer: closed by every process (0, 1)" in cli("inspect", run).stdout
    assert not _end_findings(open_run(run))
    r = open_run(run)  # the state files are neither data nor a leftover temporary file
    assert not r.problems and not r.unmatched and not any(f.path.startswith(".writer") for f in r.files)
    assert cli("inspect", run, "--strict").exit_code == 0


def test_a_closed_run_whose_files_are_not_all_there_is_incomplete(tmp_path, cli):
    """A copy that brought the state files first (rsync sends names in order: ``.writer.*`` before
    ``samples/``), or a file deleted since: not finished, and said."""
    run = tmp_path / "run"
    _write(run, range(6), process=0)
    (run / "samples" / "train" / "step_00000005.p0.parquet").unlink()
    (run / "scalars.p0.jsonl").unlink()
    state = open_run(run).end_state
    assert not state.finished and state.missing == []
    assert state.incomplete == [(0, "train", 4, 5), (0, "scalars", None, 5)]
    out = cli("inspect", run).stdout
    assert "process 0 wrote train up to step 5, its files here hold step 4 (copied in part?)" in out
    kinds = {f.evidence["problem_kind"]: f.severity for f in _end_findings(open_run(run))}
    assert kinds == {"writer_incomplete": "warning"}


def test_an_exception_a_failed_writer_and_an_unreadable_state_are_findings(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3), process=0, close="exception")
    [f] = _end_findings(open_run(run))
    assert f.severity == "warning" and f.message.count("ValueError: loss is NaN") == 1
    end = _state(run)
    (run / ".writer.p0.json").write_text(
        json.dumps({**end, "exception": None, "error": "OSError: [Errno 28] No space"})
    )
    [f] = _end_findings(open_run(run))
    assert f.severity == "error" and "writer_failed" in f.message and "No space" in f.message
    (run / ".writer.p0.json").write_text('{"process": 0, "state": "clo')
    findings = _end_findings(open_run(run))
    assert [f.severity for f in findings if "writer_state_unreadable" in f.message] == ["warning"]
    assert any(f.evidence.get("problem_kind") == "writer_state_unreadable" for f in diagnose(open_run(run)).findings)


def test_no_process_closed_is_info_and_runs_of_other_writers_claim_nothing(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(4), process=0, close="kill")
    [f] = _end_findings(open_run(run))
    assert f.severity == "info" and "no process has closed its writer" in f.message
    newest = max(p.stat().st_mtime for p in run.rglob("*") if p.is_file() and not p.name.startswith("."))
    [f] = _end_findings(open_run(run), now=newest + 3 * 3600)  # the age says which, to whoever knows the run
    assert f.severity == "info" and f.message.endswith("(its newest file was written 3.0 h ago)")
    manifest = json.loads((run / "run.json").read_text())
    del manifest["writer"]["state_files"]  # an older runlog, or another writer of the format
    (run / "run.json").write_text(json.dumps(manifest))
    (run / ".writer.p0.json").unlink()
    assert not open_run(run).end_state.known and not _end_findings(open_run(run))
    assert "writer:" not in cli("inspect", run).stdout
    assert json.loads(cli("inspect", run, "--format", "json").stdout)["writers"] is None


def test_a_process_is_behind_only_on_the_splits_it_writes(tmp_path):
    """Process 1 of the sample run writes no eval (eval on process 0 alone): with its state open and its train
    as far as process 0's, it is not 'behind on eval' (info, not the killed warning)."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / "sample_runs" / "debate_grpo", run)
    (run / ".writer.p1.json").write_text(json.dumps({"process": 1, "state": "open"}))
    [f] = _end_findings(open_run(run), now=time.time() + END_GRACE_S + 1)
    assert f.severity == "info" and "process 1 has not closed its writer yet" in f.message


# -- following ----------------------------------------------------------------------------------------------
def test_watch_ends_finished_once_every_process_closed(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3), process=0)
    _write(run, range(3), process=1, close="kill")
    w = Watcher(LiveRun(run, settle=60), run_lister(run), Backoff(1, 1))
    events, _ = w.poll()
    [ended] = [e for e in events if e.kind == "ended"]
    assert ended.data["finished"] is False and ended.data["missing"] == [1]
    assert w.ended() is None  # process 1 may still be writing
    _write(run, range(3, 4), process=1)  # process 1 resumed, wrote step 3 and closed
    (run / "samples/train/.step_00000009.p1.parquet.tmp").write_bytes(b"PAR1")  # left by its killed attempt
    events, _ = w.poll()
    assert [e.data["finished"] for e in events if e.kind == "ended"] == [True]
    assert w.ended() == "finished"
    # nothing more will be written: the temporary file is said now, not after --settle
    [problem] = [e for e in w.final_events("finished") if e.kind == "problem"]
    assert problem.data["kind"] == "leftover_temporary"


def test_watch_does_not_end_while_a_process_without_files_is_open(tmp_path):
    run = tmp_path / "run"
    RunWriter(run, process_index=1, clock=lambda: T0)  # opened, nothing written yet
    _write(run, range(3), process=0)
    w = Watcher(LiveRun(run, settle=60), run_lister(run), Backoff(1, 1))
    w.poll()
    assert w.ended() is None and w.live.end_state is not None and w.live.end_state.missing == [1]


def test_watch_of_a_copy_in_progress_waits_for_the_files(tmp_path):
    """The state files and the manifest copied first, the data after: finished only once every file is there."""
    src = tmp_path / "src"
    _write(src, range(4), process=0)
    run = tmp_path / "copy"
    run.mkdir()
    for name in (".writer.p0.json", "run.json"):
        shutil.copy2(src / name, run / name)
    w = Watcher(LiveRun(run, settle=60), run_lister(run), Backoff(1, 1))
    w.poll()
    assert w.ended() is None
    shutil.copytree(src / "samples", run / "samples")
    w.poll()
    assert w.ended() is None  # the scalars are not there yet
    shutil.copy2(src / "scalars.p0.jsonl", run / "scalars.p0.jsonl")
    w.poll()
    assert w.ended() == "finished"
    steps = [s for s, st in w.live.steps.items() if st.rows]
    assert steps == [0, 1, 2, 3]


def test_the_commands_stop_finished_when_the_run_is_closed(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(3), process=0)
    t0 = time.monotonic()
    r = cli("watch", run, "--format", "json", "--interval", "0.1", "--idle-exit", "60")
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.exit_code == 0 and events[-1] == {"event": "end", "reason": "finished", "message": None}
    assert [e["finished"] for e in events if e["event"] == "ended"] == [True]
    r = cli("doctor", run, "--follow", "--format", "json", "--interval", "0.1", "--idle-exit", "60")
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1])["reason"] == "finished"
    assert time.monotonic() - t0 < 50  # not the idle limit
    r = cli("watch", run, "--interval", "0.1", "--idle-exit", "60")
    assert "writer finished: closed by every process (0)" in r.stdout and "stopped: finished" in r.stderr


def test_a_killed_run_is_not_finished_for_watch_and_doctor_follow_says_so(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(8), process=0)
    _write(run, range(3), process=1, close="kill")
    r = cli("watch", run, "--format", "json", "--interval", "0.1", "--idle-exit", "0.5")
    assert json.loads(r.stdout.splitlines()[-1])["reason"] == "idle"
    r = cli("doctor", run, "--follow", "--format", "json", "--interval", "0.1", "--idle-exit", "0.5")
    # process 0 closed just now: process 1 may still come, so it is said as info when the follow stops
    found = [json.loads(x) for x in r.stdout.splitlines() if '"writer_not_closed' in x]
    assert [f["severity"] for f in found] == ["info"] and r.exit_code == 0
    ago = time.time() - 10 * 60
    os.utime(run / ".writer.p0.json", (ago, ago))  # process 0 closed 10 minutes ago; process 1 is behind
    r = cli("doctor", run, "--follow", "--format", "json", "--interval", "0.1", "--idle-exit", "0.5")
    found = [json.loads(x) for x in r.stdout.splitlines() if '"writer_not_closed' in x]
    assert [f["severity"] for f in found] == ["warning"] and found[0]["evidence"]["path"] == ".writer.p1.json"
    assert r.exit_code == 1 and json.loads(r.stdout.splitlines()[-1])["reason"] == "failing", r.stdout
    assert os.listdir(run) and _state(run, 1)["state"] == "open"


def test_the_live_screen_says_which_writers_are_open(tmp_path):
    import io

    from rich.console import Console

    from runlog.watch.screen import Screen

    run = tmp_path / "run"
    late = RunWriter(run, process_index=1, clock=lambda: T0)
    _write(run, range(3), process=0)
    live = LiveRun(run)

    def screen() -> str:
        live.update(*run_lister(run)())
        buf = io.StringIO()
        Console(file=buf, width=80, no_color=True).print(Screen(live, None, [], interval=1))
        return buf.getvalue()

    assert "writers: open p1  closed p0" in screen()
    late.close()
    assert "writers: all closed (0, 1): the run is finished" in screen()
