"""Audit 14, findings 4 and 5 (text tool calls): a valid block after a stray ``<tool_call>`` is a call; a call
written in the reasoning (``<think>`` ... ``</think>``, an unclosed ``<think>``, or before a ``</think>`` the
template opened) is text, unless a tool result answers it; a ``</tool_call>`` inside an argument string does not
end the block; a JSON list of calls stays text (one object per block is the Hermes / Qwen format).

Each expected figure comes from the raw string written (``json`` and the generator's own structure), never from
runlog's code.
"""

from __future__ import annotations

import json
import random
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from runlog import open_run
from runlog.render import Criteria, conversations, text_tool_calls, to_json
from runlog.render.model import Conversation, ToolCall, split_think
from runlog.render.normalize import from_messages, text_pieces
from runlog.render.terminal import render_all
from runlog.writer import RunWriter

SEARCH = '{"name": "search", "arguments": {"q": "x"}}'
CALL = f"<tool_call>{SEARCH}</tool_call>"


def _render(tmp_path: Any, text: str) -> tuple[dict[str, Any], str]:
    """The conversation of one sample whose assistant message is ``text``: its JSON form and its terminal form."""
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]
    with RunWriter(tmp_path / "r") as w:
        w.log_samples(0, [{"sample_id": "s", "reward": 1.0, "messages": messages}])
    [conv], _ = conversations(open_run(tmp_path / "r"), Criteria(steps="all", limit=10))
    return json.loads(to_json([conv]))[0], _terminal([conv])


def _terminal(convs: list[Conversation]) -> str:
    buf = StringIO()
    Console(file=buf, width=400, color_system=None, force_terminal=False, highlight=False).print(render_all(convs))
    return buf.getvalue()


def _calls(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(c["name"], json.loads(c["arguments"])) for t in data["turns"] for c in t["tool_calls"]]


@pytest.mark.parametrize(
    "before",
    ["I will use the <tool_call> tag now:\n", "<tool_call>", "<tool_call>\n", "see <tool_call>not json here "],
)
def test_a_call_after_a_stray_tag_is_a_call(tmp_path, before):
    """A closed, valid block after a ``<tool_call>`` named in prose (or written twice) is a call; the stray tag
    and the words around it stay in the text (before: the scan took the first tag's block, which failed as
    JSON, and skipped it whole: 0 calls)."""
    data, out = _render(tmp_path, before + CALL)
    assert _calls(data) == [("search", {"q": "x"})]
    assert data["stats"]["tool_calls"] == 1
    texts = [t["content"] for t in data["turns"][1:] if t["content"]]
    assert texts == [before.strip("\n")]
    assert before.strip() in out


@pytest.mark.parametrize(
    ("text", "thinking"),
    [
        (f"<think>maybe {CALL} but no</think>The answer is 4.", f"<think>maybe {CALL} but no</think>"),
        (f"<think>maybe I should {CALL} and then", f"<think>maybe I should {CALL} and then"),
        (f"maybe I should {CALL} but no</think>The answer is 4.", f"maybe I should {CALL} but no</think>"),
        (f"<THINK>maybe {CALL}\n{CALL}</THINK>\nThe answer is 4.", f"<THINK>maybe {CALL}\n{CALL}</THINK>"),
    ],
    ids=["closed", "unclosed", "opened-by-template", "upper-case-two-calls"],
)
def test_a_call_written_in_reasoning_is_text(tmp_path, text, thinking):
    """A call inside the reasoning was thought, not made (a reasoning parser hands the tool parser only what
    follows the reasoning): no call, one assistant turn holding the text as written, the thinking block whole
    (before: one call, and the think block split across two assistant turns)."""
    data, out = _render(tmp_path, text)
    assert _calls(data) == []
    assert data["stats"]["tool_calls"] == 0
    assert data["stats"]["assistant_turns"] == 1
    assert data["turns"][1]["content"] == text
    assert [s for s, thinking in split_think(text) if thinking] == [thinking]
    assert text_tool_calls(text) == (text, [])
    assert "search" in out and "→ search" not in out  # shown as the reasoning's words, not as a call made


def test_a_call_after_the_reasoning_is_a_call(tmp_path):
    """The reasoning ends at its ``</think>``: a block after it is the answer's call."""
    data, _ = _render(tmp_path, f"<think>I need a search</think>\n{CALL}")
    assert _calls(data) == [("search", {"q": "x"})]


def test_a_call_in_reasoning_that_a_result_answers_stays_a_call():
    """A multi-turn text (verl's ``output``) where a result follows a call written in the reasoning: the rollout
    ran it (verl's Hermes parser reads calls anywhere in the text), so it is a call and the result its result."""
    text = f"<think>let me {CALL}\n<tool_response>\n42\n</tool_response>\nso</think>It is 42."
    pieces = text_pieces(text)
    assert [k for k, _ in pieces] == ["text", "call", "result", "text"]
    assert pieces[2] == ("result", "42")


@pytest.mark.parametrize("gap", ["</think>\nuser\n", "</think>\n", "\n</think>\n\nuser\n"])
def test_a_call_in_reasoning_answered_after_the_think_block_stays_a_call(gap):
    """Review finding 3 (a): verl's decode of a Qwen3 turn with the call inside ``<think>`` and the tool's result
    after the ``</think>`` (and the template's ``user`` line): the rollout ran it, so it is a call and the
    response its result; the ``</think>`` stays in the text (before: no call, no result, one text piece)."""
    text = f"<think>let me check {CALL}{gap}<tool_response>\n42\n</tool_response>\nassistant\nThe answer is 42."
    pieces = text_pieces(text)
    assert [(k, v.name if k == "call" else v) for k, v in pieces] == [
        ("text", "<think>let me check "),
        ("call", "search"),
        ("text", gap.split("user")[0].strip("\n")),
        ("result", "42"),
        # the assistant line is the template's only where a user line brackets the result (``_text_spans``)
        ("text", "The answer is 42." if "user" in gap else "assistant\nThe answer is 42."),
    ]
    turns = from_messages([{"role": "assistant", "content": text}])
    assert [c.name for t in turns for c in t.tool_calls] == ["search"]
    assert [t.result.content for t in turns if t.result is not None] == ["42"]


def test_a_later_generation_that_reasons_first_and_never_closes_keeps_its_calls_as_text():
    """After a result (and the template's ``assistant`` line) a generation that opens with ``<think>`` and
    never closes it thinks to the end: its call, which no result answers, is text."""
    later = f"<think>maybe {CALL} again"
    text = f"{CALL}\nuser\n<tool_response>r</tool_response>\nassistant\n{later}"
    assert [(k, v.name if k == "call" else v) for k, v in text_pieces(text)] == [
        ("call", "search"),
        ("result", "r"),
        ("text", later),
    ]


@pytest.mark.parametrize(
    "before",
    ["<think>r</think>The model emits <think> tags. ", "Models write <think> first. ", "a <think>b</think> c <think> "],
)
def test_a_think_tag_named_in_prose_opens_no_reasoning(tmp_path, before):
    """Review finding 3 (b): a ``<think>`` in the answer's prose, with no ``</think>`` after it, is a word: the
    real call after it is a call (before: read as an unclosed reasoning block, the call became text). A model
    reasons first, so only a ``<think>`` that opens the generation thinks to the end."""
    data, _ = _render(tmp_path, before + CALL)
    assert _calls(data) == [("search", {"q": "x"})]
    assert data["stats"]["tool_calls"] == 1
    assert text_tool_calls(before + CALL) == (before, [ToolCall(None, "search", '{"q": "x"}')])


def test_each_generation_of_a_multi_turn_text_has_its_own_reasoning():
    """The first generation's call follows its ``</think>`` and was answered; the second generation's call is
    inside its own ``<think>`` and nothing answers it: text (before: two calls)."""
    second = f"<think>again? {CALL.replace('x', 'y')} no</think>Done."
    text = f"<think>a</think>{CALL}\n<tool_response>r</tool_response>\n{second}"
    pieces = text_pieces(text)
    assert [(k, v.name if k == "call" else v) for k, v in pieces] == [
        ("text", "<think>a</think>"),
        ("call", "search"),
        ("result", "r"),
        ("text", second),
    ]


def test_a_think_tag_inside_call_arguments_is_an_argument():
    """``</think>`` inside an argument string is the argument, not the end of a reasoning before the call."""
    block = '<tool_call>{"name": "w", "arguments": {"s": "</think>"}}</tool_call>'
    rest, calls = text_tool_calls(block + " done")
    assert [(c.name, json.loads(c.arguments or "")) for c in calls] == [("w", {"s": "</think>"})]
    assert rest == " done"


def test_a_closing_tag_inside_an_argument_string_does_not_end_the_block(tmp_path):
    """The block's JSON is decoded whole, so ``</tool_call>`` in a string is the argument's (before: the block
    ended there, failed as JSON, and the call was left as text)."""
    args = '{"s": "</tool_call>", "n": 1.10}'
    text = f'Echo it: <tool_call>{{"name": "echo", "arguments": {args}}}</tool_call>'
    data, _ = _render(tmp_path, text)
    assert _calls(data) == [("echo", {"s": "</tool_call>", "n": 1.10})]
    [call] = [c for t in data["turns"] for c in t["tool_calls"]]
    assert call["arguments"] == args  # as written
    assert [t["content"] for t in data["turns"][1:] if t["content"]] == ["Echo it: "]


def test_a_json_list_of_calls_stays_text():
    """One JSON object per block is the Hermes / Qwen format ("For each function call, return a json object
    ... within <tool_call></tool_call> XML tags"); vLLM's Hermes parser reads a list as no call. The block is
    kept as written."""
    text = '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]</tool_call>'
    assert text_pieces(text) == [("text", text)]


WORDS = ["hello", "ok.", "use the <tool_call> tag", "<tool_call>", "a\nb", "<b>x</b>", "see </tool_call>"]


class _Text:
    """A random assistant text and its truth: the parts written, the calls made (outside the reasoning) with
    their raw blocks, and the thinking blocks (closed, left open from the start, or opened by the template); or
    prose that names ``<think>`` with no ``</think>`` after it, which opens no reasoning."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.parts: list[str] = []
        self.made: list[tuple[str, dict[str, str]]] = []
        self.blocks: list[str] = []
        self.thinks: list[str] = []
        shape = rng.choice(["plain", "closed", "unclosed", "template", "mention"])
        if shape == "template":
            self.think("", "</think>", 0)
        if shape == "unclosed":  # the generation opens its reasoning and never closes it: all of it is thought
            self.think(rng.choice(["", "\n", " "]) + "<think>", "", 1)
            self.content = "".join(self.parts)
            return
        for k in range(rng.randint(1, 5)):
            if shape == "closed" and rng.random() < 0.3:
                self.think("<think>", "</think>", 0)
            elif shape == "mention" and k == 0:  # prose names the tag, no </think> follows: the calls are made
                self.parts.append(rng.choice(["", "<think>r</think>"]) + "It writes <think> tags.")
            else:
                self.parts.append(self.segment(thought=False))
        self.content = "".join(self.parts)

    def think(self, opening: str, closing: str, least: int) -> None:
        inner = [self.segment(thought=True) for _ in range(self.rng.randint(least, 3))]
        self.thinks.append(opening + "".join(inner) + closing)
        self.parts.append(self.thinks[-1])

    def segment(self, thought: bool) -> str:
        sep = self.rng.choice(["", " ", "\n"])
        if self.rng.random() < 0.5:
            return sep + self.rng.choice(WORDS)
        name = self.rng.choice(["search", "py", "calc"])
        args = {"q": self.rng.choice(["a", "</tool_call>", "</think>", "<think>", "x y", "<tool_call>"])}
        raw = f"<tool_call>{self.rng.choice(['', chr(10)])}{json.dumps({'name': name, 'arguments': args})}</tool_call>"
        if not thought:
            self.made.append((name, args))
            self.blocks.append(raw)
        return sep + raw

    def rest(self) -> str:
        """The text less the blocks of the calls made."""
        out, todo = [], list(self.blocks)
        for p in self.parts:
            if todo and p.lstrip(" \n") == todo[0]:
                out.append(p[: len(p) - len(todo.pop(0))])
            else:
                out.append(p)
        return "".join(out).strip("\n") if self.blocks else self.content


@pytest.mark.parametrize("seed", range(4))
def test_random_texts_keep_every_call_made_and_every_word(seed):
    """Random texts of prose (with stray tags), calls (whose arguments hold tags) and thinking blocks: the calls
    outside the reasoning are the calls, in order; the text less their blocks is the rest; each thinking block
    lies whole in one turn."""
    rng = random.Random(seed)
    for _ in range(300):
        t = _Text(rng)
        calls = [(v.name, json.loads(v.arguments)) for k, v in text_pieces(t.content) if k == "call"]
        assert calls == t.made, t.content
        rest, found = text_tool_calls(t.content)
        assert [(c.name, json.loads(c.arguments or "")) for c in found] == t.made, t.content
        assert rest == t.rest(), t.content
        turns = from_messages([{"role": "assistant", "content": t.content}])
        assert [(c.name, json.loads(c.arguments or "")) for u in turns for c in u.tool_calls] == t.made
        for think in t.thinks:
            assert any(think.strip("\n") in (u.content or "") for u in turns), (think, t.content)


def test_a_call_in_reasoning_answered_after_the_think_block_keeps_the_block_in_its_turn() -> None:
    """An audit of hostile text: the ``</think>`` between such a call and its result was a turn of its own, the
    reasoning split over two turns and the result, after that turn, named None (its call not found)."""
    text = '<think>plan <tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call></think>'
    said = text + "<tool_response>ok</tool_response>after"
    turns = from_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": said}])
    model = [t for t in turns if t.role == "assistant"]
    assert [c.name for c in model[0].tool_calls] == ["search"]
    assert "<think>plan" in model[0].content and "</think>" in model[0].content
    results = [t for t in turns if t.role == "tool"]
    assert len(results) == 1 and results[0].result is not None and results[0].result.content == "ok"
    assert [t.role for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert model[-1].content == "after"
