"""The writer audit's fifth round: a full disk never tears a scalars line silently, a refused commit keeps its
step, a resumed run never mixes two attempts' numbers, bad input is refused at the call (or, for an extra column
of mixed types, kept as text with a warning), JAX counts are exact, configs are written as JSON.

Expected values come from numpy, pyarrow and json, never from the writer's own code.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import json
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
import runlog.writer
from runlog.writer import QueueFullError, RunWriter, SampleError, StatsTracker, WriterError

# Imported this way so that each test fails on its own (not at import) on a writer without the class.
WriterWarning = getattr(runlog.writer, "WriterWarning", UserWarning)


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


def _records(path: Path) -> list[dict]:
    """Every line of a JSONL file parsed; a line that is not JSON fails the test (a torn or glued line)."""
    return [json.loads(line) for line in _lines(path)]


def _is_scalars_fd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith("scalars.p0.jsonl")
    except OSError:
        return False


def _sample_steps(root: Path, split: str, process: int = 0) -> dict[int, list]:
    """{step: rewards} of one split and process, read with pyarrow."""
    out = {}
    for f in sorted((root / "samples" / split).glob(f"step_*.p{process}.parquet")):
        out[int(f.name[5:13])] = pq.read_table(f).column("reward").to_pylist()
    return out


# -- 1. short writes -------------------------------------------------------------------------------------------
def test_a_short_write_is_completed(tmp_path, monkeypatch):
    """``write`` may write less than asked without failing: the rest is written, the line is whole."""
    real = os.write

    def half(fd, data):
        if _is_scalars_fd(fd) and len(data) > 1:
            return real(fd, bytes(data[: len(data) // 2]))
        return real(fd, data)

    monkeypatch.setattr(os, "write", half)
    with RunWriter(tmp_path, durable=False) as w:
        for s in range(3):
            w.log_scalars(s, {f"k{i}": float(i * s) for i in range(200)})
    monkeypatch.undo()
    records = _records(tmp_path / "scalars.p0.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all(r[f"k{i}"] == float(i * r["step"]) for r in records for i in range(200))


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_a_full_disk_tearing_a_line_is_an_error_and_never_glues_lines(tmp_path, monkeypatch, truncate_fails):
    real = os.write
    state = {"full": False, "room": True}

    def disk_full(fd, data):
        if state["full"] and _is_scalars_fd(fd):
            if state["room"]:  # what fits: part of the line, then nothing
                state["room"] = False
                return real(fd, bytes(data[:100]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", disk_full)
    if truncate_fails:

        def no_truncate(fd, size):
            raise OSError(errno.EIO, "cannot truncate")

        monkeypatch.setattr(os, "ftruncate", no_truncate)
    w = RunWriter(tmp_path, durable=False)
    w.log_scalars(0, {"loss": 1.0})
    w.flush()
    state["full"] = True
    w.log_scalars(1, {f"k{i}": float(i) for i in range(300)})  # about 4 KB: torn after 100 bytes
    with pytest.raises(WriterError, match="No space left|ENOSPC|Errno 28"):
        w.flush()
    state["full"] = False  # space is freed
    with pytest.raises(WriterError):
        w.log_scalars(2, {"loss": 0.5})
    w.close()  # already reported
    assert w.stats()["scalar_lines"] == 1  # the torn line was never counted as written
    monkeypatch.undo()
    lines = _lines(tmp_path / "scalars.p0.jsonl")
    assert json.loads(lines[0]) == {"step": 0, "time": json.loads(lines[0])["time"], "loss": 1.0}
    if not truncate_fails:
        assert len(lines) == 1  # the torn part was cut off
    else:
        assert len(lines) == 2 and len(lines[1]) == 100  # left torn: the next writer cuts it
    with RunWriter(tmp_path, durable=False) as w2:  # a resumed writer: appends after whole lines only
        w2.log_scalars(3, {"loss": 0.25})
    records = _records(tmp_path / "scalars.p0.jsonl")
    assert [(r["step"], r.get("loss")) for r in records] == [(0, 1.0), (3, 0.25)]


# -- 2. a commit refused with QueueFullError keeps the tracker as it was -------------------------------------
def test_a_commit_refused_with_queue_full_keeps_its_step_for_the_retry(tmp_path):
    gate = threading.Event()
    safety = threading.Timer(20, gate.set)  # a regression that blocks instead of raising fails, not hangs
    safety.start()

    def gather(v):  # the background thread waits here while the test fills the queue
        gate.wait()
        return np.asarray(v)[None, :]

    t = StatsTracker(process_count=2, process_index=0, gather=gather)
    w = RunWriter(tmp_path, max_queue=1, on_full="raise", durable=False)
    try:
        t.scalar(loss=0.0)
        t.commit(0, w)  # taken by the background thread, which waits in the gather
        while w.stats()["queue_size"]:
            time.sleep(0.001)
        w.log_scalars(0, {"other": 1.0})  # fills the queue
        losses = [0.5, 0.25, 1.0]
        rewards = np.array([1.0, 2.0, 4.0, 8.0, np.nan])
        for v in losses:
            t.scalar(loss=v)
        t.summary("r", rewards)
        with pytest.raises(QueueFullError):
            t.commit(1, w)
        assert t.last_step == 0  # not moved by the refused commit
        assert w.stats()["queue_full"] == 1
    finally:
        gate.set()
        safety.cancel()
    while True:  # the documented retry
        try:
            pending = t.commit(1, w)
            break
        except QueueFullError:
            time.sleep(0.001)
    w.close()
    assert t.last_step == 1
    finite = rewards[np.isfinite(rewards)]
    expected = {
        "loss": np.mean(losses),
        "loss__count": 3,
        "r/mean": finite.mean(),
        "r/std": finite.std(),
        "r/min": finite.min(),
        "r/max": finite.max(),
        "r/count": finite.size,
        "r/nonfinite": 1,
    }
    (line,) = [r for r in _records(tmp_path / "scalars.p0.jsonl") if r["step"] == 1]
    for k, v in expected.items():
        assert line[k] == pytest.approx(v, rel=1e-12), k
        assert pending[k] == pytest.approx(v, rel=1e-12), k
    stats = w.stats()
    assert stats["queue_full"] >= 1
    assert stats["commit_calls"] == 2 and stats["scalar_calls"] == 1 and stats["calls"] == 3


# -- 3. a resumed run never mixes two attempts' numbers --------------------------------------------------------
def _crashed_run(root: Path) -> None:
    """Run 1: train steps 0-9 (rewards 100+s), eval every 2 steps, one loss line per step; process 1 too."""
    with RunWriter(root, durable=False) as w:
        for s in range(10):
            w.log_samples(s, {"reward": [100.0 + s] * 2})
            if s % 2 == 0:
                w.log_samples(s, {"reward": [100.0 + s]}, split="eval")
            w.log_scalars(s, {"loss": 100.0 + s})
    with RunWriter(root, durable=False, process_index=1) as w:
        for s in range(10):
            w.log_samples(s, {"reward": [500.0 + s]})


def test_a_resumed_writer_drops_the_old_samples_of_the_steps_it_replays_and_later(tmp_path):
    _crashed_run(tmp_path)
    replayed = r"step 5.*samples/eval steps 6, 8.*samples/train steps 5-9"
    with pytest.warns(WriterWarning, match=replayed) as caught, RunWriter(tmp_path, durable=True) as w:
        for s in range(5, 8):  # resumed from the checkpoint of step 5, stopped after step 7
            w.log_samples(s, {"reward": [300.0 + s] * 3})
            w.log_scalars(s, {"loss": 300.0 + s})
    stats = w.stats()
    assert len([c for c in caught if issubclass(c.category, WriterWarning)]) == 1
    assert any("samples/train steps 5-9" in m for m in stats["warnings"])
    train = _sample_steps(tmp_path, "train")
    assert train == {s: [100.0 + s] * 2 for s in range(5)} | {s: [300.0 + s] * 3 for s in range(5, 8)}
    assert _sample_steps(tmp_path, "eval") == {0: [100.0], 2: [102.0], 4: [104.0]}
    loss = [(r["step"], r["loss"]) for r in _records(tmp_path / "scalars.p0.jsonl")]
    assert loss == [(s, 100.0 + s) for s in range(5)] + [(s, 300.0 + s) for s in range(5, 8)]
    assert _sample_steps(tmp_path, "train", process=1) == {s: [500.0 + s] for s in range(10)}  # not its shard
    # Nothing is deleted: what the resume took out is kept, whole, in a hidden folder readers never list.
    [kept] = (tmp_path / ".superseded").iterdir()
    assert str(kept) in stats["warnings"][0]
    assert sorted(p.name for p in (kept / "samples" / "train").iterdir()) == [
        f"step_{s:08d}.p0.parquet" for s in range(5, 10)
    ]
    assert pq.read_table(kept / "samples" / "train" / "step_00000009.p0.parquet")["reward"].to_pylist() == [109.0] * 2
    assert sorted(p.name for p in (kept / "samples" / "eval").iterdir()) == [
        "step_00000006.p0.parquet",
        "step_00000008.p0.parquet",
    ]
    assert [r["step"] for r in _records(kept / "scalars.p0.jsonl")] == list(range(5, 10))
    from runlog import open_run

    assert not [f.path for f in open_run(tmp_path).files if ".superseded" in f.path]


def test_a_resumed_writer_that_does_not_replay_removes_nothing(tmp_path, recwarn):
    _crashed_run(tmp_path)
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(10, {"reward": [110.0]})
        w.log_scalars(10, {"loss": 110.0})
    assert not [r for r in recwarn if issubclass(r.category, WriterWarning) and r.category is not UserWarning]
    assert sorted(_sample_steps(tmp_path, "train")) == list(range(11))
    assert sorted(_sample_steps(tmp_path, "eval")) == [0, 2, 4, 6, 8]
    assert [r["step"] for r in _records(tmp_path / "scalars.p0.jsonl")] == list(range(11))


# -- 4. an extra column of mixed types -------------------------------------------------------------------------
def test_an_extra_column_of_mixed_types_is_written_as_text_with_a_warning(tmp_path):
    with pytest.warns(WriterWarning) as caught, RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "answer": 3}, {"reward": 0.0, "answer": "three"}])  # one call
        w.log_samples(1, [{"reward": 1.0, "answer": 4}])  # two calls of one step
        w.log_samples(1, [{"reward": 0.5, "answer": "four"}, {"reward": 0.5, "answer": {"n": 4}}])
        w.log_samples(2, [{"reward": 1.0, "answer": 5}])  # a step of its own: its own type
    messages = [str(c.message) for c in caught if issubclass(c.category, WriterWarning)]
    assert any("'answer'" in m and "step 0" in m and "int" in m and "str" in m for m in messages)
    assert any("'answer'" in m and "step 1" in m and "int64" in m and "string" in m for m in messages)
    tables = {s: pq.read_table(tmp_path / "samples" / "train" / f"step_{s:08d}.p0.parquet") for s in range(3)}
    assert tables[0].column("answer").to_pylist() == ["3", "three"]
    assert tables[1].column("answer").to_pylist() == ["4", "four", '{"n": 4}']
    assert tables[1].column("reward").to_pylist() == [1.0, 0.5, 0.5]
    assert tables[2].schema.field("answer").type == pa.int64()


def test_an_extra_column_arrow_cannot_type_still_fails_naming_column_and_step(tmp_path):
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": [1.0], "bad": [object()]})
    with pytest.raises(WriterError, match=r"train step 0.*'bad'"):
        w.close()


# -- 5. JAX counts above 2**24 ---------------------------------------------------------------------------------
def test_jax_summary_counts_are_exact_above_2_24():
    jax = pytest.importorskip("jax")
    n = 2**24 + 8
    x = np.full(n, 0.5, dtype=np.float32)
    x[:3] = np.nan  # 2**24 + 5 finite values: an odd number above 2**24, which no float32 holds
    mask = np.ones(n, dtype=bool)
    mask[::1000] = False
    t = StatsTracker()
    t.summary("s", jax.numpy.asarray(x))
    t.masked("m", jax.numpy.asarray(x), jax.numpy.asarray(mask))
    out = t.export()
    finite = np.isfinite(x)
    assert out["s/count"] == int(finite.sum()) == n - 3
    assert out["s/mean__count"] == n - 3
    assert out["s/nonfinite"] == 3
    assert out["m/count"] == int((finite & mask).sum())
    assert out["m/nonfinite"] == int((~finite & mask).sum())
    assert out["s/mean"] == pytest.approx(0.5)


# -- 6. configs ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Opt:
    lr: float = 1e-3
    betas: tuple = (0.9, 0.99)


class _Mode(enum.Enum):
    FAST = "fast"


def test_config_values_are_written_as_strict_json(tmp_path):
    cfg = {
        "lr": np.float32(0.5),
        "bs": np.int64(8),
        "flag": np.bool_(True),
        "ckpt": Path("/ckpt/x"),
        "opt": _Opt(),
        "mode": _Mode.FAST,
        "clip": float("nan"),
        "hi": float("inf"),
        "lo": -math.inf,
        "shape": np.array([2, 3]),
        1: "int key",
    }
    with RunWriter(tmp_path, config=cfg):
        pass

    def no_constants(name):
        raise AssertionError(f"run.json holds {name}, which strict JSON has not")

    manifest = json.loads((tmp_path / "run.json").read_text(), parse_constant=no_constants)
    assert manifest["config"] == {
        "lr": 0.5,
        "bs": 8,
        "flag": True,
        "ckpt": "/ckpt/x",
        "opt": {"lr": 1e-3, "betas": [0.9, 0.99]},
        "mode": "fast",
        "clip": "NaN",
        "hi": "Infinity",
        "lo": "-Infinity",
        "shape": [2, 3],
        "1": "int key",
    }


@pytest.mark.parametrize("cfg", [{"fn": object()}, {"nested": {"x": [1, object()]}}, {(1, 2): 3}])
def test_a_config_json_cannot_hold_is_refused_before_anything_is_created(tmp_path, cfg):
    run = tmp_path / "run"
    with pytest.raises(runlog.UsageError, match=r"config"):
        RunWriter(run, config=cfg)
    assert not run.exists()


# -- 7. bad samples are refused at the call --------------------------------------------------------------------
BAD_CALLS = {
    "roles and flat role columns": [{"reward": 1.0, "roles": {"a": {"reward": 1.0}}, "a_reward": 1.0}],
    "components and flat component columns": [{"reward": 1.0, "reward_components": {"a": 1.0}, "component/x": 1.0}],
    "a step column of another step (columns)": {"reward": [1.0, 2.0], "step": [3, 7]},
    "a step column of another step (rows)": [{"reward": 1.0, "step": 7}],
    "a step column of another step (numpy)": {"reward": [1.0], "step": np.array([7])},
    "a split column of another split": {"reward": [1.0], "split": ["eval"]},
    "a split column of another split (arrow)": pa.table({"reward": [1.0], "split": ["eval"]}),
    "a text reward (list)": {"reward": ["0.5"]},
    "a text reward (rows)": [{"reward": 1.0}, {"reward": "0.5"}],
    "a text reward (numpy)": {"reward": np.array(["0.5"])},
    "a text reward (arrow)": pa.table({"reward": ["0.5"]}),
    "a dict reward": {"reward": [{"a": 1}]},
    "a roles entry without role": {"reward": [1.0], "roles": [[{"reward": 1.0}]]},
    "a roles cell that is text": {"reward": [1.0], "roles": ["solver"]},
    "a component entry without name": {"reward": [1.0], "reward_components": [[{"value": 1.0}]]},
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_samples_are_refused_at_the_call_and_the_writer_goes_on(tmp_path, name):
    with RunWriter(tmp_path, durable=False, roles=["a"]) as w:
        with pytest.raises(SampleError):
            w.log_samples(3, BAD_CALLS[name])
        w.log_samples(3, {"reward": [1.0, 2.0]})
        w.log_samples(4, {"reward": [3.0]})
    assert _sample_steps(tmp_path, "train") == {3: [1.0, 2.0], 4: [3.0]}


def test_matching_step_and_split_columns_are_accepted(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(3, {"reward": [1.0, 2.0], "step": np.array([3, 3]), "split": ["eval", None]}, split="eval")
    assert _sample_steps(tmp_path, "eval") == {3: [1.0, 2.0]}


# -- 8. steps beyond int64 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [2**63, 2**70, 2.0**70, np.uint64(2**63)])
def test_a_step_beyond_int64_is_refused_at_the_call(tmp_path, step):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(runlog.UsageError, match="64-bit"):
            w.log_scalars(step, {"x": 1.0})
        with pytest.raises(runlog.UsageError, match="64-bit"):
            w.log_samples(step, {"reward": [1.0]})
        t = StatsTracker()
        t.scalar(x=1.0)
        with pytest.raises(runlog.UsageError, match="64-bit"):
            t.commit(step, w)
        w.log_scalars(2**63 - 1, {"x": 2.0})  # the largest step is fine
    assert [r["step"] for r in _records(tmp_path / "scalars.p0.jsonl")] == [2**63 - 1]


# -- 9. small ones -------------------------------------------------------------------------------------------
def test_stats_count_every_kind_of_call(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        t = StatsTracker()
        for s in range(4):
            w.log_samples(s, {"reward": [1.0]})
            w.log_samples(s, {"reward": [2.0]})
            w.log_scalars(s, {"x": 1.0})
            t.scalar(y=1.0)
            t.commit(s, w)
        stats = w.stats()
    assert stats["sample_calls"] == 8 and stats["scalar_calls"] == 4 and stats["commit_calls"] == 4
    assert stats["calls"] == 16
    assert stats["queue_full"] == 0


def test_the_failure_message_does_not_claim_that_nothing_later_was_written(tmp_path):
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": [1.0], "bad": [object()]})
    w.log_scalars(0, {"x": 1.0})
    w.log_samples(1, {"reward": [1.0]})
    with pytest.raises(WriterError) as err:
        w.flush()
    assert "nothing after that point was written" not in str(err.value)
    assert "stopped" in str(err.value)
    w.close()


def test_a_null_reward_component_is_left_out_in_every_form(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [1.0, 2.0], "reward_components": {"a": [0.5, None], "b": [None, None]}})
        w.log_samples(
            1,
            [
                {"reward": 1.0, "reward_components": {"a": 0.5, "b": None}},
                {"reward": 2.0, "reward_components": {"a": None, "b": None}},
            ],
        )
        w.log_samples(
            2,
            {
                "reward": [1.0, 2.0],
                "reward_components": [
                    [{"name": "a", "value": 0.5}, {"name": "b", "value": None}],
                    [{"name": "a", "value": None}],
                ],
            },
        )
    got = {
        s: pq.read_table(tmp_path / "samples" / "train" / f"step_{s:08d}.p0.parquet")
        .column("reward_components")
        .to_pylist()
        for s in range(3)
    }
    assert got[0] == [[{"name": "a", "value": 0.5}], None]
    assert got[1] == got[0] and got[2] == got[0]


def test_a_process_writing_a_run_without_its_manifest_is_warned_about(tmp_path):
    with pytest.warns(WriterWarning, match="run.json"), RunWriter(tmp_path, durable=False, process_index=1) as w:
        w.log_samples(0, {"reward": [1.0]})
