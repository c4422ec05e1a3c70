"""``render-trajectory --format html``: the sample browser. A header (run, selection, "20 of 23 matched"), an
index table that sorts and filters in the page, each row opening its conversation; one self-contained file
under a strict CSP whose only script is its own. Hostile text in every field (sample id, role names, tool
names and arguments, reward component names, the exception, speakers) stays text.

The structure is checked with the standard library's HTML parser; the behaviour in a real headless
Chromium driven over the DevTools protocol (``tests/browser.py``), skipped when Chromium is absent.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from browser import CHROMIUM, SKIP_REASON, Page
from runlog import open_run
from runlog.cli.app import app
from runlog.render import Conversation, Reward, RoleResult, ToolCall, ToolResult, Turn
from runlog.render.html_page import render_html

from conftest import make_native_run, native_rows, write_native_samples

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)

HOSTILE = (
    '\x1b[31mred\x1b]0;title\x07 [bold red]LOUD[/bold red] <script>window.pwned=1;console.error("pwned")</script> '
    '"><img src=x onerror="window.pwned=2"> </details></td></tr></table><b>open \u202eevil'
)
HOSTILE_ROLE = '<img src=x onerror="window.pwned=3">judge'
HUGE_ID = "huge-" + "W" * 5000
N_ROWS = 24  # 23 with a reward, one NaN: --where matches 23, --limit shows 20


def reward_of(i: int) -> float:
    return round(((i * 7) % 23) / 10 - 0.5, 3)  # distinct values, negative ones included


def hostile_rows() -> list[dict]:
    rows = native_rows(3, N_ROWS, roles=("solver", HOSTILE_ROLE))
    for i, r in enumerate(rows):
        r["reward"] = reward_of(i) if i < N_ROWS - 1 else float("nan")
        r["roles"] = [
            {"role": "solver", "reward": reward_of(i), "kl": 0.01},
            {"role": HOSTILE_ROLE, "reward": float(i % 3 - 1), "kl": 0.02},
        ]
        r["reward_components"] = [{"name": HOSTILE, "value": 1.0}]
        r["messages"] = [
            {"role": "system", "name": None, "content": HOSTILE, "reasoning": None, "tool_calls": None,
             "tool_call_id": None},
            {"role": "user", "name": None, "content": "What is 2+2? " + HOSTILE, "reasoning": None,
             "tool_calls": None, "tool_call_id": None},
            {"role": "assistant", "name": HOSTILE, "content": "<think>" + HOSTILE + "</think>", "reasoning": None,
             "tool_calls": [{"id": f"c{i}", "name": HOSTILE, "arguments": HOSTILE}], "tool_call_id": None},
            {"role": "tool", "name": None, "content": HOSTILE, "reasoning": None, "tool_calls": None,
             "tool_call_id": f"c{i}"},
        ]  # fmt: skip
    rows[0]["sample_id"] = "id " + HOSTILE
    rows[1]["sample_id"] = HUGE_ID
    rows[2]["exception"] = "Traceback (most recent call last):\n  File x\n" + HOSTILE
    rows[3]["exception"] = "E" * 20000
    return rows


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    run = make_native_run(root / "run", steps=[0], n=4, roles=("solver", HOSTILE_ROLE))
    write_native_samples(run / "samples" / "train" / "step_00000003.p0.parquet", hostile_rows())
    out = root / "browser.html"
    args = ["render-trajectory", str(run), "--steps", "3", "--where", "reward > -100", "-f", "html", "-o", str(out)]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


# -- the page's structure, without a browser ---------------------------------------------------------------
class Tree(HTMLParser):
    """Start tags with their attributes, and the text of every element with an id or in a table cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.rows: list[list[tuple[dict[str, str | None], str]]] = []
        self.heads: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._cell_attrs: dict[str, str | None] = {}
        self._in: str | None = None
        self._index = False  # inside the index table

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._in = "script"
            self.scripts.append("")
        elif tag == "tr" and "data-target" in a:
            self.rows.append([])
        elif tag in ("td", "th") and self._index:
            self._cell, self._cell_attrs = [], a
        elif tag == "table" and a.get("id") == "samples":
            self._index = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in = None
        elif tag == "table":
            self._index = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if tag == "th" and self._cell_attrs.get("scope") == "col":
                self.heads.append(text)
            elif tag == "td" and self.rows:
                self.rows[-1].append((self._cell_attrs, text))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Tree:
    t = Tree()
    t.feed(html)
    t.close()
    return t


def test_page_structure_and_csp(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    t = parse(html)
    # One inline script, allowed by its hash; nothing else may run or load.
    csp = next(a["content"] for tag, a in t.tags if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert len(t.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(t.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "pwned" not in t.scripts[0] and "s3-" not in t.scripts[0]
    assert not [(tag, k) for tag, a in t.tags for k in a if k.startswith("on")], "an event handler attribute"
    assert not [tag for tag, _ in t.tags if tag in ("img", "svg", "iframe", "object", "embed", "link")]
    links = [a["href"] for tag, a in t.tags if tag == "a"]
    assert links and all(h is not None and h.startswith("#") for h in links)
    assert not [a for _, a in t.tags if "src" in a]
    ids = [a["id"] for _, a in t.tags if "id" in a]
    assert len(ids) == len(set(ids))
    # Every row links to its sample, a closed <details>; hostile "</details>" closed nothing.
    details = [a["id"] for tag, a in t.tags if tag == "details" and "sample" in (a.get("class") or "").split()]
    assert details == [f"s-{i}" for i in range(20)]
    assert sorted(h for h in links if h.startswith("#s-")) == sorted(f"#{d}" for d in details)
    # The header: the run, the selection, how many matched.
    text = " ".join(" ".join(t.text).split())
    assert "20 of 23 matched" in text and "--where 'reward > -100'" in text and "every split, step 3" in text
    # The index: its columns, one per role; 20 rows of equal width; numbers in data-v.
    assert t.heads[:4] == ["#", "step", "split", "sample"]
    assert t.heads[-4:] == ["total", "turns", "tool calls", "exception"]
    assert [h.lstrip("● ") for h in t.heads[4:-4]] == ["solver", HOSTILE_ROLE[:39] + "…"]  # long names cut
    assert len(t.rows) == 20 and {len(r) for r in t.rows} == {len(t.heads)}
    totals = [float(r[-4][0]["data-v"]) for r in t.rows]
    assert totals == [reward_of(i) for i in range(20)]
    assert {r[-4][0]["class"] for r in t.rows} == {"r-neg", "r-zero", "r-mid", "r-high"}  # colour-coded
    # Hostile text is text: the parser reads it back as written, control characters made visible.
    cells = {r[3][1] for r in t.rows}
    shown_id = "id \\x1b[31mred\\x1b]0;title\\x07 [bold red]LOUD[/bold red] <script>window.pwned=1;"
    assert any(c.startswith(shown_id) for c in cells)
    assert any(c.startswith("huge-WWW") and c.endswith("…") and len(c) <= 120 for c in cells)  # huge cell cut
    assert any(r[-1][1].startswith("\\x1b[31mred") and '</script> "><img src' in r[-1][1] for r in t.rows)
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html


def test_invalid_utf8_and_every_field_stay_text() -> None:
    """Lone surrogates (invalid UTF-8 decoded with surrogateescape) can be written; nothing becomes a tag."""
    bad = b"bad \xff\xfe utf8 <script>x</script>".decode("utf-8", "surrogateescape")
    conv = Conversation(
        [
            Turn("assistant", speaker=bad, content=bad, tool_calls=[ToolCall(bad, bad, bad)]),
            Turn("tool", result=ToolResult(bad, None, bad)),
        ],
        "messages",
        sample_id=bad,
        split=bad,
        reward=Reward(1.0, [(bad, 0.0)], [RoleResult(bad, -1.0, 0.1)]),
        exception=bad,
    )
    html = render_html([conv])
    html.encode("utf-8")  # would raise on a lone surrogate
    t = parse(html)
    assert len(t.scripts) == 1 and not [tag for tag, _ in t.tags if tag == "script"][1:]
    assert "bad \\udcff\\udcfe utf8 <script>x</script>" in " ".join(t.text)
    assert t.heads[4].lstrip("● ") == "bad \\udcff\\udcfe utf8 <script>x</script>"


# -- in Chromium -------------------------------------------------------------------------------------------
def visible_ids(p: Page) -> list[str]:
    return p.js(
        "Array.from(document.querySelectorAll('#samples tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.cells[3].textContent)"
    )


def column(p: Page, n: int) -> list[float | None]:
    vals = p.js(
        f"Array.from(document.querySelectorAll('#samples tbody tr')).map(r => r.cells[{n}].getAttribute('data-v'))"
    )
    return [float(v) if v else None for v in vals]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@needs_chromium
def test_console_errors_and_csp_violations_would_show(page: Path, tmp_path: Path) -> None:
    """Control pages: a script the CSP does not allow, and a script that throws, are both reported."""
    blocked = tmp_path / "blocked.html"
    blocked.write_text(page.read_text(encoding="utf-8").replace("</body>", "<script>console.log(1)</script></body>"))
    throws = tmp_path / "throws.html"
    throws.write_text("<!DOCTYPE html><html><body><script>undefinedFunction()</script></body></html>")
    with Page() as p:
        p.open(blocked)
        assert any("Content Security Policy" in m for m in p.problems())
        p.open(throws)
        assert any(m.startswith("exception:") and "undefinedFunction" in m for m in p.problems())


@needs_chromium
def test_sort_filter_and_open_in_chromium(page: Path, tmp_path: Path) -> None:
    with Page(width=1280, height=900) as p:
        p.open(page)
        assert p.js("document.getElementById('matched').textContent") == "20 of 23 matched"
        # Hostile text ran nothing and added no element; the one script is the page's own.
        assert p.js("window.pwned === undefined && document.scripts.length === 1")
        assert p.js("document.querySelectorAll('img, svg, iframe').length") == 0
        assert p.js("Array.from(document.querySelectorAll('b')).every(b => !b.textContent.startsWith('open'))")
        assert p.js("document.querySelectorAll('details.sample').length") == 20
        assert p.js("document.querySelectorAll('details.sample[open]').length") == 0
        names = p.js("Array.from(document.querySelectorAll('#samples thead th')).map(th => th.textContent)")
        total_col, role_col, sample_col = names.index("total"), 5, names.index("sample")
        assert names[role_col] == "● " + HOSTILE_ROLE[:39] + "…"

        # Sort: by total, ascending then descending; ties and missing values are stable.
        p.click(f"#samples thead th:nth-child({total_col + 1}) button")
        assert column(p, total_col) == sorted(reward_of(i) for i in range(20))
        assert p.js(f"document.querySelectorAll('#samples thead th')[{total_col}].getAttribute('aria-sort')") == (
            "ascending"
        )
        p.click(f"#samples thead th:nth-child({total_col + 1}) button")
        assert column(p, total_col) == sorted((reward_of(i) for i in range(20)), reverse=True)
        # By the hostile role's column, then by sample id (text).
        p.click(f"#samples thead th:nth-child({role_col + 1}) button")
        assert column(p, role_col) == sorted(float(i % 3 - 1) for i in range(20))
        p.click(f"#samples thead th:nth-child({sample_col + 1}) button")
        ids = visible_ids(p)
        assert ids == sorted(ids, key=str.lower) and len(ids) == 20

        # Filter: every word must be in the row; the rows and their samples are hidden, the count says so.
        p.type("#filter", "s3-1")
        assert sorted(visible_ids(p)) == sorted(f"s3-{i}" for i in range(10, 20))
        assert p.js("document.getElementById('shown').textContent") == "10"
        assert p.js("document.querySelectorAll('details.sample:not([hidden])').length") == 10
        p.js("document.getElementById('filter').value = ''")
        p.type("#filter", "PWNED")
        hits = visible_ids(p)
        assert len(hits) == 2 and "s3-2" in hits and any(h.startswith("id \\x1b[31mred") for h in hits)
        p.js("document.getElementById('filter').value = ''")
        p.type("#filter", " ")
        assert len(visible_ids(p)) == 20

        # Open: the sample's link, then a click anywhere else on a row.
        p.click("#samples a[href='#s-5']")
        assert p.js("document.getElementById('s-5').open") and p.js("location.hash") == "#s-5"
        assert p.js("document.querySelector('tr[data-target=s-5]').classList.contains('current')")
        p.click(f"#samples tr[data-target=s-7] td:nth-child({total_col + 1})")
        assert p.js("document.getElementById('s-7').open") and p.js("location.hash") == "#s-7"
        assert p.js("document.querySelector('tr[data-target=s-5]').classList.contains('current')") is False
        # Inside: the tool result is titled with the tool's (hostile) name; the text is text.
        result_title = p.js("document.querySelector('#s-7 .role-tool .title').textContent")
        assert result_title.startswith("\\x1b[31mred") and "<img src=x" in result_title and "result" in result_title
        assert p.js("document.querySelector('#s-0 summary').textContent").startswith("#1 sample id \\x1b[31mred")

        # A link into the page opens its sample on load.
        p.open(page, "#s-12")
        assert p.js("document.getElementById('s-12').open")

        # At 1280 px nothing overflows sideways, with a 5,000-character id and a 20,000-character exception.
        p.js("document.getElementById('s-1').open = true; document.getElementById('s-3').open = true")
        assert p.js("document.documentElement.scrollWidth") <= 1280
        shot = p.screenshot(tmp_path / "browser.png")
        assert png_size(shot) == (1280, 900)
        assert p.problems() == []
        assert {u for u in p.requests() if not u.startswith("file://")} == set()


@needs_chromium
def test_bundled_run_in_chromium(tmp_path: Path) -> None:
    """The bundled debate run: header, index, a sample opened; no console message; fits 1280 px."""
    out = tmp_path / "debate.html"
    runs = Path(__file__).resolve().parents[1] / "sample_runs"
    args = ["render-trajectory", str(runs / "debate_grpo"), "--steps", "31", "--worst", "3", "-f", "html"]
    res = CliRunner().invoke(app, [*args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    samples = open_run(runs / "debate_grpo").samples
    in_step = samples.filter((pl.col("step") == 31) & (pl.col("split") == "train")).collect().height
    with Page() as p:
        p.open(out)
        assert p.js("document.getElementById('matched').textContent") == f"3 of {in_step} matched"
        p.click("#samples a[href='#s-0']")
        assert p.js("document.querySelectorAll('#s-0 .turn').length") >= 5
        assert p.js("document.documentElement.scrollWidth") <= 1280
        first = p.js("document.querySelector('#samples tbody td[data-v]').getAttribute('data-v')")
        assert not math.isnan(float(first))
        assert p.problems() == []


@needs_chromium
def test_the_filter_finds_numbers_as_typed_and_never_across_cells(tmp_path: Path) -> None:
    """The index shows 1,000 and up with separators: typing 1201 (the turns) or 1234 (the step) finds the row;
    a term never spans two cells ("0train" is in no cell of a row at step 1,000 of split train)."""
    convs = [
        Conversation(
            [Turn("user", content="q")] * (1201 if step == 999 else 2),
            "messages",
            sample_id=f"id-{step}",
            step=step,
            split="train",
        )
        for step in (999, 1000, 1234)
    ]
    page = tmp_path / "p.html"
    page.write_text(render_html(convs), encoding="utf-8")
    with Page() as p:
        p.open(page)
        for term, want in [("1201", ["id-999"]), ("1234", ["id-1234"]), ("1,000", ["id-1000"]), ("0train", [])]:
            p.js("document.getElementById('filter').value = ''")
            p.type("#filter", term)
            assert visible_ids(p) == want, term
        assert not p.problems()
