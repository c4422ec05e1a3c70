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
from datetime import date, time
from typing import Any

from ..errors import UsageError

_JSON_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def json_config(config: Any) -> dict[str, Any]:
    """The config as JSON values, or a ``UsageError`` naming the first value that has none. Converted: numpy
    (and JAX) scalars to numbers, arrays to lists, ``os.PathLike`` to its path, dataclasses to dicts of their
    fields, enums to their values, tuples and sets to lists, dates, times and datetimes (numpy's
    ``datetime64`` too) to ISO text; NaN and infinities to the strings ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` (strict JSON has no such numbers). Keys must be str, int, float, bool or None, and become
    their JSON text here; two keys of one mapping with the same text (``1`` and ``"1"``) are refused."""
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
    for k, x in v.items():
        if not (k is None or isinstance(k, (str, int, float, bool))):
            raise UsageError(f"{where} has a key {k!r} of type {type(k).__name__}; config keys are str")
        text = _key_text(k)
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
    if isinstance(v, (set, frozenset)):
        items = [_json_value(x, f"{where} item") for x in v]
        with contextlib.suppress(TypeError):
            items.sort()
        return items
    if isinstance(v, (date, time)):  # a datetime is a date
        return v.isoformat()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, (np.datetime64, np.ndarray)) and v.dtype.kind == "M":
        # ISO text at the value's own unit: ``tolist()`` gives a date for days, but an int for nanoseconds
        return _json_value(np.datetime_as_string(v).tolist(), where)
    if hasattr(v, "tolist") and hasattr(v, "dtype"):  # numpy (and JAX) scalars and arrays
        try:
            return _json_value(v.tolist(), where)
        except UsageError:
            raise
        except Exception:  # noqa: BLE001 - said below, with the key
            pass
    raise UsageError(
        f"{where} is a {type(v).__name__} ({v!r:.60}), which JSON cannot hold; config values are numbers, text, "
        "bools, None, lists and dicts (numpy scalars, paths, dataclasses, enums and dates are converted)"
    )
