"""Audit a17 (writer): a run folder renamed or moved mid-run names every step it lost.

The "not written" list of the writer's failure was built on the background thread when it found the folder gone,
from what it held at that moment: rows still queued behind the failing item, scalars lines, and calls made after
it were lost unnamed (the state file said "not written: train step 0" while samples and scalars of steps 0-2 were
all lost; or nothing named at all). It is now made again at ``close()`` from every logged step not on disk.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from runlog.writer import RunWriter, WriterError, WriterWarning, run_writer


def _rows(step: int, n: int = 4) -> dict[str, list[Any]]:
    return {"reward": [0.5] * n, "sample_id": [f"{step}-{i}" for i in range(n)]}


def _held(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The background thread held in its first samples item (its build), until ``go``: what is logged meanwhile
    is queued behind it, as in a trainer that logs faster than the writer writes."""
    started, go = threading.Event(), threading.Event()
    real = run_writer._convert.build_table

    def build_table(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_writer._convert, "build_table", build_table)
    return started, go


def _on_disk(folder: Path) -> tuple[list[int], list[int]]:
    """The steps of the train sample files and of the scalars lines in ``folder`` (the truth, read back)."""
    train = folder / "samples" / "train"
    samples = sorted(int(p.name[5:13]) for p in train.glob("step_*.parquet")) if train.is_dir() else []
    shard = folder / "scalars.p0.jsonl"
    lines = [json.loads(line)["step"] for line in shard.read_text().splitlines()] if shard.exists() else []
    return samples, sorted(set(lines))


def _not_written(error: str) -> str:
    found = re.search(r"not written: (.*?), and nothing logged", error)
    assert found, error
    return found.group(1)


def _moved_while_queued(
    w: RunWriter, run: Path, moved: Path, started: threading.Event, go: threading.Event
) -> pytest.ExceptionInfo[WriterError]:
    """The folder renamed while the writer's thread is held on its first item, then the writer closed: the
    ``WriterError`` close() raises (the warning said on the way is not what these tests read)."""
    assert started.wait(10)
    os.rename(run, moved)
    go.set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WriterWarning)
        with pytest.raises(WriterError) as err:
            w.close()
    return err


def test_a_moved_folder_names_every_step_queued_behind_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples and scalars of steps 0-2 logged with no flush, the folder renamed while they are still queued:
    all six are lost, and the state file in the moved folder (and close()) names all six."""
    started, go = _held(monkeypatch)
    run, moved = tmp_path / "run", tmp_path / "run-moved"
    w = RunWriter(run, durable=False)
    for step in range(3):
        w.log_samples(step, _rows(step))
        w.log_scalars(step, {"loss": 1.0})
    err = _moved_while_queued(w, run, moved, started, go)
    samples, lines = _on_disk(moved)
    assert (samples, lines) == ([], [])  # the truth: nothing of steps 0-2 reached the folder
    state = json.loads((moved / ".writer.p0.json").read_text())
    said = _not_written(state["error"])
    assert said == "train step 0, train step 1, train step 2 (their samples) and the scalars of steps 0-2"
    assert _not_written(str(err.value)) == said


def test_calls_after_the_move_was_found_are_named_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call refused by the writer's error (and its rows) is lost as well: the state file names it, though the
    warning given when the move was found could not."""
    run, moved = tmp_path / "run", tmp_path / "run-moved"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows(0))
    w.log_scalars(0, {"loss": 1.0})
    w.flush()
    os.rename(run, moved)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w.log_samples(1, _rows(1))  # held in memory: the move is found when it is sealed
        with pytest.raises(WriterError, match="renamed or moved"):
            w.flush()
        with pytest.raises(WriterError):
            w.log_scalars(1, {"loss": 0.5})
        with pytest.raises(WriterError):
            w.log_samples(2, _rows(2), split="eval")
        w.close()  # reported already
    warned = [str(c.message) for c in caught if issubclass(c.category, WriterWarning)]
    assert len(warned) == 1 and "not written: train step 1 (its samples), and" in warned[0]
    assert _on_disk(moved) == ([0], [0])
    state = json.loads((moved / ".writer.p0.json").read_text())
    assert _not_written(state["error"]) == "eval step 2, train step 1 (their samples) and the scalars of step 1"
    assert "moved_from" not in state  # something was lost: a failure, not a harmless move


def test_many_steps_lost_are_counted_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a dozen, the steps lost are counted (the rest of the message stays readable), never left out."""
    started, go = _held(monkeypatch)
    run, moved = tmp_path / "run", tmp_path / "run-moved"
    w = RunWriter(run, durable=False, max_queue=100)
    for step in range(30):
        w.log_samples(step, _rows(step, 1))
        w.log_scalars(step, {"loss": 1.0})
        w.log_scalars(step, {"kl": 0.1})
    err = _moved_while_queued(w, run, moved, started, go)
    assert _on_disk(moved) == ([], [])
    said = _not_written(str(err.value))
    named = ", ".join(f"train step {s}" for s in range(12))
    assert said == f"{named} and 18 more, 30 split steps in all (their samples) and the scalars of steps 0-29"


def test_a_move_with_nothing_lost_is_still_no_failure(tmp_path: Path) -> None:
    """Every logged step on disk before the move: closed without an error, as before (the bookkeeping of what is
    not written empties as the writes land)."""
    run, moved = tmp_path / "run", tmp_path / "run-moved"
    w = RunWriter(run, durable=False)
    for step in range(3):
        w.log_samples(step, _rows(step))
        w.log_scalars(step, {"loss": 1.0})
        w.log_scalars(step, {"kl": 0.1})
    w.flush()
    os.rename(run, moved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WriterWarning)  # the move is said; nothing is lost
        w.close()
    state = json.loads((moved / ".writer.p0.json").read_text())
    assert state["error"] is None and state["moved_from"] == str(run)
    assert w._unwritten_samples == set() and w._unwritten_lines == {}
