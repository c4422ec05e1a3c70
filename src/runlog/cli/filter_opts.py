"""The row-filter options, one spelling, syntax and help for every command (meaning: ``analysis/filters.py``;
checking a value against the run: ``analysis/check.py``)."""

from __future__ import annotations

import typer

STEPS_HELP = "Only these steps: A:B (inclusive), A:, :B, N, or a comma list (0,5,10:12)."

SPLITS_OPTION = typer.Option(None, "--split", metavar="SPLIT", help="Only these splits (repeatable).")
SPLIT_OPTION = typer.Option(None, "--split", metavar="SPLIT", help="The split (default: train, or the only split).")
STEPS_OPTION = typer.Option(None, "--steps", metavar="STEPS", help=STEPS_HELP)
ROLES_OPTION = typer.Option(None, "--role", metavar="ROLE", help="Only these roles (repeatable).")
