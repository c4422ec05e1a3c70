"""Audit 21, a new user's typos: a path typed that does not exist among several (or on a line of ``--runs``) is a
usage error with the name close to it, as for one run and for ``diff``; an empty path and a writer's state file
are said as such; ``--role`` says which samples carry no role; ``watch`` prints nothing before a ``--split``
typo's error; ``summarize --window`` says "logged" steps, as ``plot`` and docs/cli.md do.

Then, of that change: ``--runs`` from a pipe is read once (it was read twice: the second read found it empty); a
symbolic link to nothing is said so, never offered as the name close to itself; no one-dash hint after a short
option with its value attached (``-fcsv``); a name of control characters offered as a shell can type it; the
``--role`` note counts role entries where a native ``roles`` list may hold several of a null role, and names the
files' layouts; ``watch`` says a missing or empty path as every command does."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ROOT, SAMPLE_RUNS, make_flink_run, make_native_run, native_rows, native_run_of

MIXED = SAMPLE_RUNS / "flink_mixed"
DEBATE = SAMPLE_RUNS / "debate_grpo"


def _error_line(r) -> str:
    """The one line of a usage error, asserting there is nothing else: no stdout, one stderr line."""
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert r.stdout == "", r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


# -- 1. a typo among several PATHs -------------------------------------------------------------------------------


@pytest.fixture
def two_runs(tmp_path: Path) -> Path:
    make_native_run(tmp_path / "runs" / "flink_mixed", steps=range(2))
    make_native_run(tmp_path / "runs" / "debate_grpo", steps=range(2))
    return tmp_path / "runs"


@pytest.mark.parametrize(
    "command",
    [["summarize"], ["summarize", "--format", "json"], ["metrics", "diversity"], ["metrics", "format"]],
)
def test_a_missing_path_among_several_is_a_usage_error_with_the_close_name(cli, two_runs: Path, command) -> None:
    typo = two_runs / "flink_mixd"
    r = cli(*command, two_runs / "debate_grpo", typo)
    line = _error_line(r)
    assert line == f"Error: {typo}: no such file or directory (did you mean '{two_runs / 'flink_mixed'}'?)"


def test_a_missing_line_of_a_runs_file_is_a_usage_error_naming_the_line(cli, two_runs: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    runs.write_text(f"{two_runs / 'debate_grpo'}\n# a comment\n\n{two_runs / 'debate_grpoo'}\n")
    line = _error_line(cli("summarize", "--runs", runs, "--format", "csv"))
    assert line.startswith(f"Error: --runs {runs}: line 4: {two_runs / 'debate_grpoo'}: no such file or directory")
    assert line.endswith(f"(did you mean '{two_runs / 'debate_grpo'}'?)")


def test_no_hint_where_no_name_is_close(cli, two_runs: Path) -> None:
    far = two_runs / "zzzzqqq"
    assert _error_line(cli("summarize", two_runs / "debate_grpo", far)) == f"Error: {far}: no such file or directory"


def test_a_mistyped_folder_above_is_found_too(cli, two_runs: Path) -> None:
    typo = two_runs.parent / "rnus" / "debate_grpo"
    line = _error_line(cli("summarize", two_runs / "flink_mixed", typo))
    assert line.endswith(f"(did you mean '{two_runs / 'debate_grpo'}'?)"), line


def test_one_missing_run_and_diff_get_the_hint_too(cli, two_runs: Path) -> None:
    typo = two_runs / "flink_mixd"
    want = f"Error: {typo}: no such file or directory (did you mean '{two_runs / 'flink_mixed'}'?)"
    assert _error_line(cli("inspect", typo)) == want
    assert _error_line(cli("summarize", typo)) == want
    r = cli("diff", two_runs / "debate_grpo", typo)
    assert r.exit_code == 2 and r.stdout == "" and want in r.stderr, r.stderr


def test_an_option_value_taken_for_a_path_says_the_one_dash(cli, monkeypatch) -> None:
    """``-by role`` reads as ``-b y`` and a PATH ``role``: the error says why there is a PATH ``role``."""
    import sys

    monkeypatch.setattr(sys, "argv", ["runlog", "summarize", str(DEBATE), "-by", "role"])
    line = _error_line(cli("summarize", DEBATE, "-by", "role"))
    assert line.startswith("Error: role: no such file or directory")
    assert line.endswith("('-by' reads as '-b y': a long option takes two dashes, '--by')"), line


def test_a_glob_match_that_cannot_be_read_is_still_a_run_skipped(cli, two_runs: Path) -> None:
    """docs/scaling.md: a run a glob matched and that cannot be read is skipped (exit 1), the others summarised."""
    (two_runs / "empty").mkdir()
    r = cli("summarize", str(two_runs / "*"), "--format", "json")
    assert r.exit_code == 1, r.stderr
    assert {row["run"] for row in json.loads(r.stdout)} == {"debate_grpo", "flink_mixed"}
    assert "empty: run skipped" in r.stderr


# -- 3. an empty path, a writer's state file -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[""], [str(DEBATE), ""]])
def test_an_empty_path_is_a_usage_error(cli, args) -> None:
    line = _error_line(cli("summarize", *args))
    assert line.startswith("Error: an empty path ('')"), line


def test_an_empty_path_is_refused_by_one_run_commands(cli) -> None:
    assert _error_line(cli("inspect", "")).startswith("Error: an empty path ('')")


def test_a_writer_state_file_is_said_as_such(cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(DEBATE, run)
    state = run / ".writer.p0.json"
    json.loads(state.read_text())  # a state file indeed
    for command in ("summarize", "inspect"):
        line = _error_line(cli(command, state))
        assert line.startswith(f"Error: {state}: a writer's state file"), line
        assert line.endswith("not a run: pass its folder"), line


# -- 2. --role and the samples of no role --------------------------------------------------------------------------


def _roleless_train_files() -> dict[int, int]:
    """step -> rows of the train Parquet files of flink_mixed that carry no per-role column (Flink v0), read
    with pyarrow."""
    out = {}
    for f in (MIXED / "flink_logs").glob("batch_debug_data_train_*.parquet"):
        schema = pq.read_schema(f)
        if not any(name.endswith("_reward") and name != "reward" for name in schema.names):
            out[int(f.stem.rsplit("_", 1)[1])] = pq.read_metadata(f).num_rows
    return out


def test_role_filter_says_the_train_samples_that_carry_no_role(cli) -> None:
    v0 = _roleless_train_files()
    assert v0 and sorted(v0) == list(range(min(v0), max(v0) + 1))  # one run of steps, as the note says it
    r = cli("summarize", MIXED, "--by", "step", "--role", "solver", "--split", "train", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "carry no role" in line]
    assert len(notes) == 1, r.stderr
    assert notes[0].startswith(f"note: {sum(v0.values())} train samples at steps {min(v0)}-{max(v0)} carry no role")
    assert "--role solver" in notes[0]
    # The table's rows are the solver's: no step of v0 among them.
    steps = {int(line.split(",")[1]) for line in r.stdout.splitlines()[1:]}
    assert not steps & set(v0)


def test_role_filter_note_counts_each_split(cli, tmp_path: Path) -> None:
    run = tmp_path / "mixed"
    make_flink_run(run, steps=range(3), version=0)  # 4 samples a step, no roles
    make_flink_run(run, steps=range(3, 6), version=1)
    make_flink_run(run, steps=[7], version=0, split="eval")
    r = cli("summarize", run, "--role", "verifier")
    assert r.exit_code == 0, r.stderr
    note = next(line for line in r.stderr.splitlines() if "carry no role" in line)
    assert note.startswith("note: 4 eval samples at step 7; 12 train samples at steps 0-2 carry no role"), note
    # The steps chosen narrow it; none left there, no note.
    r = cli("summarize", run, "--role", "verifier", "--steps", "1:4", "--split", "train")
    note = next(line for line in r.stderr.splitlines() if "carry no role" in line)
    assert note.startswith("note: 8 train samples at steps 1-2 carry no role"), note
    r = cli("summarize", run, "--role", "verifier", "--steps", "3:5", "--split", "train")
    assert r.exit_code == 0 and "carry no role" not in r.stderr, r.stderr


def test_no_role_note_without_role_or_without_roleless_samples(cli) -> None:
    r = cli("summarize", MIXED, "--split", "train", "--format", "csv")
    assert "carry no role" not in r.stderr
    r = cli("summarize", DEBATE, "--role", "solver", "--format", "csv")
    assert r.exit_code == 0 and "carry no role" not in r.stderr, r.stderr


def test_role_filter_that_matches_nothing_says_the_samples_of_no_role(cli) -> None:
    v0 = _roleless_train_files()
    r = cli("summarize", MIXED, "--role", "solver", "--split", "train", "--steps", f"{min(v0)}:{max(v0)}")
    assert r.exit_code == 2 and r.stdout == ""
    assert f"note: {sum(v0.values())} train samples at steps {min(v0)}-{max(v0)} carry no role" in r.stderr


# -- 4. watch: a --split typo prints nothing before its error ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_watch_split_typo_of_a_finished_run_prints_nothing(cli, fmt: str) -> None:
    r = cli("watch", DEBATE, "--once", "--split", "trian", "--format", fmt)
    line = _error_line(r)
    assert line == "Error: --split 'trian': this run has split(s) eval, train (did you mean 'train'?)"


def test_watch_of_a_split_not_written_yet_in_a_run_without_state_files_stays_a_note(cli) -> None:
    """docs/watch.md: a split that may still come (no writer said it closed) is a note, not an error."""
    r = cli("watch", MIXED, "--once", "--split", "trian", "--format", "json")
    assert r.exit_code == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert any(e["event"] == "note" and "no step of split trian yet" in e["message"] for e in events)


# -- 6, 7. help and README -------------------------------------------------------------------------------------------


def test_summarize_window_help_says_logged_steps() -> None:
    from runlog.cli.summarize_cmd import summarize_command

    window = inspect.signature(summarize_command).parameters["window"].default
    assert "over the last N logged steps" in window.help


def test_readme_says_how_to_run_a_subset_of_the_tests() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install -e '.[test]' && pytest\n" in readme  # the install command, as it was
    assert "`pytest -k sample_runs`" in readme


# -- audit of the change: --runs from a pipe -------------------------------------------------------------------------


def _samples(run: Path) -> dict[str, int]:
    """run name -> its samples, read with pyarrow."""
    return {run.name: sum(pq.read_metadata(f).num_rows for f in run.rglob("*.parquet"))}


def test_runs_from_a_pipe_fd_is_read_once(cli, two_runs: Path) -> None:
    """``--runs <(printf ...)`` is a pipe (``/dev/fd/N``): the option's check read it, and the fleet read it
    again, empty: "lists no run", exit 2."""
    read, write = os.pipe()
    try:
        os.write(write, f"{two_runs / 'debate_grpo'}\n{two_runs / 'flink_mixed'}\n".encode())
        os.close(write)
        r = cli("summarize", "--runs", f"/dev/fd/{read}", "--by", "run", "--format", "json")
    finally:
        os.close(read)
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    got: dict[str, int] = {}
    for row in rows:
        got[row["run"]] = got.get(row["run"], 0) + row["reward_count"] + row["reward_nan"] + row["reward_null"]
    assert got == {**_samples(two_runs / "debate_grpo"), **_samples(two_runs / "flink_mixed")}


def test_runs_from_stdin_is_read_once_and_its_lines_still_checked(two_runs: Path) -> None:
    env = {**os.environ, "RUNLOG_ANSWERS": "off"}
    command = [sys.executable, "-m", "runlog", "summarize", "--runs", "/dev/stdin", "--format", "csv"]
    good = subprocess.run(
        command, input=f"{two_runs / 'debate_grpo'}\n", capture_output=True, text=True, timeout=120, env=env
    )
    assert good.returncode == 0, good.stderr
    header, *rows = good.stdout.splitlines()
    runs = {line.split(",")[header.split(",").index("run")] for line in rows}
    assert runs == {"debate_grpo"}
    typo = two_runs / "debate_grpoo"
    bad = subprocess.run(
        command, input=f"{two_runs / 'debate_grpo'}\n{typo}\n", capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode == 2 and bad.stdout == "", bad.stderr
    assert bad.stderr.startswith(f"Error: --runs /dev/stdin: line 2: {typo}: no such file or directory"), bad.stderr


# -- a symbolic link to nothing ----------------------------------------------------------------------------------------


def test_a_broken_link_is_said_so_never_offered_as_itself(cli, tmp_path: Path) -> None:
    link = tmp_path / "runs_link"
    link.symlink_to("missing_target")
    assert not link.exists() and link.is_symlink()  # a link to nothing, as os sees it
    want = f"Error: {link}: a symbolic link to 'missing_target', which does not exist"
    assert _error_line(cli("inspect", link)) == want
    assert _error_line(cli("summarize", link)) == want
    assert _error_line(cli("watch", link, "--once")) == want
    below = link / "run"
    assert _error_line(cli("inspect", below)) == (
        f"Error: {below}: no such file or directory ({link} is a symbolic link to 'missing_target', which does not "
        "exist)"
    )


def test_a_link_to_nothing_is_no_name_close_to_a_typo(cli, tmp_path: Path) -> None:
    (tmp_path / "runs_link").symlink_to("missing_target")
    typo = tmp_path / "runs_lnik"
    assert _error_line(cli("inspect", typo)) == f"Error: {typo}: no such file or directory"
    make_native_run(tmp_path / "runs_lin", steps=range(1))
    line = _error_line(cli("inspect", typo))
    assert line == f"Error: {typo}: no such file or directory (did you mean '{tmp_path / 'runs_lin'}'?)", line


def test_a_name_of_control_characters_is_offered_as_a_shell_types_it(cli, tmp_path: Path) -> None:
    """The hint said ``a key of rows_by_split, or in roles``, advice about splits and roles, of a path."""
    if shutil.which("bash") is None:
        pytest.skip("no bash to read the name back")
    name = "exp\x01it's\u2028"
    (tmp_path / name).mkdir()
    line = _error_line(cli("inspect", tmp_path / "exp-its"))
    assert "rows_by_split" not in line and "roles" not in line, line
    typed = line.rsplit("type it as ", 1)[1].removesuffix(")")
    assert typed.startswith("$'") and typed.isascii() and typed.isprintable(), typed
    back = subprocess.run(["bash", "-c", f"printf %s {typed}"], capture_output=True, timeout=30)
    assert back.stdout == str(tmp_path / name).encode(), (typed, back.stdout)


# -- the one-dash hint ----------------------------------------------------------------------------------------------


def test_no_one_dash_hint_after_a_short_option_with_its_value(cli, two_runs: Path, monkeypatch) -> None:
    """``-fcsv`` is ``-f csv``, as click reads it and as typed: there is no ``--fcsv`` to tell of."""
    typo = two_runs / "debate_grop"
    monkeypatch.setattr(sys, "argv", ["runlog", "summarize", "-fcsv", str(typo)])
    line = _error_line(cli("summarize", "-fcsv", typo))
    assert line == f"Error: {typo}: no such file or directory (did you mean '{two_runs / 'debate_grpo'}'?)", line
    r = cli("summarize", "-fcsv", two_runs / "debate_grpo")
    assert r.exit_code == 0 and r.stdout.startswith("role,"), r.stderr


# -- the --role note: role entries, and the files' layouts -------------------------------------------------------------


def test_role_note_counts_role_entries_of_a_null_role(cli, tmp_path: Path) -> None:
    """A native ``roles`` list may hold entries of a null role (docs/format.md: any role names): 8 samples hold
    two such entries, 8 one beside the solver's. The note said "24 train samples carry no role" of 16 samples, 8
    of them in the solver's row."""
    rows = native_rows(1, 16, roles=("solver",))
    for i, row in enumerate(rows):
        null = {"role": None, "reward": 0.25, "kl": 0.1}
        row["roles"] = [null, *row["roles"]] if i % 2 == 0 else [null, dict(null)]
    run = native_run_of(tmp_path / "run", rows)
    roles = pq.read_table(run / "samples" / "train" / "step_00000001.p0.parquet")["roles"].to_pylist()
    entries = sum(e["role"] is None for r in roles for e in r)
    samples = sum(not any(e["role"] for e in r) for r in roles)
    assert (entries, samples) == (24, 8)
    r = cli("summarize", run, "--role", "solver", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    note = next(line for line in r.stderr.splitlines() if "carry no role" in line)
    want = f"note: {entries} role entries of train samples at step 1 carry no role (native files)"
    assert note.startswith(want), note
    assert "single-agent" not in note and "Flink" not in note, note


def test_role_note_names_the_files_layouts(cli, tmp_path: Path) -> None:
    run = tmp_path / "mixed"
    make_flink_run(run, steps=range(2), version=0)
    make_flink_run(run, steps=range(2, 4), version=1)
    r = cli("summarize", run, "--role", "verifier")
    note = next(line for line in r.stderr.splitlines() if "carry no role" in line)
    rows = sum(pq.read_metadata(f).num_rows for f in (run / "flink_logs").glob("*_[01].parquet"))
    assert note.startswith(f"note: {rows} train samples at steps 0-1 carry no role (Flink v0 files): "), note


# -- watch: a missing or empty path --------------------------------------------------------------------------------


def test_watch_says_a_missing_path_as_every_command(cli, two_runs: Path) -> None:
    typo = two_runs / "flink_mixd"
    want = f"Error: {typo}: no such file or directory (did you mean '{two_runs / 'flink_mixed'}'?)"
    assert _error_line(cli("watch", typo, "--once")) == want
    assert _error_line(cli("doctor", typo, "--follow", "--timeout", "1")) == want
    assert _error_line(cli("watch", "", "--once")) == _error_line(cli("inspect", ""))
    assert _error_line(cli("watch", "", "--once")).startswith("Error: an empty path ('')")
