"""Every command's --help ends with two or three examples on the bundled sample_runs/, and each runs with the
exit code it promises; help prose wraps cleanly at any width and an example is never cut inside a word;
``-o FILE`` says where it wrote (one line on stderr, nothing on stdout)."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from runlog.cli.app import app

from conftest import ROOT

PANEL = "╭"  # where typer's option panels begin: the help text is above it


def _commands() -> list[tuple[tuple[str, ...], object]]:
    """(path, click command) of runlog itself, its groups and every command in them."""
    out = []

    def walk(cmd, path):  # noqa: ANN001
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(get_command(app), ())
    return out


COMMANDS = _commands()
IDS = [" ".join(p) or "runlog" for p, _ in COMMANDS]


def _paragraphs(cmd) -> list[str]:  # noqa: ANN001
    """The help's paragraphs as written (markup escapes taken back out)."""
    text = inspect.cleandoc(cmd.help or "").replace("\\[", "[")
    return [p for p in text.split("\n\n") if p.strip()]


def _examples(cmd) -> list[str]:  # noqa: ANN001
    """The examples as the source writes them: every line after the last ``Examples:`` paragraph (none if the
    help has no such paragraph)."""
    paras = _paragraphs(cmd)
    last = max((i for i, p in enumerate(paras) if p == "Examples:"), default=len(paras))
    return [line.strip() for p in paras[last + 1 :] for line in p.split("\n")]


EXAMPLES = [(path, ex) for path, cmd in COMMANDS for ex in _examples(cmd)]


def _help(path: tuple[str, ...], columns: int) -> str:
    env = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    r = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="runlog")
    assert r.exit_code == 0, r.output
    return r.stdout


def _text_lines(help_output: str) -> list[str]:
    """The lines of the help text (after the usage line, before the panels), without typer's one-column pad."""
    lines = help_output.split(PANEL, 1)[0].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    return [line.rstrip()[1:] for line in lines[start:]]


def _help_text(path: tuple[str, ...], columns: int) -> list[str]:
    return _text_lines(_help(path, columns))


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_ends_with_two_or_three_examples_on_the_bundled_runs(path, cmd):
    paras = _paragraphs(cmd)
    assert "Examples:" in paras, "no examples"
    assert all(line[:1].isspace() for p in paras[paras.index("Examples:") + 1 :] for line in p.split("\n"))
    examples = _examples(cmd)
    assert 2 <= len(examples) <= 3, examples
    for ex in examples:
        assert ex.startswith(" ".join(["runlog", *path])), ex
        assert not re.search(r"\b(RUN|DIR|PATH|FILE)\b", ex), f"a placeholder in {ex!r}"
        paths = re.findall(r"sample_runs/[\w./*-]*", ex)
        assert paths, f"{ex!r} does not use the bundled runs"
        for p in paths:
            assert (ROOT / p.rstrip("/*")).exists(), f"{ex!r}: {p} is not in the repository"
    # ... and the rendered help ends with them, one a line at a comfortable width.
    shown = [line.strip() for line in _help_text(path, 200) if line.strip()]
    assert shown[-len(examples) - 1 :] == ["Examples:", *examples]


# -- each example runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder for what the examples write, with the bundled runs where the examples name them."""
    work = tmp_path_factory.mktemp("examples")
    (work / "sample_runs").symlink_to(ROOT / "sample_runs")
    return work


def _promised(example: str) -> int:
    """The exit code an example's comment promises (``# exit 1: ...``); 0 without one."""
    m = re.search(r"#.*\bexit (\d)\b", example)
    return int(m.group(1)) if m else 0


def _run(example: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COLUMNS="100", NO_COLOR="1", WANDB_SILENT="true", WANDB_DISABLE_GIT="true", WANDB_CONSOLE="off")
    env.update({f"WANDB_{k}_DIR": str(cwd / "wandb-home" / k.lower()) for k in ("DATA", "CACHE", "CONFIG")})
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", example], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("path", "example"), EXAMPLES, ids=[ex for _, ex in EXAMPLES])
def test_each_example_runs_as_documented(path, example, workdir):
    if "| jq" in example and shutil.which("jq") is None:
        example = example.split("| jq", 1)[0]  # the command still runs; its JSON is checked below
    r = _run(example, workdir)
    promised = _promised(example)
    assert r.returncode == promised, f"{example}: exit {r.returncode}, the help says {promised}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    if "--format json" in example and "|" not in example:
        json.loads(r.stdout)
    out = re.search(r"(?:-o|--output) (\S+)", example)
    if out:
        assert (workdir / out.group(1)).is_file()
        assert r.stdout == "", f"{example}: -o, yet stdout has {r.stdout[:200]!r}"
        assert f"wrote {out.group(1)} (" in r.stderr


# -- wrapping --------------------------------------------------------------------------------------------


def _rendered_examples(lines: list[str]) -> list[str]:
    """The examples as a shell reads them off the screen: a line ending in `` \\`` goes on with the next,
    and a line holding only a comment belongs to the command above it."""
    block = lines[lines.index("Examples:") + 1 :]
    commands: list[str] = []
    going_on = False
    for line in (x.strip() for x in block):
        if not line:
            continue
        if going_on or line.startswith("#"):
            commands[-1] += " " + line
        else:
            commands.append(line)
        going_on = commands[-1].endswith(" \\")
        commands[-1] = commands[-1].removesuffix(" \\")
    return [" ".join(c.split()) for c in commands]


@pytest.mark.parametrize("columns", [60, 80, 100])
@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_examples_fit_and_are_never_cut_inside_a_word(path, cmd, columns):
    lines = _help_text(path, columns)
    assert all(len(line) <= columns - 2 for line in lines), [x for x in lines if len(x) > columns - 2]
    assert _rendered_examples(lines) == [" ".join(ex.split()) for ex in _examples(cmd)]


@pytest.mark.parametrize("columns", [60, 80, 100])
@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_prose_wraps_cleanly(path, cmd, columns):
    """Each prose line is broken only where the next word would not fit: no short line in mid-paragraph
    where the source happened to break its docstring."""
    lines = _help_text(path, columns)
    width = columns - 2
    prose = lines[: lines.index("Examples:")]
    for line, nxt in zip(prose, prose[1:], strict=False):
        if line.strip() and nxt.strip():
            assert len(line) + 1 + len(nxt.split()[0]) > width, f"ragged at {columns} columns:\n{line}\n{nxt}"
    # Every word of the source's prose is there, in order.
    paras = _paragraphs(cmd)
    words = " ".join(paras[: paras.index("Examples:")]).split()
    assert " ".join(" ".join(prose).split()) == " ".join(words)


def test_a_help_without_prose_before_its_examples_keeps_their_indent():
    """typer dedents what follows the first paragraph: runlog's own help (one line, then examples) used to
    lose the examples' indent."""
    lines = _help_text((), 80)
    first = lines.index("Examples:") + 2
    assert lines[first].startswith("  runlog inspect"), lines


def test_a_pipe_gets_80_columns_and_whole_examples():
    """Piped (no terminal, no COLUMNS), help is 80 columns wide, and its examples read back whole."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TERMINAL_WIDTH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    r = subprocess.run(["runlog", "summarize", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert max(map(len, r.stdout.splitlines())) <= 80
    cmd = dict(COMMANDS)[("summarize",)]
    lines = _text_lines(r.stdout)
    assert _rendered_examples(lines) == [" ".join(ex.split()) for ex in _examples(cmd)]
    assert any(line.endswith(" \\") for line in lines), "an example this long is continued at 80 columns"
