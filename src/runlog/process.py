"""What only the program that owns the process may change: environment variables other libraries read, and
the garbage collector. The command line opts in at its entry point (``enable_command_line_tweaks``); a
library caller (a notebook, a trainer) who never does gets none of it: ``summarize(open_run(...))``,
``inspect_run`` or ``upload_wandb`` leave ``os.environ`` and ``gc`` as they found them. So with the handler of
Ctrl-C (``take_interrupts``): a library import installs no signal handler."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import CodeType, FrameType


@dataclass
class Tweaks:
    """Process-wide changes the library may make on the program's behalf, all off unless the program opts in."""

    # Let Parquet scans raise polars' footer read size (POLARS_CLOUD_FOOTER_READ_SIZE) to the longest footer
    # discovery saw: on thousands of small files the default 256 KiB tail is most of what a scan reads.
    footer_read_size: bool = False
    # Freeze the objects alive at the start of a W&B upload out of the cyclic GC's reach while it runs.
    freeze_gc: bool = False


TWEAKS = Tweaks()


def enable_command_line_tweaks() -> None:
    """What the ``runlog`` command sets up before any work (a user's own environment settings win):

    - one OpenBLAS thread: numpy (which pyarrow imports) starts an OpenBLAS pool whose threads spin for a
      while; on a 2-core machine that took ~6 % of the CPU of a summarize that multiplies no matrix;
    - no Ray usage statistics (``--engine ray`` starts Ray; a command line tool should not report home);
    - the footer read size and GC freezing of ``Tweaks``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    TWEAKS.footer_read_size = True
    TWEAKS.freeze_gc = True


# Polars' modules whose Python code its Rust calls back into, and unwraps the result of (dtype objects built for
# a schema, Python values made of polars' dates and decimals, warnings): a ``KeyboardInterrupt`` raised there
# becomes a Rust panic (pyo3's ``PanicException``), printed by Rust with its backtrace. Not the rest of polars:
# an interrupt taken in its Python code before a long read must stop it there (deferred, it waited for the read's
# end: polars' own handler cancels only a read already running).
_CALLED_FROM_RUST = ("polars.datatypes", "polars._utils.convert", "polars._warnings")


def take_interrupts() -> None:
    """The command line's Ctrl-C (``runlog.__main__``, ``cli.app.main``; never a library import): as Python's
    own, a ``KeyboardInterrupt``, but kept out of polars (``raise_outside_polars``). Installed before the
    command line's modules load, so that a Ctrl-C there ends as one too (``Error: interrupted``, exit 130), not
    with a traceback of the imports."""
    if signal.getsignal(signal.SIGINT) is _interrupt:
        # Installed already (``runlog.__main__``, then ``cli.app.main``): installing again would take the signal
        # from polars, imported in between, whose own handler cancels a long read and then calls this one.
        return
    with contextlib.suppress(ValueError):  # not the main thread: Python's own is left
        signal.signal(signal.SIGINT, _interrupt)


# The Ctrl-Cs the command line's handler took (``_interrupt``). Its ``KeyboardInterrupt`` can be lost on the
# way: raised inside a ``__del__`` or a weakref callback, it is only printed ("Exception ignored in"), and the
# program goes on. Code that waits on another thread asks ``raise_if_interrupted`` as it waits.
_INTERRUPTS = [0]
# The profile hook of an interrupt held back (``raise_outside_polars``) and the one it replaced, while pending.
_DEFERRED: list[tuple[Any, Any]] = []


def _interrupt(_signum: int, frame: FrameType | None) -> None:
    _INTERRUPTS[0] += 1
    raise_outside_polars(frame, KeyboardInterrupt)


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if the command line's handler took a Ctrl-C: its own raise was lost on the way
    (see ``_INTERRUPTS``), or is still held back (then it is not raised a second time). A Ctrl-C lost early in
    ``upload-wandb`` left the program joining the thread that imports wandb for ever (``sinks.wandb``)."""
    if not _INTERRUPTS[0]:
        return
    if _DEFERRED:
        hook, before = _DEFERRED.pop()
        if sys.getprofile() is hook:
            sys.setprofile(before)
    raise KeyboardInterrupt


def raise_outside_polars(frame: FrameType | None, exc: type[BaseException]) -> None:
    """Raise ``exc`` now, from a signal handler whose interrupted frame is ``frame``, unless that frame runs in
    a callback polars makes from Rust (``_CALLED_FROM_RUST``) or is the import machinery's own code
    (``_IMPORT_MACHINERY``): then at the first Python call or return outside them (a profile hook, on the main
    thread only), a moment later. While polars' own modules load (``import polars``, in a command's first second)
    nothing is a callback: the interrupt is raised at once (or as soon as the import machinery runs a module's
    code again).

    Polars calls Python from Rust while it reads (dtype objects built in ``collect_schema``): an interrupt
    raised there is unwrapped by Rust, which panics, prints the panic and its backtrace (``RUST_BACKTRACE=1``),
    and hands back a ``PanicException`` that reads as a failed read ("reading the run failed", exit 1, for a
    Ctrl-C). The import machinery takes and releases its global lock around plain code (``_imp.acquire_lock()``
    before a ``try``): an interrupt raised between them left the lock held by the main thread for good, and every
    other thread's import waited for it (``upload-wandb``'s import of wandb: the command hung, a few times in a
    hundred Ctrl-Cs in its first second)."""
    if not _in_callback(frame) and not _in_import_machinery(frame):
        raise exc
    pending = _DEFERRED[0] if _DEFERRED and sys.getprofile() is _DEFERRED[0][0] else None
    before = pending[1] if pending is not None else sys.getprofile()  # a second signal: one hook, not two chained
    # The signal handler's own frames (this function, the handler that called it): their returns are the hook's
    # first events, and an interrupt raised there lands in ``frame`` all the same.
    handler: set[CodeType] = set()
    f: FrameType | None = sys._getframe()
    while f is not None and f is not frame:
        handler.add(f.f_code)
        f = f.f_back
    if f is None:  # ``frame`` is not below this call (not a signal handler's): only this function's own return
        handler = {sys._getframe().f_code}

    def hook(at: FrameType, event: str, _arg: Any) -> None:
        if (
            event in ("call", "return", "c_call")
            and at.f_code not in handler
            and not _in_import_machinery(at)
            and not _in_callback(at)
        ):
            sys.setprofile(before)
            _DEFERRED.clear()
            raise exc

    _DEFERRED[:] = [(hook, before)]
    sys.setprofile(hook)


# The import machinery's modules: ``_frozen_importlib`` (named ``importlib._bootstrap`` once ``importlib`` is
# imported) and its external part.
_IMPORT_MACHINERY = frozenset(
    {"_frozen_importlib", "_frozen_importlib_external", "importlib._bootstrap", "importlib._bootstrap_external"}
)


def _in_import_machinery(frame: FrameType | None) -> bool:
    """Whether ``frame`` is the import machinery's own code (not a module's body it runs, nor what that calls):
    a ``KeyboardInterrupt`` raised there can leave the import lock held (``raise_outside_polars``)."""
    return frame is not None and _module(frame) in _IMPORT_MACHINERY


def _in_callback(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a frame that called it runs in a callback polars makes from Rust: code of
    ``_CALLED_FROM_RUST``, or code other than polars' that polars' code called (numpy's version check, which
    polars' Rust makes in ``Series.to_numpy`` and unwraps; a function given to ``map_elements``). What such a
    callback calls is inside it too.

    Not while polars is imported: its module code calls the standard library (``enum``, ``inspect``: a
    decorator at class definition), which the rule above took for callbacks, so that a Ctrl-C in the import
    waited for its end while the profile hook, walking the stack at every call, made the 0.2 s import take 2-12
    s. An import of polars is told by its outermost frame of polars' code: one that the import machinery runs
    (a module's body), where a callback's outermost is a call from the program (``collect``)."""
    if _importing_polars(frame):
        return False
    while frame is not None:
        name = _module(frame)
        if any(name == m or name.startswith(m + ".") for m in _CALLED_FROM_RUST):
            return True
        if not _is_polars(name) and frame.f_back is not None and _is_polars(_module(frame.f_back)):
            return True
        frame = frame.f_back
    return False


def _importing_polars(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside the loading of polars' modules: the outermost frame of polars' code on
    the stack was called by the import machinery (``importlib._bootstrap``)."""
    outermost = None
    while frame is not None:
        if _is_polars(_module(frame)):
            outermost = frame
        frame = frame.f_back
    caller = outermost.f_back if outermost is not None else None
    return caller is not None and _module(caller).startswith("importlib")


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _is_polars(name: str) -> bool:
    return name == "polars" or name.startswith("polars.")


# How pyo3 words an interrupt that Rust unwrapped: "called `Result::unwrap()` on an `Err` value: PyErr { type:
# <class 'KeyboardInterrupt'>, value: KeyboardInterrupt(), ...".
_UNWRAPPED_INTERRUPT = "PyErr { type: <class 'KeyboardInterrupt'>"


def made_of_interrupt(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a Ctrl-C: a ``KeyboardInterrupt``; the Rust panic pyo3 makes of one raised inside a
    callback polars makes from Rust (``PanicException``), which a program without ``take_interrupts`` (a
    notebook) meets; or an error raised from either (``raise ... from``), or worded on the panic's text."""
    for _ in range(8):  # a chain of causes, not a cycle
        if exc is None:
            return False
        if isinstance(exc, KeyboardInterrupt) or _UNWRAPPED_INTERRUPT in str(exc):
            return True
        if type(exc).__name__ == "PanicException" and "KeyboardInterrupt" in str(exc):
            return True
        exc = exc.__cause__
    return False


__all__ = [
    "TWEAKS",
    "Tweaks",
    "enable_command_line_tweaks",
    "made_of_interrupt",
    "raise_if_interrupted",
    "raise_outside_polars",
    "take_interrupts",
]
