"""Audit 16 of ``upload-wandb`` on a run still being written.

- A live writer whose lock cannot be seen here (no ``flock``, a lock taken on another host over NFS) was taken for
  killed once its files were two minutes old, a GRPO step whose training phase is longer than that, or a storage
  clock behind this host's: its open step was sent, and the rest of that step was refused for good. Where the
  writer keeps a heartbeat (its state file touched every ``HEARTBEAT_S`` seconds), its age alone decides now, with
  a grace far above the period; a heartbeat ahead of this host's clock is a live writer.
- A live upload held back every step from a process's last samples step: samples logged every tenth step held
  the whole run. A written samples file is sealed (``StepOrderError`` to log its step again), so the samples hold
  from the step after it; the note says which stream of which process holds.

Expected values come from what each test wrote; uploads are dry runs (no W&B needed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog import open_run
from runlog.sinks import state as S
from runlog.sinks import wandb as W
from runlog.sinks.plan import PlanOptions, build_plan

HELD = "held back"


def rows(step: int) -> list[dict[str, Any]]:
    return [{"sample_id": f"s{step}-{i}", "reward": float(i)} for i in range(2)]


def dry(run: Path, tmp_path: Path) -> W.UploadResult:
    return W.upload_wandb(run, project="p", dry_run=True, state_path=tmp_path / f"{run.name}-state.json")


def live(root: Path, steps: int = 5) -> runlog.RunWriter:
    """An open writer that wrote steps 0..steps-1 (samples, then scalars), flushed; its lock file taken away, as
    where no lock can be seen (a file system without flock, a writer on another host)."""
    w = runlog.RunWriter(root, name="live", durable=False)
    for step in range(steps):
        w.log_samples(step, rows(step))
        w.log_scalars(step, {"loss": float(step)})
    w.flush()
    (root / ".writer.p0.lock").unlink()
    return w


def age(root: Path, seconds: float, only: str | None = None) -> None:
    t = time.time() - seconds
    for p in root.rglob("*"):
        if only is None or p.name == only:
            os.utime(p, (t, t))


def test_a_live_writer_in_a_long_step_is_held_by_its_heartbeat_without_a_visible_lock(tmp_path: Path) -> None:
    root = tmp_path / "run"
    w = live(root)
    try:
        age(root, 300)  # every file, its state file included: a step longer than two minutes, or a clock behind
        result = dry(root, tmp_path)
        assert (result.first_step, result.last_step) == (0, 3), result.notes
        note = next(n for n in result.notes if HELD in n)
        assert "process 0 not closed" in note and "its scalars of step 4 may still come" in note, note
        assert "its heartbeat 5 minute(s) old" in note and "step(s) 4 held back" in note, note
        # Nor is it "gone" for having written nothing since the upload that held its step (a step longer than the
        # time between two uploads): the heartbeat alone tells.
        run = open_run(root)
        plan = build_plan(run, PlanOptions())
        hold, held, _ = W._hold_open(plan, run, None)
        entry = S.Entry("id", "p", None, "offline", None)
        entry.held = held
        again, _, notes = W._hold_open(plan, run, entry)
        assert hold == again == 4 and not any("killed?" in n for n in notes), notes
    finally:
        w.close()


def test_a_stale_heartbeat_is_a_killed_writer_said_with_its_age(tmp_path: Path) -> None:
    root = tmp_path / "run"
    w = live(root)
    try:
        age(root, 20 * 60)
        result = dry(root, tmp_path)
        assert (result.first_step, result.last_step) == (0, 4), result.notes
        assert any("its heartbeat 20 minute(s) old" in n and "(killed?)" in n for n in result.notes), result.notes
    finally:
        w.close()


def test_a_heartbeat_ahead_of_this_hosts_clock_is_a_live_writer(tmp_path: Path) -> None:
    root = tmp_path / "run"
    w = live(root)
    try:
        age(root, 3600)  # the data files an hour old,
        age(root, -3600, only=".writer.p0.json")  # the heartbeat an hour ahead: a storage clock ahead of this one
        result = dry(root, tmp_path)
        assert result.last_step == 3, result.notes
        assert any("ahead of this host's clock" in n and HELD in n for n in result.notes), result.notes
    finally:
        w.close()


def test_a_writer_without_heartbeat_keeps_the_earlier_rules(tmp_path: Path) -> None:
    """A state file of an earlier runlog (no ``heartbeat_s``): its files more than two minutes old, it is sent."""
    root = tmp_path / "run"
    w = live(root)
    try:
        (root / ".writer.p0.json").write_text(json.dumps({"process": 0, "state": "open"}))
        age(root, 150)
        result = dry(root, tmp_path)
        assert result.last_step == 4, result.notes
        assert any("wrote nothing for" in n and "(killed?)" in n for n in result.notes), result.notes
    finally:
        w.close()


def test_samples_logged_every_few_steps_hold_from_the_step_after_the_last_samples_file(tmp_path: Path) -> None:
    """Samples at steps 0 and 2 (step 2's rows in the writer's memory, not on disk: it may still take rows),
    scalars at every step to 4: steps 1..4 are held (a samples step may come at any of them), step 0 is sent."""
    root = tmp_path / "run"
    w = runlog.RunWriter(root, name="sparse", durable=False)
    try:
        w.log_samples(0, rows(0))
        for step in range(5):
            if step == 2:
                w.log_samples(2, rows(2))  # seals step 0: its file is written
            w.log_scalars(step, {"loss": float(step)})
        assert _wait(lambda: len((root / "scalars.p0.jsonl").read_text().splitlines()) == 5)
        assert _wait(lambda: (root / "samples" / "train" / "step_00000000.p0.parquet").exists())
        result = dry(root, tmp_path)
        assert (result.first_step, result.last_step) == (0, 0), result.notes
        note = next(n for n in result.notes if HELD in n)
        assert "process 0 still writing" in note and "its samples of step 1 or later may still come" in note, note
        assert "step(s) 1, 2, 3, 4 held back" in note, note
    finally:
        w.close()
    result = dry(root, tmp_path)
    assert (result.first_step, result.last_step) == (0, 4) and not [n for n in result.notes if HELD in n]


def test_the_note_says_which_stream_holds(tmp_path: Path) -> None:
    """Every step's samples and scalars: the scalars of the last step may still come. One scalar at step 0 and
    samples to step 4: nothing orders the two streams (a trainer may log the training metrics of a step after
    the rollouts of later ones), so steps 0..4 are held, and the note says by what."""
    normal, once = tmp_path / "normal", tmp_path / "once"
    a = runlog.RunWriter(normal, durable=False)
    b = runlog.RunWriter(once, durable=False)
    try:
        for step in range(5):
            for w, run in ((a, normal), (b, once)):
                w.log_samples(step, rows(step))
                if run is normal or step == 0:
                    w.log_scalars(step, {"loss": float(step)})
        a.flush()
        b.flush()
        first = dry(normal, tmp_path)
        assert first.last_step == 3
        assert any(
            "process 0 still writing (its writer is open): its scalars of step 4 may still come" in n
            for n in first.notes
        ), first.notes
        second = dry(once, tmp_path)
        assert second.last_step is None and second.steps == 0
        assert any(
            "its scalars of step 0 or later may still come (its last scalars line is of step 0, its last "
            "samples file of step 4: nothing orders the two): step(s) 0, 1, 2, 3, 4 held back" in n
            for n in second.notes
        ), second.notes
    finally:
        a.close()
        b.close()


def _wait(check, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache"))
