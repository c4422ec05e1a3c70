"""Audit 13 of ``watch`` and ``doctor --follow``: a Ctrl-C while polars is imported, a stop signal while the
command sets up, and the note of a run of scalars only said at the first listing of an ordinary run.

- A Ctrl-C in the import of polars (the first second of every command that reads) waited for the import's end,
  2-12 s, while runlog's profile hook, taking polars' module code calling the standard library for callbacks from
  Rust, walked the stack at every call.
- ``watch --format json`` and ``doctor --follow --format json`` took their signals only once their modules had
  loaded: a Ctrl-C before that ended them without the ``end`` event the docs promise.
- A writer's scalars line comes a moment before its first step's sample file: the first listing said "no sample
  file, only scalar metrics ..., which watch does not follow", never taken back, of an ordinary run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runlog
from runlog.watch import LiveRun
from runlog.watch.poll import run_lister

from conftest import SAMPLE_RUNS


def _load_as(name: str, source: str, folder: Path) -> object:
    """Run ``source`` as the body of a module called ``name``, through the import machinery's loader."""
    import importlib.util

    path = folder / (name.replace(".", "_") + ".py")
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def test_polars_module_code_calling_the_standard_library_while_imported_is_no_callback(tmp_path: Path) -> None:
    """The body of one of polars' modules, run by the import machinery, calls code outside polars (here a helper
    standing for ``enum``/``inspect``): not a callback from Rust, so a Ctrl-C there is raised at once. The same
    helper called from polars' code after the import (as Rust calls back from ``collect``) still is one."""
    helper = tmp_path / "audit13_helper.py"
    helper.write_text(
        "import sys\nfrom runlog import process\n\ndef check():\n    return process._in_callback(sys._getframe())\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        body = (
            "import audit13_helper\nDURING_IMPORT = audit13_helper.check()\n\n"
            "def later():\n    return audit13_helper.check()\n"
        )
        module = _load_as("polars._runlog_audit13", body, tmp_path)
        assert module.DURING_IMPORT is False  # type: ignore[attr-defined]
        assert module.later() is True  # type: ignore[attr-defined]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("audit13_helper", None)


IMPORT_UNDER_CTRL_C = """
import os, signal, sys, threading, time
from runlog import process
process.take_interrupts()
judged = []
real = process._in_callback
def in_callback(frame):
    judged.append(real(frame))
    return judged[-1]
process._in_callback = in_callback
started = threading.Event()
def fire():
    started.wait()
    time.sleep(0.03)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=fire, daemon=True).start()
try:
    started.set()
    import polars
    for _ in range(100000):
        len(str(_))
    print("no interrupt")
except KeyboardInterrupt:
    where = "in the import" if "polars" not in sys.modules else "after the import"
    print(where, "at once" if judged[:1] == [False] else "held back")
"""


def test_a_ctrl_c_while_polars_is_imported_ends_the_import() -> None:
    """In a child interpreter with runlog's handler, a SIGINT 30 ms into ``import polars`` (which takes 0.15 s
    and more) is raised at once, inside the import: the import fails (polars is not in ``sys.modules``). It was
    held back (the signal's frame judged a callback from Rust), for seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(runlog.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_UNDER_CTRL_C], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout.strip() == "in the import at once", (out.stdout, out.stderr)


def _end_events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "end"]


@pytest.mark.parametrize(
    ("command", "builder"),
    [
        (["watch", "--no-doctor"], "watcher_for"),  # while the watch builds its watcher (modules, first listing)
        (["doctor", "--follow"], "DoctorWatch"),  # while doctor --follow builds its checker
    ],
)
def test_a_ctrl_c_while_following_sets_up_ends_with_the_end_event(
    cli, monkeypatch: pytest.MonkeyPatch, command: list[str], builder: str
) -> None:
    """A Ctrl-C before following began: exit 130 and the JSON ``end`` event (``interrupted``). It was
    ``Error: interrupted`` with no event."""
    import runlog.watch as watch

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, builder, interrupted)
    r = cli(command[0], SAMPLE_RUNS / "debate_grpo", *command[1:], "--format", "json")
    assert r.exit_code == 130, (r.stdout, r.stderr)
    assert _end_events(r.stdout) == [{"event": "end", "reason": "interrupted", "message": None}], r.stdout


def test_a_usage_error_before_following_is_still_one(cli, tmp_path: Path) -> None:
    """Taking the signals first does not change what a bad path says: exit 2, no end event."""
    r = cli("doctor", tmp_path / "nope", "--follow", "--format", "json")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert _end_events(r.stdout) == []


def _scalars_line(root: Path, step: int) -> None:
    with open(root / "scalars.p0.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\n")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_run_whose_sample_file_comes_a_moment_after_its_scalars_is_no_scalars_only_run(tmp_path: Path) -> None:
    """A writer's scalars line, listed before its first step's sample file comes (under ``settle`` later): no
    note that watch does not follow the run."""
    import time

    root = tmp_path / "run"
    clock = Clock(time.time())
    live = LiveRun(root, settle=5.0, clock=clock)
    lister = run_lister(root)
    writer = runlog.RunWriter(root, name="r", roles=["solver"])
    writer.log_scalars(0, {"loss": 1.0})
    events = live.update(*lister())  # the scalars line, no sample file yet
    assert not [e for e in events if e.kind == "step"]
    writer.log_samples(0, [{"reward": 0.5, "solver_reward": 0.5, "solver_kl": 0.1} for _ in range(4)])
    writer.close()
    clock.t += 1.0
    events += live.update(*lister())
    clock.t += 30.0
    events += live.update(*lister())
    notes = [e.data["message"] for e in events if e.kind == "note"]
    assert not [n for n in notes if "does not follow" in n], notes
    assert [e.data["step"] for e in events if e.kind == "step"] == [0]


def test_a_run_of_scalars_only_is_said_once_it_has_lasted(tmp_path: Path) -> None:
    """Scalars only, still so ``settle`` seconds on: the note, once. A run of scalars written long ago (a
    JaxARC run watched after it ended) says it at the first listing."""
    import time

    root = tmp_path / "run"
    root.mkdir()
    _scalars_line(root, 0)
    clock = Clock(time.time())
    live = LiveRun(root, settle=5.0, clock=clock)
    lister = run_lister(root)
    first = live.update(*lister())
    assert [e for e in first if e.kind == "note"] == []
    _scalars_line(root, 1)
    clock.t += 6.0
    said = [e.data["message"] for e in live.update(*lister()) if e.kind == "note"]
    assert len(said) == 1 and "only scalar metrics (scalars.p0.jsonl)" in said[0], said
    clock.t += 6.0
    assert [e for e in live.update(*lister()) if e.kind == "note"] == []

    old = tmp_path / "old"
    old.mkdir()
    _scalars_line(old, 0)
    ago = time.time() - 600
    os.utime(old / "scalars.p0.jsonl", (ago, ago))
    said = [e.data["message"] for e in LiveRun(old, settle=5.0).update(*run_lister(old)()) if e.kind == "note"]
    assert len(said) == 1 and "does not follow" in said[0], said
