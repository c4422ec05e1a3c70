"""Copies the readers counted silently (audit 14, layouts): lines written twice in a NeMo Gym, verifiers or verl
JSONL file (a retried writer, a file appended to itself) counted twice with no word, and a TRL completions file
whose name is not the step of its rows (a copy of step 20 saved as ``completions_00021``) counted as a step 21
the run never had.

Each test builds its input with ``json`` / pyarrow and counts what it expects from those records, never from
runlog's code. Identical rollouts that are distinct samples (same prompt, same completion, same reward, and no
id or timing of their own) must not be said.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import REALDATA, need_realdata

NEMO = "nemo_gym_tool_call_multireward_rollouts.jsonl"
VERIFIERS = "verifiers_math_python_gpt5nano_results.jsonl"
REPEATED = "repeat an earlier line of this file record for record"


def _inspect(cli: Any, run: Path) -> list[dict[str, Any]]:
    r = cli("inspect", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["problems"]


def _repeats(problems: list[dict[str, Any]]) -> list[str]:
    return [p["message"] for p in problems if REPEATED in p["message"]]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _real_lines(name: str) -> list[str]:
    need_realdata(name)
    return (REALDATA / name).read_text().splitlines()


def test_nemo_gym_lines_appended_again_are_said_and_counted(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = _real_lines(NEMO)
    _write_lines(tmp_path / "run" / "rollouts.jsonl", lines + lines[:2])
    (msg,) = _repeats(_inspect(cli, tmp_path / "run"))
    assert msg.startswith(f"2 line(s) {REPEATED} (first: line {len(lines) + 1} repeats line 1)")
    assert "each counted" in msg
    r = cli("summarize", str(tmp_path / "run"), "--format", "json")
    rewards = [json.loads(line)["reward"] for line in lines + lines[:2]]
    assert json.loads(r.stdout)[0]["reward_count"] == len(rewards)  # kept, as the warning says


def test_nemo_gym_real_file_and_copies_in_other_files_are_not_within_file_repeats(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = _real_lines(NEMO)
    _write_lines(tmp_path / "run" / "rollouts.jsonl", lines)
    assert _repeats(_inspect(cli, tmp_path / "run")) == []


def test_nemo_gym_id_of_an_earlier_different_line_is_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = _real_lines(NEMO)
    recs = [json.loads(line) for line in lines]
    other = dict(recs[0], reward=0.123)  # another rollout under the first one's task and rollout index
    _write_lines(tmp_path / "run" / "rollouts.jsonl", [*lines, json.dumps(other)])
    problems = _inspect(cli, tmp_path / "run")
    assert _repeats(problems) == []
    sid = f"{recs[0]['_ng_task_index']}:{recs[0]['_ng_rollout_index']}"
    (msg,) = [p["message"] for p in problems if "sample id of an earlier, different line" in p["message"]]
    assert msg.startswith(f"1 line(s) have the sample id of an earlier, different line of this file (first: line "
                          f"{len(lines) + 1}, id {sid!r}, as line 1)")  # fmt: skip


def test_verifiers_lines_appended_again_are_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = _real_lines(VERIFIERS)
    _write_lines(tmp_path / "run" / "results.jsonl", lines + lines[:2])
    (msg,) = _repeats(_inspect(cli, tmp_path / "run"))
    assert msg.startswith(f"2 line(s) {REPEATED} (first: line {len(lines) + 1} repeats line 1)")


def test_verifiers_one_copied_line_with_timings_is_said_wherever_it_is(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = _real_lines(VERIFIERS)
    _write_lines(tmp_path / "run" / "results.jsonl", [*lines[:5], lines[3], *lines[5:]])
    (msg,) = _repeats(_inspect(cli, tmp_path / "run"))
    assert msg.startswith(f"1 line(s) {REPEATED} (first: line 6 repeats line 4)")


def test_verifiers_identical_rollouts_without_timings_are_not_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """Older vf-eval writes no timings: at temperature 0 the rollouts of one example are identical lines."""
    recs = []
    for ex in range(3):
        for _ in range(3):
            recs.append({"id": ex, "prompt": [{"role": "user", "content": f"q{ex}"}],
                         "completion": [{"role": "assistant", "content": "4"}], "reward": 1.0})  # fmt: skip
    _write_lines(tmp_path / "run" / "results.jsonl", [json.dumps(r) for r in recs])
    assert _repeats(_inspect(cli, tmp_path / "run")) == []


def _verl(prompt: int, output: str = "<answer>4</answer>", score: float = 1.0) -> str:
    return json.dumps({"input": f"user: solve {prompt}", "output": output, "gts": "4", "score": score, "step": 3})


def test_verl_an_eval_set_dumped_k_times_is_not_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """verl lines carry no id or timing: a greedy validation dump of an eval set repeated 4 times (avg@k) repeats
    its lines in order, as a file appended to itself would; it is healthy (a first version of this check said it,
    advising to delete real samples), so no run of lines is said."""
    lines = [_verl(i, f"<answer>{i}</answer>", i / 4) for i in range(3)]
    _write_lines(tmp_path / "run" / "rollout" / "3.jsonl", lines * 4)
    assert _repeats(_inspect(cli, tmp_path / "run")) == []


def test_verl_identical_rollouts_of_one_prompt_are_not_said(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """verl lines carry no id or timing: a prompt's rollouts with one output are identical lines, at the file's
    end too (the last prompt's group), and are distinct samples."""
    lines = [_verl(p) for p in range(4) for _ in range(4)]
    _write_lines(tmp_path / "run" / "rollout" / "3.jsonl", lines)
    assert _repeats(_inspect(cli, tmp_path / "run")) == []


def test_verl_copy_of_a_dump_under_another_name_is_said_pooled(cli, tmp_path: Path) -> None:  # noqa: ANN001
    lines = [_verl(i, f"<answer>{i}</answer>") for i in range(4)]
    _write_lines(tmp_path / "run" / "rollout" / "3.jsonl", lines)
    _write_lines(tmp_path / "run" / "rollout" / "3_backup.jsonl", lines)  # its lines say step 3
    problems = _inspect(cli, tmp_path / "run")
    (msg,) = [p["message"] for p in problems if "occur in more than one verl file at the same step" in p["message"]]
    assert msg.startswith("4 sample id(s)") and "each file's rows are counted" in msg


def _trl(path: Path, step: Any, rewards: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(rewards)
    pq.write_table(pa.table({"step": [step] * n, "prompt": ["p"] * n, "completion": ["c"] * n,
                             "accuracy_reward": rewards}), path)  # fmt: skip


def _steps(cli: Any, run: Path) -> list[tuple[int, int]]:
    r = cli("summarize", str(run), "--by", "step", "--format", "json")
    assert r.exit_code == 0, r.stderr
    return [(row["step"], row["reward_count"]) for row in json.loads(r.stdout)]


def test_trl_file_named_another_step_is_said_and_counts_at_its_rows_step(cli, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "run" / "completions"
    for step, text in ((19, False), (20, True)):
        _trl(folder / f"completions_{step:05d}.parquet", str(step) if text else step, [1.0, 0.0, 1.0, 1.0])
    shutil.copy(folder / "completions_00020.parquet", folder / "completions_00021.parquet")
    held = sorted({int(v) for f in folder.iterdir() for v in pq.read_table(f)["step"].to_pylist()})
    r = cli("inspect", str(tmp_path / "run"), "--format", "json")
    said = [p["message"] for p in json.loads(r.stdout)["problems"] if p["path"].endswith("completions_00021.parquet")]
    assert "named step 21 but its rows are of step 20: they count at their own step" in said
    assert [s for s, _ in _steps(cli, tmp_path / "run")] == held == [19, 20]


def test_trl_file_whose_rows_are_of_its_step_says_nothing(cli, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "run" / "completions"
    _trl(folder / "completions_00007.parquet", "7", [1.0, 0.5])  # TRL writes the step as text
    _trl(folder / "completions_00008.parquet", 8, [0.0, 0.5])
    r = cli("inspect", str(tmp_path / "run"), "--format", "json")
    assert not [p for p in json.loads(r.stdout)["problems"] if "named step" in p["message"]]
    assert _steps(cli, tmp_path / "run") == [(7, 2), (8, 2)]
