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


def test_the_salvage_reads_the_calls_own_keys_only() -> None:
    from runlog.chat import tool_call

    # A key inside the arguments object is not the call's; a cut inside a key or after a colon keeps what came
    # before it; half a surrogate pair is no id.
    nested = '{"function": {"arguments": {"user": {"id": "user-42", "name": "x'
    assert (tool_call(nested)["id"], tool_call(nested)["name"]) == (None, None)
    assert tool_call('{"id": "c1", "func')["id"] == "c1"
    cut = '{"id": "c1", "function": {"name": "py", "arguments":'
    assert (tool_call(cut)["id"], tool_call(cut)["name"], tool_call(cut)["arguments"]) == ("c1", "py", cut)
    assert tool_call('{"id": "c\\ud83d')["id"] is None
