"""An integer beyond the float64 range in a JSONL file (``10**400``, which Python's json writes as digits) is read
as infinity of its sign, as JSON's ``1e400`` is, and never makes a file or line unreadable: a time key of one
scalars record made the whole shard unreadable (every key lost), a verifiers reward skipped its rollout."""

from __future__ import annotations

import json
import math
from pathlib import Path

from runlog import open_run


def test_a_huge_time_leaves_the_scalars_file_read(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    with open(root / "scalars.p0.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"step": i, "time": 10**400 if i == 2 else 1.0, "loss": 0.5}) + "\n")
    run = open_run(root)
    df = run.scalars.collect()
    assert not run.errors, run.problems
    assert df.filter(df["key"] == "loss").height == 4


def test_a_huge_verifiers_reward_is_infinite_not_a_skipped_line(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    with open(root / "results.jsonl", "w") as f:
        for i in range(4):
            rec = {
                "id": i,
                "prompt": [{"role": "user", "content": "q"}],
                "completion": [{"role": "assistant", "content": "a"}],
                "reward": -(10**400) if i == 1 else 0.5,
                "task": "default",
            }
            f.write(json.dumps(rec) + "\n")
    run = open_run(root)
    [frame] = run.collect(lambda: [run.samples.select("reward")])
    rewards = frame["reward"].to_list()
    assert not run.errors and len(rewards) == 4, run.problems
    assert sorted(rewards, key=lambda x: (math.isfinite(x), x))[0] == -math.inf
