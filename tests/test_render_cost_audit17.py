"""Audit 17 (review 3, finding 6): render-trajectory reads the data of the selected step's files alone.

Since render-trajectory picks its step by the rows' steps (every native file's footer is probed), the run it
holds has every file open; the role names were then looked up in the data of that whole run on every call,
``--role`` or not: the default view of a 3000-step native run written without manifest roles read the role column
of 3000 files to show one step (CPU 0.65 s -> 1.02 s). The roles are now read only where a role is asked for, from
the selected files first, and from the whole run only where a wanted role is not there (a typo, or a role of
other steps).

Which files' data is read is what ``Run.collect`` is given: each test records it. Expected figures are the ones
written into the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runlog.run import Run

from conftest import native_rows, write_native_samples


def _run(root: Path, steps: int, roles_of: dict[int, tuple[str, ...]] | None = None) -> Path:
    """A native run as ``RunWriter(roles=None)`` writes it: a manifest naming no roles, one file per step (its
    rows of that step), the roles in the data alone (``roles_of[step]``, solver and verifier by default)."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2}))
    for step in range(steps):
        roles = (roles_of or {}).get(step, ("solver", "verifier"))
        rows = native_rows(step, 4, roles=roles)
        write_native_samples(root / "samples" / "train" / f"step_{step:08d}.p0.parquet", rows)
    return root


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The sample files (names) whose data each ``Run.collect`` call reads."""
    seen: list[set[str]] = []
    collect = Run.collect

    def spy(self: Run, build: Any, **kw: Any) -> Any:
        seen.append({Path(f.path).name for f in self.files if f.kind == "samples"})
        return collect(self, build, **kw)

    monkeypatch.setattr(Run, "collect", spy)
    return seen


LAST = "step_00000005.p0.parquet"


def _shown(cli: Any, root: Path, *args: str) -> Any:
    r = cli("render-trajectory", root, "--format", "json", *args)
    return r, (json.loads(r.stdout) if r.exit_code == 0 else None)


def test_the_default_view_reads_the_last_steps_file_alone(cli, tmp_path, reads):
    """Six steps, no manifest roles: the best and worst of step 5 are shown, and no call reads the data of any
    other file (before: the role column of all six files, on every call)."""
    root = _run(tmp_path / "run", 6)
    r, shown = _shown(cli, root)
    assert r.exit_code == 0, r.output
    assert [(c["step"], c["reward"]["total"]) for c in shown] == [(5, 0.75), (5, 0.0)]
    assert reads and all(files <= {LAST} for files in reads), reads


def test_a_role_of_the_selected_files_is_found_there(cli, tmp_path, reads):
    """``--role verifier`` and ``--where role:verifier`` where only the data names the roles: the role is found
    in the last step's file, and no other file is read. The verifier's rewards there are 1, 2, 3, 4."""
    root = _run(tmp_path / "run", 6)
    r, shown = _shown(cli, root, "--role", "verifier", "--best", "1")
    assert r.exit_code == 0, r.output
    assert [(c["step"], c["sample_id"]) for c in shown] == [(5, "s5-3")]
    r, shown = _shown(cli, root, "--steps", "5", "--where", "role:verifier >= 3")
    assert r.exit_code == 0, r.output
    assert sorted(c["sample_id"] for c in shown) == ["s5-2", "s5-3"]
    assert reads and all(files <= {LAST} for files in reads), reads


def test_a_role_not_in_the_selected_files_is_looked_up_in_the_whole_run(cli, tmp_path):
    """A role only an earlier step's data names is the run's (not refused as a typo): the last step has no
    sample of it (exit 1); a role no file names is a usage error listing the run's roles (exit 2)."""
    root = _run(tmp_path / "run", 6, roles_of={1: ("solver", "judge")})
    r, _ = _shown(cli, root, "--steps", "5", "--where", "role:judge >= 0")
    assert r.exit_code == 1, r.output
    assert "no sample matches the selectors (every split, step 5)" in r.stderr
    r, _ = _shown(cli, root, "--role", "jugde")
    assert r.exit_code == 2, r.output
    assert "this run's roles are" in r.stderr and "judge" in r.stderr
