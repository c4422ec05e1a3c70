"""``runlog doctor DIR``: what is going wrong in a run, for which role, since which step."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS
from ..textsafe import visible
from .common import DOCTOR_PATH, STORAGE_OPTION, emit_json, handle_errors, stderr_console, use_storage_options
from .options import Format, Layout, NoCache, Thresholds, ThresholdsFile, TrainingSplit
from .output import print_out
from .watch_cmd import IDLE_EXIT_OPTION, INTERVAL_OPTION, SETTLE_OPTION, TIMEOUT_OPTION

if TYPE_CHECKING:
    from rich.console import Group

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class DoctorFormat(str, Enum):
    table = "table"
    json = "json"


class FailOn(str, Enum):
    warning = "warning"
    error = "error"
    never = "never"


def doctor_command(
    path: str = DOCTOR_PATH,
    fmt: Format[DoctorFormat] = DoctorFormat.table,
    sets: Thresholds = None,
    config: ThresholdsFile = None,
    split: TrainingSplit = None,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCache = False,
    fail_on: FailOn = typer.Option(
        FailOn.warning, "--fail-on", help="The least severity that makes the exit code 1 (never: always 0)."
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        help="Follow a run being written: print each finding as it appears; exit 1 at once on one of --fail-on's "
        "severity, else 0 when every writer closed (finished), at --idle-exit or at --timeout (1 if the run could not "
        "be listed; docs/watch.md).",
    ),
    interval: float = INTERVAL_OPTION,
    idle_exit: float = IDLE_EXIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
    settle: float = SETTLE_OPTION,
) -> None:
    """Diagnose a run: what is going wrong, for which role, since which step.

    Checks: KL blow-ups, reward collapse or stagnation, zero-advantage prompt groups, diversity
    collapse, format drift, reward hacking, NaN rewards, exception spikes, missing steps and unreadable
    files. Each finding names the role, the first step of the sustained change (found by a noise-tolerant
    change-point search), a severity and the numbers behind it.

    With --follow, the run is watched as it is written (for CI jobs and alerts): each new finding is printed
    as one line (a JSON line with --format json), and the command exits 1 as soon as one of severity
    --fail-on or worse appears; problems in files (unreadable, newer schema, gaps) count once they hold, so
    that a file still being copied is not a failure. When it ends otherwise (finished, --idle-exit, --timeout),
    a finding said earlier that the run as it ends no longer has is withdrawn, and one whose figures changed is
    said again (as an update), so that its last word is a plain doctor's on the same files.

    Exit codes: 0 no finding of severity --fail-on (default warning) or worse; 1 such findings (with
    --follow: the first one, the run deleted, or the run could not be listed when --idle-exit or --timeout
    came); 2 usage error; 130 interrupted (Ctrl-C); with --follow, 143 and 129 stopped by SIGTERM and SIGHUP
    (as Ctrl-C: with --format json after an "end" event, interrupted).

    Examples:

      runlog doctor sample_runs/debate_grpo  # exit 1: NaN rewards
      runlog doctor sample_runs/debate_grpo --format json | jq -c '.findings[] | {kind, onset_step}' # exit 1 (pipefail)
      runlog doctor sample_runs/debate_grpo --follow --fail-on error --idle-exit 2
    """
    from ..analysis.check import check_filters
    from ..analysis.doctor import DoctorConfig, diagnose
    from ..analysis.filters import Filters
    from ..run import open_run

    with handle_errors():
        cfg = DoctorConfig.from_sources(config, sets or ())
        if split is not None:
            cfg = cfg.replace({"split": split}, "--split")
        options = use_storage_options(storage_option)
        if follow:
            raise typer.Exit(_follow(path, cfg, fmt, fail_on, layout, options, interval, idle_exit, timeout, settle))
        run = open_run(path, layout=layout, storage_options=options)
        if cfg.split:
            check_filters(run, Filters(splits=(cfg.split,)))
        with _stages() as stage:
            result = diagnose(run, cfg, progress=stage)
        if fmt == DoctorFormat.json:
            emit_json(
                {"findings": [f.as_dict() for f in result.findings], "notes": result.all_notes, "split": result.split}
            )
        else:
            print_out(render_findings(run.name, result, fail_on.value))
    raise typer.Exit(EXIT_PROBLEMS if _fails(result.findings, fail_on) else EXIT_OK)


@contextmanager
def _stages() -> Iterator[Callable[[str], None]]:
    """What doctor is checking, with a spinner and the time taken, on stderr at a terminal (the texts of a large
    run take minutes); gone when done. A pipe or a log gets nothing."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..analysis.doctor import STAGES

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]doctor[/]"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(f"checking {STAGES[0]}", total=None)
        yield lambda stage: progress.update(task, description=f"checking {stage}")


def _fails(findings: list[Any], fail_on: FailOn) -> bool:
    from ..watch.findings import severity_rank

    if fail_on == FailOn.never:
        return False
    return any(severity_rank(f.severity) >= severity_rank(fail_on.value) for f in findings)


def _follow(
    path: str,
    cfg: Any,
    fmt: DoctorFormat,
    fail_on: FailOn,
    layout: str | None,
    options: Any,
    interval: float,
    idle_exit: float | None,
    timeout: float | None,
    settle: float | None,
) -> int:
    """``--follow``: findings as they appear (``watch.follow_findings``); the exit code. SIGTERM and SIGHUP
    (``timeout 600 runlog doctor RUN --follow`` in CI, a service stopped) end it as Ctrl-C does, with the
    ``end`` line (``interrupted``) and exit 128 + the signal's number, as in ``watch``
    (``watch_cmd.remember_signals``); they used to kill it, with no last line."""
    import signal

    from .watch_cmd import end_line, leave, remember_signals

    # Taken first, before the modules of following load (most of a second): a signal then ends it with its
    # ``end`` event too.
    interrupted, previous = remember_signals()
    as_json = fmt == DoctorFormat.json
    said_end = False
    code = EXIT_OK
    gone: tuple[type[BaseException], ...] = ()  # RunGoneError, once the watch's modules loaded
    try:
        try:
            from ..listing import refuse_glob
            from ..watch import DoctorWatch, Event, RunGoneError, follow_findings, watcher_for
            from ..watch.findings import SaidLines
            from .watch_cmd import check_exists, emit_events, event_line, stopped

            gone = (RunGoneError,)
            refuse_glob(path, options)  # a quoted 'runs/*' is said as a glob, not as a path that does not exist
            check_exists(path)
            doctor = DoctorWatch(path, cfg, layout=layout, storage_options=options)
            watcher = watcher_for(
                path,
                split=cfg.split or None,
                layout=layout,
                storage_options=options,
                interval=interval,
                idle_exit=idle_exit,
                timeout=timeout,
                doctor=doctor,
                settle=settle,
            )
            bar = None if fail_on == FailOn.never else fail_on.value
            said = SaidLines()  # text: an update that reads as the line printed for its finding is not printed again
            for event in follow_findings(watcher, bar, stop=lambda: stopped(interrupted)):
                if event.kind == "end":
                    # ``unreachable``: no listing of the run succeeded (no credentials): an error, not a healthy run
                    said_end = True
                    end_line(as_json, event.data["reason"], event.data.get("message"))
                    code = EXIT_PROBLEMS if event.data["reason"] in ("failing", "unreachable") else EXIT_OK
                    break
                if not as_json and said.repeated(event, event_line(Event(event.kind, {**event.data, "update": False}))):
                    continue
                emit_events([event], as_json)
        except KeyboardInterrupt:
            said_end = True
            end_line(as_json, "interrupted", None)
            code = EXIT_INTERRUPTED
        except gone as exc:
            said_end = True
            end_line(as_json, "deleted", str(exc))
            code = EXIT_PROBLEMS
    except BaseException:
        # After a stop signal, whatever ends the command is the interrupt (an error a library made of it, a panic
        # inside polars): said as one (``watch_command``).
        if not interrupted[0]:
            raise
        if not said_end:
            end_line(as_json, "interrupted", None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return leave(code, interrupted)


def render_findings(name: str, result: Any, fail_on: str = "warning") -> Group:
    """The findings' table, the notes and a last line that says what ``--fail-on`` (``fail_on``) makes of them."""
    from rich.console import Group
    from rich.text import Text

    from .output import Col, Sheet

    parts: list[Any] = []
    head = Text()
    head.append("doctor ", style="bold")
    head.append(visible(name, keep_newlines=False), style="bold cyan")
    if result.split:
        head.append(f"  split {visible(result.split, keep_newlines=False)}", style="dim")
    parts.append(head)
    if result.findings:
        columns = [
            Col("severity", "left", key=True),
            Col("kind", "left", key=True),
            Col("role", "left", key=True),
            Col("onset"),
            Col("finding", "left", wrap=True),
        ]
        rows = [
            [
                Text(f.severity, style=SEVERITY_STYLE[f.severity]),
                Text(f.kind),
                Text(visible(f.role or "-", keep_newlines=False)),
                Text("-" if f.onset_step is None else str(f.onset_step)),
                Text(visible(f.message, keep_newlines=False)),
            ]
            for f in result.findings
        ]
        parts.append(Sheet("", columns, rows))
    for note in result.all_notes:
        parts.append(Text(f"note: {visible(note, keep_newlines=False)}", style="dim"))
    if not result.findings and result.notes:  # as the report: not healthy where checks could not run
        parts.append(Text("no findings, but some checks could not run (see the notes).", style="bold yellow"))
    elif not result.findings:
        parts.append(Text("healthy: no findings.", style="bold green"))
    elif not result.failing:
        parts.append(Text(f"{len(result.findings)} informational finding(s); nothing to fix.", style="bold cyan"))
    else:
        parts.append(_summary_line(result.findings, fail_on))
    return Group(*parts)


def _summary_line(findings: list[Any], fail_on: str) -> Any:
    """The last line where some finding is a warning or worse, in the terms of the threshold asked: what makes
    the exit code 1, or why it is 0."""
    from rich.text import Text

    hint = "--format json for the evidence"
    errors = sum(f.severity == "error" for f in findings)
    n = sum(f.severity != "info" for f in findings)
    if fail_on == FailOn.error.value:
        if errors:
            return Text(f"{errors} finding(s) of severity error ({hint}).", style="bold red")
        return Text(
            f"no finding of severity error (--fail-on error: exit 0); {n} warning(s) ({hint}).", style="bold yellow"
        )
    if fail_on == FailOn.never.value:
        return Text(
            f"{n} finding(s) of severity warning or worse (--fail-on never: exit 0; {hint}).", style="bold yellow"
        )
    return Text(f"{n} finding(s) of severity warning or worse ({hint}).", style="bold red")
