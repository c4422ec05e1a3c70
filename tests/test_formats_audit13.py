"""Audit a13 (readers of third-party layouts): the fixes of its findings 1 to 5.

1. A key written twice in one line of a scalars JSONL file gave its first value (polars, the fast path) or its
   last (Python's json, the careful reader) depending on the rest of the file, without a word: now always the
   last, said in a warning.
2. inspect_ai logs of two tasks in one folder were pooled into one reward row without a word: the layouts note
   now names the envs.
3. A run whose only file has a first line over the sniffing limit was "1 file(s) match no known layout", exit
   2: now the file and its reason, exit 1 (the code of that `unreadable` problem beside other files).
4. A TRL row where every reward function returned None read as a null reward; TRL trained it with 0.0 (nansum).
5. ``inspect``'s scalars ``keys`` counted an alias pair twice.

Every expected figure is computed here from the files written (json, pyarrow, numpy), never with runlog's code.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runlog.formats.base import Candidate
from runlog.formats.scalars_jsonl import STEP_KEYS, _fast_flat_scalars
from test_inspect_ai import sample as inspect_sample
from test_inspect_ai import write_json_log

from conftest import SAMPLE_RUNS

# -- 1. a key written twice in one scalars line ----------------------------------------------------------------


def _native(run: Path, lines: list[str]) -> Path:
    run.mkdir(parents=True)
    shutil.copy(SAMPLE_RUNS / "debate_grpo" / "run.json", run / "run.json")
    (run / "scalars.p0.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


def _areal(run: Path, lines: list[str]) -> Path:
    run.mkdir(parents=True)
    (run / "stats.jsonl").write_text("".join(line + "\n" for line in lines))
    return run


def _scalars_at(cli, run: Path, step: int) -> dict[str, float | None]:  # noqa: ANN001
    r = cli("summarize", str(run), "--scalars", "--steps", str(step), "--format", "json")
    assert r.exit_code == 0, r.stderr
    return {row["key"]: row["last"] for row in json.loads(r.stdout)}


@pytest.mark.parametrize(
    ("builder", "step_key", "other_line"),
    [
        (_native, "step", '{"step": 2, "loss": 2.0}'),  # every other line plain: polars' fast path took it
        (_native, "step", '{"step": 2, "loss": 2.0, "note": "abc"}'),  # a text value: the careful reader took it
        (_areal, "global_step", '{"global_step": 2, "loss": 2.0}'),
    ],
)
def test_a_key_written_twice_keeps_its_later_value_whatever_the_rest_of_the_file(
    cli,  # noqa: ANN001
    tmp_path: Path,
    builder: Any,
    step_key: str,
    other_line: str,
) -> None:
    first = f'{{"{step_key}": 1, "loss": 1.0, "loss": 9.0}}'
    run = builder(tmp_path / "run", [first, other_line])
    truth = json.loads(first)["loss"]  # Python's json (as JavaScript) keeps the later copy
    assert truth == 9.0
    r = cli("summarize", str(run), "--scalars", "--steps", "1", "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert {row["key"]: row["last"] for row in json.loads(r.stdout)} == {"loss": truth}
    name = "scalars.p0.jsonl" if builder is _native else "stats.jsonl"
    assert f"{name}: 1 record(s) hold a key twice (first: line 1, 'loss'): the later value kept" in r.stderr


def test_a_key_whose_later_copy_is_null_has_no_value_there(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """polars kept the first (1.0); the later copy is null: the line holds no value of the key (a null value is
    no value, docs/format.md)."""
    first = '{"step": 1, "loss": 1.0, "loss": null, "acc": 0.5}'
    run = _native(tmp_path / "run", [first, '{"step": 2, "loss": 2.0, "acc": 0.25}'])
    assert json.loads(first)["loss"] is None
    assert _scalars_at(cli, run, 1) == {"acc": 0.5}  # no loss at step 1


def test_a_nested_key_written_twice_is_named_as_flattened(cli, tmp_path: Path) -> None:  # noqa: ANN001
    first = '{"step": 1, "eval": {"acc": 0.1, "acc": 0.7}}'
    run = _native(tmp_path / "run", [first, '{"step": 2, "eval": {"acc": 0.2}}'])
    r = cli("summarize", str(run), "--scalars", "--steps", "1", "--format", "json")
    assert {row["key"]: row["last"] for row in json.loads(r.stdout)} == {"eval/acc": json.loads(first)["eval"]["acc"]}
    assert "(first: line 1, 'eval/acc')" in r.stderr


def test_clean_files_keep_the_fast_path(tmp_path: Path) -> None:
    """The check costs no careful read where nothing is repeated: nulls, keys holding 'null', many lines."""
    lines = [
        json.dumps(
            {"step": s, "time": 1.0 + s, "loss": 1.0 / (s + 1), "nullable_frac": 0.5, "acc": None if s % 7 else 1}
        )
        for s in range(500)
    ]
    path = tmp_path / "scalars.p0.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert _fast_flat_scalars(Candidate(tmp_path, path, path.stat().st_size), STEP_KEYS, False) is not None
    path.write_text("\n".join(lines[:-1] + ['{"step": 500, "acc": 1, "acc": null}']) + "\n")
    assert _fast_flat_scalars(Candidate(tmp_path, path, path.stat().st_size), STEP_KEYS, False) is None


# -- 2. inspect_ai logs of several tasks in one folder --------------------------------------------------------


def test_logs_of_two_tasks_in_one_folder_say_their_envs(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "logs"
    write_json_log(run / "a.json", [inspect_sample(i, 1) for i in (1, 2, 3)], task="popularity")
    write_json_log(run / "b.json", [inspect_sample(i, 1) for i in (1, 2)], task="security_guide")
    rows = {(d := json.loads((run / f).read_text()))["eval"]["task"]: len(d["samples"]) for f in ("a.json", "b.json")}
    r = cli("summarize", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    said = ", ".join(f"{task} ({n} rows)" for task, n in sorted(rows.items(), key=lambda kv: -kv[1]))
    assert f"this run's inspect_ai samples are of 2 envs (tasks), {said}, pooled in every figure" in r.stderr
    assert "--by env to see each apart" in r.stderr
    apart = cli("summarize", str(run), "--by", "env", "--format", "json")
    assert "envs (tasks)" not in apart.stderr
    one = cli("summarize", str(run / "a.json"), "--format", "json")
    assert "envs (tasks)" not in one.stderr and "pooled" not in one.stderr


def test_two_layouts_say_the_envs_of_each_too(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = tmp_path / "dumps"
    write_json_log(run / "a.json", [inspect_sample(1, 1)], task="t1")
    write_json_log(run / "b.json", [inspect_sample(1, 1), inspect_sample(2, 1)], task="t2")
    q = [{"role": "user", "content": "q"}]
    (run / "results.jsonl").write_text(json.dumps({"id": 0, "prompt": q, "completion": "a", "reward": 1.0}) + "\n")
    r = cli("summarize", str(run), "--format", "json")
    assert "holds samples of 2 layouts" in r.stderr
    assert "its inspect_ai samples are of 2 envs (tasks), t2 (2 rows), t1 (1 rows)" in r.stderr


# -- 3. a run whose only file has a first line over the sniffing limit -----------------------------------------


def _long_first_line(path: Path, pad: int) -> Path:
    q = [{"role": "user", "content": "q"}]
    recs = [{"id": i, "prompt": q, "completion": "a", "reward": 1.0} for i in range(3)]
    recs[0]["completion"] = "x" * pad
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.mark.parametrize("command", ["inspect", "summarize"])
def test_an_only_file_too_long_to_sniff_is_named_with_its_reason(
    cli,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    monkeypatch.setattr(Candidate, "MAX_SNIFF_BYTES", 128 * 1024)
    path = _long_first_line(tmp_path / "run" / "rollouts.jsonl", 200_000)
    assert path.read_bytes().index(b"\n") > Candidate.MAX_SNIFF_BYTES
    r = cli(command, str(tmp_path / "run"))
    assert r.exit_code == 1, r.stderr  # an unreadable file: a problem in the data, as beside another file
    assert "no run files found (rollouts.jsonl: cannot read file (its first line is longer than the" in r.stderr
    assert "match no known layout" not in r.stderr
    # Beside another file, the same file is the `unreadable` problem, exit 1: the same code.
    q = [{"role": "user", "content": "q"}]
    (tmp_path / "run" / "results.jsonl").write_text(json.dumps({"prompt": q, "completion": "a", "reward": 1}) + "\n")
    beside = cli("inspect", str(tmp_path / "run"), "--format", "json")
    assert beside.exit_code == 1
    problems = [(p["path"], p["kind"]) for p in json.loads(beside.stdout)["problems"]]
    assert problems == [("rollouts.jsonl", "unreadable")]


def test_other_unmatched_files_are_counted_beside_it(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(Candidate, "MAX_SNIFF_BYTES", 128 * 1024)
    _long_first_line(tmp_path / "run" / "rollouts.jsonl", 200_000)
    (tmp_path / "run" / "notes.jsonl").write_text('{"hello": "world"}\n')
    r = cli("inspect", str(tmp_path / "run"))
    assert r.exit_code == 1
    assert "(rollouts.jsonl: cannot read file (its first line is longer" in r.stderr
    assert "; 1 other file(s) match no known layout)" in r.stderr


# -- 4. TRL: a row where every reward function returned None ---------------------------------------------------


def _trl(run: Path, acc: list[float | None], fmt: list[float | None]) -> Path:
    comp = run / "completions"
    comp.mkdir(parents=True)
    n = len(acc)
    table = pa.table(
        {
            "step": [10] * n,
            "prompt": ["p0", "p0", "p1", "p1"][:n],
            "completion": [f"c{i}" for i in range(n)],
            "accuracy_reward": pa.array(acc, pa.float64()),
            "format_reward": pa.array(fmt, pa.float64()),
            "advantage": [0.0] * n,
        }
    )
    path = comp / "completions_00010.parquet"
    pq.write_table(table, path)
    return path


def _trl_truth(path: Path) -> tuple[float, int]:
    """TRL's reward per row: ``(rewards_per_func * 1.0).nansum(dim=1)``; its logged ``reward``, their mean."""
    t = pq.read_table(path)
    per_func = np.array(
        [[np.nan if v is None else v for v in t[c].to_pylist()] for c in ("accuracy_reward", "format_reward")]
    )
    rewards = np.nansum(per_func, axis=0)
    return float(rewards.mean()), len(rewards)


@pytest.mark.parametrize("none", [None, math.nan], ids=["null", "nan"])
def test_trl_row_of_none_rewards_is_what_trl_trained_on(cli, tmp_path: Path, none: float | None) -> None:  # noqa: ANN001
    """pandas (TRL's writer) stores a None's NaN as null; a NaN stored as NaN reads the same."""
    path = _trl(tmp_path / "run", [1.0, none, 0.0, none], [0.5, 0.5, none, none])
    mean, count = _trl_truth(path)
    assert (mean, count) == (0.5, 4)
    r = cli("summarize", str(tmp_path / "run"), "--format", "json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert (row["reward_mean"], row["reward_count"], row["reward_null"]) == (mean, count, 0)
    said = "completions/completions_00010.parquet: 1 row(s) where every reward function returned None"
    assert (said in r.stderr) == (none is None), r.stderr  # counted where the footer shows the nulls


def test_trl_row_of_text_that_is_no_number_stays_null(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """A value there that is no number is no function's None: its row's reward is unknown, not TRL's 0.0."""
    comp = tmp_path / "run" / "completions"
    comp.mkdir(parents=True)
    pq.write_table(pa.table({"prompt": ["p"], "completion": ["x"], "acc": [1.0]}), comp / "completions_00001.parquet")
    pq.write_table(
        pa.table({"prompt": ["p", "p"], "completion": ["x", "y"], "acc": ["2.0", "high"]}),
        comp / "completions_00002.parquet",
    )
    r = cli("summarize", str(tmp_path / "run"), "--format", "json")
    (row,) = json.loads(r.stdout)
    assert (row["reward_mean"], row["reward_count"], row["reward_null"]) == (np.mean([1.0, 2.0]), 2, 1)


# -- 5. inspect's scalars keys after the alias table ------------------------------------------------------------


def test_inspect_keys_count_an_alias_pair_once(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _native(tmp_path / "run", ['{"step": 0, "grad_global_norm": 2.0}', '{"step": 1, "grad/global_norm": 3.0}'])
    shown = cli("summarize", str(run), "--scalars", "--format", "json")
    keys = [row["key"] for row in json.loads(shown.stdout)]
    assert keys == ["grad/global_norm"]  # one metric under its two names (the built-in alias table)
    r = cli("inspect", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["scalars"]["keys"] == len(keys)
