"""Audit a17 of ``runlog plot`` against ``runlog inspect`` (inspectplot findings 1 and 4). Each run is built with
``RunWriter``; the figure is read back (line points and the panel's note) and compared with ``inspect_run``:

- F1: the plot's gaps are inspect's (``analysis.inspect.step_gaps``, one rule): a train split of steps 0, 1, 2,
  4, 6, 8, 10 was drawn as one unbroken line with no note (the plot's stride was the most common difference, 2),
  while inspect lists 3, 5, 7 and 9; eval steps 0, 6, 11 were noted "gap: step 5 missing" (a step no cadence
  predicts) where inspect lists 1-5 and 7-10.
- F4: a step logged with no rows (``log_samples(step, [])``) is said as inspect says it, present with no rows
  (``empty_steps``), not "missing"; the lines still break there.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.analysis.inspect import inspect_run, step_gaps  # noqa: E402
from runlog.analysis.series import RunSeries  # noqa: E402
from runlog.plots import figures as F  # noqa: E402
from runlog.plots import make_figure  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402


def sample(step: int, value: float | None = None) -> dict:
    v = float(step) if value is None else value
    return {"reward": v, "reward_components": {"acc": v}, "roles": [{"role": "solver", "reward": v, "kl": 0.1 + v}]}


def run_of(root: Path, train: list[int], *, eval_steps: tuple[int, ...] = (), empty: tuple[int, ...] = ()) -> Path:
    with RunWriter(root, name=root.name, roles=["solver"]) as w:
        for step in sorted({*train, *empty}):
            w.log_samples(step, [] if step in empty else [sample(step)] * 2)
            if step in eval_steps:
                w.log_samples(step, [sample(step, 100.0)] * 2, split="eval")
    return root


def solver_xy(ax) -> np.ndarray:  # noqa: ANN001
    [line] = [x for x in ax.lines if x.get_label() == "solver"]
    return np.asarray(line.get_xydata(), dtype=float)


def break_after(xy: np.ndarray) -> list[int]:
    """The steps after which the line breaks (a NaN point follows them)."""
    return [int(xy[i - 1, 0]) for i in range(1, len(xy)) if np.isnan(xy[i, 1]) and not np.isnan(xy[i - 1, 1])]


def noted_gaps(note: str) -> list[list[int]]:
    """The ``[first, last]`` runs a ``gap(s): step(s) ... missing`` note names."""
    m = re.search(r"gaps?: steps? (.*?) missing", note)
    if m is None:
        return []
    out = []
    for part in re.sub(r" and \d+ more$", "", m.group(1)).split(", "):
        a, _, b = part.split(" every ")[0].partition("..")
        out.append([int(a), int(b or a)])
    return out


@pytest.mark.parametrize("what", ["reward", "kl", "components"])
def test_the_line_breaks_at_each_step_inspect_lists_as_a_gap(tmp_path: Path, what: str) -> None:
    root = run_of(tmp_path / "gaps", [0, 1, 2, 4, 6, 8, 10])
    report = inspect_run(open_run(root))
    assert report.step_gaps["train"] == [[3, 3], [5, 5], [7, 7], [9, 9]]
    ax = make_figure(open_run(root), what, window=1).axes[0]
    note = F.note_text(ax)
    assert noted_gaps(note) == report.step_gaps["train"], note
    assert "gaps: steps 3, 5, 7, 9 missing (the line breaks there)" in note
    lines = [np.asarray(x.get_xydata(), dtype=float) for x in ax.lines if not x.get_label().startswith("_")]
    assert lines
    for xy in lines:  # no segment joins two steps a missing step lies between
        assert break_after(xy) == [2, 4, 6, 8], xy


def test_eval_steps_of_mixed_spacing_are_gapped_as_inspect_gaps_them(tmp_path: Path) -> None:
    root = run_of(tmp_path / "ev", list(range(12)), eval_steps=(0, 6, 11))
    report = inspect_run(open_run(root))
    assert report.step_gaps["eval"] == [[1, 5], [7, 10]]
    ax = make_figure(RunSeries(open_run(root), split="eval"), "reward", window=1).axes[0]
    note = F.note_text(ax)
    assert "step 5 missing" not in note
    assert noted_gaps(note) == [[1, 5], [7, 10]], note
    assert break_after(solver_xy(ax)) == [0, 6]


def test_a_final_step_off_the_stride_is_no_gap_in_either(tmp_path: Path) -> None:
    """Eval every 8 steps and a final one at 20: stride 8 and no gap for inspect, and no break in the plot."""
    root = run_of(tmp_path / "fin", list(range(21)), eval_steps=(0, 8, 16, 20))
    assert inspect_run(open_run(root)).step_gaps["eval"] == []
    ax = make_figure(RunSeries(open_run(root), split="eval"), "reward", window=1).axes[0]
    assert "missing" not in F.note_text(ax)
    assert break_after(solver_xy(ax)) == []


def test_the_plot_stride_is_inspects_stride() -> None:
    """One rule: ``figures.stride`` and ``gap_words`` give ``step_gaps``' stride and gaps for any steps (the most
    common difference gave 2 for 0, 1, 2, 4, 6, 8, 10, and 5 for 0, 6, 11)."""
    rng = random.Random(17)
    cases = [[0, 1, 2, 4, 6, 8, 10], [0, 6, 11], [0, 8, 16, 20], [0, 3, 5], [0, 10]]
    cases += [sorted(rng.sample(range(60), rng.randint(2, 12))) for _ in range(200)]
    for steps in cases:
        stride, gaps = step_gaps(steps)
        assert F.stride(steps) == stride, steps
        words = F.gap_words(steps) or ""
        assert noted_gaps(words) == gaps[: F.GAPS_LISTED], steps
        if len(gaps) > F.GAPS_LISTED:
            assert f"and {len(gaps) - F.GAPS_LISTED} more missing" in words


def test_a_step_logged_with_no_rows_is_said_so_not_missing(tmp_path: Path) -> None:
    root = run_of(tmp_path / "empty", list(range(12)), empty=(7,))
    report = inspect_run(open_run(root))
    assert report.empty_steps == {"train": [7]} and report.step_gaps["train"] == []
    ax = make_figure(open_run(root), "reward", window=1).axes[0]
    note = F.note_text(ax)
    assert "missing" not in note, note
    assert "step 7 logged with no rows (the line breaks there)" in note
    assert break_after(solver_xy(ax)) == [6]


def test_an_empty_step_and_a_gap_are_said_apart(tmp_path: Path) -> None:
    """Step 3 never logged (a gap, as inspect lists it) and step 7 logged with no rows (present)."""
    root = run_of(tmp_path / "both", [0, 1, 2, 4, 5, 6, 8, 9], empty=(7,))
    report = inspect_run(open_run(root))
    assert report.step_gaps["train"] == [[3, 3]] and report.empty_steps == {"train": [7]}
    ax = make_figure(open_run(root), "kl", window=2).axes[0]
    note = F.note_text(ax)
    assert "gap: step 3 missing" in note and "step 7 logged with no rows" in note, note
    assert noted_gaps(note) == [[3, 3]]
    assert break_after(solver_xy(ax)) == [2, 6]
