"""Doctor findings of a run being written, as they appear.

``doctor``'s checks look at whole series (a change point needs the steps before and after it), so each check
runs ``diagnose`` on the run as it is then; it runs only after something changed, and no more often than
``min_gap`` seconds or four times its own last duration, so that a large run is not re-read continuously.
With ``background``, it runs on a worker thread and the caller (a live screen) never waits for it.

Data problems (unreadable files, gaps) are left to ``runlog.watch.live``, which waits for a file still being
written to settle before calling it a problem; ``diagnose`` would report it at once. What only reading the data
finds (a page that does not decode) is reported from here, under the same rule: once the file has stayed bad,
the same version, for ``settle`` seconds (a file rewritten in place reads as corrupt while it is rewritten).
So is a closed writer whose files here end before what it wrote (``writer_incomplete``): a copy that brought
the state files first is still bringing the rest; it counts once the run has not changed for ``settle`` seconds
while it holds (a copy stopped, files deleted), or at once when the run finished.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..analysis.doctor import SEVERITIES, DoctorConfig, Finding, aged_now, is_run_problem
from ..errors import RunlogError, UsageError
from ..formats.base import UNREADABLE
from ..formats.common import live_reads
from ..run import GONE, read_failures
from .live import Event, Issue

if TYPE_CHECKING:
    from ..storage import StorageOptions

# The evidence of a NaN finding held a warning because the run followed has few steps yet (``doctor._nan_severity``).
EARLY = "error_from_steps"
# Reported again (``update: true``) when their ``nan`` count changes, and when the follow ends with their message
# changed since it was said (their share, of a run that grew: ``DoctorWatch.final``).
COUNTED_KINDS = frozenset({"nan_rewards", "nan_kl"})
# ``data_problem`` findings of the writers' state files that a copy in progress makes, and its end unmakes:
# they count once they have held, the run unchanged, for ``settle`` seconds (``DoctorWatch._held``).
COPY_KINDS = frozenset({"writer_incomplete"})


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


# Watch's own problem kinds that are warnings in ``doctor``'s terms too (``--fail-on warning`` fails on them):
# a temporary file a writer left (killed mid-step: the run stopped there).
WARNING_KINDS = frozenset({"leftover_temporary"})


def issue_finding(issue: Issue) -> Finding:
    """A live problem as the finding ``doctor`` makes of it (docs/doctor.md, ``data_problem``): a problem of
    an error kind (an unreadable file, a newer schema version, a bad line...) is an error; ``inspect``'s
    warnings (a torn last line, a file no layout matches) are ``info``; a gap is a ``step_gaps`` warning; a
    leftover temporary file is a warning (``WARNING_KINDS``: a writer killed mid-step is not "nothing to fix")."""
    # Each live problem is its own finding (its ``subject``): a second gap or a second unreadable file is
    # reported too, not taken for the first one seen again.
    if issue.kind == "step_gap":
        subject = f"{issue.path}: {issue.message}"
        return Finding("step_gaps", "warning", subject, None, issue.onset_step, {"subject": subject})
    severity = "error" if issue.severity != "warning" else "warning" if issue.kind in WARNING_KINDS else "info"
    evidence = {"problem_kind": issue.kind, "path": issue.path, "subject": f"{issue.kind}: {issue.path}"}
    return Finding(
        "data_problem", severity, f"{issue.kind}: {issue.path}: {issue.message}", None, issue.onset_step, evidence
    )


class DoctorWatch:
    """Re-diagnoses ``path`` when it changed (see the module's docstring) and reports new findings, or
    findings whose severity rose, as ``finding`` events."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: DoctorConfig,
        *,
        layout: str | None = None,
        storage_options: StorageOptions | None = None,
        min_gap: float = 2.0,
        background: bool = False,
        clock: Callable[[], float] = time.monotonic,
        settle: float | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.layout = layout
        self.storage_options = storage_options
        self.min_gap = min_gap
        self.clock = clock
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.checked_at: float | None = None  # wall time of the last finished check
        self.error: str | None = None
        # The usage error of the last check (a ``--config`` whose format spec names a role that never speaks):
        # while the run is written it is a note and the check is tried again (the role may speak later); at a
        # follow's end, one still standing ends it as plain ``doctor`` ends, exit 2 (``follow_findings``). Other
        # errors stay notes: a file rewritten while read ("changed since it was listed") is the moment's, not
        # the files'.
        self.failure: UsageError | None = None
        self._said_error: str | None = None  # the failure a note said last (said once while it lasts)
        self._seen: dict[tuple[str, str | None, str | None], int] = {}
        self._counts: dict[tuple[str, str | None, str | None], Any] = {}  # a count that, grown, is an update
        self._said: dict[tuple[str, str | None, str | None], str] = {}  # the message last reported (COUNTED_KINDS)
        self._dirty = False
        self._last_start = -float("inf")
        self._last_cost = 0.0
        self.background = background
        self._job: _Job | None = None
        # How long a file found unreadable by reading its data must stay so (the same version) before it is a
        # finding (None: at once; ``watcher_for`` gives the watch's ``--settle``), and since when each one is.
        self.settle = settle
        self._bad: dict[str, tuple[tuple | None, float]] = {}
        self._settle_all = False
        # When the run last changed (``changed``), and since when each ``COPY_KINDS`` finding has been found.
        self._changed_at = clock()
        self._held_since: dict[tuple[str, str | None, str | None], float] = {}
        self._at_end: list[Finding] = []  # the last check's findings said only when the follow stops
        # The fields each finding reported was last said with (its ``finding`` event): at a follow's end, what no
        # longer holds is withdrawn, and what changed comes again (``settle_said``).
        self._last: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}

    def changed(self) -> None:
        """The run changed: a check is due (once the throttle allows)."""
        self._dirty = True
        self._changed_at = self.clock()

    def poll(self) -> list[Event]:
        """Collect a finished background check; start (or, in the foreground, run) a check when one is due."""
        events = self._collect()
        now = self.clock()
        running = self._job is not None and not self._job.done.is_set()
        if self._dirty and not running and now - self._last_start >= max(self.min_gap, 4 * self._last_cost):
            self._dirty = False
            self._last_start = now
            if not self.background:
                events += self._finish(self._check())
            else:
                self._job = _Job(self._check)
        return events

    def final(self, settle_all: bool = False) -> list[Event]:
        """Wait for a running check, then check once more if anything changed since it began (or a problem is
        still settling, or a NaN share was held a warning for the run's few steps); with ``settle_all`` (the
        follow stops: finished, idle, a timeout), that check judges the run as ``doctor`` does: a file still
        unreadable then counts at once, and so does a NaN share of few steps.

        Last, a finding of ``COUNTED_KINDS`` whose message changed since it was reported (its share of a run that
        grew: "7.8%" of the first steps, "1.6%" of the run) comes again with ``update: true``, so that its last
        event says what the run as it ends has, as ``doctor`` would (``settle_said`` does it for every finding at
        a follow's end)."""
        events = self._collect(wait=True)
        self._settle_all = settle_all
        if settle_all and any(EARLY in f.evidence for f in self.findings):
            # A NaN share held a warning while the run had few steps (``analysis.doctor.following``): the run
            # as it ends is graded as ``doctor`` grades it, so that the follow's exit is plain ``doctor``'s.
            self._dirty = True
        if settle_all and self._stale_writers():
            # A process not closed is a warning only once the others closed ``ends.END_GRACE_S`` ago, by the clock:
            # a run unchanged since the last check (a writer killed behind the others) is graded again as it is now.
            self._dirty = True
        if self._dirty:
            self._dirty = False
            self._last_start = self.clock()
            events += self._finish(self._check())
        for f in self.findings:
            said = self._said.get(f.key)
            if said is not None and said != f.message:
                self._said[f.key] = f.message
                self._seen[f.key] = severity_rank(f.severity)
                self._counts[f.key] = f.evidence.get("nan")
                self._last[f.key] = f.as_dict()
                events.append(Event("finding", {**f.as_dict(), "update": True}))
        return events

    def _stale_writers(self) -> bool:
        """Whether the last check found a process that has not closed its writer, and began long enough ago that a
        check would be due now (``poll``'s throttle: ``watch --once`` does not check twice)."""
        wait = max(self.min_gap, 4 * self._last_cost)
        return self.clock() - self._last_start >= wait and any(
            f.evidence.get("problem_kind") == "writer_not_closed" for f in [*self.findings, *self._at_end]
        )

    def settle_said(self, held: list[Finding]) -> list[Event]:
        """At a follow's end (finished, idle, a timeout; after ``final`` and ``stopping``), what was reported made
        to agree with the run as it ends, as a plain ``doctor`` of it grades it: ``held``, the findings that hold
        now (this watch's, and the live problems as ``issue_finding`` makes them). A finding reported that
        ``held`` lacks is withdrawn (a ``withdrawn`` event, with the fields it was last said with: a reward stuck
        over the first 27 steps that moved later, a gap filled); one whose fields changed since (its figures over
        the whole run, a lower severity) comes again with ``update: true``. Each used to keep the figures of when
        it first appeared, and one that stopped holding was never taken back.

        The run's file problems and gaps stay as the follow said them, one finding per file and per gap, in the
        live view's words and evidence (``issue_finding``), not plain ``doctor``'s one finding per problem kind
        (``leftover temporary file ...; ignored (and 1 more)``, with ``count`` and ``problems``; a gap's
        ``split, gaps, stride, missing``): the same problems with the same severities, so the same exit code, but
        no finding said is taken back for being grouped."""
        now: dict[tuple[str, str | None, str | None], Finding] = {}
        for h in held:  # a file both doctor's reading and the live view find bad: the first, doctor's reading's
            now.setdefault(h.key, h)
        events = []
        for key, said in list(self._last.items()):
            f = now.get(key)
            if f is None:
                for known in (self._last, self._seen, self._counts, self._said):
                    known.pop(key, None)
                events.append(Event("withdrawn", said))
            elif f.as_dict() != said:
                self._last[key] = f.as_dict()
                self._seen[key] = severity_rank(f.severity)
                self._counts[key] = f.evidence.get("nan") if f.kind in COUNTED_KINDS else None
                if key in self._said:
                    self._said[key] = f.message
                events.append(Event("finding", {**f.as_dict(), "update": True}))
        return events

    def stopping(self) -> list[Event]:
        """After ``final``, when the follow stops before the run finished (idle, a timeout): the last check's
        findings kept for then (``_said_at_end``: which process has not closed its writer), with the age of the
        run's newest file measured now (the last check ran up to ``--idle-exit`` seconds before)."""
        now = time.time()
        at_end = [aged_now(f, now) for f in self._at_end]
        self.findings = [f for f in self.findings if f.key not in {g.key for g in at_end}] + at_end
        return self.report(at_end)

    def close(self) -> bool:
        """Forget a running check: it runs on a daemon thread, so quitting never waits for it. Returns whether
        one was still running (the caller then ends its process without the interpreter's teardown, which a
        thread inside polars does not survive quietly: ``watch_cmd``)."""
        job, self._job = self._job, None
        return job is not None and not job.done.is_set()

    def _collect(self, wait: bool = False) -> list[Event]:
        job = self._job
        if job is None or not (wait or job.done.is_set()):
            return []
        job.done.wait()
        self._job = None
        return self._finish(job.result)

    def _check(self) -> tuple[list[Finding], list[str], str | UsageError | None, float]:
        """``diagnose`` on the run as it is now: (findings, notes, the error (its message, or the ``UsageError``
        itself), seconds it took)."""
        from ..analysis.doctor import diagnose, following
        from ..run import open_run

        t0 = self.clock()
        try:
            # No file that may still change is memory-mapped (SIGBUS when it shrinks); graded as a run still being
            # written, but for the last check of a follow that stops (``final(settle_all=True)``).
            with live_reads(), following(not self._settle_all):
                run = open_run(self.path, layout=self.layout, storage_options=self.storage_options)
                known = len(run.problems)
                result = diagnose(run, self.config)
        except UsageError as exc:  # said, tried again later; kept, for a follow's end (``failure``)
            return [], [], exc, self.clock() - t0
        except read_failures(RunlogError) as exc:  # a run changing under the check: said, tried again later
            return [], [], _first_line(exc), self.clock() - t0
        # What only reading the data finds (a corrupt data page behind an intact footer): ``live`` probes footers
        # and never sees it, so it is reported from here, once settled (``_settled``). A file gone since the
        # listing is ``live``'s to tell (it settles: a dump rotated, an object replaced).
        files = {f.path: f for f in run.files}
        bad = [p for p in run.problems[known:] if p.kind == UNREADABLE and not p.message.startswith(GONE)]
        found = [
            issue_finding(Issue(p.kind, p.path, p.message, getattr(files.get(p.path), "step", None), "error"))
            for p in self._settled(bad, files)
        ]
        return [*result.findings, *found], [*result.notes, *result.scope], None, self.clock() - t0

    def _settled(self, problems: list[Any], files: dict[str, Any]) -> list[Any]:
        """The ``problems`` whose file has been bad, the same version (its listing stamp), for ``settle``
        seconds since it was written (its modification time; for an object, since first found bad). A problem
        still settling makes another check due, so that it is reported once it has lasted."""
        now = time.time()
        bad: dict[str, tuple[tuple | None, float]] = {}
        out = []
        for p in problems:
            stamp = getattr(files.get(p.path), "stamp", None)
            seen = self._bad.get(p.path)
            if seen is None or seen[0] != stamp:
                seen = (stamp, min(now, _modified(stamp, now)))
            bad[p.path] = seen
            if self.settle is None or self._settle_all or now - seen[1] >= self.settle:
                out.append(p)
            else:
                self._dirty = True
        self._bad = bad
        return out

    def _finish(self, result: tuple[list[Finding], list[str], str | UsageError | None, float]) -> list[Event]:
        findings, notes, failed, cost = result
        self._last_cost = cost
        self.failure = failed if isinstance(failed, UsageError) else None
        self.error = error = _first_line(failed) if isinstance(failed, UsageError) else failed
        if error is not None:
            self._dirty = True
            # Said once while it fails alike: a run that stays so (files that tell no run yet) said it at
            # every check.
            said, self._said_error = self._said_error, error
            return [] if error == said else [Event("note", {"message": f"doctor: {error}; retrying"})]
        self._said_error = None
        # The run's file problems and gaps are ``live``'s to say (once they settle): doctor's own are left out.
        kept = [f for f in findings if f.kind != "step_gaps" and not is_run_problem(f)]
        self._at_end = [f for f in kept if _said_at_end(f)]
        self.findings = self._held([f for f in kept if not _said_at_end(f)])
        self.notes = notes
        self.checked_at = time.time()
        return self.report(self.findings)

    def _held(self, findings: list[Finding]) -> list[Finding]:
        """``findings`` less those of ``COPY_KINDS`` that have not yet held for ``settle`` seconds since they were
        first found and since the run last changed (files still arriving: a copy that brought the state files
        first); one still waiting makes another check due. At once with ``settle`` None, or once the run
        finished (``final(settle_all=True)``). Timed from when the check began (what it read was the run then:
        a check of a large run takes longer than ``settle``, while files went on arriving)."""
        now = self._last_start if self._last_start > -float("inf") else self.clock()
        since: dict[tuple[str, str | None, str | None], float] = {}
        out = []
        for f in findings:
            if f.evidence.get("problem_kind") not in COPY_KINDS:
                out.append(f)
                continue
            since[f.key] = self._held_since.get(f.key, now)
            said = self._seen.get(f.key, -1) >= severity_rank(f.severity)  # reported: it stays on the screen
            held = now - max(since[f.key], self._changed_at)
            if said or self.settle is None or self._settle_all or held >= self.settle:
                out.append(f)
            else:
                self._dirty = True
        self._held_since = since
        return out

    def report(self, findings: list[Finding]) -> list[Event]:
        """``finding`` events for the findings not reported yet, or reported at a lower severity; and, with
        ``update: true``, a finding of ``COUNTED_KINDS`` whose count of NaN values changed (more NaN steps came)."""
        events = []
        for f in findings:
            key = f.key
            rank = severity_rank(f.severity)
            count = f.evidence.get("nan") if f.kind in COUNTED_KINDS else None
            if self._seen.get(key, -1) < rank:
                self._seen[key] = rank
                self._counts[key] = count
                events.append(Event("finding", f.as_dict()))
            elif count is not None and self._counts.get(key) != count:
                self._counts[key] = count
                events.append(Event("finding", {**f.as_dict(), "update": True}))
            else:
                continue
            self._last[key] = f.as_dict()
            if f.kind in COUNTED_KINDS:
                self._said[key] = f.message
        return events


class SaidLines:
    """The line a text stream (``doctor --follow``, ``watch`` off a terminal) printed last for each finding, so that
    an update that would print it again is left out: one whose only change is in its evidence (a test statistic,
    ``z`` 94 then 956 over the whole run) read as the same line twice. JSON lines keep every update (its fields
    changed)."""

    def __init__(self) -> None:
        self._said: dict[tuple[str, str | None, str | None], str] = {}

    def repeated(self, event: Event, line: str) -> bool:
        """Whether ``event``, a ``finding`` printed as ``line`` (its words less ``update``), is an update whose line
        is the one printed last for its finding (``Finding.key``); remembers ``line`` as printed otherwise."""
        if event.kind != "finding":
            return False
        d = event.data
        key = Finding(d["kind"], d["severity"], d["message"], d["role"], d["onset_step"], d.get("evidence") or {}).key
        if d.get("update") and self._said.get(key) == line:
            return True
        self._said[key] = line
        return False


def _said_at_end(f: Finding) -> bool:
    """A process that has not closed its writer while none is found killed (``writer_not_closed`` as ``info``):
    a run followed is being written, so it is said only when the follow stops before the run finished (idle,
    a timeout), where it tells which process did not close (killed?). The ``warning`` one, a process stopped
    behind those that closed, is said at once."""
    return f.evidence.get("problem_kind") == "writer_not_closed" and f.severity == "info"


def _first_line(exc: BaseException) -> str:
    """An error's first line (polars adds a page of hints below it), or its type's name."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _modified(stamp: tuple | None, default: float) -> float:
    """A local file's modification time from its listing stamp (``listing.local_stamp``), else ``default``."""
    if stamp is not None and len(stamp) == 4 and isinstance(stamp[1], int):
        return stamp[1] / 1e9
    return default


class _Job:
    """One check on a daemon thread (a pool's worker would keep the process alive after ``q``)."""

    def __init__(self, fn: Callable[[], tuple[list[Finding], list[str], str | UsageError | None, float]]) -> None:
        self.done = threading.Event()
        self.result: tuple[list[Finding], list[str], str | UsageError | None, float] = ([], [], "not finished", 0.0)
        self._fn = fn
        threading.Thread(target=self._run, name="runlog-doctor", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # noqa: BLE001  (a bug in a check, a panic in polars (a BaseException):
            # reported on the screen, never a traceback)
            self.result = ([], [], f"internal error: {type(exc).__name__}: {exc}", 0.0)
        finally:
            self.done.set()
