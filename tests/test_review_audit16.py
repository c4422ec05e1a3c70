"""Review 1 of the audit-16 writer changes: regressions found in the session's own commits.

- ``upload-wandb`` on a live run with two splits sent a step whose samples could still come from the other split:
  the hold started after the highest last samples file over all splits, but a written samples file is sealed
  only within its split (train files up to 5, eval of step 5 still running: step 5 was sent, the eval rows of
  step 5 never reached W&B). It holds from the lowest (last file + 1) over the process's splits, named.
- ``watch`` / ``doctor --follow --idle-exit`` never stopped for a trainer alive but hung: the heartbeat's touch
  of its state file counted as a change of the run. A state file counts by what it says.
- A run folder renamed after everything was flushed: ``close()`` raised and the moved folder's state recorded an
  ``error``, so every command said ``writer_failed`` (exit 1) though every step was on disk. With nothing lost the
  state is closed without an error (``moved_from`` says the move) and ``close()`` does not raise.
- A link loop as the run path raised a bare ``RuntimeError`` from ``Path.resolve()``: a ``UsageError`` again.

Expected values come from what each test wrote.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog.errors import UsageError
from runlog.sinks import wandb as W
from runlog.watch import Backoff, LiveRun, Watcher
from runlog.watch.poll import run_lister
from runlog.writer.errors import WriterError

HELD = "held back"


def rows(step: int, n: int = 2) -> list[dict[str, Any]]:
    return [{"sample_id": f"s{step}-{i}", "reward": float(i)} for i in range(n)]


def _state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / ".writer.p0.json").read_text())


# -- upload-wandb: the hold over several splits -------------------------------------------------------------------
def test_a_live_upload_holds_from_the_split_whose_last_samples_file_is_lowest(tmp_path: Path) -> None:
    """Train samples 0..5 on disk, eval samples of step 0 only, scalars to step 6: eval may still log any step from
    1 (its step 5 is still running, and the writer takes it: order is kept per split), so only step 0 is sent, and
    the note says the eval split holds. Once eval's step 5 is written (and flushed), the hold moves past it."""
    root = tmp_path / "run"
    w = runlog.RunWriter(root, name="live", durable=False)
    try:
        for step in range(6):
            w.log_samples(step, rows(step))
            if step == 0:
                w.log_samples(0, rows(0), split="eval")
            w.log_scalars(step, {"loss": float(step)})
        w.log_scalars(6, {"loss": 6.0})
        w.flush()
        first = W.upload_wandb(root, project="p", dry_run=True, state_path=tmp_path / "state.json")
        assert (first.first_step, first.last_step) == (0, 0), first.notes
        note = next(n for n in first.notes if HELD in n)
        assert "its eval samples of step 1 or later may still come (its last eval samples file is step 0's)" in note
        assert "step(s) 1, 2, 3, 4, 5, 6 held back" in note, note
        w.log_samples(5, rows(5, 3), split="eval")  # accepted: the eval split never wrote step 5
        w.flush()
        second = W.upload_wandb(root, project="p", dry_run=True, state_path=tmp_path / "state2.json")
        assert (second.first_step, second.last_step) == (0, 5), second.notes
        note = next(n for n in second.notes if HELD in n)
        assert "its scalars and eval, train samples of step 6 may still come: step(s) 6 held back" in note, note
    finally:
        w.close()


def test_one_split_holds_from_the_step_after_its_last_samples_file_as_before(tmp_path: Path) -> None:
    """A process writing one split is unchanged: the note names no split."""
    root = tmp_path / "run"
    w = runlog.RunWriter(root, name="one", durable=False)
    try:
        for step in range(3):
            w.log_samples(step, rows(step))
            w.log_scalars(step, {"loss": float(step)})
        w.log_scalars(3, {"loss": 3.0})
        w.log_scalars(4, {"loss": 4.0})
        w.flush()
        result = W.upload_wandb(root, project="p", dry_run=True, state_path=tmp_path / "state.json")
        assert (result.first_step, result.last_step) == (0, 2), result.notes
        note = next(n for n in result.notes if HELD in n)
        assert "its samples of step 3 or later may still come (its last samples file is step 2's)" in note, note
    finally:
        w.close()


# -- watch: a heartbeat is no change --------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_touch_is_no_change_so_a_hung_trainer_goes_idle(tmp_path: Path) -> None:
    """A writer alive and hung: its state file touched (the heartbeat), nothing else written. The touch changes
    no state, so ``--idle-exit`` comes; closing the writer (a state that says something new) is a change."""
    root = tmp_path / "run"
    w = runlog.RunWriter(root, name="hung", durable=False)
    try:
        for step in range(2):
            w.log_samples(step, rows(step))
            w.log_scalars(step, {"loss": float(step)})
        w.flush()
        clock = _Clock()
        watcher = Watcher(LiveRun(root), run_lister(root), Backoff(1.0, 1.0), idle_exit=60.0, clock=clock)
        watcher.poll()
        assert watcher.live.changed and watcher.ended() is None
        state = root / ".writer.p0.json"
        for beat in range(1, 4):  # three heartbeats, 30 s apart, each a new modification time
            clock.now += 30
            t = time.time() + beat * 30
            os.utime(state, (t, t))
            watcher.poll()
            assert not watcher.live.changed, f"heartbeat {beat} counted as a change"
        assert watcher.ended() == "idle"
    finally:
        w.close()
    clock.now += 1
    watcher.poll()
    assert watcher.live.changed  # the closed state says something new


# -- a run folder moved with nothing lost ----------------------------------------------------------------------------
def _moved_run(tmp_path: Path, *, lose: bool) -> tuple[Path, list[str], BaseException | None]:
    """Three steps written and flushed, the folder renamed, then (``lose``) one more step logged, then close."""
    run, moved = tmp_path / "exp", tmp_path / "exp-archived"
    w = runlog.RunWriter(run, name="done", durable=False)
    for step in range(3):
        w.log_samples(step, rows(step))
        w.log_scalars(step, {"loss": float(step)})
    w.flush()
    run.rename(moved)
    raised: BaseException | None = None
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        try:
            if lose:
                w.log_samples(3, rows(3))
                w.log_scalars(3, {"loss": 3.0})
            w.close()
        except WriterError as exc:
            raised = exc
    return moved, [str(m.message) for m in said], raised


def test_a_folder_moved_after_everything_was_written_is_closed_without_an_error(tmp_path: Path, cli) -> None:
    moved, said, raised = _moved_run(tmp_path, lose=False)
    assert raised is None
    assert any(f"was renamed or moved (to {moved})" in m for m in said), said
    state = _state(moved)
    assert (state["state"], state["error"], state["last_step"]) == ("closed", None, {"train": 2}), state
    assert state["moved_from"] == str(tmp_path / "exp")
    for command in ("inspect", "summarize"):
        r = cli(command, moved)
        assert r.exit_code == 0, (command, r.output)
        assert "writer_failed" not in r.output and "failed" not in r.output, (command, r.output)


def test_a_folder_moved_with_a_step_not_written_is_still_a_failed_writer(tmp_path: Path, cli) -> None:
    moved, _, raised = _moved_run(tmp_path, lose=True)
    assert isinstance(raised, WriterError) and "renamed or moved" in str(raised)
    state = _state(moved)
    assert state["state"] == "closed" and "RunFolderGoneError" in state["error"] and "moved_from" not in state
    for command in ("inspect", "summarize"):
        r = cli(command, moved)
        assert r.exit_code == 1, (command, r.output)
        assert "the writer of process 0 failed" in r.output, (command, r.output)


# -- a link loop ---------------------------------------------------------------------------------------------------
def test_a_link_loop_as_the_run_path_is_a_usage_error_of_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(UsageError) as err:
        runlog.RunWriter(tmp_path / "a")
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'a'}: the run folder's path cannot be resolved (") and "\n" not in text
