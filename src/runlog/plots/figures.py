"""Drawing: matplotlib figures from the per-step series, readable without a caption.

matplotlib is imported here only, lazily, and used through its object API with the Agg canvas (no
``pyplot``, no global backend switch, nothing opens a window), so a library caller's own matplotlib setup is
left alone. Conventions: one colour per role (stable across plots of one run), the moving average drawn
bold over a light raw line with a band of one rolling standard deviation, a log scale for values that span
decades, and a panel that says what is missing instead of an empty or failing plot.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import re
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..analysis.inspect import gaps_at, step_gaps
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
# The largest magnitude drawn: matplotlib's axis of values near the float64 limit (1e308) overflows (its margins,
# its ticks: "arange: cannot compute length", an internal error, an audit). A finite value beyond it is not drawn
# and is said, as NaN and +-inf are (``not_drawn``); ``summarize`` prints it.
DRAWABLE = 1e300
TOO_LARGE = "beyond +-1e300"
LOG_LIMIT = 305  # the decades a log axis may reach (its margins beyond them overflowed: ``maybe_log``)


def drawable(values: Any) -> np.ndarray:
    """Which of ``values`` (floats, NaN for a missing one) have a place on an axis: finite, of magnitude at most
    ``DRAWABLE``."""
    y = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(y) & (np.abs(y) <= DRAWABLE)


LABEL_CHARS = 48  # a name from the data (panel title, legend entry) longer than this is cut in its middle
LEGEND_CHARS = LABEL_CHARS  # (a 6.4-inch panel holds about 75 characters of 9 pt)
TITLE_CHARS_PER_INCH = 7.5  # a figure title (13 pt bold) longer than its figure is cut in its middle
# The share of a panel's column of the grid a name from the data may take: a panel title, centred over its
# panel, then stays clear of its neighbours' titles (and constrained layout does not squeeze the panel); a
# legend entry leaves room for its handle; an onset's label, which starts at its step, for the rest.
TITLE_SHARE, LEGEND_SHARE, MARK_SHARE = 0.8, 0.6, 0.45
NAME_IN_TITLE_CHARS = 32  # a run's name in a figure's title, which also says what the figure shows
NOTE_CHARS = 24  # a name inside a panel's note (``not drawn: ... (first: NAME, step 3)``)


# Put before an artist's label that starts with ``_``: matplotlib leaves such a label out of a legend (its
# "nolegend" convention, ``_child0``), so a role ``_solver`` was drawn but never named. A word joiner: ``legend``
# takes it off, and no cleaned name holds one of its own (``visible`` shows it as ``\u2060``).
KEEP_IN_LEGEND = "\u2060"


def clean_name(text: Any) -> str:
    """Data (run names, roles, keys) as matplotlib text: control characters visible, one line, and ``$``
    escaped so that mathtext never parses it."""
    from ..render.safe import one_line

    return one_line(str(text)).replace("$", r"\$")


def clean_label(text: Any) -> str:
    """``clean_name`` as an artist's label (a legend entry): a name that starts with ``_`` is marked
    (``KEEP_IN_LEGEND``), so that ``legend`` lists it under its own name, as any other."""
    name = clean_name(text)
    return KEEP_IN_LEGEND + name if name.startswith("_") else name


def clean_text(text: Any) -> str:
    """Text that carries data (a note naming speakers, a ``--spec``, a run's name) as a matplotlib text of one
    or more lines: control characters visible, its own newlines kept, and ``$`` escaped so that mathtext never
    parses it (a speaker ``$x^{$`` failed the drawing; ``$\\frac{a}{b}$`` was typeset)."""
    from ..render.safe import safe

    return safe(str(text)).replace("$", r"\$")


def wrapped(text: str, width: float, fontsize: float) -> str:
    """``text`` (as shown, not yet escaped) wrapped to about ``width`` points at ``fontsize``, line by line:
    matplotlib's own wrapping measures the figure, which a panel's centred note overflows."""
    import textwrap

    chars = max(20, int(width / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def shorten(label: str, limit: int) -> str:
    """A ``clean_name`` of at most ``limit`` characters (as shown): cut in the middle with ``…``, so that names
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

    props = FontProperties(size=fontsize, weight=weight)
    width, _, _ = text_to_path.get_text_width_height_descent(text, props, False)
    return float(width)


# matplotlib's warning for a character its font has no glyph for (a role named in CJK or with an emoji): two lines
# of Python's warning format on stderr per character and per place that measures or draws it (24 for one name, an
# audit). Noted instead by the commands (``glyphs_noted`` around all they draw), and said once (``missing_glyphs``).
_GLYPH_WARNING = re.compile(r"Glyph (\d+) .*missing from font\(s\) (.+?)\.?$", re.DOTALL)
_MISSING_GLYPHS: dict[str, set[str]] = {}  # font -> characters it could not draw
# Held while a figure is drawn with its warning filter: figures drawn from threads (a caller's pool) each restored
# the filters another had saved, and one's filter stayed in the process.
_DRAWING = threading.RLock()


@contextlib.contextmanager
def glyphs_noted() -> Iterator[None]:
    """Within (a command, around all it draws): matplotlib's warnings of characters its font cannot draw noted
    (``missing_glyphs``) instead of printed; any other warning shown as it would be (its filters, a caller's
    ``module=`` one too, applied as before). The library's drawing leaves the process's warnings alone: a caller
    of ``save_figure`` or ``build_report`` gets matplotlib's own warnings, from any thread."""
    with warnings.catch_warnings():
        # Every one, not once per place: the characters of each drawing are noted.
        warnings.filterwarnings("always", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        shown = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            found = _GLYPH_WARNING.match(str(message))
            if found is not None and issubclass(category, UserWarning):
                _MISSING_GLYPHS.setdefault(found.group(2), set()).add(chr(int(found.group(1))))
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def missing_glyphs(clear: bool = True) -> str | None:
    """The characters of the figures drawn so far that their font could not draw (a box in the image), in one
    line, or None; ``clear``: forgotten once said. The data keeps them: ``summarize`` and the report's text show
    them."""
    if not _MISSING_GLYPHS:
        return None
    fonts = ", ".join(sorted(_MISSING_GLYPHS))
    chars = sorted(set().union(*_MISSING_GLYPHS.values()))
    shown = " ".join(chars[:10]) + (f" (+{len(chars) - 10} more)" if len(chars) > 10 else "")
    if clear:
        _MISSING_GLYPHS.clear()
    return (
        f"{len(chars)} character(s) of the data could not be drawn in the plot font ({fonts}), shown as boxes: {shown}"
    )


def fit(text: Any, width: float, fontsize: float, *, limit: int = LABEL_CHARS, weight: str = "normal") -> str:
    """A name from the data (a key, a role, a run, a component) as a label: ``clean_name``, cut in its middle
    (``shorten``) to at most ``limit`` characters and to at most ``width`` points at ``fontsize``: wide letters
    (``WWW…``) take more room than the count says, and a label wider than its room runs over its neighbours."""
    label = shorten(clean_name(text), limit)
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


# Colours a role never has: the reward colours (green, red) and the onsets' near-black (``render.colours``
# gives the chat role ``assistant`` green: in a plot it takes a spare colour instead).
RESERVED = ("#008000", "#00ff00", "#800000", "#ff0000", "#000000", ONSET_COLOUR)
# Spare colours after the role palette's own, for runs of more roles than it has (no red, green or black);
# past them the colours repeat with another dash pattern, then with a marker: no two roles drawn alike. No two of
# them are ``alike``.
EXTRA_COLOURS = (
    "#332288",
    "#882255",
    "#8c564b",
    "#999933",
    "#88ccee",
    "#003f5c",
    "#b15928",
    "#cab2d6",
    "#fdbf6f",
    "#5f5f5f",
    "#8c6d31",
)
DASHES: tuple[Any, ...] = ("-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 2)), (0, (8, 2, 2, 2, 2, 2)))
MARKERS: tuple[str | None, ...] = (None, "o", "s", "^", "D", "v", "x", "+")


class Style(NamedTuple):
    """A role's look in a plot."""

    colour: str
    dash: Any = "-"
    marker: str | None = None


def role_styles(roles: Sequence[str | None]) -> dict[str | None, Style]:
    """Each role's look (colour, dash, marker): the colour it has in every output (``render.colours.role_hex``:
    solver, verifier and judge fixed, other names by a stable hash), solid; where two roles of this run would
    share one, or near-identical ones (``alike``: hot pink and orchid read as one), or it is a reserved colour
    (``RESERVED``), the first look unlike every look here: a spare colour of that palette, then of
    ``EXTRA_COLOURS``, then the colours again with another dash, then with a marker."""
    from rich.color import Color

    from ..render.colours import FIXED_SLOTS, base_name, role_hex
    from ..render.colours import PALETTE as ROLE_PALETTE

    colours = [Color.parse(c).get_truecolor().hex for c in ROLE_PALETTE]
    colours += [c for c in EXTRA_COLOURS if c not in colours]
    looks = [Style(c, d, m) for m in MARKERS for d in DASHES for c in colours]
    # Every role that can keeps its own colour (the fixed roles first: solver, verifier and judge are theirs in
    # every output, never taken by a name whose hash falls on them, nor by ``Judge``); the others then take
    # the first look no role here has.
    named = sorted((r for r in roles if r is not None), key=lambda r: base_name(r) not in FIXED_SLOTS)
    out: dict[str | None, Style] = {}
    used: list[Style] = []
    for r in named:
        look = Style(role_hex(r).lower(), DASHES[0], MARKERS[0])
        if look.colour not in RESERVED and not any(alike(look, x) for x in used):
            out[r] = look
            used.append(look)
    # The looks in order, each tried once: one unlike every look in use stays so only until taken, and one
    # alike a look in use stays alike (the looks in use only grow).
    spare = iter(looks)
    for r in named:
        if r not in out:
            # Past every look (hundreds of roles): the role's own colour again.
            look = next((x for x in spare if not any(alike(x, u) for u in used)), Style(role_hex(r).lower()))
            out[r] = look
            used.append(look)
    out[None] = Style(UNKNOWN_COLOUR)
    return {r: out[r] for r in roles}


NEAR_COLOURS = 20.0  # CIE76 colour difference below which two colours read as one (hot pink / orchid: 15)


def alike(a: Style, b: Style) -> bool:
    """Two looks a reader cannot tell apart: the same dash and marker, and colours closer than ``NEAR_COLOURS``."""
    return a.dash == b.dash and a.marker == b.marker and colour_distance(a.colour, b.colour) < NEAR_COLOURS


def colour_distance(a: str, b: str) -> float:
    """The CIE76 difference of two ``#rrggbb`` colours (Euclidean in CIELAB, D65): about how far apart they look,
    which RGB distance is not (hot pink and orchid are 40 apart in RGB, as blue and a darker blue)."""
    return math.dist(_lab(a), _lab(b))


@functools.lru_cache(maxsize=512)
def _lab(colour: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(colour), dtype=float)
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return (float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2])))


def role_colours(roles: Sequence[str | None]) -> dict[str | None, str]:
    """Each role's colour of ``role_styles`` (where colours repeat, their dash or marker tells them apart)."""
    return {r: look.colour for r, look in role_styles(roles).items()}


def rolling(y: np.ndarray, window: int, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trailing moving average and standard deviation over the last ``window`` positions (steps), as
    ``summarize --window`` computes it (polars' ``rolling_mean``): the missing values (``present`` False: a
    step without a value) skipped, a window of missing values only is NaN, and a NaN or +-inf value among
    them makes the average NaN or +-inf (not drawn, and said: ``not_drawn``), never a mean of the others. The
    standard deviation is that of the same window's values (the per-step means), NaN where it holds one."""
    n = len(y)
    keep = np.ones(n, dtype=bool) if present is None else present
    mean = np.full(n, np.nan)
    sd = np.full(n, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):  # values near 1e308: a sum past float64 is inf, not drawn
        for i in range(n):
            lo = max(0, i - window + 1)
            w = y[lo : i + 1][keep[lo : i + 1]]
            if len(w):
                mean[i] = w.mean()
                # One value has no spread to show: no band there (a band of width 0 read as certainty).
                sd[i] = w.std(ddof=1) if len(w) > 1 else np.nan
    return mean, sd


def note_name(label: Any) -> str:
    """A name from the data inside a panel's note, as shown (the note is escaped as a whole: ``clean_text``)."""
    return shorten(clean_name(label), NOTE_CHARS).replace(r"\$", "$")


def not_drawn(lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> str | None:
    """What a line plot cannot draw, in one line: the values of ``(label, steps, values)`` that are NaN or
    +-inf, or finite beyond ``DRAWABLE`` (no place on an axis; ``summarize`` prints them), how many and the first;
    None when every value is drawable or missing."""
    bad = [
        (int(step), label, float(v))
        for label, steps, values in lines
        for step, v in zip(steps, values, strict=True)
        if v is not None and not (math.isfinite(float(v)) and abs(float(v)) <= DRAWABLE)
    ]
    if not bad:
        return None
    step, label, v = min(bad, key=lambda b: b[0])
    kinds = sorted({_kind(x) for *_, x in bad}, key=lambda k: (k == TOO_LARGE, k))
    where = f"{note_name(label)}, " if len(lines) > 1 else ""
    return f"not drawn: {len(bad)} value(s) {'/'.join(kinds)} (first: {where}step {step})"


def _kind(x: float) -> str:
    """A value that is not drawn, by kind: ``NaN``, ``+inf``, ``-inf`` or ``TOO_LARGE``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return TOO_LARGE


def say_not_drawn(ax: Any, lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> None:
    """``not_drawn``'s line in the panel's lower left corner, where there is one."""
    text = not_drawn(lines)
    if text is not None:
        panel_note(ax, text)


NOTE_GID = "runlog-note"


def panel_note(ax: Any, text: str) -> None:
    """A line of the panel's note, under the panel (below its x axis, and below a legend placed there: ``legend``):
    what the panel does not draw or draws apart (values that have no place on its axis, gaps in the steps). Drawn
    inside the panel, it covered the lines it was about. Lines said of one panel stack in one text, so that they
    never overlap; the text is the data's as shown (``clean_text`` escapes it), wrapped to the panel."""
    shown = wrapped(text, 0.9 * column_width(ax), 8)
    for t in ax.texts:
        if t.get_gid() == NOTE_GID:
            t.set_text(t.get_text() + "\n" + clean_text(shown))
            return
    # Placed from the x axis' label as drawn (its ticks' labels and the label itself vary in height), so that
    # constrained layout makes room for the note under the panel.
    ax.annotate(
        clean_text(shown),
        xy=(0.0, 0.0),
        xycoords=("axes fraction", ax.xaxis.label),
        xytext=(0, -NOTE_GAP),
        textcoords="offset points",
        fontsize=8,
        color="#a33a3a",
        ha="left",
        va="top",
        gid=NOTE_GID,
        annotation_clip=False,
    )


NOTE_GAP = 3.0  # points between a note and what it is placed under


def note_text(ax: Any) -> str:
    """The panel's note as shown (``$`` unescaped), "" where it has none."""
    return next((t.get_text().replace(r"\$", "$") for t in ax.texts if t.get_gid() == NOTE_GID), "")


def stride(steps: Sequence[int], known: Sequence[int] = ()) -> int:
    """The stride of ``steps`` by ``inspect``'s rule (``analysis.inspect.step_gaps``: the gcd of the differences,
    leaving out a final step off the stride; ``known``, the steps of unreadable files, set it too): one rule
    for inspect, doctor, watch and the plots. A most common difference called eval steps 0, 6, 11 "step 5
    missing", and drew a run of steps 0, 1, 2, 4, 6, 8, 10 as one line, where inspect lists 3, 5, 7 and 9."""
    return step_gaps(sorted({int(x) for x in steps}), sorted({int(x) for x in known}))[0]


def gap_ranges(steps: Sequence[int], every: int | None = None) -> list[list[int]]:
    """The missing steps of ``steps``, as ``step_gaps`` lists them (``[[first_missing, last_missing], ...]``):
    the stride's steps between two steps that none holds; at ``every`` where given (a line's own cadence)."""
    s = sorted({int(x) for x in steps})
    return step_gaps(s)[1] if every is None else gaps_at(s, every)


def gaps(steps: Sequence[int], every: int | None = None) -> list[tuple[int, int]]:
    """The consecutive steps ``(a, b)`` between which steps are missing: ``b - a`` larger than ``every``
    (default: the steps' own ``stride``), the steps around ``gap_ranges``."""
    s = np.unique(np.asarray(steps, dtype=np.int64))
    every = every or stride(s.tolist())
    return [(int(a), int(b)) for a, b in zip(s[:-1], s[1:], strict=True) if b - a > every]


GAPS_LISTED = 6  # the runs of missing steps a note names, as inspect's table names them


def range_words(ranges: Sequence[Sequence[int]], every: int, listed: int = GAPS_LISTED) -> str | None:
    """Runs of missing steps (``[first, last]``, ``every`` apart) in words (``gaps: steps 3, 10..19 missing``),
    None without one: the first ``listed`` runs and a count of the others."""
    if not ranges:
        return None
    step_every = f" every {every}" if every > 1 else ""
    said = [f"{a}" if a == b else f"{a}..{b}{step_every}" for a, b in ranges[:listed]]
    more = f" and {len(ranges) - listed} more" if len(ranges) > listed else ""
    one = len(ranges) == 1 and ranges[0][0] == ranges[0][1]
    head = f"{'gap' if len(ranges) == 1 else 'gaps'}: step{'' if one else 's'}"
    return f"{head} {', '.join(said)}{more} missing (the line breaks there)"


def gap_words(steps: Sequence[int], every: int | None = None, listed: int = GAPS_LISTED) -> str | None:
    """The gaps of ``steps`` in words (``gap: steps 10..19 missing``), None without one."""
    return range_words(gap_ranges(steps, every), every or stride(steps), listed)


def say_gaps(ax: Any, steps: Sequence[int], every: int | None = None) -> None:
    """``gap_words`` in the panel's note, where the steps have a gap."""
    text = gap_words(steps, every)
    if text is not None:
        panel_note(ax, text)


def empty_words(steps: Sequence[int], every: int = 1) -> str | None:
    """Steps whose files hold no row (``inspect``'s ``empty_steps``: logged, every rollout filtered out), in
    words, None without one: present, not missing, though no line has a point there."""
    if not steps:
        return None
    many = len(steps) > 1
    said = spans(sorted(steps), every, GAPS_LISTED)
    return f"step{'s' if many else ''} {said} logged with no rows (the line breaks there)"


def line_every(steps: Sequence[int], every: int | None, split_steps: Sequence[int] = ()) -> int:
    """A line's own cadence: the split's stride ``every``, or the line's own (``stride`` of its own steps) where
    it is logged less often than the split: where ``split_steps`` (the steps the split has rows at) hold steps
    between its first and last that it skips (a judge every other step beside a solver at every step: a stride
    of 2, not a gap between each pair of its points). Told from the line's own steps alone: a step of the
    split logged with no rows, or whose file could not be read, is not the line's and does not change its
    cadence (with either at step 5, the gcd of the judge's steps and 5 was 1: its line was cut into dots, and
    its odd steps said missing); such steps break the line through ``breaks_on``. A line at every step the
    split has rows at keeps the split's stride, which the steps of unreadable files set: a line of steps 0, 2,
    5 whose steps 1 and 4 could not be read breaks at them, not at a stride of 2."""
    own = sorted({int(x) for x in steps})
    held = set(own)
    if len(own) > 1 and any(own[0] < k < own[-1] and k not in held for k in (int(x) for x in split_steps)):
        return max(every or 1, stride(own))
    return every or 1


def breaks_on(breaks: Sequence[Sequence[int]], steps: Sequence[int], every: int) -> list[list[int]]:
    """The runs ``[first, last]`` of ``breaks`` (the split's gaps and its steps without rows) that hold a step of
    the line's cadence, ``every`` from its first step: the steps where it could have had a point. A judge logged
    at even steps is not cut at an odd step the split lacks: it was never logged there (its line joined 4 and 6
    before the split's gaps broke every line)."""
    if not steps:
        return []
    first = min(int(x) for x in steps)
    every = max(1, every)
    return [[a, b] for a, b in breaks if a + (first - a) % every <= b]


def holes(steps: Sequence[int], values: Sequence[Any], every: int, known: Sequence[int]) -> tuple[list[int], list[int]]:
    """Where one line of ``(steps, values)`` breaks while the split has data: the steps of ``known`` (the
    split's, sorted) missing from its steps on its cadence ``every`` (a role that sat out steps 6 and 7), and its
    steps without a valid value (``None``: every value null or NaN). The steps missing for every line are a gap of
    the split (``say_gaps``), not listed here. Found among the split's steps inside each gap, never by walking the
    gap's steps: steps 3 and 10**10 were ten billion steps to try (the plot never ended, an audit)."""
    missing: list[int] = []
    every = max(1, every)
    for a, b in gaps(steps, every) if len(steps) > 1 else []:
        inside = known[bisect.bisect_right(known, a) : bisect.bisect_left(known, b)]
        missing += [int(k) for k in inside if (k - a) % every == 0]
    empty = [int(st) for st, v in zip(steps, values, strict=True) if v is None]
    return missing, empty


def spans(steps: Sequence[int], every: int = 1, listed: int = 3) -> str:
    """``6..7, 20`` of sorted steps (runs of ``every`` apart as ``a..b``), the first ``listed`` runs and a count."""
    runs: list[list[int]] = []
    for k in steps:
        if runs and k - runs[-1][-1] == every:
            runs[-1].append(k)
        else:
            runs.append([k])
    said = [f"{r[0]}..{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs[:listed]]
    more = f" and {len(runs) - listed} more" if len(runs) > listed else ""
    return ", ".join(said) + more


def hole_words(
    lines: Sequence[tuple[str, Sequence[int], Sequence[Any], int]], known: Sequence[int], listed: int = 4
) -> str | None:
    """The steps at which a line of ``(label, steps, values, every)`` breaks while the split has data there
    (``holes``), per line, in one line; None when no line has one. A line broken without a word read as a
    drawing fault, and a step missing for one role only is no gap of the split (``say_gaps``)."""
    have = sorted({int(k) for k in known})
    said = []
    for label, steps, values, every in lines:
        missing, empty = holes(steps, values, every, have)
        parts = []
        if missing:
            parts.append(f"step{'s' if len(missing) > 1 else ''} {spans(missing, every)} missing")
        if empty:
            parts.append(f"no valid value at step{'s' if len(empty) > 1 else ''} {spans(empty, every)}")
        if parts:
            said.append(f"{note_name(label)}: {', '.join(parts)}")
    if not said:
        return None
    more = f"; and {len(said) - listed} more lines" if len(said) > listed else ""
    return "; ".join(said[:listed]) + more + " (the line breaks there)"


def say_holes(ax: Any, lines: Sequence[tuple[str, Sequence[int], Sequence[Any], int]], known: Sequence[int]) -> None:
    """``hole_words`` in the panel's note, where a line has one."""
    text = hole_words(lines, known)
    if text is not None:
        panel_note(ax, text)


def not_positive(lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> str | None:
    """What a log axis cannot draw, in one line: the finite values <= 0 of ``(label, steps, values)``, how
    many and the first; None when there is none. Those values are in the moving average (it is over the real
    values); only their points are not drawn."""
    bad = [
        (int(step), label)
        for label, steps, values in lines
        for step, v in zip(steps, values, strict=True)
        if v is not None and math.isfinite(float(v)) and float(v) <= 0
    ]
    if not bad:
        return None
    step, label = min(bad, key=lambda b: b[0])
    where = f"{note_name(label)}, " if len(lines) > 1 else ""
    return f"log axis: {len(bad)} step value(s) <= 0 not drawn (first: {where}step {step})"


def say_not_positive(ax: Any, lines: Sequence[tuple[str, Sequence[int], Sequence[Any]]]) -> None:
    """``not_positive``'s line in the panel's note, where there is one."""
    text = not_positive(lines)
    if text is not None:
        panel_note(ax, text)


def auto_window(n: int) -> int:
    """About a tenth of the run, at least 1 and at most 25 steps (``plot --help`` says the cap)."""
    return max(1, min(25, round(n / 10)))


def draw_series(
    ax: Any,
    steps: Sequence[int],
    values: Sequence[Any],
    *,
    label: str,
    colour: str,
    window: int,
    every: int | None = None,
    log: bool = False,
    dash: Any = "-",
    marker: str | None = None,
    breaks: Sequence[Sequence[int]] = (),
) -> bool:
    """Raw line (light), moving average (bold) and a +-1 rolling SD band. False when nothing is finite.

    The lines break at a gap in the steps (consecutive steps further apart than ``every``, this line's own
    cadence: ``line_every``; default: these steps' own stride), and across each ``[first, last]`` run of
    ``breaks`` (the split's gaps, as inspect lists them, and its steps without rows): a line across ten missing
    steps reads as data there. The raw line also breaks at a step whose value it does not draw (no valid value,
    NaN, +-inf, or <= 0 on a log axis): a segment over it reads as a value there; so does the moving average at
    a step without a valid value (and over a window that holds a NaN or +-inf). A point that no segment reaches
    (a lone step between breaks) gets a marker, or it would not be seen. The moving average is over the last ``window``
    logged steps, as ``summarize --window``'s, and over the real values: on a ``log`` axis, the values <= 0
    are in it, and only their points are not drawn (``say_not_positive``). ``dash`` and ``marker``: the
    line's look where colours repeat (``role_styles``)."""
    x = np.asarray(steps, dtype=float)
    y = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    present = np.array([v is not None for v in values], dtype=bool)
    ok = drawable(y)
    if not ok.any():
        return False
    cuts = [*(gaps([int(v) for v in steps], every) if len(steps) > 1 else []), *((int(a), int(b)) for a, b in breaks)]
    shown = ok & (y > 0) if log else ok
    # A step not drawn: a break of the raw line at it, as at a gap (``broken`` cuts the segment over it).
    holes = cuts + [(int(s), int(s)) for s in x[~shown]]
    if window <= 1:
        if shown.any():
            bx, [by] = broken(x[shown], [y[shown]], holes)
            ax.plot(
                bx,
                by,
                color=colour,
                linewidth=2.0,
                linestyle=dash,
                label=clean_label(label),
                **markers(by, marker, every_point=shown.sum() < 30),
                ms=3,
            )
        return True
    mean, sd = rolling(y, window, present)
    mean[~drawable(mean)] = np.nan  # an average over a NaN or +-inf value (or too large to draw): a gap in the line
    # No point of the average at a step without a valid value (every value null or NaN there): the average of
    # the steps before it, drawn at it, read as a value there, while the panel says the line breaks there.
    mean[~present] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        sd[~drawable(mean + sd) | ~drawable(mean - sd) | ~present] = np.nan
    if log:
        mean[~(mean > 0)] = np.nan
    if shown.any():
        rx, [ry] = broken(x[shown], [y[shown]], holes)
        ax.plot(rx, ry, color=colour, alpha=0.3, linewidth=1.0)
    bx, [bm, bs] = broken(x, [mean, sd], cuts)
    ax.fill_between(bx, bm - bs, bm + bs, color=colour, alpha=0.12, linewidth=0)
    ax.plot(bx, bm, color=colour, linewidth=2.2, linestyle=dash, label=clean_label(label), **markers(bm, marker), ms=4)
    return True


MARK_EVERY = 12  # a line told apart by its marker (``role_styles``) has about this many along it


def markers(y: np.ndarray, marker: str | None, every_point: bool = False) -> dict[str, Any]:
    """``ax.plot``'s marker options for a line of points ``y`` (NaN: a break): ``marker`` (the line's look)
    about ``MARK_EVERY`` times along it, or at every point with ``every_point``; and, whatever its look, a marker
    at each point that no segment reaches (a step between two breaks), which a line alone does not show."""
    finite = np.isfinite(np.asarray(y, dtype=float))
    if every_point:
        return {"marker": marker or "o"}
    before = np.concatenate([[False], finite[:-1]])
    after = np.concatenate([finite[1:], [False]])
    at = set(np.flatnonzero(finite & ~before & ~after).tolist())
    if marker is not None:
        at.update(np.flatnonzero(finite)[:: max(1, int(finite.sum()) // MARK_EVERY)].tolist())
    if not at:
        return {"marker": None}
    return {"marker": marker or "o", "markevery": sorted(at)}


def broken(x: np.ndarray, ys: list[np.ndarray], breaks: Sequence[tuple[int, int]]) -> tuple[Any, list[Any]]:
    """``x`` and ``ys`` with a NaN point inserted between two consecutive points
    that a gap ``(a, b)`` of ``breaks`` lies between: matplotlib breaks a line, and a band, at a NaN."""
    if not breaks or len(x) < 2:
        return x, ys
    cut = [k for k in range(len(x) - 1) if any(x[k] <= a and b <= x[k + 1] for a, b in breaks)]
    if not cut:
        return x, ys
    at = np.asarray(cut) + 1
    # At the step before the gap: no x of a step that is not in the data (a reader of the line's points finds
    # the steps it has, and a NaN after the last before each gap).
    return np.insert(x, at, x[at - 1]), [np.insert(y, at, np.nan) for y in ys]


def maybe_log(ax: Any, values: Sequence[Any]) -> bool:
    """Log scale when the positive values span at least LOG_SPAN (KL that blew up, lengths that exploded) and
    none is negative."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    v[~drawable(v)] = np.nan  # not drawn (``not_drawn``): no part of the axis' range
    if (v[np.isfinite(v)] < 0).any():  # a log axis would hide the negative values (a loss, an advantage)
        return False
    pos = v[np.isfinite(v) & (v > 0)]
    if len(pos) >= 2 and pos.max() / pos.min() >= LOG_SPAN:
        ax.set_yscale("log")
        # matplotlib's margins (5% of the decades shown) took an axis of 0.01 to 1e299 beyond the float range: its
        # limits overflowed to inf, the axis fell back to 1..10 and no point was on it (a RuntimeWarning printed).
        # Such an axis gets its limits here, the margins kept as far as they stay finite.
        lo, hi = math.log10(float(pos.min())), math.log10(float(pos.max()))
        pad = 0.05 * (hi - lo)
        if hi + pad > LOG_LIMIT or lo - pad < -LOG_LIMIT:
            from matplotlib.ticker import FixedLocator, NullLocator

            bottom, top = max(lo - pad, -LOG_LIMIT, lo - 1), min(hi + pad, LOG_LIMIT, hi + 1)
            ax.set_ylim(10**bottom, 10**top)
            # Its ticks too (matplotlib's locator took decades beyond the float range, and warned): at most 8.
            step = max(1, math.ceil((top - bottom) / 7))
            first = math.ceil(bottom / step) * step
            ax.yaxis.set_major_locator(FixedLocator([10.0**d for d in range(first, math.floor(top) + 1, step)]))
            ax.yaxis.set_minor_locator(NullLocator())
        return True
    return False


def say(ax: Any, text: str) -> None:
    """An empty panel that says why it is empty. ``text`` is as shown: it may carry data (speakers' names, a
    ``--spec``, run names), so it is ``clean_text``-ed, and wrapped to the panel."""
    shown = clean_text(wrapped(text, 0.9 * column_width(ax), 10))
    ax.text(0.5, 0.5, shown, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def distribution(ax: Any, values: Sequence[Any], colour: str) -> bool:
    """The distribution of ``values`` on ``ax``: a bar per value when there are few distinct values (0/1
    rewards, small integers), else a 20-bin histogram; the count and mean in a corner, and how many values are
    NaN or +-inf (not drawn, not counted). False (and a panel that says so) when no value is finite."""
    raw = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    v = raw[drawable(raw)]
    # NaN, +-inf and values too large for an axis have no place on it: counted in the note (None is no value,
    # not a dropped one).
    nan = sum(1 for x in values if x is not None and math.isnan(float(x)))
    large = int((np.isfinite(raw) & ~drawable(raw)).sum())
    kinds = ((nan, "NaN"), (int((raw == np.inf).sum()), "+inf"), (int((raw == -np.inf).sum()), "-inf"))
    dropped = ", ".join(f"{n} {kind}" for n, kind in (*kinds, (large, TOO_LARGE)) if n)
    if not len(v):
        valid = "no value to draw" if large else "no valid values"
        say(ax, valid + (f" (not drawn: {dropped})" if dropped else ""))
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
    with np.errstate(over="ignore"):  # a mean of values near 1e300: inf, said so
        mean = v.mean()
    note = f"n={len(v):,}, mean={mean:.4g}" + (f", all {distinct[0]:.4g}" if len(distinct) == 1 else "")
    note += f"\nnot drawn: {dropped}" if dropped else ""
    ax.text(0.98, 0.97, note, ha="right", va="top", transform=ax.transAxes, fontsize=8, color="#444444")
    ax.set_ylabel("samples")
    whole_counts(ax)
    return True


def whole_counts(ax: Any) -> None:
    """Ticks of a count axis at whole numbers: a histogram of 3 samples is not ticked at 0.5, 1.5, 2.5."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def mark_onsets(ax: Any, marks: Sequence[tuple[int, str]]) -> None:
    """Dashed vertical lines at the doctor's onsets, labelled at the top. The labels of one step are one label
    (a line each); a label that would run into the one before it (a step close by) goes below it: labels drawn
    on top of one another were unreadable."""
    at: dict[int, list[str]] = {}
    for step, label in marks:
        if label not in at.setdefault(int(step), []):
            at[int(step)].append(label)
    if not at:
        return
    room = MARK_SHARE * column_width(ax)
    lo, hi = ax.get_xlim()
    per_step = 0.85 * column_width(ax) / max(hi - lo, 1e-9)  # points per step, about
    end = -math.inf  # where the label before ends (points from the left), and how far down it reaches
    down = 0.0
    for step in sorted(at):
        ax.axvline(step, color=ONSET_COLOUR, linestyle="--", linewidth=1.1, alpha=0.8)
        labels = [fit(x, room, 8) for x in at[step]]
        left = (step - lo) * per_step
        down = down if left < end else 0.0
        ax.annotate(
            "\n".join(labels),
            xy=(step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3 - down),
            textcoords="offset points",
            fontsize=8,
            color=ONSET_COLOUR,
            va="top",
        )
        width = max(text_width(x.replace(r"\$", "$"), 8) for x in labels)
        end = max(end, left + 3 + width + 4)
        down += 11.0 * len(labels)  # 8 pt text: a line is about 10 points high


LEGEND_INSIDE = 8  # a legend of at most this many entries is drawn in its panel, where the lines leave room
LEGEND_ROWS = 12  # a legend under its panel has at most this many rows: past them, its first entries and a count
LEGEND_CELL = 150.0  # points: the most a name takes in a legend of several columns (cut in its middle past it)
LEGEND_FONT = 9.0


def legend(ax: Any) -> None:
    """The panel's legend: in the panel (``loc="best"``) for a few entries; for more (a run of many roles), under
    the panel in as many columns as its width holds, the figure made taller for it. In the panel, a legend of one
    column of 21 entries or more ran off the image and hid the lines; past ``LEGEND_ROWS`` rows, the last entry
    says how many are not listed."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    # The labels were cleaned where they were set (``draw_series``; ``clean_label`` of a clean label would
    # escape its ``\$`` again): cut here to the count and to the panel, a name's ``_`` mark taken off (given
    # to ``ax.legend`` with its handle, a label that starts with ``_`` is listed).
    plain = [x.removeprefix(KEEP_IN_LEGEND).replace(r"\$", "$") for x in labels]
    if len(handles) <= LEGEND_INSIDE:
        room = LEGEND_SHARE * column_width(ax)
        shown = [fit(x, room, LEGEND_FONT, limit=LEGEND_CHARS) for x in plain]
        ax.legend(handles, shown, frameon=False, fontsize=LEGEND_FONT, loc="best")
        return
    legend_below(ax, handles, plain)


def legend_below(ax: Any, handles: list[Any], labels: list[str]) -> None:
    """``legend``'s many entries under the panel: cells of the widest name (at most ``LEGEND_CELL``) side by side
    across the panel's width, row after row (at most ``LEGEND_ROWS``), and the panel's note moved under it."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import ScaledTranslation

    fs = LEGEND_FONT
    # matplotlib's legend spacing, in font sizes: the handle, the pad after it, and between columns.
    handle, pad, between = 2.0, 0.8, 1.5
    shown = [fit(x, LEGEND_CELL, fs, limit=LEGEND_CHARS) for x in labels]
    # The panel's width, less its y axis' labels (about 70 points: the legend stays inside the panel).
    width = column_width(ax) - 70.0

    def columns(names: list[str]) -> int:
        cell = max(text_width(x.replace(r"\$", "$"), fs) for x in names) + (handle + pad + between) * fs
        return max(1, min(len(names), int((width + between * fs) // cell)))

    cols = columns(shown)
    if math.ceil(len(shown) / cols) > LEGEND_ROWS:
        # In a cell of its own, short: the names' cells hold it whole (it is never cut).
        cols = columns([*shown, f"+{len(shown):,} more"])
        kept = cols * LEGEND_ROWS - 1
        more = f"+{len(shown) - kept:,} more"
        handles = [*handles[:kept], Line2D([], [], linestyle="none")]
        shown = [*shown[:kept], more]
    rows = math.ceil(len(shown) / cols)
    fig = ax.get_figure()
    # Under the x axis: its ticks, their labels (9 pt) and its label (10 pt), as matplotlib draws them.
    drop = x_axis_depth() + NOTE_GAP
    anchor = ax.transAxes + ScaledTranslation(0, -drop / 72.0, fig.dpi_scale_trans)
    leg = ax.legend(
        handles,
        shown,
        frameon=False,
        fontsize=fs,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=anchor,
        ncols=cols,
        handlelength=handle,
        handletextpad=pad,
        columnspacing=between,
        borderaxespad=0.0,
    )
    for t in ax.texts:  # the panel's note under the legend
        if t.get_gid() == NOTE_GID:
            t.xycoords = ("axes fraction", leg)
    line = 1.7 * fs  # a row: its text (about 1.2 font sizes) and the space between rows (0.5)
    taller(ax, (rows * line + drop) / 72.0)


_TALLER: weakref.WeakKeyDictionary[Any, dict[int, float]] = weakref.WeakKeyDictionary()  # figure -> {row: inches}


def taller(ax: Any, inches: float) -> None:
    """Make ``ax``'s figure ``inches`` taller for what is drawn under ``ax`` (its legend), once per row of the
    grid (the panels of one row share the room): constrained layout then keeps the panels their height."""
    fig = ax.get_figure()
    spec = ax.get_subplotspec()
    row = spec.rowspan.start if spec is not None else 0
    added = _TALLER.setdefault(fig, {})
    more = inches - added.get(row, 0.0)
    if more > 0:
        fig.set_figheight(fig.get_figheight() + more)
        added[row] = inches


def x_axis_depth() -> float:
    """How far below a panel its x axis reaches, in points: the ticks, their labels (9 pt: ``style_axes``) and
    the axis label, with matplotlib's paddings (``rcParams``)."""
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    def height(size: float) -> float:
        # The height of a line of text, its descent included, as matplotlib lays a label out ("lp").
        _, h, _ = text_to_path.get_text_width_height_descent("lp", FontProperties(size=size), False)
        return float(h)

    label = FontProperties(size=rcParams["axes.labelsize"]).get_size_in_points()  # "medium": 10 pt
    ticks = float(rcParams["xtick.major.size"]) + float(rcParams["xtick.major.pad"])
    return ticks + height(9) + float(rcParams["axes.labelpad"]) + height(label)


def finish(fig: Any, axes: Sequence[Any], used: int) -> None:
    """Hide the grid's unused panels."""
    for ax in axes[used:]:
        ax.set_visible(False)


def save(fig: Any, path: str, fmt: str | None = None) -> None:
    # Drawn in memory, then written: matplotlib's PDF writer, on a full disk, closes its file with a second
    # error (zlib's) that hides the first (``No space left on device``); a failed write is then an OSError of
    # the file alone, which the command says in one line (``cannot write FILE: reason``).
    data = to_bytes(fig, fmt or path.rpartition(".")[2].lower())
    with open(path, "wb") as f:
        f.write(data)


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

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    with _DRAWING, warnings.catch_warnings():
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
    with _DRAWING, warnings.catch_warnings():
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
