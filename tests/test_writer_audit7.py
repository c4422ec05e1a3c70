"""Audit 7 of the trainer-side writer (/tmp/audit-wr2): inputs that passed the call and then stopped the
writer's background thread are refused at the call (or written), a background failure never loses what earlier
calls logged, and ``inspect`` counts a writer failure."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import runlog
from runlog.writer import RunWriter, SampleError, WriterError

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _steps(run, split="train"):
    folder = run / "samples" / split
    return {int(f.name[5:13]): pq.read_table(f) for f in sorted(folder.glob("step_*.parquet"))}


def _goes_on(w, run):
    """After a refused call the writer still writes: a later step and a scalar line."""
    w.log_samples(2, {"reward": [1.0, 2.0]})
    w.log_scalars(2, {"loss": 0.5})
    w.close()
    assert _steps(run)[2].column("reward").to_pylist() == [1.0, 2.0]
    assert json.loads((run / "scalars.p0.jsonl").read_text().splitlines()[-1])["loss"] == 0.5


# -- 1. a number column of the wrong shape ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"reward": np.zeros((4, 2))},
        {"reward": jnp.zeros((4, 2))},
        {"reward": np.zeros(4), "solver_kl": jnp.zeros((4, 3))},
        {"reward": np.zeros(4), "reward_components": {"acc": jnp.zeros((4, 2))}},
        {"reward": np.zeros(4), "component/acc": np.zeros((4, 2))},
        [{"reward": jnp.zeros((1,))}],
        [{"reward": 1.0, "solver_reward": jnp.zeros((1,))}],
    ],
)
def test_a_number_column_of_the_wrong_shape_is_refused_at_the_call(tmp_path, bad):
    w = RunWriter(tmp_path, roles=["solver"], durable=False)
    w.log_samples(0, {"reward": [0.0]})
    with pytest.raises(SampleError, match=r"shape \((4|1), ?\d?\)"):
        w.log_samples(1, bad)
    _goes_on(w, tmp_path)
    assert sorted(_steps(tmp_path)) == [0, 2]


def test_a_reward_column_of_shape_rows_by_1_is_taken_as_one_per_row(tmp_path):
    with RunWriter(tmp_path, roles=["solver"], durable=False) as w:
        w.log_samples(0, {"reward": jnp.arange(4.0).reshape(4, 1), "solver_kl": np.full((4, 1), 0.5)})
        w.log_samples(1, {"reward": np.arange(3.0)[:, None], "reward_components": {"acc": jnp.ones((3, 1))}})
    t = _steps(tmp_path)
    assert t[0].column("reward").to_pylist() == [0.0, 1.0, 2.0, 3.0]
    assert [r[0]["kl"] for r in t[0].column("roles").to_pylist()] == [0.5] * 4
    assert t[1].column("reward_components").to_pylist() == [[{"name": "acc", "value": 1.0}]] * 3


# -- 2. a non-str key in a later row ----------------------------------------------------------------------------
def test_a_non_str_key_in_a_later_row_is_refused_at_the_call(tmp_path):
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": [0.0]})
    with pytest.raises(SampleError, match="column name 5 is a int"):
        w.log_samples(1, [{"reward": 1.0}, {"reward": 2.0, 5: "x"}])
    with pytest.raises(SampleError, match="surrogate"):
        w.log_samples(1, [{"reward": 1.0}, {"reward": 2.0, "x\ud800": "x"}])
    _goes_on(w, tmp_path)


def test_keys_that_only_later_rows_have_are_checked_like_the_first_rows(tmp_path):
    w = RunWriter(tmp_path, roles=["solver"], durable=False)
    with pytest.raises(SampleError, match="solver_reward of row 1 is a str"):
        w.log_samples(1, [{"reward": 1.0}, {"reward": 2.0, "solver_reward": "0.5"}])
    w.log_samples(1, [{"reward": 1.0}, {"reward": 2.0, "note": "x", "solver_reward": 0.5}])
    w.close()
    t = _steps(tmp_path)[1]
    assert t.column("note").to_pylist() == [None, "x"]
    assert t.column("roles").to_pylist()[1] == [{"role": "solver", "reward": 0.5, "kl": None}]


# -- 3. complex JAX values; a failure never loses what came before it ------------------------------------------
def test_complex_jax_values_are_refused_at_the_call(tmp_path):
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": jnp.arange(4, dtype=jnp.float32)})
    with pytest.raises(SampleError, match="complex64"):
        w.log_samples(1, {"reward": jnp.zeros(4, jnp.complex64)})
    with pytest.raises(SampleError, match="complex64"):
        w.log_samples(1, [{"reward": jnp.complex64(1 + 2j)}])
    with pytest.raises(runlog.UsageError, match="complex64"):
        w.log_scalars(1, {"c": jnp.complex64(1 + 2j)})
    _goes_on(w, tmp_path)
    assert sorted(_steps(tmp_path)) == [0, 2]


def test_a_background_failure_still_writes_the_steps_logged_before_it(tmp_path):
    """Step 0 of ``train`` is not sealed when the ``eval`` call fails on the writer's thread (an object Arrow
    cannot type: a background error, as documented): it is written all the same."""
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": jnp.arange(3, dtype=jnp.float32)})
    w.log_scalars(0, {"loss": 1.0})
    w.log_samples(0, {"reward": [1.0], "bad": [object()]}, split="eval")
    deadline = time.monotonic() + 30
    while w.stats()["error"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # written at once, not only at close
    while w.stats()["files_written"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _steps(tmp_path)[0].column("reward").to_pylist() == [0.0, 1.0, 2.0]
    with pytest.raises(WriterError, match="'bad'"):
        w.log_samples(1, {"reward": [1.0]})
    w.close()
    assert sorted(_steps(tmp_path)) == [0]
    assert not (tmp_path / "samples" / "eval").exists() or not list((tmp_path / "samples" / "eval").glob("*.parquet"))
    state = json.loads((tmp_path / ".writer.p0.json").read_text())
    assert state["files_written"] == 1 and "'bad'" in state["error"]


# -- 4. one JAX array per sample --------------------------------------------------------------------------------
def test_a_column_of_one_jax_array_per_sample_is_written(tmp_path):
    lengths = (1, 2, 3, 4)
    logp = [jnp.linspace(0, 1, k, dtype=jnp.float32) for k in lengths]
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, {"reward": [0.0] * 4, "logp": logp, "tok": [jnp.int32(k) for k in lengths]})
        w.log_samples(1, {"reward": list(jnp.arange(2, dtype=jnp.float32)), "kl16": list(jnp.ones(2, jnp.bfloat16))})
    t = _steps(tmp_path)
    got = t[0].column("logp").to_pylist()
    assert got == [np.asarray(x).astype(np.float64).tolist() for x in logp]
    assert t[0].column("tok").to_pylist() == list(lengths)
    assert t[1].column("reward").to_pylist() == [0.0, 1.0]
    assert t[1].column("kl16").to_pylist() == [1.0, 1.0]


# -- 5. text is never parsed as a number ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"reward": [1.0, 2.0], "solver_reward": ["0.5", "nan"]},
        {"reward": [1.0], "solver_kl": np.array(["1e3"])},
        [{"reward": 1.0, "roles": {"solver": {"reward": "0.5", "kl": " 7 "}}}],
        [{"reward": 1.0, "roles": {"solver": "0.5"}}],
        {"reward": [1.0], "roles": [[{"role": "solver", "reward": 0.5, "kl": "7"}]]},
        [{"reward": 1.0, "reward_components": {"acc": "1", "fmt": "inf"}}],
        {"reward": [1.0], "reward_components": [[{"name": "acc", "value": "1"}]]},
        {"reward": [1.0], "reward_components": {"acc": ["0.25"]}},
        {"reward": [1.0], "component/acc": ["0.25"]},
    ],
)
def test_text_as_a_role_value_or_component_is_refused_at_the_call(tmp_path, bad):
    w = RunWriter(tmp_path, roles=["solver"], durable=False)
    with pytest.raises(SampleError, match="text is never parsed"):
        w.log_samples(1, bad)
    _goes_on(w, tmp_path)


# -- 6. roles the constructor did not declare --------------------------------------------------------------------
def test_an_undeclared_role_is_refused_at_the_call(tmp_path):
    w = RunWriter(tmp_path, roles=["solver"], durable=False)
    with pytest.raises(SampleError, match=r"'solvr'.*\['solver'\]"):
        w.log_samples(1, [{"reward": 1.0, "roles": {"solver": {"reward": 1.0}, "solvr": {"reward": 0.5}}}])
    with pytest.raises(SampleError, match=r"'solvr'.*\['solver'\]"):
        w.log_samples(1, {"reward": [1.0], "roles": [[{"role": "solvr", "reward": 0.5}]]})
    with pytest.raises(SampleError, match="role name 7 is a int"):
        w.log_samples(1, [{"reward": 1.0, "roles": {7: {"reward": 0.5}}}])
    w.log_samples(1, [{"reward": 1.0, "roles": {"solver": {"reward": 1.0}}}])
    _goes_on(w, tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["roles"] == ["solver"]


def test_roles_are_discovered_when_none_were_declared(tmp_path):
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": 1.0, "roles": {"a": {"reward": 1.0}, "b": 0.5}}])
    assert json.loads((tmp_path / "run.json").read_text())["roles"] == ["a", "b"]


# -- 7. scalar keys are str --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [b"loss", ("a", "b"), None, 1.5, 3])
def test_a_non_str_scalar_key_is_refused_at_the_call(tmp_path, key):
    w = RunWriter(tmp_path, durable=False)
    with pytest.raises(runlog.UsageError, match="names are str"):
        w.log_scalars(0, {key: 1.0})
    with pytest.raises(runlog.UsageError, match="names are str"):
        w.log_scalars(0, {"a": {key: 1.0}})
    w.log_scalars(0, {"ok": 1.0})
    w.close()
    assert [json.loads(x)["ok"] for x in (tmp_path / "scalars.p0.jsonl").read_text().splitlines()] == [1.0]


# -- 8. the step is 0-d ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [np.array([4]), np.array([[4]]), "jax1", "jax11"])
def test_a_step_that_is_an_array_of_one_element_is_refused(tmp_path, step):
    step = {"jax1": jnp.array([4]), "jax11": jnp.array([[5]])}.get(step, step) if isinstance(step, str) else step
    with RunWriter(tmp_path, durable=False) as w:
        for call in (lambda: w.log_samples(step, {"reward": [1.0]}), lambda: w.log_scalars(step, {"x": 1.0})):
            with pytest.raises(runlog.UsageError, match="step must be a non-negative integer"):
                call()
        w.log_samples(np.array(4), {"reward": [1.0]})
        w.log_scalars(jnp.array(4), {"x": 1.0})
    assert sorted(_steps(tmp_path)) == [4]


# -- 9. row dicts of JAX scalars: no compilation per row count ---------------------------------------------------
def test_row_dicts_of_jax_scalars_do_not_compile_per_row_count(tmp_path):
    from runlog.writer import jax_utils

    values = list(jnp.arange(300, dtype=jnp.float32))
    with RunWriter(tmp_path, durable=False) as w:
        w.log_samples(0, [{"reward": v} for v in values[:128]])
        before = jax_utils._pack_fn()._cache_size()
        for step, n in enumerate((125, 127, 123, 120, 113), start=1):  # one bucket: 128
            w.log_samples(step, [{"reward": v} for v in values[:n]])
        assert jax_utils._pack_fn()._cache_size() == before
    t = _steps(tmp_path)
    assert t[3].column("reward").to_pylist() == [float(i) for i in range(123)]


# -- 10. inspect counts a writer failure ---------------------------------------------------------------------------
def test_inspect_says_a_run_whose_writer_failed_is_not_valid(tmp_path, cli):
    w = RunWriter(tmp_path, durable=False)
    w.log_samples(0, {"reward": [1.0]})
    w.log_samples(1, {"reward": [1.0], "bad": [object()]})
    with pytest.raises(WriterError):
        w.close()
    r = cli("inspect", tmp_path)
    assert r.exit_code == 1
    assert "the writer had failed" in r.stdout  # the header's line is kept
    assert "valid: no problems found" not in r.stdout
    r = cli("inspect", tmp_path, "--format", "json")
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["errors"] == 1
    assert [p["kind"] for p in report["problems"]] == ["writer_failed"]
