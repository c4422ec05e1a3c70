"""One run's side of a diff: its per-step figures (the one pass over the whole run), the samples of the windows
the comparison looks at closely, and their bootstrap replicates."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..._lazy import pl
from ...run import Run
from ..aggregate import group_key_expr
from ..check import describe_steps
from ..filters import Filters, apply_filters
from ..stats import flat
from .bootstrap import MIN_UNITS, bootstrap_means, rng_for, valid_count, valid_mean
from .model import DiffOptions, Split

PER_STEP_COLUMNS = ("reward_mean", "reward_std", "reward_count", "reward_nan", "kl_mean", "kl_std", "kl_count")
# A window column's mean and number of valid values (not NaN: ±inf are values, as summarize counts them; the
# mean is then infinite or NaN), and its bootstrap replicates (of its finite values).
Boot = tuple[float | None, int, np.ndarray]


@dataclass
class Side:
    index: int
    name: str
    run: Run
    steps: dict[Split, list[int]]
    per_step: pl.DataFrame | None = None
    rows: pl.DataFrame | None = None  # the samples of the windows: split, step, role, reward, kl, group
    text_rows: pl.DataFrame | None = None  # the start and end windows': split, step, role, reward, group, pkey
    # Per (split, role, step, prompt key) of the start and end windows: the mean valid reward (the pairing's).
    prompt_means: pl.DataFrame | None = None
    wanted: dict[Split, set[int]] = field(default_factory=dict)  # every window's steps
    text_wanted: dict[Split, set[int]] = field(default_factory=dict)  # the start and end windows' steps
    windows: set[tuple[Split, tuple[int, ...]]] = field(default_factory=set)
    boots: dict[tuple[Split, tuple[int, ...]], dict[str, Boot]] = field(default_factory=dict)
    # Per (split, role key): the design effect of the role's rewards in its prompt groups (``design_effect``).
    deff: dict[tuple[Split, str], float] = field(default_factory=dict)
    # Per (split, step) of the windows where sample ids repeat: the ids, the extra samples (``repeated_ids``).
    repeated: list[tuple[Split, int, int, int]] = field(default_factory=list)
    _by_role: dict[tuple[Split, str | None], tuple[np.ndarray, dict[str, np.ndarray]]] = field(
        default_factory=dict, repr=False
    )

    def series(self, split: Split, role: str | None, steps: Sequence[int], column: str) -> np.ndarray:
        """One per-step column of one role, on ``steps`` (NaN where the run has no value)."""
        key = (split, role)
        if key not in self._by_role:
            assert self.per_step is not None
            part = self.per_step.filter(split_eq(split) & role_eq(role)).sort("step")
            cols = {c: part[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in PER_STEP_COLUMNS}
            self._by_role[key] = (part["step"].to_numpy(), cols)
        at, cols = self._by_role[key]
        want = np.asarray(steps, dtype=np.int64)
        pos = np.minimum(np.searchsorted(at, want), max(len(at) - 1, 0))
        if not len(at):
            return np.full(len(want), np.nan)
        return np.where(at[pos] == want, cols[column][pos], np.nan)


def layouts_of(run: Run) -> list[str]:
    return sorted({f.layout for f in run.files if f.kind == "samples"} or {f.layout for f in run.files})


def split_eq(split: Split) -> pl.Expr:
    return pl.col("split").is_null() if split is None else pl.col("split") == split


def role_eq(role: str | None) -> pl.Expr:
    return pl.col("role").is_null() if role is None else pl.col("role") == role


def role_key(role: str | None) -> str:
    return "\x00" if role is None else role


def steps_text(steps: Sequence[int]) -> str:
    return describe_steps({None: set(steps)}) if steps else "-"


STEPS_NAMED = 5  # steps named one by one in a note, at most


def steps_listed(steps: Sequence[int]) -> str:
    """``6`` or ``1, 3, 5, 7, 9, ... (20 steps)``: the first few steps by number, with the count when there
    are more. A range (``steps_text``) does not say which steps inside it are missing; this does."""
    shown = sorted(steps)
    more = f", ... ({len(shown)} steps)" if len(shown) > STEPS_NAMED else ""
    return ", ".join(str(s) for s in shown[:STEPS_NAMED]) + more


def only_steps(run: Run, steps: set[int]) -> Run:
    """``run`` without the sample files that hold none of ``steps`` (files whose names and footers do not tell
    their steps are kept): only the windows' files are opened."""
    keep = []
    for f in run.files:
        if f.kind == "samples" and f.readable:
            have = f.all_steps()
            if have and not steps.intersection(have):
                continue
        keep.append(f)
    return Run(root=run.root, files=keep, ctx=run.ctx)


# ---------------------------------------------------------------------------------------------------------
# The one pass over the whole run
# ---------------------------------------------------------------------------------------------------------


def _step_stats(reward: pl.Expr, kl: pl.Expr, prefix: str = "") -> list[pl.Expr]:
    """``PER_STEP_COLUMNS`` of one role's values, as summarize computes them: NaN and null left out (NaN
    counted), the standard deviation with ddof 1."""
    r, k = reward.fill_nan(None), kl.fill_nan(None)
    exprs = [
        r.mean().alias("reward_mean"),
        r.std(ddof=1).alias("reward_std"),
        r.count().cast(pl.Int64).alias("reward_count"),
        reward.is_nan().sum().cast(pl.Int64).alias("reward_nan"),
        k.mean().alias("kl_mean"),
        k.std(ddof=1).alias("kl_std"),
        k.count().cast(pl.Int64).alias("kl_count"),
    ]
    return [e.alias(prefix + e.meta.output_name()) for e in exprs]


def _from_cache(side: Side, filters: Filters) -> pl.DataFrame | None:
    """``PER_STEP_COLUMNS`` from the per-step partials summarize keeps (``partial_cache``): the steps the cache
    lacks are read and stored, as summarize would, so that the next diff or summarize of the run reads only
    what is new (a first diff pays for it: about 1.4x the lean query of ``per_step``, 1.0 s against 0.73 s for
    a 1 M-row run). None when the cache is off, or the run cannot be cached (``run_partials``). A partial is
    one step's (split, step, role): its mean, its count and its ``M2`` give the mean, the SD (ddof 1) and the
    count exactly as summarize merges them."""
    from ..partial_cache import PartialStore, run_partials

    store = PartialStore.open(side.run.root)
    if store is None:
        return None
    parts = run_partials(side.run, "role", filters=filters, store=store)
    if parts is None:
        return None
    rows = parts.frame.filter(pl.col("level") == "role") if "level" in parts.frame.columns else parts.frame
    if filters.splits:
        rows = rows.filter(pl.col("split").is_in(list(filters.splits)))
    if filters.roles:
        rows = rows.filter(pl.col("role").is_in(list(filters.roles)))
    if rows.select(pl.struct("split", "step", "role").n_unique()).item() != rows.height:
        return None  # several partials of one step (not how the cache keeps them): summarize's query instead

    def std(m: str) -> pl.Expr:
        n, m2 = pl.col(f"{m}_n"), pl.col(f"{m}_m2")
        return pl.when(n >= 2).then((m2 / (n - 1)).clip(lower_bound=0.0).sqrt()).alias(f"{m}_std")

    return rows.select(
        "split",
        "role",
        "step",
        pl.col("reward_mean"),
        std("reward"),
        pl.col("reward_n").alias("reward_count"),
        pl.col("reward_nan"),
        pl.col("kl_mean"),
        std("kl"),
        pl.col("kl_n").alias("kl_count"),
    ).sort("split", "role", "step", nulls_last=True)


def per_step(side: Side, opts: DiffOptions) -> pl.DataFrame | None:
    """Per split, role and step: the reward's and KL's mean, SD and count (``PER_STEP_COLUMNS``), the numbers
    ``summarize(run, ["split", "role", "step"])`` reports for them: from summarize's partials where the cache
    is on (``partial_cache``: it reads only the steps it lacks, and stores them), else by a lean query (no
    medians, no extremes, no components, nothing stored): the one pass over the whole run.
    Runs whose every sample has every role (Flink v1) are read in the wide view, one column per role, as
    summarize reads them."""
    if not side.steps:
        return None
    run = side.run
    filters = Filters(
        splits=tuple(s for s in side.steps if s is not None) if None not in side.steps else (),
        steps=opts.steps,
        roles=opts.roles,
    )
    cached = _from_cache(side, filters)
    if cached is not None:
        return cached
    carry = {"split": pl.col("split"), "step": pl.col("step")}
    roles = [r for r in run.role_names() if not opts.roles or r in opts.roles]
    keys = ["split", "step"]
    if roles and run.wide_roles_everywhere() and run.numeric_wide(carry, [], roles) is not None:

        def wide() -> list[pl.LazyFrame]:
            view = run.numeric_wide(carry, [], roles)
            assert view is not None
            lf = apply_filters(view, filters, roles_too=False)
            stats = [
                e
                for i, r in enumerate(roles)
                for e in _step_stats(pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl"), f"{i}:")
            ]
            return [lf.group_by(keys).agg(stats)]

        [df] = run.collect(wide)
        parts = [
            df.select(
                *keys,
                pl.lit(r, dtype=pl.String).alias("role"),
                *[pl.col(f"{i}:{c}").alias(c) for c in PER_STEP_COLUMNS],
            )
            for i, r in enumerate(roles)
        ]
        out = pl.concat(parts)
    else:

        def long() -> list[pl.LazyFrame]:
            lf = apply_filters(run.numeric(carry, []), filters, roles_too=True)
            return [lf.group_by([*keys, "role"]).agg(_step_stats(pl.col("reward"), pl.col("kl")))]

        [out] = run.collect(long)
    return out.select("split", "role", "step", *PER_STEP_COLUMNS).sort("split", "role", "step", nulls_last=True)


# ---------------------------------------------------------------------------------------------------------
# The windows' samples and their bootstrap
# ---------------------------------------------------------------------------------------------------------


def load_rows(side: Side) -> None:
    """The samples of the steps the comparison looks at closely, one row per (sample, role), in at most two
    reads of only the files that hold them: ``text_rows`` for the start and end windows (split, step, role,
    reward, kl, with ``group``, the prompt group as summarize finds it, and ``pkey``, the prompt's identity
    across runs: its text's hash, else its group id's, for pairing; these may read the prompt text), and the
    best windows' other steps (with ``group``, without ``pkey``); ``rows`` (split, step, role, reward, kl,
    group) is both together. ``group`` is what the intervals resample (a prompt group's samples together) and
    zero_adv_frac counts; the sample ids, where the layout's are unique, tell rows read twice
    (``Side.repeated``)."""
    group = group_key_expr(side.run, True)  # decided on the whole run: the windows' files alone may not tell
    group = pl.lit(None, dtype=pl.String) if group is None else group.cast(pl.String)
    prompt = pl.col("prompt")
    # An integer, hashed as the rows are read (grouping and joining u64 is cheaper than strings); the group id
    # is hashed with another seed, so that it cannot stand for a prompt's text.
    # A null hashes to a constant: a sample without prompt text would be paired as one prompt with every other such
    # sample of its step; hashed only where there is a value (neither: no key, not paired).
    gid = pl.col("group_id").cast(pl.String)
    pkey = pl.coalesce(
        pl.when(prompt.is_not_null()).then(prompt.hash()), pl.when(gid.is_not_null()).then(gid.hash(seed=1))
    )
    base = {"step": pl.col("step"), "split": pl.col("split"), "group": group}
    numbers = ["split", "step", "role", "reward", "kl", "group"]
    if unique_ids(side.run):
        base["sid"] = pl.col("sample_id").cast(pl.String)
        numbers.append("sid")
    texts = {**base, "pkey": pkey}
    side.text_rows = _read_steps(side, side.text_wanted, texts, [*numbers, "pkey"])
    rest = {s: v - side.text_wanted.get(s, set()) for s, v in side.wanted.items()}
    more = _read_steps(side, rest, base, numbers)
    parts = [df for df in (side.text_rows, more) if df is not None]
    side.rows = pl.concat([df.select(numbers) for df in parts]) if parts else None
    side.prompt_means = prompt_means(side.text_rows)
    side.repeated = repeated_ids(side.rows)


def unique_ids(run: Run) -> bool:
    """Whether every sample file of ``run`` is of a layout whose sample ids are unique within a step (the
    layouts ``doctor`` and ``inspect --deep`` check for repeated ids)."""
    from ..inspect import UNIQUE_ID_LAYOUTS

    layouts = {f.layout for f in run.files if f.kind == "samples" and f.readable}
    return bool(layouts) and layouts <= set(UNIQUE_ID_LAYOUTS)


def repeated_ids(rows: pl.DataFrame | None) -> list[tuple[Split, int, int, int]]:
    """Per (split, step) of the windows where a sample id occurs more than once (a copied shard read twice, or
    distinct samples given one id): the ids repeated and the extra samples (rows of one role beyond the first
    per id), as ``doctor``'s ``repeated_sample_ids`` counts them."""
    if rows is None or "sid" not in rows.columns or rows.height == 0:
        return []
    per = (
        rows.filter(pl.col("sid").is_not_null())
        .group_by("split", "step", "sid", "role")
        .agg(pl.len().alias("n"))
        .group_by("split", "step", "sid")
        .agg((pl.col("n").max() - 1).alias("extra"))
        .filter(pl.col("extra") > 0)
        .group_by("split", "step")
        .agg(pl.len().alias("ids"), pl.col("extra").sum())
        .sort("split", "step", nulls_last=True)
    )
    return [(sp, int(st), int(i), int(e)) for sp, st, i, e in per.select("split", "step", "ids", "extra").iter_rows()]


def prompt_means(rows: pl.DataFrame | None) -> pl.DataFrame:
    """Per (split, role, step, prompt key): the mean of the valid rewards of ``rows`` (``Side.text_rows``)."""
    if rows is None or rows.height == 0:
        return pl.DataFrame(
            schema={"split": pl.String, "role": pl.String, "step": pl.Int64, "pkey": pl.UInt64, "m": pl.Float64}
        )
    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan() & pl.col("pkey").is_not_null()
    return rows.filter(valid).group_by("split", "role", "step", "pkey").agg(pl.col("reward").mean().alias("m"))


def _read_steps(
    side: Side, wanted: dict[Split, set[int]], carry: dict[str, pl.Expr], cols: list[str]
) -> pl.DataFrame | None:
    wanted = {s: v for s, v in wanted.items() if v}
    if not wanted:
        return None
    run = only_steps(side.run, set().union(*wanted.values()))
    parts = [split_eq(split) & pl.col("step").is_in(sorted(steps)) for split, steps in wanted.items()]
    cond = functools.reduce(operator.or_, parts)
    [df] = run.collect(lambda: [run.numeric(carry, []).filter(cond).select(cols)])
    return df


@dataclass
class Source:
    """What a window column of one split and ``role/metric`` draws from: its resampled units (a prompt group's
    samples of one step, a sample without a group, or a prompt group's zero_adv_frac), each at its step, with its
    value (the mean of its valid values; NaN: none) and ``weight`` (how many valid values that mean is of; None:
    one each), and the samples themselves, for the point and its count (the means of the samples, as summarize
    takes them, whatever the units)."""

    unit_steps: np.ndarray
    units: np.ndarray
    weights: np.ndarray | None
    sample_steps: np.ndarray
    samples: np.ndarray


WindowSource = dict[tuple[Split, str], Source]  # (split, role/metric)


def _units(g: pl.DataFrame) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]] | None:
    """One (split, role)'s rows as prompt groups of one step (a row without a group: a unit of its own): the
    units' steps and, per metric, each unit's mean of its finite values and their number. None where no row
    has a group: the samples are the units."""
    if g["group"].null_count() == g.height:
        return None
    unit = pl.coalesce(pl.col("group"), pl.lit("\x00#") + pl.int_range(pl.len()).cast(pl.String))
    aggs = []
    for metric in ("reward", "kl"):
        v = pl.col(metric).cast(pl.Float64)
        finite = v.is_finite().fill_null(False)
        aggs += [v.filter(finite).sum().alias(f"{metric}_sum"), finite.sum().cast(pl.Float64).alias(f"{metric}_n")]
    per = g.with_columns(unit.alias("unit")).group_by("step", "unit").agg(aggs).sort("step", "unit")
    out = {}
    for metric in ("reward", "kl"):
        n = per[f"{metric}_n"].to_numpy()
        total = per[f"{metric}_sum"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[metric] = (np.where(n > 0, total / np.where(n > 0, n, 1.0), np.nan), n)
    return per["step"].to_numpy(), out


def _window_sources(side: Side) -> WindowSource:
    """Per split and ``role/metric``: the units the windows resample (``Source``), in one pass over the rows
    read: prompt groups of one step where the run has groups (their samples are not independent: a prompt's
    difficulty is shared by its samples), else samples (reward, kl; NaN where invalid); zero_adv_frac: prompt
    groups (1 where the group's valid rewards of that role are all equal, as summarize counts it; start and end
    windows only, where the prompt text was read)."""
    out: WindowSource = {}
    if side.rows is not None:
        rows = side.rows.sort("split", "role", "step", nulls_last=True, maintain_order=True)
        for (split, role), g in rows.partition_by(["split", "role"], maintain_order=True, as_dict=True).items():
            at = g["step"].to_numpy()
            grouped = _units(g)
            for metric in ("reward", "kl"):
                values = g[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
                if grouped is None:
                    source = Source(at, values, None, at, values)
                else:
                    means, weights = grouped[1][metric]
                    source = Source(grouped[0], means, weights, at, values)
                out[(split, f"{role_key(role)}/{metric}")] = source
    if side.text_rows is not None:
        valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()
        groups = (
            side.text_rows.filter(valid & pl.col("group").is_not_null())
            .group_by("split", "step", "group", "role")
            .agg(flat(pl.col("reward")).cast(pl.Float64).alias("zero"))
            .sort("split", "role", "step", "group", nulls_last=True)
        )
        for (split, role), g in groups.partition_by(["split", "role"], maintain_order=True, as_dict=True).items():
            at, zero = g["step"].to_numpy(), g["zero"].to_numpy()
            out[(split, f"{role_key(role)}/zero_adv_frac")] = Source(at, zero, None, at, zero)
    return out


Column = tuple[np.ndarray, np.ndarray | None, np.ndarray]  # a window's units, their weights, its samples


def _window_columns(side: Side, sources: WindowSource, split: Split, steps: tuple[int, ...]) -> dict[str, Column]:
    """Per ``role/metric``: the window's units, their weights and its samples (``_window_sources``);
    zero_adv_frac only for the windows whose prompt text was read."""
    texts = side.text_wanted.get(split, set())
    columns: dict[str, Column] = {}
    for (where, name), src in sources.items():
        if where != split or (name.endswith("/zero_adv_frac") and not set(steps) <= texts):
            continue
        inside = np.isin(src.unit_steps, steps)
        if inside.any():
            weights = None if src.weights is None else src.weights[inside]
            columns[name] = (src.units[inside], weights, src.samples[np.isin(src.sample_steps, steps)])
    return columns


def design_effect(source: Source, steps: Sequence[int]) -> float:
    """How much wider a step's mean spreads, its samples drawn in prompt groups, than if they were independent:
    over ``steps``, the sum of the steps' cluster-robust variances of the mean (by prompt group, with the
    small-sample factor G / (G - 1)) over the sum of their sample variances of the mean (SD^2 / n, ddof 1),
    never below 1. 1 without groups. The onset's z divides by the samples' SE times its square root: the
    per-step figures (the one pass over the run, summarize's) hold no group, and the windows' samples do."""
    if source.weights is None:
        return 1.0
    num = den = 0.0
    for step in steps:
        units = source.unit_steps == step
        n, m = source.weights[units], source.units[units]
        keep = n > 0
        n, m = n[keep], m[keep]
        y = source.samples[source.sample_steps == step]
        y = y[np.isfinite(y)]
        total = n.sum()
        if len(n) < 2 or len(y) < 2 or total != len(y):
            continue
        # Values near the floats' ends (1e300) overflow a square: such a step has no ratio (not a numpy warning).
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(np.sum(n * m) / total)
            v_iid = float(np.var(y, ddof=1)) / len(y)
            v_cl = len(n) / (len(n) - 1) * float(np.sum((n * (m - mean)) ** 2)) / total**2
        if not (v_iid > 0 and np.isfinite(v_iid) and np.isfinite(v_cl)):
            continue
        num += v_cl
        den += v_iid
    return max(1.0, num / den) if den > 0 else 1.0


def bootstrap_side(side: Side, opts: DiffOptions) -> None:
    """Every window's means and bootstrap replicates (``side.boots``), and each role's design effect
    (``side.deff``). Columns of equal length (units), whatever their window and role, go to one
    ``bootstrap_means`` call, from one stream of the run (per length). A column of fewer than ``MIN_UNITS``
    units with a finite value has no interval (NaN replicates): one prompt group resampled gives itself back."""
    columns: dict[tuple[Split, tuple[int, ...], str], Column] = {}
    sources = _window_sources(side)
    for split, steps in sorted(side.windows, key=lambda w: (split_order(w[0]), w[1])):
        for name, col in _window_columns(side, sources, split, steps).items():
            columns[(split, steps, name)] = col
        side.boots[(split, steps)] = {}
    by_len: dict[int, list[tuple[Split, tuple[int, ...], str]]] = {}
    for key, col in columns.items():
        by_len.setdefault(len(col[0]), []).append(key)
    for n, keys in sorted(by_len.items()):
        rng = rng_for(opts.seed, side.index, n)
        units = np.column_stack([columns[k][0] for k in keys])
        weights = None
        if any(columns[k][1] is not None for k in keys):
            given = [columns[k][1] for k in keys]
            weights = np.column_stack([np.ones(n) if w is None else w for w in given])
        reps = bootstrap_means(units, opts.boot, rng, weights)
        for j, key in enumerate(keys):
            split, steps, name = key
            unit_values, _, samples = columns[key]
            col_reps = reps[:, j] if np.isfinite(unit_values).sum() >= MIN_UNITS else np.full(opts.boot, np.nan)
            side.boots[(split, steps)][name] = (valid_mean(samples), valid_count(samples), col_reps)
    for (split, name), src in sources.items():
        if name.endswith("/reward"):
            side.deff[(split, name.removesuffix("/reward"))] = design_effect(src, sorted(side.wanted.get(split, ())))


def split_order(split: Split) -> tuple[bool, bool, str]:
    return (split is None, split != "train", split or "")
