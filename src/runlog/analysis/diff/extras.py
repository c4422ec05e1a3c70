"""What a diff compares beyond per-role rewards: scalars, recorded configs, texts and the doctor's findings."""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._lazy import pl
from ...run import Run
from ..check import check_key_globs
from ..doctor_config import DoctorConfig
from ..filters import Filters, StepRange
from ..scalars import DEFAULT_ALIASES, file_notes, merged_steps, valid
from .bootstrap import backed_verdict, bootstrap_means, few_units_notes, interval, rng_for, valid_count, valid_mean
from .model import DiffOptions, Split
from .sides import Side, only_steps, steps_text

if TYPE_CHECKING:
    from ..doctor import Finding


def side_by_side(
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
        "steps": steps_text(steps),
        "baseline": a,
        "value": b,
        "diff": diff,
    }


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------


def scalar_steps(run: Run, aliases: dict[str, str] | None = None) -> pl.DataFrame:
    """``key, step, value``: each scalar key's merged value per step, exactly as ``summarize --scalars`` merges
    the shards (``analysis.scalars.merged_steps``); a step whose merged value is NaN is null here, as a mean
    of no valid values (``__count`` companions left out). A step where the key has no value (its weights all
    0: a mean of nothing) is no step of the key: no row (it would count in a window it holds nothing of)."""
    table = DEFAULT_ALIASES if aliases is None else aliases
    df = merged_steps(run, aliases=table).collect().filter(pl.col("value").is_not_null())
    value = pl.when(valid("value")).then(pl.col("value")).alias("value")
    return df.select("key", "step", value).sort("key", "step")


def scalar_rows(sides: list[Side], opts: DiffOptions, notes: list[str]) -> list[dict[str, Any]]:
    """Per common scalar key (``--keys`` globs) and compared run: the start and end windows' means side by
    side, the difference with a bootstrap interval over the window's steps.

    The keys in common are those both runs log at all, whatever ``--steps``: a key that a run logs, but not
    at the steps chosen, is a key in common with no common step, and said so in a note (not as "no scalar
    key in common", which would be false)."""
    logged = [scalar_steps(s.run) for s in sides]
    # What a scalars file held that its reader could not map is in no window: said (``inspect`` alone did).
    notes += [
        f"{s.name}: {n}: in no scalar window (as in no row of summarize --scalars)"
        for s in sides
        for n in file_notes(s.run)
    ]
    step_filter = opts.steps.expr()
    frames = logged if step_filter is None else [f.filter(step_filter) for f in logged]
    base_keys = set(logged[0]["key"].to_list())
    if opts.keys:  # a glob no run's key matches is a usage error; one that a pair of runs lacks, a note
        check_key_globs(opts.keys, sorted(set().union(*(f["key"].to_list() for f in logged))), of="the runs compared")
    rows: list[dict[str, Any]] = []
    infinite: dict[tuple[str, str], list[str]] = {}  # (run, point): keys with an infinite or NaN mean
    # compared run -> (key, point, the run whose value is NaN, its NaN steps in that window)
    nan_steps: dict[str, list[tuple[str, str, str, list[int]]]] = {}
    # compared run -> (steps, steps) -> "key point" with too few steps for a verdict; the intervals beyond 0 that
    # the permutation test of the steps does not back
    few: dict[str, dict[tuple[int, int], list[str]]] = {}
    unsure: dict[str, list[str]] = {}
    for side, all_steps, frame in zip(sides[1:], logged[1:], frames[1:], strict=True):
        keys = sorted(base_keys & set(all_steps["key"].to_list()))
        if opts.keys and keys:
            chosen = [k for k in keys if any(fnmatch.fnmatchcase(k, g) for g in opts.keys)]
            if not chosen:
                globs = ", ".join(repr(g) for g in opts.keys)
                notes.append(
                    f"{sides[0].name} and {side.name}: --keys {globs} matches none of the {len(keys)} scalar key(s) "
                    "they have in common: no scalar comparison"
                )
                continue
            keys = chosen
        if not keys:
            if base_keys or all_steps.height:
                notes.append(f"{sides[0].name} and {side.name} have no scalar key in common: no scalar comparison")
            continue
        a_by = {k: g for (k,), g in frames[0].filter(pl.col("key").is_in(keys)).group_by(["key"])}
        b_by = {k: g for (k,), g in frame.filter(pl.col("key").is_in(keys)).group_by(["key"])}
        if not any(
            set(a_by[k]["step"].to_list()) & set(b_by[k]["step"].to_list()) for k in keys if k in a_by and k in b_by
        ):
            notes.append(_no_common_scalar_step(sides[0], side, keys, a_by, b_by, opts))
            continue
        for key in keys:
            if key not in a_by or key not in b_by:
                continue  # a run has no value of the key at the steps chosen
            a, b = a_by[key], b_by[key]
            common = sorted(set(a["step"].to_list()) & set(b["step"].to_list()))
            if not common:
                continue
            va = dict(zip(a["step"].to_list(), a["value"].to_list(), strict=True))
            vb = dict(zip(b["step"].to_list(), b["value"].to_list(), strict=True))
            for point, steps in (("start", common[: opts.window]), ("end", common[-opts.window :])):
                xa = np.array([np.nan if va[s] is None else va[s] for s in steps], dtype=float)
                xb = np.array([np.nan if vb[s] is None else vb[s] for s in steps], dtype=float)
                # A step whose value is NaN counts in the window (its steps) but not in its mean, as summarize
                # --scalars leaves it out of its mean: said, so that a key that went NaN is not read as fine.
                for name, held in ((sides[0].name, va), (side.name, vb)):
                    nan_at = [s for s in steps if held[s] is None]
                    if nan_at:
                        nan_steps.setdefault(side.name, []).append((key, point, name, nan_at))
                ra = bootstrap_means(xa, opts.boot, rng_for(opts.seed, 0, "scalar", key, point, side.index))
                rb = bootstrap_means(xb, opts.boot, rng_for(opts.seed, side.index, "scalar", key, point))
                lo, hi = interval(rb[:, 0] - ra[:, 0], opts.ci, valid_count(xa), valid_count(xb))
                # ±inf are values, as summarize --scalars counts them: the mean is then infinite (or NaN), the
                # difference what the means give (inf - inf: NaN), and there is no interval.
                ma, mb = valid_mean(xa), valid_mean(xb)
                unbounded = [m for m in (ma, mb) if m is not None and not math.isfinite(m)]
                if unbounded:
                    lo = hi = None
                    infinite.setdefault((side.name, point), []).append(key)
                diff = None if ma is None or mb is None else mb - ma
                word = p_value = why = None
                if diff is not None:
                    # The units are the window's steps with a finite value, as the bootstrap resamples them.
                    fa, fb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
                    units = ((fa, np.ones(len(fa))), (fb, np.ones(len(fb))))
                    rng = rng_for(opts.seed, side.index, "permute", "scalar", key, point)
                    word, p_value, why = backed_verdict(lo, hi, opts.ci, units, rng, ("higher", "lower"), (ma, mb))
                finite = (int(np.isfinite(xa).sum()), int(np.isfinite(xb).sum()))
                if why == "few":
                    few.setdefault(side.name, {}).setdefault(finite, []).append(f"{key} {point}")
                elif why == "unsure":
                    unsure.setdefault(side.name, []).append(
                        f"{key} {point}: interval [{lo:g}, {hi:g}], p = {p_value:.3g} over {finite[0]} and {finite[1]} "
                        "step(s)"
                    )
                rows.append(
                    {
                        "key": key,
                        "point": point,
                        "run": side.name,
                        "steps": steps_text(steps),
                        "baseline": ma,
                        "value": mb,
                        "diff": diff,
                        "ci_low": lo,
                        "ci_high": hi,
                        "p_value": p_value,
                        "verdict": word,
                    }
                )
    for run, by_units in few.items():
        notes += few_units_notes(f"{sides[0].name} and {run}: scalar", by_units, opts.ci, "steps with a finite value")
    for run, backed in unsure.items():
        notes.append(
            f"{sides[0].name} and {run}: scalar interval not backed by a permutation test of the window's steps at "
            f"{opts.ci:.0%} ({'; '.join(backed)}): verdict tie (a percentile bootstrap of few steps is too narrow)"
        )
    by_keys: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (run, point), inf_keys in infinite.items():
        by_keys.setdefault((run, tuple(inf_keys)), []).append(point)
    for (run, said), points in by_keys.items():
        listed = ", ".join(said[:MAX_KEYS_SAID]) + (f", ... ({len(said)} keys)" if len(said) > MAX_KEYS_SAID else "")
        notes.append(
            f"{sides[0].name} and {run}: scalar key(s) {listed} have ±inf values at the {' and '.join(points)}: "
            "their mean is infinite or NaN, as summarize --scalars shows it (null in JSON): no interval, no verdict"
        )
    for run, said_nan in nan_steps.items():
        shown = "; ".join(
            f"{key} {point} window: {name} step{'s' if len(at) > 1 else ''} {steps_text(at)}"
            for key, point, name, at in said_nan[:MAX_KEYS_SAID]
        )
        more = f"; {len(said_nan) - MAX_KEYS_SAID} more" if len(said_nan) > MAX_KEYS_SAID else ""
        notes.append(
            f"{sides[0].name} and {run}: scalar values NaN ({shown}{more}): counted in the window's steps, left "
            "out of its mean (summarize --scalars counts them in nan, not in its mean; a window of NaN only has "
            "no mean)"
        )
    return rows


MAX_KEYS_SAID = 5  # scalar keys named in a note, at most


def _no_common_scalar_step(
    base: Side,
    side: Side,
    keys: list[str],
    a_by: dict[Any, pl.DataFrame],
    b_by: dict[Any, pl.DataFrame],
    opts: DiffOptions,
) -> str:
    """The note for runs that log scalar keys in common but none of them at a common step (of ``--steps``):
    the keys (the first few), which run has no step of them at the steps chosen, else that their steps do
    not meet, and the steps each run has there."""
    listed = ", ".join(keys[:MAX_KEYS_SAID]) + (f", ... ({len(keys)} keys)" if len(keys) > MAX_KEYS_SAID else "")
    have = [sorted({s for g in by.values() for s in g["step"].to_list()}) for by in (a_by, b_by)]
    names = (base.name, side.name)
    where = "" if opts.steps.unbounded else f" in --steps {opts.steps.shown}"
    missing = [n for n, steps in zip(names, have, strict=True) if not steps]
    if missing:
        what = f"{' and '.join(missing)} {'have' if len(missing) > 1 else 'has'} no step of them{where}"
    else:
        what = f"they have no step of them in common{where}"
    shown = "; ".join(f"{n}: {steps_text(steps) if steps else 'none'}" for n, steps in zip(names, have, strict=True))
    return f"{base.name} and {side.name} both log scalar key(s) {listed}, but {what} ({shown}): no scalar comparison"


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


_MISSING = object()


def _show(v: Any) -> str:
    if v is _MISSING:
        return "(absent)"
    return json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v


def config_rows(sides: list[Side], notes: list[str]) -> list[dict[str, Any]]:
    """Per compared run with a recorded config: the flattened keys whose values differ from the baseline's."""
    configs = [run_config(s.run) for s in sides]
    base = configs[0]
    rows: list[dict[str, Any]] = []
    missing = [s.name for s, c in zip(sides, configs, strict=True) if c is None]
    if missing and len(missing) < len(sides):
        notes.append(f"no recorded config in {', '.join(missing)}: configs compared where both have one")
    if base is None:
        return rows
    for side, conf in zip(sides[1:], configs[1:], strict=True):
        if conf is None:
            continue
        for key in sorted(set(base) | set(conf)):
            a, b = base.get(key, _MISSING), conf.get(key, _MISSING)
            if a != b or (a is _MISSING) != (b is _MISSING):
                rows.append({"key": key, "run": side.name, "config_baseline": _show(a), "config_run": _show(b)})
    return rows


# ---------------------------------------------------------------------------------------------------------
# Text (diversity, format adherence) and the doctor's findings
# ---------------------------------------------------------------------------------------------------------

TEXT_METRICS = ("distinct_2", "unique_frac")


def text_rows(
    base: Side, compared: list[tuple[Side, Split, list[int]]], opts: DiffOptions, notes: list[str]
) -> list[dict[str, Any]]:
    """Diversity of each role's own texts within prompt groups (the doctor's metric, and the share of unique
    texts) and format adherence of the policy's texts, at the start and the end windows, side by side, for
    each (compared run, split, common steps) of ``compared``."""
    from ...errors import RunlogError
    from ..texts import diversity_frame, format_frame

    cache: dict[tuple[int, Split, tuple[int, ...]], dict[tuple[str | None, str], float | None]] = {}

    def measure(side: Side, split: Split, steps: tuple[int, ...]) -> dict[tuple[str | None, str], float | None]:
        key = (side.index, split, steps)
        if key in cache:
            return cache[key]
        run = only_steps(side.run, set(steps))
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
    for other, split, common in compared:
        for point, steps in (("start", tuple(common[: opts.window])), ("end", tuple(common[-opts.window :]))):
            a, b = measure(base, split, steps), measure(other, split, steps)
            for role, metric in [k for k in a if k in b]:
                rows.append(
                    side_by_side(split, role, metric, point, other.name, steps, a[(role, metric)], b[(role, metric)])
                )
    if not rows:
        notes.append("no texts to compare (diversity and format adherence need completion texts or messages)")
    return rows


def finding_rows(sides: list[Side], opts: DiffOptions, notes: list[str]) -> list[dict[str, Any]]:
    """The doctor's findings of each run (one split: ``--split`` when one is given, else the doctor's), matched
    with the baseline's by kind, role and subject (``Finding.key``)."""
    from ..doctor import diagnose

    cfg = DoctorConfig(split=opts.splits[0] if len(opts.splits) == 1 else "", format_spec=opts.format_spec)
    if len(opts.splits) > 1:
        notes.append(f"findings: the doctor reads one split: {cfg.split or 'its default'}")
    found = []
    for s in sides:
        d = diagnose(s.run, cfg)
        by_key: dict[tuple[str, str | None, str | None], Finding] = {}
        for f in d.findings:
            by_key.setdefault(f.key, f)
        found.append(by_key)
    rows = []
    base = found[0]
    for side, mine in zip(sides[1:], found[1:], strict=True):
        for key in list(dict.fromkeys([*base, *mine])):
            a, b = base.get(key), mine.get(key)
            either = b or a
            assert either is not None  # the key is the baseline's or the run's
            status = "both" if a and b else ("appears" if b else "disappears")
            rows.append(
                {
                    "kind": key[0],
                    "role": key[1],
                    "subject": key[2],  # what tells two findings of one kind and role apart (the total reward)
                    "run": side.name,
                    "status": status,
                    "severity_baseline": a.severity if a else None,
                    "severity_run": b.severity if b else None,
                    "onset_baseline": a.onset_step if a else None,
                    "onset_run": b.onset_step if b else None,
                    "message": either.message,
                }
            )
    return rows
