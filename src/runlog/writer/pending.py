"""``PendingStats``: a step's stats, computed on the writer's background thread, read when the trainer asks."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from .errors import WriterError


class PendingStats(Mapping[str, float]):
    """The stats of one ``StatsTracker.commit`` step, computed on the writer's background thread.

    A read-only mapping: reading it (``stats["train/loss"]``, ``dict(stats)``, ``result()``) waits for the
    background thread to compute the step, so a trainer that does not read it never waits. If computing it
    failed, reading raises ``WriterError`` (and the writer's next call does too).
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self._done = threading.Event()
        self._value: dict[str, float] | None = None
        self._error: BaseException | None = None

    def set_result(self, value: dict[str, float]) -> None:
        self._value = value
        self._done.set()

    def set_error(self, exc: BaseException) -> None:
        self._error = exc
        self._done.set()

    def ready(self) -> bool:
        """Whether the numbers are there (reading them will not wait)."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> dict[str, float]:
        """The step's ``{key: number}``, waiting up to ``timeout`` seconds (None: as long as it takes)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"stats of step {self.step} not computed within {timeout} s")
        if self._error is not None:
            raise WriterError(
                f"stats of step {self.step} failed: {type(self._error).__name__}: {self._error}"
            ) from self._error
        assert self._value is not None
        return self._value

    def __getitem__(self, key: str) -> float:
        return self.result()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.result())

    def __len__(self) -> int:
        return len(self.result())

    def __repr__(self) -> str:
        if not self.ready():
            return f"PendingStats(step={self.step}, pending)"
        return f"PendingStats(step={self.step}, {self._value if self._error is None else self._error!r})"
