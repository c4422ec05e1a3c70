"""Where a run lives: a local directory, or a prefix in an object store (``s3://``, ``gs://``, ``az://``).

Remote runs are read where they are. Listing and the small reads discovery needs (Parquet footers, JSONL
files) go through ``obstore`` with many requests in flight at once: thousands of small objects read one
after the other are bound by latency, not bandwidth. Data itself is read by polars' own object-store
reader (``scan_parquet(url, storage_options=...)``), with projection and predicate pushdown as for local
files. Both speak ``object_store``'s option names, so one set of ``--storage-option KEY=VALUE`` pairs (and
the standard environment: ``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_*``) configures both.

A file of a remote run is an ``ObjectPath``: it has the few ``pathlib`` members readers use (``name``,
``suffix``, ``parent``, ``read_bytes``), and ``str()`` gives its URL.
"""

from __future__ import annotations

import builtins
import os
import re
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DataError, RunNotFoundError, UsageError
from .storage_config import (
    StorageOptions,
    obstore_options,
    parse_storage_options,
)
from .storage_config import (
    polars_options as _polars_options,
)
from .textsafe import visible

# URL scheme -> object_store family. ``gcs`` and the Azure spellings are accepted as aliases.
SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "azure": "az",
    "abfs": "az",
    "abfss": "az",
}
# Reads issued at once. Object stores serve many parallel requests well; the bound keeps sockets and memory
# in check on runs of tens of thousands of files. Override with RUNLOG_REMOTE_CONCURRENCY.
DEFAULT_CONCURRENCY = 64
# Bytes read from the end of a Parquet object: the footer of a typical sample file is a few KiB, so one
# request nearly always gets it whole (a second one reads the rest otherwise).
TAIL_BYTES = 64 * 1024
# Non-Parquet files (JSONL scalars, manifests, CSV) up to this size are fetched whole during discovery.
WHOLE_BYTES = 32 * 1024 * 1024
# A key of these kinds that cannot be listed is an error (data lost), as ``listing.DATA_SUFFIXES`` says locally.
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".eval")


def digest_bytes(fh: Any, digest: Any, length: int) -> int:
    """Feed the next ``length`` bytes of the open file ``fh`` to ``digest`` (a ``hashlib`` object), a megabyte at
    a time; the bytes read (fewer where the file ends first)."""
    read = 0
    while read < length:
        piece = fh.read(min(length - read, 1 << 20))
        if not piece:
            break
        digest.update(piece)
        read += len(piece)
    return read


def local_stamp(st: os.stat_result) -> tuple:
    """What identifies one version of a local file: size, modification and change times, inode (here, below the
    listing and the layouts, which both use it)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def is_url(path: object) -> bool:
    """True for an object-store URL (``s3://...``); local paths, ``file://`` included, are False."""
    if not isinstance(path, str):
        return isinstance(path, ObjectPath)
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def split_url(url: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b`` -> (``s3``, ``bucket``, ``a/b``); the scheme is the family name. One trailing ``/``
    (a folder, ``s3://b/runs/r1/``) is no part of the key.

    A key with an empty segment (``s3://b/runs//x``, ``s3://b//x``) is refused, naming the URL: unlike a local
    path's ``runs//x``, it is not the key ``runs/x`` (an S3 key may hold ``//``: both can exist, as two runs),
    and object_store, through which runlog lists and reads, cannot read a key holding one ("contained empty path
    segment"). Dropping the empty segment read the other run, ``runs/x``, and said nothing."""
    scheme, sep, rest = url.partition("://")
    family = SCHEMES.get(scheme.lower()) if sep else None
    if family is None:
        raise UsageError(f"{url}: not an object-store URL (expected s3://, gs:// or az://)")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UsageError(f"{url}: the URL names no bucket")
    key = key.removesuffix("/")
    if key and "" in key.split("/"):
        other = "/".join(part for part in key.split("/") if part)
        raise UsageError(
            f"{url}: the key {key} holds an empty segment ('//'), which the object-store client cannot read; "
            f"{scheme}://{bucket}/{other} is another key, not read in its place"
        )
    return family, bucket, key


@dataclass(frozen=True)
class ObjectMeta:
    key: str
    size: int
    modified: float | None = None  # seconds since the epoch
    etag: str | None = None


class Store:
    """One bucket (or container), opened once and shared by every file of the runs in it."""

    _cache: dict[tuple, Store] = {}
    _lock = threading.Lock()

    def __init__(self, family: str, scheme: str, bucket: str, options: StorageOptions):
        self.family = family
        self.scheme = scheme
        self.bucket = bucket
        self.options = options.as_dict()
        self.base = f"{scheme}://{bucket}"
        self._whole: dict[str, bytes] = {}
        self._tails: dict[str, bytes] = {}
        self._meta: dict[str, ObjectMeta] = {}
        try:
            import obstore.store
        except ImportError:  # pragma: no cover  (obstore is a core dependency)
            raise UsageError("reading object-store URLs needs obstore: pip install obstore") from None
        config, client, retry = obstore_options(family, self.options)
        # The user's options, checked by obstore itself: no one of its per-family config types fits them all.
        store_args: dict[str, Any] = {"config": config or None, "client_options": client or None, "retry_config": retry}
        try:
            self.store = obstore.store.from_url(self.base, **store_args)
        except Exception as exc:  # noqa: BLE001  (bad option names or values: say which)
            if family == "az" and "account must be specified" in str(exc).lower():
                # Azure's builder found no storage account (no AZURE_STORAGE_ACCOUNT_NAME, no option, none in the
                # URL): no credentials, said and coded as s3's and gs's are (exit 1), not obstore's words (exit 2).
                raise DataError(self.base, f"no usable credentials ({CREDENTIALS_HINT['az']})") from None
            raise UsageError(f"{self.base}: cannot configure the object store: {_short(exc)}") from None
        except BaseException as exc:
            # obstore panics on some option it was not meant to get (a client key passed as config): pyo3's
            # PanicException, a BaseException. KeyboardInterrupt and SystemExit go on.
            if not is_panic(exc):
                raise
            raise UsageError(f"{self.base}: cannot configure the object store: {_short(exc)}") from None

    @classmethod
    def for_url(cls, url: str, options: Mapping[str, str] | None = None) -> Store:
        scheme = url.partition("://")[0].lower()
        family, bucket, _ = split_url(url)
        opts = StorageOptions.of(options or {})
        key = (scheme, bucket, opts)
        with cls._lock:
            store = cls._cache.get(key)
            if store is None:
                store = cls._cache[key] = cls(family, scheme, bucket, opts)
        return store

    @property
    def polars_options(self) -> dict[str, Any]:
        """The options of polars' reader: the user's, with bounds on a store that never answers
        (``storage_config.polars_options``)."""
        return _polars_options(self.family, self.options)

    def url(self, key: str) -> str:
        return f"{self.base}/{key}"

    # -- listing ------------------------------------------------------------------------------------------
    def list(self, prefix: str) -> builtins.list[ObjectMeta]:
        """Every object below ``prefix`` (a folder: ``prefix/``), recursively."""
        return self.list_keeping(prefix)[0]

    def list_keeping(self, prefix: str) -> tuple[builtins.list[ObjectMeta], builtins.list[tuple[str, bool]]]:
        """``list``, and the keys it could not list: (key, whether objects before it in its folder may be
        missing). A key object_store cannot take as a path (a control character, a ``..`` segment) fails the
        listing page that holds it; such keys are stepped over (``_past``) and what came before them is listed
        folder by folder (``_before``), so one stray key costs its own object, not the run."""
        import obstore

        pre = f"{prefix.strip('/')}/" if prefix.strip("/") else None
        found: dict[str, ObjectMeta] = {}
        bad: builtins.list[tuple[str, bool]] = []
        offset: str | None = None
        while True:
            try:
                for chunk in obstore.list(self.store, pre, offset=offset, chunk_size=1000):
                    for m in chunk:
                        meta = self._saw(_meta(m))
                        found[meta.key] = meta
                        offset = meta.key
                break
            except Exception as exc:  # noqa: BLE001  (obstore's errors are mapped to one line below)
                key = invalid_key(exc)
                past = _past(key) if key is not None else None
                if key is None or past is None or any(k == key for k, _ in bad):
                    raise _remote_error(self.url(prefix), exc) from None
                before, whole = self._before(pre, key, offset)
                for meta in before:
                    found[meta.key] = meta
                bad.append((key, not whole))
                offset = past
        return sorted(found.values(), key=lambda m: m.key), bad

    def _before(self, pre: str | None, key: str, after: str | None) -> tuple[builtins.list[ObjectMeta], bool]:
        """The objects below ``pre`` after ``after`` and before ``key`` (a key that cannot be listed), walked
        folder by folder from ``pre`` down to ``key``'s folder; and whether that walk saw every one (a folder
        that holds ``key`` itself, or a sub-folder named so, cannot be listed: its objects before it are lost)."""
        import obstore

        try:
            res = obstore.list_with_delimiter(self.store, pre)
        except Exception:  # noqa: BLE001  (the bad key is in this very folder)
            return [], False
        out = [
            self._saw(_meta(m))
            for m in res["objects"]
            if str(m["path"]) < key and (after is None or str(m["path"]) > after)
        ]
        whole = True
        for d in res["common_prefixes"]:
            folder = f"{str(d).rstrip('/')}/"
            if key.startswith(folder):
                more, seen = self._before(folder, key, after)
                out += more
                whole = whole and seen
            elif folder < key and (after is None or after < folder or after.startswith(folder)):
                metas, bad = self.list_keeping(folder)
                out += [m for m in metas if after is None or m.key > after]
                whole = whole and not bad
        return out, whole

    def _saw(self, meta: ObjectMeta) -> ObjectMeta:
        """Record ``meta``, listed now; an object rewritten since its bytes were read is read afresh (a writer's
        state file rewritten from "open" to "closed": a watch held the first version for good otherwise)."""
        old = self._meta.get(meta.key)
        if old is not None and object_stamp(old) != object_stamp(meta):
            self.forget(meta.key)
        self._meta[meta.key] = meta
        return meta

    def has_below(self, prefix: str) -> bool:
        """Whether any object lies below ``prefix`` (a folder: ``prefix/``): one listing request of one key."""
        import obstore

        try:
            for chunk in obstore.list(self.store, f"{prefix.strip('/')}/", chunk_size=1):
                if chunk:
                    return True
        except Exception as exc:  # noqa: BLE001
            raise _remote_error(self.url(prefix), exc) from None
        return False

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        """The immediate sub-folders of ``prefix`` (keys ending without '/')."""
        return self.list_level(prefix)[0]

    def list_level(self, prefix: str) -> tuple[builtins.list[str], builtins.list[str]]:
        """The immediate sub-folders and the objects directly in ``prefix`` (keys without a trailing '/'; a
        folder's marker object, ``prefix/``, is no object of it), each sorted: one listing request per 1,000."""
        import obstore

        pre = f"{prefix.strip('/')}/" if prefix.strip("/") else None
        try:
            res = obstore.list_with_delimiter(self.store, pre)
        except Exception as exc:  # noqa: BLE001
            if invalid_key(exc) is None:
                raise _remote_error(self.url(prefix), exc) from None
            # A key object_store cannot take (``bad<TAB>name/``) fails the whole level: listed in full instead,
            # the folder of such a key kept (a glob matches it; reading it says why it cannot be read).
            metas, bad = self.list_keeping(prefix)
            found: set[str] = set()
            direct: builtins.list[dict[str, str]] = []
            for key in [m.key for m in metas] + [k for k, _ in bad]:
                rest = key[len(pre or "") :]
                if "/" in rest:
                    found.add(f"{pre or ''}{rest.split('/', 1)[0]}")
                else:
                    direct.append({"path": key})
            res = {"common_prefixes": sorted(found), "objects": direct}  # type: ignore[typeddict-item]
        dirs = sorted(p.rstrip("/") for p in res["common_prefixes"])
        objects = sorted(str(m["path"]) for m in res["objects"] if not str(m["path"]).endswith("/"))
        return dirs, [k for k in objects if k != (pre or "").rstrip("/")]

    def head(self, key: str) -> ObjectMeta | None:
        import obstore

        try:
            meta = self._saw(_meta(obstore.head(self.store, key)))
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "NotFoundError":
                return None
            raise _remote_error(self.url(key), exc) from None
        return meta

    # -- reads --------------------------------------------------------------------------------------------
    def read(self, key: str) -> bytes:
        """The whole object (from the discovery prefetch when there). Failures raise ``OSError`` with a short
        reason, as a local read would, so readers report them per file."""
        data = self._whole.get(key)
        if data is not None:
            return data
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except Exception as exc:  # noqa: BLE001
            raise _read_error(exc) from None

    def head_bytes(self, key: str, n: int) -> bytes:
        data = self._whole.get(key)
        if data is not None:
            return data[:n]
        import obstore

        size = self._meta[key].size if key in self._meta else None
        if size == 0:
            return b""
        try:
            return bytes(obstore.get_range(self.store, key, start=0, end=n if size is None else min(n, size)))
        except Exception as exc:  # noqa: BLE001
            raise _read_error(exc) from None

    def tail(self, key: str) -> bytes | None:
        """The prefetched footer bytes of a Parquet object (``prefetch``), or None."""
        return self._tails.get(key)

    def prefetch(self, whole: Sequence[ObjectMeta] = (), footers: Sequence[ObjectMeta] = ()) -> None:
        """Fetch ``whole`` objects entirely and the footers of the Parquet objects ``footers``, concurrently.
        Failures are not raised here: the object is then read again (and the error reported) on use."""
        todo_whole = [m for m in whole if m.key not in self._whole and m.size <= WHOLE_BYTES]
        todo_tail = [m for m in footers if m.key not in self._tails and m.size >= 12]
        if todo_whole or todo_tail:
            _run_async(self._prefetch(todo_whole, todo_tail))

    async def _prefetch(self, whole: Sequence[ObjectMeta], tails: Sequence[ObjectMeta]) -> None:
        import asyncio

        import obstore

        sem = asyncio.Semaphore(concurrency())

        async def get_whole(m: ObjectMeta) -> None:
            async with sem:
                try:
                    res = await obstore.get_async(self.store, m.key)
                    self._whole[m.key] = bytes(await res.bytes_async())
                except Exception:  # noqa: BLE001,S110  (read again, and reported, on use)
                    pass

        async def get_tail(m: ObjectMeta) -> None:
            async with sem:
                try:
                    start = max(0, m.size - TAIL_BYTES)
                    data = bytes(await obstore.get_range_async(self.store, m.key, start=start, end=m.size))
                    if data[-4:] == b"PAR1" and len(data) >= 8:
                        need = struct.unpack("<I", data[-8:-4])[0] + 8
                        if need > len(data) and need <= m.size:
                            data = bytes(
                                await obstore.get_range_async(self.store, m.key, start=m.size - need, end=m.size)
                            )
                    self._tails[m.key] = data
                except Exception:  # noqa: BLE001,S110
                    pass

        await asyncio.gather(*(get_whole(m) for m in whole), *(get_tail(m) for m in tails))

    def forget(self, key: str) -> None:
        self._tails.pop(key, None)
        self._whole.pop(key, None)


class ObjectPath:
    """A file (or folder) in an object store with the ``pathlib`` members readers use; ``str()`` is the URL."""

    __slots__ = ("store", "key")

    def __init__(self, store: Store, key: str):
        self.store = store
        self.key = key.strip("/")

    def __str__(self) -> str:
        return self.store.url(self.key)

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(self.store, f"{self.key}/{name}" if self.key else name)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1] if self.key else self.store.bucket

    @property
    def suffix(self) -> str:
        name = self.name
        i = name.rfind(".")
        return name[i:] if 0 < i < len(name) - 1 else ""

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.store, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    @property
    def meta(self) -> ObjectMeta | None:
        return self.store._meta.get(self.key)

    def read_bytes(self) -> bytes:
        return self.store.read(self.key)

    def read_head(self, n: int) -> bytes:
        return self.store.head_bytes(self.key, n)

    def footer_bytes(self) -> bytes | None:
        return self.store.tail(self.key)

    def resolve(self) -> ObjectPath:
        return self

    def exists(self) -> bool:
        return self.store.head(self.key) is not None


def location(path: str | os.PathLike[str] | ObjectPath, options: Mapping[str, str] | None = None) -> ObjectPath:
    """The ``ObjectPath`` of a URL (its store opened once per bucket and options)."""
    if isinstance(path, ObjectPath):
        return path
    url = str(path)
    _, _, key = split_url(url)
    return ObjectPath(Store.for_url(url, options), key)


def names_something(url: str, options: Mapping[str, str] | None = None) -> bool:
    """Whether ``url`` names an object, or a prefix with objects below it, read literally (``exp[1]`` as those
    five characters): then it is that run, not a pattern, as a local path is. A missing bucket names nothing;
    other failures (the store out of reach, access denied) are raised, as reading it would."""
    try:
        root = location(url, options)
    except RunNotFoundError:
        return False
    if not root.key:
        return False
    try:
        return root.store.has_below(root.key) or root.store.head(root.key) is not None
    except RunNotFoundError:
        return False


def list_run(
    root: ObjectPath, issues: list[tuple[str, str, bool]] | None = None
) -> list[tuple[ObjectPath, str, int, str, tuple | None]]:
    """(file, run-relative posix path, size, URL, stamp) of every object below a remote run folder (hidden
    folders skipped), or of the single object ``root`` names. Missing: ``RunNotFoundError``. The stamp
    (size, ETag, modification time) changes whenever the object is rewritten; None if the store tells
    neither. ``issues`` receives (run-relative path, message, is_error) for each key that cannot be listed
    (``Store.list_keeping``), as ``listing.walk``'s for a file it cannot list: an error for a data file's name."""
    metas, bad = root.store.list_keeping(root.key)
    out: list[tuple[ObjectPath, str, int, str, tuple | None]] = []
    pre = f"{root.key}/" if root.key else ""
    for key, partial in bad:
        rel = key[len(pre) :] if key.startswith(pre) else key
        parts = rel.split("/")
        if any(p.startswith(".") and p != ".." for p in parts[:-1]):
            continue
        shown = visible(rel, keep_newlines=False)
        why = "its name cannot be read from the object store (a control character or a '..' segment): not read"
        if partial:
            folder = visible(rel.rpartition("/")[0] or ".", keep_newlines=False)
            why += f"; objects of {folder} listed before it may be missing too"
        if issues is not None:
            issues.append((shown, why, rel.lower().endswith(DATA_SUFFIXES)))
    markers = folder_markers(metas)
    for m in metas:
        rel = m.key[len(pre) :]
        if not rel or rel.endswith("/") or m.key in markers:
            continue
        parts = rel.split("/")
        if any(p.startswith(".") or p == "__pycache__" for p in parts[:-1]):
            continue
        p = ObjectPath(root.store, m.key)
        out.append((p, rel, m.size, str(p), object_stamp(m)))
    if not out and root.key:
        meta = root.store.head(root.key)
        if meta is not None:
            return [(root, root.name, meta.size, str(root), object_stamp(meta))]
    if not out and metas:
        # Keys below it, none a file: an empty folder's marker (``prefix/``, what a console's "Create folder"
        # writes), hidden folders. No files, as an empty folder on disk (docs/scaling.md), not a missing run.
        only = " (an empty folder: its marker object only)" if {m.key for m in metas} <= markers | {root.key} else ""
        raise RunNotFoundError(f"{root}: no files found{only}")
    if not out:
        raise RunNotFoundError(f"{root}: no such object or prefix")
    out.sort(key=lambda t: (not (t[1] == "run.json" or t[1].endswith("/run.json")), t[1]))
    return out


def folder_markers(metas: Sequence[ObjectMeta]) -> set[str]:
    """The keys of "folder" marker objects: what the S3 console's "Create folder" and sync tools write, a
    zero-byte ``prefix/``, which obstore lists without its ``/``. Such a key is no file (an empty folder on
    disk is none): one of size 0 that other keys lie below, or whose name has no suffix (no run file lacks one)."""
    import bisect

    keys = sorted(m.key for m in metas)

    def has_below(key: str) -> bool:
        i = bisect.bisect_left(keys, f"{key}/")
        return i < len(keys) and keys[i].startswith(f"{key}/")

    return {m.key for m in metas if m.size == 0 and ("." not in m.key.rsplit("/", 1)[-1] or has_below(m.key))}


def object_stamp(meta: ObjectMeta) -> tuple | None:
    """What identifies one version of an object: its size, ETag and modification time."""
    if meta.etag is None and meta.modified is None:
        return None
    return (meta.size, meta.etag, meta.modified)


def same_version(listed: tuple | None, now: tuple | None) -> bool | None:
    """Whether two stamps (``object_stamp``) of one key, one from a listing and one from a later listing or HEAD,
    are the same version of the object; None where they cannot tell (a store that gave neither). By size and
    ETag (``_bare_etag``) where both have one: a listing's modification time may carry milliseconds that a HEAD's
    ``Last-Modified`` (whole seconds) lacks, so the times are compared to the second, and only without ETags."""
    if listed is None or now is None:
        return None
    (size, etag, modified), (size_now, etag_now, modified_now) = listed, now
    if size != size_now:
        return False
    if etag is not None and etag_now is not None:
        return _bare_etag(etag) == _bare_etag(etag_now)
    if modified is None or modified_now is None:
        return None
    return int(modified) == int(modified_now)


def _bare_etag(etag: str) -> str:
    """An ETag without its quotes or weak mark: a GCS listing gives ``abc==`` where its HEAD gives ``"abc=="``."""
    return etag.removeprefix("W/").strip('"')


def prefetch_small(entries: Sequence[tuple[Any, ...]]) -> None:
    """Fetch every non-Parquet file of a remote listing whole, concurrently (discovery reads them anyway)."""
    by_store: dict[int, tuple[Store, list[ObjectMeta]]] = {}
    for p, _rel, size, *_rest in entries:
        if isinstance(p, ObjectPath) and p.suffix.lower() != ".parquet":
            by_store.setdefault(id(p.store), (p.store, []))[1].append(ObjectMeta(p.key, size))
    for store, metas in by_store.values():
        store.prefetch(whole=metas)


def prefetch_footers(paths: Sequence[tuple[Any, int]]) -> None:
    """Fetch the footers of remote Parquet files ``(path, size)``, concurrently."""
    by_store: dict[int, tuple[Store, list[ObjectMeta]]] = {}
    for p, size in paths:
        if isinstance(p, ObjectPath):
            by_store.setdefault(id(p.store), (p.store, []))[1].append(ObjectMeta(p.key, size))
    for store, metas in by_store.values():
        store.prefetch(footers=metas)


def polars_options(paths: Iterable[Any]) -> dict[str, Any] | None:
    """``storage_options`` for polars readers of these files (None for local files)."""
    for p in paths:
        if isinstance(p, ObjectPath):
            return p.store.polars_options or None
        return None
    return None


def read_bytes(path: Any) -> bytes:
    if isinstance(path, ObjectPath):
        return path.read_bytes()
    with open(path, "rb") as fh:
        return fh.read()


def read_head(path: Any, n: int) -> bytes:
    if isinstance(path, ObjectPath):
        return path.read_head(n)
    with open(path, "rb") as fh:
        return fh.read(n)


def concurrency() -> int:
    try:
        return max(1, int(os.environ.get("RUNLOG_REMOTE_CONCURRENCY", DEFAULT_CONCURRENCY)))
    except ValueError:
        return DEFAULT_CONCURRENCY


def _run_async(coro: Any) -> Any:
    """Run a coroutine to completion from synchronous code, also when an event loop is already running
    in this thread (a notebook): then in a helper thread."""
    import asyncio  # here, not at the top: it costs ~15 ms of every command's start-up

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(coro)))
    t.start()
    t.join()
    return result[0] if result else None


def _meta(m: Mapping[str, Any]) -> ObjectMeta:
    mod = m.get("last_modified")
    return ObjectMeta(
        key=m["path"],
        size=int(m.get("size") or 0),
        modified=mod.timestamp() if mod is not None and hasattr(mod, "timestamp") else None,
        etag=m.get("e_tag"),
    )


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic raised through pyo3 (``pyo3_runtime.PanicException``, a BaseException)."""
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"


def _short(exc: BaseException) -> str:
    text = invalid_said(exc) or str(exc).strip()
    return visible(text.splitlines()[0] if text else type(exc).__name__, keep_newlines=False)[:300]


_INVALID_KEY = re.compile(r'Error parsing Path "(.*?)": Encountered illegal', re.DOTALL)


def invalid_key(exc: BaseException) -> str | None:
    """The key of an object that object_store cannot take as a path (a control character, a ``..`` segment),
    when that is why ``exc`` (a listing's) failed."""
    m = _INVALID_KEY.search(str(exc))
    return m.group(1) if m else None


def invalid_said(exc: BaseException) -> str | None:
    """One line for a key object_store cannot take, the key escaped (a CR or LF in it cut the message before)."""
    key = invalid_key(exc)
    if key is None:
        return None
    shown = visible(key, keep_newlines=False)
    return f"the object key {shown} cannot be read from the object store (a control character or a '..' segment)"


def _past(key: str) -> str | None:
    """An offset to list from so that ``key`` (which object_store cannot take) and the keys that share its bad
    part are stepped over: the part before its first bad character, and the next character that is allowed (a
    key equal to that offset is the only good one stepped over too); None if nothing in ``key`` is bad."""
    for i, ch in enumerate(key):
        if ord(ch) < 0x20 or ch == "\x7f":
            return key[:i] + (" " if ch != "\x7f" else "\u0080")
    pos = 0
    for seg in key.split("/"):
        end = pos + len(seg)
        if seg == "..":
            return key[:end] + ("0" if end < len(key) else " ")  # '0' follows '/': past every ``../`` key
        pos = end + 1
    return None


UNREACHABLE = "cannot reach the object store (connection failed; check the endpoint and network)"
# What object_store / reqwest say when no answer came: refused, reset or timed-out connections, DNS. Not any text
# with "connect" in it: "error reading a body from connection" is one object's read that broke off.
UNREACHABLE_SIGNS = (
    "connection refused",
    "error sending request",
    "dns error",
    "failed to lookup address",
    "tcp connect error",
    "error trying to connect",
    "operation timed out",
)
BODY_BROKEN = ("error reading a body", "response body error", "end of file before message length")
BODY_CUT = "the object's content arrived cut short"


class UnreachableError(OSError):
    """The object store could not be reached (the connection failed, after the client's own retries): a
    failure of the store, not of one object, so a reader does not go on to try every other file (each would
    wait out the retries again: minutes on a run of a hundred files)."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (obstore's, polars' or :class:`UnreachableError`) says that the store cannot be reached."""
    return isinstance(exc, UnreachableError) or remote_reason(exc) == UNREACHABLE


def _read_error(exc: BaseException) -> OSError:
    """The ``OSError`` a failed read of one object raises: :class:`UnreachableError` when the store is gone."""
    reason = remote_reason(exc)
    return UnreachableError(reason) if reason == UNREACHABLE else OSError(reason)


def remote_reason(exc: BaseException) -> str:
    """A short reason for an object-store failure: the service's error code where it gives one (NoSuchBucket,
    AccessDenied, ...), else what went wrong in a few words."""
    said = invalid_said(exc)
    if said:
        return said
    text = str(exc)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if code:
        msg = re.search(r"<Message>([^<]+)</Message>", text)
        return f"{code.group(1)}" + (f": {msg.group(1)}" if msg else "")
    m = re.search(r'"message"\s*:\s*"([^"]+)"', text)
    if m:
        return m.group(1)
    low = text.lower()
    if "credential" in low or "token" in low and "error" in low:
        return "no usable credentials (set AWS_* / GOOGLE_APPLICATION_CREDENTIALS / AZURE_*, or --storage-option)"
    if any(sign in low for sign in BODY_BROKEN):
        # The answer began and broke off (a body cut short): a failed read of that object, not a store out of reach.
        # Its cause is the last line of the chain ("Caused by: ... end of file before message length reached"),
        # not of a Rust ``Debug`` dump that obstore may add (``Debug source: Generic { ... }``: its last line is
        # a lone "}"), and only a line with words in it.
        told = text.split("Debug source:", 1)[0]
        lines = [line.strip().lstrip("0123456789: ") for line in told.splitlines() if line.strip()]
        last = lines[-1] if len(lines) > 1 else ""
        cause = last if re.search(r"[A-Za-z]{2}", last) and "body" not in last.lower() else ""
        return f"{BODY_CUT}{f' ({cause})' if cause else ''}"
    if any(sign in low for sign in UNREACHABLE_SIGNS):
        return UNREACHABLE
    if "404" in text or "not found" in low:
        return "not found"
    if "403" in text or "401" in text or "denied" in low or "forbidden" in low:
        return "access denied (check the credentials)"
    return _short(exc)


CREDENTIALS_HINT = {
    "s3": "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or --storage-option",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS, or --storage-option google_service_account_path=FILE",
    "az": "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, or --storage-option",
}


def _remote_error(url: str, exc: BaseException) -> DataError | RunNotFoundError:
    reason = remote_reason(exc)
    if reason.startswith("no usable credentials"):
        family = SCHEMES.get(url.partition("://")[0].lower(), "s3")
        reason = f"no usable credentials ({CREDENTIALS_HINT[family]})"
    if reason.startswith("NoSuchBucket") or reason == "not found" or "NotFound" in type(exc).__name__:
        return RunNotFoundError(f"{url}: {reason}")
    return DataError(url, reason)


__all__ = [
    "ObjectPath",
    "StorageOptions",
    "Store",
    "is_url",
    "list_run",
    "object_stamp",
    "location",
    "parse_storage_options",
    "polars_options",
    "read_bytes",
    "read_head",
    "same_version",
]
