"""Per-role reward and KL aggregates, GRPO group statistics, scalar summaries and correlations.

Everything here works on the numeric view (``Run.numeric``): one row per (sample, role) with numbers only,
so a summary never reads a text column (the one exception: runs without ``group_id`` fall back to the
prompt text to find prompt groups, and then read ``prompt``).

Conventions (docs/cli.md, "summarize"):
- NaN and null are counted in their own columns and never enter a statistic.
- ``*_std`` is the sample standard deviation (ddof = 1), null for fewer than two values.
- ``zero_adv_frac``: among the prompt groups of a result row (a group is one ``group_id`` within one split
  and step), the fraction whose valid rewards of that role are all equal, so that GRPO's group-relative
  advantage is zero for every sample of it. A group of one sample counts as zero-advantage. Groups with no
  valid reward are left out. Null when the run has no prompt groups.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .._lazy import pl
from ..errors import UsageError
from ..run import Run
from .filters import Filters, StepRange, apply_filters
from .views import SPLIT_NOTE, run_splits, sample_view  # noqa: F401  (SPLIT_NOTE, run_splits: for the CLI)

# --by names -> (numeric-view column, output column)
KEYS: dict[str, str] = {"role": "role", "step": "step", "split": "split", "env": "env", "group": "group"}
REWARD_STATS = (
    "reward_mean",
    "reward_std",
    "reward_min",
    "reward_max",
    "reward_median",
    "reward_count",
    "reward_nan",
    "reward_null",
)
KL_STATS = ("kl_mean", "kl_std", "kl_min", "kl_max", "kl_count")
UNKNOWN_ROLE_NOTE = (
    "rows without per-role data (Flink v0 files, single-agent layouts) are summarised under a null role "
    "(shown as '(unknown)'), with the sample's total reward; runlog does not invent per-role values"
)

# polars' streaming engine keeps memory bounded on runs larger than memory (measured in docs/benchmarks.md),
# but its parallel reductions add floats in an order that changes between runs: the same command could print
# a mean that differs in the last digit from one run to the next. Runs whose numeric columns are small use
# the in-memory engine, which gives the same digits every time: any summary of up to SMALL_ROWS rows, and a
# summary with no group key but the role (a plain aggregation, as fast in memory: 0.95 s against 0.96 s on
# 1 M rows) of up to IN_MEMORY_CELLS values. The in-memory group-by is slower on thousands of groups (by
# step: 1.41 s against 1.16 s), so grouped summaries of larger runs stream.
SMALL_ROWS = 250_000
IN_MEMORY_CELLS = 32_000_000


def _engine(run: Run, grouped: bool, columns: int, group_key: pl.Expr | None = None, per_row: int = 1) -> str:
    """The polars engine for a summary of ``columns`` numeric columns over the run's sample rows (times
    ``per_row``: the long view has one row per sample and role), ``grouped`` by keys besides the role, with
    prompt groups from ``group_key``. Prompt groups found from the prompt text always stream: in memory, the
    whole text column would be held at once."""
    if group_key is not None and "prompt" in group_key.meta.root_names():
        return "streaming"
    grouped = grouped or group_key is not None
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    if any(f.rows is None for f in files):
        return "streaming"
    rows = sum(f.rows or 0 for f in files) * max(1, per_row)
    if rows <= SMALL_ROWS or (not grouped and rows * columns <= IN_MEMORY_CELLS):
        return "in-memory"
    return "streaming"


# Metric keys that different trainer versions wrote for the same quantity (seed 000). Canonical name first.
DEFAULT_ALIASES: dict[str, str] = {
    "grad_global_norm": "grad/global_norm",
    "update_global_norm": "update/global_norm",
    "train-reward/mean": "train/reward/mean",
    "timeperf/step": "time/step_s",
}


def _valid(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & pl.col(col).is_not_nan()


def _has_exception_expr(run: Run) -> pl.Expr:
    """Footers first: when every sample file says its exception column is all null, no data is read."""
    from ..formats.common import EXCEPTION_COLUMNS

    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        col = next((c for c in EXCEPTION_COLUMNS if c in f.columns), None)
        if col is None:
            continue
        if f.fmt != "parquet" or col not in f.null_counts or f.null_counts[col] != f.rows:
            return pl.col("exception").is_not_null()
    return pl.lit(False)


def _group_key_expr(run: Run, prompt_groups: bool = True) -> pl.Expr | None:
    """How prompt groups are known: ``group_id``; where some rows lack it and ``prompt_groups``, identical
    prompt text within a step (this reads ``prompt``); None when the run has neither (zero_adv_frac is then
    null).

    Decided from footers and already-parsed JSONL frames, without scanning the data."""
    any_ids, all_ids = False, True
    any_prompt = False
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        if f.fmt == "parquet":
            has_ids = "group_id" in f.columns and f.null_counts.get("group_id", f.rows) < (f.rows or 0)
            complete = "group_id" in f.columns and f.null_counts.get("group_id", 1) == 0
            any_prompt |= "prompt" in f.columns
        else:
            frame = f.payload if isinstance(f.payload, pl.DataFrame) else None
            gid = frame.get_column("group_id") if frame is not None and "group_id" in frame.columns else None
            has_ids = gid is not None and gid.null_count() < gid.len()
            complete = gid is not None and gid.null_count() == 0
            any_prompt |= (
                frame is not None and "prompt" in frame.columns and frame["prompt"].null_count() < frame.height
            )
        any_ids |= has_ids
        all_ids &= complete
    if all_ids:
        return pl.col("group_id")
    if any_prompt and prompt_groups:
        # A sample without a prompt is in no group (hashing a null would put all of them in one).
        prompt = pl.col("prompt")
        by_prompt = pl.when(prompt.is_not_null()).then(pl.lit("prompt:") + prompt.hash().cast(pl.String))
        return pl.coalesce(pl.col("group_id"), by_prompt)
    return pl.col("group_id") if any_ids else None


def _numeric_view(
    run: Run, by: Sequence[str], filters: Filters, group_key: pl.Expr | None, components: list[str], kl: bool = True
) -> pl.LazyFrame:
    """The rows a summary aggregates: one per (sample, role) when ``role`` is a key, else one per sample
    (``views.sample_view``: the sample's reward, counted once)."""
    carry = _carry(run, by, filters, group_key)
    if "role" not in by:
        return apply_filters(sample_view(run, carry, components, kl=kl), filters, roles_too=False)
    return apply_filters(run.numeric(carry, components), filters, roles_too=True)


def _carry(run: Run, by: Sequence[str], filters: Filters, group_key: pl.Expr | None) -> dict[str, pl.Expr]:
    # Carry only what a key, a filter or the group statistics need: every carried column costs on 1M rows.
    carry: dict[str, pl.Expr] = {}
    if "step" in by or filters.steps.expr() is not None or group_key is not None:
        carry["step"] = pl.col("step")
    if "split" in by or filters.splits or group_key is not None:
        carry["split"] = pl.col("split")
    if "env" in by:
        carry["env"] = pl.col("env_name")
    if group_key is not None or "group" in by:
        carry["group"] = group_key if group_key is not None else pl.lit(None, dtype=pl.String)
    carry["has_exception"] = _has_exception_expr(run)
    return carry


def _clean_columns(
    components: list[str],
    reward: pl.Expr | None = None,
    kl: pl.Expr | None = None,
    mask: pl.Expr | None = None,
    prefix: str = "",
) -> list[pl.Expr]:
    """Per-row columns the statistics aggregate: each value is null where it must not count (NaN, null, or
    a row outside ``mask``), so that every aggregation runs on plain columns and skips nulls natively.

    ``reward``/``kl`` default to the long view's columns; in the wide view (one column per role) they name
    one role's columns and ``mask`` selects the rows that have that role."""
    reward = pl.col("reward") if reward is None else reward
    kl = pl.col("kl") if kl is None else kl
    m = pl.lit(True) if mask is None else mask
    cols = [
        pl.when(m & reward.is_not_nan()).then(reward).alias(f"{prefix}r"),
        pl.when(m & kl.is_not_nan()).then(kl).alias(f"{prefix}k"),
        (m & reward.is_nan()).alias(f"{prefix}r_nan"),
        (m & reward.is_null()).alias(f"{prefix}r_null"),
        pl.when(m).then(pl.col("has_exception").cast(pl.Float64)).alias(f"{prefix}exc"),
        m.alias(f"{prefix}m"),
    ]
    for i, n in enumerate(components):
        c = pl.col(f"component/{n}")
        cols.append(pl.when(m & c.is_not_nan()).then(c).alias(f"{prefix}c{i}"))
    return cols


def _stat_exprs(components: list[str], prefix: str = "", partial: bool = False) -> list[pl.Expr]:
    """The statistics of one group over the columns of ``_clean_columns`` (same ``prefix``); with ``partial``,
    the mergeable partials ``combine_partials`` merges instead (``PARTIAL_STATS``)."""
    r, k = pl.col(f"{prefix}r"), pl.col(f"{prefix}k")
    if partial:
        exc = pl.col(f"{prefix}exc")
        exprs = [
            *_moments(r, "reward"),
            r.min().alias("reward_min"),
            r.max().alias("reward_max"),
            r.median().alias("reward_median"),
            pl.col(f"{prefix}r_nan").sum().cast(pl.Int64).alias("reward_nan"),
            pl.col(f"{prefix}r_null").sum().cast(pl.Int64).alias("reward_null"),
            *_moments(k, "kl"),
            k.min().alias("kl_min"),
            k.max().alias("kl_max"),
            exc.sum().alias("exception_sum"),
            exc.count().cast(pl.Int64).alias("exception_n"),
            pl.col(f"{prefix}m").sum().cast(pl.Int64).alias("rows"),
        ]
        for i, n in enumerate(components):
            c = pl.col(f"{prefix}c{i}")
            exprs += [c.count().cast(pl.Int64).alias(f"component/{n}_n"), c.mean().alias(f"component/{n}_mean")]
        return [e.alias(prefix + e.meta.output_name()) for e in exprs]
    exprs = [
        r.mean().alias("reward_mean"),
        r.std(ddof=1).alias("reward_std"),
        r.min().alias("reward_min"),
        r.max().alias("reward_max"),
        r.median().alias("reward_median"),
        r.count().cast(pl.Int64).alias("reward_count"),
        pl.col(f"{prefix}r_nan").sum().cast(pl.Int64).alias("reward_nan"),
        pl.col(f"{prefix}r_null").sum().cast(pl.Int64).alias("reward_null"),
        k.mean().alias("kl_mean"),
        k.std(ddof=1).alias("kl_std"),
        k.min().alias("kl_min"),
        k.max().alias("kl_max"),
        k.count().cast(pl.Int64).alias("kl_count"),
        pl.col(f"{prefix}exc").mean().alias("exception_rate"),
        pl.col(f"{prefix}m").sum().cast(pl.Int64).alias("rows"),
    ]
    exprs += [pl.col(f"{prefix}c{i}").mean().alias(f"component/{n}_mean") for i, n in enumerate(components)]
    return [e.alias(prefix + e.meta.output_name()) for e in exprs]


def _moments(col: pl.Expr, name: str) -> list[pl.Expr]:
    """``n, mean, M2`` of a column (M2: the sum of squared deviations from the mean), the partials of a mean
    and a variance that merge exactly (Chan et al.), unlike raw sums of squares."""
    n = col.count()
    return [
        n.cast(pl.Int64).alias(f"{name}_n"),
        col.mean().alias(f"{name}_mean"),
        (col.var(ddof=0) * n).alias(f"{name}_m2"),
    ]


def summary_keys(run: Run, by: Sequence[str], filters: Filters, *, split_key: bool = True) -> list[str]:
    """The group keys a summary really uses: ``by``; ``role`` first when ``--role`` filters roles (a role's
    values are per role); and ``split`` first when the run has more than one split and ``--split`` does not
    pick one (train and eval are never pooled silently)."""
    keys = check_keys(by)
    if filters.roles and "role" not in keys:
        keys.insert(0, "role")
    if split_key and "split" not in keys and not filters.splits and len(run_splits(run)) > 1:
        keys.insert(0, "split")
    return keys


def summarize(
    run: Run,
    by: Sequence[str] = ("role",),
    *,
    filters: Filters | None = None,
    window: int | None = None,
    split_key: bool = True,
    prompt_groups: bool = False,
) -> pl.DataFrame:
    """Per-group reward / KL statistics, ``zero_adv_frac``, ``exception_rate`` and component means.

    What each figure aggregates (docs/cli.md, "What summarize counts"):

    - with ``role`` among the keys, ``reward_*`` / ``kl_*`` / ``zero_adv_frac`` are per role: one value per
      (sample, role) that logged that role; the columns that are per sample in the data (``exception_rate``,
      ``component/<name>_mean``) are then given once per group of the other keys, named ``sample:...``
      (every sample once, all roles together);
    - without ``role``, every statistic is over samples, one value per sample: the sample's reward, the mean
      of its roles' KL, prompt groups by the sample reward.

    ``split`` is added to the keys when the run has more than one split and ``filters`` pick none
    (``split_key=False`` pools them). Prompt groups come from ``group_id``; with ``prompt_groups``, samples
    without one are grouped by identical prompt text within a split and step (this reads the prompt text,
    which no other statistic needs). Output columns: the keys, then ``REWARD_STATS``, ``KL_STATS``,
    ``zero_adv_frac``, the per-sample columns; with ``window``, ``reward_mean_ma`` and ``kl_mean_ma``
    (moving averages over the last ``window`` steps of each group; ``step`` is added to the keys if missing).
    """
    filters = filters or Filters()
    keys = summary_keys(run, by, filters, split_key=split_key)
    if window is not None:
        if window < 1:
            raise UsageError("--window must be a positive number of steps")
        if "step" not in keys:
            keys.append("step")
    components = run.component_names()
    out = _summarize_keys(run, keys, filters, components, prompt_groups=prompt_groups)
    per_sample = ["exception_rate", *[f"component/{n}_mean" for n in components]]
    ordered = [*keys, *REWARD_STATS, *KL_STATS, "zero_adv_frac"]
    if "role" in keys:
        others = [k for k in keys if k != "role"]
        if _shared_is_per_sample(run, filters):
            # Every sample has every role's columns: the per-role pass computed these once per sample already.
            sample = out.select(*others, *per_sample)
            sample = sample.unique(others, keep="first", maintain_order=True) if others else sample.head(1)
        else:
            sample = _summarize_keys(
                run, others, Filters(filters.splits, filters.steps), components, kl=False, prompt_groups=prompt_groups
            )
        sample = sample.select(*others, *[pl.col(c).alias(f"sample:{c}") for c in per_sample])
        out = out.drop(per_sample)
        out = out.join(sample, on=others, how="left", nulls_equal=True) if others else out.join(sample, how="cross")
        ordered += [f"sample:{c}" for c in per_sample]
    else:
        ordered += per_sample
    out = out.select(ordered)
    if keys:
        out = out.sort(keys, nulls_last=True)
    if window is not None:
        others = [k for k in keys if k != "step"]
        ma = [
            pl.col(c)
            .rolling_mean(window_size=window, min_samples=1)
            .over(others or pl.lit(0), order_by="step")
            .alias(f"{c}_ma")
            for c in ("reward_mean", "kl_mean")
        ]
        out = out.with_columns(ma)
    return out


def _shared_is_per_sample(run: Run, filters: Filters) -> bool:
    """Whether a per-role summary of ``run`` takes ``_summarize_wide_lean``'s route, whose columns that do not
    depend on the role (exception rate, component means) are computed over the samples, each once."""
    roles = [r for r in run.role_names() if not filters.roles or r in filters.roles]
    return bool(roles) and run.wide_roles_everywhere() and run.numeric_wide({}, [], roles) is not None


def prompt_groups_skipped(run: Run) -> bool:
    """Whether some samples have no ``group_id`` but a prompt text their prompt groups could be found from
    (``prompt_groups=True``: this reads the prompt text)."""
    return _group_key_expr(run, True) is not None and not _same_expr(
        _group_key_expr(run, True), _group_key_expr(run, False)
    )


def _same_expr(a: pl.Expr | None, b: pl.Expr | None) -> bool:
    return (a is None) == (b is None) and (a is None or a.meta.eq(b))


PROMPT_GROUPS_NOTE = (
    "some samples have no group_id: their prompt groups can be found from the prompt text, which summarize does "
    "not read unless asked: add --prompt-groups for zero_adv_frac there"
)


def _summarize_keys(
    run: Run, keys: list[str], filters: Filters, components: list[str], *, kl: bool = True, prompt_groups: bool = False
) -> pl.DataFrame:
    group_key = _group_key_expr(run, prompt_groups)
    parts = []
    for part in _step_batches(run, keys, filters):
        wide = _summarize_wide(part, keys, filters, group_key, components)
        parts.append(wide if wide is not None else _summarize_long(part, keys, filters, group_key, components, kl=kl))
    return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------------------------
# Mergeable partials: the same statistics computed on parts of the data (batches of files, runs, machines)
# and combined exactly. ``runlog.fleet`` builds on these.
# ---------------------------------------------------------------------------------------------------------

MEDIAN_NOTE = (
    "reward_median is left empty for groups whose rows were summarised in more than one part (medians do not "
    "merge); group by run (or by step) to get them"
)


def summarize_partials(
    run: Run,
    by: Sequence[str] = ("role",),
    *,
    filters: Filters | None = None,
    components: list[str] | None = None,
    prompt_groups: bool = False,
) -> pl.DataFrame:
    """Per-group partial statistics of ``run``: ``n, mean, M2`` of reward and KL, min, max, the median, NaN /
    null / exception counts, per-component ``n`` and mean, and ``zero_groups`` / ``groups`` (prompt groups
    with zero advantage / all). ``combine_partials`` merges the partials of any number of parts exactly.

    The values aggregated are those of ``summarize`` (per role with ``role`` among the keys, else one per
    sample). With ``role``, a ``level`` column tells the per-role rows (``"role"``) from the rows of the
    per-sample columns (``"sample"``, grouped by the other keys), which ``combine_partials`` merges apart. No
    split key is added here: a fleet decides that over all its runs."""
    filters = filters or Filters()
    keys = summary_keys(run, by, filters, split_key=False)
    components = run.component_names() if components is None else components
    out = _partials_keys(run, keys, filters, components, prompt_groups=prompt_groups)
    if "role" in keys:
        others = [k for k in keys if k != "role"]
        if _shared_is_per_sample(run, filters):
            # The rows of one role carry the per-sample columns, computed once per sample (only those are used).
            first = out["role"].drop_nulls().first() if out.height else None
            sample = out.filter(pl.col("role") == first).drop("role")
        else:
            sample = _partials_keys(
                run, others, Filters(filters.splits, filters.steps), components, kl=False, prompt_groups=prompt_groups
            )
        out = pl.concat(
            [out.with_columns(pl.lit("role").alias("level")), sample.with_columns(pl.lit("sample").alias("level"))],
            how="diagonal_relaxed",
        )
    return out.with_columns(pl.lit(1, dtype=pl.Int64).alias("parts"))


def _partials_keys(
    run: Run, keys: list[str], filters: Filters, components: list[str], *, kl: bool = True, prompt_groups: bool = False
) -> pl.DataFrame:
    group_key = _group_key_expr(run, prompt_groups)
    parts = []
    for part in _step_batches(run, keys, filters):
        wide = _summarize_wide(part, keys, filters, group_key, components, partial=True)
        if wide is None:
            wide = _summarize_long(part, keys, filters, group_key, components, True, kl=kl)
        parts.append(wide)
    return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]


def _weighted_mean(name: str) -> pl.Expr:
    n, mean = pl.col(f"{name}_n"), pl.col(f"{name}_mean")
    total = n.sum()
    return pl.when(total > 0).then((n * mean.fill_null(0.0)).sum() / total)


def combine_partials(partials: pl.DataFrame, keys: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """``_combine`` the partials; with per-role and per-sample rows (a ``level`` column), each level apart,
    the per-sample columns then named ``sample:...`` beside the per-role statistics, as ``summarize`` does."""
    keys = list(keys)
    if "level" not in partials.columns:
        return _combine(partials, keys)
    out, notes = _combine(partials.filter(pl.col("level") == "role").drop("level"), keys)
    others = [k for k in keys if k != "role"]
    sample, _ = _combine(partials.filter(pl.col("level") == "sample").drop("level"), others)
    per_sample = ["exception_rate", *[c for c in sample.columns if c.startswith("component/")]]
    out = out.drop([c for c in per_sample if c in out.columns])
    sample = sample.select(*others, *[pl.col(c).alias(f"sample:{c}") for c in per_sample])
    out = out.join(sample, on=others, how="left", nulls_equal=True) if others else out.join(sample, how="cross")
    return (out.sort(keys, nulls_last=True) if keys else out), notes


def _combine(partials: pl.DataFrame, keys: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """Merge partials (``summarize_partials``) that share the group ``keys`` into the statistics ``summarize``
    reports, in its column order. Means and variances merge with Chan et al.'s formula: for parts i with
    ``n_i, mean_i, M2_i``, ``n = sum n_i``, ``mean = sum n_i mean_i / n``,
    ``M2 = sum M2_i + sum n_i (mean_i - mean)^2``. A group held by one part keeps that part's values as they
    are, so a run summarised whole gives the same numbers as ``summarize``. Returns the frame and notes."""
    keys = list(keys)
    comps = [
        c[len("component/") : -len("_n")] for c in partials.columns if c.startswith("component/") and c.endswith("_n")
    ]
    single = pl.col("parts").sum() == 1

    def moments(name: str) -> list[pl.Expr]:
        n, mean, m2 = pl.col(f"{name}_n"), pl.col(f"{name}_mean"), pl.col(f"{name}_m2")
        total = n.sum()
        merged_mean = _weighted_mean(name)
        merged_m2 = m2.fill_null(0.0).sum() + (n * (mean.fill_null(0.0) - merged_mean) ** 2).sum()
        return [
            total.alias(f"{name}_n"),
            pl.when(single).then(mean.first()).otherwise(merged_mean).alias(f"{name}_mean"),
            pl.when(single).then(m2.first()).otherwise(merged_m2).alias(f"{name}_m2"),
        ]

    aggs = [
        *moments("reward"),
        *moments("kl"),
        pl.col("reward_min").min(),
        pl.col("reward_max").max(),
        pl.col("kl_min").min(),
        pl.col("kl_max").max(),
        # Medians do not merge: kept only where one part holds every row of the group.
        pl.when((pl.col("reward_n") > 0).sum() <= 1)
        .then(pl.col("reward_median").filter(pl.col("reward_n") > 0).first())
        .alias("reward_median"),
        ((pl.col("reward_n") > 0).sum() > 1).alias("_median_lost"),
        pl.col("reward_nan").sum(),
        pl.col("reward_null").sum(),
        pl.col("exception_sum").sum(),
        pl.col("exception_n").sum(),
        pl.col("zero_groups").sum(),
        pl.col("groups").sum(),
        pl.col("parts").sum(),
    ]
    for c in comps:
        aggs += [
            pl.col(f"component/{c}_n").fill_null(0).sum(),
            _weighted_mean(f"component/{c}").alias(f"component/{c}_mean"),
        ]
    merged = partials.group_by(keys, maintain_order=True).agg(aggs) if keys else partials.select(aggs)

    def std(name: str) -> pl.Expr:
        n, m2 = pl.col(f"{name}_n"), pl.col(f"{name}_m2")
        return pl.when(n >= 2).then((m2 / (n - 1)).clip(lower_bound=0.0).sqrt()).alias(f"{name}_std")

    out = merged.select(
        *keys,
        pl.col("reward_mean"),
        std("reward"),
        pl.col("reward_min"),
        pl.col("reward_max"),
        pl.col("reward_median"),
        pl.col("reward_n").alias("reward_count"),
        pl.col("reward_nan"),
        pl.col("reward_null"),
        pl.col("kl_mean"),
        std("kl"),
        pl.col("kl_min"),
        pl.col("kl_max"),
        pl.col("kl_n").alias("kl_count"),
        pl.when(pl.col("groups") > 0).then(pl.col("zero_groups") / pl.col("groups")).alias("zero_adv_frac"),
        pl.when(pl.col("exception_n") > 0)
        .then(pl.col("exception_sum") / pl.col("exception_n"))
        .alias("exception_rate"),
        *[pl.col(f"component/{c}_mean") for c in comps],
    )
    notes = [MEDIAN_NOTE] if merged["_median_lost"].any() else []
    if keys:
        out = out.sort(keys, nulls_last=True)
    return out, notes


# A batch of whole steps holds at most about this many rows (when the keys include ``step``).
BATCH_ROWS = 1_000_000


def _step_batches(run: Run, keys: list[str], filters: Filters) -> list[Run]:
    """The run itself, or, when every group lies inside one step (``step`` is a key) and every sample file
    holds one known step, sub-runs of whole steps of at most ``BATCH_ROWS`` rows, summarised one after the
    other. Statistics such as the median keep every value of a group in memory; batching by step keeps that
    bounded by the batch, not the run, and is exact because no group spans two batches. Files outside the
    ``--steps`` / ``--split`` filters are left out here, unopened."""
    samples = [f for f in run.files if f.kind == "samples" and f.readable]
    if "step" not in keys or not samples or any(f.step is None or f.steps for f in samples):
        return [run]
    first, last = filters.steps.first, filters.steps.last
    chosen = [
        f
        for f in samples
        if (first is None or f.step >= first)
        and (last is None or f.step <= last)
        and (not filters.splits or f.split is None or f.split in filters.splits)
    ]
    if not chosen:
        return [run]
    if sum(f.rows or 0 for f in chosen) <= BATCH_ROWS:
        return [run] if len(chosen) == len(samples) else [_sub_run(run, chosen)]
    by_step: dict[int, list] = {}
    for f in chosen:
        by_step.setdefault(f.step, []).append(f)
    batches: list[Run] = []
    current: list = []
    rows = 0
    for step in sorted(by_step):
        files = by_step[step]
        n = sum(f.rows or 0 for f in files)
        if current and rows + n > BATCH_ROWS:
            batches.append(_sub_run(run, current))
            current, rows = [], 0
        current += files
        rows += n
    if current:
        batches.append(_sub_run(run, current))
    return batches


def _sub_run(run: Run, files: list) -> Run:
    others = [f for f in run.files if f.kind != "samples"]
    return Run(root=run.root, files=others + files, ctx=run.ctx)


def _summarize_long(
    run: Run,
    keys: list[str],
    filters: Filters,
    group_key: pl.Expr | None,
    components: list[str],
    partial: bool = False,
    kl: bool = True,
) -> pl.DataFrame:
    """One row per (sample, role) grouped by the keys when ``role`` is one, else one row per sample: works for
    every layout."""

    def build() -> list[pl.LazyFrame]:
        lf = _numeric_view(run, keys, filters, group_key, components, kl).with_columns(_clean_columns(components))
        stats = _stat_exprs(components, partial=partial)
        main = lf.group_by(keys).agg(stats) if keys else lf.select(stats)
        # No prompt groups in this run: nothing to compute, and no second pass over the data.
        return [main] if group_key is None else [main, _zero_adv(lf, keys, partial)]

    per_row = len(run.role_names()) if "role" in keys else 1
    engine = _engine(run, bool(keys), 4 + len(components), _id_groups(group_key), per_row=per_row)
    frames = _collect_split(run, build, engine, group_key)
    if len(frames) == 1:
        return frames[0].with_columns(_no_zero_adv(partial))
    main_df, zero_df = frames
    if keys:
        return main_df.join(zero_df, on=keys, how="left", nulls_equal=True)
    return pl.concat([main_df, zero_df], how="horizontal")


def _from_prompt(group_key: pl.Expr | None) -> bool:
    return group_key is not None and "prompt" in group_key.meta.root_names()


def _id_groups(group_key: pl.Expr | None) -> pl.Expr | None:
    """The group key as ``_engine`` weighs it for the statistics query: prompt-text groups stream apart."""
    return None if _from_prompt(group_key) else group_key


def _collect_split(
    run: Run, build: Callable[[], list[pl.LazyFrame]], engine: str, group_key: pl.Expr | None
) -> list[pl.DataFrame]:
    """The statistics query on ``engine``; where prompt groups come from the prompt text, the zero-advantage
    query (the only one that holds text) streams on its own, so that the statistics keep their engine (and
    their digits) and the text is never held whole in memory."""
    if not _from_prompt(group_key):
        return run.collect(build, engine=engine)
    [main] = run.collect(lambda: build()[:1], engine=engine)
    return [main, *run.collect(lambda: build()[1:], engine="streaming")]


def _no_zero_adv(partial: bool, prefix: str = "") -> list[pl.Expr]:
    """The zero-advantage columns of a run without prompt groups."""
    if partial:
        return [
            pl.lit(None, dtype=pl.Int64).alias(f"{prefix}zero_groups"),
            pl.lit(0, dtype=pl.Int64).alias(f"{prefix}groups"),
        ]
    return [pl.lit(None, dtype=pl.Float64).alias(f"{prefix}zero_adv_frac")]


def _summarize_wide(
    run: Run,
    keys: list[str],
    filters: Filters,
    group_key: pl.Expr | None,
    components: list[str],
    partial: bool = False,
) -> pl.DataFrame | None:
    """The same statistics from a wide view (one reward and one KL column per role, as Flink v1 stores
    them), when every layout of the run offers one: no row is duplicated per role, which makes summaries
    grouped by step or split several times cheaper. Returns None when the run needs the long view."""
    if "role" not in keys:
        return None  # statistics pooled over roles (a median over all of them) need the long view
    roles = [r for r in run.role_names() if not filters.roles or r in filters.roles]
    others = [k for k in keys if k != "role"]
    carry = _carry(run, others, filters, group_key)
    if run.numeric_wide(carry, components, roles) is None:
        return None
    if roles and run.wide_roles_everywhere():
        return _summarize_wide_lean(run, others, filters, group_key, components, roles, partial)
    variants: list[tuple[str | None, pl.Expr, pl.Expr, pl.Expr]] = [
        (r, pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl"), pl.col("__has_roles")) for r in roles
    ]
    if not filters.roles:
        # Samples without per-role data: one null-role group with the sample's total reward.
        variants.append((None, pl.col("__sample_reward"), pl.lit(None, dtype=pl.Float64), ~pl.col("__has_roles")))

    def build() -> list[pl.LazyFrame]:
        lf = apply_filters(run.numeric_wide(carry, components, roles), filters, roles_too=False)
        lf = lf.with_columns(
            [
                e
                for i, (_, reward, kl, mask) in enumerate(variants)
                for e in _clean_columns(components, reward, kl, mask, f"{i}:")
            ]
        )
        exprs = [e for i in range(len(variants)) for e in _stat_exprs(components, f"{i}:", partial)]
        queries = [lf.group_by(others).agg(exprs) if others else lf.select(exprs)]
        if group_key is not None:
            queries.append(_zero_adv_wide(lf, others, variants, partial))
        return queries

    stats = _collect_joined(run, build, others, 3 * len(variants) + len(components) + 2, group_key)
    return _rows_per_role(stats, others, [role for role, *_rest in variants], partial)


def _rows_per_role(
    stats: pl.DataFrame, others: list[str], roles: list[str | None], partial: bool, shared: Sequence[str] = ()
) -> pl.DataFrame:
    """One row per role and group from the wide result, whose columns of role ``i`` are prefixed ``i:``;
    the ``shared`` columns (the same for every role) are repeated on each role's rows."""
    parts = []
    for i, role in enumerate(roles):
        cols = [c for c in stats.columns if c.startswith(f"{i}:")]
        part = stats.select(
            *others,
            pl.lit(role, dtype=pl.String).alias("role"),
            *[pl.col(c).alias(c.split(":", 1)[1]) for c in cols],
            *shared,
        ).filter(pl.col("rows") > 0)
        if f"{i}:zero_adv_frac" not in stats.columns and f"{i}:groups" not in stats.columns:
            part = part.with_columns(_no_zero_adv(partial))
        parts.append(part if partial else part.drop("rows"))
    return pl.concat(parts, how="vertical_relaxed")


def _collect_joined(
    run: Run, build: Callable[[], list[pl.LazyFrame]], others: list[str], columns: int, group_key: pl.Expr | None
) -> pl.DataFrame:
    """Collect the statistics query and, when there is one (``group_key`` is not None), the zero-advantage
    query, side by side."""
    frames = _collect_split(run, build, _engine(run, bool(others), columns, _id_groups(group_key)), group_key)
    if len(frames) == 1:
        return frames[0]
    if others:
        return frames[0].join(frames[1], on=others, how="left", nulls_equal=True)
    return pl.concat(frames, how="horizontal")


def _footer_exceptions(run: Run, others: list[str], filters: Filters) -> pl.DataFrame | None:
    """Per group of ``others`` (a subset of step and split): the rows and the samples with an exception, from
    footer null counts of the exception column, so that the column is never read; None when a footer does
    not tell (statistics missing, a file holding several steps, a CSV file) and the data must be read."""
    from ..formats.common import EXCEPTION_COLUMNS

    if any(k not in ("step", "split") for k in others):
        return None
    first, last = filters.steps.first, filters.steps.last
    counts: dict[tuple, list[int]] = {}
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        if f.fmt != "parquet" or f.rows is None or f.steps:
            return None
        if (first is not None or last is not None or "step" in others) and f.step is None:
            return None
        if (filters.splits or "split" in others) and f.split is None:
            return None
        if f.step is not None and not filters.steps.contains(f.step):  # exact for a comma list of steps
            continue
        if filters.splits and f.split not in filters.splits:
            continue
        col = next((c for c in EXCEPTION_COLUMNS if c in f.columns), None)
        if col is not None and col not in f.null_counts:
            return None
        failed = 0 if col is None else f.rows - f.null_counts[col]
        key = tuple(f.step if k == "step" else f.split for k in others)
        entry = counts.setdefault(key, [0, 0])
        entry[0] += f.rows
        entry[1] += failed
    schema = {"step": pl.Int64, "split": pl.String}
    cols: dict[str, list] = {k: [key[i] for key in counts] for i, k in enumerate(others)}
    cols["exception_n"] = [v[0] for v in counts.values()]
    cols["exception_sum"] = [float(v[1]) for v in counts.values()]
    types = {**{k: schema[k] for k in others}, "exception_n": pl.Int64, "exception_sum": pl.Float64}
    return pl.DataFrame(cols, schema=types)


def _summarize_wide_lean(
    run: Run,
    others: list[str],
    filters: Filters,
    group_key: pl.Expr | None,
    components: list[str],
    roles: list[str],
    partial: bool,
) -> pl.DataFrame:
    """``_summarize_wide`` for runs in which every sample has per-role columns (Flink v1): every row counts for
    every role, so the statistics of each role are plain aggregations of its own columns (NaN made null),
    and what does not depend on the role (rows, exception rate, component means) is computed once. The
    exception column is not read at all when footers tell how many samples failed."""
    footer_exc = _footer_exceptions(run, others, filters)
    carry = _carry(run, others, filters, group_key)
    if footer_exc is not None:
        carry.pop("has_exception", None)

    def role_stats(i: int, role: str) -> list[pl.Expr]:
        raw_r, raw_k = pl.col(f"role:{role}:reward"), pl.col(f"role:{role}:kl")
        r, k = raw_r.fill_nan(None), raw_k.fill_nan(None)
        nan_null = [
            raw_r.is_nan().sum().cast(pl.Int64).alias("reward_nan"),
            raw_r.is_null().sum().cast(pl.Int64).alias("reward_null"),
        ]
        if partial:
            exprs = [
                *_moments(r, "reward"),
                r.min().alias("reward_min"),
                r.max().alias("reward_max"),
                r.median().alias("reward_median"),
                *nan_null,
                *_moments(k, "kl"),
                k.min().alias("kl_min"),
                k.max().alias("kl_max"),
            ]
        else:
            exprs = [
                r.mean().alias("reward_mean"),
                r.std(ddof=1).alias("reward_std"),
                r.min().alias("reward_min"),
                r.max().alias("reward_max"),
                r.median().alias("reward_median"),
                r.count().cast(pl.Int64).alias("reward_count"),
                *nan_null,
                k.mean().alias("kl_mean"),
                k.std(ddof=1).alias("kl_std"),
                k.min().alias("kl_min"),
                k.max().alias("kl_max"),
                k.count().cast(pl.Int64).alias("kl_count"),
            ]
        return [e.alias(f"{i}:{e.meta.output_name()}") for e in exprs]

    shared: list[pl.Expr] = [pl.len().cast(pl.Int64).alias("rows")]
    if footer_exc is None:
        exc = pl.col("has_exception").cast(pl.Float64)
        shared += [exc.sum().alias("exception_sum"), exc.count().cast(pl.Int64).alias("exception_n")]
    for n in components:
        c = pl.col(f"component/{n}").fill_nan(None)
        if partial:
            shared += [c.count().cast(pl.Int64).alias(f"component/{n}_n"), c.mean().alias(f"component/{n}_mean")]
        else:
            shared.append(c.mean().alias(f"component/{n}_mean"))
    variants = [(r, pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl"), pl.lit(True)) for r in roles]

    def build() -> list[pl.LazyFrame]:
        lf = apply_filters(run.numeric_wide(carry, components, roles), filters, roles_too=False)
        exprs = [e for i, r in enumerate(roles) for e in role_stats(i, r)] + shared
        queries = [lf.group_by(others).agg(exprs) if others else lf.select(exprs)]
        if group_key is not None:
            queries.append(_zero_adv_wide(lf, others, variants, partial))
        return queries

    stats = _collect_joined(run, build, others, 2 * len(roles) + len(components) + 1, group_key)
    if footer_exc is not None:
        if others:
            stats = stats.join(footer_exc, on=others, how="left", nulls_equal=True)
        else:
            stats = (
                pl.concat([stats, footer_exc], how="horizontal")
                if footer_exc.height
                else stats.with_columns(
                    pl.lit(0, dtype=pl.Int64).alias("exception_n"), pl.lit(0.0).alias("exception_sum")
                )
            )
    if not partial:
        rate = pl.when(pl.col("exception_n") > 0).then(pl.col("exception_sum") / pl.col("exception_n"))
        stats = stats.with_columns(rate.alias("exception_rate")).drop("exception_sum", "exception_n")
    shared_out = [c for c in stats.columns if ":" not in c and c not in others]
    return _rows_per_role(stats, others, list(roles), partial, shared_out)


def _zero_adv_wide(
    lf: pl.LazyFrame,
    others: list[str],
    variants: list[tuple[str | None, pl.Expr, pl.Expr, pl.Expr]],
    partial: bool = False,
) -> pl.LazyFrame:
    """``zero_adv_frac`` per role from the wide view: per prompt group, are the role's valid rewards equal."""
    group_cols = list(dict.fromkeys([*others, "split", "step", "group"]))
    per_group = (
        lf.filter(pl.col("group").is_not_null())
        .group_by(group_cols)
        .agg(
            [
                pl.when((m & r.is_not_null() & r.is_not_nan()).any())
                .then(
                    r.filter(m & r.is_not_null() & r.is_not_nan()).min()
                    == r.filter(m & r.is_not_null() & r.is_not_nan()).max()
                )
                .alias(f"{i}:zero")
                for i, (_, r, _, m) in enumerate(variants)
            ]
        )
    )
    if partial:
        aggs = [
            e
            for i in range(len(variants))
            for e in (
                pl.col(f"{i}:zero").cast(pl.Int64).sum().alias(f"{i}:zero_groups"),
                pl.col(f"{i}:zero").count().cast(pl.Int64).alias(f"{i}:groups"),
            )
        ]
    else:
        aggs = [pl.col(f"{i}:zero").cast(pl.Float64).mean().alias(f"{i}:zero_adv_frac") for i in range(len(variants))]
    return per_group.group_by(others).agg(aggs) if others else per_group.select(aggs)


def check_keys(by: Iterable[str], allowed: Iterable[str] = KEYS) -> list[str]:
    """``--by`` values, de-duplicated in order; an unknown one is a usage error naming the allowed ones."""
    allowed = list(allowed)
    keys: list[str] = []
    for k in by:
        if k not in allowed:
            raise UsageError(f"--by {k!r}: expected one of {', '.join(allowed)}")
        if k not in keys:
            keys.append(k)
    return keys


def _zero_adv(lf: pl.LazyFrame, keys: list[str], partial: bool = False) -> pl.LazyFrame:
    """Fraction of prompt groups whose valid rewards (per role) are all equal (partial: how many such groups,
    and how many groups)."""
    group_cols = list(dict.fromkeys([*keys, "split", "step", "group", "role"]))
    groups = (
        lf.filter(_valid("reward") & pl.col("group").is_not_null())
        .group_by(group_cols)
        .agg((pl.col("reward").min() == pl.col("reward").max()).alias("zero"))
    )
    agg = [pl.col("zero").cast(pl.Float64).mean().alias("zero_adv_frac")]
    if partial:
        agg = [
            pl.col("zero").cast(pl.Int64).sum().alias("zero_groups"),
            pl.col("zero").count().cast(pl.Int64).alias("groups"),
        ]
    if keys:
        return groups.group_by(keys).agg(agg)
    return groups.select(agg)


def unknown_role_rows(frame: pl.DataFrame) -> bool:
    return "role" in frame.columns and frame["role"].null_count() > 0


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------
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


def summarize_scalars(
    run: Run,
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
    lf = run.scalars.filter(pl.col("step").is_not_null())
    step_filter = (steps or StepRange()).expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    lf = lf.with_columns(pl.col("key").replace(aliases))
    is_count = pl.col("key").str.ends_with("__count")
    values = lf.filter(~is_count)
    counts = lf.filter(is_count).select(
        "step", "source", pl.col("key").str.strip_suffix("__count"), pl.col("value").alias("weight")
    )
    counts = counts.group_by("step", "source", "key").agg(pl.col("weight").sum())
    merged = (
        values.join(counts, on=["step", "source", "key"], how="left")
        .with_columns(pl.col("weight").fill_null(1.0))
        .group_by("key", "step")
        .agg(
            pl.when(_valid("value").any())
            .then(
                (pl.col("value") * pl.col("weight")).filter(_valid("value")).sum()
                / pl.col("weight").filter(_valid("value")).sum()
            )
            .otherwise(pl.col("value").first())
            .alias("value")
        )
    )
    out = (
        merged.sort("key", "step")
        .group_by("key", maintain_order=True)
        .agg(
            pl.col("value").filter(_valid("value")).last().alias("last"),
            pl.col("value").filter(_valid("value")).mean().alias("mean"),
            pl.col("value").filter(_valid("value")).min().alias("min"),
            pl.col("value").filter(_valid("value")).max().alias("max"),
            _valid("value").sum().cast(pl.Int64).alias("count"),
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


# ---------------------------------------------------------------------------------------------------------
# Correlations
# ---------------------------------------------------------------------------------------------------------
CORRELATION_COLUMNS = ("x", "y", "pearson", "n")


def correlations(run: Run, *, filters: Filters | None = None) -> pl.DataFrame:
    """Pearson correlations, over samples, between every pair of: the total reward, each role's reward and
    each reward component (seed 001: conflicting reward functions show as negative correlations). Each
    pair uses the samples where both values are valid (not null, not NaN)."""
    filters = filters or Filters()
    components = run.component_names()
    carry = {
        "sample": pl.col("sample_id"),
        "step": pl.col("step"),
        "split": pl.col("split"),
        "total": pl.col("reward"),
    }
    [long] = run.collect(lambda: [apply_filters(run.numeric(carry, components), filters, roles_too=False)])
    index = ["sample", "step", "split"]
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
    rows = []
    for i, x in enumerate(variables):
        for y in variables[i + 1 :]:
            pair = per_sample.select(x, y).filter(_valid(x) & _valid(y))
            n = pair.height
            r = pair.select(pl.corr(x, y)).item() if n > 1 else None
            if r is not None and r != r:  # NaN: a constant column
                r = None
            rows.append({"x": x, "y": y, "pearson": r, "n": n})
    return pl.DataFrame(rows, schema={"x": pl.String, "y": pl.String, "pearson": pl.Float64, "n": pl.Int64})
