"""Options and reporting shared by the commands that take fleets of runs (``summarize``, ``metrics``)."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from ..textsafe import visible
from .common import MAX_PROBLEM_LINES, fail, one_dash_hint_of_path, report_problems, stderr_console

if TYPE_CHECKING:
    from ..analysis.filters import Filters
    from ..fleet import FleetResult
    from ..fleet.engine import Engine
    from ..formats.base import Problem

    # What a fleet command computes, given the engine and the progress callback (None: no bar).
    Compute = Callable[[Engine, Callable[[int, int], None] | None], FleetResult]


def _paths_given(ctx: typer.Context, paths: list[str] | None) -> list[str] | None:
    """The PATHs typed, each checked before anything is read (``run.check_path``): one that does not exist is a
    usage error (exit 2, with the name close to it), as it is for one run and for ``diff``, not a run skipped
    among the others (exit 1 and a table of the runs left, which read as the fleet asked for). A run that a glob
    matched and that cannot be read is still skipped (docs/scaling.md)."""
    if not ctx.resilient_parsing:
        for path in paths or []:
            _check(path)
    return paths


def _runs_given(ctx: typer.Context, runs_file: str | None) -> str | None:
    """The lines of ``--runs FILE``, each checked as a typed PATH is (:func:`_paths_given`), the error naming the
    file and the line. The file is read here, once: the value handed on is a ``fleet.RunsFile``, which keeps
    the lines (or why they could not be read, said where the fleet's locations are resolved,
    ``fleet.fleet_locations``); a pipe (``--runs <(...)``, ``--runs /dev/stdin``) read a second time lists no
    run."""
    from ..fleet import RunsFile

    if not runs_file or ctx.resilient_parsing:
        return runs_file
    listed = RunsFile(runs_file)
    for n, line in listed.lines or []:
        _check(line, f"--runs {runs_file}: line {n}: ")
    return listed


def _check(path: str, where: str = "") -> None:
    """``run.check_path``, its error said as every command says one (``Error: ...``, its exit code); a PATH that
    is the value of a long option written with one dash (``-by role``: ``-b y``, then ``role``) says so."""
    from ..errors import RunlogError
    from ..run import check_path

    try:
        check_path(path)
    except RunlogError as exc:
        hint = "" if where else one_dash_hint_of_path(path)
        raise fail(f"{where}{exc}{hint}", exc.exit_code) from None


RUN_PATHS = typer.Argument(
    None,
    help="Run directory, file or URL (s3://, gs://, az://); several, or a quoted glob such as 'ROOT/*', for a fleet.",
    show_default=False,
    metavar="PATH...",
    callback=_paths_given,
)
RUNS_FILE = typer.Option(
    None, "--runs", metavar="FILE", help="A file listing run locations, one per line.", callback=_runs_given
)
ENGINE = typer.Option(
    "local", "--engine", help="Fleets: local (in-process polars) or ray (the ray extra: pip install -e '.[ray]')."
)
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


def runs_without_rows(result: FleetResult, df: Any) -> list[str]:
    """The runs read without error that have no row in ``df`` (its ``run`` column): scalars only, no
    readable sample, none at the filters. Runs that failed are said apart (``report_fleet``)."""
    failed = {loc for loc, _ in result.failures}
    if "run" not in df.columns and df.height:
        return []  # statistics pooled over the runs: which runs gave none is said with them (fleet notes)
    shown = set(df["run"].to_list()) if "run" in df.columns else set()
    return sorted({r.name for r in result.results if r.error is None} - shown - failed)


WHY_NO_ROW = "(`runlog {command} RUN` on one says why: scalars only, no readable sample, none at the filters)"


def no_rows_at_all(result: FleetResult, df: Any, command: str) -> None:
    """A fleet where no run has a row is a usage error (exit 2, as for one run), said after the runs'
    problems: a table of headers only and exit 0 read as success. Runs that failed keep their exit 1."""
    from ..errors import UsageError

    absent = runs_without_rows(result, df)
    if df.height == 0 and absent and not result.failures:
        report_fleet(result)
        raise UsageError(
            f"{command}: no run of the fleet has a row: {_few(absent)} {WHY_NO_ROW.format(command=command)}"
        )


def say_runs_without_rows(result: FleetResult, df: Any, command: str) -> None:
    """A note naming the runs of the fleet that have no row in the table."""
    absent = runs_without_rows(result, df)
    if absent:
        why = WHY_NO_ROW.format(command=command)
        report_problems([], notes=[f"run(s) with no row, not in the table: {_few(absent)} {why}"])


def _few(names: list[str]) -> str:
    """The first 10 names, `` ...`` when there are more."""
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def report_fleet(result: FleetResult) -> int:
    """Problems of every run (``error: RUN/PATH: message``), runs that could not be read, notes; returns the
    number of errors (warnings excluded).

    Runs skipped come first, each on its line. Past ``MAX_PROBLEM_LINES`` lines, every run with problems
    still has one (a cap over the whole fleet cut the last runs' problems out: a run that lost data read as
    clean): a run whose lines do not all fit says its counts and its first problem, more of its lines as the
    cap allows, and the hint names the runs cut and the command that lists one run's problems."""
    from ..formats.base import Problem

    skipped = [Problem(loc, "unreadable", f"run skipped: {why}") for loc, why in result.failures]
    by_run: dict[str, list[Problem]] = {}
    for run, path, kind, msg in result.problems():
        by_run.setdefault(run, []).append(Problem(f"{run}/{path}", kind, msg))
    notes = list(result.notes)
    failed = [loc for loc, _ in result.failures]
    named = f": {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}" if failed else ""
    notes.append(
        f"{len(result.results)} run part(s) in {result.batches} batch(es); {len(failed)} run(s) skipped{named}"
    )
    report_problems([], notes=notes)  # apart: notes take no problem's line
    lines = sum(len(ps) for ps in by_run.values())
    if len(skipped) + lines <= MAX_PROBLEM_LINES:
        return report_problems([*skipped, *(p for ps in by_run.values() for p in ps)], group=False)
    quota = _quotas({run: len(ps) for run, ps in by_run.items()}, MAX_PROBLEM_LINES - len(skipped))
    shown = list(skipped)
    cut: dict[str, int] = {}
    for run, ps in by_run.items():
        if quota[run] >= len(ps):
            shown += ps
            continue
        first = (_errors(ps) or ps)[0]  # an error before any warning
        said = f"{_counts(ps)}; first: {first.path.removeprefix(f'{run}/')}: {first.message}"
        shown.append(Problem(run, first.kind, said))
        shown += [p for p in ps if p is not first][: quota[run] - 1]
        cut[run] = len(ps) - quota[run]
    for p in shown:
        line = f"{'warning' if p.is_warning else 'error'}: {p.path}: {p.message}"
        sys.stderr.write(visible(line, keep_newlines=False) + "\n")
    if cut:  # (with more runs than lines, each run may be whole on its one line)
        runs = ", ".join(f"{run} ({n})" for run, n in cut.items())
        first_cut = next(iter(cut))
        where = shlex.quote(result.locations.get(first_cut, first_cut))
        each = ", one run at a time" if len(cut) > 1 else ""
        hint = f"... {sum(cut.values())} more, of {runs}: see `runlog inspect {where}`{each}"
        sys.stderr.write(visible(hint, keep_newlines=False) + "\n")
    return len(skipped) + sum(len(_errors(ps)) for ps in by_run.values())


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.is_warning]


def _counts(problems: list[Problem]) -> str:
    """``3 errors in 2 files, 1 warning``: what a run's problems come to."""
    errors = _errors(problems)
    warnings = len(problems) - len(errors)
    parts = []
    if errors:
        files = len({p.path for p in errors})
        parts.append(f"{_n(len(errors), 'error')} in {_n(files, 'file')}")
    if warnings:
        parts.append(_n(warnings, "warning"))
    return ", ".join(parts)


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _quotas(counts: dict[str, int], budget: int) -> dict[str, int]:
    """Lines per run within ``budget``: one for every run whatever the budget, then one more each in turn, in
    the runs' order, until the budget or the runs' lines run out."""
    quota = dict.fromkeys(counts, 1)
    left = budget - len(quota)
    while left > 0 and any(quota[r] < n for r, n in counts.items()):
        for run, n in counts.items():
            if left > 0 and quota[run] < n:
                quota[run] += 1
                left -= 1
    return quota


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
        from ..fleet import Locations
        from ..fleet.engine import get_engine
        from ..storage import is_url

        opts = dict(self.storage_options)
        check_fleet(self.locations, filters, layout=self.layout, storage_options=opts)
        remote = any(is_url(loc) for loc in self.locations)
        eng = get_engine(self.engine, ray_address=self.ray_address, remote=remote)
        try:
            with progress("runs") as update:
                result = compute(eng, update)
        finally:
            eng.close()
        if isinstance(self.locations, Locations):  # what resolving the locations said (a run given twice)
            result.notes[:0] = self.locations.notes
        return result
