"""Audit 20 (writer auditor, fix-resume): what discovery tells of a multi-process run that was not written whole.

* A 2-process run resumed by process 0 alone: its resumed writer put its own rows of the resumed steps aside
  (``.superseded/``) and left process 1's rows of the abandoned attempt in the run, so ``summarize --by step``
  printed each of those steps as a mean of both attempts (555 of rewards 105 and 1005), exit 0, and ``inspect``
  said "valid: no problems found". Now a warning of the run in every command, naming the process, the steps and the
  files (a warning: told from modification times, and a process restarted with nothing to put aside leaves no
  mark; review of 72f06ad, where an error made clean runs exit 1).
* A process killed behind the others: the steps after its last hold only the others' rows, which ``inspect`` and
  ``doctor`` said but ``summarize`` (and every other command) did not. Now a warning of the run at discovery,
  naming those steps.

Every expected figure comes from the raw files (pyarrow, json, os), not from runlog's readers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.inspect import inspect_run
from runlog.writer import RunWriter

TRAIN = ("samples", "train")


def _writer(run: Path, process: int) -> RunWriter:
    return RunWriter(run, name="t9", roles=["solver"], process_index=process, run_id="Z", durable=False)


def _log(w: RunWriter, step: int, reward: float) -> None:
    w.log_samples(step, {"reward": np.full(4, reward), "group_id": ["a", "a", "b", "b"]})
    w.log_scalars(step, {"loss": reward})


def _two_processes(run: Path, steps: int = 10) -> None:
    """Processes 0 and 1 write steps 0..steps-1 (process p's rewards: 100 p + step), and close."""
    ws = [_writer(run, p) for p in (0, 1)]
    for s in range(steps):
        for p, w in enumerate(ws):
            _log(w, s, 100.0 * p + s)
    for w in ws:
        w.close()
    _aged(run)


def _aged(run: Path, seconds: float = 600.0) -> None:
    """Every file and folder of the run dated ``seconds`` ago: the attempt a crash ended, before the restart (rows
    written within ``run.ATTEMPT_SLACK_NS`` of a resume are taken for the resumed attempt's)."""
    when = time.time() - seconds
    for folder, dirs, files in os.walk(run):
        for name in [*dirs, *files]:
            os.utime(os.path.join(folder, name), (when, when))
    os.utime(run, (when, when))


def _resume(run: Path, process: int, steps: range) -> None:
    """A resumed writer of ``process`` logs ``steps`` again (rewards 1000 + step) and closes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the writer's own warning of what it put aside
        w = _writer(run, process)
        for s in steps:
            _log(w, s, 1000.0 + s)
        w.close()
    time.sleep(0.05)


def _rewards_by_process(run: Path) -> dict[int, dict[int, set[float]]]:
    """step -> process -> the rewards its live sample file holds (pyarrow)."""
    out: dict[int, dict[int, set[float]]] = {}
    for f in sorted(run.joinpath(*TRAIN).glob("step_*.parquet")):
        step, proc = f.name.removeprefix("step_").removesuffix(".parquet").split(".p")
        out.setdefault(int(step), {})[int(proc)] = set(pq.read_table(f, columns=["reward"])["reward"].to_pylist())
    return out


def _mixed(run: Path) -> list:
    return [p for p in open_run(run).problems if MIXED in p.message]


MIXED = "resumed the run from step"


# -- 1: a run resumed by fewer processes than wrote it --------------------------------------------------------


def test_rows_a_resume_left_of_another_process_are_said_by_every_command(tmp_path: Path, cli) -> None:
    """Process 0 resumes alone from step 5: process 1's rows of steps 5-9 are of the abandoned attempt (rewards
    100 + step), read with process 0's resumed rows (1000 + step). Every command says so, as a warning naming the
    processes, the steps, the first file and the folder the resume put its own rows in."""
    run = tmp_path / "t9"
    _two_processes(run)
    _resume(run, 0, range(5, 13))
    raw = _rewards_by_process(run)
    # The premise, from the files: steps 5-9 mix process 1's old rows with process 0's resumed ones.
    stale = sorted(s for s, by in raw.items() if 1 in by and max(by[1]) < 1000 and min(by.get(0, {0.0})) >= 1000)
    assert stale == [5, 6, 7, 8, 9]
    [aside] = os.listdir(run / ".superseded")
    [problem] = _mixed(run)
    assert problem.path == "samples/train/step_00000005.p1.parquet" and problem.is_warning
    assert problem.message.startswith(f"process 1's rows of train steps {stale[0]}-{stale[-1]} ({len(stale)} files)")
    assert f"before process 0 resumed the run from step {stale[0]}" in problem.message
    assert f".superseded/{aside}" in problem.message
    # process 1's scalars of those steps too (json: its shard holds lines of steps 0-9, all of that attempt)
    lines = [json.loads(x)["step"] for x in (run / "scalars.p1.jsonl").read_text().splitlines()]
    assert max(lines) == 9 and "its scalars of steps 5-9" in problem.message

    r = cli("summarize", run, "--by", "step", "--format", "csv")
    assert r.exit_code == 0 and "samples/train/step_00000005.p1.parquet" in r.stderr, r.stderr
    assert "were written before process 0 resumed the run from step 5" in r.stderr
    r = cli("inspect", run)
    assert "no problems found" not in r.stdout and MIXED in r.stdout


def test_an_evaluator_rerun_is_no_resume_of_the_trainer(tmp_path: Path) -> None:
    """Review of 72f06ad: an evaluator process (eval split only) re-run for a checkpoint puts its own eval step
    aside; the trainer's train rows, of another split, are no abandoned attempt's."""
    run = tmp_path / "run"
    ev, tr = RunWriter(run, process_index=0, durable=False), RunWriter(run, process_index=1, durable=False)
    for s in range(10):
        tr.log_samples(s, {"reward": np.full(2, float(s))})
        if s % 4 == 0:
            ev.log_samples(s, {"reward": np.full(2, 50.0 + s)}, split="eval")
    ev.close()
    tr.close()
    _aged(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = RunWriter(run, process_index=0, durable=False)
        again.log_samples(8, {"reward": np.full(2, 99.0)}, split="eval")
        again.close()
    assert os.listdir(run / ".superseded")
    assert not _mixed(run)


def test_process_1_resumed_too_puts_its_rows_aside_and_nothing_is_said(tmp_path: Path) -> None:
    """The fix the message gives: a resumed writer of process 1 takes its own old rows of step 5 on out."""
    run = tmp_path / "t9"
    _two_processes(run)
    _resume(run, 0, range(5, 13))
    assert _mixed(run)
    _resume(run, 1, range(5, 13))
    raw = _rewards_by_process(run)
    assert all(min(by[p]) >= 1000 for s, by in raw.items() if s >= 5 for p in by)  # no old row left
    assert not _mixed(run)


def test_a_run_every_process_resumed_is_no_mixture_nor_its_copy(tmp_path: Path) -> None:
    """Both processes resume from step 5 (each with what it put aside), one after the other or in step: nothing is
    mixed, and a copy that keeps the files' times (``cp -a``, ``rsync -a``: here ``shutil.copytree``) says the
    same of both runs as the original."""
    together, apart, single = tmp_path / "together", tmp_path / "apart", tmp_path / "single"
    _two_processes(together)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ws = [_writer(together, p) for p in (0, 1)]
        for s in range(5, 13):
            for w in ws:
                _log(w, s, 1000.0 + s)
            ws[0].flush()  # in step: process 1 writes step s once process 0 has logged it (its resume decided)
        for w in ws:
            w.close()
    _two_processes(apart)
    _resume(apart, 1, range(5, 13))
    _resume(apart, 0, range(5, 13))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = _writer(single, 0)
        for s in range(10):
            _log(w, s, s)
        w.close()
    _aged(single)
    _resume(single, 0, range(5, 13))
    for run in (together, apart, single):
        raw = _rewards_by_process(run)
        assert all(min(by[p]) >= 1000 for s, by in raw.items() if s >= 5 for p in by), run
        assert not _mixed(run), run
    mixed = tmp_path / "mixed"
    _two_processes(mixed)
    _resume(mixed, 0, range(5, 13))
    for run in (together, mixed):
        copy = tmp_path / f"copy-{run.name}"
        shutil.copytree(run, copy)
        assert [p.message for p in _mixed(copy)] == [p.message for p in _mixed(run)]
    assert len(_mixed(mixed)) == 1


# -- 3: a process killed behind the others ----------------------------------------------------------------------


def _killed_behind(run: Path) -> None:
    """Process 1 stopped after step 5 without closing (its state file as a kill leaves it), process 0 closed at
    step 11, ten minutes ago."""
    w0, w1 = RunWriter(run, process_index=0, durable=False), RunWriter(run, process_index=1, durable=False)
    for s in range(12):
        w0.log_samples(s, {"reward": np.arange(3.0)})
        if s <= 5:
            w1.log_samples(s, {"reward": np.arange(3.0)})
    w0.close()
    w1.close()
    (run / ".writer.p1.json").write_text(json.dumps({"process": 1, "state": "open"}))
    old = time.time() - 600
    for f in run.rglob("*"):
        os.utime(f, (old, old))


def test_steps_a_killed_process_never_wrote_are_said_by_summarize(tmp_path: Path, cli) -> None:
    """summarize printed steps 6-11 with process 0's rows alone (3 of 6), exit 0, and never said so; inspect and
    doctor said it. Now every command says it at discovery, naming those steps; inspect and doctor once."""
    run = tmp_path / "run"
    _killed_behind(run)
    raw = _rewards_by_process(run)
    only_0 = sorted(s for s, by in raw.items() if set(by) == {0})
    assert only_0 == list(range(6, 12))
    said = f"train steps {only_0[0]}-{only_0[-1]} hold only the other processes' rows"
    r = cli("summarize", run, "--by", "step", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    assert "warning: .writer.p1.json: process 1 did not close its writer and stopped behind process 0" in r.stderr
    assert said in r.stderr and r.stderr.count("stopped behind") == 1
    counts = {int(row.split(",")[0]): int(row.split(",")[6]) for row in r.stdout.splitlines()[1:]}
    rows_0 = {s: pq.read_metadata(run.joinpath(*TRAIN, f"step_{s:08d}.p0.parquet")).num_rows for s in only_0}
    assert {s: counts[s] for s in only_0} == rows_0  # process 0's rows alone
    report = inspect_run(open_run(run))
    stopped = [p for p in report.problems if "stopped behind" in p.message]
    assert len(stopped) == 1 and stopped[0].is_warning and said in stopped[0].message
    found = [f for f in diagnose(open_run(run)).findings if "stopped behind" in f.message]
    assert [f.severity for f in found] == ["warning"] and said in found[0].message


def test_a_process_behind_whose_writer_is_open_is_not_said_by_summarize(tmp_path: Path, cli) -> None:
    """Process 1's writer holds its lock (open, not in lockstep): not killed, nothing said."""
    run = tmp_path / "run"
    w0, w1 = RunWriter(run, process_index=0, durable=False), RunWriter(run, process_index=1, durable=False)
    try:
        for s in range(12):
            w0.log_samples(s, {"reward": [1.0]})
            if s <= 5:
                w1.log_samples(s, {"reward": [1.0]})
        w0.close()
        w1.flush()
        old = time.time() - 600
        os.utime(run / ".writer.p0.json", (old, old))
        r = cli("summarize", run, "--by", "step", "--format", "csv")
        assert r.exit_code == 0 and "stopped behind" not in r.stderr, r.stderr
    finally:
        w1.close()


def test_rows_written_just_before_a_resume_are_the_resumed_attempts(tmp_path: Path) -> None:
    """Processes restarted together log a step at about the same time: process 1, with nothing of step 5 on to put
    aside (it had stopped at step 4), may write step 5 a moment before process 0's writer puts its own old rows
    aside. Its rows are the resumed attempt's, not an abandoned one's: no error."""
    run = tmp_path / "t9"
    ws = [_writer(run, p) for p in (0, 1)]
    for s in range(10):
        _log(ws[0], s, s)
        if s < 5:
            _log(ws[1], s, 100.0 + s)
    for w in ws:
        w.close()
    _aged(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w1 = _writer(run, 1)
        _log(w1, 5, 1105.0)
        w1.flush()
        w0 = _writer(run, 0)
        for s in range(5, 8):
            _log(w0, s, 1000.0 + s)
            if s > 5:
                _log(w1, s, 1100.0 + s)
        w0.close()
        w1.close()
    assert os.listdir(run / ".superseded")
    raw = _rewards_by_process(run)
    assert all(min(by[p]) >= 1000 for s, by in raw.items() if s >= 5 for p in by)
    assert not _mixed(run)


def test_answers_are_not_kept_while_a_writer_state_is_fresh(tmp_path: Path) -> None:
    """A process behind the others is said to have stopped only ``END_GRACE_S`` after they closed: an answer kept
    before would be served later without that warning. A run whose writer state files were written within the
    grace keeps no answer; once they are older, it may."""
    from runlog.cli.answers import run_listing

    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        w.log_samples(0, {"reward": np.arange(3.0)})
    assert any(n.startswith(".writer.p") for n in os.listdir(run))
    _aged(run, 60.0)  # past every other reason not to keep an answer (a file changed in the last seconds)
    assert run_listing(run)[1] is True
    _aged(run, 200.0)
    assert run_listing(run)[1] is False
