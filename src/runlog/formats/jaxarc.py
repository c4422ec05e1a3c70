"""JaxARC batched metrics (seed 003): ``batch_metrics.jsonl`` lines ``{"timestamp", "step", "metrics": {...}}``.

Records logged again after the step counter went back (a resumed run appending to the file replays from its
checkpoint: a step already seen, not the step of the record just before, logging a key that step holds; a record
of other keys only, an eval written after the next step's record, joins its step) are the resumed run's: they replace
the earlier records of their steps whole, so that no value of the abandoned run (an eval the resumed run did not
log) stays in the resumed timeline; said in a warning (the steps, the first line). Consecutive records of one
step (train, then eval metrics) are all kept, as a native shard's lines are: a key logged again among them keeps
its later value, said in a warning. A ``null`` metric is no value (no row), as in the other scalar readers. A
record whose ``metrics`` is not an object holds no metrics: said in a warning (count, first line)."""

from __future__ import annotations

from typing import Any

from .._lazy import pl
from .base import Candidate, FileInfo, Layout, RunContext, register
from .common import (
    coerce_step,
    flatten,
    read_jsonl,
    say_clashes,
    say_orphan_weights,
    say_stepless,
    scalars_frame,
    stepless_reason,
)


@register
class JaxArcLayout(Layout):
    name = "jaxarc"
    description = "JaxARC batch_metrics.jsonl: {timestamp, step, metrics: {...}} per line"
    priority = 70
    formats = (".jsonl",)

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix != ".jsonl":
            return False
        if cand.name == "batch_metrics.jsonl":
            return True
        first = cand.first_json
        return isinstance(first, dict) and isinstance(first.get("metrics"), dict) and "step" in first

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "jsonl", "scalars", cand.size)
        parsed = read_jsonl(cand, ctx, repeats=True)
        rows: list[tuple[int | None, float | None, dict[str, Any]]] = []
        other: set[str] = set()
        stepless: list[tuple[int, str]] = []  # (line, what it holds instead)
        clashed: list[tuple[int, str]] = []  # (line, the first key held twice)
        no_metrics: list[int] = []  # lines
        of_step: dict[int, list[int]] = {}  # step -> indices in rows of its records in the timeline read so far
        previous: int | None = None  # the step of the record just before (records without a step aside)
        resumed: dict[int, int] = {}  # step logged again after the counter went back -> the first line doing so
        again: dict[int, int] = {}  # step with a key logged again by a consecutive record -> the first such line
        late: set[int] = set()  # indices in rows of records that went back to a step without replaying it
        for rec, line in zip(parsed.records, parsed.line_numbers, strict=True):
            step = coerce_step(rec.get("step"))
            if step is None:
                stepless.append((line, stepless_reason("step", rec["step"]) if "step" in rec else "no step"))
            t = rec.get("timestamp")
            t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
            metrics = rec.get("metrics")
            other.update(k for k in rec if k not in ("step", "timestamp", "metrics"))
            clashes: list[str] = []
            flat: dict[str, Any] = {}
            if not isinstance(metrics, dict):
                no_metrics.append(line)
            else:
                flat = {k: v for k, v in flatten(metrics, clashes=clashes).items() if v is not None}  # null: none
            if step is not None:
                # The keys the step held when it was logged in order: a late record of its (an eval written after
                # the next step's record, twice: a review) is no replay of the step.
                held = set().union(*(rows[i][2].keys() for i in of_step.get(step, []) if i not in late))
                goes_back = step in of_step and step != previous
                if goes_back and flat.keys() & held:
                    # A resume: this record begins the step again (it logs a key the step holds), and the abandoned
                    # run's records of it (every key, logged again or not) are not the resumed run's. A record of
                    # other keys only (an eval of step N written after step N+1's record) joins its step (a review:
                    # taken for a resume, it deleted the step's train metrics).
                    resumed.setdefault(step, line)
                    for i in of_step.pop(step):
                        rows[i] = (step, rows[i][1], {})
                elif goes_back:
                    late.add(len(rows))
                # The records of one step in a row merge per key: a key logged again keeps its later value.
                for i in of_step.get(step, []):
                    for k in flat.keys() & rows[i][2].keys():
                        again.setdefault(step, line)
                        del rows[i][2][k]
                of_step.setdefault(step, []).append(len(rows))
                previous = step
            rows.append((step, t, flat))
            if clashes:
                clashed.append((line, clashes[0]))
        say_stepless(cand.rel, ctx, stepless)
        say_clashes(cand.rel, ctx, clashed)
        if no_metrics:
            ctx.warn(
                cand.rel,
                f"{len(no_metrics)} record(s) whose 'metrics' is not an object (null or another value; first: "
                f"line {no_metrics[0]}): no metrics read from them",
            )
        _say_steps(
            ctx,
            cand.rel,
            resumed,
            "logged again after the step counter went back (a resumed run appending to this file?; first: line {}): "
            "{}; the later records of each replace the earlier whole",
        )
        _say_steps(
            ctx,
            cand.rel,
            again,
            "with a key logged again by a following record of the step (first: line {}): {}; the later value of each "
            "such key replaces the earlier",
        )
        if other:
            ctx.note(self.name, f"{cand.rel}: top-level keys outside 'metrics' not mapped: {', '.join(sorted(other))}")
        info.frame = scalars_frame(rows, cand.rel, ctx, self.name, parsed.line_numbers)
        say_orphan_weights(info.frame, cand.rel, ctx, self.name)
        info.rows = len(parsed.records)
        info.steps = sorted({s for s, _, _ in rows if s is not None})
        return info

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [f.frame for f in files if f.readable and f.frame is not None]
        return pl.concat(frames).lazy() if frames else None


def _say_steps(ctx: RunContext, rel: str, first_line: dict[int, int], what: str) -> None:
    """One warning for the steps of ``first_line`` (step -> the first line that made it said), if any: their count,
    ``what`` filled with that first line and the steps (eight listed)."""
    if not first_line:
        return
    steps = sorted(first_line)
    listed = ", ".join(map(str, steps[:8])) + (" ..." if len(steps) > 8 else "")
    ctx.warn(rel, f"{len(steps)} step(s) " + what.format(min(first_line.values()), listed))
