"""Every built-in format spec equals its reference function on a matrix of broken formats; custom TOML
specs; tool-call-json; the CLI."""

from __future__ import annotations

import itertools
import json
import re

import polars as pl
import pytest
from typer.testing import CliRunner

from runlog import format_frame, format_per_sample, open_run
from runlog.cli.app import app
from runlog.metrics import format as F

from conftest import native_rows, native_run_of


# ---- reference functions, copied verbatim -------------------------------------------------------------
# open-r1, src/open_r1/rewards.py (github.com/huggingface/open-r1), Apache-2.0.
def format_reward(completions, **kwargs):
    """Reward function that checks if the reasoning process is enclosed within <think> and </think> tags, while the final answer is enclosed within <answer> and </answer> tags."""  # noqa: E501
    pattern = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content, re.DOTALL | re.MULTILINE) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def tag_count_reward(completions, **kwargs) -> list[float]:
    def count_tags(text: str) -> float:
        count = 0.0
        if text.count("<think>\n") == 1:
            count += 0.25
        if text.count("\n</think>\n") == 1:
            count += 0.25
        if text.count("\n<answer>\n") == 1:
            count += 0.25
        if text.count("\n</answer>") == 1:
            count += 0.25
        return count

    contents = [completion[0]["content"] for completion in completions]
    return [count_tags(c) for c in contents]


# TRL, trl/rewards/format_rewards.py (github.com/huggingface/trl), Apache-2.0.
def think_format_reward(completions, **kwargs) -> list[float]:
    pattern = r"^<think>(?!.*<think>)(.*?)</think>.*$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content, re.DOTALL | re.MULTILINE) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


REFERENCES = {"open-r1": format_reward, "open-r1-tags": tag_count_reward, "trl-think": think_format_reward}

GOOD = "<think>\nreason here\n</think>\n<answer>\n42\n</answer>"
BROKEN = [
    GOOD,
    "",
    "no tags at all",
    "<think>\nreason\n</think>\n<answer>\n42\n",  # missing close answer
    "<think>\nreason\n<answer>\n42\n</answer>",  # missing close think
    GOOD + "\ntrailing text",  # trailing text after a newline (open-r1 accepts it)
    GOOD + " trailing",  # trailing text on the same line
    GOOD + "\n",
    "lead\n" + GOOD,
    "<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n42\n</answer>",  # duplicated think
    "<think>\na\n<think>\nb\n</think>\n</think>\n<answer>\n42\n</answer>",  # nested think
    GOOD + "\n<answer>\n43\n</answer>",  # duplicated answer
    "<answer>\n42\n</answer>\n<think>\nreason\n</think>",  # wrong order
    GOOD.replace("\n", "\r\n"),  # CRLF
    "<think>\n\nreason\n\n</think>\n\n<answer>\n42\n</answer>",  # blank lines
    GOOD.upper(),  # uppercase tags
    "<think>reason</think><answer>42</answer>",  # one line
    "<think>\n\n</think>\n<answer>\n\n</answer>",  # empty bodies
    "<think>\nr\n</think>\n</think>\n<answer>\n42\n</answer>",  # overlapping close tags
    "<think>\nr\n</think>\n<answer>\nsee <cite>1</cite> 42\n</answer>",
    "<think>\nr <cite>1</cite>\n</think>\n<answer>\n42\n</answer>",
    "<think>\nr\n</think>\n<answer>\n<cite>1 42\n</answer>",
    "<think>\nr\n</think>\n<answer>\n<cite>a<cite>b</cite></cite>\n</answer>",
    "  <think>\nr\n</think>\n<answer>\n42\n</answer>  \n",
    "<think><think>\nr\n</think>",
    "<think>\nr</think> and then the answer",
    "\n<think>\nr\n</think>\n<answer>\n42\n</answer>",
    "<think>\nr\n</think>\n<answer>\n42\n</answer>\n\n\n",
    "<think>\nr\n</think>\n<answer>\n42\n</answer>\r\n",
    "<think>\n日本語 🙂\n</think>\n<answer>\nΩ\n</answer>",
]


def _mutations() -> list[str]:
    """Pairwise combinations of small edits of the good text, for breadth beyond the hand-written list."""
    edits = [
        lambda s: s.replace("\n", "\r\n"),
        lambda s: s + "\nextra",
        lambda s: s.replace("<think>", "<THINK>", 1),
        lambda s: s.replace("</answer>", "", 1),
        lambda s: "x" + s,
        lambda s: s.replace("\n</think>", "</think>"),
        lambda s: s + s,
        lambda s: s.replace("reason here", "reason\n\nhere <think>"),
    ]
    out = []
    for a, b in itertools.combinations(edits, 2):
        out.append(b(a(GOOD)))
    return out


TEXTS = BROKEN + _mutations()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_builtin_spec_equals_its_reference(name):
    ref = REFERENCES[name]([[{"content": t}] for t in TEXTS])
    res = F.evaluate(pl.Series(TEXTS), F.BUILTIN[name])
    assert res["score"].to_list() == ref
    assert res["passed"].to_list() == [r == 1.0 for r in ref]


def test_open_r1_quirks_are_reproduced():
    """open-r1 accepts text after a newline following </answer> and duplicated blocks; strict does not."""
    texts = [GOOD + "\ntrailing text", BROKEN[9], GOOD.replace("\n", "\r\n")]
    open_r1 = F.evaluate(pl.Series(texts), F.BUILTIN["open-r1"])["passed"].to_list()
    strict = F.evaluate(pl.Series(texts), F.BUILTIN["think-answer-strict"])
    assert open_r1 == [True, True, False]
    assert strict["passed"].to_list() == [False, False, True]
    assert strict["failed_rule"].to_list()[:2] == ["order", "one_think"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (GOOD, None),
        (GOOD.replace("\n", "\r\n"), None),
        ("<think>r</think><answer>42</answer>", None),
        ("<think>\nr\n</think>\n<answer>\nsee <cite>1</cite> 42\n</answer>", None),
        (GOOD + "\ntrailing", "order"),
        ("lead " + GOOD, "order"),
        (BROKEN[9], "one_think"),
        (BROKEN[11], "one_answer"),
        (BROKEN[12], "order"),
        (GOOD.upper(), "one_think"),
        ("<think>\n \n</think>\n<answer>\n42\n</answer>", "think_not_empty"),
        ("<think>\nr\n</think>\n<answer>\n\n</answer>", "answer_not_empty"),
        (BROKEN[20], "cite_outside_answer"),
        (BROKEN[21], "cite_unbalanced"),
        (BROKEN[22], "cite_unbalanced"),
    ],
)
def test_think_answer_strict_rules(text, rule):
    res = F.evaluate(pl.Series([text]), F.BUILTIN["think-answer-strict"]).row(0, named=True)
    assert res["failed_rule"] == rule
    assert res["score"] == (1.0 if rule is None else 0.0)


def test_tool_call_checks():
    ok = [{"id": "1", "name": "search", "arguments": '{"q": "x"}'}]
    assert F.check_tool_calls(ok, "calling", ["search"]) == (1.0, None)
    assert F.check_tool_calls(None, "no calls", None) == (1.0, None)
    bad_json = [{"id": "1", "name": "search", "arguments": "{q: x}"}]
    assert F.check_tool_calls(bad_json, None, None) == (0.0, "arguments_not_json_object")
    assert F.check_tool_calls(ok, None, ["python"]) == (0.0, "unknown_tool")
    assert F.check_tool_calls(ok, '<tool_call>{"name": "search"}</tool_call>', None) == (0.5, "tool_call_in_text")
    assert F.check_tool_calls([{"name": "", "arguments": "{}"}], None, None) == (0.0, "missing_name")


def test_custom_toml_spec(tmp_path):
    spec_file = tmp_path / "solver.toml"
    spec_file.write_text(
        'name = "solver"\ntags = ["think", "answer"]\nforbid = ["<tool_call>"]\nrequire = [\'\\d\']\n'
        "match = '\\s*<think>.*</answer>\\s*'\n"
    )
    spec = F.load_spec(spec_file)
    texts = [GOOD, GOOD.replace("42", "x"), "<answer>\n1\n</answer><think>\nr\n</think>", GOOD + "<tool_call>"]
    res = F.evaluate(pl.Series(texts), spec)
    assert res["failed_rule"].to_list() == [None, "require:0", "tag_order", "forbid:0"]
    assert res["score"].to_list()[0] == 1.0 and 0 < res["score"].to_list()[1] < 1
    (tmp_path / "bad.toml").write_text("tags = [1]\n")
    with pytest.raises(Exception, match="tags must be a list"):
        F.load_spec(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text("forbid = ['(']\n")
    with pytest.raises(Exception, match="bad regex"):
        F.load_spec(tmp_path / "bad2.toml")


@pytest.fixture
def format_run(tmp_path):
    rows = []
    for step in (0, 1):
        for k, text in enumerate([GOOD, GOOD + "\ntrailing", "no tags", BROKEN[13]]):
            r = native_rows(step, 1)[0]
            r.update(sample_id=f"s{step}-{k}", completion=text)
            rows.append(r)
    return native_run_of(tmp_path / "run", rows)


def test_format_frames(format_run):
    run = open_run(format_run)
    per = format_per_sample(run, "open-r1", text="completion")
    assert per["sample_id"].to_list() == ["s0-0", "s0-1", "s0-2", "s0-3", "s1-0", "s1-1", "s1-2", "s1-3"]
    assert per["passed"].to_list()[:4] == [True, True, False, False]
    agg = format_frame(run, "think-answer-strict", ["step"], text="completion")
    assert agg["adherence"].to_list() == [0.5, 0.5]
    assert agg["failed/order"].to_list() == [1, 1] and agg["failed/one_think"].to_list() == [1, 1]
    assert agg["reasoning_answer_ratio"].to_list() == pytest.approx([2.0, 2.0])
    tools = format_frame(run, "tool-call-json", ["step"], known_tools=["python"])
    assert tools["adherence"].to_list() == [1.0, 1.0]


def test_cli_format(cli, format_run):
    args = ("--spec", "open-r1-tags", "--per-sample", "--text", "completion", "-f", "json")
    res = cli("metrics", "format", format_run, *args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["score"] for r in rows[:4]] == [1.0, 1.0, 0.0, 0.25]  # CRLF: only "\n</answer>" counts
    res = cli("metrics", "format", format_run, "--spec", "trl-think", "--by", "step", "-f", "csv")
    assert res.exit_code == 0 and res.stdout.startswith("step,texts,adherence")
    res = cli("metrics", "format", format_run, "--spec", "nope")
    assert res.exit_code == 2 and res.stderr.startswith("Error: --spec 'nope'")
    res = cli("metrics", "format", format_run, "--spec", "missing.toml")
    assert res.exit_code == 2 and "no such file" in res.stderr
    res = cli("metrics", "--help")
    assert res.exit_code == 0 and "diversity" in res.stdout and "format" in res.stdout


def _msg(role: str, content: str | None = None, name: str | None = None, calls: list | None = None) -> dict:
    return {
        "role": role,
        "name": name,
        "content": content,
        "reasoning": None,
        "tool_calls": calls,
        "tool_call_id": None,
    }


def test_tool_call_json_reads_the_messages_whatever_the_text_and_only_the_model_s(tmp_path):
    """The spec checks the calls of the model's messages, whichever ``--text`` is given (a turn's text alone
    has no calls: the default text used to give 1.0 whatever the calls were), and never a tool result (whose
    name is its tool's) nor a developer, system or user message. Counted independently from the rows."""
    good = {"id": "a", "name": "python", "arguments": '{"code": "1"}'}
    unknown = {"id": "b", "name": "shell", "arguments": '{"cmd": "ls"}'}
    not_object = {"id": "c", "name": "python", "arguments": "[1, 2]"}
    rows = []
    for i, (solver_calls, judge_calls) in enumerate(
        [([good], None), ([unknown, good], [not_object]), ([not_object], None), (None, [good])]
    ):
        r = native_rows(0, 1)[0]
        r["sample_id"] = f"s{i}"
        r["messages"] = [
            _msg("developer", "<tool_call>{}</tool_call> is how you call"),  # a prompt: not checked
            _msg("user", "go"),
            _msg("assistant", "thinking", "solver", solver_calls),
            _msg("tool", "<tool_call>echo</tool_call>", "python"),  # a tool's output, named after its tool
            _msg("assistant", "verdict", "judge", judge_calls),
        ]
        rows.append(r)
    run = open_run(native_run_of(tmp_path / "run", rows, roles=("solver", "judge")))

    def expected(speakers: tuple[str, ...]) -> list[float]:
        out = []
        for r in rows:
            for m in r["messages"]:
                if m["role"] != "assistant" or m["name"] not in speakers:
                    continue
                calls = m["tool_calls"] or []
                ok = [c["name"] == "python" and c["arguments"].startswith("{") for c in calls]
                out.append(sum(ok) / len(ok) if ok else 1.0)
        return out

    for text in ("auto", "assistant", "completion", "messages"):
        per = format_per_sample(run, "tool-call-json", text=text, known_tools=["python"])
        assert per["score"].to_list() == expected(("solver", "judge")), text
        assert set(per["role"].to_list()) == {"solver", "judge"}, text
    per = format_per_sample(run, "tool-call-json", text="role:judge", known_tools=["python"])
    assert per["score"].to_list() == expected(("judge",))
    agg = format_frame(run, "tool-call-json", ["step"], known_tools=["python"])
    want = expected(("solver", "judge"))
    assert agg["texts"].to_list() == [len(want)] and agg["adherence"].to_list() == [
        sum(s == 1.0 for s in want) / len(want)
    ]


def test_tool_call_json_counts_samples_without_messages_by_their_completion(tmp_path):
    """A sample whose ``messages`` are null or empty (a plain prompt/completion trainer, a rollout that raised
    before any turn) is checked on its completion, where a ``<tool_call>`` in plain text is a failed call; the
    other samples' messages are still checked. It used to fail the whole command (an explode length error)."""
    good = {"id": "a", "name": "python", "arguments": '{"code": "1"}'}
    rows = native_rows(0, 6)
    for r in rows:
        r["messages"] = [_msg("user", "go"), _msg("assistant", "ok", "solver", [good])]
        r["completion"] = "plain"
    rows[1]["messages"] = None
    rows[1]["completion"] = 'I call <tool_call>{"name": "python"}</tool_call>'
    rows[2]["messages"] = []
    rows[2]["completion"] = "no call at all"
    rows[4]["messages"] = None
    rows[4]["completion"] = None  # nothing to check: not counted
    root = native_run_of(tmp_path / "run", rows)
    run = open_run(root)
    per = format_per_sample(run, "tool-call-json", known_tools=["python"])
    # Counted by hand: s0, s3, s5 one assistant message each (passed); s1 its completion (failed); s2 its
    # completion (passed); s4 nothing. In run order.
    assert per["sample_id"].to_list() == ["s0-0", "s0-1", "s0-2", "s0-3", "s0-5"]
    assert per["passed"].to_list() == [True, False, True, True, True]
    assert per["turn"].to_list() == [1, None, None, 1, 1]
    agg = format_frame(run, "tool-call-json", ["step"], known_tools=["python"])
    assert agg["texts"].to_list() == [5] and agg["adherence"].to_list() == [0.8]
    # A speaker's messages only: the samples without messages have none.
    assert format_per_sample(run, "tool-call-json", text="role:solver")["sample_id"].to_list() == [
        "s0-0",
        "s0-3",
        "s0-5",
    ]
    # The messages text itself (diversity) skips them without failing.
    from runlog.analysis.texts import texts_frame

    assert texts_frame(run, "messages")["sample_id"].to_list() == [
        "s0-0",
        "s0-0",
        "s0-3",
        "s0-3",
        "s0-5",
        "s0-5",
    ]


@pytest.mark.parametrize("text", ["bogus", "role:", "messages:solver"])
def test_tool_call_json_rejects_a_text_it_does_not_know(tmp_path, text):
    from runlog.errors import UsageError

    run = open_run(native_run_of(tmp_path / "run", native_rows(0, 4)))
    with pytest.raises(UsageError, match="--text"):
        format_per_sample(run, "tool-call-json", text=text)
    with pytest.raises(UsageError, match="--text"):
        format_per_sample(run, "think-answer-strict", text=text)


def test_a_sample_without_the_text_asked_for_is_left_out_not_failed(tmp_path):
    """A rollout that crashed before the policy's first turn (no assistant message, no completion), or a
    sample where the speaker asked for never speaks, has nothing to check: it is not a failed format. It
    used to be scored on an empty text (adherence 0.75 for three good samples and one crash), and a misspelt
    ``--text role:NAME`` exited 0 with adherence 0 instead of naming the speakers."""
    good = "<think>ok</think><answer>1</answer>"
    rows = native_rows(0, 4, roles=("solver",))
    for r in rows[:3]:
        r["messages"] = [_msg("user", "q"), _msg("assistant", good, "solver")]
        r["completion"] = good
    rows[3]["messages"] = [_msg("user", "q")]
    rows[3]["completion"] = None
    run = open_run(native_run_of(tmp_path / "run", rows))
    for text in ("auto", "completion", "assistant", "role:solver"):
        per = format_per_sample(run, "think-answer-strict", text=text)
        assert per["sample_id"].to_list() == ["s0-0", "s0-1", "s0-2"], text
        agg = format_frame(run, "think-answer-strict", ["step"], text=text)
        assert agg["texts"].to_list() == [3] and agg["adherence"].to_list() == [1.0], text
    res = CliRunner().invoke(app, ["metrics", "format", str(tmp_path / "run"), "--text", "role:solvr"])
    assert res.exit_code == 2
    assert "no message of the selected samples is spoken by 'solvr'" in res.output


def test_messages_with_empty_content_are_not_texts(tmp_path):
    """``--text messages`` is each message with content or tool calls: an empty tool result (``""``) has
    neither, and was scored as a failed format."""
    good = "<think>ok</think><answer>1</answer>"
    rows = native_rows(0, 2, roles=("solver",))
    for r in rows:
        r["messages"] = [_msg("assistant", good, "solver"), _msg("tool", ""), _msg("assistant", good, "solver")]
    run = open_run(native_run_of(tmp_path / "run", rows))
    per = format_per_sample(run, "think-answer-strict", text="messages")
    assert per["turn"].to_list() == [0, 2, 0, 2] and per["passed"].all()
