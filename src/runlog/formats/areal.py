"""AReaL-style stats JSONL: the team's own convention (seed 002: a ``StatsLogger`` that appends each committed
dict to a local JSONL file), not a file AReaL writes (upstream ``StatsLogger.commit`` logs to wandb, swanlab
and tensorboard only, and passes the step apart from the dict). One flat dict of metrics per line, with a step
key (``STEP_KEYS``); ``key__count`` companions carry the weight of ``key`` for merging shards (kept as ordinary
keys; summaries use them).

Where records carry ``global_step`` it is the step and a per-epoch ``step`` beside it a counter (noted, not a
metric); a record of such a file without ``global_step`` has no known step (its ``step`` is that counter): said
and left out, as a record without a step is. Several records of one step in one file are merged as shards are,
and said. Flat dicts of numbers with no step key (AReaL's committed dicts as they are) are not detected:
``near_miss`` says why."""

from __future__ import annotations

from .._lazy import pl
from .base import Candidate, FileInfo, Layout, RunContext, register
from .scalars_jsonl import STEP_KEYS, probe_flat_scalars

# ``global_step`` first: beside it AReaL's ``step`` restarts every epoch.
AREAL_STEP_KEYS = ("global_step", *(k for k in STEP_KEYS if k != "global_step"))
NO_STEP_KEY = (
    f"flat records of numbers without a step key ({', '.join(AREAL_STEP_KEYS)}), which AReaL-style stats need on "
    "every line (AReaL's own StatsLogger writes no such file: it passes the step to wandb apart from the dict)"
)
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
        probe_flat_scalars(
            cand,
            ctx,
            info,
            self.name,
            repeats="merge",
            step_keys=AREAL_STEP_KEYS,
            counters=True,
            no_step_key=NO_STEP_KEY,
        )
        return info

    def near_miss(self, cand: Candidate) -> str | None:
        if cand.suffix != ".jsonl":
            return None
        records = [obj for obj in cand.json_lines() if isinstance(obj, dict)]
        if not records or any(k in TEXT_KEYS for obj in records for k in obj):
            return None
        if any(any(k in obj for k in STEP_KEYS) for obj in records):
            return None
        return NO_STEP_KEY if all(_is_flat_numbers(obj) for obj in records) else None

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [f.frame for f in files if f.readable and f.frame is not None]
        return pl.concat(frames).lazy() if frames else None


def _is_metrics_line(obj: dict) -> bool:
    """A flat record of numbers with a step key: mostly numbers (null values, no value yet, aside), nothing
    nested (a rollout record nests its turns)."""
    return any(k in obj for k in STEP_KEYS) and _is_flat_numbers(obj)


def _is_flat_numbers(obj: dict) -> bool:
    values = [v for k, v in obj.items() if k not in STEP_KEYS and v is not None]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return bool(numbers) and len(numbers) >= 0.8 * len(values) and not any(isinstance(v, (list, dict)) for v in values)
