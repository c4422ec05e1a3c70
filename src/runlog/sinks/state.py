"""The upload state file: what has been sent where, so that uploads are idempotent and resumable.

``.runlog-wandb.json`` in the run directory (or ``--state FILE``) holds one entry per destination (mode,
entity, project, run id, and for offline uploads the W&B directory): the last step logged, whether the
session finished, and a fingerprint of the source files. The file is replaced atomically, and only ever
names a step after ``run.log`` has returned for it. docs/wandb.md describes the semantics.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UPGRADE_HINT, UsageError
from ..run import Run
from ..storage import ObjectPath, digest_bytes, is_url
from .keys import KINDS, KeyDecisions

STATE_NAME = ".runlog-wandb.json"
STATE_FORMAT = "runlog-wandb-state"
STATE_VERSION = 1
HEAD_HASHED = ("jsonl", "csv", "json")  # appendable text files: an append keeps the old bytes


@dataclass
class Entry:
    """One destination's progress."""

    run_id: str
    project: str
    entity: str | None
    mode: str
    wandb_dir: str | None = None
    last_step: int | None = None  # the last step whose run.log call returned
    complete: bool = False  # the session that wrote last_step finished (run.finish) cleanly
    # The files as the last complete session saw them (``fingerprint``): a Parquet file's hash is None in an entry
    # written before runlog hashed them (``same_files`` then compares its size and modification time).
    fingerprint: dict[str, list[Any]] = field(default_factory=dict)
    fingerprint_step: int | None = None  # the last step sent when that fingerprint was taken
    session_file: str | None = None  # the offline .wandb file of the latest session
    session_after: int | None = None  # last_step when that session began
    updated: float = 0.0
    # The run's absolute path (an object store's URL) that the steps were sent from, whatever gave the run id: an
    # upload of another run into this destination (two runs with one manifest run_id) is refused (``same_files``
    # tells a run moved from one taken for it); with a derived id, a later upload of the run keeps this id whatever
    # files the run has gained since (``recorded_run_id``). None in an entry written before runlog kept it.
    source: str | None = None
    # Scalars files whose last line was incomplete, with their size, when the steps from that line's on were held
    # back (``torn_scalars``): the next upload sends them, without the line if it is still the same. And writer
    # state files (``.writer.p0.json``) of processes whose writer was open, with the bytes of that process's files,
    # when their last step was held back (``wandb._hold_open``): sent once it moved on, closed, or, without a lock
    # held, wrote nothing more. Beside a state file whose heartbeat is too far ahead of this host's clock to be
    # read, ``<its path>#heartbeat_ns`` and ``<its path>#heartbeat_seen_s``: that heartbeat's time, and when an
    # upload first found it there (``wandb._far_ahead``).
    held: dict[str, int] = field(default_factory=dict)
    # The plan options the steps were logged with (``options_record``): an upload with others would log the rest
    # of the run another way (other keys, tables), so it is refused (``changed_option``). None in an entry
    # written before runlog kept them: any options are accepted then, and the next session records its own.
    options: dict[str, Any] | None = None
    # The key part of every split the steps were logged with, as ``[split, part]`` pairs (``plan.Plan.split_parts``:
    # ``["", "empty_split"]``, ``["eval", "eval"]``; a null split beside others ``[null, "no_split"]``): later
    # uploads keep them (``splits.decide``), so a split that appears later never takes another's keys. None in an
    # entry written before runlog kept them.
    splits: list[list[Any]] | None = None
    # What the steps' keys hold (``keys.KeyDecisions``): the key of the training step, every chart's x axis
    # (``plan.Plan.step_key``); per key, the run's own number or runlog's number, histogram or table
    # (``plan.Plan.key_kinds``, the step's key aside); and whether the samples without per-role data are
    # ``P/no_role/...`` (``plan.Plan.no_role``; null where the run had neither them nor a role ``unknown``). Later
    # uploads keep them, so that no key changes meaning or type partway. None in an entry written before runlog
    # kept them: the next session decides as a first upload does, and records its decisions.
    step_key: str | None = None
    keys: dict[str, str] | None = None
    no_role: bool | None = None

    def split_parts(self) -> dict[str | None, str] | None:
        """``splits`` as ``plan.build_plan`` takes it."""
        return None if self.splits is None else {s: part for s, part in self.splits}

    def decisions(self) -> KeyDecisions:
        """``step_key``, ``keys`` and ``no_role`` as ``plan.build_plan`` takes them."""
        return KeyDecisions(self.step_key, dict(self.keys or {}), self.no_role)

    def record(self, decisions: KeyDecisions) -> None:
        """Keep ``decisions`` (``plan.Plan``'s, which keep those recorded) for the next sessions."""
        self.step_key, self.no_role = decisions.step_key, decisions.no_role
        self.keys = dict(sorted(decisions.kinds.items()))


def splits_record(parts: dict[str | None, str]) -> list[list[Any]]:
    """``Entry.splits`` of the key parts ``parts`` (``plan.Plan.split_parts``), in a stable order."""
    return [[s, parts[s]] for s in sorted(parts, key=lambda s: (s is not None, s or ""))]


_REMOVE = "remove it to upload from scratch, or pass another --state FILE"
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "project": (str,),
    "entity": (str, type(None)),
    "mode": (str,),
    "wandb_dir": (str, type(None)),
    "last_step": (int, type(None)),
    "complete": (bool,),
    "fingerprint": (dict,),
    "fingerprint_step": (int, type(None)),
    "session_file": (str, type(None)),
    "session_after": (int, type(None)),
    "updated": (int, float),
    "source": (str, type(None)),
    "held": (dict,),
    "options": (dict, type(None)),
    "splits": (list, type(None)),
    "step_key": (str, type(None)),
    "keys": (dict, type(None)),
    "no_role": (bool, type(None)),
}
# Steps are never negative (W&B's start at 0): a negative one is a hand-edited or damaged field.
_STEP_FIELDS = ("last_step", "fingerprint_step", "session_after")


# The fields without a default, and last_step: an entry without it would send every step again.
_REQUIRED = ("run_id", "project", "entity", "mode", "last_step")


def _bad_field(entry: Entry) -> str | None:
    """Why an entry read from the file cannot be used (a field of the wrong type), or None."""
    for name, types in _FIELD_TYPES.items():
        v = getattr(entry, name)
        if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            return f"{name} is {v!r}"
    for name in _STEP_FIELDS:
        v = getattr(entry, name)
        if v is not None and v < 0:
            return f"{name} is {v!r} (steps start at 0)"
    for path, fp in entry.fingerprint.items():
        if not isinstance(fp, list) or len(fp) != 3:
            return f"fingerprint of {path!r} is {fp!r}"
    for path, size in entry.held.items():
        if not isinstance(size, int) or isinstance(size, bool):
            return f"held size of {path!r} is {size!r}"
    for pair in entry.splits or []:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, type(None)))):
            return f"splits holds {pair!r}"
        if not isinstance(pair[1], str) or not pair[1]:
            return f"splits holds {pair!r}"
    if entry.step_key == "":
        return "step_key is ''"
    for name, kind in (entry.keys or {}).items():
        if kind not in KINDS:
            return f"keys gives {name!r} the kind {kind!r} (expected one of {', '.join(KINDS)})"
    return None


# The plan options as the user gives them (a command-line option where there is one), in the order said.
OPTION_NAMES = {
    "prefix": "--prefix",
    "max_samples_per_step": "--max-samples-per-step",
    "tables_every": "--tables-every",
    "metrics": "--metrics/--no-metrics",
    "hist_bins": "hist_bins",
    "max_cell_chars": "max_cell_chars",
    "aliases": "aliases",
    "seed": "seed",
}


def options_record(options: Any) -> dict[str, Any]:
    """The plan options (``plan.PlanOptions``) as the entry stores them: plain JSON values."""
    raw = {name: getattr(options, name) for name in OPTION_NAMES if hasattr(options, name)}
    if raw.get("aliases") is not None:
        raw["aliases"] = dict(sorted(dict(raw["aliases"]).items()))
    return json.loads(json.dumps(raw))


def changed_option(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first option (its name as the user gives it, the old and the new value) that differs between the
    options an entry's steps were logged with and this upload's, or None. An option the entry does not hold
    (an entry written by an earlier runlog, or before the option existed) is not compared."""
    if old is None:
        return None
    for name, flag in OPTION_NAMES.items():
        if name in old and name in new and old[name] != new[name]:
            return flag, old[name], new[name]
    return None


def destination(mode: str, entity: str | None, project: str, run_id: str, wandb_dir: str | None) -> str:
    """The key of an entry: an offline upload into one directory is not an upload to the server."""
    where = f"offline:{wandb_dir}" if mode == "offline" else mode
    return f"{where}|{entity or ''}|{project}|{run_id}"


def _copied(value: Any) -> Any:
    """A field's value as the state keeps it: a dict or list copied (the entry goes on changing its own)."""
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
    return list(value) if isinstance(value, list) else value


class StateFile:
    """Load, update and atomically save the state; unknown destinations and fields are kept as found."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {"format": STATE_FORMAT, "version": STATE_VERSION, "destinations": {}}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"{path}: unreadable upload state ({exc}); remove it to upload from scratch") from None
            if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
                raise UsageError(f"{path}: not a runlog upload state file; pass another --state FILE")
            version = data.get("version", 0)
            if not isinstance(version, int) or isinstance(version, bool):
                raise UsageError(f"{path}: damaged upload state (version {version!r} is not a number); {_REMOVE}")
            if version > STATE_VERSION:
                raise UsageError(f"{path}: written by a newer runlog; {UPGRADE_HINT}")
            data.setdefault("destinations", {})
            if not isinstance(data["destinations"], dict):
                kind = type(data["destinations"]).__name__
                raise UsageError(f"{path}: damaged upload state (destinations is a {kind}, not an object); {_REMOVE}")
            self.data = data

    def get(self, dest: str) -> Entry | None:
        """The entry of ``dest``, None if there is none; a damaged one stops the upload (treating it as absent
        would send every step again)."""
        raw = self.data["destinations"].get(dest)
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise UsageError(f"{self.path}: damaged upload state ({dest!r} is a {type(raw).__name__}); {_REMOVE}")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise UsageError(f"{self.path}: damaged upload state ({dest!r} has no {', '.join(missing)}); {_REMOVE}")
        entry = Entry(**{k: v for k, v in raw.items() if k in Entry.__dataclass_fields__})
        bad = _bad_field(entry)
        if bad:
            raise UsageError(f"{self.path}: damaged upload state ({dest!r}: {bad}); {_REMOVE}")
        return entry

    def recorded_run_id(
        self, source: str, paths: list[str], mode: str, entity: str | None, project: str, wandb_dir: str | None
    ) -> tuple[str, bool] | None:
        """The derived run id this state already uses for the run at ``source`` in this destination (mode,
        entity, project, W&B directory), and whether it was recognised by the id an earlier runlog derived
        (``plan.legacy_run_id``: from the files named in its fingerprint, or those of now) rather than by its
        recorded ``source``; None when there is none. The most recently updated one wins."""
        from .plan import legacy_run_id

        found: list[tuple[float, str, bool]] = []
        for raw in self.data["destinations"].values():
            if not isinstance(raw, dict):
                continue
            rid = raw.get("run_id")
            if not isinstance(rid, str) or not rid.startswith("runlog-"):
                continue
            if (raw.get("mode"), raw.get("entity"), raw.get("project")) != (mode, entity, project):
                continue
            if raw.get("wandb_dir") != wandb_dir:
                continue
            updated = raw.get("updated")
            when = float(updated) if isinstance(updated, (int, float)) else 0.0
            if raw.get("source") == source:
                found.append((when, rid, False))
            elif raw.get("source") is None:
                fp = raw.get("fingerprint")
                before = list(fp) if isinstance(fp, dict) else []
                if rid in {legacy_run_id(source, before), legacy_run_id(source, paths)}:
                    found.append((when, rid, True))
        if not found:
            return None
        _, rid, legacy = max(found)
        return rid, legacy

    def uploaded_from_elsewhere(
        self,
        run: Run,
        source: str,
        mode: str,
        entity: str | None,
        project: str,
        wandb_dir: str | None,
        memo: Hashes | None = None,
    ) -> tuple[str, str, str | None] | None:
        """The entry of this destination (mode, entity, project, W&B directory) with a derived run id whose steps
        were sent from another path, of a run holding the files the entry recorded (``same_files``): this run, moved
        or copied since (a state file in the run folder goes with it). Its run id, that path, and why the run is
        taken as moved: ``"gone"`` (the path is not there), ``"this folder"`` (it names this very folder: a link),
        or ``"other files"`` (the path holds another run now: an output folder reused after the run was moved
        away), each going on into that W&B run; None where the path still holds the files the entry recorded (a
        copy: a W&B run of its own). None when there is no such entry; the most recently updated one wins. A path
        in an object store is never compared (nothing tells it gone). ``memo``: the hashes this upload took."""
        found: list[tuple[float, str, str, dict[str, list[Any]]]] = []
        for raw in self.data["destinations"].values():
            if not isinstance(raw, dict):
                continue
            rid, old, fp = raw.get("run_id"), raw.get("source"), raw.get("fingerprint")
            if not isinstance(rid, str) or not rid.startswith("runlog-") or not isinstance(old, str):
                continue
            if old == source or is_url(old) or raw.get("last_step") is None or not isinstance(fp, dict):
                continue
            if not all(isinstance(v, list) and len(v) == 3 for v in fp.values()):
                continue
            where = (raw.get("mode"), raw.get("entity"), raw.get("project"), raw.get("wandb_dir"))
            if where != (mode, entity, project, wandb_dir):
                continue
            updated = raw.get("updated")
            found.append((float(updated) if isinstance(updated, (int, float)) else 0.0, rid, old, fp))
        memo = {} if memo is None else memo
        for _, rid, old, fp in sorted(found, key=lambda f: f[0], reverse=True):
            if not same_files(run, fp, memo):
                continue
            try:
                if not os.path.exists(old):
                    return rid, old, "gone"
                if os.path.samefile(old, source):
                    return rid, old, "this folder"
            except OSError:  # unreadable: not known to be gone, so taken as still there (a W&B run of its own)
                return rid, old, None
            return rid, old, None if _holds(old, fp, run) else "other files"
        return None

    def put(self, dest: str, entry: Entry) -> None:
        entry.updated = time.time()
        # Each field's container copied one level (``asdict`` copied every level: 6 ms a save for a run of 3,000 keys,
        # saved four times a second while uploading): its values are numbers, text and lists the entry replaces.
        self.data["destinations"][dest] = {f.name: _copied(getattr(entry, f.name)) for f in fields(entry)}
        self.save()

    def check_writable(self) -> None:
        """Fail now, as ``save`` would, if the state cannot be written: before W&B starts a session that the state
        could then never name (an empty offline run left behind). Writes and removes the ``.new`` file that
        ``save`` renames, so no state file appears before there is something in it."""
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            tmp.write_text("", encoding="utf-8")
            tmp.unlink()
        except OSError as exc:
            raise UsageError(
                f"{self.path}: cannot write the upload state ({exc.strerror}); pass --state FILE"
            ) from None

    def save(self) -> None:
        # ``.new``, not ``.tmp``: runlog's discovery warns about leftover ``*.tmp`` files in a run directory.
        tmp = self.path.with_name(self.path.name + ".new")
        try:
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise UsageError(
                f"{self.path}: cannot write the upload state ({exc.strerror}); pass --state FILE"
            ) from None


def default_state_path(run: Run) -> Path:
    """``DIR/.runlog-wandb.json``; for a run in an object store (not writable here), a file in the current
    directory named after the URL."""
    if is_url(run.root):
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", str(run.root).split("://", 1)[1]).strip("_")[:80]
        digest = hashlib.sha256(str(run.root).encode()).hexdigest()[:8]
        return Path(f".runlog-wandb-{tag}-{digest}.json")
    return run.root / STATE_NAME


def _stat(path: Any) -> tuple[int, int]:
    """(size, modification time in ns) of a local file or an object (from its listing)."""
    if isinstance(path, ObjectPath):
        meta = path.meta
        if meta is None:
            raise OSError(f"{path}: not listed")
        return meta.size, int((meta.modified or 0) * 1e9)
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


# SHA-256s taken during one upload of the run's files, by (path in the run, bytes hashed): the source check, the
# fingerprint and the notes on changed files each need some, and a file is read once for all of them.
Hashes = dict[tuple[str, int], str | None]
_PIECE = 8 << 20  # bytes of an object read at a time to hash it: it is never held whole in memory


def content_sha(f: Any, size: int, memo: Hashes | None = None) -> str | None:
    """The SHA-256 of the first ``size`` bytes of the run's file ``f`` (a ``listing`` entry), taken once per
    ``memo``; None where it cannot be read."""
    if memo is None:
        return _head_sha(f.abspath, size)
    where = (f.path, size)
    if where not in memo:
        memo[where] = _head_sha(f.abspath, size)
    return memo[where]


def fingerprint(
    run: Run, known: dict[str, list[Any]] | None = None, memo: Hashes | None = None
) -> dict[str, list[Any]]:
    """Per source file: ``[size, mtime_ns, sha256]``: the hash of a text file's content (appendable: an append
    keeps those bytes), and of the whole of another (Parquet, written once, whole: two runs' files of one step can
    have the very same size, as a ``RunWriter`` writes same-shaped batches, and only their bytes tell them apart).

    ``known``: this run's fingerprint taken by an earlier upload; a file that is not text with the size and
    modification time it had then keeps its hash, unread, so that each is read once over the uploads (the upload
    reads a new step's files anyway). ``memo``: the hashes this upload took already. A hash is None where the file
    could not be read."""
    out: dict[str, list[Any]] = {}
    for f in run.files:
        try:
            size, mtime = _stat(f.abspath)
        except OSError:
            continue
        was = known.get(f.path) if known else None
        if f.fmt not in HEAD_HASHED and isinstance(was, list) and was[:2] == [size, mtime] and isinstance(was[2], str):
            digest: str | None = was[2]
        else:
            digest = content_sha(f, size, memo)
        out[f.path] = [size, mtime, digest]
    return out


def unchanged(old: dict[str, list[Any]], new: dict[str, list[Any]]) -> bool:
    """Whether the fingerprint ``new`` is ``old`` taken again: the same files, with the same sizes and hashes (a
    copy that did not keep the modification times, ``cp -r`` or ``tar``, is unchanged). A file recorded without a
    hash (a Parquet file in a state written before runlog hashed them, or a file then unreadable) is unchanged
    with the same size and time."""
    if old.keys() != new.keys():
        return False
    for k, v in new.items():
        was = old[k]
        if was == v:
            continue
        if was[2] is None and was[:2] == v[:2]:
            continue
        if was[2] is not None and was[0] == v[0] and was[2] == v[2]:
            continue
        return False
    return True


def _head_sha(path: Any, size: int) -> str | None:
    """The SHA-256 of the first ``size`` bytes of a local file or an object, read a piece at a time (never held
    whole); None where it cannot be read (or an object has fewer bytes)."""
    h = hashlib.sha256()
    if isinstance(path, ObjectPath):
        try:
            got = _digest_object(path, h, size)
        except Exception:  # noqa: BLE001  (obstore's errors are many: the file is then unreadable, as a local one)
            return None
        return h.hexdigest() if got == size else None
    try:
        with open(path, "rb") as fh:
            digest_bytes(fh, h, size)
    except OSError:
        return None
    return h.hexdigest()


def _digest_object(path: ObjectPath, digest: Any, size: int) -> int:
    """Feed the first ``size`` bytes of an object to ``digest`` a piece at a time (ranged reads of ``_PIECE``
    bytes), never holding it whole (a step's Parquet object can be hundreds of megabytes); the bytes fed. A small
    one is read as the readers read it (from the discovery's prefetch where it is there)."""
    if size <= _PIECE:
        data = path.read_head(size) if size else b""
        digest.update(data)
        return len(data)
    import obstore

    got = 0
    while got < size:
        piece = obstore.get_range(path.store.store, path.key, start=got, end=min(size, got + _PIECE))
        if not len(piece):
            break
        digest.update(piece)
        got += len(piece)
    return got


def changed_history(
    run: Run, old: dict[str, list[Any]], last_step: int | None, memo: Hashes | None = None
) -> list[str]:
    """Warnings for source changes an upload cannot carry: files of already-uploaded steps that changed,
    vanished or appeared late, and text files rewritten rather than appended (W&B keeps the first row it
    got for a step, so those changes only reach W&B in a new run: ``--run-id``). A Parquet file of the size
    recorded and another modification time (a copy, ``cp -r`` or ``tar``, or a file rewritten) is changed only
    where its bytes hash otherwise (``memo``: the hashes this upload took already)."""
    if last_step is None:
        return []
    notes = []
    by_path = {f.path: f for f in run.files}
    for path, (size, mtime, digest) in old.items():
        f = by_path.get(path)
        if f is None:
            notes.append(f"{path}: uploaded before and now missing; W&B keeps what it has")
            continue
        if f.fmt in HEAD_HASHED:
            if digest is not None and content_sha(f, size, memo) != digest:
                notes.append(f"{path}: rewritten, not appended, since the last upload; earlier steps are not re-sent")
            elif f.fmt == "jsonl":
                late = _appended_steps(f.abspath, size, last_step)
                if late:
                    notes.append(
                        f"{path}: lines appended for step(s) {steps_text(late)} (at or before the last uploaded step "
                        f"{last_step}: a lagging shard?); not sent (W&B keeps a step's first row and drops a step "
                        "lower than its last; upload with another --run-id to include them)"
                    )
            elif f.step is not None and f.step <= last_step and f.bytes > size:
                # A file of one step (a Flink CSV) that grew: rows appended to a step W&B has already.
                notes.append(
                    f"{path}: rows appended since step {f.step} was uploaded; not sent "
                    "(W&B keeps a step's first row; upload with another --run-id to include them)"
                )
        elif f.step is not None and f.step <= last_step:
            try:
                now = _stat(f.abspath)
            except OSError:
                continue
            if now[0] != size or (now[1] != mtime and (digest is None or content_sha(f, size, memo) != digest)):
                notes.append(f"{path}: step {f.step} was uploaded and the file changed since; not re-sent")
    for path, f in by_path.items():
        if path in old or f.kind not in ("samples", "scalars"):
            continue
        if f.kind == "samples" and f.step is not None:
            if f.step <= last_step:
                notes.append(
                    f"{path}: new file for step {f.step}, at or before the last uploaded step {last_step}; not sent "
                    "(W&B keeps a step's first row and drops a step lower than its last)"
                )
            continue
        # A file of several steps (a scalars shard of a process that lagged behind, a rollouts file): every
        # step it holds that W&B has already is named.
        late = [s for s in _file_steps(run, f) if s <= last_step]
        if late:
            what = "lines" if f.fmt in HEAD_HASHED else "rows"
            notes.append(
                f"{path}: new file with {what} for step(s) {steps_text(late)} (at or before the last uploaded step "
                f"{last_step}: a lagging shard?); not sent (W&B keeps a step's first row and drops a step lower than "
                "its last; upload with another --run-id to include them)"
            )
    return notes


def _holds(root: str, old: dict[str, list[Any]], run: Run) -> bool:
    """Whether the local folder ``root`` still holds the files of the fingerprint ``old`` taken there: the run the
    fingerprint was taken of (a copy of it made elsewhere since), not another run started in the same folder after
    it was moved away (an output folder reused), whose files have the same names. A text file is that file when
    its first bytes hash the same (a live writer appends to it); another (Parquet, written once, whole) when its
    size and modification time are those recorded, since another run's file of a step can have the very same size
    (even the same bytes: the same job run again). Which files are text is told by ``run``, which holds the same
    files (``same_files``). A file that cannot be read is taken as held (not known to differ: a copy's W&B run of
    its own is the safe side); one missing, or other bytes, is not. The manifest is not compared (``same_files``)."""
    text = {f.path for f in run.files if f.fmt in HEAD_HASHED}
    for path, (size, mtime, digest) in old.items():
        if path == "run.json" or path.endswith("/run.json"):
            continue
        where = os.path.join(root, path)
        try:
            now = _stat(where)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            continue
        if path in text and digest is not None:
            if now[0] < size:
                return False
            got = _head_sha(where, size)
            if got is not None and got != digest:
                return False
        elif list(now) != [size, mtime]:
            return False
    return True


@dataclass
class FileMatch:
    """How a run's files compare with a fingerprint taken of a run elsewhere (``compare_files``): the data files
    recorded there that are here as they were, those that are not (other bytes, another size, not here), among
    them the text files whose first bytes differ, and those recorded without a hash (a state written before runlog
    hashed Parquet files) that have the size recorded and another modification time here, which cannot tell."""

    same: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)
    text_differ: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)

    @property
    def same_run(self) -> bool:
        """Most of the files recorded (more than half) are here as they were, and no text file begins otherwise:
        the run the fingerprint was taken of, moved or copied, perhaps with a step file rewritten since (said by
        ``changed_history``). Never another run that has files of the same names: two seeds written by
        ``RunWriter`` have step files of the very same size, and none of one's bytes are the other's; a text log
        (scalars) is only ever appended to, so one whose first bytes differ is another run's, whatever step files
        the two share (a deterministic first eval)."""
        return not self.text_differ and len(self.same) > len(self.differ) + len(self.undecided)


def compare_files(run: Run, old: dict[str, list[Any]], memo: Hashes | None = None) -> FileMatch:
    """Which data files of the fingerprint ``old`` are in ``run`` as they were then, or grown from it: a text file
    whose first bytes hash the same; another (Parquet, written once, whole) of the same size and hash. A file
    recorded without a hash (a Parquet file in a state written before runlog hashed them) is compared by size
    and modification time, which a move keeps (and ``cp -p``, ``rsync -a``); with the size and another time (a
    plain copy, a ``tar`` archive of whole seconds) it is undecided. The manifest is not compared: a writer
    rewrites it when a role appears, and users edit it. Files are hashed once every size is compared, text files
    first, and no more once the run is known not to be the same (another run: the sizes alone often tell).
    ``memo``: hashes already taken, by (path, size), shared by every comparison of one upload."""
    by_path = {f.path: f for f in run.files}
    data = {path: v for path, v in old.items() if not (path == "run.json" or path.endswith("/run.json"))}
    out = FileMatch()
    hashed: list[tuple[Any, int, str]] = []
    for path, (size, mtime, digest) in sorted(data.items()):
        f = by_path.get(path)
        if f is None:
            out.differ.append(path)
            continue
        try:
            now = _stat(f.abspath)
        except OSError:
            out.differ.append(path)
            continue
        text = f.fmt in HEAD_HASHED
        if text and digest is not None:
            if now[0] >= size:
                hashed.append((f, size, digest))  # grown or not: its first bytes tell
            else:  # shorter than its recorded head: not this log, rewritten or another run's
                out.differ.append(path)
                out.text_differ.append(path)
        elif now[0] != size:
            out.differ.append(path)
        elif digest is not None:
            hashed.append((f, size, digest))
        elif text or now[1] == mtime:
            out.same.append(path)
        else:
            out.undecided.append(path)
    hashed.sort(key=lambda h: h[0].fmt not in HEAD_HASHED)  # text files first: one that differs decides
    for i, (f, size, digest) in enumerate(hashed):
        if out.text_differ or len(out.same) + len(hashed) - i <= len(out.differ) + len(out.undecided):
            break  # not the same run, whatever the rest hash to
        if content_sha(f, size, memo) == digest:
            out.same.append(f.path)
        else:
            out.differ.append(f.path)
            if f.fmt in HEAD_HASHED:
                out.text_differ.append(f.path)
    return out


def same_files(run: Run, old: dict[str, list[Any]], memo: Hashes | None = None) -> bool:
    """Whether ``run`` holds the files of the fingerprint ``old``: most of them as they were then (``compare_files``,
    ``FileMatch.same_run``). False for a fingerprint of no data file."""
    return compare_files(run, old, memo).same_run


def steps_text(steps: list[int]) -> str:
    return ", ".join(map(str, steps[:10])) + (f" and {len(steps) - 10} more" if len(steps) > 10 else "")


def _file_steps(run: Run, f: Any) -> list[int]:
    """The steps a file holds, ascending: from discovery where it counted them, else from the run's frame of
    the file's kind (its ``source`` column)."""
    if f.steps is not None or f.step is not None:
        return sorted(f.all_steps())
    if not f.readable:
        return []
    from .._lazy import pl

    frame = run.scalars if f.kind == "scalars" else run.samples
    try:
        [df] = run.collect(lambda: [frame.filter(pl.col("source") == f.path).select("step").unique()])
    except Exception:  # noqa: BLE001  (a file that cannot be read now is said as a problem by the upload itself)
        return []
    return sorted(int(s) for s in df["step"].drop_nulls().to_list())


def _appended_steps(path: Any, old_size: int, last_step: int) -> list[int]:
    """The steps up to ``last_step`` named by JSON lines appended to ``path`` after its first ``old_size``
    bytes (a shard that lagged behind the upload), ascending. The line that holds byte ``old_size`` is read
    whole, from its start: when the last upload found it torn (half-written), its completion is what was
    appended, and the step it names must be said too."""
    try:
        size, _ = _stat(path)
        if size <= old_size:
            return []
        if isinstance(path, ObjectPath):
            data = path.read_head(size)
            start = data.rfind(b"\n", 0, old_size) + 1
            tail = data[start:size]
        else:
            with open(path, "rb") as fh:
                start = _line_start(fh, old_size)
                fh.seek(start)
                tail = fh.read(size - start)
    except OSError:
        return []
    steps: set[int] = set()
    for line in tail.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        step = d.get("step") if isinstance(d, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step <= last_step:
            steps.add(step)
    return sorted(steps)


def _line_start(fh: Any, pos: int, block: int = 1 << 16) -> int:
    """The offset where the line holding byte ``pos`` starts (just after the newline before ``pos``), read
    backwards a block at a time."""
    end = pos
    while end > 0:
        begin = max(0, end - block)
        fh.seek(begin)
        nl = fh.read(end - begin).rfind(b"\n")
        if nl >= 0:
            return begin + nl + 1
        end = begin
    return 0


# ``"step": 12,`` in a half-written line: the step of a torn line, when its writer got that far.
_TORN_STEP = re.compile(rb'"step"\s*:\s*(\d+)\s*[,}]')


def torn_scalars(run: Run) -> dict[str, tuple[int, int | None]]:
    """Per scalars JSONL file whose last line is incomplete (no newline at the end, and not a JSON object: a
    writer still writing it), its size and that line's step where the written part tells it."""
    out: dict[str, tuple[int, int | None]] = {}
    for f in run.files:
        if f.kind != "scalars" or f.fmt != "jsonl" or not f.readable or isinstance(f.abspath, ObjectPath):
            continue
        try:
            size, _ = _stat(f.abspath)
            with open(f.abspath, "rb") as fh:
                start = _line_start(fh, size)
                fh.seek(start)
                last = fh.read(size - start)
        except OSError:
            continue
        if not last.strip():
            continue
        try:
            whole = isinstance(json.loads(last), dict)
        except ValueError:
            whole = False
        if not whole:
            m = _TORN_STEP.search(last)
            out[f.path] = (size, int(m.group(1)) if m else None)
    return out


def last_logged_step(wandb_file: str | None) -> int | None:
    """``logged_step``'s step: None also where the log cannot be read."""
    return logged_step(wandb_file)[0]


def logged_step(wandb_file: str | None) -> tuple[int | None, str | None]:
    """The highest step in an offline ``.wandb`` log, read with W&B's own reader (``wandb-core leet inspect
    --json``), or None when there is no such file or it holds no step; and why it could not be read (wandb not
    importable, its reader failing), else None.

    Needed after an interrupted offline upload: the state lags the log by up to its save interval, and
    W&B's offline log has no server to drop a step logged twice."""
    if not wandb_file or not Path(wandb_file).is_file():
        return None, None
    try:
        from wandb.util import get_core_path

        core = get_core_path()
    except ImportError as exc:
        return None, f"wandb cannot be imported: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001  (an old or broken wandb)
        return None, f"W&B's reader is not found: {type(exc).__name__}"
    _wait_quiet(Path(wandb_file))
    run_dir = Path(wandb_file).parent
    cmd = [core, "leet", "inspect", "--json", "--no-observability", "--run-file", wandb_file, str(run_dir.parent)]
    best: int | None = None
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if '"type":"history"' not in line:
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    hist = json.loads(line)["history"]
                    step = int(hist.get("step", {}).get("num", hist["item"]["_step"]))
                    best = step if best is None else max(best, step)
    except OSError as exc:
        return None, f"W&B's reader could not start: {exc.strerror or type(exc).__name__}"
    if proc.returncode:
        # A torn last record (a killed session) is read up to it, exit 0; another failure (not a W&B log) is not.
        return None, f"W&B's reader failed (exit {proc.returncode})"
    return best, None


def _wait_quiet(path: Path, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """Wait until ``path`` has not changed for ``quiet_s``: when an upload is killed, its W&B service process
    outlives it for a moment and still writes what it had received; reading earlier would miss those steps
    and the resumed upload would log them twice."""
    deadline = time.monotonic() + limit_s
    last: tuple[int, int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            st = path.stat()
        except OSError:
            return
        now = (st.st_size, st.st_mtime_ns)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)
