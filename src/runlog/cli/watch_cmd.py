"""``runlog watch RUN``: follow a run while it is written (a live screen, or one line per new step)."""

from __future__ import annotations

import contextlib
import json
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from ..process import raise_outside_polars
from ..textsafe import visible
from .common import (
    FOLLOWED_PATH,
    OWNS_PROCESS,
    STORAGE_OPTION,
    fail,
    handle_errors,
    stdout_console,
    use_storage_options,
)
from .options import Format, Layout, NoCache, Roles, TrainingSplit

if TYPE_CHECKING:
    from ..watch import Event, Watcher
    from ..watch.findings import SaidLines

INTERVAL_OPTION = typer.Option(2.0, "--interval", min=0.1, metavar="SECONDS", help="Seconds between two listings.")
MAX_INTERVAL_OPTION = typer.Option(
    None,
    "--max-interval",
    min=0.1,
    metavar="SECONDS",
    help="While nothing changes, wait ever longer between listings, up to this (default: no back-off for a "
    "local folder; 15 x --interval, at most 60 s, for s3:// and gs://).",
)
IDLE_EXIT_OPTION = typer.Option(
    None, "--idle-exit", min=0, metavar="SECONDS", help="Stop once no file has changed for this long (exit 0)."
)
SETTLE_OPTION = typer.Option(
    None,
    "--settle",
    min=0,
    metavar="SECONDS",
    help="How long an unreadable file, a gap or a temporary file must last before it is a problem "
    "(default: 3 x --interval, at least 5 s): a file being copied is not one.",
)
TIMEOUT_OPTION = typer.Option(None, "--timeout", min=0, metavar="SECONDS", help="Stop after this long in all (exit 0).")


STATUS_S = 10.0  # how long a note stays on the live screen's last line


class WatchFormat(str, Enum):
    table = "table"
    json = "json"


def watch_command(
    path: str = FOLLOWED_PATH,
    fmt: Format[WatchFormat] = WatchFormat.table,
    interval: float = INTERVAL_OPTION,
    max_interval: float = MAX_INTERVAL_OPTION,
    once: bool = typer.Option(False, "--once", help="Show the run as it is now and stop."),
    idle_exit: float = IDLE_EXIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
    settle: float = SETTLE_OPTION,
    split: TrainingSplit = None,
    role: Roles = None,
    no_doctor: bool = typer.Option(False, "--no-doctor", help="Do not run doctor's checks (they re-read the run)."),
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCache = False,
) -> None:
    """Follow a run while it is written: steps as they arrive, per-role reward and KL, problems, findings.

    On a terminal: a live screen with the latest step and rows per second; per role, the reward and KL of the
    last steps as sparklines with their trend; problems (unreadable files, gaps, newer schema versions) and
    doctor's findings as they appear, with their onset step; the best and worst sample of the latest step.
    Off a terminal (a log, a script): one line per new step, problem and finding, or JSON lines with
    --format json. Only new or changed files are read at each poll (doctor's checks re-read the run, at
    most every few seconds). An object store (s3://, gs://) is listed with back-off while nothing changes.

    A file that cannot be read right after it changed (still being copied) is retried, and reported only if it
    stays so; a temporary file left unchanged (a writer killed mid-step) is a warning; a run folder deleted
    ends the command with exit 1. A run whose every writer closed (RunWriter's state files), with its files all
    there, ends it: "finished".

    Keys: q quits (exit 0). Exit codes: 0 stopped (q, --once, --idle-exit, --timeout, finished); 1 the run was
    deleted, or could not be listed (no credentials: at once; else up to --idle-exit or --timeout); 2 usage
    error (a misspelt --split or --role); 130 interrupted (Ctrl-C); 143 and 129 stopped by SIGTERM and SIGHUP
    (the terminal restored).

    Examples:

      runlog watch sample_runs/debate_grpo --once
      runlog watch sample_runs/debate_grpo --format json --idle-exit 0 | tail -n 1
      runlog watch sample_runs/debate_grpo --role solver --interval 5 --timeout 3
    """
    # A Ctrl-C is remembered: a library that turns the interrupt into an error of its own (a read cancelled by
    # the signal) must not make the watch end as if the run had failed (exit 1 once in CI, for 130). SIGTERM
    # and SIGHUP (``timeout``, a stopped tmux pane or service) end it the same way, so that the terminal is
    # restored (echo, line mode, cursor) as after Ctrl-C, with exit 128 + the signal's number. Taken first,
    # before the watch's modules load (most of a second): a signal then ends it with its ``end`` event too.
    interrupted, previous = remember_signals()
    as_json = fmt == WatchFormat.json
    live_screen, said_end = False, False
    code, busy, doctor = EXIT_OK, False, None
    gone: tuple[type[BaseException], ...] = ()  # RunGoneError, once the watch's modules loaded
    try:
        with handle_errors():
            try:
                from ..analysis.doctor import DoctorConfig
                from ..watch import DoctorWatch, RunGoneError, watcher_for

                gone = (RunGoneError,)
                options = use_storage_options(storage_option)
                live_screen = fmt == WatchFormat.table and sys.stdout.isatty()
                doctor = (
                    None
                    if no_doctor
                    else DoctorWatch(
                        path, DoctorConfig(split=split or ""), layout=layout, storage_options=options, background=True
                    )
                )
                watcher = watcher_for(
                    path,
                    split=split,
                    roles=tuple(dict.fromkeys(role or ())),
                    layout=layout,
                    storage_options=options,
                    interval=interval,
                    max_interval=max_interval,
                    idle_exit=0.0 if once else idle_exit,
                    timeout=timeout,
                    doctor=doctor,
                    settle=settle,
                )
                check_exists(path)
                if live_screen:
                    why = _live(watcher, interval, once, interrupted)
                    if why == "unreachable":
                        end_line(False, why, watcher.unreachable_message())
                else:
                    why = _lines(watcher, as_json, once, interrupted)
                if why == "unreachable":
                    code = EXIT_PROBLEMS
            except KeyboardInterrupt:
                said_end = True
                end_line(as_json and not live_screen, "interrupted", None)
                code = EXIT_INTERRUPTED
            except gone as exc:
                said_end = True
                end_line(as_json, "deleted", str(exc))
                code = EXIT_PROBLEMS
            finally:
                busy = doctor is not None and doctor.close()
    except BaseException:
        # After a Ctrl-C, whatever ends the command is the interrupt: an error a library made of it (a cancelled
        # read), or the panic a KeyboardInterrupt becomes inside a callback polars makes from Rust (pyo3's
        # PanicException, a BaseException: exit 1 and a traceback in the tmux test under load). It ends below,
        # as an interrupt, without the interpreter's teardown.
        if not interrupted[0]:
            raise
        if not said_end:
            end_line(as_json and not live_screen, "interrupted", None)
        code = 128 + interrupted[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    raise typer.Exit(leave(code, interrupted, busy))


def leave(code: int, interrupted: list[int], busy: bool = False) -> int:
    """The exit code once following stopped: ``code``, or after a stop signal (``remember_signals``' record) 130
    for Ctrl-C and 128 + the signal's number for the others. After a signal, or with a check still running
    (``busy``), the process ends here when it is runlog's own (``OWNS_PROCESS``)."""
    if interrupted[0]:
        code = EXIT_INTERRUPTED if interrupted[0] == signal.SIGINT else 128 + interrupted[0]
    if (busy or interrupted[0]) and OWNS_PROCESS[0]:
        # A doctor check still runs on its daemon thread, inside polars, or a Ctrl-C cut a read short (its native
        # worker threads may still run): the interpreter's teardown would meet them there (a panic's traceback
        # after the screen; "terminate called without an active exception" and exit 134 in the tmux test). Nothing
        # is left to write (caches are written atomically), so the process ends here, its output flushed.
        import os

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    return code


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the watch ends as after Ctrl-C (the terminal restored on the way out)."""


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def remember_signals() -> tuple[list[int], dict[int, Any]]:
    """Install handlers of SIGINT, SIGTERM and SIGHUP that record the signal's number, then raise
    ``KeyboardInterrupt`` as Python's own SIGINT handler does (``Terminated`` for the others), so that every
    ``finally`` runs: the terminal's mode and cursor are restored. Returns the record (0: none yet) and the
    handlers to restore (none off the main thread, where none is installed)."""
    interrupted = [0]

    def handler(signum: int, frame: Any) -> None:
        first = not interrupted[0]
        interrupted[0] = interrupted[0] or signum
        if first:  # a second signal while the first unwinds must not cut the restoring short
            # Not inside a callback polars makes from Rust, where Rust would print a panic of it: just after.
            raise_outside_polars(frame, KeyboardInterrupt if signum == signal.SIGINT else Terminated)

    previous: dict[int, Any] = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:  # no SIGHUP on Windows
            continue
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            break
    return interrupted, previous


def check_exists(path: str) -> None:
    """A path that does not exist at the start is a usage error (a typo), not a run deleted, said as every
    command says it (``run.check_path``: the name close to it, a symbolic link to nothing; an empty path); so
    is a file (a run being written is a folder of files). An object-store prefix is waited for (docs/watch.md)."""
    import os

    from .. import storage
    from ..errors import RunlogError
    from ..listing import refuse_glob
    from ..run import check_path

    if path and storage.is_url(path):
        return
    full = os.path.expanduser(path)
    if not path or not os.path.exists(full):
        refuse_glob(path)  # a quoted 'runs/*' is said as a glob (one run, and what it matched), not as no such file
        try:
            check_path(path)
        except RunlogError as exc:
            raise fail(str(exc), exc.exit_code) from None
        raise fail(f"{path}: no such file or directory", EXIT_USAGE)  # a glob that matches nothing
    if not os.path.isdir(full):
        raise fail(f"{path}: a file; following a run needs its folder", EXIT_USAGE)


# -- off a terminal: lines ------------------------------------------------------------------------------
def _lines(watcher: Watcher, as_json: bool, once: bool = False, stop: list[int] | None = None) -> str:
    """One line (or JSON object) per new step, problem, finding; notes on stderr (JSON: on stdout too). Returns
    why it ended (``Watcher.ended``). What a poll found is printed before the last checks of the end run
    (``Watcher.final_events``: doctor's last check takes a while on a large run)."""
    from ..watch.findings import SaidLines

    said = None if as_json else SaidLines()  # an update that reads as the line printed for its finding: not again
    first = True
    while True:
        stopped(stop)
        events, delay = watcher.poll()
        if first:
            # The steps written before the command started: only the latest is shown, and the others are not
            # (a step of them a resumed writer writes again is a new step, and never "removed").
            steps = [e for e in events if e.kind == "step"]
            watcher.live.unshown(e.data["step"] for e in steps[:-1])
            ended = [e for e in events if e.kind == "ended"]  # said after the steps, as when it comes later
            events = [e for e in events if e.kind not in ("step", "ended")] + steps[-1:] + ended
            # A first read that failed (a file rewritten while read) is done again at the next poll: its steps
            # are still the ones written before the command started.
            first = watcher.live.retrying and not steps
        why = watcher.ended()
        emit_events(events, as_json, said)
        emit_events(watcher.final_events(why), as_json, said)
        if why == "unreachable":
            end_line(as_json, why, watcher.unreachable_message())
            return why
        if why is not None:
            end_line(as_json, "once" if once else why, None)
            return why
        until = watcher.until_end()
        time.sleep(delay if until is None else min(delay, until + 0.01))


def emit_events(events: list[Event], as_json: bool, said: SaidLines | None = None) -> None:
    """``events`` on stdout (notes on stderr as text); ``said``: the text lines printed so far for each finding, so
    that an update reading as the one printed is left out (JSON lines keep every event)."""
    from ..watch import Event

    for e in events:
        if said is not None and said.repeated(e, event_line(Event(e.kind, {**e.data, "update": False}))):
            continue
        if as_json:
            sys.stdout.write(json.dumps(e.as_dict(), allow_nan=False, default=str) + "\n")
        elif e.kind == "note":
            sys.stderr.write(f"note: {visible(str(e.data.get('message')), keep_newlines=False)}\n")
        else:
            sys.stdout.write(event_line(e) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()


def event_line(e: Event) -> str:
    """An event as one line of text (every value from the run escaped)."""
    d = e.data

    def v(x: Any) -> str:
        return visible("-" if x is None else str(x), keep_newlines=False)

    if e.kind == "step":
        parts = [f"step {d['step']}", f"split {v(d.get('split'))}", f"rows {d['rows']}"]
        if d.get("rows_per_s") is not None:
            parts.append(f"{d['rows_per_s']:,.1f} rows/s")
        for r in d["roles"]:
            parts.append(f"{v(r['role'] or '(none)')} reward {_num(r['reward_mean'])} kl {_num(r['kl_mean'])}")
        return ("update " if d.get("update") else "") + "  ".join(parts)
    if e.kind == "ended":
        return f"writer {'finished' if d['finished'] else 'ended'}: {v(d['message'])}"
    if e.kind == "removed":
        return f"removed  split {v(d.get('split'))}  steps {', '.join(str(s) for s in d['steps'])}"
    if e.kind in ("problem", "resolved"):
        # A reader's plain warning has no kind of its own but its severity: said once ("warning ... warning:").
        kind = "" if d["kind"] == d["severity"] else f" {v(d['kind'])}:"
        return f"{e.kind} {d['severity']} step {v(d['onset_step'])}{kind} {v(d['path'])}: {v(d['message'])}"
    if e.kind in ("finding", "withdrawn"):
        # ``withdrawn``: a finding said earlier that the run as it ends no longer has (``DoctorWatch.settle_said``)
        role = f" role {v(d['role'])}" if d.get("role") is not None else ""
        update = "update " if d.get("update") else ""
        return f"{e.kind} {update}{d['severity']} {d['kind']}{role} step {v(d['onset_step'])}: {v(d['message'])}"
    return f"{e.kind}: {v(d)}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x + 0.0:.4g}"  # + 0.0: -0.0 reads 0, not -0


def end_line(as_json: bool, reason: str, message: str | None) -> None:
    """The last line: why following stopped (JSON: an ``end`` event on stdout; text: a line on stderr)."""
    if as_json:
        sys.stdout.write(json.dumps({"event": "end", "reason": reason, "message": message}) + "\n")
        sys.stdout.flush()
    if message:
        sys.stderr.write(f"Error: {visible(message, keep_newlines=False)}\n")
    elif not as_json and reason not in ("interrupted",):
        sys.stderr.write(f"stopped: {reason}\n")
    sys.stderr.flush()


# -- on a terminal: the live screen -----------------------------------------------------------------------
@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """A function that waits up to N seconds for a key and returns it ('' if none); the terminal is put in
    cbreak mode (keys arrive unbuffered, Ctrl-C still interrupts) and restored on the way out."""
    stdin = sys.stdin
    if not stdin.isatty():

        def wait_only(timeout: float) -> str:
            time.sleep(timeout)
            return ""

        yield wait_only
        return
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)

        def wait_key(timeout: float) -> str:
            ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
            if not ready:
                return ""
            import os

            return os.read(fd, 32).decode("utf-8", "replace")

        yield wait_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def stopped(stop: list[int] | None) -> None:
    """Raise ``KeyboardInterrupt`` if a stop signal came (``remember_signals``' record) but the interrupt its
    handler raised was swallowed on the way: a handler runs between any two bytecodes, and one raised inside a
    ``__del__``, a weakref callback or a library's ``except BaseException`` never reaches the loop (the watch
    went on after Ctrl-C once in CI, and the handler raises only once)."""
    if stop and stop[0]:
        raise KeyboardInterrupt


def _live(watcher: Watcher, interval: float, once: bool, stop: list[int] | None = None) -> str | None:
    """The live screen until ``q`` (None) or ``Watcher.ended`` (its reason)."""
    from rich.live import Live

    from ..watch.screen import Screen, extremes

    console = stdout_console()
    # The latest step's figures the best and worst sample were read for: a step summarised again (a late
    # shard, a file rewritten, a step replayed) is a new ``StepStats``, and its samples are read again.
    samples_for: Any = None
    samples: list[Any] = []

    def screen(status: str = "") -> Screen:
        return Screen(watcher.live, watcher.doctor, samples, interval=interval, status=status)

    if once:
        watcher.poll()
        # As every stop: what still waits to settle is judged as it is now (a file torn, a temporary file left).
        watcher.final_events(watcher.ended() or "idle")
        samples = extremes(watcher.live)
        console.print(screen())
        return watcher.ended() or "once"
    with Live(screen("listing..."), console=console, auto_refresh=False, transient=False) as live, _keys() as key:
        next_poll = 0.0
        status, status_at = "", 0.0
        while True:
            stopped(stop)
            now = time.monotonic()
            if now >= next_poll:
                events, delay = watcher.poll()
                next_poll = time.monotonic() + delay
                latest = watcher.live.latest
                if latest is not samples_for:
                    samples, samples_for = extremes(watcher.live), latest
                notes = [e for e in events if e.kind == "note"]
                if notes:
                    status, status_at = str(notes[-1].data.get("message")), time.monotonic()
                why = watcher.ended()
                if why is not None:
                    watcher.final_events(why)  # the screen shows what they found
                    live.update(screen(f"stopped: {why}"), refresh=True)
                    return why
            # A note stays on the last line for a while (the screen shows the state; notes are news).
            live.update(screen(status if time.monotonic() - status_at < STATUS_S else ""), refresh=True)
            pressed = key(min(1.0, max(0.0, next_poll - time.monotonic())))
            if "q" in pressed.lower():
                return None
