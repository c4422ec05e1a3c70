#!/usr/bin/env python
"""How close is ``runlog inspect`` to the cheapest possible pass over a large Flink run?

``inspect`` claims to answer "what is in this run directory" from Parquet footers alone, without reading
the model text. This benchmark checks that claim against two whole-process pyarrow baselines on the same
files:

* **floor:** a Python process that lists the files and calls ``pyarrow.parquet.read_metadata`` on each.
  ``inspect`` cannot do less work than this.
* **full read:** a Python process that reads every file completely with ``pyarrow.parquet.read_table``.
  This is what ``inspect`` would cost if it touched the data pages.

All three run as separate processes, timed with ``time.perf_counter`` around ``subprocess.run``, so that
interpreter start-up and imports count. That is what a user waits for. The phases are interleaved round-robin
(A B C, A B C, ...) so that a drift in machine load or page-cache state hits all of them alike. There is one
untimed warm-up round first, and the page cache is warm after it. A fourth reference row times a bare
``python -c "import pyarrow.parquet"``, to separate start-up from per-file work.

The data is a synthetic Flink-v1 run (seed 000 schema): 2,000 files x 512 rows, with 1-2 KB of unique text
per row in ``trajectory`` and in ``agent_trajectories``. It is written once into ``benchmarks/_data/``
(git-ignored) and reused while its parameters match.

Usage::

    python benchmarks/inspect_bench.py                 # generate if needed, 5 interleaved repetitions
    python benchmarks/inspect_bench.py --reps 9 --markdown   # also print a section for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO_ROOT / "benchmarks" / "_data"
GENERATOR_VERSION = 1  # bump when the generated data changes, so stale copies are rebuilt
ROLES = ("solver", "verifier", "judge")
CORPUS_CHARS = 4_000_000

FOOTERS_CODE = """
import os, sys
import pyarrow.parquet as pq
d = os.path.join(sys.argv[1], "flink_logs")
n = 0
for name in sorted(os.listdir(d)):
    if name.endswith(".parquet"):
        n += pq.read_metadata(os.path.join(d, name)).num_rows
print(n)
"""

FULL_CODE = """
import os, sys
import pyarrow.parquet as pq
d = os.path.join(sys.argv[1], "flink_logs")
n = 0
for name in sorted(os.listdir(d)):
    if name.endswith(".parquet"):
        n += pq.read_table(os.path.join(d, name)).num_rows
print(n)
"""

STARTUP_CODE = "import pyarrow.parquet"


# ---------------------------------------------------------------------------------------------------------
# Data generation
# ---------------------------------------------------------------------------------------------------------
def make_corpus(seed: int) -> str:
    """Pseudo-English text that zstd/snappy compress about as well as model output (roughly 2-3x).

    Repeating one template would compress to nothing and make the full read look cheap. Random pseudo-words
    from a Zipf-like vocabulary give a realistic compression ratio, and slicing the corpus at random offsets
    makes every row unique without paying for fresh random text per row.
    """
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "ra", "tu", "sh", "an", "er", "in", "or", "th", "qu", "es", "al", "ve"]
    vocab = ["".join(rng.choices(syll, k=rng.randint(1, 4))) for _ in range(4000)]
    vocab += ["the", "answer", "is", "tool", "python", "verify", "<think>", "</think>", "=", "so", "we"]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    parts: list[str] = []
    size = 0
    while size < CORPUS_CHARS:
        words = rng.choices(vocab, weights=weights, k=4096)
        for j in range(0, len(words), rng.randint(9, 17)):
            words[j] = words[j].capitalize()
        chunk = " ".join(words) + ".\n"
        parts.append(chunk)
        size += len(chunk)
    return "".join(parts)


_CORPUS: str | None = None


def _corpus() -> str:
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = make_corpus(20260204)
    return _CORPUS


def _piece(rng: random.Random, lo: int, hi: int) -> str:
    corpus = _corpus()
    n = rng.randint(lo, hi)
    start = rng.randrange(0, len(corpus) - n)
    return corpus[start : start + n]


def write_flink_file(args: tuple[Path, int, int]) -> int:
    """Write ``batch_debug_data_train_{step}.parquet`` (v1) and return its size in bytes.

    It runs in a worker process. Each file is seeded by its step, so the data is the same however the
    work is split across processes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    logs, step, rows = args
    rng = random.Random(step)
    cols: dict[str, list] = {
        c: []
        for c in (
            "env_name",
            "trajectory",
            "agent_trajectories",
            "exception_info",
            "reward",
            "reward_metrics",
            "reward_text_info",
            "unique_sample_id",
            "role_assignments",
        )
    }
    per_role: dict[str, list[float | None]] = {f"{r}_{m}": [] for r in ROLES for m in ("reward", "kl")}
    t = step / 2000
    for i in range(rows):
        failed = rng.random() < 0.003
        correct = rng.random() < 0.3 + 0.5 * t
        fmt = 1.0 if rng.random() < 0.9 else 0.5
        reward = None if failed else 0.8 * correct + 0.2 * fmt
        question = _piece(rng, 60, 200)
        trajectory = (
            f"<|system|>\nYou are the solver in a debate.\n<|user|>\n{question}\n<|assistant name=solver|>\n"
            f"<think>{_piece(rng, 500, 1100)}</think><answer>{rng.randint(0, 9999)}</answer>\n"
            f"<|assistant name=verifier|>\n{_piece(rng, 150, 400)}\n<|assistant name=judge|>\n"
            f"Verdict: {'ACCEPT' if correct else 'REJECT'}\n"
        )
        order = list(ROLES)
        rng.shuffle(order)
        agents = [
            {"agent_id": f"agent_{j}", "turns": [{"role": "assistant", "content": _piece(rng, 250, 600)}]}
            for j in range(3)
        ]
        cols["env_name"].append("debate_arith" if i % 2 else "debate_trivia")
        cols["trajectory"].append(trajectory)
        cols["agent_trajectories"].append(json.dumps(agents))
        cols["exception_info"].append("Traceback (most recent call last):\nTimeoutError: tool" if failed else None)
        cols["reward"].append(reward)
        cols["reward_metrics"].append(None if failed else {"correct": float(correct), "format": fmt})
        cols["reward_text_info"].append(None if failed else f"extracted_answer={rng.randint(0, 9999)}")
        cols["unique_sample_id"].append(f"debate_train:{step * rows + i:09d}")
        cols["role_assignments"].append(json.dumps({f"agent_{j}": r for j, r in enumerate(order)}))
        for r in ROLES:
            per_role[f"{r}_reward"].append(None if failed else round(rng.random(), 4))
            per_role[f"{r}_kl"].append(round(0.001 + 0.05 * t * rng.random(), 6))
    table = pa.table(
        {
            "env_name": pa.array(cols["env_name"], pa.string()),
            "trajectory": pa.array(cols["trajectory"], pa.string()),
            "agent_trajectories": pa.array(cols["agent_trajectories"], pa.string()),
            "exception_info": pa.array(cols["exception_info"], pa.string()),
            "reward": pa.array(cols["reward"], pa.float64()),
            "reward_metrics": pa.array(cols["reward_metrics"]),
            "reward_text_info": pa.array(cols["reward_text_info"], pa.string()),
            "unique_sample_id": pa.array(cols["unique_sample_id"], pa.string()),
            "schema_version": pa.array([1] * rows, pa.int64()),
            "role_assignments": pa.array(cols["role_assignments"], pa.string()),
            **{k: pa.array(v, pa.float64()) for k, v in per_role.items()},
        }
    )
    path = logs / f"batch_debug_data_train_{step}.parquet"
    # pandas' DataFrame.to_parquet defaults (which Flink's writer uses): snappy, one row group per file.
    pq.write_table(table, path, compression="snappy")
    return path.stat().st_size


def cached_run(
    name: str, params: dict, build: Callable[[tuple[Path, int]], int], files: int, *, regenerate: bool = False
) -> tuple[Path, int]:
    """``benchmarks/_data/<name>`` and its size in bytes, built by ``build((logs_dir, step))`` per file (in a
    process pool) unless a complete copy with the same ``params`` exists. Shared by the benchmarks.

    A ``<name>.params.json`` next to the run (not inside it, where ``inspect`` would see a stray file), written
    last, marks a complete copy. An interrupted generation has none and is rebuilt from scratch.
    """
    run = DATA_ROOT / name
    marker = DATA_ROOT / f"{name}.params.json"
    if not regenerate and marker.exists():
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            done = None
        if done and done.get("params") == params:
            return run, int(done["bytes"])
    marker.unlink(missing_ok=True)
    if run.exists():
        shutil.rmtree(run)
    logs = run / "flink_logs"
    logs.mkdir(parents=True)
    workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    print(f"generating {name} ({files} files) with {workers} worker(s) ...", file=sys.stderr)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(build, [(logs, s) for s in range(files)], chunksize=8))
    total = sum(sizes)
    marker.write_text(json.dumps({"params": params, "bytes": total}, indent=2) + "\n")
    print(f"  done in {time.perf_counter() - t0:.0f} s, {total / 2**20:.0f} MiB", file=sys.stderr)
    return run, total


def _write_flink_step(args: tuple[Path, int], rows: int) -> int:
    logs, step = args
    return write_flink_file((logs, step, rows))


def ensure_data(files: int, rows: int, regenerate: bool) -> tuple[Path, int]:
    """The timed Flink-v1 run (``flink_v1_<files>x<rows>``), generated unless an identical copy exists."""
    params = {"generator_version": GENERATOR_VERSION, "files": files, "rows": rows}
    build = functools.partial(_write_flink_step, rows=rows)
    return cached_run(f"flink_v1_{files}x{rows}", params, build, files, regenerate=regenerate)


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Phase:
    """One whole-process command to time. ``times`` holds the timed repetitions only (not the warm-up)."""

    key: str
    label: str
    argv: list[str]
    times: list[float] = field(default_factory=list)
    skipped: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # set for this phase's process only


def child_env() -> dict[str, str]:
    """The environment for the children: the checkout's ``src/`` goes first on PYTHONPATH; no kept answers
    (unless ``RUNLOG_ANSWERS`` is set).

    This way the benchmark measures the code in this tree even when runlog is not installed, or an older
    copy is installed.
    """
    env = dict(os.environ)
    # A command asked again of an unchanged run prints its kept answer (``runlog.cli.answers``): benchmarks
    # time the work unless they ask for the kept answers themselves (incremental_bench's repeat, diff_bench's
    # ``kept``), by setting this after.
    env.setdefault("RUNLOG_ANSWERS", "off")
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    compile_sources()
    return env


def compile_sources() -> None:
    """Byte-compile ``src/`` once, as ``pip install`` does for an installed package.

    Without it, a machine with ``PYTHONDONTWRITEBYTECODE=1`` (this project's is one) recompiles runlog's
    ~80 modules in every timed process (~35 ms), a cost no installed copy pays, while the peers' packages
    come compiled from their wheels."""
    import compileall

    compileall.compile_dir(str(REPO_ROOT / "src"), quiet=1)


def run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc


def check_cli(phase: Phase, env: dict[str, str]) -> None:
    """Run ``runlog inspect`` once. If it does not exist yet or fails, mark the phase skipped with why.

    Exit code 1 means problems were found in the data, and the JSON report is still written, so it counts
    as a working run. Any other non-zero code, or output that is not JSON, does not.
    """
    _, proc = run_once(phase.argv, env)
    if proc.returncode not in (0, 1):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        phase.skipped = f"exit {proc.returncode}: {tail[0][:200]}"
        return
    try:
        json.loads(proc.stdout)
    except ValueError:
        phase.skipped = "output is not JSON: " + proc.stdout[:120].replace("\n", " ")


def check_baseline(phase: Phase, env: dict[str, str], expected_rows: int) -> None:
    """Fail loudly if a baseline does not see every row: a wrong floor would make any ratio meaningless."""
    _, proc = run_once(phase.argv, env)
    if proc.returncode != 0 or proc.stdout.strip() != str(expected_rows):
        raise SystemExit(f"{phase.label} failed (exit {proc.returncode}): {proc.stdout[-200:]}{proc.stderr[-500:]}")


def machine_info() -> dict[str, str]:
    """What a reader needs to compare numbers: CPU, usable cores, RAM, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "CPU": cpu,
        "cores": f"{usable} usable ({os.cpu_count()} online)",
        "RAM": ram,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "polars": version("polars"),
        "pyarrow": version("pyarrow"),
    }


@dataclass
class Stats:
    median: float
    lo: float
    hi: float


def stats(times: Sequence[float]) -> Stats:
    return Stats(statistics.median(times), min(times), max(times))


def render_text(phases: list[Phase], floor: Stats, info: dict[str, str], header: str) -> str:
    lines = [header, ""]
    lines += [f"{k:>8}: {v}" for k, v in info.items()]
    lines.append("")
    lines.append(f"{'phase':<52} {'median s':>9} {'min s':>8} {'max s':>8} {'x floor':>8}")
    for p in phases:
        if p.skipped:
            lines.append(f"{p.label:<52} {'skipped':>9}  ({p.skipped})")
            continue
        s = stats(p.times)
        lines.append(f"{p.label:<52} {s.median:9.3f} {s.lo:8.3f} {s.hi:8.3f} {s.median / floor.median:8.2f}")
    return "\n".join(lines)


def render_markdown(
    phases: list[Phase], floor: Stats, info: dict[str, str], files: int, rows: int, size: int, reps: int
) -> str:
    out = [
        f"## `runlog inspect` on a large Flink run ({files:,} files x {rows} rows)",
        "",
        f"Data: a synthetic Flink-v1 debug-data run, {files:,} Parquet files x {rows} rows "
        f"({files * rows:,} rows, {size / 2**30:.2f} GiB on disk, snappy). Each row has 1-2 KB of unique "
        "text in `trajectory` and in `agent_trajectories`.",
        "",
        f"Method: each phase is a whole process (interpreter start-up and imports included), timed with "
        f"`time.perf_counter` around `subprocess.run`. The phases are interleaved round-robin for {reps} "
        "repetitions after one untimed warm-up round, so the page cache is warm. The floor is a pyarrow "
        "loop that reads only the footers (`pq.read_metadata` per file).",
        "",
        "| phase | median (s) | min (s) | max (s) | x floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for p in phases:
        if p.skipped:
            out.append(f"| {p.label} | skipped: {p.skipped} | | | |")
            continue
        s = stats(p.times)
        out.append(f"| {p.label} | {s.median:.3f} | {s.lo:.3f} | {s.hi:.3f} | {s.median / floor.median:.2f} |")
    out += ["", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    sizes = "" if (files, rows) == (2000, 512) else f" --files {files} --rows {rows}"
    out += [
        "",
        f"Reproduce: `python benchmarks/inspect_bench.py --reps {reps}{sizes} --markdown` "
        "(the data is generated into `benchmarks/_data/` on first use).",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time `runlog inspect` against pyarrow footer/full-read loops.")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per phase (default 5)")
    parser.add_argument("--files", type=int, default=2000, help="number of Parquet files (default 2000)")
    parser.add_argument("--rows", type=int, default=512, help="rows per file (default 512)")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the data even if present")
    parser.add_argument("--markdown", action="store_true", help="also print a docs/benchmarks.md section")
    parser.add_argument("--require-cli", action="store_true", help="fail instead of skipping a broken CLI")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")

    run, size = ensure_data(args.files, args.rows, args.regenerate)
    env = child_env()
    py = sys.executable
    phases = [
        Phase("cli", "runlog inspect DIR --format json", [py, "-m", "runlog", "inspect", str(run), "--format", "json"]),
        Phase("table", "runlog inspect DIR (rich table)", [py, "-m", "runlog", "inspect", str(run)]),
        Phase("floor", "pyarrow read_metadata per file (floor)", [py, "-c", FOOTERS_CODE, str(run)]),
        Phase("full", "pyarrow read_table per file (full read)", [py, "-c", FULL_CODE, str(run)]),
        Phase("startup", "(ref) python -c 'import pyarrow.parquet'", [py, "-c", STARTUP_CODE]),
    ]
    check_cli(phases[0], env)  # doubles as the CLI's warm-up run
    if phases[0].skipped and args.require_cli:
        raise SystemExit(f"runlog inspect unusable: {phases[0].skipped}")
    run_once(phases[1].argv, env)  # warm-up
    for p in phases[2:4]:
        check_baseline(p, env, args.files * args.rows)  # doubles as warm-up
    active = [p for p in phases if not p.skipped]
    for rep in range(args.reps):
        for p in active:
            elapsed, proc = run_once(p.argv, env)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"{p.label} failed on repetition {rep}: {proc.stderr[-500:]}")
            p.times.append(elapsed)
        print(f"  repetition {rep + 1}/{args.reps} done", file=sys.stderr)

    floor = stats(phases[2].times)
    info = machine_info()
    header = (
        f"runlog inspect benchmark: {args.files} files x {args.rows} rows, {size / 2**20:.0f} MiB, "
        f"{args.reps} interleaved repetitions (warm cache)"
    )
    print(render_text(phases, floor, info, header))
    if args.markdown:
        print()
        print(render_markdown(phases, floor, info, args.files, args.rows, size, args.reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
