"""Fleets: many runs at once (``summarize 'ROOT/*' --by run --by role``), in-process or on Ray.

The pattern (docs/scaling.md):

1. the driver resolves run locations (globs, ``--runs FILE``, local or object-store URLs) and lists each
   run's files (names and sizes only);
2. it plans batches of work: several small runs per batch, a run bigger than ``TASK_BYTES`` split into
   chunks of whole steps;
3. an engine (``runlog.fleet.engine``) maps a task over the batches: each task opens its runs' files
   with runlog's own readers and returns small mergeable partials (``summarize_partials``);
4. the driver concatenates the partials in plan order and merges them (``combine_partials``: Chan's
   formula for means and variances).

The plan does not depend on the engine, and the partials are merged in plan order, so every engine gives
the same numbers: to the last bit or two, since polars' multithreaded aggregation adds in thread order (two
runs of the same command can differ by an ulp); tests and the benchmark hold engines to 1e-12.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import pl
from ..analysis.filters import Filters
from ..errors import RunlogError, RunNotFoundError, UsageError
from .engine import Engine, LocalEngine
from .tasks import DiversityJob, FormatJob, Job, MetricJob, SummarizeJob, Task, Unit, UnitResult, run_batch

if TYPE_CHECKING:
    from ..run import Run

# A run larger than this is split into chunks of whole steps (each a separate task).
TASK_BYTES = 256 * 1024 * 1024
# Batches aim at about this share of the fleet, so that a cluster has work for every worker.
BATCHES_PER_FLEET = 64
LIST_THREADS = 16


# ---------------------------------------------------------------------------------------------------------
# Locations
# ---------------------------------------------------------------------------------------------------------


def read_runs_file(path: str | os.PathLike[str]) -> list[str]:
    """Run locations, one per line (blank lines and ``#`` comments ignored)."""
    return [line for _, line in runs_file_lines(path)]


class RunsFile(str):
    """A ``--runs FILE`` read once (the CLI's option reads it so, to check its lines before anything else is
    read): its name, as given, with the lines read or why they could not be; :func:`runs_file_lines` gives them
    again without reading the file a second time. A pipe (``--runs <(...)``, ``--runs /dev/stdin``) can be read
    only once: read again, it listed no run."""

    lines: list[tuple[int, str]] | None
    error: RunlogError | None

    def __new__(cls, path: str | os.PathLike[str]) -> RunsFile:
        self = super().__new__(cls, os.fspath(path))
        try:
            self.lines, self.error = _read_runs_file(path), None
        except RunlogError as exc:
            self.lines, self.error = None, exc
        return self


def runs_file_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(line number, location) of each run a ``--runs`` file lists; those read already where ``path`` is a
    :class:`RunsFile`."""
    if isinstance(path, RunsFile):
        if path.error is not None:
            raise path.error
        return list(path.lines or [])
    return _read_runs_file(path)


def _read_runs_file(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """:func:`runs_file_lines`, read from the file."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--runs {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    out = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    out = [(n, line) for n, line in out if line and not line.startswith("#")]
    if not out:
        raise UsageError(f"--runs {path}: lists no run")
    return out


def resolve_locations(patterns: Sequence[str], storage_options: Mapping[str, str] | None = None) -> list[str]:
    """Expand globs (``ROOT/*``; ``s3://bucket/runs/*`` matches folders in the store) into run locations,
    keeping order and dropping duplicates. A pattern that matches nothing is a usage error."""
    return list(dict.fromkeys(_expanded(patterns, storage_options)))


def _expanded(patterns: Sequence[str], storage_options: Mapping[str, str] | None) -> list[str]:
    """``patterns`` with each glob replaced by what it matches, in order, repeats kept (:func:`distinct_runs`
    drops them, and says so)."""
    from ..listing import is_pattern

    out: list[str] = []
    for pat in patterns:
        out.extend(_matches(pat, storage_options) if is_pattern(pat, storage_options) else [pat])
    return out


def _matches(pattern: str, storage_options: Mapping[str, str] | None) -> list[str]:
    """What a glob matches (:func:`glob_matches`); matching nothing is a usage error."""
    from ..listing import glob_matches

    try:
        matches = glob_matches(pattern, storage_options)
    except RunNotFoundError as exc:
        # A missing bucket (or container): said for the pattern given, not for the prefix listed.
        raise RunNotFoundError(f"{pattern}: {_reason_of(exc)}") from None
    if not matches:
        raise UsageError(f"{pattern}: matches no run")
    return matches


def _reason_of(exc: RunNotFoundError) -> str:
    """An error's message without the location it begins with (``s3://b/: NoSuchBucket ...``)."""
    text = str(exc)
    head, sep, rest = text.partition(": ")
    return rest if sep and ("://" in head or os.sep in head) else text


Key = tuple[str, ...]


def _resolved(location: str) -> Key:
    """Where a location points, whatever its spelling: a local path's real path (links, ``./``, a trailing
    ``/``, relative or absolute), an object store's family, bucket and key (``s3a://b/k/`` is ``s3://b/k``).
    A key's empty segment is kept: ``s3://b/runs//x`` is not the run ``s3://b/runs/x`` (two keys, two runs)."""
    from .. import storage

    if storage.is_url(location):
        try:
            return ("url", *storage.split_url(location))
        except UsageError:
            return ("url", location)  # refused when it is opened (``runs//x`` among them)
    return ("path", os.path.realpath(os.path.expanduser(location)))


def _folders_above(key: Key) -> list[Key]:
    """The resolved folders that hold the resolved location ``key``, nearest first."""
    if key[0] == "path":
        parents = list(Path(key[1]).parents)
        return [("path", str(p)) for p in parents]
    if len(key) < 4:
        return []
    parts = key[3].split("/") if key[3] else []
    return [(*key[:3], "/".join(parts[:i])) for i in range(len(parts) - 1, -1, -1)]


def _below(key: Key, folder: Key) -> tuple[str, ...] | None:
    """The names leading from ``folder`` down to ``key`` (``()``: the same), or None when ``key`` is not
    at or below it."""
    if key == folder:
        return ()
    if key[0] == "path" and folder[0] == "path":
        try:
            return Path(key[1]).relative_to(folder[1]).parts
        except ValueError:
            return None
    if len(key) < 4 or len(folder) < 4 or key[:3] != folder[:3]:
        return None
    inner, outer = key[3], folder[3]
    if outer and not inner.startswith(f"{outer}/"):
        return None
    return tuple(inner[len(outer) :].strip("/").split("/"))


def _read_with(names: Sequence[str]) -> bool:
    """Whether a run's listing reaches a folder down these names: hidden folders and caches are never
    listed (``listing.walk``), so what lies there is no part of the run's rows."""
    return not any(n.startswith(".") or n in ("__pycache__", "lost+found") for n in names)


def _run_root(location: str, storage_options: Mapping[str, str] | None) -> Key | None:
    """The resolved folder that a folder location is read as the run of, as discovery decides it
    (``listing.run_folders``: ``g1`` holding the one run ``g1/same`` is read as ``g1/same``); None where
    it is not one run (a folder of runs, an empty one, one that cannot be listed: said when it is opened)."""
    from .. import storage
    from ..formats import get_layout
    from ..listing import run_folders
    from ..run import list_names

    try:
        entries = list_names(location, storage_options=storage_options, prefetch=False)
        folders = run_folders([(e.path, get_layout(e.layout)) for e in entries])
    except (RunlogError, OSError):
        return None
    if len(folders) != 1:
        return None
    if not folders[0]:
        return _resolved(location)
    if storage.is_url(location):
        return _resolved(f"{location.rstrip('/')}/{folders[0]}")
    return _resolved(os.path.join(os.path.expanduser(location), folders[0]))


def _is_file(location: str) -> bool:
    """Whether a location names one file (an object store's, from its name: nothing is listed here)."""
    from .. import storage
    from ..listing import DATA_SUFFIXES

    if storage.is_url(location):
        return location.rstrip("/").lower().endswith(DATA_SUFFIXES)
    return os.path.isfile(os.path.expanduser(location))


@dataclass(frozen=True)
class _Run:
    """Which run a location is read as (``run``: its resolved run folder, or the location's own resolved key
    where that is not known) and how: the run itself (``is``), a folder inside it (``is a part of``) or one of
    its files (``is a file of``); ``rank``: which spelling of a run is kept (the lowest, then the first)."""

    run: Key
    how: str
    rank: int


def _runs_of(locations: Sequence[str], storage_options: Mapping[str, str] | None) -> list[_Run]:
    """The run each location is read as. Two locations can be one run only where one lies inside the other
    (``fleet/g1`` and ``fleet/g1/same``; a run and one of its files), or where they resolve to one place (a
    link, ``./``, a trailing ``/``): only such locations are listed (names only), to find the folder each is
    read as the run of (:func:`_run_root`). A location inside the run another is read as is a part of that
    run (its rows are the run's), unless it lies where the run's listing does not reach (a hidden folder)."""
    keys = [_resolved(loc) for loc in locations]
    known = set(keys)
    above = {k: [a for a in _folders_above(k) if a in known] for k in known}  # the other locations holding k
    outer = {a for held in above.values() for a in held}
    inner = {k for k, held in above.items() if held}
    roots: dict[Key, Key] = {}
    tried: set[Key] = set()

    def find(loc: str, key: Key) -> None:
        tried.add(key)
        if (root := _run_root(loc, storage_options)) is not None:
            roots[key] = root

    for loc, key in zip(locations, keys, strict=True):
        if key in outer and key not in tried and not _is_file(loc):
            find(loc, key)
    # A location inside another that holds the other's run (``fleet/f_deep/x`` beside ``fleet/f_deep``, read
    # as ``fleet/f_deep/x/y``): its own run folder tells whether it is that run.
    changed = True
    while changed:
        changed = False
        found = set(roots.values())
        for loc, key in zip(locations, keys, strict=True):
            if key in inner and key not in tried and any(key in _folders_above(r) for r in found):
                find(loc, key)
                changed = True
    found = set(roots.values())
    out: list[_Run] = []
    for loc, key in zip(locations, keys, strict=True):
        holding = [r for r in found if (names := _below(key, r)) is not None and _read_with(names)]
        own = roots.get(key, key)
        run = min(holding, key=lambda r: len(_folders_above(r))) if holding else own  # the outermost run
        if run in (key, own):
            out.append(_Run(run, "is", 1 if _is_link(loc) else 0))
        elif _is_file(loc):
            out.append(_Run(run, "is a file of", 3))
        else:
            out.append(_Run(run, "is a part of", 2))
    return out


# (location dropped, the location kept, how they are one run: "is", "is a part of" or "is a file of")
SameRun = tuple[str, str, str]


def distinct_runs(
    locations: Sequence[str], storage_options: Mapping[str, str] | None = None
) -> tuple[list[str], list[SameRun]]:
    """``locations`` with each run once, and the locations left out. A run reached by two spellings (a link,
    ``./``, a trailing ``/``, a relative and an absolute path, a glob and ``--runs``, the very same path
    twice, the folder that holds it and its own path) would count twice: the first spelling is kept, except
    that the run's own folder is kept before a link to it, and a run before a folder or a file of it (its
    rows are the run's). Locations are listed only where one lies inside another (:func:`_runs_of`)."""
    runs = _runs_of(locations, storage_options)
    kept: dict[Key, int] = {}
    for i, r in enumerate(runs):
        if r.run not in kept or r.rank < runs[kept[r.run]].rank:
            kept[r.run] = i
    chosen = set(kept.values())
    out = [loc for i, loc in enumerate(locations) if i in chosen]
    same = [
        (loc, locations[kept[r.run]], r.how)
        for i, (loc, r) in enumerate(zip(locations, runs, strict=True))
        if i not in chosen
    ]
    return out, same


def _is_link(location: str) -> bool:
    """Whether a local location is a symbolic link (an object store has none)."""
    from .. import storage

    return not storage.is_url(location) and os.path.islink(location.rstrip("/\\") or location)


def same_run_note(same: Sequence[SameRun]) -> str:
    """One note naming the spellings of every run given twice (``distinct_runs``); a run given twice by the
    very same spelling is named once."""
    said = [a if a == b else f"{a} {how} {b}" for a, b, how in same]
    said = list(dict.fromkeys(said))
    more = f"; ... (+{len(said) - 5})" if len(said) > 5 else ""
    return f"the same run given twice, counted once: {'; '.join(said[:5])}{more}"


def expand_globs(
    paths: Sequence[str], storage_options: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str], list[SameRun]]:
    """``paths`` with each glob replaced, in place, by what it matches (:func:`glob_matches`, sorted), for a
    command that takes several runs one by one (``diff``: the baseline first). A match that is a run given
    otherwise, by a path of its own (``diff runs/base 'runs/*'``: the baseline against the others; the folder
    that holds it), or by an earlier match (a link to it), is left out: a run is not compared with itself for
    having been matched; the ones spelled otherwise are returned, as :func:`distinct_runs` does (which run a
    location is: :func:`_runs_of`). Paths given as such are kept as given. Returns the runs, the glob each
    match came from, and the matches left out. A glob that matches nothing is a usage error."""
    from ..listing import is_pattern

    given: list[tuple[str, str | None]] = []  # (location, the glob it matched)
    for path in paths:
        expand = is_pattern(path, storage_options)
        given += [(m, path) for m in _matches(path, storage_options)] if expand else [(path, None)]
    runs = _runs_of([loc for loc, _ in given], storage_options)
    seen: dict[Key, str] = {}
    for (loc, glob), r in zip(given, runs, strict=True):
        if glob is None:
            seen.setdefault(r.run, loc)  # (the first spelling wins)
    out: list[str] = []
    origin: dict[str, str] = {}
    same: list[SameRun] = []
    for (loc, glob), r in zip(given, runs, strict=True):
        if glob is None:
            out.append(loc)
            continue
        if r.run in seen:
            if seen[r.run] != loc:
                same.append((loc, seen[r.run], r.how))
            continue
        seen[r.run] = loc
        origin[loc] = glob
        out.append(loc)
    return out, origin, same


class Locations(list[str]):
    """Run locations as ``fleet_locations`` resolves them, with what resolving them said (``notes``: a run
    given twice, a link to a run among a folder's runs) and whether they were given as a fleet (``fleet``:
    several PATHs or a glob, however many runs are left: the output keeps a fleet's shape, its ``run``
    column, as with ``--runs``)."""

    def __init__(self, items: Sequence[str] = (), notes: Sequence[str] = (), fleet: bool = False) -> None:
        super().__init__(items)
        self.notes = list(notes)
        self.fleet = fleet


def run_names(locations: Sequence[str]) -> list[str]:
    """Short unique names: each location relative to the folder all of them share."""
    parts = [loc.rstrip("/").split("/") for loc in locations]
    if len(parts) == 1:
        return [parts[0][-1]]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    names = ["/".join(p[common:]) for p in parts]
    return names if len(set(names)) == len(names) else list(locations)


def fleet_locations(
    paths: Sequence[str],
    runs_file: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, str] | None = None,
    by: Sequence[str] = (),
) -> Locations:
    """The run locations a command was given: ``paths`` and those listed in ``runs_file`` (``--runs``), globs
    expanded (:func:`resolve_locations`), each run once (:func:`distinct_runs`, said in a note). None at all
    is a usage error. Grouped ``by`` run, a PATH that holds several runs side by side (``ROOT`` for
    ``ROOT/*``) stands for those runs, each a row of its own: nothing is added up. Without ``run`` among the
    keys such a path stays one location, refused when it is opened."""
    from ..listing import is_pattern

    items = list(paths)
    lines: dict[str, int] = {}  # a --runs line's number, for what is said of it
    if runs_file:
        for n, line in runs_file_lines(runs_file):
            items.append(line)
            lines.setdefault(line, n)
    if not items:
        raise UsageError("give a run (PATH), several, a glob such as 'ROOT/*', or --runs FILE")
    same: list[SameRun] = []
    found_in: dict[str, str] = {}  # a run found inside a PATH given (``outer/sub/inner`` of ``outer``): that PATH
    if "run" in by and len(paths) <= MAX_FOLDERS_LOOKED_INTO:
        given = set(paths)
        out: list[str] = []
        for item in items:
            runs, links = _runs_in(item, storage_options) if item in given else ([item], [])
            out += runs
            same += links
            for r in runs:
                if r != item:
                    found_in.setdefault(r, item)
        items = out
    expanded: list[str] = []
    for item in items:
        try:
            expanded += _expanded([item], storage_options)
        except UsageError as exc:
            if item not in lines or item in paths:
                raise
            raise type(exc)(f"--runs {runs_file}: line {lines[item]}: {exc}") from None
    kept, twice = distinct_runs(expanded, storage_options)
    # One spelling twice, given and found inside another PATH given: said as that, naming both PATHs (the note
    # named the run alone, as if typed twice).
    same += [
        (a, f"{found_in[a]} (--by run)", "is also a run of") if a == b and a in found_in else (a, b, how)
        for a, b, how in twice
    ]
    fleet = len(paths) > 1 or any(is_pattern(p, storage_options) for p in paths)
    return Locations(kept, [same_run_note(same)] if same else [], fleet)


MAX_FOLDERS_LOOKED_INTO = 16  # a PATH's files are listed once more to tell; globs and --runs lists never are


def _runs_in(location: str, storage_options: Mapping[str, str] | None) -> tuple[list[str], list[SameRun]]:
    """``location``'s runs when it holds several side by side, else ``[location]`` (errors are left to the
    fleet's tasks, which report them run by run); and the links among its folders to a run listed already
    (``runs/latest -> exp-123``: discovery lists a folder once), said as the same run given twice."""
    from .. import storage
    from ..errors import SeveralRunsError
    from ..listing import is_pattern
    from ..run import list_names

    if is_pattern(location, storage_options):
        return [location], []
    issues: list[tuple[str, str, bool]] = []
    try:
        list_names(location, storage_options=storage_options, prefetch=False, issues=issues)
    except SeveralRunsError as exc:
        # The path itself among its runs (``""``: a run with another run in a sub-folder): the fleet reads it
        # without that folder (``_nested_runs``), and the run inside as a run of its own.
        base = location.rstrip("/")
        if storage.is_url(location):
            return [f"{base}/{r}" if r else location for r in exc.runs], []
        runs = [os.path.join(base, r) if r else location for r in exc.runs]
        return runs, ([] if "" in exc.runs else _links_to_runs(base, exc.runs, issues))
    except RunlogError:
        pass
    return [location], []


def _links_to_runs(base: str, runs: Sequence[str], issues: Sequence[tuple[str, str, bool]]) -> list[SameRun]:
    """The links to folders that discovery left unfollowed (listed already) outside every run of ``base``:
    each a spelling of a run (or of a folder of runs) counted once, under its own path."""
    top = os.path.realpath(base)
    out: list[SameRun] = []
    for rel, _, _ in issues:
        link = os.path.join(base, rel)
        inside = any(rel == r or rel.startswith(f"{r}/") for r in runs)
        if inside or not (os.path.islink(link) and os.path.isdir(link)):
            continue
        target = os.path.realpath(link)
        shown = os.path.join(base, os.path.relpath(target, top)) if target.startswith(top + os.sep) else target
        out.append((link, shown, "is"))
    return out


def is_fleet(
    locations: Sequence[str],
    by: Sequence[str] = (),
    *,
    listed: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
) -> bool:
    """Whether runs are analysed as a fleet (a task per run or chunk on an engine, the results stacked or
    merged) rather than as one run opened here. A fleet: several runs; one run grouped by ``run`` (its rows
    name it); runs read from a list (``listed``: ``--runs FILE``, whose output keeps the fleet's shape
    however many runs it lists); or an engine asked for (``engine`` other than ``local``, a ``ray_address``),
    which only the fleet path starts, and checks; or locations given as a fleet (``Locations.fleet``: a glob
    that matched one run keeps a fleet's output, its ``run`` column)."""
    as_fleet = isinstance(locations, Locations) and locations.fleet
    return len(locations) > 1 or as_fleet or "run" in by or listed or engine != "local" or bool(ray_address)


# ---------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    """A listed file of a run: its run-relative path, size, path (local, or an object's) and stamp; ``ident``: a
    local file's (inode, size) from its listing stamp (no stat of its own), which two runs' files share where they
    may be one file reached two ways (a link, a hard link; ``_shared_files`` asks their device then), else None."""

    rel: str
    size: int
    path: Any
    stamp: tuple | None
    ident: tuple[int, int] | None


def _listing(location: str, options: Mapping[str, str] | None, layout: str | None) -> tuple[list[_File], list[str]]:
    """A run's files, and the runs with a manifest of their own in its sub-folders (``b/inner/c2`` in the run
    ``b``), which the run is read without (:func:`_nested_runs`). A matched folder marker alone (the zero-byte
    ``prefix/`` a console writes) is a run with no files, as an empty folder on disk is."""
    from .. import storage
    from ..run import list_files

    if storage.is_url(location):
        root = storage.location(location, options)
        entries = storage.list_run(root)
        if len(entries) == 1 and entries[0][2] == 0 and entries[0][1] == root.name and "." not in root.name:
            raise RunNotFoundError(f"{location}: no files found (an empty folder: its marker object only)")
        files = [_File(rel, size, path, stamp, None) for path, rel, size, _, stamp in entries]
    else:
        _, entries = list_files(location, options, prefetch=False)
        files = [_File(rel, size, path, stamp, _inode(stamp, size)) for path, rel, size, _, stamp in entries]
    return files, _nested_runs(location, files, layout, options)


def _inode(stamp: Any, size: int) -> tuple[int, int] | None:
    """(inode, size) of a local listing stamp (size, mtime_ns, ctime_ns, inode), else None."""
    if isinstance(stamp, tuple) and len(stamp) == 4 and isinstance(stamp[3], int):
        return (stamp[3], size)
    return None


def _ident(path: Any) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _nested_runs(
    location: str, files: Sequence[_File], layout: str | None, options: Mapping[str, str] | None
) -> list[str]:
    """The folders below a run that hold runs of their own (a manifest of their own: ``listing.run_folders``),
    where the run's own folder is a run too: discovery refuses such a path as several runs, and no PATH reads
    the outer run alone; a fleet reads it without those folders (their files are no part of it), and says so.
    Listed again by name only where a manifest lies below the top (rare)."""
    from ..errors import SeveralRunsError
    from ..listing import MANIFEST
    from ..run import list_names

    if not any(f.rel.endswith(f"/{MANIFEST}") for f in files):
        return []
    try:
        list_names(location, layout=layout, storage_options=options, prefetch=False)
    except SeveralRunsError as exc:
        return [r for r in exc.runs if r] if "" in exc.runs else []
    except (RunlogError, OSError):
        pass  # said when the run is read
    return []


def open_fleet_run(
    location: str, *, layout: str | None = None, storage_options: Mapping[str, str] | None = None
) -> Run:
    """A run of a fleet opened as the fleet reads it (``run.open_outer_run``: a run with other runs in its
    sub-folders without those folders), for what is asked of each run beside the fleet's tasks."""
    from ..run import open_outer_run

    return open_outer_run(location, layout=layout, storage_options=storage_options)


def _under(rel: str, folders: Iterable[str]) -> bool:
    return any(rel == f or rel.startswith(f"{f}/") for f in folders)


def _is_manifest(rel: str) -> bool:
    from ..listing import MANIFEST

    return rel == MANIFEST or rel.endswith(f"/{MANIFEST}")


# (run, run-relative path, problem kind, message): what planning says of a run, with its problems
Said = tuple[str, str, str, str]


@dataclass
class _Plan:
    units: list[Unit]
    failures: list[tuple[str, str]]
    files: dict[str, list[_File]]  # each run's files (by its name), as read
    said: list[Said]


def plan_units(
    locations: Sequence[str],
    *,
    layout: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    split_runs: bool = True,
    task_bytes: int = TASK_BYTES,
) -> tuple[list[Unit], list[tuple[str, str]]]:
    """List every run (concurrently) and cut the fleet into units. Returns (units, failures): a run that
    cannot be listed is reported as ``(location, reason)`` and left out; the others are still planned."""
    plan = _plan(locations, layout, storage_options, split_runs, task_bytes, pooled=False)
    return plan.units, plan.failures


def _plan(
    locations: Sequence[str],
    layout: str | None,
    storage_options: Mapping[str, str] | None,
    split_runs: bool,
    task_bytes: int,
    pooled: bool,
) -> _Plan:
    """``plan_units``, with what it says of the runs: runs inside a run's folder, read without them
    (:func:`_nested_runs`), and files that two local runs share (:func:`_shared_files`), read once where the
    statistics are ``pooled`` over the runs."""
    from ..formats.base import WARNING
    from ..listing import NESTED_RUN

    names = run_names(locations)
    failures: list[tuple[str, str]] = []
    with ThreadPoolExecutor(LIST_THREADS) as pool:
        futures = [pool.submit(_listing, loc, storage_options, layout) for loc in locations]
        listings: list[tuple[list[_File], list[str]] | None] = []
        for name, fut in zip(names, futures, strict=True):
            try:
                listings.append(fut.result())
            except RunlogError as exc:
                # Under the run's name, as a run that fails when read is: the message names its location.
                failures.append((name, str(exc)))
                listings.append(None)
    said: list[Said] = []
    given = {_resolved(loc) for loc in locations}
    kept: dict[str, list[_File]] = {}
    nested_of: dict[str, list[str]] = {}
    for name, loc, listed in zip(names, locations, listings, strict=True):
        if listed is None:
            continue
        files, nested = listed
        kept[name] = [f for f in files if not _under(f.rel, nested)]
        nested_of[name] = nested
        for folder in nested:
            n = sum(1 for f in files if _under(f.rel, [folder]))
            inner = f"{loc.rstrip('/')}/{folder}"
            if _resolved(inner) in given:
                said.append(
                    (
                        name,
                        folder,
                        WARNING,
                        f"a run of its own inside this run's folder (its own run.json): "
                        f"read as such, its {n} file(s) left out of this run's rows",
                    )
                )
            else:
                said.append(
                    (
                        name,
                        folder,
                        NESTED_RUN,
                        f"another run inside this run's folder (its own run.json): "
                        f"left out of this run's rows ({n} file(s)) and not read: pass {inner} as a run of "
                        "its own to read it",
                    )
                )
    left_out = _shared_files(names, locations, kept, layout, storage_options, pooled, said)
    units: list[Unit] = []
    for name, loc in zip(names, locations, strict=True):
        if name not in kept or (name in left_out and left_out[name] is None):
            continue
        drop = left_out.get(name) or set()
        files = [f for f in kept[name] if f.rel not in drop]
        whole = not drop and not nested_of[name]
        units += _units_of(name, loc, files, whole, len(units), layout, storage_options, split_runs, task_bytes)
    return _Plan(units, failures, kept, said)


def _units_of(
    name: str,
    loc: str,
    files: list[_File],
    whole: bool,
    first: int,
    layout: str | None,
    storage_options: Mapping[str, str] | None,
    split_runs: bool,
    task_bytes: int,
) -> list[Unit]:
    """A run's units, numbered from ``first``: the run (``whole``: all its files; else the ``files`` named), or
    chunks of whole steps of a run bigger than ``task_bytes``."""
    from ..run import list_names

    total = sum(f.size for f in files)
    rels = None if whole else [f.rel for f in files]
    if not split_runs or total <= task_bytes:
        return [Unit(first, name, loc, rels, total)]
    # A big run: chunks of whole steps, from what the names tell (no file is opened here).
    try:
        entries = list_names(loc, layout=layout, storage_options=storage_options, prefetch=False)
    except RunlogError:
        if whole:
            raise
        return [Unit(first, name, loc, rels, total)]  # (a run with runs inside: read whole, without them)
    size_of = {f.rel: f.size for f in files}
    keyed = [(e.step, e.path) for e in entries if e.keyed and e.step is not None and e.path in size_of]
    if not keyed:
        return [Unit(first, name, loc, rels, total)]
    keyed_paths = {path for _, path in keyed}
    always = [f.rel for f in files if f.rel not in keyed_paths]
    manifests = [rel for rel in always if _is_manifest(rel)]
    by_step: dict[int, list[str]] = {}
    for step, path in keyed:
        by_step.setdefault(step, []).append(path)
    units: list[Unit] = []
    chunk: list[str] = list(always)
    size = sum(size_of.get(r, 0) for r in chunk)
    for step in sorted(by_step):
        paths = by_step[step]
        n = sum(size_of.get(p, 0) for p in paths)
        if size + n > task_bytes and any(p in keyed_paths for p in chunk):
            units.append(Unit(first + len(units), name, loc, chunk, size))
            chunk, size = list(manifests), sum(size_of.get(r, 0) for r in manifests)
        chunk += paths
        size += n
    units.append(Unit(first + len(units), name, loc, chunk, size))
    for u in units:
        u.parts = len(units)
    return units


def _shared_files(
    names: Sequence[str],
    locations: Sequence[str],
    kept: Mapping[str, list[_File]],
    layout: str | None,
    storage_options: Mapping[str, str] | None,
    pooled: bool,
    said: list[Said],
) -> dict[str, set[str] | None]:
    """Files that two local runs of the fleet share (one file, reached through links or hard links: a "view" run
    made of links into another's samples), said as a warning naming both runs and the count. Each run's rows
    (``--by run``) count its files, as that run alone does; statistics ``pooled`` over the runs count a file
    once, in the first run (in the fleet's order) that has it: the files each later run leaves out are
    returned (None: the run has no data file of its own left, and is not read). Pooling them so is clean only
    where a run's shared files are whole steps of it: a step with shared files and files of its own would have
    its prompt groups cut in two (a usage error then, naming the step)."""
    from ..formats.base import WARNING

    # Only files whose (inode, size) two runs' listings share may be one file: those alone are asked their
    # (device, inode) (one file system's inode numbers are another's), so that a fleet costs no stat per file.
    runs_of: dict[tuple[int, int], set[str]] = {}
    for name in names:
        for f in kept.get(name, []):
            if f.ident is not None and not _is_manifest(f.rel):
                runs_of.setdefault(f.ident, set()).add(name)
    # A location that is a folder of runs (``links/fleetlink -> fleet`` matched beside ``links/latest -> fleet/r``)
    # is skipped when opened ("holds 4 runs"): its files are in no run's rows, and no other run's are its.
    where = dict(zip(names, locations, strict=True))
    sharing = {name for rs in runs_of.values() if len(rs) > 1 for name in rs}
    refused = {name for name in sharing if _several_runs(where[name], layout, storage_options)}
    if refused:
        runs_of = {k: rs - refused for k, rs in runs_of.items()}
    maybe = {k for k, rs in runs_of.items() if len(rs) > 1}
    owner: dict[tuple[int, int], str] = {}
    out: dict[str, set[str] | None] = {}
    for name in names:
        if name in refused:
            continue
        shared: dict[str, list[str]] = {}  # the earlier run: the files of this one that are its
        for f in kept.get(name, []):
            if f.ident not in maybe or _is_manifest(f.rel) or (real := _ident(f.path)) is None:
                continue
            first = owner.setdefault(real, name)
            if first != name:
                shared.setdefault(first, []).append(f.rel)
        if not shared:
            continue
        rels = {r for rs in shared.values() for r in rs}
        if pooled:
            _check_whole_steps(name, where[name], kept[name], rels, shared, layout, storage_options)
            own = [f for f in kept[name] if f.rel not in rels and not _is_manifest(f.rel)]
            out[name] = rels if own else None
        for first, rs in shared.items():
            folder = os.path.commonpath([os.path.dirname(r) or "." for r in rs]) or "."
            if not pooled:
                how = "each run's rows count them (as the run alone does)"
            elif out[name] is None:
                how = f"counted once, in {first}: this run has no file of its own, and no row in the pooled statistics"
            else:
                how = f"counted once, in {first} (its own files are read)"
            said.append(
                (
                    name,
                    folder,
                    WARNING,
                    f"{len(rs)} file(s) here are {first}'s too (the same files, through links): {how}",
                )
            )
    return out


def _several_runs(location: str, layout: str | None, storage_options: Mapping[str, str] | None) -> bool:
    """Whether ``location`` holds several runs side by side and is no run itself: opened, it is refused (a run
    with runs inside is read without them, and is a run of the fleet). Listed by name, only for the runs that
    may share files with another (rare)."""
    from ..errors import SeveralRunsError
    from ..run import list_names

    try:
        list_names(location, layout=layout, storage_options=storage_options, prefetch=False)
    except SeveralRunsError as exc:
        return "" not in exc.runs
    except (RunlogError, OSError):
        pass  # said when the run is read
    return False


def _check_whole_steps(
    name: str,
    location: str,
    files: Sequence[_File],
    shared: set[str],
    by_run: Mapping[str, list[str]],
    layout: str | None,
    storage_options: Mapping[str, str] | None,
) -> None:
    """Refuse pooled statistics where a run's rows of one split and step are partly in files another run shares
    and partly in files of its own: counting the shared ones once, in the other run, would cut that step's
    prompt groups in two, and no figure would be the one the table says. By the steps the rows are of, as
    discovery reads them (``tasks.file_steps``: a file named for one step whose rows are of another counts at
    its rows'), so the run is opened here (its footers; rare: local runs that share files through links); a
    file whose rows' steps are not known may hold rows of any step."""
    from ..run import open_run
    from .tasks import file_steps

    try:
        run = open_run(location, layout=layout, only=[f.rel for f in files], storage_options=storage_options)
    except (RunlogError, OSError):
        return  # (said when the run is read)
    held: dict[int | None, list[tuple[str | None, bool]]] = {}  # step: (split, shared) of the files with rows of it
    unknown = False  # a file whose rows' steps are not known
    kinds: set[bool] = set()
    for f in run.files:
        if f.kind != "samples" or not f.readable or f.rows == 0:
            continue
        kinds.add(f.path in shared)
        steps = file_steps(f)
        unknown = unknown or steps is None
        for step in steps or ():
            held.setdefault(step, []).append((f.split, f.path in shared))
    at = "its files whose rows' steps are not known" if unknown and len(kinds) > 1 else None
    for step in sorted(held, key=lambda s: (s is not None, s or 0)):
        if at is not None:
            break
        # A shared file and one of its own with rows of this step, of one split (None: of several, any).
        cut = [
            (a, b)
            for a, shared_a in held[step]
            for b, shared_b in held[step]
            if shared_a and not shared_b and (a is None or b is None or a == b)
        ]
        if cut:
            split = next((x for pair in cut for x in pair if x is not None), None)
            where = f"split {split}, " if split is not None else ""
            at = f"{where}step {step}" if step is not None else f"{where}its rows of no step"
    if at is None:
        return
    others = ", ".join(by_run)
    raise UsageError(
        f"{name} shares {len(shared)} file(s) with {others} (the same files, through links) and has files of its "
        f"own beside them ({at}): statistics pooled over the runs cannot count the shared files once without "
        "cutting that step's prompt groups in two: add --by run (each run whole), or leave one of the runs out"
    )


def plan_batches(units: Sequence[Unit], task_bytes: int = TASK_BYTES) -> list[list[Unit]]:
    """Consecutive units packed into batches of about 1/``BATCHES_PER_FLEET`` of the fleet's bytes (at most
    ``task_bytes``), so that a task's fixed cost is shared by several small runs."""
    total = sum(u.bytes for u in units)
    target = min(task_bytes, max(1, total // BATCHES_PER_FLEET))
    batches: list[list[Unit]] = []
    current: list[Unit] = []
    size = 0
    for u in units:
        if current and size + u.bytes > target:
            batches.append(current)
            current, size = [], 0
        current.append(u)
        size += u.bytes
    if current:
        batches.append(current)
    return batches


@dataclass
class FleetResult:
    frame: pl.DataFrame
    results: list[UnitResult]
    failures: list[tuple[str, str]]  # (location, reason) of runs that could not be listed or read
    notes: list[str]
    units: int
    batches: int
    locations: dict[str, str] = field(default_factory=dict)  # each run's name: its location
    said: list[Said] = field(default_factory=list)  # what planning and merging said of runs (``_plan``)

    def problems(self) -> list[tuple[str, str, str, str]]:
        """(run, path, kind, message) of every problem, each once (chunks of one run share manifests), then
        what the fleet said of its runs (a run inside another's folder, files or a run_id two runs share)."""
        seen: dict[tuple[str, str, str, str], None] = {}
        for r in sorted(self.results, key=lambda r: r.index):
            for p in r.problems:
                seen.setdefault((r.name, *p), None)
        for said in self.said:
            seen.setdefault(said, None)
        return list(seen)


def map_units(
    task: Task,
    units: list[Unit],
    engine: Engine | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[UnitResult], int]:
    """Run the task over every unit on ``engine``; results in plan order, and the number of batches."""
    engine = engine or LocalEngine()
    batches = plan_batches(units)
    results: list[UnitResult] = []
    done = 0
    for out in engine.map(run_batch, [(task, b) for b in batches]):
        results.extend(out)
        done += len(out)
        if progress is not None:
            progress(done, len(units))
    results.sort(key=lambda r: r.index)
    return results, len(batches)


def _stacked(
    task: Task,
    units: list[Unit],
    failures: list[tuple[str, str]],
    engine: Engine | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[pl.DataFrame, list[UnitResult], list[Unit], int]:
    """The task's frames of every unit, stacked in plan order, its results, the units read (chunks of a run
    whose rows of one step they cut read again as one: :func:`_rejoined`) and the number of batches; runs that
    fail are added to ``failures``; none read is a usage error."""
    results, nbatches = map_units(task, units, engine, progress)
    units, results, more = _rejoined(task, units, results, engine, progress)
    failures += [(r.name, r.error) for r in results if r.error]
    frames = [r.frame for r in results if r.frame is not None]
    if not frames:
        said = [why if why.startswith(f"{loc}: ") else f"{loc}: {why}" for loc, why in failures]  # named once
        raise UsageError("no run of the fleet could be read: " + "; ".join(said))
    return pl.concat(frames, how="diagonal_relaxed"), results, units, nbatches + more


def _rejoined(
    task: Task,
    units: list[Unit],
    results: list[UnitResult],
    engine: Engine | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[list[Unit], list[UnitResult], int]:
    """Chunks of a run read again as one where they hold rows of one step. Chunks are cut by the steps the
    files' names tell (:func:`_units_of`: nothing is opened to plan), and a file whose rows are of another step
    (a copy of step 20 saved as ``completions_00021``, a shard of step 2 written under step 3's name) puts
    rows of its step in a chunk beside that step's other files: the step's prompt groups would be cut in two
    (each part counted as a group in ``zero_adv_frac``) and its median lost. Each chunk's task tells the
    steps of its rows (``UnitResult.steps``, from what its discovery read); chunks that share a step are read
    again as one unit (with those that share one with them), and every chunk of a run with a file whose
    rows' steps are not known as one. Rare: runs over ``TASK_BYTES`` whose names tell a wrong step. Returns
    the units, the results, and the batches of the second round (0: none)."""
    told = {r.index: r for r in results}
    chunks: dict[str, list[Unit]] = {}
    for u in units:
        if u.parts > 1:
            chunks.setdefault(u.name, []).append(u)
    merged: dict[int, Unit] = {}  # the index of a group's first chunk: the unit that reads the group
    gone: set[int] = set()  # the other chunks of the groups
    for name, parts in chunks.items():
        said = [told[u.index] for u in parts]
        if any(r.error is not None for r in said):
            continue  # (a run with a chunk that fails is said so)
        groups = _step_groups([r.steps for r in said])
        if len(groups) == len(parts):
            continue
        for u in parts:
            u.parts = len(groups)
        for group in groups:
            if len(group) == 1:
                continue
            members = [parts[i] for i in group]
            files = list(dict.fromkeys(f for m in members for f in m.files or []))
            size = sum(m.bytes for m in members)
            merged[members[0].index] = Unit(members[0].index, name, members[0].location, files, size, len(groups))
            gone.update(m.index for m in members[1:])
    if not merged:
        return units, results, 0
    again = [merged[i] for i in sorted(merged)]
    done = len(units)
    counted = None if progress is None else (lambda d, t: progress(done + d, done + t))
    redone, nbatches = map_units(task, again, engine, counted)
    kept = [r for r in results if r.index not in merged and r.index not in gone]
    units = [merged.get(u.index, u) for u in units if u.index not in gone]
    return units, sorted(kept + redone, key=lambda r: r.index), nbatches


def _step_groups(steps: Sequence[Sequence[int | None] | None]) -> list[list[int]]:
    """The chunks (positions in ``steps``, each chunk's steps of rows) grouped so that no step's rows are in two
    groups: chunks that share a step together, with those that share one with them; all in one group where a
    chunk's steps are not known (None)."""
    if any(s is None for s in steps):
        return [list(range(len(steps)))]
    parent = list(range(len(steps)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    holder: dict[int | None, int] = {}
    for i, held in enumerate(steps):
        for step in held or ():
            parent[root(i)] = root(holder.setdefault(step, i))
    groups: dict[int, list[int]] = {}
    for i in range(len(steps)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def summarize_fleet(
    locations: Sequence[str],
    by: Sequence[str] = ("run", "role"),
    *,
    filters: Filters | None = None,
    layout: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    engine: Engine | None = None,
    progress: Callable[[int, int], None] | None = None,
    task_bytes: int = TASK_BYTES,
    prompt_groups: bool = False,
) -> FleetResult:
    """``summarize`` over many runs: one row per group of ``by`` (``run`` among the keys, or statistics pooled
    over runs), merged exactly from per-run partials."""
    from ..analysis.partials import combine_partials
    from ..analysis.summarize import KEYS, check_keys

    filters = filters or Filters()
    keys = check_keys(by, ["run", *KEYS])
    if filters.roles and "role" not in keys:
        keys.insert(1 if "run" in keys else 0, "role")
    if "group" in keys and "step" not in keys:  # a prompt group is one group id within a step (summary_keys)
        keys.insert(keys.index("group"), "step")
    # Train and eval are never pooled silently: split is a key unless --split picks splits; dropped again
    # below when the whole fleet has one split.
    auto_split = "split" not in keys and not filters.splits
    inner = [k for k in keys if k != "run"]
    if auto_split:
        inner.insert(0, "split")
    pooled = "run" not in keys
    plan = _plan(locations, layout, storage_options, True, task_bytes, pooled=pooled)
    units, failures = plan.units, plan.failures
    task = Task.of(SummarizeJob(prompt_groups=prompt_groups), inner, filters, layout, storage_options)
    partials, results, units, nbatches = _stacked(task, units, failures, engine, progress)
    if auto_split:
        partials = _auto_split(partials, keys)
    if not pooled and "rows" in partials.columns:
        # A run with no sample at the filters (scalars only, none at --split train) gives one partial of no row
        # where no key but ``run`` groups it: a row of count 0 that ``--by run --by role`` left out, and named in
        # its note (``fleet_opts.say_runs_without_rows``). Left out here too, so that both views name it alike.
        partials = partials.filter(pl.col("rows") > 0)
    frame, notes = combine_partials(partials, keys)
    notes = [_median_note(n, keys) for n in notes]
    if pooled:
        notes[:0] = _pooled_notes(results, partials)
        frame = _with_runs(frame, partials, keys)
    said = plan.said + _same_run_ids(results, plan.files, pooled)
    notes += _runs_notes(results)
    notes += _files_as_runs_notes(locations)
    notes += _rejoined_notes(plan.units, units)
    notes += layouts_notes(task, units, results, "summarize")
    return FleetResult(frame, results, failures, notes, len(units), nbatches, _where(locations), said)


def _rejoined_notes(planned: Sequence[Unit], units: Sequence[Unit]) -> list[str]:
    """A note naming the runs whose chunks were read again as fewer (:func:`_rejoined`): the batches counted
    include both reads."""
    first: dict[str, int] = {}
    for u in planned:
        first[u.name] = first.get(u.name, 0) + 1
    read: dict[str, int] = {}
    for u in units:
        read[u.name] = read.get(u.name, 0) + 1
    names = [name for name, n in first.items() if read.get(name, n) < n]
    if not names:
        return []
    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
    return [
        f"run(s) {shown}: chunks of steps read again as one, where a file's rows are of a step another chunk held "
        "(its name tells another step) or of steps not known, so that each step's prompt groups are read whole"
    ]


def _files_as_runs_notes(locations: Sequence[str]) -> list[str]:
    """A note for each folder of a native run's samples of which several files of one step are runs of the fleet
    (``'run/samples/train/*'`` matches one per file, ``step_00000003.p0.parquet`` beside ``.p1``): each file is
    read as a run of its own, so a prompt group whose samples several processes of a step hold counts as a group
    in each, in ``zero_adv_frac``, which that run's folder does not. Files of one step only: files of other
    steps, or of no native run (two dumps copied into one folder), cut no group."""
    if len(locations) < 2:
        return []
    from ..formats.native import SAMPLE_RE

    steps: dict[str, dict[int, int]] = {}
    for loc in locations:
        # A local path as given may lack its ``samples/<split>/`` part (``step_*`` typed in the split's folder).
        where = loc if "://" in loc else os.path.abspath(loc)
        found = SAMPLE_RE.search(where.rstrip("/").replace(os.sep, "/"))
        if found is not None and _is_file(loc):
            folder = os.path.dirname(loc.rstrip("/")) or "."
            of_folder = steps.setdefault(folder, {})
            of_folder[int(found["step"])] = of_folder.get(int(found["step"]), 0) + 1
    notes = []
    for folder, counts in steps.items():
        shared = [n for n in counts.values() if n > 1]
        if shared:
            how_many = f"{len(shared)} step" + ("s" if len(shared) > 1 else "")
            notes.append(
                f"{sum(shared)} runs are files of the same step of a run's samples ({how_many}), in {folder}, each "
                "read as a run of its own: a prompt group whose samples lie in several of them (one file per process "
                "of a step) counts as a group in each (zero_adv_frac), as it would not in its run; pass the run's "
                "folder to read each group whole"
            )
    return notes


def _median_note(note: str, keys: Sequence[str]) -> str:
    """``combine_partials``' note on medians left empty (``MEDIAN_NOTE``), asking only for keys not given: with
    ``run`` among them, a group is in several parts only where a run was read in chunks of its steps (``--by
    step`` keeps each group in one); with ``run`` and ``step``, in none (a step's rows are in one chunk:
    :func:`_rejoined`), so nothing is asked."""
    from ..analysis.partials import MEDIAN_NOTE

    if note != MEDIAN_NOTE:
        return note
    head = note.partition(";")[0]
    if "run" not in keys:
        return note if "step" not in keys else f"{head}; add --by run to get them"
    if "step" not in keys:
        return f"{head}: a run was read in several parts (chunks of its steps); add --by step to get them"
    return head


def _held(partials: pl.DataFrame) -> pl.DataFrame:
    """The partials that are rows of the table: per role where there are roles (the per-sample rows do not heed
    ``--role``), and only those of some sample (a run or split with none at the filters gives a partial of
    no row)."""
    held = partials.filter(pl.col("level") == "role") if "level" in partials.columns else partials
    return held.filter(pl.col("rows") > 0) if "rows" in held.columns else held


def _auto_split(partials: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``split`` added to ``keys`` where the rows of the table come from several splits (train and eval are
    never pooled silently), decided from the partials that hold rows: with ``--role verifier``, a run whose
    eval split has no verifier gives no row of eval, and the table is that of the one split, as the run that
    holds the verifier gives alone. The partials of no row's other splits (its per-sample rows) are left out
    then, as ``--split`` would leave them out."""
    held = _held(partials)["split"].drop_nulls().unique().to_list()
    if len(held) > 1:
        keys.insert(1 if "run" in keys else 0, "split")
    elif len(held) == 1 and partials["split"].drop_nulls().n_unique() > 1:
        partials = partials.filter(pl.col("split").is_null() | (pl.col("split") == held[0]))
    return partials


RUNS_COLUMN = "runs"


def _with_runs(frame: pl.DataFrame, partials: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Pooled statistics with ``runs`` after the keys: how many runs' rows each row pools (a role that one run
    of three has is pooled over that one, not "the 3 runs" the note counts)."""
    held = _held(partials)
    keys = list(keys)
    if not keys:
        n = held["run"].n_unique() if held.height else 0
        return frame.select(pl.lit(n, dtype=pl.UInt32).alias(RUNS_COLUMN), pl.all())
    counts = held.group_by(keys).agg(pl.col("run").n_unique().cast(pl.UInt32).alias(RUNS_COLUMN))
    out = frame.join(counts, on=keys, how="left", nulls_equal=True, maintain_order="left")
    out = out.with_columns(pl.col(RUNS_COLUMN).fill_null(0))
    return out.select(*keys, RUNS_COLUMN, pl.exclude(*keys, RUNS_COLUMN))


FINGERPRINT_BYTES = 64 << 10  # the bytes of each end of a local file compared for an identical copy


def _same_run_ids(results: Sequence[UnitResult], files: Mapping[str, list[_File]], pooled: bool) -> list[Said]:
    """A warning for each run whose manifest's run_id an earlier run of the fleet has: a copy (``exp-123.bak``,
    an ``aws s3 sync`` to a second prefix under the glob) counts its rows twice in pooled statistics. Two runs
    can share a templated run_id (two seeds of one config), so it is said, not refused; runs whose files are,
    file for file, the same names and sizes and the same bytes at both ends (or ETags), are an identical
    copy."""
    from ..formats.base import WARNING

    ids: dict[str, str] = {}
    for r in sorted(results, key=lambda r: r.index):
        if r.run_id is not None and r.error is None:
            ids.setdefault(r.name, r.run_id)
    first: dict[str, str] = {}
    out: list[Said] = []
    for name, rid in ids.items():
        earlier = first.setdefault(rid, name)
        if earlier == name:
            continue
        twice = "its rows are counted twice in the pooled statistics" if pooled else "each is a row of its own"
        if _identical(_in_run_folder(files.get(earlier, [])), _in_run_folder(files.get(name, []))):
            what = (
                f"an identical copy of run {earlier} (the same run_id {rid!r}; file for file the same names, sizes "
                "and bytes as far as compared)"
            )
            tail = f"{twice}: leave one out" if pooled else twice
        else:
            what = (
                f"the same run_id {rid!r} as run {earlier}: a copy of it? (two runs of one config, two seeds, can "
                "also share a templated run_id)"
            )
            tail = f"if a copy, {twice}" if pooled else twice
        out.append((name, _manifest_of(files.get(name, [])), WARNING, f"{what}: {tail}"))
    return out


def _manifest_of(files: Sequence[_File]) -> str:
    """The run's manifest, relative to the location given (``x/run.json`` where the glob matched ``g``, which
    discovery reads as its one run ``g/x``): the shallowest among the files listed (runs inside it are left
    out of them)."""
    from ..listing import MANIFEST

    manifests = sorted((f.rel.count("/"), f.rel) for f in files if _is_manifest(f.rel))
    return manifests[0][1] if manifests else MANIFEST


def _in_run_folder(files: Sequence[_File]) -> list[_File]:
    """``files`` named relative to the run's folder (the manifest's, ``_manifest_of``) rather than to the location
    given: a run matched through the folder that holds it (``g`` of ``g/x``) is file for file the same as the
    run it copies. Files outside that folder keep their names (they are no copy's)."""
    import dataclasses

    folder = _manifest_of(files).rpartition("/")[0]
    if not folder:
        return list(files)
    head = f"{folder}/"
    return [dataclasses.replace(f, rel=f.rel[len(head) :]) if f.rel.startswith(head) else f for f in files]


def _identical(a: Sequence[_File], b: Sequence[_File]) -> bool:
    """Whether two runs' files are the same names and sizes and, file for file, the same file, the same ETag
    (an object store's), or the same first and last ``FINGERPRINT_BYTES`` (a local file's)."""
    if not a or sorted((f.rel, f.size) for f in a) != sorted((f.rel, f.size) for f in b):
        return False
    theirs = {f.rel: f for f in b}
    return all(_mark(f) is not None and _mark(f) == _mark(theirs[f.rel]) for f in a)


def _mark(f: _File) -> Any:
    """What tells a file's bytes from another's of its size: an object's ETag, a local file's two ends."""
    import hashlib

    from ..storage import ObjectPath

    if isinstance(f.path, ObjectPath):
        return ("etag", f.stamp[1]) if isinstance(f.stamp, tuple) and len(f.stamp) == 3 and f.stamp[1] else None
    try:
        with open(f.path, "rb") as fh:
            head = fh.read(FINGERPRINT_BYTES)
            fh.seek(max(0, f.size - FINGERPRINT_BYTES))
            return ("bytes", hashlib.blake2b(head + fh.read(FINGERPRINT_BYTES), digest_size=16).digest())
    except OSError:
        return None


def _runs_notes(results: Sequence[UnitResult]) -> list[str]:
    """Each note of the runs' jobs once (``tasks.job_notes``: the ``--prompt-groups`` hint), naming the runs
    that gave it (a chunk of a run gives it again): one line for a fleet of many such runs, not one per run."""
    runs: dict[str, list[str]] = {}
    for r in sorted(results, key=lambda r: r.index):
        for n in r.notes:
            names = runs.setdefault(n, [])
            if r.name not in names:
                names.append(r.name)
    return [f"run(s) {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}: {n}" for n, names in runs.items()]


MAX_LAYOUTS_NOTES = 5  # runs whose pooled layouts are said each in full; the others are named in one line


def layouts_notes(task: Task, units: Sequence[Unit], results: Sequence[UnitResult], command: str) -> list[str]:
    """The note of each run whose samples are of several layouts or tasks, pooled as one run's (loose dumps side
    by side in a folder: ``views.layouts_note``), naming the run, as ``command`` on that run alone says it: a
    fleet's rows pooled them in silence. A run of one unit says it from its task (``UnitResult.layouts``); a run
    cut into chunks of steps, where its chunks' samples together are of several layouts or tasks
    (``UnitResult.sources``), is opened here with the files of its chunks (rare: a run over ``TASK_BYTES``). The
    first ``MAX_LAYOUTS_NOTES`` runs are said in full, the others named in one line."""
    by_run: dict[str, list[UnitResult]] = {}
    for r in sorted(results, key=lambda r: r.index):
        if r.error is None:
            by_run.setdefault(r.name, []).append(r)
    where = {u.name: u for u in units}
    files: dict[str, list[str]] = {}
    for u in units:
        files.setdefault(u.name, []).extend(u.files or [])
    said: list[tuple[str, str]] = []
    for name, parts in by_run.items():
        if len(parts) == 1 and where[name].parts == 1:
            said += [(name, n) for n in parts[0].layouts]
        elif _pools(r.sources for r in parts):
            frames = [r.frame for r in parts if r.frame is not None]
            frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
            said += [(name, n) for n in _chunked_layouts(task, where[name].location, files[name], frame)]
    out = [f"{name}: {note}" for name, note in said[:MAX_LAYOUTS_NOTES]]
    rest = list(dict.fromkeys(name for name, _ in said[MAX_LAYOUTS_NOTES:]))
    if rest:
        names = ", ".join(rest[:10]) + (" ..." if len(rest) > 10 else "")
        out.append(
            f"{len(rest)} more run(s) hold samples of several layouts or tasks, pooled as one run's: {names} "
            f"(`runlog {command} RUN` on one says which)"
        )
    return out


def _pools(sources: Iterable[Sequence[tuple[str, str | None]]]) -> bool:
    """Whether (layout, env) pairs of a run's chunks may pool layouts or tasks: several layouts, or a layout of
    several envs (the note's own rule decides, once the run is opened)."""
    envs: dict[str, set[str | None]] = {}
    for pairs in sources:
        for lay, env in pairs:
            envs.setdefault(lay, set()).add(env)
    return len(envs) > 1 or any(len(e) > 1 for e in envs.values())


def _chunked_layouts(task: Task, location: str, files: Sequence[str], frame: pl.DataFrame) -> list[str]:
    """``Job.layouts`` of a run cut into chunks, opened with its chunks' files (``frame``: their rows)."""
    from ..run import open_run

    try:
        only = list(dict.fromkeys(files))
        run = open_run(location, layout=task.layout, only=only, storage_options=task.storage_options)
        return task.job.layouts(run, task.keys, task.filters, frame)
    except (RunlogError, OSError):
        return []  # (the run's chunks were read: what fails here is said by them)


def _pooled_notes(results: Sequence[UnitResult], partials: pl.DataFrame) -> list[str]:
    """What statistics pooled over the runs were pooled over: the runs whose rows are in them, and the runs
    read that gave none (no readable sample, none at the filters), which ``--by run`` names as absent."""
    read = list(dict.fromkeys(r.name for r in results if r.error is None))
    # A partial of no key is one row however many samples it had (``rows`` counts them).
    held = _held(partials)
    with_rows = set(held["run"].unique().to_list()) if "run" in held.columns else set(read)
    absent = [name for name in read if name not in with_rows]
    runs = len(read) - len(absent)
    pooled = f"{runs} run{'' if runs == 1 else 's'}{' with rows' if absent else ''}"
    notes = [f"statistics pooled over the {pooled}: add --by run for one row per run"]
    if absent:
        notes.append(
            f"run(s) with no row, not in the pooled statistics: {', '.join(absent[:10])}"
            + (" ..." if len(absent) > 10 else "")
            + " (`runlog summarize RUN` on one says why: scalars only, no readable sample, none at the filters)"
        )
    return notes


def metrics_fleet(
    job: MetricJob,
    locations: Sequence[str],
    by: Sequence[str],
    *,
    filters: Filters | None = None,
    layout: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    engine: Engine | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FleetResult:
    """``metrics diversity|format`` (``job``: :class:`DiversityJob` or :class:`FormatJob`) per run (``--by
    run``): each run whole in one task, rows stacked."""
    filters = filters or Filters()
    keys = [k for k in by if k != "run"]
    # The same keys for every run: split is one whenever --split picks none, and is dropped again below when
    # the whole fleet has one split (grouping by a constant changes no value).
    auto_split = "split" not in keys and not filters.splits
    if auto_split:
        keys.insert(0, "split")
    plan = _plan(locations, layout, storage_options, False, TASK_BYTES, pooled=False)
    units, failures = plan.units, plan.failures
    task = Task.of(job, keys, filters, layout, storage_options)
    frame, results, units, nbatches = _stacked(task, units, failures, engine, progress)
    notes: list[str] = []
    if auto_split and "split" in frame.columns:
        splits = sorted(frame["split"].drop_nulls().unique().to_list())
        if len(splits) <= 1:
            frame = frame.drop("split")
        else:
            notes.append(fleet_split_note(splits, len(locations)))
    # Each run's notes (``tasks.job_notes``: texts in no prompt group, left out of the means), under its name.
    notes += list(dict.fromkeys(f"{r.name}: {n}" for r in sorted(results, key=lambda r: r.index) for n in r.notes))
    notes += layouts_notes(task, units, results, f"metrics {job.kind}")
    said = plan.said + _same_run_ids(results, plan.files, pooled=False)
    return FleetResult(frame, results, failures, notes, len(units), nbatches, _where(locations), said)


FLEET_SPLIT_NOTE = (
    "{who} the splits {splits}: `split` was added to the keys, train and eval are never pooled "
    "(use --split to pick one)"
)


def fleet_split_note(splits: Iterable[str], runs: int) -> str:
    """The note said when ``split`` was added to a fleet's keys; ``runs``: how many runs were asked for (one
    run with ``--by run`` is a fleet of one: "this run has", not "runs of this fleet have")."""
    who = "this run has" if runs == 1 else "runs of this fleet have"
    return FLEET_SPLIT_NOTE.format(who=who, splits=", ".join(splits))


def _where(locations: Sequence[str]) -> dict[str, str]:
    """Each run's name (``run_names``): its location, for what a command tells of one run."""
    return dict(zip(run_names(locations), locations, strict=True))


__all__ = [
    "FLEET_SPLIT_NOTE",
    "fleet_split_note",
    "DiversityJob",
    "FleetResult",
    "FormatJob",
    "Job",
    "Locations",
    "MetricJob",
    "RunsFile",
    "SummarizeJob",
    "Task",
    "Unit",
    "UnitResult",
    "distinct_runs",
    "expand_globs",
    "fleet_locations",
    "is_fleet",
    "metrics_fleet",
    "open_fleet_run",
    "plan_batches",
    "plan_units",
    "read_runs_file",
    "resolve_locations",
    "run_batch",
    "run_names",
    "same_run_note",
    "summarize_fleet",
]
