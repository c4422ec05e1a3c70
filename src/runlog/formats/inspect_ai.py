"""inspect_ai evaluation logs: the JSON log (``*.json``) and the binary ``.eval`` log (a zip of JSON members).

A log is one evaluation of one task: ``version`` (inspect_ai's own log schema, 2 today), ``status``,
``eval`` (task, model, ``metadata``, config), ``plan``, ``results`` (aggregate metrics), ``stats`` and, in the
JSON log, ``samples``. The ``.eval`` zip holds the same data split into members: ``header.json`` (the log
without samples; an evaluation still running has only ``_journal/start.json``), one
``samples/{id}_epoch_{epoch}.json`` per sample, ``summaries.json`` and ``reductions.json``.

A sample is one conversation: ``messages`` (system / user / assistant / tool; assistant ``tool_calls`` are
``{id, function, arguments: {...}}``, a ``tool`` message answers one by ``tool_call_id`` and names it in
``function``), ``output`` (the final model output), ``scores`` (``{scorer: {value, answer, explanation}}``;
values are numbers, the letter grades ``C`` / ``I`` / ``P`` / ``N``, or dicts / lists of them), ``error``,
``epoch``, and large content moved out to ``attachments`` (``attachment://<hash>`` references).

The zip is read with ``zipfile`` only, member by member, each read bounded (``MAX_MEMBER_BYTES``) and the
whole archive too (``MAX_ARCHIVE_BYTES``): a zip bomb costs a problem line, never the memory. Nothing is
ever unpickled or evaluated: every member is parsed with ``json``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from .. import chat
from .._lazy import pl
from ..errors import RunlogError
from ..storage import ObjectPath, read_bytes
from .base import UNKNOWN_VERSION, UNREADABLE, WRONG_TYPE, Candidate, FileInfo, RunContext, register
from .common import SURROGATE_NOTE, coerce_step, gate_version, shared_ids, without_lone_surrogates
from .inspect_ai_messages import as_text, error_text, final_text, inspect_messages, map_scores, resolve_attachments
from .inspect_ai_messages import score_float as score_float  # (part of this reader's interface: tests use it)
from .jsonl_samples import BAD_ARGUMENTS, ORPHAN_RESULTS, JsonlSamples, samples_frame, tool_call_faults

# inspect_ai's log schema versions this reader knows (``LOG_SCHEMA_VERSION`` in inspect_ai is 2; version 1
# logs have the same sample shape, with a deprecated single ``score``).
LOG_VERSIONS = (1, 2)
SCHEMA_NAME = "inspect_ai log"

# Bounds on what one file may make runlog read (uncompressed bytes). Module constants so that tests and
# unusual deployments can change them.
MAX_MEMBER_BYTES = 512 * 1024 * 1024  # one zip member (a sample with a long transcript of events)
MAX_ARCHIVE_BYTES = 4 * 1024 * 1024 * 1024  # all members of one .eval together
MAX_JSON_BYTES = 4 * 1024 * 1024 * 1024  # one JSON log, read whole

# The JSON log starts with its ``version`` then ``status`` (inspect_ai writes the fields in a fixed order).
# Any JSON scalar is taken as the version here: one that is not an integer ("2", 2.5, null) is then said by
# the reader (``unknown_schema_version``), not taken for a file of no known layout.
_JSON_HEAD = re.compile(
    rb'^\s*\{\s*"version"\s*:\s*(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|"(?:[^"\\]|\\.){0,64}"|null|true|false)'
    rb'\s*,\s*"status"\s*:\s*"'
)
_SAMPLE_MEMBER = re.compile(r"samples/[^/]+\.json")
_HEADERS = ("header.json", "_journal/start.json", "start.json")  # finished, running, and older .eval logs
# Sample fields kept (as JSON) in the ``extra`` column; the others are mapped or named in a fidelity note.
_EXTRA_FIELDS = (
    "target",
    "choices",
    "metadata",
    "scores",
    "limit",
    "model_usage",
    "total_time",
    "working_time",
    "uuid",
)
_MAPPED = frozenset({"id", "epoch", "input", "messages", "output", "scores", "score", "error", "attachments"})
# The fields of inspect_ai's ``EvalLog`` (the JSON log, and the ``.eval``'s ``header.json``): those not mapped
# (``plan``, ``results``, ``stats``, ...) are what the samples tell again; any other top-level field is named
# in a fidelity note.
_LOG_FIELDS = frozenset(
    {
        "version",
        "status",
        "eval",
        "plan",
        "results",
        "stats",
        "error",
        "invalidated",
        "log_updates",
        "tags",
        "metadata",
        "samples",
        "reductions",
        "location",
        "etag",
    }
)
# A sample without an ``id`` is given one from its place in the log (1-based): ``{task}/no-id-{N}:{epoch}``.
NO_ID = "no-id-{n}"


_FROM_SUMMARIES = "\x00runlog: rows from summaries"  # marks a header whose samples are sample summaries

_NO_ID = "{n} sample(s) without an id (first: {first}): given the id 'no-id-N' from their place N in the log"
_SAME_TEXT_IDS = (
    "{n} sample id(s) that are text with the characters of another sample's id of another type (first: {first}): "
    "kept apart, as inspect_ai keeps them: each such text id is named by its JSON, quoted, in sample_id and group_id"
)
_NO_MESSAGES = "{n} sample(s) without messages (first: {first}): the conversation is the input and the output's message"
_NO_REWARD_SCORE = (
    "{n} sample(s) without a score of the task's first scorer {scorer} (first: {first}): their reward is null "
    "(their other scores are reward components)"
)
_NO_HEADER = (
    "no header.json (inspect_ai writes it when the evaluation ends): the evaluation is still running, or it crashed "
    "or was stopped before it finished; read from {source}, with the {n} sample(s) written so far"
)


class _Unreadable(Exception):
    """The file as a whole cannot be read (the message names the reason)."""


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def _sort_key(sample: dict[str, Any]) -> tuple[int, str]:
    """inspect_ai's own sample order: by epoch, then id (numbers compared as numbers)."""
    epoch = coerce_step(sample.get("epoch"))
    sid = sample.get("id")
    key = str(sid).zfill(20) if isinstance(sid, int) and not isinstance(sid, bool) else str(sid)
    return (epoch if epoch is not None else 0, key)


def _bad_step(value: Any, samples: int) -> str:
    """The error for an ``eval.metadata.step`` that is there but is no step (``coerce_step`` gives None)."""
    if not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        digits = str(int(value))
        shown = digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits)} digits)"
        what = f"{shown}, beyond the 64-bit integer range a step is stored in"
    else:
        text = json.dumps(value, ensure_ascii=True, default=str)
        what = f"{text if len(text) <= 40 else text[:40] + '...'}, not an integer step"
    return (
        f"`eval.metadata.step` is {what}: the log's {samples} sample(s) are left out (give the evaluation an "
        "integer step: `inspect eval --metadata step=N`)"
    )


def _id_key(sid: Any) -> str:
    """A sample id as a key that tells ``5`` from ``"5"`` (as the log's JSON does)."""
    try:
        return json.dumps(sid, sort_keys=True)
    except (TypeError, ValueError):
        return repr(sid)


def _id_names(sids: list[Any], state: _MapState) -> dict[str, str]:
    """The name in ``sample_id`` / ``group_id`` of each of a log's sample ids (by ``_id_key``): its text, as
    inspect_ai writes it, except where ids of another type have that text (``5`` and ``"5"``, two samples to
    inspect_ai): there each id that is a string is named by its JSON, quoted (``"5"``), so that the two are
    not one sample and one group; said once per log (``_SAME_TEXT_IDS``). The ids of a log without such a pair
    keep their names."""
    by_text: dict[str, dict[str, Any]] = {}
    for sid in sids:
        by_text.setdefault(str(sid), {}).setdefault(_id_key(sid), sid)
    taken = set(by_text)
    names: dict[str, str] = {}
    for ids in by_text.values():
        if len(ids) < 2:
            continue
        keep = next((k for k, sid in ids.items() if not isinstance(sid, str)), None)
        for key, sid in ids.items():
            if key == keep:
                continue
            name = key
            n = 2
            while name in taken:  # (a text id that is itself another's JSON: '"5"' beside 5 and "5")
                name, n = f"{key}#{n}", n + 1
            taken.add(name)
            names[key] = name
            others = ", ".join(repr(v) for k, v in ids.items() if k != key)
            state.tally(_SAME_TEXT_IDS, f"{sid!r} beside {others}, named {name}")
    return names


def _scorer_names(header: dict[str, Any]) -> list[str]:
    """The task's scorers in order: ``eval.scorers`` (the task's own list), then ``results.scores`` (the scores
    the log reports, in the scorers' order), by the names they have as keys of a sample's ``scores``."""
    spec, results = header.get("eval"), header.get("results")
    names: list[str] = []
    for entries in (
        spec.get("scorers") if isinstance(spec, dict) else None,
        results.get("scores") if isinstance(results, dict) else None,
    ):
        for entry in entries if isinstance(entries, list) else ():
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def _scores_of(s: dict[str, Any]) -> Any:
    """A sample's ``scores`` (log schema v1: its one unnamed ``score``, as ``{"score": ...}``)."""
    scores = s.get("scores")
    if scores is None and "score" in s:
        scores = {"score": s["score"]}
    return scores


def _bounded(zf: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> bytes:
    """One member, never more than ``limit`` uncompressed bytes (the declared size may lie: the read is capped)."""
    if member.file_size > limit:
        raise _TooLarge(member.file_size)
    with zf.open(member) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _TooLarge(len(data))
    return data


_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
)


def _loads(data: bytes) -> tuple[Any, str | None]:
    """``data`` parsed as JSON, and what was repaired to parse it, or None. A log is one JSON document: an
    invalid UTF-8 byte (a model's output cut inside a character) would cost every sample of it, so such bytes
    are read as U+FFFD, and said (where the log is still valid JSON after that; otherwise the error stands)."""
    try:
        return json.loads(data), None
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        obj = json.loads(text)  # not JSON either: that error is the one said
        n = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
        return obj, f"{n} invalid UTF-8 byte sequence(s) (the first at byte {exc.start}) read as U+FFFD"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.4g} MiB"


def _member_reason(exc: BaseException) -> str:
    if isinstance(exc, _TooLarge):
        return f"larger than the {_mib(MAX_MEMBER_BYTES)} runlog reads from one member; skipped"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}; skipped"
    if isinstance(exc, (ValueError, RecursionError)):
        return f"not valid JSON ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); skipped"
    if isinstance(exc, NotImplementedError):
        return f"compressed with a method this Python's zipfile cannot read ({exc}); skipped"
    return f"unreadable ({type(exc).__name__}: {str(exc)[:200]}); skipped"


class _EvalZip:
    """The members of one ``.eval`` log, read within the byte budget; per-member problems name the member."""

    def __init__(self, info: FileInfo, ctx: RunContext):
        self.info, self.ctx = info, ctx
        self.budget = MAX_ARCHIVE_BYTES
        try:
            if isinstance(info.abspath, ObjectPath):
                self.zf: zipfile.ZipFile = zipfile.ZipFile(io.BytesIO(read_bytes(info.abspath)))
            else:
                self.zf = zipfile.ZipFile(info.abspath)
        except (*_ZIP_ERRORS, ValueError, RunlogError) as exc:
            raise _Unreadable(f"not a readable .eval zip (truncated or corrupt?): {str(exc)[:200]}") from exc
        self.members = {m.filename: m for m in self.zf.infolist()}

    def close(self) -> None:
        self.zf.close()

    def json(self, name: str) -> Any:
        """A member parsed as JSON; None (with a problem naming the member) when it cannot be read."""
        member = self.members[name]
        if self.budget <= 0:
            return None
        limit = min(MAX_MEMBER_BYTES, self.budget)
        try:
            data = _bounded(self.zf, member, limit)
            self.budget -= len(data)
            parsed, repaired = _loads(data)
            if repaired:
                self.ctx.warn(self.info.path, f"{name}: {repaired}")
            obj, fixed = without_lone_surrogates(parsed, data)
            if fixed:
                self.ctx.warn(self.info.path, f"{name}: {SURROGATE_NOTE.format(n=fixed)}")
            return obj
        except _TooLarge as exc:
            if limit < MAX_MEMBER_BYTES and member.file_size <= MAX_MEMBER_BYTES:
                self.budget = 0
                self.ctx.problem(
                    self.info.path,
                    UNREADABLE,
                    f"{name}: the archive holds more than the {_mib(MAX_ARCHIVE_BYTES)} runlog "
                    "reads from one .eval (a zip bomb?); this member and the rest are skipped",
                )
            else:
                self.ctx.problem(self.info.path, UNREADABLE, f"{name}: {_member_reason(exc)}")
        except (*_ZIP_ERRORS, ValueError, RecursionError) as exc:
            self.ctx.problem(self.info.path, UNREADABLE, f"{name}: {_member_reason(exc)}")
        return None


@dataclass
class _MapState:
    """What mapping one log's samples gathered for its notes."""

    notes: set[str] = field(default_factory=set)
    unmapped_scores: set[str] = field(default_factory=set)
    dropped: set[str] = field(default_factory=set)
    unscored: int = 0
    # problems said once per log: message (``{n}``, ``{first}``) -> the samples (first one first)
    tallies: dict[str, list[str]] = field(default_factory=dict)
    summaries: bool = False  # rows read from the sample summaries (no messages by design)
    # The scorer whose value is the reward (the task's first, from the header); None: each sample's first score.
    reward_key: str | None = None

    def tally(self, message: str, where: str) -> None:
        self.tallies.setdefault(message, []).append(where)


@register
class InspectAi(JsonlSamples):
    name = "inspect_ai"
    description = "inspect_ai eval logs (.json log, .eval zip): samples as conversations, scores as rewards"
    priority = 55
    formats = (".json", ".eval")

    def detect(self, cand: Candidate) -> bool:
        if cand.suffix == ".eval":
            return cand.head.startswith(b"PK")
        if cand.suffix == ".json":
            head = cand.head
            return bool(_JSON_HEAD.match(head)) and b'"eval"' in head
        return False

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        fmt = "eval" if cand.suffix == ".eval" else "json"
        info = FileInfo(cand.rel, cand.abspath, self.name, fmt, "samples", cand.size, split="eval")
        frame = self.parse(info, ctx)
        info.frame = frame
        info.rows = frame.height
        info.columns = {c: str(t) for c, t in frame.schema.items()}
        info.null_counts = {c: frame.get_column(c).null_count() for c in frame.columns}
        steps = sorted(int(s) for s in frame.get_column("step").drop_nulls().unique())
        info.step = steps[0] if len(steps) == 1 else info.step
        return info

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """Logs of one folder whose samples share ids at one step (the same task evaluated twice, or two
        checkpoints without ``--metadata step=N``): their rows are pooled as one step and their epochs into
        the same prompt groups, and ``--sample-id`` finds several samples. Said once, naming the first
        shared id and the logs that hold it."""
        found = shared_ids(files, ["step"])
        if found is None:
            return
        count, first, logs = found
        ctx.warn(
            logs[-1],
            f"{count} sample id(s) occur in more than one inspect_ai log at the same step (first: {first!r}, "
            f"in {', '.join(logs[:3])}{' ...' if len(logs) > 3 else ''}): their rows are pooled as one step and "
            "into the same prompt groups; give each evaluation its step (`inspect eval --metadata step=N`) or "
            "point runlog at one log",
        )

    # -- reading ----------------------------------------------------------------------------------------
    def parse(self, info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        rows: list[dict[str, Any]] = []
        try:
            header, samples = self._read(info, ctx)
        except _Unreadable as exc:
            ctx.problem(info.path, UNREADABLE, str(exc))
            info.readable = False
            header, samples = None, []
        if header is not None:
            rows = self._map_all(header, samples, info, ctx)
        frame = samples_frame(rows, info.path, self.name)
        return frame.with_columns(
            pl.Series("epoch", [r.get("epoch") for r in rows], dtype=pl.Int64),
            pl.Series("prompt_turns", [r.get("prompt_turns") for r in rows], dtype=pl.Int32),
        )

    def _read(self, info: FileInfo, ctx: RunContext) -> tuple[dict[str, Any] | None, list[Any]]:
        if info.fmt == "eval":
            return self._read_eval(info, ctx)
        if info.bytes > MAX_JSON_BYTES:
            raise _Unreadable(f"a JSON log of {info.bytes} bytes is larger than runlog reads whole; not read")
        try:
            data = read_bytes(info.abspath)
            parsed, repaired = _loads(data)
            if repaired:
                ctx.warn(info.path, repaired)
            log, fixed = without_lone_surrogates(parsed, data)
            if fixed:
                ctx.warn(info.path, SURROGATE_NOTE.format(n=fixed))
        except (OSError, RunlogError) as exc:
            raise _Unreadable(f"cannot read file: {str(exc)[:200]}") from exc
        except UnicodeDecodeError as exc:
            raise _Unreadable(f"invalid UTF-8 at byte {exc.start}") from exc
        except (ValueError, RecursionError) as exc:
            raise _Unreadable(f"not valid JSON (truncated?): {str(exc).splitlines()[0][:200]}") from exc
        if not isinstance(log, dict):
            raise _Unreadable(f"a JSON {type(log).__name__}, not an inspect_ai log object")
        if not self._gate(log, info, ctx):
            return None, []
        samples = log.get("samples")
        if samples is None:
            ctx.warn(info.path, "this inspect_ai log holds no samples (written with log_samples off?)")
            samples = []
        elif not isinstance(samples, list):
            ctx.problem(info.path, WRONG_TYPE, f"`samples` is a JSON {type(samples).__name__}, not a list; not read")
            samples = []
        for i, s in enumerate(samples):
            if not isinstance(s, dict):
                ctx.problem(info.path, WRONG_TYPE, f"samples[{i}]: a JSON {type(s).__name__}, not a sample; skipped")
        return log, [s for s in samples if isinstance(s, dict)]

    def _read_eval(self, info: FileInfo, ctx: RunContext) -> tuple[dict[str, Any] | None, list[Any]]:
        z = _EvalZip(info, ctx)
        try:
            present = [h for h in _HEADERS if h in z.members]
            if not present:
                raise _Unreadable("no header.json or _journal/start.json: not an inspect_ai .eval log")
            # The first header that reads as an object (a corrupt header.json falls back to the journal's).
            header, source = None, ""
            for name in present:
                obj = z.json(name)
                if isinstance(obj, dict):
                    header, source = obj, name
                    break
            if header is None:
                raise _Unreadable(f"no readable header ({', '.join(present)}); the log is not read")
            if not self._gate(header, info, ctx):
                return None, []
            names = sorted(n for n in z.members if _SAMPLE_MEMBER.fullmatch(n))
            samples = [z.json(n) for n in names]
            for n, s in zip(names, samples, strict=True):
                if s is not None and not isinstance(s, dict):
                    ctx.problem(info.path, WRONG_TYPE, f"{n}: a JSON {type(s).__name__}, not a sample; skipped")
            samples = [s for s in samples if isinstance(s, dict)]
            if not names:
                samples = self._summaries(z, info, ctx)
                if samples:
                    header = {**header, _FROM_SUMMARIES: True}
            else:
                self._check_members(z, header, samples, len(names), info, ctx)
                if not samples:
                    # Every sample member was unreadable (each said above, by name): no row of the log could be
                    # read, which is not a log without samples.
                    info.readable = False
            if "header.json" not in z.members:
                ctx.warn(info.path, _NO_HEADER.format(source=source, n=len(samples)))
            return header, samples
        finally:
            z.close()

    @staticmethod
    def _summary_list(z: _EvalZip) -> tuple[list[dict[str, Any]], str]:
        """The sample summaries and the member(s) they were read from: ``summaries.json`` (written when the
        evaluation ends), else the journal's (``_journal/summaries/N.json``, one per flush of a running eval)."""
        journal = sorted(
            (n for n in z.members if re.fullmatch(r"_journal/summaries/\d+\.json", n)),
            key=lambda n: int(n.rsplit("/", 1)[1].split(".")[0]),
        )
        for names, where in ((["summaries.json"], "summaries.json"), (journal, "_journal/summaries")):
            out: list[dict[str, Any]] = []
            for n in names:
                part = z.json(n) if n in z.members else None
                if isinstance(part, list):
                    out.extend(s for s in part if isinstance(s, dict))
            if out:
                return out, where
        return [], ""

    def _check_members(
        self,
        z: _EvalZip,
        header: dict[str, Any],
        samples: list[dict[str, Any]],
        members: int,
        info: FileInfo,
        ctx: RunContext,
    ) -> None:
        """Samples the log lists (its sample summaries; without them, the header's ``completed_samples``) that
        have no sample member: said with their count and ids (a member that is there but unreadable is said by
        ``_EvalZip.json``, by name). They are left out: a summary holds no conversation."""
        listed, where = self._summary_list(z)
        if not listed:
            results = header.get("results")
            done = results.get("completed_samples") if isinstance(results, dict) else None
            if isinstance(done, int) and not isinstance(done, bool) and done > members:
                ctx.warn(
                    info.path,
                    f"the header counts {done} completed sample(s) and the log holds {members} sample member(s): "
                    f"{done - members} sample(s) are not in the log (left out; the log was cut short or edited?)",
                )
            return
        read = {(_id_key(s.get("id")), coerce_step(s.get("epoch"))) for s in samples}
        seen: set[tuple[str, int | None]] = set()
        missing: list[str] = []
        for s in listed:
            sid, epoch = s.get("id"), s.get("epoch")
            key = (_id_key(sid), coerce_step(epoch))
            if key in seen:  # a sample logged again (a retry): the journal keeps both, the last one counts
                continue
            seen.add(key)
            if f"samples/{sid}_epoch_{epoch}.json" in z.members or key in read:
                continue
            missing.append(f"{sid!r} epoch {epoch}")
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            ctx.warn(
                info.path,
                f"{len(missing)} of the {len(seen)} sample(s) listed in {where} have no sample member ({shown}): "
                "left out (the log was cut short or edited?)",
            )

    def _summaries(self, z: _EvalZip, info: FileInfo, ctx: RunContext) -> list[Any]:
        """A log without sample members (``log_samples`` off) still has the sample summaries: ids, input,
        target and scores, without the conversation."""
        out, _ = self._summary_list(z)
        if out:
            ctx.note(self.name, f"{info.path}: no sample members; rows read from the sample summaries (no messages)")
        else:
            ctx.warn(info.path, "this .eval log holds no samples")
        return out

    def _gate(self, log: dict[str, Any], info: FileInfo, ctx: RunContext) -> bool:
        version = log.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            ctx.problem(info.path, UNKNOWN_VERSION, f"{SCHEMA_NAME} `version` is not an integer: {version!r}")
            info.readable = False
            return False
        # Recorded for ``inspect``'s versions (``schema_versions``, ``2``, ``3 (skipped)``), also where the gate
        # refuses it: a newer log's version is what says to upgrade. (inspect_ai's own numbering, not runlog's:
        # the table's layout column tells them apart.)
        info.schema_version = version
        if not gate_version(info, ctx, version, foreign=SCHEMA_NAME, newest=max(LOG_VERSIONS), known=LOG_VERSIONS):
            return False
        if not isinstance(log.get("eval"), dict):  # a JSON file forced with --layout that is no log at all
            raise _Unreadable("no `eval` object: not an inspect_ai log")
        return True

    # -- mapping ----------------------------------------------------------------------------------------
    def _map_all(
        self, header: dict[str, Any], samples: list[Any], info: FileInfo, ctx: RunContext
    ) -> list[dict[str, Any]]:
        spec, meta = header.get("eval"), None
        if isinstance(spec, dict):
            meta = spec.get("metadata")
        else:
            spec = {}
        if not isinstance(meta, dict):
            meta = {}
        task = as_text(spec.get("task")) or "task"
        model = as_text(spec.get("model"))
        raw_step = meta.get("step")
        step = coerce_step(raw_step)
        if step is None and raw_step is not None:
            # A step given but unusable (7.5, true, "ten", beyond int64): no place to put the rows. Step 0 would
            # pool them with the real step 0's; said as an error naming the value, the log's samples left out.
            ctx.problem(info.path, WRONG_TYPE, _bad_step(raw_step, len(samples)))
            info.readable = False
            return []
        if step is None:
            step = 0
            ctx.note(
                self.name,
                "inspect_ai logs carry no training step: rows get step 0 (set one with "
                "`inspect eval --metadata step=N`) and split 'eval'",
            )
        status = header.get("status")
        if isinstance(status, str) and status != "success":
            ctx.warn(
                info.path, f"inspect_ai log status is {status!r} (the evaluation did not finish); its samples are read"
            )
        state = _MapState(summaries=bool(header.get(_FROM_SUMMARIES)))
        self._reward_scorer(header, samples, state, info, ctx)
        unknown = sorted(k for k in header if k not in _LOG_FIELDS and k != _FROM_SUMMARIES)
        if unknown:
            names = ", ".join(unknown[:12]) + (" ..." if len(unknown) > 12 else "")
            ctx.note(self.name, f"{info.path}: log fields not mapped: {names}")
        # A sample without an id gets one from its place in the log (the order it was read in: the JSON log's
        # ``samples`` list, the ``.eval``'s members by name), before the samples are put in inspect_ai's order.
        ided: list[tuple[Any, dict[str, Any]]] = []
        for n, s in enumerate(samples, 1):
            sid = s.get("id")
            if sid is None:
                sid = NO_ID.format(n=n)
                state.tally(_NO_ID, f"sample {n} of the log, epoch {s.get('epoch')!r}")
            ided.append((sid, s))
        id_names = _id_names([sid for sid, _ in ided], state)
        rows: list[dict[str, Any]] = []
        for sid, s in sorted(ided, key=lambda p: _sort_key({**p[1], "id": p[0]})):
            try:
                rows.append(self._map_sample(s, sid, id_names.get(_id_key(sid), str(sid)), task, model, step, state))
            except Exception as exc:  # a shape no reader foresaw must cost one sample, never the file
                reason = f"{type(exc).__name__}: {exc}"[:200]
                ctx.problem(info.path, WRONG_TYPE, f"sample {sid!r} epoch {s.get('epoch')!r} not mapped ({reason})")
        for message, cases in state.tallies.items():
            ctx.warn(info.path, message.format(n=len(cases), first=cases[0]))
        ctx.note(
            self.name,
            "reward is the value of the task's first scorer (`eval.scorers`, else `results.scores`; letter grades "
            "as inspect_ai's value_to_float: C=1, P=0.5, I=N=0); every scorer is also a reward component; sample "
            "id and epoch give sample_id '{task}/{id}:{epoch}', the epochs of one sample form one prompt group "
            "'{task}/{id}'",
        )
        if state.unscored:
            ctx.note(self.name, f"{info.path}: {state.unscored} sample(s) without scores: their reward is null")
        if state.unmapped_scores:
            names = ", ".join(sorted(state.unmapped_scores)[:8])
            ctx.note(self.name, f"{info.path}: score values that are not numbers nor grades (kept in `extra`): {names}")
        if state.dropped:
            names = ", ".join(sorted(state.dropped)[:12])
            ctx.note(self.name, f"sample fields not mapped (attachments are resolved into the messages): {names}")
        for note in sorted(state.notes):
            ctx.note(self.name, note)
        return rows

    def _reward_scorer(
        self, header: dict[str, Any], samples: list[Any], state: _MapState, info: FileInfo, ctx: RunContext
    ) -> None:
        """The scorer whose value is the reward: the task's first (``_scorer_names``) that any sample was scored
        by. A log that names none of its samples' scorers gives each sample's first score as its reward, said
        in a note where a sample has several scores (with one, there is no choice to make)."""
        keys: list[str] = []
        several = False
        for s in samples:
            scores = _scores_of(s)
            if isinstance(scores, dict):
                several = several or len(scores) > 1
                keys.extend(k for k in scores if k not in keys)
        if not keys:
            return
        names = _scorer_names(header)
        state.reward_key = next((n for n in names if n in keys), None)
        if state.reward_key is None and several:
            why = (
                f"none of the scorers it names ({', '.join(names[:6])}) is among its samples' scores"
                if names
                else "the log names no scorers (`eval.scorers`, `results.scores`)"
            )
            ctx.note(self.name, f"{info.path}: {why}: each sample's reward is its first score")

    def _map_sample(
        self, s: dict[str, Any], sid: Any, name: str, task: str, model: str | None, step: int, state: _MapState
    ) -> dict[str, Any]:
        attachments = s.get("attachments")
        if not isinstance(attachments, dict):
            attachments = {}
        notes = state.notes
        epoch = coerce_step(s.get("epoch"))
        if epoch is None:
            epoch = 1
        where = f"sample {sid!r} epoch {epoch}"
        input_msgs = inspect_messages(_as_messages(resolve_attachments(s.get("input"), attachments)), notes)
        messages = inspect_messages(resolve_attachments(s.get("messages"), attachments), notes)
        if not messages:
            # No conversation (a sample summary has none by design): the input, then the output's message.
            messages = input_msgs + inspect_messages(
                _output_message(resolve_attachments(s.get("output"), attachments)), notes
            )
            if not state.summaries:
                state.tally(_NO_MESSAGES, where)
        bad_args, orphans = tool_call_faults(messages)
        for name in bad_args:
            state.tally(BAD_ARGUMENTS, f"{where}, {name}")
        for cid in orphans:
            state.tally(ORPHAN_RESULTS, f"{where}, call id {cid!r}")
        scores = _scores_of(s)
        reward, comps, unmapped = map_scores(scores, state.reward_key)
        key = state.reward_key
        if key is not None and isinstance(scores, dict) and scores and key not in scores:
            shown = repr(key).replace("{", "{{").replace("}", "}}")
            state.tally(_NO_REWARD_SCORE.replace("{scorer}", shown), where)
        state.unmapped_scores.update(unmapped)
        state.unscored += not scores
        state.dropped.update(k for k, v in s.items() if k not in _MAPPED and k not in _EXTRA_FIELDS and v)
        completion = final_text(resolve_attachments(s.get("output"), attachments), notes)
        if completion is None:
            completion = next(
                (m["content"] for m in reversed(messages) if m["role"] == "assistant" and m["content"]), None
            )
        extra = {k: s[k] for k in _EXTRA_FIELDS if s.get(k) not in (None, {}, [])}
        if model is not None:
            extra["model"] = model
        group = f"{task}/{name}"
        return {
            "step": step,
            "split": "eval",
            "sample_id": f"{group}:{epoch}",
            "group_id": group,
            "env_name": task,
            "reward": reward,
            "reward_components": comps,
            "exception": error_text(s.get("error")),
            "prompt": chat.last_text(input_msgs, "user"),
            "completion": completion,
            "messages": messages,
            "prompt_turns": _prompt_turns(input_msgs, messages),
            "epoch": epoch,
            "extra": chat.compact_json(extra) if extra else None,
        }


def _prompt_turns(input_msgs: list[dict[str, Any]], messages: list[dict[str, Any]]) -> int | None:
    """How many leading messages of the conversation are the sample's input: the messages before the first of
    the model's turns that the input did not hold. An input's own assistant turns (a few-shot example) are the
    first ones of the conversation: solvers add system messages and rewrite the user's (``prompt_template``),
    but do not add assistant turns before generating, so the turns are counted, not matched by text. None
    where the conversation holds fewer assistant turns than its input (not the input and what followed)."""
    given = sum(m["role"] in chat.MODEL_ROLES for m in input_msgs)
    seen = 0
    for i, m in enumerate(messages):
        if m["role"] in chat.MODEL_ROLES:
            if seen == given:
                return i
            seen += 1
    return len(messages) if seen == given else None


def _output_message(output: Any) -> list[Any]:
    """The final output's message (``output.choices[0].message``), as a message list (empty when there is none)."""
    choices = output.get("choices") if isinstance(output, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return [message]
    return []


def _as_messages(value: Any) -> Any:
    """A sample ``input``: a string is one user message; a list is chat messages."""
    return [{"role": "user", "content": value}] if isinstance(value, str) else value
