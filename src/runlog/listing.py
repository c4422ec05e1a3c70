"""Which files a run has: a local walk, an object-store listing, or a run given as one file (rooted at its
run folder), whether a path holds several runs, and what a glob matches (``glob_matches``: the runs of a
fleet; a command of one run given one says so, ``refuse_glob``). Names only: nothing is opened here but the
head of a file a layout sniffs (``choose_layout``)."""

from __future__ import annotations

import fnmatch
import glob
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from . import storage
from .errors import RunlogError, RunNotFoundError, SeveralRunsError, UsageError
from .formats import get_layout, layouts
from .formats.base import Candidate, Layout
from .storage import ObjectPath, local_stamp

MANIFEST = "run.json"  # the native layout's manifest: one per run
NATIVE = "runlog"  # the native layout, whose samples/ tree is at its run's root only
NESTED_RUN = "nested_run"  # the kind of problem of a layout's own tree below the run's folder (nested_trees)
# The layouts whose own tree sits at their run's root only, and its name there: a second such tree below the run's
# folder is another run's, or a copy (``nested_trees``).
ROOT_TREES = {NATIVE: "samples", "flink": "flink_logs"}


class Placement(Protocol):
    """Where a claimed file's run is: its layout's name and run folder (a ``Layout``, or one whose run folder the
    file's content told: ``run._Placed``)."""

    @property
    def name(self) -> str: ...

    def run_folder(self, folder: str) -> str: ...


DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".eval")
# A glob matches run folders, and single files of these kinds (a README beside the runs is not a run).
RUN_FILE_SUFFIXES = (".parquet", ".jsonl", ".csv")


def walk(
    root: Path,
    folders: list[tuple[str, tuple]] | None = None,
    issues: list[tuple[str, str, bool]] | None = None,
) -> list[tuple[Path, str, int, str, tuple | None]]:
    """(absolute path, run-relative posix path, size, path string, stamp) of every file below root, hidden
    folders skipped. ``folders``, when given, receives (run-relative path, stamp) of every folder listed: a
    folder's modification time changes when an entry is added or removed, even one gone again.

    Links are followed, but a folder or file is listed once: a link to a folder listed already (``sub -> .``,
    a loop) or to a file listed already would count its rows again. ``issues`` receives (run-relative path,
    message, is_error) for what is not listed: such links, broken links, folders that cannot be listed."""
    out: list[tuple[Path, str, int, str, tuple | None]] = []
    issues = issues if issues is not None else []
    seen: dict[tuple[int, int], str] = {}  # (device, inode) of each folder and file listed: its path
    try:
        st = os.stat(root)
        seen[(st.st_dev, st.st_ino)] = "."
    except OSError:
        pass
    # Links are followed after every real folder and file is listed, so that what is listed is the real path
    # (``latest -> samples/train`` must not list train's files under ``latest``, where no layout knows them).
    link_folders: list[tuple[str, str]] = []
    link_files: list[tuple[str, str, os.stat_result]] = []

    def scan(path: str, rel: str) -> None:
        stack = [(path, rel)]
        while stack:
            path, rel = stack.pop()
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name)
                if folders is not None:
                    folders.append((rel, local_stamp(os.stat(path))))
            except OSError as exc:
                said = f"cannot list this folder ({_reason(exc)}): its files are not read"
                issues.append((rel.rstrip("/") or ".", said, True))
                continue
            if not entries and rel and rel.rstrip("/").endswith(DATA_SUFFIXES):
                issues.append((rel.rstrip("/"), "an empty folder named like a data file: nothing to read", False))
            for e in entries:
                erel = f"{rel}{e.name}"
                try:
                    if e.is_dir(follow_symlinks=True):
                        if e.name.startswith(".") or e.name in ("__pycache__", "lost+found"):
                            continue
                        if e.is_symlink():
                            link_folders.append((e.path, erel))
                            continue
                        st = e.stat()
                        if not _first(seen, st, erel, issues):
                            continue
                        stack.append((e.path, erel + "/"))
                    elif e.is_file(follow_symlinks=True):
                        st = e.stat()
                        if e.is_symlink():
                            link_files.append((e.path, erel, st))
                        elif _first(seen, st, erel, issues):
                            out.append((Path(e.path), erel, st.st_size, e.path, local_stamp(st)))
                    elif e.is_symlink() or not e.name.startswith("."):
                        # Neither a folder nor a regular file: a broken link, or a named pipe, socket or device
                        # (never opened: reading a pipe waits for a writer). Named, as every file not read is.
                        data = e.name.endswith(DATA_SUFFIXES)
                        issues.append((erel, f"{_not_regular(e.path)}: not read", data))
                except OSError as exc:
                    said = f"cannot read ({_reason(exc)}): not read"
                    issues.append((erel, said, e.name.endswith(DATA_SUFFIXES)))

    scan(str(root), "")
    while link_folders:
        link_folders.sort(reverse=True)
        path, rel = link_folders.pop()
        try:
            st = os.stat(path)
        except OSError as exc:
            issues.append((rel, f"cannot read ({_reason(exc)}): not read", False))
            continue
        if _first(seen, st, rel, issues):
            scan(path, rel + "/")
    for path, rel, st in sorted(link_files, key=lambda t: t[1]):
        if _first(seen, st, rel, issues):
            out.append((Path(path), rel, st.st_size, path, local_stamp(st)))
    # Manifests first: readers of other files in the same run may depend on them.
    out.sort(key=lambda t: (not (t[1] == MANIFEST or t[1].endswith(f"/{MANIFEST}")), t[1]))
    return out


def _first(seen: dict[tuple[int, int], str], st: os.stat_result, rel: str, issues: list[tuple[str, str, bool]]) -> bool:
    """Whether the folder or file ``st`` is met here first (else it is said, and not listed again)."""
    first = seen.setdefault((st.st_dev, st.st_ino), rel)
    if first == rel:
        return True
    if stat.S_ISDIR(st.st_mode):
        issues.append(
            (rel, f"a link to the folder {first}, listed already: not followed (its files count once)", False)
        )
    else:
        issues.append((rel, f"a link to {first}, listed already: read once", False))
    return False


def _not_regular(path: str) -> str:
    """What an entry that is neither a folder nor a regular file is, in a few words (``stat`` only)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken or looping symbolic link"
    kind = (
        "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a special file"
    )
    return f"{kind}, not a regular file"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def list_files(
    path: str | os.PathLike[str] | ObjectPath,
    storage_options: Mapping[str, str] | None = None,
    prefetch: bool = True,
    layout: str | None = None,
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]]]:
    """(root, files) of a run: a local directory or file, or an object-store URL (``runlog.storage``). Each
    file is (path, run-relative path, size, path string, stamp: what changes when the file is rewritten).
    A run given as one file is rooted at its run folder (``one_file``)."""
    root, entries, _ = listing(path, storage_options, prefetch, layout)
    return root, entries


def listing(
    path: str | os.PathLike[str] | ObjectPath,
    storage_options: Mapping[str, str] | None,
    prefetch: bool,
    layout: str | None,
    issues: list[tuple[str, str, bool]] | None = None,
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]], bool]:
    """``list_files``, and whether the path named one file (``issues``: as :func:`walk`'s)."""
    if storage.is_url(path):
        root = storage.location(path, storage_options)
        try:
            entries = storage.list_run(root, issues)
        except RunNotFoundError:
            refuse_glob(str(path), storage_options)
            raise
        if prefetch:
            # JSONL, JSON and CSV files are read whole by discovery anyway: fetch them all at once.
            storage.prefetch_small(entries)
        if len(entries) == 1 and entries[0][0] == root:
            abspath, _, size, path_str, stamp = entries[0]
            return one_file(path, ObjectPath(root.store, ""), abspath, root.key, size, path_str, stamp, layout)
        return root, entries, False
    assert not isinstance(path, ObjectPath)  # an object-store path: is_url above
    p = Path(path).expanduser()
    if not p.exists():
        refuse_glob(str(path), storage_options)
        raise RunNotFoundError(f"{path}: no such file or directory")
    if p.is_file():
        try:
            st = p.stat()
        except OSError as exc:
            raise RunNotFoundError(f"{path}: cannot read ({exc.strerror or exc})") from None
        full = p.absolute()
        top = Path(full.anchor)
        root, entries, _ = one_file(
            path, top, full, full.relative_to(top).as_posix(), st.st_size, str(p), local_stamp(st), layout
        )
        depth = entries[0][1].count("/")
        # The run folder as the user wrote the path (relative stays relative), where the path reaches that far.
        return (p.parents[depth] if depth < len(p.parents) else root), entries, True
    if p.is_dir():
        return p, walk(p, issues=issues), False
    raise RunNotFoundError(f"{path}: not a regular file or directory")


def _has_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def is_pattern(location: str, storage_options: Mapping[str, str] | None = None) -> bool:
    """A glob to expand: wildcards, and no file or folder of that very name (``run[1]`` is a run), on disk or
    in an object store (``s3://b/exp[1]``, where ``exp[1]/`` holds objects: asked of the store)."""
    if not _has_magic(location):
        return False
    if storage.is_url(location):
        return not storage.names_something(location, storage_options)
    return not os.path.exists(os.path.expanduser(location))


def glob_matches(pattern: str, storage_options: Mapping[str, str] | None = None) -> list[str]:
    """What a glob matches, sorted: run folders, and single files of a run's kinds (``RUN_FILE_SUFFIXES``),
    on disk or in an object store (``s3://b/runs/*``), none hidden; ``[]`` when nothing matches."""
    if storage.is_url(pattern):
        return _remote_glob(pattern, storage_options)
    return sorted(
        p
        for p in glob.glob(_literal_prefix(os.path.expanduser(pattern)))
        if not os.path.basename(p).startswith(".")
        and (os.path.isdir(p) or os.path.splitext(p)[1].lower() in RUN_FILE_SUFFIXES)
    )


def _literal_prefix(pattern: str) -> str:
    """``pattern`` with its longest leading folders that exist as named escaped: ``runs/exp[1]/*`` globs the
    folders of ``runs/exp[1]``, a folder whose name only looks like a pattern."""
    parts = pattern.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        head = os.sep.join(parts[:i])
        if head and _has_magic(head) and os.path.isdir(head):
            return os.sep.join([glob.escape(head), *parts[i:]])
    return pattern


GLOB_THREADS = 16  # listings in flight at once for a glob's segment after a wildcard (as a fleet lists its runs)


def _remote_glob(pattern: str, options: Mapping[str, str] | None) -> list[str]:
    """What a pattern whose wildcards sit in whole path segments matches in an object store, as a local glob
    matches on disk: folders, and in its last segment also single objects of the kinds a run can be
    (``RUN_FILE_SUFFIXES``: ``s3://b/run/samples/train/*`` is a run per step file). Segments are listed level
    by level (one request per 1,000 entries), from the last folder before a wildcard; a segment after a
    wildcard, wildcards or not, matches only what is there. A wildcard does not match a leading ``.`` (hidden
    folders and files), and nothing hidden is a match, as on disk."""
    scheme, _, rest = pattern.partition("://")
    bucket, _, key = rest.partition("/")
    store = storage.Store.for_url(pattern, options)
    segments = [s for s in key.split("/") if s]
    prefixes = [""]
    listed = False  # a segment was matched against a listing: what follows must be listed too
    for i, seg in enumerate(segments):
        if not listed and not _has_magic(seg):
            prefixes = [f"{p}/{seg}" if p else seg for p in prefixes]
            continue
        last = i == len(segments) - 1
        if not listed and not last:
            # A folder named like a pattern (``exp[1]`` in ``s3://b/exp[1]/*``) is that folder, as on disk
            # (``_literal_prefix``): its own name wins over what its wildcards would match.
            here = f"{prefixes[0]}/{seg}" if prefixes[0] else seg
            if here in store.list_level(prefixes[0])[0]:
                prefixes = [here]
                continue
        listed = True
        nxt: list[str] = []
        if len(prefixes) > 1:  # one request per prefix, many in flight (300 matches listed one by one: 2 s)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(GLOB_THREADS, len(prefixes))) as pool:
                levels = list(pool.map(store.list_level, prefixes))
        else:
            levels = [store.list_level(p) for p in prefixes]
        for dirs, objects in levels:
            names = (dirs + [o for o in objects if o.lower().endswith(RUN_FILE_SUFFIXES)]) if last else dirs
            if last:  # an empty folder's marker (``grpo-empty/``, listed as ``grpo-empty``): a folder, as on disk
                names += [o for o in objects if o not in names and _is_marker(store, o, seg)]
            for found in names:
                name = found.rsplit("/", 1)[-1]
                hidden = name.startswith(".") and (last or not seg.startswith("."))
                if not hidden and fnmatch.fnmatchcase(name, seg):
                    nxt.append(found)
        prefixes = nxt
    return sorted(f"{scheme}://{bucket}/{p}" for p in prefixes)


def _is_marker(store: Any, key: str, seg: str) -> bool:
    """Whether an object the glob's last segment matches, of no run file's kind and no suffix, is a folder's
    zero-byte marker object (``storage.folder_markers``): an empty folder, which a local glob matches (and the
    fleet reports as a run with no files). Asked of the store only for such names (rare)."""
    name = key.rsplit("/", 1)[-1]
    if "." in name or not fnmatch.fnmatchcase(name, seg):
        return False
    meta = store.head(key)
    return meta is not None and meta.size == 0


class GlobGivenError(RunNotFoundError):
    """A glob (``'runs/*'``) given where one run is read: the path does not exist, and the glob matches
    ``matches``. Only ``summarize``, ``metrics`` and ``diff`` expand globs; a command of one run says that it
    takes one (``said``), rather than that the path does not exist."""

    def __init__(self, pattern: str, matches: list[str]):
        self.pattern = pattern
        self.matches = matches
        super().__init__(self.said(None))

    def said(self, command: str | None) -> str:
        """The message, naming the command that takes one run (``runlog inspect``) when it is known."""
        who = f"{command} takes one run" if command else "one run is read here"
        n = len(self.matches)
        shown = ", ".join(self.matches[:5]) + (f", ... (+{n - 5})" if n > 5 else "")
        which = f"matches {n} ({shown}): pass one of them" if n > 1 else f"matches one ({shown}): pass it"
        takes = "(summarize, metrics, diff and plot --diff take globs)"
        return f"{who}, not a glob: {shlex.quote(self.pattern)} {which} {takes}"


def refuse_glob(path: str, storage_options: Mapping[str, str] | None = None) -> None:
    """Raise :class:`GlobGivenError` when ``path``, which names no file or folder, is a glob that matches
    something (the command reads one run; a quoted ``'runs/*'`` reached it unexpanded). A path with
    wildcards that names a file or folder (``run[1]``) is that one; a glob that matches nothing is left to
    say that the path does not exist."""
    try:
        if not is_pattern(path, storage_options):
            return
        matches = glob_matches(path, storage_options)
    except (RunlogError, OSError):
        return  # the path is reported as not found
    if matches:
        raise GlobGivenError(path, matches)


def one_file(
    path: Any, top: Any, abspath: Any, full: str, size: int, path_str: str, stamp: tuple | None, layout: str | None
) -> tuple[Any, list[tuple[Any, str, int, str, tuple | None]], bool]:
    """A run given as one file: rooted at the folder its layout would have as the run's (``Layout.run_folder``:
    ``RUN`` for ``RUN/samples/train/step_8.p0.parquet``), so that its run-relative path, which may tell
    split and step, reads as it would in that folder. ``full`` is its path below ``top`` (``/``, a bucket)."""
    if abspath.name == MANIFEST:
        raise UsageError(f"{path}: {MANIFEST} is a manifest, not a run: pass its folder")
    cand = Candidate(top, abspath, size, full, path_str, stamp)
    chosen = choose_layout(cand, get_layout(layout) if layout else None, layouts())
    folder = full.rpartition("/")[0]
    if chosen is not None:
        folder = chosen.run_folder(folder)
    rel = full[len(folder) + 1 :] if folder else full
    return (top / folder if folder else top), [(abspath, rel, size, path_str, stamp)], True


def run_folders(claimed: Sequence[tuple[str, Placement]]) -> list[str]:
    """The run folders of a listing, sorted, from the paths of the files a layout claimed (nothing is read):
    one (``""``: the listed folder itself, ``"x/y"``: a run below it) where the listing is one run, two or
    more where it holds several (:func:`one_run` refuses those), none where no file was claimed.

    Each file belongs to the run folder its layout puts it in (``Layout.run_folder``). A folder below another
    one is part of that run (its own sub-folders: ``flink_logs/`` beside ``samples/``, verl's validation
    dumps), unless it holds a manifest of its own."""
    where_files = {(lay, rel.rpartition("/")[0]) for rel, lay in claimed}
    folders = {lay.run_folder(folder) for lay, folder in where_files}
    if len(folders) < 2:
        return sorted(folders)
    manifests = {rel.rpartition("/")[0] for rel, _ in claimed if rel.rpartition("/")[2] == MANIFEST}

    def inside_another(f: str) -> bool:
        parts = f.split("/") if f else []
        return any("/".join(parts[:i]) in folders for i in range(len(parts)))

    return sorted(f for f in folders if f in manifests or not inside_another(f))


def one_run(path: Any, claimed: Sequence[tuple[str, Placement]]) -> None:
    """Refuse a path that holds several runs, from the paths of the files a layout claimed (nothing is read).

    Each file belongs to the run folder its layout puts it in (``Layout.run_folder``). A folder below another
    one is part of that run (its own sub-folders: ``flink_logs/`` beside ``samples/``, verl's validation
    dumps), unless it holds a manifest of its own. Two or more folders left are several runs: their numbers
    must not be added up (docs/format.md, "One run, or several")."""
    runs = run_folders(claimed)
    if len(runs) < 2:
        return
    where = str(path).rstrip("/") or str(path)
    shown = [r or "." for r in runs]
    names = ", ".join(shown[:8]) + (f", ... (+{len(shown) - 8})" if len(shown) > 8 else "")
    depths = {r.count("/") + 1 for r in runs}
    if "" in runs:
        # The path is a run itself: no PATH names it without the runs inside, but a fleet reads it so.
        inner = ", ".join(f"{where}/{r}" for r in runs if r)
        hint = (
            f"it is a run itself, with the run(s) {', '.join(r for r in runs if r)} in a sub-folder: `runlog "
            "summarize|metrics "
            f"{shlex.quote(where)} --by run` reads each as a run of its own (this one without {inner}); for other "
            f"commands move {inner} out of {where}"
        )
    elif len(depths) != 1:
        hint = "pass each run's folder (or file) as its own PATH; several PATHs make a fleet (summarize, metrics)"
    else:
        hint = f"pass one, or '{where}{'/*' * depths.pop()}' --by run for a fleet (summarize, metrics)"
    raise SeveralRunsError(f"{where}: holds {len(runs)} runs ({names}): {hint}", runs)


def nested_trees(claimed: Sequence[tuple[str, Placement]]) -> list[str]:
    """The trees (``other_exp/samples``, ``other_exp/flink_logs``) below the run's own folder of a layout whose
    tree sits at its run's root only (``ROOT_TREES``: native ``samples/``, Flink's ``flink_logs/``), in a folder
    without a manifest of its own, from the paths of the files a layout claimed (``one_run`` has passed: one run).
    Such a tree is another run's, or a copy (``backup/samples``), that the folder rule counts into this run
    (docs/format.md, "One run, or several"): discovery says so, as an error, not a warning per file (which says
    nothing when the steps do not overlap: another experiment's ``flink_logs/`` of later steps was pooled without
    a word). Other layouts' own folders (TRL's ``completions/``, verl's validation dumps) are part of the run
    wherever they sit.

    A ``samples/`` tree is nested below any other file of the run (a native run's files sit around its root's
    ``samples/``). A ``flink_logs/`` tree is nested only below the run's own Flink tree: where another
    ``flink_logs/`` of the run sits no deeper (``flink_logs/`` and ``other_exp/flink_logs/``; two experiments'
    ``a/flink_logs/`` and ``b/flink_logs/`` pooled by a file beside them, both). A Flink output folder keeps other
    loggers' files around its one ``flink_logs/`` (``stats.jsonl`` at the top, ``outputs/flink_logs/``): one run."""
    folders = {lay.run_folder(rel.rpartition("/")[0]) for rel, lay in claimed}
    manifests = {rel.rpartition("/")[0] for rel, _ in claimed if rel.rpartition("/")[2] == MANIFEST}
    roots: dict[str, set[str]] = {}  # per tree's name, the folders that hold one
    for rel, lay in claimed:
        folder = rel.rpartition("/")[0]
        root = lay.run_folder(folder)
        tree = ROOT_TREES.get(lay.name)
        if tree is not None and root != folder:
            roots.setdefault(tree, set()).add(root)

    def depth(f: str) -> int:
        return f.count("/") + 1 if f else 0

    def nested(root: str, tree: str) -> bool:
        if not root or root in manifests:
            return False
        if tree != ROOT_TREES[NATIVE]:
            return any(r != root and depth(r) <= depth(root) for r in roots[tree])
        parts = root.split("/")
        return any("/".join(parts[:i]) in folders for i in range(len(parts)))

    return sorted(f"{root}/{tree}" for tree, found in roots.items() for root in found if nested(root, tree))


def choose_layout(cand: Candidate, forced: Layout | None, registry: list[Layout]) -> Layout | None:
    if forced is not None:
        return forced if (not forced.formats or cand.suffix in forced.formats) else None
    for lay in registry:
        try:
            if lay.detect(cand):
                return lay
        except Exception:  # noqa: BLE001,S112  (a sniffing failure just means "not mine")
            continue
    return None
