"""What a back-fill logs, step by step, built from runlog's frames alone (no W&B): testable and dry-runnable.

One ``StepPayload`` per training step holds everything that step's single ``run.log`` call carries: the
run's scalars (aliases resolved, shards merged as ``summarize --scalars`` merges them), per-role
aggregates, reward-component means, zero-advantage fractions, diversity and format metrics when
``runlog.metrics`` is importable, reward histograms and trajectory tables. Key names are in docs/wandb.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._lazy import pl
from ..analysis.inspect import first_components
from ..analysis.scalars import HasScalars, alias_collisions, aliased, merge_shards, mixed_weights
from ..analysis.summarize import DEFAULT_ALIASES, summarize
from ..errors import UsageError
from ..run import Run
from ..textsafe import visible
from . import keys as K
from . import splits as SP
from . import tables as T
from .splits import EMPTY_SPLIT, TABLE_KEY, SplitNames

STEP_KEY = "trainer/step"
RENAMED_STEP_KEY = "runlog/step"  # the step's key when the run logs a trainer/step of its own (``Plan.step_key``)
MAX_HIST_BINS = 512  # W&B's limit
TABLE_CHUNK_STEPS = 64  # steps whose table rows are read together
_RUN_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
UNKNOWN_ROLE = "unknown"  # the role name of samples without per-role data in the keys (``P/reward/unknown``)
NO_ROLE = "no_role"  # their keys' part when a role of the run is literally named ``unknown`` (``P/no_role/reward``)
OCCURRENCE_COLUMN = "__occurrence"
# A sample is its file, its id and which row of that id in that file it is (as ``render-trajectory`` finds it):
# ids recur at every step (a dataset index) or within a step (GRPO trainers writing the prompt's id for every
# sample of its group), and the best of a group is not its first row.
Ident = tuple[str, str, int]  # (source file, sample_id, occurrence)


@dataclass(frozen=True)
class _Scalars:
    """A view of some of a run's scalars (``analysis.scalars.HasScalars``)."""

    scalars: pl.LazyFrame


def _occurrence() -> pl.Expr:
    return pl.int_range(pl.len(), dtype=pl.Int64).over("source", "sample_id").alias(OCCURRENCE_COLUMN)


@dataclass(frozen=True)
class PlanOptions:
    """How a run becomes W&B rows; the CLI options of ``runlog upload-wandb`` map onto these fields."""

    prefix: str = "debate"
    max_samples_per_step: int = 16
    tables_every: int = 1
    hist_bins: int = 64
    max_cell_chars: int = 20_000
    aliases: Mapping[str, str] | None = None
    metrics: bool = True
    seed: int = 0

    def check(self) -> None:
        if not 0 <= self.max_samples_per_step <= T.MAX_TABLE_ROWS:
            raise UsageError(f"--max-samples-per-step must be between 0 and {T.MAX_TABLE_ROWS} (W&B's row limit)")
        if self.tables_every < 0:
            raise UsageError("--tables-every must be 0 (no tables) or a positive number of steps")
        if not 1 <= self.hist_bins <= MAX_HIST_BINS:
            raise UsageError(f"histogram bins must be between 1 and {MAX_HIST_BINS} (W&B's limit)")
        if not self.prefix or self.prefix.startswith("_") or self.prefix.strip("/") != self.prefix:
            raise UsageError(f"--prefix {self.prefix!r}: a non-empty key prefix without leading '_' or '/'")


@dataclass
class Hist:
    """A histogram as W&B takes it (``np_histogram=(counts, edges)``): ``len(edges) == len(counts) + 1``."""

    counts: list[int]
    edges: list[float]


@dataclass
class StepPayload:
    """Everything one ``run.log(..., step=step)`` call logs."""

    step: int
    values: dict[str, float]
    timestamp: float | None = None
    hists: dict[str, Hist] = field(default_factory=dict)
    tables: dict[str, T.TableData] = field(default_factory=dict)

    def row_bytes(self) -> int:
        """Estimated size of the history row (tables are stored as files; the row holds a reference)."""
        n = sum(map(len, self.values)) + 24 * len(self.values)
        n += sum(len(k) + 40 * len(h.counts) + 64 for k, h in self.hists.items())
        return n + 300 * len(self.tables)

    def nbytes(self) -> int:
        """Estimated bytes this step sends: its history row and its tables."""
        return self.row_bytes() + sum(t.nbytes() for t in self.tables.values())


@dataclass
class Plan:
    """The steps of a run and, lazily, their payloads (tables are read a chunk of steps at a time)."""

    run: Run
    options: PlanOptions
    steps: list[int]
    scalars: dict[int, dict[str, float]]
    times: dict[int, float]
    computed: dict[int, dict[str, float]]
    hists: dict[int, dict[str, Hist]]
    table_picks: dict[int, dict[str, list[tuple[Ident, str]]]]  # step -> split -> [(sample identity, pick)]
    columns: tuple[list[str], list[str]]
    notes: list[str] = field(default_factory=list)  # over the whole run (``session_notes`` for some steps)
    # Per (step, role): how many valid rewards were +-inf (in no histogram bin); the steps whose samples without
    # per-role data are logged under ``P/no_role/...`` (a role of the run is named ``unknown``); how many
    # negative steps were left out. ``session_notes`` says them for the steps an upload sends.
    infinite: dict[tuple[int, str], int] = field(default_factory=dict)
    no_role_steps: list[int] = field(default_factory=list)
    negative_steps: int = 0
    # The key part of the splits that cannot have their own name there (``key``, ``splits.decide``): samples
    # without a split beside others, an empty split name, a name W&B refuses, a name another split's keys hold;
    # per such split and step, how many samples it has and the first file of them (said by ``session_notes``); and
    # the key part of every split logged, their own names included, as the upload state records it
    # (``splits.parts``: kept by later uploads).
    renamed: dict[str | None, str] = field(default_factory=dict)
    renamed_rows: SP.SplitRows = field(default_factory=dict)
    split_parts: dict[str | None, str] = field(default_factory=dict)
    run_id: str | None = None  # the W&B run's id, where known: part of a table's artifact name (``splits.refused``)
    shadowed: set[str] = field(default_factory=set)
    # A computed key that is one of the run's own keys, at the steps where the run has no value of it: left
    # empty, so that the key's series is the trainer's alone (``_payload``).
    unfilled: dict[str, list[int]] = field(default_factory=dict)
    # The decisions earlier uploads to the W&B run made (``keys.KeyDecisions``, from the upload state), kept; whether
    # the samples without per-role data are ``P/no_role/...`` as this plan keys them (None: the run has neither
    # them nor a role ``unknown``), recorded with the others; the steps whose role ``unknown`` is left out of the
    # per-role keys, which earlier uploads gave the samples without per-role data.
    recorded: K.KeyDecisions = field(default_factory=K.KeyDecisions)
    no_role: bool | None = None
    unknown_from: int | None = None  # the first step of samples without per-role data or of the role ``unknown``
    left_role_steps: list[int] = field(default_factory=list)
    # At the steps sent (``_payload``): the run's own values that a kept decision leaves out, under keys holding
    # runlog's values (per key, the steps) and under the step's key (step, value).
    overruled: dict[str, list[int]] = field(default_factory=dict)
    step_overruled: list[tuple[int, float]] = field(default_factory=list)
    _merge_said: dict[int | None, list[str]] = field(default_factory=dict, repr=False)

    def session_notes(self, after: int | None = None) -> list[str]:
        """The notes about particular steps, for the steps after ``after`` alone (an upload that resumes after
        ``after`` does not say again what an earlier session said about its steps); with None, the whole run's,
        which ``build_plan`` puts in ``notes``."""
        out = self._merge_notes(after)
        infinite = {k: n for k, n in self.infinite.items() if after is None or k[0] > after}
        if infinite:
            n, (step, role) = sum(infinite.values()), min(infinite)
            out.append(
                f"{n} infinite reward(s) (+inf or -inf; valid values, in the means) at {len(infinite)} step and "
                f"role(s) (first: step {step}, {role}) are not in the reward histograms: no bin holds them"
            )
        steps = [s for s in self.no_role_steps if after is None or s > after]
        if steps:
            p = self.options.prefix
            out.append(
                f"a role of this run is named {UNKNOWN_ROLE!r}: the samples without per-role data ({len(steps)} "
                f"step(s), first: step {steps[0]}) are logged as {p}/{NO_ROLE}/reward, {p}/{NO_ROLE}/kl, "
                f"{p}/{NO_ROLE}/zero_adv_frac and {p}/{NO_ROLE}/reward_hist, not under {p}/reward/{UNKNOWN_ROLE} "
                "(the role's)"
            )
        left = [s for s in self.left_role_steps if after is None or s > after]
        if left:
            out.append(K.left_role_note(self.options.prefix, UNKNOWN_ROLE, left))
        out += SP.notes(self.renamed, self.renamed_rows, self.options.prefix, after, self.run_id)
        if self.negative_steps and after is None:
            out.append(f"{self.negative_steps} negative step(s) left out (W&B steps start at 0)")
        return out

    def _merge_notes(self, after: int | None) -> list[str]:
        """What the merge of the scalars after step ``after`` (all with None) guessed: one quantity logged under two
        of its names by a process at a step, shards that disagree on having a ``__count`` weight."""
        if after not in self._merge_said:
            aliases = dict(DEFAULT_ALIASES if self.options.aliases is None else self.options.aliases)
            view: HasScalars = self.run if after is None else _Scalars(self.run.scalars.filter(pl.col("step") > after))
            said = (alias_collisions(view, aliases), mixed_weights(view, aliases))
            self._merge_said[after] = [n for n in said if n is not None]
        return list(self._merge_said[after])

    @functools.cached_property
    def own_keys(self) -> frozenset[str]:
        """Every scalar key the run logs, at any step."""
        return frozenset(k for values in self.scalars.values() for k in values)

    @functools.cached_property
    def step_key(self) -> str:
        """The key of the training step, every chart's x axis: ``trainer/step``, unless the run logs a
        ``trainer/step`` of its own with other values than the step: then that is the run's series, kept, and
        the step goes to ``runlog/step`` (a note says so), never over the run's values. The key earlier uploads to
        the W&B run used (``recorded``) is kept: the x axis never changes partway (the run's own values under it
        that are not the step are then left out, said)."""
        if self.recorded.step_key is not None:
            return self.recorded.step_key
        own = [(s, v[STEP_KEY]) for s, v in self.scalars.items() if STEP_KEY in v]
        if all(v == s for s, v in own):  # none, or the trainer's own step: the same numbers, one series
            return STEP_KEY
        name, n = RENAMED_STEP_KEY, 2
        while name in self.own_keys:
            name, n = f"{RENAMED_STEP_KEY}_{n}", n + 1
        return name

    def decisions(self, before: int | None = None) -> K.KeyDecisions:
        """What this plan makes the keys of its steps before ``before`` (all with None: a step held back is not
        sent) hold, those ``recorded`` kept: for the upload state (``state.Entry.record``). A key only at steps held
        back is not recorded, nor which samples ``P/<what>/unknown`` holds where neither of them is at a step sent:
        a trainer's scalars line or a role still to come decides them as a first upload would."""
        kinds = self.key_kinds
        sent = [s for s in self.steps if before is None or s < before]
        names: set[str] = set()
        for per_step in (self.scalars, self.computed, self.hists):
            names.update(*(per_step.get(s, ()) for s in sent))
        names.update(table_key(split, self.renamed) for s in sent for split in self.table_picks.get(s, ()))
        recorded = {k: kinds[k] for k in names if k in kinds}
        recorded.update(self.recorded.kinds)
        decided = self.recorded.no_role is not None or (
            self.unknown_from is not None and (before is None or self.unknown_from < before)
        )
        return K.KeyDecisions(self.step_key, recorded, self.no_role if decided else None)

    def payloads(self, after: int | None = None, before: int | None = None) -> Iterator[StepPayload]:
        """The payloads of the steps after ``after`` (all with None) and before ``before`` (held back: see
        ``upload_wandb``), ascending."""
        todo = [s for s in self.steps if (after is None or s > after) and (before is None or s < before)]
        for i in range(0, len(todo), TABLE_CHUNK_STEPS):
            chunk = todo[i : i + TABLE_CHUNK_STEPS]
            tables = self._tables(chunk)
            for s in chunk:
                yield self._payload(s, tables.get(s, {}))

    @functools.cached_property
    def key_kinds(self) -> dict[str, str]:
        """What each key the plan can log holds (``keys.KINDS``; the step's key aside): as earlier uploads to the
        W&B run logged it (``recorded``), else as the whole run decides now: a key the run logs is its own
        number's (the trainer's number wins over runlog's recomputation of it, and W&B keeps one type per key),
        another is runlog's number, histogram or table. The upload state records them (``state.Entry.keys``)."""
        out = dict.fromkeys(self.own_keys, K.SCALAR)
        for kind, per_step in ((K.COMPUTED, self.computed), (K.HISTOGRAM, self.hists)):
            for name in set().union(*per_step.values()) if per_step else ():
                out.setdefault(name, kind)
        for picks in self.table_picks.values():
            for split in picks:
                out.setdefault(table_key(split, self.renamed), K.TABLE)
        out.update(self.recorded.kinds)
        out.pop(self.step_key, None)
        return out

    def _payload(self, step: int, tables: dict[str, T.TableData]) -> StepPayload:
        own = self.scalars.get(step, {})
        kinds = self.key_kinds
        # Each key holds one kind (``key_kinds``). The trainer's own number wins over runlog's recomputation of
        # it, and a key the trainer logs is its series alone: at a step where its line is missing (torn, corrupt),
        # nothing is logged rather than runlog's figure, which may round or count differently. A key earlier
        # uploads logged with runlog's values keeps them: the run's own values under it are left out.
        values: dict[str, float] = {}
        for k, v in (self.computed.get(step) or {}).items():
            if kinds.get(k) == K.COMPUTED:
                values[k] = v
            elif kinds.get(k) == K.SCALAR:
                self._shadow(k, step, own)
        for k, v in own.items():
            if kinds.get(k, K.SCALAR) == K.SCALAR:
                values[k] = v
            else:
                self.overruled.setdefault(k, []).append(step)
        given = own.get(self.step_key)
        if given is not None and given != step:  # only under a kept step key: a new one is none of the run's keys
            self.step_overruled.append((step, given))
        values[self.step_key] = step
        # A histogram or a table under one of the run's own scalar keys: the same rule (W&B keeps one type per
        # key; the run's numbers are its series), so the computed one is left out, and said.
        hists = dict(self.hists.get(step) or {})
        for computed_keys, kind in ((hists, K.HISTOGRAM), (tables, K.TABLE)):
            for k in [k for k in computed_keys if kinds.get(k) != kind]:
                del computed_keys[k]
                if kinds.get(k) == K.SCALAR:
                    self._shadow(k, step, own)
        p = StepPayload(step, values, self.times.get(step), hists, tables)
        if self._escapes:
            p.values, p.hists, p.tables = self._shown(p.values), self._shown(p.hists), self._shown(p.tables)
        if p.row_bytes() > T.ROW_BYTES_BUDGET:
            p.hists.clear()
            self.notes.append(f"step {step}: histograms left out to keep the history row under W&B's 10 MB")
        return p

    def _shadow(self, k: str, step: int, own: Mapping[str, float]) -> None:
        self.shadowed.add(k)
        if k not in own:
            self.unfilled.setdefault(k, []).append(step)

    @functools.cached_property
    def _escapes(self) -> dict[str, str]:
        """Key names that hold control or invisible characters (from role, split, component or scalar names),
        with the name W&B gets (``tables.escaped_names``): those characters shown as escapes (``\\x1b``,
        ``\\u202e``), as every runlog output shows them; a bidi control would reorder W&B's chart titles. A name
        whose escaped form is already a key of the run gets a suffix (``~`` and a hash of the raw name): no two
        series under one name, and never a raw control character sent."""
        names = set(self.own_keys)
        for per_step in (self.computed, self.hists):
            for d in per_step.values():
                names.update(d)
        names.update(table_key(split, self.renamed) for picks in self.table_picks.values() for split in picks)
        return T.escaped_names(names)

    @functools.cached_property
    def _column_escapes(self) -> dict[str, str]:
        """The tables' column names that ``tables.table_columns`` sends escaped (for the note)."""
        if not self.table_picks:
            return {}
        names = [c for c, _ in T.BASE_COLUMNS] + [f"component/{c}" for c in self.run.component_names()]
        return T.escaped_names(names + [f"role/{r}" for r in self.run.role_names()])

    def _shown(self, d: dict[str, Any]) -> dict[str, Any]:
        esc = self._escapes
        return {esc.get(k, k): v for k, v in d.items()} if any(k in esc for k in d) else d

    def key_notes(self) -> list[str]:
        """The notes about key names: computed keys that are the run's own scalars (said by ``_plan_notes``), a
        renamed step key, and names sent with their control characters escaped."""
        out = []
        if self.step_key != STEP_KEY:
            out.append(
                f"the run logs its own {STEP_KEY} (not equal to the step): logged as it is; the charts' x axis is "
                f"{visible(self.step_key, keep_newlines=False)} (the training step)"
                if any(v.get(STEP_KEY, s) != s for s, v in self.scalars.items())
                else f"the charts' x axis is {visible(self.step_key, keep_newlines=False)} (the training step), as "
                "earlier uploads to this W&B run logged it"
            )
        esc = {**self._column_escapes, **self._escapes}
        if esc:
            first = min(esc.values())
            raw = {k: visible(k, keep_newlines=False) for k in esc}
            suffixed = sum(1 for k, v in esc.items() if v != raw[k])
            also = (
                f"; {suffixed} of them with ~ and a hash of the raw name after it (its escaped spelling is another "
                "name of the run)"
                if suffixed
                else ""
            )
            out.append(
                f"{len(esc)} key or column name(s) hold control or invisible characters: sent with them shown as "
                f"escapes (first: {first}){also}"
            )
        return out

    def _tables(self, steps: list[int]) -> dict[int, dict[str, T.TableData]]:
        wanted = {ident for s in steps for picks in self.table_picks.get(s, {}).values() for ident, _ in picks}
        if not wanted:
            return {}
        sub = _sub_run(self.run, set(steps))
        ids = sorted({sid for _, sid, _ in wanted})
        sources = sorted({src for src, _, _ in wanted})
        [rows] = sub.collect(
            lambda: [
                sub.samples.with_columns(_occurrence()).filter(
                    pl.col("step").is_in(steps) & pl.col("sample_id").is_in(ids) & pl.col("source").is_in(sources)
                )
            ]
        )
        comps, roles = self.run.component_names(), self.run.role_names()
        # A file whose texts could not be read (said as a problem) keeps its numbers, not its table rows.
        unread = {f.path for f in sub.files if f.unread}
        by_ident = {
            (r["source"], r["sample_id"], r[OCCURRENCE_COLUMN]): r
            for r in rows.iter_rows(named=True)
            if r["source"] not in unread
        }
        out: dict[int, dict[str, T.TableData]] = {}
        cols, types = self.columns
        for s in steps:
            split_tables: dict[str, T.TableData] = {}
            for split, picks in self.table_picks.get(s, {}).items():
                table = T.TableData(list(cols), list(types))
                for ident, pick in picks:
                    row = by_ident.get(ident)
                    if row is not None and row.get("step") == s:
                        row = {k: v for k, v in row.items() if k != OCCURRENCE_COLUMN}
                        table.add(*T.table_row(row, pick, comps, roles, self.options.max_cell_chars))
                split_tables[split] = table
            T.fit_step_budget(list(split_tables.values()), T.TABLE_BYTES_BUDGET)
            for split, table in split_tables.items():
                if table.dropped_rows:
                    self.notes.append(f"step {s} {split}: {table.dropped_rows} table row(s) left out (size limits)")
                if table.rows:  # no rows (every picked sample's text unreadable): no empty table in W&B
                    out.setdefault(s, {})[table_key(split, self.renamed)] = table
        return out


def key(split: str | None, name: str, renamed: SplitNames | None = None) -> str:
    """``name`` for the train split (and runs without splits), ``<split>/name`` for the others. ``renamed``
    (``Plan.renamed``): the key part of the splits that cannot have their own name there (``splits.decide``):
    samples without a split in a run whose other samples have one are ``no_split/name`` (a null split is not the
    train split, and one key never holds two populations), an empty split name is ``empty_split/name`` (also
    without ``renamed``), never ``/name``."""
    if renamed and split in renamed:
        split = renamed[split]
    elif split == "":
        split = EMPTY_SPLIT
    if split is None:
        return name
    return name if split == "train" else f"{split}/{name}"


def table_key(split: str | None, renamed: SplitNames | None = None) -> str:
    return key(split, TABLE_KEY, renamed)


def _split_parts(
    run: Run, recorded: SplitNames | None, run_id: str | None
) -> tuple[dict[str | None, str], SP.SplitRows, set[str | None]]:
    """``Plan.renamed`` (``splits.decide``, from the run's splits, the step each first appears at, and the key parts
    the upload state ``recorded``), ``Plan.renamed_rows``, and the run's splits."""

    def build() -> list[pl.LazyFrame]:  # built inside: a file found corrupt is then left out
        lf = run.samples.filter(pl.col("step").is_not_null() & (pl.col("step") >= 0))
        return [
            run.samples.select(pl.col("split").unique()),
            lf.group_by("split", "step").agg(pl.len(), pl.col("source").min()),
        ]

    splits_df, per_step = run.collect(build)
    splits: set[str | None] = set(splits_df["split"].to_list())
    rows: SP.SplitRows = {}
    for split, step, n, src in per_step.iter_rows():
        rows.setdefault(split, {})[int(step)] = (int(n), str(src))
    renamed = SP.decide(splits, {s: min(v) for s, v in rows.items()}, recorded, run_id)
    return renamed, {s: rows.get(s, {}) for s in renamed if s in splits}, splits


def build_plan(
    run: Run,
    options: PlanOptions | None = None,
    splits: SplitNames | None = None,
    run_id: str | None = None,
    decisions: K.KeyDecisions | None = None,
) -> Plan:
    """Read the run's numbers (never its text, except the sampled table rows later) into a ``Plan``; again
    when a part found a file unreadable (``Run.left_out``), so that every part leaves it out. ``splits``: the key
    part of each split that earlier uploads to the destination logged (``state.Entry.splits``), kept; ``run_id``:
    the W&B run's id (a split whose table name would be too long for W&B with it gets a key part of its own);
    ``decisions``: what earlier uploads to the destination made each key hold (``state.Entry.decisions``), kept."""
    opts = options or PlanOptions()
    opts.check()
    while True:
        left = run.left_out()
        plan = _build_plan(run, opts, splits, run_id, decisions or K.KeyDecisions())
        if run.left_out() == left:
            return plan
        run.forget_frames()  # built before the file was found unreadable, they hold it


def _build_plan(
    run: Run, opts: PlanOptions, recorded: SplitNames | None, run_id: str | None, decisions: K.KeyDecisions
) -> Plan:
    aliases = DEFAULT_ALIASES if opts.aliases is None else opts.aliases
    scalars, times = step_scalars(run, aliases)
    has_samples = any(f.kind == "samples" and f.readable for f in run.files)
    computed: dict[int, dict[str, float]] = {}
    hists: dict[int, dict[str, Hist]] = {}
    picks: dict[int, dict[str, list[tuple[Ident, str]]]] = {}
    reserved = _reserved_keys(run, aliases)  # the merge's own notes are ``Plan.session_notes``
    notes: list[str] = [reserved] if reserved is not None else []
    infinite: dict[tuple[int, str], int] = {}
    no_role_steps: list[int] = []
    no_role, unknown_from = decisions.no_role, None
    left_role_steps: list[int] = []
    renamed: dict[str | None, str] = {}
    renamed_rows: SP.SplitRows = {}
    parts: dict[str | None, str] = dict(recorded or {})
    if has_samples:
        renamed, renamed_rows, seen = _split_parts(run, recorded, run_id)
        parts = SP.parts(seen, renamed, recorded)
        no_role, unknown_from, no_role_steps, left_role_steps = _role_aggregates(
            run, opts.prefix, computed, renamed, no_role
        )
        _component_means(run, opts.prefix, computed, renamed)
        hists, infinite = _histograms(
            run, opts.prefix, opts.hist_bins, no_role=bool(no_role), renamed=renamed, left_role=bool(left_role_steps)
        )
        if opts.metrics:
            notes += _metrics(run, computed, renamed)
        if opts.tables_every and opts.max_samples_per_step:
            picks = _table_picks(run, opts)
    steps = sorted(set(scalars) | set(computed) | set(hists) | set(picks))
    bad = [s for s in steps if s < 0]
    steps = [s for s in steps if s >= 0]
    cols = T.table_columns(run.component_names(), run.role_names()) if picks else ([], [])
    plan = Plan(run, opts, steps, scalars, times, computed, hists, picks, cols, notes)
    plan.infinite, plan.no_role_steps, plan.negative_steps = infinite, no_role_steps, len(bad)
    plan.renamed, plan.renamed_rows, plan.split_parts, plan.run_id = renamed, renamed_rows, parts, run_id
    plan.recorded, plan.no_role, plan.unknown_from = decisions, no_role, unknown_from
    plan.left_role_steps = left_role_steps
    plan.notes[:0] = plan.session_notes()
    # What the run's readers could not map (a list-valued metric is not logged, ...), as ``inspect`` says it.
    plan.notes += [f"not mapped into the canonical model ({f.get('layout')}): {f.get('message')}" for f in run.fidelity]
    return plan


def _reserved_keys(run: Run, aliases: Mapping[str, str]) -> str | None:
    """A note counting the scalar keys left out because they start with ``_`` (W&B reserves ``_step``,
    ``_timestamp``, ...; ``step_scalars``), with the first few, else None."""
    lf = aliased(run.scalars.filter(pl.col("step").is_not_null()), dict(aliases))
    lf = lf.filter(pl.col("key").str.starts_with("_") & ~pl.col("key").str.ends_with("__count"))
    [df] = run.collect(lambda: [lf.select(pl.col("key").unique().sort())])
    names = df["key"].to_list()
    if not names:
        return None
    shown = ", ".join(visible(k, keep_newlines=False) for k in names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{len(names)} scalar key(s) starting with '_' not logged (W&B reserves such names): {shown}"


def step_scalars(run: Run, aliases: Mapping[str, str]) -> tuple[dict[int, dict[str, float]], dict[int, float]]:
    """Per step, the scalar values (aliases resolved; shards merged by their ``__count`` weights, else a
    plain mean, exactly as ``summarize --scalars`` does; the companions hidden) and the wall-clock time.

    The merge only runs over the (step, key) pairs logged more than once: on the usual one-shard run it
    costs nothing, which matters at 10,000 steps x 50 keys."""
    lf = aliased(run.scalars.filter(pl.col("step").is_not_null()), dict(aliases))
    lf = lf.filter(~pl.col("key").str.starts_with("_"))  # W&B reserves _step, _timestamp, ...
    times = run.scalars.filter(pl.col("step").is_not_null() & pl.col("time").is_not_null())
    times = times.group_by("step").agg(pl.col("time").max())
    df, t = run.collect(lambda: [lf.select("step", "key", "value", "source", "record"), times])
    step_times = {s: float(x) for s, x in t.iter_rows() if x is not None and math.isfinite(x)}
    values = _unique_step_scalars(df)
    if values is not None:
        return values, step_times
    is_count = pl.col("key").str.ends_with("__count")
    repeated = pl.len().over("step", "key") > 1
    simple = df.filter(~is_count & ~repeated & ~pl.col("key").is_in(_counted(df)))
    if simple.height < df.height:
        simple = pl.concat([simple.select("step", "key", "value"), _merge(df)])
    per_step = simple.group_by("step", maintain_order=True).agg("key", "value")
    values = {s: dict(zip(k, v, strict=True)) for s, k, v in per_step.iter_rows()}
    return values, step_times


def _unique_step_scalars(df: pl.DataFrame) -> dict[int, dict[str, float]] | None:
    """The per-step dicts when no (step, key) pair is logged twice and no key has ``__count`` weights (the
    usual run: nothing to merge), else None. A stable sort by step keeps each step's keys in the order
    they were logged; the dicts are then cut from flat lists, each key name one shared string."""
    if df.is_empty() or df["key"].str.ends_with("__count").any():
        return None
    df = df.select("step", "key", "value").sort("step", maintain_order=True)
    names = df["key"].unique(maintain_order=True).to_list()
    codes = df["key"].replace_strict(names, range(len(names)), return_dtype=pl.UInt32).to_list()
    keys = list(map(names.__getitem__, codes))
    vals = df["value"].to_list()
    runs = df["step"].rle()
    out: dict[int, dict[str, float]] = {}
    i = 0
    for step, n in zip(runs.struct.field("value").to_list(), runs.struct.field("len").to_list(), strict=True):
        j = i + n
        d = out[step] = dict(zip(keys[i:j], vals[i:j], strict=True))
        if len(d) != n:  # a key logged twice for this step: the merge decides
            return None
        i = j
    return out


def _counted(df: pl.DataFrame) -> list[str]:
    """Keys that have ``__count`` weights somewhere."""
    counts = df.filter(pl.col("key").str.ends_with("__count"))["key"].unique().to_list()
    return [c[: -len("__count")] for c in counts]


def _merge(df: pl.DataFrame) -> pl.DataFrame:
    """Values logged more than once for a step, or with weights, merged (``analysis.scalars.merge_shards``,
    exactly as ``summarize --scalars`` merges them), with the weights they need. A step whose weights are all
    0 has no value of the key (merge_shards' null): the key is left out of that step's row, never sent as null."""
    is_count = pl.col("key").str.ends_with("__count")
    todo = (pl.len().over("step", "key") > 1) | pl.col("key").is_in(_counted(df))
    merged = merge_shards(df.filter(is_count | todo).lazy()).select("step", "key", "value").collect()
    return merged.filter(pl.col("value").is_not_null())


def _put(out: dict[int, dict[str, float]], step: int | None, name: str, v: Any) -> None:
    if step is not None and v is not None:
        out.setdefault(int(step), {})[name] = float(v)


def role_key(prefix: str, what: str, role: str | None, no_role: bool = False) -> str:
    """``P/<what>/<role>``; samples without per-role data (role None) are role ``unknown``, or, with
    ``no_role`` (a role of the run is literally named ``unknown``), ``P/no_role/<what>``: never the role's key."""
    if role is None and no_role:
        return f"{prefix}/{NO_ROLE}/{what}"
    return f"{prefix}/{what}/{UNKNOWN_ROLE if role is None else role}"


def _role_aggregates(
    run: Run,
    prefix: str,
    out: dict[int, dict[str, float]],
    renamed: SplitNames | None = None,
    recorded: bool | None = None,
) -> tuple[bool | None, int | None, list[int], list[int]]:
    """Per split, step and role: mean reward, mean KL and zero-advantage fraction, by ``summarize`` itself,
    so W&B shows the numbers ``runlog summarize --by split --by step --by role --prompt-groups`` prints
    (prompt groups from the prompt text where samples have no group id, as the report and the doctor find
    them: Flink and verl runs have a zero-advantage fraction too).

    Samples without per-role data are role ``unknown`` in the keys, unless a role of the run is named
    ``unknown``: then theirs are ``P/no_role/...``, so that one key never mixes two populations. That decision is
    returned (``Plan.no_role``: None where the run has neither), as ``recorded`` by earlier uploads where they made
    it (``P/<what>/unknown`` never changes population partway); the first step of either population
    (``Plan.decisions``); and the steps of the samples without per-role data keyed ``P/no_role/...``, and those
    of the role ``unknown`` left out (earlier uploads gave its keys to the samples without per-role data), for the
    notes."""
    df = summarize(run, ["split", "step", "role"], prompt_groups=True)
    roles = set(df["role"].to_list())
    decided = recorded
    if decided is None and (None in roles or UNKNOWN_ROLE in roles):
        decided = UNKNOWN_ROLE in roles
    no_role, left_role = bool(decided), decided is False and UNKNOWN_ROLE in roles
    for r in df.select("split", "step", "role", "reward_mean", "kl_mean", "zero_adv_frac").iter_rows(named=True):
        role = r["role"]
        split = r["split"]
        if left_role and role == UNKNOWN_ROLE:
            continue
        _put(out, r["step"], key(split, role_key(prefix, "reward", role, no_role), renamed), r["reward_mean"])
        _put(out, r["step"], key(split, role_key(prefix, "kl", role, no_role), renamed), r["kl_mean"])
        zero = role_key(prefix, "zero_adv_frac", role, no_role)
        _put(out, r["step"], key(split, zero, renamed), r["zero_adv_frac"])

    def steps(role: pl.Expr) -> list[int]:
        return sorted({int(s) for s in df.filter(role)["step"].drop_nulls().to_list() if s >= 0})

    either = steps(pl.col("role").is_null() | (pl.col("role") == UNKNOWN_ROLE))
    no_role_steps = steps(pl.col("role").is_null()) if no_role else []
    left = steps(pl.col("role") == UNKNOWN_ROLE) if left_role else []
    return decided, either[0] if either else None, no_role_steps, left


def _component_means(
    run: Run, prefix: str, out: dict[int, dict[str, float]], renamed: SplitNames | None = None
) -> None:
    """Per split and step, over samples (not per role): the mean total reward, the sample count and each
    reward component's mean; NaN and null never enter a mean."""
    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()

    def build() -> list[pl.LazyFrame]:  # the frames built inside: a file found corrupt is then left out
        totals = run.samples.group_by("split", "step").agg(_mean(pl.col("reward").filter(valid)).alias("m"), pl.len())
        comps = (
            first_components(run.samples.select("split", "step", "reward_components"))
            .filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan())
            .group_by("split", "step", "name")
            .agg(pl.col("value").mean())
        )
        return [totals, comps]

    t, c = run.collect(build)
    for split, step, mean, n in t.iter_rows():
        _put(out, step, key(split, f"{prefix}/reward_total", renamed), mean)
        _put(out, step, key(split, f"{prefix}/samples", renamed), n)
    for split, step, name, v in c.iter_rows():
        _put(out, step, key(split, f"{prefix}/component/{name}", renamed), v)


def _mean(x: pl.Expr) -> pl.Expr:
    """The mean of ``x``, also where the sum overflows (finite values near the float range, whose plain mean is
    inf): then the mean of ``x`` scaled by its largest magnitude, scaled back. An infinite value keeps its
    mean infinite (or NaN for +inf with -inf), as the plain mean has it."""
    scale = x.abs().max()
    scaled = (x / scale).mean() * scale
    return pl.when(x.mean().is_finite() | ~scale.is_finite() | (scale == 0)).then(x.mean()).otherwise(scaled)


def _histograms(
    run: Run,
    prefix: str,
    bins: int,
    *,
    no_role: bool = False,
    renamed: SplitNames | None = None,
    left_role: bool = False,
) -> tuple[dict[int, dict[str, Hist]], dict[tuple[int, str], int]]:
    """Per split, step and role, a histogram of the finite valid rewards: equal-width bins over [min, max]
    (a constant gets one bin of width 1 around it, as numpy does), at most ``bins`` and never more bins than
    values. The counts are ``numpy.histogram`` of the values with exactly the edges sent (each bin half-open,
    the last one closed), so a value on an edge is counted in the bin that edge starts. Also: per (step,
    role), how many valid rewards were +-inf, which no bin holds (said in a note). Samples without per-role
    data are keyed as ``role_key`` keys them (``no_role``: a role of the run is named ``unknown``); with
    ``left_role``, the role ``unknown`` has none (its keys hold the samples without per-role data: see
    ``_role_aggregates``)."""
    import numpy as np

    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()
    g = ["split", "step", "role"]

    def build() -> list[pl.LazyFrame]:  # built inside: a file found corrupt is then left out
        lf = run.roles.filter(valid & pl.col("step").is_not_null())  # a null role is its own group
        return [lf.group_by(*g).agg(pl.col("reward").cast(pl.Float64))]

    [df] = run.collect(build)
    out: dict[int, dict[str, Hist]] = {}
    infinite: dict[tuple[int, str], int] = {}
    for (split, step, role), values in zip(df.select(g).iter_rows(), df["reward"], strict=True):
        if left_role and role == UNKNOWN_ROLE:
            continue
        x = values.to_numpy()
        finite = np.isfinite(x)
        if not finite.all():
            said = (int(step), str(role) if role is not None else NO_ROLE if no_role else UNKNOWN_ROLE)
            infinite[said] = infinite.get(said, 0) + int((~finite).sum())
            x = x[finite]
        if not len(x):
            continue
        lo, hi = float(x.min()), float(x.max())
        nb = min(len(x), bins) if hi > lo else 1
        lo_, hi_ = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
        if math.isfinite((hi_ - lo_) * nb):
            edges = [lo_ + (hi_ - lo_) * i / nb for i in range(nb + 1)]
        else:  # a span near or beyond the float range (-1e308 to 1e308): the product overflows, each weighted end
            # does not; the edges stay finite, from lo to hi, and every value is in a bin
            edges = [lo_ * ((nb - i) / nb) + hi_ * (i / nb) for i in range(nb + 1)]
        edges[-1] = hi_
        edges = np.maximum.accumulate(np.array(edges)).tolist()  # never decreasing, as numpy requires
        counts, _ = np.histogram(x, bins=np.array(edges))
        name = key(split, role_key(prefix, "reward_hist", role, no_role), renamed)
        out.setdefault(int(step), {})[name] = Hist(counts.tolist(), edges)
    return out, infinite


def _metrics(run: Run, out: dict[int, dict[str, float]], renamed: SplitNames | None = None) -> list[str]:
    """Diversity and format metrics per split and step from ``runlog.metrics``, when it can be imported and
    computed; otherwise a note, and the rest of the upload goes on."""
    try:
        from ..analysis.texts import diversity_frame, format_frame
    except Exception as exc:  # noqa: BLE001  (an optional module, possibly half-installed)
        return [f"diversity and format metrics skipped (runlog.metrics unavailable: {type(exc).__name__})"]
    notes = []
    for name, fn in (("diversity", diversity_frame), ("format", format_frame)):
        try:
            df = fn(run, by=["split", "step"])
        except Exception as exc:  # noqa: BLE001  (a metric must not stop the upload of everything else)
            notes.append(
                f"{name} metrics skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            )
            continue
        cols = [c for c, t in df.schema.items() if c not in ("split", "step") and t.is_numeric()]
        for r in df.iter_rows(named=True):
            for c in cols:
                v = r[c]
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    _put(out, r["step"], key(r["split"], f"{name}/{c}", renamed), v)
    return notes


def _table_picks(run: Run, opts: PlanOptions) -> dict[int, dict[str, list[tuple[Ident, str]]]]:
    """Which samples each table shows: read only ``source, split, step, sample_id, reward``; each pick is a
    sample's identity (file, id, occurrence), so an id that recurs never stands for another sample's row."""
    every = opts.tables_every
    [df] = run.collect(
        lambda: [
            run.samples.with_columns(_occurrence())
            .select("source", "split", "step", "sample_id", OCCURRENCE_COLUMN, "reward")
            .filter(pl.col("step").is_not_null() & (pl.col("step") % every == 0) & pl.col("sample_id").is_not_null())
            .group_by("split", "step")
            .agg("source", "sample_id", OCCURRENCE_COLUMN, "reward")
        ]
    )
    out: dict[int, dict[str, list[tuple[Ident, str]]]] = {}
    for split, step, sources, ids, occs, rewards in df.sort("step", "split").iter_rows():
        idents: list[Ident] = list(zip(sources, ids, occs, strict=True))
        order = [(sid, src, occ) for src, sid, occ in idents]  # by sample id first, as ever
        picked = T.pick_indices(order, rewards, opts.max_samples_per_step, seed=opts.seed, key=f"{split}:{step}")
        out.setdefault(int(step), {})[split] = [(idents[i], pick) for i, pick in picked]
    return out


def _sub_run(run: Run, steps: set[int]) -> Run:
    """The run restricted to the sample files of ``steps`` when every sample file holds one known step, so a
    chunk of table rows opens a few files, not all of them; else the run itself."""
    samples = [f for f in run.files if f.kind == "samples" and f.readable]
    if not samples or any(f.step is None or f.steps for f in samples):
        return run
    others = [f for f in run.files if f.kind != "samples"]
    return Run(root=run.root, files=others + [f for f in samples if f.step in steps], ctx=run.ctx)


def derive_run_id(run: Run) -> str:
    """A W&B run id that is the same every time for the same run: the manifest's ``run_id`` (characters W&B
    refuses replaced, a hash added when anything was changed), else ``path_run_id`` (from the run's path and
    the name of its earliest file). ``upload_wandb`` prefers an id the upload state already records for the
    run (``state.recorded_run_id``), so that an id once used is kept whatever the files become, and the id of the
    same files uploaded from a path now gone or holding other files (the run moved or renamed:
    ``state.uploaded_from_elsewhere``)."""
    return manifest_run_id(run) or path_run_id(run)


def manifest_run_id(run: Run) -> str | None:
    """The manifest's ``run_id`` as a W&B id (characters W&B refuses replaced, plus a hash of the original when
    anything was replaced), or None when the manifest has none."""
    manifest = run.manifest or {}
    rid = manifest.get("run_id")
    if not isinstance(rid, str) or not rid.strip():
        return None
    clean = _RUN_ID_BAD.sub("-", rid.strip())[:48]
    if clean != rid:
        clean += "-" + hashlib.sha256(rid.encode()).hexdigest()[:8]
    return clean


def first_file(run: Run) -> str | None:
    """The name of the run's earliest data file, which stays the earliest as the run grows: among the files of
    its lowest step, the train split's (or a split-less file) before an eval file, the lowest process's before
    another's, then by name. New steps come after it, an eval of step 0 written after the train step sorts
    after it, and so does a later process's shard of the same step; a file that tells no step sorts last. (The
    names' plain sorted order was not stable: ``train_10`` sorts before ``train_2``, ``eval_0`` before both.)"""

    def rank(f: Any) -> tuple[float, int, int, str]:
        steps = f.all_steps()
        low = float(min(steps)) if steps else math.inf
        return low, int(f.split not in (None, "train")), f.process if f.process is not None else 0, f.path

    data = [f for f in run.files if f.kind != "manifest"]
    return min(data, key=rank).path if data else None


def path_run_id(run: Run) -> str:
    """``runlog-<hash>`` of the run's absolute path and its ``first_file`` (a name, not a size or a content: a
    growing run keeps its id)."""
    digest = hashlib.sha256(json.dumps([str(run.root.resolve()), "first", first_file(run)]).encode()).hexdigest()
    return f"runlog-{digest[:16]}"


def legacy_run_id(root: str, paths: Iterable[str]) -> str:
    """The id runlog derived before ``path_run_id``: a hash of the root and the three smallest file names, in
    plain sorted order (which changed as a run grew). Only to recognise an upload state written then."""
    names = sorted(paths)[:3]
    return f"runlog-{hashlib.sha256(json.dumps([root, names]).encode()).hexdigest()[:16]}"
