"""Pearson correlations over samples between the total reward, each role's reward and each component."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._lazy import pl
from .filters import Filters, apply_filters
from .scalars import valid

if TYPE_CHECKING:
    from ..run import Run


def correlations(run: Run, *, filters: Filters | None = None) -> pl.DataFrame:
    """Pearson correlations, over samples, between every pair of: the total reward, each role's reward and
    each reward component (seed 001: conflicting reward functions show as negative correlations). Each
    pair uses the samples where both values are valid (not null, not NaN). A sample is a row of its file,
    not a sample id: two rows that share an id (a verl step dumped twice, a copied TRL file, a native run
    that logs an id twice) are two samples, as summarize counts them. Per split (a ``split`` column first)
    when the run has several and ``filters`` pick none: train and eval are never pooled silently."""
    from .views import run_splits

    filters = filters or Filters()
    by_split = not filters.splits and len(run_splits(run)) > 1
    components = run.component_names()
    # A sample's identity: its file and its place in the frame it is read in (evaluated on the samples, before
    # their role rows are made), not its id, which two rows may share.
    carry = {
        "source": pl.col("source"),
        "row": pl.int_range(pl.len(), dtype=pl.Int64),
        "step": pl.col("step"),
        "split": pl.col("split"),
        "total": pl.col("reward"),
    }
    [long] = run.collect(lambda: [apply_filters(run.numeric(carry, components), filters, roles_too=False)])
    index = ["source", "row", "step", "split"]
    per_sample = long.group_by(index, maintain_order=True).agg(
        pl.col("total").first().alias("reward"),
        *[pl.col(f"component/{n}").first() for n in components],
    )
    roles = long.filter(pl.col("role").is_not_null())
    if filters.roles:
        roles = roles.filter(pl.col("role").is_in(list(filters.roles)))
    if roles.height:
        wide = roles.pivot(on="role", index=index, values="reward", aggregate_function="first")
        wide = wide.rename({c: f"reward/{c}" for c in wide.columns if c not in index})
        per_sample = per_sample.join(wide, on=index, how="left", nulls_equal=True)
    variables = [c for c in per_sample.columns if c not in index]
    parts = (
        sorted(
            per_sample.partition_by("split", as_dict=True).items(), key=lambda kv: (kv[0][0] is None, kv[0][0] or "")
        )
        if by_split
        else [((None,), per_sample)]
    )
    rows = []
    for (split,), frame in parts:
        for i, x in enumerate(variables):
            for y in variables[i + 1 :]:
                pair = frame.select(x, y).filter(valid(x) & valid(y))
                n = pair.height
                rows.append(
                    {"split": split, "x": x, "y": y, "pearson": _pearson(pair, x, y) if n > 1 else None, "n": n}
                )
    schema = {"split": pl.String, "x": pl.String, "y": pl.String, "pearson": pl.Float64, "n": pl.Int64}
    out = pl.DataFrame(rows, schema=schema)
    return out if by_split else out.drop("split")


def _pearson(pair: pl.DataFrame, x: str, y: str) -> float | None:
    """Pearson's r of two columns of valid values; None where it is not defined: a column without spread
    (rounding noise made pl.corr print -1 or 1e-16 for two constants) or holding +-inf.

    Each column is first scaled by a power of two near its largest magnitude (exact: values near 1e300 or
    1e-300 would otherwise overflow or underflow in the sums), then centred on its mean, twice (the second
    pass takes out the rounding of the first), and scaled by its largest deviation: a reward of 1e12 plus
    noise of 1e-3 keeps its digits (uncentred sums of squares lost them: r 0.988 for 0.9948)."""
    cols = []
    for c in (x, y):
        col = pair[c].cast(pl.Float64)
        lo, hi = col.min(), col.max()
        if not isinstance(lo, float) or not isinstance(hi, float) or lo == hi:
            return None
        if lo != lo or hi != hi or abs(lo) == float("inf") or abs(hi) == float("inf"):
            return None
        e = math.frexp(max(abs(lo), abs(hi)))[1]
        col = col * 2.0 ** -(e // 2) * 2.0 ** -(e - e // 2)  # in two halves: 2**1074 itself is no float
        for _ in range(2):
            col = col - col.mean()
        spread = col.abs().max()
        if not isinstance(spread, float) or spread == 0.0:
            return None
        cols.append(col / spread)
    a, b = cols
    sxy, sxx, syy = float((a * b).sum()), float((a * a).sum()), float((b * b).sum())
    if not sxx or not syy:
        return None
    r = sxy / math.sqrt(sxx) / math.sqrt(syy)
    return None if r != r else max(-1.0, min(1.0, r))
