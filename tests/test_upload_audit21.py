"""A run uploaded in several sessions keeps what each W&B key holds (audit 21, the W&B fixer).

Three decisions were made again from the whole run at every session, and not kept in the upload state: the key of
the training step (the charts' x axis), whether a key holds the run's own number or runlog's (number, histogram,
table), and which samples ``P/<what>/unknown`` holds. The auditor's run: session 1 sends steps 0-1; then a resumed
writer adds the role ``unknown`` and the trainer starts logging ``trainer/step=200``, ``debate/reward/solver=99``
and ``full_trajectories=7``; session 2 sends step 2, and every one of those keys changed meaning or type partway.

Read back with W&B's own reader (``wandb leet inspect``); truths from the Parquet rows (pyarrow) and JSON.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_wandb_audit9 import ROLE_T, env, run_upload, tear_last_line, upload
from test_wandb_upload import WANDB, sessions

pytest.importorskip("wandb")

RUN_ID = "grown21"


def write_step(root: Path, step: int, roles: list[list[dict[str, Any]] | None], rewards: list[float]) -> None:
    """One step's samples (pyarrow), ``roles`` per sample (None: no per-role data)."""
    (root / "samples" / "train").mkdir(parents=True, exist_ok=True)
    n = len(rewards)
    t = pa.table(
        {
            "schema_version": pa.array([2] * n, pa.int32()),
            "step": pa.array([step] * n, pa.int64()),
            "split": ["train"] * n,
            "sample_id": [f"s{step}-{i}" for i in range(n)],
            "group_id": [f"g{step}" for _ in range(n)],
            "reward": pa.array(rewards, pa.float64()),
            "roles": pa.array(roles, ROLE_T),
            "prompt": ["q"] * n,
            "completion": [f"a{i}" for i in range(n)],
        }
    )
    pq.write_table(
        t.replace_schema_metadata({"runlog.schema_version": "2"}),
        root / "samples" / "train" / f"step_{step:08d}.p0.parquet",
    )


def manifest(root: Path, roles: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data = {"format": "runlog", "schema_version": 2, "run_id": RUN_ID, "name": "g", "roles": roles}
    (root / "run.json").write_text(json.dumps(data))


def scalars(root: Path, line: dict[str, Any]) -> None:
    with open(root / "scalars.p0.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")


def first_steps(root: Path) -> None:
    """Steps 0-1: role ``solver`` on even samples, no per-role data on odd ones; the trainer's step is the step."""
    manifest(root, ["solver"])
    for s in (0, 1):
        rewards = [0.25 * i + s for i in range(4)]
        roles = [[{"role": "solver", "reward": r, "kl": 0.0}] if i % 2 == 0 else None for i, r in enumerate(rewards)]
        write_step(root, s, roles, rewards)
        scalars(root, {"step": s, "loss": 1.0 + s, "trainer/step": s})


def grow(root: Path, step: int = 2, trainer_step: int = 200) -> None:
    """The run grows: a resumed writer adds the role ``unknown``; the trainer logs keys of its own."""
    manifest(root, ["solver", "unknown"])
    rewards = [0.25 * i + step for i in range(4)]
    unknown = {"role": "unknown", "reward": 5.0, "kl": 0.0}
    roles = [[{"role": "solver", "reward": r, "kl": 0.0}, unknown] for r in rewards]
    write_step(root, step, roles, rewards)
    own = {"trainer/step": trainer_step, "debate/reward/solver": 99.0, "full_trajectories": 7.0}
    scalars(root, {"step": step, "loss": 1.0 + step, **own})


def truth(root: Path) -> dict[int, dict[str, float]]:
    """Per step, from the Parquet rows alone: the solver's mean reward, the mean reward of the samples without
    per-role data, and the role ``unknown``'s (exact means, by fractions)."""
    out: dict[int, dict[str, list[float]]] = {}
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        for row in pq.read_table(f).to_pylist():
            d = out.setdefault(row["step"], {})
            if row["roles"] is None:
                d.setdefault("none", []).append(row["reward"])
            for r in row["roles"] or []:
                d.setdefault(r["role"], []).append(r["reward"])
    return {s: {k: float(sum(map(Fraction, v)) / len(v)) for k, v in d.items()} for s, d in out.items()}


def read(session: Path, home: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """A session's chart x axes (the ``step_metric`` of ``define_metric("*")``) and its history rows."""
    cmd = [WANDB, "leet", "inspect", "--json", str(session)]
    out = subprocess.run(cmd, env=env(home), capture_output=True, text=True, timeout=120)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    axes = [r["metric"]["step_metric"] for r in records if r["type"] == "metric" and r["metric"].get("glob_name")]
    return axes, [r["history"]["item"] for r in records if r["type"] == "history"]


def read_all(home: Path) -> tuple[list[str], dict[int, dict[str, Any]]]:
    axes, items = [], {}
    for session in sessions(home, RUN_ID):
        a, rows = read(session, home)
        axes += a
        items.update({row["_step"]: row for row in rows})
    return axes, items


def entry(state: Path) -> dict[str, Any]:
    [e] = json.loads(state.read_text())["destinations"].values()
    return e


def test_a_grown_run_keeps_what_each_key_held_in_its_first_session(tmp_path):
    """The auditor's run, in two sessions: every key holds in session 2 what it held in session 1 (x axis, runlog's
    numbers and tables, ``P/reward/unknown`` the samples without per-role data), with one-line notes saying what
    was kept and how to log the rest; the keys no decision touches are those of a one-shot upload."""
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    first_steps(root)
    upload(root, home, "--state", state)
    grow(root)
    second = upload(root, home, "--state", state)
    assert (second["first_step"], second["last_step"]) == (2, 2)

    axes, items = read_all(home)
    want = truth(root)
    assert len(sessions(home, RUN_ID)) == 2
    assert axes == ["trainer/step", "trainer/step"], "one x axis for the whole W&B run"
    assert [items[s]["trainer/step"] for s in (0, 1, 2)] == [0, 1, 2], "the x axis holds the step at every step"
    assert "runlog/step" not in items[2]
    for s in (0, 1, 2):
        # runlog's mean at every step, as in session 1, never the trainer's 99 from step 2 on
        assert items[s]["debate/reward/solver"] == pytest.approx(want[s]["solver"])
        # a table at every step, never a number
        assert items[s]["full_trajectories._type"] == "table-file" and items[s]["full_trajectories.nrows"] == 4
    # debate/reward/unknown holds the samples without per-role data, never the role named unknown (5.0)
    assert [items[s]["debate/reward/unknown"] for s in (0, 1)] == pytest.approx([want[0]["none"], want[1]["none"]])
    assert want[2]["unknown"] == 5.0 and not any(k.startswith("debate/reward/unknown") for k in items[2])
    assert not any("no_role" in k for s in (0, 1, 2) for k in items[s])

    notes = second["notes"]
    for said in ("its own trainer/step", "debate/reward/solver", "a role of this run is named 'unknown'"):
        [note] = [n for n in notes if said in n]
        assert "\n" not in note and "--run-id ID" in note, note
    assert not any("logged as it is; the charts' x axis is runlog/step" in n for n in notes)

    # The same grown run uploaded at once, into a W&B run of its own: the keys no decision touches hold the same.
    one_home = tmp_path / "one"
    upload(root, one_home, "--state", tmp_path / "one.json")
    one_axes, one = read_all(one_home)
    assert one_axes == ["runlog/step"] and one[2]["trainer/step"] == 200  # decided from the whole grown run
    same = ["loss", "debate/reward_total", "debate/samples", "debate/kl/solver", "debate/zero_adv_frac/solver",
            "debate/reward_hist/solver.bins", "debate/reward_hist/solver.values"]  # fmt: skip
    for s in (0, 1, 2):
        assert {k: items[s].get(k) for k in same} == {k: one[s].get(k) for k in same}, s
    assert items[2]["loss"] == 3.0 and items[2]["debate/reward_total"] == pytest.approx(2.375)


def test_the_state_records_the_decisions_and_an_old_state_decides_as_before_then_records(tmp_path):
    """A state written before runlog kept the decisions: the grown run's session decides from the whole run, as a
    first upload does, with no error, and records what it decided; the next session keeps it."""
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    first_steps(root)
    upload(root, home, "--state", state)
    recorded = entry(state)
    assert recorded["step_key"] == "trainer/step" and recorded["no_role"] is False
    assert recorded["keys"]["debate/reward/solver"] == "computed" and recorded["keys"]["loss"] == "scalar"
    assert recorded["keys"]["full_trajectories"] == "table"
    assert recorded["keys"]["debate/reward_hist/solver"] == "histogram"
    assert "trainer/step" not in recorded["keys"]

    data = json.loads(state.read_text())
    for e in data["destinations"].values():
        for name in ("step_key", "keys", "no_role"):
            e.pop(name, None)
    state.write_text(json.dumps(data))
    grow(root)
    second = upload(root, home, "--state", state)
    assert second["last_step"] == 2
    axes, items = read_all(home)
    assert axes == ["trainer/step", "runlog/step"], "decided from the whole run, as before"
    assert items[2]["trainer/step"] == 200 and items[2]["debate/reward/solver"] == 99
    after = entry(state)
    assert after["step_key"] == "runlog/step" and after["no_role"] is True
    assert after["keys"]["debate/reward/solver"] == "scalar" and after["keys"]["full_trajectories"] == "scalar"
    assert after["keys"]["trainer/step"] == "scalar" and "runlog/step" not in after["keys"]

    # The next session keeps them: its x axis is runlog/step whatever the trainer's step is now.
    write_step(root, 3, [[{"role": "solver", "reward": 1.0, "kl": 0.0}]], [1.0])
    scalars(root, {"step": 3, "loss": 4.0, "trainer/step": 3})
    upload(root, home, "--state", state)
    axes, items = read_all(home)
    assert axes == ["trainer/step", "runlog/step", "runlog/step"]
    assert items[3]["runlog/step"] == 3 and items[3]["trainer/step"] == 3


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [("keys", {"loss": "banana"}, "keys gives 'loss' the kind 'banana'"), ("step_key", "", "step_key is ''"),
     ("no_role", "yes", "no_role is 'yes'"), ("keys", ["loss"], "keys is ['loss']")],
)  # fmt: skip
def test_a_damaged_decision_in_the_state_is_one_line_and_exit_2(tmp_path, field, value, said):
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    first_steps(root)
    upload(root, home, "--state", state, "--tables-every", "0")
    data = json.loads(state.read_text())
    for e in data["destinations"].values():
        e[field] = value
    state.write_text(json.dumps(data))
    res = run_upload(root, home, "--state", str(state), "--tables-every", "0")
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: {state}: damaged upload state") and said in line, line


def test_a_key_only_at_a_held_step_is_not_recorded(tmp_path):
    """A step held back (its scalars line still being written) is not sent: the keys only it has are decided when
    it is sent, so the trainer's own ``debate/reward/judge`` in that line is its series, not taken for runlog's."""
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    manifest(root, ["solver", "judge"])
    write_step(root, 0, [[{"role": "solver", "reward": 1.0, "kl": 0.0}]] * 2, [1.0, 1.0])
    write_step(root, 1, [[{"role": "judge", "reward": 0.5, "kl": 0.0}]] * 2, [0.5, 0.5])
    scalars(root, {"step": 0, "loss": 1.0})
    scalars(root, {"step": 1, "loss": 2.0, "debate/reward/judge": 7.0})
    rest = tear_last_line(root / "scalars.p0.jsonl", 20)
    first = upload(root, home, "--state", state, "--tables-every", "0")
    assert first["last_step"] == 0
    assert "debate/reward/judge" not in entry(state)["keys"]
    with open(root / "scalars.p0.jsonl", "a") as fh:
        fh.write(rest)
    second = upload(root, home, "--state", state, "--tables-every", "0")
    assert second["last_step"] == 1
    _, items = read_all(home)
    assert items[1]["debate/reward/judge"] == 7.0 and items[1]["loss"] == 2.0
    assert entry(state)["keys"]["debate/reward/judge"] == "scalar"


def test_a_grown_run_uploaded_again_from_scratch_decides_from_the_whole_run(tmp_path):
    """The way out the notes give: a new W&B run (``--run-id``) is a first upload, decided from the whole run."""
    root, home, state = tmp_path / "run", tmp_path / "home", tmp_path / "state.json"
    first_steps(root)
    upload(root, home, "--state", state)
    grow(root)
    upload(root, home, "--state", state)
    again = upload(root, home, "--state", state, "--run-id", "fresh21")
    assert again["steps"] == 3 and not any("earlier uploads" in n for n in again["notes"])
    [session] = sessions(home, "fresh21")
    axes, rows = read(session, home)
    assert axes == ["runlog/step"] and [r["trainer/step"] for r in rows] == [0, 1, 200]
    assert rows[2]["debate/reward/unknown"] == 5.0 and rows[0]["debate/no_role/reward"] == pytest.approx(
        truth(root)[0]["none"]
    )
