"""Whether a process's ``RunWriter`` holds its lock on a run folder right now: what readers ask (a live writer's
hidden ``.tmp`` files are in flight, not an interrupted writer's leftovers). The writer's side, taking and holding
the lock, is ``runlog.writer.lock``; this module imports nothing of the writer package (whose encoder imports
pyarrow), so that a reader asking it, a kept answer among them, pays no such import.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

LOCK_FILE = ".writer.p{process}.lock"
BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def held_now(root: Path, process: int) -> bool:
    """Whether a writer of ``process`` holds its lock on the run folder ``root`` right now (it is open: its
    hidden ``.tmp`` files are being written). Asked by taking a shared lock without waiting and letting it go at
    once; the lock file is never created. False where there is no lock file (no writer open, or one that ran
    without a lock), no ``flock``, or the file system refuses it: then nothing is known."""
    return lock_state(root, process) == "held"


def lock_state(root: Path, process: int) -> str:
    """``held`` (a writer of ``process`` holds its lock now), ``free`` (its lock file is there and no one holds
    it: the writer that made it is gone without closing, killed, since a closing writer removes it), or
    ``unknown`` (no lock file: no writer made one, or one closed; no ``flock``; a file system that refuses it,
    where a live writer's lock file is left unlocked; a lock file written on another host, whose lock this host
    may not see: NFS ``local_lock``, Lustre ``localflock``). As ``held_now`` asks it: a shared lock for an
    instant."""
    try:
        import fcntl
    except ImportError:  # Windows
        return "unknown"
    try:
        fd = os.open(root / LOCK_FILE.format(process=process), os.O_RDONLY)
    except OSError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        return "held" if exc.errno in BUSY else "unknown"
    try:
        holder = holder_of(fd)
    finally:
        os.close(fd)  # the shared lock goes with it
    host = holder.rpartition(" on ")[2] if " on " in holder else None
    return "free" if host == socket.gethostname() else "unknown"


def holder_of(fd: int) -> str:
    """What the lock file says of its holder (``pid 123 on host``), or that it does not say."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text if text.startswith("pid ") else "pid unknown"
