"""Each row's step and split come from its file's path as scanned (``formats.common.per_file_value``): checked here
against a plain dictionary lookup, with paths no file has, null paths, null values, and many files."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from runlog.formats.base import FileInfo
from runlog.formats.common import per_file_value, source_column


def _file(path: str, step: int | None, split: str | None) -> FileInfo:
    info = FileInfo(
        path=path.rsplit("/", 1)[-1], abspath=Path(path), layout="flink", fmt="parquet", kind="samples", bytes=0
    )
    info.step, info.split = step, split
    return info


@pytest.mark.parametrize("n", [1, 3, 300, 2500])
def test_values_are_those_of_each_rows_file(n: int) -> None:
    rng = random.Random(n)
    files = [
        _file(
            f"/runs/ä b/flink_logs/batch_debug_data_{'train' if i % 3 else 'eval'}_{i}.parquet",
            None if i % 7 == 5 else rng.randrange(10**6),
            None if i % 11 == 4 else ("train" if i % 3 else "eval"),
        )
        for i in range(n)
    ]
    paths = [str(f.abspath) for f in files] + ["/elsewhere/x.parquet", None]
    rows = [rng.choice(paths) for _ in range(5000)]
    # As the layouts use them: step and split beside the scanned path, which is then replaced, under its name.
    got = (
        pl.DataFrame({"source": rows}, schema={"source": pl.String})
        .lazy()
        .with_columns(
            per_file_value(files, "step", pl.Int64()).alias("step"),
            per_file_value(files, "split", pl.String()).alias("split"),
        )
        .with_columns(source_column(files))
        .collect()
    )
    truth = {str(f.abspath): (f.step, f.split) for f in files}
    assert got["step"].to_list() == [truth.get(p, (None, None))[0] if p else None for p in rows]
    assert got["split"].to_list() == [truth.get(p, (None, None))[1] if p else None for p in rows]
    # The run-relative path of a known file; any other path as it was scanned.
    relative = {str(f.abspath): f.path for f in files}
    assert got["source"].to_list() == [relative.get(p, p) if p else None for p in rows]
    assert got.schema == {"source": pl.String, "step": pl.Int64, "split": pl.String}


def test_no_files_gives_nulls() -> None:
    got = pl.DataFrame({"source": ["/a.parquet", None]}).with_columns(
        per_file_value([], "step", pl.Int64()).alias("s"), source_column([])
    )
    assert got["s"].to_list() == [None, None]
    assert got["source"].to_list() == ["/a.parquet", None]
