"""Audit a12 (writer and upload-wandb): a quantity logged under two of its names (``grad_global_norm`` and
``grad/global_norm``, an alias of the built-in table) by one process at one step was merged as two shards'
values: ``summarize --scalars`` and ``upload-wandb`` showed their mean (1.5 for 1.0 and 2.0), a figure nobody
logged; a StatsTracker family's mean (0.5 over 64 values) moved to 0.506 with a legacy ``train-reward/mean``
0.9 beside it. The canonical name's value is now kept, between two old names the later line's, with a note.
An empty run no longer starts a W&B run, nor says "up to None".

The expected figures are read from the JSONL written here, never with runlog's code."""

from __future__ import annotations

import json
from pathlib import Path

from runlog import open_run
from runlog.sinks import build_plan
from test_wandb_upload import sessions, upload, upload_cmd, wandb_env


def _shard(run: Path, records: list[dict]) -> Path:
    run.mkdir(parents=True)
    (run / "scalars.p0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


RECORDS = [
    {"step": 0, "grad_global_norm": 1.0, "grad/global_norm": 2.0},
    {"step": 1, "grad/global_norm": 30.0},
    {"step": 1, "grad_global_norm": 10.0},  # the old name after the new one: the new name's value still counts
    {"step": 2, "grad_global_norm": 5.0},  # the old name alone: its value, renamed
    {
        "step": 3,
        "train/reward/mean": 0.5,
        "train/reward/std": 0.25,
        "train/reward/count": 64.0,
        "train/reward/mean__count": 64.0,
    },  # fmt: skip
    {"step": 3, "train-reward/mean": 0.9},
]


def _truth() -> dict[tuple[str, int], float]:
    """Per (canonical key, step): the value logged under the canonical name at that step, else under the old one
    (its last line)."""
    old = {"grad_global_norm": "grad/global_norm", "train-reward/mean": "train/reward/mean"}
    new = {(k, r["step"]): v for r in RECORDS for k, v in r.items() if k != "step" and k not in old}
    aliased = {(old[k], r["step"]): v for r in RECORDS for k, v in r.items() if k in old}
    return {**aliased, **new}


def test_summarize_scalars_keeps_the_canonical_value(cli, tmp_path: Path) -> None:  # noqa: ANN001
    run = _shard(tmp_path / "run", RECORDS)
    truth = _truth()
    r = cli("summarize", str(run), "--scalars", "--format", "json")
    assert r.exit_code == 0, r.stderr
    rows = {x["key"]: x for x in json.loads(r.stdout)}
    norm = [truth["grad/global_norm", s] for s in (0, 1, 2)]
    assert norm == [2.0, 30.0, 5.0]
    g = rows["grad/global_norm"]
    assert (g["mean"], g["min"], g["max"], g["last"], g["count"]) == (sum(norm) / 3, 2.0, 30.0, 5.0, 3)
    assert rows["train/reward/mean"]["mean"] == truth["train/reward/mean", 3] == 0.5
    assert "grad/global_norm (grad/global_norm, grad_global_norm: 2 step(s), first 0)" in r.stderr
    assert "train/reward/mean (train-reward/mean, train/reward/mean: 1 step(s), first 3)" in r.stderr


def test_the_upload_plan_sends_the_same(tmp_path: Path) -> None:
    run = _shard(tmp_path / "run", RECORDS)
    plan = build_plan(open_run(run))
    sent = {(k, s): v for s, p in zip(plan.steps, plan.payloads(), strict=True) for k, v in p.values.items()}
    assert [sent["grad/global_norm", s] for s in (0, 1, 2)] == [2.0, 30.0, 5.0]
    assert sent["train/reward/mean", 3] == 0.5
    assert any("logged under two of its names" in n and "not their mean" in n for n in plan.notes)


def test_two_shards_still_merge(cli, tmp_path: Path) -> None:  # noqa: ANN001
    """Two processes logging the old and the new name at one step are two shards: their mean, as before."""
    run = _shard(tmp_path / "run", [{"step": 0, "grad_global_norm": 1.0}])
    (run / "scalars.p1.jsonl").write_text(json.dumps({"step": 0, "grad/global_norm": 3.0}) + "\n")
    r = cli("summarize", str(run), "--scalars", "--format", "json")
    assert json.loads(r.stdout)[0]["mean"] == 2.0
    assert "two of its names" not in r.stderr


def test_an_empty_run_starts_no_wandb_run(tmp_path: Path) -> None:
    from runlog.writer import RunWriter

    run, home = tmp_path / "run", tmp_path / "home"
    RunWriter(run).close()
    for _ in range(2):
        res = upload(run, home)
        assert res.stdout.startswith("nothing to upload to p/"), res.stdout
        assert "None" not in res.stdout + res.stderr
    assert not list((home / "wb").glob("wandb/offline-run-*")), "no W&B run left to sync"
    assert sessions and upload_cmd and wandb_env  # the shared helpers of test_wandb_upload
