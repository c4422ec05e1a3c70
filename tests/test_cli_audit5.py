"""From a user audit of summarize / metrics / render-trajectory's inputs:

- a role that only process 1 wrote (process 0's manifest does not name it) was refused by
  `render-trajectory --role` and `--where role:NAME` as a typo, though summarize accepted it;
- `--steps ''` and `--where ''` (an unset shell variable) read as "no filter": render-trajectory then searched
  every step instead of the last; both are now usage errors, as an empty --split or --grep was;
- `--where 'reward < 0.2 and'` said "conditions are joined by 'and' only": the condition after it is missing;
- table cells from 1e3 to 1e6 read `1.235e+05`: whole units with separators now;
- `metrics diversity --threads -3` was accepted.
"""

from __future__ import annotations

import json

import pytest

from runlog import RunWriter


def two_process_run(root):
    """Process 0 declares the role solver, process 1 solver and critic; critic's reward is 0.5 + step."""
    for proc, roles in ((0, ["solver"]), (1, ["solver", "critic"])):
        with RunWriter(root, name="r", roles=roles, process_index=proc, durable=False) as w:
            for step in range(3):
                rows = []
                for i in range(2):
                    per_role = {"solver": {"reward": 0.1 * i + proc, "kl": 0.01}}
                    if proc == 1:
                        per_role["critic"] = {"reward": 0.5 + step, "kl": 0.02}
                    rows.append({"reward": 0.1 * i + proc, "group_id": f"s{step}g{i}", "roles": per_role})
                w.log_samples(step, rows)
    return root


def test_a_role_only_process_1_wrote_is_selectable(tmp_path, cli):
    root = two_process_run(tmp_path / "r")
    res = cli("render-trajectory", root, "--role", "critic", "--steps", "all", "--best", "1", "-f", "json")
    assert res.exit_code == 0, res.output
    [shown] = json.loads(res.stdout)
    critic = [r for r in shown["reward"]["roles"] if r["role"] == "critic"]
    assert critic and critic[0]["reward"] == 2.5  # the best critic reward written: 0.5 + step 2
    res = cli("render-trajectory", root, "--where", "role:critic > 2", "--steps", "all", "-f", "json")
    assert res.exit_code == 0, res.output
    assert {s["step"] for s in json.loads(res.stdout)} == {2}  # critic reward > 2 only at step 2 (2.5)
    res = cli("render-trajectory", root, "--role", "critc")
    assert res.exit_code == 2 and "critic" in res.output  # a typo is still refused, naming the roles


@pytest.mark.parametrize(
    "args",
    [
        ("summarize", "--steps", ""),
        ("render-trajectory", "--steps", "  "),
        ("metrics", "diversity", "--steps", ""),
        ("render-trajectory", "--where", ""),
    ],
)
def test_an_empty_filter_is_refused(cli, args):
    from conftest import SAMPLE_RUNS

    cmd, *rest = args
    if cmd == "metrics":
        res = cli("metrics", rest[0], SAMPLE_RUNS / "debate_grpo", *rest[1:])
    else:
        res = cli(cmd, SAMPLE_RUNS / "debate_grpo", *rest)
    assert res.exit_code == 2, res.output
    assert "empty" in res.output or "got 'nothing'" in res.output


def test_a_trailing_and_says_what_is_missing(cli):
    from conftest import SAMPLE_RUNS

    res = cli("render-trajectory", SAMPLE_RUNS / "debate_grpo", "--where", "reward < 0.2 and")
    assert res.exit_code == 2
    assert "no condition after the last 'and'" in res.output


def test_table_numbers_between_a_thousand_and_a_million_are_units_with_separators():
    """Whole numbers as such; a value that is not whole keeps the digits that say so (audit 12: 999.95 read
    ``1000``, 123456.7 read ``123,457``, whole numbers both; tests/test_summarize_audit12.py)."""
    from runlog.cli.output import fmt_cell

    assert [fmt_cell(v).plain for v in (123456.7, 99999.4, 1234.5678, 999.95, 1e6, -12345.6, 123456.0)] == [
        "123,456.7",
        "99,999.4",
        "1,234.6",
        "999.95",
        "1.000e+06",
        "-12,345.6",
        "123,456",
    ]


def test_threads_must_be_positive(cli):
    from conftest import SAMPLE_RUNS

    res = cli("metrics", "diversity", SAMPLE_RUNS / "debate_grpo", "--compression", "--threads", "0")
    assert res.exit_code == 2, res.output
