"""HTML rendering: a self-contained sample browser, safe to open whatever the model wrote.

The page (``render_html``) has a header (the run, the selection, "20 of 23 matched"), an index table of the
samples (step, split, sample, each role's reward, total, turns, tool calls, exception) that sorts when a
column header is clicked and filters as text is typed, and each sample's conversation in a ``<details>``
element that a row (or its link) opens.

Every value from the data is passed through ``safe`` and ``html.escape`` (quotes included) before it is
placed in the page; CSS class names and element ids come from fixed sets or counters, never from data. The
page loads nothing (no fonts, images or other scripts) and says so in a Content-Security-Policy meta tag:
``default-src 'none'``, with the one inline style sheet and the one inline script allowed by their hashes.
The script is a constant: it holds no data, and reads what it sorts and filters from the DOM (``data-v``
attributes hold the numbers). Without it the page still reads top to bottom: the links open the samples
(browsers expand a ``<details>`` that a link targets) and thinking blocks are ``<details>`` too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import escape

from ..schema import NULL_ROLE_LABEL
from .colours import reward_kind, role_css
from .colours import role_class as colour_class
from .model import MODEL_ROLES, Conversation, ToolCall, Turn, pretty_arguments, shown, shown_reasoning, turn_segments
from .safe import one_line, safe

KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "data", "transcript"})
# Longest text of an index-table cell (sample id, role name, exception line) and of a sample's summary line; the
# sample's conversation shows it whole.
CELL_CHARS = 120

CSS = (
    """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:86em;padding:0 1em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;border-bottom:2px solid #3a7;padding-bottom:.2em;margin-top:2.5em}
.meta{color:#666;font-size:.9em}
.whole{overflow-wrap:anywhere}
header{border-bottom:2px solid #3a7;padding-bottom:.6em;margin-bottom:1em}
header p{margin:.2em 0}header code{background:#f3f3f3;padding:0 .3em;border-radius:3px;overflow-wrap:anywhere}
.controls{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin:.5em 0}
.controls input{font:inherit;padding:.25em .5em;min-width:22em;border:1px solid #aaa;border-radius:4px}
.controls button{font:inherit;padding:.2em .7em;border:1px solid #aaa;border-radius:4px;background:#f6f6f6}
.tablewrap{overflow-x:auto;border:1px solid #ddd;border-radius:4px}
table.index{border-collapse:collapse;width:100%;margin:0;display:table}
.index th,.index td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
.index th{position:sticky;top:0;background:#f4f6f5;white-space:nowrap}
.index th button{all:unset;cursor:pointer;font-weight:bold}
.index th button:focus-visible{outline:2px solid #3a7}
.index th[aria-sort=ascending] button::after{content:" ▲"}
.index th[aria-sort=descending] button::after{content:" ▼"}
.index td.txt,.index th.txt{text-align:left}
.index td.sid{max-width:24em;overflow-wrap:anywhere}
.index td.exc{max-width:26em;overflow-wrap:anywhere;color:#b22;text-align:left}
.index tbody tr{cursor:pointer}.index tbody tr:hover{background:#f3f8f5}.index tr.current{background:#e3f1e8}
.index th.role{border-bottom:3px solid var(--rc)}
.dot{color:var(--rc)}
.r-high{color:#1a7f37}.r-zero{color:#c62828}.r-neg{color:#c62828;font-weight:bold}.r-nan{color:#c62828}
.r-none{color:#999}
details.sample{border:1px solid #ccc;border-radius:4px;margin:.7em 0;padding:.2em .8em}
details.sample>summary{cursor:pointer;padding:.3em 0;font-weight:bold;overflow-wrap:anywhere}
details.sample[open]>summary{border-bottom:1px solid #ddd;margin-bottom:.4em}
details.sample:target{box-shadow:0 0 0 2px #3a7}
.turn{border:1px solid #ccc;border-left:5px solid #999;border-radius:4px;margin:.6em 0;padding:.3em .8em}
.turn.rcc{border-left-color:var(--rc)}
.turn .title,.turn>summary{font-weight:bold}
.role-system{border-left-color:#a5a}.role-user{border-left-color:#29b}.role-assistant{border-left-color:#3a7}
.role-tool{border-left-color:#c90}.error{border-left-color:#d33;background:#fff4f4}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;font:13px/1.4 ui-monospace,monospace}
.think,.think pre{color:#777;font-style:italic}
.call{background:#fafae8;padding:.2em .5em;border-radius:3px;margin:.3em 0}
.exception{border-left-color:#d33;background:#fff4f4}
table.kv{border-collapse:collapse;margin:.5em 2em .5em 0;display:inline-table;vertical-align:top}
.kv td,.kv th{padding:.1em .6em;text-align:right}.kv td:first-child,.kv th:first-child{text-align:left}
.bad{color:#d33}
""".strip()
    + "\n"
    + role_css()
)

SCRIPT = r"""
"use strict";
(function () {
  var table = document.getElementById("samples");
  if (!table) return;
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  function key(row, col, numeric) {
    var cell = row.cells[col];
    if (!numeric) return cell.textContent.toLowerCase();
    var v = cell.getAttribute("data-v");
    return v === null || v === "" ? NaN : Number(v);
  }
  function compare(a, b, col, numeric, dir) {
    var x = key(a, col, numeric), y = key(b, col, numeric);
    if (numeric && (isNaN(x) || isNaN(y))) return isNaN(x) && isNaN(y) ? 0 : isNaN(x) ? 1 : -1;
    return x < y ? -dir : x > y ? dir : 0;
  }
  function sortBy(th) {
    var col = heads.indexOf(th), numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    heads.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    rows.sort(function (a, b) {
      return compare(a, b, col, numeric, dir) || Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i"));
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }
  function rowText(r) {
    // Cell by cell (a term never spans two cells), a number also as written in data-v (1201, not only 1,201).
    return Array.prototype.map.call(r.cells, function (c) {
      var v = c.getAttribute("data-v");
      return c.textContent + (v ? " " + v : "");
    }).join("\n").toLowerCase();
  }
  function applyFilter() {
    var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var n = 0;
    rows.forEach(function (r) {
      var text = rowText(r);
      var ok = terms.every(function (t) { return text.indexOf(t) >= 0; });
      var sample = document.getElementById(r.getAttribute("data-target"));
      r.hidden = !ok;
      if (sample) sample.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = String(n);
  }
  function openSample(id, scroll) {
    var d = document.getElementById(id);
    if (!d || !d.classList.contains("sample")) return;
    d.hidden = false;
    d.open = true;
    rows.forEach(function (r) { r.classList.toggle("current", r.getAttribute("data-target") === id); });
    if (scroll) d.scrollIntoView();
  }
  function setAll(open) {
    Array.prototype.forEach.call(document.querySelectorAll("details.sample"), function (d) {
      if (!d.hidden) d.open = open;
    });
  }
  heads.forEach(function (th) {
    var b = th.querySelector("button");
    if (b) b.addEventListener("click", function () { sortBy(th); });
  });
  filter.addEventListener("input", applyFilter);
  tbody.addEventListener("click", function (ev) {
    var row = ev.target.closest("tr");
    if (!row) return;
    var id = row.getAttribute("data-target");
    if (ev.target.closest("a")) { openSample(id, false); return; }
    openSample(id, true);
    if (location.hash !== "#" + id) history.pushState(null, "", "#" + id);
  });
  window.addEventListener("hashchange", function () { openSample(location.hash.slice(1), true); });
  document.getElementById("open-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("close-all").addEventListener("click", function () { setAll(false); });
  applyFilter();
  if (location.hash) openSample(location.hash.slice(1), true);
})();
""".strip()


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CSP = (
    f"default-src 'none'; style-src 'sha256-{_sha256(CSS)}'; script-src 'sha256-{_sha256(SCRIPT)}'; "
    "img-src 'none'; base-uri 'none'; form-action 'none'"
)


def e(text: str | None) -> str:
    """Data to HTML text: control characters made visible, then every HTML metacharacter escaped."""
    return escape(safe(text), quote=True)


def pre(text: str | None) -> str:
    """Data as a ``<pre>`` element (``e``). An HTML parser drops a newline that comes right after ``<pre>`` (the
    HTML standard's rule for ``pre``), so a text that starts with one is written after another, which the parser
    drops in its place: a tool output or a completion that opens with a blank line shows it."""
    body = e(text)
    return "<pre>" + ("\n" if body.startswith("\n") else "") + body + "</pre>"


def label(text: str | None, limit: int | None = None) -> str:
    """A one-line label from the data (newlines shown as ``\\n``), cut to ``limit`` characters as shown, escaped.
    Cut between two characters' escapes, never through one (``\\x1…`` named no character)."""
    out = one_line(text)
    if limit is not None and len(out) > limit:
        kept, used = [], 0
        for ch in (text or "").replace("\r\n", "\n"):  # as ``safe`` folds them
            shown = one_line(ch)
            if used + len(shown) > limit - 1:
                break
            kept.append(shown)
            used += len(shown)
        out = "".join(kept) + "…"
    return escape(out, quote=True)


@dataclass
class PageInfo:
    """What the page's header says: the run, the selection, and how many samples matched it."""

    run: str | None = None
    scope: str | None = None  # what was searched ("split train, every step")
    selectors: str = ""  # the options as given ("--where 'reward < 0.2'"); empty for the default
    matched: int | None = None  # samples that passed the filters, before picking
    notes: list[str] = field(default_factory=list)
    # Problems met while searching: ``(path, reason, is_error)``, and how many sample files could not be read
    # (in full). Said on the page itself: whoever gets only the page must see that samples may be missing.
    problems: list[tuple[str, str, bool]] = field(default_factory=list)
    unread_samples: int = 0


def render_html(
    convs: Iterable[Conversation],
    *,
    title: str | None = None,
    show_think: bool = True,
    info: PageInfo | None = None,
) -> str:
    """The sample browser: one self-contained page (see the module's docstring)."""
    convs = list(convs)
    info = info or PageInfo()
    if title is None:
        title = f"runlog · {info.run or 'trajectories'} · {len(convs)} sample{'s' if len(convs) != 1 else ''}"
    body = "\n".join(
        [
            header_html(convs, info),
            index_html(convs),
            '<main id="conversations">',
            *(sample_details(c, i, show_think) for i, c in enumerate(convs)),
            "</main>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{label(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def header_html(convs: list[Conversation], info: PageInfo) -> str:
    name = (info.run or "").rstrip("/\\").rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    run = f"<h1>{label(name or 'trajectories')}</h1>"
    how = [f"run <code>{label(info.run)}</code>"] if info.run else []
    how.append(f"selection <code>{label(info.selectors)}</code>" if info.selectors else "default selection")
    if info.scope:
        how.append(f"searched {label(info.scope)}")
    count = f"<b>{len(convs):,}</b>"
    if info.matched is not None:
        count += f" of <b>{info.matched:,}</b> matched"
    else:
        count += " shown"
    notes = "".join(f'<p class="meta">note: {label(n)}</p>' for n in info.notes)
    if info.problems:
        n = info.unread_samples
        head = (
            f"{n} sample file(s) could not be read in full: samples may be missing from this page"
            if n
            else "problems met while reading"
        )
        items = "".join(
            f"<li>{'error' if error else 'warning'}: <code>{label(path)}</code>: {label(reason)}</li>"
            for path, reason, error in info.problems[:50]
        )
        more = f"<li>... and {len(info.problems) - 50} more</li>" if len(info.problems) > 50 else ""
        notes += f'<p class="meta problems"><b>{head}</b></p><ul class="meta problems">{items}{more}</ul>'
    return (
        f'<header>\n{run}\n<p class="meta">render-trajectory · {" · ".join(how)}</p>\n'
        f'<p id="matched">{count}</p>{notes}\n</header>'
    )


def role_names(convs: list[Conversation]) -> list[str | None]:
    """Every role with a reward in any sample, in the order first met."""
    seen: dict[str | None, None] = {}
    for c in convs:
        for r in c.reward.roles if c.reward else []:
            seen.setdefault(r.role, None)
    return list(seen)


def index_html(convs: list[Conversation]) -> str:
    """The index table: one row per sample, linked to its conversation (``#s-N``)."""
    roles = role_names(convs)
    heads = [
        _th("#", "num"),
        _th("step", "num"),
        _th("split", "txt"),
        _th("sample", "txt"),
        *(_th(label(r or NULL_ROLE_LABEL, 40), "num", f' class="role {colour_class(r)}"', dot=True) for r in roles),
        _th("total", "num"),
        _th("turns", "num"),
        _th("tool calls", "num"),
        _th("exception", "txt"),
    ]
    body = [_index_row(c, i, roles) for i, c in enumerate(convs)]
    return (
        '<section id="index">\n<div class="controls">'
        '<input id="filter" type="search" autocomplete="off" placeholder="filter: text in the row (all words)" '
        'aria-label="filter the samples">'
        f'<span class="meta"><b id="shown">{len(convs)}</b> of {len(convs)} shown · click a column to sort</span>'
        '<button type="button" id="open-all">open all</button>'
        '<button type="button" id="close-all">close all</button></div>\n'
        '<div class="tablewrap"><table id="samples" class="index">\n'
        f"<thead><tr>{''.join(heads)}</tr></thead>\n<tbody>\n{chr(10).join(body)}\n</tbody></table></div>\n"
        "</section>"
    )


def _th(text: str, kind: str, attrs: str = "", *, dot: bool = False) -> str:
    """A sortable column header; ``text`` is already HTML."""
    data_type = "num" if kind == "num" else "text"
    if not attrs and kind == "txt":
        attrs = ' class="txt"'
    mark = '<span class="dot">● </span>' if dot else ""
    button = f'<button type="button">{mark}{text}</button>'
    return f'<th scope="col" data-type="{data_type}" aria-sort="none"{attrs}>{button}</th>'


def _num_cell(v: float | int | None, *, reward: bool = False) -> str:
    if v is None:
        return '<td class="r-none" data-v="">–</td>'
    cls = f' class="r-{reward_kind(v)}"' if reward else ""
    if isinstance(v, float) and not math.isfinite(v):
        return f'<td class="r-nan" data-v="">{"NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")}</td>'
    return f'<td{cls} data-v="{v!r}">{shown(v)}</td>' if isinstance(v, float) else f'<td data-v="{v}">{v:,}</td>'


def _index_row(conv: Conversation, i: int, roles: list[str | None]) -> str:
    target = f"s-{i}"
    by_role: dict[str | None, float | None] = {}
    for r in conv.reward.roles if conv.reward else []:
        by_role.setdefault(r.role, r.reward)
    st = conv.stats
    cells = [
        _num_cell(i + 1),
        _num_cell(conv.step),
        f'<td class="txt">{label(conv.split or "")}</td>',
        f'<td class="txt sid"><a href="#{target}">{label(conv.sample_id or "?", CELL_CHARS)}</a></td>',
        *(_num_cell(by_role.get(r), reward=True) for r in roles),
        _num_cell(conv.reward.total if conv.reward else None, reward=True),
        _num_cell(st.turns),
        _num_cell(st.tool_calls),
        f'<td class="exc">{label(exception_line(conv.exception), CELL_CHARS)}</td>',
    ]
    return f'<tr data-i="{i}" data-target="{target}">{"".join(cells)}</tr>'


def exception_line(text: str | None) -> str:
    """The line of a traceback that says what failed: its last non-empty line."""
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def sample_details(conv: Conversation, i: int, show_think: bool = True) -> str:
    """One sample as a closed ``<details id="s-N">``: a summary line, then its conversation."""
    total = conv.reward.total if conv.reward else None
    kind = reward_kind(total)
    shown_total = "–" if total is None else ("NaN" if kind == "nan" and math.isnan(total) else shown(total))
    bits = [f"#{i + 1} sample {label(conv.sample_id or '?', CELL_CHARS)}"]
    if conv.step is not None:
        bits.append(f"step {conv.step}")
    bits.append(f'reward <span class="r-{kind}">{label(shown_total)}</span>')
    if conv.exception:
        bits.append('<span class="bad">exception</span>')
    # An id the summary cut (CELL_CHARS, as in the index) is written whole here, to be copied into --sample-id.
    whole = one_line(conv.sample_id)
    full_id = (
        f'<p class="meta whole">sample id <b>{escape(whole, quote=True)}</b></p>' if len(whole) > CELL_CHARS else ""
    )
    parts = [
        f'<details class="sample" id="s-{i}">',
        f"<summary>{' · '.join(bits)}</summary>",
        *([full_id] if full_id else []),
        meta_html(conv),
        *conversation_parts(conv, show_think, fold_system=True),
        '<p class="meta"><a href="#index">back to the index</a></p>',
        "</details>",
    ]
    return "\n".join(parts)


def meta_html(conv: Conversation) -> str:
    meta = [("step", conv.step), ("split", conv.split), ("env", conv.env_name), ("group", conv.group_id)]
    return (
        '<p class="meta">'
        + " · ".join(f"{k} <b>{label(str(v))}</b>" for k, v in meta if v is not None)
        + f" · from {label(conv.source)}"
        + (f" · {label(conv.file)}" if conv.file else "")
        + "</p>"
    )


def conversation_html(conv: Conversation, show_think: bool = True) -> str:
    """One sample as a ``<section>`` with its heading (the report's trajectories use it)."""
    parts = [
        f'<section class="sample">\n<h2>sample {label(conv.sample_id or "?")}</h2>',
        meta_html(conv),
        *conversation_parts(conv, show_think),
        "</section>",
    ]
    return "\n".join(parts)


def conversation_parts(conv: Conversation, show_think: bool = True, *, fold_system: bool = False) -> list[str]:
    """The turns, the exception, then the reward and trajectory tables."""
    parts = [turn_html(t, show_think, fold_system=fold_system) for t in conv.turns]
    if conv.exception:
        parts.append(f'<div class="turn exception"><div class="title">exception</div>{pre(conv.exception)}</div>')
    parts.append(summary_html(conv))
    return parts


def turn_html(turn: Turn, show_think: bool = True, *, fold_system: bool = False) -> str:
    """One turn as a box with a coloured left border (the speaker's colour for the model's turns); a tool
    result is titled with the tool's name. ``fold_system``: a system prompt as a closed ``<details>``."""
    role_cls = f"role-{turn.role}" if turn.role in KNOWN_ROLES else "role-other"
    who = turn.speaker if turn.speaker and turn.role.lower() in MODEL_ROLES else turn.role
    result = turn.result
    error = result is not None and result.is_error
    if result is not None:
        title = f"<b>{label(result.name or turn.speaker or 'tool')}</b> · " + (
            '<span class="bad">error</span>' if error else '<span class="meta">result</span>'
        )
        if result.call_id:
            title += f' <span class="meta">{label(result.call_id)}</span>'
    else:
        title = label(turn.role) + (f' · <span class="dot">●</span> {label(turn.speaker)}' if turn.speaker else "")
    classes = f"turn {role_cls} rcc {colour_class(who)}{' error' if error else ''}"
    if fold_system and turn.role == "system" and turn.content and not turn.tool_calls:
        first = next((line for line in turn.content.splitlines() if line.strip()), "")
        return (
            f'<details class="{classes}"><summary>{title} <span class="meta">{label(first, 90)}</span></summary>'
            f"{pre(turn.content)}</details>"
        )
    out = [f'<div class="{classes}"><div class="title">{title}</div>']
    reasoning = shown_reasoning(turn)
    if reasoning and show_think:
        out.append(f'<details class="think"><summary>reasoning</summary>{pre(reasoning)}</details>')
    for segment, thinking in turn_segments(turn):
        if not thinking:
            out.append(pre(segment))
        elif show_think:
            out.append(f'<details class="think" open><summary>thinking</summary>{pre(segment)}</details>')
    out += [call_html(c) for c in turn.tool_calls]
    if result is not None:
        out.append(pre(result.content or ""))
    if turn.data is not None:
        dumped = json.dumps(turn.data, indent=2, ensure_ascii=False, default=str)
        out.append(f'<p class="meta">data (shape not recognised: shown as JSON)</p>{pre(dumped)}')
    out.append("</div>")
    return "\n".join(out)


def call_html(call: ToolCall) -> str:
    ok, args = pretty_arguments(call)
    note = "" if ok or not call.arguments else ' <span class="bad">(arguments are not valid JSON)</span>'
    ident = f' <span class="meta">{e(one_line(call.id))}</span>' if call.id else ""
    name = e(one_line(call.name or "(unnamed tool)"))
    return f'<div class="call">→ <b>{name}</b>{ident}{note}{pre(args)}</div>'


def summary_html(conv: Conversation) -> str:
    rows = []
    r = conv.reward
    if r is not None:
        rows.append(f"<tr><th>total</th><td>{num(r.total, reward=True)}</td><td></td></tr>")
        rows += [f"<tr><td>{label(n)}</td><td>{num(v, reward=True)}</td><td></td></tr>" for n, v in r.components]
        if r.roles:
            rows.append("<tr><th>role</th><th>reward</th><th>KL</th></tr>")
            rows += [
                f'<tr class="{colour_class(x.role)}"><td><span class="dot">●</span> '
                f"{label(x.role or NULL_ROLE_LABEL)}</td>"
                f"<td>{num(x.reward, reward=True)}</td><td>{num(x.kl)}</td></tr>"
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
        f'<table class="kv"><caption>reward</caption>{"".join(rows) or "<tr><td>(none)</td></tr>"}</table>'
        f'<table class="kv"><caption>trajectory</caption>{srows}</table>{notes}'
    )


def num(v: float | None, *, reward: bool = False) -> str:
    """A number in 10 significant digits (``model.shown``); a reward in its colour class (``colours.reward_kind``)."""
    if v is None:
        return '<span class="meta">null</span>'
    if not math.isfinite(v):
        return f'<span class="bad">{"NaN" if math.isnan(v) else v}</span>'
    return f'<span class="r-{reward_kind(v)}">{shown(v)}</span>' if reward else shown(v)
