"""Audit a17 of ``upload-wandb``: another run started in the folder of a run uploaded before gets its own W&B run.

A run without a manifest ``run_id`` had a W&B run id derived from its path and the name of its earliest file. A
run moved to an archive (its state going with it), or deleted, and the job started again in the same folder made a
new run with the same path and file names (``step_00000000.p0.parquet``): the same id as the first run's upload. W&B
ignores a step at or below a run's last one, so online the new run's steps up to the old run's last were dropped
from the dashboard (offline: only a note that the W&B directory held a session of that id). Now the derived id also
holds what tells the earliest file from another run's of that name and stays as the run grows (a Parquet file's
size and time, a text file's first line), and an id recorded for this path with other files (a shared ``--state``)
is left to that run, said. An id recorded for the same files is kept, however it was derived. Uploads are dry runs
(no W&B needed): the run id and notes are decided first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import runlog
from runlog import open_run
from runlog.sinks import plan as P
from runlog.sinks import state as S
from runlog.sinks import wandb as W


def _run(root: Path, steps: int = 5, seed: int = 0, start: int = 0, samples: bool = True) -> Path:
    w = runlog.RunWriter(root, name="exp", durable=False)
    for step in range(start, start + steps):
        if samples:
            w.log_samples(step, [{"sample_id": f"s{step}-{i}", "reward": float(i + seed)} for i in range(2)])
        w.log_scalars(step, {"loss": float(step + seed)})
    w.close()
    manifest = json.loads((root / "run.json").read_text())
    manifest.pop("run_id", None)  # as every non-native layout: the id is derived from the path
    (root / "run.json").write_text(json.dumps(manifest))
    return root


def _uploaded(root: Path, wdir: Path, state_path: Path | None = None, rid: str | None = None) -> str:
    """Record in the state what a finished offline upload of every step of ``root`` records; its run id."""
    run = open_run(root)
    rid = rid or P.path_run_id(run)
    state = S.StateFile(state_path or S.default_state_path(run))
    entry = S.Entry(rid, "p", None, "offline", str(wdir), last_step=4, complete=True)
    entry.fingerprint, entry.fingerprint_step, entry.source = S.fingerprint(run), 4, str(root.resolve())
    state.put(S.destination("offline", None, "p", rid, str(wdir)), entry)
    return rid


def _dry(root: Path, wdir: Path, state_path: Path | None = None) -> W.UploadResult:
    return W.upload_wandb(root, project="p", mode="offline", wandb_dir=wdir, dry_run=True, state_path=state_path)


def _restamp(root: Path) -> None:
    """Give the files of a run made just now another modification time, as a run written at another time has
    (two runs made within one test could share a file system's coarse clock tick)."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


def test_a_new_run_in_the_folder_of_an_archived_one_gets_its_own_w_and_b_run(tmp_path: Path) -> None:
    """``mv exp archive/exp`` (the state goes with it), then the job started again in ``exp``: the new run's own,
    empty state records nothing, so only its derived id can differ, and the archived run keeps its own."""
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp"), wdir)
    (tmp_path / "archive").mkdir()
    shutil.move(tmp_path / "exp", tmp_path / "archive" / "exp")
    _restamp(_run(tmp_path / "exp", seed=7))
    new = _dry(tmp_path / "exp", wdir)
    assert new.run_id != rid, new.notes
    assert new.run_id.startswith("runlog-") and new.after is None, new.notes  # every step sent, into its own run
    assert _dry(tmp_path / "archive" / "exp", wdir).run_id == rid


def test_a_run_deleted_and_started_again_in_its_folder_is_another_w_and_b_run(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp"), wdir)
    shutil.rmtree(tmp_path / "exp")
    _restamp(_run(tmp_path / "exp", seed=7))
    assert _dry(tmp_path / "exp", wdir).run_id != rid


def test_a_shared_state_leaves_the_id_of_this_path_to_the_run_it_recorded_and_says_so(tmp_path: Path) -> None:
    """With ``--state`` kept elsewhere the state records this path's id for the first run's files: the state is
    matched by path, so the new run went into that W&B run."""
    wdir, shared = tmp_path / "wb", tmp_path / "state.json"
    rid = _uploaded(_run(tmp_path / "exp"), wdir, shared)
    shutil.rmtree(tmp_path / "exp")
    _restamp(_run(tmp_path / "exp", seed=7))
    result = _dry(tmp_path / "exp", wdir, shared)
    assert result.run_id == P.path_run_id(open_run(tmp_path / "exp")) != rid, result.notes
    assert result.after is None, result.notes
    [note] = [n for n in result.notes if rid in n]
    assert "with other files (samples/train/step_00000000.p0.parquet is not the file uploaded" in note, note
    assert f"W&B run of its own, {result.run_id}" in note and f"--run-id {rid}" in note, note
    # Once uploaded, the new run keeps its id and the note is not said again.
    _uploaded(tmp_path / "exp", wdir, shared, rid=result.run_id)
    again = _dry(tmp_path / "exp", wdir, shared)
    assert again.run_id == result.run_id and again.up_to_date and not any(rid in n for n in again.notes)


def test_a_state_left_in_a_folder_emptied_for_a_new_run_is_not_the_new_runs(tmp_path: Path) -> None:
    """``mv exp/* archive/`` leaves the dot file, the state, in ``exp``: it records this path, with other files."""
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp"), wdir)
    for path in (tmp_path / "exp").iterdir():
        if path.name != S.STATE_NAME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    _restamp(_run(tmp_path / "exp", seed=7))
    result = _dry(tmp_path / "exp", wdir)
    assert result.run_id != rid and any(f"records W&B run {rid}" in n for n in result.notes), result.notes


def test_a_growing_run_keeps_its_id_with_its_state_and_without(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    root = _run(tmp_path / "exp")
    derived = P.path_run_id(open_run(root))
    rid = _uploaded(root, wdir)
    _run(root, start=5)  # resumed: scalars appended, new step files
    assert P.path_run_id(open_run(root)) == derived  # the earliest file is untouched
    result = _dry(root, wdir)
    assert result.run_id == rid and result.after == 4, result.notes
    assert not any("other files" in n for n in result.notes), result.notes


def test_an_id_derived_before_the_stamp_is_kept_for_the_same_files(tmp_path: Path) -> None:
    """A state written by the runlog that derived the id from the path and name alone: the run goes on into it,
    whatever its files gained; only other files at that path make it another run's."""
    wdir, shared = tmp_path / "wb", tmp_path / "state.json"
    root = _run(tmp_path / "exp")
    key = [str(root.resolve()), "first", "samples/train/step_00000000.p0.parquet"]
    before = f"runlog-{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}"
    _uploaded(root, wdir, shared, rid=before)
    _run(root, start=5)
    assert _dry(root, wdir, shared).run_id == before
    shutil.rmtree(root)
    _restamp(_run(root, seed=7))
    assert _dry(root, wdir, shared).run_id != before


def test_a_text_earliest_file_is_told_by_its_first_line(tmp_path: Path) -> None:
    """A run of scalars alone: its earliest file grows (size and time change), its first line does not."""
    wdir = tmp_path / "wb"
    root = _run(tmp_path / "exp", samples=False)
    assert [f.path for f in open_run(root).files if f.kind != "manifest"] == ["scalars.p0.jsonl"]
    rid = _uploaded(root, wdir)
    _run(root, start=5, samples=False)
    assert P.path_run_id(open_run(root)) == rid == _dry(root, wdir).run_id
    shutil.rmtree(root)
    _run(root, seed=7, samples=False)  # another first line (loss 7.0)
    assert _dry(root, wdir).run_id != rid
