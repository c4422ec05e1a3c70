"""Audit 12 (summarize: exit codes, table digits, notes). Expected figures come from pyarrow and Python on the
files written here, never from runlog's code.

- Filters that each match the run but no sample together (``--role judge --split train --steps 3`` where the
  judge sat out step 3) exited 0 with an empty table, ``[]`` or a header-only CSV; a fleet exits 2 for it.
- The table's 4 significant digits showed 20000/20001 (one prompt group in 20,001 with a GRPO signal) as ``1``,
  the figure of "no group has a signal".
- The ``--prompt-groups`` hint showed whenever a ``prompt`` column existed, also where no sample without a
  group_id has a prompt (the flag changes nothing there).
- A fleet never said that some rewards are infinite, nor gave the ``--prompt-groups`` hint, as one run does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog.formats.common as formats_common
from runlog import schema as S
from runlog.cli.output import fmt_cell

from conftest import native_rows, native_run_of

ROLES = ("solver", "judge")
JUDGE_ABSENT = 3  # the train step the judge sat out


def _rows_without_judge_at_step_3() -> list[dict]:
    rows = []
    for step in range(5):
        roles = ("solver",) if step == JUDGE_ABSENT else ROLES
        rows += native_rows(step, 8, roles=roles)
    return rows


@pytest.fixture
def judge_run(tmp_path: Path) -> Path:
    return native_run_of(tmp_path / "judge_run", _rows_without_judge_at_step_3(), roles=ROLES)


def _judge_steps(run: Path) -> set[int]:
    """The train steps at which some sample has a judge entry, read with pyarrow."""
    steps = set()
    for f in (run / "samples" / "train").glob("*.parquet"):
        for row in pq.read_table(f, columns=["step", "roles"]).to_pylist():
            if any(r["role"] == "judge" for r in row["roles"] or []):
                steps.add(row["step"])
    return steps


# ---------------------------------------------------------------------------------------------------------
# F1: filters that match nothing together
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_filters_that_match_no_sample_together_are_a_usage_error_on_one_run(cli, judge_run: Path, fmt: str):
    """Exit 2, one line naming the filters, nothing on stdout (was: exit 0 with `[]` or a header-only CSV)."""
    assert JUDGE_ABSENT not in _judge_steps(judge_run) and {2, 4} <= _judge_steps(judge_run)
    r = cli("summarize", judge_run, "--role", "judge", "--split", "train", "--steps", str(JUDGE_ABSENT), "-f", fmt)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert r.stderr == (
        f"Error: {judge_run}: no sample matches --split train --steps 3 --role judge together: nothing to summarise\n"
    )
    # One step more: the judge's rows at step 4 are the answer, exit 0.
    r = cli("summarize", judge_run, "--role", "judge", "--split", "train", "--steps", "3:4", "-f", "json")
    assert r.exit_code == 0, r.output
    assert [(row["role"], row["reward_count"]) for row in json.loads(r.stdout)] == [("judge", 8)]


def test_filters_that_match_nothing_together_write_no_file_and_say_so_for_a_fleet_too(cli, judge_run, tmp_path):
    out = tmp_path / "x.csv"
    args = ["--role", "judge", "--split", "train", "--steps", "3"]
    r = cli("summarize", judge_run, *args, "-o", out)
    assert r.exit_code == 2 and not out.exists()
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    native_run_of(fleet / "a", _rows_without_judge_at_step_3(), roles=ROLES)
    r = cli("summarize", f"{fleet}/*", *args, "-f", "json")
    assert r.exit_code == 2 and r.stdout == ""
    assert "no run of the fleet has a row" in r.stderr


def test_correlations_of_a_role_with_no_sample_at_the_filters_are_a_usage_error(cli, judge_run):
    """--correlations --role judge where the judge has no reward at the steps chosen gave the other pairs alone,
    exit 0; with a second role that has rows, its pairs are the answer and a note names the role left out."""
    args = ["--split", "train", "--steps", "3", "--correlations"]
    r = cli("summarize", judge_run, *args, "--role", "judge", "-f", "csv")
    assert r.exit_code == 2 and r.stdout == ""
    assert "no sample matches --split train --steps 3 --role judge together" in r.stderr
    r = cli("summarize", judge_run, *args, "--role", "judge", "--role", "solver", "-f", "json")
    assert r.exit_code == 0, r.output
    named = {v for row in json.loads(r.stdout) for v in (row["x"], row["y"])}
    assert "reward/solver" in named and "reward/judge" not in named
    assert "note: no sample has a reward of role(s) judge at the steps and splits chosen" in r.stderr


# ---------------------------------------------------------------------------------------------------------
# F2: a value that is not whole never reads as whole
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,shown",
    [
        (0.99995, "0.99995"),
        (20000 / 20001, "0.99995"),
        (40001 / 40002, "0.99998"),
        (1.0, "1"),
        (-0.99995, "-0.99995"),
        (999.95, "999.95"),
        (12.00001, "12.00001"),
        (1234.5678, "1,234.6"),
        (2048.0, "2,048"),
        (0.5, "0.5"),
        (0.25, "0.25"),
        (1e-7, "1.000e-07"),
        (-1e-300, "-1.000e-300"),
        (2.5e-05, "2.500e-05"),
    ],
)
def test_a_table_cell_never_rounds_a_fraction_to_a_whole_number(value: float, shown: str):
    """Up to 8 significant digits (3 decimals from 1,000): beyond them, float rounding is not a fraction."""
    text = fmt_cell(value).plain
    assert text == shown
    assert float(text.replace(",", "")).is_integer() == value.is_integer()
    assert float(text.replace(",", "")) != 0


@pytest.mark.parametrize(
    ("values", "shown"), [((0.2, 2.2, 0.6), "1"), ((1 - 2**-53,), "1"), ((5000.000000000001,), "5,000")]
)
def test_float_rounding_reads_as_the_whole_number(values: tuple[float, ...], shown: str):
    """The mean of 0.2, 2.2 and 0.6 is 1.0000000000000002 in floats: a 1, not 17 digits of noise (review)."""
    mean = sum(values) / len(values)
    assert len(values) == 1 or not mean.is_integer()  # the noise is there to hide
    assert fmt_cell(mean).plain == shown


def _flat_groups_run(root: Path, groups: int) -> Path:
    """One train step of ``groups`` prompt groups of 2 samples, rewards all 1.0 but group 0's (1.0, 0.0)."""
    rows = []
    for g in range(groups):
        for i in range(2):
            reward = 0.0 if (g, i) == (0, 1) else 1.0
            rows.append({"schema_version": 2, "step": 0, "split": "train", "sample_id": f"{g}-{i}"})
            rows[-1].update(group_id=f"g{g}", reward=reward, roles=None, prompt=f"p{g}")
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "roles": []}))
    path = root / "samples" / "train" / "step_00000000.p0.parquet"
    path.parent.mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=S.NATIVE_SAMPLE_SCHEMA)
    pq.write_table(table.replace_schema_metadata({"runlog.schema_version": "2"}), path)
    return root


def test_the_summary_table_shows_one_group_with_signal_in_20001_as_not_1(cli, tmp_path):
    """zero_adv_frac 20000/20001 printed `1` (no group has a signal); the reward mean 40001/40002 too."""
    run = _flat_groups_run(tmp_path / "r", 20001)
    table = pq.read_table(run / "samples" / "train" / "step_00000000.p0.parquet", columns=["group_id", "reward"])
    by_group: dict[str, list[float]] = {}
    for row in table.to_pylist():
        by_group.setdefault(row["group_id"], []).append(row["reward"])
    zero_adv = sum(min(v) == max(v) for v in by_group.values()) / len(by_group)
    mean = math.fsum(table["reward"].to_pylist()) / table.num_rows
    assert zero_adv != 1 and f"{zero_adv:.4g}" == "1" and f"{mean:.4g}" == "1"
    data = json.loads(cli("summarize", run, "--by", "step", "-f", "json").stdout)
    assert data[0]["zero_adv_frac"] == pytest.approx(zero_adv, rel=1e-12)
    r = cli("summarize", run, "--by", "step")
    assert r.exit_code == 0, r.output
    cells = r.stdout.replace("│", " ").split()
    assert f"{zero_adv:.5g}" in cells and f"{mean:.5g}" in cells  # 0.99995, 0.99998
    # `1` only for the values that are exactly 1 (the reward max and median).
    assert cells.count("1") == sum(v == 1.0 for v in data[0].values() if isinstance(v, float)) == 2


# ---------------------------------------------------------------------------------------------------------
# F4: the --prompt-groups hint
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def prompt_null_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe keeps the ``prompt`` column's footer null count (formats/common.py's
    ``NULL_COUNT_STRING_COLUMNS``; a no-op once it lists ``prompt``)."""
    if "prompt" not in formats_common.NULL_COUNT_STRING_COLUMNS:
        columns = (*formats_common.NULL_COUNT_STRING_COLUMNS, "prompt")
        monkeypatch.setattr(formats_common, "NULL_COUNT_STRING_COLUMNS", columns)


def _ids_run(root: Path, *, idless_prompt: str | None, all_prompts_null: bool = False) -> Path:
    """Train steps 0-1: 8 samples in prompt groups (with their prompt), 2 without a group_id, whose prompt is
    ``idless_prompt``; ``all_prompts_null``: no sample has a prompt."""
    rows = []
    for step in range(2):
        part = native_rows(step, 10)
        for i, row in enumerate(part):
            row["reward"] = float(i % 3)
            row["prompt"] = f"prompt {i // 4}"
            if i >= 8:  # equal rewards: a flat prompt group where the prompt makes one
                row["group_id"], row["prompt"], row["reward"] = None, idless_prompt, 5.0
            for k, role in enumerate(row["roles"]):
                role["reward"] = row["reward"] + k
            if all_prompts_null:
                row["prompt"] = None
        rows += part
    return native_run_of(root, rows, roles=("solver", "verifier"))


def _idless_with_prompt(run: Path) -> int:
    n = 0
    for f in run.glob("samples/*/*.parquet"):
        rows = pq.read_table(f, columns=["group_id", "prompt"]).to_pylist()
        n += sum(r["group_id"] is None and r["prompt"] is not None for r in rows)
    return n


HINT = "add --prompt-groups"


def test_no_prompt_groups_hint_where_no_sample_has_a_prompt(cli, tmp_path, prompt_null_counts):
    """No sample has a prompt: --prompt-groups changes nothing, and the hint is not given (it was: the column
    exists). Where some have one, the footer cannot tell whether the samples without an id are among them: the
    hint is given (review: a zero_adv_frac of 1 that --prompt-groups makes 0.5 lost its hint)."""
    run = _ids_run(tmp_path / "r", idless_prompt=None, all_prompts_null=True)
    assert _idless_with_prompt(run) == 0
    plain = cli("summarize", run, "-f", "json")
    assert plain.exit_code == 0, plain.output
    assert HINT not in plain.stderr
    flagged = cli("summarize", run, "-f", "json", "--prompt-groups")
    assert json.loads(flagged.stdout) == json.loads(plain.stdout)


def test_the_hint_where_the_footer_cannot_tell(cli, tmp_path, prompt_null_counts):
    """Exactly the samples without an id have a prompt (2 of 10 a step): as many rows without an id as with a
    prompt, which a footer cannot tell from "none of them": the hint is said, and the flag does change the
    figures."""
    rows = []
    for step in range(2):
        part = native_rows(step, 10)
        for i, row in enumerate(part):
            row["reward"], row["prompt"] = float(i % 3), None
            if i >= 8:  # equal rewards: a flat prompt group where the prompt makes one
                row["group_id"], row["prompt"], row["reward"] = None, "p", 5.0
            for k, role in enumerate(row["roles"]):
                role["reward"] = row["reward"] + k
        rows += part
    run = native_run_of(tmp_path / "r", rows, roles=("solver", "verifier"))
    assert _idless_with_prompt(run) == 4
    plain = cli("summarize", run, "-f", "json")
    assert HINT in plain.stderr
    flagged = cli("summarize", run, "-f", "json", "--prompt-groups")
    assert json.loads(flagged.stdout) != json.loads(plain.stdout)


def test_the_prompt_groups_hint_stays_where_the_flag_finds_groups(cli, tmp_path, prompt_null_counts):
    run = _ids_run(tmp_path / "r", idless_prompt="the same prompt")
    assert _idless_with_prompt(run) == 4
    plain = cli("summarize", run, "-f", "json")
    assert HINT in plain.stderr
    flagged = cli("summarize", run, "-f", "json", "--prompt-groups")
    assert json.loads(flagged.stdout) != json.loads(plain.stdout)  # the id-less pairs are groups now
    assert HINT not in flagged.stderr


# ---------------------------------------------------------------------------------------------------------
# F5: a fleet's notes
# ---------------------------------------------------------------------------------------------------------
def test_a_fleet_says_that_rewards_are_infinite_as_one_run_does(cli, tmp_path):
    fleet = tmp_path / "fleet"
    rows = native_rows(0, 8)
    rows[3]["roles"][0]["reward"] = math.inf
    run = native_run_of(fleet / "a", rows, roles=("solver", "verifier"))
    table = pq.read_table(next(run.glob("samples/*/*.parquet")), columns=["roles"])
    assert math.inf in [r["reward"] for row in table.to_pylist() for r in row["roles"] if r["role"] == "solver"]
    one = cli("summarize", run, "-f", "csv")
    many = cli("summarize", f"{fleet}/*", "--by", "run", "--by", "role", "-f", "csv")
    assert one.exit_code == many.exit_code == 0, many.output
    note = "note: some rewards are infinite (min -inf or max inf)"
    assert note in one.stderr and note in many.stderr
    pooled = cli("summarize", f"{fleet}/*", "--by", "role", "-f", "csv")
    assert note in pooled.stderr


def test_a_fleet_gives_the_prompt_groups_hint_once_naming_its_runs(cli, tmp_path, prompt_null_counts):
    fleet = tmp_path / "fleet"
    _ids_run(fleet / "a", idless_prompt="the same prompt")
    _ids_run(fleet / "b", idless_prompt="the same prompt")
    _ids_run(fleet / "c", idless_prompt=None, all_prompts_null=True)
    r = cli("summarize", f"{fleet}/*", "-f", "csv")
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.stderr.splitlines() if HINT in x]
    assert line.startswith("note: run(s) a, b: some samples have no group_id")
    r = cli("summarize", f"{fleet}/*", "-f", "csv", "--prompt-groups")
    assert HINT not in r.stderr


def _nemo_line(task: int, **reward) -> dict:
    out = {"role": "assistant", "type": "message", "content": [{"type": "output_text", "text": "a"}]}
    return {
        "responses_create_params": {"input": [{"role": "user", "content": "q"}]},
        "response": {"output": [out]},
        "_ng_task_index": task,
        "_ng_rollout_index": 0,
        **reward,
    }


@pytest.mark.parametrize("layout", ["verifiers", "nemo_gym"])
def test_a_null_reward_is_said_as_a_null_reward_and_counted_as_null(cli, tmp_path, layout):
    """``"reward": null`` (the key is there) was said as a line 'without a reward'; it is a null reward."""
    q = [{"role": "user", "content": "q"}]
    if layout == "verifiers":
        records = [
            {"id": 1, "prompt": q, "completion": "a", "reward": 0.5},
            {"id": 1, "prompt": q, "completion": "a", "reward": None},
            {"id": 2, "prompt": q, "completion": "a"},
        ]
        path = tmp_path / "run" / "results.jsonl"
    else:
        records = [_nemo_line(0, reward=0.5), _nemo_line(1, reward=None), _nemo_line(2)]
        path = tmp_path / "run" / "rollouts.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    parsed = [json.loads(x) for x in path.read_text().splitlines()]
    nulls = sum("reward" in r and r["reward"] is None for r in parsed)
    absent = sum("reward" not in r for r in parsed)
    assert (nulls, absent) == (1, 1)
    r = cli("summarize", path.parent, "--by", "split", "-f", "json")
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["reward_null"] == nulls + absent and row["reward_count"] == 1
    assert "1 line(s) with a null reward (first: line 2): counted as null" in r.stderr
    assert "1 line(s) without a reward (first: line 3): read as null" in r.stderr
