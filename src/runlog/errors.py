"""Typed errors. The CLI maps each to a one-line ``Error: ...`` on stderr and an exit code.

Exit codes (documented in docs/cli.md):
    0  success, no problems (warnings allowed unless --strict)
    1  problems found in the data (the good data was still analysed)
    2  usage error: bad option, missing path, nothing to read
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

TYPE_CHECKING = False  # not ``typing``'s: this module loads in the command's first milliseconds (runlog/__init__)
if TYPE_CHECKING:
    from collections.abc import Iterable

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# runlog is installed from its repository (README.md): on the package index the name ``runlog`` is another,
# unrelated project, so a hint never says ``pip install runlog`` (it would replace this one).
UPGRADE_HINT = "upgrade runlog (in its folder: git pull && pip install -e .)"


def install_hint(extra: str) -> str:
    """How to add an optional part: ``pip install -e '.[plot]'`` in runlog's folder."""
    return f"in runlog's folder, pip install -e '.[{extra}]'"


# Lines said on stderr about a cache's own trouble (a corrupt partials index, a bad setting), and failures that
# may not happen again (a file that could not be read while the run was read): an answer printed with one is
# not kept to be printed again (``cli.answers``). Here, at the bottom of the package, so that every layer can
# say so.
troubles = 0


def said_trouble() -> None:
    global troubles
    troubles += 1


class RunlogError(Exception):
    """Base class of every error runlog raises on purpose."""

    exit_code = EXIT_PROBLEMS


class UsageError(RunlogError):
    """The user asked for something that cannot be done (bad path, unknown layout, bad option)."""

    exit_code = EXIT_USAGE


class SeveralRunsError(UsageError):
    """A path holds several runs (their numbers must not be added up); ``runs``: their folders, relative to
    the path (a fleet grouped by run takes each as a run of its own)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, runs: list[str]):
        super().__init__(message)
        self.runs = runs


class RunNotFoundError(UsageError):
    """The run location does not exist or is not a directory/file runlog can read."""


class UnknownLayoutError(UsageError):
    """``--layout`` names a layout that is not registered."""


class DataError(RunlogError):
    """A file could not be read or does not follow its format."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SchemaVersionError(DataError):
    """A file was written by a newer runlog schema than this runlog reads."""


def did_you_mean(given: str, names: Iterable[str]) -> str:
    """`` (did you mean 'solver'?)`` for a near miss (``solvr``, ``Solver``, ``trian``); empty otherwise. Here, at
    the bottom of the package graph, so that any layer's usage error can offer it."""
    import difflib

    names = [n for n in names if isinstance(n, str)]
    folded = {n.casefold(): n for n in names}
    if given.casefold() in folded:
        return _offered(folded[given.casefold()])
    close = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    return _offered(close[0]) if close else ""


def _offered(name: str) -> str:
    """The hint for ``name``; where the terminal shows it with escapes (``held\\u2028out``: invisible or control
    characters), no name to paste, which would name nothing, but where it is given exactly."""
    from .textsafe import visible

    if visible(name, keep_newlines=False) == name:
        return f" (did you mean {name!r}?)"
    return (
        f" (did you mean the one shown as {name!r}? Its name has invisible or control characters, shown as escapes: "
        "typed as shown it names nothing; `runlog inspect RUN --format json` gives it exactly, a key of "
        "rows_by_split, or in roles)"
    )
