from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog import schema as S
from runlog.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RUNS = ROOT / "sample_runs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = ROOT.parent / "shared" / "realdata"


def need_realdata(*names: str) -> None:
    """Skip the calling test where ``../shared/realdata`` (or one of its files ``names``) is not there: a user's
    clone has no ``shared`` folder beside it (README's test command passes without it)."""
    import pytest

    missing = [n for n in names if not (REALDATA / n).exists()] if REALDATA.is_dir() else ["."]
    if missing:
        pytest.skip(f"{REALDATA / missing[0]} not found (the shared/realdata checkout)")


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: Any, input: str | None = None):
        result = self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(autouse=True)
def _probe_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own, empty probe cache (never the user's): tests stay independent. Kept answers
    (``runlog.cli.answers``) are off, so that a command asked twice computes twice (the caches' routes are
    what the tests check); tests/test_answers.py turns them on."""
    folder = tmp_path_factory.mktemp("runlog-cache")
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(folder))
    monkeypatch.delenv("RUNLOG_CACHE", raising=False)
    monkeypatch.setenv("RUNLOG_ANSWERS", "off")
    # A terminal's width exported by the user's shell (or left by another test in the same worker) would fold
    # the tables that tests read: every test starts without one, and sets its own where the width matters.
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    return folder


def native_rows(step: int, n: int, split: str = "train", roles=("solver", "verifier")) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "schema_version": 2,
                "step": step,
                "split": split,
                "sample_id": f"s{step}-{i}",
                "group_id": f"s{step}-g{i // 4}",
                "env_name": "math",
                "reward": float(i) / n,
                "reward_components": [{"name": "correct", "value": 1.0}, {"name": "format", "value": 0.5}],
                "roles": [{"role": r, "reward": float(i + k), "kl": 0.01 * (k + 1)} for k, r in enumerate(roles)],
                "messages": [
                    {
                        "role": "user",
                        "name": None,
                        "content": "2+2?",
                        "reasoning": None,
                        "tool_calls": None,
                        "tool_call_id": None,
                    },
                    {
                        "role": "assistant",
                        "name": "solver",
                        "content": "<answer>4</answer>",
                        "reasoning": None,
                        "tool_calls": [{"id": "c1", "name": "python", "arguments": '{"code": "2+2"}'}],
                        "tool_call_id": None,
                    },
                ],
                "prompt": "2+2?",
                "completion": "<answer>4</answer>",
                "trajectory": "user: 2+2?\nassistant: 4",
                "exception": None,
            }
        )
    return rows


def write_native_samples(path: Path, rows: list[dict], version: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=S.NATIVE_SAMPLE_SCHEMA)
    if version != 2:
        table = table.set_column(0, "schema_version", pa.array([version] * len(rows), pa.int32()))
    table = table.replace_schema_metadata({"runlog.schema_version": str(version)})
    pq.write_table(table, path)
    return path


def native_run_of(root: Path, rows: list[dict], roles=("solver",)) -> Path:
    """A native run of these rows: its manifest, and one file per split and step (``samples/SPLIT/
    step_N.p0.parquet``), the rows in their order."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "runlog", "schema_version": 2, "roles": list(roles)}
    (root / "run.json").write_text(json.dumps(manifest))
    parts: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        parts.setdefault((r["split"], r["step"]), []).append(r)
    for (split, step), part in parts.items():
        write_native_samples(root / "samples" / split / f"step_{step:08d}.p0.parquet", part)
    return root


def make_native_run(
    root: Path,
    steps: range | list[int] = range(4),
    n: int = 8,
    processes: int = 1,
    roles=("solver", "verifier"),
    scalars: bool = True,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "runlog",
        "schema_version": 2,
        "run_id": "test-run",
        "name": "test",
        "created": "2026-01-01T00:00:00Z",
        "config": {"lr": 1e-6},
        "roles": list(roles),
        "writer": {"name": "runlog", "version": "0.1.0"},
    }
    (root / "run.json").write_text(json.dumps(manifest, indent=2))
    for step in steps:
        rows = native_rows(step, n, roles=roles)
        per = math.ceil(n / processes)
        for p in range(processes):
            chunk = rows[p * per : (p + 1) * per]
            write_native_samples(root / "samples" / "train" / f"step_{step:08d}.p{p}.parquet", chunk)
    if scalars:
        with open(root / "scalars.p0.jsonl", "w") as fh:
            for step in steps:
                fh.write(
                    json.dumps(
                        {"step": step, "time": 1000.0 + step, "train/loss": 1.0 / (step + 1), "train/reward__count": 8}
                    )
                    + "\n"
                )
    return root


def flink_table(step: int, n: int = 4, version: int = 1) -> pa.Table:
    d: dict[str, Any] = {
        "env_name": ["math"] * n,
        "trajectory": [f"traj {step}-{i}" for i in range(n)],
        "agent_trajectories": ["{}"] * n,
        "exception_info": [None] * (n - 1) + ["ValueError: boom"],
        "reward": [float(i) for i in range(n)],
        "reward_metrics": [{"correct": float(i % 2), "format": 0.5} for i in range(n)],
        "reward_text_info": ["x"] * n,
        "unique_sample_id": [f"ds-{step}-{i}" for i in range(n)],
    }
    if version >= 1:
        d["schema_version"] = [version] * n
        d["role_assignments"] = ['{"agent_0": "solver"}'] * n
        for k, r in enumerate(("solver", "verifier", "judge")):
            d[f"{r}_reward"] = [float(i + k) for i in range(n)]
            d[f"{r}_kl"] = [0.1 * (k + 1)] * n
    return pa.table(d)


def make_flink_run(root: Path, steps=range(4), version: int = 1, split: str = "train") -> Path:
    logs = root / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    for step in steps:
        pq.write_table(flink_table(step, version=version), logs / f"batch_debug_data_{split}_{step}.parquet")
    return root


def commands_with_output() -> set[str]:
    """The CLI's commands (``"metrics format"``) that take ``--output``: tests of -o check that they cover all."""
    from typer.main import get_command

    from runlog.cli.app import app

    found = set()

    def walk(cmd, path):  # noqa: ANN001
        if any("--output" in getattr(p, "opts", ()) for p in getattr(cmd, "params", ())):
            found.add(" ".join(path))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(get_command(app), ())
    return found


@contextlib.contextmanager
def own_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What ``_probe_cache`` gives a test, for a module- or session-scoped fixture (which is set up before any
    test's own fixtures, so outside ``_probe_cache``): a fresh, empty probe cache and no kept answers while the
    fixture builds what its tests share."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("runlog-cache")
        mp.setenv("RUNLOG_CACHE_DIR", str(folder))
        mp.delenv("RUNLOG_CACHE", raising=False)
        mp.setenv("RUNLOG_ANSWERS", "off")
        for name in ("COLUMNS", "LINES"):
            mp.delenv(name, raising=False)
        yield folder


@pytest.fixture
def figures_not_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's figures are built from the data as always (every read they make, and every file such a read
    finds unreadable, happens), but not drawn to pixels: each is embedded as a 1x1 PNG. Drawing reads nothing
    and is most of a report's time (about nine tenths: thirteen figures on debate_grpo); for tests of what the
    page says, not of its images."""
    import io

    from PIL import Image

    import runlog.report

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(buf, format="png")
    png = buf.getvalue()
    monkeypatch.setattr(runlog.report, "figure_png", lambda fig: png)
