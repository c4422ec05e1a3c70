"""Paths are taken as they are: a run folder (or a cache folder) whose name holds glob characters, such as
``run[1]``, is read like any other; only a location that is no existing path is expanded as a pattern."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import SAMPLE_RUNS


@pytest.fixture
def bracketed(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNLOG_CACHE_DIR", str(tmp_path / "cache[x]"))
    plain = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "plain")
    odd = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run[1]")
    return plain, odd


@pytest.mark.parametrize(
    "command",
    [
        ["summarize", "{run}", "-f", "json"],
        ["metrics", "diversity", "{run}", "-f", "json"],
        ["metrics", "format", "{run}", "-f", "json"],
        ["doctor", "{run}", "-f", "json"],
        ["render-trajectory", "{run}", "--format", "json"],
        ["diff", "{run}", "{run}", "-f", "json"],
    ],
)
def test_a_run_named_like_a_pattern_reads_as_its_twin(bracketed, cli, command):
    plain, odd = bracketed
    outs = []
    for run in (plain, odd):
        result = cli(*[str(run) if part == "{run}" else part for part in command])
        assert result.exit_code in (0, 1), result.output
        assert "internal error" not in result.output and "matches no run" not in result.output
        outs.append(result.stdout.replace(str(odd), str(plain)).replace(odd.name, plain.name))
    assert outs[0] == outs[1]


def test_the_partials_of_a_cache_folder_named_like_a_pattern_are_read_back(bracketed, cli):
    """Summaries kept in ``cache[x]`` are read again, not taken for a corrupt cache every time."""
    _, odd = bracketed
    first = cli("summarize", odd, "--by", "role", "--by", "step", "-f", "json")
    again = cli("summarize", odd, "--by", "role", "--by", "step", "-f", "json")
    assert first.exit_code == again.exit_code == 0
    assert "warning" not in again.output and "rebuilding" not in again.output
    assert json.loads(first.stdout) == json.loads(again.stdout)


def test_a_pattern_that_is_no_path_still_expands(tmp_path, cli):
    for name in ("a1", "a2"):
        shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / name)
    result = cli("summarize", str(tmp_path / "a[12]"), "--by", "run", "-f", "json")
    assert result.exit_code == 0, result.output
    assert sorted({row["run"] for row in json.loads(result.stdout)}) == ["a1", "a2"]


def test_a_glob_below_a_folder_named_like_a_pattern(tmp_path, cli):
    for name in ("a", "b"):
        shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "exp[1]" / name)
    result = cli("summarize", str(tmp_path / "exp[1]" / "*"), "--by", "run", "-f", "json")
    assert result.exit_code == 0, result.output
    assert sorted({row["run"] for row in json.loads(result.stdout)}) == ["a", "b"]
