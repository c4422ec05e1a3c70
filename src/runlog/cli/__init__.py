"""The ``runlog`` command line: thin typer commands over the library.

Importing it is entering the command line: the process tweaks a library call never makes (one OpenBLAS
thread, no Ray usage statistics, polars' footer read size, GC freezing during uploads) are enabled here,
before numpy is imported; see ``runlog.process``."""

from ..process import enable_command_line_tweaks

enable_command_line_tweaks()
