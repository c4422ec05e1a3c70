"""Shared reading of flat scalar JSONL records (runlog ``scalars.pN.jsonl`` and AReaL-style stats)."""

from __future__ import annotations

from typing import Any

from .._lazy import pl
from .base import Candidate, FileInfo, RunContext
from .common import JsonlResult, coerce_step, flatten, read_jsonl, scalars_frame

STEP_KEYS = ("step", "global_step", "_step", "trainer/step")
TIME_KEYS = ("time", "timestamp", "_timestamp", "wall_time")


def record_rows(
    parsed: JsonlResult,
    source: str,
    ctx: RunContext,
    layout: str,
    *,
    step_keys: tuple[str, ...] = STEP_KEYS,
    counters: bool = False,
) -> list[tuple[int | None, float | None, dict[str, Any]]]:
    """(step, time, flat metrics) per record. A record with no usable step is reported, not guessed.

    The first of ``step_keys`` a record holds is its step. With ``counters`` the other step keys it holds
    (AReaL's per-epoch ``step`` beside ``global_step``) are counters, not metrics: said in a note. A null
    value is no value (no row), as in the fast path."""
    rows: list[tuple[int | None, float | None, dict[str, Any]]] = []
    no_step = 0
    aside: set[tuple[str, str]] = set()
    for rec in parsed.records:
        flat = flatten(rec)
        step = None
        for k in step_keys:
            if k in flat:
                step = coerce_step(flat.pop(k))
                if counters:
                    for other in step_keys:
                        if other in flat:
                            flat.pop(other)
                            aside.add((k, other))
                break
        t = None
        for k in TIME_KEYS:
            if k in flat:
                v = flat.pop(k)
                t = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                break
        if step is None:
            no_step += 1
        rows.append((step, t, {k: v for k, v in flat.items() if v is not None}))
    if no_step:
        ctx.warn(source, f"{no_step} record(s) without an integer step; kept with a null step")
    if aside:
        ctx.note(layout, _counters_note(source, sorted(aside)))
    return rows


def _counters_note(source: str, pairs: list[tuple[str, str]]) -> str:
    said = "; ".join(
        f"'{step}' read as the step, '{other}' beside it a counter (not a metric)" for step, other in pairs
    )
    return f"{source}: {said}: not mapped"


def _say_repeats(source: str, ctx: RunContext, steps: list[int | None], lines: list[int]) -> None:
    """Several records of one step in one file: merged as shards are (weighted by ``key__count``, else
    averaged), and said: how many records log a step an earlier line of the file already logged, the first."""
    seen: set[int] = set()
    again: list[tuple[int, int]] = []
    for step, line in zip(steps, lines, strict=True):
        if step is None:
            continue
        if step in seen:
            again.append((line, step))
        seen.add(step)
    if again:
        line, step = again[0]
        ctx.warn(
            source,
            f"{len(again)} record(s) log a step an earlier line of this file already logged (first: line {line}, "
            f"step {step}): merged with it as shards are (weighted by key__count, else averaged)",
        )


def probe_flat_scalars(
    cand: Candidate,
    ctx: RunContext,
    info: FileInfo,
    layout: str,
    *,
    step_keys: tuple[str, ...] = STEP_KEYS,
    counters: bool = False,
    say_repeats: bool = False,
) -> None:
    """Fill ``info`` (rows, steps, frame: the long scalar frame) from a flat scalar JSONL file.

    A well-formed file of flat numeric records (the common case: what ``RunWriter`` and trainers write) is
    parsed by polars in one call, several times faster than line by line. Anything else (a bad or torn
    line, NaN/Infinity literals, nested or non-numeric values, records without an integer step) goes
    through the line-by-line reader, which reports each problem with its line number. Both give the same
    frame: a null value is no value (no row).

    ``step_keys`` and ``counters`` as in ``record_rows``; ``say_repeats`` warns of several records of one step
    (with the count and the first line)."""
    fast = _fast_flat_scalars(cand, step_keys, counters)
    if fast is not None:
        info.frame, info.rows, info.steps, record_steps, aside = fast
        if aside:
            ctx.note(layout, _counters_note(cand.rel, aside))
        if say_repeats:  # the fast path reads no file with a blank line: record i is line i
            _say_repeats(cand.rel, ctx, record_steps, list(range(1, len(record_steps) + 1)))
        return
    parsed = read_jsonl(cand, ctx)
    rows = record_rows(parsed, cand.rel, ctx, layout, step_keys=step_keys, counters=counters)
    if say_repeats:
        _say_repeats(cand.rel, ctx, [s for s, _, _ in rows], parsed.line_numbers)
    info.frame = scalars_frame(rows, cand.rel, ctx, layout)
    info.rows = len(parsed.records)
    info.steps = sorted({s for s, _, _ in rows if s is not None})


def _fast_flat_scalars(
    cand: Candidate, step_keys: tuple[str, ...], counters: bool
) -> tuple[pl.DataFrame, int, list[int], list[int | None], list[tuple[str, str]]] | None:
    """(long frame, records, steps, the step of each record, (step, counter) keys set aside) or None."""
    try:
        data = cand.abspath.read_bytes()
    except OSError:
        return None
    if not data.endswith(b"\n") or b"NaN" in data or b"Infinity" in data or b"\n\n" in data:
        return None
    try:
        df = pl.read_ndjson(data, infer_schema_length=None)
    except Exception:  # noqa: BLE001  (any parse trouble: the careful reader reports it line by line)
        return None
    if data.count(b"\n") != df.height:  # a blank line polars skipped: record i would not be line i
        return None
    step = next((k for k in step_keys if k in df.columns), None)
    if step is None or not df.schema[step].is_integer() or df[step].null_count():
        return None
    time_key = next((k for k in TIME_KEYS if k in df.columns), None)
    aside = [(step, k) for k in step_keys if k != step and k in df.columns] if counters else []
    metrics = [c for c in df.columns if c not in (step, time_key) and (step, c) not in aside]
    if any(not (df.schema[c].is_numeric() or df.schema[c] in (pl.Boolean, pl.Null)) for c in metrics):
        return None
    if time_key is not None and not (df.schema[time_key].is_numeric() or df.schema[time_key] == pl.Null):
        return None
    base = df.with_row_index("record").select(
        pl.col("record").cast(pl.Int64),
        pl.col(step).cast(pl.Int64).alias("step"),
        (pl.col(time_key).cast(pl.Float64) if time_key else pl.lit(None, dtype=pl.Float64)).alias("time"),
        *[pl.col(c).cast(pl.Float64) for c in metrics],
    )
    long = (
        base.unpivot(index=["record", "step", "time"], on=metrics, variable_name="key", value_name="value")
        .filter(pl.col("value").is_not_null())
        .with_columns(pl.lit(cand.rel).alias("source"))
        .select("step", "time", "key", "value", "source", "record")
    )
    record_steps = base["step"].to_list()
    return long, df.height, sorted(set(record_steps)), record_steps, aside
