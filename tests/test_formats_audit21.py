"""A step that is there but is no integer step (``7.5``, ``true``, ``"ten"``, beyond int64), in the readers other than
inspect_ai (tests/test_inspect_ai_audit21.py): never put at another step without a word.

- verl: a line's unusable ``step`` was replaced by the step the file's name tells (or by none): now the line is left
  out, a ``wrong_type`` error naming the file, the count, the first line and its value.
- TRL: a ``step`` column holding such a value left the file at its name's step without a word, or (a file of
  several steps) read ``10.5`` as 10 and ``"10.5"`` as no step; ``"--10"`` made the file unreadable. Now every row
  counts at the name's step (the reader's documented fallback), with a warning naming the value.
- native: a float or boolean ``step`` column (another writer's) was cast, ``7.5`` to 7 and ``true`` to 1: such rows
  are left out now, an error naming the file, the values and the count.
- a file's name that tells a step beyond int64 (``99999999999999999999.jsonl``) failed the read (verl) or the whole
  command (TRL, Flink): its rows read with no step, as ``inspect`` already says (an error of the file).

Expected counts come from the data as written here (``json``, ``pyarrow``), never from runlog's code."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run

from conftest import SAMPLE_RUNS

HUGE = "99999999999999999999"  # beyond 2**63 - 1
BAD_STEPS: list[Any] = [7.5, True, "ten", "7.5", 2**63, -(2**63) - 1]


def problems(run: Any, path: str) -> list[tuple[str, bool, str]]:
    return [(p.kind, p.is_warning, p.message) for p in run.problems if p.path == path]


def steps_of(run: Any) -> Counter:
    return Counter(run.samples.select("step").collect()["step"].to_list())


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def verl_line(i: int, **step: Any) -> dict[str, Any]:
    return {"input": f"q{i}", "output": f"a{i}", "score": float(i % 2), **step}


# -- verl ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_STEPS, ids=repr)
def test_a_verl_line_whose_step_is_no_integer_is_left_out_with_an_error(cli, tmp_path: Path, bad: Any) -> None:
    folder = tmp_path / "rollout"
    # Steps read as scalar records' are: "10" and 10.0 are 10; a null step is no step (the name's).
    good = [verl_line(0, step=10), verl_line(1, step="10"), verl_line(2, step=10.0), verl_line(3, step=None)]
    records = good[:2] + [verl_line(9, step=bad)] + good[2:] + [verl_line(8, step=bad)]
    write_jsonl(folder / "10.jsonl", records)
    write_jsonl(folder / "11.jsonl", [verl_line(i, step=11) for i in range(3)])
    run = open_run(folder)
    [(kind, warning, message)] = [p for p in problems(run, "10.jsonl") if not p[1]]
    assert kind == "wrong_type" and not warning
    first = str(bad) if isinstance(bad, int) and not isinstance(bad, bool) else json.dumps(bad)
    assert message.startswith(f"2 line(s) whose step is no integer step (first: line 3, step {first}")
    assert "left out" in message and "not read at step 10" in message
    # Before: both bad lines counted at step 10, the step the file's name tells.
    assert steps_of(run) == {10: len(good), 11: 3}
    assert run.samples.collect().height == len(records) - 2 + 3
    r = cli("inspect", folder, "--format", "json")
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_a_verl_dump_named_by_no_step_leaves_such_lines_out_too(tmp_path: Path) -> None:
    records = [verl_line(0, step=4), verl_line(1, step=4.5), verl_line(2, step=-3), verl_line(3, step="x")]
    write_jsonl(tmp_path / "dumps" / "dump.jsonl", records)
    run = open_run(tmp_path / "dumps")
    [(kind, _, message)] = [p for p in problems(run, "dump.jsonl") if not p[1]]
    assert kind == "wrong_type"
    assert message.startswith("2 line(s) whose step is no integer step (first: line 2, step 4.5")
    assert steps_of(run) == {4: 1, -3: 1}  # a negative step reads as it is; before, the two bad lines had no step


def test_a_verl_dump_named_beyond_int64_is_read_with_no_step(cli, tmp_path: Path) -> None:
    records = [verl_line(i) for i in range(3)]
    write_jsonl(tmp_path / "dumps" / f"{HUGE}.jsonl", records)
    run = open_run(tmp_path / "dumps")
    [info] = run.files
    assert info.readable  # before: unreadable ("TypeError: unexpected value while building Series of type Int64")
    assert steps_of(run) == {None: len(records)}
    r = cli("inspect", tmp_path / "dumps", "--format", "json")
    said = json.loads(r.stdout)["problems"]
    assert [p["kind"] for p in said] == ["wrong_type"] and HUGE in said[0]["message"]


# -- TRL ----------------------------------------------------------------------------------------------------------


def write_trl(folder: Path, name: str, steps: list[Any]) -> int:
    n = len(steps)
    table = pa.table({"step": steps, "prompt": [f"p{i}" for i in range(n)], "completion": ["c"] * n, "acc": [1.0] * n})
    (folder / "completions").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "completions" / name)
    return pq.read_metadata(folder / "completions" / name).num_rows


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        (["10", "10.5"], '"10.5"'),
        ([10.0, 7.5], "7.5"),
        (["12", "12.5"], '"12.5"'),  # the name's step stands for the "12" row too: said
        (["10", "ten"], '"ten"'),
        (["--10", "--10"], '"--10"'),  # before: unreadable (int("--10") failed)
        ([True, True], "true"),
        (["10", "10.5", "12"], '"10.5"'),  # several steps: the bad value lies between the footer's bounds
        ([10.0, 10.5, 12.0], "10.5"),  # before: 10.5 read as 10, 12 at 12
    ],
    ids=repr,
)
def test_a_trl_step_column_with_no_integer_step_counts_at_the_names_step_said(
    tmp_path: Path, steps: list[Any], shown: str
) -> None:
    rows = write_trl(tmp_path / "run", "completions_00010.parquet", steps)
    run = open_run(tmp_path / "run")
    [(kind, warning, message)] = problems(run, "completions/completions_00010.parquet")
    assert warning and f"no integer step (step {shown})" in message
    assert "all its rows count at step 10, the step its name tells" in message
    assert steps_of(run) == {10: rows}


def test_a_trl_file_of_several_integer_steps_still_counts_at_its_rows_steps(tmp_path: Path) -> None:
    write_trl(tmp_path / "run", "completions_00010.parquet", ["10", "12", "11"])
    run = open_run(tmp_path / "run")
    [(_, warning, message)] = problems(run, "completions/completions_00010.parquet")
    assert warning and "rows are of several steps" in message
    assert steps_of(run) == {10: 1, 11: 1, 12: 1}


def test_names_beyond_int64_leave_the_command_working(cli, tmp_path: Path) -> None:
    """TRL and Flink: a file named with a step beyond int64 failed every command that read the samples."""
    trl_rows = write_trl(tmp_path / "trl", f"completions_{HUGE}.parquet", ["1", "1"])
    flink = tmp_path / "flink" / "flink_logs"
    flink.mkdir(parents=True)
    source = sorted((SAMPLE_RUNS / "flink_mixed" / "flink_logs").glob("batch_debug_data_train_*.parquet"))[0]
    shutil.copyfile(source, flink / f"batch_debug_data_train_{HUGE}.parquet")
    flink_rows = pq.read_metadata(source).num_rows
    for folder, rows in ((tmp_path / "trl", trl_rows), (tmp_path / "flink", flink_rows)):
        r = cli("summarize", folder, "--format", "json")
        assert r.exit_code == 0 and "internal error" not in r.output, r.output
        assert open_run(folder).samples.collect().height == rows
    assert steps_of(open_run(tmp_path / "flink")) == {None: flink_rows}  # as inspect says: no step


# -- native -------------------------------------------------------------------------------------------------------


def native_counts(run_dir: Path) -> Counter:
    """(split, step) -> rows, from every sample file's ``step`` column as pyarrow reads it: integers as they are,
    a float only where it is whole (NaN, 7.5 and bools are no step)."""
    out: Counter = Counter()
    for f in sorted((run_dir / "samples").glob("*/*.parquet")):
        for v in pq.read_table(f, columns=["step"]).column("step").to_pylist():
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
                continue
            out[(f.parent.name, int(v))] += 1
    return out


def set_steps(path: Path, steps: list[Any], type_: pa.DataType) -> None:
    table = pq.read_table(path)
    table = table.set_column(table.schema.get_field_index("step"), "step", pa.array(steps, type_))
    pq.write_table(table, path)


@pytest.mark.parametrize(
    ("kind", "values", "shown"),
    [
        ("float", lambda n: [3.0] * (n - 3) + [7.5, math.nan, 7.5], "(7.5, NaN)"),
        ("all", lambda n: [7.5] * n, "(7.5)"),
        ("bool", lambda n: [True] * n, "(true)"),
    ],
)
def test_native_rows_whose_step_is_no_integer_are_left_out_not_rounded(
    tmp_path: Path, kind: str, values: Any, shown: str
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    rel = "samples/train/step_00000003.p0.parquet"
    n = pq.read_metadata(run_dir / rel).num_rows
    steps = values(n)
    set_steps(run_dir / rel, steps, pa.bool_() if kind == "bool" else pa.float64())
    bad = sum(1 for v in steps if isinstance(v, bool) or not float(v).is_integer())
    run = open_run(run_dir)
    [(problem, warning, message)] = problems(run, rel)
    assert problem == "wrong_type" and not warning
    assert message.startswith(f"named step 3, but its step column holds values that are not whole steps {shown}")
    assert f"{bad} of its {n} rows, left out" in message
    got = Counter(run.samples.select("split", "step").collect().iter_rows())
    # Before: 7.5 counted at step 7, true at step 1, NaN at no step.
    assert got == native_counts(run_dir)
    assert sum(got.values()) == sum(pq.read_metadata(f).num_rows for f in (run_dir / "samples").glob("*/*")) - bad
