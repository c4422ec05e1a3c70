"""The fifth audit of the readers against the real dumps in ``../shared/realdata``: what a damaged or unusual
copy of a real file holds is said, never read silently as complete.

Each test reads the real file in place, or a copy of it changed in ``tmp_path``, counts what it expects with plain
``json`` / ``zipfile`` (no runlog), and compares that with what runlog reads and says. The tests skip when the
folder is absent.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog.errors import UsageError
from test_realdata_render import NEMO, VERIFIERS, real

POP_EVAL = "inspect_ai_popularity.eval"
FMT_EVAL = "inspect_ai_log_formats.eval"
POP_JSON = "inspect_ai_popularity_eval_log.json"
SEC_JSON = "inspect_ai_security_guide_eval_log.json"
GRADES = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}


# -- independent helpers (plain json / zipfile) ---------------------------------------------------------------
def rezip(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of the ``.eval`` zip ``src`` with each member passed through ``change`` (None: left out)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = change(item.filename, zin.read(item))
            if data is not None:
                zout.writestr(item.filename, data)
    return dst


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def sample_members(path: Path) -> list[str]:
    return sorted(n for n in members(path) if n.startswith("samples/") and n.endswith(".json"))


def value_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return GRADES.get(v) if isinstance(v, str) else None


def read(path: Path, **kw: Any) -> tuple[runlog.Run, list[dict[str, Any]], list[str], list[str]]:
    """(run, rows, problem messages, fidelity notes)."""
    run = runlog.open_run(path, **kw)
    rows = run.samples.collect().to_dicts()
    return run, rows, [p.message for p in run.problems], [n["message"] for n in run.ctx.fidelity]


def said(messages: list[str], needle: str) -> list[str]:
    return [m for m in messages if needle in m]


# -- 1: a .eval without header.json ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [POP_EVAL, FMT_EVAL])
def test_eval_without_header_is_said_and_its_samples_read(tmp_path: Path, name: str) -> None:
    """A running or crashed evaluation has ``_journal/start.json`` and no ``header.json`` (inspect_ai writes it
    last). It read as a complete log, with no word (``valid: no problems found.``)."""
    path = rezip(real(name), tmp_path / "run" / "log.eval", lambda n, d: None if n == "header.json" else d)
    assert "header.json" not in members(path) and "_journal/start.json" in members(path)
    expected = len(sample_members(path))
    run, rows, problems, _ = read(path)
    assert len(rows) == expected == run.files[0].rows
    [warning] = said(problems, "no header.json")
    assert [p.path for p in run.problems if "no header.json" in p.message] == ["log.eval"]
    assert "still running" in warning and "crashed" in warning and "_journal/start.json" in warning
    assert f"the {expected} sample(s) written so far" in warning
    # The real (finished) logs have their header: nothing said.
    assert not said(read(real(name))[2], "no header.json")


# -- 2: a sample the log lists without its member -------------------------------------------------------------
def test_eval_sample_missing_from_the_zip_is_said(tmp_path: Path) -> None:
    gone = "samples/5_epoch_1.json"
    path = rezip(real(POP_EVAL), tmp_path / "run" / "log.eval", lambda n, d: None if n == gone else d)
    zipped = members(path)
    listed = json.loads(zipped["summaries.json"])
    held = set(sample_members(path))
    missing = [s for s in listed if f"samples/{s['id']}_epoch_{s['epoch']}.json" not in held]
    assert len(listed) == 10 and [(s["id"], s["epoch"]) for s in missing] == [(5, 1)]
    _, rows, problems, _ = read(path)
    assert len(rows) == len(held) == 9
    [warning] = said(problems, "have no sample member")
    assert warning.startswith(f"{len(missing)} of the {len(listed)} sample(s) listed in summaries.json")
    assert "(5 epoch 1)" in warning and "left out" in warning
    assert not said(read(real(POP_EVAL))[2], "sample member")


def test_eval_sample_missing_without_summaries_is_counted_from_the_header(tmp_path: Path) -> None:
    drop = {"samples/5_epoch_1.json", "samples/7_epoch_1.json", "summaries.json", "_journal/summaries/1.json"}
    path = rezip(real(POP_EVAL), tmp_path / "run" / "log.eval", lambda n, d: None if n in drop else d)
    completed = json.loads(members(path)["header.json"])["results"]["completed_samples"]
    held = len(sample_members(path))
    assert (completed, held) == (10, 8)
    _, rows, problems, _ = read(path)
    assert len(rows) == held
    [warning] = said(problems, "completed sample(s)")
    assert f"the header counts {completed} completed sample(s) and the log holds {held}" in warning
    assert f"{completed - held} sample(s) are not in the log" in warning


# -- 3: the reward is the task's first scorer -----------------------------------------------------------------
def test_json_log_reward_is_the_tasks_first_scorer_not_the_first_key(tmp_path: Path) -> None:
    log = json.loads(real(POP_JSON).read_text())
    first = [s["name"] for s in log["eval"]["scorers"]][0]
    for s in log["samples"]:
        s["scores"] = {"aux": {"value": 0.25}, **s["scores"]}  # another scorer's score first in each sample
    path = tmp_path / "run" / "log.json"
    path.parent.mkdir()
    path.write_text(json.dumps(log))
    expected = {f"{s['id']}:{s['epoch']}": value_float(s["scores"][first]["value"]) for s in log["samples"]}
    assert first == "match" and set(expected.values()) == {0.0, 1.0}
    _, rows, _, _ = read(path)
    got = {r["sample_id"].split("/", 1)[1]: r["reward"] for r in rows}
    assert got == expected
    assert all({c["name"]: c["value"] for c in r["reward_components"]}["aux"] == 0.25 for r in rows)


def test_eval_reward_follows_results_scores_when_eval_names_no_scorers(tmp_path: Path) -> None:
    """``inspect_ai_log_formats.eval`` names its scorer in ``results.scores`` only (no ``eval.scorers``)."""

    def aux_first(name: str, data: bytes) -> bytes:
        if name.startswith("samples/"):
            s = json.loads(data)
            s["scores"] = {"aux": {"value": "C"}, **s["scores"]}
            return json.dumps(s).encode()
        return data

    src = real(FMT_EVAL)
    header = json.loads(members(src)["header.json"])
    assert not header["eval"].get("scorers") and [s["name"] for s in header["results"]["scores"]] == ["match"]
    path = rezip(src, tmp_path / "run" / "log.eval", aux_first)
    samples = [json.loads(members(path)[n]) for n in sample_members(path)]
    expected = [value_float(s["scores"]["match"]["value"]) for s in samples]
    assert expected == [0.0]
    _, rows, _, _ = read(path)
    assert [r["reward"] for r in rows] == expected


def test_reward_falls_back_to_the_first_score_when_the_log_names_no_scorer_and_says_so(tmp_path: Path) -> None:
    log = json.loads(real(POP_JSON).read_text())
    log["eval"].pop("scorers")
    log["results"]["scores"] = []
    for s in log["samples"]:
        s["scores"] = {"aux": {"value": 0.25}, **s["scores"]}
    path = tmp_path / "run" / "log.json"
    path.parent.mkdir()
    path.write_text(json.dumps(log))
    _, rows, _, notes = read(path)
    assert [r["reward"] for r in rows] == [0.25] * len(log["samples"])
    [note] = said(notes, "the log names no scorers")
    assert "each sample's reward is its first score" in note
    assert not said(read(real(POP_JSON))[3], "each sample's reward is its first score")


def test_sample_without_the_first_scorer_has_a_null_reward_said(tmp_path: Path) -> None:
    log = json.loads(real(SEC_JSON).read_text())
    first = log["eval"]["scorers"][0]["name"]
    log["samples"][1]["scores"] = {"aux": {"value": 1}}  # scored, but not by the task's first scorer
    path = tmp_path / "run" / "log.json"
    path.parent.mkdir()
    path.write_text(json.dumps(log))
    lacking = [s["id"] for s in log["samples"] if s.get("scores") and first not in s["scores"]]
    _, rows, problems, _ = read(path)
    assert sum(r["reward"] is None for r in rows) == len(lacking) == 1
    [warning] = said(problems, "without a score of the task's first scorer")
    assert warning.startswith(f"{len(lacking)} sample(s)") and repr(first) in warning
    assert f"sample {lacking[0]!r}" in warning


# -- 4: a verifiers reward-function value written as text -----------------------------------------------------
def test_verifiers_reward_function_value_as_text_is_said(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in real(VERIFIERS).read_text(encoding="utf-8").splitlines() if x.strip()]
    key = "correct_answer_reward_func"
    lines[2][key] = "0.5"
    path = tmp_path / "run" / "results.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    numbers = [float(r[key]) for r in lines if isinstance(r[key], (int, float))]
    texts = [n for n, r in enumerate(lines, 1) if not isinstance(r[key], (int, float))]
    assert texts == [3]
    _, rows, problems, _ = read(path)
    comps = [c["value"] for r in rows for c in r["reward_components"] or [] if c["name"] == key]
    assert sorted(comps) == sorted(numbers)
    [warning] = said(problems, "reward-function value(s) that are not numbers")
    assert warning.startswith(f"{len(texts)} reward-function value(s)")
    assert f"first: line {texts[0]}, {key} " in warning and "left out of reward_components" in warning
    assert json.loads(rows[2]["extra"])[key] == "0.5"
    # The reward itself written as text is said too (read as null), the same way.
    lines[2]["reward"] = "1.0"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert said(read(path)[2], "with a reward that is not a number")
    assert not said(read(real(VERIFIERS))[2], "not numbers")


# -- 5: a .eval whose only sample member is corrupt ----------------------------------------------------------
def test_eval_whose_only_sample_is_corrupt_names_it_not_a_stopped_writer(tmp_path: Path) -> None:
    src = real(FMT_EVAL)
    [only] = sample_members(src)
    path = rezip(src, tmp_path / "run" / "log.eval", lambda n, d: d[: len(d) // 2] if n == only else d)
    run, rows, problems, _ = read(path)
    assert rows == []
    errors = [p for p in run.problems if not p.is_warning]
    assert [(p.path, p.kind, p.message.split(":")[0]) for p in errors] == [("log.eval", "unreadable", only)]
    assert not said(problems, "a file with no rows")
    assert not run.files[0].readable  # no row of it could be read: not "a log without samples"


def test_jsonl_whose_every_line_is_damaged_is_no_stopped_writer(tmp_path: Path) -> None:
    raw = real(NEMO).read_bytes().split(b"\n")
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(line[: len(line) // 2] for line in raw if line.strip()) + b"\n")
    _, rows, problems, _ = read(path, layout="nemo_gym")
    assert rows == [] and len(said(problems, "not valid JSON")) == len([x for x in raw if x.strip()])
    assert not said(problems, "a file with no rows")


# -- 7: damaged first lines -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [VERIFIERS, NEMO])
def test_damaged_first_lines_do_not_hide_the_layout(tmp_path: Path, name: str) -> None:
    raw = [x for x in real(name).read_bytes().split(b"\n") if x.strip()]
    cut = 5 if name == VERIFIERS else 3  # the NeMo Gym dump has 5 lines: 2 left intact
    damaged = [line[: len(line) // 2] for line in raw[:cut]] + raw[cut:]
    path = tmp_path / "run" / "data.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(damaged) + b"\n")
    good = []
    for line in damaged:
        with contextlib.suppress(ValueError):
            good.append(json.loads(line))
    assert len(good) == len(raw) - cut > 0
    run, rows, _, _ = read(path)
    assert [f.layout for f in run.files] == ["verifiers" if name == VERIFIERS else "nemo_gym"]
    assert len(rows) == len(good)
    bad = [p.message for p in run.problems if p.kind == "bad_line"]
    assert [m.split(":")[0] for m in bad] == [f"line {n}" for n in range(1, cut + 1)]


def test_a_file_cut_in_its_first_line_says_so(tmp_path: Path) -> None:
    data = real(NEMO).read_bytes()
    first = data.split(b"\n")[0]
    path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_bytes(first[: len(first) // 2])
    with pytest.raises(ValueError):
        json.loads(path.read_bytes())
    with pytest.raises(UsageError) as exc:
        runlog.open_run(path.parent)
    message = str(exc.value)
    assert "rollouts.jsonl: its first line is not valid JSON" in message and "--layout" in message
    assert "match no known layout" not in message


def test_many_damaged_first_lines_are_counted_up_to_the_bound(tmp_path: Path) -> None:
    from runlog.formats.base import Candidate

    raw = [x for x in real(VERIFIERS).read_bytes().split(b"\n") if x.strip()]
    bound = Candidate.SNIFF_DAMAGED
    path = tmp_path / "run" / "results.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join([b"{cut"] * (bound + 3) + raw) + b"\n")
    with pytest.raises(UsageError) as exc:
        runlog.open_run(path.parent)
    assert f"its first {bound} non-empty lines are not valid JSON (lines 1-{bound}" in str(exc.value)
    run = runlog.open_run(path.parent, layout="verifiers")  # forced: the intact lines are read
    assert run.samples.collect().height == len(raw)


# -- 8: a tool result answering no call keeps its own name ----------------------------------------------------
def test_unanswered_tool_result_message_matches_what_is_kept(tmp_path: Path) -> None:
    log = json.loads(real(SEC_JSON).read_text())
    log["samples"][0]["messages"].append(
        {"role": "tool", "tool_call_id": "zz9", "function": "bash", "content": "done", "error": None}
    )
    path = tmp_path / "run" / "log.json"
    path.parent.mkdir()
    path.write_text(json.dumps(log))
    _, rows, problems, _ = read(path)
    [warning] = said(problems, "answers no tool call")
    kept = [m for r in rows for m in r["messages"] if m["tool_call_id"] == "zz9"]
    assert [m["name"] for m in kept] == ["bash"]
    assert "without the tool's name" not in warning
    assert "named only by the tool name the result itself carries" in warning


def test_a_json_document_over_several_lines_is_no_damaged_head(tmp_path: Path) -> None:
    """Only JSON-lines files are said to have a damaged head: a ``.json`` written over several lines (a
    pretty-printed ``*_metadata.json`` that is not vf-eval's) still matches no known layout, as before."""
    meta = json.loads(real("verifiers_math_python_gpt5nano_metadata.json").read_text())
    path = tmp_path / "run" / "other_metadata.json"
    path.parent.mkdir()
    path.write_text(json.dumps({k: v for k, v in meta.items() if k != "env"}, indent=2))
    with pytest.raises(UsageError) as exc:
        runlog.open_run(path.parent)
    assert "match no known layout" in str(exc.value) and "not valid JSON" not in str(exc.value)
