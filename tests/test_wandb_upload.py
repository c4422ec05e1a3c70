"""``runlog upload-wandb`` end to end, offline, read back with W&B's own reader (``wandb leet inspect``).

No mocks: each upload is a real ``runlog`` process writing a real offline W&B run in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runlog import open_run
from runlog.analysis.summarize import summarize

from conftest import SAMPLE_RUNS, native_rows

pytest.importorskip("wandb")

DEBATE = SAMPLE_RUNS / "debate_grpo"
RUN_ID = "tiny-grpo-jax-seed1234"
SRC = str(Path(__file__).resolve().parents[1] / "src")
WANDB = str(Path(sys.executable).parent / "wandb")


def wandb_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(home / "wb"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONSOLE="off",
        PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    return env


def upload_cmd(run_dir: Path, home: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runlog", "upload-wandb", str(run_dir), "--project", "p", "--mode", "offline",
            "--wandb-dir", str(home / "wb"), *extra]  # fmt: skip


def upload(run_dir: Path, home: Path, *extra: str) -> subprocess.CompletedProcess:
    res = subprocess.run(
        upload_cmd(run_dir, home, *extra), env=wandb_env(home), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res


def sessions(home: Path, run_id: str = RUN_ID) -> list[Path]:
    """The offline run folders of one W&B run id, oldest first (one per upload session)."""
    return sorted((home / "wb" / "wandb").glob(f"offline-run-*-{run_id}"))


def history(session: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(session)], env=env, capture_output=True, text=True)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def histories(sessions: list[tuple[Path, dict[str, str]]]) -> list[list[dict[str, Any]]]:
    """``history`` of each (session, env), read at once: each reader is a process that spends most of its time
    starting (W&B's CLI), so reading them side by side takes the time of about one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(sessions))) as pool:
        return list(pool.map(lambda s: history(*s), sessions))


def all_history(home: Path, run_id: str = RUN_ID) -> list[dict[str, Any]]:
    env = wandb_env(home)
    return [item for items in histories([(s, env) for s in sessions(home, run_id)]) for item in items]


def table(session: Path, item: dict[str, Any], key: str) -> dict[str, Any]:
    return json.loads((session / "files" / item[f"{key}.path"]).read_text())


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """debate_grpo (a copy) uploaded once, offline."""
    base = tmp_path_factory.mktemp("up")
    run_dir = base / "run"
    shutil.copytree(DEBATE, run_dir)
    return run_dir, base / "home", upload(run_dir, base / "home")


def test_every_step_logged_once_in_order(uploaded):
    _, home, res = uploaded
    assert "logged 32 of 32 step(s)" in res.stdout
    [session] = sessions(home)
    items = history(session, wandb_env(home))
    assert [i["_step"] for i in items] == list(range(32))
    assert all(i["trainer/step"] == i["_step"] for i in items)


def test_scalars_aggregates_and_wall_clock_read_back(uploaded):
    _, home, _ = uploaded
    items = {i["_step"]: i for i in all_history(home)}
    lines = [json.loads(x) for x in (DEBATE / "scalars.p0.jsonl").read_text().splitlines()]
    for line in lines[:3]:
        got = items[line["step"]]
        assert got["train/loss"] == pytest.approx(line["train/loss"])
        assert got["debate/reward/solver"] == pytest.approx(line["debate/reward/solver"])
        assert got["_timestamp"] == pytest.approx(line["time"])
    df = summarize(open_run(DEBATE), ["split", "step", "role"])
    row = df.filter((df["split"] == "eval") & (df["step"] == 8) & (df["role"] == "judge")).row(0, named=True)
    assert items[8]["eval/debate/reward/judge"] == pytest.approx(row["reward_mean"])
    assert items[8]["eval/debate/zero_adv_frac/judge"] == pytest.approx(row["zero_adv_frac"])
    assert "eval/debate/reward/judge" not in items[9]
    hist = items[5]
    assert hist["debate/reward_hist/verifier._type"] == "histogram"
    assert sum(hist["debate/reward_hist/verifier.values"]) == 32
    assert len(hist["debate/reward_hist/verifier.bins"]) == len(hist["debate/reward_hist/verifier.values"]) + 1


def test_trajectory_tables_read_back(uploaded):
    _, home, _ = uploaded
    [session] = sessions(home)
    items = {i["_step"]: i for i in history(session, wandb_env(home))}
    t = table(session, items[3], "full_trajectories")
    assert len(t["data"]) == 16 and t["columns"][:3] == ["step", "sample", "pick"]
    assert {row[0] for row in t["data"]} == {3}
    traj = t["columns"].index("full_trajectory")
    assert all("[assistant · solver]" in row[traj] for row in t["data"])
    assert items[8]["eval/full_trajectories.nrows"] == 16
    assert "eval/full_trajectories.path" not in items[9]


def test_summary_config_and_state(uploaded):
    run_dir, home, _ = uploaded
    [session] = sessions(home)
    out = subprocess.run(
        [WANDB, "leet", "inspect", "--summary", "--json", str(session)],
        env=wandb_env(home),
        capture_output=True,
        text=True,
    )
    summary = json.loads(out.stdout)
    assert summary["state"] == "finished" and summary["run_id"] == RUN_ID and summary["project"] == "p"
    manifest = json.loads((DEBATE / "run.json").read_text())
    assert summary["config"]["learning_rate"] == manifest["config"]["learning_rate"]
    assert summary["summary"]["trainer/step"] == 31
    state = json.loads((run_dir / ".runlog-wandb.json").read_text())
    [entry] = state["destinations"].values()
    assert entry["run_id"] == RUN_ID and entry["last_step"] == 31 and entry["complete"] is True


def test_second_upload_sends_nothing(uploaded):
    run_dir, home, _ = uploaded
    res = upload(run_dir, home)
    assert res.stdout.startswith("up to date") and "nothing uploaded" in res.stdout
    assert len(sessions(home)) == 1, "no W&B session was even started"


def test_grown_run_uploads_only_new_steps(tmp_path):
    from runlog import RunWriter

    run_dir, home = tmp_path / "run", tmp_path / "home"
    shutil.copytree(DEBATE, run_dir)
    upload(run_dir, home, "--no-metrics")
    with RunWriter(run_dir, process_index=0, durable=False, clock=lambda: 1_900_000_000.0) as w:
        for step in (32, 33):
            rows = native_rows(step, 8, roles=("solver", "verifier", "judge"))
            w.log_samples(step, rows)
            w.log_scalars(step, {"train/loss": 0.5 + step})
    res = upload(run_dir, home, "--no-metrics")
    assert "logged 2 of 34 step(s)" in res.stdout and "after step 31" in res.stdout
    first, second = sessions(home)
    env = wandb_env(home)
    old, new = histories([(first, env), (second, env)])
    assert [i["_step"] for i in old] == list(range(32))
    assert [i["_step"] for i in new] == [32, 33]
    assert new[1]["train/loss"] == pytest.approx(33.5) and new[1]["_timestamp"] == pytest.approx(1.9e9)
    assert table(second, new[0], "full_trajectories")["data"][0][0] == 32
    assert upload(run_dir, home, "--no-metrics").stdout.startswith("up to date")


def make_long_run(root: Path, steps: int, keys: int = 2) -> Path:
    """A scalars-only run long enough to be killed part-way (RunWriter, like a trainer). Its length is in steps
    (the state is saved per step); few keys a step keep each step, and the test, quick."""
    from runlog import RunWriter

    with RunWriter(root, process_index=0, run_id="long-run", durable=False, clock=lambda: 1_800_000_000.0) as w:
        for s in range(steps):
            w.log_scalars(s, {f"k/{j}": s * 0.001 + j for j in range(keys)})
    return root


def test_killed_upload_resumes_without_duplicates_or_gaps(tmp_path):
    # Thousands of steps: the upload is killed once the state says step 200 is sent (it is saved every
    # SAVE_EVERY_S), long before its last step, even on a fast machine.
    steps = 4000
    run_dir = make_long_run(tmp_path / "run", steps)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    # The reference, uploaded whole, beside the upload that is killed (a W&B folder and a state file each).
    reference_cmd = upload_cmd(run_dir, whole, "--state", str(tmp_path / "whole.json"))
    reference_proc = subprocess.Popen(
        reference_cmd, env=wandb_env(whole), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )

    state = tmp_path / "broken.json"
    cmd = upload_cmd(run_dir, broken, "--state", str(state))
    proc = subprocess.Popen(cmd, env=wandb_env(broken), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists():
            entry = next(iter(json.loads(state.read_text())["destinations"].values()))
            # Saved after the first step, then every SAVE_EVERY_S: wait for real progress, so that the killed
            # session's log holds steps the resume must not send again.
            if (entry.get("last_step") or 0) >= 200:
                progress = entry["last_step"]
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress is not None and progress < steps - 1, "the upload finished before it could be killed"

    res = upload(run_dir, broken, "--state", str(state))
    assert "logged" in res.stdout and "after step" in res.stdout
    assert len(sessions(broken, "long-run")) == 2
    assert reference_proc.wait(timeout=120) == 0, reference_proc.stderr.read()  # type: ignore[union-attr]

    reads = [(s, wandb_env(home)) for home in (broken, whole) for s in sessions(home, "long-run")]
    *parts, reference = histories(reads)
    resumed = [item for part in parts for item in part]
    got = [i["_step"] for i in resumed]
    assert got == sorted(got) and len(got) == len(set(got)), "no step logged twice"
    assert got == [i["_step"] for i in reference] == list(range(steps)), "no gap"
    drop = {"_runtime", "_wandb.runtime"}
    for a, b in zip(resumed[::499], reference[::499], strict=True):
        assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def test_resuming_a_killed_first_upload_does_not_call_its_files_new(tmp_path):
    """A first upload killed at step 12 leaves last_step 12 and no fingerprint (only a finished session takes
    one). The resume said every file of steps 0-12 was "new for already-uploaded step ...; not sent", though
    they were there from the start and sent. Nothing is compared without a fingerprint of its own step."""
    from runlog.sinks import plan as P
    from runlog.sinks import state as S
    from runlog.sinks.wandb import upload_wandb

    run_dir = tmp_path / "run"
    shutil.copytree(DEBATE, run_dir)
    wdir = str((tmp_path / "wb").resolve())
    rid = P.derive_run_id(open_run(run_dir))
    state = S.StateFile(tmp_path / "state.json")
    killed = S.Entry(rid, "p", None, "offline", wdir, last_step=12, complete=False, session_after=None)
    state.put(S.destination("offline", None, "p", rid, wdir), killed)
    res = upload_wandb(
        run_dir, project="p", mode="offline", wandb_dir=wdir, dry_run=True, state_path=tmp_path / "state.json"
    )
    assert not [n for n in res.notes if "new file for step" in n], res.notes
    assert res.after == 12


def test_a_changed_file_with_no_new_step_starts_no_session(tmp_path):
    """After a complete upload, a scalars line rewritten in place and a shard touched: the changes are said
    (W&B keeps a step's first row, so they are not re-sent), and no W&B session is started (it left an empty
    offline run to sync); said once: the next upload is up to date."""
    run_dir, home = tmp_path / "run", tmp_path / "home"
    shutil.copytree(DEBATE, run_dir)
    upload(run_dir, home, "--no-metrics")
    scalars = run_dir / "scalars.p0.jsonl"
    lines = scalars.read_text().splitlines()
    first = json.loads(lines[0])
    first["train/loss"] = 123.0
    lines[0] = json.dumps(first)
    scalars.write_text("\n".join(lines) + "\n")
    shard = run_dir / "samples" / "train" / "step_00000003.p0.parquet"
    # Rewritten in place (other bytes, written again with another compression), dated back: a changed file. A file
    # only touched is the same bytes (its hash says so) and is said nowhere.
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(shard), shard, compression="gzip")
    os.utime(shard, (time.time() - 30, time.time() - 30))
    res = upload(run_dir, home, "--no-metrics")
    said = res.stdout + res.stderr
    assert "rewritten, not appended" in said and "step 3 was uploaded and the file changed since" in said
    assert len(sessions(home)) == 1, "no second W&B session"
    again = upload(run_dir, home, "--no-metrics")
    assert again.stdout.startswith("up to date") and "rewritten" not in again.stdout + again.stderr
