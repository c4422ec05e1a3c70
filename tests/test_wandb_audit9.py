"""``upload-wandb``, ninth audit: run ids of growing runs, torn scalars lines, computed keys over the run's own,
a broken wandb, option values W&B refuses, control characters in key names, and small inaccuracies.

Uploads are real ``runlog`` processes writing offline W&B runs, read back with W&B's own reader (the helpers
of test_wandb_upload). Expected figures come from the raw files (``json``, pyarrow, ``hashlib``), never from
runlog's own helpers. Runs are a few steps each: every W&B session costs about a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import runlog
from test_wandb_upload import histories, sessions, table, wandb_env

from conftest import SAMPLE_RUNS

pytest.importorskip("wandb")

SRC = str(Path(runlog.__file__).resolve().parents[1])  # the runlog under test
FLINK = SAMPLE_RUNS / "flink_mixed" / "flink_logs"
ROLE_T = pa.list_(pa.struct([("role", pa.string()), ("reward", pa.float64()), ("kl", pa.float64())]))
COMP_T = pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())]))


def env(home: Path, **extra: str) -> dict[str, str]:
    e = wandb_env(home)
    e["PYTHONPATH"] = SRC + os.pathsep + os.environ.get("PYTHONPATH", "")
    e.update(extra)
    return e


def run_upload(run_dir: Path, home: Path, *extra: str, environ: dict[str, str] | None = None):
    cmd = [sys.executable, "-m", "runlog", "upload-wandb", str(run_dir), "--project", "p", "--mode", "offline",
           "--wandb-dir", str(home / "wb"), "--no-metrics", "--format", "json", *extra]  # fmt: skip
    return subprocess.run(cmd, env=environ or env(home), capture_output=True, text=True, timeout=180)


def upload(run_dir: Path, home: Path, *extra: str) -> dict[str, Any]:
    """One ``upload-wandb`` process (offline, JSON report): its report, with ``stderr``."""
    res = run_upload(run_dir, home, *extra)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    out["stderr"] = res.stderr
    return out


def logged(home: Path, run_id: str) -> list[dict[str, Any]]:
    e = env(home)
    return [item for items in histories([(s, e) for s in sessions(home, run_id)]) for item in items]


def all_run_ids(home: Path) -> set[str]:
    """The W&B run ids of every offline session folder (``offline-run-<time>-<id>``)."""
    return {p.name.split("-", 3)[3] for p in (home / "wb" / "wandb").glob("offline-run-*")}


def native_run(root: Path, steps: int, *, scalars_keys: int = 3, role: str = "solver", manifest_id: str | None = "r9"):
    """A native run by hand (pyarrow): ``steps`` steps of 4 samples, one scalars line per step."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "samples" / "train").mkdir(parents=True)
    manifest: dict[str, Any] = {"format": "runlog", "schema_version": 2, "name": "r9", "roles": [role]}
    if manifest_id:
        manifest["run_id"] = manifest_id
    (root / "run.json").write_text(json.dumps(manifest))
    lines = []
    for s in range(steps):
        rw = [0.1 * (i + 1) + s for i in range(4)]
        t = pa.table(
            {
                "schema_version": pa.array([2] * 4, pa.int32()),
                "step": pa.array([s] * 4, pa.int64()),
                "split": ["train"] * 4,
                "sample_id": [f"s{s}-{i}" for i in range(4)],
                "group_id": [f"g{s}-{i // 2}" for i in range(4)],
                "reward": pa.array(rw, pa.float64()),
                "roles": pa.array([[{"role": role, "reward": r, "kl": 0.01}] for r in rw], ROLE_T),
                "reward_components": pa.array([[{"name": "c", "value": 1.0}]] * 4, COMP_T),
                "prompt": [f"p{i // 2}" for i in range(4)],
                "completion": [f"c{i}" for i in range(4)],
            }
        )
        pq.write_table(
            t.replace_schema_metadata({"runlog.schema_version": "2"}),
            root / "samples" / "train" / f"step_{s:08d}.p0.parquet",
        )
        lines.append({"step": s, "time": 1000.0 + s, **{f"k{j}": s + j / 10 for j in range(scalars_keys)}})
    (root / "scalars.p0.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


# ---------------------------------------------------------------------------------------------------------
# 1. A run without a manifest run_id keeps its W&B run as it grows
# ---------------------------------------------------------------------------------------------------------


def flink_steps(root: Path, names: list[str]) -> None:
    (root / "flink_logs").mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(FLINK / n, root / "flink_logs" / n)


def train(*steps: int) -> list[str]:
    return [f"batch_debug_data_train_{s}.parquet" for s in steps]


def test_a_growing_flink_run_keeps_one_w_and_b_run(tmp_path):
    """The auditor's repro: steps 0..9, then 10..12 and an eval of step 0. The id hashed the three smallest
    names in sorted order, so ``train_10`` (and ``eval_0``) changed it: a second W&B run got steps 0..9 again."""
    root, home = tmp_path / "fl", tmp_path / "home"
    flink_steps(root, train(*range(10)))
    first = upload(root, home, "--tables-every", "0")
    flink_steps(root, train(10, 11, 12) + ["batch_debug_data_eval_0.parquet"])
    second = upload(root, home, "--tables-every", "0")
    assert second["run_id"] == first["run_id"] and all_run_ids(home) == {first["run_id"]}
    steps = [item["_step"] for item in logged(home, first["run_id"])]
    assert steps == list(range(13)), "steps 0..9 once, then 10..12"
    assert (second["first_step"], second["last_step"], second["after"]) == (10, 12, 9)


def test_a_state_written_by_the_old_derivation_keeps_its_w_and_b_run(tmp_path):
    """An upload made before the fix recorded the id derived the old way (the three smallest names, sorted).
    The grown run goes on into that W&B run, with a note, instead of a new W&B run for users who upgrade."""
    root, home = tmp_path / "fl", tmp_path / "home"
    flink_steps(root, train(*range(10)))
    names = sorted(f"flink_logs/{n}" for n in train(*range(10)))[:3]
    old_id = "runlog-" + hashlib.sha256(json.dumps([str(root.resolve()), names]).encode()).hexdigest()[:16]
    upload(root, home, "--tables-every", "0", "--run-id", old_id)  # what the old runlog's upload recorded
    state = root / ".runlog-wandb.json"  # the old runlog recorded no source for an id it did not derive
    data = json.loads(state.read_text())
    for entry in data["destinations"].values():
        entry.pop("source")
    state.write_text(json.dumps(data))
    flink_steps(root, train(10, 11, 12))
    grown = upload(root, home, "--tables-every", "0")
    assert grown["run_id"] == old_id and all_run_ids(home) == {old_id}
    assert [item["_step"] for item in logged(home, old_id)] == list(range(13))
    assert any(n.startswith(f"run id {old_id} kept from") for n in grown["notes"]), grown["notes"]


# ---------------------------------------------------------------------------------------------------------
# 2. A torn last scalars line
# ---------------------------------------------------------------------------------------------------------


def tear_last_line(path: Path, keep: int) -> str:
    """Cut the file's last line to ``keep`` bytes; the rest of it (with its newline), to append later."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + keep])
    return data[start + keep :].decode()


def test_a_torn_last_line_holds_its_step_until_it_is_whole(tmp_path):
    """The auditor's scenario (8 steps, the last line cut to 60 bytes, completed after the first upload): step 7
    was logged without its scalars, and its completed line never reached W&B, without a word."""
    root, home = native_run(tmp_path / "run", 8, scalars_keys=20), tmp_path / "home"
    scalars = root / "scalars.p0.jsonl"
    whole = [json.loads(x) for x in scalars.read_text().splitlines()]
    rest = tear_last_line(scalars, 60)
    first = upload(root, home, "--tables-every", "0")
    assert (first["first_step"], first["last_step"]) == (0, 6)
    assert any("held back for the next upload" in n for n in first["notes"]), first["notes"]
    with open(scalars, "a") as fh:
        fh.write(rest)
    second = upload(root, home, "--tables-every", "0")
    assert (second["first_step"], second["last_step"]) == (7, 7)
    items = logged(home, "r9")
    assert [i["_step"] for i in items] == list(range(8))
    last = items[-1]
    assert {k: last[k] for k in whole[7] if k.startswith("k")} == {
        k: v for k, v in whole[7].items() if k.startswith("k")
    }
    assert last["_timestamp"] == whole[7]["time"]


def test_a_line_that_stays_torn_is_sent_without_it_next_time(tmp_path):
    """A writer that stopped mid-line: the held step is sent by the next upload (without the line), and when
    the line is completed after all, the note for lines appended to uploaded steps names it."""
    root, home = native_run(tmp_path / "run", 3), tmp_path / "home"
    scalars = root / "scalars.p0.jsonl"
    rest = tear_last_line(scalars, 20)
    assert upload(root, home, "--tables-every", "0")["last_step"] == 1
    again = upload(root, home, "--tables-every", "0")
    assert (again["first_step"], again["last_step"]) == (2, 2)
    assert any("still incomplete, as at the last upload" in n for n in again["notes"]), again["notes"]
    assert upload(root, home, "--tables-every", "0")["up_to_date"]
    with open(scalars, "a") as fh:
        fh.write(rest)
    late = upload(root, home, "--tables-every", "0")
    note = "lines appended for step(s) 2 (at or before the last uploaded step 2"
    assert any(note in n for n in late["notes"]), late["notes"]
    assert [i["_step"] for i in logged(home, "r9")] == [0, 1, 2]


def test_appended_steps_read_the_line_the_last_upload_ended_in(tmp_path):
    """The old size fell inside a torn line: the appended bytes began mid-JSON, and the completed line's step
    was skipped silently."""
    from runlog import open_run
    from runlog.sinks import state as S

    root = native_run(tmp_path / "run", 4)
    scalars = root / "scalars.p0.jsonl"
    rest = tear_last_line(scalars, 12)
    fp = S.fingerprint(open_run(root))
    with open(scalars, "a") as fh:
        fh.write(rest)
    notes = S.changed_history(open_run(root), fp, 3)
    assert notes == [
        "scalars.p0.jsonl: lines appended for step(s) 3 (at or before the last uploaded step 3: a lagging shard?); "
        "not sent (W&B keeps a step's first row and drops a step lower than its last; upload with another --run-id "
        "to include them)"
    ]


def test_a_torn_line_of_an_uploaded_step_holds_nothing_back():
    """A lagging shard's torn line for a step W&B already has cannot be helped by holding: the new steps go on."""
    from types import SimpleNamespace

    from runlog.sinks import state as S
    from runlog.sinks.wandb import _hold_torn

    entry = S.Entry("r", "p", None, "offline", last_step=5, complete=True)
    plan: Any = SimpleNamespace(steps=list(range(9)))
    assert _hold_torn(plan, {"scalars.p1.jsonl": (100, 3)}, entry) == (None, {}, [])
    hold, held, _ = _hold_torn(plan, {"scalars.p1.jsonl": (100, 7)}, entry)
    assert (hold, held) == (7, {"scalars.p1.jsonl": 100})


# ---------------------------------------------------------------------------------------------------------
# 3. Computed keys over the run's own scalars
# ---------------------------------------------------------------------------------------------------------


def test_computed_keys_never_replace_the_runs_own_scalars(tmp_path):
    """The trainer logs ``trainer/step`` = 1000 + step, ``full_trajectories`` and ``debate/reward_hist/solver``:
    W&B got runlog's step, a table and a histogram instead, with no note; the dry run counted them too."""
    root, home = native_run(tmp_path / "run", 3), tmp_path / "home"
    scalars = root / "scalars.p0.jsonl"
    lines = [json.loads(x) for x in scalars.read_text().splitlines()]
    for d in lines:
        d.update({"trainer/step": 1000 + d["step"], "full_trajectories": 0.5, "debate/reward_hist/solver": 0.25})
    scalars.write_text("".join(json.dumps(d) + "\n" for d in lines))
    dry = upload(root, home, "--dry-run")
    assert (dry["histograms"], dry["tables"]) == (0, 0)
    up = upload(root, home)
    assert (up["histograms"], up["tables"]) == (0, 0)
    items = logged(home, "r9")
    for d, item in zip(lines, items, strict=True):
        assert item["trainer/step"] == d["trainer/step"] and item["runlog/step"] == d["step"] == item["_step"]
        assert item["full_trajectories"] == 0.5 and item["debate/reward_hist/solver"] == 0.25
    assert any("its own trainer/step" in n and "runlog/step" in n for n in up["notes"]), up["notes"]
    shadow = [n for n in up["notes"] if "also the run's own scalars" in n]
    assert len(shadow) == 1 and "full_trajectories" in shadow[0] and "debate/reward_hist/solver" in shadow[0]


def test_a_trainer_step_equal_to_the_step_stays_the_x_axis(tmp_path):
    from runlog import open_run
    from runlog.sinks import plan as P

    root = native_run(tmp_path / "run", 2)
    scalars = root / "scalars.p0.jsonl"
    lines = [json.loads(x) for x in scalars.read_text().splitlines()]
    scalars.write_text("".join(json.dumps({**d, "trainer/step": d["step"]}) + "\n" for d in lines))
    plan = P.build_plan(open_run(root), P.PlanOptions(metrics=False))
    assert plan.step_key == "trainer/step" and not plan.key_notes()
    assert [p.values["trainer/step"] for p in plan.payloads()] == [0, 1]


# ---------------------------------------------------------------------------------------------------------
# 4. and 5. A broken wandb, option values W&B refuses
# ---------------------------------------------------------------------------------------------------------


def test_a_broken_wandb_install_is_a_usage_error(tmp_path):
    """A wandb whose import raises TypeError (protobuf mismatch) was an internal error (exit 3)."""
    fake = tmp_path / "fake" / "wandb"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise TypeError("Descriptors cannot be created directly")\n')
    root, home = native_run(tmp_path / "run", 1), tmp_path / "home"
    e = env(home, PYTHONPATH=str(tmp_path / "fake") + os.pathsep + SRC)
    res = run_upload(root, home, environ=e)
    assert res.returncode == 2, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "TypeError: Descriptors cannot be created directly" in line and "pip install" in line
    assert "internal error" not in line


@pytest.mark.parametrize(
    ("project", "said"),
    [("a:b?c", "W&B refuses : ? in a project name"), ("x" * 130, "130 characters; W&B allows at most 128")],
)
def test_project_names_w_and_b_refuses_are_usage_errors(tmp_path, cli, project, said):
    root = native_run(tmp_path / "run", 1)
    r = cli("upload-wandb", root, "--project", project, "--mode", "offline", "--wandb-dir", tmp_path / "wb")
    assert r.exit_code == 2 and said in r.stderr and r.stderr.count("x" * 61) == 0, r.stderr
    assert not (tmp_path / "wb").exists()


def test_a_wandb_dir_that_is_a_file_names_the_option(tmp_path, cli):
    root = native_run(tmp_path / "run", 1)
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = cli("upload-wandb", root, "--project", "p", "--mode", "offline", "--wandb-dir", afile)
    assert r.exit_code == 2 and r.stderr.strip() == f"Error: --wandb-dir {afile}: not a directory", r.stderr


def test_wandb_mode_from_the_environment(tmp_path, cli, monkeypatch):
    """An unknown ``$WANDB_MODE`` was said as ``--mode``, which the user never passed; ``dryrun`` (offline) and
    ``disabled`` (nothing sent: a dry run, said) were refused."""
    root = native_run(tmp_path / "run", 2)
    monkeypatch.setenv("WANDB_MODE", "bogus")
    r = cli("upload-wandb", root, "--project", "p", "--dry-run")
    assert r.exit_code == 2 and "WANDB_MODE='bogus' in the environment" in r.stderr and "--mode '" not in r.stderr
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    r = cli("upload-wandb", root, "--project", "p", "--dry-run", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["mode"] == "offline", r.stderr
    monkeypatch.setenv("WANDB_MODE", "disabled")
    r = cli("upload-wandb", root, "--project", "p", "--format", "json", "--state", tmp_path / "s.json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and out["dry_run"] and out["steps"] == 2 and out["mode"] == "disabled", r.stderr
    assert "WANDB_MODE=disabled" in r.stderr and not (tmp_path / "s.json").exists()


def test_an_unwritable_state_starts_no_w_and_b_session(tmp_path):
    """The state file is written before W&B starts: an empty offline run was left behind, and ``wb.finish``
    was skipped."""
    root, home = native_run(tmp_path / "run", 1), tmp_path / "home"
    res = run_upload(root, home, "--state", str(tmp_path / "missing" / "s.json"))
    assert res.returncode == 2 and "cannot write the upload state" in res.stderr
    assert not list((home / "wb").glob("wandb/offline-run-*"))


# ---------------------------------------------------------------------------------------------------------
# 6. Control characters in key and column names
# ---------------------------------------------------------------------------------------------------------

HOSTILE = "sol\x1b]0;PWNED\x07\x1b[2Jver\u202e"
SHOWN = "sol\\x1b]0;PWNED\\x07\\x1b[2Jver\\u202e"


def test_names_with_control_characters_are_shown_escaped_in_keys_and_columns(tmp_path):
    root, home = native_run(tmp_path / "run", 1, role=HOSTILE), tmp_path / "home"
    with open(root / "scalars.p0.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 0, "k\x1b[5mblink": 1.0}) + "\n")
    up = upload(root, home)
    [session] = sessions(home, "r9")
    [item] = histories([(session, env(home))])[0]
    raw = [k for k in item if any(c in k for c in "\x1b\x07\u202e")]
    assert raw == []
    assert item[f"debate/reward/{SHOWN}"] == pytest.approx(sum(0.1 * (i + 1) for i in range(4)) / 4)
    assert item["k\\x1b[5mblink"] == 1.0
    columns = table(session, item, "full_trajectories")["columns"]
    assert f"role/{SHOWN}" in columns and not [c for c in columns if "\x1b" in c]
    assert any("shown as escapes" in n for n in up["notes"]), up["notes"]


# ---------------------------------------------------------------------------------------------------------
# 7. Small inaccuracies
# ---------------------------------------------------------------------------------------------------------


def test_no_empty_table_when_no_text_is_readable(tmp_path):
    """Every picked sample's text unreadable (a corrupt page: each file's first prompt's length beyond its page;
    invalid UTF-8 is read with U+FFFD): an empty table was logged at every step."""
    from runlog import open_run
    from runlog.sinks import plan as P

    root = native_run(tmp_path / "run", 2)
    for f in sorted((root / "samples" / "train").glob("*.parquet")):
        t = pq.read_table(f)
        prompts = ["MARKERXXXX"] + t.column("prompt").to_pylist()[1:]
        t = t.set_column(t.schema.get_field_index("prompt"), "prompt", pa.array(prompts, pa.string()))
        t = t.replace_schema_metadata({"runlog.schema_version": "2"})
        pq.write_table(t, f, compression="NONE", use_dictionary=False, write_statistics=False)
        data = f.read_bytes()
        at = data.index(b"MARKERXXXX")
        f.write_bytes(data[: at - 4] + b"\xff\xff\xff\x7f" + data[at:])
    plan = P.build_plan(open_run(root), P.PlanOptions(metrics=False))
    payloads = list(plan.payloads())
    assert [p.step for p in payloads] == [0, 1] and all(not p.tables for p in payloads)


def test_a_negative_last_step_is_a_damaged_state(tmp_path, cli):
    root = native_run(tmp_path / "run", 1)
    state = tmp_path / "s.json"
    entry = {"run_id": "r9", "project": "p", "entity": None, "mode": "offline", "last_step": -5}
    dest = f"offline:{(tmp_path / 'wb').resolve()}||p|r9"
    state.write_text(json.dumps({"format": "runlog-wandb-state", "version": 1, "destinations": {dest: entry}}))
    r = cli("upload-wandb", root, "--project", "p", "--mode", "offline", "--wandb-dir", tmp_path / "wb",
            "--state", state, "--dry-run")  # fmt: skip
    assert r.exit_code == 2 and "last_step is -5 (steps start at 0)" in r.stderr, r.stderr


def test_a_late_file_of_a_gap_step_is_not_called_uploaded(tmp_path):
    from runlog import open_run
    from runlog.sinks import state as S

    root = native_run(tmp_path / "run", 3)
    late = root / "samples" / "train" / "step_00000001.p0.parquet"
    moved = tmp_path / "late.parquet"
    shutil.move(late, moved)
    fp = S.fingerprint(open_run(root))
    shutil.move(moved, late)
    [note] = S.changed_history(open_run(root), fp, 2)
    assert note.startswith("samples/train/step_00000001.p0.parquet: new file for step 1, at or before the last")
    assert "already-uploaded" not in note


def test_the_save_interval_is_the_documented_one():
    from runlog.sinks.wandb import SAVE_EVERY_S

    doc = (Path(__file__).resolve().parents[1] / "docs" / "wandb.md").read_text()
    assert SAVE_EVERY_S == 0.25 and "most every quarter second during an upload (`SAVE_EVERY_S`)" in doc
    assert "at most once a second" not in doc


def test_the_mean_total_reward_of_huge_rewards_does_not_overflow(tmp_path):
    from runlog import open_run
    from runlog.sinks import plan as P

    root = native_run(tmp_path / "run", 1)
    [f] = (root / "samples" / "train").glob("*.parquet")
    t = pq.read_table(f)
    t = t.set_column(t.schema.get_field_index("reward"), "reward", pa.array([1.7e308, 1.7e308, 1.5e308, 1.6e308]))
    pq.write_table(t.replace_schema_metadata({"runlog.schema_version": "2"}), f)
    [p] = P.build_plan(open_run(root), P.PlanOptions(metrics=False)).payloads()
    expected = sum(x / 4 for x in (1.7e308, 1.7e308, 1.5e308, 1.6e308))  # each term finite, so is the sum
    assert math.isfinite(p.values["debate/reward_total"])
    assert p.values["debate/reward_total"] == pytest.approx(expected, rel=1e-12)
