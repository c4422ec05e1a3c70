"""Audit a17 of ``upload-wandb``: a run without a manifest ``run_id``, moved or copied after an upload.

Its W&B run id is derived from its path, and the state (inside the run folder) moved with it but was matched by
path only: ``mv exp1 exp1-final`` then an upload sent every step again into a second W&B run, with no note. Now a
run holding the files an entry of the state recorded from another path goes on into that W&B run when that path is
gone (moved, renamed) or names this folder, and a copy (that path still there) gets a W&B run of its own, said
with the id it does not continue. Uploads are dry runs (no W&B needed): the run id and notes are decided first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import runlog
from runlog import open_run
from runlog.sinks import plan as P
from runlog.sinks import state as S
from runlog.sinks import wandb as W


def _run(root: Path, steps: int = 5, seed: int = 0) -> Path:
    w = runlog.RunWriter(root, name="exp", durable=False)
    for step in range(steps):
        w.log_samples(step, [{"sample_id": f"s{step}-{i}", "reward": float(i + seed)} for i in range(2)])
        w.log_scalars(step, {"loss": float(step + seed)})
    w.close()
    manifest = json.loads((root / "run.json").read_text())
    del manifest["run_id"]  # as every non-native layout: the id is derived from the path
    (root / "run.json").write_text(json.dumps(manifest))
    return root


def _uploaded(root: Path, wdir: Path, state_path: Path | None = None) -> str:
    """Record in the state what a finished offline upload of every step of ``root`` records; its run id."""
    run = open_run(root)
    rid = P.path_run_id(run)
    state = S.StateFile(state_path or S.default_state_path(run))
    entry = S.Entry(rid, "p", None, "offline", str(wdir), last_step=4, complete=True)
    entry.fingerprint, entry.fingerprint_step, entry.source = S.fingerprint(run), 4, str(root.resolve())
    state.put(S.destination("offline", None, "p", rid, str(wdir)), entry)
    return rid


def _dry(root: Path, wdir: Path, state_path: Path | None = None) -> W.UploadResult:
    return W.upload_wandb(root, project="p", mode="offline", wandb_dir=wdir, dry_run=True, state_path=state_path)


def test_a_moved_run_goes_on_into_its_w_and_b_run(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp1"), wdir)
    (tmp_path / "exp1").rename(tmp_path / "exp1-final")
    result = _dry(tmp_path / "exp1-final", wdir)
    assert result.run_id == rid, result.notes
    assert result.up_to_date, result.notes  # nothing sent again
    [note] = [n for n in result.notes if rid in n]
    assert f"uploaded from {tmp_path / 'exp1'}, which is gone" in note and "same W&B run" in note, note


def test_a_run_reached_by_its_old_path_through_a_link_is_the_same_run(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp1"), wdir)
    (tmp_path / "exp1").rename(tmp_path / "exp1-final")
    (tmp_path / "exp1").symlink_to(tmp_path / "exp1-final")
    assert _dry(tmp_path / "exp1-final", wdir).run_id == rid


def test_a_copy_gets_a_w_and_b_run_of_its_own_and_says_so(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp1"), wdir)
    shutil.copytree(tmp_path / "exp1", tmp_path / "exp1-copy")  # the state file copied with it
    result = _dry(tmp_path / "exp1-copy", wdir)
    own = P.path_run_id(open_run(tmp_path / "exp1-copy"))
    assert result.run_id == own != rid
    [note] = [n for n in result.notes if rid in n]
    assert "is still there: this copy goes into a W&B run of its own" in note and f"--run-id {rid}" in note, note
    assert _dry(tmp_path / "exp1", wdir).run_id == rid  # the original keeps its own


def test_another_run_in_a_shared_state_is_not_taken_for_a_moved_one(tmp_path: Path) -> None:
    """Other files (another seed) at a path of its own: not the run the entry recorded, whatever the state."""
    wdir, shared = tmp_path / "wb", tmp_path / "state.json"
    rid = _uploaded(_run(tmp_path / "exp1"), wdir, shared)
    shutil.rmtree(tmp_path / "exp1")
    result = _dry(_run(tmp_path / "exp2", seed=1), wdir, shared)
    assert result.run_id == P.path_run_id(open_run(tmp_path / "exp2")) != rid
    assert not any(rid in n for n in result.notes), result.notes
