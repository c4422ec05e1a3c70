"""The CLI as a user meets it: exit codes, one-line errors, JSON on stdout, hostile names shown safely."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_RUNS, flink_table, make_flink_run, make_native_run


def test_help_lists_commands_with_examples(cli):
    r = cli("--help")
    assert r.exit_code == 0 and "inspect" in r.output
    r = cli("inspect", "--help")
    assert r.exit_code == 0 and "Examples" in r.output and "--strict" in r.output


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.output.startswith("runlog ")


def test_inspect_clean_run_exits_0(cli, tmp_path):
    root = make_native_run(tmp_path / "r")
    r = cli("inspect", root)
    assert r.exit_code == 0, r.output
    assert "valid: no problems found" in r.output
    assert "solver" in r.output


def test_inspect_json_is_parseable_and_has_the_documented_keys(cli, tmp_path):
    root = make_flink_run(tmp_path / "r", steps=[0, 1, 3])
    r = cli("inspect", root, "--format", "json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    for key in ("files", "schema_versions", "rows", "steps", "step_gaps", "roles", "problems"):
        assert key in data
    assert data["step_gaps"] == {"train": [[2, 2]]}
    assert data["files"][0].keys() >= {"path", "layout", "schema_version", "rows", "split", "step"}


def test_problems_exit_1_warnings_exit_0_unless_strict(cli, tmp_path):
    root = make_native_run(tmp_path / "r")
    (root / "stray.txt").write_text("x")
    assert cli("inspect", root).exit_code == 0
    assert cli("inspect", root, "--strict").exit_code == 1
    f = root / "samples" / "train" / "step_00000001.p0.parquet"
    f.write_bytes(f.read_bytes()[:100])
    r = cli("inspect", root)
    assert r.exit_code == 1 and "unreadable" in r.output


def test_usage_errors_exit_2_with_one_line(cli, tmp_path):
    r = cli("inspect", tmp_path / "missing")
    assert r.exit_code == 2
    assert r.stderr.strip().startswith("Error: ") and "no such file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli("inspect", tmp_path, "--layout", "bogus")
    assert r.exit_code == 2 and "unknown layout 'bogus'" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("inspect", tmp_path / "empty")
    assert r.exit_code == 2 and "no files found" in r.stderr
    r = cli("inspect", tmp_path, "--format", "xml")
    assert r.exit_code == 2
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    r = cli("inspect", tmp_path / "notes")
    assert r.exit_code == 2 and "no run files found (1 file(s) match no known layout" in r.stderr


def test_hostile_file_names_are_shown_literally(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    root = make_flink_run(tmp_path / "r", steps=[0])
    evil = root / "flink_logs" / "[bold red]x\x1b]8;;evil\x07y\x1b[2J.txt"
    evil.write_text("x")
    r = cli("inspect", root)
    assert "\x1b]8" not in r.output and "\x1b[2J" not in r.output
    assert "\\x1b" in r.output
    assert "[bold red]" in r.output  # markup shown, not interpreted


def test_nan_reward_run_gives_valid_json(cli, tmp_path):
    root = make_flink_run(tmp_path / "r", steps=[0])
    t = flink_table(1).set_column(4, "reward", __import__("pyarrow").array([float("nan")] * 4))
    pq.write_table(t, root / "flink_logs" / "batch_debug_data_train_1.parquet")
    r = cli("inspect", root, "--format", "json", "--deep")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["numeric"]["reward"]["nan"] == 4
    r = cli("inspect", root)
    assert "add --deep" in r.output


def test_python_dash_m_runlog_works(tmp_path):
    root = make_native_run(tmp_path / "r", steps=[0])
    p = subprocess.run(
        [sys.executable, "-m", "runlog", "inspect", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows_by_kind"]["samples"] == 8
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["summarize", "debate_grpo", "--by", "role", "--by", "step"], 0, b"note: this run has the splits"),
        (["summarize", "debate_grpo", "--by", "step", "-f", "json"], 0, b"note: this run has the splits"),
        (["metrics", "diversity", "debate_grpo"], 0, b""),
        (["render-trajectory", "debate_grpo"], 0, b""),
        (["doctor", "debate_grpo"], 1, b""),  # a finding of severity warning: a gate still sees it
        (["inspect", "damaged"], 1, b""),
    ],
)
def test_a_reader_gone_away_keeps_the_command_s_exit_code(args: list[str], code: int, stderr: bytes) -> None:
    """``runlog ... | head``: the reader closes the pipe before the output is written. rich's own handling
    exited 1 (the code of problems found in the data), which a ``set -o pipefail`` script reads as bad data;
    then every such command exited 0, so that ``doctor RUN | head`` passed a gate whatever it found. Now the
    command ends as it would have: its exit code, and its notes on stderr."""
    import os

    runs = ("debate_grpo", "damaged")
    argv = [sys.executable, "-m", "runlog", *[str(SAMPLE_RUNS / a) if a in runs else a for a in args]]
    env = {**os.environ, "RUNLOG_CACHE": "off"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.close()  # gone before the first line
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err.decode()[-500:]
    assert b"Traceback" not in err and b"Exception ignored" not in err and stderr in err


def test_text_metrics_and_plots_of_a_scalars_only_run_say_why_they_are_empty(tmp_path, cli) -> None:
    """sample_runs/jaxarc holds scalars only: the text metrics printed empty tables, the plot an empty panel,
    and neither said why nor what to try. The text metrics now refuse it in one line, as render-trajectory
    does (exit 2: nothing to measure), with no table."""
    run = SAMPLE_RUNS / "jaxarc"
    for args in (["metrics", "diversity", run], ["metrics", "format", run]):
        res = cli(*args)
        assert res.exit_code == 2 and "no per-sample data (only scalar metrics)" in res.stderr, res.stderr
        assert res.stdout.strip() == "" and "Error:" in res.stderr
    res = cli("plot", run, "-o", tmp_path / "r.png")
    # The image of the note alone is written; nothing it draws from exists: exit 1, as --what scalars without scalars.
    assert res.exit_code == 1 and "try --what scalars" in res.stderr and (tmp_path / "r.png").exists()
    res = cli("plot", run, "--what", "scalars", "-o", tmp_path / "s.png")
    assert "try --what scalars" not in res.stderr


def test_ctrl_c_during_the_interpreters_teardown_is_exit_130_without_a_traceback(tmp_path):
    """A Ctrl-C after the command's work, while exit hooks run (W&B's, threads joining), printed "Exception
    ignored in atexit callback" and a KeyboardInterrupt traceback, then went on: it now ends the process at
    once with 130, what was printed kept."""
    from watch_helpers import child_env

    script = tmp_path / "teardown.py"
    script.write_text(
        "import atexit, os, signal, sys, time\n"
        "from runlog.cli.app import main\n"
        "def late():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(5)\n"
        "    print('not interrupted', file=sys.stderr)\n"
        "atexit.register(late)\n"
        "sys.argv = ['runlog', '--version']\n"
        "main()\n"
    )
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=child_env(), timeout=60)
    assert p.returncode == 130 and p.stdout.startswith("runlog "), (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "not interrupted" not in p.stderr, p.stderr


@pytest.mark.parametrize(
    "args,said",
    [
        (["summarize", "RUN", "--wher", "x"], "Error: runlog summarize: No such option: --wher"),
        (["summarize", "RUN", "--window", "abc"], "Error: runlog summarize: Invalid value for '--window'"),
        (["inspect"], "Error: runlog inspect: Missing argument 'PATH'."),
        (["nosuch"], "Error: runlog: No such command 'nosuch'."),
    ],
)
def test_command_line_errors_are_one_line_exit_2(args, said):
    """An unknown option or command, a bad value or a missing argument is one line naming the command (with
    where to find help), exit 2: not click's block of a usage line, a hint and a box."""
    from watch_helpers import child_env

    argv = [str(SAMPLE_RUNS / "debate_grpo") if a == "RUN" else a for a in args]
    p = subprocess.run(
        [sys.executable, "-m", "runlog", *argv], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(said) and lines[0].endswith("-h')"), p.stderr
