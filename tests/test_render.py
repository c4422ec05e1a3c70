"""``runlog render-trajectory`` and ``runlog.render``: every input shape, selectors, the four formats, and
hostile model text that must stay inert.

Terminal renders are compared with golden files at a fixed width; after an intended change regenerate them
with ``RUNLOG_UPDATE_GOLDEN=1 pytest tests/test_render.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from io import StringIO

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

import runlog._lazy as runlog_lazy
from runlog import open_run
from runlog.render import (
    Criteria,
    conversation_from_row,
    conversations,
    from_agent_trajectories,
    from_openai_chat,
    from_prompt_completion,
    from_responses,
    from_trajectory_text,
    normalize,
    prepared,
    select_samples,
    text_tool_calls,
    to_json,
)
from runlog.render.html_page import CSP, SCRIPT, render_html
from runlog.render.markdown import fence, render_markdown
from runlog.render.model import Conversation, Turn, shown, split_think
from runlog.render.terminal import render_all

from conftest import (
    REALDATA,
    ROOT,
    SAMPLE_RUNS,
    flink_table,
    make_flink_run,
    make_native_run,
    native_rows,
    write_native_samples,
)

GOLDEN = ROOT / "tests" / "golden"
HOSTILE = (
    "clear\x1b[2Jscreen link\x1b]8;;http://x\x07click\x1b]8;;\x07 up\x1b[5A bell\x07 c1\x9b31m "
    "[bold red]LOUD[/bold red] <script>alert(1)</script> <img src=x onerror=alert(1)> ```\nbreak out\n````"
)
RAW_ESCAPES = ("\x1b", "\x07", "\x9b")


def terminal(convs: list[Conversation], width: int = 100, show_think: bool = True) -> str:
    buf = StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False).print(
        render_all(convs, show_think=show_think)
    )
    return buf.getvalue()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"render_{name}.txt"
    if os.environ.get("RUNLOG_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def one(run_path, **kw) -> Conversation:
    convs, _ = conversations(open_run(run_path), Criteria(**kw))
    assert len(convs) == 1
    return convs[0]


# -- input shapes --------------------------------------------------------------------------------------------
def msg(role, content=None, name=None, reasoning=None, tool_calls=None, tool_call_id=None) -> dict:
    return {
        "role": role,
        "name": name,
        "content": content,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
    }


DEBATE = [
    msg("system", "You are in a three-agent debate: solver, verifier, judge."),
    msg("user", "What is 17 * 23?"),
    msg(
        "assistant",
        "<think>Multiply with the tool.</think>",
        "solver",
        tool_calls=[{"id": "call_1", "name": "python", "arguments": '{"code": "x = 17 * 23\\nprint(x)"}'}],
    ),
    msg("tool", "391", "python", tool_call_id="call_1"),
    msg("assistant", "<think>The tool says 391.</think><answer>391</answer>", "solver"),
    msg("assistant", "VERIFY: PASS", "verifier"),
    msg("assistant", "Verdict: ACCEPT", "judge"),
]


def debate_run(tmp_path, exception: str | None = None, reward: float = 0.9):
    """A native run written with the real Parquet writer: one debate sample at step 1."""
    row = native_rows(1, 1)[0]
    row.update(
        sample_id="s1-debate",
        messages=DEBATE,
        reward=reward,
        exception=exception,
        roles=[
            {"role": "solver", "reward": reward, "kl": 0.012},
            {"role": "verifier", "reward": 1.0, "kl": 0.004},
            {"role": "judge", "reward": 1.0, "kl": 0.003},
        ],
        reward_components=[{"name": "correctness", "value": 1.0}, {"name": "format", "value": 0.5}],
    )
    root = make_native_run(tmp_path / "run", steps=[0], n=4, roles=("solver", "verifier", "judge"))
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", [row])
    return root


def test_native_messages_golden(tmp_path):
    """runlog's own messages: speakers, a tool call with its result, think blocks, rewards per role."""
    conv = one(debate_run(tmp_path), sample_ids=("s1-debate",))
    assert conv.source == "messages"
    assert [t.speaker for t in conv.turns if t.role == "assistant"] == ["solver", "solver", "verifier", "judge"]
    assert conv.stats.tool_calls == 1 and conv.turns[3].result.call_id == conv.turns[2].tool_calls[0].id
    check_golden("debate", terminal([conv]))


def flink_agents_run(tmp_path):
    table = flink_table(7, n=2)
    agents = [
        {"agent_id": "agent_0", "turns": [{"role": "assistant", "content": "Verdict: REJECT", "tool_calls": None}]},
        {
            "agent_id": "agent_1",
            "turns": [
                {
                    "role": "assistant",
                    "content": "<think>use the tool</think>",
                    "tool_calls": [{"id": "c7", "name": "python", "arguments": '{"code": "print(2**10)"}'}],
                },
                {"role": "tool", "content": "1024", "tool_calls": None},
                {"role": "assistant", "content": "<answer>1000</answer>", "tool_calls": None},
            ],
        },
    ]
    traj = "<|user|>\nWhat is 2**10?\n<|assistant name=solver|>\n<answer>1000</answer>\n"
    table = table.set_column(
        table.schema.get_field_index("agent_trajectories"), "agent_trajectories", pa.array([json.dumps(agents)] * 2)
    )
    table = table.set_column(table.schema.get_field_index("trajectory"), "trajectory", pa.array([traj, None]))
    table = table.set_column(
        table.schema.get_field_index("role_assignments"),
        "role_assignments",
        pa.array(['{"agent_0": "judge", "agent_1": "solver"}'] * 2),
    )
    logs = tmp_path / "flink" / "flink_logs"
    logs.mkdir(parents=True)
    pq.write_table(table, logs / "batch_debug_data_train_7.parquet")
    return tmp_path / "flink"


def test_flink_trajectory_and_agent_trajectories(tmp_path):
    """Flink rows: the messages the reader builds from the agents' JSON, ordered by the transcript (which
    leaves the tool call out); the transcript or the per-agent JSON as written on request."""
    run = open_run(flink_agents_run(tmp_path))
    rows = run.samples.collect().to_dicts()
    conv = conversation_from_row(rows[0])
    assert conv.source == "messages"
    assert [t.role for t in conv.turns] == ["user", "assistant", "tool", "assistant", "assistant"]
    assert [t.speaker for t in conv.turns if t.role == "assistant"] == ["solver", "solver", "judge"]
    transcript = conversation_from_row(rows[0], "trajectory")
    assert [t.role for t in transcript.turns] == ["user", "assistant"] and transcript.turns[1].speaker == "solver"
    agents = conversation_from_row(rows[1], "agent_trajectories")  # the agents' JSON, as written
    assert agents.source == "agent_trajectories"
    assert [t.speaker for t in agents.turns] == ["judge (agent_0)", "solver (agent_1)", "python", "solver (agent_1)"]
    assert agents.turns[2].result.call_id == "c7"
    assert conversation_from_row(rows[0], "agent_trajectories").source == "agent_trajectories"
    check_golden("flink_agents", terminal([agents]))


def test_sample_runs_render():
    """Every bundled sample run renders with its default selection."""
    for name in ("debate_grpo", "flink_mixed"):
        convs, sel = conversations(open_run(SAMPLE_RUNS / name), Criteria())
        assert sel.defaulted and 1 <= len(convs) <= 2 and all(c.turns for c in convs)
        assert "sample " in terminal(convs)


def test_openai_chat_with_json_string_tool_calls():
    """verifiers writes each tool call as a JSON string and tool results without ids: both are paired."""
    turns = from_openai_chat(
        [
            {"role": "user", "content": "2+2?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [json.dumps({"id": "c1", "function": {"name": "python", "arguments": '{"code":"2+2"}'}})],
            },
            {"role": "tool", "content": "4"},
            {"role": "assistant", "content": "4"},
        ]
    )
    assert turns[1].tool_calls[0].name == "python" and turns[1].tool_calls[0].arguments == '{"code":"2+2"}'
    assert turns[2].result.call_id == "c1" and turns[2].result.name == "python" and turns[2].result.content == "4"


def test_openai_chat_with_dict_tool_calls_and_error_result():
    turns = from_openai_chat(
        [
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "tool_call_id": "c", "content": "Traceback (most recent call last):\nValueError: x"},
        ]
    )
    assert json.loads(turns[0].tool_calls[0].arguments) == {"x": 1}
    assert turns[1].result.is_error


def test_responses_items_pair_calls_by_call_id():
    turns = from_responses(
        [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "call the tool"}]},
            {"type": "function_call", "call_id": "k", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "k", "output": '{"error": "no such city"}'},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sorry."}]},
        ]
    )
    assert [t.role for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert turns[1].reasoning == "call the tool" and turns[1].tool_calls[0].name == "get_weather"
    assert turns[2].result.name == "get_weather" and turns[2].result.is_error


def test_text_tool_calls():
    rest, calls = text_tool_calls('Let me look.\n<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>')
    assert rest == "Let me look." and calls[0].name == "search" and json.loads(calls[0].arguments) == {"q": "x"}
    kept, none = text_tool_calls("<tool_call>{not json}</tool_call>")
    assert none == [] and kept == "<tool_call>{not json}</tool_call>"
    turns = from_openai_chat(
        [{"role": "assistant", "content": '<tool_call>{"name": "f", "arguments": {}}</tool_call>'}]
    )
    assert turns[0].tool_calls[0].name == "f"


def test_prompt_completion_and_chatml():
    turns = from_prompt_completion("What is 2+2?", "<think>easy</think>4")
    assert [(t.role, t.content) for t in turns] == [("user", "What is 2+2?"), ("assistant", "<think>easy</think>4")]
    chatml, known = from_trajectory_text("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>")
    assert known and [(t.role, t.content) for t in chatml] == [("user", "hi"), ("assistant", "hello")]
    free, known = from_trajectory_text("just some text")
    assert not known and free[0].role == "transcript"


def test_unknown_json_shape_is_a_tree_not_an_error():
    turns, known = from_agent_trajectories('{"episode": {"moves": [1, 2, {"x": "\\u001b[2J"}]}}')
    assert not known and turns[0].data == {"episode": {"moves": [1, 2, {"x": "\x1b[2J"}]}}
    out = terminal([Conversation(turns, "agent_trajectories")])
    assert "episode" in out and "moves [3]" in out and "\\x1b[2J" in out and "\x1b" not in out
    bad, known = from_agent_trajectories("{not json")
    assert not known and bad[0].content == "{not json"
    assert normalize(42)[0].data == 42


def test_realdata_shapes_render():
    if not REALDATA.exists():
        pytest.skip(f"{REALDATA} is absent (shared real rollouts)")
    run = open_run(REALDATA)
    for split in ("train", "eval"):
        convs, _ = conversations(run, Criteria(split=split, steps="all", best=5))
        assert convs and all(c.stats.tool_calls >= 1 for c in convs)
        text = terminal(convs)
        assert "→ python" in text or "→ get_weather" in text


# -- display options ---------------------------------------------------------------------------------------
def test_think_split_truncation_and_no_think():
    assert split_think("a<think>b</think>c") == [("a", False), ("<think>b</think>", True), ("c", False)]
    assert split_think("plan</think>answer") == [("plan</think>", True), ("answer", False)]
    assert split_think("x<think>unclosed") == [("x<think>unclosed", False)]
    conv = Conversation([Turn("assistant", content="<think>" + "z" * 50 + "</think>" + "y" * 30)], "messages")
    hidden = prepared(conv, no_think=True, max_chars=10)
    assert hidden.turns[0].content == "y" * 10 + "… [truncated 20 chars]"
    assert "[truncated" in terminal([prepared(conv, max_chars=10)])


# -- hostile text -----------------------------------------------------------------------------------------
def hostile_conversation() -> Conversation:
    return Conversation(
        [
            Turn("user", content=HOSTILE),
            Turn("assistant", speaker="[red]x\x1b[2J", content="<think>" + HOSTILE + "</think>" + HOSTILE),
            *from_openai_chat(
                [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c\x1b", "function": {"name": "[b]t", "arguments": HOSTILE}}],
                    },
                    {"role": "tool", "tool_call_id": "c\x1b", "content": HOSTILE},
                ]
            ),
        ],
        "messages",
        sample_id="<script>alert(1)</script>\x1b[2J",
        exception=HOSTILE,
    )


def test_hostile_text_is_inert_in_the_terminal():
    out = terminal([hostile_conversation()])
    assert not any(c in out for c in RAW_ESCAPES)
    assert "\\x1b[2J" in out and "\\x9b" in out and "\\x07" in out
    assert "[bold red]LOUD[/bold red]" in out  # shown, not interpreted
    check_golden("hostile", out)
    # With colours on, the only escape sequences are rich's own SGR styles.
    buf = StringIO()
    Console(file=buf, width=100, force_terminal=True, color_system="truecolor").print(
        render_all([hostile_conversation()])
    )
    assert set(re.findall(r"\x1b(.)", buf.getvalue())) <= {"["}
    assert not re.search(r"\x1b\[[0-9;]*[A-HJKSTfsu]", buf.getvalue())  # no cursor movement, no clearing


def test_hostile_text_is_escaped_in_html():
    page = render_html([hostile_conversation()])
    assert page.count("<script") == 1 and f"<script>{SCRIPT}</script>" in page  # the page's own, constant
    assert "<img" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert not any(c in page for c in RAW_ESCAPES)
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # no network assets


def strip_fences(md: str) -> str:
    """The Markdown outside fenced code blocks (CommonMark: closed by a fence at least as long)."""
    out, fence_len = [], 0
    for line in md.split("\n"):
        m = re.match(r"^(`{3,})", line)
        if fence_len:
            if m and len(m.group(1)) >= fence_len and not line[len(m.group(1)) :].strip():
                fence_len = 0
            continue
        if m:
            fence_len = len(m.group(1))
            continue
        out.append(line)
    return "\n".join(out)


def test_hostile_text_is_inert_in_markdown():
    md = render_markdown([hostile_conversation()])
    assert not any(c in md for c in RAW_ESCAPES)
    outside = strip_fences(md)
    for raw in ("<script", "<img", "[bold red]", "break out"):
        assert raw not in outside
    assert fence("a\n````\nb").startswith("`````")


def test_json_output_is_the_documented_model(tmp_path):
    conv = one(debate_run(tmp_path, reward=float("nan")), sample_ids=("s1-debate",))
    data = json.loads(to_json([conv]))
    assert data[0]["schema"] == "runlog.conversation/1" and data[0]["reward"]["total"] is None
    assert set(data[0]) >= {"sample_id", "step", "split", "source", "turns", "reward", "stats", "exception"}
    turn_keys = {"role", "speaker", "content", "reasoning", "tool_calls", "result", "data", "continues"}
    assert set(data[0]["turns"][2]) == turn_keys


# -- selection ---------------------------------------------------------------------------------------------
def test_default_is_best_and_worst_of_last_train_step():
    sel = select_samples(open_run(SAMPLE_RUNS / "debate_grpo"), Criteria())
    assert sel.defaulted and sel.scope == "split train, step 31"
    rewards = [r["reward"] for r in sel.rows]
    df = open_run(SAMPLE_RUNS / "debate_grpo").samples.filter((pl.col("step") == 31) & (pl.col("split") == "train"))
    valid = df.select("reward").collect()["reward"].drop_nans().drop_nulls()
    assert rewards == [valid.max(), valid.min()]


def test_selectors(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=range(3), n=8))
    ids = lambda c: [r["sample_id"] for r in select_samples(run, c).rows]  # noqa: E731
    assert ids(Criteria(steps="1", best=2)) == ["s1-7", "s1-6"]
    assert ids(Criteria(steps="1", worst=1, role="verifier")) == ["s1-0"]
    assert ids(Criteria(steps="0", index=-1)) == ["s0-7"]
    assert ids(Criteria(where="reward >= 0.75 and role:solver < 7")) == ["s0-6", "s1-6", "s2-6"]
    assert ids(Criteria(steps="2", random=3, seed=7)) == ids(Criteria(steps="2", random=3, seed=7))
    assert len(ids(Criteria(steps="all", random=3, seed=1))) == 3
    assert ids(Criteria(grep="ANSWER>4", limit=2)) == ["s0-0", "s0-1"]
    assert ids(Criteria(sample_ids=("s2-3",))) == ["s2-3"]
    assert ids(Criteria(where="reward < -1")) == []


def test_exceptions_selector_uses_footers_to_skip_files(tmp_path):
    root = make_native_run(tmp_path / "r", steps=range(2), n=4)
    rows = native_rows(5, 4)
    rows[2]["exception"] = "Traceback (most recent call last):\nTimeoutError: tool"
    rows[2]["reward"] = None
    write_native_samples(root / "samples" / "train" / "step_00000005.p0.parquet", rows)
    run = open_run(root)
    sel = select_samples(run, Criteria(exceptions=True))
    assert [r["sample_id"] for r in sel.rows] == ["s5-2"]
    assert {f.path for f in run.files if f.null_counts.get("exception") == f.rows} >= {
        "samples/train/step_00000000.p0.parquet"
    }


def test_where_never_reads_text(tmp_path, monkeypatch):
    """Ranking and --where select numbers only: the key query's plan projects no text column."""
    run = open_run(make_flink_run(tmp_path / "f", steps=range(3)))
    seen: list[set[str]] = []
    original = pl.LazyFrame.collect

    def spy(self, *a, **k):
        seen.append(set(self.collect_schema().names()))
        return original(self, *a, **k)

    original_all = pl.collect_all

    def spy_all(frames, *a, **k):
        frames = list(frames)
        seen.extend(set(lf.collect_schema().names()) for lf in frames)
        return original_all(frames, *a, **k)

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)
    monkeypatch.setattr(pl, "collect_all", spy_all)
    monkeypatch.setattr(runlog_lazy.pl, "collect_all", spy_all)  # runlog's lazy proxy keeps its own reference
    select_samples(run, Criteria(where="reward > 1 and role:judge > 0", best=1, steps="all"))
    assert seen[0] == {"source", "step", "split", "sample_id", "__occurrence", "__score"}


# -- CLI ---------------------------------------------------------------------------------------------------
def test_cli_default_renders_with_hint(cli):
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo")
    assert r.exit_code == 0, r.output
    assert "sample s31-" in r.stdout and "hint: showing the best and worst samples" in r.stderr
    assert "\x1b" not in r.stdout  # not a terminal: no colour


def test_cli_no_color_and_formats(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    r = cli("render-trajectory", SAMPLE_RUNS / "flink_mixed", "--exceptions", "--step", "16")
    assert r.exit_code == 0 and "exception" in r.stdout and "\x1b" not in r.stdout
    page = tmp_path / "p.html"
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--best", "2", "-f", "html", "-o", page)
    assert r.exit_code == 0 and page.read_text().count('<details class="sample" id="s-') == 2
    assert r.stdout == "" and f"wrote {page} (" in r.stderr  # where it wrote
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--exceptions", "--random", "1", "-f", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["exception"].startswith("Traceback")
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--worst", "1", "-f", "markdown", "--no-think")
    assert r.exit_code == 0 and r.stdout.startswith("## sample ") and "<think>I need" not in r.stdout
    # The system prompt's literal "<think></think>" is text, not the model's reasoning: kept as written.
    assert "inside <think></think> and" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--step", "999"], "--steps 999: this run has steps 0..31 (train)"),
        (
            ["--step", "x"],
            "--steps 'x': expected A:B (inclusive), A:, :B, N, or a comma list of these (0,5,10:12); or last or all",
        ),
        (["--sample-id", "nope"], "unknown sample id 'nope'"),
        (["--where", "reward <"], "--where 'reward <': expected COLUMN OP NUMBER"),
        (["--where", "prompt > 1"], "'prompt' is text"),
        (["--where", "role:nobody > 1"], "unknown role 'nobody'"),
        # the selection's internal occurrence column was offered and accepted
        (["--where", "__occurrence < 1"], "use one of step, reward, num_turns, role:NAME or component:NAME"),
        (["--role", "nobody"], "--role 'nobody'"),
        (["--split", "test"], "--split 'test'"),
        (["--source", "bogus"], "unknown conversation source"),
        (["-f", "html", "-o", "/nonexistent-dir/p.html"], "-o /nonexistent-dir/p.html: folder /nonexistent-dir does"),
    ],
)
def test_cli_usage_errors_are_one_line(cli, args, message):
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", *args)
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: ") and message in r.stderr and r.stderr.count("\n") == 1


def test_cli_nothing_matched_exits_1(cli):
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--where", "reward > 5")
    assert r.exit_code == 1 and r.stderr.startswith("Error: no sample matches the selectors")
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--grep", "no such text anywhere")
    assert r.exit_code == 1


def test_think_tags_are_reasoning_only_in_the_models_turns():
    from runlog.render.model import Turn, turn_segments

    prompt = "Reason inside <think></think>, answer inside <answer></answer>."
    assert turn_segments(Turn(role="system", content=prompt)) == [(prompt, False)]
    assert turn_segments(Turn(role="user", content="<think>not mine</think>")) == [("<think>not mine</think>", False)]
    said = turn_segments(Turn(role="assistant", speaker="solver", content="<think>a</think><answer>1</answer>"))
    assert said == [("<think>a</think>", True), ("<answer>1</answer>", False)]


def test_a_step_without_any_valid_reward_renders_its_first_sample_and_says_why(tmp_path, cli):
    """The default picks the best and worst by reward: with every reward null (unscored logs), the first
    sample is shown with a note, not 'no sample matches'; --best asked outright is a usage error naming the
    way out."""
    from runlog import RunWriter

    with RunWriter(tmp_path / "run", name="run", durable=False, clock=lambda: 1.7e9) as w:
        rows = [{"prompt": f"q{i}", "completion": f"a{i}", "reward": None} for i in range(3)]
        w.log_samples(0, rows)
    r = cli("render-trajectory", tmp_path / "run", "--format", "markdown")
    assert r.exit_code == 0, r.output
    assert "q0" in r.stdout and "q1" not in r.stdout
    assert "note: no sample here has a valid reward (all null or NaN) to pick the best and worst by" in r.stderr
    assert "hint: showing the" not in r.stderr
    r = cli("render-trajectory", tmp_path / "run", "--best", "2")
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: 3 sample(s) match, but none has a valid reward (all null or NaN)")
    r = cli("render-trajectory", tmp_path / "run", "--best", "1", "--index", "2", "--format", "markdown")
    assert r.exit_code == 0 and "q2" in r.stdout and "q0" not in r.stdout
    assert "--best/--worst pick nothing here" in r.stderr


def test_max_chars_cuts_texts_but_not_what_they_say(cli):
    """--max-chars cuts what is shown; the arguments' validity, the reasoning shown once (it repeats the
    <think> block) and the characters statistic are decided on the texts whole, as without it."""
    run = SAMPLE_RUNS / "debate_grpo"
    whole = json.loads(cli("render-trajectory", run, "--sample-id", "s0-e0-0", "-f", "json").stdout)[0]
    assert whole["stats"]["chars"] == 828  # content 673 + reasoning 94 + arguments 61, counted from the file
    for fmt in ("markdown", "terminal"):
        cut = cli("render-trajectory", run, "--sample-id", "s0-e0-0", "--max-chars", "20", "-f", fmt)
        assert cut.exit_code == 0, cut.output
        assert "not valid JSON" not in cut.stdout
        assert "[truncated" in cut.stdout
        assert cut.stdout.count("I need to ans") == 1, cut.stdout
    cut = json.loads(cli("render-trajectory", run, "--sample-id", "s0-e0-0", "--max-chars", "20", "-f", "json").stdout)
    assert cut[0]["stats"] == whole["stats"]


def test_an_empty_grep_is_a_usage_error(cli):
    r = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--grep", "")
    assert r.exit_code == 2 and r.stderr.startswith("Error: --grep: empty text")


@pytest.mark.parametrize(
    ("block", "arguments"),
    [
        # As written: 1.10 stays 1.10, 1E5 and 1e400 (Infinity once parsed) as written, a repeated key kept.
        (
            '{"name": "calc", "arguments": {"n": 1.10, "e": 1E5, "f": 1e400, "dup": 1, "dup": 2}}',
            '{"n": 1.10, "e": 1E5, "f": 1e400, "dup": 1, "dup": 2}',
        ),
        ('{ "arguments" : [1,  2] , "name": "b" }', "[1,  2]"),
        ('{"name": "p", "parameters": {"q": "x\\u00e9"}}', '{"q": "x\\u00e9"}'),
        ('{"name": "s", "arguments": "{\\"q\\": 1}"}', '{"q": 1}'),  # a JSON string: its text
        ('{"name": "a", "arguments": {"x": 1}, "arguments": {"x": 2}}', '{"x": 2}'),  # the last, as json.loads
    ],
)
def test_a_tool_call_written_in_the_text_keeps_its_arguments_as_written(block: str, arguments: str) -> None:
    """docs/render.md: a call's arguments are "the JSON text as the model wrote it". Calls written in the text
    (``<tool_call>``) were parsed and re-serialised: 1.10 became 1.1, 1e400 the invalid JSON Infinity, and
    a repeated key was dropped without a word."""
    from runlog.render.normalize import text_tool_calls

    rest, calls = text_tool_calls(f"before <tool_call>{block}</tool_call>")
    assert rest == "before " and len(calls) == 1
    assert calls[0].arguments == arguments


def test_hostile_text_is_escaped_in_json_and_round_trips():
    """JSON shown at a terminal carried raw C1 controls (U+009B, a CSI) and bidi overrides from model text:
    they are now \\uXXXX escapes (the same JSON value), as ESC already was; the text reads back unchanged."""
    from runlog.render import to_json

    conv = hostile_conversation()
    for lines in (False, True):
        text = to_json([conv], lines=lines)
        assert not re.search("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]", text)
        assert "\\u009b" in text
        back = json.loads(text.splitlines()[0]) if lines else json.loads(text)[0]
        assert back == {**json.loads(json.dumps(conv.to_dict(), default=str)), "not_finite": {}}


def test_text_parts_of_one_message_are_joined_as_written():
    """A message whose content is several text parts (Responses ``output_text`` parts, chat ``text`` parts)
    read with a newline between them, a character the model never wrote ("sunny.\\n PART2"). They are joined
    as the OpenAI SDK's ``output_text`` does; a non-text part is a marker on its own line."""
    from runlog.chat import content_text

    assert content_text([{"type": "output_text", "text": "sunny."}, {"type": "output_text", "text": " PART2"}]) == (
        "sunny. PART2"
    )
    assert content_text([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, "b"]) == (
        "a\n[image_url]\nb"
    )
    # Chat text parts are separate texts (vLLM joins them with a newline): words never glued together.
    assert content_text([{"type": "text", "text": "You are a grader."}, {"type": "text", "text": "Reply."}]) == (
        "You are a grader.\nReply."
    )


def test_a_sample_id_outside_the_split_given_is_no_match_not_unknown(cli):
    """``--sample-id s31-p0-0 --split eval``: only the eval files are opened, so the id was called unknown
    (exit 2) though the run holds it. It is now "no sample matches" (exit 1); an id in no file is still a
    usage error; with the right split it renders."""
    run = SAMPLE_RUNS / "debate_grpo"
    res = cli("render-trajectory", run, "--sample-id", "s31-p0-0", "--split", "eval")
    assert res.exit_code == 1 and "no sample matches the selectors (split eval" in res.stderr
    assert "unknown sample id" not in res.stderr
    assert cli("render-trajectory", run, "--sample-id", "nope").exit_code == 2
    ok = cli("render-trajectory", run, "--sample-id", "s31-p0-0", "--split", "train", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)[0]["sample_id"] == "s31-p0-0"


@pytest.mark.parametrize("width", [20, 24, 30])
def test_a_narrow_terminal_cuts_no_reward_label_and_no_number(width):
    """At 20 columns rich gave the reward table's label column no width: the values stood without their
    names (total, correct, solver...). Too narrow for the table, the rewards are one per line."""
    [conv] = conversations(open_run(SAMPLE_RUNS / "flink_mixed"), Criteria(steps="16", index=0))[0]
    out = terminal([conv], width=width)
    words = re.sub(r"\s+", " ", out)
    r = conv.reward
    for name, _value in [("total", r.total), *r.components]:
        assert re.search(rf"\b{name}\b", words), (name, out)
    for role in r.roles:
        assert re.search(rf"\b{role.role}\b", words)
        assert shown(role.kl) in out and shown(role.reward) in out  # whole: 10 significant digits


def test_a_step_whose_only_file_is_unreadable_is_no_match_with_the_reason(cli):
    """``--steps 1`` of the damaged run, whose step-1 file is truncated: "this run has no per-sample data"
    (exit 2), as if it were a scalars-only run. Now the file and its reason, and no match (exit 1)."""
    res = cli("render-trajectory", SAMPLE_RUNS / "damaged", "--steps", "1")
    assert res.exit_code == 1, res.output
    assert "error: samples/train/step_00000001.p0.parquet: unreadable Parquet" in res.stderr
    assert "no sample matches the selectors" in res.stderr and "no per-sample data" not in res.stderr


def test_a_repeated_index_shows_each_sample_once(cli):
    """``--index 3 --index 5`` rendered sample 5 alone (the last option won, without a word)."""
    res = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--index", "3", "--index", "5", "--index", "3",
              "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert [c["sample_id"] for c in json.loads(res.stdout)] == ["s31-p0-3", "s31-p0-5"]


def test_best_and_worst_with_a_sample_id_shared_by_a_prompt_group(tmp_path):
    """A trainer that writes the prompt's id as every sample's id (GRPO groups): the best sample of p0 (0.9)
    is shown with its own text, not the first row of that id (0.1); a sample without an id is shown too."""
    from conftest import native_run_of

    rows = native_rows(0, 5, roles=("solver",))
    for r, (sid, reward) in zip(rows, [("p0", 0.1), ("p0", 0.9), ("p1", 0.5), ("p1", 0.6), (None, 0.95)], strict=True):
        r["sample_id"], r["reward"], r["completion"] = sid, reward, f"{sid} reward {reward}"
    run = open_run(native_run_of(tmp_path / "run", rows))
    sel = select_samples(run, Criteria(best=2, worst=1))
    assert [(r["sample_id"], r["reward"], r["completion"]) for r in sel.rows] == [
        (None, 0.95, "None reward 0.95"),
        ("p0", 0.9, "p0 reward 0.9"),
        ("p0", 0.1, "p0 reward 0.1"),
    ]
    # which row of its id each is: the conversation keeps it (the report's cards tell samples apart by it)
    assert [r["__occurrence"] for r in sel.rows] == [0, 1, 0]


def test_tool_arguments_that_would_not_survive_reformatting_are_shown_as_written():
    """``{"path": "/tmp/safe.txt", "path": "/etc/passwd"}`` was shown as ``"path": "/etc/passwd"`` alone (the
    parser keeps the last key), and numbers were rewritten (``2.50`` as 2.5, ``1e3`` as 1000.0): what a
    reviewer reads must be what the model wrote. JSON that reformats faithfully is still indented."""
    from runlog.render.model import ToolCall, pretty_arguments

    for raw in ('{"path": "/tmp/safe.txt", "path": "/etc/passwd"}', '{"x": 2.50, "n": 1e3}', '{"a": {"b": 1, "b": 2}}'):
        assert pretty_arguments(ToolCall("c", "f", raw)) == (True, raw)
    ok, shown = pretty_arguments(ToolCall("c", "f", '{"x": 2.5, "n": 1000, "s": "a"}'))
    assert ok and shown == '{\n  "x": 2.5,\n  "n": 1000,\n  "s": "a"\n}'


def test_blank_lines_at_the_end_of_a_code_argument_are_shown():
    """A multi-line argument's trailing blank lines were dropped: they are the model's own text, shown under
    ``|+``; a value ending with one newline or none stays ``|``."""
    from runlog.render.model import ToolCall, pretty_arguments

    _, shown = pretty_arguments(ToolCall("c", "f", json.dumps({"code": "x = 1\nprint(x)\n\n\n", "n": 2})))
    assert shown == "code: |+\n  x = 1\n  print(x)\n\n\nn: 2"
    _, shown = pretty_arguments(ToolCall("c", "f", json.dumps({"code": "x = 1\nprint(x)\n"})))
    assert shown == "code: |\n  x = 1\n  print(x)"


def test_ties_in_rank_go_by_sample_id_then_file_order(tmp_path, cli):
    """Every sample of a prompt group shares one id (GRPO style): polars' sort did not keep the order of equal
    rows, so --best 6 showed rows 10, 1, 2, 0, 15, 14 of the ones that tie. Now ties go by id, then as written."""
    import numpy as np

    from runlog import RunWriter

    n = 5000
    reward = np.random.default_rng(0).integers(0, 2, n).astype(float)
    with RunWriter(tmp_path / "r", durable=False) as w:
        ids = [f"q{i // 16:06d}" for i in range(n)]
        w.log_samples(0, {"sample_id": ids, "reward": reward, "completion": [f"ROW{i}" for i in range(n)]})
    best = [i for i in range(n) if reward[i] == 1.0][:6]  # the independent ranking: id, then row order
    worst = [i for i in range(n) if reward[i] == 0.0][:3]
    res = cli("render-trajectory", tmp_path / "r", "--best", "6", "--worst", "3", "-f", "json")
    assert res.exit_code == 0, res.output
    shown = [s["turns"][-1]["content"] for s in json.loads(res.stdout)]
    assert shown == [f"ROW{i}" for i in best + worst]


def test_grep_finds_text_in_tool_calls(tmp_path):
    """--grep did not look into tool calls: the sample whose code held a token was not found. Now a call's
    id, tool name and arguments (as written) and a result's call id are searched, against the written rows."""
    root = make_native_run(tmp_path / "r", steps=[0], n=1)
    rows = native_rows(1, 3)
    for i, row in enumerate(rows):
        for m in row["messages"]:
            if m.get("tool_calls"):
                m["tool_calls"] = [{"id": f"call_{i}", "name": "python", "arguments": f'{{"code": "TOKEN_{i}  x"}}'}]
            if m.get("role") == "tool":
                m["tool_call_id"] = f"call_{i}"
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows)
    run = open_run(root)
    ids = lambda c: [r["sample_id"] for r in select_samples(run, c).rows]  # noqa: E731
    written = pl.read_parquet(root / "samples" / "train" / "step_00000001.p0.parquet")
    holds = [
        sid
        for sid, ms in zip(written["sample_id"], written["messages"].to_list(), strict=True)
        if any("token_2  x" in (c["arguments"] or "").lower() for m in ms for c in (m["tool_calls"] or []))
    ]
    assert ids(Criteria(grep="token_2  X")) == holds == [rows[2]["sample_id"]]
    assert ids(Criteria(grep="call_1")) == [rows[1]["sample_id"]]


def test_rewards_are_shown_so_that_different_values_never_read_alike(tmp_path, cli):
    """Rendered rewards were rounded to 4 significant digits: 0.99999 read '1', 0.123456789 and 0.1234549
    both '0.1235'. A conversation export shows 10 (summary tables keep their 4)."""
    from runlog import RunWriter

    values = [0.99999, 0.123456789, 0.1234549, 123456.789]
    with RunWriter(tmp_path / "r", durable=False) as w:
        w.log_samples(0, {"reward": values, "completion": ["a", "b", "c", "d"]})
    for fmt in ("terminal", "markdown", "html"):
        picks = [x for i in range(4) for x in ("--index", str(i))]
        out = tmp_path / f"out.{fmt}"
        res = cli("render-trajectory", tmp_path / "r", *picks, "-f", fmt, "-o", out)
        assert res.exit_code == 0, res.output
        for text in ("0.99999", "0.123456789", "0.1234549", "123456.789"):
            assert text in out.read_text(), (fmt, text)
