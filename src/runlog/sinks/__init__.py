"""Sinks: send a run that runlog reads to another tool, after the fact.

``runlog.sinks.plan`` builds what would be logged (pure: polars and the render model, no W&B), and
``runlog.sinks.wandb`` logs it to Weights & Biases (``runlog upload-wandb``; docs/wandb.md). W&B is imported
only inside ``upload_wandb``, so importing this package costs nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PlanOptions", "UploadResult", "build_plan", "upload_wandb"]

_LAZY = {
    "PlanOptions": "runlog.sinks.plan",
    "build_plan": "runlog.sinks.plan",
    "UploadResult": "runlog.sinks.wandb",
    "upload_wandb": "runlog.sinks.wandb",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
