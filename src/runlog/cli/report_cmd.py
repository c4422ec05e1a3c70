"""``runlog report DIR -o report.html``: one self-contained HTML page about a run."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from .common import (
    RUN_PATH,
    STORAGE_OPTION,
    handle_errors,
    report_problems,
    stderr_console,
    use_storage_options,
    writing,
    wrote,
)
from .options import Layout, NoCache, Thresholds, ThresholdsFile, TrainingSplit, output_file


def report_command(
    path: str = RUN_PATH,
    output: Path = output_file(Path("report.html"), "The HTML file to write (*.html)."),
    sets: Thresholds = None,
    config: ThresholdsFile = None,
    split: TrainingSplit = None,
    layout: Layout = None,
    against: str = typer.Option(
        None, "--against", metavar="RUN", help="Add a comparison with RUN, the baseline (runlog diff RUN this-run)."
    ),
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCache = False,
) -> None:
    """Write a self-contained HTML report of a run, to read and to share.

    It holds the run overview, the doctor's findings linked to the plots and
    trajectories they concern, per-role summaries, plots (rewards and KL per role, components, diversity,
    format, histograms) and the best and worst trajectory per role. Images are embedded; the page loads
    nothing and runs no script, so it opens from disk and can be shared as one file. --against RUN adds
    a comparison with that baseline: runlog diff's per-role table and the reward and KL overlays.

    Needs matplotlib (in runlog's folder: pip install -e '.[plot]'). One line on stderr says where it wrote.

    Exit codes: 0 written (whatever the findings; use runlog doctor to gate on them); 1 written, but no sample
    file of the run could be read: the page says so; 2 usage error, or -o FILE cannot be written.

    Examples:

      runlog report sample_runs/debate_grpo -o report.html
      runlog report sample_runs/debate_grpo --split eval --set kl_ratio=20 -o eval.html
      runlog report sample_runs/flink_mixed -o flink.html
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..analysis.check import check_filters
    from ..analysis.doctor import DoctorConfig
    from ..analysis.filters import Filters
    from ..formats.base import Problem
    from ..plots.figures import glyphs_noted, missing_glyphs, mpl
    from ..report import STAGES, build_report
    from ..run import open_run

    with handle_errors(), glyphs_noted():
        if output.suffix.lower() not in (".html", ".htm"):
            raise UsageError(f"-o {output}: the report is HTML; name it *.html")
        mpl()
        missing_glyphs()  # of figures drawn before (a caller's): not this report's
        cfg = DoctorConfig.from_sources(config, sets or ())
        if split is not None:
            cfg = cfg.replace({"split": split}, "--split")
        storage = use_storage_options(storage_option)
        run = open_run(path, layout=layout, storage_options=storage)
        baseline = open_run(against, layout=layout, storage_options=storage) if against else None
        if cfg.split:
            check_filters(run, Filters(splits=(cfg.split,)))
        with Progress(
            TextColumn("[bold]report[/]"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=stderr_console(),
            transient=True,
            disable=not sys.stderr.isatty(),  # a pipe or a log gets no bar (and no blank line)
        ) as progress:
            task = progress.add_task(STAGES[0], total=len(STAGES))

            def tick(stage: str) -> None:
                nxt = STAGES.index(stage) + 1
                progress.update(task, advance=1, description=STAGES[nxt] if nxt < len(STAGES) else "done")

            texts: list[Problem] = []  # files whose text alone could not be read (their numbers are counted)
            where = (against, path) if against else None  # as the command line spelled them, as runlog diff
            html = build_report(run, cfg, progress=tick, against=baseline, text_problems=texts, against_locations=where)
        from ..formats.flink_text import parse_notes

        # What parsing the texts noted; the characters the plot font has no glyph for (matplotlib's warning, two
        # lines of Python's format per character and per drawing, said once).
        glyphs = missing_glyphs()
        glyph_note = [f"{glyphs} (the page's text shows them)"] if glyphs else []
        report_problems([], notes=[*parse_notes(run.ctx), *glyph_note])
        with writing(output):
            output.write_text(html, encoding="utf-8")
        # The files that could not be read are in the page's Data section; said here too, as other commands do,
        # and every reader warning with them, as plot and summarize say them (a torn last line of a scalars file:
        # a step's metrics left out of the figures).
        own = list(run.problems) + texts
        if baseline is None:
            report_problems(own)
        else:
            # Two runs: each line names its run, as runlog diff's do (a path such as samples/train/step_2 can be
            # in both), with the names the page's comparison gives them.
            from ..report import against_labels
            from .diff_cmd import named

            base, name = against_labels(baseline, run, (against, path))
            report_problems([named(p, name) for p in own])
            report_problems([named(p, base) for p in baseline.problems])
        wrote(output)
        samples = [f for f in run.files if f.kind == "samples"]
        if samples and not any(f.readable for f in samples):
            # A page of errors and no figure: written (it says why), but exit 0 would pass a CI step that checks
            # only the code (as plot exits 1 then).
            report_problems(
                [], notes=["no sample file of this run could be read (see the errors): the report holds no data"]
            )
            raise typer.Exit(EXIT_PROBLEMS)
    raise typer.Exit(EXIT_OK)
