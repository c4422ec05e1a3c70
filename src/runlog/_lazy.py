"""Import polars only when it is first used.

``runlog inspect`` on a Parquet run reads footers with pyarrow alone, and importing polars costs about as
much as reading 1,000 footers; so modules say ``from .._lazy import pl`` instead of ``import polars as pl``.
Type checkers see the real module (``TYPE_CHECKING``), so ``pl.DataFrame`` and friends keep their types.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any


class LazyModule(ModuleType):
    """A module imported on first attribute access."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_target"] = name

    def _load(self) -> ModuleType:
        mod = self.__dict__.get("_module")
        if mod is None:
            mod = self.__dict__["_module"] = importlib.import_module(self.__dict__["_target"])
        return mod

    def __getattr__(self, attr: str) -> Any:
        # Each lookup asks the real module (about 0.3 us more than a copy of its attributes would): a copy would
        # keep what the module held at first use, so that a function patched later (a test's spy, a profiler's
        # wrapper) would be the real module's and not this one's, and a test of "never called" would pass unread.
        return getattr(self._load(), attr)


__all__ = ["LazyModule", "pl"]

if TYPE_CHECKING:
    import polars as pl
else:
    pl = LazyModule("polars")
