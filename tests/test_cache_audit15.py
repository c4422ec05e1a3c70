"""Audit 15 of the incremental caches (the per-step partials, the probe cache, the kept answers):

- a corrupt segment never brings back the old numbers of a step saved again since (an older segment still holds
  them): a loaded segment is always filtered to the entries asked for, and the rebuild it announces is real (the
  segment and its entries are taken out of the cache, so the next command is quiet and right);
- on a file system of whole-second times, a file rewritten with its old mtime put back (``cp -p``, ``rsync -t``,
  ``tar x``) is recent by its ctime: it is not stored, since a second same-size rewrite in the same second would
  leave its whole stamp as it was.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from runlog import listing, open_run
from runlog.analysis import partial_cache as P
from runlog.analysis import partial_store as PS
from runlog.analysis.summarize import summarize
from runlog.cli import answers
from runlog.probe_cache import is_racy

OLD = 1_600_000_000  # files dated well in the past: not "just written" (those are never stored)
SECOND = 1_000_000_000


def _flink_step(path: Path, rng: random.Random, n: int) -> None:
    """One Flink step file of ``n`` samples (two roles), dated long ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {
        "env_name": ["math"] * n,
        "trajectory": [f"t{i}" for i in range(n)],
        "agent_trajectories": ["{}"] * n,
        "exception_info": [None] * n,
        "reward": pa.array([round(rng.random(), 6) for _ in range(n)], pa.float64()),
        "reward_metrics": [{"correct": rng.random()} for _ in range(n)],
        "reward_text_info": [None] * n,
        "unique_sample_id": [f"s{i}" for i in range(n)],
        "schema_version": [1] * n,
        "role_assignments": [None] * n,
        "solver_reward": pa.array([rng.random() for _ in range(n)], pa.float64()),
        "solver_kl": pa.array([rng.random() for _ in range(n)], pa.float64()),
    }
    pq.write_table(pa.table(cols), path)
    os.utime(path, (OLD, OLD))


def _step_file(root: Path, step: int) -> Path:
    return root / "flink_logs" / f"batch_debug_data_train_{step}.parquet"


def _partials(cache: Path) -> Path:
    [folder] = (cache / "partials").iterdir()
    return folder


def _index(folder: Path) -> dict:
    return json.loads((folder / "index.json").read_text())["entries"]


def _warm_equals_cold(root: Path) -> None:
    cold = summarize(open_run(root), ["step"], cache=False)
    warm = summarize(open_run(root), ["step"])
    assert_frame_equal(warm, cold, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def _a_step_saved_again_in_a_segment_of_its_own(root: Path, cache: Path) -> tuple[Path, str]:
    """Steps 0 and 1 stored together, then step 0 rewritten (other numbers) and stored again in a second
    segment: the first still holds step 0's old rows. The run's partials folder and the new segment's name."""
    rng = random.Random(5)
    for step in (0, 1):
        _flink_step(_step_file(root, step), rng, 8)
    _warm_equals_cold(root)
    _flink_step(_step_file(root, 0), random.Random(99), 6)
    _warm_equals_cold(root)
    folder = _partials(cache)
    entries = _index(folder)
    new = {e["seg"] for e in entries.values() if e["step"] == 0}
    old = {e["seg"] for e in entries.values() if e["step"] == 1}
    assert len(new) == 1 and not new & old  # the scenario: step 0's entry points to a segment of its own
    return folder, new.pop()


def test_a_corrupt_segment_never_brings_back_a_step_s_old_numbers_and_is_rebuilt(
    tmp_path, _probe_cache, monkeypatch, capsys
):
    """The auditor's sequence (repro_2): the segment of step 0's new numbers turns to garbage. The older
    segment, which still holds step 0's old rows, was read whole (the index had just shrunk), so the old numbers
    came back and counted as found; nothing was recomputed, so nothing was saved, and every later command said
    "rebuilding it" again and printed the same wrong numbers."""
    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    (folder / seg).write_bytes(b"garbage")
    monkeypatch.setattr(PS, "_said", set())  # this process said nothing yet (each file is said once a process)
    capsys.readouterr()
    _warm_equals_cold(root)
    err = capsys.readouterr().err
    assert err.count("unreadable") == 1 and "rebuilding it" in err
    # Rebuilt: the segment gone, no entry points to it, and the next command says nothing and reuses all.
    assert not (folder / seg).exists()
    assert all(e["seg"] != seg for e in _index(folder).values())
    monkeypatch.setattr(PS, "_said", set())
    _warm_equals_cold(root)
    assert "partial cache" not in capsys.readouterr().err
    parts = P.run_partials(open_run(root), "sample", store=PS.PartialStore.open(root))
    assert parts is not None and (parts.computed, parts.reused) == (0, 2)


def test_an_unreadable_segment_is_taken_out_of_the_cache_even_when_nothing_is_saved_after(
    tmp_path, _probe_cache, monkeypatch, capsys
):
    """The rebuild must not wait for a save: a command that stores nothing after it (a step whose file said a
    problem while read is never stored) would otherwise leave the segment in the index, and every later
    command would say it again."""
    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    (folder / seg).write_bytes(b"")  # truncated
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    store = PS.PartialStore.open(root)
    assert store is not None
    frame, found = store.load(sorted(store.index, key=lambda eid: store.index[eid]["step"]))  # as run_partials
    assert "unreadable" in capsys.readouterr().err
    # Only the entries the readable segment is asked for: step 1, never step 0's old rows that it also holds.
    assert frame is not None and sorted(frame["step"].unique().to_list()) == [1]
    assert [store.index[e]["step"] for e in found] == [1]
    assert not (folder / seg).exists()
    assert [e["step"] for e in _index(folder).values()] == [1]
    monkeypatch.setattr(PS, "_said", set())
    again = PS.PartialStore.open(root)
    assert again is not None
    again.load(list(again.index))
    assert capsys.readouterr().err == ""


def test_a_segment_is_filtered_to_the_entries_asked_for_by_identity(tmp_path, _probe_cache):
    """Asked for every entry the index holds of a segment, the segment is still filtered: it may hold rows of
    entries that point elsewhere now (a step saved again since)."""
    root = tmp_path / "run"
    folder, _ = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    store = PS.PartialStore.open(root)
    assert store is not None
    step1 = [eid for eid, e in store.index.items() if e["step"] == 1]
    store.index = {eid: store.index[eid] for eid in step1}  # as after a failed segment's entries were dropped
    frame, found = store.load(step1)
    assert frame is not None and frame["step"].unique().to_list() == [1]
    assert found == set(step1)


# ---------------------------------------------------------------------------------------------------------
# A file put back with its old mtime, on a file system of whole-second times
# ---------------------------------------------------------------------------------------------------------
def test_a_stamp_whose_whole_second_ctime_is_recent_is_racy():
    now = time.time_ns() // SECOND * SECOND
    assert is_racy((100, OLD * SECOND, now, 7))  # ``cp -p`` a moment ago, on NFSv3, SMB, FAT
    assert not is_racy((100, OLD * SECOND, OLD * SECOND, 7))
    # A finer ctime changes with any rewrite: the stamp itself tells a second version apart.
    assert not is_racy((100, OLD * SECOND, time.time_ns() // 1000 * 1000 + 1, 7))
    assert is_racy((100, time.time_ns(), OLD * SECOND, 7))  # mtime as before
    assert not is_racy((100, "etag", OLD))  # an object: its modified time as before


@pytest.fixture
def whole_seconds(monkeypatch):
    """The listing's stamps as a file system of whole-second times gives them (ext4 of small inodes, FAT,
    NFSv3 to such a server): without mounting one."""
    real = listing.local_stamp

    def coarse(st: os.stat_result) -> tuple:
        size, mtime, ctime, inode = real(st)
        return (size, mtime // SECOND * SECOND, ctime // SECOND * SECOND, inode)

    monkeypatch.setattr(listing, "local_stamp", coarse)


def test_a_file_put_back_with_its_old_mtime_is_not_stored_on_whole_second_times(tmp_path, _probe_cache, whole_seconds):
    """Written, then dated long ago (``os.utime``, as ``cp -p`` does): its ctime is now. Neither its partials,
    nor its probe, nor a kept answer is stored while that is recent, so a same-size rewrite in the same second
    (the same stamp) can never be answered with the numbers before it."""
    root = tmp_path / "run"
    _flink_step(_step_file(root, 0), random.Random(1), 8)
    run = open_run(root)
    [unit] = (P.units(run) or {}).values()
    assert unit.racy and unit.files_id is None
    parts = P.run_partials(run, "sample", store=PS.PartialStore.open(root))
    assert parts is not None and parts.computed == 1
    assert not (_probe_cache / "partials").exists() or not any((_probe_cache / "partials").iterdir())
    assert not list((_probe_cache / "probes").glob("*.json"))  # nothing cached: no probe file written
    assert answers.run_listing(root.resolve())[1]  # racy: no answer kept


def test_a_segment_the_system_would_not_read_now_is_kept(tmp_path, _probe_cache, monkeypatch, capsys):
    """A review: an error of the read itself (too many open files, an NFS I/O error) took a good segment out of
    the cache as if it were corrupt. Its steps are computed again now, said, and the segment stays for later."""
    import builtins
    import errno

    root = tmp_path / "run"
    folder, seg = _a_step_saved_again_in_a_segment_of_its_own(root, _probe_cache)
    real_open = builtins.open

    def busy(path, *args, **kwargs):
        if str(path).endswith(seg):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PS, "open", busy, raising=False)
    monkeypatch.setattr(PS, "_said", set())
    capsys.readouterr()
    store = PS.PartialStore.open(root)
    assert store is not None
    frame, found = store.load(sorted(store.index, key=lambda eid: store.index[eid]["step"]))
    err = capsys.readouterr().err
    assert "could not be read now (Too many open files); its steps are computed again" in err
    assert "unreadable" not in err
    assert [store.index[e]["step"] for e in found] == [1]  # step 0 is computed again
    assert (folder / seg).exists() and any(e["seg"] == seg for e in _index(folder).values())  # kept
    _warm_equals_cold(root)  # and the numbers are right
