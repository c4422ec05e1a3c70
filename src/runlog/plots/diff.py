"""``runlog plot RUN_A --diff RUN_B``: runs overlaid per role, from ``analysis.diff.diff_series``.

One panel per role (of one split), one colour per run (the baseline first, dashed), each run's per-step mean
with its confidence band (``mean +- z sd / sqrt(n)`` at the diff's ``ci``). Only the steps a run shares with
the baseline are drawn, so the lines compare like with like.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..schema import NULL_ROLE_LABEL
from . import figures as F

if TYPE_CHECKING:
    import polars as pl

    from ..analysis.diff import Diff

METRICS = {"reward": "Mean reward", "kl": "Mean KL"}


def run_colours(names: list[str]) -> dict[str, str]:
    """One colour per run, in order (the baseline first)."""
    return {n: F.PALETTE[i % len(F.PALETTE)] for i, n in enumerate(names)}


def drawn(
    d: Diff, metric: str = "reward", split: str | None = None, *, alone: bool = False
) -> tuple[str | None, pl.DataFrame]:
    """The split the overlay shows and its rows of ``diff_series``: ``split`` where a compared run has values
    there, else, of the splits where one has, the one the doctor reads by default (``series.default_split``:
    ``train``, else the training split, not an evaluation that sorts first); no rows when none has. With
    ``alone``, each run's own values (``own_series``), for runs with nothing to compare (one run's files could
    none be read), of the splits where a run has values."""
    from ..analysis.diff import diff_series

    if metric not in METRICS:
        raise UsageError(f"--what {metric}: with --diff, expected reward or kl")
    series = own_series(d, metric) if alone else diff_series(d, metric)
    compared = (series if alone else series.filter(~series["baseline"]))["split"].to_list()
    splits = list(dict.fromkeys(compared))
    shown = split if split in splits else _default_split(splits)
    return shown, series.filter(series["split"].is_null() if shown is None else series["split"] == shown)


def _default_split(splits: list[str | None]) -> str | None:
    """Of ``splits`` (where a run has values to draw), the one ``doctor`` reads by default
    (``series.default_split``: ``train``, else the first by name of those not named like an evaluation); rows
    without a split only where no split is named."""
    from ..analysis.series import default_split

    named = sorted(s for s in splits if s is not None)
    return default_split(named)[0] if named else None


def own_series(d: Diff, metric: str = "reward") -> pl.DataFrame:
    """Each run's own per-step means of ``metric`` with their bands, as ``diff_series`` gives them (its schema, no
    difference), at every step the run has a value: what the overlay draws of runs that share nothing because
    one of them has no value (its sample files could none be read): the others drawn alone, not an error with no
    image (``plot --diff`` exits 1 then, as for one run)."""
    import math
    from statistics import NormalDist

    from .._lazy import pl
    from ..analysis.diff.model import SERIES_SCHEMA, frame

    z = NormalDist().inv_cdf(0.5 + d.options.ci / 2)
    rows = []
    for i, (name, per) in enumerate(zip(d.names, d.per_step, strict=False)):
        if per.height == 0 or f"{metric}_mean" not in per.columns:
            continue
        cols = ["split", "role", "step", f"{metric}_mean", f"{metric}_std", f"{metric}_count"]
        for split, role, step, mean, sd, n in per.select(cols).iter_rows():
            if not n:
                continue
            half = z * sd / math.sqrt(n) if mean is not None and sd is not None and n >= 2 else None
            lo, hi = (mean - half, mean + half) if half is not None else (None, None)
            values = (split, role, metric, name, i == 0, step, mean, lo, hi, n, None, None, None)
            rows.append(dict(zip(SERIES_SCHEMA, values, strict=True)))
    return frame(rows, SERIES_SCHEMA).sort("split", "role", pl.col("baseline").not_(), "run", "step", nulls_last=True)


def why_empty(d: Diff, metric: str = "reward", split: str | None = None) -> list[str]:
    """Why the overlay of ``metric`` has nothing to draw, one reason a line: runs without any value of the
    metric (KL, which many layouts do not record) are named first, then the diff's notes (what the runs do not
    share); runs of different layouts still compare, so that note is no reason."""
    reasons = []
    if metric == "kl":
        where = f" in split {split!r}" if split else ""
        without = [name for name, frame in zip(d.names, d.per_step, strict=False) if not _has_kl(frame, split)]
        if len(without) == len(d.names):
            both = "neither run has" if len(without) == 2 else "none of the runs has"
            reasons.append(f"{both} KL values{where} (their layouts record none: a `kl` per role in `roles`)")
        elif without:
            has = "has" if len(without) == 1 else "have"
            reasons.append(f"{', '.join(without)} {has} no KL values{where}: nothing to compare the KL of")
    reasons += [n for n in d.notes if not n.startswith("layouts differ")]
    return reasons or ["nothing in common to compare"]


def _has_kl(frame: pl.DataFrame, split: str | None) -> bool:
    if frame.height == 0 or "kl_count" not in frame.columns:
        return False
    if split is not None and "split" in frame.columns:
        frame = frame.filter(frame["split"] == split)
    return bool(frame["kl_count"].fill_null(0).sum())


def diff_figure(d: Diff, metric: str = "reward", split: str | None = None, *, alone: bool = False) -> Any:
    """The overlay figure of ``d`` for ``metric`` (``reward`` or ``kl``) in ``split`` (default: the first
    split with data). A figure that says why when nothing is in common. ``alone``: the runs that have values drawn
    each on its own steps (``own_series``), the others named in each panel's note (nothing to compare)."""
    shown, part = drawn(d, metric, split, alone=alone)
    roles = list(dict.fromkeys(part["role"].to_list()))
    where = f" ({shown})" if shown else ""
    title = f"{METRICS[metric]} per role{where}: " + " vs ".join(F.short_name(n) for n in d.names)
    rows, cols = F.grid(len(roles) or 1)
    fig, axes = F.new_figure(rows, cols, title)
    if not roles:
        # Why (the notes; runs of different layouts still compare, so that note is no reason), wrapped to the
        # panel: matplotlib wraps to the figure, which a single panel's centred text overflows.
        F.say(axes[0], "\n".join(textwrap.fill(r, 60) for r in why_empty(d, metric, split)))
        F.finish(fig, axes, 1)
        return fig
    colours = run_colours(d.names)
    for ax, role in zip(axes, roles, strict=False):
        rows_of_role = part.filter(part["role"].is_null() if role is None else part["role"] == role)
        means = []  # (run, steps, means): a mean of +-inf has no place on the axis, and is said as in ``plot``
        # KL that spans decades: a log axis, where a mean <= 0 has no point (left out, and said).
        log = metric == "kl" and F.maybe_log(ax, rows_of_role["mean"].to_list())
        common = sorted(set(rows_of_role["step"].to_list()))
        breaks = F.gaps(common)
        if alone:
            absent = [n for n in d.names if n not in set(rows_of_role["run"].to_list())]
            if absent:
                F.panel_note(ax, f"no values of {', '.join(absent)} to compare: not drawn")
            if breaks and (words := F.gap_words(common)) is not None:
                F.panel_note(ax, words)
        elif breaks:
            F.panel_note(ax, f"not in every run: {F.gap_words(common)}")
        for name in d.names:
            own = rows_of_role.filter(rows_of_role["run"] == name).sort("step")
            if own.height == 0:
                continue
            baseline = bool(own["baseline"][0])
            steps = own["step"].to_numpy()
            mean = own["mean"].to_numpy().astype(float)
            lo = own["lo"].to_numpy().astype(float)
            hi = own["hi"].to_numpy().astype(float)
            # A value too large for an axis (``figures.DRAWABLE``) is not drawn, and said (``say_not_drawn``).
            mean[~F.drawable(mean)] = float("nan")
            lo[~F.drawable(lo)] = float("nan")
            hi[~F.drawable(hi)] = float("nan")
            if log:
                mean[~(mean > 0)] = float("nan")
            colour = colours[name]
            label = name + (" (baseline)" if baseline else "")
            means.append((label, steps.tolist(), own["mean"].to_list()))
            # The runs are drawn on the steps they all have: a step some run lacks breaks every line there, as in
            # ``plot`` (a line across it drew values no run compared), and is said once in the panel.
            steps, [mean, lo, hi] = F.broken(steps, [mean, lo, hi], breaks)
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.15, linewidth=0)
            ax.plot(
                steps,
                mean,
                color=colour,
                linewidth=2.0,
                linestyle="--" if baseline else "-",
                label=F.clean_label(label),
                marker="o" if len(steps) < 30 else None,
                ms=3,
                # The dashed baseline on top: where the runs agree, it still shows over the compared run's line.
                zorder=3 if baseline else 2,
            )
        F.say_not_drawn(ax, means)
        if log:
            F.say_not_positive(ax, means)
        F.panel_title(ax, role if role is not None else NULL_ROLE_LABEL, fontsize=11)
        ax.set_xlabel("step")
        ax.set_ylabel(METRICS[metric].lower())
        F.legend(ax)
    F.finish(fig, axes, len(roles))
    return fig
