"""The report's page shell: one inline style sheet, a strict Content-Security-Policy, and small escaping
helpers. Nothing here sees raw data unescaped: every value goes through ``e`` (control characters made
visible, then ``html.escape`` with quotes), ``e1`` (a label: also one line, and cut) or ``num``; CSS classes
come from fixed sets."""

from __future__ import annotations

import base64
import hashlib
import math
from html import escape
from typing import Any

from ..render.colours import role_css
from ..render.model import LABEL_CHARS
from ..render.model import cut_shown as cut
from ..render.safe import safe

CSS = (
    """
:root{--fg:#1d2433;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--accent:#2563eb;
--err:#c0262d;--warn:#b45309;--info:#0e7490;--ok:#15803d}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--fg);background:var(--bg)}
header{background:#111827;color:#f9fafb;padding:1.6em 2em 1.2em}
header h1{margin:0;font-size:1.6em;font-weight:650;word-break:break-word}
header .sub{color:#cbd5e1;margin-top:.3em;font-size:.95em;word-break:break-all}
nav{background:#1f2937;padding:.5em 2em;position:sticky;top:0;z-index:2}
nav a{color:#e5e7eb;text-decoration:none;margin-right:1.4em;font-size:.92em}
nav a:hover{color:#fff;text-decoration:underline}
main{max-width:76em;margin:0 auto;padding:1em 2em 4em}
h2{font-size:1.25em;margin:2em 0 .6em;padding-bottom:.3em;border-bottom:2px solid var(--line)}
h3{font-size:1.05em;margin:1.4em 0 .4em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(10em,1fr));gap:.8em;margin-top:1.2em}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.8em 1em;min-width:0;
overflow-wrap:anywhere}
.card .v{font-size:1.5em;font-weight:650}.card .k{color:var(--muted);font-size:.85em}
.card.bad .v{color:var(--err)}.card.warn .v{color:var(--warn)}.card.good .v{color:var(--ok)}
.finding{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--info);
border-radius:8px;padding:.6em 1em;margin:.5em 0}
.finding.sev-error{border-left-color:var(--err)}.finding.sev-warning{border-left-color:var(--warn)}
.finding .what{font-weight:600}.finding .links{font-size:.88em;color:var(--muted)}
.finding .links a{color:var(--accent)}
.badge{display:inline-block;border-radius:99px;padding:0 .6em;font-size:.78em;font-weight:700;
text-transform:uppercase;letter-spacing:.03em;color:#fff;background:var(--info);margin-right:.5em}
.badge.sev-error{background:var(--err)}.badge.sev-warning{background:var(--warn)}
.healthy{background:#ecfdf3;border:1px solid #abefc6;color:var(--ok);border-radius:8px;padding:.8em 1em;font-weight:600}
table.data{border-collapse:collapse;background:var(--card);border:1px solid var(--line);
font-variant-numeric:tabular-nums;margin:.4em 0;max-width:100%}
table.data th,table.data td{padding:.35em .8em;border-bottom:1px solid var(--line);text-align:right;
white-space:nowrap}
table.data th{background:#f9fafb;font-weight:600;color:#344054;white-space:normal}
table.data td:first-child,table.data th:first-child,table.data td.t{text-align:left;white-space:normal;
overflow-wrap:anywhere;min-width:6em}
figure{background:var(--card);border:1px solid var(--line);border-radius:10px;margin:1em 0;padding:.6em}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:var(--muted);font-size:.88em;padding:.3em .4em 0}
.note{color:var(--muted);font-size:.9em}
.missing{background:var(--card);border:1px dashed #cbd5e1;border-radius:8px;padding:.45em 1em;margin:.6em 0;
color:#475467;font-size:.92em;overflow-wrap:anywhere}
.missing b{color:var(--fg)}
code{font:12.5px ui-monospace,Menlo,Consolas,monospace;background:#eef1f5;padding:0 .3em;border-radius:3px}
.absent{background:#f8fafc;border:1px solid var(--line);border-radius:8px;padding:.6em 1em;margin:1em 0;
font-size:.92em;color:#475467}
.absent ul{margin:.3em 0 0;padding-left:1.4em}
.nofindings{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.8em 1em;font-weight:600;
color:#475467}
details.shared{background:#f8fafc;border:1px solid var(--line);border-radius:10px;padding:.5em 1em;margin:1em 0}
details.shared>summary{cursor:pointer;font-weight:600;color:#344054}
.traj{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.2em 1.2em 1em;margin:1em 0;
overflow-wrap:anywhere}
.traj h3{margin:.8em 0 .3em}
.titles{margin:.2em 0 .4em;line-height:1.9}
.place{display:inline-block;border-radius:4px;padding:0 .5em;font-size:.8em;font-weight:700;text-transform:uppercase;
letter-spacing:.03em;border:1px solid #475467;color:#1d2433;background:#fff}
.place.worst{background:#1d2433;color:#fff}
.meta{color:#666;font-size:.9em}
.turn{border:1px solid #ddd;border-left:5px solid #999;border-radius:4px;margin:.6em 0;padding:.3em .8em;
background:#fff}
.turn.rcc{border-left-color:var(--rc)}
.turn .title,.turn>summary{font-weight:bold}
.dot{color:var(--rc)}
.role-system{border-left-color:#a5a}.role-user{border-left-color:#29b}.role-assistant{border-left-color:#3a7}
.role-tool{border-left-color:#c90}.error{border-left-color:#d33;background:#fff4f4}
pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;font:12.5px/1.45 ui-monospace,Menlo,Consolas,monospace}
.think,.think pre{color:#777;font-style:italic}
.call{background:#fafae8;padding:.2em .5em;border-radius:3px;margin:.3em 0}
.exception{border-left-color:#d33;background:#fff4f4}
.traj table{border-collapse:collapse;margin:.5em 2em .5em 0;display:inline-table;vertical-align:top}
.traj td,.traj th{padding:.1em .6em;text-align:right}.traj td:first-child,.traj th:first-child{text-align:left}
.traj caption{color:var(--muted);font-size:.85em}
.r-high{color:#1a7f37}.r-zero{color:#c62828}.r-neg{color:#c62828;font-weight:bold}.r-nan{color:#c62828}
.r-none{color:#999}
.bad{color:#d33}
footer{color:var(--muted);font-size:.85em;text-align:center;padding:2em}
""".strip()
    + "\n"
    + role_css()
)
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
# No script, no fetch: only the one style sheet (by its hash) and images embedded as data: URIs.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src data:; "
    "script-src 'none'; base-uri 'none'; form-action 'none'"
)


def e(text: Any) -> str:
    """Data to HTML text: control characters made visible, then every HTML metacharacter escaped."""
    return escape(safe(None if text is None else str(text)), quote=True)


def e1(text: Any, limit: int | None = LABEL_CHARS) -> str:
    """``e`` for labels: one line, cut to ``limit`` characters kept at both ends (``cut``). A run's labels
    (its name, roles, components, scalar keys, splits) are written on the page several times each: whole, a
    1 MB role name made a 7 MB page. ``limit=None`` for a text that must stay whole (a command to paste,
    made of labels cut one by one)."""
    return escape(cut(None if text is None else str(text), limit), quote=True)


def num(v: Any, fmt: str = ".4g") -> str:
    """A number cell: ``-`` for null; NaN, ``inf`` and ``-inf`` marked, as ``summarize`` prints them (the sign
    kept: a key that fell to -inf is not one that rose to inf); other numbers in ``fmt``."""
    if v is None:
        return '<span class="note">-</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return '<span class="bad">NaN</span>'
        if math.isinf(v):
            return f'<span class="bad">{"" if v > 0 else "-"}inf</span>'
        return format(v, fmt)
    return e1(v)


def page(title: str, nav: list[tuple[str, str]], header: str, body: str, footer: str) -> str:
    links = "".join(f'<a href="#{anchor}">{escape(label)}</a>' for anchor, label in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e1(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header>{header}</header>\n<nav>{links}</nav>\n<main>\n{body}\n</main>\n<footer>{footer}</footer>\n"
        "</body>\n</html>\n"
    )


def table(headers: list[str], rows: list[list[str]], text: tuple[int, ...] = ()) -> str:
    """A table whose cells are already HTML (escaped by the caller). Cells stay on one line (numbers), except
    the first column's and those of the ``text`` columns, which wrap (names, paths, messages)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="t">{c}</td>' if i in text else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image(png: bytes, alt: str, anchor: str, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (
        f'<figure id="{anchor}"><img src="data:image/png;base64,{data}" alt="{e1(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )
