"""Session 9 audits: file names that look like glob patterns, a corrupt ``group_id`` page in files without
statistics, a tool call whose content is only white space. Each expected figure is counted here from the
data written, not by runlog."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_RUNS

JUNK = b"PAGEJUNK"


def _native_run(run: Path, steps: int, corrupt: dict[int, str], *, statistics: bool = True) -> None:
    """A native run of ``steps`` steps, 8 samples each in two prompt groups (rewards 0, 1, 0, 1: never zero
    advantage); ``corrupt``: step -> the column whose data page is overwritten (the footer stays intact)."""
    (run / "samples" / "train").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "name": "b"}))
    for step in range(steps):
        n = 8
        completion = ["same answer"] * 4 + ["x", "y", "z", "w"]
        group = [f"g{i // 4}" for i in range(n)]
        column = corrupt.get(step)
        if column == "completion":
            completion[0] = JUNK.decode() * 4
        elif column == "group_id":
            group[0] = JUNK.decode() * 4
        table = pa.table(
            {
                "schema_version": pa.array([2] * n, pa.int32()),
                "step": pa.array([step] * n, pa.int64()),
                "split": ["train"] * n,
                "sample_id": [f"s{step}-{i}" for i in range(n)],
                "group_id": group,
                "reward": pa.array([float(i % 2) for i in range(n)]),
                "completion": completion,
            }
        ).replace_schema_metadata({"runlog.schema_version": "2"})
        path = run / "samples" / "train" / f"step_{step:08d}.p0.parquet"
        pq.write_table(table, path, compression="NONE", use_dictionary=False, write_statistics=statistics)
        if column is not None:
            data = bytearray(path.read_bytes())
            at = data.find(JUNK)
            data[at - 4 : at + 32] = b"\xff" * 36
            path.write_bytes(bytes(data))


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("name", ["exp_lr", "exp[lr=1e-6]"])
def test_a_run_folder_named_like_a_glob_keeps_its_good_files_when_one_is_corrupt(tmp_path: Path, cli, name) -> None:
    """The retry that finds which file failed read each file with glob expansion on: in ``exp[lr=1e-6]`` every
    path matched nothing, so every file was called corrupt and left out (one row, for the bad step)."""
    run = tmp_path / name
    _native_run(run, 4, {1: "completion"})
    r = cli("metrics", "diversity", run, "--format", "csv")
    rows = {int(row["step"]): row for row in _csv_rows(r.stdout)}
    # Steps 0, 2, 3: 8 readable texts each; step 1's text could not be read (its 8 samples have no text).
    assert {s: int(row["texts"]) for s, row in rows.items()} == {0: 8, 1: 0, 2: 8, 3: 8}, r.stdout + r.stderr
    bad = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(bad) == 1 and "step_00000001" in bad[0], r.stderr


def test_a_csv_fallback_file_in_a_folder_named_like_a_glob_is_read(tmp_path: Path, cli) -> None:
    """Flink's CSV fallback file was read with glob expansion on: in ``b[1]`` it was "unreadable CSV"."""
    run = tmp_path / "b[1]"
    shutil.copytree(SAMPLE_RUNS / "flink_mixed", run)
    [csv_file] = (run / "flink_logs").glob("*.csv")
    with csv_file.open(newline="") as fh:
        expected = len(list(csv.DictReader(fh)))
    r = cli("summarize", run, "--by", "step", "--split", "train", "--format", "csv")
    assert "unreadable CSV" not in r.stderr, r.stderr
    step = int(csv_file.stem.rsplit("_", 1)[1])
    [row] = [row for row in _csv_rows(r.stdout) if int(row["step"]) == step]
    assert int(row["reward_count"]) + int(row["reward_nan"]) + int(row["reward_null"]) == expected


def test_one_corrupt_group_id_page_leaves_the_other_files_prompt_groups(tmp_path: Path, cli) -> None:
    """Files written without statistics have their ``group_id`` read to count its nulls: one corrupt page failed
    that read for every file, so the run had "no prompt groups" (zero_adv_frac null everywhere, no error)."""
    run = tmp_path / "run"
    _native_run(run, 3, {1: "group_id"}, statistics=False)
    r = cli("summarize", run, "--by", "step", "--format", "json")
    got = {row["step"]: row["zero_adv_frac"] for row in json.loads(r.stdout)}
    # Steps 0 and 2: groups g0 and g1 both rewarded [0, 1, 0, 1], so neither has zero advantage.
    assert got == {0: 0.0, 2: 0.0}, (got, r.stderr)
    assert "step_00000001.p0.parquet" in r.stderr and r.exit_code == 1, r.stderr
    d = cli("metrics", "diversity", run, "--format", "csv")
    rows = {int(row["step"]): row for row in _csv_rows(d.stdout)}
    assert {s: int(row["groups"]) for s, row in rows.items()} == {0: 2, 2: 2}, d.stdout + d.stderr


def test_a_tool_call_whose_content_is_white_space_is_passed_over(tmp_path: Path, cli) -> None:
    """docs/metrics.md: tool calls without words are passed over. A content of "\\n\\n" (as the hermes and Qwen
    tool parsers leave it) was read as the answer: the format failed with 0 tokens."""
    from runlog.writer import RunWriter

    answer = "<think>a b c</think><answer>4</answer>"
    call = [{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{}"}}]
    samples = []
    for i, content in enumerate(["", "\n\n", " \t "]):
        messages = [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "name": "solver", "content": answer},
            {"role": "assistant", "name": "solver", "content": content, "tool_calls": call},
        ]
        samples.append({"sample_id": f"s{i}", "group_id": "g", "reward": 1.0, "messages": messages})
    with RunWriter(tmp_path / "run", roles=["solver"]) as w:
        w.log_samples(0, samples)
    r = cli("metrics", "format", tmp_path / "run", "--per-sample", "--spec", "think-answer-strict", "--format", "csv")
    rows = _csv_rows(r.stdout)
    assert [(row["passed"], row["think_tokens"], row["answer_tokens"]) for row in rows] == [("true", "3", "1")] * 3, (
        r.stdout + r.stderr
    )


def test_an_output_under_a_file_says_the_file_is_not_a_folder(tmp_path: Path, cli) -> None:
    """``-o e.png/x.png`` where e.png is a file said "folder e.png does not exist"."""
    (tmp_path / "e.png").write_bytes(b"x")
    r = cli("plot", SAMPLE_RUNS / "debate_grpo", "-o", tmp_path / "e.png" / "x.png")
    assert r.exit_code == 2
    assert "e.png is a file, not a folder" in r.stderr and "does not exist" not in r.stderr, r.stderr


def test_the_stride_of_a_gap_counts_the_steps_of_unreadable_files() -> None:
    """sample_runs/damaged logs steps 0..5 of train: 1 and 4 unreadable, 3 missing. Its readable steps 0, 2, 5
    made the stride 2: the line joined 0 and 2 across step 1, and the note said "steps 4 missing"."""
    import pyarrow.parquet as pq

    from runlog import open_run
    from runlog.plots import make_figure
    from runlog.plots.figures import note_text

    root = SAMPLE_RUNS / "damaged"
    drawn = set()
    for path in (root / "samples" / "train").glob("*.parquet"):
        try:
            table = pq.read_table(path, columns=["step", "schema_version"])
        except Exception:  # noqa: BLE001  (an unreadable file: its step is not drawn)
            continue
        if max(table.column("schema_version").to_pylist()) <= 2:  # a newer schema's file is left out
            drawn.update(table.column("step").to_pylist())
    assert sorted(drawn) == [0, 2, 5]
    ax = make_figure(open_run(root), "reward", window=1).axes[0]
    assert "gaps: steps 1, 3..4 missing" in note_text(ax), note_text(ax)
    for line in ax.lines:
        xy = line.get_xydata()
        if len(xy) > 1:  # a break (NaN) after every drawn step but the last: no segment joins two of them
            assert all(np.isnan(y) for y in xy[1::2, 1]), xy


def test_a_fleets_metrics_say_each_runs_notes(tmp_path: Path, cli) -> None:
    """A fleet's diversity gave each run's figures but not the notes its run alone gives: texts left out of the
    means over groups (no prompt group), and `split` added where runs have train and eval."""
    from runlog.writer import RunWriter

    with RunWriter(tmp_path / "fleet" / "a") as w:  # 3 texts without group_id or prompt: in no group
        rows = [{"sample_id": f"s{i}", "reward": 1.0, "completion": f"t {i}"} for i in range(5)]
        for row in rows[:2]:  # two texts in one group, three in none
            row["group_id"] = "g"
        w.log_samples(0, rows)
    with RunWriter(tmp_path / "fleet" / "b") as w:
        for split in ("train", "eval"):
            rows = [
                {"sample_id": f"{split}{i}", "group_id": "g", "reward": 1.0, "completion": f"x {i}"} for i in range(2)
            ]
            w.log_samples(0, rows, split=split)
    alone = cli("metrics", "diversity", tmp_path / "fleet" / "a").stderr
    assert "3 text(s) without a prompt group" in alone, alone
    r = cli("metrics", "diversity", str(tmp_path / "fleet" / "*"), "--by", "run", "--format", "csv")
    assert "a: 3 text(s) without a prompt group" in r.stderr, r.stderr
    assert "runs of this fleet have the splits eval, train: `split` was added" in r.stderr, r.stderr
    assert {row["split"] for row in _csv_rows(r.stdout) if row["run"] == "b"} == {"train", "eval"}
