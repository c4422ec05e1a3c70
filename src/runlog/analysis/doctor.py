"""``runlog doctor``: diagnose a run from its per-step series: what went wrong, for which role, since when.

Each check reads a per-step series (``RunSeries``: ``summarize``, ``diversity_frame``, ``format_frame`` and
``inspect_run`` restricted to one split) and reports ``Finding``s with the numbers behind them. Onsets come
from ``changepoint.find_shift`` (a noise-tolerant two-segment split). Every threshold lives in
``DoctorConfig`` with its default documented in docs/doctor.md; ``--set NAME=VALUE`` and ``--config FILE``
override them. A healthy run gives no finding: each rule asks for an effect size, a noise margin and
persistence, never a single bad step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..run import Run
from .changepoint import find_shift, first_sustained
from .doctor_config import DoctorConfig
from .doctor_text import text_findings
from .findings import KINDS, SEVERITIES, Diagnosis, Finding, as_floats, percent, spread_scale, who
from .series import RunSeries


def diagnose(run: Run, config: DoctorConfig | None = None, series: RunSeries | None = None) -> Diagnosis:
    """Run every check on ``run`` (or on an already computed ``series``, which the report shares). When a check
    finds a file unreadable, every check runs again without it (``Run.left_out``): the checks before had read it,
    and a step would hold a finding and be missing at once."""
    cfg = config or DoctorConfig()
    while True:
        left = run.left_out()
        s = series or RunSeries(run, split=cfg.split or None, format_spec=cfg.format_spec)
        result = _diagnose(s, cfg)
        if run.left_out() == left:
            return result
        series = None


def _diagnose(s: RunSeries, cfg: DoctorConfig) -> Diagnosis:
    findings: list[Finding] = []
    if s.per_role.height == 0:
        s.notes.append("no samples in this run: only data problems are checked")
        return Diagnosis(_data_findings(s), s.notes, s.split, s.scope_notes)
    steps = s.per_step["step"].to_list()
    findings += _nan_findings(s, cfg)
    findings += _nan_kl_findings(s, cfg)
    findings += _inf_findings(s)
    findings += _exception_findings(s, cfg)
    if len(steps) < cfg.min_steps:
        s.notes.append(f"only {len(steps)} step(s) (< min_steps={cfg.min_steps}): trend checks skipped")
    else:
        for role in s.roles:
            findings += _reward_findings(s, cfg, role)
            findings += _kl_findings(s, cfg, role)
            findings += _zero_adv_findings(s, cfg, role)
        if not s.has_kl:
            s.notes.append("no KL values in this run: kl_blowup not checked")
        if not s.has_groups:
            s.notes.append(
                "no prompt groups (no group_id, no prompt): zero_advantage judged on each step's rewards as a whole"
            )
        findings += text_findings(s, cfg)
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
                f"{who(role)}: mean reward fell from {shift.before:.3g} to {shift.after:.3g} from step {onset} "
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
                f"{who(role)}: mean reward has not moved over {len(y)} steps ({first:.3g} in the first third, "
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
    steps, y = steps[skip:], y[skip:]
    if np.isfinite(y).sum() < 2 * cfg.min_segment:
        return []
    logy = np.log10(np.maximum(np.where(np.isfinite(y), y, np.nan), cfg.kl_floor))
    shift = find_shift(
        logy,
        direction="up",
        min_delta=math.log10(cfg.kl_ratio) / 2,
        min_z=cfg.min_z,
        min_segment=cfg.min_segment,
        persist=cfg.persist,
    )
    if shift is None:
        return []
    before = y[: shift.split][np.isfinite(y[: shift.split])]
    after = y[shift.split :][np.isfinite(y[shift.split :])]
    high_before = max(float(np.percentile(before, 90)), cfg.kl_floor)
    level_after = float(np.median(after))
    if level_after < cfg.kl_ratio * high_before:
        return []  # a steady climb, not a blow-up: the new level is within reach of the old one's top
    onset = steps[shift.onset]
    return [
        Finding(
            "kl_blowup",
            "error",
            f"{who(role)}: KL jumped to {level_after:.3g} from step {onset} on, "
            f"{level_after / high_before:.0f}x its earlier level ({high_before:.3g})",
            role,
            onset,
            {"kl_before_p90": high_before, "kl_after_median": level_after, "ratio": level_after / high_before},
        )
    ]


def _zero_adv_findings(s: RunSeries, cfg: DoctorConfig, role: str | None) -> list[Finding]:
    """No learning signal for ``role``: from some step on, at least ``zero_adv`` of its prompt groups have
    all-equal rewards (``zero_adv_frac``), or, in a run without prompt groups, the whole step's rewards are
    all equal (no spread at all). The onset is ``first_sustained``'s: the first step from which ``persist``
    of the remaining steps stay at or above the threshold."""
    steps, mx = s.role_series(role, "reward_max")
    _, mn = s.role_series(role, "reward_min")
    lo, hi = as_floats(mn), as_floats(mx)
    if s.has_groups:
        _, frac = s.role_series(role, "zero_adv_frac")
        rate, unit = as_floats(frac), "prompt groups"
    else:
        _, count = s.role_series(role, "reward_count")
        n = as_floats(count)
        rate = np.where(n >= 2, (lo == hi).astype(float), np.nan)
        unit = "steps (no prompt groups: each step's rewards as a whole)"
    i = first_sustained(rate, cfg.zero_adv, persist=cfg.persist, min_run=cfg.min_segment)
    if i is None:
        return []
    tail = rate[i:]
    solved, ceiling = _solved(lo, hi, i)
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
        "groups": s.has_groups,
        "flat_value": flat,
        "solved": solved,
    }
    return [
        Finding(
            "zero_advantage",
            "info" if solved else "warning",
            f"{who(role)}: from step {steps[i]} on, {percent(float(np.nanmean(tail)))} of {unit} have equal rewards "
            f"for this role{level}, so GRPO's advantage is zero ({what})",
            role,
            steps[i],
            evidence,
        )
    ]


def _solved(lo: np.ndarray, hi: np.ndarray, i: int) -> tuple[bool, float]:
    """Whether the equal rewards from index ``i`` on are all the role's usual best reward: the ceiling its
    rewards reached (as the step maximum) in at least half of the steps before ``i``, as a solved 0/1
    correctness reward does. A reward that goes flat at a value it never or seldom reached before (a judge
    stuck at 1.0) is not solved. With no step before ``i``, the run's best reward counts."""
    after_lo, after_hi = float(np.nanmin(lo[i:])), float(np.nanmax(hi[i:]))
    if after_lo != after_hi:
        return False, math.nan
    before = hi[:i][np.isfinite(hi[:i])]
    if len(before) == 0:
        best = float(np.nanmax(hi))
        return after_lo == best, best
    ceiling = float(before.max())
    return bool(after_lo == ceiling and np.mean(before == ceiling) >= 0.5), ceiling


def _nan_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """NaN rewards per role, and in the samples' total reward; roles whose NaN fall on exactly the same
    steps as the total's (one failed reward computation) are reported once, as the total's."""
    named = any(r is not None for r in s.roles)
    series: list[tuple[str | None, list[int], np.ndarray, np.ndarray]] = []
    for role in s.roles:
        steps, nan_values = s.role_series(role, "reward_nan")
        _, count_values = s.role_series(role, "reward_count")
        series.append((role, steps, as_floats(nan_values), as_floats(count_values)))
    if named:
        t = s.total
        nan_of_total, valid_of_total = as_floats(t["reward_nan"].to_list()), as_floats(t["reward_count"].to_list())
        series.append(("__total__", t["step"].to_list(), nan_of_total, valid_of_total))
    hits = {}
    for role, steps, nan, count in series:
        if np.nansum(nan) > 0:
            hits[role] = (steps, nan, count)
    total_sig = None
    if "__total__" in hits:
        steps, nan, _ = hits["__total__"]
        total_sig = [st for st, n in zip(steps, nan, strict=True) if n > 0]
    out = []
    for role, (steps, nan, count) in hits.items():
        hit = [st for st, n in zip(steps, nan, strict=True) if n > 0]
        if role not in ("__total__", None) and hit == total_sig:
            continue
        total_nan = int(np.nansum(nan))
        # NaN among the rewards that are numbers (valid + NaN; null ones, failed trajectories, are apart)
        share = total_nan / max(1.0, float(np.nansum(count)) + total_nan)
        subject = None
        if role == "__total__":
            role, what, subject = None, "total rewards", "total"
        elif role is None:
            what = "rewards of samples without per-role data" if named else "rewards"
        else:
            what = f"rewards of role {role}"
        out.append(
            Finding(
                "nan_rewards",
                "error" if share >= cfg.nan_error else "warning",
                f"{total_nan} NaN {what} ({percent(share, 1)}) in {len(hit)} step(s), first at step {hit[0]}",
                role,
                hit[0],
                {"nan": total_nan, "share": share, "steps": hit[:20], **({"subject": subject} if subject else {})},
            )
        )
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
        share = total_nan / max(1.0, float(np.nansum(count)) + total_nan)  # of the KL values that are numbers
        what = "KL values" if role is None else f"KL values of role {role}"
        out.append(
            Finding(
                "nan_kl",
                "error" if share >= cfg.nan_error else "warning",
                f"{total_nan} NaN {what} ({percent(share, 1)}) in {len(hit)} step(s), first at step {hit[0]}",
                role,
                hit[0],
                {"nan": total_nan, "share": share, "steps": hit[:20]},
            )
        )
    return out


def _inf_findings(s: RunSeries) -> list[Finding]:
    """Infinite rewards or KL values per role (a step's min is -inf or its max inf): they count as values, so
    the statistics of those steps are infinite or NaN while no NaN is counted, and GRPO's group normalisation
    turns them into NaN advantages. Always an error."""
    out = []
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
            what = ("rewards" if measure == "reward" else "KL values") + (f" of role {role}" if role else "")
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
    """What ``inspect`` finds: missing steps (per split) and file problems, grouped by problem kind."""
    out = []
    report = s.inspect
    for split, gaps in report.step_gaps.items():
        if gaps:
            missing = sum(b - a + 1 for a, b in gaps) // max(1, report.step_stride.get(split, 1))
            ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in gaps[:6])
            out.append(
                Finding(
                    "step_gaps",
                    "warning",
                    f"split {split}: {missing} step(s) missing ({ranges}{', ...' if len(gaps) > 6 else ''})",
                    None,
                    gaps[0][0],
                    {"split": split, "gaps": gaps[:50]},
                )
            )
    by_kind: dict[str, list[dict[str, Any]]] = {}
    # The run's problems: discovery's (inspect's) and those found while the checks read the data.
    for p in s.run.problems:
        by_kind.setdefault(p.kind, []).append(p.as_dict())
    for kind, problems in by_kind.items():
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        out.append(
            Finding(
                "data_problem",
                "info" if kind == "warning" else "error",
                f"{kind}: {first['path']}: {first['message']}{more}",
                None,
                None,
                {"problem_kind": kind, "count": len(problems), "problems": problems[:10]},
            )
        )
    return out


__all__ = ["KINDS", "SEVERITIES", "Diagnosis", "DoctorConfig", "Finding", "diagnose"]
