"""Scalar metrics over steps (``summarize --scalars``): one row per metric key, aliases merged."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .._lazy import pl
from ..errors import UsageError
from .filters import StepRange

if TYPE_CHECKING:
    from ..run import Run


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


# A ``StatsTracker.summary`` family (``k/mean, k/std, k/min, k/max, k/count``, ``k/nonfinite``; ``k/mean__count``
# the shard's number of values, else its ``k/count``: ``StatsTracker`` writes both the same) merges across shards as
# the statistics they are: the least minimum, the greatest maximum, the summed counts, the pooled standard
# deviation. A key is a member where its shard's record also holds ``k/mean``; any other key is merged as a weighted
# mean (``merge_shards``).
FAMILY_STATS = ("std", "min", "max", "count", "nonfinite")
_SUMMED = ("count", "nonfinite")


def aliased_key(aliases: dict[str, str] | None) -> pl.Expr:
    """``key`` renamed by ``aliases``; a ``<key>__count`` weight follows its key (``old__count`` becomes
    ``new__count``), so that a renamed key keeps its weights."""
    if not aliases:
        return pl.col("key")
    is_weight = pl.col("key").str.ends_with("__count")
    base = pl.col("key").str.strip_suffix("__count").replace(aliases)
    return pl.when(is_weight).then(base + "__count").otherwise(base).alias("key")


def aliased(lf: pl.LazyFrame, aliases: dict[str, str] | None) -> pl.LazyFrame:
    """Scalar rows (``step, key, value, source, record``) with their keys renamed by ``aliases``, and one value
    per shard, step and key after the renaming: where one shard logged a quantity under two of its names at one
    step (``grad_global_norm`` and ``grad/global_norm``: a trainer that writes the old name too, for old
    dashboards), the canonical name's value is kept, with its ``__count`` weight (it belongs with the rest of
    its family: ``train/reward/std``, ...); between two old names, the later line's. Merging them as two
    shards' values gave a figure nobody logged (their mean)."""
    if not aliases:
        return lf
    raw = pl.col("key").str.strip_suffix("__count")
    if not lf.select(raw.is_in(list(aliases)).any()).collect().item():
        return lf.with_columns(aliased_key(aliases))  # no key logged under an old name: nothing to choose
    # Only the rows of a quantity logged under two names by one shard at one step choose: those of the canonical
    # name are kept, else those of the old name of the later record; the rows of one name are all kept (several
    # records of one step in AReaL's stats, merged as shards are by ``merge_shards``).
    named = raw.is_in([*aliases, *aliases.values()])
    group = ["source", "step", "__base"]
    chosen = (
        lf.filter(named)
        .with_columns(raw.alias("__raw"), raw.replace(aliases).alias("__base"), aliased_key(aliases))
        .with_columns(
            pl.when((pl.col("__raw") == pl.col("__base")).any().over(group))
            .then(pl.col("__base"))
            .otherwise(pl.col("__raw").sort_by("record").last().over(group))
            .alias("__kept")
        )
        .filter(pl.col("__raw") == pl.col("__kept"))
        .drop("__raw", "__base", "__kept")
    )
    return pl.concat([lf.filter(~named), chosen])


def alias_collisions(run: HasScalars, aliases: dict[str, str] | None) -> str | None:
    """A note where a shard logged one quantity under two of its names at one step (``aliased`` kept one), else
    None: which names, how many steps, the first."""
    if not aliases:
        return None
    raw = pl.col("key").str.strip_suffix("__count")
    lf = run.scalars.filter(pl.col("step").is_not_null() & ~pl.col("key").str.ends_with("__count"))
    lf = lf.filter(pl.col("key").is_in([*aliases, *aliases.values()]))
    df = (
        lf.with_columns(pl.col("key").alias("__raw"), raw.replace(aliases).alias("key"))
        .group_by("source", "step", "key")
        .agg(pl.col("__raw").unique().sort().alias("names"))
        .filter(pl.col("names").list.len() > 1)
        .collect()
    )
    if df.is_empty():
        return None
    per_key = (
        df.explode("names")
        .group_by("key")
        .agg(pl.col("names").unique().sort(), pl.col("step").n_unique().alias("n"), pl.col("step").min())
    )
    said = [
        f"{r['key']} ({', '.join(r['names'])}: {r['n']} step(s), first {r['step']})"
        for r in per_key.sort("key").iter_rows(named=True)
    ]
    shown = "; ".join(said[:3]) + (f"; {len(said) - 3} more" if len(said) > 3 else "")
    return (
        f"logged under two of its names by one process at a step: {shown}; the canonical name's value kept "
        "(between two old names, the later line's), not their mean"
    )


def merge_shards(lf: pl.LazyFrame) -> pl.LazyFrame:
    """One value per key and step (``key, step, value``) from scalar rows (``step, key, value, source,
    record``; keys already aliased): each value weighted by the ``key__count`` companion of its own record
    (AReaL's convention; 1 without one, also beside shards that have one: ``StatsTracker`` writes ``k__count``
    only for more than one value, so a value without it is one value; ``mixed_weights`` says where shards
    disagree); the shards that logged a key at a step merged as the weighted mean of
    their valid values (one value, or equal ones: that value exactly; else within their range: ``within``), NaN if
    one logged NaN (a process whose loss diverged is not averaged away), null if
    none has a value (a shard of weight 0, ``__count`` 0, is a mean of nothing: no value); a summary family's
    members as their statistic (``FAMILY_STATS``: shards with no values left out); the companions hidden.

    The scalars are in memory already (parsed JSONL): their few distinct keys are classified in Python, so
    that the weights and families cost a join only where a run has them, and every aggregation is a plain
    sum, min, max or count over precomputed columns (a per-group expression costs seconds at 10,000 steps x
    50 keys)."""
    on = ["step", "source", "record", "key"]
    df = lf.select(*on, "value").collect()
    names = set(df["key"].unique().to_list())
    is_weight = pl.col("key").str.ends_with("__count")
    if any(k.endswith("__count") for k in names):
        weights = (
            df.filter(is_weight)
            .select(*on[:3], pl.col("key").str.strip_suffix("__count"), pl.col("value").alias("weight"))
            .group_by(on)
            .agg(pl.col("weight").sum())
        )
        rows = df.filter(~is_weight).join(weights, on=on, how="left", nulls_equal=True)
        rows = rows.with_columns(pl.col("weight").is_not_null().alias("weighed"), pl.col("weight").fill_null(1.0))
    else:
        rows = df.with_columns(pl.lit(1.0).alias("weight"), pl.lit(False).alias("weighed"))
    family: dict[str, str] = {}  # a member's key (and its family's mean key) -> the family
    stat_of: dict[str, str] = {}
    for k in names:
        head, sep, tail = k.rpartition("/")
        if sep and tail in FAMILY_STATS and f"{head}/mean" in names:
            family[k] = family[f"{head}/mean"] = head
            stat_of[k] = tail
    if family:
        rows = rows.with_columns(
            pl.col("key").replace_strict(family, default=None, return_dtype=pl.String).alias("family"),
            pl.col("key").replace_strict(stat_of, default=None, return_dtype=pl.String).alias("stat"),
        )
        heads = set(family.values())
        # A shard's n: its ``k/mean__count``, else the ``k/count`` of the same record (a file that holds the family
        # without the companions: weighing each shard's mean as one value gave a mean its own merged count
        # contradicts), else 1.
        counts = rows.filter(pl.col("key").is_in([f"{h}/count" for h in heads]) & valid("value")).select(
            *on[:3], "family", pl.col("value").alias("family_count")
        )
        means = (
            rows.filter(pl.col("key").is_in([f"{h}/mean" for h in heads]))
            .join(counts, on=[*on[:3], "family"], how="left", nulls_equal=True)
            .select(
                *on[:3],
                "family",
                pl.col("value").alias("family_mean"),
                pl.when(pl.col("weighed"))
                .then(pl.col("weight"))
                .otherwise(pl.col("family_count").fill_null(pl.col("weight")))
                .alias("n"),
            )
        )
        rows = rows.join(means, on=[*on[:3], "family"], how="left", nulls_equal=True)
        # The family's mean is weighed by n too, as the weighted mean of its shards.
        rows = rows.with_columns(
            pl.when(pl.col("key") == pl.col("family") + "/mean").then(pl.col("n")).otherwise("weight").alias("weight")
        )
        # A member only where its own record holds the family's mean (a shard's n).
        rows = rows.with_columns(pl.when(pl.col("n").is_not_null()).then(pl.col("stat")).alias("stat"))
    else:
        rows = rows.with_columns(pl.lit(None, dtype=pl.String).alias("stat"), pl.lit(None, dtype=pl.Float64).alias("n"))
    # A member's weight is its shard's number of values; the summed members count whatever their weight.
    w = pl.when(pl.col("stat").is_null()).then(pl.col("weight")).otherwise(pl.col("n"))
    live = (w != 0) | pl.col("stat").is_in(_SUMMED)
    good = live & valid("value")
    rows = rows.with_columns(
        (live & pl.col("value").is_nan()).alias("nan"),
        pl.when(good).then(pl.col("value")).alias("v"),
        pl.when(good).then(w).alias("w"),
    )
    out = rows.group_by("key", "step").agg(
        pl.col("stat").first(),
        pl.col("nan").any(),
        pl.col("v").count().alias("good"),
        (pl.col("v") * pl.col("w")).sum().alias("vw"),
        pl.col("w").sum(),
        pl.col("v").sum().alias("total"),
        pl.col("v").min().alias("least"),
        pl.col("v").max().alias("most"),
    )
    out = out.join(_unsummed(rows, out), on=["key", "step"], how="left")
    if family:
        # The pooled std: within-shard variance plus the spread of the shards' means around their weighted mean.
        spread = rows.filter(pl.col("stat") == "std").with_columns(
            pl.when(pl.col("v").is_not_null()).then("family_mean").alias("m")
        )
        centre = spread.group_by("key", "step").agg(
            ((pl.col("m") * pl.col("w")).sum() / pl.col("w").sum()).alias("centre")
        )
        pooled = (
            spread.join(centre, on=["key", "step"])
            .group_by("key", "step")
            .agg(
                (((pl.col("v") ** 2 + (pl.col("m") - pl.col("centre")) ** 2) * pl.col("w")).sum() / pl.col("w").sum())
                .sqrt()
                .alias("pooled")
            )
        )
        out = out.join(pooled, on=["key", "step"], how="left")
    stat = pl.col("stat")
    value = (
        pl.when(pl.col("nan"))
        .then(pl.lit(float("nan")))
        .when(pl.col("good") == 0)
        .then(pl.lit(None, dtype=pl.Float64))
        .when(stat.is_null())
        .then(within(pl.coalesce("scaled", pl.col("vw") / pl.col("w")), pl.col("least"), pl.col("most")))
        .when(stat == "min")
        .then(pl.col("least"))
        .when(stat == "max")
        .then(pl.col("most"))
        .when(stat.is_in(_SUMMED))
        .then(pl.col("total"))
        .otherwise(pl.col("pooled") if family else pl.lit(None, dtype=pl.Float64))
    )
    return out.lazy().select("key", "step", value.alias("value"))


def _unsummed(rows: pl.DataFrame, out: pl.DataFrame) -> pl.DataFrame:
    """``key, step, scaled``: the weighted mean of the groups of ``out`` whose plain sums went past float64 (values
    near 1e308: the sum is inf, and ``within`` clamped that inf to the largest value, an audit), worked out on the
    values and weights scaled by the group's largest (each at most 1, so their sums cannot overflow), then scaled
    back; empty where no group needs it (the sums of every other group are left as they are)."""
    need = out.filter(
        pl.col("stat").is_null()
        & (pl.col("good") > 0)
        & ~pl.col("nan")
        & ~(pl.col("vw") / pl.col("w")).is_finite()
        & pl.col("least").is_finite()
        & pl.col("most").is_finite()
    )
    if need.is_empty():
        return pl.DataFrame(schema={"key": rows.schema["key"], "step": rows.schema["step"], "scaled": pl.Float64})
    group = ["key", "step"]
    part = rows.join(need.select(group), on=group, how="semi").filter(pl.col("v").is_not_null())
    scaled = (
        part.with_columns(
            (pl.col("v") / pl.col("v").abs().max().over(group)).alias("sv"),
            (pl.col("w") / pl.col("w").abs().max().over(group)).alias("sw"),
            pl.col("v").abs().max().over(group).alias("top"),
        )
        .group_by(group)
        .agg(((pl.col("sv") * pl.col("sw")).sum() / pl.col("sw").sum() * pl.col("top").first()).alias("scaled"))
    )
    return scaled.select(*group, pl.col("scaled").cast(pl.Float64))


def mean_of(values: pl.Expr) -> pl.Expr:
    """The mean of ``values`` (an aggregation), also where their sum goes past float64 (values near 1e308: polars'
    mean is then inf, clamped by ``within`` to the largest value, shown as the mean, an audit): then the mean of the
    values scaled by the largest magnitude (each at most 1: their sum cannot overflow), scaled back."""
    plain = values.mean()
    top = values.abs().max()
    return pl.when(plain.is_finite() | ~top.is_finite() | (top == 0)).then(plain).otherwise((values / top).mean() * top)


def within(mean: pl.Expr, lo: pl.Expr, hi: pl.Expr) -> pl.Expr:
    """A (weighted) ``mean`` of values between ``lo`` and ``hi``, as a mean is: the value itself where they are
    all one value (one shard: ``0.1 * 3 / 3`` is 0.10000000000000002, which diff read as lower than another run's
    0.1), else kept within their range (the rounding of the sum can take it an ulp beyond). NaN stays NaN (±inf of
    both signs): polars orders NaN above every number, so it is passed through first (a mean of +inf and -inf
    was clamped to +inf, a review)."""
    return (
        pl.when(mean.is_nan())
        .then(mean)
        .when(lo == hi)
        .then(lo)
        .when(mean < lo)
        .then(lo)
        .when(mean > hi)
        .then(hi)
        .otherwise(mean)
    )


def mixed_weights(run: HasScalars, aliases: dict[str, str] | None = None, steps: StepRange | None = None) -> str | None:
    """A note where the shards (records) that logged a key at a step disagree on having a ``key__count`` weight
    (or, for a summary family's ``k/mean``, its record's ``k/count``), else None: ``merge_shards`` weighs a value
    without one as one value (as ``StatsTracker`` writes them: a count only for more than one), which is a guess
    for a file written otherwise. Which keys, how many steps, the first. ``aliases`` and ``steps`` as
    ``merged_steps`` takes them."""
    lf = run.scalars.filter(pl.col("step").is_not_null())
    step_filter = (steps or StepRange()).expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    is_weight = pl.col("key").str.ends_with("__count")
    # Only a run with a weight of some kind can disagree on one: a ``k__count``, or a ``k/count`` (a summary
    # family's ``k/mean`` is weighed by it: an AReaL file with ``k/count`` alone was passed over here, its
    # shards without one weighed as one value with no note).
    if not lf.select((is_weight | pl.col("key").str.ends_with("/count")).any()).collect().item():
        return None
    on = ["step", "source", "record", "key"]
    df = aliased(lf, aliases).select(*on).collect()
    weights = df.filter(is_weight).select(*on[:3], pl.col("key").str.strip_suffix("__count"))
    # A summary family's ``k/mean`` is weighed by the ``k/count`` of its record where it has no companion.
    values = df.filter(~is_weight)
    counted = values.filter(pl.col("key").str.ends_with("/count")).select(
        *on[:3], pl.col("key").str.strip_suffix("/count") + "/mean"
    )
    weights = pl.concat([weights, counted.join(values, on=on, how="semi", nulls_equal=True)]).unique()
    weighted = weights["key"].unique().to_list()
    rows = df.filter(~is_weight & pl.col("key").is_in(weighted))
    has = rows.join(weights.with_columns(pl.lit(True).alias("has")), on=on, how="left", nulls_equal=True)
    mixed = (
        has.group_by("key", "step")
        .agg(pl.col("has").is_not_null().any().alias("some"), pl.col("has").is_null().any().alias("none"))
        .filter(pl.col("some") & pl.col("none"))
        .group_by("key")
        .agg(pl.len().alias("n"), pl.col("step").min())
        .sort("key")
    )
    if mixed.is_empty():
        return None
    said = [f"{r['key']} ({r['n']} step(s), first {r['step']})" for r in mixed.iter_rows(named=True)]
    shown = "; ".join(said[:3]) + (f"; {len(said) - 3} more" if len(said) > 3 else "")
    # A family's k/mean weighed by its record's k/count: the merged k/count sums the counts logged, so a shard
    # without one, weighed as one value in the mean, adds nothing to it; said, since the two then disagree.
    by_count = sorted(set(counted["key"].to_list()) & set(mixed["key"].to_list()))
    counts = ", ".join(k.removesuffix("/mean") + "/count" for k in by_count[:3]) + (
        ", ..." if len(by_count) > 3 else ""
    )
    family = (
        f"; a summary family's merged k/count ({counts}) sums the counts the shards logged: a shard without one "
        "adds none to it, though its k/mean counted as one value"
        if by_count
        else ""
    )
    return (
        f"shards that disagree on a __count weight at a step: {shown}; a value without one (a key__count, or for a "
        "summary family's k/mean its record's k/count) is weighed as one value (StatsTracker writes a count only "
        f"for more than one), not left out nor averaged plainly{family}"
    )


def file_notes(run: Run) -> list[str]:
    """The fidelity notes of ``run``'s scalars files (``RunContext.note``, each naming its file first): values a
    reader could not map (``"loss": "abc"``), weights without their key, a counter beside the step. None of them
    is in any scalar figure, and only ``inspect`` said so: ``summarize --scalars`` and ``diff`` left such a step
    out of a key's steps without a word (a window ``0..12 (10 steps)`` missing step 6)."""
    paths = [f.path for f in run.files if f.kind == "scalars"]
    return [n["message"] for n in run.fidelity if any(n["message"].startswith(f"{p}: ") for p in paths)]


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
    """One value per key and step (``key, step, value``): the run's scalars, ``aliases`` renamed first (none by
    default), merged across shards by ``merge_shards``."""
    lf = run.scalars.filter(pl.col("step").is_not_null())
    step_filter = (steps or StepRange()).expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    return merge_shards(aliased(lf, aliases))


def summarize_scalars(
    run: HasScalars,
    *,
    keys: Sequence[str] = (),
    aliases: dict[str, str] | None = None,
    steps: StepRange | None = None,
) -> pl.DataFrame:
    """Per metric key over steps: ``last, mean, min, max, count, nan, first_step, last_step``.

    Shards (several processes, or several files) logging one key at one step are merged first
    (``merge_shards``): a weighted mean when ``key__count`` companions give the weights (AReaL's convention),
    else a plain mean; a summary family's min, max, count and std as those statistics. The companions
    themselves are hidden. Aliased keys (and their companions) are renamed to their canonical name before
    merging.
    """
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    out = (
        merged_steps(run, aliases=aliases, steps=steps)
        .sort("key", "step")
        .group_by("key", maintain_order=True)
        .agg(
            # What the run ended on: the value at the last step logged (NaN if it was), not the last finite one.
            pl.col("value").filter(pl.col("value").is_not_null()).last().alias("last"),
            mean_of(pl.col("value").filter(valid("value"))).alias("mean"),
            pl.col("value").filter(valid("value")).min().alias("min"),
            pl.col("value").filter(valid("value")).max().alias("max"),
            valid("value").sum().cast(pl.Int64).alias("count"),
            pl.col("value").is_nan().sum().cast(pl.Int64).alias("nan"),
            # The steps that hold a value of the key (NaN included): a step whose weights are all 0 holds none,
            # so that ``last`` is the value at ``last_step`` (a final step of weight 0 was its last_step, its
            # value the step before's).
            pl.col("step").filter(pl.col("value").is_not_null()).min().alias("first_step"),
            pl.col("step").filter(pl.col("value").is_not_null()).max().alias("last_step"),
        )
        # A mean of values lies within their range: polars' mean of twenty steps of 0.30000000000000004 is 0.3,
        # below its own min (0.29999999999999993 elsewhere).
        .with_columns(within(pl.col("mean"), pl.col("min"), pl.col("max")).alias("mean"))
        .collect()
    )
    if keys:
        names = [k for k in out["key"].to_list() if any(fnmatch.fnmatchcase(k, g) for g in keys)]
        out = out.filter(pl.col("key").is_in(names))
    return out.select(SCALAR_COLUMNS).sort("key")
