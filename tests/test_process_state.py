"""Library calls change no process state: the environment, the garbage collector and the storage options are
the program's. The command line opts in to its tweaks at its entry point (``runlog.process``); storage
options travel as an explicit ``StorageOptions`` object.

Each check runs in a fresh interpreter: in this one, another test may have imported ``runlog.cli`` already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runlog.errors import UsageError
from runlog.storage import StorageOptions

from conftest import SAMPLE_RUNS

SRC = Path(__file__).resolve().parents[1] / "src"

LIBRARY_CALLS = """
import gc, json, os, sys
import polars  # it sets its allocator's variable (_RJEM_MALLOC_CONF) on import: polars' own, not runlog's
before = dict(os.environ)
import runlog
from runlog.analysis.inspect import inspect_run
from runlog.analysis.doctor import diagnose
run = runlog.open_run(sys.argv[1])
runlog.summarize(run, ["role", "step"])
inspect_run(run, deep=True)
diagnose(run)
after = dict(os.environ)
print(json.dumps({
    "changed": sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)),
    "frozen": gc.get_freeze_count(),
    "cli_imported": "runlog.cli" in sys.modules,
}))
"""


def _python(code: str, *args: str, extra_env: dict[str, str] | None = None) -> dict:
    drop = ("OPENBLAS_NUM_THREADS", "RAY_USAGE_STATS_ENABLED", "POLARS_CLOUD_FOOTER_READ_SIZE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("WANDB_")}
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["debate_grpo", "flink_mixed"])
def test_library_calls_leave_environment_and_gc_alone(name: str) -> None:
    """open_run, summarize, inspect and doctor on a Parquet run: os.environ unchanged (polars' footer read
    size included), nothing frozen, no command-line module imported, no storage options left behind."""
    r = _python(LIBRARY_CALLS, str(SAMPLE_RUNS / name))
    assert r == {"changed": [], "frozen": 0, "cli_imported": False}


def test_the_command_line_opts_in_at_its_entry_point() -> None:
    """Importing the command line enables the tweaks (a user's own setting wins); a run it opens then sets
    polars' footer read size from the footers it saw."""
    code = """
import json, os, sys
os.environ["RAY_USAGE_STATS_ENABLED"] = "1"
import runlog.cli
from runlog.process import TWEAKS
import runlog
runlog.summarize(runlog.open_run(sys.argv[1]), ["role"])
print(json.dumps({k: os.environ.get(k) for k in
    ("OPENBLAS_NUM_THREADS", "RAY_USAGE_STATS_ENABLED", "POLARS_CLOUD_FOOTER_READ_SIZE")}
    | {"freeze_gc": TWEAKS.freeze_gc}))
"""
    r = _python(code, str(SAMPLE_RUNS / "debate_grpo"))
    assert r["OPENBLAS_NUM_THREADS"] == "1" and r["RAY_USAGE_STATS_ENABLED"] == "1" and r["freeze_gc"] is True
    assert r["POLARS_CLOUD_FOOTER_READ_SIZE"] is not None and int(r["POLARS_CLOUD_FOOTER_READ_SIZE"]) >= 16 * 1024


def test_storage_options_are_an_explicit_value() -> None:
    """An immutable, hashable mapping: it keys the per-bucket store cache and goes where a dict went."""
    a = StorageOptions.of({"AWS_Region": "eu-west-1", "aws_allow_http": "1"})
    assert a == StorageOptions.parse(["aws_allow_http=1", "aws_region=eu-west-1"])
    assert hash(a) == hash(StorageOptions.of(dict(a))) and StorageOptions.of(a) is a
    assert dict(a) == a.as_dict() == {"aws_allow_http": "1", "aws_region": "eu-west-1"}
    assert a["aws_region"] == "eu-west-1"
    assert len(a) == 2 and "aws_allow_http" in a and "x" not in a and a.get("x") is None
    assert not StorageOptions.of(None) and bool(a)
    with pytest.raises(UsageError, match="KEY=VALUE"):
        StorageOptions.parse(["aws_region"])


UPLOAD = """
import gc, json, sys
from runlog.sinks.wandb import upload_wandb
frozen = []
kw = dict(project="p", mode="offline", wandb_dir=sys.argv[2], on_step=lambda r, s: frozen.append(gc.get_freeze_count()))
upload_wandb(sys.argv[1], state_path=sys.argv[2] + "/a.json", **kw)
library = max(frozen)
frozen.clear()
upload_wandb(sys.argv[1], state_path=sys.argv[2] + "/b.json", run_id="opted-in", freeze_gc=True, **kw)
print(json.dumps({"library": library, "opted_in": min(frozen), "after": gc.get_freeze_count()}))
"""


def test_a_library_upload_freezes_nothing_unless_asked(tmp_path: Path) -> None:
    """``upload_wandb`` from Python leaves the GC alone while it logs; ``freeze_gc=True`` (what the command line
    opts in to) freezes during the upload and unfreezes at the end."""
    pytest.importorskip("wandb")
    home = tmp_path / "home"
    wandb = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_CONFIG_DIR": str(home / "config"),
    }
    r = _python(UPLOAD, str(SAMPLE_RUNS / "debate_grpo"), str(tmp_path), extra_env=wandb)
    assert r["library"] == 0 and r["opted_in"] > 0 and r["after"] == 0, r
