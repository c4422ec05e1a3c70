"""Damaged copies of the real dumps in ``../shared/realdata``: what a reader cannot map is said (one warning per
file and kind, with the count and the first place) and kept, and the rest of the file reads as before.

Each test mutates a copy of one real file in ``tmp_path``, counts the damage itself with plain ``json``, and
compares that count (and the values) with what runlog reads and says. The folder is not copied; the tests skip
when it is absent.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

import runlog
from test_realdata_render import NEMO, VERIFIERS, real

INSPECT_JSON = "inspect_ai_popularity_eval_log.json"
INSPECT_EVAL = "inspect_ai_popularity.eval"
ALL = (
    VERIFIERS,
    NEMO,
    INSPECT_JSON,
    "inspect_ai_security_guide_eval_log.json",
    INSPECT_EVAL,
    "inspect_ai_log_formats.eval",
)


def lines_of(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in real(name).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_lines(path: Path, recs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def read(path: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(rows, warning messages, fidelity notes) of one file."""
    run = runlog.open_run(path)
    rows = run.samples.collect().to_dicts()
    return rows, [p.message for p in run.problems], [n["message"] for n in run.ctx.fidelity]


def said(messages: list[str], needle: str) -> list[str]:
    return [m for m in messages if needle in m]


def _valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- clean files stay clean -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_real_files_have_no_new_warnings(name: str) -> None:
    _, problems, _ = read(real(name))
    # The popularity JSON log is of a cancelled evaluation: that is the one thing to say about these files.
    assert [m for m in problems if "status is 'cancelled'" not in m] == []


# -- 1, 2: NeMo Gym reward components ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["bad", None])
def test_nemo_component_not_a_number_is_said_and_kept(tmp_path: Path, bad: Any) -> None:
    recs = lines_of(NEMO)
    for i in (2, 4):  # lines 3 and 5; the top-level copy too, as the resources server writes it
        recs[i]["reward_components"]["format"] = bad
        recs[i]["format"] = bad
    path = write_lines(tmp_path / "rollouts.jsonl", recs)
    expected_bad = [
        (n, k)
        for n, r in enumerate(recs, 1)
        for k, v in r["reward_components"].items()
        if isinstance(v, bool) or not isinstance(v, (int, float))
    ]
    rows, problems, notes = read(path)
    [warning] = said(problems, "reward component value(s) that are not numbers")
    assert warning.startswith(f"{len(expected_bad)} reward component value(s)")
    assert f"first: line {expected_bad[0][0]}, {expected_bad[0][1]}: {json.dumps(bad)}" in warning
    assert said(notes, "reward_components.format")
    for n, (rec, row) in enumerate(zip(recs, rows, strict=True), 1):
        numeric = {k: float(v) for k, v in rec["reward_components"].items() if k not in {k for _, k in expected_bad}}
        got = {c["name"]: c["value"] for c in row["reward_components"] or []}
        extra = json.loads(row["extra"])
        if any(line == n for line, _ in expected_bad):
            assert got == numeric
            # The value is kept: under reward_components.<name>, and its top-level copy stays in `extra`.
            assert extra["reward_components.format"] == bad and extra["format"] == bad
        else:
            assert got == {k: float(v) for k, v in rec["reward_components"].items()}
            assert "format" not in extra


def test_nemo_components_not_an_object_is_said_and_kept(tmp_path: Path) -> None:
    recs = lines_of(NEMO)
    recs[2]["reward_components"] = "correctness=1"
    path = write_lines(tmp_path / "rollouts.jsonl", recs)
    not_object = [n for n, r in enumerate(recs, 1) if not isinstance(r["reward_components"], dict)]
    rows, problems, _ = read(path)
    [warning] = said(problems, "reward_components is not an object")
    assert warning.startswith(f"{len(not_object)} line(s)") and f"first: line {not_object[0]}, a JSON string" in warning
    row = rows[not_object[0] - 1]
    assert row["reward_components"] is None
    assert json.loads(row["extra"])["reward_components"] == "correctness=1"
    assert [r["reward_components"] is not None for r in rows].count(True) == len(recs) - len(not_object)


# -- 3: verifiers line without a prompt ----------------------------------------------------------------------
def test_verifiers_line_without_prompt_is_said_and_groups_hold(tmp_path: Path) -> None:
    """The real file's ``id`` is not the example's (prompt groups by prompt): the line without a prompt joins
    no group, and every group keeps its id except that of the prompt whose first line it was (its first row
    is gone: numbers follow first appearance)."""
    recs = lines_of(VERIFIERS)
    before, _, _ = read(real(VERIFIERS))
    lost = json.dumps(recs[3]["prompt"])
    del recs[3]["prompt"]
    path = write_lines(tmp_path / "results.jsonl", recs)
    missing = [n for n, r in enumerate(recs, 1) if r.get("prompt") is None]
    rows, problems, _ = read(path)
    [warning] = said(problems, "without a prompt")
    assert warning.startswith(f"{len(missing)} line(s)") and f"first: line {missing[0]}" in warning
    assert rows[3]["group_id"] is None
    for rec, old, new in zip(recs, before, rows, strict=True):
        if "prompt" in rec and json.dumps(rec["prompt"]) != lost:
            assert new["group_id"] == old["group_id"]
    # a group is still one prompt
    by_group: dict[str, set[str]] = {}
    for rec, row in zip(recs, rows, strict=True):
        if row["group_id"] is not None:
            by_group.setdefault(row["group_id"], set()).add(json.dumps(rec["prompt"]))
    assert all(len(p) == 1 for p in by_group.values())


def test_verifiers_line_without_prompt_keeps_example_ids(tmp_path: Path) -> None:
    """Where ``id`` names the example (one prompt per id), a line without a prompt does not turn the whole file
    into prompt groups: every row keeps its ``id`` group."""
    recs = lines_of(VERIFIERS)
    number: dict[str, int] = {}
    for r in recs:
        r["id"] = number.setdefault(json.dumps(r["prompt"]), len(number))
    expected = [str(r["id"]) for r in recs]
    del recs[3]["prompt"]
    path = write_lines(tmp_path / "results.jsonl", recs)
    rows, problems, _ = read(path)
    assert len(said(problems, "1 line(s) without a prompt (first: line 4)")) == 1
    assert [r["group_id"] for r in rows] == expected


# -- 4, 5: inspect_ai samples without id or messages ---------------------------------------------------------
def test_inspect_sample_without_id_gets_its_place(tmp_path: Path) -> None:
    log = json.loads(real(INSPECT_JSON).read_text())
    ids = [s["id"] for s in log["samples"]]
    del log["samples"][1]["id"]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    rows, problems, _ = read(path)
    [warning] = said(problems, "without an id")
    assert warning.startswith("1 sample(s)") and "first: sample 2 of the log" in warning
    task = log["eval"]["task"]
    got = sorted(r["sample_id"] for r in rows)
    want = sorted([f"{task}/{i}:1" for n, i in enumerate(ids) if n != 1] + [f"{task}/no-id-2:1"])
    assert got == want and not any("None" in s for s in got)


def test_inspect_sample_without_messages_keeps_the_answer(tmp_path: Path) -> None:
    log = json.loads(real(INSPECT_JSON).read_text())
    del log["samples"][1]["messages"]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    without = [s for s in log["samples"] if not s.get("messages")]
    rows, problems, _ = read(path)
    [warning] = said(problems, "without messages")
    assert warning.startswith(f"{len(without)} sample(s)") and f"sample {without[0]['id']!r} epoch 1" in warning
    [row] = [r for r in rows if r["sample_id"].endswith(f"/{without[0]['id']}:1")]
    answer = without[0]["output"]["choices"][0]["message"]["content"]
    assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert assistant == [answer] and row["completion"] == answer
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]


# -- 6: tool-call arguments that are not JSON ----------------------------------------------------------------
def test_nemo_bad_arguments_are_said(tmp_path: Path) -> None:
    recs = lines_of(NEMO)
    for i in (2, 3):
        for it in recs[i]["response"]["output"]:
            if it.get("type") == "function_call":
                it["arguments"] = it["arguments"][:-1]  # cut short
    path = write_lines(tmp_path / "rollouts.jsonl", recs)
    bad = [
        (n, it["name"])
        for n, r in enumerate(recs, 1)
        for it in [*r["responses_create_params"]["input"], *r["response"]["output"]]
        if it.get("type") == "function_call" and not _valid_json(it["arguments"])
    ]
    rows, problems, _ = read(path)
    [warning] = said(problems, "arguments are not valid JSON")
    assert warning.startswith(f"{len(bad)} tool call(s)") and f"first: line {bad[0][0]}, {bad[0][1]}" in warning
    kept = [c["arguments"] for r in rows for m in r["messages"] for c in m["tool_calls"] or []]
    assert sum(not _valid_json(a) for a in kept) == len(bad)


def test_verifiers_bad_arguments_and_cut_tool_call(tmp_path: Path) -> None:
    recs = lines_of(VERIFIERS)
    original = recs[3]["completion"][0]["tool_calls"][0]
    call = json.loads(original)
    recs[3]["completion"][0]["tool_calls"][0] = original[:-12]  # the entry's JSON text cut short
    call5 = json.loads(recs[4]["completion"][0]["tool_calls"][0])
    call5["function"]["arguments"] = call5["function"]["arguments"][:-2]  # valid entry, arguments cut
    recs[4]["completion"][0]["tool_calls"][0] = json.dumps(call5)
    path = write_lines(tmp_path / "results.jsonl", recs)
    cut, bad_args = [], []
    for n, r in enumerate(recs, 1):
        for m in r["completion"]:
            for tc in m.get("tool_calls") or []:
                if not _valid_json(tc):
                    cut.append(n)
                elif not _valid_json(json.loads(tc)["function"]["arguments"]):
                    bad_args.append(n)
    rows, problems, _ = read(path)
    [w_cut] = said(problems, "JSON text is cut short")
    assert w_cut.startswith(f"{len(cut)} tool call(s)") and f"first: line {cut[0]}" in w_cut
    [w_args] = said(problems, "arguments are not valid JSON")
    assert w_args.startswith(f"{len(bad_args)} tool call(s)") and f"first: line {bad_args[0]}, python" in w_args
    # the cut entry is the call it was: id, name and arguments read back; its result keeps the tool's name
    msgs = rows[3]["messages"]
    [got] = [c for m in msgs for c in m["tool_calls"] or [] if c["id"] == call["id"]]
    assert got == {"id": call["id"], "name": call["function"]["name"], "arguments": call["function"]["arguments"]}
    [result] = [m for m in msgs if m["role"] == "tool" and m["tool_call_id"] == call["id"]]
    assert result["name"] == call["function"]["name"]


def test_inspect_bad_arguments_are_said(tmp_path: Path) -> None:
    log = json.loads(real(INSPECT_JSON).read_text())
    call = {"id": "c1", "function": "lookup", "arguments": '{"q": "x"', "type": "function", "parse_error": "bad"}
    log["samples"][1]["messages"].append({"role": "assistant", "content": "", "tool_calls": [call]})
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    bad = [
        (s["id"], tc["function"])
        for s in log["samples"]
        for m in s["messages"]
        for tc in m.get("tool_calls") or []
        if isinstance(tc["arguments"], str) and not _valid_json(tc["arguments"])
    ]
    _, problems, _ = read(path)
    [warning] = said(problems, "arguments are not valid JSON")
    assert warning.startswith(f"{len(bad)} tool call(s)") and f"sample {bad[0][0]!r} epoch 1, lookup" in warning


# -- 7: unanswerable tool results, unknown log fields --------------------------------------------------------
def test_nemo_result_answering_no_call_is_said(tmp_path: Path) -> None:
    recs = lines_of(NEMO)
    for it in recs[2]["response"]["output"]:
        if it.get("type") == "function_call_output":
            it["call_id"] = "nonexistent"
    path = write_lines(tmp_path / "rollouts.jsonl", recs)
    orphans = []
    for n, r in enumerate(recs, 1):
        items = [*r["responses_create_params"]["input"], *r["response"]["output"]]
        calls = {it["call_id"] for it in items if it.get("type") == "function_call"}
        orphans += [n for it in items if it.get("type") == "function_call_output" and it["call_id"] not in calls]
    _, problems, _ = read(path)
    [warning] = said(problems, "answers no tool call")
    assert warning.startswith(f"{len(orphans)} tool result(s)") and f"first: line {orphans[0]}" in warning


def test_inspect_unknown_log_fields_are_noted(tmp_path: Path) -> None:
    log = json.loads(real(INSPECT_JSON).read_text())
    log["zz_unknown"] = {"x": 1}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    _, _, notes = read(path)
    assert said(notes, "log fields not mapped: zz_unknown")
    _, _, clean = read(real(INSPECT_JSON))
    assert not said(clean, "log fields not mapped")

    src = real(INSPECT_EVAL)
    out = tmp_path / "log.eval"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "header.json":
                data = json.dumps({**json.loads(data), "zz_unknown": 1}).encode()
            zout.writestr(item.filename, data)
    _, _, notes = read(out)
    assert said(notes, "log fields not mapped: zz_unknown")
