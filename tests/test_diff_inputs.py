"""``runlog diff`` on the bundled runs, as a user tries it: runs of different layouts, a run without samples,
and a pairing over a single prompt, which gives no interval (one value resampled is no evidence)."""

from __future__ import annotations

import json

import numpy as np

from runlog import open_run
from runlog.analysis.diff import diff_runs
from runlog.analysis.diff.bootstrap import interval

from conftest import REALDATA, ROOT, need_realdata

RUNS = ROOT / "sample_runs"


def test_a_run_without_samples_is_named_as_the_reason(cli) -> None:
    r = cli("diff", RUNS / "debate_grpo", RUNS / "jaxarc")
    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: nothing to compare: jaxarc has no samples: no per-role comparison")
    assert "no scalar key in common" in line and "layouts differ" not in line


def test_runs_of_different_layouts_compare_what_both_have(cli) -> None:
    r = cli("diff", RUNS / "debate_grpo", RUNS / "flink_mixed", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert "note: layouts differ: debate_grpo is runlog, flink_mixed is flink" in r.stderr
    assert {row["role"] for row in out["roles"]} == {"solver", "verifier", "judge"}
    assert "no role in common in split eval" in r.stderr


def test_runs_given_as_files_of_one_folder_are_named_by_their_files(cli) -> None:
    """Two logs side by side in one folder: each is named ``folder/file``, not both by the folder (which read
    as ``realdata`` and ``realdata#2``); a file deeper in its run folder keeps the run's name. ``diff`` labels
    them by their paths relative to the folder they share, as ``summarize`` of a fleet does."""
    need_realdata("inspect_ai_popularity.eval", "inspect_ai_popularity_eval_log.json")
    a, b = REALDATA / "inspect_ai_popularity.eval", REALDATA / "inspect_ai_popularity_eval_log.json"
    names = [f"realdata/{a.name}", f"realdata/{b.name}"]
    assert [open_run(p).name for p in (a, b)] == names
    r = cli("diff", a, b)
    assert f"{a.name} and {b.name} have no role in common" in r.stderr, r.stderr
    step = next((RUNS / "flink_mixed" / "flink_logs").glob("batch_debug_data_train_*.parquet"))
    assert open_run(step).name == "flink_mixed"


def test_one_prompt_in_common_gives_no_paired_interval() -> None:
    d = diff_runs([open_run(RUNS / "debate_grpo"), open_run(RUNS / "flink_mixed")])
    one = d.paired.filter(d.paired["prompts"] == 1)
    assert one.height > 0
    assert one["ci_low"].null_count() == one.height and one["verdict"].null_count() == one.height
    # Where a run has no value for a role (flink_mixed's first steps have no per-role data), no interval either.
    start = d.points.filter((d.points["point"] == "start") & (d.points["n"] == 0))
    assert start.height > 0 and start["verdict"].null_count() == start.height


def test_an_interval_needs_two_units_a_side() -> None:
    reps = np.linspace(-1, 1, 101)
    assert interval(reps, 0.9, 1, 5) == (None, None)
    lo, hi = interval(reps, 0.9, 2, 5)
    assert lo is not None and hi is not None and lo < 0 < hi
