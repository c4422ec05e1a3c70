"""``RunWriter``: what is written reads back through ``open_run`` as the same values, in the format's layout."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from runlog import RunWriter, open_run
from runlog import schema as S
from runlog.analysis.inspect import inspect_run
from runlog.writer import QueueFullError, SampleError, StepOrderError, WriterClosedError, WriterError

ROLES = ["solver", "verifier", "judge"]


def columns(step: int, n: int = 8, offset: int = 0) -> dict:
    rng = np.random.default_rng(step)
    reward = rng.random(n)
    reward[1] = np.nan
    return {
        "sample_id": [f"s{step}-{offset + i}" for i in range(n)],
        "group_id": [f"s{step}-g{i // 4}" for i in range(n)],
        "reward": reward,
        "solver_reward": reward,
        "verifier_reward": rng.random(n),
        "judge_reward": rng.random(n),
        "solver_kl": rng.random(n) * 0.1,
        "verifier_kl": rng.random(n) * 0.01,
        "judge_kl": rng.random(n) * 0.01,
        "component/correct": (reward > 0.5).astype(float),
        "component/format": np.full(n, 0.5),
        "messages": [
            [
                {"role": "user", "content": f"task {i}"},
                {
                    "role": "assistant",
                    "name": "solver",
                    "content": None,
                    "tool_calls": [
                        {"id": f"c{i}", "type": "function", "function": {"name": "python", "arguments": {"code": "1"}}}
                    ],
                },
                {"role": "tool", "content": "1", "tool_call_id": f"c{i}"},
                {"role": "assistant", "name": "solver", "content": "<answer>1</answer>"},
            ]
            for i in range(n)
        ],
        "completion": ["<answer>1</answer>"] * n,
        "num_turns": np.full(n, 2, dtype=np.int32),
    }


def test_numpy_columns_round_trip_through_open_run(tmp_path):
    cols = {s: columns(s) for s in range(3)}
    with RunWriter(tmp_path, name="rt", config={"lr": 1e-6}, roles=ROLES) as w:
        for s in range(3):
            w.log_samples(s, cols[s])
            w.log_scalars(s, {"train": {"loss": np.float32(0.25)}, "time/step_s": 1.5})
    run = open_run(tmp_path)
    assert run.problems == []
    assert run.manifest["roles"] == ROLES and run.manifest["config"] == {"lr": 1e-6}
    assert run.manifest["writer"] == {"name": "runlog", "version": runlog.__version__, "state_files": True}
    df = run.samples.sort("step", "sample_id").collect()
    assert df.height == 24
    got = df.filter(pl.col("step") == 2).sort("sample_id")
    want = cols[2]
    np.testing.assert_array_equal(got["reward"].to_numpy(), want["reward"])  # NaN stays NaN, not null
    roles = got["roles"].to_list()[0]
    assert [r["role"] for r in roles] == ROLES
    assert roles[2]["kl"] == pytest.approx(want["judge_kl"][0])
    assert got["reward_components"].to_list()[0] == [
        {"name": "correct", "value": want["component/correct"][0]},
        {"name": "format", "value": 0.5},
    ]
    msgs = got["messages"].to_list()[0]
    assert msgs[1]["tool_calls"] == [{"id": "c0", "name": "python", "arguments": '{"code":"1"}'}]
    assert msgs[2]["tool_call_id"] == "c0" and msgs[2]["name"] == "python"
    assert got["num_turns"].to_list() == [2] * 8  # a free extra column is kept
    assert "solver_reward" not in df.columns  # folded into roles
    scal = run.scalars.collect()
    assert sorted(scal["key"].unique().to_list()) == ["time/step_s", "train/loss"]


def test_files_follow_the_format(tmp_path):
    with RunWriter(tmp_path, roles=ROLES, process_index=3) as w:
        w.log_samples(7, columns(7), split="eval")
        w.log_scalars(7, {"eval/reward_mean": 0.5})
    path = tmp_path / "samples" / "eval" / "step_00000007.p3.parquet"
    meta = pq.read_metadata(path)
    assert meta.metadata[b"runlog.schema_version"] == b"2"
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics is not None
    schema = pq.read_schema(path)
    for field in S.NATIVE_SAMPLE_SCHEMA:
        assert schema.field(field.name).type == field.type
    assert (tmp_path / "scalars.p3.jsonl").exists()
    assert not (tmp_path / "run.json").exists()  # only process 0 writes the manifest
    # no temporary file left; the one hidden file is this process's end marker (docs/format.md, End markers)
    assert [p.name for p in tmp_path.rglob(".*")] == [".writer.p3.json"]
    end = json.loads((tmp_path / ".writer.p3.json").read_text())
    assert (end["process"], end["how"], end["error"], end["last_step"]) == (3, "close", None, {"eval": 7})


def test_list_of_dicts_arrow_and_polars_inputs(tmp_path):
    rows = [
        {"reward": 1.0, "roles": [{"role": "solver", "reward": 1.0, "kl": 0.1}], "reward_components": {"a": 1.0}},
        {"reward": None, "roles": {"solver": {"reward": None, "kl": 0.2}}, "exception": "Traceback ..."},
    ]
    table = pa.table({"reward": [0.5, 0.25], "sample_id": ["t0", "t1"], "judge_reward": [1.0, 0.0]})
    frame = pl.DataFrame({"reward": [0.1], "sample_id": ["f0"], "reward_components": [[{"name": "x", "value": 2.0}]]})
    with RunWriter(tmp_path) as w:
        w.log_samples(0, rows)
        w.log_samples(1, table)
        w.log_samples(2, frame)
    run = open_run(tmp_path)
    df = run.samples.sort("step", "sample_id").collect()
    assert df["reward"].to_list() == [1.0, None, 0.5, 0.25, 0.1]
    assert df["exception"].to_list()[1] == "Traceback ..."
    assert df["reward_components"].to_list()[0] == [{"name": "a", "value": 1.0}]
    assert df["reward_components"].to_list()[4] == [{"name": "x", "value": 2.0}]
    assert df["roles"].to_list()[1] == [{"role": "solver", "reward": None, "kl": 0.2}]
    assert df["roles"].to_list()[2] == [{"role": "judge", "reward": 1.0, "kl": None}]
    assert run.manifest["roles"] == ["solver", "judge"]  # inferred, in first-seen order
    assert df["sample_id"].n_unique() == 5  # generated ids are unique too


def test_dict_of_component_columns(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log_samples(0, {"reward": [1.0, 0.0], "reward_components": {"correct": [1.0, 0.0], "fmt": np.ones(2)}})
    df = open_run(tmp_path).samples.collect()
    assert df["reward_components"].to_list()[1] == [{"name": "correct", "value": 0.0}, {"name": "fmt", "value": 1.0}]


def test_a_null_component_value_is_left_out_as_writer_md_says(tmp_path):
    """{name: column} and flat component/<name> columns alike: a null value is no entry (a sample with none
    has no components)."""
    with RunWriter(tmp_path / "a") as w:
        w.log_samples(
            0, {"reward": [1.0, 2.0, 3.0], "reward_components": {"x": [None, 0.5, None], "y": [1.0, None, None]}}
        )
    with RunWriter(tmp_path / "b") as w:
        w.log_samples(
            0, {"reward": [1.0, 2.0, 3.0], "component/x": [None, 0.5, None], "component/y": [1.0, None, None]}
        )
    want = [[{"name": "y", "value": 1.0}], [{"name": "x", "value": 0.5}], None]
    for name in ("a", "b"):
        got = open_run(tmp_path / name).samples.collect()["reward_components"].to_list()
        assert [sorted(c, key=lambda d: d["name"]) if c else None for c in got] == want, name


def test_jax_inputs_move_to_host_and_round_trip(tmp_path):
    jnp = pytest.importorskip("jax.numpy")
    reward = jnp.linspace(0.0, 1.0, 6)
    with RunWriter(tmp_path, roles=["solver"]) as w:
        w.log_samples(0, {"reward": reward, "solver_kl": reward * 0.1, "tokens": jnp.ones((6, 3), dtype=jnp.int32)})
        w.log_samples(1, [{"reward": reward[i], "solver_reward": reward[i]} for i in range(6)])
        w.log_scalars(0, {"train/loss": jnp.float32(0.5), "n": jnp.array(3)})
    run = open_run(tmp_path)
    df = run.samples.sort("step", "sample_id").collect()
    np.testing.assert_allclose(df["reward"].to_numpy()[:6], np.linspace(0, 1, 6), rtol=1e-6)
    assert df["tokens"].to_list()[0] == [1, 1, 1]
    assert df["roles"].to_list()[7][0]["reward"] == pytest.approx(0.2)
    scal = dict(run.scalars.select("key", "value").collect().iter_rows())
    assert scal == {"train/loss": 0.5, "n": 3.0}


def test_shards_of_two_processes_merge(tmp_path):
    with (
        RunWriter(tmp_path, roles=ROLES, process_index=0, run_id="r1") as w0,
        RunWriter(tmp_path, roles=ROLES, process_index=1, run_id="r1") as w1,
    ):
        for s in range(4):
            w0.log_samples(s, columns(s, 4, offset=0))
            w1.log_samples(s, columns(s, 4, offset=4))
            w0.log_scalars(s, {"x": s})
            w1.log_scalars(s, {"x": s + 10})
    r = inspect_run(open_run(tmp_path))
    assert r["problems"] == []
    assert r["rows_by_kind"]["samples"] == 32
    df = (
        open_run(tmp_path).samples.group_by("step").agg(pl.len(), pl.col("sample_id").n_unique()).sort("step").collect()
    )
    assert df["len"].to_list() == [8] * 4 and df["sample_id"].to_list() == [8] * 4
    assert sorted(open_run(tmp_path).scalars.collect()["source"].unique().to_list()) == [
        "scalars.p0.jsonl",
        "scalars.p1.jsonl",
    ]


def test_chunks_of_one_step_become_one_whole_file(tmp_path):
    with RunWriter(tmp_path) as w:
        w.log_samples(0, {"reward": [1.0, 2.0]})
        w.log_samples(0, {"reward": [3.0], "extra": ["x"]})
        w.flush()
        files = sorted(p.name for p in (tmp_path / "samples" / "train").iterdir())
        assert files == ["step_00000000.p0.parquet"]
        assert pq.read_metadata(tmp_path / "samples" / "train" / files[0]).num_rows == 3
        with pytest.raises(StepOrderError, match="already written"):
            w.log_samples(0, {"reward": [4.0]})
    df = open_run(tmp_path).samples.collect()
    assert df["reward"].to_list() == [1.0, 2.0, 3.0] and df["extra"].to_list() == [None, None, "x"]


def test_background_error_surfaces_on_next_call_and_close(tmp_path):
    w = RunWriter(tmp_path)
    w.log_samples(0, {"reward": [1.0], "bad": [object()]})  # cannot become an Arrow column
    w.log_samples(1, {"reward": [1.0]})  # seals step 0: the failure happens in the background
    with pytest.raises(WriterError, match="bad"):
        w.flush()
    with pytest.raises(WriterError):  # and keeps failing: nothing after it was written
        w.log_scalars(1, {"x": 1})
    w.close()  # already reported: close does not raise it twice
    w.close()

    w2 = RunWriter(tmp_path / "b")
    w2.log_samples(0, {"reward": [1.0], "sample_id": [1], "bad": [object()]})  # fails in the background
    with pytest.raises(WriterError):  # never reported before: close raises it
        w2.close()


def test_bad_calls_fail_in_the_caller(tmp_path):
    with RunWriter(tmp_path) as w:
        with pytest.raises(SampleError, match="reward"):
            w.log_samples(0, [{"sample_id": "a"}])
        with pytest.raises(runlog.UsageError, match="split"):
            w.log_samples(0, {"reward": [1.0]}, split="../x")
        with pytest.raises(runlog.UsageError, match="numbers"):
            w.log_scalars(0, {"x": "text"})
        for bad in ({"": 1.0}, {"loss/": 1.0}, {"/loss": 1.0}, {"a//b": 1.0}, {"a": {"": 1.0}}):
            with pytest.raises(runlog.UsageError, match="empty name"):
                w.log_scalars(0, bad)
        w.log_scalars(0, {"a": {"b": 1.0}, "c/d": 2.0})  # nested and written paths are fine
        with pytest.raises(runlog.UsageError, match="non-negative"):
            w.log_samples(-1, {"reward": [1.0]})
    with pytest.raises(WriterClosedError):
        w.log_samples(0, {"reward": [1.0]})
    w.close()  # idempotent


def test_full_queue_blocks_and_counts_or_raises(tmp_path, monkeypatch):
    gate = threading.Event()
    w = RunWriter(tmp_path, max_queue=1)
    real = w._handle

    def slow(item):
        gate.wait()
        real(item)

    monkeypatch.setattr(w, "_handle", slow)
    w.log_scalars(0, {"x": 0})  # taken by the thread, which then waits on the gate
    w.log_scalars(1, {"x": 1})  # fills the queue
    threading.Timer(0.2, gate.set).start()
    w.log_scalars(2, {"x": 2})  # blocks until the gate opens
    w.close()
    st = w.stats()
    assert st["queue_waits"] >= 1 and st["queue_wait_s"] > 0.1
    assert [json.loads(x)["step"] for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()] == [0, 1, 2]

    gate2 = threading.Event()
    w2 = RunWriter(tmp_path / "r", max_queue=1, on_full="raise")
    real2 = w2._handle
    monkeypatch.setattr(w2, "_handle", lambda item: (gate2.wait(), real2(item)))
    with pytest.raises(QueueFullError):  # one call in the thread, one in the queue, then the third raises
        for s in range(10):
            w2.log_scalars(s, {"x": s})
    gate2.set()
    w2.close()


def test_clock_makes_files_reproducible(tmp_path):
    def write(d):
        ticks = iter(range(100))
        with RunWriter(d, name="n", run_id="fixed", clock=lambda: 1770206400.0 + next(ticks)) as w:
            w.log_samples(0, {"reward": [1.0, math.nan]})
            w.log_scalars(0, {"x": 1})

    write(tmp_path / "a")
    write(tmp_path / "b")
    for name in ("run.json", "scalars.p0.jsonl", "samples/train/step_00000000.p0.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert json.loads((tmp_path / "a" / "run.json").read_text())["created"] == "2026-02-04T12:00:00Z"


def test_resume_keeps_manifest_identity_and_removes_own_leftovers(tmp_path):
    with RunWriter(tmp_path, run_id="first", roles=["a"]) as w:
        w.log_samples(0, {"reward": [1.0]})
    created = json.loads((tmp_path / "run.json").read_text())["created"]
    leftover = tmp_path / "samples" / "train" / ".step_00000001.p0.parquet.tmp"
    leftover.write_bytes(b"PAR1 half")
    other = tmp_path / "samples" / "train" / ".step_00000001.p1.parquet.tmp"
    other.write_bytes(b"PAR1 half")
    with RunWriter(tmp_path, roles=["b"]) as w:
        w.log_samples(1, {"reward": [1.0]})
    m = json.loads((tmp_path / "run.json").read_text())
    assert (m["run_id"], m["created"], m["roles"]) == ("first", created, ["a", "b"])
    assert not leftover.exists() and other.exists()  # another process's temp file is not ours to remove


def test_short_repeated_leaves_are_dictionary_encoded_and_long_text_is_not(tmp_path):
    """Role and component names, a message's role and speaker, a tool's name repeat in every row: dictionary
    encoded, nested or not (only top-level names used to reach pyarrow, so nested leaves were PLAIN); the
    long unique text (completion, trajectory, a message's content and reasoning, a call's arguments) is not."""
    from conftest import native_rows

    with runlog.RunWriter(tmp_path / "run", roles=["solver", "verifier"], durable=False) as w:
        w.log_samples(0, native_rows(0, 8))
    [f] = (tmp_path / "run").rglob("*.parquet")
    rg = pq.ParquetFile(f).metadata.row_group(0)
    dictionary = {
        rg.column(i).path_in_schema: "RLE_DICTIONARY" in rg.column(i).encodings for i in range(rg.num_columns)
    }
    for leaf in ("roles.list.element.role", "reward_components.list.element.name", "messages.list.element.role",
                 "messages.list.element.tool_calls.list.element.name", "prompt", "split"):  # fmt: skip
        assert dictionary[leaf], leaf
    for leaf in ("completion", "trajectory", "messages.list.element.content",
                 "messages.list.element.tool_calls.list.element.arguments"):  # fmt: skip
        assert not dictionary[leaf], leaf


def test_an_empty_step_is_a_step_with_no_rows_whatever_its_form(tmp_path):
    """``[]`` (every rollout filtered out) is ``{"reward": []}``: a step with no rows, and the writer lives on."""
    for name, empty in (
        ("list", []),
        ("dict", {"reward": []}),
        ("nodict", {}),
        ("table", pa.table({"x": pa.array([], pa.int64())})),
    ):
        with RunWriter(tmp_path / name) as w:
            w.log_samples(0, empty)
            w.log_samples(1, [{"reward": 1.0}])
            w.log_samples(1, empty)  # appended to step 1: nothing added, ids unchanged
            w.log_samples(2, {"reward": [2.0]})
        files = sorted(p.name for p in (tmp_path / name / "samples" / "train").iterdir())
        assert files == [f"step_{s:08d}.p0.parquet" for s in range(3)], name
        assert [pq.read_table(tmp_path / name / "samples" / "train" / f).num_rows for f in files] == [0, 1, 1], name
        df = open_run(tmp_path / name).samples.collect()
        assert df["reward"].to_list() == [1.0, 2.0] and df["sample_id"].to_list() == ["train-s1-p0-0", "train-s2-p0-0"]
        assert inspect_run(open_run(tmp_path / name)).as_dict()


def test_component_columns_are_length_checked_at_the_call(tmp_path):
    with RunWriter(tmp_path) as w:
        for bad in ([10.0, 20.0, 30.0, 40.0], [10.0], np.ones(2)):
            with pytest.raises(SampleError, match=r"columns have different lengths.*reward_components\['x'\]: "):
                w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "reward_components": {"x": bad}})
        with pytest.raises(SampleError, match="not a column"):
            w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "reward_components": {"x": 1.0}})
        with pytest.raises(SampleError, match="reward"):  # component columns count as rows: reward is required
            w.log_samples(0, {"reward_components": {"x": [1.0]}})
        w.log_samples(0, {"reward": [1.0, 2.0, 3.0], "reward_components": {"x": [10.0, 20.0, 30.0]}})
    assert w.stats()["error"] is None
    got = open_run(tmp_path).samples.collect()["reward_components"].to_list()
    assert got == [[{"name": "x", "value": v}] for v in (10.0, 20.0, 30.0)]


def test_a_call_refused_by_a_full_queue_leaves_no_trace(tmp_path, monkeypatch):
    """on_full="raise": retrying a refused call writes every row once, with the ids of an unrefused run."""
    gate = threading.Event()
    w = RunWriter(tmp_path, max_queue=1, on_full="raise")
    real = w._handle
    monkeypatch.setattr(w, "_handle", lambda item: (gate.wait(), real(item)))
    safety = threading.Timer(10, gate.set)  # a regression that blocks instead of raising fails, not hangs
    safety.start()
    try:
        w.log_samples(0, [{"reward": 0.0}])  # taken by the thread, which waits on the gate
        while w.stats()["queue_size"]:
            time.sleep(0.001)
        w.log_samples(0, [{"reward": 1.0}])  # fills the queue
        for _ in range(3):
            with pytest.raises(QueueFullError):
                w.log_samples(0, [{"reward": 2.0}, {"reward": 3.0}])
            with pytest.raises(QueueFullError):  # a new step: the old one is not sealed by a refused call
                w.log_samples(1, [{"reward": 9.0}])
        assert w.stats()["calls"] == 2 and w.stats()["rows_queued"] == 2
    finally:
        gate.set()
        safety.cancel()
    while True:
        try:
            w.log_samples(0, [{"reward": 2.0}, {"reward": 3.0}])
            break
        except QueueFullError:
            time.sleep(0.001)
    w.close()
    df = open_run(tmp_path).samples.collect()
    assert df["reward"].to_list() == [0.0, 1.0, 2.0, 3.0]
    assert df["sample_id"].to_list() == [f"train-s0-p0-{i}" for i in range(4)]


def test_a_step_is_an_integer_never_truncated_or_parsed(tmp_path):
    with RunWriter(tmp_path) as w:
        for s in (
            1.5,
            np.float64(1.5),
            np.float32(2.5),
            np.array(2.5),
            "3",
            b"3",
            True,
            np.bool_(False),
            None,
            math.nan,
        ):
            with pytest.raises(runlog.UsageError, match="step must be a non-negative integer"):
                w.log_samples(s, [{"reward": 0.0}])
            with pytest.raises(runlog.UsageError, match="step must be a non-negative integer"):
                w.log_scalars(s, {"x": 0.0})
        for i, s in enumerate(
            (0, np.int64(1), np.uint8(2), np.array(3), np.int32(4), 5.0, np.float32(6.0), np.array(7.0))
        ):
            w.log_samples(s, [{"reward": float(i)}])
            w.log_scalars(s, {"x": i})
    assert sorted(open_run(tmp_path).samples.collect()["step"].to_list()) == list(range(8))
    lines = [json.loads(x) for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()]
    assert [(d["step"], type(d["step"])) for d in lines] == [(i, int) for i in range(8)]


def test_jax_steps_are_integers_too(tmp_path):
    """A JAX step (a traced counter's value, ``jnp.int32``, a whole float array) is read as its integer; a
    fractional, boolean or many-valued one is refused at the call, as numpy's are."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    with RunWriter(tmp_path / "run", name="j", roles=("solver",), durable=False) as w:
        for s in (jnp.int32(0), jnp.array(1), jnp.asarray(2.0), jax.jit(lambda x: x + 1)(jnp.int32(2))):
            w.log_samples(s, {"reward": jnp.arange(2, dtype=jnp.float32)})
        for bad in (jnp.float32(4.5), jnp.array([5, 6]), jnp.bool_(True)):
            with pytest.raises(runlog.UsageError, match="step must be a non-negative integer"):
                w.log_samples(bad, {"reward": [1.0]})
    steps = sorted(int(p.name.split("_")[1].split(".")[0]) for p in (tmp_path / "run").rglob("step_*.parquet"))
    assert steps == [0, 1, 2, 3]
