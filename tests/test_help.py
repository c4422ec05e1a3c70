"""Help text is shown as written (brackets are not Rich markup), and ``-h`` is ``--help`` everywhere."""

from __future__ import annotations

import inspect
import re

import pytest
import typer
from typer.testing import CliRunner

from runlog.cli.app import app

ENV = {"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"}
BRACKETED = re.compile(r"\[[a-z#/@][^\[\]]*\]")  # what Rich would take for a markup tag


def _commands(t: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(command path, callback) of every command, sub-groups' included; a group's path with its own callback."""
    out = []
    for info in t.registered_commands:
        out.append(((*prefix, info.name or info.callback.__name__), info.callback))
    for group in t.registered_groups:
        sub = group.typer_instance
        out.append(((*prefix, group.name), sub))
        out += _commands(sub, (*prefix, group.name))
    return out


COMMANDS = [((), app), *_commands(app)]


def _source_help(obj: object) -> list[str]:
    """The help strings as the source writes them: docstring / Typer help, and each option's help."""
    if isinstance(obj, typer.Typer):
        return [obj.info.help or ""]
    texts = [inspect.getdoc(obj) or ""]
    for p in inspect.signature(obj).parameters.values():
        help_ = getattr(p.default, "help", None)
        if help_:
            texts.append(help_)
    return texts


def _flat(text: str) -> str:
    """Help output without its panel borders, lines joined: what a reader reads."""
    text = re.sub(r"[\u2500-\u257f]", " ", text)
    return " ".join(text.split())


def _help(args: list[str]) -> str:
    r = CliRunner().invoke(app, args, env=ENV, prog_name="runlog")
    assert r.exit_code == 0, r.output
    return r.stdout


def test_help_shows_bracketed_text_literally():
    """Every ``[word]`` of every command's help (its own text and its options') is in its --help."""
    lost, checked = [], 0
    for path, obj in COMMANDS:
        shown = _flat(_help([*path, "--help"]))
        for text in _source_help(obj):
            for m in BRACKETED.findall(text):
                checked += 1
                if m not in shown:
                    lost.append(f"runlog {' '.join(path)}: {m}")
    assert checked and not lost, lost


def test_the_reported_brackets():
    assert "pip install -e '.[plot]'" in _flat(_help(["plot", "--help"]))
    assert "pip install -e '.[plot]'" in _flat(_help(["report", "--help"]))
    assert "(top level or [doctor])" in _flat(_help(["doctor", "--help"]))
    assert "pip install -e '.[ray]'" in _flat(_help(["summarize", "--help"]))


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) or "runlog" for p, _ in COMMANDS])
def test_dash_h_is_help(path):
    assert _help([*path, "-h"]) == _help([*path, "--help"])
