"""Generation-quality metrics over runs: diversity (mode collapse) and format adherence.

Text only, no run: the single-set functions of ``runlog.metrics.diversity`` (``distinct_n``, ``self_bleu_n``,
...) and the format specs. The same metrics over a run (``diversity_frame``, ``format_frame``,
``format_per_sample``: a ``Run`` in, polars DataFrames out) are analysis, in ``runlog.analysis.texts``, and
exported as ``runlog.diversity_frame`` and so on. docs/metrics.md defines every metric and spec.
"""

from __future__ import annotations

from .format import BUILTIN as FORMAT_SPECS
from .format import get_spec, load_spec

__all__ = [
    "FORMAT_SPECS",
    "get_spec",
    "load_spec",
]
