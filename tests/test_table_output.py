"""Tables never hide a number: at any width, in a terminal, a pipe or a file, every value that --format json
gives appears whole in the table (folded into several tables or vertical records where it does not fit,
never cropped), and piped output is drawn at the content's own width."""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from runlog.cli import output
from runlog.cli.output import OutputFormat, emit_frame, fmt_cell
from runlog.writer import RunWriter

from conftest import SAMPLE_RUNS, make_native_run

WIDTHS = (60, 80, 100)
NULLS = {"-", "NaN", "inf", "-inf", "(unknown)"}
_SPLIT = re.compile(r"[\s\u2500-\u257f]+")  # whitespace and box-drawing characters


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tokens(text: str) -> list[str]:
    return [t for t in _SPLIT.split(_ANSI.sub("", text)) if t]


def expected_tokens(rows: list[dict]) -> tuple[set[str], int]:
    """The table's rendering of every non-null JSON value (as fmt_cell writes it), and the number of nulls.
    A set: a command may show a value once for several JSON rows (a per-sample column beside per-role ones)."""
    want: set[str] = set()
    nulls = 0
    for row in rows:
        for v in row.values():
            if v is None:
                nulls += 1
            else:
                want.update(tokens(fmt_cell(v).plain))
    return want, nulls


def header_tokens(text: str) -> set[str]:
    """Headers of drawn tables (the lines between a table's top border and its header rule), and the labels
    of vertical records (first word of a line that is not part of a table)."""
    heads: set[str] = set()
    for line in _ANSI.sub("", text).splitlines():
        if line.startswith("┃"):
            heads.update(tokens(line))
        elif not line.startswith(("┏", "┡", "│", "└")) and len(tokens(line)) >= 2:
            heads.add(tokens(line)[0])
    return heads


def has_header(column: str, heads: set[str]) -> bool:
    names = {column, column.removesuffix("_mean")}
    return any(n == h or n.endswith(tuple(sep + h for sep in "_/:")) for n in names for h in heads)


def assert_nothing_hidden(text: str, rows: list[dict], width: int | None) -> None:
    got = Counter(tokens(text))
    want, nulls = expected_tokens(rows)
    missing = sorted(t for t in want if not got[t])
    assert not missing, f"values not shown whole at width {width}: {missing}\n{text}"
    assert not nulls or any(got[t] for t in NULLS), f"null cells lost at width {width}\n{text}"
    heads = header_tokens(text)
    lost = [c for c in rows[0] if not has_header(c, heads)]
    assert not lost, f"columns without a header at width {width}: {lost}\n{text}"
    if width is not None:
        too_wide = [line for line in _ANSI.sub("", text).splitlines() if len(line) > width]
        assert not too_wide, f"lines wider than {width}: {too_wide[:3]}"


def table_and_json(cli, args: list, width: int | None) -> tuple[str, list[dict]]:
    env = {"COLUMNS": None if width is None else str(width), "NO_COLOR": "1"}
    table = cli.runner.invoke(cli.app, [str(a) for a in args], env=env, catch_exceptions=False)
    data = cli.runner.invoke(cli.app, [*map(str, args), "--format", "json"], env=env, catch_exceptions=False)
    assert table.exit_code == data.exit_code, (table.output, data.output)
    rows = json.loads(data.stdout)
    assert rows, data.output
    return table.stdout, rows


@pytest.fixture
def wide_run(tmp_path: Path) -> Path:
    """Scalars with long key names, large counts, NaN and a missing value: wider than any terminal."""
    root = tmp_path / "wide"
    with RunWriter(root, name="wide", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(3):
            w.log_scalars(
                step,
                {
                    "debate/solver/policy_gradient_loss_unclipped_mean": -0.123456 * (step + 1),
                    "debate/verifier/tokens_generated_total_per_step": 1_234_567 + step,
                    "debate/judge/kl_divergence_to_reference_policy": math.nan if step == 1 else 0.5,
                },
            )
    return root


@pytest.fixture
def cli(cli):
    from runlog.cli.app import app

    cli.app = app
    return cli


COMMANDS = {
    "fleet by run and role": ["summarize", str(SAMPLE_RUNS / "*"), "--by", "run", "--by", "role"],
    "scalars": ["summarize", SAMPLE_RUNS / "debate_grpo", "--scalars"],
    "by role": ["summarize", SAMPLE_RUNS / "debate_grpo", "--by", "role"],
    "format by step": ["metrics", "format", SAMPLE_RUNS / "debate_grpo", "--by", "step"],
}


@pytest.mark.parametrize("width", [*WIDTHS, None], ids=[*map(str, WIDTHS), "piped"])
@pytest.mark.parametrize("name", COMMANDS)
def test_every_value_of_the_json_is_in_the_table(cli, name, width):
    text, rows = table_and_json(cli, COMMANDS[name], width)
    assert_nothing_hidden(text, rows, width)


@pytest.mark.parametrize("width", [*WIDTHS, None], ids=[*map(str, WIDTHS), "piped"])
def test_long_scalar_keys_nan_and_large_counts(cli, wide_run, width):
    text, rows = table_and_json(cli, ["summarize", wide_run, "--scalars"], width)
    assert_nothing_hidden(text, rows, width)
    assert any(r["nan"] == 1 for r in rows) and {"nan", "last_step"} <= header_tokens(text)
    assert all(r["key"] in tokens(text) for r in rows)


def test_the_reported_cases_at_80_and_60_columns(cli):
    text, rows = table_and_json(cli, COMMANDS["fleet by run and role"], 80)
    assert any(r["reward_count"] is not None and r["reward_count"] >= 1000 for r in rows)
    counts = {f"{r['reward_count']:,}" for r in rows if r["reward_count"] is not None}
    assert counts <= set(tokens(text))
    text, _ = table_and_json(cli, COMMANDS["fleet by run and role"], 60)
    assert {"nan", "null"} <= header_tokens(text)
    text, _ = table_and_json(cli, COMMANDS["scalars"], 80)
    assert {"last_step", "first_step"} <= header_tokens(text)


def test_piped_output_is_as_wide_as_its_content(cli):
    """Without a terminal (and no COLUMNS), a table is not folded: each row is one line."""
    text, rows = table_and_json(cli, COMMANDS["scalars"], None)
    assert "(1/" not in text
    lines = text.splitlines()
    for row in rows:
        cells = [fmt_cell(v).plain for v in row.values()]
        assert any(re.search(r"\s+│?\s*".join(map(re.escape, cells)), line) for line in lines), cells
    assert max(map(len, lines)) > 80


def test_a_table_written_to_a_file_is_as_wide_as_its_content(cli, tmp_path, wide_run):
    out = tmp_path / "t.txt"
    r = cli("summarize", wide_run, "--scalars", "-o", out)
    assert r.exit_code == 0, r.output
    data = json.loads(cli("summarize", wide_run, "--scalars", "-f", "json").stdout)
    assert_nothing_hidden(out.read_text(), data, None)
    # Wider than any fixed width a file could be given: still whole, one line per row.
    import polars as pl

    rows = [{"run": f"run-{i}", **{f"metric_{k}": 1_000_069 * (i + 1) + k for k in range(30)}} for i in range(3)]
    emit_frame(pl.DataFrame(rows), OutputFormat.table, out, keys=["run"])
    text = out.read_text()
    assert_nothing_hidden(text, rows, None)
    assert "(1/" not in text and max(map(len, text.splitlines())) > 300


@pytest.mark.parametrize("width", WIDTHS)
def test_a_terminal_folds_to_its_width(monkeypatch, width):
    """On a terminal the tables fit the terminal's width (COLUMNS unset): folded, nothing lost."""
    import polars as pl

    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()
    monkeypatch.setattr(
        output, "stdout_console", lambda: Console(file=buf, force_terminal=True, width=width, no_color=True)
    )
    rows = [
        {"run": f"run-{i}", "role": r, **{f"metric_{k}": 1_000_069 * (i + 1) + k for k in range(9)}}
        for i in range(3)
        for r in ("solver", "verifier")
    ]
    rows[0]["metric_3"] = None
    df = pl.DataFrame(rows)
    emit_frame(df, OutputFormat.table, None, keys=["run", "role"])
    text = buf.getvalue()
    assert_nothing_hidden(text, rows, width)
    assert "(1/" in text  # it was folded, with the keys repeated in each part
    assert Counter(tokens(text))["run-2"] >= 2 * 2


def _sheet(n_values: int, key_width: int = 8) -> tuple[output.Sheet, list[str]]:
    Col, Sheet = output.Col, output.Sheet
    cols = [Col("key", "left", key=True)] + [Col(f"value_{i}") for i in range(n_values)]
    values = [f"{123_456_789 + i:,}" for i in range(n_values)]
    rows = [[Text("k" * key_width), *map(Text, values)], [Text("x" * key_width), Text("NaN"), *map(Text, values[1:])]]
    return Sheet("A title", cols, rows), values


@pytest.mark.parametrize("width", range(12, 140, 9))
def test_a_sheet_is_never_cropped_at_any_width(width):
    sheet, values = _sheet(7)
    console = Console(file=io.StringIO(), width=width, no_color=True)
    console.print(sheet)
    text = console.file.getvalue()
    got = Counter(tokens(text))
    for v in values[1:]:
        assert got[v] >= 2, (v, text)
    assert got[values[0]] >= 1 and got["NaN"] >= 1
    assert all(got[f"value_{i}"] >= 1 for i in range(7)), text
    assert max(map(len, text.splitlines())) <= width


def test_a_sheet_becomes_records_when_one_column_does_not_fit_beside_the_keys():
    sheet, values = _sheet(3, key_width=40)
    parts = sheet.layout(50)
    assert all(isinstance(p, Text) for p in parts)
    assert [p.plain.split()[0] for p in parts[1:5]] == ["key", "value_0", "value_1", "value_2"]
    assert len(sheet.layout(sheet.natural_width)) == 1


def test_free_text_wraps_before_the_table_is_folded():
    Col, Sheet = output.Col, output.Sheet
    cols = [Col("kind", "left", key=True), Col("message", "left", wrap=True), Col("rows")]
    sheet = Sheet("", cols, [[Text("warning"), Text("word " * 30), Text("1,069")]])
    console = Console(file=io.StringIO(), width=50, no_color=True)
    console.print(sheet)
    text = console.file.getvalue()
    assert "(1/" not in text and "1,069" in text and Counter(tokens(text))["word"] == 30


def _run_with_a_warning_only(root: Path) -> Path:
    make_native_run(root)
    (root / "notes.txt").write_text("not a run file")
    return root


def test_inspect_strict_failure_does_not_end_with_valid(cli, tmp_path):
    root = _run_with_a_warning_only(tmp_path / "r")
    r = cli("inspect", root)
    assert r.exit_code == 0 and r.stdout.strip().splitlines()[-1].startswith("valid, with 1 warning")
    r = cli("inspect", root, "--strict")
    assert r.exit_code == 1
    last = r.stdout.strip().splitlines()[-1]
    assert "valid" not in last.lower() and "--strict" in last and "1 warning" in last


@pytest.mark.parametrize("width", [40, *WIDTHS, None])
def test_inspect_tables_keep_every_count(cli, width):
    env = {"COLUMNS": None if width is None else str(width), "NO_COLOR": "1"}
    run = SAMPLE_RUNS / "debate_grpo"
    text = cli.runner.invoke(cli.app, ["inspect", str(run)], env=env).stdout
    data = json.loads(cli.runner.invoke(cli.app, ["inspect", str(run), "-f", "json"], env=env).stdout)
    got = set(tokens(text))
    want = {"layout", "version", "kind", "files", "rows", "bytes", "split", "first", "last", "stride", "gaps"}
    want |= {f"{n:,}" for n in data["rows_by_kind"].values()} | set(data["rows_by_kind"])
    for name, st in data["numeric"].items():
        want |= {name, f"{st['rows']:,}", f"{st['null']:,}"}
    for split, (first, last) in data["steps"].items():
        want |= {split, str(first), str(last), str(data["step_stride"][split])}
    assert want <= got, (sorted(want - got), text)
    if width is not None:
        assert max(map(len, text.splitlines())) <= width


def test_roles_have_their_render_colour_in_tables():
    import polars as pl
    from rich.console import Console

    from runlog.cli.output import render_tables
    from runlog.render.colours import role_colour

    df = pl.DataFrame({"role": ["solver", "judge", None], "reward_mean": [0.5, 1.0, 0.0]})
    console = Console(width=80, force_terminal=True, color_system="256", record=True)
    console.print(render_tables(df, [("Reward", ["reward_mean"])], ["role"]))
    styles = {seg.text.strip(): str(seg.style) for seg in console._record_buffer if seg.text.strip()}
    assert role_colour("solver") in styles["solver"] and role_colour("judge") in styles["judge"]
    assert role_colour("solver") != role_colour("judge")


def test_a_step_is_shown_without_thousands_separators(tmp_path, cli):
    """``12,345`` pasted into --steps is steps 12 and 345: a step is a name, not an amount (inspect shows
    12345 too); counts keep their separators."""
    from runlog import RunWriter

    with RunWriter(tmp_path / "r", durable=False) as w:
        w.log_samples(12345, {"reward": [1.0] * 1200})
    res = cli("summarize", tmp_path / "r", "--by", "step")
    assert res.exit_code == 0, res.output
    assert "12345" in res.stdout and "12,345" not in res.stdout and "1,200" in res.stdout
