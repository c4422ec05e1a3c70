"""The texts the metrics read, after the eleventh audit (expected figures counted here from the raw JSON written):

- verifiers and NeMo Gym ``messages`` are the prompt and the generation one after the other: a few-shot assistant
  turn of the prompt was read as the policy's text (when the rollout's own turns are tool calls only, and always
  by ``--text assistant``), and the prompt's tool calls were checked in every sample. The readers now say where
  the generation starts (``prompt_turns``) and the texts and calls are read from the generated turns;
- doctor's ``format_drift`` when only the message shape changed (the reasoning moved out of the content from one
  step on) says so, with the command that puts the reasoning back;
- runlog's ``[redacted_thinking]`` mark of encrypted reasoning is no reasoning: ``auto+reasoning`` does not wrap
  it in think tags, and the reasoning note does not count it;
- the reasoning note offers ``--text auto+reasoning`` only for the texts it reads (``auto``);
- ``--text assistant`` passes over tool-call turns without words (``"\\n\\n"``), as ``auto`` does.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from runlog import open_run
from runlog.analysis.doctor import diagnose
from runlog.analysis.texts import (
    SkippedTexts,
    diversity_frame,
    format_frame,
    format_per_sample,
    reasoning_note,
    texts_frame,
)
from runlog.writer import RunWriter

FEW_SHOT = [
    {"role": "system", "content": "Answer as <think>..</think><answer>..</answer>."},
    {"role": "user", "content": "example: 1+1"},
    {"role": "assistant", "content": "<think>one plus one</think><answer>2</answer>"},
    {"role": "user", "content": "now: 2+2"},
]


def _write_jsonl(path: Path, records: list[dict]) -> list[dict]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def _has_words(content) -> bool:
    return isinstance(content, str) and bool(content.strip())


def _chat_policy_texts(messages: list[dict]) -> list[str]:
    """The assistant turns with words of raw OpenAI chat messages (no runlog code)."""
    return [m["content"] for m in messages if m.get("role") == "assistant" and _has_words(m.get("content"))]


# -- #2 the prompt's turns are not the policy's ---------------------------------------------------------------------
def _fewshot_calls_only(root: Path) -> list[dict]:
    recs = []
    for k in range(4):
        comp = [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": f"c{k}", "type": "function", "function": {"name": "calc", "arguments": json.dumps({"e": k})}}
                ],
            },
            {"role": "tool", "tool_call_id": f"c{k}", "content": str(2 + k)},
        ]
        recs.append({"id": 0, "example_id": 0, "prompt": FEW_SHOT, "completion": comp, "reward": 0.0})
    return _write_jsonl(root / "results.jsonl", recs)


def test_verifiers_fewshot_example_is_not_the_policys_text(tmp_path: Path) -> None:
    recs = _fewshot_calls_only(tmp_path / "run")
    with_words = sum(bool(_chat_policy_texts(r["completion"])) for r in recs)  # 0: the rollouts only call tools
    run = open_run(tmp_path / "run")
    skipped = SkippedTexts()
    fmt = format_frame(run, "think-answer-strict", text="auto", skipped=skipped)
    assert fmt["texts"].sum() == with_words  # was 4: the example's text in every sample
    assert skipped.total == len(recs) - with_words
    div = diversity_frame(run, text="auto", over="set")
    assert div["texts"].sum() == with_words
    # The boundary itself: the prompt's message count, as written.
    turns = run.samples.select("prompt_turns").collect()["prompt_turns"].to_list()
    assert turns == [len(r["prompt"]) for r in recs]


def test_nemo_gym_request_example_is_not_the_policys_text(tmp_path: Path) -> None:
    recs = []
    for k in range(4):
        inp = [
            {"role": "user", "content": "example: 1+1", "type": "message"},
            {"role": "assistant", "content": "<think>one plus one</think><answer>2</answer>", "type": "message"},
            {"role": "user", "content": "now: 2+2", "type": "message"},
        ]
        outp = [{"type": "function_call", "call_id": f"c{k}", "name": "calc", "arguments": json.dumps({"e": k})}]
        recs.append(
            {
                "responses_create_params": {"input": inp, "instructions": "be brief"},
                "response": {"output": outp},
                "reward": 0.0,
                "_ng_task_index": 0,
                "_ng_rollout_index": k,
            }
        )
    _write_jsonl(tmp_path / "run" / "rollouts.jsonl", recs)
    # The response's output has no message with text in any rollout.
    with_words = sum(
        any(it.get("type") == "message" and it.get("content") for it in r["response"]["output"]) for r in recs
    )
    run = open_run(tmp_path / "run")
    frame = texts_frame(run, "auto")
    assert frame["text"].drop_nulls().len() == with_words == 0  # was 4
    turns = run.samples.select("prompt_turns").collect()["prompt_turns"].to_list()
    # The instructions (one system message) and the input items.
    assert turns == [1 + len(r["responses_create_params"]["input"]) for r in recs]


def _fewshot_tool_example(root: Path) -> list[dict]:
    prompt = [
        {"role": "system", "content": "Use the calc tool."},
        {"role": "user", "content": "example: 1+1"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "ex1", "type": "function", "function": {"name": "calc", "arguments": "1+1"}}],
        },
        {"role": "tool", "tool_call_id": "ex1", "content": "2"},
        {"role": "assistant", "content": "<answer>2</answer>"},
        {"role": "user", "content": "now: 2+2"},
    ]
    recs = []
    for k in range(3):
        comp = [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": f"c{k}", "type": "function", "function": {"name": "calc", "arguments": '{"e": "2+2"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": f"c{k}", "content": "4"},
            {"role": "assistant", "content": f"<answer>4</answer> v{k}"},
        ]
        recs.append({"id": 0, "example_id": 0, "prompt": prompt, "completion": comp, "reward": 1.0})
    return _write_jsonl(root / "results.jsonl", recs)


def _good_call(call: dict) -> bool:
    fn = call["function"]
    try:
        args = json.loads(fn["arguments"])
    except ValueError:
        return False
    return bool(fn["name"]) and isinstance(args, dict)


def test_tool_call_json_checks_the_rollouts_calls_only(tmp_path: Path) -> None:
    recs = _fewshot_tool_example(tmp_path / "run")
    # Expected from the completions alone: one row per assistant message (calls or text), scored good/calls.
    expected = []
    for r in recs:
        base = len(r["prompt"])
        for i, m in enumerate(r["completion"]):
            if m["role"] != "assistant":
                continue
            calls = m.get("tool_calls") or []
            expected.append((base + i, sum(map(_good_call, calls)) / len(calls) if calls else 1.0))
    run = open_run(tmp_path / "run")
    per = format_per_sample(run, "tool-call-json")
    assert list(zip(per["turn"].to_list(), per["score"].to_list(), strict=True)) == expected
    fmt = format_frame(run, "tool-call-json")
    assert fmt["adherence"].to_list() == [1.0]  # was 0.75: the prompt's bad call counted in every sample
    assert not [c for c in fmt.columns if c.startswith("failed/")]


def test_assistant_text_is_the_completions_turns_only(tmp_path: Path) -> None:
    recs = _fewshot_tool_example(tmp_path / "run")
    expected = ["\n".join(_chat_policy_texts(r["completion"])) for r in recs]
    frame = texts_frame(open_run(tmp_path / "run"), "assistant")
    assert frame["text"].to_list() == expected  # was the example's "<answer>2</answer>\n" in front of each


def test_a_run_without_the_boundary_reads_every_turn(tmp_path: Path) -> None:
    """Native runs (no ``prompt_turns``): an assistant turn anywhere is read, as before."""
    msgs = [FEW_SHOT[2], {"role": "user", "content": "now"}, {"role": "assistant", "content": "", "tool_calls": []}]
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, [{"sample_id": "a", "reward": 1.0, "messages": msgs}])
    run = open_run(tmp_path / "run")
    assert run.samples.select("prompt_turns").collect()["prompt_turns"].to_list() == [None]
    # The last assistant turn is the empty one (no tool call, so not passed over).
    assert texts_frame(run, "auto")["text"].to_list() == [""]
    assert texts_frame(run, "assistant")["text"].to_list() == [FEW_SHOT[2]["content"]]


# -- #5 encrypted reasoning is no reasoning text ------------------------------------------------------------------
def test_redacted_thinking_mark_is_not_put_in_think_tags(tmp_path: Path) -> None:
    recs = []
    for k in range(4):
        parts = [
            {"type": "redacted_thinking", "data": "EqQBCgIYAhIM..."},
            {"type": "text", "text": f"<answer>{k}</answer>"},
        ]
        if k == 3:  # a readable thought beside the encrypted one
            parts.insert(0, {"type": "thinking", "thinking": "I add"})
        comp = [{"role": "assistant", "content": parts}]
        recs.append({"id": k, "example_id": k, "prompt": [{"role": "user", "content": "q"}], "completion": comp})
        recs[-1]["reward"] = 1.0
    _write_jsonl(tmp_path / "run" / "results.jsonl", recs)

    def written(parts: list[dict]) -> tuple[str, str]:
        text = "\n".join(p["text"] for p in parts if p["type"] == "text")
        thought = "\n".join(p["thinking"] for p in parts if p["type"] == "thinking")
        return text, thought

    expected = []
    for r in recs:
        text, thought = written(r["completion"][0]["content"])
        expected.append(f"<think>{thought}</think>{text}" if thought else text)
    run = open_run(tmp_path / "run")
    assert texts_frame(run, "auto+reasoning")["text"].to_list() == expected
    passing = sum(bool(re.fullmatch(r"<think>.+</think><answer>.+</answer>", t)) for t in expected)
    fmt = format_frame(run, "think-answer-strict", text="auto+reasoning")
    assert fmt["adherence"].to_list() == [passing / len(recs)]  # was 1.0: the mark read as the reasoning
    # One text in four has reasoning words (25% > 2%): the note is due, and counts that one only.
    note = reasoning_note(run, "think-answer-strict", text="auto")
    assert note is not None and "1 of them hold their reasoning" in note


def test_redacted_only_reasoning_gives_no_note(tmp_path: Path) -> None:
    recs = [
        {
            "id": k,
            "example_id": k,
            "prompt": [{"role": "user", "content": "q"}],
            "completion": [
                {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}, "<answer>1</answer>"]}
            ],
            "reward": 1.0,
        }
        for k in range(4)
    ]
    _write_jsonl(tmp_path / "run" / "results.jsonl", recs)
    run = open_run(tmp_path / "run")
    assert reasoning_note(run, "think-answer-strict", text="auto") is None  # no reasoning words anywhere
    fmt = format_frame(run, "think-answer-strict", text="auto+reasoning")
    assert fmt["think_tokens_mean"].to_list() == [None]  # no think block was made of the mark


# -- #6 the reasoning note's fix reads the same texts -------------------------------------------------------------
def test_reasoning_note_for_another_speaker_does_not_offer_auto_reasoning(tmp_path: Path) -> None:
    recs = []
    for k in range(4):
        comp = [
            {"role": "assistant", "name": "solver", "content": f"<answer>{k}</answer>", "reasoning_content": "sum"},
            {"role": "assistant", "name": "judge", "content": "<answer>yes</answer>", "reasoning_content": "judging"},
        ]
        recs.append({"id": k, "example_id": k, "prompt": [{"role": "user", "content": "q"}], "completion": comp})
        recs[-1]["reward"] = 1.0
    _write_jsonl(tmp_path / "run" / "results.jsonl", recs)
    run = open_run(tmp_path / "run")
    for text in ("role:judge", "assistant", "messages"):
        note = reasoning_note(run, "think-answer-strict", text=text)
        assert note is not None, text
        assert "--text auto+reasoning puts the reasoning back" not in note, text
        assert f"No --text puts it back into the texts of --text {text}" in note
    # With auto, auto+reasoning is the same texts: offered.
    note = reasoning_note(run, "think-answer-strict", text="auto")
    assert note is not None and "--text auto+reasoning puts the reasoning back" in note


# -- #8 --text assistant passes over tool-call turns without words ------------------------------------------------
def test_assistant_passes_over_whitespace_tool_call_turns(tmp_path: Path) -> None:
    recs = []
    for k in range(3):
        call = {"id": f"c{k}", "type": "function", "function": {"name": "calc", "arguments": "{}"}}
        comp = [
            {"role": "assistant", "content": "\n\n", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{k}", "content": "4"},
        ]
        if k == 2:
            comp.append({"role": "assistant", "content": "four"})
        recs.append({"id": k, "example_id": k, "prompt": [{"role": "user", "content": "q"}], "completion": comp})
        recs[-1]["reward"] = 0.0
    _write_jsonl(tmp_path / "run" / "results.jsonl", recs)
    expected = ["\n".join(t) if (t := _chat_policy_texts(r["completion"])) else None for r in recs]
    run = open_run(tmp_path / "run")
    assert texts_frame(run, "assistant")["text"].to_list() == expected  # was "\n\n" for the first two
    assert texts_frame(run, "auto")["text"].to_list() == expected  # (one turn with words each: the same)


# -- #3 doctor: the message shape changed, not (maybe) the format -------------------------------------------------
def _shape_switch_run(root: Path, switch: int = 6, steps: int = 12) -> list[list[dict]]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    logged = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunWriter(root, durable=False) as w:
            for step in range(steps):
                rows = []
                for g in range(4):
                    for k in range(4):
                        think = " ".join(words[(step + g + k + j) % 10] for j in range(4))
                        ans = " ".join(words[(g * 3 + k + j + step) % 10] for j in range(3))
                        if step >= switch:
                            content = [
                                {"type": "thinking", "thinking": think},
                                {"type": "text", "text": f"<answer>{ans}</answer>"},
                            ]
                        else:
                            content = f"<think>{think}</think><answer>{ans}</answer>"
                        msgs = [{"role": "user", "content": f"q{g}"}, {"role": "assistant", "content": content}]
                        rows.append({"sample_id": f"s{g}-{k}", "group_id": f"g{g}", "reward": 0.5, "messages": msgs})
                w.log_samples(step, rows)
                logged.append(rows)
    return logged


def test_doctor_format_drift_says_the_reasoning_moved_to_the_field(tmp_path: Path) -> None:
    logged = _shape_switch_run(tmp_path / "run")
    # From the raw rows: the first step whose contents hold no <think> tag, and how many texts from it on carry
    # their reasoning as thinking parts.
    onset = next(i for i, rows in enumerate(logged) if all(isinstance(r["messages"][1]["content"], list) for r in rows))
    after = [r for rows in logged[onset:] for r in rows]
    held = sum(any(p["type"] == "thinking" for p in r["messages"][1]["content"]) for r in after)
    result = diagnose(open_run(tmp_path / "run"))
    drift = [f for f in result.findings if f.kind == "format_drift"]
    assert len(drift) == 1 and drift[0].onset_step == onset
    assert drift[0].evidence["reasoning_field"] == {
        "from_step": onset,
        "texts": len(after),
        "think_tagged": 0,
        "reasoning_in_field": held,
    }
    assert "--text auto+reasoning" in drift[0].message and f"from step {onset} on" in drift[0].message


def test_doctor_without_a_shape_change_adds_nothing(tmp_path: Path) -> None:
    """Tags at every step: no drift and no words about the reasoning field."""
    _shape_switch_run(tmp_path / "run", switch=12)
    result = diagnose(open_run(tmp_path / "run"))
    assert not [f for f in result.findings if f.kind == "format_drift"]


def test_where_does_not_offer_prompt_turns_and_says_why():
    """``prompt_turns`` is a number, but bookkeeping (where the generation starts), not a value to filter on; it
    is neither offered nor called text."""
    import polars as pl

    from runlog.errors import UsageError
    from runlog.render.where import numeric_columns, operand_expr

    schema = {"step": pl.Int64(), "reward": pl.Float64(), "prompt_turns": pl.Int32(), "prompt": pl.String()}
    assert numeric_columns(schema) == ["step", "reward"]
    with pytest.raises(UsageError, match="'prompt_turns' is bookkeeping, not a value of the sample"):
        operand_expr("prompt_turns", schema, [], [])
    with pytest.raises(UsageError, match="'prompt' is text"):
        operand_expr("prompt", schema, [], [])
