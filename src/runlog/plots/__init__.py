"""Plots of a run: rewards and KL per role, reward components, diversity and format trends, scalars, and
per-role reward histograms at chosen steps. The library twin of ``runlog plot``::

    from runlog import open_run
    from runlog.plots import make_figure, save_figure

    fig = make_figure(open_run("sample_runs/debate_grpo"), "reward")
    save_figure(fig, "reward.png")

Every figure is built from ``RunSeries`` (``summarize``, ``metrics``, ``Run.scalars``) and says in a panel
what the run does not have (no KL, no texts, no prompt groups), instead of failing.
"""

from __future__ import annotations

import fnmatch
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._lazy import pl
from ..analysis.inspect import gaps_at, scalar_stride, step_gaps
from ..analysis.series import RunSeries
from ..analysis.texts import series_format_note, series_roles_note, series_text_note
from ..errors import UsageError
from ..run import Run
from ..schema import NULL_ROLE_LABEL
from . import figures as F

WHATS = ("reward", "kl", "components", "diversity", "format", "scalars", "hist")
BY_WHATS = ("reward", "kl", "diversity")  # the figures that --by none pools
SUFFIXES = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
MAX_SCALAR_PANELS = 12
FAILED_BARS = 6  # format's rules drawn one bar each; the others in one "other (N rules)" bar
NEVER_FOLLOWED = 0.02  # adherence below this at every step: the rate is said in words instead of drawn
# The format spec's think tags are in the messages' reasoning field (``analysis.texts.reasoning_note``), in short.
REASONING_WORDS = (
    "the texts have no <think> tags: their reasoning is in the messages' `reasoning` field "
    "(runlog metrics format RUN --text auto+reasoning puts it back)"
)

Marks = dict[str, list[tuple[int, str]]]  # plot name -> [(onset step, label)]


def make_figure(
    source: Run | RunSeries,
    what: str,
    *,
    by: str = "role",
    keys: Sequence[str] = (),
    window: int | None = None,
    steps: Sequence[int] = (),
    marks: Marks | None = None,
    title: str | None = None,
) -> Any:
    """The matplotlib Figure for ``what`` (one of ``WHATS``). ``by``: ``role`` (one line per role) or
    ``none`` (pooled; for ``BY_WHATS`` only); ``keys``: globs of scalar keys; ``window``: moving-average
    logged steps (default about a tenth of the run, at most 25; for ``scalars``, the steps at which each key
    was logged, a tenth of them by default); ``steps``: histogram steps; ``marks``: onsets to draw, per plot
    name; ``title``: the figure's title
    (default: the run's name and ``what``).

    A split of one step (an eval dump, a single batch) has no trend to draw: ``reward``, ``kl`` and
    ``components`` are then histograms of the samples' values at that step (one panel per role or
    component), and ``diversity`` and ``format`` say their values in words."""
    if what not in WHATS:
        raise UsageError(f"--what {what!r}: expected one of {', '.join(WHATS)}")
    if by not in ("role", "none"):
        raise UsageError(f"--by {by!r}: expected role or none")
    if window is not None and window < 1:  # whatever is drawn: a run of one step draws no average, and said nothing
        raise UsageError(f"--window {window}: expected a positive number of steps")
    if by == "none" and what not in BY_WHATS:
        # As the other options that do not apply: drawing one histogram per role under --by none said nothing
        # of the option it was given.
        raise UsageError(f"--by none goes with --what {', '.join(BY_WHATS)} (--what {what} has no pooled form)")
    F.mpl()
    s = source if isinstance(source, RunSeries) else RunSeries(source)
    while True:
        # A panel that finds a file unreadable (a corrupt data page behind an intact footer) leaves it out of
        # the panels after it, not of those before: drawn again, every panel leaves it out.
        left = s.run.left_out()
        fig = _figure(s, what, by, keys, window, steps, marks or {}, title)
        if s.run.left_out() == left:
            return fig
        s.forget()


def _figure(
    s: RunSeries,
    what: str,
    by: str,
    keys: Sequence[str],
    window: int | None,
    steps: Sequence[int],
    marks: Marks,
    title: str | None,
) -> Any:
    split = f" ({s.split})" if s.split else ""
    if what == "scalars":
        return _scalars(s, keys, window, title or f"{F.short_name(s.run.name)}: scalars")
    title = title or f"{F.short_name(s.run.name)}: {what}{split}"
    if what == "hist":
        return _hist(s, steps, title)
    if _steps_len(s) == 1 and what in ONE_STEP:
        return ONE_STEP[what](s, title)
    builder = {"reward": _reward, "kl": _kl, "components": _components, "diversity": _diversity, "format": _format}
    return builder[what](s, by, window, title, marks.get(what, []))


def missing(source: Run | RunSeries, what: str) -> str | None:
    """Why the run gives ``what`` nothing to draw, and how a run gets it (one line); None when it has data.
    The figures say the same in their panel; the report says it instead of showing an empty panel."""
    s = source if isinstance(source, RunSeries) else RunSeries(source)
    if what == "scalars":
        return None if scalar_keys(s.run) else NO_SCALARS
    if not s.per_step.height:
        return _no_samples(s)
    if what in ("reward", "hist") and s.total["reward_mean"].null_count() == s.total.height:
        valid = [v for r in s.roles for v in s.role_series(r, "reward_mean")[1] if v is not None]
        return None if valid else "no valid rewards in this split (every reward is null or NaN)"
    if what == "kl" and not s.has_kl:
        return "no KL values: this layout records none (a `kl` per role in `roles`, or Flink's `<role>_kl`)"
    if what == "components" and not s.components():
        return "no reward components: the samples have no `reward_components` (named parts of the reward)"
    if what in ("diversity", "format") and s.diversity is None:
        # Messages without an assistant turn (speakers in the role field) say so, and what reads them.
        return series_text_note(s) or (
            f"no completion texts: {what} cannot be measured (samples need `messages`, `completion` or `trajectory`)"
        )
    return None


NO_SAMPLES = (
    "no per-sample data in this run (only scalar metrics, or no readable sample file): rewards, KL, components "
    "and texts come from samples (`samples/<split>/step_*.parquet`, or another layout's rollouts)"
)


def _no_samples(s: RunSeries) -> str:
    """``NO_SAMPLES``, or, where the split's sample files were read and hold no row, that they are empty."""
    files = [
        f
        for f in s.run.files
        if f.kind == "samples" and f.readable and (f.split is None or s.split is None or f.split == s.split)
    ]
    if not files:
        return NO_SAMPLES
    where = f" of split {s.split}" if s.split else ""
    return (
        f"no samples: the {len(files)} sample file(s){where} hold no rows (their steps were logged with no "
        "sample): rewards, KL, components and texts come from samples"
    )


def say_layouts(fig: Any, s: RunSeries) -> str | None:
    """``views.layouts_note`` of the split drawn (the layouts and tasks whose samples the figure pools as one
    run's: loose dumps side by side in a folder), in the note of the figure's first panel; returned, for the
    command to say it on stderr too, as ``summarize`` does. None where the samples are of one layout of one
    task. Not of the scalars figure: it draws no sample."""
    from ..analysis.views import layouts_note

    note = layouts_note(s.run, by_env=False, splits=[s.split] if s.split else None)
    if note is not None and fig.axes:
        F.panel_note(fig.axes[0], note)
    return note


NO_SCALARS = "no scalar metrics in this run (the trainer's logged metrics: `scalars.p{process}.jsonl`)"


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG, SVG or PDF, chosen by the file's suffix."""
    p = Path(path)
    fmt = SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"-o {p}: unknown image type {p.suffix or '(none)'!r}; use .png, .svg or .pdf")
    if p.parent and not p.parent.exists():
        raise UsageError(f"-o {p}: folder {p.parent} does not exist")
    if p.parent and not p.parent.is_dir():
        raise UsageError(f"-o {p}: {p.parent} is a file, not a folder")
    F.save(fig, str(p), fmt)
    return p


def figure_png(fig: Any) -> bytes:
    return F.to_bytes(fig, "png")


def _steps_len(s: RunSeries) -> int:
    return s.per_step.height


class SplitSteps(NamedTuple):
    """The plotted split's steps as ``inspect`` tells them (``analysis.inspect.step_gaps``, the one rule of
    inspect, doctor, watch and the plots): its stride and gaps, from the steps of its readable files and the rows
    drawn, the steps of unreadable files setting the stride (a gap there, as inspect lists it); and the steps
    held by a file but without a row drawn: ``empty`` (inspect's ``empty_steps``: files of no row, logged with
    every rollout filtered out, present and not a gap), ``unseen`` (another file of the step could not be read,
    or its rows are of another step: that file's problem is listed)."""

    stride: int
    gaps: list[list[int]]
    empty: list[int]
    unseen: list[int]

    @property
    def breaks(self) -> list[list[int]]:
        """Where every line of the split breaks: its gaps and its steps without a row."""
        return [*self.gaps, *([k, k] for k in sorted({*self.empty, *self.unseen}))]


def _split_steps(s: RunSeries) -> SplitSteps:
    """``SplitSteps`` of ``s``'s split, counted as ``inspect_run`` counts a split's steps: a readable file of the
    split holds its steps (its rows, per one-step file, tell an empty step), any file of it names them; a file of
    rows of several splits, whose name tells none, holds the steps its rows drawn here are at."""
    drawn = {int(x) for x in s.per_step["step"].to_list()}
    present, named = set(drawn), set(drawn)
    rows: Counter[int] = Counter()
    not_empty: set[int] = set()
    for f in s.run.files:
        if f.kind != "samples" or not (f.split is None or s.split is None or f.split == s.split):
            continue
        own = [x for x in f.all_steps() if -(2**63) <= x < 2**63]  # beyond int64: no step (inspect's error)
        named.update(own)
        if not f.readable:
            not_empty.update(own)
            continue
        if f.split is not None:
            present.update(own)
        if f.step is not None and f.steps is None:
            rows[f.step] += f.rows or 0
        else:
            not_empty.update(own)
    stride, gaps = step_gaps(sorted(present), sorted(named))
    empty = sorted(k for k, n in rows.items() if n == 0 and k in present and k not in not_empty | drawn)
    unseen = sorted(present - drawn - set(empty))
    return SplitSteps(stride, gaps, empty, unseen)


def _say_steps(ax: Any, s: RunSeries) -> None:
    """The split's gaps (inspect's, the same steps) and its steps without a row, in the panel's note: a step
    logged with no rows is present (inspect's ``empty_steps``), not missing."""
    split = _split_steps(s)
    every = max(1, split.stride)
    unseen = split.unseen
    said = [
        F.range_words(split.gaps, every),
        F.empty_words(split.empty, every),
        f"step{'s' if len(unseen) > 1 else ''} {F.spans(unseen, every, F.GAPS_LISTED)}: no row read (a file of "
        "the step is listed among the problems; the line breaks there)"
        if unseen
        else None,
    ]
    for text in said:
        if text is not None:
            F.panel_note(ax, text)


Line = tuple[str, F.Style, list[int], list[Any]]  # label, look, steps, values


def _draw(ax: Any, s: RunSeries, lines: Sequence[Line], w: int, *, log: bool = False, say: bool = True) -> list[bool]:
    """``figures.draw_series`` of each line, at its own cadence (``figures.line_every``: a role logged every
    other step is no gap between each pair of its points; told from its own steps, never from a step of no
    rows or an unreadable one), broken at the split's gaps and steps without rows where its cadence has a step
    (``figures.breaks_on``), and the steps at which one breaks while the split has data there (a role's own
    missing steps, its steps without a valid value) said in the panel's note."""
    split, have = _split_steps(s), s.per_step["step"].to_list()
    drawn, said = [], []
    for lab, look, st, v in lines:
        own = F.line_every(st, split.stride, have)
        drawn.append(
            F.draw_series(
                ax,
                st,
                v,
                label=lab,
                colour=look.colour,
                window=w,
                every=own,
                log=log,
                dash=look.dash,
                marker=look.marker,
                breaks=F.breaks_on(split.breaks, st, own),
            )
        )
        said.append((lab, st, v, own))
    if say and any(drawn):
        F.say_holes(ax, said, have)
    return drawn


def _ma_words(w: int) -> str:
    """What the moving average is over, as ``summarize --window`` says it: the last logged steps (a gap in the
    steps is not in the count: the average then reaches across it)."""
    return f"moving average over {w} logged steps" if w > 1 else ""


def _window(s: RunSeries, window: int | None) -> int:
    if window is not None and window < 1:
        raise UsageError(f"--window {window}: expected a positive number of steps")
    return window or F.auto_window(_steps_len(s))


def _per_role_lines(s: RunSeries, column: str, by: str) -> list[Line]:
    """(label, look, steps, values) per role, or one pooled line with ``by='none'``."""
    if by == "none":
        if column == "reward_mean":
            t = s.total
            return [("total reward", F.Style(F.PALETTE[0]), t["step"].to_list(), t["reward_mean"].to_list())]
        return [("all roles", F.Style(F.PALETTE[0]), s.per_step["step"].to_list(), s.per_step[column].to_list())]
    looks = F.role_styles(s.roles)
    out = []
    for role in s.roles:
        steps, values = s.role_series(role, column)
        out.append((role if role is not None else NULL_ROLE_LABEL, looks[role], steps, values))
    return out


def _said(lines: Sequence[tuple[Any, ...]]) -> str:
    """``figures.not_drawn`` of ``(label, colour?, steps, values)`` lines, as a clause for an empty panel."""
    text = F.not_drawn([(x[0], x[-2], x[-1]) for x in lines])
    return f"\n({text})" if text else ""


def _nan_rewards(s: RunSeries, by: str) -> list[str]:
    """What the reward lines leave out, in words: the NaN rewards (no place in a mean: the step means are over
    the valid values, as ``summarize``'s) and the roles that have no valid reward at any step (no line)."""
    return _nan_values(s, by, "reward", "reward(s)", s.total)


def _nan_values(s: RunSeries, by: str, column: str, noun: str, pooled: pl.DataFrame) -> list[str]:
    """``_nan_rewards`` of ``column`` (``reward``, ``kl``): its ``<column>_nan`` counts per role (of
    ``pooled`` with ``by='none'``), said as "N NaN <noun> left out of the step means", and the roles without a
    valid value at any step."""
    parts: list[tuple[str | None, pl.DataFrame]]
    if by == "none":
        parts = [(None, pooled)]
    else:
        per = s.per_role
        parts = [(r, per.filter(pl.col("role").is_null() if r is None else pl.col("role") == r)) for r in s.roles]
    out = []
    left: list[tuple[int, str | None, int]] = []
    nan_col, null_col, mean_col = f"{column}_nan", f"{column}_null", f"{column}_mean"
    for role, part in parts:
        if mean_col not in part.columns:
            continue
        nan = int(part[nan_col].fill_null(0).sum()) if nan_col in part.columns else 0
        if part.height and part[mean_col].null_count() == part.height:
            if not nan and column != "reward":
                continue  # no value at all (a role that logs no KL): nothing left out, no line
            name = F.note_name(role) if role is not None else NULL_ROLE_LABEL
            null = int(part[null_col].fill_null(0).sum()) if null_col in part.columns else 0
            counts = ", ".join(f"{n} {k}" for n, k in ((nan, "NaN"), (null, "null")) if n)
            out.append(f"{name}: no valid {column} at any step ({counts})")
        elif nan:
            first = int(part.filter(pl.col(nan_col) > 0)["step"].min())  # type: ignore[arg-type]
            left.append((nan, role, first))
    if left:
        total = sum(n for n, *_ in left)
        first_step, first_role = min((st, r) for _, r, st in left)
        where = f"{F.note_name(first_role)}, " if by != "none" and first_role is not None else ""
        out.insert(0, f"{total} NaN {noun} left out of the step means (first: {where}step {first_step})")
    return out


def _reward(s: RunSeries, by: str, window: int | None, title: str, marks: list[tuple[int, str]]) -> Any:
    w = _window(s, window)
    fig, [ax] = F.new_figure(1, 1, title, width=10, height=4.6)
    lines = _per_role_lines(s, "reward_mean", by)
    drawn = _draw(ax, s, lines, w)
    nan = _nan_rewards(s, by)
    if not any(drawn):
        empty = "" if s.per_step.height else f"\n({_no_samples(s)})"  # files of no row: not "no valid rewards"
        F.say(ax, "no valid rewards in this run" + empty + _said(lines) + "".join(f"\n({x})" for x in nan))
        return fig
    F.say_not_drawn(ax, [(lab, st, v) for lab, _, st, v in lines])
    for text in nan:
        F.panel_note(ax, text)
    _say_steps(ax, s)
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward" + (f" ({_ma_words(w)})" if w > 1 else ""))
    F.mark_onsets(ax, marks)
    F.legend(ax)
    return fig


def _kl(s: RunSeries, by: str, window: int | None, title: str, marks: list[tuple[int, str]]) -> Any:
    w = _window(s, window)
    fig, [ax] = F.new_figure(1, 1, title, width=10, height=4.6)
    if not s.has_kl:
        F.say(ax, missing(s, "kl") or "no KL values")
        return fig
    lines = [x for x in _per_role_lines(s, "kl_mean", by) if any(v is not None for v in x[3])]
    F.say_not_drawn(ax, [(lab, st, v) for lab, _, st, v in lines])
    # NaN KL values have no place in a mean (the step means are over the valid values): counted, as rewards'.
    pooled = s.per_step if by == "none" else s.per_role
    for text in _nan_values(s, by, "kl", "KL value(s)", pooled):
        F.panel_note(ax, text)
    log = F.maybe_log(ax, [v for *_, vals in lines for v in vals])
    # The average is over the real values, zeros included (a policy equal to its reference at the start);
    # on a log axis only the points <= 0 are left out of the drawing, and said.
    _draw(ax, s, lines, w, log=log)
    if log:
        F.say_not_positive(ax, [(lab, st, v) for lab, _, st, v in lines])
    _say_steps(ax, s)
    ax.set_xlabel("step")
    ax.set_ylabel("mean KL" + (" (log scale)" if log else "") + (f", {_ma_words(w)}" if w > 1 else ""))
    F.mark_onsets(ax, marks)
    F.legend(ax)
    return fig


def _components(s: RunSeries, by: str, window: int | None, title: str, marks: list[tuple[int, str]]) -> Any:
    w = _window(s, window)
    comps = s.components()
    fig, [ax] = F.new_figure(1, 1, title, width=10, height=4.6)
    if not comps:
        F.say(ax, missing(s, "components") or "no reward components")
        return fig
    steps = s.per_step["step"].to_list()
    looks = _looks(len(comps))
    lines = [(name, looks[i], steps, s.per_step[f"component/{name}_mean"].to_list()) for i, name in enumerate(comps)]
    _draw(ax, s, lines, w)
    F.say_not_drawn(ax, [(name, st, v) for name, _, st, v in lines])
    said = _nan_components(s, comps)
    if said:
        F.panel_note(ax, said)
    _say_steps(ax, s)
    ax.set_xlabel("step")
    ax.set_ylabel("mean component value" + (f"\n({_ma_words(w)})" if w > 1 else ""))
    F.mark_onsets(ax, marks)
    F.legend(ax)
    return fig


def _looks(n: int) -> list[F.Style]:
    """``n`` looks, none twice: the palette's colours, then again with another dash (``figures.role_styles``
    of ``n`` names that share no colour)."""
    return [F.Style(F.PALETTE[i % len(F.PALETTE)], F.DASHES[(i // len(F.PALETTE)) % len(F.DASHES)]) for i in range(n)]


def _nan_components(s: RunSeries, names: list[str]) -> str | None:
    """How many component values are NaN (left out of the step means, which are over the valid values, as
    ``summarize``'s), and the first, in words; None without one."""
    from ..analysis.views import sample_view

    def build() -> list[pl.LazyFrame]:  # built inside: a file found unreadable is then left out
        lf = sample_view(s.run, {"step": pl.col("step"), "split": pl.col("split")}, names, kl=False)
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        nan = [pl.col(f"component/{n}").is_nan().sum().cast(pl.Int64).alias(str(i)) for i, n in enumerate(names)]
        return [lf.group_by("step").agg(nan)]

    [df] = s.run.collect(build)
    found = [
        (int(step), name, int(n))
        for i, name in enumerate(names)
        for step, n in zip(df["step"].to_list(), df[str(i)].to_list(), strict=True)
        if n
    ]
    if not found:
        return None
    step, name, _ = min(found, key=lambda f: (f[0], list(names).index(f[1])))
    where = f"{F.note_name(name)}, " if len(names) > 1 else ""
    total = sum(n for *_, n in found)
    return f"{total} NaN component value(s) left out of the step means (first: {where}step {step})"


DIVERSITY_PANELS = (
    ("unique_frac", "unique texts per group (share)"),
    ("distinct_2", "distinct-2 within groups"),
    ("self_bleu_4", "Self-BLEU-4 within groups (higher = more alike)"),
    ("len_mean", "text length (tokens)"),
)
OVER_ALL_PANELS = (
    ("unique_frac", "unique texts (share)"),
    ("distinct_2", "distinct-2"),
    ("self_bleu_4", "Self-BLEU-4 (higher = more alike)"),
    ("len_mean", "text length (tokens)"),
)


def diversity_drawn(s: RunSeries, by: str = "role") -> tuple[pl.DataFrame | None, list[str | None] | None]:
    """What the diversity plot draws: with ``by='role'``, where the texts have two speakers or more, each role's
    own texts (``RunSeries.role_diversity``: what the doctor's ``diversity_collapse`` judges, per role) and the
    roles in order; else the policy's generated text (``RunSeries.diversity``) and None."""
    div = s.diversity
    if by == "role" and div is not None:
        per = s.role_diversity
        if per is not None and per["role"].n_unique() > 1:
            present = set(per["role"].to_list())
            roles: list[str | None] = [r for r in s.run.role_names() if r in present]
            roles += sorted(r for r in present if r is not None and r not in roles)
            return per, roles + ([None] if None in present else [])
    return div, None


def _diversity(s: RunSeries, by: str, window: int | None, title: str, marks: list[tuple[int, str]]) -> Any:
    w = _window(s, window)
    div, roles = diversity_drawn(s, by)
    if div is None:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, missing(s, "diversity") or "no completion texts in this run: diversity cannot be measured")
        return fig
    # No prompt group of two texts at any step (single rollouts, no group ids): the figures are over all the
    # step's texts (``metrics diversity`` says the same), and the panels must not say "per group".
    grouped = "groups" in div.columns and div["groups"].is_not_null().any()
    whose = "each role's own texts, " if roles else "the policy's generated text, " if grouped else ""
    over = whose + ("per prompt group" if grouped else "all texts of a step: no group of two")
    fig, axes = F.new_figure(2, 2, title + f" ({over})", width=11, height=7)
    panels = DIVERSITY_PANELS if grouped else OVER_ALL_PANELS
    if grouped and div["groups"].is_null().any():
        whole = div.filter(pl.col("groups").is_null())["step"].unique(maintain_order=True).sort().to_list()
        fig.text(0.01, 0.005, f"over all texts (no group of two) at {len(whole)} step(s), first {whole[0]}", fontsize=8)
    # One line per role (its colour in every plot), or the policy's text alone.
    looks = F.role_styles(roles) if roles else {}
    lines: list[tuple[str | None, F.Style, pl.DataFrame]] = [
        (
            r if r is not None else "completions (no speaker)",  # draw_series cleans its label
            looks[r],
            div.filter(pl.col("role").is_null() if r is None else pl.col("role") == r).sort("step"),
        )
        for r in roles or []
    ] or [(None, F.Style(F.PALETTE[3]), div)]
    for ax, (col, label) in zip(axes, panels, strict=True):
        values = [v for *_, part in lines for v in part[col].to_list()]
        # Lengths that exploded: a log axis, chosen before drawing, so that a length of 0 is in the average
        # and only its point is left out (said), as KL's.
        log = col == "len_mean" and any(v is not None for v in values) and F.maybe_log(ax, values)
        series = [(name or col, look, part["step"].to_list(), part[col].to_list()) for name, look, part in lines]
        drawn = _draw(ax, s, series, w, log=log, say=ax is axes[0])  # said once, in the first panel
        if not any(drawn):
            F.say(ax, f"{col}: no values")
        elif log:
            F.say_not_positive(ax, [(n, st, v) for n, _, st, v in series])
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        F.mark_onsets(ax, marks)
    _say_steps(axes[0], s)
    if roles:
        F.legend(axes[0])
    return fig


def _float_max(col: pl.Series) -> float:
    """The largest value of a float column; 0.0 when it has none."""
    top = col.max()
    return float(top) if isinstance(top, int | float) else 0.0


def _format(s: RunSeries, by: str, window: int | None, title: str, marks: list[tuple[int, str]]) -> Any:
    w = _window(s, window)
    fmt = s.format
    if fmt is None:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, missing(s, "format") or "no completion texts in this run: format adherence cannot be measured")
        return fig
    series_roles_note(s)  # a spec's roles silent in the split, beside those that speak: in the notes
    best = _float_max(fmt["adherence"])
    if best < NEVER_FOLLOWED:
        fig, [ax] = F.new_figure(1, 1, f"{title}: spec {s.format_spec}", width=10, height=3.2)
        texts = int(fmt["texts"].sum())
        # The spec's think tags in the messages' reasoning field: said here, and in the notes (with the command).
        why = (
            "\n" + REASONING_WORDS.replace(" (", "\n(")
            if series_format_note(s)
            else "\n(a rate, measured on the policy's generated text: another --spec or --text may fit this run)"
        )
        F.say(ax, f"adherence to {s.format_spec} is at most {best:.1%} at every step ({texts:,} texts){why}")
        return fig
    fig, axes = F.new_figure(1, 2, f"{title}: spec {s.format_spec}", width=12, height=4.4)
    steps = fmt["step"].to_list()
    _draw(axes[0], s, [("adherence", F.Style(F.PALETTE[2]), steps, fmt["adherence"].to_list())], w)
    _say_steps(axes[0], s)
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].set_title("share of texts that follow the format", fontsize=10)
    failed = [c for c in fmt.columns if c.startswith("failed/")]
    texts_per_step = fmt["texts"].to_numpy().astype(float)
    bottom = None
    # The rules that fail most, one bar each; the others in one "other" bar, so that the bars total the share
    # of texts that fail (1 - adherence), as the left panel says (a spec of more rules under-counted them).
    ranked = [c for c in sorted(failed, key=lambda c: -float(fmt[c].sum())) if float(fmt[c].fill_null(0).sum())]
    shown, rest = ranked[:FAILED_BARS], ranked[FAILED_BARS:]
    if len(rest) == 1:
        shown, rest = ranked, []
    bars = [(col[7:], fmt[col].fill_null(0).to_numpy().astype(float)) for col in shown]
    if rest:
        other = np.sum([fmt[c].fill_null(0).to_numpy().astype(float) for c in rest], axis=0)
        bars.append((f"other ({len(rest)} rules)", other))
    for i, (name, count) in enumerate(bars):
        share = count / texts_per_step
        colour = F.UNKNOWN_COLOUR if rest and i == len(bars) - 1 else F.PALETTE[(i + 4) % len(F.PALETTE)]
        axes[1].bar(steps, share, bottom=bottom, color=colour, label=F.clean_label(name), width=0.9)
        bottom = share if bottom is None else bottom + share
    if bottom is None:
        F.say(axes[1], "every text follows the format")
    else:
        axes[1].set_title("first failing rule (share of texts)", fontsize=10)
        F.legend(axes[1])
    for ax in axes:
        ax.set_xlabel("step")
        F.mark_onsets(ax, marks)
    return fig


def scalar_frame(run: Run) -> pl.DataFrame:
    """The scalar metrics as (key, step, value), one value per key and step: process shards merged as
    ``summarize --scalars`` merges them (weighted by their ``key__count`` companions, NaN if one logged NaN;
    ``analysis.scalars.merged_steps``) and the keys that trainer versions renamed under their one name (the
    default aliases, as summarize's), the companions left out, sorted by key then step."""
    from ..analysis.scalars import DEFAULT_ALIASES, merged_steps

    return merged_steps(run, aliases=DEFAULT_ALIASES).collect().sort("key", "step")


def _lost_scalar_steps(run: Run) -> dict[str, tuple[int, list[list[int]]]]:
    """Per key, its stride and the steps whose records its file lost (``inspect``'s ``key_gaps``; a key in
    several files: the steps any of them lost, at the key's stride)."""
    from ..analysis.inspect import key_cadences, lost_step_runs
    from ..analysis.scalars import DEFAULT_ALIASES, aliased_key

    rows = run.scalars.filter(pl.col("step").is_not_null()).select(aliased_key(DEFAULT_ALIASES), "step", "source")
    by_key: dict[str, list[Any]] = {}
    for c in key_cadences(rows.unique().collect())[1]:
        for k in c.keys:
            by_key.setdefault(k, []).append(c)
    return {k: (cs[0].stride, lost_step_runs(cs, cs[0].stride)) for k, cs in by_key.items()}


def scalar_keys(run: Run) -> list[str]:
    """The run's scalar keys (``__count`` companions left out), sorted."""
    return scalar_frame(run)["key"].unique(maintain_order=True).to_list()


def matching_keys(names: Sequence[str], globs: Sequence[str]) -> list[str]:
    """The ``names`` (``scalar_keys``: aliases resolved, as the figure, ``diff``, ``summarize --scalars`` and
    W&B show them) that a glob of ``globs`` matches, by that name or by a name a trainer logged it under that
    the default aliases rename to it (``grad_global_norm`` selects ``grad/global_norm``): the same key either
    way, so never ambiguous.

    The globs are one pattern, matched once a name (``fnmatch.translate``, as ``fnmatchcase`` matches): a glob
    at a time over every name was 500,000 names x 12 globs for each figure of 12 keys the report draws."""
    import re

    from ..analysis.scalars import DEFAULT_ALIASES

    if not globs:
        return []
    match = re.compile("|".join(fnmatch.translate(g) for g in globs)).match
    raw: dict[str, list[str]] = {}
    for old, new in DEFAULT_ALIASES.items():
        raw.setdefault(new, []).append(old)
    return [n for n in names if match(n) or any(match(k) for k in raw.get(n, ()))]


def check_scalar_keys(run: Run, globs: Sequence[str]) -> list[str]:
    """The run's scalar keys that ``globs`` select (``matching_keys``): what ``--what scalars --keys`` draws.
    A glob that matches none is a usage error that lists the keys the run has, by the names the figure shows."""
    from ..analysis.check import MAX_LISTED

    names = scalar_keys(run)
    for glob in globs:
        if matching_keys(names, [glob]):
            continue
        if not names:
            raise UsageError(f"--keys {glob!r}: this run has no scalar metrics")
        more = f", ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
        listed = ", ".join(sorted(names)[:MAX_LISTED])
        raise UsageError(f"--keys {glob!r}: matches none of the {len(names)} scalar key(s) of this run: {listed}{more}")
    return matching_keys(names, globs)


def scalar_namespaces(keys: Sequence[str]) -> dict[str, list[str]]:
    """Keys grouped by namespace, the part before the first ``/`` (``train/``, ``debate/``); keys without a
    ``/`` under ``""``. Namespaces in sorted order, the top level first."""
    out: dict[str, list[str]] = {}
    for k in keys:
        ns = k.split("/", 1)[0] + "/" if "/" in k else ""
        out.setdefault(ns, []).append(k)
    return dict(sorted(out.items()))


def _scalars(s: RunSeries, keys: Sequence[str], window: int | None, title: str) -> Any:
    if window is not None and window < 1:
        raise UsageError(f"--window {window}: expected a positive number of steps")
    df = scalar_frame(s.run)
    names = df["key"].unique(maintain_order=True).to_list()
    if keys:
        names = matching_keys(names, keys)
    if not names:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, "no scalar metrics" + (f" match {', '.join(keys)}" if keys else " in this run"))
        return fig
    shown = names[:MAX_SCALAR_PANELS]
    # The steps whose records each key's file lost, as inspect judges them (``analysis.inspect.key_cadences``).
    lost = _lost_scalar_steps(s.run)
    rows, cols = F.grid(len(shown), 3)
    fig, axes = F.new_figure(rows, cols, title, width=4.6 * cols, height=3.0 * rows + 0.6)
    for ax, key in zip(axes, shown, strict=False):
        part = df.filter(pl.col("key") == key)
        line = (key, part["step"].to_list(), part["value"].to_list())
        # The window counts the steps at which this key was logged, as summarize's and diff's windows do; the
        # default is a tenth of them. A tenth of all keys' steps averaged a key logged every 10 steps over its
        # whole run.
        w = window or F.auto_window(part.height)
        # The log axis chosen before drawing, as KL's: a value of 0 (a learning-rate warm-up) is in the
        # average, and only its point is left out, and said.
        log = any(v is not None and math.isfinite(v) for v in line[2]) and F.maybe_log(ax, line[2])
        # A key's own cadence (``analysis.inspect.scalar_stride``, inspect's rule for each key's gaps): the samples'
        # rule is for a split's steps; a key first logged off its cadence (1, 10, 20, ...) is no run of gaps.
        every = scalar_stride(line[1])
        if not F.draw_series(ax, line[1], line[2], label=key, colour=F.PALETTE[0], window=w, every=every, log=log):
            finite = any(v is not None and math.isfinite(v) for v in line[2])
            F.say(ax, ("no value to draw" if finite else "no finite value") + _said([line]))
        else:
            F.say_not_drawn(ax, [line])
            if log:
                F.say_not_positive(ax, [line])
            _say_scalar_gaps(ax, line[1], every, lost.get(key))
            if w > 1:
                ax.set_ylabel(_ma_words(w), fontsize=8)
        F.panel_title(ax, key)
        ax.set_xlabel("step")
    F.finish(fig, axes, len(shown))
    if len(names) > len(shown):
        # A figure-level label that the constrained layout makes room for (a plain text overlapped the last x label).
        fig.supxlabel(f"{len(names) - len(shown)} more keys: narrow with --keys", x=0.99, ha="right", fontsize=8)
    return fig


def _say_scalar_gaps(ax: Any, steps: Sequence[int], every: int, lost: tuple[int, list[list[int]]] | None) -> None:
    """Where a key's line breaks, in its panel's note: the steps whose records its file lost (``lost``: the stride
    and runs of ``_lost_scalar_steps``, inspect's rule), and the skipped steps at which its file has records
    (not judged lost: a key left out of them, logged where something happened, StatsTracker's /nonfinite, or an
    eval record lost beside a train one). Both where both are: the line breaks at each."""
    lost_runs = lost[1] if lost is not None else []
    if lost_runs and lost is not None:
        F.panel_note(ax, F.range_words(lost_runs, lost[0]) or "")
    others = _outside(gaps_at(steps, every), lost_runs, every)
    if not others:
        return
    held = sorted({int(x) for x in steps})
    if not lost_runs:
        F.panel_note(
            ax,
            f"logged at {len(held)} steps in {held[0]}..{held[-1]}; at the others its file has records without it "
            "(not judged lost)",
        )
        return
    step_every = f" every {every}" if every > 1 else ""
    said = [f"{a}" if a == b else f"{a}..{b}{step_every}" for a, b in others[: F.GAPS_LISTED]]
    more = f" and {len(others) - F.GAPS_LISTED} more" if len(others) > F.GAPS_LISTED else ""
    one = len(others) == 1 and others[0][0] == others[0][1]
    F.panel_note(
        ax,
        f"step{'' if one else 's'} {', '.join(said)}{more}: its file has records without it (not judged lost; the "
        "line breaks there)",
    )


def _outside(gaps: list[list[int]], lost: list[list[int]], every: int) -> list[list[int]]:
    """The runs ``[first, last]`` of ``gaps`` (steps ``every`` apart) left once the steps ``lost`` covers are
    taken out (each ``[first, last]`` run of ``lost`` taken as every step between its ends): the steps a line
    skips where its file is not judged to have lost a record. Interval arithmetic: a gap may span many steps."""
    out: list[list[int]] = []
    cover = sorted((int(a), int(b)) for a, b in lost)
    for a, b in gaps:
        start = int(a)
        for c, d in cover:
            if d < start or c > b:
                continue
            if c > start:
                out.append([start, start + (c - 1 - start) // every * every])
            start = max(start, start + ((d + 1 - start + every - 1) // every) * every)
        if start <= b:
            out.append([start, start + (b - start) // every * every])
    return [r for r in out if r[0] <= r[1]]


def _hist(s: RunSeries, steps: Sequence[int], title: str) -> Any:
    available = s.per_step["step"].to_list()
    if not available:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, "no samples in this run")
        return fig
    if not steps:
        steps = sorted({available[0], available[len(available) // 2], available[-1]})
    # A step whose files could not be read is in the run (its problem is listed): a panel says so, and which.
    unread_files: dict[int, list[str]] = {}
    for f in s.run.files:
        if f.kind == "samples" and not f.readable:
            for x in f.all_steps():
                unread_files.setdefault(x, []).append(f.path)
    unread = set(unread_files)
    # A step logged with no rows (inspect's ``empty_steps``: every rollout filtered out) is in the run: its panel
    # says so, as the reward plot's note does, where "no such step" read as a step never logged.
    empty = set(_split_steps(s).empty) if any(x not in available for x in steps) else set()
    missing = [x for x in steps if x not in available and x not in unread and x not in empty]
    if missing:
        raise UsageError(
            f"--steps {missing[0]}: no such step in split {s.split} (steps {available[0]}..{available[-1]})"
        )

    def build() -> list[pl.LazyFrame]:  # built inside: a file found unreadable is then left out
        lf = s.run.roles.filter(pl.col("step").is_in(list(steps)))
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        return [lf]

    [valid] = s.run.collect(build)
    # NaN, +-inf, null and values too large for an axis (``figures.DRAWABLE``) have no place on one: counted in
    # each step's panel (a title is cut to its figure).
    df = valid.filter(pl.col("reward").is_finite() & (pl.col("reward").abs() <= F.DRAWABLE))
    rows, cols = F.grid(len(steps), 3)
    fig, axes = F.new_figure(
        rows, cols, title + ": rewards per role", width=max(4.6 * cols, 7.0), height=3.2 * rows + 0.6
    )
    looks = F.role_styles(s.roles)
    lo, hi = (df["reward"].min(), df["reward"].max()) if df.height else (0.0, 1.0)
    bins = 20 if lo != hi else 1
    for ax, step in zip(axes, steps, strict=False):
        part = df.filter(pl.col("step") == step)
        for role in s.roles:
            vals = part.filter(pl.col("role").is_null() if role is None else pl.col("role") == role)["reward"]
            if vals.len():
                label = F.clean_label(role) if role is not None else NULL_ROLE_LABEL
                kw = dict(bins=bins, range=(lo, hi) if lo != hi else None, color=looks[role].colour, label=label)
                ax.hist(vals.to_numpy(), histtype="stepfilled", alpha=0.22, **{**kw, "label": None})
                ax.hist(vals.to_numpy(), histtype="step", linewidth=1.6, linestyle=looks[role].dash, **kw)
        if step not in available and step in empty and step not in unread:
            F.say(ax, "logged with no rows: no reward to draw")
        elif step not in available or not part.height and step in unread:
            names = ", ".join(unread_files.get(step, []))
            F.say(ax, f"its sample file(s) could not be read: {names} (the problem is listed)")
        else:
            _say_dropped(ax, valid.filter(pl.col("step") == step)["reward"])
        ax.set_title(f"step {step}", fontsize=10)
        ax.set_xlabel("reward")
        ax.set_ylabel("samples")
        F.whole_counts(ax)
        F.legend(ax)
    F.finish(fig, axes, len(steps))
    return fig


def _say_dropped(ax: Any, rewards: pl.Series) -> None:
    """How many of a histogram's rewards are NaN, +-inf, null or too large for an axis (not drawn), in its panel's
    note."""
    counts = (
        (int(rewards.is_nan().sum()), "NaN"),
        (int((rewards == math.inf).sum()), "+inf"),
        (int((rewards == -math.inf).sum()), "-inf"),
        (rewards.null_count(), "null"),
        (int((rewards.is_finite() & (rewards.abs() > F.DRAWABLE)).sum()), F.TOO_LARGE),
    )
    said = ", ".join(f"{n} {kind}" for n, kind in counts if n)
    if said:
        F.panel_note(ax, f"not drawn: {said} reward(s)")


def _one_step(s: RunSeries) -> int:
    return int(s.per_step["step"][0])


def _role_values(s: RunSeries, column: str) -> list[tuple[str, str, list[Any]]]:
    """(label, colour, values) per role of the samples' ``column`` (reward or kl) at the one step."""
    step = _one_step(s)

    def build() -> list[pl.LazyFrame]:  # built inside: a file found unreadable is then left out
        lf = s.run.roles.filter(pl.col("step") == step)
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        return [lf.select("role", column)]

    [df] = s.run.collect(build)
    colours = F.role_colours(s.roles)
    out = []
    for role in s.roles:
        part = df.filter(pl.col("role").is_null() if role is None else pl.col("role") == role)[column]
        label = f"{role}: {column}" if role is not None else f"{column} of samples without per-role data"
        out.append((label, colours[role], part.to_list()))
    return out


def _dist_figure(title: str, panels: list[tuple[str, str, list[Any]]], xlabel: str) -> Any:
    rows, cols = F.grid(len(panels), 3)
    fig, axes = F.new_figure(rows, cols, title, width=max(4.6 * cols, 7.0), height=3.0 * rows + 0.6)
    for ax, (label, colour, values) in zip(axes, panels, strict=False):
        F.distribution(ax, values, colour)
        F.panel_title(ax, label)
        ax.set_xlabel(xlabel)
    F.finish(fig, axes, len(panels))
    return fig


def _reward_dist(s: RunSeries, title: str) -> Any:
    panels = _role_values(s, "reward")
    return _dist_figure(f"{title}: one step ({_one_step(s)}), per role", panels, "reward")


def _kl_dist(s: RunSeries, title: str) -> Any:
    if not s.has_kl:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, missing(s, "kl") or "no KL values")
        return fig
    panels = [p for p in _role_values(s, "kl") if any(v is not None for v in p[2])]
    return _dist_figure(f"{title}: one step ({_one_step(s)}), per role", panels, "KL")


def _components_dist(s: RunSeries, title: str) -> Any:
    from ..analysis.views import sample_view

    names = s.components()
    if not names:
        fig, [ax] = F.new_figure(1, 1, title, width=10, height=3.2)
        F.say(ax, missing(s, "components") or "no reward components")
        return fig
    step = _one_step(s)

    def build() -> list[pl.LazyFrame]:  # built inside: a file found unreadable is then left out
        lf = sample_view(s.run, {"step": pl.col("step"), "split": pl.col("split")}, names, kl=False)
        lf = lf.filter(pl.col("step") == step)
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        return [lf]

    [df] = s.run.collect(build)
    panels = [(n, F.PALETTE[i % len(F.PALETTE)], df[f"component/{n}"].to_list()) for i, n in enumerate(names)]
    return _dist_figure(f"{title}: one step ({_one_step(s)}), per component", panels, "value")


def one_step_words(s: RunSeries, what: str) -> str | None:
    """``diversity`` or ``format`` of a split of one step, in words (one value each: nothing to draw)."""
    if what == "diversity" and s.diversity is not None:
        row = s.diversity.row(0, named=True)
        panels = DIVERSITY_PANELS if row.get("groups") is not None else OVER_ALL_PANELS
        return f"step {row['step']}: " + ", ".join(
            f"{label.split(' (')[0]} {row[col]:.3g}" for col, label in panels if row.get(col) is not None
        )
    if what == "format" and s.format is not None:
        row = s.format.row(0, named=True)
        texts = int(row["texts"])
        follow = round(float(row["adherence"]) * texts)
        fails = sorted(((int(v or 0), c[7:]) for c, v in row.items() if c.startswith("failed/") and v), reverse=True)
        rules = "; first failing rules: " + ", ".join(f"{n} ({k})" for k, n in fails) if fails else ""
        why = f"; {REASONING_WORDS}" if series_format_note(s) else ""
        return f"step {row['step']}: {follow:,} of {texts:,} texts follow {s.format_spec}{rules}{why}"
    return None


def _words_figure(what: str) -> Any:
    def build(s: RunSeries, title: str) -> Any:
        fig, [ax] = F.new_figure(1, 1, f"{title}: one step", width=10, height=2.4)
        F.say(ax, one_step_words(s, what) or missing(s, what) or f"no {what} values")
        return fig

    return build


ONE_STEP = {
    "reward": _reward_dist,
    "kl": _kl_dist,
    "components": _components_dist,
    "diversity": _words_figure("diversity"),
    "format": _words_figure("format"),
}

__all__ = [
    "WHATS",
    "RunSeries",
    "diversity_drawn",
    "figure_png",
    "make_figure",
    "missing",
    "one_step_words",
    "save_figure",
    "say_layouts",
    "check_scalar_keys",
    "matching_keys",
    "scalar_frame",
    "scalar_keys",
    "scalar_namespaces",
]
