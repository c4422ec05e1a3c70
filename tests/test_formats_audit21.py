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

Re-audit (r_steps): a float16 step column's 2.5 read as 2; ``"\x1c10"`` crashed the readers (``str.strip`` and
``int`` disagree on space); a TRL file named beyond int64 was no longer checked against its rows (a copy counted
twice, unsaid); an object's float steps were dropped uncounted; values the footer's statistics hide (NaN, a text
between two spellings of one step), a dictionary-encoded TRL step column and steps beyond int64 are said.

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

from object_stores import s3_server  # noqa: F401
from runlog import open_run

from conftest import SAMPLE_RUNS, make_native_run

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
    # (re-audit) said when the samples are read, not only by ``inspect``: summarize was silent
    [(kind, warning, message)] = problems(run, f"{HUGE}.jsonl")
    assert warning and f"named step {HUGE}, beyond the 64-bit integer range" in message
    assert f"its {len(records)} line(s) without a step field of their own (first: line 1) have no step" in message
    r = cli("inspect", tmp_path / "dumps", "--format", "json")
    said = json.loads(r.stdout)["problems"]
    assert sorted(p["kind"] for p in said) == ["warning", "wrong_type"] and all(HUGE in p["message"] for p in said)


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
    # (re-audit) the TRL file's rows tell their step: said, and counted there, not at no step
    trl = open_run(tmp_path / "trl")
    said = [m for _, w, m in problems(trl, f"completions/completions_{HUGE}.parquet") if w]
    assert said == [f"named step {HUGE} but its rows are of step 1: they count at their own step"]
    assert steps_of(trl) == {1: trl_rows}


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


# -- re-audit (r_steps): F1 float16, F2 separators, F3 TRL names beyond int64, F4 objects, F5 other routes --------


def whole_step(v: Any) -> int | None:
    """The independent truth of a float step: a finite whole number of the 64-bit range (Python's float), else
    none; a numpy float16 taken as the Python float it is exactly."""
    x = float(v)
    return int(x) if math.isfinite(x) and x.is_integer() and -(2**63) <= int(x) < 2**63 else None


FLOAT_TYPES = {"float16": pa.float16(), "float32": pa.float32(), "float64": pa.float64()}


def float_array(values: list[float], width: str) -> pa.Array:
    import numpy as np

    return pa.array(np.array(values, dtype=width), FLOAT_TYPES[width])


@pytest.mark.parametrize("width", sorted(FLOAT_TYPES))
def test_step_expr_reads_every_float_width_as_python_does(width: str) -> None:
    """F1: polars' ``floor`` of a Float16 is the value itself, so 2.5 passed the whole-number test and read as 2."""
    import polars as pl

    from runlog.formats.common import step_expr, unusable_step

    values = [2.0, 2.5, -0.0, -3.0, 0.5, 1024.0, 1023.5, 65504.0, math.inf, math.nan, 7.75]
    arr = float_array(values, width)
    frame = pl.from_arrow(pa.table({"step": arr}))
    assert isinstance(frame, pl.DataFrame)
    dtype = frame.schema["step"]
    got = frame.select(step_expr("step", dtype).alias("s"), unusable_step("step", dtype).alias("u"))
    truth = [whole_step(v) for v in arr.to_pylist()]  # pyarrow's values, as the file holds them
    assert got["s"].to_list() == truth
    assert got["u"].to_list() == [t is None for t in truth]


@pytest.mark.parametrize("width", sorted(FLOAT_TYPES))
def test_a_native_float16_step_column_leaves_its_half_steps_out(tmp_path: Path, width: str) -> None:
    """F1: a native file named step 2 whose float16 steps are [2.0] * 5 + [2.5] counted all 6 rows at step 2
    without a word (before a486e74 a warning said it)."""
    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    rel = "samples/train/step_00000002.p0.parquet"
    table = pq.read_table(run_dir / rel)
    n = table.num_rows
    steps = float_array([2.0] * (n - 1) + [2.5], width)
    table = table.set_column(table.schema.get_field_index("step"), "step", steps)
    pq.write_table(table, run_dir / rel)
    run = open_run(run_dir)
    [(problem, warning, message)] = problems(run, rel)
    assert problem == "wrong_type" and not warning
    assert "holds values that are not whole steps (2.5): 1 of its" in message
    got = Counter(run.samples.select("split", "step").collect().iter_rows())
    truth: Counter = Counter()
    for f in sorted((run_dir / "samples").glob("*/*.parquet")):
        for v in pq.read_table(f, columns=["step"]).column("step").to_pylist():
            s = v if isinstance(v, int) else whole_step(v)
            if s is not None:
                truth[(f.parent.name, s)] += 1
    assert got == truth
    assert run.samples.filter(pl_source(rel)).select("step").collect()["step"].to_list() == [2] * (n - 1)


SPACES = sorted({chr(c) for c in range(0x3001) if chr(c).isspace()} | {"\u3000", "\x00", "\x1b", "\u200b", "\ufeff"})


def int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def test_coerce_step_and_step_expr_read_white_space_as_int_does() -> None:
    """F2: ``coerce_step("\\x1c10")`` raised ValueError (``str.strip`` takes \\x1c-\\x1f as space, ``int`` does
    not), and ``step_expr`` gave null there: both now read a step's text where Python's ``int`` does, and only
    there (the independent truth), in a text column and a dictionary-encoded one alike."""
    import polars as pl

    from runlog.formats.common import coerce_step, step_expr

    texts = [f"{c}10" for c in SPACES] + [f"10{c}" for c in SPACES] + [f"{c}-7{c}" for c in SPACES]
    truth = [int_or_none(t) for t in texts]
    assert truth.count(None) >= 4 * 3  # the separators and the non-spaces are refused by int
    assert [coerce_step(t) for t in texts] == truth
    for dtype in (pl.String, pl.Categorical):
        frame = pl.DataFrame({"step": pl.Series(texts, dtype=dtype)})
        assert frame.select(step_expr("step", frame.schema["step"]))["step"].to_list() == truth


def test_a_trl_step_text_with_a_separator_counts_at_the_names_step_said(tmp_path: Path) -> None:
    """F2: a TRL file whose step column holds ``"\\x1c10"`` read at step 10 before a486e74; then it was lost
    (``could not be read as trl: ValueError``). Now it counts at its name's step, with a warning naming it."""
    rows = write_trl(tmp_path / "run", "completions_00010.parquet", ["\x1c10"] * 4)
    run = open_run(tmp_path / "run")
    [(kind, warning, message)] = problems(run, "completions/completions_00010.parquet")
    assert warning and 'no integer step (step "\\u001c10")' in message
    assert steps_of(run) == {10: rows}


def test_a_verl_step_text_with_a_separator_is_left_out_not_a_crash(tmp_path: Path) -> None:
    """F2 (verl, before a486e74 too): ``"\\x1c4"`` made the whole dump unreadable (ValueError)."""
    records = [verl_line(0, step=4), verl_line(1, step="\x1c4"), verl_line(2, step=" 4\n")]
    write_jsonl(tmp_path / "rollout" / "4.jsonl", records)
    run = open_run(tmp_path / "rollout")
    [(kind, warning, message)] = problems(run, "4.jsonl")
    assert kind == "wrong_type" and not warning
    assert message.startswith('1 line(s) whose step is no integer step (first: line 2, step "\\u001c4")')
    truth = Counter(int_or_none(str(r["step"])) for r in records)
    del truth[None]
    assert steps_of(run) == truth == {4: 2}


def test_a_trl_file_named_beyond_int64_is_checked_against_its_rows(cli, tmp_path: Path) -> None:
    """F3: a byte copy of completions_00005 named completions_99999999999999999999 was warned twice before
    a486e74 (its rows' step 5; a copy counted twice); then summarize said nothing."""
    folder = tmp_path / "run"
    rows = write_trl(folder, "completions_00005.parquet", ["5"] * 4)
    shutil.copyfile(
        folder / "completions" / "completions_00005.parquet", folder / "completions" / f"completions_{HUGE}.parquet"
    )
    run = open_run(folder)
    said = [m for _, w, m in problems(run, f"completions/completions_{HUGE}.parquet") if w]
    assert f"named step {HUGE} but its rows are of step 5: they count at their own step" in said
    assert any(m.startswith("byte for byte the same as completions/completions_00005.parquet") for m in said)
    assert steps_of(run) == {5: 2 * rows}  # both read, as the warning says
    r = cli("summarize", folder, "--format", "json")
    assert r.exit_code == 0 and f"named step {HUGE} but its rows are of step 5" in " ".join(r.stderr.split())


def test_a_trl_file_named_beyond_int64_without_a_step_column_is_said(cli, tmp_path: Path) -> None:
    """F5: its rows read with no step, and only ``inspect`` said so; summarize was silent."""
    folder = tmp_path / "run"
    (folder / "completions").mkdir(parents=True)
    table = pa.table({"prompt": ["p0", "p1", "p2"], "completion": ["c"] * 3, "acc": [1.0] * 3})
    pq.write_table(table, folder / "completions" / f"completions_{HUGE}.parquet")
    run = open_run(folder)
    [(_, warning, message)] = problems(run, f"completions/completions_{HUGE}.parquet")
    assert warning and f"named step {HUGE}, beyond the 64-bit integer range a step is stored in" in message
    assert "its rows have no step" in message
    assert steps_of(run) == {None: table.num_rows}
    r = cli("summarize", folder, "--format", "json")
    assert r.exit_code == 0 and "its rows have no step" in " ".join(r.stderr.split())


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        ([10.0, math.nan, 10.0], "NaN"),  # statistics leave NaN out: min = max = 10.0
        ([" 10", " 5x", "10"], '" 5x"'),  # between two spellings of 10: the statistics show only those
    ],
    ids=["nan", "spellings"],
)
def test_a_trl_value_the_statistics_hide_is_found(tmp_path: Path, steps: list[Any], shown: str) -> None:
    """F5: a float column's NaN (Parquet statistics leave it out) or a bad text between two spellings of one step
    was never looked at: the row counted at the name's step without a word."""
    rows = write_trl(tmp_path / "run", "completions_00010.parquet", steps)
    md = pq.read_metadata(tmp_path / "run" / "completions" / "completions_00010.parquet")
    st = md.row_group(0).column(0).statistics
    bounds = [v.decode() if isinstance(v, bytes) else v for v in (st.min, st.max)]
    assert all(int_or_none(str(v)) == 10 or v == 10.0 for v in bounds)  # the footer shows step 10 alone
    run = open_run(tmp_path / "run")
    [(_, warning, message)] = problems(run, "completions/completions_00010.parquet")
    assert warning and f"no integer step (step {shown})" in message
    assert "all its rows count at step 10" in message
    assert steps_of(run) == {10: rows}


def test_a_trl_dictionary_step_column_of_several_steps_counts_at_its_rows_steps(tmp_path: Path) -> None:
    """F5: a dictionary-encoded (Categorical) step column read as no step in every row: a file of steps 10 and
    12 was said to hold a value that is no step ("10") and counted whole at 10."""
    folder = tmp_path / "run"
    (folder / "completions").mkdir(parents=True)
    steps = ["10", "10", "12", " 12"]
    table = pa.table({"step": pa.array(steps).dictionary_encode(), "prompt": ["p"] * 4, "completion": ["c"] * 4})
    pq.write_table(
        table.append_column("acc", pa.array([1.0] * 4)), folder / "completions" / "completions_00010.parquet"
    )
    run = open_run(folder)
    [(_, warning, message)] = problems(run, "completions/completions_00010.parquet")
    assert warning and "rows are of several steps (10 and 12 among them)" in message
    assert steps_of(run) == Counter(int(s) for s in steps)


def test_a_native_uint64_step_beyond_int64_is_not_said_to_count_at_its_own_step(tmp_path: Path) -> None:
    """F5: the warning said the rows of 2**63 and 2**64 - 1 'count at their own steps': they are read with no
    step."""
    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run_dir)
    rel = "samples/train/step_00000002.p0.parquet"
    n = pq.read_metadata(run_dir / rel).num_rows
    values = [2] * (n - 2) + [2**63, 2**64 - 1]
    set_steps(run_dir / rel, values, pa.uint64())
    run = open_run(run_dir)
    [(_, warning, message)] = problems(run, rel)
    assert warning and message.startswith(f"named step 2 but its rows are of steps 2, {2**63}, {2**64 - 1}: ")
    assert f"those of step {2**63}, {2**64 - 1} are beyond the 64-bit integer range" in message
    assert "read with no step" in message
    got = run.samples.filter(pl_source(rel)).select("step").collect()["step"].to_list()
    assert Counter(got) == Counter(v if v < 2**63 else None for v in values)


def pl_source(rel: str) -> Any:
    import polars as pl

    return pl.col("source") == rel


def test_native_float_steps_of_an_object_are_counted_and_said_as_a_local_files(
    s3_server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """F4: on an object store, rows whose float step is no integer step (3.5, NaN) were left out at exit 0 with a
    warning that counted none of them (and said, untrue, that the footer has no statistics of the column), and
    every object of whole float steps got that warning too. Now an object's step column alone is read (its
    statistics leave NaN out, so they settle nothing): the same error, values and count as a local file's."""
    from runlog.storage import Store

    local = make_native_run(tmp_path / "run", steps=range(4), scalars=False)
    bad_rel, whole_rel = "samples/train/step_00000001.p0.parquet", "samples/train/step_00000002.p0.parquet"
    n = pq.read_metadata(local / bad_rel).num_rows
    set_steps(local / bad_rel, [1.0] * (n - 3) + [3.5, math.nan, 3.5], pa.float64())
    set_steps(local / whole_rel, [2.0] * n, pa.float64())
    stats = (
        pq.read_metadata(local / bad_rel).row_group(0).column(pq.read_schema(local / bad_rel).get_field_index("step"))
    )
    assert stats.statistics.min == 1.0 and stats.statistics.max == 3.5  # NaN is in no statistic
    url = f"s3://{s3_server.fresh_bucket()}/run"
    s3_server.upload_dir(local, url)
    Store._cache.clear()
    try:
        run = open_run(url, storage_options=s3_server.storage_options)
        [(problem, warning, message)] = problems(run, bad_rel)
        assert problem == "wrong_type" and not warning
        assert message.startswith("named step 1, but its step column holds values that are not whole steps (3.5, NaN)")
        assert f"3 of its {n} rows, left out" in message
        assert problems(run, whole_rel) == []  # before: a warning on every object of float steps
        got = Counter(run.samples.select("split", "step").collect().iter_rows())
        assert got == native_counts(local)
        assert sum(got.values()) == 4 * n - 3
    finally:
        Store._cache.clear()
