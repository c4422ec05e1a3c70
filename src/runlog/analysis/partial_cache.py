"""Summaries from cached partials: each step of a run is read once, and later questions cost what is new.

Runs are append-only: a step's files do not change once written. So the mergeable partials of a summary
(``runlog.analysis.partials``: ``n, mean, M2``, min, max, NaN / null counts, the exception sum, each
component's ``n``, mean and NaN / null counts, prompt groups; the median's values themselves, ``stats.EXACT``)
are kept per *unit*, every sample file of one step, at the finest grain a summary can ask for: per split and
step (and role, with the per-sample columns beside). A summary is then the merge of the units it selects
(``--steps`` picks units, ``--split`` and ``--role`` pick rows of them), the units not seen yet read in one
pass and stored.

A unit's entry is used only while its files are the same: the set of its files, each file's stamp (size,
modification and change time, inode; an object's size, ETag and time), the run's manifest, and what the layouts
decide from the whole run's files (``Run.decisions``: its roles, TRL's reward-function columns; a new role in a
new step is a null role in the steps before it). A unit in which reading found a problem (a corrupt text page,
a column that holds text) is not stored: every command reads it again, and says it, as a cold read does. Entries
written by other code (a hash of the aggregating code, ``code_key``) are ignored; files changed in the last
seconds are not stored (a writer may be at work on them). The answers equal a cold read's (to rounding:
1e-12 relative; tests/test_partial_cache.py checks it on randomised runs). A unit is a whole step, so that
prompt groups (one group within one split and step) and the median merge exactly.

Storage, beside the probe cache (``probe_cache.cache_dir()``: ``partials/<run digest>/``): an index
(``index.json``: per entry its step, files identity and segment) and immutable Arrow IPC *segments*, one
per command that computed something, written to a temporary name and renamed into place. The index is
read-merged-written under a lock, so that concurrent commands keep each other's entries; segments no entry
points to are deleted; many segments are compacted into one. All runs' partials together are brought back
under ``RUNLOG_CACHE_MAX_MB`` after a save, at most once a minute (``partial_store.trim``: the runs read least
recently go first). A corrupt index or segment (one that does not parse, lacks a column, holds one of another type
than the store writes, or is no file) is reported once (a warning line on stderr) and rebuilt.
``RUNLOG_CACHE=off`` (or ``cache=False``) turns it off.

Runs whose sample files do not each hold one known step (JSONL files of many steps), runs of more than
``MAX_VALUES`` reward values (24 M: the median's values would make the cache hundreds of megabytes; those
stream, memory bounded), and summaries by ``env`` or ``group``, are computed cold.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._lazy import pl
from ..probe_cache import (
    is_racy,
    source_hash,
)
from .filters import Filters
from .partial_store import UNIT, PartialStore
from .stats import KL_STATS, REWARD_STATS, component_columns
from .stats import median as stats_median

if TYPE_CHECKING:
    from ..formats.base import FileInfo
    from ..run import Run

# The median's partial holds every reward value (8 bytes each, per role): runs with more values than this are
# summarised cold (streaming, memory bounded) rather than with a cache of hundreds of megabytes.
MAX_VALUES = 24_000_000
CACHEABLE_KEYS = frozenset({"role", "step", "split"})
# What partials depend on: the layouts and schema (what is read), the summary engine (what is computed).
AGGREGATING_CODE = (
    "formats",
    "run.py",
    "listing.py",
    "storage.py",
    "chat.py",
    "schema.py",
    "textparse.py",
    "analysis/stats.py",
    "analysis/aggregate.py",
    "analysis/partials.py",
    "analysis/summarize.py",
    "analysis/views.py",
    "analysis/filters.py",
    "analysis/partial_cache.py",
    "analysis/partial_store.py",
)


@functools.cache
def code_key() -> str:
    return source_hash(AGGREGATING_CODE)


@dataclass
class Unit:
    """Every readable sample file of one step; ``files_id``: their identity (None: not to be stored, because a
    file changed in the last seconds, ``racy``, or has no stamp at all)."""

    step: int
    files: list[FileInfo] = field(default_factory=list)
    files_id: str | None = None
    racy: bool = False


def _stamp(f: FileInfo) -> tuple | None:
    """What changes when ``f`` is rewritten: the listing's stamp that ``open_run`` kept (no second ``stat``:
    2,000 of them were a fifth of a repeat's time in-process), else a local file's ``stat``. Either is taken
    before its data is read, so that a rewrite after it is never stored as the version before."""
    if f.stamp is not None:
        return f.stamp
    if isinstance(f.abspath, Path):
        try:
            st = os.stat(f.abspath)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # ``run.local_stamp``
    return None


def units(run: Run) -> dict[int, Unit] | None:
    """The run's sample files by step, with each step's identity; None when a readable sample file does not
    hold exactly one known step (its partials could not be told apart by step). Worked out once per list of
    files and their readability and steps (a diff asks four times: each run's partials and windows)."""
    # What the units depend on besides the stamps (fixed at discovery): which files, readable, of which step, and
    # what the layouts decide from the whole run (``Run.decisions``).
    decisions = run.decisions()
    shape = (tuple((f.readable, f.step, f.steps is None, f.kind) for f in run.files), decisions)
    memo = run.ctx.cache.get("partial_units")
    if memo is not None and memo[0] is run.files and memo[1] == shape:
        return memo[2]
    out = _units(run, decisions)
    run.ctx.cache["partial_units"] = (run.files, shape, out)
    return out


def _units(run: Run, decisions: str) -> dict[int, Unit] | None:
    samples = [f for f in run.files if f.kind == "samples" and f.readable]
    if not samples or any(f.fmt != "parquet" or f.step is None or f.steps is not None for f in samples):
        return None
    manifest_stamps = [(f.path, _stamp(f)) for f in run.files if f.kind == "manifest"]
    # No identity for a manifest: nothing is stored.
    manifests = None if any(s is None for _, s in manifest_stamps) else repr(sorted(manifest_stamps))
    out: dict[int, Unit] = {}
    stamps: dict[int, list[tuple[str, tuple | None]]] = {}
    for f in samples:
        assert f.step is not None
        u = out.get(f.step)
        if u is None:
            u = out[f.step] = Unit(f.step)
            stamps[f.step] = []
        u.files.append(f)
        stamps[f.step].append((f.path, _stamp(f)))
    for step, u in out.items():
        mine = sorted(stamps[step]) if len(stamps[step]) > 1 else stamps[step]
        if manifests is None or any(s is None for _, s in mine):
            continue
        if any(is_racy(s) for _, s in mine if s is not None):
            u.racy = True
            continue
        # The run-wide decisions too: a step stored before a new role appeared (or a column became numeric in a
        # new file) reads otherwise now, and is computed again.
        text = f"{step}\0{mine!r}\0{manifests}\0{decisions}"
        u.files_id = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return out


def variant_name(mode: str, prompt_groups: bool) -> str:
    """The name of the partials of ``mode`` (``role``: per role; ``sample``) and prompt groups found from the
    text (``prompt_groups``): the first part of every entry id, ``<variant>:<step>``."""
    return f"{mode}/pg{int(prompt_groups)}"


@dataclass
class Partials:
    """Per-step partials of a run (``run_partials``): ``frame`` holds one row per (split, step[, role]) of
    the units chosen, ``computed`` / ``reused``: how many units were read from the data / the cache."""

    frame: pl.DataFrame
    mode: str
    computed: int = 0
    reused: int = 0


def _chosen(all_units: dict[int, Unit], filters: Filters) -> list[Unit]:
    chosen = [u for s, u in sorted(all_units.items()) if filters.steps.contains(s)]
    if filters.splits:
        wanted = set(filters.splits)
        chosen = [u for u in chosen if any(f.split is None or f.split in wanted for f in u.files)]
    return chosen


def run_partials(
    run: Run,
    mode: str = "role",
    *,
    filters: Filters | None = None,
    prompt_groups: bool = False,
    store: PartialStore | None = None,
    memo: dict[str, tuple[str, pl.DataFrame]] | None = None,
    require_gain: bool = False,
) -> Partials | None:
    """The per-step partials (``partials.summarize_partials`` by split, step and, in ``mode="role"``, role;
    ``mode="sample"``: per sample) of the steps ``filters`` select, from ``store`` (or ``memo``, an in-memory
    map kept by a long-lived caller such as ``runlog watch``) where a step's files are unchanged, and from
    the data for the others, which are then stored. None when the run's files do not each hold one step,
    when they hold more than ``MAX_VALUES`` reward values, and (``require_gain``) when no step could ever be
    stored (no stamps: an object store whose listing stamps discovery did not keep): a cold read is then
    faster. Steps just written are read through partials all the same, so that a command gives the same
    digits before and after they are stored."""
    from .partials import summarize_partials
    from .summarize import _sub_run

    filters = filters or Filters()
    all_units = units(run)
    if all_units is None:
        return None
    chosen = _chosen(all_units, filters)
    if not chosen:
        return None
    per_row = max(1, len(run.role_names())) if mode == "role" else 1
    if sum(f.rows or 0 for u in chosen for f in u.files) * per_row > MAX_VALUES:
        return None
    variant = variant_name(mode, prompt_groups)
    frames: list[pl.DataFrame] = []
    todo: list[Unit] = []
    hits: dict[str, Unit] = {}
    for u in chosen:
        eid = f"{variant}:{u.step}"
        held = memo.get(eid) if memo is not None else None
        if held is not None and u.files_id is not None and held[0] == u.files_id:
            frames.append(held[1])
        elif store is not None and store.lookup(variant, u) is not None:
            hits[eid] = u
        else:
            todo.append(u)
    if hits and store is not None:
        loaded, found = store.load(list(hits))
        if loaded is not None:
            frames.append(loaded)
            if memo is not None:
                for unit_key, part in loaded.partition_by(UNIT, as_dict=True).items():
                    memo[str(unit_key[0])] = (hits[str(unit_key[0])].files_id or "", part)
        todo += [u for eid, u in hits.items() if eid not in found]
    reused = len(chosen) - len(todo)
    if require_gain and not reused and all(u.files_id is None and not u.racy for u in todo):
        return None
    if todo:
        keys = ["split", "step", "role"] if mode == "role" else ["split", "step"]
        sub = _sub_run(run, [f for u in todo for f in u.files])
        fresh = summarize_partials(sub, keys, components=sub.component_names(), prompt_groups=prompt_groups, exact=True)
        fresh = fresh.with_columns((pl.lit(f"{variant}:") + pl.col("step").cast(pl.String)).alias(UNIT))
        frames.append(fresh)
        _keep(run, variant, todo, fresh, all_units, store, memo)
    frame = pl.concat(frames, how="diagonal_relaxed", rechunk=True) if len(frames) > 1 else frames[0]
    return Partials(frame, mode, computed=len(todo), reused=reused)


def _keep(
    run: Run,
    variant: str,
    todo: list[Unit],
    fresh: pl.DataFrame,
    all_units: dict[int, Unit],
    store: PartialStore | None,
    memo: dict[str, tuple[str, pl.DataFrame]] | None,
) -> None:
    """Store the fresh partials of the units whose files all read well, and whose rows all carry one of the
    steps computed (a layout whose data contradicts the file's step is never cached).

    A unit is not stored when reading found a problem in one of its files (a corrupt text page, a reward column
    that holds text, rows no reward function scored: said while reading, never at discovery), nor when what
    the reading found changed the run's units (a file left out as unreadable changes its step's files, and may
    change a run-wide decision, ``Run.decisions``): a stored unit is read no more, so its problems would no
    longer be said, nor its command exit as a cold read does."""
    steps = {u.step for u in todo}
    if fresh.height and not set(fresh["step"].drop_nulls().to_list()) <= steps or fresh["step"].null_count():
        return
    now = units(run) or {}
    said = {p.path for p in run.ctx.problems[run.ctx.discovered or 0 :]}
    stored = {
        f"{variant}:{u.step}": u
        for u in todo
        if u.files_id is not None
        and (n := now.get(u.step)) is not None
        and n.files_id == u.files_id
        and all(f.readable and not f.unread and f.path not in said for f in u.files)
    }
    if not stored:
        return
    all_units = now
    rows = fresh.filter(pl.col(UNIT).is_in(list(stored)))
    if memo is not None:
        for eid, part in rows.partition_by(UNIT, as_dict=True).items():
            memo[str(eid[0])] = (stored[str(eid[0])].files_id or "", part)
    if store is not None:
        store.save(variant, stored, rows, all_units, complete=not run.skipped)


def summary_from_partials(run: Run, partials: Partials, keys: list[str], filters: Filters) -> pl.DataFrame:
    """The summary ``summarize`` gives for ``keys`` and ``filters`` (before moving averages), merged from
    ``partials`` (``run_partials`` of the same filters' steps)."""
    from .partials import combine_partials
    from .summarize import PER_SAMPLE_PREFIX

    rows = partials.frame
    if filters.splits:
        rows = rows.filter(pl.col("split").is_in(list(filters.splits)))
    steps = filters.steps.expr()
    if steps is not None:  # units were chosen by their files' step; the rows by their own, as a cold read
        rows = rows.filter(steps)
    if filters.roles and "level" in rows.columns:
        rows = rows.filter((pl.col("level") == "sample") | pl.col("role").is_in(list(filters.roles)))
    # The median from the values, apart: the rows are then sorted without moving the values (megabytes).
    medians = _medians(rows, keys)
    rows = rows.drop(UNIT, *[c for c in rows.columns if c.endswith("_values")])
    # The same order every time (parts come from the cache, memory and a query in any order): sums of floats
    # then give the same digits every time.
    order = [c for c in ("split", "step", "role", "level") if c in rows.columns]
    rows = rows.with_columns(pl.lit(1, dtype=pl.Int64).alias("parts")).sort(order, nulls_last=True)
    components = run.component_names()
    # A component of the run that no step chosen logged: its columns as a part without it has them (null), so
    # that its samples are counted as null (without it), as a cold read counts them.
    rows = rows.with_columns(
        [
            pl.lit(None, dtype=dtype).alias(f"component/{n}_{p}")
            for n in components
            if f"component/{n}_n" not in rows.columns
            for p, dtype in (("n", pl.Int64), ("mean", pl.Float64), ("nan", pl.Int64), ("null", pl.Int64))
        ]
    )
    out, _ = combine_partials(rows, keys)
    out = out.drop("reward_median")
    if keys:
        out = out.join(medians, on=keys, how="left", nulls_equal=True)
    else:
        out = pl.concat([out, medians], how="horizontal")
    per_sample = ["exception_rate", *component_columns(components)]
    if "role" in keys:
        per_sample = [f"{PER_SAMPLE_PREFIX}{c}" for c in per_sample]
    missing = [pl.lit(None, dtype=pl.Float64).alias(c) for c in per_sample if c not in out.columns]
    ordered = [*keys, *REWARD_STATS, *KL_STATS, "zero_adv_frac", *per_sample]
    return out.with_columns(missing).select(ordered)


def _medians(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``reward_median`` per group of ``keys``, over the values the parts kept (the per-role rows only)."""
    if "level" in rows.columns:
        rows = rows.filter(pl.col("level") == "role")
    values = pl.col("reward_values").list.explode(keep_nulls=False, empty_as_null=False)

    def by_keys(frame: pl.DataFrame, median: pl.Expr) -> pl.DataFrame:
        return frame.group_by(keys).agg(median) if keys else frame.select(median)

    # polars' own median first (one sort per group; the exact one below explodes the values four times, 6x the
    # time on a million values); it is NaN only where an infinity is a middle value, and those groups alone
    # are then taken again the way numpy takes them.
    out = by_keys(rows, values.median().alias("reward_median"))
    if not out["reward_median"].is_nan().any():
        return out
    if not keys:
        return by_keys(rows, stats_median(values).alias("reward_median"))
    redo = out.filter(pl.col("reward_median").is_nan()).select(keys)
    exact = by_keys(rows.join(redo, on=keys, nulls_equal=True), stats_median(values).alias("reward_median"))
    kept = out.join(redo, on=keys, how="anti", nulls_equal=True)
    return pl.concat([kept, exact.select(kept.columns)])


def cached_summary(
    run: Run, keys: list[str], filters: Filters, *, prompt_groups: bool = False, cache: bool = True
) -> pl.DataFrame | None:
    """``summarize``'s frame (before moving averages) from the run's stored per-step partials and the steps
    not seen yet, or None where the partials cannot answer (keys other than role, step and split; files of
    several steps; the cache turned off), and the summary is computed cold."""
    if not cache or not set(keys) <= CACHEABLE_KEYS:
        return None
    store = PartialStore.open(run.root)
    if store is None:
        return None
    mode = "role" if "role" in keys else "sample"
    parts = run_partials(run, mode, filters=filters, prompt_groups=prompt_groups, store=store, require_gain=True)
    if parts is None or not parts.frame.height:
        return None
    return summary_from_partials(run, parts, keys, filters)


@dataclass
class IncrementalSummary:
    """Summaries of a run that is still being written, for a long-lived caller that polls it (a notebook, a
    dashboard; ``runlog watch`` keeps per-step figures of its own, ``watch.live``): each ``summarize(run)`` (a
    fresh ``open_run`` of the same run each time) reads only the steps whose files are new or changed since the
    last call; the others come from memory, or from the cache on disk."""

    memo: dict[str, tuple[str, pl.DataFrame]] = field(default_factory=dict)
    last: Partials | None = None

    def summarize(
        self,
        run: Run,
        by: Sequence[str] = ("role",),
        *,
        filters: Filters | None = None,
        prompt_groups: bool = False,
        cache: bool = True,
    ) -> pl.DataFrame:
        """``summarize(run, by, filters=...)``, from partials (``cached_summary``), cold where they cannot
        answer."""
        from .summarize import summarize, summary_keys

        filters = filters or Filters()
        keys = summary_keys(run, by, filters)
        if set(keys) <= CACHEABLE_KEYS:
            store = PartialStore.open(run.root) if cache else None
            mode = "role" if "role" in keys else "sample"
            parts = run_partials(run, mode, filters=filters, prompt_groups=prompt_groups, store=store, memo=self.memo)
            if parts is not None and parts.frame.height:
                self.last = parts
                out = summary_from_partials(run, parts, keys, filters)
                return out.sort(keys, nulls_last=True) if keys else out
        return summarize(run, by, filters=filters, prompt_groups=prompt_groups, cache=False)


__all__ = ["IncrementalSummary", "PartialStore", "Partials", "cached_summary", "run_partials", "summary_from_partials"]
