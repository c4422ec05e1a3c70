"""The report's and ``runlog plot``'s PNG is drawn once (``figures._png``: ``savefig`` drew a figure with a layout
engine twice) and written as RGB: it is the picture ``savefig`` draws, every label inside the figure and off its
neighbours, on figures with wide tick labels too."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'runlog[plot]'")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.image import imread  # noqa: E402
from PIL import Image  # noqa: E402

from runlog import RunWriter, open_run  # noqa: E402
from runlog.plots import RunSeries, figure_png, make_figure  # noqa: E402
from runlog.plots.figures import DPI  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "sample_runs"
# Every kind of figure the report draws, and scalars whose tick labels are wide (large values, tiny values in
# scientific notation, a log scale) under long keys.
FIGURES = [("reward", ()), ("kl", ()), ("components", ()), ("diversity", ()), ("format", ()), ("hist", ())]
SCALARS = [("scalars", ("train/*",)), ("scalars", ("debate/*",)), ("scalars", ("big/*",))]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunSeries]:
    root = tmp_path_factory.mktemp("layout") / "wide_ticks"
    with RunWriter(root, name="wide_ticks", roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(20):
            w.log_samples(step, [{"reward": (i % 3) / 2, "solver_reward": (i % 3) / 2} for i in range(6)])
            w.log_scalars(
                step,
                {
                    "big/tokens_processed_in_this_very_long_named_counter": 1.234567e9 + 1e5 * step,
                    "big/tiny_learning_rate": 1e-7 * (1 + step),
                    "big/exploding": 10.0 ** (step / 3),
                    "big/negative": -123456.789 * step,
                },
            )
    return {"debate_grpo": RunSeries(open_run(ROOT / "debate_grpo")), "wide_ticks": RunSeries(open_run(root))}


def drawn(s: RunSeries, what: str, keys: tuple[str, ...]):
    fig = make_figure(s, what, keys=keys)
    FigureCanvasAgg(fig).draw()
    return fig


def cases(s: dict[str, RunSeries]):
    for name, what, keys in [*(("debate_grpo", w, k) for w, k in FIGURES + SCALARS[:2]), ("wide_ticks", *SCALARS[2])]:
        yield f"{name}:{what}:{','.join(keys)}", s[name], what, keys


def test_labels_stay_inside_the_figure_and_off_each_other(series: dict[str, RunSeries]) -> None:
    for case, s, what, keys in cases(series):
        fig = drawn(s, what, keys)
        renderer = fig.canvas.get_renderer()
        page = fig.bbox
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
        for box in boxes:  # tick labels, axis labels, titles: drawn inside the picture
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, case
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), case
        head = fig._suptitle.get_window_extent(renderer)
        assert head.y1 <= page.y1 and all(head.y0 >= box.y1 for box in boxes), case


def test_the_png_is_the_picture_savefig_draws(series: dict[str, RunSeries]) -> None:
    fig = make_figure(series["debate_grpo"], "scalars", keys=["debate/*"])
    png = figure_png(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    ours, theirs = Image.open(io.BytesIO(png)), Image.open(io.BytesIO(buf.getvalue()))
    assert ours.mode == "RGB" and theirs.mode == "RGBA"  # every pixel is opaque: the same picture, no alpha
    assert ours.size == theirs.size == (round(fig.get_figwidth() * DPI), round(fig.get_figheight() * DPI))
    assert np.array_equal(np.asarray(ours), np.asarray(theirs.convert("RGB")))
    assert round(ours.info["dpi"][0]) == DPI and "Software" not in ours.info  # no software name: the same bytes
    assert figure_png(fig) == png


def test_a_figure_with_a_colorbar_keeps_room_for_it(series: dict[str, RunSeries]) -> None:
    fig = make_figure(series["debate_grpo"], "reward")
    [ax] = fig.axes
    mappable = ax.scatter([0, 1], [0, 1], c=[0, 1])
    bar = fig.colorbar(mappable, ax=ax)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    assert not ax.get_tightbbox(renderer).overlaps(bar.ax.get_tightbbox(renderer))
    assert bar.ax.get_tightbbox(renderer).x1 <= fig.bbox.x1


def test_placed_panels_stay_in_the_layout(series: dict[str, RunSeries], tmp_path: Path) -> None:
    """After the PNG, the panels are still in the layout: a caller's ``savefig(bbox_inches="tight")`` keeps them."""
    fig = make_figure(series["debate_grpo"], "scalars", keys=["debate/*"])
    figure_png(fig)
    assert all(ax.get_in_layout() for ax in fig.axes)
    out = tmp_path / "tight.png"
    fig.savefig(out, bbox_inches="tight")  # crops around the panels
    h, w = imread(str(out)).shape[:2]
    assert w > 0.9 * fig.get_figwidth() * DPI and h > 0.9 * fig.get_figheight() * DPI
