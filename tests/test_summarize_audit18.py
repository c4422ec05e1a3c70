"""Audit 18 (summarize on a run of native ``samples/`` with a resumed run's ``flink_logs/`` beside it). Expected
figures are worked out by hand from the rows written here, never from runlog's code.

- Summaries without ``role`` (``--by step``, ``--by split``, ``--by env``, none) put the Flink samples in
  prompt groups derived from their trajectory text although ``--prompt-groups`` was not given (the per-sample
  view read ``group_id`` from ``Run.samples``, where Flink's is derived from the text): zero_adv_frac 0.5 where
  the only prompt group is not flat (0.0). ``--by role`` left them in no group, as documented.
- ``--by role --by group``: the per-role pass and the per-sample pass put the Flink samples in different
  groups, so that the join found nothing: their ``sample:exception_rate`` and ``sample:component/*`` null.
- ``--steps`` selecting no Flink step handed the trajectory parser an empty batch: ``internal error:
  ArrowInvalid: Must pass at least one array``, exit 3.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import runlog
from runlog._lazy import pl
from runlog.analysis import summarize as S
from runlog.analysis.filters import Filters, StepRange
from runlog.run import open_run

OLD = 1_600_000_000  # a time long past: files not being written
TRAJ = "<|system|>\nsys\n<|user|>\nWhat is 2+2?\n<|assistant name=solver|>\n4\n"


def _role(r: float) -> list[dict[str, Any]]:
    return [{"role": "solver", "reward": r, "kl": 0.1}]


def _flink(logs: Path, step: int, rewards: list[float], exceptions: list[str | None]) -> None:
    n = len(rewards)
    table = pa.table(
        {
            "env_name": ["e"] * n,
            "trajectory": [TRAJ] * n,  # one prompt: one prompt group per step, found from the text
            "exception_info": pa.array(exceptions, pa.string()),
            "reward": rewards,
            "solver_reward": rewards,
            "solver_kl": [0.2] * n,
            "reward_metrics": pa.array([{"c": 0.0}] * n, pa.struct([("c", pa.float64())])),
            "unique_sample_id": [f"f{step}-{i}" for i in range(n)],
        }
    )
    pq.write_table(table, logs / f"batch_debug_data_train_{step}.parquet")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Native steps 0 (group ``g``, rewards 0 and 1: not flat) and 1 (group ``h``, 0.5 and 0.5: flat), component
    ``c`` 1.0; Flink steps 0 (two samples of one prompt, rewards 1 and 1, one failed) and 5 (one sample), no
    group id, component ``c`` 0.0."""
    root = tmp_path / "run"
    with runlog.RunWriter(root, roles=["solver"]) as w:
        w.log_samples(
            0,
            [{"reward": r, "group_id": "g", "reward_components": {"c": 1.0}, "roles": _role(r)} for r in (0.0, 1.0)],
        )
        w.log_samples(1, [{"reward": 0.5, "group_id": "h", "reward_components": {"c": 1.0}, "roles": _role(0.5)}] * 2)
    logs = root / "flink_logs"
    logs.mkdir()
    _flink(logs, 0, [1.0, 1.0], ["Traceback: boom", None])
    _flink(logs, 5, [0.25], [None])
    return root


def _rows(root: Path, by: list[str], prompt_groups: bool = False, steps: str | None = None) -> list[dict]:
    filters = Filters(steps=StepRange.parse(steps)) if steps else Filters()
    df = S.summarize(open_run(root), by, filters=filters, prompt_groups=prompt_groups, cache=False)
    return df.to_dicts()


def _zero(rows: list[dict], key: str | None = None) -> dict[Any, float | None]:
    return {(r[key] if key else None): r["zero_adv_frac"] for r in rows}


# zero_adv_frac by hand. Without --prompt-groups the groups are g (not flat) and h (flat); with it, also the
# Flink prompt groups of step 0 ([1, 1]: flat) and step 5 (one sample: flat).
@pytest.mark.parametrize(
    ("by", "key", "want", "want_pg"),
    [
        (["step"], "step", {0: 0.0, 1: 1.0, 5: None}, {0: 0.5, 1: 1.0, 5: 1.0}),
        (["split"], "split", {"train": 0.5}, {"train": 0.75}),
        ([], None, {None: 0.5}, {None: 0.75}),
        (["env"], "env", {None: 0.5, "e": None}, {None: 0.5, "e": 1.0}),
        (["role"], "role", {"solver": 0.5}, {"solver": 0.75}),
    ],
)
def test_flink_samples_beside_native_are_in_prompt_groups_only_with_prompt_groups(
    mixed: Path, by: list[str], key: str | None, want: dict, want_pg: dict
) -> None:
    """Every --by treats the Flink samples' groups as --by role does: none without --prompt-groups (was 0.5
    at step 0 by step, 0.75 by split, where the only group there, g, is not flat), the prompt text's with it."""
    assert _zero(_rows(mixed, by), key) == want
    assert _zero(_rows(mixed, by, prompt_groups=True), key) == want_pg


@pytest.mark.parametrize("prompt_groups", [False, True])
def test_per_sample_columns_of_flink_samples_by_role_and_group(mixed: Path, prompt_groups: bool) -> None:
    """``--by role --by group``: the Flink samples' per-sample columns are theirs (step 0: one of two failed,
    component c 0.0 twice; step 5: none failed, c once), not null (the two passes grouped them differently)."""
    rows = _rows(mixed, ["role", "group"], prompt_groups=prompt_groups)
    got = {
        (r["step"], r["group"] in ("g", "h")): (
            r["reward_count"],
            r["sample:exception_rate"],
            r["sample:component/c_mean"],
            r["sample:component/c_count"],
        )
        for r in rows
    }
    assert got == {
        (0, True): (2, 0.0, 1.0, 2),
        (1, True): (2, 0.0, 1.0, 2),
        (0, False): (2, 0.5, 0.0, 2),
        (5, False): (1, 0.0, 0.0, 1),
    }
    flink_groups = {r["group"] for r in rows if r["group"] not in ("g", "h")}
    assert (flink_groups == {None}) is not prompt_groups  # found from the prompt text only when asked


@pytest.mark.parametrize(
    ("by", "steps", "want"),
    [
        (["role"], "1", {("solver",): (2, 0.5)}),
        (["split"], "1", {("train",): (2, 0.5)}),
        (["env"], "1", {(None,): (2, 0.5)}),
        (["role", "step"], "1", {("solver", 1): (2, 0.5)}),
        ([], "1", {(): (2, 0.5)}),
    ],
)
def test_steps_without_a_flink_step(mixed: Path, by: list[str], steps: str, want: dict, cli: Any) -> None:
    """A --steps filter that selects no Flink step of the run (or part of them) gives the native samples'
    summary, exit 0 (was exit 3: the trajectory parser was handed an empty batch)."""
    for pg in (False, True):
        rows = _rows(mixed, by, prompt_groups=pg, steps=steps)
        got = {tuple(r[k] for k in by): (r["reward_count"], r["reward_mean"]) for r in rows}
        assert got == want
    args = [a for k in by for a in ("--by", k)]
    result = cli("summarize", mixed, *args, "--steps", steps, "--format", "json", "--no-cache")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == len(want)


def test_empty_batch_of_flink_texts(mixed: Path) -> None:
    """The conversations of a batch a filter emptied are an empty column of their type, on every path that
    parses them (``Run.samples``: texts, groups), not ``Must pass at least one array``."""
    for engine in ("in-memory", "streaming"):
        run = open_run(mixed)
        df = run.samples.filter(pl.col("step") == 1).collect(engine=engine)
        assert df["step"].to_list() == [1, 1]
        assert df["group_id"].to_list() == ["h", "h"]
    flink = open_run(mixed).samples.filter(pl.col("step") == 5).collect(engine="in-memory")
    assert flink["prompt"].to_list() == ["What is 2+2?"]  # a batch not emptied is parsed as before


def test_partials_cache_equals_cold_on_mixed_run(mixed: Path, _probe_cache: Path) -> None:
    """The partials kept from a first summary answer the second as a cold read does (to the last digits the
    docs allow), and as by hand."""
    for p in mixed.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD, OLD))  # settled files: their partials are kept
    for by in (["step"], ["split"], ["role"], ["role", "step"], ["split", "step"]):
        for pg in (False, True):
            cold = S.summarize(open_run(mixed), by, prompt_groups=pg, cache=False)
            first = S.summarize(open_run(mixed), by, prompt_groups=pg, cache=True)
            second = S.summarize(open_run(mixed), by, prompt_groups=pg, cache=True)
            assert_frame_equal(first, cold, rel_tol=1e-12, abs_tol=1e-15)
            assert_frame_equal(second, cold, rel_tol=1e-12, abs_tol=1e-15)
    assert any(_probe_cache.rglob("seg-*.arrow"))  # the partials were kept, and answered
    got = S.summarize(open_run(mixed), ["step"], cache=True)
    assert _zero(got.to_dicts(), "step") == {0: 0.0, 1: 1.0, 5: None}
