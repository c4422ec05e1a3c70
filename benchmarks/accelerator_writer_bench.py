#!/usr/bin/env python
"""Issue 17's accelerator measurement: does logging with runlog slow a jitted training step down?

A training loop of jitted bf16 matmul steps (two sizes) with, each step, 512 samples: the reward and three
roles' reward and KL as JAX arrays computed by the step, ~2 KB of text per sample as lists. Loops, each timed
whole (``--reps`` repetitions, best kept):

* ``none``        no logging (the reference)
* ``float``       a ``float(loss)`` each step (the usual host sync)
* ``plain``       the limit: ``copy_to_host_async()`` on each JAX leaf and a queue put on the caller;
                  ``np.asarray`` + ``pq.write_table`` on a plain thread
* ``runlog``      ``RunWriter.log_samples`` only
* ``runlog+st``   ``log_samples`` + ``StatsTracker.summary`` x2 + ``scalar(loss=...)`` + ``commit``

Printed: a markdown table of ms per step, overhead against ``none``, the median / max time per call on the
training thread, the median time of the step's own call (dispatch), and the median time per call measured
apart with the device idle (each step waited for before the call). In a loop the device bounds, the host runs
ahead until JAX's queue of dispatched computations is full, and then whichever dispatch comes next waits for
the device: a logging call that dispatches work (a copy, a reduction) can take over that wait from the
step's call. The step dispatch column shows it moving; the idle column is the call's own cost.

Needs JAX (CUDA build on a GPU), numpy, pyarrow; ``src`` on ``PYTHONPATH`` is enough:

    PYTHONPATH=src python benchmarks/accelerator_writer_bench.py                  # GPU: 8192^2 x 16 and 4096^2 x 8
    PYTHONPATH=src python benchmarks/accelerator_writer_bench.py --small          # CPU check: small sizes, few steps
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from runlog import RunWriter, StatsTracker  # noqa: E402

ROWS = 512
ROLES = ["solver", "verifier", "judge"]
ENCODE_THREADS = 4  # RunWriter's default; --encode-threads changes it
NAMES = ["reward"] + [f"{r}_{k}" for r in ROLES for k in ("reward", "kl")]


def make_step(dim: int, layers: int):  # type: ignore[no-untyped-def]
    """A jitted step: ``layers`` bf16 matmuls of ``dim``^2 (weights donated), the samples' numbers and a loss."""

    @partial(jax.jit, donate_argnums=0)
    def step(ws, key):
        x = jax.random.normal(key, (dim, dim), jnp.bfloat16)
        for i in range(layers):
            x = jnp.tanh(x @ ws[i])
        loss = jnp.mean(x.astype(jnp.float32) ** 2)
        ws = [w - 1e-6 * loss.astype(w.dtype) for w in ws]
        numbers = jax.random.uniform(jax.random.fold_in(key, 1), (len(NAMES), ROWS)) + 0.0 * loss
        return ws, {k: numbers[i] for i, k in enumerate(NAMES)}, loss

    return step


def text_columns() -> dict:
    words = ["the", "solver", "calls", "the", "python", "tool", "then", "checks", "the", "verifier"]
    words += ["answer", "and", "the", "judge", "accepts"]
    rng = np.random.default_rng(0)
    prompt = [" ".join(rng.choice(words, 70)) for _ in range(ROWS)]
    completion = [" ".join(rng.choice(words, 240)) for _ in range(ROWS)]
    return {"sample_id": [f"s{i}" for i in range(ROWS)], "prompt": prompt, "completion": completion}


def loop(mode: str, step, ws, steps: int, text: dict, tmp: Path, idle: bool = False):  # type: ignore[no-untyped-def]
    """Run ``steps`` steps with ``mode``'s logging: the whole loop's seconds, the per-call seconds, the per-step
    dispatch seconds, the weights. ``idle``: wait for each step before the call (the call's own cost)."""
    calls: list[float] = []
    dispatches: list[float] = []
    writer = (
        RunWriter(tmp / f"{mode}-{time.time_ns()}", roles=ROLES, encode_threads=ENCODE_THREADS)
        if mode.startswith("runlog")
        else None
    )
    tracker = StatsTracker() if mode == "runlog+st" else None
    q: queue.Queue = queue.Queue(maxsize=32)
    worker = None
    if mode == "plain":

        def drain() -> None:
            while (item := q.get()) is not None:
                s, cols = item
                table = pa.table({**{k: np.asarray(v) for k, v in cols.items()}, **text})
                pq.write_table(table, tmp / f"plain_{s}.parquet", compression="zstd")

        worker = threading.Thread(target=drain)
        worker.start()
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(ws)
    t_start = time.perf_counter()
    for s in range(steps):
        t_step = time.perf_counter()
        ws, cols, loss = step(ws, jax.random.fold_in(key, s))
        t0 = time.perf_counter()
        dispatches.append(t0 - t_step)
        if idle:
            jax.block_until_ready((ws, cols, loss))
            t0 = time.perf_counter()
        if mode == "float":
            float(loss)
        elif mode == "plain":
            for v in cols.values():
                v.copy_to_host_async()
            q.put((s, cols))
        elif writer is not None:
            writer.log_samples(s, {**text, **cols})
            if tracker is not None:
                tracker.summary("train/reward", cols["reward"])
                tracker.summary("train/kl", cols["solver_kl"])
                tracker.scalar(loss=loss)
                tracker.commit(s, writer)
        calls.append(time.perf_counter() - t0)
    jax.block_until_ready(ws)
    total = time.perf_counter() - t_start  # the loop's time until the device is done (the writer may lag)
    if worker is not None:
        q.put(None)
        worker.join()
    if writer is not None:
        writer.close()
    return total, calls, dispatches, ws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="small sizes (CPU check)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--sizes", default=None, help="steps as DIMxLAYERS,... (default 8192x16,4096x8)")
    parser.add_argument("--encode-threads", type=int, default=4, help="RunWriter's encode_threads (default 4)")
    args = parser.parse_args()
    global ENCODE_THREADS
    ENCODE_THREADS = args.encode_threads
    sizes = [(256, 4), (128, 2)] if args.small else [(8192, 16), (4096, 8)]
    if args.sizes:
        sizes = [(int(d), int(n)) for d, n in (part.split("x") for part in args.sizes.split(","))]
    steps = args.steps or (20 if args.small else 100)
    dev = jax.devices()[0]
    print(
        f"Machine: {getattr(dev, 'device_kind', dev.platform)} ({dev.platform}), {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, JAX {jax.__version__}, pyarrow {pa.__version__}; {steps} steps per "
        f"loop, {ROWS} samples per step, best of {args.reps}, RunWriter(encode_threads={ENCODE_THREADS})"
    )
    text = text_columns()
    modes = ["none", "float", "plain", "runlog", "runlog+st"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dim, layers in sizes:
            step = make_step(dim, layers)
            ws = [jnp.eye(dim, dtype=jnp.bfloat16) for _ in range(layers)]
            for mode in modes:  # warm-up: compile everything, including the writer's copies
                ws = loop(mode, step, ws, 3, text, Path(tmp))[3]
            best: dict[str, tuple[float, list[float], list[float]]] = {}
            for _ in range(args.reps):
                for mode in modes:  # interleaved, so that a slow moment hits every mode
                    total, calls, dispatches, ws = loop(mode, step, ws, steps, text, Path(tmp))
                    if mode not in best or total < best[mode][0]:
                        best[mode] = (total, calls, dispatches)
            idle: dict[str, float] = {}
            for mode in modes:
                _, calls, _, ws = loop(mode, step, ws, min(steps, 30), text, Path(tmp), idle=True)
                idle[mode] = statistics.median(calls[1:]) * 1e3
            base = best["none"][0]
            for mode in modes:
                total, calls, dispatches = best[mode]
                rows.append(
                    (
                        f"{dim}² x {layers}",
                        mode,
                        total / steps * 1e3,
                        (total - base) / base * 100,
                        statistics.median(calls) * 1e3,
                        max(calls) * 1e3,
                        statistics.median(dispatches) * 1e3,
                        idle[mode],
                    )
                )
    print(
        "\n| step | loop | ms per step | overhead vs none | median per call (ms) | max per call (ms) "
        "| median step dispatch (ms) | per call, device idle (ms) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, mode, ms, over, med, mx, disp, idle_ms in rows:
        print(f"| {size} | {mode} | {ms:.2f} | {over:+.1f} % | {med:.3f} | {mx:.3f} | {disp:.3f} | {idle_ms:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
