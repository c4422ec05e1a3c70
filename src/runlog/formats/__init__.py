"""On-disk layouts. Each module registers one layout with ``@register``; see ``base.py``."""

from __future__ import annotations

import importlib

from .base import Candidate, FileInfo, Layout, Problem, RunContext, get_layout, layouts

_MODULES = ("native", "flink", "trl", "jaxarc", "nemo_gym", "verifiers", "verl", "areal", "inspect_ai")
_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            try:
                importlib.import_module(f"{__name__}.{mod}")
            except ModuleNotFoundError as exc:  # TEMP while layouts are being written
                if exc.name != f"{__name__}.{mod}":
                    raise
        _loaded = True


_load_all  # noqa: B018  (re-exported for base.layouts)

__all__ = ["Candidate", "FileInfo", "Layout", "Problem", "RunContext", "get_layout", "layouts"]
