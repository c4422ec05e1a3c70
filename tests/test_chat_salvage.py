"""A tool call whose JSON was cut short (verifiers writes each call as a JSON string; a log line truncated inside
the arguments) keeps its id and name where they came before the cut, so that the tool's result still answers
it; its arguments are the text as written."""

from __future__ import annotations

import json

from runlog.chat import from_openai_chat


def test_a_cut_short_call_keeps_its_id_and_the_result_answers_it() -> None:
    whole = {"id": "call_1", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(1)"}'}}
    cut = json.dumps(whole)[:-12]
    with_json_inside = json.dumps(
        {"id": "call_2", "function": {"arguments": json.dumps({"name": "not the call's", "id": "nor this"})}}
    )[:-5]
    msgs = from_openai_chat(
        [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "", "tool_calls": [cut, with_json_inside]},
            {"role": "tool", "content": "1"},
            {"role": "tool", "content": "2"},
        ]
    )
    calls = msgs[1]["tool_calls"]
    assert [(c["id"], c["name"]) for c in calls] == [("call_1", "python"), ("call_2", None)]
    assert calls[0]["arguments"] == cut and calls[1]["arguments"] == with_json_inside
    assert [(m["tool_call_id"], m["name"]) for m in msgs[2:]] == [("call_1", "python"), ("call_2", None)]
