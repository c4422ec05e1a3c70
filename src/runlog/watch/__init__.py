"""Following a run while it is written: ``runlog watch`` and ``runlog doctor --follow`` (docs/watch.md).

- ``poll``: the listing, what changed since the last one, and the back-off between polls;
- ``live``: the state (steps, per-role figures, problems) kept up to date by opening only new or changed
  files;
- ``findings``: ``doctor``'s findings, re-checked when the run changed, throttled;
- ``screen``: the live screen.

``Watcher`` ties them together: each ``poll`` lists the run once, updates the state and returns what
changed as events, and when to poll next; ``ended`` says whether ``--idle-exit`` or ``--timeout`` is due, and
whether the run ends ``unreachable`` (never listed, or not listed since the idle window began: an error, not a
run seen idle). Idle is what a listing saw: the run is idle once a listing begun ``idle_exit`` seconds or more
after the last change found none, never because time passed while something else ran (``doctor --follow`` runs
its check in the foreground, for longer than ``--idle-exit`` on a large run: the run was written meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..errors import RunlogError, RunNotFoundError
from .findings import DoctorWatch, issue_finding
from .live import Event, LiveRun, RunGoneError
from .poll import Backoff, Lister, Listing, no_credentials, run_lister

if TYPE_CHECKING:
    from ..storage import StorageOptions

# The ends at which nothing more is waited for: what still waits to settle is judged as it is then.
SETTLED_ENDS = frozenset({"finished", "idle", "timeout"})

__all__ = [
    "Backoff",
    "DoctorWatch",
    "Event",
    "LiveRun",
    "RunGoneError",
    "Watcher",
    "follow_findings",
    "run_lister",
    "watcher_for",
]


class Watcher:
    """One run followed: ``lister`` lists it, ``live`` keeps its state, ``doctor`` (optional) its findings.

    A listing that fails for another reason than the run being gone (an object store unreachable for a while)
    gives a note and a longer wait, never an end by itself: the next poll tries again. But a run that could not
    be listed is not a run seen idle: when ``--idle-exit`` or ``--timeout`` comes while the listings fail and
    none succeeded at all or within the last ``idle_exit`` seconds, ``ended`` says ``unreachable`` (an error:
    exit 1), with ``unreachable_message``. It says so at once when no listing succeeded yet and one failed for
    want of credentials (``poll.no_credentials``): none come to a running process (a CI job without them was
    retried for ever)."""

    def __init__(
        self,
        live: LiveRun,
        lister: Lister,
        backoff: Backoff,
        *,
        doctor: DoctorWatch | None = None,
        idle_exit: float | None = None,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        remote: bool = False,
    ) -> None:
        self.live = live
        self.lister = lister
        self.backoff = backoff
        self.doctor = doctor
        self.idle_exit = idle_exit
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.last_change = self.started
        self.failures = 0  # listings failed in a row
        self.last_listed: float | None = None  # when a listing last succeeded
        self.quiet_since: float | None = None  # when the last successful listing began (it saw what was there then)
        self.last_error: str | None = None  # why the last listing failed
        self.hopeless = False  # no listing succeeded and one failed for want of credentials: the end is now
        self.remote = remote  # an object store: a prefix with no object yet is waited for
        self.seen = False  # some file of the run was listed
        self.waiting = False

    def poll(self) -> tuple[list[Event], float]:
        """List the run once and bring everything up to date: (events, seconds to wait before the next poll).
        ``RunGoneError`` when the run folder (or every file of it) was deleted."""
        began = self.clock()
        try:
            data, temp = self.lister()
        except RunNotFoundError as exc:
            self.failures, self.last_listed = 0, self.clock()
            if not self.remote or self.seen:
                raise RunGoneError(str(exc)) from None
            # An object store has no folders: a prefix nothing was uploaded to yet is not there at all. A watch
            # started beside the training job waits for the first object (said once), as for an empty folder.
            events = [] if self.waiting else [Event("note", {"message": f"{exc}; waiting for the first object"})]
            self.waiting = True
            return events, self.backoff.next(False)
        except (RunlogError, OSError) as exc:
            self.failures += 1
            delay = self.backoff.next(False)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.last_error = reason
            self.hopeless = self.hopeless or (self.last_listed is None and no_credentials(exc))
            if self.ended() == "unreachable":
                return [], delay  # no "trying again": the end comes now, and its message says why
            return [Event("note", {"message": f"listing failed ({reason}); trying again in {delay:.0f} s"})], delay
        self.failures, self.last_listed = 0, self.clock()
        self.seen = self.seen or bool(data)
        events = self.live.update(data, temp)
        self.quiet_since = began
        if self.live.changed:
            # The change is dated by the listing that found it (it was made before that listing began).
            self.last_change = began
            # A run with no data file yet (a writer's state file only, an empty log file, half a first line) has
            # nothing for doctor to read: its check would only say "no run files found". The first data file
            # read makes it due.
            if self.doctor is not None and self.live.has_data:
                self.doctor.changed()
        if self.doctor is not None:
            events += self.doctor.poll()
        return events, self.backoff.next(self.live.changed)

    def ended(self) -> str | None:
        """Why following should stop now (``finished``: every process that wrote the run closed its writer and
        every file was read; ``idle`` or ``timeout``; ``unreachable`` when that comes while the listings fail and
        none succeeded at all, or within the last ``idle_exit`` seconds, and at once when no credentials could
        ever list it: ``hopeless``), or None. ``idle``: the last listing, begun ``idle_exit`` seconds or more after
        the last change, found none; time that passed since that listing (a check in the foreground) is not idle
        time: the next listing tells (``until_end`` asks for it at once)."""
        if self.hopeless:
            return "unreachable"
        now = self.clock()
        why = None
        if self.live.finished and not self.failures:
            return "finished"
        # While the listings fail nothing is seen: the time passed counts, and the end is ``unreachable`` (below).
        quiet = now if self.failures or self.quiet_since is None else self.quiet_since
        if self.timeout is not None and now - self.started >= self.timeout:
            why = "timeout"
        elif self.idle_exit is not None and quiet - self.last_change >= self.idle_exit:
            why = "idle"
        if (
            why is not None
            and self.failures
            and (self.last_listed is None or (self.idle_exit is not None and now - self.last_listed >= self.idle_exit))
        ):
            return "unreachable"
        return why

    def final_events(self, why: str | None) -> list[Event]:
        """What to say before stopping for ``why``: on ``finished``, ``idle`` or ``timeout`` (``SETTLED_ENDS``),
        the problems still settling, judged as they are now (``LiveRun.settle_all``: a file torn at the end is
        unreadable, a writer's temporary file left is a leftover, as a plain ``doctor`` says; they were dropped
        at an idle stop, and ``doctor --follow`` passed what ``doctor`` fails); a run of scalars only not said
        yet (``--once``, an early stop); then doctor's last check, its problems still settling counted too,
        and on ``idle`` or ``timeout`` what it keeps for a stop (``DoctorWatch.stopping``); last, on those ends,
        the findings reported that no longer hold withdrawn, and those whose figures changed said again
        (``DoctorWatch.settle_said``: what a follow said last is what a plain ``doctor`` of the run finds, its file
        problems and gaps in the live view's words, one finding each)."""
        if why is None:
            return []
        if why == "finished":
            self.live.split_typo_at_end()
        settled = why in SETTLED_ENDS
        events = self.live.settle_all(self._listed_now()) if settled else []
        if settled and self.live.changed and self.doctor is not None and self.live.has_data:
            self.doctor.changed()  # the run changed since the last poll: doctor's last check reads it as it is now
        events += self.live.scalars_only_final()
        if self.doctor is None:
            return events
        events += self.doctor.final(settle_all=settled)
        events += self.doctor.stopping() if why in ("idle", "timeout") else []
        if settled:
            # The live problems as ``doctor --follow`` reports them (``_as_findings``) hold too while they last.
            held = [*self.doctor.findings, *(issue_finding(i) for i in self.live.issues.values())]
            events += self.doctor.settle_said(held)
        return events

    def _listed_now(self) -> tuple[Listing, Listing] | None:
        """The run listed once more, for the judgment at a stop (``LiveRun.settle_all``): a writer may have renamed
        a temporary file into place and closed since the last poll, whose listing still named it (a healthy run
        failed ``--fail-on warning`` on a "leftover"). None where that listing fails or finds every file gone:
        the last poll's listing is judged then."""
        try:
            data, temp = self.lister()
        except (RunlogError, OSError):
            return None
        return None if not data and self.live.files else (data, temp)

    def unreachable_message(self) -> str:
        """What an ``unreachable`` end says: the run, how many listings failed, the last error."""
        last = self.last_listed
        when = "at all" if last is None else f"for {self.clock() - last:.0f} s"
        return (
            f"{self.live.path}: the run could not be listed {when} ({self.failures} listing(s) failed in a row; "
            f"last: {self.last_error})"
        )

    def until_end(self) -> float | None:
        """Seconds until ``ended`` becomes true if nothing changes (None: never)."""
        now = self.clock()
        left = [
            t
            for t in (
                None if self.timeout is None else self.started + self.timeout - now,
                None if self.idle_exit is None else self.last_change + self.idle_exit - now,
            )
            if t is not None
        ]
        return max(0.0, min(left)) if left else None


def watcher_for(
    path: str,
    *,
    split: str | None = None,
    roles: tuple[str, ...] = (),
    layout: str | None = None,
    storage_options: StorageOptions | None = None,
    interval: float = 2.0,
    max_interval: float | None = None,
    idle_exit: float | None = None,
    timeout: float | None = None,
    doctor: DoctorWatch | None = None,
    settle: float | None = None,
) -> Watcher:
    """A ``Watcher`` of ``path`` with the defaults of the commands: back-off up to ``max_interval`` (default:
    none for a local folder, 15 times ``interval`` capped at a minute for an object store), and problems that
    must hold for ``settle`` seconds (default: three polls, at least 5 s) before they are reported."""
    from .. import storage

    if max_interval is None:
        max_interval = min(60.0, 15 * interval) if storage.is_url(path) else interval
    live = LiveRun(
        path,
        split=split,
        roles=roles,
        layout=layout,
        storage_options=storage_options,
        settle=max(5.0, 3 * interval) if settle is None else settle,
    )
    if doctor is not None and doctor.settle is None:
        doctor.settle = live.settle  # a file doctor finds unreadable settles as the watch's own problems do
    lister = run_lister(path, layout=layout, storage_options=storage_options)
    return Watcher(
        live,
        lister,
        Backoff(interval, max_interval),
        doctor=doctor,
        idle_exit=idle_exit,
        timeout=timeout,
        remote=storage.is_url(path),
    )


def follow_findings(
    watcher: Watcher,
    fail_on: str | None,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], None] | None = None,
) -> Iterator[Event]:
    """``runlog doctor --follow``: the findings of a run as they appear (``doctor``'s checks, and the live
    problems as ``doctor`` words them: ``findings.issue_finding``), and notes; it ends with an ``end`` event
    whose ``reason`` is ``failing`` as soon as a finding of severity ``fail_on`` or worse appears (None:
    never), else ``idle`` or ``timeout`` once the watcher's limits are reached (after a last check), or
    ``unreachable`` (with a ``message``) when the run could not be listed (``Watcher.ended``). What a poll found
    is given before the last check runs (it may take a while on a large run). At ``finished``, ``idle`` or
    ``timeout``, a last check that failed with a usage error (``DoctorWatch.failure``: of ``--config``) raises
    it, after the events of the end: plain ``doctor`` fails so on the same files. ``stop``: called before each
    poll, to raise when a stop signal came whose interrupt was swallowed on the way (``watch_cmd.stopped``)."""
    from .findings import severity_rank

    doctor = watcher.doctor
    if doctor is None:
        raise ValueError("follow_findings needs a Watcher with a DoctorWatch")
    bar = severity_rank(fail_on) if fail_on is not None else None

    def failing(out: list[Event]) -> bool:
        return bar is not None and any(e.kind == "finding" and severity_rank(e.data["severity"]) >= bar for e in out)

    while True:
        if stop is not None:
            stop()
        events, delay = watcher.poll()
        why = watcher.ended()
        out = _as_findings(doctor, events)
        yield from out
        if failing(out):
            yield Event("end", {"reason": "failing"})
            return
        out = _as_findings(doctor, watcher.final_events(why))
        yield from out
        if why in SETTLED_ENDS and doctor.failure is not None:
            # doctor's last check, of the run as it ends, still fails as plain ``doctor`` does on the same files
            # (a ``--config`` naming a role that never spoke: a usage error, exit 2): said as it says it. While the
            # run was written it was a note, retried (the role may speak later); the follow used to pass (exit 0).
            raise doctor.failure
        if failing(out):
            yield Event("end", {"reason": "failing"})
            return
        if why == "unreachable":
            yield Event("end", {"reason": why, "message": watcher.unreachable_message()})
            return
        if why is not None:
            yield Event("end", {"reason": why})
            return
        until = watcher.until_end()
        sleep(delay if until is None else min(delay, until + 0.01))


def _as_findings(doctor: DoctorWatch, events: list[Event]) -> list[Event]:
    """What ``doctor --follow`` says of ``events``: notes, findings and ``ended``, and each live problem as the
    finding ``doctor`` makes of it (reported once, as doctor's own)."""
    from .live import Issue

    out = [e for e in events if e.kind in ("note", "finding", "withdrawn", "ended")]
    for e in events:
        if e.kind == "problem":
            issue = Issue(**{k: e.data[k] for k in ("kind", "path", "message", "onset_step", "severity")})
            out += doctor.report([issue_finding(issue)])
    return out
