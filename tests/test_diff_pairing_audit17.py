"""Audit a17 (fixD), re-audit finding 1: ``runlog diff`` paired unrelated prompts by their group ids.

Group ids ``g0..g7`` given to a step's groups before DAPO-style filtering dropped the groups whose rewards were all
equal, the survivors keeping their ids, leave each step a random subset of ``g0..g7``. That reads like prompt
names (a dataset of 9 prompts drawn 8 a step holds the same), so the counters rule (``sides.counters``, kept)
passes them, and two runs that shared no prompt were "paired" on 46 (step, prompt)s with a paired verdict. Now a
pairing that rests on group ids alone (no prompt text on either side to confirm them) says so in a note, counts
those pairs (``by_id``) and gives no paired verdict: the unpaired end-window verdict decides. Pairs by prompt text
keep their verdict, and ids whose texts differ are not paired (as before)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import runlog
from runlog import open_run
from runlog.analysis.diff import DiffOptions, diff_runs
from runlog.analysis.diff.sides import counters

STEPS, GROUPS, GROUP = 20, 8, 8
ALONE = "by group id alone"


def _filtered(path: Path, seed: int, text: str | None = None, shift: float = 0.0) -> tuple[Path, set[int]]:
    """A run whose steps hold the groups ``g0..g7`` left after dropping those whose rewards are all equal, ids not
    renumbered; each group a fresh prompt of its own (difficulty U(0, 1)). ``text``: the prompt text, formatted
    with the step and group (None: none logged). Also: the steps whose ids are not ``g0..g{k-1}``."""
    rng = np.random.default_rng(seed)
    gaps = set()
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        for s in range(STEPS):
            rows, kept = [], []
            for g in range(GROUPS):
                r = (rng.uniform(size=GROUP) < min(1.0, rng.uniform() + shift)).astype(float)
                if r.min() == r.max():
                    continue
                kept.append(g)
                row = {"group_id": f"g{g}"} | ({"prompt": text.format(s=s, g=g)} if text else {})
                rows += [row | {"reward": float(x)} for x in r]
            if kept != list(range(len(kept))):
                gaps.add(s)
            w.log_samples(s, rows, split="train")
    return path, gaps


@pytest.fixture(scope="module")
def unrelated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("byid")
    (a, gaps_a), (b, gaps_b) = _filtered(root / "A", 1000), _filtered(root / "B", 5000)
    # The setup is what the finding is about: filtering left gaps at most steps, and the rule reads the ids as names.
    assert len(gaps_a) > STEPS // 2 and len(gaps_b) > STEPS // 2
    return a, b


def test_the_rule_still_reads_these_ids_as_names() -> None:
    """The counters rule is kept (tuned over a 400-run sweep): ``g0..g7`` with different groups dropped at each
    step are not counters to it; the pairing says what it rests on instead."""
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(8, 5, replace=False)) for _ in range(10)]
    assert not counters(np.repeat(np.arange(10), 5), np.concatenate(sets))


def test_a_pairing_by_group_id_alone_has_no_verdict_and_says_so(unrelated: tuple[Path, Path]) -> None:
    """Truth: no prompt is shared (each group a fresh draw in each run). Before: 46 'prompts' paired with the
    verdict ``tie`` and nothing said of what they were paired by."""
    d = diff_runs([open_run(p) for p in unrelated], ["A", "B"], DiffOptions(window=10, boot=500, seed=0))
    [row] = d.paired.to_dicts()
    assert row["prompts"] > 0 and row["by_id"] == row["prompts"]
    assert row["wins"] + row["losses"] + row["ties"] == row["prompts"]  # the counts are kept
    assert row["verdict"] is None
    # The unpaired comparison still gives its verdict (the headline).
    [head] = d.roles.to_dicts()
    assert head["verdict"] in ("ahead", "behind", "tie") and head["prompts"] == row["prompts"]
    [note] = [n for n in d.notes if ALONE in n]
    assert f"pairs its {row['prompts']} (step, prompt) pair(s) {ALONE}" in note
    assert "not the same prompts" in note and "no paired verdict" in note and "log the prompt text" in note


def test_the_cli_says_it_in_json_and_in_the_table(unrelated: tuple[Path, Path], cli) -> None:
    a, b = unrelated
    res = cli("diff", a, b, "-f", "json", "--no-cache", "--boot", "200")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    [row] = out["paired"]
    assert row["verdict"] is None and row["by_id"] == row["prompts"] > 0
    assert [n for n in out["notes"] if ALONE in n]
    assert any(ALONE in line for line in res.stderr.splitlines() if line.startswith("note: "))
    table = cli("diff", a, b, "--no-cache", "--boot", "200")
    assert table.exit_code == 0 and "by_id" in table.stdout


def test_pairs_by_prompt_text_keep_their_verdict(tmp_path: Path) -> None:
    """The same ids, with each (step, group)'s prompt text logged in both runs and B a clear 0.3 better: paired by
    the text, none by id alone, the verdict ``ahead``, no note."""
    text = "prompt of step {s}, group {g}"
    a, _ = _filtered(tmp_path / "A", 7, text)
    b, _ = _filtered(tmp_path / "B", 7, text, shift=0.3)
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=10, boot=500, seed=0))
    [row] = d.paired.to_dicts()
    assert row["prompts"] > 0 and row["by_id"] == 0 and row["verdict"] == "ahead"
    assert not [n for n in d.notes if ALONE in n]


def test_ids_whose_texts_differ_are_not_paired(tmp_path: Path) -> None:
    """The same ids ``g0..g7``, each run its own prompt texts: nothing is paired (the text decides, not the id)."""
    a, _ = _filtered(tmp_path / "A", 1, "run A: prompt {s}-{g}")
    b, _ = _filtered(tmp_path / "B", 2, "run B: prompt {s}-{g}")
    d = diff_runs([open_run(a), open_run(b)], ["A", "B"], DiffOptions(window=10, boot=500, seed=0))
    assert d.paired.height == 0
    assert not [n for n in d.notes if ALONE in n]
    assert [n for n in d.notes if "no prompt in common" in n]
