"""The ``runlog`` command (pyproject's console script) and ``python -m runlog``.

Ctrl-C is taken over (``process.take_interrupts``) before the command line's modules load (typer, rich, the
commands: a few tenths of a second): a Ctrl-C then ends as one anywhere, ``Error: interrupted`` and exit 130,
where Python's own printed a traceback of the imports. Here, not in ``runlog.cli``: importing the package as a
library (a notebook, the tests) installs no signal handler."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .process import take_interrupts

        take_interrupts()
        from .cli.app import main as command_line

        command_line()
    except KeyboardInterrupt:
        # While the command line loads (``command_line`` says a Ctrl-C after that itself, and ends the process).
        from .errors import EXIT_INTERRUPTED

        sys.stderr.write("Error: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    main()
