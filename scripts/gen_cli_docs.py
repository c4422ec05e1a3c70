"""Regenerate the command reference in docs/cli.md from the CLI's own --help (tests check it is current).

python scripts/gen_cli_docs.py          # rewrite the generated part of docs/cli.md
python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
BEGIN = "<!-- BEGIN GENERATED: runlog --help -->"
END = "<!-- END GENERATED -->"


def command_names() -> list[str]:
    """Every command path, sub-commands of a group included (``metrics diversity``)."""
    from typer.main import get_command

    from runlog.cli.app import app

    names: list[str] = []

    def walk(cmd: object, prefix: list[str]) -> None:
        for name in sorted(getattr(cmd, "commands", {}) or {}):
            sub = cmd.commands[name]  # type: ignore[attr-defined]
            names.append(" ".join([*prefix, name]))
            walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return names


def help_text(args: list[str]) -> str:
    from typer.testing import CliRunner

    from runlog.cli.app import app

    env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    result = CliRunner().invoke(app, [*args, "--help"], env=env, prog_name="runlog")
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(lines).strip("\n")


def generated() -> str:
    parts = [BEGIN, "", "### `runlog`", "", "```text", help_text([]), "```", ""]
    for name in command_names():
        parts += [f"### `runlog {name}`", "", "```text", help_text(name.split()), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def render(current: str) -> str:
    head, _, rest = current.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + generated() + tail


def main() -> int:
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("COLUMNS", "100")
    current = DOC.read_text()
    new = render(current)
    if "--check" in sys.argv:
        if new != current:
            print("docs/cli.md is out of date: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
