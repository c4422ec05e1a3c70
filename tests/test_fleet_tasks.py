"""The fleet-or-one-run decision (``fleet.is_fleet``, ``fleet.fleet_locations``) and typed fleet tasks: one job
dataclass per kind, picklable, computing what the one-run API computes."""

from __future__ import annotations

import pickle

import pytest
from polars.testing import assert_frame_equal

from runlog.analysis import texts as M
from runlog.analysis.filters import Filters
from runlog.analysis.partials import summarize_partials
from runlog.errors import UsageError
from runlog.fleet import (
    DiversityJob,
    FormatJob,
    SummarizeJob,
    Task,
    Unit,
    fleet_locations,
    is_fleet,
    metrics_fleet,
    run_batch,
)
from runlog.run import open_run
from runlog.storage import StorageOptions

from conftest import ROOT

RUNS = ROOT / "sample_runs"
DEBATE = str(RUNS / "debate_grpo")


@pytest.mark.parametrize(
    ("locations", "by", "kwargs", "fleet"),
    [
        (["a"], [], {}, False),
        (["a"], ["role", "step"], {}, False),
        (["a", "b"], [], {}, True),
        (["a"], ["run", "role"], {}, True),
        (["a"], [], {"listed": True}, True),
        (["a"], [], {"engine": "ray"}, True),
        (["a"], [], {"engine": "dask"}, True),  # the fleet path is where the engine is checked
        (["a"], [], {"ray_address": "auto"}, True),
        (["a"], [], {"ray_address": ""}, False),
    ],
)
def test_is_fleet(locations, by, kwargs, fleet):
    assert is_fleet(locations, by, **kwargs) is fleet


def test_fleet_locations_from_paths_a_runs_file_and_globs(tmp_path):
    listed = tmp_path / "runs.txt"
    listed.write_text(f"# runs\n{RUNS / 'flink_mixed'}\n\n{DEBATE}\n", encoding="utf-8")
    locs = fleet_locations([DEBATE, str(RUNS / "jax*")], listed)
    assert locs == [DEBATE, str(RUNS / "jaxarc"), str(RUNS / "flink_mixed")]  # in order, each once
    with pytest.raises(UsageError, match="give a run"):
        fleet_locations([])
    with pytest.raises(UsageError, match="matches no run"):
        fleet_locations([str(tmp_path / "none*")])


JOBS = [
    SummarizeJob(),
    SummarizeJob(prompt_groups=True),
    DiversityJob(text="completion", over="set"),
    FormatJob(spec="open-r1", known_tools=("search",)),
]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: f"{j.kind}")
def test_a_task_pickles_whole(job):
    """A task travels to Ray workers: it comes back equal, its job typed."""
    task = Task.of(job, ["split", "step"], Filters(splits=("train",)), "runlog", {"AWS_REGION": "x"})
    back = pickle.loads(pickle.dumps(task))
    assert back == task and type(back.job) is type(job) and back.kind == job.kind
    assert back.storage_options == StorageOptions((("aws_region", "x"),))


def _unit_frame(job, keys, filters=None):
    task = Task.of(job, keys, filters, None, None)
    [result] = run_batch((task, [Unit(0, "debate", DEBATE, None, 0)]))
    assert result.error is None
    return result.frame


def test_each_job_computes_what_the_one_run_api_computes():
    run = open_run(DEBATE)
    filters = Filters.from_options(["train"], "2:5")
    keys = ["split", "step"]
    expect = {
        "summarize": summarize_partials(run, keys, filters=filters),
        "diversity": M.diversity_frame(run, keys, text="completion", filters=filters, split_key=False),
        "format": M.format_frame(run, "open-r1", keys, filters=filters, split_key=False),
    }
    for job in (SummarizeJob(), DiversityJob(text="completion"), FormatJob(spec="open-r1")):
        frame = _unit_frame(job, keys, filters)
        assert frame["run"].unique().to_list() == ["debate"]
        assert_frame_equal(frame.drop("run"), expect[job.kind], check_row_order=False)


def test_metrics_fleet_takes_a_typed_job():
    locs = [DEBATE, str(RUNS / "flink_mixed")]
    result = metrics_fleet(FormatJob(spec="open-r1"), locs, ["run", "step"])
    assert not result.failures
    assert result.frame["run"].unique(maintain_order=True).to_list() == ["debate_grpo", "flink_mixed"]
    alone = M.format_frame(open_run(DEBATE), "open-r1", ["split", "step"], split_key=False)
    mine = result.frame.filter(result.frame["run"] == "debate_grpo").drop("run")
    assert_frame_equal(mine.select(alone.columns), alone)
