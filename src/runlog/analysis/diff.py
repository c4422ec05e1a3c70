"""``runlog diff A B [C ...]``: did B beat A, for which role, from which step, and is it noise?

The first run is the baseline; every other run is compared with it, pair by pair, where both have data:

- **Alignment.** Per split, the steps both runs have (``check.steps_per_split``: file names and footers).
  A run logged every k steps is compared on the steps it shares with the other; the overlap is said in a
  note. Roles are matched by name (the null role, samples without per-role data, matches the null role).
- **Points.** Per split and role: the role's reward and KL at the *start* (the first ``window`` common
  steps), the *end* (the last ``window``) and the *best* point (each run's ``window`` consecutive common steps
  with the highest mean reward of that role), each the mean of the valid values over the samples of those
  steps (the numbers of ``summarize --by role --steps ...``), and the zero-advantage fraction of the role's
  prompt groups there (groups as ``summarize --prompt-groups`` finds them). The difference to the baseline
  has a percentile bootstrap confidence interval: the samples (for ``zero_adv_frac``: the prompt groups) of
  each run are resampled with replacement, independently, ``boot`` times, from a seeded generator, so that
  the same command prints the same interval. A difference whose interval lies above 0 is ``ahead``
  (``higher`` for KL and zero_adv_frac), below 0 ``behind`` (``lower``), else ``tie``.
- **Paired.** Where both runs have prompt groups over the same prompts (the same prompt text, or where there
  is no text the same group id, within the same split and step), the per-prompt difference of the role's
  mean reward over the end window, with a bootstrap interval over the prompts: differences between prompts
  cancel, so a paired interval is narrower.
- **Onset.** Per common step, the Welch z of the difference of the role's mean rewards
  (``(mean_B - mean_A) / sqrt(sd_A^2 / n_A + sd_B^2 / n_B)``); B is ahead from the first step from which
  the z stays at or above the interval's normal quantile (1.96 for 95 %) stably: the doctor's onset rule
  (``changepoint.first_sustained`` with the doctor's ``persist`` and ``min_segment``). Behind likewise.
- **Scalars.** Common scalar keys (``--keys`` globs), per-step values merged as ``summarize --scalars``
  merges them, at the start and the end, with a bootstrap interval over the window's steps.
- **Configs.** The recorded configs (``run.json`` ``config``; W&B-style ``{"value": ...}`` entries
  unwrapped, W&B's own ``_wandb`` entry left out), flattened to ``a/b`` keys: the keys that differ.
- **Text and findings** (opt-in: they read the texts, which costs many times a summary): diversity of each
  role's texts and format adherence at the start and the end, side by side; the doctor's findings of each
  run, matched by kind and role (``appears`` in the run, ``disappears`` from the baseline, ``both``).

What it costs: one ``summarize(run, ["split", "role", "step"])`` per run (numeric columns only), and the
samples of the few steps of the windows (prompt text included, for groups and pairing); the bootstrap works
on a count matrix shared by every role of a window (docs/benchmarks.md, "diff").
"""

from __future__ import annotations

import fnmatch
import json
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from .._lazy import pl
from ..errors import UsageError
from ..run import Run
from .changepoint import first_sustained
from .check import check_key_globs, describe_steps, steps_per_split
from .doctor_config import DoctorConfig
from .filters import Filters, StepRange, apply_filters
from .summarize import DEFAULT_ALIASES, summarize_scalars

try:  # the prompt groups exactly as summarize finds them
    from .aggregate import group_key_expr
except ImportError:  # pragma: no cover  (before summarize's passes moved to their own module)
    from .summarize import _group_key_expr as group_key_expr  # type: ignore[attr-defined,no-redef]

DEFAULT_WINDOW = 10
DEFAULT_BOOT = 1000
POINTS = ("start", "end", "best")
# Bootstrap count matrices are built in chunks of at most this many cells (8 bytes each).
BOOT_CELLS = 2_000_000

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
    per_step: list[pl.DataFrame] = field(default_factory=list, repr=False)  # summarize per run (for series)
    options: DiffOptions = field(default_factory=DiffOptions, repr=False)
    common: dict[tuple[int, Split], list[int]] = field(default_factory=dict, repr=False)
    configs_compared: bool = False  # the baseline and a compared run both record a config

    @property
    def compared(self) -> bool:
        """Whether anything at all was compared (a per-role point, a scalar, the configs, a finding)."""
        findings = self.findings is not None and self.findings.height > 0
        return bool(self.points.height or self.scalars.height or self.configs_compared or findings)

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
        """Plain JSON: every frame as a list of row objects (NaN as null), the runs and the notes."""
        runs = [
            {"name": n, "layouts": lay, "baseline": i == 0}
            for i, (n, lay) in enumerate(zip(self.names, self.layouts, strict=True))
        ]
        body = {
            name: [{k: _plain(v) for k, v in row.items()} for row in df.to_dicts()]
            for name, df in self.frames().items()
        }
        opts = self.options
        settings = {"window": opts.window, "seed": opts.seed, "boot": opts.boot, "ci": opts.ci}
        return {"runs": runs, "settings": settings, **body, "notes": list(self.notes)}


# ---------------------------------------------------------------------------------------------------------
# Frames' schemas
# ---------------------------------------------------------------------------------------------------------
STR, FLT, INT = pl.String, pl.Float64, pl.Int64


def _cols(names: str, kind: Any) -> dict[str, Any]:
    return dict.fromkeys(names.split(), kind)


INTERVAL = {**_cols("diff ci_low ci_high", FLT), "verdict": STR}  # a difference, its interval, the verdict
SIDE_BY_SIDE = {"steps": STR, **_cols("baseline value diff", FLT)}
OVERLAP_SCHEMA = {**_cols("run layout split steps", STR), "common_steps": INT, "common": STR}
ROLES_SCHEMA = {
    **_cols("split role run", STR),
    "common_steps": INT,
    **_cols("reward_end_baseline reward_end", FLT),
    **INTERVAL,
    **_cols("ahead_from behind_from", INT),
    **_cols("paired_diff paired_ci_low paired_ci_high", FLT),
    "prompts": INT,
}
POINTS_SCHEMA = {
    **_cols("split role metric point run baseline_steps", STR),
    **SIDE_BY_SIDE,
    **INTERVAL,
    **_cols("baseline_n n", INT),
}
PAIRED_SCHEMA = {
    **_cols("split role run steps", STR),
    **_cols("prompts wins losses ties", INT),
    "mean_diff": FLT,
    **{k: v for k, v in INTERVAL.items() if k != "diff"},
}
SCALARS_SCHEMA = {**_cols("key point run", STR), **SIDE_BY_SIDE, **INTERVAL}
CONFIG_SCHEMA = _cols("key run config_baseline config_run", STR)
TEXT_SCHEMA = {**_cols("split role metric point run", STR), **SIDE_BY_SIDE}
FINDINGS_SCHEMA = {
    **_cols("kind role run status severity_baseline severity_run", STR),
    **_cols("onset_baseline onset_run", INT),
    "message": STR,
}
SERIES_SCHEMA = {
    "split": STR,
    "role": STR,
    "metric": STR,
    "run": STR,
    "baseline": pl.Boolean,
    "step": INT,
    "mean": FLT,
    "lo": FLT,
    "hi": FLT,
    "n": INT,
    "diff": FLT,
    "diff_lo": FLT,
    "diff_hi": FLT,
}


def _frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


# ---------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    """A generator seeded by ``seed`` and ``parts`` (a run index, a split, a window): each resampling has its
    own stream, so an interval does not depend on what else was computed, nor in which order."""
    words = [int(seed) & 0xFFFFFFFF]
    for p in parts:
        words.append(p & 0xFFFFFFFF if isinstance(p, int) else zlib.crc32(repr(p).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def bootstrap_means(values: np.ndarray, boot: int, rng: np.random.Generator) -> np.ndarray:
    """``boot`` bootstrap replicates of the mean of each column of ``values`` (rows: the units resampled, with
    replacement; NaN: a unit without a valid value in that column, which a replicate leaves out, so each
    column's replicate is the mean of its valid resampled values). Shape ``(boot, columns)``; NaN where a
    replicate drew no valid value.

    One count matrix (how often each unit is drawn, per replicate) serves every column: the columns of
    several roles cost one resampling, not one each."""
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n, m = x.shape
    out = np.full((boot, m), np.nan)
    if n == 0:
        return out
    valid = np.isfinite(x)
    # One product gives each replicate's sums (first m columns) and valid counts (last m): float32 holds the
    # counts exactly, and the sums to 7 digits, more than an interval's ends are shown with.
    both = np.hstack([np.where(valid, x, 0.0), valid]).astype(np.float32)
    chunk = max(1, BOOT_CELLS // n)
    offsets = np.arange(chunk, dtype=np.int64)[:, None] * n
    for b0 in range(0, boot, chunk):
        b = min(chunk, boot - b0)
        idx = rng.integers(0, n, size=(b, n)) + offsets[:b]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        prod = (counts @ both).astype(float)
        sums, hits = prod[:, :m], prod[:, m:]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b0 : b0 + b] = np.where(hits > 0, sums / np.where(hits > 0, hits, 1.0), np.nan)
    return out


def _interval(reps: np.ndarray, level: float) -> tuple[float | None, float | None]:
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)


def _verdict(lo: float | None, hi: float | None, up: str = "ahead", down: str = "behind") -> str | None:
    if lo is None or hi is None:
        return None
    if lo > 0:
        return up
    if hi < 0:
        return down
    return "tie"


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


# ---------------------------------------------------------------------------------------------------------
# One run's side of the comparison
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Side:
    index: int
    name: str
    run: Run
    steps: dict[Split, list[int]]
    per_step: pl.DataFrame | None = None
    rows: pl.DataFrame | None = None  # the samples of the windows: split, step, role, reward, kl
    text_rows: pl.DataFrame | None = None  # those of the start and end windows: split, step, role, reward, group, pkey
    wanted: dict[Split, set[int]] = field(default_factory=dict)  # every window's steps
    text_wanted: dict[Split, set[int]] = field(default_factory=dict)  # the start and end windows' steps
    windows: set[tuple[Split, tuple[int, ...]]] = field(default_factory=set)
    boots: dict[tuple, dict[str, tuple[float | None, int, np.ndarray]]] = field(default_factory=dict)


def _layouts(run: Run) -> list[str]:
    return sorted({f.layout for f in run.files if f.kind == "samples"} or {f.layout for f in run.files})


def _split_eq(split: Split) -> pl.Expr:
    return pl.col("split").is_null() if split is None else pl.col("split") == split


def _role_eq(role: str | None) -> pl.Expr:
    return pl.col("role").is_null() if role is None else pl.col("role") == role


def _only_steps(run: Run, steps: set[int]) -> Run:
    """``run`` without the sample files that hold none of ``steps`` (files whose names and footers do not tell
    their steps are kept): only the windows' files are opened."""
    keep = []
    for f in run.files:
        if f.kind == "samples" and f.readable:
            have = f.all_steps()
            if have and not steps.intersection(have):
                continue
        keep.append(f)
    return Run(root=run.root, files=keep, ctx=run.ctx)


def _steps_text(steps: Sequence[int]) -> str:
    return describe_steps({None: set(steps)}) if steps else "-"


def _load_rows(side: _Side) -> None:
    """The samples of the steps the comparison looks at closely, one row per (sample, role): ``rows`` (split,
    step, role, reward, kl) for every window, numbers only; ``text_rows`` for the start and end windows, with
    ``group`` (the prompt group as summarize finds it, for zero_adv_frac) and ``pkey`` (the prompt's identity
    across runs: its text's hash, else its group id, for pairing), which may read the prompt text."""
    group = group_key_expr(side.run, True)  # decided on the whole run: the windows' files alone may not tell
    group = pl.lit(None, dtype=pl.String) if group is None else group.cast(pl.String)
    prompt = pl.col("prompt")
    pkey = pl.coalesce(
        pl.when(prompt.is_not_null()).then(pl.lit("p:") + prompt.hash().cast(pl.String)),
        pl.lit("g:") + pl.col("group_id").cast(pl.String),
    )
    base = {"step": pl.col("step"), "split": pl.col("split")}
    side.rows = _read_steps(side, side.wanted, base, ["split", "step", "role", "reward", "kl"])
    side.text_rows = _read_steps(
        side,
        side.text_wanted,
        {**base, "group": group, "pkey": pkey},
        ["split", "step", "role", "reward", "group", "pkey"],
    )


def _read_steps(
    side: _Side, wanted: dict[Split, set[int]], carry: dict[str, pl.Expr], cols: list[str]
) -> pl.DataFrame | None:
    wanted = {s: v for s, v in wanted.items() if v}
    if not wanted:
        return None
    run = _only_steps(side.run, set().union(*wanted.values()))
    cond = None
    for split, steps in wanted.items():
        part = _split_eq(split) & pl.col("step").is_in(sorted(steps))
        cond = part if cond is None else cond | part
    [df] = run.collect(lambda: [run.numeric(carry, []).filter(cond).select(cols)])
    return df


def _window_columns(side: _Side, split: Split, steps: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per ``role/metric``: the window's values, one per sample (reward, kl) or prompt group (zero_adv_frac:
    1 where the group's valid rewards of that role are all equal, as summarize counts it), NaN where invalid."""
    columns: dict[str, np.ndarray] = {}
    in_window = pl.col("step").is_in(list(steps))
    if side.rows is not None:
        part = side.rows.filter(_split_eq(split) & in_window)
        for (role,), g in part.group_by(["role"], maintain_order=True):
            for metric in ("reward", "kl"):
                columns[f"{_role_key(role)}/{metric}"] = g[metric].fill_null(np.nan).to_numpy().astype(float)
    texts = side.text_wanted.get(split, set())
    if side.text_rows is not None and set(steps) <= texts:
        valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()
        groups = (
            side.text_rows.filter(_split_eq(split) & in_window & valid & pl.col("group").is_not_null())
            .group_by("step", "group", "role")
            .agg((pl.col("reward").min() == pl.col("reward").max()).cast(pl.Float64).alias("zero"))
            .sort("role", "step", "group", nulls_last=True)
        )
        for (role,), g in groups.group_by(["role"], maintain_order=True):
            columns[f"{_role_key(role)}/zero_adv_frac"] = g["zero"].to_numpy()
    return columns


def _bootstrap_side(side: _Side, opts: DiffOptions) -> None:
    """Every window's means and bootstrap replicates (``side.boots``). Columns of equal length, whatever their
    window and role, share one resampling of the run (a count matrix per length): each column's replicates are
    a bootstrap of its own values, and the comparisons are between runs, whose streams are independent."""
    columns: dict[tuple, np.ndarray] = {}
    for split, steps in sorted(side.windows, key=lambda w: (_split_order(w[0]), w[1])):
        for name, col in _window_columns(side, split, steps).items():
            columns[(split, steps, name)] = col
        side.boots[(split, steps)] = {}
    by_len: dict[int, list[tuple]] = {}
    for key, col in columns.items():
        by_len.setdefault(len(col), []).append(key)
    for n, keys in sorted(by_len.items()):
        reps = bootstrap_means(np.column_stack([columns[k] for k in keys]), opts.boot, _rng(opts.seed, side.index, n))
        for j, (split, steps, name) in enumerate(keys):
            col = columns[(split, steps, name)]
            side.boots[(split, steps)][name] = (_mean(col), int(np.isfinite(col).sum()), reps[:, j])


def _role_key(role: str | None) -> str:
    return "\x00" if role is None else role


# ---------------------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------------------


def diff_runs(runs: Sequence[Run], names: Sequence[str] | None = None, options: DiffOptions | None = None) -> Diff:
    """Compare ``runs[1:]`` with the baseline ``runs[0]`` (module docstring). ``names`` label the runs (default:
    each run's name, made unique). Runs with nothing in common give empty frames and a note saying why; a
    ``--split``, ``--role`` or ``--keys`` value that matches no run is a ``UsageError``."""
    opts = options or DiffOptions()
    opts.check()
    if len(runs) < 2:
        raise UsageError("diff needs at least two runs: the baseline first, then the runs to compare with it")
    labels = _labels(runs, names)
    sides = [_Side(i, labels[i], run, _steps(run, opts)) for i, run in enumerate(runs)]
    notes: list[str] = []
    _check_filters(sides, opts)
    layouts = [_layouts(s.run) for s in sides]
    for s, lay in zip(sides[1:], layouts[1:], strict=True):
        if lay != layouts[0]:
            notes.append(
                f"layouts differ: {sides[0].name} is {', '.join(layouts[0]) or '-'}, {s.name} is "
                f"{', '.join(lay) or '-'}: compared on what both have (per-role rewards and KL by step and split)"
            )
    for s in sides:
        s.per_step = _per_step(s, opts)
    base = sides[0]
    overlap_rows = [_overlap_row(base, split, None, None) for split in sorted(base.steps, key=_split_order)]
    plans: list[tuple[_Side, Split, list[int], list[str | None]]] = []
    common_steps: dict[tuple[int, Split], list[int]] = {}
    for other in sides[1:]:
        splits = [s for s in base.steps if s in other.steps]
        for only, who in ((set(base.steps) - set(other.steps), base), (set(other.steps) - set(base.steps), other)):
            if only:
                listed = ", ".join(sorted(str(s) for s in only))
                notes.append(f"split(s) {listed} only in {who.name}: not compared")
        if not splits and base.steps and other.steps:
            notes.append(f"{base.name} and {other.name} have no split in common: nothing per step to compare")
        for split in sorted(splits, key=_split_order):
            common = sorted(set(base.steps[split]) & set(other.steps[split]))
            overlap_rows.append(_overlap_row(other, split, common, base))
            where = f" in split {split}" if split is not None else ""
            if not common:
                notes.append(
                    f"{base.name} and {other.name} have no common step{where} ({base.name}: "
                    f"{_steps_text(base.steps[split])}; {other.name}: {_steps_text(other.steps[split])}): "
                    "nothing per step to compare there"
                )
                continue
            if len(common) < max(len(base.steps[split]), len(other.steps[split])):
                notes.append(
                    f"{other.name}{where}: compared with {base.name} on the {len(common)} step(s) both have "
                    f"({_steps_text(common)}; {base.name} has {_steps_text(base.steps[split])}, {other.name} has "
                    f"{_steps_text(other.steps[split])})"
                )
            roles = _common_roles(base, other, split, common, notes, where)
            common_steps[(other.index, split)] = common
            plans.append((other, split, common, roles))
            _plan_windows(base, other, split, common, roles, opts)
    for s in sides:
        _load_rows(s)
        _bootstrap_side(s, opts)
    role_rows: list[dict[str, Any]] = []
    point_rows: list[dict[str, Any]] = []
    paired_rows: list[dict[str, Any]] = []
    for other, split, common, roles in plans:
        pairs = _paired(base, other, split, tuple(common[-opts.window :]), roles, opts)
        for role in roles:
            pts, head = _compare_role(base, other, split, common, role, opts)
            point_rows += pts
            pair = pairs.get(role)
            if pair is not None:
                paired_rows.append(pair)
                head.update(
                    paired_diff=pair["mean_diff"],
                    paired_ci_low=pair["ci_low"],
                    paired_ci_high=pair["ci_high"],
                    prompts=pair["prompts"],
                )
            role_rows.append(head)
        if roles and not any(r["run"] == other.name and r["split"] == split for r in paired_rows):
            notes.append(
                f"{other.name}{' in split ' + split if split is not None else ''}: no prompt in common with "
                f"{base.name} within the same steps (same prompt text or group id): no paired comparison"
            )
    scalar_rows, scalar_notes = _scalars(sides, opts)
    notes += scalar_notes
    config_rows, config_notes = _configs(sides)
    notes += config_notes
    out = Diff(
        names=labels,
        layouts=layouts,
        overlap=_frame(overlap_rows, OVERLAP_SCHEMA),
        roles=_frame(role_rows, ROLES_SCHEMA),
        points=_frame(point_rows, POINTS_SCHEMA),
        paired=_frame(paired_rows, PAIRED_SCHEMA),
        scalars=_frame(scalar_rows, SCALARS_SCHEMA),
        config=_frame(config_rows, CONFIG_SCHEMA),
        notes=notes,
        per_step=[s.per_step if s.per_step is not None else pl.DataFrame() for s in sides],
        options=opts,
        common=common_steps,
        configs_compared=run_config(runs[0]) is not None and any(run_config(r) is not None for r in runs[1:]),
    )
    if opts.text:
        out.text = _frame(_text_rows(base, plans, opts, notes), TEXT_SCHEMA)
    if opts.findings:
        out.findings = _frame(_finding_rows(sides, opts, notes), FINDINGS_SCHEMA)
    return out


def _labels(runs: Sequence[Run], names: Sequence[str] | None) -> list[str]:
    given = list(names or [])
    if len(given) > len(runs):
        raise UsageError(f"--name given {len(given)} times for {len(runs)} runs")
    labels = given + [r.name for r in runs[len(given) :]]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def _split_order(split: Split) -> tuple:
    return (split is None, split != "train", split or "")


def _steps(run: Run, opts: DiffOptions) -> dict[Split, list[int]]:
    """The run's steps per split (names and footers), narrowed by ``--split`` and ``--steps``."""
    out = {}
    for split, steps in steps_per_split(run).items():
        if opts.splits and split not in opts.splits:
            continue
        chosen = opts.steps.select(steps)
        if chosen:
            out[split] = chosen
    return out


def _check_filters(sides: list[_Side], opts: DiffOptions) -> None:
    """A ``--split`` or ``--role`` that no run has is a usage error naming what the runs have."""
    for split in opts.splits:
        if not any(split in steps_per_split(s.run) for s in sides):
            have = sorted({str(k) for s in sides for k in steps_per_split(s.run) if k is not None})
            raise UsageError(f"--split {split!r}: the runs have split(s) {', '.join(have) or '(none)'}")
    if opts.roles:
        have = list(dict.fromkeys(r for s in sides for r in s.run.role_names()))
        for role in opts.roles:
            if role not in have:
                raise UsageError(f"--role {role!r}: the runs' roles are {', '.join(have) or '(none recorded)'}")
    if not opts.steps.unbounded and not any(s.steps for s in sides):
        raise UsageError(f"--steps {opts.steps.text}: no run has a step there")


PER_STEP_COLUMNS = ("reward_mean", "reward_std", "reward_count", "reward_nan", "kl_mean", "kl_std", "kl_count")


def _step_stats(reward: pl.Expr, kl: pl.Expr, prefix: str = "") -> list[pl.Expr]:
    """``PER_STEP_COLUMNS`` of one role's values, as summarize computes them: NaN and null left out (NaN
    counted), the standard deviation with ddof 1."""
    r, k = reward.fill_nan(None), kl.fill_nan(None)
    exprs = [
        r.mean().alias("reward_mean"),
        r.std(ddof=1).alias("reward_std"),
        r.count().cast(pl.Int64).alias("reward_count"),
        reward.is_nan().sum().cast(pl.Int64).alias("reward_nan"),
        k.mean().alias("kl_mean"),
        k.std(ddof=1).alias("kl_std"),
        k.count().cast(pl.Int64).alias("kl_count"),
    ]
    return [e.alias(prefix + e.meta.output_name()) for e in exprs]


def _per_step(side: _Side, opts: DiffOptions) -> pl.DataFrame | None:
    """Per split, role and step: the reward's and KL's mean, SD and count (``PER_STEP_COLUMNS``), the numbers
    ``summarize(run, ["split", "role", "step"])`` reports for them, by a lean query (no medians, no extremes,
    no components): the one pass over the whole run. Runs whose every sample has every role (Flink v1) are
    read in the wide view, one column per role, as summarize reads them."""
    if not side.steps:
        return None
    run = side.run
    filters = Filters(
        splits=tuple(s for s in side.steps if s is not None) if None not in side.steps else (),
        steps=opts.steps,
        roles=opts.roles,
    )
    carry = {"split": pl.col("split"), "step": pl.col("step")}
    roles = [r for r in run.role_names() if not opts.roles or r in opts.roles]
    keys = ["split", "step"]
    if roles and run.wide_roles_everywhere() and run.numeric_wide(carry, [], roles) is not None:

        def wide() -> list[pl.LazyFrame]:
            lf = apply_filters(run.numeric_wide(carry, [], roles), filters, roles_too=False)
            stats = [
                e
                for i, r in enumerate(roles)
                for e in _step_stats(pl.col(f"role:{r}:reward"), pl.col(f"role:{r}:kl"), f"{i}:")
            ]
            return [lf.group_by(keys).agg(stats)]

        [df] = run.collect(wide)
        parts = [
            df.select(
                *keys,
                pl.lit(r, dtype=pl.String).alias("role"),
                *[pl.col(f"{i}:{c}").alias(c) for c in PER_STEP_COLUMNS],
            )
            for i, r in enumerate(roles)
        ]
        out = pl.concat(parts)
    else:

        def long() -> list[pl.LazyFrame]:
            lf = apply_filters(run.numeric(carry, []), filters, roles_too=True)
            return [lf.group_by([*keys, "role"]).agg(_step_stats(pl.col("reward"), pl.col("kl")))]

        [out] = run.collect(long)
    return out.select("split", "role", "step", *PER_STEP_COLUMNS).sort("split", "role", "step", nulls_last=True)


def _overlap_row(side: _Side, split: Split, common: list[int] | None, base: _Side | None) -> dict[str, Any]:
    return {
        "run": side.name,
        "layout": ", ".join(_layouts(side.run)),
        "split": split,
        "steps": _steps_text(side.steps.get(split, [])),
        "common_steps": None if common is None else len(common),
        "common": "(baseline)" if base is None else _steps_text(common or []),
    }


def _roles_of(side: _Side, split: Split, steps: list[int]) -> list[str | None]:
    """The roles with a value on some of ``steps``, in the run's order (the null role last)."""
    if side.per_step is None or side.per_step.height == 0:
        return []
    has = (pl.col("reward_count") + pl.col("kl_count") + pl.col("reward_nan").fill_null(0)) > 0
    part = side.per_step.filter(_split_eq(split) & pl.col("step").is_in(steps) & has)
    present = list(dict.fromkeys(part["role"].to_list()))
    order = [r for r in side.run.role_names() if r in present]
    return order + [r for r in present if r not in order]


def _common_roles(
    base: _Side, other: _Side, split: Split, steps: list[int], notes: list[str], where: str
) -> list[str | None]:
    a, b = _roles_of(base, split, steps), _roles_of(other, split, steps)
    common = [r for r in a if r in b]

    def show(roles: Iterable[str | None]) -> str:
        return ", ".join("(unknown)" if r is None else r for r in roles)

    if not common:
        if a or b:
            notes.append(
                f"{base.name} and {other.name} have no role in common{where} ({base.name}: {show(a) or '-'}; "
                f"{other.name}: {show(b) or '-'}): no per-role comparison there"
            )
        return []
    for side, mine, theirs in ((base, a, b), (other, b, a)):
        only = [r for r in mine if r not in theirs]
        if only:
            notes.append(f"role(s) {show(only)}{where} only in {side.name}: not compared")
    return common


def _series(side: _Side, split: Split, role: str | None, steps: list[int], column: str) -> np.ndarray:
    """One per-step column of one role, on ``steps`` (NaN where the run has no value)."""
    assert side.per_step is not None
    part = side.per_step.filter(_split_eq(split) & _role_eq(role))
    values = dict(zip(part["step"].to_list(), part[column].to_list(), strict=True))
    return np.array([np.nan if values.get(s) is None else float(values[s]) for s in steps], dtype=float)


def _best_window(side: _Side, split: Split, role: str | None, common: list[int], window: int) -> tuple[int, ...]:
    """The ``window`` consecutive common steps where the role's per-step mean reward is highest on average
    (all of them when there are fewer); the first such window on ties."""
    y = _series(side, split, role, common, "reward_mean")
    w = min(window, len(common))
    if not np.isfinite(y).any():
        return tuple(common[-w:])
    filled = np.where(np.isfinite(y), y, 0.0)
    ok = np.isfinite(y).astype(float)
    sums = np.convolve(filled, np.ones(w), "valid")
    cnt = np.convolve(ok, np.ones(w), "valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1), -np.inf)
    i = int(np.argmax(ma))
    return tuple(common[i : i + w])


def _windows(
    base: _Side, other: _Side, split: Split, common: list[int], role: str | None, opts: DiffOptions
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per point: (the baseline's window, the other run's window)."""
    w = opts.window
    start, end = tuple(common[:w]), tuple(common[-w:])
    best = (_best_window(base, split, role, common, w), _best_window(other, split, role, common, w))
    return {"start": (start, start), "end": (end, end), "best": best}


def _plan_windows(
    base: _Side, other: _Side, split: Split, common: list[int], roles: list[str | None], opts: DiffOptions
) -> None:
    for role in roles:
        for point, (a, b) in _windows(base, other, split, common, role, opts).items():
            for side, steps in ((base, a), (other, b)):
                side.windows.add((split, steps))
                side.wanted.setdefault(split, set()).update(steps)
                if point != "best":  # zero_adv_frac and pairing: the start and the end
                    side.text_wanted.setdefault(split, set()).update(steps)


NOTHING: tuple[float | None, int, np.ndarray] = (None, 0, np.full(1, np.nan))
METRIC_WORDS = {"reward": ("ahead", "behind"), "kl": ("higher", "lower"), "zero_adv_frac": ("higher", "lower")}


def _compare_role(
    base: _Side, other: _Side, split: Split, common: list[int], role: str | None, opts: DiffOptions
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    rk = _role_key(role)
    for point, (wa, wb) in _windows(base, other, split, common, role, opts).items():
        va, vb = base.boots[(split, wa)], other.boots[(split, wb)]
        for metric in ("reward", "kl", "zero_adv_frac"):
            if point == "best" and metric == "zero_adv_frac":
                continue
            a, b = va.get(f"{rk}/{metric}", NOTHING), vb.get(f"{rk}/{metric}", NOTHING)
            if a[0] is None and b[0] is None:
                continue  # neither run has the metric there (no KL logged, no prompt groups)
            lo, hi = _interval(b[2] - a[2], opts.ci)
            row = _side_by_side(split, role, metric, point, other.name, wb, a[0], b[0])
            verdict = _verdict(lo, hi, *METRIC_WORDS[metric]) if row["diff"] is not None else None
            row.update(baseline_steps=_steps_text(wa), ci_low=lo, ci_high=hi, verdict=verdict)
            rows.append({**row, "baseline_n": a[1], "n": b[1]})
    end = next((r for r in rows if r["metric"] == "reward" and r["point"] == "end"), None)
    ahead, behind = _onsets(base, other, split, common, role, opts)
    head = {
        "split": split,
        "role": role,
        "run": other.name,
        "common_steps": len(common),
        "reward_end_baseline": end["baseline"] if end else None,
        "reward_end": end["value"] if end else None,
        "diff": end["diff"] if end else None,
        "ci_low": end["ci_low"] if end else None,
        "ci_high": end["ci_high"] if end else None,
        "verdict": end["verdict"] if end else None,
        "ahead_from": ahead,
        "behind_from": behind,
        "paired_diff": None,
        "paired_ci_low": None,
        "paired_ci_high": None,
        "prompts": None,
    }
    return rows, head


def _side_by_side(
    split: Split, role: str | None, metric: str, point: str, run: str, steps: Sequence[int], a: Any, b: Any
) -> dict[str, Any]:
    """A row of values side by side: the baseline's ``a``, the run's ``b`` and their difference."""
    diff = None if a is None or b is None else b - a
    return {
        "split": split,
        "role": role,
        "metric": metric,
        "point": point,
        "run": run,
        "steps": _steps_text(steps),
        "baseline": a,
        "value": b,
        "diff": diff,
    }


def step_z(
    mean_a: np.ndarray, sd_a: np.ndarray, n_a: np.ndarray, mean_b: np.ndarray, sd_b: np.ndarray, n_b: np.ndarray
) -> np.ndarray:
    """Welch z of ``mean_b - mean_a`` per step (a step with no spread in either run: +-inf for a difference,
    0 for none; NaN where a run has no value or a standard deviation is missing)."""
    d = mean_b - mean_a
    var = np.where(n_a > 0, np.nan_to_num(sd_a) ** 2 / np.maximum(n_a, 1), np.nan) + np.where(
        n_b > 0, np.nan_to_num(sd_b) ** 2 / np.maximum(n_b, 1), np.nan
    )
    se = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, d / np.where(se > 0, se, 1.0), np.where(d == 0, 0.0, np.sign(d) * np.inf))
    return np.where(np.isfinite(d) & np.isfinite(var), z, np.nan)


def _onsets(
    base: _Side, other: _Side, split: Split, common: list[int], role: str | None, opts: DiffOptions
) -> tuple[int | None, int | None]:
    """First common step from which B is stably ahead (behind): the doctor's ``first_sustained`` rule on the
    per-step Welch z against the interval's normal quantile."""
    cols = ("reward_mean", "reward_std", "reward_count")
    a = [_series(base, split, role, common, c) for c in cols]
    b = [_series(other, split, role, common, c) for c in cols]
    z = step_z(a[0], a[1], np.nan_to_num(a[2]), b[0], b[1], np.nan_to_num(b[2]))
    crit = NormalDist().inv_cdf(0.5 + opts.ci / 2)
    cfg = DoctorConfig()
    out = []
    for sign in (1.0, -1.0):
        i = first_sustained(sign * z, crit, persist=cfg.persist, min_run=cfg.min_segment)
        out.append(None if i is None else common[i])
    return out[0], out[1]


def _paired(
    base: _Side, other: _Side, split: Split, steps: tuple[int, ...], roles: list[str | None], opts: DiffOptions
) -> dict[str | None, dict[str, Any]]:
    """Per role, the per-prompt comparison over ``steps``: per (step, prompt) the role's mean valid reward in
    each run, the prompts both runs have paired; the mean of the differences with a bootstrap interval over
    prompts (the roles with as many prompts share one resampling)."""
    valid = pl.col("reward").is_not_null() & pl.col("reward").is_not_nan()

    def per_prompt(side: _Side) -> pl.DataFrame:
        rows = side.text_rows
        if rows is None or rows.height == 0:
            return pl.DataFrame(schema={"role": STR, "step": INT, "pkey": STR, "m": FLT})
        return (
            rows.filter(_split_eq(split) & pl.col("step").is_in(list(steps)) & valid & pl.col("pkey").is_not_null())
            .group_by("role", "step", "pkey")
            .agg(pl.col("reward").mean().alias("m"))
        )

    on = ["role", "step", "pkey"]
    joined = per_prompt(base).join(per_prompt(other), on=on, suffix="_b", nulls_equal=True).sort(on, nulls_last=True)
    diffs: dict[str | None, np.ndarray] = {}
    for role in roles:
        part = joined.filter(_role_eq(role))
        if part.height:
            diffs[role] = (part["m_b"] - part["m"]).to_numpy()
    out: dict[str | None, dict[str, Any]] = {}
    by_len: dict[int, list[str | None]] = {}
    for role, d in diffs.items():
        by_len.setdefault(len(d), []).append(role)
    for n, group in by_len.items():
        rng = _rng(opts.seed, other.index, "paired", split, steps[0], steps[-1], n)
        reps = bootstrap_means(np.column_stack([diffs[r] for r in group]), opts.boot, rng)
        for k, role in enumerate(group):
            d = diffs[role]
            lo, hi = _interval(reps[:, k], opts.ci)
            out[role] = {
                "split": split,
                "role": role,
                "run": other.name,
                "steps": _steps_text(steps),
                "prompts": len(d),
                "wins": int((d > 0).sum()),
                "losses": int((d < 0).sum()),
                "ties": int((d == 0).sum()),
                "mean_diff": float(d.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "verdict": _verdict(lo, hi),
            }
    return out


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------

_SEP = "\x00"


class _StepKeyed:
    """A view of a run's scalars whose keys are ``<step>\\x00<key>``: ``summarize_scalars`` on it gives each
    key's value *per step*, merged across shards (``__count`` weights) exactly as ``summarize --scalars``
    merges them."""

    def __init__(self, run: Run, aliases: dict[str, str]) -> None:
        key = pl.col("key").replace(aliases)
        self.scalars = run.scalars.filter(pl.col("step").is_not_null()).with_columns(
            (pl.col("step").cast(pl.String) + _SEP + key).alias("key")
        )


def scalar_steps(run: Run, aliases: dict[str, str] | None = None) -> pl.DataFrame:
    """``key, step, value``: each scalar key's merged value per step (``__count`` companions left out)."""
    table = DEFAULT_ALIASES if aliases is None else aliases
    df = summarize_scalars(_StepKeyed(run, table), aliases={})  # type: ignore[arg-type]
    parts = pl.col("key").str.split_exact(_SEP, 1)
    return df.select(
        parts.struct.field("field_1").alias("key"),
        parts.struct.field("field_0").cast(pl.Int64).alias("step"),
        pl.col("mean").alias("value"),
    ).sort("key", "step")


def _scalars(sides: list[_Side], opts: DiffOptions) -> tuple[list[dict[str, Any]], list[str]]:
    notes: list[str] = []
    frames = [scalar_steps(s.run) for s in sides]
    for i, f in enumerate(frames):
        if not opts.steps.unbounded:
            frames[i] = f.filter(opts.steps.expr())
    base_keys = set(frames[0]["key"].to_list())
    rows: list[dict[str, Any]] = []
    for side, frame in zip(sides[1:], frames[1:], strict=True):
        keys = sorted(base_keys & set(frame["key"].to_list()))
        if opts.keys:
            check_key_globs(opts.keys, keys)
            keys = [k for k in keys if any(fnmatch.fnmatchcase(k, g) for g in opts.keys)]
        if not keys:
            if base_keys or frame.height:
                notes.append(f"{sides[0].name} and {side.name} have no scalar key in common: no scalar comparison")
            continue
        a_by = {k: g for (k,), g in frames[0].filter(pl.col("key").is_in(keys)).group_by(["key"])}
        b_by = {k: g for (k,), g in frame.filter(pl.col("key").is_in(keys)).group_by(["key"])}
        for key in keys:
            a, b = a_by[key], b_by[key]
            common = sorted(set(a["step"].to_list()) & set(b["step"].to_list()))
            if not common:
                continue
            va = dict(zip(a["step"].to_list(), a["value"].to_list(), strict=True))
            vb = dict(zip(b["step"].to_list(), b["value"].to_list(), strict=True))
            for point, steps in (("start", common[: opts.window]), ("end", common[-opts.window :])):
                xa = np.array([np.nan if va[s] is None else va[s] for s in steps], dtype=float)
                xb = np.array([np.nan if vb[s] is None else vb[s] for s in steps], dtype=float)
                ra = bootstrap_means(xa, opts.boot, _rng(opts.seed, 0, "scalar", key, point, side.index))
                rb = bootstrap_means(xb, opts.boot, _rng(opts.seed, side.index, "scalar", key, point))
                lo, hi = _interval(rb[:, 0] - ra[:, 0], opts.ci)
                ma, mb = _mean(xa), _mean(xb)
                diff = None if ma is None or mb is None else mb - ma
                rows.append(
                    {
                        "key": key,
                        "point": point,
                        "run": side.name,
                        "steps": _steps_text(steps),
                        "baseline": ma,
                        "value": mb,
                        "diff": diff,
                        "ci_low": lo,
                        "ci_high": hi,
                        "verdict": _verdict(lo, hi, "higher", "lower") if diff is not None else None,
                    }
                )
    return rows, notes


# ---------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """A recorded config as ``{"a/b": value}``: nested dicts flattened; a W&B-style entry ``{"value": v,
    "desc": ...}`` is its ``v``; W&B's own ``_wandb`` entry is left out."""
    if not isinstance(config, dict):
        return {prefix.rstrip("/"): config} if prefix else {}
    if prefix and "value" in config and set(config) <= {"value", "desc"}:
        return flat_config(config["value"], prefix)
    out: dict[str, Any] = {}
    for k, v in config.items():
        if not prefix and k == "_wandb":
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_config(v, name + "/"))
        else:
            out[name] = v
    return out


def run_config(run: Run) -> dict[str, Any] | None:
    """The run's recorded config, flattened (``flat_config``), or None when it records none (or an empty one)."""
    manifest = run.manifest or {}
    config = manifest.get("config")
    return (flat_config(config) or None) if isinstance(config, dict) else None


def _show(v: Any) -> str:
    if v is _MISSING:
        return "(absent)"
    return json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v


_MISSING = object()


def _configs(sides: list[_Side]) -> tuple[list[dict[str, Any]], list[str]]:
    configs = [run_config(s.run) for s in sides]
    base = configs[0]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    missing = [s.name for s, c in zip(sides, configs, strict=True) if c is None]
    if missing and len(missing) < len(sides):
        notes.append(f"no recorded config in {', '.join(missing)}: configs compared where both have one")
    if base is None:
        return rows, notes
    for side, conf in zip(sides[1:], configs[1:], strict=True):
        if conf is None:
            continue
        for key in sorted(set(base) | set(conf)):
            a, b = base.get(key, _MISSING), conf.get(key, _MISSING)
            if a != b or (a is _MISSING) != (b is _MISSING):
                rows.append({"key": key, "run": side.name, "config_baseline": _show(a), "config_run": _show(b)})
    return rows, notes


# ---------------------------------------------------------------------------------------------------------
# Text (diversity, format adherence) and the doctor's findings
# ---------------------------------------------------------------------------------------------------------

TEXT_METRICS = ("distinct_2", "unique_frac")


def _text_rows(
    base: _Side, plans: list[tuple[_Side, Split, list[int], list[str | None]]], opts: DiffOptions, notes: list[str]
) -> list[dict[str, Any]]:
    """Diversity of each role's own texts within prompt groups (the doctor's metric, and the share of unique
    texts) and format adherence of the policy's texts, at the start and the end windows, side by side."""
    from ..errors import RunlogError
    from ..metrics.api import diversity_frame, format_frame

    cache: dict[tuple, dict[tuple[str | None, str], float | None]] = {}

    def measure(side: _Side, split: Split, steps: tuple[int, ...]) -> dict[tuple[str | None, str], float | None]:
        key = (side.index, split, steps)
        if key in cache:
            return cache[key]
        run = _only_steps(side.run, set(steps))
        only = StepRange(items=tuple((s, s) for s in steps))
        filters = Filters(splits=(split,) if split is not None else (), steps=only)
        out: dict[tuple[str | None, str], float | None] = {}
        try:
            div = diversity_frame(run, ["role"], filters=filters, split_key=False)
            for row in div.iter_rows(named=True):
                for m in TEXT_METRICS:
                    out[(row["role"], m)] = row.get(m)
            fmt = format_frame(run, opts.format_spec, [], filters=filters, split_key=False)
            if fmt.height:
                out[(None, "format_adherence")] = fmt["adherence"][0]
        except RunlogError as exc:
            notes.append(f"{side.name}: text metrics not computed: {exc}")
        cache[key] = out
        return out

    rows = []
    for other, split, common, _roles in plans:
        for point, steps in (("start", tuple(common[: opts.window])), ("end", tuple(common[-opts.window :]))):
            a, b = measure(base, split, steps), measure(other, split, steps)
            for role, metric in [k for k in a if k in b]:
                rows.append(
                    _side_by_side(split, role, metric, point, other.name, steps, a[(role, metric)], b[(role, metric)])
                )
    if not rows:
        notes.append("no texts to compare (diversity and format adherence need completion texts or messages)")
    return rows


def _finding_rows(sides: list[_Side], opts: DiffOptions, notes: list[str]) -> list[dict[str, Any]]:
    """The doctor's findings of each run (one split: ``--split`` when one is given, else the doctor's), matched
    with the baseline's by (kind, role)."""
    from .doctor import diagnose

    cfg = DoctorConfig(split=opts.splits[0] if len(opts.splits) == 1 else "", format_spec=opts.format_spec)
    if len(opts.splits) > 1:
        notes.append(f"findings: the doctor reads one split: {cfg.split or 'its default'}")
    found = []
    for s in sides:
        d = diagnose(s.run, cfg)
        by_key: dict[tuple[str, str | None], Any] = {}
        for f in d.findings:
            by_key.setdefault((f.kind, f.role), f)
        found.append(by_key)
    rows = []
    base = found[0]
    for side, mine in zip(sides[1:], found[1:], strict=True):
        for key in list(dict.fromkeys([*base, *mine])):
            a, b = base.get(key), mine.get(key)
            status = "both" if a and b else ("appears" if b else "disappears")
            rows.append(
                {
                    "kind": key[0],
                    "role": key[1],
                    "run": side.name,
                    "status": status,
                    "severity_baseline": a.severity if a else None,
                    "severity_run": b.severity if b else None,
                    "onset_baseline": a.onset_step if a else None,
                    "onset_run": b.onset_step if b else None,
                    "message": (b or a).message,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------------------
# Per-step series with bands (plots)
# ---------------------------------------------------------------------------------------------------------


def diff_series(d: Diff, metric: str = "reward") -> pl.DataFrame:
    """Per split, role, run and common step: the run's per-step mean of ``metric`` (``reward`` or ``kl``) with a
    normal confidence band (``mean +- z sd / sqrt(n)`` at ``options.ci``), and, for the compared runs, the
    difference to the baseline at that step with its band (Welch). The baseline's rows (``baseline`` true)
    cover the steps it shares with any compared run. What ``plot --diff`` draws."""
    if metric not in ("reward", "kl"):
        raise UsageError(f"diff series: metric {metric!r}: expected reward or kl")
    z = NormalDist().inv_cdf(0.5 + d.options.ci / 2)
    rows: list[dict[str, Any]] = []
    base_frame = d.per_step[0] if d.per_step else pl.DataFrame()
    if base_frame.height == 0:
        return _frame(rows, SERIES_SCHEMA)
    base_steps: dict[tuple[Split, str | None], set[int]] = {}
    for (idx, split), common in d.common.items():
        other = d.per_step[idx]
        for role in [r for r in dict.fromkeys(other.filter(_split_eq(split))["role"].to_list())]:
            a = _indexed(base_frame, split, role, metric)
            b = _indexed(other, split, role, metric)
            if not a or not b:
                continue
            base_steps.setdefault((split, role), set()).update(s for s in common if s in a)
            for s in common:
                if s not in b:
                    continue
                mb, sb, nb = b[s]
                lo, hi = _band(mb, sb, nb, z)
                diff = dlo = dhi = None
                if s in a and a[s][0] is not None and mb is not None:
                    ma, sa, na = a[s]
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
    out = _frame(rows, SERIES_SCHEMA)
    return out.sort("split", "role", pl.col("baseline").not_(), "run", "step", nulls_last=True)


def _indexed(frame: pl.DataFrame, split: Split, role: str | None, metric: str) -> dict[int, tuple]:
    part = frame.filter(_split_eq(split) & _role_eq(role))
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


def _series_row(split, role, metric, run, baseline, step, mean, lo, hi, n, diff, dlo, dhi) -> dict[str, Any]:  # noqa: ANN001, PLR0913
    return {
        "split": split,
        "role": role,
        "metric": metric,
        "run": run,
        "baseline": baseline,
        "step": step,
        "mean": mean,
        "lo": lo,
        "hi": hi,
        "n": n,
        "diff": diff,
        "diff_lo": dlo,
        "diff_hi": dhi,
    }


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
