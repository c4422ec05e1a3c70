"""``runlog doctor DIR``: what is going wrong in a run, for which role, since which step."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS
from ..textsafe import visible
from .common import RUN_PATH, STORAGE_OPTION, emit_json, handle_errors, use_storage_options
from .filter_opts import SPLIT_OPTION
from .output import print_out

if TYPE_CHECKING:
    from rich.console import Group

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class DoctorFormat(str, Enum):
    table = "table"
    json = "json"


def doctor_command(
    path: str = RUN_PATH,
    fmt: DoctorFormat = typer.Option(DoctorFormat.table, "--format", "-f", help="Output format."),
    sets: list[str] = typer.Option(
        None, "--set", help="Override a threshold: NAME=VALUE (repeatable; names in docs/doctor.md)."
    ),
    config: Path = typer.Option(None, "--config", help="A TOML file of thresholds (top level or [doctor])."),
    split: str = SPLIT_OPTION,
    layout: str = typer.Option(None, "--layout", help="Force a layout instead of detecting it."),
    storage_option: list[str] = STORAGE_OPTION,
) -> None:
    """Diagnose a run: what is going wrong, for which role, since which step.

    Checks: KL blow-ups, reward collapse or stagnation, zero-advantage prompt groups, diversity
    collapse, format drift, reward hacking, NaN rewards, exception spikes, missing steps and unreadable
    files. Each finding names the role, the first step of the sustained change (found by a noise-tolerant
    change-point search), a severity and the numbers behind it.

    Exit codes: 0 no finding of severity warning or worse; 1 such findings; 2 usage error.

    Examples:

      runlog doctor sample_runs/debate_grpo  # exit 1: NaN rewards
      runlog doctor sample_runs/debate_grpo --format json | jq -c '.findings[] | {kind, role, onset_step}'  # exit 1
      runlog doctor sample_runs/debate_grpo --split eval --set kl_ratio=20 --set zero_adv=0.8
    """
    from ..analysis.check import check_filters
    from ..analysis.doctor import DoctorConfig, diagnose
    from ..analysis.filters import Filters
    from ..run import open_run

    with handle_errors():
        cfg = DoctorConfig.from_sources(config, sets or ())
        if split is not None:
            cfg = cfg.replace({"split": split}, "--split")
        use_storage_options(storage_option)
        run = open_run(path, layout=layout)
        if cfg.split:
            check_filters(run, Filters(splits=(cfg.split,)))
        result = diagnose(run, cfg)
        if fmt == DoctorFormat.json:
            emit_json(
                {"findings": [f.as_dict() for f in result.findings], "notes": result.notes, "split": result.split}
            )
        else:
            print_out(render_findings(run.name, result))
    raise typer.Exit(EXIT_PROBLEMS if result.failing else EXIT_OK)


def render_findings(name: str, result: Any) -> Group:
    from rich.console import Group
    from rich.text import Text

    from .output import Col, Sheet

    parts: list[Any] = []
    head = Text()
    head.append("doctor ", style="bold")
    head.append(visible(name, keep_newlines=False), style="bold cyan")
    if result.split:
        head.append(f"  split {visible(result.split, keep_newlines=False)}", style="dim")
    parts.append(head)
    if result.findings:
        columns = [
            Col("severity", "left", key=True),
            Col("kind", "left", key=True),
            Col("role", "left", key=True),
            Col("onset"),
            Col("finding", "left", wrap=True),
        ]
        rows = [
            [
                Text(f.severity, style=SEVERITY_STYLE[f.severity]),
                Text(f.kind),
                Text(visible(f.role or "-", keep_newlines=False)),
                Text("-" if f.onset_step is None else str(f.onset_step)),
                Text(visible(f.message, keep_newlines=False)),
            ]
            for f in result.findings
        ]
        parts.append(Sheet("", columns, rows))
    for note in result.notes:
        parts.append(Text(f"note: {visible(note, keep_newlines=False)}", style="dim"))
    if not result.findings:
        parts.append(Text("healthy: no findings.", style="bold green"))
    elif not result.failing:
        parts.append(Text(f"{len(result.findings)} informational finding(s); nothing to fix.", style="bold cyan"))
    else:
        n = sum(f.severity != "info" for f in result.findings)
        parts.append(
            Text(f"{n} finding(s) of severity warning or worse (--format json for the evidence).", style="bold red")
        )
    return Group(*parts)
