"""Shared reading of flat scalar JSONL records (runlog ``scalars.pN.jsonl`` and AReaL-style stats)."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any, Literal

from .._lazy import pl
from .base import Candidate, FileInfo, RunContext
from .common import (
    JsonlResult,
    coerce_step,
    flatten,
    key_separators,
    read_jsonl,
    say_clashes,
    say_orphan_weights,
    say_stepless,
    scalars_frame,
    stepless_reason,
)

STEP_KEYS = ("step", "global_step", "_step", "trainer/step")
TIME_KEYS = ("time", "timestamp", "_timestamp", "wall_time")
# polars' work on a file goes per column of its wide frame (one column per key: inferred, cast, unpivoted), about
# 80 us a key; the careful reader's per value written, about 2 us. A file of many keys each held by few records
# (one line of 500,000 keys among lines of 30) took 35 s in polars against 4 s read carefully (the same frame), so
# past ``WIDE_KEYS`` keys a file whose keys hold fewer than ``SPARSE_VALUES_PER_KEY`` values each on average is
# read carefully. Measured break-even: about 40 values a key (20 records of 50,000 keys: 4.4 s against 1.7 s;
# 200 records of 5,000: 1.15 s against 1.8 s).
WIDE_KEYS = 1_000
SPARSE_VALUES_PER_KEY = 32


def record_rows(
    parsed: JsonlResult,
    source: str,
    ctx: RunContext,
    layout: str,
    *,
    step_keys: tuple[str, ...] = STEP_KEYS,
    counters: bool = False,
    no_step_key: str | None = None,
) -> list[tuple[int | None, float | None, dict[str, Any]]]:
    """(step, time, flat metrics) per record. A record with no usable step is reported with its line, not
    guessed.

    The first of ``step_keys`` a record holds is its step. With ``counters`` the other step keys it holds
    (AReaL's per-epoch ``step`` beside ``global_step``) are counters, not metrics: said in a note; and where
    any record of the file holds the first step key, a record without it has no step (its ``step`` is such a
    counter: taken as the step, it was merged into another step's values), said with the stepless ones. A null
    value is no value (no row), as in the fast path. ``no_step_key``: what to say, in one warning, when no
    record holds any of ``step_keys`` (else each such line is "no step")."""
    rows: list[tuple[int | None, float | None, dict[str, Any]]] = []
    stepless: list[tuple[int, str]] = []
    clashed: list[tuple[int, str]] = []
    aside: set[tuple[str, str]] = set()
    untimed: list[tuple[int, str, Any]] = []  # (line, key, value) of a time that is no number
    any_key = False  # whether any record holds a step key
    flats: list[dict[str, Any]] = []
    for rec, line in zip(parsed.records, parsed.line_numbers, strict=True):
        clashes: list[str] = []
        flats.append(flatten(rec, clashes=clashes))
        if clashes:
            clashed.append((line, clashes[0]))
    # The first step key, where a record holds it, is the file's step: the others beside it are counters.
    anchor = step_keys[0] if counters and any(step_keys[0] in flat for flat in flats) else None
    for flat, line in zip(flats, parsed.line_numbers, strict=True):
        step = None
        held: tuple[str, Any] | None = None  # the step key and what it holds
        for k in step_keys:
            if k in flat:
                any_key = True
                held = (k, flat.pop(k))
                step = coerce_step(held[1])
                if counters:
                    for other in step_keys:
                        if other in flat:
                            flat.pop(other)
                            aside.add((k, other))
                break
        reason = "no step" if held is None else stepless_reason(*held)
        if anchor is not None and held is not None and held[0] != anchor:
            shown = json.dumps(held[1], ensure_ascii=True, default=str)[:40]
            step, reason = None, f"no {anchor} ({held[0]} {shown}: a per-epoch counter in this file)"
        t = None
        for k in TIME_KEYS:
            if k in flat:
                v = flat.pop(k)
                t = _time(v)
                if t is None and v is not None:
                    untimed.append((line, k, v))
                break
        if step is None:
            stepless.append((line, reason))
        rows.append((step, t, {k: v for k, v in flat.items() if v is not None}))
    if no_step_key is not None and rows and not any_key:
        ctx.warn(
            source,
            f"{no_step_key}: all {len(rows)} record(s) left out of every summary, plot, diff and upload (Run.scalars "
            "keeps them with a null step)",
        )
    else:
        say_stepless(source, ctx, stepless)
    say_clashes(source, ctx, clashed)
    _say_untimed(source, ctx, untimed)
    if aside:
        ctx.note(layout, _counters_note(source, sorted(aside)))
    return rows


def _time(v: Any) -> float | None:
    """A record's time as float, or None: a finite number of the float64 range only (a bool, a text, an int beyond
    the range, 10**400, JSON's ``1e400`` read as infinity, NaN, are no time; ``_say_untimed`` says so)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        with contextlib.suppress(OverflowError):
            t = float(v)
            return t if math.isfinite(t) else None
    return None


def _say_untimed(source: str, ctx: RunContext, untimed: list[tuple[int, str, Any]]) -> None:
    """Records whose time is no number, read without a time: said once per file, with the count and the first
    (a review: ``"time": 10**400`` became a null time without a word, beside a warning for such a metric value)."""
    if not untimed:
        return
    line, key, v = untimed[0]
    what = (
        f"an int of {v.bit_length()} bits, beyond the float64 range"
        if isinstance(v, int) and not isinstance(v, bool)
        else json.dumps(v, ensure_ascii=True, default=str)[:40]
    )
    ctx.warn(
        source,
        f"{len(untimed)} record(s) hold a time that is no number of the float64 range, read without a time (their "
        f"metrics kept; first: line {line}, {key!r}: {what})",
    )


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
            f"step {step}): merged with it as shards are (each value weighed by its key__count, or a k/mean by its "
            "record's k/count; a value without one as one value)",
        )


def _relogged(rows: list[tuple[int | None, float | None, dict[str, Any]]]) -> list[int]:
    """The steps at which two records of ``rows`` hold a value of one key (``k__count`` weights aside)."""
    seen: dict[int, set[str]] = {}
    out: set[int] = set()
    for step, _, metrics in rows:
        if step is None:
            continue
        keys = {k for k in metrics if not k.endswith("__count")}
        held = seen.setdefault(step, set())
        if held & keys:
            out.add(step)
        held |= keys
    return sorted(out)


def _keep_later(
    frame: pl.DataFrame, relogged: list[int], lines: list[int], source: str, ctx: RunContext
) -> pl.DataFrame:
    """At the ``relogged`` steps, each key keeps the value of the last record that logs it, with that record's
    ``k__count`` weight (an earlier record's weight goes with its value), said with the steps and lines. One
    process writes one value per key and step: a second one is a replay (a trainer restarted from a checkpoint
    appending to its shard, a copied shard), not another shard's share, and averaging it with the first gave
    values no line holds. Records of one step with other keys (train, then eval metrics) are kept whole."""
    if not relogged:
        return frame
    weight = pl.col("key").str.ends_with("__count")
    part = frame.filter(pl.col("step").is_in(relogged))
    spans = (
        part.filter(~weight)
        .group_by("step", "key")
        .agg(pl.col("record").min().alias("first"), pl.col("record").max().alias("last"))
        .filter(pl.col("first") != pl.col("last"))
        .group_by("step")
        .agg(pl.col("first").min(), pl.col("last").max())
        .sort("step")
    )
    if not spans.height:  # the values logged twice were not numbers (not mapped): nothing replaced
        return frame
    said = [(s, f"at line {lines[last]} (first at line {lines[first]})") for s, first, last in spans.iter_rows()]
    if len(said) == 1:
        head = f"step {said[0][0]} logged again {said[0][1]}"
    else:
        shown = ", ".join(f"step {s} {where}" for s, where in said[:5])
        head = f"{len(said)} steps logged again: {shown}" + (f", {len(said) - 5} more" if len(said) > 5 else "")
    ctx.warn(source, f"{head}: the later values kept (a resumed run appending to this file?)")
    # The record a key's value is kept from, for the key and its weight; null for a weight without a value.
    kept = pl.when(~weight).then(pl.col("record")).max().over("step", pl.col("key").str.strip_suffix("__count"))
    stale = part.filter(pl.col("record") != kept).select("record", "key")
    return frame.join(stale, on=["record", "key"], how="anti", maintain_order="left")


def probe_flat_scalars(
    cand: Candidate,
    ctx: RunContext,
    info: FileInfo,
    layout: str,
    *,
    repeats: Literal["merge", "replace"],
    step_keys: tuple[str, ...] = STEP_KEYS,
    counters: bool = False,
    no_step_key: str | None = None,
) -> None:
    """Fill ``info`` (rows, steps, frame: the long scalar frame) from a flat scalar JSONL file.

    A well-formed file of flat numeric records (the common case: what ``RunWriter`` and trainers write) is
    parsed by polars in one call, several times faster than line by line. Anything else (a bad or torn
    line, NaN/Infinity literals, nested or non-numeric values, records without an integer step) goes
    through the line-by-line reader, which reports each problem with its line number. Both give the same
    frame: a null value is no value (no row).

    A key logged again at a step of the file: ``repeats="replace"`` keeps the later value (``_keep_later``:
    runlog's own shards, one process each); ``"merge"`` merges the records as shards are, said (AReaL's
    stats). ``step_keys``, ``counters`` and ``no_step_key`` as in ``record_rows``."""
    fast = _fast_flat_scalars(cand, step_keys, counters)
    if fast is not None:
        frame, info.rows, info.steps, record_steps, aside, relogged = fast
        if aside:
            ctx.note(layout, _counters_note(cand.rel, aside))
        lines = list(range(1, len(record_steps) + 1))  # the fast path reads no file with a blank line
    else:
        parsed = read_jsonl(cand, ctx, repeats=True)
        rows = record_rows(
            parsed, cand.rel, ctx, layout, step_keys=step_keys, counters=counters, no_step_key=no_step_key
        )
        lines = parsed.line_numbers
        frame = scalars_frame(rows, cand.rel, ctx, layout, lines)
        record_steps = [s for s, _, _ in rows]
        relogged = _relogged(rows)
        info.rows = len(parsed.records)
        info.steps = sorted({s for s in record_steps if s is not None})
    if repeats == "replace":
        frame = _keep_later(frame, relogged, lines, cand.rel, ctx)
    else:
        _say_repeats(cand.rel, ctx, record_steps, lines)
    say_orphan_weights(frame, cand.rel, ctx, layout)
    info.frame = frame


def _fast_flat_scalars(
    cand: Candidate, step_keys: tuple[str, ...], counters: bool
) -> tuple[pl.DataFrame, int, list[int], list[int | None], list[tuple[str, str]], list[int]] | None:
    """(long frame, records, steps, the step of each record, (step, counter) keys set aside, the steps at which
    two records hold a value of one key: ``_relogged``) or None."""
    try:
        data = cand.abspath.read_bytes()
    except OSError:
        return None
    if not data.endswith(b"\n") or b"NaN" in data or b"Infinity" in data or b"\n\n" in data:
        return None
    if _wide_and_sparse(data):
        return None  # before polars infers a frame of every key (4-12 s at 500,000 keys)
    try:
        df = pl.read_ndjson(data, infer_schema_length=None)
    except Exception:  # noqa: BLE001  (any parse trouble: the careful reader reports it line by line)
        return None
    if data.count(b"\n") != df.height:  # a blank line polars skipped: record i would not be line i
        return None
    # The values polars kept: the non-null cells (``null_count`` is one pass; ``count`` took 6 s at 500,000 keys).
    cells = df.width * df.height - sum(df.null_count().row(0))
    if df.width > WIDE_KEYS and cells < SPARSE_VALUES_PER_KEY * df.width:
        return None  # wide and sparse, its keys spread over many lines: the careful reader is the faster
    # Looked up once: ``DataFrame.schema`` builds a new mapping of every column on each access, and one record
    # with thousands of keys (per-layer gradient norms) made this check quadratic (4,000 keys: 52 s).
    schema = df.schema
    step = next((k for k in step_keys if k in df.columns), None)
    # A null step, or one beyond Int64 (polars reads 2**63 as Int128): the careful reader says which line.
    if step is None or not schema[step].is_integer() or df[step].cast(pl.Int64, strict=False).null_count():
        return None
    time_key = next((k for k in TIME_KEYS if k in df.columns), None)
    aside = [(step, k) for k in step_keys if k != step and k in df.columns] if counters else []
    metrics = [c for c in df.columns if c not in (step, time_key) and (step, c) not in aside]
    if any(not (schema[c].is_numeric() or schema[c] in (pl.Boolean, pl.Null)) for c in metrics):
        return None
    if time_key is not None and not (schema[time_key].is_numeric() or schema[time_key] == pl.Null):
        return None
    if _may_repeat_keys(data, df, schema, cells):  # polars keeps a repeated key's first value, the careful reader
        return None  # its last
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
    steps = sorted(set(record_steps))
    values = [c for c in metrics if not c.endswith("__count")]
    relogged: list[int] = []
    if len(steps) < len(record_steps) and values:  # records of one step: do two hold one key? (counted wide)
        held = base.filter(pl.col("step").is_duplicated()).group_by("step").agg(pl.col(values).count())
        relogged = sorted(held.filter(pl.max_horizontal(values) > 1)["step"].to_list())
    return long, df.height, steps, record_steps, aside, relogged


def _wide_and_sparse(data: bytes) -> bool:
    """Whether ``data`` (lines, each ending in a newline) surely has over ``WIDE_KEYS`` keys held by fewer than
    ``SPARSE_VALUES_PER_KEY`` values each on average, told before polars parses it: its widest line holds more
    than ``WIDE_KEYS`` pairs, and the file fewer than ``SPARSE_VALUES_PER_KEY`` times as many (the ':' counted,
    an upper bound of the pairs). Looked at in files of up to ``_SCANNED_LINES`` lines (a few ms); keys spread
    over many lines, or a longer file, are told after parsing, from the frame."""
    pairs = data.count(b":")
    if pairs <= WIDE_KEYS or data.count(b"\n") > _SCANNED_LINES:
        return False
    start, widest = 0, 0
    while start < len(data):
        end = data.index(b"\n", start)
        widest = max(widest, data.count(b":", start, end))
        start = end + 1
    return widest > WIDE_KEYS and pairs < SPARSE_VALUES_PER_KEY * widest


_SCANNED_LINES = 10_000


def _may_repeat_keys(data: bytes, df: pl.DataFrame, schema: pl.Schema, cells: int) -> bool:
    """Whether a line of ``data`` (``df``, as polars parsed it, of ``schema``, holding ``cells`` non-null values)
    holds a key twice: polars keeps the first value, Python's json (the careful reader, which says so) the last,
    so such a file is read carefully.

    Counted, not searched (a search per key was a pass over the file per key; records of thousands of keys are
    common), and exact: a file read carefully costs a few times the fast path's time. A line holds a key twice
    where its pairs as written are more than its distinct keys; these are the values polars kept (the non-null
    cells) where no value is null. The pairs are the ':' outside strings; where the only strings are keys (the
    values numbers, booleans and nulls) they are the '"' halved, a ':' inside a key aside (``"train:loss"``).
    Where the file holds nulls, it is parsed again with each null read as 0, in the schema already inferred
    (several times faster than inferring), so that every key of a line is a cell. A null written otherwise
    (``":  null"``) stays null and a key holding ':null' becomes another: such a file is read carefully, slower,
    never wrong."""
    if data.count(b":") == cells:  # every ':' a pair polars kept a value of: the common case, one pass
        return False
    if b'\\"' in data or any(dtype == pl.String for dtype in schema.values()):  # a '"' or ':' inside a string
        pairs = key_separators(data)
    else:
        pairs = data.count(b'"') // 2  # every string a key
    if pairs == cells:
        return False
    if b"null" not in data:  # no null: a pair more than the cells is a key written twice
        return True
    zeroed = data.replace(b":null", b":0").replace(b": null", b": 0")
    as_read = {c: pl.String if dtype in (pl.Boolean, pl.Null) else dtype for c, dtype in schema.items()}
    try:
        again = pl.read_ndjson(zeroed, schema=as_read)
        cells = again.width * again.height - sum(again.null_count().row(0))
    except Exception:  # noqa: BLE001  (a value polars will not read in its schema: the careful reader reads it)
        return True
    return pairs != cells
