"""Audit 15 of ``watch`` and ``doctor --follow`` on a run still being written.

- A step file truncated and rewritten in place while read killed ``watch`` and ``doctor --follow`` by SIGBUS
  (exit -7 / 135, no message): polars memory-maps local Parquet. Live reads now take a recently changed file
  into memory (``formats.common.live_reads``); a file that changed since listed, or while read, is one still
  being written. Polars' panics (with Rust backtraces) from the same race are gone with it.
- ``doctor --follow`` never said that a killed single writer did not close (its ``writer_not_closed`` has no
  path, and every such finding was dropped): said when the follow stops, idle or at its timeout.
- A leftover temporary file: ``info`` (exit 0) in plain doctor, ``warning`` (exit 1) in ``--follow``, and no
  onset step in plain doctor: a warning with the step of its name in both.
- Problems of a JSONL line had no onset step; a torn last line's problem kind was the word ``warning``.
- The screen's ``writers: open 0`` read as "no writer open"; a latest step whose every total reward is NaN
  showed no best/worst line, silently."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import runlog
import runlog._lazy as lazy
from runlog import RunWriter
from runlog.analysis.doctor import DoctorConfig
from runlog.formats.base import RunContext
from runlog.run import open_run
from runlog.watch import DoctorWatch, LiveRun
from runlog.watch.poll import run_lister
from runlog.watch.screen import Screen, extremes
from watch_helpers import written_run

STEP3 = "samples/train/step_00000003.p0.parquet"


def _run(root: Path, steps: int = 4, n: int = 8, nan_last: bool = False, close: bool = True) -> Path:
    """A run written by ``RunWriter`` (its files written just now): ``steps`` steps of ``n`` samples, two roles;
    with ``nan_last`` every total reward of the last step is NaN (the roles' are numbers)."""
    w = RunWriter(root, roles=["solver", "judge"], name="audit15")
    for step in range(steps):
        r = [(i + step) / (n + step) for i in range(n)]
        total = [math.nan] * n if nan_last and step == steps - 1 else r
        w.log_samples(
            step,
            {
                "sample_id": [f"s{step}-{i}" for i in range(n)],
                "group_id": [f"g{step}-{i // 4}" for i in range(n)],
                "reward": total,
                "solver_reward": r,
                "judge_reward": [0.5] * n,
                "solver_kl": [0.01] * n,
                "judge_kl": [0.02] * n,
                "completion": [f"answer {i}" for i in range(n)],
            },
        )
    w.flush()
    if close:
        w.close()
    return root


def _poll(live: LiveRun, root: Path) -> list[dict]:
    data, temp = run_lister(root)()
    return [e.as_dict() for e in live.update(data, temp)]


# -- 1: live reads never memory-map a file that may still change ----------------------------------------------
@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What polars was asked to scan: a path (memory-mapped by polars) or bytes, one entry per source."""
    seen: list[object] = []
    real = pl.scan_parquet

    def spy(source, *a, **kw):  # noqa: ANN001
        seen.extend(source if isinstance(source, list) else [source])
        return real(source, *a, **kw)

    monkeypatch.setattr(pl, "scan_parquet", spy)
    monkeypatch.setattr(lazy.pl, "scan_parquet", spy)  # runlog's lazy polars holds its own copy of the name
    return seen


def _paths(seen: list[object]) -> list[str]:
    return [s for s in seen if isinstance(s, (str, os.PathLike))]


def test_the_watch_reads_files_just_written_from_memory_not_mapped(tmp_path: Path, scanned: list[object]) -> None:
    """Every step of a run just written is summarised from the files' bytes: no local path reaches polars,
    which maps a path (and dies by SIGBUS when the file shrinks under the map)."""
    root = _run(tmp_path / "run")
    live = LiveRun(root, settle=60)
    steps = [e for e in _poll(live, root) if e["event"] == "step"]
    assert [e["step"] for e in steps] == [0, 1, 2, 3]
    assert [e["rows"] for e in steps] == [8, 8, 8, 8]
    assert scanned and _paths(scanned) == []


def test_doctor_follow_and_the_screen_read_from_memory_too(tmp_path: Path, scanned: list[object]) -> None:
    root = _run(tmp_path / "run", nan_last=True)
    doctor = DoctorWatch(root, DoctorConfig())
    doctor.changed()
    doctor.poll()
    assert doctor.error is None and any(f.kind == "nan_rewards" for f in doctor.findings)
    live = LiveRun(root, settle=60)
    _poll(live, root)
    scanned.clear()
    assert extremes(live)  # the note of a step without a valid reward: its rewards were read
    assert scanned and _paths(scanned) == []


def test_a_file_truncated_after_the_scan_was_built_is_read_as_it_was(tmp_path: Path) -> None:
    """The bytes are taken when the scan is built: a file truncated before the query runs (what killed the
    process when mapped) does not change what is read."""
    from runlog.formats.common import live_reads, scan_parquet

    root = _run(tmp_path / "run")
    info = next(f for f in open_run(root).files if f.path == STEP3)
    with live_reads():
        lf = scan_parquet([info], include_file_paths="source")
    with open(root / STEP3, "r+b") as fh:
        fh.truncate(0)
    df = lf.collect()
    assert df.height == 8 and set(df["source"].to_list()) == {str(info.abspath)}


def test_the_other_commands_still_scan_by_path(tmp_path: Path, scanned: list[object]) -> None:
    """Outside the live reads (``summarize`` and the rest read a finished run), files are mapped: no copy."""
    root = _run(tmp_path / "run")
    run = open_run(root)
    run.collect(lambda: [run.samples.select("reward")])
    assert len(_paths(scanned)) == 4


def test_a_file_changed_since_it_was_listed_is_one_still_being_written(tmp_path: Path) -> None:
    """A file rewritten between the listing and the read: the scan refuses it (its footer was read from another
    version), and the watch holds it back as a file being written (one note), what was shown staying; the next
    poll reads the version there then."""
    from runlog.formats.common import StillWrittenError, live_reads, scan_parquet

    root = _run(tmp_path / "run")
    info = next(f for f in open_run(root).files if f.path == STEP3)
    (root / STEP3).write_bytes((root / STEP3).read_bytes())  # rewritten: a new modification time
    os.utime(root / STEP3, ns=(time.time_ns(), time.time_ns() + 10**9))
    with live_reads(), pytest.raises(StillWrittenError, match="changed since it was listed"):
        scan_parquet([info])

    live = LiveRun(root, settle=60)
    assert len([e for e in _poll(live, root) if e["event"] == "step"]) == 4
    rewritten = pq.read_table(root / STEP3).slice(0, 5)
    import runlog.formats.common as common

    real = common._still_changing
    calls: list[str] = []

    def changing(f, now):  # noqa: ANN001
        if f.path == STEP3 and not calls:
            calls.append(f.path)
            raise StillWrittenError(f.path, "changed while it was read (still being written?)")
        return real(f, now)

    pq.write_table(rewritten, root / STEP3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common, "_still_changing", changing)
        events = _poll(live, root)
        assert calls == [STEP3]
        said = [(e["event"], e.get("path")) for e in events if e["event"] in ("note", "step", "problem")]
        assert said == [("note", STEP3)], events
        assert "incomplete (still being written?)" in events[0]["message"]
        assert sorted(live.steps) == [0, 1, 2, 3]  # what was shown stays
        events = _poll(live, root)
    assert [e["message"] for e in events if e["event"] == "note"] == [f"{STEP3}: complete now"]
    assert [(e["step"], e["rows"], e.get("update")) for e in events if e["event"] == "step"] == [(3, 5, True)]


# A trainer's step file rewritten in place (truncated, then written whole) as fast as it can, until told to stop.
CHURN = """
import os, random, sys, time
path, stop = sys.argv[1], sys.argv[2]
versions = [open(v, "rb").read() for v in sys.argv[3:]]
random.seed(0)
k = 0
while not os.path.exists(stop):
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(versions[k % len(versions)])
    k += 1
    time.sleep(random.random() * 0.02)
"""


@pytest.mark.parametrize("command", [["watch"], ["doctor", "--follow", "--fail-on", "never"]])
def test_a_file_rewritten_in_place_while_followed_never_kills_the_command(tmp_path: Path, command) -> None:
    """A step file of 20,000 rows truncated and rewritten in place every few milliseconds for 4 s, twice: the
    command ends at its timeout with exit 0, its ``end`` event last, and no panic on stderr. (The old code died
    by SIGBUS in about one such run of four, so this catches it only some of the time; the tests above check
    the mechanism.)"""
    root = _run(tmp_path / "run", steps=3, n=20_000, close=False)
    step = root / "samples/train/step_00000002.p0.parquet"
    full = pq.read_table(step)
    versions = []
    for i, rows in enumerate((20_000, 5_000, 12_000, 2_000)):
        v = tmp_path / f"v{i}.parquet"
        pq.write_table(full.slice(0, rows), v)
        versions.append(str(v))
    env = dict(os.environ, RUST_BACKTRACE="1")
    # The runlog under test (the one imported here) in the child too.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(runlog.__file__).parents[1]), env.get("PYTHONPATH", "")])
    for trial in range(2):
        stop = tmp_path / f"stop{trial}"
        churn = subprocess.Popen([sys.executable, "-c", CHURN, str(step), str(stop), *versions])
        try:
            out = subprocess.run(
                [sys.executable, "-m", "runlog", *command[:1], str(root), *command[1:], "--format", "json"]
                + ["--interval", "0.1", "--timeout", "4"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
        finally:
            stop.touch()
            churn.wait(timeout=30)
        assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"event": "end", "reason": "timeout", "message": None}
        assert "panicked" not in out.stderr, out.stderr[-2000:]


# -- 2: doctor --follow says which process did not close ------------------------------------------------------
def test_doctor_follow_says_a_killed_writer_did_not_close_when_it_stops(tmp_path: Path, cli) -> None:
    run = written_run(tmp_path / "run", 3)  # the writer killed: its state stays open
    res = cli("doctor", run, "--follow", "--format", "json", "--interval", "0.2", "--idle-exit", "1")
    events = [json.loads(line) for line in res.output.strip().splitlines()]
    assert res.exit_code == 0, res.output
    assert events[-1] == {"event": "end", "reason": "idle", "message": None}
    [f] = [e for e in events if e["event"] == "finding" and e["evidence"].get("problem_kind") == "writer_not_closed"]
    assert f["severity"] == "info" and "no process has closed its writer (process 0)" in f["message"]
    assert events.index(f) == len(events) - 2  # said as the follow stops, not while the run is followed


# -- 3: a leftover temporary file: one severity, with its step, in both doctors -------------------------------
def test_a_leftover_temporary_file_is_a_warning_with_its_step_in_both_doctors(tmp_path: Path, cli) -> None:
    run = written_run(tmp_path / "run", 3)
    tmp = run / "samples/train/.step_00000003.p0.parquet.tmp"
    tmp.write_bytes(b"PAR1 half a step")  # a killed writer's (no writer holds the lock)
    plain = cli("doctor", run, "--format", "json")
    [f] = [f for f in json.loads(plain.output)["findings"] if f["evidence"].get("problem_kind") == "leftover_temporary"]
    assert (f["severity"], f["onset_step"]) == ("warning", 3)
    assert f["message"].startswith("leftover_temporary: samples/train/.step_00000003.p0.parquet.tmp: ")
    assert plain.exit_code == 1
    follow = cli("doctor", run, "--follow", "--format", "json", "--interval", "0.2", "--settle", "0")
    events = [json.loads(line) for line in follow.output.strip().splitlines()]
    [g] = [e for e in events if e["event"] == "finding" and e["evidence"].get("problem_kind") == "leftover_temporary"]
    assert (g["severity"], g["onset_step"]) == ("warning", 3)
    assert follow.exit_code == 1 and events[-1]["reason"] == "failing"


# -- 6: problems of a JSONL line have an onset step; a torn line is ``torn_line`` ----------------------------------
def test_a_jsonl_lines_problems_have_the_step_they_are_at(tmp_path: Path) -> None:
    root = _run(tmp_path / "run", close=False)
    (root / "scalars.p5.jsonl").write_text(
        '{"step": 3, "x": 1.0}\n{"step": 4, "x": oops}\n{"step": 5, "x": 1.0}\n{oops}\n{"step": 6, "x": 2.'
    )
    live = LiveRun(root, settle=0)
    problems = [e for e in _poll(live, root) if e["event"] == "problem"]
    got = sorted((e["kind"], e["onset_step"], e["message"].split(":")[0]) for e in problems)
    # line 2 names its step (the file's first bad line: its onset); the torn line 5 names its own
    assert got == [("bad_line", 4, "line 2"), ("torn_line", 6, "line 5")]


def test_a_bad_line_without_a_step_before_any_good_line_has_none(tmp_path: Path) -> None:
    from runlog.formats.base import Candidate
    from runlog.formats.common import LineProblem, read_jsonl

    p = tmp_path / "m.jsonl"
    p.write_text('{oops}\n{"global_step": 7, "x": 1}\n{"x": 2}\n[1]\n{"step": 12')
    ctx = RunContext(tmp_path)
    read_jsonl(Candidate(tmp_path, p, p.stat().st_size), ctx)
    # line 5 is torn inside its step's number: 12 may be 120, so the step before (7, under another key)
    assert [(type(q), q.step) for q in ctx.problems] == [(LineProblem, None), (LineProblem, 7), (LineProblem, 7)]
    assert [q.as_dict() for q in ctx.problems][0] == {
        "path": "m.jsonl",
        "kind": "bad_line",
        "message": ctx.problems[0].message,
    }


def test_the_step_keys_of_a_line_are_the_scalar_readers(tmp_path: Path) -> None:
    from runlog.formats.common import LINE_STEP_KEYS
    from runlog.formats.scalars_jsonl import STEP_KEYS

    assert LINE_STEP_KEYS == STEP_KEYS


# -- 7, 8: the screen ------------------------------------------------------------------------------------------
def _screen(live: LiveRun) -> str:
    return "\n".join(line.plain for line in Screen(live, None, extremes(live), interval=1.0).lines(100))


def test_the_open_writers_are_named_as_processes_not_read_as_a_count(tmp_path: Path) -> None:
    run = written_run(tmp_path / "run", 2)
    live = LiveRun(run, settle=60)
    _poll(live, run)
    screen = _screen(live)
    assert "writers: open p0" in screen and "open 0" not in screen


def test_a_step_whose_every_total_reward_is_nan_says_so_in_place_of_best_and_worst(tmp_path: Path) -> None:
    root = _run(tmp_path / "run", nan_last=True)
    live = LiveRun(root, settle=60)
    _poll(live, root)
    screen = _screen(live)
    assert "best/worst: no valid total reward at step 3 (8 NaN)" in screen
    live_role = LiveRun(root, roles=["solver"], settle=60)
    _poll(live_role, root)
    assert [s.label for s in extremes(live_role)] == ["best", "worst"]  # the solver's rewards are numbers
