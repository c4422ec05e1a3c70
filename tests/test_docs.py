"""Docs that cannot drift: the format page, the CLI reference and the README agree with the code."""

from __future__ import annotations

import importlib.util
import re

from runlog import schema as S
from runlog.formats import base, layouts

from conftest import ROOT

FORMAT = (ROOT / "docs" / "format.md").read_text()
CLI = (ROOT / "docs" / "cli.md").read_text()
README = (ROOT / "README.md").read_text()


def _gen_cli_docs():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_is_generated_from_the_current_cli():
    gen = _gen_cli_docs()
    assert gen.render(CLI) == CLI, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    for name in gen.command_names():
        assert f"### `runlog {name}`" in CLI
        assert "Examples" in gen.help_text(name.split()), f"runlog {name} --help has no examples"


def test_format_page_lists_every_version_layout_and_problem_kind():
    for v in S.KNOWN_VERSIONS:
        assert re.search(rf"^\| {v} \|", FORMAT, re.M), f"schema version {v} not documented"
    documented = re.findall(r"^\| `([a-z_]+)` \| ", FORMAT.split("## Schema versions")[0], re.M)
    assert documented == [lay.name for lay in layouts()], "layout table differs from the registry order"
    kinds = [v for k, v in vars(base).items() if k.isupper() and isinstance(v, str) and k != "WARNING"]
    for kind in [*kinds, base.WARNING]:
        assert f"| `{kind}` |" in FORMAT, f"problem kind {kind} not documented"


def test_format_page_states_the_native_arrow_types():
    for field in S.NATIVE_SAMPLE_SCHEMA:
        t = str(field.type).replace("element: ", "").replace("item: ", "").replace("double", "float64")
        row = next((line for line in FORMAT.splitlines() if line.startswith(f"| `{field.name}` |")), None)
        assert row is not None, f"native column {field.name} not documented"
        assert f"`{t}`" in row, f"{field.name}: documented type differs from {t}"
    for col in S.NATIVE_REQUIRED:
        row = next(line for line in FORMAT.splitlines() if line.startswith(f"| `{col}` |"))
        assert "| yes |" in row


def test_readme_and_ci_agree_on_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in README
    assert "pip install -e '.[plot]' && runlog report sample_runs/" in README
    assert re.search(r"pip install (--quiet )?-e '\.\[test\]'", ci)
    assert "ruff check" in ci and "pytest" in ci and "-eq 5" in ci
    assert re.search(r"^mypy$", ci, re.MULTILINE), "CI type-checks the package (settings in pyproject.toml)"
