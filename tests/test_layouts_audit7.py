"""Layout audit 7 (TRL, verl, AReaL): what the `areal` layout needs and says, `--layout X` on files of another
layout, TRL's fidelity notes in plain `inspect`, and verl's split told by the dumps' own `reward` marker.

Files are written the way the upstream writers write them: TRL ``GRPOTrainer.log``
(``pd.DataFrame(table).to_parquet``, imitated with ``pa.Table.from_pydict``), verl
``RayPPOTrainer._dump_generations`` (``json.dumps`` per line; validation dumps from ``_validate`` add
``reward_extra_infos_dict["reward"]``, the scores again), and the dicts AReaL's ``StatsLogger.commit`` logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from runlog.cli.app import app
from runlog.errors import UsageError
from runlog.run import open_run

runner = CliRunner()


def trl_file(root: Path, step: int, table: dict[str, list[Any]]) -> Path:
    path = root / "completions" / f"completions_{step:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict(table), path)
    return path


def verl_dump(path: Path, step: int, scores: list[float], *, validation: bool, **extra: list[Any]) -> Path:
    """``_dump_generations``: input, output, gts, score, step and every reward_extra_infos_dict entry of the
    batch's length; ``_validate`` puts the scores in that dict as ``reward`` first."""
    n = len(scores)
    base: dict[str, list[Any]] = {
        "input": [f"user\nq{i}\nassistant\n" for i in range(n)],
        "output": [f"a{i}" for i in range(n)],
        "gts": [str(i) for i in range(n)],
        "score": scores,
        "step": [step] * n,
    }
    infos: dict[str, list[Any]] = {"reward": list(scores)} if validation else {}
    infos.update(extra)
    for k, v in infos.items():
        if len(v) == n:
            base[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({k: v[i] for k, v in base.items()}, ensure_ascii=False) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def areal_committed(path: Path) -> Path:
    """The dicts ``StatsLogger.commit`` logs (``wandb.log(item, step=...)``: the step is not in them), one a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"ppo_actor/task_reward/avg": 0.1 * g, "timeperf/train_step": 1.2} for g in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- 1. AReaL: dicts without a step key -------------------------------------------------------------------


def test_areal_dicts_without_a_step_key_say_why_when_detecting(tmp_path: Path) -> None:
    areal_committed(tmp_path / "run" / "stats.jsonl")
    with pytest.raises(UsageError) as exc:
        open_run(tmp_path / "run")
    msg = str(exc.value)
    assert "stats.jsonl" in msg and "no run files found" in msg
    assert "without a step key (global_step, step, _step, trainer/step)" in msg
    r = runner.invoke(app, ["inspect", str(tmp_path / "run")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "without a step key (global_step, step, _step, trainer/step)" in one_line(r.stderr)


def test_areal_dicts_without_a_step_key_say_why_when_forced(tmp_path: Path) -> None:
    areal_committed(tmp_path / "run" / "stats.jsonl")
    run = open_run(tmp_path / "run", layout="areal")
    said = [p.message for p in run.problems if p.path == "stats.jsonl"]
    assert len(said) == 1 and "\n" not in said[0]
    assert "without a step key (global_step, step, _step, trainer/step)" in said[0]
    assert "all 3 record(s) left out of every summary" in said[0]


def test_areal_file_with_a_step_key_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "run" / "stats.jsonl"
    path.parent.mkdir(parents=True)
    rows = [{"epoch": 0, "step": g, "global_step": g, "loss": 0.5, "loss__count": 4} for g in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = open_run(tmp_path / "run")
    assert [f.layout for f in run.files] == ["areal"] and run.files[0].steps == [0, 1, 2]
    assert not [p for p in run.problems if "step key" in p.message]


# -- 2. --layout X on files of another layout ---------------------------------------------------------------


def test_forced_verl_on_trl_files_says_what_they_are(tmp_path: Path) -> None:
    for step in (10, 20):
        trl_file(tmp_path / "out", step, {"step": [step] * 2, "prompt": ["p", "q"], "completion": ["a", "b"]})
    r = runner.invoke(app, ["inspect", str(tmp_path / "out"), "--layout", "verl"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line = one_line(r.stderr)
    assert "none of the 2 file(s) is a verl file" in line and "they look like trl's" in line
    assert "match no known layout" not in line and "force one with --layout" not in line


def test_forced_trl_on_verl_dumps_says_what_they_are(tmp_path: Path) -> None:
    verl_dump(tmp_path / "run" / "rollout" / "1.jsonl", 1, [1.0, 0.0], validation=False)
    verl_dump(tmp_path / "run" / "val_generations" / "1.jsonl", 1, [1.0], validation=True)
    with pytest.raises(UsageError) as exc:
        open_run(tmp_path / "run", layout="trl")
    msg = str(exc.value)
    assert "none of the 2 file(s) is a trl file" in msg and "they look like verl's" in msg
    assert "match no known layout" not in msg


# -- 3. TRL's fidelity notes in plain inspect ---------------------------------------------------------------


def test_trl_notes_in_plain_inspect_without_reading_data(tmp_path: Path) -> None:
    # the newest trainers' columns: step, prompt, completion only
    trl_file(tmp_path / "out", 3, {"step": [3, 3], "prompt": ["a", "b"], "completion": ["x", "y"]})
    r = runner.invoke(app, ["inspect", str(tmp_path / "out"), "--format", "json"])
    assert r.exit_code == 0, r.output
    notes = [n["message"] for n in json.loads(r.stdout)["fidelity"]]
    assert any("weight 1.0" in n for n in notes)
    assert any(n.endswith("no reward-function columns found: reward is null") for n in notes)
    text = runner.invoke(app, ["inspect", str(tmp_path / "out")], env={"COLUMNS": "300"})
    assert "no reward-function columns found" in text.stdout and "weight 1.0" in text.stdout


def test_trl_notes_name_the_summed_columns_and_prompt_groups_option(tmp_path: Path) -> None:
    table = {
        "step": [10] * 2,
        "prompt": ["p", "p"],
        "completion": ["a", "b"],
        "accuracy_reward": [1.0, 0.0],
        "format_reward": [0.0, 1.0],
        "advantage": [0.5, -0.5],
    }
    trl_file(tmp_path / "out", 10, table)
    run = open_run(tmp_path / "out")
    notes = [n["message"] for n in run.fidelity]
    assert any("reward-function column(s) accuracy_reward, format_reward" in n for n in notes)
    group = [n for n in notes if n.startswith("TRL logs no group id")]
    assert len(group) == 1 and "--prompt-groups" in group[0]
    assert "summaries group by identical prompts" not in group[0]
    # reading the data says the same notes again, not other ones
    before = list(run.fidelity)
    run.samples.collect()
    assert run.fidelity == before


# -- 4. verl's split from the dumps' own marker -------------------------------------------------------------


def test_verl_training_dumps_under_a_test_folder_are_train(tmp_path: Path) -> None:
    for step in (1, 2):
        verl_dump(tmp_path / "run" / "test_rollouts" / f"{step}.jsonl", step, [1.0, 0.0], validation=False, acc=[1, 0])
    run = open_run(tmp_path / "run")
    assert {f.split for f in run.files} == {"train"}
    assert set(run.samples.collect()["split"].to_list()) == {"train"}
    notes = [n["message"] for n in run.fidelity]
    assert any("test_rollouts/: split train from its dumps' lines" in n for n in notes)


def test_verl_validation_dumps_in_any_sibling_folder_are_one_run(tmp_path: Path) -> None:
    verl_dump(tmp_path / "run" / "rollout" / "1.jsonl", 1, [1.0, 0.0], validation=False)
    verl_dump(tmp_path / "run" / "rollout" / "2.jsonl", 2, [0.0, 0.0], validation=False)
    verl_dump(tmp_path / "run" / "valgen" / "2.jsonl", 2, [1.0, 1.0], validation=True, acc=[1.0, 1.0])
    run = open_run(tmp_path / "run")
    assert {(f.path, f.split) for f in run.files} == {
        ("rollout/1.jsonl", "train"),
        ("rollout/2.jsonl", "train"),
        ("valgen/2.jsonl", "val"),
    }
    df = run.samples.collect()
    assert df.filter(df["split"] == "val")["reward"].to_list() == [1.0, 1.0]
    r = runner.invoke(app, ["render-trajectory", str(tmp_path / "run"), "--split", "val"])
    assert r.exit_code == 0, r.output
    # two runs side by side are still two
    verl_dump(tmp_path / "two" / "a" / "1.jsonl", 1, [1.0], validation=False)
    verl_dump(tmp_path / "two" / "b" / "1.jsonl", 1, [1.0], validation=False)
    with pytest.raises(UsageError, match="holds 2 runs"):
        open_run(tmp_path / "two")


def test_verl_split_folder_fallback_is_noted(tmp_path: Path) -> None:
    # Lines with and without the marker: the lines do not settle it; the folder's name does, said.
    path = tmp_path / "run" / "val_generations" / "5.jsonl"
    verl_dump(path, 5, [1.0, 0.0], validation=True)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["reward"]
    path.write_text(lines[0] + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    run = open_run(tmp_path / "run")
    assert [f.split for f in run.files] == ["val"]
    notes = [n["message"] for n in run.fidelity]
    assert any("val_generations/: split val from the folder's name (1 of 2 lines carry `reward`)" in n for n in notes)
