"""``summarize``: exact values against hand-computed ones, NaN/null apart, groups, filters, scalars, CLI."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from runlog import open_run
from runlog.analysis import summarize as S
from runlog.errors import UsageError

from conftest import SAMPLE_RUNS, flink_table, make_flink_run, native_rows, write_native_samples

NAN = float("nan")


def _row(step, gid, k, rewards, kls, reward=None, exception=None, comps=None):
    """A native sample with per-role rewards/KL (dicts role -> value)."""
    base = native_rows(step, 1)[0]
    base.update(
        sample_id=f"s{step}-{gid}-{k}",
        group_id=gid,
        reward=reward if reward is not None else rewards.get("solver"),
        roles=[{"role": r, "reward": rewards[r], "kl": kls[r]} for r in rewards],
        exception=exception,
        reward_components=comps,
    )
    return base


@pytest.fixture
def handmade(tmp_path):
    """Two steps. Step 0: group g0 (solver 1,1,1 -> zero advantage; verifier 0,1,NaN), group g1 (one sample:
    size-1 group). Step 1: group g2 with a null solver reward and an exception, and a judge only here."""
    rows0 = [
        _row(
            0,
            "g0",
            0,
            {"solver": 1.0, "verifier": 0.0},
            {"solver": 0.1, "verifier": 0.2},
            comps=[{"name": "fmt", "value": 1.0}],
        ),
        _row(
            0,
            "g0",
            1,
            {"solver": 1.0, "verifier": 1.0},
            {"solver": 0.3, "verifier": NAN},
            comps=[{"name": "fmt", "value": 0.0}],
        ),
        _row(
            0,
            "g0",
            2,
            {"solver": 1.0, "verifier": NAN},
            {"solver": 0.2, "verifier": 0.4},
            comps=[{"name": "fmt", "value": NAN}],
        ),
        _row(0, "g1", 0, {"solver": 0.5, "verifier": 0.25}, {"solver": 0.0, "verifier": 0.0}),
    ]
    rows1 = [
        _row(
            1,
            "g2",
            0,
            {"solver": None, "verifier": 0.5, "judge": 1.0},
            {"solver": 0.5, "verifier": None, "judge": 0.9},
            exception="Traceback: boom",
        ),
        _row(
            1, "g2", 1, {"solver": 0.0, "verifier": 0.75, "judge": 0.0}, {"solver": 0.7, "verifier": 0.1, "judge": 0.8}
        ),
    ]
    root = tmp_path / "run"
    write_native_samples(root / "samples" / "train" / "step_00000000.p0.parquet", rows0)
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows1)
    return open_run(root)


def test_by_role_exact(handmade):
    df = S.summarize(handmade, ["role"])
    assert df["role"].to_list() == ["judge", "solver", "verifier"]
    solver = df.row(1, named=True)
    valid = [1.0, 1.0, 1.0, 0.5, 0.0]
    assert solver["reward_mean"] == pytest.approx(statistics.mean(valid), abs=1e-12)
    assert solver["reward_std"] == pytest.approx(statistics.stdev(valid), abs=1e-12)
    assert solver["reward_median"] == statistics.median(valid)
    assert (solver["reward_min"], solver["reward_max"]) == (0.0, 1.0)
    assert (solver["reward_count"], solver["reward_nan"], solver["reward_null"]) == (5, 0, 1)
    assert solver["kl_mean"] == pytest.approx(statistics.mean([0.1, 0.3, 0.2, 0.0, 0.5, 0.7]), abs=1e-12)
    assert solver["kl_count"] == 6
    # Prompt groups of the solver: g0 (all 1.0 -> zero), g1 (size 1 -> zero), g2 (only 0.0 valid -> zero).
    assert solver["zero_adv_frac"] == 1.0
    # Per-sample columns are given once, over every sample (all roles together), under a "sample:" name.
    assert "exception_rate" not in df.columns
    assert df["sample:exception_rate"].to_list() == pytest.approx([1 / 6] * 3)
    verifier = df.row(2, named=True)
    v_valid = [0.0, 1.0, 0.25, 0.5, 0.75]
    assert verifier["reward_mean"] == pytest.approx(statistics.mean(v_valid), abs=1e-12)
    assert (verifier["reward_count"], verifier["reward_nan"], verifier["reward_null"]) == (5, 1, 0)
    assert (verifier["kl_count"], verifier["kl_mean"]) == (4, pytest.approx(statistics.mean([0.2, 0.4, 0.0, 0.1])))
    # g0 has verifier rewards 0 and 1 (not zero), g1 is size 1 (zero), g2 has 0.5 and 0.75 (not zero).
    assert verifier["zero_adv_frac"] == pytest.approx(1 / 3)
    judge = df.row(0, named=True)
    assert judge["reward_count"] == 2 and judge["reward_std"] == pytest.approx(statistics.stdev([1.0, 0.0]))
    assert judge["zero_adv_frac"] == 0.0
    # Component means skip NaN and samples without the component: fmt is 1.0 and 0.0 over step 0. They are per
    # sample in the data, so the same for every role's row (never a per-role figure).
    assert df["sample:component/fmt_mean"].to_list() == [0.5, 0.5, 0.5]


def test_single_sample_role_has_null_std(handmade):
    df = S.summarize(handmade, ["role", "step"], filters=S.Filters(roles=["judge"], steps=S.StepRange(1, 1)))
    assert df.height == 1
    assert df["reward_count"][0] == 2
    df = S.summarize(handmade, ["role", "group"], filters=S.Filters(roles=["solver"]))
    g1 = df.filter(pl.col("group") == "g1").row(0, named=True)
    assert (g1["reward_count"], g1["reward_std"], g1["zero_adv_frac"]) == (1, None, 1.0)


def test_by_step_and_split_and_window(handmade):
    df = S.summarize(handmade, ["role", "step"], window=2)
    solver = df.filter(pl.col("role") == "solver")
    assert solver["step"].to_list() == [0, 1]
    m0, m1 = statistics.mean([1.0, 1.0, 1.0, 0.5]), 0.0
    assert solver["reward_mean"].to_list() == pytest.approx([m0, m1])
    assert solver["reward_mean_ma"].to_list() == pytest.approx([m0, (m0 + m1) / 2])
    # --window adds step to the keys when it is missing.
    assert "step" in S.summarize(handmade, ["role"], window=3).columns
    with pytest.raises(UsageError):
        S.summarize(handmade, ["role"], window=0)


def test_without_role_each_sample_counts_once(handmade):
    """Without role among the keys, a statistic is over samples: the sample's reward, one value per sample
    (never the per-role values pooled, which would count a sample once per role)."""
    sample_rewards = [1.0, 1.0, 1.0, 0.5, None, 0.0]  # the samples' own reward (here: the solver's)
    df = S.summarize(handmade, [])
    assert df.height == 1
    row = df.row(0, named=True)
    assert (row["reward_count"], row["reward_null"]) == (5, 1)
    assert row["reward_mean"] == pytest.approx(statistics.mean([r for r in sample_rewards if r is not None]))
    # KL of a sample: the mean of its roles' KL (NaN/null roles left out of that mean's inputs by polars).
    sample_kls = [
        statistics.mean([0.1, 0.2]),
        NAN,  # verifier KL NaN: the sample's mean KL is NaN, counted apart
        statistics.mean([0.2, 0.4]),
        0.0,
        statistics.mean([0.5, 0.9]),
        statistics.mean([0.7, 0.1, 0.8]),
    ]
    valid_kls = [k for k in sample_kls if k == k]
    assert row["kl_count"] == len(valid_kls)
    assert row["kl_mean"] == pytest.approx(statistics.mean(valid_kls), abs=1e-12)
    assert row["exception_rate"] == pytest.approx(1 / 6)
    by_step = S.summarize(handmade, ["step"])
    assert by_step["reward_count"].to_list() == [4, 1]  # valid sample rewards per step
    # zero-advantage over the sample reward: g0 (1,1,1) zero, g1 (size 1) zero; g2 (0.0 only valid) zero.
    assert by_step["zero_adv_frac"].to_list() == [1.0, 1.0]


def test_role_filter_makes_role_a_key(handmade):
    df = S.summarize(handmade, ["step"], filters=S.Filters(roles=["verifier"]))
    assert df.columns[:2] == ["role", "step"]
    assert df["reward_count"].to_list() == [3, 2]  # the verifier's valid rewards per step


def test_bad_keys_and_steps():
    with pytest.raises(UsageError, match="--by 'model'"):
        S.check_keys(["model"])
    with pytest.raises(UsageError):
        S.StepRange.parse("a:b")
    with pytest.raises(UsageError):
        S.StepRange.parse("5:2")
    assert S.StepRange.parse("3:") == S.StepRange(3, None)
    assert S.StepRange.parse("7") == S.StepRange(7, 7)


def _flink_nan_run(tmp_path):
    root = make_flink_run(tmp_path / "f", steps=[0, 1], version=0)
    make_flink_run(root, steps=[2, 3, 4], version=1)
    t = flink_table(5)
    t = t.set_column(t.schema.get_field_index("solver_reward"), "solver_reward", pa.array([NAN, None, 2.0, 3.0]))
    t = t.set_column(t.schema.get_field_index("judge_kl"), "judge_kl", pa.array([None, NAN, 0.3, 0.3]))
    pq.write_table(t, root / "flink_logs" / "batch_debug_data_eval_5.parquet")
    return open_run(root)


@pytest.mark.parametrize("by", [["role"], ["role", "step"], ["split", "role"], ["role", "split", "step"]])
def test_flink_wide_path_equals_long_path(tmp_path, monkeypatch, by):
    run = _flink_nan_run(tmp_path)
    for filters in (
        S.Filters(),
        S.Filters(splits=["train"]),
        S.Filters(roles=["judge"]),
        S.Filters(steps=S.StepRange(1, 4)),
    ):
        wide = S.summarize(run, by, filters=filters)
        with monkeypatch.context() as m:
            m.setattr(S, "_summarize_wide", lambda *a, **k: None)
            long = S.summarize(run, by, filters=filters)
        assert_frame_equal(wide, long, check_exact=False, rel_tol=1e-12)


def test_flink_v0_rows_are_role_unknown_not_dropped(tmp_path):
    run = _flink_nan_run(tmp_path)
    df = S.summarize(run, ["role"], split_key=False)
    unknown = df.filter(pl.col("role").is_null()).row(0, named=True)
    assert unknown["reward_count"] == 8  # the 8 v0 samples, with their total reward
    assert unknown["kl_count"] == 0
    assert S.unknown_role_rows(df)
    solver = df.filter(pl.col("role") == "solver").row(0, named=True)
    assert (solver["reward_nan"], solver["reward_null"], solver["reward_count"]) == (1, 1, 14)
    judge = df.filter(pl.col("role") == "judge").row(0, named=True)
    assert judge["kl_count"] == 14 and judge["zero_adv_frac"] is None  # Flink has no prompt groups
    assert judge["sample:exception_rate"] == pytest.approx(4 / 16)


def test_groups_from_prompt_text_when_there_is_no_group_id(tmp_path):
    """verl dumps carry no group id: identical prompt text within a step is the GRPO group."""
    d = tmp_path / "rollouts"
    d.mkdir()
    lines = [
        {"input": "p1", "output": "a", "score": 1.0, "step": 3},
        {"input": "p1", "output": "b", "score": 1.0, "step": 3},
        {"input": "p2", "output": "c", "score": 0.0, "step": 3},
        {"input": "p2", "output": "d", "score": 1.0, "step": 3},
    ]
    (d / "3.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = open_run(d)
    # By default summarize reads no text: the groups are there to be found, and it says so.
    assert S.summarize(run, ["role"])["zero_adv_frac"][0] is None and S.prompt_groups_skipped(run)
    df = S.summarize(run, ["role"], prompt_groups=True)
    assert df["role"].to_list() == [None]
    assert df["zero_adv_frac"][0] == 0.5
    assert df["reward_mean"][0] == 0.75


def test_by_group_keeps_the_groups_of_each_step_apart(tmp_path, cli):
    """The same prompt at two steps, the same group id at two steps: four groups, not two (a prompt group is
    one group id within a split and step), counted by hand; ``step`` is added to the keys and said."""
    d = tmp_path / "rollouts"
    d.mkdir()
    for step, scores in ((3, [1.0, 0.0]), (4, [1.0, 1.0])):
        lines = [{"input": p, "output": "x", "score": v, "step": step} for p in ("p1", "p2") for v in scores]
        (d / f"{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = open_run(d)
    df = S.summarize(run, ["group"], prompt_groups=True)
    assert df.columns[:2] == ["step", "group"] and df.height == 4
    assert sorted(zip(df["step"], df["reward_mean"], df["reward_count"], strict=True)) == [
        (3, 0.5, 2),
        (3, 0.5, 2),
        (4, 1.0, 2),
        (4, 1.0, 2),
    ]
    assert df.filter(pl.col("step") == 4)["zero_adv_frac"].to_list() == [1.0, 1.0]
    native = tmp_path / "native" / "samples" / "train"
    for step, rewards in ((0, (1.0, 0.0)), (1, (1.0, 1.0))):
        rows = [_row(step, "g0", k, {"solver": r}, {"solver": 0.1}) for k, r in enumerate(rewards)]
        write_native_samples(native / f"step_{step:08d}.p0.parquet", rows)
    by_id = S.summarize(open_run(tmp_path / "native"), ["group"])
    assert by_id["step"].to_list() == [0, 1] and by_id["group"].to_list() == ["g0", "g0"]
    assert by_id["reward_mean"].to_list() == [0.5, 1.0] and by_id["zero_adv_frac"].to_list() == [0.0, 1.0]
    result = cli("summarize", d, "--by", "group", "--prompt-groups")
    assert result.exit_code == 0, result.output
    assert "a prompt group is one group id within a step: `step` was added to the keys" in result.output


def test_empty_step_gives_counts_not_errors(tmp_path):
    rows = native_rows(0, 3)
    for r in rows:
        r["reward"] = None
        r["roles"] = [{"role": "solver", "reward": None, "kl": None}]
    write_native_samples(tmp_path / "r" / "samples" / "train" / "step_00000000.p0.parquet", rows)
    df = S.summarize(open_run(tmp_path / "r"), ["role", "step"])
    row = df.row(0, named=True)
    assert (row["reward_count"], row["reward_null"], row["reward_mean"], row["zero_adv_frac"]) == (0, 3, None, None)


def test_sample_run_matches_a_direct_computation():
    """debate_grpo through summarize equals the same numbers computed straight from the Parquet files."""
    run = open_run(SAMPLE_RUNS / "debate_grpo")
    df = S.summarize(run, ["role"])
    assert df.columns[:2] == ["split", "role"]  # train and eval are never pooled silently
    raw = pl.read_parquet(SAMPLE_RUNS / "debate_grpo" / "samples" / "*" / "*.parquet")
    roles = raw.select("split", "roles").explode("roles").unnest("roles")
    for split, role in df.select("split", "role").iter_rows():
        vals = roles.filter((pl.col("role") == role) & (pl.col("split") == split))["reward"]
        valid = vals.drop_nulls().drop_nans()
        got = df.filter((pl.col("role") == role) & (pl.col("split") == split)).row(0, named=True)
        assert got["reward_mean"] == pytest.approx(valid.mean(), rel=1e-12)
        assert got["reward_std"] == pytest.approx(float(np.std(valid.to_numpy(), ddof=1)), rel=1e-12)
        assert got["reward_count"] == valid.len()
        assert got["reward_null"] == vals.null_count()
        assert got["reward_nan"] == int(vals.is_nan().sum())


# ---------------------------------------------------------------------------------------------------------
# Scalars and correlations
# ---------------------------------------------------------------------------------------------------------
def test_scalars_weighted_merge_aliases_and_globs(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "scalars.p0.jsonl").write_text(
        json.dumps({"step": 0, "time": 1.0, "train/reward": 1.0, "train/reward__count": 3, "grad_global_norm": 2.0})
        + "\n"
        + json.dumps({"step": 1, "time": 2.0, "train/reward": 0.0, "train/reward__count": 1, "loss": NAN})
        + "\n"
    )
    (root / "scalars.p1.jsonl").write_text(
        json.dumps({"step": 0, "time": 1.0, "train/reward": 0.0, "train/reward__count": 1, "grad/global_norm": 4.0})
        + "\n"
    )
    run = open_run(root)
    df = S.summarize_scalars(run)
    assert df["key"].to_list() == ["grad/global_norm", "loss", "train/reward"]  # __count hidden, alias merged
    reward = df.filter(pl.col("key") == "train/reward").row(0, named=True)
    # step 0: (1.0*3 + 0.0*1) / 4 = 0.75; step 1: 0.0
    assert (reward["last"], reward["mean"], reward["count"]) == (0.0, pytest.approx(0.375), 2)
    grad = df.filter(pl.col("key") == "grad/global_norm").row(0, named=True)
    assert grad["mean"] == 3.0 and grad["count"] == 1  # two trainer versions' keys, one step, plain mean
    loss = df.filter(pl.col("key") == "loss").row(0, named=True)
    assert (loss["count"], loss["nan"]) == (0, 1) and math.isnan(loss["last"])  # the run ended on NaN
    only = S.summarize_scalars(run, keys=["train/*"], aliases=S.load_aliases(pairs=["loss=train/loss"]))
    assert only["key"].to_list() == ["train/loss", "train/reward"]


def test_scalars_of_local_statstracker_shards_merge_as_the_statistics_they_are(tmp_path):
    """``StatsTracker(reduce="local")``: each process writes the mean, std, min, max and count of its own
    values. Merged, they equal the statistics of all the values (numpy on the raw values), not a mean of each
    shard's min, max, count and std; a process with no values (count 0, its mean NaN) is no value at all."""
    import runlog

    values = {0: [0.0, 1.0], 1: [10.0, 20.0, 30.0, 40.0], 2: []}
    for p, vals in values.items():
        writer = runlog.RunWriter(tmp_path / "r", name="r", process_index=p, run_id="r", durable=False)
        tracker = runlog.StatsTracker(reduce="local", process_index=p)
        with tracker.scope("train"):
            tracker.summary("reward", np.array(vals))
        tracker.commit(0, writer)
        writer.close()
    every = np.array(values[0] + values[1])
    df = S.summarize_scalars(open_run(tmp_path / "r"))
    got = dict(zip(df["key"].to_list(), df["last"].to_list(), strict=True))
    assert got["train/reward/mean"] == pytest.approx(every.mean(), rel=1e-12)
    assert got["train/reward/std"] == pytest.approx(every.std(), rel=1e-12)  # the tracker's std: ddof 0
    assert (got["train/reward/min"], got["train/reward/max"], got["train/reward/count"]) == (0.0, 40.0, 6.0)
    assert df["nan"].sum() == 0


def test_scalars_weights_follow_their_record_and_their_key(tmp_path):
    """A key logged twice at a step by one shard keeps its later value, weighed by that record's own
    ``__count`` (one process logs a key once per step: the earlier line is a replay, not a share; it was
    averaged in, giving 6.0); a renamed key (an alias) keeps its weights; a value of weight 0 is no value (its
    step has none), not NaN."""
    root = tmp_path / "r"
    root.mkdir()
    p0 = [
        {"step": 0, "x": 2.0, "old/loss": 1.0, "old/loss__count": 3, "e": 1.0, "e__count": 0},
        {"step": 0, "x": 10.0, "x__count": 3},
        {"step": 1, "e": 3.0, "e__count": 2},
    ]
    p1 = [
        {"step": 0, "x": 4.0, "x__count": 4, "new/loss": 5.0, "new/loss__count": 1, "e": 2.0, "e__count": 0},
        {"step": 1, "e": 5.0, "e__count": 2},
    ]
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in p0))
    (root / "scalars.p1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in p1))
    run = open_run(root)
    df = S.summarize_scalars(run, aliases=S.load_aliases(pairs=["old/loss=new/loss"]))
    rows = {r["key"]: r for r in df.iter_rows(named=True)}
    assert rows["x"]["last"] == pytest.approx(np.mean([10.0] * 3 + [4.0] * 4))  # 46/7; p0's 2.0 replaced
    assert rows["new/loss"]["last"] == pytest.approx((1.0 * 3 + 5.0) / 4)  # 2.0
    assert (rows["e"]["count"], rows["e"]["nan"], rows["e"]["last"]) == (1, 0, 4.0)
    from runlog.analysis.scalars import merged_steps

    steps = merged_steps(run).collect().filter(pl.col("key") == "e").sort("step")
    assert steps["value"].to_list() == [None, 4.0]


def test_scalars_a_shard_that_logged_nan_makes_its_step_nan(tmp_path):
    """Process 1's loss diverged at step 2: the step is NaN (counted in ``nan``), not process 0's value
    alone; ``last`` is what the run ended on (NaN), not the last finite value beside ``last_step``."""
    root = tmp_path / "r"
    root.mkdir()
    p0 = [{"step": s, "loss": float(s + 1), "grad/norm": 0.5} for s in range(4)]
    p1 = [{"step": s, "loss": NAN if s == 2 else float(s + 1)} for s in range(4)]
    p0[3]["grad/norm"] = NAN
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in p0))
    (root / "scalars.p1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in p1))
    df = S.summarize_scalars(open_run(root))
    loss = df.filter(pl.col("key") == "loss").row(0, named=True)
    assert (loss["count"], loss["nan"], loss["mean"], loss["last"]) == (3, 1, pytest.approx(7 / 3), 4.0)
    grad = df.filter(pl.col("key") == "grad/norm").row(0, named=True)
    assert (grad["count"], grad["nan"], grad["last_step"]) == (3, 1, 3) and math.isnan(grad["last"])


def test_alias_file_errors(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("[1, 2]")
    with pytest.raises(UsageError):
        S.load_aliases(bad)
    with pytest.raises(UsageError):
        S.load_aliases(pairs=["nope"])


def test_correlations_match_numpy(handmade):
    df = S.correlations(handmade)
    pair = df.filter((pl.col("x") == "reward/solver") & (pl.col("y") == "reward/verifier")).row(0, named=True)
    solver = [1.0, 1.0, 0.5, 0.0]  # samples where both are valid
    verifier = [0.0, 1.0, 0.25, 0.75]
    assert pair["n"] == 4
    assert pair["pearson"] == pytest.approx(np.corrcoef(solver, verifier)[0, 1], abs=1e-12)


def test_correlations_keep_train_and_eval_apart(cli):
    """A run with train and eval: one set of correlations per split, each equal to numpy's over that split's
    samples alone (read from the files with pyarrow); --split picks one; --by is refused (its rows are pairs)."""
    run = SAMPLE_RUNS / "debate_grpo"
    r = cli("summarize", run, "--correlations", "--format", "json")
    rows = json.loads(r.stdout)
    assert {row["split"] for row in rows} == {"train", "eval"}
    for split in ("train", "eval"):
        table = pa.concat_tables(
            [
                pq.read_table(f, columns=["reward", "reward_components"])
                for f in sorted((run / "samples" / split).glob("*.parquet"))
            ]
        )
        total, correct = [], []
        for reward, comps in zip(table["reward"].to_pylist(), table["reward_components"].to_pylist(), strict=True):
            value = next((c["value"] for c in comps or [] if c["name"] == "correctness"), None)
            if reward is not None and value is not None and reward == reward and value == value:
                total.append(reward)
                correct.append(value)
        [row] = [x for x in rows if x["split"] == split and x["x"] == "reward" and x["y"] == "component/correctness"]
        assert row["n"] == len(total)
        assert row["pearson"] == pytest.approx(np.corrcoef(total, correct)[0, 1], abs=1e-12)
    r = cli("summarize", run, "--correlations", "--by", "step")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --by does not apply to --correlations")
    r = cli("summarize", run, "--scalars", "--by", "role")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --by does not apply to --scalars")


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------
def test_cli_formats(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    run = SAMPLE_RUNS / "debate_grpo"
    r = cli("summarize", run, "--by", "role", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    roles = ("judge", "solver", "verifier")
    assert [(x["split"], x["role"]) for x in rows] == [(s, r) for s in ("eval", "train") for r in roles]
    assert list(rows[0])[:15] == ["split", "role", *S.REWARD_STATS, *S.KL_STATS[:5]]
    assert "note: this run has the splits eval, train" in r.stderr
    r = cli("summarize", run, "--by", "role", "--by", "step", "--split", "train", "--format", "csv")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("role,step,reward_mean")
    out = tmp_path / "s.parquet"
    r = cli("summarize", run, "--split", "eval", "--format", "parquet", "-o", out)
    assert r.exit_code == 0 and pl.read_parquet(out).height == 3
    r = cli("summarize", run)
    assert r.exit_code == 0 and "solver" in r.stdout and "zero_adv_frac" in r.stdout
    r = cli("summarize", run, "--scalars", "--keys", "debate/*", "--format", "json")
    assert {x["key"] for x in json.loads(r.stdout)} >= {"debate/reward/solver"}
    r = cli("summarize", run, "--correlations", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0].keys() == {"split", "x", "y", "pearson", "n"}
    assert "note: this run has the splits eval, train" in r.stderr
    r = cli("summarize", run, "--correlations", "--split", "train", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0].keys() == {"x", "y", "pearson", "n"}


def test_cli_nan_becomes_null_in_json(cli, tmp_path):
    run = _flink_nan_run(tmp_path)
    r = cli("summarize", run.root, "--by", "role", "--by", "split", "--format", "json")
    rows = json.loads(r.stdout)
    assert all(v is None or not (isinstance(v, float) and math.isnan(v)) for row in rows for v in row.values())


def test_cli_problems_exit_1_and_usage_errors_exit_2(cli):
    r = cli("summarize", SAMPLE_RUNS / "damaged", "--format", "json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)  # the good data was summarised
    assert "error: samples/train/step_00000001.p0.parquet" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--by", "model")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --by 'model'")
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--steps", "x")
    assert r.exit_code == 2
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--format", "parquet")
    assert r.exit_code == 2 or r.exit_code == 0  # binary to a pipe is allowed; to a terminal it is refused


def test_cli_flink_notes_unknown_roles(cli):
    r = cli("summarize", SAMPLE_RUNS / "flink_mixed", "--format", "csv")
    assert r.exit_code == 0
    assert "note: rows without per-role data" in r.stderr
    assert "warning: flink_logs/batch_debug_data_train_13.csv" in r.stderr


def test_an_empty_summary_says_why_instead_of_drawing_empty_tables(cli):
    """Filters that match nothing together (step 3 of flink_mixed is v0: no roles), a run of scalars only, and
    a fleet whose run of scalars only has no row: each said; no empty table is drawn. Filters that match nothing
    together are a usage error (exit 2), as for a fleet with no row (tests/test_summarize_audit12.py)."""
    r = cli("summarize", SAMPLE_RUNS / "flink_mixed", "--split", "train", "--steps", "3", "--role", "solver")
    assert r.exit_code == 2 and r.stdout == ""
    assert "no sample matches --split train --steps 3 --role solver together: nothing to summarise" in r.stderr
    # A run of scalars only: not an empty answer (exit 0, `[]` to a script) but a usage error, as metrics says.
    for fmt in ("table", "json", "csv"):
        r = cli("summarize", SAMPLE_RUNS / "jaxarc", "-f", fmt)
        assert r.exit_code == 2 and r.stdout == ""
        assert r.stderr == (
            f"Error: {SAMPLE_RUNS / 'jaxarc'}: this run has no per-sample data (only scalar metrics): try --scalars\n"
        )
    r = cli("summarize", f"{SAMPLE_RUNS}/*", "--by", "run", "-f", "json")
    assert "jaxarc" not in {row["run"] for row in json.loads(r.stdout)}
    assert "note: run(s) with no row, not in the table: jaxarc (`runlog summarize RUN` on one says why" in r.stderr


def test_cli_scalars_and_correlations_together_is_a_usage_error(cli):
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--scalars", "--correlations")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --scalars and --correlations")


def test_flink_sample_run_matches_a_direct_computation():
    """flink_mixed (v0 + v1 + a CSV fallback) through summarize equals numbers computed from the files."""
    root = SAMPLE_RUNS / "flink_mixed" / "flink_logs"
    frames = [pl.read_parquet(p) for p in sorted(root.glob("*.parquet"))]
    csv = pl.read_csv(root / "batch_debug_data_train_13.csv", null_values=["", "None", "null"])
    v1 = [f for f in frames if "solver_reward" in f.columns] + [csv]
    v0 = [f for f in frames if "solver_reward" not in f.columns]
    df = S.summarize(open_run(SAMPLE_RUNS / "flink_mixed"), ["role"], split_key=False)
    for role in ("solver", "verifier", "judge"):
        vals = pl.concat([f.select(pl.col(f"{role}_reward").cast(pl.Float64)) for f in v1]).to_series()
        valid = vals.drop_nulls().drop_nans()
        got = df.filter(pl.col("role") == role).row(0, named=True)
        assert got["reward_mean"] == pytest.approx(valid.mean(), rel=1e-12)
        assert got["reward_median"] == pytest.approx(valid.median(), rel=1e-12)
        assert (got["reward_count"], got["reward_null"]) == (valid.len(), vals.null_count())
    unknown = df.filter(pl.col("role").is_null()).row(0, named=True)
    total = pl.concat([f.select(pl.col("reward").cast(pl.Float64)) for f in v0]).to_series()
    assert unknown["reward_mean"] == pytest.approx(total.drop_nulls().drop_nans().mean(), rel=1e-12)


def test_jaxarc_scalars_exact():
    lines = (SAMPLE_RUNS / "jaxarc" / "batch_metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    df = S.summarize_scalars(open_run(SAMPLE_RUNS / "jaxarc"), keys=["reward_mean"])
    values = [r["metrics"]["reward_mean"] for r in records]
    row = df.row(0, named=True)
    assert row["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
    assert (row["last"], row["count"]) == (values[-1], len(values))
    assert (row["first_step"], row["last_step"]) == (records[0]["step"], records[-1]["step"])


def test_corrupt_data_page_behind_an_intact_footer_is_reported_and_skipped(cli, tmp_path):
    root = make_flink_run(tmp_path / "r", steps=[0, 1, 2])
    bad = root / "flink_logs" / "batch_debug_data_train_1.parquet"
    pq.write_table(flink_table(1, n=64), bad, compression="zstd")
    data = bytearray(bad.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    for i in range(16, len(data) - footer - 16, 3):  # the data pages; the footer at the end stays intact
        data[i] = (data[i] * 31 + 7) % 256
    bad.write_bytes(bytes(data))
    run = open_run(root)
    assert run.errors == []  # discovery reads footers only: it cannot see this
    df = S.summarize(run, ["role"])
    assert df.filter(pl.col("role") == "solver")["reward_count"][0] == 8  # steps 0 and 2, 4 rows each
    [p] = run.errors
    assert p.path.endswith("train_1.parquet") and p.kind == "unreadable" and "corrupt data" in p.message
    r = cli("summarize", root, "--format", "json")
    assert r.exit_code == 1 and "error: flink_logs/batch_debug_data_train_1.parquet: corrupt data" in r.stderr
    assert len(json.loads(r.stdout)) == 3


@pytest.mark.parametrize("run_name", ["flink_mixed", "debate_grpo"])
def test_step_batches_give_the_same_numbers(monkeypatch, run_name):
    run = open_run(SAMPLE_RUNS / run_name)
    whole = S.summarize(run, ["role", "step", "split"], window=3)
    monkeypatch.setattr(S, "BATCH_ROWS", 40)  # a few steps per batch
    assert len(S._step_batches(run, ["role", "step"], S.Filters())) > 3
    batched = S.summarize(run, ["role", "step", "split"], window=3)
    assert_frame_equal(whole, batched)
    # Filters prune files before anything is read, and give the same rows as filtering afterwards.
    f = S.Filters(steps=S.StepRange(3, 7), splits=["train"])
    assert_frame_equal(
        S.summarize(run, ["role", "step", "split"], filters=f),
        whole.drop("reward_mean_ma", "kl_mean_ma").filter(
            pl.col("step").is_between(3, 7) & (pl.col("split") == "train")
        ),
    )


def test_cli_scalar_only_run_says_to_use_scalars(cli):
    r = cli("summarize", SAMPLE_RUNS / "jaxarc")
    assert r.exit_code == 2 and "no per-sample data (only scalar metrics): try --scalars" in r.stderr
    r = cli("render-trajectory", SAMPLE_RUNS / "jaxarc")
    assert r.exit_code == 2 and "jaxarc: this run has no per-sample data to render" in r.stderr, r.stderr


def _order_sensitive_run(tmp_path, files=200, n=100):
    """Flink v1 files whose rewards span twenty orders of magnitude, so that a sum depends on the order of
    its terms: a mean computed in a different order comes out different in its last digits (polars' streaming
    engine gave a different mean on 10 runs out of 10 here)."""
    rng = np.random.default_rng(7)
    logs = tmp_path / "o" / "flink_logs"
    logs.mkdir(parents=True)
    for step in range(files):
        t = flink_table(step, n=n)
        for col in ("solver_reward", "judge_kl"):
            values = rng.standard_normal(n) * 10.0 ** rng.integers(-10, 10, n)
            t = t.set_column(t.schema.get_field_index(col), col, pa.array(values))
        pq.write_table(t, logs / f"batch_debug_data_train_{step}.parquet")
    return open_run(tmp_path / "o")


def test_the_same_run_gives_the_same_digits_every_time(tmp_path):
    run = _order_sensitive_run(tmp_path)
    assert S._engine(run, grouped=False, columns=8) == "in-memory"
    for by in (["role"], ["role", "split"]):
        first = S.summarize(run, by)
        for _ in range(6):
            assert_frame_equal(S.summarize(run, by), first, check_exact=True)


def test_large_runs_stream_and_small_ones_do_not(tmp_path, monkeypatch):
    run = _order_sensitive_run(tmp_path, files=3, n=10)
    assert S._engine(run, grouped=True, columns=8) == "in-memory"  # 30 rows
    monkeypatch.setattr(S, "SMALL_ROWS", 20)
    assert S._engine(run, grouped=True, columns=8) == "streaming"  # a group-by over more than SMALL_ROWS
    assert S._engine(run, grouped=False, columns=8) == "in-memory"  # 240 values
    monkeypatch.setattr(S, "IN_MEMORY_CELLS", 200)
    assert S._engine(run, grouped=False, columns=8) == "streaming"
    assert S._engine(run, grouped=False, columns=6) == "in-memory"  # 180 values
    assert S._engine(run, grouped=False, columns=2, per_row=3) == "in-memory"  # 90 rows of the long view x 2
    assert S._engine(run, grouped=False, columns=6, group_key=pl.col("group_id")) == "streaming"  # a group-by
    monkeypatch.setattr(S, "SMALL_ROWS", 1000)
    assert S._engine(run, grouped=True, columns=8, group_key=pl.col("group_id")) == "in-memory"
    text_key = pl.coalesce(pl.col("group_id"), pl.col("prompt").hash().cast(pl.String))
    assert S._engine(run, grouped=True, columns=8, group_key=text_key) == "streaming"  # never hold all prompts
    run.files[0].rows = None  # a file whose row count discovery could not tell
    assert S._engine(run, grouped=False, columns=1) == "streaming"


def test_samples_without_a_prompt_are_in_no_prompt_group(tmp_path):
    """Prompt groups from the prompt text: a sample with no prompt is in no group (hashing the nulls would
    make one bogus group of all of them, whose equal rewards would read as zero advantage)."""
    run = open_run(make_flink_run(tmp_path / "r", steps=[0, 1]))
    [prompts] = run.collect(lambda: [run.samples.select(pl.col("prompt").null_count())])
    assert prompts.item() == run.samples.select(pl.len()).collect().item()  # free-text trajectories: no prompt
    df = S.summarize(run, ["role"], prompt_groups=True)
    assert df["zero_adv_frac"].null_count() == df.height


def test_an_empty_summary_to_a_file_still_writes_the_file(tmp_path, cli):
    """-o FILE always (re)writes FILE, also with no row (a stale file would pass for this summary). Filters that
    match nothing together are a usage error (exit 2) instead, which writes nothing, as any usage error."""
    out = tmp_path / "out.txt"
    out.write_text("STALE")
    r = cli("summarize", SAMPLE_RUNS / "flink_mixed", "--split", "train", "--steps", "3", "--role", "solver", "-o", out)
    assert r.exit_code == 2 and "no sample matches" in r.stderr
    empty = tmp_path / "run" / "samples" / "train" / "step_00000000.p0.parquet"
    write_native_samples(empty, [])
    r = cli("summarize", tmp_path / "run", "-o", out)
    assert r.exit_code == 0 and "STALE" not in out.read_text()
    r = cli("summarize", tmp_path / "run")
    assert "note: the run's sample files hold no rows: nothing to summarise" in r.stderr
    assert "split" not in r.stderr  # no note about keys of a table not drawn


def test_a_sample_with_an_empty_roles_list_is_in_the_unknown_role_row(tmp_path):
    """``roles = []`` (a sample the trainer wrote without per-role data) is summarised under the unknown role
    with its sample reward, as a null ``roles`` is: polars explodes an empty list to no row, and the sample
    was lost from ``--by role`` (3 of 4 samples counted; ``--by split`` counted 4)."""
    from conftest import native_run_of

    rows = native_rows(0, 4, roles=("solver",))
    rows[1]["roles"], rows[1]["reward"] = None, 7.0
    rows[2]["roles"], rows[2]["reward"] = [], 5.0
    run = open_run(native_run_of(tmp_path / "run", rows))
    out = S.summarize(run, ["role"], cache=False)
    counts = dict(zip(out["role"].to_list(), out["reward_count"].to_list(), strict=True))
    assert counts == {"solver": 2, None: 2}
    unknown = out.filter(pl.col("role").is_null())
    assert unknown["reward_mean"].to_list() == [6.0]
    assert S.summarize(run, ["split"], cache=False)["reward_count"].to_list() == [4]


def test_every_reader_of_scalars_merges_them_as_summarize_does(tmp_path):
    """The plot (and the report's figures), upload-wandb and diff read per-step scalars: each gives the
    values ``summarize --scalars`` merges (default aliases applied, a summary family as its statistics)."""
    import runlog
    from runlog.analysis.diff import scalar_steps
    from runlog.analysis.scalars import DEFAULT_ALIASES, merged_steps
    from runlog.plots import scalar_frame
    from runlog.sinks.plan import step_scalars

    for p, vals in {0: [0.0, 1.0], 1: [10.0, 20.0, 30.0, 40.0]}.items():
        writer = runlog.RunWriter(tmp_path / "r", name="r", process_index=p, run_id="r", durable=False)
        tracker = runlog.StatsTracker(reduce="local", process_index=p)
        with tracker.scope("train"):
            tracker.summary("reward", np.array(vals))
        tracker.scalar(**{"grad_global_norm" if p else "grad/global_norm": 2.0 + 2 * p})
        tracker.commit(0, writer)
        writer.close()
    run = open_run(tmp_path / "r")
    want = {k: v for k, _, v in merged_steps(run, aliases=DEFAULT_ALIASES).collect().iter_rows()}
    assert want["train/reward/max"] == 40.0 and want["grad/global_norm"] == 3.0
    plotted = {k: v for k, _, v in scalar_frame(run).iter_rows()}
    assert plotted == want
    uploaded, _ = step_scalars(run, DEFAULT_ALIASES)
    assert uploaded[0] == want
    compared = {k: v for k, _, v in scalar_steps(run).iter_rows()}
    assert compared == want


@pytest.mark.parametrize(
    "extra", [["--scalars", "--window", "3"], ["--correlations", "--window", "3"], ["--scalars", "--prompt-groups"]]
)
def test_options_of_the_role_summary_are_refused_with_scalars_and_correlations(cli, extra):
    """``--window`` with ``--scalars`` was ignored without a word (exit 0, no moving average)."""
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", *extra)
    assert r.exit_code == 2 and "does not apply to" in r.stderr, r.stderr


def test_correlations_of_constants_are_undefined_and_scale_never_matters(tmp_path):
    """Two constant columns printed r = -1 (and 1.04e-16 against the reward): rounding noise (np.corrcoef
    makes the same), where r is not defined; x * 1e300 gave 0 and x * 1e-300 nothing, for a perfect
    correlation."""
    import numpy as np

    from runlog import RunWriter
    from runlog.analysis.summarize import correlations

    x = np.random.default_rng(1).random(100)
    cols = {"reward": x, "a_reward": np.full(100, 0.1), "b_reward": np.full(100, 0.7)}
    cols |= {"c_reward": x * 1e300, "d_reward": x * 1e-300}
    with RunWriter(tmp_path / "r", durable=False) as w:
        w.log_samples(0, cols)
    got = {(r["x"], r["y"]): r["pearson"] for r in correlations(open_run(tmp_path / "r")).to_dicts()}
    assert cols["a_reward"].min() == cols["a_reward"].max()  # no spread: r is undefined (np.corrcoef's -1 is noise)
    assert got[("reward/a", "reward/b")] is None and got[("reward", "reward/a")] is None
    for other in ("reward/c", "reward/d"):
        assert got[("reward", other)] == pytest.approx(np.corrcoef(x, x)[0, 1], abs=1e-12)


def test_zero_advantage_is_trls_zero_std(tmp_path):
    """A group whose rewards differ by float round-off only (a std of 1e-10) gives no learning signal: TRL counts
    it in frac_reward_zero_std (torch.isclose(std, 0): std <= 1e-8, the sample std), and so does zero_adv_frac now
    (it once asked for exact equality, and doctor missed a collapse the trainer's own metric showed). A group
    whose std is just above 1e-8 is signal, as in TRL. The independent count below is TRL's rule in numpy."""
    groups = {
        "round-off": [0.5, 0.5 + 1e-10, 0.5 - 1e-10, 0.5],
        "equal": [1.0, 1.0, 1.0, 1.0],
        "signal": [0.0, 1.0, 0.0, 1.0],
        "just-above": [0.3, 0.3 + 3e-8, 0.3, 0.3 + 3e-8],
    }
    rows = [
        _row(0, gid, k, {"solver": r}, {"solver": 0.0}) for gid, values in groups.items() for k, r in enumerate(values)
    ]
    run_dir = tmp_path / "r"
    write_native_samples(run_dir / "samples" / "train" / "step_00000000.p0.parquet", rows)
    df = S.summarize(open_run(run_dir), ["role"])
    trl = [float(np.std(v, ddof=1)) <= 1e-8 for v in groups.values()]
    assert trl == [True, True, False, False]
    assert df.row(by_predicate=pl.col("role") == "solver", named=True)["zero_adv_frac"] == pytest.approx(sum(trl) / 4)


def test_by_group_with_pooled_splits_keeps_each_splits_groups_apart(tmp_path):
    """Two --split pool the splits, but a prompt group is one split's: eval reuses train's ids at the same
    step, and a row once held both groups (a reward_std that is no real group's). split is now a key."""
    root = tmp_path / "r"
    for split, values in (("train", [0.0, 1.0, 0.0, 1.0]), ("eval", [0.5, 0.5, 0.5, 0.5])):
        rows = [_row(0, "p0", k, {"solver": r}, {"solver": 0.0}) for k, r in enumerate(values)]
        for r in rows:
            r["split"] = split
            r["sample_id"] = f"{split}-{r['sample_id']}"
        write_native_samples(root / "samples" / split / "step_00000000.p0.parquet", rows)
    from runlog.analysis.filters import Filters, StepRange

    filters = Filters(splits=("train", "eval"), steps=StepRange())
    df = S.summarize(open_run(root), ["group"], filters=filters)
    assert "split" in df.columns
    by = {r["split"]: r for r in df.iter_rows(named=True)}
    assert by["train"]["reward_std"] == pytest.approx(float(np.std([0, 1, 0, 1], ddof=1)))
    assert (by["eval"]["reward_std"], by["eval"]["zero_adv_frac"], by["train"]["zero_adv_frac"]) == (0.0, 1.0, 0.0)
