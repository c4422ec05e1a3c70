"""Audit a17, review of 97f812f (findings 2 and 3): the plot's gaps by inspect's rule must not cut a line at steps
it was never logged at. Each run is built with ``RunWriter``; the figure is read back (line points and note).

- F2: a role logged every other step (judge at even steps, solver at every step) in a split with a step logged
  with no rows, or whose file could not be read, was drawn as isolated points, the panel saying "judge: steps 1,
  3, 7 and 1 more missing": the gcd of the judge's steps and that step was 1. A line's cadence is told from its
  own steps; the split's empty or unread step breaks it only where its cadence has a step.
- F3: a scalar key logged at steps 1, 10, 20, ..., 100 was drawn as 11 points with "gaps: steps 2..9, 11..19,
  ... missing": inspect's gcd rule, whose own docstring says the scalars' steps tell no stride. A key's gaps are
  by its most common difference again (the rule before 97f812f): one line, no note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from runlog import open_run  # noqa: E402
from runlog.analysis.inspect import inspect_run  # noqa: E402
from runlog.plots import figures as F  # noqa: E402
from runlog.plots import make_figure  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402


def row(step: int, roles: list[str]) -> dict:
    return {
        "reward": float(step),
        "reward_components": {"acc": float(step)},
        "roles": [{"role": r, "reward": float(step), "kl": 0.1 + step} for r in roles],
    }


def judged_run(root: Path, *, empty: tuple[int, ...] = (), skip: tuple[int, ...] = ()) -> Path:
    """Solver at every step 0..10, judge at the even steps only; ``empty`` steps logged with no rows, ``skip``
    steps never logged."""
    with RunWriter(root, name=root.name, roles=["solver", "judge"]) as w:
        for step in range(11):
            if step in skip:
                continue
            roles = ["solver", "judge"] if step % 2 == 0 else ["solver"]
            w.log_samples(step, [] if step in empty else [row(step, roles)] * 2)
    return root


def segments(ax, label: str) -> list[tuple[int, int]]:  # noqa: ANN001
    """The first and last step of each unbroken piece of the line ``label`` (a NaN point breaks it)."""
    [line] = [x for x in ax.lines if x.get_label() == label]
    out, cur = [], []
    for x, y in np.asarray(line.get_xydata(), dtype=float):
        if np.isnan(y):
            if cur:
                out.append((cur[0], cur[-1]))
            cur = []
        else:
            cur.append(int(x))
    if cur:
        out.append((cur[0], cur[-1]))
    return out


@pytest.mark.parametrize("what", ["reward", "kl"])
def test_a_role_logged_every_other_step_stays_one_line_beside_an_empty_step(tmp_path: Path, what: str) -> None:
    root = judged_run(tmp_path / "empty", empty=(5,))
    assert inspect_run(open_run(root)).empty_steps == {"train": [5]}
    ax = make_figure(open_run(root), what, window=1).axes[0]
    note = F.note_text(ax)
    assert segments(ax, "judge") == [(0, 10)], note
    assert segments(ax, "solver") == [(0, 4), (6, 10)]
    assert "judge" not in note and "missing" not in note, note
    assert "step 5 logged with no rows" in note


def test_a_role_logged_every_other_step_stays_one_line_beside_an_unreadable_step(tmp_path: Path) -> None:
    root = judged_run(tmp_path / "unread")
    [f] = (root / "samples" / "train").glob("step_00000005.*.parquet")
    f.write_bytes(f.read_bytes()[:40])  # truncated: unreadable
    ax = make_figure(open_run(root), "reward", window=1).axes[0]
    note = F.note_text(ax)
    assert segments(ax, "judge") == [(0, 10)], note
    assert segments(ax, "solver") == [(0, 4), (6, 10)], note
    assert "judge" not in note, note


def test_a_gap_of_the_split_off_the_roles_cadence_does_not_cut_it(tmp_path: Path) -> None:
    """Step 5 never logged: the split's gap (inspect lists it) breaks the solver; the judge never had step 5."""
    root = judged_run(tmp_path / "gap", skip=(5,))
    assert inspect_run(open_run(root)).step_gaps["train"] == [[5, 5]]
    ax = make_figure(open_run(root), "reward", window=1).axes[0]
    note = F.note_text(ax)
    assert "gap: step 5 missing" in note and "judge" not in note, note
    assert segments(ax, "judge") == [(0, 10)]
    assert segments(ax, "solver") == [(0, 4), (6, 10)]


def test_an_empty_step_on_the_roles_cadence_cuts_it_there(tmp_path: Path) -> None:
    """Step 4 logged with no rows: a judge step, so the judge line breaks between 2 and 6, and is not said
    missing (the step is said once, as logged with no rows)."""
    root = judged_run(tmp_path / "on", empty=(4,))
    ax = make_figure(open_run(root), "reward", window=1).axes[0]
    note = F.note_text(ax)
    assert segments(ax, "judge") == [(0, 2), (6, 10)], note
    assert segments(ax, "solver") == [(0, 3), (5, 10)]
    assert "judge" not in note and "step 4 logged with no rows" in note, note


def test_a_line_at_every_step_the_split_drew_keeps_the_splits_stride() -> None:
    """Told apart: a judge skipping steps the split has rows at (its own stride), and the only line of a split
    whose odd steps could not be read (the split's stride, 1: it breaks at them)."""
    assert F.line_every([0, 2, 4, 6, 8, 10], 1, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]) == 2
    assert F.line_every([0, 2, 4], 1, [0, 2, 4]) == 1
    assert F.breaks_on([[5, 5], [3, 4], [7, 7]], [0, 2, 4], 2) == [[3, 4]]
    assert F.breaks_on([[5, 5]], [1, 3, 7], 2) == [[5, 5]]


def scalar_run(root: Path, steps: list[int]) -> Path:
    with RunWriter(root, name=root.name) as w:
        for s in range(0, 101, 10):
            w.log_samples(s, [{"reward": 1.0}])
        for s in steps:
            w.log_scalars(s, {"train/loss": 1.0 / (s + 1)})
    return root


def scalar_line(root: Path, window: int = 1) -> tuple[np.ndarray, str]:
    fig = make_figure(open_run(root), "scalars", window=window)
    [ax] = [a for a in fig.axes if any(x.get_label() == "train/loss" for x in a.lines)]
    [line] = [x for x in ax.lines if x.get_label() == "train/loss"]
    return np.asarray(line.get_xydata(), dtype=float), F.note_text(ax)


@pytest.mark.parametrize("window", [1, 3])
def test_a_scalar_key_first_logged_off_its_cadence_is_one_line(tmp_path: Path, window: int) -> None:
    xy, note = scalar_line(scalar_run(tmp_path / "s", [1, *range(10, 101, 10)]), window)
    assert int(np.isfinite(xy[:, 1]).sum()) == 11
    assert not np.isnan(xy[:, 1]).any(), xy
    assert "gap" not in note and "missing" not in note, note


def test_a_scalar_key_that_stopped_being_logged_for_a_while_still_breaks(tmp_path: Path) -> None:
    steps = [s for s in range(0, 101, 5) if not 40 < s < 70]
    xy, note = scalar_line(scalar_run(tmp_path / "h", steps))
    assert int(np.isnan(xy[:, 1]).sum()) == 1
    assert "steps 45..65 every 5 missing" in note, note


def test_inspect_gaps_scalars_by_their_most_common_spacing_and_samples_by_the_gcd():
    """Scalars first logged at step 1, then every 10: stride 10 and no gap (inspect's table said 'gaps 2-9,
    11-19, ...' in red); a sample split that lost every other step keeps its gaps (a review: a first-step rule
    hid 0, 1, 3, 5, 7, 9's lost steps 2, 4, 6, 8)."""
    from runlog.analysis.inspect import gaps_at, scalar_stride, step_gaps

    assert scalar_stride([1, 10, 20, 30, 40]) == 10 and gaps_at([1, 10, 20, 30, 40], 10) == []
    assert gaps_at([1, 10, 30, 40, 50], scalar_stride([1, 10, 30, 40, 50])) == [[20, 20]]
    lost = [0, 10, 20, 40, 60, 80]  # a review: the most common spacing (20) hid 30, 50 and 70
    assert scalar_stride(lost) == 10 and gaps_at(lost, 10) == [[30, 30], [50, 50], [70, 70]]
    assert scalar_stride([1, 10, 20, 30, 40, 45]) == 10  # first and last off the cadence
    assert scalar_stride([1, 10, 20, 30]) == 10 and scalar_stride([0, 10, 20, 25]) == 10  # short runs (a review)
    assert scalar_stride([0, 10, 30, 50, 70]) == 10  # 20, 40, 60 lost: the first difference divides the others
    assert scalar_stride([0, 1, 3, 5, 7, 9, 11]) == 1
    assert step_gaps([0, 1, 3, 5, 7, 9]) == (1, [[2, 2], [4, 4], [6, 6], [8, 8]])
    assert step_gaps([0, 1, 3, 5, 7, 9, 10])[0] == 1
    assert step_gaps([0, 8, 16, 20]) == (8, [])  # a final step off the stride, as before
    assert step_gaps([0, 10, 11, 12, 13]) == (1, [[1, 9]])


def test_the_more_keys_note_is_a_label_the_layout_makes_room_for(tmp_path):
    """The 'N more keys' note was a free text at the figure's bottom edge, over the last panel's x label."""
    from runlog import open_run
    from runlog.analysis.series import RunSeries
    from runlog.plots import make_figure

    from conftest import SAMPLE_RUNS

    fig = make_figure(RunSeries(open_run(SAMPLE_RUNS / "debate_grpo")), "scalars")
    label = fig.get_supxlabel()
    assert label.endswith("more keys: narrow with --keys")
    assert [t for t in fig.texts if "more keys" in t.get_text()] == [fig._supxlabel]  # the label alone
