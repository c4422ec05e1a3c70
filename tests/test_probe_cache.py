"""The probe cache: reused while a file is unchanged, never trusted otherwise, never in the way."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from runlog import open_run
from runlog.analysis.summarize import summarize
from runlog.probe_cache import ProbeCache

from conftest import flink_table, make_flink_run


def _age(root: Path, seconds: float = 60.0) -> None:
    """Make every file look written a while ago (files changed in the last seconds are never cached)."""
    past = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (past, past))


def _cache_files(folder: Path) -> list[Path]:
    return sorted((folder / "probes").glob("*.json"))


def _facts(run) -> list[tuple]:
    return [
        (f.path, f.layout, f.rows, f.step, f.split, f.schema_version, f.readable, dict(f.columns), f.null_counts)
        for f in run.files
    ]


def test_second_open_reuses_probes_with_the_same_files_problems_and_summary(tmp_path, _probe_cache):
    root = make_flink_run(tmp_path / "run", steps=range(6))
    (root / "flink_logs" / "batch_debug_data_train_9.parquet").write_bytes(b"PAR1 truncated")
    _age(root)
    first = open_run(root)
    assert len(_cache_files(_probe_cache)) == 1
    second = open_run(root)
    cache = ProbeCache.open(root)
    assert cache is not None and len(cache.old) == 7  # six good files and the corrupt one
    assert _facts(second) == _facts(first)
    assert [p.as_dict() for p in second.problems] == [p.as_dict() for p in first.problems]
    assert any(p.kind == "unreadable" for p in second.problems)
    assert summarize(second, ["role", "step"]).equals(summarize(first, ["role", "step"]))


def test_a_rewritten_file_is_probed_again(tmp_path):
    root = make_flink_run(tmp_path / "run", steps=range(3))
    _age(root)
    assert open_run(root).files[0].rows == 4
    path = root / "flink_logs" / "batch_debug_data_train_0.parquet"
    pq.write_table(flink_table(0, n=9), path)
    _age(root, 30.0)  # an older-looking time than now, but not the cached one
    run = open_run(root)
    assert {f.path: f.rows for f in run.files}["flink_logs/batch_debug_data_train_0.parquet"] == 9


def test_files_just_written_are_not_cached(tmp_path, _probe_cache):
    root = make_flink_run(tmp_path / "run", steps=range(2))
    open_run(root)
    cache = ProbeCache.open(root)
    assert cache is not None and cache.old == {}


def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path, _probe_cache):
    root = make_flink_run(tmp_path / "run", steps=range(3))
    _age(root)
    expected = _facts(open_run(root))
    (cache_file,) = _cache_files(_probe_cache)
    for garbage in (b"{not json", json.dumps({"format": 1, "files": {"x": 1}}).encode(), b"[]"):
        cache_file.write_bytes(garbage)
        assert _facts(open_run(root)) == expected
    data = json.loads(cache_file.read_bytes())
    entry = next(iter(data["files"].values()))
    entry["stamp"] = "oops"
    entry["info"] = None
    cache_file.write_text(json.dumps(data))
    assert _facts(open_run(root)) == expected
    # An entry pointing to a schema that is not there (a negative index would pick another one silently).
    data = json.loads(cache_file.read_bytes())
    data["schemas"].append({"reward": "string"})
    for index in (-1, len(data["schemas"]), "0", True):
        for e in data["files"].values():
            e["schema"] = index
        cache_file.write_text(json.dumps(data))
        assert _facts(open_run(root)) == expected


def test_an_entry_with_a_field_of_the_wrong_type_is_probed_again(tmp_path, _probe_cache):
    """Valid JSON of the right shape, one field of another type: the file is probed again. It used to be
    taken as it was, and every command failed later with an internal error (``"16" + 1``, ``[0].get``)."""
    root = make_flink_run(tmp_path / "run", steps=range(3))
    _age(root)
    expected = _facts(open_run(root))
    summary = summarize(open_run(root), ["role"], cache=False)
    (cache_file,) = _cache_files(_probe_cache)
    good = cache_file.read_text()
    for field, value in (("rows", "16"), ("null_counts", [0]), ("steps", "1"), ("readable", 1), ("bytes", 1.5)):
        data = json.loads(good)
        for e in data["files"].values():
            e["info"][field] = value
        cache_file.write_text(json.dumps(data))
        assert _facts(open_run(root)) == expected, field
        assert summarize(open_run(root), ["role"], cache=False).equals(summary), field
    # a schema (shared by the entries pointing to it) that maps a column to something other than its type
    for bad in ({"reward": 1.0}, {"reward": None}, ["reward"]):
        data = json.loads(good)
        data["schemas"] = [{**s, **bad} if isinstance(bad, dict) else bad for s in data["schemas"]]
        cache_file.write_text(json.dumps(data))
        assert _facts(open_run(root)) == expected, bad
        assert summarize(open_run(root), ["role"], cache=False).equals(summary), bad


def test_cache_can_be_turned_off(tmp_path, monkeypatch, _probe_cache):
    root = make_flink_run(tmp_path / "run", steps=range(3))
    _age(root)
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    open_run(root)
    assert _cache_files(_probe_cache) == []
    monkeypatch.delenv("RUNLOG_CACHE")
    open_run(root, cache=False)
    assert _cache_files(_probe_cache) == []


def test_an_unwritable_cache_folder_does_not_fail_the_command(tmp_path, monkeypatch, cli):
    root = make_flink_run(tmp_path / "run", steps=range(3))
    _age(root)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(blocker))
    result = cli("summarize", root, "--by", "role", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)


def test_a_step_filter_keeps_the_other_entries(tmp_path):
    root = make_flink_run(tmp_path / "run", steps=range(5))
    _age(root)
    open_run(root)
    open_run(root, keep=lambda split, step: step == 2)
    cache = ProbeCache.open(root)
    assert cache is not None and len(cache.old) == 5


def test_a_cached_summarize_never_imports_pyarrow(tmp_path, _probe_cache):
    """The point of the lazy imports: once every footer is cached, pyarrow (and numpy) stay unloaded."""
    import subprocess
    import sys

    root = make_flink_run(tmp_path / "run", steps=range(4))
    _age(root)
    code = (
        "import sys; from runlog import open_run; from runlog.analysis.summarize import summarize; "
        f"summarize(open_run({str(root)!r}), ['role']); print('pyarrow' in sys.modules)"
    )
    env = {**os.environ, "RUNLOG_CACHE_DIR": str(_probe_cache)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "True"  # footers read: pyarrow needed
    assert second.stdout.strip() == "False"
