"""Audit 13 of the incremental caches: answers from the probe cache, the per-step partials and the kept answers
equal a cold read (``RUNLOG_CACHE=off``), and a cold read of some steps equals those rows of the whole run's.
Every expected figure is computed from the raw files (pyarrow, numpy), never by runlog.

- a run-wide decision from the files (TRL's reward-function columns, Flink's roles) is the whole run's, also for
  the steps read apart (a step stored, a batch of steps), and a change of it recomputes the stored steps;
- TRL's ``mode`` column: a file's split is its rows', so a split filter never leaves out a file of that split;
- a problem found while reading (a corrupt text page) is said by every command, not only the first;
- a corrupt index in a cache that cannot be written is not said to be rebuilt;
- a bad ``RUNLOG_CACHE_MAX_MB`` is said by every command that uses the partial cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.check import steps_per_split
from runlog.analysis.filters import Filters, StepRange
from runlog.analysis.summarize import summarize

OLD = 1_600_000_000  # files dated well in the past: the partial cache stores only steps not written just now
N = 8


def _put(path: Path, table: pa.Table, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **kw)
    os.utime(path, (OLD, OLD))


# ---------------------------------------------------------------------------------------------------------
# TRL: which columns are reward functions is the run's decision
# ---------------------------------------------------------------------------------------------------------
def _trl_step(root: Path, step: int, fmt_as_text: bool, rng: np.random.Generator) -> tuple[list, list]:
    corr = [float(x) for x in np.round(rng.random(N), 3)]
    fmt = [float(x) for x in np.round(rng.random(N), 3)]
    table = pa.table(
        {
            "step": [step] * N,
            "prompt": [f"p{i // 4}" for i in range(N)],
            "completion": [f"c{i}" for i in range(N)],
            "correctness": corr,
            "fmt_reward": [str(x) for x in fmt] if fmt_as_text else fmt,
        }
    )
    _put(root / "completions" / f"completions_{step:05d}.parquet", table)
    return corr, fmt


def _trl_truth(root: Path) -> dict[int, float]:
    """Per step, the mean of correctness + fmt_reward (its text read as numbers), from the raw files."""
    out = {}
    for p in sorted((root / "completions").glob("completions_*.parquet")):
        t = pq.read_table(p)
        total = np.asarray(t["correctness"].to_pylist(), float) + np.asarray(
            [float(v) for v in t["fmt_reward"].to_pylist()], float
        )
        out[int(t["step"][0].as_py())] = float(total.mean())
    return out


def _by_step(frame) -> dict[int, float]:
    return dict(zip(frame["step"].to_list(), frame["reward_mean"].to_list(), strict=True))


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12), k


@pytest.mark.parametrize("first_as_text", [True, False])
def test_trl_a_reward_column_whose_type_differs_in_a_new_step_recomputes_the_stored_steps(tmp_path, first_as_text):
    root = tmp_path / "trl"
    rng = np.random.default_rng(0)
    for step in (1, 2, 3):
        _trl_step(root, step, first_as_text, rng)
    summarize(open_run(root), ["step"])  # steps 1-3 stored
    _trl_step(root, 4, not first_as_text, rng)  # fmt_reward numeric in one file now: a reward function everywhere
    truth = _trl_truth(root)
    cached_run = open_run(root)
    cached = _by_step(summarize(cached_run, ["step"]))
    cold = _by_step(summarize(open_run(root), ["step"], cache=False))
    _close(cold, truth)
    _close(cached, truth)  # before: steps 1-3 (text first) or step 4 (numbers first) without fmt_reward
    # The warning of the files that hold it as text is said by the cached read too.
    text_files = {1, 2, 3} if first_as_text else {4}
    warned = {p.path for p in cached_run.problems if "holds text here" in p.message}
    assert warned == {f"completions/completions_{s:05d}.parquet" for s in text_files}
    # Asked again, with every step stored that can be: the same.
    _close(_by_step(summarize(open_run(root), ["step"])), truth)


def test_trl_a_cold_read_of_some_steps_equals_those_rows_of_the_whole_run(tmp_path):
    root = tmp_path / "trl"
    rng = np.random.default_rng(1)
    for step in (1, 2, 3):
        _trl_step(root, step, True, rng)
    _trl_step(root, 4, False, rng)
    truth = _trl_truth(root)
    part = _by_step(summarize(open_run(root), ["step"], filters=Filters(steps=StepRange.parse("1:3")), cache=False))
    _close(part, {s: truth[s] for s in (1, 2, 3)})  # before: 1:3 without fmt_reward


# ---------------------------------------------------------------------------------------------------------
# Flink: the run's roles
# ---------------------------------------------------------------------------------------------------------
def _flink_step(root: Path, step: int, judge: bool, rng: np.random.Generator) -> None:
    d: dict = {
        "env_name": ["math"] * N,
        "trajectory": [f"traj {step}-{i}" for i in range(N)],
        "agent_trajectories": ["{}"] * N,
        "exception_info": [None] * N,
        "reward": [float(x) for x in rng.random(N)],
        "reward_metrics": [{"correct": float(i % 2)} for i in range(N)],
        "reward_text_info": ["x"] * N,
        "unique_sample_id": [f"ds-{step}-{i}" for i in range(N)],
        "schema_version": [1] * N,
        "role_assignments": ['{"agent_0": "solver"}'] * N,
    }
    for r in ("solver", "verifier", *(("judge",) if judge else ())):
        d[f"{r}_reward"] = [float(x) for x in rng.random(N)]
        d[f"{r}_kl"] = [float(x) for x in rng.random(N)]
    _put(root / "flink_logs" / f"batch_debug_data_train_{step}.parquet", pa.table(d))


def _flink_truth(root: Path) -> dict[tuple[str, int], tuple[int, int, float | None]]:
    """(role, step) -> (values, nulls, mean) over the roles each file has: a file without a role's columns (the
    role sat out that step) holds no value of it, and no null."""
    files = sorted((root / "flink_logs").glob("*.parquet"))
    tables = {int(p.stem.rsplit("_", 1)[1]): pq.read_table(p) for p in files}
    roles = sorted({c[: -len("_reward")] for t in tables.values() for c in t.column_names if c.endswith("_reward")})
    out = {}
    for step, t in tables.items():
        for r in roles:
            col = f"{r}_reward"
            if col not in t.column_names:
                continue  # the role sat out this step: no value and no null there (no row)
            vals = np.asarray(t[col].to_pylist(), float)
            out[(r, step)] = (len(vals), 0, float(vals.mean()))
    return out


def _role_step(frame) -> dict[tuple[str, int], tuple[int, int, float | None]]:
    return {
        (r["role"], r["step"]): (r["reward_count"], r["reward_null"], r["reward_mean"])
        for r in frame.iter_rows(named=True)
    }


def _same_roles(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, (n, nulls, mean) in want.items():
        assert got[k][:2] == (n, nulls), k
        assert (got[k][2] is None) == (mean is None), k
        if mean is not None:
            assert got[k][2] == pytest.approx(mean, rel=1e-12), k


def test_flink_a_role_that_appears_or_goes_in_a_later_step_reaches_the_stored_steps(tmp_path):
    root = tmp_path / "flink"
    rng = np.random.default_rng(2)
    for step in (1, 2, 3):
        _flink_step(root, step, judge=False, rng=rng)
    summarize(open_run(root), ["role", "step"])  # steps 1-3 stored, with the roles solver and verifier
    _flink_step(root, 4, judge=True, rng=rng)
    truth = _flink_truth(root)
    assert ("judge", 1) not in truth
    _same_roles(_role_step(summarize(open_run(root), ["role", "step"])), truth)
    _same_roles(_role_step(summarize(open_run(root), ["role", "step"], cache=False)), truth)
    per_role = summarize(open_run(root), ["role"])
    judge = per_role.filter(per_role["role"] == "judge").row(0, named=True)
    assert (judge["reward_count"], judge["reward_null"]) == (N, 0)  # the judge sat out steps 1-3
    # The only file with the judge deleted: no judge anywhere, stored steps included.
    (root / "flink_logs" / "batch_debug_data_train_4.parquet").unlink()
    truth = _flink_truth(root)
    _same_roles(_role_step(summarize(open_run(root), ["role", "step"])), truth)
    # A cold read of some steps: those rows of the whole run's.
    _flink_step(root, 4, judge=True, rng=rng)
    truth = _flink_truth(root)
    part = summarize(open_run(root), ["role", "step"], filters=Filters(steps=StepRange.parse("1:3")), cache=False)
    _same_roles(_role_step(part), {k: v for k, v in truth.items() if k[1] <= 3})


# ---------------------------------------------------------------------------------------------------------
# TRL's mode column: a file's split is its rows'
# ---------------------------------------------------------------------------------------------------------
def _trl_mode_run(root: Path) -> dict[str, list[float]]:
    rng = np.random.default_rng(7)
    values: dict[str, list[float]] = {}

    def put(rel: str, step: int, modes: list[str | None]) -> None:
        r = [float(x) for x in np.round(rng.random(len(modes)), 3)]
        table = pa.table(
            {
                "step": [step] * len(modes),
                "mode": pa.array(modes, pa.string()),
                "prompt": [f"p{i // 4}" for i in range(len(modes))],
                "completion": [f"c{i}" for i in range(len(modes))],
                "correctness": r,
            }
        )
        _put(root / "completions" / rel, table)
        folder = "eval" if rel.startswith("eval/") else "train"
        for m, v in zip(modes, r, strict=True):
            values.setdefault(m or folder, []).append(v)

    put("completions_00001.parquet", 1, ["train"] * N)
    put("completions_00002.parquet", 2, ["eval"] * N)  # the top folder, its rows eval
    put("eval/completions_00003.parquet", 3, ["eval"] * N)
    put("completions_00004.parquet", 4, ["train", "eval"] * (N // 2))  # of both splits
    put("completions_00005.parquet", 5, [None] * (N // 2) + ["eval"] * (N // 2))  # nulls are the folder's
    return values


def test_trl_mode_a_split_filter_keeps_the_files_whose_rows_are_of_that_split(tmp_path):
    root = tmp_path / "trl"
    values = _trl_mode_run(root)
    run = open_run(root)
    splits = {f.path.rsplit("_", 1)[1]: f.split for f in run.files}
    assert splits == {"00001.parquet": "train", "00002.parquet": "eval", "00003.parquet": "eval"} | {
        "00004.parquet": None,
        "00005.parquet": None,
    }
    for split in ("eval", "train"):
        want = np.asarray(values[split])
        for cache in (True, False):  # the first command (nothing stored) and a cold read
            out = summarize(open_run(root), [], filters=Filters(splits=(split,)), cache=cache).row(0, named=True)
            assert out["reward_count"] == len(want)  # before: eval 8 of 24 (the cache), 16 of 24 (cold)
            assert out["reward_mean"] == pytest.approx(float(want.mean()), rel=1e-12)
        by_step = summarize(open_run(root), ["step"], filters=Filters(splits=(split,)), cache=False)
        counts = dict(zip(by_step["step"].to_list(), by_step["reward_count"].to_list(), strict=True))
        assert sum(counts.values()) == len(want)
    # inspect's steps per split follow the rows.
    assert steps_per_split(open_run(root)) == {"train": {1, 4, 5}, "eval": {2, 3, 4, 5}}


# ---------------------------------------------------------------------------------------------------------
# A problem found while reading is said by every command
# ---------------------------------------------------------------------------------------------------------
def _corrupt_prompt_run(root: Path) -> None:
    rng = np.random.default_rng(1)
    for step in (1, 2, 3):
        n = 64
        table = pa.table(
            {
                "step": [step] * n,
                "prompt": [f"prompt number {i // 4} " * 20 for i in range(n)],
                "completion": [f"c{i}" for i in range(n)],
                "correctness": [float(x) for x in np.round(rng.random(n), 3)],
            }
        )
        path = root / "completions" / f"completions_{step:05d}.parquet"
        _put(path, table, compression="snappy", use_dictionary=False)
        if step == 2:  # the prompt's data page damaged, footer and numbers intact
            rg = pq.ParquetFile(path).metadata.row_group(0)
            col = next(rg.column(i) for i in range(rg.num_columns) if rg.column(i).path_in_schema == "prompt")
            with open(path, "r+b") as fh:
                fh.seek(col.data_page_offset + col.total_compressed_size // 2)
                fh.write(b"\xff" * 40)
            os.utime(path, (OLD, OLD))


def test_a_corrupt_text_page_is_said_by_every_command(tmp_path, cli):
    root = tmp_path / "trl"
    _corrupt_prompt_run(root)
    truth = {
        int(pq.read_table(p, columns=["step"])["step"][0].as_py()): float(
            np.mean(pq.read_table(p, columns=["correctness"])["correctness"].to_numpy())
        )
        for p in (root / "completions").glob("*.parquet")
    }
    for _ in range(2):
        res = cli("summarize", root, "--by", "step", "--prompt-groups", "--format", "json")
        assert res.exit_code == 1  # before: 0 from the second command on
        assert "completions_00002.parquet: its text could not be read" in res.stderr
        _close({r["step"]: r["reward_mean"] for r in json.loads(res.stdout)}, truth)
    for _ in range(2):
        res = cli("doctor", root, "--fail-on", "error", "--format", "json")
        assert res.exit_code != 0  # before: 0 from the second command on
        kinds = {(f["kind"], f["severity"]) for f in json.loads(res.stdout)["findings"]}
        assert ("data_problem", "error") in kinds


# ---------------------------------------------------------------------------------------------------------
# The cache's own troubles, said as they are (whole processes: what is said once is said once per command)
# ---------------------------------------------------------------------------------------------------------
def _runlog(args: list[str], env: dict[str, str], nobody: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m runlog ARGS`` in a process of its own; ``nobody``: as the user nobody (``setpriv``)."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if nobody else []
    return subprocess.run(
        [*drop, sys.executable, "-m", "runlog", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "RUNLOG_ANSWERS": "off"},
        check=False,
    )


def _flink_run(root: Path) -> None:
    rng = np.random.default_rng(3)
    for step in (1, 2, 3):
        _flink_step(root, step, judge=True, rng=rng)


def test_a_corrupt_index_in_a_cache_that_cannot_be_written_is_not_said_to_be_rebuilt():
    top = Path(tempfile.mkdtemp(prefix="runlog-a13-"))
    try:
        os.chmod(top, 0o755)
        run, cache = top / "run", top / "cache"
        _flink_run(run)
        env = {"RUNLOG_CACHE_DIR": str(cache)}
        assert _runlog(["summarize", str(run), "--format", "json"], env).returncode == 0
        [index] = cache.rglob("index.json")
        # Writable: said, rebuilt, and not said again.
        index.write_text("{garbage")
        first = _runlog(["summarize", str(run), "--format", "json"], env)
        assert first.stderr.count("is unreadable") == 1 and "rebuilding it" in first.stderr
        assert "unreadable" not in _runlog(["summarize", str(run), "--format", "json"], env).stderr
        # Read-only (another user's cache): said at every command, never "rebuilding".
        index.write_text("{garbage")
        root_user = os.geteuid() == 0  # root writes any folder: the command is run as nobody
        if root_user and shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no user for whom the cache is read-only")
        if root_user:
            probe = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", "import runlog"],
                capture_output=True,
                check=False,
            )
            if probe.returncode != 0:  # the checkout or the environment is not readable by nobody (a CI clone)
                pytest.skip("runlog cannot be imported as nobody here: no user for whom the cache is read-only")
        for p in [top, *top.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        if not root_user:
            os.chmod(index.parent, 0o555)
        for _ in range(2):
            res = _runlog(["summarize", str(run), "--format", "json"], env, nobody=root_user)
            assert res.returncode == 0, res.stderr
            assert res.stderr.count("is unreadable") == 1
            assert "cannot be rebuilt here" in res.stderr and "rebuilding" not in res.stderr  # before: "rebuilding"
        cold = _runlog(["summarize", str(run), "--format", "json"], {**env, "RUNLOG_CACHE": "off"})
        got, want = json.loads(res.stdout), json.loads(cold.stdout)  # to rounding (1e-12), as the cache promises
        assert [r["role"] for r in got] == [r["role"] for r in want]
        for a, b in zip(got, want, strict=True):
            assert a.keys() == b.keys()
            for k, v in b.items():
                assert a[k] == (v if v is None or isinstance(v, str) else pytest.approx(v, rel=1e-12)), k
    finally:
        for p in [top, *top.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)
        shutil.rmtree(top, ignore_errors=True)


def test_a_bad_cache_budget_is_said_by_every_command(tmp_path):
    env = {"RUNLOG_CACHE_DIR": str(tmp_path / "cache"), "RUNLOG_CACHE_MAX_MB": "lots"}
    for i in range(3):
        run = tmp_path / f"run{i}"
        _flink_run(run)
        res = _runlog(["summarize", str(run), "--format", "json"], env)
        assert res.returncode == 0
        assert "RUNLOG_CACHE_MAX_MB='lots' is not a positive number" in res.stderr, i  # before: the first only
