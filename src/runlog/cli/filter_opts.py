"""The row filters as default-style options, for the commands not yet on ``options.py``'s annotations (diff,
plot, doctor); the spelling and help are ``options.py``'s. This module goes when those commands use
``Splits``, ``Split``, ``Steps`` and ``Roles``."""

from __future__ import annotations

import typer

from .options import ROLES_HELP, SPLIT_HELP, SPLITS_HELP, STEPS_HELP, steps_checked

SPLITS_OPTION = typer.Option(None, "--split", metavar="SPLIT", help=SPLITS_HELP)
SPLIT_OPTION = typer.Option(None, "--split", metavar="SPLIT", help=SPLIT_HELP)
STEPS_OPTION = typer.Option(None, "--steps", metavar="STEPS", help=STEPS_HELP, callback=steps_checked())
ROLES_OPTION = typer.Option(None, "--role", metavar="ROLE", help=ROLES_HELP)
