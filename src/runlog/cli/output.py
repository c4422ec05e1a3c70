"""One emitter for every command that prints a frame: ``--format table|csv|json|parquet`` and ``-o FILE``.

Data goes to stdout (or ``-o``); notes go to stderr. JSON is a list of row objects with the frame's column
names; NaN and infinities become ``null`` there (JSON has no NaN), while CSV writes ``NaN``.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..errors import UsageError
from ..textsafe import visible
from .common import stdout_console

if TYPE_CHECKING:
    from rich.console import Group
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


def frame_to_json(df: pl.DataFrame) -> str:
    rows = [{k: _json_value(v) for k, v in row.items()} for row in df.to_dicts()]
    return json.dumps(rows, indent=2 if sys.stdout.isatty() else None, allow_nan=False, default=str)


def fmt_cell(v: Any) -> Text:
    """Numbers people can read: 4 significant digits, integers with separators, visible NaN and nulls."""
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
        return Text(f"{v:.4g}" if 1e-4 <= a < 1e6 else f"{v:.3e}")
    return Text(visible(str(v), keep_newlines=False))


def _label(column: str, strip: Sequence[str]) -> str:
    for prefix in strip:
        if column.startswith(prefix) and len(column) > len(prefix):
            label = column[len(prefix) :]
            # "component/format_mean" under "Reward components (means)" reads "format".
            return label.removesuffix("_mean") if prefix == "component/" else label
    return column


def render_tables(
    df: pl.DataFrame, sections: Sequence[tuple[str, Sequence[str]]], keys: Sequence[str], strip: Sequence[str] = ()
) -> Group:
    """Wide frames are drawn as several tables that repeat the key columns (one per group of columns),
    so that each stays readable in a terminal. Headers drop the ``strip`` prefixes the title already says
    (``reward_mean`` under "Reward" reads ``mean``); CSV/JSON keep the full column names."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    tables = []
    for title, cols in sections:
        cols = [c for c in cols if c in df.columns]
        if not cols:
            continue
        t = Table(title=title, title_justify="left")
        names = (*keys, *cols)
        rows = []
        for row in df.select(*names).iter_rows():
            cells = []
            for name, v in zip(names, row, strict=True):
                if name == "role" and v is None:
                    cells.append(Text("(unknown)", style="italic"))
                else:
                    cells.append(fmt_cell(v))
            rows.append(cells)
        for i, c in enumerate(names):
            # Numbers are never cut: a column is at least as wide as its widest cell.
            width = max([len(r[i].plain) for r in rows] + [1])
            label = c if c in keys else _label(c, strip)
            t.add_column(label, justify="left" if c in keys else "right", min_width=min(width, 40), overflow="fold")
        for cells in rows:
            t.add_row(*cells)
        tables.append(t)
    return Group(*tables)


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
            sys.stdout.buffer.write(buf.getvalue())
            return
        df.write_parquet(out)
        return
    if fmt == OutputFormat.csv:
        text = df.write_csv()
    elif fmt == OutputFormat.json:
        text = frame_to_json(df) + "\n"
    else:
        renderable = render_tables(df, sections or [("", [c for c in df.columns if c not in keys])], keys, strip)
        if out is None:
            stdout_console().print(renderable)
            return
        from rich.console import Console  # not for CSV / JSON: importing rich costs ~17 ms

        with open(out, "w", encoding="utf-8") as fh:
            Console(file=fh, width=200, no_color=True).print(renderable)
        return
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
