"""The writer never waits for the device on the trainer's thread (issue 17).

The check: a jitted computation that takes about a second on the CPU produces the values to log; right after
``log_samples`` / ``log_scalars`` / ``StatsTracker.commit`` return, that computation must still be running
(``is_ready()`` is False), and the values written must be the ones passed, even when the trainer donates
the buffers right after the call (``jax.jit(..., donate_argnums=...)``; JAX's CPU backend honours donation,
which the tests assert with ``is_deleted()``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

import numpy as np
import pytest

from runlog import RunWriter, StatsTracker, open_run
from runlog.writer import PendingStats, WriterError

from conftest import ROOT

jax = pytest.importorskip("jax")
jnp = jax.numpy

N = 16
BASE = np.linspace(0.0, 1.0, N, dtype=np.float32)


@jax.jit
def _slow(seed):
    """``BASE + seed`` after about a second of matrix products the result depends on (but never changes)."""
    m = jnp.full((640, 640), 1.0 / 640, jnp.float32) + seed * 1e-6

    def body(_, x):
        return jnp.tanh(x @ x)

    heavy = jax.lax.fori_loop(0, 40, body, m)
    return jnp.asarray(BASE) + seed + (jnp.mean(heavy) > 1e9).astype(jnp.float32)  # the mean is at most 1


def slow_values(seed: float = 0.0):
    """Values still being computed when this returns (asserted: otherwise the test would prove nothing)."""
    out = _slow(jnp.float32(seed))
    assert not out.is_ready(), "the CPU finished the slow step at once: the test cannot tell waiting apart"
    return out


_donate = jax.jit(lambda x: x * 0.0 - 5.0, donate_argnums=0)


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Compile everything once, so that the timed calls below do not include compiling."""
    _slow(jnp.float32(0.0)).block_until_ready()
    with RunWriter(tempfile.mkdtemp(prefix="runlog-warm-")) as w:
        v = _slow(jnp.float32(0.0))
        w.log_samples(0, {"reward": v, "solver_kl": v * 0.5})
        w.log_scalars(0, {"x": v[3]})
        t = StatsTracker()
        t.summary("a", v)
        t.masked("b", v, v > 0.5)
        t.scalar(loss=v[0])
        t.commit(0, w)


def test_log_samples_and_scalars_return_before_the_device_finishes_and_survive_donation(tmp_path):
    with RunWriter(tmp_path, roles=["solver"]) as w:
        reward = slow_values(1.0)
        kl = reward * 0.5
        w.log_samples(0, {"reward": reward, "solver_kl": kl, "completion": ["text"] * N})
        w.log_scalars(0, {"train/loss": reward[3], "host": 2.0})
        assert not reward.is_ready()  # the call did not wait for the step
        _donate(reward)  # the trainer donates the buffer right after the call
        _donate(kl)
        assert reward.is_deleted() and kl.is_deleted()  # CPU JAX honours donation: the originals are gone
        rows = [{"reward": r, "solver_reward": r} for r in slow_values(2.0)]
        w.log_samples(1, rows)
        rows[0]["reward"].delete()  # an explicitly freed buffer after the call, too
    df = open_run(tmp_path).samples.sort("step", "sample_id").collect()
    got = df.filter(df["step"] == 0)
    np.testing.assert_allclose(sorted(got["reward"].to_list()), BASE + 1.0, rtol=1e-6)
    assert sorted(r[0]["kl"] for r in got["roles"].to_list()) == pytest.approx((BASE + 1.0) * 0.5)
    step1 = df.filter(df["step"] == 1)
    assert sorted(step1["reward"].to_list()) == pytest.approx(BASE + 2.0)
    lines = [json.loads(x) for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()]
    assert lines[0]["train/loss"] == pytest.approx(BASE[3] + 1.0) and lines[0]["host"] == 2.0
    assert list(lines[0]) == ["step", "time", "train/loss", "host"]  # the line keeps the caller's order


def test_rows_with_jax_values_are_not_changed_by_the_writer(tmp_path):
    v = jnp.arange(3.0)
    rows = [{"reward": v[i], "prompt": "p"} for i in range(3)]
    with RunWriter(tmp_path) as w:
        w.log_samples(0, rows)
    assert all(type(r["reward"]) is type(v) for r in rows)  # the host copies went into the writer's dicts
    assert open_run(tmp_path).samples.collect()["reward"].to_list() == [0.0, 1.0, 2.0]


def test_commit_hands_the_step_to_the_writer_without_waiting(tmp_path):
    t = StatsTracker()
    with RunWriter(tmp_path) as w:
        values = slow_values(3.0)
        t.summary("train/reward", values)
        t.masked("train/high", values, values > 3.5)
        t.scalar(loss=values[0], lr=0.5)
        t.scalar(loss=values[1])
        stats = t.commit(0, w)
        assert isinstance(stats, PendingStats)
        assert not values.is_ready()  # neither the summaries nor the commit waited for the device
        _donate(values)  # donated after the commit: the scalar copies and summaries are the tracker's own
        assert values.is_deleted()
        assert stats["train/reward/mean"] == pytest.approx(float(np.mean(BASE + 3.0)), rel=1e-6)
        assert stats.ready()
    host = BASE + 3.0
    line = json.loads((tmp_path / "scalars.p0.jsonl").read_text())
    assert line["loss"] == pytest.approx((host[0] + host[1]) / 2) and line["loss__count"] == 2
    assert line["train/high/count"] == int((host > 3.5).sum())
    assert line["train/reward/max"] == pytest.approx(host.max())
    assert list(line)[:4] == ["step", "time", "loss", "loss__count"]


def test_a_failed_step_surfaces_on_the_pending_stats_and_the_next_call(tmp_path):
    def broken(_):
        raise RuntimeError("coordinator gone")

    t = StatsTracker(process_count=2, process_index=0, gather=broken)
    w = RunWriter(tmp_path)
    t.scalar(x=1.0)
    stats = t.commit(0, w)  # the gather runs on the writer's thread: commit itself does not fail
    with pytest.raises(WriterError, match="coordinator gone"):
        stats.result(timeout=30)
    with pytest.raises(WriterError, match="coordinator gone"):
        w.log_scalars(1, {"x": 1.0})
    w.close()


def test_back_pressure_is_bounded_and_counted(tmp_path, monkeypatch):
    gate, taken = threading.Event(), threading.Event()
    w = RunWriter(tmp_path, max_queue=2)
    real = w._handle
    monkeypatch.setattr(w, "_handle", lambda item: (taken.set(), gate.wait(60), real(item)))
    v = jnp.arange(4.0)
    w.log_samples(0, {"reward": v}, split="s0")
    assert taken.wait(60)  # the thread holds this one at the gate
    for s in (1, 2):  # two queued: full
        w.log_samples(s, {"reward": v}, split=f"s{s}")
    assert w.stats()["max_depth"] == 2 and w.stats()["queue_waits"] == 0
    threading.Timer(0.5, gate.set).start()
    w.log_scalars(0, {"x": 1.0})  # waits for the thread to take one
    w.close()
    st = w.stats()
    assert st["queue_waits"] >= 1 and st["queue_wait_s"] > 0.2 and st["max_depth"] == 2
    assert st["device_wait_s"] >= 0 and st["rows_written"] == 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHILD = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    from runlog import RunWriter, StatsTracker
    t = StatsTracker()
    waited = []
    with RunWriter(out, run_id="mp") as w:
        for step in range(4):
            v = jnp.arange(4.0) + 10.0 * rank + step
            t.summary("r", v)
            t.scalar(loss=jnp.float32(rank + step))
            with t.record_timing("step"):
                pass
            stats = t.commit(step, w)
        print(json.dumps({"rank": rank, "last": dict(stats), "pid_index": w.process_index}), flush=True)
    """
)


def test_two_processes_reduce_through_jax_distributed(tmp_path):
    """Two real JAX processes (jax.distributed on localhost): the global reduction runs on the writers'
    threads through the coordinator's key-value store, and process 0 writes the global numbers."""
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(r), port, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    res = sorted((json.loads(o.decode().strip().splitlines()[-1]) for o, _ in outs), key=lambda r: r["rank"])
    assert [r["pid_index"] for r in res] == [0, 1]
    allv = np.concatenate([np.arange(4.0) + 3, np.arange(4.0) + 13])
    for r in res:  # every process gets the global numbers of the last step
        assert r["last"]["r/mean"] == pytest.approx(allv.mean()) and r["last"]["r/count"] == 8
        assert r["last"]["r/std"] == pytest.approx(allv.std()) and r["last"]["loss"] == pytest.approx(3.5)
    lines = [json.loads(x) for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2, 3]
    assert [x["r/min"] for x in lines] == [0.0, 1.0, 2.0, 3.0] and [x["r/max"] for x in lines] == [13, 14, 15, 16]
    assert not (tmp_path / "scalars.p1.jsonl").exists()  # only process 0 writes the reduced numbers


def test_device_fetch_packs_a_calls_arrays_and_gives_each_back_in_its_shape_and_values():
    """One transfer per device and dtype; each array comes back as numpy with its shape and exact values,
    bfloat16 as float32, even though the originals are donated right after the fetch starts."""
    from runlog.writer import jax_utils

    rng = np.random.default_rng(3)
    host = {
        "a": rng.standard_normal(5).astype(np.float32),
        "b": rng.standard_normal((2, 3)).astype(np.float32),
        "c": np.arange(4, dtype=np.int32),
        "d": np.float32(2.5),
        "e": rng.standard_normal(3).astype(np.float32),
    }
    arrays = [jnp.asarray(v) for v in host.values()] + [jnp.asarray([1.5, -2.0], jnp.bfloat16)]
    fetch = jax_utils.DeviceFetch(arrays)
    assert len(fetch.buffers) == 3  # float32 (a, b, d, e), int32 (c), bfloat16
    for a in arrays[:2]:
        _donate(a)
        assert a.is_deleted()
    out = fetch.get()
    for got, want in zip(out, host.values(), strict=False):
        assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(got, want)
    assert out[-1].dtype == np.float32 and out[-1].tolist() == [1.5, -2.0]
