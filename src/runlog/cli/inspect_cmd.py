"""``runlog inspect DIR``: layouts, schema versions, rows, steps and gaps, roles, problems."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_OK, EXIT_PROBLEMS
from ..textsafe import visible
from .common import RUN_PATH, STORAGE_OPTION, emit_json, handle_errors, use_storage_options
from .common import human_bytes as _bytes
from .options import Format, Layout, NoProbeCache
from .output import Col, Sheet, print_out

if TYPE_CHECKING:
    from rich.console import Group
    from rich.text import Text

    from ..analysis.inspect import KeyCadence, RunInspection

MAX_PROBLEMS_SHOWN = 40


class InspectFormat(str, Enum):
    table = "table"
    json = "json"


def inspect_command(
    path: str = RUN_PATH,
    fmt: Format[InspectFormat] = InspectFormat.table,
    layout: Layout = None,
    storage_option: list[str] = STORAGE_OPTION,
    no_cache: NoProbeCache = False,
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    deep: bool = typer.Option(
        False,
        "--deep",
        help="Also read the numeric and key columns (never text): NaN per role, and corrupt pages footers cannot tell.",
    ),
) -> None:
    """Show what is in a run and whether it is valid.

    Reads only Parquet footers and JSONL lines; with --deep also the numeric and key columns, never the text.

    Exit codes: 0 clean (warnings allowed); 1 problems found (with --strict, warnings too); 2 usage error.

    Examples:

      runlog inspect sample_runs/debate_grpo
      runlog inspect sample_runs/flink_mixed --deep
      runlog inspect sample_runs/damaged --format json  # exit 1: damaged files
    """
    from ..analysis.inspect import inspect_run
    from ..run import open_run

    with handle_errors():
        storage = use_storage_options(storage_option)
        run = open_run(path, layout=layout, storage_options=storage)
        report = inspect_run(run, deep=deep)
        if fmt == InspectFormat.json:
            emit_json(report.as_dict())
        else:
            print_out(render_report(report, strict=strict))
    failing = report.errors + (report.warnings if strict else 0)
    raise typer.Exit(EXIT_PROBLEMS if failing else EXIT_OK)


def _t(s: Any) -> Text:
    """Data (file names, messages) as literal text: no markup, no control sequences."""
    from rich.text import Text

    return Text(visible(str(s), keep_newlines=False))


def _ranges(gaps: list[list[int]], limit: int = 6) -> str:
    parts = [f"{a}" if a == b else f"{a}..{b}" if a < 0 or b < 0 else f"{a}-{b}" for a, b in gaps[:limit]]  # -80..-70
    if len(gaps) > limit:
        parts.append(f"... (+{len(gaps) - limit})")
    return ", ".join(parts)


def _key_gaps(cadences: list[KeyCadence], limit: int = 3) -> str:
    """Each stride's missed steps and the keys that missed them: ``50 (loss, kl every 10); 75 (eval/acc every 25)``."""
    parts = []
    for c in cadences[:limit]:
        names = ", ".join(visible(k, keep_newlines=False) for k in c.keys[:2]) + (
            f" +{len(c.keys) - 2} keys" if len(c.keys) > 2 else ""
        )
        parts.append(f"{_ranges(c.gaps, 4)} ({names} every {c.stride})")
    if len(cadences) > limit:
        parts.append(f"... (+{len(cadences) - limit} more: --format json)")
    return "; ".join(parts)


def render_report(r: RunInspection, strict: bool = False) -> Group:
    """The report as text; its last line says whether the run passes (with ``strict``, warnings fail it)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    parts: list[Any] = []
    head = Text()
    head.append("run ", style="bold")
    head.append(visible(r.name, keep_newlines=False), style="bold cyan")
    head.append(f"  {visible(r.run, keep_newlines=False)}\n", style="dim")
    head.append(f"{len(r.files)} files, {_bytes(r.bytes)}, {r.rows:,} readable rows")
    kinds = r.rows_by_kind
    if kinds:
        head.append(" (" + ", ".join(f"{v:,} {k}" for k, v in sorted(kinds.items())) + ")")
    if r.roles:
        head.append("\nroles: ")
        head.append(", ".join(visible(x, keep_newlines=False) for x in r.roles), style="magenta")
        if not r.roles_complete:
            head.append(" (from run.json; the data may hold others: --deep reads them)", style="dim")
    elif not r.roles_complete:
        read = any(f.get("kind") == "manifest" for f in r.files)
        why = "run.json lists none" if read else "no run.json read"
        head.append(f"\nroles: not known from footers ({why}): --deep reads them", style="dim")
    if r.exceptions is None:
        head.append(
            "\nexceptions: not known (a file's footer has no statistics of its exception column, a text column "
            "inspect never reads: runlog summarize reads it)",
            style="dim",
        )
    elif r.exceptions:
        n = r.exceptions
        head.append(f"\nexceptions: {n:,} {'trajectory' if n == 1 else 'trajectories'} failed", style="yellow")
    if r.writers is not None:
        head.append("\nwriter: ")
        style = None if r.writers["finished"] else "yellow"
        head.append(visible(r.writers["summary"], keep_newlines=False), style=style)
    parts.append(Panel(head, expand=False))

    columns = [
        Col("layout", "left", key=True),
        Col("version", "right", key=True),
        Col("kind", "left", key=True),
        Col("files"),
        Col("rows"),
        Col("bytes"),
    ]
    from ..analysis.inspect import version_label

    rows = []
    groups: dict[tuple, list[int]] = {}
    for f in r.files:
        version = version_label(f["schema_version"], f["readable"])
        g = groups.setdefault((f["layout"], version, f["kind"]), [0, 0, 0])
        g[0] += 1
        g[1] += (f["rows"] or 0) if f["readable"] else 0
        g[2] += f["bytes"]
    for (layout, version, kind), (n, rows_, size) in groups.items():
        style = "red" if not version[:1].isdigit() or "skipped" in version else ""
        rows.append(
            [_t(layout), Text(version, style=style), Text(kind), *map(Text, (f"{n:,}", f"{rows_:,}", _bytes(size)))]
        )
    parts.append(Sheet("Layouts and schema versions", columns, rows))

    if r.steps:
        parts += _splits(r)

    sc = r.scalars
    if sc.records:
        weights = f" (and {sc.weights:,} __count weight{'s' if sc.weights != 1 else ''})" if sc.weights else ""
        records = f"{sc.records:,} record{'s' if sc.records != 1 else ''}"
        line = Text(f"scalars: {records}, {sc.keys:,} key{'s' if sc.keys != 1 else ''}{weights}")
        if sc.steps:
            line.append(f", steps {sc.steps[0]}..{sc.steps[1]}")
            if sc.key_gaps:
                line.append(", gaps " + _key_gaps(sc.key_gaps), style="red")
        parts.append(line)

    if r.numeric:
        deep = r.numeric_source == "data"
        title = "Numeric columns" + (" (read from data)" if deep else "")
        columns = [Col("column", "left", key=True), Col("rows"), Col("null"), Col("NaN"), Col("±inf"), Col("valid")]
        rows = []
        unknown_nan = False
        infinite = []
        for name, st in r.numeric.items():
            nan = st.nan
            unknown_nan |= nan is None
            if st.inf:
                infinite.append(name)
            rows.append(
                [
                    _t(name),
                    Text(f"{st.count:,}"),
                    Text(f"{st.null:,}", style="yellow" if st.null else ""),
                    Text("-" if nan is None else f"{nan:,}", style="red" if nan else "dim"),
                    Text("-" if st.inf is None else f"{st.inf:,}", style="red" if st.inf else "dim"),
                    Text("-" if st.valid is None else f"{st.valid:,}", style="dim" if st.valid is None else ""),
                ]
            )
        parts.append(Sheet(title, columns, rows))
        if infinite:
            parts.append(
                Text(
                    f"{', '.join(visible(n, keep_newlines=False) for n in infinite)}: some values are +inf or -inf. "
                    "They are valid numbers (summarize counts them), so a mean or std over them is not finite: "
                    "runlog doctor says from which step.",
                    style="red",
                )
            )
        if unknown_nan:
            parts.append(
                Text(
                    "NaN and ±inf (and so the valid values) are not in Parquet statistics: add --deep to count them "
                    "and the per-role columns (reads numeric columns only).",
                    style="dim",
                )
            )

    if r.fidelity:
        notes = Text("Not mapped into the canonical model:\n", style="bold")
        for note in r.fidelity:
            notes.append(f"  {visible(note['layout'], keep_newlines=False)}: ", style="cyan")
            notes.append(visible(note["message"], keep_newlines=False) + "\n")
        parts.append(notes)

    problems = r.problems
    if problems:
        columns = [Col("kind", "left", key=True), Col("path", "left", wrap=True), Col("message", "left", wrap=True)]
        rows = []
        ordered = sorted(problems, key=lambda p: (p.is_warning, p.path))
        for p in ordered[:MAX_PROBLEMS_SHOWN]:
            style = "yellow" if p.is_warning else "red"
            rows.append([Text(p.kind, style=style), _t(p.path), _t(p.message)])
        if len(ordered) > MAX_PROBLEMS_SHOWN:
            rows.append([Text("..."), Text(f"{len(ordered) - MAX_PROBLEMS_SHOWN} more"), Text("see --format json")])
        errs, warns = ("error" if r.errors == 1 else "errors"), ("warning" if r.warnings == 1 else "warnings")
        title = f"Problems ({r.errors} {errs}, {r.warnings} {warns})"
        parts.append(Sheet(title, columns, rows))
    if r.errors:
        # "The rest" only where some data was read: a run whose one file is unreadable has no rest.
        read = any(f["readable"] and f["kind"] != "manifest" for f in r.files)
        rest = "the rest of the run was read" if read else "no file could be read"
        parts.append(Text(f"{r.errors} problem(s) found; {rest}.", style="bold red"))
    elif r.warnings and strict:
        n = r.warnings
        parts.append(Text(f"{n} warning(s), and --strict counts warnings as problems.", style="bold red"))
    elif r.warnings:
        parts.append(Text(f"valid, with {r.warnings} warning(s).{_what_was_read(r)}", style="bold yellow"))
    else:
        parts.append(Text(f"valid: no problems found.{_what_was_read(r)}", style="bold green"))
    return Group(*parts)


def _what_was_read(r: RunInspection) -> str:
    """What the verdict vouches for, where the run has Parquet files (a JSONL or JSON file is read whole): plain
    inspect reads their footers, not their data pages, so a corrupt page behind an intact footer passes it."""
    if not any(f["format"] == "parquet" and f["kind"] == "samples" for f in r.files):
        return ""
    if r.numeric_source == "data":
        return " Parquet files: footers and the numeric and key columns read (not the texts)."
    return " Parquet files: footers read, not their data pages (--deep reads the numeric and key columns)."


# How the Splits table shows what told a split's stride (``RunInspection.step_stride_from``).
_STRIDE_NOTES = {"unknown": " (not known)"}


def _splits(r: RunInspection) -> list[Any]:
    """The Splits table (steps, rows, stride, gaps), and a line for what it cannot tell: a stride two steps do
    not tell, steps whose files hold no row."""
    from rich.text import Text

    columns = [
        Col("split", "left", key=True),
        Col("first step", "left"),
        Col("last step", "left"),
        Col("rows"),
        Col("stride", "left"),
        Col("gaps (missing steps)", "left", wrap=True),
    ]
    rows = []
    for split, (first, last) in r.steps.items():
        gaps = r.step_gaps.get(split, [])
        stride = str(r.step_stride.get(split, 1)) if first != last else "-"
        note = _STRIDE_NOTES.get(r.step_stride_from.get(split, ""), "") if first != last else ""
        rows.append(
            [
                _t(split),
                Text(str(first)),
                Text(str(last)),
                Text(f"{r.rows_by_split.get(split, 0):,}"),
                Text(stride + note, style="yellow" if note == _STRIDE_NOTES["unknown"] else ""),
                Text(_ranges(gaps), style="red") if gaps else Text("none", style="green"),
            ]
        )
    # Rows whose split is null ("?"): counted, with no steps of their own (their files' steps are their splits').
    for split, n in r.rows_by_split.items():
        if split not in r.steps and n:
            rows.append([_t(split), Text("-"), Text("-"), Text(f"{n:,}"), Text("-"), Text("-")])
    out: list[Any] = [Sheet("Splits", columns, rows)]
    unknown = [s for s, (a, b) in r.steps.items() if a != b and r.step_stride_from.get(s) == "unknown"]
    if unknown:
        names = ", ".join(repr(visible(s, keep_newlines=False)) for s in unknown)
        out.append(
            Text(
                f"{names}: files of two steps only, which tell no stride: the stride shown is their difference, and "
                "steps lost between them cannot be told from a sparser schedule.",
                style="dim",
            )
        )
    for split, empty in r.empty_steps.items():
        shown = ", ".join(map(str, empty[:8])) + (f", ... ({len(empty)} steps)" if len(empty) > 8 else "")
        out.append(
            Text(
                f"split {visible(split, keep_newlines=False)!r}: step(s) {shown} hold no rows (files of 0 rows: "
                "a step whose samples were all filtered out); counted as present, not as gaps.",
                style="dim",
            )
        )
    return out
