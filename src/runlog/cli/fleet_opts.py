"""Options and reporting shared by the commands that take fleets of runs (``summarize``, ``metrics``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import typer

from ..errors import UsageError
from .common import report_problems, stderr_console

RUN_PATHS = typer.Argument(
    None,
    help="Run directory, file or URL (s3://, gs://, az://); several, or a quoted glob such as 'ROOT/*', for a fleet.",
    show_default=False,
    metavar="PATH...",
)
RUNS_FILE = typer.Option(None, "--runs", metavar="FILE", help="A file listing run locations, one per line.")
ENGINE = typer.Option("local", "--engine", help="Fleets: local (in-process polars) or ray (runlog[ray]).")
RAY_ADDRESS = typer.Option(
    None, "--ray-address", help="--engine ray: the cluster to join (auto: this machine's; default: start one here)."
)


def locations(paths: list[str] | None, runs_file: str | None) -> list[str]:
    """Run locations from the arguments and ``--runs``, globs expanded."""
    from ..fleet import read_runs_file, resolve_locations
    from ..storage import global_options

    items = list(paths or [])
    if runs_file:
        items += read_runs_file(runs_file)
    if not items:
        raise UsageError("give a run (PATH), several, a glob such as 'ROOT/*', or --runs FILE")
    return resolve_locations(items, global_options())


def is_fleet(
    locs: list[str], by: list[str] | None, runs_file: str | None, engine: str, ray_address: str | None = None
) -> bool:
    """Whether to take the fleet path (which also validates --engine / --ray-address)."""
    return len(locs) > 1 or "run" in (by or []) or bool(runs_file) or engine != "local" or bool(ray_address)


@contextlib.contextmanager
def progress(label: str) -> Iterator[Any]:
    """A progress bar on stderr (only at a terminal) with a callback ``(done, total)``."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=stderr_console()
    ) as bar:
        tid = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(tid, completed=done, total=total)

        yield update


def report_fleet(result: Any) -> int:
    """Problems of every run (``error: RUN/PATH: message``), runs that could not be read, notes; returns the
    number of errors (warnings excluded)."""
    from ..formats.base import Problem

    problems = [Problem(f"{run}/{path}", kind, msg) for run, path, kind, msg in result.problems()]
    problems += [Problem(loc, "unreadable", f"run skipped: {why}") for loc, why in result.failures]
    notes = list(result.notes)
    notes.append(
        f"{len(result.results)} run part(s) in {result.batches} batch(es); {len(result.failures)} run(s) skipped"
    )
    return report_problems(problems, notes=notes)


def get_engine(engine: str, ray_address: str | None, locs: list[str] | None = None) -> Any:
    from ..fleet.engine import get_engine as _get
    from ..storage import is_url

    return _get(engine, ray_address=ray_address, remote=any(is_url(loc) for loc in locs or []))
