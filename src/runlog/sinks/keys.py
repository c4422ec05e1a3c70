"""What a W&B key holds, decided once for a W&B run and kept by every later upload to it.

Three decisions are made from the whole run: the key of the training step, every chart's x axis (``trainer/step``,
or ``runlog/step`` where the run logs a ``trainer/step`` of its own with other values); what each key holds, the
run's own number or runlog's number, histogram or table (a key the run logs is the run's series, and W&B keeps one
type per key); and which samples ``P/<what>/unknown`` holds (those without per-role data, or a role named
``unknown``: then the others are ``P/no_role/<what>``). A run that grows between uploads can call for other
decisions (a trainer that starts logging ``trainer/step`` or one of runlog's keys, a resumed writer that adds the
role ``unknown``), which would give a key another meaning or type partway through the W&B run. So the upload state
records them when first made (``state.Entry.step_key``, ``keys``, ``no_role``), later uploads to the same W&B run
keep them, and a note says what the kept decision leaves out, and how to log it (a new W&B run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..textsafe import visible

SCALAR = "scalar"  # the run's own number
COMPUTED = "computed"  # runlog's number (a per-role mean, a metric, ...)
HISTOGRAM = "histogram"  # runlog's reward histogram
TABLE = "table"  # runlog's trajectory table
KINDS = (SCALAR, COMPUTED, HISTOGRAM, TABLE)
_KIND_TEXT = {COMPUTED: "runlog's number", HISTOGRAM: "runlog's histogram", TABLE: "runlog's table"}
NEW_RUN = "to log them, upload into a new W&B run with --run-id ID"


@dataclass
class KeyDecisions:
    """The decisions an upload state records for a destination (``state.Entry``): the step's key, what each key
    holds (``KINDS``, the step's key aside), and whether the samples without per-role data are ``P/no_role/...``
    (True: ``P/<what>/unknown`` is the role ``unknown``'s) or ``P/<what>/unknown`` (False); None where not decided
    yet (an entry written before runlog kept them, or a run that had neither)."""

    step_key: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    no_role: bool | None = None


def first(steps: Mapping[str, list[int]]) -> tuple[str, int]:
    """The key and step named first in a note: the lowest step, then the first key by name."""
    step, key = min((min(v), k) for k, v in steps.items() if v)
    return key, step


def step_note(key: str, overruled: list[tuple[int, float]]) -> str:
    """The run's own values under the recorded step key, at the steps sent, which are not the step."""
    step, value = overruled[0]
    return (
        f"the run logs its own {visible(key, keep_newlines=False)} at {len(overruled)} step(s) (first: step {step}, "
        f"{value:g}), not the step: it stays the charts' x axis holding the training step, as earlier uploads to this "
        f"W&B run logged it, and the run's values under it are not logged; {NEW_RUN}"
    )


def overruled_note(overruled: Mapping[str, list[int]], kinds: Mapping[str, str]) -> str:
    """Keys the recorded decisions give runlog that the run now logs itself too, at the steps sent."""
    key, step = first(overruled)
    steps = {s for v in overruled.values() for s in v}
    what = _KIND_TEXT.get(kinds.get(key, ""), "runlog's")
    return (
        f"{len(overruled)} key(s) that earlier uploads to this W&B run logged with runlog's values are now also the "
        f"run's own scalars, at {len(steps)} step(s) (first: {visible(key, keep_newlines=False)}, {what}, at step "
        f"{step}): runlog's are kept under them (W&B keeps one type and one series per key) and the run's values "
        f"are not logged; {NEW_RUN}"
    )


def left_role_note(prefix: str, role: str, steps: list[int]) -> str:
    """The role ``role`` (``unknown``) appeared after earlier uploads keyed the samples without per-role data so."""
    return (
        f"a role of this run is named {role!r} ({len(steps)} step(s), first: step {steps[0]}): earlier uploads to "
        f"this W&B run logged the samples without per-role data as {prefix}/reward/{role}, {prefix}/kl/{role}, "
        f"{prefix}/zero_adv_frac/{role} and {prefix}/reward_hist/{role}, kept: the role's own values are not "
        f"logged under them (its samples are in {prefix}/reward_total and the tables); {NEW_RUN}"
    )
