"""The base of the foreign JSONL sample layouts (verifiers, verl, NeMo Gym, Inspect AI): parse each file once
at probe time, map each record to canonical columns, keep the frame; and the helpers their mappings share."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from .. import chat
from .. import schema as S
from .._lazy import pl
from .base import UNREADABLE, WRONG_TYPE, Candidate, FileInfo, Layout, RunContext
from .common import read_jsonl, shared_ids

# Columns a JSONL layout fills; the rest of SAMPLE_COLUMNS is added as typed nulls by conform_samples.
_ROW_COLUMNS = (
    "step",
    "split",
    "sample_id",
    "group_id",
    "env_name",
    "reward",
    "reward_components",
    "exception",
    "prompt",
    "completion",
    "messages",
)


def number(v: Any) -> float | None:
    """A JSON value as float when it is a number (bools count: they are pass/fail metrics)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        try:
            return float(v)
        except OverflowError:  # an int beyond the float64 range: infinity of its sign, as JSON's 1e400 is read
            return math.inf if v > 0 else -math.inf
    return None


def components(values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """``{name: number}`` to canonical ``[{name, value}]``; non-numbers are left out (callers keep them)."""
    out = [{"name": str(k), "value": f} for k, v in values.items() if (f := number(v)) is not None]
    return out or None


def text_of(v: Any) -> str | None:
    """A prompt / completion / error value as text (strings kept, anything else as compact JSON)."""
    if v is None or isinstance(v, str):
        return v
    return chat.compact_json(v)


def _answered(messages: Any) -> bool:
    """Whether a mapped rollout's messages hold an assistant turn with text, reasoning or a tool call."""
    return isinstance(messages, list) and any(
        m.get("role") == "assistant" and (m.get("content") or m.get("reasoning") or m.get("tool_calls"))
        for m in messages
    )


def _valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def tool_call_faults(messages: Any) -> tuple[list[str], list[str]]:
    """``(calls whose arguments are not valid JSON, tool results whose call id answers no call)`` in mapped
    messages, each named by its tool (or id). Empty arguments (a call without any) are not a fault."""
    if not isinstance(messages, list):
        return [], []
    bad_args: list[str] = []
    call_ids: set[str] = set()
    for m in messages:
        for c in m.get("tool_calls") or ():
            args = c.get("arguments")
            if isinstance(args, str) and args.strip() and not _valid_json(args):
                bad_args.append(str(c.get("name") or "(unnamed tool)"))
            if c.get("id") is not None:
                call_ids.add(c["id"])
    orphans = [
        str(m.get("tool_call_id"))
        for m in messages
        if m.get("role") == "tool" and m.get("tool_call_id") is not None and m["tool_call_id"] not in call_ids
    ]
    return bad_args, orphans


# Said once per file by ``JsonlSamples.tally`` / ``say_tallies``: ``{n}`` is the count, ``{first}`` the first case.
BAD_ARGUMENTS = "{n} tool call(s) whose arguments are not valid JSON (first: {first}): kept as written"
ORPHAN_RESULTS = (
    "{n} tool result(s) whose call id answers no tool call of their rollout (first: {first}): kept unpaired, "
    "named only by the tool name the result itself carries (if any)"
)


# Said once per file by ``JsonlSamples.say_repeats``.
REPEATED_LINES = (
    "{n} line(s) repeat an earlier line of this file record for record (first: line {line} repeats line "
    "{earlier}): lines written twice (a retried writer, a file appended to itself?), each counted, so those "
    "rollouts count twice; delete the copies to count each once"
)
REUSED_IDS = (
    "{n} line(s) have the sample id of an earlier, different line of this file (first: line {line}, id {sid!r}, "
    "as line {earlier}): each is counted, under one sample id (two collections in one file?)"
)
_NAN = object()  # NaN in a fingerprint: one value (NaN equals nothing, itself included)


def fingerprint(rec: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    """A cheap key of a parsed record: its top-level scalar fields (a long text by its length and ends), and the
    type and length of the others. Equal records have equal keys (whatever their fields' order); records with
    equal keys are compared whole (``same_record``). No walk of nested values, no serialisation, and no long
    text hashed whole (that would cost half as much as the parse)."""
    out: list[tuple[str, Any]] = []
    for k, v in rec.items():
        if isinstance(v, str) and len(v) > 96:
            v = (len(v), v[:48], v[-48:])
        elif isinstance(v, float) and v != v:
            v = _NAN
        elif isinstance(v, (dict, list)):
            v = (type(v).__name__, len(v))
        out.append((k, v))
    return frozenset(out)


def same_record(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two parsed records are the same record (NaN equal to NaN; field order ignored)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (ValueError, TypeError, RecursionError):
        return False


def samples_frame(rows: list[dict[str, Any]], source: str, layout: str) -> pl.DataFrame:
    """Canonical-typed frame from row dicts (``_ROW_COLUMNS`` plus ``extra``), built column by column."""
    data: dict[str, pl.Series] = {
        "layout": pl.Series("layout", [layout] * len(rows), dtype=pl.String),
        "source": pl.Series("source", [source] * len(rows), dtype=pl.String),
    }
    for col in _ROW_COLUMNS:
        data[col] = pl.Series(col, [r.get(col) for r in rows], dtype=S.SAMPLE_COLUMNS[col])
    data["extra"] = pl.Series("extra", [r.get("extra") for r in rows], dtype=pl.String)
    return pl.DataFrame(data)


class JsonlSamples(Layout):
    """Base of the foreign JSONL sample layouts: parse once in ``probe`` (``common.read_jsonl`` reports bad
    and torn lines), map each record with ``map_record``, keep the frame in ``info.frame``."""

    formats: ClassVar[tuple[str, ...]] = (".jsonl",)
    # Fields a layout maps; any other top-level field goes to ``extra`` and is named in a fidelity note.
    mapped: ClassVar[frozenset[str]] = frozenset()
    # The record field the total reward is read from, where every record should have it as a number: lines
    # without it, or with something else there ("high", a list), read as null and are said, once per file.
    reward_field: ClassVar[str | None] = None
    # Rollout layouts (one model answer per record): records whose messages hold no assistant turn (nothing the
    # model said, and no error that explains it) are counted and said once per file.
    says_empty_completion: ClassVar[bool] = False

    # Whether a line's sample id names one rollout (NeMo Gym's task and rollout index): an id an earlier,
    # different line of the file has is said (``say_repeats``).
    ids_name_lines: ClassVar[bool] = False

    def file_meta(self, info: FileInfo) -> None:
        """Set what the path tells (split, step) before the lines are read."""

    def distinct_line(self, rec: dict[str, Any]) -> bool:
        """Whether this record holds what makes each rollout's line its own (an id, a measured time): then a
        line that repeats it record for record is a copy wherever it is. Otherwise (the default) identical
        rollouts are identical lines, and a copy cannot be told from them (``say_repeats``)."""
        return False

    def map_record(
        self, rec: dict[str, Any], line: int, info: FileInfo, ctx: RunContext, state: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The row of one record; None to leave the line out (the layout says why, once per file: ``finish``)."""
        raise NotImplementedError

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "jsonl", "samples", cand.size)
        self.file_meta(info)
        frame = self.parse(info, ctx)
        info.frame = frame
        info.rows = frame.height
        steps = sorted(int(s) for s in frame.get_column("step").drop_nulls().unique())
        if len(steps) == 1:
            info.step = steps[0]
        elif steps:
            info.step = None
            info.steps = steps
        return info

    def parse(self, info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """Read and map every line of one file (also used by ``scan_samples`` when no frame is kept)."""
        before = len(ctx.problems)
        res = read_jsonl(info, ctx)
        if any(p.kind == UNREADABLE and p.path == info.path for p in ctx.problems[before:]):
            info.readable = False
        rows: list[dict[str, Any]] = []
        mapped: list[tuple[dict[str, Any], int]] = []  # (record, line) of each row
        state: dict[str, Any] = {"skipped_lines": res.skipped}
        for rec, line in zip(res.records, res.line_numbers, strict=True):
            try:
                row = self.map_record(rec, line, info, ctx, state)
            except Exception as exc:  # a shape no reader foresaw must cost one line, never the file
                reason = f"{type(exc).__name__}: {exc}"[:200]
                ctx.problem(info.path, WRONG_TYPE, f"line {line}: record not mapped ({reason}); line skipped")
                continue
            if row is None:
                continue
            rows.append(row)
            mapped.append((rec, line))
            self.check_tool_calls(row.get("messages"), f"line {line}", state)
            if self.says_empty_completion and row.get("exception") is None and not _answered(row.get("messages")):
                state.setdefault("no_completion", []).append(line)
            if self.reward_field is not None and row.get("reward") is None:
                raw = rec.get(self.reward_field)
                # ``"reward": null`` is a null reward, said as one; a line without the field is said as missing.
                kind = "missing" if self.reward_field not in rec else "null" if raw is None else "not_number"
                state.setdefault(kind, []).append((line, raw))
        self._say_rewards(info, ctx, state)
        self.say_tallies(info, ctx, state)
        self.say_repeats(mapped, rows, info, ctx)
        unmapped: set[str] = state.get("unmapped", set())
        if unmapped:
            names = ", ".join(sorted(unmapped)[:12]) + (" ..." if len(unmapped) > 12 else "")
            ctx.note(self.name, f"fields kept as JSON in the `extra` column: {names}")
        return self.finish(samples_frame(rows, info.path, self.name), state, info, ctx)

    def say_repeats(
        self, mapped: list[tuple[dict[str, Any], int]], rows: list[dict[str, Any]], info: FileInfo, ctx: RunContext
    ) -> None:
        """Lines that repeat an earlier line of the file record for record: said once per file with their count
        and first line, and kept (each counted), as a repeated sample id of the native layout is. A copy is
        told wherever it is among lines that are each their own (``distinct_line``); among the others (no id, no
        measured time) it is not told: identical rollouts of one prompt are identical lines, and a dump of an
        eval set repeated k times (avg@k, temperature 0) repeats its lines in order, as a file appended to
        itself would (a first version said those; a review found them healthy). Where the sample ids name lines
        (``ids_name_lines``), an id that an earlier, different line has is said too. From the parsed records: a
        key of each one's scalar fields, records compared whole only where keys meet."""
        records = [rec for rec, _ in mapped]
        lines = [line for _, line in mapped]
        copies: dict[int, int] = {}  # row index: the index of the earlier row it repeats
        seen: dict[Any, list[int]] = {}
        for i, rec in enumerate(records):
            if not self.distinct_line(rec):  # (no key made for it: verl's lines never are)
                continue
            earlier = seen.setdefault(fingerprint(rec), [])
            j = next((j for j in earlier if same_record(records[j], rec)), None)
            if j is None:
                earlier.append(i)
            else:
                copies[i] = j
        if copies:
            first = min(copies)
            ctx.warn(
                info.path,
                REPEATED_LINES.format(n=len(copies), line=lines[first], earlier=lines[copies[first]]),
            )
        if not self.ids_name_lines:
            return
        by_id: dict[Any, int] = {}
        reused: list[tuple[int, int]] = []
        for i, row in enumerate(rows):
            sid = row.get("sample_id")
            if sid is None:
                continue
            j = by_id.setdefault(sid, i)
            if j != i and i not in copies:
                reused.append((i, j))
        if reused:
            i, j = reused[0]
            ctx.warn(
                info.path,
                REUSED_IDS.format(n=len(reused), line=lines[i], sid=rows[i]["sample_id"], earlier=lines[j]),
            )

    def _say_rewards(self, info: FileInfo, ctx: RunContext, state: dict[str, Any]) -> None:
        field = self.reward_field
        bad: list[tuple[int, Any]] = state.get("not_number", [])
        if bad:
            line, raw = bad[0]
            shown = chat.compact_json(raw)
            shown = shown if len(shown) <= 40 else shown[:40] + "..."
            ctx.warn(
                info.path,
                f"{len(bad)} line(s) with a {field} that is not a number (first: line {line}, {shown}): read as null",
            )
        missing: list[tuple[int, Any]] = state.get("missing", [])
        if missing:
            ctx.warn(info.path, f"{len(missing)} line(s) without a {field} (first: line {missing[0][0]}): read as null")
        nulls: list[tuple[int, Any]] = state.get("null", [])
        if nulls:
            ctx.warn(
                info.path, f"{len(nulls)} line(s) with a null {field} (first: line {nulls[0][0]}): counted as null"
            )
        empty: list[int] = state.get("no_completion", [])
        if empty:
            ctx.warn(
                info.path,
                f"{len(empty)} rollout(s) without a completion (no assistant message with text, reasoning or a tool "
                f"call, and no error; first: line {empty[0]}): kept, with an empty completion",
            )

    @staticmethod
    def tally(state: dict[str, Any], message: str, where: str) -> None:
        """Count one case of a problem said once per file (``message`` with ``{n}`` and ``{first}``; ``where``
        is the first case, e.g. ``line 3, format: "bad"``)."""
        state.setdefault("tallies", {}).setdefault(message, []).append(where)

    @staticmethod
    def say_tallies(info: FileInfo, ctx: RunContext, state: dict[str, Any]) -> None:
        """One warning per tallied message, with its count and first case."""
        for message, cases in state.pop("tallies", {}).items():
            ctx.warn(info.path, message.format(n=len(cases), first=cases[0]))

    def check_tool_calls(self, messages: Any, where: str, state: dict[str, Any]) -> None:
        """Tally the mapped rollout's tool calls whose arguments are not JSON and its unanswerable results."""
        bad_args, orphans = tool_call_faults(messages)
        for name in bad_args:
            self.tally(state, BAD_ARGUMENTS, f"{where}, {name}")
        for cid in orphans:
            self.tally(state, ORPHAN_RESULTS, f"{where}, call id {cid!r}")

    def finish(self, frame: pl.DataFrame, state: dict[str, Any], info: FileInfo, ctx: RunContext) -> pl.DataFrame:
        """The file's frame once every line is mapped (a layout may fix what only the whole file tells)."""
        return frame

    def extra(
        self,
        rec: dict[str, Any],
        state: dict[str, Any],
        skip: Any = (),
        also: dict[str, Any] | None = None,
    ) -> str | None:
        """Unmapped top-level fields of a record as one JSON string (None when there are none); their names
        are collected in ``state`` for the file's fidelity note."""
        rest = {k: v for k, v in rec.items() if k not in self.mapped and k not in skip}
        state.setdefault("unmapped", set()).update(rest)
        if also:
            rest.update(also)
        return chat.compact_json(rest) if rest else None

    def file_frames(self, files: list[FileInfo], ctx: RunContext) -> list[tuple[FileInfo, pl.DataFrame]]:
        """The mapped frame of each readable sample file (kept by its probe, or parsed again)."""
        return [
            (f, f.frame if f.frame is not None else self.parse(f, ctx))
            for f in files
            if f.readable and f.kind == "samples"
        ]

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [frame for _, frame in self.file_frames(files, ctx)]
        if not frames:
            return None
        return S.conform_samples(pl.concat(frames, how="diagonal_relaxed").lazy())

    def warn_pooled(self, files: list[FileInfo], ctx: RunContext, advice: str) -> None:
        """For ``check_run``: files of this layout whose samples share ids at one split and step (a copy of a
        results file, or the results of two checkpoints in one folder, neither of which has a step): their rows
        are all counted and pooled into the same step and prompt groups. Said once, naming the first shared id
        and the files that hold it (from the frames the probes kept; nothing read)."""
        found = shared_ids(files, ["split", "step"])
        if found is None:
            return
        count, first, holders = found
        ctx.warn(
            holders[-1],
            f"{count} sample id(s) occur in more than one {self.name} file at the same step (first: {first!r}, "
            f"in {', '.join(holders[:3])}{' ...' if len(holders) > 3 else ''}): each file's rows are counted, as "
            f"one step and in the same prompt groups; {advice}",
        )
