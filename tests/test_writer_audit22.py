"""Audit 22 (the writer): after a background failure, the step being gathered was written with the rows logged
before the failing call, as if whole (readers counted 4 rows of a step of 6, and the state named the step "not
written" beside its file); a numpy ``timedelta64`` reward and a ``longdouble`` reward column were accepted at
the call and then stopped the writer; ``StatsTracker.summary`` of int64 values beyond 2**53 lost their spread
(a std of 0 for ``[1e17, 1e17 + 1, 1e17 + 2]``) and took a ``timedelta64`` array as plain numbers; ``flush()``
then more rows of the step was refused as "moving to the next step"; a resume listed every eval step one by
one; a torn last scalars line was cut off without a word.

The truths come from what each test logged, read back with pyarrow, json and pathlib, and from numpy and
fractions; never from runlog's own helpers."""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from runlog import StatsTracker
from runlog.errors import UsageError
from runlog.writer import RunWriter, SampleError, StepOrderError, WriterError, WriterWarning, run_writer


def _hold_first_build(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """The background thread held in its first samples item until ``go``: what is logged meanwhile is queued
    behind it, as in a trainer that logs faster than the writer writes."""
    started, go = threading.Event(), threading.Event()
    real = run_writer._convert.build_table
    calls = []

    def build_table(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            assert go.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_writer._convert, "build_table", build_table)
    return started, go


def _files(run: Path, split: str = "train") -> dict[int, list[Any]]:
    """step -> the sample ids of its file on disk (pyarrow)."""
    folder = run / "samples" / split
    out = {}
    for f in sorted(folder.glob("step_*.parquet")) if folder.is_dir() else []:
        out[int(f.name[5:13])] = pq.read_table(f).column("sample_id").to_pylist()
    return out


def _state_error(run: Path) -> str:
    return json.loads((run / ".writer.p0.json").read_text())["error"]


def _rows(prefix: str, n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"reward": 1.0, "sample_id": f"{prefix}{i}", "group_id": "G", **extra} for i in range(n)]


# -- 1. a step that lost rows to a failure is never written as if whole ------------------------------------------
def test_a_step_that_lost_rows_to_the_failure_is_not_on_disk_and_is_named_with_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step 1: four good rows, a call whose extra column Arrow cannot type (fails on the writer's thread), and one
    more call queued behind it. Written before: the four good rows as step 1's file, read back as the whole
    step (4 rows, reward 1.0), and the error named the step "not written" beside that file."""
    started, go = _hold_first_build(monkeypatch)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    logged = {0: 1}
    w.log_samples(0, _rows("a", 1))
    assert started.wait(10)
    w.log_samples(1, _rows("good", 4))
    w.log_samples(1, _rows("bad", 1, meta=object()))
    w.log_samples(1, _rows("later", 1))
    logged[1] = 4 + 1 + 1
    go.set()
    with pytest.raises(WriterError) as err:
        w.flush()
    w.close()  # reported already
    on_disk = _files(run)
    assert on_disk == {0: ["a0"]}  # step 1 is not there in part: it is not there
    for text in (str(err.value), _state_error(run)):
        assert re.search(r"not written: the samples of train step 1 \((\d+) rows\)", text).group(1) == str(logged[1])
        assert "train step 0" not in text


def test_the_failing_calls_own_step_is_named_with_every_row_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failing call was in step 1 (one good row before it, one after): the error named only the later step 2
    and the scalars, and step 1's file held its one good row."""
    started, go = _hold_first_build(monkeypatch)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows("ok", 2))
    assert started.wait(10)
    w.log_samples(1, _rows("ok1-", 1))
    w.log_samples(1, _rows("bad", 1, obj=object()))
    w.log_samples(1, _rows("after", 1))
    w.log_scalars(1, {"x": 1.0})
    go.set()
    with pytest.raises(WriterError):
        w.flush()
    with pytest.raises(WriterError) as err:
        w.log_samples(2, _rows("s2-", 1))
    w.close()
    assert _files(run) == {0: ["ok0", "ok1"]}
    shard = run / "scalars.p0.jsonl"
    assert not shard.exists() or shard.read_text() == ""
    expected = "the samples of train step 1 (3 rows) and train step 2 (1 row), and the scalars of step 1"
    assert f"not written: {expected}, and nothing more" in str(err.value)
    assert _state_error(run).endswith(f"not written: {expected}")


def test_other_splits_are_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the failure, ``eval`` step 0 has a call queued behind the failing one (not written: it lost rows) and
    ``aux`` step 0 had all its rows before it (written whole, at once)."""
    started, go = _hold_first_build(monkeypatch)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows("t", 2))
    assert started.wait(10)
    w.log_samples(0, _rows("e", 2), split="eval")
    w.log_samples(0, _rows("x", 3), split="aux")
    w.log_samples(0, _rows("bad", 1, obj=object()))
    w.log_samples(0, _rows("e-late", 1), split="eval")
    go.set()
    with pytest.raises(WriterError) as err:
        w.flush()
    w.close()
    assert _files(run, "aux") == {0: ["x0", "x1", "x2"]}
    assert _files(run, "eval") == {}
    assert _files(run, "train") == {}
    assert "the samples of eval step 0 (3 rows) and train step 0 (3 rows)" in str(err.value)


def test_a_call_overtaken_by_the_failure_is_refused_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that passed its check just before the failure was found, and queued its rows after: refused, its rows
    counted among those lost, and the step not written in part (its rows had been dropped unsaid, the step's
    earlier rows written as the whole step)."""
    started, go = _hold_first_build(monkeypatch)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows("good", 2))
    assert started.wait(10)
    w.log_samples(0, _rows("bad", 1, obj=object()))
    real_check = w._check

    def check(**kwargs: Any) -> None:
        real_check(**kwargs)
        go.set()  # the failure is found now, between this call's check and its queueing
        assert w._salvaged.wait(10)

    monkeypatch.setattr(w, "_check", check)
    with pytest.raises(WriterError) as err:
        w.log_samples(0, _rows("late", 1))
    monkeypatch.undo()
    w.close()
    assert _files(run) == {}
    assert "not written: the samples of train step 0 (4 rows)" in str(err.value)
    assert "train step 0 (4 rows)" in _state_error(run)


def test_a_refused_call_of_a_step_written_before_says_what_its_file_holds(tmp_path: Path) -> None:
    """``train`` step 0 (two rows) is whole when ``eval`` fails: written. A call for it refused afterwards is named
    with its rows and the rows the file holds."""
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows("t", 2))
    w.log_samples(0, _rows("bad", 1, obj=object()), split="eval")
    with pytest.raises(WriterError):
        w.flush()
    with pytest.raises(WriterError) as err:
        w.log_samples(0, _rows("more", 1))
    w.close()
    held = len(_files(run)[0])
    assert held == 2
    assert f"train step 0 (1 row refused; its file holds the {held} logged before)" in str(err.value)
    assert "eval step 0 (1 row)" in str(err.value)


# -- 2. numbers that are not numbers, and numbers Arrow has no type for --------------------------------------------
@pytest.mark.parametrize(
    "rows",
    [
        [{"reward": np.timedelta64(5, "s")}],
        [{"reward": np.timedelta64(5, "ns")}],
        [{"reward": 1.0, "solver_reward": np.timedelta64(1, "s")}],
        {"reward": [1.0], "reward_components": {"c": [np.timedelta64(1, "s")]}},
    ],
)
def test_a_timedelta64_number_is_refused_at_the_call_and_the_writer_goes_on(tmp_path: Path, rows: Any) -> None:
    run = tmp_path / "run"
    with RunWriter(run, durable=False, roles=["solver"]) as w:
        with pytest.raises(SampleError, match="timedelta64"):
            w.log_samples(0, rows)
        w.log_samples(0, [{"reward": 0.5, "sample_id": "ok"}])
    assert _files(run) == {0: ["ok"]}


def test_a_longdouble_reward_column_is_written_as_float64(tmp_path: Path) -> None:
    run = tmp_path / "run"
    values = np.array([0.1, 1 / 3], dtype=np.longdouble)
    with RunWriter(run, durable=False) as w:
        w.log_samples(0, {"reward": values, "extra": values, "sample_id": ["a", "b"]})
        w.log_samples(1, [{"reward": np.longdouble("0.1"), "extra": np.longdouble("0.2"), "sample_id": "c"}])
    t0 = pq.read_table(run / "samples" / "train" / "step_00000000.p0.parquet")
    assert t0.column("reward").to_pylist() == values.astype(np.float64).tolist()
    assert t0.column("extra").to_pylist() == values.astype(np.float64).tolist()
    t1 = pq.read_table(run / "samples" / "train" / "step_00000001.p0.parquet")
    assert t1.column("extra").to_pylist() == [float(np.longdouble("0.2"))]


def test_a_longdouble_scalar_is_written_and_a_timedelta64_scalar_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tracker = StatsTracker()
    with RunWriter(run, durable=False) as w:
        w.log_scalars(0, {"x": np.longdouble("0.1")})
        tracker.scalar(y=np.longdouble("0.25"))
        tracker.commit(0, w)
        for bad in (np.timedelta64(5, "ns"), np.timedelta64(5, "s"), np.array(np.timedelta64(5, "s"))):
            with pytest.raises(UsageError, match="timedelta64"):
                w.log_scalars(1, {"x": bad})
            with pytest.raises(UsageError, match="timedelta64"):
                tracker.scalar(z=bad)
    lines = [json.loads(line) for line in (run / "scalars.p0.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k != "time"} for line in lines] == [
        {"step": 0, "x": float(np.longdouble("0.1"))},
        {"step": 0, "y": 0.25},
    ]


@pytest.mark.parametrize(
    "values", [np.array([1, 2], dtype="timedelta64[s]"), np.array(["2020-01-01"], dtype="datetime64[D]"), ["1.5"]]
)
def test_summary_refuses_durations_dates_and_text(values: Any) -> None:
    t = StatsTracker()
    with pytest.raises(UsageError, match="not numbers"):
        t.summary("d", values)
    assert t.export() == {}


# -- 3. host integer arrays are summarised exactly ----------------------------------------------------------------
def _exact(values: list[int]) -> tuple[float, float]:
    n = len(values)
    mean = Fraction(sum(values), n)
    return float(mean), math.sqrt(sum((Fraction(v) - mean) ** 2 for v in values) / n)


@pytest.mark.parametrize("base", [10**15, 2**53, 10**17, 2**62])
@pytest.mark.parametrize("form", ["int64", "list"])
def test_the_std_of_integers_beyond_2_53_is_exact(base: int, form: str) -> None:
    values = [base, base + 1, base + 2]
    t = StatsTracker()
    t.summary("h", np.array(values, dtype=np.int64) if form == "int64" else values)
    out = t.export()
    mean, std = _exact(values)
    assert out["h/std"] == pytest.approx(std, rel=1e-15)
    assert out["h/mean"] == mean


def test_integer_parts_combined_and_extreme_values_are_exact() -> None:
    t = StatsTracker()
    t.summary("h", np.array([10**17, 10**17 + 1, 10**17 + 1], dtype=np.int64))
    t.summary("h", [10**17])
    edges = [-(2**63), 2**63 - 1, 5]
    t.summary("e", np.array(edges, dtype=np.int64))
    big = [0, 2**64 - 1, 7]
    t.summary("u", np.array(big, dtype=np.uint64))
    out = t.export()
    assert out["h/std"] == pytest.approx(_exact([10**17, 10**17 + 1, 10**17 + 1, 10**17])[1], rel=1e-15)
    for key, values in (("e", edges), ("u", big)):
        mean, std = _exact(values)
        assert out[f"{key}/mean"] == mean and out[f"{key}/std"] == pytest.approx(std, rel=1e-15)
        assert (out[f"{key}/min"], out[f"{key}/max"]) == (float(min(values)), float(max(values)))


# -- 4. wording ---------------------------------------------------------------------------------------------------
def test_rows_after_flush_are_refused_naming_flush(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, _rows("a", 1))
        w.flush()
        with pytest.raises(StepOrderError, match=r"flush\(\) wrote the step") as err:
            w.log_samples(0, _rows("b", 1))
    assert "moving to the next step" not in str(err.value)


def test_a_resume_names_an_eval_splits_steps_as_ranges(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        for step in range(500):
            w.log_samples(step, _rows(f"t{step}-", 1))
            if step % 10 == 0:
                w.log_samples(step, _rows(f"e{step}-", 1), split="eval")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run, durable=False) as w:
            w.log_samples(3, _rows("r", 1))
    said = [str(c.message) for c in caught if issubclass(c.category, WriterWarning) and "resumed" in str(c.message)]
    assert len(said) == 1
    moved = sorted(int(p.name[5:13]) for p in (run / ".superseded").rglob("eval/step_*.parquet"))
    assert moved == list(range(10, 500, 10))
    assert f"samples/eval steps {moved[0]}-{moved[-1]} every 10;" in said[0]
    assert len(said[0]) < 500, said[0]


def test_a_torn_last_scalars_line_is_cut_off_with_a_warning(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:
        w.log_scalars(0, {"x": 1.0})
    shard = run / "scalars.p0.jsonl"
    torn = b'{"step": 1, "time": 5.0, "x": 0.'
    with shard.open("ab") as f:
        f.write(torn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run, durable=False) as w:
            w.log_scalars(2, {"x": 2.0})
    said = [str(c.message) for c in caught if issubclass(c.category, WriterWarning)]
    assert any(str(shard) in m and "torn" in m and f"{len(torn)} bytes" in m for m in said), said
    assert [json.loads(line)["step"] for line in shard.read_text().splitlines()] == [0, 2]


# -- 5. the writer benchmark measures the code it is told to ------------------------------------------------------
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "writer_bench.py"


def _stub_runlog(folder: Path) -> Path:
    """A ``src`` folder whose ``runlog`` says where it was imported from and ends the program (exit 0)."""
    package = folder / "src" / "runlog"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import sys\nprint('STUB RUNLOG', __file__)\nsys.exit(0)\n")
    return folder / "src"


@pytest.mark.parametrize("how", ["--src", "PYTHONPATH"])
def test_the_writer_benchmark_measures_the_runlog_it_is_given(tmp_path: Path, how: str) -> None:
    """It put its own checkout's ``src`` first: a before/after comparison through ``PYTHONPATH`` measured the same
    code twice. (``--steps x`` ends a run that imported another runlog at once, with a usage error.)"""
    import os
    import subprocess
    import sys

    src = _stub_runlog(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [sys.executable, str(BENCH), "--steps", "x"]
    if how == "--src":
        args += ["--src", str(src)]
    else:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["STUB", "RUNLOG", str(src / "runlog" / "__init__.py")]
