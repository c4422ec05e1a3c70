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
        mod = importlib.import_module(self.__dict__["_target"])
        # Later lookups hit the real module's attributes directly.
        self.__dict__.update(mod.__dict__)
        return mod

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)


__all__ = ["LazyModule", "pl"]

if TYPE_CHECKING:
    import polars as pl
else:
    pl = LazyModule("polars")
