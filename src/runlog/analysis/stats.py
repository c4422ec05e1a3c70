"""The statistics of a summary, declared once: what each measure reports, as final values or as partials.

A *measure* is one quantity aggregated per group (the reward, the KL, the exception flag, a reward
component). Each of its *statistics* says three things:

- ``final``: the value over a group's values, computed in one pass (``summarize``);
- ``partial``: the mergeable partial it is computed from when the data is summarised in parts (a run's
  chunks, a fleet's runs): ``n, mean, M2`` for a mean and a variance (Chan et al.: they merge exactly,
  unlike raw sums of squares), min, max, counts;
- ``finish``: the final value from the merged partial (``runlog.analysis.partials.combine_partials``).

The values a statistic sees are already clean (``Source.value``: NaN and null made null, rows outside the
measure's rows null), so every aggregation skips nulls natively; NaN and null are counted apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._lazy import pl


@dataclass(frozen=True)
class Source:
    """A measure's values in a query: ``value`` (NaN, null and rows outside the measure made null), and where
    the measure counts them, whether the raw value was NaN (``nan``) or null (``null``), as booleans."""

    value: pl.Expr
    nan: pl.Expr | None = None
    null: pl.Expr | None = None


@dataclass(frozen=True)
class Partial:
    """Partial columns of a measure ``m`` (``columns(source, m)``) and their merge over parts (``merge(m)``,
    aggregations within a group of parts)."""

    columns: Callable[[Source, str], list[pl.Expr]]
    merge: Callable[[str], list[pl.Expr]]


@dataclass(frozen=True)
class Statistic:
    """One reported statistic: the column ``<measure>_<suffix>``."""

    suffix: str
    final: Callable[[Source], pl.Expr]
    partial: str  # a key of PARTIALS
    finish: Callable[[str], pl.Expr]


# A prompt group's rewards are "all equal" (zero advantage) when equal, or when their sample standard deviation
# is at most this: TRL's test for its frac_reward_zero_std (``torch.isclose(std, 0)``, atol 1e-8), so that rewards
# that differ by float round-off only (a std of 1e-10: advantages of about 1e-6) are no learning signal either.
ZERO_STD = 1e-8


def flat(values: pl.Expr) -> pl.Expr:
    """Whether ``values`` (one prompt group's valid rewards, in an aggregation) are all equal for GRPO: equal
    (one value, or ±inf alike), or a sample standard deviation of at most ``ZERO_STD``."""
    return (values.min() == values.max()) | (values.std() <= ZERO_STD).fill_null(False)


def _single() -> pl.Expr:
    """The group of parts is one part: its values are kept as they are (the digits of a whole summary)."""
    return pl.col("parts").sum() == 1


def _weighted_mean(m: str) -> pl.Expr:
    n, mean = pl.col(f"{m}_n"), pl.col(f"{m}_mean")
    total = n.sum()
    return pl.when(total > 0).then((n * mean.fill_null(0.0)).sum() / total)


def centred(value: pl.Expr) -> pl.Expr:
    """``value`` less its group's mean: a variance of values on a large offset (1e9 + U(0, 1)) from polars'
    one-pass group variance lost seven digits (3e-8 relative, and cached and cold answers disagreed); about
    their mean it keeps them (numpy's two passes)."""
    return value - value.mean()


def _moments(s: Source, m: str) -> list[pl.Expr]:
    n = s.value.count()
    return [
        n.cast(pl.Int64).alias(f"{m}_n"),
        s.value.mean().alias(f"{m}_mean"),
        (centred(s.value).var(ddof=0) * n).alias(f"{m}_m2"),
    ]


def _merge_moments(m: str) -> list[pl.Expr]:
    """Chan et al.: ``n = sum n_i``, ``mean = sum n_i mean_i / n``, ``M2 = sum M2_i + sum n_i (mean_i - mean)^2``."""
    n, mean, m2 = pl.col(f"{m}_n"), pl.col(f"{m}_mean"), pl.col(f"{m}_m2")
    merged_mean = _weighted_mean(m)
    merged_m2 = m2.fill_null(0.0).sum() + (n * (mean.fill_null(0.0) - merged_mean) ** 2).sum()
    return [
        n.sum().alias(f"{m}_n"),
        pl.when(_single()).then(mean.first()).otherwise(merged_mean).alias(f"{m}_mean"),
        pl.when(_single()).then(m2.first()).otherwise(merged_m2).alias(f"{m}_m2"),
    ]


def median(x: pl.Expr) -> pl.Expr:
    """The median of ``x`` (null and NaN-free values), as numpy gives it where infinities are among the two
    middle values: polars takes ``lo + (hi - lo) / 2``, NaN for ``[-inf, 1]`` and ``[-inf, -inf]`` where
    ``(lo + hi) / 2`` is -inf. Where polars' is NaN, the two middle values are found from the counts of -inf
    and +inf (two sums: no sort)."""
    m = x.median()
    n = x.count()
    lower_neg = (x == float("-inf")).sum() > (n - 1) // 2  # the lower middle value is -inf
    upper_pos = (x == float("inf")).sum() > n - 1 - n // 2  # the upper middle value is +inf
    exact = (
        pl.when(lower_neg & upper_pos)
        .then(float("nan"))
        .when(lower_neg)
        .then(float("-inf"))
        .when(upper_pos)
        .then(float("inf"))
        .otherwise(m)
    )
    return pl.when(m.is_nan()).then(exact).otherwise(m)


def _merge_median(m: str) -> list[pl.Expr]:
    # Medians do not merge: kept only where one part holds every value of the group.
    held = pl.col(f"{m}_n") > 0
    return [
        pl.when(held.sum() <= 1).then(pl.col(f"{m}_median").filter(held).first()).alias(f"{m}_median"),
        (held.sum() > 1).alias(f"_{m}_median_lost"),
    ]


def _merge_values(m: str) -> list[pl.Expr]:
    values = pl.col(f"{m}_values").list.explode(keep_nulls=False, empty_as_null=False)
    return [median(values).alias(f"{m}_median"), pl.lit(False).alias(f"_{m}_median_lost")]


def _std(m: str) -> pl.Expr:
    n, m2 = pl.col(f"{m}_n"), pl.col(f"{m}_m2")
    return pl.when(n >= 2).then((m2 / (n - 1)).clip(lower_bound=0.0).sqrt())


def _count(flag: Callable[[Source], pl.Expr | None]) -> Callable[[Source], pl.Expr]:
    def final(s: Source) -> pl.Expr:
        e = flag(s)
        assert e is not None, "a NaN/null count needs the raw value's flags"
        return e.sum().cast(pl.Int64)

    return final


PARTIALS: dict[str, Partial] = {
    "moments": Partial(_moments, _merge_moments),
    "min": Partial(lambda s, m: [s.value.min().alias(f"{m}_min")], lambda m: [pl.col(f"{m}_min").min()]),
    "max": Partial(lambda s, m: [s.value.max().alias(f"{m}_max")], lambda m: [pl.col(f"{m}_max").max()]),
    "median": Partial(lambda s, m: [median(s.value).alias(f"{m}_median")], _merge_median),
    # The median's exact partial: the clean values themselves (a list per group), merged by concatenation.
    "values": Partial(lambda s, m: [s.value.drop_nulls().implode().alias(f"{m}_values")], _merge_values),
    "nan": Partial(lambda s, m: [_count(lambda s: s.nan)(s).alias(f"{m}_nan")], lambda m: [pl.col(f"{m}_nan").sum()]),
    "null": Partial(
        lambda s, m: [_count(lambda s: s.null)(s).alias(f"{m}_null")], lambda m: [pl.col(f"{m}_null").sum()]
    ),
    # The null count of a measure some parts may lack altogether: a reward component that the files of some
    # steps (the partial cache's units) or some runs (a fleet) never logged has no partial columns there, and
    # each of those parts' rows is a sample without it, as a cold read of the whole counts it.
    "absent": Partial(
        lambda s, m: [_count(lambda s: s.null)(s).alias(f"{m}_null")],
        lambda m: [pl.col(f"{m}_null").fill_null(pl.col("rows")).sum()],
    ),
    # A rate: how many of the values are 1, of how many.
    "sum": Partial(
        lambda s, m: [s.value.sum().alias(f"{m}_sum"), s.value.count().cast(pl.Int64).alias(f"{m}_n")],
        lambda m: [pl.col(f"{m}_sum").sum(), pl.col(f"{m}_n").sum()],
    ),
    # A mean without a spread.
    "mean": Partial(
        lambda s, m: [s.value.count().cast(pl.Int64).alias(f"{m}_n"), s.value.mean().alias(f"{m}_mean")],
        lambda m: [pl.col(f"{m}_n").fill_null(0).sum(), _weighted_mean(m).alias(f"{m}_mean")],
    ),
}

STATISTICS: dict[str, Statistic] = {
    "mean": Statistic("mean", lambda s: s.value.mean(), "moments", lambda m: pl.col(f"{m}_mean")),
    "std": Statistic("std", lambda s: centred(s.value).std(ddof=1), "moments", _std),
    "min": Statistic("min", lambda s: s.value.min(), "min", lambda m: pl.col(f"{m}_min")),
    "max": Statistic("max", lambda s: s.value.max(), "max", lambda m: pl.col(f"{m}_max")),
    "median": Statistic("median", lambda s: median(s.value), "median", lambda m: pl.col(f"{m}_median")),
    "count": Statistic("count", lambda s: s.value.count().cast(pl.Int64), "moments", lambda m: pl.col(f"{m}_n")),
    "nan": Statistic("nan", _count(lambda s: s.nan), "nan", lambda m: pl.col(f"{m}_nan")),
    "null": Statistic("null", _count(lambda s: s.null), "null", lambda m: pl.col(f"{m}_null")),
    "rate": Statistic(
        "rate",
        lambda s: s.value.mean(),
        "sum",
        lambda m: pl.when(pl.col(f"{m}_n") > 0).then(pl.col(f"{m}_sum") / pl.col(f"{m}_n")),
    ),
    "average": Statistic("mean", lambda s: s.value.mean(), "mean", lambda m: pl.col(f"{m}_mean")),
    # The count of an ``average``: the values it is over (its partial's ``n``).
    "tally": Statistic("count", lambda s: s.value.count().cast(pl.Int64), "mean", lambda m: pl.col(f"{m}_n")),
    "absent": Statistic("null", _count(lambda s: s.null), "absent", lambda m: pl.col(f"{m}_null")),
}

# What each measure reports, in output order.
REWARD = ("mean", "std", "min", "max", "median", "count", "nan", "null")
KL = ("mean", "std", "min", "max", "count", "nan", "null")
EXCEPTION = ("rate",)
# A component's mean with what it leaves out beside it: NaN, and null (a sample without the component).
COMPONENT = ("average", "tally", "nan", "absent")


def measures(components: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Every measure of a summary and its statistics, in output order."""
    return {
        "reward": REWARD,
        "kl": KL,
        "exception": EXCEPTION,
        **{f"component/{n}": COMPONENT for n in components},
    }


def column(m: str, stat: str) -> str:
    return f"{m}_{STATISTICS[stat].suffix}"


REWARD_STATS = tuple(column("reward", s) for s in REWARD)
KL_STATS = tuple(column("kl", s) for s in KL)


def component_columns(components: Sequence[str]) -> list[str]:
    """The output columns of the reward components, in output order: each one's mean, count, NaN and null."""
    return [column(f"component/{n}", s) for n in components for s in COMPONENT]


# Partials that do not merge, and the exact partial that replaces each where every value must be kept (the
# partial cache, ``runlog.analysis.partial_cache``: a median over many parts, computed as a cold read would).
EXACT = {"median": "values"}


def _partials_of(stats: Sequence[str], exact: bool = False) -> list[str]:
    names = (STATISTICS[s].partial for s in stats)
    return list(dict.fromkeys(EXACT.get(p, p) if exact else p for p in names))


def exprs(
    m: str, stats: Sequence[str], source: Source, *, partial: bool, prefix: str = "", exact: bool = False
) -> list[pl.Expr]:
    """The aggregations of measure ``m`` over ``source``: its final statistics, or its partial columns (with
    ``exact``, those that merge without loss: ``EXACT``); each output column named
    ``prefix`` + its name."""
    if partial:
        out = [e for p in _partials_of(stats, exact) for e in PARTIALS[p].columns(source, m)]
    else:
        out = [STATISTICS[s].final(source).alias(column(m, s)) for s in stats]
    return [e.alias(prefix + e.meta.output_name()) for e in out] if prefix else out


def merge_exprs(m: str, stats: Sequence[str], exact: bool = False) -> list[pl.Expr]:
    """Aggregations merging the partial columns of ``m`` over the parts of a group (``exact``: the partials
    of ``EXACT``)."""
    return [e for p in _partials_of(stats, exact) for e in PARTIALS[p].merge(m)]


def finish_exprs(m: str, stats: Sequence[str]) -> list[pl.Expr]:
    """The final statistics of ``m`` from its merged partial columns."""
    return [STATISTICS[s].finish(m).alias(column(m, s)) for s in stats]
