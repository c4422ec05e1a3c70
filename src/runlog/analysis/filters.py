"""Row filters shared by every command: ``--split``, ``--steps``, ``--role``.

One parser and one meaning for each flag, so that ``--steps 10:19`` selects the same rows in summarize,
metrics, plot, doctor and report. Whether a value matches anything in a run is checked in
``runlog.analysis.check``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._lazy import pl
from ..errors import UsageError

STEPS_SYNTAX = "A:B (inclusive), A:, :B, N, or a comma list of these (0,5,10:12)"

Item = tuple[int | None, int | None]


@dataclass
class StepRange:
    """The steps ``--steps`` selects: a union of inclusive ranges (``items``; a bound of None is open).

    ``first`` and ``last`` are the overall bounds (None: open on that side), so that code that prunes files by
    step can keep every file that may hold a selected step; ``contains`` and ``expr`` are exact."""

    first: int | None = None
    last: int | None = None
    items: tuple[Item, ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        if not self.items and (self.first is not None or self.last is not None):
            self.items = ((self.first, self.last),)
        if not self.text and self.items:
            self.text = ",".join(item_text(i) for i in self.items)

    @property
    def shown(self) -> str:
        """``text`` as a message quotes it before a colon: ``500:`` in quotes (``--steps '500:': ...``)."""
        return repr(self.text) if self.text.endswith(":") else self.text

    @classmethod
    def parse(cls, text: str | None) -> StepRange:
        """``A:B`` (inclusive), ``A:``, ``:B``, ``N``, or a comma list of these (``0,5,10:12``)."""
        if text is None:
            return cls()
        if not text.strip():  # `--steps ''` (an unset shell variable): refused, not read as every step
            raise UsageError(f"--steps {text!r}: empty; expected {STEPS_SYNTAX}")
        items: list[Item] = []
        for part in text.split(","):
            a, sep, b = part.strip().partition(":")
            try:
                lo = int(a) if a.strip() else None
                hi = (int(b) if b.strip() else None) if sep else lo
            except ValueError:
                raise UsageError(f"--steps {text!r}: expected {STEPS_SYNTAX}") from None
            if not sep and lo is None:
                raise UsageError(f"--steps {text!r}: an empty item; expected {STEPS_SYNTAX}")
            if lo is not None and hi is not None and lo > hi:
                raise UsageError(f"--steps {text!r}: in {part.strip()}, the first step is after the last")
            items.append((lo, hi))
        first = None if any(lo is None for lo, _ in items) else min(lo for lo, _ in items if lo is not None)
        last = None if any(hi is None for _, hi in items) else max(hi for _, hi in items if hi is not None)
        return cls(first, last, tuple(items), text.strip())

    @property
    def unbounded(self) -> bool:
        """Every step is selected (no ``--steps``, or ``:``)."""
        return not self.items or any(lo is None and hi is None for lo, hi in self.items)

    def contains(self, step: int) -> bool:
        return self.unbounded or any(item_contains(i, step) for i in self.items)

    def select(self, steps: Iterable[int]) -> list[int]:
        """The given steps that the range selects, sorted and unique."""
        return sorted({s for s in steps if self.contains(s)})

    def expr(self) -> pl.Expr | None:
        """The filter on the ``step`` column, or None when every step is selected."""
        if self.unbounded:
            return None
        out: pl.Expr | None = None
        for lo, hi in self.items:
            if lo is not None and lo == hi:
                part = pl.col("step") == lo
            elif lo is None:
                part = pl.col("step") <= hi
            elif hi is None:
                part = pl.col("step") >= lo
            else:
                part = pl.col("step").is_between(lo, hi)
            out = part if out is None else out | part
        return out


def item_contains(item: Item, step: int) -> bool:
    lo, hi = item
    return (lo is None or step >= lo) and (hi is None or step <= hi)


def item_text(item: Item) -> str:
    lo, hi = item
    if lo is not None and lo == hi:
        return str(lo)
    return f"{'' if lo is None else lo}:{'' if hi is None else hi}"


@dataclass
class Filters:
    splits: Sequence[str] = ()
    steps: StepRange = field(default_factory=StepRange)
    roles: Sequence[str] = ()

    @classmethod
    def from_options(
        cls, split: Sequence[str] | str | None = None, steps: str | None = None, role: Sequence[str] | None = None
    ) -> Filters:
        """The filters of a command's ``--split``, ``--steps`` and ``--role`` options (repeated values
        de-duplicated, in order)."""
        splits = [split] if isinstance(split, str) else list(split or ())
        return cls(
            splits=tuple(dict.fromkeys(splits)), steps=StepRange.parse(steps), roles=tuple(dict.fromkeys(role or ()))
        )

    @property
    def active(self) -> bool:
        return bool(self.splits or self.roles or not self.steps.unbounded)


def apply_filters(lf: pl.LazyFrame, filters: Filters, *, roles_too: bool) -> pl.LazyFrame:
    if filters.splits:
        lf = lf.filter(pl.col("split").is_in(list(filters.splits)))
    step_filter = filters.steps.expr()
    if step_filter is not None:
        lf = lf.filter(step_filter)
    if roles_too and filters.roles:
        lf = lf.filter(pl.col("role").is_in(list(filters.roles)))
    return lf
