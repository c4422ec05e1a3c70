"""Audit 10 of ``render-trajectory`` and the report's cards (findings F1-F9): reasoning that is a piece of the
answer is shown; OpenAI custom tool calls and thinking content parts keep their text; an argument key cannot
forge a line; the invisible characters the escapes missed (U+061C, tag characters...); a long sample id whole
in the browser; ``--index`` with no match; a cut traceback keeps its error line; huge labels cut with a mark;
rewards that differ past 10 digits read apart.

Every expectation is computed here from the raw Parquet (pyarrow) or from the inputs, never with runlog's code.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import runlog

FILE = "samples/train/step_00000000.p0.parquet"


def write_run(root: Path, samples: list[dict[str, Any]]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    with runlog.RunWriter(root, name="audit10") as w:
        w.log_samples(0, samples)
    return root


def one_sample(root: Path, messages: list[dict[str, Any]], sample_id: str = "s0", **extra: Any) -> Path:
    return write_run(root, [{"sample_id": sample_id, "reward": 0.5, "messages": messages, **extra}])


def raw_messages(run: Path) -> list[dict[str, Any]]:
    return pq.read_table(run / FILE).column("messages").to_pylist()[0]


# ---- F1: reasoning that is a piece of the content ------------------------------------------------------------


def test_reasoning_that_is_a_substring_of_the_answer_is_shown_everywhere(tmp_path: Path, cli) -> None:
    """The reasoning "4" of "The answer is 4 because 2+2=4" was hidden in the terminal, the browser, Markdown
    and the report (it is "in" the content); only a true duplicate (``<think>R</think>``) is left out."""
    run = one_sample(
        tmp_path / "run",
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "The answer is 4 because 2+2=4", "reasoning_content": "4"},
            {"role": "user", "content": "again"},
            {
                "role": "assistant",
                "content": "<think>DUP-REASONING</think>Still 4",
                "reasoning_content": "DUP-REASONING",
            },
        ],
    )
    raw = raw_messages(run)
    assert [m["reasoning"] for m in raw] == [None, "4", None, "DUP-REASONING"]  # the file holds it
    term = cli("render-trajectory", run, "--index", "0")
    assert term.exit_code == 0, term.output
    assert re.search(r"reasoning: 4\b", term.stdout), term.stdout
    assert term.stdout.count("DUP-REASONING") == 1  # the duplicate is shown once (the <think> block)
    page = cli("render-trajectory", run, "--index", "0", "--format", "html").stdout
    assert '<details class="think"><summary>reasoning</summary><pre>4</pre></details>' in page
    assert page.count("DUP-REASONING") == 1
    md = cli("render-trajectory", run, "--index", "0", "--format", "markdown").stdout
    assert md.count("DUP-REASONING") == 1 and re.search(r"(?i)reasoning", md)

    # sinks/tables.py's plain text (W&B tables) uses the same rule.
    from runlog.render.sample import conversation_from_row
    from runlog.sinks.tables import plain_turns

    row = pq.read_table(run / FILE).to_pylist()[0]
    text = plain_turns(conversation_from_row(row).turns)
    assert "(reasoning) 4" in text and text.count("DUP-REASONING") == 1


# ---- F2: custom tool calls, unknown tool-call shapes -------------------------------------------------------


def test_openai_custom_tool_call_keeps_its_name_and_input(tmp_path: Path, cli) -> None:
    custom = {"id": "c1", "type": "custom", "custom": {"name": "CUSTOMTOOL", "input": "CUSTOM-INPUT-TEXT\nline 2"}}
    odd = {"id": "c2", "type": "mystery", "mystery": {"x": 1}}
    run = one_sample(
        tmp_path / "run",
        [
            {"role": "user", "content": "run"},
            {"role": "assistant", "content": None, "tool_calls": [custom, odd]},
            {"role": "tool", "tool_call_id": "c1", "content": "out"},
        ],
    )
    calls = raw_messages(run)[1]["tool_calls"]
    assert calls[0] == {"id": "c1", "name": "CUSTOMTOOL", "arguments": "CUSTOM-INPUT-TEXT\nline 2"}
    # A shape not known: the whole call kept, as compact JSON.
    assert calls[1]["id"] == "c2" and calls[1]["name"] is None
    assert json.loads(calls[1]["arguments"]) == odd
    term = cli("render-trajectory", run, "--index", "0")
    assert "→ CUSTOMTOOL  c1" in term.stdout and "CUSTOM-INPUT-TEXT" in term.stdout
    assert cli("render-trajectory", run, "--grep", "CUSTOMTOOL").exit_code == 0
    assert cli("render-trajectory", run, "--grep", "mystery").exit_code == 0


def test_custom_tool_call_as_a_json_string_verifiers_shape() -> None:
    """verifiers writes each tool call as a JSON string: the same call, read from its text."""
    from runlog.chat import from_openai_chat

    call = {"id": "call_1", "type": "custom", "custom": {"name": "python_custom", "input": "a = -3"}}
    msgs = from_openai_chat([{"role": "assistant", "content": "", "tool_calls": [json.dumps(call)]}])
    assert msgs[0]["tool_calls"] == [{"id": "call_1", "name": "python_custom", "arguments": "a = -3"}]


# ---- F3: thinking content parts -----------------------------------------------------------------------------


def test_thinking_content_parts_are_the_messages_reasoning(tmp_path: Path) -> None:
    run = one_sample(
        tmp_path / "run",
        [
            {"role": "user", "content": "q"},
            # Anthropic's shape, with a redacted block (no text to give: a mark, in the reasoning, not in the text
            # that format specs read).
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "THINKING-PART-TEXT", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "ANS"},
                ],
            },
            # Magistral's: the thinking as a list of text chunks; beside a reasoning_content field.
            {
                "role": "assistant",
                "reasoning_content": "FIELD",
                "content": [
                    {"type": "thinking", "thinking": [{"type": "text", "text": "MAGISTRAL-THOUGHT"}]},
                    {"type": "text", "text": "ANS2"},
                ],
            },
            # inspect_ai's reasoning part.
            {
                "role": "assistant",
                "content": [{"type": "reasoning", "reasoning": "R-PART"}, {"type": "text", "text": "A3"}],
            },
        ],
    )
    raw = raw_messages(run)
    assert [(m["content"], m["reasoning"]) for m in raw[1:]] == [
        ("ANS", "THINKING-PART-TEXT\n[redacted_thinking]"),
        ("ANS2", "FIELD\nMAGISTRAL-THOUGHT"),
        ("A3", "R-PART"),
    ]


# ---- F4: an argument key that holds a newline ---------------------------------------------------------------


def test_an_argument_key_cannot_forge_a_tool_call_line(tmp_path: Path, cli) -> None:
    args = {"code": "a\nb", "x\n→ rm_everything  call_fake\ny": 1}
    run = one_sample(
        tmp_path / "run",
        [
            {"role": "user", "content": "x"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "k1", "type": "function", "function": {"name": "python", "arguments": json.dumps(args)}}
                ],
            },
        ],
    )
    assert [c["name"] for c in raw_messages(run)[1]["tool_calls"]] == ["python"]  # one call in the data
    for fmt in ("terminal", "markdown", "html"):
        out = cli("render-trajectory", run, "--index", "0", "--format", fmt).stdout
        lines = [line.strip("│ ").lstrip() for line in out.splitlines()]
        assert not any(line.startswith("→ rm_everything") for line in lines), (fmt, out)
        assert "rm_everything" in out  # shown, inside its key
    term = cli("render-trajectory", run, "--index", "0").stdout
    assert '"x\\n→ rm_everything  call_fake\\ny": 1' in term
    assert "code: |" in term  # the code block view stays


# ---- F5: invisible characters -------------------------------------------------------------------------------

INVISIBLE = ["\u061c", "\u00ad", "\u180e", "\ufff9", "\ufffa", "\ufffb", "\U000e0001", "\U000e0041", "\U000e007f"]


def test_visible_escapes_bidi_mark_soft_hyphen_and_tag_characters() -> None:
    from runlog.textsafe import visible

    for ch in INVISIBLE:
        n = ord(ch)
        want = f"\\u{n:04x}" if n <= 0xFFFF else f"\\U{n:08x}"
        assert visible(f"a{ch}b") == f"a{want}b"
    assert visible("👍\ufe0f") == "👍\ufe0f"  # a variation selector (emoji) is left alone


def test_no_invisible_character_reaches_terminal_browser_report_or_json(tmp_path: Path, cli) -> None:
    text = "ALM[" + "][".join(INVISIBLE) + "] RLO[\u202e]"
    run = one_sample(tmp_path / "run", [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}])
    assert raw_messages(run)[0]["content"] == text
    term = cli("render-trajectory", run, "--index", "0").stdout
    page = cli("render-trajectory", run, "--index", "0", "--format", "html").stdout
    rep = tmp_path / "report.html"
    assert cli("report", run, "-o", rep).exit_code == 0
    js = cli("render-trajectory", run, "--index", "0", "--format", "json").stdout
    for name, out in (("terminal", term), ("html", page), ("report", rep.read_text(encoding="utf-8")), ("json", js)):
        raw = [hex(ord(ch)) for ch in INVISIBLE + ["\u202e"] if ch in out]
        assert raw == [], (name, raw)
    assert "\\U000e0041" in term and "\\u061c" in page
    assert json.loads(js)[0]["turns"][0]["content"] == text  # JSON escapes keep the value


# ---- F6: a long sample id in the browser --------------------------------------------------------------------


def test_a_long_sample_id_is_shown_whole_in_the_browser(tmp_path: Path, cli) -> None:
    sid = "run-" + "".join(f"{i:03d}" for i in range(100))
    run = one_sample(tmp_path / "run", [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], sid)
    assert pq.read_table(run / FILE).column("sample_id").to_pylist() == [sid]
    page = cli("render-trajectory", run, "--index", "0", "--format", "html").stdout
    assert len(sid) == 304 and sid in page


# ---- F7: --index with no match --------------------------------------------------------------------------------


def test_index_with_no_match_is_no_sample_matches(tmp_path: Path, cli) -> None:
    run = one_sample(tmp_path / "run", [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}])
    for picker in ([], ["--best", "1"], ["--index", "0"], ["--index", "-1"]):
        r = cli("render-trajectory", run, "--grep", "NOPE-NOMATCH", *picker)
        assert r.exit_code == 1, (picker, r.stderr)
        assert "no sample matches the selectors" in r.stderr and "only 0 sample" not in r.stderr
    r = cli("render-trajectory", run, "--index", "5")  # a real out-of-range index stays a usage error
    assert r.exit_code == 2 and "--index 5: only 1 sample(s) selected (0..0)" in r.stderr


# ---- F8: cuts that keep a traceback's error line; huge labels -----------------------------------------------


def test_a_cut_traceback_keeps_its_last_line_and_huge_labels_are_cut(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # the marks on one line each
    sid = "big-" + "I" * 50_000
    tool = "T" * 10_000
    exception = "Traceback (most recent call last):\n" + "  frame\n" * 5000 + "ValueError: THE-REAL-ERROR"
    tool_error = "Traceback (most recent call last):\n" + "  tframe\n" * 5000 + "KeyError: TOOL-REAL-ERROR"
    msgs = [
        {"role": "user", "content": "u"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": tool, "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": tool_error},
    ]
    run = write_run(
        tmp_path / "run",
        [
            {"sample_id": sid, "reward": 1.0, "exception": exception, "messages": msgs},
            {"sample_id": "small", "reward": 0.0, "messages": [{"role": "user", "content": "u"}]},
        ],
    )
    table = pq.read_table(run / FILE).to_pylist()
    assert table[0]["exception"] == exception and len(table[0]["sample_id"]) == 50_004
    term = cli("render-trajectory", run, "--best", "1")  # to stdout: texts cut at 20,000
    assert term.exit_code == 0, term.output
    out = term.stdout
    assert "ValueError: THE-REAL-ERROR" in out and "KeyError: TOOL-REAL-ERROR" in out
    assert "Traceback (most recent call last):" in out
    assert f"[truncated {len(exception) - 20_000} chars]" in out
    # Labels: 300 characters kept, the rest said.
    assert f"[truncated {len(sid) - 300} chars]" in out and f"[truncated {len(tool) - 300} chars]" in out
    assert "I" * 301 not in out.replace("\n", "") and "T" * 301 not in out.replace("\n", "")
    # The report's cards (3,000 characters a text).
    rep = tmp_path / "report.html"
    assert cli("report", run, "-o", rep).exit_code == 0
    html = rep.read_text(encoding="utf-8")
    assert "ValueError: THE-REAL-ERROR" in html and "KeyError: TOOL-REAL-ERROR" in html
    assert f"[truncated {len(exception) - 3000} chars]" in html
    assert "I" * 301 not in html and f"[truncated {len(sid) - 300} chars]" in html
    # JSON and the browser keep the labels whole.
    js = json.loads(cli("render-trajectory", run, "--best", "1", "--format", "json").stdout)[0]
    assert js["sample_id"] == sid and js["turns"][1]["tool_calls"][0]["name"] == tool
    page = cli("render-trajectory", run, "--best", "1", "--format", "html").stdout
    assert sid in page and tool in page


# ---- F9: rewards that differ past 10 digits -----------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(0.3, 0.30000000001), (1.0, 1.0000000000000002)])
def test_two_different_rewards_never_read_alike(tmp_path: Path, cli, a: float, b: float) -> None:
    run = write_run(tmp_path / "run", [{"sample_id": "a", "reward": a}, {"sample_id": "b", "reward": b}])
    got = pq.read_table(run / FILE).column("reward").to_pylist()
    assert got == [a, b] and got[0] != got[1]
    out = cli("render-trajectory", run, "--where", "reward > 0").stdout
    shown = re.findall(r"^sample (\S+) .* reward (\S+)$", out, re.MULTILINE)
    assert [s for s, _ in shown] == ["a", "b"] and shown[0][1] != shown[1][1]
    assert [float(v) for _, v in shown] == got  # each reads back as its value
    page = cli("render-trajectory", run, "--where", "reward > 0", "--format", "html").stdout
    cells = re.findall(r'<td class="r-[a-z]+" data-v="([^"]+)">([^<]+)</td>', page)
    totals = {float(v): text for v, text in cells}
    assert totals[a] != totals[b] and float(totals[b]) == b


def test_a_float32_reward_and_a_float64_one_never_read_alike(tmp_path: Path, cli) -> None:
    """A float32 0.3 (0.30000001192092896 as float64) beside a float64 0.3: two values, read as two (showing
    the float32 as 0.3 made them alike, and ``--where 'reward == 0.3'`` picks one)."""
    import pyarrow as pa

    run = write_run(tmp_path / "run", [{"sample_id": "a", "reward": 0.3}])
    table = pq.read_table(run / FILE)
    i = table.schema.get_field_index("reward")
    single = table.set_column(i, pa.field("reward", pa.float32()), table.column(i).cast(pa.float32()))
    pq.write_table(single, run / FILE)
    [stored] = pq.read_table(run / FILE).column("reward").to_pylist()
    assert stored != 0.3
    out = cli("render-trajectory", run, "--sample-id", "a").stdout
    [value] = re.findall(r"reward (\S+)$", out, re.MULTILINE)
    assert float(value) == stored and value != "0.3"


def test_two_long_ids_sharing_their_start_read_apart_when_cut(tmp_path: Path, cli) -> None:
    """Labels are cut at 300 characters: two ids sharing their first 300 read alike (only the head was kept)."""
    prefix = "exp-" + "x" * 400
    rows = [{"sample_id": prefix + "-alpha", "reward": 0.1}, {"sample_id": prefix + "-beta", "reward": 0.9}]
    run = write_run(tmp_path / "run", rows)
    out = cli("render-trajectory", run, "--where", "reward > 0").stdout
    assert "-alpha  step 0" in out and "-beta  step 0" in out  # each id's own end, after the cut
    assert "[truncated 110 chars]" in out and "[truncated 109 chars]" in out
    assert prefix not in out.replace("\n", "")


def test_tool_call_arguments_under_other_apis_keys_are_kept(tmp_path: Path) -> None:
    """Llama's ``parameters``, Gemini's ``args``, and keys not known at all: the call was shown with no
    arguments (a named call's other keys were dropped); a Responses function_call answers by its call_id."""
    from runlog.chat import tool_call

    assert tool_call({"name": "f", "parameters": {"x": 1}}) == {"id": None, "name": "f", "arguments": '{"x":1}'}
    assert tool_call({"name": "g", "args": {"q": "a"}})["arguments"] == '{"q":"a"}'
    assert tool_call({"type": "function", "function": {"name": "h", "parameters": {"z": 2}}})["arguments"] == '{"z":2}'
    assert tool_call({"name": "m", "weird": {"v": 3}})["arguments"] == '{"weird":{"v":3}}'
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"}
    assert tool_call(item)["id"] == "call_1"
