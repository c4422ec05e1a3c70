"""Audit a14 (writer): what is written is what was logged, and bad calls are refused at the call.

- Per-token arrays of a column were copied only when the column's first value was a numpy array: a first row of
  None (a row without tokens), a numpy object array of per-row views, or a first value that is a Python list left
  the views uncopied, and a trainer reusing its batch buffer changed what was written.
- ``roles="solver"`` was split into characters, and ``b"solver"``, ``None``, ``7`` written as their repr.
- A run folder path that is a file gave a bare ``FileExistsError``.
- Steps going backwards, and a scalar key logged twice at a step (the earlier value then in no figure), were
  accepted without a word.
- Messages: a list given as ``metrics``; a polars column named by its Arrow type; an int in a text column written
  as text unsaid.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.errors import UsageError
from runlog.writer import RunWriter, StatsTracker, WriterWarning, _convert
from runlog.writer._convert import SampleError


def _written(run: Path, column: str, step: int = 0) -> list[object]:
    path = run / "samples" / "train" / f"step_{step:08d}.p0.parquet"
    return pq.read_table(path, columns=[column]).column(column).to_pylist()


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WriterWarning)]


# -- 1. reused buffers --------------------------------------------------------------------------------------
@pytest.fixture
def reused(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The writer's thread reads the logged rows only once the test has reused its buffer (set the event): without
    it, a fast writer thread could build its table before the reuse, and an uncopied view would go unnoticed."""
    go = threading.Event()
    resolve = _convert.resolve

    def late(payload: tuple[object, object]) -> object:
        assert go.wait(10)
        return resolve(payload)

    monkeypatch.setattr(_convert, "resolve", late)
    yield go
    go.set()


def test_views_after_a_first_row_of_none_are_copied(tmp_path: Path, reused: threading.Event) -> None:
    logp = np.arange(12, dtype=np.float32).reshape(3, 4)
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "logp": [None, logp[1, :2], logp[2, :3]]})
        logp[:] = -99.0  # the trainer's next step reuses its buffer
        reused.set()
    assert _written(tmp_path / "run", "logp") == [None, [4.0, 5.0], [8.0, 9.0, 10.0]]


def test_object_array_of_views_is_copied_with_its_arrays(tmp_path: Path, reused: threading.Event) -> None:
    logp = np.arange(12, dtype=np.float32).reshape(3, 4)
    col = np.empty(3, dtype=object)
    for i, n in enumerate([1, 2, 3]):
        col[i] = logp[i, :n]
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "logp": col})
        logp[:] = -99.0
        reused.set()
    assert _written(tmp_path / "run", "logp") == [[0.0], [4.0, 5.0], [8.0, 9.0, 10.0]]
    assert all(np.shares_memory(x, logp) for x in col)  # the caller's column is left as it was given


def test_views_after_a_python_list_are_copied(tmp_path: Path, reused: threading.Event) -> None:
    logp = np.arange(12, dtype=np.float64).reshape(3, 4)
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "logp": [[0.5], logp[1, :2], logp[2, :3]]})
        logp[:] = -99.0
        reused.set()
    assert _written(tmp_path / "run", "logp") == [[0.5], [4.0, 5.0], [8.0, 9.0, 10.0]]


# -- 2. roles ------------------------------------------------------------------------------------------------
def test_roles_as_one_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"roles must be a list of role names.*not a str \('solver'\)"):
        RunWriter(tmp_path / "run", roles="solver")  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()  # refused before the folder is made


@pytest.mark.parametrize("bad", [b"solver", None, 7])
def test_role_names_that_are_not_str_are_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(UsageError, match=f"role name {bad!r} is a {type(bad).__name__}; names are str"):
        RunWriter(tmp_path / "run", roles=["judge", bad])  # type: ignore[list-item]


def test_roles_as_a_tuple_are_kept(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run", roles=("solver", "judge")) as w:
        w.log_samples(0, {"reward": [1.0], "solver_reward": [0.5]})
    assert json.loads((tmp_path / "run" / "run.json").read_text())["roles"] == ["solver", "judge"]


# -- 3. a file where the folder should be ---------------------------------------------------------------------
def test_run_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "a_file"
    f.write_text("")
    with pytest.raises(UsageError, match=f"{f} is a file, not a folder"):
        RunWriter(f)
    with pytest.raises(UsageError, match=f"{f} is a file, not a folder: the run folder {f / 'run'}"):
        RunWriter(f / "run")


# -- 4. steps going backwards, a key logged twice -------------------------------------------------------------
def test_samples_going_backwards_are_written_and_said_once(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught, RunWriter(tmp_path / "run") as w:
        warnings.simplefilter("always")
        w.log_samples(5, {"reward": [5.0]})
        w.log_samples(3, {"reward": [3.0]})
        w.log_samples(2, {"reward": [2.0]})
        w.log_samples(0, {"reward": [0.0]}, split="eval")  # another split's own steps
    said = [m for m in _messages(caught) if "went backwards" in m]
    assert said == [
        "runlog: train samples of step 3 logged after step 5: the steps of train went backwards (step 3 is written "
        "as a file of its own, nothing is overwritten); said once per writer"
    ]
    assert [_written(tmp_path / "run", "reward", s) for s in (2, 3, 5)] == [[2.0], [3.0], [5.0]]


def test_scalars_going_backwards_and_a_key_logged_again_are_said(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught, RunWriter(tmp_path / "run") as w:
        warnings.simplefilter("always")
        w.log_scalars(5, {"loss": 5.0})
        w.log_scalars(3, {"loss": 3.0})
        w.log_scalars(5, {"loss": 50.0, "acc": 1.0})
        w.log_scalars(5, {"loss": 51.0})  # said once per writer
        w.log_scalars(6, {"lr": 1.0})
        w.log_scalars(6, {"acc": 1.0})  # other keys at one step: nothing to say
        w.flush()
        stats = w.stats()
    said = _messages(caught)
    assert said == [
        "runlog: scalars of step 3 logged after step 5: steps went backwards (the line is written; a key logged "
        "again at a step is read back as its later value); said once per writer",
        "runlog: scalar key 'loss' logged again at step 5: both lines are written, and readers keep the later value, "
        "so the earlier one is in no figure; log a key once per step (said once per writer)",
    ]
    assert [m.removeprefix("runlog: ") for m in said] == stats["warnings"]
    lines = (tmp_path / "run" / "scalars.p0.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [5, 3, 5, 5, 6, 6]  # every line written


def test_a_tracker_key_committed_after_log_scalars_of_the_step_is_said(tmp_path: Path) -> None:
    tracker = StatsTracker()
    with warnings.catch_warnings(record=True) as caught, RunWriter(tmp_path / "run") as w:
        warnings.simplefilter("always")
        w.log_scalars(4, {"loss": 1.0})
        tracker.scalar(loss=2.0)
        tracker.commit(4, w)
    assert [m for m in _messages(caught) if "'loss' logged again at step 4" in m]


# -- 5. messages ------------------------------------------------------------------------------------------------
def test_metrics_that_are_not_a_mapping_say_so(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run") as w, pytest.raises(UsageError, match=r"^metrics must be a mapping .* list$"):
        w.log_scalars(0, [("a", 1.0)])  # type: ignore[arg-type]


def test_polars_refusals_name_the_polars_dtype(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"reward": [1.0], "solver_reward": ["0.5"]})
    with RunWriter(tmp_path / "run", roles=["solver"]) as w:
        with pytest.raises(SampleError, match=r"^solver_reward is a polars column of String; ") as err:
            w.log_samples(0, frame)
        assert "large_string" not in str(err.value)
        with pytest.raises(SampleError, match=r"^reward is a polars column of String; rewards are numbers"):
            w.log_samples(0, pl.DataFrame({"reward": ["1.0"]}))


def test_values_that_are_not_text_in_a_text_column_are_said_once(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught, RunWriter(tmp_path / "run") as w:
        warnings.simplefilter("always")
        w.log_samples(0, {"reward": [1.0, 2.0], "completion": [5, "five"], "group_id": ["a", "b"]})
        w.log_samples(1, {"reward": [1.0], "completion": [6]})
        w.log_samples(2, pa.table({"reward": [1.0], "group_id": pa.array([7], pa.int64())}))
    said = _messages(caught)
    assert said == [
        "runlog: column 'completion' of train step 0 holds values of type int, not text: written as their text "
        "(str(), so 5 as '5'); give text to have what is written be what you logged (said once per column)",
        "runlog: column 'group_id' of train step 2 holds an Arrow column of int64, not text: written as their text "
        "(str(), so 5 as '5'); give text to have what is written be what you logged (said once per column)",
    ]
    assert _written(tmp_path / "run", "completion") == ["5", "five"]
    assert _written(tmp_path / "run", "group_id", 2) == ["7"]
