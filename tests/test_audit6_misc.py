"""Findings of the sixth round of user audits that belong to no other file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

from runlog import open_run
from runlog.analysis.aggregate import group_key_expr

ROOT = Path(__file__).resolve().parents[1]


def test_a_file_written_without_statistics_is_not_said_to_lack_group_ids(tmp_path, cli):
    """Its footer does not tell how many group ids are null: the column is read (0 null, by pyarrow), so the
    note on samples without group_id is not printed and the groups are the ids."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / "sample_runs" / "debate_grpo", run)
    path = run / "samples" / "train" / "step_00000003.p0.parquet"
    pq.write_table(pq.read_table(path), path, write_statistics=False)
    assert pq.read_table(path, columns=["group_id"]).column(0).null_count == 0
    assert pq.read_metadata(path).row_group(0).column(0).statistics is None
    r = cli("summarize", run, "--by", "role", "--split", "train")
    assert r.exit_code == 0, r.stderr
    assert "no group_id" not in r.stderr
    key = group_key_expr(open_run(run), True)
    assert key is not None and key.meta.root_names() == ["group_id"]
