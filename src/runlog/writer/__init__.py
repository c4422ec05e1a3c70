"""The trainer side of runlog: ``RunWriter`` writes the native layout off the training thread, and
``StatsTracker`` records metrics anywhere in a step and commits them once. See docs/writer.md.

JAX is optional and never imported here: values are recognised as JAX arrays only when the trainer has
imported JAX itself.
"""

from __future__ import annotations

from ._convert import SampleError
from .errors import QueueFullError, RunLockedError, StepOrderError, WriterClosedError, WriterError, WriterWarning
from .pending import PendingStats
from .run_writer import RunWriter
from .stats_tracker import StatsTracker

__all__ = [
    "PendingStats",
    "QueueFullError",
    "RunLockedError",
    "RunWriter",
    "SampleError",
    "StatsTracker",
    "StepOrderError",
    "WriterClosedError",
    "WriterError",
    "WriterWarning",
]
