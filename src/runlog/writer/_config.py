"""A trainer's ``config`` as the strict JSON of ``run.json``: checked and converted at ``RunWriter()``, before the
run folder is made, so that a config that cannot be written is a ``UsageError`` at the call (docs/writer.md)."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import date, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..errors import UsageError

_JSON_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}
#: The seconds of one numpy ``timedelta64`` unit; months and years have no fixed length (refused), nor has the
#: generic unit of ``np.timedelta64(5)``.
_UNIT_SECONDS = {
    "W": Fraction(604_800),
    "D": Fraction(86_400),
    "h": Fraction(3_600),
    "m": Fraction(60),
    "s": Fraction(1),
    **{unit: Fraction(1, 1000**i) for i, unit in enumerate(("ms", "us", "ns", "ps", "fs", "as"), start=1)},
}
#: The most numbers a ``range`` is written as (its list); a longer one is refused rather than swelling run.json.
RANGE_ITEMS = 10_000


def json_config(config: Any) -> dict[str, Any]:
    """The config as JSON values, or a ``UsageError`` naming the first value that has none. Converted: numpy
    (and JAX) scalars to numbers, arrays to lists, ``os.PathLike`` to its path, dataclasses to dicts of their
    fields, enums to their values, tuples, sets and ranges to lists, dates, times and datetimes (numpy's
    ``datetime64`` too) to ISO text, durations (``timedelta``, numpy's ``timedelta64``) to seconds, ``Decimal``
    to a number where float64 spells it, else its text; NaN and infinities to the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (strict JSON has no such numbers). Keys must be str, int, float, bool or
    None (numpy's too), and become their JSON text here; two keys of one mapping with the same text (``1`` and
    ``"1"``) are refused."""
    if not isinstance(config, Mapping) and not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
        raise UsageError(f"config is a {type(config).__name__}; expected a mapping (or a dataclass) of settings")
    out = _json_value(config, "config")
    assert isinstance(out, dict)
    return out


def _key_text(k: Any) -> str:
    """A key as ``json.dumps`` writes it: ``1`` as ``"1"``, ``True`` as ``"true"``, ``None`` as ``"null"``, ``1.0``
    as ``"1.0"``, NaN as ``"NaN"``; a str subclass (a ``StrEnum``) as its text."""
    return str.__str__(k) if isinstance(k, str) else json.dumps(k)


def _json_mapping(v: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """Keys made text here, not by ``json.dumps`` when the manifest is written: there two keys of the same text
    (``{1: "attn", "1": "mlp"}``) were written as one, the first value silently lost."""
    out: dict[str, Any] = {}
    given: dict[str, Any] = {}  # key text -> the key that gave it
    np = sys.modules.get("numpy")
    for k, x in v.items():
        key = k.item() if np is not None and isinstance(k, np.generic) else k  # ``{np.int64(3): ...}``: as 3
        if not (key is None or isinstance(key, (str, int, float, bool))):
            raise UsageError(f"{where} has a key {k!r} of type {type(k).__name__}; config keys are str")
        text = _key_text(key)
        if text in given:
            raise UsageError(
                f"{where} has the keys {given[text]!r} and {k!r}, which are both {text!r} in JSON: one of their "
                "values would be lost; rename one"
            )
        given[text] = k
        out[text] = _json_value(x, f"{where}[{k!r}]")
    return out


def _json_value(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)  # an IntEnum or bool-like subclass as a plain int
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else "NaN" if v != v else _JSON_FLOATS[v]
    if isinstance(v, Mapping):
        return _json_mapping(v, where)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _json_value(getattr(v, f.name), f"{where}.{f.name}") for f in dataclasses.fields(v)}
    if isinstance(v, enum.Enum):
        return _json_value(v.value, where)
    if isinstance(v, os.PathLike):
        return _json_value(os.fspath(v), where)
    if isinstance(v, (list, tuple)):
        return [_json_value(x, f"{where}[{i}]") for i, x in enumerate(v)]
    if isinstance(v, range):
        if len(v) > RANGE_ITEMS:
            raise UsageError(
                f"{where} is {v!r} of {len(v):,} numbers, more than the {RANGE_ITEMS:,} written as a list; "
                "give its start, stop and step"
            )
        return list(v)
    if isinstance(v, (set, frozenset)):
        items = [_json_value(x, f"{where} item") for x in v]
        with contextlib.suppress(TypeError):
            items.sort()
        return items
    if isinstance(v, (date, time)):  # a datetime is a date
        return v.isoformat()
    if isinstance(v, timedelta):  # a duration (a process group's ``timeout``): its seconds, as W&B writes it
        return _json_value(v.total_seconds(), where)
    if isinstance(v, Decimal):
        return _decimal(v)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, (np.datetime64, np.ndarray)) and v.dtype.kind == "M":
        # ISO text at the value's own unit: ``tolist()`` gives a date for days, but an int for nanoseconds
        return _json_value(np.datetime_as_string(v).tolist(), where)
    if np is not None and isinstance(v, (np.timedelta64, np.ndarray)) and v.dtype.kind == "m":
        # seconds, as a ``timedelta``: ``tolist()`` gave an int of the value's unit for nanoseconds (5 for 5 ns,
        # written without a word) and a ``timedelta`` (refused) for microseconds and up
        if isinstance(v, np.ndarray):
            return (
                _json_value(v[()], where) if v.ndim == 0 else [_json_value(x, f"{where}[{i}]") for i, x in enumerate(v)]
            )
        return _timedelta64_seconds(np, v, where)
    if hasattr(v, "tolist") and hasattr(v, "dtype"):  # numpy (and JAX) scalars and arrays
        try:
            return _json_value(v.tolist(), where)
        except UsageError:
            raise
        except Exception:  # noqa: BLE001 - said below, with the key
            pass
    raise UsageError(
        f"{where} is a {type(v).__name__} ({v!r:.60}), which JSON cannot hold; config values are numbers, text, "
        "bools, None, lists and dicts (numpy scalars, paths, dataclasses, enums, dates, durations and decimals "
        "are converted)"
    )


def _decimal(v: Decimal) -> Any:
    """A ``Decimal`` as an int where it is one of the 64-bit range (``Decimal("3")``, ``Decimal("3E+2")``), a float
    where float64's shortest text is the same number (``Decimal("0.1")`` as 0.1), else its text
    (``"0.1000000000000000000001"``, ``"1E+400"``), so that no digit is lost: a config value is read back as what
    it was set to. NaN and infinities as floats' are."""
    if v.is_nan():
        return "NaN"
    if v.is_infinite():
        return _JSON_FLOATS[math.inf if v > 0 else -math.inf]
    exponent = v.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0 and abs(v) < 2**63:  # as a config's int of the 64-bit range
        return int(v)
    f = float(v)
    return f if math.isfinite(f) and Decimal(repr(f)) == v else str(v)


def _timedelta64_seconds(np: Any, v: Any, where: str) -> Any:
    """A numpy ``timedelta64`` as its seconds, computed exactly and rounded once (NaT as ``"NaN"``); months,
    years and the generic unit have no fixed length: refused."""
    if np.isnat(v):
        return "NaN"
    unit, count = np.datetime_data(v.dtype)
    if unit not in _UNIT_SECONDS:
        raise UsageError(
            f"{where} is {v!r}, a duration in {unit!r} units, which have no fixed length in seconds; give it in "
            "days or a finer unit"
        )
    return float(int(v.astype(np.int64)) * count * _UNIT_SECONDS[unit])
