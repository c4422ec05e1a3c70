"""Helpers shared by the layouts: Parquet footer probes and scans (``live_reads``: of a run being written),
robust JSONL parsing, long scalar frames."""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import schema as S
from .._lazy import LazyModule, pl
from ..errors import UPGRADE_HINT, DataError, RunlogError, said_trouble
from ..process import TWEAKS
from ..storage import ObjectPath, local_stamp, polars_options, read_bytes
from .base import (
    BAD_LINE,
    NEWER_VERSION,
    UNKNOWN_VERSION,
    UNREADABLE,
    WARNING,
    Candidate,
    FileInfo,
    ParquetFooter,
    Problem,
    RunContext,
)

# Imported on first use: a run whose footers are all cached (``runlog.probe_cache``) needs no pyarrow.
pa: Any = LazyModule("pyarrow")
pq: Any = LazyModule("pyarrow.parquet")
_pq: Any = LazyModule("pyarrow._parquet")

# ---------------------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg[:300]


# Footer statistics kept per file: null counts of numeric and exception columns, min/max of these ints.
EXCEPTION_COLUMNS = ("exception", "exception_info")
# String columns whose footer null counts answer questions without reading them (``prompt``: whether samples
# without a group_id have a prompt their groups could be found from, summarize's --prompt-groups hint).
NULL_COUNT_STRING_COLUMNS = (*EXCEPTION_COLUMNS, "group_id", "prompt", "split", "sample_id")
RANGE_COLUMNS = ("schema_version", "step")
_STAT_TYPES = frozenset(
    {"double", "float", "halffloat", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"}
)


@dataclass
class _FooterPlan:
    """What is derived from a Parquet schema once and reused for every file with an equal schema: the Arrow
    schema, the column types, and which leaf columns carry the statistics inspect needs. Thousands of
    files of one run nearly always share a schema, so this per-file work is done once."""

    parquet_schema: Any
    arrow_schema: pa.Schema
    columns: dict[str, str]
    leaves: list[tuple[int, str]]  # (leaf index, top-level column name)


def _plan_for(md: pq.FileMetaData, reader: Any, ctx: RunContext) -> _FooterPlan:
    plans: list[_FooterPlan] = ctx.cache.setdefault("footer_plans", [])
    pschema = md.schema
    for plan in plans:
        if plan.parquet_schema.equals(pschema):
            return plan
    arrow_schema = reader.schema_arrow if reader is not None else pschema.to_arrow_schema()
    columns = dict(zip(arrow_schema.names, map(str, arrow_schema.types), strict=True))
    wanted = {n for n, t in columns.items() if t in _STAT_TYPES or n in NULL_COUNT_STRING_COLUMNS}
    leaves = [(i, path) for i in range(md.num_columns) if (path := pschema.column(i).path) in wanted]
    plan = _FooterPlan(pschema, arrow_schema, columns, leaves)
    if len(plans) < 64:
        plans.append(plan)
    return plan


def _open_footer(cand: Candidate) -> tuple[pq.FileMetaData, Any]:
    """The footer, through pyarrow's low-level reader: it skips the per-file work of ``pq.read_metadata``
    (nested-path tables we do not need) and is about a third faster on many small files. For a remote file,
    from the footer bytes discovery prefetched (``storage.prefetch_footers``)."""
    if cand.footer_ready is not None:
        cand.footer_ready.result()
        cand.footer_ready = None
    if cand.footer is not None:
        footer, cand.footer = cand.footer, None
        if isinstance(footer, BaseException):
            raise footer
        return footer, None
    source: Any = cand.path_str
    if isinstance(cand.abspath, ObjectPath):
        tail = cand.abspath.footer_bytes()
        if tail is None:  # not prefetched (or that read failed): read it now, and report a failure
            tail = cand.abspath.read_bytes()
        source = pa.BufferReader(tail)
    reader_cls = getattr(_pq, "ParquetReader", None)
    if reader_cls is None:  # pragma: no cover  (a pyarrow without the private reader)
        return pq.read_metadata(source), None
    reader = reader_cls()
    reader.open(source)
    return reader.metadata, reader


# Local footers are opened by worker threads while discovery probes the ones already open, when a run has
# at least this many Parquet files: pyarrow parses a footer without the GIL, so the parsing of thousands of
# small footers overlaps discovery's own Python work. Fewer files are not worth the threads.
PREFETCH_MIN_FILES = 64
PREFETCH_CHUNK = 16


@contextlib.contextmanager
def local_footers(cands: list[Candidate], workers: int | None = None) -> Iterator[None]:
    """While the block runs, worker threads open the footers of the local Parquet candidates, in order, and
    keep each ``FileMetaData`` (or the exception) on its candidate, closing the file at once;
    ``probe_parquet`` waits for its candidate's chunk. Without the block, footers are opened when probed."""
    local = [c for c in cands if c.suffix == ".parquet" and not isinstance(c.abspath, ObjectPath)]
    n = workers or min(2, os.cpu_count() or 1)
    reader_cls = getattr(_pq, "ParquetReader", None) if len(local) >= PREFETCH_MIN_FILES else None
    if reader_cls is None or n < 1:
        yield
        return

    def open_chunk(chunk: list[Candidate]) -> None:
        for c in chunk:
            reader = reader_cls()
            try:
                reader.open(c.path_str)
                c.footer = reader.metadata
            except Exception as exc:  # noqa: BLE001  (re-raised by probe_parquet, which reports it)
                c.footer = exc
            finally:
                with contextlib.suppress(Exception):
                    reader.close()

    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="runlog-footers")
    try:
        for i in range(0, len(local), PREFETCH_CHUNK):
            chunk = local[i : i + PREFETCH_CHUNK]
            done = pool.submit(open_chunk, chunk)
            for c in chunk:
                c.footer_ready = done
        yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for c in local:
            c.footer_ready = c.footer = None


def probe_parquet(cand: Candidate, ctx: RunContext, *, layout: str, kind: str = "samples") -> FileInfo:
    """Read only the footer: row count, column types, null counts and int ranges from statistics.

    ``info.columns`` may be shared between files with the same schema: treat it as read-only.
    """
    info = FileInfo(path=cand.rel, abspath=cand.abspath, layout=layout, fmt="parquet", kind=kind, bytes=cand.size)
    if not isinstance(cand.abspath, ObjectPath) and not _utf8(cand.path_str):
        # polars scans a Parquet file by its path as UTF-8 text, and refuses one that is not (a folder named in
        # Latin-1: ``samples/tr\xffain/``): no command could read its rows, so it is not read here either (pyarrow
        # said "unreadable Parquet (truncated or corrupt?): 'utf-8' codec can't encode" of a good file).
        info.readable = False
        ctx.problem(
            cand.rel,
            UNREADABLE,
            "its path is not valid UTF-8 (a file or folder name in another encoding), which the Parquet reader "
            "cannot open: not read; rename it in UTF-8 to read it",
        )
        return info
    try:
        md, reader = _open_footer(cand)
        plan = _plan_for(md, reader, ctx)
    except (OSError, pa.ArrowException, ValueError, RunlogError) as exc:
        info.readable = False
        if isinstance(cand.abspath, ObjectPath) and isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            # The store would not give the object (access denied, gone): not a file that is truncated or corrupt.
            from ..storage import remote_reason

            ctx.problem(cand.rel, UNREADABLE, f"cannot be read from the store: {remote_reason(exc)}")
        elif isinstance(exc, PermissionError):  # the file could not be opened: not one that is truncated or corrupt
            ctx.problem(cand.rel, UNREADABLE, f"cannot read file: {_short(exc)}")
        else:
            ctx.problem(cand.rel, UNREADABLE, f"unreadable Parquet (truncated or corrupt?): {_short(exc)}")
        return info
    info.rows = md.num_rows
    info.footer_bytes = md.serialized_size + 8
    info.columns = plan.columns
    info.null_counts, ranges = _footer_stats(md, plan.leaves)
    info.footer = ParquetFooter(plan.arrow_schema, ranges, md)
    return info


def _utf8(path: str) -> bool:
    """Whether a local path (a ``str`` of the file system's bytes, undecodable ones as surrogates) is UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _footer_stats(md: pq.FileMetaData, leaves: list[tuple[int, str]]) -> tuple[dict[str, int], dict[str, tuple]]:
    """Null counts and int ranges of the planned leaf columns, from every row group's statistics (no data
    read). A column whose statistics lack a null count is left out: its count is unknown, not zero."""
    nulls: dict[str, int] = {}
    ranges: dict[str, tuple] = {}
    unknown: set[str] = set()
    for rg in range(md.num_row_groups):
        group = md.row_group(rg)
        for ci, name in leaves:
            if name in unknown:
                continue
            st = group.column(ci).statistics
            if st is None or not st.has_null_count:
                unknown.add(name)
                nulls.pop(name, None)
                ranges.pop(name, None)
                continue
            nulls[name] = nulls.get(name, 0) + st.null_count
            if name in RANGE_COLUMNS:
                if not st.has_min_max:
                    unknown.add(name)
                    ranges.pop(name, None)
                    continue
                lo, hi = ranges.get(name, (st.min, st.max))
                ranges[name] = (min(lo, st.min), max(hi, st.max))
    return nulls, ranges


def parquet_footer(info: FileInfo) -> ParquetFooter:
    """The footer details ``probe_parquet`` kept for a readable Parquet file."""
    if info.footer is None:  # pragma: no cover  (probe_parquet sets it on every file it could read)
        raise RunlogError(f"{info.path}: Parquet file probed without its footer")
    return info.footer


whole_number = S.whole_number  # shared with the writer, which reads steps the same way


def _int_range(lo: Any, hi: Any) -> tuple[int, int] | None:
    a, b = whole_number(lo), whole_number(hi)
    return None if a is None or b is None else (a, b)


def footer_int_range(info: FileInfo, column: str) -> tuple[int, int] | None:
    """(min, max) of an integer column (``schema_version``, ``step``) from footer statistics, or None (no
    statistics, or values that are not integers: the column's type is another check's to report)."""
    rng = info.footer.ranges.get(column) if info.footer is not None else None
    return None if rng is None else _int_range(rng[0], rng[1])


def read_version_column(info: FileInfo, column: str = "schema_version") -> tuple[int, int] | None:
    """Footer statistics first; otherwise read just that one (tiny) column. None also where the column cannot
    be read: ``version_column`` tells that apart."""
    return version_column(info, column)[0]


def version_column(info: FileInfo, column: str = "schema_version") -> tuple[tuple[int, int] | None, str | None]:
    """(the column's integer range or None, None), or (None, why its data could not be read): corrupt data
    behind an intact footer is an unreadable file, not a column of no version."""
    rng = footer_int_range(info, column)
    if rng is not None or info.rows == 0:
        return rng, None
    try:
        tbl = read_parquet_columns(info, [column])
    except (OSError, pa.ArrowException, ValueError, RunlogError) as exc:
        return None, str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    import pyarrow.compute as pc

    try:
        mm = pc.min_max(tbl.column(0))
    except (pa.ArrowException, ValueError):
        return None, None  # a type with no order (a list, a struct): the type check says so
    return _int_range(mm["min"].as_py(), mm["max"].as_py()), None


def gate_version(
    info: FileInfo,
    ctx: RunContext,
    version: int | None,
    *,
    foreign: str | None = None,
    newest: int = S.CURRENT_VERSION,
    known: tuple[int, ...] = S.KNOWN_VERSIONS,
) -> bool:
    """Apply the version gate; on failure record the problem and mark the file unreadable.

    ``foreign`` names another tool's own log schema (for example ``"inspect_ai log"``), gated the same way
    against the ``newest`` / ``known`` versions of it that this runlog reads."""
    if version is None:
        return True
    if version > newest:
        if foreign is None:
            message = f"written with runlog schema v{version}; this runlog reads up to v{newest}: {UPGRADE_HINT}"
        else:
            message = (
                f"newer {foreign} schema version {version}; upgrade runlog "
                f"(this runlog reads {foreign} versions up to {newest})"
            )
        ctx.problem(info.path, NEWER_VERSION, message)
        info.readable = False
        return False
    if version not in known:
        what = "" if foreign is None else f"{foreign} "
        ctx.problem(info.path, UNKNOWN_VERSION, f"unknown {what}schema version {version!r}")
        info.readable = False
        return False
    return True


def group_by_signature(files: list[FileInfo]) -> list[list[FileInfo]]:
    """Files with identical (version, columns) can be scanned together by one lazy scan."""
    groups: dict[tuple, list[FileInfo]] = {}
    signatures: dict[int, tuple[dict[str, str], tuple]] = {}  # files of one footer schema share a mapping
    for f in files:
        hit = signatures.get(id(f.columns))
        if hit is None or hit[0] is not f.columns:
            hit = signatures[id(f.columns)] = (f.columns, tuple(sorted(f.columns.items())))
        groups.setdefault((f.fmt, f.schema_version, hit[1]), []).append(f)
    return list(groups.values())


# polars reads a fixed-size tail of every Parquet file to find its footer (256 KiB by default, for local
# files too). On thousands of small files that tail is most of what is read: 2,000 files of 10 KiB footers
# meant 512 MiB copied for 60 MiB of data, a tenth of the scan's time. Discovery knows every footer's
# length, so runlog asks for the longest one (rounded up), unless the user has set the variable.
FOOTER_READ_SIZE_VAR = "POLARS_CLOUD_FOOTER_READ_SIZE"
FOOTER_READ_MIN = 16 * 1024
_USER_FOOTER_READ_SIZE = os.environ.get(FOOTER_READ_SIZE_VAR)


def footer_read_size(files: list[FileInfo]) -> int | None:
    """The tail polars should read to get every footer of ``files`` in one read; None if one is unknown."""
    if not files or any(f.footer_bytes is None for f in files):
        return None
    longest = max(f.footer_bytes or 0 for f in files)
    return max(FOOTER_READ_MIN, -(-longest // 4096) * 4096)


def _hint_footer_reads(files: list[FileInfo]) -> None:
    """Set polars' footer read size for these files: it is read when a scan starts, so the value only grows
    within a process (no scan built earlier is left short). Only where the program opted in
    (``runlog.process``: the command line does; a library call leaves the environment alone), and never over
    the user's own setting."""
    if _USER_FOOTER_READ_SIZE is not None or not TWEAKS.footer_read_size:
        return
    size = footer_read_size(files)
    if size is None:
        return
    current = os.environ.get(FOOTER_READ_SIZE_VAR)
    if current is None or not current.isdigit() or int(current) < size:
        os.environ[FOOTER_READ_SIZE_VAR] = str(size)


def scan_parquet(files: list[FileInfo], **kwargs: Any) -> pl.LazyFrame:
    """One lazy scan of these Parquet files (local paths or object-store URLs, with the store's options); the
    paths are taken as they are (``glob=False``: a run folder named ``run[1]`` is no pattern).

    Within ``live_reads`` (a run being written), a local file that may still change is scanned from a copy of
    its bytes (``_still_changing``), each such file on its own, in the files' order, with the path column
    ``include_file_paths`` names holding its path as a path scan would."""
    _hint_footer_reads(files)
    held = _held_in_memory(files) if _LIVE.get() else {}
    held.update({id(f): f.repaired for f in files if f.repaired is not None})
    if not held:
        return _scan_paths(files, **kwargs)
    source = kwargs.pop("include_file_paths", None)
    parts: list[pl.LazyFrame] = []
    run: list[FileInfo] = []  # consecutive files scanned from their paths, in one scan
    for f in files:
        data = held.get(id(f))
        if data is None:
            run.append(f)
            continue
        if run:
            parts.append(_scan_paths(run, include_file_paths=source, **kwargs))
            run = []
        lf = pl.scan_parquet(data, **kwargs)
        parts.append(lf if source is None else lf.with_columns(pl.lit(str(f.abspath), pl.String).alias(source)))
    if run:
        parts.append(_scan_paths(run, include_file_paths=source, **kwargs))
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")


def _scan_paths(files: list[FileInfo], **kwargs: Any) -> pl.LazyFrame:
    return pl.scan_parquet(
        [str(f.abspath) for f in files],
        storage_options=polars_options(f.abspath for f in files),
        glob=False,
        **kwargs,
    )


# ``runlog watch`` and ``doctor --follow`` read a run while it is written. polars memory-maps a local Parquet
# file it scans, and a file truncated under the map (rewritten in place while read) kills the process with
# SIGBUS: no exception, no message, an exit code of no meaning (135). In those reads (``live_reads``) a local
# file that may still change is read into memory first, and one that changed since it was listed, or while it
# was read, is a ``StillWrittenError`` (the live view's "still being written? retrying"), never a torn mix of two
# versions. The other commands read a finished run, mapped (a copy would cost them memory and time).
_LIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("runlog_live_reads", default=False)
# A local file modified this recently may still change (a step file rewritten in place, a copy in progress);
# one unchanged for longer is mapped, as by the other commands: copying every file of a large run into memory
# at each of doctor's checks would cost far more than the rare rewrite of an old file it guards against.
STILL_CHANGING_S = 60.0
# The files whose modification time was in the future when read (``_still_changing``), by path: the version
# seen (its stamp) and when this process first saw it, by its own monotonic clock. Bounded: cleared when full
# (a file forgotten is only held in memory for STILL_CHANGING_S more).
_FUTURE: dict[str, tuple[tuple, float]] = {}
_FUTURE_MAX = 1 << 16


class StillWrittenError(DataError):
    """A file that changed since it was listed, or while it was read, in ``live_reads``: still being written."""


@contextlib.contextmanager
def live_reads() -> Iterator[None]:
    """Within the block (in this thread or task), ``scan_parquet`` never memory-maps a local file that may
    still change (see ``_LIVE``)."""
    token = _LIVE.set(True)
    try:
        yield
    finally:
        _LIVE.reset(token)


def is_live() -> bool:
    """Whether this thread reads within ``live_reads`` (a run being written: files are never mapped)."""
    return _LIVE.get()


def _held_in_memory(files: list[FileInfo]) -> dict[int, bytes]:
    """The bytes of each local file of ``files`` that may still change (``_still_changing``), by ``id``."""
    now = time.time()
    held: dict[int, bytes] = {}
    for f in files:
        if not isinstance(f.abspath, ObjectPath):
            data = _still_changing(f, now)
            if data is not None:
                held[id(f)] = data
    return held


def _still_changing(f: FileInfo, now: float) -> bytes | None:
    """The bytes of local file ``f`` if it was modified within ``STILL_CHANGING_S`` seconds, else None (it is
    mapped). ``StillWrittenError`` when it is no longer the version listed (the probe read another footer), or changed
    while it was read (the bytes may mix two versions): a file still being written. A file gone is left to the
    scan, which says so (``Run``'s ``GONE``).

    A modification time in the future (a file server whose clock is ahead, a run restored from a machine whose
    clock was) tells nothing of how long ago the file changed: ``_quiet_since`` measures that by this process's
    own clock, from when it first saw the file's present version. Read by ``abs(now - mtime)``, a file that a
    server more than a minute ahead is writing at this moment would be taken for an old one and mapped (the
    SIGBUS this guards against); read as it was, every file dated in the future was copied into memory at
    every check, forever. Now it is held until its version has been seen unchanged that long, as a file dated
    in the past is held until its time is that old."""
    try:
        before = local_stamp(os.stat(f.abspath))
    except OSError:
        return None
    if f.stamp is not None and before != f.stamp:
        raise StillWrittenError(f.path, "changed since it was listed (still being written?)")
    mtime = before[1] / 1e9
    age = now - mtime if mtime <= now else _quiet_since(str(f.abspath), before)
    if age >= STILL_CHANGING_S:
        return None
    try:
        data = f.abspath.read_bytes()
        after = local_stamp(os.stat(f.abspath))
    except OSError:
        return None
    if after != before or len(data) != before[0]:
        raise StillWrittenError(f.path, "changed while it was read (still being written?)")
    return data


def _quiet_since(path: str, stamp: tuple) -> float:
    """Seconds since this process first saw version ``stamp`` of the file at ``path`` (0 on the first sight, and
    whenever the version is another than the one seen: a file rewritten is seen anew)."""
    clock = time.monotonic()
    seen = _FUTURE.get(path)
    if seen is not None and seen[0] == stamp:
        return clock - seen[1]
    if len(_FUTURE) >= _FUTURE_MAX:
        _FUTURE.clear()
    _FUTURE[path] = (stamp, clock)
    return 0.0


_STEP_IN_NAME = re.compile(r"step_0*(\d+)")
_PLAIN_NAME = re.compile(r"[\w.-]+", re.ASCII)


def step_in_name(rel: str) -> int | None:
    """The step a file's name tells (``.step_00000012.p0.parquet.tmp``: 12); None for a name with other than
    letters, digits, ``_``, ``.`` and ``-`` (a stray file named like a step, escape codes and all, is no step's)."""
    name = rel.rpartition("/")[2]
    m = _STEP_IN_NAME.search(name)
    return int(m.group(1)) if m and _PLAIN_NAME.fullmatch(name) else None


def read_parquet_columns(info: FileInfo, columns: list[str]) -> pa.Table:
    """Some columns of one Parquet file, in full (``inspect --deep``, version columns without statistics)."""
    if isinstance(info.abspath, ObjectPath):
        return pq.read_table(pa.BufferReader(info.abspath.read_bytes()), columns=columns)
    return pq.read_table(info.abspath, columns=columns)


def read_step_column(info: FileInfo) -> pl.DataFrame:
    """A Parquet file's ``step`` column alone, as polars reads it (a few bytes a row): a local file's by pyarrow,
    an object's by a scan of that one column (ranged reads of its pages, never the whole object). Raises what
    the read raises (``OSError``, ``pa.ArrowException``, ``RunlogError``, polars' errors)."""
    if isinstance(info.abspath, ObjectPath):
        return scan_parquet([info]).select("step").collect()
    table = pl.from_arrow(read_parquet_columns(info, ["step"]))
    assert isinstance(table, pl.DataFrame)
    return table


def source_column(files: list[FileInfo]) -> pl.Expr:
    """Replace the path from ``include_file_paths`` (as scanned) with the run-relative path."""
    mapping = {str(f.abspath): f.path for f in files}
    if not mapping:
        return pl.col("source")
    return pl.coalesce(_by_path(mapping, pl.String()), pl.col("source")).alias("source")


def per_file_value(files: list[FileInfo], attr: str, dtype: pl.DataType) -> pl.Expr:
    """A column holding each file's step / split (known from its name) for rows of that file, looked up from
    the path column as scanned (``include_file_paths``), not from ``source_column``'s relative path: one string
    lookup per row instead of two (on 1 M rows grouped by step, ~0.1 s of a 0.5 s query).

    The path is looked up as an ``Enum`` of the files' paths (a path no file has: null), whose index then picks
    the file's value: on 2,000 files of 1 M rows, a step and a split cost 0.14 s less than with ``replace_strict``
    (0.32 s against 0.46 s for the scan grouped by both; docs/benchmarks.md), the same values."""
    mapping = {str(f.abspath): getattr(f, attr) for f in files}
    if dtype == pl.Int64():
        # A name's step beyond the step column's 64-bit range (``_99999999999999999999.parquet``): null, as a
        # ``uint64`` step column's such value reads (``inspect`` says it as an error of the file); building the
        # column with it failed the whole command.
        mapping = {k: v if v is None or STEP_RANGE[0] <= v <= STEP_RANGE[1] else None for k, v in mapping.items()}
    if not mapping:  # no file: a null per row (a literal would be one row)
        return pl.col("source").replace_strict({}, default=None, return_dtype=dtype)
    return _by_path(mapping, dtype).alias("source")


def _by_path(mapping: dict[str, Any], dtype: pl.DataType) -> pl.Expr:
    """Each row's value in ``mapping`` (a file's path as scanned -> its value; not empty), by its ``source``: the
    path cast to an ``Enum`` of the paths (a path no file has: null), whose index picks the value."""
    index = pl.col("source").cast(pl.Enum(list(mapping)), strict=False).to_physical()
    return pl.lit(pl.Series(list(mapping.values()), dtype=dtype)).gather(index)


# ---------------------------------------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------------------------------------


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
SURROGATE_NOTE = (
    "{n} string(s) hold a lone surrogate (a \\udXXX escape, or its raw bytes: no character, which Arrow cannot "
    "store): each is read as U+FFFD"
)


def _nul_hint(raw: bytes) -> str:
    """Why a line that is no JSON may hold NUL bytes: zero-fill (a crash left a block of them before the writer
    went on), or UTF-16 / UTF-32 text (a NUL beside every ASCII character)."""
    nuls = raw.count(b"\x00")
    if not nuls:
        return ""
    if b"\x00" * 8 in raw:
        return "; it holds a run of NUL bytes: zero-fill left by a crash?"
    if nuls * 3 >= len(raw):
        return "; NUL bytes beside its characters: UTF-16 or UTF-32 text? lines are UTF-8"
    return "; it holds NUL bytes"


# A surrogate written as raw bytes (CESU-8, or UTF-8 encoded with ``surrogatepass``): ED A0-BF xx.
_SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")


def _paired(v: str) -> tuple[str, bool]:
    """``v`` with each high and low surrogate that stand side by side joined into their character (a pair written
    as raw bytes, CESU-8, decodes to two halves: an emoji in a metric's name), each lone one U+FFFD, and whether
    one was lone."""
    halves = v.encode("utf-16-le", "surrogatepass")
    try:
        return halves.decode("utf-16-le"), False
    except UnicodeDecodeError:
        return halves.decode("utf-16-le", "replace"), True


def without_lone_surrogates(obj: Any, raw: bytes) -> tuple[Any, int]:
    """``obj`` parsed from the JSON ``raw`` with every lone surrogate (a ``\\udcff`` escape: valid JSON, no
    character; or one written as raw bytes, CESU-8's ``\\xed\\xa0\\x80``, which ``json.loads`` of bytes and a
    ``surrogatepass`` decoding pass) in its strings and keys replaced by U+FFFD, and how many strings held one; a
    pair written as raw bytes is joined into its character, as an escaped pair is. Only walked when ``raw`` holds
    such an escape or such bytes."""
    if not _SURROGATE_ESCAPE.search(raw) and not _SURROGATE_BYTES.search(raw):
        return obj, 0
    count = 0

    def fix(v: Any) -> Any:
        nonlocal count
        if isinstance(v, str):
            if _SURROGATE.search(v):
                v, lone = _paired(v)
                count += lone
            return v
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return fix(obj), count


# The keys a JSONL record's step may be under, in order (``scalars_jsonl.STEP_KEYS``): a bad line's step is
# told from the first of them (``read_jsonl``).
LINE_STEP_KEYS = ("step", "global_step", "_step", "trainer/step")


@dataclass
class LineProblem(Problem):
    """A problem of one line of a JSONL file, with the step it is at (``read_jsonl``): the step the line itself
    names, where it can be read from it (a torn line's ``{"step": 6, "loss": 0.``), else the step of the last
    good line before it that has one; None when neither is known. ``watch`` dates the problem by it (its onset
    step: a file of many steps tells none). Said nowhere else: ``as_dict`` and the message are a ``Problem``'s."""

    step: int | None = None


def _raw_step(raw: bytes, keys: tuple[str, ...]) -> int | None:
    """The step a line that does not parse names (``"step": 6,`` in its text: a number cut off at the line's end
    is none), for the first of ``keys`` it holds; None if none."""
    for key in keys:
        m = re.search(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*(-?\d+)\s*[,}]', raw)
        if m is not None:
            return coerce_step(int(m.group(1)))
    return None


def _record_step(obj: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    return next((s for k in keys if k in obj and (s := coerce_step(obj[k])) is not None), None)


@dataclass
class JsonlResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)  # 1-based line of each record
    bad: int = 0
    skipped: list[int] = field(default_factory=list)  # 1-based lines skipped as bad (a torn last line included)


def read_jsonl(
    cand: Candidate | FileInfo, ctx: RunContext, *, max_reported: int = 5, repeats: bool = False
) -> JsonlResult:
    """Parse a JSONL file line by line. Bad lines are reported with their number and skipped; a torn last
    line (no trailing newline: the file may still be being written) is a warning, not an error.

    With ``repeats``, records that hold a key twice (``{"loss": 1.0, "loss": 9.0}``) are said in one warning
    (count, first line and key): the later value is kept, as Python's json and JavaScript read a line, and a
    reader that keeps another (polars keeps the first) must not read such a file."""
    path = cand.abspath
    rel = cand.rel if isinstance(cand, Candidate) else cand.path
    out = JsonlResult()
    last_step: int | None = None  # the step of the last good line (a bad line's step when it tells none)
    try:
        data = read_bytes(path)
    except (OSError, RunlogError) as exc:
        ctx.problem(rel, UNREADABLE, f"cannot read file: {_short(exc)}")
        said_trouble()  # it may read next time (EIO, a store's hiccup): an answer saying so is not kept
        return out
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n") and bool(lines and lines[-1].strip())
    if data.endswith(b"\n"):
        lines = lines[:-1]
    reported = 0
    surrogates = 0
    repeated: list[int] = []  # the lines whose record holds a key twice
    first_repeat = b""  # the first of them, parsed again at the end to name its key
    last = len(lines)
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        reason = None
        # NUL bytes before a record: the zero-fill a crash leaves where lines were never written (the file's size
        # was), the writer's next line after them. That record is read; what was written there is lost (said).
        zeros = len(raw) - len(raw.lstrip(b"\x00"))
        if zeros and raw[zeros:].strip():
            raw = raw[zeros:]
        else:
            zeros = 0
        try:
            # Decoded here, strictly as UTF-8: ``json.loads`` of bytes guesses UTF-16 or UTF-32 from a line's first
            # bytes (a UTF-16 line was read as a record), and names the byte of its own decoding, not the line's.
            # A UTF-8 byte order mark at a line's start is read past, as before.
            # Surrogates written as raw bytes (CESU-8) pass, to be replaced as escaped ones are.
            text = raw.decode("utf-8", "surrogatepass")
            obj, fixed = without_lone_surrogates(json.loads(text.removeprefix("\ufeff")), raw)
            surrogates += fixed
        except UnicodeDecodeError as exc:
            reason = f"invalid UTF-8 at byte {exc.start}"
        except (ValueError, RecursionError) as exc:
            reason = f"not valid JSON ({_short(exc)}{_nul_hint(raw)})"
        else:
            if not isinstance(obj, dict):
                reason = f"a JSON {type(obj).__name__}, not an object"
        if reason is None:
            # A line with no more ':' than its record's keys holds no key twice (the flat record: no walk); where
            # it has more (a ':' inside a key or a text value: timestamps), the ':' outside strings are its pairs.
            colons = raw.count(b":") if repeats else 0
            if colons > len(obj) and colons != (pairs := _pairs(obj)) and key_separators(raw) != pairs:
                if not repeated:
                    first_repeat = raw
                repeated.append(i)
            out.records.append(obj)
            out.line_numbers.append(i)
            here = _record_step(obj, LINE_STEP_KEYS)
            if zeros:
                message = (
                    f"line {i}: {zeros} NUL byte(s) before its record (zero-fill left by a crash?): what was written "
                    "there is lost; the record after them is read"
                )
                ctx.problems.append(LineProblem(rel, BAD_LINE, message, last_step if here is None else here))
            last_step = last_step if here is None else here  # a record without a step: the one before's
            continue
        out.bad += 1
        out.skipped.append(i)
        step = _raw_step(raw, LINE_STEP_KEYS)
        step = last_step if step is None else step
        if torn and i == last:
            message = f"line {i}: torn last line (file still being written?), skipped: {reason}"
            ctx.problems.append(LineProblem(rel, WARNING, message, step))
            continue
        if reported < max_reported:
            ctx.problems.append(LineProblem(rel, BAD_LINE, f"line {i}: {reason}; line skipped", step))
        reported += 1
    if reported > max_reported:
        ctx.problem(rel, BAD_LINE, f"{reported - max_reported} more bad lines skipped")
    if surrogates:
        ctx.warn(rel, SURROGATE_NOTE.format(n=surrogates))
    if repeated:
        ctx.warn(
            rel,
            f"{len(repeated)} record(s) hold a key twice (first: line {repeated[0]}, {_repeated_key(first_repeat)!r}): "
            "the later value kept, as Python's json and JavaScript read a line",
        )
    return out


# A backslash and the character it escapes, in JSON text: ``\"`` is no string's end.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def key_separators(text: bytes) -> int:
    """The ':' outside strings of JSON ``text``: its key-value pairs as written, a key written twice counted
    twice (a parsed object holds it once), whatever ':' its keys and text values hold (``"train:loss"``,
    timestamps). A tokenisation, not a parse: escapes dropped, then every other piece between '"' is outside
    strings."""
    if b"\\" in text:
        text = _ESCAPE.sub(b"", text)
    return b"".join(text.split(b'"')[::2]).count(b":")


def _pairs(obj: Any) -> int:
    """The key-value pairs of a parsed JSON value, nested ones included: each holds one ':' in its line, so a
    line with more ':' than its value's pairs holds a key twice or a ':' inside a string (``key_separators``
    tells which)."""
    if isinstance(obj, dict):
        return len(obj) + sum(_pairs(v) for v in obj.values() if isinstance(v, (dict, list)))
    if isinstance(obj, list):
        return sum(_pairs(v) for v in obj if isinstance(v, (dict, list)))
    return 0


class _Pairs(list):
    """An object's pairs in the order written (``json``'s ``object_pairs_hook``), repeats kept."""


def _repeated_key(raw: bytes) -> str | None:
    """The first key a JSON line holds twice in one object (nested keys as ``a/b``, as flattened), or None. A
    second parse: for the one line a warning names, not for every line checked."""
    try:
        parsed = json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # pragma: no cover  (the line parsed a moment ago)
        return None
    todo: list[tuple[str, Any]] = [("", parsed)]
    while todo:
        prefix, node = todo.pop(0)
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, v in node:
                k = _SURROGATE.sub("\ufffd", key)  # as the record holds it: two lone surrogates are one key there
                name = f"{prefix}/{k}" if prefix else str(k)
                if k in seen:
                    return name
                seen.add(k)
                todo.append((name, v))
        elif isinstance(node, list):
            todo.extend((prefix, v) for v in node)
    return None


def flatten(obj: dict[str, Any], prefix: str = "", sep: str = "/", clashes: list[str] | None = None) -> dict[str, Any]:
    """Nested dicts to ``a/b/c`` keys (JaxARC ``metrics``, nested trainer dicts). A key given twice, flat and
    nested (``{"a/b": 1, "a": {"b": 2}}``), keeps the later of the two in the record; with ``clashes`` each
    such key is added to it, so that the reader can say which value was dropped."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        for name, value in flatten(v, key, sep, clashes).items() if isinstance(v, dict) else [(key, v)]:
            if clashes is not None and name in out:
                clashes.append(name)
            out[name] = value
    return out


# A number written as text: what Python's ``json`` writes for a float (NaN and infinities included), in ASCII
# digits only (``float`` would also take ``"1_000"`` and other scripts' digits, which no JSON writer emits).
_NUMERIC_TEXT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|nan|inf|infinity)", re.ASCII | re.IGNORECASE)


def as_float(v: Any) -> float | None | str:
    """A metric value as float; None for null; the marker '' for values that are not numbers. A number
    written as text (``"0.5"``, ``"nan"``, ``"-inf"``) is that number, as TRL's reward columns held as text
    are read: reading ``"nan"`` but not ``"0.5"`` made a key of numbers look as if it went NaN. An int beyond
    the float64 range is infinity of its sign, the float nearest to it (as JSON's ``1e400`` and the text
    ``"1e400"`` are read), never an ``OverflowError``: one such value made a whole scalars file unreadable."""
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        try:
            return float(v)
        except OverflowError:  # an int beyond the float64 range (10**400): as ``1e400`` is read (said by the caller)
            return math.inf if v > 0 else -math.inf
    if isinstance(v, str) and _NUMERIC_TEXT.fullmatch(text := v.strip()):
        return float(text)
    return ""


def scalars_frame(
    rows: list[tuple[int | None, float | None, dict[str, Any]]],
    source: str,
    ctx: RunContext,
    layout: str,
    lines: list[int],
) -> pl.DataFrame:
    """Long scalar frame ``step, time, key, value, source, record`` from (step, time, flat metrics) rows, the
    record ``i`` read from line ``lines[i]`` of the file.

    Non-numeric values are not silently dropped: they are counted and named in a fidelity note. Numbers
    written as text are read, and said in a warning (the count, the keys, the first line): a trainer that
    writes its metrics as text is worth knowing about.
    """
    steps: list[int | None] = []
    times: list[float | None] = []
    keys: list[str] = []
    values: list[float | None] = []
    records: list[int] = []
    skipped: dict[str, int] = {}
    text: dict[str, int] = {}
    first_text: tuple[int, str, str] | None = None
    huge: dict[str, int] = {}
    first_huge: tuple[int, str, int] | None = None
    for record, (step, t, metrics) in enumerate(rows):
        for k, v in metrics.items():
            f = as_float(v)
            if isinstance(f, str):  # the marker '' of a value that is no number
                skipped[k] = skipped.get(k, 0) + 1
                continue
            if isinstance(v, str):
                text[k] = text.get(k, 0) + 1
                first_text = first_text or (lines[record], k, v)
            elif f is not None and isinstance(v, int) and math.isinf(f):
                huge[k] = huge.get(k, 0) + 1
                first_huge = first_huge or (lines[record], k, v.bit_length())
            records.append(record)
            steps.append(step)
            times.append(t)
            keys.append(k)
            values.append(f)
    if skipped:
        n = sum(skipped.values())
        ctx.note(layout, f"{source}: {n} non-numeric metric values not mapped (keys: {_names(skipped)})")
    if first_text is not None:
        line, key, raw = first_text
        ctx.warn(
            source,
            f"{sum(text.values())} metric value(s) written as text read as numbers (keys: {_names(text)}; first: "
            f"line {line}, {key!r}: {raw!r})",
        )
    if first_huge is not None:
        line, key, bits = first_huge
        ctx.warn(
            source,
            f"{sum(huge.values())} metric value(s) are integers beyond the float64 range (about 1.8e308), read as "
            f"infinity of their sign (keys: {_names(huge)}; first: line {line}, {key!r}: an int of {bits} bits)",
        )
    return pl.DataFrame(
        {
            "step": pl.Series(steps, dtype=pl.Int64),
            "time": pl.Series(times, dtype=pl.Float64),
            "key": pl.Series(keys, dtype=pl.String),
            "value": pl.Series(values, dtype=pl.Float64),
            "source": pl.Series([source] * len(keys), dtype=pl.String),
            "record": pl.Series(records, dtype=pl.Int64),
        }
    )


def _names(counts: dict[str, int], limit: int = 8) -> str:
    return ", ".join(sorted(counts)[:limit]) + (" ..." if len(counts) > limit else "")


STEP_RANGE = (-(2**63), 2**63 - 1)  # the step column is Int64
_STEP_TEXT = re.compile(r"-?\d+", re.ASCII)
# The white space around a step's text that is left out: Unicode's White_Space characters, the ones polars'
# ``strip_chars`` and Python's ``int`` take as space. Not ``str.strip``'s: it also strips the separators \x1c-\x1f
# (control characters, no space), which ``int`` refuses ("\x1c10" raised ValueError, a file lost).
STEP_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def coerce_step(v: Any) -> int | None:
    """A record's step as int: an integer, a float that is one (``3.0``) or its decimal text (``"6"``, ``" 6 "``:
    white space around it is ``STEP_SPACE``), within the step column's 64-bit range; None for anything else
    (``3.5``, ``true``, ``2**63``, ``"\\x1c6"``)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        text = v.strip(STEP_SPACE)
        step = int(text) if _STEP_TEXT.fullmatch(text) else None
    else:
        step = int(v) if isinstance(v, int) or (isinstance(v, float) and v.is_integer()) else None
    return step if step is not None and STEP_RANGE[0] <= step <= STEP_RANGE[1] else None


def step_expr(col: str, dtype: pl.DataType) -> pl.Expr:
    """A column's values as steps (``Int64``), read as ``coerce_step`` reads one: an integer, a whole float or its
    decimal text within the 64-bit range; null for anything else (``7.5``, NaN, ``true``, ``"ten"``, ``2**63``).
    Never polars' cast, which reads ``7.5`` as 7 and ``true`` as 1: a row put at a step it does not name."""
    c = pl.col(col)
    if dtype.is_integer():
        return c.cast(pl.Int64, strict=False)  # a uint64 beyond the range: null
    if dtype.is_float():
        # As Float64 (exact for every float width): polars' ``floor`` of a Float16 is the value itself, so 2.5
        # passed as whole and was cast to 2.
        c = c.cast(pl.Float64)
        lo, hi = float(STEP_RANGE[0]), -float(STEP_RANGE[0])  # -2**63 is a float exactly; 2**63 is beyond
        whole = c.is_finite() & (c == c.floor()) & (c >= lo) & (c < hi)
        return pl.when(whole).then(c).otherwise(None).cast(pl.Int64)
    if dtype in (pl.String, pl.Categorical, pl.Enum):  # (Categorical: a dictionary-encoded text column)
        text = c.cast(pl.String).str.strip_chars(STEP_SPACE)
        return pl.when(text.str.contains(r"^-?[0-9]+$")).then(text).otherwise(None).cast(pl.Int64, strict=False)
    # A bool (``true`` is no step 1), or anything else: null in every row (a row-wise expression, not a literal).
    return pl.when(c.is_null() & c.is_not_null()).then(pl.lit(0, dtype=pl.Int64)).alias(col)


def unusable_step(col: str, dtype: pl.DataType) -> pl.Expr:
    """Whether a row's step is there but no step (``step_expr`` gives null for a value that is not null)."""
    return pl.col(col).is_not_null() & step_expr(col, dtype).is_null()


def say_stepless(source: str, ctx: RunContext, stepless: list[tuple[int, str]], limit: int = 5) -> None:
    """Records without a step runlog can use (``coerce_step``): said with their lines and what they hold
    there, and that they are in no figure. Every command drops null steps (a summary, a plot, a diff and an
    upload are per step); only ``Run.scalars`` keeps them."""
    if not stepless:
        return
    shown = "; ".join(f"line {line}: {what}" for line, what in stepless[:limit])
    more = f"; {len(stepless) - limit} more" if len(stepless) > limit else ""
    ctx.warn(
        source,
        f"{len(stepless)} record(s) without an integer step ({shown}{more}): left out of every summary, plot, "
        "diff and upload (Run.scalars keeps them with a null step)",
    )


def stepless_reason(key: str, value: Any) -> str:
    """What a record holds in place of a step, for ``say_stepless``."""
    if not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        digits = str(int(value))
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
        return f"{key} {shown} is beyond a 64-bit integer"
    shown = json.dumps(value, ensure_ascii=True, default=str)
    return f"{key} {shown if len(shown) <= 40 else shown[:40] + '...'}"


def say_clashes(source: str, ctx: RunContext, clashed: list[tuple[int, str]]) -> None:
    """Records that hold a key twice, flat and nested (``flatten``: the later of the two kept), said with their
    count and the first line and key: the other value is in no figure."""
    if clashed:
        line, key = clashed[0]
        ctx.warn(
            source,
            f"{len(clashed)} record(s) hold a key twice, flat and nested (first: line {line}, {key!r}): the later "
            "of the two in the record kept",
        )


def say_orphan_weights(frame: pl.DataFrame, source: str, ctx: RunContext, layout: str) -> None:
    """``k__count`` keys of a file that holds no value of ``k``: the weights are hidden with the companions and
    there is nothing for them to weigh, so their numbers are shown nowhere. Said in a fidelity note (as values
    that are not mapped are), not a warning: a key whose every value is null leaves its weights so too."""
    names = set(frame["key"].unique().to_list())
    orphans = sorted(k for k in names if k.endswith("__count") and k.removesuffix("__count") not in names)
    if orphans:
        ctx.note(
            layout,
            f"{source}: {len(orphans)} weight key(s) ('k__count', the weight of 'k') without a value of their key "
            f"in the file, shown nowhere: {_names(dict.fromkeys(orphans, 0))}",
        )


def shared_ids(files: list[FileInfo], keys: list[str]) -> tuple[int, str, list[str]] | None:
    """Sample ids that occur in more than one of ``files`` at the same ``keys`` (split and step, or step), from
    the frames the probes kept (nothing read): (how many ids, the first, the files that hold it), or None."""
    seen: dict[tuple[Any, ...], str] = {}
    clash: dict[str, list[str]] = {}
    first: str | None = None
    for f in files:
        frame = f.frame
        if f.kind != "samples" or not f.readable or not isinstance(frame, pl.DataFrame) or not frame.height:
            continue
        rows = frame.select(*keys, "sample_id").drop_nulls("sample_id").unique(maintain_order=True)
        for *at, sid in rows.iter_rows():
            other = seen.setdefault((*at, sid), f.path)
            if other != f.path:
                holders = clash.setdefault(sid, [other])
                if f.path not in holders:
                    holders.append(f.path)
                first = first or sid
    return None if first is None else (len(clash), first, clash[first])


# Exception texts that are not what they seem, read the same in every layout with an exception column (native
# ``exception``, Flink's ``exception_info``, Parquet or CSV):
# - ``None`` or ``null`` (white space around it stripped): ``str(None)`` or JSON's null written as text, the
#   stringified null of a writer that wrote ``str(exc)`` of no exception. Read as null (no failure), counted in
#   ``null_counts`` under ``NULL_TEXT_EXCEPTIONS`` and added to the column's null count, said once a run.
# - empty or white space only: still a failure. ``str(TimeoutError())`` is ``''`` (asyncio's and httpx's
#   timeouts carry no message), so a writer that stores ``str(exc)`` writes ``''`` for the commonest failure of an
#   agent; read as no failure, a real exception rate read a third of itself. Counted under ``BLANK_EXCEPTIONS``
#   and said once a run, since a writer that fills ``''`` for no exception makes its samples look failed.
# runlog's writer writes a failure as its exception's type and message (``TimeoutError``), never either text.
# The probe counts both (``exception_texts``, kept with the footer's counts and cached with them).
NULL_TEXT_EXCEPTIONS = "exception (None or null text)"
BLANK_EXCEPTIONS = "exception (blank)"
# An exception column stored as Arrow binary (a writer that put ``bytes`` in it) holds the same texts, encoded:
# read as UTF-8, the rule above applied to it, a byte sequence that is no UTF-8 read as U+FFFD, as runlog reads
# such bytes elsewhere (still a failure: the text was there). Those values are counted under
# ``INVALID_UTF8_EXCEPTIONS`` and said once a run. A column of any other type (an integer error code, a list)
# holds no exception text whose meaning runlog could tell (is 0 "no error"?): not read as exceptions, said per
# file (``check_exception_type``); every non-null value would otherwise have counted as a failure.
INVALID_UTF8_EXCEPTIONS = "exception (invalid UTF-8)"
TEXT_TYPES = frozenset({"string", "large_string", "string_view", "utf8", "large_utf8", "null", "String", "Null"})
BINARY_TYPES = frozenset({"binary", "large_binary", "binary_view", "Binary"})
_DICTIONARY = re.compile(r"dictionary<values=([^,]+),")
NULL_WORDS = ("None", "null")
# White space as Python has it (``str.isspace``, what ``str.strip`` strips): polars' ``strip_chars()`` strips
# Unicode White_Space, which leaves out U+001C..U+001F. Every such character lies below U+3001.
SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def _stripped(col: pl.Expr) -> pl.Expr:
    return col.str.strip_chars(SPACES)


def null_text_exception(col: pl.Expr) -> pl.Expr:
    """Whether an exception text is a stringified null (``NULL_WORDS`` once stripped of white space)."""
    return _stripped(col).is_in(list(NULL_WORDS))


def blank_exception(col: pl.Expr) -> pl.Expr:
    """Whether an exception text is empty or white space only (a failure without a message)."""
    return _stripped(col) == ""


def exception_as_read(col: pl.Expr) -> pl.Expr:
    """The exception text as runlog reads it: a stringified null is null; every other text, a failure."""
    return pl.when(null_text_exception(col)).then(None).otherwise(col)


def exception_kind(type_name: str) -> str:
    """``'text'``, ``'binary'`` (bytes: read as UTF-8 text) or ``'other'`` (no text) for an exception column's
    probed type (Arrow's, dictionary encoding looked through; polars' for CSV)."""
    m = _DICTIONARY.match(type_name)
    value_type = m[1] if m else type_name
    if value_type in TEXT_TYPES:
        return "text"
    if value_type in BINARY_TYPES or value_type.startswith("fixed_size_binary"):
        return "binary"
    return "other"


def decode_text(values: pl.Series) -> pl.Series:
    """Binary values as UTF-8 text, each invalid byte sequence as U+FFFD (Python's ``'replace'``): polars' own
    cast fails on the whole column (``strict=False`` too), and a failure's text must stay a failure."""
    if values.dtype == pl.String:
        return values
    try:
        return values.cast(pl.String)
    except pl.exceptions.PolarsError:
        texts = [None if v is None else bytes(v).decode("utf-8", "replace") for v in values.to_list()]
        return pl.Series(values.name, texts, dtype=pl.String)


def _invalid_utf8(values: pl.Series) -> int:
    """How many binary values are not valid UTF-8 (0 for text)."""
    if values.dtype == pl.String:
        return 0
    try:
        values.cast(pl.String)
    except pl.exceptions.PolarsError:
        return sum(1 for v in values.to_list() if v is not None and not _is_utf8(bytes(v)))
    return 0


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_exception_type(info: FileInfo, col: str, ctx: RunContext) -> None:
    """A probed Parquet file's exception column ``col`` of no text type: said, and read as null (its
    ``null_counts`` all rows, which every count of failures reads; the scan's ``exception_column`` agrees).
    Binary is read as text (``exception_texts``, ``exception_column``)."""
    kind = info.columns.get(col)
    if kind is None or exception_kind(kind) != "other":
        return
    ctx.warn(
        info.path,
        f"its {col} column is {kind}, not text: not read as exceptions (its values are not counted as failed "
        "trajectories: what a number or a list there means cannot be told; runlog reads an exception's text)",
    )
    if info.rows is not None:
        info.null_counts = {**info.null_counts, col: info.rows}


def exception_column(files: list[FileInfo], col: str) -> pl.Expr | None:
    """The scan's ``col`` for a group of files of one schema where it is no text: binary decoded as UTF-8
    (``decode_text``), another type null (``check_exception_type``); None where it is text (read as it is)."""
    kind = exception_kind(files[0].columns[col]) if files and col in files[0].columns else "text"
    if kind == "binary":
        return pl.col(col).map_batches(decode_text, return_dtype=pl.String, is_elementwise=True).alias(col)
    if kind == "other":
        return pl.lit(None, dtype=pl.String).alias(col)
    return None


def count_exception_texts(values: pl.Series) -> tuple[int, int]:
    """(stringified nulls, empty or white-space texts) among an exception column's values."""
    col = pl.col("x")
    counts = (
        decode_text(values)
        .to_frame("x")
        .select(null_text_exception(col).sum().alias("nulls"), blank_exception(col).sum().alias("blanks"))
    )
    nulls, blanks = counts.row(0)
    return int(nulls or 0), int(blanks or 0)


def keep_exception_texts(
    info: FileInfo, col: str, counts: tuple[int, int], *, nulls_read: bool, invalid: int = 0
) -> None:
    """Keeps a file's ``count_exception_texts`` (and its binary values that are no UTF-8, ``invalid``) in its
    ``null_counts`` (cached with them); where the column's null count is the footer's (``nulls_read`` False),
    the stringified nulls are added to it, as they read."""
    nulls, blanks = counts
    if not nulls and not blanks and not invalid:
        return
    kept = dict(info.null_counts)
    if nulls and not nulls_read and col in kept:
        kept[col] += nulls  # the failures the footer counts (its non-null values) are the others
    found = ((NULL_TEXT_EXCEPTIONS, nulls), (BLANK_EXCEPTIONS, blanks), (INVALID_UTF8_EXCEPTIONS, invalid))
    kept.update({k: n for k, n in found if n})
    info.null_counts = kept


def _may_hold_odd(lo: str, hi: str) -> bool:
    """Whether an empty or white-space text, or one of ``NULL_WORDS`` with white space around it, can lie between a
    row group's ``lo`` and ``hi`` statistics; False lets the probe trust the footer's null count without reading
    the column."""
    if not lo or lo[0] in SPACES or hi[0] in SPACES or any(lo[0] < c < hi[0] for c in SPACES):
        return True  # "" is the least text; a text of spaces starts with one
    return any(lo[: len(w)] <= w <= hi for w in NULL_WORDS)


def exception_texts(info: FileInfo, col: str) -> tuple[tuple[int, int], int] | None:
    """``count_exception_texts`` of a Parquet sample file's exception column ``col``, with how many of its binary
    values are no UTF-8: none where the footer shows none can be (every value null, or every row group's min
    and max leave no room for one: text only, bytes that are no UTF-8 show in no statistics), else counted from
    the column itself (the failures' texts only hold values); None where it cannot be read (its read says so)
    or is no text (``check_exception_type``)."""
    if col not in info.columns or not info.rows or info.null_counts.get(col) == info.rows:
        return (0, 0), 0
    kind = exception_kind(info.columns[col])
    if kind == "other" or col not in info.null_counts:
        # No statistics of the column (optional in Parquet): its exception count is not known, and the text is not
        # read to learn it (a traceback of 60 MB would be read whole by inspect, which reads no text); the scan
        # still reads its stringified nulls as none.
        return None
    md = parquet_footer(info).metadata
    index = next((i for i in range(md.num_columns) if md.schema.column(i).path == col), None)
    if kind == "text" and index is not None:
        unsure = False
        for rg in range(md.num_row_groups):
            chunk = md.row_group(rg).column(index)
            st = chunk.statistics
            if st is not None and st.has_null_count and st.null_count == chunk.num_values:
                continue  # every value of the row group null
            if st is None or not st.has_min_max:
                unsure = True
                break
            lo, hi = (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in (st.min, st.max))
            if _may_hold_odd(lo, hi):
                unsure = True
                break
        if not unsure:
            return (0, 0), 0
    try:
        column = pl.from_arrow(read_parquet_columns(info, [col]).column(0))
    except (OSError, pa.ArrowException, ValueError, RunlogError):
        return None
    assert isinstance(column, pl.Series)
    return count_exception_texts(column), _invalid_utf8(column)


def may_hold_null_texts(files: Sequence[FileInfo], col: str) -> bool:
    """Whether a scan of ``files`` must read the exception texts ``None`` / ``null`` as none: some file's probe
    counted such texts, or could not tell (no statistics of its column ``col``: ``exception_texts`` does not read
    its text, so the scan is where they are read as none)."""
    return any(
        f.null_counts.get(NULL_TEXT_EXCEPTIONS) or (f.rows and col in f.columns and col not in f.null_counts)
        for f in files
    )


def probe_exceptions(info: FileInfo, col: str, ctx: RunContext) -> None:
    """What a probe of a readable Parquet sample file finds of its exception column ``col``: its type
    (``check_exception_type``), its texts that are not what they seem and its bytes that are no UTF-8 (kept
    in ``null_counts``, the stringified nulls added to the column's null count: they read as null)."""
    check_exception_type(info, col, ctx)
    found = exception_texts(info, col)
    if found is not None:
        counts, invalid = found
        keep_exception_texts(info, col, counts, nulls_read=False, invalid=invalid)


# The run-wide warnings of ``warn_exception_texts`` (``render-trajectory`` tells them from those of a part of the
# run: the counts of its opened files, said again).
EXCEPTION_TEXTS_WARNING = re.compile(
    r"[\d,]+ exception value\(s\) (?:here|in [\d,]+ sample files \(this one the first\)) "
)


def warn_exception_texts(files: list[FileInfo], ctx: RunContext) -> None:
    """Says once for ``files`` (a run's readable sample files of one layout) how many exception values are
    stringified nulls (read as none), how many are empty or white space (failures) and how many are bytes that
    are no UTF-8 (failures, read with U+FFFD), each with the files that hold them: the first named, the others
    counted."""
    kinds = (
        (
            NULL_TEXT_EXCEPTIONS,
            "are the text 'None' or 'null' (str(None), or JSON's null, written as text): read as no exception, not "
            "as failed trajectories",
        ),
        (
            BLANK_EXCEPTIONS,
            "are empty or white space: counted as failed trajectories (str() of an exception without a message, "
            "TimeoutError(), is ''); a writer that fills '' for no exception would make them look failed",
        ),
        (
            INVALID_UTF8_EXCEPTIONS,
            "are bytes that are not valid UTF-8 (a binary exception column): read as text with U+FFFD in place of "
            "each invalid byte sequence, and counted as failed trajectories",
        ),
    )
    for key, what in kinds:
        holding = [f for f in files if f.null_counts.get(key)]
        if not holding:
            continue
        n = sum(f.null_counts[key] for f in holding)
        where = "here" if len(holding) == 1 else f"in {len(holding):,} sample files (this one the first)"
        ctx.warn(holding[0].path, f"{n:,} exception value(s) {where} {what}")


def _binary_type(t: Any) -> Any:
    """``t`` with every string type made the binary type of its width (a cast that checks no UTF-8)."""
    if pa.types.is_string(t):
        return pa.binary()
    if pa.types.is_large_string(t):
        return pa.large_binary()
    if pa.types.is_string_view(t):
        return pa.binary_view()
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_binary_type(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_binary_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_binary_type(f.type)) for f in t])
    if pa.types.is_dictionary(t):  # a column written from a categorical: its values, plain
        return _binary_type(t.value_type)
    return t


def _decoded(v: Any, counter: list[int]) -> Any:
    """``v`` (a value of a ``_binary_type`` column, as Python) with its bytes decoded, invalid sequences as U+FFFD;
    ``counter[0]`` counts the strings that held one."""
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            counter[0] += 1
            return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_decoded(x, counter) for x in v]
    if isinstance(v, dict):
        return {k: _decoded(x, counter) for k, x in v.items()}
    return v


def repaired_utf8(source: Any) -> tuple[bytes, dict[str, int]]:
    """The Parquet file ``source`` (a local path, or its bytes) written again in memory, each string of its columns
    (nested ones too: a message's content) that is no UTF-8 read with U+FFFD in place of each invalid byte
    sequence, as Python's ``errors='replace'``, and as the ``exception`` column's bytes are read; with how many
    strings of each column held one (only the columns that did). pyarrow reads such strings without checking them
    (polars refuses the whole file: one bad byte in one completion cost every row's text), so the other rows and
    columns are the file's as written, with its schema. Read and written a row group at a time: what is held
    beyond the result is one row group, and the Python values of its damaged columns only. Raises where the file
    cannot be so read (a corrupt page), or fails its checks for another reason than text that is no UTF-8."""
    import io

    import pyarrow.parquet as pq

    pf = pq.ParquetFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    schema = pf.schema_arrow
    counts: dict[str, int] = {}
    out = io.BytesIO()
    with pq.ParquetWriter(out, schema) as writer:
        for g in range(pf.num_row_groups):
            table = pf.read_row_group(g)
            for i, name in enumerate(table.column_names):
                col = table.column(i)
                try:
                    col.validate(full=True)
                    continue
                except pa.ArrowInvalid:
                    pass
                counter = [0]
                values = [_decoded(v, counter) for v in col.cast(_binary_type(col.type)).to_pylist()]
                if not counter[0]:  # invalid for another reason: not a text to repair
                    raise ValueError(f"column {name!r} fails its checks, though its text is UTF-8")
                table = table.set_column(i, schema.field(i), pa.array(values, type=col.type))
                counts[name] = counts.get(name, 0) + counter[0]
            writer.write_table(table)
    return out.getvalue(), counts
