"""``diff_runs``: the runs aligned, each role compared at its start, end and best windows, with onsets and the
per-prompt pairing (the package docstring says what each figure is)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from ..._lazy import pl
from ...errors import UsageError
from ...run import Run
from ...schema import NULL_ROLE_LABEL
from ..changepoint import first_sustained
from ..doctor_config import DoctorConfig
from . import window_cache
from .align import (
    beyond_range_notes,
    check_filters,
    common_roles,
    labels_of,
    only_steps_said,
    overlap_row,
    plan_windows,
    prompt_join_notes,
    sparse_window_notes,
    steps_of,
    window_gap_note,
    windows_of,
)
from .bootstrap import (
    MIN_UNITS,
    TIE_ULPS,
    UNITS_ARE,
    backed_verdict,
    bootstrap_means,
    few_units_notes,
    interval,
    min_flip_prompts,
    rng_for,
    sign_flip_p,
    valid_mean,
    verdict,
)
from .extras import config_rows, finding_rows, scalar_rows, side_by_side, text_rows
from .model import (
    CONFIG_SCHEMA,
    FINDINGS_SCHEMA,
    OVERLAP_SCHEMA,
    PAIRED_SCHEMA,
    POINTS_SCHEMA,
    ROLES_SCHEMA,
    SCALARS_SCHEMA,
    TEXT_SCHEMA,
    Diff,
    DiffOptions,
    Split,
    frame,
)
from .sides import (
    PROMPT_MEANS_SCHEMA,
    STEPS_NAMED,
    Boot,
    Side,
    bootstrap_side,
    counters,
    layouts_of,
    load_rows,
    per_step,
    recurs,
    role_eq,
    role_key,
    split_eq,
    split_order,
    steps_listed,
    steps_text,
)

Plan = tuple[Side, Split, list[int], list[str | None]]  # a compared run, a split, its common steps, its roles


def diff_runs(
    runs: Sequence[Run],
    names: Sequence[str] | None = None,
    options: DiffOptions | None = None,
    locations: Sequence[str] | None = None,
) -> Diff:
    """Compare ``runs[1:]`` with the baseline ``runs[0]`` (package docstring). ``names`` label the runs
    (default: each run's name, made unique); ``locations``, where each run was given, go with them
    (``Diff.locations``: the JSON's ``path``). Runs with nothing in common give empty frames and a note saying
    why; a ``--split``, ``--role`` or ``--keys`` value that matches no run is a ``UsageError``."""
    opts = options or DiffOptions()
    opts.check()
    if len(runs) < 2:
        raise UsageError("diff needs at least two runs: the baseline first, then the runs to compare with it")
    labels = labels_of(runs, names)
    sides = [Side(i, labels[i], run, steps_of(run, opts)) for i, run in enumerate(runs)]
    notes: list[str] = []
    check_filters(sides, opts)
    notes += beyond_range_notes(sides)
    layouts = [layouts_of(s.run) for s in sides]
    for s, lay in zip(sides[1:], layouts[1:], strict=True):
        if lay != layouts[0]:
            notes.append(
                f"layouts differ: {sides[0].name} is {', '.join(layouts[0]) or '-'}, {s.name} is "
                f"{', '.join(lay) or '-'}: compared on what both have (per-role rewards and KL by step and split)"
            )
    for s in sides:
        s.per_step = per_step(s, opts)
    base = sides[0]
    overlap_rows, plans = _align(sides, opts, notes)
    commons = {(other.index, split): common for other, split, common, _ in plans}
    per_steps = [s.per_step if s.per_step is not None else pl.DataFrame() for s in sides]
    if opts.series_only:
        empty = [frame([], schema) for schema in (ROLES_SCHEMA, POINTS_SCHEMA, PAIRED_SCHEMA, SCALARS_SCHEMA)]
        return Diff(
            names=labels,
            locations=list(locations or []),
            layouts=layouts,
            overlap=frame(overlap_rows, OVERLAP_SCHEMA),
            roles=empty[0],
            points=empty[1],
            paired=empty[2],
            scalars=empty[3],
            config=frame([], CONFIG_SCHEMA),
            notes=notes,
            per_step=per_steps,
            options=opts,
            common=commons,
        )
    for s in sides:
        # A side's windows as stored by an earlier diff of the same files (``window_cache``), else read.
        entry = window_cache.entry_path(s, opts)
        if not window_cache.restore(s, entry, opts):
            load_rows(s)
            bootstrap_side(s, opts)
            # Kept only if every file counted in the key was read whole: a file that failed (and was left out)
            # changes the key, and what was computed without it must not stand for it; a file of the windows'
            # steps whose text failed (its numbers read, its prompts not: ``FileInfo.unread``) is said by every
            # diff that reads it, so none is answered from the cache without reading it.
            if entry is not None and not _unread_in_windows(s) and window_cache.entry_path(s, opts) == entry:
                window_cache.keep(s, entry)
    role_rows: list[dict[str, Any]] = []
    point_rows: list[dict[str, Any]] = []
    paired_rows: list[dict[str, Any]] = []
    for other, split, common, roles in plans:
        short = _window_note(other, split, common, opts)
        notes += [short] if short else []
        notes += sparse_window_notes(base, other, split, common, roles, opts)
        gaps = window_gap_note(base, other, split, (base.steps[split], other.steps[split]), common, roles, opts)
        notes += [gaps] if gaps else []
        notes += independent_notes(base, other, split, roles)
        notes += unlinked_notes(base, other, split, roles)
        said_before = len(notes)
        pairs = _paired(base, other, split, tuple(common[-opts.window :]), roles, opts, notes)
        withheld = any(COUNTED_IDS in n for n in notes[said_before:])  # ids not paired on purpose: said so
        for role in roles:
            pts, head = _compare_role(base, other, split, common, role, opts, notes)
            point_rows += pts
            pair = pairs.get(role)
            if pair is not None:
                paired_rows.append(pair)
                head.update(
                    paired_diff=pair["mean_diff"],
                    paired_ci_low=pair["ci_low"],
                    paired_ci_high=pair["ci_high"],
                    prompts=pair["prompts"],
                    # The paired figures of ids alone are marked here too (``_by_id_notes``): a reader of the
                    # roles rows alone would take them for pairs of the same prompt text.
                    paired_by_id=pair["by_id"],
                )
            role_rows.append(head)
        if roles and not withheld and not any(r["run"] == other.name and r["split"] == split for r in paired_rows):
            notes.append(
                f"{other.name}{' in split ' + split if split is not None else ''}: no prompt in common with "
                f"{base.name} within the same steps (same prompt text or group id): no paired comparison"
            )
    notes += [n for s in sides for n in twice_notes(s)]
    notes += prompt_join_notes(sides)
    notes[:] = list(dict.fromkeys(notes))  # the baseline's windows, said once when they are the same windows
    warnings = [w for s in sides if (w := repeated_warning(s))]
    scalars = scalar_rows(sides, opts, notes)
    configs = config_rows(sides, notes)
    out = Diff(
        names=labels,
        locations=list(locations or []),
        layouts=layouts,
        overlap=frame(overlap_rows, OVERLAP_SCHEMA),
        roles=frame(role_rows, ROLES_SCHEMA),
        points=frame(point_rows, POINTS_SCHEMA),
        paired=frame(paired_rows, PAIRED_SCHEMA),
        scalars=frame(scalars, SCALARS_SCHEMA),
        config=frame(configs, CONFIG_SCHEMA),
        notes=notes,
        warnings=warnings,
        per_step=per_steps,
        options=opts,
        common=commons,
    )
    if opts.text:
        windows = [(other, split, common) for other, split, common, _ in plans]
        out.text = frame(text_rows(base, windows, opts, notes), TEXT_SCHEMA)
    if opts.findings:
        out.findings = frame(finding_rows(sides, opts, notes), FINDINGS_SCHEMA)
    return out


def _no_samples(side: Side) -> str:
    """``samples``, or ``readable samples (its 2 sample file(s) could not be read)`` where files were left out:
    the run's problems name them, and the reason (a newer schema, a truncated file) is theirs."""
    unread = sum(f.kind == "samples" and not f.readable for f in side.run.files)
    return f"readable samples (its {unread} sample file(s) could not be read)" if unread else "samples"


def _align(sides: list[Side], opts: DiffOptions, notes: list[str]) -> tuple[list[dict[str, Any]], list[Plan]]:
    """The overlap rows and, per compared run and split with common steps, what to compare; the windows to
    read are recorded on the sides; a note for every split, step or role only one run has."""
    base = sides[0]
    overlap_rows = [overlap_row(base, split, None, None) for split in sorted(base.steps, key=split_order)]
    plans: list[Plan] = []
    for other in sides[1:]:
        splits = [s for s in base.steps if s in other.steps]
        empty = [s for s in (base, other) if not s.steps]
        if empty:
            where = " at the steps and splits chosen" if not opts.steps.unbounded or opts.splits else ""
            said = " and ".join(f"{s.name} has no {_no_samples(s)}" for s in empty)
            notes.append(f"{said}{where}: no per-role comparison of {other.name} with {base.name}")
            continue
        # Said of this pair: with three runs or more, "eval only in base" read as if no run's eval were compared.
        for only, who, lacks in (
            (set(base.steps) - set(other.steps), base, other),
            (set(other.steps) - set(base.steps), other, base),
        ):
            if only:
                listed = ", ".join(sorted(str(s) for s in only))
                notes.append(
                    f"split(s) {listed} in {who.name}, not in {lacks.name}: {other.name} not compared with "
                    f"{base.name} there"
                )
        if not splits:
            notes.append(f"{base.name} and {other.name} have no split in common: nothing per step to compare")
        for split in sorted(splits, key=split_order):
            a, b = base.steps[split], other.steps[split]
            common = sorted(set(a) & set(b))
            overlap_rows.append(overlap_row(other, split, common, base))
            where = f" in split {split}" if split is not None else ""
            if not common:
                notes.append(
                    f"{base.name} and {other.name} have no common step{where} ({base.name}: {steps_text(a)}; "
                    f"{other.name}: {steps_text(b)}): nothing per step to compare there"
                )
                continue
            if len(common) < max(len(a), len(b)):
                notes.append(
                    f"{other.name}{where}: compared with {base.name} on the {len(common)} step(s) both have "
                    f"({steps_text(common)}; {base.name} has {steps_text(a)}, {other.name} has {steps_text(b)})"
                    f"{only_steps_said(base, a, other, b)}"
                )
            roles = common_roles(base, other, split, common, notes, where)
            plans.append((other, split, common, roles))
            plan_windows(base, other, split, common, roles, opts)
    notes[:] = list(dict.fromkeys(notes))  # a baseline without samples is said once, not once per run
    return overlap_rows, plans


def repeated_warning(side: Side) -> str | None:
    """The windows' repeated sample ids of ``side`` (``sides.repeated_ids``), in doctor's words; None without."""
    if not side.repeated:
        return None
    ids = sum(r[2] for r in side.repeated)
    extra = sum(r[3] for r in side.repeated)
    steps = [f"{r[1]}{f' ({r[0]})' if r[0] is not None else ''}" for r in side.repeated]
    at = ", ".join(steps[:STEPS_NAMED]) + (f", ... ({len(steps)} steps)" if len(steps) > STEPS_NAMED else "")
    return (
        f"{side.name}: repeated_sample_ids: {ids} sample id(s) occur more than once within their step in the "
        f"windows compared ({extra} extra sample(s); step(s) {at}): rows read twice (a copied file?), which count "
        "twice in these figures, or distinct samples given one id (`runlog doctor` names the files)"
    )


def twice_notes(side: Side) -> list[str]:
    """Per split and role of ``side``'s windows where samples list the role more than once (``Side.twice``):
    each entry is a value of the role, counted in ``n`` and in the means as ``summarize --by role`` counts it (a
    window of 120 such samples has an ``n`` of 240), which a reader of ``n`` would take for 240 samples."""
    found: dict[tuple[Split, str], dict[int, int]] = {}
    for split, step, rk, ids in side.twice:
        found.setdefault((split, rk), {})[step] = ids
    out = []
    for (split, rk), at in sorted(found.items(), key=lambda kv: (split_order(kv[0][0]), kv[0][1])):
        role = None if rk == role_key(None) else rk
        out.append(
            f"{side.name}{_where(split)}, role {_role_name(role)}: {sum(at.values())} sample(s) of the windows "
            f"list the role more than once (step(s) {steps_listed(list(at))}): each entry is a value, counted "
            "in n and in the means, as summarize --by role counts it"
        )
    return out


def independent_notes(base: Side, other: Side, split: Split, roles: list[str | None]) -> list[str]:
    """Where no prompt group nor prompt of a run's compared roles is known in the windows (no group id, no
    prompt text): its samples are the intervals' units, as if independent, which they are not if they come in
    prompt groups (a GRPO run logged without them: null pairs were called ahead or behind 30-40 % of the time
    at 95 %). runlog cannot know the groups; this says what the interval then assumes (the two runs in one note
    where it is so of the same roles)."""
    said: dict[str, list[str]] = {}
    for side in (base, other):
        alone = [r for r in roles if (split, role_key(r)) in side.independent]
        if alone:
            shown = ", ".join(map(_role_name, alone))
            which = "" if len(alone) == len(roles) else f", role{'s' if len(alone) > 1 else ''} {shown}"
            said.setdefault(which, []).append(side.name)
    return [
        f"{' and '.join(names)}{_where(split)}{which}: no prompt groups known (no group_id, no prompt text): the "
        f"intervals take {'their' if len(names) > 1 else 'its'} samples as independent (and the onset the samples' "
        "SE); if samples share prompts (a GRPO group), the intervals are too narrow, and a tie can read as ahead "
        "or behind"
        for which, names in said.items()
    ]


# Said where group ids that count a step's groups are not paired (``_paired``); no "no prompt in common" note then.
COUNTED_IDS = "not known to name prompts, so nothing is paired by them"

UNLINKED_WHY = {
    "same": "group ids the same at every step, as counters g0..g7 of a step's groups are, or a dataset drawn "
    "whole at every step",
    "counters": "group ids that count a step's groups: at least half of the steps hold the ids most steps hold, "
    "those alone, and every step's ids lie mostly within the largest of theirs (counters g0..g7 of a step's "
    "groups, a dataset drawn whole at "
    "every step, or g0..g{k-1} of a varying number k of groups)",
    "text": "a prompt text shared by the groups of a step (an instruction or template), and group ids found at "
    "one step only",
}


def unlinked_notes(base: Side, other: Side, split: Split, roles: list[str | None]) -> list[str]:
    """Where every prompt key of a run's compared role was discarded as no prompt's identity in a window
    (``Side.unlinked``: per-step counters, a shared instruction with group ids that recur at no other step), the
    units are the steps' prompt groups: right if no prompt recurs across the window's steps, too narrow if one
    does (a small dataset: a fifth of null comparisons called ahead or behind at 95 %). runlog cannot tell
    which; this says so, as ``independent_notes`` does where no group is known at all (the two runs in one
    note where it is so of the same roles, for the same reasons)."""
    said: dict[tuple[str, str], list[str]] = {}
    for side in (base, other):
        found = [r for r in roles if (split, role_key(r)) in side.unlinked]
        if found:
            why = sorted(set().union(*(side.unlinked[(split, role_key(r))] for r in found)))
            said.setdefault((_which(found, roles), "; ".join(UNLINKED_WHY[w] for w in why)), []).append(side.name)
    return [
        f"{' and '.join(names)}{_where(split)}{which}: no prompt known across steps ({why}): the intervals' units "
        "are the steps' prompt groups; if a prompt recurs at several steps of a window (a small dataset), the "
        "intervals may be too narrow where the runs draw their prompts apart (a tie can read as ahead or behind), "
        "and too wide where both evaluate one fixed set (its difficulty, shared, cancels)"
        for (which, why), names in said.items()
    ]


def _which(found: list[str | None], roles: list[str | None]) -> str:
    """``, roles a, b`` for the roles ``found`` of ``roles``; empty when they are all of them."""
    if len(found) == len(roles):
        return ""
    return f", role{'s' if len(found) > 1 else ''} {', '.join(map(_role_name, found))}"


def _window_note(other: Side, split: Split, common: list[int], opts: DiffOptions) -> str | None:
    """``--window`` beyond the common steps: the start, end and best windows are then each all of them."""
    if len(common) >= opts.window:
        return None
    return (
        f"{other.name}{_where(split)}: --window {opts.window} is more than the {len(common)} step(s) it shares with "
        f"the baseline: the start, end and best windows are each those {len(common)} step(s)"
    )


NOTHING: Boot = (None, 0, np.full(1, np.nan), np.empty(0), np.empty(0))
METRIC_WORDS = {"reward": ("ahead", "behind"), "kl": ("higher", "lower"), "zero_adv_frac": ("higher", "lower")}


def _where(split: Split) -> str:
    return f" in split {split}" if split is not None else ""


def _shown(x: float | None) -> str:
    return "NaN" if x is None or math.isnan(x) else f"{x:g}"


def _role_name(role: str | None) -> str:
    return NULL_ROLE_LABEL if role is None else role


def _compare_role(
    base: Side, other: Side, split: Split, common: list[int], role: str | None, opts: DiffOptions, notes: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    rk = role_key(role)
    infinite: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    overflowed: dict[str, list[str]] = {}  # metric -> points whose replicates all overflowed
    few: dict[tuple[int, int], list[str]] = {}  # (units, units) -> "metric point" of too few units for a verdict
    unsure: list[str] = []  # the intervals beyond 0 that the permutation test does not back
    for point, (wa, wb) in windows_of(base, other, split, common, role, opts).items():
        va, vb = base.boots[(split, wa)], other.boots[(split, wb)]
        for metric in ("reward", "kl", "zero_adv_frac"):
            if point == "best" and metric == "zero_adv_frac":
                continue
            a, b = va.get(f"{rk}/{metric}", NOTHING), vb.get(f"{rk}/{metric}", NOTHING)
            if a[0] is None and b[0] is None:
                continue  # neither run has the metric there (no KL logged, no prompt groups)
            with np.errstate(over="ignore", invalid="ignore"):  # replicates beyond float64: not finite, said below
                reps = b[2] - a[2]
            lo, hi = interval(reps, opts.ci, a[1], b[1])
            sides = ((base.name, a[0]), (other.name, b[0]))
            unbounded = [who for who, m in sides if m is not None and not math.isfinite(m)]
            if unbounded:
                # ±inf among the values: the mean is infinite or NaN (summarize's), a bootstrap of it no interval.
                lo = hi = None
                infinite.setdefault((metric, tuple(unbounded)), []).append(point)
            elif lo is None and len(reps) and not np.isfinite(reps).any() and min(a[1] or 0, b[1] or 0) >= MIN_UNITS:
                # Finite means whose every replicate overflowed (values near ±1e308): no interval, said.
                overflowed.setdefault(metric, []).append(point)
            row = side_by_side(split, role, metric, point, other.name, wb, a[0], b[0])
            word = p_value = why = None
            if row["diff"] is not None:
                rng = rng_for(opts.seed, other.index, "permute", split, rk, metric, point)
                units = ((a[3], a[4]), (b[3], b[4]))
                word, p_value, why = backed_verdict(lo, hi, opts.ci, units, rng, METRIC_WORDS[metric], (a[0], b[0]))
            if why == "few":
                few.setdefault((len(a[3]), len(b[3])), []).append(f"{metric} {point}")
            elif why == "unsure":
                unsure.append(
                    f"{metric} {point}: interval [{_shown(lo)}, {_shown(hi)}], p = {p_value:.3g} over {len(a[3])} "
                    f"and {len(b[3])} unit(s)"
                )
            row.update(baseline_steps=steps_text(wa), ci_low=lo, ci_high=hi, p_value=p_value, verdict=word)
            rows.append({**row, "baseline_n": a[1], "n": b[1], "baseline_units": len(a[3]), "units": len(b[3])})
    for metric, points in overflowed.items():
        notes.append(
            f"{other.name}{_where(split)}, role {_role_name(role)}: every bootstrap replicate of the {metric} "
            f"difference in the {', '.join(points)} window(s) is beyond float64 (values near ±1e308): no interval, "
            "no verdict there"
        )
    for (metric, who), points in infinite.items():
        notes.append(
            f"{other.name}{_where(split)}, role {_role_name(role)}: the {metric} values of {' and '.join(who)} in "
            f"the {', '.join(points)} window(s) include ±inf, values as summarize counts them, so the mean is "
            f"infinite or NaN (null in JSON): no interval, no verdict there"
        )
    notes += few_units_notes(f"{other.name}{_where(split)}, role {_role_name(role)}", few, opts.ci, UNITS_ARE)
    if unsure:
        notes.append(
            f"{other.name}{_where(split)}, role {_role_name(role)}: interval not backed by a permutation test of the "
            f"units at {opts.ci:.0%} ({'; '.join(unsure)}): verdict tie (a percentile bootstrap of few units is too "
            "narrow)"
        )
    end = next((r for r in rows if r["metric"] == "reward" and r["point"] == "end"), None)
    ahead, behind = _onsets(base, other, split, common, role, opts)
    head = {
        "split": split,
        "role": role,
        "run": other.name,
        "common_steps": len(common),
        "reward_end_baseline": end["baseline"] if end else None,
        "reward_end": end["value"] if end else None,
        **{k: end[k] if end else None for k in ("diff", "ci_low", "ci_high", "p_value", "verdict")},
        "ahead_from": ahead,
        "behind_from": behind,
        **dict.fromkeys(("paired_diff", "paired_ci_low", "paired_ci_high", "prompts", "paired_by_id")),
    }
    return rows, head


def step_z(
    mean_a: np.ndarray, sd_a: np.ndarray, n_a: np.ndarray, mean_b: np.ndarray, sd_b: np.ndarray, n_b: np.ndarray
) -> np.ndarray:
    """Welch z of ``mean_b - mean_a`` per step (a step with no spread in either run: +-inf for a difference,
    0 for none; NaN where a run has no value or a standard deviation is missing).

    A side needs two valid values for its sample SD (ddof=1): with one, the SD is undefined (NaN), not 0, and
    the step has no z. Taking it as 0 made every one-sample step infinite ("no spread"), so that any late run
    of same-sign differences in pure noise passed as a stable onset; and, with one side of one sample, it left
    the SE to the other side's alone, a z too large."""
    # An infinite mean (an inf reward) makes inf - inf and inf ** 2: NaN where it does, said by numpy on stderr
    # otherwise (a raw RuntimeWarning); such a step has no z.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d = mean_b - mean_a
        var = np.where(n_a >= 2, sd_a**2 / np.maximum(n_a, 1), np.nan) + np.where(
            n_b >= 2, sd_b**2 / np.maximum(n_b, 1), np.nan
        )
        se = np.sqrt(var)
        z = np.where(se > 0, d / np.where(se > 0, se, 1.0), np.where(d == 0, 0.0, np.sign(d) * np.inf))
    return np.where(np.isfinite(d) & np.isfinite(var), z, np.nan)


def _onsets(
    base: Side, other: Side, split: Split, common: list[int], role: str | None, opts: DiffOptions
) -> tuple[int | None, int | None]:
    """First common step from which B is stably ahead (behind): the doctor's ``first_sustained`` rule on the
    per-step Welch z (each run's SE times the root of its design effect: prompt groups) against the interval's
    normal quantile. A z of +-inf (no spread in two or more values on
    each side, a difference) counts there as beyond the quantile on its side; a NaN z (a run without a value,
    or with one: no SD) is a step left out."""
    cols = ("reward_mean", "reward_std", "reward_count")
    a = [base.series(split, role, common, c) for c in cols]
    b = [other.series(split, role, common, c) for c in cols]
    # The samples' SD scaled by the root of each run's design effect: the SE of a step's mean where its samples
    # come in prompt groups (``sides.design_effect``), so that a prompt's difficulty is not read as a lead.
    inflate = [math.sqrt(s.deff.get((split, role_key(role)), 1.0)) for s in (base, other)]
    z = step_z(a[0], a[1] * inflate[0], np.nan_to_num(a[2]), b[0], b[1] * inflate[1], np.nan_to_num(b[2]))
    crit = NormalDist().inv_cdf(0.5 + opts.ci / 2)
    cfg = DoctorConfig()
    out = []
    for sign in (1.0, -1.0):
        i = first_sustained(sign * z, crit, persist=cfg.persist, min_run=cfg.min_segment)
        out.append(None if i is None else common[i])
    return out[0], out[1]


def _paired(
    base: Side,
    other: Side,
    split: Split,
    steps: tuple[int, ...],
    roles: list[str | None],
    opts: DiffOptions,
    notes: list[str],
) -> dict[str | None, dict[str, Any]]:
    """Per role, the per-prompt comparison over ``steps``: per (step, prompt) the role's mean valid reward in
    each run, the prompts both runs have paired; the mean of the differences with a bootstrap interval over
    prompts (the roles with as many prompts share one ``bootstrap_means`` call). A difference within rounding of
    its two means is 0 (``_differences``). The verdict needs, besides an interval beyond 0, an exact sign-flip
    test of the differences at the same level (``bootstrap.sign_flip_p``, its ``p_value``): else ``tie``, and
    with fewer prompts than that test can ever find significant (``min_flip_prompts``), no verdict; a note says
    which.

    A prompt whose rewards include ±inf has an infinite mean (NaN with both signs), and its difference is
    infinite or NaN: an infinite one is a win or a loss, a NaN one none of wins, losses and ties; the mean of
    the differences is then infinite or NaN (what they give), with no interval (a bootstrap of it has none),
    and a note says how many prompts are of each kind."""

    # The roles whose group ids are not known to name prompts, per reason ("same": one set of ids at every step;
    # "counted": they count a step's groups, their sets not all one; "once": each is found at one step only), and
    # per which roles: their runs.
    withheld: dict[tuple[str, str], list[str]] = {}

    def per_prompt(side: Side) -> pl.DataFrame:
        means = side.prompt_means
        if means is None or means.height == 0:
            means = pl.DataFrame(schema=PROMPT_MEANS_SCHEMA)
        means = means.filter(split_eq(split))
        window = means.filter(pl.col("step").is_in(list(steps)))
        why = {r: _unnamed(window, means, r) for r in roles}
        for reason in ("same", "counted", "once"):
            found = [r for r in roles if why[r] == reason]
            if found:
                withheld.setdefault((reason, _which(found, roles)), []).append(side.name)
        dropped = [r for r in roles if why[r]]
        if dropped:
            window = window.filter(~(pl.col("by_id") & pl.any_horizontal(*(role_eq(r) for r in dropped))))
        return window.filter(pl.col("m").is_not_null()).select("role", "step", "pkey", "by_id", "m")

    on = ["role", "step", "pkey", "by_id"]
    mine, theirs = per_prompt(base), per_prompt(other)
    what = {
        "same": f"the group ids of the end window ({steps_text(steps)}) are the same at every step, as counters "
        "g0..g7 of a step's groups (or prompts drawn whole at every step) are",
        "counted": f"the group ids of the end window ({steps_text(steps)}) count a step's groups: at least half "
        "of its steps hold the ids that most of its steps hold, those alone, and every step's ids lie mostly "
        "within the largest of theirs, as "
        "counters g0..g7 of a step's groups (or prompts drawn whole at every step) do, or g0..g{k-1} of a varying "
        "number k of groups",
        "once": "the group ids of the start and end windows are each found at one step only, as ids that number a "
        "run's groups (s3-g1, a running counter) are: two runs have the same ones at the same steps whatever "
        "prompts they drew",
    }
    notes += [
        f"{' and '.join(names)}{_where(split)}{which}: {what[reason]}: {COUNTED_IDS} (log the prompt text to pair "
        "a fixed set of prompts, such as an eval set named by ids)"
        for (reason, which), names in withheld.items()
    ]
    joined = mine.join(theirs, on=on, suffix="_b", nulls_equal=True).sort(on, nulls_last=True)
    diffs: dict[str | None, np.ndarray] = {}
    coverage: dict[tuple[int, int, int], list[str | None]] = {}  # (paired, baseline's, run's): roles
    by_id: dict[str | None, int] = {}  # per role: its pairs whose prompt is a group id alone
    for role in roles:
        part = joined.filter(role_eq(role))
        if part.height:
            diffs[role] = _differences(part["m"].to_numpy(), part["m_b"].to_numpy())
            by_id[role] = int(part["by_id"].sum())
            had = (part.height, mine.filter(role_eq(role)).height, theirs.filter(role_eq(role)).height)
            coverage.setdefault(had, []).append(role)
    notes += _coverage_notes(base, other, split, steps, coverage)
    notes += _by_id_notes(other, split, steps, roles, {r: (by_id[r], len(d)) for r, d in diffs.items()})
    out: dict[str | None, dict[str, Any]] = {}
    by_len: dict[int, list[str | None]] = {}
    for role, d in diffs.items():
        by_len.setdefault(len(d), []).append(role)
    few: dict[int, list[str | None]] = {}  # prompts -> the roles with too few of them for a verdict
    unsure: list[str] = []  # the roles whose interval excludes 0 where the sign-flip test does not
    for n, group in by_len.items():
        rng = rng_for(opts.seed, other.index, "paired", split, steps[0], steps[-1], n)
        reps = bootstrap_means(np.column_stack([diffs[r] for r in group]), opts.boot, rng)
        for k, role in enumerate(group):
            d = diffs[role]
            lo, hi = interval(reps[:, k], opts.ci, len(d))
            p_value = None
            undefined = int(np.isnan(d).sum())
            infinite = int(np.isinf(d).sum())
            if undefined or infinite:
                lo = hi = None
                mean = math.nan if undefined else valid_mean(d)
                parts = [f"{infinite} infinite (counted as wins or losses)"] if infinite else []
                if undefined:
                    parts.append(f"{undefined} NaN (counted in none of wins, losses and ties)")
                notes.append(
                    f"{other.name}{_where(split)}, role {_role_name(role)}: {infinite + undefined} of the {len(d)} "
                    f"paired prompts have ±inf among their rewards, so their mean difference is not finite: "
                    f"{' and '.join(parts)}; the mean of the differences is {_shown(mean)}: no interval, no verdict"
                )
            else:
                mean = valid_mean(d)
                p_value = sign_flip_p(d, rng_for(opts.seed, other.index, "flip", split, steps[0], steps[-1], role))
            # Pairs resting on group ids alone may be no one prompt (``_by_id_notes``): no verdict of theirs.
            word = None if by_id[role] else verdict(lo, hi)
            if p_value is not None and not by_id[role] and n < min_flip_prompts(opts.ci):
                word = None
                few.setdefault(n, []).append(role)
            elif word in ("ahead", "behind") and p_value is not None and p_value > 1 - opts.ci:
                word = "tie"
                unsure.append(
                    f"role {_role_name(role)}: interval [{_shown(lo)}, {_shown(hi)}], p = {p_value:.3g} over "
                    f"{int(np.count_nonzero(d))} non-zero difference(s)"
                )
            out[role] = {
                "split": split,
                "role": role,
                "run": other.name,
                "steps": steps_text(steps),
                "prompts": len(d),
                "by_id": by_id[role],
                "wins": int((d > 0).sum()),
                "losses": int((d < 0).sum()),
                "ties": int((d == 0).sum()),
                "mean_diff": mean,
                "ci_low": lo,
                "ci_high": hi,
                "p_value": p_value,
                "verdict": word,
            }
    least = min_flip_prompts(opts.ci)
    for n, found in few.items():
        notes.append(
            f"{other.name}{_where(split)}{_which(found, roles)}: the paired comparison (end window "
            f"{steps_text(steps)}) has {n} prompt(s): too few for a paired verdict at {opts.ci:.0%} (a sign-flip "
            f"test of {n} differences cannot reach p <= {1 - opts.ci:.2g}: its least p is 2 / 2^{n} = "
            f"{2 / 2**n:.3g}; {least} or more are needed): no paired verdict (its counts, mean and interval are "
            "kept; a percentile bootstrap of so few prompts is too narrow)"
        )
    if unsure:
        notes.append(
            f"{other.name}{_where(split)}: paired interval not backed by a sign-flip test of the per-prompt "
            f"differences at {opts.ci:.0%} ({'; '.join(unsure)}): paired verdict tie (a percentile bootstrap of "
            "few, or few uneven, prompts is too narrow)"
        )
    return out


def _differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per paired prompt, the run's mean minus the baseline's, 0 where it is within rounding of the two means
    (``bootstrap.rounding``: the same rewards summed in another order), so that round-off is a tie, never a win,
    a loss or a verdict."""
    with np.errstate(invalid="ignore"):
        d = b - a
        tol = TIE_ULPS * np.finfo(float).eps * np.fmax(np.abs(a), np.abs(b))
        return np.where(np.isfinite(d) & (np.abs(d) <= tol), 0.0, d)


def _unnamed(window: pl.DataFrame, texts: pl.DataFrame, role: str | None) -> str | None:
    """Why the rows of ``Side.prompt_means`` keyed by group id (``role``'s) are not known to name prompts, so
    that none is paired; None where they may. ``counted``: those of the end window (``window``) count a step's
    groups (``sides.counters``, the test the intervals' units apply): ``g3`` of one run and ``g3`` of the other
    are then no one prompt (a quarter of null pairs were called ahead or behind on such pairs); ``same`` where,
    more than that, every step holds one set of them (the note says so only then). ``once``: over
    the start and end windows (``texts``), two steps or more, no id is found at two steps (``sides.recurs``):
    ids that number the groups (``s3-g1``) are the same in two runs that share no prompt, and their wins and
    losses were no prompt's. A single step gives no sign either way: its ids are paired."""
    ids = window.filter(role_eq(role) & pl.col("by_id"))
    if ids.height and counters(ids["step"].to_numpy(), _key_codes(ids)):
        # Said as measured: "the same at every step" only where they are.
        same = ids.group_by("step").agg(pl.col("pkey").unique().sort()).get_column("pkey").n_unique() == 1
        return "same" if same else "counted"
    ids = texts.filter(role_eq(role) & pl.col("by_id"))
    if not ids.height or ids["step"].n_unique() < 2:
        return None
    return None if recurs(ids["step"].to_numpy(), _key_codes(ids)) else "once"


def _key_codes(ids: pl.DataFrame) -> np.ndarray:
    """The prompt keys (u64 hashes) as codes from 0: stacked with the steps (int64), u64 would be cast to
    float64, and two hashes could become one number."""
    return (ids["pkey"].rank("dense").cast(pl.Int64) - 1).to_numpy()


def few_pairs(paired: int, baseline: int, run: int) -> bool:
    """Whether a paired comparison rests on few of the prompts: fewer than half of those of the run with
    fewer (step, prompt) pairs in the window. Its ``paired_diff`` is then of a few prompts that happen to
    coincide (one of 18 and 85), not an estimate for the runs."""
    return 2 * paired < min(baseline, run)


def _coverage_notes(
    base: Side,
    other: Side,
    split: Split,
    steps: tuple[int, ...],
    coverage: dict[tuple[int, int, int], list[str | None]],
) -> list[str]:
    """A note per count, for the roles whose pairs leave out prompts of a run: how many (step, prompt) pairs
    were paired of how many each run has in the end window, flagged when few (``few_pairs``). The ``prompts``
    column alone does not say that they were 1 of 18."""
    out = []
    for (paired, a, b), roles in coverage.items():
        if paired >= max(a, b):
            continue  # every prompt of both runs paired
        shown = ", ".join(_role_name(r) for r in roles)
        which = f"role{'s' if len(roles) > 1 else ''} {shown}"
        what = (
            f"few (under half of those of the run with fewer): paired_diff speaks for these {paired} alone, "
            "not for the runs"
            if few_pairs(paired, a, b)
            else "the others have no counterpart and are left out of it"
        )
        out.append(
            f"{other.name}{_where(split)}, {which}: the paired comparison (end window {steps_text(steps)}) pairs "
            f"{paired} (step, prompt) pair(s), of {a} in {base.name} and {b} in {other.name}: {what}"
        )
    return out


def _by_id_notes(
    other: Side,
    split: Split,
    steps: tuple[int, ...],
    roles: list[str | None],
    counts: dict[str | None, tuple[int, int]],
) -> list[str]:
    """A note per count, for the roles some of whose (step, prompt) pairs rest on a group id alone (``counts``:
    per role, those pairs and all its pairs): no prompt text on either side (or one the step's groups share)
    confirms that the id names one prompt in both runs. The rules that tell counters from prompt names
    (``_unnamed``) cannot tell every layout apart: ``g0..g7`` numbered before dynamic sampling dropped groups,
    the survivors keeping their ids, hold a random subset at each step, as a dataset of 9 prompts drawn 8 a
    step does; read as prompt names, two runs that shared no prompt were "paired" on 46 (step, prompt)s. Such
    a pairing gives no verdict (``paired.verdict`` null; its counts, mean and interval are kept, the ``by_id``
    column counts those pairs): the unpaired comparison of the end window (``roles.verdict``) decides."""
    said: dict[tuple[int, int], list[str | None]] = {}
    for role, (ids, total) in counts.items():
        if ids:
            said.setdefault((ids, total), []).append(role)
    out = []
    for (ids, total), found in said.items():
        which = f"its {total}" if ids == total else f"{ids} of its {total}"
        out.append(
            f"{other.name}{_where(split)}{_which(found, roles)}: the paired comparison (end window "
            f"{steps_text(steps)}) pairs {which} (step, prompt) pair(s) by group id alone, with no prompt text on "
            "either side to confirm that an id names the same prompt in both runs (none logged, or one the step's "
            "groups share): where ids are per-step indices "
            "(g0..g7 numbered before filtering dropped groups), these are not the same prompts; no paired verdict "
            "(its counts, mean and interval are kept), the unpaired end-window verdict decides; log the prompt "
            "text to pair by it"
        )
    return out


def _unread_in_windows(side: Side) -> bool:
    """Whether a file of ``side``'s window steps (or of no one step) was found with text that cannot be read. A
    file outside them leaves the windows' entry as good as any (the entry's key names only the windows' files)."""
    wanted = set().union(*side.wanted.values()) if side.wanted else set()
    for f in side.run.files:
        if f.unread:
            steps = set(f.all_steps())
            if not steps or steps & wanted:
                return True
    return False
