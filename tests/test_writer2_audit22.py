"""Audit 22, second review of the writer: rows refused while the failure's salvage was still writing their step
were dropped from the count (the error and state file said nothing of them, beside a file holding 4 of the 6 rows
logged); a ``defaultdict`` row was read through its default (a missing per-role reward written 0.0, and added to
the caller's dict); ``longdouble`` values in an object array, in a list or dict of a row stopped the writer, and a
per-row longdouble array was written as JSON text; a last scalars line that was a whole record without its end of
line was cut off, "skipped by readers" (readers read it); a call of no rows queued behind a failure dropped its
whole step; ``summary`` of ``Fraction`` values spoke of text.

The truths come from what each test logged, read back with pyarrow, json and numpy; never from runlog's helpers."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import re
import threading
import time
import warnings
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import StatsTracker
from runlog.errors import UsageError
from runlog.writer import RunWriter, SampleError, WriterError, WriterWarning, run_writer


def _table(run: Path, step: int, split: str = "train") -> pa.Table:
    return pq.read_table(run / "samples" / split / f"step_{step:08d}.p0.parquet")


def _files(run: Path, split: str) -> dict[int, int]:
    """step -> the rows of its file on disk (pyarrow)."""
    folder = run / "samples" / split
    return (
        {int(f.name[5:13]): pq.read_table(f).num_rows for f in folder.glob("step_*.parquet")} if folder.is_dir() else {}
    )


def _state_error(run: Path) -> str:
    return json.loads((run / ".writer.p0.json").read_text())["error"] or ""


def _rows(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"reward": 1.0, **extra} for _ in range(n)]


# -- 1. rows refused while the salvage writes their step are counted -----------------------------------------------
def test_rows_refused_while_the_salvage_writes_their_step_are_named_with_the_files_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` step 0 has 4 rows when ``eval`` fails; the salvage is writing step 0 (held in its concatenation)
    when 2 more rows of it are logged: refused. The error and state file named only eval step 0: the publication
    of step 0 erased the refused rows from the count."""
    salvaging, go = threading.Event(), threading.Event()
    real_concat = run_writer._convert.concat

    def concat(tables: Any, *, where: str = "", warn: Any = None) -> Any:
        if where == "train step 0":
            salvaging.set()
            assert go.wait(10)
        return real_concat(tables, where=where, warn=warn)

    monkeypatch.setattr(run_writer._convert, "concat", concat)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(0, _rows(4))
    w.log_samples(0, _rows(1, meta=object()), split="eval")  # fails on the writer's thread
    assert salvaging.wait(10)
    real_lost_text = w._lost_text

    def lost_text() -> str:
        go.set()  # the refused call has counted its rows: the salvage goes on and publishes step 0
        return real_lost_text()

    monkeypatch.setattr(w, "_lost_text", lost_text)
    with pytest.raises(WriterError) as err:
        w.log_samples(0, _rows(2))
    monkeypatch.undo()
    w.close()
    held = _table(run, 0).num_rows
    assert held == 4
    said = f"train step 0 (2 rows refused; its file holds the {held} logged before)"
    assert said in str(err.value)
    assert said in _state_error(run)
    assert "eval step 0 (1 row)" in _state_error(run)


@pytest.mark.parametrize("seed", range(16))
def test_what_is_written_and_what_is_named_add_up_to_what_was_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Two trainer threads (train, eval) logging steps in parts, a failure at a random item, a small queue: every
    step's rows are either all in its file, or named not written with all of them, or in its file with the rows
    refused after it named beside the file's count (past 12 named steps, the rest counted with their rows)."""
    rng = random.Random(seed)
    delays = random.Random(seed + 1000)
    fail_at = rng.randint(1, 30)
    seen = []
    real_handle = run_writer.RunWriter._handle

    def handle(self: Any, item: tuple[Any, ...]) -> None:
        time.sleep(delays.random() * 0.002)
        if item[0] in ("samples", "scalars"):
            seen.append(1)
            if len(seen) == fail_at:
                raise RuntimeError("boom")
        real_handle(self, item)

    monkeypatch.setattr(run_writer.RunWriter, "_handle", handle)
    run = tmp_path / "run"
    w = RunWriter(run, durable=False, max_queue=rng.choice([1, 2, 8]))
    logged: dict[tuple[str, int], list[int]] = {}  # (split, step) -> [rows accepted, rows refused]
    lock = threading.Lock()
    parts = {split: [[rng.randint(1, 5) for _ in range(rng.randint(1, 3))] for _ in range(8)] for split in ("t", "e")}

    def trainer(split: str) -> None:
        for step, sizes in enumerate(parts[split]):
            for n in sizes:
                try:
                    w.log_samples(step, _rows(n), split=split)
                    ok = True
                except WriterError:
                    ok = False
                with lock:
                    logged.setdefault((split, step), [0, 0])[0 if ok else 1] += n

    threads = [threading.Thread(target=trainer, args=(s,)) for s in ("t", "e")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with contextlib.suppress(WriterError):
        w.close()
    error = _state_error(run)
    named = {
        (m[1], int(m[2])): (int(m[3]), None if m[5] is None else int(m[5]))
        for m in re.finditer(
            r"\b(t|e) step (\d+) \((\d+) rows?( refused; its file holds the (\d+) logged before)?\)", error
        )
    }
    more = re.search(r"(\d+) more \((\d+) rows?; \d+ split steps in all\)", error)
    files = {(s, k): v for s in ("t", "e") for k, v in _files(run, s).items()}
    unnamed = []
    for key, (ok, refused) in logged.items():
        if key in files and key in named:
            assert named[key] == (refused, files[key]) and files[key] == ok, (key, ok, refused, files, error)
        elif key in files:
            assert files[key] == ok and refused == 0, (key, ok, refused, files, error)
        elif key in named:
            assert named[key][0] == ok + refused, (key, ok, refused, files, error)
        else:
            unnamed.append(ok + refused)
    assert (len(unnamed), sum(unnamed)) == ((int(more[1]), int(more[2])) if more else (0, 0)), error


# -- 2. defaultdict rows are read as dicts ---------------------------------------------------------------------------
def test_defaultdict_rows_are_never_read_through_their_default(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r0 = collections.defaultdict(float, {"reward": 1.0, "solver_reward": 0.5, "component/fmt": 0.25})
    r1 = collections.defaultdict(float, {"reward": 2.0})
    with RunWriter(run, durable=False, roles=["solver"]) as w:
        w.log_samples(0, [r0, r1])
        no_reward = collections.defaultdict(float, {"solver_reward": 0.5})
        with pytest.raises(SampleError, match="no 'reward'"):
            w.log_samples(1, [no_reward])
    assert dict(r1) == {"reward": 2.0} and dict(no_reward) == {"solver_reward": 0.5}
    t = _table(run, 0)
    assert t.column("roles").to_pylist() == [
        [{"role": "solver", "reward": 0.5, "kl": None}],
        [{"role": "solver", "reward": None, "kl": None}],
    ]
    assert t.column("reward_components").to_pylist() == [[{"name": "fmt", "value": 0.25}], None]


# -- 3. a longdouble anywhere is written as float64 ------------------------------------------------------------------
L = np.longdouble


def _f64(values: Any) -> Any:
    """numpy's own rounding of longdouble values to float64, as Python values."""
    return np.asarray(values, dtype=np.longdouble).astype(np.float64).tolist()


def test_a_longdouble_reward_in_an_object_array_is_written_as_float64(tmp_path: Path) -> None:
    run = tmp_path / "run"
    values = [L(1) / 3, L(2) / 3]
    with RunWriter(run, durable=False) as w:
        w.log_samples(0, {"reward": np.array(values, dtype=object)})
    t = _table(run, 0)
    assert t.schema.field("reward").type == pa.float64()
    assert t.column("reward").to_pylist() == _f64(values)


def test_longdouble_values_in_lists_and_dicts_of_rows_are_written_as_float64(tmp_path: Path) -> None:
    run = tmp_path / "run"
    third = L(1) / 3
    with RunWriter(run, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "x": [third, L(2)], "meta": {"t": third}}, {"reward": 0.0, "x": [third]}])
    t = _table(run, 0)
    assert t.column("x").to_pylist() == [_f64([third, L(2)]), _f64([third])]
    assert t.column("meta").to_pylist() == [{"t": _f64([third])[0]}, None]


def test_a_per_row_longdouble_array_is_a_list_of_float64_as_a_float64_array_is(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lp = [np.array([1, 2], dtype=np.longdouble) / 3, np.array([5], dtype=np.longdouble) / 7]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run, durable=False) as w:
            w.log_samples(0, [{"reward": 1.0, "lp": lp[0]}, {"reward": 2.0, "lp": lp[1]}])
    assert not [c for c in caught if issubclass(c.category, WriterWarning)], [str(c.message) for c in caught]
    t = _table(run, 0)
    assert t.schema.field("lp").type == pa.list_(pa.float64())
    assert t.column("lp").to_pylist() == [_f64(lp[0]), _f64(lp[1])]


# -- 4. a whole last record without its end of line is kept -----------------------------------------------------------
def test_a_whole_last_scalars_record_without_its_end_of_line_is_kept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shard = run / "scalars.p0.jsonl"
    shard.write_bytes(b'{"step": 0, "time": 1.0, "a": 1.0}\n{"step": 1, "time": 2.0, "a": 2.0}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run, durable=False) as w:
            w.log_scalars(2, {"a": 3.0})
    said = [str(c.message) for c in caught if issubclass(c.category, WriterWarning)]
    assert not [m for m in said if "torn" in m], said
    lines = shard.read_text().splitlines()
    assert [json.loads(line)["a"] for line in lines] == [1.0, 2.0, 3.0]
    assert shard.read_bytes().endswith(b"\n")


@pytest.mark.parametrize(
    "last", [b'\x00\x00{"step": 5, "time": 9.0, "a": 999.0}', b'{"step": "5", "time": 9.0, "a": 999.0}']
)
def test_a_last_record_whose_step_the_writer_cannot_read_is_cut_not_kept(tmp_path: Path, last: bytes) -> None:
    """After review: a whole last record whose step the resume cannot read (NUL bytes a crash left before it, a step
    written as text) was completed and kept, and a resume at step 2 left the abandoned attempt's step 5 in the
    run; it is cut, with the torn-line warning, as before."""
    run = tmp_path / "run"
    run.mkdir()
    shard = run / "scalars.p0.jsonl"
    shard.write_bytes(b'{"step": 0, "time": 1.0, "a": 1.0}\n{"step": 1, "time": 2.0, "a": 2.0}\n' + last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(run, durable=False) as w:
            w.log_scalars(2, {"a": 3.0})
    said = [str(c.message) for c in caught if issubclass(c.category, WriterWarning)]
    assert [m for m in said if "torn" in m], said
    lines = shard.read_bytes().splitlines()
    assert [json.loads(line)["a"] for line in lines] == [1.0, 2.0, 3.0]


def test_a_summary_of_things_float_cannot_convert_gives_no_float_hint() -> None:
    from runlog.errors import UsageError
    from runlog.writer import StatsTracker

    with pytest.raises(UsageError) as said:
        StatsTracker().summary("k", [{"a": 1}])
    assert "dict" in str(said.value) and "float()" not in str(said.value)


# -- 5. a call of no rows queued behind a failure loses no rows ------------------------------------------------------
def test_a_call_of_no_rows_queued_behind_the_failure_does_not_drop_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train step 5 has its 4 rows; ``log_samples(5, [])`` is queued behind a failing eval call: step 5 was not
    written, and named "train step 5 (4 rows)" among what was lost."""
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
    run = tmp_path / "run"
    w = RunWriter(run, durable=False)
    w.log_samples(5, _rows(4))
    assert started.wait(10)
    w.log_samples(5, _rows(1, meta=object()), split="eval")
    w.log_samples(5, [])
    go.set()
    with pytest.raises(WriterError) as err:
        w.close()
    assert _files(run, "train") == {5: 4}
    assert "train step 5" not in str(err.value) and "train step 5" not in _state_error(run)
    assert "eval step 5 (1 row)" in _state_error(run)


# -- 6. wording -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [[Fraction(1, 3), Fraction(2, 3)], [Decimal("0.1"), Decimal("0.2")]])
def test_summary_of_fractions_and_decimals_says_to_convert_them(values: list[Any]) -> None:
    t = StatsTracker()
    with pytest.raises(UsageError) as err:
        t.summary("k", values)
    message = str(err.value)
    assert type(values[0]).__name__ in message and "float()" in message
    assert "text" not in message
    assert t.export() == {}


def test_a_refused_call_of_no_rows_names_no_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After review: a call of no rows refused by the writer's error added "train step 7 (0 rows)" to what was not
    written, though nothing of it was lost."""
    real = run_writer.RunWriter._handle

    def handle(self: Any, item: Any) -> Any:
        if item[0] == "scalars":
            raise RuntimeError("boom")
        return real(self, item)

    monkeypatch.setattr(run_writer.RunWriter, "_handle", handle)
    w = RunWriter(tmp_path / "run", durable=False)
    w.log_samples(4, _rows(4))
    w.log_scalars(4, {"a": 1.0})
    deadline = time.monotonic() + 10
    while w._error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(WriterError) as said:
        w.log_samples(7, [])
    assert "step 7" not in str(said.value) and "the scalars of step 4" in str(said.value)
    with contextlib.suppress(WriterError):
        w.close()
