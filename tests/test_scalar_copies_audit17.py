"""A copy of a native scalars shard left in a sub-folder (``backup/scalars.p0.jsonl`` beside ``scalars.p0.jsonl``),
an upload audit: both files claim process 0, so the copy is merged in as a second shard of it and its values count
twice (a summary family's count summed with the copy's, process 0 weighed twice in a step's mean). Both stay read,
as a second sample file of one split, step and process does; the warning named both files but said "averaged over
the two", which is not what a merge of shards does. Expected figures worked out here from the values written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.scalars import summarize_scalars

P0 = {"step": 0, "loss": 1.0, "loss__count": 3, "r/mean": 0.5, "r/std": 0.1, "r/count": 10}
P1 = {"step": 0, "loss": 2.0, "loss__count": 1, "r/mean": 1.5, "r/std": 0.3, "r/count": 30}


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")


def make_run(root: Path) -> None:
    (root / "run.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "r", "roles": []}))
    write(root / "scalars.p0.jsonl", P0)
    write(root / "scalars.p1.jsonl", P1)


def figures(root: Path) -> dict[str, float]:
    table = summarize_scalars(open_run(root))
    return dict(zip(table["key"], table["last"], strict=True))


@pytest.mark.parametrize("copy", ["backup/scalars.p0.jsonl", "old/run/scalars.p0.jsonl"])
def test_a_copied_scalars_shard_is_said_counted_twice(tmp_path: Path, copy: str) -> None:
    """One warning, on the copy, names both files and says what the merge does: counted twice. Both stay read, and
    the figures are the merge of the three shards, as the warning says (loss weighed (3+3):1, r/count summed to 50)."""
    root = tmp_path / "r"
    make_run(root)
    alone = figures(root)
    assert alone["loss"] == pytest.approx((3 * 1.0 + 1 * 2.0) / 4) and alone["r/count"] == 40
    assert alone["r/mean"] == pytest.approx((10 * 0.5 + 30 * 1.5) / 40)  # each shard weighed by its r/count
    (root / copy).parent.mkdir(parents=True)
    shutil.copy(root / "scalars.p0.jsonl", root / copy)
    said = [(p.path, p.message) for p in open_run(root).warnings]
    assert said == [
        (
            copy,
            "scalars of the same process 0 as scalars.p0.jsonl: both files are read and merged as shards, so if one "
            "is a copy of the other its values are counted twice (counts summed twice, the process weighed twice in a "
            "step's mean)",
        )
    ]
    merged = figures(root)
    assert merged["loss"] == pytest.approx((3 * 1.0 + 3 * 1.0 + 1 * 2.0) / 7)  # process 0 weighed twice
    assert merged["r/count"] == 50  # its count summed twice
    assert merged["r/mean"] == pytest.approx((10 * 0.5 + 10 * 0.5 + 30 * 1.5) / 50)  # no r/mean__count: r/count weighs
