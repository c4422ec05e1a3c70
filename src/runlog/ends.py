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
import re
from dataclasses import dataclass, field
from typing import Any

from .storage import read_bytes

STATE_RE = re.compile(r"^\.writer\.p(\d+)\.json$")
HOWS = ("close", "exception", "exit")
SHOWN = 200  # characters of an exception's or an error's text in one-line summaries


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= SHOWN else text[: SHOWN - 1] + "…"


@dataclass(frozen=True)
class WriterState:
    """One process's state file, or why it could not be read (``problem``). ``mtime``: when the file was last
    written, by the storage's clock (None where the listing does not tell)."""

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
        return {k: v for k, v in self.__dict__.items() if k != "mtime"}


def read_state(process: int, rel: str, path: Any, mtime: float | None = None) -> WriterState:
    """The state file at ``path`` (a local path or an object-store path); never raises."""
    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError) as exc:
        return WriterState(process, rel, problem=f"{type(exc).__name__}: {str(exc)[:200]}", mtime=mtime)
    if not isinstance(data, dict):
        return WriterState(process, rel, problem="not a JSON object", mtime=mtime)
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
    )


@dataclass(frozen=True)
class Holdings:
    """What a run's files hold of each process: the last step of each split among its readable sample files,
    and the last step of its scalars (None: no readable scalars file)."""

    samples: dict[int, dict[str, int]] = field(default_factory=dict)
    scalars: dict[int, int | None] = field(default_factory=dict)

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
        each closed process whose files end before what it wrote: a copy in progress, files deleted."""
        out: list[tuple[int, str, int | None, int]] = []
        for p, s in sorted(self.states.items()):
            if not s.closed:
                continue
            have = self.holdings.samples.get(p, {})
            for split, last in s.last_step.items():
                if have.get(split, -1) < last:
                    out.append((p, split, have.get(split), last))
            if s.last_scalar_step is not None:
                mine = self.holdings.scalars.get(p)
                if mine is None or mine < s.last_scalar_step:
                    out.append((p, "scalars", mine, s.last_scalar_step))
        return out

    @property
    def finished(self) -> bool:
        """Every process known closed its writer (at least one did), and its files hold what it wrote."""
        return self.known and bool(self.states) and not self.missing and not self.incomplete

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
            text = f"not closed by process {', '.join(map(str, missing))} (still writing, or killed)"
            parts.append(text + (f"; closed by process {', '.join(map(str, closed))}" if closed else ""))
        else:
            parts.append(f"closed by every process ({', '.join(map(str, closed))})")
        for p, what, have, last in self.incomplete[:4]:
            held = "none" if have is None else f"step {have}"
            parts.append(f"process {p} wrote {what} up to step {last}, its files here hold {held} (copied in part?)")
        odd = [s for s in self.states.values() if s.closed and (s.how != "close" or s.error)]
        for s in odd[:4]:
            extra = f"; the trainer raised {_cut(s.exception)}" if s.exception else ""
            extra += f"; the writer had failed: {_cut(s.error)}" if s.error else ""
            parts.append(s.describe() + extra)
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


def read_states(files: dict[int, tuple[str, Any, Any]]) -> dict[int, WriterState]:
    """``files``: process -> (run-relative path, path, listing stamp) of each state file listed."""
    return {p: read_state(p, rel, path, mtime_of(stamp)) for p, (rel, path, stamp) in sorted(files.items())}


def end_state(manifest: dict[str, Any] | None, files: dict[int, tuple[str, Any, Any]], holdings: Holdings) -> EndState:
    """What the state files ``files`` (as ``read_states`` takes them) say against ``holdings``."""
    return EndState(expects_states(manifest), read_states(files), holdings)


def holdings_of(infos: Any) -> Holdings:
    """``Holdings`` of these ``FileInfo``s (the readable ones)."""
    samples: dict[int, dict[str, int]] = {}
    scalars: dict[int, int | None] = {}
    for f in infos:
        if f is None or f.process is None or not f.readable:
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
    return Holdings(samples, scalars)


__all__ = [
    "STATE_RE",
    "EndState",
    "Holdings",
    "WriterState",
    "end_state",
    "expects_states",
    "holdings_of",
    "read_state",
    "read_states",
]
