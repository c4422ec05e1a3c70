"""The doctor's thresholds: one dataclass with documented defaults (docs/doctor.md), overridable from a TOML
file and ``--set NAME=VALUE`` pairs, with one-line errors for unknown names, wrong types and values out of
range."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from .changepoint import ShiftOptions


@dataclass
class DoctorConfig:
    """Every threshold of the doctor, with its default. docs/doctor.md explains each; ``--set NAME=VALUE``
    and ``--config FILE.toml`` override them (``DoctorConfig.from_sources``)."""

    # The split to diagnose; "" = train, else the training split (the first by name of the splits not named like
    # an evaluation: series.default_split).
    split: str = ""
    min_steps: int = 8  # fewer steps than this: trend checks are skipped (said in the notes)
    min_segment: int = 3  # shortest segment before / after a change point, in steps
    min_z: float = 4.0  # a shift must be this many robust noise units
    persist: float = 0.8  # share of the steps after a change that must stay changed
    kl_warmup: float = 0.1  # share of the first steps left out of the KL search (KL starts at 0)
    kl_ratio: float = 10.0  # new KL level / 90th percentile of the KL before the change
    kl_floor: float = 1e-4  # the least earlier KL level a jump is measured from; a KL <= 0 counts as this (log)
    reward_drop: float = 0.5  # collapse: drop of a role's mean reward, in within-step reward SDs
    stuck_min_steps: int = 20  # stuck: only judged on runs this long
    stuck_change: float = 0.1  # stuck: first vs last third moved less than this many within-step SDs
    zero_adv: float = 0.5  # zero advantage: share of prompt groups with all-equal rewards
    diversity_metric: str = "distinct_2"  # diversity column watched (docs/metrics.md)
    diversity_drop: float = 0.5  # collapse: relative drop of that metric
    format_spec: str = "think-answer-strict"  # format spec for adherence (a built-in name or a TOML file)
    format_drop: float = 0.2  # drift: absolute drop of adherence
    format_min: float = 0.5  # drift is only judged when adherence was at least this before
    component_drop: float = 0.5  # component drift: drop of a reward component's mean, in its within-step SDs
    component_jump: float = 1.0  # component shift: rise of a reward component's mean, in its within-step SDs
    component_abrupt: float = 0.5  # ... of which at least this share within min_segment steps of the onset
    component_flat: float = 0.25  # ... after a level that moved less than this share of the jump (linear fit)
    hack_rise: float = 0.5  # hacking: rise of the total reward, in within-step reward SDs
    hack_length: float = 0.5  # hacking: relative change of the completion length
    nan_error: float = 0.05  # NaN rewards (KL): share of the values above which the finding is an error
    nan_confidence: float = 0.95  # ... with this confidence (one-sided Wilson bound): a share of few values is not
    exception_rate: float = 0.25  # exception spike: failed share of a step's trajectories
    exception_error: float = 0.5  # ... above which the finding is an error

    def shift_options(self) -> ShiftOptions:
        """The change-point tuning every check passes to ``find_shift``."""
        return {"min_z": self.min_z, "min_segment": self.min_segment, "persist": self.persist}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, values: dict[str, Any], origin: str) -> DoctorConfig:
        """A copy with ``values`` set; unknown names, values of the wrong type and values out of their range
        (``allowed_range``) are usage errors."""
        defaults = dataclasses.asdict(self)
        out = {}
        for name, raw in values.items():
            if name not in defaults:
                hint = did_you_mean(name, self.names())
                raise UsageError(f"{origin}: unknown threshold {name!r}{hint}; known: {', '.join(self.names())}")
            out[name] = _coerce(type(defaults[name]), raw, f"{origin} {name}")
            _check_range(name, out[name], origin)
            _check_name(name, out[name], origin)
        new = dataclasses.replace(self, **out)
        new._origins = {**self._origins, **dict.fromkeys(out, origin)}
        return new

    @property
    def _origins(self) -> dict[str, str]:
        """Where each threshold set away from its default came from (``--set``, ``--config FILE:``): not a
        field, so that ``names`` and ``asdict`` hold thresholds only."""
        return self.__dict__.get("_origins_", {})

    @_origins.setter
    def _origins(self, value: dict[str, str]) -> None:
        self.__dict__["_origins_"] = value

    def option(self, name: str) -> str:
        """How to say threshold ``name`` and its value in an error about it found while the run is read: under
        the option the user gave it with (``--set format_spec=foo``, ``--config doctor.toml: format_spec=foo``),
        or as the default it is."""
        value = getattr(self, name)
        origin = self._origins.get(name)
        if origin is None:
            return f"{name}={value} (the default; --set {name}=... to change it)"
        return f"{origin} {name}={value}"

    @classmethod
    def from_sources(cls, config_file: str | Path | None = None, sets: Sequence[str] = ()) -> DoctorConfig:
        """Defaults, then a TOML file (top-level keys, or a ``[doctor]`` table), then ``NAME=VALUE`` pairs."""
        cfg = cls()
        if config_file is not None:
            data = _read_toml(Path(config_file))
            table = data.get("doctor", data)
            if not isinstance(table, dict):
                raise UsageError(f"--config {config_file}: [doctor] must be a table")
            cfg = cfg.replace(table, f"--config {config_file}:")
        pairs: dict[str, str] = {}
        for item in sets:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--set {item!r}: expected NAME=VALUE (e.g. --set kl_ratio=20)")
            pairs[name.strip()] = value.strip()
        return cfg.replace(pairs, "--set")


# The values each number may take, as (low, low inclusive, high, high inclusive, what); high None: unbounded. A value
# outside would crash a check (log10 of a ratio of 0, a segment of -1 step) or switch it off without a word
# (persist 1.5: no change persists; kl_warmup 1.0: every KL step left out), so it is a usage error.
_UNIT = (0.0, False, 1.0, True, "a share")
_POSITIVE = (0.0, False, None, False, "a positive number")
_RANGES: dict[str, tuple[float, bool, float | None, bool, str]] = {
    "min_steps": (2, True, None, False, "steps"),
    "min_segment": (1, True, None, False, "steps"),
    "min_z": _POSITIVE,
    "persist": _UNIT,
    "kl_warmup": (0.0, True, 1.0, False, "a share of the steps"),
    "kl_ratio": (1.0, False, None, False, "a ratio of KL levels"),
    "kl_floor": _POSITIVE,
    "reward_drop": _POSITIVE,
    "stuck_min_steps": (3, True, None, False, "steps"),
    "stuck_change": _POSITIVE,
    "zero_adv": _UNIT,
    "diversity_drop": (0.0, False, 1.0, False, "a relative drop"),
    "format_drop": _UNIT,
    "format_min": (0.0, True, 1.0, True, "a share"),
    "component_drop": _POSITIVE,
    "component_jump": _POSITIVE,
    "component_abrupt": _UNIT,
    "component_flat": _UNIT,
    "hack_rise": _POSITIVE,
    "hack_length": _POSITIVE,
    "nan_error": _UNIT,
    "nan_confidence": (0.5, True, 1.0, False, "a confidence"),
    "exception_rate": _UNIT,
    "exception_error": _UNIT,
}


def allowed_range(name: str) -> str | None:
    """The values ``name`` may take (``0 < persist <= 1``); None for a name without a range (a string)."""
    if name not in _RANGES:
        return None
    low, low_in, high, high_in, _ = _RANGES[name]
    if high is None:
        return f"{name} {'>=' if low_in else '>'} {low:g}"
    return f"{low:g} {'<=' if low_in else '<'} {name} {'<=' if high_in else '<'} {high:g}"


def _check_range(name: str, value: Any, origin: str) -> None:
    if name not in _RANGES:
        return
    low, low_in, high, high_in, what = _RANGES[name]
    ok = (value > low or (low_in and value == low)) and (high is None or value < high or (high_in and value == high))
    if not ok:
        raise UsageError(f"{origin} {name}={value:g}: out of range; allowed: {allowed_range(name)} ({what})")


def diversity_metric_names() -> list[str]:
    """The names ``diversity_metric`` may take: the diversity columns the doctor computes per step
    (docs/metrics.md; not the counts and lengths beside them, nor the compression ratios, which it does
    not compute)."""
    from ..metrics.diversity import NGRAM_COLUMNS

    return ["unique_frac", *NGRAM_COLUMNS]


def _check_name(name: str, value: Any, origin: str) -> None:
    """A ``diversity_metric`` or ``format_spec`` that names nothing is said as the thresholds are read, under
    the option the user gave (``--set format_spec=foo``; the spec's own message said ``--spec``, an option
    doctor does not have), with the names it may take, not after the run was read."""
    if name == "diversity_metric" and value not in (known := diversity_metric_names()):
        from difflib import get_close_matches

        close = get_close_matches(value, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{origin} diversity_metric={value}: not a diversity metric{hint}; known: {', '.join(known)}")
    if name == "format_spec":
        from ..metrics.format import get_spec

        try:
            get_spec(value)
        except UsageError as exc:
            # "--spec NAME: reason" (metrics/format.py, where the option is --spec): the reason, under ours.
            reason = str(exc).split(": ", 1)[-1]
            raise UsageError(f"{origin} format_spec={value}: {reason}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None


def _coerce(kind: type, raw: Any, origin: str) -> Any:
    try:
        if kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        what = {int: "an integer", float: "a number"}.get(kind, "a string")
        raise UsageError(f"{origin}: expected {what}, not {raw!r}") from None
