"""``runlog.chat`` after the eleventh audit (expected values read here from the raw messages, not through runlog):

- Anthropic ``tool_use`` / ``tool_result`` content parts became the text ``[tool_use]`` / ``[tool_result]``:
  the call's name, id and input and the result's text were lost, a turn of tool calls only read as a text
  (a false diversity collapse), and ``tool-call-json`` scored bad calls as "no calls". They are now the
  message's tool calls and ``tool`` messages of their own, in the order written;
- arguments under a key not known were wrapped as ``{"key": value}``, always a JSON object, so cut-short JSON
  text or a list passed ``tool-call-json``: one such key holding JSON text or a list is the arguments as written;
- a Responses ``function_call`` with an ``id`` and no ``call_id`` did not lend its name to its output;
- a tool message naming its call with ``call_id`` was paired with another call and given its id; arguments
  written beside ``function`` (not in it) were dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runlog import chat
from runlog.writer import RunWriter

PROMPT = {"role": "user", "content": "list files"}


def tool_uses(msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in msg["content"] if p.get("type") == "tool_use"]


def texts_of(parts: list[dict[str, Any]]) -> list[str]:
    return [p["text"] for p in parts if p.get("type") == "text"]


# -- 1. Anthropic tool_use / tool_result parts -----------------------------------------------------------------
ASSISTANT = {
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "list, then clean up"},
        {"type": "text", "text": "Running it."},
        {"type": "tool_use", "id": "toolu_1", "name": "", "input": {"cmd": "ls"}},
        {"type": "tool_use", "id": "toolu_2", "name": "rm_rf", "input": {"path": "/"}},
    ],
}
RESULTS = {
    "role": "user",
    "content": [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [{"type": "text", "text": "denied"}],
            "is_error": True,
        },
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt b.txt"},
        {"type": "text", "text": "now say what you found"},
    ],
}
FINAL = {"role": "assistant", "content": "two files"}


def test_tool_use_parts_are_the_assistants_tool_calls() -> None:
    got = chat.from_openai_chat([PROMPT, ASSISTANT, RESULTS, FINAL])
    assistant = got[1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "\n".join(texts_of(ASSISTANT["content"]))  # "Running it.", no [tool_use] mark
    assert assistant["reasoning"] == ASSISTANT["content"][0]["thinking"]
    want = [(u["id"], u["name"], u["input"]) for u in tool_uses(ASSISTANT)]
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in assistant["tool_calls"]] == want


def test_tool_result_parts_are_tool_messages_in_the_order_written() -> None:
    got = chat.from_openai_chat([PROMPT, ASSISTANT, RESULTS, FINAL])
    names = {u["id"]: u["name"] for u in tool_uses(ASSISTANT)}
    want: list[tuple[Any, ...]] = [("user", None, PROMPT["content"])]
    want.append(("assistant", None, "Running it."))
    for part in RESULTS["content"]:
        if part["type"] == "tool_result":
            content = part["content"]
            text = content if isinstance(content, str) else "\n".join(texts_of(content))
            if part.get("is_error"):
                text = f"error (is_error)\n{text}"  # no field for it: said first in the content
            want.append(("tool", part["tool_use_id"], text))
        else:
            want.append(("user", None, part["text"]))  # the user's own words stay, after the results
    want.append(("assistant", None, FINAL["content"]))
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in got] == want
    assert [m["name"] for m in got if m["role"] == "tool"] == [names["toolu_2"], names["toolu_1"]]


def test_a_tool_use_left_where_no_reader_takes_it_keeps_its_name_and_input() -> None:
    part = tool_uses(ASSISTANT)[1]
    text = chat.content_text([part])
    assert text is not None and json.loads(text) == part  # not the bare marker "[tool_use]"


def test_tool_call_json_scores_anthropic_calls(tmp_path: Path, cli) -> None:
    """Two ``tool_use`` calls, one unnamed and one of a tool not known: 0 of 2 good, not "no calls" (1.0)."""
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": "s", "messages": [PROMPT, ASSISTANT, RESULTS, FINAL]}])
    tools = ["python"]
    uses = tool_uses(ASSISTANT)
    good = sum(1 for u in uses if u["name"] in tools and isinstance(u["input"], dict))
    first_rule = "missing_name" if not uses[0]["name"] else "unknown_tool"
    res = cli("metrics", "format", tmp_path / "run", "--spec", "tool-call-json", "--tools", *tools, "--per-sample",
              "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert (rows[0]["score"], rows[0]["failed_rule"]) == (good / len(uses), first_rule)  # (0.0, missing_name)


def test_a_turn_of_tool_use_only_is_passed_over_by_diversity(tmp_path: Path, cli) -> None:
    """Each rollout cut after a turn that is a tool call only: its words are those of its first turn, all
    different (the old reading made every text ``[tool_use]``: unique_frac 0.25)."""
    words = [
        "first I will check the alpha file",
        "maybe the beta directory holds it",
        "search gamma logs",
        "read delta",
    ]
    rows = []
    for k, said in enumerate(words):
        call = {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{k}", "name": "ls", "input": {}}]}
        msgs = [PROMPT, {"role": "assistant", "content": said}, {"role": "user", "content": "go on"}, call]
        rows.append({"reward": 0.0, "group_id": "g", "sample_id": f"s{k}", "messages": msgs})
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, rows)
    res = cli("metrics", "diversity", tmp_path / "run", "--format", "json")
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)[0]
    assert got["texts"] == len(words)
    assert got["unique_frac"] == len(set(words)) / len(words)
    assert got["len_mean"] == sum(len(w.split()) for w in words) / len(words)


# -- 2. arguments under a key not known ----------------------------------------------------------------------
def test_keys_not_known_are_kept_as_an_object_with_their_names() -> None:
    """Arguments under keys not read here keep their names, whatever their values look like: a flat call's one
    parameter holding a list or text that starts with a bracket is a named field, not the whole arguments (a
    review found ``{"name": "sum", "numbers": [1, 2, 3]}`` stored as ``[1, 2, 3]``, the name lost)."""
    cases = [
        {"id": "c2", "type": "function", "name": "sum", "numbers": [1, 2, 3]},
        {"id": "c3", "type": "function", "name": "python", "code": "[x * x for x in range(3)]"},
        {"id": "c4", "type": "function", "name": "search", "query": "cats", "lang": "en"},
    ]
    for call in cases:
        fields = {k: v for k, v in call.items() if k not in ("id", "type", "name")}
        assert json.loads(chat.tool_call(call)["arguments"]) == fields


def test_one_key_named_for_arguments_is_the_arguments_as_written() -> None:
    """``kwargs``, ``tool_input``, ``function_args``, ``params``: a key whose name says it holds the arguments
    holds them as written, so cut-short JSON text is checked as it is (wrapped under its key, it passed
    tool-call-json as an object)."""
    cut = '{"code": "print(1)'
    assert chat.tool_call({"name": "python", "kwargs": cut})["arguments"] == cut
    assert json.loads(chat.tool_call({"name": "t", "tool_input": {"q": 1}})["arguments"]) == {"q": 1}
    assert json.loads(chat.tool_call({"name": "t", "function_args": '{"a": 1}'})["arguments"]) == {"a": 1}
    # Two keys are named fields, whatever their names.
    both = {"name": "t", "params": "x", "query": "y"}
    assert json.loads(chat.tool_call(both)["arguments"]) == {"params": "x", "query": "y"}


def test_tool_call_json_scores_calls_with_named_fields_as_objects(tmp_path: Path, cli) -> None:
    calls = [
        {"id": "c2", "type": "function", "name": "sum", "numbers": [1, 2, 3]},
        {"id": "c3", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(1)"'}},
    ]
    msgs = [PROMPT, {"role": "assistant", "content": None, "tool_calls": calls}]
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": "s", "messages": msgs}])
    res = cli("metrics", "format", tmp_path / "run", "--spec", "tool-call-json", "--per-sample", "--format", "json")
    assert res.exit_code == 0, res.stderr
    # The named fields are an object; the cut-short JSON under ``arguments`` is not.
    assert json.loads(res.stdout)[0]["score"] == 1 / 2


# -- 3. Responses function_call with an id only ---------------------------------------------------------------
def test_a_function_call_with_only_an_id_names_its_output() -> None:
    items = [
        {"type": "function_call", "id": "fc_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "fc_1", "output": "R"},
    ]
    out = chat.from_responses_items(items)[-1]
    assert (out["role"], out["tool_call_id"], out["name"]) == ("tool", items[1]["call_id"], items[0]["name"])


# -- 4. call_id on a tool message; arguments beside function --------------------------------------------------
def test_a_tool_message_naming_its_call_with_call_id_answers_that_call() -> None:
    raw = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "function": {"name": "x", "arguments": "{}"}},
                {"id": "b", "function": {"name": "y", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "call_id": "b", "content": "answer of b"},
        {"role": "tool", "call_id": "a", "content": "answer of a"},
    ]
    names = {c["id"]: c["function"]["name"] for c in raw[0]["tool_calls"]}
    got = chat.from_openai_chat(raw)[1:]
    assert [(m["tool_call_id"], m["name"]) for m in got] == [(r["call_id"], names[r["call_id"]]) for r in raw[1:]]


def test_arguments_written_beside_function_are_kept() -> None:
    raw = {"id": "c", "type": "function", "function": {"name": "f"}, "arguments": '{"x": 1}'}
    assert chat.tool_call(raw) == {"id": raw["id"], "name": raw["function"]["name"], "arguments": raw["arguments"]}
