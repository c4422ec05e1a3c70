"""Step files encoded on several threads are published whole and in step order (issue 17's writer)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import RunWriter
from runlog.writer import WriterError, step_files
from runlog.writer.step_files import StepFiles


def _table(step: int, rows: int = 3) -> pa.Table:
    return pa.table({"step": [step] * rows, "completion": [f"text {step} {i}" for i in range(rows)]})


def test_a_slow_early_step_is_published_before_the_quick_later_ones(tmp_path, monkeypatch):
    real = step_files.encode
    published: list[str] = []
    seen_on_disk: list[list[str]] = []

    def encode(table, path, durable):
        if table.column("step")[0].as_py() == 0:
            time.sleep(0.3)  # step 0 takes longest
        return real(table, path, durable)

    def on_written(rows, size):
        seen_on_disk.append(sorted(p.name for p in tmp_path.glob("step_*.parquet")))
        published.append(seen_on_disk[-1][-1])

    monkeypatch.setattr(step_files, "encode", encode)
    files = StepFiles(threads=3, durable=False, on_written=on_written)
    for s in range(3):
        files.submit(tmp_path / f"step_{s}.parquet", _table(s))
    files.close()
    assert published == ["step_0.parquet", "step_1.parquet", "step_2.parquet"]
    assert seen_on_disk[0] == ["step_0.parquet"]  # 1 and 2 were done first, but waited for 0
    for s in range(3):
        assert pq.read_table(tmp_path / f"step_{s}.parquet").equals(_table(s))
    assert not list(tmp_path.glob(".*.tmp"))


def test_never_more_files_under_way_than_threads(tmp_path, monkeypatch):
    real = step_files.encode
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def encode(table, path, durable):
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return real(table, path, durable)

    monkeypatch.setattr(step_files, "encode", encode)
    files = StepFiles(threads=2, durable=False, on_written=lambda r, b: None)
    for s in range(8):
        files.submit(tmp_path / f"step_{s}.parquet", _table(s))
        assert len(list(tmp_path.glob(".*.tmp"))) <= 2
    files.close()
    assert running[1] == 2
    assert len(list(tmp_path.glob("step_*.parquet"))) == 8


def test_an_encoding_error_surfaces_and_leaves_no_partial_or_later_file(tmp_path, monkeypatch):
    real = step_files.encode

    def encode(table, path, durable):
        if table.column("step")[0].as_py() == 1:
            path.write_bytes(b"PAR1 half")
            raise OSError("No space left on device")
        time.sleep(0.05)
        return real(table, path, durable)

    monkeypatch.setattr(step_files, "encode", encode)
    files = StepFiles(threads=4, durable=False, on_written=lambda r, b: None)
    files.submit(tmp_path / "step_0.parquet", _table(0))
    files.submit(tmp_path / "step_1.parquet", _table(1))
    files.submit(tmp_path / "step_2.parquet", _table(2))
    with pytest.raises(OSError, match="No space left"):
        files.drain()
    files.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0.parquet"]  # no tmp, no step after the failure


def test_the_writer_reports_an_encoding_error_on_the_next_call(tmp_path, monkeypatch):
    def encode(table, path, durable):
        raise OSError("disk gone")

    monkeypatch.setattr(step_files, "encode", encode)
    w = RunWriter(tmp_path / "run")
    w.log_samples(0, {"reward": [1.0]})
    w.log_samples(1, {"reward": [2.0]})  # seals step 0
    with pytest.raises(WriterError, match="disk gone"):
        w.flush()
    with pytest.raises(WriterError):
        w.log_samples(2, {"reward": [3.0]})
    w.close()  # already reported: closes quietly
    assert not list(Path(tmp_path / "run").rglob("*.tmp"))


def test_a_sealed_step_is_published_while_the_trainer_is_quiet(tmp_path):
    """No flush, no later step: once the writer's queue is empty, the encoded file is renamed into place."""
    w = RunWriter(tmp_path / "run", durable=False)
    w.log_samples(0, {"reward": [1.0, 2.0]})
    w.log_samples(1, {"reward": [3.0]})  # seals step 0
    path = tmp_path / "run" / "samples" / "train" / "step_00000000.p0.parquet"
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists()
    assert pq.read_table(path).column("reward").to_pylist() == [1.0, 2.0]
    w.close()
    assert w.stats()["files_written"] == 2


def test_a_writer_never_closed_still_writes_every_step_at_exit(tmp_path):
    """The atexit hook closes a forgotten writer: its last steps are encoded then, after Python has shut
    its standard thread pools (which would refuse them)."""
    import subprocess
    import sys

    code = (
        "from runlog import RunWriter\n"
        f"w = RunWriter({str(tmp_path / 'run')!r})\n"
        "for s in range(6):\n"
        "    w.log_samples(s, {'reward': [float(s), 1.0]})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "failed" not in proc.stderr, proc.stderr
    files = sorted((tmp_path / "run" / "samples" / "train").glob("step_*.parquet"))
    assert [pq.read_table(f).column("reward").to_pylist()[0] for f in files] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert not list((tmp_path / "run").rglob("*.tmp"))
