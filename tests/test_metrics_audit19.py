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
6. ``--text role:model`` (``role:agent``, ``role:Assistant``) also read the model turns without a name beside a
   speaker named ``model`` (4 texts, unique_frac 0.75, against the ``model`` row's 3 texts, 0.667): it reads that
   speaker alone, and the turns without a name only where no speaker of the run is named so (said in a note).
7. The speakers a ``role:NAME`` typo error listed included those ``role:NAME`` can never read (``user``, a tool
   result named ``python``, a user named ``alice``), and it suggested the very name asked (``role:python``: "did
   you mean 'python'?").
8. docs/metrics.md said ``role:NAME`` reads ``--by role``'s row NAME, though with ``auto`` texts a speaker in the
   role field has no row and with ``messages`` texts the rows of users and tools are none ``role:`` reads.

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


def _listed(stderr: str) -> list[str]:
    """The speakers a ``role:NAME`` usage error lists (``the turns it can read there are spoken by A, B``)."""
    said = re.search(r"the turns it can read there are spoken by ([^;(]*)", stderr)
    assert said is not None, stderr
    return [w.strip() for w in said.group(1).split(",")]


def _readable(m: dict) -> bool:
    """A message ``role:NAME`` can read: not the model's input (docs/metrics.md lists those roles)."""
    return str(m.get("role")).lower() not in {"user", "human", "system", "developer", "tool", "function", "ipython"}


def _label(m: dict) -> str:
    return m.get("name") or ("assistant" if _unnamed(m) else m["role"])


def test_the_speakers_a_role_typo_error_lists_are_the_labels_role_can_name(cli, tmp_path):
    """``--text role:NAME`` naming no speaker lists the run's speakers as ``--by role`` labels them: the unnamed
    model turns once, as ``assistant`` (before: ``Model`` and ``assistant``, two names for one speaker), and a named
    judge by its name; never ``user``, whose messages ``role:NAME`` never reads (before: listed first)."""
    samples = {
        "m": [U, {"role": "Model", "content": "M says"}],
        "a": [U, _a("a says"), _a("verdict", name="judge")],
    }
    root = _write(tmp_path / "run", samples)
    res = cli("metrics", "diversity", root, "--text", "role:jugde")
    assert res.exit_code == 2, res.output
    assert "did you mean 'judge'?" in res.stderr
    written = [m for ms in samples.values() for m in ms]  # no prompt_turns: every message is generated
    truth = dict.fromkeys(_label(m) for m in written if _readable(m))
    assert _listed(res.stderr) == list(truth) == ["assistant", "judge"], res.stderr


# A debate with a user named alice and a tool result named python (the names a typo error listed and offered).
INPUT_NAMED = {
    f"s{k}": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": f"question {k}", "name": "alice"},
        _a("", tool_calls=[{"id": f"c{k}", "name": "python", "arguments": "{}"}], name="solver"),
        {"role": "tool", "content": f"out {k}", "name": "python", "tool_call_id": f"c{k}"},
        _a(f"solver answer {k}", name="solver"),
        {"role": "agent_0", "content": f"agent0 {k % 2}"},
    ]
    for k in range(3)
}


@pytest.mark.parametrize("name", ["python", "alice", "user", "system"])
def test_a_role_naming_only_input_messages_is_said_so_and_never_offered(cli, tmp_path, name):
    """``role:python`` (a tool result named after its tool), ``role:alice`` (a user named so), ``role:user``:
    ``role:NAME`` never reads those messages, so the error says so, lists only the speakers it can read (from the
    messages written) and offers no name; before it listed them and asked "did you mean 'python'?"."""
    root = _write(tmp_path / "run", INPUT_NAMED)
    res = cli("metrics", "diversity", root, "--text", f"role:{name}")
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "did you mean" not in res.stderr
    assert "the model's input" in res.stderr
    written = [m for ms in INPUT_NAMED.values() for m in ms]
    assert _listed(res.stderr) == list(dict.fromkeys(_label(m) for m in written if _readable(m)))
    assert _listed(res.stderr) == ["solver", "agent_0"]


def test_a_role_typo_error_never_offers_the_name_asked(cli, tmp_path):
    """A planner whose every turn is a tool call without words has no text: ``role:planner`` reads none, and the
    error says why instead of "did you mean 'planner'?" (the name asked)."""
    call = [{"id": "c", "name": "search", "arguments": "{}"}]
    samples = {
        f"s{k}": [U, _a("\n\n", tool_calls=call, name="planner"), _a(f"ans {k}", name="solver")] for k in range(2)
    }
    root = _write(tmp_path / "run", samples)
    res = cli("metrics", "diversity", root, "--text", "role:planner")
    assert res.exit_code == 2, res.output
    assert "did you mean 'planner'" not in res.stderr
    assert "tool call without words" in res.stderr
    assert _listed(res.stderr) == ["planner", "solver"]


# An unnamed policy beside a speaker named ``model`` (a critic), silent in one sample.
NAMED_MODEL = {
    f"s{k}": [U, _a(f"policy {k}"), *([_a(f"critic {k % 2}", name="model")] if k < 3 else [])] for k in range(4)
}


def _diversity(cli, root: Path, *args: str) -> tuple[list[dict], str]:
    res = cli("metrics", "diversity", root, "--over", "set", "--format", "json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout), res.stderr


def test_role_model_reads_the_speaker_named_model_alone(cli, tmp_path):
    """``--text role:model`` reads the turns of the speaker named ``model``, the ``--by role`` row ``model``
    (3 texts, unique_frac 2/3 from the rows written), never the unnamed policy's turns beside it (before: 4 texts,
    0.75, reading "policy 3" where the critic is silent); no note of the turns without a name."""
    root = _write(tmp_path / "run", NAMED_MODEL)
    want = list(_truth(NAMED_MODEL, lambda m: m.get("name") == "model").values())
    assert want == ["critic 0", "critic 1", "critic 0"]
    rows, _ = _diversity(cli, root, "--by", "role")
    [row] = [r for r in rows if r["role"] == "model"]
    [got], err = _diversity(cli, root, "--text", "role:model")
    for r in (row, got):
        assert r["texts"] == len(want)
        assert r["unique_frac"] == pytest.approx(len(set(want)) / len(want), abs=1e-12)
    assert "without a name" not in err
    run = open_run(root)
    assert _texts(texts_frame(run, "role:model").drop_nulls("text")) == _truth(
        NAMED_MODEL, lambda m: m.get("name") == "model"
    )
    per = format_per_sample(run, "tool-call-json", text="role:model")
    assert sorted(per["sample_id"].to_list()) == ["s0", "s1", "s2"]


@pytest.mark.parametrize("name", ["model", "Agent", "Assistant"])
def test_a_model_role_spelled_otherwise_reads_the_unnamed_turns_where_none_is_named_so_and_says_it(cli, tmp_path, name):
    """Where no speaker of the run is named NAME, ``role:model`` (``role:Agent``, ``role:Assistant``) reads the
    model turns without a name, the texts of ``role:assistant``, and a note says so."""
    samples = {f"s{k}": [U, {"role": "Model" if k % 2 else "assistant", "content": f"p {k % 3}"}] for k in range(6)}
    root = _write(tmp_path / "run", samples)
    want = list(_truth(samples, _unnamed).values())
    [got], err = _diversity(cli, root, "--text", f"role:{name}")
    assert got["texts"] == len(want)
    assert got["unique_frac"] == pytest.approx(len(set(want)) / len(want), abs=1e-12)
    [note] = [line for line in err.splitlines() if line.startswith(f"note: --text role:{name}:")]
    assert f"no speaker of the run is named {name}" in note and "--by role labels assistant" in note


def test_whether_role_model_names_the_unnamed_turns_is_decided_over_the_run(cli, tmp_path):
    """A speaker named ``model`` at step 1 only: ``role:model`` reads it, at every step, whatever ``--steps``
    picks; at step 0, where it is silent, it reads nothing (a usage error), never the unnamed turns there (a step's
    texts would differ with the steps asked)."""
    root = tmp_path / "run"
    with runlog.RunWriter(root, name="run") as w:
        for step in (0, 1):
            w.log_samples(
                step,
                [
                    {
                        "sample_id": f"s{k}",
                        "group_id": "g",
                        "reward": 0.5,
                        "messages": [U, _a(f"policy {k}"), *([_a(f"critic {k}", name="model")] if step else [])],
                    }
                    for k in range(3)
                ],
            )
    rows, _ = _diversity(cli, root, "--text", "role:model", "--by", "step")
    assert [(r["step"], r["texts"]) for r in rows if r["texts"]] == [(1, 3)]
    res = cli("metrics", "diversity", root, "--steps", "0", "--text", "role:model")
    assert res.exit_code == 2, res.output
    assert "no message of the selected samples is spoken by 'model'" in res.stderr


def test_the_doc_says_which_by_role_rows_role_name_reads_and_the_cli_agrees(cli, tmp_path):
    """docs/metrics.md no longer says ``role:NAME`` reads ``--by role``'s row NAME whatever the text: with ``auto``
    texts a speaker in the role field (``agent_0``) has no row while ``role:agent_0`` reads its turns, and with
    ``messages`` texts the rows of user and tool messages are none ``role:`` reads; the CLI agrees."""
    doc = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    assert "So `--text role:NAME` reads the texts of `--by role`'s row NAME" not in doc
    [auto] = [b for b in doc.split("\n- ") if b.startswith("`--text auto --by role`")]
    assert '{"role": "agent_0"}' in auto and "has no row there" in auto
    [messages] = [b for b in doc.split("\n- ") if b.startswith("`--text messages --by role`")]
    assert "a user's" in messages and "none that `role:NAME` reads" in messages
    root = _write(tmp_path / "run", INPUT_NAMED)
    auto_rows, _ = _diversity(cli, root, "--by", "role")
    assert "agent_0" not in {r["role"] for r in auto_rows}
    [agent], _ = _diversity(cli, root, "--text", "role:agent_0")
    want = list(_truth(INPUT_NAMED, lambda m: m.get("role") == "agent_0").values())
    assert agent["texts"] == len(want) == 3
    message_rows, _ = _diversity(cli, root, "--text", "messages", "--by", "role")
    for unread in ("user", "system", "python", "alice"):
        res = cli("metrics", "diversity", root, "--text", f"role:{unread}")
        assert res.exit_code == 2, res.output
    assert {"system", "alice", "python"} <= {r["role"] for r in message_rows}


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


# Review of the ``role:NAME`` errors (audit 19, fix-metrics3):
# 9. ``role:alice``, a user who speaks only in the prompt (verifiers, NeMo Gym, native with ``prompt_turns``), was
#    "no message of the selected samples is spoken by 'alice'" (false): the prompt's speakers were read without
#    its input messages and the input speakers without the prompt, so a prompt's user was in neither.
# 10. ``role:model --steps 0:2`` where the speaker named ``model`` speaks at step 3 only said no message is spoken
#    by 'model', as if a typo, without saying it speaks at the steps left out (whom ``role:model`` reads is
#    decided over the whole run).

ALICE = {"role": "user", "name": "alice", "content": "q"}
SYSTEM = {"role": "system", "content": "sys"}


def _native_prompted(root: Path, samples: dict[str, tuple[list[dict], int]]) -> Path:
    """A native run whose rows say their ``prompt_turns`` (``samples``: messages and prompt turns per sample)."""
    with runlog.RunWriter(root, name=root.name) as w:
        rows = [
            {"sample_id": s, "group_id": "g", "reward": 0.5, "messages": m, "prompt_turns": n}
            for s, (m, n) in samples.items()
        ]
        w.log_samples(0, rows)
    return root


def _verifiers_alice(root: Path) -> dict[str, tuple[list[dict], int]]:
    """A verifiers results file whose prompt's user is alice: the prompt is the model's input, the completion its
    turns. Returned as the messages and prompt turns per row, as written."""
    recs = [
        {
            "example_id": i,
            "task": "default",
            "prompt": [SYSTEM, {**ALICE, "content": f"q{i}"}],
            "completion": [_a(f"a{i % 2}")],
            "reward": 1.0,
        }
        for i in range(4)
    ]
    root.mkdir(parents=True)
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return {str(r["example_id"]): (r["prompt"] + r["completion"], len(r["prompt"])) for r in recs}


def _generated_labels(samples: dict[str, tuple[list[dict], int]]) -> list[str]:
    """The speakers ``role:NAME`` can read, from the rows written: past each sample's prompt, not an input message."""
    return list(dict.fromkeys(_label(m) for ms, n in samples.values() for m in ms[n:] if _readable(m)))


PROMPTED = {f"s{k}": ([SYSTEM, ALICE, _a(f"answer {k % 2}", name="solver")], 2) for k in range(3)}


@pytest.mark.parametrize("layout", ["native", "verifiers"])
def test_a_user_of_the_prompt_only_is_said_to_speak_only_in_the_prompts(cli, tmp_path, layout):
    """``role:alice``, alice the user of every prompt (native rows with ``prompt_turns``, a verifiers prompt): the
    error says she speaks only in the prompts, never that no message is hers (before: "no message of the selected
    samples is spoken by 'alice'"), and lists the generated speakers from the rows written."""
    if layout == "native":
        samples = PROMPTED
        root = _native_prompted(tmp_path / "run", samples)
    else:
        root = tmp_path / "v"
        samples = _verifiers_alice(root)
    assert all(any(m.get("name") == "alice" for m in ms[:n]) for ms, n in samples.values())
    assert not any(m.get("name") == "alice" for ms, n in samples.values() for m in ms[n:])
    res = cli("metrics", "diversity", root, "--text", "role:alice")
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "'alice' speaks only in the selected samples' prompts" in res.stderr, res.stderr
    assert "no message of the selected samples is spoken by" not in res.stderr
    assert "model's input past the prompts" not in res.stderr  # she speaks nowhere past them
    assert "did you mean" not in res.stderr
    assert _listed(res.stderr) == _generated_labels(samples)


def test_a_user_past_the_prompt_and_one_in_both_are_said_where_they_speak(cli, tmp_path):
    """With ``prompt_turns`` set, a user bob who speaks only past the prompt (a follow-up question) is said to speak
    in the model's input past the prompts, not in the prompts; carol, in a prompt and past another, is said in
    both (before: only the messages past the prompts were named, as if she spoke nowhere else)."""
    bob, carol = {"role": "user", "name": "bob", "content": "more?"}, {"role": "user", "name": "carol", "content": "c"}
    samples = {
        "s0": ([SYSTEM, ALICE, _a("first", name="solver"), bob, _a("second", name="solver")], 2),
        "s1": ([SYSTEM, carol, _a("first", name="solver")], 2),
        "s2": ([SYSTEM, ALICE, _a("x", name="solver"), carol, _a("y", name="solver")], 2),
    }
    root = _native_prompted(tmp_path / "run", samples)
    prompts = {m.get("name") for ms, n in samples.values() for m in ms[:n]}
    past = {m.get("name") for ms, n in samples.values() for m in ms[n:] if not _readable(m)}
    assert "bob" in past and "bob" not in prompts and "carol" in past and "carol" in prompts
    for name, in_prompts in (("bob", False), ("carol", True)):
        res = cli("metrics", "diversity", root, "--text", f"role:{name}")
        assert res.exit_code == 2, res.output
        assert f"{name!r} speaks only " in res.stderr, res.stderr
        assert ("in the selected samples' prompts" in res.stderr) is in_prompts
        assert "in messages of the model's input past the prompts" in res.stderr
        assert _listed(res.stderr) == _generated_labels(samples) == ["solver"]


def _model_at_step_3(root: Path) -> dict[tuple[str, int], list[list[dict]]]:
    """An unnamed policy at steps 0-3 of train and at step 0 of eval; a speaker named ``model`` at train step 3."""
    written: dict[tuple[str, int], list[list[dict]]] = {}
    with runlog.RunWriter(root, name=root.name) as w:
        for split, steps in (("train", range(4)), ("eval", range(1))):
            for step in steps:
                msgs = [
                    [U, _a(f"policy {step} {k % 2}"), *([_a(f"critic {k % 3}", name="model")] if step == 3 else [])]
                    for k in range(4)
                ]
                written[split, step] = msgs
                w.log_samples(
                    step,
                    [
                        {"sample_id": f"{split}{step}-{k}", "group_id": "g", "reward": 0.5, "messages": m}
                        for k, m in enumerate(msgs)
                    ],
                    split=split,
                )
    return written


@pytest.mark.parametrize("picked", [["--steps", "0:2"], ["--split", "eval"], ["--split", "train", "--steps", "0,1"]])
def test_role_model_speaking_only_at_steps_left_out_is_said_so(cli, tmp_path, picked):
    """``role:model`` where the speaker named ``model`` speaks only at train step 3 and the options pick other
    samples: the error says it speaks elsewhere in the run, at that step (from the rows written), outside the
    samples selected, and that whom ``role:model`` reads is decided over the run (before: "no message of the
    selected samples is spoken by 'model'" and no more, as for a typo)."""
    written = _model_at_step_3(tmp_path / "run")
    at = sorted({k for k, rows in written.items() for ms in rows for m in ms if m.get("name") == "model"})
    assert at == [("train", 3)]
    res = cli("metrics", "diversity", tmp_path / "run", "--text", "role:model", *picked)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "no message of the selected samples is spoken by 'model'" in res.stderr
    said = re.search(
        r"it speaks elsewhere in the run \(split (\w+); step (\d+)\), outside the samples selected \(([^)]*)\)",
        res.stderr,
    )
    assert said is not None, res.stderr
    assert [(said.group(1), int(said.group(2)))] == at
    assert said.group(3) == " ".join(picked)
    assert "decided over the whole run" in res.stderr
    assert "did you mean" not in res.stderr
    assert _listed(res.stderr) == ["assistant"]
    ok = cli("metrics", "diversity", tmp_path / "run", "--text", "role:model", "--steps", "3", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)[0]["texts"] == len(written["train", 3])


def test_a_typo_with_a_step_filter_says_no_more_than_before(cli, tmp_path):
    """``role:modle --steps 0:2``: it speaks nowhere in the run, so the error says nothing of other steps."""
    _model_at_step_3(tmp_path / "run")
    res = cli("metrics", "diversity", tmp_path / "run", "--text", "role:modle", "--steps", "0:2")
    assert res.exit_code == 2, res.output
    assert "elsewhere in the run" not in res.stderr
    assert "no message of the selected samples is spoken by 'modle'" in res.stderr
