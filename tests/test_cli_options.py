"""Options shared by several commands (``cli/options.py``) are spelled, explained and checked the same way in
every command: ``--layout``, ``--format``/``-f``, ``--output``/``-o``, ``--steps``, ``--split``, ``--role``."""

from __future__ import annotations

import pytest
from typer.main import get_command

from runlog.cli.app import app
from runlog.cli.options import (
    LAYOUT_HELP,
    OUTPUT_HELP,
    ROLES_HELP,
    SPLIT_HELP,
    SPLITS_HELP,
    STEPS_HELP,
    THRESHOLD_HELP,
    THRESHOLDS_FILE_HELP,
    TRAINING_SPLIT_HELP,
)

from conftest import ROOT

SAMPLE = str(ROOT / "sample_runs" / "debate_grpo")

# Commands that still declare these options themselves (their edits are pending).
PENDING: set[str] = set()


def _commands() -> list[tuple[str, object]]:
    out = []

    def walk(cmd, path):  # noqa: ANN001
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out.append((" ".join(path), cmd))
        for name, sub in (subs or {}).items():
            walk(sub, (*path, name))

    walk(get_command(app), ())
    return [(name, cmd) for name, cmd in out if name not in PENDING]


COMMANDS = _commands()


def _option(cmd, flag):  # noqa: ANN001
    return next((p for p in cmd.params if flag in p.opts), None)


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_a_shared_option_has_one_spelling_and_help_in_every_command(name, cmd):
    layout = _option(cmd, "--layout")
    assert layout is not None and layout.help == LAYOUT_HELP and layout.metavar == "LAYOUT"
    fmt = _option(cmd, "--format")
    if fmt is not None:
        assert fmt.opts == ["--format", "-f"] and fmt.help == "Output format."
    out = _option(cmd, "--output")
    if out is not None:
        assert out.opts == ["--output", "-o"] and out.metavar == "FILE" and out.callback is not None
        if out.default is None and not out.required:  # a report, an image: the command says what the file is
            assert out.help == OUTPUT_HELP
    steps = _option(cmd, "--steps")
    if steps is not None:
        assert steps.callback is not None
        assert steps.help == STEPS_HELP or "A:B (inclusive), A:, :B, N, or a comma list" in steps.help
    split = _option(cmd, "--split")
    if split is not None:
        # doctor, plot, report, watch read the training split by default (series.default_split); render, train
        # or the only split.
        diagnosed = name in ("doctor", "plot", "report", "watch")
        assert split.help == (SPLITS_HELP if split.multiple else TRAINING_SPLIT_HELP if diagnosed else SPLIT_HELP)
    role = _option(cmd, "--role")
    if role is not None and role.multiple:
        assert role.help == ROLES_HELP
    for flag, text in (("--set", THRESHOLD_HELP), ("--config", THRESHOLDS_FILE_HELP)):
        option = _option(cmd, flag)
        if option is not None:
            assert option.help.replace("\\[", "[") == text  # help is escaped once for Rich (cli/app.py)


OUTPUT_COMMANDS = [
    ["summarize", SAMPLE, "-f", "csv"],
    ["metrics", "diversity", SAMPLE],
    ["metrics", "format", SAMPLE],
    ["render-trajectory", SAMPLE, "-f", "html"],
    ["report", SAMPLE],
]


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=[" ".join(a[:2]) for a in OUTPUT_COMMANDS])
def test_output_into_a_missing_folder_is_a_usage_error_before_any_work(cli, tmp_path, args):
    target = tmp_path / "nowhere" / "out.html"
    r = cli(*args, "-o", str(target))
    assert r.exit_code == 2, r.output
    assert r.stderr == f"Error: -o {target}: folder {target.parent} does not exist\n"
    assert r.stdout == "" and not target.parent.exists()


@pytest.mark.parametrize("args", OUTPUT_COMMANDS, ids=[" ".join(a[:2]) for a in OUTPUT_COMMANDS])
def test_output_into_a_folder_itself_is_a_usage_error_before_any_work(cli, tmp_path, args):
    r = cli(*args, "-o", str(tmp_path))
    assert r.exit_code == 2, r.output
    assert r.stderr == f"Error: -o {tmp_path}: a folder; give a file name (for example {tmp_path / 'out.txt'})\n"
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


NO_RUN = "/no/such/run"
STEPS_COMMANDS = [
    ["summarize", NO_RUN],
    ["metrics", "diversity", NO_RUN],
    ["metrics", "format", NO_RUN],
    ["render-trajectory", NO_RUN],
    ["diff", NO_RUN, NO_RUN],
    ["plot", NO_RUN, "--what", "hist", "-o", "x.png"],
]


STEPS_IDS = [" ".join(a for a in args[:2] if a != NO_RUN) for args in STEPS_COMMANDS]


@pytest.mark.parametrize("args", STEPS_COMMANDS, ids=STEPS_IDS)
@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("4:3", "--steps '4:3': in 4:3, the first step is after the last"),
        ("a:b", "--steps 'a:b': expected A:B (inclusive), A:, :B, N, or a comma list of these (0,5,10:12)"),
        ("1,,2", "--steps '1,,2': an empty item; expected A:B (inclusive), A:, :B, N, or a comma list of these"),
    ],
)
def test_every_command_reads_steps_with_one_grammar_as_the_line_is_read(cli, args, steps, message):
    """A run that does not exist: the step text is refused before any run is opened, in the same words."""
    r = cli(*args, "--steps", steps)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"Error: {message}") and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("steps", ["last", "all", "0:2,5"])
def test_render_trajectory_steps_take_last_and_all_besides_the_grammar(cli, steps):
    r = cli("render-trajectory", SAMPLE, "--steps", steps, "-f", "json")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    "args",
    [
        ["summarize", SAMPLE],
        ["metrics", "format", SAMPLE],
        ["metrics", "diversity", SAMPLE],
    ],
    ids=["summarize", "metrics format", "metrics diversity"],
)
def test_by_takes_a_comma_list_as_the_repeated_option(cli, args):
    """``--by role,step`` is ``--by role --by step``: the same output, digit for digit."""
    comma = cli(*args, "--by", "role,step", "-f", "csv")
    repeated = cli(*args, "--by", "role", "--by", "step", "-f", "csv")
    assert comma.exit_code == repeated.exit_code == 0, comma.output
    assert comma.stdout == repeated.stdout
    assert comma.stdout.splitlines()[0].startswith(("role,step,", "split,role,step,"))


def test_a_misspelt_by_key_is_refused_with_the_nearest_one(cli):
    r = cli("summarize", SAMPLE, "--by", "role,stp")
    assert r.exit_code == 2
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("Error: --by 'stp': expected one of ") and r.stderr.rstrip().endswith(
        "(did you mean 'step'?)"
    ), r.stderr


@pytest.mark.parametrize("value", [",", "", " , "])
def test_a_by_without_any_key_is_refused(cli, value):
    r = cli("summarize", SAMPLE, "--by", value)
    assert r.exit_code == 2 and r.stderr.startswith("Error: --by ") and "no key given" in r.stderr, r.stderr
