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


def _eval_every_5(root: Path) -> Path:
    """Two writer processes: train/loss every step, eval/acc at steps 4 and 9 only (past each shard's first lines)."""
    for p in (0, 1):
        with RunWriter(root, name=root.name, process_index=p) as w:
            for s in range(10):
                w.log_samples(s, [{"sample_id": f"p{p}-{s}", "reward": 1.0, "completion": "c"}])
                w.log_scalars(s, {"train/loss": 0.1 * s + p})
                if s % 5 == 4:
                    w.log_scalars(s, {"eval/acc": 0.5 + p / 10})
    return root


@pytest.mark.parametrize("case", ["partial_copy", "other_logger_same_key", "other_logger_more_keys"])
def test_a_flat_file_sharing_a_key_logged_late_in_the_shards_is_left_out(tmp_path: Path, cli, case: str) -> None:
    """Keys are compared over the whole files: eval/acc, logged at steps 4 and 9 only, is in no shard's first lines;
    a flat file of it (the eval lines of a shard copied aside; another logger's eval/acc) was merged as one more
    process (eval/acc 0.5333 or 0.6667 where the writer's mean is 0.55), without a word."""
    root = _eval_every_5(tmp_path / "r")
    shard = [json.loads(line) for line in (root / "scalars.p0.jsonl").read_text().splitlines()]
    if case == "partial_copy":
        lines = [r for r in shard if "eval/acc" in r]
    else:
        lines = [{"step": s, "eval/acc": 0.9} for s in (4, 9)]
        if case == "other_logger_more_keys":
            lines = [{**r, "actor/entropy": 1.5} for r in lines]
    (root / "extra_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    # Truth (json, the two shards): a step's value is the mean over the shards that log it.
    per_step: dict[int, list[float]] = {}
    for p in (0, 1):
        for rec in map(json.loads, (root / f"scalars.p{p}.jsonl").read_text().splitlines()):
            if "eval/acc" in rec:
                per_step.setdefault(rec["step"], []).append(rec["eval/acc"])
    means = [sum(v) / len(v) for _, v in sorted(per_step.items())]
    r = cli("summarize", root, "--scalars", "--format", "json")
    [acc] = [row for row in json.loads(r.stdout) if row["key"] == "eval/acc"]
    assert acc["count"] == len(means) and acc["mean"] == pytest.approx(sum(means) / len(means), rel=1e-12)
    assert "extra_stats.jsonl: flat scalar records" in r.stderr and "left out" in r.stderr, r.stderr
    assert "(eval/acc)" in r.stderr
    if case == "other_logger_more_keys":
        assert "its other keys are not read either (actor/entropy)" in r.stderr, r.stderr


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


# -- review of the above ------------------------------------------------------------------------------------------
# a. A Flink output folder's one flink_logs/ below another logger's file (stats.jsonl at the top) was a nested_run
#    (exit 1 on every command): a flink_logs/ tree is nested only below another flink_logs/ of the run.
# b. Another logger's stats file of keys of its own beside native shards was left out (eval/acc lost): only a file
#    holding the shards' keys is a copy; a --keys error comes after the problems that name a file left out.
# c. Rows of no split made a split '?' with steps and a false gap warning (which hid a rows_written loss).
# d. A file written without statistics: its null count of split is unknown, not zero.
# e. summarize --scalars of a run whose scalars files give no metric: exit 1, one line (was an empty table, 0).
# f. --deep on a Flink file with a corrupt solver_reward page names the column.


def flink_rows(root: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in root.rglob("*.parquet"))


def stats_file(path: Path, key: str = "loss", steps: range = range(3)) -> list[dict]:
    records = [{"global_step": s, key: 0.1 * s} for s in steps]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def nested(info: dict) -> list[str]:
    return sorted(p["path"] for p in info["problems"] if p["kind"] == "nested_run")


def test_a_flink_output_folders_one_flink_tree_below_other_files_is_the_run(tmp_path: Path, cli) -> None:
    # stats.jsonl at the top, the run's Flink tree in outputs/ (was: "a second flink_logs/ tree", exit 1).
    e = tmp_path / "e"
    make_flink_run(e / "outputs", steps=range(3))
    stats_file(e / "stats.jsonl")
    code, info = report(cli, e)
    assert code == 0 and nested(info) == [], info["problems"]
    assert info["rows_by_kind"]["samples"] == flink_rows(e)  # truth: pyarrow
    assert cli("summarize", e).exit_code == 0
    # An evaluation's stats beside a train folder holding the Flink tree: one run.
    x = tmp_path / "x"
    make_flink_run(x / "exp" / "train", steps=range(3))
    stats_file(x / "exp" / "eval_stats.jsonl", key="eval/acc")
    code, info = report(cli, x)
    assert code == 0 and nested(info) == [], info["problems"]


def test_a_second_flink_tree_no_shallower_than_another_is_still_a_nested_run(tmp_path: Path, cli) -> None:
    # Beside a native run's samples/ and manifest: the root's flink_logs/ is the run's, other_exp's is not.
    root = base_run(tmp_path / "r", steps=range(3), procs=(0,))
    make_flink_run(root, steps=range(3))
    code, info = report(cli, root)
    assert code == 0 and nested(info) == [], info["problems"]
    make_flink_run(root / "other_exp", steps=range(20, 23))
    code, info = report(cli, root)
    assert code == 1 and nested(info) == ["other_exp/flink_logs"], info["problems"]
    # Two experiments' trees side by side, pooled into one run by a file beside them: both said.
    two = tmp_path / "two"
    make_flink_run(two / "a", steps=range(3))
    make_flink_run(two / "b", steps=range(20, 23))
    stats_file(two / "stats.jsonl")
    code, info = report(cli, two)
    assert code == 1 and nested(info) == ["a/flink_logs", "b/flink_logs"], info["problems"]
    assert info["rows_by_kind"]["samples"] == flink_rows(two)


def test_another_loggers_stats_of_keys_of_its_own_beside_native_shards_is_read(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r", steps=range(4), procs=(0,))
    records = [{"global_step": s, "eval/acc": 0.25 * s} for s in range(4)]
    (root / "eval_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    acc = [r["eval/acc"] for r in records]  # truth: json
    r = cli("summarize", root, "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = {row["key"]: row for row in json.loads(r.stdout)}
    assert rows["eval/acc"]["count"] == 4 and rows["eval/acc"]["last"] == pytest.approx(acc[-1])  # was left out
    assert rows["eval/acc"]["mean"] == pytest.approx(sum(acc) / len(acc))
    assert "train/loss" in rows and "left out" not in r.stderr
    r = cli("summarize", root, "--scalars", "--keys", "eval/acc", "--format", "json")
    assert r.exit_code == 0 and [row["key"] for row in json.loads(r.stdout)] == ["eval/acc"], r.stderr
    code, info = report(cli, root, "--strict")
    assert code == 0, info["problems"]


def test_a_keys_error_comes_after_the_file_left_out_that_holds_the_key(tmp_path: Path, cli) -> None:
    """A renamed copy of a shard (its keys, and one more) is left out; a --keys of the key only it holds is a usage
    error, after the warning that names the file."""
    root = base_run(tmp_path / "r", steps=range(4), procs=(0,))
    shard = [json.loads(line) for line in (root / "scalars.p0.jsonl").read_text().splitlines()]
    (root / "scalars_old.jsonl").write_text("".join(json.dumps({**r, "old/only": 1.0}) + "\n" for r in shard))
    r = cli("summarize", root, "--scalars", "--keys", "old/only")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: --keys 'old/only'"), lines
    said = [i for i, line in enumerate(lines) if line.startswith("warning: scalars_old.jsonl: flat scalar records")]
    assert said and said[0] < len(lines) - 1 and "train/loss" in lines[said[0]], lines


def test_rows_of_no_split_make_no_split_of_their_own(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r", steps=range(8), procs=(0,), eval_steps=())
    for s in (1, 2, 5):
        path = root / f"samples/train/step_{s:08d}.p0.parquet"
        table = pq.read_table(path)
        split = pa.array(["train", None, "train", "train"], table.schema.field("split").type)
        pq.write_table(table.set_column(table.column_names.index("split"), "split", split), path)
    truth = Counter(
        v for p in root.glob("samples/*/*.parquet") for v in pq.read_table(p, columns=["split"])["split"].to_pylist()
    )
    _, info = report(cli, root)
    assert info["rows_by_split"] == {("?" if k is None else k): n for k, n in truth.items()}
    assert set(info["steps"]) == set(info["step_gaps"]) == set(info["step_stride"]) == {"train"}, info["step_gaps"]
    assert info["step_gaps"]["train"] == []
    assert not [p for p in info["problems"] if "missing" in p["message"]], info["problems"]  # was split '?': 3-4
    # The Splits table still shows those rows (it lost them once they had no steps: 29 of 32 rows shown).
    text = cli("inspect", root).stdout
    table = text[text.index("Splits") :]
    table = table[: table.index("└")]
    shown = {
        cells[0]: int(cells[3].replace(",", ""))
        for line in table.splitlines()
        if line.startswith("│") and len(cells := [c.strip() for c in line.strip("│").split("│")]) == 6
    }
    assert shown == info["rows_by_split"], text
    # A row lost besides (a step file rewritten with fewer rows): the writer's count says it, no gap hides it.
    path = root / "samples/train/step_00000005.p0.parquet"
    pq.write_table(pq.read_table(path).slice(0, 3), path)
    state = json.loads((root / ".writer.p0.json").read_text())
    held = sum(pq.ParquetFile(p).metadata.num_rows for p in root.glob("samples/*/*.p0.parquet"))
    assert held < state["rows_written"]
    _, info = report(cli, root)
    [said] = [p for p in info["problems"] if "closed its writer having written" in p["message"]]
    assert f"hold {held:,}" in said["message"]


def test_a_file_without_statistics_counts_its_rows_of_no_split_apart(tmp_path: Path, cli) -> None:
    root = base_run(tmp_path / "r", steps=range(6), procs=(0,), eval_steps=(0, 4))
    path = root / "samples/train/step_00000002.p0.parquet"
    table = pq.read_table(path)
    split = pa.array([None, "train", "train", "train"], table.schema.field("split").type)
    pq.write_table(table.set_column(table.column_names.index("split"), "split", split), path, write_statistics=False)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).statistics is None  # truth: no statistics
    truth = Counter(
        v for p in root.glob("samples/*/*.parquet") for v in pq.read_table(p, columns=["split"])["split"].to_pylist()
    )
    for deep in ([], ["--deep"]):
        _, info = report(cli, root, *deep)
        assert info["rows_by_split"] == {("?" if k is None else k): n for k, n in truth.items()}, deep  # was train 23


def test_summarize_scalars_of_a_run_whose_scalars_give_no_metric_exits_1(tmp_path: Path, cli) -> None:
    root = tmp_path / "c"
    with RunWriter(root, name="c") as w:
        for s in range(3):
            w.log_samples(s, [{"reward": 1.0, "prompt": "p", "completion": "c"}])
    torn = '{"step": 0, "loss": 0.'
    (root / "scalars.p0.jsonl").write_text(torn)
    with pytest.raises(json.JSONDecodeError):
        json.loads(torn)  # truth: no record to read
    r = cli("summarize", root, "--scalars", "--format", "csv")
    assert r.exit_code == 1 and r.stdout == "", r.stdout  # was an empty table, exit 0
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "no scalar metric could be read" in lines[-1], lines
    assert any("scalars.p0.jsonl" in line and "torn" in line for line in lines[:-1]), lines
    # With no scalars file at all: a usage error, as docs/cli.md says.
    (root / "scalars.p0.jsonl").unlink()
    r = cli("summarize", root, "--scalars")
    assert r.exit_code == 2 and "this run has no scalar metrics" in r.stderr


def test_deep_names_the_flink_column_behind_a_corrupt_role(tmp_path: Path, cli) -> None:
    root = make_flink_run(tmp_path / "r", steps=range(4))
    path = plain(root / "flink_logs/batch_debug_data_train_2.parquet")
    corrupt(path, "solver_reward")
    assert reads(path, "verifier_reward") and reads(path, "reward") and reads(path, "trajectory")  # truth
    code, info = report(cli, root, "--deep")
    message = errors(info)["flink_logs/batch_debug_data_train_2.parquet"]
    assert code == 1 and "corrupt data in solver_reward (the footer is intact)" in message, message
