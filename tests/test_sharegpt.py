"""ShareGPT conversations (``{"from": "gpt", "value": ...}``, as LLaMA-Factory, FastChat and Axolotl write them)
were not recognised: `render-trajectory` showed the whole list as one JSON tree and the texts were not turns.
They are read as the chat messages they stand for; a ``function_call`` turn is a tool call, answered by the
``observation`` after it."""

from __future__ import annotations

import json

from runlog.chat import from_openai_chat
from runlog.render.normalize import normalize

CONV = [
    {"from": "system", "value": "Be brief."},
    {"from": "human", "value": "What is 6 x 7?"},
    {"from": "function_call", "value": json.dumps({"name": "calc", "arguments": {"expr": "6*7"}})},
    {"from": "observation", "value": "42"},
    {"from": "gpt", "value": "<answer>42</answer>"},
    {"from": "judge", "value": "correct"},
]


def test_sharegpt_turns_are_chat_messages() -> None:
    msgs = from_openai_chat(CONV)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "judge"]
    assert [m["content"] for m in msgs] == ["Be brief.", "What is 6 x 7?", None, "42", "<answer>42</answer>", "correct"]
    assert msgs[2]["tool_calls"] == [{"id": None, "name": "calc", "arguments": '{"expr":"6*7"}'}]
    assert msgs[3]["name"] == "calc"  # the observation answers the call before it, which had no id


def test_a_result_without_ids_answers_the_next_call_in_order() -> None:
    msgs = from_openai_chat(
        [
            {"role": "assistant", "content": "", "tool_calls": [{"name": "a", "arguments": "{}"}, {"name": "b"}]},
            {"role": "tool", "content": "1"},
            {"role": "tool", "content": "2"},
        ]
    )
    assert [m["name"] for m in msgs[1:]] == ["a", "b"]


def test_render_trajectory_shows_sharegpt_turns(tmp_path, cli) -> None:
    from runlog import RunWriter

    with RunWriter(tmp_path / "r", durable=False) as w:
        w.log_samples(0, {"reward": [1.0], "trajectory": [json.dumps(CONV)]})
    res = cli("render-trajectory", tmp_path / "r", "--index", "0", "-f", "json")
    assert res.exit_code == 0, res.output
    turns = json.loads(res.stdout)[0]["turns"]
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "tool", "assistant", "judge"]
    assert turns[2]["tool_calls"][0]["name"] == "calc"
    assert turns[4]["content"] == "<answer>42</answer>"
    assert [t.role for t in normalize(CONV)] == [t["role"] for t in turns]
