"""Which text a metric reads: the policy's generated text by default, each role's own with --by role, never
a system prompt; debate_grpo's format adherence agrees with its own `format` reward component."""

from __future__ import annotations

import json

import polars as pl
import pytest

from runlog import open_run
from runlog.analysis import texts as M
from runlog.analysis.filters import Filters
from runlog.analysis.summarize import summarize

from conftest import SAMPLE_RUNS

TRAIN = Filters(splits=["train"])


@pytest.fixture(scope="module")
def debate():
    return open_run(SAMPLE_RUNS / "debate_grpo")


def _last_turn(messages, speaker):
    said = [m["content"] for m in messages if m["role"] == "assistant" and m["name"] == speaker and m["content"]]
    return said[-1] if said else None


def test_auto_is_the_policy_roles_last_turn_and_per_role_each_roles_own(debate):
    raw = debate.samples.filter(pl.col("split") == "train").select("sample_id", "messages", "completion").collect()
    auto = M.texts_frame(debate, "auto", filters=TRAIN)
    assert auto["sample_id"].to_list() == raw["sample_id"].to_list()
    want = [_last_turn(m, "solver") for m in raw["messages"].to_list()]
    assert auto["text"].to_list() == want
    assert all("three-agent debate" not in t for t in want)  # the system prompt is never a policy text
    per_role = M.texts_frame(debate, "auto", filters=TRAIN, per_role=True)
    for role in ("solver", "verifier", "judge"):
        got = per_role.filter(pl.col("role") == role)
        expected = [(s, _last_turn(m, role)) for s, m in zip(raw["sample_id"], raw["messages"], strict=True)]
        assert list(zip(got["sample_id"], got["text"], strict=True)) == [e for e in expected if e[1] is not None]
    answers = M.texts_frame(debate, "answer", filters=TRAIN)["text"].to_list()
    # Where the solver tagged its answer the answer block's inside, else the trainer's extracted answer.
    assert answers == [
        t.rsplit("<answer>", 1)[1].split("</answer>")[0] if t and "<answer>" in t else c
        for t, c in zip(want, raw["completion"], strict=True)
    ]


def test_per_role_texts_come_in_speaking_order_the_same_every_time(debate):
    """Each sample's speakers in the order they first speak, on every call: the order of a join's matches is
    not fixed, and a diversity sum over rows in another order changed the last digits from one call to the
    next (``metrics diversity --by role,step`` printed other digits cold and warm)."""
    raw = debate.samples.select("sample_id", "messages").collect()
    want = []
    for sid, messages in zip(raw["sample_id"].to_list(), raw["messages"].to_list(), strict=True):
        spoken = [m["name"] or m["role"] for m in messages if m["role"] == "assistant" and m["content"]]
        want += [(sid, who) for who in dict.fromkeys(spoken)]
    frames = [M.texts_frame(debate, "auto", per_role=True) for _ in range(6)]
    assert list(zip(frames[0]["sample_id"], frames[0]["role"], strict=True)) == want
    assert all(f.equals(frames[0]) for f in frames[1:])


def test_debate_format_adherence_agrees_with_its_format_component(debate):
    """The sample trainer scores format 1.0 for a tagged answer and 0.5 for a plain one, so per step the
    component's mean is 0.5 + 0.5 x adherence over the samples that were scored (no exception)."""
    per = M.format_per_sample(debate, "think-answer-strict", filters=TRAIN)
    scored = debate.samples.filter(pl.col("exception").is_null()).select("sample_id").collect()
    adherence = per.join(scored, on="sample_id").group_by("step").agg(pl.col("passed").mean().alias("a"))
    comp = summarize(debate, ["step"], filters=TRAIN).select("step", "component/format_mean")
    both = adherence.join(comp, on="step")
    assert both.height == 32 and both["a"].max() > 0.5
    assert (0.5 + 0.5 * both["a"] - both["component/format_mean"]).abs().max() < 1e-12


def test_format_by_role_reads_each_roles_text(debate):
    df = M.format_frame(debate, "think-answer-strict", ["role"], filters=TRAIN)
    rates = dict(zip(df["role"], df["adherence"], strict=True))
    assert rates["solver"] > 0.5 and rates["verifier"] == 0.0 and rates["judge"] == 0.0


def test_cli_text_choice_and_rate_wording(cli):
    r = cli("metrics", "format", SAMPLE_RUNS / "debate_grpo", "--split", "train", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 32 and all(row["adherence"] > 0 for row in rows) and rows[-1]["adherence"] > 0.9
    r = cli("metrics", "format", SAMPLE_RUNS / "debate_grpo", "--split", "train", "--text", "completion", "-f", "json")
    assert all(row["adherence"] == 0 for row in json.loads(r.stdout))  # completion holds the bare answer
