"""Audit a17 of ``runlog inspect`` (inspectplot findings 2 and 3), runs built with ``RunWriter``:

- F2: ``--deep``'s numeric table gave one key to two things, the later overwriting the earlier: a role named
  ``component`` and a reward component ``reward`` (both ``component/reward``); a column ``solver/reward`` beside
  role solver's reward. Each is now kept, named by its kind (``role:``, ``component:``, ``column:``).
- F3: one step logged with no rows (its file holds no statistics) made the run's exception count ``null``,
  plain and ``--deep``: a file of no row holds no exception.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from runlog import open_run
from runlog.analysis.inspect import inspect_run
from runlog.writer import RunWriter


def collide_run(root: Path) -> Path:
    with RunWriter(root, name="collide", roles=["component", "solver"]) as w:
        w.log_samples(
            0,
            {
                "reward": [1.0, 2.0, 3.0, 4.0],
                "roles": [
                    [
                        {"role": "component", "reward": math.nan, "kl": 0.1},
                        {"role": "solver", "reward": 1.0, "kl": 0.1},
                    ]
                ]
                * 4,
                "reward_components": [{"reward": 5.0}, {"reward": 5.0}, None, None],
                "solver/reward": [None, None, None, math.inf],
            },
        )
    return root


def test_deep_keys_of_two_kinds_never_overwrite_one_another(tmp_path: Path, cli) -> None:  # noqa: ANN001
    root = collide_run(tmp_path / "collide")
    r = cli("inspect", root, "--deep", "--format", "json")
    numeric = json.loads(r.stdout)["numeric"]
    # role component's reward: every value NaN; the component reward: 2 of 4 samples without it
    assert numeric["role:component/reward"] == {"rows": 4, "null": 0, "nan": 4, "inf": 0, "valid": 0}
    assert numeric["component:reward"] == {"rows": 4, "null": 2, "nan": 0, "inf": 0, "valid": 2}
    # role solver's reward: 4 valid; the free column: 3 null, one +inf
    assert numeric["role:solver/reward"] == {"rows": 4, "null": 0, "nan": 0, "inf": 0, "valid": 4}
    assert numeric["column:solver/reward"] == {"rows": 4, "null": 3, "nan": 0, "inf": 1, "valid": 1}
    # no key stands for two things: the shared names are gone, the others keep theirs
    assert "component/reward" not in numeric and "solver/reward" not in numeric
    assert numeric["solver/kl"]["valid"] == 4 and numeric["component/kl"]["valid"] == 4
    assert numeric["reward"]["valid"] == 4
    table = cli("inspect", root, "--deep").stdout
    for key in ("role:component/reward", "component:reward", "role:solver/reward", "column:solver/reward"):
        assert key in table, table


def test_deep_keys_without_a_collision_stay_as_documented(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "plain", name="plain", roles=["solver"]) as w:
        w.log_samples(
            0,
            [{"reward": 1.0, "reward_components": {"acc": 1.0}, "roles": [{"role": "solver", "reward": 1.0}]}] * 2,
        )
    numeric = inspect_run(open_run(tmp_path / "plain"), deep=True).numeric
    assert list(numeric) == ["reward", "solver/reward", "solver/kl", "component/acc"]


def empty_step_run(root: Path) -> Path:
    with RunWriter(root, name="exc_empty") as w:
        w.log_samples(0, [{"reward": 1.0, "exception": "Traceback: boom"}, {"reward": 0.0}])
        w.log_samples(1, [])  # every rollout filtered out: a file of no row
    return root


def test_a_step_of_no_rows_keeps_the_exception_count(tmp_path: Path, cli) -> None:  # noqa: ANN001
    root = empty_step_run(tmp_path / "exc_empty")
    for deep in (False, True):
        assert inspect_run(open_run(root), deep=deep).exceptions == 1
    for args in ((), ("--deep",)):
        r = cli("inspect", root, "--format", "json", *args)
        assert json.loads(r.stdout)["exceptions"] == 1, args
    out = cli("inspect", root).stdout
    assert "exceptions: 1 trajectory failed" in out and "exceptions: not known" not in out, out
