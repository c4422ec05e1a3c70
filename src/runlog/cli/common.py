"""What every command shares: consoles (data to stdout, diagnostics to stderr) and error mapping."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import typer

from ..errors import EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_USAGE, RunlogError, UsageError
from ..process import made_of_interrupt
from ..textsafe import visible

if TYPE_CHECKING:
    from rich.console import Console

    from ..formats.base import Problem
    from ..storage import StorageOptions

INTERNAL_ERROR = 3
# Whether the command line owns its process (``app.main``: ``runlog ...``, ``python -m runlog``), rather than
# running inside another program (a test's runner, a notebook): only then may a command end the process itself.
OWNS_PROCESS = [False]
# Whether ``Error: interrupted`` was said (``fail``), so that ``app.main`` says it once.
SAID_INTERRUPTED = [False]

RUN_PATH = typer.Argument(
    ..., help="Run directory, a single file, or a URL (s3://, gs://, az://).", show_default=False, metavar="PATH"
)
# ``watch``'s: a run being written is followed by listing its folder, and a file is refused (exit 2).
FOLLOWED_PATH = typer.Argument(
    ...,
    help="Run directory or a URL (s3://, gs://, az://): the run's folder, not one of its files.",
    show_default=False,
    metavar="PATH",
)
# ``doctor``'s: a file is a run to a plain doctor, but ``--follow`` refuses one (exit 2), as ``watch`` does.
DOCTOR_PATH = typer.Argument(
    ...,
    help="Run directory, a single file, or a URL (s3://, gs://, az://); with --follow, the run's folder or URL, not "
    "a file.",
    show_default=False,
    metavar="PATH",
)
STORAGE_OPTION = typer.Option(
    None,
    "--storage-option",
    metavar="KEY=VALUE",
    help="Object-store option for URL paths, repeatable (e.g. aws_region=eu-west-1, aws_endpoint_url=...); "
    "credentials also come from the standard environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*).",
)


def use_storage_options(pairs: list[str] | None) -> StorageOptions:
    """The ``--storage-option`` pairs as the options object a command passes to ``open_run`` and the fleet
    functions (``storage_options=``): explicit, never a process-wide default."""
    from ..storage import StorageOptions

    return StorageOptions.parse(pairs or [])


def stdout_console() -> Console:
    from rich.console import Console

    class _Stdout(Console):
        def on_broken_pipe(self) -> None:
            """``runlog ... | head``: rich's own exits 1 (the code of problems in the data); the reader going
            away is no error of ours: the rest is not printed and the command goes on to its own exit code."""
            self.quiet = True
            stdout_gone()

    # Created per call so that tests (CliRunner swaps sys.stdout) and NO_COLOR are honoured.
    return _Stdout(file=sys.stdout, no_color="NO_COLOR" in os.environ or None, highlight=False, soft_wrap=False)


def stdout_gone() -> None:
    """The reader of stdout went away (``runlog ... | head``): what is still written there goes to /dev/null,
    so that the command ends as it would have (its notes on stderr, its exit code: ``doctor | head`` still
    exits 1 on findings), and nothing fails when Python flushes stdout at exit."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    with contextlib.suppress(OSError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115


def write_stdout(data: str | bytes) -> None:
    """Write the command's data to stdout; a reader gone away is no error (:func:`stdout_gone`). Text for a
    terminal (CSV, JSON, Markdown) has the data's control and invisible characters shown as ``\\xNN`` /
    ``\\uNNNN`` (``textsafe.visible``): a role or run named with an OSC sequence must not retitle the window.
    A pipe or a file gets the data as it is."""
    try:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            if sys.stdout.isatty():
                data = visible(data, keep_newlines=True)
            sys.stdout.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()


def stderr_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, no_color="NO_COLOR" in os.environ or None, highlight=False)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``Error: message`` (one line, on stderr) and return the Exit to raise."""
    sys.stderr.write(f"Error: {visible(message, keep_newlines=False)}\n")
    sys.stderr.flush()
    SAID_INTERRUPTED[0] = SAID_INTERRUPTED[0] or code == EXIT_INTERRUPTED
    return typer.Exit(code)


def flush_stdout() -> None:
    """Flush stdout here, where a reader gone away (``runlog ... | head``) keeps the command's exit code:
    flushed at exit instead, its broken pipe would be typer's, which exits 1 (the code of problems found in
    the data). Called at the end of every command (``handle_errors``), and of ``--help`` and ``--version``
    (``app.main``)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
    except (OSError, ValueError):  # a closed stdout: nothing to flush
        pass


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Map library errors to one-line messages and documented exit codes; never show a traceback for
    expected failures (set RUNLOG_DEBUG=1 to see one for an internal error). A Ctrl-C is ``interrupted``, exit
    130, whatever it became on the way (``_as_interrupt``)."""
    try:
        with _as_interrupt():
            yield
        flush_stdout()
    except (typer.Exit, typer.Abort, typer.BadParameter):
        flush_stdout()
        raise
    except RunlogError as exc:
        said = _said(exc)
        raise fail(said + (_one_dash_hint(said) if isinstance(exc, UsageError) else ""), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        # A stream of lines (`runlog watch ... | head`) stops when its reader goes away: not an error of ours.
        stdout_gone()
        raise typer.Exit(0) from None
    except OSError as exc:
        # Reading failed below us (an object store that went away mid-query, a disk error): one line.
        import re

        from ..storage import remote_reason

        # polars names the object in its text, not in ``filename``: "... (path: s3://b/run/x.parquet)".
        named = re.search(r"\(path: ([^)\s]+)\)", str(exc))
        name = getattr(exc, "filename", None) or (named.group(1) if named else None)
        raise fail(f"{name}: {remote_reason(exc)}" if name else remote_reason(exc), EXIT_PROBLEMS) from None
    except Exception as exc:
        # typer's own usage exceptions (it vendors click) are typer's to print, with exit code 2.
        if os.environ.get("RUNLOG_DEBUG") or type(exc).__module__.startswith(("typer", "click")):
            raise
        raise fail(
            f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(set RUNLOG_DEBUG=1 for a traceback, and please report it)",
            INTERNAL_ERROR,
        ) from None


def _one_dash_hint(message: str, path: str | None = None) -> str:
    """A long option written with one dash (``-by role``) is read as a short one and its value (``-b y``): the
    error then names a value the user never typed (``--by 'y'``), or takes the option's own value for a PATH
    (``role: no such file or directory``). Said when the message quotes the tail of such a word of the command
    line, or where ``path``, the PATH the error is about, is the word after it; and only where that long option
    (``--by``) is one of the command's: ``-fcsv`` is ``-f csv`` as typed (click's way of giving a short
    option its value), and the command has no ``--fcsv`` to tell of."""
    import re

    words = sys.argv[1:]
    longs = _long_options()
    for i, word in enumerate(words):
        after = path is not None and words[i + 1 : i + 2] == [path]
        if (
            re.fullmatch(r"-[a-z][a-z-]+", word)
            and (f"'{word[2:]}'" in message or after)
            and (longs is None or f"-{word}" in longs)
        ):
            return f" ('{word}' reads as '{word[:2]} {word[2:]}': a long option takes two dashes, '-{word}')"
    return ""


def _long_options() -> set[str] | None:
    """The long options (``--by``) of the command running (its click context's), or None where that cannot be
    told (outside a command)."""
    ctx = _click_context()
    command = getattr(ctx, "command", None)
    if command is None:
        return None
    return {o for p in getattr(command, "params", []) for o in [*p.opts, *p.secondary_opts] if o.startswith("--")}


def _click_context() -> Any:
    """The click context of the command running, or None (outside a command; a typer whose click keeps its
    context elsewhere)."""
    import importlib

    for module in ("typer._click.globals", "click"):  # typer 0.2x vendors click
        try:
            get = getattr(importlib.import_module(module), "get_current_context", None)
        except ImportError:
            continue
        ctx = get(silent=True) if callable(get) else None
        if ctx is not None:
            return ctx
    return None


def one_dash_hint_of_path(path: str) -> str:
    """:func:`_one_dash_hint` of an error about the PATH ``path`` (``-by role``: ``role`` taken for a PATH)."""
    return _one_dash_hint("", path)


@contextlib.contextmanager
def _as_interrupt() -> Iterator[None]:
    """A ``KeyboardInterrupt`` in place of what a Ctrl-C became on the way (``process.made_of_interrupt``): the
    Rust panic of one raised inside a callback polars makes from Rust, or an error made of that panic (it read
    as "reading the run failed", exit 1, the code of problems in the data). An error met after the Ctrl-C
    (W&B's state that could not be written) is still said as itself."""
    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit, GeneratorExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        if made_of_interrupt(exc):
            raise KeyboardInterrupt from None
        raise


class OutputError(UsageError):
    """``-o FILE`` could not be written (a folder that takes no new files, no permission, a full disk): one line
    that names the file and the system's reason, exit 2 (the usage/IO code; docs/cli.md, "Exit codes"), never
    the exit 1 of problems in the data."""

    def __init__(self, path: str | os.PathLike[str], exc: OSError) -> None:
        super().__init__(f"cannot write {os.fspath(path)}: {write_reason(path, exc)}")
        self.path = os.fspath(path)


def write_reason(path: str | os.PathLike[str], exc: OSError) -> str:
    """Why ``path`` could not be written, in words: the system's reason (``Permission denied``, ``No space left
    on device``), without the errno and the path the caller names already; a file that cannot be created in a
    folder that exists (``/proc``) said as such, where the system's "No such file or directory" would send the
    reader looking for the folder."""
    import errno
    import re

    code = exc.errno
    text = str(exc)
    if code is None:  # polars and other Rust writers: "No such file or directory (os error 2): /proc/x"
        found = re.search(r"\(os error (\d+)\)", text)
        code = int(found.group(1)) if found else None
    reason = os.strerror(code) if code is not None else (exc.strerror or text or type(exc).__name__)
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if code == errno.ENOENT:
        if os.path.isdir(folder):
            return f"the folder {folder} does not take new files ({reason})"
        return f"the folder {folder} does not exist"
    if code == errno.EISDIR:
        return "it is a folder; give a file name"
    return reason


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`OutputError` when ``path`` cannot be written, before the work that makes its content (a
    report takes seconds): a folder that takes no new files (``/proc``), no permission, a read-only file
    system. The file the command will write is created and removed again here (``O_EXCL``: never one that
    appeared meanwhile); an existing regular file is opened for appending, which changes nothing in it.
    Anything else that exists (``/dev/stdout``, a named pipe, whose reader would see the end of its data)
    is left to the write itself, as is a full disk."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # made meanwhile: the write will tell
            return
        except OSError as exc:
            raise OutputError(path, exc) from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    except OSError as exc:
        raise OutputError(path, exc) from None
    if stat.S_ISREG(mode):
        try:
            with open(path, "a"):
                pass
        except OSError as exc:
            raise OutputError(path, exc) from None


_replaced: set[str] = set()  # the -o files that held data before this command wrote them (``writing``)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Write the command's ``-o FILE`` inside this: an ``OSError`` becomes :class:`OutputError` (one line
    ``cannot write FILE: reason``, exit 2). Every command's output goes through it (``output.emit_frame``,
    ``output.print_out``, ``plot``, ``report``, ``render-trajectory``, ``diff``). A regular file already there is
    remembered, for :func:`wrote` to say it was replaced."""
    with contextlib.suppress(OSError, ValueError):
        where = os.path.abspath(path)
        _replaced.discard(where)  # one process may run several commands (tests, a notebook)
        if os.path.isfile(path) and os.path.getsize(path):
            _replaced.add(where)
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(path, exc) from None


def _said(exc: RunlogError) -> str:
    """An error's one line; a glob given to a command of one run (``listing.GlobGivenError``) names the command."""
    from ..listing import GlobGivenError

    if isinstance(exc, GlobGivenError):
        return exc.said(command_name())
    return str(exc)


def command_name() -> str | None:
    """``runlog inspect``: the command running (its click context's name), or None where that cannot be told
    (outside a command; a typer whose click keeps its context elsewhere)."""
    name = getattr(_click_context(), "info_name", None)
    return f"runlog {name}" if name else None


MAX_PROBLEM_LINES = 20
ERROR_NAMES = 5  # files named on one error line


def report_problems(problems: Sequence[Problem], notes: Sequence[str] = (), *, group: bool = True) -> int:
    """One line per problem on stderr (``error: path: message`` / ``warning: ...``); returns the number of
    problems that are not warnings. Commands other than ``inspect`` use it: the data they print stays clean."""
    lines = [f"note: {n}" for n in notes]
    errors = sum(not p.is_warning for p in problems)
    # One line per message: the same message of many files (a column every file lacks) is one line naming the
    # first and counting the others, so that it cannot push the one line that explains a figure (a step read
    # twice) past the cap. Errors first.
    # ``group=False``: problems of several runs (a fleet, diff's skipped runs), whose every line must name its
    # run, as it did.
    same: dict[tuple[bool, str, int], list[str]] = {}
    for i, p in enumerate(problems):
        same.setdefault((p.is_warning, p.message, -1 if group else i), []).append(p.path)
    for (warning, message, _), paths in sorted(same.items(), key=lambda kv: kv[0][0]):
        # An error leaves a file's data out of every figure: each such file is named (up to ERROR_NAMES, then
        # ``runlog inspect`` names the rest), so that a user knows which data is missing; a warning's files are
        # read, and the first by name stands for the others.
        names = sorted(paths)[: 1 if warning else ERROR_NAMES]
        left = len(paths) - len(names)
        more = f" and {left:,} more file(s)" + ("" if warning else " (`runlog inspect` names them)") if left else ""
        lines.append(f"{'warning' if warning else 'error'}: {', '.join(names)}{more}: {message}")
    shown = lines[:MAX_PROBLEM_LINES]
    if len(lines) > MAX_PROBLEM_LINES:
        shown.append(f"... {len(lines) - MAX_PROBLEM_LINES} more: see `runlog inspect`")
    for line in shown:
        sys.stderr.write(visible(line, keep_newlines=False) + "\n")
    return errors


def human_bytes(n: int) -> str:
    """``512 B``, ``1.2 KB``, ``3.4 MB``: SI units (powers of 1000, as the labels say; 9,437,188 B is 9.4 MB,
    not the 9.0 "MB" of powers of 1024), never ``1000.0 KB`` (rounded up, the next unit)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        shown = f"{size:.0f}" if unit == "B" else f"{size:.1f}"
        if float(shown) < 1000 or unit == "TB":
            return f"{shown} {unit}"
        size /= 1000
    return f"{n} B"


def wrote(path: str | os.PathLike[str]) -> None:
    """Say where ``-o FILE`` went: one line on stderr (``wrote per_step.csv (1.2 KB)``), so that stdout stays
    empty. Every command that writes a file the user named calls this once, after the file is complete. No size
    for what is not a regular file (a FIFO, ``/dev/null``: its size is 0 whatever was written to it)."""
    import stat

    try:
        st = os.stat(path)
        size = f" ({human_bytes(st.st_size)})" if stat.S_ISREG(st.st_mode) else ""
    except OSError:
        size = ""
    if os.path.abspath(path) in _replaced:  # the file a former run wrote, or any other: said, never silent
        size = f"{size[:-1]}, replaced the file there)" if size else " (replaced the file there)"
    sys.stderr.write(f"wrote {visible(os.fspath(path), keep_newlines=False)}{size}\n")
    sys.stderr.flush()


def emit_json(data: Any) -> None:
    """Indented for a person at a terminal, compact for a pipe (``| jq`` indents it anyway)."""
    indent = 2 if sys.stdout.isatty() else None
    write_stdout(json.dumps(data, indent=indent, default=_json_default, allow_nan=False) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    as_dict = getattr(obj, "as_dict", None)  # the library's result types (``RunInspection``) give their JSON form
    if callable(as_dict):
        return as_dict()
    return str(obj)


def no_text_reason(run: Any, text: str, calls: bool = False) -> str:
    """Why a text metric (``metrics diversity``/``format``) has no row: the run has no per-sample data, no
    readable sample file, or no sample with the text chosen (``calls``: a tool-call spec, which reads the
    messages)."""
    samples = [f for f in run.files if f.kind == "samples"]
    if not samples:
        return (
            "this run has no per-sample data (only scalar metrics): no text to measure "
            "(try runlog summarize --scalars, or runlog plot --what scalars)"
        )
    if not any(f.readable for f in samples):
        return "no sample file of this run could be read (see the errors): no text to measure"
    if calls:
        fallback = "transcript" if text == "trajectory" else "completion"
        return (
            f"no sample has messages or a {fallback} (at the steps and splits chosen): no tool call to check "
            "(a tool-call spec reads the messages whatever --text is; --text trajectory checks the transcript "
            "of a sample without messages)"
        )
    return f"no sample has a text for --text {text} (at the steps and splits chosen): nothing to measure"
