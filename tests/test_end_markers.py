"""Writer end markers (``.end.p{process}.json``, ``runlog.ends``): a finished run is told from a killed one by
``inspect``, ``doctor``, ``watch`` and ``doctor --follow``; runs not written by a writer that writes them claim
nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.doctor import END_GRACE_S, _end_findings, diagnose
from runlog.watch import Backoff, LiveRun, Watcher, run_lister
from runlog.writer import RunWriter

T0 = 1_700_000_000.0  # the writers' clock: markers dated 2023-11-14T22:13:20Z


def _rows(step: int, n: int = 4) -> dict:
    return {"reward": [float(step + i) for i in range(n)], "group_id": [f"g{step}"] * n}


def _write(run: Path, steps: range, *, process: int = 0, close: str = "close") -> None:
    """``close``: 'close' (the writer closed), 'kill' (the process died: no marker), or 'exception'."""
    code = f"""
import os, sys
sys.path[:0] = {sys.path!r}
from runlog.writer import RunWriter
w = RunWriter({str(run)!r}, roles=["solver"], process_index={process}, clock=lambda: {T0})
for s in {list(steps)!r}:
    w.log_samples(s, {{"reward": [float(s), 1.0], "group_id": ["g", "g"]}})
if {close!r} == "kill":
    w.flush()
    os._exit(0)
if {close!r} == "exception":
    try:
        with w:
            raise ValueError("loss is NaN")
    except ValueError:
        pass
else:
    w.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _marker(run: Path, process: int = 0) -> dict:
    return json.loads((run / f".end.p{process}.json").read_text())


# -- the writer ---------------------------------------------------------------------------------------------
def test_close_writes_what_the_process_wrote_and_how_it_ended(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, roles=["solver"], clock=lambda: T0) as w:
        for s in range(3):
            w.log_samples(s, _rows(s))
            w.log_scalars(s, {"loss": 1.0})
        w.log_samples(2, _rows(2), split="eval")
    end = _marker(run)
    assert end["how"] == "close" and end["exception"] is None and end["error"] is None
    assert end["ended"] == "2023-11-14T22:13:20Z" and end["last_step"] == {"eval": 2, "train": 2}
    assert (end["last_scalar_step"], end["rows_written"], end["files_written"], end["scalar_lines"]) == (2, 16, 4, 3)
    assert json.loads((run / "run.json").read_text())["writer"]["end_markers"] is True

    with pytest.raises(ZeroDivisionError), RunWriter(run, process_index=1, clock=lambda: T0) as w1:
        w1.log_samples(0, _rows(0))
        _ = 1 / 0
    end = _marker(run, 1)
    assert (end["how"], end["exception"], end["last_step"]) == (
        "exception",
        "ZeroDivisionError: division by zero",
        {"train": 0},
    )


def test_a_resumed_writer_takes_its_marker_back_until_it_closes_again(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, clock=lambda: T0) as w:
        w.log_samples(0, _rows(0))
        w.log_samples(1, _rows(1))
    w = RunWriter(run, clock=lambda: T0)
    assert not (run / ".end.p0.json").exists()  # written again: not ended
    assert not open_run(run).end_state.finished
    w.close()  # nothing new logged: the last step is still the one on disk
    assert _marker(run)["last_step"] == {"train": 1} and open_run(run).end_state.finished


# -- reading: inspect and doctor ----------------------------------------------------------------------------
def test_a_killed_process_is_told_from_a_finished_run(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(10), process=0)
    _write(run, range(6), process=1, close="kill")  # died at step 5
    state = open_run(run).end_state
    assert state.expected and not state.finished and state.missing == [1] and list(state.ends) == [0]
    r = cli("inspect", run)
    assert r.exit_code == 0, r.stderr  # not a file problem: inspect says it in its header
    assert "writer: not closed by process 1 (killed, or still writing); closed by process 0" in r.stdout
    js = json.loads(cli("inspect", run, "--format", "json").stdout)["writer_end"]
    assert (js["finished"], js["missing"], js["ends"][0]["last_step"]) == (False, [1], {"train": 9})
    # doctor: behind the others and they closed long ago -> warning; right after they closed -> info
    [f] = _end_findings(open_run(run), now=T0 + END_GRACE_S + 1)
    assert f.severity == "warning" and f.evidence["problem_kind"] == "writer_not_closed"
    assert "process 1 did not close its writer and stopped behind process 0 (train: its last step 5, theirs 9)" in (
        f.message
    )
    [f] = _end_findings(open_run(run), now=T0 + 5)
    assert f.severity == "info" and "has not closed its writer yet" in f.message
    r = cli("doctor", run, "--format", "json")
    found = [f for f in json.loads(r.stdout)["findings"] if f["evidence"].get("problem_kind") == "writer_not_closed"]
    assert [f["severity"] for f in found] == ["warning"] and r.exit_code == 1


def test_a_run_every_process_closed_has_no_finding_and_says_so(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(6), process=0)
    _write(run, range(6), process=1)
    state = open_run(run).end_state
    assert state.finished and state.missing == []
    assert "writer: closed by every process (0, 1)" in cli("inspect", run).stdout
    assert not _end_findings(open_run(run))
    # the markers are neither data nor a leftover temporary file
    r = open_run(run)
    assert not [p for p in r.problems] and not r.unmatched
    assert not any(f.path.startswith(".end") for f in r.files)


def test_an_exception_a_failed_writer_and_an_unreadable_marker_are_findings(tmp_path):
    run = tmp_path / "run"
    _write(run, range(3), process=0, close="exception")
    [f] = _end_findings(open_run(run))
    assert f.severity == "warning" and "training_exception" in f.message and "ValueError: loss is NaN" in f.message
    end = _marker(run)
    (run / ".end.p0.json").write_text(json.dumps({**end, "exception": None, "error": "OSError: [Errno 28] No space"}))
    [f] = _end_findings(open_run(run))
    assert f.severity == "error" and "writer_failed" in f.message and "No space" in f.message
    (run / ".end.p0.json").write_text('{"process": 0, "how": "clo')
    [f] = _end_findings(open_run(run))
    assert f.severity == "warning" and "writer_end_unreadable" in f.message
    assert any(f.evidence.get("problem_kind") == "writer_end_unreadable" for f in diagnose(open_run(run)).findings)


def test_no_process_closed_is_info_and_runs_of_other_writers_claim_nothing(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(4), process=0, close="kill")
    [f] = _end_findings(open_run(run))
    assert f.severity == "info" and "no process has closed its writer" in f.message
    manifest = json.loads((run / "run.json").read_text())
    del manifest["writer"]["end_markers"]  # an older runlog, or another writer of the format
    (run / "run.json").write_text(json.dumps(manifest))
    assert not open_run(run).end_state.known and not _end_findings(open_run(run))
    assert "writer:" not in cli("inspect", run).stdout
    assert json.loads(cli("inspect", run, "--format", "json").stdout)["writer_end"] is None


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


def test_a_killed_run_is_not_finished_for_watch(tmp_path, cli):
    run = tmp_path / "run"
    _write(run, range(3), process=0, close="kill")
    r = cli("watch", run, "--format", "json", "--interval", "0.1", "--idle-exit", "0.5")
    assert json.loads(r.stdout.splitlines()[-1])["reason"] == "idle"
    assert not [x for x in r.stdout.splitlines() if '"ended"' in x]
    assert os.listdir(run) and not (run / ".end.p0.json").exists()


def test_a_process_is_behind_only_on_the_splits_it_writes(tmp_path):
    """Process 1 writes no eval (eval on process 0 alone, as in the sample run): with its marker missing and
    its train as far as process 0's, it is not 'behind on eval' (info, not the killed warning)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[1] / "sample_runs" / "debate_grpo", run)
    (run / ".end.p1.json").unlink()
    [f] = _end_findings(open_run(run))  # process 0 closed long ago (2026-02-04): only being behind is missing
    assert f.severity == "info" and "process 1 has not closed its writer yet" in f.message
