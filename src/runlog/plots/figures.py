"""Drawing: matplotlib figures from the per-step series, readable without a caption.

matplotlib is imported here only, lazily, and used through its object API with the Agg canvas (no
``pyplot``, no global backend switch, nothing opens a window), so a library caller's own matplotlib setup is
left alone. Conventions: one colour per role (stable across plots of one run), the moving average drawn
bold over a light raw line with a band of one rolling standard deviation, a log scale for values that span
decades, and a panel that says what is missing instead of an empty or failing plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UsageError, install_hint
from ..textsafe import cut_middle

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
UNKNOWN_COLOUR = "#555555"
# The doctor's onsets: near-black, dashed; no role has this colour (roles are never black, red or green).
ONSET_COLOUR = "#111111"
PANEL_W, PANEL_H = 6.4, 3.6
DPI = 110
LOG_SPAN = 100.0  # max/min of the positive values above which an axis is drawn in log scale
DISCRETE_VALUES = 12  # at most this many distinct values: one bar per value instead of a histogram


LABEL_CHARS = 48  # a name from the data (panel title, legend entry) longer than this is cut in its middle
LEGEND_CHARS = LABEL_CHARS  # (a 6.4-inch panel holds about 75 characters of 9 pt)
TITLE_CHARS_PER_INCH = 7.5  # a figure title (13 pt bold) longer than its figure is cut in its middle
# The share of a panel's column of the grid a name from the data may take: a panel title, centred over its
# panel, then stays clear of its neighbours' titles (and constrained layout does not squeeze the panel); a
# legend entry leaves room for its handle; an onset's label, which starts at its step, for the rest.
TITLE_SHARE, LEGEND_SHARE, MARK_SHARE = 0.8, 0.6, 0.45
NAME_IN_TITLE_CHARS = 32  # a run's name in a figure's title, which also says what the figure shows
NOTE_CHARS = 24  # a name inside a panel's note (``not drawn: ... (first: NAME, step 3)``)


def clean_label(text: Any) -> str:
    """Data (run names, roles, keys) as a matplotlib label: control characters visible, one line, and ``$``
    escaped so that mathtext never parses it."""
    from ..render.safe import one_line

    return one_line(str(text)).replace("$", r"\$")


def shorten(label: str, limit: int) -> str:
    """A ``clean_label`` of at most ``limit`` characters (as shown): cut in the middle with ``…``, so that names
    that differ only at their end (``…/format_a``, ``…/format_b``) stay apart. A label wider than its panel
    would leave the panel no room (constrained layout collapses it)."""
    shown = label.replace(r"\$", "$")
    return label if len(shown) <= limit else cut_middle(shown, limit, head=2 / 3).replace("$", r"\$")


def short_name(text: Any, limit: int = NAME_IN_TITLE_CHARS) -> str:
    """A name from the data (a run's) inside a longer text that is cleaned as a whole later (a figure's title,
    by ``new_figure``): shown visibly on one line and cut in its middle to ``limit`` characters, so that the
    rest of the text (what the figure shows) is not cut away for it."""
    from ..render.safe import one_line

    return cut_middle(one_line(str(text)), limit, head=2 / 3)


def text_width(text: str, fontsize: float, weight: str = "normal") -> float:
    """How wide ``text`` (as shown: no mathtext) is drawn in the default font, in points."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    width, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize, weight=weight), False)
    return float(width)


def fit(text: Any, width: float, fontsize: float, *, limit: int = LABEL_CHARS, weight: str = "normal") -> str:
    """A name from the data (a key, a role, a run, a component) as a label: ``clean_label``, cut in its middle
    (``shorten``) to at most ``limit`` characters and to at most ``width`` points at ``fontsize``: wide letters
    (``WWW…``) take more room than the count says, and a label wider than its room runs over its neighbours."""
    label = shorten(clean_label(text), limit)
    shown = label.replace(r"\$", "$")
    if text_width(shown, fontsize, weight) <= width:
        return label
    lo, hi = 1, len(shown) - 1  # the longest cut that fits: at least the ellipsis alone
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(cut_middle(shown, mid, head=2 / 3), fontsize, weight) <= width:
            lo = mid
        else:
            hi = mid - 1
    return cut_middle(shown, lo, head=2 / 3).replace("$", r"\$")


def column_width(ax: Any) -> float:
    """The width of ``ax``'s column of its figure's grid, in points: what its title and legend may share."""
    ncols = ax.get_subplotspec().get_gridspec().ncols if ax.get_subplotspec() is not None else 1
    return float(ax.get_figure().get_figwidth()) * 72.0 / max(1, ncols)


def panel_title(ax: Any, text: Any, fontsize: float = 10) -> None:
    """Set a panel's title from the data (a key, a role, a component): cleaned and cut to fit its panel."""
    ax.set_title(fit(text, TITLE_SHARE * column_width(ax), fontsize), fontsize=fontsize)


def mpl() -> Any:
    """The matplotlib module, or a usage error that says how to install it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (checks the whole stack imports)
    except ImportError:
        raise UsageError(f"plots need matplotlib: {install_hint('plot')}") from None
    return matplotlib


def new_figure(rows: int, cols: int, title: str, *, width: float | None = None, height: float | None = None) -> Any:
    """A figure of ``rows`` x ``cols`` panels with a title; returns (figure, flat list of axes)."""
    mpl()
    from matplotlib.figure import Figure

    w = width or PANEL_W * cols
    h = height or PANEL_H * rows + 0.5
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    shown = fit(title, 0.95 * w * 72, 13, limit=max(40, int(w * TITLE_CHARS_PER_INCH)), weight="bold")
    fig.suptitle(shown, fontsize=13, fontweight="bold")
    for ax in axes:
        style_axes(ax)
    return fig, axes


def style_axes(ax: Any) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def role_colours(roles: Sequence[str | None]) -> dict[str | None, str]:
    """Each role's colour: the one it has in every output (``render.colours.role_hex``: solver, verifier and
    judge fixed, other names by a stable hash; never red or green), or, where two roles of this run would
    share one, the next colour of that palette that no role here uses."""
    from rich.color import Color

    from ..render.colours import PALETTE as ROLE_PALETTE
    from ..render.colours import role_hex

    spare = [Color.parse(c).get_truecolor().hex for c in ROLE_PALETTE]
    out: dict[str | None, str] = {}
    for r in (r for r in roles if r is not None):
        colour = role_hex(r)
        if colour in out.values():
            colour = next((c for c in spare if c not in out.values()), colour)
        out[r] = colour
    out[None] = UNKNOWN_COLOUR
    return out


def rolling(y: np.ndarray, window: int, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trailing moving average and standard deviation over the last ``window`` positions (steps), as
    ``summarize --window`` computes it (polars' ``rolling_mean``): the missing values (``present`` False: a
    step without a value) skipped, a window of missing values only is NaN, and a NaN or +-inf value among
    them makes the average NaN or +-inf (not drawn, and said: ``not_drawn``), never a mean of the others."""
    n = len(y)
    keep = np.ones(n, dtype=bool) if present is None else present
    mean = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        for i in range(n):
            lo = max(0, i - window + 1)
            w = y[lo : i + 1][keep[lo : i + 1]]
            if len(w):
                mean[i] = w.mean()
                sd[i] = w.std(ddof=1) if len(w) > 1 else 0.0
    return mean, sd


def not_drawn(lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> str | None:
    """What a line plot cannot draw, in one line: the values of ``(label, steps, values)`` that are NaN or
    +-inf (no place on an axis; ``summarize`` prints them), how many and the first; None when every value
    is finite or missing."""
    bad = [
        (int(step), label, float(v))
        for label, steps, values in lines
        for step, v in zip(steps, values, strict=True)
        if v is not None and not math.isfinite(float(v))
    ]
    if not bad:
        return None
    step, label, v = min(bad, key=lambda b: b[0])
    kinds = sorted({"NaN" if math.isnan(x) else "+inf" if x > 0 else "-inf" for *_, x in bad})
    where = f"{shorten(clean_label(label), NOTE_CHARS)}, " if len(lines) > 1 else ""
    return f"not drawn: {len(bad)} value(s) {'/'.join(kinds)} (first: {where}step {step})"


def say_not_drawn(ax: Any, lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> None:
    """``not_drawn``'s line in the panel's lower left corner, where there is one."""
    text = not_drawn(lines)
    if text is not None:
        ax.text(0.01, 0.01, text, transform=ax.transAxes, fontsize=8, color="#a33a3a", ha="left", va="bottom")


def auto_window(n: int) -> int:
    """About a tenth of the run, at least 1 and at most 25 steps."""
    return max(1, min(25, round(n / 10)))


def draw_series(ax: Any, steps: Sequence[int], values: Sequence[Any], *, label: str, colour: str, window: int) -> bool:
    """Raw line (light), moving average (bold) and a +-1 rolling SD band. False when nothing is finite."""
    x = np.asarray(steps, dtype=float)
    y = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    present = np.array([v is not None for v in values], dtype=bool)
    ok = np.isfinite(y)
    if not ok.any():
        return False
    if window <= 1:
        ax.plot(
            x[ok],
            y[ok],
            color=colour,
            linewidth=2.0,
            label=clean_label(label),
            marker="o" if ok.sum() < 30 else None,
            ms=3,
        )
        return True
    mean, sd = rolling(y, window, present)
    mean[~np.isfinite(mean)] = np.nan  # an average over a NaN or +-inf value: a gap in the line
    sd[~np.isfinite(sd)] = np.nan
    ax.plot(x[ok], y[ok], color=colour, alpha=0.3, linewidth=1.0)
    ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.12, linewidth=0)
    ax.plot(x, mean, color=colour, linewidth=2.2, label=clean_label(label))
    return True


def maybe_log(ax: Any, values: Sequence[Any]) -> bool:
    """Log scale when the positive values span at least LOG_SPAN (KL that blew up, lengths that exploded) and
    none is negative."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    if (v[np.isfinite(v)] < 0).any():  # a log axis would hide the negative values (a loss, an advantage)
        return False
    pos = v[np.isfinite(v) & (v > 0)]
    if len(pos) >= 2 and pos.max() / pos.min() >= LOG_SPAN:
        ax.set_yscale("log")
        return True
    return False


def say(ax: Any, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#666666", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def distribution(ax: Any, values: Sequence[Any], colour: str) -> bool:
    """The distribution of ``values`` on ``ax``: a bar per value when there are few distinct values (0/1
    rewards, small integers), else a 20-bin histogram; the count and mean in a corner. False (and a panel
    that says so) when no value is finite."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        say(ax, "no valid values")
        return False
    distinct, counts = np.unique(v, return_counts=True)
    if len(distinct) <= DISCRETE_VALUES:
        gaps = np.diff(distinct)
        width = 0.8 * (gaps.min() if len(gaps) else max(abs(distinct[0]), 1.0) * 0.5)
        ax.bar(distinct, counts, width=width, color=colour, alpha=0.75)
        ax.set_xticks(distinct, [f"{x:.4g}" for x in distinct])
        if len(distinct) == 1:
            ax.set_xlim(distinct[0] - width * 2, distinct[0] + width * 2)
    else:
        ax.hist(v, bins=20, color=colour, alpha=0.75)
    note = f"n={len(v):,}, mean={v.mean():.4g}" + (f", all {distinct[0]:.4g}" if len(distinct) == 1 else "")
    ax.text(0.98, 0.97, note, ha="right", va="top", transform=ax.transAxes, fontsize=8, color="#444444")
    ax.set_ylabel("samples")
    return True


def mark_onsets(ax: Any, marks: Sequence[tuple[int, str]]) -> None:
    """Dashed vertical lines at the doctor's onsets, labelled at the top."""
    for step, label in marks:
        ax.axvline(step, color=ONSET_COLOUR, linestyle="--", linewidth=1.1, alpha=0.8)
        ax.annotate(
            fit(label, MARK_SHARE * column_width(ax), 8),
            xy=(step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            fontsize=8,
            color=ONSET_COLOUR,
            va="top",
        )


def legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # The labels were cleaned where they were set (``draw_series``; ``clean_label`` of a clean label would
        # escape its ``\$`` again): cut here to the count and to the panel.
        room = LEGEND_SHARE * column_width(ax)
        shown = [fit(x.replace(r"\$", "$"), room, 9, limit=LEGEND_CHARS) for x in labels]
        ax.legend(handles, shown, frameon=False, fontsize=9, loc="best")


def finish(fig: Any, axes: Sequence[Any], used: int) -> None:
    """Hide the grid's unused panels."""
    for ax in axes[used:]:
        ax.set_visible(False)


def save(fig: Any, path: str, fmt: str | None = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if (fmt or path.rpartition(".")[2].lower()) == "png":
        with open(path, "wb") as f:
            f.write(_png(fig))
        return
    FigureCanvasAgg(fig)
    _savefig(fig, path, fmt)


def to_bytes(fig: Any, fmt: str = "png") -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fmt == "png":
        return _png(fig)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    _savefig(fig, buf, fmt)
    return buf.getvalue()


def _png(fig: Any) -> bytes:
    """The figure as PNG, drawn once: its layout runs in that draw (``savefig`` draws a figure with a layout
    engine twice, the first time only to place it). Written as ``savefig`` writes it (the figure's size and
    dpi, no date or software name: the same run gives the same bytes), in RGB where every pixel is opaque (the
    figure's white ground: the same picture, a smaller file written faster)."""
    import io
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="constrained_layout not applied", category=UserWarning)
        canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    img = Image.fromarray(rgba)
    if int(rgba[..., 3].min()) == 255:
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="png", dpi=(fig.dpi, fig.dpi))
    return buf.getvalue()


def _savefig(fig: Any, target: Any, fmt: str | None) -> None:
    """``fig.savefig``; where a layout finds no room (labels shortened, but a panel crowded by other
    decorations), matplotlib's constrained layout draws the figure without it and warns with its own source line
    on stderr: the figure is kept, and the warning, which is about the layout and not about the data, is not
    printed."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="constrained_layout not applied", category=UserWarning)
        fig.savefig(target, format=fmt, metadata=_metadata(fmt))


def _metadata(fmt: str | None) -> dict[str, Any] | None:
    # No creation date or software version in the files: the same run gives the same bytes.
    if fmt == "png":
        return {"Software": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": None, "Producer": None}
    return None


def grid(n: int, cols: int = 2) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return max(1, math.ceil(n / cols)), cols
