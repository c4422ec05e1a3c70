"""Audit a17 of ``runlog diff``: the ``roles`` rows' paired figures carry the mark of pairs by group id alone.

Pairs that rest on a group id alone (no prompt text on either side to confirm them) may be no one prompt: the
``paired`` table counts them (``by_id``) and gives them no verdict. The ``roles`` rows carried the same pairing's
``paired_diff``, interval and ``prompts`` with no mark, so a reader of ``roles[]`` (JSON, CSV, the terminal table)
took them for pairs of the same prompt. Now they carry ``paired_by_id``: of those prompts, the ones paired by id.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs

STEPS, GROUPS, GROUP = 20, 8, 8


def _run(path: Path, seed: int, text: str | None = None, shift: float = 0.0) -> Path:
    """Groups ``g0..g7`` per step, those whose rewards are all equal dropped (ids kept), each a fresh prompt;
    ``text``: the prompt text (None: none logged, so that only the ids can pair)."""
    rng = np.random.default_rng(seed)
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            rows = []
            for g in range(GROUPS):
                r = (rng.uniform(size=GROUP) < min(1.0, rng.uniform() + shift)).astype(float)
                if r.min() == r.max():
                    continue
                row = {"group_id": f"g{g}"} | ({"prompt": text.format(s=s, g=g)} if text else {})
                rows += [row | {"reward": float(x)} for x in r]
            w.log_samples(s, rows, split="train")
    return path


@pytest.fixture(scope="module")
def by_id(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rolesbyid")
    return _run(root / "A", 1000), _run(root / "B", 5000)


def test_the_roles_row_marks_pairs_by_group_id_alone(by_id: tuple[Path, Path]) -> None:
    d = diff_runs([open_run(p) for p in by_id], ["A", "B"], DiffOptions(window=10, boot=300, seed=0))
    [pair] = d.paired.to_dicts()
    [head] = d.roles.to_dicts()
    assert pair["by_id"] == pair["prompts"] > 0  # the premise: every pair rests on an id alone
    assert head["paired_diff"] == pair["mean_diff"] and head["prompts"] == pair["prompts"]
    assert head["paired_by_id"] == pair["by_id"]


def test_pairs_by_prompt_text_are_marked_none_by_id(tmp_path: Path) -> None:
    text = "prompt of step {s}, group {g}"
    a, b = _run(tmp_path / "A", 7, text), _run(tmp_path / "B", 7, text, shift=0.3)
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=10, boot=300, seed=0))
    [head] = d.roles.to_dicts()
    assert head["prompts"] > 0 and head["paired_by_id"] == 0


def test_a_role_without_pairs_has_no_mark(tmp_path: Path) -> None:
    """Runs with their own prompt texts pair nothing: no paired figure, and no count of pairs either."""
    a, b = _run(tmp_path / "A", 1, "run A: {s}-{g}"), _run(tmp_path / "B", 2, "run B: {s}-{g}")
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=10, boot=300, seed=0))
    [head] = d.roles.to_dicts()
    assert head["paired_diff"] is None and head["prompts"] is None and head["paired_by_id"] is None


def test_json_csv_and_the_table_carry_the_mark(by_id: tuple[Path, Path], cli, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = by_id
    res = cli("diff", a, b, "-f", "json", "--no-cache", "--boot", "200")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    [role], [pair] = out["roles"], out["paired"]
    assert role["paired_by_id"] == pair["by_id"] == role["prompts"] > 0
    res = cli("diff", a, b, "-f", "csv", "--no-cache", "--boot", "200")
    assert res.exit_code == 0, res.output
    [row] = [r for r in csv.DictReader(io.StringIO(res.stdout)) if r["section"] == "roles"]
    assert row["paired_by_id"] == row["prompts"] == str(pair["prompts"])
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that no column is folded away
    table = cli("diff", a, b, "--no-cache", "--boot", "200")
    assert table.exit_code == 0, table.output
    assert "paired_by_id" in table.stdout
