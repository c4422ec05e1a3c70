"""Audit 16 (what each summarize figure aggregates). Expected figures come from pyarrow and Python on the files
written here, never from runlog's code.

- Flink v1: a role whose ``<role>_reward`` / ``<role>_kl`` columns a step's file lacks (the judge sat out that
  step) was counted as that role with null reward and KL there: phantom ``reward_null`` / ``kl_null`` and
  phantom rows (``judge, 1: count 0, null 4``), and ``--role judge --steps 1`` exited 0 with a row of nulls.
  The long view (``Run.numeric``) has no row for it, as for a native run whose sample lists no judge.
- ``--split train --split eval`` pooled the splits (on purpose, documented) without a word, where the default
  adds ``split`` to the keys with a note.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import runlog
from runlog.analysis import aggregate as A
from runlog.analysis import summarize as S
from runlog.analysis.filters import Filters, StepRange
from runlog.run import open_run

from conftest import flink_table

JUDGE = ("judge_reward", "judge_kl")
# (split, step) -> whether the judge logged there; each file holds 4 samples.
FILES = {("train", 0): True, ("train", 1): False, ("train", 2): True, ("train", 3): False, ("eval", 0): False}


def _write(root: Path, split: str, step: int, judge: bool) -> None:
    t = flink_table(step)
    if judge:
        # A null and a NaN the judge really logged: counted as such (only the sat-out steps' are not).
        t = t.set_column(t.schema.get_field_index("judge_reward"), "judge_reward", [[None, math.nan, 2.0, 3.0]])
        t = t.set_column(t.schema.get_field_index("judge_kl"), "judge_kl", [[0.3, None, 0.3, 0.3]])
    else:
        t = t.drop_columns(list(JUDGE))
    logs = root / "flink_logs"
    logs.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, logs / f"batch_debug_data_{split}_{step}.parquet")


@pytest.fixture
def sat_out(tmp_path: Path) -> Path:
    root = tmp_path / "sat_out"
    for (split, step), judge in FILES.items():
        _write(root, split, step, judge)
    return root


def _truth(root: Path) -> dict[tuple[str, str, int], tuple[int, int, int, int, int]]:
    """(role, split, step) -> (reward values, NaN, null, KL values, KL null), over the files that hold the role's
    columns only."""
    out = {}
    for path in sorted((root / "flink_logs").glob("*.parquet")):
        _, _, _, split, step = path.stem.split("_")
        t = pq.read_table(path)
        for col in t.column_names:
            if not col.endswith("_reward") or col == "reward":
                continue
            role = col[: -len("_reward")]
            r, k = t[col].to_pylist(), t[f"{role}_kl"].to_pylist()
            nan = sum(1 for v in r if v is not None and math.isnan(v))
            null = sum(1 for v in r if v is None)
            kl_null = sum(1 for v in k if v is None)
            out[(role, split, int(step))] = (len(r) - nan - null, nan, null, len(k) - kl_null, kl_null)
    return out


def _got(frame) -> dict[tuple[str, str, int], tuple[int, int, int, int, int]]:
    cols = ("reward_count", "reward_nan", "reward_null", "kl_count", "kl_null")
    return {(r["role"], r["split"], r["step"]): tuple(r[c] for c in cols) for r in frame.iter_rows(named=True)}


# ---------------------------------------------------------------------------------------------------------
# Finding 1: a role that sat out a step is not logged there, not logged as null
# ---------------------------------------------------------------------------------------------------------
def test_a_flink_role_absent_from_a_file_has_no_row_and_no_null_there(sat_out: Path):
    truth = _truth(sat_out)
    assert ("judge", "train", 1) not in truth and truth[("judge", "train", 0)] == (2, 1, 1, 3, 1)
    by = ["role", "split", "step"]
    assert _got(S.summarize(open_run(sat_out), by, cache=False)) == truth  # was: judge, 1: count 0, null 4
    assert _got(S.summarize(open_run(sat_out), by)) == truth  # read, then stored
    assert _got(S.summarize(open_run(sat_out), by)) == truth  # from the stored partials


def test_a_flink_role_absent_from_a_file_is_left_out_of_its_totals_and_filters(sat_out: Path):
    judge = S.summarize(open_run(sat_out), ["role"], filters=Filters(splits=("train",)))
    row = judge.filter(judge["role"] == "judge").row(0, named=True)
    assert (row["reward_count"], row["reward_nan"], row["reward_null"], row["kl_null"]) == (4, 2, 2, 2)  # was 10, 10
    part = S.summarize(open_run(sat_out), ["role"], filters=Filters(steps=StepRange.parse("1:3")))
    assert sorted(part.filter(part["role"] == "judge")["reward_null"].to_list()) == [1]  # was [9] (train)


def test_the_wide_view_gives_the_long_views_rows_where_a_role_sat_out(sat_out: Path, monkeypatch):
    """The wide view (per-role columns) and the long view (one row per sample and role) are two routes to the
    same figures; the long one never had the phantom rows."""
    for by in (["role"], ["role", "step"], ["role", "split"]):
        for filters in (Filters(), Filters(roles=("judge",)), Filters(splits=("train",), steps=StepRange.parse(":1"))):
            wide = S.summarize(open_run(sat_out), by, filters=filters, cache=False)
            with monkeypatch.context() as m:
                m.setattr(S, "_summarize_wide", lambda *a, **k: None)
                long = S.summarize(open_run(sat_out), by, filters=filters, cache=False)
            keys = [c for c in wide.columns if c in S.KEYS]
            assert_frame_equal(wide.sort(keys), long.sort(keys), check_exact=False, rel_tol=1e-12)


def test_the_lean_wide_view_is_kept_only_where_every_file_holds_every_role(sat_out: Path, tmp_path: Path):
    """The lean view counts every row for every role: right only where no role sat out anywhere (the 2,000-file
    benchmark's shape keeps it, and its speed)."""
    assert A.lean_roles(open_run(sat_out), Filters()) is None
    full = tmp_path / "full"
    for step in range(3):
        _write(full, "train", step, True)
    assert A.lean_roles(open_run(full), Filters()) == ["solver", "verifier", "judge"]


def test_filters_that_meet_only_a_sat_out_step_are_a_usage_error(cli, sat_out: Path):
    r = cli("summarize", sat_out, "--role", "judge", "--split", "train", "--steps", "1", "-f", "json")
    assert r.exit_code == 2, r.output  # was: 0 and a row of 4 nulls
    assert r.stdout == ""
    assert "no sample matches --split train --steps 1 --role judge together" in r.stderr


def test_a_fleet_counts_a_sat_out_role_as_its_runs_do(cli, sat_out: Path, tmp_path: Path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    shutil.copytree(sat_out, fleet / "a")
    shutil.copytree(sat_out, fleet / "b")
    r = cli("summarize", f"{fleet}/*", "--by", "run", "--by", "role", "--split", "train", "-f", "json")
    assert r.exit_code == 0, r.output
    rows = [row for row in json.loads(r.stdout) if row["role"] == "judge"]
    judge = [(row["reward_count"], row["reward_null"], row["kl_null"]) for row in rows]
    assert judge == [(4, 2, 2), (4, 2, 2)]  # was (4, 10, 10) each


def test_a_plot_does_not_call_a_sat_out_step_one_without_a_valid_value(cli, sat_out: Path, tmp_path: Path):
    out = tmp_path / "p.svg"
    r = cli("plot", sat_out, "-o", out)
    assert r.exit_code == 0, r.output
    assert "judge: no valid value" not in out.read_text()  # was: at steps 1, 3 (the judge sat them out)


def _code_keys(src: Path) -> list[str]:
    code = (
        "from runlog.analysis import partial_cache, diff; from runlog.analysis.diff import window_cache;"
        "from runlog.cli import answers;"
        "print(partial_cache.code_key(), window_cache._code_key(), answers.code_stamp())"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("changed", ["formats/flink.py", "analysis/aggregate.py"])
def test_answers_kept_by_the_caches_are_of_the_code_that_computes_them(tmp_path: Path, changed: str):
    """The partials, diff's windows and kept answers are keyed by the code: those computed before a change of
    the Flink reader or of the aggregation (this audit's) are never served after it."""
    src = tmp_path / "src"
    shutil.copytree(Path(runlog.__file__).parent, src / "runlog", ignore=shutil.ignore_patterns("__pycache__"))
    before = _code_keys(src)
    with open(src / "runlog" / changed, "a") as f:
        f.write("\n# changed\n")
    after = _code_keys(src)
    assert all(a != b for a, b in zip(before, after, strict=True)), (before, after)


# ---------------------------------------------------------------------------------------------------------
# Finding 2: splits pooled as asked are said to be
# ---------------------------------------------------------------------------------------------------------
POOLED = "note: the splits train and eval are pooled in each row, as --split train --split eval asks: add --by split"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], True),
        (["--role", "solver", "--steps", "0"], True),  # both splits hold the solver at step 0
        (["--steps", "1"], False),  # eval has no step 1: one split in the rows
        (["--role", "judge", "--steps", "0"], False),  # the judge sat out eval step 0: train's rows alone
        (["--by", "split"], False),  # kept apart
        (["--by", "role", "--by", "split"], False),
    ],
)
def test_several_splits_pooled_as_asked_are_said_to_be_where_two_have_rows(cli, sat_out: Path, args, said):
    r = cli("summarize", sat_out, "--split", "train", "--split", "eval", *args, "-f", "json")
    assert r.exit_code == 0, r.output
    assert (POOLED in r.stderr) is said, r.stderr
    assert r.stderr.count("pooled in each row") == int(said)


def test_one_split_named_twice_or_alone_is_not_said_pooled(cli, sat_out: Path):
    for args in (["--split", "train"], ["--split", "train", "--split", "train"], []):
        r = cli("summarize", sat_out, *args, "-f", "json")
        assert r.exit_code == 0, r.output
        assert "pooled in each row" not in r.stderr


def test_pooled_splits_read_from_the_data_where_files_do_not_tell(sat_out: Path):
    """A role filter needs the rows (which split's files hold the judge at step 0 is data): the same answer as
    the file names give without it."""
    run = open_run(sat_out)
    both = Filters(splits=("train", "eval"), steps=StepRange.parse("0"))
    assert S.pooled_splits(run, both) == ["train", "eval"]
    assert S.pooled_splits(run, Filters(splits=both.splits, steps=both.steps, roles=("judge",))) == ["train"]
    assert S.pooled_splits(run, Filters(splits=both.splits, steps=both.steps, roles=("solver",))) == ["train", "eval"]
    assert S.pooled_splits(run, Filters(splits=("train", "train"))) == []
    assert S.pooled_note(["train", "eval", "test"]).startswith("the splits train, eval and test are pooled")
