"""Audit a15 (writer): a run folder removed or replaced under a live ``RunWriter``.

The writer silently made the folder again (``samples/`` only, with the later steps, and a closed state file),
never rewrote ``run.json``, and appended the scalars to the removed shard, where they were lost: no error, no
warning. It now stops: a ``WriterWarning`` says once what went with the folder and what is not written, the next
call raises ``WriterError``, and nothing is written at that path again (docs/writer.md, The queue, errors and
closing).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runlog.writer import RunWriter, WriterError, WriterWarning, step_files


@contextmanager
def _writer_warnings() -> Iterator[list[str]]:
    """The ``WriterWarning`` messages issued in the block (the background thread's included)."""
    out: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield out
    out += [str(w.message) for w in caught if issubclass(w.category, WriterWarning)]


def _rows(n: int = 4) -> dict[str, list[float]]:
    return {"reward": [0.5] * n}


def _started(run: Path) -> RunWriter:
    """A writer that has written steps 0-2 (samples and scalars), all on disk."""
    w = RunWriter(run, roles=["solver"], durable=False)
    for step in range(3):
        w.log_samples(step, _rows())
        w.log_scalars(step, {"loss": 1.0})
    w.flush()
    return w


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_removed_run_folder_stops_the_writer_with_a_warning_and_an_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    w = _started(run)
    shutil.rmtree(run)
    with _writer_warnings() as said:
        w.log_samples(3, _rows())
        w.log_samples(3, _rows(2), split="eval")
        w.log_scalars(3, {"loss": 0.5})
        with pytest.raises(WriterError, match="was removed") as err:
            w.flush()
        with pytest.raises(WriterError, match="was removed"):  # every later call: it has stopped
            w.log_scalars(4, {"loss": 0.25})
        w.close()  # reported already: close does not raise it again
    message = str(err.value)
    assert str(run) in message
    assert "3 step files, 3 scalar lines up to step 2" in message  # what went with the folder
    assert "not written: eval step 3, train step 3" in message
    assert [m for m in said if str(run) in m] == [f"runlog: {message}"]  # warned once, the same words
    assert not run.exists()  # not made again: no samples/ with the later steps only, no state file
    assert w.stats()["scalar_lines"] == 3  # the line of step 3 was not written into the removed shard


def test_scalars_alone_after_the_removal_are_not_lost_unsaid(tmp_path: Path) -> None:
    """The scalars shard stays open: its lines went to the removed file without a word."""
    run = tmp_path / "run"
    w = _started(run)
    shutil.rmtree(run)
    with _writer_warnings():
        w.log_scalars(3, {"loss": 0.5})
        with pytest.raises(WriterError, match="scalar lines"):
            w.flush()
        w.close()
    assert w.stats()["scalar_lines"] == 3


def test_close_after_the_removal_raises_and_makes_nothing_again(tmp_path: Path) -> None:
    run = tmp_path / "run"
    w = _started(run)
    w.log_samples(3, _rows())  # pending: sealed by close()
    shutil.rmtree(run)
    with _writer_warnings() as said, pytest.raises(WriterError, match="not written: train step 3"):
        w.close()
    assert said
    assert not run.exists()


def test_a_folder_put_in_its_place_is_not_written_into(tmp_path: Path) -> None:
    """Removed and made again (by a relaunched script, say): another run's folder, or none; never this one."""
    run = tmp_path / "run"
    w = _started(run)
    shutil.rmtree(run)
    run.mkdir()
    (run / "other.txt").write_text("another run")
    with _writer_warnings() as said:
        w.log_samples(3, _rows())
        w.log_samples(4, _rows())  # seals step 3
        w.log_scalars(4, {"loss": 0.5})
        with pytest.raises(WriterError, match="replaced by another folder"):
            w.flush()
        w.close()
    assert any("replaced by another folder" in m for m in said)
    assert _files(run) == ["other.txt"]


def test_a_step_being_encoded_when_the_folder_goes_is_said_and_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step file's write fails (its folder is gone): said as the removal, with the step not written, and
    nothing salvaged into a folder made again."""
    started, go = threading.Event(), threading.Event()
    real = step_files.encode

    def encode(table, path, durable):  # type: ignore[no-untyped-def]
        started.set()
        go.wait(10)
        return real(table, path, durable)

    monkeypatch.setattr(step_files, "encode", encode)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows())
    w.log_samples(1, _rows())  # seals step 0: its encode waits
    assert started.wait(10)
    shutil.rmtree(run)
    with _writer_warnings() as said:
        go.set()
        deadline = time.monotonic() + 10  # the failed encode is found by the background thread, not by flush
        while w.stats()["error"] is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(WriterError, match="was removed") as err:
            w.flush()
        w.close()
    assert "not written: train step 0, train step 1" in str(err.value)
    assert isinstance(err.value.__cause__.__cause__, FileNotFoundError)  # the write that failed
    assert len(said) == 1
    assert not run.exists()


def test_a_relative_run_folder_is_the_same_folder_each_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check compares the folder, not the path's spelling: a relative path is no removal."""
    monkeypatch.chdir(tmp_path)
    with _writer_warnings() as said:
        w = RunWriter("run", durable=False)
        for step in range(3):
            w.log_samples(step, _rows())
            w.log_scalars(step, {"loss": 1.0})
        w.flush()
        w.close()
    assert said == []
    assert "samples/train/step_00000002.p0.parquet" in _files(tmp_path / "run")
    assert os.path.exists(tmp_path / "run" / "run.json")


def test_a_working_directory_changed_mid_run_keeps_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative run path is taken as absolute when the writer opens: a trainer that changes its working directory
    mid-run (a launcher, a hydra job) goes on writing its run, neither stopped nor writing elsewhere."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    with _writer_warnings() as said:
        w = RunWriter("run", durable=False)
        w.log_samples(0, _rows())
        w.log_scalars(0, {"loss": 1.0})
        monkeypatch.chdir(tmp_path / "b")
        for step in (1, 2):
            w.log_samples(step, _rows())
            w.log_scalars(step, {"loss": 1.0})
        w.close()
    assert said == []
    assert "samples/train/step_00000002.p0.parquet" in _files(tmp_path / "a" / "run")
    assert not (tmp_path / "b" / "run").exists()
