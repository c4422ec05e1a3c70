"""Audit 15 of ``upload-wandb``: a run still being written, two runs with one manifest ``run_id``, shards that
disagree on ``__count`` weights, values left out without a word, and a note that called a step uploaded.

- An upload while a ``RunWriter`` was open sent the step it was writing; what of that step landed later (its
  scalars line after its samples, or its samples after the line) never reached that W&B run, without a word.
  The open writer's last step is now held back (``inspect``'s "still writing"), and sent once it is written.
- A second run whose manifest has the same ``run_id`` was taken, with a shared ``--state``, for the first one
  "changed": nothing of it was sent, and the notes said its steps were uploaded. It is refused now (exit 2),
  and an offline W&B directory already holding a session of the id is said.
- Merging a key whose shards disagree on having a ``__count`` weight gave a figure no note explained.
- List-valued scalars and ``_`` keys were left out of the upload without a note.
- A line appended for a step W&B never got (only a later one) was called "already-uploaded".

Uploads are ``runlog`` processes writing offline W&B runs, read back with W&B's own reader (test_wandb_audit9's
helpers); expected values come from what the test wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import runlog
from runlog import open_run
from runlog.sinks import state as S
from runlog.sinks import wandb as W
from runlog.sinks.plan import PlanOptions, build_plan
from test_wandb_audit9 import logged, native_run, run_upload, upload

pytest.importorskip("wandb")

HELD = "held back"


def rows(step: int) -> list[dict[str, Any]]:
    return [
        {"sample_id": f"s{step}-{i}", "reward": float(i), "roles": [{"role": "solver", "reward": float(i), "kl": 0.0}]}
        for i in range(4)
    ]


def by_step(home: Path, rid: str) -> dict[int, dict[str, Any]]:
    """Every W&B history row of ``rid``, by step; a step logged twice fails the test."""
    out: dict[int, dict[str, Any]] = {}
    for item in logged(home, rid):
        assert item["_step"] not in out, f"step {item['_step']} logged twice"
        out[item["_step"]] = item
    return out


def open_writer(root: Path, rid: str) -> runlog.RunWriter:
    shutil.rmtree(root, ignore_errors=True)
    return runlog.RunWriter(root, name=rid, roles=["solver"], run_id=rid)


def test_the_step_an_open_writer_is_writing_is_held_back_until_its_scalars_come(tmp_path: Path) -> None:
    """docs/writer.md's order: a step's samples, then its scalars. The first upload ran between the two: step 2's
    loss never reached W&B. Now the step is held back with a note, and sent once the line is there."""
    root, home = tmp_path / "run", tmp_path / "home"
    w = open_writer(root, "a15-live-a")
    for step in range(3):
        w.log_samples(step, rows(step))
        if step < 2:
            w.log_scalars(step, {"train/loss": 1.0 - step / 10})
    w.flush()
    first = upload(root, home, "--tables-every", "0")
    held = [n for n in first["notes"] if HELD in n]
    assert len(held) == 1 and "process 0 still writing" in held[0] and "step(s) 1, 2 held back" in held[0], first
    assert first["last_step"] == 0
    w.log_scalars(2, {"train/loss": 0.8})
    w.close()
    second = upload(root, home, "--tables-every", "0")
    assert (second["first_step"], second["last_step"]) == (1, 2) and not [n for n in second["notes"] if HELD in n]
    got = by_step(home, "a15-live-a")
    assert sorted(got) == [0, 1, 2]
    assert got[2]["train/loss"] == pytest.approx(0.8) and got[2]["debate/samples"] == 4


def test_a_scalars_line_ahead_of_the_samples_does_not_lock_the_samples_out(tmp_path: Path) -> None:
    """The scalars of steps 2 and 3 before their samples (the line first, or logged ahead): holding from the last
    step alone (3) would send step 2 without its samples; the step after
    the samples' last file (2) is where the hold starts: a written samples file is sealed."""
    root, home = tmp_path / "run", tmp_path / "home"
    w = open_writer(root, "a15-live-b")
    for step in range(4):
        w.log_scalars(step, {"train/loss": 1.0 - step / 10})
        if step < 2:
            w.log_samples(step, rows(step))
    w.flush()
    first = upload(root, home, "--tables-every", "0")
    assert first["last_step"] == 1 and any("step(s) 2, 3 held back" in n for n in first["notes"]), first
    w.log_samples(2, rows(2))
    w.log_samples(3, rows(3))
    w.close()
    upload(root, home, "--tables-every", "0")
    got = by_step(home, "a15-live-b")
    assert sorted(got) == [0, 1, 2, 3]
    assert [got[s].get("debate/samples") for s in range(4)] == [4, 4, 4, 4]
    assert got[3]["train/loss"] == pytest.approx(0.7)


def _open_state(root: Path) -> None:
    """The run's manifest says its writer writes state files, and process 0's says open (no lock held: killed)."""
    manifest = json.loads((root / "run.json").read_text())
    manifest["writer"] = {"name": "runlog", "state_files": True}
    (root / "run.json").write_text(json.dumps(manifest))
    (root / ".writer.p0.json").write_text(json.dumps({"state": "open", "process": 0}))


def test_a_writer_that_says_open_and_wrote_nothing_since_is_sent_at_the_next_upload(tmp_path: Path) -> None:
    """A state file saying open without a lock held: still writing or killed. Its last step is held once; an
    upload that finds its files unchanged sends it, with a note, rather than holding it for ever."""
    root, home = native_run(tmp_path / "run", 3, manifest_id="a15-killed"), tmp_path / "home"
    _open_state(root)
    first = upload(root, home, "--tables-every", "0")
    assert first["last_step"] == 1, first
    assert any("process 0 not closed" in n and "step(s) 2 held back" in n for n in first["notes"]), first["notes"]
    second = upload(root, home, "--tables-every", "0")
    assert (second["first_step"], second["last_step"]) == (2, 2), second
    assert any("wrote nothing since the last upload (killed?)" in n for n in second["notes"]), second["notes"]
    assert sorted(by_step(home, "a15-killed")) == [0, 1, 2]


def test_a_run_whose_writers_closed_or_without_state_files_holds_nothing(tmp_path: Path) -> None:
    root = tmp_path / "run"
    w = open_writer(root, "a15-closed")
    for step in range(3):
        w.log_samples(step, rows(step))
        w.log_scalars(step, {"train/loss": 1.0})
    w.close()
    plain = native_run(tmp_path / "plain", 3)
    for run in (root, plain):
        result = W.upload_wandb(run, project="p", dry_run=True, state_path=tmp_path / "st.json")
        assert (result.first_step, result.last_step) == (0, 2) and not [n for n in result.notes if HELD in n]


def _uploaded_from(state: Path, source: Path, run: Path, rid: str, wdir: Path) -> None:
    """A state saying ``source``'s steps 0-2 were uploaded offline into ``wdir`` as W&B run ``rid``, with the
    fingerprint of ``run`` (as a complete upload of it leaves it)."""
    entry = S.Entry(rid, "p", None, "offline", str(wdir.resolve()), source=str(source.resolve()))
    entry.last_step, entry.complete = 2, True
    entry.fingerprint, entry.fingerprint_step = S.fingerprint(open_run(run)), 2
    entry.options = S.options_record(PlanOptions(metrics=False, tables_every=0))
    S.StateFile(state).put(S.destination("offline", None, "p", rid, str(wdir.resolve())), entry)


def test_a_second_run_with_the_same_manifest_run_id_is_refused(tmp_path: Path, cli) -> None:
    """With a shared --state, the second seed was called "changed" and nothing of it was sent (exit 0); now exit
    2, one line naming both runs and --run-id."""
    seed1 = native_run(tmp_path / "seed1", 3, manifest_id="grpo-exp")
    seed2 = native_run(tmp_path / "seed2", 3, manifest_id="grpo-exp")
    (seed2 / "scalars.p0.jsonl").write_text(
        "".join(json.dumps({"step": s, "time": s, "train/loss": 10.0 + s}) + "\n" for s in range(3))
    )
    state, wdir = tmp_path / "shared.json", tmp_path / "wb"
    _uploaded_from(state, seed1, seed1, "grpo-exp", wdir)
    r = cli("upload-wandb", seed2, "--project", "p", "--mode", "offline", "--wandb-dir", wdir, "--state", state,
            "--no-metrics", "--tables-every", "0")  # fmt: skip
    assert r.exit_code == 2, r.output
    [line] = [x for x in r.output.splitlines() if x.strip()]
    assert str(seed1.resolve()) in line and str(seed2.resolve()) in line and "--run-id ID" in line, line


def test_a_moved_run_goes_on_with_a_note(tmp_path: Path) -> None:
    """The same files at another path (a run folder moved or copied): not refused, said."""
    run = native_run(tmp_path / "now", 3, manifest_id="a15-moved")
    state, wdir = tmp_path / "st.json", tmp_path / "wb"
    _uploaded_from(state, tmp_path / "before", run, "a15-moved", wdir)
    result = W.upload_wandb(
        run, project="p", mode="offline", wandb_dir=wdir, state_path=state,
        options=PlanOptions(metrics=False, tables_every=0),
    )  # fmt: skip
    assert result.up_to_date
    assert any("(moved or copied)" in n and str((tmp_path / "before").resolve()) in n for n in result.notes)
    assert S.StateFile(state).data["destinations"]  # unchanged, readable


def test_every_state_entry_records_its_source(tmp_path: Path) -> None:
    """A manifest id's entry had no source: nothing to tell another run from this one by."""
    root, home = native_run(tmp_path / "run", 2, manifest_id="a15-src"), tmp_path / "home"
    upload(root, home, "--tables-every", "0", "--state", str(tmp_path / "st.json"))
    [entry] = json.loads((tmp_path / "st.json").read_text())["destinations"].values()
    assert entry["source"] == str(root.resolve())


def test_an_offline_session_of_the_id_not_written_by_this_state_is_said(tmp_path: Path) -> None:
    """Two seeds with one manifest run_id, each with its own state: the second went into the same W&B id
    without a word."""
    run = native_run(tmp_path / "seed2", 2, manifest_id="grpo-exp")
    wdir = tmp_path / "wb"
    (wdir / "wandb" / "offline-run-20260101_000000-grpo-exp").mkdir(parents=True)
    (wdir / "wandb" / "offline-run-20260101_000000-grpo-exp2").mkdir(parents=True)  # another id
    result = W.upload_wandb(run, project="p", mode="offline", wandb_dir=wdir, dry_run=True)
    [note] = [n for n in result.notes if "already holds" in n]
    assert "1 session(s) of W&B run grpo-exp" in note and "the manifest's run_id" in note and "--run-id ID" in note


def _two_shards(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "a15-w"}))
    (root / "scalars.p0.jsonl").write_text(json.dumps({"step": 0, "time": 1, "k": 1.0, "k__count": 10}) + "\n")
    (root / "scalars.p1.jsonl").write_text(
        json.dumps({"step": 0, "time": 1, "k": 3.0}) + "\n" + json.dumps({"step": 1, "time": 2, "k": 5.0}) + "\n"
    )
    return root


def test_shards_that_disagree_on_a_weight_are_said_and_a_value_without_one_is_one_value(tmp_path: Path) -> None:
    """A shard without ``k__count`` (foreign data) weighs one value: p0's mean of 10 values and p1's one value
    are 11 values, (10 * 1 + 3) / 11. The note (summarize --scalars and the upload) says where shards disagree."""
    from runlog.analysis import scalars as SC

    run = open_run(_two_shards(tmp_path / "run"))
    merged = SC.merged_steps(run).collect().sort("step")
    assert merged["value"].to_list() == pytest.approx([13 / 11, 5.0])
    note = SC.mixed_weights(run)
    assert note is not None and "k (1 step(s), first 0)" in note and "weighed as one value" in note
    assert note in build_plan(open_run(tmp_path / "run")).notes
    assert SC.mixed_weights(open_run(native_run(tmp_path / "plain", 2))) is None


def test_values_left_out_of_the_upload_are_said(tmp_path: Path) -> None:
    """A list-valued key (inspect's fidelity note) and ``_`` keys: W&B got only ``loss``, with no note."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "a15-drop"}))
    line = {"step": 0, "time": 1, "loss": 1.0, "_private": 3.0, "_other": 1.0, "z": [1, 2]}
    (root / "scalars.p0.jsonl").write_text(json.dumps(line) + "\n")
    result = W.upload_wandb(root, project="p", dry_run=True, state_path=tmp_path / "st.json")
    assert result.keys == ["loss", "trainer/step"]
    assert "2 scalar key(s) starting with '_' not logged (W&B reserves such names): _other, _private" in result.notes
    assert any(n.startswith("not mapped into the canonical model") and "keys: z" in n for n in result.notes)


def test_a_line_for_a_step_never_uploaded_is_not_called_uploaded(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text(json.dumps({"format": "runlog", "schema_version": 2, "run_id": "a15-late"}))
    scalars = root / "scalars.p0.jsonl"
    scalars.write_text("".join(json.dumps({"step": s, "time": s, "x": s}) + "\n" for s in (0, 1, 7)))
    fp = S.fingerprint(open_run(root))
    with open(scalars, "a") as fh:
        fh.write(json.dumps({"step": 5, "time": 5, "x": 5}) + "\n")
    [note] = S.changed_history(open_run(root), fp, 7)
    assert "already-uploaded" not in note
    assert note.startswith("scalars.p0.jsonl: lines appended for step(s) 5 (at or before the last uploaded step 7")


def test_the_refusal_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    """The same refusal through a real process: exit 2, one stderr line, no traceback."""
    seed1 = native_run(tmp_path / "seed1", 2, manifest_id="grpo-x")
    seed2 = native_run(tmp_path / "seed2", 2, manifest_id="grpo-x")
    (seed2 / "scalars.p0.jsonl").write_text(json.dumps({"step": 0, "time": 0, "train/loss": 9.0}) + "\n")
    home = tmp_path / "home"
    state = str(tmp_path / "shared.json")
    upload(seed1, home, "--tables-every", "0", "--state", state)
    res = run_upload(seed2, home, "--tables-every", "0", "--state", state)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_a_writer_killed_is_not_held_back_on_the_first_upload(tmp_path: Path) -> None:
    """A review: a finished run whose process was killed long ago had its last step (and every later step of the
    other processes) held back on a one-shot upload. Its lock file there and free (a closing writer removes it:
    killed), or its files older than two minutes where no lock tells: sent at once, with a note."""
    import os
    import socket
    import time

    free = native_run(tmp_path / "free", 3, manifest_id="a15-free")
    _open_state(free)
    (free / ".writer.p0.lock").write_text(f"pid 1 on {socket.gethostname()}\n")  # a writer of this host
    old = native_run(tmp_path / "old", 3, manifest_id="a15-old")
    _open_state(old)
    ago = time.time() - 3600
    for p in old.rglob("*"):
        os.utime(p, (ago, ago))
    for run, why in ((free, "its lock is not held"), (old, "wrote nothing for 60 minute(s)")):
        result = W.upload_wandb(run, project="p", dry_run=True, state_path=tmp_path / f"{run.name}.json")
        assert (result.first_step, result.last_step) == (0, 2), result.notes
        assert any(why in n and "(killed?)" in n for n in result.notes), result.notes
    # A lock file of another host, free here: that host's lock may not be seen from this one (NFS local_lock):
    # its fresh step is held, as where no lock tells.
    other = native_run(tmp_path / "other", 3, manifest_id="a15-other")
    _open_state(other)
    (other / ".writer.p0.lock").write_text("pid 1 on a-compute-node-elsewhere\n")
    result = W.upload_wandb(other, project="p", dry_run=True, state_path=tmp_path / "other.json")
    assert (result.first_step, result.last_step) == (0, 1), result.notes


def test_a_moved_run_whose_manifest_was_rewritten_goes_on(tmp_path: Path) -> None:
    """A review: the writer rewrites run.json when a role appears; a run moved after that was refused as "another
    run with the same W&B run id". The default state lies in the run folder and moves with it: never compared; a
    shared state compares the data files only."""
    run = native_run(tmp_path / "before", 3, manifest_id="a15-mv")
    home = tmp_path / "home"
    upload(run, home, "--tables-every", "0")
    manifest = json.loads((run / "run.json").read_text())
    manifest["roles"] = [*manifest.get("roles", []), "judge"]
    (run / "run.json").write_text(json.dumps(manifest))
    moved = tmp_path / "after"
    shutil.move(run, moved)
    again = upload(moved, home, "--tables-every", "0")  # exit 0 (was 2, refused)
    assert any("run.json: rewritten" in n for n in again["notes"]), again["notes"]
    state, wdir = tmp_path / "shared.json", tmp_path / "wb"
    _uploaded_from(state, tmp_path / "elsewhere", moved, "a15-mv2", wdir)
    manifest["roles"].append("verifier")
    (moved / "run.json").write_text(json.dumps(manifest))
    result = W.upload_wandb(
        moved, project="p", mode="offline", wandb_dir=wdir, state_path=state, run_id="a15-mv2",
        options=PlanOptions(metrics=False, tables_every=0),
    )  # fmt: skip
    assert any("(moved or copied)" in n for n in result.notes), result.notes
