"""Markdown rendering: model text in code fences the data cannot close; labels escaped.

Text from the data is never interpreted as Markdown or HTML: contents, arguments, tool output and
tracebacks go into fenced code blocks whose fence is one backtick longer than the longest backtick run in
the text (so no line of the data can end the block); short labels (sample ids, speakers, component names)
have every Markdown metacharacter backslash-escaped and ``< > &`` written as entities. Control characters
are made visible in both.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from html import escape

from .model import Conversation, ToolCall, Turn, pretty_arguments, shown, shown_reasoning, turn_segments
from .safe import one_line, safe

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:])")
_BACKTICKS = re.compile(r"`+")


def md_label(text: str | None) -> str:
    """A one-line label from the data, inert in Markdown (and in the HTML Markdown allows)."""
    out = escape(one_line(text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", out)


def fence(text: str | None, info: str = "text") -> str:
    """``text`` in a code block that it cannot close: the fence is longer than any backtick run in it."""
    body = safe(text)
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{body}\n{ticks}"


def render_markdown(convs: Iterable[Conversation], *, show_think: bool = True) -> str:
    return "\n\n---\n\n".join(conversation_md(c, show_think) for c in convs) + "\n"


def conversation_md(conv: Conversation, show_think: bool = True) -> str:
    meta = [("step", conv.step), ("split", conv.split), ("env", conv.env_name), ("group", conv.group_id)]
    lines = [
        f"## sample {md_label(conv.sample_id or '?')}",
        "",
        " · ".join(f"{k} **{md_label(str(v))}**" for k, v in meta if v is not None)
        + f" · from {md_label(conv.source)}"
        + (f" · {md_label(conv.file)}" if conv.file else ""),
    ]
    for turn in conv.turns:
        lines += ["", turn_md(turn, show_think)]
    if conv.exception:
        lines += ["", "### exception", "", fence(conv.exception)]
    lines += ["", summary_md(conv)]
    return "\n".join(lines)


def turn_md(turn: Turn, show_think: bool = True) -> str:
    speaker = turn.speaker or (turn.result.name if turn.result else None)
    title = f"### {md_label(turn.role)}" + (f" · {md_label(speaker)}" if speaker else "")
    if turn.result is not None and turn.result.is_error:
        title += " · **error**"
    if turn.result is not None and turn.result.call_id:
        title += f" (call {md_label(turn.result.call_id)})"
    out = [title]
    reasoning = shown_reasoning(turn)
    if reasoning and show_think:
        out += ["", "*reasoning:*", "", fence(reasoning)]
    for segment, thinking in turn_segments(turn):
        if not thinking:
            out += ["", fence(segment)]
        elif show_think:
            out += ["", "*thinking:*", "", fence(segment)]
    out += ["\n".join(["", call_md(c)]) for c in turn.tool_calls]
    if turn.result is not None:
        out += ["", fence(turn.result.content or "")]
    if turn.data is not None:
        dumped = json.dumps(turn.data, indent=2, ensure_ascii=False, default=str)
        out += ["", "*data (shape not recognised: shown as JSON):*", "", fence(dumped, "json")]
    return "\n".join(out)


def call_md(call: ToolCall) -> str:
    ok, args = pretty_arguments(call)
    head = f"→ tool call **{md_label(call.name or '(unnamed tool)')}**" + (f" ({md_label(call.id)})" if call.id else "")
    if ok:
        return f"{head}\n\n{fence(args, 'json' if args.lstrip().startswith(('{', '[')) else 'yaml')}"
    if call.arguments:
        return f"{head} (arguments are not valid JSON)\n\n{fence(call.arguments)}"
    return head


def summary_md(conv: Conversation) -> str:
    out = ["| reward | value | KL |", "| --- | ---: | ---: |"]
    r = conv.reward
    if r is None:
        out.append("| (none) | | |")
    else:
        out.append(f"| total | {num(r.total)} | |")
        out += [f"| {md_label(n)} | {num(v)} | |" for n, v in r.components]
        out += [f"| role {md_label(x.role or '(unknown)')} | {num(x.reward)} | {num(x.kl)} |" for x in r.roles]
    st = conv.stats
    out += [
        "",
        f"turns {st.turns} · assistant turns {st.assistant_turns} · tool calls {st.tool_calls} · "
        f"tool errors {st.tool_errors} · characters {st.chars:,}",
    ]
    out += [f"\n*note:* {md_label(n)}" for n in conv.notes]
    return "\n".join(out)


def num(v: float | None) -> str:
    if v is None:
        return "null"
    if math.isnan(v):
        return "NaN"
    return shown(v) if math.isfinite(v) else str(v)
