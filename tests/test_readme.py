"""README.md's own commands run on a fresh clone: the two commands (past their install step) and every line of
the tour, each with the exit code the README promises, using only what the repository holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _tour() -> list[tuple[str, int]]:
    """(command, promised exit code) of each line of the tour's code block: 0 unless its comment says
    "(exit N".)"""
    block = README.split("## A short tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.strip().splitlines():
        if not line.strip():
            continue
        command, _, comment = line.partition("  #")
        promised = re.search(r"\(exit (\d)", comment)
        lines.append((command.strip(), int(promised.group(1)) if promised else 0))
    return lines


def _two_commands() -> list[str]:
    """What the README's first command runs after installing: the main job on the bundled sample run."""
    block = README.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    parts = [p.strip() for p in block.strip().split("&&")]
    return [p for p in parts if p.startswith("runlog ")]


TOUR = _tour()


def test_the_readme_uses_only_what_the_repository_holds():
    assert len(TOUR) >= 20
    for command, _ in TOUR:
        assert "../shared" not in command and "realdata" not in command, command
        assert not re.search(r"\b(RUN|DIR|PATH)\b", command), f"a placeholder in {command!r}"
        for path in re.findall(r"sample_runs/[\w./-]+", command):
            assert (ROOT / path.rstrip("/*")).exists(), f"{command!r}: {path} is not in the repository"
    assert "../shared" not in README


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder where the commands' outputs go, with the bundled runs as the README names them."""
    work = tmp_path_factory.mktemp("readme")
    (work / "sample_runs").symlink_to(ROOT / "sample_runs")
    return work


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COLUMNS="100", NO_COLOR="1", WANDB_MODE="offline", WANDB_DIR=str(cwd), WANDB_SILENT="true")
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("command", _two_commands())
def test_the_main_job_runs(command, workdir):
    r = _run(command, workdir)
    assert r.returncode == 0, f"{command}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("command", "promised"), TOUR, ids=[c for c, _ in TOUR])
def test_each_tour_line_exits_as_promised(command, promised, workdir):
    r = _run(command, workdir)
    assert r.returncode == promised, f"{command}: exit {r.returncode}, README says {promised}\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
