"""Audit 14 (new-user walk), command line: help and version whose reader goes away keep their exit code; help
folds what it cannot fit instead of cropping it; ``--set`` errors name ``--set`` and list the valid names; an
``-o FILE`` that cannot be written is said before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runlog.analysis.doctor_config import DoctorConfig
from runlog.cli.app import COMMANDS, app
from runlog.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
DEBATE = str(ROOT / "sample_runs" / "debate_grpo")
LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc takes no new files on Linux")


def _to_gone_reader(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``runlog ARGS | head -0``, deterministically: stdout is a pipe whose read end is closed before the
    command starts, so that its first write meets a broken pipe."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "runlog", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "80"},
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--help"], 0), (["summarize", "--help"], 0), (["metrics", "diversity", "-h"], 0), (["--version"], 0)]
    + [(["metrics"], 2), ([], 2)],
    ids=["help", "summarize-help", "metrics-diversity-h", "version", "metrics-alone", "nothing"],
)
def test_help_and_version_whose_reader_went_away_keep_their_exit_code(args: list[str], code: int) -> None:
    """docs/cli.md: a reader that goes away is no error, the command ends with its own code. Help and version
    exited 1 (rich's and typer's broken-pipe exits), which a ``set -o pipefail`` gate read as a failure."""
    done = _to_gone_reader(args)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr


@pytest.mark.parametrize("columns", [40, 80])
def test_help_folds_what_does_not_fit_instead_of_cropping_it(columns: int) -> None:
    """At 80 columns upload-wandb's help showed ``--max-samples-per…`` (an option one could not type from the
    help) and the storage options ``GOOGLE_APPLICATION_CRED…``; at 40, ``--scala…`` and ``(repeata…``. Every
    character is now shown, the word folded over lines."""
    env = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    paths = [[], *([name] for name in COMMANDS), ["metrics", "diversity"], ["metrics", "format"]]
    cropped = {}
    for path in paths:
        r = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="runlog")
        assert r.exit_code == 0, r.output
        lines = [line for line in r.stdout.splitlines() if "…" in line]
        if lines:
            cropped[" ".join(path)] = lines
    assert cropped == {}
    wandb = CliRunner().invoke(app, ["upload-wandb", "--help"], env=env, prog_name="runlog").stdout
    folded = "".join(line.strip("│ ").split(" ")[0] for line in wandb.splitlines() if "--max-samples" in line)
    assert "--max-samples-" in folded


def test_set_format_spec_error_names_set_not_spec() -> None:
    """``doctor --set format_spec=foo`` said ``--spec 'foo': ...`` (an option doctor does not have), after the
    run was read; it is said as the thresholds are read, under ``--set format_spec=``, with the names."""
    with pytest.raises(UsageError) as err:
        DoctorConfig.from_sources(sets=["format_spec=foo"])
    said = str(err.value)
    assert said.startswith("--set format_spec=foo: expected one of ")
    assert "think-answer-strict" in said and "--spec" not in said
    with pytest.raises(UsageError, match=r"^--set format_spec=nope\.toml: no such file$"):
        DoctorConfig.from_sources(sets=["format_spec=nope.toml"])
    assert DoctorConfig.from_sources(sets=["format_spec=open-r1"]).format_spec == "open-r1"


def test_config_file_format_spec_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "d.toml"
    config.write_text('format_spec = "nope"\n')
    with pytest.raises(UsageError, match=r"^--config .*d\.toml: format_spec=nope: expected one of "):
        DoctorConfig.from_sources(config)


def test_set_diversity_metric_lists_the_valid_names_and_suggests_one() -> None:
    """``--set diversity_metric=selfbleu`` said ``no such column (docs/metrics.md)``: no valid name, no "did you
    mean", and only once the texts were read; ``step`` or ``texts`` were taken as a diversity metric."""
    from runlog.analysis.doctor_config import diversity_metric_names

    with pytest.raises(UsageError) as err:
        DoctorConfig.from_sources(sets=["diversity_metric=distinct2"])
    said = str(err.value)
    assert said.startswith("--set diversity_metric=distinct2: not a diversity metric (did you mean 'distinct_2'?)")
    assert f"known: {', '.join(diversity_metric_names())}" in said
    assert {"unique_frac", "distinct_2", "self_bleu_2", "entropy_4"} <= set(diversity_metric_names())
    for not_a_metric in ("step", "texts", "groups"):
        with pytest.raises(UsageError, match="not a diversity metric"):
            DoctorConfig.from_sources(sets=[f"diversity_metric={not_a_metric}"])
    assert DoctorConfig.from_sources(sets=["diversity_metric=self_bleu_3"]).diversity_metric == "self_bleu_3"


def test_doctor_set_format_spec_on_the_command_line() -> None:
    r = CliRunner().invoke(app, ["doctor", DEBATE, "--set", "format_spec=foo"], prog_name="runlog")
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: --set format_spec=foo: expected one of "), r.stderr


def test_render_suffix_error_names_the_path_as_given(tmp_path: Path) -> None:
    """``render-trajectory -o /some/dir/x.csv`` said ``-o x.csv``, dropping the folder the user gave."""
    out = tmp_path / "sub" / "x.csv"
    out.parent.mkdir()
    r = CliRunner().invoke(app, ["render-trajectory", DEBATE, "-o", str(out)], prog_name="runlog")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"Error: -o {out}: this command does not write .csv"), r.stderr


@LINUX
def test_report_to_an_unwritable_path_fails_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """``report -o /proc/x.html`` read the run and built the whole report (5-8 s), then said ``cannot write``."""
    import runlog.run

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the run was opened")

    monkeypatch.setattr(runlog.run, "open_run", no_work)
    r = CliRunner().invoke(app, ["report", DEBATE, "-o", "/proc/x.html"], prog_name="runlog")
    assert r.exit_code == 2, r.output
    assert (
        r.stderr
        == "Error: cannot write /proc/x.html: the folder /proc does not take new files (No such file or directory)\n"
    )


def test_check_writable_leaves_no_file_and_changes_none(tmp_path: Path) -> None:
    """The check creates the file it checks and removes it; an existing file keeps its bytes and its time."""
    from runlog.cli.common import check_writable

    new = tmp_path / "new.html"
    check_writable(new)
    assert not new.exists()
    old = tmp_path / "old.html"
    old.write_text("kept")
    os.utime(old, (1_000_000, 1_000_000))
    check_writable(old)
    assert old.read_text() == "kept" and old.stat().st_mtime == 1_000_000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_check_writable_leaves_a_named_pipe_alone(tmp_path: Path) -> None:
    """Opening a named pipe would wait for a reader, and its reader would see the end of the data: not opened."""
    from runlog.cli.common import check_writable

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    check_writable(fifo)  # returns at once


@LINUX
def test_check_writable_says_why() -> None:
    from runlog.cli.common import OutputError, check_writable

    with pytest.raises(OutputError, match=r"^cannot write /proc/x\.html: the folder /proc does not take new files"):
        check_writable("/proc/x.html")
