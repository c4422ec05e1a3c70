"""Audit 16 of the writer: a run folder reached through a link, renamed, or removed while a ``RunWriter`` has it
open; and the heartbeat of its state file.

- A writer opened through ``runs/latest -> exp-1`` stopped with ``WriterError`` when a second launch re-pointed
  ``latest`` to its own folder, losing the later steps, and said that what it had written "went with" the folder
  although exp-1 was untouched (and, its state never closed, exp-1 then looked killed). The path is resolved when
  the writer opens: it writes exp-1 whatever the link names later.
- A run folder renamed under the writer was said "removed", its data gone with it: it is said renamed or moved
  (where to, where the system tells), and its state file there is closed at ``close()``.
- A live writer whose lock cannot be seen looked killed once its files were two minutes old: its state file is now
  touched every ``HEARTBEAT_S`` seconds while it is open, on a thread of its own, and says so (``heartbeat_s``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import pytest

from runlog import RunWriter
from runlog.writer import run_writer
from runlog.writer.errors import WriterError


def _rows() -> dict[str, list[float]]:
    return {"reward": [1.0, 0.0]}


def _state(folder: Path) -> dict:
    return json.loads((folder / ".writer.p0.json").read_text())


def _steps(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "samples" / "train").iterdir())


def test_a_writer_opened_through_a_link_goes_on_writing_its_folder_when_the_link_is_repointed(tmp_path: Path) -> None:
    (tmp_path / "exp-1").mkdir()
    (tmp_path / "exp-2").mkdir()
    (tmp_path / "latest").symlink_to("exp-1")
    w = RunWriter(tmp_path / "latest", name="exp1")
    w.log_samples(0, _rows())
    w.log_scalars(0, {"loss": 1.0})
    w.flush()
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").symlink_to("exp-2")  # a second launch takes 'latest' for its own folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn of: exp-1 is where it was
        for step in range(1, 4):
            w.log_samples(step, _rows())
            w.log_scalars(step, {"loss": 1.0})
        w.close()
    exp1 = tmp_path / "exp-1"
    assert _steps(exp1) == [f"step_{s:08d}.p0.parquet" for s in range(4)]
    assert len((exp1 / "scalars.p0.jsonl").read_text().splitlines()) == 4
    assert _state(exp1)["state"] == "closed" and _state(exp1)["error"] is None
    assert os.listdir(tmp_path / "exp-2") == []
    assert w.root == exp1.resolve()


def test_a_renamed_run_folder_is_said_as_moved_and_its_state_closed_there(tmp_path: Path) -> None:
    """Never "went with it": the data is in the renamed folder, which gets its closed state (not a killed run's)
    and keeps no lock file; the folder put at the old path is not written."""
    run, moved = tmp_path / "exp", tmp_path / "exp-old"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows())
    w.log_scalars(0, {"loss": 1.0})
    w.flush()
    run.rename(moved)
    run.mkdir()  # a relaunch makes the folder again
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        w.log_samples(1, _rows())
        with pytest.raises(WriterError) as err:
            w.flush()
        w.close()
    text = str(err.value)
    assert f"was renamed or moved (to {moved})" in text and "replaced by another folder" in text, text
    assert "went with it" not in text and "removed" not in text, text
    assert "what it had written is in that folder (1 step files, 1 scalar lines up to step 0" in text, text
    assert any(text in str(m.message) for m in said)
    state = _state(moved)
    assert state["state"] == "closed" and state["last_step"] == {"train": 0} and "renamed or moved" in state["error"]
    assert not (moved / ".writer.p0.lock").exists()
    assert os.listdir(run) == []


def test_a_removed_run_folder_is_said_as_removed(tmp_path: Path) -> None:
    run = tmp_path / "exp"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows())
    w.flush()
    shutil.rmtree(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w.log_samples(1, _rows())
        with pytest.raises(WriterError, match="was removed while the writer of process 0 had it open: what it had"):
            w.flush()
        w.close()
    assert not run.exists()


def _wait_for(check, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_the_state_file_is_touched_while_the_writer_is_open_and_not_after_it_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_writer, "HEARTBEAT_S", 0.05)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    state = run / ".writer.p0.json"
    assert _state(run) == {"process": 0, "state": "open", "heartbeat_s": 0.05}
    old = time.time() - 3600
    os.utime(state, (old, old))  # a training step that logs nothing for an hour: the thread goes on
    assert _wait_for(lambda: time.time() - state.stat().st_mtime < 60)
    w.log_samples(0, _rows())
    w.close()
    os.utime(state, (old, old))
    time.sleep(0.3)  # six beats, were it still beating
    assert state.stat().st_mtime == pytest.approx(old) and _state(run)["state"] == "closed"


def test_the_heartbeat_follows_a_renamed_folder_and_never_touches_what_is_at_its_old_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_writer, "HEARTBEAT_S", 0.05)
    run, moved = tmp_path / "exp", tmp_path / "exp-old"
    w = RunWriter(run, durable=False)
    run.rename(moved)
    run.mkdir()
    (run / ".writer.p0.json").write_text('{"process": 0, "state": "closed"}')  # another run's, at the old path
    old = time.time() - 3600
    for folder in (run, moved):
        os.utime(folder / ".writer.p0.json", (old, old))
    assert _wait_for(lambda: time.time() - (moved / ".writer.p0.json").stat().st_mtime < 60)
    assert (run / ".writer.p0.json").stat().st_mtime == pytest.approx(old)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w.close()  # nothing logged, nothing lost: no error (tests/test_review_audit16.py)
    assert _state(moved)["state"] == "closed" and _state(moved)["error"] is None
    assert _state(moved)["moved_from"] == str(run)
    assert json.loads((run / ".writer.p0.json").read_text()) == {"process": 0, "state": "closed"}
