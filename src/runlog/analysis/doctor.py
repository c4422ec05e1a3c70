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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._lazy import pl
from ..errors import UsageError
from ..run import Run
from .changepoint import find_shift, first_sustained
from .doctor_config import DoctorConfig
from .series import RunSeries

SEVERITIES = ("info", "warning", "error")
KINDS = (
    "kl_blowup",
    "reward_collapse",
    "reward_stuck",
    "zero_advantage",
    "diversity_collapse",
    "format_drift",
    "component_shift",
    "reward_hacking",
    "nan_rewards",
    "exception_spike",
    "step_gaps",
    "data_problem",
)


@dataclass
class Finding:
    """One diagnosis. ``role`` is None for the whole run (or a run without per-role data); ``onset_step``
    is the first step of the sustained change (None when it has no time); ``evidence`` the numbers."""

    kind: str
    severity: str
    message: str
    role: str | None = None
    onset_step: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "role": self.role,
            "onset_step": self.onset_step,
            "severity": self.severity,
            "message": self.message,
            "evidence": _plain(self.evidence),
        }


@dataclass
class Diagnosis:
    findings: list[Finding]
    notes: list[str]
    split: str | None

    @property
    def failing(self) -> bool:
        """A finding of severity warning or worse: ``runlog doctor`` exits 1."""
        return any(f.severity != "info" for f in self.findings)


def diagnose(run: Run, config: DoctorConfig | None = None, series: RunSeries | None = None) -> Diagnosis:
    """Run every check on ``run`` (or on an already computed ``series``, which the report shares)."""
    cfg = config or DoctorConfig()
    s = series or RunSeries(run, split=cfg.split or None, format_spec=cfg.format_spec)
    findings: list[Finding] = []
    findings += _data_findings(s)
    if s.per_role.height == 0:
        s.notes.append("no samples in this run: only data problems are checked")
        return Diagnosis(findings, s.notes, s.split)
    steps = s.per_step["step"].to_list()
    findings += _nan_findings(s, cfg)
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
        findings += _merge_format(_text_findings(s, cfg), _component_findings(s, cfg))
    order = {k: i for i, k in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (-order[f.severity], f.onset_step if f.onset_step is not None else -1, f.kind))
    return Diagnosis(findings, s.notes, s.split)


def _who(role: str | None) -> str:
    return f"role {role}" if role is not None else "the run"


def _vals(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _scale(values: Sequence[Any]) -> float:
    """Typical within-step spread (median of the per-step SDs): effect sizes of reward means are in these
    units, so thresholds hold for rewards in [0, 1] and in [-10, 10] alike."""
    v = _vals(values)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if len(v) else 0.0


def _reward_findings(s: RunSeries, cfg: DoctorConfig, role: str | None) -> list[Finding]:
    steps, mean = s.role_series(role, "reward_mean")
    _, sd = s.role_series(role, "reward_std")
    y, scale = _vals(mean), _scale(sd)
    if np.isfinite(y).sum() < cfg.min_steps or scale == 0:
        return []
    kw = dict(min_z=cfg.min_z, min_segment=cfg.min_segment, persist=cfg.persist)
    shift = find_shift(y, direction="down", min_delta=cfg.reward_drop * scale, **kw)
    if shift is not None:
        onset = steps[shift.onset]
        return [
            Finding(
                "reward_collapse",
                "error",
                f"{_who(role)}: mean reward fell from {shift.before:.3g} to {shift.after:.3g} from step {onset} "
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
                f"{_who(role)}: mean reward has not moved over {len(y)} steps ({first:.3g} in the first third, "
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
    y = _vals(kl)
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
            f"{_who(role)}: KL jumped to {level_after:.3g} from step {onset} on, "
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
    lo, hi = _vals(mn), _vals(mx)
    if s.has_groups:
        _, frac = s.role_series(role, "zero_adv_frac")
        rate, unit = _vals(frac), "prompt groups"
    else:
        _, count = s.role_series(role, "reward_count")
        n = _vals(count)
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
            f"{_who(role)}: from step {steps[i]} on, {np.nanmean(tail):.0%} of {unit} have equal rewards "
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


def _text_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    out: list[Finding] = []
    div, fmt = s.diversity, s.format
    kw = dict(min_z=cfg.min_z, min_segment=cfg.min_segment, persist=cfg.persist)
    if div is not None and cfg.diversity_metric not in div.columns:
        raise UsageError(f"--set diversity_metric={cfg.diversity_metric}: no such column (docs/metrics.md)")
    out += _diversity_findings(s, cfg)
    drift = None
    if fmt is not None:
        steps, y = fmt["step"].to_list(), _vals(fmt["adherence"].to_list())
        drift = find_shift(y, direction="down", min_delta=cfg.format_drop, **kw)
        if drift is not None and drift.before >= cfg.format_min:
            onset = steps[drift.onset]
            out.append(
                Finding(
                    "format_drift",
                    "warning",
                    f"format adherence ({cfg.format_spec}) fell from {drift.before:.0%} to {drift.after:.0%} "
                    f"from step {onset} on",
                    None,
                    onset,
                    {"spec": cfg.format_spec, "before": drift.before, "after": drift.after, "z": drift.z},
                )
            )
        elif drift is not None:
            drift = None
    out += _hacking(s, cfg, drift)
    return out


def _diversity_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """A sustained drop of ``diversity_metric`` within prompt groups, per role, each role judged on its own
    texts (``RunSeries.role_diversity``); texts without a speaker (a completion) are the null role's."""
    div = s.role_diversity
    if div is None:
        return []
    out = []
    kw = dict(min_z=cfg.min_z, min_segment=cfg.min_segment, persist=cfg.persist)
    roles = [r for r in s.run.role_names() if r in set(div["role"].to_list())]
    roles += sorted({r for r in div["role"].to_list() if r is not None} - set(roles))
    if div["role"].null_count():
        roles.append(None)
    for role in roles:
        part = div.filter(pl.col("role").is_null() if role is None else pl.col("role") == role).sort("step")
        if part.height < cfg.min_steps:
            continue
        steps, y = part["step"].to_list(), _vals(part[cfg.diversity_metric].to_list())
        shift = find_shift(y, direction="down", min_delta=0.0, **kw)
        if shift is None or shift.after > (1 - cfg.diversity_drop) * shift.before:
            continue
        onset = steps[shift.onset]
        uniq = _vals(part["unique_frac"].to_list())
        u_before, u_after = float(np.nanmedian(uniq[: shift.split])), float(np.nanmedian(uniq[shift.split :]))
        whose = f"{_who(role)}: its texts" if role is not None else "completions"
        out.append(
            Finding(
                "diversity_collapse",
                "warning",
                f"{whose} within prompt groups collapsed from step {onset} on: {cfg.diversity_metric} "
                f"{shift.before:.3g} -> {shift.after:.3g}, unique texts {u_before:.0%} -> {u_after:.0%}",
                role,
                onset,
                {
                    "metric": cfg.diversity_metric,
                    "before": shift.before,
                    "after": shift.after,
                    "unique_frac_before": u_before,
                    "unique_frac_after": u_after,
                    "z": shift.z,
                },
            )
        )
    return out


def _component_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """Each reward component's mean per step: a sustained drop of at least ``component_drop`` of its
    within-step SDs (``format_drift`` for a component whose name says format, else ``component_shift``), or
    a sustained jump of at least ``component_jump`` SDs after a level that held (``component_shift``, info;
    ``_is_jump``), so that a learning curve, which climbs from the start, is not a jump."""
    comp = s.components_per_step
    out: list[Finding] = []
    kw = dict(min_z=cfg.min_z, min_segment=cfg.min_segment, persist=cfg.persist)
    for name in dict.fromkeys(comp["component"].to_list()):
        part = comp.filter(pl.col("component") == name).sort("step")
        steps, y = part["step"].to_list(), _vals(part["mean"].to_list())
        scale = _scale(part["std"].to_list())
        if np.isfinite(y).sum() < cfg.min_steps or scale == 0:
            continue
        is_format = "format" in name.lower()
        drop = find_shift(y, direction="down", min_delta=cfg.component_drop * scale, **kw)
        jump = None if drop is not None else find_shift(y, direction="up", min_delta=cfg.component_jump * scale, **kw)
        if jump is not None and not _is_jump(y, jump, cfg):
            jump = None
        shift = drop or jump
        if shift is None:
            continue
        onset = steps[shift.onset]
        verb = "fell" if shift is drop else "jumped"
        kind = "format_drift" if is_format and shift is drop else "component_shift"
        out.append(
            Finding(
                kind,
                "warning" if shift is drop else "info",
                f"reward component {name!r} {verb} from {shift.before:.3g} to {shift.after:.3g} from step {onset} on "
                f"({abs(shift.delta) / scale:.1f} within-step SDs)",
                None,
                onset,
                {
                    "component": name,
                    "before": shift.before,
                    "after": shift.after,
                    "within_step_sd": scale,
                    "z": shift.z,
                },
            )
        )
    return out


def _is_jump(y: np.ndarray, shift: Any, cfg: DoctorConfig) -> bool:
    """Whether an upward shift is a jump rather than a learning curve: the level before it held for at
    least ``2 * min_segment`` steps, moving (linear fit over those steps) less than ``component_flat`` of the
    shift, and at least ``component_abrupt`` of the shift happens between the ``min_segment`` steps before
    its onset and the ``min_segment`` steps from it (medians)."""
    i, w = shift.onset, cfg.min_segment
    head = y[:i]
    x = np.flatnonzero(np.isfinite(head))
    if len(x) < 2 * w or shift.delta == 0:
        return False
    slope = float(np.polyfit(x.astype(float), head[x], 1)[0])
    if abs(slope * (x[-1] - x[0])) >= cfg.component_flat * abs(shift.delta):
        return False
    before, after = y[i - w : i], y[i : i + w]
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    if not len(before) or not len(after):
        return False
    return float((np.median(after) - np.median(before)) / shift.delta) >= cfg.component_abrupt


def _merge_format(text: list[Finding], components: list[Finding]) -> list[Finding]:
    """One ``format_drift`` when the format adherence of the texts and a format reward component both
    fell: the texts' finding, with the component's numbers added and the earlier onset."""
    text_drift = next((f for f in text if f.kind == "format_drift"), None)
    out = list(text)
    for f in components:
        if f.kind != "format_drift" or text_drift is None:
            out.append(f)
            continue
        text_drift.message += f"; {f.message}"
        text_drift.evidence["component"] = dict(f.evidence)
        if f.onset_step is not None and (text_drift.onset_step is None or f.onset_step < text_drift.onset_step):
            text_drift.onset_step = f.onset_step
    return out


def _hacking(s: RunSeries, cfg: DoctorConfig, drift: Any) -> list[Finding]:
    """Reward rising while what it should reward degrades: adherence falls, or the completions' length
    changes by more than ``hack_length`` (padding, or answers cut to game a length-blind grader). "Rising"
    is judged across the degradation's onset, so a run whose reward drops with its format is not hacking."""
    signs: list[str] = []
    onsets: list[int] = []
    evidence: dict[str, Any] = {}
    if drift is not None:
        signs.append(f"format adherence fell {drift.before:.0%} -> {drift.after:.0%}")
        onsets.append(int(s.format["step"][drift.onset]))
        evidence["adherence"] = [drift.before, drift.after]
    div = s.diversity
    if div is not None:
        ln = np.log(np.maximum(_vals(div["len_mean"].to_list()), 1e-9))
        for direction in ("up", "down"):
            sh = find_shift(
                ln,
                direction=direction,
                min_delta=math.log1p(cfg.hack_length),
                min_z=cfg.min_z,
                min_segment=cfg.min_segment,
                persist=cfg.persist,
            )
            if sh is not None:
                b, a = math.exp(sh.before), math.exp(sh.after)
                signs.append(f"completion length went {b:.0f} -> {a:.0f} tokens")
                onsets.append(int(div["step"][sh.onset]))
                evidence["length_tokens"] = [b, a]
    if not signs:
        return []
    onset = min(onsets)
    total = s.total
    steps = np.array(total["step"].to_list())
    y, scale = _vals(total["reward_mean"].to_list()), _scale(total["reward_std"].to_list())
    before, after = y[steps < onset], y[steps >= onset]
    if scale == 0 or not np.isfinite(before).any() or not np.isfinite(after).any():
        return []
    rise = float(np.nanmedian(after) - np.nanmedian(before))
    if rise < cfg.hack_rise * scale:
        return []
    evidence.update(reward_before=float(np.nanmedian(before)), reward_after=float(np.nanmedian(after)))
    return [
        Finding(
            "reward_hacking",
            "error",
            f"total reward rose {float(np.nanmedian(before)):.3g} -> {float(np.nanmedian(after)):.3g} while "
            f"{' and '.join(signs)} (from step {onset}): is the reward being gamed?",
            None,
            onset,
            evidence,
        )
    ]


def _nan_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """NaN rewards per role, and in the samples' total reward; roles whose NaN fall on exactly the same
    steps as the total's (one failed reward computation) are reported once, as the total's."""
    named = any(r is not None for r in s.roles)
    series: list[tuple[str | None, list[int], np.ndarray, np.ndarray]] = []
    for role in s.roles:
        steps, nan = s.role_series(role, "reward_nan")
        _, count = s.role_series(role, "reward_count")
        series.append((role, steps, _vals(nan), _vals(count)))
    if named:
        t = s.total
        series.append(("__total__", t["step"].to_list(), _vals(t["reward_nan"].to_list()), _vals(t["rows"].to_list())))
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
        share = total_nan / max(1.0, float(np.nansum(count)) + total_nan)
        if role == "__total__":
            role, what = None, "total rewards"
        elif role is None:
            what = "rewards of samples without per-role data" if named else "rewards"
        else:
            what = f"rewards of role {role}"
        out.append(
            Finding(
                "nan_rewards",
                "error" if share >= cfg.nan_error else "warning",
                f"{total_nan} NaN {what} ({share:.1%}) in {len(hit)} step(s), first at step {hit[0]}",
                role,
                hit[0],
                {"nan": total_nan, "share": share, "steps": hit[:20]},
            )
        )
    return out


def _exception_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    steps, rate = s.per_step["step"].to_list(), _vals(s.per_step["exception_rate"].to_list())
    hit = [i for i, r in enumerate(rate) if r >= cfg.exception_rate]
    if not hit:
        return []
    worst = float(np.nanmax(rate))
    sustained = first_sustained(rate, cfg.exception_rate, persist=cfg.persist, min_run=cfg.min_segment)
    return [
        Finding(
            "exception_spike",
            "error" if worst >= cfg.exception_error or sustained is not None else "warning",
            f"{len(hit)} step(s) with >= {cfg.exception_rate:.0%} failed trajectories, first at step "
            f"{steps[hit[0]]} (worst {worst:.0%}; median over the run {float(np.nanmedian(rate)):.0%})",
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
    for p in report.problems:
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


def _plain(v: Any) -> Any:
    """Evidence as plain JSON: numpy numbers as Python numbers, NaN and infinities as null."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v
