"""``runlog doctor``: diagnose a run from its per-step series: what went wrong, for which role, since when.

Each check reads a per-step series (``RunSeries``: ``summarize``, ``diversity_frame``, ``format_frame`` and
``inspect_run`` restricted to one split) and reports ``Finding``s with the numbers behind them. Onsets come
from ``changepoint.find_shift`` (a noise-tolerant two-segment split). Every threshold lives in
``DoctorConfig`` with its default documented in docs/doctor.md; ``--set NAME=VALUE`` and ``--config FILE``
override them. A healthy run gives no finding: each rule asks for an effect size, a noise margin and
persistence, never a single bad step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np

from .._lazy import pl
from ..ends import (
    END_GRACE_S,  # noqa: F401  (re-exported: tests use it from here)
    WRITER_FAILED,
)
from ..formats.base import WARNING
from ..formats.common import step_in_name
from ..run import Run, is_stopped, stopped_text
from .changepoint import best_split, find_shift, first_sustained, robust_noise, sustained_start
from .doctor_config import DoctorConfig
from .doctor_text import text_findings
from .findings import KINDS, SEVERITIES, Diagnosis, Finding, as_floats, percent, spread_scale, who
from .series import RunSeries

# What ``diagnose`` tells its ``progress`` callback, in order (``runlog doctor`` shows them at a terminal: the
# texts of a large run take minutes).
STAGES = ("rewards and KL per role", "the texts: diversity and format", "files and sample ids")
# Set within ``following()``: the run diagnosed is still being written (``doctor --follow``, ``watch``).
_FOLLOWING: ContextVar[bool] = ContextVar("runlog_doctor_following", default=False)


def diagnose(
    run: Run,
    config: DoctorConfig | None = None,
    series: RunSeries | None = None,
    progress: Callable[[str], None] | None = None,
) -> Diagnosis:
    """Run every check on ``run`` (or on an already computed ``series``, which the report shares). When a check
    finds a file unreadable, every check runs again without it (``Run.left_out``): the checks before had read it,
    and a step would hold a finding and be missing at once. ``progress`` is called with each of ``STAGES`` as it
    begins. Within ``following()``, ``run`` is a run still being written, checked before it ends (``doctor
    --follow``, ``watch``): a NaN share of fewer than ``min_steps`` steps is no error yet (``_nan_severity``)."""
    cfg = config or DoctorConfig()
    while True:
        left = run.left_out()
        s = series or RunSeries(run, split=cfg.split or None, format_spec=cfg.format_spec)
        result = _diagnose(s, cfg, progress or (lambda stage: None))
        if run.left_out() == left:
            return result
        series = None
        run.forget_frames()  # built before the file was found unreadable, they hold it


def _diagnose(s: RunSeries, cfg: DoctorConfig, stage: Callable[[str], None]) -> Diagnosis:
    findings: list[Finding] = []
    stage(STAGES[0])
    if s.per_role.height == 0:
        s.notes.append("no samples in this run: only data problems and non-finite scalars are checked")
        found = _scalar_findings(s, cfg) + _data_findings(s)
        return Diagnosis(found, s.notes, s.split, s.scope_notes)
    steps = s.per_step["step"].to_list()
    findings += _no_reward_findings(s)
    findings += _nan_findings(s, cfg)
    findings += _nan_kl_findings(s, cfg)
    findings += _inf_findings(s)
    findings += _exception_findings(s, cfg)
    if len(steps) < cfg.min_steps:
        s.notes.append(f"only {len(steps)} step(s) (< min_steps={cfg.min_steps}): trend checks skipped")
    elif len(steps) < 2 * cfg.min_segment:
        # A change point needs min_segment steps on each side: not one could be found (said, not silent).
        s.notes.append(f"only {len(steps)} step(s) (< 2 x min_segment={cfg.min_segment}): trend checks skipped")
    else:
        for role in s.roles:
            findings += _reward_findings(s, cfg, role)
            findings += _kl_findings(s, cfg, role)
            if role is None and s.mixed_roles and s.has_groups:
                s.notes.append(_no_zero_adv_for_unroled(s))
                continue
            findings += _zero_adv_findings(s, cfg, role)
        findings += _role_gone_findings(s, cfg)
        if not s.has_kl:
            s.notes.append("no KL values in this run: kl_blowup not checked")
        if not s.has_groups:
            s.notes.append(
                "no prompt groups (no group_id, no prompt): zero_advantage judged on each step's rewards as a whole"
            )
        stage(STAGES[1])
        findings += text_findings(s, cfg)
    stage(STAGES[2])
    findings += _scalar_findings(s, cfg)
    # After the checks, so that a problem found while reading (a text column that could not be read, a file
    # gone since it was listed) is said too.
    findings += _data_findings(s)
    order = {k: i for i, k in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (-order[f.severity], f.onset_step if f.onset_step is not None else -1, f.kind))
    return Diagnosis(findings, s.notes, s.split, s.scope_notes)


def _reward_findings(s: RunSeries, cfg: DoctorConfig, role: str | None) -> list[Finding]:
    steps, mean = s.role_series(role, "reward_mean")
    _, sd = s.role_series(role, "reward_std")
    y, scale = as_floats(mean), spread_scale(sd)
    if np.isfinite(y).sum() < cfg.min_steps or scale == 0:
        return []
    kw = cfg.shift_options()
    shift = find_shift(y, direction="down", min_delta=cfg.reward_drop * scale, **kw)
    if shift is not None:
        onset = steps[shift.onset]
        return [
            Finding(
                "reward_collapse",
                "error",
                f"{who(role, s.mixed_roles)}: mean reward fell from {shift.before:.3g} to {shift.after:.3g} "
                f"from step {onset} "
                f"on ({(shift.before - shift.after) / scale:.1f} within-step SDs)",
                role,
                onset,
                {"before": shift.before, "after": shift.after, "within_step_sd": scale, "z": shift.z},
            )
        ]
    third = max(1, len(y) // 3)
    first, last = np.nanmedian(y[:third]), np.nanmedian(y[-third:])
    if len(y) >= cfg.stuck_min_steps and abs(last - first) < cfg.stuck_change * scale:
        return [
            Finding(
                "reward_stuck",
                "warning",
                f"{who(role, s.mixed_roles)}: mean reward has not moved over {len(y)} steps "
                f"({first:.3g} in the first third, "
                f"{last:.3g} in the last): no learning?",
                role,
                steps[0],
                {"first_third": first, "last_third": last, "within_step_sd": scale, "steps": len(y)},
            )
        ]
    return []


def _kl_findings(s: RunSeries, cfg: DoctorConfig, role: str | None) -> list[Finding]:
    if not s.has_kl:
        return []
    steps, kl = s.role_series(role, "kl_mean")
    y = as_floats(kl)
    skip = int(math.ceil(cfg.kl_warmup * len(y)))
    had = int(np.isfinite(y).sum())
    steps, y = steps[skip:], y[skip:]
    if np.isfinite(y).sum() < 2 * cfg.min_segment:
        if had >= 2 * cfg.min_segment:  # the warm-up, not the run, left too few steps: say so
            s.notes.append(
                f"{who(role, s.mixed_roles)}: kl_blowup not checked: kl_warmup={cfg.kl_warmup:g} leaves "
                f"{int(np.isfinite(y).sum())} KL step(s), fewer than 2 x min_segment={cfg.min_segment}"
            )
        return []
    logy = _log_kl(y, cfg.kl_floor)
    # ``find_shift`` judges one split, the least-squares one. A KL that rose decades in warm-up, held, then jumped
    # x20 has it in the rise: the trend, or a ramp whose points after the split are not 80 % above the midpoint,
    # no jump either way; the jump after the plateau was then never looked at (a review). So the search goes on
    # after each split that is no blow-up, with only the steps from there as the earlier ones: each round starts
    # at least ``min_segment`` steps later, and on a smooth rise (split near its middle) halves what is left.
    start = 0
    while (jump := _kl_jump(y, logy, start, cfg)) is None or not jump.blowup:
        split = jump.split if jump is not None else _ls_split(logy, start, cfg.min_segment)
        if split is None:
            return []
        start = split
    # The earlier level is the KL's since its last change before the jump: judged with the warm-up rise in it,
    # the plateau after the rise sat above the segment's median and the onset was put inside the plateau (a x50
    # at step 52 after 12 steps at 0.01 was said from a step from 38 to 51 in about half of 60 runs). Kept only
    # where the jump is still a blow-up at the same split, judged from there (a ramp's own start is not such a
    # change: the ramp is then its trend).
    min_delta, kw = math.log10(cfg.kl_ratio) / 2, cfg.shift_options()
    while (inner := find_shift(logy[start : jump.split], direction="up", min_delta=min_delta, **kw)) is not None:
        again = _kl_jump(y, logy, start + inner.split, cfg)
        if again is None or not again.blowup or again.split != jump.split:
            break
        start, jump = start + inner.split, again
    i, raw_before, high_before, level_after = jump.onset, jump.raw_before, jump.high_before, jump.level_after
    onset = steps[i]
    ratio = level_after / high_before
    # An earlier level below the floor (KL 0 while the policy was the reference) is said as it was: the ratio
    # is to the floor, not to a level the run had.
    earlier = (
        f"{ratio:.0f}x its earlier level ({high_before:.3g})"
        if raw_before >= cfg.kl_floor
        else f"from {raw_before:.3g} before (below kl_floor={cfg.kl_floor:g}: {ratio:.0f}x the floor)"
    )
    return [
        Finding(
            "kl_blowup",
            "error",
            f"{who(role, s.mixed_roles)}: KL jumped to {level_after:.3g} from step {onset} on, {earlier}",
            role,
            onset,
            {"kl_before_p90": raw_before, "kl_after_median": level_after, "ratio": ratio},
        )
    ]


class _KlJump(NamedTuple):
    """A change point of log10 KL found from ``start`` on (indices into the series after the warm-up), and whether
    it is a blow-up: the new level at least ``kl_ratio`` times the old one's top, and above where the trend of the
    steps before it, from ``start``, was heading."""

    split: int
    onset: int
    raw_before: float  # the 90th percentile of the KL before the onset
    high_before: float  # that, or ``kl_floor`` where it is below
    level_after: float  # the median KL after the split
    blowup: bool


def _kl_jump(y: np.ndarray, logy: np.ndarray, start: int, cfg: DoctorConfig) -> _KlJump | None:
    """``find_shift`` on log10 KL from ``start`` on (``logy``: ``y`` as ``_log_kl`` gives it), judged with only the
    steps from ``start`` as the earlier ones; None when there is no shift."""
    min_delta = math.log10(cfg.kl_ratio) / 2
    shift = find_shift(logy[start:], direction="up", min_delta=min_delta, **cfg.shift_options())
    if shift is None:
        return None
    split = start + shift.split
    i = start + _kl_onset(logy[start:], shift.onset, cfg)
    # The earlier level: the KL before the onset (not the least-squares segment, which holds the start of a
    # ramp); the new level: the segment after the split.
    head = y[start:i] if i - start >= cfg.min_segment else y[start:split]
    before = head[np.isfinite(head)]
    after = y[split:][np.isfinite(y[split:])]
    raw_before = float(np.percentile(before, 90))
    high_before = max(raw_before, cfg.kl_floor)
    level_after = float(np.median(after))
    # A steady climb: the new level is within reach of the old one's top; or a rise where the trend of the steps
    # before was heading (KL growing by a steady factor a step): no jump.
    blowup = level_after >= cfg.kl_ratio * high_before and (
        _above_trend(logy, split, cfg.min_segment, since=start) >= min_delta
    )
    return _KlJump(split, i, raw_before, high_before, level_after, blowup)


def _ls_split(logy: np.ndarray, start: int, min_segment: int) -> int | None:
    """The least-squares split ``find_shift`` judges in ``logy[start:]`` (NaN left out), as an index into ``logy``;
    None when too few points are left for two segments."""
    keep = start + np.flatnonzero(np.isfinite(logy[start:]))
    k = best_split(logy[keep], min_segment)
    return None if k is None else int(keep[k])


def _above_trend(logy: np.ndarray, end: int, min_segment: int, since: int = 0) -> float:
    """How far (in log10 units) the median of the ``4 x min_segment`` points of ``logy`` from ``end`` on lies above
    where the trend of the points before ``end`` (from ``since`` on) was heading, at those points' median position.
    The trend is a resistant line (the slope between the medians of the first and last thirds, through the median
    point), counted only when rising and only with at least ``2 x min_segment`` points before ``end``. A KL that grew by
    a steady factor a step from the start (1e-5 to 1e-2 over the run) is where its trend was heading, however far
    it climbed: no jump (at most 0.19 in 20 such runs of an audit, against at least 0.79 for a KL that jumped x10
    on a KL curve still rising; the threshold is half of log10 ``kl_ratio``, 0.5). The points just after ``end``,
    not all those after the split: an extrapolation is only as good as it is near."""
    x = np.arange(len(logy), dtype=float)
    fin = np.isfinite(logy)
    hx, hy = x[since:end][fin[since:end]], logy[since:end][fin[since:end]]
    ax, ay = x[end:][fin[end:]][: 4 * min_segment], logy[end:][fin[end:]][: 4 * min_segment]
    slope = 0.0
    if len(hx) >= 2 * min_segment:
        third = len(hx) // 3
        run = float(np.median(hx[-third:]) - np.median(hx[:third]))
        slope = max(0.0, float(np.median(hy[-third:]) - np.median(hy[:third])) / run)
    # Through the last third's median point: the level the KL had reached just before ``end``, not the history's
    # middle (a rise of decades extrapolated from its middle overshoots where a jump then lands).
    near = max(len(hx) // 3, 1)
    predicted = float(np.median(hy[-near:])) + slope * (float(np.median(ax)) - float(np.median(hx[-near:])))
    return float(np.median(ay)) - predicted


def _log_kl(y: np.ndarray, floor: float) -> np.ndarray:
    """log10 of the KL series, NaN kept. Only a KL of 0 or below (the policy still the reference; an estimator
    that can go negative) is raised, to ``floor`` or to the smallest positive KL of the series where that is
    lower: nothing positive is clamped. Clamping every value below the floor made a KL that grows smoothly
    through it (1e-5 a step at first) read as flat, then rising: a "jump" at the step it crossed the floor."""
    finite = np.where(np.isfinite(y), y, np.nan)
    positive = finite[finite > 0]
    guard = min(floor, float(positive.min())) if len(positive) else floor
    return np.log10(np.where(finite > 0, finite, np.where(np.isnan(finite), np.nan, guard)))


def _kl_onset(logy: np.ndarray, onset: int, cfg: DoctorConfig) -> int:
    """Where a rise of log10 KL leaves the noise: the first index from which it is more than ``min_z`` robust
    noise units (``changepoint.robust_noise``) above the median of the points before ``find_shift``'s onset,
    and from which at least ``persist`` of the points up to that onset and of all remaining points are too
    (``changepoint.sustained_start``; never after that onset). For a step this is the step; for a ramp (KL
    growing by a factor each step) it is where the ramp starts, whereas the 30 % rule, on a log scale, waits
    for a rise of several times."""
    head = logy[:onset][np.isfinite(logy[:onset])]
    if len(head) < cfg.min_segment:
        return onset
    threshold = float(np.median(head)) + cfg.min_z * robust_noise(head)
    keep = np.flatnonzero(np.isfinite(logy))
    last = int(np.searchsorted(keep, onset, side="right")) - 1  # the onset's position among the finite points
    if last < 0:
        return onset
    i = sustained_start(logy[keep] > threshold, cfg.persist, last)
    return int(keep[i])


def _no_zero_adv_for_unroled(s: RunSeries) -> str:
    """Why zero_advantage is not judged for the samples without per-role data in a run whose others have
    roles: split off from their prompt groups' other samples, each is mostly a group of its own, whose rewards
    are trivially equal (it would read as a run without learning signal)."""
    steps, count = s.role_series(None, "reward_count")
    _, nan = s.role_series(None, "reward_nan")
    _, null = s.role_series(None, "reward_null")
    n = int(sum(sum(int(v or 0) for v in col) for col in (count, nan, null)))
    return (
        f"{n} sample(s) without per-role data (at {len(steps)} of {s.per_step.height} steps): zero_advantage not "
        "judged for them (their prompt groups' other samples are counted under their roles)"
    )


def _zero_adv_findings(s: RunSeries, cfg: DoctorConfig, role: str | None) -> list[Finding]:
    """No learning signal for ``role``: from some step on, at least ``zero_adv`` of its prompt groups have
    all-equal rewards (``zero_adv_frac``), or, in a run without prompt groups, the whole step's rewards are
    all equal (no spread at all). The onset is ``first_sustained``'s: the first step from which ``persist``
    of the remaining steps stay at or above the threshold."""
    steps, mx = s.role_series(role, "reward_max")
    _, mn = s.role_series(role, "reward_min")
    lo, hi = as_floats(mn), as_floats(mx)
    _, count = s.role_series(role, "reward_count")
    n = as_floats(count)
    whole = np.where(n >= 2, (lo == hi).astype(float), np.nan)
    grouped = s.has_groups
    if grouped:
        _, frac = s.role_series(role, "zero_adv_frac")
        rate, unit = as_floats(frac), "prompt groups"
    else:
        rate, unit = whole, "steps (no prompt groups: each step's rewards as a whole)"
    i = first_sustained(rate, cfg.zero_adv, persist=cfg.persist, min_run=cfg.min_segment)
    if i is not None and grouped and (shared := _shared_groups(s, role)) < 0.5:
        # Most prompt groups hold one reward (prompts distinct but a few: one sample per prompt, no GRPO group):
        # a group of one is trivially "all equal", and 100 % of them said "no learning signal" of a run whose
        # every step had spread, where summarize's zero_adv_frac (no group_id: no groups) is null (an audit); a
        # review: one prompt repeated once made it 99.8 % again. Judged as a run without prompt groups: on each
        # step's rewards as a whole.
        most = "all" if shared == 0 else f"{percent(1 - shared, 1)} of the"
        note = (
            f"{who(role, s.mixed_roles)}: {most} prompt groups hold one reward (one sample per prompt, not GRPO "
            "groups): zero_advantage judged on each step's rewards as a whole"
        )
        if note not in s.notes:
            s.notes.append(note)
        grouped, rate = False, whole
        unit = "steps (prompt groups of one sample each: each step's rewards as a whole)"
        i = first_sustained(rate, cfg.zero_adv, persist=cfg.persist, min_run=cfg.min_segment)
    if i is None:
        return []
    tail = rate[i:]
    _, mean = s.role_series(role, "reward_mean")
    solved, ceiling = _solved(lo, hi, i, rate, as_floats(mean))
    what = (
        f"all at the role's usual best reward {ceiling:.3g}: solved prompts, no signal left"
        if solved
        else "no learning signal"
    )
    flat = float(np.nanmin(lo[i:])) if np.nanmin(lo[i:]) == np.nanmax(hi[i:]) else None
    level = f"; every reward is {flat:.3g}" if flat is not None else ""
    evidence: dict[str, Any] = {
        "zero_adv_frac_after": float(np.nanmean(tail)),
        "zero_adv_frac_before": float(np.nanmean(rate[:i])) if i > 0 else None,
        "threshold": cfg.zero_adv,
        "groups": grouped,
        "flat_value": flat,
        "solved": solved,
    }
    return [
        Finding(
            "zero_advantage",
            "info" if solved else "warning",
            f"{who(role, s.mixed_roles)}: from step {steps[i]} on, {percent(float(np.nanmean(tail)))} of {unit} "
            "have equal rewards "
            f"for this role{level}, so GRPO's advantage is zero ({what})",
            role,
            steps[i],
            evidence,
        )
    ]


def _shared_groups(s: RunSeries, role: str | None) -> float:
    """The share of prompt groups (within one step of the split diagnosed) that hold two samples of ``role`` or
    more, whatever their rewards: the groups ``zero_adv_frac`` is computed over (``aggregate.group_key_expr``,
    prompt text where there is no ``group_id``). Read only when the groups would give a ``zero_advantage``
    finding; 0.0 where there is no group."""
    from .aggregate import group_key_expr

    key = group_key_expr(s.run)
    if key is None:
        return 0.0
    carry = {"step": pl.col("step"), "split": pl.col("split"), "__group": key}
    mine = pl.col("role").is_null() if role is None else pl.col("role") == role

    def build() -> list[pl.LazyFrame]:
        lf = s.run.numeric(carry, [])
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        # Every sample of the role counts, a null reward (a failed trajectory) too: a GRPO group of 8 whose failed
        # samples have no reward is a group of 8, not "one sample per prompt" (a review).
        lf = lf.filter(mine & pl.col("__group").is_not_null())
        per_group = lf.group_by("split", "step", "__group").agg(pl.len().alias("n"))
        return [per_group.select((pl.col("n") >= 2).mean().alias("shared"))]

    [df] = s.run.collect(build, engine="streaming")
    value = df["shared"][0] if df.height else None
    return float(value) if value is not None else 0.0


def _solved(lo: np.ndarray, hi: np.ndarray, i: int, rate: np.ndarray, mean: np.ndarray) -> tuple[bool, float]:
    """Whether the equal rewards from index ``i`` on are all the role's usual best reward: the largest value
    that is the step maximum in at least half of the steps before ``i``, as a solved 0/1 correctness reward's
    1.0 is. A reward that goes flat at a value it never or seldom reached before (a judge stuck at 1.0) is not
    solved. With no step before ``i``, the run's best reward counts.

    The flat groups are judged, not every reward: a learning curve that saturates still has a few mixed
    groups on the steps after the onset (``first_sustained`` puts it where half the groups are flat, before
    all are). The statistics per step say where its flat groups are: from ``i`` on, every step's maximum is
    the best, a step whose rewards are all one value has them at the best, and the step's mean is at least
    what it would be with its flat share ``rate`` at the best and every other reward at the step's minimum
    (it is lower when some group is flat below the best)."""
    before = hi[:i][np.isfinite(hi[:i])]
    if len(before) == 0:
        best = float(np.nanmax(hi))
    else:
        # The largest value that is the step maximum in at least half of the steps before: one outlier above
        # the usual best (a sample that once got 1.2 of a 0/1 reward) does not move it.
        values, counts = np.unique(before, return_counts=True)
        usual = values[counts >= 0.5 * len(before)]
        if len(usual) == 0:
            return False, float(before.max())
        best = float(usual.max())
    a_lo, a_hi, a_rate, a_mean = lo[i:], hi[i:], rate[i:], mean[i:]
    seen = np.isfinite(a_lo) & np.isfinite(a_hi)
    if not seen.any() or np.any(a_hi[seen] != best):
        return False, best
    flat = seen & (a_lo == a_hi)
    if np.any(a_lo[flat] != best):
        return False, best
    judged = seen & np.isfinite(a_rate) & np.isfinite(a_mean)
    floor = a_rate[judged] * best + (1 - a_rate[judged]) * a_lo[judged]
    slack = 1e-9 * max(1.0, abs(best))  # a mean summed in floating point
    return bool(np.all(a_mean[judged] >= floor - slack)), best


@contextlib.contextmanager
def following(partial: bool = True) -> Iterator[None]:
    """Within the block (this thread or task), ``diagnose`` judges a run still being written, before it ends
    (``doctor --follow``, ``watch``; ``partial``): a NaN share is graded as ``_nan_severity`` says."""
    token = _FOLLOWING.set(partial)
    try:
        yield
    finally:
        _FOLLOWING.reset(token)


def _nan_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """NaN rewards per role, and in the samples' total reward. A role whose NaN are in exactly the samples whose
    total reward is NaN (one failed reward computation), with a share of the same severity, is reported once, as
    the total's; so are the NaN of samples without per-role data (their reward is their total) when they are all
    of the total's. Any other role is reported with its own count and share, and its message says how many of
    its NaN samples have a NaN total too, so that the findings never read as additive."""
    named = any(r is not None for r in s.roles)
    hits: dict[str | None, tuple[list[int], np.ndarray, np.ndarray]] = {}
    for role in s.roles:
        steps, nan_values = s.role_series(role, "reward_nan")
        _, count_values = s.role_series(role, "reward_count")
        nan = as_floats(nan_values)
        if np.nansum(nan) > 0:
            hits[role] = (steps, nan, as_floats(count_values))
    total: tuple[list[int], np.ndarray, np.ndarray] | None = None
    if named:
        t = s.total
        nan = as_floats(t["reward_nan"].to_list())
        if np.nansum(nan) > 0:
            total = (t["step"].to_list(), nan, as_floats(t["reward_count"].to_list()))
    total_by_step = _by_step(total[0], total[1]) if total is not None else {}
    # NaN of each role whose sample's total reward is NaN too, per step: the null role's reward is the total
    overlap: dict[str | None, dict[int, int]] = {}
    if total is not None:
        if None in hits:
            overlap[None] = _by_step(hits[None][0], hits[None][1])
        named_hits = [r for r in hits if r is not None]
        if named_hits:
            overlap.update(_nan_overlap(s, named_hits))
    out: list[Finding] = []
    merged: list[str | None] = []
    total_finding = None
    if total is not None:
        total_finding = _nan_finding(cfg, None, "total rewards", *total, subject="total")
        out.append(total_finding)
    for role, (steps, nan, count) in hits.items():
        what = f"rewards of role {role}" if role is not None else "rewards of samples without per-role data"
        if not named:
            what = "rewards"
        f = _nan_finding(cfg, role, what, steps, nan, count)
        both = overlap.get(role, {})
        n_both = sum(both.values())
        if total_finding is not None and n_both:
            own = _by_step(steps, nan)
            same = own == both == total_by_step
            if same and f.severity == total_finding.severity:
                merged.append(role)
                continue
            of_total = f"{total_finding.evidence['nan']} NaN total rewards"
            f.message += (
                f"; their reward is their total: these are {n_both} of the {of_total}"
                if role is None
                else f"; {n_both} of them in samples whose total reward is NaN too (among the {of_total})"
            )
            f.evidence["nan_total_too"] = n_both
        out.append(f)
    if total_finding is not None and merged:
        total_finding.evidence["same_samples"] = ["(no per-role data)" if r is None else r for r in merged]
    return out


def _nan_finding(
    cfg: DoctorConfig,
    role: str | None,
    what: str,
    steps: list[int],
    nan: np.ndarray,
    count: np.ndarray,
    subject: str | None = None,
) -> Finding:
    """One ``nan_rewards`` finding; share = NaN among the rewards that are numbers (valid + NaN; null ones,
    failed trajectories, are apart)."""
    hit = [st for st, n in zip(steps, nan, strict=True) if n > 0]
    total_nan = int(np.nansum(nan))
    numbers = float(np.nansum(count)) + total_nan
    share = total_nan / max(1.0, numbers)
    severity, why, figures = _nan_severity(cfg, steps, nan, count)
    return Finding(
        "nan_rewards",
        severity,
        f"{total_nan} NaN {what} ({percent(share, 1)}) in {len(hit)} step(s), first at step {hit[0]}{why}",
        role,
        hit[0],
        {
            "nan": total_nan,
            "share": share,
            **figures,
            "steps": hit[:20],
            **({"subject": subject} if subject else {}),
        },
    )


def _nan_severity(
    cfg: DoctorConfig, steps: list[int], nan: np.ndarray, count: np.ndarray
) -> tuple[str, str, dict[str, float]]:
    """The severity of a series' NaN (``nan`` and ``count``, the valid values, per step), what the message adds
    where the share does not tell the severity (a warning at or above ``nan_error``, an error from the last steps
    below it), and the figures it is graded on. An error needs the share of NaN among the values that are numbers to
    be at least ``nan_error`` with ``nan_confidence`` (the lower end of its one-sided Wilson score interval: not a
    share of few values) and without the step with the most NaN too (not one step's burst: every check here asks for
    persistence, never a single bad step). A share of the first steps says little of the run: ``doctor --follow``,
    which judges the run written so far, failed a CI job on 5 NaN at step 1 (15.6 % of two 16-row steps) whose
    finished run has 1.6 %, a warning for ``doctor``; 1 NaN in each of two 16-row steps is 6 % (an audit). Rewards
    that turned NaN for good are an error at once, whatever the run's length: the run's last steps whose every value
    is NaN (``_nan_tail``) are judged on their own, since nothing after them says the rewards came back (a review:
    100 clean steps, then 3 steps all NaN, were 2.9 % of the run and passed ``--fail-on error``). A last step mostly
    but not all NaN is no such tail: a value that is a number says the reward is still computed for some samples (a
    judge timing out on part of a batch), and a burst of one step is left out, as anywhere in the run.
    ``nan_confidence=0.5``: the share itself, for the first condition.

    Within ``following()`` (a run still being written, ``doctor --follow``): the share of fewer than ``min_steps`` steps
    (those with a value) is no error yet, however sure, but a warning that says so (``evidence.error_from_steps``):
    2 NaN in each of the first two 16-row steps are 12.5 %, sure above 5 % and not one step's burst, and failed
    ``--fail-on error`` on a run whose finished share, 3.1 %, ``doctor`` calls a warning (an audit). The last steps
    all NaN are an error at once, as ever. The follow's last check, at its end, grades as ``doctor`` does."""
    from statistics import NormalDist

    nan, count = np.nan_to_num(nan), np.nan_to_num(count)
    total, numbers = float(nan.sum()), float(count.sum() + nan.sum())
    share = total / max(1.0, numbers)
    z = NormalDist().inv_cdf(cfg.nan_confidence)
    low = _wilson_low(total, numbers, z) if numbers > 0 else 0.0
    worst = int(np.argmax(nan))
    rest = numbers - float(count[worst] + nan[worst])
    without = (total - float(nan[worst])) / rest if rest > 0 else 0.0  # one step alone: no persistence to judge
    tail = _nan_tail(nan, count)
    figures = {"share_low": low, "share_without_worst_step": without, "all_nan_last_steps": len(tail)}
    sure = low >= cfg.nan_error and without >= cfg.nan_error
    seen = int(np.count_nonzero(count + nan > 0))  # the steps with a value that is a number
    early = _FOLLOWING.get() and seen < cfg.min_steps
    if sure and not early:
        return "error", "", figures
    tail_nan = float(nan[tail].sum())
    if tail and _wilson_low(tail_nan, tail_nan, z) >= cfg.nan_error:
        why = f"; an error: every value from step {steps[tail[0]]} on is NaN (nothing after says they came back)"
        return "error", why, figures
    if sure:
        figures["error_from_steps"] = cfg.min_steps
        why = (
            f"; a warning for now: the share of a run being written is an error from {cfg.min_steps} steps on "
            f"(min_steps; {seen} so far), as a few NaN in the first steps say little of the run"
        )
        return "warning", why, figures
    if share < cfg.nan_error:
        return "warning", "", figures
    rest_text = f"{percent(without, 1)} without step {steps[worst]}" if rest > 0 else f"all at step {steps[worst]}"
    why = (
        f"; a warning: at least {percent(low, 1)} with {percent(cfg.nan_confidence)} confidence, {rest_text} "
        f"(nan_error={percent(cfg.nan_error)} needs both)"
    )
    return "warning", why, figures


def _nan_tail(nan: np.ndarray, count: np.ndarray) -> list[int]:
    """The indices, in order, of the series' last steps whose every value is NaN, back from the last step up to
    a step with a valid value. Passed over (neither counted nor ending it): steps with no value that is a number
    (a role not logged there, every reward null), which say nothing of it, and steps of fewer values than half
    the median step's, which are no step of NaN rewards alone (a review: a recovered burst, then a last step of
    one NaN row beside steps of 16, failed) nor a sign that the rewards came back, whatever they hold: the size is
    tested first, so that a last step of one valid row after all-NaN steps does not turn the error into a warning
    (a review: it passed ``--fail-on error`` where the same step with one NaN row failed it)."""
    sizes = count + nan
    held = sizes > 0
    if not held.any():
        return []
    normal = 0.5 * float(np.median(sizes[held]))
    tail: list[int] = []
    for i in range(len(nan) - 1, -1, -1):
        if not held[i] or sizes[i] < normal:
            continue
        if count[i] > 0:
            break
        tail.append(i)
    return tail[::-1]


def _wilson_low(k: float, n: float, z: float) -> float:
    """The lower end of the one-sided Wilson score interval of ``k`` successes in ``n`` trials (``z``: the normal
    quantile of the confidence)."""
    p = k / n
    low = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return min(p, max(0.0, low))


def _by_step(steps: list[int], counts: np.ndarray) -> dict[int, int]:
    """The steps with a count above 0, and the count."""
    return {int(st): int(n) for st, n in zip(steps, counts, strict=True) if n > 0}


def _nan_overlap(s: RunSeries, roles: list[str]) -> dict[str | None, dict[int, int]]:
    """Per role and step, the NaN rewards of ``roles`` whose sample's total reward is NaN too. Reads the
    numeric view (no text), and only when a role and the total both have NaN."""
    carry = {"step": pl.col("step"), "split": pl.col("split"), "__total": pl.col("reward").cast(pl.Float64)}
    both = pl.col("reward").cast(pl.Float64).is_nan() & pl.col("__total").is_nan()

    def build() -> list[pl.LazyFrame]:
        lf = s.run.numeric(carry, [])
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        return [lf.filter(pl.col("role").is_in(roles) & both).group_by("role", "step").agg(pl.len().alias("n"))]

    [df] = s.run.collect(build)
    out: dict[str | None, dict[int, int]] = {r: {} for r in roles}
    for role, step, n in df.iter_rows():
        out[role][int(step)] = int(n)
    return out


def _nan_kl_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """NaN KL values per role: a policy or reference whose log-probabilities diverged. The KL statistics skip
    them (``kl_nan``), so that a KL gone NaN would otherwise read as a KL that merely stopped being logged."""
    out = []
    for role in s.roles:
        steps, nan_values = s.role_series(role, "kl_nan")
        _, count_values = s.role_series(role, "kl_count")
        nan, count = as_floats(nan_values), as_floats(count_values)
        hit = [st for st, n in zip(steps, nan, strict=True) if n > 0]
        if not hit:
            continue
        total_nan = int(np.nansum(nan))
        numbers = float(np.nansum(count)) + total_nan  # the KL values that are numbers
        share = total_nan / max(1.0, numbers)
        severity, why, figures = _nan_severity(cfg, steps, nan, count)
        what = "KL values" if role is None else f"KL values of role {role}"
        out.append(
            Finding(
                "nan_kl",
                severity,
                f"{total_nan} NaN {what} ({percent(share, 1)}) in {len(hit)} step(s), first at step {hit[0]}{why}",
                role,
                hit[0],
                {"nan": total_nan, "share": share, **figures, "steps": hit[:20]},
            )
        )
    return out


def _inf_findings(s: RunSeries) -> list[Finding]:
    """Infinite rewards or KL values per role (a step's min is -inf or its max inf): they count as values, so
    the statistics of those steps are infinite or NaN while no NaN is counted, and GRPO's group normalisation
    turns them into NaN advantages. The samples' total reward too (its mean over a step's values that are
    numbers is then not finite), unless every step where it is infinite is one where a role's reward is (that
    role's finding tells it). Always an error."""
    out = []
    role_steps: set[int] = set()
    for measure, kind in (("reward", "inf_rewards"), ("kl", "inf_kl")):
        for role in s.roles:
            steps, lo = s.role_series(role, f"{measure}_min")
            _, hi = s.role_series(role, f"{measure}_max")
            hit = [
                st
                for st, a, b in zip(steps, as_floats(lo), as_floats(hi), strict=True)
                if math.isinf(a) or math.isinf(b)
            ]
            if not hit:
                continue
            if measure == "reward":
                role_steps.update(hit)
            what = ("rewards" if measure == "reward" else "KL values") + (f" of role {role}" if role else "")
            if role is None and any(r is not None for r in s.roles):
                # Beside named roles, the null role is the samples without per-role data, whose reward is their
                # total (the total's finding may name the same steps): said whose, as the NaN finding does.
                what += " of samples without per-role data" + (" (their total reward)" if measure == "reward" else "")
            out.append(
                Finding(
                    kind,
                    "error",
                    f"infinite {what} in {len(hit)} step(s), first at step {hit[0]}: the step's mean and std are "
                    "not finite",
                    role,
                    hit[0],
                    {"steps": hit[:20]},
                )
            )
    if any(r is not None for r in s.roles):  # else the null role's reward is the total, checked above
        t = s.total
        mean, valid = as_floats(t["reward_mean"].to_list()), as_floats(t["reward_count"].to_list())
        # NaN is left out of the mean: a mean over values that are numbers is not finite only where one is
        # infinite (inf and -inf together give NaN)
        hit = [
            int(st) for st, m, n in zip(t["step"].to_list(), mean, valid, strict=True) if n > 0 and not math.isfinite(m)
        ]
        if hit and not set(hit) <= role_steps:
            out.append(
                Finding(
                    "inf_rewards",
                    "error",
                    f"infinite total rewards in {len(hit)} step(s), first at step {hit[0]}: the step's mean reward "
                    "is not finite",
                    None,
                    hit[0],
                    {"steps": hit[:20], "subject": "total"},
                )
            )
    return out


def _exception_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    steps, rate = s.per_step["step"].to_list(), as_floats(s.per_step["exception_rate"].to_list())
    hit = [i for i, r in enumerate(rate) if r >= cfg.exception_rate]
    if not hit:
        return []
    worst = float(np.nanmax(rate))
    sustained = first_sustained(rate, cfg.exception_rate, persist=cfg.persist, min_run=cfg.min_segment)
    return [
        Finding(
            "exception_spike",
            "error" if worst >= cfg.exception_error or sustained is not None else "warning",
            f"{len(hit)} step(s) with >= {percent(cfg.exception_rate)} failed trajectories, first at step "
            f"{steps[hit[0]]} (worst {percent(worst)}; median over the run {percent(float(np.nanmedian(rate)))})",
            None,
            steps[hit[0]],
            {"steps": [steps[i] for i in hit][:20], "worst_rate": worst, "median_rate": float(np.nanmedian(rate))},
        )
    ]


def _data_findings(s: RunSeries) -> list[Finding]:
    """What ``inspect`` finds: missing steps of the split diagnosed (a split ``inspect`` cannot tell, ``?``,
    too), sample ids read more than once within a step (``_repeated_id_findings``) and file problems, grouped
    by problem kind (run-wide: a file's problem is not one split's)."""
    out = []
    report = s.inspect
    for split, gaps in report.step_gaps.items():
        if not gaps or (s.split is not None and split not in (s.split, "?")):
            continue
        stride = max(1, report.step_stride.get(split, 1))
        missing = sum((b - a) // stride + 1 for a, b in gaps)
        out.append(
            Finding(
                "step_gaps",
                "warning",
                f"split {split}: {missing_steps(gaps, stride)}",
                None,
                gaps[0][0],
                {"split": split, "gaps": gaps[:50], "stride": stride, "missing": missing},
            )
        )
    out += _repeated_id_findings(s)
    out += _end_findings(s.run)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    # The run's problems: discovery's (inspect's) and those found while the checks read the data; then those only
    # inspect's reading of the steps tells (steps beyond the int64 range), so that a run doctor calls healthy is
    # not one inspect finds an error in.
    for p in [*s.run.problems, *report.step_errors]:
        if p.kind == WRITER_FAILED or is_stopped(p):
            continue  # said by ``_end_findings`` with the process, as ``writer_failed`` / ``writer_not_closed``: once
        kind = LEFTOVER_TEMPORARY if _leftover_temporary(p) else p.kind
        by_kind.setdefault(kind, []).append(p.as_dict())
    for kind, problems in by_kind.items():
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        # A leftover temporary file is a warning with the step in its name, as ``doctor --follow`` says it: a
        # writer killed mid-step lost that step's samples (not "nothing to fix").
        leftover = kind == LEFTOVER_TEMPORARY
        severity = "warning" if leftover else "info" if kind == "warning" else "error"
        onset = min((st for q in problems if (st := step_in_name(q["path"])) is not None), default=None)
        out.append(
            Finding(
                "data_problem",
                severity,
                f"{kind}: {first['path']}: {first['message']}{more}",
                None,
                onset if leftover else None,
                {"problem_kind": kind, "count": len(problems), "problems": problems[:10]},
            )
        )
    return out


def missing_steps(gaps: Sequence[Sequence[int]], stride: int) -> str:
    """``3 step(s) missing (5, 8-12 every 2)``: the words of a gap in ``doctor`` and in ``watch`` / ``doctor
    --follow`` (which say each gap as it appears), so that the same gap reads the same in both."""
    stride = max(1, stride)
    missing = sum((b - a) // stride + 1 for a, b in gaps)
    every = f" every {stride}" if stride > 1 else ""
    ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}{every}" for a, b in gaps[:6])
    return f"{missing} step(s) missing ({ranges}{', ...' if len(gaps) > 6 else ''})"


LEFTOVER_TEMPORARY = "leftover_temporary"  # ``watch``'s problem kind for it, the finding's in both commands


def _leftover_temporary(p: Any) -> bool:
    """Whether run problem ``p`` is discovery's warning of a leftover temporary file (``open_run`` warns of each
    file named with a temporary suffix that no live writer is writing, and reads no such file: no other warning
    names one)."""
    from ..run import TEMP_SUFFIXES

    return p.kind == WARNING and p.path.endswith(TEMP_SUFFIXES)


def is_run_problem(f: Finding) -> bool:
    """Whether ``f`` holds the run's file problems of one kind (``_data_findings``: inspect's), which ``watch``
    and ``doctor --follow`` report themselves, each once it has settled (``runlog.watch.live``)."""
    return f.kind == "data_problem" and "problems" in f.evidence


def _end_findings(run: Run, now: float | None = None) -> list[Finding]:
    """What the writers' state files say (``runlog.ends``; only runs whose writer writes them): a writer that
    failed (error: what it had not written is lost); a training that ended with an exception (warning); a closed
    process whose files here end before what it wrote (warning: copied in part, or files deleted); a process
    that has not closed while others have (warning once it is behind them, on the splits it writes or on its
    scalars, and they closed ``END_GRACE_S`` ago by the files' own times: killed, as inspect's verdict counts it
    (``EndState.stopped_behind``); info before that, or when it is not behind); and no process closed yet (info:
    still being written, or every process killed)."""
    import time

    from ..ends import mtime_of

    state = run.end_state
    if not state.known:
        return []
    out: list[Finding] = []

    def finding(kind: str, severity: str, message: str, path: str | None, **evidence: Any) -> Finding:
        # One finding per process (``Finding.key``: a process's own subject), so that two do not merge in watch;
        # ``path``: what ``doctor --follow`` keeps a data problem by.
        subject = f"{kind} p{evidence['process']}" if "process" in evidence else None
        ev = {"problem_kind": kind, "subject": subject, **({"path": path} if path is not None else {}), **evidence}
        return Finding("data_problem", severity, f"{kind}: {message}", None, None, ev)

    for st in state.states.values():
        if st.problem is not None:
            out.append(finding("writer_state_unreadable", "warning", st.describe(), st.path, process=st.process))
        elif st.error:
            message = f"process {st.process}'s writer failed ({st.error[:300]}): what it had not written is lost"
            out.append(finding("writer_failed", "error", message, st.path, process=st.process))
        elif st.exception and st.closed:
            steps = ", ".join(f"{v} {k}" for k, v in st.last_step.items()) or "none"
            message = (
                f"process {st.process}'s training ended with an exception ({st.exception[:300]}); last step {steps}"
            )
            out.append(finding("training_exception", "warning", message, st.path, process=st.process))
    for p, what, have, upto in state.incomplete:
        held = "none" if have is None else f"step {have}"
        message = (
            f"process {p} closed its writer having written {what} up to step {upto}, but its files here hold "
            f"{held}: copied in part, or files deleted"
        )
        out.append(finding("writer_incomplete", "warning", message, state.states[p].path, process=p, split=what))
    # A process whose state file cannot be read is that file's warning above: whether it closed is not known,
    # and "still being written, or killed" would say more than the run tells.
    missing = [p for p in state.missing if not (p in state.states and state.states[p].problem is not None)]
    if not missing:
        return out
    closed = sorted(p for p, st in state.states.items() if st.closed)
    clock = now if now is not None else time.time()
    if not closed:
        procs = ", ".join(map(str, missing))
        if all(p in state.alive for p in missing):  # every writer holds its lock: open, as inspect says it
            message = f"no process has closed its writer (process {procs}): still writing (its writer is open)"
        else:
            message = (
                f"no process has closed its writer (process {procs}): the run is still being written, or was killed"
            )
        newest = max((t for f in run.files if (t := mtime_of(f.stamp)) is not None), default=None)
        aged: dict[str, Any] = {}
        if newest is not None:  # the age says which, to whoever knows how long a step takes
            message += _newest_age(clock - newest)
            # kept, so that the age can be measured again when it is said later (``aged_now``)
            aged = {"newest_written": newest, "newest_age_s": clock - newest}
        # ``doctor --follow`` says it only when it stops before the run finished (a run it follows is being
        # written: nothing to say until then; ``watch.findings._said_at_end``).
        out.append(finding("writer_not_closed", "info", message, None, processes=missing, **aged))
        return out
    behind = state.behind()
    stopped = state.stopped_behind(clock)
    names = ", ".join(map(str, closed))
    for p in missing:
        where = behind.get(p, "")
        if p in stopped:
            path = state.states[p].path if p in state.states else None
            out.append(
                finding("writer_not_closed", "warning", stopped_text(state, p, where), path, process=p, behind=where)
            )
        else:
            # A writer that holds its lock is open: still writing, as inspect and watch say it.
            how = "still writing (its writer is open)" if p in state.alive else "still writing, or killed"
            message = f"process {p} has not closed its writer yet (process {names} did): {how}"
            out.append(finding("writer_not_closed", "info", message, None, process=p, behind=where or None))
    return out


def _newest_age(seconds: float) -> str:
    """The age of the run's newest file as ``writer_not_closed`` says it."""
    return f" (its newest file was written {_age(seconds)} ago)"


def aged_now(f: Finding, now: float) -> Finding:
    """``f`` with the age of the run's newest file (a ``writer_not_closed`` finding's, ``evidence.newest_written``)
    measured at ``now`` (seconds since the epoch), not when the check ran: ``doctor --follow`` and ``watch`` say it
    when they stop idle, ``--idle-exit`` seconds after the last check, and an age measured then ("1 s ago" for a
    writer quiet for 10 minutes) would read as a writer still alive. Any other finding is returned as it is."""
    newest, said = f.evidence.get("newest_written"), f.evidence.get("newest_age_s")
    if newest is None or said is None or not f.message.endswith(_newest_age(said)):
        return f
    age = now - newest
    message = f.message[: -len(_newest_age(said))] + _newest_age(age)
    return Finding(f.kind, f.severity, message, f.role, f.onset_step, {**f.evidence, "newest_age_s": age})


def _age(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 days``."""
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h" if s < 48 * 3600 else f"{s / 86400:.1f} days"


def _role_gone_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """A named role with rewards or KL at ``min_segment`` steps or more that has none over the run's last
    ``min_segment`` steps or more, and over more than twice its longest absence before (a role that logs every
    4th step is not gone): a crashed worker, a changed config. Each check of that role sees only the steps it
    had, so the run read as healthy while the role was gone (the report said "Healthy")."""
    steps = sorted(int(x) for x in s.per_step["step"].to_list())
    if not steps:
        return []
    held = s.per_role.filter(
        pl.col("role").is_not_null()
        & ((pl.col("reward_count") + pl.col("reward_nan") + pl.col("kl_count") + pl.col("kl_nan")) > 0)
    )
    out: list[Finding] = []
    for role in s.roles:
        if role is None:
            continue
        mine = sorted(int(x) for x in held.filter(pl.col("role") == role)["step"].to_list())
        if len(mine) < cfg.min_segment:
            continue
        after = [x for x in steps if x > mine[-1]]
        # Longer than twice its own longest absence before: a judge that scores every 4th step (or at random
        # steps) is not gone for the 3 steps after its last.
        index = {x: i for i, x in enumerate(steps)}
        longest = max((index[b] - index[a] for a, b in zip(mine, mine[1:], strict=False)), default=1)
        if len(after) < max(cfg.min_segment, 2 * longest):
            continue
        out.append(
            Finding(
                "data_problem",
                "warning",
                f"role_gone: {role} has no reward or KL from step {after[0]} on (its last at step {mine[-1]}; the run "
                f"goes on to step {steps[-1]}, {len(after):,} step(s)): a role that stopped (a crashed worker, a "
                "changed config?); its checks saw only the steps it had",
                role,
                after[0],
                {"problem_kind": "role_gone", "last_step": mine[-1], "steps_without": len(after)},
            )
        )
    return out


# The least share of a key's values before its non-finite tail that must be finite for the tail to be judged.
FINITE_BEFORE_NONFINITE = 0.5


def _scalar_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """The run's scalars (``summarize --scalars``'s, shards merged, aliases renamed) are checked for one thing only:
    a key whose values turn NaN or infinite from a step on and stay so to its last value, at least
    ``min_segment`` of them after at least one finite value (a diverged loss, a grad norm gone inf), and more of
    them than in any run of non-finite values the key had between finite ones before, at least
    ``FINITE_BEFORE_NONFINITE`` of whose values were finite (the values before its first finite one, a key logged
    before it is computed, are neither). One ``data_problem`` warning, ``scalar_nonfinite``, names the keys
    (onset: the earliest such step). A key never finite, or non-finite in runs as long before (an eval metric
    logged NaN between evals: the steps after its last eval are one more such gap), is not judged. Their trends
    are not judged at all: a note says so, with the number of keys, so that a run whose loss rose 100x is not taken
    as checked. Scalars are the run's, not a split's: the same whatever ``--split``."""
    from .scalars import DEFAULT_ALIASES, merged_steps

    merged = (
        merged_steps(s.run, aliases=DEFAULT_ALIASES)
        .filter(pl.col("value").is_not_null())
        .with_columns(pl.col("value").is_finite().alias("finite"))
        .collect()
    )
    keys = merged["key"].n_unique()
    if keys == 0:
        return []
    note = (
        f"the run's scalars ({keys:,} key(s)) are checked only for values that turn NaN or infinite and stay so "
        "(scalar_nonfinite); their trends (loss, grad norm, entropy...) are not judged: runlog summarize RUN --scalars"
    )
    if note not in s.scope_notes:  # a series the report shares, diagnosed again
        s.scope_notes.append(note)
    span = (
        merged.filter(pl.col("finite"))
        .group_by("key")
        .agg(pl.col("step").min().alias("first_finite"), pl.col("step").max().alias("last_finite"))
    )
    with_last = merged.join(span, on="key", how="inner")  # a key never finite is not judged
    # The tail is judged against the key's own history: an eval metric logged NaN between evals ends in NaN after
    # its last eval without diverging (a review), a gap no longer than those before it; a grad norm inf at some
    # steps (fp16 loss-scale overflow: skipped steps), then inf for good, diverged (a later review: a rule that
    # judged only keys finite at 90 % of their steps before did not judge it, and a stuck loss scaler, the loss
    # still finite, went unsaid). Its values' order is the steps' (one value a key and step, shards merged). The
    # values before its first finite one are no history: a key logged before it is computed (NaN at the first
    # steps) is not a key that was NaN as long before (a third review: a loss NaN at its first 10 steps then
    # diverged for 8 was not said).
    before = (
        with_last.filter(pl.col("step").is_between(pl.col("first_finite"), pl.col("last_finite")))
        .sort("key", "step")
        .with_columns(pl.col("finite").rle_id().over("key").alias("run"))
    )
    longest = (
        before.filter(~pl.col("finite"))
        .group_by("key", "run")
        .len()
        .group_by("key")
        .agg(pl.col("len").max().alias("longest_before"))
    )
    judged = (
        before.group_by("key")
        .agg(pl.col("finite").mean().alias("finite_share"))
        .filter(pl.col("finite_share") >= FINITE_BEFORE_NONFINITE)
        .join(longest, on="key", how="left")
        .with_columns(pl.col("longest_before").fill_null(0))
        .select("key", "longest_before")
    )
    tail = (
        with_last.join(judged, on="key", how="inner")
        .filter(pl.col("step") > pl.col("last_finite"))
        .group_by("key")
        .agg(
            pl.col("step").min().alias("first_step"),
            pl.col("step").max().alias("last_step"),
            pl.len().alias("count"),
            pl.col("value").is_nan().sum().alias("nan"),
            pl.col("longest_before").first(),
        )
        .filter((pl.col("count") >= cfg.min_segment) & (pl.col("count") > pl.col("longest_before")))
        .sort("first_step", "key")
    )
    if tail.height == 0:
        return []
    rows = tail.to_dicts()
    described = ", ".join(
        f"{r['key']} from step {r['first_step']} ({r['count']:,} value(s), {_nan_or_inf(r)})" for r in rows[:5]
    )
    more = f" and {len(rows) - 5} more key(s)" if len(rows) > 5 else ""
    return [
        Finding(
            "data_problem",
            "warning",
            f"scalar_nonfinite: {len(rows)} scalar key(s) turned NaN or infinite and stayed so to their last value: "
            f"{described}{more} (a diverged loss or gradient?): runlog summarize RUN --scalars",
            None,
            int(rows[0]["first_step"]),
            {
                "problem_kind": "scalar_nonfinite",
                "count": len(rows),
                "keys": [{k: r[k] for k in ("key", "first_step", "last_step", "count", "nan")} for r in rows[:20]],
            },
        )
    ]


def _nan_or_inf(row: dict[str, Any]) -> str:
    """How a key's non-finite tail reads: all NaN, all infinite, or both."""
    if row["nan"] == row["count"]:
        return "NaN"
    return "infinite" if row["nan"] == 0 else f"{row['nan']:,} NaN, the others infinite"


def _no_reward_findings(s: RunSeries) -> list[Finding]:
    """Samples, and not one reward among them (every value null: an evaluation that was never scored, a trainer
    that logged no reward): every reward check would find nothing, which must not read as healthy."""
    t = s.total
    if t.height == 0 or int(t["reward_count"].sum()) > 0 or int(t["reward_nan"].sum()) > 0:
        return []
    if s.per_role.filter(pl.col("role").is_not_null())["reward_count"].sum() > 0:
        return []  # per-role rewards only (no total logged): checked per role
    rows = int(t["rows"].sum())
    where = f" of split {s.split}" if s.split else ""
    return [
        Finding(
            "data_problem",
            "warning",
            f"no_rewards: none of the {rows:,} sample(s){where} has a reward (every value is null: never scored, "
            "or not logged?); the reward checks had nothing to check",
            None,
            int(t["step"].to_list()[0]),
            {"problem_kind": "no_rewards", "rows": rows},
        )
    ]


def _repeated_id_findings(s: RunSeries) -> list[Finding]:
    """Sample ids that occur more than once within one step of the split diagnosed, in layouts whose ids are
    unique within a run (``inspect.UNIQUE_ID_LAYOUTS``, as ``inspect --deep``'s check): rows read twice (a shard
    copied under another shard's name) count twice in every statistic of that step, and distinct samples given
    one id (a trainer whose ids leave out the sample's index, which the writer warns of) cannot be told apart.
    A warning naming the steps, the files and how many. The rows of these ids at steps where they occur once are
    no repeat by this definition (each counts once, at its own step), but ``inspect --deep`` counts them among its
    repeats: the warning says how many there are, so that its count and inspect's are not read as one figure
    told twice (an audit: 1 extra row here, 3 in inspect's, for one id). Every file is read, as one file may hold
    an id twice, but only its ``step``, ``split`` and ``sample_id`` columns."""
    from .inspect import UNIQUE_ID_LAYOUTS

    files = [
        f
        for f in s.run.files
        if f.kind == "samples"
        and f.readable
        and f.layout in UNIQUE_ID_LAYOUTS
        and (s.split is None or f.split is None or f.split == s.split)
    ]
    if not files:
        return []
    sub = Run(root=s.run.root, files=files, ctx=s.run.ctx)

    def build() -> list[pl.LazyFrame]:
        lf = sub.samples.select("step", "split", "sample_id", "source").filter(pl.col("sample_id").is_not_null())
        if s.split:
            lf = lf.filter(pl.col("split") == s.split)
        per_step = lf.group_by("step", "sample_id").agg(pl.len().alias("n"), pl.col("source").unique().sort())
        repeated = per_step.filter(pl.col("n") > 1)
        # The same ids at steps where they occur once: no repeat within a step (each such row counts once, at
        # its own step), but rows of the same id that ``inspect --deep`` counts as repeats too.
        elsewhere = per_step.filter(pl.col("n") == 1).join(repeated.select("sample_id").unique(), on="sample_id")
        return [repeated.sort("step", "sample_id"), elsewhere.select(pl.len().alias("rows"))]

    rep, elsewhere = sub.collect(build)
    if rep.height == 0:
        return []
    steps = sorted({int(x) for x in rep["step"].to_list()})
    sources = sorted({src for row in rep["source"].to_list() for src in row})
    extra = int(rep["n"].sum()) - rep.height
    other = int(elsewhere["rows"][0])
    where = ", ".join(sources[:4]) + (f" and {len(sources) - 4} more" if len(sources) > 4 else "")
    at = f"step {steps[0]}" if len(steps) == 1 else f"{len(steps)} steps, first at step {steps[0]}"
    also = (
        f"; {other} more row(s) of these id(s) at other steps of the split, one per id and step: each counted once, "
        "at its own step, and not among the extra rows here (inspect --deep, which counts an id's rows over the "
        "whole run, counts them as repeats too)"
        if other
        else ""
    )
    return [
        Finding(
            "data_problem",
            "warning",
            f"repeated_sample_ids: {rep.height} sample id(s) occur more than once within their step ({extra} extra "
            f"row(s); {at}; in {where}): rows read twice (a copied file?), which count twice in every statistic, or "
            f"distinct samples given one id{also}",
            None,
            steps[0],
            {
                "problem_kind": "repeated_sample_ids",
                "count": rep.height,
                "extra_rows": extra,
                "rows_at_other_steps": other,
                "steps": steps[:20],
                "files": sources[:20],
                "path": sources[-1],
            },
        )
    ]


__all__ = ["KINDS", "SEVERITIES", "Diagnosis", "DoctorConfig", "Finding", "diagnose"]
