"""Audit 13, follow-up of R4/R5 (text tool calls split in place): prose that names ``<tool_response>`` stays
text, a line that only says ``user`` / ``tool`` / ``assistant`` is the model's unless the text is certainly a
rendered template, and ``text_tool_calls`` never drops a call from both its calls and its text.

Each expected figure is computed from the raw string written (``json`` and string slicing), never with runlog's
code; the terminal, html and markdown outputs are checked too.
"""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from runlog import open_run
from runlog.render import Criteria, conversations, text_tool_calls, to_json
from runlog.render.html_page import render_html
from runlog.render.markdown import render_markdown
from runlog.render.model import Conversation
from runlog.render.terminal import render_all
from runlog.writer import RunWriter

CALC = '{"name": "calc", "arguments": {"e": "1+1"}}'
BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _terminal(convs: list[Conversation]) -> str:
    buf = StringIO()
    Console(file=buf, width=400, color_system=None, force_terminal=False, highlight=False).print(render_all(convs))
    return buf.getvalue()


def _render(tmp_path: Any, text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The conversation of one sample whose assistant message is ``text``: its JSON form, and every output."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]
    with RunWriter(tmp_path / "r") as w:
        w.log_samples(0, [{"sample_id": "s", "reward": 1.0, "messages": messages}])
    [conv], _ = conversations(open_run(tmp_path / "r"), Criteria(steps="all", limit=10))
    outs = {"terminal": _terminal([conv]), "html": render_html([conv]), "markdown": render_markdown([conv])}
    return json.loads(to_json([conv]))[0], outs


def _calls(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(c["name"], json.loads(c["arguments"])) for t in data["turns"] for c in t["tool_calls"]]


def _texts(data: dict[str, Any]) -> list[str]:
    return [t["content"] for t in data["turns"][1:] if t["content"] and not t["result"]]


def test_prose_naming_tool_response_after_a_call_is_not_a_result(tmp_path):
    """Words between ``<tool_response>`` and ``</tool_response>`` in the model's prose are not a tool result
    (before: a result ``' and '`` was shown and the tags were cut from the text)."""
    prose = "The tool replies inside <tool_response> and </tool_response> tags.\nFinal: 2"
    text = f"Calling <tool_call>{CALC}</tool_call>\n{prose}"
    data, outs = _render(tmp_path, text)
    call = json.loads(text.split("<tool_call>")[1].split("</tool_call>")[0])
    assert _calls(data) == [(call["name"], call["arguments"])]
    assert not any(t["result"] for t in data["turns"])
    after = text.split("</tool_call>", 1)[1].strip("\n")  # the prose after the call, exactly as written
    assert _texts(data) == [text.split("<tool_call>")[0], after]
    for fmt in ("terminal", "markdown"):
        assert "inside <tool_response> and </tool_response> tags." in outs[fmt], fmt
    assert "inside &lt;tool_response&gt; and &lt;/tool_response&gt; tags." in outs["html"]


@pytest.mark.parametrize(
    "tail",
    [
        "\nI will describe the\ntool\n<tool_response>2</tool_response>\nassistant\nok",  # prose before the response
        "\ntool\n<tool_response>2</tool_response>",  # a header-like line, but no template bounds around any result
        "\nuser\n<tool_response>2</tool_response>\nok",
    ],
)
def test_a_lone_role_word_line_is_kept(tmp_path, tail):
    """A line that only says ``tool`` / ``user`` / ``assistant`` is the model's text unless some result of the
    text sits between a ``user`` line and an ``assistant`` line (a rendered template); so the response after
    it answers no call and stays text (before: the lines were dropped and the response made a result)."""
    text = f"Let me use a <tool_call>{CALC}</tool_call>{tail}"
    data, outs = _render(tmp_path, text)
    assert not any(t["result"] for t in data["turns"])
    assert _texts(data) == [text.split("<tool_call>")[0], tail.strip("\n")]
    for line in tail.strip("\n").split("\n"):  # every line the model wrote is shown
        assert line in outs["terminal"] and line in outs["markdown"], line


def test_a_response_right_after_a_call_is_a_result_and_the_next_line_kept(tmp_path):
    """A response with only whitespace after the call answers it; without template bounds elsewhere, the
    ``assistant`` line after it is the model's text."""
    tail = "\nassistant\nok"
    text = f"<tool_call>{CALC}</tool_call>\n<tool_response>2</tool_response>{tail}"
    data, _ = _render(tmp_path, text)
    result = text.split("<tool_response>")[1].split("</tool_response>")[0]
    assert [t["result"]["content"] for t in data["turns"] if t["result"]] == [result]
    assert _texts(data) == [tail.strip("\n")]


def test_template_role_lines_are_bounds_also_around_the_last_result(tmp_path):
    """A verl output cut after its last tool response (no ``assistant`` line after it), with two parallel
    calls answered in one user turn: the template's role lines are bounds, every response a result."""
    a = '{"name": "f", "arguments": {"x": 1}}'
    b = '{"name": "g", "arguments": {"y": 2}}'
    text = (
        f"First.\n<tool_call>\n{a}\n</tool_call>\n<tool_call>\n{b}\n</tool_call>\n"
        "user\n<tool_response>\nRA\n</tool_response>\n<tool_response>\nRB\n</tool_response>\nassistant\n"
        f"Again.\n<tool_call>\n{a}\n</tool_call>\nuser\n<tool_response>\nRC\n</tool_response>"
    )
    data, _ = _render(tmp_path, text)
    raw_calls = [json.loads(m) for m in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text)]
    assert _calls(data) == [(c["name"], c["arguments"]) for c in raw_calls]
    responses = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text)
    assert [t["result"]["content"] for t in data["turns"] if t["result"]] == responses == ["RA", "RB", "RC"]
    assert _texts(data) == ["First.", "Again."]


@pytest.mark.parametrize(
    "text",
    [
        # a call quoted inside a response that answers nothing: the model's text, its call a call
        '<tool_response>see <tool_call>{"name": "a", "arguments": {}}</tool_call></tool_response> and '
        '<tool_call>{"name": "b", "arguments": {}}</tool_call>',
        # a call quoted inside a tool's result: the tool's output, kept in the text
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_response>see '
        '<tool_call>{"name": "q", "arguments": {}}</tool_call></tool_response>\nthen '
        '<tool_call>{"name": "b", "arguments": {}}</tool_call>',
    ],
)
def test_text_tool_calls_never_loses_a_call(text):
    """Each valid ``<tool_call>`` block is either a returned call or still in the returned text, never neither;
    the text is the input less the returned blocks (before: call ``a`` of the first case was in neither)."""
    rest, calls = text_tool_calls(text)
    names = [c.name for c in calls]
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) == (3 if "q" in text else 2)
    kept = text
    for m in blocks:
        name = json.loads(m.group(1))["name"]
        assert (name in names) != (m.group(0) in (rest or "")), name
        if name in names:
            kept = kept.replace(m.group(0), "", 1)
    assert rest == kept.strip("\n")
    assert names == ["a", "b"]
