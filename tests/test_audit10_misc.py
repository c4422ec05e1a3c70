"""Tenth audit, small items found by hand: what a figure's axes say is what they count."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

import runlog  # noqa: E402
from runlog import open_run  # noqa: E402
from runlog.plots import make_figure  # noqa: E402


def _ticks_are_whole(ax) -> bool:  # noqa: ANN001
    fig = ax.figure
    fig.canvas.draw()
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


@pytest.mark.parametrize("what", ["hist", "reward"])
def test_a_count_axis_of_few_samples_is_ticked_at_whole_numbers(tmp_path, what):
    """Three samples at a step: the histogram's 'samples' axis was ticked 0.0, 0.5, ... 3.0."""
    with runlog.RunWriter(tmp_path / "r", name="r", roles=["solver"], durable=False) as w:
        for step in range(2 if what == "hist" else 1):
            rewards = [0.1, 0.1, 0.9] if what == "hist" else [0.1 * i for i in range(9)] + [0.15, 0.25]
            w.log_samples(step, [{"reward": r, "roles": {"solver": {"reward": r}}} for r in rewards])
    fig = make_figure(open_run(tmp_path / "r"), what)
    counted = [ax for ax in fig.axes if ax.get_ylabel() == "samples"]
    assert counted
    assert all(_ticks_are_whole(ax) for ax in counted), [list(ax.get_yticks()) for ax in counted]
