"""Analyses over a ``Run``: each returns plain data or polars DataFrames; the CLI only formats them."""
