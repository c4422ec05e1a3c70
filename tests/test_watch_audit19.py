"""Audit 19 of ``watch`` / ``doctor --follow`` and kept answers.

1. At an idle or timeout stop, the problems still settling were dropped (only ``finished`` settled them):
   ``doctor --follow --fail-on error`` passed a run ending on a torn file, and ``--fail-on warning`` a run whose
   killed writer left its ``.tmp`` file, both of which plain ``doctor`` fails. They are judged at the stop as
   they are then.
2. A Parquet file whose footer is intact and whose data pages are corrupt: its step was shown with the footer's
   rows and no figure, no problem was ever said without doctor, every other step waited for it and a note
   flapped "incomplete" / "complete now". Its rows are the rows read, it is a problem once settled, and no
   other step waits.
3. A ``summarize`` answer kept while a live writer's temporary file was in flight was served, without the
   leftover warning, after that writer was killed (nothing in the listing changes).
4. A folder holding an empty log file, or half a first line, ended ``watch`` and ``doctor --follow`` with exit
   2: they wait for the first data, as in an empty folder.
5. ``doctor --follow --fail-on error`` failed on a few NaN in the first steps of a run whose finished share
   ``doctor`` calls a warning.
6. At a stop, the last poll's listing was judged again: a writer's ``.tmp`` file in flight then, renamed into
   place by a writer that closed since, was a ``leftover_temporary`` at once (``--fail-on warning`` failed a
   healthy run). The run is listed afresh, and a temporary file is looked at again after its writer's lock.
7. A kept answer of a run holding a writer's ``.tmp`` file imported the writer package (pyarrow) to ask its lock.
8. A folder watched before its first files, which turn out to be several runs: exit 2, now documented.
9. The only sample file turned out unreadable: the note said "showing split None (was train)".

Truths come from pyarrow, numpy, json, ``fcntl`` and ``fractions``. Commands run in another process on the
runlog package this test imported (its source folder first on the path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import schema as S

from conftest import native_rows, write_native_samples

SRC = Path(runlog.__file__).resolve().parents[1]  # the runlog under test (its subprocesses run the same)
PAST = 1_600_000_000
STEP = "samples/train/step_{:08d}.p{}.parquet"


def _env(answers: bool = False, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.pop("COLUMNS", None)
    if answers:
        env.pop("RUNLOG_ANSWERS", None)  # conftest turns kept answers off
    env.update(extra)
    return env


def _runlog(*args: object, answers: bool = False, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runlog", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=_env(answers, **extra),
        timeout=180,
        check=False,
    )


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run(root: Path, steps: range, n: int = 16, past: bool = True) -> Path:
    """A native run (manifest, one file per step) written with pyarrow, dated long ago unless ``past`` is False."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": ["solver"]}))
    for s in steps:
        write_native_samples(root / STEP.format(s, 0), native_rows(s, n, roles=("solver",)))
    if past:
        for p in root.rglob("*"):
            os.utime(p, (PAST, PAST))
    return root


def _corrupt(path: Path, step: int, n: int = 16, rows_from: int = 0) -> None:
    """A file whose footer is intact and whose reward and roles data pages do not decode (their page headers
    flipped), as bit rot or a bad copy leaves it."""
    rows = native_rows(step, n + rows_from, roles=("solver",))[rows_from:]
    table = pa.Table.from_pylist(rows, schema=S.NATIVE_SAMPLE_SCHEMA).replace_schema_metadata(
        {"runlog.schema_version": "2"}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", use_dictionary=False)
    data = bytearray(sink.getvalue().to_pybytes())
    group = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata.row_group(0)
    for c in range(group.num_columns):
        column = group.column(c)
        if column.path_in_schema == "reward" or column.path_in_schema.startswith("roles"):
            for i in range(column.data_page_offset + 2, column.data_page_offset + 12):
                data[i] ^= 0x5A
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    # The truth: the footer reads, the data does not.
    assert pq.ParquetFile(path).metadata.num_rows == n
    with pytest.raises(Exception):  # noqa: B017  (pyarrow's own error types vary by version)
        pq.read_table(path)


def _truth(path: Path) -> tuple[int, float]:
    """(rows, the solver's mean reward) of a file, read with pyarrow."""
    t = pq.read_table(path)
    solver = [r["reward"] for roles in t.column("roles").to_pylist() for r in roles if r["role"] == "solver"]
    return t.num_rows, float(np.mean(solver))


# -- 1: what still settles is judged at an idle stop ------------------------------------------------------------
def test_follow_fails_at_an_idle_stop_on_a_torn_last_file_as_doctor_does(tmp_path):
    """The writer died leaving its last file torn, within ``--settle`` of the stop: ``--idle-exit`` ended the
    follow with exit 0 (the file still "settling"), where plain ``doctor --fail-on error`` exits 1."""
    run = _run(tmp_path / "run", range(3))
    whole = tmp_path / "whole.parquet"
    write_native_samples(whole, native_rows(3, 16, roles=("solver",)))
    torn = run / STEP.format(3, 0)
    torn.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017  (the truth: no footer to read)
        pq.ParquetFile(torn)
    follow = ("--follow", "--fail-on", "error", "--format", "json", "--interval", "0.2", "--settle", "60")
    r = _runlog("doctor", run, *follow, "--idle-exit", "1")
    events = _json_lines(r.stdout)
    assert r.returncode == 1, (r.stdout, r.stderr)
    [finding] = [e for e in events if e["event"] == "finding" and e["severity"] == "error"]
    assert finding["kind"] == "data_problem" and finding["evidence"]["path"] == STEP.format(3, 0)
    assert finding["evidence"]["problem_kind"] == "unreadable" and finding["onset_step"] == 3
    assert events[-1] == {"event": "end", "reason": "failing", "message": None}
    # watch says it too before its last line (without doctor: its own problem)
    w = _runlog(
        "watch", run, "--format", "json", "--no-doctor", "--interval", "0.2", "--settle", "60", "--idle-exit", "1"
    )
    assert w.returncode == 0, w.stderr
    problems = [e for e in _json_lines(w.stdout) if e["event"] == "problem"]
    assert [(p["kind"], p["path"], p["severity"]) for p in problems] == [("unreadable", STEP.format(3, 0), "error")]


KILLED_MID_STEP = """
import os, signal, sys
from runlog import RunWriter
w = RunWriter(sys.argv[1], name="r", roles=["solver"], durable=False)
for s in range(2):
    w.log_samples(s, {"reward": [0.25 * (i % 4) for i in range(8)], "solver_reward": [0.5] * 8,
                      "solver_kl": [0.01] * 8})
w.flush()
# Killed while writing step 2: its hidden temporary file is left, half written.
with open(os.path.join(sys.argv[1], "samples", "train", ".step_00000002.p0.parquet.tmp"), "wb") as fh:
    fh.write(b"PAR1" + b"x" * 200)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_follow_fails_on_warning_at_an_idle_stop_on_a_killed_writers_temporary_file(tmp_path):
    """A RunWriter killed mid-step leaves ``.step_N.p0.parquet.tmp``: ``--fail-on warning`` exited 0 at
    ``--idle-exit`` (the file had not been unchanged for ``--settle`` seconds yet); plain ``doctor`` exits 1 on
    it (``leftover_temporary``, a warning), and docs/watch.md says ``--fail-on warning`` fails on it."""
    import fcntl

    run = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", KILLED_MID_STEP, str(run)], env=_env(), timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL
    temp = run / "samples" / "train" / ".step_00000002.p0.parquet.tmp"
    assert temp.exists()
    # The truth: no process holds the writer's lock any more (the kernel let it go with the process).
    fd = os.open(run / ".writer.p0.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    follow = ("--follow", "--fail-on", "warning", "--format", "json", "--interval", "0.2", "--settle", "60")
    r = _runlog("doctor", run, *follow, "--idle-exit", "1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    events = _json_lines(r.stdout)
    left = [e for e in events if e["event"] == "finding" and e["evidence"].get("problem_kind") == "leftover_temporary"]
    assert [(e["severity"], e["onset_step"], e["evidence"]["path"]) for e in left] == [
        ("warning", 2, "samples/train/.step_00000002.p0.parquet.tmp")
    ]
    assert events[-1]["reason"] == "failing"


# -- 2: a corrupt data page behind an intact footer --------------------------------------------------------------
def test_a_corrupt_page_is_a_problem_once_settled_its_rows_are_those_read_and_no_other_step_waits(tmp_path):
    from runlog.watch import LiveRun
    from runlog.watch.poll import run_lister

    run = _run(tmp_path / "run", range(2))
    t = [time.time()]
    live = LiveRun(run, settle=30.0, clock=lambda: t[0])
    lister = run_lister(run)
    first = live.update(*lister())
    assert sorted(e.data["step"] for e in first if e.kind == "step") == [0, 1]
    # Step 2 arrives corrupt; step 3 whole; step 4 in two shards, the second corrupt, both written long ago.
    _corrupt(run / STEP.format(2, 0), 2)
    write_native_samples(run / STEP.format(3, 0), native_rows(3, 16, roles=("solver",)))
    write_native_samples(run / STEP.format(4, 0), native_rows(4, 16, roles=("solver",)))
    _corrupt(run / STEP.format(4, 1), 4, rows_from=16)
    for p in (STEP.format(4, 0), STEP.format(4, 1)):
        os.utime(run / p, (PAST, PAST))
    events = live.update(*lister())
    steps = {e.data["step"]: e.data for e in events if e.kind == "step"}
    assert sorted(steps) == [3, 4]  # step 3 does not wait for step 2's file; step 2 read nothing
    for s in (3, 4):
        rows, mean = _truth(run / STEP.format(s, 0))
        assert steps[s]["rows"] == rows == 16  # step 4: its readable shard's rows, not the footers' 32
        [solver] = [r for r in steps[s]["roles"] if r["role"] == "solver"]
        assert solver["reward_mean"] == pytest.approx(mean, rel=1e-12) and solver["count"] == 16
    assert not [e for e in events if e.kind == "note" and "incomplete" in e.data["message"]]
    assert not live.retrying
    # step 4's corrupt shard was written long ago: a problem at once; step 2's is young: it settles first
    problems = [(e.data["path"], e.data["kind"], e.data["onset_step"]) for e in events if e.kind == "problem"]
    assert problems == [(STEP.format(4, 1), "unreadable", 4)]
    for _ in range(3):  # no flapping "incomplete" / "complete now" while it settles
        t[0] += 1
        assert live.update(*lister()) == []
    t[0] += 30
    [problem] = live.update(*lister())
    assert problem.kind == "problem" and problem.data["path"] == STEP.format(2, 0)
    assert (problem.data["kind"], problem.data["severity"], problem.data["onset_step"]) == ("unreadable", "error", 2)
    assert "footer is intact" in problem.data["message"]
    assert 2 not in live.steps


def test_watch_once_within_settle_shows_the_steps_and_says_the_corrupt_file(tmp_path):
    """``watch --once`` within ``--settle`` of a corrupt file's arrival showed no step at all (every step
    waited for it) and no problem."""
    run = _run(tmp_path / "run", [0, 1, 3, 4])
    _corrupt(run / STEP.format(2, 0), 2)
    once = ("--format", "json", "--once", "--settle", "60")
    r = _runlog("watch", run, *once, "--no-doctor")
    assert r.returncode == 0, r.stderr
    events = _json_lines(r.stdout)
    [step] = [e for e in events if e["event"] == "step"]
    rows, mean = _truth(run / STEP.format(4, 0))
    assert (step["step"], step["rows"]) == (4, rows)
    assert [r["reward_mean"] for r in step["roles"]] == [pytest.approx(mean, rel=1e-12)]
    problems = [e for e in events if e["event"] == "problem"]
    assert [(p["path"], p["kind"], p["onset_step"]) for p in problems] == [(STEP.format(2, 0), "unreadable", 2)]


# -- 3: a kept answer and a writer killed -------------------------------------------------------------------------
WRITER_WITH_TEMP = """
import os, sys, time
from runlog import RunWriter
w = RunWriter(sys.argv[1], name="r", roles=["solver"], durable=False)
for s in range(3):
    w.log_samples(s, {"reward": [0.1 * i for i in range(8)], "solver_reward": [0.2] * 8, "solver_kl": [0.01] * 8})
w.flush()
# Step 3 being written: its hidden temporary file, in flight while this writer holds its lock.
with open(os.path.join(sys.argv[1], "samples", "train", ".step_00000003.p0.parquet.tmp"), "wb") as fh:
    fh.write(b"PAR1" + b"x" * 100)
print("ready", flush=True)
time.sleep(600)
"""


def test_an_answer_kept_while_a_writer_had_a_temp_file_in_flight_is_not_served_once_it_is_killed(tmp_path):
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_WITH_TEMP, str(run)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for p in run.rglob("*"):
            os.utime(p, (PAST, PAST))  # nothing "just written": answers may be kept
        args = ("summarize", run, "--by", "role", "--format", "json")
        alive = _runlog(*args, answers=True)
        assert alive.returncode == 0 and alive.stderr == "", alive.stderr  # in flight: no leftover
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    temp = "samples/train/.step_00000003.p0.parquet.tmp"
    assert (run / temp).exists()
    killed = _runlog(*args, answers=True)
    cold = _runlog(*args, RUNLOG_CACHE="off")
    assert f"warning: {temp}: leftover temporary file" in killed.stderr, killed.stderr
    again = _runlog(*args, answers=True)  # kept now (nothing in flight), and the same
    for r in (killed, again):
        assert (r.returncode, r.stderr) == (cold.returncode, cold.stderr)
        # the figures as a cold read's (the partial cache sums in another order: 1e-12)
        assert json.loads(r.stdout) == _approx(json.loads(cold.stdout))


def _approx(rows: list[dict]) -> list[dict]:
    return [
        {k: pytest.approx(v, rel=1e-12, abs=1e-12) if isinstance(v, float) else v for k, v in r.items()} for r in rows
    ]


# -- 4: a watch begun before the first data -----------------------------------------------------------------------
def test_watch_and_follow_wait_on_an_empty_log_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "generations.jsonl").touch()
    r = _runlog("watch", run, "--format", "json", "--idle-exit", "1", "--interval", "0.2")
    assert r.returncode == 0, r.stderr  # was 2: "no run files found"
    events = _json_lines(r.stdout)
    assert [e["event"] for e in events] == ["note", "end"]
    assert events[0]["message"].endswith("waiting for the run's first data") and "1 empty file" in events[0]["message"]
    assert events[1]["reason"] == "idle"
    d = _runlog("doctor", run, "--follow", "--fail-on", "error", "--idle-exit", "1.5", "--interval", "0.2")
    assert d.returncode == 0, d.stderr
    lines = d.stderr.splitlines()
    assert lines[-1] == "stopped: idle" and len(lines) == 2 and "waiting for the run's first data" in lines[0]


def test_watch_waits_on_half_a_first_line_and_shows_its_step_once_whole(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    line = {"step": 0, "input": "q", "output": "a", "score": 0.75}
    text = json.dumps(line) + "\n"
    (run / "generations.jsonl").write_text(text[:12])
    proc = subprocess.Popen(
        [sys.executable, "-m", "runlog", "watch", str(run), "--format", "json", "--idle-exit", "3"]
        + ["--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        note = json.loads(proc.stdout.readline())
        assert note["event"] == "note" and note["message"].endswith("waiting for the run's first data")
        with open(run / "generations.jsonl", "a") as fh:
            fh.write(text[12:])
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    events = _json_lines(out)
    [step] = [e for e in events if e["event"] == "step"]
    assert (step["step"], step["rows"]) == (line["step"], 1)
    assert [r["reward_mean"] for r in step["roles"]] == [line["score"]]
    assert "waiting" not in json.dumps(events)  # said once


def test_a_doctor_check_that_fails_alike_is_said_once(tmp_path):
    from runlog.analysis.doctor import DoctorConfig
    from runlog.watch import DoctorWatch

    (tmp_path / "generations.jsonl").touch()
    t = [0.0]  # the throttle's clock: each check long after the last
    watch = DoctorWatch(tmp_path, DoctorConfig(), min_gap=0.0, clock=lambda: t[0])
    notes = []
    for _ in range(3):
        t[0] += 100
        watch.changed()
        notes += [e.data["message"] for e in watch.poll() if e.kind == "note"]
    assert len(notes) == 1 and "no run files found" in notes[0] and notes[0].endswith("; retrying")


# -- 5: a few NaN in the first steps ------------------------------------------------------------------------------
NAN_AT = {0: 2, 1: 2, 2: 0, 3: 0, 4: 1, 5: 0, 6: 0, 7: 0, 8: 1, 9: 0, 10: 0, 11: 0}


def test_follow_does_not_fail_on_a_few_nan_in_the_first_steps_and_grades_its_end_as_doctor(tmp_path):
    """2 NaN in each of the first two 16-row steps: 12.5 %, an error for ``doctor --follow --fail-on error``
    (exit 1), on a run whose finished share (6 of 192, 3.1 %) ``doctor`` calls a warning. While the run has
    fewer than ``min_steps`` steps its share is a warning; the follow's end grades the run as ``doctor``."""
    from runlog import RunWriter, open_run
    from runlog.analysis.doctor import DoctorConfig, diagnose
    from runlog.watch import DoctorWatch

    run = tmp_path / "run"
    rows = 16
    w = RunWriter(run, name="r", roles=["solver"], durable=False)

    def step(s: int) -> None:
        reward = [float("nan") if i < NAN_AT[s] else 0.1 * (i % 5) for i in range(rows)]
        w.log_samples(s, {"reward": reward, "solver_reward": [0.5] * rows, "solver_kl": [0.01] * rows})
        w.flush()

    step(0)
    step(1)
    watch = DoctorWatch(run, DoctorConfig(), min_gap=0.0)
    watch.changed()
    [early] = [e.data for e in watch.poll() if e.data.get("kind") == "nan_rewards"]
    share = Fraction(NAN_AT[0] + NAN_AT[1], 2 * rows)
    assert share == Fraction(1, 8) and f"({float(share):.1%})" in early["message"]
    assert early["severity"] == "warning", early["message"]  # was an error: --fail-on error failed
    # The follow stops here (idle): the run as it is, graded as plain doctor grades it (an error)
    [end] = [e.data for e in watch.final(settle_all=True) if e.data.get("kind") == "nan_rewards"]
    [plain] = [f for f in diagnose(open_run(run)).findings if f.kind == "nan_rewards"]
    assert end["severity"] == plain.severity == "error" and end["message"] == plain.message

    watch = DoctorWatch(run, DoctorConfig(), min_gap=0.0)
    watch.changed()
    watch.poll()
    for s in range(2, 12):
        step(s)
        watch.changed()
        said = [e.data for e in watch.poll() if e.data.get("kind") == "nan_rewards"]
        assert all(e["severity"] == "warning" for e in said), said
    w.close()
    watch.changed()
    last = [e.data for e in watch.final(settle_all=True) if e.data.get("kind") == "nan_rewards"]
    total = Fraction(sum(NAN_AT.values()), rows * len(NAN_AT))
    assert total == Fraction(6, 192)
    assert [(e["severity"], e["evidence"]["nan"]) for e in last] == [("warning", 6)]
    assert f"({float(total):.1%})" in last[0]["message"]


# -- cosmetic: -0 ---------------------------------------------------------------------------------------------
def test_a_reward_of_minus_zero_reads_0():
    from runlog.cli.watch_cmd import event_line
    from runlog.watch import Event
    from runlog.watch.screen import num, nums_apart

    assert num(-0.0) == f"{0.0:.4g}" == "0"
    assert nums_apart([1.0, -0.0]) == ["1", "0"]
    role = {"role": "solver", "reward_mean": -0.0, "kl_mean": -0.0, "count": 1, "reward_nan": 0}
    line = event_line(Event("step", {"step": 0, "split": "train", "rows": 1, "roles": [role]}))
    assert line.endswith("solver reward 0 kl 0"), line


# -- 6: a temporary file renamed into place since the last poll is no leftover at the stop ----------------------
RENAMES_AND_CLOSES = """
import os, sys
from runlog import RunWriter
run, whole = sys.argv[1], sys.argv[2]
w = RunWriter(run, name="r", roles=["solver"], durable=False)
for s in range(3):
    w.log_samples(s, {"reward": [0.1 * i for i in range(8)], "solver_reward": [0.2] * 8, "solver_kl": [0.01] * 8})
w.flush()
# Step 3 in flight: its hidden temporary file, while this writer holds its lock.
temp = os.path.join(run, "samples", "train", ".step_00000003.p0.parquet.tmp")
with open(whole, "rb") as src, open(temp, "wb") as dst:
    dst.write(src.read())
print("ready", flush=True)
sys.stdin.readline()
os.replace(temp, os.path.join(run, "samples", "train", "step_00000003.p0.parquet"))  # whole: into place
w.close()
print("closed", flush=True)
"""


def _leftovers(events: list) -> list:
    return [
        e
        for e in events
        if (e.kind == "problem" and e.data["kind"] == "leftover_temporary")
        or (e.kind == "finding" and e.data["evidence"].get("problem_kind") == "leftover_temporary")
    ]


def test_a_temp_file_renamed_into_place_by_a_writer_that_closed_after_the_last_poll_is_no_leftover_at_a_stop(
    tmp_path,
):
    """``settle_all`` judged the last poll's listing: the ``.tmp`` file it named, in flight then, was gone (renamed
    into place, its writer closed) and no lock held, so it was a ``leftover_temporary`` at once, and ``doctor
    --follow --fail-on warning`` exited 1 at ``--timeout`` on a healthy run."""
    from runlog.analysis.doctor import DoctorConfig
    from runlog.watch import DoctorWatch, watcher_for

    run, whole = tmp_path / "run", tmp_path / "step3.parquet"
    write_native_samples(whole, native_rows(3, 16, roles=("solver",)))
    child = subprocess.Popen(
        [sys.executable, "-c", RENAMES_AND_CLOSES, str(run), str(whole)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        watcher = watcher_for(str(run), interval=0.2, timeout=1000, settle=60, doctor=DoctorWatch(run, DoctorConfig()))
        events, _ = watcher.poll()
        assert _leftovers(events) == []  # in flight: its writer holds the lock
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "closed"
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    temp = run / "samples" / "train" / ".step_00000003.p0.parquet.tmp"
    assert not temp.exists()  # the truth: no temporary file is left
    final = watcher.final_events("timeout")
    assert _leftovers(final) == [], [e.as_dict() for e in final]
    # judged as the run is now: step 3, renamed into place, is read with the rows pyarrow reads
    [step] = [e.data for e in final if e.kind == "step"]
    rows, mean = _truth(run / STEP.format(3, 0))
    assert (step["step"], step["rows"]) == (3, rows)
    assert [r["reward_mean"] for r in step["roles"] if r["role"] == "solver"] == [pytest.approx(mean, rel=1e-12)]


def test_the_last_listing_judged_again_drops_a_temp_file_gone_since_and_keeps_one_left(tmp_path):
    """Without a fresh listing (``settle_all()``), a temporary file that the listing names and that is gone now
    (renamed into place, removed) is no leftover; one still there as listed is, at once."""
    from runlog.watch import LiveRun
    from runlog.watch.poll import run_lister

    run = _run(tmp_path / "run", range(2))
    gone = run / "samples" / "train" / ".step_00000002.p0.parquet.tmp"
    left = run / "samples" / "train" / ".step_00000003.p0.parquet.tmp"
    for p in (gone, left):
        p.write_bytes(b"PAR1" + b"x" * 64)
    live = LiveRun(run, settle=60.0)
    first = live.update(*run_lister(run)())
    assert [e for e in first if e.kind == "problem"] == []  # young: settling
    gone.unlink()
    events = live.settle_all()
    problems = [(e.data["kind"], e.data["path"], e.data["onset_step"]) for e in events if e.kind == "problem"]
    assert problems == [("leftover_temporary", "samples/train/.step_00000003.p0.parquet.tmp", 3)]


# -- 7: a kept answer asks a writer's lock without the writer package -----------------------------------------------
LISTING = """
import json, sys
from pathlib import Path
from runlog.cli.answers import run_listing
_, racy = run_listing(Path(sys.argv[1]))
print(json.dumps({"racy": racy, "writer": "runlog.writer" in sys.modules, "pyarrow": "pyarrow" in sys.modules}))
"""


def test_a_writers_lock_is_asked_for_a_kept_answer_without_importing_the_writer_package(tmp_path):
    """``answers.run_listing`` of a run holding a writer-named ``.tmp`` file imported ``runlog.writer`` (its
    encoder: pyarrow, 0.2 s) to ask the writer's lock: the kept answer's fast path took twice as long. The lock is
    asked as the writer takes it (``fcntl``, the truth here): held, the file is in flight; let go, or no lock file,
    it is not."""
    import fcntl

    run = _run(tmp_path / "run", range(2))
    (run / "samples" / "train" / ".step_00000002.p0.parquet.tmp").write_bytes(b"PAR1" + b"x" * 64)
    lock = run / ".writer.p0.lock"
    for p in run.rglob("*"):
        os.utime(p, (PAST, PAST))  # nothing "just written": only the lock can make the listing racy

    def listing() -> dict:
        r = subprocess.run(
            [sys.executable, "-c", LISTING, str(run)], capture_output=True, text=True, env=_env(), timeout=120
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    light = {"writer": False, "pyarrow": False}
    assert listing() == {"racy": False, **light}  # no lock file: no writer known to be open
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.utime(lock, (PAST, PAST))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as an open RunWriter holds it
        assert listing() == {"racy": True, **light}
        fcntl.flock(fd, fcntl.LOCK_UN)  # the writer gone (killed: the lock went with it, its file stays)
        assert listing() == {"racy": False, **light}
    finally:
        os.close(fd)


# -- 8: several runs found when the first files arrive -----------------------------------------------------------
def test_a_folder_watched_before_its_files_that_holds_several_runs_is_exit_2_and_documented(tmp_path):
    from runlog.errors import SeveralRunsError
    from runlog.watch import watcher_for

    folder = tmp_path / "runs"
    folder.mkdir()
    watcher = watcher_for(str(folder), interval=0.2, settle=60)
    watcher.poll()  # an empty folder: waited for
    for name in ("a", "b"):
        (folder / name).mkdir()
        line = {"step": 0, "input": "q", "output": "a", "score": 1.0}
        (folder / name / "generations.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(SeveralRunsError) as exc:
        watcher.poll()
    assert exc.value.exit_code == 2 and "holds 2 runs (a, b)" in str(exc.value)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "watch.md").read_text(encoding="utf-8")
    tables = [line for line in docs.splitlines() if line.startswith("| 2 | usage error")]
    assert len(tables) == 2 and all("several runs" in line for line in tables), tables


# -- 9: no split left to show ----------------------------------------------------------------------------------------
def test_the_only_sample_file_found_unreadable_says_no_split_is_readable_not_split_none(tmp_path):
    from runlog.watch import LiveRun
    from runlog.watch.poll import run_lister

    run = tmp_path / "run"
    whole = tmp_path / "whole.parquet"
    write_native_samples(whole, native_rows(0, 16, roles=("solver",)))
    torn = run / STEP.format(0, 0)
    torn.parent.mkdir(parents=True)
    torn.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017  (the truth: no footer to read)
        pq.ParquetFile(torn)
    t = [time.time()]
    live = LiveRun(run, settle=5.0, clock=lambda: t[0])
    lister = run_lister(run)
    live.update(*lister())
    assert live.split == "train"  # the file being written keeps its split shown
    t[0] += 10
    events = live.update(*lister())
    notes = [e.data["message"] for e in events if e.kind == "note"]
    assert notes == ["no split has a readable sample file now (was train)"]
    assert [(e.data["kind"], e.data["path"]) for e in events if e.kind == "problem"] == [
        ("unreadable", STEP.format(0, 0))
    ]
