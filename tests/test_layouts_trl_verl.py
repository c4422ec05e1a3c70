"""TRL and verl reader defects: non-reward numeric columns, reward columns typed differently between files,
unique TRL sample ids across completions/ folders, verl's validation folder test, fidelity notes that name
their file. Expected values are counted independently (pyarrow / numpy / json), not by the reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from runlog.formats.base import WARNING, Candidate, FileInfo, RunContext
from runlog.formats.trl import Trl
from runlog.formats.verl import Verl, split_of


def scan(layout: Any, root: Path, paths: list[Path]) -> tuple[list[FileInfo], pl.DataFrame, RunContext]:
    ctx = RunContext(root)
    infos = [layout.probe(Candidate(root, p, p.stat().st_size), ctx) for p in paths]
    lf = layout.scan_samples(infos, ctx)
    assert lf is not None
    return infos, lf.collect(), ctx


def write(path: Path, cols: dict[str, list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def notes(ctx: RunContext) -> list[str]:
    return [n["message"] for n in ctx.fidelity]


def test_trl_non_reward_numeric_columns_are_not_summed(tmp_path: Path) -> None:
    comp = tmp_path / "completions"
    cols = {
        "step": [2] * 4,
        "prompt": ["p1", "p1", "p2", "p2"],
        "completion": ["a", "b", "c", "d"],
        "accuracy_reward": [1.0, 1.0, 0.0, float("inf")],
        "format_reward": [0.0, 1.0, 1.0, 1.0],
        "advantage": [0.1, 0.1, -1.0, 1.0],
        "num_tokens": [100, 200, 300, 400],
        "completion_len": [5, 6, 7, 8],
        "prompt_tokens": [9, 9, 9, 9],
    }
    path = write(comp / "completions_00002.parquet", cols)
    _, df, ctx = scan(Trl(), tmp_path, [path])
    table = pq.read_table(path)
    expected = np.nansum(
        np.stack([table["accuracy_reward"].to_numpy(), table["format_reward"].to_numpy()]), axis=0
    ).tolist()
    assert df["reward"].to_list() == expected == [1.0, 2.0, 1.0, float("inf")]
    assert {c["name"] for comps in df["reward_components"] for c in comps} == {"accuracy_reward", "format_reward"}
    extra = [json.loads(e) for e in df["extra"]]
    assert [e["num_tokens"] for e in extra] == table["num_tokens"].to_pylist()
    assert [e["completion_len"] for e in extra] == table["completion_len"].to_pylist()
    assert (
        "completions/completions_00002.parquet: reward is the sum of the reward-function column(s) "
        "accuracy_reward, format_reward" in notes(ctx)
    )
    assert any(m.startswith("completions/completions_00002.parquet: columns kept as JSON") for m in notes(ctx))


def test_trl_reward_column_as_text_in_one_file_is_read_and_warned(tmp_path: Path) -> None:
    comp = tmp_path / "completions"
    a = write(comp / "completions_00001.parquet", {"prompt": ["p", "p"], "completion": ["x", "y"], "acc": [1.0, 2.0]})
    b = write(
        comp / "completions_00002.parquet",
        {"prompt": ["p", "p", "p"], "completion": ["x", "y", "z"], "acc": ["1.0", " 2 ", "high"]},
    )
    _, df, ctx = scan(Trl(), tmp_path, [a, b])
    raw = pq.read_table(a)["acc"].to_pylist() + pq.read_table(b)["acc"].to_pylist()

    def num(v: Any) -> float | None:
        try:
            return float(v)
        except ValueError:
            return None

    expected = [num(v) for v in raw]
    assert df["reward"].to_list() == expected == [1.0, 2.0, 1.0, 2.0, None]
    assert df.filter(pl.col("step") == 2)["reward"].mean() == np.mean([1.0, 2.0])
    warns = [p for p in ctx.problems if p.kind == WARNING]
    assert len(warns) == 1 and warns[0].path == "completions/completions_00002.parquet"
    assert "'acc'" in warns[0].message and "1 value(s) that are not numbers" in warns[0].message
    assert "'high'" in warns[0].message


def test_trl_sample_ids_unique_across_train_and_eval_folders(tmp_path: Path) -> None:
    paths = []
    for mode in ("train", "eval"):
        paths.append(
            write(
                tmp_path / "completions" / mode / "completions_00010.parquet",
                {"mode": [mode] * 3, "step": [10] * 3, "prompt": ["P", "P", "Q"], "completion": ["1", "2", "3"]},
            )
        )
    _, df, ctx = scan(Trl(), tmp_path, paths)
    rows = sum(pq.read_metadata(p).num_rows for p in paths)
    assert df.height == rows == 6
    assert df["sample_id"].n_unique() == rows
    assert sorted(df["sample_id"].to_list()) == sorted(f"{m}/10:{i}" for m in ("train", "eval") for i in range(3))
    # one folder: ids stay `{step}:{row}`
    _, one, _ = scan(Trl(), tmp_path, paths[:1])
    assert one["sample_id"].to_list() == ["10:0", "10:1", "10:2"]
    assert any(
        m.startswith("completions/train/completions_00010.parquet and 1 more file(s): no reward") for m in notes(ctx)
    )


def verl_line(step: int, **extra: Any) -> str:
    return json.dumps({"input": "q", "output": "a", "gts": "g", "score": 1.0, "step": step, **extra})


def test_verl_split_matches_whole_folder_names(tmp_path: Path) -> None:
    cases = {
        "retrieval_rollouts/3.jsonl": "train",
        "interval/3.jsonl": "train",
        "contest/3.jsonl": "train",
        "rollout/3.jsonl": "train",
        "val/3.jsonl": "val",
        "val_generations/3.jsonl": "val",
        "validation/3.jsonl": "val",
        "eval-dumps/3.jsonl": "val",
    }
    assert {p: split_of(p) for p in cases} == cases
    paths = []
    for rel in cases:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(verl_line(3, pred="x") + "\n", encoding="utf-8")
        paths.append(p)
    _, df, ctx = scan(Verl(), tmp_path, paths)
    assert dict(zip(df["source"].to_list(), df["split"].to_list(), strict=True)) == cases
    assert Verl().run_folder("run/retrieval_rollouts") == "run/retrieval_rollouts"
    assert Verl().run_folder("run/val_generations") == "run"
    # the kept fields are one note for the run (a verl run has a file per step: a note each would be hundreds)
    kept = set(json.loads((tmp_path / "val/3.jsonl").read_text())) - {"input", "output", "score", "step"}
    assert f"fields kept as JSON in the `extra` column: {', '.join(sorted(kept))}" in notes(ctx)
