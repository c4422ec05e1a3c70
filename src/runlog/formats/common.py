"""Helpers shared by the layouts: Parquet footer probes, robust JSONL parsing, long scalar frames."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema as S
from .base import (
    BAD_LINE,
    NEWER_VERSION,
    UNKNOWN_VERSION,
    UNREADABLE,
    Candidate,
    FileInfo,
    RunContext,
)

# ---------------------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:300]


def probe_parquet(cand: Candidate, ctx: RunContext, *, layout: str, kind: str = "samples") -> FileInfo:
    """Read only the footer: row count, column types, null counts from statistics."""
    info = FileInfo(path=cand.rel, abspath=cand.abspath, layout=layout, fmt="parquet", kind=kind, bytes=cand.size)
    try:
        md = pq.read_metadata(cand.abspath)
        arrow_schema = md.schema.to_arrow_schema()
    except (OSError, pa.ArrowException, ValueError) as exc:
        info.readable = False
        ctx.problem(cand.rel, UNREADABLE, f"unreadable Parquet (truncated or corrupt?): {_short(exc)}")
        return info
    info.rows = md.num_rows
    info.columns = {f.name: str(f.type) for f in arrow_schema}
    info.payload = {"metadata": md, "arrow_schema": arrow_schema}
    info.null_counts = footer_null_counts(md, arrow_schema)
    return info


def footer_null_counts(md: pq.FileMetaData, arrow_schema: pa.Schema) -> dict[str, int]:
    """Null counts of top-level primitive columns from the row-group statistics (no data read)."""
    top = {f.name for f in arrow_schema if not pa.types.is_nested(f.type)}
    counts: dict[str, int] = {}
    missing: set[str] = set()
    for rg in range(md.num_row_groups):
        group = md.row_group(rg)
        for ci in range(group.num_columns):
            col = group.column(ci)
            name = col.path_in_schema
            if name not in top or name in missing:
                continue
            st = col.statistics
            if st is None or not st.has_null_count:
                missing.add(name)
                counts.pop(name, None)
                continue
            counts[name] = counts.get(name, 0) + st.null_count
    return counts


def footer_int_range(info: FileInfo, column: str) -> tuple[int, int] | None:
    """(min, max) of an integer column from footer statistics, or None when there are none."""
    md = info.payload["metadata"] if info.payload else None
    if md is None:
        return None
    lo = hi = None
    for rg in range(md.num_row_groups):
        group = md.row_group(rg)
        for ci in range(group.num_columns):
            col = group.column(ci)
            if col.path_in_schema != column:
                continue
            st = col.statistics
            if st is None or not st.has_min_max:
                return None
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
    if lo is None or hi is None:
        return None
    return int(lo), int(hi)


def read_version_column(info: FileInfo, column: str = "schema_version") -> tuple[int, int] | None:
    """Footer statistics first; otherwise read just that one (tiny) column."""
    rng = footer_int_range(info, column)
    if rng is not None or info.rows == 0:
        return rng
    try:
        tbl = pq.read_table(info.abspath, columns=[column])
    except (OSError, pa.ArrowException, ValueError):
        return None
    col = pl.from_arrow(tbl.column(0)).drop_nulls()
    if col.len() == 0:
        return None
    return int(col.min()), int(col.max())


def gate_version(info: FileInfo, ctx: RunContext, version: int | None) -> bool:
    """Apply the version gate; on failure record the problem and mark the file unreadable."""
    if version is None:
        return True
    if version > S.CURRENT_VERSION:
        ctx.problem(
            info.path,
            NEWER_VERSION,
            f"written with runlog schema v{version}; this runlog reads up to v{S.CURRENT_VERSION}: "
            "upgrade with `pip install -U runlog`",
        )
        info.readable = False
        return False
    if version not in S.KNOWN_VERSIONS:
        ctx.problem(info.path, UNKNOWN_VERSION, f"unknown schema version {version!r}")
        info.readable = False
        return False
    return True


def group_by_signature(files: list[FileInfo]) -> list[list[FileInfo]]:
    """Files with identical (version, columns) can be scanned together by one lazy scan."""
    groups: dict[tuple, list[FileInfo]] = {}
    for f in files:
        key = (f.fmt, f.schema_version, tuple(sorted(f.columns.items())))
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def source_column(files: list[FileInfo]) -> pl.Expr:
    """Replace the absolute path from ``include_file_paths`` with the run-relative path."""
    mapping = {str(f.abspath): f.path for f in files}
    return pl.col("source").replace_strict(mapping, default=pl.col("source"), return_dtype=pl.String)


def per_file_value(files: list[FileInfo], attr: str, dtype: pl.DataType) -> pl.Expr:
    """A column holding each file's step / split (known from its name) for rows of that file."""
    mapping = {f.path: getattr(f, attr) for f in files}
    return pl.col("source").replace_strict(mapping, default=None, return_dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------------------------------------


@dataclass
class JsonlResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)  # 1-based line of each record
    bad: int = 0


def read_jsonl(cand: Candidate | FileInfo, ctx: RunContext, *, max_reported: int = 5) -> JsonlResult:
    """Parse a JSONL file line by line. Bad lines are reported with their number and skipped; a torn last
    line (no trailing newline: the file may still be being written) is a warning, not an error."""
    path = cand.abspath
    rel = cand.rel if isinstance(cand, Candidate) else cand.path
    out = JsonlResult()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        ctx.problem(rel, UNREADABLE, f"cannot read file: {_short(exc)}")
        return out
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n") and bool(lines and lines[-1].strip())
    if data.endswith(b"\n"):
        lines = lines[:-1]
    reported = 0
    last = len(lines)
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        reason = None
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError as exc:
            reason = f"invalid UTF-8 at byte {exc.start}"
        except (ValueError, RecursionError) as exc:
            reason = f"not valid JSON ({_short(exc)})"
        else:
            if not isinstance(obj, dict):
                reason = f"a JSON {type(obj).__name__}, not an object"
        if reason is None:
            out.records.append(obj)
            out.line_numbers.append(i)
            continue
        out.bad += 1
        if torn and i == last:
            ctx.warn(rel, f"line {i}: torn last line (file still being written?), skipped: {reason}")
            continue
        if reported < max_reported:
            ctx.problem(rel, BAD_LINE, f"line {i}: {reason}; line skipped")
        reported += 1
    if reported > max_reported:
        ctx.problem(rel, BAD_LINE, f"{reported - max_reported} more bad lines skipped")
    return out


def flatten(obj: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested dicts to ``a/b/c`` keys (JaxARC ``metrics``, nested trainer dicts)."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def as_float(v: Any) -> float | None | str:
    """A metric value as float; None for null; the marker '' for values that are not numbers."""
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("nan", "inf", "-inf", "infinity", "-infinity"):
            return float(low.replace("infinity", "inf"))
    return ""


def scalars_frame(
    rows: list[tuple[int | None, float | None, dict[str, Any]]],
    source: str,
    ctx: RunContext,
    layout: str,
) -> pl.DataFrame:
    """Long scalar frame ``step, time, key, value, source`` from (step, time, flat metrics) rows.

    Non-numeric values are not silently dropped: they are counted and named in a fidelity note.
    """
    steps: list[int | None] = []
    times: list[float | None] = []
    keys: list[str] = []
    values: list[float | None] = []
    skipped: dict[str, int] = {}
    for step, t, metrics in rows:
        for k, v in metrics.items():
            f = as_float(v)
            if f == "":
                skipped[k] = skipped.get(k, 0) + 1
                continue
            steps.append(step)
            times.append(t)
            keys.append(k)
            values.append(f)
    if skipped:
        names = ", ".join(sorted(skipped)[:8]) + (" ..." if len(skipped) > 8 else "")
        ctx.note(layout, f"{source}: {sum(skipped.values())} non-numeric metric values not mapped (keys: {names})")
    return pl.DataFrame(
        {
            "step": pl.Series(steps, dtype=pl.Int64),
            "time": pl.Series(times, dtype=pl.Float64),
            "key": pl.Series(keys, dtype=pl.String),
            "value": pl.Series(values, dtype=pl.Float64),
            "source": pl.Series([source] * len(keys), dtype=pl.String),
        }
    )


def coerce_step(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None
