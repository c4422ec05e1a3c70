"""``RunWriter``: the few lines a trainer adds to write runlog's native layout, off the training thread.

The training thread converts only what must be converted before the call returns (``_convert.snapshot``) and
enqueues, never waiting for the device: JAX arrays are copied on their device (one asynchronous dispatch),
and moved to host on the one background thread, which also builds the Arrow tables and writes. Every file
appears whole or not at all: Parquet under a hidden ``.*.tmp`` name then ``os.replace``; JSONL lines written
with one ``write`` each; the manifest replaced atomically. docs/writer.md is the user's guide.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import operator
import os
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from .. import schema as S
from ..errors import UsageError
from . import _convert, jax_utils
from .errors import QueueFullError, StepOrderError, WriterClosedError, WriterError
from .files import atomic_write_bytes
from .pending import PendingStats
from .step_files import StepFiles

SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MANIFEST = "run.json"
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
        self.root = Path(run_dir)
        self.process_index = int(jax_utils.default_process_index() if process_index is None else process_index)
        if self.process_index < 0:
            raise UsageError(f"process_index must be >= 0, not {self.process_index}")
        self.roles: list[str] | None = None if roles is None else [str(r) for r in roles]
        _convert.check_names(self.roles or [], "role")
        self.durable = durable
        self.on_full = on_full
        self._clock = clock
        # The caller's lock may be held while blocking on a full queue, so the background thread never takes
        # it: its counters have their own lock.
        self._lock = threading.Lock()
        self._bg_lock = threading.Lock()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=max_queue)
        self._pending: dict[str, tuple[int, int]] = {}  # split -> (step, rows so far), not yet written
        self._sealed: dict[str, set[int]] = {}  # split -> steps already handed to the writer thread
        self._closed = False
        self._error: BaseException | None = None
        self._error_reported = False
        self._stats = {
            "calls": 0,
            "rows_queued": 0,
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
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_own_leftovers()
        self.manifest = self._initial_manifest(name, config, run_id)
        if self.process_index == 0:
            atomic_write_bytes(self.root / MANIFEST, _manifest_bytes(self.manifest), durable=durable)
        self._scalars_fd: int | None = None
        # What a resumed writer found in its scalars shard: the bytes it holds and the highest step among them
        # (-1: nothing, the file of a fresh run). A line for a step up to that one drops the old lines of that
        # step and later (see ``_replace_old_scalars``): the only extra cost of a normal call is one compare.
        self._old_scalars_bytes = 0
        self._old_scalars_max = -1
        self._buffers: dict[str, tuple[int, list[pa.Table]]] = {}
        self._files = StepFiles(threads=encode_threads, durable=durable, on_written=self._written)
        self._thread = threading.Thread(target=self._run, name=f"runlog-writer-p{self.process_index}", daemon=True)
        self._thread.start()
        # A trainer that forgets close() (or dies of an exception) still gets its queued data written.
        atexit.register(self._close_at_exit)

    # -- public API ---------------------------------------------------------------------------------------
    def log_samples(self, step: int, samples: Any, split: str = "train") -> None:
        """Queue the samples of one step (rows of trajectories) for writing.

        Several calls for the same (split, step) are appended: the step is written as one file when a
        later step of that split is logged, on ``flush()`` or on ``close()``. Logging a step of a split
        that this writer has already written raises ``StepOrderError`` (a file on disk is always a whole
        step). The writer takes the rows: do not mutate row dicts after the call (numpy columns are copied;
        JAX arrays are copied on their device, so they may be donated or overwritten once the call returns).
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
        with self._lock:
            self._check()
            pending = self._pending.get(split)
            # The previous step of this split is sealed by the same queue item as these rows, and this
            # writer's bookkeeping changes only once the item is queued: a call refused (QueueFullError,
            # StepOrderError) leaves no trace, and a retry gets the same offsets and sample ids.
            seal = pending[0] if pending is not None and pending[0] != step else None
            if step in self._sealed.get(split, ()):
                raise StepOrderError(
                    f"samples for {split} step {step} were already written by this writer "
                    f"({self._file(split, step)}); log each step's rows before moving to the next step"
                )
            offset = pending[1] if pending is not None and seal is None else 0
            self._put(("samples", split, step, offset, payload, seal))
            if seal is not None:
                self._sealed.setdefault(split, set()).add(seal)
            self._pending[split] = (step, offset + n)
            self._stats["calls"] += 1
            self._stats["rows_queued"] += n
            self._stats["caller_s"] += time.perf_counter() - t0

    def log_scalars(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Queue one line of ``scalars.p{process}.jsonl``: ``{"step", "time", **metrics}``.

        Nested dicts are flattened with ``/``; values are numbers (numpy and JAX scalars included: JAX values
        are copied on their device and moved to host by the background thread, so the call never waits for
        the device). ``time`` is the clock at the call, not at the write.
        """
        t0 = time.perf_counter()
        step = _step(step)
        record: dict[str, Any] = {"step": step, "time": self._clock()}
        keys: list[str] = []
        arrays: list[Any] = []
        flat = _convert.flatten_metrics(metrics)
        _convert.check_names(flat, "scalar key")
        for k, v in flat.items():
            if k in ("step", "time"):
                raise UsageError(f"scalar key {k!r} is reserved (the writer sets it)")
            if jax_utils.is_jax_array(v):
                if v.size != 1:
                    raise UsageError(f"scalar {k!r} is a JAX array of shape {tuple(v.shape)}; scalars are numbers")
                keys.append(k)
                arrays.append(v)
                record[k] = None  # filled on the background thread, in this place of the line
            else:
                record[k] = _convert.scalar_value(k, v)
        fetch = (keys, jax_utils.DeviceFetch(arrays)) if arrays else None
        with self._lock:
            self._check()
            self._put(("scalars", record, fetch))
            self._stats["caller_s"] += time.perf_counter() - t0

    def _log_stats(self, step: int, compute: Callable[[], dict[str, float]], *, write: bool) -> PendingStats:
        """Queue ``compute`` (a ``StatsTracker`` step: host copies, reduction, rendering) for the background
        thread and, when ``write``, its result as one scalars line. The line's ``time`` is the clock now."""
        pending = PendingStats(step)
        with self._lock:
            self._check()
            self._put(("stats", step, self._clock(), compute, pending, write))
        return pending

    def flush(self) -> None:
        """Write every pending step and wait until everything logged so far is on disk."""
        with self._lock:
            self._check()
            for split in list(self._pending):
                self._seal(split)
            done = threading.Event()
            self._put(("sync", done), force_block=True)
        done.wait()
        with self._lock:
            self._check()

    def close(self) -> None:
        """Write everything pending and stop the background thread. Idempotent; raises a background error
        that no earlier call has reported."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._error is None:
                for split in list(self._pending):
                    self._seal(split)
            self._put(("stop",), force_block=True)
        self._thread.join()
        atexit.unregister(self._close_at_exit)
        if self._error is not None and not self._error_reported:
            self._error_reported = True
            raise WriterError(f"background writer failed: {type(self._error).__name__}: {self._error}") from (
                self._error
            )

    def stats(self) -> dict[str, Any]:
        """Counters: calls, rows, queue waits and their seconds, the deepest the queue has been
        (``max_depth``), caller seconds, files, bytes, background seconds and, of those, the seconds spent
        waiting for JAX arrays to reach the host (``device_wait_s``). ``queue_waits > 0`` means the background
        thread (the disk, or the device it waits for) did not keep up and the trainer waited."""
        with self._lock, self._bg_lock:
            out: dict[str, Any] = dict(self._stats)
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
        # The trainer's exception propagates; a failure of the writer's own is added to it, not put in its place.
        try:
            self.close()
        except WriterError as err:
            exc.add_note(f"runlog: {self!r} also failed while closing: {err}")
            print(f"runlog: RunWriter({self.root}) failed while closing: {err}", file=sys.stderr)

    def __repr__(self) -> str:
        return f"RunWriter({str(self.root)!r}, process_index={self.process_index}, closed={self._closed})"

    # -- caller-side helpers (hold self._lock) -------------------------------------------------------------
    def _check(self) -> None:
        if self._error is not None:
            self._error_reported = True
            raise WriterError(
                f"background writer failed: {type(self._error).__name__}: {self._error}; "
                "nothing after that point was written"
            ) from self._error
        if self._closed:
            raise WriterClosedError(f"{self!r} is closed")

    def _seal(self, split: str) -> None:
        step, _ = self._pending.pop(split)
        self._sealed.setdefault(split, set()).add(step)
        self._put(("seal", split, step), force_block=True)

    def _put(self, item: tuple[Any, ...], *, force_block: bool = False) -> None:
        try:
            self._queue.put_nowait(item)
            depth = self._queue.qsize()
            if depth > self._stats["max_depth"]:
                self._stats["max_depth"] = depth
            return
        except queue.Full:
            pass
        if self.on_full == "raise" and not force_block:
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

    def _initial_manifest(
        self, name: str | None, config: Mapping[str, Any] | None, run_id: str | None
    ) -> dict[str, Any]:
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
        return {
            "format": S.FORMAT_NAME,
            "schema_version": S.CURRENT_VERSION,
            "run_id": run_id or old.get("run_id") or uuid.uuid4().hex,
            "name": name if name is not None else old.get("name", self.root.resolve().name),
            "created": old.get("created") or _iso(self._clock()),
            "config": dict(config) if config is not None else old.get("config", {}),
            "roles": roles,
            "writer": {"name": "runlog", "version": _version()},
        }

    def _remove_own_leftovers(self) -> None:
        """Temporary files of this process from an earlier, interrupted run (they are never whole)."""
        samples = self.root / "samples"
        pattern = f".step_*.p{self.process_index}.parquet.tmp"
        leftovers = list(samples.glob(f"*/{pattern}")) if samples.is_dir() else []
        leftovers += list(self.root.glob(f".{self._scalars_path().name}.tmp"))
        if self.process_index == 0:
            leftovers += list(self.root.glob(f".{MANIFEST}.tmp"))
        for p in leftovers:
            with contextlib.suppress(OSError):
                p.unlink()

    def _close_at_exit(self) -> None:
        try:
            self.close()
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
                    self._safely(self._files.drain)
                if self._error is None:
                    self._safely(self._sync_scalars)
                item[1].set()
                continue
            if self._error is not None:
                if kind == "stats":
                    item[4].set_error(self._error)  # nobody waits forever for a step's stats
                continue  # keep draining so that a blocked caller is released; the error is reported
            t0 = time.perf_counter()
            self._safely(self._handle, item)
            dt = time.perf_counter() - t0
            with self._bg_lock:
                self._stats["background_s"] += dt

    def _next(self) -> tuple[Any, ...]:
        """The next queued item. While step files are being encoded, those done are published every few
        milliseconds in between (in step order), so a file appears soon after its encode even when the trainer
        logs nothing more, without waiting for the encodes still running."""
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
            if self._error is None:  # the first failure is the one to report
                self._error = exc

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "samples":
            _, split, step, offset, payload, seal = item
            if seal is not None:
                self._submit(split, seal)
            data = self._timed_fetch(_convert.resolve, payload)
            table, found = _convert.build_table(
                data, step=step, split=split, process=self.process_index, offset=offset, roles=self.roles
            )
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

    def _submit(self, split: str, step: int) -> None:
        """Hand the buffered rows of a sealed step to the encoders."""
        buffered = self._buffers.pop(split, None)
        if buffered is not None:
            self._files.submit(self._file(split, step), _convert.concat(buffered[1]))

    def _timed_fetch(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        with self._bg_lock:
            self._stats["device_wait_s"] += time.perf_counter() - t0
        return out

    def _written(self, rows: int, size: int) -> None:
        with self._bg_lock:
            self._stats["files_written"] += 1
            self._stats["rows_written"] += rows
            self._stats["bytes_written"] += size

    def _scalars_path(self) -> Path:
        return self.root / f"scalars.p{self.process_index}.jsonl"

    def _write_scalars(self, record: dict[str, Any]) -> None:
        if self._scalars_fd is None:
            self._open_scalars()
        if record["step"] <= self._old_scalars_max:  # only a resumed writer replaying steps already written
            self._replace_old_scalars(record["step"])
        # One write per line on an O_APPEND descriptor: a killed process leaves whole lines (at worst a torn
        # last line after a power cut, which readers report as a warning).
        line = (json.dumps(record, allow_nan=True, separators=(", ", ": ")) + "\n").encode()
        assert self._scalars_fd is not None
        os.write(self._scalars_fd, line)
        with self._bg_lock:
            self._stats["scalar_lines"] += 1
            self._stats["bytes_written"] += len(line)

    def _open_scalars(self) -> None:
        """Open this process's scalars shard for appending. A shard left by an earlier writer (a resumed run)
        is read once: its steps are noted, and a torn last line (a power cut) is cut off, as it is never whole
        and the next line would be glued to it."""
        path = self._scalars_path()
        data = path.read_bytes() if path.exists() else b""
        if data and not data.endswith(b"\n"):
            data = data[: data.rfind(b"\n") + 1]
            os.truncate(path, len(data))
        self._old_scalars_bytes = len(data)
        self._old_scalars_max = max((s for s in map(_line_step, data.splitlines()) if s is not None), default=-1)
        self._scalars_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _replace_old_scalars(self, step: int) -> None:
        """A resumed writer logs ``step`` again: rewrite the shard without the earlier writer's lines of
        ``step`` and later (this writer's own lines kept), as replayed sample files replace the old ones.
        Atomic (temporary file, fsync when durable, ``os.replace``, folder fsync); normally done once."""
        path = self._scalars_path()
        assert self._scalars_fd is not None
        data = path.read_bytes()
        old, new = data[: self._old_scalars_bytes], data[self._old_scalars_bytes :]
        lines = old.splitlines(keepends=True)
        kept_steps = [(line, s) for line, s in zip(lines, map(_line_step, lines), strict=True) if s is None or s < step]
        kept = [line for line, _ in kept_steps]
        steps = [s for _, s in kept_steps if s is not None]
        atomic_write_bytes(path, b"".join(kept) + new, durable=self.durable)
        os.close(self._scalars_fd)
        self._scalars_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._old_scalars_bytes = sum(map(len, kept))
        self._old_scalars_max = max(steps, default=-1)

    def _sync_scalars(self) -> None:
        if self._scalars_fd is not None and self.durable:
            os.fsync(self._scalars_fd)

    def _note_roles(self, found: list[str]) -> None:
        new = [r for r in found if r not in self.manifest["roles"]]
        if not new:
            return
        self.manifest["roles"] = [*self.manifest["roles"], *new]
        if self.process_index == 0:
            atomic_write_bytes(self.root / MANIFEST, _manifest_bytes(self.manifest), durable=self.durable)

    def _finish(self) -> None:
        self._safely(self._files.close)
        if self._error is None:
            self._safely(self._sync_scalars)
        if self._scalars_fd is not None:
            os.close(self._scalars_fd)
            self._scalars_fd = None


def _step(step: Any) -> int:
    """The step as an int: a Python int, a numpy integer, a 0-d integer numpy or JAX array, or a float of
    integral value (``2.0``, ``np.float32(2.0)``). Anything else (``2.5``, ``"3"``, ``True``) is refused: a
    step is never truncated or parsed. A JAX array is read on the host (``operator.index`` / ``.item()``), which
    waits for the value: trainers keep their step counter on the host."""
    value = _integral(step)
    if value is None or value < 0:
        raise UsageError(f"step must be a non-negative integer, not {step!r}")
    return value


def _integral(step: Any) -> int | None:
    if isinstance(step, (bool, str, bytes)) or getattr(getattr(step, "dtype", None), "kind", None) == "b":
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


def _iso(t: float) -> str:
    if not math.isfinite(t):
        raise UsageError(f"clock returned {t!r}")
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()
