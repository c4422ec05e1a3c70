"""On-disk layouts. Each module registers one layout with ``@register`` (``base.py``); this package loads
them on first use (``layouts``), so that a command that reads no run imports none of them."""

from __future__ import annotations

import importlib

from ..errors import UnknownLayoutError, did_you_mean
from .base import Candidate, FileInfo, Layout, Problem, RunContext, registered

_MODULES = ("native", "flink", "trl", "jaxarc", "nemo_gym", "verifiers", "verl", "areal", "inspect_ai")


def layouts() -> list[Layout]:
    """Registered layouts in detection order."""
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")  # once: then a lookup in sys.modules
    return sorted(registered(), key=lambda lay: (lay.priority, lay.name))


def get_layout(name: str) -> Layout:
    for lay in layouts():
        if lay.name == name:
            return lay
    names = [lay.name for lay in layouts()]
    raise UnknownLayoutError(
        f"--layout: unknown layout {name!r}; known layouts: {', '.join(names)}{did_you_mean(name, names)}"
    )


__all__ = ["Candidate", "FileInfo", "Layout", "Problem", "RunContext", "get_layout", "layouts"]
