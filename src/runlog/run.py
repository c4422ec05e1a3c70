"""``open_run``: discover a run's files once, and expose them as lazy canonical polars frames."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import schema as S
from . import storage
from ._lazy import pl
from .errors import DataError, RunNotFoundError, UsageError
from .formats import get_layout, layouts
from .formats.base import UNREADABLE, WARNING, Candidate, FileInfo, Layout, Problem, RunContext
from .formats.common import local_footers
from .probe_cache import Hit, ProbeCache
from .storage import ObjectPath

TEMP_SUFFIXES = (".tmp", ".partial")
MANIFEST = "run.json"  # the native layout's manifest: one per run
IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db"})


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
        m = self.manifest or {}
        return str(m.get("name") or self.root.name)

    def files_of(self, layout: str) -> list[FileInfo]:
        return [f for f in self.files if f.layout == layout]

    @cached_property
    def layouts(self) -> list[Layout]:
        names = {f.layout for f in self.files}
        return [lay for lay in layouts() if lay.name in names]

    @cached_property
    def samples(self) -> pl.LazyFrame:
        """One row per trajectory, canonical columns first (``schema.SAMPLE_COLUMNS``), extras after."""
        frames = [lf for lay in self.layouts if (lf := lay.scan_samples(self.files_of(lay.name), self.ctx)) is not None]
        if not frames:
            return S.empty_samples()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

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

        try:
            return build()
        except (pl.exceptions.PolarsError, OSError):
            # A layout that reads the components column hit a corrupt file: find it, report it, go on.
            if not self._quarantine_unreadable():
                raise
            return build()

    def numeric(self, carry: dict[str, pl.Expr], components: list[str] | None = None) -> pl.LazyFrame:
        """The numeric view summaries work on: one row per (sample, role) with the ``carry`` expressions,
        ``role, reward, kl`` and ``component/<name>`` floats; built per layout by its fastest route, and
        never reading a text column unless a ``carry`` expression asks for one."""
        comps = self.component_names() if components is None else components
        frames = [
            lf
            for lay in self.layouts
            if (lf := lay.scan_numeric(self.files_of(lay.name), self.ctx, carry, comps)) is not None
        ]
        if not frames:
            from .formats.base import numeric_from_samples

            return numeric_from_samples(S.empty_samples(), carry, comps)
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def numeric_wide(self, carry: dict[str, pl.Expr], components: list[str], roles: list[str]) -> pl.LazyFrame | None:
        """The wide numeric view (``Layout.scan_numeric_wide``), or None unless every layout offers it."""
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
        """Whether every readable sample file offers a wide view in which every sample has per-role values
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
        """Long view of scalar metrics: ``step, time, key, value, source``."""
        frames = [
            S.conform_scalars(lf)
            for lay in self.layouts
            if (lf := lay.scan_scalars(self.files_of(lay.name), self.ctx)) is not None
        ]
        if not frames:
            return S.empty_scalars()
        return frames[0] if len(frames) == 1 else pl.concat(frames)

    def collect(self, build: Callable[[], list[pl.LazyFrame]], *, engine: str = "auto") -> list[pl.DataFrame]:
        """Collect the frames ``build`` makes; if reading fails on data that discovery could not check (a
        corrupt data page behind an intact footer), find the files that fail, report each as a problem,
        leave them out and build again, so that the good data is still analysed."""
        try:
            return pl.collect_all(build(), engine=engine)
        except (pl.exceptions.PolarsError, OSError) as exc:
            # OSError: an object deleted (or a local file removed) after discovery.
            first_error = exc
        bad = self._quarantine_unreadable()
        if not bad:
            msg = str(first_error).strip().splitlines()[0] if str(first_error).strip() else type(first_error).__name__
            raise DataError(str(self.root), f"reading the run failed: {msg[:300]}") from None
        try:
            return pl.collect_all(build(), engine=engine)
        except (pl.exceptions.PolarsError, OSError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(str(self.root), f"reading the run failed: {msg[:300]}") from None

    def _quarantine_unreadable(self) -> list[FileInfo]:
        """Read every readable Parquet sample file in full; mark the ones that fail (corrupt, or gone since
        discovery), and forget the lazy frames built from the old file list. Only runs on the error path."""
        from .formats.common import read_parquet_whole

        bad = []
        for f in self.files:
            if f.fmt != "parquet" or not f.readable or f.kind != "samples":
                continue
            try:
                read_parquet_whole(f)
            except Exception as exc:  # noqa: BLE001  (any failure to decode means the file is unusable)
                reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                if isinstance(exc, FileNotFoundError) or "NoSuchKey" in reason or "not found" in reason.lower():
                    what = f"gone since the run was listed: {reason}"
                else:
                    what = f"corrupt data (the footer is intact): {reason}"
                self.ctx.problem(f.path, UNREADABLE, f"{what}; file skipped")
                f.readable = False
                bad.append(f)
        if bad:
            for name in ("samples", "roles", "layouts"):
                self.__dict__.pop(name, None)
        return bad

    def role_names(self) -> list[str]:
        """Role names known from manifests and footers, without reading data."""
        names: list[str] = []
        for lay in self.layouts:
            for r in lay.roles(self.files_of(lay.name), self.ctx):
                if r not in names:
                    names.append(r)
        return names

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.is_warning]


def local_stamp(st: os.stat_result) -> tuple:
    """What identifies one version of a local file: size, modification and change times, inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _walk(root: Path) -> list[tuple[Path, str, int, str, tuple]]:
    """(absolute path, run-relative posix path, size, path string, stamp) of every file below root, hidden
    folders skipped."""
    out: list[tuple[Path, str, int, str, tuple]] = []
    stack = [(str(root), "")]
    while stack:
        path, rel = stack.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            erel = f"{rel}{e.name}"
            try:
                if e.is_dir(follow_symlinks=True):
                    if not e.name.startswith(".") and e.name != "__pycache__":
                        stack.append((e.path, erel + "/"))
                elif e.is_file(follow_symlinks=True):
                    st = e.stat()
                    out.append((Path(e.path), erel, st.st_size, e.path, local_stamp(st)))
            except OSError:
                continue
    # Manifests first: readers of other files in the same run may depend on them.
    out.sort(key=lambda t: (not (t[1] == MANIFEST or t[1].endswith(f"/{MANIFEST}")), t[1]))
    return out


@dataclass(frozen=True)
class NameEntry:
    """What a file's path alone says: its layout and, for one-step sample files, split and step."""

    path: str
    layout: str
    split: str | None
    step: int | None
    keyed: bool  # the name gave (split, step): a ``keep`` predicate can decide about it unopened


def list_files(
    path: str | os.PathLike[str] | ObjectPath,
    storage_options: Mapping[str, str] | None = None,
    prefetch: bool = True,
    layout: str | None = None,
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]]]:
    """(root, files) of a run: a local directory or file, or an object-store URL (``runlog.storage``). Each
    file is (path, run-relative path, size, path string, stamp: what changes when the file is rewritten).
    A run given as one file is rooted at its run folder (``_one_file``)."""
    root, entries, _ = _listing(path, storage_options, prefetch, layout)
    return root, entries


def _listing(
    path: str | os.PathLike[str] | ObjectPath,
    storage_options: Mapping[str, str] | None,
    prefetch: bool,
    layout: str | None,
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]], bool]:
    """``list_files``, and whether the path named one file."""
    if storage.is_url(path):
        root = storage.location(path, storage_options)
        entries = storage.list_run(root)
        if prefetch:
            # JSONL, JSON and CSV files are read whole by discovery anyway: fetch them all at once.
            storage.prefetch_small(entries)
        if len(entries) == 1 and entries[0][0] == root:
            abspath, _, size, path_str, stamp = entries[0]
            return _one_file(path, ObjectPath(root.store, ""), abspath, root.key, size, path_str, stamp, layout)
        return root, entries, False
    p = Path(path).expanduser()
    if not p.exists():
        raise RunNotFoundError(f"{path}: no such file or directory")
    if p.is_file():
        try:
            st = p.stat()
        except OSError as exc:
            raise RunNotFoundError(f"{path}: cannot read ({exc.strerror or exc})") from None
        full = p.absolute()
        top = Path(full.anchor)
        root, entries, _ = _one_file(
            path, top, full, full.relative_to(top).as_posix(), st.st_size, str(p), local_stamp(st), layout
        )
        depth = entries[0][1].count("/")
        # The run folder as the user wrote the path (relative stays relative), where the path reaches that far.
        return (p.parents[depth] if depth < len(p.parents) else root), entries, True
    if p.is_dir():
        return p, _walk(p), False
    raise RunNotFoundError(f"{path}: not a regular file or directory")


def _one_file(
    path: Any, top: Any, abspath: Any, full: str, size: int, path_str: str, stamp: tuple | None, layout: str | None
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]], bool]:
    """A run given as one file: rooted at the folder its layout would have as the run's (``Layout.run_folder``:
    ``RUN`` for ``RUN/samples/train/step_8.p0.parquet``), so that its run-relative path, which may tell
    split and step, reads as it would in that folder. ``full`` is its path below ``top`` (``/``, a bucket)."""
    if abspath.name == MANIFEST:
        raise UsageError(f"{path}: {MANIFEST} is a manifest, not a run: pass its folder")
    cand = Candidate(top, abspath, size, full, path_str, stamp)
    chosen = _choose(cand, get_layout(layout) if layout else None, layouts())
    folder = full.rpartition("/")[0]
    if chosen is not None:
        folder = chosen.run_folder(folder)
    rel = full[len(folder) + 1 :] if folder else full
    return (top / folder if folder else top), [(abspath, rel, size, path_str, stamp)], True


def _one_run(path: Any, claimed: list[tuple[str, Layout]]) -> None:
    """Refuse a path that holds several runs, from the paths of the files a layout claimed (nothing is read).

    Each file belongs to the run folder its layout puts it in (``Layout.run_folder``). A folder below another
    one is part of that run (its own sub-folders: ``flink_logs/`` beside ``samples/``, verl's validation
    dumps), unless it holds a manifest of its own. Two or more folders left are several runs: their numbers
    must not be added up (docs/format.md, "One run, or several")."""
    where_files = {(lay, rel.rpartition("/")[0]) for rel, lay in claimed}
    folders = {lay.run_folder(folder) for lay, folder in where_files}
    if len(folders) < 2:
        return
    manifests = {rel.rpartition("/")[0] for rel, _ in claimed if rel.rpartition("/")[2] == MANIFEST}

    def inside_another(f: str) -> bool:
        parts = f.split("/") if f else []
        return any("/".join(parts[:i]) in folders for i in range(len(parts)))

    runs = sorted(f for f in folders if f in manifests or not inside_another(f))
    if len(runs) < 2:
        return
    where = str(path).rstrip("/") or str(path)
    shown = [r or "." for r in runs]
    names = ", ".join(shown[:8]) + (f", ... (+{len(shown) - 8})" if len(shown) > 8 else "")
    depths = {r.count("/") + 1 for r in runs}
    if "" in runs or len(depths) != 1:
        hint = "pass each run's folder (or file) as its own PATH; several PATHs make a fleet (summarize, metrics)"
    else:
        hint = f"pass one, or '{where}{'/*' * depths.pop()}' --by run for a fleet (summarize, metrics)"
    raise UsageError(f"{where}: holds {len(runs)} runs ({names}): {hint}")


def list_names(
    path: str | os.PathLike[str],
    *,
    layout: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    prefetch: bool = True,
) -> list[NameEntry]:
    """Every file a run has, with its layout and the split/step its name tells, opening no Parquet file
    (JSONL layouts are recognised from their first line). Cheap even for thousands of files; commands use
    it to decide which files ``open_run(keep=...)`` needs at all."""
    root, paths = list_files(path, storage_options, prefetch, layout)
    forced = get_layout(layout) if layout else None
    registry = layouts()
    out = []
    claimed: list[tuple[str, Layout]] = []
    for abspath, rel, size, path_str, stamp in paths:
        cand = Candidate(root, abspath, size, rel, path_str, stamp)
        if cand.name in IGNORED_NAMES or cand.name.startswith(".") or cand.suffix in TEMP_SUFFIXES:
            continue
        chosen = _choose(cand, forced, registry)
        if chosen is None:
            continue
        claimed.append((rel, chosen))
        keys = chosen.name_keys(cand)
        split, step = keys if keys is not None else (None, None)
        out.append(NameEntry(rel, chosen.name, split, step, keys is not None))
    _one_run(path, claimed)
    return out


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

    A path that holds several runs (``_one_run``: two manifests, or run folders side by side) is a
    ``UsageError``, decided from the listed paths before anything is probed. A single file is a run of
    that file, rooted at its run folder (``_one_file``); ``run.json`` alone is a ``UsageError``.

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
    root, paths, single = _listing(path, storage_options, only is None, layout)
    listed = {t[1] for t in paths}  # every file of the run, also when only some are opened
    if only is not None:
        wanted = set(only)
        paths = [t for t in paths if t[1] in wanted]
        if isinstance(root, ObjectPath):
            storage.prefetch_small(paths)
    forced = get_layout(layout) if layout else None
    ctx = RunContext(root=root)
    files: list[FileInfo] = []
    unmatched: list[str] = []
    skipped = 0
    registry = layouts()
    chosen_files: list[tuple[Candidate, Layout]] = []
    claimed: list[tuple[str, Layout]] = []
    for abspath, rel, size, path_str, stamp in paths:
        cand = Candidate(root, abspath, size, rel, path_str, stamp)
        if cand.name in IGNORED_NAMES:
            continue
        if cand.name.startswith(".") or cand.suffix in TEMP_SUFFIXES:
            if cand.suffix in TEMP_SUFFIXES or cand.name.endswith(TEMP_SUFFIXES):
                ctx.warn(cand.rel, "leftover temporary file (a writer was interrupted?); ignored")
            continue
        chosen = _choose(cand, forced, registry)
        if chosen is None:
            unmatched.append(cand.rel)
            ctx.warn(cand.rel, "matches no known layout; ignored")
            continue
        claimed.append((cand.rel, chosen))
        if keep is not None:
            keys = chosen.name_keys(cand)
            if keys is not None and not keep(*keys):
                skipped += 1
                continue
        chosen_files.append((cand, chosen))
    _one_run(path, claimed)
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
    if probes is not None:
        probes.save(listed)
    if not files and not skipped:
        if unmatched:
            raise UsageError(
                f"{path}: no run files found ({len(unmatched)} file(s) match no known layout; "
                "see docs/format.md, or force one with --layout)"
            )
        if not ctx.problems:
            raise UsageError(f"{path}: no files found")
    if single and files and all(f.kind == "manifest" for f in files):
        raise UsageError(f"{path}: a {files[0].layout} manifest, with no rows of its own: pass its folder")
    return Run(root=root, files=files, ctx=ctx, unmatched=unmatched, skipped=skipped)


def _probe(cand: Candidate, chosen: Layout, ctx: RunContext) -> FileInfo:
    try:
        info = chosen.probe(cand, ctx)
    except Exception as exc:  # noqa: BLE001  (a reader bug must not hide the rest of the run)
        ctx.problem(cand.rel, UNREADABLE, f"could not be read as {chosen.name}: {type(exc).__name__}: {exc}")
        info = FileInfo(
            cand.rel, cand.abspath, chosen.name, cand.suffix.lstrip("."), "samples", cand.size, readable=False
        )
    if info.footer is not None:
        # The footer object is only needed while probing; thousands of them would pin memory.
        info.footer.metadata = None
    if isinstance(cand.abspath, ObjectPath):
        cand.abspath.store.forget(cand.abspath.key)
    return info


def _choose(cand: Candidate, forced: Layout | None, registry: list[Layout]) -> Layout | None:
    if forced is not None:
        return forced if (not forced.formats or cand.suffix in forced.formats) else None
    for lay in registry:
        try:
            if lay.detect(cand):
                return lay
        except Exception:  # noqa: BLE001,S112  (a sniffing failure just means "not mine")
            continue
    return None


__all__ = ["Run", "open_run", "WARNING"]
