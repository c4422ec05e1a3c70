"""Audit 22 (render): tool-call arguments holding ``NaN`` / ``Infinity`` are flagged as not JSON (RFC 8259 has no
such literals, and ``metrics format --spec tool-call-json`` fails them); a tool call written as text keeps the
members it holds besides its name and arguments; blocks with only white space between them are one turn's calls;
the HTML page keeps a text's leading newline (an HTML parser drops one right after ``<pre>``).

Each expectation comes from the strings written (``json`` with a strict ``parse_constant``, the HTML standard's
``pre`` rule applied to what the stdlib ``html.parser`` reads), never from runlog's own helpers.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from runlog import open_run
from runlog.render import Criteria, conversations, normalize, to_json
from runlog.render.html_page import turn_html
from runlog.render.markdown import render_markdown
from runlog.render.model import Conversation
from runlog.render.terminal import render_all
from runlog.writer import RunWriter

FLAG = "(arguments are not valid JSON)"


def _strict_json(text: str) -> bool:
    """Whether ``text`` is JSON as RFC 8259 says: Python's ``json`` also reads NaN and the infinities."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def _convs(tmp_path: Any, messages: list[dict[str, Any]]) -> list[Conversation]:
    with RunWriter(tmp_path / "r") as w:
        w.log_samples(0, [{"sample_id": "s", "reward": 1.0, "messages": messages}])
    convs, _ = conversations(open_run(tmp_path / "r"), Criteria(steps="all", limit=10))
    return convs


def _terminal(convs: list[Conversation]) -> str:
    buf = StringIO()
    Console(file=buf, width=400, color_system=None, force_terminal=False, highlight=False).print(render_all(convs))
    return buf.getvalue()


def _call_messages(arguments: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "c",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "fn", "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]


@pytest.mark.parametrize(
    "arguments",
    ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": [1, NaN]}', "NaN", '{"a": 1}', '{"a": 1e400}'],
)
def test_nan_and_infinity_arguments_are_flagged_in_every_format(tmp_path, cli, arguments):
    """``{"a": NaN}`` was shown as indented JSON with no flag (``json.loads`` reads NaN); it is not JSON, and is
    shown as written and flagged in the terminal, Markdown and HTML, as any other arguments that do not parse.
    ``1e400`` is a JSON number (RFC 8259 sets no range): not flagged."""
    valid = _strict_json(arguments)
    assert valid == (arguments in ('{"a": 1}', '{"a": 1e400}'))
    _convs(tmp_path, _call_messages(arguments))
    run = tmp_path / "r"
    term = cli("render-trajectory", run, "--index", "0")
    md = cli("render-trajectory", run, "--index", "0", "-f", "markdown")
    page = cli("render-trajectory", run, "--index", "0", "-f", "html")
    for out in (term, md, page):
        assert out.exit_code == 0, out.output
        assert (FLAG in out.stdout) is not valid, out.stdout
    if not valid:  # shown exactly as written
        assert arguments in term.stdout and arguments in md.stdout
        assert arguments.replace('"', "&quot;") in page.stdout


def test_nan_arguments_are_flagged_after_a_cut(tmp_path, cli):
    """``--max-chars`` cuts the arguments; whether they were JSON is decided on them whole, NaN refused there too."""
    arguments = json.dumps({"code": "x" * 50})[:-1] + ', "n": NaN}'
    assert not _strict_json(arguments)
    _convs(tmp_path, _call_messages(arguments))
    out = cli("render-trajectory", tmp_path / "r", "--index", "0", "--max-chars", "20")
    assert out.exit_code == 0, out.output
    assert FLAG in out.stdout


TEXT_CALLS = [
    '{"name": "f", "parameters": {"p": 1}, "extra": 2}',
    '{"name": "f", "arguments": {"a": 1}, "parameters": {"b": 2}}',
    '{"name": "f", "query": "cats"}',
    '{"name": "f", "arguments": {"a": 1}, "type": "custom"}',
    '{"name": "f", "arguments": {"a": 1}, "id": {"k": 1}}',
]


@pytest.mark.parametrize("block", TEXT_CALLS)
def test_a_text_call_keeps_its_other_members(tmp_path, block):
    """``<tool_call>{"name": "f", "parameters": {"p": 1}, "extra": 2}</tool_call>`` became call f with
    arguments ``{"p":1}``: ``"extra": 2`` was in no output. A block with members besides its name, id, type
    and arguments keeps the whole object as written, as its arguments."""
    convs = _convs(
        tmp_path,
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"<tool_call>{block}</tool_call>"}],
    )
    data = json.loads(to_json(convs))[0]
    [call] = [c for t in data["turns"] for c in t["tool_calls"]]
    assert call["arguments"] == block  # every member, as written
    names = [k for k, _ in json.loads(block, object_pairs_hook=lambda kv: kv)]
    assert call["name"] == json.loads(block)["name"]
    term = _terminal(convs)
    for name in names:
        assert json.dumps(name) in term or f"{name}:" in term, (name, term)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ('{"name": "f", "arguments": {"a": 1.10}}', '{"a": 1.10}'),
        ('{"id": "c1", "type": "function", "name": "f", "arguments": {"a": 1}}', '{"a": 1}'),
        ('{"name": "f", "parameters": {"p": 1}, "id": 7}', '{"p": 1}'),
    ],
)
def test_a_plain_text_call_keeps_its_arguments_as_written(tmp_path, block, expected):
    """A block holding only a call's own members keeps its arguments member as written (and nothing is lost:
    the name, the id and ``"type": "function"`` are the call's)."""
    convs = _convs(
        tmp_path,
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"<tool_call>{block}</tool_call>"}],
    )
    data = json.loads(to_json(convs))[0]
    [call] = [c for t in data["turns"] for c in t["tool_calls"]]
    obj = json.loads(block)
    assert (call["name"], call["arguments"]) == (obj["name"], expected)
    assert call["id"] == (None if "id" not in obj else str(obj["id"]))


@pytest.mark.parametrize("gap", ["\n", "  ", " \n\t ", "\n\n"])
def test_blocks_with_white_space_between_are_one_turns_calls(tmp_path, gap):
    """Two blocks with only white space between them are two calls of one turn, whatever the white space: a
    newline between them was layout while two spaces made a turn of their own, holding the spaces."""
    f = '{"name": "f", "arguments": {}}'
    g = '{"name": "g", "arguments": {"x": 1}}'
    text = f"<tool_call>{f}</tool_call>{gap}<tool_call>{g}</tool_call>"
    convs = _convs(tmp_path, [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}])
    data = json.loads(to_json(convs))[0]
    model = [t for t in data["turns"] if t["role"] == "assistant"]
    assert len(model) == 1
    assert [c["name"] for c in model[0]["tool_calls"]] == [json.loads(f)["name"], json.loads(g)["name"]]
    assert (model[0]["content"] or "").strip() == ""


class _Pres(HTMLParser):
    """The text of each ``<pre>`` as a browser shows it: what the stdlib parser reads (character references
    resolved), less one newline right after the start tag (the HTML standard's rule for ``pre``, which
    ``html.parser`` does not apply)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "pre":
            self._open = True
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._open = False
            if self.texts[-1].startswith("\n"):
                self.texts[-1] = self.texts[-1][1:]

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[-1] += data


def _pres(page: str) -> list[str]:
    p = _Pres()
    p.feed(page)
    p.close()
    return p.texts


LEADING = {
    "user": "\nthe question, after a blank line",
    "assistant": "\n\nan answer after two newlines",
    "tool": "\nTraceback (most recent call last):\nValueError: x",
    "plain": "no newline first",
}


def test_html_keeps_a_texts_leading_newline(tmp_path, cli):
    """The page wrote ``<pre>`` then the text: a browser drops one newline right after ``<pre>``, so a text that
    opened with one lost it. Every text (message, tool output, arguments, exception) reads as written."""
    messages = [
        {"role": "system", "content": "\nsystem prompt"},
        {"role": "user", "content": LEADING["user"]},
        {
            "role": "assistant",
            "content": LEADING["assistant"],
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "fn", "arguments": "\n{bad"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": LEADING["tool"]},
        {"role": "assistant", "content": LEADING["plain"]},
    ]
    with RunWriter(tmp_path / "r") as w:
        w.log_samples(0, [{"sample_id": "s", "reward": 1.0, "messages": messages, "exception": "\nRuntimeError: boom"}])
    out = cli("render-trajectory", tmp_path / "r", "--index", "0", "-f", "html")
    assert out.exit_code == 0, out.output
    shown = _pres(out.stdout)
    for text in [*LEADING.values(), "\nsystem prompt", "\n{bad", "\nRuntimeError: boom"]:
        assert text in shown, (text, shown)


def _turns_with_leading_newline() -> list[tuple[Any, str]]:
    out = []
    for role in ("system", "user", "assistant"):
        text = f"\n{role} text\nsecond line"
        [turn] = normalize([{"role": role, "content": text}])
        out.append((turn, text))
    return out


def test_turn_html_keeps_a_leading_newline():
    """``turn_html`` (which the report's trajectories use too) keeps it, also in a folded system prompt."""
    for turn, text in _turns_with_leading_newline():
        for fold in (False, True):
            assert text in _pres(turn_html(turn, fold_system=fold)), (text, fold)


def test_markdown_of_a_flagged_call_holds_it_as_written(tmp_path):
    """Markdown, from the library: the NaN arguments are in a fence, as written, with the flag."""
    convs = _convs(tmp_path, _call_messages('{"a": NaN, "b": Infinity}'))
    md = render_markdown(convs)
    assert FLAG in md and '{"a": NaN, "b": Infinity}' in md


# After review: only spaces, tabs and newlines between blocks are layout; other invisible or control characters
# are text the model wrote (shown escaped), and an id that is not a string is spelled as JSON spells it.
@pytest.mark.parametrize("gap", ["\x1f", "\u2028", "\u3000", "\u200b"])
def test_a_control_or_invisible_character_between_blocks_is_kept(gap: str) -> None:
    from runlog.render.normalize import text_pieces

    call = '<tool_call>{{"name":"{}","arguments":{{}}}}</tool_call>'
    content = call.format("f") + gap + call.format("g")
    assert [k for k, _ in text_pieces(content)] == ["call", "text", "call"]
    assert text_pieces(content)[1] == ("text", gap)


def test_a_text_calls_id_is_spelled_as_json() -> None:
    from runlog.render.normalize import text_pieces

    content = (
        '<tool_call>{"name":"f","arguments":{},"id":true}</tool_call>'
        '<tool_call>{"name":"g","arguments":{},"id":7}</tool_call>'
    )
    ids = [v.id for k, v in text_pieces(content) if k == "call"]
    assert ids == ["true", "7"]
    # As written, not as Python spells the number again (1.1, 100000.0).
    for written in ("1.10", "1E5"):
        content = f'<tool_call>{{"name":"f","arguments":{{}},"id":{written}}}</tool_call>'
        assert [v.id for k, v in text_pieces(content) if k == "call"] == [written]
