"""``upload_wandb``: back-fill a W&B run from a runlog run, idempotently and resumably.

One W&B run per source run (a deterministic id), one ``run.log`` call per step with an explicit ``step=``,
``trainer/step`` as every chart's x axis. The state file (``runlog.sinks.state``) makes a second upload
send nothing, a grown run send only its new steps, and a killed upload resume without duplicates or gaps:
on resume runlog asks W&B where the run ends (online: the resumed run's starting step; offline: the last
step of the interrupted session's ``.wandb`` log), because W&B ignores a step lower than one it already has
and an offline log would simply hold it twice. ``wandb`` is imported here only, inside the functions.
"""

from __future__ import annotations

import contextlib
import gc
import json
import netrc
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import RunlogError, UsageError, install_hint
from ..process import TWEAKS, raise_if_interrupted
from ..run import Run, open_run
from ..storage import ObjectPath
from ..textsafe import visible
from . import keys as K
from . import plan as P
from . import state as S

MODES = ("online", "offline")
SAVE_EVERY_S = 0.25  # how often the state is saved during an upload (and always at the end); docs/wandb.md says it
# An open writer whose state file has a heartbeat (``heartbeat_s``: touched that often while it is open) is taken
# as killed once the file is this much older than this host's clock, or ten beats, whichever is longer: far above
# the period, so that a late beat, a busy file server or a storage clock a few minutes behind never sends a live
# writer's open step (W&B would lock the rest of that step out for good).
HEARTBEAT_GRACE_S = 600.0
# Kept with a hold beside a writer state file's path (``Entry.held``), for a heartbeat too far ahead of this host's
# clock to be read (``_far_ahead``): its time (ns), and when an upload first found it at that time (unix s here).
_BEAT_NS, _BEAT_SEEN = "#heartbeat_ns", "#heartbeat_seen_s"
INSTALL_HINT = install_hint("wandb")
_USER_ID_OK = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UploadError(RunlogError):
    """W&B refused or failed the upload (exit code 1)."""


@dataclass
class UploadResult:
    """What an upload (or a dry run) did; ``to_dict`` is the JSON the CLI prints with ``--format json``."""

    run_id: str
    project: str
    entity: str | None
    mode: str
    state_path: str
    dry_run: bool = False
    up_to_date: bool = False
    after: int | None = None  # steps up to this one were already in W&B
    steps_total: int = 0
    steps: int = 0
    first_step: int | None = None
    last_step: int | None = None
    keys: list[str] = field(default_factory=list)
    histograms: int = 0
    tables: int = 0
    table_rows: int = 0
    cut_cells: int = 0
    bytes: int = 0
    max_row_bytes: int = 0
    wandb_file: str | None = None
    url: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def count(self, p: P.StepPayload) -> None:
        self.steps += 1
        self.first_step = p.step if self.first_step is None else self.first_step
        self.last_step = p.step
        self.histograms += len(p.hists)
        self.tables += len(p.tables)
        self.table_rows += sum(len(t.rows) for t in p.tables.values())
        self.cut_cells += sum(t.cut_cells for t in p.tables.values())
        row = p.row_bytes()
        self.bytes += row + sum(t.nbytes() for t in p.tables.values())
        self.max_row_bytes = max(self.max_row_bytes, row)


def upload_wandb(
    source: str | os.PathLike[str] | Run,
    *,
    project: str,
    entity: str | None = None,
    name: str | None = None,
    run_id: str | None = None,
    mode: str | None = None,
    wandb_dir: str | os.PathLike[str] | None = None,
    options: P.PlanOptions | None = None,
    dry_run: bool = False,
    state_path: str | os.PathLike[str] | None = None,
    layout: str | None = None,
    on_step: Callable[[UploadResult, int], None] | None = None,
    on_start: Callable[[UploadResult, int], None] | None = None,
    freeze_gc: bool | None = None,
) -> UploadResult:
    """Upload ``source`` to W&B (or, with ``dry_run``, only say what would be uploaded, without W&B).

    ``mode`` defaults to ``$WANDB_MODE``, else ``online``. ``on_start(result, steps_to_send)`` and
    ``on_step(result, step)`` let a caller draw progress. ``freeze_gc``: keep the objects alive at the start
    out of the cyclic GC's reach while uploading (``gc.freeze``, undone at the end); by default only where the
    program opted in (``runlog.process``: the command line does), never behind a library caller's back.
    """
    run = source if isinstance(source, Run) else open_run(source, layout=layout)
    mode, disabled = _mode(mode)
    dry_run = dry_run or disabled
    _check_project(project)
    if run_id is not None and not _USER_ID_OK.match(run_id):
        raise UsageError(f"--run-id {run_id!r}: W&B run ids are 1-64 letters, digits, '-', '_' or '.'")
    wdir = str(Path(wandb_dir or os.environ.get("WANDB_DIR") or ".").resolve())
    spath = Path(state_path) if state_path else S.default_state_path(run)
    state = S.StateFile(spath)
    entry_dir = wdir if mode == "offline" else None
    memo: S.Hashes = {}  # each file hashed once by the source check, the fingerprint and the notes
    rid, source_path, id_notes = _run_id(run, run_id, state, spath, mode, entity, project, entry_dir, memo)
    origin = "--run-id" if run_id is not None else "the manifest's run_id" if source_path is None else None
    source = source_path or str(run.root.resolve())
    dest = S.destination(mode, entity, project, rid, wdir)
    entry = state.get(dest)
    id_notes += _check_source(entry, run, source, spath, rid, project, entity, mode, origin, memo)
    fresh = entry is None or entry.last_step is None  # this state has sent nothing to the destination
    if fresh and mode == "offline":
        mine = Path(entry.session_file).parent.name if entry is not None and entry.session_file else None
        id_notes += _earlier_offline(wdir, rid, origin, mine)
    options = options or P.PlanOptions()
    options.check()
    _check_options(entry, options, rid, project, entity, mode)
    result = UploadResult(rid, project, entity, "disabled" if disabled else mode, str(spath), dry_run=dry_run)
    if disabled:
        result.notes.append("WANDB_MODE=disabled in the environment: W&B is off, so this is a dry run (pass --mode)")
    result.notes += id_notes
    result.notes += _offline_log_gone(entry)
    # The hashes the entry holds of this very run's files are kept for the files unchanged since (each is read once
    # over the uploads): the entry's source is this run, or the state is the run's own (it moved with the run).
    known = entry.fingerprint if entry is not None and (entry.source == source or _own_state(run, spath)) else None
    fp = S.fingerprint(run, known, memo)
    torn = S.torn_scalars(run)
    if entry is not None and entry.complete and S.unchanged(entry.fingerprint, fp) and not entry.held:
        result.up_to_date, result.after = True, entry.last_step
        if (entry.fingerprint != fp or entry.source != source) and not dry_run:
            # Recorded now, so that the next upload reads no file again: the hashes of an entry written before
            # runlog hashed Parquet files (``same_files`` tells another run's files by them), the modification
            # times of a copy, the path of a run moved. A state that cannot be written is left as it is.
            entry.fingerprint, entry.source = fp, source
            with contextlib.suppress(UsageError):
                state.put(dest, entry)
        return result
    if entry is not None:
        # The fingerprint is of the files as the last complete session saw them, up to the step it reached
        # (after a killed session, last_step is further on: the files of those steps are not "new").
        covered = entry.fingerprint_step
        if covered is None and entry.complete:  # a state written before fingerprint_step was kept
            covered = entry.last_step
        if entry.fingerprint and covered is not None:
            result.notes += S.changed_history(run, entry.fingerprint, covered, memo)
    # The key part of each split as the destination's steps were logged with (a split that appears later never
    # takes another's keys), and what each key holds (none changes meaning or type partway).
    if entry is not None:
        plan = P.build_plan(run, options, entry.split_parts(), rid, entry.decisions())
    else:
        plan = P.build_plan(run, options, None, rid)
    plan_left = {f.path for f in run.files if not f.readable}  # the files the plan's numbers leave out
    result.steps_total = len(plan.steps)
    if not plan.steps and not dry_run:
        # Nothing to log: starting W&B would leave an empty run on the dashboard (online) or to sync (offline).
        result.notes += _plan_notes(plan, plan_left, None)
        return result
    hold, held, hold_notes = _hold_torn(plan, torn, entry)
    open_hold, open_held, open_notes = _hold_open(plan, run, entry)
    if open_hold is not None:
        hold = open_hold if hold is None else min(hold, open_hold)
    held.update(open_held)
    result.notes += hold_notes + open_notes
    last = entry.last_step if entry is not None else None
    if (
        not dry_run
        and (entry.complete if entry is not None else hold is not None)
        and not any((last is None or s > last) and (hold is None or s < hold) for s in plan.steps)
    ):
        # Files changed but no step is new (or the new ones are held back): nothing W&B would keep (it keeps a
        # step's first row), so no session (an empty offline run to sync); the changes are in the notes, said once.
        entry = entry or S.Entry(rid, project, entity, mode, entry_dir)
        entry.source = source
        entry.complete, entry.fingerprint, entry.fingerprint_step, entry.held = True, fp, last, held
        state.put(dest, entry)
        result.after = last
        result.notes += _plan_notes(plan, plan_left, result.after)
        return result
    if dry_run:
        # Where the upload would resume: offline, as it does (after an interrupted session, that session's own
        # log tells); online only the server knows (the state's last step: W&B may hold one step more). A log that
        # cannot be read here (no wandb: a dry run does not need it) leaves the state's last step, said.
        result.after = last
        if entry is not None and mode == "offline":
            after, unread = _offline_resume_point(entry)
            if unread is None:
                result.after = after
            else:
                result.notes.append(
                    f"the interrupted upload's offline log {entry.session_file} could not be read ({unread}): the "
                    f"steps named are those after the state's last step, {_step_text(last)}; the upload reads that "
                    "log with W&B's reader and resumes after its last step, which may be another (where it cannot "
                    f"read it either, after {_step_text(entry.session_after)}, where that session began)"
                )
        keys: set[str] = set()
        for p in plan.payloads(result.after, hold):
            result.count(p)
            keys.update(p.values, p.hists, p.tables)
        result.keys = sorted(keys)
        result.notes += _plan_notes(plan, plan_left, result.after)
        return result
    # The plan (every step's values) and runlog's own modules live until the end: frozen, the cyclic GC
    # stops re-scanning them on each full collection during W&B's import and the per-step log calls.
    with _gc_frozen(TWEAKS.freeze_gc if freeze_gc is None else freeze_gc):
        wandb = _import_wandb()
        if mode == "online":
            _check_credentials()
        _check_wandb_dir(wdir, wandb_dir)
        entry = entry or S.Entry(rid, project, entity, mode, entry_dir)
        entry.source = source
        entry.options = S.options_record(options)  # the steps this session logs are logged with these
        entry.splits = S.splits_record(plan.split_parts)  # and the key part of each split
        entry.record(plan.decisions(hold))  # and what the keys of the steps it may send hold
        state.check_writable()  # before W&B starts: a state that cannot be written leaves no session behind
        wb = _init(wandb, run, rid, project, entity, name, mode, wdir)
        try:
            after, unread = _resume_point(wb, entry, mode)
            result.after = after
            if unread is not None:
                result.notes.append(
                    f"the interrupted upload's offline log {entry.session_file} could not be read ({unread}): resumed "
                    f"after {_step_text(after)}, where that session began; the steps it logged are logged again "
                    "(sync its folder before this one: W&B keeps a step's first row)"
                )
            if fresh and mode == "online" and after is not None:
                result.notes.append(
                    f"W&B run {rid} already held steps up to {after}, which this state file did not send"
                    f"{' (its id is ' + origin + ')' if origin else ''}: another run with the same id, or an upload "
                    f"with another --state? This run's steps up to {after} are not sent (W&B drops them); to upload it "
                    "whole into a W&B run of its own, pass --run-id ID"
                )
            result.url = getattr(wb, "url", None) if mode == "online" else None
            if mode == "offline":
                result.wandb_file = str(Path(wb.dir).parent / f"run-{rid}.wandb")
            entry.session_file, entry.session_after, entry.last_step, entry.complete = (
                result.wandb_file,
                after,
                after,
                False,
            )
            state.put(dest, entry)
            wb.define_metric(plan.step_key)
            wb.define_metric("*", step_metric=plan.step_key)
            if on_start is not None:
                on_start(
                    result, sum(1 for s in plan.steps if (after is None or s > after) and (hold is None or s < hold))
                )
            _log_steps(wandb, wb, plan.payloads(after, hold), result, state, dest, entry, on_step)
        except BaseException:
            # Ctrl-C or a W&B failure: what was logged is recorded (the state only names returned steps), and
            # the session is closed so that its log is whole; the next upload resumes after entry.last_step.
            # The session is closed even when the state cannot be written now (its own error is raised).
            try:
                state.put(dest, entry)
            finally:
                _finish(wb, exit_code=1)
            raise
        _finish(wb, exit_code=0)
        entry.complete, entry.fingerprint, entry.fingerprint_step = True, fp, entry.last_step
        entry.held = held
        state.put(dest, entry)
        result.notes += _plan_notes(plan, plan_left, result.after)
        return result


def _check_options(
    entry: S.Entry | None, options: P.PlanOptions, rid: str, project: str, entity: str | None, mode: str
) -> None:
    """Refuse an upload whose plan options differ from those the destination's steps were logged with: W&B
    would hold the run logged two ways (another ``--prefix`` splits every per-role series at the first new
    step; other ``--tables-every`` or ``--max-samples-per-step`` change the tables of the new steps only), and a
    run already complete would be called up to date with the new options ignored. An entry that logged nothing
    yet, or that was written before runlog kept the options, accepts any."""
    if entry is None or entry.last_step is None:
        return
    changed = S.changed_option(entry.options, S.options_record(options))
    if changed is None:
        return
    flag, old, new = changed
    where = f"{entity + '/' if entity else ''}{project}/{rid} ({mode})"
    if flag == "--metrics/--no-metrics":
        old_text, new_text = ("--metrics" if v else "--no-metrics" for v in (old, new))
    else:
        old_text, new_text = f"{flag} {_shown(old)}", f"{flag} {_shown(new)}"
    raise UsageError(
        f"{where} holds steps up to {entry.last_step} logged with {old_text}; this upload asks {new_text}, which "
        f"would log the rest of the run another way: upload with {old_text}, or into a new W&B run with --run-id ID"
    )


def _shown(v: Any) -> str:
    """An option's value in a message: as typed (``debate``, ``16``), escaped."""
    return visible(v if isinstance(v, str) else json.dumps(v), keep_newlines=False)


def _mode(mode: str | None) -> tuple[str, bool]:
    """The W&B mode: ``--mode`` (online or offline), else ``$WANDB_MODE`` (also W&B's older spellings: ``dryrun``
    is offline, ``run`` online), else online; and whether ``$WANDB_MODE`` is ``disabled`` (as W&B itself does
    then, nothing is sent: the upload is a dry run)."""
    if mode is not None:
        if mode.lower() not in MODES:
            raise UsageError(f"--mode {mode!r}: expected online or offline")
        return mode.lower(), False
    env = os.environ.get("WANDB_MODE")
    if not env:
        return "online", False
    value = env.strip().lower()
    if value == "disabled":
        return "offline", True
    value = {"dryrun": "offline", "run": "online"}.get(value, value)
    if value not in MODES:
        raise UsageError(
            f"WANDB_MODE={visible(env)!r} in the environment: expected online or offline (or disabled); "
            "unset it or pass --mode"
        )
    return value, False


# The characters W&B refuses in a project name (its own check, run only once a session is starting), and its
# longest project name.
_PROJECT_BAD = "/\\#?%:"
_PROJECT_MAX = 128


def _check_project(project: str) -> None:
    """W&B's rules for a project name, checked before anything starts (a usage error, not a W&B failure)."""
    shown = visible(project if len(project) <= 60 else project[:60] + "...", keep_newlines=False)
    if not project or "/" in project:
        raise UsageError(f"--project {shown!r}: a W&B project name (use --entity for the team)")
    bad = sorted({c for c in project if c in _PROJECT_BAD})
    if bad:
        raise UsageError(f"--project {shown!r}: W&B refuses {' '.join(bad)} in a project name")
    if len(project) > _PROJECT_MAX:
        raise UsageError(f"--project {shown!r}: {len(project)} characters; W&B allows at most {_PROJECT_MAX}")


def _check_wandb_dir(wdir: str, given: Any) -> None:
    """The W&B directory exists (made here) and is a directory; otherwise one line naming where it came from."""
    what = "--wandb-dir" if given else "WANDB_DIR" if os.environ.get("WANDB_DIR") else "the W&B directory"
    path = Path(wdir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {wdir}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {wdir}: cannot create it ({exc.strerror})") from None


def _run_id(
    run: Run,
    given: str | None,
    state: S.StateFile,
    spath: Path,
    mode: str,
    entity: str | None,
    project: str,
    entry_dir: str | None,
    memo: S.Hashes | None = None,
) -> tuple[str, str | None, list[str]]:
    """The W&B run id, the run's path where the id is derived from it (recorded in the state), and a note.

    ``--run-id``, else the manifest's ``run_id``, else the derived id this state file already records for this
    run and destination (``StateFile.recorded_run_id``: a run keeps its W&B run whatever files it gains, and a
    run uploaded by an earlier runlog, which derived ids differently, goes on into the same W&B run), else the id
    of the same files uploaded from another path, moved here (``_moved_or_copied``), else ``plan.path_run_id``."""
    if given is not None:
        return given, None, []
    manifest = P.manifest_run_id(run)
    if manifest is not None:
        return manifest, None, []
    source = str(run.root.resolve())
    derived = P.path_run_id(run)
    recorded = state.recorded_run_id(source, [f.path for f in run.files], mode, entity, project, entry_dir)
    if recorded is None:
        return _moved_or_copied(run, state, spath, source, derived, mode, entity, project, entry_dir, memo)
    rid, legacy = recorded
    notes = []
    if legacy and rid != derived:
        notes.append(
            f"run id {rid} kept from {spath}: an earlier runlog derived this run's id from other file names "
            "(so a growing run could change W&B run); it stays this run's id here"
        )
    return rid, source, notes


def _moved_or_copied(
    run: Run,
    state: S.StateFile,
    spath: Path,
    source: str,
    derived: str,
    mode: str,
    entity: str | None,
    project: str,
    entry_dir: str | None,
    memo: S.Hashes | None = None,
) -> tuple[str, str | None, list[str]]:
    """The run id of a run that this state records as uploaded from another path (``uploaded_from_elsewhere``),
    with the note saying so; else the id derived from its path. The derived id hashes the path, so without this a
    run moved or renamed (scratch to archive, its state file going with it) went into a second W&B run, every
    step sent again, unsaid. Moved (that path gone, naming this folder, or holding another run now: an output
    folder reused after the run was moved away): it goes on into the recorded W&B run. A copy (that path still
    holding the files recorded there): a W&B run of its own, as its path derives, said with how to add to the
    other."""
    found = state.uploaded_from_elsewhere(run, source, mode, entity, project, entry_dir, memo)
    if found is None:
        return derived, source, []
    rid, old, moved = found
    if moved is None:
        copy = (
            f"{spath} records these files uploaded from {old} into W&B run {rid}, and {old} is still there: this "
            f"copy goes into a W&B run of its own, {derived} (--run-id {rid} adds it to that one instead)"
        )
        return derived, source, [copy]
    if not _own_state(run, spath):
        return rid, source, []  # a state file kept elsewhere: ``_check_source`` says the run moved or copied
    why = {
        "gone": "which is gone",
        "this folder": "which is this folder",
        "other files": "which holds other files now (another run in that folder)",
    }[moved]
    note = (
        f"run id {rid} kept from {spath}: this run was uploaded from {old}, {why}; these are the files uploaded "
        "from there, moved or renamed, so it goes on into the same W&B run"
    )
    return rid, source, [note]


def _check_source(
    entry: S.Entry | None,
    run: Run,
    source: str,
    spath: Path,
    rid: str,
    project: str,
    entity: str | None,
    mode: str,
    origin: str | None,
    memo: S.Hashes | None = None,
) -> list[str]:
    """Refuse to upload a run into a destination whose steps were sent from another run (two runs whose manifests
    share a ``run_id``: a template config, seeds launched with one ``run_id=``): its steps would be taken for
    the first run's, already sent or "changed", and none of them would reach W&B. A run moved or copied (most
    files recorded then still here, the same or grown: ``state.compare_files``; one rewritten since is said by
    ``state.changed_history``) goes on, with a note. A state written before runlog hashed Parquet files cannot
    tell a copy that set new modification times from another run: refused, saying so and how to go on. An entry
    that sent nothing yet, or written before runlog recorded every source, is not compared."""
    if entry is None or entry.source is None or entry.source == source or entry.last_step is None:
        return []
    if _own_state(run, spath):
        # The state file is the run's own (the default, inside the run folder): it moved with the run, and no
        # other run's steps are in it (one reached by another path, ``/scratch`` and ``/mnt/scratch``, too).
        return []
    where = f"{entity + '/' if entity else ''}{project}/{rid} ({mode})"
    match = S.compare_files(run, entry.fingerprint, memo)
    held = f"{spath}: {where} holds steps up to {entry.last_step} sent from {entry.source}"
    if match.same_run and (match.differ or match.undecided) and _left_as_it_was(entry):
        # Not moved: the run the steps were sent from is still where it was, as it was, and this one holds other
        # files besides its copies (a fork resumed from a checkpoint copied aside, its later steps its own).
        others = match.differ + match.undecided
        raise UsageError(
            f"{held}, which still holds them as they were; {source} holds {len(match.same)} of its files and "
            f"{len(others)} others ({others[0]}...): a copy of it that went on as another run (a fork), not the "
            "run moved: upload it into a W&B run of its own with --run-id ID"
        )
    if match.same_run:
        changed = len(match.differ) + len(match.undecided)
        since = f"; {changed} of its {changed + len(match.same)} files changed since" if changed else ""
        return [
            f"{where} was uploaded from {entry.source}; this run at {source} holds the same files (moved or "
            f"copied{since}): it goes on into the same W&B run"
        ]
    if match.undecided and len(match.same) + len(match.undecided) > len(match.differ):
        raise UsageError(
            f"{held}; this state was written before runlog hashed Parquet files, so it tells them by size and "
            f"modification time, and {len(match.undecided)} of them have other times here (a copy or an archive "
            f"that did not keep them, or another run): if {source} is that run, upload it once from "
            f"{entry.source} where it still is (the state then records the hashes), or with a new --state FILE "
            "(W&B keeps the steps it has); if it is another run, into a W&B run of its own with --run-id ID"
        )
    whose = f" ({origin})" if origin else ""
    why = f"{match.text_differ[0]} begins otherwise" if match.text_differ else "most files recorded there differ"
    raise UsageError(
        f"{held}, another run than {source} with the same W&B run id{whose} ({why}): upload this run into a W&B run "
        f"of its own with --run-id ID (another --state alone would still put both in run {rid})"
    )


def _left_as_it_was(entry: S.Entry) -> bool:
    """Whether the local folder the entry's steps were sent from still holds its recorded files as they were (a
    copy made elsewhere since, or a fork of it: not a move)."""
    src = entry.source
    if src is None or "://" in src or not os.path.isdir(src):
        return False
    try:
        there = open_run(src)
    except (RunlogError, OSError):
        return False
    return S._holds(src, entry.fingerprint, there)


def _own_state(run: Run, spath: Path) -> bool:
    """Whether the state file is inside the (local) run folder: the run's own, moved or copied with it."""
    return not isinstance(run.root, ObjectPath) and spath.resolve().is_relative_to(Path(run.root).resolve())


# The folder W&B writes a session into (``offline-run-20260101_120000-<id>``, ``run-...`` online).
_SESSION_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>.+)$")


def _earlier_offline(wdir: str, rid: str, origin: str | None, mine: str | None = None) -> list[str]:
    """A note when the W&B directory already holds a session of run ``rid`` that this state file did not write:
    another run with the same id (two seeds whose manifests share a ``run_id``, each with its own state) would
    become one W&B run (``wandb sync`` merges them; online the second is resumed into the first, and W&B drops
    its steps). Only a note: the same run uploaded again after its state was removed looks the same. ``mine``: the
    folder of this state's own interrupted session, not another's."""
    try:
        found = sorted(
            d.name
            for d in (Path(wdir) / "wandb").iterdir()
            if d.is_dir() and d.name != mine and (m := _SESSION_DIR.match(d.name)) and m.group("id") == rid
        )
    except OSError:
        return []
    if not found:
        return []
    return [
        f"{Path(wdir) / 'wandb'} already holds {len(found)} session(s) of W&B run {rid} (first: {found[0]}) that "
        f"this state file did not write{' (the id is ' + origin + ')' if origin else ''}: if they are another "
        "run's (a seed launched with the same run_id), `wandb sync` makes the two one W&B run; upload this one with "
        "--run-id ID for a W&B run of its own"
    ]


def _hold_torn(
    plan: P.Plan, torn: dict[str, tuple[int, int | None]], entry: S.Entry | None
) -> tuple[int | None, dict[str, int], list[str]]:
    """The first step held back, the files to record as holding it, and the notes.

    A scalars file whose last line is incomplete is a writer still writing it: the step it is for is held
    back with every later one (W&B drops a step lower than one it has, so its scalars would never get in),
    and the next upload sends them. If that upload finds the same line still incomplete (the file unchanged:
    the writer stopped), it sends them without it. The line's step is read from its written part, else it is
    taken to be the run's last step; a line for a step already uploaded holds nothing (its completion is said
    by ``state.changed_history``)."""
    if not torn or not plan.steps:
        return None, {}, []
    before = entry.held if entry is not None else {}
    hold: int | None = None
    held: dict[str, int] = {}
    notes = []
    done = entry.last_step if entry is not None else None
    for path, (size, step) in sorted(torn.items()):
        at = step if step is not None else plan.steps[-1]
        if done is not None and at <= done:  # W&B is past it already: holding would only stop the new steps
            continue
        if before.get(path) == size:
            notes.append(
                f"{path}: its last line is still incomplete, as at the last upload (the writer stopped?): "
                f"step {at} and later are sent without it"
            )
            continue
        held[path] = size
        hold = at if hold is None else min(hold, at)
    if hold is not None:
        notes.append(
            f"{', '.join(sorted(held))}: last line incomplete (still being written?): step(s) from {hold} on are "
            "held back for the next upload (sent then, without the line if it is still incomplete)"
        )
    return hold, held, notes


def _hold_open(plan: P.Plan, run: Run, entry: S.Entry | None) -> tuple[int | None, dict[str, int], list[str]]:
    """The first step held back because a process's writer is still open, the state files to record as holding
    it (with the bytes of that process's files), and the notes.

    A process whose writer is open (``Run.end_state``, as ``inspect`` tells it: its state file says ``open``, or
    its lock is held) may still add to a step: W&B drops a step lower than one it has, so the first step it may
    still add to is held back with every later one (``_open_from``), and a later upload sends them once the
    writer has moved on or closed. A writer known to be gone holds nothing (its steps are sent, with a note):
    ``_writer_gone``. A run without writer state files (other layouts) holds nothing back."""
    end = run.end_state
    if not end.known or not plan.steps:
        return None, {}, []
    before = entry.held if entry is not None else {}
    done = entry.last_step if entry is not None else None
    hold: int | None = None
    held: dict[str, int] = {}
    said: list[str] = []
    notes = []
    for p, st in sorted(end.states.items()):
        alive = p in end.alive
        if st.closed or (st.state != "open" and not alive):
            continue
        samples = end.holdings.samples.get(p, {})
        at, why = _open_from(p, samples, end.holdings.scalars.get(p), plan.steps[-1])
        if done is not None:
            at = max(at, done + 1)  # W&B is past the steps before: holding them back would send nothing more
        if at > plan.steps[-1]:
            continue
        mine = [f for f in run.files if f.process == p]
        size = sum(f.bytes or 0 for f in mine)
        beat = None if alive else _heartbeat(run, p)
        # A heartbeat further ahead of this host's clock than the grace is watched instead of read: its time and
        # when an upload first found it there (this host's clock) are kept with the hold (``_far_ahead``).
        far = _far_ahead(beat)
        still: int | None = None
        if far is not None and before.get(st.path + _BEAT_NS) == far:
            still = before.get(st.path + _BEAT_SEEN)
        gone = None if alive else _writer_gone(run, p, mine, before.get(st.path) == size, beat, still)
        if gone is not None:
            notes.append(
                f"{st.path}: process {p} has not closed its writer and {gone} (killed?): step {at} and later are "
                "sent as they are"
            )
            continue
        held[st.path] = size
        if far is not None:
            held[st.path + _BEAT_NS] = far
            held[st.path + _BEAT_SEEN] = still if still is not None else int(time.time())
        hold = at if hold is None else min(hold, at)
        if alive:
            said.append(f"process {p} still writing (its writer is open): {why}")
        else:
            age = f"; {_beat_age(beat)}" if beat is not None and beat[1] is not None else ""
            said.append(f"process {p} not closed (its state file says open: still writing, or killed{age}): {why}")
    if hold is None:
        return None, {}, notes
    steps = [s for s in plan.steps if s >= hold]
    notes.append(
        f"{'; '.join(said)}: step(s) {S.steps_text(steps)} held back (W&B drops a step lower than one it has, so a "
        "part of a step written after it is sent would never get in); a later upload sends them once the writer "
        "has moved on or closed"
    )
    return hold, held, notes


def _open_from(process: int, samples: dict[str, int], scalars: int | None, run_last: int) -> tuple[int, str]:
    """The first step process ``process`` may still add to, and what may come (for the note), from the last step
    of its sample files in each split (``samples``: split -> step) and of its scalars lines (``scalars``).

    What the writer's contract (docs/writer.md) leaves open, each stream going forward: a step's samples file is
    written whole once a later step of its split is logged (or on ``flush``/``close``), and logging rows for it
    again is a ``StepOrderError``, so a split's samples may still come from the step after its last file on (rows
    of the next step may be in the writer's memory, a step every tenth step may come at any later step). The seal
    is per split: an eval split whose last file is step 0 may still log step 5 after the train split's file of
    step 5, so the split with the lowest last file holds. A step's scalars lines are appended (train, then eval
    metrics, in two calls), so the scalars may still come from the last line's step on. Nothing orders the
    streams (a trainer may log a step's scalars before its samples, or pipeline rollouts ahead of the training
    metrics), so the lowest of them holds. A process with sample files and no scalars line yet may still log its
    first line for its last samples step; one that has written nothing holds from the run's last step. A split
    the process has not written yet may come at any step: nothing on disk tells of it."""
    if not samples and scalars is None:
        return run_last, f"it has written nothing yet (its first step may be the run's last, {run_last})"
    if not samples:
        assert scalars is not None
        return scalars, f"its scalars of step {scalars} may still come (and samples, none written yet)"
    last = min(samples.values())
    after = last + 1
    # The split(s) that hold, named where the process writes more than one: "its eval samples".
    holding = sorted(s for s, v in samples.items() if v == last)
    names = ", ".join(holding) + " " if len(samples) > 1 else ""
    stream = f"its {names}samples"
    of = f"its last {names}samples file{'s' if len(holding) > 1 else ''}"
    of_is = f"{of} {'are' if len(holding) > 1 else 'is'}"
    if scalars is None:
        top = max(samples.values())
        if after <= top:
            why = f"{stream} of step {after} or later may still come ({of_is} step {last}'s; no scalars line yet)"
            return after, why
        return top, f"its scalars of step {top} may still come (no scalars line yet)"
    if scalars < last:
        return scalars, (
            f"its scalars of step {scalars} or later may still come (its last scalars line is of step {scalars}, "
            f"{of} of step {last}: nothing orders the two)"
        )
    if scalars < after:
        return scalars, f"its scalars of step {scalars} may still come (its last scalars line)"
    if after < scalars:
        return after, f"{stream} of step {after} or later may still come ({of_is} step {last}'s)"
    return scalars, f"its scalars and {stream[4:]} of step {scalars} may still come"


def _heartbeat(run: Run, process: int) -> tuple[float, float | None] | None:
    """``(period, modification time)`` of the heartbeat of ``process``'s open writer (its state file, touched
    every ``heartbeat_s`` seconds while it is open: ``writer.run_writer.HEARTBEAT_S``), or None where its state
    file has none (written by an earlier runlog, or by a writer that closed since). The time is the storage's
    (None where the listing does not tell it)."""
    found = run.ctx.state_files.get(process)
    if found is None:
        return None
    _, path, stamp = found
    try:
        if isinstance(path, ObjectPath):
            data, mtime = path.read_bytes(), _remote_mtime(stamp)
        else:
            with open(path, "rb") as fh:  # the bytes and the time of one version (the writer replaces it whole)
                mtime = os.fstat(fh.fileno()).st_mtime
                data = fh.read()
        state = json.loads(data)
    except (OSError, ValueError):
        return None
    period = state.get("heartbeat_s") if isinstance(state, dict) and state.get("state") == "open" else None
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 0:
        return None
    return float(period), mtime


def _beat_age(beat: tuple[float, float | None]) -> str:
    """``its heartbeat 3 minute(s) old`` (or ahead of this host's clock: a storage clock ahead; further ahead
    than the grace, said as not read by it: ``_writer_gone``)."""
    assert beat[1] is not None
    age = time.time() - beat[1]
    if age < 0:
        text = f"its heartbeat {_duration(-age)} ahead of this host's clock"
        if _far_ahead(beat) is not None:
            grace = _duration(_grace(beat[0]))
            text += (
                f", further than the {grace} this host's clock can read: taken as killed once it has not moved "
                f"for {grace} between uploads"
            )
        return text
    return f"its heartbeat {_duration(age)} old"


def _grace(period: float) -> float:
    """How old by this host's clock (or how far ahead of it) a heartbeat touched every ``period`` s may be and
    still be read as a live writer's."""
    return max(HEARTBEAT_GRACE_S, 10 * period)


def _far_ahead(beat: tuple[float, float | None] | None) -> int | None:
    """The heartbeat's time (ns) where it is further ahead of this host's clock than the grace, else None.

    A clock a few minutes apart is common (the grace covers it both ways), but further ahead nothing on this
    host reads the heartbeat: a storage clock hours ahead, or a copy of the run that kept a date to come (a killed
    writer's state would hold its last steps back until this host's clock passed it, for ever for a date years
    away). There, whether the heartbeat moves tells instead: a live writer touches it every few seconds, so one
    found at the same time by uploads more than the grace apart (this host's clock, never the storage's) is gone."""
    if beat is None or beat[1] is None or beat[1] - time.time() <= _grace(beat[0]):
        return None
    return round(beat[1] * 1e9)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} minute(s)"


def _writer_gone(
    run: Run,
    process: int,
    files: list[Any],
    unchanged: bool,
    beat: tuple[float, float | None] | None = None,
    still_since: int | None = None,
) -> str | None:
    """Why a process whose state file says open, holding no lock now, is taken as gone (killed), or None if it may
    still be writing: its lock file is there and free (a closing writer removes it; on a file system without
    ``flock`` it stays unlocked, and nothing is known).

    Else, where its writer keeps a heartbeat (``beat``: its state file touched every few seconds while it is
    open), by the heartbeat alone: gone once it is older than ``HEARTBEAT_GRACE_S`` (or ten beats) by this
    host's clock. A heartbeat ahead of this host's clock by up to the grace is a live writer (a storage clock a
    little ahead). One further ahead cannot be read by this host's clock (``_far_ahead``): gone once uploads found
    it unmoved for more than the grace (``still_since``: when, by this host's clock, an upload first found it at
    the time it has now). Not the data files' age, nor whether they changed since the last upload: a step whose
    training phase, between its samples and its scalars, is longer than the grace or than the time between two
    uploads writes nothing meanwhile.

    A writer without heartbeat (an earlier runlog): its files are older than ``END_GRACE_S`` or did not change
    since the upload that held its steps (``unchanged``)."""
    from ..ends import END_GRACE_S, mtime_of

    if not isinstance(run.root, ObjectPath):
        from ..locks import lock_state

        if lock_state(Path(run.root), process) == "free":
            return "its lock is not held (a closing writer removes its lock file)"
    if beat is not None:
        period, at = beat
        if _far_ahead(beat) is not None:
            still = None if still_since is None else time.time() - still_since
            if still is None or still <= _grace(period):
                return None
            return (
                f"its heartbeat {_duration(at - time.time() if at is not None else 0)} ahead of this host's clock "
                f"(further than it can read) has not moved in the {_duration(still)} since an upload found it there "
                f"(touched every {period:g} s while it is open)"
            )
        if at is None or time.time() - at <= _grace(period):
            return None
        return f"{_beat_age(beat)} (touched every {period:g} s while it is open)"
    if unchanged:
        return "wrote nothing since the last upload"
    times = [t for f in files if (t := mtime_of(f.stamp) or _remote_mtime(f.stamp)) is not None]
    if times and time.time() - max(times) > END_GRACE_S:
        return f"wrote nothing for {(time.time() - max(times)) / 60:.0f} minute(s)"
    return None


def _remote_mtime(stamp: Any) -> float | None:
    """An object's modification time in its listing stamp (size, ETag, modified seconds), else None."""
    if isinstance(stamp, tuple) and len(stamp) == 3 and isinstance(stamp[2], (int, float)):
        return float(stamp[2])
    return None


@contextlib.contextmanager
def _gc_frozen(enabled: bool) -> Iterator[None]:
    """Move every object alive now out of the cyclic GC's reach until the block ends (``gc.freeze``), unless
    the process froze objects itself; nothing is leaked: ``gc.unfreeze`` hands them back afterwards."""
    if not enabled or gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _log_steps(
    wandb: Any,
    wb: Any,
    payloads: Iterator[P.StepPayload],
    result: UploadResult,
    state: S.StateFile,
    dest: str,
    entry: S.Entry,
    on_step: Callable[[UploadResult, int], None] | None,
) -> None:
    """One ``run.log`` per step, everything merged, explicit step; the state saved after the first step and
    then at most every ``SAVE_EVERY_S`` seconds, and only after the call for the step it names has returned."""
    keys: set[str] = set()
    saved = float("-inf")
    for p in payloads:
        data: dict[str, Any] = dict(p.values)
        if p.timestamp is not None:
            data["_timestamp"] = p.timestamp
        try:
            for k, h in p.hists.items():
                data[k] = wandb.Histogram(np_histogram=(h.counts, h.edges))
            for k, t in p.tables.items():
                data[k] = wandb.Table(columns=t.columns, data=t.rows)
            wb.log(data, step=p.step)
        except Exception as exc:  # noqa: BLE001  (W&B's errors are many: one line, never an internal error)
            text = str(exc).strip()
            msg = visible(text.splitlines()[0][:300], keep_newlines=False) if text else ""
            done = f"; steps up to {entry.last_step} are logged" if entry.last_step is not None else ""
            raise UploadError(
                f"W&B refused step {p.step} of run {result.run_id}: {type(exc).__name__}: {msg}{done}"
            ) from None
        entry.last_step = p.step
        result.count(p)
        keys.update(p.values, p.hists, p.tables)
        if time.monotonic() - saved >= SAVE_EVERY_S:
            state.put(dest, entry)
            saved = time.monotonic()
        if on_step is not None:
            on_step(result, p.step)
    result.keys = sorted(keys)


def _offline_log_gone(entry: S.Entry | None) -> list[str]:
    """A note when the ``.wandb`` log the last offline session wrote is gone (synced and removed, or deleted).
    The destination stays up to date (writing its steps again would, after a sync and a clean-up, write the whole
    run at every upload), but that alone said "up to date" with nothing left to sync and no way out."""
    if entry is None or entry.mode != "offline" or not entry.complete or entry.last_step is None:
        return []
    if entry.session_file is None or Path(entry.session_file).exists():
        return []
    return [
        f"the offline log of the last upload, {entry.session_file}, is gone: steps up to {entry.last_step} reach "
        "W&B only if it was synced before (`wandb sync`); to write them again, upload with a new --state FILE"
    ]


def _resume_point(wb: Any, entry: S.Entry, mode: str) -> tuple[int | None, str | None]:
    """The last step W&B already has, so that no step is sent twice and none is skipped; and, offline, why the
    interrupted session's log could not be read (``_offline_resume_point``), else None.

    Online, the server says: a resumed run starts at its last step + 1. Offline there is no server; after
    an interrupted session runlog reads that session's own log (the state may lag it by a second, or lead
    it if the W&B service died before writing), else the state is exact."""
    if mode == "online":
        if getattr(wb, "resumed", False):
            start = int(getattr(wb, "starting_step", 0) or 0)
            return (start - 1 if start > 0 else None), None
        return None, None
    return _offline_resume_point(entry)


def _offline_resume_point(entry: S.Entry) -> tuple[int | None, str | None]:
    """``_resume_point`` offline: the state's last step, or after an interrupted session the last step of that
    session's own log (never before the step it began after); where that log is there and cannot be read, the
    step the session began after (no step skipped), and why. Also the dry run's, which names what the upload
    would send."""
    if entry.complete or entry.session_file is None:
        return entry.last_step, None
    logged, unread = S.logged_step(entry.session_file)
    if unread is not None:
        return entry.session_after, unread
    if logged is None:
        return (entry.last_step if not Path(entry.session_file).exists() else entry.session_after), None
    return (logged if entry.session_after is None else max(logged, entry.session_after)), None


def _step_text(step: int | None) -> str:
    return "the start" if step is None else f"step {step}"


def _init(
    wandb: Any, run: Run, rid: str, project: str, entity: str | None, name: str | None, mode: str, wdir: str
) -> Any:
    manifest = run.manifest or {}
    config = dict(manifest.get("config") or {}) if isinstance(manifest.get("config"), dict) else {}
    config["runlog"] = {"source": str(run.root.resolve()), "run_id": manifest.get("run_id"), "roles": run.role_names()}
    settings = wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True, x_disable_meta=True)
    try:
        return wandb.init(
            project=project,
            entity=entity,
            id=rid,
            name=name or run.name,
            config=config,
            resume="allow",
            dir=wdir,
            mode=mode,
            settings=settings,
        )
    except Exception as exc:  # noqa: BLE001  (W&B's errors are many; the message is what matters)
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UploadError(f"W&B could not start run {rid} in {project}: {msg}") from None


def _finish(wb: Any, exit_code: int) -> None:
    try:
        wb.finish(exit_code=exit_code)
    except Exception as exc:  # noqa: BLE001
        if exit_code == 0:
            raise UploadError(f"W&B could not finish the run: {type(exc).__name__}: {exc}") from None


_PREIMPORT: threading.Thread | None = None


def start_wandb_import() -> None:
    """Start importing wandb on a background thread, so that its import (a few tenths of a second, most of
    it reading and compiling its own modules, which releases the GIL often) overlaps reading and planning
    the run; ``_import_wandb`` waits for it. A failure there is ignored: the import is tried again, and
    reported, where it is needed."""
    global _PREIMPORT
    if _PREIMPORT is not None or "wandb" in sys.modules:
        return

    def work() -> None:
        with contextlib.suppress(BaseException):
            # numpy first, whole: wandb's import otherwise puts its own lazy numpy in ``sys.modules`` (``wandb.util.
            # get_module``), whose first use from two threads at once (this one and the planning's pyarrow) can
            # find it half-executed: "'LazyModule' object has no attribute 'ndarray'" (a CI run's flake).
            import numpy  # noqa: F401
            import wandb  # noqa: F401

    _PREIMPORT = threading.Thread(target=work, name="runlog-wandb-import", daemon=True)
    _PREIMPORT.start()


def _import_wandb() -> Any:
    """``wandb``, once the import started by ``start_wandb_import`` ended. Waited for in slices, asking whether
    a Ctrl-C came whose interrupt was lost on the way (``process.raise_if_interrupted``): one lost inside the
    import machinery left its lock held, and the import thread, then this join, waited for ever."""
    if _PREIMPORT is not None:
        while _PREIMPORT.is_alive():
            raise_if_interrupted()
            _PREIMPORT.join(0.1)
    raise_if_interrupted()
    try:
        import numpy  # noqa: F401  (before wandb: see ``start_wandb_import``)
        import wandb
    except ImportError:
        raise UsageError(f"uploading to W&B needs the wandb package: {INSTALL_HINT}") from None
    except Exception as exc:  # noqa: BLE001  (a broken install: a protobuf mismatch raises TypeError, ...)
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UsageError(
            f"the wandb package is installed but cannot be imported ({type(exc).__name__}: {visible(text)}); "
            f"reinstall it: {INSTALL_HINT}"
        ) from None
    return wandb


def _check_credentials() -> None:
    """Fail fast, before W&B retries for minutes, when online mode has no credentials. Only whether a key
    exists is checked: its value is never read into a message."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        if netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None:
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise UsageError(
        f"no W&B credentials for {host}: run `wandb login` or set WANDB_API_KEY; "
        "or upload with --mode offline and `wandb sync` later"
    )


def _plan_notes(plan: P.Plan, plan_left: set[str] | None = None, after: int | None = None) -> list[str]:
    """The plan's notes for an upload of the steps after ``after``: the notes about particular steps (infinite
    rewards, samples without per-role data) only for those steps, so that a resumed upload does not say again
    what an earlier session said about its own steps."""
    whole = set(plan.session_notes())
    notes = plan.session_notes(after) + [n for n in plan.notes if n not in whole] + plan.key_notes()
    # A file found unreadable by the table rows' read (a column only the rows read: the text, env_name), after
    # the numbers were planned (and perhaps logged): said, with the steps whose numbers hold it.
    late = [
        f
        for f in (plan.run.files if plan_left is not None else [])
        if f.kind == "samples" and not f.readable and f.path not in (plan_left or set())
    ]
    if late:
        steps = sorted({s for f in late for s in f.all_steps()})
        notes.append(
            f"{len(late)} sample file(s) found unreadable while the table rows were read (listed below): the numbers "
            f"of step(s) {', '.join(map(str, steps[:6]))}{' ...' if len(steps) > 6 else ''} include them; their "
            "samples are in no table"
        )
    if plan.shadowed:
        some = ", ".join(sorted(plan.shadowed)[:4])
        notes.append(
            f"{len(plan.shadowed)} computed key(s) are also the run's own scalars ({visible(some)}...): "
            "the run's values are logged, not runlog's aggregates, histograms or tables under those keys"
        )
    if plan.step_overruled:
        notes.append(K.step_note(plan.step_key, plan.step_overruled))
    if plan.overruled:
        notes.append(K.overruled_note(plan.overruled, plan.key_kinds))
    if plan.unfilled:
        steps = sorted({s for v in plan.unfilled.values() for s in v})
        some = ", ".join(sorted(plan.unfilled)[:4])
        notes.append(
            f"{len(plan.unfilled)} of them ({some}) have no value of the run's own at {len(steps)} step(s) "
            f"(first: step {steps[0]}; a scalars line missing or unreadable): left empty there, not filled with "
            "runlog's computation"
        )
    return notes
