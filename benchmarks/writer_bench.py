#!/usr/bin/env python
"""Cost of logging samples inside a training loop: runlog's RunWriter against its two peers, in one run.

Each step logs 512 samples with about 2 KB of text each (prompt, completion, two chat messages, reward,
per-role rewards and KL). The training step is simulated as 100 ms during which the Python thread waits
(as it does while an accelerator computes). Modes, same rows, same loop:

* ``none``          the loop without logging (the reference time)
* ``runlog``        ``RunWriter.log_samples`` + ``log_scalars`` (background thread)
* ``pyarrow-sync``  ``pa.Table.from_pylist`` + ``pq.write_table`` in the loop (what a trainer does by hand)
* ``wandb-table``   ``wandb.Table`` + ``run.log`` in offline mode

Reported: caller time per call (median, p99), overhead on the 100 ms step, the writer's background
throughput, and 20+ SIGKILL trials (tests/test_writer_crash.py's check). Needs ``pip install 'runlog[bench]'``.

    WANDB_MODE=offline python benchmarks/writer_bench.py [--steps 40] [--trials 20]
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from runlog import RunWriter  # noqa: E402

STEP_S = 0.100
ROWS = 512
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
        rows.append(
            {
                "sample_id": f"s{step}-{i}",
                "group_id": f"s{step}-g{i // 8}",
                "reward": rng.random(),
                "solver_reward": rng.random(),
                "verifier_reward": rng.random(),
                "solver_kl": rng.random() * 0.05,
                "verifier_kl": rng.random() * 0.01,
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
    with tempfile.TemporaryDirectory() as tmp:
        w = RunWriter(Path(tmp) / "runlog", roles=["solver", "verifier"])
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
        f"\n{steps} steps x {ROWS} rows, {mb_per_step:.2f} MB of Arrow data per step, "
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
    args = parser.parse_args()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}"
    )
    bench(args.steps)
    crash_trials(args.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
