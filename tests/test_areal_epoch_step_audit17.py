"""AReaL stats: a record without ``global_step`` in a file whose records carry it (beside a per-epoch ``step``) was
placed at its per-epoch ``step`` and merged into that global step's values (loss 5.5 at global step 2, where the
file logs 2.0 there). Its global step is unknown: it is left out and said, as a record without a step is.

Expected figures are the values written here, never runlog's reading."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from runlog import open_run
from runlog.analysis.scalars import summarize_scalars
from runlog.formats.base import WARNING

LINES = [
    {"global_step": 1, "step": 1, "loss": 1.0},
    {"global_step": 2, "step": 2, "loss": 2.0},
    {"global_step": 3, "step": 1, "loss": 3.0},  # a new epoch: `step` restarts
    {"step": 2, "loss": 9.0},  # no global_step
]


def test_areal_record_without_global_step_is_stepless_and_said(tmp_path: Path) -> None:
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in LINES))
    run = open_run(tmp_path)
    (row,) = summarize_scalars(run).to_dicts()
    assert (row["key"], row["max"], row["count"]) == ("loss", 3.0, 3)  # steps 1, 2, 3 hold 1.0, 2.0, 3.0
    by_step = run.scalars.filter(pl.col("key") == "loss").collect()
    assert dict(zip(by_step["value"], by_step["step"], strict=True)) == {1.0: 1, 2.0: 2, 3.0: 3, 9.0: None}
    said = [p.message for p in run.ctx.problems if p.kind == WARNING]
    assert any("line 4: no global_step (step 2: a per-epoch counter in this file)" in w for w in said), said
    assert not any("merged with it" in w for w in said)


def test_areal_file_without_global_step_keeps_step_as_the_step(tmp_path: Path) -> None:
    """A file none of whose records holds ``global_step`` reads ``step`` as the step, as before."""
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in (1, 2)))
    (row,) = summarize_scalars(open_run(tmp_path)).to_dicts()
    assert (row["count"], row["first_step"], row["last_step"]) == (2, 1, 2)
