"""``runlog summarize DIR``: per-role reward and KL, GRPO group statistics, scalars, correlations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..analysis.summarize import KL_STATS, REWARD_STATS
from ..errors import EXIT_OK, EXIT_PROBLEMS, DataError, RunlogError, UsageError
from .common import STORAGE_OPTION, handle_errors, report_problems, use_storage_options
from .fleet_opts import (
    ENGINE,
    RAY_ADDRESS,
    RUN_PATHS,
    RUNS_FILE,
    Fleet,
    no_rows_at_all,
    report_fleet,
    say_runs_without_rows,
)
from .options import Format, Layout, NoCacheKept, Output, Roles, Splits, Steps, by_keys, format_from_output
from .output import OutputFormat, emit_frame, print_out, render_tables

if TYPE_CHECKING:
    import polars as pl

    from ..analysis.filters import Filters
    from ..run import Run
    from ..storage import StorageOptions

SECTIONS = [
    ("Reward (NaN and null are counted apart and never enter the statistics)", [*REWARD_STATS, "reward_mean_ma"]),
    ("KL (NaN and null counted apart)", [*KL_STATS, "kl_mean_ma"]),
    ("GRPO prompt groups and failed trajectories", ["zero_adv_frac", "exception_rate"]),
]
PER_ROLE_TITLES = {
    "Reward (NaN and null are counted apart and never enter the statistics)": (
        "Reward per role (one value per sample and role; NaN and null are counted apart)"
    ),
    "KL (NaN and null counted apart)": "KL per role (NaN and null counted apart)",
    "GRPO prompt groups and failed trajectories": "GRPO prompt groups per role (zero_adv_frac: the role's rewards)",
}
PER_SAMPLE_TITLE = "Per sample, all roles together (these columns are per sample in the data, not per role)"
SAMPLE_TITLE = "Over samples (one value per sample: its reward, the mean KL of its roles, NaN if one is NaN)"
COMPONENTS_TITLE = "Reward components (mean of the valid values; NaN and null, a sample without it, counted apart)"
PER_SAMPLE_COMPONENTS_TITLE = (
    "Reward components per sample, all roles together (mean of the valid values; NaN and null, a sample without "
    "it, counted apart)"
)
COMPONENT_STATS = ("mean", "count", "nan", "null")


def _components_long(df: pl.DataFrame, keys: list[str], prefix: str) -> pl.DataFrame | None:
    """The table's reward components, one row per group and component (``component`` then a key): four
    columns per component side by side would not fit a terminal beside the keys. CSV/JSON keep the columns
    ``<prefix>component/<name>_<stat>``. None when the run has no component."""
    import polars as pl

    head = f"{prefix}component/"
    names = [c[len(head) : -len("_mean")] for c in df.columns if c.startswith(head) and c.endswith("_mean")]
    if not names:
        return None
    framed = df.with_row_index("__row")
    parts = [
        framed.select(
            "__row",
            *keys,
            pl.lit(n, dtype=pl.String).alias("component"),
            *[pl.col(f"{head}{n}_{s}").alias(s) for s in COMPONENT_STATS],
        ).with_columns(pl.lit(i, dtype=pl.UInt32).alias("__comp"))
        for i, n in enumerate(names)
    ]
    return pl.concat(parts).sort("__row", "__comp").drop("__row", "__comp")


def _leave_out_absent(comps: pl.DataFrame, keys: list[str]) -> tuple[pl.DataFrame, dict[str | None, list[str]]]:
    """The component rows without the components no sample of the rows has (no value, no NaN: every sample
    null), and those, by split where the table is per split (``split`` a key), else under None (no row has
    it). Another split's components (loose dumps of two layouts in two splits: NeMo Gym's train beside a
    verifiers eval) were rows of ``- 0 0 N`` that read as missing data; a component that a split has at some
    steps only keeps its rows at every step (its nulls there say where it is missing). The rows kept are whole:
    count + NaN + null is still each row's samples."""
    import polars as pl

    by = ["split"] if "split" in keys else []
    has = comps.group_by([*by, "component"]).agg((pl.col("count").sum() + pl.col("nan").sum()).alias("has"))
    gone = has.filter(pl.col("has") == 0).select(*by, "component")
    if not gone.height:
        return comps, {}
    absent: dict[str | None, list[str]] = {}
    for row in comps.join(gone, on=[*by, "component"], how="semi", nulls_equal=True).iter_rows(named=True):
        names = absent.setdefault(row["split"] if by else None, [])
        if row["component"] not in names:
            names.append(row["component"])
    return comps.join(gone, on=[*by, "component"], how="anti", nulls_equal=True), absent


def absent_note(absent: dict[str | None, list[str]], splits: Sequence[str]) -> str:
    """What ``_leave_out_absent`` left out, said once: which components, of which split."""
    said = []
    for split, names in absent.items():
        if split is not None:
            whose = f"split {split}"
        elif splits:
            whose = f"split{'s' if len(splits) > 1 else ''} {', '.join(splits)}"
        else:
            whose = "these rows"
        said.append(f"{whose}: {', '.join(names)}")
    return (
        f"components no sample has (every one null, another split's or layout's?), left out of the component "
        f"table: {'; '.join(said)} (--format json and csv keep their columns)"
    )


def _emit_summary(
    df: pl.DataFrame, fmt: OutputFormat, output: Path | None, group_keys: list[str]
) -> dict[str | None, list[str]]:
    """Per role: the per-role sections, then the per-sample columns (``sample:...``) once per group of the
    other keys (CSV/JSON keep them as labelled columns on every row). Without role: one set of sections
    whose titles say every value is per sample. The reward components close the table, one row per
    component (``_components_long``), without those no sample of the rows has (``_leave_out_absent``:
    returned, for the note that says so)."""
    if fmt != OutputFormat.table:
        emit_frame(df, fmt, output, keys=group_keys)
        return {}
    from rich.console import Group
    from rich.text import Text

    strip = ("reward_", "kl_", "sample:")

    def titled(title: str, frame: pl.DataFrame, cols: list[str], keys: list[str]) -> Group:
        # The title on a line of its own: as the title of a table this narrow, it would wrap at its width.
        return Group(Text(title, style="table.title"), render_tables(frame, [("", cols)], keys, strip))

    per_sample = [c for c in df.columns if c.startswith("sample:")]
    parts: list[Group] = []
    if not per_sample:
        sections = list(SECTIONS)
        if "role" not in group_keys:
            sections[0] = (SAMPLE_TITLE, sections[0][1])
        parts.append(render_tables(df, sections, group_keys, strip))
        comps, keys, title = _components_long(df, group_keys, ""), group_keys, COMPONENTS_TITLE
    else:
        parts.append(render_tables(df, [(PER_ROLE_TITLES.get(t, t), cols) for t, cols in SECTIONS], group_keys, strip))
        from ..fleet import RUNS_COLUMN

        keys = [k for k in group_keys if k not in ("role", RUNS_COLUMN)]  # (runs: of the role's rows)
        samples = df.select(*keys, *per_sample).unique(maintain_order=True)
        parts.append(titled(PER_SAMPLE_TITLE, samples, ["sample:exception_rate"], keys))
        comps, title = _components_long(samples, keys, "sample:"), PER_SAMPLE_COMPONENTS_TITLE
    absent: dict[str | None, list[str]] = {}
    if comps is not None:
        comps, absent = _leave_out_absent(comps, keys)
    if comps is not None and comps.height:
        parts.append(titled(title, comps, list(COMPONENT_STATS), [*keys, "component"]))
    if output is None:
        for part in parts:  # each at its own width in a pipe, as every table of runlog
            print_out(part)
    else:
        print_out(Group(*parts), output)  # one file: every part, one after the other
    return absent


def summarize_command(
    ctx: typer.Context,
    paths: list[str] = RUN_PATHS,
    by: list[str] = typer.Option(
        None,
        "--by",
        "-b",
        help="Group by: run, role, step, split, env, group (repeatable, or a comma list). Default: role (a fleet: "
        "run, role).",
        callback=by_keys,
    ),
    window: int = typer.Option(
        None, "--window", "-w", help="Add moving averages over the last N logged steps (one run; not for a fleet)."
    ),
    split: Splits = None,
    steps: Steps = None,
    role: Roles = None,
    scalars: bool = typer.Option(
        False, "--scalars", help="Summarise the scalar metrics (JSONL) instead (one run; not for a fleet)."
    ),
    keys: list[str] = typer.Option(None, "--keys", "-k", help="With --scalars: only keys matching GLOB."),
    alias: list[str] = typer.Option(None, "--alias", help="With --scalars: treat key OLD as NEW (OLD=NEW)."),
    aliases: Path = typer.Option(None, "--aliases", help="With --scalars: a JSON file {old_key: canonical_key}."),
    correlations: bool = typer.Option(
        False,
        "--correlations",
        help="Pearson correlations between reward components and role rewards (one run; not for a fleet).",
    ),
    prompt_groups: bool = typer.Option(
        False,
        "--prompt-groups",
        help="Where samples have no group_id (Flink, verl), find GRPO prompt groups from identical prompt text "
        "within a split and step, for zero_adv_frac. Reads the prompt text, which no other statistic needs.",
    ),
    fmt: Format[OutputFormat] = OutputFormat.table,
    output: Output = None,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCacheKept = False,
    runs: str = RUNS_FILE,
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Per-role reward and KL aggregates, GRPO group statistics and scalar summaries.

    NaN and null rewards are counted in their own columns and never enter the statistics. zero_adv_frac
    is the fraction of prompt groups where every reward of that role is equal (no GRPO signal).

    Fleets: several paths, a quoted glob ('ROOT/*', 's3://bucket/runs/*') or --runs FILE, with --by run for
    one row per run and group (the default for a fleet: --by run --by role); a --by without run pools the
    statistics over the runs (medians then stay empty). A run's rows in a fleet equal summarize of that run
    alone to 1e-12 relative (merged partials may differ in the last digit). --window, --scalars and
    --correlations take one run: with a fleet they are a usage error.
    --engine ray runs the same computation on a Ray cluster; the numbers agree to 1e-12.

    Also: --correlations (reward components against role rewards), --split and --steps (10:19) to narrow.

    Exit codes: 0 ok; 1 the run had problems (they are listed on stderr; the good data was summarised), or
    with --scalars its scalars files exist but no scalar metric could be read from them (one line says so);
    2 usage error (a run of scalars only without --scalars too, a run with no scalars file with --scalars,
    and filters that each match the run but no sample together), or -o FILE cannot be written. Problems are
    only on stderr, for a fleet too (each line names its run): --format json and csv hold the table alone, and
    the exit code says whether any run had problems.

    Examples:

      runlog summarize sample_runs/debate_grpo --by role --by step --window 5 --format csv -o per_step.csv
      runlog summarize sample_runs/debate_grpo --scalars --keys 'debate/*'
      runlog summarize 'sample_runs/*' --by run --by role --format csv  # exit 1: sample_runs/damaged has bad files
    """
    # The question, as parsed: what a kept answer is looked up by (cli.answers).
    asked = {k: v for k, v in locals().items() if k != "ctx"}
    from ..analysis.filters import Filters
    from ..fleet import fleet_locations, is_fleet
    from .answers import answer, question

    fmt = format_from_output(ctx, fmt, output)
    with handle_errors():
        if sum([scalars, correlations]) > 1:
            raise UsageError("--scalars and --correlations are separate reports: pick one")
        storage = use_storage_options(storage_option)
        from ..analysis.summarize import KEYS, check_keys

        check_keys(by or [], ["run", *KEYS])  # a typo is told every key, `run` too (one run's summary has no run)
        locs = fleet_locations(paths or [], runs, storage, by or [])
        filters = Filters.from_options(split, steps, role)
        if is_fleet(locs, by or [], listed=bool(runs), engine=engine, ray_address=ray_address):
            if scalars or correlations or window is not None:
                raise UsageError("--scalars, --correlations and --window work on one run, not a fleet")
            fleet = Fleet(locs, layout, storage, engine, ray_address)
            raise typer.Exit(_summarize_fleet(fleet, by or ["run", "role"], filters, fmt, output, prompt_groups))
        if scalars or correlations:
            report = "--scalars" if scalars else "--correlations"
            if by:
                raise UsageError(f"--by does not apply to {report}: its rows are its own (one per key, or per pair)")
            if window is not None or prompt_groups:
                option = "--window" if window is not None else "--prompt-groups"
                raise UsageError(f"{option} does not apply to {report} (it goes with the per-role summary)")
        # A kept answer is printed as it was (cli.answers); not for output to a file, binary output, a store.
        # An aliases file is read besides the run: its stamp is part of the question.
        keep = output is None and fmt != OutputFormat.parquet and not storage_option and not no_cache
        with answer(question("summarize", asked, locs[:1], [aliases] if aliases else []) if keep else None):
            errors = _summarize_run(
                locs[0],
                by,
                window,
                filters,
                fmt,
                layout,
                storage,
                scalars,
                keys,
                alias,
                aliases,
                correlations,
                prompt_groups,
                output,
            )
            raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)


def _no_scalars(run: Run, location: str, table: dict[str, str]) -> RunlogError | None:
    """The error of a run ``summarize --scalars`` reads no scalar metric of, or None: a usage error (exit 2)
    where it has no scalars file; where it has some but no metric could be read from them (a torn only line, a
    file that cannot be read, records without a step), a data error (exit 1), as ``plot --what scalars`` exits."""
    from ..analysis import summarize as S

    if not any(f.kind == "scalars" for f in run.files):
        hint = ": summarize it without --scalars" if any(f.kind == "samples" for f in run.files) else ""
        return UsageError(
            f"{location}: this run has no scalar metrics (no scalars.p*.jsonl, AReaL stats or JaxARC batch file){hint}"
        )
    if not S.summarize_scalars(run, aliases=table).is_empty():
        return None
    return DataError(
        location,
        "no scalar metric could be read from this run's scalars file(s) (the problems above say why): nothing to "
        "summarise",
    )


def _summarize_run(
    location: str,
    by: list[str] | None,
    window: int | None,
    filters: Filters,
    fmt: OutputFormat,
    layout: str | None,
    storage: StorageOptions,
    scalars: bool,
    keys: list[str] | None,
    alias: list[str] | None,
    aliases: Path | None,
    correlations: bool,
    prompt_groups: bool,
    output: Path | None,
) -> int:
    """``summarize`` of one run; the number of error-severity problems reported."""
    from ..analysis import summarize as S
    from ..analysis.aggregate import prompt_join_note
    from ..analysis.check import check_filters, check_scalars
    from ..analysis.views import split_notes
    from ..run import open_run

    run = open_run(location, layout=layout, storage_options=storage)
    if scalars:
        if filters.splits or filters.roles:
            raise UsageError("--split and --role do not apply to --scalars (scalar metrics have neither)")
        table = S.load_aliases(aliases, alias or ())
        try:
            check_scalars(run, keys or (), filters.steps, table)
        except UsageError:
            # The problems met first: a --keys that matches none of the run's keys may name a key of a file left
            # out (a renamed copy of a scalars shard), said there. A run of no metric at all says that instead.
            report_problems(run.problems)
            if (nothing := _no_scalars(run, location, table)) is not None:
                raise nothing from None
            raise
        df = S.summarize_scalars(run, keys=keys or (), aliases=table, steps=filters.steps)
        if df.is_empty() and (nothing := _no_scalars(run, location, table)) is not None:
            # Nothing to summarise, as the reverse (a run of scalars only without --scalars): an empty table and
            # exit 0 read as an answer to a script. The problems met are said first.
            report_problems(run.problems)
            raise nothing
        emit_frame(df, fmt, output, keys=["key"])
        from ..analysis.scalars import file_notes

        # What the scalars files held that their reader could not map (a value "abc"): in no row (``inspect``
        # alone said it).
        report_problems([], notes=[f"{n}: in no row of this table" for n in file_notes(run)])
        if (collided := S.alias_collisions(run, table)) is not None:
            report_problems([], notes=[collided])
        from ..analysis.scalars import mixed_weights

        if (mixed := mixed_weights(run, table, filters.steps)) is not None:
            report_problems([], notes=[mixed])
    elif keys or alias or aliases:
        raise UsageError("--keys, --alias and --aliases go with --scalars")
    elif correlations:
        check_filters(run, filters)
        df = S.correlations(run, filters=filters)
        named = set(df["x"].to_list()) | set(df["y"].to_list())
        absent = [r for r in filters.roles if f"reward/{r}" not in named]
        none = bool(filters.roles) and len(absent) == len(filters.roles)
        if none and (unmatched := _unmatched(run, filters, "no role reward to correlate")) is not None:
            # No reward of the roles asked at these steps and splits: a table of the other pairs alone (exit 0)
            # would pass for an answer about them, as an empty summary would.
            report_problems(run.problems)
            raise UsageError(f"{location}: {unmatched}")
        emit_frame(df, fmt, output, keys=[k for k in ("split", "x", "y") if k in df.columns])
        notes = split_notes(run, df, None)
        if absent:
            notes.append(
                f"no sample has a reward of role(s) {', '.join(absent)} at the steps and splits chosen: no pair of "
                "them in the table"
            )
        report_problems([], notes=notes)
    else:
        check_filters(run, filters)
        if not any(f.kind == "samples" for f in run.files) and any(f.kind == "scalars" for f in run.files):
            # Nothing to summarise by role (as metrics and render-trajectory say): an empty table and exit 0 read
            # as an answer to a script. The problems met (a scalars file's bad line) are said first. (A run with
            # neither yet, its manifest alone, gets the empty summary's note below.)
            report_problems(run.problems)
            raise UsageError(f"{location}: this run has no per-sample data (only scalar metrics): try --scalars")
        df = S.summarize(run, by or ["role"], filters=filters, window=window, prompt_groups=prompt_groups)
        roleless = _roleless_note(run, filters)
        if df.is_empty() and (unmatched := _unmatched(run, filters)) is not None:
            # Each filter matches on its own (check_filters) but no sample matches them together: as for a fleet
            # with no row, a usage error (exit 2), not an empty table, `[]` or a header-only CSV and exit 0, which
            # a script reads as an answer. The run's problems are said first, and the samples of no role there.
            report_problems([], notes=[roleless] if roleless else [])
            report_problems(run.problems)
            raise UsageError(f"{location}: {unmatched}")
        left_out: dict[str | None, list[str]] = {}
        if not df.is_empty() or fmt != OutputFormat.table or output is not None:
            keys = [c for c in df.columns if c in S.KEYS]
            left_out = _emit_summary(df, fmt, output, keys)  # (empty tables: only to a file)
        if df.is_empty():
            report_problems([], notes=[_empty_reason(run, filters), *([roleless] if roleless else [])])
            return report_problems(run.problems)
        report_problems([], notes=split_notes(run, df, by, pooled=len(filters.splits) > 1))
        if left_out:
            report_problems([], notes=[absent_note(left_out, filters.splits)])
        if "split" not in df.columns and len(pooled := S.pooled_splits(run, filters)) > 1:
            report_problems([], notes=[S.pooled_note(pooled)])  # on purpose, yet said (as the default's split key is)
        if "env" not in (by or []):
            report_problems([], notes=_layouts_notes(run, df, filters))
        if window is not None and "step" not in (by or []):
            report_problems([], notes=[f"--window {window} averages over steps: the table is per step (step added)"])
        if not prompt_groups and S.prompt_groups_skipped(run):
            report_problems([], notes=[S.PROMPT_GROUPS_NOTE])
        elif prompt_groups and (joined := prompt_join_note(run, filters)) is not None:
            report_problems([], notes=[joined])  # samples without an id put in their prompt's group: said
        if S.unknown_role_rows(df):
            report_problems([], notes=[S.UNKNOWN_ROLE_NOTE])
        if roleless is not None:
            report_problems([], notes=[roleless])
        if (infinite := S.infinite_note(df)) is not None:
            report_problems([], notes=[infinite])
    return report_problems(run.problems)


def _roleless_note(run: Run, filters: Filters) -> str | None:
    """With ``--role``: what of the splits and steps chosen carries no role, which no ``--role`` selects, by split
    with their steps, and why (:func:`_roleless_causes`); None without ``--role`` or where there is none. The
    table of the roles asked alone read as the run's figure, steps 0-9 of a run that began in v0 left out unsaid
    (without ``--role`` they are its ``(unknown)`` rows). Counted by the summary engine per split, step and role
    without the role filter: from the per-step partials the summary just stored (no second read of the data
    where they are kept), each null-role entry once (its reward's count, NaN and null). Where no file can hold
    a null role beside others (Flink v0 files, single-agent layouts, native files without ``roles``) an entry
    is a sample; else (a native ``roles`` list may hold entries whose role is null, beside a named one) the
    count is said as role entries, not samples."""
    if not filters.roles:
        return None
    import dataclasses

    import polars as pl

    from ..analysis import summarize as S
    from ..run import step_runs

    per = S.summarize(run, ["split", "step", "role"], filters=dataclasses.replace(filters, roles=()))
    n = pl.col("reward_count") + pl.col("reward_nan") + pl.col("reward_null")
    frame = (
        per.filter(pl.col("role").is_null())
        .group_by("split")
        .agg(n.sum().alias("n"), pl.col("step").filter(n > 0).drop_nulls().unique().alias("steps"))
        .filter(pl.col("n") > 0)
        .sort("split", nulls_last=True)
    )
    if not frame.height:
        return None
    where = {row["split"]: set(row["steps"] or []) for row in frame.iter_rows(named=True)}
    causes, entries = _roleless_causes(run, where)
    said = []
    for row in frame.iter_rows(named=True):
        split = f"{row['split']} " if row["split"] is not None else ""
        steps = sorted(row["steps"] or [])
        at = f" at step{'s' if len(steps) > 1 else ''} {step_runs(steps)}" if steps else ""
        many = row["n"] != 1
        if entries:
            said.append(f"{row['n']:,} role entr{'ies' if many else 'y'} of {split}samples{at}")
        else:
            said.append(f"{row['n']:,} {split}sample{'s' if many else ''}{at}")
    asked = ", ".join(filters.roles)
    why = f" ({causes})" if causes else ""
    if entries:
        return (
            f"{'; '.join(said)} carry no role{why}: a sample whose roles are null or empty is one entry, with its "
            f"total reward, and an entry whose role is null one, with its own; in no row of --role {asked}, though "
            f"the sample of such an entry may be in one by a named entry (without --role they are summarised under "
            "'(unknown)')"
        )
    return (
        f"{'; '.join(said)} carry no role{why}: in no row of --role {asked} "
        "(without --role they are summarised under '(unknown)', with the sample's total reward)"
    )


def _roleless_causes(run: Run, where: dict[str | None, set[int]]) -> tuple[str, bool]:
    """Why samples of the splits and steps ``where`` (split -> steps; no steps: every file of the split)
    carry no role, from their sample files' layouts and versions (no data read): ``Flink v0 files``, ``native
    files without a roles column``, single-agent layouts; and whether a file among them may hold an entry of a
    null role beside named ones (a native ``roles`` list: the count is then one of role entries)."""
    from ..schema import flink_role_names

    causes: list[str] = []
    single: list[str] = []
    entries = False
    for f in run.files:
        if f.kind != "samples" or not f.readable:
            continue
        steps = set(f.steps or ([] if f.step is None else [f.step]))
        if not any(
            (split is None or f.split is None or f.split == split) and (steps & chosen if steps and chosen else True)
            for split, chosen in where.items()
        ):
            continue
        if f.layout == "flink":
            if f.schema_version == 0:
                cause = "Flink v0 files"
            elif not flink_role_names([c for c in f.columns if c != "reward"]):
                cause = "Flink files without role columns"
            else:
                continue  # its samples each have every role of the file
        elif f.layout == "runlog":
            if "roles" in f.columns:
                cause, entries = "native files", True
            else:
                cause = "native files without a roles column"
        else:
            if f.layout not in single:
                single.append(f.layout)
            continue
        if cause not in causes:
            causes.append(cause)
    if single:
        causes.append(f"{'a single-agent layout' if len(single) == 1 else 'single-agent layouts'}: {', '.join(single)}")
    return ", ".join(causes), entries


def _layouts_notes(run: Run, df: pl.DataFrame, filters: Filters) -> list[str]:
    """``views.layouts_note`` of the rows' splits: of each split where the table is per split, else of the
    splits chosen (every split where none is)."""
    from ..analysis.views import layouts_note

    if "split" in df.columns:
        splits = [str(x) for x in df["split"].drop_nulls().unique(maintain_order=True).to_list()]
        return [n for x in splits if (n := layouts_note(run, splits=[x])) is not None]
    note = layouts_note(run, splits=filters.splits or None)
    return [] if note is None else [note]


def _empty_reason(run: Run, filters: Filters) -> str:
    """Why a summary has no row, where no filter alone is to blame (``_unmatched`` said none is): no sample
    file, no readable one, filters met by no sample read beside files that could not be read, or files
    without rows."""
    samples = [f for f in run.files if f.kind == "samples"]
    if not samples and not any(f.kind == "scalars" for f in run.files):
        return "this run has no data yet (no sample or scalars file; its manifest only?): nothing to summarise"
    if not samples:
        return "this run has no per-sample data (only scalar metrics): try --scalars"
    if not any(f.readable for f in samples):
        return "no sample file of this run could be read (see the errors): nothing to summarise"
    what, unread = _filters_said(filters), _unread_samples(run)
    if what and unread:
        return f"no sample read matches {what}; {unread} sample file(s) could not be read (see the errors)"
    return "the run's sample files hold no rows: nothing to summarise"


def _unmatched(run: Run, filters: Filters, nothing: str = "nothing to summarise") -> str | None:
    """What matched nothing, when an empty summary of a run with readable sample rows is the filters' doing
    (each value matches on its own, ``check_filters``, but not together: ``--role judge --steps 3`` where the
    judge sat out step 3); None where no filter is given or no readable sample file holds a row. A file that
    could not be read may have held the samples: then the empty answer is that file's problem (exit 1, said by
    ``_empty_reason``'s note and the errors), not filters that match nothing."""
    what = _filters_said(filters)
    samples = [f for f in run.files if f.kind == "samples"]
    if not what or not any(f.readable and f.rows != 0 for f in samples) or _unread_samples(run):
        return None
    return f"no sample matches {what}: {nothing}"


def _filters_said(filters: Filters) -> str:
    """``--split train --steps 3 --role judge together`` (one filter: without "together"); "" for none."""
    parts = [f"--split {','.join(filters.splits)}"] if filters.splits else []
    parts += [f"--steps {filters.steps.shown}"] if filters.steps.text else []
    parts += [f"--role {','.join(filters.roles)}"] if filters.roles else []
    return f"{' '.join(parts)} together" if len(parts) > 1 else "".join(parts)


def _unread_samples(run: Run) -> int:
    """The run's sample files that could not be read whole (skipped, or a read of them failed)."""
    failed = {p.path for p in run.problems if not p.is_warning}
    return sum(1 for f in run.files if f.kind == "samples" and (not f.readable or f.path in failed))


def _summarize_fleet(
    fleet: Fleet, by: list[str], filters: Filters, fmt: OutputFormat, output: Path | None, prompt_groups: bool
) -> int:
    from ..analysis import summarize as S
    from ..fleet import RUNS_COLUMN, fleet_split_note, summarize_fleet

    S.check_keys(by, ["run", *S.KEYS])
    result = fleet.run(
        lambda engine, progress: summarize_fleet(
            fleet.locations,
            by,
            filters=filters,
            layout=fleet.layout,
            storage_options=fleet.storage_options,
            engine=engine,
            progress=progress,
            prompt_groups=prompt_groups,
        ),
        filters,
    )
    df = result.frame
    no_rows_at_all(result, df, "summarize")
    # Pooled rows say how many runs each holds (``runs``), beside the keys in a table too.
    absent = _emit_summary(df, fmt, output, [c for c in df.columns if c in ("run", RUNS_COLUMN) or c in S.KEYS])
    if absent:
        report_problems([], notes=[absent_note(absent, filters.splits)])
    if "split" in df.columns and "split" not in by:  # as one run's summary says it (views.SPLIT_NOTE)
        splits = sorted({str(x) for x in df["split"].drop_nulls().to_list()})
        report_problems([], notes=[fleet_split_note(splits, len(fleet.locations))])
    if "group" in by and "step" not in by and "step" in df.columns:
        from ..analysis.views import GROUP_STEP_NOTE

        report_problems([], notes=[GROUP_STEP_NOTE])
    if S.unknown_role_rows(df):
        report_problems([], notes=[S.UNKNOWN_ROLE_NOTE])
    if (infinite := S.infinite_note(df)) is not None:  # as one run's summary says it
        report_problems([], notes=[infinite])
    if "run" in df.columns:
        say_runs_without_rows(result, df, "summarize")
    errors = report_fleet(result)
    return EXIT_PROBLEMS if errors or result.failures else EXIT_OK
