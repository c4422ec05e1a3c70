"""Rows that would count twice are said: two files of one split, step and process (a copy left in the run,
a step written twice), and a file whose rows are of another split than its folder tells (they count as their
own split, in inspect as in summarize)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from runlog import open_run

from conftest import SAMPLE_RUNS


def _rows(paths) -> int:
    return sum(pq.read_metadata(p).num_rows for p in paths)


def test_a_backup_copy_inside_the_run_is_said_for_every_file(tmp_path, cli):
    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    shutil.copytree(run / "samples", run / "backup" / "samples")
    opened = open_run(run, cache=False)
    said = [p for p in opened.problems if "both files are read" in p.message]
    originals = sorted((run / "samples").rglob("*.parquet"))
    assert len(said) == len(originals)  # one per pair of files
    first = said[0]
    assert first.kind == "warning" and "both files are read, so if one is a copy of the other" in first.message
    result = cli("summarize", run, "--by", "split", "-f", "json")
    assert "both files are read" in result.stderr
    counted = sum(r["reward_count"] + r["reward_nan"] + r["reward_null"] for r in json.loads(result.stdout))
    assert counted == 2 * _rows(originals)  # read as found: the copy counts, and that is said


def test_a_folder_whose_rows_are_of_another_split_counts_as_its_rows(tmp_path, cli):
    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    shutil.copytree(run / "samples" / "train", run / "samples" / "train2")
    nostats = run / "samples" / "train2" / "step_00000005.p0.parquet"  # no statistics: its column is read
    table = pq.read_table(nostats)
    pq.write_table(table, nostats, write_statistics=[c for c in table.column_names if c != "split"])
    result = cli("inspect", run, "--format", "json")
    info = json.loads(result.stdout)
    assert sorted(info["step_gaps"]) == ["eval", "train"]  # no split 'train2': its rows are train's
    moved = {p["path"] for p in info["problems"] if "in the folder of split 'train2'" in p["message"]}
    copied = sorted(run.joinpath("samples", "train2").glob("*.parquet"))
    assert moved == {f"samples/train2/{f.name}" for f in copied}  # the file without statistics too
    said = {p["message"] for p in info["problems"]}
    assert "in the folder of split 'train2' but its rows are of split 'train': they count as 'train'" in said
    assert any(m.startswith("the same split 'train', step 0, process 0 as samples/") for m in said)
    summary = cli("summarize", run, "--by", "split", "-f", "json")
    assert sorted(r["split"] for r in json.loads(summary.stdout)) == ["eval", "train"]


def test_a_flink_step_written_twice_is_said(tmp_path):
    run = shutil.copytree(SAMPLE_RUNS / "flink_mixed", tmp_path / "run")
    logs = run / "flink_logs"
    shutil.copy(logs / "batch_debug_data_train_15.parquet", logs / "batch_debug_data_train_15_final.parquet")
    opened = open_run(run, cache=False)
    [p] = [p for p in opened.problems if "both files are read" in p.message]
    assert {p.path, p.message.split(" as ")[1].split(":")[0]} == {
        "flink_logs/batch_debug_data_train_15_final.parquet",
        "flink_logs/batch_debug_data_train_15.parquet",
    }
    assert p.message.startswith("the same split 'train', step 15 as ")


def test_the_sample_runs_have_no_second_files():
    for name in ("debate_grpo", "flink_mixed", "damaged"):
        opened = open_run(SAMPLE_RUNS / name, cache=False)
        said = ("both files are read", "in the folder of split", "no file for step", "missing optional")
        assert not [p for p in opened.problems if any(x in p.message for x in said)]


def test_a_file_without_a_column_the_others_have_is_said(tmp_path, cli):
    """runlog's writer writes every column: a native file without ``roles`` (others have it) would put its rows
    under no role unsaid. A column no file has is nobody's loss: nothing is said."""
    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    damaged = run / "samples" / "train" / "step_00000003.p0.parquet"
    pq.write_table(pq.read_table(damaged).drop(["roles", "messages"]), damaged)
    for other in sorted((run / "samples").rglob("*.parquet")):
        table = pq.read_table(other)
        pq.write_table(table.drop(["env_name"]), other)  # gone everywhere: not said
    opened = open_run(run, cache=False)
    said = [(p.path, p.kind, p.message) for p in opened.problems if "missing optional" in p.message]
    assert said == [
        (
            "samples/train/step_00000003.p0.parquet",
            "warning",
            "missing optional column(s) roles, messages that other files of the run have; read as null: its rows "
            "have no per-role data",
        )
    ]
    result = cli("summarize", run, "--split", "train", "--steps", "3", "-f", "json")
    assert "missing optional column(s) roles, messages" in result.stderr
    unknown = [r for r in json.loads(result.stdout) if r["role"] is None]
    assert unknown and unknown[0]["reward_count"] + unknown[0]["reward_nan"] + unknown[0]["reward_null"] == 16


def test_a_lost_shard_between_steps_is_said_and_the_last_steps_are_not(tmp_path):
    """Process 1 wrote every train step but 6 and 9: one warning for the split and process, naming both.
    Process 1's files of the last two steps gone too: not said (fewer hosts after a resume, or a run still
    being written). A file there but unreadable is said as unreadable, not as missing."""
    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    train = run / "samples" / "train"
    for step in (6, 9, 30, 31):
        (train / f"step_{step:08d}.p1.parquet").unlink()
    (train / "step_00000012.p1.parquet").write_bytes(b"PAR1 torn")
    opened = open_run(run, cache=False)
    said = [(p.path, p.message) for p in opened.problems if "no file for step" in p.message]
    assert said == [
        (
            "samples/train",
            "process 1 wrote steps 0 to 29 of split 'train' but no file for step(s) 6, 9: those steps hold none "
            "of its samples (their other shards are read)",
        )
    ]
    assert [p.path for p in opened.errors] == ["samples/train/step_00000012.p1.parquet"]


def test_inspect_deep_counts_repeated_sample_ids(tmp_path, cli):
    """A shard copied under another process's name repeats every id of it: ``inspect --deep`` reads the ids
    and says how many (counted here from the file); the default inspect reads no data and cannot tell."""
    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    train = run / "samples" / "train"
    shutil.copy(train / "step_00000005.p0.parquet", train / "step_00000005.p2.parquet")
    ids = pq.read_table(train / "step_00000005.p0.parquet", columns=["sample_id"])["sample_id"].to_pylist()
    result = cli("inspect", run, "--deep", "--format", "json")
    [said] = [p for p in json.loads(result.stdout)["problems"] if "occur more than once" in p["message"]]
    assert said["kind"] == "warning"
    assert said["message"].startswith(f"{len(set(ids))} sample id(s) occur more than once ({len(ids)} extra row(s);")
    assert "samples/train/step_00000005.p0.parquet, samples/train/step_00000005.p2.parquet" in said["message"]
    plain = cli("inspect", SAMPLE_RUNS / "debate_grpo", "--deep", "--format", "json")
    assert not [p for p in json.loads(plain.stdout)["problems"] if "occur more than once" in p["message"]]


def test_a_forced_layout_that_fits_none_of_the_files_is_said_first(cli):
    """--layout verifiers on a native run reads its JSONL as verifiers rows (as asked), saying first that every
    file looks like runlog's; --layout flink, whose folders split the run in two, says it in the error."""
    r = cli("summarize", SAMPLE_RUNS / "debate_grpo", "--layout", "verifiers")
    first = [line for line in r.stderr.splitlines() if line.startswith("warning:")][0]
    assert first == (
        "warning: .: --layout verifiers: none of the 2 files looks like verifiers data (2 look like runlog's): "
        "read as verifiers, as asked; drop --layout to read them as runlog"
    )
    r = cli("inspect", SAMPLE_RUNS / "debate_grpo", "--layout", "flink")
    assert r.exit_code == 2
    # The forced layout is said first, with the way out; the runs it makes of the files after it.
    assert (
        f"Error: {SAMPLE_RUNS / 'debate_grpo'}: --layout flink: none of the first 64 files looks like flink" in r.stderr
    )
    assert "drop --layout to read them as runlog (read as flink, its files make 2 runs:" in r.stderr
    r = cli("inspect", SAMPLE_RUNS / "debate_grpo", "--layout", "runlog")  # the right one: nothing said
    assert "looks like" not in r.stdout + r.stderr


def test_a_file_of_rows_of_two_splits_keeps_them_apart(tmp_path, cli):
    """samples/train/step_4.p0 holds train and eval rows (the eval folder gone): said, and summarize keeps
    the splits apart (split added as a key), as the rows say."""
    import pyarrow as pa

    run = shutil.copytree(SAMPLE_RUNS / "debate_grpo", tmp_path / "run")
    shutil.rmtree(run / "samples" / "eval")
    path = run / "samples" / "train" / "step_00000004.p0.parquet"
    table = pq.read_table(path)
    half = len(table) // 2
    splits = pa.array(["train"] * half + ["eval"] * (len(table) - half))
    table = table.set_column(table.schema.get_field_index("split"), table.schema.field("split"), splits)
    pq.write_table(table, path)
    result = cli("summarize", run, "--by", "role", "-f", "json")
    assert "in the folder of split 'train' but its rows are of splits 'eval', 'train': each counts as its own" in (
        result.stderr
    )
    assert "note: this run has the splits eval, train: `split` was added to the keys" in result.stderr
    rows = json.loads(result.stdout)
    assert {r["split"] for r in rows} == {"eval", "train"}
    solver = [r for r in rows if r["split"] == "eval" and r["role"] == "solver"][0]
    assert solver["reward_count"] + solver["reward_nan"] + solver["reward_null"] == len(table) - half
