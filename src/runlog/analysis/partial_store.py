"""The partial cache's storage (``analysis.partial_cache``): per run, an index of entries (``index.json``) and
immutable Arrow IPC segments beside the probe cache, read-merged-written under a lock."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..errors import said_trouble
from ..probe_cache import atomic_write, cache_dir, file_version, locked, read_versioned, run_digest

if TYPE_CHECKING:
    from .partial_cache import Unit

# Bump when the index or the segments change shape (2: each component's NaN and null counts). An index of
# another format, or of other aggregating code (``partial_cache.code_key``), is ignored and replaced.
FORMAT = 2
MAX_SEGMENTS = 8  # more than this after a save: the live entries are rewritten into one segment per variant
UNIT = "__unit"  # the entry id column of a segment
# The columns every segment holds (more: the components'; per role, ``role`` and ``level`` too): a segment
# without them was not written by this code, and is treated as unreadable.
SEGMENT_COLUMNS = (UNIT, "split", "step", "reward_n", "reward_mean", "reward_m2", "reward_values", "rows", "parts")


def _missing_columns(frame: pl.DataFrame, eids: Sequence[str]) -> list[str]:
    wanted = [*SEGMENT_COLUMNS, *(("role", "level") if any(e.startswith("role/") for e in eids) else ())]
    # A component's partial is whole or absent (a step without it): one without its NaN and null counts would
    # merge as none of them.
    for c in frame.columns:
        if c.startswith("component/") and c.endswith("_n"):
            wanted += [f"{c[:-2]}_{p}" for p in ("mean", "nan", "null")]
    return [c for c in wanted if c not in frame.columns]


# The kind of each column a segment holds, by its name, as ``partials.summarize_partials`` writes it: the ids and
# keys text, the counts integers, the moments and extremes floats, the median's values a list of floats.
_TEXT = frozenset({UNIT, "split", "role", "level"})
_INTEGERS = frozenset({"step", "rows", "groups", "zero_groups", "parts"})
_COUNT_SUFFIXES = ("_n", "_nan", "_null")
_FLOAT_SUFFIXES = ("_mean", "_m2", "_min", "_max", "_sum", "_median")


def _wrong_type(frame: pl.DataFrame) -> str | None:
    """The first column of ``frame`` (a segment read back) whose type is not the one the store writes for it, as
    ``column reward_n holds String, not integers``; None where every column it knows is of its kind. A segment
    that still parses with every column there, one of them of another type (rewritten by another program),
    would otherwise fail the merge of every later command (``sum`` of text: an internal error, exit 3). A column
    of nulls only (type ``Null``) is of any kind but the ids'."""
    for name, dtype in frame.schema.items():
        if name in _TEXT:
            ok, kind = dtype == pl.String or (dtype == pl.Null and name != UNIT), "text"
        elif name in _INTEGERS or name.endswith(_COUNT_SUFFIXES):
            ok, kind = dtype.is_integer() or (dtype == pl.Null and name != "step"), "integers"
        elif name.endswith("_values"):
            inner = dtype.inner if isinstance(dtype, pl.List) else None
            ok, kind = dtype == pl.Null or (inner is not None and inner.is_float()), "lists of floats"
        elif name.endswith(_FLOAT_SUFFIXES):
            ok, kind = dtype.is_float() or dtype == pl.Null, "floats"
        else:
            continue
        if not ok:
            return f"column {name} holds {dtype}, not {kind}"
    return None


# The partials of every run together are brought back under this many MiB after a save, at most once a minute
# (``trim``). The median keeps every reward value: about 2 % of a run's Parquet.
BUDGET_VAR = "RUNLOG_CACHE_MAX_MB"
DEFAULT_BUDGET_MB = 2048
USED = "used"  # touched when a command reads a run's partials (at most once a minute): what "recently" means
CHECKED = "partials.checked"  # beside partials/, touched at each check: a fleet's saves check once a minute
EVERY_S = 60.0
_warned: set[str] = set()
_said: set[str] = set()  # the unreadable indexes and segments said in this process: each once per command
# The errors of a read that a later read may not meet (too many open files, no memory, an NFS hiccup): the segment
# is kept and its steps computed again. Every other error of the system is the file's own and stays (no permission:
# another user's 0600 segment in a shared cache folder; a folder in its place): the segment is unreadable, said
# once and taken out of the cache as a corrupt one is, or every command would say it, compute its steps again and
# keep no answer (``errors.said_trouble``).
TRANSIENT = frozenset(
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOMEM", "EIO", "EINTR", "EAGAIN", "EWOULDBLOCK", "ESTALE", "ETIMEDOUT")
    if hasattr(errno, name)
)


def budget_bytes() -> int:
    """``RUNLOG_CACHE_MAX_MB`` in bytes (default 2 GiB); a value that is not a positive number is said once on
    stderr and the default kept."""
    raw = os.environ.get(BUDGET_VAR, "").strip()
    if raw:
        try:
            mb = float(raw)
            if mb > 0 and mb != float("inf"):
                return int(mb * (1 << 20))
        except ValueError:
            pass
        if raw not in _warned:
            _warned.add(raw)
            sys.stderr.write(
                f"warning: {BUDGET_VAR}={raw[:40]!r} is not a positive number of MiB; "
                f"the partial cache keeps {DEFAULT_BUDGET_MB} MiB\n"
            )
            said_trouble()
    return DEFAULT_BUDGET_MB << 20


def _say(line: str) -> None:
    """One warning line on stderr, its control characters made visible (a path may hold them)."""
    from ..textsafe import visible

    sys.stderr.write(visible(line, keep_newlines=False) + "\n")


def _touch_if_older(path: Path, seconds: float) -> bool:
    """Set ``path``'s modification time to now (creating it) unless it was set less than ``seconds`` ago
    (a time in the future, a skewed clock, counts as long ago); whether it was touched. Best effort."""
    try:
        if 0 <= time.time() - path.stat().st_mtime < seconds:
            return False
    except OSError:
        pass
    try:
        path.touch()
    except OSError:
        return False
    return True


_DIGEST = re.compile(r"[0-9a-f]{32}")  # a run's folder (``probe_cache.run_digest``): nothing else is deleted


def trim(partials: Path, keep: Path, budget: int) -> list[Path]:
    """Bring the run folders of ``partials`` back under ``budget`` bytes: delete those read least recently
    (their ``USED`` stamp, else their index, else the folder's own time), never ``keep``, nor a folder
    written in the last ``EVERY_S`` seconds (another command may be saving into it), nor one whose index lock
    another command holds; the folders deleted. A folder is renamed aside under its lock, then deleted, so
    that no command can take a lock of a folder half gone. A command reading a folder as it goes only
    recomputes (a segment gone reads as an entry not stored)."""
    folders: list[tuple[float, int, Path]] = []
    total = 0
    now = time.time()
    try:
        entries = list(os.scandir(partials))
    except OSError:
        return []
    for d in entries:
        try:
            if d.name.startswith(".trash-") and d.is_dir(follow_symlinks=False):
                if not 0 <= now - d.stat(follow_symlinks=False).st_mtime < EVERY_S:
                    shutil.rmtree(d.path, ignore_errors=True)  # left by a deletion cut short
                continue
            if not _DIGEST.fullmatch(d.name) or not d.is_dir(follow_symlinks=False):
                continue
            size, stamps = 0, {}
            for f in os.scandir(d.path):
                if f.is_file(follow_symlinks=False):
                    st = f.stat(follow_symlinks=False)
                    size += st.st_size
                    stamps[f.name] = st.st_mtime
            own = d.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        total += size
        latest = max([own, *stamps.values()])
        if Path(d.path) == keep or 0 <= now - latest < EVERY_S:
            continue  # counted, never deleted
        folders.append((stamps.get(USED, stamps.get("index.json", own)), size, Path(d.path)))
    removed: list[Path] = []
    for _, size, path in sorted(folders, key=lambda t: t[0]):
        if total <= budget:
            break
        if _delete(path):
            removed.append(path)
            total -= size
    return removed


def _delete(folder: Path) -> bool:
    """Delete a run's folder if no command holds its index lock: renamed aside while holding it (POSIX)."""
    aside = folder.with_name(f".trash-{uuid.uuid4().hex}")
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (Windows: no lock to honour)
        fcntl = None  # type: ignore[assignment]
    try:
        with open(folder / "index.lock", "a") as fh:
            if fcntl is not None:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False  # a command is saving into it
            os.rename(folder, aside)
    except OSError:
        return False
    shutil.rmtree(aside, ignore_errors=True)
    return True


def _code_key() -> str:
    """The hash of the aggregating code (``partial_cache.code_key``): entries of other code are ignored."""
    from . import partial_cache

    return partial_cache.code_key()


class PartialStore:
    """The stored partials of one run: ``load`` the entries of some units, ``save`` new ones."""

    def __init__(self, folder: Path, root: str):
        self.folder = folder
        self.root = root
        self.index: dict[str, dict[str, Any]] = {}
        self.reported = False
        self.promised = False  # "rebuilding it" was said (``_report``)
        self.version: tuple[int, ...] | None = None  # of the index as read (``read_versioned``)

    @classmethod
    def open(cls, root: Any) -> PartialStore | None:
        """The store of the run at ``root``, or None when the cache is turned off."""
        base = cache_dir()
        if base is None:
            return None
        budget_bytes()  # a bad ``RUNLOG_CACHE_MAX_MB`` is said by every command that uses the cache (an env read)
        name, digest = run_digest(root)
        store = cls(base / "partials" / digest, name)
        store.index = store._read_index()
        if store.index:
            _touch_if_older(store.folder / USED, EVERY_S)
        return store

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def _report(self, what: str, exc: BaseException) -> None:
        """One line on stderr (the first trouble of this store, and each file once per command: a command may open
        the store several times): the entries are dropped, and rebuilt on save where the cache folder can be
        written; where it cannot (a read-only cache shared with other users), said so, not "rebuilding"."""
        if self.reported:
            return
        self.reported = True
        said_trouble()
        if what in _said:
            return
        _said.add(what)
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror.strip()[:200]  # without the errno and the path the line names already
        else:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        why_not = self._unwritable()
        self.promised = why_not is None
        then = "rebuilding it" if why_not is None else f"it cannot be rebuilt here ({why_not})"
        _say(f"warning: the partial cache {what} is unreadable ({reason}); {then}")

    def _report_now(self, what: str, exc: OSError) -> None:
        """One line on stderr for a segment (or the index) the system would not read at this moment (an error of the
        read itself, not of its content): its steps are computed again, and it is kept."""
        said_trouble()
        if what in _said:
            return
        _said.add(what)
        reason = (exc.strerror or str(exc)).strip()[:200]
        _say(f"warning: the partial cache {what} could not be read now ({reason}); its steps are computed again")

    def _unwritable(self) -> str | None:
        """Why a save cannot replace the index and write segments, or None where it can: the run's cache folder
        (or the nearest folder above it that exists) can be written, and its lock file, where there is one, too
        (every save takes it: another user's lock file, read-only to this one, makes the folder read-only to this
        user; a folder in its place can be taken by no one)."""
        folder = self.folder
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return "the cache folder is read-only"
        lock = self.lock_path
        if lock.exists() and not lock.is_file():
            _said.add(str(lock))  # said here: ``_lock_trouble`` says it no more
            return f"{lock.name} is not a file: remove it"
        if lock.exists() and not os.access(lock, os.W_OK):
            return "the cache folder is read-only"
        return None

    @property
    def lock_path(self) -> Path:
        return self.folder / "index.lock"

    def _lock_trouble(self) -> None:
        """Say once (per command) that the lock file is not a file (a folder in its place): no save can take it, so
        nothing is stored in the cache, where a read-only cache would be left quiet (another user's, shared)."""
        lock = self.lock_path
        if not lock.exists() or lock.is_file() or str(lock) in _said:
            return
        _said.add(str(lock))
        said_trouble()
        _say(f"warning: the partial cache {lock} is not a file; nothing is stored in this cache until it is removed")

    def _read_index(self) -> dict[str, dict[str, Any]]:
        try:
            raw, self.version = read_versioned(self.index_path)
        except FileNotFoundError:
            return {}  # none yet
        except OSError as exc:
            # There, and not read: now (an NFS hiccup), or ever (a folder in its place, another user's 0600 file),
            # said as a corrupt index is, and rebuilt by the next save (``_write_index``).
            if exc.errno in TRANSIENT:
                self._report_now(str(self.index_path), exc)
            else:
                self._report(str(self.index_path), exc)
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as exc:
            self._report(str(self.index_path), exc)
            return {}
        if data.get("format") != FORMAT or data.get("code") != _code_key() or data.get("root") != self.root:
            return {}  # written by other code, or another run's: ignored, replaced on the next save
        entries: Any = data.get("entries")  # checked just below
        ok = isinstance(entries, dict) and all(
            isinstance(e, dict)
            and isinstance(e.get("files"), str)
            and isinstance(e.get("seg"), str)
            and type(e.get("step")) is int
            and "/" not in e["seg"]
            for e in entries.values()
        )
        if not ok:
            self._report(str(self.index_path), ValueError("unexpected entries"))
            return {}
        return entries

    def lookup(self, variant: str, unit: Unit) -> str | None:
        """The entry id of ``unit``'s partials of ``variant``, if stored for these very files."""
        eid = f"{variant}:{unit.step}"
        e = self.index.get(eid)
        return eid if e is not None and unit.files_id is not None and e["files"] == unit.files_id else None

    def load(self, ids: Sequence[str], repair: bool = True) -> tuple[pl.DataFrame | None, set[str]]:
        """The stored rows of the entries ``ids`` and the ids found (a segment gone or unreadable: its
        entries are missing, to be computed again). An unreadable segment (corrupt, or one the system will
        not read: no permission) is also taken out of the cache on disk (``repair``; not under ``save``'s
        lock, where the index written drops it anyway), so that the next command neither says it again nor
        depends on a save to rebuild it; one the system would not read at this moment (``TRANSIENT``) is kept."""
        by_seg: dict[str, list[str]] = {}
        for eid in ids:
            by_seg.setdefault(self.index[eid]["seg"], []).append(eid)
        frames, found, bad = [], set(), []
        for seg, eids in by_seg.items():
            path = self.folder / seg
            try:
                with open(path, "rb") as fh:  # a handle, not a path: polars would read ``[`` in it as a glob
                    frame = pl.read_ipc(fh)
                missing = _missing_columns(frame, eids)
                if missing:
                    raise ValueError(f"no {', '.join(missing)} column")
                wrong = _wrong_type(frame)
                if wrong is not None:
                    raise ValueError(wrong)
            except FileNotFoundError:
                continue  # compacted away by another command since the index was read
            except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
                if isinstance(exc, OSError) and exc.errno in TRANSIENT:
                    # The system would not read it now (too many open files, an NFS I/O error): its steps are
                    # computed again, the segment kept (a review: a good segment was deleted for it).
                    self._report_now(str(path), exc)
                    continue
                self._report(str(path), exc)
                bad.append(seg)
                for eid in list(self.index):
                    if self.index[eid]["seg"] == seg:
                        del self.index[eid]
                continue
            # Always filtered to the entries asked for, by id: a segment also holds the rows of entries that
            # point elsewhere now (a step saved again since: its old numbers), and of entries dropped.
            frame = frame.filter(pl.col(UNIT).is_in(eids))
            # Only the entries the segment holds rows of are found: one it lacks is computed again, never
            # taken for a step without rows.
            found.update(frame[UNIT].unique().to_list())
            frames.append(frame)
        if bad and repair:
            self._forget(bad)
        if not frames:
            return None, found
        return (frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")), found

    def _forget(self, segs: list[str]) -> None:
        """Take the unreadable segments ``segs`` out of the cache on disk: the index (as on disk now, under the
        lock: another command may have added entries) loses the entries that point to them, and they are
        deleted. This is the rebuild "rebuilding it" promised (``_report``): their steps, computed again, are
        stored by the save that follows where they can be, and a command that stores nothing (a step just
        written) no longer meets them. A segment that cannot be deleted (another user's, in a folder with the
        sticky bit) is only no longer pointed to: no command reads it again. Best effort: a read-only cache is
        left as it is."""
        try:
            with locked(self.lock_path):
                on_disk = self._read_index()
                kept = {eid: e for eid, e in on_disk.items() if e["seg"] not in segs}
                if len(kept) < len(on_disk):
                    self._write_index(kept)
                for seg in segs:
                    with contextlib.suppress(OSError):
                        (self.folder / seg).unlink()
        except OSError:
            pass
        self.version = None  # the index on disk may no longer be the one read: a save reads it again

    def save(
        self, variant: str, stored: dict[str, Unit], rows: pl.DataFrame, live: dict[int, Unit], complete: bool = True
    ) -> None:
        """Store ``rows`` (with the ``UNIT`` column) as the entries of the units ``stored``; ``live``: the
        units of the run now: entries of changed steps are dropped, and (when ``complete``: every file of the
        run was opened) those of steps gone. Best effort: a read-only or full disk just means no cache."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            seg = f"seg-{uuid.uuid4().hex}.arrow"
            new = {
                f"{variant}:{u.step}": {"step": u.step, "files": u.files_id, "seg": seg}
                for u in stored.values()
                if u.files_id is not None
            }
            with locked(self.lock_path):
                # The segment is written under the lock: written before it, another command's garbage
                # collection (segments no entry points to) could delete it before this index points to it.
                written = [seg]
                try:
                    atomic_write(self.folder / seg, rows.write_ipc)
                    # An index still as read holds nothing another command added: no second parse.
                    unchanged = self.version is not None and file_version(self.index_path) == self.version
                    self.index = self._merge(self.index if unchanged else self._read_index(), new, live, complete)
                    self._compact(live, written)
                    self._write_index(self.index)
                except BaseException:
                    # No index points to them: no command would read them, nor collect them (garbage is collected
                    # after an index is written), and each save would leave one more.
                    for name in written:
                        with contextlib.suppress(OSError):
                            (self.folder / name).unlink()
                    raise
                self._collect_garbage()
            (self.folder / USED).touch()
            if _touch_if_older(self.folder.parent.parent / CHECKED, EVERY_S):
                trim(self.folder.parent, self.folder, budget_bytes())
        except (OSError, ValueError, TypeError, pl.exceptions.PolarsError) as exc:
            self._lock_trouble()
            if self.promised and str(self.folder) not in _said:
                # "rebuilding it" was said: the save that was to rebuild it failed (a full disk), said once.
                _said.add(str(self.folder))
                reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                _say(f"warning: the partial cache {self.folder} could not be rebuilt ({reason})")
            return

    @staticmethod
    def _merge(on_disk: dict[str, Any], new: dict[str, Any], live: dict[int, Unit], complete: bool) -> dict[str, Any]:
        def valid(e: dict[str, Any]) -> bool:
            u = live.get(e["step"])
            if u is None:
                return not complete  # a step not opened this time (``open_run(keep=...)``) may still exist
            return u.files_id == e["files"]

        merged = {eid: e for eid, e in on_disk.items() if valid(e)}
        merged.update(new)
        return merged

    def _compact(self, live: dict[int, Unit], written: list[str]) -> None:
        """Rewrite the live entries into one segment per variant when there are many segments (each one's name
        added to ``written``). Never one segment for two variants: their rows have other columns (per-role rows
        a ``level``), and a per-sample entry read back with a null ``level`` would merge into nothing."""
        segs = {e["seg"] for e in self.index.values()}
        if len(segs) <= MAX_SEGMENTS:
            return
        by_variant: dict[str, list[str]] = {}
        for eid in self.index:
            by_variant.setdefault(eid.rsplit(":", 1)[0], []).append(eid)
        compacted: dict[str, dict[str, Any]] = {}
        for eids in by_variant.values():
            frame, found = self.load(eids, repair=False)
            if frame is None:
                continue
            seg = f"seg-{uuid.uuid4().hex}.arrow"
            written.append(seg)
            atomic_write(self.folder / seg, frame.write_ipc)
            compacted.update({eid: {**self.index[eid], "seg": seg} for eid in eids if eid in found})
        self.index = compacted

    def _write_index(self, entries: dict[str, dict[str, Any]]) -> None:
        """Replace the index (under the lock). A folder in its place (said unreadable, ``_read_index``) is deleted
        first, as the rebuild promised: nothing but this store writes there."""
        data = {"format": FORMAT, "code": _code_key(), "root": self.root, "entries": entries}
        if self.index_path.is_dir() and not self.index_path.is_symlink():
            shutil.rmtree(self.index_path)
        atomic_write(self.index_path, lambda fh: fh.write(json.dumps(data, separators=(",", ":")).encode()))

    def _collect_garbage(self) -> None:
        used = {e["seg"] for e in self.index.values()}
        for p in self.folder.glob("seg-*.arrow"):
            if p.name not in used:
                try:
                    p.unlink()
                except OSError:
                    continue
