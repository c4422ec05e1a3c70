"""Audit 22 of the caches (the kept answers, the per-step partials):

- a kept answer never hides what a run says of its writers: while any writer holds its lock on the run, no answer is
  kept nor looked up (killed, that writer is said to have stopped behind the others, and no file changes);
- a partials segment that still parses, every column there, one of another type (``reward_n`` as text) is corrupt:
  said once and rebuilt (every later summary failed with an internal error, exit 3);
- a folder in the place of the partials index is said once and rebuilt (nothing was said, and each command left one
  more segment that nothing pointed to); a save whose index cannot be written deletes the segments it wrote; a
  folder in the place of the index's lock file is said (it turned the cache off without a word);
- ``--no-cache``'s help names the caches its command keeps: kept answers only for summarize and diff.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis import partial_store as PS
from runlog.analysis.summarize import summarize
from test_cache_audit15 import _flink_step, _index, _partials, _step_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_runs" / "debate_grpo"
KILLED = "did not close its writer and stopped behind process 0"


def _aged(run: Path, seconds: float) -> None:
    """Every file of ``run`` dated ``seconds`` ago (past the writers' grace: what a run says of them is settled)."""
    then = time.time() - seconds
    for p in run.rglob("*"):
        os.utime(p, (then, then))


def _kept(cache: Path) -> list[Path]:
    where = cache / "answers"
    return sorted(where.glob("*.json")) if where.exists() else []


# -- kept answers and live writers ---------------------------------------------------------------------------------

_WRITERS = """
import sys, time
from runlog.writer import RunWriter
for p in (0, 1):
    w = RunWriter(sys.argv[1], name="r", roles=("solver", "judge"), process_index=p, durable=False)
    for s in range(6 if p == 0 else 3):
        rows = [dict(reward=0.1 * i, group_id=f"g{i // 2}", prompt="p", completion="c", solver_reward=0.1 * i,
                     judge_reward=0.2) for i in range(6)]
        w.log_samples(s, rows, split="train")
    w.flush()
    if p == 0:
        w.close()
print("ready", flush=True)
time.sleep(600)
"""


def test_a_kept_answer_never_hides_a_writer_killed_behind_the_others(tmp_path, cli, monkeypatch, _probe_cache):
    """The auditor's sequence: process 0 closed at step 5, process 1 stopped at step 2 with its writer open (its lock
    held). Asked then, summarize rightly says nothing of process 1 (still writing), and kept that answer; once process
    1 was killed, no file changed, and the kept answer was printed without the warning, for good."""
    monkeypatch.delenv("RUNLOG_ANSWERS", raising=False)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _WRITERS, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        _aged(run, 1000)
        for _ in range(2):
            alive = cli("summarize", run)
            assert alive.exit_code == 0, alive.output
            assert KILLED not in alive.stderr  # its writer is open: still writing
        assert _kept(_probe_cache) == []  # a run with a writer at work is always read
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = cli("summarize", run)
    monkeypatch.setenv("RUNLOG_ANSWERS", "off")
    truth = cli("summarize", run)
    assert KILLED in truth.stderr and "train steps 3-5 hold only the other processes' rows" in truth.stderr
    assert (killed.exit_code, killed.stdout, killed.stderr) == (truth.exit_code, truth.stdout, truth.stderr)


def test_a_kept_answer_is_not_printed_while_a_writer_holds_its_lock(tmp_path, cli, monkeypatch, _probe_cache):
    """An answer kept of a run whose process 1 was killed behind the others (it says so) is not printed once a writer
    of process 1 holds its lock again: that process is writing, not killed, and the run is read. Taking the lock
    changes no file, so the listing alone cannot tell."""
    monkeypatch.delenv("RUNLOG_ANSWERS", raising=False)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _WRITERS, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _aged(run, 1000)
    first = cli("summarize", run)
    assert KILLED in first.stderr
    assert len(_kept(_probe_cache)) == 1
    lock = run / ".writer.p1.lock"
    stamp = os.stat(lock)
    with open(lock, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # process 1's writer open again (a lock taken, no byte written)
        held = cli("summarize", run)
        monkeypatch.setenv("RUNLOG_ANSWERS", "off")
        truth = cli("summarize", run)
    assert os.stat(lock).st_mtime_ns == stamp.st_mtime_ns
    assert KILLED not in truth.stderr
    assert (held.exit_code, held.stdout, held.stderr) == (truth.exit_code, truth.stdout, truth.stderr)


# -- corrupt partials --------------------------------------------------------------------------------------------


def _flink_run(root: Path, steps: int = 3) -> dict[int, np.ndarray]:
    """A Flink run of ``steps`` steps (8 samples each), dated long ago; each step's rewards, read by pyarrow."""
    rng = random.Random(22)
    for step in range(steps):
        _flink_step(_step_file(root, step), rng, 8)
    return {s: pq.read_table(_step_file(root, s)).column("reward").to_numpy() for s in range(steps)}


def _right(root: Path, truth: dict[int, np.ndarray], **kwargs) -> None:
    """``summarize(run, ["step"])`` gives each step's count, mean and median of its rewards (numpy's)."""
    out = summarize(open_run(root), ["step"], **kwargs)
    assert out["step"].to_list() == sorted(truth)
    for row in out.iter_rows(named=True):
        values = truth[row["step"]]
        assert row["reward_count"] == len(values)
        assert row["reward_mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["reward_median"] == pytest.approx(np.median(values), rel=1e-12)


def _segments(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("seg-*.arrow")}


def _retyped(seg: Path, column: str, to: pa.DataType) -> None:
    """Rewrite the segment ``seg`` (Arrow IPC) with ``column`` cast to ``to``, every other column as it was."""
    table = ipc.open_file(pa.BufferReader(seg.read_bytes())).read_all()
    i = table.schema.get_field_index(column)
    table = table.set_column(i, column, table.column(column).cast(to))
    with pa.OSFile(str(seg), "wb") as sink, ipc.new_file(sink, table.schema) as w:
        w.write_table(table)


@pytest.mark.parametrize(
    ("column", "to"),
    [
        ("reward_n", pa.string()),
        ("reward_mean", pa.string()),
        ("reward_values", pa.list_(pa.string())),
        ("rows", pa.float64()),
    ],
)
def test_a_segment_column_of_another_type_is_said_once_and_rebuilt(
    tmp_path, _probe_cache, monkeypatch, capsys, column, to
):
    root = tmp_path / "run"
    truth = _flink_run(root)
    _right(root, truth)
    folder = _partials(_probe_cache)
    [seg] = _segments(folder)
    _retyped(folder / seg, column, to)
    monkeypatch.setattr(PS, "_said", set())  # a command of its own: nothing said yet
    capsys.readouterr()
    _right(root, truth)  # the numbers are right (they were an internal error, exit 3)
    err = capsys.readouterr().err
    assert err.count("partial cache") == 1, err
    assert f"{seg} is unreadable (column {column} holds " in err and "rebuilding it" in err
    assert seg not in _segments(folder)
    assert all(e["seg"] != seg for e in _index(folder).values())
    # Rebuilt: the next command is quiet and right.
    monkeypatch.setattr(PS, "_said", set())
    _right(root, truth)
    assert "partial cache" not in capsys.readouterr().err


def test_a_folder_in_place_of_the_index_is_said_once_and_rebuilt(tmp_path, _probe_cache, monkeypatch, capsys):
    root = tmp_path / "run"
    truth = _flink_run(root)
    _right(root, truth)
    folder = _partials(_probe_cache)
    (folder / "index.json").unlink()
    (folder / "index.json").mkdir()
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    _right(root, truth)
    err = capsys.readouterr().err
    assert err.count("partial cache") == 1, err
    assert "index.json is unreadable (Is a directory); rebuilding it" in err
    index = json.loads((folder / "index.json").read_text())["entries"]
    assert sorted(e["step"] for e in index.values()) == sorted(truth)
    assert _segments(folder) == {e["seg"] for e in index.values()}  # no segment that nothing points to
    for _ in range(2):
        monkeypatch.setattr(PS, "_said", set())
        _right(root, truth)
        assert "partial cache" not in capsys.readouterr().err
        assert _segments(folder) == {e["seg"] for e in _index(folder).values()}


def test_a_save_whose_index_cannot_be_written_leaves_no_segment(tmp_path, _probe_cache, monkeypatch, capsys):
    """Where the folder in the index's place cannot be deleted either, each command said nothing and left one more
    segment that no index pointed to (2, 3, 4, 5: garbage is collected only after an index is written). The segment
    a save wrote is deleted again, and the line says the cache could not be rebuilt."""
    root = tmp_path / "run"
    truth = _flink_run(root)
    _right(root, truth)
    folder = _partials(_probe_cache)
    before = _segments(folder)
    (folder / "index.json").unlink()
    (folder / "index.json").mkdir()
    (folder / "index.json" / "kept").write_text("x")

    def refuse(path, *args, **kwargs):  # noqa: ANN001, ANN202
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    for _ in range(3):
        monkeypatch.setattr(PS, "_said", set())
        capsys.readouterr()
        _right(root, truth)
        assert _segments(folder) == before  # none left behind
        err = capsys.readouterr().err
        assert "index.json is unreadable (Is a directory)" in err
        assert "could not be rebuilt" in err


def test_a_folder_in_place_of_the_index_lock_is_said(tmp_path, _probe_cache, monkeypatch, capsys):
    """No save can take the lock: the cache stores nothing more, said by each command that would store (it was
    silent), and the numbers stay right."""
    root = tmp_path / "run"
    truth = _flink_run(root, steps=2)
    _right(root, truth)
    folder = _partials(_probe_cache)
    (folder / "index.lock").unlink()
    (folder / "index.lock").mkdir()
    truth.update(_flink_run(root, steps=3))  # one more step: something to store
    for _ in range(2):
        monkeypatch.setattr(PS, "_said", set())
        capsys.readouterr()
        _right(root, truth)
        err = capsys.readouterr().err
        assert err.count("partial cache") == 1, err
        assert "index.lock is not a file; nothing is stored in this cache until it is removed" in err
        assert sorted(e["step"] for e in _index(folder).values()) == [0, 1]
    # Removed, the cache stores again.
    shutil.rmtree(folder / "index.lock")
    monkeypatch.setattr(PS, "_said", set())
    _right(root, truth)
    assert "partial cache" not in capsys.readouterr().err
    assert sorted(e["step"] for e in _index(folder).values()) == [0, 1, 2]


# -- --no-cache's help ---------------------------------------------------------------------------------------------


def _no_cache_help(path: tuple[str, ...]) -> str:
    from typer.main import get_command

    from runlog.cli.app import app

    cmd = get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    [param] = [p for p in cmd.params if "--no-cache" in getattr(p, "opts", ())]
    return param.help or ""


@pytest.mark.parametrize(
    "args",
    [
        ("summarize", "{run}"),
        ("diff", "{run}", "{run}"),
        ("doctor", "{run}"),
        ("inspect", "{run}"),
        ("metrics", "diversity", "{run}"),
        ("metrics", "format", "{run}"),
        ("render-trajectory", "{run}"),
        ("watch", "{run}", "--once"),
    ],
)
def test_no_cache_help_names_the_caches_its_command_keeps(tmp_path, cli, monkeypatch, args):
    """The truth is what the command leaves in an empty cache folder, answers on, of a run dated long ago."""
    monkeypatch.delenv("RUNLOG_ANSWERS", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(cache))
    run = tmp_path / "run"
    shutil.copytree(SAMPLE, run)
    _aged(run, 1000)
    result = cli(*[a.format(run=run) for a in args])
    assert result.exit_code in (0, 1), result.output
    kept = {p.name for p in cache.iterdir()}
    assert "probes" in kept
    path = tuple(a for a in args if not a.startswith(("{", "-")))
    text = _no_cache_help(path)
    assert "no probe cache" in text
    assert ("kept answer" in text) == ("answers" in kept), (path, kept, text)
    assert ("stored partials" in text) == ("partials" in kept), (path, kept, text)
