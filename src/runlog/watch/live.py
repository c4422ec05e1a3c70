"""The live state of a run being written, kept up to date from what changed since the last poll.

``LiveRun.update`` takes one listing (``runlog.watch.poll``) and opens only the files that are new or changed
(plus the manifest, which readers need): each file's probe (steps, rows, problems) is kept per file version,
and only the steps those files hold are summarised again (``summarize`` by step and role, so each step's
figures equal a cold read's). What changed comes back as ``Event``s: a new (or updated) step, a problem that
appeared or went away, a note.

A file that cannot be read right after it changed may still be being written (a copy in progress): it is
retried on every poll, and only reported as a problem once it has stayed unreadable and unchanged for
``settle`` seconds. The same holds for a gap between steps (an object store may list a later upload first)
and for a temporary file left behind (a writer killed mid-step).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..analysis.doctor import missing_steps
from ..analysis.filters import Filters, StepRange
from ..analysis.inspect import gaps_without, step_gaps
from ..analysis.series import default_split
from ..ends import EndState, WriterState, expects_states, holdings_of, read_states
from ..errors import (
    DataError,
    RunlogError,
    RunNotFoundError,
    SeveralRunsError,
    UnknownLayoutError,
    UsageError,
    did_you_mean,
)
from ..formats.base import UNREADABLE, WARNING, FileInfo, Problem
from ..formats.common import LineProblem, StillWrittenError, live_reads
from ..formats.common import step_in_name as _step_in_name  # its old name here (tests import it)
from ..run import CHANGED, GONE, Run, in_flight, read_failures
from .poll import Listing, Version, diff, is_state_file

if TYPE_CHECKING:
    from ..storage import StorageOptions

RATE_WINDOW_S = 120.0
TORN_LAST_LINE = "torn last line"  # in the warning of ``formats.common.read_jsonl`` for a line being written
TORN = "torn_line"  # the problem kind of a torn last line (its issue key beside the file's other problems)


@dataclass
class RoleStep:
    """One role's figures at one step (``summarize``'s ``reward_mean``, ``kl_mean``, ``reward_count``,
    ``reward_nan``): the mean and the count leave NaN rewards out, ``nan`` counts them."""

    reward_mean: float | None
    kl_mean: float | None
    count: int
    nan: int = 0


@dataclass
class StepStats:
    step: int
    rows: int
    roles: dict[str | None, RoleStep]
    arrived: float  # unix time its newest file was written (local runs) or first listed

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rows": self.rows,
            "roles": [
                {
                    "role": r,
                    "reward_mean": _finite(v.reward_mean),
                    "kl_mean": _finite(v.kl_mean),
                    "count": v.count,
                    "reward_nan": v.nan,
                }
                for r, v in self.roles.items()
            ],
        }


@dataclass
class FileRecord:
    """What is known of one listed file: its version, when that version was first listed, and its probe."""

    version: Version
    listed_at: float
    info: FileInfo | None = None
    pending: bool = False  # unreadable right after a change: retried until it settles
    initial: bool = False  # there at the first listing: written before the watch began, when is not seen
    noted: bool = False  # "incomplete; retrying" was said of it


@dataclass
class Issue:
    """A problem as the live view shows it: a file problem, a gap, a leftover temporary file."""

    kind: str
    path: str
    message: str
    onset_step: int | None
    severity: str  # error | warning

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "message": self.message,
            "onset_step": self.onset_step,
            "severity": self.severity,
        }


@dataclass
class Event:
    """Something that changed: ``step`` (new or ``update``), ``problem``, ``resolved``, ``note``, ``finding``,
    ``withdrawn`` (a finding that no longer holds at the end: ``DoctorWatch.settle_said``), ``end``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **self.data}


class RunGoneError(Exception):
    """Every file of the run disappeared, or its folder did."""


class LiveRun:
    """The state of one run (one split) as it grows; see the module's docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        split: str | None = None,
        roles: Sequence[str] = (),
        layout: str | None = None,
        storage_options: StorageOptions | None = None,
        settle: float = 6.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.split_option = split
        self.split: str | None = split
        self.role_filter = tuple(roles)
        self.layout = layout
        self.storage_options = storage_options
        self.settle = settle
        self.clock = clock
        self.files: dict[str, FileRecord] = {}
        self.temp: dict[str, FileRecord] = {}
        self.steps: dict[int, StepStats] = {}
        # What the ``step`` events said of each step (so that a step summarised again, or back after it was
        # withdrawn, is an ``update``), and the steps a ``removed`` event withdrew.
        self._shown: dict[int, dict[str, Any]] = {}
        self._withdrawn: set[int] = set()
        self.issues: dict[tuple[str, str], Issue] = {}
        self._waiting: dict[tuple[str, str], tuple[float, Issue]] = {}  # seen, not yet settled
        self._torn: dict[str, Issue] = {}  # files whose last line is still being written, by path
        # Files whose footer is intact and whose data a read could not decode (a corrupt page), by path: a
        # problem once they have stayed so for ``settle`` seconds (``_summarised``).
        self._bad_pages: dict[str, Issue] = {}
        self.name: str = os.path.basename(str(path).rstrip("/")) or str(path)
        self.role_order: list[str] = []
        self._primed = False  # some file of the run has been read
        self._said_waiting = False  # "waiting for the run's first data" was said (its files tell no run yet)
        self._listed: tuple[Listing, Listing | None] | None = None  # the last listing (``settle_all`` reads it again)
        # ``--split`` was checked against the splits of the run's sample files (there were some to check it by).
        self._split_checked = split is None
        self.polls = 0
        self.last_change: float | None = None
        self.changed = False  # the last update's listing differed from the one before
        self._last_run: Run | None = None
        self._said_scalars_only = False
        self._scalars_only_since: float | None = None  # when the run was first seen holding scalars only
        # Steps whose read failed (a file rewritten while it was read): summarised again at the next poll; and
        # the last such failure said (a note, once).
        self._retry: set[int] = set()
        self._said_failure: str | None = None
        # Writer state files (``runlog.ends``): their listed versions, what they say, and whether the state
        # they give was said already (an ``ended`` event).
        self._end_versions: Listing = {}
        self._ends_listed: Listing = {}  # the state files of the last listing (one that changed is a change)
        self._states: dict[int, WriterState] = {}
        self._end_manifest: dict[str, Any] | None = None
        self.end_state: EndState | None = None
        self._ended_said: tuple[Any, ...] | None = None

    # -- the poll -------------------------------------------------------------------------------------
    def update(self, listing: Listing, temp: Listing | None = None) -> list[Event]:
        """Bring the state up to date with ``listing`` (and the temporary files ``temp``); the events. Its reads
        never memory-map a file that may still change (``formats.common.live_reads``: one truncated under the
        map killed the watch by SIGBUS)."""
        with live_reads():
            return self._update(listing, temp)

    def _update(self, listing: Listing, temp: Listing | None) -> list[Event]:
        self._listed = (listing, temp)
        now = self.clock()
        first = self.polls == 0
        self.polls += 1
        events: list[Event] = []
        # Writer state files are neither data nor temporary files: what they say is kept apart (``_ends``).
        ends = {rel: v for rel, v in listing.items() if is_state_file(rel)}
        if ends:
            listing = {rel: v for rel, v in listing.items() if rel not in ends}
        if temp:
            ends.update({rel: v for rel, v in temp.items() if is_state_file(rel)})
            temp = {rel: v for rel, v in temp.items() if not is_state_file(rel)}
        changes = diff({k: r.version for k, r in self.files.items()}, listing)
        if self.files and listing == {} and changes.removed:
            raise RunGoneError(f"{self.path}: every file of the run was deleted")
        affected, self._retry = set(self._retry), set()
        for rel in changes.removed:
            rec = self.files.pop(rel)
            affected.update(self._steps_of(rec.info))
            events += self._drop_issues(_of_path(rel))
            events.append(Event("note", {"message": f"{rel}: removed"}))
        for rel in (*changes.added, *changes.changed):
            old = self.files.get(rel)
            if old is not None:
                affected.update(self._steps_of(old.info))
            self.files[rel] = FileRecord(
                listing[rel],
                now,
                pending=old is not None and old.pending,
                initial=first,
                noted=old is not None and old.noted,
            )
        to_read = [*changes.added, *changes.changed, *(r for r, rec in self.files.items() if rec.pending)]
        if to_read and not self._primed:
            # No file of the run read yet (the first poll, or the first files that tell a layout are yet to
            # come): the whole run is opened, as at a first poll, and every file is taken from it.
            to_read = [*to_read, *self.files]
        to_read = list(dict.fromkeys(to_read))
        recomputed = False
        # State files new or changed are read by the same opening as the data (``_ends``).
        changed_ends = [rel for rel, v in ends.items() if self._end_versions.get(rel) != v]
        opened: Run | None = None
        split_at: int | None = None  # where the events of the --split check go (``_check_split``, below)
        if to_read:
            try:
                run = opened = self._open(None if not self._primed else [*to_read, *changed_ends])
            except (SeveralRunsError, UnknownLayoutError, RunNotFoundError):
                if not self._primed:
                    raise  # the path itself is wrong (several runs, a layout that does not exist): exit 2
                events += self._unmatched(to_read, now)
                run = None
            except UsageError as exc:
                if not self._primed:
                    # No run file yet (an empty log file a trainer just created, half a first line): a watch
                    # begun before the first data waits for it, as in an empty folder (said once); each file is
                    # read again when it changes. It was the end of the watch, exit 2.
                    events += self._waiting_for_data(exc, to_read)
                else:
                    # The new files alone match no layout (half a first line of a run without a manifest): held
                    # while young, then said, as when they are read beside others; never the end of the watch.
                    events += self._unmatched(to_read, now)
                run = None
            except read_failures() as exc:
                # A file changed under the probe (a panic in a reader): every file of this poll is read again
                # at the next one.
                for rel in to_read:
                    if rel in self.files:
                        self.files[rel].pending = True
                events += self._failed(exc)
                run = None
            if run is not None:
                self._last_run = run
                # The first files read (at the first poll, or later when the watch began before the run had
                # any): the run's name and roles, and the options checked against them (a misspelt --role).
                primed, self._primed = self._primed, True
                if not primed and run.manifest and run.manifest.get("name"):
                    self.name = str(run.manifest["name"])
                if not primed:
                    self.role_order = run.role_names()
                events += self._take(run, to_read, now, affected)
                events += self._choose_split(run, affected)
                events += self._summarised(run, affected, now)
                recomputed = True
                if not primed:
                    self._check_role()
                split_at = len(events)
        if affected and not recomputed and self._last_run is not None:
            # Files removed (a resumed writer took them out of the run, a file deleted by hand) and nothing new
            # read: the steps they held are summarised again from the files left, or withdrawn.
            events += self._summarised(self._last_run, affected, now)
        if self._primed:
            events += self._scalars_only_events(now)
        events += self._torn_lines(now)
        events += self._corrupt_pages(now)
        events += self._temporary(temp or {}, now)
        events += self._gaps(now)
        said_before = self._said_states()
        events += self._ends(ends, opened)
        if split_at is not None:
            # Checked once the state files of this poll are read: a run whose every writer closed has a --split
            # typo said as the error it is (exit 2) before any event of the poll is printed; checked before them,
            # the watch printed a note and the run's end on stdout, then the error.
            events[split_at:split_at] = self._check_split()
        # A state file written (a writer opened or closed) is a change of the run too: doctor checks it again. Its
        # listed version alone is not: an open writer's heartbeat touches it every 30 s, and a trainer alive but
        # hung (a deadlocked collective) would never go idle (``--idle-exit``) and have doctor re-run each time.
        self.changed = bool(changes) or set(ends) != set(self._ends_listed) or self._said_states() != said_before
        self._ends_listed = dict(ends)
        if self.changed:
            self.last_change = now
        return events

    def _said_states(self) -> dict[int, dict[str, Any]]:
        """What the writer state files read say, without when they were written (a heartbeat's touch changes only
        that)."""
        return {p: s.as_json() for p, s in self._states.items()}

    def _ends(self, ends: Listing, opened: Run | None = None) -> list[Event]:
        """Read the writer state files that are new or changed (each is read once a version), and say each
        process that closed its writer: an ``ended`` event, ``finished`` once every process known closed and
        its files here hold what it wrote, which ends ``watch`` and ``doctor --follow`` once no file is pending."""
        if ends != self._end_versions:
            changed = [rel for rel, v in ends.items() if self._end_versions.get(rel) != v]
            self._end_versions = dict(ends)
            self._states = {p: s for p, s in self._states.items() if s.path in ends and s.path not in changed}
            if changed:
                run = (
                    opened
                    if opened is not None and set(changed) <= {m[0] for m in opened.ctx.state_files.values()}
                    else None
                )
                try:
                    run = run or self._open(changed)
                except read_failures(RunlogError):  # read again at the next change; the data files count
                    run = None
                if run is not None:
                    self._states.update(read_states(run.ctx.state_files))
                    self._end_manifest = run.manifest or self._end_manifest
                else:
                    self._end_versions = {r: v for r, v in self._end_versions.items() if r not in changed}
        if self._end_manifest is None and self._last_run is not None:
            self._end_manifest = self._last_run.manifest
        holdings = holdings_of(r.info for r in self.files.values() if not r.pending)
        state = EndState(expects_states(self._end_manifest), dict(self._states), holdings)
        if state.known and state.missing:
            # A process whose writer holds its lock is writing, not killed: said as inspect says it.
            alive = frozenset(p for p in state.missing if self._writer_open(p))
            state = dataclasses.replace(state, alive=alive)
        self.end_state = state if state.known else None
        closed = tuple(sorted((p, s.ended, s.how) for p, s in state.states.items() if s.closed))
        said = (state.finished, closed)
        if not closed or said == self._ended_said:
            return []
        self._ended_said = said
        data = {"finished": state.finished, "missing": state.missing, "message": state.summary()}
        return [Event("ended", {**data, "processes": [s.as_json() for s in state.states.values() if s.closed]})]

    def _writer_open(self, process: int) -> bool:
        """Whether the writer of ``process`` holds its lock on this local run now (``Run._writer_open``; never
        known on an object store)."""
        from .. import storage
        from ..locks import held_now

        return not storage.is_url(str(self.path)) and held_now(Path(self.path), process)

    def _in_flight(self, temp: Listing) -> set[str]:
        """The temporary files of ``temp`` that a live writer is writing (``run.in_flight``, as inspect decides:
        a file named as runlog's writer names its own, whose writer holds its lock now): in flight, no leftover.
        A large step holds back the small ones behind it, their ``.tmp`` files whole and unchanged meanwhile."""
        from .. import storage

        if not temp or storage.is_url(str(self.path)):
            return set()
        live: dict[int, bool] = {}
        return {rel for rel in temp if in_flight(Path(self.path), rel, live)}

    def _as_listed(self, rel: str, version: Version) -> bool:
        """Whether the temporary file ``rel`` of a local run is still there as listed (always, on an object store).
        Asked after its writer's lock (``_in_flight``): a writer renames its file into place before it closes and
        lets go of its lock, so one that did both since the listing left a file gone (or rewritten) that the
        listing still names, no leftover (``doctor --follow --fail-on warning`` failed a healthy run at a stop)."""
        from .. import storage

        if storage.is_url(str(self.path)):
            return True
        try:
            st = os.stat(Path(self.path) / rel)
        except OSError:
            return False
        return (st.st_size, storage.local_stamp(st)) == version

    def unshown(self, steps: Iterable[int]) -> None:
        """Steps whose ``step`` events were not passed on (off a terminal, of the steps already there at the first
        poll only the latest is printed): not shown, so a later event of one is a new step (no ``update``), and
        no ``removed`` event names it."""
        for s in steps:
            self._shown.pop(s, None)
            self._withdrawn.discard(s)

    @property
    def finished(self) -> bool:
        """Every process that wrote the run closed its writer, and every file listed has been read."""
        return (
            self.end_state is not None
            and self.end_state.finished
            and not any(r.pending for r in self.files.values())
            and not self._retry
        )

    @property
    def retrying(self) -> bool:
        """Some steps' read failed at the last poll (a file rewritten while read): the next poll reads them."""
        return bool(self._retry)

    def _open(self, only: list[str] | None) -> Run | None:
        from ..run import open_run

        if only is not None:
            manifests = [r for r, rec in self.files.items() if rec.info is not None and rec.info.kind == "manifest"]
            only = list(dict.fromkeys([*manifests, *only]))
        return open_run(self.path, layout=self.layout, storage_options=self.storage_options, only=only)

    def _waiting_for_data(self, exc: UsageError, rels: list[str]) -> list[Event]:
        """The run's files tell no run yet (``exc``: ``open_run``'s "no run files found"): each is recorded as
        unread (read again once it changes), and a note says once that the watch waits."""
        for rel in rels:
            rec = self.files.get(rel)
            if rec is not None:
                rec.info, rec.pending, rec.noted = None, False, False
        if self._said_waiting:
            return []
        self._said_waiting = True
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [Event("note", {"message": f"{reason}; waiting for the run's first data"})]

    @property
    def has_data(self) -> bool:
        """Some file of the run was read (a layout told): doctor has something to check."""
        return any(r.info is not None for r in self.files.values())

    def _unmatched(self, rels: list[str], now: float) -> list[Event]:
        events: list[Event] = []
        for rel in rels:
            rec = self.files.get(rel)
            if rec is None:
                continue
            rec.info = None
            rec.pending = now - _written(rec) < self.settle
            if not rec.pending:
                events += self._set_file_issues(rel, None, [Problem(rel, WARNING, "matches no known layout; ignored")])
        return events

    def _check_role(self) -> None:
        """``--role`` must name a role of the run (a typo is a ``UsageError``, as in every command), once the
        run names its roles."""
        from ..analysis.check import RunValues, check_roles

        if self.role_filter and self.role_order:
            check_roles(RunValues(roles=self.role_order), self.role_filter)

    def _check_split(self) -> list[Event]:
        """``--split`` may name a split not written yet (eval steps come later): a note, once the run has sample
        files to tell (a watch begun before the first one checks at each poll until then: it said nothing, and a
        misspelt split ended "finished" having shown no step). But a near miss of a split the run has (``evl``)
        in a run whose every writer closed, or one that differs by case (``Eval``), is a typo, a ``UsageError``
        as in every other command ("did you mean 'eval'?"): it was a note, and exit 0 once the run finished."""
        if self._split_checked:
            return []
        infos = self._sample_infos()
        splits = sorted({f.split for f in infos if f.split})
        # A file of rows of several splits (its split None) may hold the one asked for: nothing is said then.
        mixed = any(f.split is None and f.readable for f in infos)
        if not splits and not mixed:
            return []
        self._split_checked = True
        if self.split_option not in splits and not mixed:
            have = ", ".join(splits)
            hint = did_you_mean(self.split_option or "", splits)
            # A typo only where no split can come any more (every writer closed), or where it differs from one
            # by case alone: a live run may yet write ``eval_math`` beside ``eval_gsm8k`` (a near miss), so
            # there the hint goes with the note.
            typo = f"--split {self.split_option!r}: this run has split(s) {have}{hint}"
            ended = self.end_state is not None and self.end_state.finished
            if hint and (ended or (self.split_option or "").casefold() in {x.casefold() for x in splits}):
                raise UsageError(typo)
            self._split_typo = typo if hint else None  # said as the error it is if the run finishes without it
            message = f"no step of split {self.split_option} yet (this run has: {have}){hint}"
            return [Event("note", {"message": message})]
        return []

    def split_typo_at_end(self) -> None:
        """At a ``finished`` end (every writer closed): a ``--split`` that never came and is a near miss of a
        split the run has was a typo after all (``evl``): the ``UsageError`` every command gives, exit 2."""
        typo = getattr(self, "_split_typo", None)
        if typo is not None and self.split_option not in {f.split for f in self._sample_infos()}:
            raise UsageError(typo)

    def _take(self, run: Run, read: list[str], now: float, affected: set[int]) -> list[Event]:
        """Record the probes of the files just read and their problems (the unreadable ones of a file that
        just changed are held back: it may still be being written)."""
        events: list[Event] = []
        infos = {f.path: f for f in run.files}
        by_path: dict[str, list[Any]] = {}
        for p in run.problems:
            by_path.setdefault(p.path, []).append(p)
        for rel in read:
            rec = self.files.get(rel)
            if rec is None:
                continue
            info = infos.get(rel)
            rec.info = info
            affected.update(self._steps_of(info))
            problems = by_path.pop(rel, [])
            torn = info is not None and not info.readable and any(p.kind == UNREADABLE for p in problems)
            young = now - _written(rec) < self.settle
            # A file whose first bytes do not tell its layout yet (half a first line) is held back too, silently.
            unknown = info is None and bool(problems)
            self._bad_pages.pop(rel, None)  # this version is judged afresh
            if (torn or unknown) and young:
                if torn and not rec.noted:
                    events.append(
                        Event("note", {"message": f"{rel}: incomplete (still being written?); retrying", "path": rel})
                    )
                    rec.noted = True
                rec.pending = True
                continue
            if rec.pending and rec.noted and info is not None and info.readable:
                events.append(Event("note", {"message": f"{rel}: complete now", "path": rel}))
            rec.pending = rec.noted = False
            # A JSONL line still being appended (the rest of the file is read): said only if it stays torn for
            # ``settle`` seconds, as an unreadable file is; it was a problem and "resolved" at every line.
            line = [p for p in problems if p.kind == WARNING and TORN_LAST_LINE in p.message]
            events += self._set_file_issues(rel, info, [p for p in problems if p not in line])
            self._torn.pop(rel, None)
            if line:
                self._torn[rel] = Issue(TORN, rel, line[0].message, _onset(rel, info, line[0]), "warning")
        for rel, problems in by_path.items():  # problems of files not opened (ignored, unmatched)
            if rel in self.files:
                events += self._set_file_issues(rel, infos.get(rel), problems)
        return events

    def _set_file_issues(self, rel: str, info: FileInfo | None, problems: list[Any]) -> list[Event]:
        # One issue per kind of a file: its first problem (a JSONL file's first bad line: the onset).
        current: dict[tuple[str, str], Issue] = {}
        for p in problems:
            severity = "warning" if p.kind == WARNING else "error"
            current.setdefault((rel, p.kind), Issue(p.kind, rel, p.message, _onset(rel, info, p), severity))
        events = self._drop_issues(lambda key: key[0] == rel and key not in current)
        for key, issue in current.items():
            if key not in self.issues or self.issues[key].message != issue.message:
                self.issues[key] = issue
                events.append(Event("problem", issue.as_dict()))
        return events

    def _drop_issues(self, which: Callable[[tuple[str, str]], bool]) -> list[Event]:
        gone = [k for k in self.issues if which(k)]
        self._waiting = {k: v for k, v in self._waiting.items() if not which(k)}
        return [Event("resolved", self.issues.pop(k).as_dict()) for k in gone]

    # -- steps ----------------------------------------------------------------------------------------
    def _sample_infos(self) -> list[FileInfo]:
        return [
            r.info
            for r in self.files.values()
            if r.info is not None and r.info.kind == "samples" and r.info.readable and not r.pending
        ]

    def scalars_only(self) -> list[str]:
        """The scalar files of a run that holds scalar metrics and no sample (a JaxARC or AReaL run, a native
        run before its first step's samples), which watch does not follow: its steps are the samples' (reward,
        KL). Empty for any other run. Without a word such a run showed nothing, as if it were idle."""
        infos = [r.info for r in self.files.values() if r.info is not None and not r.pending]
        if any(r.pending for r in self.files.values()) or any(i.kind == "samples" for i in infos):
            return []
        return sorted(i.path for i in infos if i.kind == "scalars" and i.readable)

    def _scalars_only_events(self, now: float) -> list[Event]:
        """``scalars_only_note`` once, when the run has held scalar metrics and no sample for ``settle`` seconds
        (since its scalar files were written, or first seen so): a writer's scalars line comes a moment before
        its first step's sample file (the encoder writes that in the background), and the note said at that
        first listing told of an ordinary run that watch "does not follow", never taken back."""
        if self._said_scalars_only:
            return []
        if not self.scalars_only():
            self._scalars_only_since = None
            return []
        if self._scalars_only_since is None:
            written = [_written(r) for r in self.files.values() if r.info is not None and r.info.kind == "scalars"]
            self._scalars_only_since = min([now, *written])
        said = self.scalars_only_note()
        if said is None or now - self._scalars_only_since < self.settle:
            return []
        self._said_scalars_only = True
        return [Event("note", {"message": said})]

    def scalars_only_final(self) -> list[Event]:
        """The note of a run of scalars only, when the watch stops before it settled (``--once``)."""
        if self._said_scalars_only or not self._primed or (said := self.scalars_only_note()) is None:
            return []
        self._said_scalars_only = True
        return [Event("note", {"message": said})]

    def scalars_only_note(self) -> str | None:
        """``scalars_only`` said in one line, or None."""
        files = self.scalars_only()
        if not files:
            return None
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        return (
            f"no sample file, only scalar metrics ({files[0]}{more}), which watch does not follow (it follows "
            "the samples' reward and KL): runlog summarize --scalars shows them"
        )

    def _steps_of(self, info: FileInfo | None) -> list[int]:
        if info is None or info.kind != "samples" or (self.split and info.split not in (None, self.split)):
            return []
        return info.all_steps()

    def _choose_split(self, run: Run, affected: set[int]) -> list[Event]:
        """The split shown: ``--split``, else the one ``doctor`` reads (``series.default_split``: ``train``, else
        the training split, not an evaluation that sorts first), so that a follow and the plain doctor it ends as
        look at one split; when it changes, every step is summarised again."""
        if self.split_option is not None:
            return []
        # A file being written (``pending``: torn, rewritten in place) keeps its split in the choice: while a
        # run's only sample file is rewritten, the split shown stays (it went to None and back, and the steps
        # shown were forgotten: step 0 was said again as a new step).
        being_written = [r.info for r in self.files.values() if r.pending and r.info is not None]
        infos = [*self._sample_infos(), *(i for i in being_written if i.kind == "samples")]
        splits = sorted({f.split for f in infos if f.split})
        choice = default_split(splits)[0] if splits else None
        if choice == self.split or (choice is None and any(r.pending for r in self.files.values())):
            return []
        previous, self.split = self.split, choice
        self.steps.clear()
        self._shown.clear()
        self._withdrawn.clear()
        affected.update(s for f in self._sample_infos() for s in self._steps_of(f))
        if not previous:
            return []
        # No split left to show (the only sample file turned out unreadable, or was removed): said so, not
        # "showing split None".
        shown = f"showing split {choice}" if choice is not None else "no split has a readable sample file now"
        return [Event("note", {"message": f"{shown} (was {previous})"})]

    def _summarised(self, run: Run, affected: set[int], now: float) -> list[Event]:
        """``_recompute``, with what its read left out sorted by why (``Run.collect`` skips a file it cannot read,
        with a problem that says why):

        - the read failed (a file rewritten while it was read: polars panics on a file that shrank, or fails on
          a page of the old version; ``StillWrittenError``): what was shown stays, every step is summarised
          again at the next poll, and such a file is read again then (``pending``); a failed read is a note
          (said once), never the end of the watch;
        - a file left out because it changed since it was listed (``run.CHANGED``, gone): it is being written.
          Only the steps it holds keep what was shown and are summarised again at the next poll, with the
          file (``pending``, one note); the other steps are shown as read;
        - a file left out whose footer is intact and that did not change (a corrupt data page): it is bad as
          it stands, no file being written. Its steps are what the other files hold (a step of no other file
          is none), and it is a problem once it has stayed so for ``settle`` seconds since it was written
          (``_bad_pages``), as an unreadable footer is: not "incomplete", and no other step waits for it."""
        readable = {id(f) for f in self._sample_infos()}
        before = (dict(self.steps), dict(self._shown), set(self._withdrawn))
        known = len(run.problems)
        failure: BaseException | None = None
        changing: list[str] = []
        raised = True  # the read failed: nothing of it is shown
        try:
            events = self._recompute(run, affected)
            raised = False
        except StillWrittenError as exc:  # rewritten since listed, or while read (``live_reads``): as a torn file
            events = []
            if exc.path in self.files:
                changing.append(exc.path)
            else:
                failure = exc
        except read_failures(DataError) as exc:
            events, failure = [], exc
        said: dict[str, Problem] = {}  # the first problem the read gave each file it left out
        for p in run.problems[known:]:
            if p.kind == UNREADABLE:
                said.setdefault(p.path, p)
        for rel, rec in self.files.items():
            if rec.info is None or id(rec.info) not in readable or rec.info.readable:
                continue
            problem = said.get(rel)
            if problem is None or problem.message.startswith((CHANGED, GONE)):
                if rel not in changing:
                    changing.append(rel)
            else:
                self._bad_pages[rel] = Issue(UNREADABLE, rel, problem.message, _onset(rel, rec.info, problem), "error")
        if failure is None and not changing:
            self._said_failure = None
            return events
        steps, shown, withdrawn = before
        # Only the steps of the files being written wait for them; the others are shown as read (all of them
        # wait when the read failed).
        held = set(affected) if raised else self._held_by(changing) & affected
        events = _without_steps(events, held)
        for s in held:
            if s in steps:
                self.steps[s] = steps[s]
            else:
                self.steps.pop(s, None)
            if s in shown:
                self._shown[s] = shown[s]
            else:
                self._shown.pop(s, None)
            if s in withdrawn:
                self._withdrawn.add(s)
            else:
                self._withdrawn.discard(s)
        self._retry.update(held)
        for rel in changing:
            rec = self.files[rel]
            rec.pending = True
            if not rec.noted:
                events.append(
                    Event("note", {"message": f"{rel}: incomplete (still being written?); retrying", "path": rel})
                )
                rec.noted = True
        if failure is not None:
            events += self._failed(failure)
        return events

    def _held_by(self, rels: Iterable[str]) -> set[int]:
        """The steps the files ``rels`` hold."""
        return {s for rel in rels if rel in self.files for s in self._steps_of(self.files[rel].info)}

    def _failed(self, exc: BaseException) -> list[Event]:
        """The note of a read that failed (retried at the next poll); said once while it fails alike."""
        # A run's failed read says the run (its reason is the message); a file's says the file.
        run_wide = isinstance(exc, DataError) and exc.reason.startswith("reading the run failed")
        text = exc.reason if isinstance(exc, DataError) and run_wide else str(exc).strip()
        reason = text.splitlines()[0][:300] if text else type(exc).__name__
        if not reason.startswith("reading the run failed"):
            reason = f"reading the run failed: {reason}"
        message = f"{reason}; retrying at the next poll"
        if message == self._said_failure:
            return []
        self._said_failure = message
        return [Event("note", {"message": message})]

    def _recompute(self, run: Run, affected: set[int]) -> list[Event]:
        """Summarise the ``affected`` steps again from every file that holds them."""
        from ..analysis.summarize import summarize

        if not affected:
            return []
        files = [f for f in self._sample_infos() if set(self._steps_of(f)) & affected]
        old = {s: self.steps.pop(s) for s in list(self.steps) if s in affected}
        events: list[Event] = []
        if files:
            # The first read is of the whole run: it answers from the partial cache (steps summarised by earlier
            # commands are not read again). Later ones hold only the files of the steps that changed, which
            # that cache would not keep (just written), and their figures are kept here.
            whole = self.polls == 1
            sub = run if whole else Run(root=run.root, files=files, ctx=run.ctx)
            steps = StepRange.parse(",".join(str(s) for s in sorted(affected))) if not whole else StepRange()
            filters = Filters(splits=(self.split,) if self.split else (), steps=steps)
            df = summarize(sub, ["step", "role"], filters=filters, split_key=False, cache=whole)
            rows = _rows_per_step(sub, files, affected, self.split)
            arrived: dict[int, float] = {}
            for f in files:
                for s in self._steps_of(f):
                    arrived[s] = max(arrived.get(s, -math.inf), self._arrival(f.path))
            for s, seen in old.items():
                if any(len(f.all_steps()) > 1 for f in files if s in self._steps_of(f)):
                    # A file of many steps (a growing JSONL) is rewritten at each step: a step seen before
                    # arrived then, not at the file's last write.
                    arrived[s] = seen.arrived
            for r in df.iter_rows(named=True):
                s = int(r["step"])
                st = self.steps.setdefault(s, StepStats(s, rows.get(s, 0), {}, arrived.get(s, self.clock())))
                role = r["role"]
                if self.role_filter and role not in self.role_filter:
                    continue
                if role is not None and role not in self.role_order:
                    self.role_order.append(role)
                st.roles[role] = RoleStep(
                    r["reward_mean"], r["kl_mean"], int(r["reward_count"] or 0), int(r.get("reward_nan") or 0)
                )
            # A step whose files hold no row (the writer's empty step: every rollout filtered out) is a step
            # all the same, with 0 rows: the summary has no row to say so. Not one whose every file the read
            # left out (a corrupt data page): nothing of it was read; its file's problem says so.
            for f in files:
                if not f.readable:
                    continue
                for s in self._steps_of(f):
                    if s in affected and s not in self.steps:
                        self.steps[s] = StepStats(s, rows.get(s, 0), {}, arrived.get(s, self.clock()))
        order: dict[str | None, int] = {r: i for i, r in enumerate(self.role_order)}
        for s in sorted(set(self.steps) & affected):
            st = self.steps[s]
            st.roles = dict(sorted(st.roles.items(), key=lambda kv: (kv[0] is None, order.get(kv[0], len(order)))))
            before, now_shown = self._shown.get(s), st.as_dict()
            rate = self.rows_per_second()
            data = {"split": self.split, **now_shown, "rows_per_s": None if rate is None else round(rate, 3)}
            if before is None:
                events.append(Event("step", data))
            elif s in self._withdrawn or before != now_shown:
                # Shown before: a late shard, a file rewritten, or a step a resumed writer wrote again (after a
                # ``removed`` event); its figures replace the earlier ones, never a second new step.
                events.append(Event("step", {**data, "update": True}))
            self._shown[s] = now_shown
            self._withdrawn.discard(s)
        # Steps shown before that no listed file holds any more (a resumed writer moved the files of the steps
        # it replays out of the run; a file deleted by hand): withdrawn, said in one event. A step whose file
        # is there but unreadable for now (being rewritten) is not withdrawn: its problem or note says it.
        held = {s for r in self.files.values() for s in self._steps_of(r.info)}
        gone = sorted(s for s in affected - held - self._withdrawn if s not in self.steps and s in self._shown)
        if gone:
            self._withdrawn.update(gone)
            events.append(Event("removed", {"split": self.split, "steps": gone}))
        return events

    def _arrival(self, rel: str) -> float:
        return _written(self.files[rel])

    # -- problems that need time to tell ----------------------------------------------------------------
    def _temporary(self, temp: Listing, now: float) -> list[Event]:
        """A temporary file that stays unchanged for ``settle`` seconds was left by a writer that stopped
        mid-file (killed?); it is a warning, which goes away with the file. One its live writer is writing
        (``_in_flight``) is none, however long it waits."""
        events: list[Event] = []
        flying = self._in_flight(temp)
        temp = {rel: v for rel, v in temp.items() if rel not in flying and self._as_listed(rel, v)}
        for rel in list(self.temp):
            if rel not in temp or self.temp[rel].version != temp[rel]:
                del self.temp[rel]
        for rel, version in temp.items():
            self.temp.setdefault(rel, FileRecord(version, now))
        events += self._drop_issues(lambda k: k[1] == "leftover_temporary" and k[0] not in self.temp)
        for rel, rec in self.temp.items():
            key = (rel, "leftover_temporary")
            issue = Issue(
                "leftover_temporary",
                rel,
                "temporary file unchanged since it was first seen: a writer stopped mid-file (killed?)",
                _step_in_name(rel),
                "warning",
            )
            events += self._after_settling(key, issue, now, _written(rec))
        return events

    def _gaps(self, now: float) -> list[Event]:
        """Missing steps between the first and the last (``inspect``'s rule: the stride of the split's steps);
        a gap is reported once it has lasted ``settle`` seconds, and resolved when its steps arrive."""
        readable = sorted({s for f in self._sample_infos() for s in self._steps_of(f)})
        known = sorted({s for r in self.files.values() for s in self._steps_of(r.info)})
        stride, gaps = step_gaps(readable, known)
        # A step whose file is there but unreadable (or still being written) is that file's problem (or note),
        # not also a gap: only the steps no file names are missing.
        gaps = gaps_without(gaps, stride, known)
        current = {(f"{self.split or ''}:{a}-{b}", "step_gap"): (a, b) for a, b in gaps}
        events = self._drop_issues(lambda k: k[1] == "step_gap" and k not in current)
        for key, (a, b) in current.items():
            # in doctor's words (``doctor.missing_steps``), so that a gap reads the same in every command
            issue = Issue("step_gap", f"split {self.split}", missing_steps([(a, b)], stride or 1), a, "warning")
            after = self.steps.get(b + stride)
            events += self._after_settling(key, issue, now, after.arrived if after is not None else now)
        return events

    def _torn_lines(self, now: float) -> list[Event]:
        """The torn last lines that held for ``settle`` seconds since their file was written."""
        return self._settled_files(self._torn, TORN, now)

    def _corrupt_pages(self, now: float) -> list[Event]:
        """The files a read left out for a corrupt data page (``_bad_pages``) that held for ``settle`` seconds
        since they were written: an ``unreadable`` problem, as ``inspect --deep`` and ``doctor`` say it."""
        return self._settled_files(self._bad_pages, UNREADABLE, now)

    def _settled_files(self, pending: dict[str, Issue], kind: str, now: float) -> list[Event]:
        """The issues of ``pending`` (by file) that held for ``settle`` seconds since their file was written; the
        entry of a file no longer listed is dropped."""
        events: list[Event] = []
        for rel, issue in list(pending.items()):
            rec = self.files.get(rel)
            if rec is None:
                del pending[rel]
                continue
            events += self._after_settling((rel, kind), issue, now, _written(rec))
        return events

    def _after_settling(self, key: tuple[str, str], issue: Issue, now: float, since: float) -> list[Event]:
        """Report ``issue`` once it has held for ``settle`` seconds since ``since`` (when its cause was written,
        where known)."""
        if key in self.issues:
            return []
        seen, _ = self._waiting.setdefault(key, (min(since, now), issue))
        if now - seen < self.settle:
            return []
        del self._waiting[key]
        self.issues[key] = issue
        return [Event("problem", issue.as_dict())]

    def settle_all(self, listing: tuple[Listing, Listing | None] | None = None) -> list[Event]:
        """At the end of a follow (``finished``, ``idle``, ``timeout``: nothing more is waited for), what is still
        waiting to settle is judged as it is now, as a cold ``inspect`` or ``doctor`` judges it: the files held
        back (torn, half a first line, rewritten while read) are read once more and said as they are (a file
        torn at the end is unreadable), and the temporary files, gaps, torn last lines and corrupt files there
        now are problems at once. They were dropped at an idle stop: ``doctor --follow --fail-on error`` passed
        a run that ended on a torn file, which a plain ``doctor`` fails.

        ``listing``: the run listed now (``Watcher.final_events``); without it, the last poll's listing is judged
        again, whose temporary files a writer may have renamed into place since (``_as_listed``)."""
        listed = listing if listing is not None else self._listed
        if listed is None:
            return []
        settle, self.settle = self.settle, -math.inf  # nothing is young any more (a clock ahead included)
        try:
            events = self.update(*listed)
        finally:
            self.settle = settle
        for key, (_, issue) in sorted(self._waiting.items()):
            self.issues[key] = issue
            events.append(Event("problem", issue.as_dict()))
        self._waiting.clear()
        return events

    # -- what the view shows ----------------------------------------------------------------------------
    @property
    def latest(self) -> StepStats | None:
        return self.steps[max(self.steps)] if self.steps else None

    def roles(self) -> list[str | None]:
        """Roles to show: ``--role`` if given, else every named role in order of appearance, then None (the
        samples without per-role data) if there are such rows."""
        present = {r for st in self.steps.values() for r in st.roles}
        if self.role_filter:
            return [r for r in self.role_filter if r in present]
        named: list[str | None] = [r for r in self.role_order if r in present]
        return named + ([None] if None in present else [])

    def series(self, role: str | None, what: str, last: int) -> list[tuple[int, float | None]]:
        """(step, value) of ``what`` (``reward_mean`` or ``kl_mean``) for ``role`` over the ``last`` steps."""
        out: list[tuple[int, float | None]] = []
        for s in sorted(self.steps)[-last:]:
            v = self.steps[s].roles.get(role)
            out.append((s, None if v is None else getattr(v, what)))
        return out

    def rows_per_second(self) -> float | None:
        """Rows written per second over the last two minutes: the rows of the steps that arrived in that
        window, after the first of them, over the time since that first one (so the rate falls when the
        writer stalls). None with fewer than two steps in the window."""
        now = self.clock()
        recent = sorted((st.arrived, st.rows) for st in self.steps.values() if st.arrived >= now - RATE_WINDOW_S)
        if len(recent) < 2 or now <= recent[0][0]:
            return None
        return sum(rows for _, rows in recent[1:]) / (now - recent[0][0])

    def newest_arrival(self) -> float | None:
        newest = max((st.arrived for st in self.steps.values()), default=None)
        return None if newest is None or math.isinf(newest) else newest

    def latest_run(self) -> Run | None:
        """The latest step's readable sample files as a ``Run`` (for its best and worst sample)."""
        st, last = self.latest, self._last_run
        if st is None or last is None:
            return None
        files = [f for f in self._sample_infos() if st.step in self._steps_of(f)]
        return Run(root=last.root, files=files, ctx=last.ctx) if files else None


def _rows_per_step(run: Run, files: list[FileInfo], steps: set[int], split: str | None) -> dict[int, int]:
    """Rows per step of ``files`` as read: a one-step file's row count from its probe, a file of several steps
    (or splits) counted per step (its rows are not spread evenly over its steps); a file the read left out
    (a corrupt data page behind an intact footer) counts none."""
    rows: dict[int, int] = {}
    files = [f for f in files if f.readable]  # a file the read left out (``Run.collect``) gave no row
    multi = [f for f in files if len(f.all_steps()) > 1 or (split is not None and f.split is None)]
    for f in files:
        if f not in multi and f.all_steps():
            s = f.all_steps()[0]
            rows[s] = rows.get(s, 0) + (f.rows or 0)
    if multi:
        part = Run(root=run.root, files=multi, ctx=run.ctx)
        keep = pl.col("step").is_in(sorted(steps))
        if split is not None:
            keep &= pl.col("split") == split
        [counts] = part.collect(lambda: [part.samples.filter(keep).group_by("step").agg(pl.len())])
        for s, n in counts.iter_rows():
            if s is not None:
                rows[int(s)] = rows.get(int(s), 0) + int(n)
    return rows


def _without_steps(events: list[Event], steps: set[int]) -> list[Event]:
    """``events`` less what they say of ``steps`` (a ``step`` event of one, and each one in a ``removed``)."""
    out = []
    for e in events:
        if e.kind == "step" and e.data["step"] in steps:
            continue
        if e.kind == "removed":
            left = [s for s in e.data["steps"] if s not in steps]
            if not left:
                continue
            e = Event("removed", {**e.data, "steps": left})
        out.append(e)
    return out


def _of_path(rel: str) -> Callable[[tuple[str, str]], bool]:
    return lambda key: key[0] == rel


def _written(rec: FileRecord) -> float:
    """When a file version was written: its modification time for a local file, else when it was first
    listed (an object store's clock is not ours). An object already there at the watch's first listing was
    not seen arriving: the store's modification time, or minus infinity (unknown: no rate, no "ago") when the
    store gives none; taken as the first listing, a finished run read as thousands of rows a second."""
    stamp = rec.version[1]
    if stamp is not None and len(stamp) == 4 and isinstance(stamp[1], int):
        return min(stamp[1] / 1e9, rec.listed_at)
    if rec.initial:
        modified = stamp[2] if stamp is not None and len(stamp) == 3 else None
        return min(float(modified), rec.listed_at) if isinstance(modified, (int, float)) else -math.inf
    return rec.listed_at


def _onset(rel: str, info: FileInfo | None, problem: Problem) -> int | None:
    """The onset step of a file's problem: a JSONL line's own (``LineProblem``: the step the line names, or the
    one before it), else the file's step, or the one its name tells."""
    if isinstance(problem, LineProblem) and problem.step is not None:
        return problem.step
    return info.step if info is not None else _step_in_name(rel)


def _finite(v: float | None) -> float | None:
    return None if v is None or v != v or v in (float("inf"), float("-inf")) else float(v)
