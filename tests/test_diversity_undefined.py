"""Where a distinct-n is undefined (the set has no n-gram of that order), both definitions say so the same
way: null (``-`` in a table), never 0 for one and null for the other (docs/metrics.md). And the diversity
table's section titles name only the columns they hold."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from runlog.cli.app import app
from runlog.metrics import diversity as D

from conftest import SAMPLE_RUNS, make_native_run, native_rows, write_native_samples

ORDERS = (1, 2, 3, 4)
SETS = [
    [],  # no text
    [""],  # no token
    ["   ", "\n"],
    ["yes"],  # one word: unigrams only
    ["yes", "no", "maybe"],  # one word each: no bigram in the set
    ["a b", "c"],  # bigrams, no trigram
    ["a b c d e", "a b"],  # every order
]


@pytest.mark.parametrize("texts", SETS, ids=[repr(s) for s in SETS])
def test_both_distinct_n_are_null_for_the_same_sets(texts):
    for n in ORDERS:
        plain, li = D.distinct_n(texts, n), D.distinct_li2016_n(texts, n)
        assert (plain is None) == (li is None), (texts, n, plain, li)
        has_ngram = any(len(t.split()) >= n for t in texts)
        assert (plain is not None) == has_ngram, (texts, n)
        if has_ngram:
            tokens = sum(len(t.split()) for t in texts)
            distinct = len({tuple(t.split()[i : i + n]) for t in texts for i in range(len(t.split()) - n + 1)})
            assert li == pytest.approx(distinct / tokens)


def test_many_sets_at_once_agree_with_one_at_a_time():
    texts = [t for s in SETS for t in s]
    sets = np.array([k for k, s in enumerate(SETS) for _ in s], dtype=np.int64)
    frame = D.diversity_by_set(pl.Series(texts, dtype=pl.String), sets, len(SETS))
    for k, s in enumerate(SETS):
        row = frame.row(k, named=True)
        for n in ORDERS:
            assert row[f"distinct_li2016_{n}"] == D.distinct_li2016_n(s, n)
            assert (row[f"distinct_{n}"] is None) == (row[f"distinct_li2016_{n}"] is None)


def test_group_means_of_both_leave_out_the_same_groups(tmp_path):
    """--over group averages each metric over the row's groups: a group of one-word answers has no bigram,
    so neither distinct_2 nor distinct_li2016_2 counts it (li2016 used to count it as 0 and halve the mean)."""
    groups = {"g0": ["yes", "no", "yes", "no"], "g1": ["the cat sat", "a dog ran", "the cat sat", "one more"]}
    run = make_native_run(tmp_path / "run", steps=[0], n=8)
    rows = native_rows(0, 8)  # group_id s0-g0 for the first four samples, s0-g1 for the next four
    for row, text in zip(rows, groups["g0"] + groups["g1"], strict=True):
        row["completion"] = text
    write_native_samples(run / "samples" / "train" / "step_00000000.p0.parquet", rows)
    r = CliRunner().invoke(app, ["metrics", "diversity", str(run), "--format", "json", "--text", "completion"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    alone = D.distinct_li2016_n(groups["g1"], 2)
    assert row["distinct_li2016_2"] == pytest.approx(alone)
    assert row["distinct_2"] == pytest.approx(D.distinct_n(groups["g1"], 2))


def _table(*extra: str) -> str:
    env = {"COLUMNS": "200", "NO_COLOR": "1"}
    r = CliRunner().invoke(
        app,
        ["metrics", "diversity", str(SAMPLE_RUNS / "debate_grpo"), "--steps", "0:1", "--split", "train", *extra],
        env=env,
    )
    assert r.exit_code == 0, r.output
    return r.stdout


def test_no_compression_in_a_title_without_compression_columns():
    plain = _table()
    assert "compression" not in plain.lower()
    assert "self_bleu_n" in plain
    assert "compression_ratio" in _table("--compression")
