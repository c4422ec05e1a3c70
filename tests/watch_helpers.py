"""Helpers of the watch tests: a trainer in another process that writes a step (with RunWriter) each time it
is told to, and a reader of another process's output lines with timeouts (no sleeps)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from conftest import ROOT

# Told "step" it writes the next step (8 samples, two roles) and flushes it to disk; "nan" the same with every
# reward NaN; "close" closes the writer. It answers "wrote N" once the step's file is on disk.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mRED [bold]markup[/bold] \u202eevil"
CHILD = textwrap.dedent(
    """
    import math, sys
    from runlog import RunWriter
    HOSTILE = HOSTILE_TEXT
    w = RunWriter(sys.argv[1], roles=["solver", "judge"], name="live-run")
    print("ready", flush=True)
    step = 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "close":
            w.close()
            print("closed", flush=True)
            break
        n = 8
        nan = cmd == "nan"
        r = [float("nan") if nan else (i + step) / (n + step) for i in range(n)]
        w.log_samples(step, {
            "sample_id": [f"s{step}-{i}" for i in range(n)],
            "group_id": [f"g{step}-{i // 4}" for i in range(n)],
            "reward": r,
            "solver_reward": r,
            "judge_reward": [0.5] * n,
            "solver_kl": [0.01 * (1 + i) for i in range(n)],
            "judge_kl": [0.02] * n,
            "completion": [HOSTILE + f" answer {i}" for i in range(n)],
        })
        w.flush()
        print(f"wrote {step}", flush=True)
        step += 1
    """
).replace("HOSTILE_TEXT", repr(HOSTILE))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env.pop("COLUMNS", None)
    return env


class Lines:
    """The lines a stream gives, read on a thread; ``wait`` returns the first new line that ``pred`` accepts."""

    def __init__(self, stream: IO[str]) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait(self, pred: Callable[[str], bool], timeout: float = 15.0) -> str:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout} s; seen: {self.seen[-10:]}")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended; seen: {self.seen[-10:]}")
            self.seen.append(line)
            if pred(line):
                return line


class Trainer:
    """The child writer: ``step()`` writes one step and returns once it is on disk."""

    def __init__(self, run_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(run_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.out = Lines(self.proc.stdout)
        self.out.wait(lambda line: line == "ready", timeout=30)

    def step(self, kind: str = "step") -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(kind + "\n")
        self.proc.stdin.flush()
        return int(self.out.wait(lambda line: line.startswith("wrote ")).split()[1])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def written_run(run_dir: Path, steps: int, kind: str = "step") -> Path:
    """A run of ``steps`` steps written by the child writer, which then exits (killed, as a crash would)."""
    trainer = Trainer(run_dir)
    try:
        for _ in range(steps):
            trainer.step(kind)
    finally:
        trainer.kill()
    return run_dir


def runlog(*args: str) -> subprocess.Popen[str]:
    """``runlog ARGS`` in another process, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "runlog", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
