"""Flink and text-skip findings of the layouts audit (audit 14): a v0 agent's turn that differs from the rendered
transcript by whitespace keeps its speaker and its place (the policy's text is the solver's), a corrupt v1 file
without statistics is said corrupt (not a column of no version), and a file whose text could not be read is
said so in the "no text" note of ``metrics format``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.formats.flink_messages import conversation, transcript_messages

SYSTEM = "<|system|>\nYou debate.\n<|user|>\nWhat is 2*2?\n"


def agents(*texts: list[str]) -> str:
    """Flink v0 ``agent_trajectories``: agent_i said ``texts[i]`` (one assistant turn each), no roles."""
    return json.dumps(
        [
            {"agent_id": f"agent_{i}", "turns": [{"role": "assistant", "content": t} for t in turns]}
            for i, turns in enumerate(texts)
        ]
    )


def transcript(*turns: tuple[str, str]) -> str:
    return SYSTEM + "".join(f"<|assistant name={name}|>\n{text}\n" for name, text in turns)


def speakers(messages: list[dict]) -> list[tuple[str, str | None]]:
    return [(m["role"], m.get("name")) for m in messages]


@pytest.mark.parametrize(
    "solver",
    [
        "<think>2*2 is 4</think><answer>4</answer>\n",
        "<think>2*2  is 4</think><answer>4</answer>",
        "  <answer>4</answer>",
    ],
    ids=["trailing-newline", "doubled-space", "leading-spaces"],
)
def test_v0_agent_matched_to_its_speaker_whitespace_aside(solver: str) -> None:
    """The transcript shows the solver's turn re-spaced; the agent is still the solver, and speaks first."""
    verifier = "I re-derived it. VERIFY: PASS"
    shown = " ".join(solver.split())
    c = conversation(agents([solver], [verifier]), transcript(("solver", shown), ("verifier", verifier)))
    assert c.messages is not None
    assert speakers(c.messages) == [
        ("system", None),
        ("user", None),
        ("assistant", "solver"),
        ("assistant", "verifier"),
    ]
    assert c.completion == solver


def test_v0_agents_whose_reasoning_the_transcript_leaves_out_are_matched() -> None:
    """Two agents whose texts the transcript shows without their <think> blocks: matched by that text, so the
    judge does not come first; the policy's text stays the solver's."""
    a0, a1, judge = "<think>x</think>A", "<think>y</think>V", "Verdict: ACCEPT"
    c = conversation(agents([a0], [a1], [judge]), transcript(("solver", "A"), ("verifier", "V"), ("judge", judge)))
    assert c.messages is not None
    assert [m["content"] for m in c.messages if m["role"] == "assistant"] == [a0, a1, judge]
    assert c.completion == a0


def test_v0_single_unmatched_agent_takes_the_single_unmatched_speaker_in_turn_order() -> None:
    """One agent and one speaker left (the solver's <think> left out of the transcript): they are each other, and
    a debate of two rounds keeps the transcript's interleaving."""
    c = conversation(
        agents(["<think>t</think>a1", "<think>t</think>a2"], ["v1", "v2"]),
        transcript(("solver", "a1"), ("verifier", "v1"), ("solver", "a2"), ("verifier", "v2")),
    )
    assert c.messages is not None
    got = [(m.get("name"), m["content"]) for m in c.messages if m["role"] == "assistant"]
    assert got == [
        ("solver", "<think>t</think>a1"),
        ("verifier", "v1"),
        ("solver", "<think>t</think>a2"),
        ("verifier", "v2"),
    ]


def test_metrics_format_scores_the_solver_of_a_v0_file_whose_turn_ends_in_a_newline(cli, tmp_path: Path) -> None:
    """The audit's repro: every solver turn follows think-answer-strict (truth 1.0); the verifier's does not."""
    solver, verifier = "<think>2*2 is 4</think><answer>4</answer>\n", "I re-derived it. VERIFY: PASS"
    folder = tmp_path / "run" / "flink_logs"
    folder.mkdir(parents=True)
    n = 4
    table = {
        "trajectory": [transcript(("solver", solver), ("verifier", verifier))] * n,
        "agent_trajectories": [agents([solver], [verifier])] * n,
        "reward": [1.0] * n,
        "unique_sample_id": [f"s{i}" for i in range(n)],
    }
    pq.write_table(pa.table(table), folder / "batch_debug_data_train_0.parquet")
    r = cli("metrics", "format", tmp_path / "run", "--format", "json")
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["texts"] == n and row["adherence"] == 1.0


def test_bundled_flink_mixed_speakers_in_the_transcripts_order() -> None:
    """Every conversation of the bundled run (v0 and v1 files) has its speakers in the order its rendered
    transcript gives them, and its completion is the first speaker's (the solver's)."""
    root = Path(__file__).resolve().parents[1] / "sample_runs" / "flink_mixed"
    checked = 0
    for f in sorted(root.glob("flink_logs/*.parquet")):
        for row in pq.read_table(f).to_pylist():
            shown = transcript_messages(row.get("trajectory"))
            c = conversation(row.get("agent_trajectories"), row.get("trajectory"), row.get("role_assignments"))
            if shown is None or c.messages is None:
                continue
            names = [m.get("name") for m in c.messages if m["role"] == "assistant"]
            assert names == [m.get("name") for m in shown if m["role"] == "assistant"], (
                f.name,
                row["unique_sample_id"],
            )
            assert names[0] == "solver"
            checked += 1
    assert checked > 300


def test_corrupt_v1_file_without_statistics_is_unreadable_not_empty(tmp_path: Path) -> None:
    """Bytes shifted in a data page of a v1 file written without statistics: its schema_version cannot be read.
    That is corrupt data (as the v0 twin says of its reward), not a column of no version."""
    folder = tmp_path / "run" / "flink_logs"
    folder.mkdir(parents=True)
    path = folder / "batch_debug_data_train_0.parquet"
    cols = {
        "trajectory": [f"TRAJ{i}MARKERXXXX" for i in range(4)],
        "reward": [1.0, 0.0, 0.5, 1.0],
        "unique_sample_id": [f"s{i}" for i in range(4)],
        "schema_version": pa.array([1] * 4, pa.int64()),
    }
    pq.write_table(pa.table(cols), path, compression="NONE", write_statistics=False)
    path.write_bytes(path.read_bytes().replace(b"TRAJ1MARKERXXXX", b"TRAJ1MARKERXXXXX"))
    run = open_run(tmp_path / "run")
    [p] = [p for p in run.problems if p.path.endswith(path.name)]
    assert p.kind == "unreadable", p
    assert p.message.startswith("corrupt data in schema_version (the footer is intact, without statistics): ")
    assert p.message.endswith("; file skipped")


@pytest.mark.parametrize("damage", ["page", "utf8"])
def test_metrics_format_says_a_text_that_could_not_be_read_is_why_samples_are_skipped(
    cli, tmp_path: Path, damage: str
) -> None:
    """A TRL file whose ``completion`` page is corrupt (one value's length overwritten): its 8 completions are
    there, unreadable. The note gives that reason, not "no messages and a null completion". With one value of
    invalid UTF-8 instead, that value is read with U+FFFD (a warning names the file) and no sample is skipped."""
    folder = tmp_path / "run" / "completions"
    folder.mkdir(parents=True)
    for s in range(1, 4):
        comp = [f"MARK{i}XXXXXXXX" if s == 3 else f"<think>t</think><answer>{i}</answer>" for i in range(8)]
        path = folder / f"completions_{s:05d}.parquet"
        table = {
            "step": [s] * 8,
            "prompt": [f"q{i // 4}" for i in range(8)],
            "completion": comp,
            "accuracy_reward": [float(i % 2) for i in range(8)],
        }
        pq.write_table(pa.table(table), path, compression="NONE", write_statistics=False)
        if s == 3 and damage == "page":  # its length (13, in the plain dictionary page) beyond the page
            path.write_bytes(path.read_bytes().replace(b"\x0d\0\0\0MARK3XXXXXXXX", b"\xff\xff\xff\x7fMARK3XXXXXXXX"))
        elif s == 3:
            path.write_bytes(path.read_bytes().replace(b"MARK3XXXXXXXX", b"MARK3\xff\xfe\xc3\x28XXXX"))
    r = cli("metrics", "format", tmp_path / "run", "--format", "json")
    if damage == "utf8":
        assert r.exit_code == 0 and "skipped" not in r.stderr and "could not be read" not in r.stderr, r.stderr
        assert "warning: completions/completions_00003.parquet: 1 text value(s) are not valid UTF-8" in r.stderr
        rows = {row["step"]: row for row in json.loads(r.stdout)}
        assert rows[3]["texts"] == 8 and rows[1]["texts"] == 8
        return
    assert r.exit_code == 1
    assert (
        "note: 8 sample(s) have no text for --text auto and are skipped (not in texts): the text of their file "
        "could not be read (see the errors)" in r.stderr
    )
    assert "no messages and a null completion" not in r.stderr
    rows = {row["step"]: row for row in json.loads(r.stdout)}
    assert rows[3]["texts"] == 0 and rows[3]["no_text"] == 8 and rows[1]["texts"] == 8


def test_v0_order_written_decides_nothing_before_the_transcript() -> None:
    """A review of the fix above: agents the transcript does not show (raw texts) were placed by the order they
    are written in, so the same conversation written in reverse read the judge as the policy. Per-agent JSON has
    no order across agents: the transcript's speakers come first, whatever the order written."""
    solver, raw_v, raw_j = "<think>t</think><answer>4</answer>", "[raw] checks", "[raw] verdict"
    shown = transcript(("solver", "<answer>4</answer>"), ("verifier", "checks"), ("judge", "verdict"))
    for order in (agents([solver], [raw_v], [raw_j]), agents([raw_j], [raw_v], [solver])):
        c = conversation(order, shown)
        assert c.messages is not None
        assert [m for m in c.messages if m["role"] == "assistant"][0]["content"] == solver
        assert c.completion == solver


def test_v0_agents_alike_without_their_reasoning_take_one_speaker_each() -> None:
    """A review: two agents whose answers read alike once their <think> blocks are left out (a debate's
    "<answer>4</answer>") were both the solver, the verifier's turn read as the policy's. Each speaker is one
    agent's."""
    solver, verifier = "<think>2*2=4</think><answer>4</answer>", "<think>checked: 2+2=4</think><answer>4</answer>"
    shown = transcript(("solver", "<answer>4</answer>"), ("verifier", "<answer>4</answer>"))
    c = conversation(agents([solver], [verifier]), shown)
    assert c.messages is not None
    names = [m["name"] for m in c.messages if m["role"] == "assistant"]
    assert names == ["solver", "verifier"], names
    assert c.completion == solver
