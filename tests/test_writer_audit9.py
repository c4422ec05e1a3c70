"""Audit 9 of the trainer-side writer (/tmp/audit-writer): two writers of one process on one folder are refused,
a resumed run's replay point is decided by its first item only, values that used to stop the background writer
(ints beyond 64 bits, int/float clashes, huge rewards) are written or refused at the call, empty JAX summaries,
reused numpy buffers in list columns, the state file after a failed write, float32 summaries of values far from
zero, and tool-call arguments and message fields. Every expected figure is read back with pyarrow / json /
numpy from the files written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

from runlog.writer import RunLockedError, RunWriter, SampleError, StatsTracker, WriterError, WriterWarning

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _steps(run, split="train", process=0):
    folder = run / "samples" / split
    return {int(f.name[5:13]): pq.read_table(f) for f in sorted(folder.glob(f"step_*.p{process}.parquet"))}


def _scalar_lines(run, process=0):
    return [json.loads(line) for line in (run / f"scalars.p{process}.jsonl").read_text().splitlines()]


def _state(run, process=0):
    return json.loads((run / f".writer.p{process}.json").read_text())


# -- 1. a second writer of the same process on one folder ----------------------------------------------------
def test_a_second_writer_of_the_same_process_is_refused_and_the_first_loses_nothing(tmp_path):
    run = tmp_path / "run"
    first = RunWriter(run, durable=False)
    first.log_samples(0, {"reward": [0.0]})
    first.log_scalars(0, {"loss": 0.0})
    first.flush()
    with pytest.raises(RunLockedError, match=rf"{run}.*process 0.*pid {os.getpid()}"):
        RunWriter(run, durable=False)
    with RunWriter(run, process_index=1, durable=False) as other:  # another process index: its own files
        other.log_samples(0, {"reward": [5.0]})
    for s in (1, 2):
        first.log_samples(s, {"reward": [float(s)]})
        first.log_scalars(s, {"loss": float(s)})
    first.close()
    assert _steps(run, process=1)[0].column("reward").to_pylist() == [5.0]
    assert {s: t.column("reward").to_pylist() for s, t in _steps(run).items()} == {
        0: [0.0],
        1: [1.0],
        2: [2.0],
    }
    assert [line["loss"] for line in _scalar_lines(run)] == [0.0, 1.0, 2.0]
    assert not (run / ".superseded").exists()  # nothing of the live writer was taken out
    assert sorted(p.name for p in run.glob(".writer.*")) == [".writer.p0.json", ".writer.p1.json"]  # locks gone
    with RunWriter(run, durable=False) as again:  # once closed, the folder can be written again
        again.log_samples(3, {"reward": [3.0]})
    assert sorted(_steps(run)) == [0, 1, 2, 3]


def test_a_killed_writer_does_not_block_the_resume_nor_does_a_forked_child(tmp_path):
    """The kernel releases a killed writer's lock; a child forked by the trainer does not keep it; and the child,
    ending normally (atexit), does not close its parent's writer."""
    run = tmp_path / "run"
    code = textwrap.dedent(
        f"""
        import json, os, signal, sys, time
        sys.path[:0] = {sys.path!r}
        from runlog.writer import RunWriter
        w = RunWriter({str(run)!r}, durable=False)
        w.log_samples(0, {{"reward": [1.0]}})
        w.flush()
        child = os.fork()
        if child == 0:  # a child that ends normally: atexit hooks run here
            sys.exit(0)
        os.waitpid(child, 0)
        print(json.load(open({str(run / ".writer.p0.json")!r}))["state"], flush=True)
        sleeper = os.fork()
        if sleeper == 0:  # a child that outlives its parent (its output closed: the test reads the parent's)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            time.sleep(30)
            os._exit(0)
        print(sleeper, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    state_after_child, sleeper = out.stdout.split()
    try:
        assert state_after_child == "open"  # the child's exit did not mark the parent's writer closed
        with RunWriter(run, durable=False) as w:  # the killed writer's lock is gone; the sleeping child holds none
            w.log_samples(1, {"reward": [2.0]})
    finally:
        os.kill(int(sleeper), signal.SIGKILL)
    assert {s: t.column("reward").to_pylist() for s, t in _steps(run).items()} == {0: [1.0], 1: [2.0]}


# -- 2. the replay point is the first item's step --------------------------------------------------------------
def test_an_earlier_step_logged_after_the_resume_step_takes_nothing_out(tmp_path):
    run = tmp_path / "run"
    with RunWriter(run, durable=False) as w:  # the first attempt: steps 0-9, eval every 5
        for s in range(10):
            w.log_samples(s, {"reward": [float(s)]})
            w.log_scalars(s, {"loss": float(s)})
            if s % 5 == 0:
                w.log_samples(s, {"reward": [100.0 + s]}, split="eval")
    # resumed at 10, as docs/writer.md advises; then a baseline eval of step 5
    with pytest.warns(WriterWarning, match="writes eval step 5 again"), RunWriter(run, durable=False) as w:
        w.log_samples(10, {"reward": [10.0]})
        w.log_scalars(10, {"loss": 10.0})
        w.log_samples(5, {"reward": [999.0]}, split="eval")
    assert {s: t.column("reward").to_pylist() for s, t in _steps(run).items()} == {s: [float(s)] for s in range(11)}
    assert [line["step"] for line in _scalar_lines(run)] == list(range(11))
    eval_steps = _steps(run, "eval")
    assert sorted(eval_steps) == [0, 5] and eval_steps[5].column("reward").to_pylist() == [999.0]
    [kept] = (run / ".superseded").glob("*/samples/eval/step_00000005.p0.parquet")  # the old file, kept aside
    assert pq.read_table(kept).column("reward").to_pylist() == [105.0]


# -- 3 and 10. values that used to stop the background writer ---------------------------------------------------
def test_ints_beyond_int64_in_an_extra_column_are_written(tmp_path):
    hashes = [2**64 - 1, 5, 2**63, None]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunWriter(tmp_path, durable=False) as w:
            w.log_samples(0, [{"reward": 1.0, "prompt_hash": h} for h in hashes])  # unsigned 64-bit hashes
            w.log_samples(1, {"reward": [1.0, 2.0], "big": [2**70, -1]})  # beyond 64 bits: text
            w.log_samples(2, {"reward": [1.0]})
    steps = _steps(tmp_path)
    assert str(steps[0].schema.field("prompt_hash").type) == "uint64"
    assert steps[0].column("prompt_hash").to_pylist() == hashes
    assert steps[1].column("big").to_pylist() == [str(2**70), "-1"]
    assert any("'big'" in str(c.message) and "beyond 64 bits" in str(c.message) for c in caught)
    assert sorted(steps) == [0, 1, 2]


def test_an_int64_beyond_2_53_and_a_float_in_two_calls_of_a_step_are_written_as_text(tmp_path):
    warned = pytest.warns(WriterWarning, match="'m' of train step 0 is int64 and double")
    with warned, RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [1.0], "m": [2**53 + 1]})
        w.log_samples(0, {"reward": [2.0], "m": [0.5]})
    assert _steps(tmp_path)[0].column("m").to_pylist() == [str(2**53 + 1), "0.5"]


def test_huge_int_rewards_are_written_as_float64_or_refused_at_the_call(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": 2**64}, {"reward": None}])
        w.log_samples(1, {"reward": np.array([2**53 + 1, 3], np.int64)})
        with pytest.raises(SampleError, match="reward of row 1 .*float64"):
            w.log_samples(2, {"reward": [1.0, 10**400]})
        with pytest.raises(SampleError, match="solver_reward of row 0"):
            w.log_samples(2, [{"reward": 1.0, "solver_reward": -(10**400)}])
        w.log_samples(2, {"reward": [2.0]})  # the writer goes on
    steps = _steps(tmp_path)
    assert steps[0].column("reward").to_pylist() == [float(2**64), None]
    assert steps[1].column("reward").to_pylist() == [float(2**53 + 1), 3.0]
    assert steps[2].column("reward").to_pylist() == [2.0]


# -- 4. empty JAX summaries ------------------------------------------------------------------------------------
def test_an_empty_jax_summary_counts_zero_like_numpy():
    t = StatsTracker()
    t.summary("np", np.zeros(0))
    t.summary("r", jnp.zeros((0,)))
    t.masked("m", jnp.zeros((0, 3)), jnp.zeros((0, 3), bool))
    t.summary("both", jnp.zeros((0,)))
    t.summary("both", jnp.array([1.0, 3.0]))
    out = t.export()
    for k in ("np", "r", "m"):
        assert out[f"{k}/count"] == 0
        assert all(np.isnan(out[f"{k}/{s}"]) for s in ("mean", "std", "min", "max"))
    assert (out["both/count"], out["both/mean"], out["both/std"], out["both/min"]) == (2, 2.0, 1.0, 1.0)


def test_a_process_with_an_empty_jax_batch_joins_the_global_reduction():
    values = np.array([1.0, 2.0, 4.0], np.float32)
    sent = []

    def gather_of(other):
        return lambda v: (sent.append(v), np.stack([v, other if other is not None else v]))[1]

    busy = StatsTracker(process_count=2, process_index=1, gather=gather_of(None))
    busy.summary("r", jnp.asarray(values))
    busy.export()
    empty = StatsTracker(process_count=2, process_index=0, gather=gather_of(sent[0]))
    empty.summary("r", jnp.zeros((0,)))  # this process's rollouts were all filtered out
    out = empty.export()
    x = values.astype(np.float64)
    assert out["r/count"] == 3 and out["r/mean"] == pytest.approx(x.mean())
    assert out["r/std"] == pytest.approx(x.std()) and (out["r/min"], out["r/max"]) == (1.0, 4.0)


# -- 5. a list of numpy arrays is copied at the call ------------------------------------------------------------
def test_a_list_of_numpy_arrays_is_copied_at_the_call(tmp_path):
    buf = np.zeros((3, 4), np.float32)
    with RunWriter(tmp_path, durable=False) as w:
        for s in range(3):
            buf[:] = s
            w.log_samples(s, {"reward": [0.0] * 3, "tok": [buf[i, : i + 1] for i in range(3)]})
            buf[:] = -99  # the trainer reuses its buffer right after the call
    got = {s: t.column("tok").to_pylist() for s, t in _steps(tmp_path).items()}
    assert got == {s: [[float(s)] * (i + 1) for i in range(3)] for s in range(3)}


# -- 6. the state file after a failed write -------------------------------------------------------------------
def test_last_step_counts_the_files_published_not_those_that_failed(tmp_path, monkeypatch):
    from runlog.writer import step_files

    real = step_files.pq.write_table

    def full_disk(table, where, **kw):
        if int(os.path.basename(where.name)[6:14]) >= 3:
            raise OSError(28, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(step_files.pq, "write_table", full_disk)
    w = RunWriter(tmp_path, durable=False, encode_threads=1)
    with pytest.raises(WriterError) as err:
        for s in range(6):
            w.log_samples(s, {"reward": [float(s)]})
            if s >= 3:
                w.flush()
        w.close()
    w.close()  # reported already
    on_disk = sorted(_steps(tmp_path))
    assert on_disk == [0, 1, 2]
    assert _state(tmp_path)["last_step"] == {"train": max(on_disk)}  # was 5: steps handed over, never written
    assert "step_00000003.p0.parquet" in str(err.value)  # the message names the file


# -- 7. float32 device summaries of values far from zero --------------------------------------------------------
@pytest.mark.parametrize(("offset", "spread", "n"), [(1e4, 1e-2, 9), (1e3, 1e-3, 64), (100.0, 1e-4, 64)])
def test_the_std_of_jax_values_far_from_zero_matches_numpy(offset, spread, n):
    x = (offset + np.random.default_rng(0).normal(0, spread, n)).astype(np.float32)
    t = StatsTracker()
    t.summary("one", jnp.asarray(x))
    t.summary("two", jnp.asarray(x[: n // 2]))
    t.summary("two", jnp.asarray(x[n // 2 :]))
    out = t.export()
    truth = x.astype(np.float64)
    for k in ("one", "two"):
        assert out[f"{k}/std"] == pytest.approx(truth.std(), rel=1e-4)  # was up to 1.3 % off
        assert out[f"{k}/mean"] == pytest.approx(truth.mean(), rel=1e-9, abs=spread * 1e-3)


# -- 8, 9. tool-call arguments and message fields ----------------------------------------------------------------
def _messages(run):
    return _steps(run)[0].column("messages").to_pylist()[0]


def _strict(text):
    def refuse(c):
        raise ValueError(c)

    return json.loads(text, parse_constant=refuse)


def test_tool_call_arguments_of_numpy_and_jax_values_are_strict_json(tmp_path):
    args = {
        "x": np.float32(1.5),
        "n": np.int64(3),
        "nan": float("nan"),
        "inf": -np.inf,
        "arr": np.arange(3),
        "j": jnp.array([1.0, 2.0]),
    }
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}])
    [written] = _messages(tmp_path)[0]["tool_calls"]
    assert _strict(written["arguments"]) == {
        "x": 1.5,
        "n": 3,
        "nan": "NaN",
        "inf": "-Infinity",
        "arr": [0, 1, 2],
        "j": [1.0, 2.0],
    }


def test_a_refusal_and_both_reasoning_fields_are_kept(tmp_path):
    msgs = [
        {"role": "assistant", "content": None, "refusal": "I can't"},
        {"role": "assistant", "content": "x", "reasoning_content": "R2", "reasoning": "R2b"},
        {"role": "assistant", "content": "y", "reasoning_content": "same", "reasoning": "same"},
    ]
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "messages": msgs}])
    got = [(m["content"], m["reasoning"]) for m in _messages(tmp_path)]
    assert got == [("I can't", None), ("x", "R2\nR2b"), ("y", "same")]


# -- 12. small items --------------------------------------------------------------------------------------------
def test_a_sample_id_twice_in_a_step_is_warned(tmp_path):
    warned = pytest.warns(WriterWarning, match="train step 0 hold the sample_id 'a' more than once")
    with warned, RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [1.0, 2.0], "sample_id": ["a", "b"]})
        w.log_samples(0, {"reward": [3.0], "sample_id": ["a"]})
    assert _steps(tmp_path)[0].column("sample_id").to_pylist() == ["a", "b", "a"]  # written as given


def test_a_reward_component_name_with_a_lone_surrogate_is_refused_like_a_role_name(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        with pytest.raises(SampleError, match="reward component name"):
            w.log_samples(0, [{"reward": 1.0, "reward_components": {"x\ud800": 1.0}}])
        with pytest.raises(SampleError, match="reward component name"):
            w.log_samples(0, {"reward": [1.0], "reward_components": {"x\udfff": [1.0]}})
