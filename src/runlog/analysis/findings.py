"""What the doctor reports: ``Finding`` (one diagnosis, with the numbers behind it) and ``Diagnosis`` (all of
them for one run), and the small numeric helpers its checks share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    "nan_kl",
    "inf_rewards",
    "inf_kl",
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

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What makes it the same finding at another time or in another run: its kind, its role and its
        subject where one kind and role can have several (a component, a split, a data problem's kind, the
        total reward apart from the rows without roles)."""
        ev = self.evidence
        subject = next(
            (str(ev[k]) for k in ("subject", "component", "split", "problem_kind") if ev.get(k) is not None), None
        )
        return (self.kind, self.role, subject)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "role": self.role,
            "onset_step": self.onset_step,
            "severity": self.severity,
            "message": self.message,
            "evidence": plain(self.evidence),
        }


@dataclass
class Diagnosis:
    findings: list[Finding]
    notes: list[str]  # checks that could not run: the run is not called healthy
    split: str | None
    scope: list[str] = field(default_factory=list)  # what was read (the splits left out): no bearing on health

    @property
    def all_notes(self) -> list[str]:
        return [*self.scope, *self.notes]

    @property
    def failing(self) -> bool:
        """A finding of severity warning or worse: ``runlog doctor`` exits 1."""
        return any(f.severity != "info" for f in self.findings)


def who(role: str | None, named: bool = False) -> str:
    """Whom a finding is about; the null role is the run's samples, or, in a run whose other samples have
    roles (``named``), only the samples without per-role data."""
    if role is not None:
        return f"role {role}"
    return "the samples without per-role data" if named else "the run"


def as_floats(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def spread_scale(values: Sequence[Any]) -> float:
    """Typical within-step spread (median of the per-step SDs): effect sizes of reward means are in these
    units, so thresholds hold for rewards in [0, 1] and in [-10, 10] alike."""
    v = as_floats(values)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.median(v)) if len(v) else 0.0


def plain(v: Any) -> Any:
    """Evidence as plain JSON: numpy numbers as Python numbers, NaN and infinities as null."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def percent(share: float, decimals: int = 0) -> str:
    """A share as a percentage that never reads as another: whole percents where that is true to the value,
    more decimals where rounding would say 0% or 100% of what is neither (99.6% of groups is not "100%",
    4e-6 of the rewards not "0.0%"); at least ``decimals`` decimals."""
    if share != share:
        return "NaN%"
    p = share * 100
    if p in (0.0, 100.0) or abs(p) == float("inf"):
        return f"{p:.{decimals}f}%"
    for more in range(decimals, decimals + 7):
        text = f"{p:.{more}f}"
        if float(text) not in (0.0, 100.0):
            return f"{text}%"
    return f"{p:.2g}%"
