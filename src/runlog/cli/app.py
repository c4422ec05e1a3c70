"""The typer application; each command lives in its own module and only parses, calls, formats."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from .. import __version__
from ..errors import EXIT_INTERRUPTED
from ..process import take_interrupts
from .common import OWNS_PROCESS, SAID_INTERRUPTED, fail, flush_stdout, stdout_gone, write_stdout

# What Rich reads as a markup tag (rich.markup.escape's pattern; importing rich.markup costs ~16 ms a command).
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _literal(text: str | None) -> str | None:
    """``text`` with every ``[tag]`` escaped, so that Rich shows it as written."""
    if not text:
        return text
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def _paragraphs(text: str) -> list[str]:
    """The help's paragraphs (blank-line separated), prose joined into one line each so that it wraps at the
    terminal's width, not where the source broke it; an indented block (examples) keeps its lines."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.split("\n")
        out.append(para if all(line[:1].isspace() for line in lines) else " ".join(x.strip() for x in lines))
    return out


def _shell_words(line: str) -> list[str]:
    """``line`` cut at the spaces outside quotes, quotes kept: ``'.a[] | b'`` stays one word."""
    words, word, quote = [], "", ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == " ":
            if word:
                words.append(word)
            word = ""
            continue
        word += ch
    return [*words, word] if word else words


def _units(words: list[str]) -> list[str]:
    """Words that stay on one line: an option with its value, a pipe with the command after it (up to the
    next pipe or comment), a comment (a shell ``\\`` inside it would be part of the comment)."""
    units: list[str] = []
    for w in words:
        prev = units[-1] if units else ""
        joins_option = prev.startswith("-") and " " not in prev and not w.startswith(("-", "|", "#"))
        joins_pipe = prev.startswith("|") and not w.startswith(("|", "#"))
        if units and (joins_option or joins_pipe or prev.startswith("#")):
            units[-1] = f"{prev} {w}"
        else:
            units.append(w)
    return units


CONTINUATION = "    "  # what a continued example line is indented by, beyond the example's own indent


def fit_example(line: str, width: int) -> list[str]:
    """An example command line in lines of at most ``width`` columns, each but the last ending in `` \\``
    (a shell continuation: the lines still paste into a shell as one command). Never cut inside a word
    or a quoted argument; a word wider than the line is left whole on its own line."""
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    lines: list[str] = []
    current = ""
    for unit in _units(_shell_words(line.strip())):
        lead = indent + (CONTINUATION if lines else "")
        if not current:
            current = lead + unit
        elif len(current) + 1 + len(unit) + (0 if unit.startswith("#") else 2) <= width:
            current += " " + unit
        else:
            # A comment that does not fit goes on a line of its own (no `\\`: the command has ended).
            lines.append(current if unit.startswith("#") else current + " \\")
            current = indent + CONTINUATION + unit
    return [*lines, current]


def fit_help(text: str, width: int) -> str:
    """``text`` (already paragraphed) with its example lines fitted to ``width`` columns."""
    paras = []
    for para in text.split("\n\n"):
        lines = para.split("\n")
        if all(line[:1].isspace() for line in lines):
            para = "\n".join(out for line in lines for out in fit_example(line, width))
        paras.append(para)
    return "\n\n".join(paras[:1] + _keep_indent(paras[1:]))


def _keep_indent(paras: list[str]) -> list[str]:
    """typer dedents the paragraphs after the first with ``inspect.cleandoc``, which takes away the indent
    common to every line but the first: where that is the examples' own (one prose line, then ``Examples:``),
    they would lose it. An empty paragraph ahead makes ``Examples:`` a line that counts (cleandoc then drops
    the blank lines it leads with, so nothing shows)."""
    lines = "\n\n".join(paras).split("\n")
    if any(x.strip() and not x[:1].isspace() for x in lines[1:]):
        return paras
    return ["", *paras]


def _help_width() -> int:
    """The columns of help text: typer's console width less its padding of one column either side."""
    from rich.console import Console
    from typer import rich_utils

    return max(Console(width=rich_utils.MAX_WIDTH).width - 2, 20)


if TYPE_CHECKING:
    from typer._click.core import Command
    from typer.core import MarkupMode

    # The mixin is only ever mixed into (typer's vendored) click commands: the checker sees it as one.
    _CommandBase = Command
else:
    _CommandBase = object


class _LiteralHelp(_CommandBase):
    """Help text is text, not Rich markup: ``'runlog[plot]'`` and ``(top level or [doctor])`` are shown as
    written. Escaped once here, for the command's own help, its options' and its epilog; a group lists its
    commands with their (escaped) help.

    Prose paragraphs wrap at the terminal's width (a source line break is a space); indented blocks
    (``Examples:``) keep one command a line, and a command wider than the terminal is continued on the
    next line with a shell ``\\``, never cut inside a word."""

    rich_markup_mode: MarkupMode  # set by TyperCommand / TyperGroup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._source_help = "\n\n".join(_paragraphs(self.help)) if self.help else self.help
        if typer.core.HAS_RICH and kwargs.get("rich_markup_mode") == "rich":
            self.help, self.short_help, self.epilog = map(_literal, (self._source_help, self.short_help, self.epilog))
            for param in self.params:
                if isinstance(param, TyperOption | TyperArgument) and param.help:
                    param.help = _literal(param.help)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        if not (typer.core.HAS_RICH and self.rich_markup_mode == "rich" and self._source_help):
            return super().format_help(ctx, formatter)
        escaped = self.help
        self.help = _literal(fit_help(self._source_help, _help_width()))
        try:
            with _folding_cells():
                return super().format_help(ctx, formatter)
        except SystemExit as exc:
            # typer prints the help on a rich Console of its own, whose reader gone away (``runlog -h | head``)
            # ends the process with 1 (``Console.on_broken_pipe``, the one SystemExit of the drawing): as for
            # a command's data, the rest goes nowhere and the help ends with its own code (0; 2 for a group
            # called with nothing, ``runlog metrics``).
            if exc.code != 1:
                raise
            stdout_gone()
            return None
        finally:
            self.help = escaped


@contextlib.contextmanager
def _folding_cells() -> Iterator[None]:
    """typer's help drawn with its words folded over several lines where they are wider than their cell,
    where rich's default ends them with ``…``: the option panels cropped option names (``--max-samples-per…``
    at 80 columns, ``--scala…`` at 40), words of the options' help (``GOOGLE_APPLICATION_CRED…``,
    ``(repeata…``) and defaults (``think-answer-s…``). typer draws an option as a row of ``rich_utils.Table``
    (name, type, help) whose help cell is a ``rich_utils.Columns`` of texts (help, default), and gives
    neither an overflow of its own: the subclasses here say ``fold``. The names are put back after, so that
    nothing else is changed."""
    from rich.columns import Columns
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    if getattr(rich_utils, "Table", None) is not Table or getattr(rich_utils, "Columns", None) is not Columns:
        yield  # a typer that draws otherwise: its own way
        return

    class FoldingTable(Table):
        def add_row(self, *renderables: Any, **kwargs: Any) -> None:
            super().add_row(*renderables, **kwargs)
            for column in self.columns:
                column.overflow = "fold"

    class FoldingColumns(Columns):
        def __init__(self, renderables: Any = None, *args: Any, **kwargs: Any) -> None:
            super().__init__(renderables, *args, **kwargs)
            for item in self.renderables:
                if isinstance(item, Text):  # its own overflow is the one rich keeps, over the cell's
                    item.overflow = "fold"

    rich_utils.Table, rich_utils.Columns = FoldingTable, FoldingColumns  # type: ignore[misc]
    try:
        yield
    finally:
        rich_utils.Table, rich_utils.Columns = Table, Columns  # type: ignore[misc]


class LiteralCommand(_LiteralHelp, TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _refuse_repeated(self, ctx, args)
        return super().parse_args(ctx, args)


def _refuse_repeated(cmd: Any, ctx: Any, args: list[str]) -> None:
    """An option that takes one value, given twice (``--split train --split eval``), is a usage error: click
    keeps the last silently, and a report of ``eval`` alone would pass for both. Options that can be repeated
    say so in their help (``--role``, ``--by``); flags given twice are harmless."""
    if ctx.resilient_parsing or not args:
        return
    errors = _click_exceptions()
    try:
        _, _, order = cmd.make_parser(ctx).parse_args(args=list(args))
    except errors.ClickException:
        return  # the parse proper reports it
    counts: dict[int, int] = {}
    for p in order:
        counts[id(p)] = counts.get(id(p), 0) + 1
    for p in cmd.get_params(ctx):
        n = counts.get(id(p), 0)
        single = getattr(p, "param_type_name", "") == "option" and not (p.multiple or p.is_flag or p.count)
        if n > 1 and single:
            name = max(p.opts, key=len)
            raise errors.UsageError(f"{name} is given {n} times; it takes one value", ctx)


class LiteralGroup(_LiteralHelp, TyperGroup):
    pass


# `-h` is `--help` everywhere (sub-commands inherit it from the root context).
CONTEXT = {"help_option_names": ["-h", "--help"]}

#: The commands in the order ``--help`` lists them: (module, attribute) of each. A command's module is
#: imported only when that command is built: ``runlog summarize ...`` imports and builds summarize alone
#: (typer reads every parameter of every command it builds; all of them cost ~0.08 s a process).
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("inspect_cmd", "inspect_command"),
    "summarize": ("summarize_cmd", "summarize_command"),
    "metrics": ("metrics_cmd", "metrics_app"),
    "render-trajectory": ("render_cmd", "render_command"),
    "upload-wandb": ("upload_cmd", "upload_command"),
    "plot": ("plot_cmd", "plot_command"),
    "doctor": ("doctor_cmd", "doctor_command"),
    "report": ("report_cmd", "report_command"),
    "diff": ("diff_cmd", "diff_command"),
    "watch": ("watch_cmd", "watch_command"),
}


def _version(value: bool) -> None:
    if value:
        write_stdout(f"runlog {__version__}\n")  # a reader gone away (``| head -0``) is no error, exit 0
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """runlog: what is in an RL run, is it valid, and how is each role doing."""


def build_app(names: Collection[str] | None = None) -> typer.Typer:
    """The typer application with every command, or only ``names`` (what ``main`` runs: the command asked
    for). The help, the options and the behaviour of a command are the same either way."""
    t = typer.Typer(
        name="runlog",
        cls=LiteralGroup,
        context_settings=CONTEXT,
        help=(
            "Post-hoc analysis of RL post-training runs from raw Parquet/JSONL.\n\n"
            "Examples:\n\n"
            "  runlog inspect sample_runs/debate_grpo\n"
            "  runlog summarize sample_runs/debate_grpo --by role\n"
            "  runlog report sample_runs/debate_grpo -o report.html"
        ),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        rich_markup_mode="rich",
    )
    t.callback()(_root)
    for name, (module, attr) in COMMANDS.items():
        if names is not None and name not in names:
            continue
        target = getattr(importlib.import_module(f"{__package__}.{module}"), attr)
        if isinstance(target, typer.Typer):
            t.add_typer(target, name=name, cls=LiteralGroup)
        else:
            t.command(name)(target)
    _literal_help_everywhere(t)
    return t


def _literal_help_everywhere(t: typer.Typer) -> None:
    """Every command, those of sub-groups included, draws its help through :class:`LiteralCommand`."""
    for info in t.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = LiteralCommand
    for group in t.registered_groups:
        if group.typer_instance is not None:
            _literal_help_everywhere(group.typer_instance)


_FULL: list[typer.Typer] = []


def full_app() -> typer.Typer:
    """The application with every command, built once (``--help``, ``--version``, a typo, and tests)."""
    if not _FULL:
        _FULL.append(build_app())
    return _FULL[0]


def __getattr__(name: str) -> Any:
    """``app``: ``full_app()``, built on first use."""
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """The command line: a known command is built alone; anything else (``--help``, ``--version``, a typo)
    gets the whole application, whose help lists every command and whose errors suggest the right one."""
    take_interrupts()  # done already by ``runlog.__main__``, before the imports; not by an older entry point
    OWNS_PROCESS[0] = True
    try:
        first = sys.argv[1] if len(sys.argv) > 1 else ""
        application = build_app([first]) if first in COMMANDS else full_app()
        errors = _click_exceptions()
        try:
            code = application(prog_name="runlog", standalone_mode=False)
        except errors.ClickException as exc:
            sys.exit(_command_line_error(exc, errors))
        except typer.Abort:
            print("Aborted.", file=sys.stderr)
            sys.exit(1)
    except KeyboardInterrupt:
        # Outside a command's ``handle_errors``: while its module loads, or the command line is parsed.
        code = EXIT_INTERRUPTED
    finally:
        flush_stdout()  # here, not at exit: help and version whose reader went away keep their exit code
        _quiet_teardown()
    if code == EXIT_INTERRUPTED and not SAID_INTERRUPTED[0]:
        fail("interrupted", EXIT_INTERRUPTED)  # typer makes a Ctrl-C outside ``handle_errors`` exit 130 unsaid
    if code == EXIT_INTERRUPTED:
        # Polars' threads may still be winding down the read the Ctrl-C cancelled; the interpreter's teardown
        # under them aborted the process (SIGABRT: exit 134 for 130, one time in three mid-read). What was said is
        # flushed; the exits of the commands' own files ran as the interrupt unwound them.
        _exit_now(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _exit_now(code: int) -> None:
    import contextlib
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _click_exceptions() -> Any:
    """The exceptions module of the click that typer runs on (vendored as ``typer._click`` since 0.22)."""
    import typer.core

    vendored = getattr(typer.core, "_click", None)
    return (vendored if vendored is not None else importlib.import_module("click")).exceptions


def _command_line_error(exc: Any, errors: Any) -> int:
    """An error of the command line itself (an unknown option or command, a missing argument, a bad value), as
    one line, ``Error: <command>: <reason> (see '<command> -h')``, instead of click's block in a box; a group
    called with nothing (``runlog metrics``) shows its help, as before. The exit code is click's (2)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        try:
            from typer import rich_utils

            rich_utils.rich_format_error(exc)
        except ImportError:  # pragma: no cover  (typer without rich)
            exc.show()
        return int(exc.exit_code)
    from ..textsafe import visible

    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "runlog"
    reason = visible(" ".join(exc.format_message().split()), keep_newlines=False)
    hint = f" (see '{where} -h')" if isinstance(exc, errors.UsageError) else ""
    print(f"Error: {where}: {reason}{hint}", file=sys.stderr)
    return int(exc.exit_code)


def _quiet_teardown() -> None:
    """After the command: a Ctrl-C while the interpreter tears down (W&B's exit hooks, threads joining) ends
    the process at once with 130, what was printed flushed, instead of a traceback from inside a hook."""
    import contextlib
    import os
    import signal

    def interrupted(_signum: int, _frame: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(130)

    with contextlib.suppress(ValueError):  # not the main thread: the handler is left alone
        signal.signal(signal.SIGINT, interrupted)
