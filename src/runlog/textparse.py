"""Safe parsing of small structured values found in text cells. Never ``eval``: data is hostile."""

from __future__ import annotations

import json
import math
import re

# A Python-repr dict of string keys to numbers, as pandas writes a dict cell to CSV: {'a': 1.0, 'b': nan}
_REPR_ITEM = re.compile(
    r"""\s*(?P<q>['"])(?P<key>(?:\\.|(?!(?P=q)).)*)(?P=q)\s*:\s*"""
    # A sign belongs to a number (or nan / inf), never to None, null, True or False.
    r"""(?P<val>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity|NaN)"""
    r"""|None|null|True|False|true|false)\s*"""
    r"""(?:,|$)"""
)


def _number(tok: str) -> float | None:
    low = tok.lower()
    if low in ("none", "null"):
        return None
    if low == "true":
        return 1.0
    if low == "false":
        return 0.0
    if low == "nan":
        return math.nan
    if low in ("inf", "infinity", "+inf", "+infinity"):
        return math.inf
    if low in ("-inf", "-infinity"):
        return -math.inf
    return float(tok)


def parse_number_dict(text: str | None) -> dict[str, float | None] | None:
    """``{"a": 1, "b": 0.5}`` or ``{'a': 1, 'b': nan}`` to a dict of floats; None when it is neither.

    Non-numeric values make the whole cell unparseable (None) rather than silently dropping a key.
    """
    if text is None:
        return None
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        out: dict[str, float | None] = {}
        for k, v in obj.items():
            if v is None or isinstance(v, (bool, int, float)):
                out[str(k)] = None if v is None else float(v)
            else:
                return None
        return out
    body = text[1:-1].strip()
    if not body:
        return {}
    out = {}
    pos = 0
    while pos < len(body):
        m = _REPR_ITEM.match(body, pos)
        if not m:
            return None
        out[m.group("key")] = _number(m.group("val"))
        pos = m.end()
    return out
