"""Audit a14 (policy election): whose turns ``--text auto`` reads, and what the note says of it.

- A ``planner`` that opens every conversation with a tool call without words (a solver answering after it) was
  elected the policy: every sample skipped, no text measured, while the solver's answers went unread. Only a turn
  with text votes now (words, or no tool call: the turns ``auto`` reads); a model turn cut off while reasoning
  (empty, no call) still votes.
- The policy note was left out exactly where no text was found; it is said there now, with the speakers that do
  have a turn with text in the samples read and the ``--text role:NAME`` that reads one.
- The note's "(256 of 256)" read like a count of the split's samples (1,024): it says what it counts.

Expected figures are computed here from the files written (pyarrow) or by hand, never with runlog's code.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis import texts as T
from runlog.analysis.doctor_config import DoctorConfig
from runlog.analysis.doctor_text import text_findings
from runlog.analysis.series import RunSeries
from runlog.analysis.texts import format_frame, texts_frame
from runlog.writer import RunWriter

STRICT = re.compile(r"(?s)^\s*<think>\s*\S.*?</think>\s*<answer>\s*\S.*?</answer>\s*$")
GOOD = "<think>\nreason\n</think>\n<answer>\n42\n</answer>"
CALL = [{"id": "c1", "name": "python", "arguments": '{"code": "6*7"}'}]


def _planner_run(root: Path, *, pad: int = 0) -> Path:
    """The audit's repro_3: user; planner (a tool call, empty content); the tool's result; solver (the answer,
    which passes think-answer-strict). Two steps of 8. ``pad``: a system prompt of that many characters first
    (a big native run), the prompt being the system and user messages."""
    with RunWriter(root, name="planner", durable=False) as w:
        for step in range(2):
            rows = []
            for i in range(8):
                msgs = [
                    {"role": "user", "content": "What is 6*7?"},
                    {"role": "assistant", "name": "planner", "content": "", "tool_calls": CALL},
                    {"role": "tool", "content": "42", "tool_call_id": "c1"},
                    {"role": "assistant", "name": "solver", "content": GOOD},
                ]
                if pad:
                    msgs.insert(0, {"role": "system", "content": f"{step}-{i} " + "x" * pad})
                row = {"sample_id": f"{step}-{i}", "reward": 1.0, "messages": msgs, "prompt_turns": 2 if pad else 1}
                rows.append(row)
            w.log_samples(step, rows)
    return root


def _rows(root: Path) -> list[dict]:
    out = []
    for f in sorted((root / "samples").rglob("*.parquet")):
        table = pq.read_table(f)
        cols = [c for c in ("split", "step", "messages", "prompt_turns") if c in table.column_names]
        out += [{"prompt_turns": None, **r} for r in table.select(cols).to_pylist()]
    return out


def _texts_with_words(row: dict) -> list[tuple[str | None, str]]:
    """(speaker, content) of a sample's generated model turns that have words."""
    turns = row["messages"][row["prompt_turns"] or 0 :]
    return [(m["name"], m["content"]) for m in turns if m["role"] == "assistant" and (m["content"] or "").strip()]


def test_a_tool_call_without_words_does_not_vote(tmp_path: Path, cli) -> None:  # noqa: ANN001
    root = _planner_run(tmp_path / "run")
    rows = _rows(root)
    said = [_texts_with_words(r) for r in rows]
    # By hand: every sample's only model turn with text is the solver's, and it passes.
    assert {tuple(s) for s in said} == {(("solver", GOOD),)}
    want = [s[0][1] for s in said]
    run = open_run(root)
    assert texts_frame(run, "auto")["text"].to_list() == want
    fmt = format_frame(run, "think-answer-strict")
    assert fmt.select("step", "texts", "adherence").rows() == [(0, 8, 1.0), (1, 8, 1.0)]
    p = T.policy_speaker(run)
    got = (p.name, p.opens, p.speakers, p.silent, p.samples)
    assert got == ("solver", (("solver", 16),), ("solver",), ("planner",), 16)
    r = cli("metrics", "format", root, "--spec", "think-answer-strict", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    assert "--text auto reads the policy's turns: solver," in r.stderr, r.stderr
    assert "planner made only tool calls without words there (no text to read, so no vote)" in r.stderr
    assert "no_text" not in r.stdout and "skipped" not in r.stderr
    # doctor, plot and report read the same turns (the train split), and say whose.
    series = RunSeries(open_run(root))
    assert series.format is not None and series.format["adherence"].to_list() == [1.0, 1.0]
    text_findings(series, DoctorConfig())
    assert any("read the policy's turns: solver," in n for n in series.scope_notes), series.scope_notes


def test_the_native_election_reads_the_contents_where_a_model_turn_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nested role/name columns cannot tell a tool call with words from one without: a run whose model turns
    call a tool elects through its samples, as a small run does; one without calls keeps the fast route."""
    monkeypatch.setattr(T, "NATIVE_ELECTION_BYTES", 0)
    calls = _planner_run(tmp_path / "calls", pad=10)
    assert T._election_native(open_run(calls)) is None
    p = T.policy_speaker(open_run(calls))
    assert (p.name, p.opens, p.silent) == ("solver", (("solver", 16),), ("planner",))
    plain = tmp_path / "plain"
    with RunWriter(plain, name="plain", durable=False) as w:
        msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "name": "solver", "content": GOOD}]
        w.log_samples(0, [{"sample_id": f"s{i}", "reward": 1.0, "messages": msgs} for i in range(4)])
    fast = T._election_native(open_run(plain))
    assert fast is not None and fast.height == 4
    assert T.policy_speaker(open_run(plain)).opens == (("solver", 4),)


def test_a_turn_cut_off_while_reasoning_still_votes(tmp_path: Path) -> None:
    """The solver's turn has no content and no call (its words in ``reasoning`` only): it is the solver's empty
    text, which ``auto`` reads (and which fails the format), not a reason to elect the judge that answers after."""
    root = tmp_path / "cut"
    with RunWriter(root, name="cut", durable=False) as w:
        rows = []
        for i in range(4):
            solver = {"role": "assistant", "name": "solver", "content": "", "reasoning": "let me think"}
            if i == 0:
                solver = {"role": "assistant", "name": "solver", "content": GOOD}
            msgs = [{"role": "user", "content": "q"}, solver, {"role": "assistant", "name": "judge", "content": GOOD}]
            rows.append({"sample_id": f"s{i}", "reward": 1.0, "messages": msgs})
        w.log_samples(0, rows)
    run = open_run(root)
    assert T.policy_speaker(run).opens == (("solver", 4),)
    assert texts_frame(run, "auto")["text"].to_list() == [GOOD, "", "", ""]
    assert format_frame(run, "think-answer-strict")["adherence"].to_list() == [0.25]


def _split_run(root: Path) -> Path:
    """The solver opens every train sample (a judge after it); only the judge speaks in eval (3 a step)."""
    with RunWriter(root, name="ev", durable=False) as w:
        for s in range(2):
            train = [
                {"role": "user", "content": "q"},
                {"role": "assistant", "name": "solver", "content": GOOD},
                {"role": "assistant", "name": "judge", "content": "ok"},
            ]
            w.log_samples(s, [{"sample_id": f"{s}-{i}", "reward": 1.0, "messages": train} for i in range(4)])
            judged = [{"role": "user", "content": "q"}, {"role": "assistant", "name": "judge", "content": GOOD}]
            rows = [{"sample_id": f"e{s}-{i}", "reward": 1.0, "messages": judged} for i in range(3)]
            w.log_samples(s, rows, split="eval")
    return root


@pytest.mark.parametrize("metric", ["format", "diversity"])
def test_the_policy_note_is_said_where_no_text_is_found(tmp_path: Path, cli, metric: str) -> None:  # noqa: ANN001
    root = _split_run(tmp_path / "ev")
    rows = [r for r in _rows(root) if r["split"] == "eval"]
    judge = sum(any(n == "judge" for n, _ in _texts_with_words(r)) for r in rows)
    assert (len(rows), judge) == (6, 6)
    r = cli("metrics", metric, root, "--split", "eval", "--format", "csv")
    assert r.exit_code == 0, r.stderr
    assert "--text auto reads the policy's turns: solver," in r.stderr, r.stderr
    assert (
        f"no sample read has a turn of solver with text; the model speakers with one there: judge ({judge} "
        "sample(s)); --text role:judge reads judge's turns"
    ) in r.stderr, r.stderr
    # Where texts are found, the note stays as it was: no such words.
    train = cli("metrics", metric, root, "--split", "train", "--format", "csv")
    assert "no sample read has" not in train.stderr and "policy's turns: solver," in train.stderr


def test_the_note_counts_the_samples_that_voted_in_the_files_read(tmp_path: Path, cli) -> None:  # noqa: ANN001
    """20 train files of 4 samples (more than ELECTION_FILES): the election reads 16 of them, so the note's count
    is of those files' samples (64), said as such, not a count of the split's 80."""
    root = tmp_path / "many"
    with RunWriter(root, name="many", durable=False) as w:
        for step in range(20):
            rows = []
            for i in range(4):
                a = {"role": "assistant", "name": "solver", "content": GOOD}
                b = {"role": "assistant", "name": "judge", "content": "fine"}
                rows.append({"sample_id": f"{step}-{i}", "reward": 1.0, "messages": [a, b] if i else [b, a]})
            w.log_samples(step, rows)
    files = sorted((root / "samples").rglob("*.parquet"))
    per_file = {len(pq.read_table(f, columns=["step"])) for f in files}
    assert (len(files), per_file) == (20, {4})
    # By hand (ELECTION_ROWS 1024, ELECTION_FILES 16): min(20 files, 16, ceil(1024 * 20 / 80)) = 16 files read.
    read = min(len(files), T.ELECTION_FILES, math.ceil(T.ELECTION_ROWS * len(files) / (4 * len(files))))
    assert read == 16
    r = cli("metrics", "format", root, "--format", "csv")
    assert r.exit_code == 0, r.stderr
    want = (
        f"(it opens {3 * read} of the {4 * read} train samples with a model turn with text in the {read} of its 20 "
        f"train sample files read to elect it, spread over the steps; judge {read})"
    )
    assert want in r.stderr, r.stderr
