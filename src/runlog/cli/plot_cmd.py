"""``runlog plot DIR --what ... -o FILE``: one figure of a run, as PNG, SVG or PDF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

from ..analysis.filters import Filters
from ..errors import EXIT_OK, EXIT_PROBLEMS, UsageError
from .common import RUN_PATH, STORAGE_OPTION, fail, handle_errors, report_problems, use_storage_options, writing, wrote
from .options import STEPS_SYNTAX, Layout, NoCache, TrainingSplit, output_file, steps_checked

if TYPE_CHECKING:
    from ..run import Run
    from ..storage import StorageOptions

WHAT_HELP = "reward, kl, components, diversity, format, scalars or hist."
DEFAULT_SPEC = "think-answer-strict"


def _image_file(value: Path | None) -> Path | None:
    """``-o FILE`` checked as every command's product file (``options.output_file``), a folder told to give an
    image's name: the example of a name it gave (``out.txt``) was one that plot refuses."""
    if value is not None and value.is_dir():
        raise fail(f"-o {value}: a folder; give an image file name (for example {value / 'plot.png'})")
    callback = output_file(..., "").callback
    return callback(value) if callback is not None else value


def plot_command(
    path: str = RUN_PATH,
    what: str = typer.Option("reward", "--what", help=WHAT_HELP),
    output: Path = typer.Option(
        ..., "--output", "-o", metavar="FILE", help="Image file: .png, .svg or .pdf.", callback=_image_file
    ),
    by: str = typer.Option(
        "role", "--by", "-b", help="role: one line per role; none: pooled (--what reward, kl or diversity)."
    ),
    keys: list[str] = typer.Option(None, "--keys", "-k", help="With --what scalars: only keys matching GLOB."),
    window: int = typer.Option(
        None,
        "--window",
        "-w",
        help="Moving average over the last N logged steps, as summarize --window (default: a tenth of the run's "
        "steps, at most 25), except at a step with no valid value, where the line breaks (summarize carries the "
        "window's mean there). A positive number; not with --what hist.",
    ),
    steps: str | None = typer.Option(
        None,
        "--steps",
        metavar="STEPS",
        help=f"With --what hist: the steps to show: {STEPS_SYNTAX}.",
        callback=steps_checked(),
    ),
    split: TrainingSplit = None,
    spec: str = typer.Option(DEFAULT_SPEC, "--spec", help="With --what format: the format spec."),
    layout: Layout = None,
    diff: list[str] = typer.Option(
        None, "--diff", metavar="RUN", help="Overlay RUN on this run, the baseline (repeatable; --what reward or kl)."
    ),
    name: list[str] = typer.Option(
        None, "--name", "-n", help="With --diff: a label for each run, this run first (repeatable), as diff --name."
    ),
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCache = False,
) -> None:
    """Plot rewards, KL, reward components, diversity, format adherence, scalars or reward histograms.

    Rewards and KL per role: the moving average over the raw line, with a band of plus or minus the standard
    deviation of the per-step means in the same window (not the samples' SD; no band where the window holds
    one step); KL in log scale when it spans decades (a value <= 0 is in the average, its point is not drawn,
    and the panel says how many). A line breaks where steps are missing (the gaps runlog inspect lists, by the same
    rule) and at a step logged with no rows, where the line could have had a point (a role logged every other
    step is not cut at a step it is never logged at); a scalar key's line breaks where its steps are further apart
    than its own stride, and the panel names the steps whose records its file lost (inspect's rule) and says where
    its file has records without it (not judged lost); the panel names them (a step of no rows as such,
    not as missing); a role logged less often than the others is drawn at its own spacing, and its line breaks at
    the steps it sat out and where it has no valid value, which the panel names per role. Values not drawn (NaN,
    +-inf, and finite values beyond +-1e300, too large for an axis) are counted in the panel's note, under the
    panel. Where a run has more roles than colours, a role's dash or marker tells it apart. A legend of more than 8
    entries is drawn under the panel, in columns; past 12 rows its last entry says how many more it does not list
    (+N more). Histograms:
    per-role rewards at the --steps given (NaN, +-inf and null rewards counted in the panel's note; a step logged
    with no rows says so in its panel). Samples of several layouts or tasks (loose files side by side in a
    folder) are pooled as one run's: the first panel's note says which, as stderr does.
    With --diff: the runs overlaid, one panel per role, one colour per run, this run (the baseline) dashed,
    each with the confidence band of its per-step mean, on the steps each shares with the baseline (--by and
    --window do not apply: an error); --name labels the runs in the legend and the title (this run first), as
    runlog diff --name does (runs without one: by their paths relative to the folder they share); a run none of
    whose files could be read is not drawn, the others each on its own steps (exit 1).

    Needs matplotlib (in runlog's folder: pip install -e '.[plot]'). The image type follows the -o suffix; one
    line on stderr says where it wrote.

    Exit codes: 0 written, also when some files could not be read (listed on stderr); 1 written, but no file
    the figure draws from could be read (no sample file; with --what scalars, no scalars file, or none that gives
    a scalar metric; with --diff, of one of the runs, or a run a glob matched was skipped): the image says so;
    2 usage error (unknown --what, unknown suffix, a --split, --steps or --keys that matches nothing in the run;
    with --diff, nothing to draw: no compared run has values in the split; -o FILE cannot be written: its folder
    does not exist or takes no new files, no permission).

    Examples:

      runlog plot sample_runs/debate_grpo --what kl --window 5 -o kl.svg
      runlog plot sample_runs/debate_grpo --what hist --steps 0,16,31 -o hist.pdf
      runlog plot sample_runs/jaxarc --what scalars --keys '*loss' -o losses.png
    """
    from ..plots import make_figure, save_figure, say_layouts
    from ..plots.figures import glyphs_noted, missing_glyphs
    from ..run import open_run

    with handle_errors(), glyphs_noted():
        filters = Filters.from_options(split, steps)
        if not filters.steps.unbounded and what != "hist":
            raise UsageError(f"--steps goes with --what hist (--what {what} shows every step)")
        if filters.splits and what == "scalars":
            # Scalar metrics have no split (a split is in their names): drawing every key under --split eval said
            # nothing of the option it had checked.
            raise UsageError(
                "--split does not apply to --what scalars (scalar metrics have no split): "
                "pick keys by name, e.g. --keys 'eval/*'"
            )
        if window is not None and window < 1:
            # Checked whatever the run: a run of one step (drawn as distributions) took --window -3 and exited 0.
            raise UsageError(f"--window {window}: expected a positive number of steps")
        if window is not None and what == "hist":
            raise UsageError("--window goes with a line plot (--what hist draws histograms: no moving average)")
        if keys and what != "scalars":
            raise UsageError(f"--keys goes with --what scalars (not --what {what})")
        if spec != DEFAULT_SPEC and what != "format":
            raise UsageError(f"--spec goes with --what format (not --what {what})")
        if output.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise UsageError(f"-o {output}: unknown image type {output.suffix or '(none)'!r}; use .png, .svg or .pdf")
        if name and not diff:
            raise UsageError("--name labels the runs of --diff (give --diff RUN too)")
        if diff and by != "role":
            # The overlay is per role by design: an image drawn per role for --by none read as the pooled one.
            raise UsageError(f"--by {by} does not apply with --diff (the overlay draws one panel per role)")
        if diff and window is not None:
            # The overlay draws per-step means with their confidence bands; a smoothed one was asked for.
            raise UsageError(
                f"--window {window} does not apply with --diff (the overlay draws per-step means with their "
                "confidence bands, not a moving average)"
            )
        storage = use_storage_options(storage_option)
        missing_glyphs()  # of figures drawn before (a caller's): not this one's
        if diff:
            written, none_read = _plot_diff([path, *diff], name or [], what, filters, layout, storage, output)
            wrote(written)
            raise typer.Exit(EXIT_PROBLEMS if none_read else EXIT_OK)
        run = open_run(path, layout=layout, storage_options=storage)
        hist_steps = _checked(run, filters, keys or (), spec)
        series = hist_steps.series
        fig = make_figure(series, what, by=by, keys=keys or (), window=window, steps=hist_steps.steps)
        # The layouts and tasks the figure pools as one run's, on the figure and on stderr (as summarize says it).
        pooled = None if what == "scalars" else say_layouts(fig, series)
        with writing(output):
            written = save_figure(fig, output)
        notes = ([] if what == "scalars" else list(series.scope_notes)) + list(series.notes)
        # A spec's roles silent in the split beside roles that speak (``series_roles_note``, worded for doctor's and
        # the report's --set format_spec): said under plot's own option.
        notes = [n.replace(f"--set format_spec={spec}: ", f"--spec {spec}: ", 1) for n in notes]
        notes += [pooled] if pooled is not None else []
        if unread := _none_read(run, what):
            notes.append(unread)
        if glyphs := missing_glyphs():  # matplotlib's warning, two lines per character and drawing: said once
            notes.append(glyphs)
        # Every problem, warnings too, as summarize says them: a warning can change what a figure counts (a copied
        # shard: its rows count twice in its step's line and histogram).
        report_problems(run.problems, notes=notes)
        wrote(written)
    # Exit 1 where nothing could be read: the image of the notes alone passed a CI step as a plot of the run.
    raise typer.Exit(EXIT_PROBLEMS if unread else EXIT_OK)


NO_DATA = ": the figure holds no data"


def _none_read(run: Run, what: str) -> str | None:
    """The note, where the figure holds no data because nothing it draws from could be read (exit 1): the run has
    sample files and none of them could be read (each is named by an error); with ``--what scalars``, the run has
    no scalars file, none could be read, or they gave no scalar metric (every line broken: each is named by an
    error); a run without sample files (a scalars-only run under ``--what reward``) holds nothing the figure draws
    from either, as a run without scalars under ``--what scalars``. Else None."""
    if what != "scalars":
        mine = [f for f in run.files if f.kind == "samples"]
        if not mine:
            return f"this run has no per-sample data (only scalar metrics): try --what scalars (not {what})" + NO_DATA
        if not any(f.readable for f in mine):
            return "no sample file of this run could be read (see the errors)" + NO_DATA
        return None
    from ..plots import scalar_keys

    mine = [f for f in run.files if f.kind == "scalars"]
    if not mine:
        other = "; try --what reward" if any(f.kind == "samples" for f in run.files) else ""
        return f"this run has no scalar metrics (no scalars.p*.jsonl, AReaL stats or JaxARC batch file){NO_DATA}{other}"
    if not any(f.readable for f in mine):
        return "no scalars file of this run could be read (see the errors)" + NO_DATA
    if not scalar_keys(run):
        return "no scalar metric was read from this run's scalars file(s) (a line not read is an error)" + NO_DATA
    return None


def _plot_diff(
    paths: list[str],
    names: list[str],
    what: str,
    filters: Filters,
    layout: str | None,
    storage: StorageOptions,
    output: Path,
) -> tuple[Path, bool]:
    """``--diff``: the overlay of the runs (the first is the baseline), per role, of one split; ``names``
    label the first runs (the others their locations), as ``diff --name``. Nothing to draw (no compared run
    has values in the split) is a usage error, as ``diff`` with nothing in common: an image of the notes alone
    read as a plot of the data. Returns the file written and whether a run is missing from the overlay: a run's
    sample files could none be read, or a run a glob matched was skipped (exit 1, as for one run, as ``diff``)."""
    from ..analysis.diff import DiffOptions, diff_runs
    from ..plots import save_figure
    from ..plots.diff import diff_figure, drawn, why_empty
    from .diff_cmd import expand_runs, named, open_runs, plot_fleet_hint, run_labels, say_notes

    if what not in ("reward", "kl"):
        raise UsageError(f"--diff draws --what reward or kl (not --what {what})")
    given = expand_runs(paths, storage)  # a quoted glob gives its runs, as for ``diff``
    runs, paths, skipped = open_runs(given, layout, storage, "--diff needs at least two runs", plot_fleet_hint)
    labels, said = run_labels(paths, names, storage)
    said = [*given.notes(paths), *said]
    options = DiffOptions(splits=tuple(filters.splits), series_only=True)
    result = diff_runs(runs, labels, options=options, locations=paths)
    result.notes[:0] = said
    split = filters.splits[0] if filters.splits else None
    # A run none of whose files could be read shares nothing with the others: they are drawn alone, each on its
    # own steps, and the command exits 1 (as for one run), where "nothing to draw" (exit 2, no image) blamed the
    # options for a file's problem.
    read = [i for i, r in enumerate(runs) if not _none_read(r, what)]
    alone = len(read) < len(runs) and drawn(result, what, split)[1].height == 0
    if alone and len(read) >= 2:
        # Runs that were read and share no step are "nothing to draw" (exit 2) whatever an unreadable one beside
        # them: drawn each on its own steps, their image passed as an overlay (exit 1).
        ours = diff_runs([runs[i] for i in read], [labels[i] for i in read], options, [paths[i] for i in read])
        if drawn(ours, what, split)[1].height == 0:
            raise UsageError(f"nothing to draw: {'; '.join(why_empty(ours, what, split))}")
    if drawn(result, what, split, alone=alone)[1].height == 0:
        # Why: runs without KL said as such (not "nothing in common": they may share every step and role).
        raise UsageError(f"nothing to draw: {'; '.join(why_empty(result, what, split))}")
    figure = diff_figure(result, what, split, alone=alone)
    with writing(output):
        written = save_figure(figure, output)
    say_notes(result.notes, result.warnings)  # every one: they are about the runs compared, which inspect cannot show
    from ..plots.figures import missing_glyphs

    if glyphs := missing_glyphs():
        report_problems([], notes=[glyphs])
    # As runlog diff says them: each skipped run on its line, then each run's problems (warnings too: a copied
    # shard counts twice in its run's line), each line naming its run.
    skipped_runs = report_problems(skipped, group=False)
    for label, r in zip(result.names, runs, strict=True):
        report_problems([named(p, label) for p in r.problems])
    # A glob's match skipped (an empty folder, a folder of runs) is a run missing from the overlay: exit 1, as
    # ``diff`` and a fleet say it.
    return written, bool(skipped_runs) or any(_none_read(r, what) for r in runs)


class _Checked(NamedTuple):
    series: Any  # RunSeries
    steps: list[int]


def _checked(run: Run, filters: Filters, keys: Sequence[str], spec: str) -> _Checked:
    """Check ``--split``, ``--steps`` and ``--keys`` against the run. Returns the series of the split shown
    (the split given, or the default one) and the steps ``--steps`` selects in it, for the histograms."""
    from ..analysis.check import check_filters, sample_values
    from ..plots import RunSeries, check_scalar_keys

    if keys:
        # The names the figure draws (aliases resolved: grad/global_norm, as diff and upload-wandb name it) or
        # the names a trainer logged them under (grad_global_norm): checked as the figure selects them.
        check_scalar_keys(run, keys)
    if filters.splits:
        check_filters(run, Filters(splits=filters.splits))
    series = RunSeries(run, split=filters.splits[0] if filters.splits else None, format_spec=spec)
    if filters.steps.unbounded:
        return _Checked(series, [])
    filters = Filters(splits=(series.split,) if series.split else (), steps=filters.steps)
    values = sample_values(run, filters)
    # A step whose sample file is unreadable is in the run: its panel names the file (the problem is listed
    # too), where "this run has steps 0..29" read as if the step were never logged.
    for f in run.files:
        if f.kind == "samples" and not f.readable and f.split is not None:
            values.steps.setdefault(f.split, set()).update(f.all_steps())
    check_filters(values, filters)
    known = set().union(*[v for s, v in values.steps.items() if not filters.splits or s in filters.splits])
    return _Checked(series, filters.steps.select(known))
