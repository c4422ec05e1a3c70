"""``runlog metrics`` after the seventh audit (expected figures counted here from the rows written):

- ``metrics format --per-sample --by role`` printed the policy's texts only, their role empty: it now gives each
  role's own texts, the role filled (as the rows per role count them); ``--by group`` is refused;
- samples with no text (a null completion and no messages; a last turn that is only a tool call) were skipped
  without a word: a note per reason counts them, and a ``no_text`` column per row;
- a file whose text could not be read gave "no sample has a text" before the error naming it;
- a run of scalars only printed empty tables and exited 0: one line, exit 2, as ``render-trajectory``;
- the samples with no text are counted in the read of the texts (``SkippedTexts``), not in a second one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.writer import RunWriter

OK = "<think>a b</think><answer>x y z</answer>"
U = {"role": "user", "content": "Q?"}


def S(text: str) -> dict:
    return {"role": "assistant", "name": "solver", "content": text}


def V(text: str) -> dict:
    return {"role": "assistant", "name": "verifier", "content": text}


def note_lines(stderr: str) -> list[str]:
    return [x[len("note: ") :] for x in stderr.splitlines() if x.startswith("note: ")]


def debate_run(root: Path) -> list[dict]:
    """One step, four samples: the solver speaks first in three; in the last only the verifier speaks."""
    rows = [
        {"reward": 1.0, "group_id": "g", "sample_id": "a", "messages": [U, S(OK), V("fine")]},
        {"reward": 0.0, "group_id": "g", "sample_id": "b", "messages": [U, S("no tags"), V(OK)]},
        {"reward": 1.0, "group_id": "g", "sample_id": "c", "messages": [U, S(OK), V("yes")]},
        {"reward": 0.0, "group_id": "g", "sample_id": "d", "messages": [U, V("verifier only")]},
    ]
    with RunWriter(root, roles=["verifier", "solver"], durable=False) as w:
        w.log_samples(0, rows)
    return rows


# -- 1. --per-sample honours --by role ------------------------------------------------------------------------
def test_per_sample_by_role_gives_each_roles_own_texts(tmp_path: Path, cli) -> None:
    rows = debate_run(tmp_path / "run")
    expected = [
        (r["sample_id"], m["name"], m["content"] == OK) for r in rows for m in r["messages"] if m["role"] == "assistant"
    ]
    res = cli("metrics", "format", tmp_path / "run", "--by", "role", "--per-sample", "--format", "json")
    assert res.exit_code == 0, res.stderr
    got = [(r["sample_id"], r["role"], r["passed"]) for r in json.loads(res.stdout)]
    assert sorted(got) == sorted(expected)
    # The same texts as the rows per role count.
    agg = cli("metrics", "format", tmp_path / "run", "--by", "role", "--format", "json")
    per_role = {r["role"]: r["texts"] for r in json.loads(agg.stdout)}
    assert per_role == {"solver": 3, "verifier": 4}
    assert sum(per_role.values()) == len(got)


def test_per_sample_refuses_by_group(tmp_path: Path, cli) -> None:
    debate_run(tmp_path / "run")
    res = cli("metrics", "format", tmp_path / "run", "--by", "group", "--per-sample")
    assert res.exit_code == 2 and not res.stdout
    [line] = res.stderr.strip().splitlines()
    assert "--per-sample" in line and "--by group" in line and "Traceback" not in res.stderr


# -- 2. samples with no text are counted ----------------------------------------------------------------------
def no_text_run(root: Path) -> None:
    """Ten samples at step 0: eight with a text, one with a null completion and no messages, one whose only
    assistant turn is a tool call with empty content."""
    call = {"id": "c1", "type": "function", "function": {"name": "py", "arguments": "{}"}}
    rows: list[dict] = [
        {"reward": 1.0, "sample_id": f"s{i}", "group_id": "g", "messages": [U, {"role": "assistant", "content": OK}]}
        for i in range(8)
    ]
    rows.append({"reward": 1.0, "sample_id": "null", "group_id": "g", "completion": None})
    tool = {"role": "assistant", "content": "", "tool_calls": [call]}
    rows.append({"reward": 1.0, "sample_id": "tool", "group_id": "g", "messages": [U, tool], "completion": "x"})
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, rows)


@pytest.mark.parametrize("command", ["diversity", "format"])
def test_samples_without_text_are_counted(tmp_path: Path, cli, command: str) -> None:
    no_text_run(tmp_path / "run")
    res = cli("metrics", command, tmp_path / "run", "--format", "json")
    assert res.exit_code == 0, res.stderr
    [row] = json.loads(res.stdout)
    assert row["texts"] == 8 and row["no_text"] == 2
    notes = [n for n in note_lines(res.stderr) if "have no text" in n]
    assert len(notes) == 2
    assert any(n.startswith("1 sample(s)") and "no messages and a null completion" in n for n in notes)
    assert any(n.startswith("1 sample(s)") and "tool call" in n for n in notes)


def test_per_sample_says_how_many_samples_have_no_text(tmp_path: Path, cli) -> None:
    no_text_run(tmp_path / "run")
    res = cli("metrics", "format", tmp_path / "run", "--per-sample", "--format", "json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 8
    assert sum(int(n.split()[0]) for n in note_lines(res.stderr) if "have no text" in n) == 2


def test_no_column_and_no_note_when_every_sample_has_a_text(tmp_path: Path, cli) -> None:
    with RunWriter(tmp_path / "run", durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": f"s{i}", "completion": OK} for i in range(3)])
    for command in ("diversity", "format"):
        res = cli("metrics", command, tmp_path / "run", "--format", "csv")
        assert res.exit_code == 0 and "no_text" not in res.stdout and "have no text" not in res.stderr


# -- 3. a file whose text could not be read -------------------------------------------------------------------
def test_unreadable_text_is_not_said_to_be_missing(tmp_path: Path, cli) -> None:
    root = tmp_path / "run"
    with RunWriter(root, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "sample_id": f"s{i}", "completion": OK} for i in range(5)])
    [f] = list((root / "samples").rglob("*.parquet"))
    t = pq.read_table(f)
    values = [OK.encode()] * (t.num_rows - 1) + [b"bad \xff\xfe text"]
    offsets = [0]
    for v in values:
        offsets.append(offsets[-1] + len(v))
    bad = pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(values))]
    )
    i = t.schema.get_field_index("completion")
    pq.write_table(t.set_column(i, "completion", bad).replace_schema_metadata(t.schema.metadata), f)
    # One byte that is no UTF-8 costs that one value (read with U+FFFD, said in a warning naming the file),
    # never the file's texts, and no sample is said to have none.
    for command in ("diversity", "format"):
        res = cli("metrics", command, root, "--format", "json")
        assert res.exit_code == 0 and "Traceback" not in res.stderr
        assert "no sample has a text" not in res.stderr and "no text" not in res.stderr, res.stderr
        said = [x for x in res.stderr.splitlines() if x.startswith(("error: ", "warning: "))]
        assert len(said) == 1 and said[0].startswith("warning: ") and "step_00000000" in said[0], said
        assert "1 text value(s) are not valid UTF-8 (completion: 1)" in said[0]
        [row] = json.loads(res.stdout)
        assert row["texts"] == 5 and not row.get("no_text"), row


# -- 4. a run of scalars only ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args", [["diversity"], ["format"], ["format", "--per-sample"], ["diversity", "--format", "json"]]
)
def test_a_run_of_scalars_only_is_refused_in_one_line(tmp_path: Path, cli, args: list[str]) -> None:
    with RunWriter(tmp_path / "run", durable=False) as w:
        for step in range(3):
            w.log_scalars(step, {"loss": 1.0 / (step + 1)})
    res = cli("metrics", args[0], tmp_path / "run", *args[1:])
    assert res.exit_code == 2 and not res.stdout
    [line] = res.stderr.strip().splitlines()
    assert "this run has no per-sample data" in line
    rendered = cli("render-trajectory", tmp_path / "run")
    assert rendered.exit_code == res.exit_code and "no per-sample data" in rendered.stderr


# -- 5. the skipped samples are counted in the read of the texts, not in a second one ---------------------------
def test_skipped_samples_are_counted_in_the_same_read(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from runlog.analysis import texts as M

    no_text_run(tmp_path / "run")
    reads: list[str] = []
    real = M._texts_lazy
    monkeypatch.setattr(M, "_texts_lazy", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    res = cli("metrics", "diversity", tmp_path / "run", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["no_text"] == 2
    assert reads == ["auto"]  # one query of the texts (built once: no file had to be left out)


def test_library_fills_skipped(tmp_path: Path) -> None:
    from runlog import diversity_frame, format_frame, format_per_sample, open_run
    from runlog.analysis.texts import SkippedTexts

    no_text_run(tmp_path / "run")
    run = open_run(tmp_path / "run")
    for fill in (
        lambda s: diversity_frame(run, ["step"], skipped=s),
        lambda s: format_frame(run, "think-answer-strict", ["step"], skipped=s),
        lambda s: format_per_sample(run, "think-answer-strict", skipped=s),
    ):
        skipped = SkippedTexts()
        fill(skipped)
        assert skipped.by_reason() == {"unread": 0, "bare": 1, "rest": 1} and skipped.total == 2
        assert skipped.per_row(["step"]).to_dicts() == [{"step": 0, "no_text": 2}]
    # Without it, the frames are as before.
    assert diversity_frame(run, ["step"])["texts"].to_list() == [8]


def test_tool_call_spec_of_a_speaker_counts_the_samples_without_messages(tmp_path: Path, cli) -> None:
    """``--text role:NAME`` with a tool-call spec reads that speaker's messages only: a sample without messages
    has no text, whether its completion is null or not (none is read in their place)."""
    rows = [
        {"reward": 1.0, "sample_id": "a", "messages": [U, S("calling")]},
        {"reward": 1.0, "sample_id": "b", "completion": None},
        {"reward": 1.0, "sample_id": "c", "completion": "a completion"},
        {"reward": 1.0, "sample_id": "d", "messages": [U, V("not the solver")]},
    ]
    with RunWriter(tmp_path / "run", roles=["solver", "verifier"], durable=False) as w:
        w.log_samples(0, rows)
    args = ["--spec", "tool-call-json", "--text", "role:solver", "--format", "json"]
    res = cli("metrics", "format", tmp_path / "run", *args)
    assert res.exit_code == 0, res.stderr
    [row] = json.loads(res.stdout)
    # b and c have no messages; d has messages, none of them the solver's (it was left out without a word).
    assert row["texts"] == 1 and row["no_text"] == 3
    notes = [n for n in note_lines(res.stderr) if "sample(s)" in n]
    assert any(n.startswith("2 sample(s)") and n.endswith(": no messages") for n in notes), notes
    assert any(n.startswith("1 sample(s)") for n in notes), notes
