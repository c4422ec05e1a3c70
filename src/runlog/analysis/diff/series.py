"""Per-step series of a diff with confidence bands: what ``plot --diff`` and the report's overlays draw."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from ..._lazy import pl
from ...errors import UsageError
from .model import SERIES_SCHEMA, Diff, Split, frame
from .sides import role_eq, split_eq

Point = tuple[float | None, float | None, int]  # a step's mean, standard deviation and count


def diff_series(d: Diff, metric: str = "reward") -> pl.DataFrame:
    """Per split, role, run and common step: the run's per-step mean of ``metric`` (``reward`` or ``kl``) with a
    normal confidence band (``mean +- z sd / sqrt(n)`` at ``options.ci``), and, for the compared runs, the
    difference to the baseline at that step with its band (Welch). Both runs' rows cover the steps they
    share where each has a value of that role (the baseline's rows, ``baseline`` true, those of any compared
    run). What ``plot --diff`` draws."""
    if metric not in ("reward", "kl"):
        raise UsageError(f"diff series: metric {metric!r}: expected reward or kl")
    z = NormalDist().inv_cdf(0.5 + d.options.ci / 2)
    rows: list[dict[str, Any]] = []
    base_frame = d.per_step[0] if d.per_step else pl.DataFrame()
    if base_frame.height == 0:
        return frame(rows, SERIES_SCHEMA)
    base_steps: dict[tuple[Split, str | None], set[int]] = {}
    for (idx, split), common in d.common.items():
        other = d.per_step[idx]
        for role in [r for r in dict.fromkeys(other.filter(split_eq(split))["role"].to_list())]:
            a = _indexed(base_frame, split, role, metric)
            b = _indexed(other, split, role, metric)
            if not a or not b:
                continue
            base_steps.setdefault((split, role), set()).update(s for s in common if s in a and s in b)
            for s in common:
                # A compared run is drawn on the steps where the baseline has a value of this role too
                # (docs/diff.md: "on the steps each run shares with the baseline"), never beside no baseline.
                if s not in b or s not in a:
                    continue
                mb, sb, nb = b[s]
                lo, hi = _band(mb, sb, nb, z)
                diff = dlo = dhi = None
                ma, sa, na = a.get(s, (None, None, 0))
                if ma is not None and mb is not None:
                    diff = mb - ma
                    var = (sa or 0.0) ** 2 / max(na, 1) + (sb or 0.0) ** 2 / max(nb, 1)
                    dlo, dhi = diff - z * math.sqrt(var), diff + z * math.sqrt(var)
                rows.append(_series_row(split, role, metric, d.names[idx], False, s, mb, lo, hi, nb, diff, dlo, dhi))
    for (split, role), steps in base_steps.items():
        a = _indexed(base_frame, split, role, metric)
        for s in sorted(steps):
            ma, sa, na = a[s]
            lo, hi = _band(ma, sa, na, z)
            rows.append(_series_row(split, role, metric, d.names[0], True, s, ma, lo, hi, na, None, None, None))
    out = frame(rows, SERIES_SCHEMA)
    return out.sort("split", "role", pl.col("baseline").not_(), "run", "step", nulls_last=True)


def _indexed(per_step: pl.DataFrame, split: Split, role: str | None, metric: str) -> dict[int, Point]:
    part = per_step.filter(split_eq(split) & role_eq(role))
    return {
        s: (m, sd, n or 0)
        for s, m, sd, n in part.select("step", f"{metric}_mean", f"{metric}_std", f"{metric}_count").iter_rows()
        if n
    }


def _band(mean: float | None, sd: float | None, n: int, z: float) -> tuple[float | None, float | None]:
    if mean is None or sd is None or n < 2:
        return None, None
    half = z * sd / math.sqrt(n)
    return mean - half, mean + half


def _series_row(*values: Any) -> dict[str, Any]:
    """A row of ``SERIES_SCHEMA`` from its values in the schema's order."""
    return dict(zip(SERIES_SCHEMA, values, strict=True))
