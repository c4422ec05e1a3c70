"""``open_run``: discover a run's files once, and expose them as lazy canonical polars frames."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import time
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from . import schema as S
from . import storage
from ._lazy import pl
from .ends import (
    STATE_RE,
    WRITER_FAILED,
    EndState,
    Holdings,
    WriterState,
    end_state,
    expects_states,
    failure_message,
    holdings_of,
    read_states,
)
from .errors import (
    EXIT_PROBLEMS,
    DataError,
    RunlogError,
    RunNotFoundError,
    SeveralRunsError,
    UsageError,
    did_you_mean,
    said_trouble,
)
from .formats import get_layout, layouts
from .formats.base import UNREADABLE, WARNING, Candidate, FileInfo, Layout, Problem, RunContext, numeric_from_samples
from .formats.common import is_live, local_footers
from .formats.native import SAMPLE_RE
from .listing import (
    DATA_SUFFIXES,
    MANIFEST,
    NATIVE,
    NESTED_RUN,
    Placement,
    choose_layout,
    list_files,
    listing,
    local_stamp,
    nested_trees,
    one_run,
)
from .probe_cache import Hit, ProbeCache
from .process import made_of_interrupt
from .storage import UNREACHABLE, ObjectPath, digest_bytes, remote_reason, unreachable
from .textsafe import visible

TEMP_SUFFIXES = (".tmp", ".partial")
# Canonical columns of what the model wrote, read by the text metrics, trajectories and tables only: a file whose
# other columns read keeps its numbers when these cannot be (``Run._quarantine_unreadable``). ``prompt`` too: the
# numeric view reads it where prompt groups come from the text (``Run.numeric`` reads such a file's prompt as
# null, as ``samples`` does: none of its samples is then in a prompt group). Not ``exception`` (the exception
# rate counts it).
TEXT_ONLY = ("messages", "completion", "trajectory", "prompt")
# Of these (and of a layout's ``Layout.text_columns``), the ones that put samples in their prompt groups: kept
# where they read when the rest of a file's text does not.
GROUP_KEYS = ("prompt", "group_id")
# How polars' Parquet reader words a string that is no UTF-8 (``Run._repair_utf8``).
INVALID_UTF8 = "invalid UTF-8"
# A file read with U+FFFD in place of its invalid UTF-8 is held rewritten in memory (``FileInfo.repaired``), about
# its size on disk: one over this size is not (its text is left out, as a corrupt page's is, and that is said),
# nor one that would take the repaired files this process holds past ``REPAIR_HELD_MAX``: a writer that cut
# texts inside a character in every file of a large run would otherwise have the run held in memory whole.
REPAIR_MAX_BYTES = 512 << 20
REPAIR_HELD_MAX = 2 << 30
# The files read so (``Run._repair_utf8``), by ``id``, while a run holds them: what ``REPAIR_HELD_MAX`` counts.
_REPAIRED: weakref.WeakValueDictionary[int, FileInfo] = weakref.WeakValueDictionary()
GONE = "gone since the run was listed"  # how the problem of a file deleted after discovery begins
# How the problem of a file that failed to read and is no longer the version listed begins: rewritten while read.
CHANGED = "changed while it was read (still being written?)"
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db"})


def read_failures(*also: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a polars read of data files raises when a file is bad or changes while read: its errors, an
    ``OSError`` (a file removed), and a Rust panic (``PanicException``, a ``BaseException``: a file that shrank
    between the footer read and the data read fails an assertion inside polars). Not ``BaseException``: a
    Ctrl-C must go on. ``also``: more to catch alike."""
    return (pl.exceptions.PolarsError, OSError, pl.exceptions.PanicException, *also)


def _not_interrupt(exc: BaseException) -> None:
    """Raise ``KeyboardInterrupt`` if ``exc``, caught as a failed read, is a Ctrl-C: the panic pyo3 makes of an
    interrupt raised inside a callback polars makes from Rust (``process.made_of_interrupt``). A library caller
    (a notebook) meets it; the command line keeps the interrupt out of polars (``process.take_interrupts``).
    Caught as a read failure, it said "reading the run failed" (exit 1), or left a good file out as unreadable."""
    if made_of_interrupt(exc):
        raise KeyboardInterrupt from None


def _first_line(exc: BaseException) -> str:
    """An exception's first line (polars adds a page of hints below it), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _size(n: int) -> str:
    """``n`` bytes in MiB, or in KiB under one MiB."""
    return f"{n / (1 << 20):,.1f} MiB" if n >= 1 << 20 else f"{n / 1024:,.1f} KiB"


def text_columns(layout: str) -> tuple[str, ...]:
    """The columns of a file of ``layout`` that fail with its text: ``TEXT_ONLY`` and the layout's own
    (``Layout.text_columns``: Flink's ``group_id`` is found from the conversation text)."""
    return (*TEXT_ONLY, *get_layout(layout).text_columns)


def _texts_read(carry: dict[str, pl.Expr], layouts: list[Layout]) -> set[str]:
    """The text columns (``TEXT_ONLY``, ``Layout.text_columns``) that the ``carry`` expressions of a numeric
    view read."""
    texts = {*TEXT_ONLY, *(c for lay in layouts for c in lay.text_columns)}
    return {c for e in carry.values() for c in e.meta.root_names() if c in texts}


# The files a read scans, by path (``str(FileInfo.abspath)``), and the columns it reads of each (None: all of them).
Scans = dict[str, frozenset[str] | None]


def scanned_columns(frames: list[pl.LazyFrame]) -> Scans | None:
    """The Parquet files the optimised plans of ``frames`` scan by path, and the columns each reads (projection
    pushed down): what a read that failed needed of each file (``Run._quarantine_unreadable``). None where the
    plans cannot be walked: polars has no public API for a plan's scans, so this walks its IR as its GPU engine
    does (``LazyFrame._ldf.visit``); a polars that changes it leaves every file read in full, as before."""
    out: dict[str, frozenset[str] | None] = {}
    try:
        for lf in frames:
            nt = lf._ldf.visit()
            stack, seen = [nt.get_node()], set()
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                nt.set_node(node)
                ir = nt.view_current_node()
                if type(ir).__name__ == "Scan":
                    wanted = ir.file_options.with_columns
                    cols = None if wanted is None else frozenset(str(c) for c in wanted)
                    for path in ir.paths:
                        key = str(path)
                        had = out.get(key, frozenset())
                        out[key] = None if had is None or cols is None else had | cols
                stack.extend(nt.get_inputs())
    except Exception:  # noqa: BLE001  (polars' IR as this code knows it, or not at all: every file is read whole)
        return None
    return out


def _read_parquet(f: FileInfo, columns: list[str] | None) -> None:
    """Read the Parquet sample file ``f`` (``columns`` of it; None: all), as a query reads it; raises where it
    fails (``Run._quarantine_read``)."""
    src = f.abspath
    # With polars, which failed the query: pyarrow reads a string that is not UTF-8 without a word.
    # glob=False: a folder named ``exp[lr=1e-6]`` is a name, not a pattern (every file "failed").
    # An object is read as the query read it, by polars' reader: one whose content always arrives
    # cut short fails there (obstore's reads resume where a body broke off, and would pass it).
    if isinstance(src, ObjectPath):
        pl.read_parquet(str(src), columns=columns, storage_options=src.store.polars_options, glob=False)
    elif is_live():  # a file of a run being written, read into memory, never mapped (SIGBUS)
        pl.read_parquet(src.read_bytes(), columns=columns)
    else:
        pl.read_parquet(src, columns=columns, glob=False)


# How many times ``Run.collect`` reads again when no file fails but some changed since they were listed.
CHANGED_RETRIES = 2
# Up to this many objects are asked for their stamp by a HEAD each (``Run._object_stamps``); more, by listing the run.
HEADS_AT_MOST = 8
_T = TypeVar("_T")

# The polars engines ``Run.collect`` takes (``pl.collect_all``'s ``engine``).
CollectEngine = Literal["auto", "in-memory", "streaming", "gpu"]


@dataclass
class Run:
    """A run directory read into runlog's canonical model.

    ``files`` and ``problems`` come from discovery (footers and JSONL lines only). The frames are lazy:
    nothing beyond that is read until a frame is collected, and only the columns selected are read.
    """

    root: Path
    files: list[FileInfo]
    ctx: RunContext
    unmatched: list[str] = field(default_factory=list)
    skipped: int = 0  # files left unopened by ``open_run(keep=...)``
    single: str | None = None  # ``folder/file``, for a run given as one file at its run folder's top

    @property
    def problems(self) -> list[Problem]:
        return self.ctx.problems

    @property
    def fidelity(self) -> list[dict[str, str]]:
        return self.ctx.fidelity

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self.ctx.manifest

    @property
    def name(self) -> str:
        """The manifest's name, else ``folder/file`` for a run given as one file at the top of its run folder
        (an inspect_ai log, a results JSONL: the folder may hold others), else the run folder's."""
        m = self.manifest or {}
        return str(m.get("name") or self.single or self.root.name)

    @cached_property
    def end_state(self) -> EndState:
        """Whether each process that writes this run closed its writer, and whether its files hold what it wrote
        (``runlog.ends``; reads the writer state files)."""
        return end_state(
            self.manifest, self.ctx.state_files, holdings_of(self.files), superseded(self.root), self._writer_open
        )

    def _writer_open(self, process: int) -> bool:
        """Whether the writer of ``process`` holds its lock on this local run now (never on an object store)."""
        if isinstance(self.root, ObjectPath):
            return False
        from .locks import held_now

        return held_now(Path(self.root), process)

    def files_of(self, layout: str) -> list[FileInfo]:
        return [f for f in self.files if f.layout == layout]

    @cached_property
    def layouts(self) -> list[Layout]:
        names = {f.layout for f in self.files}
        return [lay for lay in layouts() if lay.name in names]

    @cached_property
    def samples(self) -> pl.LazyFrame:
        """One row per trajectory, canonical columns first (``schema.SAMPLE_COLUMNS``), extras after."""
        frames = []
        for lay in self.layouts:
            files = self.files_of(lay.name)
            whole = [f for f in files if not f.unread]
            if (lf := lay.scan_samples(whole if len(whole) < len(files) else files, self.ctx)) is not None:
                frames.append(lf)
            # A file whose text columns could not be read (``_quarantine_unreadable``): its rows, texts null.
            for f in files:
                if f.unread and f.readable and (lf := lay.scan_samples([f], self.ctx)) is not None:
                    schema = lf.collect_schema()
                    frames.append(lf.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in f.unread))
        self._unread_seen = self._unread_now()
        if not frames:
            return S.empty_samples()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def _unread_now(self) -> frozenset[str]:
        """The files not read as written: text left out (``FileInfo.unread``), or read with U+FFFD (``repaired``)."""
        return frozenset(f.path for f in self.files if f.unread or f.repaired is not None)

    @cached_property
    def roles(self) -> pl.LazyFrame:
        """Long view, one row per (sample, role): ``step, split, sample_id, group_id, role, reward, kl``.
        Samples without per-role data (Flink v0, single-agent layouts) give one row with a null role and
        the sample's reward: reported, never invented."""
        return self.role_rows(["step", "split", "sample_id", "group_id"]).select(
            [pl.col(c).cast(t) for c, t in S.ROLE_COLUMNS.items()]
        )

    def role_rows(self, carry: list[str], samples: pl.LazyFrame | None = None) -> pl.LazyFrame:
        """One row per (sample, role) with the sample columns ``carry`` beside ``role, reward, kl``.

        One pass over the samples (no self-join): a sample without per-role data becomes a single
        null-role entry holding the sample's reward. Only ``carry``, ``reward`` and ``roles`` are read.
        """
        lf = self.samples if samples is None else samples
        has_roles = pl.col("roles").is_not_null() & (pl.col("roles").list.len() > 0)
        unknown = pl.concat_list(
            pl.struct(
                pl.lit(None, dtype=pl.String).alias("role"),
                pl.col("reward"),
                pl.lit(None, dtype=pl.Float64).alias("kl"),
            )
        )
        return (
            lf.select(*carry, pl.when(has_roles).then(pl.col("roles")).otherwise(unknown).alias("_roles"))
            .explode("_roles")
            .unnest("_roles")
        )

    def component_names(self) -> list[str]:
        """Reward component names across the run (footers where they tell, else the components column)."""

        def build() -> list[str]:
            names: list[str] = []
            for lay in self.layouts:
                for n in lay.component_names(self.files_of(lay.name), self.ctx):
                    if n not in names:
                        names.append(n)
            return names

        # A layout that reads the components column may hit a corrupt file (or an object whose content never
        # arrives whole, or a file rewritten while read): found, reported, and read again, as ``collect`` does.
        # The first read of a run's data may be this one.
        return self._recovering(build, others=False)

    def numeric(self, carry: dict[str, pl.Expr], components: list[str] | None = None) -> pl.LazyFrame:
        """The numeric view summaries work on: one row per (sample, role) with the ``carry`` expressions,
        ``role, reward, kl`` and ``component/<name>`` floats; built per layout by its fastest route, and
        never reading a text column unless a ``carry`` expression asks for one."""
        comps = self.component_names() if components is None else components
        texts = _texts_read(carry, self.layouts)
        frames = []
        for lay in self.layouts:
            files = self.files_of(lay.name)
            # A file whose text is unreadable (``FileInfo.unread``), where ``carry`` reads that text: its rows
            # from its canonical samples with the text null (the layout's own route would read the raw text).
            odd = [f for f in files if texts & set(f.unread)] if texts else []
            if odd:
                files = [f for f in files if f not in odd]
            if files and (lf := lay.scan_numeric(files, self.ctx, carry, comps)) is not None:
                frames.append(lf)
            for f in odd:
                if (raw := lay.scan_samples([f], self.ctx)) is not None:
                    schema = raw.collect_schema()
                    nulled = raw.with_columns(pl.lit(None, dtype=schema[c]).alias(c) for c in f.unread)
                    frames.append(numeric_from_samples(nulled, carry, comps))
        if not frames:
            return numeric_from_samples(S.empty_samples(), carry, comps)
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def numeric_wide(self, carry: dict[str, pl.Expr], components: list[str], roles: list[str]) -> pl.LazyFrame | None:
        """The wide numeric view (``Layout.scan_numeric_wide``), or None unless every layout offers it. A file
        whose text is unreadable (``FileInfo.unread``) is in it, that text null (the layout reads it so): a
        summary planned on this view before a read found the file builds it again without it failing."""
        frames = []
        for lay in self.layouts:
            files = [f for f in self.files_of(lay.name) if f.kind == "samples" and f.readable]
            if not files:
                continue
            lf = lay.scan_numeric_wide(files, self.ctx, carry, components, roles)
            if lf is None:
                return None
            frames.append(lf)
        if not frames:
            return None
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def wide_roles_everywhere(self) -> bool:
        """Whether every readable sample file offers a wide view in which every sample has every role's values
        (``Layout.wide_roles_everywhere``); decided from footers."""
        seen = False
        for lay in self.layouts:
            files = [f for f in self.files_of(lay.name) if f.kind == "samples" and f.readable]
            if not files:
                continue
            if not lay.wide_roles_everywhere(files, self.ctx):
                return False
            seen = True
        return seen

    @cached_property
    def scalars(self) -> pl.LazyFrame:
        """Long view of scalar metrics: ``step, time, key, value, source, record`` (the record: its index in
        its file)."""
        frames = [
            S.conform_scalars(lf)
            for lay in self.layouts
            if (lf := lay.scan_scalars(self.files_of(lay.name), self.ctx)) is not None
        ]
        if not frames:
            return S.empty_scalars()
        return frames[0] if len(frames) == 1 else pl.concat(frames)

    def collect(self, build: Callable[[], list[pl.LazyFrame]], *, engine: CollectEngine = "auto") -> list[pl.DataFrame]:
        """Collect the frames ``build`` makes; if reading fails on data that discovery could not check (a
        corrupt data page behind an intact footer), find the files that fail, report each as a problem,
        leave them out and build again, so that the good data is still analysed."""
        frames: list[pl.LazyFrame] = []

        def read() -> list[pl.DataFrame]:
            frames[:] = build()
            return pl.collect_all(frames, engine=engine)

        return self._recovering(read, others=True, scans=lambda: scanned_columns(frames))

    def _forget_reads(self) -> None:
        """After files were left out: the frames and role names built over them are built again, and the command's
        answer is not kept (``errors.said_trouble``)."""
        for name in ("samples", "roles", "layouts"):
            self.__dict__.pop(name, None)
        said_trouble()

    def _recovering(
        self, read: Callable[[], _T], *, others: bool, scans: Callable[[], Scans | None] | None = None
    ) -> _T:
        """``read()``; when it fails on the data, the files that fail are left out (``_quarantine_unreadable``;
        with ``others``, also those found unreadable through another ``Run``: ``_marked_elsewhere``) and it is
        read again (``scans``: the files the failed read scanned and their columns, ``scanned_columns``, so that
        each file is tried on what the read needed of it). When no file fails any more but some file changed since
        it was listed (rewritten while it was read: polars then fails on a page, or panics on a file that shrank),
        one whose columns no longer fit the listing is left out (``_quarantine_misfits``), else it is read again,
        up to ``CHANGED_RETRIES`` times: the new version is whole. Else ``DataError``, never a panic's
        traceback."""
        retries = CHANGED_RETRIES
        for _ in range(len(self.files) + CHANGED_RETRIES + 1):  # each pass leaves a file out, or uses a retry
            try:
                return read()
            except read_failures() as exc:
                # OSError: an object deleted (or a local file removed) after discovery. A panic: polars read a
                # file that changed under it (``read_failures``), or a Ctrl-C inside polars.
                _not_interrupt(exc)
                error = exc
            self._check_reachable(error)
            if self._quarantine_unreadable(scans() if scans else None) or (others and self._marked_elsewhere()):
                continue
            changed = [f for f in self._changed_files()[0] if f.readable]
            if changed and self._quarantine_misfits(changed):
                continue
            if retries and changed:
                # Built again: a scan keeps the footer it first read, and read the new bytes at its old offsets.
                retries -= 1
                for name in ("samples", "roles", "layouts"):
                    self.__dict__.pop(name, None)
                continue
            break
        raise DataError(str(self.root), f"reading the run failed: {_first_line(error)}") from None

    def _changed_files(self, files: list[FileInfo] | None = None) -> tuple[list[FileInfo], list[FileInfo]]:
        """The files of the run (of ``files``) that are no longer the version listed (rewritten, replaced or
        removed since: a read that failed on them may succeed on what is there now, or they no longer fit the
        listing), and the remote ones of which that cannot be told (the store gave no stamp, or will not say
        now). Only on the error path: an object's stamp is asked of the store (``_object_stamps``)."""
        changed: list[FileInfo] = []
        unknown: list[FileInfo] = []
        remote: list[FileInfo] = []
        for f in self.files if files is None else files:
            if isinstance(f.abspath, ObjectPath):
                (remote if f.stamp is not None else unknown).append(f)
                continue
            if f.stamp is None:
                continue
            try:
                if local_stamp(os.stat(f.abspath)) != f.stamp:
                    changed.append(f)
            except OSError:
                changed.append(f)
        if remote:
            now = self._object_stamps(remote)
            for f in remote:
                same = storage.same_version(f.stamp, now[f.path]) if f.path in now else None
                if f.path in now and now[f.path] is None:
                    changed.append(f)  # gone
                elif same is None:
                    unknown.append(f)
                elif not same:
                    changed.append(f)
        return changed, unknown

    def _object_stamps(self, files: list[FileInfo]) -> dict[str, tuple | None]:
        """The stamps (``storage.object_stamp``) of the objects of ``files`` now, by run-relative path: None for
        one that is gone; left out where the store would not say. A HEAD request for each of a few files, else one
        listing of the run (a request per 1,000 objects): thousands of HEADs, one after the other, take minutes. A
        run at a bucket's root (an empty key) is listed too: the bucket is the run."""
        out: dict[str, tuple | None] = {}
        root = self.root
        try:
            if len(files) > HEADS_AT_MOST and isinstance(root, ObjectPath):
                below = {m.key: m for m in root.store.list(root.key)}
                for f in files:
                    meta = below.get(f.abspath.key)
                    out[f.path] = None if meta is None else storage.object_stamp(meta)
                return out
            for f in files:
                src: ObjectPath = f.abspath  # type: ignore[assignment]
                meta = src.store.head(src.key)
                out[f.path] = None if meta is None else storage.object_stamp(meta)
        except RunlogError:  # the store will not say (access denied to HEAD or listing): unknown
            pass
        return out

    def _quarantine_misfits(self, changed: list[FileInfo]) -> list[FileInfo]:
        """Of the Parquet sample files ``changed`` since they were listed, those whose columns are no longer the
        ones listed (a column of another type, one gone or added: a writer replaced the file, a sync copied a
        new version), marked unreadable and said as changed while read, naming what changed. Each reads whole
        alone (``_quarantine_unreadable`` finds nothing), but the run's scan, built from the listing, fails on
        it as a whole ("data type mismatch for column reward"), and would on every retry."""
        bad = []
        for f in changed:
            if f.fmt != "parquet" or not f.readable or f.kind != "samples":
                continue
            why = self._misfit(f)
            if why is None:
                continue
            self.ctx.problem(f.path, UNREADABLE, f"{CHANGED}: {why}; file skipped")
            f.readable = False
            bad.append(f)
        if bad:
            self._forget_reads()  # the file may be whole and fit next time: an answer saying so is not kept
        return bad

    def _misfit(self, f: FileInfo) -> str | None:
        """Why the file of ``f`` as it is now does not fit what was listed of it (probed again by its layout, on a
        scratch context: its problems are not the run's), or None if its columns are the ones listed."""
        src = f.abspath
        try:
            if isinstance(src, ObjectPath):
                meta = src.store.head(src.key)
                if meta is None:
                    return None  # gone: a read of it fails, and says so (``_quarantine_unreadable``)
                src.store.prefetch(footers=[meta])  # its footer alone, not the whole object
                size = meta.size
            else:
                size = os.stat(src).st_size
        except (OSError, RunlogError):
            return None
        scratch = RunContext(root=self.ctx.root, manifest=self.ctx.manifest, files=self.ctx.files)
        cand = Candidate(self.root, src, size, rel=f.path, path_str=str(src))
        try:
            new = get_layout(f.layout).probe(cand, scratch)
        except Exception as exc:  # noqa: BLE001  (a file that cannot be probed now does not fit)
            return f"it cannot be read as {f.layout} now: {_first_line(exc)}"
        finally:
            if isinstance(src, ObjectPath):
                src.store.forget(src.key)
        if not new.readable:
            said = [p.message for p in scratch.problems if p.path == f.path and p.kind != WARNING]
            return said[0].removesuffix("; file skipped") if said else "it cannot be read now"
        listed, now = f.columns, new.columns
        shown = lambda c: visible(c, keep_newlines=False)  # noqa: E731  (a column name is the file's text)
        parts = [f"{shown(c)} is {now[c]}, listed {t}" for c, t in listed.items() if c in now and now[c] != t]
        parts += [f"{shown(c)} is gone" for c in listed if c not in now]
        parts += [f"{shown(c)} is new" for c in now if c not in listed]
        return f"its columns are no longer those listed ({'; '.join(parts)})" if parts else None

    def _check_reachable(self, exc: BaseException) -> None:
        """A remote run whose store cannot be reached (the server gone mid-command): one error for the run at
        once; looking for the files that fail would try each of them, each waiting out the client's retries."""
        if isinstance(self.root, ObjectPath) and unreachable(exc):
            raise DataError(str(self.root), f"reading the run failed: {UNREACHABLE}") from None

    def _marked_elsewhere(self) -> bool:
        """Whether a file of this run's frames was found unreadable through another ``Run`` sharing its file
        records (a summary's sub-run, ``summarize._sub_run``) after the frames were built: they are then built
        again without it (the problem was reported where it was found)."""
        built = self.__dict__.get("samples") is not None or self.__dict__.get("layouts") is not None
        newly_unread = self._unread_now() != getattr(self, "_unread_seen", frozenset())
        if not built or not (newly_unread or any(not f.readable and f.kind == "samples" for f in self.files)):
            return False
        for name in ("samples", "roles", "layouts"):
            self.__dict__.pop(name, None)
        return True

    def _quarantine_unreadable(self, scans: Scans | None = None) -> list[FileInfo]:
        """Read the readable Parquet sample files; mark the ones that fail (corrupt, or gone since discovery),
        and forget the lazy frames built from the old file list. Only runs on the error path.

        ``scans`` (the files the failed read scanned, and the columns of each: ``scanned_columns``): each of those
        files is read first on those columns alone, the others not at all, so that what is said of a file does
        not depend on another file's failure (a text page read whenever another file's number failed made the
        file an error then, and valid otherwise; a remote run was fetched whole). Where no file fails so (or the
        scans are not known), every file is read in full.

        A file whose numbers read but whose text does not (a corrupt data page in ``completion``) keeps its
        numbers: its text columns are marked ``FileInfo.unread`` (null in ``samples``, so that the text
        metrics, trajectories and tables leave its samples out) and said once; every other failure leaves the
        whole file out. One whose text fails only for bytes that are no UTF-8 is read with U+FFFD in their place
        instead, its texts kept (``_repair_utf8``)."""
        if scans is not None and (bad := self._quarantine_read(scans)):
            return bad
        return self._quarantine_read(None)

    def _quarantine_read(self, scans: Scans | None) -> list[FileInfo]:
        """``_quarantine_unreadable``'s reads: of the columns ``scans`` gives each file it names (None: every
        file, every column)."""
        bad = []
        for f in self.files:
            if f.fmt != "parquet" or not f.readable or f.kind != "samples" or f.unread or f.repaired is not None:
                continue
            src = f.abspath
            remote = isinstance(src, ObjectPath)
            columns: list[str] | None = None
            if scans is not None:
                if str(src) not in scans:
                    continue  # not read by the read that failed: it cannot have failed it
                wanted = scans[str(src)]
                columns = None if wanted is None or not f.columns else [c for c in f.columns if c in wanted]
            try:
                _read_parquet(f, columns)
            except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001  (any failure to decode
                # means the file is unusable; a panic, that it changed while read: unreadable at that moment)
                _not_interrupt(exc)
                self._check_reachable(exc)
                reason = _first_line(exc)
                gone = isinstance(exc, FileNotFoundError) or "NoSuchKey" in reason or "not found" in reason.lower()
                # A remote read that failed (not a decoding error: polars says those otherwise): said as the
                # store's reason, and no column is tried on its own (each try would wait out the retries).
                unread = remote and isinstance(exc, OSError) and not gone
                if unread:
                    self.ctx.problem(
                        f.path, UNREADABLE, f"cannot be read from the store: {remote_reason(exc)}; file skipped"
                    )
                    f.readable = False
                    bad.append(f)
                    continue
                failing, present = ([], []) if gone else self._failing_columns(f)
                texts = text_columns(f.layout)
                # Text that is no UTF-8 (one byte refused the whole file): read with U+FFFD where it may be.
                kept = self._repair_utf8(f) if failing and set(failing) <= set(texts) and INVALID_UTF8 in reason else ""
                if kept is None:
                    bad.append(f)
                    continue
                if failing and set(failing) <= set(texts):
                    # The texts go together (a sample's messages without its completion would mislead), but a
                    # readable prompt or group id stays: it is what puts the file's samples in their groups.
                    f.unread = tuple(c for c in texts if c in present and (c not in GROUP_KEYS or c in failing))
                    grouped = " (and of prompt groups)" if set(GROUP_KEYS) & set(failing) else ""
                    self.ctx.problem(
                        f.path,
                        UNREADABLE,
                        f"its text could not be read ({', '.join(failing)}: corrupt data, the footer is intact: "
                        f"{reason}): left out of diversity, format and trajectories{grouped}; its numbers are "
                        f"counted{kept}",
                    )
                else:
                    # The file's own columns that fail: those named, and those behind a derived one that fails
                    # (Flink v1's ``roles``, from ``solver_reward`` and the other role columns).
                    named = [c for c in failing if c in f.columns]
                    if any(c not in f.columns for c in failing):
                        named += [c for c in self._failing_sources(f, failing) if c not in named]
                    where = f" in {', '.join(named)}" if named and len(named) < len(f.columns) else ""
                    # Changed since listed: told by the file's stamp, or an object's HEAD (size and ETag). An object
                    # whose version the store will not tell may have been replaced: no corruption claimed then.
                    changed, unknown = ([], []) if gone else self._changed_files([f])
                    what = (
                        GONE
                        if gone
                        else CHANGED
                        if changed
                        else f"unreadable data{where} (corrupt, or changed since it was listed: the store does not "
                        "say which)"
                        if unknown
                        else f"corrupt data{where} (the footer is intact)"
                    )
                    self.ctx.problem(f.path, UNREADABLE, f"{what}: {reason}; file skipped")
                    f.readable = False
                bad.append(f)
        if bad:
            self._forget_reads()  # a failure while reading may not happen again (EIO, a file replaced): not kept
        return bad

    def _failing_sources(self, f: FileInfo, failing: list[str]) -> list[str]:
        """The columns of the file ``f`` (``FileInfo.columns``) that fail to read on their own, of those its
        layout reads for the canonical columns ``failing`` (``scanned_columns``; where the plan cannot be walked,
        every column of the file): what a corrupt page behind a derived column is in."""
        try:
            lf = get_layout(f.layout).scan_samples([f], self.ctx)
            scans = scanned_columns([lf.select(failing)]) if lf is not None else None
        except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001  (unknown: every column tried)
            _not_interrupt(exc)
            scans = None
        wanted = None if scans is None else scans.get(str(f.abspath))
        out = []
        for c in f.columns:
            if wanted is not None and c not in wanted:
                continue
            try:
                _read_parquet(f, [c])
            except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001
                _not_interrupt(exc)
                out.append(c)
        return out

    def _repair_utf8(self, f: FileInfo) -> str | None:
        """A file whose text holds bytes that are no UTF-8 (polars refuses the whole file for one of them: every
        row's text was lost): read again with U+FFFD in place of each invalid byte sequence (``repaired_utf8``),
        its other rows and columns as written, and the values so read counted in one warning naming the file, as
        a binary ``exception`` column's are. None when so read; else why not, said after the problem of its text
        left out, as before ("" where the read failed: a corrupt page besides, which that problem says)."""
        from .formats.common import repaired_utf8

        unrepaired = "; not read with U+FFFD in place of its invalid bytes: "
        if f.bytes > REPAIR_MAX_BYTES:
            return f"{unrepaired}it is {_size(f.bytes)}; a file over {_size(REPAIR_MAX_BYTES)} is not held in memory"
        held = sum(len(x.repaired or b"") for x in list(_REPAIRED.values()))
        if held + f.bytes > REPAIR_HELD_MAX:
            gc.collect()  # runs no longer used may wait for the collector (reference cycles) with their files
            held = sum(len(x.repaired or b"") for x in list(_REPAIRED.values()))
        if held + f.bytes > REPAIR_HELD_MAX:
            return (
                f"{unrepaired}it is {_size(f.bytes)}; the files so read hold {_size(held)} of memory already (at "
                f"most {_size(REPAIR_HELD_MAX)})"
            )
        src = f.abspath
        try:
            data, counts = repaired_utf8(src.read_bytes() if isinstance(src, ObjectPath) else src)
        except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001  (not repairable: left out)
            _not_interrupt(exc)
            return ""
        if not counts or self._changed_files([f])[0]:  # another version than the one listed: not used
            return ""
        n = sum(counts.values())
        where = ", ".join(f"{visible(c, keep_newlines=False)}: {k:,}" for c, k in counts.items())
        self.ctx.warn(
            f.path,
            f"{n:,} text value(s) are not valid UTF-8 ({where}): read with U+FFFD in place of each invalid byte "
            "sequence; the file's other values are as written",
        )
        f.repaired = data
        _REPAIRED[id(f)] = f
        return None

    def _failing_columns(self, f: FileInfo) -> tuple[list[str], list[str]]:
        """The canonical columns of ``f`` that cannot be read, read through its layout, and all its canonical
        columns; none failing when its layout cannot build its frame, or every column reads on its own. The
        columns other than its text (``text_columns``) are read together first: where they read (the usual
        damage, a text page), only the text columns are read one by one, not each of the file's columns (16
        reads a file, 1,000 damaged files: seconds)."""
        try:
            lf = get_layout(f.layout).scan_samples([f], self.ctx)
            names = lf.collect_schema().names() if lf is not None else []
        except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001  (the file is then left out whole)
            _not_interrupt(exc)
            return [], []

        def fails(columns: list[str]) -> bool:
            try:
                lf.select(columns).collect()  # type: ignore[union-attr]
            except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001
                _not_interrupt(exc)
                return True
            return False

        def fails_view(numeric: pl.LazyFrame, column: str | None) -> bool:
            try:
                numeric.select(pl.len() if column is None else column).collect()
            except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001
                _not_interrupt(exc)
                return True
            return False

        def fails_numeric(column: str) -> bool:
            """Whether ``column`` fails in the numeric view, which may find it from another source than the
            samples' (Flink: the prompt from the rendered ``trajectory``, not ``agent_trajectories``). Where the
            view fails without it (its own columns, ``roles`` and ``reward``, are the corrupt ones), it tells
            nothing of ``column``: the samples' verdict (a corrupt ``roles`` page named ``prompt`` too)."""
            try:
                numeric = layout.scan_numeric([f], self.ctx, {column: pl.col(column)}, [])
                bare = layout.scan_numeric([f], self.ctx, {}, [])
            except Exception:  # noqa: BLE001  (no numeric route to test: the samples' verdict)
                numeric = bare = None
            if numeric is None or bare is None or fails_view(bare, None):
                return fails([column])
            return fails_view(numeric, column)

        layout = get_layout(f.layout)
        texts = text_columns(f.layout)
        others = [c for c in names if c not in texts]
        suspects = [c for c in names if c in texts] if others and not fails(others) else names
        # What puts the samples in their prompt groups is tested on the numeric view's source (summaries read
        # the groups there): tested on the samples' own (Flink's conversation, from agent_trajectories), a
        # file's groups were dropped whenever ANOTHER file's failure set this search going, and kept when
        # none did. A group id the layout derives (one of its text columns the file does not hold: Flink's)
        # is found from the prompt, and fails with it.
        verdict: dict[str, bool] = {}

        def fails_here(column: str) -> bool:
            if column not in GROUP_KEYS or column not in texts:
                return fails([column])
            source = "prompt" if column in layout.text_columns and column not in f.columns else column
            if source not in verdict:
                verdict[source] = fails_numeric(source) if source in names else fails([column])
            return verdict[source]

        return [c for c in suspects if fails_here(c)], names

    def forget_frames(self) -> None:
        """Drop the lazy frames built so far (``samples``, ``roles``, ``layouts``): built before a part found a file
        unreadable (through a sub-run sharing the file records, which marks it there), they still held it, and a
        later part that read columns the corrupt page is not in counted it."""
        for name in ("samples", "roles", "layouts"):
            self.__dict__.pop(name, None)

    def left_out(self) -> int:
        """How many sample files are left out whole (unreadable). A command that reads the run in several parts
        compares it before and after them: a part that found a file unreadable (a corrupt data page behind an
        intact footer) leaves it out of the parts after it, not of those before, so the parts are read again."""
        return sum(1 for f in self.files if f.kind == "samples" and not f.readable)

    def role_names(self) -> list[str]:
        """Role names known from manifests and footers, without reading data: the whole run's
        (``RunContext.files``), also for a part of it (a summary's batch of steps, the steps the partial cache has
        not stored): a role that only later steps log has no row in the earlier steps', whichever are read."""
        whole = self.files if self.ctx.files is None else self.ctx.files
        present = {f.layout for f in whole}
        names: list[str] = []
        for lay in layouts():
            if lay.name not in present:
                continue
            for r in lay.roles([f for f in whole if f.layout == lay.name], self.ctx):
                if r not in names:
                    names.append(r)
        return names

    def decisions(self) -> str:
        """What the run's layouts decide from all of its files that changes how one file's rows read (its roles;
        ``Layout.decided``, TRL's reward-function columns), as a short digest: the partial cache keys the steps it
        stores by it, so that a step stored before a change of it (a new role, a column numeric in a new file, a
        file deleted) is computed again, never merged with steps read under the new decision."""
        whole = self.files if self.ctx.files is None else self.ctx.files
        present = {f.layout for f in whole}
        decided = [
            (lay.name, lay.decided([f for f in whole if f.layout == lay.name], self.ctx))
            for lay in layouts()
            if lay.name in present
        ]
        text = repr((self.role_names(), [d for d in decided if d[1] is not None]))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.is_warning]


EMPTY_PATH = "an empty path ('') names no run: give the run's folder or file ('.' for the current folder)"


def check_path(path: str | os.PathLike[str]) -> None:
    """Refuse, before anything is listed, a path that names no run: an empty one (``''``, which a folder
    listing read as the current folder), or a local path that does not exist, with the name close to it beside
    it (``did you mean 'runs/flink_mixed'?``), or, where it or a folder above it is a symbolic link whose target
    does not exist, that link and its target. A glob (``runs/*``) and an object-store URL are left to the
    listing, which says what they match. ``RunNotFoundError``/``UsageError``: exit 2."""
    from .listing import is_pattern

    if isinstance(path, str) and path == "":
        raise UsageError(EMPTY_PATH)
    if not isinstance(path, str | os.PathLike) or storage.is_url(os.fspath(path)):
        return
    given = os.fspath(path)
    if os.path.exists(os.path.expanduser(given)) or is_pattern(given):
        return
    link = _dangling_link(given)
    if link is not None:
        at, said = link
        if at == given.rstrip("/"):
            raise RunNotFoundError(f"{given}: {said}")
        raise RunNotFoundError(f"{given}: no such file or directory ({at} is {said})")
    raise RunNotFoundError(f"{given}: no such file or directory{near_path_hint(given)}")


def _dangling_link(path: str) -> tuple[str, str] | None:
    """The first of ``path`` and the folders above it, from the top, that is a symbolic link to nothing, with
    what it is (``a symbolic link to 'missing', which does not exist``: its target as the link holds it, the
    links it leads through after it); None where there is none (a name that is simply not there)."""
    parts = path.rstrip("/").split("/") or [path]
    for i in range(1, len(parts) + 1):
        at = "/".join(parts[:i])
        if not at or at in (".", ".."):
            continue
        full = os.path.expanduser(at)
        if os.path.exists(full):
            continue
        if not os.path.islink(full):
            return None  # nothing is below a name that is not there
        return at, _link_said(full)
    return None


def _link_said(link: str, hops: int = 8) -> str:
    """What the symbolic link ``link``, whose target does not exist, leads to: ``a symbolic link to 'a' -> 'b',
    which does not exist`` (each target as its link holds it), or a loop of links."""
    targets: list[str] = []
    seen = {os.path.abspath(link)}
    at = link
    while len(targets) < hops:
        try:
            target = os.readlink(at)
        except OSError:
            break
        targets.append(repr(target))
        at = os.path.join(os.path.dirname(at), target)
        if os.path.abspath(at) in seen:
            return f"a symbolic link to {' -> '.join(targets)}: a loop of links, which leads to no file"
        seen.add(os.path.abspath(at))
        if not os.path.islink(at):
            break
    return f"a symbolic link to {' -> '.join(targets)}, which does not exist"


def near_path_hint(path: str) -> str:
    """`` (did you mean 'runs/flink_mixed'?)`` where a file or folder beside where ``path`` points has a name close
    to its last part (its folder's name mistyped too: the folder close to it); empty otherwise. A name with
    invisible or control characters is shown with escapes, which typed name nothing: it is also given as a shell
    can take it (bash's and zsh's ``$'...'``)."""
    from .textsafe import visible

    near = _near_path(path.rstrip("/") or path)
    if near is None:
        return ""
    if visible(near, keep_newlines=False) == near:
        return did_you_mean(near, [near])
    return (
        f" (did you mean the one shown as {near!r}? Its name has invisible or control characters, shown as "
        f"escapes: typed as shown it names nothing; in bash or zsh, type it as {_ansi_c_quoted(near)})"
    )


def _ansi_c_quoted(text: str) -> str:
    """``text`` as a shell's ANSI-C quoted string (``$'exp\\x0121'``), every character the terminal would not
    show as itself (``textsafe.visible``) written as an escape the shell reads back to it; a byte that is not
    UTF-8 (``os.fsdecode`` made it a lone surrogate) as that byte."""
    from .textsafe import visible

    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif visible(ch, keep_newlines=False) == ch:
            out.append(ch)
        elif ord(ch) < 0x80 or 0xDC80 <= ord(ch) <= 0xDCFF:  # (a byte of a name not UTF-8, as Python decodes it)
            out.append(f"\\x{ord(ch) & 0xFF:02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "$'" + "".join(out) + "'"


def _near_path(path: str) -> str | None:
    """An existing path of the names close to those of ``path``: its last part among its folder's entries, that
    folder itself found so where it does not exist; hidden names only for a hidden name. Never an entry that does
    not exist (a symbolic link to nothing, which the folder lists: the name typed itself, offered as its own
    near miss)."""
    import difflib

    parent, name = os.path.split(path)
    if not name or name in (".", ".."):
        return None
    if parent and not os.path.isdir(os.path.expanduser(parent)):
        parent = _near_path(parent.rstrip("/") or parent) or ""
        if not parent or not os.path.isdir(os.path.expanduser(parent)):
            return None
    try:
        names = os.listdir(os.path.expanduser(parent) or ".")
    except OSError:
        return None
    if not name.startswith("."):
        names = [n for n in names if not n.startswith(".")]
    folded = {n.casefold(): n for n in names}
    close = [folded[name.casefold()]] if name.casefold() in folded else []
    close += difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    there = (os.path.join(parent, n) for n in close if os.path.exists(os.path.expanduser(os.path.join(parent, n))))
    return next(there, None)


def _listing(
    path: Any,
    storage_options: Mapping[str, str] | None,
    prefetch: bool,
    layout: str | None,
    issues: list[tuple[str, str, bool]] | None,
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]], bool]:
    """``listing.listing`` of a path that names something (:func:`check_path`)."""
    check_path(path)
    return listing(path, storage_options, prefetch, layout, issues)


def _not_a_run_file(path: Any, rel: str) -> str:
    """Why the one file given as a run is no run file: a name that runlog leaves out of every run's listing (a
    writer's state file, a temporary file, a hidden one); ``open_run`` said "no files found" of a file that is
    there."""
    name = rel.rpartition("/")[2]
    if STATE_RE.match(name):
        return (
            f"{path}: a writer's state file (how each process ended; runlog inspect RUN says it), not a run: "
            "pass its folder"
        )
    if name.endswith(TEMP_SUFFIXES):
        return f"{path}: a writer's temporary file (a step being written, or left by one interrupted), not a run file"
    if name.startswith("."):
        return (
            f"{path}: a hidden file (its name begins with '.'), which runlog reads as no run file: pass its run's "
            "folder"
        )
    return f"{path}: a file runlog ignores ({name}), not a run file"


@dataclass(frozen=True)
class NameEntry:
    """What a file's path alone says: its layout and, for one-step sample files, split and step."""

    path: str
    layout: str
    split: str | None
    step: int | None
    keyed: bool  # the name gave (split, step): a ``keep`` predicate can decide about it unopened


def list_names(
    path: str | os.PathLike[str],
    *,
    layout: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    prefetch: bool = True,
    issues: list[tuple[str, str, bool]] | None = None,
) -> list[NameEntry]:
    """Every file a run has, with its layout and the split/step its name tells, opening no Parquet file
    (JSONL layouts are recognised from their first line). Cheap even for thousands of files; commands use
    it to decide which files ``open_run(keep=...)`` needs at all. ``issues``: as ``listing.walk``'s (what the
    listing left out: a link to a folder listed already)."""
    root, paths, _ = _listing(path, storage_options, prefetch, layout, issues)
    forced = get_layout(layout) if layout else None
    registry = layouts()
    out = []
    claimed: list[tuple[str, Placement]] = []
    for abspath, rel, size, path_str, stamp in paths:
        cand = Candidate(root, abspath, size, rel, path_str, stamp)
        if cand.name in IGNORED_NAMES or cand.name.startswith(".") or cand.suffix in TEMP_SUFFIXES:
            continue
        chosen = choose_layout(cand, forced, registry)
        if chosen is None:
            continue
        claimed.append((rel, _placed(cand, chosen)))
        keys = chosen.name_keys(cand)
        split, step = keys if keys is not None else (None, None)
        out.append(NameEntry(rel, chosen.name, split, step, keys is not None))
    one_run(path, claimed)
    return out


def open_outer_run(
    location: Any, *, layout: str | None = None, storage_options: Mapping[str, str] | None = None
) -> Run:
    """``open_run``, but a run with other runs in its sub-folders (their own manifests) is opened without those
    folders, as a fleet reads it (``fleet._nested_runs``); any other path of several runs is refused, as
    ``open_run`` refuses it. For what is asked of each run of a fleet beside its tasks (the filters' check)."""
    try:
        return open_run(location, layout=layout, storage_options=storage_options)
    except SeveralRunsError as exc:
        if "" not in exc.runs:
            raise
        nested = [r for r in exc.runs if r]
        _, entries = list_files(location, storage_options, prefetch=False)
        only = [rel for _, rel, *_ in entries if not any(rel == f or rel.startswith(f"{f}/") for f in nested)]
        return open_run(location, layout=layout, storage_options=storage_options, only=only)


def open_run(
    path: str | os.PathLike[str],
    *,
    layout: str | None = None,
    keep: Callable[[str | None, int | None], bool] | None = None,
    storage_options: Mapping[str, str] | None = None,
    only: Collection[str] | None = None,
    cache: bool = True,
) -> Run:
    """Discover and probe every file of a run (a directory, or a single file) and return a ``Run``.

    A path that holds several runs (``listing.one_run``: two manifests, or run folders side by side) is a
    ``UsageError``, decided from the listed paths before anything is probed. A single file is a run of
    that file, rooted at its run folder (``one_file``); ``run.json`` alone is a ``UsageError``.

    ``layout`` forces one layout for every data file instead of detecting it. ``keep(split, step)``, when
    given, is asked about every one-step sample file whose name tells its split and step; files it refuses
    are not opened at all (``Run.skipped`` counts them). Files whose names tell nothing are always read.

    ``path`` may be an object-store URL (``s3://bucket/prefix``, ``gs://...``, ``az://...``);
    ``storage_options`` (a ``storage.StorageOptions`` or a mapping) then configure the store, with the standard
    environment. Footers of remote files are fetched concurrently before probing.

    ``only``: run-relative paths; every other file is left out silently (a fleet task opening one chunk of
    a big run).

    ``cache``: reuse the probes of unchanged Parquet files from earlier commands (``runlog.probe_cache``;
    ``RUNLOG_CACHE=off`` turns it off everywhere). It never changes what is found.
    """
    issues: list[tuple[str, str, bool]] = []
    root, paths, single = _listing(path, storage_options, only is None, layout, issues)
    listed = {t[1] for t in paths}  # every file of the run, also when only some are opened
    if only is not None:
        wanted = set(only)
        paths = [t for t in paths if t[1] in wanted]
        if isinstance(root, ObjectPath):
            storage.prefetch_small(paths)
    forced = get_layout(layout) if layout else None
    ctx = RunContext(root=root)
    for rel, message, error in issues:  # what the listing could not list, or listed once only
        if only is not None and rel not in only:
            continue
        if error:
            ctx.problem(rel, UNREADABLE, message)
        else:
            ctx.warn(rel, message)
    files: list[FileInfo] = []
    unmatched: list[str] = []
    empty: list[str] = []  # unmatched because empty
    damaged: dict[str, str] = {}  # unmatched because no line that sniffing read is JSON: what it found
    skipped = 0
    unmatched_cands: list[Candidate] = []
    near_misses: dict[str, str] = {}  # unmatched files a layout nearly took: why it did not
    unreadable: dict[str, str] = {}  # unmatched files whose head could not be read (so no layout told): why
    registry = layouts()
    chosen_files: list[tuple[Candidate, Layout]] = []
    claimed: list[tuple[str, Placement]] = []
    live: dict[int, bool] = {}  # process -> whether its writer holds its lock now (``in_flight``)
    for abspath, rel, size, path_str, stamp in paths:
        cand = Candidate(root, abspath, size, rel, path_str, stamp)
        if cand.name in IGNORED_NAMES:
            continue
        if cand.name.startswith(".") or cand.suffix in TEMP_SUFFIXES:
            if (state := STATE_RE.match(cand.name)) is not None and "/" not in cand.rel:
                ctx.state_files[int(state.group(1))] = (cand.rel, cand.abspath, cand.stamp)
            elif (cand.suffix in TEMP_SUFFIXES or cand.name.endswith(TEMP_SUFFIXES)) and not in_flight(
                root, cand.rel, live
            ):
                ctx.warn(cand.rel, "leftover temporary file (a writer was interrupted?); ignored")
            continue
        chosen = choose_layout(cand, forced, registry)
        if chosen is None:
            unmatched.append(cand.rel)
            unmatched_cands.append(cand)
            near = None if forced is not None else _near_miss(cand, registry)
            if cand.head_error is not None and cand.suffix in DATA_SUFFIXES:
                # Not "no known layout": its layout could not be told because it could not be read at all.
                unreadable[cand.rel] = f"cannot read file ({cand.head_error})"
                ctx.problem(cand.rel, UNREADABLE, f"{unreadable[cand.rel]}; not read")
            elif cand.size == 0 and cand.suffix in DATA_SUFFIXES:
                empty.append(cand.rel)  # no layout can be told from nothing: said as what it is
                ctx.warn(cand.rel, "an empty file (0 bytes; a writer that stopped before its first row?): ignored")
            elif cand.suffix == ".jsonl" and cand.damaged_lines and not cand.sniffed_json:
                # Its layout cannot be told because its head is damaged, not because it is of no known layout.
                # (JSON lines only: a ``.json`` document written over several lines has lines that are no JSON.)
                damaged[cand.rel] = _damaged_head(cand)
                ctx.warn(cand.rel, f"{damaged[cand.rel]}: its layout cannot be told; ignored ({_FORCE_HINT})")
            elif cand.suffix == ".jsonl" and cand.damaged_lines:
                ctx.warn(cand.rel, f"matches no known layout ({_damaged_head(cand)}); ignored")
            elif near is not None:
                near_misses[cand.rel] = near
                ctx.warn(cand.rel, f"matches no known layout ({near}); ignored")
            elif forced is not None:
                ctx.warn(cand.rel, f"not a {forced.name} file ({_suffixes(forced)}); ignored")
            else:
                ctx.warn(cand.rel, "matches no known layout; ignored")
            continue
        claimed.append((cand.rel, _placed(cand, chosen)))
        if keep is not None:
            keys = chosen.name_keys(cand)
            if keys is not None and not keep(*keys):
                skipped += 1
                continue
        chosen_files.append((cand, chosen))
    mismatch = _forced_mismatch(forced, [c for c, _ in chosen_files], registry)
    try:
        one_run(path, claimed)
    except SeveralRunsError as exc:
        if mismatch is None or forced is None:
            raise
        # The forced layout is the likely mistake: said first (the runs it makes of the files, and the advice to
        # pass one of them, came first and led nowhere: samples/train is not a run).
        lead = mismatch.replace(f": read as {forced.name}, as asked; ", ": ")
        runs = ", ".join(r or "." for r in exc.runs[:8]) + (" ..." if len(exc.runs) > 8 else "")
        where = str(path).rstrip("/") or str(path)
        raise SeveralRunsError(
            f"{where}: {lead} (read as {forced.name}, its files make {len(exc.runs)} runs: {runs})", exc.runs
        ) from None
    if mismatch is not None:
        ctx.problems.insert(0, Problem(".", WARNING, mismatch))  # first: it explains the lines after it
    for tree in nested_trees(claimed):
        folder, _, name = tree.rpartition("/")
        ctx.problem(
            tree,
            NESTED_RUN,
            f"a second {name}/ tree below the run's folder, without a {MANIFEST} (a run has "
            + ("samples/ at its root only" if name == "samples" else f"one {name}/ tree, none deeper below another")
            + f"): another run's, or a copy, read into this run, its rows counted with the run's: move {folder} "
            "out of the run, or pass it as a run of its own",
        )
    chosen_files = _foreign_scalars(chosen_files, claimed, ctx)
    # One file alone is probed anew: its run's cache entries would be dropped as files no longer listed.
    probes = ProbeCache.open(root) if cache and not single else None
    cacheable = [probes is not None and lay.cache_probes and c.suffix == ".parquet" for c, lay in chosen_files]
    hits: dict[int, Hit] = {}
    for i, (cand, chosen) in enumerate(chosen_files):
        if cacheable[i] and probes is not None and (hit := probes.lookup(cand, chosen)):
            hits[i] = hit
    to_open = [c for i, (c, _) in enumerate(chosen_files) if i not in hits]
    if isinstance(root, ObjectPath):
        # One request per footer would make discovery latency-bound: fetch them all at once.
        storage.prefetch_footers([(c.abspath, c.size) for c in to_open if c.suffix == ".parquet"])
    with local_footers(to_open):
        for i, (cand, chosen) in enumerate(chosen_files):
            hit = hits.get(i)
            if hit is not None:
                files.append(hit.replay(ctx))
            elif cacheable[i] and probes is not None:
                n_problems, n_notes = len(ctx.problems), len(ctx.note_log)
                info = _probe(cand, chosen, ctx)
                probes.store(cand, chosen, info, ctx.problems[n_problems:], ctx.note_log[n_notes:])
                files.append(info)
            else:
                files.append(_probe(cand, chosen, ctx))
            files[-1].stamp = cand.stamp
    if probes is not None:
        probes.save(listed)
    same_keys(files, ctx)
    for f in files:
        if f.kind in ("samples", "scalars") and f.readable and f.rows == 0 and (f.bytes or 0) == 0:
            ctx.warn(f.path, "an empty file (0 bytes; a writer that stopped before its first row?): nothing read")
        elif f.kind == "samples" and f.readable and f.rows == 0 and f.layout != "runlog" and not _faulted(f, ctx):
            # runlog's writer writes a step with no rows on purpose (every rollout filtered out: writer.md). A file
            # whose rows were there and could not be read (its problems say which) is not one a writer stopped.
            ctx.warn(f.path, "a file with no rows (a writer that stopped before its first row?)")
    for lay in registry:
        mine = [f for f in files if f.layout == lay.name]
        if mine:
            lay.check_run(mine, ctx)
    if not files and not skipped:
        if unmatched and len(empty) == len(unmatched):
            raise UsageError(f"{path}: no run files found ({len(empty)} empty file(s), 0 bytes)")
        if unreadable:
            # The `unreadable` problem it is beside another file (a first line over the sniffing limit, a head
            # the store would not give): named with its reason, and a data problem (exit 1), as a run whose only
            # file is a corrupt Parquet file is; not a usage error about a layout.
            rel, why = next(iter(unreadable.items()))
            others = len(unmatched) - len(unreadable)
            many = f"{len(unreadable)} file(s) that cannot be read, the first " if len(unreadable) > 1 else ""
            rest = f"; {others} other file(s) match no known layout" if others else ""
            said_trouble()  # a head the store would not give may be given next time: this answer is not kept
            raise UnreadableFilesError(f"{path}: no run files found ({many}{rel}: {why}{rest})")
        if damaged:
            rel, what = next(iter(damaged.items()))
            others = len(unmatched) - len(damaged)
            rest = f"; {others} other file(s) match no known layout" if others else ""
            many = (
                f"{len(damaged)} file(s) whose first lines are not valid JSON, the first " if len(damaged) > 1 else ""
            )
            raise UsageError(f"{path}: no run files found ({many}{rel}: {what}{rest}; {_FORCE_HINT})")
        if unmatched and forced is not None:
            raise UsageError(f"{path}: no run files found ({_forced_none(forced, unmatched_cands, registry)})")
        if near_misses:
            rel, why = next(iter(near_misses.items()))
            alike = sum(w == why for w in near_misses.values()) - 1
            others = len(unmatched) - 1 - alike
            rest = f"; {alike} other file(s) alike" if alike else ""
            rest += f"; {others} other file(s) match no known layout" if others else ""
            raise UsageError(f"{path}: no run files found ({rel}: {why}{rest}; see docs/format.md)")
        if unmatched:
            raise UsageError(
                f"{path}: no run files found ({len(unmatched)} file(s) match no known layout; "
                "see docs/format.md, or force one with --layout)"
            )
        if single and len(paths) == 1:
            raise UsageError(_not_a_run_file(path, paths[0][1]))
        if not ctx.problems:
            raise UsageError(f"{path}: no files found")
    if single and files and all(f.kind == "manifest" for f in files):
        raise UsageError(
            f"{path}: a {files[0].layout} manifest, with no rows of its own: pass {_rows_beside(path)}its folder"
        )
    # A file at its run folder's top (an inspect_ai log, a results JSONL, one step of a verl run) is named
    # ``folder/file``: the folder may hold other logs, and the file alone may be a step's number. A file
    # deeper down (RUN/samples/train/step_8.p0.parquet) keeps its run folder's name.
    one = None
    if single and len(files) == 1 and "/" not in files[0].path:
        one = f"{root.name}/{files[0].path}" if root.name else files[0].path
    elif single and len(files) == 1 and files[0].kind == "samples":
        # One step file of a run: its figures are that step's alone, and the run's manifest (its roles) is not
        # read. Said, so that one step is not taken for the run.
        ctx.warn(
            files[0].path,
            "one file of its run, read alone (not the run's manifest, other steps or scalars): pass the run "
            "folder for the whole run",
        )
    ctx.files = files  # what run-wide decisions are made from, also when a part of the run is read
    if only is None and ctx.state_files:
        # A writer that failed lost what it had not written: every command says so (an error, exit 1), not
        # inspect and doctor alone; summarize printed the steps before the failure as the run, exit 0 (an audit).
        states = read_states(ctx.state_files)
        for st in states.values():
            if st.error:
                ctx.problem(st.path, WRITER_FAILED, failure_message(st))
        # A process killed behind the others: its later steps hold only theirs, which every command says (summarize
        # printed a step of 50 rows beside steps of 650, and said nothing).
        for path, message in stopped_problems(root, ctx.manifest, states, _holdings(files, paths, skipped)):
            ctx.warn(path, message)
    if only is None:
        for path, message in mixed_attempts(root, files, paths):
            ctx.warn(path, message)
    ctx.discovered = len(ctx.problems)
    return Run(root=root, files=files, ctx=ctx, unmatched=unmatched, skipped=skipped, single=one)


_FORCE_HINT = "force one with --layout NAME to read the lines that are intact"


class UnreadableFilesError(UsageError):
    """No file of the run read, and one could not be read at all to tell its layout (a first line over the
    sniffing limit, a head the store would not give): a problem in the data, exit 1, the code that
    ``unreadable`` problem gives beside other files (and a run whose only file is a corrupt Parquet file).
    Still a ``UsageError`` to the callers that hold a run none of whose files is read yet (``watch``: a file
    removed between its listing and its read waits, as a file of no known layout does)."""

    exit_code = EXIT_PROBLEMS


# The temporary files of runlog's writer (docs/format.md, Files a writer leaves) and the process that writes each:
# ``samples/<split>/.step_*.p<i>.parquet.tmp``, ``.scalars.p<i>.jsonl.tmp``, ``..writer.p<i>.json.tmp`` and
# process 0's ``.run.json.tmp``.
_WRITER_TEMP = re.compile(
    r"^(?:samples/[^/]+/\.step_\d+\.p(?P<step>\d+)\.parquet|\.scalars\.p(?P<scalars>\d+)\.jsonl"
    r"|\.\.writer\.p(?P<state>\d+)\.json|(?P<manifest>\.run\.json))\.tmp$"
)


def in_flight(root: Any, rel: str, live: dict[int, bool]) -> bool:
    """Whether the temporary file ``rel`` of a local run is one that runlog's writer of a process is writing now:
    that writer holds its lock (``locks.held_now``; asked once per process, ``live``), so the file is in
    flight, renamed into place or removed by it, not an interrupted writer's leftover. Never on an object store
    (no lock there: a copy's ``.tmp`` files are leftovers)."""
    m = _WRITER_TEMP.match(rel)
    if m is None or isinstance(root, ObjectPath):
        return False
    process = int(next((g for g in (m["step"], m["scalars"], m["state"]) if g is not None), "0"))
    if process not in live:
        from .locks import held_now  # not the writer package's: its encoder imports pyarrow (0.2 s a kept answer)

        live[process] = held_now(Path(root), process)
    return live[process]


SUPERSEDED = ".superseded"  # where a resumed RunWriter puts aside what it took out of the run (never read)


def superseded(root: Any) -> tuple[int, int] | None:
    """(files, bytes) below a local run's ``.superseded/`` folder, which discovery never lists (a hidden folder):
    the data resumed writers took out of the run (docs/writer.md, Resuming). None where there is none, or on an
    object store (not looked for: one more listing)."""
    if isinstance(root, ObjectPath):
        return None
    top = Path(root) / SUPERSEDED
    if not top.is_dir():
        return None
    files = size = 0
    for folder, _, names in os.walk(top):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            files += 1
    return (files, size) if files else None


# -- what discovery tells of the writers: a process stopped behind the others, a resume that left others' rows ------
STOPPED = re.compile(r"^process \d+ did not close its writer and stopped behind ")  # ``stopped_text``'s words


def is_stopped(problem: Problem) -> bool:
    """Whether ``problem`` is discovery's warning of a process stopped behind the others (``stopped_problems``),
    which ``doctor`` says as its ``writer_not_closed`` finding."""
    return problem.is_warning and STOPPED.match(problem.message) is not None


def stopped_text(end: EndState, process: int, where: str) -> str:
    """``EndState.stopped_message`` and the steps that hold none of the process's rows: ``process 0 did not
    close its writer and stopped behind process 1 (train: its last step 37, theirs 39): killed? train steps
    38-39 hold only the other processes' rows``. Said by every command (``stopped_problems``), inspect and
    doctor."""
    closed = [st for st in end.states.values() if st.closed]
    last: dict[str, int] = {}
    for st in closed:
        for split, step in st.last_step.items():
            last[split] = max(step, last.get(split, step))
    mine = end.holdings.samples.get(process, {})
    parts = [f"{sp} {_later(mine[sp], last[sp])}" for sp in sorted(last) if sp in mine and mine[sp] < last[sp]]
    scalars = end.holdings.scalars.get(process)
    theirs = max((st.last_scalar_step for st in closed if st.last_scalar_step is not None), default=None)
    if scalars is not None and theirs is not None and scalars < theirs:
        parts.append(f"the scalars of {_later(scalars, theirs)}")
    text = end.stopped_message(process, where)
    return f"{text} {', '.join(parts)} hold only the other processes' rows" if parts else text


def _later(mine: int, theirs: int) -> str:
    return f"step {theirs}" if mine + 1 == theirs else f"steps {mine + 1}-{theirs}"


def stopped_problems(
    root: Any, manifest: dict[str, Any] | None, states: dict[int, WriterState], holdings: Holdings
) -> list[tuple[str, str]]:
    """(path, message) of each process that did not close its writer and stopped behind the others, once they
    closed ``END_GRACE_S`` ago (``EndState.stopped_behind``: killed), its writer not open now (a lock held: not in
    lockstep, still writing). From the state files read and what the files hold by their names and footers: no
    data read; a lock asked only of a process found behind."""
    end = EndState(expects_states(manifest), states, holdings)
    out = []
    for p, where in end.stopped_behind(time.time()).items():
        if not isinstance(root, ObjectPath):
            from .locks import held_now

            if held_now(Path(root), p):
                continue
        out.append((states[p].path if p in states else ".", stopped_text(end, p, where)))
    return out


def _holdings(files: list[FileInfo], paths: list[tuple[Any, ...]], skipped: int) -> Holdings:
    """``holdings_of`` the files opened, and the steps in the names of runlog sample files left unopened
    (``open_run(keep=...)``: a summary of some steps still knows where each process stopped)."""
    held = holdings_of(files)
    if not skipped:
        return held
    opened = {f.path for f in files}
    samples = {p: dict(v) for p, v in held.samples.items()}
    for entry in paths:
        rel = entry[1]
        if rel not in opened and (m := SAMPLE_RE.match(rel)) is not None:
            mine = samples.setdefault(int(m["proc"]), {})
            step = int(m["step"])
            mine[m["split"]] = max(step, mine.get(m["split"], step))
    return Holdings(samples, held.scalars, held.unread_samples, held.unread_scalars)


# A warning of the run: rows of an attempt that a resumed process abandoned, read with the resumed run's (told
# from modification times, so a warning: a process restarted with nothing to put aside leaves no mark).
# Rows written less than this before a resume are taken for the resumed attempt's: processes restarted together
# log a step at about the same time, and one with nothing to put aside may write it a moment before another's
# writer puts its own aside (an abandoned attempt's rows are as old as the crash and the restart: minutes).
ATTEMPT_SLACK_NS = 30 * 10**9
_PUT_ASIDE = re.compile(r"-p(\d+)-\d+$")  # ``.superseded/<time>-p<process>-<pid>`` (``RunWriter._superseded_dir``)


@dataclass(frozen=True)
class Resume:
    """What one resumed writer put aside (``RUN/.superseded/<time>-p<process>-<pid>/``): ``process``'s rows of
    ``step`` and later, no later than ``at`` (ns, the storage's clock)."""

    process: int
    folder: str
    step: int
    at: int
    splits: frozenset[str]  # the splits whose files it moved: another process's rows of another split are no mix


def resumes(root: Path, live: list[tuple[str, int, int, int, str]]) -> list[Resume]:
    """The resumes that ``.superseded/`` tells, against ``live``: (split, step, process, modification time ns,
    path) of each runlog sample file of the run.

    A resumed writer that logs a step its process had reached moves that process's sample files of the step and
    later into a folder of its own there (``RunWriter._drop_old``), then writes. So the folder, its sub-folders and
    its scalars file are all made while the rows are moved: the earliest of their modification times (kept by a
    copy that keeps times, as the files' are) is when. The step is the least step moved that is later than every
    file of the process here older than that (a file linked aside later, when a resumed writer rewrote an earlier
    step, is no resume from it); and the process has written a file of that step or later since (no resumed rows:
    nothing to mix). A copy that did not keep the times (``cp -r``) has the process's resumed files older than the
    folder: no resume is told from it."""
    out = []
    try:
        folders = [e for e in os.scandir(root / SUPERSEDED) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for entry in folders:
        m = _PUT_ASIDE.search(entry.name)
        if m is None:
            continue
        process = int(m[1])
        times, moved, splits = [], [], set()
        with contextlib.suppress(OSError):
            times.append(entry.stat(follow_symlinks=False).st_mtime_ns)
            times.append(os.lstat(os.path.join(entry.path, f"scalars.p{process}.jsonl")).st_mtime_ns)
        with contextlib.suppress(OSError):
            samples = os.path.join(entry.path, "samples")
            times.append(os.lstat(samples).st_mtime_ns)
            for split in os.scandir(samples):
                with contextlib.suppress(OSError):
                    times.append(split.stat(follow_symlinks=False).st_mtime_ns)
                    for f in os.scandir(split.path):
                        if (n := SAMPLE_RE.match(f"samples/{split.name}/{f.name}")) and int(n["proc"]) == process:
                            moved.append(int(n["step"]))
                            splits.add(n["split"])
        if not times or not moved:
            continue
        at = min(times)
        mine = [(sp, s, t) for sp, s, p, t, _ in live if p == process and sp in splits]
        old = max((s for _, s, t in mine if t < at), default=-1)
        step = min((s for s in moved if s > old), default=None)
        if step is not None and any(s >= step and t >= at for _, s, t in mine):
            out.append(Resume(process, f"{SUPERSEDED}/{entry.name}", step, at, frozenset(splits)))
    return out


def mixed_attempts(root: Any, files: list[FileInfo], paths: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(path, message) per process whose rows here were written before another process resumed the run from a
    step they are of (``resumes``), and not by a resumed writer of its own since (one that resumed from that step
    or earlier, before it wrote them): the attempt that the resumed process abandoned, read with the resumed
    run's rows of those steps (docs/writer.md, Resuming: a resume takes out its own process's rows only). Sample
    files of the splits the resume put aside, opened, by their names and modification times (not scalars files:
    a copy that keeps no times dates a shard before the folder copied after it, and its resumed lines would be
    taken for old ones). A local run only (an object store keeps no times of a folder), one that has
    ``.superseded/``. A warning, not an error: a process restarted with nothing to put aside leaves no mark, and
    its resumed rows, written before another process's resume, cannot be told from old ones by their times."""
    if isinstance(root, ObjectPath) or not (Path(root) / SUPERSEDED).is_dir():
        return []
    live = [
        (m["split"], int(m["step"]), int(m["proc"]), stamp[1], rel)
        for _, rel, _, _, stamp in paths
        if (m := SAMPLE_RE.match(rel)) is not None and isinstance(stamp, tuple) and isinstance(stamp[1], int)
    ]
    found = resumes(Path(root), live)
    if not found:
        return []

    def redone(q: int, step: int, t: int) -> bool:  # written by a resumed writer of ``q`` that took out ``step``
        return any(g.process == q and g.step <= step and g.at <= t for g in found)

    opened = {f.path for f in files}
    steps: dict[int, dict[str, set[int]]] = {}
    first: dict[int, tuple[int, str]] = {}
    by: dict[int, Resume] = {}
    for res in sorted(found, key=lambda g: (g.step, g.at)):
        for split, s, q, t, rel in live:
            if (
                q != res.process
                and split in res.splits
                and s >= res.step
                and t < res.at - ATTEMPT_SLACK_NS
                and rel in opened
                and not redone(q, s, t)
            ):
                steps.setdefault(q, {}).setdefault(split, set()).add(s)
                first[q] = min(first.get(q, (s, rel)), (s, rel))
                by.setdefault(q, res)
    out = []
    for q in sorted(steps):
        res = by[q]
        said = [
            f"{sp} step{'s' if len(v) > 1 else ''} {step_runs(v)} ({len(v)} file{'s' if len(v) > 1 else ''})"
            for sp, v in sorted(steps[q].items())
        ]
        # Its scalars of those steps, from the same attempt (told by the sample files' times: a shard's own time
        # is that of its last line, and a copy that keeps no times dates it anew).
        last = max(max(v) for v in steps[q].values())
        lines = {
            s
            for f in files
            if f.kind == "scalars" and f.layout == NATIVE and f.process == q
            for s in f.all_steps()
            if res.step <= s <= last
        }
        if lines:
            said.append(f"its scalars of step{'s' if len(lines) > 1 else ''} {step_runs(lines)}")
        out.append(
            (
                first[q][1],
                f"process {q}'s rows of {', '.join(said)} were written before process {res.process} resumed "
                f"the run from step {res.step}, which put its own rows of those steps aside ({res.folder}): "
                f"unless process {q} was restarted from step {res.step} or earlier too (a writer with nothing to put "
                "aside leaves no mark), they are an abandoned attempt's, read with the resumed run's in those "
                f"steps; resume process {q} from step {res.step} too (its writer puts them aside), or move them out "
                "of the run",
            )
        )
    return out


def step_runs(steps: Iterable[int], limit: int = 6) -> str:
    """``5-9, 12``: the first ``limit`` runs of consecutive steps."""
    runs: list[list[int]] = []
    for s in sorted(steps):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (", ..." if len(runs) > limit else "")


def _damaged_head(cand: Candidate) -> str:
    """What sniffing found of a damaged head: ``its first 5 line(s) are not valid JSON (lines 1-5)``."""
    lines = cand.damaged_lines
    if not cand.sniffed_json:
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"
        some = "its first line is" if len(lines) == 1 else f"its first {len(lines)} non-empty lines are"
        return f"{some} not valid JSON ({where}; damaged, or cut short?)"
    shown = ", ".join(map(str, lines[:5])) + (" ..." if len(lines) > 5 else "")
    return f"{len(lines)} of its first lines are not valid JSON (line(s) {shown})"


class _Placed:
    """A claimed file's layout, for ``listing.one_run``, with the run folder its content tells
    (``Layout.content_run_folder``) in place of the one its path tells."""

    def __init__(self, layout: Layout, folder: str):
        self.name = layout.name
        self._folder = folder

    def run_folder(self, folder: str) -> str:
        return self._folder


def _placed(cand: Candidate, chosen: Layout) -> Placement:
    try:
        folder = chosen.content_run_folder(cand)
    except Exception:  # noqa: BLE001  (a sniffing failure: the path decides)
        folder = None
    return chosen if folder is None else _Placed(chosen, folder)


# Layouts of flat scalar records that a copy of a native scalars shard, renamed, is detected as (``_foreign_scalars``).
FLAT_SCALARS = ("areal",)


def _foreign_scalars(
    chosen: list[tuple[Candidate, Layout]], claimed: list[tuple[str, Placement]], ctx: RunContext
) -> list[tuple[Candidate, Layout]]:
    """``chosen`` less the flat scalars files (``FLAT_SCALARS``) of a native run that are copies of its writer's
    shards, each said. A native run's scalars are its writer's shards, ``scalars.pN.jsonl``; a flat JSONL of
    metrics under another name holding the shards' keys (``scalars_old.jsonl``, ``scalars.p0.jsonl.bak.jsonl``)
    is a shard copied aside: read, it was merged into the run's metrics as one more process's shard (its values
    averaged into every step) without a word. Left out, as no shard of the run, and named; passed alone, it is
    read as a run of its own. A file of keys of its own (another logger's ``eval_stats.jsonl`` of ``eval/acc``
    beside shards of ``train/loss``; a StatsLogger's ``stats.jsonl`` of a run whose writer logs samples only) is
    read, its records merged as its own process's. The keys compared are every key of each file (``_record_keys``:
    a key logged every N steps is not in a shard's first lines, nor a partial copy's), steps and times aside: a flat
    file sharing a key with the shards would average another writer's values into that key's, so it is left out
    whole (its other keys named), as a copy is."""
    from .formats.native import SCALARS_RE

    if not any(lay.name == NATIVE and SCALARS_RE.search(rel) for rel, lay in claimed):
        return chosen
    if not any(lay.name in FLAT_SCALARS for _, lay in chosen):
        return chosen
    shards = [c for c, lay in chosen if lay.name == NATIVE and SCALARS_RE.search(c.rel)]
    theirs = set().union(*(_record_keys(c) for c in shards))
    kept = []
    for cand, lay in chosen:
        own = _record_keys(cand) if lay.name in FLAT_SCALARS else set()
        shared = sorted(own & theirs)
        if not shared:
            kept.append((cand, lay))
            continue
        others = sorted(own - theirs)
        also = f"; its other keys are not read either ({_few(others)})" if others else ""
        copy = "another logger's file logging the same keys" if others else "a shard copied under another name, or"
        copy += "" if others else " another logger's of the same keys"
        ctx.warn(
            cand.rel,
            f"flat scalar records (the {lay.name} layout's) in a runlog run, of keys its writer's scalars.pN.jsonl "
            f"shards log ({_few(shared)}): {copy}; left out (read, its values would be averaged into those keys' "
            f"as one more process's){also}: rename it scalars.pN.jsonl if it is the shard of process N, or pass the "
            "file alone to read it",
        )
    return kept


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f", ... (+{len(keys) - 3})" if len(keys) > 3 else "")


# A scalars file above this size is compared by the keys of its first records only (``_record_keys``).
RECORD_KEYS_MAX_BYTES = 256 * 2**20


def _record_keys(cand: Candidate) -> set[str]:
    """The metric keys of a scalars file's records, every line read (within ``RECORD_KEYS_MAX_BYTES``; past it, of
    its first records, ``Candidate.json_lines``): the keys of those that are objects, less steps and times (every
    file has them) and ``__count`` companions' suffix. Lines that are no JSON object are passed over here (the
    file's reader reports them)."""
    from .formats.scalars_jsonl import STEP_KEYS, TIME_KEYS

    objs: Iterable[Any] = cand.json_lines()
    if cand.size <= RECORD_KEYS_MAX_BYTES:
        with contextlib.suppress(OSError):
            objs = _json_objects(storage.read_bytes(cand.abspath))
    keys = {k.removesuffix("__count") for obj in objs if isinstance(obj, dict) for k in obj}
    return keys - set(STEP_KEYS) - set(TIME_KEYS)


def _json_objects(data: bytes) -> Iterator[Any]:
    for line in data.splitlines():
        if line.strip():
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def _near_miss(cand: Candidate, registry: list[Layout]) -> str | None:
    """Why a layout nearly took a file that matches none (``Layout.near_miss``), or None."""
    for lay in registry:
        try:
            why = lay.near_miss(cand)
        except Exception:  # noqa: BLE001,S112  (a sniffing failure just means "not near")
            continue
        if why is not None:
            return why
    return None


def _suffixes(forced: Layout) -> str:
    return f"{forced.name} reads {', '.join(forced.formats)} files" if forced.formats else "not its kind of file"


def _forced_none(forced: Layout, cands: list[Candidate], registry: list[Layout]) -> str:
    """With ``--layout``, when it takes none of the files: what they are instead (one line)."""
    others: Counter[str] = Counter()
    for cand in cands[:64]:
        other = choose_layout(cand, None, registry)
        if other is not None and other.name != forced.name:
            others[other.name] += 1
    n = len(cands)
    head = f"--layout {forced.name}: none of the {n} file(s) is a {forced.name} file ({_suffixes(forced)})"
    if not others:
        return f"{head}; they match no other known layout either: see docs/format.md"
    names = [name for name, _ in others.most_common()]
    looked = min(n, 64)
    count = others[names[0]]
    first = "the" if looked == n else "the first"
    some = "they look like" if count == looked else f"{count} of {first} {looked} look like"
    more = f" (others: {', '.join(names[1:])})" if len(names) > 1 else ""
    return f"{head}: {some} {names[0]}'s{more}; drop --layout to read them as {names[0]}"


def _faulted(f: FileInfo, ctx: RunContext) -> bool:
    """Whether an error (not a warning) was said about this file: why it has no rows is told there."""
    return any(p.path == f.path and not p.is_warning for p in ctx.problems)


def _forced_mismatch(forced: Layout | None, cands: list[Candidate], registry: list[Layout]) -> str | None:
    """With ``--layout``: when no file it takes looks like that layout's data and another layout recognises
    them, one line saying so (read as forced, as asked: forcing is also how a wrong detection is overridden,
    so this is said, not refused)."""
    if forced is None or not cands:
        return None
    others: Counter[str] = Counter()
    for cand in cands[:64]:  # a sample of the files: enough to tell, cheap on thousands
        try:
            if forced.detect(cand):
                return None
        except Exception:  # noqa: BLE001,S112  (a sniffing failure just means "not mine")
            pass
        other = choose_layout(cand, None, registry)
        if other is not None and other.name != forced.name:
            others[other.name] += 1
    if not others:
        return None
    name, n = others.most_common(1)[0]
    looked = min(len(cands), 64)
    files = f"none of the {looked} files" if looked == len(cands) else f"none of the first {looked} files"
    return (
        f"--layout {forced.name}: {files} looks like {forced.name} data ({n} look like {name}'s): read as "
        f"{forced.name}, as asked; drop --layout to read them as {name}"
    )


def same_keys(files: list[FileInfo], ctx: RunContext) -> None:
    """Say every readable scalars shard of the same process as another (native ``scalars.pN.jsonl``), and every
    readable sample file of the same split, step and process as another, in a layout whose
    format has one (``Layout.one_file_per_step``): a copy left beside the original (``backup/samples/...``,
    ``samples/train2/`` of train rows, ``..._15_final.parquet``) is read too, and its rows count twice. Both
    are read, as found: which one is right is the user's call. By the keys the rows count at (a file whose
    rows are of another step or split than its name says is keyed by its rows)."""
    seen: dict[tuple[str, str, int, int | None], str] = {}
    said: set[str] = set()  # files said already (the same keys as another): not said again as the same size
    keyed: dict[str, bool] = {}
    shards: dict[tuple[str, int], list[str]] = {}
    for f in files:
        if f.kind == "scalars" and f.readable and f.process is not None:
            shards.setdefault((f.layout, f.process), []).append(f.path)
    for (_, process), paths in shards.items():
        # Two scalar shards of one process (``backup/scalars.p0.jsonl`` beside ``scalars.p0.jsonl``): both are read
        # as the run's and merged as shards are, so a copy's values count twice: a summary family's count summed
        # with the copy's, that process weighed twice in a step's mean over the shards (``key__count``-weighted or
        # not). Kept, as a second sample file of one split, step and process is: which file is right is the user's
        # call. The one nearest the run's root is taken for the run's own; the others are said.
        first, *others = sorted(paths, key=lambda p: (p.count("/"), p))
        for path in others:
            ctx.warn(
                path,
                f"scalars of the same process {process} as {first}: both files are read and merged as shards, so if "
                "one is a copy of the other its values are counted twice (counts summed twice, the process weighed "
                "twice in a step's mean)",
            )
    for f in files:
        if f.kind != "samples" or not f.readable or f.step is None or f.split is None:
            continue
        one = keyed.get(f.layout)
        if one is None:
            one = keyed[f.layout] = get_layout(f.layout).one_file_per_step
        if not one:
            continue
        key = (f.layout, f.split, f.step, f.process)
        first = seen.setdefault(key, f.path)
        if first != f.path:
            said.add(f.path)
            shard = f", process {f.process}" if f.process is not None else ""
            ctx.warn(
                f.path,
                f"the same split {f.split!r}, step {f.step}{shard} as {first}: both files are read, so if one is a "
                "copy of the other its rows count twice",
            )
    _same_size(files, said, ctx)


def _same_size(files: list[FileInfo], said: set[str], ctx: RunContext) -> None:
    """Say Parquet sample files of one split and step whose bytes are a copy's: a shard copied under another
    process's name (``step_8.p0.parquet`` copied to ``step_8.p2.parquet``) is a file of its own to every key, and
    its rows count twice in every figure. Only files of the same size and rows are compared (a listing's
    figures: most steps have no such pair), and within those only where their ends and starts are byte for
    byte the same (``_fingerprint``: the footer, with its columns' sizes, offsets and statistics, the data pages
    at its start, middle and end, and its sample ids; two writers' small files of fixed-width numbers can be
    one size, and without statistics one footer), or, in an object store, their ETags. Each file is compared
    with every other of its size, not only the first (a copy of the second of two same-size shards was
    missed). Which of two is the copy cannot be told: both are named. A copy written again (another
    compression) is not found so: ``runlog inspect --deep`` finds the repeated sample ids."""
    alike: dict[tuple[str, str, int, int, int], list[FileInfo]] = {}
    for f in files:
        if (
            f.kind != "samples"
            or f.fmt != "parquet"
            or not f.readable
            or f.step is None
            or f.split is None
            or not f.rows
            or f.path in said
        ):
            continue
        alike.setdefault((f.layout, f.split, f.step, f.bytes, f.rows), []).append(f)
    for group in alike.values():
        if len(group) < 2:
            continue
        seen: dict[Any, str] = {}
        for f in sorted(group, key=lambda f: f.path):
            mark = _fingerprint(f)
            if mark is None:
                continue
            first = seen.setdefault(mark, f.path)
            if first != f.path:
                ctx.warn(
                    f.path,
                    f"byte for byte the same as {first} as far as read (size {f.bytes:,} bytes, {f.rows:,} rows, "
                    "footer, pages at its start, middle and end, any sample id column), of the same split "
                    f"{f.split!r} and step {f.step}: one is likely a copy of the other; both are read, so its rows "
                    "count twice"
                    + (
                        " (`runlog inspect --deep` finds repeated sample ids)"
                        if f.layout in ("runlog", "flink")
                        else ""
                    ),
                )


FINGERPRINT_BLOCK = 64 << 10  # the bytes read at a file's start, middle and end beside its footer (``_fingerprint``)
# The sample id columns (native, Flink): a copy's are its original's, two shards' never are (``_fingerprint``).
ID_COLUMNS = ("sample_id", "unique_sample_id")


def _fingerprint(f: FileInfo) -> Any:
    """What tells a Parquet file's copy from another file of its size: its ETag in an object store (a copy keeps
    it; two uploads of other bytes never share one), else its footer, ``FINGERPRINT_BLOCK`` bytes at the start
    of its data, in the middle and just before the footer, and the bytes of its sample id column chunks (found
    in the footer): two shards' ids differ wherever they lie in the file (written last, without statistics,
    after a long shared text column, the ids of two genuine shards lay beyond the first pages the footer was
    once hashed with, and they were said to be copies). None where it cannot be told (no ETag, no footer
    length, a read that fails)."""
    if isinstance(f.abspath, ObjectPath):
        tag = f.stamp[1] if isinstance(f.stamp, tuple) and len(f.stamp) == 3 else None
        return None if tag is None else ("etag", tag)
    n = f.footer_bytes
    if not n:
        return None
    try:
        digest = hashlib.blake2b(digest_size=16)
        with open(f.abspath, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            data = max(size - n, 0)  # where the footer begins
            for at in (0, max(data // 2 - FINGERPRINT_BLOCK // 2, 0), max(data - FINGERPRINT_BLOCK, 0)):
                fh.seek(at)
                digest.update(fh.read(min(FINGERPRINT_BLOCK, data - at)))
            fh.seek(data)
            digest.update(fh.read(n))
            for at, length in _id_chunks(f.abspath):
                fh.seek(at)
                digest_bytes(fh, digest, length)
        return ("bytes", digest.digest())
    except (OSError, ValueError):
        return None


def _id_chunks(path: Any) -> list[tuple[int, int]]:
    """(offset, length) of each row group's chunk of a sample id column (``ID_COLUMNS``), from the footer read
    again (probing keeps no column offsets); none where the file has no such column."""
    import pyarrow.parquet as pq

    try:
        md = pq.ParquetFile(path).metadata
    except Exception as exc:  # noqa: BLE001  (pyarrow's errors vary; an unreadable footer tells nothing)
        raise ValueError(str(exc)) from exc
    chunks = []
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        for c in range(group.num_columns):
            col = group.column(c)
            if col.path_in_schema in ID_COLUMNS:
                start = col.data_page_offset
                if col.has_dictionary_page and col.dictionary_page_offset is not None:
                    start = min(start, col.dictionary_page_offset)
                chunks.append((int(start), int(col.total_compressed_size)))
    return chunks


def _rows_beside(path: Any) -> str:
    """``the file of its rows (NAME) or `` when a file beside a local manifest shares its name's stem
    (verifiers: ``x_metadata.json`` beside ``x_results.jsonl``): the folder may hold other runs' files."""
    p = Path(str(path))
    stem = p.name.split(".")[0].removesuffix("_metadata").removesuffix("metadata").rstrip("_-.")
    try:
        near = sorted(q.name for q in p.parent.iterdir() if q != p and stem and q.name.startswith(stem))
    except OSError:
        return ""
    return f"the file of its rows ({near[0]}) or " if len(near) == 1 else ""


def _probe(cand: Candidate, chosen: Layout, ctx: RunContext) -> FileInfo:
    try:
        info = chosen.probe(cand, ctx)
    except Exception as exc:  # noqa: BLE001  (a reader bug must not hide the rest of the run)
        ctx.problem(cand.rel, UNREADABLE, f"could not be read as {chosen.name}: {type(exc).__name__}: {exc}")
        if isinstance(exc, OSError):
            said_trouble()  # it may read next time: an answer saying so is not kept (``cli.answers``)
        info = FileInfo(
            cand.rel, cand.abspath, chosen.name, cand.suffix.lstrip("."), "samples", cand.size, readable=False
        )
    if info.footer is not None:
        # The footer object is only needed while probing; thousands of them would pin memory.
        info.footer.metadata = None
    if isinstance(cand.abspath, ObjectPath):
        cand.abspath.store.forget(cand.abspath.key)
    return info


__all__ = ["NameEntry", "Run", "WARNING", "list_files", "list_names", "local_stamp", "open_run"]
