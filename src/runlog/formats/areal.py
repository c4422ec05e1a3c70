"""AReaL-style stats JSONL (seed 002): one flat dict of metrics per step; ``key__count`` companions
carry the weight of ``key`` for merging shards (kept as ordinary keys; summaries use them).

``StatsLogger.commit(epoch, step, global_step, data)`` counts ``step`` within the epoch: where records carry
``global_step`` it is the step and the per-epoch ``step`` a counter (noted, not a metric). Several records of
one step in one file are merged as shards are, and said."""

from __future__ import annotations

from .._lazy import pl
from .base import Candidate, FileInfo, Layout, RunContext, register
from .scalars_jsonl import STEP_KEYS, probe_flat_scalars

# ``global_step`` first: beside it AReaL's ``step`` restarts every epoch.
AREAL_STEP_KEYS = ("global_step", *(k for k in STEP_KEYS if k != "global_step"))
# Fields of a sample (a prompt, its completion, a conversation): a record holding one is a rollout or a
# completion log, never a line of metrics, however many numbers it carries besides.
TEXT_KEYS = frozenset(
    {
        "prompt",
        "prompts",
        "completion",
        "completions",
        "messages",
        "response",
        "responses",
        "conversation",
        "conversations",
        "trajectory",
        "question",
        "answer",
        "input",
        "output",
        "text",
        "chosen",
        "rejected",
    }
)


@register
class ArealStatsLayout(Layout):
    name = "areal"
    description = "AReaL-style stats JSONL: a flat {step, <metric>: number, <metric>__count: n} dict per line"
    priority = 90
    formats = (".jsonl",)

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix != ".jsonl":
            return False
        # Any of the first lines: a damaged first line (torn, not UTF-8, numbers written as text) or a first
        # record with nothing measured yet (every metric null) is reported or read by the reader, not a reason
        # to ignore the file. A record holding a text field among them makes the file samples, never metrics.
        records = [obj for obj in cand.json_lines() if isinstance(obj, dict)]
        if any(k in TEXT_KEYS for obj in records for k in obj):
            return False
        return any(_is_metrics_line(obj) for obj in records)

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "jsonl", "scalars", cand.size)
        probe_flat_scalars(cand, ctx, info, self.name, repeats="merge", step_keys=AREAL_STEP_KEYS, counters=True)
        return info

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [f.frame for f in files if f.readable and f.frame is not None]
        return pl.concat(frames).lazy() if frames else None


def _is_metrics_line(obj: dict) -> bool:
    """A flat record of numbers with a step key: mostly numbers (null values, no value yet, aside), nothing
    nested (a rollout record nests its turns)."""
    if not any(k in obj for k in STEP_KEYS):
        return False
    values = [v for k, v in obj.items() if k not in STEP_KEYS and v is not None]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(numbers) and len(numbers) >= 0.8 * len(values) and not any(isinstance(v, (list, dict)) for v in values)
