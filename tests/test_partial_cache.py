"""Summaries from cached per-step partials (``runlog.analysis.partial_cache``) equal a cold read to 1e-12, on
randomised runs (RunWriter-written and Flink-style), also after files are rewritten in place, deleted and
added; only what changed is read again; a corrupt cache is reported once and rebuilt."""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from runlog import open_run
from runlog.analysis import partial_cache as P
from runlog.analysis import partial_store as PS
from runlog.analysis.filters import Filters, StepRange
from runlog.analysis.summarize import summarize, summary_keys
from runlog.writer import RunWriter

ROLES = ("solver", "verifier", "judge")
OLD = 1_600_000_000  # files dated well in the past: not "just written" (those are never stored)
QUESTIONS = [
    (["role"], Filters()),
    (["role", "step"], Filters()),
    (["step"], Filters()),
    ([], Filters()),
    (["split"], Filters()),
    (["role"], Filters(steps=StepRange.parse("2:5,9"))),
    (["role", "step"], Filters(splits=("train",))),
    ([], Filters(roles=("judge",))),
    (["step"], Filters(splits=("eval",), steps=StepRange.parse(":6"))),
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(folder))
    monkeypatch.delenv("RUNLOG_CACHE", raising=False)
    return folder


def _age(root: Path) -> None:
    """Date the files not dated yet (touching the others would change their stamps: the change time)."""
    for p in root.rglob("*"):
        if p.is_file() and p.stat().st_mtime != OLD:
            os.utime(p, (OLD, OLD))


def _value(rng: random.Random) -> float | None:
    u = rng.random()
    return math.nan if u < 0.04 else None if u < 0.08 else round(rng.gauss(0.5, 0.3), rng.choice([2, 6, 12]))


def _native_step(w: RunWriter, rng: random.Random, step: int, split: str) -> None:
    rows = []
    for i in range(rng.randint(1, 9)):
        row: dict = {
            "reward": _value(rng),
            "group_id": f"{split}-{step}-g{i // 3}" if rng.random() < 0.8 else None,
            "prompt": f"p{i // 3}",
            "completion": f"c{i}",
            "reward_components": {"fmt": _value(rng), **({"len": rng.random()} if step % 3 == 0 else {})},
            "exception": "boom" if rng.random() < 0.1 else None,
        }
        for role in ROLES:
            if rng.random() < 0.85:
                row[f"{role}_reward"] = _value(rng)
                row[f"{role}_kl"] = _value(rng)
        rows.append(row)
    w.log_samples(step, rows, split=split)


def native_run(root: Path, seed: int, steps: range) -> Path:
    rng = random.Random(seed)
    for p in range(2):  # two processes: two files per step
        with RunWriter(root, name="r", roles=ROLES, process_index=p, durable=False) as w:
            for step in steps:
                for split in ("train", "eval") if step % 4 == 0 else ("train",):
                    _native_step(w, rng, step, split)
    _age(root)
    return root


def flink_file(path: Path, rng: random.Random, roles: tuple[str, ...] = ROLES) -> None:
    n = rng.randint(1, 12)
    cols: dict = {
        "env_name": ["math"] * n,
        "trajectory": [f"t{i}" for i in range(n)],
        "agent_trajectories": ["{}"] * n,
        "exception_info": [("ValueError: x" if rng.random() < 0.1 else None) for _ in range(n)],
        "reward": [_value(rng) for _ in range(n)],
        "reward_metrics": [{"correct": _value(rng), "format": rng.random()} for _ in range(n)],
        "reward_text_info": [None] * n,
        "unique_sample_id": [f"s{i}" for i in range(n)],
        "schema_version": [1] * n,
        "role_assignments": [None] * n,
    }
    for r in roles:
        cols[f"{r}_reward"] = pa.array([_value(rng) for _ in range(n)], pa.float64())
        cols[f"{r}_kl"] = pa.array([_value(rng) for _ in range(n)], pa.float64())
    pq.write_table(pa.table(cols), path)


def flink_run(root: Path, seed: int, steps: range) -> Path:
    rng = random.Random(seed)
    logs = root / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    for step in steps:
        for split in ("train", "eval") if step % 3 == 0 else ("train",):
            flink_file(logs / f"batch_debug_data_{split}_{step}.parquet", rng)
    _age(root)
    return root


def _check(root: Path, questions=QUESTIONS, prompt_groups: bool = False) -> None:
    run = open_run(root)
    for by, filters in questions:
        cold = summarize(run, by, filters=filters, cache=False, prompt_groups=prompt_groups)
        warm = summarize(open_run(root), by, filters=filters, prompt_groups=prompt_groups)
        assert_frame_equal(warm, cold, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
        # ... and the answer did come from the partials (the cache, now filled, answers alone)
        keys = summary_keys(run, by, filters)
        assert P.cached_summary(open_run(root), keys, filters, prompt_groups=prompt_groups) is not None


def _computed(root: Path, mode: str = "role") -> tuple[int, int]:
    run = open_run(root)
    parts = P.run_partials(run, mode, store=P.PartialStore.open(run.root))
    assert parts is not None
    return parts.computed, parts.reused


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("make", [native_run, flink_run])
def test_cached_answers_equal_a_cold_read_through_rewrites_deletions_and_additions(tmp_path, seed, make):
    root = make(tmp_path / "run", seed, range(10))
    _check(root)
    assert _computed(root) == (0, 10)  # every step is cached now
    rng = random.Random(seed + 100)
    files = sorted(p for p in root.rglob("*.parquet"))
    # Rewritten in place (same name and size class, other values), deleted, and new steps added.
    target = files[rng.randrange(len(files))]
    if make is flink_run:
        flink_file(target, rng)
    else:
        table = pq.read_table(target)
        reward = pa.array([_value(rng) for _ in range(table.num_rows)], pa.float64())
        pq.write_table(table.set_column(table.schema.get_field_index("reward"), "reward", reward), target)
    gone = next(p for p in files if p != target)
    gone.unlink()
    if make is flink_run:
        flink_run(root, seed + 7, range(10, 13))
    else:
        native_run(tmp_path / "more", seed + 7, range(10, 13))
        for p in (tmp_path / "more" / "samples").rglob("*.parquet"):
            dest = root / p.relative_to(tmp_path / "more")
            dest.parent.mkdir(parents=True, exist_ok=True)
            p.rename(dest)
    _age(root)
    _check(root)
    _check(root, QUESTIONS[:4], prompt_groups=True)  # prompt groups from the text too (doctor, plot, report)
    run = open_run(root)
    assert len(P.units(run) or {}) == 13


def test_only_new_and_changed_steps_are_read_again(tmp_path):
    root = flink_run(tmp_path / "run", 5, range(8))
    assert _computed(root) == (8, 0)
    assert _computed(root) == (0, 8)
    flink_run(root, 6, range(8, 11))  # three new steps
    assert _computed(root) == (3, 8)
    flink_file(root / "flink_logs" / "batch_debug_data_train_2.parquet", random.Random(9))  # step 2 rewritten
    _age(root)
    assert _computed(root) == (1, 10)
    assert _computed(root, "sample") == (11, 0)  # another kind of summary: its own entries
    assert _computed(root) == (0, 11)


def test_files_just_written_are_not_stored(tmp_path):
    root = flink_run(tmp_path / "run", 5, range(4))
    os.utime(root / "flink_logs" / "batch_debug_data_train_1.parquet")  # now
    assert _computed(root) == (4, 0)
    assert _computed(root) == (1, 3)


def test_a_corrupt_index_or_segment_is_reported_once_and_rebuilt(tmp_path, _cache, capsys):
    root = flink_run(tmp_path / "run", 5, range(6))
    _check(root, QUESTIONS[:1])
    [folder] = (_cache / "partials").iterdir()
    index = folder / "index.json"
    index.write_text('{"format": 1, "entr')
    capsys.readouterr()
    _check(root, QUESTIONS[:2])
    assert capsys.readouterr().err.count("partial cache") == 1
    assert _computed(root) == (0, 6)  # rebuilt
    [seg] = folder.glob("seg-*.arrow")
    seg.write_bytes(b"not arrow at all")
    _check(root, QUESTIONS[:1])
    assert capsys.readouterr().err.count("unreadable") == 1
    assert _computed(root) == (0, 6)
    assert not any(p.name == seg.name for p in folder.iterdir())  # the corrupt segment is gone


def test_a_segment_of_the_wrong_shape_is_not_trusted(tmp_path, _cache, capsys):
    """A segment polars can read but that lacks a step's rows, or the statistics' columns: the step missing
    is computed again (it was left out of the summary, without a word), and a segment without the columns is
    reported once and rebuilt (it was an internal error on every later command)."""
    root = flink_run(tmp_path / "run", 5, range(6))
    _check(root, QUESTIONS[:1])
    [folder] = (_cache / "partials").iterdir()
    [seg] = folder.glob("seg-*.arrow")
    frame = pl.read_ipc(seg.read_bytes())
    gone = frame[PS.UNIT].unique().sort()[2]
    frame.filter(pl.col(PS.UNIT) != gone).write_ipc(seg)
    assert _computed(root) == (1, 5)  # that step read again, the others reused
    _check(root, QUESTIONS[:2])
    segs = list(folder.glob("seg-*.arrow"))
    for seg in segs:
        pl.read_ipc(seg.read_bytes()).select(PS.UNIT).write_ipc(seg)
    capsys.readouterr()
    _check(root, QUESTIONS[:2])
    assert capsys.readouterr().err.count("unreadable") == 1  # said once
    assert _computed(root) == (0, 6)  # rebuilt


def test_entries_of_other_code_are_ignored(tmp_path, monkeypatch):
    root = flink_run(tmp_path / "run", 5, range(3))
    assert _computed(root) == (3, 0)
    P.code_key.cache_clear()
    monkeypatch.setattr(P, "source_hash", lambda names: "another version")
    try:
        assert _computed(root) == (3, 0)
    finally:
        P.code_key.cache_clear()


def test_the_cache_can_be_turned_off(tmp_path, _cache, monkeypatch):
    root = flink_run(tmp_path / "run", 5, range(3))
    summarize(open_run(root), ["role"], cache=False)
    assert not (_cache / "partials").exists()
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    summarize(open_run(root), ["role"])
    assert not (_cache / "partials").exists()
    monkeypatch.delenv("RUNLOG_CACHE")
    summarize(open_run(root), ["role"])
    assert (_cache / "partials").exists()


def test_concurrent_saves_keep_each_others_entries(tmp_path):
    root = flink_run(tmp_path / "run", 5, range(6))
    first = open_run(root)
    a, b = P.PartialStore.open(first.root), P.PartialStore.open(first.root)
    assert a is not None and b is not None
    P.run_partials(first, filters=Filters(steps=StepRange.parse("0:2")), store=a)
    P.run_partials(first, filters=Filters(steps=StepRange.parse("3:5")), store=b)  # b loaded before a saved
    assert _computed(root) == (0, 6)


def test_a_save_parses_the_index_again_only_when_another_command_changed_it(tmp_path, monkeypatch):
    """The index as read needs no second parse under the lock; one rewritten since is merged, not lost."""
    root = flink_run(tmp_path / "run", 5, range(6))
    run = open_run(root)
    reads: list[int] = []
    real = P.PartialStore._read_index

    def counted(self: P.PartialStore) -> dict:
        reads.append(1)
        return real(self)

    monkeypatch.setattr(P.PartialStore, "_read_index", counted)
    P.run_partials(run, filters=Filters(steps=StepRange.parse("0:1")), store=P.PartialStore.open(run.root))
    a, b = P.PartialStore.open(run.root), P.PartialStore.open(run.root)
    assert a is not None and b is not None
    reads.clear()
    P.run_partials(run, filters=Filters(steps=StepRange.parse("2:3")), store=a)
    assert reads == []  # the index is as ``a`` read it
    P.run_partials(run, filters=Filters(steps=StepRange.parse("4:5")), store=b)
    assert reads == [1]  # ``a`` saved since ``b`` read it: read again and merged
    assert _computed(root) == (0, 6)


def test_many_segments_are_compacted(tmp_path, _cache):
    root = flink_run(tmp_path / "run", 5, range(12))
    for step in range(12):
        one = Filters(steps=StepRange.parse(str(step)))
        P.run_partials(open_run(root), filters=one, store=P.PartialStore.open(root))
    [folder] = (_cache / "partials").iterdir()
    assert len(list(folder.glob("seg-*.arrow"))) <= PS.MAX_SEGMENTS
    assert _computed(root) == (0, 12)


def test_incremental_summary_reads_each_step_once(tmp_path, monkeypatch):
    """A long-lived caller (``runlog watch``) keeps partials in memory between polls."""
    monkeypatch.setenv("RUNLOG_CACHE", "off")
    root = flink_run(tmp_path / "run", 5, range(4))
    inc = P.IncrementalSummary()
    first = inc.summarize(open_run(root), ["role", "step"])
    assert inc.last is not None and inc.last.computed == 4
    flink_run(root, 8, range(4, 6))
    later = inc.summarize(open_run(root), ["role", "step"])
    assert inc.last.computed == 2 and inc.last.reused == 4
    assert later.height > first.height
    cold = summarize(open_run(root), ["role", "step"], cache=False)
    assert_frame_equal(later, cold, rel_tol=1e-12, check_exact=False)


def test_runs_of_multi_step_files_other_keys_and_huge_runs_are_computed_cold(tmp_path, monkeypatch):
    root = flink_run(tmp_path / "run", 5, range(3))
    run = open_run(root)
    assert P.cached_summary(run, ["env"], Filters()) is None
    monkeypatch.setattr(P, "MAX_VALUES", 10)  # a run too big to keep every reward value: cold
    assert P.cached_summary(run, ["role"], Filters()) is None
    run.files[0].steps, run.files[0].step = [0, 1], None
    assert P.units(run) is None


def test_cli_repeat_gives_the_same_output(tmp_path, cli):
    root = flink_run(tmp_path / "run", 5, range(6))
    first = cli("summarize", root, "--by", "role", "--format", "json")
    again = cli("summarize", root, "--by", "role", "--format", "json")
    assert first.exit_code == again.exit_code == 0
    assert pl.read_json(first.stdout.encode()).equals(pl.read_json(again.stdout.encode()))


def test_cli_reports_a_corrupt_cache_once_on_stderr(tmp_path, cli, _cache, monkeypatch):
    monkeypatch.setenv("RUNLOG_ANSWERS", "off")  # the same question again would print its kept answer
    root = flink_run(tmp_path / "run", 5, range(4))
    assert cli("summarize", root, "--format", "json").exit_code == 0
    [folder] = (_cache / "partials").iterdir()
    (folder / "index.json").write_bytes(b"\x00garbage")
    r = cli("summarize", root, "--format", "json")
    assert r.exit_code == 0 and r.stderr.count("partial cache") == 1, r.stderr
    again = cli("summarize", root, "--format", "json")
    assert "partial cache" not in again.stderr and again.stdout == r.stdout


def test_a_run_opened_in_part_keeps_the_entries_of_the_steps_it_did_not_open(tmp_path):
    root = flink_run(tmp_path / "run", 5, range(6))
    assert _computed(root) == (6, 0)
    part = open_run(root, keep=lambda split, step: step is None or step >= 3)
    assert part.skipped
    flink_file(root / "flink_logs" / "batch_debug_data_train_4.parquet", random.Random(3))
    _age(root)
    part = open_run(root, keep=lambda split, step: step is None or step >= 3)
    parts = P.run_partials(part, store=P.PartialStore.open(part.root))
    assert parts is not None and (parts.computed, parts.reused) == (1, 2)
    assert _computed(root) == (0, 6)  # steps 0-2 (unopened) kept, step 4 stored anew


def test_concurrent_processes_keep_each_others_entries(tmp_path, _cache):
    """Two commands summarising different steps of one run at the same time: both sets of steps are kept."""
    import subprocess
    import sys

    root = flink_run(tmp_path / "run", 5, range(8))
    code = (
        "import sys; from runlog import open_run; from runlog.analysis.filters import Filters, StepRange; "
        "from runlog.analysis.summarize import summarize; "
        "summarize(open_run(sys.argv[1]), ['role'], filters=Filters(steps=StepRange.parse(sys.argv[2])))"
    )
    env = {**os.environ, "RUNLOG_CACHE_DIR": str(_cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(root), steps], env=env, stderr=subprocess.PIPE)
        for steps in ("0:3", "4:7")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert _computed(root) == (0, 8)


@pytest.mark.parametrize("make", [native_run, flink_run])
def test_compaction_keeps_per_sample_and_per_role_entries_apart(tmp_path, make):
    """A run read step by step with per-sample and per-role questions in turn (``doctor``, ``watch``): past
    ``MAX_SEGMENTS`` the entries are compacted, and every answer still equals a cold read (one segment for both
    variants once gave per-sample entries a null ``level``: their summaries came back empty)."""
    root = make(tmp_path / "run", 11, range(3 * PS.MAX_SEGMENTS))
    for step in range(3 * PS.MAX_SEGMENTS):
        upto = Filters(steps=StepRange.parse(f":{step}"))
        for by in (["step"], ["role", "step"]):
            cold = summarize(open_run(root), by, filters=upto, cache=False, prompt_groups=True)
            warm = summarize(open_run(root), by, filters=upto, prompt_groups=True)
            assert warm.height == cold.height, (step, by)
            assert_frame_equal(warm, cold, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def _folder(root: Path) -> Path:
    """The run's partials folder, found without opening its store (opening one is a read: it stamps it)."""
    from runlog.probe_cache import cache_dir, run_digest

    base = cache_dir()
    assert base is not None
    return base / "partials" / run_digest(open_run(root).root)[1]


def _date(folder: Path, used: float) -> None:
    """A run's partials as if last written long ago, and last read at ``used``."""
    for p in folder.iterdir():
        os.utime(p, (OLD, OLD))
    os.utime(folder / PS.USED, (used, used))
    os.utime(folder, (OLD, OLD))


def test_the_cache_keeps_to_its_budget_and_deletes_the_runs_used_least_recently(tmp_path, _cache, monkeypatch):
    """``RUNLOG_CACHE_MAX_MB``: past it, a save deletes whole runs' partials, those read least recently first,
    never the run being saved; a run deleted is summarised again, to the same answer."""
    roots = [flink_run(tmp_path / f"r{i}", i, range(6)) for i in range(3)]
    for root in roots[:2]:
        assert _computed(root) == (6, 0)
    folders = [_folder(root) for root in roots]
    size = sum(f.stat().st_size for f in folders[0].iterdir())
    # Run 0 read again after run 1 (its "used" stamp dated later): run 1 is now the least recent.
    _date(folders[1], OLD)
    _date(folders[0], OLD + 60)
    monkeypatch.setenv(PS.BUDGET_VAR, str(2.5 * size / (1 << 20)))  # room for about two runs
    (_cache / PS.CHECKED).unlink(missing_ok=True)
    cold = summarize(open_run(roots[2]), ["role"], cache=False)
    assert_frame_equal(summarize(open_run(roots[2]), ["role"]), cold)  # saves run 2, then trims
    assert [f.exists() for f in folders] == [True, False, True]
    assert _computed(roots[0]) == (0, 6) and _computed(roots[1]) == (6, 0)  # run 1 is read again


def test_the_budget_is_checked_once_a_minute_and_never_deletes_the_run_saved(tmp_path, _cache, monkeypatch):
    monkeypatch.setenv(PS.BUDGET_VAR, "0.000001")  # smaller than any run: only the one being saved stays
    a = flink_run(tmp_path / "a", 1, range(4))
    b = flink_run(tmp_path / "b", 2, range(4))
    assert _computed(a) == (4, 0)
    assert _folder(a).exists()  # the run saved is kept, whatever the budget
    _date(_folder(a), OLD)
    assert _computed(b) == (4, 0)
    assert _folder(a).exists()  # checked less than a minute ago: not checked again yet
    os.utime(_cache / PS.CHECKED, (OLD, OLD))
    assert _computed(b) == (0, 4)  # a load does not trim...
    _date(_folder(b), OLD)
    c = flink_run(tmp_path / "c", 3, range(4))
    assert _computed(c) == (4, 0)  # ...a save does
    assert [_folder(r).exists() for r in (a, b, c)] == [False, False, True]


def test_trim_spares_folders_in_use_and_anything_not_a_runs_partials(tmp_path):
    """Never deleted: a folder written in the last minute (a save in progress, even before its index exists),
    one whose index lock another command holds, the one kept, and anything not named as a run's folder;
    leftovers of a deletion cut short are cleared; a stamp in the future counts as old."""
    import fcntl

    partials = tmp_path / "partials"
    names = {k: f"{i:032x}" for i, k in enumerate(("old", "busy", "saving", "keep", "future"))}
    for k, name in names.items():
        (partials / name).mkdir(parents=True)
        (partials / name / "seg-x.arrow").write_bytes(b"x" * 1000)
        if k != "saving":
            (partials / name / PS.USED).touch()
            _date(partials / name, OLD + 10 * list(names).index(k))
    (partials / names["saving"] / "seg-x.arrow").rename(partials / names["saving"] / ".seg-x.tmp")
    future = time.time() + 3600
    for p in (partials / names["future"]).iterdir():
        os.utime(p, (future, future))
    (partials / "notes").mkdir()
    (partials / "notes" / "mine.txt").write_text("not a cache")
    (partials / ".trash-0123").mkdir()
    os.utime(partials / ".trash-0123", (OLD, OLD))
    with open(partials / names["busy"] / "index.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        removed = PS.trim(partials, partials / names["keep"], budget=0)
    assert sorted(p.name for p in removed) == sorted([names["old"], names["future"]])
    left = sorted(p.name for p in partials.iterdir())
    assert left == sorted([names["busy"], names["saving"], names["keep"], "notes"])
    assert (partials / "notes" / "mine.txt").read_text() == "not a cache"
    stamp = tmp_path / "stamp"
    stamp.touch()
    os.utime(stamp, (future, future))
    assert PS._touch_if_older(stamp, 60)  # a time in the future is a skewed clock, not "just now"


@pytest.mark.parametrize("value", ["lots", "-5", "0", "inf"])
def test_a_budget_that_is_not_a_positive_number_is_said_once(value, monkeypatch, capsys):
    monkeypatch.setenv(PS.BUDGET_VAR, value)
    PS._warned.clear()
    assert PS.budget_bytes() == PS.budget_bytes() == PS.DEFAULT_BUDGET_MB << 20
    err = capsys.readouterr().err
    assert err.count(f"warning: {PS.BUDGET_VAR}=") == 1 and "2048 MiB" in err


def _raw_kl(root: Path) -> list[tuple[str, dict[str, float | None]]]:
    """(split, {role: KL}) per sample, read straight from the files with pyarrow (roles a sample lacks are
    absent from its mapping)."""
    out: list[tuple[str, dict[str, float | None]]] = []
    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path).to_pylist()
        if path.parent.name == "flink_logs":
            split = path.name.split("_")[3]
            out += [(split, {r: row[f"{r}_kl"] for r in ROLES}) for row in table]
        else:
            out += [(row["split"], {x["role"]: x["kl"] for x in row["roles"] or []}) for row in table]
    return out


@pytest.mark.parametrize("make", [native_run, flink_run])
def test_kl_nan_and_null_equal_an_independent_count(tmp_path, make):
    """A KL that went NaN (diverged log-probabilities) is counted in ``kl_nan``, beside ``kl_count``, per
    role and per sample (a sample's KL, the mean of its roles', is NaN when one is): the statistics used to
    skip it without a word. Cold, from the partials, and in a fleet of two copies alike."""
    root = make(tmp_path / "r", seed=7, steps=range(9))
    raw = _raw_kl(root)

    def counts(values: list[float | None]) -> tuple[int, int, int]:
        nan = sum(v is not None and math.isnan(v) for v in values)
        null = sum(v is None for v in values)
        return len(values) - nan - null, nan, null

    per_role = {
        (s, r): counts([kl[r] for sp, kl in raw if sp == s and r in kl]) for s in ("train", "eval") for r in ROLES
    }
    per_sample: dict[str, list[float | None]] = {"train": [], "eval": []}
    for split, kl in raw:
        known = [v for v in kl.values() if v is not None]
        per_sample[split].append(None if not known else math.nan if any(map(math.isnan, known)) else 0.0)
    assert sum(n for _, n, _ in per_role.values()) > 0  # the run has NaN KL to count
    for attempt in ("cold", "partials"):
        run = open_run(root)
        by_role = summarize(run, ["role"], cache=attempt == "partials")
        for row in by_role.filter(pl.col("role").is_not_null()).iter_rows(named=True):
            assert (row["kl_count"], row["kl_nan"], row["kl_null"]) == per_role[(row["split"], row["role"])], row
        by_split = summarize(run, ["split"], cache=attempt == "partials")
        for row in by_split.iter_rows(named=True):
            assert (row["kl_count"], row["kl_nan"], row["kl_null"]) == counts(per_sample[row["split"]]), row
    import shutil

    fleet = tmp_path / "fleet"
    for name in ("a", "b"):
        shutil.copytree(root, fleet / name, symlinks=True)
    from runlog.fleet import summarize_fleet

    pooled = summarize_fleet([str(fleet / "a"), str(fleet / "b")], ["role"]).frame
    assert pooled.height
    for row in pooled.filter(pl.col("role").is_not_null()).iter_rows(named=True):
        one = per_role[(row["split"], row["role"])]
        assert (row["kl_count"], row["kl_nan"], row["kl_null"]) == tuple(2 * x for x in one), row


def test_medians_merged_from_partials_take_infinities_as_numpy(tmp_path):
    """The merged median takes polars' own first and the exact one only for groups whose middle value is an
    infinity: both kinds in one run, against numpy over every step's values."""
    import numpy as np

    rewards = {  # per role, over the steps: the middle values of solver are -inf and 1, of judge inf and inf
        "solver": [[-math.inf, 1.0], [-math.inf, 2.0, -math.inf], [3.0]],
        "judge": [[math.inf, math.inf], [math.inf, 1.0], []],
        "verifier": [[0.5, 1.5], [2.5, math.inf], [-1.0, 0.25]],
    }
    logs = tmp_path / "run" / "flink_logs"
    logs.mkdir(parents=True)
    for step in range(3):
        n = 3
        cols: dict = {
            "reward": [0.0] * n,
            "unique_sample_id": [f"s{step}-{i}" for i in range(n)],
            "schema_version": [1] * n,
        }
        for role, per_step in rewards.items():
            vals = per_step[step] + [None] * (n - len(per_step[step]))
            cols[f"{role}_reward"] = pa.array(vals, pa.float64())
            cols[f"{role}_kl"] = pa.array([0.0] * n, pa.float64())
        pq.write_table(pa.table(cols), logs / f"batch_debug_data_train_{step}.parquet")
    _age(tmp_path / "run")
    with np.errstate(invalid="ignore"):
        truth = {r: float(np.median([v for s in per_step for v in s])) for r, per_step in rewards.items()}
    assert truth == {"solver": -math.inf, "judge": math.inf, "verifier": 1.0}  # polars' own: NaN, NaN, 1.0
    for attempt in ("cold", "store", "partials"):
        out = summarize(open_run(tmp_path / "run"), ["role"], cache=attempt != "cold")
        got = dict(zip(out["role"].to_list(), out["reward_median"].to_list(), strict=True))
        for role, want in truth.items():
            assert got[role] == want or (math.isnan(got[role]) and math.isnan(want)), (attempt, role, got, truth)
    assert P.cached_summary(open_run(tmp_path / "run"), ["role"], Filters()) is not None
