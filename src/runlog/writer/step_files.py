"""``StepFiles``: the writer's Parquet step files, encoded on a few threads, published in the order given.

Encoding a step (zstd over its text) is most of the background thread's work, and pyarrow does it without
the GIL, so a small pool encodes several steps at once while the background thread builds the next table:
the writer keeps up with a trainer whose steps are shorter than one encode. Each file is encoded under a
hidden ``.*.tmp`` name (fsynced there when ``durable``) and renamed by the background thread in the order the
steps were handed over, so a reader never sees a later step before an earlier one, nor a partial file.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .files import fsync_dir

#: Columns (and, inside ``messages``, fields) that hold long, mostly unique text: dictionary encoding (tried
#: first by default, then abandoned when the dictionary grows) only costs time on them. Prompts stay
#: dictionary-encoded (GRPO repeats each one), and so do the short repeated leaves of nested columns (role and
#: component names, a message's role and speaker, a tool's name).
UNIQUE_TEXT = frozenset({"completion", "trajectory", "exception"})
UNIQUE_TEXT_FIELDS = frozenset({"content", "reasoning", "arguments"})


def _leaves(name: str, t: pa.DataType) -> list[str]:
    """The Parquet column paths of a field (``roles.list.element.role``), as pyarrow names them."""
    if pa.types.is_struct(t):
        return [p for i in range(t.num_fields) for p in _leaves(f"{name}.{t.field(i).name}", t.field(i).type)]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _leaves(f"{name}.list.element", t.value_type)
    return [name]


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The leaves to dictionary-encode: all but the long unique text (``UNIQUE_TEXT``, ``UNIQUE_TEXT_FIELDS``)."""
    out = []
    for field in schema:
        if field.name in UNIQUE_TEXT:
            continue
        out += [p for p in _leaves(field.name, field.type) if p.rsplit(".", 1)[-1] not in UNIQUE_TEXT_FIELDS]
    return out


def encode(table: pa.Table, path: Path, durable: bool) -> int:
    """Write ``table`` as Parquet (zstd, statistics) to ``path``; fsync it when ``durable``. Returns the bytes."""
    dictionary = dictionary_columns(table.schema)
    try:
        with open(path, "wb") as f:
            pq.write_table(table, f, compression="zstd", write_statistics=True, use_dictionary=dictionary)
            size = f.tell()
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        if exc.filename is not None:
            raise
        # A full disk found while writing through the file object names no file: said with the step's file.
        final = path.with_name(path.name[1:].removesuffix(".tmp"))
        raise OSError(exc.errno, f"{exc.strerror or exc} (writing {final})", str(path)) from exc
    return size


class _Encoders:
    """A few daemon threads running encodes. Not a ``ThreadPoolExecutor``: at interpreter exit that refuses new
    work before ``atexit`` handlers run, and the writer's handler (a trainer that never called ``close()``)
    still has steps to encode then."""

    def __init__(self, threads: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None]
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"runlog-encode-{i}", daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the future
                future.set_exception(exc)


class StepFiles:
    """Parallel encoding, ordered publishing. Used by the background thread only (not thread-safe itself).

    ``submit`` publishes the files already encoded, oldest first (with ``threads`` under way it waits for the
    oldest), then starts the new file's encoding. ``publish_ready`` publishes those done without waiting (the
    background thread calls it every few milliseconds while files are under way and nothing is queued);
    ``drain`` waits for and publishes all.
    ``on_written(rows, bytes)`` is called for each published file, and ``on_published(tag)`` with the ``tag``
    that ``submit`` was given (so that the caller knows which files are on disk, not just handed over). An
    encoding error is raised by whichever of these reaches it; the files after it are not published (their
    temporary files are removed).
    """

    def __init__(
        self,
        *,
        threads: int,
        durable: bool,
        on_written: Callable[[int, int], None],
        on_published: Callable[[Any], None] | None = None,
    ) -> None:
        self.threads = max(1, int(threads))
        self.durable = durable
        self._on_written = on_written
        self._on_published = on_published
        self._pool: _Encoders | None = None
        self._inflight: collections.deque[tuple[Future[int], Path, Path, int, Any]] = collections.deque()
        self.dropped: list[Any] = []  # the tags of the files dropped unpublished (after an error)

    def submit(self, path: Path, table: pa.Table, *, tag: Any = None) -> None:
        # The step's folder and the one above it (``samples/<split>``), never further up: a run folder removed
        # under the writer is not silently made again, with later steps only (docs/writer.md, Errors).
        path.parent.parent.mkdir(exist_ok=True)
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if self._pool is None:
            self._pool = _Encoders(self.threads)
        self._publish(wait=len(self._inflight) >= self.threads)  # at most ``threads`` files under way
        future = self._pool.submit(encode, table, tmp, self.durable)
        self._inflight.append((future, tmp, path, table.num_rows, tag))

    def busy(self) -> bool:
        """Whether files are being encoded (or encoded and not yet published)."""
        return bool(self._inflight)

    def publish_ready(self) -> None:
        """Publish the files encoded so far, oldest first, up to the first one still being encoded."""
        self._publish(wait=False)

    def drain(self) -> None:
        """Wait for every file being encoded and publish it."""
        self._publish(wait=True, everything=True)

    def discard(self) -> list[Any]:
        """Drop every file under way without publishing it; return the tags of all the files dropped so far (an
        encoding error drops those after it too). For a writer whose run folder was removed or replaced: their
        temporary files are left alone, as the folder that now holds their names, if any, is not the writer's."""
        self._abandon(remove=False)
        return list(self.dropped)

    def close(self) -> None:
        """Publish what is encoded, or (after an error) remove the unpublished temporary files; stop the pool."""
        try:
            self.drain()
        finally:
            self._abandon()
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def _publish(self, *, wait: bool, everything: bool = False) -> None:
        while self._inflight and (everything or wait or self._inflight[0][0].done()):
            future, tmp, path, rows, tag = self._inflight[0]
            try:
                size = future.result()
            except BaseException:
                self._abandon()
                raise
            self._inflight.popleft()
            try:
                os.replace(tmp, path)
            except BaseException:
                self.dropped.append(tag)
                raise
            if self.durable:
                fsync_dir(path.parent)
            self._on_written(rows, size)
            if self._on_published is not None:
                self._on_published(tag)
            wait = False  # waited for the oldest; the others only if already done

    def _abandon(self, *, remove: bool = True) -> None:
        while self._inflight:
            future, tmp, _path, _rows, tag = self._inflight.popleft()
            self.dropped.append(tag)
            with contextlib.suppress(BaseException):  # the first error was raised already; this file is dropped
                future.result()
            if remove:
                with contextlib.suppress(OSError):
                    tmp.unlink()
