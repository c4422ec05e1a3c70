"""The typer application; each command lives in its own module and only parses, calls, formats."""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from .doctor_cmd import doctor_command
from .inspect_cmd import inspect_command
from .metrics_cmd import metrics_app
from .plot_cmd import plot_command
from .render_cmd import render_command
from .report_cmd import report_command
from .summarize_cmd import summarize_command
from .upload_cmd import upload_command

# What Rich reads as a markup tag (rich.markup.escape's pattern; importing rich.markup costs ~16 ms a command).
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _literal(text: str | None) -> str | None:
    """``text`` with every ``[tag]`` escaped, so that Rich shows it as written."""
    if not text:
        return text
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


class _LiteralHelp:
    """Help text is text, not Rich markup: ``'runlog[plot]'`` and ``(top level or [doctor])`` are shown as
    written. Escaped once here, for the command's own help, its options' and its epilog; a group lists its
    commands with their (escaped) help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if typer.core.HAS_RICH and kwargs.get("rich_markup_mode") == "rich":
            self.help, self.short_help, self.epilog = map(_literal, (self.help, self.short_help, self.epilog))
            for param in self.params:
                if getattr(param, "help", None):
                    param.help = _literal(param.help)


class LiteralCommand(_LiteralHelp, TyperCommand):
    pass


class LiteralGroup(_LiteralHelp, TyperGroup):
    pass


# `-h` is `--help` everywhere (sub-commands inherit it from the root context).
CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="runlog",
    cls=LiteralGroup,
    context_settings=CONTEXT,
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
app.add_typer(metrics_app, name="metrics", cls=LiteralGroup)
app.command("render-trajectory")(render_command)
app.command("upload-wandb")(upload_command)
app.command("plot")(plot_command)
app.command("doctor")(doctor_command)
app.command("report")(report_command)


def _literal_help_everywhere(t: typer.Typer) -> None:
    """Every command, those of sub-groups included, draws its help through :class:`LiteralCommand`."""
    for info in t.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = LiteralCommand
    for group in t.registered_groups:
        if group.typer_instance is not None:
            _literal_help_everywhere(group.typer_instance)


_literal_help_everywhere(app)


def main() -> None:
    app(prog_name="runlog")
