"""``StatsTracker`` after the sixteenth audit of the writer: what its numbers mean and how close they are.

- A ``time/*`` key was the slowest process with ``reduce="global"`` and the mean of the processes with
  ``reduce="local"`` (readers merge shards without a weight by their mean): 2.0 s or 1.25 s for one training.
- A JAX integer array was summarised in float32: the max of ``[16777217, 5]`` came back as 16777216.
- The mean of a centred JAX float32 array (advantages) was off by 1e-8 of the std, its sign wrong.
- ``reduce="local"`` shards wrote ``k__count`` only for several values, so that readers said "shards that
  disagree on a __count weight" of the tracker's own run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runlog import RunWriter, StatsTracker
from runlog.errors import UsageError

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _two_processes(tmp_path: Path, mode: str, record: Any) -> Path:
    """Two processes simulated by threads, each committing step 0 with its own ``RunWriter`` (process index 0
    and 1); with ``mode="global"`` their numbers meet in an all-gather stand-in, called on the writers'
    threads. ``record(tracker, p)`` records process ``p``'s step."""
    root = tmp_path / mode
    barrier = threading.Barrier(2)
    slots: list[Any] = [None, None]
    errors: list[BaseException] = []

    def gather(p: int) -> Any:
        def g(vector: Any) -> Any:
            slots[p] = np.asarray(vector)
            barrier.wait(timeout=60)
            both = np.stack(slots)
            barrier.wait(timeout=60)
            return both

        return g

    def worker(p: int) -> None:
        try:
            kw: dict[str, Any] = (
                {"reduce": "local", "process_index": p}
                if mode == "local"
                else {"process_count": 2, "process_index": p, "gather": gather(p)}
            )
            ticks = iter([0.0, (0.5, 2.0)[p]])
            tracker = StatsTracker(clock=lambda: next(ticks), **kw)
            with RunWriter(root, process_index=p) as w:
                record(tracker, p)
                tracker.commit(0, w)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return root


def _summarize(cli: Any, root: Path) -> tuple[dict[str, float], str]:
    r = cli("summarize", root, "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    return {row["key"]: row["last"] for row in json.loads(r.stdout)}, r.stderr


def test_a_timing_is_the_mean_of_the_processes_in_both_modes(tmp_path, cli):
    """0.5 s on one process and 2.0 s on the other: 1.25 whether the tracker reduces them (global) or the
    readers merge the shards (local), as AReaL averages timings across ranks; the slowest process under its
    own key, global only (local shards hold no maximum a reader could take)."""

    def record(tracker: StatsTracker, p: int) -> None:
        with tracker.record_timing("rollout"):
            pass
        tracker.scalar(loss=1.0)

    merged: dict[str, dict[str, float]] = {}
    for mode in ("global", "local"):
        merged[mode], err = _summarize(cli, _two_processes(tmp_path, mode, record))
        assert "disagree" not in err
    assert merged["global"]["time/rollout_s"] == merged["local"]["time/rollout_s"] == 1.25
    assert merged["global"]["time/rollout_s/max_process"] == 2.0
    assert "time/rollout_s/max_process" not in merged["local"]
    [line] = (tmp_path / "global" / "scalars.p0.jsonl").read_text().splitlines()
    assert json.loads(line)["time/rollout_s"] == 1.25
    assert not (tmp_path / "global" / "scalars.p1.jsonl").exists()  # global: process 0 writes


def test_the_slowest_process_key_is_checked_for_collisions():
    """A scalar named as a timing's slowest-process key is refused before anything is reset, as other
    colliding keys are (with one process no such key is written, and nothing collides)."""
    t = StatsTracker(process_count=2, process_index=0, gather=lambda v: np.stack([v, v]))
    with t.record_timing("step"):
        pass
    t.scalar(**{"time/step_s/max_process": 1.0})
    with pytest.raises(UsageError, match="exported twice"):
        t.export()
    alone = StatsTracker(process_count=1)
    with alone.record_timing("step"):
        pass
    alone.scalar(**{"time/step_s/max_process": 1.0})
    assert set(alone.export()) == {"time/step_s", "time/step_s/max_process"}


def test_local_shards_carry_a_weight_for_every_scalar(tmp_path, cli):
    """Process 0 records ``loss`` three times (1.0), process 1 once (2.0): the merged value is (3 + 2) / 4, and
    the tracker's own shards (``loss__count`` 3 and 1) draw no note about weights that disagree."""

    def record(tracker: StatsTracker, p: int) -> None:
        for _ in range(3 if p == 0 else 1):
            tracker.scalar(loss=1.0 + p)

    root = _two_processes(tmp_path, "local", record)
    p1 = json.loads((root / "scalars.p1.jsonl").read_text())
    assert p1["loss__count"] == 1.0
    values, err = _summarize(cli, root)
    assert values == {"loss": 1.25}
    assert "disagree" not in err, err


def test_jax_integer_summaries_are_exact():
    """min and max are values of the array, the mean is the exact sum over the count (rounded once to
    float64), as the numpy path gives; the std within float32 rounding."""
    rng = np.random.default_rng(3)
    big = rng.integers(2**31 - 2**20, 2**31 - 1, 40_003, dtype=np.int32)  # more than one block of the sum
    big[7] = 2**31 - 1
    mask = rng.random(big.size) < 0.6
    cases = [
        (np.array([5, 16777217, 3, 123456789, 2**31 - 1], np.int32), None),
        (np.array([16777217, 5], np.int32), None),
        (np.array([-(2**31), 2**31 - 1, -7], np.int32), None),
        (np.array([2**32 - 1, 0, 16777217], np.uint32), None),
        (big, mask),
        (np.array([True, False, True]), np.array([True, True, False])),
    ]
    for x, m in cases:
        t = StatsTracker()
        if m is None:
            t.summary("x", jnp.asarray(x))
        else:
            t.masked("x", jnp.asarray(x), jnp.asarray(m))
        out = t.export()
        sel = [int(v) for v in (x if m is None else x[m])]
        assert (out["x/min"], out["x/max"], out["x/count"]) == (min(sel), max(sel), len(sel)), x
        assert out["x/mean"] == float(sum(sel)) / len(sel), x
        std = np.asarray(sel, dtype=np.float64).std()
        assert abs(out["x/std"] - std) <= 2e-7 * std, (x, out["x/std"], std)


def test_jax_integer_summaries_are_exact_with_x64(tmp_path):
    """Under ``jax_enable_x64`` (int64 and float64) the limbs are 32 bits: int64 and uint64 extremes and means
    come back exactly: the mean is the exact mean rounded once to float64 (the review of audit18: carried so, two
    parts combine without losing the std; float64 of the sum divided rounded twice past 2**53)."""
    script = tmp_path / "x64.py"
    script.write_text(
        "import jax\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "import numpy as np, jax.numpy as jnp, runlog\n"
        "from fractions import Fraction\n"
        "rng = np.random.default_rng(0)\n"
        "for dt in (np.int64, np.uint64, np.int32):\n"
        "    info = np.iinfo(dt)\n"
        "    x = rng.integers(info.min, info.max, 5001, dtype=dt, endpoint=True)\n"
        "    x[0], x[1] = info.min, info.max\n"
        "    t = runlog.StatsTracker(); t.summary('j', jnp.asarray(x)); o = t.export()\n"
        "    assert (o['j/min'], o['j/max']) == (float(int(info.min)), float(int(info.max))), (dt, o)\n"
        "    assert o['j/mean'] == float(Fraction(sum(int(v) for v in x), len(x))), (dt, o['j/mean'])\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def _jax_mean_std(x: np.ndarray, *, split: bool = False) -> tuple[float, float]:
    t = StatsTracker()
    if split:
        t.summary("x", jnp.asarray(x[: x.size // 3]))
        t.summary("x", jnp.asarray(x[x.size // 3 :]))
    else:
        t.summary("x", jnp.asarray(x))
    out = t.export()
    return out["x/mean"], out["x/std"]


def test_the_mean_of_centred_values_keeps_its_sign():
    """The auditor's centred float32 arrays (seed 7): the mean within 1e-10 of the std of numpy's float64
    mean of the same values (it was 1e-8 off, its sign wrong at 10,000 values: -9.97e-09 for +6.56e-10)."""
    rng = np.random.default_rng(7)
    for n in (1000, 10_000, 100_000):
        x = rng.normal(size=n).astype(np.float32)
        x -= x.mean()
        h = x.astype(np.float64)
        mean, std = _jax_mean_std(x)
        assert abs(mean - h.mean()) <= 1e-10 * h.std(), (n, mean, h.mean())
        assert np.sign(mean) == np.sign(h.mean())
        assert abs(std - h.std()) <= 2e-7 * h.std()


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1e2, 1e4, 1e7])
def test_mean_and_std_against_float64_up_to_offsets_of_1e7_spreads(ratio):
    """What docs/writer.md says, for offset/spread ratios up to 1e7, 9 to 10,000 values, in one call or two:
    the mean within 1e-10 of the std or 1e-14 of the mean (the larger: float64 itself holds no more of a mean
    1e7 stds from zero), the std within 2e-7 relative."""
    rng = np.random.default_rng(int(ratio) + 11)
    for spread in (1e-2, 10.0):
        for n in (9, 1000, 10_000):
            for split in (False, True):
                x = (ratio * spread + rng.normal(0, spread, n)).astype(np.float32)
                h = x.astype(np.float64)
                mean, std = _jax_mean_std(x, split=split)
                allowed = max(1e-10 * h.std(), 1e-14 * abs(h.mean()))
                assert abs(mean - h.mean()) <= allowed, (spread, n, split, mean, h.mean())
                assert abs(std - h.std()) <= 2e-7 * h.std(), (spread, n, split, std, h.std())


def test_summaries_of_empty_and_all_masked_arrays_count_zero():
    """Count 0 (NaN mean, min and max) for an empty array and a mask with nothing in it, float or int; a
    process with nothing still takes part in a global reduction without moving its min or max."""
    t = StatsTracker()
    t.summary("f", jnp.zeros((0,), jnp.float32))
    t.summary("i", jnp.zeros((0,), jnp.int32))
    t.masked("fm", jnp.arange(3.0), jnp.zeros(3, bool))
    t.masked("im", jnp.arange(3), jnp.zeros(3, bool))
    out = t.export()
    for k in ("f", "i", "fm", "im"):
        assert out[f"{k}/count"] == 0 and np.isnan(out[f"{k}/mean"]) and np.isnan(out[f"{k}/max"]), k
    captured: dict[str, Any] = {}
    other = StatsTracker(process_count=2, process_index=1, gather=lambda v: (captured.setdefault("v", v), [v, v])[1])
    other.masked("i", jnp.array([100], jnp.int8), jnp.array([False]))  # its int8 maximum is not a minimum
    other.export()
    t = StatsTracker(process_count=2, process_index=0, gather=lambda v: np.stack([v, captured["v"]]))
    t.summary("i", np.array([300.0, 250.0]))
    out = t.export()
    assert (out["i/min"], out["i/max"], out["i/count"]) == (250.0, 300.0, 2)
