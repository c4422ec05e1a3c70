"""runlog: post-hoc analysis of RL post-training runs from raw Parquet/JSONL.

Supported public API: ``open_run`` and ``Run`` (lazy canonical frames), the on-disk format
(docs/format.md), and the error classes. Everything else is internal.
"""

from __future__ import annotations

from .errors import DataError, RunlogError, SchemaVersionError, UsageError
from .run import Run, open_run

__version__ = "0.1.0"

__all__ = ["DataError", "Run", "RunlogError", "SchemaVersionError", "UsageError", "__version__", "open_run"]
