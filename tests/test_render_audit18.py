"""Audit 18 (render-trajectory): a text tool call followed by more text in its message, a role typo at steps
whose files name no roles, and the exit code of an out-of-range ``--index``.

1. ``Let me compute. <tool_call>{...}</tool_call> I will wait.`` then a tool message: the text after the call was
   split into a turn of its own (to keep the call in its place), which closed the call, so the result after the
   message was shown unnamed (``tool · result``), and the stats counted the message as two assistant turns.
2. ``--role solvr`` at flink_mixed's v0 steps (files without per-role columns, opened alone by their names) said
   "no sample matches" (exit 1), where the same typo at a v1 step says "did you mean 'solver'?" (exit 2); a role
   of the run that the selected steps do not log is no match (exit 1), now said so.
3. ``--index`` out of the range of the matching samples is a usage error (exit 2), as docs/render.md now says.

Expected figures come from the raw data (``json``, ``pyarrow``), never from runlog's code.
"""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from runlog import open_run
from runlog.render import Criteria, conversations, to_json
from runlog.render.markdown import render_markdown
from runlog.render.normalize import from_trajectory_text
from runlog.render.terminal import render_all
from runlog.writer import RunWriter

from conftest import ROOT, SAMPLE_RUNS, native_rows, native_run_of

CALC = '{"name": "calc", "arguments": {"e": "1+1"}}'
SEARCH = '{"name": "search", "arguments": {"q": "x"}}'


def _msg(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def _conv(tmp_path: Path, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    with RunWriter(tmp_path / "r") as w:
        w.log_samples(0, [{"sample_id": "s", "reward": 1.0, "messages": messages}])
    [conv], _ = conversations(open_run(tmp_path / "r"), Criteria(steps="all", limit=10))
    return json.loads(to_json([conv]))[0], conv


def _terminal(conv: Any) -> str:
    buf = StringIO()
    Console(file=buf, width=200, color_system=None, force_terminal=False, highlight=False).print(render_all([conv]))
    return buf.getvalue()


# -- 1. text after a text tool call ----------------------------------------------------------------------------


def test_a_result_after_text_written_past_the_call_is_paired(tmp_path):
    """The result answers ``calc``, the only call before it (only the model's own text between); the message's
    texts and its call are shown in the order written; one assistant turn per message (2 in the data)."""
    said = f"Let me compute. <tool_call>{CALC}</tool_call> I will wait for the result."
    messages = [_msg("user", "q"), _msg("assistant", said), _msg("tool", "2"), _msg("assistant", "fin")]
    data, conv = _conv(tmp_path, messages)
    call = json.loads(said.split("<tool_call>")[1].split("</tool_call>")[0])
    results = [t["result"] for t in data["turns"] if t["result"]]
    assert [(r["name"], r["content"]) for r in results] == [(call["name"], "2")]
    assert data["stats"]["assistant_turns"] == sum(m["role"] == "assistant" for m in messages) == 2
    assert data["stats"]["turns"] == len(messages)
    assert data["stats"]["tool_calls"] == 1
    # Every piece of the message, in its order: the text before the call, the call, the text after it.
    before, after = said.split("<tool_call>")[0].strip(), said.split("</tool_call>")[1].strip()
    pieces = []
    for t in data["turns"][1:3]:
        pieces += [("text", t["content"].strip())] if t["content"] else []
        pieces += [("call", c["name"]) for c in t["tool_calls"]]
    assert pieces == [("text", before), ("call", call["name"]), ("text", after)]
    out = _terminal(conv)
    assert "calc · result" in out and "tool · result" not in out
    assert out.index(before) < out.index("→ calc") < out.index(after) < out.index("calc · result")
    assert render_markdown([conv]).count("fin") == 1


def test_each_call_of_a_message_with_text_between_is_answered_in_order(tmp_path):
    """Two calls with text between and after them, then two results without ids: each result answers the next
    call not answered yet of that message (before: both unnamed, the text turns having closed the calls)."""
    said = f"First <tool_call>{CALC}</tool_call> then <tool_call>{SEARCH}</tool_call> and wait."
    messages = [_msg("user", "q"), _msg("assistant", said), _msg("tool", "r1"), _msg("tool", "r2")]
    data, _ = _conv(tmp_path, messages)
    names = [json.loads(b)["name"] for b in re.findall(r"<tool_call>(.*?)</tool_call>", said)]
    assert [(t["result"]["name"], t["result"]["content"]) for t in data["turns"] if t["result"]] == list(
        zip(names, ["r1", "r2"], strict=True)
    )
    assert data["stats"]["assistant_turns"] == 1 and data["stats"]["turns"] == len(messages)


def test_a_new_message_after_the_text_still_closes_the_calls(tmp_path):
    """The rule is kept: a user message after the call leaves it unanswered for good, and a result after that
    user message is not named from it."""
    said = f"Let me compute. <tool_call>{CALC}</tool_call> I will wait."
    messages = [_msg("user", "q"), _msg("assistant", said), _msg("user", "never mind"), _msg("tool", "2")]
    data, _ = _conv(tmp_path, messages)
    [result] = [t["result"] for t in data["turns"] if t["result"]]
    assert result["name"] is None
    assert data["stats"]["assistant_turns"] == 1


def test_a_qwen_user_turn_of_responses_after_trailing_text_is_the_result():
    """ChatML: an assistant turn that writes on after its call, then a user turn holding only its
    ``<tool_response>``: the response is the call's result (before: the user turn stayed the user's, the text
    after the call being taken for a turn that made no call)."""
    text = (
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nLet me run.\n<tool_call>\n"
        f"{CALC}\n</tool_call>\nWaiting.<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nRES\n</tool_response><|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
    )
    turns, known = from_trajectory_text(text)
    assert known
    results = [t.result for t in turns if t.result is not None]
    assert [r.content for r in results] == ["RES"]
    assert not any(t.role == "user" and "<tool_response>" in (t.content or "") for t in turns)


# -- 2. roles at steps whose files name none -------------------------------------------------------------------

FLINK = SAMPLE_RUNS / "flink_mixed"


def _footer_roles(step: int | None = None) -> list[str]:
    """The ``<role>_reward`` columns of flink_mixed's Parquet footers (of one step's file, or of every file)."""
    files = sorted((FLINK / "flink_logs").glob("*.parquet"))
    if step is not None:
        files = [f for f in files if f.name == f"batch_debug_data_train_{step}.parquet"]
    return sorted({c[: -len("_reward")] for f in files for c in pq.read_schema(f).names if c.endswith("_reward")})


def _err(r: Any) -> str:
    return [line for line in r.stderr.splitlines() if line.startswith("Error:")][-1]


def test_the_flink_fixture_is_as_the_tests_assume():
    assert _footer_roles(3) == []  # a v0 step: no per-role columns
    assert _footer_roles(15) == ["judge", "solver", "verifier"]
    assert _footer_roles() == ["judge", "solver", "verifier"]


@pytest.mark.parametrize(
    ("args", "suggested"),
    [
        (["--best", "1", "--role", "solvr"], "solver"),
        (["--best", "1", "--role", "Judge"], "judge"),
        (["--role", "verifer"], "verifier"),
    ],
)
def test_a_role_typo_at_v0_steps_is_the_usage_error(cli, args, suggested):
    """At step 3 (v0) as at step 15 (v1): the run's roles (its footers') and a suggestion, exit 2."""
    for step in ("3", "15"):
        r = cli("render-trajectory", FLINK, "--steps", step, *args, "--format", "json")
        assert r.exit_code == 2, (step, r.output)
        msg = _err(r)
        assert f"did you mean '{suggested}'?" in msg, msg
        assert all(role in msg for role in _footer_roles()), msg


def test_a_where_role_typo_at_v0_steps_is_the_usage_error(cli):
    r = cli("render-trajectory", FLINK, "--steps", "3", "--where", "role:critic > 0", "--format", "json")
    assert r.exit_code == 2, r.output
    assert "unknown role 'critic'" in _err(r)
    assert all(role in _err(r) for role in _footer_roles())


@pytest.mark.parametrize(
    "args",
    [
        ["--steps", "3", "--best", "1", "--role", "judge"],
        ["--steps", "3", "--role", "judge"],
        ["--steps", "0:9", "--where", "role:judge > 0.5"],
    ],
)
def test_a_role_of_the_run_not_logged_at_the_steps_is_no_match_said_so(cli, args):
    """judge is the run's (v1 footers) and no v0 file logs it: exit 1, and the message says why (before: a bare
    "no sample matches"; with every footer open it would have been "none has a valid reward", exit 2)."""
    r = cli("render-trajectory", FLINK, *args, "--format", "json")
    assert r.exit_code == 1, r.output
    msg = _err(r)
    assert "no sample matches the selectors" in msg and "role 'judge' is not logged at the selected steps" in msg


def test_a_role_is_still_ranked_where_the_steps_log_it(cli):
    """At step 15 the judge's best is the row of the highest ``judge_reward`` (ties by sample id)."""
    t = pq.read_table(FLINK / "flink_logs" / "batch_debug_data_train_15.parquet").to_pylist()
    best = max(t, key=lambda row: row["judge_reward"])["judge_reward"]
    r = cli("render-trajectory", FLINK, "--steps", "15", "--best", "1", "--role", "judge", "--format", "json")
    assert r.exit_code == 0, r.output
    [shown] = json.loads(r.stdout)
    assert [x["reward"] for x in shown["reward"]["roles"] if x["role"] == "judge"] == [best]


def test_a_native_role_absent_from_the_step_is_not_logged_and_one_of_null_rewards_is_unranked(cli, tmp_path):
    """Native: judge logged at step 0 only (manifest names it): at step 1 it is not logged (exit 1, said); a
    role logged with null rewards everywhere is the documented "none has a valid reward" (exit 2)."""
    rows = native_rows(0, 4, roles=("solver", "judge")) + native_rows(1, 4, roles=("solver",))
    for row in rows:
        for x in row["roles"]:
            if x["role"] == "solver":
                x["reward"] = None
    root = native_run_of(tmp_path / "run", rows, roles=("solver", "judge"))
    r = cli("render-trajectory", root, "--steps", "1", "--best", "1", "--role", "judge", "--format", "json")
    assert r.exit_code == 1, r.output
    assert "role 'judge' is not logged at the selected steps" in _err(r)
    r = cli("render-trajectory", root, "--steps", "1", "--best", "1", "--role", "solver", "--format", "json")
    assert r.exit_code == 2, r.output
    assert "none has a valid solver's reward" in _err(r)
    r = cli("render-trajectory", root, "--steps", "0", "--best", "1", "--role", "judge", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["sample_id"] == "s0-3"  # judge rewards 1, 2, 3, 4 (native_rows)


def test_a_role_with_only_the_other_pickers_ranks_nothing_and_is_not_refused(cli):
    """``--role judge --random 2`` at a v0 step: the role ranks nothing, the samples are drawn."""
    r = cli("render-trajectory", FLINK, "--steps", "3", "--role", "judge", "--random", "2", "--format", "json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 2


# -- 3. --index out of range -----------------------------------------------------------------------------------


def test_an_index_out_of_range_is_the_documented_usage_error(cli):
    """Exit 2, and docs/render.md lists it among the usage errors (it read as if it were 1)."""
    n = pq.read_metadata(FLINK / "flink_logs" / "batch_debug_data_train_5.parquet").num_rows
    r = cli("render-trajectory", FLINK, "--steps", "5", "--index", str(n), "--format", "json")
    assert r.exit_code == 2, r.output
    assert f"only {n} sample(s) selected" in _err(r)
    docs = (ROOT / "docs" / "render.md").read_text()
    usage = docs[docs.index("Exit codes:") :].split("2 usage error", 1)[1].split(")", 1)[0]
    assert "--index" in usage, usage
