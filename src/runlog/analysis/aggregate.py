"""One pass of a summary over (a part of) a run: which rows, which groups, one query of ``stats``' spec.

Three shapes of the same query, picked from footers (``plan``), give the same statistics:

- the long view (every layout): one row per (sample, role) when ``role`` is a key (``Run.numeric``), else one
  row per sample (``views.sample_view``); grouped by the keys, role among them;
- the wide view with masked roles (a layout with flat per-role columns where some samples lack them): one
  *variant* per role, each aggregating its own columns over the rows that hold it, plus a null-role variant
  for the samples without per-role data (their total reward);
- the lean wide view (Flink v1: every sample has every role): each role aggregates its own columns over
  every row, and what does not depend on the role (rows, exception rate, component means) is aggregated
  once; the exception column is not read at all when footers tell how many samples failed.

The wide shapes are grouped by the keys other than ``role`` and turned into one row per role afterwards:
no row is duplicated per role, which makes summaries by step or split several times cheaper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from . import stats as T
from .filters import Filters, apply_filters
from .views import sample_view

if TYPE_CHECKING:
    from ..run import CollectEngine, Run


@dataclass(frozen=True)
class Variant:
    """The rows of one role in a query: its reward and KL, and ``mask``, the rows that hold it (None: all).
    ``role``: the role its rows are reported under (in the long view the role is a key instead)."""

    role: str | None
    reward: pl.Expr
    kl: pl.Expr
    mask: pl.Expr | None = None


@dataclass
class Query:
    """A planned pass: ``rows`` builds the filtered view, grouped by ``group``; each variant aggregates the
    reward and the KL (and, unless ``shared``, the exception flag and the components); ``long``: the role is
    a group key, and the result needs no reshaping. ``cells`` / ``grouped`` / ``per_row`` weigh the engine."""

    rows: Callable[[], pl.LazyFrame]
    group: list[str]
    variants: list[Variant]
    components: list[str]
    group_key: pl.Expr | None
    long: bool
    shared: bool
    inline: bool  # aggregate expressions of the raw columns (else clean columns are added first)
    cells: int
    per_row: int = 1
    footer: pl.DataFrame | None = None

    @property
    def grouped(self) -> bool:
        return bool(self.group)


# ---------------------------------------------------------------------------------------------------------
# What the rows carry
# ---------------------------------------------------------------------------------------------------------
def group_key_expr(run: Run, prompt_groups: bool = True, *, join: bool = True) -> pl.Expr | None:
    """How prompt groups are known: ``group_id``; where some rows lack it and ``prompt_groups``, identical
    prompt text within a split and step (this reads ``prompt``); None when the run has neither (zero_adv_frac is
    then null).

    A sample without a ``group_id`` whose prompt's other samples of its split and step all carry one and the same
    id is in that id's group (``prompt_joins``: one group's rollouts, some written without the id, are one group,
    not an id group and a prompt group beside it, each of whose rewards may look flat); where they carry several
    ids (which one it was cannot be told), or none, it is in the group of its prompt text. Finding them reads the
    prompt text of the steps that hold both, once per run; ``join=False``: not looked for (whether the groups come
    from the prompt text at all is all the caller asks).

    Decided from footers and already-parsed JSONL frames; a Parquet file written without statistics has its
    ``group_id`` column read (``_count_missing_ids``): an unknown count is not a count of missing ids."""
    any_ids, all_ids, any_prompt = _id_state(run)
    if all_ids:
        return pl.col("group_id")
    if any_prompt and prompt_groups:
        # A sample without a prompt is in no group (hashing a null would put all of them in one).
        prompt = pl.col("prompt")
        by_prompt = pl.when(prompt.is_not_null()).then(pl.lit("prompt:") + prompt.hash().cast(pl.String))
        joins = prompt_joins(run).filter(pl.col("ids") == 1) if any_ids and join else None
        if joins is None or joins.height == 0:
            return pl.coalesce(pl.col("group_id"), by_prompt)
        keys = pl.Series(joins["key"].to_list(), dtype=pl.UInt64)
        sole = pl.Series(joins["group_id"].to_list(), dtype=pl.String)
        joined = pl.when(prompt.is_not_null()).then(
            _prompt_key(prompt).replace_strict(keys, sole, default=None, return_dtype=pl.String)
        )
        return pl.coalesce(pl.col("group_id"), joined, by_prompt)
    return pl.col("group_id") if any_ids else None


def _id_state(run: Run) -> tuple[bool, bool, bool]:
    """Whether some sample file holds a ``group_id``, whether every one holds it for every sample, and whether
    some holds a prompt (footers and parsed JSONL frames)."""
    _count_missing_ids(run)
    any_ids, all_ids = False, True
    any_prompt = False
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        if f.fmt == "parquet":
            rows = f.rows or 0
            if rows == 0:
                continue  # no sample, so none without a group id (its footer may have no null counts)
            has_ids = "group_id" in f.columns and f.null_counts.get("group_id", rows) < rows
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
    return any_ids, all_ids, any_prompt


def _prompt_key(prompt: pl.Expr) -> pl.Expr:
    """A prompt within its split and step, hashed: what a sample without a ``group_id`` is joined by."""
    return pl.struct(pl.col("split").cast(pl.String), pl.col("step").cast(pl.Int64), prompt.hash()).hash()


_JOINS_CACHE = "aggregate.prompt_joins"


def joins_schema() -> dict[str, Any]:
    """The columns of ``prompt_joins``' frame. A function, not a module constant: importing this module imports no
    polars (a kept answer prints without it)."""
    return {
        "split": pl.String,
        "step": pl.Int64,
        "key": pl.UInt64,
        "ids": pl.UInt32,
        "group_id": pl.String,
        "samples": pl.UInt32,
    }


def prompt_joins(run: Run) -> pl.DataFrame:
    """One row per prompt (within a split and step) that has samples without a ``group_id`` beside samples with
    one: ``key`` (``_prompt_key``), ``ids`` (how many distinct ids those carry), ``group_id`` (the least of them:
    where ``ids`` is 1, the group its samples without an id join) and ``samples`` (those without an id).

    Only the steps that may hold both are read (from footers: a file's split, step and its ``group_id`` null
    count; every step where a file does not tell them), their ``split``, ``step``, ``group_id`` and ``prompt``
    columns; none where no step holds both (a writer that started logging ids at some step). Kept per run and
    set of files (``RunContext.cache``): summarize, doctor, diff and the text metrics ask it of one run."""
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    memo: dict[tuple, pl.DataFrame] = run.ctx.cache.setdefault(_JOINS_CACHE, {})
    ident = tuple((f.path, f.stamp, f.rows, f.unread) for f in files)  # a file rewritten (followed) is read again
    if ident in memo:
        return memo[ident]
    wanted = _mixed_files(files)
    empty = pl.DataFrame(schema=joins_schema())
    if not wanted:
        memo[ident] = empty
        return empty
    import dataclasses

    sub = (
        run
        if len(wanted) == len(files)
        else dataclasses.replace(run, files=[*(f for f in run.files if f.kind != "samples"), *wanted])
    )
    prompt = pl.col("prompt")
    gid = pl.col("group_id").cast(pl.String)

    def build() -> list[pl.LazyFrame]:  # built inside: a file found unreadable is then left out
        lf = sub.samples
        if "group_id" not in lf.collect_schema().names() or "prompt" not in lf.collect_schema().names():
            return [empty.lazy()]
        rows = lf.filter(prompt.is_not_null()).select(
            pl.col("split").cast(pl.String), pl.col("step").cast(pl.Int64), _prompt_key(prompt).alias("key"), gid
        )
        per_prompt = rows.group_by("split", "step", "key").agg(
            pl.col("group_id").drop_nulls().n_unique().cast(pl.UInt32).alias("ids"),
            pl.col("group_id").min().alias("group_id"),
            pl.col("group_id").null_count().cast(pl.UInt32).alias("samples"),
        )
        return [per_prompt.filter((pl.col("ids") > 0) & (pl.col("samples") > 0))]

    [found] = sub.collect(build, engine="streaming")
    found = found.select(pl.col(c).cast(t) for c, t in joins_schema().items()).sort(
        "split", "step", "key", nulls_last=True
    )
    memo[ident] = found
    return found


def _mixed_files(files: list[Any]) -> list[Any]:
    """The sample files of the (split, step) pairs that may hold samples with a ``group_id`` and samples without
    one (every file where one does not tell its split, its one step and its null count of ``group_id``)."""
    told: dict[tuple[str, int], list[bool]] = {}
    by_key: dict[tuple[str, int], list[Any]] = {}
    for f in files:
        if f.split is None or f.step is None or f.steps or f.rows is None:
            return files
        if f.rows == 0:
            continue
        if f.fmt == "parquet":
            if "group_id" not in f.columns:
                ids, nulls = False, True
            elif (missing := f.null_counts.get("group_id")) is None:
                ids = nulls = True
            else:
                ids, nulls = missing < f.rows, missing > 0
        else:
            frame = f.frame
            if frame is None:
                ids = nulls = True
            elif "group_id" not in frame.columns:
                ids, nulls = False, True
            else:
                missing = frame["group_id"].null_count()
                ids, nulls = missing < frame.height, missing > 0
        key = (f.split, f.step)
        state = told.setdefault(key, [False, False])
        state[0] |= ids
        state[1] |= nulls
        by_key.setdefault(key, []).append(f)
    return [f for key, state in told.items() if all(state) for f in by_key[key]]


def prompt_join_note(run: Run, filters: Filters | None = None, *, within: pl.Expr | None = None) -> str | None:
    """What ``group_key_expr`` did with the samples without a ``group_id`` of the splits and steps ``filters``
    keep (``--role`` aside), and ``within`` (an expression of ``split`` and ``step``: a diff's windows): how many
    joined the one id of their prompt, and how many stayed a group of their prompt because its other samples carry
    several ids; None where it did neither (or found no group from the prompt text). For the commands that use
    prompt groups from the text to say it: nothing done silently."""
    any_ids, all_ids, any_prompt = _id_state(run)
    if all_ids or not any_ids or not any_prompt:
        return None
    joins = prompt_joins(run)
    if filters is not None:
        if filters.splits:
            joins = joins.filter(pl.col("split").is_in(list(filters.splits)))
        if (steps := filters.steps.expr()) is not None:
            joins = joins.filter(steps)
    if within is not None:
        joins = joins.filter(within)
    one = joins.filter(pl.col("ids") == 1)
    many = joins.filter(pl.col("ids") > 1)
    parts = []
    if one.height:
        parts.append(
            f"{int(one['samples'].sum()):,} sample(s) without a group_id joined the group of their prompt's group_id "
            f"(the one id the other samples of that prompt carry at their split and step; {one.height:,} prompt "
            "group(s))"
        )
    if many.height:
        first = many.row(0, named=True)
        parts.append(
            f"{int(many['samples'].sum()):,} sample(s) without a group_id are a prompt group of their own, found by "
            f"their prompt text: the other samples of their prompt carry several group_ids at that split and step, "
            f"which theirs was cannot be told ({many.height:,} prompt(s); first: split {first['split']}, step "
            f"{first['step']}, {first['ids']} ids)"
        )
    return "; ".join(parts) or None


def prompts_without_ids(run: Run) -> bool:
    """Whether some sample without a ``group_id`` has a prompt, so that prompt groups found from the text
    (``prompt_groups``) would change ``zero_adv_frac``; told without reading any text: from footer null counts
    (a file whose rows without an id outnumber its rows without a prompt holds such a sample), from a parsed
    JSONL frame exactly. From a footer: a file whose every sample has an id, or whose prompt column is all null,
    holds none; any other may (the footer cannot tell whether the samples without an id are those with a
    prompt), as does one whose prompt has no null count (a prompt derived from the trajectory, as Flink's, or a
    footer without statistics)."""
    _count_missing_ids(run)
    for f in run.files:
        if f.kind != "samples" or not f.readable or f.rows == 0:
            continue
        if f.fmt != "parquet":
            frame = f.payload if isinstance(f.payload, pl.DataFrame) else None
            if frame is None or "prompt" not in frame.columns:
                continue
            ids = (
                frame["group_id"].is_null()
                if "group_id" in frame.columns
                else pl.repeat(True, frame.height, eager=True)
            )
            if (ids & frame["prompt"].is_not_null()).any():
                return True
            continue
        if "prompt" not in f.columns:
            continue
        missing = f.rows if "group_id" not in f.columns else f.null_counts.get("group_id")
        if missing == 0:
            continue  # every sample has its id
        no_prompt = f.null_counts.get("prompt")
        if no_prompt is None or f.rows is None or no_prompt < f.rows:
            # Some sample has a prompt and some has no id: the footer cannot tell whether they are the same
            # samples (the hint is then said: it costs a note, its absence a zero_adv_frac of 1 unexplained).
            return True
    return False


def _count_missing_ids(run: Run) -> None:
    """``null_counts["group_id"]`` of the readable Parquet sample files whose footers do not tell it (written
    without statistics), from their ``group_id`` column alone; left unknown where that cannot be read."""
    unknown = [
        f
        for f in run.files
        if f.kind == "samples"
        and f.readable
        and f.fmt == "parquet"
        and f.rows
        and "group_id" in f.columns
        and "group_id" not in f.null_counts
    ]
    from ..formats import get_layout

    by_layout: dict[str, list[Any]] = {}
    for f in unknown:
        by_layout.setdefault(f.layout, []).append(f)

    def counted(files: list[Any], layout: str) -> dict[str, int] | None:
        try:
            lf = get_layout(layout).scan_samples(files, run.ctx)
            if lf is None:
                return {}
            counts = lf.group_by("source").agg(pl.col("group_id").null_count().alias("n")).collect()
        except (pl.exceptions.PolarsError, OSError):
            return None
        return dict(zip(counts["source"].to_list(), counts["n"].to_list(), strict=True))

    for name, files in by_layout.items():
        found = counted(files, name)
        if found is None:
            # One file that cannot be read failed them all (its ids then unknown, so were every file's: the run
            # had no prompt groups). Each file alone: a failing one keeps an unknown count, and is another
            # check's to report (the summary's own read of it fails, and names it).
            found = {}
            for f in files:
                found.update(counted([f], name) or {})
        for f in files:
            if f.path in found:
                f.null_counts = {**f.null_counts, "group_id": int(found[f.path])}


def from_prompt(group_key: pl.Expr | None) -> bool:
    """Whether prompt groups are found from the prompt text."""
    return group_key is not None and "prompt" in group_key.meta.root_names()


def _has_exception_expr(run: Run) -> pl.Expr:
    """Footers first: when every sample file says its exception column is all null, no data is read."""
    from ..formats.common import EXCEPTION_COLUMNS

    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        if f.fmt != "parquet":
            # A JSONL or JSON layout maps its records into the canonical columns (its file lists none): its
            # ``exception`` may hold failures whatever ``f.columns`` says (verifiers' and NeMo Gym's rates read 0).
            return pl.col("exception").is_not_null()
        col = next((c for c in EXCEPTION_COLUMNS if c in f.columns), None)
        if col is None:
            continue
        if col not in f.null_counts or f.null_counts[col] != f.rows:
            return pl.col("exception").is_not_null()
    return pl.lit(False)


def _carry(run: Run, by: list[str], filters: Filters, group_key: pl.Expr | None) -> dict[str, pl.Expr]:
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


def footer_exceptions(run: Run, others: list[str], filters: Filters) -> pl.DataFrame | None:
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


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------
def lean_roles(run: Run, filters: Filters) -> list[str] | None:
    """The roles of a per-role summary that takes the lean wide view (every sample has every role), whose
    role-independent columns are then computed over the samples, each once; None when it does not."""
    roles = [r for r in run.role_names() if not filters.roles or r in filters.roles]
    if roles and run.wide_roles_everywhere() and run.numeric_wide({}, [], roles) is not None:
        return roles
    return None


def plan_wide(
    run: Run, keys: list[str], filters: Filters, group_key: pl.Expr | None, components: list[str]
) -> Query | None:
    """The query of a per-role summary (``role`` among ``keys``) on the wide view, where every layout of the
    run offers one; else None (the long view, ``plan_long``)."""
    if "role" not in keys:
        return None  # statistics pooled over roles (a median over all of them) need the long view
    roles = [r for r in run.role_names() if not filters.roles or r in filters.roles]
    others = [k for k in keys if k != "role"]
    carry = _carry(run, others, filters, group_key)
    # A fleet's run without the roles asked for gives no row (the long view, filtered, is empty).
    if not (roles or not filters.roles) or run.numeric_wide(carry, components, roles) is None:
        return None
    lean = bool(roles) and run.wide_roles_everywhere()
    footer = footer_exceptions(run, others, filters) if lean else None
    if footer is not None:
        carry.pop("has_exception", None)

    def wide() -> pl.LazyFrame:
        lf = run.numeric_wide(carry, components, roles)
        assert lf is not None  # offered above: carry names columns, not which layouts offer the view
        return apply_filters(lf, filters, roles_too=False)

    if lean:
        variants = [Variant(r, pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl")) for r in roles]
        cells = 2 * len(roles) + len(components) + 1
        return Query(wide, others, variants, components, group_key, False, True, True, cells, footer=footer)
    # Each role over the rows of the files that hold its columns: where it sat out a step, its values there are
    # not logged, not logged as null (the long view has no row for it).
    variants = [
        Variant(r, pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl"), pl.col(f"__has_role:{r}")) for r in roles
    ]
    if not filters.roles:
        # Samples without per-role data: one null-role group with the sample's total reward.
        no_roles = ~pl.col("__has_roles")
        variants.append(Variant(None, pl.col("__sample_reward"), pl.lit(None, dtype=pl.Float64), no_roles))
    cells = 3 * len(variants) + len(components) + 2
    return Query(wide, others, variants, components, group_key, False, False, False, cells)


def plan_long(
    run: Run, keys: list[str], filters: Filters, group_key: pl.Expr | None, components: list[str], *, kl: bool = True
) -> Query:
    """The query on the long view (every layout): one row per (sample, role) when ``role`` is a key, else one
    per sample, counted once (``views.sample_view``; ``kl=False``: no KL column is read)."""
    carry = _carry(run, keys, filters, group_key)

    def long() -> pl.LazyFrame:
        if "role" not in keys:
            return apply_filters(sample_view(run, carry, components, kl=kl), filters, roles_too=False)
        return apply_filters(run.numeric(carry, components), filters, roles_too=True)

    per_row = len(run.role_names()) if "role" in keys else 1
    variant = Variant(None, pl.col("reward"), pl.col("kl"))
    return Query(long, keys, [variant], components, group_key, True, False, False, 4 + len(components), per_row)


# ---------------------------------------------------------------------------------------------------------
# The query
# ---------------------------------------------------------------------------------------------------------
def _prefix(q: Query, i: int) -> str:
    return "" if q.long else f"{i}:"


def _clean(q: Query, i: int, v: Variant) -> list[pl.Expr]:
    """Per-row clean columns of variant ``i`` (``inline=False``): each value null where it must not count
    (NaN, null, or a row outside the variant), so that every aggregation runs on plain columns."""
    p, m = _prefix(q, i), (pl.lit(True) if v.mask is None else v.mask)
    cols = [
        pl.when(m & v.reward.is_not_nan()).then(v.reward).alias(f"{p}r"),
        pl.when(m & v.kl.is_not_nan()).then(v.kl).alias(f"{p}k"),
        (m & v.reward.is_nan()).alias(f"{p}r_nan"),
        (m & v.reward.is_null()).alias(f"{p}r_null"),
        (m & v.kl.is_nan()).alias(f"{p}k_nan"),
        (m & v.kl.is_null()).alias(f"{p}k_null"),
        pl.when(m).then(pl.col("has_exception").cast(pl.Float64)).alias(f"{p}exc"),
        m.alias(f"{p}m"),
    ]
    for j, n in enumerate(q.components):
        c = pl.col(f"component/{n}")
        cols += [
            pl.when(m & c.is_not_nan()).then(c).alias(f"{p}c{j}"),
            (m & c.is_nan()).alias(f"{p}c{j}_nan"),
            (m & c.is_null()).alias(f"{p}c{j}_null"),
        ]
    return cols


def _sources(q: Query, i: int, v: Variant) -> tuple[dict[str, T.Source], pl.Expr]:
    """The measures of variant ``i`` (the shared ones too unless ``q.shared``) and its row count."""
    if q.inline:
        sources = {
            "reward": T.Source(v.reward.fill_nan(None), v.reward.is_nan(), v.reward.is_null()),
            "kl": T.Source(v.kl.fill_nan(None), v.kl.is_nan(), v.kl.is_null()),
        }
        return sources, pl.len()
    p = _prefix(q, i)
    sources = {
        "reward": T.Source(pl.col(f"{p}r"), pl.col(f"{p}r_nan"), pl.col(f"{p}r_null")),
        "kl": T.Source(pl.col(f"{p}k"), pl.col(f"{p}k_nan"), pl.col(f"{p}k_null")),
        "exception": T.Source(pl.col(f"{p}exc")),
        **{
            f"component/{n}": T.Source(pl.col(f"{p}c{j}"), pl.col(f"{p}c{j}_nan"), pl.col(f"{p}c{j}_null"))
            for j, n in enumerate(q.components)
        },
    }
    return sources, pl.col(f"{p}m").sum()


def _shared_sources(q: Query) -> dict[str, T.Source]:
    """The measures that do not depend on the role, aggregated once (``q.shared``)."""
    out: dict[str, T.Source] = {}
    if q.footer is None:
        out["exception"] = T.Source(pl.col("has_exception").cast(pl.Float64))
    for n in q.components:
        c = pl.col(f"component/{n}")
        out[f"component/{n}"] = T.Source(c.fill_nan(None), c.is_nan(), c.is_null())
    return out


def _aggregations(q: Query, partial: bool, exact: bool = False) -> list[pl.Expr]:
    spec = T.measures(q.components)
    out: list[pl.Expr] = []
    for i, v in enumerate(q.variants):
        sources, rows = _sources(q, i, v)
        for m, source in sources.items():
            out += T.exprs(m, spec[m], source, partial=partial, prefix=_prefix(q, i), exact=exact)
        if not q.shared:
            out.append(rows.cast(pl.Int64).alias(f"{_prefix(q, i)}rows"))
    if q.shared:
        out.append(pl.len().cast(pl.Int64).alias("rows"))
        for m, source in _shared_sources(q).items():
            out += T.exprs(m, spec[m], source, partial=partial, exact=exact)
    return out


def _zero_adv(q: Query, lf: pl.LazyFrame, partial: bool) -> pl.LazyFrame:
    """Per variant, among the prompt groups (a ``group`` within one split and step) of a result group, those
    whose valid rewards are all equal (``stats.flat``: GRPO's advantage is zero for every sample): their fraction, or
    (``partial``) how many, of how many. Groups with no valid reward are left out."""
    group_cols = list(dict.fromkeys([*q.group, "split", "step", "group", *(["role"] if q.long else [])]))
    valid = [
        (pl.lit(True) if v.mask is None else v.mask) & v.reward.is_not_null() & v.reward.is_not_nan()
        for v in q.variants
    ]
    zero = [
        pl.when(ok.any()).then(T.flat(v.reward.filter(ok))).alias(f"{_prefix(q, i)}zero")
        for i, (v, ok) in enumerate(zip(q.variants, valid, strict=True))
    ]
    per_group = lf.filter(pl.col("group").is_not_null() & pl.any_horizontal(valid)).group_by(group_cols).agg(zero)
    aggs: list[pl.Expr] = []
    for i in range(len(q.variants)):
        z, p = pl.col(f"{_prefix(q, i)}zero"), _prefix(q, i)
        if partial:
            aggs += [z.cast(pl.Int64).sum().alias(f"{p}zero_groups"), z.count().cast(pl.Int64).alias(f"{p}groups")]
        else:
            aggs.append(z.cast(pl.Float64).mean().alias(f"{p}zero_adv_frac"))
    return per_group.group_by(q.group).agg(aggs) if q.group else per_group.select(aggs)


def _no_zero_adv(partial: bool) -> list[pl.Expr]:
    """The zero-advantage columns of a result without prompt groups."""
    if partial:
        return [pl.lit(None, dtype=pl.Int64).alias("zero_groups"), pl.lit(0, dtype=pl.Int64).alias("groups")]
    return [pl.lit(None, dtype=pl.Float64).alias("zero_adv_frac")]


def _collect(
    run: Run, build: Callable[[], list[pl.LazyFrame]], engine: CollectEngine, group_key: pl.Expr | None
) -> list[pl.DataFrame]:
    """The statistics query on ``engine``; where prompt groups come from the prompt text, the zero-advantage
    query (the only one that holds text) streams on its own, so that the statistics keep their engine (and
    their digits) and the text is never held whole in memory."""
    if not from_prompt(group_key):
        return run.collect(build, engine=engine)
    [main] = run.collect(lambda: build()[:1], engine=engine)
    return [main, *run.collect(lambda: build()[1:], engine="streaming")]


def execute(run: Run, q: Query, engine: CollectEngine, *, partial: bool = False, exact: bool = False) -> pl.DataFrame:
    """Run the query on ``engine``: one row per group (and role), the final statistics or (``partial``)
    their partials (``exact``: the partials that merge without loss, ``stats.EXACT``), with ``zero_adv_frac``
    (partial: ``zero_groups`` / ``groups``) and, in partials, ``rows``."""

    def build() -> list[pl.LazyFrame]:
        lf = q.rows()
        if not q.inline:
            lf = lf.with_columns([e for i, v in enumerate(q.variants) for e in _clean(q, i, v)])
        aggs = _aggregations(q, partial, exact)
        main = lf.group_by(q.group).agg(aggs) if q.group else lf.select(aggs)
        # No prompt groups in this run: nothing to compute, and no second pass over the data.
        return [main] if q.group_key is None else [main, _zero_adv(q, lf, partial)]

    frames = _collect(run, build, engine, q.group_key)
    out = frames[0]
    if len(frames) > 1:
        out = (
            out.join(frames[1], on=q.group, how="left", nulls_equal=True)
            if q.group
            else pl.concat(frames, how="horizontal")
        )
    if q.footer is not None:
        out = _with_footer(out, q.footer, q.group, partial)
    if not q.long:
        out = _rows_per_role(out, q)
    if "zero_adv_frac" not in out.columns and "groups" not in out.columns:
        out = out.with_columns(_no_zero_adv(partial))
    return out if partial else out.drop("rows")


def _with_footer(stats: pl.DataFrame, footer: pl.DataFrame, group: list[str], partial: bool) -> pl.DataFrame:
    """The exception counts taken from footers beside the statistics (a rate, unless ``partial``)."""
    if group:
        stats = stats.join(footer, on=group, how="left", nulls_equal=True)
    elif footer.height:
        stats = pl.concat([stats, footer], how="horizontal")
    else:
        stats = stats.with_columns(pl.lit(0, dtype=pl.Int64).alias("exception_n"), pl.lit(0.0).alias("exception_sum"))
    if partial:
        return stats
    rate = T.finish_exprs("exception", T.EXCEPTION)
    return stats.with_columns(rate).drop("exception_sum", "exception_n")


def _rows_per_role(stats: pl.DataFrame, q: Query) -> pl.DataFrame:
    """One row per role and group from the wide result, whose columns of variant ``i`` are prefixed ``i:``;
    the shared columns (the same for every role) are repeated on each role's rows; roles without rows in a
    group are left out."""
    prefixes = tuple(f"{i}:" for i in range(len(q.variants)))
    shared = [c for c in stats.columns if not c.startswith(prefixes) and c not in q.group]
    parts = []
    for i, v in enumerate(q.variants):
        cols = [c for c in stats.columns if c.startswith(f"{i}:")]
        part = stats.select(
            *q.group,
            pl.lit(v.role, dtype=pl.String).alias("role"),
            *[pl.col(c).alias(c.split(":", 1)[1]) for c in cols],
            *shared,
        )
        parts.append(part.filter(pl.col("rows") > 0))
    return pl.concat(parts, how="vertical_relaxed")
