"""How the runs of a diff line up: labels, steps per split, the steps and roles two runs share, and the
start, end and best windows of each role."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..._lazy import pl
from ...errors import UsageError, did_you_mean
from ...run import Run
from ...schema import NULL_ROLE_LABEL
from ..check import describe_steps, known_roles, steps_per_split
from .model import DiffOptions, Split
from .sides import Side, layouts_of, split_eq, steps_listed, steps_text


def labels_of(runs: Sequence[Run], names: Sequence[str] | None) -> list[str]:
    """``names`` for the first runs, each other run's name, made unique (``name#2``)."""
    given = list(names or [])
    if len(given) > len(runs):
        raise UsageError(f"--name given {len(given)} times for {len(runs)} runs")
    labels = given + [r.name for r in runs[len(given) :]]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1  # the range of the step column (Int64)


def _in_range(per_split: dict[Split, set[int]]) -> dict[Split, set[int]]:
    """``per_split`` without the steps beyond the 64-bit range a step is stored in (a ``uint64`` step column's
    2**63 + 5, known from a footer): the reader reads such rows with a null step, and a span of steps up to
    2**63 built from one exhausted the memory (``beyond_range_notes`` says which)."""
    return {k: {s for s in v if STEP_MIN <= s <= STEP_MAX} for k, v in per_split.items()}


def beyond_range_notes(sides: Sequence[Side]) -> list[str]:
    """A note per run whose sample files hold steps beyond the 64-bit range (their footers say so): left out of
    the alignment and of every figure (their rows are read with a null step, in no step's figures), as
    ``runlog inspect`` reports them (an error of their files)."""
    out = []
    for side in sides:
        found = {
            f.path: sorted(s for s in f.all_steps() if not STEP_MIN <= s <= STEP_MAX)
            for f in side.run.files
            if f.kind == "samples" and f.readable
        }
        found = {path: steps for path, steps in found.items() if steps}
        if not found:
            continue
        steps = sorted({s for v in found.values() for s in v})
        paths = sorted(found)
        named = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        out.append(
            f"{side.name}: step(s) {', '.join(map(str, steps[:3]))}{', ...' if len(steps) > 3 else ''} of "
            f"{named} beyond the 64-bit integer range a step is stored in (at most 2**63 - 1): their rows are "
            "left out of the comparison (`runlog inspect` reports them)"
        )
    return out


def prompt_join_notes(sides: Sequence[Side]) -> list[str]:
    """A note per run where samples of its windows without a ``group_id`` were put in their prompt's group, the one
    id its other samples carry at their split and step, or kept a group of their own (``aggregate.prompt_join_note``):
    the groups the intervals resample and ``zero_adv_frac`` counts, said as ``summarize --prompt-groups`` says them."""
    import functools
    import operator

    from ..aggregate import prompt_join_note

    out = []
    for side in sides:
        where = [split_eq(split) & pl.col("step").is_in(sorted(steps)) for split, steps in side.wanted.items() if steps]
        if where and (note := prompt_join_note(side.run, within=functools.reduce(operator.or_, where))) is not None:
            out.append(f"{side.name}, in the windows compared: {note}")
    return out


def steps_of(run: Run, opts: DiffOptions) -> dict[Split, list[int]]:
    """The run's steps per split (names and footers), narrowed by ``--split`` and ``--steps``; steps beyond
    the 64-bit range left out (``beyond_range_notes``)."""
    out = {}
    for split, steps in _in_range(steps_per_split(run)).items():
        if opts.splits and split not in opts.splits:
            continue
        chosen = opts.steps.select(steps)
        if chosen:
            out[split] = chosen
    return out


def check_filters(sides: list[Side], opts: DiffOptions) -> None:
    """A ``--split`` or ``--role`` that no run has is a usage error naming what the runs have."""
    per_run = [_in_range(steps_per_split(s.run)) for s in sides]
    for split in opts.splits:
        if not any(split in steps for steps in per_run):
            have = sorted({str(k) for steps in per_run for k in steps if k is not None})
            raise UsageError(
                f"--split {split!r}: the runs have split(s) {', '.join(have) or '(none)'}{did_you_mean(split, have)}"
            )
    if opts.roles:
        have = list(dict.fromkeys(r for s in sides for r in known_roles(s.run, opts.roles)))
        for role in opts.roles:
            if role not in have:
                raise UsageError(
                    f"--role {role!r}: the runs' roles are {', '.join(have) or '(none recorded)'}"
                    f"{did_you_mean(role, have)}{_null_role_hint(role)}"
                )
    if not opts.steps.unbounded and not any(s.steps for s in sides):
        chosen = [{k: v for k, v in steps.items() if not opts.splits or k in opts.splits} for steps in per_run]
        runs = "; ".join(f"{s.name}: {describe_steps(c) or 'no steps'}" for s, c in zip(sides, chosen, strict=True))
        raise UsageError(f"--steps {opts.steps.shown}: no run has a step there ({runs})")


def _null_role_hint(role: str) -> str:
    """For a ``--role`` that asks for the label the null role is shown with (``(unknown)``, or a spelling of
    it): that those samples are no role, so no ``--role`` picks them (as in summarize, whose ``--role`` selects
    named roles only). The list of roles alone read as if the rows just shown had vanished."""
    if role.strip("() ").lower() not in ("unknown", "role unknown", "no role", "none", "null"):
        return ""
    return (
        f"; the samples without per-role data (Flink v0 files, single-agent layouts), shown as {NULL_ROLE_LABEL}, "
        "are not a role and cannot be picked by --role: run without --role to compare them"
    )


def overlap_row(side: Side, split: Split, common: list[int] | None, base: Side | None) -> dict[str, Any]:
    return {
        "run": side.name,
        "layout": ", ".join(layouts_of(side.run)),
        "split": split,
        "steps": steps_text(side.steps.get(split, [])),
        "common_steps": None if common is None else len(common),
        "common": "(baseline)" if base is None else steps_text(common or []),
    }


def only_steps_said(base: Side, a: Sequence[int], other: Side, b: Sequence[int]) -> str:
    """``; step(s) only in A: 7; only in B: 15, 20, 21``: the steps of a split that one run has and the other
    lacks, named (the first few, with a count), per run; empty when each has every step of the other. The
    ranges alone (``0..19 (18 steps)``) do not say which steps are left out of the comparison, nor whose."""
    parts = []
    for side, mine, theirs in ((base, a, b), (other, b, a)):
        only = sorted(set(mine) - set(theirs))
        if only:
            parts.append(f"only in {side.name}: {steps_listed(only)}")
    return f"; step(s) {'; '.join(parts)}" if parts else ""


def window_gap_note(
    base: Side,
    other: Side,
    split: Split,
    steps: tuple[Sequence[int], Sequence[int]],
    common: list[int],
    roles: list[str | None],
    opts: DiffOptions,
) -> str | None:
    """A note naming, per window (start, end, each role's best) whose steps are not evenly spaced, the steps
    inside its range that it leaves out because one run lacks them, and whose they are: ``14..19 (5 steps)``
    does not say that step 15 is left out, nor which run lacks it. Windows evenly spaced (``0..18 every 2``)
    say what they hold. None when no window leaves a step out."""
    a, b = set(steps[0]), set(steps[1])
    found: dict[tuple[int, ...], list[str]] = {}
    for role in roles:
        for point, pair in windows_of(base, other, split, common, role, opts).items():
            for window in pair:
                if len({y - x for x, y in zip(window, window[1:], strict=False)}) > 1:
                    said = found.setdefault(window, [])
                    if point not in said:
                        said.append(point)
    parts = []
    for window, points in found.items():
        inside = [s for s in sorted(a ^ b) if window[0] <= s <= window[-1]]
        whose = [
            f"{steps_listed([s for s in inside if s in mine])} (only in {side.name})"
            for side, mine in ((base, a), (other, b))
            if any(s in mine for s in inside)
        ]
        if whose:
            parts.append(f"{', '.join(points)} {steps_text(window)} leaves out {' and '.join(whose)}")
    if not parts:
        return None
    where = f" in split {split}" if split is not None else ""
    return f"{other.name}{where}: windows hold the steps both runs have: {'; '.join(parts)}"


def _roles_of(side: Side, split: Split, steps: list[int]) -> list[str | None]:
    """The roles with a value on some of ``steps``, in the run's order (the null role last)."""
    if side.per_step is None or side.per_step.height == 0:
        return []
    has = (pl.col("reward_count") + pl.col("kl_count") + pl.col("reward_nan").fill_null(0)) > 0
    part = side.per_step.filter(split_eq(split) & pl.col("step").is_in(steps) & has)
    present = list(dict.fromkeys(part["role"].to_list()))
    order = [r for r in side.run.role_names() if r in present]
    return order + [r for r in present if r not in order]


def common_roles(
    base: Side, other: Side, split: Split, steps: list[int], notes: list[str], where: str
) -> list[str | None]:
    """The roles both runs have on ``steps``; a note for the roles only one has, or for none in common."""
    a, b = _roles_of(base, split, steps), _roles_of(other, split, steps)
    common = [r for r in a if r in b]

    def show(roles: Iterable[str | None]) -> str:
        return ", ".join(NULL_ROLE_LABEL if r is None else r for r in roles)

    if not common:
        if a or b:
            notes.append(
                f"{base.name} and {other.name} have no role in common{where} ({base.name}: {show(a) or '-'}; "
                f"{other.name}: {show(b) or '-'}): no per-role comparison there"
            )
        return []
    for side, mine, theirs in ((base, a, b), (other, b, a)):
        only = [r for r in mine if r not in theirs]
        if only:
            notes.append(f"role(s) {show(only)}{where} only in {side.name}: not compared")
    return common


def _best_window(side: Side, split: Split, role: str | None, common: list[int], window: int) -> tuple[int, ...]:
    """The ``window`` consecutive common steps where the role's mean reward over the window's samples (the
    figure the ``best`` point reports) is highest (all of them when there are fewer); the first such window
    on ties. The windows' means come from the per-step means and counts of valid rewards: a step's mean
    weighs as many samples as it has, so that a window of few samples at a high step mean is not preferred to
    one the samples say is better; a window without a mean is chosen last.

    Only windows of which at least half the steps (``held_needed``) hold rewards of the role compete (where
    none does, those holding any): the common steps are those of the split, and a role that was logged at
    some of them only (a role that begins late, a Flink v0 file without roles) would otherwise have its
    "best" made by the one step of a window that holds a value (a spike, a window of 1 step of 10)."""
    y = side.series(split, role, common, "reward_mean")
    n = np.nan_to_num(side.series(split, role, common, "reward_count"))
    w = min(window, len(common))
    has = n > 0
    if not has.any():
        return tuple(common[-w:])
    # ±inf is a value (as in summarize): a window holding a -inf step has a mean of -inf, one holding +inf has
    # +inf, and one holding both (or a step whose mean is NaN: +inf and -inf in one step) has no mean; choosing
    # by the finite steps alone would pick a window whose reported figure is -inf or NaN.
    ok = np.isfinite(y) & has
    ones = np.ones(w)
    sums = np.convolve(np.where(ok, y * n, 0.0), ones, "valid")
    cnt = np.convolve(np.where(ok, n, 0.0), ones, "valid")
    pos = np.convolve((has & (y == np.inf)).astype(float), ones, "valid") > 0
    neg = np.convolve((has & (y == -np.inf)).astype(float), ones, "valid") > 0
    undefined = (np.convolve((has & np.isnan(y)).astype(float), ones, "valid") > 0) | (pos & neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1), -np.inf)
    ma = np.where(pos, np.inf, np.where(neg, -np.inf, ma))
    ma = np.where(undefined, -np.inf, ma)  # no mean: chosen only where no window has one
    held = np.convolve(has.astype(float), ones, "valid")
    competing = np.flatnonzero(held >= held_needed(w))
    if not len(competing):
        competing = np.flatnonzero(held > 0)
    i = int(competing[np.argmax(ma[competing])])
    return tuple(common[i : i + w])


def held_needed(window: int) -> int:
    """How many of a window's steps must hold rewards of a role for the window to compete as its best: half,
    rounded up."""
    return (window + 1) // 2


def windows_of(
    base: Side, other: Side, split: Split, common: list[int], role: str | None, opts: DiffOptions
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per point: (the baseline's window, the other run's window)."""
    w = opts.window
    start, end = tuple(common[:w]), tuple(common[-w:])
    best = (_best_window(base, split, role, common, w), _best_window(other, split, role, common, w))
    return {"start": (start, start), "end": (end, end), "best": best}


def plan_windows(
    base: Side, other: Side, split: Split, common: list[int], roles: list[str | None], opts: DiffOptions
) -> None:
    """Record, on both sides, the windows whose samples are to be read and bootstrapped."""
    for role in roles:
        for point, (a, b) in windows_of(base, other, split, common, role, opts).items():
            for side, steps in ((base, a), (other, b)):
                side.windows.add((split, steps))
                side.wanted.setdefault(split, set()).update(steps)
                if point != "best":  # zero_adv_frac and pairing: the start and the end
                    side.text_wanted.setdefault(split, set()).update(steps)


def sparse_window_notes(
    base: Side, other: Side, split: Split, common: list[int], roles: list[str | None], opts: DiffOptions
) -> list[str]:
    """A note per run and split for the roles whose start, end or best window has steps without a reward of
    the role: a window's figures are of the steps that hold values, and ``16..25`` does not say that only
    step 25 does (a role that begins late, a Flink v0 file without roles). Roles with the same counts share
    one note."""
    found: dict[tuple[int, str], list[str | None]] = {}
    for role in roles:
        said: dict[int, dict[tuple[tuple[int, ...], int], list[str]]] = {}  # run: (window, held): its points
        for point, (wa, wb) in windows_of(base, other, split, common, role, opts).items():
            for side, steps in ((base, wa), (other, wb)):
                held = int((np.nan_to_num(side.series(split, role, steps, "reward_count")) > 0).sum())
                if held < len(steps):
                    said.setdefault(side.index, {}).setdefault((steps, held), []).append(point)
        for index, windows in said.items():
            parts = "; ".join(
                f"{', '.join(points)} {steps_text(steps)}: {held} of {len(steps)}"
                for (steps, held), points in windows.items()
            )
            found.setdefault((index, parts), []).append(role)
    where = f" in split {split}" if split is not None else ""
    out = []
    for (index, parts), found_roles in found.items():
        side = base if index == base.index else other
        named = [r for r in found_roles if r is not None]
        if named:
            shown = ", ".join(named + ["the samples without per-role data"] * (None in found_roles))
            whose = f"role{'s' if len(found_roles) > 1 else ''} {shown}: steps holding rewards of the role"
        else:  # no role: the samples' own rewards (a step whose samples all failed holds none)
            whose = "steps holding a valid reward"
        out.append(
            f"{side.name}{where}, {whose}: {parts} (a window's figures are of those steps; with none, it has no value)"
        )
    return out
