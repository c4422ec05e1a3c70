"""Find where a per-step series changed level, tolerating noise: the doctor's onset finder.

Method (docs/doctor.md, "Change points"): a **two-segment least-squares split** of the series (the split
``k`` that minimises the summed squared deviations of ``y[:k]`` and ``y[k:]`` from their own means, found in
O(n) with cumulative sums), accepted only when

1. the shift between the segments' medians goes the asked direction and is at least ``min_delta`` (an
   effect size in the series' own units, so that a tiny but statistically clear wiggle is not a finding);
2. it is at least ``min_z`` robust noise units: the noise is the median absolute residual of each point
   from its own segment's least-squares line (``trend_noise``, scaled by 1.4826 to estimate a standard
   deviation), so outliers, the shift itself and a steady trend within a segment do not inflate it (measured
   from each segment's median instead, a reward that rose 0.005 a step and then fell 1.5 within-step SDs at
   once scored under ``min_z``: its rise counted as noise);
3. it persists: at least ``persist`` of the points after the split lie beyond the midpoint between the two
   levels, and so does the last point (a spike that came back is not a level change).

The **onset** is then the first point from which the change is sustained: the first index whose value has
moved ``onset_frac`` of the way from the old level to the new one and from which on at least ``persist`` of
the points up to the split, and of all remaining points, have too (``sustained_start``). For a clean step
this is the step itself (a lone noisy point before it is not carried by the long changed segment after it);
for a ramp it is where the ramp leaves the noise, rather than the middle of the ramp that the least-squares
split alone would give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

MAD_TO_SD = 1.4826

# A per-step series: a list, or a float array (NaN for a missing step).
FloatSeries = Sequence[float] | np.ndarray


class ShiftOptions(TypedDict, total=False):
    """``find_shift``'s tuning, passed on as ``**options``."""

    min_z: float
    min_segment: int
    persist: float
    onset_frac: float


@dataclass(frozen=True)
class Shift:
    """A sustained level change: ``onset`` and ``split`` are indices into the series given."""

    onset: int
    split: int
    before: float  # median of the segment before the split
    after: float  # median of the segment after it
    noise: float  # robust standard deviation within segments, around each one's trend line
    z: float  # |after - before| / noise (inf when the segments are noiseless)

    @property
    def delta(self) -> float:
        return self.after - self.before


def best_split(y: np.ndarray, min_segment: int) -> int | None:
    """The index ``k`` (``min_segment <= k <= n - min_segment``) minimising the two segments' summed squared
    deviations from their means; None when the series is too short for two segments."""
    n = len(y)
    if n < 2 * min_segment:
        return None
    c1 = np.concatenate([[0.0], np.cumsum(y)])
    c2 = np.concatenate([[0.0], np.cumsum(y * y)])
    ks = np.arange(min_segment, n - min_segment + 1)
    left_n, right_n = ks, n - ks
    left_s, right_s = c1[ks], c1[n] - c1[ks]
    sse = (c2[ks] - left_s**2 / left_n) + ((c2[n] - c2[ks]) - right_s**2 / right_n)
    return int(ks[int(np.argmin(sse))])


def robust_noise(*segments: np.ndarray) -> float:
    """Pooled median absolute deviation of each point from its own segment's median, as a standard deviation."""
    dev = np.concatenate([np.abs(s - np.median(s)) for s in segments if len(s)])
    return float(MAD_TO_SD * np.median(dev)) if len(dev) else 0.0


def trend_noise(*segments: np.ndarray) -> float:
    """Pooled median absolute residual of each point from its own segment's least-squares line, as a standard
    deviation: like ``robust_noise``, but a steady trend inside a segment (a learning curve before a collapse)
    is not counted as noise. Each segment's residuals are scaled by ``sqrt(n / (n - 2))``, since a fitted
    line takes up two of its ``n`` degrees of freedom (the median, which ``robust_noise`` measures from, takes
    about one); a segment of two points or fewer has no residual to measure and adds none."""
    parts = []
    for s in segments:
        n = len(s)
        if n < 3:
            continue
        x = np.arange(n, dtype=float)
        slope, icept = np.polyfit(x, s, 1)
        parts.append(np.abs(s - (icept + slope * x)) * math.sqrt(n / (n - 2)))
    return float(MAD_TO_SD * np.median(np.concatenate(parts))) if parts else 0.0


def find_shift(
    values: FloatSeries,
    *,
    direction: str,
    min_delta: float,
    min_z: float = 4.0,
    min_segment: int = 3,
    persist: float = 0.8,
    onset_frac: float = 0.3,
) -> Shift | None:
    """The sustained level shift of ``values`` in ``direction`` (``"up"`` or ``"down"``), or None.

    NaN values are left out (indices of the result refer to the series as given). See the module docstring
    for the three conditions and the onset rule."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
    raw = np.asarray(values, dtype=float)
    keep = np.flatnonzero(np.isfinite(raw))
    y = raw[keep] if direction == "up" else -raw[keep]
    k = best_split(y, min_segment)
    if k is None:
        return None
    left, right = y[:k], y[k:]
    before, after = float(np.median(left)), float(np.median(right))
    delta = after - before
    if delta < min_delta:
        return None
    noise = trend_noise(left, right)
    # Residuals of float rounding alone (a noiseless 0/1 series fits its lines to ~1e-16) are no noise: z is inf,
    # as for noise exactly 0, not 1.5e15.
    scale = max(abs(before), abs(after), delta)
    z = delta / noise if noise > 1e-9 * scale else math.inf
    if z < min_z:
        return None
    mid = before + delta / 2
    if np.mean(right > mid) < persist or y[-1] <= mid:
        return None
    onset = _onset(y, before + onset_frac * delta, persist, k)
    sign = 1.0 if direction == "up" else -1.0
    # + 0.0: a level of -0.0 (a sign flipped over 0) reads 0, never "-0"
    return Shift(int(keep[onset]), int(keep[k]), sign * before + 0.0, sign * after + 0.0, noise, z)


def _onset(y: np.ndarray, threshold: float, persist: float, split: int) -> int:
    """First index beyond ``threshold`` from which the change is sustained (``sustained_start``), never after
    the least-squares split."""
    return sustained_start(y > threshold, persist, split)


def sustained_start(beyond: np.ndarray, persist: float, split: int) -> int:
    """The first index ``i <= split`` that is ``beyond`` and from which at least ``persist`` of the points up
    to ``split`` (inclusive) **and** of all remaining points are beyond too; ``split`` when there is none.

    The share up to the split is what makes a step's onset the step itself: the tail share alone lets a long
    changed segment carry one noisy point many steps before the change (one point beyond among the 12 before
    a step, then a long run of changed points after it, passed 80 % of all points from that one on). A ramp
    leaves the noise before the split and stays beyond up to it, so its onset stays where it leaves the noise."""
    n = len(beyond)
    if n == 0:
        return split
    split = min(split, n - 1)
    counts = np.concatenate([[0], np.cumsum(beyond)])
    idx = np.arange(split + 1)
    tail_ok = (counts[n] - counts[idx]) >= persist * (n - idx)
    head_ok = (counts[split + 1] - counts[idx]) >= persist * (split + 1 - idx)
    hits = np.flatnonzero(beyond[: split + 1] & tail_ok & head_ok)
    return int(hits[0]) if len(hits) else split


def first_sustained(values: FloatSeries, threshold: float, *, persist: float = 0.8, min_run: int = 3) -> int | None:
    """First index from which at least ``persist`` of the remaining values are >= ``threshold``, with at
    least ``min_run`` such values after it; None if there is none. For rates (NaN, zero-advantage) and z
    scores whose threshold is absolute rather than relative to an earlier level.

    NaN is a missing value, left out (indices of the result refer to the series as given). An infinite value
    is not missing but decisive: +inf is at or above any finite threshold and -inf below it, as they compare
    (a z of a difference with no spread on either side, ``diff.step_z``, is infinite)."""
    raw = np.asarray(values, dtype=float)
    keep = np.flatnonzero(~np.isnan(raw))
    y = raw[keep]
    beyond = y >= threshold
    if beyond.sum() < min_run:
        return None
    tail_counts = np.cumsum(beyond[::-1])[::-1]
    tail_len = np.arange(len(y), 0, -1)
    ok = beyond & (tail_counts >= persist * tail_len) & (tail_counts >= min_run)
    hits = np.flatnonzero(ok)
    return int(keep[hits[0]]) if len(hits) else None
