"""``runlog watch`` and ``runlog doctor --follow`` on a step file rewritten while they read it (audit 9): a polars
panic (a file that shrank between its footer read and its data read) is a file unreadable at that moment, never a
traceback; a read that failed on a file replaced since it was listed is read again, and in the live loop a failed
poll is retried at the next one; a file that doctor's reading finds torn counts only once it has stayed so for
``--settle`` seconds; the split shown stays while the run's only sample file is rewritten (step 0 was said twice
as new)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog.analysis.doctor as doctor_module
import runlog.run as run_module
from runlog.analysis.doctor import DoctorConfig
from runlog.analysis.summarize import summarize
from runlog.errors import DataError
from runlog.formats.base import UNREADABLE
from runlog.run import open_run
from runlog.watch import DoctorWatch, LiveRun
from runlog.watch.poll import run_lister
from watch_helpers import child_env

from conftest import ROOT

STEP0 = "samples/train/step_00000000.p0.parquet"
PANIC = polars.exceptions.PanicException


def _env() -> dict[str, str]:
    """``child_env``, but a PYTHONPATH given to the tests comes first (to run them against another tree)."""
    env = child_env()
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join([os.environ["PYTHONPATH"], env["PYTHONPATH"]])
    return env


def _step_bytes(step: int, n: int, shift: float = 0.0) -> bytes:
    """One native step file (schema v2), as bytes: rewards ``shift + i / 10``."""
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([step] * n, pa.int64()),
            "split": ["train"] * n,
            "sample_id": [f"s{step}-{i}" for i in range(n)],
            "reward": [shift + i / 10 for i in range(n)],
        }
    ).replace_schema_metadata({"runlog.schema_version": "2"})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


def _native_run(root: Path, steps: int = 3, n: int = 4) -> Path:
    (root / "samples" / "train").mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "name": "r"}))
    for s in range(steps):
        (root / f"samples/train/step_{s:08d}.p0.parquet").write_bytes(_step_bytes(s, n, shift=s))
    return root


def _replace(path: Path, data: bytes | None = None) -> None:
    """Write ``path`` again atomically (a new version: new inode and modification time)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(path.read_bytes() if data is None else data)
    os.replace(tmp, path)


def _truth(root: Path) -> dict[int, float]:
    """Each step's mean reward, from the files with pyarrow and numpy."""
    out = {}
    for f in sorted((root / "samples" / "train").glob("step_*.parquet")):
        t = pq.read_table(f)
        out[int(t.column("step")[0].as_py())] = float(np.mean(t.column("reward").to_numpy()))
    return out


def _fail_once(monkeypatch, exc: BaseException, before=None) -> list[int]:
    """``pl.collect_all`` (as ``Run.collect`` calls it) raises ``exc`` the first time, after ``before()`` (a
    file rewritten while it is read); the calls made."""
    real = run_module.pl.collect_all
    calls: list[int] = []

    def collect_all(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            if before is not None:
                before()
            raise exc
        return real(*a, **kw)

    monkeypatch.setattr(run_module.pl, "collect_all", collect_all)
    return calls


# -- 1 and 2: a read that fails on a file rewritten while read is read again ------------------------------
@pytest.mark.parametrize(("before", "after"), [(300, 30), (4, 300)], ids=["shrunk-panic", "grown-invalid-thrift"])
def test_a_file_replaced_after_the_run_was_read_is_read_again(tmp_path, before, after):
    """The frames of a run keep the footer polars first read; the file replaced since (a step file that grows,
    written atomically): read at the old offsets, a smaller file made polars panic (``PanicException``, a
    traceback through ``Run.collect``), a larger one failed with "Invalid thrift" ("reading the run failed",
    although every file reads). Now the frames are built again and read the new version."""
    root = _native_run(tmp_path / "run", n=before)
    run = open_run(root, cache=False)
    summarize(run, ["step"], cache=False)  # the frames are built and their footers read
    _replace(root / STEP0, _step_bytes(0, after, shift=0.5))
    df = summarize(run, ["step"], cache=False)
    got = {int(r["step"]): r["reward_mean"] for r in df.iter_rows(named=True)}
    truth = _truth(root)
    assert truth[0] == pytest.approx(0.5 + (after - 1) / 20)  # the new version's mean
    assert got == pytest.approx(truth, abs=1e-12)
    assert not run.problems  # nothing was wrong with any file


def test_a_read_that_fails_with_no_file_changed_is_still_an_error(tmp_path, monkeypatch):
    """No file changed and every file reads: not retried (a real failure), one ``DataError``, as before."""
    root = _native_run(tmp_path / "run")
    run = open_run(root, cache=False)

    def always(*a, **kw):
        raise polars.exceptions.ComputeError("boom")

    monkeypatch.setattr(run_module.pl, "collect_all", always)
    with pytest.raises(DataError, match="reading the run failed: boom"):
        summarize(run, ["step"], cache=False)


def test_a_file_torn_while_the_check_reads_it_is_said_changed_not_corrupt(tmp_path, monkeypatch):
    """The file is torn (rewritten in place) when the failed read is checked: left out for this read, and said
    as a file that changed while read, not as corrupt data behind an intact footer."""
    root = _native_run(tmp_path / "run")
    run = open_run(root, cache=False)
    whole = _step_bytes(0, 6, shift=0.5)

    def torn() -> None:
        (root / STEP0).write_bytes(whole[: len(whole) // 2])

    _fail_once(monkeypatch, PANIC("assertion failed"), before=torn)
    df = summarize(run, ["step"], cache=False)
    assert sorted(df["step"].to_list()) == [1, 2]
    [problem] = [p for p in run.problems if p.kind == UNREADABLE]
    assert problem.path == STEP0 and problem.message.startswith(run_module.CHANGED)


def test_component_names_survives_a_panic_on_a_file_replaced(tmp_path, monkeypatch):
    root = _native_run(tmp_path / "run")
    run = open_run(root, cache=False)
    [layout] = run.layouts
    real = type(layout).component_names
    calls: list[int] = []

    def names(self, files, ctx):
        calls.append(1)
        if len(calls) == 1:
            _replace(root / STEP0)
            raise PANIC("assertion failed")
        return real(self, files, ctx)

    monkeypatch.setattr(type(layout), "component_names", names)
    assert run.component_names() == []
    assert len(calls) == 2


# -- the live loop: a failed poll is retried at the next one -------------------------------------------------
def _poll(live: LiveRun, root: Path) -> list[dict]:
    data, temp = run_lister(root)()
    return [e.as_dict() for e in live.update(data, temp)]


@pytest.mark.parametrize("exc", [PANIC("assertion failed"), DataError("run", "reading the run failed: x")])
def test_a_failed_poll_is_retried_at_the_next_one_and_each_step_said_once(tmp_path, monkeypatch, exc):
    """A poll whose read panics (or fails) ended the watch with a traceback (exit 1); now a note, and the
    steps come at the next poll, each once, with the files' figures."""
    import runlog.analysis.summarize as summarize_module

    root = _native_run(tmp_path / "run", steps=2)
    live = LiveRun(root, settle=60)
    assert [e["step"] for e in _poll(live, root) if e["event"] == "step"] == [0, 1]
    (root / "samples/train/step_00000002.p0.parquet").write_bytes(_step_bytes(2, 5, shift=2))
    real = summarize_module.summarize
    calls: list[int] = []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return real(*a, **kw)

    monkeypatch.setattr(summarize_module, "summarize", failing)
    events = _poll(live, root)
    assert [e["event"] for e in events] == ["note"] and "retrying at the next poll" in events[0]["message"]
    assert sorted(live.steps) == [0, 1]  # what was shown stays
    events = _poll(live, root)  # nothing changed on disk: the failed read is retried all the same
    steps = [e for e in events if e["event"] == "step"]
    assert [(e["step"], e["rows"], e.get("update")) for e in steps] == [(2, 5, None)]
    assert steps[0]["roles"][0]["reward_mean"] == pytest.approx(_truth(root)[2], abs=1e-12)
    assert not [e for e in _poll(live, root) if e["event"] == "step"]


# -- 4: the split shown stays while the only sample file is rewritten ------------------------------------------
def test_rewriting_the_only_sample_file_keeps_the_split_and_says_the_step_as_an_update(tmp_path):
    """The run's only file torn by an in-place rewrite: the watch said "showing split None (was train)",
    forgot what it had shown, and said step 0 again as a new step (no ``update``)."""
    root = _native_run(tmp_path / "run", steps=1, n=4)
    live = LiveRun(root, settle=60)
    [first] = [e for e in _poll(live, root) if e["event"] == "step"]
    assert (first["step"], first["rows"]) == (0, 4)
    whole = _step_bytes(0, 6, shift=1.0)
    (root / STEP0).write_bytes(whole[: len(whole) // 2])  # rewritten in place: torn for a while
    torn = _poll(live, root)
    assert [e["event"] for e in torn] == ["note"] and "incomplete" in torn[0]["message"], torn
    assert live.split == "train"
    (root / STEP0).write_bytes(whole)
    events = _poll(live, root)
    assert not any("showing split" in str(e.get("message")) for e in events)
    [step] = [e for e in events if e["event"] == "step"]
    assert (step["step"], step["rows"], step.get("update")) == (0, 6, True)
    assert step["roles"][0]["reward_mean"] == pytest.approx(_truth(root)[0], abs=1e-12)


# -- 3: a file doctor finds torn counts only once it has lasted --settle ---------------------------------------
def test_a_file_doctor_finds_unreadable_waits_for_settle(tmp_path, monkeypatch):
    """``diagnose`` reads a file mid-rewrite (torn for 0.15 s): it was an error finding at once, and
    ``--fail-on error`` failed a healthy run. Now it counts once the same version stayed bad ``settle`` seconds
    (since it was written); one written long ago counts at the first check."""
    root = _native_run(tmp_path / "run")
    real = doctor_module.diagnose

    def diagnose(run, config):
        run.ctx.problem(STEP0, UNREADABLE, "corrupt data (the footer is intact): torn; file skipped")
        return real(run, config)

    monkeypatch.setattr(doctor_module, "diagnose", diagnose)
    t = [0.0]  # the throttle's clock: each poll comes long after the last check
    watch = DoctorWatch(root, DoctorConfig(), min_gap=0.0, clock=lambda: t[0])
    watch.settle = 5.0  # as ``watcher_for`` sets it from ``--settle``
    watch.changed()
    kinds = [e.data["kind"] for e in watch.poll() if e.kind == "finding"]
    assert "data_problem" not in kinds  # written just now: it may still be being written
    old = time.time() - 60
    os.utime(root / STEP0, (old, old))  # the same bytes, written a minute ago (a new stamp: settles anew)
    t[0] += 100
    [finding] = [e.data for e in watch.poll() if e.kind == "finding" and e.data["kind"] == "data_problem"]
    assert finding["severity"] == "error" and finding["onset_step"] == 0  # a re-check was due: still settling


# -- end to end: a writer rewriting its step file in place while doctor --follow reads -----------------------
WRITER = textwrap.dedent(
    """
    import io, json, os, sys, time
    import pyarrow as pa, pyarrow.parquet as pq
    root, seconds, atomic = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "atomic"
    os.makedirs(f"{root}/samples/train", exist_ok=True)
    json.dump({"format": "runlog", "schema_version": 2, "name": "grow"}, open(f"{root}/run.json", "w"))
    def data(step, n):
        t = pa.table({"schema_version": pa.array([2] * n, pa.int32()), "step": pa.array([step] * n, pa.int64()),
                      "split": ["train"] * n, "sample_id": [f"s{step}-{i}" for i in range(n)],
                      "reward": [((i * 7) % 10) / 10 for i in range(n)], "completion": ["x" * 200] * n}
                     ).replace_schema_metadata({"runlog.schema_version": "2"})
        b = io.BytesIO(); pq.write_table(t, b); return b.getvalue()
    print("ready", flush=True)
    t0, step = time.time(), 0
    while time.time() - t0 < seconds:
        for k in range(1, 6):  # the step's file grows as rollouts finish: rewritten each time
            d, path = data(step, 50 * k), f"{root}/samples/train/step_{step:08d}.p0.parquet"
            if atomic:
                open(f"{root}/samples/train/.tmp", "wb").write(d)
                os.replace(f"{root}/samples/train/.tmp", path)
            else:
                with open(path, "wb") as f:
                    f.write(d[: len(d) // 3]); f.flush(); time.sleep(0.02); f.write(d[len(d) // 3 :])
            time.sleep(0.04)
        step += 1
    """
)


@pytest.mark.parametrize("how", ["in-place", "atomic"])
def test_doctor_follow_on_a_file_rewritten_while_read_ends_cleanly(tmp_path, how):
    """A writer that rewrites its growing step file every ~0.05 s, in place or atomically, read every 0.1 s:
    panics' tracebacks, "reading the run failed" (exit 1), or a false error finding ended it. Now the run is
    healthy to the end: no error finding, the ``end`` line, exit 0, no traceback."""
    run = tmp_path / "run"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run), "4", how], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        fast = ("--interval", "0.1", "--idle-exit", "1", "--timeout", "20", "--format", "json")
        cmd = [sys.executable, "-m", "runlog", "doctor", str(run), "--follow", "--fail-on", "error", *fast]
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60)
    finally:
        writer.kill()
        writer.wait(timeout=10)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert "Traceback" not in done.stderr and "PanicException" not in done.stderr, done.stderr[-2000:]
    assert not [e for e in lines if e["event"] == "finding" and e["severity"] == "error"], lines
    assert lines[-1] == {"event": "end", "reason": "idle", "message": None}
    assert done.returncode == 0, done.stderr[-2000:]


# -- 5: the trend and sparkline of a window with steps missing -------------------------------------------------
def test_the_trend_is_fitted_against_the_steps_and_a_gap_is_marked(tmp_path):
    """Rewards step/10 at steps 0-19 with 10-14 missing: the trend was +2 (a fit on positions) and the gap drawn
    as a steep jump; now +1.9 (the least-squares change from step 0 to 19) and a ``·`` where steps are missing."""
    from rich.console import Console

    from runlog import RunWriter
    from runlog.watch.screen import Screen

    root = tmp_path / "gapline"
    with RunWriter(root, name="gapline", roles=["solver"]) as w:
        for s in [*range(10), *range(15, 20)]:
            w.log_samples(s, [{"reward": s / 10, "solver_reward": s / 10, "solver_kl": 0.01} for _ in range(4)])
    steps = np.array([*range(10), *range(15, 20)], dtype=float)
    slope = np.polyfit(steps, steps / 10, 1)[0]
    expected = f"↑{slope * (steps[-1] - steps[0]):+.2g}"
    assert expected == "↑+1.9"
    live = LiveRun(root)
    _poll(live, root)
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(Screen(live, None, [], interval=2.0))
    [line] = [ln for ln in console.file.getvalue().splitlines() if ln.startswith("solver")]
    assert expected in line and "↑+2 " not in line
    assert line.split()[1] == "▁▁▁▂▂▃▃▃▄▄·▇▇███"  # steps 0-9, the gap, steps 15-19


# -- 6: a stray file named like a step is no step's --------------------------------------------------------------
def test_a_stray_file_named_like_a_step_has_no_onset_step(tmp_path):
    """A junk file ``step_00000009.p0<ESC>...parquet`` got "onset step 9" in its "matches no known layout"
    warning: its name is not a data file's."""
    root = _native_run(tmp_path / "run", steps=1)
    junk = "step_00000009.p0\x1b]0;x\x07.parquet"
    (root / "samples" / "train" / junk).write_bytes(b"not parquet at all")
    live = LiveRun(root, settle=0)
    problems = [e for e in _poll(live, root) if e["event"] == "problem"]
    [problem] = [p for p in problems if p["path"].endswith(junk)]
    assert problem["onset_step"] is None, problem
    from runlog.watch.live import _step_in_name

    assert _step_in_name("samples/train/.step_00000012.p0.parquet.tmp") == 12  # a writer's temporary: its step
