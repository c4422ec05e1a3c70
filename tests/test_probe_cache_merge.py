"""The probe cache is shared by every command on a run: a fleet's chunks of one run (each opening some of its
files, possibly at the same time) add to it instead of evicting each other, and a change to the probing code
starts it afresh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runlog import open_run
from runlog.fleet import summarize_fleet
from runlog.probe_cache import ProbeCache

from conftest import make_flink_run

SRC = Path(__file__).resolve().parents[1] / "src"


def _aged_run(path: Path, steps: int = 6) -> Path:
    root = make_flink_run(path, steps=range(steps))
    past = time.time() - 60
    for p in root.rglob("*"):
        os.utime(p, (past, past))
    return root


def _rel(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


def test_chunks_of_one_run_keep_each_others_entries(tmp_path, _probe_cache):
    root = _aged_run(tmp_path / "run")
    files = _rel(root)
    open_run(root, only=files[:3])
    open_run(root, only=files[3:])
    cache = ProbeCache.open(root)
    assert cache is not None and sorted(cache.old) == files


def test_concurrent_saves_merge(tmp_path, _probe_cache):
    root = _aged_run(tmp_path / "run", steps=4)
    files = _rel(root)
    # Two chunks open the cache before either has saved (two workers at once); both saves must count.
    first, second = ProbeCache.open(root), ProbeCache.open(root)
    assert first is not None and second is not None
    whole = open_run(root, cache=False)
    by_rel = {f.path: f for f in whole.files}
    from runlog.formats import get_layout
    from runlog.formats.base import Candidate

    for cache, chosen in ((first, files[:2]), (second, files[2:])):
        for rel in chosen:
            st = (root / rel).stat()
            cand = Candidate(
                root,
                root / rel,
                st.st_size,
                rel,
                str(root / rel),
                (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino),
            )
            cache.store(cand, get_layout("flink"), by_rel[rel], [], [])
        cache.save(set(files))
    merged = ProbeCache.open(root)
    assert merged is not None and sorted(merged.old) == files


def test_a_fleet_split_into_chunks_leaves_every_probe_cached(tmp_path, _probe_cache):
    root = _aged_run(tmp_path / "big", steps=8)
    result = summarize_fleet([str(root)], ["run", "role"], task_bytes=20_000)
    assert result.units > 2  # the run was cut into chunks of steps
    cache = ProbeCache.open(root)
    assert cache is not None and sorted(cache.old) == _rel(root)


def test_a_change_to_the_probing_code_starts_afresh(tmp_path, _probe_cache):
    root = _aged_run(tmp_path / "run", steps=3)
    open_run(root)
    assert ProbeCache.open(root).old  # cached by this code
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    layout = copy / "runlog" / "formats" / "flink.py"
    layout.write_text(layout.read_text() + "\n# a change to how Flink files are probed\n")
    code = (
        f"import sys; from runlog.probe_cache import ProbeCache; c = ProbeCache.open({str(root)!r}); print(len(c.old))"
    )
    env = {**os.environ, "PYTHONPATH": str(copy), "RUNLOG_CACHE_DIR": str(_probe_cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr  # the entries of the other code are not used
    same = subprocess.run(
        [sys.executable, "-c", code], env={**env, "PYTHONPATH": str(SRC)}, capture_output=True, text=True, check=True
    )
    assert same.stdout.strip() == "3"
