"""Dict cells of CSV fallback files: a sign is part of a number, never of None/True/False; a cell that is not a
dict of numbers is reported (a warning naming the file), and the run is still summarised."""

from __future__ import annotations

import math

import polars as pl
import pytest

from runlog import open_run
from runlog.textparse import parse_number_dict

from conftest import flink_table, make_flink_run


@pytest.mark.parametrize("cell", ["{'acc': -None}", "{'acc': +None}", "{'acc': -True}", "{'a': 1, 'acc': +False}"])
def test_a_sign_before_none_true_false_is_not_a_number(cell):
    assert parse_number_dict(cell) is None


def test_signed_numbers_still_parse():
    out = parse_number_dict("{'a': -1.5, 'b': +2, 'c': -inf, 'd': -nan, 'e': None, 'f': True}")
    assert out is not None
    assert out["a"] == -1.5 and out["b"] == 2.0 and out["c"] == -math.inf and math.isnan(out["d"])
    assert out["e"] is None and out["f"] == 1.0


def _csv_run(tmp_path, cells):
    root = make_flink_run(tmp_path / "r", steps=[0, 1])
    t = pl.from_arrow(flink_table(2)).with_columns(pl.Series("reward_metrics", cells))
    t.write_csv(root / "flink_logs" / "batch_debug_data_train_2.csv")
    return root


def test_an_unparseable_dict_cell_is_reported_not_a_crash(tmp_path, cli):
    root = _csv_run(tmp_path, ["{'acc': -None}", "{'acc': 1.0}", "{'acc': 0.5}", "{'acc': 2}"])
    run = open_run(root)
    [w] = [p for p in run.warnings if "reward_metrics" in p.message]
    assert w.path.endswith("batch_debug_data_train_2.csv") and "1 reward_metrics cell" in w.message
    r = cli("summarize", root, "--by", "step", "--format", "csv")
    assert r.exit_code in (0, 1), r.stderr
    assert "internal error" not in r.stderr and "reward_metrics" in " ".join(r.stderr.split())
    df = pl.read_csv(r.stdout.encode())
    # The bad cell's sample has no components; the other three of step 2 keep theirs: (1 + 0.5 + 2) / 3.
    assert df.filter(pl.col("step") == 2)["component/acc_mean"].to_list() == pytest.approx([3.5 / 3])
    i = cli("inspect", root)
    assert i.exit_code in (0, 1) and "reward_metrics" in " ".join(i.stdout.split())
