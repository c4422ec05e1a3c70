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
from .bootstrap import bootstrap_means, rng_for, valid_count, valid_mean
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
    rows: pl.DataFrame | None = None  # the samples of the windows: split, step, role, reward, kl
    text_rows: pl.DataFrame | None = None  # the start and end windows': split, step, role, reward, group, pkey
    # Per (split, role, step, prompt key) of the start and end windows: the mean valid reward (the pairing's).
    prompt_means: pl.DataFrame | None = None
    wanted: dict[Split, set[int]] = field(default_factory=dict)  # every window's steps
    text_wanted: dict[Split, set[int]] = field(default_factory=dict)  # the start and end windows' steps
    windows: set[tuple[Split, tuple[int, ...]]] = field(default_factory=set)
    boots: dict[tuple[Split, tuple[int, ...]], dict[str, Boot]] = field(default_factory=dict)
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
    reward, kl, with ``group``, the prompt group as summarize finds it, for zero_adv_frac, and ``pkey``, the
    prompt's identity across runs: its text's hash, else its group id's, for pairing; these may read the prompt
    text), and the numbers alone of the best windows' other steps; ``rows`` (split, step, role, reward, kl) is
    both together."""
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
    base = {"step": pl.col("step"), "split": pl.col("split")}
    numbers = ["split", "step", "role", "reward", "kl"]
    texts = {**base, "group": group, "pkey": pkey}
    side.text_rows = _read_steps(side, side.text_wanted, texts, [*numbers, "group", "pkey"])
    rest = {s: v - side.text_wanted.get(s, set()) for s, v in side.wanted.items()}
    more = _read_steps(side, rest, base, numbers)
    parts = [df for df in (side.text_rows, more) if df is not None]
    side.rows = pl.concat([df.select(numbers) for df in parts]) if parts else None
    side.prompt_means = prompt_means(side.text_rows)


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


WindowSource = dict[tuple[Split, str], tuple[np.ndarray, np.ndarray]]  # (split, role/metric): steps, values


def _window_sources(side: Side) -> WindowSource:
    """Per split and ``role/metric``: the step and the value of every unit the windows draw from, in one
    pass over the rows read: one per sample (reward, kl; NaN where invalid) or prompt group (zero_adv_frac:
    1 where the group's valid rewards of that role are all equal, as summarize counts it; start and end
    windows only, where the prompt text was read)."""
    out: WindowSource = {}
    if side.rows is not None:
        rows = side.rows.sort("split", "role", "step", nulls_last=True, maintain_order=True)
        for (split, role), g in rows.partition_by(["split", "role"], maintain_order=True, as_dict=True).items():
            at = g["step"].to_numpy()
            for metric in ("reward", "kl"):
                values = g[metric].cast(pl.Float64).fill_null(np.nan).to_numpy()
                out[(split, f"{role_key(role)}/{metric}")] = (at, values)
    if side.text_rows is not None:
        valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()
        groups = (
            side.text_rows.filter(valid & pl.col("group").is_not_null())
            .group_by("split", "step", "group", "role")
            .agg(flat(pl.col("reward")).cast(pl.Float64).alias("zero"))
            .sort("split", "role", "step", "group", nulls_last=True)
        )
        for (split, role), g in groups.partition_by(["split", "role"], maintain_order=True, as_dict=True).items():
            out[(split, f"{role_key(role)}/zero_adv_frac")] = (g["step"].to_numpy(), g["zero"].to_numpy())
    return out


def _window_columns(side: Side, sources: WindowSource, split: Split, steps: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per ``role/metric``: the window's values (``_window_sources``); zero_adv_frac only for the windows
    whose prompt text was read."""
    texts = side.text_wanted.get(split, set())
    columns: dict[str, np.ndarray] = {}
    for (where, name), (at, values) in sources.items():
        if where != split or (name.endswith("/zero_adv_frac") and not set(steps) <= texts):
            continue
        inside = np.isin(at, steps)
        if inside.any():
            columns[name] = values[inside]
    return columns


def bootstrap_side(side: Side, opts: DiffOptions) -> None:
    """Every window's means and bootstrap replicates (``side.boots``). Columns of equal length, whatever their
    window and role, go to one ``bootstrap_means`` call, from one stream of the run (per length)."""
    columns: dict[tuple[Split, tuple[int, ...], str], np.ndarray] = {}
    sources = _window_sources(side)
    for split, steps in sorted(side.windows, key=lambda w: (split_order(w[0]), w[1])):
        for name, col in _window_columns(side, sources, split, steps).items():
            columns[(split, steps, name)] = col
        side.boots[(split, steps)] = {}
    by_len: dict[int, list[tuple[Split, tuple[int, ...], str]]] = {}
    for key, col in columns.items():
        by_len.setdefault(len(col), []).append(key)
    for n, keys in sorted(by_len.items()):
        rng = rng_for(opts.seed, side.index, n)
        reps = bootstrap_means(np.column_stack([columns[k] for k in keys]), opts.boot, rng)
        for j, (split, steps, name) in enumerate(keys):
            col = columns[(split, steps, name)]
            side.boots[(split, steps)][name] = (valid_mean(col), valid_count(col), reps[:, j])


def split_order(split: Split) -> tuple[bool, bool, str]:
    return (split is None, split != "train", split or "")
