"""``-o FILE``: a file already there is replaced, and said so; an explicit ``--format`` that differs from what the
file's suffix names is kept, and said (a ``.csv`` holding JSON is opened as CSV by the next tool)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from runlog.cli.app import app

from conftest import SAMPLE_RUNS

DEBATE = str(SAMPLE_RUNS / "debate_grpo")
ENV = {"COLUMNS": "100", "NO_COLOR": "1"}


def _wrote(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("wrote ")]


def test_a_file_already_there_is_said_replaced(tmp_path):
    target = tmp_path / "roles.csv"
    first = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "-o", str(target)], env=ENV)
    assert first.exit_code == 0, first.output
    assert "replaced" not in _wrote(first.stderr)[0]
    second = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "-o", str(target)], env=ENV)
    assert second.exit_code == 0, second.output
    [line] = _wrote(second.stderr)
    assert line.startswith(f"wrote {target} (") and line.endswith(", replaced the file there)"), line
    target.unlink()  # gone again: a new file, not a replaced one (the same process remembers nothing stale)
    third = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "-o", str(target)], env=ENV)
    assert "replaced" not in _wrote(third.stderr)[0]


def test_an_empty_file_there_is_not_said_replaced(tmp_path):
    target = tmp_path / "roles.csv"
    target.touch()  # mktemp's: nothing lost
    r = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "-o", str(target)], env=ENV)
    assert "replaced" not in _wrote(r.stderr)[0]


def test_format_that_differs_from_the_suffix_is_kept_and_said(tmp_path):
    target = tmp_path / "roles.csv"
    r = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "--format", "json", "-o", str(target)], env=ENV)
    assert r.exit_code == 0, r.output
    assert isinstance(json.loads(target.read_text(encoding="utf-8")), list)  # JSON, as asked
    assert f"note: -o {target}: writing json as --format asked, not the .csv its name says" in r.stderr


def test_format_that_matches_the_suffix_says_nothing(tmp_path):
    for fmt, name in (("json", "r.jsonl"), ("csv", "r.csv"), ("table", "r.txt")):
        target = tmp_path / name
        r = CliRunner().invoke(app, ["summarize", DEBATE, "--by", "role", "--format", fmt, "-o", str(target)], env=ENV)
        assert r.exit_code == 0, r.output
        assert "--format asked" not in r.stderr, (fmt, name, r.stderr)
