#!/usr/bin/env python
"""Cost of logging samples inside a training loop: runlog's RunWriter against its two peers, in one run.

Each step logs 512 samples with about 2 KB of text each (prompt, completion, two chat messages, reward,
per-role rewards and KL). The training step is simulated as 100 ms during which the Python thread waits
(as it does while an accelerator computes). Modes, same rows, same loop:

* ``none``          the loop without logging (the reference time)
* ``runlog``        ``RunWriter.log_samples`` + ``log_scalars`` (background thread)
* ``pyarrow-sync``  ``pa.Table.from_pylist`` + ``pq.write_table`` in the loop (what a trainer does by hand)
* ``wandb-table``   ``wandb.Table`` + ``run.log`` in offline mode

* ``hand-off``      the peer that checks nothing: the rows appended to a list (a trainer's own queue)

Reported: caller time per call (median, p99), overhead on the 100 ms step, the writer's background
throughput, and 20+ SIGKILL trials (tests/test_writer_crash.py's check). Needs ``pip install 'runlog[bench]'``.
``--roles 3`` gives each row a third role (judge: two more flat columns to fold and check).

Which runlog is measured: ``--src DIR`` (a ``src`` folder of another checkout: ``git archive REV src | tar -x
-C DIR``), else the one ``PYTHONPATH`` names first, else this checkout's ``src``; the output names it. To
compare two versions, run the script once per ``--src``, alternating, in one session.

``--jax`` adds the phase of issue 17 (JAX on whatever device it finds; the CPU here): the same 512 rows as a
dict of columns whose numbers (reward, three roles' reward and KL) are JAX arrays fresh from a jitted step
that is still running when the call is made, and the text as lists. Per call on the caller's thread:

* ``numpy``         the same columns as numpy arrays, ``log_samples`` (the host-only reference)
* ``jax``           ``log_samples`` + ``StatsTracker.summary`` x2 + ``scalar`` + ``commit`` (runlog now)
* ``jax-before``    the same with the caller doing what runlog did before: ``jax.device_get`` of the columns
                    and of the summaries on the caller (waits for the step, walks every string)
* ``plain-async``   the peer, the limit: ``copy_to_host_async()`` on each JAX leaf and a queue put on the
                    caller; ``np.asarray`` and ``pq.write_table`` on a plain thread

    WANDB_MODE=offline python benchmarks/writer_bench.py [--steps 40] [--trials 20] [--roles 3] [--jax]
        [--jax-only] [--src DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def _source() -> str | None:
    """The ``--src`` given, read before runlog is imported (argparse runs later)."""
    for i, arg in enumerate(sys.argv):
        if arg == "--src" and i + 1 < len(sys.argv):
            return str(Path(sys.argv[i + 1]).resolve())
        if arg.startswith("--src="):
            return str(Path(arg.split("=", 1)[1]).resolve())
    return None


# The runlog measured: ``--src``, else ``PYTHONPATH``'s (which Python put first already), else this checkout's.
# (Prepending this checkout's ``src`` always made a PYTHONPATH A/B measure the same code twice.)
if _source() is not None:
    sys.path.insert(0, _source())
elif not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT / "src"))
sys.path.append(str(ROOT / "tests"))  # test_writer_crash, for the SIGKILL trials

import runlog  # noqa: E402
from runlog import RunWriter  # noqa: E402

STEP_S = 0.100
ROWS = 512
ROLES = ["solver", "verifier"]  # ``--roles 3`` adds "judge"
WORDS = [
    "the",
    "solver",
    "calls",
    "the",
    "python",
    "tool",
    "then",
    "checks",
    "the",
    "verifier",
    "answer",
    "and",
    "the",
    "judge",
    "accepts",
]


def make_rows(step: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(ROWS):
        prompt = " ".join(rng.choice(WORDS) for _ in range(70))  # ~0.45 KB
        completion = " ".join(rng.choice(WORDS) for _ in range(240))  # ~1.5 KB
        reward = rng.random()
        roles = {f"{r}_reward": rng.random() for r in ROLES}
        roles.update({f"{r}_kl": rng.random() * 0.05 for r in ROLES})
        rows.append(
            {
                "sample_id": f"s{step}-{i}",
                "group_id": f"s{step}-g{i // 8}",
                "reward": reward,
                **roles,
                "prompt": prompt,
                "completion": completion,
                "messages": [
                    {"role": "user", "content": prompt[:120]},
                    {"role": "assistant", "content": completion[:120]},
                ],
            }
        )
    return rows


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def loop(steps: int, data: list[list[dict]], log) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """Run ``steps`` simulated training steps; return total seconds and the per-call logging times."""
    calls: list[float] = []
    t_start = time.perf_counter()
    for step in range(steps):
        deadline = time.perf_counter() + STEP_S
        while (left := deadline - time.perf_counter()) > 0:  # the "accelerator" works; Python waits
            time.sleep(left)
        t0 = time.perf_counter()
        log(step, data[step % len(data)])
        calls.append(time.perf_counter() - t0)
    return time.perf_counter() - t_start, calls


def bench(steps: int) -> list[dict]:
    rng = random.Random(0)
    data = [make_rows(s, rng) for s in range(4)]
    mb_per_step = pa.Table.from_pylist(data[0]).nbytes / 1e6
    results = []
    base, _ = loop(steps, data, lambda s, rows: None)
    results.append({"mode": "none", "total": base, "calls": [0.0], "extra": ""})
    handed: list[tuple[int, list[dict]]] = []
    total, calls = loop(steps, data, lambda s, rows: handed.append((s, rows)))
    results.append({"mode": "hand-off", "total": total, "calls": calls, "extra": "a list append, no check, no write"})
    with tempfile.TemporaryDirectory() as tmp:
        w = RunWriter(Path(tmp) / "runlog", roles=ROLES)
        total, calls = loop(
            steps, data, lambda s, rows: (w.log_samples(s, rows), w.log_scalars(s, {"train/loss": 0.1}))
        )
        t0 = time.perf_counter()
        w.close()
        tail = time.perf_counter() - t0
        st = w.stats()
        thr = st["bytes_written"] / 1e6 / st["background_s"]
        results.append(
            {
                "mode": "runlog",
                "total": total,
                "calls": calls,
                "extra": f"background {thr:.1f} MB/s on disk ({st['rows_written'] / st['background_s']:,.0f} rows/s), "
                f"close() {tail * 1e3:.0f} ms, queue waits {st['queue_waits']}",
            }
        )

        def sync(step: int, rows: list[dict]) -> None:
            pq.write_table(
                pa.Table.from_pylist(rows),
                Path(tmp) / f"sync_{step}.parquet",
                compression="zstd",
                write_statistics=True,
            )

        total, calls = loop(steps, data, sync)
        results.append({"mode": "pyarrow-sync", "total": total, "calls": calls, "extra": ""})
        try:
            import wandb
        except ImportError:
            results.append({"mode": "wandb-table", "total": None, "calls": [], "extra": "wandb not installed"})
        else:
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ["WANDB_DIR"] = tmp
            os.environ.setdefault("WANDB_SILENT", "true")
            run = wandb.init(project="runlog-bench", mode="offline", dir=tmp)
            cols = ["sample_id", "group_id", "reward", "prompt", "completion"]

            def wb(step: int, rows: list[dict]) -> None:
                run.log({"samples": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in rows])}, step=step)

            total, calls = loop(steps, data, wb)
            t0 = time.perf_counter()
            run.finish()
            results.append(
                {
                    "mode": "wandb-table",
                    "total": total,
                    "calls": calls,
                    "extra": f"finish() {time.perf_counter() - t0:.1f} s",
                }
            )
    for r in results:
        r["overhead"] = None if r["total"] is None else (r["total"] - base) / base
    print(
        f"\n{steps} steps x {ROWS} rows, {len(ROLES)} roles, {mb_per_step:.2f} MB of Arrow data per step, "
        f"simulated step {STEP_S * 1e3:.0f} ms"
    )
    print("| mode | median per call (ms) | p99 per call (ms) | overhead on the 100 ms step | notes |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in results:
        if r["total"] is None:
            print(f"| {r['mode']} | - | - | - | {r['extra']} |")
            continue
        med, p99 = statistics.median(r["calls"]) * 1e3, pct(r["calls"], 0.99) * 1e3
        print(f"| {r['mode']} | {med:.3f} | {p99:.3f} | {r['overhead'] * 100:+.2f} % | {r['extra']} |")
    return results


def jax_columns(rows: list[dict]) -> tuple[dict, dict]:
    """The rows as a dict of columns: text as lists, numbers as numpy (host) and the numeric names."""
    import numpy as np

    roles = ["solver", "verifier", "judge"]
    rng = np.random.default_rng(0)
    host = {
        "sample_id": [r["sample_id"] for r in rows],
        "group_id": [r["group_id"] for r in rows],
        "prompt": [r["prompt"] for r in rows],
        "completion": [r["completion"] for r in rows],
        "messages": [r["messages"] for r in rows],
    }
    numbers = {"reward": rng.random(ROWS, dtype=np.float32)}
    for role in roles:
        numbers[f"{role}_reward"] = rng.random(ROWS, dtype=np.float32)
        numbers[f"{role}_kl"] = rng.random(ROWS, dtype=np.float32) * 0.05
    return host, numbers


def bench_jax(steps: int) -> list[dict]:
    """Per-call cost on the caller's thread with JAX arrays still being computed, against numpy and the peer."""
    import queue as queue_mod
    import threading

    import jax
    import jax.numpy as jnp
    import numpy as np

    from runlog import StatsTracker

    rng = random.Random(0)
    text, numbers = jax_columns(make_rows(0, rng))
    names = list(numbers)
    stacked = jnp.asarray(np.stack([numbers[k] for k in names]))

    @jax.jit
    def step_fn(w, x):  # ~10 ms of CPU work, still running at the call; the step is padded to 100 ms
        w = jnp.tanh(w @ w)
        y = x * (1.0 + 0.0 * jnp.mean(w))
        return w, {k: y[i] for i, k in enumerate(names)}, jnp.mean(w)  # the columns and a "loss"

    w0 = jnp.eye(512, dtype=jnp.float32) * 0.5
    jax.block_until_ready(step_fn(w0, stacked))
    t0 = time.perf_counter()
    jax.block_until_ready(step_fn(w0, stacked))
    device_ms = (time.perf_counter() - t0) * 1e3

    def run(mode: str, tmp: Path) -> dict:
        calls: list[float] = []  # log_samples (or the peer's hand-off) alone
        whole: list[float] = []  # with the tracker: summary x2, scalar, commit
        w = w0
        writer = RunWriter(tmp / mode, roles=["solver", "verifier", "judge"]) if mode != "plain-async" else None
        tracker = StatsTracker()
        q: queue_mod.Queue = queue_mod.Queue(maxsize=32)

        def plain_worker() -> None:
            while (item := q.get()) is not None:
                s, leaves = item
                table = pa.table({**{k: np.asarray(v) for k, v in leaves.items()}, **text})
                pq.write_table(table, tmp / f"plain_{s}.parquet", compression="zstd")

        worker = threading.Thread(target=plain_worker) if mode == "plain-async" else None
        if worker:
            worker.start()
        for s in range(steps + 2):  # two warm-up steps (compiles), not timed
            deadline = time.perf_counter() + STEP_S
            w, cols, loss = step_fn(w, stacked)  # dispatched: the "device" is now computing this step
            t0 = time.perf_counter()
            if mode == "numpy":
                writer.log_samples(s, {**text, **numbers})
                t1 = time.perf_counter()
                tracker.summary("train/reward", numbers["reward"])
                tracker.summary("train/kl", numbers["solver_kl"])
                tracker.scalar(loss=0.5)
                tracker.commit(s, writer)
            elif mode == "plain-async":
                for v in cols.values():
                    v.copy_to_host_async()
                q.put((s, cols))
                t1 = time.perf_counter()
            elif mode == "jax":
                writer.log_samples(s, {**text, **cols})
                t1 = time.perf_counter()
                tracker.summary("train/reward", cols["reward"])
                tracker.summary("train/kl", cols["solver_kl"])
                tracker.scalar(loss=loss)
                tracker.commit(s, writer)
            else:  # jax-before: what the caller's thread did before issue 17
                writer.log_samples(s, jax.device_get({**text, **cols}))
                t1 = time.perf_counter()
                tracker.summary("train/reward", cols["reward"])
                tracker.summary("train/kl", cols["solver_kl"])
                tracker.scalar(loss=float(loss))
                tracker.commit(s, writer).get("train/reward/mean")  # the old commit fetched on the caller
            t2 = time.perf_counter()
            if s >= 2:
                calls.append(t1 - t0)
                whole.append(t2 - t0)
            jax.block_until_ready(w)  # the next step starts when this one is done, as in a real loop
            while (left := deadline - time.perf_counter()) > 0:  # the rest of a 100 ms step (GIL released)
                time.sleep(left)
        if worker:
            q.put(None)
            worker.join()
        extra = ""
        if writer is not None:
            writer.close()
            st = writer.stats()
            extra = f"queue waits {st['queue_waits']}, max depth {st['max_depth']}"
        return {"mode": mode, "calls": calls, "whole": whole, "extra": extra}

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("numpy", "jax", "jax-before", "plain-async"):
            results.append(run(mode, Path(tmp)))
    print(
        f"\nJAX {jax.__version__} on {jax.devices()[0].platform}: {steps} steps x {ROWS} rows, 7 numeric columns "
        f"from a jitted step of {device_ms:.0f} ms still running at the call (step padded to {STEP_S * 1e3:.0f} ms), "
        "text as lists (~2 KB per row)"
    )
    print("| mode | log_samples median (ms) | p99 (ms) | with StatsTracker, median (ms) | p99 (ms) | notes |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        c, a = r["calls"], r["whole"]
        print(
            f"| {r['mode']} | {statistics.median(c) * 1e3:.3f} | {pct(c, 0.99) * 1e3:.3f} "
            f"| {statistics.median(a) * 1e3:.3f} | {pct(a, 0.99) * 1e3:.3f} | {r['extra']} |"
        )
    return results


def crash_trials(n: int) -> None:
    from test_writer_crash import check_run, kill_at_random

    rng = random.Random(42)
    ok, found = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            delay = rng.uniform(0.05, 1.5)
            run_dir = Path(tmp) / f"t{i}"
            kill_at_random(run_dir, delay)
            try:
                res = check_run(run_dir)
            except AssertionError as exc:
                print(f"trial {i}: FAILED after {delay:.2f} s: {exc}")
                continue
            ok += 1
            found.append((delay, res))
    print(f"\nSIGKILL trials: {ok}/{n} passed (inspect exit 0, whole steps, contiguous from 0)")
    print("| trial | killed after (s) | whole steps on disk | scalar steps | warnings (leftover .tmp) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for i, (delay, res) in enumerate(found):
        print(f"| {i} | {delay:.2f} | {res['steps']} | {res['scalar_steps']} | {res['warnings']} ({res['tmp_left']}) |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--jax", action="store_true", help="add the JAX phase (issue 17)")
    parser.add_argument("--jax-only", action="store_true", help="only the JAX phase")
    parser.add_argument("--roles", type=int, choices=(2, 3), default=2, help="roles per row (3 adds judge)")
    parser.add_argument("--src", help="the runlog src folder to measure (default: PYTHONPATH's, else this one's)")
    args = parser.parse_args()
    if args.roles == 3:
        ROLES.append("judge")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}"
    )
    print(f"runlog measured: {Path(runlog.__file__).parents[1]}")
    if not args.jax_only:
        bench(args.steps)
    if args.jax or args.jax_only:
        bench_jax(args.steps)
    if not args.jax_only:
        crash_trials(args.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
