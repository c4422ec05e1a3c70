"""The options several commands share, each declared once: one spelling, one help text, one behaviour.

A command names them as annotations (``layout: Layout = None``); typer copies the declaration for each
command. The value grammar behind them lives in the library: ``--steps`` is ``analysis.filters.StepRange``
everywhere (``N``, ``A:B``, ``A:``, ``:B``, comma lists), ``--layout`` a name of ``runlog.formats``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..analysis.filters import STEPS_SYNTAX, StepRange
from ..errors import UsageError
from ..probe_cache import SWITCH_VAR
from .common import OutputError, check_writable, fail

# --layout ---------------------------------------------------------------------------------------------------

LAYOUT_HELP = "Force a layout instead of detecting it (names: docs/format.md)."
Layout = Annotated[str | None, typer.Option("--layout", metavar="LAYOUT", help=LAYOUT_HELP)]

# --by ---------------------------------------------------------------------------------------------------------


def by_keys(value: list[str] | None) -> list[str] | None:
    """``--by role,step`` as ``--by role --by step``: the keys are words of a fixed vocabulary, never with a
    comma, and a comma list is what people type first."""
    if not value:
        return value
    keys = [k.strip() for v in value for k in v.split(",") if k.strip()]
    if not keys:
        raise fail(f"--by {','.join(value)!r}: no key given (e.g. --by role,step)")
    return keys


# --no-cache -------------------------------------------------------------------------------------------------

# What each command keeps differs, and its help names only that: every command probes files (the probe cache);
# those that summarise rewards store partials (doctor, plot, report, watch, upload-wandb); only summarize and diff
# keep whole answers (``answers.answer``). ``NoCache`` is the middle one; ``NoCacheKept`` and ``NoProbeCache`` the
# others.
NO_CACHE_HELP = (
    "Read every file again: no probe cache, no stored partials (as RUNLOG_CACHE=off); nothing cached is written."
)
NO_CACHE_KEPT_HELP = (
    "Read every file again: no probe cache, no stored partials, no kept answer (as RUNLOG_CACHE=off); nothing "
    "cached is written."
)
NO_PROBE_CACHE_HELP = "Read every file again: no probe cache (as RUNLOG_CACHE=off); nothing cached is written."


def _no_cache(value: bool) -> bool:
    """The command line's switch for the whole process (the library reads ``RUNLOG_CACHE``; docs/index.md)."""
    if value:
        os.environ[SWITCH_VAR] = "off"
    return value


NoCache = Annotated[bool, typer.Option("--no-cache", help=NO_CACHE_HELP, callback=_no_cache)]
NoCacheKept = Annotated[bool, typer.Option("--no-cache", help=NO_CACHE_KEPT_HELP, callback=_no_cache)]
NoProbeCache = Annotated[bool, typer.Option("--no-cache", help=NO_PROBE_CACHE_HELP, callback=_no_cache)]

# --format ---------------------------------------------------------------------------------------------------

# Each command lists the formats it writes (its own Enum), under the same spelling and help.
FormatT = TypeVar("FormatT", bound=Enum)
Format = Annotated[FormatT, typer.Option("--format", "-f", help="Output format.")]

# --output ---------------------------------------------------------------------------------------------------


def _output_folder(value: Path | None) -> Path | None:
    """``-o FILE`` in a folder that does not exist is a usage error before any work, not a failure after.
    ``-o -`` is stdout, as for most command-line tools (it wrote a file named ``-``)."""
    if value is not None and str(value) == "-":
        return None
    return _checked_file(value)


def _product_file(value: Path | None) -> Path | None:
    """``-o FILE`` of a command whose product is a file (a report, an image): checked as ``_output_folder``;
    ``-o -`` is refused (it wrote a file named ``-``)."""
    if value is not None and str(value) == "-":
        raise fail("-o -: this command writes a file, not to stdout; give the file's name")
    return _checked_file(value)


def _checked_file(value: Path | None) -> Path | None:
    """``-o FILE`` that cannot be written is said as the command line is read, before any work (a report's
    5-8 s were spent, then ``cannot write``): in the same words as a write that fails (``writing``)."""
    if value is not None and not value.parent.is_dir():
        if value.parent.exists():
            raise fail(f"-o {value}: {value.parent} is a file, not a folder")
        raise fail(f"-o {value}: folder {value.parent} does not exist")
    if value is not None and value.is_dir():
        raise fail(f"-o {value}: a folder; give a file name (for example {value / 'out.txt'})")
    if value is not None:
        try:
            check_writable(value)
        except OutputError as exc:
            raise fail(str(exc), exc.exit_code) from None
    return value


OUTPUT_HELP = "Write to FILE instead of stdout (the format from its suffix when --format is not given)."
_SUFFIX_FORMATS = {"md": "markdown", "htm": "html", "jsonl": "json", "ndjson": "json"}
# Suffixes that name a data format: a command that cannot write it is told so, rather than writing its table
# under that name (a "d.parquet" that is no Parquet file). Other suffixes (.txt, .log, none) keep the default.
_DATA_SUFFIXES = {"csv", "json", "jsonl", "ndjson", "parquet", "html", "htm", "md", "markdown"}
_DATA_SUFFIXES |= {"pdf", "png", "svg", "jpg", "jpeg", "xlsx", "xls", "tsv", "arrow", "feather", "ipc"}
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def json_lines(output: Path | None) -> bool:
    """``-o FILE.jsonl`` (``.ndjson``) with JSON: one record per line, not one array."""
    return output is not None and output.suffix.lower() in JSON_LINES_SUFFIXES


def format_from_output(ctx: typer.Context, fmt: FormatT, output: Path | None, param: str = "fmt") -> FormatT:
    """``-o FILE.csv`` (``.json``, ``.jsonl``, ``.parquet``, ``.html``, ``.md``) without ``--format``: the format its
    suffix names, where the command writes it (as ``plot`` picks PNG or SVG); a data suffix the command cannot
    write is a usage error (a table written under a ``.parquet`` name is no Parquet file). An explicit
    ``--format`` is kept, and so is a suffix that names no format (``.txt``)."""
    source = ctx.get_parameter_source(param)
    if output is None or source is None:
        return fmt
    suffix = output.suffix.lower().lstrip(".")
    if source.name != "DEFAULT":
        named = _SUFFIX_FORMATS.get(suffix, suffix)
        if suffix in _DATA_SUFFIXES and named != fmt.value:
            # Kept as asked, but said: a file named .csv that holds JSON is opened as CSV by the next tool.
            sys.stderr.write(
                f"note: -o {output}: writing {fmt.value} as --format asked, not the .{suffix} its name says\n"
            )
        return fmt
    try:
        return type(fmt)(_SUFFIX_FORMATS.get(suffix, suffix))
    except ValueError:
        if suffix in _DATA_SUFFIXES:
            names = ", ".join(f.value for f in type(fmt))
            raise fail(
                f"-o {output}: this command does not write .{suffix} (it writes {names}); "
                f"give --format to write one of those under that name"
            ) from None
        return fmt


Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", help=OUTPUT_HELP, callback=_output_folder),
]


def output_file(default: Any, help: str) -> Any:
    """``-o FILE`` of a command whose product is the file (a report, an image): the same spelling and check
    as :data:`Output`, with the command's default (``...``: required) and what the file is."""
    return typer.Option(
        default, "--output", "-o", metavar="FILE", help=help, callback=_product_file, show_default=default is not ...
    )


# The doctor's thresholds (doctor, report, watch; names and defaults: docs/doctor.md) ----------------------------

THRESHOLD_HELP = "Override a doctor threshold: NAME=VALUE (repeatable; names in docs/doctor.md)."
THRESHOLDS_FILE_HELP = "A TOML file of doctor thresholds (top level or [doctor])."
Thresholds = Annotated[list[str] | None, typer.Option("--set", metavar="NAME=VALUE", help=THRESHOLD_HELP)]
ThresholdsFile = Annotated[Path | None, typer.Option("--config", metavar="FILE", help=THRESHOLDS_FILE_HELP)]


# Row filters (meaning: analysis/filters.py; checking a value against the run: analysis/check.py) -------------

STEPS_HELP = f"Only these steps: {STEPS_SYNTAX}."


def steps_checked(*words: str) -> Callable[[str | None], str | None]:
    """A ``--steps`` callback: the text is parsed by ``StepRange`` (the grammar of every command) as the
    command line is read, so that every command rejects the same texts with the same one-line error;
    ``words`` are a command's own extra values (render-trajectory's ``last`` and ``all``)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in words:
            try:
                StepRange.parse(value)
            except UsageError as exc:
                also = f"; or {' or '.join(words)}" if words and "expected" in str(exc) else ""
                raise fail(f"{exc}{also}", exc.exit_code) from None
        return value

    return check


Steps = Annotated[str | None, typer.Option("--steps", metavar="STEPS", help=STEPS_HELP, callback=steps_checked())]

SPLITS_HELP = "Only these splits (repeatable)."
SPLIT_HELP = "The split (default: train, or the only split)."
ROLES_HELP = "Only these roles (repeatable)."
Splits = Annotated[list[str] | None, typer.Option("--split", metavar="SPLIT", help=SPLITS_HELP)]
Split = Annotated[str | None, typer.Option("--split", metavar="SPLIT", help=SPLIT_HELP)]
# doctor, plot, report, watch: the split a run is diagnosed on (``series.default_split``).
TRAINING_SPLIT_HELP = (
    "The split (default: train, else the training split: the first by name of the splits not named like an "
    "evaluation, as docs/doctor.md says)."
)
TrainingSplit = Annotated[str | None, typer.Option("--split", metavar="SPLIT", help=TRAINING_SPLIT_HELP)]
Roles = Annotated[list[str] | None, typer.Option("--role", metavar="ROLE", help=ROLES_HELP)]
