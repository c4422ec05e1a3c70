"""The writer audit's second round: each misuse is refused at the call with the writer's own errors, and what
a trainer writes (resumed runs, far-from-zero summaries, bfloat16, lone surrogates) is what is read back."""

from __future__ import annotations

import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import RunWriter, open_run
from runlog.analysis.scalars import merge_shards
from runlog.writer import SampleError, StatsTracker, WriterError


def _samples(root, split="train"):
    files = sorted((root / "samples" / split).glob("step_*.parquet"))
    return [pq.read_table(f) for f in files]


def _scalar_values(root, key):
    run = open_run(root)
    frame = merge_shards(run.scalars).collect().filter(key=key).sort("step")
    return frame.select("step", "value").rows()


# -- 1. a bare string is not a column ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", b"abc"])
def test_a_string_given_as_a_column_is_refused_naming_it(tmp_path, value):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(SampleError, match="env_name.*not a column"):
            w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "env_name": value})
        w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "env_name": ["abc"] * 3})  # the refused call left no trace
    (table,) = _samples(tmp_path)
    assert table.column("env_name").to_pylist() == ["abc"] * 3
    assert table.column("reward").to_pylist() == [1.0, 2.0, 3.0]


# -- 2. a resumed run replaces the scalar lines of the steps it replays --------------------------------------
def _first_run(root):
    with RunWriter(root, durable=False, clock=lambda: 1.0) as w:
        t = StatsTracker()
        for s in range(6):
            w.log_samples(s, {"reward": [float(s)] * 3})
            w.log_scalars(s, {"m": float(s)})
            t.scalar(loss=float(s))
            t.commit(s, w)


def test_a_resumed_writer_replaces_the_scalar_lines_of_replayed_steps(tmp_path):
    _first_run(tmp_path)
    before = (tmp_path / "scalars.p0.jsonl").read_bytes().splitlines(keepends=True)
    with RunWriter(tmp_path, durable=True) as w:  # resumed from a checkpoint of step 3, values differ
        t = StatsTracker()
        for s in range(3, 7):
            w.log_samples(s, {"reward": [100.0 + s]})
            t.scalar(loss=100.0 + s)
            t.commit(s, w)
            w.log_scalars(s, {"m": 100.0 + s})
    expected = [(0, 0.0), (1, 1.0), (2, 2.0), (3, 103.0), (4, 104.0), (5, 105.0), (6, 106.0)]
    assert _scalar_values(tmp_path, "m") == expected
    assert _scalar_values(tmp_path, "loss") == expected
    lines = (tmp_path / "scalars.p0.jsonl").read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert lines[:6] == before[:6]  # the lines of the steps before the replay are kept byte for byte
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_normal_run_and_a_resume_without_replay_never_rewrite(tmp_path, monkeypatch):
    calls = []
    original = RunWriter._replace_old_scalars
    monkeypatch.setattr(
        RunWriter, "_replace_old_scalars", lambda self, step: (calls.append(step), original(self, step))
    )
    _first_run(tmp_path)  # one writer, two lines per step: no rewrite
    assert calls == []
    with RunWriter(tmp_path, durable=False) as w:  # continues at step 6
        for s in range(6, 8):
            w.log_scalars(s, {"m": float(s)})
            w.log_scalars(s, {"other": 1.0})
    assert calls == []
    assert _scalar_values(tmp_path, "m") == [(s, float(s)) for s in range(8)]
    with RunWriter(tmp_path, durable=False) as w:  # replays from step 5 (its first item), then logs step 3 again
        w.log_scalars(5, {"m": 55.0})
        w.log_scalars(6, {"m": 66.0})
        w.log_scalars(3, {"m": 33.0})
    # The first item decides where the resumed run starts: step 3, logged after it, is an ordinary log of step 3
    # (its line appended, read back as the later value of the step) and takes nothing out (docs/writer.md).
    assert calls == [5]
    expected = [(0, 0.0), (1, 1.0), (2, 2.0), (3, 33.0), (4, 4.0), (5, 55.0), (6, 66.0)]
    assert _scalar_values(tmp_path, "m") == expected


def test_a_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "scalars.p0.jsonl"
    path.write_bytes(b'{"step": 0, "time": 1.0, "m": 0.0}\n{"step": 1, "time": 1.0, "m"')  # a power cut
    with RunWriter(tmp_path, durable=False) as w:
        w.log_scalars(1, {"m": 1.0})
    assert [json.loads(line)["m"] for line in path.read_bytes().splitlines()] == [0.0, 1.0]


# -- 3. global reduction of values far from zero -------------------------------------------------------------
def test_global_reduction_keeps_the_variance_of_values_far_from_zero():
    rng = np.random.default_rng(0)
    data = [1e8 + rng.normal(0, 0.01, 1000), 1e8 + 0.5 + rng.normal(0, 0.01, 700)]
    barrier = threading.Barrier(2)
    vectors: dict[int, np.ndarray] = {}
    out: dict[int, dict] = {}

    def gather_for(p):
        def gather(v):
            vectors[p] = v
            barrier.wait()
            return np.stack([vectors[0], vectors[1]])

        return gather

    def process(p):
        t = StatsTracker(process_count=2, process_index=p, gather=gather_for(p))
        t.summary("r", data[p])
        out[p] = t.export()

    threads = [threading.Thread(target=process, args=(p,)) for p in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    both = np.concatenate(data)
    for p in (0, 1):
        assert out[p]["r/count"] == both.size
        assert out[p]["r/mean"] == pytest.approx(both.mean(), rel=1e-12)
        assert out[p]["r/std"] == pytest.approx(both.std(), rel=1e-6)
        assert (out[p]["r/min"], out[p]["r/max"]) == (both.min(), both.max())


# -- 4. commit checks its step as log_samples does -----------------------------------------------------------
@pytest.mark.parametrize("step", [2.5, "3", -1, True, np.float32(2.5), None])
def test_commit_refuses_a_step_that_is_not_a_non_negative_integer(tmp_path, step):
    t = StatsTracker()
    t.scalar(x=1.0)
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(runlog.UsageError, match="step must be a non-negative integer"):
            t.commit(step, w)
        assert t.commit(np.int64(2), w)["x"] == 1.0  # nothing was reset by the refused call
        t.commit(3.0, w)
    assert [json.loads(line)["step"] for line in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()] == [2, 3]


# -- 5. numpy bfloat16 / float8 / int4 -----------------------------------------------------------------------
def test_numpy_bfloat16_float8_and_int4_columns_are_written_as_float32_and_int8(tmp_path):
    ml = pytest.importorskip("ml_dtypes")
    reward = np.array([1.5, -2.25, 3.0], dtype=ml.bfloat16)
    f8 = np.array([0.5, 1.0, -4.0], dtype=ml.float8_e4m3fn)
    i4 = np.array([1, -2, 7], dtype=ml.int4)
    comp = np.array([0.25, 0.5, 1.0], dtype=ml.bfloat16)
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": reward, "h": f8, "i": i4, "reward_components": {"c": comp}})
        w.log_samples(1, {"reward": reward})  # the writer is alive after them
    t0, t1 = _samples(tmp_path)
    assert t0.column("reward").to_pylist() == reward.astype(np.float32).tolist()
    assert t0.schema.field("h").type == "float" and t0.column("h").to_pylist() == f8.astype(np.float32).tolist()
    assert t0.schema.field("i").type == "int8" and t0.column("i").to_pylist() == [1, -2, 7]
    assert [c[0]["value"] for c in t0.column("reward_components").to_pylist()] == [0.25, 0.5, 1.0]
    assert t1.column("reward").to_pylist() == reward.astype(np.float32).tolist()


def test_jax_int4_column_is_written_as_int8(tmp_path):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": jnp.array([1.0, 2.0], jnp.bfloat16), "i": jnp.array([1, -2], jnp.int4)})
    (table,) = _samples(tmp_path)
    assert table.schema.field("i").type == "int8" and table.column("i").to_pylist() == [1, -2]
    assert table.column("reward").to_pylist() == [1.0, 2.0]


# -- 6. lone surrogates --------------------------------------------------------------------------------------
def test_text_with_lone_surrogates_is_written_with_replacement_characters(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [1.0], "completion": ["x\ud800y"], "note": np.array(["a\udcffb"])})
        w.log_samples(1, [{"reward": 2.0, "note": "x\udcffy", "later": ["p\ud83d\ude00q"]}])
        w.log_samples(2, {"reward": [3.0], "messages": [[{"role": "user", "content": "hi\ud800"}]]})
        w.log_samples(3, {"reward": [4.0], "completion": ["fine"]})
    t0, t1, t2, t3 = _samples(tmp_path)
    assert t0.column("completion").to_pylist() == ["x\ufffdy"]
    assert t0.column("note").to_pylist() == ["a\ufffdb"]
    assert t1.column("note").to_pylist() == ["x\ufffdy"]
    assert t1.column("later").to_pylist() == [["p\U0001f600q"]]  # a pair of surrogates is its character
    assert t2.column("messages").to_pylist()[0][0]["content"] == "hi\ufffd"
    assert t3.column("completion").to_pylist() == ["fine"]  # nothing after them was lost


def test_names_with_lone_surrogates_are_refused_at_the_call(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(runlog.UsageError, match="surrogate"):
            w.log_scalars(0, {"k\ud800": 1.0, "ok": 2.0})
        with pytest.raises(SampleError, match="surrogate"):
            w.log_samples(0, {"reward": [1.0], "x\ud800": [1]})
        with pytest.raises(SampleError, match="names are str"):
            w.log_samples(0, {"reward": [1.0], 1: [1]})
        w.log_scalars(0, {"ok": 2.0})
    t = StatsTracker()
    with pytest.raises(runlog.UsageError, match="surrogate"):
        t.scalar(**{"k\ud800": 1.0})
    with pytest.raises(runlog.UsageError, match="surrogate"):
        RunWriter(tmp_path / "r", roles=["a\ud800"])
    assert [json.loads(line) for line in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()][0]["ok"] == 2.0


# -- 7. key collisions ---------------------------------------------------------------------------------------
def test_colliding_scalar_keys_are_refused_naming_the_key(tmp_path):
    with RunWriter(tmp_path, durable=False) as w, pytest.raises(runlog.UsageError, match="'a/b'"):
        w.log_scalars(0, {"a": {"b": 1}, "a/b": 2})
    t = StatsTracker()
    t.scalar(**{"x/mean": 9.0})
    t.summary("x", [1.0, 2.0, 3.0])
    with pytest.raises(runlog.UsageError, match="'x/mean'"):
        t.export()
    t.reset()
    t.scalar(y=1.0)
    t.scalar(y=2.0)
    t.scalar(y__count=5.0)
    with pytest.raises(runlog.UsageError, match="'y__count'"):
        t.commit(0)
    t.reset()
    t.scalar(y=1.0, y__count=5.0)  # no collision: y is recorded once
    assert t.commit(0) == {"y": 1.0, "y__count": 5.0}


# -- 8. None is not a number ---------------------------------------------------------------------------------
def test_a_none_scalar_is_refused(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(runlog.UsageError, match="'n'"):
            w.log_scalars(0, {"n": None})
        with pytest.raises(runlog.UsageError, match="'n'"):
            w.log_scalars(0, {"n": np.array(None, dtype=object)})


# -- 9. consistent error types -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1.5", "abc", {"a": 1}, None, [1.0], b"1", np.str_("2")])
def test_tracker_scalar_refuses_what_is_not_a_number(value):
    t = StatsTracker()
    with pytest.raises(runlog.UsageError, match="'b'"):
        t.scalar(b=value)
    t.scalar(b=np.float32(1.5), c=np.array([2]), d=True)
    assert t.export() == {"b": 1.5, "c": 2.0, "d": 1.0}


@pytest.mark.parametrize("values", ["abc", None, {"a": 1.0}, ["x", "y"]])
def test_tracker_summary_refuses_what_is_not_an_array_of_numbers(values):
    with pytest.raises(runlog.UsageError, match="'k'"):
        StatsTracker().summary("k", values)


def test_a_jax_mask_of_the_wrong_length_is_a_usage_error():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    t = StatsTracker()
    for values, mask in [
        (jnp.ones(4), jnp.ones(3, bool)),
        (jnp.ones(4), np.ones(3, bool)),
        (np.ones(4), jnp.ones(3, bool)),
        (np.ones(4), np.ones(3, bool)),
    ]:
        with pytest.raises(runlog.UsageError, match="mask has 3 elements, values have 4"):
            t.masked("k", values, mask)
    t.masked("k", jnp.arange(4.0), jnp.array([True, False, True, True]))
    assert t.export()["k/mean"] == pytest.approx(np.mean([0.0, 2.0, 3.0]))


def test_every_row_of_a_list_needs_a_reward(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(SampleError, match="row 1 has no 'reward'"):
            w.log_samples(0, [{"reward": 1.0}, {"y": 2}])
        with pytest.raises(SampleError, match="list of int"):
            w.log_samples(0, [{"reward": 1.0}, 3])
        w.log_samples(0, [{"reward": 1.0}, {"reward": None, "y": 2}])  # None: the trajectory failed
    (table,) = _samples(tmp_path)
    assert table.column("reward").to_pylist() == [1.0, None]
    assert table.column("y").to_pylist() == [None, 2]


# -- 11. the trainer's exception wins over the writer's ------------------------------------------------------
def test_an_exception_in_the_block_is_not_replaced_by_the_writers(tmp_path, capsys):
    with pytest.raises(RuntimeError, match="trainer failed") as info, RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [1.0], "x": [object()]})  # fails on the writer's thread
        raise RuntimeError("trainer failed")
    assert any("runlog" in note and "failed while closing" in note for note in info.value.__notes__)
    assert "failed while closing" in capsys.readouterr().err
    w = RunWriter(tmp_path / "b", durable=False)
    with pytest.raises(WriterError), w:  # without an exception in the block, close() raises it as before
        w.log_samples(0, {"reward": [1.0], "x": [object()]})
