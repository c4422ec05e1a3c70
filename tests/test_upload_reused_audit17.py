"""Audit a17 of ``upload-wandb``: a run moved away whose old folder now holds another run (an output folder reused).

A run without a manifest ``run_id`` keeps its W&B run when moved (its state goes with it and records the path it
was uploaded from), and a copy gets a W&B run of its own while that path is still there. The copy test asked only
whether the path exists: ``mv exp archive/exp`` then a new run started in ``exp`` made the archived run's upload a
second W&B run, every step sent again, with a note saying ``exp`` "is still there" though it held another run. Now
the recorded path is a copy's original only while it still holds the recorded files (text files whose first bytes
hash the same, others of the same size and time). Uploads are dry runs (no W&B needed): the run id is decided first.
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


def _run(root: Path, steps: int = 5, seed: int = 0, start: int = 0) -> Path:
    w = runlog.RunWriter(root, name="exp", durable=False)
    for step in range(start, start + steps):
        w.log_samples(step, [{"sample_id": f"s{step}-{i}", "reward": float(i + seed)} for i in range(2)])
        w.log_scalars(step, {"loss": float(step + seed)})
    w.close()
    manifest = json.loads((root / "run.json").read_text())
    manifest.pop("run_id", None)  # as every non-native layout: the id is derived from the path
    (root / "run.json").write_text(json.dumps(manifest))
    return root


def _uploaded(root: Path, wdir: Path) -> str:
    """Record in the run's state what a finished offline upload of every step of ``root`` records; its run id."""
    run = open_run(root)
    rid = P.path_run_id(run)
    state = S.StateFile(S.default_state_path(run))
    entry = S.Entry(rid, "p", None, "offline", str(wdir), last_step=4, complete=True)
    entry.fingerprint, entry.fingerprint_step, entry.source = S.fingerprint(run), 4, str(root.resolve())
    state.put(S.destination("offline", None, "p", rid, str(wdir)), entry)
    return rid


def _dry(root: Path, wdir: Path) -> W.UploadResult:
    return W.upload_wandb(root, project="p", mode="offline", wandb_dir=wdir, dry_run=True)


def _archive(tmp_path: Path, wdir: Path) -> str:
    rid = _uploaded(_run(tmp_path / "exp"), wdir)
    (tmp_path / "archive").mkdir()
    shutil.move(tmp_path / "exp", tmp_path / "archive" / "exp")
    return rid


def test_a_run_moved_away_from_a_reused_folder_goes_on_into_its_w_and_b_run(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _archive(tmp_path, wdir)
    _run(tmp_path / "exp", seed=7)  # a new run started in the reused output folder
    result = _dry(tmp_path / "archive" / "exp", wdir)
    assert result.run_id == rid, result.notes
    assert result.up_to_date, result.notes  # nothing sent again
    [note] = [n for n in result.notes if rid in n]
    assert f"uploaded from {tmp_path / 'exp'}, which holds other files now" in note and "same W&B run" in note, note
    assert "still there" not in note, note


def test_an_empty_reused_folder_holds_none_of_the_run(tmp_path: Path) -> None:
    wdir = tmp_path / "wb"
    rid = _archive(tmp_path, wdir)
    (tmp_path / "exp").mkdir()  # the job's launcher made the folder again; nothing written yet
    assert _dry(tmp_path / "archive" / "exp", wdir).run_id == rid


def test_same_names_and_sizes_at_the_old_path_are_not_the_run_when_their_stamps_differ(tmp_path: Path) -> None:
    """Another run whose Parquet step files have the very names and sizes the state recorded (the same job run
    again, its scalars made byte-equal here, so that only the Parquet files can tell): Parquet files are written
    once, whole, so a time other than the recorded one is another file."""
    wdir = tmp_path / "wb"
    rid = _archive(tmp_path, wdir)
    old = tmp_path / "archive" / "exp"
    new = _run(tmp_path / "exp")
    recorded = S.StateFile(S.default_state_path(open_run(old))).data["destinations"]
    [fp] = [d["fingerprint"] for d in recorded.values()]
    for path, (size, _mtime, digest) in fp.items():
        if digest is not None and path != "run.json":
            shutil.copyfile(old / path, new / path)
        elif path != "run.json":
            assert (new / path).stat().st_size == size, path  # the premise: the same sizes
    assert _dry(old, wdir).run_id == rid


def test_a_copy_whose_original_kept_growing_still_gets_a_w_and_b_run_of_its_own(tmp_path: Path) -> None:
    """The original still holds the recorded files, grown (its writer went on after the copy was made): a copy."""
    wdir = tmp_path / "wb"
    rid = _uploaded(_run(tmp_path / "exp1"), wdir)
    shutil.copytree(tmp_path / "exp1", tmp_path / "exp1-copy", copy_function=shutil.copy)  # new stamps
    _run(tmp_path / "exp1", start=5)  # the original resumed: its scalars appended, new step files
    result = _dry(tmp_path / "exp1-copy", wdir)
    assert result.run_id == P.path_run_id(open_run(tmp_path / "exp1-copy")) != rid
    [note] = [n for n in result.notes if rid in n]
    assert "is still there: this copy goes into a W&B run of its own" in note, note
