"""``runlog summarize DIR``: per-role reward and KL, GRPO group statistics, scalars, correlations."""

from __future__ import annotations

from pathlib import Path

import typer

from ..analysis.summarize import KL_STATS, REWARD_STATS
from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from .common import RUN_PATH, STORAGE_OPTION, handle_errors, report_problems, use_storage_options
from .output import OutputFormat, emit_frame

SECTIONS = [
    ("Reward (NaN and null are counted apart and never enter the statistics)", [*REWARD_STATS, "reward_mean_ma"]),
    ("KL", [*KL_STATS, "kl_mean_ma"]),
    ("GRPO prompt groups and failed trajectories", ["zero_adv_frac", "exception_rate"]),
]


def summarize_command(
    path: str = RUN_PATH,
    by: list[str] = typer.Option(
        None, "--by", "-b", help="Group by: role, step, split, env, group (repeatable). Default: role."
    ),
    window: int = typer.Option(None, "--window", "-w", help="Add moving averages over the last N steps."),
    split: list[str] = typer.Option(None, "--split", help="Only these splits (repeatable)."),
    steps: str = typer.Option(None, "--steps", help="Only steps A:B (inclusive; A: and :B work too)."),
    role: list[str] = typer.Option(None, "--role", help="Only these roles (repeatable)."),
    scalars: bool = typer.Option(False, "--scalars", help="Summarise the scalar metrics (JSONL) instead."),
    keys: list[str] = typer.Option(None, "--keys", "-k", help="With --scalars: only keys matching GLOB."),
    alias: list[str] = typer.Option(None, "--alias", help="With --scalars: treat key OLD as NEW (OLD=NEW)."),
    aliases: Path = typer.Option(None, "--aliases", help="With --scalars: a JSON file {old_key: canonical_key}."),
    correlations: bool = typer.Option(
        False, "--correlations", help="Pearson correlations between reward components and role rewards."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to FILE instead of stdout."),
    layout: str = typer.Option(None, "--layout", help="Force a layout instead of detecting it."),
    storage_option: list[str] = STORAGE_OPTION,
) -> None:
    """Per-role reward and KL aggregates, GRPO group statistics and scalar summaries.

    NaN and null rewards are counted in their own columns and never enter the statistics. zero_adv_frac
    is the fraction of prompt groups where every reward of that role is equal (no GRPO signal).

    Exit codes: 0 ok; 1 the run had problems (they are listed on stderr; the good data was summarised);
    2 usage error.

    Examples:

      runlog summarize sample_runs/debate_grpo --by role

      runlog summarize sample_runs/debate_grpo --by role --by step --window 5 --format csv -o per_step.csv

      runlog summarize sample_runs/flink_mixed --by role --split train --steps 10:19 --format json

      runlog summarize sample_runs/debate_grpo --scalars --keys 'debate/*'

      runlog summarize sample_runs/debate_grpo --correlations
    """
    from ..analysis import summarize as S
    from ..run import open_run

    with handle_errors():
        if sum([scalars, correlations]) > 1:
            raise UsageError("--scalars and --correlations are separate reports: pick one")
        use_storage_options(storage_option)
        run = open_run(path, layout=layout)
        filters = S.Filters(splits=split or (), steps=S.StepRange.parse(steps), roles=role or ())
        if scalars:
            table = S.load_aliases(aliases, alias or ())
            df = S.summarize_scalars(run, keys=keys or (), aliases=table, steps=filters.steps)
            emit_frame(df, fmt, output, keys=["key"])
        elif correlations:
            df = S.correlations(run, filters=filters)
            emit_frame(df, fmt, output, keys=["x", "y"])
        else:
            df = S.summarize(run, by or ["role"], filters=filters, window=window)
            group_keys = [c for c in df.columns if c in S.KEYS]
            comps = [c for c in df.columns if c.startswith("component/")]
            emit_frame(
                df,
                fmt,
                output,
                sections=[*SECTIONS, ("Reward components (means)", comps)],
                keys=group_keys,
                strip=("reward_", "kl_", "component/"),
            )
            if S.unknown_role_rows(df):
                report_problems([], notes=[S.UNKNOWN_ROLE_NOTE])
            if df.is_empty() and not any(f.kind == "samples" and f.readable for f in run.files):
                report_problems([], notes=["this run has no per-sample data (only scalar metrics): try --scalars"])
        errors = report_problems(run.problems)
    raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)
