"""The layout registry: how each on-disk layout recognises its files and reads them into the canonical model.

A layout is a small class registered with ``@register``. Discovery (``runlog.run``) walks a run directory
once, offers every file to the layouts in priority order (``detect``), and asks the winner to ``probe``
it: read what ``inspect`` needs (a Parquet footer, a JSONL file's lines) and report problems. Readers
then build lazy canonical frames from the probed files (``scan_samples`` / ``scan_scalars``).
Commands never look at file names or extensions themselves.
"""

from __future__ import annotations

import builtins
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from .._lazy import pl
from ..errors import RunlogError

WARNING = "warning"

# Problem kinds (docs/format.md, "Problems"). Warnings have kind "warning" and do not fail `inspect`.
UNREADABLE = "unreadable"  # truncated / corrupt Parquet, unreadable CSV, undecodable file
BAD_LINE = "bad_line"  # a JSONL line that is not a JSON object (line number in the message)
NEWER_VERSION = "newer_schema_version"
UNKNOWN_VERSION = "unknown_schema_version"
MISSING_COLUMNS = "missing_columns"
WRONG_TYPE = "wrong_type"
BAD_MANIFEST = "bad_manifest"


@dataclass
class Problem:
    path: str
    kind: str
    message: str

    @property
    def is_warning(self) -> bool:
        return self.kind == WARNING

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "message": self.message}


@dataclass
class ParquetFooter:
    """What a Parquet probe keeps of a footer: its Arrow schema, the (min, max) statistics of the integer
    columns (``schema_version``, ``step``), and, only while probing, the parsed ``pyarrow`` metadata (thousands
    of them would pin memory: discovery drops it once the probe is done)."""

    arrow_schema: Any  # pyarrow.Schema
    ranges: dict[str, tuple[Any, Any]]
    metadata: Any = None  # pyarrow.parquet.FileMetaData, or None once probed


@dataclass
class FileInfo:
    """What discovery learned about one file, cheaply (footers, first bytes, one pass over JSONL)."""

    path: str  # relative to the run root, with '/' separators
    abspath: Path  # a ``storage.ObjectPath`` for a file of a remote run
    layout: str
    fmt: str  # parquet | csv | jsonl | json
    kind: str  # samples | scalars | manifest
    bytes: int
    schema_version: int | None = None
    rows: int | None = None
    split: str | None = None
    step: int | None = None  # the step of a one-step file
    steps: list[int] | None = None  # distinct steps of a multi-step file (JSONL)
    process: int | None = None
    columns: dict[str, str] = field(default_factory=dict)  # name -> type, from the footer
    null_counts: dict[str, int] = field(default_factory=dict)  # from footer statistics
    footer_bytes: int | None = None  # Parquet: the footer's length, with its 8-byte trailer
    readable: bool = True
    # Canonical text columns that could not be read (a corrupt data page behind an intact footer, found when
    # read): null in ``Run.samples``; its numbers are read. Set by ``Run._quarantine_unreadable``.
    unread: tuple[str, ...] = ()
    # The file rewritten in memory with each byte sequence of its text that is no UTF-8 read as U+FFFD
    # (``common.repaired_utf8``): scanned in place of the file (polars refuses the whole file for one such
    # byte). Set by ``Run._quarantine_unreadable``, within ``run.REPAIR_MAX_BYTES`` and ``REPAIR_HELD_MAX``.
    repaired: builtins.bytes | None = field(default=None, repr=False, compare=False)  # (``bytes`` is its size)
    # What a probe keeps so that nothing is read twice: the parsed frame of a file read whole (JSONL, CSV,
    # JSON: every record mapped once), or a Parquet file's footer details.
    frame: pl.DataFrame | None = field(default=None, repr=False)
    footer: ParquetFooter | None = field(default=None, repr=False)
    # The listing's stamp of the file (``listing.local_stamp``; an object's size, ETag and time), set by
    # ``open_run``: what the caches of derived results key on, without a second ``stat`` per file.
    stamp: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def text_readable(self) -> bool:
        """Whether its texts can be shown: readable, and no text column found unreadable (``unread``)."""
        return self.readable and not self.unread

    @property
    def payload(self) -> pl.DataFrame | ParquetFooter | None:
        """``frame`` or ``footer``, for readers written against the single untyped field this was (new code
        reads ``frame`` or ``footer``)."""
        return self.frame if self.frame is not None else self.footer

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "format": self.fmt,
            "kind": self.kind,
            "schema_version": self.schema_version,
            "rows": self.rows,
            "split": self.split,
            "step": self.step,
            "readable": self.readable,
            "bytes": self.bytes,
        }

    def all_steps(self) -> list[int]:
        if self.steps is not None:
            return self.steps
        return [] if self.step is None else [self.step]


class Candidate:
    """A file offered to the layouts. The head bytes and the first JSON lines are read at most once."""

    HEAD_BYTES = 64 * 1024
    # A JSONL layout recognises a file by its first few lines that are JSON, looking past up to
    # ``SNIFF_DAMAGED`` non-empty lines that are not (damaged lines must not hide the layout: the reader reports
    # each with its number and skips it), each read whole however long it is, up to this much of the file's
    # start; never the whole file.
    SNIFF_LINES = 5
    SNIFF_DAMAGED = 20
    MAX_SNIFF_BYTES = 16 * 1024 * 1024

    def __init__(
        self,
        root: Path,
        abspath: Path,
        size: int,
        rel: str | None = None,
        path_str: str | None = None,
        stamp: tuple | None = None,
    ):
        self.root = root
        self.stamp = stamp  # changes whenever the file is rewritten (``run.local_stamp``); None: unknown
        self.abspath = abspath
        self.path_str = path_str if path_str is not None else str(abspath)
        self.size = size
        self.rel = rel if rel is not None else abspath.relative_to(root).as_posix()
        self.name = abspath.name
        self.suffix = abspath.suffix.lower()
        # A Parquet footer opened ahead of probing (``formats.common.local_footers``): the ``FileMetaData``,
        # or the exception opening it raised, once ``footer_ready`` (a future) is done.
        self.footer: Any = None
        self.footer_ready: Any = None
        self.head_error: str | None = None  # why the head could not be read (then no layout can sniff it)
        # What ``json_lines`` has read and parsed so far.
        self._sniff_buf: bytes | None = None
        self._sniff_pos = 0
        self._sniff_eof = False
        self._sniff_done = False
        self._sniffed: list[Any] = []
        self._sniff_line = 0  # lines (empty ones too) passed so far
        # The numbers (1-based) of the non-empty lines sniffing found not to be JSON (discovery says them).
        self.damaged_lines: list[int] = []

    @cached_property
    def head(self) -> bytes:
        from ..storage import read_head

        try:
            return read_head(self.abspath, self.HEAD_BYTES)
        except (OSError, RunlogError) as exc:
            text = str(exc).strip()
            self.head_error = (
                getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
            )[:200]
            return b""

    @property
    def first_json(self) -> Any:
        """The first line that is JSON, parsed, or None (for sniffing JSONL layouts)."""
        return next(self.json_lines(), None)

    @property
    def sniffed_json(self) -> bool:
        """Whether sniffing found a line that is JSON (False also when nothing was sniffed)."""
        return bool(self._sniffed)

    def json_lines(self) -> Iterator[Any]:
        """The first ``SNIFF_LINES`` lines that are JSON, each parsed, read from the start of the file only as far
        as a caller iterates (a layout stops at the first line it recognises). Up to ``SNIFF_DAMAGED`` non-empty
        lines that are not JSON (a damaged head) are passed over and their numbers kept in ``damaged_lines``.
        Each line is read whole, past ``HEAD_BYTES``, up to ``MAX_SNIFF_BYTES`` from the start: a first line
        longer than that is said in ``head_error``."""
        i = 0
        while i < self.SNIFF_LINES:
            if i == len(self._sniffed) and not self._sniff_next():
                return
            yield self._sniffed[i]
            i += 1

    def _sniff_next(self) -> bool:
        """Parse the next non-empty line into ``_sniffed``; False when there is none (end of file, or of what
        sniffing reads)."""
        from ..storage import read_head

        if self._sniff_done:
            return False
        if self._sniff_buf is None:
            self._sniff_buf = self.head
            self._sniff_eof = self.head_error is not None or len(self._sniff_buf) < self.HEAD_BYTES
        while True:
            buf = self._sniff_buf
            nl = buf.find(b"\n", self._sniff_pos)
            if nl < 0 and not self._sniff_eof:
                if len(buf) >= self.MAX_SNIFF_BYTES:
                    self._sniff_done = True
                    if not self._sniffed and not buf[: self._sniff_pos].strip():
                        self.head_error = (
                            f"its first line is longer than the {self.MAX_SNIFF_BYTES // (1024 * 1024)} MiB runlog "
                            "reads to tell a file's layout; force one with --layout"
                        )
                    return False
                n = min(self.MAX_SNIFF_BYTES, max(4 * len(buf), self.HEAD_BYTES))
                try:
                    data = read_head(self.abspath, n)
                except (OSError, RunlogError):
                    self._sniff_done = True
                    return False
                self._sniff_eof = len(data) < n
                if len(data) <= len(buf):  # the file shrank: what was read is all there is
                    self._sniff_eof = True
                else:
                    self._sniff_buf = data
                continue
            end = len(buf) if nl < 0 else nl
            line = buf[self._sniff_pos : end]
            self._sniff_pos = end + 1
            self._sniff_line += 1
            if nl < 0:
                self._sniff_done = True
                self._sniff_buf = b""
            if line.strip():
                try:
                    self._sniffed.append(json.loads(line))
                except (ValueError, RecursionError):
                    self.damaged_lines.append(self._sniff_line)
                    if len(self.damaged_lines) >= self.SNIFF_DAMAGED:
                        self._sniff_done = True
                        self._sniff_buf = b""
                        return False
                    if nl < 0:
                        return False
                    continue
                if len(self._sniffed) >= self.SNIFF_LINES:
                    self._sniff_done = True
                    self._sniff_buf = b""
                return True
            if nl < 0:
                return False


@dataclass
class RunContext:
    """Shared state of one discovery/read: the root, the manifest, problems and fidelity notes."""

    root: Path
    manifest: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    fidelity: list[dict[str, str]] = field(default_factory=list)
    # Per-discovery memo for readers (for example the footer plan of each distinct Parquet schema).
    cache: dict[str, Any] = field(default_factory=dict)
    note_log: list[dict[str, str]] = field(default_factory=list)  # every ``note`` call, repeats included
    # Writer state files listed at the root (``runlog.ends``): process -> (run-relative path, path, stamp).
    state_files: dict[int, tuple[str, Any, Any]] = field(default_factory=dict)
    # Every file of the run as discovered (``open_run``): what a layout decides for the whole run from the files
    # (TRL's reward-function columns, the run's roles) is decided from these, also where it is handed a part of
    # them (a summary's steps read in batches, the steps the partial cache has not stored, one file alone), so
    # that a file's rows read the same whichever files are read with it. None: the files handed are the run.
    files: list[FileInfo] | None = None
    # How many ``problems`` discovery found (``open_run``); those after them were found while reading the data
    # (a corrupt page, a column that holds text): what a cache of derived figures must not lose. None: unknown.
    discovered: int | None = None

    def problem(self, path: str, kind: str, message: str) -> None:
        self.problems.append(Problem(path, kind, message))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, WARNING, message))

    def note(self, layout: str, message: str) -> None:
        """A fidelity note: something a reader could not map into the canonical model."""
        entry = {"layout": layout, "message": message}
        self.note_log.append(entry)
        if entry not in self.fidelity:
            self.fidelity.append(entry)


class Layout:
    """Base class of a layout. Subclasses set ``name``, ``description``, ``priority``, and implement
    ``detect`` and ``probe``, and one or both of ``scan_samples`` / ``scan_scalars``."""

    name: ClassVar[str]
    description: ClassVar[str]
    priority: ClassVar[int] = 100  # lower is tried first
    formats: ClassVar[tuple[str, ...]] = ()  # file suffixes it can read when forced with --layout
    # Whether a probe of one of its Parquet files depends on that file alone, so that its result may be
    # kept between commands (``runlog.probe_cache``).
    cache_probes: ClassVar[bool] = False
    # Whether its format holds one sample file per split, step (and process): two readable files of one such
    # key are the same rows twice, or a copy (discovery says so: ``run.same_keys``).
    one_file_per_step: ClassVar[bool] = False
    # The sub-folders a run of this layout keeps its files in (a regex matched against the end of a file's
    # folder, for example ``samples/[^/]+``): ``run_folder`` strips them to find the run's own folder.
    own_folders: ClassVar[str | None] = None
    # Its canonical columns, beyond the model's text (``run.TEXT_ONLY``), that hold text or are derived from
    # it (Flink: the raw ``agent_trajectories`` and the ``group_id`` found from the prompt): they fail to read
    # when the text does, so a file whose numbers read keeps them, with these read as null beside its text
    # (``Run._quarantine_unreadable``), rather than being left out whole.
    text_columns: ClassVar[tuple[str, ...]] = ()

    def detect(self, cand: Candidate) -> bool:
        raise NotImplementedError

    def run_folder(self, folder: str) -> str:
        """The folder of the run that a file of this layout in ``folder`` (a posix path, '' for the top)
        belongs to, from the path alone: ``folder`` less the layout's own sub-folders (``own_folders``).
        Discovery uses it to tell a run from a folder of runs, and to place a run given as one file."""
        if self.own_folders:
            m = _own_folders_re(self.own_folders).fullmatch(folder)
            if m:
                return m.group(1) or ""
        return folder

    def near_miss(self, cand: Candidate) -> str | None:
        """For a file no layout detects: why this layout did not take a file that looks like its data (one
        clause, for the "matches no known layout" warning and error), or None. Sniffed lines only."""
        return None

    def content_run_folder(self, cand: Candidate) -> str | None:
        """The run folder of a file where its first lines tell it better than its path (verl: a folder of
        validation dumps is a folder of its run, whatever its name), else None: ``run_folder`` decides."""
        return None

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        raise NotImplementedError

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        return None

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        return None

    def roles(self, files: list[FileInfo], ctx: RunContext) -> list[str]:
        """Role names known without reading data (footers, manifest)."""
        return []

    def decided(self, files: list[FileInfo], ctx: RunContext) -> Any:
        """What this layout decides from all of a run's files (``files``: the run's of this layout) that changes
        how the rows of any one file read (TRL: which columns are reward functions), or None. The partial cache
        keys the steps it stores by it, so that a change of it (a column numeric in a new file) recomputes them."""
        return None

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """What only the run's files together tell (after every file is probed; from what the probes kept,
        no data read): problems are said on ``ctx``. Default: nothing."""

    def name_keys(self, cand: Candidate) -> tuple[str | None, int | None] | None:
        """(split, step) of a one-step sample file, known from its path alone (either may be None), or None
        when the name does not tell. Lets ``open_run(keep=...)`` skip files without opening them."""
        return None

    # -- the numeric view (summaries): role rows with only the numbers they need ----------------------------
    def component_names(self, files: list[FileInfo], ctx: RunContext) -> list[str]:
        """Names of the reward components, in first-seen order. Default: read ``reward_components`` only."""
        lf = self.scan_samples(files, ctx)
        if lf is None:
            return []
        names = (
            lf.select(
                pl.col("reward_components").explode().struct.field("name").drop_nulls().unique(maintain_order=True)
            )
            .collect()
            .to_series()
        )
        return names.to_list()

    def scan_numeric(
        self, files: list[FileInfo], ctx: RunContext, carry: dict[str, pl.Expr], components: list[str]
    ) -> pl.LazyFrame | None:
        """One row per (sample, role): the ``carry`` expressions (evaluated on the canonical samples),
        ``role, reward, kl`` and one float column ``component/<name>`` per component. Never text.

        The default explodes the canonical nested ``roles``; a sample without per-role data gives one row
        with a null role and the sample's reward. Layouts with flat role columns override this (Flink)."""
        lf = self.scan_samples(files, ctx)
        if lf is None:
            return None
        return numeric_from_samples(lf, carry, components)

    def scan_numeric_wide(
        self,
        files: list[FileInfo],
        ctx: RunContext,
        carry: dict[str, pl.Expr],
        components: list[str],
        roles: list[str],
    ) -> pl.LazyFrame | None:
        """One row per sample: ``carry``, ``component/<name>``, ``role:<r>:reward``, ``role:<r>:kl`` and
        ``__has_role:<r>`` (the file holds that role's columns) for each role, ``__has_roles`` and
        ``__sample_reward``. Only layouts that store roles as flat columns
        offer it (None here); summaries then need no row per role. A file's ``FileInfo.unread`` columns are
        read as null (its text unreadable, its numbers not): a summary planned on this view before the file
        was found keeps it when it reads again (``Run.numeric_wide``)."""
        return None

    def wide_roles_everywhere(self, files: list[FileInfo], ctx: RunContext) -> bool:
        """True when every file holds every role of the whole run, so that summaries may count every row for
        every role (no role sat out a step, no role-unknown row); known from footers."""
        return False


@functools.cache
def _own_folders_re(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?:(.*)/)?(?:{pattern})")


def run_files(files: list[FileInfo], ctx: RunContext, layout: str) -> list[FileInfo]:
    """The files of ``layout`` a run-wide decision is made from: the whole run's (``RunContext.files``), not only
    ``files``, the part of it a reader is handed."""
    return files if ctx.files is None else [f for f in ctx.files if f.layout == layout]


def component_value(name: str) -> pl.Expr:
    """The value of one named component from the canonical ``reward_components`` list (null if absent)."""
    return (
        pl.col("reward_components")
        .list.eval(pl.element().filter(pl.element().struct.field("name") == name).struct.field("value"))
        .list.first()
        .alias(f"component/{name}")
    )


def numeric_from_samples(lf: pl.LazyFrame, carry: dict[str, pl.Expr], components: list[str]) -> pl.LazyFrame:
    roles = pl.col("_roles")
    return (
        lf.select(
            *[e.alias(k) for k, e in carry.items()],
            *[component_value(n) for n in components],
            pl.col("reward").alias("_sample_reward"),
            # An empty list is made null: a null list explodes to one null entry (that sample's row, role
            # null), an empty one to no row at all (polars 1.x and later): the sample would be lost.
            pl.when(pl.col("roles").list.len() > 0).then(pl.col("roles")).alias("_roles"),
        )
        .explode("_roles")
        .with_columns(
            roles.struct.field("role").alias("role"),
            pl.when(roles.is_null())
            .then(pl.col("_sample_reward"))
            .otherwise(roles.struct.field("reward"))
            .alias("reward"),
            roles.struct.field("kl").alias("kl"),
        )
        .drop("_roles", "_sample_reward")
    )


_REGISTRY: dict[str, Layout] = {}


def register(cls: type[Layout]) -> type[Layout]:
    _REGISTRY[cls.name] = cls()
    return cls


def registered() -> list[Layout]:
    """The layouts registered so far (``runlog.formats.layouts`` loads them all first)."""
    return list(_REGISTRY.values())
