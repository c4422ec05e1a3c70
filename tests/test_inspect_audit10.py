"""Audit of ``inspect`` / ``doctor`` on runs written by ``RunWriter`` (writerinspect): a writer that closes while
inspect reads the run, a live writer's temporary files, an all-null extra column, a resume killed while it takes
the abandoned run out, a process killed behind the others, ids repeated inside one file, an extra column written
as text in one step, and the ``.superseded/`` folder a resume leaves. Every expected figure comes from the raw
files (pyarrow, json, os), not from runlog's readers."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.inspect import inspect_run
from runlog.writer import RunWriter


def _steps(run: Path, split: str = "train", process: int | None = None) -> list[int]:
    """The steps of a split's sample files, from their names."""
    out = []
    for f in glob.glob(str(run / "samples" / split / "step_*.parquet")):
        step, proc = Path(f).name.removeprefix("step_").removesuffix(".parquet").split(".p")
        if process is None or int(proc) == process:
            out.append(int(step))
    return sorted(out)


def _messages(report) -> list[str]:
    return [p.message for p in report.problems]


# -- 1: a writer that closes while inspect reads the run; a live writer's temporary files ----------------------


def test_a_writer_closing_after_the_listing_is_no_copied_in_part(tmp_path: Path) -> None:
    """The listing is taken while the writer is open (step 0 on disk); the writer then publishes step 1 and closes
    before the state file is read. The run is whole (steps 0-1 on disk, the state says 1): no "copied in part"."""
    run = tmp_path / "run"
    w = RunWriter(run)
    w.log_samples(0, {"reward": [0.0, 1.0]})
    w.flush()
    r = open_run(run)  # listed now: step 0, state "open"
    w.log_samples(1, {"reward": [2.0, 3.0]})
    w.close()
    state = json.loads((run / ".writer.p0.json").read_text())
    assert state["state"] == "closed" and state["last_step"] == {"train": 1}
    assert _steps(run) == [0, 1]  # the truth: nothing is missing
    report = inspect_run(r)
    assert not [m for m in _messages(report) if "copied in part" in m], _messages(report)
    assert report.writers is not None and report.writers["incomplete"] == []
    assert "copied in part" not in report.writers["summary"]
    assert "closed while the run was read" in report.writers["summary"]
    assert report.writers["finished"] is False  # not known from this listing
    again = inspect_run(open_run(run))  # listed after the close: finished
    assert again.writers is not None and again.writers["finished"] is True and again.warnings == 0


def test_a_live_writers_temporary_file_is_no_leftover(tmp_path: Path) -> None:
    """While the writer is open (it holds its lock), a ``.tmp`` file of its process is in flight: no warning.
    Once no writer holds the lock (killed: the lock file stays), the same file is a leftover: a warning."""
    run = tmp_path / "run"
    w = RunWriter(run)
    w.log_samples(0, {"reward": [0.0]})
    w.flush()
    tmp = run / "samples" / "train" / ".step_00000001.p0.parquet.tmp"
    tmp.write_bytes(b"PAR1 in flight")
    other = run / "samples" / "train" / ".step_00000001.p1.parquet.tmp"  # process 1 has no writer open
    other.write_bytes(b"PAR1 left over")
    report = inspect_run(open_run(run))
    said = {p.path for p in report.problems if "leftover temporary file" in p.message}
    assert said == {"samples/train/.step_00000001.p1.parquet.tmp"}
    w.close()
    tmp.write_bytes(b"PAR1 left over")  # the writer is gone (its lock file removed): a leftover now
    (run / ".writer.p0.lock").write_text("pid 1 on elsewhere\n")  # as a killed writer leaves it: not held
    report = inspect_run(open_run(run))
    said = {p.path for p in report.problems if "leftover temporary file" in p.message}
    assert said == {"samples/train/.step_00000001.p0.parquet.tmp", "samples/train/.step_00000001.p1.parquet.tmp"}


def test_a_writer_opening_while_a_reader_probes_its_lock_is_not_refused(tmp_path: Path) -> None:
    """A reader's probe takes the lock file's shared lock for an instant; a writer opening then waits it out."""
    run = tmp_path / "run"
    run.mkdir()
    lock = run / ".writer.p0.lock"
    lock.write_text("pid 1 on elsewhere\n")
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    threading.Timer(0.05, os.close, (fd,)).start()
    with RunWriter(run) as w:
        w.log_samples(0, {"reward": [1.0]})
    assert _steps(run) == [0]


# -- 2: an extra column of the null type in one step ----------------------------------------------------------


def test_an_all_null_step_of_an_extra_column_counts_its_rows(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run) as w:
        for s in range(6):
            w.log_samples(s, {"reward": np.arange(4.0), "judge_score": [None] * 4 if s == 2 else [0.1, 0.2, None, 0.4]})
    rows = nulls = 0
    types = set()
    for f in glob.glob(str(run / "samples/train/*.parquet")):
        col = pq.read_table(f).column("judge_score")
        types.add(str(col.type))
        rows, nulls = rows + len(col), nulls + col.null_count
    assert types == {"double", "null"} and (rows, nulls) == (24, 9)
    plain = inspect_run(open_run(run)).numeric["judge_score"]
    assert (plain.count, plain.null) == (rows, nulls)
    deep = inspect_run(open_run(run), deep=True).numeric["judge_score"]
    assert (deep.count, deep.null, deep.nan, deep.valid) == (rows, nulls, 0, rows - nulls)


def test_a_text_column_null_in_one_step_is_not_listed_as_numeric(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run) as w:
        for s in range(3):
            w.log_samples(s, {"reward": [1.0, 2.0], "note": [None, None] if s == 1 else ["a", "b"]})
    assert "note" not in inspect_run(open_run(run)).numeric


# -- 3: a resume killed while it takes the abandoned run out ---------------------------------------------------

FIRST = """
import sys
sys.path[:0] = {path!r}
import numpy as np
from runlog.writer import RunWriter
w = RunWriter({run!r})
for s in range(30):
    w.log_samples(s, {{"reward": np.arange(4.0), "attempt": [1] * 4}})
    if s % 3 == 0:
        w.log_samples(s, {{"reward": np.arange(2.0), "attempt": [1] * 2}}, split="eval")
    w.log_scalars(s, {{"attempt": 1.0}})
w.close()
"""

RESUME = """
import os, sys, warnings
sys.path[:0] = {path!r}
warnings.simplefilter("ignore")
import numpy as np
from runlog.writer import RunWriter
real, n = os.replace, [0]
def replace(a, b):
    if ".superseded" in str(b):
        if n[0] == {k}:
            os._exit(9)  # killed after {k} moves
        n[0] += 1
    return real(a, b)
os.replace = replace
w = RunWriter({run!r})
w.log_samples(10, {{"reward": np.arange(4.0), "attempt": [2] * 4}})
w.close()
"""


@pytest.mark.parametrize("k", [0, 1, 4, 7, 12, 20, 26])
def test_a_resume_killed_while_taking_the_old_run_out_leaves_it_contiguous(tmp_path: Path, k: int) -> None:
    """The abandoned run has train 0-29, eval every 3 and scalars 0-29; a resume from step 10 is killed after
    ``k`` of its 27 moves. Each split on disk is contiguous from 0 (no hole), and the scalars are not cut below
    the samples left; inspect finds no gap and exits 0."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-c", FIRST.format(path=sys.path, run=str(run))], check=True, timeout=120)
    code = RESUME.format(path=sys.path, run=str(run), k=k)
    done = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert done.returncode == 9
    train, evals = _steps(run, "train"), _steps(run, "eval")
    assert train == list(range(len(train))) and len(train) >= 10
    assert evals == list(range(0, 3 * len(evals), 3))
    moved = 30 - len(train) + 10 - len(evals)
    assert moved == k
    lines = [json.loads(x)["step"] for x in (run / "scalars.p0.jsonl").read_text().splitlines()]
    assert lines == list(range(30))  # the scalars are rewritten last: not yet
    for f in glob.glob(str(run / "samples/*/*.parquet")):
        assert set(pq.read_table(f).column("attempt").to_pylist()) == {1}
    report = inspect_run(open_run(run))
    assert report.step_gaps == {"train": [], "eval": []} and report.errors == 0
    assert not [m for m in _messages(report) if "missing" in m], _messages(report)
    # The next resume from the same step finishes the take-out.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(run) as w:
            w.log_samples(10, {"reward": np.arange(4.0), "attempt": [3] * 4})
    assert _steps(run, "train") == list(range(11)) and _steps(run, "eval") == [0, 3, 6, 9]
    lines = [json.loads(x)["step"] for x in (run / "scalars.p0.jsonl").read_text().splitlines()]
    assert lines == list(range(10))


# -- 4A: a process killed behind the others --------------------------------------------------------------------


def test_a_process_stopped_behind_the_others_is_an_inspect_warning(tmp_path: Path) -> None:
    """Process 1 was killed after step 5, process 0 closed at step 11 ten minutes ago: steps 6-11 hold only
    process 0's rows. inspect warns as doctor does (``--strict`` fails)."""
    run = tmp_path / "run"
    w0, w1 = RunWriter(run, process_index=0), RunWriter(run, process_index=1)
    for s in range(12):
        w0.log_samples(s, {"reward": np.arange(3.0)})
        if s <= 5:
            w1.log_samples(s, {"reward": np.arange(3.0)})
    w0.close()
    w1.close()
    (run / ".writer.p1.json").write_text(json.dumps({"process": 1, "state": "open"}))  # as a kill leaves it
    old = time.time() - 600
    for f in run.rglob("*"):
        os.utime(f, (old, old))
    theirs, mine = max(_steps(run, process=0)), max(_steps(run, process=1))
    assert (mine, theirs) == (5, 11)
    report = inspect_run(open_run(run))
    said = [p for p in report.problems if "stopped behind" in p.message]
    assert len(said) == 1 and said[0].is_warning and said[0].path == ".writer.p1.json"
    assert f"train: its last step {mine}, theirs {theirs}" in said[0].message
    assert said[0].message.startswith("process 1 did not close its writer and stopped behind process 0")
    doctor = [f for f in diagnose(open_run(run)).findings if "writer_not_closed" in f.message]
    assert [f.severity for f in doctor] == ["warning"] and said[0].message in doctor[0].message


def test_a_process_not_yet_behind_for_long_is_no_warning(tmp_path: Path) -> None:
    run = tmp_path / "run"
    w0, w1 = RunWriter(run, process_index=0), RunWriter(run, process_index=1)
    for s in range(4):
        w0.log_samples(s, {"reward": [1.0]})
        if s <= 1:
            w1.log_samples(s, {"reward": [1.0]})
    w0.close()
    report = inspect_run(open_run(run))  # process 0 closed just now: process 1 may still be writing
    assert not [m for m in _messages(report) if "stopped behind" in m]
    w1.close()


# -- 5: ids repeated inside one file ---------------------------------------------------------------------------


def test_doctor_finds_ids_repeated_inside_one_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(run) as w:
            for s in range(10):
                w.log_samples(s, {"reward": np.arange(8.0), "sample_id": [f"s{s}-p{i // 2}" for i in range(8)]})
    repeated = extra = 0
    for f in glob.glob(str(run / "samples/train/*.parquet")):
        ids = pq.read_table(f, columns=["sample_id"]).column(0).to_pylist()
        repeated += sum(1 for i in set(ids) if ids.count(i) > 1)
        extra += len(ids) - len(set(ids))
    assert (repeated, extra) == (40, 40)
    [f] = [f for f in diagnose(open_run(run)).findings if "repeated_sample_ids" in f.message]
    assert f.severity == "warning" and f.evidence["count"] == repeated and f.evidence["extra_rows"] == extra
    assert "distinct samples given one id" in f.message
    report = inspect_run(open_run(run), deep=True)
    [m] = [m for m in _messages(report) if "occur more than once" in m]
    assert f"{repeated} sample id(s)" in m and "distinct samples given one id" in m


# -- 6: an extra numeric column written as text in one step ----------------------------------------------------


def test_deep_keeps_an_extra_column_one_step_wrote_as_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(run) as w:
            for s in range(5):
                w.log_samples(s, {"reward": [1.0, 2.0], "num_turns": [3, "three"] if s == 4 else [3, 4]})
    rows = 0
    for f in glob.glob(str(run / "samples/train/*.parquet")):
        col = pq.read_table(f).column("num_turns")
        rows += len(col) if str(col.type) == "int64" else 0
    assert rows == 8
    plain = inspect_run(open_run(run)).numeric["num_turns"]
    deep = inspect_run(open_run(run), deep=True).numeric["num_turns"]
    assert (plain.count, plain.null) == (deep.count, deep.null) == (rows, 0)
    assert (deep.nan, deep.inf, deep.valid) == (0, 0, rows)


def test_deep_counts_nan_of_a_float_column_one_step_wrote_as_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(run) as w:
            w.log_samples(0, {"reward": [1.0, 2.0], "score": [float("nan"), float("inf")]})
            w.log_samples(1, {"reward": [1.0, 2.0], "score": [0.5, 1.5]})
            w.log_samples(2, {"reward": [1.0, 2.0], "score": ["nan", "inf"]})  # text: no NaN, no inf
    deep = inspect_run(open_run(run), deep=True).numeric["score"]
    assert (deep.count, deep.null, deep.nan, deep.inf) == (4, 0, 1, 1)


# -- 7: the .superseded/ folder a resume leaves ----------------------------------------------------------------


def test_inspect_says_what_a_resume_put_aside(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run) as w:
        for s in range(6):
            w.log_samples(s, {"reward": [1.0, 2.0]})
            w.log_scalars(s, {"loss": 1.0})
    assert inspect_run(open_run(run)).writers["superseded"] is None  # type: ignore[index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(run) as w:
            w.log_samples(3, {"reward": [1.0, 2.0]})
    aside = [p for p in (run / ".superseded").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in aside)
    assert len(aside) == 4  # steps 3-5 and the scalar lines
    report = inspect_run(open_run(run))
    assert report.writers is not None and report.writers["superseded"] == {"files": len(aside), "bytes": size}
    assert f"a resume put aside {len(aside)} file(s), {size:,} bytes, in .superseded/" in report.writers["summary"]
    assert report.warnings == 0
