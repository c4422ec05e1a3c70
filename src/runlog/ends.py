"""Writer state files: whether each process that writes a native run is still writing, closed its ``RunWriter``,
or stopped without closing it (killed).

A ``RunWriter`` writes ``.writer.p{process}.json`` at the run's root when it opens (``"state": "open"``) and
again when it closes (``"state": "closed"``: how it ended, the last step of each split it has files of, its own
error), and its manifest says so (``"writer": {"state_files": true}``) (``writer/run_writer.py``). So a run
whose writer writes them tells "finished" from "killed, or still writing", and a process that opened but has
not written a file yet is known too; runs written otherwise (Flink, TRL, an older runlog) tell nothing, and
nothing is claimed of them. A closed process whose files end before the last step it says it wrote is
incomplete (a copy in progress, files deleted). docs/format.md, "Writer state files".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .storage import ObjectPath, read_bytes

STATE_RE = re.compile(r"^\.writer\.p(\d+)\.json$")
HOWS = ("close", "exception", "exit")
SHOWN = 200  # characters of an exception's or an error's text in one-line summaries
END_GRACE_S = 120.0  # a process behind the others is "killed" only this long after the last of them closed


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= SHOWN else text[: SHOWN - 1] + "…"


@dataclass(frozen=True)
class WriterState:
    """One process's state file, or why it could not be read (``problem``). ``mtime``: when the file was last
    written, by the storage's clock (None where the listing does not tell). ``newer``: the file read is not the
    version the run's listing saw (rewritten since: a writer that closed while the run was read), so what it
    says cannot be compared with the files listed before it."""

    process: int
    path: str
    state: str | None = None  # open | closed
    ended: str | None = None
    how: str | None = None  # close: called; exception: the ``with`` block raised; exit: at program exit
    exception: str | None = None
    error: str | None = None  # the writer's own failure: what it had not written is lost
    last_step: dict[str, int] = field(default_factory=dict)
    last_scalar_step: int | None = None
    rows_written: int | None = None
    problem: str | None = None
    mtime: float | None = None
    newer: bool = False

    @property
    def closed(self) -> bool:
        return self.state == "closed" and self.problem is None

    def describe(self) -> str:
        """``process 1 closed (2026-12-06T02:05:50Z; last step 31 train, 24 eval)``."""
        if self.problem is not None:
            return f"process {self.process}: state file unreadable ({self.problem})"
        if not self.closed:
            return f"process {self.process} open (still writing, or killed)"
        verb = {"close": "closed", "exception": "closed after an exception", "exit": "closed at program exit"}
        text = f"process {self.process} {verb.get(self.how or '', 'closed')}"
        steps = ", ".join(f"{s} {k}" for k, s in self.last_step.items())
        said = [x for x in (self.ended, f"last step {steps}" if steps else None) if x]
        if said:
            text += f" ({'; '.join(said)})"
        return text

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("mtime", "newer")}


def _local_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """As ``listing.local_stamp`` (not imported: the listing imports the layouts, which must not import this)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _read_local(path: Any, stamp: Any) -> tuple[bytes, float, bool]:
    """A local state file's bytes, its modification time, and whether it is not the version ``stamp`` (the
    listing's) names. Read through one descriptor: the writer replaces the file whole (``os.replace``), so the
    bytes and the times are of one version."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        data = fh.read()
    newer = isinstance(stamp, tuple) and len(stamp) == 4 and _local_stamp(st) != stamp
    return data, st.st_mtime_ns / 1e9, newer


def read_state(process: int, rel: str, path: Any, mtime: float | None = None, stamp: Any = None) -> WriterState:
    """The state file at ``path`` (a local path or an object-store path); never raises. ``stamp``: the
    listing's stamp of it: a local file no longer that version is read as it is now, marked ``newer``
    (its modification time then the new version's)."""
    newer = False
    try:
        if stamp is not None and not isinstance(path, ObjectPath):
            raw, now, newer = _read_local(path, stamp)
            mtime = now if newer else mtime
        else:
            raw = read_bytes(path)
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        return WriterState(process, rel, problem=f"{type(exc).__name__}: {str(exc)[:200]}", mtime=mtime, newer=newer)
    if not isinstance(data, dict):
        return WriterState(process, rel, problem="not a JSON object", mtime=mtime, newer=newer)
    steps = data.get("last_step")
    last = {str(k): v for k, v in steps.items() if type(v) is int} if isinstance(steps, dict) else {}

    def text(key: str) -> str | None:
        v = data.get(key)
        return v if isinstance(v, str) else None

    def integer(key: str) -> int | None:
        v = data.get(key)
        return v if type(v) is int else None

    how, state = text("how"), text("state")
    return WriterState(
        process,
        rel,
        state=state if state in ("open", "closed") else None,
        ended=text("ended"),
        how=how if how in HOWS else None,
        exception=text("exception"),
        error=text("error"),
        last_step=last,
        last_scalar_step=integer("last_scalar_step"),
        rows_written=integer("rows_written"),
        problem=None if state in ("open", "closed") else f"no state 'open' or 'closed' ({state!r})",
        mtime=mtime,
        newer=newer,
    )


@dataclass(frozen=True)
class Holdings:
    """What a run's files hold of each process: the last step of each split among its readable sample files,
    and the last step of its scalars (None: no readable scalars file). ``unread_samples``: the last step of each
    split among its sample files here that could not be read (by their names), and ``unread_scalars`` the
    processes with a scalars file here that could not be read: each is that file's error, not a file deleted."""

    samples: dict[int, dict[str, int]] = field(default_factory=dict)
    scalars: dict[int, int | None] = field(default_factory=dict)
    unread_samples: dict[int, dict[str, int]] = field(default_factory=dict)
    unread_scalars: frozenset[int] = frozenset()

    @property
    def processes(self) -> set[int]:
        return set(self.samples) | set(self.scalars)


@dataclass(frozen=True)
class EndState:
    """What the state files of a run say, against what its files hold. ``expected``: its manifest says its writer
    writes them (otherwise a missing one means nothing)."""

    expected: bool
    states: dict[int, WriterState]
    holdings: Holdings
    # (files, bytes) below ``RUN/.superseded/``: what resumed writers took out of the run and put aside (never
    # read); None where it was not looked for (an object store, a live view) or there is none.
    superseded: tuple[int, int] | None = None
    # Processes whose writer holds its lock right now (a local run: ``locks.held_now``): open, so not killed
    # however far behind the others they are (a process not in lockstep with the others, still writing).
    alive: frozenset[int] = frozenset()

    @property
    def known(self) -> bool:
        """Whether the state files say anything: the writer writes them, or some are there."""
        return self.expected or bool(self.states)

    @property
    def processes(self) -> list[int]:
        """Every process known to write the run: by its state file, or by its files."""
        return sorted(set(self.states) | self.holdings.processes)

    @property
    def missing(self) -> list[int]:
        """Processes that have not closed their writer: still writing, or killed (or unreadable state)."""
        return [p for p in self.processes if not (p in self.states and self.states[p].closed)] if self.known else []

    @property
    def incomplete(self) -> list[tuple[int, str, int | None, int]]:
        """(process, split or ``scalars``, its last step in the files or None, the last step its state says) of
        each closed process whose files end before what it wrote: a copy in progress, files deleted. Not of a
        state rewritten since the run was listed (``WriterState.newer``): the files its writer published before
        it closed may be newer than the listing too (a writer that closed while the run was read). Nor where the
        files that would hold the rest are here but unreadable (``Holdings.unread_samples``, ``unread_scalars``):
        that is their error, said of them, not a copy in part."""
        out: list[tuple[int, str, int | None, int]] = []
        for p, s in sorted(self.states.items()):
            if not s.closed or s.newer:
                continue
            have = self.holdings.samples.get(p, {})
            unread = self.holdings.unread_samples.get(p, {})
            for split, last in s.last_step.items():
                if max(have.get(split, -1), unread.get(split, -1)) < last:
                    out.append((p, split, have.get(split), last))
            if s.last_scalar_step is not None and p not in self.holdings.unread_scalars:
                mine = self.holdings.scalars.get(p)
                if mine is None or mine < s.last_scalar_step:
                    out.append((p, "scalars", mine, s.last_scalar_step))
        return out

    @property
    def finished(self) -> bool:
        """Every process known closed its writer (at least one did), and its files hold what it wrote (not
        known of a state rewritten since the listing: read again, it is)."""
        newer = any(s.newer for s in self.states.values())
        return self.known and bool(self.states) and not self.missing and not self.incomplete and not newer

    def behind(self) -> dict[int, str]:
        """Each process that has not closed while others have, and where it stopped behind them: on the splits it
        writes (a process that writes no eval is not behind on eval) or on its scalars (``train: its last step
        5, theirs 11``; empty where it is not behind)."""
        closed = {p: st for p, st in self.states.items() if st.closed}
        if not closed:
            return {}
        last: dict[str, int] = {}
        for st in closed.values():
            for split, step in st.last_step.items():
                last[split] = max(step, last.get(split, step))
        last_scalar = max(
            (st.last_scalar_step for st in closed.values() if st.last_scalar_step is not None), default=None
        )
        out = {}
        for p in self.missing:
            mine = self.holdings.samples.get(p, {})
            where = [
                f"{sp}: its last step {mine[sp]}, theirs {st}"
                for sp, st in last.items()
                if sp in mine and mine[sp] < st
            ]
            scalars = self.holdings.scalars.get(p)
            if last_scalar is not None and scalars is not None and scalars < last_scalar:
                where.append(f"scalars: its last step {scalars}, theirs {last_scalar}")
            out[p] = "; ".join(where)
        return out

    def settled(self, now: float) -> bool:
        """Whether the processes that closed did so ``END_GRACE_S`` or more before ``now``, by the state files'
        modification times (the storage's clock; a writer's own ``clock=`` may be any time), else by the time
        they say they closed."""
        from datetime import datetime, timezone

        times = []
        for st in self.states.values():
            if not st.closed:
                continue
            if st.mtime is not None:
                times.append(st.mtime)
                continue
            try:
                ended = datetime.strptime(st.ended or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                continue
            times.append(ended.timestamp())
        return bool(times) and now - max(times) >= END_GRACE_S

    def stopped_behind(self, now: float) -> dict[int, str]:
        """``behind``'s processes that are behind, once the others closed ``END_GRACE_S`` ago (``settled``):
        killed, their samples of the later steps never written. What doctor's ``writer_not_closed`` warns of and
        inspect's verdict counts (``stopped_message``)."""
        if not self.settled(now):
            return {}
        return {p: where for p, where in self.behind().items() if where and p not in self.alive}

    def stopped_message(self, process: int, where: str) -> str:
        """``process 1 did not close its writer and stopped behind process 0 (train: ...): killed?``."""
        names = ", ".join(str(p) for p, st in sorted(self.states.items()) if st.closed)
        return f"process {process} did not close its writer and stopped behind process {names} ({where}): killed?"

    def summary(self) -> str:
        """One line for ``inspect``: ``closed by every process (0, 1)`` or what is missing."""
        if not self.known:
            return "no writer state files (not written by runlog's RunWriter): finished or not cannot be told"
        if not self.processes:
            return "no process has opened a writer here yet"
        parts = []
        missing = self.missing
        closed = [p for p in self.processes if p not in missing]
        if missing:
            # A process whose writer holds its lock now is writing; of the others it cannot be told (a lock is
            # only known on a local run).
            writing = [p for p in missing if p in self.alive]
            unknown = [p for p in missing if p not in self.alive]
            said = []
            if writing:
                said.append(f"process {', '.join(map(str, writing))} still writing (its writer is open)")
            if unknown:
                said.append(f"not closed by process {', '.join(map(str, unknown))} (still writing, or killed)")
            text = "; ".join(said)
            parts.append(text + (f"; closed by process {', '.join(map(str, closed))}" if closed else ""))
        else:
            parts.append(f"closed by every process ({', '.join(map(str, closed))})")
        for p, what, have, last in self.incomplete[:4]:
            held = "none" if have is None else f"step {have}"
            parts.append(f"process {p} wrote {what} up to step {last}, its files here hold {held} (copied in part?)")
        late = [p for p, s in sorted(self.states.items()) if s.closed and s.newer]
        if late:
            parts.append(
                f"process {', '.join(map(str, late))} closed while the run was read (its files were not checked "
                "against what it wrote: inspect again)"
            )
        odd = [s for s in self.states.values() if s.closed and (s.how != "close" or s.error)]
        for s in odd[:4]:
            extra = f"; the trainer raised {_cut(s.exception)}" if s.exception else ""
            extra += f"; the writer had failed: {_cut(s.error)}" if s.error else ""
            parts.append(s.describe() + extra)
        if self.superseded is not None:
            files, size = self.superseded
            parts.append(
                f"a resume put aside {files:,} file(s), {size:,} bytes, in .superseded/ (not read; not in the bytes "
                "above)"
            )
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "finished": self.finished,
            "processes": self.processes,
            "missing": self.missing,
            "incomplete": [
                {"process": p, "what": w, "files_last_step": h, "last_step": last} for p, w, h, last in self.incomplete
            ],
            "states": [s.as_json() for s in sorted(self.states.values(), key=lambda s: s.process)],
            "superseded": None
            if self.superseded is None
            else dict(zip(("files", "bytes"), self.superseded, strict=True)),
        }


def mtime_of(stamp: Any) -> float | None:
    """The modification time in a listing's stamp (``listing.local_stamp``: size, mtime_ns, ...), else None."""
    if isinstance(stamp, tuple) and len(stamp) == 4 and all(isinstance(x, int) for x in stamp):
        return stamp[1] / 1e9
    return None


def expects_states(manifest: dict[str, Any] | None) -> bool:
    """Whether the run's manifest says its writer writes state files (``"writer": {"state_files": true}``)."""
    writer = (manifest or {}).get("writer")
    return isinstance(writer, dict) and writer.get("state_files") is True


WRITER_FAILED = "writer_failed"  # a run problem (an error): a state file says its writer failed


def failure_message(st: WriterState) -> str:
    """The run problem's words for a writer that failed (``WRITER_FAILED``)."""
    return f"the writer of process {st.process} failed: {st.error}; what it had not written when it failed is lost"


def read_states(files: dict[int, tuple[str, Any, Any]]) -> dict[int, WriterState]:
    """``files``: process -> (run-relative path, path, listing stamp) of each state file listed. A local one
    rewritten since it was listed is read as it is now, marked ``newer``."""
    return {p: read_state(p, rel, path, mtime_of(stamp), stamp) for p, (rel, path, stamp) in sorted(files.items())}


def end_state(
    manifest: dict[str, Any] | None,
    files: dict[int, tuple[str, Any, Any]],
    holdings: Holdings,
    superseded: tuple[int, int] | None = None,
    alive: Callable[[int], bool] | None = None,
) -> EndState:
    """What the state files ``files`` (as ``read_states`` takes them) say against ``holdings``. ``alive``: asked
    of each process that has not closed, whether its writer is open now (holds its lock)."""
    states = read_states(files)
    open_now = frozenset(p for p, st in states.items() if not st.closed and alive is not None and alive(p))
    return EndState(expects_states(manifest), states, holdings, superseded, open_now)


def holdings_of(infos: Any) -> Holdings:
    """``Holdings`` of these ``FileInfo``s: what the readable ones hold, and what the unreadable ones are named.
    A scalars file of some bytes and no record is one that could not be read (its every line is an error, or
    the file itself: ``cannot read file``), not one its writer left empty."""
    samples: dict[int, dict[str, int]] = {}
    scalars: dict[int, int | None] = {}
    unread_samples: dict[int, dict[str, int]] = {}
    unread_scalars: set[int] = set()
    for f in infos:
        if f is None or f.process is None:
            continue
        if f.kind == "scalars" and (not f.readable or (not f.rows and f.bytes)):
            unread_scalars.add(f.process)
            continue
        if not f.readable:
            if f.kind == "samples" and f.split is not None:
                mine = unread_samples.setdefault(f.process, {})
                for step in f.all_steps():
                    mine[f.split] = max(step, mine.get(f.split, step))
            continue
        if f.kind == "samples":
            mine = samples.setdefault(f.process, {})
            if f.split is not None:
                for step in f.all_steps():
                    mine[f.split] = max(step, mine.get(f.split, step))
        elif f.kind == "scalars":
            steps = list(f.all_steps())
            last = max(steps) if steps else None
            old = scalars.get(f.process)
            scalars[f.process] = last if old is None else old if last is None else max(old, last)
    return Holdings(samples, scalars, unread_samples, frozenset(unread_scalars))


__all__ = [
    "END_GRACE_S",
    "WRITER_FAILED",
    "STATE_RE",
    "EndState",
    "Holdings",
    "WriterState",
    "end_state",
    "expects_states",
    "failure_message",
    "holdings_of",
    "read_state",
    "read_states",
]
