"""A cache of what discovery learned from each Parquet footer, kept between commands.

Discovery opens every Parquet footer of a run. On thousands of small files that is most of what a command
costs besides the query itself (2,000 footers: ~0.2 s locally; 10,000 objects on a store with 20 ms of
latency: ~30 s even with 64 requests in flight), and it is the same work every time: ``inspect``, then
``summarize``, then ``render-trajectory`` on a finished run parse the same footers three times. So the
result of each probe (the ``FileInfo`` fields, and the problems and notes it reported) is kept in a JSON
file per run under the user's cache folder, and reused while the file is unchanged.

"Unchanged" is decided the way ``git`` decides it for its index: by a stamp taken from the listing (size,
modification and change time, inode for a local file; size, ETag and modification time for an object),
which any rewrite changes. A file modified in the last few seconds is never cached, because a writer may
still be at work on it within the same clock tick ("racy" entries); on a file system of whole-second times,
nor one whose change time is that recent (``is_racy``). A change to the probing code (its
source files' hash: ``code_key``), or a file probed by another layout, starts afresh.

Commands that open parts of a run (a fleet's chunks of whole steps, possibly at the same time) share the
cache: each save merges what is on disk then, so that no part evicts another's entries.

The cache is an optimisation only: it never changes a result, and any trouble with it (an unreadable or
corrupt cache file, a read-only home) is ignored and the footers are read as before. It holds JSON only.

Where: ``$RUNLOG_CACHE_DIR``, else ``$XDG_CACHE_HOME/runlog``, else ``~/.cache/runlog``. ``RUNLOG_CACHE=off``
turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .formats.base import Candidate, FileInfo, Layout, Problem, RunContext

FORMAT = 2  # bump when the entry layout changes
RACY_SECONDS = 3.0  # files changed this recently are not cached: they may still be being written
DIR_VAR = "RUNLOG_CACHE_DIR"
SWITCH_VAR = "RUNLOG_CACHE"
OFF = ("0", "off", "false", "no")
# FileInfo fields kept per entry (``columns`` is kept once per distinct schema; path, abspath and payload
# come from the candidate or are not needed after probing).
FIELDS = (
    "fmt",
    "kind",
    "bytes",
    "schema_version",
    "rows",
    "split",
    "step",
    "steps",
    "process",
    "null_counts",
    "footer_bytes",
    "readable",
)


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    if os.environ.get(SWITCH_VAR, "").strip().lower() in OFF:
        return None
    explicit = os.environ.get(DIR_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    try:
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    except (RuntimeError, KeyError, OSError):
        return None  # no home folder to put a cache in: no cache
    return base / "runlog"


# What a probe depends on: the layouts (formats/), the schema and its migrations, cell parsing, this module.
PROBING_CODE = (
    "formats",
    "schema.py",
    "textparse.py",
    "probe_cache.py",
    "listing.py",
    "storage.py",
    "chat.py",
    "run.py",
)


def source_hash(names: tuple[str, ...]) -> str:
    """A hash of runlog's version and the source files ``names`` (paths below the package: files or folders):
    what a cached result depends on, so that entries written by other code are not used. Reading and
    hashing them costs well under a millisecond a command."""
    from . import __version__

    digest = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    for name in names:
        path = package / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(f.relative_to(package).as_posix().encode())
            try:
                digest.update(f.read_bytes())
            except OSError:
                digest.update(b"?")
    return digest.hexdigest()[:32]


@functools.cache
def code_key() -> str:
    """A hash of the probing code's source files (and runlog's version) (``source_hash``)."""
    return source_hash(PROBING_CODE)


def run_digest(root: Any) -> tuple[str, str]:
    """(name, digest) of the run at ``root`` (a local folder or an object-store location): the name cached
    entries record, and the digest their file is named by."""
    name = str(root) if not isinstance(root, Path) else str(root.resolve())
    return name, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def is_racy(stamp: tuple) -> bool:
    """Whether a file with this stamp changed too recently to be cached: a writer may still be at work on it
    within the same clock tick. Local stamps: (size, mtime_ns, ctime_ns, inode); remote: (size, etag,
    modified seconds).

    A local file's ctime counts too where it is whole seconds (NFSv3 or SMB to such a server, FAT, ext4 of
    small inodes): a file rewritten with its old mtime put back (``cp -p``, ``rsync -t``, ``tar x``) is
    recent by its ctime only, and a second same-size rewrite in that second leaves the whole stamp as it
    was. A finer ctime changes with a rewrite (bar one in the same kernel tick, milliseconds), so the stamp
    tells the versions apart."""
    if isinstance(stamp[1], int):
        ns = stamp[1]
        if len(stamp) > 2 and type(stamp[2]) is int and stamp[2] % 1_000_000_000 == 0:
            ns = max(ns, stamp[2])
        t: Any = ns / 1e9
    else:
        t = stamp[2] if len(stamp) > 2 else None
    return isinstance(t, (int, float)) and time.time() - t < RACY_SECONDS


def _is_int(v: Any) -> bool:
    return type(v) is int


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _is_str(v: Any) -> bool:
    return type(v) is str


# The type of each cached ``FileInfo`` field: an entry with another is not used (it would fail far from here).
_FIELD_TYPES: dict[str, Callable[[Any], bool]] = {
    "fmt": _is_str,
    "kind": _is_str,
    "bytes": _is_int,
    "schema_version": _optional(_is_int),
    "rows": _optional(_is_int),
    "split": _optional(_is_str),
    "step": _optional(_is_int),
    "steps": _optional(lambda v: type(v) is list and set(map(type, v)) <= {int}),
    "process": _optional(_is_int),
    # ``set(map(type, ...))``: the types of a dict's keys and values at C speed (a repeat checks 2,000 files)
    "null_counts": lambda v: type(v) is dict and set(map(type, v)) <= {str} and set(map(type, v.values())) <= {int},
    "footer_bytes": _optional(_is_int),
    "readable": lambda v: type(v) is bool,
}


def _well_typed(info: FileInfo) -> bool:
    """Whether each cached field has its type (the columns are checked once per schema, by ``_schema``)."""
    return all(check(getattr(info, name)) for name, check in _FIELD_TYPES.items())


@dataclass
class Hit:
    """A cached probe: the file's ``FileInfo`` and what its probe reported."""

    info: FileInfo
    problems: list[Problem]
    notes: list[tuple[str, str]]

    def replay(self, ctx: RunContext) -> FileInfo:
        ctx.problems.extend(self.problems)
        for layout, message in self.notes:
            ctx.note(layout, message)
        return self.info


class ProbeCache:
    """The cached probes of one run: looked up before probing, filled after, saved once at the end."""

    def __init__(self, path: Path, root: str):
        self.path = path
        self.root = root
        self.old: dict[str, Any] = {}
        self.schemas: list[dict[str, str]] = []
        self.new: dict[str, Any] = {}
        self._new_schemas: list[dict[str, str]] = []
        self._schema_index: dict[int, int] = {}  # id(columns) -> index in _new_schemas
        self._typed: dict[int, Any] = {}  # id -> schema found to map names to type strings (kept: ids stay theirs)
        self.changed = False
        self.version: tuple[int, ...] | None = None  # of the file as loaded (``read_versioned``)

    @classmethod
    def open(cls, root: Any) -> ProbeCache | None:
        """The cache of the run at ``root`` (a local folder or an object-store location), or None if the
        cache is turned off."""
        folder = cache_dir()
        if folder is None:
            return None
        name, digest = run_digest(root)
        cache = cls(folder / "probes" / f"{digest}.json", name)
        cache._load()
        return cache

    def _load(self) -> None:
        self.old, self.schemas = self._read()

    def _read(self) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The entries and schemas on disk, if they were written for this run by this probing code."""
        try:
            raw, self.version = read_versioned(self.path)
            data = json.loads(raw)
        except (OSError, ValueError, RecursionError):
            return {}, []
        if not (
            isinstance(data, dict)
            and data.get("format") == FORMAT
            and data.get("code") == code_key()
            and data.get("root") == self.root
            and isinstance(data.get("schemas"), list)
            and isinstance(data.get("files"), dict)
        ):
            return {}, []
        schemas = data["schemas"]
        if not all(isinstance(s, dict) for s in schemas):
            return {}, []
        return data["files"], schemas

    # -- lookup ------------------------------------------------------------------------------------------
    def lookup(self, cand: Candidate, layout: Layout) -> Hit | None:
        """The cached probe of ``cand`` by ``layout``, or None if there is none for this version of the
        file. ``replay`` it to report its problems and notes."""
        entry = self.old.get(cand.rel)
        if not isinstance(entry, dict) or cand.stamp is None:
            return None
        try:
            if entry["layout"] != layout.name or tuple(entry["stamp"]) != tuple(cand.stamp):
                return None
            fields = entry["info"]
            columns = self._schema(entry)
            if columns is None:
                return None
            info = FileInfo(
                path=cand.rel,
                abspath=cand.abspath,
                layout=layout.name,
                columns=columns,
                **{k: fields[k] for k in FIELDS},
            )
            problems = [Problem(cand.rel, str(kind), str(message)) for kind, message in entry["problems"]]
            notes = [(str(lay), str(message)) for lay, message in entry["notes"]]
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        if not _well_typed(info):  # a hand-edited or damaged entry: probed again, as if absent
            return None
        if not info.readable and not problems:
            # A probe that found a file unreadable always said why: an entry that leaves it out without a word
            # (hand-edited, damaged) would drop its rows silently. Probed again.
            return None
        self._keep(cand.rel, entry, columns)
        return Hit(info, problems, notes)

    def _schema(self, entry: Any, schemas: list[dict[str, str]] | None = None) -> dict[str, str] | None:
        """The column mapping an entry points to (in ``schemas``, by default the loaded ones), or None if the
        entry does not point to one (a corrupt or hand-edited cache: a negative or out-of-range index, not a
        number)."""
        schemas = self.schemas if schemas is None else schemas
        index = entry.get("schema") if isinstance(entry, dict) else None
        if type(index) is not int or not 0 <= index < len(schemas):
            return None
        columns = schemas[index]
        if self._typed.get(id(columns)) is not columns:  # each schema checked once, not once per file
            if not isinstance(columns, dict) or not all(_is_str(k) and _is_str(t) for k, t in columns.items()):
                return None
            self._typed[id(columns)] = columns
        return columns

    # -- filling -----------------------------------------------------------------------------------------
    def store(
        self, cand: Candidate, layout: Layout, info: FileInfo, problems: list[Problem], notes: list[dict[str, str]]
    ) -> None:
        """Remember a fresh probe of ``cand`` (unless the file changed too recently to be trusted)."""
        if cand.stamp is None or is_racy(cand.stamp):
            return
        if any(p.path != cand.rel for p in problems):
            return  # a probe that reported on another file depends on more than this file
        entry = {
            "layout": layout.name,
            "stamp": list(cand.stamp),
            "info": {k: getattr(info, k) for k in FIELDS},
            "problems": [[p.kind, p.message] for p in problems],
            "notes": [[n["layout"], n["message"]] for n in notes],
        }
        self._keep(cand.rel, entry, info.columns)
        self.changed = True

    def _keep(self, rel: str, entry: dict[str, Any], columns: dict[str, str]) -> None:
        index = self._schema_index.get(id(columns))
        if index is None or self._new_schemas[index] is not columns:
            index = len(self._new_schemas)
            self._new_schemas.append(columns)
            self._schema_index[id(columns)] = index
        self.new[rel] = {**entry, "schema": index}

    def _carry_over(self, entries: dict[str, Any], schemas: list[dict[str, str]], listed: set[str]) -> None:
        """Keep ``entries`` of files still ``listed`` that this command did not probe or look up."""
        for rel, entry in entries.items():
            if rel in self.new or rel not in listed:
                continue
            columns = self._schema(entry, schemas)
            if columns is not None:
                self._keep(rel, entry, columns)

    def save(self, listed: set[str]) -> None:
        """Write the cache if anything changed; atomically, best effort. ``listed``: every file of the run.
        Entries of files that are still listed but were not looked up this time (left out by a step filter,
        or opened by another chunk of a fleet) are kept: they are checked against their stamp when next used;
        what another command saved since this one loaded the cache is merged in. Entries of files gone are
        dropped."""
        self._carry_over(self.old, self.schemas, listed)
        if not self.changed and set(self.new) == set(self.old):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with locked(self.path.with_name(self.path.name + ".lock")):
                # What another command saved since the load is merged in; a file still as loaded is all in
                # ``new`` already (parsing 2,000 entries again: a fifth of saving 100 new probes).
                if self.version is None or file_version(self.path) != self.version:
                    self._carry_over(*self._read(), listed)
                self._write()
        except (OSError, ValueError, TypeError):
            return  # a read-only or full disk, a value JSON cannot hold: just no cache

    def _write(self) -> None:
        data = {
            "format": FORMAT,
            "code": code_key(),
            "root": self.root,
            "schemas": self._new_schemas,
            "files": self.new,
        }
        atomic_write(self.path, lambda fh: fh.write(json.dumps(data, separators=(",", ":"), allow_nan=False).encode()))


def read_versioned(path: Path) -> tuple[bytes, tuple[int, ...]]:
    """The bytes of ``path`` and the version they are of (size, modification and change times, inode of
    the file read; ``atomic_write`` gives each new version a new inode). Raises ``OSError``."""
    with open(path, "rb") as fh:
        data = fh.read()
        st = os.fstat(fh.fileno())
    return data, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_version(path: Path) -> tuple[int, ...] | None:
    """``path``'s version now (as ``read_versioned`` gives it), or None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it into place: a
    reader sees the old file or the new one, never a torn one. Errors propagate; the temporary file is
    removed."""
    import tempfile  # only when something changed: most commands on a seen run never write

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` around a read-merge-write of the cache (POSIX; elsewhere none: the merge
    still narrows the window in which two savers can lose an entry)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (Windows)
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


__all__ = [
    "Hit",
    "ProbeCache",
    "atomic_write",
    "cache_dir",
    "file_version",
    "is_racy",
    "locked",
    "read_versioned",
    "run_digest",
    "source_hash",
]
