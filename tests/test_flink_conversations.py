"""Flink conversations: ``agent_trajectories`` (or the rendered ``trajectory``) as canonical messages, prompt,
completion and derived prompt groups, on runs written by ``tests/flink_gen.py``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from flink_gen import SHAPES, write_flink_run
from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.summarize import summarize
from runlog.render import conversation_from_row

from conftest import SAMPLE_RUNS


def _render_json(cli, root: Path, *args: str) -> list[dict]:
    r = cli("render-trajectory", root, "--format", "json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# -- tool calls from agent_trajectories ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("version", [0, 1])
def test_every_tool_call_renders_with_its_arguments_and_is_counted(cli, tmp_path, shape, version):
    """Flink's rendered string has no tool-call lines (the solver's calling turn is empty there): the
    calls come from agent_trajectories, with their arguments, paired with their results."""
    gen = write_flink_run(tmp_path / "r", steps=2, version=version, shape=shape, rounds=2)
    callers = [ep for ep in gen.episodes if ep.uses_tool]
    assert callers and len(callers) < len(gen.episodes)
    args = [a for ep in callers[:6] for a in ("--sample-id", ep.sample_id)]
    convs = {c["sample_id"]: c for c in _render_json(cli, gen.root, *args)}
    for ep in callers[:6]:
        conv = convs[ep.sample_id]
        assert conv["source"] == "messages" and conv["stats"]["tool_calls"] == 1
        [call] = [c for t in conv["turns"] for c in t["tool_calls"]]
        assert (call["id"], call["name"]) == (ep.call_id, "python")
        assert json.loads(call["arguments"]) == {"code": ep.task.code}
        [result] = [t["result"] for t in conv["turns"] if t["result"] is not None]
        assert (result["call_id"], result["name"], result["content"]) == (ep.call_id, "python", ep.task.truth)
        speakers = [t["speaker"] for t in conv["turns"] if t["role"] == "assistant"]
        assert speakers == ["solver", "solver", "verifier", "solver", "verifier", "judge"]
    r = cli("render-trajectory", gen.root, "--sample-id", callers[0].sample_id)
    assert r.exit_code == 0 and "tool calls         1" in r.stdout and ep.task.code.split("(")[0] in r.stdout


def test_canonical_messages_prompt_completion_and_group(tmp_path):
    gen = write_flink_run(tmp_path / "r", steps=3, prompts=2, group_size=3)
    df = open_run(gen.root).samples.collect()
    by_id = {ep.sample_id: ep for ep in gen.episodes}
    for row in df.iter_rows(named=True):
        ep = by_id[row["sample_id"]]
        assert row["prompt"] == ep.task.question
        assert row["completion"] == ep.completion  # the solver's turns: the calling turn has no text
        assert row["group_id"].startswith(f"train:{ep.step}:")
        named = [(m["role"], m["name"]) for m in row["messages"]]
        assert named[:2] == [("system", None), ("user", None)] and ("assistant", "judge") in named
        assert row["agent_trajectories"] and row["trajectory"]  # the raw columns are kept
    groups = df.group_by("group_id").agg(pl.col("prompt").n_unique().alias("n"), pl.len().alias("size"))
    assert groups["n"].to_list() == [1] * groups.height and set(groups["size"]) == {3}
    assert groups.height == len({(ep.step, ep.task.question) for ep in gen.episodes})


# -- the rendered-string fallback ----------------------------------------------------------------------------
@pytest.mark.parametrize("tool_lines", [False, True])
def test_fallback_from_the_rendered_string_gives_the_same_turns(tmp_path, tool_lines):
    kw = {"steps": 2, "rounds": 2, "render_tool_calls": tool_lines}
    full = write_flink_run(tmp_path / "full", **kw)
    bare = write_flink_run(tmp_path / "bare", drop_columns=["agent_trajectories"], **kw)
    a = open_run(full.root).samples.collect().sort("sample_id")
    run = open_run(bare.root)
    b = run.samples.collect().sort("sample_id")
    assert a["sample_id"].to_list() == b["sample_id"].to_list()
    for ma, mb in zip(a["messages"].to_list(), b["messages"].to_list(), strict=True):
        assert mb is not None
        assert [(m["role"], m["name"] if m["role"] == "assistant" else None, m["content"] or "") for m in ma] == [
            (m["role"], m["name"] if m["role"] == "assistant" else None, m["content"] or "") for m in mb
        ]
        if tool_lines:  # the calls are in the string too: the same calls, arguments included
            calls = [[(c["id"], c["name"], c["arguments"]) for c in m["tool_calls"] or []] for m in ma]
            assert calls == [[(c["id"], c["name"], c["arguments"]) for c in m["tool_calls"] or []] for m in mb]
    for col in ("prompt", "completion", "group_id"):
        assert a[col].to_list() == b[col].to_list()
    [note] = [n["message"] for n in run.fidelity if "read from the rendered" in n["message"]]
    assert note.startswith(f"conversations of {b.height} sample(s) in 2 file(s)")


def test_v0_with_only_the_rendered_string(tmp_path):
    gen = write_flink_run(tmp_path / "r", steps=2, version=0, drop_columns=["agent_trajectories"], rounds=1)
    rows = open_run(gen.root).samples.collect().to_dicts()
    assert len(rows) == len(gen.episodes)
    for conv in map(conversation_from_row, rows):
        assert conv.source == "messages"
        assert [t.speaker for t in conv.turns if t.role == "assistant"][-2:] == ["verifier", "judge"]


def test_unparseable_agent_trajectories_are_warned_per_file_and_read_from_the_string(cli, tmp_path):
    bad = {0: "{not json", 1: '{"unknown": {"shape": 1}}', 2: "[1, 2, 3]"}
    gen = write_flink_run(
        tmp_path / "r",
        steps=2,
        prompts=1,
        group_size=4,
        agent_trajectories=lambda ep: bad.get(ep.sample_index, json.dumps(ep.messages())),
    )
    run = open_run(gen.root)
    df = run.samples.collect()
    assert df["messages"].null_count() == 0 and df["prompt"].null_count() == 0
    warnings = sorted((p.path, p.message) for p in run.problems if p.is_warning)
    assert [w[0] for w in warnings] == [f"flink_logs/batch_debug_data_train_{s}.parquet" for s in (0, 1)]
    assert all(w[1].startswith("agent_trajectories of 3 sample(s) is not JSON of a known shape") for w in warnings)
    run.samples.collect()  # collecting again counts no sample twice
    assert all("of 3 sample(s)" in p.message for p in run.problems if p.is_warning)
    r = cli("metrics", "diversity", gen.root)
    assert r.exit_code == 0
    # One line for the two files' same message (each file is in ``run.problems`` above, and in inspect).
    assert (
        "warning: flink_logs/batch_debug_data_train_0.parquet and 1 more file(s): agent_trajectories of 3" in r.stderr
    )


# -- metrics and summaries that need texts or groups -------------------------------------------------------
def test_metrics_diversity_and_format_work_per_step(cli, tmp_path):
    gen = write_flink_run(tmp_path / "r", steps=4, prompts=3, group_size=4)
    r = cli("metrics", "format", gen.root, "--spec", "think-answer-strict", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["step"] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        eps = gen.by_step()[row["step"]]
        assert row["texts"] == len(eps)
        assert row["adherence"] == pytest.approx(sum(ep.well_formatted for ep in eps) / len(eps))
    r = cli("metrics", "diversity", gen.root, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["step"] for row in rows] == [0, 1, 2, 3]
    assert all(row["groups"] == 3 and row["texts"] == 12 for row in rows)


def _zero_adv_reference(gen, role: str) -> float:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for ep in gen.episodes:
        groups[(ep.step, ep.task.question)].append(ep.role_rewards[role])
    return sum(min(v) == max(v) for v in groups.values()) / len(groups)


def test_prompt_groups_give_zero_adv_frac_by_role(cli, tmp_path):
    def flat_judge(ep):
        if ep.step >= 2:
            ep.role_rewards["judge"] = 1.0

    gen = write_flink_run(tmp_path / "r", steps=6, prompts=3, group_size=4, hooks=[flat_judge])
    r = cli("summarize", gen.root, "--by", "role", "--format", "json")
    assert r.exit_code == 0 and "add --prompt-groups" in r.stderr  # the groups are there to be found
    r = cli("summarize", gen.root, "--by", "role", "--prompt-groups", "--format", "json")
    assert r.exit_code == 0, r.output
    got = {row["role"]: row["zero_adv_frac"] for row in json.loads(r.stdout)}
    for role in ("solver", "verifier", "judge"):
        assert got[role] == pytest.approx(_zero_adv_reference(gen, role))
    assert got["judge"] == pytest.approx(4 / 6)  # every group of steps 2..5, none of steps 0 and 1
    r = cli("summarize", gen.root, "--by", "role", "--by", "step", "--prompt-groups", "--format", "json")
    judge = {row["step"]: row["zero_adv_frac"] for row in json.loads(r.stdout) if row["role"] == "judge"}
    assert all(judge[s] == 1.0 for s in range(2, 6)) and judge[0] == 0.0


def test_numeric_view_never_parses_agent_trajectories(tmp_path, monkeypatch):
    gen = write_flink_run(tmp_path / "r", steps=3)

    def boom(*a, **k):
        raise AssertionError("the numeric view parsed a conversation")

    monkeypatch.setattr("runlog.formats.flink_text.conversation", boom)
    run = open_run(gen.root)
    df = summarize(run, ["role", "step"], prompt_groups=True)
    assert df["zero_adv_frac"].null_count() == 0
    with pytest.raises(Exception, match="parsed a conversation"):
        run.samples.select("prompt").collect()


# -- parsing variants ----------------------------------------------------------------------------------------
def test_variants_flink_writes():
    from runlog.formats import flink_messages as FM

    call = {"id": "c1", "type": "function", "function": {"name": "python", "arguments": {"code": "print(1)"}}}
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "Q?"}]},
        {"role": "assistant", "name": "agent_1", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "1"},
        {"role": "judge", "content": "Verdict: ACCEPT"},
    ]
    nested = json.dumps(json.dumps(msgs))
    c = FM.conversation(nested, None, '{"agent_1": "solver"}')
    assert c.source == "agent_trajectories" and c.prompt == "Q?" and c.completion is None
    assert [(m["role"], m["name"]) for m in c.messages] == [
        ("user", None),
        ("assistant", "solver"),
        ("tool", "python"),
        ("assistant", "judge"),
    ]
    assert c.messages[1]["tool_calls"] == [{"id": "c1", "name": "python", "arguments": '{"code":"print(1)"}'}]
    assert c.messages[2]["tool_call_id"] == "c1"
    by_role = {"solver": [{"role": "assistant", "content": "<answer>4</answer>"}], "judge": {"turns": []}}
    c = FM.conversation(json.dumps(by_role), "<|user|>\n2+2?\n<|solver|>\n<answer>4</answer>\n")
    assert c.prompt == "2+2?" and c.completion == "<answer>4</answer>"
    assert [(m["role"], m["name"]) for m in c.messages] == [("user", None), ("assistant", "solver")]
    for hostile in ("[" * 100_000, "null", "", '"just text"', "{}", "[]"):
        c = FM.conversation(hostile, "<|user|>\nq\n")
        assert c.source == "trajectory" and c.prompt == "q"
    assert FM.conversation("{bad", "free text, no turns").messages is None


# -- the bundled sample run ----------------------------------------------------------------------------------
def test_bundled_flink_mixed_still_works(cli):
    root = SAMPLE_RUNS / "flink_mixed"
    r = cli("render-trajectory", root)
    assert r.exit_code == 0 and "(conversation from messages)" in r.stdout and "tool calls" in r.stdout
    r = cli("metrics", "format", root, "--format", "json")
    rows = json.loads(r.stdout)
    assert r.exit_code == 0 and sorted(row["step"] for row in rows if row["split"] == "train") == list(range(20))
    r = cli("summarize", root, "--by", "role", "--prompt-groups", "--format", "json")
    assert r.exit_code == 0 and all(row["zero_adv_frac"] is not None for row in json.loads(r.stdout))
    d = diagnose(open_run(root))
    assert not any("zero_advantage not checked" in n for n in d.notes)
    assert not any("no completion texts" in n for n in d.notes)
