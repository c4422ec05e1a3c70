"""Shared reading of flat scalar JSONL records (runlog ``scalars.pN.jsonl`` and AReaL-style stats)."""

from __future__ import annotations

from typing import Any

from .base import RunContext
from .common import JsonlResult, coerce_step, flatten

STEP_KEYS = ("step", "global_step", "_step", "trainer/step")
TIME_KEYS = ("time", "timestamp", "_timestamp", "wall_time")


def record_rows(
    parsed: JsonlResult, source: str, ctx: RunContext, layout: str
) -> list[tuple[int | None, float | None, dict[str, Any]]]:
    """(step, time, flat metrics) per record. A record with no usable step is reported, not guessed."""
    rows: list[tuple[int | None, float | None, dict[str, Any]]] = []
    no_step = 0
    for rec in parsed.records:
        flat = flatten(rec)
        step = None
        for k in STEP_KEYS:
            if k in flat:
                step = coerce_step(flat.pop(k))
                break
        t = None
        for k in TIME_KEYS:
            if k in flat:
                v = flat.pop(k)
                t = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                break
        if step is None:
            no_step += 1
        rows.append((step, t, flat))
    if no_step:
        ctx.warn(source, f"{no_step} record(s) without an integer step; kept with a null step")
    return rows
