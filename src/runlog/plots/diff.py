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


def drawn(d: Diff, metric: str = "reward", split: str | None = None) -> tuple[str | None, pl.DataFrame]:
    """The split the overlay shows and its rows of ``diff_series``: ``split`` where a compared run has values
    there, else the first split where one has (train first, as diff orders them); no rows when none has."""
    from ..analysis.diff import diff_series

    if metric not in METRICS:
        raise UsageError(f"--what {metric}: with --diff, expected reward or kl")
    series = diff_series(d, metric)
    compared = series.filter(~series["baseline"])["split"].to_list()
    splits = sorted(dict.fromkeys(compared), key=lambda s: (s is None, s != "train", s or ""))
    shown = split if split in splits else (splits[0] if splits else None)
    return shown, series.filter(series["split"].is_null() if shown is None else series["split"] == shown)


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


def diff_figure(d: Diff, metric: str = "reward", split: str | None = None) -> Any:
    """The overlay figure of ``d`` for ``metric`` (``reward`` or ``kl``) in ``split`` (default: the first
    split with data). A figure that says why when nothing is in common."""
    shown, part = drawn(d, metric, split)
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
        if breaks:
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
