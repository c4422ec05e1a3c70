"""Writer end markers: whether each process that wrote a native run closed its ``RunWriter``.

A ``RunWriter`` writes ``.end.p{process}.json`` at the run's root when it closes (``writer/run_writer.py``), and
its manifest says so (``"writer": {"end_markers": true}``). A process killed before it closed leaves none, so a
run whose writer writes markers tells "finished" from "killed, or still writing"; runs written otherwise (Flink,
TRL, an older runlog) tell nothing, and nothing is claimed of them. docs/format.md, "End markers".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .storage import read_bytes

END_RE = re.compile(r"^\.end\.p(\d+)\.json$")
HOWS = ("close", "exception", "exit")


@dataclass(frozen=True)
class WriterEnd:
    """One process's end marker, or why it could not be read (``problem``)."""

    process: int
    path: str
    ended: str | None = None
    how: str | None = None  # close: called; exception: the ``with`` block raised; exit: never called, the program ended
    exception: str | None = None
    error: str | None = None  # the writer's own failure: what it had not written is lost
    last_step: dict[str, int] = field(default_factory=dict)
    last_scalar_step: int | None = None
    rows_written: int | None = None
    problem: str | None = None

    def describe(self) -> str:
        """``process 1 closed (2026-12-06T02:05:50Z; last step 31 train, 24 eval)``."""
        if self.problem is not None:
            return f"process {self.process}: end marker unreadable ({self.problem})"
        verb = {"close": "closed", "exception": "closed after an exception", "exit": "closed at program exit"}
        text = f"process {self.process} {verb.get(self.how or '', 'ended')}"
        steps = ", ".join(f"{s} {k}" for k, s in self.last_step.items())
        said = [x for x in (self.ended, f"last step {steps}" if steps else None) if x]
        if said:
            text += f" ({'; '.join(said)})"
        if self.exception:
            text += f"; the trainer raised {self.exception}"
        if self.error:
            text += f"; the writer had failed: {self.error}"
        return text


def read_end(process: int, rel: str, path: Any) -> WriterEnd:
    """The marker at ``path`` (a local path or an object-store path); never raises."""
    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError) as exc:
        return WriterEnd(process, rel, problem=f"{type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return WriterEnd(process, rel, problem="not a JSON object")
    steps = data.get("last_step")
    last = {str(k): v for k, v in steps.items() if type(v) is int} if isinstance(steps, dict) else {}

    def text(key: str) -> str | None:
        v = data.get(key)
        return v if isinstance(v, str) else None

    def integer(key: str) -> int | None:
        v = data.get(key)
        return v if type(v) is int else None

    how = text("how")
    return WriterEnd(
        process,
        rel,
        ended=text("ended"),
        how=how if how in HOWS else None,
        exception=text("exception"),
        error=text("error"),
        last_step=last,
        last_scalar_step=integer("last_scalar_step"),
        rows_written=integer("rows_written"),
    )


@dataclass(frozen=True)
class EndState:
    """What the markers of a run say. ``expected``: its manifest says its writer writes them (otherwise a missing
    marker means nothing). ``processes``: the processes whose files the run holds."""

    expected: bool
    ends: dict[int, WriterEnd]
    processes: frozenset[int]

    @property
    def known(self) -> bool:
        """Whether the markers say anything: the writer writes them, or some are there."""
        return self.expected or bool(self.ends)

    @property
    def missing(self) -> list[int]:
        """Processes that wrote files and left no marker: killed, or still writing."""
        return sorted(self.processes - set(self.ends)) if self.known else []

    @property
    def finished(self) -> bool:
        """Every process that wrote files closed its writer (and at least one did)."""
        return self.known and bool(self.ends) and not self.missing

    def summary(self) -> str:
        """One line for ``inspect``: ``closed by every process (0, 1)`` or what is missing."""
        if not self.known:
            return "no end markers (not written by runlog's RunWriter): finished or not cannot be told"
        if self.finished:
            procs = ", ".join(map(str, sorted(self.ends)))
            hows = {e.how for e in self.ends.values()}
            text = f"closed by every process ({procs})"
            if hows - {"close"}:
                text += ": " + "; ".join(e.describe() for e in self.ends.values() if e.how != "close")
            return text
        missing = ", ".join(map(str, self.missing))
        closed = ", ".join(map(str, sorted(self.ends)))
        text = f"not closed by process {missing} (killed, or still writing)"
        return text + (f"; closed by process {closed}" if closed else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "finished": self.finished,
            "missing": self.missing,
            "ends": [e.__dict__ for e in sorted(self.ends.values(), key=lambda e: e.process)],
        }


def end_state(manifest: dict[str, Any] | None, markers: dict[int, tuple[str, Any]], processes: set[int]) -> EndState:
    """``markers``: process -> (run-relative path, path) of each marker listed."""
    writer = (manifest or {}).get("writer")
    expected = isinstance(writer, dict) and writer.get("end_markers") is True
    ends = {p: read_end(p, rel, path) for p, (rel, path) in sorted(markers.items())}
    return EndState(expected, ends, frozenset(processes))


__all__ = ["END_RE", "EndState", "WriterEnd", "end_state", "read_end"]
