"""What each figure aggregates, against independent counts: a sample counts once unless the row is per role,
train and eval are never pooled silently, per-sample columns are never repeated as if per role."""

from __future__ import annotations

import json
import statistics

import polars as pl
import pytest

from runlog import RunWriter, open_run
from runlog.analysis import summarize as S
from runlog.analysis import texts as M

ROLES = ["solver", "verifier", "judge"]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """3 train steps of 8 samples and 2 eval steps of 4; three roles with distinct rewards per role; one
    sample per train step without a judge; exceptions on sample 0 of each train step."""
    root = tmp_path_factory.mktemp("known") / "run"
    truth = []
    with RunWriter(root, name="known", roles=ROLES, durable=False) as w:
        for step in range(3):
            for split, n in (("train", 8), ("eval", 4 if step in (0, 2) else 0)):
                rows = []
                for i in range(n):
                    row = {
                        "reward": float(i % 4) / 4 + step,
                        "group_id": f"{split}-{step}-g{i // 4}",
                        "prompt": f"p{i // 4}",
                        "completion": f"<think>t{i}</think><answer>{i % 2}</answer>",
                        "reward_components": {"fmt": float(i % 2)},
                        "exception": "boom" if split == "train" and i == 0 else None,
                    }
                    for k, role in enumerate(ROLES):
                        if role == "judge" and i == 7:
                            continue
                        row[f"{role}_reward"] = 10.0 * k + i
                        row[f"{role}_kl"] = 0.01 * (k + 1)
                    rows.append(row)
                    truth.append({"step": step, "split": split, **row})
                if rows:
                    w.log_samples(step, rows, split=split)
    return open_run(root), pl.DataFrame(truth, infer_schema_length=None)


def test_without_role_every_sample_counts_once(known):
    run, truth = known
    df = S.summarize(run, ["step"])
    assert df.columns[:2] == ["split", "step"]
    expected = truth.group_by("split", "step").agg(pl.len().alias("n"), pl.col("reward").mean().alias("m"))
    got = df.join(expected, on=["split", "step"])
    assert got.height == expected.height == 5
    assert got["reward_count"].to_list() == got["n"].to_list()  # 8 or 4 a step: never 3x (once per role)
    assert got["reward_mean"].to_list() == pytest.approx(got["m"].to_list(), abs=1e-12)
    run_row = S.summarize(run, [], filters=S.Filters(splits=["train"]))
    assert run_row["reward_count"].to_list() == [24]
    assert run_row["exception_rate"].to_list() == pytest.approx([3 / 24])


def test_per_role_counts_one_value_per_sample_and_role(known):
    run, truth = known
    df = S.summarize(run, ["role"], filters=S.Filters(splits=["train"]))
    counts = dict(zip(df["role"], df["reward_count"], strict=True))
    assert counts == {"solver": 24, "verifier": 24, "judge": 21}  # the judge is missing on 3 samples
    judge = df.filter(pl.col("role") == "judge").row(0, named=True)
    vals = truth.filter((pl.col("split") == "train") & pl.col("judge_reward").is_not_null())["judge_reward"]
    assert judge["reward_mean"] == pytest.approx(statistics.mean(vals.to_list()), abs=1e-12)
    # The per-sample columns: once over all the samples of the split, the same for every role and labelled.
    assert "exception_rate" not in df.columns and "component/fmt_mean" not in df.columns
    assert df["sample:exception_rate"].to_list() == pytest.approx([3 / 24] * 3)
    assert df["sample:component/fmt_mean"].to_list() == pytest.approx([0.5] * 3)


def test_splits_are_a_key_unless_one_is_picked(known):
    run, truth = known
    df = S.summarize(run, ["role"])
    assert df.select("split", "role").rows() == [(s, r) for s in ("eval", "train") for r in sorted(ROLES)]
    train = S.summarize(run, ["role"], filters=S.Filters(splits=["train"]))
    picked = df.filter(pl.col("split") == "train").drop("split")
    assert picked.select(train.columns).equals(train)
    # Diversity and format per step: train and eval rows apart.
    div = M.diversity_frame(run, ["step"])
    assert div.select("split", "step").rows() == [("eval", 0), ("eval", 2), ("train", 0), ("train", 1), ("train", 2)]
    fmt = M.format_frame(run, "think-answer-strict", ["step"])
    counts = truth.group_by("split", "step").len().sort("split", "step")
    assert fmt["texts"].to_list() == counts["len"].to_list()


def test_cli_by_run_counts_samples_and_says_which_split(cli, known):
    run, truth = known
    r = cli("summarize", run.root, "--by", "run", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["split"], x["reward_count"]) for x in rows] == [("eval", 8), ("train", 24)]
    r = cli("summarize", run.root, "--by", "step", "--format", "json")
    assert "note: this run has the splits eval, train" in r.stderr


def test_report_shows_per_sample_columns_once_and_the_train_split(known):
    pytest.importorskip("matplotlib")
    from runlog.report import build_report

    run, _ = known
    html = build_report(run)
    assert "Split train" in html
    summary = html.split("Per sample, all roles together", 1)
    assert len(summary) == 2  # the failed rate and the components: once, not under every role
    assert ">failed<" not in summary[0].rsplit("<table", 1)[-1]  # not a column of the per-role table
    assert "0.125" in summary[1]  # 3 of the 24 train samples failed


def test_cli_metrics_say_which_keys_they_added(cli, known):
    run, _ = known
    for sub in ("diversity", "format"):
        r = cli("metrics", sub, run.root, "--by", "step", "--format", "json")
        assert r.exit_code == 0, r.stderr
        assert {row["split"] for row in json.loads(r.stdout)} == {"train", "eval"}
        assert "note: this run has the splits eval, train" in r.stderr
        r = cli("metrics", sub, run.root, "--by", "step", "--split", "train", "--format", "json")
        assert "split" not in json.loads(r.stdout)[0] and "note: this run has the splits" not in r.stderr
