"""One ``RunWriter`` per (run folder, process index): an exclusive lock held for the writer's lifetime.

Why: a second writer of the same process on the same folder (a trainer launched twice, an eval job pointed at
the training run) would take the live writer's files for an abandoned run's and move them out of the run
(``RunWriter._drop_old``), and the live writer would go on appending to a scalars shard that is no longer
there. So the writer takes ``flock`` on ``.writer.p{process}.lock`` before it touches anything, and a second
one is refused. The kernel releases the lock when its holder dies (SIGKILL included), so a killed writer's
lock never blocks the resume (its hidden file stays, holding the holder's pid and host for the message; the
next writer takes it over); a writer that closes removes the file, so a finished run holds none. A forked
child does not keep its parent's lock (its copy of the descriptor is closed after the fork). Where there is no
``flock`` (Windows, and some network or object-store file systems that refuse it) the writer runs without the
lock: docs/writer.md, Several processes.

Readers ask whether a process's writer is open now (``held_now``: a live writer's hidden ``.tmp`` files are in
flight, not an interrupted writer's leftovers) by taking a shared lock for an instant; a writer that opens in
that instant tries again for a moment (``RETRY_S``) before it refuses, so that a reader never refuses it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from ..locks import BUSY, LOCK_FILE, held_now, holder_of, lock_state
from .errors import RunLockedError

__all__ = ["LOCK_FILE", "ProcessLock", "held_now", "lock_state"]

# How long a writer that finds the lock taken tries again before it refuses: a reader's probe (``held_now``) holds
# it for microseconds; another writer holds it until it closes.
RETRY_S = 0.25

# The lock descriptors this process holds: closed in a forked child (without unlocking: the lock belongs to the
# open file, which the parent still holds), so that the child neither keeps the lock after its parent dies nor
# releases the parent's.
_HELD: set[int] = set()


def _forget_in_child() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class ProcessLock:
    """The lock of one (run folder, process index), taken by ``acquire``. ``reason`` says why there is none
    (no ``flock`` here, or the file system refused it); ``None`` when it is held."""

    def __init__(self, fd: int | None, path: Path, reason: str | None) -> None:
        self._fd = fd
        self._pid = os.getpid()
        self.path = path
        self.reason = reason

    @classmethod
    def acquire(cls, root: Path, process: int) -> ProcessLock:
        """Take the lock, or raise ``RunLockedError`` naming the folder and the holder's pid when another writer
        holds it."""
        path = root / LOCK_FILE.format(process=process)
        try:
            import fcntl  # noqa: F401  (whether there is flock: ``_lock_soon`` uses it)
        except ImportError:  # Windows
            return cls(None, path, "this platform has no flock")
        for _ in range(100):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                return cls(None, path, f"{path} cannot be opened ({exc.strerror or exc})")
            try:
                _lock_soon(fd)
            except OSError as exc:
                if exc.errno in BUSY:
                    holder = holder_of(fd)
                    os.close(fd)
                    raise RunLockedError(
                        f"{root}: another RunWriter of process {process} is writing this run ({holder}); two "
                        "writers of one process index on one folder would take each other's files out of the run: "
                        "close the other one, or give this one another folder or process_index"
                    ) from None
                os.close(fd)  # the file system has no flock (some network and object-store mounts)
                return cls(None, path, f"the file system refused a lock on {path} ({exc.strerror or exc})")
            if _same_file(fd, path):
                break
            os.close(fd)  # locked a file that its closing holder had just removed: take the one there now
        else:  # pragma: no cover - a writer opening and closing in a tight loop beside this one
            return cls(None, path, f"{path} kept being replaced")
        with contextlib.suppress(OSError):  # who holds it, for the message of a writer refused
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        _HELD.add(fd)
        return cls(fd, path, None)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, folder: int | None = None) -> None:
        """Remove the lock file and release the lock (idempotent). In a forked child, which does not hold it,
        nothing is done. Removed while still held: a writer that opened the file meanwhile finds, once it gets
        the lock, that the file is no longer there (``_same_file``) and takes the new one. ``folder``: a
        descriptor of the run folder, through which the file is removed wherever the folder is now (renamed
        while the writer had it open: its lock file left there would look like a killed writer's)."""
        fd, self._fd = self._fd, None
        if fd is None or os.getpid() != self._pid or fd not in _HELD:
            return
        _HELD.discard(fd)
        with contextlib.suppress(OSError):
            if folder is not None and {os.stat, os.unlink} <= os.supports_dir_fd:
                name = self.path.name
                st, there = os.fstat(fd), os.stat(name, dir_fd=folder)
                if (st.st_dev, st.st_ino) == (there.st_dev, there.st_ino):
                    os.unlink(name, dir_fd=folder)
            elif _same_file(fd, self.path):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)  # the last descriptor of the open file: the lock goes with it


def _lock_soon(fd: int) -> None:
    """``flock(LOCK_EX | LOCK_NB)``, tried again for ``RETRY_S`` while another holds it (a reader's probe lets go
    at once); raises the last ``OSError``."""
    import fcntl

    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st, here = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)
