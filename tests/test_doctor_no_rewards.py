"""A split with samples and not one reward (every value null: an inspect_ai evaluation never scored, a trainer
that logged no reward) gave "healthy: no findings" and exit 0: every reward check had nothing to check. It is a
``data_problem`` warning (``no_rewards``) now; a run whose rewards are per role only is not one."""

from __future__ import annotations

import json

import pytest

from runlog import RunWriter

from conftest import REALDATA


def findings(cli, path, *args):
    res = cli("doctor", path, "--format", "json", *args)
    return res.exit_code, json.loads(res.stdout)["findings"]


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/realdata")
def test_an_evaluation_never_scored_is_said(cli):
    log = REALDATA / "inspect_ai_popularity.eval"
    code, found = findings(cli, log)
    [f] = [f for f in found if f["evidence"].get("problem_kind") == "no_rewards"]
    # The independent count: the log's samples, none with a score.
    import zipfile

    with zipfile.ZipFile(log) as z:
        samples = [json.loads(z.read(n)) for n in z.namelist() if n.startswith("samples/")]
    assert all(not s.get("scores") for s in samples)
    assert f["severity"] == "warning" and f["evidence"]["rows"] == len(samples) == 10
    assert code == 1


def test_rewards_all_null_are_said_and_per_role_rewards_are_not(tmp_path, cli):
    with RunWriter(tmp_path / "none", durable=False) as w:
        for step in range(10):
            w.log_samples(step, {"reward": [None] * 4, "completion": ["a", "b", "c", "d"]})
    code, found = findings(cli, tmp_path / "none")
    assert [f["evidence"]["rows"] for f in found if f["evidence"].get("problem_kind") == "no_rewards"] == [40]
    assert code == 1

    with RunWriter(tmp_path / "roles", durable=False, roles=["solver"]) as w:
        for step in range(10):
            w.log_samples(step, {"reward": [None] * 4, "solver_reward": [0.1, 0.2, 0.3, 0.4]})
    _, found = findings(cli, tmp_path / "roles")
    assert not [f for f in found if f["evidence"].get("problem_kind") == "no_rewards"]

    with RunWriter(tmp_path / "some", durable=False) as w:
        for step in range(10):
            w.log_samples(step, {"reward": [None, None, None, 1.0 if step == 9 else None]})
    _, found = findings(cli, tmp_path / "some")
    assert not [f for f in found if f["evidence"].get("problem_kind") == "no_rewards"]
