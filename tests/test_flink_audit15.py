"""What re-audit 14 found in Flink conversations, quarantine and the copied-shard warning, each checked against
inputs built here with ``json`` / pyarrow (the truth is how they were built, never runlog's code):

- v0 agents (no roles) whose first turns read alike were matched to the transcript's speakers by their first
  text, in the order written: written judge-first, the judge's final turn was the policy's completion;
- a Flink file whose ``agent_trajectories`` is not UTF-8 (its rendered ``trajectory`` intact) lost its prompt
  groups only when ANOTHER file's failure set the quarantine going: one file, two figures;
- two genuine shards of one size written without statistics, their ids beyond the first 64 KiB, were said to
  be byte-for-byte copies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flink_gen import write_flink_run
from runlog import open_run

IDS = {"solver": "agent_0", "verifier": "agent_1", "judge": "agent_2"}


def _v0_run(root: Path, samples: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]]) -> Path:
    """A v0 file of one sample per entry: (transcript turns, the agents' own turns, the order the agents are
    written in). Each agent's JSON holds its own turns only, as Flink's per-agent shape does."""
    rows = []
    for sid, (shown, own, order) in samples.items():
        text = "<|system|>\nDebate.\n<|user|>\nWhat is 2+2?\n" + "".join(
            f"<|assistant name={n}|>\n{t}\n" for n, t in shown
        )
        per: dict[str, list[dict[str, str]]] = {}
        for name, t in own:
            per.setdefault(name, []).append({"role": "assistant", "content": t})
        agents = [{"agent_id": IDS[n], "turns": per[n]} for n in order]
        rows.append(
            {
                "env_name": "e",
                "trajectory": text,
                "agent_trajectories": json.dumps(agents),
                "exception_info": None,
                "reward": 1.0,
                "reward_metrics": {"correct": 1.0},
                "reward_text_info": None,
                "unique_sample_id": sid,
            }
        )
    (root / "flink_logs").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "flink_logs" / "batch_debug_data_train_0.parquet")
    return root


def _said(root: Path) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str], list[str]]:
    """Per sample: the assistant turns (speaker, text) and the completion; and the run's fidelity notes."""
    run = open_run(root)
    df = run.samples.select("sample_id", "messages", "completion").collect()
    turns = {
        sid: [(m["name"], m["content"]) for m in msgs if m["role"] == "assistant"]
        for sid, msgs in zip(df["sample_id"], df["messages"], strict=True)
    }
    return turns, dict(zip(df["sample_id"], df["completion"], strict=True)), [n["message"] for n in run.fidelity]


SAME_FIRST = [
    ("solver", "<answer>4</answer>"),
    ("verifier", "Looks right."),
    ("judge", "<answer>4</answer>"),
    ("solver", "SOLVER SECOND TURN"),
    ("judge", "JUDGE FINAL VERDICT"),
]


@pytest.mark.parametrize("order", [["solver", "verifier", "judge"], ["judge", "verifier", "solver"]])
def test_v0_agents_whose_first_turns_read_alike_are_matched_by_all_their_turns(
    tmp_path: Path, order: list[str]
) -> None:
    """A solver and a judge both open with "<answer>4</answer>": their later turns tell them apart, in whatever
    order the agents are written."""
    root = _v0_run(tmp_path / "run", {"s": (SAME_FIRST, SAME_FIRST, order)})
    turns, completion, notes = _said(root)
    assert turns["s"] == SAME_FIRST
    assert completion["s"] == "<answer>4</answer>\nSOLVER SECOND TURN"
    assert not [n for n in notes if "read alike" in n]  # the texts decided


@pytest.mark.parametrize("order", [["verifier", "solver", "judge"], ["solver", "judge", "verifier"]])
def test_v0_agents_alike_in_every_text_are_matched_by_agent_id_and_said(tmp_path: Path, order: list[str]) -> None:
    """The transcript leaves the reasoning out, and the solver and the verifier then say the same: the texts
    cannot tell them apart. The lowest agent id takes the first speaker (never the first written), and a
    fidelity note says that this decided it."""
    shown = [("solver", "<answer>4</answer>"), ("verifier", "<answer>4</answer>"), ("judge", "ACCEPT")]
    own = [
        ("solver", "<think>solver thinks 2+2</think><answer>4</answer>"),
        ("verifier", "<think>verifier re-checks</think><answer>4</answer>"),
        ("judge", "ACCEPT"),
    ]
    root = _v0_run(tmp_path / "run", {"s": (shown, own, order)})
    turns, completion, notes = _said(root)
    assert turns["s"] == own
    assert completion["s"] == own[0][1]
    [note] = [n for n in notes if "read alike" in n]
    assert note.startswith("agents of 1 sample(s) in 1 file(s) read alike") and "by agent id" in note


def _break(path: Path, column: str, damage: str = "page") -> None:
    """One ``column`` cell of a Flink file made unreadable (``damage``: "page", its length beyond the page; "utf8",
    not UTF-8), uncompressed, no statistics of that column: only its data page holds the bytes; every other
    column reads."""
    table = pq.read_table(path)
    cells = table.column(column).to_pylist()
    cells[0] = "MARKERXXXX" + cells[0]
    table = table.set_column(table.schema.get_field_index(column), column, [cells])
    stats = [c for c in table.column_names if c != column]
    pq.write_table(table, path, compression="NONE", use_dictionary=False, write_statistics=stats)
    data = path.read_bytes()
    assert data.count(b"MARKERXXXX") == 1
    if damage == "page":
        at = data.find(b"MARKERXXXX")
        path.write_bytes(data[: at - 4] + b"\xff\xff\xff\x7f" + data[at:])
    else:
        path.write_bytes(data.replace(b"MARKERXXXX", b"MARK\xff\xfe\xc3\x28XX"))


def _zero_adv_truth(root: Path, steps: int) -> list[float]:
    """Per step, the share of prompt groups (consecutive runs of 4 samples, as flink_gen writes them) whose
    rewards are all one value, from pyarrow."""
    out = []
    for s in range(steps):
        r = pq.read_table(root / f"flink_logs/batch_debug_data_train_{s}.parquet", columns=["reward"])
        rewards = r["reward"].to_pylist()
        groups = [rewards[i : i + 4] for i in range(0, len(rewards), 4)]
        out.append(round(sum(len(set(g)) == 1 for g in groups) / len(groups), 3))
    return out


@pytest.mark.parametrize("damage", ["page", "utf8"])
@pytest.mark.parametrize("other_broken", [False, True])
def test_a_files_prompt_groups_do_not_depend_on_another_files_failure(
    cli,  # noqa: ANN001
    tmp_path: Path,
    other_broken: bool,
    damage: str,
) -> None:
    """File 2's agent_trajectories cannot be read (a corrupt page), its trajectory (the numeric view's prompt
    source) is intact: its prompt groups are counted whether or not file 1's trajectory is broken too (then file
    1's are not: its prompt text cannot be read). Not UTF-8 instead, file 2's messages are read with U+FFFD."""
    root = write_flink_run(tmp_path / "run", steps=4, version=0, shape="agents").root
    intact = {
        sid: gid
        for sid, gid in open_run(root)
        .samples.filter(pl.col("step") == 2)
        .select("sample_id", "group_id")
        .collect()
        .iter_rows()
    }
    _break(root / "flink_logs/batch_debug_data_train_2.parquet", "agent_trajectories", damage)
    if other_broken:
        _break(root / "flink_logs/batch_debug_data_train_1.parquet", "trajectory")
    truth = _zero_adv_truth(root, 4)
    r = cli("summarize", root, "--by", "step", "--prompt-groups", "--format", "json")
    got = {row["step"]: row["zero_adv_frac"] for row in json.loads(r.stdout)}
    for step in (0, 2, 3):
        assert got[step] is not None and round(got[step], 3) == truth[step], (step, got, truth)
    assert (got[1] is None) == other_broken
    # The samples view: file 2's groups are those of its intact JSON, its messages left out (said); or read with
    # U+FFFD where its text is not UTF-8 (said).
    run = open_run(root)
    df = run.collect(lambda: [run.samples.filter(pl.col("step") == 2).select("sample_id", "group_id", "messages")])[0]
    assert dict(zip(df["sample_id"], df["group_id"], strict=True)) == intact
    assert df["messages"].null_count() == (0 if damage == "utf8" else df.height)
    # (With U+FFFD, its text read is no JSON: the marker written before it. That is said too.)
    [problem] = [p for p in run.problems if p.path.endswith("train_2.parquet") and "JSON" not in p.message]
    assert "agent_trajectories" in problem.message and "prompt groups" not in problem.message
    assert (problem.kind == "warning" and "(agent_trajectories: 1): read with U+FFFD" in problem.message) == (
        damage == "utf8"
    ), problem


def _shards(run: Path, rows: int = 2000) -> list[Path]:
    """Two processes' native files of step 0, of one size: a long text column shared by every row first, the
    sample ids (distinct) last, written without statistics or compression, so that the files differ only in
    the ids, beyond their first 64 KiB."""
    train = run / "samples" / "train"
    train.mkdir(parents=True)
    meta = {"format": "runlog", "schema_version": 2, "run_id": "f", "name": "f", "created": "2026-01-01T00:00:00Z"}
    (run / "run.json").write_text(json.dumps(meta))
    out = []
    for proc in (0, 1):
        t = pa.table(
            {
                "prompt": pa.array(["SYSTEM " * 50] * rows),
                "schema_version": pa.array([2] * rows, pa.int32()),
                "step": pa.array([0] * rows, pa.int64()),
                "split": pa.array(["train"] * rows),
                "reward": pa.array([0.5] * rows),
                "sample_id": pa.array([f"p{proc}-{i:05d}" for i in range(rows)]),
            }
        )
        path = train / f"step_00000000.p{proc}.parquet"
        pq.write_table(
            t.replace_schema_metadata({"runlog.schema_version": "2"}),
            path,
            write_statistics=False,
            use_dictionary=False,
            compression="none",
        )
        out.append(path)
    return out


def _copies_said(cli: Any, run: Path) -> list[str]:
    r = cli("summarize", run, "--format", "json")
    assert r.exit_code == 0, r.stderr
    return [line for line in r.stderr.splitlines() if "byte for byte" in line]


def test_genuine_shards_differing_beyond_their_first_pages_are_not_said_copies(cli, tmp_path: Path) -> None:  # noqa: ANN001
    a, b = _shards(tmp_path / "run")
    x, y = a.read_bytes(), b.read_bytes()
    assert len(x) == len(y) and x != y and x[: 64 << 10] == y[: 64 << 10]  # the case
    ids = [set(pq.read_table(p, columns=["sample_id"])["sample_id"].to_pylist()) for p in (a, b)]
    assert not ids[0] & ids[1]
    assert _copies_said(cli, tmp_path / "run") == []


def test_a_copy_of_such_a_shard_is_still_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    a, _b = _shards(tmp_path / "run")
    shutil.copyfile(a, a.with_name("step_00000000.p2.parquet"))
    [said] = _copies_said(cli, tmp_path / "run")
    assert "step_00000000.p2.parquet" in said and "step_00000000.p0.parquet" in said and "count twice" in said
