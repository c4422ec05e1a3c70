"""``StatsTracker``: scopes, summaries (numpy and on-device JAX), masks, timings, ``__count`` weights, the
multi-process reduction (with a stand-in all-gather) and the monotonic commit."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console

from runlog import RunWriter, StatsTracker, open_run
from runlog.writer import StepOrderError


def test_scopes_scalars_and_count_companions():
    t = StatsTracker()
    with t.scope("train"):
        t.scalar(loss=1.0)
        t.scalar(loss=3.0)
        with t.scope("actor"):
            t.scalar(lr=1e-6)
    out = t.export()
    assert out == {"train/loss": 2.0, "train/loss__count": 2.0, "train/actor/lr": 1e-6}
    assert t.export() == {}  # reset by default


def test_summary_and_masked_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 1000)
    x[:3] = [np.nan, np.inf, -np.inf]
    t = StatsTracker()
    t.summary("train/reward", x[:400])
    t.summary("train/reward", x[400:])  # two calls combine exactly
    mask = rng.random(1000) < 0.3
    t.masked("train/token_kl", x, mask)
    out = t.export()
    ok = x[np.isfinite(x)]
    assert out["train/reward/mean"] == pytest.approx(ok.mean())
    assert out["train/reward/std"] == pytest.approx(ok.std())
    assert (out["train/reward/min"], out["train/reward/max"]) == (ok.min(), ok.max())
    assert out["train/reward/count"] == out["train/reward/mean__count"] == 997
    assert out["train/reward/nonfinite"] == 3
    sel = x[mask & np.isfinite(x)]
    assert out["train/token_kl/mean"] == pytest.approx(sel.mean())
    assert out["train/token_kl/count"] == sel.size


def test_empty_summary_is_nan_with_count_zero():
    t = StatsTracker()
    t.masked("m", [1.0, 2.0], [False, False])
    out = t.export()
    assert out["m/count"] == 0 and math.isnan(out["m/mean"]) and math.isnan(out["m/max"])


def test_jax_summary_is_computed_on_device_and_fetched_once(monkeypatch):
    jax = pytest.importorskip("jax")
    from runlog.writer import jax_utils

    x = jax.numpy.arange(12.0).reshape(3, 4)
    mask = x % 2 == 0
    fetched = []
    real = jax_utils.DeviceFetch.get
    monkeypatch.setattr(jax_utils.DeviceFetch, "get", lambda self: (fetched.append(list(self.buffers)), real(self))[1])
    monkeypatch.setattr(jax, "device_get", lambda tree: pytest.fail("a blocking device_get"))
    t = StatsTracker()
    t.summary("a", x)
    t.masked("b", x, mask)
    assert fetched == []  # recording does not move anything to host
    out = t.export()
    assert len(fetched) == 1  # one batch of host copies for every summary of the step
    assert [p.shape for p in fetched[0]] == [(24,)]  # twelve numbers each, not the array, in one transfer
    host = np.arange(12.0)
    assert out["a/mean"] == pytest.approx(host.mean()) and out["a/std"] == pytest.approx(host.std(), rel=1e-5)
    assert out["b/mean"] == pytest.approx(host[::2].mean()) and out["b/count"] == 6


def test_record_timing_uses_the_clock_and_scope():
    ticks = iter([10.0, 10.5, 20.0, 20.25])
    t = StatsTracker(clock=lambda: next(ticks))
    with t.scope("rollout"):
        with t.record_timing("generate"):
            pass
        with t.record_timing("generate"):
            pass
    assert t.export() == {"time/rollout/generate_s": 0.75}


def test_multi_process_reduction_through_the_gather(monkeypatch):
    """Two processes simulated by a gather that returns this process's vector and a second one."""
    captured = {}

    def fake_gather(local):
        # the other process's vector, built the same way (same keys, so the same layout)
        o = StatsTracker(process_count=2, process_index=1, gather=lambda v: (captured.setdefault("o", v), [v])[1])
        o.scalar(loss=4.0)
        o.summary("r", [10.0, 20.0])
        o._timings["time/step_s"] = 3.0
        o.export()
        return np.stack([local, captured["o"]])

    ticks = iter([0.0, 1.0])
    t = StatsTracker(process_count=2, process_index=0, gather=fake_gather, clock=lambda: next(ticks))
    t.scalar(loss=2.0)
    t.summary("r", [1.0, 2.0, 3.0])
    with t.record_timing("step"):
        pass
    out = t.export()
    allv = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    assert out["loss"] == 3.0 and out["loss__count"] == 2
    assert out["r/mean"] == pytest.approx(allv.mean()) and out["r/std"] == pytest.approx(allv.std())
    assert (out["r/min"], out["r/max"], out["r/count"]) == (1.0, 20.0, 5)
    assert out["time/step_s"] == 2.0 and out["time/step_s/max_process"] == 3.0  # the mean; the slowest beside


def test_processes_with_different_keys_are_an_error():
    t = StatsTracker(process_count=2, gather=lambda v: np.stack([v, np.append(v[:-1], v[-1] + 1)]))
    t.scalar(x=1.0)
    with pytest.raises(Exception, match="different metric keys"):
        t.export()


def test_commit_writes_scalars_and_guards_the_step_order(tmp_path):
    t = StatsTracker()
    out = io.StringIO()
    with RunWriter(tmp_path) as w:
        t.scalar(loss=1.0)
        t.summary("train/reward", [0.0, 1.0])
        t.commit(0, w, table=True, console=Console(file=out, width=80))
        t.scalar(loss=0.5)
        t.commit(1, w)
        t.scalar(loss=9.0)
        with pytest.raises(StepOrderError, match="step 0 after step 1"):
            t.commit(0, w)
        assert t.export(reset=False) == {"loss": 9.0}  # a refused commit resets nothing
        t.commit(1, w)  # the same step again is allowed (a second line)
    lines = [json.loads(x) for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 1]
    assert lines[0]["train/reward/mean__count"] == 2
    assert "train/reward/mean" in out.getvalue() and "__count" not in out.getvalue()
    keys = set(open_run(tmp_path).scalars.collect()["key"].to_list())
    assert {"loss", "train/reward/std"} <= keys


def test_only_process_zero_writes_globally_reduced_stats(tmp_path):
    t = StatsTracker(process_count=2, process_index=1, gather=lambda v: np.stack([v, v]))
    with RunWriter(tmp_path, process_index=1) as w:
        t.scalar(x=1.0)
        stats = t.commit(0, w)
    assert stats == {"x": 1.0, "x__count": 2.0}
    assert not (tmp_path / "scalars.p1.jsonl").exists()


def test_bad_keys_are_refused():
    t = StatsTracker()
    with pytest.raises(Exception, match="metric key"):
        t.scalar(**{"/x": 1.0})
