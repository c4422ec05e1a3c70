"""Mergeable partials: a summary's statistics computed on parts of the data (chunks of a run, runs of a
fleet, machines) and merged exactly. ``runlog.fleet`` builds on these.

The partial columns and their merge come from the statistics spec (``runlog.analysis.stats``): ``n, mean,
M2`` of the reward and the KL (Chan et al.'s formula merges them exactly), min, max, the median (kept only
where one part holds a whole group: medians do not merge), NaN / null counts, the exception ``sum`` and
``n``, per component its ``n``, mean and NaN / null counts (a part without the component counts its ``rows``
as null), and ``zero_groups`` / ``groups`` (prompt groups with zero advantage /
all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._lazy import pl
from . import stats as T
from .aggregate import lean_roles
from .filters import Filters
from .summarize import PER_SAMPLE_PREFIX, summary_keys, summary_pass

if TYPE_CHECKING:
    from ..run import Run

MEDIAN_NOTE = (
    "reward_median is left empty for groups whose rows were summarised in more than one part (medians do not "
    "merge); add --by run to get them (and --by step where one run was read in several parts)"
)


def summarize_partials(
    run: Run,
    by: Sequence[str] = ("role",),
    *,
    filters: Filters | None = None,
    components: list[str] | None = None,
    prompt_groups: bool = False,
    exact: bool = False,
) -> pl.DataFrame:
    """Per-group partial statistics of ``run`` (the module's docstring); ``combine_partials`` merges the
    partials of any number of parts exactly. ``exact``: statistics that do not merge (the median) keep their
    values instead (``reward_values``, a list per group), so that they merge exactly too, at the cost of
    holding every value (the partial cache, ``runlog.analysis.partial_cache``).

    The values aggregated are those of ``summarize`` (per role with ``role`` among the keys, else one per
    sample). With ``role``, a ``level`` column tells the per-role rows (``"role"``) from the rows of the
    per-sample columns (``"sample"``, grouped by the other keys), which ``combine_partials`` merges apart. No
    split key is added here: a fleet decides that over all its runs."""
    filters = filters or Filters()
    keys = summary_keys(run, by, filters, split_key=False)
    components = run.component_names() if components is None else components
    out = summary_pass(run, keys, filters, components, partial=True, prompt_groups=prompt_groups, exact=exact)
    if "role" in keys:
        others = [k for k in keys if k != "role"]
        if lean_roles(run, filters) is not None:
            # The rows of one role carry the per-sample columns, computed once per sample (only those are used).
            first = out["role"].drop_nulls().first() if out.height else None
            sample = out.filter(pl.col("role") == first).drop("role")
        else:
            sample = summary_pass(
                run,
                others,
                Filters(filters.splits, filters.steps),
                components,
                partial=True,
                kl=False,
                prompt_groups=prompt_groups,
                exact=exact,
            )
        # Only the per-sample columns of these rows are used (the exception rate, the components): no values.
        sample = sample.drop([c for c in sample.columns if c.endswith("_values")])
        out = pl.concat(
            [out.with_columns(pl.lit("role").alias("level")), sample.with_columns(pl.lit("sample").alias("level"))],
            how="diagonal_relaxed",
        )
    return out.with_columns(pl.lit(1, dtype=pl.Int64).alias("parts"))


def combine_partials(partials: pl.DataFrame, keys: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """``_combine`` the partials; with per-role and per-sample rows (a ``level`` column), each level apart,
    the per-sample columns then named ``sample:...`` beside the per-role statistics, as ``summarize`` does."""
    keys = list(keys)
    if "level" not in partials.columns:
        return _combine(partials, keys)
    out, notes = _combine(partials.filter(pl.col("level") == "role").drop("level"), keys)
    others = [k for k in keys if k != "role"]
    sample, _ = _combine(partials.filter(pl.col("level") == "sample").drop("level"), others)
    per_sample = [c for c in sample.columns if c not in others and c.startswith(("exception_", "component/"))]
    out = out.drop([c for c in per_sample if c in out.columns])
    sample = sample.select(*others, *[pl.col(c).alias(f"{PER_SAMPLE_PREFIX}{c}") for c in per_sample])
    out = out.join(sample, on=others, how="left", nulls_equal=True) if others else out.join(sample, how="cross")
    return (out.sort(keys, nulls_last=True) if keys else out), notes


def _components(partials: pl.DataFrame) -> list[str]:
    return [
        c[len("component/") : -len("_n")] for c in partials.columns if c.startswith("component/") and c.endswith("_n")
    ]


def _combine(partials: pl.DataFrame, keys: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """Merge partials (``summarize_partials``) that share the group ``keys`` into the statistics ``summarize``
    reports, in its column order. A group held by one part keeps that part's mean and M2 as they are, so a
    run summarised whole gives the numbers of ``summarize``. Returns the frame and notes."""
    keys = list(keys)
    spec = T.measures(_components(partials))
    # Partials with their values (``exact``) merge the median exactly; where a level dropped them (the lean
    # per-sample rows), that level's median is not reported.
    aggs = [e for m, stats in spec.items() for e in T.merge_exprs(m, stats, f"{m}_values" in partials.columns)]
    if "reward_values" not in partials.columns and "reward_median" not in partials.columns:
        partials = partials.with_columns(pl.lit(None, dtype=pl.Float64).alias("reward_median"))
    aggs += [pl.col("zero_groups").sum(), pl.col("groups").sum(), pl.col("parts").sum()]
    merged = partials.group_by(keys, maintain_order=True).agg(aggs) if keys else partials.select(aggs)
    zero = pl.when(pl.col("groups") > 0).then(pl.col("zero_groups") / pl.col("groups")).alias("zero_adv_frac")
    finals = {m: T.finish_exprs(m, stats) for m, stats in spec.items()}
    out = merged.select(*keys, *finals.pop("reward"), *finals.pop("kl"), zero, *[e for f in finals.values() for e in f])
    lost = [c for c in merged.columns if c.endswith("_median_lost")]
    notes = [MEDIAN_NOTE] if any(merged[c].any() for c in lost) else []
    if keys:
        out = out.sort(keys, nulls_last=True)
    return out, notes
