"""A review of the sixteenth audit's reading and summary side: what it found the new code got wrong.

1. ``--text messages``: a reply of white space without a tool call (the model said nothing) was left out of format
   adherence and diversity as if it were a tool call without words (adherence 0.333 where it is 0.25); only tool
   calls without words are left out, and ``format`` says so too (``notes``), as ``diversity`` does.
2. verifiers / NeMo Gym: the same prompt written with its keys in another order (a second writer, a resumed
   evaluation) was taken for another prompt: each group split in two (zero_adv_frac 0.75 where it is 0.5), with a
   warning that ids stand for different prompts. The prompt's digest is of its canonical JSON.
3. doctor ``scalar_nonfinite``: a loss NaN at its first steps (logged before it is computed), finite, then NaN for
   its last 8 was not said: the leading NaN run counted as an earlier run as long as the tail.
4. ``--text auto+reasoning``: a Responses reasoning item's raw reasoning goes back in think tags, not its summary
   too; a model line that reads like runlog's mark is the model's.

Each test counts what it expects with plain python (no runlog) and compares that with what runlog reads and says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog import RunWriter, chat
from runlog.analysis.doctor import diagnose
from runlog.analysis.texts import diversity_frame, format_frame, format_per_sample, texts_frame
from runlog.run import open_run

# -- 1. --text messages: an empty reply is a text, a tool call without words is not ----------------------------
ANSWER = "<think>\nx\n</think>\n<answer>\n4\n</answer>"


def _write_replies(path: Path, *, calls: bool = False) -> list[dict[str, Any]]:
    """Two steps of 8 samples: a user turn, then an answer that passes open-r1 (even samples) or a reply of white
    space (odd ones; ``calls``: a tool call whose content is that white space). Returns the samples of a step."""
    rows = []
    for i in range(8):
        reply: dict[str, Any] = {"role": "assistant", "content": ANSWER if i % 2 == 0 else " \n\n"}
        if calls and i % 2:
            reply["tool_calls"] = [{"id": f"c{i}", "name": "python", "arguments": '{"code": "1+1"}'}]
        rows.append(
            {
                "reward": 0.5,
                "roles": [{"role": "solver", "reward": 0.5, "kl": 0.01}],
                "group_id": f"{i // 4}",
                "messages": [{"role": "user", "content": f"q{i}"}, reply],
            }
        )
    with RunWriter(path, name=path.name, roles=["solver"], durable=False, clock=lambda: 1.7e9) as w:
        for step in range(2):
            w.log_samples(step, rows)
    return rows


def _messages_with_content(rows: list[dict[str, Any]], words_only: bool) -> list[tuple[str, str]]:
    """The (role, content) of every message with content (``words_only``: and not a tool call without words)."""
    out = []
    for r in rows:
        for m in r["messages"]:
            if words_only and m.get("tool_calls") and not m["content"].strip():
                continue
            out.append((m["role"], m["content"]))
    return out


def test_an_empty_reply_without_a_tool_call_is_a_text_that_fails_the_format(tmp_path: Path) -> None:
    rows = _write_replies(tmp_path / "run")
    texts = _messages_with_content(rows, words_only=True)
    passed = sum(t == ANSWER for _, t in texts)
    assert (len(texts), passed) == (16, 4)
    df = format_frame(open_run(tmp_path / "run"), "open-r1", ["step"], text="messages")
    assert df["texts"].to_list() == [16, 16]
    assert df["adherence"].to_list() == [passed / len(texts)] * 2
    assert df["failed/pattern"].to_list() == [12, 12]
    notes: list[str] = []
    div = diversity_frame(open_run(tmp_path / "run"), ["step"], text="messages", over="set", notes=notes)
    assert div["texts"].to_list() == [16, 16]
    assert div["unique_frac"].to_list() == [len(set(t for _, t in texts)) / len(texts)] * 2
    assert not [n for n in notes if "without words" in n]


def test_a_tool_call_without_words_is_left_out_of_text_specs_and_said_by_format_too(tmp_path: Path) -> None:
    rows = _write_replies(tmp_path / "run", calls=True)
    texts = _messages_with_content(rows, words_only=True)
    assert len(texts) == 12  # 8 user turns, 4 answers
    left = 2 * sum(bool(m.get("tool_calls")) for r in rows for m in r["messages"])  # the calls of the 2 steps
    notes: list[str] = []
    df = format_frame(open_run(tmp_path / "run"), "open-r1", ["step"], text="messages", notes=notes)
    assert df["texts"].to_list() == [12, 12] and df["adherence"].to_list() == [4 / 12] * 2
    assert [n for n in notes if "without words" in n] == [
        f"{left} message(s) without words (tool calls whose content is empty or white space) left out of "
        "--text messages: only tool-call-json checks them"
    ]
    per = format_per_sample(open_run(tmp_path / "run"), "open-r1", text="messages", notes=(said := []))
    assert per.height == 24 and len(said) == 1
    notes = []
    div = diversity_frame(open_run(tmp_path / "run"), ["step"], text="messages", over="set", notes=notes)
    assert div["texts"].to_list() == [12, 12]
    assert [n for n in notes if n.startswith(f"{left} message(s) without words")]


# -- 2. the same prompt written another way is the same prompt --------------------------------------------------
def _vf_line(ex_id: int, prompt: str, k: int, reward: float, flip: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"content": prompt, "role": "user"} if flip else {"role": "user", "content": prompt}
    if flip:
        message["tool_calls"] = None  # another writer writes the optional fields as null
    return {
        "id": ex_id,
        "prompt": [message],
        "completion": [{"role": "assistant", "content": f"answer {k}"}],
        "task": "default",
        "reward": reward,
        "generation_ms": 1.0,
        "scoring_ms": 0.1,
        "total_ms": 2.0,
    }


def _write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")


def _zero_adv_truth(paths: list[Path], prompt_of: Any) -> float:
    groups: dict[str, set[float]] = {}
    for p in paths:
        for line in p.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            key = json.dumps(prompt_of(rec), sort_keys=True)
            groups.setdefault(key, set()).add(rec["reward"])
    return sum(len(r) == 1 for r in groups.values()) / len(groups)


def _prompt_warnings(run: runlog.Run) -> list[str]:
    return [p.message for p in run.ctx.problems if "different prompts" in p.message]


def test_a_resumed_verifiers_evaluation_with_its_keys_in_another_order_keeps_its_groups(tmp_path: Path) -> None:
    rewards = {("a", 0): (1, 1), ("a", 1): (0, 0), ("b", 0): (1, 0), ("b", 1): (0, 0)}
    paths = []
    for f, flip in (("a", False), ("b", True)):
        paths.append(tmp_path / f"{f}_results.jsonl")
        lines = [
            _vf_line(i, p, k, rewards[(f, i)][k], flip)
            for i, p in enumerate(["What is 2+2?", "Name a prime."])
            for k in range(2)
        ]
        _write_lines(paths[-1], lines)
    truth = _zero_adv_truth(paths, lambda r: [{k: v for k, v in m.items() if v is not None} for m in r["prompt"]])
    assert truth == 0.5
    run = runlog.open_run(tmp_path)
    assert runlog.summarize(run).to_dicts()[0]["zero_adv_frac"] == truth
    assert sorted(run.samples.select("group_id").collect()["group_id"].to_list()) == ["0"] * 4 + ["1"] * 4
    assert _prompt_warnings(run) == []


def test_a_prompt_whose_text_differs_by_a_space_is_another_prompt(tmp_path: Path) -> None:
    """Only the writer's JSON is read canonically, never a text: ids that name two texts are still said."""
    _write_lines(tmp_path / "a_results.jsonl", [_vf_line(0, "What is 2+2?", k, 1, False) for k in range(2)])
    _write_lines(tmp_path / "b_results.jsonl", [_vf_line(0, "What is 2+2? ", k, 0, True) for k in range(2)])
    run = runlog.open_run(tmp_path)
    assert runlog.summarize(run).to_dicts()[0]["zero_adv_frac"] == 1.0  # two groups, each flat
    assert len(_prompt_warnings(run)) == 1


def _nemo_line(task: int, rollout: int, question: str, other_writer: bool) -> dict[str, Any]:
    """A NeMo Gym rollout whose request holds a user question and a function call with its output; the other
    writer orders keys the other way, writes optional fields as null and spaces the call's JSON arguments."""
    user: dict[str, Any] = {"role": "user", "content": question, "type": "message"}
    call: dict[str, Any] = {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Oslo"}'}
    if other_writer:
        user = dict(reversed(list(user.items())), id=None)
        call = dict(reversed(list(call.items())), arguments='{"city": "Oslo"}', status=None)
    items = [user, call, {"type": "function_call_output", "call_id": "c1", "output": "sunny"}]
    return {
        "responses_create_params": {"input": items, "instructions": None if other_writer else ""},
        "response": {
            "id": f"r{task}-{rollout}-{other_writer}",
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}],
        },
        "reward": float(rollout % 2),
        "_ng_task_index": task,
        "_ng_rollout_index": rollout,
    }


def test_nemo_gym_rollouts_of_one_task_written_two_ways_stay_one_group(tmp_path: Path) -> None:
    _write_lines(tmp_path / "a_rollouts.jsonl", [_nemo_line(0, k, "weather?", False) for k in range(2)])
    _write_lines(tmp_path / "b_rollouts.jsonl", [_nemo_line(0, k, "weather?", True) for k in range(2, 4)])
    run = runlog.open_run(tmp_path)
    assert run.samples.select("group_id").collect()["group_id"].to_list() == ["0"] * 4
    assert _prompt_warnings(run) == []


# -- 3. doctor: a key NaN before it is computed, then diverged -------------------------------------------------
def test_a_loss_nan_at_its_first_steps_then_diverged_is_scalar_nonfinite(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run", name="run", durable=False, clock=lambda: 1.7e9) as w:
        for st in range(218):
            loss = math.nan if st < 10 or st >= 210 else 1.0 / (1 + st)
            w.log_scalars(st, {"loss": loss, "grad_norm": math.inf if st in (50, 51) or st >= 205 else 1.0})
    found = [
        f for f in diagnose(open_run(tmp_path / "run")).findings if f.evidence.get("problem_kind") == "scalar_nonfinite"
    ]
    keys = {k["key"]: (k["first_step"], k["count"]) for f in found for k in f.evidence["keys"]}
    assert keys == {"loss": (210, 8), "grad_norm": (205, 13)}


def test_an_eval_metric_first_logged_after_nan_steps_is_still_no_scalar_nonfinite(tmp_path: Path) -> None:
    """The first eval at step 10 (NaN before it), then every 10 steps, NaN between: the tail after the last eval
    (9 steps) is no longer than the gaps between evals."""
    with RunWriter(tmp_path / "run", name="run", durable=False, clock=lambda: 1.7e9) as w:
        for st in range(100):
            w.log_scalars(st, {"eval/acc": 0.5 if st % 10 == 0 and st > 0 else math.nan, "loss": 1.0})
    assert not [f for f in diagnose(open_run(tmp_path / "run")).findings if "scalar_nonfinite" in f.message]


# -- 4. auto+reasoning: the raw reasoning, runlog's marks only where runlog put them ---------------------------
SUMMARY, RAW = "SUMMARY: the user wants 2+2", "RAW-COT: 2+2 is 4, answer 4"


def _nemo_reasoning(path: Path, reasoning: dict[str, Any]) -> runlog.Run:
    rec = {
        "responses_create_params": {"input": [{"role": "user", "content": "2+2?"}]},
        "response": {
            "id": "r0",
            "output": [
                {"type": "reasoning", **reasoning},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
            ],
        },
        "reward": 1.0,
        "_ng_task_index": 0,
        "_ng_rollout_index": 0,
    }
    _write_lines(path / "rollouts.jsonl", [rec])
    return runlog.open_run(path / "rollouts.jsonl")


def test_auto_plus_reasoning_puts_back_the_raw_reasoning_where_the_summary_is_there_too(tmp_path: Path) -> None:
    run = _nemo_reasoning(
        tmp_path,
        {"summary": [{"type": "summary_text", "text": SUMMARY}], "content": [{"type": "reasoning_text", "text": RAW}]},
    )
    assert texts_frame(run, "auto+reasoning")["text"].to_list() == [f"<think>{RAW}</think>4"]


@pytest.mark.parametrize("key", ["summary", "content"])
def test_a_model_line_that_reads_like_runlogs_mark_is_kept(tmp_path: Path, key: str) -> None:
    """An item with one text: no mark of runlog's in it, so a line that reads ``[reasoning_text]`` is the model's."""
    words = f"{chat.RAW_REASONING_MARK}\nI think it is 4\n{chat.SUMMARY_MARK}"
    run = _nemo_reasoning(tmp_path, {key: [{"type": "reasoning_text", "text": words}]})
    assert texts_frame(run, "auto+reasoning")["text"].to_list() == [f"<think>{words}</think>4"]
