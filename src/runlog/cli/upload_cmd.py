"""``runlog upload-wandb DIR``: back-fill Weights & Biases from a run, idempotently (docs/wandb.md)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS
from ..process import raise_if_interrupted
from ..textsafe import visible
from .common import (
    RUN_PATH,
    STORAGE_OPTION,
    emit_json,
    handle_errors,
    report_problems,
    stderr_console,
    use_storage_options,
    write_stdout,
)
from .options import Format, Layout, NoCache

MAX_NOTES = 10


class UploadFormat(str, Enum):
    table = "table"
    json = "json"


def upload_command(
    path: str = RUN_PATH,
    project: str = typer.Option(..., "--project", "-p", help="W&B project.", show_default=False),
    entity: str = typer.Option(None, "--entity", "-e", help="W&B entity (team or user); default: yours."),
    name: str = typer.Option(None, "--name", help="W&B run name (default: the run's name)."),
    run_id: str = typer.Option(None, "--run-id", help="W&B run id (default: derived from the run, stable)."),
    mode: str = typer.Option(None, "--mode", help="online or offline (default: $WANDB_MODE, else online)."),
    wandb_dir: Path = typer.Option(None, "--wandb-dir", help="Where W&B writes its files (default: $WANDB_DIR or .)."),
    max_samples: int = typer.Option(16, "--max-samples-per-step", help="Table rows per step and split (0: none)."),
    tables_every: int = typer.Option(1, "--tables-every", help="Log trajectory tables every N steps (0: never)."),
    prefix: str = typer.Option("debate", "--prefix", help="Key prefix of the per-role aggregates."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Diversity and format metrics, if available."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be logged; W&B is not touched."),
    state: Path = typer.Option(None, "--state", help="Upload state file (default: DIR/.runlog-wandb.json)."),
    fmt: Format[UploadFormat] = UploadFormat.table,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCache = False,
) -> None:
    """Back-fill a W&B run: scalars, per-role aggregates, reward histograms and trajectory tables.

    One W&B run per source run, one log call per step (charts use trainer/step). Idempotent: a second
    upload sends nothing, a grown run only its new steps, and an interrupted upload resumes where W&B
    stopped. The state is kept in DIR/.runlog-wandb.json (or --state).

    Exit codes: 0 uploaded (or nothing to do); 1 the run had problems (listed on stderr; the good data
    was uploaded) or W&B failed; 2 usage error (a bad option or $WANDB_MODE, a project name W&B refuses,
    a missing or broken wandb package, no credentials online).

    Examples:

      runlog upload-wandb sample_runs/debate_grpo --project debate --dry-run
      runlog upload-wandb sample_runs/flink_mixed --project grpo --max-samples-per-step 8 --tables-every 5 --dry-run
      runlog upload-wandb sample_runs/debate_grpo --project debate --mode offline --state wb.json  # wandb extra
    """
    from ..run import open_run
    from ..sinks.plan import PlanOptions
    from ..sinks.wandb import start_wandb_import, upload_wandb

    if not dry_run:
        start_wandb_import()  # overlaps reading and planning the run
    with handle_errors():
        options = PlanOptions(
            prefix=prefix, max_samples_per_step=max_samples, tables_every=tables_every, metrics=metrics
        )
        options.check()
        storage = use_storage_options(storage_option)
        run = open_run(path, layout=layout, storage_options=storage)
        bar = _Progress() if not dry_run and sys.stderr.isatty() else None
        try:
            result = upload_wandb(
                run,
                project=project,
                entity=entity,
                name=name,
                run_id=run_id,
                mode=mode,
                wandb_dir=wandb_dir,
                options=options,
                dry_run=dry_run,
                state_path=state,
                on_start=bar.start if bar else None,
                on_step=bar.step if bar else None,
            )
        except Exception:
            # After a Ctrl-C whose interrupt was lost on the way (raised inside a weakref callback, or inside an
            # import a library's lazy loader swallowed: "'LazyModule' object has no attribute 'histogram'", an
            # internal error, exit 3), the error it led to is the Ctrl-C's.
            raise_if_interrupted()
            raise
        finally:
            if bar:
                bar.stop()
        if fmt == UploadFormat.json:
            emit_json(result.to_dict())
        else:
            _print(result)
        notes = result.notes[:MAX_NOTES] + (
            [f"... {len(result.notes) - MAX_NOTES} more"] if len(result.notes) > MAX_NOTES else []
        )
        errors = report_problems(run.problems, notes=notes)
    raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)


class _Progress:
    """A rich progress bar on stderr: steps, table rows and tables sent (drawn only at a terminal)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("uploading"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps · {task.fields[rows]} rows · {task.fields[tables]} tables"),
            TimeRemainingColumn(),
            console=stderr_console(),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
        self.task: Any = None

    def start(self, result: Any, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("upload", total=total, rows=0, tables=0)

    def step(self, result: Any, step: int) -> None:
        self.progress.update(self.task, completed=result.steps, rows=result.table_rows, tables=result.tables)

    def stop(self) -> None:
        self.progress.stop()


def _print(r: Any) -> None:
    def line(text: str) -> None:
        write_stdout(visible(text, keep_newlines=False) + "\n")

    where = f"{r.entity + '/' if r.entity else ''}{r.project}/{r.run_id} ({r.mode})"
    if r.up_to_date:
        upto = f"up to {r.after}" if r.after is not None else "(the run holds none)"
        line(f"up to date: {where} has every step {upto}; nothing uploaded")
        return
    if not r.steps_total and not r.dry_run:
        line(f"nothing to upload to {where}: the run holds no step of scalars or samples; no W&B run started")
        return
    verb = "would log" if r.dry_run else "logged"
    span = f"steps {r.first_step}..{r.last_step}" if r.steps else "no new steps"
    resumed = f", after step {r.after} already in W&B" if r.after is not None else ""
    line(f"{verb} {r.steps} of {r.steps_total} step(s) to {where}: {span}{resumed}")
    line(
        f"  {len(r.keys)} keys, {r.histograms} histograms, {r.tables} tables with {r.table_rows} rows "
        f"({r.cut_cells} cells cut), about {_mb(r.bytes)} (largest history row {_mb(r.max_row_bytes)})"
    )
    if r.dry_run and r.keys:
        shown = ", ".join(r.keys[:12]) + (f", ... ({len(r.keys) - 12} more)" if len(r.keys) > 12 else "")
        line(f"  keys: {shown}")
    if r.wandb_file:
        line(f"  offline log: {r.wandb_file} (upload it with `wandb sync`)")
    if r.url:
        line(f"  {r.url}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
