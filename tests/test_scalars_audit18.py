"""Audit a18 (diff, re-audit): how shards of a scalar merge, and what the notes say about it.

- Diff F2: a shard's value weighed by its ``k__count`` was merged as ``v * w / w``: 0.1 * 3 / 3 =
  0.10000000000000002, a figure nobody logged; ``summarize --scalars`` gave a mean (0.29999999999999993) below
  its own min and max (0.30000000000000004). A mean of one value is that value; any mean lies within its values.
- Re-audit F6: an AReaL file whose step 1 has ``{"r/mean": 2.0, "r/count": 3}`` and ``{"r/mean": 6.0}``: r/mean
  3.0 (the second shard weighed as one value), r/count 3 (it adds none), and no note: ``mixed_weights`` returned
  at once where no key ends in ``__count``, though a ``k/count`` weighs its ``k/mean`` too. The note is said now,
  with what the merged count then means."""

from __future__ import annotations

import json
from pathlib import Path

import runlog
from runlog import open_run
from runlog.analysis.scalars import mixed_weights, summarize_scalars


def _run(path: Path, shards: list[list[dict]]) -> Path:
    with runlog.RunWriter(path, name=path.name, durable=False, clock=lambda: 1.7e9) as w:
        w.log_samples(0, [{"reward": 1.0}], split="train")
    for i, recs in enumerate(shards):
        (path / f"scalars.p{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_a_mean_of_one_shard_is_its_value(tmp_path: Path) -> None:
    """clip_frac 0.1 with a __count of 3 at every step: every figure is 0.1 exactly."""
    run = _run(tmp_path / "c3", [[{"step": s, "clip_frac": 0.1, "clip_frac__count": 3} for s in range(10)]])
    [row] = summarize_scalars(open_run(run)).to_dicts()
    assert (row["last"], row["mean"], row["min"], row["max"]) == (0.1, 0.1, 0.1, 0.1)


def test_a_mean_lies_within_its_min_and_max(tmp_path: Path) -> None:
    """acc 0.2 and 0.4 from two shards at each of 20 steps: each step 0.30000000000000004 (0.2 + 0.4 rounds up),
    and the mean over the steps that value too, not 0.3 (polars' sum of the 20), below the min."""
    run = _run(
        tmp_path / "two",
        [[{"step": s, "acc": 0.2} for s in range(20)], [{"step": s, "acc": 0.4} for s in range(20)]],
    )
    [row] = summarize_scalars(open_run(run)).to_dicts()
    assert row["min"] <= row["mean"] <= row["max"]
    assert row["mean"] == row["min"] == row["max"] == 0.30000000000000004


def test_areal_shards_one_weighed_by_k_count_one_not_are_said(tmp_path: Path) -> None:
    """Re-audit F6: the shard without r/count is weighed as one value (r/mean 3.0), the merged r/count (3) sums
    the counts logged; the note names r/mean, says the shard without a weight counted as one value, and that the
    merged r/count leaves it out."""
    path = tmp_path / "areal"
    path.mkdir()
    recs = [{"global_step": 1, "r/mean": 2.0, "r/count": 3}, {"global_step": 1, "r/mean": 6.0}]
    (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = open_run(path)
    figures = {r["key"]: r["last"] for r in summarize_scalars(run).to_dicts()}
    assert figures == {"r/mean": 3.0, "r/count": 3.0}
    note = mixed_weights(run)
    assert note is not None
    assert "r/mean (1 step(s), first 1)" in note and "for a summary family's k/mean its record's k/count" in note
    assert "weighed as one value" in note and "merged k/count (r/count)" in note and "adds none" in note


def test_areal_shards_that_all_carry_a_count_are_not_mixed(tmp_path: Path) -> None:
    """Both shards with r/count (2.0 x 3, 6.0 x 1): the weighted mean 3.0 and the count 4, no note."""
    path = tmp_path / "areal"
    path.mkdir()
    recs = [{"global_step": 1, "r/mean": 2.0, "r/count": 3}, {"global_step": 1, "r/mean": 6.0, "r/count": 1}]
    (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = open_run(path)
    assert {r["key"]: r["last"] for r in summarize_scalars(run).to_dicts()} == {"r/mean": 3.0, "r/count": 4.0}
    assert mixed_weights(run) is None
