"""Audit a14 of ``runlog plot`` (plotdoctor's findings 1 and 2, and the report audit's finding 7). Each test builds
its run with ``RunWriter`` and reads the drawn figure back (line points, legend and note boxes in the image):

- F1: the bold moving-average line breaks at a step where a role has no valid reward (all NaN), as the panel's
  note and ``plot --help`` say; it had a point there (the mean of the steps before) and no break.
- F2: a run of many roles (44): every legend entry is inside the image and off the lines (the legend of one
  column ran off the image: 24 of 44 entries cut); past the rows a legend holds, it says how many it leaves out.
- F7: the panel's notes are under the panel, not drawn over its lines; no two roles get near-identical colours
  (hot pink and orchid).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from runlog import open_run  # noqa: E402
from runlog.plots import make_figure  # noqa: E402
from runlog.plots.figures import role_styles  # noqa: E402
from runlog.writer import RunWriter  # noqa: E402

NOTE = "runlog-note"  # figures.NOTE_GID


def drawn(fig):  # noqa: ANN001, ANN201
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def note_of(ax):  # noqa: ANN001, ANN201
    [note] = [t for t in ax.texts if t.get_gid() == NOTE]
    return note


def line_of(ax, label: str):  # noqa: ANN001, ANN201
    [line] = [x for x in ax.lines if x.get_label() == label]
    return line


# ---- F1: the moving average breaks where a role has no valid value ---------------------------------------------


def nan_step_run(root: Path) -> Path:
    """12 steps of 4 samples: the judge's reward is step + 1, the solver's is the step, but NaN at step 6."""
    with RunWriter(root, name="nanstep", roles=["solver", "judge"]) as w:
        for s in range(12):
            solver = math.nan if s == 6 else float(s)
            w.log_samples(
                s, [{"reward": 1.0, "roles": {"solver": {"reward": solver}, "judge": {"reward": s + 1.0}}}] * 4
            )
    return root


def test_the_moving_average_breaks_at_a_step_without_a_valid_value(tmp_path: Path) -> None:
    ax = make_figure(open_run(nan_step_run(tmp_path / "run")), "reward", window=3).axes[0]
    xy = line_of(ax, "solver").get_xydata()
    assert not np.isfinite(xy[xy[:, 0] == 6, 1]).any(), xy  # no point of the average at step 6 (it was 4.5)
    finite = xy[np.isfinite(xy[:, 1])]
    # No segment reaches over step 6: consecutive points of the line that are both drawn never straddle it.
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        if np.isfinite(y0) and np.isfinite(y1):
            assert not (x0 < 6 < x1 or x0 == 6 or x1 == 6), (x0, x1)
    # The other steps keep the trailing mean over the last 3 logged steps, of their valid values (as summarize's).
    expected = {5: np.mean([3, 4, 5]), 7: np.mean([5, 7]), 8: np.mean([7, 8]), 11: np.mean([9, 10, 11])}
    got = {float(x): float(y) for x, y in finite}
    for step, mean in expected.items():
        assert got[step] == pytest.approx(mean), (step, got)
    # Its band (one rolling SD) breaks there too: no part of it at step 6.
    colour = to_rgb(line_of(ax, "solver").get_color())
    [band] = [c for c in ax.collections if tuple(c.get_facecolor()[0][:3]) == pytest.approx(colour)]
    xs = np.concatenate([p.vertices[:, 0] for p in band.get_paths()])
    assert 6.0 not in set(xs.tolist())
    assert "solver: no valid value at step 6 (the line breaks there)" in note_of(ax).get_text()


def test_a_judge_with_every_value_valid_is_not_broken(tmp_path: Path) -> None:
    ax = make_figure(open_run(nan_step_run(tmp_path / "run")), "reward", window=3).axes[0]
    y = line_of(ax, "judge").get_ydata()
    assert np.isfinite(y).all() and len(y) == 12


# ---- F2: a legend of many roles ------------------------------------------------------------------------------------

ROLES_44 = [f"agent_{k}" for k in range(40)] + ["solver", "Solver", "judge", "Judge"]


def many_roles_run(root: Path, roles: list[str], steps: int = 10, nan_at: int | None = None) -> Path:
    with RunWriter(root, name="many", roles=roles) as w:
        for s in range(steps):
            rows = []
            for i in range(2):
                per = {r: {"reward": k + 0.1 * i + 0.01 * s} for k, r in enumerate(roles)}
                if s == nan_at:
                    per[roles[0]] = {"reward": math.nan}
                rows.append({"reward": 1.0, "roles": per})
            w.log_samples(s, rows)
    return root


def inside(box, page) -> bool:  # noqa: ANN001
    return page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1


def test_a_legend_of_44_roles_is_whole_inside_the_image_and_off_the_lines(tmp_path: Path) -> None:
    fig = make_figure(open_run(many_roles_run(tmp_path / "run", ROLES_44, nan_at=3)), "reward", window=1)
    renderer = drawn(fig)
    [ax] = fig.axes
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert sorted(texts) == sorted(ROLES_44)  # every role named, once
    for t in legend.get_texts():
        assert inside(t.get_window_extent(renderer), fig.bbox), t.get_text()  # 24 of 44 were cut off
    lb, panel = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert lb.y1 <= panel.y0  # under the panel, not over its lines
    assert panel.x0 - 1 <= lb.x0 and lb.x1 <= panel.x1 + 1  # and within its width
    assert not lb.overlaps(ax.xaxis.label.get_window_extent(renderer))
    # The panel's note (the NaN reward of step 3) is under the legend, whole in the image.
    note = note_of(ax).get_window_extent(renderer)
    assert note.y1 <= lb.y0 and inside(note, fig.bbox)
    # The panel keeps room for its lines: at least 40 % of the image's height.
    assert panel.height >= 0.4 * fig.bbox.height


def test_past_its_rows_a_legend_says_how_many_roles_it_does_not_list(tmp_path: Path) -> None:
    roles = [f"role_{k:03d}" for k in range(150)]
    fig = make_figure(open_run(many_roles_run(tmp_path / "run", roles, steps=4)), "reward", window=1)
    renderer = drawn(fig)
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    more = re.fullmatch(r"\+(\d+) more", texts[-1])
    assert more, texts[-1]
    listed = texts[:-1]
    assert listed == roles[: len(listed)] and len(listed) + int(more.group(1)) == len(roles)
    for t in legend.get_texts():
        assert inside(t.get_window_extent(renderer), fig.bbox), t.get_text()


def test_a_few_roles_keep_their_legend_in_the_panel(tmp_path: Path) -> None:
    fig = make_figure(open_run(nan_step_run(tmp_path / "run")), "reward", window=3)
    renderer = drawn(fig)
    [ax] = fig.axes
    lb, panel = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert panel.x0 <= lb.x0 and lb.x1 <= panel.x1 and panel.y0 <= lb.y0 and lb.y1 <= panel.y1


# ---- F7: notes under the panel; distinct colours ------------------------------------------------------------------


@pytest.mark.parametrize("what", ["reward", "kl"])
def test_the_panels_note_is_under_the_panel_not_over_its_lines(tmp_path: Path, what: str) -> None:
    root = tmp_path / "run"
    with RunWriter(root, name="notes", roles=["solver", "judge"]) as w:
        for s in range(20):
            bad = math.nan if s < 2 else 0.5 + 0.01 * s
            roles = {"solver": {"reward": bad, "kl": bad}, "judge": {"reward": 0.3, "kl": 0.02}}
            w.log_samples(s, [{"reward": 1.0, "roles": roles}] * 3)
    fig = make_figure(open_run(root), what, window=1)
    renderer = drawn(fig)
    [ax] = fig.axes
    note = note_of(ax)
    assert "NaN" in note.get_text()
    box, panel = note.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.y1 <= panel.y0, (box, panel)  # it covered the lines at steps 0-1
    assert not box.overlaps(ax.xaxis.label.get_window_extent(renderer))
    assert inside(box, fig.bbox)


def lab(colour: str) -> np.ndarray:
    """CIELAB (D65) of a colour, written out here from the sRGB and CIE formulas (not runlog's)."""
    c = np.array(to_rgb(colour))
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    x, y, z = (
        np.array(
            [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
        )
        @ c
    )
    x, y, z = x / 0.95047, y / 1.0, z / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    return np.array([116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))])


@pytest.mark.parametrize("roles", [["A", "B", "C"], ROLES_44], ids=["A-B-C", "44 roles"])
def test_no_two_roles_drawn_in_the_same_dash_get_near_identical_colours(tmp_path: Path, roles: list[str]) -> None:
    """In the audit's run of roles A, B and C, A was hot pink and C orchid (CIE76 difference 15)."""
    ax = make_figure(open_run(many_roles_run(tmp_path / "run", roles, steps=4)), "reward", window=1).axes[0]
    styles = role_styles(roles)  # each role's dash and marker (a colour that repeats is told apart by them)
    for a, b in itertools.combinations(roles, 2):
        if (styles[a].dash, styles[a].marker) == (styles[b].dash, styles[b].marker):
            ca, cb = line_of(ax, a).get_color(), line_of(ax, b).get_color()
            difference = float(np.linalg.norm(lab(ca) - lab(cb)))
            assert difference >= 20, (a, ca, b, cb, difference)
