"""Polling a run that is still being written: its listing, what changed since the last one, and when to look
again (back-off while nothing changes, for object stores whose listings cost a request each).

The listing is the only thing read on every poll; files are opened only when they are new or changed
(``runlog.watch.live``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import storage
from ..ends import STATE_RE
from ..errors import DataError, RunlogError, RunNotFoundError
from ..run import TEMP_SUFFIXES

if TYPE_CHECKING:
    from ..storage import StorageOptions

# What identifies one version of a file: (size, stamp); the stamp changes whenever the file is rewritten.
Version = tuple[int, tuple | None]
Listing = dict[str, Version]
Lister = Callable[[], tuple[Listing, Listing]]

# upload-wandb's state file (``sinks.state.STATE_NAME``, not imported: watch needs no W&B code): hidden and whole, no
# temporary file (its own temporary is ``.new``, not one of ``TEMP_SUFFIXES``).
UPLOAD_STATE = ".runlog-wandb.json"
# A writer's lock (``locks.LOCK_FILE``): made when it opens, removed when it closes; no file of the run's data.
_LOCK = re.compile(r"^\.writer\.p\d+\.lock$")


@dataclass(frozen=True)
class Changes:
    """Run-relative paths added, rewritten (size or stamp changed) and removed between two listings."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def diff(before: Mapping[str, Version], after: Mapping[str, Version]) -> Changes:
    """What changed from ``before`` to ``after`` (sorted paths)."""
    added = tuple(sorted(p for p in after if p not in before))
    changed = tuple(sorted(p for p, v in after.items() if p in before and before[p] != v))
    removed = tuple(sorted(p for p in before if p not in after))
    return Changes(added, changed, removed)


@dataclass
class Backoff:
    """The wait before the next poll: ``interval`` after a poll that found something (or the first), then
    ``factor`` times longer after each poll that found nothing, up to ``max_interval``. A listing that failed
    (an object store unreachable for a while) counts as one that found nothing."""

    interval: float
    max_interval: float
    factor: float = 2.0
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.max_interval = max(self.max_interval, self.interval)
        self.current = self.interval

    def next(self, found: bool) -> float:
        """The delay before the next poll, after a poll that ``found`` something new or not."""
        if found:
            self.current = self.interval
        else:
            self.current = min(self.current * self.factor, self.max_interval)
        return self.current


def is_temporary(rel: str) -> bool:
    """A file a writer has not finished, as ``inspect`` decides (``run.TEMP_SUFFIXES``: ``.step_3.p0.parquet.tmp``,
    a download's ``.partial``): never read as data; one that stays is a sign of a writer killed mid-file. A
    writer's state file (``.writer.p0.json`` at the root) is not one. Other hidden names (rsync's
    ``.step_3.p0.parquet.Ab12Cd``, ``.DS_Store``) are no run file to ``inspect`` and ``doctor``, which leave them
    out without a word: no temporary file here either (watch called rsync's a leftover, and ``doctor --follow``
    failed a run that plain ``doctor`` passed)."""
    return not is_state_file(rel) and rel.rpartition("/")[2].endswith(TEMP_SUFFIXES)


def is_lock_file(rel: str) -> bool:
    """``.writer.p{process}.lock`` at the run's root: the lock a ``RunWriter`` holds while it is open. Not listed
    as a file of the run: its going away when the writer closes is no news (it was a note "removed" at every
    end), and its coming is no data for doctor to read ("no files found")."""
    return "/" not in rel and _LOCK.match(rel) is not None


def is_state_file(rel: str) -> bool:
    """``.writer.p{process}.json`` at the run's root (``runlog.ends``)."""
    return "/" not in rel and STATE_RE.match(rel) is not None


def run_lister(
    path: str | os.PathLike[str], *, layout: str | None = None, storage_options: StorageOptions | None = None
) -> Lister:
    """A lister of the run at ``path`` (a local folder or an object-store URL): each call lists it once and
    returns (data files, temporary files), each ``{run-relative path: (size, stamp)}``.
    ``RunNotFoundError`` when the run is gone."""
    from ..run import list_files

    if storage.is_url(path):
        _check_bucket(str(path), storage_options)

    def list_once() -> tuple[Listing, Listing]:
        if not storage.is_url(path) and not os.path.isdir(path):
            raise RunNotFoundError(f"{path}: the run folder is gone (deleted?)")
        _, entries = list_files(path, storage_options, prefetch=False, layout=layout)
        data: Listing = {}
        temp: Listing = {}
        for _, rel, size, _, stamp in entries:
            if not is_lock_file(rel):
                (temp if is_temporary(rel) else data)[rel] = (size, stamp)
        return data, temp

    return list_once


# How ``storage`` words a store that refused every credential it found, or found none (``remote_reason``).
NO_CREDENTIALS = "no usable credentials"


def no_credentials(exc: BaseException) -> bool:
    """Whether a listing failed for want of usable credentials: no waiting mends that (the environment of a
    running process does not change), where a store out of reach for a while comes back."""
    return isinstance(exc, DataError) and exc.reason.startswith(NO_CREDENTIALS)


def _check_bucket(url: str, storage_options: StorageOptions | None) -> None:
    """A bucket that does not exist is an error now, as for every command that reads a run once (exit 2): no
    upload of a trainer makes a bucket, so waiting for its "first object" would wait for good (a misspelt bucket
    passed a ``doctor --follow`` gate). A prefix with nothing below it yet is waited for; a store that cannot
    be reached now is left to the polls (they say so, and try again)."""
    root = storage.location(url, storage_options)
    try:
        root.store.has_below(root.key)
    except RunNotFoundError:
        raise
    except (OSError, RunlogError):
        return
