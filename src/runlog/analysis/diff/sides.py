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
# mean is then infinite or NaN), its bootstrap replicates (of its finite values), and the units the replicates
# resample that hold a finite value: each one's mean and weight (its number of values), which the permutation
# test of a difference splits between the runs (``bootstrap.backed_verdict``) and whose number decides whether
# any verdict is possible.
Boot = tuple[float | None, int, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Side:
    index: int
    name: str
    run: Run
    steps: dict[Split, list[int]]
    per_step: pl.DataFrame | None = None
    rows: pl.DataFrame | None = None  # the windows' samples: split, step, role, reward, kl, group, tkey, ikey
    text_rows: pl.DataFrame | None = None  # those of the start and end windows
    # Per (split, role, step, prompt key) of the start and end windows: the mean valid reward (the pairing's).
    prompt_means: pl.DataFrame | None = None
    wanted: dict[Split, set[int]] = field(default_factory=dict)  # every window's steps
    text_wanted: dict[Split, set[int]] = field(default_factory=dict)  # the start and end windows' steps
    windows: set[tuple[Split, tuple[int, ...]]] = field(default_factory=set)
    boots: dict[tuple[Split, tuple[int, ...]], dict[str, Boot]] = field(default_factory=dict)
    # Per (split, role key): the design effect of the role's rewards in its prompt groups (``design_effect``).
    deff: dict[tuple[Split, str], float] = field(default_factory=dict)
    # The (split, role key)s of the windows with no prompt group nor prompt known: their samples are the units.
    independent: set[tuple[Split, str]] = field(default_factory=set)
    # Per (split, role key) of a window whose prompt keys were all discarded as no prompt's identity, leaving none
    # that ties samples across steps: why (``RoleRows.identity``: "text", "counters", "same"). The units are then the
    # steps' groups, too fine if prompts recur across steps (``compare.unlinked_notes`` says so).
    unlinked: dict[tuple[Split, str], set[str]] = field(default_factory=dict)
    # Per (split, step) of the windows where sample ids repeat: the ids, the extra samples (``repeated_ids``).
    repeated: list[tuple[Split, int, int, int]] = field(default_factory=list)
    # Per (split, step, role key) of the windows where a sample lists the role more than once: the sample ids
    # (``listed_twice``). Each entry is a value (counted in ``n`` and the means, as summarize counts it): said.
    twice: list[tuple[Split, int, str, int]] = field(default_factory=list)
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
        return cached.filter(pl.col("step").is_not_null())  # (a step beyond int64 is read as none: in no step)
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
    out = out.filter(pl.col("step").is_not_null())
    return out.select("split", "role", "step", *PER_STEP_COLUMNS).sort("split", "role", "step", nulls_last=True)


# ---------------------------------------------------------------------------------------------------------
# The windows' samples and their bootstrap
# ---------------------------------------------------------------------------------------------------------


def load_rows(side: Side) -> None:
    """The samples of the steps the comparison looks at closely, one row per (sample, role), in one read of only
    the files that hold them: ``rows`` (split, step, role, reward, kl, with ``group``, the prompt group as
    summarize finds it, and the prompt's two possible identities: ``tkey``, its text's hash, and ``ikey``, its
    group id's; this may read the prompt text), and ``text_rows``, those of the start and end windows (the
    pairing's and zero_adv_frac's). ``group`` and the keys together are what the intervals resample
    (``clusters``: a prompt's samples together, over the window's steps) and zero_adv_frac counts; the sample
    ids, where the layout's are unique, tell rows read twice (``Side.repeated``). Both keys are kept: a text
    shared by the groups of a step (an instruction) is no prompt's identity, and its samples' group ids may be."""
    group = group_key_expr(side.run, True)  # decided on the whole run: the windows' files alone may not tell
    group = pl.lit(None, dtype=pl.String) if group is None else group.cast(pl.String)
    prompt = pl.col("prompt")
    # Integers, hashed as the rows are read (grouping and joining u64 is cheaper than strings); the group id
    # is hashed with another seed, so that it cannot stand for a prompt's text.
    # A null hashes to a constant: a sample without prompt text would be paired as one prompt with every other such
    # sample of its step; hashed only where there is a value (neither: no key, not paired).
    gid = pl.col("group_id").cast(pl.String)
    carry = {
        "step": pl.col("step"),
        "split": pl.col("split"),
        "group": group,
        "tkey": pl.when(prompt.is_not_null()).then(prompt.hash()),
        "ikey": pl.when(gid.is_not_null()).then(gid.hash(seed=1)),
    }
    numbers = ["split", "step", "role", "reward", "kl", "group", "tkey", "ikey"]
    if unique_ids(side.run):
        carry["sid"] = pl.col("sample_id").cast(pl.String)
        # A Flink file's roles are columns: a sample gives one row per role, none twice, so its rows need no
        # count of entries (its reader builds the ``roles`` list it would take them from: 40x the read).
        lists = any(f.layout != "flink" for f in side.run.files if f.kind == "samples" and f.readable)
        carry["entries"] = ENTRIES if lists else pl.lit(None, dtype=pl.Int64)
        numbers += ["sid", "entries"]
    side.rows = _read_steps(side, side.wanted, carry, numbers)
    texts = [split_eq(s) & pl.col("step").is_in(sorted(v)) for s, v in side.text_wanted.items() if v]
    if side.rows is not None and texts:
        side.text_rows = side.rows.filter(functools.reduce(operator.or_, texts))
    side.prompt_means = prompt_means(side.text_rows)
    side.repeated, side.twice = repeated_ids(side.rows)


def unique_ids(run: Run) -> bool:
    """Whether every sample file of ``run`` is of a layout whose sample ids are unique within a step (the
    layouts ``doctor`` and ``inspect --deep`` check for repeated ids)."""
    from ..inspect import UNIQUE_ID_LAYOUTS

    layouts = {f.layout for f in run.files if f.kind == "samples" and f.readable}
    return bool(layouts) and layouts <= set(UNIQUE_ID_LAYOUTS)


# The rows a sample gives in the long view (``numeric``): one per entry of its ``roles`` list, one where it has
# none (a null or empty list: the sample's own reward, role null).
ENTRIES = pl.col("roles").list.len().fill_null(0).clip(lower_bound=1).cast(pl.Int64)


def repeated_ids(
    rows: pl.DataFrame | None,
) -> tuple[list[tuple[Split, int, int, int]], list[tuple[Split, int, str, int]]]:
    """Per (split, step) of the windows where a sample id occurs more than once (a copied shard read twice, or
    distinct samples given one id): the ids repeated and the extra samples (the samples beyond the first per
    id), as ``doctor``'s ``repeated_sample_ids`` counts them: samples, not rows of a role. A sample gives one row
    per entry of its ``roles`` list (``entries``), so an id's rows of one such count, over it, are its samples.
    (Counted by (id, role), a sample that lists a role twice read as its id repeated: every id of a run whose
    samples list ``solver`` twice was warned of, where doctor found none.) And per (split, step, role key): the
    ids of a sample that lists the role more than once (more rows of the role than samples of the id)."""
    if rows is None or "sid" not in rows.columns or rows.height == 0:
        return [], []
    keys = ["split", "step", "sid"]
    n, entries = pl.col("n"), pl.col("entries")
    # Each row of a known ``entries`` is 1 / entries of a sample; rows without one (roles as columns) are one per
    # role of each sample: an id's samples there are its rows of one role, the most.
    samples = ((n / entries).sum() + n.filter(entries.is_null()).max().fill_null(0)).round().cast(pl.Int64)
    counts = rows.filter(pl.col("sid").is_not_null()).group_by(*keys, "role", "entries").agg(pl.len().alias("n"))
    per = (
        counts.group_by(keys)
        .agg(samples.alias("samples"), pl.col("n").max())
        .filter((pl.col("samples") > 1) | (pl.col("n") > pl.col("samples")))
    )
    repeated = (
        per.filter(pl.col("samples") > 1)
        .group_by("split", "step")
        .agg(pl.len().alias("ids"), (pl.col("samples") - 1).sum().alias("extra"))
        .sort("split", "step", nulls_last=True)
    )
    # The roles of more rows than samples of their id (only the ids found above: few or none).
    twice = (
        counts.join(per.select(*keys, "samples"), on=keys, nulls_equal=True)
        .group_by(*keys, "role")
        .agg(pl.col("n").sum(), pl.col("samples").first())
        .filter(pl.col("n") > pl.col("samples"))
        .group_by("split", "step", pl.col("role").fill_null(role_key(None)))
        .agg(pl.len().alias("ids"))
        .sort("split", "step", "role", nulls_last=True)
    )
    return (
        [
            (sp, int(st), int(i), int(e))
            for sp, st, i, e in repeated.select("split", "step", "ids", "extra").iter_rows()
        ],
        [(sp, int(st), str(r), int(i)) for sp, st, r, i in twice.iter_rows()],
    )


PROMPT_MEANS_SCHEMA = {
    "split": pl.String,
    "role": pl.String,
    "step": pl.Int64,
    "pkey": pl.UInt64,
    "by_id": pl.Boolean,
    "m": pl.Float64,
}


def prompt_means(rows: pl.DataFrame | None) -> pl.DataFrame:
    """Per (split, role, step, prompt key) of ``rows`` (``Side.text_rows``): the mean of the valid rewards (null
    where none is valid: kept, so that the pairing sees every group id of a step, ``counters``). The key is the
    text's hash where the text is a prompt's identity at its step (``shared_texts``), else the group id's
    (``by_id``); a sample with neither has none and is left out. The mean is of the rewards in sorted order: the
    same rewards in any row order give the same mean."""
    if rows is None or rows.height == 0:
        return pl.DataFrame(schema=PROMPT_MEANS_SCHEMA)
    step = rows.select(pl.struct("split", "role", "step").rank("dense")).to_series()
    shared = shared_texts(_codes(step), _codes(rows["group"]), _codes(rows["tkey"]))
    text = pl.col("tkey").is_not_null() & ~pl.lit(pl.Series("shared", shared))
    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()
    return (
        rows.with_columns(
            pl.when(text).then(pl.col("tkey")).otherwise(pl.col("ikey")).alias("pkey"), (~text).alias("by_id")
        )
        .filter(pl.col("pkey").is_not_null())
        .group_by("split", "role", "step", "pkey", "by_id")
        # Sorted before the sum: the same rewards in another row order (shards written in another order, a run
        # re-read from an object store) give the same mean, bit for bit, not one an ulp apart (a win or a loss).
        .agg(pl.col("reward").filter(valid).cast(pl.Float64).sort().mean().alias("m"))
        .select(list(PROMPT_MEANS_SCHEMA))
    )


def _codes(col: pl.Series) -> np.ndarray:
    """A column's values as codes from 0 (equal values, equal codes), -1 where null."""
    return (col.rank("dense").cast(pl.Int64).fill_null(0) - 1).to_numpy()


def shared_texts(step: np.ndarray, group: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Per sample, whether its text (a code, -1: none) is no prompt's identity at its step: a text found in two
    groups of the step or more, and in more than half of its groups (an instruction or template shared by the
    groups, an empty prompt: tying them joined every group of the window into one unit). A text found in fewer
    is a prompt drawn more than once (sampling with replacement, several groups per prompt; two of a step's four
    groups): its groups are tied, as its draws are one prompt's. Decided step by step: a prompt drawn twice at
    one step keeps its ties at the others (taken for an instruction at every step, it made 19 % of null
    comparisons ahead or behind). Two templates that share a step's groups half and half are then two prompts,
    which makes the intervals wide (few units), not narrow."""
    out = np.zeros(len(text), dtype=bool)
    has = (text >= 0) & (group >= 0)
    if not has.any():
        return out
    at, pos = np.unique(step, return_inverse=True)
    pos = pos.ravel()
    grouped = group >= 0
    per_step = np.unique(np.stack([pos[grouped], group[grouped]]), axis=1)
    n_groups = np.bincount(per_step[0], minlength=len(at))
    triples = np.unique(np.stack([pos[has], text[has], group[has]]), axis=1)
    pairs, k = np.unique(triples[:2], axis=1, return_counts=True)
    hit = pairs[:, (k >= 2) & (2 * k > n_groups[pairs[0]])]
    if not hit.size:
        return out
    width = int(text.max()) + 1
    return (text >= 0) & np.isin(pos * width + text, hit[0] * width + hit[1])


def counters(step: np.ndarray, key: np.ndarray) -> bool:
    """Whether group ids (``key``, of the samples whose prompt they would name, at ``step``) count a step's groups
    rather than name prompts: over two steps or more, at least half of the steps hold the ids that the most steps
    hold, and those alone (``held_first``), and every step holds more than half of its ids within the largest of
    their sets. Those steps' sets are nested (a chain under inclusion), and every other step's lies mostly within
    its top.
    Counters ``g0..g{k-1}`` of a step's ``k`` groups are so, whatever ``k`` is at each step (4 to 7 groups a
    step, as dynamic sampling leaves them, form a chain ``g0..g3`` within ``g0..g4`` ...): read as prompt names,
    ``g3`` tied the steps' unrelated prompts into about 8 units a window, and 12 % of null comparisons of
    zero_adv_frac were called higher or lower at 95 % (5 % over the right units). A step that lost a group
    (``g0..g7`` but ``g3``) still holds the others; two steps that lost different ones do not, and are among the
    half that may not. A dataset drawn whole at every step reads the same, and is taken so too. A dataset read
    in order is not: 16 prompts, 8 a step, hold ``q0..q7`` and ``q8..q15`` by turns, and over an odd number of
    steps the more frequent half alone passed ``held_first`` at most steps (its prompts were left unpaired: 40
    pairs, all won, became a tie); the other half's steps hold none of its ids. (A first rule asked for one
    step holding every id: counters whose largest step lost a group then made 43 pairs of unrelated prompts,
    a review.) Nor is a dataset drawn in part at each step (8 of
    40 prompts: its ids are at steps as they were drawn, not the most frequent first, and no step holds them
    all), nor ids found at one step each (a running counter: ``recurs``)."""
    steps, pos = np.unique(step, return_inverse=True)
    if len(steps) < 2:
        return False
    pos = pos.ravel()
    first = held_first(pos, key)
    if 2 * int(first.sum()) < len(steps):
        return False
    pairs = np.unique(np.stack([pos, key]), axis=1)  # the (step, id)s held
    size = np.bincount(pairs[0], minlength=len(steps))
    top = int(np.flatnonzero(first)[np.argmax(size[first])])  # the largest set that passes: it holds the others
    in_top = np.isin(pairs[1], pairs[1][pairs[0] == top])
    shared = np.bincount(pairs[0], weights=in_top, minlength=len(steps))
    return bool((2 * shared > size).all())


def one_set(step: np.ndarray, key: np.ndarray) -> bool:
    """Whether every step holds the same set of ids (``key``)."""
    pairs = np.unique(np.stack([step, key]), axis=1)
    steps, per_step = np.unique(pairs[0], return_counts=True)
    return bool((per_step == len(np.unique(key))).all())


def held_first(pos: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Per step (``pos``: its number, from 0), whether it holds exactly the ids held by the most steps: every id it
    holds is held by more steps than any id it lacks (or it lacks none). Where the steps' sets of ids form a chain
    under inclusion (counters of a varying number of groups), every step does."""
    pairs = np.unique(np.stack([pos, key]), axis=1)  # the (step, id)s held
    _, inv, held_by = np.unique(pairs[1], return_inverse=True, return_counts=True)
    freq = held_by[inv.ravel()]  # per (step, id): how many steps hold the id
    n = int(pos.max()) + 1
    least = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(least, pairs[0], freq)  # per step: its least held id's count
    size = np.bincount(pairs[0], minlength=n)
    ranked = np.sort(held_by)
    at_least = len(ranked) - np.searchsorted(ranked, np.minimum(least, ranked[-1] + 1), side="left")
    return (size > 0) & (size == at_least)  # the ids held by as many steps as its least: its own alone


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
class RoleRows:
    """One (split, role)'s samples in the windows, in the order read: each one's step, reward and KL (NaN where
    not a value), and what ties it to other samples (``clusters``): the code of its prompt group within its step
    (``group``), of its prompt (``prompt``: its text's, else its group id's) and of its group id (``ident``:
    the same codes as ``prompt``'s of the samples without text), each -1 where unknown."""

    steps: np.ndarray
    values: dict[str, np.ndarray]  # reward, kl
    group: np.ndarray
    prompt: np.ndarray
    text: np.ndarray | None = None  # whether ``prompt`` is its text's (else its group id's); None: all are
    ident: np.ndarray | None = None

    def ties(self, at: np.ndarray) -> np.ndarray:
        """The prompt codes of the samples ``at`` (whole steps) that tie them across groups (-1: none)."""
        return self.identity(at)[0]

    def identity(self, at: np.ndarray) -> tuple[np.ndarray, set[str]]:
        """The prompt codes of the samples ``at`` (whole steps) that tie them across groups (-1: none), and what
        was discarded as no prompt's identity: ``text``, a text shared by the groups of a step (``shared_texts``:
        those samples fall back on their group ids), and ``counters``, group ids that count a step's groups
        (``counters``: ``g0..g{k-1}``; the units are then a step's groups, as before prompts recurring were
        tied), ``same`` where every step holds one set of them (``g0..g3`` at every step: said only then)."""
        p = self.prompt[at].copy()
        g, step = self.group[at], self.steps[at]
        text = self.text[at] if self.text is not None else p >= 0
        dropped: set[str] = set()
        shared = shared_texts(step, g, np.where(text, p, -1))
        if shared.any():
            dropped.add("text")
            p[shared] = -1 if self.ident is None else self.ident[at][shared]
            text = text & ~shared
        ids = (p >= 0) & ~text
        if ids.any() and counters(step[ids], p[ids]):
            dropped.add("same" if one_set(step[ids], p[ids]) else "counters")
            p[ids] = -1
        return p, dropped

    @property
    def grouped(self) -> bool:
        """Whether any sample has a prompt group or a prompt: else none is known, and the samples are the units,
        taken as independent."""
        return bool((self.group >= 0).any() or (self.prompt >= 0).any())


def recurs(step: np.ndarray, key: np.ndarray) -> bool:
    """Whether a prompt code (``key``, -1: none) ties samples of two steps or more. Of group ids, the one sign
    without prompt text that they name prompts: ids found at one step each (``s3-g1``, a running counter
    ``step * 8 + i``) number a run's groups, and two runs have the same ones at the same steps whatever prompts
    they drew (paired, 80 of 80 "prompts" of two runs that shared none were counted as wins and losses)."""
    has = key >= 0
    if not has.any():
        return False
    pairs = np.unique(np.stack([step[has], key[has]]), axis=1)
    return bool((np.unique(pairs[1], return_counts=True)[1] > 1).any())


@dataclass
class ZeroRows:
    """One (split, role)'s prompt groups (of one step) in the start and end windows: each one's step, its
    ``group`` code (``RoleRows.group``) and its zero_adv_frac value (1 where its valid rewards are all equal)."""

    steps: np.ndarray
    group: np.ndarray
    values: np.ndarray


def clusters(group: np.ndarray, prompt: np.ndarray) -> np.ndarray:
    """Per sample, its resampled unit (numbered from 0, in the order of each unit's first sample): the samples
    tied by a prompt group of one step or by a prompt, transitively. A prompt's samples share its difficulty,
    at every step it is drawn at, so they are not independent: where a small dataset makes a prompt recur in
    most steps of a window, units of (step, group) made intervals 0.4x as wide as a bootstrap of prompts
    (half of the null pairs called ahead or behind at 95 %). The prompt is its text where the layout has it,
    else its group id (the same id at another step read as the same prompt, as the pairing reads it across
    runs: if it is not, the units are coarser than they need be, never too fine). A sample with neither is a
    unit of its own."""
    n = len(group)
    label = np.arange(n)
    keys = [(k >= 0, k) for k in (group, prompt) if len(k) and (k >= 0).any()]
    while True:
        # Each sample takes the least label of the samples it shares a key with, then that label's own label
        # (the labels only fall, each to a sample of the same unit): a few rounds, as many as the longest chain.
        before = label
        label = label.copy()
        for has, key in keys:
            low = np.full(int(key.max()) + 1, n)
            np.minimum.at(low, key[has], label[has])
            label[has] = low[key[has]]
        label = label[label]
        if np.array_equal(label, before):
            break
    return np.unique(label, return_inverse=True)[1].ravel()


def unit_means(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (``labels``, from 0): the mean of its finite values (NaN: none) and their number."""
    k = int(labels.max()) + 1 if len(labels) else 0
    finite = np.isfinite(values)
    n = np.bincount(labels[finite], minlength=k).astype(float)
    total = np.bincount(labels[finite], weights=values[finite], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1.0), np.nan), n


Sources = tuple[dict[tuple[Split, str | None], RoleRows], dict[tuple[Split, str | None], ZeroRows]]


def _window_sources(side: Side) -> Sources:
    """Per split and role: its samples in the windows (``RoleRows``) and its prompt groups in the start and
    end windows (``ZeroRows``: 1 where the group's valid rewards of that role are all equal, as summarize
    counts it), in one pass over the rows read."""
    samples: dict[tuple[Split, str | None], RoleRows] = {}
    zeros: dict[tuple[Split, str | None], ZeroRows] = {}
    if side.rows is None:
        return samples, zeros
    texts = side.text_wanted
    rows = side.rows.sort("split", "role", "step", nulls_last=True, maintain_order=True)
    code = {
        "gcode": pl.format("{}\x00{}", pl.col("step"), pl.col("group")).rank("dense"),
        "tcode": pl.col("tkey").rank("dense"),
        "icode": pl.col("ikey").rank("dense"),
    }
    rows = rows.with_columns((e.cast(pl.Int64).fill_null(0) - 1).alias(name) for name, e in code.items())
    # The group ids' codes follow the texts' (a text's hash and a group id's are never one prompt).
    offset = pl.col("tcode").max() + 1
    rows = rows.with_columns(pl.when(pl.col("icode") >= 0).then(pl.col("icode") + offset).otherwise(-1).alias("icode"))
    rows = rows.with_columns(
        pl.when(pl.col("tcode") >= 0).then(pl.col("tcode")).otherwise(pl.col("icode")).alias("pcode")
    )
    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan() & (pl.col("gcode") >= 0)
    for (split, role), g in rows.partition_by(["split", "role"], maintain_order=True, as_dict=True).items():
        values = {m: g[m].cast(pl.Float64).fill_null(np.nan).to_numpy() for m in ("reward", "kl")}
        at = g["step"].to_numpy()
        text = (g["tcode"] >= 0).to_numpy()
        samples[(split, role)] = RoleRows(
            at, values, g["gcode"].to_numpy(), g["pcode"].to_numpy(), text, g["icode"].to_numpy()
        )
        steps = sorted(texts.get(split, ()))
        groups = (
            g.filter(valid & pl.col("step").is_in(steps))
            .group_by("gcode")
            .agg(pl.col("step").first(), flat(pl.col("reward")).cast(pl.Float64).alias("zero"))
            .sort("gcode")
        )
        if groups.height:
            zeros[(split, role)] = ZeroRows(
                groups["step"].to_numpy(), groups["gcode"].to_numpy(), groups["zero"].to_numpy()
            )
    return samples, zeros


Column = tuple[np.ndarray, np.ndarray | None, np.ndarray]  # a window's units, their weights, its values


def _window_columns(side: Side, sources: Sources, split: Split, steps: tuple[int, ...]) -> dict[str, Column]:
    """Per ``role/metric``: the window's units (``clusters`` of its samples: each unit's mean and number of
    finite values; the samples themselves where no group nor prompt is known) and its values (the samples,
    for the point and its count); zero_adv_frac only for the windows whose groups were counted (start and end),
    its units the same clusters (each one's share of flat groups, weighed by its number of groups)."""
    samples, zeros = sources
    texts = side.text_wanted.get(split, set())
    columns: dict[str, Column] = {}
    for (where, role), src in samples.items():
        if where != split:
            continue
        inside = np.isin(src.steps, steps)
        if not inside.any():
            continue
        rk = role_key(role)
        labels = None
        if src.grouped:
            keys, dropped = src.identity(inside)
            labels = _units(src, inside, keys)
            at = src.steps[inside]
            if dropped and len(np.unique(at)) >= 2 and not recurs(at, keys):
                side.unlinked.setdefault((split, rk), set()).update(dropped)
        for metric in ("reward", "kl"):
            x = src.values[metric][inside]
            columns[f"{rk}/{metric}"] = (x, None, x) if labels is None else (*unit_means(labels, x), x)
        zero = zeros.get((split, role))
        if zero is None or labels is None or not set(steps) <= texts:
            continue
        held = np.isin(zero.steps, steps)
        if held.any():
            codes = src.group[inside]
            unit_of = np.full(int(src.group.max()) + 1, -1)
            unit_of[codes[codes >= 0]] = labels[codes >= 0]
            z = zero.values[held]
            means, weights = unit_means(unit_of[zero.group[held]], z)
            keep = weights > 0  # units without a counted group (samples without a valid reward)
            columns[f"{rk}/zero_adv_frac"] = (means[keep], weights[keep], z)
    return columns


def _units(src: RoleRows, at: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """``clusters`` of the samples ``at``: tied by group and by prompt (``keys``, ``RoleRows.ties``); where the
    prompts tie them all into one unit (one prompt drawn at every step), the step's groups are the units (an
    interval needs two), as they were before prompts were tied across steps."""
    labels = clusters(src.group[at], src.ties(at) if keys is None else keys)
    if len(labels) and labels.max() == 0 and (src.group[at] >= 0).any():
        alone = clusters(src.group[at], np.full(int(at.sum()) if at.dtype == bool else len(at), -1))
        if alone.max() > 0:
            return alone
    return labels


def design_effect(src: RoleRows, steps: Sequence[int]) -> float:
    """How much wider a step's mean spreads, its samples drawn in prompt groups, than if they were independent:
    over ``steps``, the sum of the steps' cluster-robust variances of the mean (by the units the intervals
    resample, ``clusters``, within the step: a step's prompts, with the small-sample factor G / (G - 1)) over
    the sum of their sample variances of the mean (SD^2 / n, ddof 1), never below 1. 1 without groups nor
    prompts. The onset's z divides by the samples' SE times its square root: the per-step figures (the one pass
    over the run, summarize's) hold no group, and the windows' samples do."""
    if not src.grouped:
        return 1.0
    num = den = 0.0
    for step in steps:
        at = src.steps == step
        if not at.any():
            continue
        y = src.values["reward"][at]
        m, n = unit_means(_units(src, at), y)
        keep = n > 0
        n, m = n[keep], m[keep]
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
    """Every window's means and bootstrap replicates (``side.boots``), each role's design effect
    (``side.deff``) and the roles whose samples are taken as independent (``side.independent``). Columns of
    equal length (units), whatever their window and role, go to one ``bootstrap_means`` call, from one stream of
    the run (per length). A column of fewer than ``MIN_UNITS`` units with a finite value has no interval (NaN
    replicates): one prompt resampled gives itself back. The units with a finite value are kept (``Boot``): the
    permutation test of a difference splits them."""
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
            unit_values, unit_weights, samples = columns[key]
            finite = np.isfinite(unit_values)
            col_reps = reps[:, j] if finite.sum() >= MIN_UNITS else np.full(opts.boot, np.nan)
            held = np.ones(len(unit_values)) if unit_weights is None else np.asarray(unit_weights, dtype=float)
            side.boots[(split, steps)][name] = (
                valid_mean(samples),
                valid_count(samples),
                col_reps,
                unit_values[finite].astype(float),
                held[finite],
            )
    for (split, role), src in sources[0].items():
        side.deff[(split, role_key(role))] = design_effect(src, sorted(side.wanted.get(split, ())))
        if not src.grouped:
            side.independent.add((split, role_key(role)))


def split_order(split: Split) -> tuple[bool, bool, str]:
    return (split is None, split != "train", split or "")
