"""``RunWriter``: the few lines a trainer adds to write runlog's native layout, off the training thread.

The training thread converts only what must be converted before the call returns (``_convert.snapshot``) and
enqueues, never waiting for the device: JAX arrays are copied on their device (one asynchronous dispatch),
and moved to host on the one background thread, which also builds the Arrow tables and writes. Every file
appears whole or not at all: Parquet under a hidden ``.*.tmp`` name then ``os.replace``; JSONL lines written
with one ``write`` each; the manifest replaced atomically. docs/writer.md is the user's guide.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import json
import math
import operator
import os
import queue
import re
import stat
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from .. import schema as S
from ..errors import UsageError
from . import _config, _convert, jax_utils
from .errors import QueueFullError, RunFolderGoneError, StepOrderError, WriterClosedError, WriterError, WriterWarning
from .files import atomic_write_bytes, fsync_dir
from .lock import ProcessLock
from .pending import PendingStats
from .step_files import StepFiles

SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MANIFEST = "run.json"
# Each process's state: "open" when its writer opens, "closed" when it closes (docs/format.md, Writer state files).
STATE_FILE = ".writer.p{process}.json"
# While a writer is open, a thread of its own touches its state file this often (seconds; written in the state as
# ``heartbeat_s``): readers that cannot see its lock (no ``flock``, another host's lock over NFS) tell a live
# writer in a long step from a killed one by the file's age (``upload-wandb``), not by the age of its data files.
HEARTBEAT_S = 30
STEP_MAX = 2**63 - 1  # steps are int64 in the format (docs/format.md)
_SAMPLE_FILE = re.compile(r"^step_(\d+)\.p(\d+)\.parquet$")
_MAX_NAMED = 12  # steps named in a failure's "not written" (the rest are counted)
_SALVAGE_WAIT_S = 30.0  # how long a failure's error waits for the salvage to know what it lost (``_lost_text``)
_MAX_WARNINGS = 100  # kept for ``stats()["warnings"]``; every one is also issued as a ``WriterWarning``
_LINE_STEP = re.compile(rb'^\{"step": (\d+)[,}]')  # how this writer begins each scalars line


def _version() -> str:
    from .. import __version__

    return __version__


class RunWriter:
    """Write samples and scalars of one training process in runlog's native layout (schema v2).

    ``run_dir`` is created if needed. ``roles`` is the authoritative list of role names (written to the
    manifest; flat ``<role>_reward`` / ``<role>_kl`` columns of these roles are folded into ``roles``); when
    omitted, roles are inferred from the samples. ``process_index`` names this process's shard files
    (default: ``jax.process_index()`` when JAX is initialised, else 0); only process 0 writes ``run.json``.

    ``max_queue`` (default 32) bounds the calls in flight, i.e. queued and not yet taken by the background
    thread (each holds its rows, and the copies of its JAX arrays); ``on_full="block"`` (default) makes the
    caller wait until the background thread takes the oldest one (which, with JAX arrays, may wait for the
    device to finish the step that computes them), counted in ``stats()``; ``"raise"`` raises
    ``QueueFullError``: nothing is ever dropped. ``durable=True`` fsyncs each file and its folder before and
    after the rename, so that a power cut (not just a killed process) leaves whole files. ``encode_threads``
    (default 4) step files are encoded at once (pyarrow compresses without the GIL), and published in step
    order: a trainer whose step is shorter than one encode still does not wait. ``clock`` gives the
    unix time used for the manifest's ``created`` and each scalar line's ``time`` (inject one for reproducible
    files).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        roles: Sequence[str] | None = None,
        process_index: int | None = None,
        run_id: str | None = None,
        max_queue: int = 32,
        on_full: Literal["block", "raise"] = "block",
        durable: bool = True,
        encode_threads: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if on_full not in ("block", "raise"):
            raise UsageError(f"on_full must be 'block' or 'raise', not {on_full!r}")
        if max_queue < 1:
            raise UsageError(f"max_queue must be at least 1, not {max_queue}")
        if encode_threads < 1:
            raise UsageError(f"encode_threads must be at least 1, not {encode_threads}")
        # Absolute from the start: a trainer that changes its working directory mid-run still writes this folder.
        # Resolved too: opened through a link (``runs/latest -> exp-1``), the writer writes exp-1 whatever the link
        # names later (a second launch re-pointing ``latest`` to its own folder is no reason to stop this one).
        try:
            self.root = Path(run_dir).resolve()
        except (RuntimeError, OSError) as exc:  # a link loop: RuntimeError up to Python 3.12, OSError (ELOOP) after
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(f"{run_dir}: the run folder's path cannot be resolved ({detail})") from None
        # Checked (and converted to JSON values) before anything is created: a config that cannot be written
        # is a UsageError at the call, never a half-made run folder.
        config_json = None if config is None else _config.json_config(config)
        self.process_index = jax_utils.default_process_index() if process_index is None else _index(process_index)
        self.roles: list[str] | None = None if roles is None else _role_names(roles)
        self.durable = durable
        self.on_full = on_full
        self._clock = clock
        self._pid = os.getpid()
        # The caller's lock may be held while blocking on a full queue, so the background thread never takes
        # it: its counters have their own lock.
        self._lock = threading.Lock()
        self._bg_lock = threading.Lock()
        # Held by a caller from its last look at ``_error`` to the end of its ``_put`` (``_put``), and taken once by
        # the background thread when it fails (``_quiesce``): from then on, no call's data can reach the queue
        # unseen, so the failure knows every row it lost (and so which steps it cannot write whole) before it
        # writes what came before. Never held while waiting for anything but queue space.
        self._gate = threading.Lock()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=max_queue)
        self._pending: dict[str, tuple[int, int]] = {}  # split -> (step, rows so far), not yet written
        self._sealed: dict[str, set[int]] = {}  # split -> steps already handed to the writer thread
        self._flushed: set[tuple[str, int]] = set()  # of those, the (split, step) that flush() sealed
        self._closed = False
        self._error: BaseException | None = None
        self._error_reported = False
        # Something logged is not on disk because of ``_error``: a step or line dropped, or a logging call refused.
        # A run folder renamed or moved with nothing of it lost is no failure of the run (``_close``).
        self._lost = False
        # What was logged and is not on disk yet, so that a failure names every step it lost (``_unwritten_text``),
        # not only those the background thread held when it found the failure: the (split, step) sample files not
        # published yet, with the rows logged for them, and the scalars lines not written yet by step (a count: a
        # step may have several lines). Both shrink as the writes land; a logging call refused by the writer's
        # error is added (its data is lost too). Guarded by ``_bg_lock``, as are the rows of each file published,
        # and the rows of the calls refused by the error by (split, step) (kept when the step's file is published:
        # they are not in it).
        self._unwritten_samples: set[tuple[str, int]] = set()
        self._unwritten_rows: dict[tuple[str, int], int] = {}  # the rows of each of ``_unwritten_samples``
        self._unwritten_lines: dict[int, int] = {}
        self._file_rows: dict[tuple[str, int], int] = {}
        self._refused_rows: dict[tuple[str, int], int] = {}
        self._gone_parts: tuple[RunFolderGoneError, str, str] | None = None  # ``_stop_for_folder``'s, for ``close``
        self._stats = {
            "calls": 0,
            "sample_calls": 0,
            "scalar_calls": 0,
            "commit_calls": 0,
            "rows_queued": 0,
            "queue_full": 0,
            "queue_waits": 0,
            "queue_wait_s": 0.0,
            "max_depth": 0,
            "caller_s": 0.0,
            "files_written": 0,
            "rows_written": 0,
            "bytes_written": 0,
            "scalar_lines": 0,
            "background_s": 0.0,
            "device_wait_s": 0.0,
        }
        self._warnings: list[str] = []
        # Steps going backwards are kept (a file or line of their own, nothing overwritten) and said once:
        # the highest step logged so far of each split's samples, and of each scalar key (docs/writer.md).
        self._max_sample_step: dict[str, int] = {}
        self._max_key_step: dict[str, int] = {}
        self._said_order: set[str] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            # (a bare FileExistsError would name neither the problem nor the fix)
            where = next((p for p in (self.root, *self.root.parents) if p.exists()), self.root)
            raise UsageError(
                f"{where} is a file, not a folder: the run folder {self.root} cannot be made there"
            ) from None
        # The folder this writer writes: the background thread checks that ``root`` still names it before each
        # step file and scalars line (``_check_folder``). The open descriptor keeps its inode from being reused
        # by a folder made in its place after a removal (file systems hand freed inode numbers out again).
        self._root_id = _folder_id(self.root)
        self._root_fd: int | None = None
        # Before anything is touched: a second writer of this process on this folder is refused (``lock``), so that
        # it never takes the live writer's files for an abandoned run's.
        self._run_lock = ProcessLock.acquire(self.root, self.process_index)
        if self._run_lock.reason is not None and sys.platform != "win32":
            self._warn(f"no lock against a second writer of process {self.process_index}: {self._run_lock.reason}")
        try:
            self._root_fd = _open_folder(self.root)
            self._remove_own_leftovers()
            self.manifest = self._initial_manifest(name, config_json, run_id)
            self._write_manifest()
            self._write_state()  # "open": this process writes the run, from now on
        except BaseException:
            self._run_lock.release(self._root_fd)
            self._close_folder()
            raise
        self._scalars_fd: int | None = None
        # What a resumed writer found of an earlier writer of this process, read once on the background thread
        # before its first item (``_scan_old``): its scalars shard (the bytes it holds, the highest step among
        # them) and its sample files by split. The first item decides where the resumed run starts: when its
        # step is up to the highest old step, the old lines and files of that step and later are taken out
        # (``_drop_old``); later items never take anything out (docs/writer.md, Resuming). -1: nothing old.
        self._scanned = False
        self._resume_decided = False
        self._old_scalars_bytes = 0
        self._old_scalars_max = -1
        self._last_scalar_step = -1
        self._dropped_scalar_steps: list[int] = []
        self._superseded: Path | None = None  # where a resume moves the earlier run's data (_superseded_dir)
        self._old_samples: dict[str, set[int]] = {}
        self._old_max = -1
        self._own_files: set[tuple[str, int]] = set()  # (split, step) files this writer has handed to encoding
        self._published: set[tuple[str, int]] = set()  # (split, step) files this writer has on disk (renamed)
        self._buffers: dict[str, tuple[int, list[pa.Table]]] = {}
        # Items taken off the queue by a failure (``_quiesce``), handled (dropped) before the queue's next ones.
        self._backlog: collections.deque[tuple[Any, ...]] = collections.deque()
        self._finishing = False  # set by ``_finish``: a failure from then on salvages nothing more
        # Set once a failure's salvage is done (``_safely``): from then on the steps not written are known, and the
        # error names them (``_lost_text``), not steps the salvage was still about to write.
        self._salvaged = threading.Event()
        self._files = StepFiles(
            threads=encode_threads, durable=durable, on_written=self._written, on_published=self._on_published
        )
        self._thread = threading.Thread(target=self._run, name=f"runlog-writer-p{self.process_index}", daemon=True)
        self._thread.start()
        # A thread of its own, not the writer's: that one may wait for the device (a JAX value of a long step) or
        # a slow disk for longer than a reader's grace, and a live writer would look killed.
        self._beat_stop = threading.Event()
        self._beat_failed = False
        self._beat = threading.Thread(
            target=self._heartbeat, name=f"runlog-writer-beat-p{self.process_index}", daemon=True
        )
        self._beat.start()
        # A trainer that forgets close() (or dies of an exception) still gets its queued data written.
        atexit.register(self._close_at_exit)
        # A multiprocessing child (fork, forkserver) ends with ``os._exit``: no atexit hook runs there, but
        # multiprocessing's own finalizers do.
        self._finalizer: Any = None
        if "multiprocessing" in sys.modules:
            import multiprocessing.util

            self._finalizer = multiprocessing.util.Finalize(None, self._close_at_exit, exitpriority=100)

    # -- public API ---------------------------------------------------------------------------------------
    def log_samples(self, step: int, samples: Any, split: str = "train") -> None:
        """Queue the samples of one step (rows of trajectories) for writing.

        Several calls for the same (split, step) are appended: the step is written as one file when a
        later step of that split is logged, on ``flush()`` or on ``close()``. Logging a step of a split
        that this writer has already written raises ``StepOrderError`` (a file on disk is always a whole
        step); a step lower than one already logged for the split is written as its own file, and said once
        with a ``WriterWarning``. The writer takes the rows: do not mutate row dicts after the call (numpy
        columns, and the numpy arrays among the values of a list or object-array column, are copied; JAX arrays
        are copied on their device, so they may be donated or overwritten once the call returns).
        No rows (``[]``) is the same as ``{"reward": []}``: a step with no rows. A call refused with
        ``QueueFullError`` leaves no trace. Never waits for the device.
        """
        t0 = time.perf_counter()
        step = _step(step)
        if not isinstance(split, str) or not SPLIT_RE.match(split):
            raise UsageError(f"split {split!r} is not a valid folder name (letters, digits, '_', '-', '.')")
        payload, n, columns = _convert.snapshot(samples)
        if "reward" not in columns:
            if n:
                raise _convert.SampleError("samples have no 'reward' column (required; null where a trajectory failed)")
            # No rows (``[]``, ``{}``, an empty table): the same as ``{"reward": []}``, a step with no rows.
            payload = ({"reward": []}, None)
        else:
            # What would fail on the writer's thread, checked here (docs/writer.md, Errors).
            _convert.check_call(payload[0], columns, step=step, split=split, roles=self.roles)
        with self._lock:
            self._check(logged=(split, step), rows=n)
            pending = self._pending.get(split)
            # The previous step of this split is sealed by the same queue item as these rows, and this
            # writer's bookkeeping changes only once the item is queued: a call refused (QueueFullError,
            # StepOrderError) leaves no trace, and a retry gets the same offsets and sample ids.
            seal = pending[0] if pending is not None and pending[0] != step else None
            if step in self._sealed.get(split, ()):
                if (split, step) in self._flushed:
                    raise StepOrderError(
                        f"samples for {split} step {step} were already written by this writer "
                        f"({self._file(split, step)}): flush() wrote the step with the rows logged until then, and "
                        "a step is one file, never added to; log all of a step's rows before calling flush()"
                    )
                raise StepOrderError(
                    f"samples for {split} step {step} were already written by this writer "
                    f"({self._file(split, step)}); log each step's rows before moving to the next step"
                )
            offset = pending[1] if pending is not None and seal is None else 0
            with self._logging((split, step), rows=n):
                self._put(("samples", split, step, offset, payload, seal, n))
            last = self._max_sample_step.get(split, -1)
            if step < last:
                self._say_backwards(
                    f"samples:{split}",
                    f"{split} samples of step {step} logged after step {last}: the steps of {split} went "
                    f"backwards (step {step} is written as a file of its own, nothing is overwritten)",
                )
            else:
                self._max_sample_step[split] = step
            if seal is not None:
                self._sealed.setdefault(split, set()).add(seal)
            self._pending[split] = (step, offset + n)
            self._stats["calls"] += 1
            self._stats["sample_calls"] += 1
            self._stats["rows_queued"] += n
            self._stats["caller_s"] += time.perf_counter() - t0

    def log_scalars(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Queue one line of ``scalars.p{process}.jsonl``: ``{"step", "time", **metrics}``.

        Nested dicts are flattened with ``/``; values are numbers (numpy and JAX scalars included: JAX values
        are copied on their device and moved to host by the background thread, so the call never waits for
        the device). ``time`` is the clock at the call, not at the write. A step lower than an earlier line's,
        and a key logged again at a step (readers keep its later value), are written and said once each with a
        ``WriterWarning``.
        """
        t0 = time.perf_counter()
        step = _step(step)
        if not isinstance(metrics, Mapping):
            raise UsageError(
                f"metrics must be a mapping of scalar key to number ({{'loss': 0.5}}), not a {type(metrics).__name__}"
            )
        record: dict[str, Any] = {"step": step, "time": self._clock()}
        keys: list[str] = []
        arrays: list[Any] = []
        flat = _convert.flatten_metrics(metrics)
        _convert.check_names(flat, "scalar key")
        for k, v in flat.items():
            if k in ("step", "time"):
                raise UsageError(f"scalar key {k!r} is reserved (the writer sets it)")
            if not k or k[0] == "/" or k[-1] == "/" or "//" in k:
                # '' and 'loss/' name no metric: readers, plots and W&B panels would show an empty name
                raise UsageError(f"scalar key {k!r} has an empty name or '/'-separated part")
            if jax_utils.is_jax_array(v):
                if v.size != 1:
                    raise UsageError(f"scalar {k!r} is a JAX array of shape {tuple(v.shape)}; scalars are numbers")
                if v.dtype.kind not in "fiubV":  # complex (its dtype is known without a transfer)
                    raise UsageError(f"scalar {k!r} is a JAX array of {v.dtype}; scalars are real numbers")
                keys.append(k)
                arrays.append(v)
                record[k] = None  # filled on the background thread, in this place of the line
            else:
                record[k] = _convert.scalar_value(k, v, step)
        fetch = (keys, jax_utils.DeviceFetch(arrays)) if arrays else None
        with self._lock:
            self._check(logged=step)
            with self._logging(step):
                self._put(("scalars", record, fetch))
            self._stats["calls"] += 1
            self._stats["scalar_calls"] += 1
            self._stats["caller_s"] += time.perf_counter() - t0

    def _log_stats(self, step: int, compute: Callable[[], dict[str, float]], *, write: bool) -> PendingStats:
        """Queue ``compute`` (a ``StatsTracker`` step: host copies, reduction, rendering) for the background
        thread and, when ``write``, its result as one scalars line. The line's ``time`` is the clock now."""
        pending = PendingStats(step)
        with self._lock:
            self._check(logged=step if write else None)
            with self._logging(step if write else None):
                self._put(("stats", step, self._clock(), compute, pending, write))
            self._stats["calls"] += 1
            self._stats["commit_calls"] += 1
        return pending

    def flush(self) -> None:
        """Write every pending step and wait until everything logged so far is on disk."""
        with self._lock:
            self._check(logging=False)
            for split in list(self._pending):
                self._flushed.add((split, self._seal(split)))
            done = threading.Event()
            self._put(("sync", done), force_block=True)
        done.wait()
        with self._lock:
            self._check(logging=False)

    def close(self) -> None:
        """Write everything pending and stop the background thread, then mark this process's state file
        (``.writer.p{process}.json``) closed: readers tell a finished run from a killed one. Idempotent; raises a
        background error that no earlier call has reported."""
        self._close("close")

    def _close(self, how: str, exception: BaseException | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._error is None:
                for split in list(self._pending):
                    self._seal(split)
            self._put(("stop",), force_block=True)
        self._thread.join()
        self._beat_stop.set()  # before the closed state: a touch after it would move its end time
        self._beat.join()
        atexit.unregister(self._close_at_exit)
        if self._finalizer is not None:
            self._finalizer.cancel()
        if self._gone_parts is not None:
            # Said again with every step lost: the message at the failure named what the writer held then, and
            # calls made since (or still queued) lost their data too; the state file and close() say it all.
            self._error = self._folder_error(*self._gone_parts)
        # (a state file written by path would make a removed folder again, or go into another run's folder put in
        # its place; a folder renamed or moved gets it, through the descriptor held on it: there it is not "killed")
        gone = isinstance(self._error, RunFolderGoneError) or self._folder_gone() is not None
        # A folder renamed or moved (archived after the last flush, say) with every logged step on disk there is no
        # failure: its state is closed without an error (readers would say "what it had not written is lost") and
        # names where the run was written (``moved_from``), and close() does not raise.
        harmless = False
        try:
            moved = gone and _AT_SUPPORTED and self._held_folder()[0] == "moved"
            harmless = moved and not self._lost and (self._error is None or isinstance(self._error, RunFolderGoneError))
            if not gone or moved:
                self._write_state(how, exception, in_folder=moved, moved=harmless)
        finally:
            # the folder may be written by another writer of this process from now on
            self._run_lock.release(self._root_fd)
            self._close_folder()
        if not gone and self.process_index != 0 and not (self.root / MANIFEST).exists():
            self._warn(
                f"{self.root} has no {MANIFEST}: only process 0 writes it, and this process (index "
                f"{self.process_index}) wrote here without it; readers see no roles, name or config for this run"
            )
        if self._error is not None and not self._error_reported and not harmless:
            self._error_reported = True
            raise WriterError(self._error_text(stopped=False)) from self._error

    def stats(self) -> dict[str, Any]:
        """Counters: accepted calls (``calls``: every ``log_samples``, ``log_scalars`` and ``commit``; and each
        kind: ``sample_calls``, ``scalar_calls``, ``commit_calls``), rows, calls refused with ``QueueFullError``
        (``queue_full``), queue waits and their seconds, the deepest the queue has been (``max_depth``), caller
        seconds, files, bytes, background seconds and, of those, the seconds spent waiting for JAX arrays to
        reach the host (``device_wait_s``); ``warnings``: what the writer warned about (``WriterWarning``).
        ``queue_waits > 0`` or ``queue_full > 0`` means the background thread (the disk, or the device it waits
        for) did not keep up."""
        with self._lock, self._bg_lock:
            out: dict[str, Any] = dict(self._stats)
            out["warnings"] = list(self._warnings)
        out["queue_size"] = self._queue.qsize()
        out["max_queue"] = self._queue.maxsize
        out["process_index"] = self.process_index
        out["error"] = None if self._error is None else f"{type(self._error).__name__}: {self._error}"
        return out

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.close()
            return
        # ``sys.exit(0)`` in the block ends the program normally: the writer closed as by ``close()``.
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            self.close()
            return
        # The trainer's exception propagates; a failure of the writer's own is added to it, not put in its place.
        try:
            self._close("exception", exc)
        except WriterError as err:
            exc.add_note(f"runlog: {self!r} also failed while closing: {err}")
            print(f"runlog: RunWriter({self.root}) failed while closing: {err}", file=sys.stderr)

    def __repr__(self) -> str:
        return f"RunWriter({str(self.root)!r}, process_index={self.process_index}, closed={self._closed})"

    # -- caller-side helpers (hold self._lock) -------------------------------------------------------------
    def _check(self, *, logging: bool = True, logged: tuple[str, int] | int | None = None, rows: int = 0) -> None:
        """Raise the writer's error, or ``WriterClosedError``. ``logging``: the call logs data (refused now: what
        it logs is not written, so the writer's state says it failed); ``logged``: what it logs, (split, step) of
        samples (and their ``rows``) or the step of a scalars line, named among the steps not written."""
        if self._error is not None:
            if logged is not None and (rows > 0 or not isinstance(logged, tuple)):  # a call of no rows loses none
                with self._bg_lock:
                    self._add_unwritten(logged, rows)
                    self._add_refused(logged, rows)
            self._refuse(logging=logging)
        if self._closed:
            raise WriterClosedError(f"{self!r} is closed")

    def _refuse(self, *, logging: bool = True) -> None:
        """Raise the writer's error for a call it refuses (its data, if any, counted as not written already)."""
        assert self._error is not None
        self._error_reported = True
        self._lost = self._lost or logging
        raise WriterError(self._error_text(stopped=True)) from self._error

    def _error_text(self, *, stopped: bool) -> str:
        assert self._error is not None
        if isinstance(self._error, RunFolderGoneError):
            return str(self._error)  # says what is lost and that the writer has stopped
        text = f"background writer failed: {type(self._error).__name__}: {self._error}"
        lost = self._lost_text()
        if stopped:
            text += "; the writer has stopped: " + (f"not written: {lost}, and " if lost else "")
            text += "nothing more is written (what was written before the failure was found stays: see stats())"
        elif lost:
            text += f"; not written: {lost}"
        return text

    def _lost_text(self) -> str:
        """``_unwritten_text`` of a failure other than the folder's (a full disk, a column that cannot be
        written): every logged step whose samples or scalars lines did not reach the disk, as the folder's
        failure names them, once the salvage of what came before the failure is done (waited for, up to
        ``_SALVAGE_WAIT_S``; past that, what is not written so far, said so)."""
        settled = self._salvaged.wait(_SALVAGE_WAIT_S)
        lost = self._unwritten_text(rows=True)
        if lost and not settled:
            lost += " (so far: what was logged before the failure is still being written)"
        return lost

    @contextlib.contextmanager
    def _logging(self, logged: tuple[str, int] | int | None, rows: int = 0) -> Iterator[None]:
        """Count ``logged`` (``_check``; samples with their ``rows``) as not written until its write lands, from
        before the item is queued (the background thread may write it before this call returns); a call refused
        (the queue full) leaves no trace. A call that the writer's failure overtook between ``_check`` and the
        queue (``_Late``) is refused as ``_check`` refuses it: its data counted as not written."""
        if logged is None:
            yield
            return
        with self._bg_lock:
            new = logged not in self._unwritten_samples
            self._add_unwritten(logged, rows)
        try:
            yield
        except _Late:
            with self._bg_lock:
                self._add_refused(logged, rows)
            self._refuse()
        except BaseException:
            with self._bg_lock:
                if isinstance(logged, tuple):
                    if new:
                        self._unwritten_samples.discard(logged)
                        self._unwritten_rows.pop(logged, None)
                    elif logged in self._unwritten_rows:
                        self._unwritten_rows[logged] -= rows
                else:
                    self._line_written(logged)
            raise

    def _add_unwritten(self, logged: tuple[str, int] | int, rows: int = 0) -> None:
        """(holds ``_bg_lock``)"""
        if isinstance(logged, tuple):
            self._unwritten_samples.add(logged)
            self._unwritten_rows[logged] = self._unwritten_rows.get(logged, 0) + rows
        else:
            self._unwritten_lines[logged] = self._unwritten_lines.get(logged, 0) + 1

    def _add_refused(self, logged: tuple[str, int] | int, rows: int) -> None:
        """(holds ``_bg_lock``) The rows of a samples call refused by the writer's error: never in a file, even one
        of their step published since (``_unwritten_text``: a file that lacks rows logged for its step)."""
        if isinstance(logged, tuple):
            self._refused_rows[logged] = self._refused_rows.get(logged, 0) + rows

    def _line_written(self, step: int) -> None:
        """(holds ``_bg_lock``)"""
        left = self._unwritten_lines.get(step, 0) - 1
        if left > 0:
            self._unwritten_lines[step] = left
        else:
            self._unwritten_lines.pop(step, None)

    def _unwritten_text(self, *, rows: bool = False) -> str:
        """Every step logged and not on disk: ``train step 0, train step 1 (their samples) and the scalars of
        steps 0-2``; past ``_MAX_NAMED`` sample steps, the rest are counted. ``rows``: with the rows of each step,
        ``the samples of train step 1 (6 rows) and eval step 1 (2 rows), and the scalars of step 1`` (of a step
        whose file is on disk, the rows of the calls refused after it: ``train step 0 (2 rows refused; its file
        holds the 4 logged before)``: the rows of those calls, kept apart from the others, so that a publication
        racing a refusal loses none of them)."""
        with self._bg_lock:
            refused = {tag: n for tag, n in self._refused_rows.items() if n}
            on_disk = {tag: (n, self._file_rows.get(tag, 0)) for tag, n in refused.items() if tag in self._published}
            counts = {
                tag: self._unwritten_rows.get(tag, 0) for tag in self._unwritten_samples if tag not in self._published
            }
            lines = sorted(self._unwritten_lines)
        samples = sorted({*counts, *on_disk})
        scalars = f"the scalars of step{'s' if len(lines) > 1 else ''} {_steps_text(lines, most=_MAX_NAMED)}"
        if not rows:
            parts = []
            if samples:
                listed = ", ".join(f"{split} step {step}" for split, step in samples[:_MAX_NAMED])
                if len(samples) > _MAX_NAMED:
                    listed += f" and {len(samples) - _MAX_NAMED} more, {len(samples)} split steps in all"
                parts.append(f"{listed} ({'its' if len(samples) == 1 else 'their'} samples)")
            if lines:
                parts.append(scalars)
            return " and ".join(parts)

        def one(tag: tuple[str, int]) -> str:
            if tag in on_disk:
                n, held = on_disk[tag]
                return f"{tag[0]} step {tag[1]} ({_rows_text(n)} refused; its file holds the {held} logged before)"
            return f"{tag[0]} step {tag[1]} ({_rows_text(counts[tag])})"

        named = [one(tag) for tag in samples[:_MAX_NAMED]]
        if len(samples) > _MAX_NAMED:
            left = sum(on_disk[tag][0] if tag in on_disk else counts[tag] for tag in samples[_MAX_NAMED:])
            named.append(f"{len(samples) - _MAX_NAMED} more ({_rows_text(left)}; {len(samples)} split steps in all)")
        text = ""
        if named:
            text = "the samples of " + _and(named)
        if lines:
            text = f"{text}, and {scalars}" if text else scalars
        return text

    def _close_folder(self) -> None:
        fd, self._root_fd = self._root_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _seal(self, split: str) -> int:
        step, _ = self._pending.pop(split)
        self._sealed.setdefault(split, set()).add(step)
        self._put(("seal", split, step), force_block=True)
        return step

    def _put(self, item: tuple[Any, ...], *, force_block: bool = False) -> None:
        """Queue ``item``; an item of data (rows, a scalars line) that the writer's failure overtook since the
        caller's ``_check`` raises ``_Late`` instead: under ``_gate``, so that the failure (``_quiesce``) sees
        every row it lost."""
        with self._gate:
            if self._error is not None and _carries_data(item):
                raise _Late
            self._put_now(item, force_block)

    def _put_now(self, item: tuple[Any, ...], force_block: bool) -> None:
        try:
            self._queue.put_nowait(item)
            depth = self._queue.qsize()
            if depth > self._stats["max_depth"]:
                self._stats["max_depth"] = depth
            return
        except queue.Full:
            pass
        if self.on_full == "raise" and not force_block:
            self._stats["queue_full"] += 1
            raise QueueFullError(
                f"write queue full ({self._queue.maxsize} calls waiting); the disk is slower than the trainer "
                "logs: raise max_queue, log less, or use on_full='block'"
            )
        t0 = time.perf_counter()
        self._queue.put(item)
        self._stats["queue_waits"] += 1
        self._stats["queue_wait_s"] += time.perf_counter() - t0
        self._stats["max_depth"] = max(self._stats["max_depth"], self._queue.qsize())

    def _file(self, split: str, step: int) -> Path:
        return self.root / "samples" / split / f"step_{step:08d}.p{self.process_index}.parquet"

    def _initial_manifest(self, name: str | None, config: dict[str, Any] | None, run_id: str | None) -> dict[str, Any]:
        old: dict[str, Any] = {}
        path = self.root / MANIFEST
        if path.exists():  # a resumed run keeps its id, creation time and roles
            try:
                loaded = json.loads(path.read_bytes())
                old = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                old = {}
        roles = list(old.get("roles") or []) if isinstance(old.get("roles"), list) else []
        for r in self.roles or []:
            if r not in roles:
                roles.append(r)
        old_config = old.get("config")
        if config is None:  # an old manifest may hold a bare NaN (written before NaN was "NaN"): converted likewise
            config = _config.json_config(old_config) if isinstance(old_config, dict) else {}
        return {
            "format": S.FORMAT_NAME,
            "schema_version": S.CURRENT_VERSION,
            "run_id": str(run_id or old.get("run_id") or uuid.uuid4().hex),
            "name": str(name) if name is not None else old.get("name", self.root.resolve().name),
            "created": old.get("created") or _iso(self._clock()),
            "config": config,
            "roles": roles,
            "writer": {"name": "runlog", "version": _version(), "state_files": True},
        }

    def _write_manifest(self) -> None:
        """Only process 0 writes ``run.json`` (atomically, replacing it): tests/test_writer.py holds that a
        process of another index never writes it. A run folder that only such a process writes (process 0
        crashed, or writes elsewhere) is said at ``close()`` with a ``WriterWarning``."""
        if self.process_index == 0:
            atomic_write_bytes(self.root / MANIFEST, _manifest_bytes(self.manifest), durable=self.durable)

    def _remove_own_leftovers(self) -> None:
        """Temporary files of this process from an earlier, interrupted run (they are never whole)."""
        samples = self.root / "samples"
        pattern = f".step_*.p{self.process_index}.parquet.tmp"
        leftovers = list(samples.glob(f"*/{pattern}")) if samples.is_dir() else []
        leftovers += list(self.root.glob(f".{self._scalars_path().name}.tmp"))
        if self.process_index == 0:
            leftovers += list(self.root.glob(f".{MANIFEST}.tmp"))
        state = self.root / STATE_FILE.format(process=self.process_index)
        leftovers.append(state.with_name(f".{state.name}.tmp"))
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()

    def _write_state(
        self,
        how: str | None = None,
        exception: BaseException | None = None,
        *,
        in_folder: bool = False,
        moved: bool = False,
    ) -> None:
        """``.writer.p{process}.json``: ``open`` (``how`` None: at the start, so that readers know this process
        writes the run before its first file), then ``closed``: how (``close``: called; ``exception``: the
        ``with`` block raised; ``exit``: the program ended without calling it), the last step of each split it
        has on disk, what it wrote, and the writer's own failure if any. ``moved``: the folder was renamed or
        moved with nothing logged lost: ``moved_from`` is the path it was written at, and the stop is no
        ``error``. A process killed leaves it ``open``. A state that cannot be written is a warning (and no
        temporary file is left), never an error of ``close``."""
        path = self.root / STATE_FILE.format(process=self.process_index)
        if how is None:  # (no time: a call of the writer's clock here would move every later one)
            opened = {"process": self.process_index, "state": "open", "heartbeat_s": HEARTBEAT_S}
            self._put_state(path, opened)
            return
        if not self._scanned and self._error is None:  # nothing logged: what an earlier writer left is still there
            with contextlib.suppress(OSError):
                self._scan_old()
        steps: dict[str, int] = {}
        with self._bg_lock:
            published = list(self._published)
        for split, step in [*published, *((sp, s) for sp, v in self._old_samples.items() for s in v)]:
            steps[split] = max(step, steps.get(split, step))
        last_scalar = max(self._old_scalars_max, self._last_scalar_step)
        with self._bg_lock:
            written = {k: self._stats[k] for k in ("files_written", "rows_written", "scalar_lines")}
        closed = {
            "process": self.process_index,
            "state": "closed",
            "ended": _iso(self._clock()),
            "how": how,
            "exception": None if exception is None else _exception_text(exception),
            "error": None if self._error is None or moved else self._state_error(),
            **({"moved_from": str(self.root)} if moved else {}),
            "last_step": dict(sorted(steps.items())),
            "last_scalar_step": last_scalar if last_scalar >= 0 else None,
            **written,
        }
        self._put_state(path, closed, in_folder=in_folder)

    def _state_error(self) -> str:
        """The state file's ``error``: the failure, and (as a folder's failure says it) every logged step not
        written, read at ``close`` when the background thread has stopped."""
        assert self._error is not None
        text = _exception_text(self._error)
        if isinstance(self._error, RunFolderGoneError):
            return text  # names them already (``_folder_error``)
        lost = self._unwritten_text(rows=True)
        return f"{text}; not written: {lost}" if lost else text

    def _put_state(self, path: Path, state: dict[str, Any], *, in_folder: bool = False) -> None:
        """``in_folder``: written through the descriptor held on the folder this writer opened, wherever that
        folder is now (renamed or moved while the writer had it open: its closed state goes there, not to
        whatever the path names now)."""
        fd = self._root_fd if in_folder and _AT_SUPPORTED else None
        try:
            if fd is None:
                atomic_write_bytes(path, _manifest_bytes(state), durable=self.durable)
            else:
                _atomic_write_at(fd, path.name, _manifest_bytes(state), durable=self.durable)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp = f".{path.name}.tmp"
                if fd is not None:
                    os.unlink(tmp, dir_fd=fd)
                else:
                    path.with_name(tmp).unlink()
            self._warn(f"{path}: the writer's state could not be written ({exc}); readers may see it as killed")

    def _heartbeat(self) -> None:
        """Touch this process's state file every ``HEARTBEAT_S`` seconds until the writer closes (its own thread:
        one ``utime`` each time, a few microseconds). Through the descriptor held on the run folder, so that
        a folder put at the run's path by someone else is never touched. A touch that fails is said once (readers
        that cannot see the lock may then take this writer for killed); a folder removed is said by the writer."""
        name = STATE_FILE.format(process=self.process_index)
        while not self._beat_stop.wait(HEARTBEAT_S):
            fd = self._root_fd
            try:
                if fd is not None and _AT_SUPPORTED:
                    os.utime(name, dir_fd=fd)
                elif self._folder_gone() is None:
                    os.utime(self.root / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if not self._beat_failed:
                    self._beat_failed = True
                    self._warn(
                        f"{self.root / name}: the writer's heartbeat could not be written ({exc}); where its lock "
                        "cannot be seen, upload-wandb may take this open writer for killed and send its last step"
                    )

    def _close_at_exit(self) -> None:
        if os.getpid() != self._pid:
            # A child forked from the trainer (``os.fork``, then a normal exit) has the writer's object but not its
            # thread nor its lock: closing it there would mark the parent's live writer closed.
            return
        try:
            self._close("exit")
        except Exception as exc:  # noqa: BLE001 - at exit there is no caller left to raise to
            print(f"runlog: RunWriter({self.root}) failed at exit: {exc}", file=sys.stderr)

    # -- background thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._next()
            kind = item[0]
            if kind == "stop":
                self._finish()
                return
            if kind == "sync":
                if self._error is None:
                    self._safely(self._check_folder)
                if self._error is None:
                    self._safely(self._files.drain)
                if self._error is None:
                    self._safely(self._sync_scalars)
                item[1].set()
                continue
            if self._error is not None:
                if kind == "stats":
                    item[4].set_error(self._error)  # nobody waits forever for a step's stats
                self._lost = self._lost or _carries_data(item)
                continue  # keep draining so that a blocked caller is released; the error is reported
            t0 = time.perf_counter()
            self._safely(self._handle, item)
            if self._error is not None and _carries_data(item):
                self._lost = True  # the item that failed (its rows or line not written)
            dt = time.perf_counter() - t0
            with self._bg_lock:
                self._stats["background_s"] += dt

    def _next(self) -> tuple[Any, ...]:
        """The next queued item. While step files are being encoded, those done are published every few
        milliseconds in between (in step order), so a file appears soon after its encode even when the trainer
        logs nothing more, without waiting for the encodes still running. Items a failure took off the queue
        (``_backlog``) come first."""
        if self._backlog:
            return self._backlog.popleft()
        while self._files.busy() and self._error is None:
            try:
                return self._queue.get(timeout=0.005)
            except queue.Empty:
                self._safely(self._files.publish_ready)
        return self._queue.get()

    def _safely(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - stored and raised on the caller's next call
            if self._error is not None:  # the first failure is the one to report
                return
            # A write that failed because the run folder went away (a step file whose folder vanished) is said as
            # that, and salvages nothing: there is no folder of this run left to write into.
            gone = None
            if isinstance(exc, RunFolderGoneError):
                gone = exc
            elif isinstance(exc, OSError):
                gone = self._folder_gone()
            if gone is not None:
                if gone is not exc:
                    gone.__cause__ = exc
                self._stop_for_folder(gone)
                return
            self._error = exc
            try:
                if not self._finishing:
                    self._salvage(args[0] if fn == self._handle else None)
            finally:
                self._salvaged.set()

    def _folder_gone(self) -> RunFolderGoneError | None:
        """Whether ``root`` still names the folder this writer opened: None if it does, else the error to stop
        with, saying what became of that folder (``_held_folder``) and what the path names now. One ``stat``
        while nothing changed; the inode differs from the one kept open since the writer opened when another
        folder or a file was put there."""
        try:
            st = os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            here = None
        except OSError:  # unreadable, not gone: the writes themselves say why they fail
            return None
        else:
            if (st.st_dev, st.st_ino) == self._root_id:
                return None
            here = "another folder" if stat.S_ISDIR(st.st_mode) else "a file"
        what, where = self._held_folder()
        if what == "removed":
            text = "was removed"
        elif what == "moved":
            text = f"was renamed or moved (to {where})" if where else "was renamed or moved (runlog cannot tell where)"
        else:
            text = "no longer names the folder the writer opened (removed, renamed or moved)"
        text = f"the run folder {self.root} {text} while the writer of process {self.process_index} had it open"
        return RunFolderGoneError(text + (f", and replaced by {here}" if here is not None else ""))

    def _held_folder(self) -> tuple[str, str | None]:
        """What became of the folder this writer opened, by the descriptor held on it: ``("removed", None)``
        (no link left to it), ``("moved", path or None)`` (it is still on disk: renamed or moved, to ``path``
        where the system tells it: Linux's ``/proc/self/fd``), or ``("unknown", None)`` (no descriptor: Windows)."""
        fd = self._root_fd
        if fd is None:
            return "unknown", None
        try:
            links = os.fstat(fd).st_nlink
        except OSError:
            return "unknown", None
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = None
        if path is not None and path.endswith(" (deleted)"):
            return "removed", None
        if path is not None:
            try:
                now = os.stat(path)
            except OSError:
                path = None
            else:
                path = path if (now.st_dev, now.st_ino) == self._root_id else None
        if path is None and links == 0:
            return "removed", None
        return "moved", path

    def _check_folder(self) -> None:
        """Raise ``RunFolderGoneError`` when the run folder is no longer the one this writer opened (checked before
        each step file is handed to encoding, each scalars line, a manifest rewrite, ``flush`` and ``close``:
        one ``stat``, 1-3 us, on the background thread). Without it, a removed folder was silently made again by the
        next step file, holding the later steps only, and the scalars went to the removed shard, lost unsaid."""
        gone = self._folder_gone()
        if gone is not None:
            raise gone

    def _stop_for_folder(self, gone: RunFolderGoneError) -> None:
        """Stop writing (the writer's error, raised by the next call), and say once, with a ``WriterWarning``, what
        became of the folder and what will not be written: writing on by path would make the folder again holding
        the later steps only (readers would take it for the whole run), or write into another run's folder.

        A folder renamed or moved is not written on either (through the descriptor held on it): the step files
        are written by path on the encoding threads, the scalars shard, the manifest and a resume's take-out too,
        so some of the later steps would land in the moved folder and others at the old path, one run in two
        folders. Stopping leaves the moved folder whole up to a step, and its state closed (at ``close``), from
        where a resumed writer goes on."""
        dropped = self._files.discard()  # their temporary files are not at the run's path any more
        pending = [*dropped, *((split, step) for split, (step, _) in self._buffers.items())]
        self._buffers.clear()
        self._lost = self._lost or bool(pending)
        with self._bg_lock:
            files, lines = self._stats["files_written"], self._stats["scalar_lines"]
        last = f" up to step {self._last_scalar_step}" if lines else ""
        manifest = ", run.json" if self.process_index == 0 else ""
        wrote = f"{files} step files, {lines} scalar lines{last}{manifest}"
        what, where = self._held_folder()
        if what == "removed":
            fate = f"what it had written there was removed with it ({wrote}, its state file)"
            resume = "on a new folder or resumed from a checkpoint"
        elif what == "moved":
            fate = f"what it had written is in that folder ({wrote}; its state file is closed there at close())"
            resume = f"resumed on {where}" if where else "resumed on the folder where it is now"
            resume += " from a checkpoint, or on a new folder"
        else:
            fate = f"what it had written is wherever that folder is, if anywhere ({wrote})"
            resume = "on a new folder or resumed from a checkpoint"
        self._gone_parts = (gone, fate, resume)
        self._error = self._folder_error(gone, fate, resume)
        self._warn(str(self._error))

    def _folder_error(self, gone: RunFolderGoneError, fate: str, resume: str) -> RunFolderGoneError:
        """The writer's error for its folder gone, naming every step logged and not written so far (at the
        failure, what was queued or held; at ``close``, every call's since)."""
        unwritten = self._unwritten_text()
        message = (
            f"{gone.args[0]}: {fate}; the writer has stopped, so that it never writes the later steps apart from "
            "the earlier ones, into a folder made again, or into another run's: "
            + (f"not written: {unwritten}, and " if unwritten else "")
            + f"nothing logged from now on is written (open a new RunWriter to go on, {resume})"
        )
        error = RunFolderGoneError(message)
        error.__cause__ = gone.__cause__
        return error

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "samples":
            _, split, step, offset, payload, seal, _rows = item
            self._resume(step)
            if seal is not None:
                self._submit(split, seal)
            data = self._timed_fetch(_convert.resolve, payload)
            try:
                table, found = _convert.build_table(
                    data,
                    step=step,
                    split=split,
                    process=self.process_index,
                    offset=offset,
                    roles=self.roles,
                    warn=self._warn,
                    warn_once=self._warn_once,
                )
            except Exception as exc:  # noqa: BLE001 - said with the split and step it belongs to
                detail = str(exc) if isinstance(exc, _convert.SampleError) else f"{type(exc).__name__}: {exc}"
                raise _convert.SampleError(f"samples of {split} step {step}: {detail}") from exc
            self._note_roles(found)
            self._buffers.setdefault(split, (step, []))[1].append(table)
        elif kind == "seal":
            _, split, step = item
            self._submit(split, step)
        elif kind == "scalars":
            _, record, fetch = item
            if fetch is not None:
                keys, device = fetch
                for k, v in zip(keys, self._timed_fetch(device.get), strict=True):
                    record[k] = _convert.scalar_value(k, v)
            self._write_scalars(record)
        elif kind == "stats":
            _, step, t, compute, pending, write = item
            try:
                stats = compute()
            except BaseException as exc:
                pending.set_error(exc)
                raise
            pending.set_result(stats)
            if write:
                self._write_scalars(
                    {"step": step, "time": t, **{k: _convert.scalar_value(k, v) for k, v in stats.items()}}
                )

    def _salvage(self, failed: tuple[Any, ...] | None) -> None:
        """After the first failure (``failed``: the item that failed, if one did): every file being encoded is
        published, and the step each split was still gathering rows for is written at once if the failure lost
        none of its rows, with the rows logged before the failure (more may have been coming: rows of it logged
        from then on are refused, and named with the file's rows, ``_unwritten_text``). A failure loses only
        what was logged from the failing call on, never a whole step that came before it. A step that lost rows
        (the failing call's, or those of a call queued behind it; a call of no rows loses none) is not written at
        all: its rows are named among those not written. Errors here are not reported (the first failure is)."""
        self._quiesce()
        lost = {
            (item[1], item[2])
            for item in (failed, *self._backlog)
            if item is not None and item[0] == "samples" and item[6]
        }
        for split in list(self._buffers):
            step = self._buffers[split][0]
            if (split, step) in lost:
                del self._buffers[split]
                continue
            with contextlib.suppress(Exception):
                self._submit(split, step)
        with contextlib.suppress(Exception):
            self._files.drain()

    def _quiesce(self) -> None:
        """Once the writer's error is set: wait until no caller is between its look at the error and the end of its
        ``_put`` (``_gate``), taking the queue's items into ``_backlog`` meanwhile (a caller may be waiting for
        space), then take the rest. Every call's data from then on is refused at the call (``_Late``), so the
        backlog holds every item the failure dropped."""
        while not self._gate.acquire(timeout=0.002):
            self._take_queue()
        try:
            self._take_queue()
        finally:
            self._gate.release()

    def _take_queue(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._backlog.append(self._queue.get_nowait())

    def _submit(self, split: str, step: int) -> None:
        """Hand the buffered rows of a sealed step to the encoders."""
        self._check_folder()
        buffered = self._buffers.pop(split, None)
        if buffered is not None:
            table = _convert.concat(buffered[1], where=f"{split} step {step}", warn=self._warn)
            dup = _convert.duplicate_ids(table)
            if dup:
                self._warn(
                    f"samples of {split} step {step} hold the sample_id {', '.join(map(repr, dup))} more than once: "
                    "readers take sample ids as unique within the run (written as given)"
                )
            old = self._old_samples.get(split)
            if old and step in old:
                self._keep_replaced(split, step)
            self._own_files.add((split, step))
            with self._bg_lock:
                self._file_rows[(split, step)] = table.num_rows
            self._files.submit(self._file(split, step), table, tag=(split, step))

    def _timed_fetch(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        with self._bg_lock:
            self._stats["device_wait_s"] += time.perf_counter() - t0
        return out

    def _on_published(self, tag: tuple[str, int]) -> None:
        """A step file renamed into place: its step is one this writer has on disk (the state file's ``last_step``;
        a step whose encode or rename failed is not one)."""
        with self._bg_lock:
            self._published.add(tag)
            self._unwritten_samples.discard(tag)
            self._unwritten_rows.pop(tag, None)

    def _written(self, rows: int, size: int) -> None:
        with self._bg_lock:
            self._stats["files_written"] += 1
            self._stats["rows_written"] += rows
            self._stats["bytes_written"] += size

    def _scalars_path(self) -> Path:
        return self.root / f"scalars.p{self.process_index}.jsonl"

    def _write_scalars(self, record: dict[str, Any]) -> None:
        self._resume(record["step"])
        self._check_scalar_order(record)
        self._check_folder()  # else the line would go to a removed shard, lost unsaid
        if self._scalars_fd is None:
            self._scalars_fd = os.open(self._scalars_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # One line per record on an O_APPEND descriptor: a killed process leaves whole lines (at worst a torn
        # last line after a power cut, which readers report as a warning).
        line = (json.dumps(record, allow_nan=True, separators=(", ", ": ")) + "\n").encode()
        self._append_line(line, record["step"])
        self._last_scalar_step = max(self._last_scalar_step, record["step"])
        with self._bg_lock:
            self._stats["scalar_lines"] += 1
            self._stats["bytes_written"] += len(line)
            self._line_written(record["step"])

    def _check_scalar_order(self, record: dict[str, Any]) -> None:
        """Say (once each) a scalars line of a step lower than an earlier line's, and a key written again at the
        highest step it has: both lines are written, and readers keep a key's later value at a step, so the
        earlier value would otherwise drop out of every figure unsaid. Checked here, on the writer's thread,
        where the lines of ``log_scalars`` and of ``StatsTracker.commit`` (whose keys are known only here) meet
        in the order they were logged. One dict lookup per key."""
        step = record["step"]
        if step < self._last_scalar_step:
            self._say_backwards(
                "scalars",
                f"scalars of step {step} logged after step {self._last_scalar_step}: steps went backwards (the "
                "line is written; a key logged again at a step is read back as its later value)",
            )
        seen = self._max_key_step
        again = []
        for k in record:
            last = seen.get(k, -1)
            if last < step:
                seen[k] = step
            elif last == step:
                again.append(k)
        again = [k for k in again if k not in ("step", "time")]
        if again:
            shown = ", ".join(map(repr, again[:3])) + (f" and {len(again) - 3} more" if len(again) > 3 else "")
            self._warn_once(
                "scalars-again",
                f"scalar key {shown} logged again at step {step}: both lines are written, and readers keep the later "
                "value, so the earlier one is in no figure; log a key once per step (said once per writer)",
            )

    def _say_backwards(self, what: str, message: str) -> None:
        self._warn_once(what, f"{message}; said once per writer")

    def _warn_once(self, key: str, message: str) -> None:
        """``_warn``, the first time only for ``key`` (a thing that, once wrong, is wrong at every step)."""
        if key not in self._said_order:
            self._said_order.add(key)
            self._warn(message)

    def _append_line(self, line: bytes, step: int) -> None:
        """Write the whole line, or raise. ``os.write`` may write part of it (a full disk writes what fits,
        and says so only in its count): the rest is written by further calls, and when one fails the part
        already written is cut off again, so that the file ends with a whole line and no later line is glued
        onto a torn one. The failure is the writer's error (``flush``/``close`` raise it)."""
        fd = self._scalars_fd
        assert fd is not None
        done = 0
        try:
            done = os.write(fd, line)
            while done < len(line):
                more = os.write(fd, line[done:])
                if more <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += more
        except OSError as exc:
            if not done:
                raise
            cut = "cut off"
            try:
                os.ftruncate(fd, os.fstat(fd).st_size - done)
            except OSError as trunc:  # the next writer of this process cuts it when it opens the shard
                cut = f"left as a torn last line ({type(trunc).__name__}: {trunc})"
            raise OSError(
                exc.errno,
                f"{exc.strerror or exc}: the scalars line of step {step} was written in part ({done} of "
                f"{len(line)} bytes), and that part was {cut}",
                str(self._scalars_path()),
            ) from exc

    # -- resuming: what an earlier writer of this process left -------------------------------------------
    def _resume(self, step: int) -> None:
        """At the first item, note what an earlier writer of this process left; when the item's step is one it
        had reached, the resumed run replays from there: that step and every later one are taken out
        (``_drop_old``). Decided once, at the first item only: a later item for an earlier step (a baseline
        evaluation logged after the resume step) is an ordinary log of that step and takes nothing out (an
        old sample file of the same split and step is replaced, and kept aside: ``_keep_replaced``). One
        compare per item otherwise."""
        if self._resume_decided:
            return
        self._check_folder()  # a folder put in its place holds another run: nothing of it is taken out
        self._resume_decided = True
        if not self._scanned:
            self._scan_old()
        if step <= self._old_max:
            self._drop_old(step)

    def _scan_old(self) -> None:
        """Read this process's scalars shard and list its sample files, once. A last line without its end of line
        is made whole before this writer appends, so that no line is glued to it: a record (readers read it) gets
        its end of line; a torn line (left by a power cut: readers skip it with a warning) is cut off, said with a
        ``WriterWarning``."""
        self._scanned = True
        path = self._scalars_path()
        data = path.read_bytes() if path.exists() else b""
        if data and not data.endswith(b"\n"):
            whole = data.rfind(b"\n") + 1
            torn = data[whole:]
            if _is_record(torn):
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, b"\n")
                    if self.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                data += b"\n"
            else:
                os.truncate(path, whole)
                data = data[:whole]
                if torn.strip():
                    step = _LINE_STEP.match(torn)
                    of = f" (of step {int(step.group(1))})" if step else ""
                    self._warn(
                        f"{path}: its last line{of} was torn ({len(torn)} bytes without an end of line, as a power "
                        f"cut or a full disk leaves one: {torn[:60].decode('utf-8', 'replace')!r}): cut off before "
                        "this writer appends, so that no line is glued to it (readers had skipped it with a warning)"
                    )
        self._old_scalars_bytes = len(data)
        self._old_scalars_max = max((s for s in map(_line_step, data.splitlines()) if s is not None), default=-1)
        samples = self.root / "samples"
        if samples.is_dir():
            for folder in samples.iterdir():
                if not SPLIT_RE.match(folder.name) or not folder.is_dir():
                    continue
                for f in folder.iterdir():
                    m = _SAMPLE_FILE.match(f.name)
                    if m is not None and int(m.group(2)) == self.process_index:
                        self._old_samples.setdefault(folder.name, set()).add(int(m.group(1)))
        self._old_max = max([self._old_scalars_max, *(max(v) for v in self._old_samples.values() if v)])

    def _drop_old(self, step: int) -> None:
        """A resumed writer logs ``step``, which the earlier writer had reached: the earlier writer's scalar
        lines and sample files (every split) of ``step`` and later are removed, so that each of those steps is
        read back from the resumed run only, never mixed with the abandoned one (docs/writer.md, Resuming).
        This writer's own lines and files are kept. Nothing is deleted: what is taken out of the run is moved
        to the hidden folder ``_superseded_dir()`` (readers never look into hidden folders), from where a user can
        restore it. Said with a ``WriterWarning`` naming the steps and the folder.

        In an order that a kill at any moment leaves whole (docs/writer.md, Crash safety): the sample files latest
        step first, across every split, so that what is left is each split's steps up to some step, contiguous
        from 0 (in step order, a kill left a hole: 10-16 moved, 17-29 kept); and the scalars last, so that they
        are never cut below the samples the abandoned run still has there. A killed take-out is finished by the
        next resume from the same step."""
        moves = sorted(
            ((s, split) for split, steps in self._old_samples.items() for s in steps if s >= step),
            key=lambda t: (-t[0], t[1]),
        )
        removed: dict[str, list[int]] = {}
        for s, split in moves:
            self._old_samples[split].discard(s)
            if (split, s) in self._own_files:
                continue  # rewritten by this writer already
            old = self._file(split, s)
            if not old.exists():
                continue
            kept = self._superseded_dir() / "samples" / split
            kept.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.replace(old, kept / old.name)
            removed.setdefault(split, []).append(s)
        if self.durable:
            for split in removed:
                fsync_dir(self.root / "samples" / split)
                fsync_dir(self._superseded_dir() / "samples" / split)
        lines: list[int] = []
        if step <= self._old_scalars_max:
            self._replace_old_scalars(step)
            lines = self._dropped_scalar_steps
        remaining = [max(v) for v in self._old_samples.values() if v]
        self._old_max = max([self._old_scalars_max, *remaining])
        if not lines and not removed:
            return
        parts = [
            f"samples/{split} step{'s' if len(v) > 1 else ''} {_steps_text(sorted(v), most=_MAX_NAMED)}"
            for split, v in sorted(removed.items())
        ]
        if lines:
            parts.append(f"{len(lines)} scalar lines of steps {_steps_text(sorted(set(lines)), most=_MAX_NAMED)}")
        self._warn(
            f"resumed writer of process {self.process_index} logs step {step} again: took out what the earlier "
            f"run wrote for step {step} and later, so that those steps are read back from this run only: "
            + "; ".join(parts)
            + f" (moved to {self._superseded_dir()}, which runlog does not read)"
        )

    def _keep_replaced(self, split: str, step: int) -> None:
        """This writer is about to write ``split`` step ``step``, of which the earlier writer of its process left
        a file (logged after the resume decided, so not taken out then): that file is linked into
        ``_superseded_dir()`` now, and replaced in place when the new one is published (readers see the old file,
        then the new one, never neither). Said with a ``WriterWarning``."""
        self._old_samples[split].discard(step)
        old = self._file(split, step)
        if not old.exists():
            return
        kept = self._superseded_dir() / "samples" / split
        kept.mkdir(parents=True, exist_ok=True)
        try:
            os.link(old, kept / old.name)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a copy
            import shutil

            shutil.copy2(old, kept / old.name)
        if self.durable:
            fsync_dir(kept)
        self._warn(
            f"resumed writer of process {self.process_index} writes {split} step {step} again, which the earlier "
            f"run had written: its file is replaced (the earlier one kept in {kept}, which runlog does not read)"
        )

    def _superseded_dir(self) -> Path:
        """Where a resumed writer moves what it takes out of the run: ``<run>/.superseded/<time>-p<process>``,
        one folder per writer (hidden: discovery never lists it)."""
        if self._superseded is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
            self._superseded = self.root / ".superseded" / f"{stamp}-p{self.process_index}-{os.getpid()}"
        return self._superseded

    def _replace_old_scalars(self, step: int) -> None:
        """Rewrite the shard without the earlier writer's lines of ``step`` and later (this writer's own lines
        kept). Atomic (temporary file, fsync when durable, ``os.replace``, folder fsync); normally done once.
        The steps of the lines dropped are left in ``_dropped_scalar_steps``."""
        path = self._scalars_path()
        data = path.read_bytes() if path.exists() else b""
        old, new = data[: self._old_scalars_bytes], data[self._old_scalars_bytes :]
        lines = old.splitlines(keepends=True)
        stepped = list(zip(lines, map(_line_step, lines), strict=True))
        kept = [line for line, s in stepped if s is None or s < step]
        dropped = [s for _, s in stepped if s is not None and s >= step]
        steps = [s for _, s in stepped if s is not None and s < step]
        if dropped:  # kept beside the moved sample files, never deleted
            folder = self._superseded_dir()
            folder.mkdir(parents=True, exist_ok=True)
            taken = b"".join(line for line, s in stepped if s is not None and s >= step)
            atomic_write_bytes(folder / path.name, taken, durable=self.durable)
        atomic_write_bytes(path, b"".join(kept) + new, durable=self.durable)
        if self._scalars_fd is not None:
            os.close(self._scalars_fd)
            self._scalars_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._old_scalars_bytes = sum(map(len, kept))
        self._old_scalars_max = max(steps, default=-1)
        self._dropped_scalar_steps = dropped

    def _warn(self, message: str) -> None:
        """A ``WriterWarning`` (from whichever thread finds it), kept for ``stats()["warnings"]``."""
        with self._bg_lock:
            if len(self._warnings) < _MAX_WARNINGS:
                self._warnings.append(message)
        warnings.warn(f"runlog: {message}", WriterWarning, stacklevel=2)

    def _sync_scalars(self) -> None:
        if self._scalars_fd is not None and self.durable:
            os.fsync(self._scalars_fd)

    def _note_roles(self, found: list[str]) -> None:
        new = [r for r in found if r not in self.manifest["roles"]]
        if not new:
            return
        self.manifest["roles"] = [*self.manifest["roles"], *new]
        if self.process_index == 0:
            self._check_folder()
            atomic_write_bytes(self.root / MANIFEST, _manifest_bytes(self.manifest), durable=self.durable)

    def _finish(self) -> None:
        self._finishing = True
        if self._error is None:
            self._safely(self._check_folder)
        self._safely(self._files.close)
        if self._error is None:
            self._safely(self._sync_scalars)
        if self._scalars_fd is not None:
            os.close(self._scalars_fd)
            self._scalars_fd = None


class _Late(Exception):
    """A call's data that the writer's failure overtook between the call's ``_check`` and its ``_put``."""


def _rows_text(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _and(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _carries_data(item: tuple[Any, ...]) -> bool:
    """Whether a queue item holds logged data (rows, a scalars line): one not handled is data not written."""
    return item[0] in ("samples", "scalars") or (item[0] == "stats" and bool(item[5]))


# Whether files can be written relative to the run folder's descriptor (``dir_fd``): not on Windows.
_AT_SUPPORTED = {os.open, os.rename, os.utime, os.unlink} <= os.supports_dir_fd  # (os.replace is a rename)


def _atomic_write_at(folder: int, name: str, data: bytes, *, durable: bool) -> None:
    """``files.atomic_write_bytes`` in the folder open as ``folder``: the folder this writer opened, wherever it
    is now, never whatever its path names now."""
    tmp = f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    if durable:
        with contextlib.suppress(OSError):  # as ``fsync_dir``: some file systems refuse it
            os.fsync(folder)


def _folder_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _open_folder(path: Path) -> int | None:
    """A descriptor held open on the run folder (None where folders cannot be opened, as on Windows)."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _step(step: Any) -> int:
    """The step as an int: a Python int, a numpy integer, a 0-d integer numpy or JAX array, or a float of
    integral value (``2.0``, ``np.float32(2.0)``). Anything else (``2.5``, ``"3"``, ``True``) is refused: a
    step is never truncated or parsed. A JAX array is read on the host (``operator.index`` / ``.item()``), which
    waits for the value: trainers keep their step counter on the host."""
    value = _integral(step)
    if value is None or value < 0:
        raise UsageError(f"step must be a non-negative integer, not {step!r}")
    if value > STEP_MAX:
        raise UsageError(f"step {step!r} is beyond a 64-bit integer (at most 2**63 - 1): steps are int64 in the format")
    return value


def _index(process_index: Any) -> int:
    """The process index as an int: a Python int or a numpy integer (a 0-d integer array too). Anything else
    (``1.5``, ``"3"``, ``True``, ``-1``) is refused, as a step is: ``int()`` made 1.5 and ``True`` process 1,
    whose writer then took process 1's files for its own earlier run's and moved them aside."""
    value = None
    # ``operator.index`` refuses floats, text and arrays of a dimension; a bool is an int to it, and is refused here.
    if not isinstance(process_index, bool) and getattr(getattr(process_index, "dtype", None), "kind", None) != "b":
        with contextlib.suppress(TypeError):
            value = operator.index(process_index)
    if value is None or value < 0:
        raise UsageError(f"process_index must be a non-negative integer, not {process_index!r}")
    return value


def _integral(step: Any) -> int | None:
    if isinstance(step, (bool, str, bytes)) or getattr(getattr(step, "dtype", None), "kind", None) == "b":
        return None
    if getattr(step, "ndim", 0) != 0:  # an array of one element (``np.array([4])``) is not a step: only 0-d ones
        return None
    if isinstance(step, int):
        return int(step)
    try:
        return operator.index(step)  # numpy integer scalars, 0-d integer numpy and JAX arrays
    except TypeError:
        pass
    if isinstance(step, float):  # Python floats and np.float64
        value: Any = step
    elif hasattr(step, "item") and getattr(step, "size", None) == 1:  # other numpy / JAX scalars
        try:
            value = step.item()
        except (TypeError, ValueError):
            return None
    else:
        return None
    return S.whole_number(value)


def _line_step(line: bytes) -> int | None:
    """The step of one scalars line (None when it has none: kept as it is)."""
    m = _LINE_STEP.match(line)
    if m is not None:
        return int(m.group(1))
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _is_record(line: bytes) -> bool:
    """Whether a scalars line is a whole record this writer can place: a JSON object whose step ``_line_step`` reads
    (a resume takes out the records of the steps it writes again by that step: a line it cannot read a step of,
    NUL bytes before it or a step written as text, would be kept and bring a step of the abandoned attempt back),
    strictly UTF-8."""
    if _line_step(line) is None:
        return False
    try:
        obj = json.loads(line.lstrip(b"\x00").decode("utf-8", "surrogatepass").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict)


def _role_names(roles: Any) -> list[str]:
    """The constructor's ``roles`` as a list of names, refused with ``UsageError`` unless it is a collection of
    ``str``: a bare ``"solver"`` would be split into one role per character, and ``b"solver"``, ``None`` or ``7``
    written as their ``repr`` (rows refuse such names too: docs/writer.md)."""
    expected = "roles must be a list of role names (['solver', 'judge'])"
    if isinstance(roles, (str, bytes)):
        raise UsageError(f"{expected}, not a {type(roles).__name__} ({roles!r:.40})")
    try:
        names = list(roles)
    except TypeError:
        raise UsageError(f"{expected}, not a {type(roles).__name__}") from None
    _convert.check_names(names, "role")
    return names


def _iso(t: float) -> str:
    if not math.isfinite(t):
        raise UsageError(f"clock returned {t!r}")
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exception_text(exc: BaseException) -> str:
    """``ValueError: boom``, or ``KeyboardInterrupt`` (no colon after a name with no message), at most 2,000
    characters."""
    message = str(exc)
    return (f"{type(exc).__name__}: {message}" if message else type(exc).__name__)[:2000]


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode()


def _steps_text(steps: Sequence[int], most: int | None = None) -> str:
    """``[3, 4, 5, 8]`` as ``3-5, 8``, and steps of one stride (an eval split's) as ``10-990 every 10``; past
    ``most`` ranges, the steps left are counted (``and 12 more``)."""
    runs: list[tuple[int, int, int]] = []  # (first, last, stride)
    i = 0
    while i < len(steps):
        j = i + 1
        stride = steps[j] - steps[i] if j < len(steps) else 1
        while j < len(steps) and steps[j] - steps[j - 1] == stride:
            j += 1
        if stride != 1 and j - i < 3:  # two steps apart: named, the second starts the next run
            j = i + 1
        runs.append((steps[i], steps[j - 1], stride))
        i = j
    shown = runs if most is None else runs[:most]

    def text(first: int, last: int, stride: int) -> str:
        if first == last:
            return str(first)
        return f"{first}-{last}" + (f" every {stride}" if stride != 1 else "")

    left = sum((b - a) // d + 1 for a, b, d in runs[len(shown) :])
    return ", ".join(text(*r) for r in shown) + (f" and {left} more ({len(steps)} steps in all)" if left else "")
