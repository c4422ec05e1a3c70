"""Audit 13 of ``render-trajectory`` (R1-R9): every input layout keeps its conversation.

Each expected figure is computed from the raw input (``json`` on the messages written), never with runlog's code;
the four outputs (terminal, json, html, markdown) are checked to agree.
"""

from __future__ import annotations

import base64
import json
from io import StringIO
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from runlog import open_run
from runlog.formats.inspect_ai_messages import inspect_messages
from runlog.render import Criteria, conversations, to_json
from runlog.render.html_page import render_html
from runlog.render.markdown import render_markdown
from runlog.render.model import Conversation, Turn
from runlog.render.terminal import render_all
from runlog.writer import RunWriter


def _terminal(convs: list[Conversation], width: int = 100) -> str:
    buf = StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, highlight=False).print(render_all(convs))
    return buf.getvalue()


def _write(path: Any, rows: list[dict[str, Any]]) -> list[Conversation]:
    with RunWriter(path) as w:
        w.log_samples(0, rows)
    convs, _ = conversations(open_run(path), Criteria(steps="all", limit=100))
    return sorted(convs, key=lambda c: c.sample_id or "")


def _outputs(convs: list[Conversation]) -> dict[str, str]:
    return {
        "terminal": _terminal(convs, 400),
        "json": to_json(convs),
        "html": render_html(convs),
        "markdown": render_markdown(convs),
    }


def _leaves(v: Any) -> list[str]:
    """Every string leaf of a JSON value (the texts a reader must find in the output)."""
    if isinstance(v, dict):
        return [s for x in v.values() for s in _leaves(x)]
    if isinstance(v, list):
        return [s for x in v for s in _leaves(x)]
    return [v] if isinstance(v, str) else []


# -- R1: Gemini ``parts`` ----------------------------------------------------------------------------------

GEMINI = [
    {"role": "user", "parts": [{"text": "GEMINI_Q"}]},
    {
        "role": "model",
        "parts": [
            {"text": "GEMTHOUGHT", "thought": True},
            {"text": "GEMTEXT"},
            {"functionCall": {"name": "get_w", "args": {"city": "GEMARG"}}},
            {"functionCall": {"name": "get_t", "args": {"zone": "GEMZONE"}}},
        ],
    },
    {
        "role": "user",
        "parts": [
            # answered out of order: paired by name
            {"functionResponse": {"name": "get_t", "response": {"t": "GEMTIME"}}},
            {"functionResponse": {"name": "get_w", "response": {"w": "GEMRES"}}},
        ],
    },
    {
        "role": "user",
        "parts": [
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"PNGPAYLOAD" * 50).decode()}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/GEMFILE.pdf"}},
        ],
    },
    {"role": "model", "parts": [{"executableCode": {"language": "PYTHON", "code": "print(GEMCODE)"}}]},
    {"role": "model", "parts": [{"text": "GEMFINAL"}]},
]


def _gemini_truth() -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
    """(texts to find, calls as {name, args}, {function name: a response text}) from the raw parts."""
    texts, calls, responses = [], [], {}
    for m in GEMINI:
        for p in m["parts"]:
            if "text" in p:
                texts.append(p["text"])
            if "functionCall" in p:
                calls.append(p["functionCall"])
            if "functionResponse" in p:
                r = p["functionResponse"]
                responses[r["name"]] = _leaves(r["response"])[0]
            if "fileData" in p:
                texts.append("GEMFILE")
            if "executableCode" in p:
                texts.append("GEMCODE")
    return texts, calls, responses


@pytest.mark.parametrize("column", ["messages", "trajectory"])
def test_gemini_parts_are_read_not_emptied(tmp_path, column):
    """R1: Gemini ``Content`` dicts (``parts``) keep every text, call and response, through RunWriter too."""
    value = GEMINI if column == "messages" else json.dumps(GEMINI)
    [conv] = _write(tmp_path / "g", [{"sample_id": "g", "reward": 1.0, column: value}])
    texts, calls, responses = _gemini_truth()
    data = json.loads(to_json([conv]))[0]
    assert data["stats"]["tool_calls"] == len(calls) == 2
    got_calls = [(c["name"], json.loads(c["arguments"])) for t in data["turns"] for c in t["tool_calls"]]
    assert got_calls == [(c["name"], c["args"]) for c in calls]
    results = [t["result"] for t in data["turns"] if t["result"] is not None]
    assert len(results) == len(responses)
    for r in results:  # each result paired with the call of its function, its response kept
        assert responses[r["name"]] in r["content"]
    shown = " ".join(f"{t['content']} {t['reasoning']}" for t in data["turns"])
    assert all(x in shown for x in texts)
    thought = next(p["text"] for p in GEMINI[1]["parts"] if p.get("thought"))
    assert any(t["reasoning"] == thought for t in data["turns"])  # a thought part is reasoning
    assert "PNGPAYLOAD" not in to_json([conv]) and "[inline_data image/png]" in shown  # media: a marker
    for fmt, out in _outputs([conv]).items():
        for x in [*texts, "GEMARG", "GEMZONE", *responses.values()]:
            assert x in out, (fmt, x)
    if column == "messages":  # the stored cell itself holds them (the loss was at write time)
        [path] = (tmp_path / "g").rglob("*.parquet")
        cell = json.dumps(pq.read_table(path).to_pylist()[0]["messages"])
        assert all(x in cell for x in [*texts, "GEMARG", *responses.values()])


def test_gemini_sdk_snake_case_dump(tmp_path):
    """R1: the Python SDK's ``model_dump`` (snake_case, every field written, most null) reads alike."""
    null = {"text": None, "thought": None, "function_call": None, "function_response": None, "inline_data": None}
    msgs = [
        {"role": "user", "parts": [{**null, "text": "SNAKE_Q"}]},
        {"role": "model", "parts": [{**null, "function_call": {"id": "c9", "name": "f", "args": {"a": "SNAKEARG"}}}]},
        {"role": "user", "parts": [{**null, "function_response": {"id": "c9", "name": "f", "response": {"o": "SNK"}}}]},
    ]
    [conv] = _write(tmp_path / "s", [{"sample_id": "s", "reward": 1.0, "messages": msgs}])
    data = json.loads(to_json([conv]))[0]
    assert [c["id"] for t in data["turns"] for c in t["tool_calls"]] == ["c9"]
    assert [t["result"]["call_id"] for t in data["turns"] if t["result"]] == ["c9"]
    assert "SNAKEARG" in to_json([conv]) and "SNK" in to_json([conv]) and data["turns"][0]["content"] == "SNAKE_Q"


def test_a_message_under_keys_not_read_is_kept_as_json(tmp_path):
    """R1: chat.py's promise: a message whose text is under keys not read is kept as compact JSON, not emptied."""
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "id": "m1", "output": {"answer": "UNREADMARK"}}]
    [conv] = _write(tmp_path / "u", [{"sample_id": "u", "reward": 1.0, "messages": msgs}])
    expect = json.dumps({"output": msgs[1]["output"]}, separators=(",", ":"))
    assert conv.turns[1].content == expect
    for out in _outputs([conv]).values():
        assert "UNREADMARK" in out


# -- R2: Anthropic server tools and MCP ------------------------------------------------------------------

ANTHROPIC = [
    {"role": "user", "content": "weather?"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "searching"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "QUERYMARK"}},
            {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": [{"type": "web_search_result", "title": "RESULTMARK", "url": "https://example.com/w"}],
            },
            {"type": "text", "text": "It is sunny."},
            {
                "type": "mcp_tool_use",
                "id": "mcptoolu_1",
                "name": "echoMCPNAME",
                "server_name": "s",
                "input": {"a": "MCPARG"},
            },
            {
                "type": "mcp_tool_result",
                "tool_use_id": "mcptoolu_1",
                "content": [{"type": "text", "text": "MCPRESULT"}],
            },
            {"type": "server_tool_use", "id": "srvtoolu_2", "name": "code_execution", "input": {"code": "CODEMARK"}},
            {
                "type": "code_execution_tool_result",
                "tool_use_id": "srvtoolu_2",
                "content": {"type": "code_execution_result", "stdout": "STDOUTMARK", "stderr": "", "return_code": 0},
            },
            {
                "type": "search_result",
                "source": "https://x",
                "title": "t",
                "content": [{"type": "text", "text": "SRMARK"}],
            },
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "DOCMARK"}},
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "UERGUEFZTE9BRA=="},
            },
        ],
    },
]


@pytest.mark.parametrize("column", ["messages", "trajectory"])
def test_anthropic_server_and_mcp_tools_are_calls_and_results(tmp_path, column):
    """R2: ``server_tool_use`` / ``mcp_tool_use`` are tool calls, their ``*_tool_result`` results paired by id;
    ``search_result`` and a text ``document`` keep their text; a base64 document is a marker."""
    value = ANTHROPIC if column == "messages" else json.dumps(ANTHROPIC)
    [conv] = _write(tmp_path / "a", [{"sample_id": "a", "reward": 1.0, column: value}])
    parts = ANTHROPIC[1]["content"]
    uses = {p["id"]: p for p in parts if p["type"].endswith("tool_use")}
    results = {p["tool_use_id"]: _leaves(p["content"]) for p in parts if p["type"].endswith("tool_result")}
    data = json.loads(to_json([conv]))[0]
    calls = [c for t in data["turns"] for c in t["tool_calls"]]
    assert data["stats"]["tool_calls"] == len(uses) == 3
    assert {c["id"]: (c["name"], json.loads(c["arguments"])) for c in calls} == {
        k: (u["name"], u["input"]) for k, u in uses.items()
    }
    got = {t["result"]["call_id"]: t["result"] for t in data["turns"] if t["result"]}
    assert set(got) == set(results)
    for cid, leaves in results.items():
        assert got[cid]["name"] == uses[cid]["name"]
        assert all(x in got[cid]["content"] for x in leaves if x.isupper())
    for fmt, out in _outputs([conv]).items():
        for x in ("QUERYMARK", "RESULTMARK", "MCPARG", "MCPRESULT", "CODEMARK", "STDOUTMARK", "SRMARK", "DOCMARK"):
            assert x in out, (fmt, x)
        assert "UERGUEFZTE9BRA" not in out and "[document]" in out


def test_inspect_data_part_is_kept():
    """R2: inspect_ai's ``ContentData`` keeps its data (compact JSON), not a bare ``[data]``."""
    raw = [{"role": "assistant", "content": [{"type": "data", "data": {"k": "DATAMARK"}}]}]
    [m] = inspect_messages(raw, set())
    assert m["content"] == json.dumps(raw[0]["content"][0], separators=(",", ":"))


# -- R3: inspect_ai ``parse_error`` -----------------------------------------------------------------------


def test_inspect_parse_error_reads_as_invalid_arguments():
    """R3: a call inspect_ai could not parse (``arguments: {}``, the text in ``parse_error``) shows that text."""
    raw_args = '{"cmd": "ls -la /tmp, "x": 1'
    pe = f"Error parsing the following tool call arguments:\n\n{raw_args}\n\nError details: Expecting ',' delimiter"
    msgs = [
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [{"id": "t1", "function": "bash", "arguments": {}, "parse_error": pe}],
        }
    ]
    [m] = inspect_messages(msgs, set())
    args = m["tool_calls"][0]["arguments"]
    assert args == raw_args
    with pytest.raises(json.JSONDecodeError):
        json.loads(args)
    conv = Conversation([Turn("assistant", content="ok", tool_calls=[_call(m["tool_calls"][0])])], "messages")
    for fmt, out in _outputs([conv]).items():
        assert "ls -la /tmp" in out and (fmt == "json" or "not valid JSON" in out), fmt


def _call(c: dict[str, Any]) -> Any:
    from runlog.render.model import ToolCall

    return ToolCall(c["id"], c["name"], c["arguments"])


# -- R6: Responses built-in tools ---------------------------------------------------------------------------

RESPONSES = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hot?"}]},
    {
        "type": "mcp_call",
        "id": "mcp_1",
        "name": "lookup",
        "server_label": "s",
        "arguments": '{"q":"MCPQ"}',
        "output": "MCPOUT",
    },
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "WSQ"}},
    {
        "type": "code_interpreter_call",
        "id": "ci_1",
        "code": "print(CIQ)",
        "outputs": [{"type": "logs", "logs": "CIOUT"}],
    },
    {"type": "function_call", "call_id": "fc_1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "fc_1", "output": "FOUT"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
]


def test_responses_builtin_tool_items_are_tool_calls(tmp_path):
    """R6: ``mcp_call``, ``web_search_call``, ``code_interpreter_call`` are tool calls (counted), and the output
    an item carries is its result."""
    [conv] = _write(tmp_path / "r", [{"sample_id": "r", "reward": 1.0, "trajectory": json.dumps(RESPONSES)}])
    truth = [it for it in RESPONSES if it["type"].endswith("_call")]
    data = json.loads(to_json([conv]))[0]
    assert data["stats"]["tool_calls"] == len(truth) == 4
    assert data["stats"]["assistant_turns"] == sum(
        1 for t in data["turns"] if t["tool_calls"] or t["role"] == "assistant"
    )
    assert not any(t["role"].endswith("_call") for t in data["turns"])
    carried = {
        it["id"]: _leaves(it.get("output") or it.get("outputs"))[-1]
        for it in truth
        if "output" in it or "outputs" in it
    }
    got = {t["result"]["call_id"]: t["result"]["content"] for t in data["turns"] if t["result"]}
    assert all(v in got[k] for k, v in carried.items())
    for fmt, out in _outputs([conv]).items():
        for x in ("MCPQ", "MCPOUT", "WSQ", "CIQ", "CIOUT", "FOUT"):
            assert x in out, (fmt, x)


# -- R4, R5: tool calls written as text keep their place ----------------------------------------------------

VERL_OUT = (
    'Let me compute.\n<tool_call>\n{"name": "python", "arguments": {"code": "print(6*7)"}}\n</tool_call>\n'
    "user\n<tool_response>\nRES_ONE\n</tool_response>\nassistant\nNow check.\n<tool_call>\n"
    '{"name": "python", "arguments": {"code": "print(41+1)"}}\n</tool_call>\n'
    "user\n<tool_response>\nRES_TWO\n</tool_response>\nassistant\nThe answer is 42."
)


def _order(text: str, marks: list[str]) -> list[str]:
    return sorted((m for m in marks if m in text), key=text.index)


def test_text_tool_calls_keep_their_place(tmp_path):
    """R4: text, call, response, text... in the order the model's string holds them, in every format."""
    [conv] = _write(tmp_path / "v", [{"sample_id": "v", "reward": 1.0, "prompt": "q", "completion": VERL_OUT}])
    marks = ["Let me compute.", "print(6*7)", "RES_ONE", "Now check.", "print(41+1)", "RES_TWO", "The answer is 42."]
    truth = _order(VERL_OUT, marks)
    data = json.loads(to_json([conv]))[0]
    kinds = [("call" if t["tool_calls"] else "result" if t["result"] else t["role"]) for t in data["turns"][1:]]
    assert kinds == ["call", "result", "call", "result", "assistant"]
    assert [t["result"]["content"] for t in data["turns"] if t["result"]] == ["RES_ONE", "RES_TWO"]
    for fmt, out in _outputs([conv]).items():
        if fmt == "json":
            out = json.dumps(json.loads(out), ensure_ascii=False).replace('\\"', '"')
        assert _order(out, marks) == truth, fmt
    assert not any((t["content"] or "").startswith("assistant") for t in data["turns"])  # role lines are bounds


def test_chatml_user_turn_of_tool_responses_is_a_result(tmp_path):
    """R5: a ChatML user turn holding only ``<tool_response>`` blocks is the result of the call before it."""
    t = (
        "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\nLet me run it.\n<tool_call>\n"
        '{"name": "python", "arguments": {"code": "print(6*7)"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\nCHATML42\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 42.<|im_end|>\n"
    )
    [conv] = _write(tmp_path / "c", [{"sample_id": "c", "reward": 1.0, "trajectory": t}])
    data = json.loads(to_json([conv]))[0]
    assert [t["role"] for t in data["turns"]] == ["user", "assistant", "tool", "assistant"]
    assert data["turns"][2]["result"]["content"] == "CHATML42" and data["turns"][2]["result"]["name"] == "python"
    assert "python · result" in _terminal([conv])


def test_a_user_turn_of_responses_after_no_call_stays_the_users():
    from runlog.render import from_openai_chat

    turns = from_openai_chat([{"role": "user", "content": "<tool_response>x</tool_response>"}])
    assert [t.role for t in turns] == ["user"] and turns[0].result is None


# -- R8: --role on a TRL run -------------------------------------------------------------------------------


def test_role_on_a_trl_run_is_the_usage_error(tmp_path, cli):
    """R8: TRL never records roles: ``--role`` is the documented usage error (exit 2), not "no sample matches"
    (only the last step's file is opened by default: that must not turn the error into an empty selection)."""
    run = tmp_path / "trl"
    (run / "completions").mkdir(parents=True)
    for step in (10, 20):
        pq.write_table(
            pa.table({"step": [step], "prompt": ["p"], "completion": ["c"], "correct": [1.0]}),
            run / "completions" / f"completions_{step:05d}.parquet",
        )
    for extra in ([], ["--steps", "all"]):
        res = cli("render-trajectory", run, "--role", "solver", "--best", "1", *extra)
        assert res.exit_code == 2, res.output
        assert "--role 'solver'" in res.output and "(none recorded)" in res.output


# -- R7, R9: terminal labels and the JSON tree ---------------------------------------------------------------


def test_long_tool_names_are_marked_not_cropped(tmp_path):
    """R7: a title wider than the panel is cut in the middle with ``…`` and keeps ``· error`` / ``· result``; the
    whole name is the panel's first line."""
    names = [f"mcp__filesystem_server__read_multiple_files_with_metadata_and_checksums_variant_{x}" for x in "AB"]
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "q"}]
    msgs.append(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
                for i, n in enumerate(names)
            ],
        }
    )
    msgs += [{"role": "tool", "tool_call_id": "c0", "content": "Error: permission denied"}]
    msgs += [{"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    [conv] = _write(tmp_path / "n", [{"sample_id": "n", "reward": 1.0, "messages": msgs}])
    out = _terminal([conv], 80)
    titles = [line for line in out.splitlines() if line.startswith("╭─") and ("· error" in line or "· result" in line)]
    assert len(titles) == 2 and "· error" in titles[0] and "· result" in titles[1]
    assert all("…" in t and len(t) <= 80 for t in titles)
    assert titles[0].rstrip("─╮ ").endswith("variant_A · error") and "variant_B · result" in titles[1]
    flat = out.replace("│", "").replace("\n", "").replace(" ", "")
    assert all(n in flat for n in names)


def test_data_tree_says_what_it_leaves_out_and_counts_characters(tmp_path):
    """R9: the terminal's JSON tree says how many nodes it left out and where the whole value is; the statistics
    count the data's text (as compact JSON)."""
    v = {"episode": [{"obs": f"o{i}", "act": f"a{i}", "rew": i} for i in range(300)], "final": "FINALMARK"}
    [conv] = _write(tmp_path / "d", [{"sample_id": "d", "reward": 1.0, "agent_trajectories": json.dumps(v)}])
    nodes = 1 + 300 * (1 + 3) + 1  # episode, each step and its 3 leaves, final
    out = _terminal([conv], 120)
    assert f"{nodes - 400:,} more node(s) not shown" in out and "-f json" in out
    chars = len(json.dumps(v, separators=(",", ":"), ensure_ascii=False))
    assert json.loads(to_json([conv]))[0]["stats"]["chars"] == chars
    assert f"{chars:,}" in out
