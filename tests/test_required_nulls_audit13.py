"""Audit 13 (upload-wandb): a native file whose required ``split`` (``step``, ``sample_id``) column holds nulls
was "valid: no problems found" in ``inspect``, while upload-wandb must key those rows apart. Now a warning names
the file and counts the rows, from the footer's null counts (no data read). The count comes from pyarrow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import SAMPLE_RUNS


def _null_out(path: Path, column: str, rows: int) -> int:
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[:rows] = [None] * rows
    i = table.schema.get_field_index(column)
    table = table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))
    pq.write_table(table, path)
    return pq.read_table(path, columns=[column]).column(0).null_count


def test_a_null_split_in_a_native_file_is_a_warning(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "debate_grpo", run)
    target = sorted((run / "samples" / "train").glob("*.parquet"))[0]
    nulls = _null_out(target, "split", 3)
    rows = pq.read_metadata(target).num_rows
    r = cli("inspect", run, "--format", "json")
    said = [p for p in json.loads(r.stdout)["problems"] if "no split" in p["message"]]
    assert said == [
        {
            **said[0],
            "path": target.relative_to(run).as_posix(),
            "message": f"{nulls} of its {rows} rows have no split (null, in a required column)",
        }
    ], said
    assert said[0]["kind"] == "warning"
    clean = cli("inspect", SAMPLE_RUNS / "debate_grpo", "--format", "json")
    assert not [p for p in json.loads(clean.stdout)["problems"] if "required column" in p["message"]]
