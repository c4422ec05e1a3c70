"""``runlog diff RUN_A RUN_B [RUN_C ...]``: runs side by side, per role, with bootstrap intervals."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS, SeveralRunsError, UsageError
from .common import (
    STORAGE_OPTION,
    emit_json,
    handle_errors,
    report_problems,
    use_storage_options,
    write_stdout,
    writing,
    wrote,
)
from .options import Format, Layout, NoCacheKept, Output, Roles, Splits, Steps, format_from_output, json_lines

# The library's defaults (analysis/diff.py), repeated here so that the CLI starts without numpy and polars;
# tests/test_diff.py checks they agree.
DEFAULT_WINDOW = 10
DEFAULT_BOOT = 1000

if TYPE_CHECKING:
    from rich.console import Group

    from ..analysis.diff import Diff, DiffOptions
    from ..storage import StorageOptions


class DiffFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


RUNS = typer.Argument(
    ...,
    help="The runs: the baseline first, then the runs compared with it (directories, files or URLs; a quoted "
    "glob such as 'runs/*' stands for the runs it matches, sorted).",
    show_default=False,
    metavar="RUN_A RUN_B [RUN_C ...]",
)
STRIP: tuple[str, ...] = ()


def diff_command(
    ctx: typer.Context,
    paths: list[str] = RUNS,
    name: list[str] = typer.Option(
        None,
        "--name",
        "-n",
        help="A label for each run, in order (repeatable; default: its path relative to the folder the runs share).",
    ),
    window: int = typer.Option(
        DEFAULT_WINDOW, "--window", "-w", help="Steps of the start, end and best windows (common steps)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap: the same seed prints the same intervals."),
    boot: int = typer.Option(DEFAULT_BOOT, "--boot", help="Bootstrap resamples per interval."),
    ci: float = typer.Option(0.95, "--ci", help="Confidence level of the intervals (and of the onset's z)."),
    split: Splits = None,
    steps: Steps = None,
    role: Roles = None,
    keys: list[str] = typer.Option(None, "--keys", "-k", help="Only scalar keys matching GLOB (repeatable)."),
    text: bool = typer.Option(
        False, "--text", help="Also diversity and format adherence at the start and the end (reads those texts)."
    ),
    findings: bool = typer.Option(
        False, "--findings", help="Also the doctor's findings of each run, matched (reads every text of each run)."
    ),
    spec: str = typer.Option("think-answer-strict", "--spec", help="With --text/--findings: the format spec."),
    fmt: Format[DiffFormat] = DiffFormat.table,
    output: Output = None,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoCacheKept = False,
) -> None:
    """Compare runs with a baseline: did B beat A, for which role, from which step, and is it noise?

    The first run is the baseline. Runs are aligned by split and step and compared on the steps both have
    (a run logged every k steps is compared where both have data; a note says the overlap). Per role: the
    reward and KL at the start, the end (the last --window common steps) and each run's best window, the
    zero-advantage fraction, and the difference to the baseline with a bootstrap interval over prompt groups
    (over samples where no group is known; seeded: --seed, --boot); where both runs have the same prompts at
    the same steps, a paired comparison per prompt (pairs by group id alone, without prompt text to confirm
    them, get no paired verdict: the unpaired one decides); the first step from which the run is stably ahead
    or behind (the doctor's onset rule).
    Also the common scalar keys (--keys), and the differences of the recorded configs. --text and
    --findings add diversity, format adherence and the doctor's findings, which read the texts.

    A quoted glob is expanded in place: runlog diff runs/base 'runs/*' compares the baseline with every other
    run it matches (a match that is no run is left out, with an error).

    Runs with no common split, step or role are said in a note on stderr, and what can still be compared
    is. Exit codes: 0 ok; 1 a run had problems (listed on stderr; the good data was compared); 2 usage
    error, nothing at all in common, or -o FILE cannot be written.

    Examples:

      runlog diff sample_runs/debate_grpo sample_runs/flink_mixed --name native --name flink
      runlog diff sample_runs/debate_grpo sample_runs/flink_mixed --split train --window 5 --role solver
      runlog diff sample_runs/debate_grpo sample_runs/flink_mixed -f json | jq '.roles[] | select(.verdict == "behind")'
    """
    # The question, as parsed: what a kept answer is looked up by (cli.answers).
    asked = {k: v for k, v in locals().items() if k != "ctx"}
    from ..analysis.filters import Filters
    from .answers import answer, question

    with handle_errors():
        _no_image(output, paths)
    fmt = format_from_output(ctx, fmt, output)
    with handle_errors():
        if any(not n.strip() for n in name or []):
            raise UsageError("--name '': a run's label cannot be empty (give each run a name, or leave --name out)")
        storage = use_storage_options(storage_option)
        runs = expand_runs(paths, storage)
        if len(runs.paths) < 2:
            raise UsageError(f"{TWO_RUNS}{runs.gave()}")
        filters = Filters.from_options(split, steps, role)
        # A kept answer is printed as it was (cli.answers), before numpy and polars are imported; not for
        # output to a file or runs on a store.
        keep = output is None and not storage_option and not no_cache
        spec_file = [Path(spec)] if spec and Path(spec).exists() else []  # a custom spec: its stamp in the key
        with answer(question("diff", asked, runs.paths, spec_file) if keep else None):
            from ..analysis.diff import DiffOptions

            options = DiffOptions(
                window=window,
                seed=seed,
                boot=boot,
                ci=ci,
                splits=tuple(filters.splits),
                roles=tuple(filters.roles),
                steps=filters.steps,
                keys=tuple(keys or ()),
                text=text,
                findings=findings,
                format_spec=spec,
            )
            options.check()
            errors = _diff(runs, name, options, fmt, output, layout, storage)
            raise typer.Exit(EXIT_PROBLEMS if errors else EXIT_OK)


def _diff(
    given: Runs,
    name: list[str] | None,
    options: DiffOptions,
    fmt: DiffFormat,
    output: Path | None,
    layout: str | None,
    storage: StorageOptions,
) -> int:
    """The diff of the runs given (globs expanded), printed; the number of error-severity problems reported.
    A run a glob matched that is no run (an empty folder, a folder of runs) is left out and said, as a fleet
    skips it (``summarize 'runs/*'``); a path given as such that cannot be opened is a usage error."""
    from ..analysis.diff import diff_runs

    runs, paths, skipped = open_runs(given, layout, storage, TWO_RUNS, fleet_hint)
    labels, said_twice = run_labels(paths, name or [], storage)
    result = diff_runs(runs, labels, options, locations=paths)
    result.notes[:0] = [*given.notes(paths), *said_twice]

    def problems() -> int:
        errors = report_problems(skipped, group=False)  # each skipped run named on its line
        for label, run in zip(result.names, runs, strict=True):
            errors += report_problems([named(p, label) for p in run.problems])
        return errors

    if not result.compared:
        # The files left out first (a truncated file, a newer schema with its upgrade): they are why a run has
        # nothing to compare. Then every reason, in one line; "layouts differ" is no reason (runs of any
        # layouts compare).
        problems()
        reasons = [n for n in result.notes if not n.startswith("layouts differ")] or result.notes
        reason = "; ".join(reasons) or "nothing in common"
        raise UsageError(f"nothing to compare: {reason}")
    _emit(result, fmt, output)
    say_notes(result.notes, result.warnings)
    return problems()


def say_notes(notes: list[str], warnings: list[str]) -> None:
    """Every note and warning of the diff on stderr, one line each, none cut: they are about the pair (the
    overlap, the windows, the pairing, an infinite mean), which no other command shows
    (``common.report_problems`` cuts at 20 lines, with a pointer to ``runlog inspect``, for files' problems)."""
    from ..textsafe import visible

    lines = [f"note: {n}" for n in notes] + [f"warning: {w}" for w in warnings]
    for line in lines:
        sys.stderr.write(visible(line, keep_newlines=False) + "\n")


TWO_RUNS = "diff needs at least two runs: the baseline first, then the runs to compare with it"
# What matplotlib writes: diff writes tables, and a table under an image's name is no image (the overlays are
# ``plot --diff``'s).
IMAGE_SUFFIXES = {"png", "svg", "svgz", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp", "gif"}


def _no_image(output: Path | None, paths: list[str]) -> None:
    """``-o d.png``: a usage error naming the command that draws the runs over each other (a table written under
    that name, exit 0, read as an image written)."""
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    if output is None or suffix not in IMAGE_SUFFIXES:
        return
    runs = [shlex.quote(p) for p in paths] or ["RUN_A", "RUN_B"]
    drawn = " ".join([runs[0], *(f"--diff {r}" for r in runs[1:] or ["RUN_B"])])
    raise UsageError(
        f"-o {output.name}: diff writes tables (table, json, csv), not images; the runs drawn over each other: "
        f"runlog plot {drawn} -o {shlex.quote(str(output))}"
    )


def plot_fleet_hint(given: list[str], path: str, runs: list[str]) -> str:
    """``fleet_hint`` for ``plot --diff``: the baseline, then ``--diff`` and the quoted glob."""
    return fleet_hint(given, path, runs, command="plot --diff")


def fleet_hint(given: list[str], path: str, runs: list[str], command: str = "diff") -> str:
    """The fix for a path that holds several runs, given to diff (``SeveralRunsError``): each run is a RUN of
    its own, a quoted glob gives them (``runlog diff runs/A 'runs/*'``); the generic hint (``'runs/*' --by
    run``) is summarize's."""
    where = path.rstrip("/") or path
    depths = {r.count("/") + 1 for r in runs}
    if "" in runs or len(depths) != 1:
        return "give each run's folder as a RUN of its own, the baseline first"
    glob = where + "/*" * depths.pop()
    first = given.index(path) == 0 if path in given else False
    others = [p for p in given if p != path]
    baseline = f"{where}/{runs[0]}" if first or not others else others[0]
    if command == "diff":
        example = f"runlog diff {shlex.quote(baseline)} {shlex.quote(glob)}"
    else:
        example = f"runlog plot {shlex.quote(baseline)} --diff {shlex.quote(glob)}"
    return (
        f"{command} takes each run as a RUN of its own: the baseline, then a quoted glob of the runs to compare "
        f"with it ({example})"
    )


def open_runs(
    given: Runs,
    layout: str | None,
    storage: StorageOptions,
    two: str,
    fleet: Callable[[list[str], str, list[str]], str] | None = None,
) -> tuple[list[Any], list[str], list[Any]]:
    """The runs of ``given`` opened: (runs, their paths, the problems of the matches skipped). A run a glob
    matched that is no run (an empty folder, a folder of runs) is left out and said, as a fleet skips it
    (``summarize 'runs/*'``); a path given as such that cannot be opened is a usage error, and so are fewer
    than two runs (``two``: what the command needs). ``fleet`` words the fix for a path given that holds
    several runs (``fleet_hint``: what the command takes), in place of summarize's ``--by run``."""
    from ..formats.base import Problem
    from ..run import open_run

    runs = []
    skipped: list[Problem] = []
    for p in given.paths:
        try:
            runs.append(open_run(p, layout=layout, storage_options=storage))
        except UsageError as exc:
            if p not in given.matched:
                if fleet is not None and isinstance(exc, SeveralRunsError):
                    shown = [r or "." for r in exc.runs]
                    names = ", ".join(shown[:8]) + (f", ... (+{len(shown) - 8})" if len(shown) > 8 else "")
                    where = p.rstrip("/") or p
                    hint = fleet(given.given, p, exc.runs)
                    raise UsageError(f"{where}: holds {len(exc.runs)} runs ({names}): {hint}") from None
                raise
            skipped.append(Problem(p, "unreadable", f"run skipped: {str(exc).removeprefix(f'{p}: ')}"))
    skipped_paths = {x.path for x in skipped}
    paths = [p for p in given.paths if p not in skipped_paths]
    if len(paths) < 2:
        said = "; ".join(f"{x.path}: {x.message}" for x in skipped)
        raise UsageError(f"{two}{given.gave(paths)}" + (f": {said}" if said else ""))
    return runs, paths, skipped


@dataclass
class Runs:
    """The runs a command that compares runs was given, quoted globs expanded (:func:`expand_runs`)."""

    given: list[str]  # as given
    paths: list[str]  # the runs, each glob replaced by its matches
    matched: dict[str, str] = field(default_factory=dict)  # a run a glob gave: that glob
    twice: list[tuple[str, str, str]] = field(default_factory=list)  # matches left out: fleet.SameRun

    def gave(self, paths: list[str] | None = None) -> str:
        """`` ('runs/a*' gives runs/a1)``: what the globs came to, where there are globs ('' otherwise)."""
        if not self.matched:
            return ""
        paths = self.paths if paths is None else paths
        return f" ({' '.join(shlex.quote(p) for p in self.given)} gives {', '.join(paths) or 'no run'})"

    def notes(self, paths: list[str] | None = None) -> list[str]:
        """What the globs decided: the baseline a glob chose (the first of ``paths``, the runs compared), the
        runs a glob reached twice (a link to a run matched or given already)."""
        paths = self.paths if paths is None else paths
        out = []
        if paths and paths[0] in self.matched:
            out.append(
                f"the baseline is {paths[0]}, the first run {shlex.quote(self.matched[paths[0]])} matches "
                "(give the baseline first, then the glob, to choose it)"
            )
        if self.twice:
            said = [f"{a} is {b}" for a, b, _ in self.twice]
            more = f"; ... (+{len(said) - 5})" if len(said) > 5 else ""
            out.append(f"the same run matched twice, compared once: {'; '.join(said[:5])}{more}")
        return out


def expand_runs(paths: list[str], storage: StorageOptions) -> Runs:
    """The runs to compare: ``paths`` with each quoted glob among them (``'runs/*'``) replaced by the runs it
    matches, in place and sorted (``fleet.expand_globs``: a run given by a path of its own, the baseline
    before ``'runs/*'``, is not matched again). Without a wildcard in any path, nothing is looked up."""
    if not any(ch in p for p in paths for ch in "*?["):
        return Runs(list(paths), list(paths))
    from ..fleet import expand_globs

    runs, matched, twice = expand_globs(paths, storage)
    return Runs(list(paths), runs, matched, twice)


def run_labels(paths: list[str], names: list[str], storage: StorageOptions) -> tuple[list[str], list[str]]:
    """Each run's label, and notes. A run is labelled by the ``--name`` given, else by its location relative to
    the folder the runs share, as ``summarize`` of a fleet names it (``fleet.run_names``): manifest names
    repeat across the seeds of one config (``same``, ``same#2`` said nothing of which folder is which). A run
    given twice (a link to it, another spelling, one of its files) is said: it is compared with itself."""
    from ..fleet import distinct_runs, run_names

    labels = [*names, *run_names(paths)[len(names) :]]
    _, same = distinct_runs(paths, storage)
    notes = [
        f"{a} {how} {b}: the same run, compared with {'itself' if how == 'is' else 'a part of itself'}"
        for a, b, how in same
    ]
    return labels, notes


def named(problem: Any, label: str) -> Any:
    """A run's problem with the run's label before its path: several runs are reported together."""
    import dataclasses

    return dataclasses.replace(problem, path=f"{label}: {problem.path}")


def _emit(d: Diff, fmt: DiffFormat, output: Path | None) -> None:
    if fmt == DiffFormat.json:
        if output is None:
            emit_json(d.as_dict())
        else:
            import json

            indent = None if json_lines(output) else 2  # a .jsonl file: the diff is its one line
            with writing(output):
                output.write_text(
                    json.dumps(d.as_dict(), indent=indent, allow_nan=False, default=str) + "\n", encoding="utf-8"
                )
            wrote(output)
        return
    if fmt == DiffFormat.csv:
        from .._lazy import pl

        parts = [df.select(pl.lit(name).alias("section"), pl.all()) for name, df in d.frames().items() if df.height]
        text = pl.concat(parts, how="diagonal_relaxed").write_csv() if parts else "section\n"
        if output is None:
            write_stdout(text)
        else:
            with writing(output):
                output.write_text(text, encoding="utf-8")
            wrote(output)
        return
    from .output import print_out

    print_out(render_diff(d), output)


def render_diff(d: Diff) -> Group:
    """The comparison as tables (never cropped: ``output.Sheet`` folds what does not fit)."""
    from rich.console import Group
    from rich.text import Text

    from .._lazy import pl
    from ..textsafe import visible
    from .output import render_tables

    opts = d.options
    head = Text()
    head.append("diff ", style="bold")
    head.append("baseline ", style="dim")
    head.append(visible(d.names[0], keep_newlines=False), style="bold cyan")
    head.append("  against ", style="dim")
    head.append(", ".join(visible(n, keep_newlines=False) for n in d.names[1:]), style="bold")
    head.append(
        f"  (windows of {opts.window} common steps; {opts.ci:.0%} bootstrap intervals, {opts.boot} resamples, "
        f"seed {opts.seed})",
        style="dim",
    )
    parts: list[Any] = [head]
    sections = [
        (
            d.overlap,
            "Runs, and the steps each shares with the baseline",
            ["run", "split"],
            ["layout", "steps", "common_steps", "common"],
        ),
        (
            d.roles,
            "Per role: reward over the end window against the baseline; stably ahead or behind from step",
            ["split", "role", "run"],
            [
                "common_steps",
                "reward_end_baseline",
                "reward_end",
                "diff",
                "ci_low",
                "ci_high",
                "p_value",
                "verdict",
                "ahead_from",
                "behind_from",
                "paired_diff",
                "paired_ci_low",
                "paired_ci_high",
                "prompts",
                "paired_by_id",
            ],
        ),
        (
            d.points,
            "Reward, KL and zero_adv_frac at the start, the end and the best window (mean over samples; "
            "zero_adv_frac over prompt groups)",
            ["split", "role", "metric", "point", "run"],
            [
                "baseline_steps",
                "steps",
                "baseline",
                "value",
                "diff",
                "ci_low",
                "ci_high",
                "p_value",
                "verdict",
                "baseline_n",
                "n",
                "baseline_units",
                "units",
            ],
        ),
        (
            d.paired,
            "Paired per prompt (same prompt, same step; end window): the run's mean reward minus the baseline's "
            "(by_id: pairs by group id alone, no prompt text to confirm them: no verdict)",
            ["split", "role", "run"],
            [
                "steps",
                "prompts",
                "by_id",
                "wins",
                "losses",
                "ties",
                "mean_diff",
                "ci_low",
                "ci_high",
                "p_value",
                "verdict",
            ],
        ),
    ]
    if d.text is not None:
        sections.append(
            (
                d.text.with_columns(pl.col("role").fill_null("-")),
                "Texts: diversity within prompt groups (per role; -: the samples' texts) and format adherence, "
                "side by side",
                ["split", "role", "metric", "point", "run"],
                ["steps", "baseline", "value", "diff"],
            )
        )
    if d.findings is not None:
        sections.append(
            (
                d.findings.with_columns(pl.col("role").fill_null("-")),
                "The doctor's findings, matched by kind, role and subject (role -: not of one role)",
                ["kind", "role", "subject", "run"],
                [
                    "status",
                    "severity_baseline",
                    "severity_run",
                    "onset_baseline",
                    "onset_run",
                    "message",
                ],
            )
        )
    sections += [
        (
            d.scalars,
            "Scalars (mean of the per-step values; intervals over steps)",
            ["key", "point", "run"],
            ["steps", "baseline", "value", "diff", "ci_low", "ci_high", "p_value", "verdict"],
        ),
        (d.config, "Config: the keys that differ", ["key", "run"], ["config_baseline", "config_run"]),
    ]
    for frame, title, keys, cols in sections:
        if frame.height:
            parts.append(render_tables(frame, [(title, cols)], keys, STRIP))
    return Group(*parts)
