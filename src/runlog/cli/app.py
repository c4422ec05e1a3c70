"""The typer application; each command lives in its own module and only parses, calls, formats."""

from __future__ import annotations

import typer

from .. import __version__
from .doctor_cmd import doctor_command
from .inspect_cmd import inspect_command
from .metrics_cmd import metrics_app
from .plot_cmd import plot_command
from .render_cmd import render_command
from .report_cmd import report_command
from .summarize_cmd import summarize_command
from .upload_cmd import upload_command

app = typer.Typer(
    name="runlog",
    help=(
        "Post-hoc analysis of RL post-training runs from raw Parquet/JSONL.\n\n"
        "Examples:\n\n"
        "  runlog inspect sample_runs/debate_grpo\n\n"
        "  runlog inspect sample_runs/damaged --format json | jq .problems\n\n"
        "  runlog summarize sample_runs/debate_grpo --by role"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runlog {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """runlog: what is in an RL run, is it valid, and how is each role doing."""


app.command("inspect")(inspect_command)
app.command("summarize")(summarize_command)
app.add_typer(metrics_app, name="metrics")
app.command("render-trajectory")(render_command)
app.command("upload-wandb")(upload_command)
app.command("plot")(plot_command)
app.command("doctor")(doctor_command)
app.command("report")(report_command)


def main() -> None:
    app(prog_name="runlog")
