"""Audit a12 (writer): one 1-D array per row (per-token log-probs, ``[logp[i, :n_i] for i in ...]``) was written as
a list of float64 through Python floats, whatever its dtype: float32 log-probs took twice their bytes, and
bfloat16 ones were not the float32 that docs/writer.md says. A ragged column of one dtype is now a list of that
dtype, built from the arrays' memory; the values are the arrays' own, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.writer import RunWriter


def _written(run: Path, column: str) -> pa.ChunkedArray:
    (f,) = sorted((run / "samples" / "train").glob("*.parquet"))
    return pq.read_table(f, columns=[column]).column(column)


def test_float32_rows_stay_float32(tmp_path: Path) -> None:
    buf = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    lengths = [6, 0, 3, 1]
    rows = [buf[i, :n] for i, n in enumerate(lengths)]
    rows[1] = None  # a row without per-token values
    want = [r.copy() for r in rows if r is not None]  # the values given, before the buffer is reused
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [0.0, 1.0, 0.5, 0.25], "logp": rows})
        buf[:] = 0  # the trainer reuses its buffer after the call
    col = _written(tmp_path / "run", "logp")
    assert col.type == pa.list_(pa.float32())
    got = col.to_pylist()
    assert got[1] is None
    for given, have in zip(want, [g for g in got if g is not None], strict=True):
        assert np.array_equal(np.asarray(have, np.float32).view(np.uint32), given.view(np.uint32))


def test_several_dtypes_are_written_as_before(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [0.0, 1.0], "x": [np.array([1.5]), np.array([2], np.int64)]})
    col = _written(tmp_path / "run", "x")
    assert col.type == pa.list_(pa.float64()) and col.to_pylist() == [[1.5], [2.0]]


def test_jax_bfloat16_rows_are_float32(tmp_path: Path) -> None:
    jnp = pytest.importorskip("jax.numpy")
    vals = [[1.1, 2.2, -0.0], [3.3]]
    rows = [jnp.asarray(v, jnp.bfloat16) for v in vals]
    with RunWriter(tmp_path / "run") as w:
        w.log_samples(0, {"reward": [0.0, 1.0], "logp": rows})
    col = _written(tmp_path / "run", "logp")
    assert col.type == pa.list_(pa.float32())
    # bfloat16 to float32 is exact: the float32 of each bfloat16 value, sign of zero included.
    want = [np.asarray(r, np.float32) for r in rows]
    for w_, h in zip(want, col.to_pylist(), strict=True):
        assert np.array_equal(np.asarray(h, np.float32).view(np.uint32), w_.view(np.uint32))
