"""Audit 14 of ``upload-wandb`` (a new user's walk): a Ctrl-C early in an upload, and an offline upload whose log
was deleted.

- A Ctrl-C 0.5-1 s into ``upload-wandb`` hung the process for good, 2 times in 40 on a loaded machine: the
  interrupt, raised by runlog's handler inside the import machinery's own code (a weakref callback of a module
  lock, between ``_imp.acquire_lock()`` and its ``try``), was only printed ("Exception ignored in") and left the
  import lock held by the main thread; the thread importing wandb then waited for it, and the main thread's
  ``join`` (no timeout) for that thread.
- After a lost Ctrl-C, the error it led to (a module a lazy loader left half-imported) ended the upload as an
  internal error (exit 3), not as the interrupt (130).
- An offline upload whose ``.wandb`` log was deleted said "up to date ... nothing uploaded", and no word that
  there was nothing left to ``wandb sync``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from runlog import open_run, process
from runlog.sinks import state as S
from runlog.sinks import wandb as W
from runlog.sinks.plan import PlanOptions

from conftest import SAMPLE_RUNS

DEBATE = SAMPLE_RUNS / "debate_grpo"

# A function that stands for the import machinery's own code (its module's name is the machinery's): it calls
# runlog's interrupt as a signal handler would, then goes on as the machinery does until it returns.
MACHINERY = """
def step(raise_outside_polars, frame_of, reached):
    raise_outside_polars(frame_of(), KeyboardInterrupt)
    reached.append(len("still inside the import machinery"))
    return reached
"""


def test_a_ctrl_c_inside_the_import_machinery_is_raised_once_it_returns() -> None:
    """An interrupt whose frame is the import machinery's own code is raised at the first call outside it (in
    its caller), never between two of the machinery's steps (where it left the import lock held for good)."""
    space: dict[str, Any] = {"__name__": "importlib._bootstrap"}
    exec(MACHINERY, space)  # noqa: S102  (a function that lives in the machinery's module, for the test)
    reached: list[int] = []
    before = sys.getprofile()
    try:
        with pytest.raises(KeyboardInterrupt):
            space["step"](process.raise_outside_polars, sys._getframe, reached)
            reached.append(-1)  # the caller's first call: the interrupt is raised here, before the append
    finally:
        sys.setprofile(before)
    assert reached == [len("still inside the import machinery")]


def test_a_ctrl_c_in_ordinary_code_is_raised_at_once() -> None:
    """Outside the machinery and polars' callbacks nothing changes: the interrupt is raised in the handler."""
    with pytest.raises(KeyboardInterrupt):
        process.raise_outside_polars(sys._getframe(), KeyboardInterrupt)
    assert not getattr(process, "_DEFERRED", [])


def test_a_lost_ctrl_c_ends_the_wait_for_the_wandb_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """The import thread never ends (its import lock held for good): a Ctrl-C the handler took, whose interrupt
    was lost, ends the wait with ``KeyboardInterrupt`` (exit 130 on the command line). The join had no timeout."""
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, daemon=True)
    stuck.start()
    monkeypatch.setattr(W, "_PREIMPORT", stuck)
    monkeypatch.setattr(process, "_INTERRUPTS", [1], raising=False)
    outcome: list[str] = []

    def wait() -> None:
        try:
            W._import_wandb()
            outcome.append("imported")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(10)
    release.set()  # lets a waiter of the old code go (it joined for ever)
    waiter.join(10)
    assert outcome[:1] == ["interrupted"]


def test_an_error_after_a_lost_ctrl_c_is_the_interrupt(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C whose interrupt was lost led to another error later (a module left half-imported): the upload
    ends as interrupted (130), not as an internal error (3)."""

    def broken(*_a: object, **_k: object) -> None:
        raise AttributeError("'LazyModule' object has no attribute 'histogram'")

    monkeypatch.setattr(W, "upload_wandb", broken)
    monkeypatch.setattr(process, "_INTERRUPTS", [1], raising=False)
    r = cli("upload-wandb", DEBATE, "--project", "p", "--dry-run")
    assert r.exit_code == 130, r.output
    assert "Error: interrupted" in r.output and "internal error" not in r.output


def test_no_interrupt_leaves_errors_as_they_are(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise AttributeError("boom")

    monkeypatch.setattr(W, "upload_wandb", broken)
    r = cli("upload-wandb", DEBATE, "--project", "p", "--dry-run")
    assert r.exit_code == 3 and "internal error: AttributeError: boom" in r.output


def _uploaded_offline(tmp_path: Path, session_file: Path) -> tuple[Path, Path]:
    """A state file saying that ``sample_runs/debate_grpo`` was uploaded whole, offline into ``tmp_path/wb``, by a
    session that wrote ``session_file`` (as a complete upload leaves it)."""
    run = open_run(DEBATE)
    wdir = tmp_path / "wb"
    state = tmp_path / "state.json"
    rid = "tiny-grpo-jax-seed1234"  # the manifest's run_id
    entry = S.Entry(rid, "p", None, "offline", str(wdir.resolve()))
    entry.last_step, entry.complete = 31, True
    entry.fingerprint, entry.fingerprint_step = S.fingerprint(run), 31
    entry.session_file, entry.session_after = str(session_file), None
    entry.options = S.options_record(PlanOptions())
    S.StateFile(state).put(S.destination("offline", None, "p", rid, str(wdir.resolve())), entry)
    return wdir, state


def test_an_offline_upload_whose_log_was_deleted_says_so(tmp_path: Path) -> None:
    """Up to date, nothing written again (after a sync, writing the run again at every upload would be wrong),
    but a note names the log that is gone and the way to write the steps again."""
    log = tmp_path / "wb" / "wandb" / "offline-run-1-x" / "run-tiny-grpo-jax-seed1234.wandb"
    wdir, state = _uploaded_offline(tmp_path, log)
    result = W.upload_wandb(DEBATE, project="p", mode="offline", wandb_dir=wdir, state_path=state)
    assert result.up_to_date and result.after == 31 and result.steps == 0
    gone = [n for n in result.notes if "is gone" in n]
    assert gone == [
        f"the offline log of the last upload, {log}, is gone: steps up to 31 reach W&B only if it was synced "
        "before (`wandb sync`); to write them again, upload with a new --state FILE"
    ]


def test_the_note_is_said_on_the_command_line(tmp_path: Path, cli) -> None:
    log = tmp_path / "gone" / "run-tiny-grpo-jax-seed1234.wandb"
    wdir, state = _uploaded_offline(tmp_path, log)
    r = cli("upload-wandb", DEBATE, "--project", "p", "--mode", "offline", "--wandb-dir", wdir, "--state", state)
    assert r.exit_code == 0, r.output
    assert "up to date: p/tiny-grpo-jax-seed1234 (offline) has every step up to 31" in r.stdout
    assert f"{log}, is gone" in r.output


def test_an_offline_log_still_there_needs_no_note(tmp_path: Path) -> None:
    log = tmp_path / "run-tiny-grpo-jax-seed1234.wandb"
    log.write_bytes(b"")
    wdir, state = _uploaded_offline(tmp_path, log)
    result = W.upload_wandb(DEBATE, project="p", mode="offline", wandb_dir=wdir, state_path=state)
    assert result.up_to_date and not [n for n in result.notes if "is gone" in n]
