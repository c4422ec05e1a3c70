"""Options and reporting shared by the commands that take fleets of runs (``summarize``, ``metrics``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from .common import report_problems, stderr_console

if TYPE_CHECKING:
    from ..analysis.filters import Filters
    from ..fleet import FleetResult
    from ..fleet.engine import Engine

    # What a fleet command computes, given the engine and the progress callback (None: no bar).
    Compute = Callable[[Engine, Callable[[int, int], None] | None], FleetResult]

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


def report_fleet(result: FleetResult) -> int:
    """Problems of every run (``error: RUN/PATH: message``), runs that could not be read, notes; returns the
    number of errors (warnings excluded)."""
    from ..formats.base import Problem

    # Runs skipped first: a run left out must not hide behind the cap on problem lines of the others' files.
    problems = [Problem(loc, "unreadable", f"run skipped: {why}") for loc, why in result.failures]
    problems += [Problem(f"{run}/{path}", kind, msg) for run, path, kind, msg in result.problems()]
    notes = list(result.notes)
    skipped = [loc for loc, _ in result.failures]
    named = f": {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}" if skipped else ""
    notes.append(
        f"{len(result.results)} run part(s) in {result.batches} batch(es); {len(skipped)} run(s) skipped{named}"
    )
    return report_problems(problems, notes=notes)


@dataclass(frozen=True)
class Fleet:
    """Where a fleet command's work runs: its runs, a forced layout, the storage options and the engine."""

    locations: list[str]
    layout: str | None
    storage_options: Mapping[str, str]
    engine: str
    ray_address: str | None

    def run(self, compute: Compute, filters: Filters) -> FleetResult:
        """The filters checked against the fleet, the engine started, ``compute(engine, progress)`` run with a
        progress bar, the engine stopped (whatever happens)."""
        from ..analysis.check import check_fleet
        from ..fleet.engine import get_engine
        from ..storage import is_url

        opts = dict(self.storage_options)
        check_fleet(self.locations, filters, layout=self.layout, storage_options=opts)
        remote = any(is_url(loc) for loc in self.locations)
        eng = get_engine(self.engine, ray_address=self.ray_address, remote=remote)
        try:
            with progress("runs") as update:
                return compute(eng, update)
        finally:
            eng.close()
