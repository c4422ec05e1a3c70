"""Shared reading of flat scalar JSONL records (runlog ``scalars.pN.jsonl`` and AReaL-style stats)."""

from __future__ import annotations

from typing import Any

from .._lazy import pl
from .base import Candidate, FileInfo, RunContext
from .common import JsonlResult, coerce_step, flatten, read_jsonl, scalars_frame

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


def probe_flat_scalars(cand: Candidate, ctx: RunContext, info: FileInfo, layout: str) -> None:
    """Fill ``info`` (rows, steps, frame: the long scalar frame) from a flat scalar JSONL file.

    A well-formed file of flat numeric records (the common case: what ``RunWriter`` and trainers write) is
    parsed by polars in one call, several times faster than line by line. Anything else (a bad or torn
    line, NaN/Infinity literals, nested or non-numeric values, records without an integer step) goes
    through the line-by-line reader, which reports each problem with its line number."""
    fast = _fast_flat_scalars(cand, info)
    if fast is not None:
        info.frame, info.rows, info.steps = fast
        return
    parsed = read_jsonl(cand, ctx)
    rows = record_rows(parsed, cand.rel, ctx, layout)
    info.frame = scalars_frame(rows, cand.rel, ctx, layout)
    info.rows = len(parsed.records)
    info.steps = sorted({s for s, _, _ in rows if s is not None})


def _fast_flat_scalars(cand: Candidate, info: FileInfo) -> tuple[pl.DataFrame, int, list[int]] | None:
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
    step = next((k for k in STEP_KEYS if k in df.columns), None)
    if step is None or not df.schema[step].is_integer() or df[step].null_count():
        return None
    time_key = next((k for k in TIME_KEYS if k in df.columns), None)
    metrics = [c for c in df.columns if c not in (step, time_key)]
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
    steps = sorted(base["step"].unique().to_list())
    return long, df.height, steps
