"""``-o FILE`` on every command that has it: the file holds the output, stdout stays empty, and one line on
stderr says where it went and how big it is (``wrote per_step.csv (1.2 KB)``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog.cli.app import app

from conftest import SAMPLE_RUNS, commands_with_output

DEBATE = str(SAMPLE_RUNS / "debate_grpo")
FLINK = str(SAMPLE_RUNS / "flink_mixed")
# A report of debate_grpo takes seconds (its figures); what is checked here is where its page goes, so the
# report is of the smallest sample run.
SMALL = str(SAMPLE_RUNS / "jaxarc")

# command -> (arguments before -o, file name): one or more runs of each command that has -o.
RUNS = {
    "summarize": [
        ([DEBATE, "--by", "role"], "roles.txt"),  # per role: two tables (per role, per sample) in one file
        ([DEBATE, "--by", "step", "--format", "csv"], "steps.csv"),
        ([DEBATE, "--scalars", "--format", "json"], "scalars.json"),
        ([DEBATE, FLINK, "--by", "run", "--format", "parquet"], "fleet.parquet"),
    ],
    "metrics diversity": [([DEBATE, "--steps", "0:3"], "div.txt"), ([DEBATE, "--format", "csv"], "div.csv")],
    "metrics format": [([DEBATE, "--per-sample", "--format", "json"], "fmt.json")],
    "plot": [([DEBATE, "--what", "reward"], "reward.svg")],
    "report": [([SMALL], "report.html")],
    "diff": [([DEBATE, FLINK], "diff.txt"), ([DEBATE, FLINK, "--format", "json"], "diff.json")],
}
OWNED_ELSEWHERE = {"render-trajectory"}  # its -o message is its own engineer's (issue 21)
CASES = [(name, args, out) for name, runs in RUNS.items() for args, out in runs]


def test_every_command_with_output_is_checked_here():
    assert commands_with_output() - OWNED_ELSEWHERE == set(RUNS)


@pytest.mark.parametrize(("name", "args", "out"), CASES, ids=[f"{n} {o}" for n, _, o in CASES])
def test_output_file_is_announced_on_stderr_and_stdout_stays_empty(name, args, out, tmp_path):
    target = tmp_path / out
    r = CliRunner().invoke(app, [*name.split(), *args, "-o", str(target)], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert r.exit_code in (0, 1), r.output
    assert target.is_file() and target.stat().st_size > 0
    assert r.stdout == "", r.stdout[:300]
    said = [line for line in r.stderr.splitlines() if line.startswith("wrote ")]
    assert said == [f"wrote {target} ({_size(target)})"], r.stderr
    if out == "roles.txt":  # both parts of a per-role summary, in the one file, without colour
        text = target.read_text(encoding="utf-8")
        assert "Reward per role" in text and "Per sample, all roles together" in text
        assert not re.search(r"\x1b\[", text)


def _size(path: Path) -> str:
    from runlog.cli.common import human_bytes

    return human_bytes(path.stat().st_size)


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 B"), (512, "512 B"), (1229, "1.2 KB"), (5 * 1000**2, "5.0 MB"), (9_437_188, "9.4 MB"),
     (999_999, "1.0 MB"), (999, "999 B"), (10**12, "1.0 TB")],
)  # fmt: skip
def test_sizes_read_as_people_write_them(n, shown):
    from runlog.cli.common import human_bytes

    assert human_bytes(n) == shown


@pytest.mark.parametrize(
    ("command", "args", "name", "check"),
    [
        (
            "summarize",
            [DEBATE],
            "s.parquet",
            lambda p: pq.read_table(p).num_rows == 6,
        ),
        ("summarize", [DEBATE, "--by", "step"], "s.csv", lambda p: p.read_text().startswith("split,step,")),
        ("metrics diversity", [DEBATE], "d.json", lambda p: p.read_text().startswith("[{")),
        ("metrics format", [DEBATE], "f.csv", lambda p: p.read_text().startswith("split,step,texts,")),
        ("diff", [DEBATE, DEBATE], "d.json", lambda p: p.read_text().startswith("{")),
        ("render-trajectory", [DEBATE], "r.html", lambda p: p.read_text().startswith("<!DOCTYPE html>")),
        ("render-trajectory", [DEBATE], "r.md", lambda p: p.read_text().startswith("## sample")),
    ],
)
def test_the_output_suffix_picks_the_format_unless_format_is_given(tmp_path: Path, command, args, name, check) -> None:
    """``-o s.parquet`` without ``--format`` writes Parquet (it wrote a text table under that name); an
    explicit ``--format`` wins over the suffix; an unknown suffix keeps the default."""
    runner = CliRunner()
    out = tmp_path / name
    res = runner.invoke(app, [*command.split(), *args, "-o", str(out)], catch_exceptions=False)
    assert res.exit_code in (0, 1), res.output
    assert check(out), out.read_bytes()[:200]
    if command in ("summarize", "metrics diversity", "metrics format", "diff"):
        table = tmp_path / f"table-{name}"
        res = runner.invoke(app, [*command.split(), *args, "-o", str(table), "--format", "table"])
        assert not check(table) if not name.endswith(".parquet") else table.read_bytes()[:4] != b"PAR1"
        other = tmp_path / "x.txt"
        runner.invoke(app, [*command.split(), *args, "-o", str(other)])
        assert not other.read_text().startswith(("{", "[{", "split,"))


def _json_lines(p: Path, n: int) -> bool:
    lines = p.read_text().splitlines()
    return len(lines) == n and all(isinstance(json.loads(x), dict) for x in lines)


@pytest.mark.parametrize(
    ("command", "args", "check"),
    [
        ("summarize", [DEBATE, "--by", "role"], lambda p: _json_lines(p, 6)),  # 2 splits x 3 roles
        ("render-trajectory", [DEBATE, "--random", "3"], lambda p: _json_lines(p, 3)),
        ("diff", [DEBATE, DEBATE], lambda p: _json_lines(p, 1)),  # one record: the diff
    ],
)
def test_a_jsonl_output_is_json_lines(tmp_path: Path, command, args, check) -> None:
    """``-o x.jsonl`` writes one record per line (it wrote one JSON array, which JSON Lines readers reject)."""
    out = tmp_path / "x.jsonl"
    res = CliRunner().invoke(app, [*command.split(), *args, "-o", str(out)], catch_exceptions=False)
    assert res.exit_code in (0, 1), res.output
    assert check(out), out.read_text()[:300]
    assert pl.read_ndjson(out).height == len(out.read_text().splitlines())


@pytest.mark.parametrize(
    ("command", "args", "name"),
    [
        ("diff", [DEBATE, DEBATE], "d.parquet"),
        ("render-trajectory", [DEBATE], "r.csv"),
        ("summarize", [DEBATE], "s.html"),
        ("metrics format", [DEBATE], "f.md"),
    ],
)
def test_a_data_suffix_the_command_cannot_write_is_a_usage_error(tmp_path: Path, command, args, name) -> None:
    """``diff -o d.parquet`` wrote a text table under a Parquet name; now exit 2 before any work, nothing
    written, the formats it writes named. With an explicit --format the name is the user's choice."""
    out = tmp_path / name
    res = CliRunner().invoke(app, [*command.split(), *args, "-o", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert f"-o {out}: this command does not write" in res.stderr and "Traceback" not in res.output
    fmt = "terminal" if command == "render-trajectory" else "table"
    res = CliRunner().invoke(app, [*command.split(), *args, "-o", str(out), "--format", fmt])
    assert res.exit_code in (0, 1) and out.exists()


def test_an_empty_result_in_jsonl_is_an_empty_file(tmp_path: Path) -> None:
    """No rows wrote a lone newline, which JSON Lines readers reject. (The command that showed it, the text
    metrics of a scalars-only run, now refuses such a run: the table is written directly.)"""
    import polars as pl

    from runlog.cli.output import OutputFormat, emit_frame

    out = tmp_path / "e.jsonl"
    emit_frame(pl.DataFrame(schema={"step": pl.Int64, "texts": pl.Int64}), OutputFormat.json, out)
    assert out.read_bytes() == b""
