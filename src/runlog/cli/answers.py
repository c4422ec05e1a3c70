"""Answers kept for the same question asked again of an unchanged run.

``runlog summarize RUN --by role`` asked a second time of a run in which no file changed prints what it
printed the first time, byte for byte, with the same exit code, without reading the run: a command that
finds its answer here costs the start of the command line and one listing of the run folder, whatever the
run's size. Anything else is answered as before (from the partials of ``analysis.partial_cache``).

An answer is used only when all of this is as it was when it was printed:

* the question: the command and every option as parsed, the working folder;
* the run: its listing as the run itself reads it (``listing.walk``: every file's run-relative path, size,
  modification and change times, inode, through symbolic links); a file added, removed or rewritten, even
  to the same size, makes the answer stale;
* the code: every source file of runlog (size, modification time), its version, Python's, and the files of
  the libraries that shape the numbers and their printing (polars, pyarrow, numpy, rich, typer);
* the output: whether stdout and stderr are terminals, the terminal's size, and the environment variables
  that steer runlog, polars or colours (``RUNLOG_*``, ``POLARS_*``, ``TERM``, ``NO_COLOR``, ...).

Neither kept nor looked up (a live run is always read): an answer asked while a file of the run was modified in
the last ``RACY_SECONDS`` (a writer may be at work; ``probe_cache.is_racy``, which on whole-second times counts
the change time too), while a live writer's temporary file is in it (``run.in_flight``: killed, that writer
leaves it as it was, a leftover the answer would not say), while any writer holds its lock on the run
(``locks.held_now``: a process behind the others with its writer open is still writing; killed, it is said to
have stopped behind them, and no file changes), or while a writer's state file is younger than
``ends.END_GRACE_S`` (a process behind the others is said to have stopped only once they closed that long
ago). Not kept either: an answer whose runs are not listed the same after the work as before it (a
file that came and went while the command read: its folder's modification time tells); an answer with a line
about a cache's own trouble (a corrupt partials index: said once, then rebuilt) or with a file that could not be
read (its rows, a JSONL or manifest file, a probe that failed on an I/O error: it may read next time; a Parquet
footer that cannot be read is kept as the probe cache keeps it); exit codes other than 0 and 1; binary output;
output written to a file (``-o``); answers over ``MAX_CHARS``; runs on an object store, given as one file, or
several as a fleet; ``POLARS_VERBOSE`` (polars then writes to stderr itself). Files a command reads besides its
runs (a format spec, an aliases file) are part of the question, by their stamps. At most ``KEEP`` answers are
kept, the least recently used go first.

Whoever can write the cache folder can set what these commands print: keep it yours (the default,
``~/.cache/runlog``, is).

They live in ``answers/`` of the cache folder (``runlog.probe_cache.cache_dir``), as JSON, written
atomically. ``--no-cache`` and ``RUNLOG_CACHE=off`` turn them off with the other caches; ``RUNLOG_ANSWERS=off``
alone. Any trouble with them (a corrupt entry, a read-only disk) just means the question is answered afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import typer

FORMAT = 1  # bump when an entry's layout changes
SWITCH_VAR = "RUNLOG_ANSWERS"
KEEP = 256  # answers kept, all runs together
MAX_CHARS = 8 << 20  # stdout and stderr of one answer, at most
STALE_TMP_S = 3600  # a temporary file of a write that never finished, deleted by ``trim`` after this
# Environment variables that change what a command prints, besides RUNLOG_* and POLARS_* (all kept).
OUTPUT_VARS = (
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "COLUMNS",
    "LINES",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
    "PYTHONIOENCODING",
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
)
# Packages whose files are stamped (polars 2 keeps its compiled engine in a package of its own).
LIBRARIES = (
    "polars",
    "_polars_runtime_32",
    "_polars_runtime_64",
    "_polars_runtime_compat",
    "pyarrow",
    "numpy",
    "rich",
    "typer",
    "click",
)


def folder() -> Path | None:
    """Where answers are kept, or None when they are turned off."""
    from ..probe_cache import OFF, cache_dir

    if os.environ.get(SWITCH_VAR, "").strip().lower() in OFF:
        return None
    base = cache_dir()
    return None if base is None else base / "answers"


def _plain(value: Any) -> Any:
    """``value`` (a parsed option) as JSON can hold it."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def code_stamp() -> str:
    """runlog's source files (sizes, modification times), version, Python, and the libraries' packages."""
    import importlib.util

    from .. import __version__

    digest = hashlib.sha256(f"{FORMAT}|{__version__}|{sys.version}|{sys.executable}".encode())
    package = Path(__file__).resolve().parent.parent
    stack = [str(package)]
    while stack:
        here = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir() and e.name != "__pycache__":
                stack.append(e.path)
            elif e.name.endswith(".py"):
                digest.update(f"{e.path}|{_stat_key(e.path)}\n".encode("utf-8", "surrogatepass"))
    for name in LIBRARIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        digest.update(f"{name}|{origin}|{_stat_key(origin) if origin else None}\n".encode())
    return digest.hexdigest()


def output_stamp() -> dict[str, Any]:
    """What shapes the printed form of an answer: whether stdout and stderr are terminals, the size of every
    terminal among stdin, stdout and stderr (Rich folds to the first it finds, also for a pipe it is told to
    treat as a terminal), the environment's settings, Python's warning options."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("RUNLOG_", "POLARS_")) or k in OUTPUT_VARS}
    env.pop(SWITCH_VAR, None)
    env.pop("POLARS_CLOUD_FOOTER_READ_SIZE", None)  # how much of a footer a scan reads (runlog sets it itself)
    ttys = []
    for stream in (sys.stdout, sys.stderr):
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            tty = False
        ttys.append([tty, getattr(stream, "encoding", None)])
    sizes: list[list[int] | None] = []
    for fd in (0, 1, 2):
        try:
            sizes.append(list(os.get_terminal_size(fd)))
        except (ValueError, OSError):
            sizes.append(None)
    warnings = [list(sys.warnoptions), bool(sys.flags.dev_mode)]
    return {"env": sorted(env.items()), "streams": ttys, "sizes": sizes, "warnings": warnings}


def input_stamp(paths: list[Path]) -> list[Any]:
    """Files a question reads besides its runs (a format spec, an aliases file): each one's stamp."""
    out: list[Any] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        except OSError:
            out.append([str(p), None])
    return out


def run_listing(root: Path) -> tuple[str, bool]:
    """(a digest of the run's listing: its files' stamps and its folders' (which change when an entry is
    added or removed, even one gone again), whether a file in it changed too recently to keep an answer, as
    for the probe cache's entries: ``probe_cache.is_racy``, or is a temporary file a live writer is writing:
    ``run.in_flight``).

    An in-flight temporary file is no leftover (the answer says nothing of it), but once its writer is killed
    it is one (a warning), and nothing in the listing changes: the lock goes with the process, the file stays
    as it was. An answer kept then would be served, without the warning, for ever. So too any writer whose lock
    is held now (``locks.held_now``): a process behind the others with its writer open is still writing, not
    killed; killed, it is (a warning), and again nothing in the listing changes. And a writer's state file
    written in the last ``ends.END_GRACE_S`` (a process killed behind the others is said so only after it)."""
    import time

    from ..ends import END_GRACE_S, STATE_RE
    from ..listing import walk
    from ..probe_cache import is_racy
    from ..run import in_flight

    now = time.time()

    folders: list[tuple[str, tuple]] = []
    lines, racy = [], False
    live: dict[int, bool] = {}  # whether each process's writer holds its lock (asked once)
    for _, rel, _, _, stamp in walk(root, folders):
        if stamp is None:  # pragma: no cover  (local files always have one)
            lines.append(f"{rel}|?")
            continue
        size, mtime, ctime, inode = stamp
        lines.append(f"{rel}|{size}|{mtime}|{ctime}|{inode}")
        racy = racy or is_racy(stamp)  # by its ctime too on a file system of whole seconds, as the caches
        racy = racy or in_flight(root, rel, live)
        racy = racy or _writer_open(root, rel, live)
        # A writer's state file written in the last ``END_GRACE_S``: a process behind the others is said to have
        # stopped (a warning) only that long after they closed; an answer kept before would be served without it.
        racy = racy or ("/" not in rel and STATE_RE.match(rel) is not None and now - mtime / 1e9 < END_GRACE_S)
    lines.extend(f"{rel}/|{stamp[1]}|{stamp[2]}|{stamp[3]}" for rel, stamp in folders)
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest(), racy


_LOCK_RE = re.compile(r"^\.writer\.p(\d+)\.lock$")  # ``locks.LOCK_FILE``, in the run's own folder


def _writer_open(root: Path, rel: str, live: dict[int, bool]) -> bool:
    """Whether ``rel`` is a writer's lock file (``locks.LOCK_FILE``) that its process holds now: that writer is
    open, and what the run says of it (behind the others: still writing, or killed?) changes when it closes or
    is killed, the latter without a file changing. Asked once per process (``live``, shared with
    ``run.in_flight``)."""
    m = _LOCK_RE.match(rel)
    if m is None:
        return False
    process = int(m[1])
    if process not in live:
        from ..locks import held_now

        live[process] = held_now(root, process)
    return live[process]


class _Tee:
    """A text stream that passes everything to ``inner`` and records it in ``chunks``, shared by stdout's and
    stderr's: ``[stream, text]`` for what was written, ``[stream, None]`` for a flush. A replay makes the same
    writes and flushes in the same order, so that the two streams interleave as they did (in one pipe, say,
    where stdout is block-buffered). ``broken`` once a write failed (a closed pipe: what was printed is not
    the whole answer) or binary output was asked for."""

    def __init__(self, inner: TextIO, stream: int, chunks: list[list[Any]], size: list[int]) -> None:
        self.inner = inner
        self.stream = stream
        self.chunks = chunks
        self.size = size  # characters written to both streams, shared
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:  # not kept any more: nothing more to record
            return self.inner.write(text)
        self.size[0] += len(text)
        if self.size[0] > MAX_CHARS:
            self.broken = True
            self.chunks.clear()
            return self.inner.write(text)
        last = self.chunks[-1] if self.chunks else None
        if last is not None and last[0] == self.stream and last[1] is not None:
            last[1] += text
        else:
            self.chunks.append([self.stream, text])
        try:
            return self.inner.write(text)
        except BaseException:
            self.broken = True
            raise

    def flush(self) -> None:
        if not self.chunks or self.chunks[-1] != [self.stream, None]:
            self.chunks.append([self.stream, None])
        try:
            self.inner.flush()
        except BaseException:
            self.broken = True
            raise

    @property
    def buffer(self) -> Any:
        self.broken = True  # binary output is not kept
        return self.inner.buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Question:
    """One command asked of local run folders, as ``answer`` keys it."""

    def __init__(
        self,
        command: str,
        params: Mapping[str, Any],
        locations: list[Any],
        roots: list[Path],
        where: Path,
        inputs: list[Path],
    ) -> None:
        self.locations = locations
        self.roots = roots
        self.where = where
        key = {
            "command": command,
            "params": _plain(dict(params)),
            "roots": [str(r) for r in roots],
            "cwd": os.getcwd(),
            "code": code_stamp(),
            "output": output_stamp(),
            "inputs": input_stamp(inputs),
        }
        self.key = json.dumps(key, sort_keys=True, default=repr)
        self.path = where / (hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".json")

    def listing(self) -> tuple[list[str], bool]:
        """The digest of each run's listing, and whether a file of one was modified too recently to keep an
        answer; the locations resolved again (a symbolic link re-pointed, a folder swapped) count too."""
        digests, racy = [], False
        for loc, root in zip(self.locations, self.roots, strict=True):
            if local_folder(loc) != root:
                return ["moved"], True
            d, r = run_listing(root)
            digests.append(d)
            racy = racy or r
        return digests, racy

    def lookup(self, listing: list[str]) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != self.key or entry.get("listing") != listing:
            return None
        chunks = entry.get("output")
        if not isinstance(chunks, list) or not all(
            isinstance(c, list) and len(c) == 2 and c[0] in (1, 2) and (c[1] is None or isinstance(c[1], str))
            for c in chunks
        ):
            return None
        if type(entry.get("code")) is not int or entry["code"] not in (0, 1):
            return None
        with contextlib.suppress(OSError):
            os.utime(self.path)  # recently used: kept longest
        return entry

    def store(self, listing: list[str], output: list[list[Any]], code: int) -> None:
        from ..probe_cache import atomic_write

        entry = {"key": self.key, "listing": listing, "output": output, "code": code}
        data = json.dumps(entry, ensure_ascii=False).encode("utf-8", "surrogatepass")
        try:
            self.where.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda fh: fh.write(data))
            trim(self.where)
        except OSError:
            return


def trim(where: Path, keep: int = KEEP) -> None:
    """Delete the least recently used answers beyond ``keep``, and temporary files of writes that never
    finished (older than ``STALE_TMP_S``)."""
    entries = []
    stale = time.time_ns() - int(STALE_TMP_S * 1e9)
    with contextlib.suppress(OSError):
        for e in os.scandir(where):
            with contextlib.suppress(OSError):
                if e.name.endswith(".json") and not e.name.startswith("."):
                    entries.append((e.stat().st_mtime_ns, e.path))
                elif e.name.startswith(".") and e.name.endswith(".tmp") and e.stat().st_mtime_ns < stale:
                    os.unlink(e.path)
    if len(entries) <= keep:
        return
    entries.sort()
    for _, path in entries[: len(entries) - keep]:
        with contextlib.suppress(OSError):
            os.unlink(path)


def local_folder(location: Any) -> Path | None:
    """``location`` as an absolute local folder, or None (an object-store URL, a file, nothing)."""
    from .. import storage

    if not isinstance(location, (str, os.PathLike)) or storage.is_url(location):
        return None
    path = Path(location).expanduser()
    try:
        return path.resolve() if path.is_dir() else None
    except OSError:
        return None


def question(
    command: str, params: Mapping[str, Any], locations: list[Any], inputs: list[Path] | None = None
) -> Question | None:
    """The question to look up, or None when answers are off, a location is not a local folder, or the
    question cannot be told (no working folder, say: the command then computes as if answers were off).
    ``inputs``: other files the command reads (their stamps are part of the question)."""
    where = folder()
    if where is None or not locations or os.environ.get("POLARS_VERBOSE", "0") not in ("", "0"):
        return None  # POLARS_VERBOSE: polars writes to the process's stderr itself, which is not recorded
    try:
        roots = [local_folder(loc) for loc in locations]
        if any(r is None for r in roots):
            return None
        return Question(command, params, locations, [r for r in roots if r is not None], where, inputs or [])
    except (OSError, ValueError, RuntimeError):
        return None


@contextlib.contextmanager
def answer(q: Question | None) -> Iterator[None]:
    """Around a command's work: print the kept answer and exit with its code, if there is one; otherwise run
    the work, keeping what it prints (stdout, stderr) and its exit code for next time."""
    if q is None:
        yield
        return
    try:
        before, racy = q.listing()
    except (OSError, ValueError, RuntimeError):
        before, racy = [], True
    if not before:
        yield  # the run cannot be listed: the command says why
        return
    # A run a writer may be at work on is always read, also where an answer is kept for its listing (one kept
    # by an earlier runlog, or one whose files were dated back): what it says of its writers may change without
    # a file changing (a writer killed, the others' grace gone by).
    hit = None if racy else q.lookup(before)
    if hit is not None:
        for stream, text in hit["output"]:
            target = sys.stdout if stream == 1 else sys.stderr
            if text is None:
                target.flush()
            else:
                target.write(text)
        raise typer.Exit(hit["code"])
    from .. import errors

    troubles = errors.troubles
    chunks: list[list[Any]] = []
    size = [0]
    out, err = _Tee(sys.stdout, 1, chunks, size), _Tee(sys.stderr, 2, chunks, size)
    sys.stdout, sys.stderr = out, err
    code: int | None = None
    try:
        yield
        code = 0
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:
        sys.stdout, sys.stderr = out.inner, err.inner
        whole = not out.broken and not err.broken and size[0] <= MAX_CHARS and errors.troubles == troubles
        if code in (0, 1) and not racy and whole and _unchanged(q, before):
            q.store(before, chunks, code if code is not None else 0)


def _unchanged(q: Question, before: list[str]) -> bool:
    """Whether the runs are listed now as before the work (and nothing in them is too recent): a file that
    came and went while the command read, a folder swapped and swapped back, would otherwise leave an answer
    that the listing before the work matches again."""
    try:
        return q.listing() == (before, False)
    except (OSError, ValueError, RuntimeError):
        return False


__all__ = ["Question", "answer", "folder", "question", "trim"]
