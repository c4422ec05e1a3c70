"""HTML rendering: one self-contained page, safe to open whatever the model wrote.

Every value from the data is passed through ``safe`` and ``html.escape`` (quotes included) before it is
placed in the page; CSS class names come from fixed sets, never from data. The page loads nothing (no
scripts, fonts or images) and says so in a Content-Security-Policy meta tag: ``default-src 'none'`` with
the one inline style sheet allowed by its hash, so even an escaping bug could not run a script or fetch
a URL. Thinking blocks are collapsible ``<details>`` elements, which need no script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable
from html import escape

from .model import Conversation, ToolCall, Turn, pretty_arguments, shown_reasoning, turn_segments
from .safe import one_line, safe

KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "data", "transcript"})

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h2{font-size:1.1em;border-bottom:2px solid #3a7;padding-bottom:.2em;margin-top:2.5em}
.meta{color:#666;font-size:.9em}
.turn{border:1px solid #ccc;border-left:5px solid #999;border-radius:4px;margin:.6em 0;padding:.3em .8em}
.turn .title{font-weight:bold}
.role-system{border-left-color:#a5a}.role-user{border-left-color:#29b}.role-assistant{border-left-color:#3a7}
.role-tool{border-left-color:#c90}.error{border-left-color:#d33;background:#fff4f4}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;font:13px/1.4 ui-monospace,monospace}
.think,.think pre{color:#777;font-style:italic}
.call{background:#fafae8;padding:.2em .5em;border-radius:3px;margin:.3em 0}
.exception{border-left-color:#d33;background:#fff4f4}
table{border-collapse:collapse;margin:.5em 2em .5em 0;display:inline-table;vertical-align:top}
td,th{padding:.1em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
.bad{color:#d33}
""".strip()
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; form-action 'none'"


def e(text: str | None) -> str:
    """Data to HTML text: control characters made visible, then every HTML metacharacter escaped."""
    return escape(safe(text), quote=True)


def render_html(convs: Iterable[Conversation], *, title: str = "runlog trajectories", show_think: bool = True) -> str:
    body = "\n".join(conversation_html(c, show_think) for c in convs)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(one_line(title))}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def conversation_html(conv: Conversation, show_think: bool = True) -> str:
    meta = [("step", conv.step), ("split", conv.split), ("env", conv.env_name), ("group", conv.group_id)]
    parts = [
        f'<section class="sample">\n<h2>sample {escape(one_line(conv.sample_id or "?"))}</h2>',
        '<p class="meta">'
        + " · ".join(f"{k} <b>{escape(one_line(str(v)))}</b>" for k, v in meta if v is not None)
        + f" · from {escape(one_line(conv.source))}"
        + (f" · {escape(one_line(conv.file))}" if conv.file else "")
        + "</p>",
    ]
    parts += [turn_html(t, show_think) for t in conv.turns]
    if conv.exception:
        parts.append(
            f'<div class="turn exception"><div class="title">exception</div><pre>{e(conv.exception)}</pre></div>'
        )
    parts.append(summary_html(conv))
    parts.append("</section>")
    return "\n".join(parts)


def turn_html(turn: Turn, show_think: bool = True) -> str:
    role_class = f"role-{turn.role}" if turn.role in KNOWN_ROLES else "role-other"
    error = turn.result is not None and turn.result.is_error
    speaker = turn.speaker or (turn.result.name if turn.result else None)
    title = e(one_line(turn.role)) + (f" · {e(one_line(speaker))}" if speaker else "")
    if error:
        title += ' · <span class="bad">error</span>'
    if turn.result is not None and turn.result.call_id:
        title += f' <span class="meta">call {e(one_line(turn.result.call_id))}</span>'
    out = [f'<div class="turn {role_class}{" error" if error else ""}"><div class="title">{title}</div>']
    reasoning = shown_reasoning(turn)
    if reasoning and show_think:
        out.append(f'<details class="think"><summary>reasoning</summary><pre>{e(reasoning)}</pre></details>')
    for segment, thinking in turn_segments(turn):
        if not thinking:
            out.append(f"<pre>{e(segment)}</pre>")
        elif show_think:
            out.append(f'<details class="think" open><summary>thinking</summary><pre>{e(segment)}</pre></details>')
    out += [call_html(c) for c in turn.tool_calls]
    if turn.result is not None:
        out.append(f"<pre>{e(turn.result.content or '')}</pre>")
    if turn.data is not None:
        dumped = json.dumps(turn.data, indent=2, ensure_ascii=False, default=str)
        out.append(f'<p class="meta">data (shape not recognised: shown as JSON)</p><pre>{e(dumped)}</pre>')
    out.append("</div>")
    return "\n".join(out)


def call_html(call: ToolCall) -> str:
    ok, args = pretty_arguments(call)
    note = "" if ok or not call.arguments else ' <span class="bad">(arguments are not valid JSON)</span>'
    ident = f' <span class="meta">{e(one_line(call.id))}</span>' if call.id else ""
    name = e(one_line(call.name or "(unnamed tool)"))
    return f'<div class="call">→ <b>{name}</b>{ident}{note}<pre>{e(args)}</pre></div>'


def summary_html(conv: Conversation) -> str:
    rows = []
    r = conv.reward
    if r is not None:
        rows.append(f"<tr><th>total</th><td>{num(r.total)}</td><td></td></tr>")
        rows += [f"<tr><td>{e(one_line(n))}</td><td>{num(v)}</td><td></td></tr>" for n, v in r.components]
        if r.roles:
            rows.append("<tr><th>role</th><th>reward</th><th>KL</th></tr>")
            rows += [
                f"<tr><td>{e(one_line(x.role or '(unknown)'))}</td><td>{num(x.reward)}</td><td>{num(x.kl)}</td></tr>"
                for x in r.roles
            ]
    st = conv.stats
    stats = [
        ("turns", st.turns),
        ("assistant turns", st.assistant_turns),
        ("tool calls", st.tool_calls),
        ("tool errors", st.tool_errors),
        ("characters", st.chars),
    ]
    srows = "".join(f"<tr><td>{k}</td><td>{v:,}</td></tr>" for k, v in stats)
    notes = "".join(f'<p class="meta">note: {e(n)}</p>' for n in conv.notes)
    return (
        f"<table><caption>reward</caption>{''.join(rows) or '<tr><td>(none)</td></tr>'}</table>"
        f"<table><caption>trajectory</caption>{srows}</table>{notes}"
    )


def num(v: float | None) -> str:
    if v is None:
        return '<span class="meta">null</span>'
    if not math.isfinite(v):
        return f'<span class="bad">{"NaN" if math.isnan(v) else v}</span>'
    return f"{v:.4g}"
