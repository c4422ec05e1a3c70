"""Discovery and ``inspect`` over hand-built runs: rows, steps and gaps, roles, and every kind of bad input."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog import open_run
from runlog.analysis.inspect import inspect_run, step_gaps

from conftest import flink_table, make_flink_run, make_native_run, native_rows, write_native_samples


def test_step_gaps_uses_the_stride():
    assert step_gaps([0, 1, 2, 5, 6, 9]) == (1, [[3, 4], [7, 8]])
    assert step_gaps([0, 25, 50, 100]) == (25, [[75, 75]])
    assert step_gaps([3]) == (1, [])
    assert step_gaps([]) == (1, [])


def test_native_run_shards_are_merged(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=range(3), n=8, processes=2))
    df = run.samples.collect()
    assert df.height == 24
    assert sorted(df["source"].unique().to_list())[:2] == [
        "samples/train/step_00000000.p0.parquet",
        "samples/train/step_00000000.p1.parquet",
    ]
    assert df.group_by("step").len().sort("step")["len"].to_list() == [8, 8, 8]
    roles = run.roles.collect()
    assert roles.height == 48 and set(roles["role"]) == {"solver", "verifier"}
    sc = run.scalars.collect()
    assert set(sc["key"]) == {"train/loss", "train/reward__count"}
    assert sc.filter(pl.col("key") == "train/loss").sort("step")["value"].to_list() == pytest.approx([1.0, 0.5, 1 / 3])


def test_inspect_report_of_a_clean_native_run(tmp_path):
    run = open_run(make_native_run(tmp_path / "r", steps=[0, 1, 2, 4], n=8))
    r = inspect_run(run)
    assert r["schema_versions"] == {"2": 4}  # the 4 sample files (a scalars file states no version)
    assert r["rows_by_kind"] == {"samples": 32, "scalars": 4}
    assert r["rows"] == 36
    assert r["steps"] == {"train": [0, 4]}
    assert r["step_gaps"] == {"train": [[3, 3]]}
    assert r["roles"] == ["solver", "verifier"]
    # Footers give values and nulls; NaN is unknown (None) until --deep reads the numeric columns.
    assert r["numeric_source"] == "footers"
    assert r["numeric"]["reward"] == {"rows": 32, "null": 0, "nan": None, "inf": None, "valid": None}
    deep = inspect_run(run, deep=True)
    assert deep["numeric_source"] == "data"
    assert deep["numeric"]["reward"] == {"rows": 32, "null": 0, "nan": 0, "inf": 0, "valid": 32}
    assert deep["numeric"]["solver/kl"] == {"rows": 32, "null": 0, "nan": 0, "inf": 0, "valid": 32}
    assert r["exceptions"] == 0
    # Step 3's gap is a warning (``--strict`` fails on it), the run's only problem.
    assert [p["message"] for p in r["problems"]] == ["split 'train': 1 step(s) missing (3): no file holds them"]
    assert r["errors"] == 0 and r["warnings"] == 1
    assert {f["path"] for f in r["files"]} >= {"run.json", "scalars.p0.jsonl"}
    json.dumps(r.as_dict(), allow_nan=False)  # the report is plain JSON


def test_nan_and_null_rewards_are_counted_apart(tmp_path):
    root = make_native_run(tmp_path / "r", steps=[0], n=4)
    rows = native_rows(1, 4)
    rows[0]["reward"] = float("nan")
    rows[1]["reward"] = None
    rows[2]["roles"][0]["kl"] = float("nan")
    rows[3]["exception"] = "Traceback: boom"
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows)
    r = inspect_run(open_run(root), deep=True)
    assert r["numeric"]["reward"] == {"rows": 8, "null": 1, "nan": 1, "inf": 0, "valid": 6}
    assert r["numeric"]["solver/kl"]["nan"] == 1
    assert r["exceptions"] == 1
    shallow = inspect_run(open_run(root))
    assert shallow["numeric"]["reward"] == {"rows": 8, "null": 1, "nan": None, "inf": None, "valid": None}
    assert shallow["exceptions"] == 1  # from footer null counts


def test_infinite_values_are_counted_and_said(tmp_path, cli):
    """+inf and -inf are valid numbers (summarize counts them): --deep counts them apart, against an
    independent count of the written file, and the table says what they do to a mean."""
    root = make_native_run(tmp_path / "r", steps=[0], n=4)
    rows = native_rows(1, 6)
    rows[0]["reward"] = float("inf")
    rows[1]["reward"] = float("-inf")
    rows[2]["reward"] = float("nan")
    rows[3]["roles"][0]["kl"] = float("-inf")
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows)
    rewards = pl.read_parquet(root / "samples" / "train" / "*.parquet")["reward"]
    assert rewards.is_infinite().sum() == 2  # the independent count
    r = inspect_run(open_run(root), deep=True)
    assert r["numeric"]["reward"] == {"rows": 10, "null": 0, "nan": 1, "inf": 2, "valid": 9}
    assert r["numeric"]["solver/kl"]["inf"] == 1 and r["numeric"]["solver/reward"]["inf"] == 0
    assert inspect_run(open_run(root))["numeric"]["reward"]["inf"] is None  # footers cannot tell
    res = cli("inspect", root, "--deep")
    assert res.exit_code == 0, res.output
    assert "reward, solver/kl: some values are +inf or -inf" in " ".join(res.output.split())


def test_deep_counts_every_numeric_column_plain_inspect_lists(tmp_path):
    """--deep read only the canonical columns: a trainer's own numeric column (listed by plain inspect) left
    the table, its NaN and ±inf never counted. Rows and nulls count the files that hold it, as the footers
    do; NaN and ±inf against an independent count of the written values."""
    root = make_native_run(tmp_path / "r", steps=[0], n=4)  # step 0 has no extra columns
    path = write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", native_rows(1, 5))
    table = pq.read_table(path)
    table = table.append_column("num_turns", pa.array([1.0, float("nan"), float("inf"), None, 2.0]))
    pq.write_table(table.append_column("seconds", pa.array([3, 4, None, 5, 6])), path)
    written = pl.read_parquet(path)
    assert written["num_turns"].is_nan().sum() == 1 and written["num_turns"].is_infinite().sum() == 1
    plain = inspect_run(open_run(root))["numeric"]
    deep = inspect_run(open_run(root), deep=True)["numeric"]
    assert set(plain) <= set(deep)
    assert deep["num_turns"] == {"rows": 5, "null": 1, "nan": 1, "inf": 1, "valid": 3}
    assert deep["seconds"] == {"rows": 5, "null": 1, "nan": 0, "inf": 0, "valid": 4}
    assert (plain["num_turns"]["rows"], plain["num_turns"]["null"]) == (5, 1)


def test_deep_counts_each_reward_components_nan(tmp_path):
    """A component's NaN is left out of its mean (summarize): --deep counts it, per component, against an
    independent count of the written values."""
    root = make_native_run(tmp_path / "r", steps=[0], n=4)
    rows = native_rows(1, 5)
    rows[0]["reward_components"] = [{"name": "correct", "value": float("nan")}, {"name": "format", "value": None}]
    rows[1]["reward_components"] = [{"name": "correct", "value": float("-inf")}]
    rows[2]["reward_components"] = []
    write_native_samples(root / "samples" / "train" / "step_00000001.p0.parquet", rows)
    written = pl.read_parquet(root / "samples" / "train" / "*.parquet")
    parts = written["reward_components"].explode().struct.unnest()
    correct = parts.filter(pl.col("name") == "correct")["value"].drop_nulls()
    n = written.height  # rows: every sample; null: the samples without a value (absent or null)
    want = {"rows": n, "null": n - correct.len(), "nan": int(correct.is_nan().sum()), "inf": 1}
    want["valid"] = want["rows"] - want["null"] - want["nan"]
    deep = inspect_run(open_run(root), deep=True)["numeric"]
    assert deep["component/correct"] == want and (n, want["null"], want["nan"]) == (9, 1, 1)
    assert deep["component/format"] == {"rows": 9, "null": 3, "nan": 0, "inf": 0, "valid": 6}


def test_truncated_parquet_is_reported_and_the_rest_is_read(tmp_path):
    root = make_native_run(tmp_path / "r", steps=range(3), n=4)
    f = root / "samples" / "train" / "step_00000001.p0.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    run = open_run(root)
    [p] = run.errors
    assert p.kind == "unreadable" and p.path.endswith("step_00000001.p0.parquet")
    assert "truncated or corrupt" in p.message
    assert run.samples.collect().height == 8
    r = inspect_run(run)
    assert r["step_gaps"] == {"train": [[1, 1]]}


def test_bad_and_torn_jsonl_lines(tmp_path):
    root = make_native_run(tmp_path / "r", steps=range(3), n=4, scalars=False)
    (root / "scalars.p0.jsonl").write_bytes(
        b'{"step": 0, "time": 1.0, "loss": 1.0}\n'
        b'{"step": 1, "time": 2.0, "loss": \n'
        b'{"step": 2, "time": 3.0, "loss": NaN}\n'
        b'\xff\xfe{"step": 3}\n'
        b"[1, 2]\n"
        b'{"step": 4, "time": 5.0, "lo'
    )
    run = open_run(root)
    by_kind = {(p.kind, p.message.split(":")[0]) for p in run.problems}
    assert ("bad_line", "line 2") in by_kind
    assert ("bad_line", "line 4") in by_kind
    assert ("bad_line", "line 5") in by_kind
    assert ("warning", "line 6") in by_kind
    assert any("invalid UTF-8" in p.message for p in run.problems)
    assert any("torn last line" in p.message for p in run.warnings)
    sc = run.scalars.collect().sort("step")
    assert sc["step"].to_list() == [0, 2]
    assert sc["value"][1] != sc["value"][1]  # NaN kept as NaN


def test_missing_column_wrong_type_and_unmatched_files(tmp_path):
    root = make_native_run(tmp_path / "r", steps=[0], n=4)
    table = pa.Table.from_pylist(native_rows(1, 4)).drop_columns(["reward"])
    table = table.replace_schema_metadata({"runlog.schema_version": "2"})
    pq.write_table(table, root / "samples" / "train" / "step_00000001.p0.parquet")
    bad = (
        pa.Table.from_pylist(native_rows(2, 4))
        .set_column(6, "reward", pa.array([{"x": 1.0}] * 4))
        .replace_schema_metadata({"runlog.schema_version": "2"})
    )
    pq.write_table(bad, root / "samples" / "train" / "step_00000002.p0.parquet")
    (root / "notes.txt").write_text("hello")
    (root / "samples" / "train" / ".step_00000003.p0.parquet.tmp").write_bytes(b"PAR1")
    run = open_run(root)
    kinds = {p.kind: p for p in run.problems if not p.is_warning}
    assert "missing_columns" in kinds and "reward" in kinds["missing_columns"].message
    assert "wrong_type" in kinds and "reward" in kinds["wrong_type"].message
    assert run.unmatched == ["notes.txt"]
    warnings = [p.message for p in run.warnings]
    assert any("matches no known layout" in m for m in warnings)
    assert any("leftover temporary file" in m for m in warnings)
    assert run.samples.collect().height == 4


def test_flink_csv_fallback_is_a_warning_and_is_read(tmp_path):
    root = make_flink_run(tmp_path / "r", steps=[0, 1])
    t = pl.from_arrow(flink_table(2)).with_columns(pl.lit("{'correct': 1.0, 'format': nan}").alias("reward_metrics"))
    t.write_csv(root / "flink_logs" / "batch_debug_data_train_2.csv")
    run = open_run(root)
    assert run.errors == []
    assert any("CSV fallback" in p.message for p in run.warnings)
    df = run.samples.collect().filter(pl.col("step") == 2)
    assert df.height == 4 and df["roles"].list.len().to_list() == [3] * 4
    comps = {c["name"]: c["value"] for c in df["reward_components"][0]}
    assert comps["correct"] == 1.0 and comps["format"] != comps["format"]


def test_flink_every_n_steps_has_no_gaps_and_newer_version_is_refused(tmp_path):
    root = make_flink_run(tmp_path / "r", steps=[0, 25, 50, 75])
    t = flink_table(100).set_column(8, "schema_version", pa.array([9] * 4, pa.int64()))
    pq.write_table(t, root / "flink_logs" / "batch_debug_data_train_100.parquet")
    r = inspect_run(open_run(root))
    assert r["step_gaps"] == {"train": []} and r["step_stride"] == {"train": 25}
    assert r["steps"] == {"train": [0, 75]}
    [p] = [p for p in r["problems"] if p["kind"] != "warning"]
    assert p["kind"] == "newer_schema_version" and p["path"].endswith("_100.parquet")


def test_forced_layout_and_unknown_layout(tmp_path):
    from runlog.errors import UnknownLayoutError

    root = make_flink_run(tmp_path / "r", steps=[0])
    with pytest.raises(UnknownLayoutError):
        open_run(root, layout="nope")
    run = open_run(root, layout="flink")
    assert run.samples.collect().height == 4


def test_default_inspect_reads_no_data_pages(tmp_path, monkeypatch):
    """Without --deep, a Parquet run is inspected from footers alone: no lazy frame is ever collected."""
    import polars as pl

    root = make_flink_run(tmp_path / "r", steps=range(3))

    def boom(*a, **k):
        raise AssertionError("inspect collected a frame")

    monkeypatch.setattr(pl.LazyFrame, "collect", boom)
    r = inspect_run(open_run(root))
    assert r["exceptions"] == 3
    assert r["numeric"]["solver_reward"] == {"rows": 12, "null": 0, "nan": None, "inf": None, "valid": None}


def test_numeric_questions_read_no_text_column(tmp_path):
    """The optimised plan of a numeric query names no text column: projection pushdown keeps them unread."""
    make_flink_run(tmp_path / "r", steps=[0, 1], version=0)
    make_flink_run(tmp_path / "r", steps=[2, 3], version=1)
    run = open_run(tmp_path / "r")
    plan = run.samples.select("reward", "roles").explain()
    assert "PROJECT 1/8 COLUMNS" in plan and "PROJECT 7/16 COLUMNS" in plan, plan
    for text_col in ("trajectory", "agent_trajectories", "reward_text_info", "exception_info", "env_name"):
        assert text_col not in plan, plan


def test_list_names_and_keep_open_only_the_files_asked_for(tmp_path):
    from runlog.run import list_names

    root = make_flink_run(tmp_path / "r", steps=range(5))
    make_flink_run(root, steps=[0, 4], split="eval")
    names = {(n.split, n.step) for n in list_names(root)}
    assert ("eval", 4) in names and ("train", 2) in names and all(n.keyed for n in list_names(root))
    run = open_run(root, keep=lambda split, step: split == "train" and step == 4)
    assert [f.path for f in run.files] == ["flink_logs/batch_debug_data_train_4.parquet"]
    assert run.skipped == 6
    assert run.samples.collect()["step"].unique().to_list() == [4]


def test_inspect_counts_the_scalar_keys_summarize_shows(cli):
    """``keys`` are the metrics summarize --scalars has one row for; their ``__count`` weights apart."""
    import json

    from conftest import SAMPLE_RUNS

    for name in ("debate_grpo", "damaged", "jaxarc"):
        info = json.loads(cli("inspect", SAMPLE_RUNS / name, "--format", "json").stdout)
        rows = json.loads(cli("summarize", SAMPLE_RUNS / name, "--scalars", "--format", "json").stdout)
        assert info["scalars"]["keys"] == len(rows), name
        assert info["scalars"]["weights"] == sum(1 for r in rows if f"{r['key']}__count" in _keys(SAMPLE_RUNS / name))


def _keys(run):
    import json

    keys = set()
    for f in run.glob("scalars*.jsonl"):
        for line in f.read_text().splitlines():
            try:
                keys.update(json.loads(line))
            except ValueError:
                continue  # the damaged run's torn line
    return keys


def test_deep_counts_flink_components_from_the_wide_view(tmp_path):
    """A Flink run's components come from its ``reward_metrics`` struct (the wide view): the same counts,
    against the written struct."""
    root = make_flink_run(tmp_path / "r", steps=range(2))
    table = flink_table(2)
    metrics = [{"correct": float("nan"), "format": 0.5}, None, {"correct": float("inf"), "format": None}, {}]
    metrics[3] = {"correct": 1.0, "format": 0.5}
    table = table.set_column(table.schema.get_field_index("reward_metrics"), "reward_metrics", pa.array(metrics))
    pq.write_table(table, root / "flink_logs" / "batch_debug_data_train_2.parquet")
    struct = pl.read_parquet(root / "flink_logs" / "*.parquet")["reward_metrics"].struct.unnest()
    deep = inspect_run(open_run(root), deep=True)["numeric"]
    for name in ("correct", "format"):
        col = struct[name]
        nan, inf = int(col.is_nan().sum()), int(col.is_infinite().sum())
        want = {"rows": 12, "null": col.null_count(), "nan": nan, "inf": inf, "valid": 12 - col.null_count() - nan}
        assert deep[f"component/{name}"] == want
    assert deep["component/correct"]["nan"] == 1 and deep["component/format"]["null"] == 2
