"""What a diff is asked (``DiffOptions``) and what it answers (``Diff``), with the schemas of its frames."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..._lazy import pl
from ...errors import UsageError
from ..filters import StepRange

DEFAULT_WINDOW = 10
DEFAULT_BOOT = 1000
POINTS = ("start", "end", "best")

Split = str | None


@dataclass(frozen=True)
class DiffOptions:
    """What ``diff_runs`` compares and how (defaults: the CLI's)."""

    window: int = DEFAULT_WINDOW  # steps of the start, end and best windows
    seed: int = 0  # bootstrap seed
    boot: int = DEFAULT_BOOT  # bootstrap resamples
    ci: float = 0.95  # confidence level of the intervals (and of the onset's z threshold)
    splits: tuple[str, ...] = ()  # only these splits (default: every split both runs have)
    roles: tuple[str, ...] = ()  # only these roles
    steps: StepRange = field(default_factory=StepRange)  # only these steps
    keys: tuple[str, ...] = ()  # scalar key globs (default: every common key)
    text: bool = False  # diversity and format adherence (reads the texts of the windows)
    findings: bool = False  # the doctor's findings of each run (reads every text of the run)
    format_spec: str = "think-answer-strict"
    # Only what ``diff_series`` needs (the per-step figures, the overlap, the notes on it): no windows read, no
    # bootstrap, no scalars or configs (``plot --diff``).
    series_only: bool = False

    def check(self) -> None:
        if self.window < 1:
            raise UsageError("--window must be a positive number of steps")
        if self.boot < 100:
            raise UsageError(f"--boot {self.boot}: at least 100 resamples (1000 or more for a 95 % interval)")
        if not 0.5 <= self.ci < 1:
            raise UsageError(f"--ci {self.ci}: a confidence level between 0.5 and 1 (e.g. 0.95)")


@dataclass
class Diff:
    """The comparison. Every frame has a ``run`` column (the compared run; the baseline is ``names[0]``);
    ``notes`` say what could not be compared and why (one line each)."""

    names: list[str]
    layouts: list[list[str]]
    overlap: pl.DataFrame  # per run and split: its steps, and the steps it shares with the baseline
    roles: pl.DataFrame  # per split, role and run: the headline (end difference, onsets, paired)
    points: pl.DataFrame  # per split, role, metric, point and run: values, difference, interval
    paired: pl.DataFrame  # per split, role and run: the per-prompt comparison over the end window
    scalars: pl.DataFrame  # per key, point and run
    config: pl.DataFrame  # per differing config key and run
    text: pl.DataFrame | None = None  # with options.text
    findings: pl.DataFrame | None = None  # with options.findings
    notes: list[str] = field(default_factory=list)
    # What makes a figure doubtful in the data itself (sample ids repeated in a window: rows read twice),
    # one line each: ``runlog diff`` prints them as warnings.
    warnings: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)  # where each run was given, in ``names``' order
    per_step: list[pl.DataFrame] = field(default_factory=list, repr=False)  # summarize per run (for series)
    options: DiffOptions = field(default_factory=DiffOptions, repr=False)
    common: dict[tuple[int, Split], list[int]] = field(default_factory=dict, repr=False)

    @property
    def compared(self) -> bool:
        """Whether the diff has anything to show: a per-role point, a scalar, a config key that differs, a text
        measure or a finding. Configs that are identical alone are not a comparison: every table would be
        empty (``runlog diff`` then stops with the notes as its error)."""
        extra = [df is not None and df.height > 0 for df in (self.text, self.findings)]
        return bool(self.points.height or self.scalars.height or self.config.height or any(extra))

    def frames(self) -> dict[str, pl.DataFrame]:
        out = {
            "overlap": self.overlap,
            "roles": self.roles,
            "points": self.points,
            "paired": self.paired,
            "scalars": self.scalars,
            "config": self.config,
        }
        if self.text is not None:
            out["text"] = self.text
        if self.findings is not None:
            out["findings"] = self.findings
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: every frame as a list of row objects (NaN as null), the runs (each with the path it was
        given as, null where unknown: a label alone does not lead back to a folder), the notes and the
        warnings."""
        paths: list[str | None] = [*self.locations] or [None] * len(self.names)
        runs = [
            {"name": n, "path": path, "layouts": lay, "baseline": i == 0}
            for i, (n, path, lay) in enumerate(zip(self.names, paths, self.layouts, strict=True))
        ]
        body = {
            name: [{k: _plain(v) for k, v in row.items()} for row in df.to_dicts()]
            for name, df in self.frames().items()
        }
        opts = self.options
        settings = {"window": opts.window, "seed": opts.seed, "boot": opts.boot, "ci": opts.ci}
        return {"runs": runs, "settings": settings, **body, "notes": list(self.notes), "warnings": list(self.warnings)}


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------------------
# Frames' schemas
# ---------------------------------------------------------------------------------------------------------
STR, FLT, INT = pl.String, pl.Float64, pl.Int64


def _cols(names: str, kind: Any) -> dict[str, Any]:
    return dict.fromkeys(names.split(), kind)


# A difference, its interval, the two-sided p of a permutation test of the runs' units (``bootstrap.permutation_p``:
# a verdict needs it at most 1 - ci besides an interval that excludes 0; null where there is no interval or the
# test is not run) and the verdict.
INTERVAL = {**_cols("diff ci_low ci_high p_value", FLT), "verdict": STR}
SIDE_BY_SIDE = {"steps": STR, **_cols("baseline value diff", FLT)}
OVERLAP_SCHEMA = {**_cols("run layout split steps", STR), "common_steps": INT, "common": STR}
ROLES_SCHEMA = {
    **_cols("split role run", STR),
    "common_steps": INT,
    **_cols("reward_end_baseline reward_end", FLT),
    **INTERVAL,
    **_cols("ahead_from behind_from", INT),
    **_cols("paired_diff paired_ci_low paired_ci_high", FLT),
    # paired_by_id: of those prompts, the ones paired by a group id alone (``PAIRED_SCHEMA``'s by_id: no verdict)
    **_cols("prompts paired_by_id", INT),
}
POINTS_SCHEMA = {
    **_cols("split role metric point run baseline_steps", STR),
    **SIDE_BY_SIDE,
    **INTERVAL,
    # baseline_units, units: the units the interval resamples that hold a finite value (prompts, prompt groups, or
    # samples where no group is known; for zero_adv_frac, clusters of groups): too few give no verdict.
    **_cols("baseline_n n baseline_units units", INT),
}
PAIRED_SCHEMA = {
    **_cols("split role run steps", STR),
    **_cols("prompts by_id wins losses ties", INT),  # by_id: prompts paired by a group id alone (no verdict)
    "mean_diff": FLT,
    **_cols("ci_low ci_high", FLT),
    # The two-sided p of an exact sign-flip test of the differences (``bootstrap.sign_flip_p``): a paired verdict
    # needs it at most 1 - ci besides an interval that excludes 0 (null without a finite mean difference).
    "p_value": FLT,
    "verdict": STR,
}
SCALARS_SCHEMA = {**_cols("key point run", STR), **SIDE_BY_SIDE, **INTERVAL}
CONFIG_SCHEMA = _cols("key run config_baseline config_run", STR)
TEXT_SCHEMA = {**_cols("split role metric point run", STR), **SIDE_BY_SIDE}
FINDINGS_SCHEMA = {
    **_cols("kind role subject run status severity_baseline severity_run", STR),
    **_cols("onset_baseline onset_run", INT),
    "message": STR,
}
SERIES_SCHEMA = {
    **_cols("split role metric run", STR),
    "baseline": pl.Boolean,
    "step": INT,
    **_cols("mean lo hi", FLT),
    "n": INT,
    **_cols("diff diff_lo diff_hi", FLT),
}


def frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
