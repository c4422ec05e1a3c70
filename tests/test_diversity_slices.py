"""Past ``CHUNK_TEXTS`` texts, diversity is measured in slices of whole sets (bounded memory: the per-role texts
of a million-sample run took 10 GB at once): every figure of every set is the one measured all at once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from runlog.metrics import diversity as D


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    words = ["alpha", "beta", "gamma", "delta", "é", "the", "answer", "<think>", "42", "x"]
    out: list[str] = []
    for _ in range(n):
        k = int(rng.integers(0, 12))
        out.append("" if k == 11 else " ".join(rng.choice(words, size=k)))
    return out


@pytest.mark.parametrize("chunk", [1, 7, 50])
@pytest.mark.parametrize("compression", [False, True])
def test_slices_give_the_figures_of_one_pass(monkeypatch, chunk, compression):
    rng = np.random.default_rng(chunk)
    n_sets = 40
    # Sets of every size: empty ones (never named), single texts, one larger than a slice; texts of a set spread
    # over the frame, not together.
    sizes = rng.integers(0, 6, size=n_sets)
    sizes[3], sizes[17] = 0, 60
    sets = np.repeat(np.arange(n_sets), sizes)
    rng.shuffle(sets)
    texts = pl.Series(_texts(rng, len(sets)), dtype=pl.String)
    whole = D.diversity_by_set(texts, sets, n_sets, compression=compression)
    monkeypatch.setattr(D, "CHUNK_TEXTS", chunk)
    sliced = D.diversity_by_set(texts, sets, n_sets, compression=compression)
    assert sliced.columns == whole.columns and sliced.height == whole.height == n_sets
    assert sliced["s"].to_list() == list(range(n_sets))
    for col in whole.columns:
        a, b = whole[col].to_list(), sliced[col].to_list()
        assert [x is None for x in a] == [x is None for x in b], col
        assert np.allclose([x for x in a if x is not None], [x for x in b if x is not None], rtol=1e-12, atol=0), col


def test_a_frame_under_the_slice_is_measured_at_once(monkeypatch):
    """Below ``CHUNK_TEXTS`` nothing changes: one pass (the same digits as before)."""
    calls = []
    real = D._by_set
    monkeypatch.setattr(D, "_by_set", lambda *a: calls.append(len(a[1])) or real(*a))
    texts = pl.Series(["a b", "a b", "c d e"])
    D.diversity_by_set(texts, np.array([0, 0, 1]), 2)
    assert calls == [3]
    monkeypatch.setattr(D, "CHUNK_TEXTS", 2)
    calls.clear()
    D.diversity_by_set(texts, np.array([0, 0, 1]), 2)
    assert calls == [2, 1]
