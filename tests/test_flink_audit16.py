"""Audit a16 (diffv0), Flink v0 speakers, checked against files built here with ``json`` / pyarrow:

- F3: the note that agents read alike (matched to the transcript's speakers by agent id) was recorded only in
  ``run.fidelity``, after discovery, which no command that reads texts printed: ``parse_notes`` gives the
  notes that parsing recorded, for the commands to print.
- F4: v0 without a rendered trajectory: the speakers are agent ids, and an id that is the solver in some files
  and the judge in others was elected the policy, format adherence 1.0, 0.0, 1.0, 0.0 by step. A warning now
  says that no id opens the samples alike, with the counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runlog import open_run

SOLVER = "<think>the solver works it out</think><answer>4</answer>"
JUDGE = "<answer>4</answer>"


def _row(sid: str, agents: list[tuple[str, str]], transcript: str | None) -> dict[str, object]:
    turns = [{"role": "system", "content": "Debate."}, {"role": "user", "content": "What is 2+2?"}]
    return {
        "env_name": "e",
        "trajectory": transcript,
        "agent_trajectories": json.dumps(
            [{"agent_id": a, "turns": [*turns, {"role": "assistant", "content": t}]} for a, t in agents]
        ),
        "exception_info": None,
        "reward": 1.0,
        "reward_metrics": {"correct": 1.0},
        "reward_text_info": None,
        "unique_sample_id": sid,
    }


def _write(root: Path, step: int, rows: list[dict[str, object]]) -> None:
    (root / "flink_logs").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "flink_logs" / f"batch_debug_data_train_{step}.parquet")


def _swapped(root: Path, swap: bool = True) -> Path:
    """Four files of three samples, no transcript: the solver (written first) is agent_0 at steps 0 and 2 and
    agent_1 at steps 1 and 3 (``swap``; else agent_0 at every step), the judge the other id."""
    for step in range(4):
        solver, judge = ("agent_1", "agent_0") if swap and step % 2 else ("agent_0", "agent_1")
        _write(root, step, [_row(f"s{step}-{i}", [(solver, SOLVER), (judge, JUDGE)], None) for i in range(3)])
    return root


def _warnings(root: Path) -> list[str]:
    run = open_run(root)
    run.samples.select("messages").collect()
    return [p.message for p in run.problems if p.is_warning and "are their agent ids" in p.message]


def test_agent_ids_that_open_different_files_are_warned_of(tmp_path: Path) -> None:
    """F4: agent_0 opens the samples of two files, agent_1 of the two others: a warning with the counts, where
    each file's own opener is another id than the run's; the same ids keeping one role give none."""
    [said] = _warnings(_swapped(tmp_path / "swap"))
    assert said.startswith("the speakers of 12 sample(s) in 4 file(s) are their agent ids")
    assert "agent_0 speaks first in 6 of them (agent_1 6)" in said
    assert "another id speaks first in most samples of 2 of the 4 file(s)" in said
    assert _warnings(_swapped(tmp_path / "kept", swap=False)) == []


def test_the_warning_reaches_metrics_format(tmp_path: Path, cli) -> None:
    """F4: the command whose per-step adherence flipped says it, on stderr, with its figures on stdout."""
    root = _swapped(tmp_path / "swap")
    out = cli("metrics", "format", root, "--format", "json")
    assert out.exit_code == 0, out.output
    assert "are their agent ids" in out.stderr and "another id speaks first" in out.stderr
    json.loads(out.stdout)


def test_a_weak_election_is_warned_of(tmp_path: Path) -> None:
    """F4: one file, three agents written in another order per sample: the id that opens most opens 2 of 5."""
    first = ["agent_0", "agent_0", "agent_1", "agent_1", "agent_2"]
    ids = ["agent_0", "agent_1", "agent_2"]
    rows = [
        _row(f"s{i}", [(a, SOLVER if a == f else JUDGE) for a in [f, *(x for x in ids if x != f)]], None)
        for i, f in enumerate(first)
    ]
    _write(tmp_path / "r", 0, rows)
    [said] = _warnings(tmp_path / "r")
    assert "agent_0 speaks first in 2 of them (agent_1 2, agent_2 1), fewer than half" in said
    assert "another id" not in said
    first = ["agent_0", "agent_0", "agent_0", "agent_1", "agent_2"]
    rows = [
        _row(f"s{i}", [(a, SOLVER if a == f else JUDGE) for a in [f, *(x for x in ids if x != f)]], None)
        for i, f in enumerate(first)
    ]
    _write(tmp_path / "s", 0, rows)
    assert _warnings(tmp_path / "s") == []  # three of five: more than half, the most in its one file


def test_parse_notes_give_the_alike_note_once_texts_are_read(tmp_path: Path) -> None:
    """F3: the transcript leaves <think> out, and the solver and the verifier then say the same: the note that
    they were matched by agent id is among ``parse_notes`` once the texts are read (none before)."""
    from runlog.formats.flink_text import parse_notes  # here: the F4 tests run (and fail) without it

    shown = "<|system|>\nDebate.\n<|user|>\nWhat is 2+2?\n<|assistant name=solver|>\n<answer>4</answer>\n"
    shown += "<|assistant name=verifier|>\n<answer>4</answer>\n"
    agents = [("agent_1", "<think>verifier checks</think><answer>4</answer>"), ("agent_0", SOLVER)]
    _write(tmp_path / "r", 0, [_row("s0", agents, shown)])
    run = open_run(tmp_path / "r")
    assert not [n for n in parse_notes(run.ctx) if "read alike" in n]
    run.samples.select("messages").collect()
    [note] = [n for n in parse_notes(run.ctx) if "read alike" in n]
    assert note.startswith("flink: agents of 1 sample(s) in 1 file(s) read alike")
