"""One emitter for every command that prints a frame: ``--format table|csv|json|parquet`` and ``-o FILE``.

Data goes to stdout (or ``-o``, and then one line on stderr says where: ``wrote FILE (SIZE)``); notes go to
stderr. JSON is a list of row objects with the frame's column
names; NaN and infinities become ``null`` there (JSON has no NaN), while CSV writes ``NaN``.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._lazy import pl
from ..errors import UsageError
from ..schema import NULL_ROLE_LABEL
from ..textsafe import visible
from .common import stdout_console, write_stdout, writing, wrote
from .options import json_lines

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
    from rich.measure import Measurement
    from rich.text import Text


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def frame_to_json(df: pl.DataFrame, *, lines: bool = False) -> str:
    """One JSON array of the rows; ``lines``: one row per line (JSON Lines)."""
    rows = [{k: _json_value(v) for k, v in row.items()} for row in df.to_dicts()]
    if lines:
        return "\n".join(json.dumps(r, allow_nan=False, default=str) for r in rows)
    return json.dumps(rows, indent=2 if sys.stdout.isatty() else None, allow_nan=False, default=str)


def fmt_cell(v: Any) -> Text:
    """Numbers people can read: 4 significant digits, integers with separators, visible NaN and nulls.

    A float that is not a whole number never reads as one: where 4 digits would round it to one (0.99995 to
    ``1``, 999.95 to ``1000``, 1234.6 to ``1,235``), digits are added until it does not (``0.99995``): a
    ``zero_adv_frac`` of ``1`` says that no prompt group has a GRPO signal, and one group in 20,001 has (up to
    8 significant digits: float rounding, 1.0000000000000002, still reads as 1). Nor does a value next to 0 read
    as 0 (``1.000e-07``)."""
    from rich.text import Text

    if v is None:
        return Text("-", style="dim")
    if isinstance(v, bool):
        return Text(str(v).lower())
    if isinstance(v, int):
        return Text(f"{v:,}")
    if isinstance(v, float):
        if math.isnan(v):
            return Text("NaN", style="red")
        if math.isinf(v):
            return Text("inf" if v > 0 else "-inf", style="red")
        if v == 0:
            return Text("0")
        a = abs(v)
        if 1e3 <= a < 1e6:  # units, with separators: 123,456.7 (`.4g` would write 1.235e+05), 2,048 if whole
            return Text(_not_whole(v, [f"{{:,.{d}f}}" for d in range(4)]))
        if 1e-4 <= a < 1e3:
            return Text(_not_whole(v, [f"{{:.{p}g}}" for p in range(4, 9)]))
        return Text(f"{v:.3e}")  # never 0, and an exponent: not read as a whole number
    return Text(visible(str(v), keep_newlines=False))


def _not_whole(v: float, specs: list[str]) -> str:
    """``v`` by the first of ``specs`` (fewest digits first) that writes a whole number only for one: a float
    that is not whole is not shown as one where up to 8 significant digits (3 decimals from 1,000) tell it
    apart; beyond them it is a whole number but for float rounding (the mean of 0.2, 2.2 and 0.6 is
    1.0000000000000002), written as the first spec writes it."""
    whole = v.is_integer()
    for spec in specs:
        text = spec.format(v)
        if whole or not float(text.replace(",", "")).is_integer():
            return text
    return specs[0].format(v)


def _label(column: str, strip: Sequence[str]) -> str:
    for prefix in strip:
        if column.startswith(prefix) and len(column) > len(prefix):
            return column[len(prefix) :]
    return column


@dataclass(frozen=True)
class Col:
    """A column of a :class:`Sheet`."""

    header: str
    justify: Literal["left", "right"] = "right"
    key: bool = False  # names the row: repeated in every part when the table is folded
    wrap: bool = False  # free text (a path, a message): may run onto several lines, every character kept


# Below this width a free-text column is not squeezed further: the table is folded instead.
WRAP_MIN = 12


class Sheet:
    """A table that is never cropped. Drawn whole where it fits the width it is given; otherwise free-text
    columns wrap, then the table is folded into parts that each repeat the key columns, and where even one
    column does not fit beside the keys, each row is drawn as a vertical record (``column  value`` lines).
    Its natural width is what :func:`print_out` gives a pipe or a file."""

    def __init__(self, title: str, columns: Sequence[Col], rows: Sequence[Sequence[Text]]) -> None:
        from rich.cells import cell_len

        if columns and not any(c.key for c in columns):
            # A folded part must say which row it is: without declared keys, the first column does.
            columns = [replace(columns[0], key=True), *columns[1:]]
        self.title = title
        self.columns = list(columns)
        self.rows = [list(r) for r in rows]
        self.widths = [
            max([cell_len(c.header)] + [max(map(cell_len, r[i].plain.split("\n"))) for r in self.rows])
            for i, c in enumerate(self.columns)
        ]

    @staticmethod
    def _span(widths: Sequence[int]) -> int:
        # Each column has one space of padding either side and one border to its left; plus the right edge.
        return sum(widths) + 3 * len(widths) + 1

    @property
    def natural_width(self) -> int:
        return self._span(self.widths)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        from rich.measure import Measurement

        return Measurement(min(self.natural_width, 20), self.natural_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.layout(options.max_width)

    def layout(self, width: int) -> list[RenderableType]:
        """What is drawn at ``width`` columns: one table, several, or vertical records."""
        n = len(self.columns)
        if not n:
            return []
        if self.natural_width <= width:
            return [self._table(self.title, list(range(n)), self.widths)]
        keys = [i for i, c in enumerate(self.columns) if c.key]
        values = [i for i in range(n) if i not in keys]
        wrap = [i for i in range(n) if self.columns[i].wrap]
        # 1. Free text wraps, down to WRAP_MIN columns each.
        if wrap:
            widths = [min(w, WRAP_MIN) if i in wrap else w for i, w in enumerate(self.widths)]
            spare = width - self._span(widths)
            if spare >= 0:
                # The room left goes to the free-text columns in proportion to what each still lacks.
                lack = {i: self.widths[i] - widths[i] for i in wrap}
                total = sum(lack.values())
                for i in wrap:
                    widths[i] += min(lack[i], spare * lack[i] // total) if total else 0
                for i in wrap:  # what integer division left over
                    grow = min(width - self._span(widths), self.widths[i] - widths[i])
                    widths[i] += max(grow, 0)
                return [self._table(self.title, list(range(n)), widths)]
        # 2. Fold: the value columns in groups, each group beside the keys.
        key_widths = [self.widths[i] for i in keys]
        room = width - self._span(key_widths) - 3  # for one more column beside the keys
        widths = list(self.widths)
        for i in values:
            if self.columns[i].wrap:
                widths[i] = min(widths[i], room)
            if widths[i] > room or (self.columns[i].wrap and widths[i] < min(self.widths[i], WRAP_MIN)):
                return self._records(width)  # 3. Not even one column fits beside the keys.
        parts: list[list[int]] = [[]]
        for i in values:
            if parts[-1] and self._span(key_widths + [widths[j] for j in parts[-1]] + [widths[i]]) > width:
                parts.append([])
            parts[-1].append(i)
        out: list[RenderableType] = []
        for k, part in enumerate(parts, 1):
            title = f"{self.title} ({k}/{len(parts)})".strip() if len(parts) > 1 else self.title
            out.append(self._table(title, sorted(keys + part), widths))
        return out

    def _table(self, title: str, indices: Sequence[int], widths: Sequence[int]) -> RenderableType:
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(title, style="table.title") if title else None, title_justify="left")
        for i in indices:
            c = self.columns[i]
            wrap = c.wrap and widths[i] < self.widths[i]
            t.add_column(Text(c.header), justify=c.justify, width=widths[i], no_wrap=not wrap, overflow="fold")
        for row in self.rows:
            t.add_row(*(row[i].copy() for i in indices))
        return t

    def _records(self, width: int) -> list[RenderableType]:
        from rich.text import Text

        label = max(len(c.header) for c in self.columns)
        out: list[RenderableType] = []
        if self.title:
            out.append(Text(self.title, style="table.title"))
        for k, row in enumerate(self.rows):
            if k:
                out.append(Text(""))
            for c, cell in zip(self.columns, row, strict=True):
                line = Text(f"{c.header:<{label}}  ", style="bold" if c.key else "")
                line.append_text(cell)
                line.overflow = "fold"
                out.append(line)
        return out


def render_tables(
    df: pl.DataFrame, sections: Sequence[tuple[str, Sequence[str]]], keys: Sequence[str], strip: Sequence[str] = ()
) -> Group:
    """Wide frames are drawn as several tables that repeat the key columns (one per group of columns),
    so that each stays readable in a terminal; a table wider than the terminal is folded, never cropped
    (:class:`Sheet`). Headers drop the ``strip`` prefixes the title already says (``reward_mean`` under
    "Reward" reads ``mean``); CSV/JSON keep the full column names."""
    from rich.console import Group

    sheets = []
    for title, cols in sections:
        cols = [c for c in cols if c in df.columns]
        if not cols:
            continue
        names = (*keys, *cols)
        rows = [[_cell(name, v) for name, v in zip(names, row, strict=True)] for row in df.select(*names).iter_rows()]
        columns = [
            Col(
                visible(c if c in keys else _label(c, strip), keep_newlines=False),
                "left" if c in keys else "right",
                key=c in keys,
            )
            for c in names
        ]
        sheets.append(Sheet(title, columns, rows))
    return Group(*sheets)


def fold_width(console: Console) -> int | None:
    """The width tables must fit: the terminal's on a terminal, else ``COLUMNS`` where it is set; otherwise
    (a pipe, a file) None: every table is drawn at its natural width."""
    if console.is_terminal:
        return console.width
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def print_out(renderable: RenderableType, out: Path | None = None) -> None:
    """Print to stdout (or to the file ``out``, without colour, and say so on stderr): folded to the
    terminal's width on a terminal, at the content's own width in a pipe or a file, so that nothing is ever
    cropped."""
    from rich.console import Console

    if out is not None:
        with writing(out), open(out, "w", encoding="utf-8") as fh:
            console = Console(file=fh, no_color=True, highlight=False, soft_wrap=False)
            _print_at_width(console, renderable, None)
        wrote(out)
        return
    console = stdout_console()
    _print_at_width(console, renderable, fold_width(console))


def _print_at_width(console: Console, renderable: RenderableType, width: int | None) -> None:
    from rich.console import Console
    from rich.measure import Measurement

    if width is None:
        probe = Console(file=io.StringIO(), width=1_000_000, highlight=False)
        width = max(Measurement.get(probe, probe.options, renderable).maximum, 1)
    console.width = width
    console.print(renderable)


def emit_frame(
    df: pl.DataFrame,
    fmt: OutputFormat,
    out: Path | None,
    *,
    sections: Sequence[tuple[str, Sequence[str]]] | None = None,
    keys: Sequence[str] = (),
    strip: Sequence[str] = (),
) -> None:
    if fmt == OutputFormat.parquet:
        if out is None:
            if sys.stdout.isatty():
                raise UsageError("--format parquet writes binary: give -o FILE or pipe stdout to a file")
            buf = io.BytesIO()
            df.write_parquet(buf)
            write_stdout(buf.getvalue())
            return
        # Into memory first (a summary is small): a write that fails is then the system's error (a full disk:
        # "No space left on device"), not the Parquet writer's ("Invalid thrift: transport error").
        buf = io.BytesIO()
        df.write_parquet(buf)
        with writing(out):
            Path(out).write_bytes(buf.getvalue())
        wrote(out)
        return
    if fmt == OutputFormat.csv:
        text = df.write_csv()
    elif fmt == OutputFormat.json:
        lines = json_lines(out)
        text = frame_to_json(df, lines=lines) + ("\n" if df.height or not lines else "")  # no rows: an empty file
        _say_non_finite(df)
    else:
        print_out(render_tables(df, sections or [("", [c for c in df.columns if c not in keys])], keys, strip), out)
        return
    if out is None:
        write_stdout(text)
    else:
        with writing(out):
            Path(out).write_text(text, encoding="utf-8")
        wrote(out)


def _say_non_finite(df: pl.DataFrame) -> None:
    """A note on stderr when JSON wrote a NaN or an infinity as ``null`` (JSON has neither): a ``null`` there
    otherwise reads as "no value", and an infinite reward or KL (a figure that says the run blew up) would
    read as a missing one. Counted from the frame's float columns, not the text."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    if not floats or not df.height:
        return
    counts = df.select(
        pl.sum_horizontal(pl.col(c).is_nan().sum() for c in floats).alias("nan"),
        pl.sum_horizontal(pl.col(c).is_infinite().sum() for c in floats).alias("inf"),
    ).row(0)
    nan, inf = (int(x or 0) for x in counts)
    if nan or inf:
        said = " and ".join(
            part for part in (f"{nan:,} NaN" if nan else "", f"{inf:,} infinite" if inf else "") if part
        )
        sys.stderr.write(
            f"note: {said} value(s) written as null (JSON has neither): --format csv or parquet keep them\n"
        )


def _cell(name: str, v: Any) -> Text:
    """A table cell; a role name in the role's own colour (the palette render-trajectory uses too)."""
    from rich.text import Text

    if name == "role":
        if v is None:
            return Text(NULL_ROLE_LABEL, style="italic")
        from ..render.colours import role_colour

        cell = fmt_cell(v)
        cell.stylize(role_colour(str(v)))
        return cell
    if name in ("step", "first step", "last step") and isinstance(v, int) and not isinstance(v, bool):
        # A step is a name, not an amount: "12,345" pasted into --steps would be steps 12 and 345.
        return Text(str(v))
    return fmt_cell(v)
