"""Audit a17 of ``upload-wandb``: a writer's heartbeat dated ahead of this host's clock.

A heartbeat ahead of this host's clock was always a live writer: a storage clock hours ahead, or a copy of a killed
writer's run that kept a date to come, held its last steps back until this host's clock passed that date (for ever
for one years away). Up to the grace ahead it is still read as "now"; further ahead, whether it moves tells: found
unmoved by uploads more than the grace apart (this host's clock), the writer is gone and its steps are sent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import runlog
from runlog import open_run
from runlog.sinks import state as S
from runlog.sinks import wandb as W
from runlog.sinks.plan import PlanOptions, build_plan

DAY = 24 * 3600.0


def _killed(root: Path, ahead: float) -> Path:
    """Steps 0-4 written, then the writer gone without closing (its state file says open, with a heartbeat; no
    lock file tells), its heartbeat dated ``ahead`` seconds after this host's clock. The data files are dated as
    far ahead (the same storage clock)."""
    w = runlog.RunWriter(root, name="killed", durable=False)
    for step in range(5):
        w.log_samples(step, [{"sample_id": f"s{step}-{i}", "reward": float(i)} for i in range(2)])
        w.log_scalars(step, {"loss": float(step)})
    w.close()
    state = root / ".writer.p0.json"
    state.write_text(json.dumps({"process": 0, "state": "open", "heartbeat_s": 30}))
    t = time.time() + ahead
    for p in root.rglob("*"):
        os.utime(p, (t, t))
    return state


def _hold(root: Path, entry: S.Entry | None) -> tuple[int | None, dict[str, int], list[str]]:
    run = open_run(root)
    return W._hold_open(build_plan(run, PlanOptions()), run, entry)


def _entry(held: dict[str, int], **shift: Any) -> S.Entry:
    entry = S.Entry("id", "p", None, "offline", None)
    entry.held = dict(held)
    for key, seconds in shift.items():  # an earlier upload: its "found at" time moved back by this host's clock
        name = next(k for k in held if k.endswith(key))
        entry.held[name] -= seconds
    return entry


def test_a_heartbeat_a_day_ahead_that_does_not_move_lets_the_steps_go(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _killed(root, DAY)
    hold, held, notes = _hold(root, None)
    assert hold == 4, notes  # the first upload cannot tell: held, and said why
    note = next(n for n in notes if "held back" in n)
    assert "ahead of this host's clock, further than the 10 minute(s) this host's clock can read" in note, note
    # Found there again, 11 minutes (by this host's clock) after the upload that held it: the writer is gone.
    hold, held2, notes = _hold(root, _entry(held, heartbeat_seen_s=11 * 60))
    assert hold is None and held2 == {}, notes
    assert any("has not moved in the 11 minute(s)" in n and "(killed?)" in n for n in notes), notes


def test_uploads_close_together_keep_holding_and_keep_the_first_sighting(tmp_path: Path) -> None:
    """Five minutes apart, it may be a live writer: held again, and the time first found is kept (uploads every
    few minutes would otherwise never see it unmoved long enough)."""
    root = tmp_path / "run"
    _killed(root, DAY)
    _, held, _ = _hold(root, None)
    entry = _entry(held, heartbeat_seen_s=5 * 60)
    hold, again, notes = _hold(root, entry)
    assert hold == 4 and again == entry.held, notes
    hold, _, notes = _hold(root, _entry(again, heartbeat_seen_s=6 * 60))  # 11 minutes in all
    assert hold is None, notes


def test_a_heartbeat_far_ahead_that_moves_is_a_live_writer(tmp_path: Path) -> None:
    root = tmp_path / "run"
    state = _killed(root, DAY)
    _, held, _ = _hold(root, None)
    t = time.time() + DAY + 30  # touched since (a live writer on a storage clock a day ahead)
    os.utime(state, (t, t))
    hold, again, notes = _hold(root, _entry(held, heartbeat_seen_s=60 * 60))
    assert hold == 4, notes
    seen = next(k for k in again if k.endswith("#heartbeat_seen_s"))
    assert abs(again[seen] - time.time()) < 60  # watched afresh from this upload


def test_a_heartbeat_a_little_ahead_is_still_read_as_now(tmp_path: Path) -> None:
    """Within the grace (a storage clock five minutes ahead), as before: held, nothing watched, never gone by
    staying unmoved."""
    root = tmp_path / "run"
    _killed(root, 5 * 60)
    hold, held, notes = _hold(root, None)
    assert hold == 4 and not any("#" in k for k in held), held
    assert not any("further than" in n for n in notes), notes
    entry = S.Entry("id", "p", None, "offline", None)
    entry.held = held
    hold, _, notes = _hold(root, entry)
    assert hold == 4 and not any("killed?" in n for n in notes), notes
