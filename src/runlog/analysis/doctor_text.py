"""The doctor's checks on what the model wrote: format adherence and reward components (``format_drift``,
``component_shift``, merged when they tell the same story), diversity per role (``diversity_collapse``), and
reward hacking (the reward climbing while the texts grow long or repetitive)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lazy import pl
from ..errors import UsageError
from .changepoint import find_shift, robust_noise
from .doctor_config import DoctorConfig
from .findings import Finding, as_floats, percent, spread_scale, who
from .series import RunSeries
from .texts import (
    SpecRolesError,
    drift_reasoning,
    series_format_note,
    series_policy_note,
    series_roles_note,
    series_text_note,
)


@dataclass(frozen=True)
class Degradation:
    """What ``reward_hacking`` looks at: something that got worse from a step on (format adherence, a format
    component, the completions' length), how it reads, and its numbers for the evidence."""

    sign: str
    onset_step: int
    key: str
    values: list[float]


def text_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """Every check on the texts and the reward components, format drift and component shifts merged. Where the
    texts cannot be measured, or the format spec's think tags are in the messages' ``reasoning`` field instead
    of the texts, ``s.notes`` says why and what reads them (``runlog metrics ... --text``)."""
    text, degradations = _text_findings(s, cfg)
    components = _component_findings(s, cfg)
    for f in components:
        if f.kind == "format_drift" and f.onset_step is not None:  # a format component fell: a degradation too
            ev = f.evidence
            degradations.append(
                Degradation(
                    f"reward component {ev['component']!r} fell {ev['before']:.3g} -> {ev['after']:.3g}",
                    f.onset_step,
                    "component",
                    [ev["before"], ev["after"]],
                )
            )
    found = _merge_format(text, components)
    found += _hacking(s, cfg, degradations)
    series_text_note(s)
    series_format_note(s)
    series_roles_note(s)  # a spec's roles that do not speak in the split, beside those that do
    if s.diversity is not None or s.format is not None:  # the texts were read: whose they are
        series_policy_note(s)
    return found


def _text_findings(s: RunSeries, cfg: DoctorConfig) -> tuple[list[Finding], list[Degradation]]:
    """Diversity and format adherence findings, and the degradations ``_hacking`` then looks at."""
    out: list[Finding] = []
    degradations: list[Degradation] = []
    div = s.diversity
    try:
        fmt = s.format
    except SpecRolesError as exc:
        # A spec none of whose roles speaks in a message of the split (a typo): format adherence cannot be
        # measured, and format_drift would be missing without a word (where some of them speak, format_drift is
        # theirs, and a note names the others: ``series_roles_note``). A usage error, as a format_spec that names
        # no spec is (doctor_config), under the option doctor has.
        raise UsageError(
            f"{cfg.option('format_spec')}: {exc.reason}: format adherence (format_drift) cannot be checked"
        ) from None
    kw = cfg.shift_options()
    if div is not None and cfg.diversity_metric not in div.columns:
        raise UsageError(f"{cfg.option('diversity_metric')}: no such column (docs/metrics.md)")
    out += _diversity_findings(s, cfg)
    if fmt is not None:
        steps, y = fmt["step"].to_list(), as_floats(fmt["adherence"].to_list())
        drift = find_shift(y, direction="down", min_delta=cfg.format_drop, **kw)
        if drift is not None and drift.before >= cfg.format_min:
            onset = steps[drift.onset]
            evidence: dict[str, Any] = {
                "spec": cfg.format_spec,
                "before": drift.before,
                "after": drift.after,
                "z": drift.z,
            }
            message = (
                f"format adherence ({cfg.format_spec}) fell from {percent(drift.before)} to {percent(drift.after)} "
                f"from step {onset} on"
            )
            # The think tags gone from the content because the reasoning moved to the turns' field from the onset
            # on (the whole split's note misses it: the steps before have their tags): said in the finding.
            moved = drift_reasoning(s, onset, drift.before, cfg.format_drop)
            if moved is not None:
                message += f"; {moved[0]}"
                evidence["reasoning_field"] = moved[1]
            out.append(Finding("format_drift", "warning", message, None, onset, evidence))
            degradations.append(
                Degradation(
                    f"format adherence fell {percent(drift.before)} -> {percent(drift.after)}",
                    onset,
                    "adherence",
                    [drift.before, drift.after],
                )
            )
    degradations += _length_changes(s, cfg)
    return out, degradations


def _diversity_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """A sustained drop of ``diversity_metric`` within prompt groups (a sustained rise for the metrics that
    grow as texts collapse, ``rises_on_collapse``), per role, each role judged on its own texts
    (``RunSeries.role_diversity``); texts without a speaker (a completion) are the null role's. Where the metric
    has no value at some step that has texts (distinct-n of texts shorter than n tokens: one-word or empty
    answers, or Chinese written without spaces; Self-BLEU of groups of one), a collapse onto such
    texts would be unseen: the role is judged on ``unique_frac`` too (exact duplicates, defined wherever there
    are texts), and a note says at how many steps the metric had no value."""
    div = s.role_diversity
    if div is None:
        return []
    out = []
    roles: list[str | None] = [r for r in s.run.role_names() if r in set(div["role"].to_list())]
    roles += sorted({r for r in div["role"].to_list() if r is not None} - set(roles))
    if div["role"].null_count():
        roles.append(None)
    for role in roles:
        part = div.filter(pl.col("role").is_null() if role is None else pl.col("role") == role).sort("step")
        if part.height < cfg.min_steps:
            continue
        metric = cfg.diversity_metric
        undefined = part.filter(pl.col(metric).is_null() & pl.col("unique_frac").is_not_null()).height
        found = _collapse(part, role, metric, cfg, groups=s.has_groups)
        if undefined and metric != "unique_frac":
            found = found or _collapse(part, role, "unique_frac", cfg, (metric, undefined), groups=s.has_groups)
            note = (
                f"{metric} has no value at {undefined} of {part.height} steps of {_whose(role)} (texts shorter than "
                f"{_ngram_order(metric)} tokens: one-word or empty answers, or text written without spaces, such as "
                "Chinese, whose every run without white space is one token; docs/metrics.md): diversity_collapse "
                f"judged {_whose(role)} on unique_frac too (exact duplicates)"
                f"{', and found it' if found is not None else ''}"
            )
            if note not in s.scope_notes:  # judged, on another metric: what was read, not a check left out
                s.scope_notes.append(note)
        if found is not None:
            out.append(found)
    return out


def _whose(role: str | None) -> str:
    return "the completions" if role is None else who(role)


def _ngram_order(metric: str) -> str:
    """The n of an n-gram metric's name (``distinct_2``: 2), for the words of its note; else "enough"."""
    tail = metric.rsplit("_", 1)[-1]
    return tail if tail.isdigit() else "enough"


def _collapse(
    part: pl.DataFrame,
    role: str | None,
    metric: str,
    cfg: DoctorConfig,
    instead: tuple[str, int] | None = None,
    *,
    groups: bool = True,
) -> Finding | None:
    """``diversity_collapse`` of one role's steps (``part``) judged on ``metric``, or None. ``instead``: the
    configured metric this one stands in for, and its steps without a value (said in the finding). ``groups``:
    whether the run has prompt groups; without them the figures are each step's texts as a whole
    (``diversity_frame``), and the message says so rather than "within prompt groups"."""
    steps, y = part["step"].to_list(), as_floats(part[metric].to_list())
    rises = rises_on_collapse(metric)
    shift = find_shift(y, direction="up" if rises else "down", min_delta=0.0, **cfg.shift_options())
    if shift is None or not _collapsed(metric, shift.before, shift.after, cfg.diversity_drop):
        return None
    onset = steps[shift.onset]
    uniq = as_floats(part["unique_frac"].to_list())
    u_before, u_after = float(np.nanmedian(uniq[: shift.split])), float(np.nanmedian(uniq[shift.split :]))
    whose = f"{who(role)}: its texts" if role is not None else "completions"
    message = (
        f"{whose} {'within prompt groups' if groups else 'across each step (no prompt groups)'} collapsed from step "
        f"{onset} on: {metric} "
        f"{'rose ' if rises else ''}{shift.before:.3g} -> {shift.after:.3g}"
        f"{' (higher is less diverse)' if rises else ''}"
    )
    evidence: dict[str, Any] = {"metric": metric, "direction": "up" if rises else "down"}
    if instead is not None:
        message += f" ({instead[0]} has no value at {instead[1]} of {part.height} steps)"
        evidence.update(configured_metric=instead[0], configured_metric_null_steps=instead[1])
    else:
        message += f", unique texts {percent(u_before)} -> {percent(u_after)}"
    evidence.update(
        before=shift.before,
        after=shift.after,
        unique_frac_before=u_before,
        unique_frac_after=u_after,
        z=shift.z,
    )
    return Finding("diversity_collapse", "warning", message, role, onset, evidence)


# Diversity columns (docs/metrics.md) that go UP when texts collapse: similarity and repetition, not variety.
_RISE_ON_COLLAPSE = ("self_bleu_", "self_repetition", "compression_ratio")


def rises_on_collapse(metric: str) -> bool:
    """Whether ``metric`` grows as the texts get less diverse (Self-BLEU, self-repetition, compression ratio),
    so that a collapse is a sustained rise of it, not a drop."""
    return metric.startswith(_RISE_ON_COLLAPSE)


def _collapsed(metric: str, before: float, after: float, drop: float) -> bool:
    """Whether a shift of ``metric`` from ``before`` to ``after`` loses at least ``drop`` of the diversity.
    A falling metric (distinct-n, entropy, unique share) must fall to at most ``1 - drop`` of its earlier
    level; Self-BLEU, a similarity in [0, 1], must lose that share of its distance to 1 (0.4 -> 1.0 is a
    collapse, as its complement falls 0.6 -> 0); self-repetition and compression ratios, unbounded, must
    grow by the inverse factor (at least double at the default half)."""
    if not rises_on_collapse(metric):
        return after <= (1 - drop) * before
    if metric.startswith("self_bleu_"):
        return 1 - after <= (1 - drop) * (1 - before)
    return after * (1 - drop) >= before


def _component_findings(s: RunSeries, cfg: DoctorConfig) -> list[Finding]:
    """Each reward component's mean per step: a sustained drop of at least ``component_drop`` of its
    within-step SDs (``format_drift`` for a component whose name says format, else ``component_shift``), or
    a sustained jump of at least ``component_jump`` SDs after a level that held (``component_shift``, info;
    ``_is_jump``), so that a learning curve, which climbs from the start, is not a jump. A component with no
    spread within any step (the same value for every sample of a step, or one sample a step) has no SD to
    measure in: its range over the steps is the unit instead (a format check that goes from 1.0 for every
    sample to 0.0 for every sample was skipped as no change)."""
    comp = s.components_per_step
    out: list[Finding] = []
    kw = cfg.shift_options()
    for name in dict.fromkeys(comp["component"].to_list()):
        part = comp.filter(pl.col("component") == name).sort("step")
        steps, y = part["step"].to_list(), as_floats(part["mean"].to_list())
        spread = scale = spread_scale(part["std"].to_list())
        if spread == 0 and np.isfinite(y).any():
            scale = float(np.nanmax(y) - np.nanmin(y))
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
                + (
                    f"({abs(shift.delta) / scale:.1f} within-step SDs)"
                    if spread
                    else f"({abs(shift.delta) / scale:.0%} of its range over the steps: no spread within any step)"
                ),
                None,
                onset,
                {
                    "component": name,
                    "before": shift.before,
                    "after": shift.after,
                    "within_step_sd": spread,
                    **({} if spread else {"range": scale}),
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
    fell: the texts' finding, with the component's numbers added (under ``format_component``: under
    ``component`` they made the finding's subject, ``Finding.key``, a dict of figures that moved with every step,
    so ``diff`` split one finding in two and ``doctor --follow`` said it again at each step) and the earlier
    onset."""
    text_drift = next((f for f in text if f.kind == "format_drift"), None)
    out = list(text)
    for f in components:
        if f.kind != "format_drift" or text_drift is None:
            out.append(f)
            continue
        text_drift.message += f"; {f.message}"
        text_drift.evidence["format_component"] = dict(f.evidence)
        if f.onset_step is not None and (text_drift.onset_step is None or f.onset_step < text_drift.onset_step):
            text_drift.onset_step = f.onset_step
    return out


def _length_changes(s: RunSeries, cfg: DoctorConfig) -> list[Degradation]:
    """A sustained change of the completions' mean length by a factor ``1 + hack_length`` either way (padding,
    or answers cut to game a length-blind grader)."""
    div = s.diversity
    if div is None:
        return []
    out = []
    ln = np.log(np.maximum(as_floats(div["len_mean"].to_list()), 1e-9))
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
            out.append(
                Degradation(
                    f"completion length went {b:.0f} -> {a:.0f} tokens",
                    int(div["step"][sh.onset]),
                    "length_tokens",
                    [b, a],
                )
            )
    return out


def _hacking(s: RunSeries, cfg: DoctorConfig, degradations: list[Degradation]) -> list[Finding]:
    """Reward rising *because of* a degradation: at the degradation's onset the total reward steps up above
    the trend it was on (``_level_jump``), by at least ``hack_rise`` within-step SDs and ``min_z`` robust noise
    units. A learning curve that keeps rising across the onset, or a reward that drops with the format, is not
    hacking. Each distinct onset is judged; the finding has the earliest that qualifies and the degradations
    that start there."""
    if not degradations:
        return []
    total = s.total
    x = np.array(total["step"].to_list(), dtype=float)
    y, scale = as_floats(total["reward_mean"].to_list()), spread_scale(total["reward_std"].to_list())
    if scale == 0:
        return []
    for onset in sorted({d.onset_step for d in degradations}):
        jump = _level_jump(x, y, onset, cfg)
        if jump is None:
            continue
        rise, level, slope, noise = jump
        z = rise / noise if noise > 0 else math.inf
        if rise < cfg.hack_rise * scale or z < cfg.min_z:
            continue
        signs = [d for d in degradations if d.onset_step == onset]
        evidence: dict[str, Any] = {d.key: d.values for d in signs}
        evidence.update(
            reward_before=level,
            reward_after=level + rise,
            jump=rise,
            within_step_sd=scale,
            trend_per_step=slope,
            z=z,
        )
        return [
            Finding(
                "reward_hacking",
                "error",
                f"total reward stepped up {level:.3g} -> {level + rise:.3g} at step {onset}, {rise / scale:.1f} "
                f"within-step SDs above the trend it was on, while {' and '.join(d.sign for d in signs)}: is the "
                "reward being gamed?",
                None,
                onset,
                evidence,
            )
        ]
    return []


def _level_jump(
    x: np.ndarray, y: np.ndarray, onset: int, cfg: DoctorConfig
) -> tuple[float, float, float, float] | None:
    """The change of level of the per-step series ``y`` (at steps ``x``) at step ``onset``, beyond its trend:
    a least-squares fit of ``y = a + b (x - onset) + c [x >= onset]`` (one slope, a step at the onset) to the
    ``4 * min_segment`` steps with a value before the onset and as many from it. Returns ``(c, a, b, noise)``,
    noise the robust SD of the fit's residuals (1.4826 x their median absolute deviation); None with fewer than
    ``min_segment`` steps on either side."""
    w = 4 * cfg.min_segment
    ok = np.flatnonzero(np.isfinite(y))
    before, after = ok[x[ok] < onset][-w:], ok[x[ok] >= onset][:w]
    if len(before) < cfg.min_segment or len(after) < cfg.min_segment:
        return None
    idx = np.concatenate([before, after])
    design = np.column_stack([np.ones(len(idx)), x[idx] - onset, (x[idx] >= onset).astype(float)])
    coef, *_ = np.linalg.lstsq(design, y[idx], rcond=None)
    residuals = y[idx] - design @ coef
    a, b, c = (float(v) for v in coef)
    return c, a, b, robust_noise(residuals)
