"""The one summary engine: final values and partials come from the same spec, and a fleet whose runs do not all
have the filtered role is summarised (no crash), with rows for the runs that have it."""

from __future__ import annotations

import polars as pl
import pytest

from runlog import open_run
from runlog.analysis import stats as T
from runlog.analysis.filters import Filters
from runlog.analysis.partials import combine_partials, summarize_partials
from runlog.analysis.summarize import summarize
from runlog.fleet import summarize_fleet

from conftest import make_flink_run, make_native_run


def test_a_fleet_run_without_the_filtered_role_gives_no_rows_and_no_crash(tmp_path, cli):
    with_roles = make_flink_run(tmp_path / "v1", steps=range(3))
    without = make_flink_run(tmp_path / "v0", steps=range(2), version=0)
    result = summarize_fleet([str(with_roles), str(without)], ["run", "role"], filters=Filters(roles=("solver",)))
    assert result.frame["run"].to_list() == ["v1"] and result.frame["role"].to_list() == ["solver"]
    alone = summarize(open_run(with_roles), ["role"], filters=Filters(roles=("solver",)))
    assert result.frame["reward_mean"].to_list() == pytest.approx(alone["reward_mean"].to_list(), abs=1e-12)
    r = cli("summarize", with_roles, without, "--by", "run", "--role", "solver", "--format", "csv")
    assert r.exit_code in (0, 1) and "internal error" not in r.stderr, r.stderr
    assert pl.read_csv(r.stdout.encode())["run"].to_list() == ["v1"]


@pytest.mark.parametrize("by", [["role"], ["role", "step"], ["step"], []])
def test_partials_of_one_part_combine_to_the_final_values(tmp_path, by):
    """Both outputs of the spec agree: a run's partials, merged alone, give its summary (std via M2: 1e-12)."""
    run = open_run(make_native_run(tmp_path / "r", steps=range(3), n=8))
    final = summarize(run, by, split_key=False)
    keys = [k for k in final.columns if k in ("role", "step")]
    merged, notes = combine_partials(summarize_partials(run, by), keys)
    assert notes == [] and merged.columns == final.columns
    for c in final.columns:
        if final[c].dtype.is_float():
            assert merged[c].to_list() == pytest.approx(final[c].to_list(), rel=1e-12, abs=1e-12), c
        else:
            assert merged[c].to_list() == final[c].to_list(), c


def test_the_spec_names_every_reported_and_partial_column():
    assert T.REWARD_STATS == (
        "reward_mean",
        "reward_std",
        "reward_min",
        "reward_max",
        "reward_median",
        "reward_count",
        "reward_nan",
        "reward_null",
    )
    assert T.KL_STATS == ("kl_mean", "kl_std", "kl_min", "kl_max", "kl_count", "kl_nan", "kl_null")
    probe = T.Source(pl.col("x"), pl.col("x").is_nan(), pl.col("x").is_null())
    names = [e.meta.output_name() for e in T.exprs("reward", T.REWARD, probe, partial=True)]
    assert names == [
        "reward_n",
        "reward_mean",
        "reward_m2",
        "reward_min",
        "reward_max",
        "reward_median",
        "reward_nan",
        "reward_null",
    ]
    names = [e.meta.output_name() for e in T.exprs("exception", T.EXCEPTION, probe, partial=True)]
    assert names == ["exception_sum", "exception_n"]


def test_a_component_name_with_a_colon_is_kept(tmp_path):
    """Column names of a role are prefixed ``i:`` inside the engine; a component named ``a:b`` is not one."""
    import pyarrow.parquet as pq

    from conftest import flink_table

    root = make_flink_run(tmp_path / "r", steps=[0])
    t = flink_table(1)
    metrics = [{"correct": float(i % 2), "a:b": 0.25 * i} for i in range(t.num_rows)]
    t = t.set_column(t.column_names.index("reward_metrics"), "reward_metrics", pl.Series(metrics).to_arrow())
    pq.write_table(t, root / "flink_logs" / "batch_debug_data_train_1.parquet")
    run = open_run(root)
    df = summarize(run, ["role"], filters=Filters.from_options(steps="1"))
    assert df["sample:component/a:b_mean"].to_list() == pytest.approx([0.375] * 3)
