"""Row filters shared by every command: ``--split``, ``--steps``, ``--role``.

One parser and one meaning for each flag, so that ``--steps 10:19`` selects the same rows in summarize,
metrics, plot, doctor and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .._lazy import pl
from ..errors import UsageError


@dataclass
class StepRange:
    first: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> StepRange:
        """``A:B`` (inclusive), ``A:``, ``:B`` or ``A``."""
        if not text:
            return cls()
        a, sep, b = text.partition(":")
        try:
            first = int(a) if a.strip() else None
            last = (int(b) if b.strip() else None) if sep else first
        except ValueError:
            raise UsageError(f"--steps {text!r}: expected A:B with integers (inclusive), A:, :B or A") from None
        if first is not None and last is not None and first > last:
            raise UsageError(f"--steps {text!r}: the first step is after the last")
        return cls(first, last)

    def expr(self) -> pl.Expr | None:
        parts = []
        if self.first is not None:
            parts.append(pl.col("step") >= self.first)
        if self.last is not None:
            parts.append(pl.col("step") <= self.last)
        if not parts:
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out


@dataclass
class Filters:
    splits: Sequence[str] = ()
    steps: StepRange = field(default_factory=StepRange)
    roles: Sequence[str] = ()


def apply_filters(lf: pl.LazyFrame, filters: Filters, *, roles_too: bool) -> pl.LazyFrame:
    if filters.splits:
        lf = lf.filter(pl.col("split").is_in(list(filters.splits)))
    step_filter = filters.steps.expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    if roles_too and filters.roles:
        lf = lf.filter(pl.col("role").is_in(list(filters.roles)))
    return lf
