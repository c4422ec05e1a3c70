"""Scalar metrics over steps (``summarize --scalars``): one row per metric key, aliases merged."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .._lazy import pl
from ..errors import UsageError
from .filters import StepRange


class HasScalars(Protocol):
    """What ``summarize_scalars`` reads: a run, or a view of its scalars (diff's per-step keys)."""

    @property
    def scalars(self) -> pl.LazyFrame: ...


# Metric keys that different trainer versions wrote for the same quantity (seed 000). Canonical name first.
DEFAULT_ALIASES: dict[str, str] = {
    "grad_global_norm": "grad/global_norm",
    "update_global_norm": "update/global_norm",
    "train-reward/mean": "train/reward/mean",
    "timeperf/step": "time/step_s",
}


def valid(col: str) -> pl.Expr:
    """Neither null nor NaN."""
    return pl.col(col).is_not_null() & pl.col(col).is_not_nan()


def merged_value(weight: str) -> pl.Expr:
    """The aggregation merging one key's values logged at one step by several shards (``value``, weighted by
    the column ``weight``): the weighted mean of the valid values, NaN if any shard logged NaN (a process
    whose loss diverged is not averaged away), else the first (null) value."""
    return (
        pl.when(pl.col("value").is_nan().any())
        .then(pl.lit(float("nan")))
        .when(valid("value").any())
        .then(
            (pl.col("value") * pl.col(weight)).filter(valid("value")).sum()
            / pl.col(weight).filter(valid("value")).sum()
        )
        .otherwise(pl.col("value").first())
        .alias("value")
    )


SCALAR_COLUMNS = ("key", "last", "mean", "min", "max", "count", "nan", "first_step", "last_step")


def load_aliases(path: str | Path | None = None, pairs: Sequence[str] = ()) -> dict[str, str]:
    """The alias table: defaults, then a JSON file ``{"old_key": "canonical_key"}``, then ``OLD=NEW`` pairs."""
    table = dict(DEFAULT_ALIASES)
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--aliases {path}: cannot read a JSON object ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise UsageError(f"--aliases {path}: expected a JSON object of strings {{old: canonical}}")
        table.update(data)
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise UsageError(f"--alias {pair!r}: expected OLD=NEW")
        table[old] = new
    return table


def merged_steps(
    run: HasScalars, *, aliases: dict[str, str] | None = None, steps: StepRange | None = None
) -> pl.LazyFrame:
    """One value per key and step (``key, step, value``): the shards that logged a key at a step merged by
    ``merged_value`` (weighted by their ``key__count`` companions, AReaL's convention, else a plain mean; NaN
    if one logged NaN); the companions hidden; ``aliases`` renamed first (none by default)."""
    lf = run.scalars.filter(pl.col("step").is_not_null())
    step_filter = (steps or StepRange()).expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    if aliases:
        lf = lf.with_columns(pl.col("key").replace(aliases))
    is_count = pl.col("key").str.ends_with("__count")
    values = lf.filter(~is_count)
    counts = lf.filter(is_count).select(
        "step", "source", pl.col("key").str.strip_suffix("__count"), pl.col("value").alias("weight")
    )
    counts = counts.group_by("step", "source", "key").agg(pl.col("weight").sum())
    return (
        values.join(counts, on=["step", "source", "key"], how="left")
        .with_columns(pl.col("weight").fill_null(1.0))
        .group_by("key", "step")
        .agg(merged_value("weight"))
    )


def summarize_scalars(
    run: HasScalars,
    *,
    keys: Sequence[str] = (),
    aliases: dict[str, str] | None = None,
    steps: StepRange | None = None,
) -> pl.DataFrame:
    """Per metric key over steps: ``last, mean, min, max, count, nan, first_step, last_step``.

    Shards (several processes, or several files) logging one key at one step are merged first: a weighted
    mean when ``key__count`` companions give the weights (AReaL's convention), else a plain mean. The
    companions themselves are hidden. Aliased keys are renamed to their canonical name before merging.
    """
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    out = (
        merged_steps(run, aliases=aliases, steps=steps)
        .sort("key", "step")
        .group_by("key", maintain_order=True)
        .agg(
            # What the run ended on: the value at the last step logged (NaN if it was), not the last finite one.
            pl.col("value").filter(pl.col("value").is_not_null()).last().alias("last"),
            pl.col("value").filter(valid("value")).mean().alias("mean"),
            pl.col("value").filter(valid("value")).min().alias("min"),
            pl.col("value").filter(valid("value")).max().alias("max"),
            valid("value").sum().cast(pl.Int64).alias("count"),
            pl.col("value").is_nan().sum().cast(pl.Int64).alias("nan"),
            pl.col("step").min().alias("first_step"),
            pl.col("step").max().alias("last_step"),
        )
        .collect()
    )
    if keys:
        names = [k for k in out["key"].to_list() if any(fnmatch.fnmatchcase(k, g) for g in keys)]
        out = out.filter(pl.col("key").is_in(names))
    return out.select(SCALAR_COLUMNS).sort("key")
