"""JaxARC batched metrics (seed 003): ``batch_metrics.jsonl`` lines ``{"timestamp", "step", "metrics": {...}}``.

A key logged again at a step later in the file (a resumed run appending to it replays from its checkpoint) is
the resumed run's: its later value replaces the earlier, said in a warning (the steps, the first line); records
of one step with other keys (train, then eval metrics) are all kept, as a native shard's lines are. A ``null``
metric is no value (no row), as in the other scalar readers. A record whose ``metrics`` is not an object holds
no metrics: said in a warning (count, first line)."""

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
        held: dict[tuple[int, str], int] = {}  # (step, key) -> index in rows of the record holding its value
        again: dict[int, int] = {}  # step with a key logged again -> the first line that logs one again
        for rec, line in zip(parsed.records, parsed.line_numbers, strict=True):
            step = coerce_step(rec.get("step"))
            if step is None:
                stepless.append((line, stepless_reason("step", rec["step"]) if "step" in rec else "no step"))
            t = rec.get("timestamp")
            t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
            metrics = rec.get("metrics")
            other.update(k for k in rec if k not in ("step", "timestamp", "metrics"))
            if not isinstance(metrics, dict):
                no_metrics.append(line)
                rows.append((step, t, {}))
                continue
            clashes: list[str] = []
            flat = {k: v for k, v in flatten(metrics, clashes=clashes).items() if v is not None}  # null: no value
            if step is not None:
                # Replaced per key, not per record: a replay logs again the keys it replays, while eval metrics
                # after the train ones at one step replace nothing.
                for k in flat:
                    earlier = held.get((step, k))
                    if earlier is not None:
                        again.setdefault(step, line)
                        del rows[earlier][2][k]
                    held[(step, k)] = len(rows)
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
        if again:
            steps = sorted(again)
            listed = ", ".join(map(str, steps[:8])) + (" ..." if len(steps) > 8 else "")
            ctx.warn(
                cand.rel,
                f"{len(steps)} step(s) logged again (a resumed run appending to this file?; first: line "
                f"{min(again.values())}): {listed}; the later value of each key logged again replaces the earlier",
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
