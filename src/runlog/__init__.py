"""runlog: post-hoc analysis of RL post-training runs from raw Parquet/JSONL.

Supported public API: ``open_run`` and ``Run`` (lazy canonical frames), ``summarize(run, by)`` (the table of
``runlog summarize``), ``diversity_frame``, ``format_frame`` and ``format_per_sample`` (``runlog metrics``),
the on-disk format (docs/format.md), and the error classes. Everything else is internal. ``Run`` is data and
sits below the analysis that reads it: summarizing is a function of a run, not a method of it.
"""

from __future__ import annotations

from .errors import DataError, RunlogError, SchemaVersionError, UsageError

# Not ``typing.TYPE_CHECKING``: importing ``typing`` (re, enum) is 18 ms of the command's start in which a
# Ctrl-C, before ``runlog.__main__`` takes it over, printed Python's traceback.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .analysis.summarize import summarize
    from .analysis.texts import diversity_frame, format_frame, format_per_sample
    from .run import Run, open_run

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Run",
    "RunLockedError",
    "RunWriter",
    "RunlogError",
    "SchemaVersionError",
    "StatsTracker",
    "UsageError",
    "__version__",
    "diversity_frame",
    "format_frame",
    "format_per_sample",
    "open_run",
    "summarize",
]

# Imported on first use: the trainer-side writer, so that ``import runlog`` (and ``runlog inspect``) does
# not pay for the writer's modules; and the reader, so that the command line can set up the process
# (runlog.cli) before pyarrow and numpy load.
_LAZY = {
    "RunLockedError": "runlog.writer",
    "RunWriter": "runlog.writer",
    "StatsTracker": "runlog.writer",
    "Run": "runlog.run",
    "open_run": "runlog.run",
    "summarize": "runlog.analysis.summarize",
    "diversity_frame": "runlog.analysis.texts",
    "format_frame": "runlog.analysis.texts",
    "format_per_sample": "runlog.analysis.texts",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
