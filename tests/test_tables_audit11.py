"""Audit wb3 of the W&B trajectory tables against ``render-trajectory`` (findings F1-F5, F7's W&B items): an
id-less tool result is named by the call it answers in every output, never by a call the conversation had left;
the W&B text names results and writes the call ids; every line of a reasoning is marked (W&B) or boxed (plain
terminal text); the ``sample`` cell is escaped; the ``prompt`` column ends at a speaker's first turn; figures
are exact; arguments that are not JSON are flagged; unknown data is JSON.

Every expectation is computed here from the raw Parquet (pyarrow) or from the inputs, never with runlog's code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from runlog import open_run
from runlog.sinks import build_plan

from conftest import native_run_of

FILE = "samples/train/step_00000000.p0.parquet"
# What must never reach a W&B cell raw: C0 controls but newline, DEL, C1, the bidi controls.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def msg(role: str, content: str | None = None, **kw: Any) -> dict[str, Any]:
    base = {"role": role, "name": None, "content": content, "reasoning": None, "tool_calls": None}
    return {**base, "tool_call_id": None, **kw}


def call(name: str, args: str, ident: str | None = None) -> dict[str, Any]:
    return {"id": ident, "name": name, "arguments": args}


def sample(sample_id: str, messages: list[dict[str, Any]] | None, **kw: Any) -> dict[str, Any]:
    row = {
        "schema_version": 2,
        "step": 0,
        "split": "train",
        "sample_id": sample_id,
        "group_id": None,
        "env_name": None,
        "reward": 1.0,
        "reward_components": [],
        "roles": [],
        "messages": messages,
        "prompt": None,
        "completion": None,
        "trajectory": None,
        "exception": None,
    }
    return {**row, **kw}


def run_of(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    return native_run_of(tmp_path / "run", rows)


def raw_rows(run: Path) -> list[dict[str, Any]]:
    return pq.read_table(run / FILE).to_pylist()


def wandb_rows(run: Path) -> dict[str, dict[str, Any]]:
    """The train table's rows as W&B gets them (plan mode), by their ``sample`` cell."""
    out = {}
    for p in build_plan(open_run(run)).payloads():
        for table in p.tables.values():
            for r in table.rows:
                d = dict(zip(table.columns, r, strict=True))
                out[d["sample"]] = d
    return out


def paired_names(messages: list[dict[str, Any]]) -> list[str | None]:
    """For each tool message, the name of the call it answers, from the raw messages: by id among the calls of
    the conversation; without an id, the k-th call of the message with calls that the run of tool messages it is
    the k-th of directly follows (none when another message came between)."""
    by_id = {c["id"]: c["name"] for m in messages for c in m["tool_calls"] or [] if c["id"]}
    out: list[str | None] = []
    for i, m in enumerate(messages):
        if m["role"] != "tool":
            continue
        if m["tool_call_id"]:
            out.append(by_id.get(m["tool_call_id"]))
            continue
        j = i
        while j > 0 and messages[j - 1]["role"] == "tool":
            j -= 1
        calls = (messages[j - 1]["tool_calls"] or []) if j > 0 else []
        out.append(calls[i - j]["name"] if i - j < len(calls) else None)
    return out


# ---- F1: an id-less result is named by the call it answers, never by one the conversation left -------------


STALE = [
    msg("user", "Q"),
    msg("assistant", tool_calls=[call("search", '{"q": "x"}')]),  # never answered
    msg("user", "Cancel that; compute 2+2 instead."),
    msg("assistant", tool_calls=[call("calc", '{"expr": "2+2"}')]),
    msg("tool", "4"),  # no id, no name: answers calc
    msg("assistant", "4"),
    msg("user", "and now?"),
    msg("tool", "ORPHAN"),  # follows a user message: answers no call at all
]


def test_an_idless_result_is_named_by_the_open_call_in_every_output(tmp_path: Path, cli) -> None:
    run = run_of(tmp_path, [sample("s", STALE)])
    raw = raw_rows(run)[0]["messages"]
    want = paired_names(raw)
    assert want == ["calc", None]
    assert all(m["name"] is None and m["tool_call_id"] is None for m in raw if m["role"] == "tool")

    out = cli("render-trajectory", run, "--steps", "all", "--index", "0", "--format", "json")
    assert out.exit_code == 0, out.output
    results = [t["result"] for t in json.loads(out.stdout)[0]["turns"] if t["result"]]
    assert [r["name"] for r in results] == want  # the orphan's name is null: no name made up

    term = cli("render-trajectory", run, "--steps", "all", "--index", "0").stdout
    titles = re.findall(r"╭─ (\S+) · result", term)
    assert titles == [w or "tool" for w in want], term

    page = cli("render-trajectory", run, "--steps", "all", "--index", "0", "--format", "html").stdout
    names = re.findall(r'<div class="title"><b>([^<]*)</b> · <span class="meta">result', page)
    assert names == [w or "tool" for w in want]

    text = wandb_rows(run)["s"]["full_trajectory"]
    assert "[tool · calc]\n4" in text and "[tool]\nORPHAN" in text
    assert "[tool · search]" not in text


# ---- F2: the W&B text names results and writes the call ids ---------------------------------------------------


def test_wandb_text_writes_call_ids_and_result_names(tmp_path: Path) -> None:
    swap = [
        msg("user", "look both up"),
        msg(
            "assistant",
            "let me search",
            tool_calls=[call("search", '{"q": "alpha"}', "call_A"), call("search", '{"q": "beta"}', "call_B")],
        ),
        msg("tool", "result for BETA", tool_call_id="call_B"),
        msg("tool", "result for ALPHA", tool_call_id="call_A"),
        msg("assistant", "done"),
    ]
    run = run_of(tmp_path, [sample("swap", swap)])
    raw = raw_rows(run)[0]["messages"]
    text = wandb_rows(run)["swap"]["full_trajectory"]
    for c in raw[1]["tool_calls"]:
        q = json.loads(c["arguments"])["q"]
        assert f'-> tool call {c["name"]} [{c["id"]}]: {{\n  "q": "{q}"\n}}' in text, text
    names = paired_names(raw)
    for m, name in zip([m for m in raw if m["role"] == "tool"], names, strict=True):
        assert f"[tool · {name}] [{m['tool_call_id']}]\n{m['content']}" in text, text
    # In the order the results came: BETA's block first, headed by the id of the call that asked for beta.
    assert text.index("[call_B]\nresult for BETA") < text.index("[call_A]\nresult for ALPHA")


# ---- F3: where the reasoning ends ---------------------------------------------------------------------------------


def test_every_reasoning_line_is_marked_in_wandb_and_boxed_in_plain_terminal_text(tmp_path: Path, cli) -> None:
    long_one = "word " * 80  # one line, wrapped at 120 columns
    rows = [
        sample(
            "multi",
            [
                msg("user", "Q"),
                msg(
                    "assistant",
                    "The answer is 4 (row 7)",
                    reasoning="Step 1: think about row 7.\nStep 2: the answer is 5.\nSo 5.",
                ),
            ],
        ),
        sample("wrapped", [msg("user", "Q"), msg("assistant", "FINAL", reasoning=long_one.strip())]),
    ]
    run = run_of(tmp_path, rows)
    raw = {r["sample_id"]: r["messages"][1] for r in raw_rows(run)}
    tables = wandb_rows(run)

    for sid in ("multi", "wrapped"):
        text = tables[sid]["full_trajectory"]
        lines = text.split("\n")
        reasoning = raw[sid]["reasoning"].split("\n")
        start = lines.index(f"(reasoning) {reasoning[0]}")
        assert lines[start : start + len(reasoning)] == [f"(reasoning) {x}" for x in reasoning]
        assert lines[start + len(reasoning)] == raw[sid]["content"]  # the answer, unmarked, right after

    for sid in ("multi", "wrapped"):
        out = tmp_path / f"{sid}.txt"
        res = cli("render-trajectory", run, "--sample-id", sid, "-o", out)
        assert res.exit_code == 0, res.output
        lines = out.read_text().split("\n")
        top = next(i for i, x in enumerate(lines) if x.startswith("│ ╭─ reasoning "))
        bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("│ ╰─"))
        inside = " ".join(x.strip("│ ") for x in lines[top + 1 : bottom])
        assert inside.split() == raw[sid]["reasoning"].split()  # all of the reasoning, in the box
        assert lines[bottom + 1].startswith(f"│ {raw[sid]['content']} ")  # the answer after it, outside


def test_a_short_reasoning_stays_on_its_line(tmp_path: Path, cli) -> None:
    run = run_of(tmp_path, [sample("s", [msg("user", "Q"), msg("assistant", "The answer is 4", reasoning="4")])])
    out = cli("render-trajectory", run, "--index", "0").stdout
    assert re.search(r"│ reasoning: 4 +│", out) and "╭─ reasoning" not in out


# ---- F4: the sample cell is escaped ---------------------------------------------------------------------------------


def test_the_sample_cell_shows_control_and_bidi_characters_as_escapes(tmp_path: Path) -> None:
    sid = "hostile\x1b[2J" + "abc\u202edcba\u202c" + "\nforged"
    run = run_of(tmp_path, [sample(sid, [msg("user", "Q"), msg("assistant", "A")])])
    assert raw_rows(run)[0]["sample_id"] == sid
    [cell] = wandb_rows(run)
    assert not RAW_CONTROL.search(cell) and "\n" not in cell
    assert cell == "hostile\\x1b[2Jabc\\u202edcba\\u202c\\nforged"


# ---- F5: the prompt column ends at the first turn a speaker said ------------------------------------------------


def test_prompt_column_stops_at_a_speakers_turn(tmp_path: Path) -> None:
    traj = "<|system|>\nS\n<|user|>\nQ\n<|solver|>\nA1\n<|judge|>\nOK\n"
    speakers = [msg("system", "S"), msg("user", "Q"), msg("solver", "A1"), msg("judge", "OK")]
    run = run_of(tmp_path, [sample("tr", None, trajectory=traj), sample("roles", speakers)])
    raw = {r["sample_id"]: r for r in raw_rows(run)}
    headers = re.findall(r"<\|(\w+)\|>\n([^\n]*)", raw["tr"]["trajectory"])
    given = [(role, text) for role, text in headers if role in ("system", "user")]
    said = [text for role, text in headers if role not in ("system", "user")]
    assert said == ["A1", "OK"]
    tables = wandb_rows(run)
    for sid in ("tr", "roles"):
        prompt = tables[sid]["prompt"]
        assert prompt == "\n\n".join(f"[{role}]\n{text}" for role, text in given), prompt
        assert all(text in tables[sid]["full_trajectory"] for text in said)
    assert [m["role"] for m in raw["roles"]["messages"]][2:] == ["solver", "judge"]


# ---- F7: exact figures, arguments that are not JSON, unknown data as JSON ------------------------------------------


def test_rewards_text_writes_figures_exactly(tmp_path: Path) -> None:
    row = sample(
        "r",
        [msg("user", "Q"), msg("assistant", "A")],
        reward=0.99999,
        reward_components=[{"name": "correct", "value": 0.30000000000000004}],
        roles=[{"role": "solver", "reward": 0.1234549, "kl": 1e-17}, {"role": "judge", "reward": 1.0, "kl": None}],
    )
    run = run_of(tmp_path, [row])
    raw = raw_rows(run)[0]
    assert raw["reward"] == 0.99999 and raw["roles"][0]["kl"] == 1e-17
    text = wandb_rows(run)["r"]["rewards"]
    assert text == "total 0.99999 | correct 0.30000000000000004 | solver 0.1234549 (kl 1e-17) | judge 1 (kl null)"
    assert float(text.split()[1]) == raw["reward"]


def test_arguments_that_are_not_json_are_flagged_in_wandb(tmp_path: Path) -> None:
    messages = [
        msg("user", "Q"),
        msg("assistant", tool_calls=[call("shell", "ls -la", "c1"), call("calc", '{"x": 1}', "c2")]),
    ]
    run = run_of(tmp_path, [sample("a", messages)])
    calls = raw_rows(run)[0]["messages"][1]["tool_calls"]
    text = wandb_rows(run)["a"]["full_trajectory"]
    for c in calls:
        try:
            json.loads(c["arguments"])
            valid = True
        except ValueError:
            valid = False
        head = f"-> tool call {c['name']} [{c['id']}]: "
        after = text[text.index(head) + len(head) :].split("\n-> ")[0]
        assert ("(arguments are not valid JSON)" in after) is (not valid), after
    assert text.count("(arguments are not valid JSON)") == 1


def test_unknown_data_is_written_as_json() -> None:
    from runlog.sinks.tables import table_row

    value = {"weird": [1, None, True, "x"]}
    row = {"step": 0, "sample_id": "d", "agent_trajectories": json.dumps(value)}
    cells, _ = table_row(row, "all", [], [], 20_000)
    text = cells[5]
    [data] = [line for line in text.split("\n") if line.startswith("(data) ")]
    assert json.loads(data.removeprefix("(data) ")) == value


def test_a_prompt_count_past_the_messages_is_every_turn():
    """``prompt_turns`` larger than the messages makes every message the prompt's, as the texts read it (the
    cell fell back to 'the turns before the first model turn')."""
    from runlog.render.model import Turn
    from runlog.sinks.tables import _prompt_turns

    turns = [Turn(role="user", content="q"), Turn(role="assistant", content="a"), Turn(role="user", content="r")]
    assert _prompt_turns(turns, 99) == turns
    assert _prompt_turns(turns, 2) == turns[:2]
    assert _prompt_turns(turns, None) == turns[:1]
