"""What only the program that owns the process may change: environment variables other libraries read, and
the garbage collector. The command line opts in at its entry point (``enable_command_line_tweaks``); a
library caller (a notebook, a trainer) who never does gets none of it: ``summarize(open_run(...))``,
``inspect_run`` or ``upload_wandb`` leave ``os.environ`` and ``gc`` as they found them."""

from __future__ import annotations

import os
from dataclasses import dataclass


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


__all__ = ["TWEAKS", "Tweaks", "enable_command_line_tweaks"]
