"""``runlog metrics diversity|format DIR``: generation diversity (mode collapse) and format adherence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from ..analysis.summarize import check_keys
from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from .common import STORAGE_OPTION, handle_errors, no_text_reason, report_problems, use_storage_options
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
from .options import Format, Layout, NoProbeCache, Output, Splits, Steps, by_keys, format_from_output
from .output import OutputFormat, emit_frame

if TYPE_CHECKING:
    import polars as pl

    from ..analysis.filters import Filters
    from ..analysis.texts import SkippedTexts
    from ..fleet import MetricJob

metrics_app = typer.Typer(
    help=(
        "Generation-quality metrics: diversity per prompt group / step / role, and format adherence "
        "(docs/metrics.md).\n\n"
        "Examples:\n\n"
        "  runlog metrics diversity sample_runs/debate_grpo --by step\n"
        "  runlog metrics format sample_runs/debate_grpo --spec trl-think --by step"
    ),
    no_args_is_help=True,
)

DIVERSITY_SECTIONS = [
    ("Texts", ["groups", "texts", "no_text", "unique_frac", "len_mean", "len_median"]),
    ("distinct_n: distinct / all n-grams", [f"distinct_{n}" for n in (1, 2, 3, 4)]),
    ("distinct_li2016_n: distinct n-grams / tokens", [f"distinct_li2016_{n}" for n in (1, 2, 3, 4)]),
    ("entropy_n (nats) and self_repetition", [*(f"entropy_{n}" for n in (1, 2, 3, 4)), "self_repetition"]),
    ("self_bleu_n (nltk, method1)", ["self_bleu_2", "self_bleu_3", "self_bleu_4"]),
    # Only with --compression: a section whose columns are absent is not drawn, title included.
    ("compression_ratio: xz, gzip", ["compression_ratio", "compression_ratio_gzip"]),
]
# Table headers under those titles: distinct_li2016_2 reads "2" (CSV and JSON keep the full names).
DIVERSITY_STRIP = ("distinct_li2016_", "distinct_", "entropy_", "self_bleu_", "compression_ratio_")

TEXT_HELP = (
    "Which text: auto (the policy's generated text: its final assistant turn; completion only for a sample "
    "without messages; with --by role each role's own), auto+reasoning (auto with its turn's reasoning field put "
    "back as <think>...</think>), assistant (every assistant turn), answer (inside <answer>), completion, "
    "trajectory, role:NAME, messages (every message). See docs/metrics.md."
)
BY_HELP = "Group by: run (fleets), step, role, group, split (repeatable, or a comma list). Default: step."


@metrics_app.command("diversity")
def diversity_command(
    ctx: typer.Context,
    paths: list[str] = RUN_PATHS,
    by: list[str] = typer.Option(None, "--by", "-b", help=BY_HELP, callback=by_keys),
    text: str = typer.Option("auto", "--text", "-t", help=TEXT_HELP),
    over: str = typer.Option(
        "group", "--over", help="group: per prompt group, then averaged per row; set: all texts of a row at once."
    ),
    compression: bool = typer.Option(
        False, "--compression", help="Add xz and gzip compression ratios (slow: ~5 MB/s of text per core)."
    ),
    split: Splits = None,
    steps: Steps = None,
    threads: int = typer.Option(2, "--threads", min=1, help="Threads for the compression ratios."),
    fmt: Format[OutputFormat] = OutputFormat.table,
    output: Output = None,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoProbeCache = False,
    runs: str = RUNS_FILE,
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Diversity: distinct-n, n-gram entropy, Self-BLEU, self-repetition, unique texts, lengths.

    Tokens are whitespace-separated (Python str.split()), no lower-casing. With --over group (default) the
    metrics are computed per prompt group and averaged per row, so a group that collapsed to one answer
    shows even when the step as a whole still looks varied. Definitions: docs/metrics.md.

    Exit codes: 0 ok; 1 the run had problems (listed on stderr); 2 usage error, a run with no per-sample
    data (scalars only), or -o FILE cannot be written.

    Examples:

      runlog metrics diversity sample_runs/debate_grpo --by step
      runlog metrics diversity sample_runs/debate_grpo --by step --over set --compression --format csv -o div.csv
      runlog metrics diversity sample_runs/debate_grpo --text role:solver --by step --by role
    """
    from ..analysis import texts as M
    from ..analysis.check import check_filters, check_text_role
    from ..analysis.filters import Filters
    from ..analysis.views import split_notes
    from ..fleet import DiversityJob, fleet_locations, is_fleet
    from ..formats.flink_text import parse_notes
    from ..run import open_run

    fmt = format_from_output(ctx, fmt, output)
    with handle_errors():
        storage = use_storage_options(storage_option)
        locs = fleet_locations(paths or [], runs, storage, by or [])
        filters = Filters.from_options(split, steps)
        if is_fleet(locs, by or [], listed=bool(runs), engine=engine, ray_address=ray_address):
            job = DiversityJob(text=text, over=over, compression=compression, threads=threads)
            df, code = _fleet(job, Fleet(locs, layout, storage, engine, ray_address), by, filters)
            keys = [c for c in df.columns if c in FLEET_KEYS]
            emit_frame(df, fmt, output, sections=DIVERSITY_SECTIONS, keys=keys, strip=DIVERSITY_STRIP)
            if over == "group":  # per run, the count is not carried back from the tasks: the rule is said
                report_problems([], notes=[*_whole_rows_notes(df, keys), M.SINGLETONS_RULE_NOTE])
            raise typer.Exit(code)
        run = open_run(locs[0], layout=layout, storage_options=storage)
        _check_has_samples(run, locs[0])
        check_filters(run, filters)
        notes: list[str] = []
        none = M.SkippedTexts()
        df = M.diversity_frame(
            run,
            by or ["step"],
            text=text,
            over=over,
            filters=filters,
            compression=compression,
            threads=threads,
            notes=notes,
            skipped=none,
        )
        keys = [c for c in df.columns if c in M.KEYS]
        check_text_role(run, text, df.height > 0, filters)
        skipped = _no_text(none, text, per_role="role" in keys)
        shown = _with_no_text(df, none.per_row(keys), keys)
        emit_frame(shown, fmt, output, sections=DIVERSITY_SECTIONS, keys=keys, strip=DIVERSITY_STRIP)
        notes = split_notes(run, df, by) + notes
        if over == "group" and df.height and "groups" not in df.columns:
            notes.append(M.OVER_SET_NOTE)
        elif over == "group":
            notes += _whole_rows_notes(df, keys)
        notes += _text_notes(run, text, by, filters, df.height > 0, policy=M.reads_policy(text, "role" in keys))
        notes += _skip_notes(run, text, filters, skipped, df.height > 0)
        notes += parse_notes(run.ctx)  # what parsing the texts noted (Flink v0 agents that read alike)
        errors = report_problems(run.problems, notes=notes)
    raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)


@metrics_app.command("format")
def format_command(
    ctx: typer.Context,
    paths: list[str] = RUN_PATHS,
    spec: str = typer.Option(
        "think-answer-strict",
        "--spec",
        "-s",
        help="open-r1, open-r1-tags, trl-think, think-answer-strict, tool-call-json, or a TOML file.",
    ),
    by: list[str] = typer.Option(
        None,
        "--by",
        "-b",
        help="Group by: run (fleets), step, role, split (repeatable, or a comma list). Default: step.",
        callback=by_keys,
    ),
    text: str = typer.Option("auto", "--text", "-t", help=TEXT_HELP),
    per_sample: bool = typer.Option(
        False,
        "--per-sample",
        help="One row per text, in run order (--by role: each role's own texts, role filled).",
    ),
    tools: str = typer.Option(None, "--tools", help="tool-call-json: comma-separated known tool names."),
    split: Splits = None,
    steps: Steps = None,
    fmt: Format[OutputFormat] = OutputFormat.table,
    output: Output = None,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoProbeCache = False,
    runs: str = RUNS_FILE,
    engine: str = ENGINE,
    ray_address: str = RAY_ADDRESS,
) -> None:
    """Format adherence: the rate of texts that follow a format spec, failures per rule, and the
    reasoning-to-answer length ratio. Built-in specs reproduce open-r1's and TRL's format rewards exactly,
    quirks included (docs/metrics.md). --spec also takes a TOML file of your own rules.

    Exit codes: 0 ok; 1 the run had problems (listed on stderr); 2 usage error, a run with no per-sample
    data (scalars only), or -o FILE cannot be written.

    Examples:

      runlog metrics format sample_runs/debate_grpo --spec trl-think --by step
      runlog metrics format sample_runs/debate_grpo --by role
      runlog metrics format sample_runs/debate_grpo --per-sample --format csv -o format.csv
    """
    from ..analysis import texts as M
    from ..analysis.check import check_filters, check_text_role
    from ..analysis.filters import Filters
    from ..analysis.views import split_notes
    from ..fleet import FormatJob, fleet_locations, is_fleet
    from ..formats.flink_text import parse_notes
    from ..metrics import format as F
    from ..run import open_run

    fmt = format_from_output(ctx, fmt, output)
    with handle_errors():
        storage = use_storage_options(storage_option)
        locs = fleet_locations(paths or [], runs, storage, by or [])
        filters = Filters.from_options(split, steps)
        known = tuple(t.strip() for t in tools.split(",") if t.strip()) if tools else None
        if is_fleet(locs, by or [], listed=bool(runs), engine=engine, ray_address=ray_address):
            if per_sample:
                raise UsageError("--per-sample works on one run, not a fleet")
            job = FormatJob(spec=spec, text=text, known_tools=known)
            df, code = _fleet(job, Fleet(locs, layout, storage, engine, ray_address), by, filters)
            failed = [c for c in df.columns if c.startswith("failed/")]
            emit_frame(
                df, fmt, output, sections=_format_sections(failed), keys=[c for c in df.columns if c in FLEET_KEYS]
            )
            raise typer.Exit(code)
        run = open_run(locs[0], layout=layout, storage_options=storage)
        _check_has_samples(run, locs[0])
        check_filters(run, filters)
        the_spec = F.get_spec(spec)
        calls = the_spec.needs_messages
        # Each role's own texts where the rows are per role, or the spec keeps some roles' texts (as
        # format_per_sample does by itself).
        roles_read = the_spec.roles is not None and text in ("auto", "auto+reasoning", "assistant") and not calls
        # The spec's roles where they pick the speakers whose texts are read (the notes of the texts missing).
        spec_roles = the_spec.roles if roles_read else None
        none = M.SkippedTexts()
        left: list[str] = []  # what the texts left out say (tool calls without words, under --text messages)
        if per_sample:
            per_role = _per_sample_keys(by)
            df = M.format_per_sample(
                run, spec, text=text, filters=filters, known_tools=known, per_role=per_role, skipped=none, notes=left
            )
            check_text_role(run, text, df.height > 0, filters)
            skipped = _no_text(none, text, per_role=per_role or roles_read, calls=calls, roles=spec_roles)
            policy = not calls and M.reads_policy(text, per_role or roles_read)
            emit_frame(df, fmt, output, keys=["step", "sample_id", *(["role"] if per_role else [])])
        else:
            df = M.format_frame(
                run, spec, by or ["step"], text=text, filters=filters, known_tools=known, skipped=none, notes=left
            )
            check_text_role(run, text, df.height > 0, filters)
            keys = [c for c in df.columns if c in M.KEYS]
            skipped = _no_text(none, text, per_role="role" in keys or roles_read, calls=calls, roles=spec_roles)
            policy = not calls and M.reads_policy(text, "role" in keys or roles_read)
            shown = _with_no_text(df, none.per_row(keys), keys)
            failed = [c for c in df.columns if c.startswith("failed/")]
            emit_frame(shown, fmt, output, sections=_format_sections(failed), keys=keys, strip=("failed/",))
        notes = [] if per_sample else split_notes(run, df, by)
        notes += left
        notes += _text_notes(run, text, by, filters, df.height > 0, policy=policy)
        notes += _skip_notes(run, text, filters, skipped, df.height > 0, calls)
        if df.height:
            why = M.reasoning_note(run, spec, text=text, filters=filters, measured=df)
            # Every text failing at one rule: said, unless the reasoning held outside the texts says why.
            notes += [x for x in [why or M.same_rule_note(spec, df)] if x]
        notes += parse_notes(run.ctx)  # what parsing the texts noted (Flink v0 agents that read alike)
        errors = report_problems(run.problems, notes=notes)
    raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)


NO_SAMPLES = (
    "this run has no per-sample data (only scalar metrics): no text to measure "
    "(try runlog summarize --scalars, or runlog plot --what scalars)"
)
NO_TEXT_NOTE = "{n:,} sample(s) have no text for --text {text} and are skipped (not in texts): {why}"


def _check_has_samples(run: Any, location: Any) -> None:
    """A run of scalars only (no sample file at all) has nothing to measure: a usage error (exit 2), as
    ``runlog render-trajectory`` says of it, not empty tables. Sample files that could not be read are the
    run's problems (exit 1), said where the texts are found missing."""
    if not any(f.kind == "samples" for f in run.files) and not run.skipped:
        raise UsageError(f"{location}: {NO_SAMPLES}")


def _per_sample_keys(by: list[str] | None) -> bool:
    """``--per-sample`` with ``--by``: every row has its step and split already; ``role`` reads each role's own
    texts (one row per sample and role, ``role`` filled), as the rows per role do; ``group`` has no per-sample
    meaning for format adherence and is refused. Returns whether the texts are per role."""
    from ..analysis import texts as M

    keys = check_keys(by or [], M.KEYS)
    if "group" in keys:
        raise UsageError(
            "--per-sample takes --by step, role or split (its rows have their step and split; --by role gives "
            "each role's own texts), not --by group: format adherence has no rows per prompt group"
        )
    return "role" in keys


def _no_text(
    none: SkippedTexts, text: str, *, per_role: bool, calls: bool = False, roles: Sequence[str] | None = None
) -> dict[str, str]:
    """One note per reason for the samples that have no text of the kind chosen, which the metrics skip (counted
    by the library in the same read as the texts: ``SkippedTexts``): ``unread`` (a file whose text could not be
    read), ``bare`` (no messages, and no completion where that is read), ``rest`` (messages but no turn of the
    speaker read, or, for message-level texts, no message read; the column null). ``per_role``: the texts are
    read per speaker (``--by role``, or ``roles``: those of the format spec, whose texts are read)."""
    message_level = calls or text == "messages"
    # Texts per speaker: one per sample and speaker (the other kinds have one per sample, or message, however
    # the rows are keyed).
    per_role = per_role and not message_level and text in ("auto", "auto+reasoning", "assistant")
    fallback = "trajectory" if text == "trajectory" else "completion"
    speaker = text.split(":", 1)[1] if text.startswith("role:") else None
    if message_level:  # a speaker's tool calls have no text in place of the messages
        bare_why = f"no messages and a null {fallback}" if calls and speaker is None else "no messages"
    elif speaker is not None:
        bare_why = "no messages"
    else:
        bare_why = "no messages and a null completion"
    if calls:
        # Messages, but none checked: every one the prompt's (a response without output), the user's, or empty.
        whose = (
            f"a message of {speaker}" if speaker is not None else "a model's message (not a user, system or tool one)"
        )
        rest_why = (
            f"none of their messages is one a tool-call spec checks: {whose} with content or a tool call, after "
            "the prompt where the layout tells where it ends (prompt_turns; a response with no output has none)"
        )
    elif text == "messages":
        rest_why = "none of their messages has content (with a format spec that keeps some roles: none of theirs)"
    elif text in ("completion", "trajectory"):
        rest_why = f"their {text} is null"
    elif speaker is not None:
        rest_why = f"{speaker} has no turn in them"
    elif roles is not None and per_role:
        rest_why = (
            f"no turn with text of the spec's role{'s' if len(roles) > 1 else ''} ({', '.join(roles)}): "
            f"{'they do' if len(roles) > 1 else 'it does'} not speak in them, or only in tool calls without content"
        )
    elif per_role:
        rest_why = (
            "the speaker's turns there are all tool calls without content (a sample without a model speaker's "
            "turn counted once)"
        )
    elif text == "assistant":
        rest_why = "their messages have no assistant turn with text (none, or only tool calls without content)"
    else:
        rest_why = (
            "their messages have no turn of the policy with text (its only turn a tool call without content, or "
            "the policy does not speak in them)"
        )
        if text == "answer":
            rest_why += ", or the text has no <answer> block and the completion is null"
    whys = {"unread": "the text of their file could not be read (see the errors)", "bare": bare_why, "rest": rest_why}
    # Per speaker (--by role, a spec's roles) a sample is counted once for each speaker read that has no text in it
    # (its turns there tool calls without words), and once where no speaker read has a turn: texts missing, not
    # samples; a spec of one role counts samples (its one speaker, or none).
    note = NO_TEXT_NOTE
    if per_role and roles is not None and len(roles) > 1:
        note = NO_TEXT_NOTE.replace(
            "sample(s)", "text(s) (per sample and role of the spec; once for a sample where none of them speaks)"
        )
    elif per_role and roles is None:
        note = NO_TEXT_NOTE.replace("sample(s)", "text(s) (per sample and role)")
    return {k: note.format(n=n, text=text, why=whys[k]) for k, n in none.by_reason().items() if n > 0}


def _with_no_text(df: pl.DataFrame, missing: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``df`` with ``no_text`` after ``texts`` where some sample has no text: the samples of each row skipped for
    that; a row whose samples all have none is added (``texts`` 0, its figures null), so that no sample goes
    uncounted."""
    from .._lazy import pl

    if not missing.height:  # as the failed/<rule> columns: only where there is something to count
        return df
    if not keys:
        out = df.with_columns(pl.lit(int(missing["no_text"].sum() or 0), dtype=pl.Int64).alias("no_text"))
    else:
        missing = missing.with_columns(pl.col(k).cast(df.schema[k]) for k in keys)
        out = df.join(missing, on=keys, how="full", coalesce=True, nulls_equal=True, maintain_order="left")
        out = out.with_columns(pl.col("texts").fill_null(0), pl.col("no_text").fill_null(0))
        out = out.sort(keys, nulls_last=True, maintain_order=True)
    cols = [c for c in df.columns if c != "texts"]
    at = df.columns.index("texts")
    return out.select(*cols[:at], "texts", "no_text", *cols[at:])


def _skip_notes(
    run: Any, text: str, filters: Filters, skipped: dict[str, str], found: bool, calls: bool = False
) -> list[str]:
    """The notes of the samples skipped for having no text, and, where no text was found at all, why: the
    messages' speakers where that is why (the note then stands for the samples whose turns hold no text); none
    more where the skipped samples' notes say why (a file whose text could not be read among them); else the
    general reason."""
    from ..analysis import texts as M

    if found:
        return list(skipped.values())
    said = None if calls else M.no_text_note(run, text, filters=filters)
    if said:
        return [note for k, note in skipped.items() if k != "rest"] + [said]
    return list(skipped.values()) or [no_text_reason(run, text, calls)]


def _text_notes(
    run: Any, text: str, by: list[str] | None, filters: Filters, found: bool, *, policy: bool = False
) -> list[str]:
    """What the text kind chosen does to the rows: the samples of several layouts pooled (``layouts_note``, as
    summarize says it); whose turns are the policy's, where the texts are the policy's (``policy``:
    ``texts.reads_policy``) and the run has several model speakers, or none was ``found`` (then above all: the
    policy elected, and the speakers that have a turn with text there, with the ``--text role:NAME`` that reads
    one); ``--by role`` with a kind that has no speaker (one row, its role empty); ``--text answer``'s texts that
    are the completion column as written."""
    from ..analysis import texts as M
    from ..analysis.views import layouts_note

    notes = [x for x in [layouts_note(run, by_env=False)] if x]  # metrics has no --by env
    if policy:
        notes += [x for x in [M.policy_note(run, text, filters=filters, found=found)] if x]
    if not found:
        return notes
    notes += [x for x in [M.by_role_note(text)] if x and "role" in (by or [])]
    if text == "answer":
        notes += [x for x in [M.answer_note(run, filters=filters)] if x]
    return notes


def _whole_rows_notes(df: pl.DataFrame, keys: list[str]) -> list[str]:
    """The rows measured over all their texts (``groups`` empty: no prompt group of two texts there), named."""
    from ..analysis import texts as M

    if "groups" not in df.columns or not df["groups"].null_count():
        return []
    return [M.OVER_SET_ROWS_NOTE.format(rows=M.describe_rows(df.filter(df["groups"].is_null()), keys))]


FLEET_KEYS = ("run", "step", "role", "group", "split")


def _format_sections(failed: list[str]) -> list[tuple[str, list[str]]]:
    return [
        ("Adherence", ["texts", "no_text", "adherence", "score_mean"]),
        ("Reasoning vs answer (tokens)", ["think_tokens_mean", "answer_tokens_mean", "reasoning_answer_ratio"]),
        ("Failures by first failing rule", failed),
    ]


def _fleet(job: MetricJob, fleet: Fleet, by: list[str] | None, filters: Filters) -> tuple[pl.DataFrame, int]:
    """Metrics per run of a fleet (they do not merge across runs: ``--by run`` is implied)."""
    from ..analysis import texts as M
    from ..fleet import metrics_fleet

    keys = [k for k in (by or ["run", "step"]) if k != "run"]
    check_keys(keys, M.KEYS)
    result = fleet.run(
        lambda engine, progress: metrics_fleet(
            job,
            fleet.locations,
            keys,
            filters=filters,
            layout=fleet.layout,
            storage_options=fleet.storage_options,
            engine=engine,
            progress=progress,
        ),
        filters,
    )
    from ..fleet.tasks import DiversityJob

    command = "metrics diversity" if isinstance(job, DiversityJob) else "metrics format"
    no_rows_at_all(result, result.frame, command)
    say_runs_without_rows(result, result.frame, command)
    errors = report_fleet(result)
    return result.frame, EXIT_PROBLEMS if errors or result.failures else EXIT_OK
