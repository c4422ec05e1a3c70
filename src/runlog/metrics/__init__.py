"""Generation-quality metrics over runs: diversity (mode collapse) and format adherence.

Public API: ``diversity_frame``, ``format_frame`` and ``format_per_sample`` (over a ``Run``, polars
DataFrames out), the single-set functions of ``runlog.metrics.diversity`` (``distinct_n``,
``self_bleu_n``, ...), and the format specs. docs/metrics.md defines every metric and spec.
"""

from __future__ import annotations

from .api import diversity_frame, format_frame, format_per_sample, texts_frame
from .format import BUILTIN as FORMAT_SPECS
from .format import get_spec, load_spec

__all__ = [
    "FORMAT_SPECS",
    "diversity_frame",
    "format_frame",
    "format_per_sample",
    "get_spec",
    "load_spec",
    "texts_frame",
]
