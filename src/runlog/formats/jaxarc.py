"""JaxARC batched metrics (seed 003): ``batch_metrics.jsonl`` lines ``{"timestamp", "step", "metrics": {...}}``."""

from __future__ import annotations

from .._lazy import pl
from .base import Candidate, FileInfo, Layout, RunContext, register
from .common import coerce_step, flatten, read_jsonl, scalars_frame


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
        parsed = read_jsonl(cand, ctx)
        rows = []
        other: set[str] = set()
        no_step = 0
        for rec in parsed.records:
            step = coerce_step(rec.get("step"))
            no_step += step is None
            t = rec.get("timestamp")
            t = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
            metrics = rec.get("metrics")
            rows.append((step, t, flatten(metrics) if isinstance(metrics, dict) else {}))
            other.update(k for k in rec if k not in ("step", "timestamp", "metrics"))
        if no_step:
            ctx.warn(cand.rel, f"{no_step} record(s) without an integer step; kept with a null step")
        if other:
            ctx.note(self.name, f"{cand.rel}: top-level keys outside 'metrics' not mapped: {', '.join(sorted(other))}")
        info.frame = scalars_frame(rows, cand.rel, ctx, self.name)
        info.rows = len(parsed.records)
        info.steps = sorted({s for s, _, _ in rows if s is not None})
        return info

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [f.frame for f in files if f.readable and f.frame is not None]
        return pl.concat(frames).lazy() if frames else None
