"""Errors the trainer-side writer raises on purpose (all are ``runlog.RunlogError``)."""

from __future__ import annotations

from ..errors import RunlogError, UsageError


class WriterError(RunlogError):
    """The background writer failed (disk full, a column it could not convert...). Raised on the next call
    or on ``close()``, chained to the original exception, so that a failure is never lost."""


class RunLockedError(UsageError):
    """Another ``RunWriter`` of the same process index is writing the same run folder (a trainer launched twice,
    an eval job pointed at the training run): the second is refused when it opens, before it touches anything."""


class WriterClosedError(UsageError):
    """A call on a ``RunWriter`` after ``close()``."""


class QueueFullError(WriterError):
    """``on_full="raise"`` and the write queue is full: the disk is slower than the trainer logs."""


class StepOrderError(UsageError):
    """A step went backwards: ``StatsTracker.commit`` with a step lower than the last one, or samples for a
    (split, step) that this writer has already written. Raised instead of silently dropping or overwriting."""


class WriterWarning(UserWarning):
    """Something the writer did that the trainer should know of, without failing: a resumed writer removing what
    the earlier run wrote for the steps it replays, an extra column written as text because its values have
    more than one type. Also kept in ``RunWriter.stats()["warnings"]``."""


class RunFolderGoneError(OSError):
    """The run folder was removed, or replaced by another of that name, while a ``RunWriter`` had it open. The
    cause of the ``WriterError`` that the next call raises: the writer stops rather than write its later steps
    into a folder that holds none of the earlier ones (or holds another run)."""
