"""``runlog plot DIR --what ... -o FILE``: one figure of a run, as PNG, SVG or PDF."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import EXIT_OK, UsageError
from .common import RUN_PATH, STORAGE_OPTION, handle_errors, report_problems, use_storage_options

WHAT_HELP = "reward, kl, components, diversity, format, scalars or hist."


def plot_command(
    path: str = RUN_PATH,
    what: str = typer.Option("reward", "--what", "-w", help=WHAT_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Image file: .png, .svg or .pdf.", show_default=False),
    by: str = typer.Option("role", "--by", "-b", help="role: one line per role; none: pooled."),
    keys: list[str] = typer.Option(None, "--keys", "-k", help="With --what scalars: only keys matching GLOB."),
    window: int = typer.Option(None, "--window", help="Moving average over N steps (default: a tenth of the run)."),
    steps: str = typer.Option(None, "--steps", help="With --what hist: steps, comma-separated (e.g. 10,100,200)."),
    split: str = typer.Option(None, "--split", help="Split to plot (default: train, or the only split)."),
    spec: str = typer.Option("think-answer-strict", "--spec", help="With --what format: the format spec."),
    layout: str = typer.Option(None, "--layout", help="Force a layout instead of detecting it."),
    storage_option: list[str] = STORAGE_OPTION,
) -> None:
    """Plot rewards, KL, reward components, diversity, format adherence, scalars or reward histograms.

    Rewards and KL per role: the moving average over the raw line, with a band of one standard deviation;
    KL in log scale when it spans decades. Histograms: per-role rewards at the --steps given.

    Needs matplotlib (pip install 'runlog[plot]'). The image type follows the -o suffix.

    Exit codes: 0 written; 2 usage error (unknown --what, unknown suffix, no such step).

    Examples:

      runlog plot sample_runs/debate_grpo --what reward -o reward.png

      runlog plot sample_runs/debate_grpo --what kl --window 5 -o kl.svg

      runlog plot sample_runs/debate_grpo --what hist --steps 0,16,31 -o hist.pdf

      runlog plot sample_runs/debate_grpo --what scalars --keys 'train/*' -o scalars.png
    """
    from ..plots import RunSeries, make_figure, save_figure
    from ..run import open_run

    with handle_errors():
        hist_steps = _steps(steps)
        if output.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UsageError(f"-o {output}: unknown image type {output.suffix or '(none)'!r}; use .png, .svg or .pdf")
        use_storage_options(storage_option)
        run = open_run(path, layout=layout)
        series = RunSeries(run, split=split, format_spec=spec)
        fig = make_figure(series, what, by=by, keys=keys or (), window=window, steps=hist_steps)
        written = save_figure(fig, output)
        report_problems([p for p in run.problems if not p.is_warning], notes=series.notes)
        sys.stdout.write(f"{written}\n")
    raise typer.Exit(EXIT_OK)


def _steps(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--steps {text!r}: expected step numbers separated by commas (10,100,200)") from None
