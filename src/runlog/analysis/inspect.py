"""What is in a run and is it valid: built from discovery (footers, JSONL lines) plus the numeric columns."""

from __future__ import annotations

import math
from collections import Counter
from functools import reduce
from typing import Any

from .._lazy import pl
from ..formats.common import EXCEPTION_COLUMNS
from ..run import Run


def step_gaps(steps: list[int], known: list[int] | None = None) -> tuple[int, list[list[int]]]:
    """The stride of a split's steps (gcd of the differences: runs that log every N steps are not gappy)
    and the runs of missing steps between its first and last, as ``[[first_missing, last_missing], ...]``.

    ``known`` are all steps named by files, readable or not: they set the stride, so that an unreadable
    file leaves a gap rather than doubling the stride."""
    uniq = sorted(set(steps))
    if len(uniq) < 2:
        return 1, []
    every = sorted(set(uniq) | set(known or []))
    stride = reduce(math.gcd, (b - a for a, b in zip(every, every[1:], strict=False))) or 1
    gaps: list[list[int]] = []
    for a, b in zip(uniq, uniq[1:], strict=False):
        if b - a > stride:
            gaps.append([a + stride, b - stride])
    return stride, gaps


def _numeric_stats(run: Run) -> dict[str, dict[str, int]]:
    """count / null / NaN of the canonical numeric columns: the sample reward and each role's reward and KL.
    Reads those columns' data (projection pushdown), never text: this is ``inspect --deep``."""
    out: dict[str, dict[str, int]] = {}
    [r_df, roles] = run.collect(lambda: [_reward_query(run), _roles_query(run)])
    r = r_df.row(0, named=True)
    if r["count"]:
        out["reward"] = {k: int(v or 0) for k, v in r.items()}
    for row in roles.iter_rows(named=True):
        for metric in ("reward", "kl"):
            out[f"{row['role']}/{metric}"] = {
                "count": int(row["count"]),
                "null": int(row[f"{metric}_null"]),
                "nan": int(row[f"{metric}_nan"]),
            }
    return out


def _reward_query(run: Run) -> pl.LazyFrame:
    return run.samples.select(
        pl.len().alias("count"),
        pl.col("reward").is_null().sum().alias("null"),
        pl.col("reward").is_nan().sum().alias("nan"),
    )


def _roles_query(run: Run) -> pl.LazyFrame:
    """Per-role null/NaN counts. The role rows come from ``Run.numeric``, each layout's fastest route."""
    return (
        run.numeric({}, [])
        .filter(pl.col("role").is_not_null())
        .group_by("role", maintain_order=True)
        .agg(
            pl.len().alias("count"),
            pl.col("reward").is_null().sum().alias("reward_null"),
            pl.col("reward").is_nan().sum().alias("reward_nan"),
            pl.col("kl").is_null().sum().alias("kl_null"),
            pl.col("kl").is_nan().sum().alias("kl_nan"),
        )
    )


def _exceptions(run: Run) -> int:
    """Failed trajectories, from footer null counts (Parquet) or the already-parsed frames (JSONL, CSV);
    only a Parquet file without statistics for its exception column is read (that one column)."""
    total = 0
    unread = []
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        col = next((c for c in EXCEPTION_COLUMNS if c in f.columns), None)
        if f.fmt != "parquet":
            frame = f.payload if hasattr(f.payload, "get_column") else None
            if frame is not None and col is not None and col in frame.columns:
                total += frame.height - frame.get_column(col).null_count()
        elif col is not None and col in f.null_counts and f.rows is not None:
            total += f.rows - f.null_counts[col]
        elif col is not None:
            unread.append(f)
    if unread:
        from ..formats.common import read_parquet_columns

        for f in unread:
            try:
                column = read_parquet_columns(f, [col_of(f)]).column(0)
                total += len(column) - column.null_count
            except Exception as exc:  # noqa: BLE001  (a corrupt column is a problem of that file)
                run.ctx.problem(f.path, "unreadable", f"exception column unreadable: {str(exc).splitlines()[0][:200]}")
    return total


def col_of(f: Any) -> str:
    return next(c for c in EXCEPTION_COLUMNS if c in f.columns)


def _footer_numeric(run: Run) -> dict[str, dict[str, int]]:
    """values / null of every numeric sample column, from footer statistics (Parquet) or the parsed
    frame (JSONL, CSV). NaN is not in Parquet statistics: it is None here; ``--deep`` counts it."""
    out: dict[str, dict[str, Any]] = {}
    for f in run.files:
        if f.kind != "samples" or not f.readable or f.rows is None:
            continue
        if f.fmt in ("jsonl", "csv") and f.payload is not None:
            _add_frame_numeric(out, f.payload)
            continue
        for col, n_null in f.null_counts.items():
            if col in EXCEPTION_COLUMNS or col in ("schema_version", "step") or not _is_number_type(f.columns[col]):
                continue
            entry = out.setdefault(col, {"count": 0, "null": 0, "nan": None})
            entry["count"] += f.rows
            entry["null"] += n_null
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "reward", kv[0])))


def _add_frame_numeric(out: dict[str, dict[str, Any]], frame: Any) -> None:
    """A JSONL/CSV file is parsed in memory already: its NaN counts cost nothing, so they are exact."""
    for col, dtype in frame.schema.items():
        if not dtype.is_numeric() or col in ("schema_version", "step"):
            continue
        s = frame.get_column(col)
        entry = out.setdefault(col, {"count": 0, "null": 0, "nan": 0})
        entry["count"] += s.len()
        entry["null"] += s.null_count()
        if entry["nan"] is not None:
            entry["nan"] += int(s.is_nan().sum()) if dtype.is_float() else 0


def _is_number_type(t: str) -> bool:
    return t in ("double", "float", "halffloat") or t.startswith(("int", "uint", "Float", "Int", "UInt"))


def inspect_run(run: Run, *, deep: bool = False) -> dict[str, Any]:
    """The inspect report as plain data (the JSON output; the table is drawn from it).

    By default it reads footers and JSONL lines only. ``deep`` also reads the numeric columns (never the
    text) to count NaN per role, which Parquet statistics do not record.
    """
    files = run.files
    versions: Counter[str] = Counter(
        str(f.schema_version) for f in files if f.schema_version is not None and f.kind != "manifest"
    )
    layouts: dict[str, dict[str, Any]] = {}
    for f in files:
        entry = layouts.setdefault(f.layout, {"files": 0, "rows": 0, "bytes": 0, "by_version": Counter()})
        entry["files"] += 1
        entry["bytes"] += f.bytes
        entry["rows"] += (f.rows or 0) if f.readable else 0
        if f.kind != "manifest":
            label = "unreadable" if not f.readable else (str(f.schema_version) if f.schema_version is not None else "-")
            entry["by_version"][label] += 1
    for lay in run.layouts:
        if lay.name in layouts:
            layouts[lay.name]["description"] = lay.description
            layouts[lay.name]["by_version"] = dict(layouts[lay.name]["by_version"])

    steps_by_split: dict[str, set[int]] = {}
    named_by_split: dict[str, set[int]] = {}
    scalar_steps: set[int] = set()
    rows_by_kind: Counter[str] = Counter()
    for f in files:
        if f.kind == "samples":
            named_by_split.setdefault(f.split or "?", set()).update(f.all_steps())
        if not f.readable or f.kind == "manifest":
            continue
        rows_by_kind[f.kind] += f.rows or 0
        if f.kind == "samples":
            steps_by_split.setdefault(f.split or "?", set()).update(f.all_steps())
        elif f.kind == "scalars":
            scalar_steps.update(f.all_steps())

    steps: dict[str, list[int]] = {}
    gaps: dict[str, list[list[int]]] = {}
    strides: dict[str, int] = {}
    for split in sorted(steps_by_split):
        s = steps_by_split[split]
        if not s:
            continue
        steps[split] = [min(s), max(s)]
        strides[split], gaps[split] = step_gaps(sorted(s), sorted(named_by_split.get(split, ())))

    scalar_info: dict[str, Any] = {"records": rows_by_kind.get("scalars", 0), "keys": 0, "steps": None}
    if any(f.kind == "scalars" and f.readable for f in files):
        keys = run.scalars.select(pl.col("key").n_unique()).collect().item()
        scalar_info["keys"] = int(keys)
        if scalar_steps:
            scalar_info["steps"] = [min(scalar_steps), max(scalar_steps)]
            scalar_info["stride"], scalar_info["step_gaps"] = step_gaps(sorted(scalar_steps))

    has_samples = any(f.kind == "samples" and f.readable for f in files)
    # Reading data (--deep, exception columns) can find corrupt files and mark them: do it before the report
    # captures the files and problems, so that the two agree.
    numeric = (_numeric_stats(run) if deep else _footer_numeric(run)) if has_samples else {}
    exceptions = _exceptions(run) if has_samples else 0
    problems = [p.as_dict() for p in run.problems]
    return {
        "run": str(run.root),
        "name": run.name,
        "layouts": layouts,
        "files": [f.as_dict() for f in files],
        "schema_versions": dict(sorted(versions.items())),
        "rows": sum(rows_by_kind.values()),
        "rows_by_kind": dict(rows_by_kind),
        "steps": steps,
        "step_gaps": gaps,
        "step_stride": strides,
        "roles": run.role_names(),
        "numeric_source": "data" if deep else "footers",
        "numeric": numeric,
        "exceptions": exceptions,
        "scalars": scalar_info,
        "bytes": sum(f.bytes for f in files),
        "unmatched": list(run.unmatched),
        "problems": problems,
        "errors": sum(1 for p in run.problems if not p.is_warning),
        "warnings": sum(1 for p in run.problems if p.is_warning),
        "fidelity": list(run.fidelity),
    }
