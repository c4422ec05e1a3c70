"""Audit 19 (metrics): whose turns ``--text role:NAME`` reads, and what the notes say.

1. ``--text role:assistant`` read the final model turn of any speaker whose role field said ``assistant``, named
   judges and solvers included, while ``--by role`` labels ``assistant`` only the model turns without a name: the
   same label meant other texts (12 texts, unique_frac 0.92 against 13 texts, 0.54). ``role:NAME`` now reads the
   turns ``--by role`` puts in the row NAME.
2. docs/metrics.md said ``role:NAME`` reads "the last assistant turn with content"; the code reads a final turn
   without content as the empty text (as ``auto``): the doc says what the code does.
3. ``--by role`` split the model turns without a name by the spelling of their role (rows ``Model`` and
   ``assistant``), while the policy's election counts them as one speaker: one row now.
4. ``metrics format --spec tool-call-json --tools pythn`` failed every call as unknown_tool without a word that
   none of the tools called is listed.
5. The note on the rows measured over all their texts said ``group None`` for the texts in no prompt group.

The expected texts are read from the rows written (plain Python over the messages), or the run's Parquet read with
pyarrow, never from runlog's own helpers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import runlog
from runlog import open_run
from runlog.analysis.texts import format_per_sample, texts_frame

from conftest import SAMPLE_RUNS

MODEL_ROLES = {"assistant", "model", "agent"}
U = {"role": "user", "content": "q"}


def _a(content: str | None, **kw: object) -> dict:
    return {"role": "assistant", "content": content, **kw}


CALL = [{"id": "c", "name": "f", "arguments": "{}"}]
# An unnamed policy beside a named judge, with the edge cases of the audit's run: the messages per sample.
SAMPLES: dict[str, list[dict] | None] = {
    "cut_off": [U, _a("<think>a</think><answer>1</answer>"), U, _a("", reasoning="R")],
    "only_call": [U, _a("\n\n", tool_calls=CALL), {"role": "tool", "content": "t", "tool_call_id": "c"}],
    "empty": [],
    "null": None,
    "model_role": [U, {"role": "Model", "content": "M says"}],
    "null_final": [U, _a("first"), _a(None)],
    "judge_after": [U, _a("pol"), _a("judge says", name="judge")],
    "call_then_text": [U, _a("x", tool_calls=CALL), {"role": "tool", "content": "r", "tool_call_id": "c"}, _a("end")],
    "judge_only": [U, _a("only judge", name="judge")],
    **{f"plain{k}": [U, _a(f"plain {k}"), _a("j", name="judge")] for k in range(6)},
}


def _write(root: Path, samples: dict[str, list[dict] | None]) -> Path:
    with runlog.RunWriter(root, name=root.name) as w:
        w.log_samples(0, [{"sample_id": s, "group_id": "g", "reward": 0.5, "messages": m} for s, m in samples.items()])
    return root


def _words(m: dict) -> bool:
    return bool(re.search(r"\S", m.get("content") or ""))


def _last_turn(messages: list[dict] | None, mine) -> str | None:
    """A speaker's text as docs/metrics.md defines ``role:NAME``: its final turn, even empty, passing over the tool
    calls without words; None where it has no such turn."""
    turns = [m for m in messages or [] if mine(m) and (_words(m) or not m.get("tool_calls"))]
    return (turns[-1].get("content") or "") if turns else None


def _unnamed(m: dict) -> bool:
    return m.get("name") is None and str(m.get("role")).lower() in MODEL_ROLES


def _truth(samples: dict[str, list[dict] | None], mine) -> dict[str, str]:
    out = {s: _last_turn(m, mine) for s, m in samples.items()}
    return {s: t for s, t in out.items() if t is not None}


def _texts(frame) -> dict[str, str]:
    return dict(zip(frame["sample_id"], frame["text"], strict=True))


def test_role_assistant_reads_the_unnamed_turns_by_role_labels_assistant(tmp_path):
    """``role:assistant`` reads the final turn of the model turns without a name (the judge's final word is not
    the assistant's), the texts of ``--by role``'s ``assistant`` row; ``role:judge`` reads the judge's."""
    run = open_run(_write(tmp_path / "run", SAMPLES))
    want = _truth(SAMPLES, _unnamed)
    assert want["judge_after"] == "pol" and "judge_only" not in want  # the case the audit found
    got = texts_frame(run, "role:assistant").drop_nulls("text")
    assert _texts(got) == want
    per_role = texts_frame(run, "auto", per_role=True)
    assert _texts(per_role.filter(per_role["role"] == "assistant").drop_nulls("text")) == want
    judge = _texts(texts_frame(run, "role:judge").drop_nulls("text"))
    assert judge == _truth(SAMPLES, lambda m: m.get("name") == "judge")


def test_role_assistant_and_by_role_agree_in_the_cli(cli, tmp_path):
    """``metrics diversity --over set --by role``'s assistant row and ``--text role:assistant`` count the same
    texts, with the same unique_frac, both those of the texts written."""
    root = _write(tmp_path / "run", SAMPLES)
    want = list(_truth(SAMPLES, _unnamed).values())
    rows = {}
    for extra in ([], ["--text", "role:assistant"]):
        res = cli("metrics", "diversity", root, "--over", "set", "--by", "role", "--format", "json", *extra)
        assert res.exit_code == 0, res.output
        [rows[bool(extra)]] = [r for r in json.loads(res.stdout) if r["role"] == "assistant"]
    for row in rows.values():
        assert row["texts"] == len(want)
        assert row["unique_frac"] == pytest.approx(len(set(want)) / len(want), abs=1e-12)


def test_role_assistant_on_a_run_of_named_speakers_reads_none(cli):
    """debate_grpo names every model turn (solver, verifier, judge): no model turn without a name, so
    ``--text role:assistant`` finds none (a usage error naming the speakers), never the judge's texts pooled."""
    table = pq.read_table(next((SAMPLE_RUNS / "debate_grpo").rglob("*.parquet")), columns=["messages"])
    turns = [m for ms in table.column("messages").to_pylist() for m in ms or []]
    assert turns and not [m for m in turns if _unnamed(m)]
    args = ["--split", "train", "--steps", "0", "--text", "role:assistant"]
    res = cli("metrics", "diversity", SAMPLE_RUNS / "debate_grpo", *args)
    assert res.exit_code == 2, res.output
    assert "no message of the selected samples is spoken by 'assistant'" in res.stderr


def test_tool_call_spec_with_role_assistant_checks_the_unnamed_turns_only(tmp_path):
    """``--spec tool-call-json --text role:assistant`` checks the messages of the model turns without a name, not
    a named judge's call (which it read before)."""
    bad = [{"id": "j", "name": "", "arguments": "{}"}]  # a judge's call without a name
    samples = {
        "a": [U, _a("", tool_calls=CALL), _a("", name="judge", tool_calls=bad)],
        "b": [U, _a("ok"), _a("", name="judge", tool_calls=bad)],
    }
    run = open_run(_write(tmp_path / "run", samples))
    per = format_per_sample(run, "tool-call-json", text="role:assistant")
    want = [(s, i) for s, ms in samples.items() for i, m in enumerate(ms) if _unnamed(m)]
    assert list(zip(per["sample_id"], per["turn"], strict=True)) == want
    assert per["passed"].all()


def test_role_names_an_empty_final_turn_as_the_empty_text_and_the_doc_says_so(tmp_path):
    """A judge whose final turn is empty or null: ``role:judge`` reads "" (its final word, as ``auto`` reads a
    generation cut off), not its earlier words; docs/metrics.md's ``role:NAME`` row says so."""
    judge = {"role": "assistant", "name": "judge"}
    samples = {
        "a": [U, {**judge, "content": "judge says"}, {**judge, "content": ""}],
        "b": [U, {**judge, "content": "judge says"}, {**judge, "content": None}],
    }
    run = open_run(_write(tmp_path / "run", samples))
    assert (
        _texts(texts_frame(run, "role:judge"))
        == _truth(samples, lambda m: m.get("name") == "judge")
        == {
            "a": "",
            "b": "",
        }
    )
    doc = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    [row] = [line for line in doc.splitlines() if line.startswith("| `role:NAME` |")]
    assert "with content" not in row
    assert "even empty" in row and "the empty text" in row


def test_unnamed_turns_are_one_row_however_their_role_is_spelled(cli, tmp_path):
    """The model turns without a name, ``Model`` in one sample and ``assistant`` in others, are one speaker in the
    election and one row of ``--by role`` (before: rows ``Model`` and ``assistant``); ``--text messages`` labels
    them alike, and ``role:Model`` reads them as ``role:assistant`` does."""
    samples = {
        "m": [U, {"role": "Model", "content": "M says"}],
        **{f"a{k}": [U, _a(f"a says {k}"), _a("verdict", name="judge")] for k in range(3)},
    }
    root = _write(tmp_path / "run", samples)
    res = cli("metrics", "diversity", root, "--over", "set", "--by", "role", "--format", "json")
    assert res.exit_code == 0, res.output
    got = {r["role"]: r["texts"] for r in json.loads(res.stdout)}
    unnamed = _truth(samples, _unnamed)
    assert got == {"assistant": len(unnamed), "judge": 3}
    run = open_run(root)
    labels = Counter(texts_frame(run, "messages")["role"].to_list())
    written = [m for ms in samples.values() for m in ms]
    assert labels["assistant"] == sum(map(_unnamed, written)) and "Model" not in labels
    assert _texts(texts_frame(run, "role:Model").drop_nulls("text")) == unnamed


def test_the_speakers_a_role_typo_error_lists_are_the_labels_role_can_name(cli, tmp_path):
    """``--text role:NAME`` naming no speaker lists the run's speakers as ``--by role`` labels them: the unnamed
    model turns once, as ``assistant`` (before: ``Model`` and ``assistant``, two names for one speaker), and a named
    judge by its name."""
    samples = {
        "m": [U, {"role": "Model", "content": "M says"}],
        "a": [U, _a("a says"), _a("verdict", name="judge")],
    }
    root = _write(tmp_path / "run", samples)
    res = cli("metrics", "diversity", root, "--text", "role:jugde")
    assert res.exit_code == 2, res.output
    said = re.search(r"messages are spoken by ([^(]*)\(", res.stderr)
    assert said is not None, res.stderr
    listed = [w.strip() for w in said.group(1).split(",")]
    written = [m for ms in samples.values() for m in ms]  # no prompt_turns: every message is generated
    truth = dict.fromkeys(m.get("name") or ("assistant" if _unnamed(m) else m["role"]) for m in written)
    assert listed == list(truth) == ["user", "assistant", "judge"], res.stderr


def _tool_run(root: Path) -> tuple[Path, Counter]:
    def call(name: str, i: int) -> dict:
        return {"id": f"c{i}", "name": name, "arguments": json.dumps({"q": i})}

    samples = {
        f"s{i}": [U, _a("", tool_calls=[call("python", i)] + ([call("search", i + 100)] if i % 2 else []))]
        for i in range(5)
    }
    called = Counter(c["name"] for ms in samples.values() for m in ms for c in m.get("tool_calls") or [])
    return _write(root, samples), called


def test_tools_naming_none_of_the_tools_called_is_said(cli, tmp_path):
    """``--tools pythn``: every call fails as unknown_tool; a note says that none of the tools called is listed,
    names them with their calls (from the rows written), and offers 'python'."""
    root, called = _tool_run(tmp_path / "run")
    res = cli("metrics", "format", root, "--spec", "tool-call-json", "--tools", "pythn", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    assert row["adherence"] == 0.0
    [note] = [line for line in res.stderr.splitlines() if line.startswith("note: --tools pythn")]
    assert "none of the tools the checked messages call is listed" in note
    for name, n in called.items():
        assert f"{name} ({n})" in note
    assert "did you mean 'python'?" in note


def test_tools_naming_one_tool_called_gives_no_such_note(cli, tmp_path):
    """``--tools python``: the search calls fail as unknown_tool, as asked; no note."""
    root, called = _tool_run(tmp_path / "run")
    res = cli("metrics", "format", root, "--spec", "tool-call-json", "--tools", "python", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    assert row["failed/unknown_tool"] == called["search"]  # one search call a message at most
    assert "--tools python" not in res.stderr


def test_the_row_of_texts_in_no_group_is_said_in_words(cli, tmp_path):
    """``--by group``: the row of the texts with neither a group id nor a prompt is named in words in the note,
    not ``group None``."""
    rows = [{"sample_id": f"a{k}", "group_id": "g1", "prompt": "Q", "completion": "same"} for k in range(4)]
    rows += [{"sample_id": f"c{k}", "group_id": None, "prompt": None, "completion": f"lone {k}"} for k in range(3)]
    with runlog.RunWriter(tmp_path / "run", name="run") as w:
        w.log_samples(0, [{**r, "reward": 0.1} for r in rows])
    res = cli("metrics", "diversity", tmp_path / "run", "--by", "group", "--format", "json")
    assert res.exit_code == 0, res.output
    assert [r["texts"] for r in json.loads(res.stdout) if r["group"] is None] == [3]
    [note] = [line for line in res.stderr.splitlines() if "rows with no groups" in line]
    assert "group None" not in note
    assert "group (no group id or prompt)" in note
