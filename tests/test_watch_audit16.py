"""Audit 16 of the live reads (``watch``, ``doctor --follow``): a file whose modification time is in the future
(a file server whose clock is ahead; a run restored from a machine whose clock was) counted as "modified within
the last minute" for ever, so every check of a large run copied all its files into memory. It is now held only
until this process has seen that version of it unchanged for ``STILL_CHANGING_S`` by its own clock; a file
rewritten meanwhile (a server ahead, writing it now) is held again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest

import runlog._lazy as lazy
from runlog.analysis.doctor import DoctorConfig
from runlog.formats import common
from runlog.formats.base import FileInfo
from runlog.run import open_run
from runlog.watch import DoctorWatch
from test_watch_audit15 import STEP3, _run

HOUR = 3600


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What polars was asked to scan: a path (memory-mapped) or bytes (a copy), one entry per source."""
    seen: list[object] = []
    real = pl.scan_parquet

    def spy(source, *a, **kw):  # noqa: ANN001, ANN202
        seen.extend(source if isinstance(source, list) else [source])
        return real(source, *a, **kw)

    monkeypatch.setattr(pl, "scan_parquet", spy)
    monkeypatch.setattr(lazy.pl, "scan_parquet", spy)
    return seen


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Moves this process's monotonic clock forward by so many seconds (nothing waits)."""
    real = time.monotonic
    ahead = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: real() + ahead[0])

    def move(seconds: float) -> None:
        ahead[0] += seconds

    return move


def _dated(path: Path, seconds_ahead: float) -> None:
    t = time.time_ns() + int(seconds_ahead * 1e9)
    os.utime(path, ns=(t, t))


def _mapped(info: FileInfo, scanned: list[object]) -> bool:
    """Whether a live scan of ``info`` reaches polars as its path (mapped), not as its bytes."""
    scanned.clear()
    with common.live_reads():
        lf = common.scan_parquet([info])
    assert lf.collect().height == 8
    [source] = scanned
    return isinstance(source, (str, os.PathLike))


def test_a_file_dated_in_the_future_is_mapped_once_seen_unchanged_for_a_minute(tmp_path, scanned, later) -> None:
    root = _run(tmp_path / "run")
    _dated(root / STEP3, HOUR)
    info = next(f for f in open_run(root).files if f.path == STEP3)
    assert not _mapped(info, scanned)  # first seen: it may be a server ahead writing it now
    later(common.STILL_CHANGING_S / 2)
    assert not _mapped(info, scanned)
    later(common.STILL_CHANGING_S / 2)
    assert _mapped(info, scanned)  # unchanged for a minute by this process's clock: mapped from now on
    assert _mapped(info, scanned)


def test_a_file_dated_in_the_future_that_is_rewritten_is_held_again(tmp_path, scanned, later) -> None:
    """A server ahead writing the file: each new version is seen anew, and held until it too is a minute old."""
    root = _run(tmp_path / "run")
    _dated(root / STEP3, HOUR)
    info = next(f for f in open_run(root).files if f.path == STEP3)
    assert not _mapped(info, scanned)
    later(common.STILL_CHANGING_S)
    (root / STEP3).write_bytes((root / STEP3).read_bytes())  # rewritten, by the server's clock an hour ahead
    _dated(root / STEP3, HOUR + 1)
    info = next(f for f in open_run(root).files if f.path == STEP3)
    assert not _mapped(info, scanned)
    later(common.STILL_CHANGING_S)
    assert _mapped(info, scanned)


def test_files_dated_in_the_past_are_judged_by_their_time_as_before(tmp_path, scanned) -> None:
    root = _run(tmp_path / "run")
    _dated(root / STEP3, -2 * common.STILL_CHANGING_S)
    info = next(f for f in open_run(root).files if f.path == STEP3)
    assert _mapped(info, scanned)
    _dated(root / STEP3, -1)
    info = next(f for f in open_run(root).files if f.path == STEP3)
    assert not _mapped(info, scanned)


def test_doctor_follow_stops_copying_a_run_restored_with_future_times(tmp_path, scanned, later) -> None:
    """The auditor's case: a run restored from a machine whose clock was an hour ahead, followed by doctor.
    Its first checks copy the files; once they are seen unchanged for a minute, its checks map them."""
    root = _run(tmp_path / "run")
    for f in (root / "samples" / "train").iterdir():
        _dated(f, HOUR)
    doctor = DoctorWatch(root, DoctorConfig(), min_gap=0, clock=lambda: time.monotonic())  # the clock moved
    doctor.changed()
    doctor.poll()
    assert doctor.error is None
    assert scanned and not [s for s in scanned if isinstance(s, (str, os.PathLike))]
    later(common.STILL_CHANGING_S)
    scanned.clear()
    doctor.changed()
    doctor.poll()
    assert doctor.error is None
    assert scanned and all(isinstance(s, (str, os.PathLike)) for s in scanned)
