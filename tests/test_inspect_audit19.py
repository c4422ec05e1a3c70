"""inspect and discovery, audit 19: what a run is made of, and what one file's failure says of another.

1. A renamed copy of a native scalars shard (``scalars_old.jsonl``) was read as an AReaL stats file and merged as
   one more shard (summarize's train/loss mean 9.96 where the run's shards say 0.29): left out, and named.
2. Another experiment's ``flink_logs/`` in a sub-folder was pooled into the run without a word: ``nested_run``, as
   a native ``samples/`` tree there is.
3. A row whose ``split`` is null was counted under its file's split (train 80 where 79 rows are train).
4. A closed writer's ``rows_written`` was never held against its files' rows (a shard rewritten with 0 rows:
   valid, exit 0 with --strict).
5. ``--deep``: a file whose text page is corrupt was an error only when another file's number failed (the error
   path read every file whole, texts too): each file is read on the columns the failed read needed.
6. A good Parquet file under a folder whose name is not UTF-8 was called "truncated or corrupt".
8. A corrupt ``roles`` page was said as "corrupt data in roles, prompt" (prompt reads).
And: a run of one unreadable file no longer ends with "the rest of the run was read".

Truths come from pyarrow and json reading the files themselves.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.writer import RunWriter

from conftest import SAMPLE_RUNS, make_flink_run


def base_run(root: Path, steps: range = range(10), procs: tuple[int, ...] = (0, 1), eval_steps=(0, 4, 8)) -> Path:
    """A native run written by the writer: 4 samples a step and process (2 roles), eval at ``eval_steps``, and
    one scalars record a step and process."""
    for p in procs:
        with RunWriter(root, name=root.name, roles=["solver", "judge"], process_index=p) as w:
            for s in steps:
                rows = [
                    {
                        "sample_id": f"p{p}-s{s}-{i}",
                        "group_id": f"g{s}-{i // 2}",
                        "reward": float(i),
                        "prompt": f"prompt {i // 2}",
                        "completion": f"answer {i} " * 20,
                        "roles": [
                            {"role": "solver", "reward": 1.0, "kl": 0.1},
                            {"role": "judge", "reward": 0.5, "kl": 0.2},
                        ],
                    }
                    for i in range(4)
                ]
                w.log_samples(s, rows)
                if s in eval_steps:
                    w.log_samples(s, rows, split="eval")
                w.log_scalars(s, {"train/loss": 1.0 / (s + 1) + p, "train/kl": 0.1})
    return root


def report(cli, *args) -> tuple[int, dict]:
    r = cli("inspect", *args, "--format", "json")
    return r.exit_code, json.loads(r.stdout)


def plain(path: Path) -> Path:
    """Rewrite a Parquet file without compression or dictionaries, so that a column's data page can be hit alone."""
    pq.write_table(pq.read_table(path), path, compression="none", use_dictionary=False)
    return path


def corrupt(path: Path, column: str) -> None:
    """Overwrite the start of one column chunk's data page (the footer and the other columns stay intact), and
    check with pyarrow that this column, and only this one, no longer reads."""
    md = pq.ParquetFile(path).metadata
    [chunk] = [
        md.row_group(0).column(i) for i in range(md.num_columns) if md.row_group(0).column(i).path_in_schema == column
    ]
    data = bytearray(path.read_bytes())
    for k in range(chunk.data_page_offset, chunk.data_page_offset + min(chunk.total_compressed_size, 64)):
        data[k] = 0xAB
    path.write_bytes(bytes(data))
    with pytest.raises(Exception):  # noqa: B017  (pyarrow's error for a bad page varies)
        pq.read_table(path, columns=[column.split(".")[0]])


def reads(path: Path, column: str) -> bool:
    try:
        pq.read_table(path, columns=[column])
    except Exception:  # noqa: BLE001
        return False
    return True


def errors(info: dict) -> dict[str, str]:
    return {p["path"]: p["message"] for p in info["problems"] if p["kind"] != "warning"}


# -- 1. a renamed copy of a scalars shard in a native run --------------------------------------------------------


def test_a_renamed_scalars_copy_in_a_native_run_is_left_out_and_named(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r")
    shards = [root / "scalars.p0.jsonl", root / "scalars.p1.jsonl"]
    records = [[json.loads(line) for line in p.read_text().splitlines()] for p in shards]
    for name in ("scalars_old.jsonl", "scalars.p0.jsonl.bak.jsonl"):
        with open(root / name, "w") as fh:
            for rec in records[0]:
                fh.write(json.dumps({**rec, "train/loss": rec["train/loss"] * 100}) + "\n")

    # Truth (json, the two native shards): a step's value is the mean over its shards.
    per_step = {s: [r["train/loss"] for rs in records for r in rs if r["step"] == s] for s in range(10)}
    means = [sum(v) / len(v) for _, v in sorted(per_step.items())]
    r = cli("summarize", root, "--scalars", "--format", "json")
    [loss] = [row for row in json.loads(r.stdout) if row["key"] == "train/loss"]
    assert loss["last"] == pytest.approx(means[-1]) and loss["mean"] == pytest.approx(sum(means) / len(means))
    assert loss["max"] == pytest.approx(max(means))  # was 34.0 and mean 9.96: the copy merged as a shard
    assert "scalars.p0.jsonl.bak.jsonl and 1 more file(s): flat scalar records" in r.stderr

    code, info = report(cli, root, "--strict")
    said = {p["path"]: p["message"] for p in info["problems"] if p["kind"] == "warning"}
    assert {"scalars_old.jsonl", "scalars.p0.jsonl.bak.jsonl"} <= set(said), said
    assert "left out" in said["scalars_old.jsonl"] and "scalars.pN.jsonl" in said["scalars_old.jsonl"]
    assert info["rows_by_kind"]["scalars"] == sum(len(rs) for rs in records)
    assert cli("inspect", root, "--strict").exit_code == 1  # was exit 0, "no problems found"

    # Passed alone, the file is read: what it holds (json) is what summarize says.
    alone = cli("summarize", root / "scalars_old.jsonl", "--scalars", "--format", "json")
    [row] = [row for row in json.loads(alone.stdout) if row["key"] == "train/loss"]
    assert row["last"] == pytest.approx(records[0][-1]["train/loss"] * 100)


def test_a_native_run_of_samples_reads_another_loggers_stats_as_its_scalars(tmp_path: Path, cli) -> None:
    """With no scalars shard of the writer's, a flat stats file beside a native run's samples (a StatsLogger's
    ``stats.jsonl``) is the run's scalars: read, not left out."""
    root = base_run(tmp_path / "r")
    for shard in root.glob("scalars.p*.jsonl"):
        shard.unlink()
    records = [{"step": s, "actor/loss": 1.0 / (s + 1)} for s in range(10)]
    (root / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    r = cli("summarize", root, "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    [loss] = [row for row in json.loads(r.stdout) if row["key"] == "actor/loss"]
    assert loss["count"] == len(records) and loss["last"] == pytest.approx(records[-1]["actor/loss"])
    assert "left out" not in r.stderr


# -- 2. another experiment's flink_logs/ in a sub-folder ---------------------------------------------------------


def test_a_flink_tree_in_a_sub_folder_is_a_nested_run(tmp_path: Path, cli) -> None:
    root = make_flink_run(tmp_path / "r", steps=range(3))
    make_flink_run(root / "other_exp", steps=range(20, 23))  # other steps: no two files of one step to warn of
    code, info = report(cli, root)
    assert code == 1, info["problems"]  # was exit 0, no word, the other experiment's rows pooled
    [nested] = [p for p in info["problems"] if p["kind"] == "nested_run"]
    assert nested["path"] == "other_exp/flink_logs" and "flink_logs/" in nested["message"]
    # Still read, as said (as a native samples/ tree there is): every row of both trees (pyarrow).
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in root.rglob("*.parquet"))
    assert info["rows_by_kind"]["samples"] == rows
    r = cli("summarize", root)
    assert r.exit_code == 1 and "error: other_exp/flink_logs: a second flink_logs/ tree" in r.stderr
    # The tree at the run's root alone is the run: nothing said.
    shutil.rmtree(root / "other_exp")
    code, info = report(cli, root)
    assert code == 0 and not [p for p in info["problems"] if p["kind"] == "nested_run"]


# -- 3. rows whose split is null ----------------------------------------------------------------------------------


def test_rows_of_no_split_are_not_counted_under_the_files_split(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r")
    path = root / "samples/train/step_00000005.p0.parquet"
    table = pq.read_table(path)
    split = pa.array(["train", None, "train", "train"], table.schema.field("split").type)
    pq.write_table(table.set_column(table.column_names.index("split"), "split", split), path)

    truth = Counter(
        v for p in root.glob("samples/*/*.parquet") for v in pq.read_table(p, columns=["split"])["split"].to_pylist()
    )
    expected = {("?" if k is None else k): n for k, n in truth.items()}
    for deep in ([], ["--deep"]):
        _, info = report(cli, root, *deep)
        assert info["rows_by_split"] == expected, (deep, info["rows_by_split"])  # was train 80, no "?"
    r = cli("summarize", root, "--by", "split", "--format", "json")
    by = {row["split"]: row["reward_count"] for row in json.loads(r.stdout)}
    assert by == dict(truth)  # summarize, as inspect now


# -- 4. a writer's rows_written against its files --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::runlog.writer.WriterWarning")
def test_the_writers_own_outputs_are_no_rows_lost(tmp_path: Path, cli) -> None:
    """No false alarm: two processes with eval steps, a resumed writer appending steps (its state counts its own
    rows, the files hold the earlier writer's too), a resumed writer rewriting steps (the old files put aside in
    .superseded/), a step logged with no rows, and the sample runs."""
    root = base_run(tmp_path / "r", steps=range(6))
    with RunWriter(root, name="r", roles=["solver", "judge"], process_index=0) as w:
        for s in (4, 5, 6, 7):  # 4 and 5 written again, 6 and 7 new
            w.log_samples(s, [{"sample_id": f"late-{s}-{i}", "reward": 1.0} for i in range(3)])
        w.log_samples(8, [])
    state = json.loads((root / ".writer.p0.json").read_text())
    held = sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob("samples/*/*.p0.parquet"))
    assert state["rows_written"] == 12 and held >= 12  # truth: json and pyarrow
    for run in (root, SAMPLE_RUNS / "debate_grpo"):
        _, info = report(cli, run)
        assert not [p for p in info["problems"] if "closed its writer having written" in p["message"]], run


def test_a_shard_emptied_is_a_warning_naming_both_counts(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r")
    victim = root / "samples/train/step_00000003.p0.parquet"
    pq.write_table(pq.read_table(victim).slice(0, 0), victim)
    state = json.loads((root / ".writer.p0.json").read_text())
    held = sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob("samples/*/*.p0.parquet"))
    assert held < state["rows_written"]

    code, info = report(cli, root, "--strict")
    [said] = [p for p in info["problems"] if "closed its writer having written" in p["message"]]
    assert said["path"] == ".writer.p0.json" and said["kind"] == "warning"
    assert f"written {state['rows_written']:,} sample row(s)" in said["message"]
    assert f"hold {held:,}" in said["message"]
    assert cli("inspect", root, "--strict").exit_code == 1  # was exit 0: valid, no problems
    assert cli("inspect", root).exit_code == 0  # a warning


# -- 5. --deep: a file's verdict does not hang on another file's failure ------------------------------------------


def test_deep_reads_no_text_of_a_file_because_another_files_number_failed(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r")
    texty = plain(root / "samples/train/step_00000005.p0.parquet")
    numbers = plain(root / "samples/train/step_00000002.p1.parquet")
    corrupt(texty, "completion")
    assert reads(texty, "reward") and reads(texty, "roles") and reads(texty, "sample_id")  # truth: numbers read
    code, alone = report(cli, root, "--deep")
    assert code == 0 and not errors(alone)  # --deep reads no text: the text page is not read

    corrupt(numbers, "reward")
    code, info = report(cli, root, "--deep")
    said = errors(info)
    assert code == 1 and list(said) == ["samples/train/step_00000002.p1.parquet"], said  # texty was an error too
    assert "corrupt data in reward (" in said["samples/train/step_00000002.p1.parquet"]
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob("samples/*/*.parquet") if p != numbers)
    assert info["rows_by_kind"]["samples"] == rows
    # A command that reads the text finds it: the file's own verdict, said of it alone.
    r = cli("metrics", "diversity", root, "--by", "step", "--format", "json")
    assert "samples/train/step_00000005.p0.parquet: its text could not be read (completion" in r.stderr, r.stderr


# -- 6. a good file under a folder whose name is not UTF-8 ---------------------------------------------------------


def test_a_parquet_file_whose_path_is_not_utf8_is_said_so_not_corrupt(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r", procs=(0,))
    folder = os.path.join(os.fsencode(root), b"samples", b"tr\xffain")
    try:
        os.mkdir(folder)
    except (OSError, ValueError):
        pytest.skip("this file system takes no file name that is not UTF-8")
    good = root / "samples/train/step_00000004.p0.parquet"
    target = os.path.join(folder, b"step_00000004.p0.parquet")
    shutil.copyfile(good, target)
    with open(target, "rb") as fh:
        assert pq.read_table(fh).num_rows == 4  # truth: a whole file, read by pyarrow from its handle
    code, info = report(cli, root)
    [(path, message)] = [(k, v) for k, v in errors(info).items() if "ain/step_00000004" in k]
    assert code == 1 and "not valid UTF-8" in message and "corrupt" not in message, message
    assert "truncated" not in message and "codec" not in message


# -- 8. the columns a corrupt page is said to be in ----------------------------------------------------------------


def test_a_corrupt_roles_page_is_said_of_roles_alone(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r")
    path = plain(root / "samples/train/step_00000004.p0.parquet")
    corrupt(path, "roles.list.element.reward")
    assert reads(path, "prompt") and not reads(path, "roles")  # truth (pyarrow)
    _, info = report(cli, root, "--deep")
    message = errors(info)["samples/train/step_00000004.p0.parquet"]
    assert "corrupt data in roles (the footer is intact)" in message, message  # was "in roles, prompt"


# -- the verdict of a run none of whose files could be read --------------------------------------------------------


def test_a_run_of_one_unreadable_file_has_no_rest(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r", procs=(0,))
    path = root / "samples/train/step_00000004.p0.parquet"
    data = bytearray(path.read_bytes())
    data[4:200] = b"\xab" * 196
    path.write_bytes(bytes(data))
    with pytest.raises(Exception):  # noqa: B017
        pq.read_table(path)
    r = cli("inspect", path, "--deep")
    assert r.exit_code == 1 and r.stdout.strip().splitlines()[-1] == "1 problem(s) found; no file could be read."
    r = cli("inspect", root, "--deep")
    assert r.stdout.strip().splitlines()[-1] == "1 problem(s) found; the rest of the run was read."
