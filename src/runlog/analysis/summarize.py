"""Per-group reward and KL statistics of a run (``summarize``): what is grouped, and which pass computes it.

The statistics are declared once (``runlog.analysis.stats``), computed by one pass per part of the run
(``runlog.analysis.aggregate``: the long or the wide numeric view, whichever the layouts offer), as final
values here or as mergeable partials (``runlog.analysis.partials``, which fleets merge). Scalar summaries
are in ``runlog.analysis.scalars``, correlations in ``runlog.analysis.correlations``; this module
re-exports their public names.

Everything here works on the numeric view (``Run.numeric``): one row per (sample, role) with numbers only,
so a summary never reads a text column (the one exception: with ``prompt_groups``, runs without
``group_id`` fall back to the prompt text to find prompt groups, and then read ``prompt``).

Conventions (docs/cli.md, "summarize"):
- NaN and null are counted in their own columns and never enter a statistic.
- ``*_std`` is the sample standard deviation (ddof = 1), null for fewer than two values.
- ``zero_adv_frac``: among the prompt groups of a result row (a group is one ``group_id`` within one split
  and step), the fraction whose valid rewards of that role are all equal, so that GRPO's group-relative
  advantage is zero for every sample of it. A group of one sample counts as zero-advantage. Groups with no
  valid reward are left out. Null when the run has no prompt groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..errors import UsageError
from . import aggregate as A
from .correlations import correlations
from .filters import Filters, StepRange, apply_filters
from .scalars import DEFAULT_ALIASES, SCALAR_COLUMNS, alias_collisions, load_aliases, summarize_scalars
from .stats import KL_STATS, REWARD_STATS, component_columns
from .views import SPLIT_NOTE, run_splits

if TYPE_CHECKING:
    from ..formats.base import FileInfo
    from ..run import CollectEngine, Run

# --by names -> (numeric-view column, output column)
KEYS: dict[str, str] = {"role": "role", "step": "step", "split": "split", "env": "env", "group": "group"}
# Columns that are per sample in the data, given once per group of the other keys in a per-role summary.
PER_SAMPLE_PREFIX = "sample:"
UNKNOWN_ROLE_NOTE = (
    "rows without per-role data (Flink v0 files, single-agent layouts) are summarised under a null role "
    "(shown as '(unknown)'), with the sample's total reward; runlog does not invent per-role values"
)
PROMPT_GROUPS_NOTE = (
    "some samples have no group_id: their prompt groups can be found from the prompt text, which summarize does "
    "not read unless asked: add --prompt-groups for zero_adv_frac there"
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


def _engine(run: Run, grouped: bool, columns: int, group_key: pl.Expr | None = None, per_row: int = 1) -> CollectEngine:
    """The polars engine for a summary of ``columns`` numeric columns over the run's sample rows (times
    ``per_row``: the long view has one row per sample and role), ``grouped`` by keys besides the role, with
    prompt groups from ``group_key``. Prompt groups found from the prompt text always stream: in memory, the
    whole text column would be held at once."""
    if A.from_prompt(group_key):
        return "streaming"
    grouped = grouped or group_key is not None
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    if any(f.rows is None for f in files):
        return "streaming"
    rows = sum(f.rows or 0 for f in files) * max(1, per_row)
    if rows <= SMALL_ROWS or (not grouped and rows * columns <= IN_MEMORY_CELLS):
        return "in-memory"
    return "streaming"


def summary_keys(run: Run, by: str | Sequence[str], filters: Filters, *, split_key: bool = True) -> list[str]:
    """The group keys a summary really uses: ``by``; ``role`` first when ``--role`` filters roles (a role's
    values are per role); ``step`` before ``group`` (a prompt group is one group id within a split and step:
    ids that come again at other steps, or the prompt text a derived group is named by, are other groups; with
    splits pooled, ``split`` first too: an id of another split is another group);
    and ``split`` first when the run has more than one split and ``--split`` does not pick one (train and
    eval are never pooled silently)."""
    keys = check_keys(by)
    if filters.roles and "role" not in keys:
        keys.insert(0, "role")
    if "group" in keys and "step" not in keys:
        keys.insert(keys.index("group"), "step")
    if split_key and "split" not in keys and not filters.splits and len(run_splits(run)) > 1:
        keys.insert(0, "split")
    if "group" in keys and "split" not in keys and len(filters.splits) > 1:
        # Splits pooled on purpose (two --split): a prompt group is still one split's (eval reuses train's ids).
        keys.insert(0, "split")
    return keys


def pooled_splits(run: Run, filters: Filters) -> list[str]:
    """The splits that a summary without ``split`` among its keys pools in its rows: of those named by several
    ``--split`` (pooled on purpose, docs/cli.md), the ones holding a sample that matches every filter, so that
    the note saying so (``pooled_note``) is not given where only one of them has rows. Told from file names and
    footers (each file's split, steps and rows) where every sample file tells them and no role is asked; else
    from the split column of the rows the summary reads (``Run.numeric`` with ``--role``, else one per sample)."""
    asked = list(dict.fromkeys(filters.splits))
    if len(asked) < 2:
        return []
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    steps = filters.steps
    told = all(f.split is not None and f.rows is not None and (steps.unbounded or f.all_steps()) for f in files)
    if told and not filters.roles:
        held = {
            f.split
            for f in files
            if f.rows and f.split in filters.splits and (steps.unbounded or any(map(steps.contains, f.all_steps())))
        }
    else:
        from .views import sample_view

        carry = {"split": pl.col("split"), "step": pl.col("step")}
        roles = bool(filters.roles)
        view = run.numeric(carry, []) if roles else sample_view(run, carry, [], kl=False)
        [frame] = run.collect(lambda: [apply_filters(view, filters, roles_too=roles).select(pl.col("split").unique())])
        held = set(frame["split"].drop_nulls().to_list())
    return [s for s in asked if s in held]


def pooled_note(splits: Sequence[str]) -> str:
    """What ``pooled_splits`` found, said once: the rows mix these splits, as asked, and how to keep them apart."""
    names = f"{', '.join(splits[:-1])} and {splits[-1]}"
    flags = " ".join(f"--split {s}" for s in splits)
    return f"the splits {names} are pooled in each row, as {flags} asks: add --by split to keep them apart"


def summarize(
    run: Run,
    by: str | Sequence[str] = ("role",),
    *,
    filters: Filters | None = None,
    window: int | None = None,
    split_key: bool = True,
    prompt_groups: bool = False,
    cache: bool = True,
) -> pl.DataFrame:
    """Per-group reward / KL statistics, ``zero_adv_frac``, ``exception_rate`` and reward component means.

    What each figure aggregates (docs/cli.md, "What summarize counts"):

    - with ``role`` among the keys, ``reward_*`` / ``kl_*`` / ``zero_adv_frac`` are per role: one value per
      (sample, role) that logged that role; the columns that are per sample in the data (``exception_rate``,
      ``component/<name>_mean``, ``_count``, ``_nan``, ``_null``) are then given once per group of the other
      keys, named ``sample:...`` (every sample once, all roles together);
    - without ``role``, every statistic is over samples, one value per sample: the sample's reward, the mean
      of its roles' KL, prompt groups by the sample reward.

    ``by``: the group keys, of ``KEYS``, in order (one key may be given as a string: ``by="step"``).
    ``split`` is added to the keys when the run has more than one split and ``filters`` pick none
    (``split_key=False`` pools them). Prompt groups come from ``group_id``; with ``prompt_groups``, samples
    without one are grouped by identical prompt text within a split and step (this reads the prompt text,
    which no other statistic needs). Output columns: the keys, then ``REWARD_STATS``, ``KL_STATS``,
    ``zero_adv_frac``, the per-sample columns (``exception_rate``, then per component its mean over the valid
    values, their count, and the NaN and null values left out: null is a sample without the component,
    ``stats.component_columns``); with ``window``, ``reward_mean_ma`` and ``kl_mean_ma``
    (moving averages over the last ``window`` steps of each group; ``step`` is added to the keys if missing).

    ``cache``: answer from the per-step partials kept from earlier summaries of this run, reading only the
    steps not seen yet (``runlog.analysis.partial_cache``; ``RUNLOG_CACHE=off`` turns it off everywhere); the
    numbers are a cold read's.
    """
    filters = filters or Filters()
    keys = summary_keys(run, by, filters, split_key=split_key)
    if window is not None:
        if window < 1:
            raise UsageError("--window must be a positive number of steps")
        if "step" not in keys:
            keys.append("step")
    out: pl.DataFrame | None = None
    if cache:
        from .partial_cache import cached_summary

        out = cached_summary(run, keys, filters, prompt_groups=prompt_groups)
    if out is None:
        out = _cold_summary(run, keys, filters, prompt_groups)
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


def _cold_summary(run: Run, keys: list[str], filters: Filters, prompt_groups: bool) -> pl.DataFrame:
    """The summary read from the data (every file), in ``summarize``'s columns, unsorted."""
    components = run.component_names()
    out = summary_pass(run, keys, filters, components, prompt_groups=prompt_groups)
    per_sample = ["exception_rate", *component_columns(components)]
    ordered = [*keys, *REWARD_STATS, *KL_STATS, "zero_adv_frac"]
    if "role" in keys:
        others = [k for k in keys if k != "role"]
        if A.lean_roles(run, filters) is not None:
            # Every sample has every role's columns: the per-role pass computed these once per sample already.
            sample = out.select(*others, *per_sample)
            sample = sample.unique(others, keep="first", maintain_order=True) if others else sample.head(1)
        else:
            sample = summary_pass(
                run, others, Filters(filters.splits, filters.steps), components, kl=False, prompt_groups=prompt_groups
            )
        sample = sample.select(*others, *[pl.col(c).alias(f"{PER_SAMPLE_PREFIX}{c}") for c in per_sample])
        out = out.drop(per_sample)
        out = out.join(sample, on=others, how="left", nulls_equal=True) if others else out.join(sample, how="cross")
        ordered += [f"{PER_SAMPLE_PREFIX}{c}" for c in per_sample]
    else:
        ordered += per_sample
    return out.select(ordered)


def prompt_groups_skipped(run: Run) -> bool:
    """Whether some samples have no ``group_id`` but a prompt text their prompt groups could be found from
    (``prompt_groups=True``: this reads the prompt text), so that asking for them would change a figure: not
    merely a ``prompt`` column (all null, or null where the ids are). Told from footers (``A.prompts_without_ids``);
    which samples would join their prompt's group id (``join``) is not looked for: that reads the prompt text, and
    a summary without ``prompt_groups`` reads no text column."""
    return A.from_prompt(A.group_key_expr(run, True, join=False)) and A.prompts_without_ids(run)


def _summarize_wide(
    run: Run, keys: list[str], filters: Filters, group_key: pl.Expr | None, components: list[str]
) -> A.Query | None:
    """The wide view's query, or None where the long view is needed (a test replaces it to compare both)."""
    return A.plan_wide(run, keys, filters, group_key, components)


def summary_pass(
    run: Run,
    keys: list[str],
    filters: Filters,
    components: list[str],
    *,
    partial: bool = False,
    kl: bool = True,
    prompt_groups: bool = False,
    exact: bool = False,
) -> pl.DataFrame:
    """The statistics (``partial``: their partials; ``exact``: those that merge without loss) of ``run``
    grouped by ``keys``, one pass per batch of steps (``_step_batches``), each on the engine its size calls
    for (``_engine``)."""
    group_key = A.group_key_expr(run, prompt_groups)
    # Prompt groups found from the text are computed by a query of their own (``aggregate._collect``): they do
    # not weigh on the statistics query's engine.
    weighed = None if A.from_prompt(group_key) else group_key
    parts = []
    for part in _step_batches(run, keys, filters):
        query = _summarize_wide(part, keys, filters, group_key, components)
        query = query or A.plan_long(part, keys, filters, group_key, components, kl=kl)
        engine = _engine(part, query.grouped, query.cells, weighed, per_row=query.per_row)
        parts.append(A.execute(part, query, engine, partial=partial, exact=exact))
    return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]


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
        (step, f)
        for f in samples
        if (step := f.step) is not None  # every one, as checked above
        and (first is None or step >= first)
        and (last is None or step <= last)
        and (not filters.splits or f.split is None or f.split in filters.splits)
    ]
    if not chosen:
        return [run]
    if sum(f.rows or 0 for _, f in chosen) <= BATCH_ROWS:
        return [run] if len(chosen) == len(samples) else [_sub_run(run, [f for _, f in chosen])]
    by_step: dict[int, list[FileInfo]] = {}
    for step, f in chosen:
        by_step.setdefault(step, []).append(f)
    batches: list[Run] = []
    current: list[FileInfo] = []
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


def _sub_run(run: Run, files: list[FileInfo]) -> Run:
    """``run`` with only the sample files ``files`` (and every file of another kind). What the layouts decide
    from the run's files (its roles, TRL's reward-function columns) stays the whole run's (``RunContext.files``,
    shared): a step reads the same in a sub-run as in the whole run."""
    others = [f for f in run.files if f.kind != "samples"]
    return dataclasses.replace(run, files=others + files)


def check_keys(by: str | Iterable[str], allowed: Iterable[str] = KEYS) -> list[str]:
    """``--by`` values, de-duplicated in order; an unknown one is a usage error naming the allowed ones. A
    single string is one key (``summarize(run, by="step")``), not its characters."""
    allowed = list(allowed)
    keys: list[str] = []
    for k in [by] if isinstance(by, str) else by:
        if k not in allowed:
            import difflib

            near = difflib.get_close_matches(k, allowed, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(f"--by {k!r}: expected one of {', '.join(allowed)}{hint}")
        if k not in keys:
            keys.append(k)
    return keys


def infinite_note(frame: pl.DataFrame) -> str | None:
    """A note when a group's rewards or KL hold an infinite value (its min or max is): ±inf count as values (they
    are numbers, not NaN), so those groups' mean and std are infinite or NaN while ``reward_nan`` says 0. And when
    a group's values are all finite (its min and max are) but its mean or std is not: finite values near the
    float64 limit (1e308) whose sum, or sum of squares, goes past it, so the mean is inf and the std inf or NaN
    (numpy's std is inf where this one is NaN); said apart, since no value is infinite."""
    infinite, overflow = [], []
    for m in ("reward", "kl"):
        lo, hi = f"{m}_min", f"{m}_max"
        if lo not in frame.columns:
            continue
        name = "rewards" if m == "reward" else "KL values"
        spread = [c for c in (f"{m}_mean", f"{m}_std") if c in frame.columns]
        finite = pl.col(lo).is_finite() & pl.col(hi).is_finite()
        summed = pl.any_horizontal(~pl.col(c).is_finite() for c in spread) if spread else pl.lit(False)
        bounds, sums = frame.select(
            (pl.col(lo).is_infinite() | pl.col(hi).is_infinite()).any().alias("bounds"),
            (finite & summed).any().alias("sums"),
        ).row(0)
        if bounds:
            infinite.append(name)
        if sums:
            overflow.append(name)
    notes = []
    if infinite:
        notes.append(
            f"some {' and '.join(infinite)} are infinite (min -inf or max inf): they count as values, so those "
            "groups' mean and std are not finite (runlog doctor reports where they start)"
        )
    if overflow:
        notes.append(
            f"some groups' {' and '.join(overflow)} are finite but too large for sums in float64 (their sum past "
            "1.8e308, or their squares': values near 1e308, or beyond 1e154 apart): those groups' mean or std is inf "
            "or NaN"
        )
    return "; ".join(notes) or None


def unknown_role_rows(frame: pl.DataFrame) -> bool:
    return "role" in frame.columns and frame["role"].null_count() > 0


def __getattr__(name: str) -> Any:
    """The partials' names, re-exported on first use (``runlog.analysis.partials`` builds on this module)."""
    if name in ("summarize_partials", "combine_partials", "MEDIAN_NOTE"):
        from . import partials

        return getattr(partials, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ALIASES",
    "KEYS",
    "KL_STATS",
    "PROMPT_GROUPS_NOTE",
    "REWARD_STATS",
    "SCALAR_COLUMNS",
    "SPLIT_NOTE",
    "UNKNOWN_ROLE_NOTE",
    "infinite_note",
    "Filters",
    "StepRange",
    "apply_filters",
    "check_keys",
    "correlations",
    "load_aliases",
    "pooled_note",
    "pooled_splits",
    "prompt_groups_skipped",
    "run_splits",
    "summarize",
    "summarize_scalars",
    "alias_collisions",
    "summary_keys",
    "unknown_role_rows",
]
