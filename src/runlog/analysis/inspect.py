"""What is in a run and is it valid: built from discovery (footers, JSONL lines) plus the numeric columns."""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from .. import schema as S
from .._lazy import pl
from ..formats.base import UNREADABLE, WARNING, WRONG_TYPE, Candidate, Problem
from ..formats.common import EXCEPTION_COLUMNS
from ..formats.native import SAMPLE_RE
from ..listing import DATA_SUFFIXES, NATIVE
from ..run import Run, is_stopped, stopped_text

# Columns the numeric table leaves out: the step (a key), and the numbers that are bookkeeping, not a value of the
# sample (``schema_version``; ``prompt_turns``, where the generation starts in the messages), as ``--where``
# refuses them.
NOT_COUNTED = frozenset({"step"}) | S.NOT_VALUES
# The key columns every command reads (the groups of summarize, doctor's steps, report's prompt groups): a few bytes
# a row. ``--deep`` reads them too, so that a file whose data there is corrupt is found (and left out) by inspect
# as by those commands, not called valid by one and skipped by the others.
KEY_COLUMNS = ("step", "split", "group_id", "sample_id")
# The steps the format can hold (an int64 column, docs/format.md): a step beyond (a ``uint64`` column) is said, and
# left out of the steps and gaps.
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1


@dataclass
class Counts:
    """Rows, nulls and NaNs of one numeric column, and its valid values (neither null nor NaN: what summarize
    counts as ``reward_count``); ``inf``: how many of the valid values are +inf or -inf (summarize counts them
    as values, so a mean over them is not finite). ``nan``, ``inf`` and ``valid`` are None where footers cannot
    tell (``--deep``)."""

    count: int = 0  # rows, nulls and NaN included
    null: int = 0
    nan: int | None = 0
    inf: int | None = 0

    @property
    def valid(self) -> int | None:
        return None if self.nan is None else self.count - self.null - self.nan

    def as_dict(self) -> dict[str, int | None]:
        return {"rows": self.count, "null": self.null, "nan": self.nan, "inf": self.inf, "valid": self.valid}


@dataclass
class LayoutFiles:
    """The files of one layout: how many, their rows and bytes, and how many per schema version."""

    files: int = 0
    rows: int = 0
    bytes: int = 0
    by_version: Counter[str] = field(default_factory=Counter)  # ``version_label`` -> files
    description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"files": self.files, "rows": self.rows, "bytes": self.bytes}
        out["by_version"] = dict(self.by_version)
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass
class ScalarSummary:
    """The scalar records: how many, distinct keys, their step range, stride and gaps (None: no steps)."""

    records: int = 0
    keys: int = 0  # the metrics' keys, as summarize --scalars, plots and the report show them
    weights: int = 0  # ``<key>__count`` companions (the shards' weights of a mean), not metrics of their own
    steps: list[int] | None = None
    stride: int | None = None  # the stride of most keys (each key has its own: ``key_gaps``)
    step_gaps: list[list[int]] | None = None  # the runs of steps some key missed at its own stride
    key_gaps: list[KeyCadence] = field(default_factory=list)  # which keys missed them, at which stride

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"records": self.records, "keys": self.keys, "weights": self.weights, "steps": self.steps}
        if self.steps is not None:
            out["stride"], out["step_gaps"] = self.stride, self.step_gaps
            out["key_gaps"] = [c.as_dict() for c in self.key_gaps]
        return out


@dataclass
class RunInspection:
    """What ``runlog inspect`` reports about a run (``as_dict``: its ``--format json`` output). Captured when
    made: files read later (and found corrupt) do not change it."""

    run: str
    name: str
    layouts: dict[str, LayoutFiles]
    files: list[dict[str, Any]]  # ``FileInfo.as_dict()`` of every file, as found
    schema_versions: dict[str, int]  # version -> files
    rows: int
    rows_by_kind: dict[str, int]
    steps: dict[str, list[int]]  # split -> [first, last]
    step_gaps: dict[str, list[list[int]]]  # split -> [[first_missing, last_missing], ...]
    step_stride: dict[str, int]
    # split -> what told its stride: ``steps``, ``scalars`` (two steps, and the scalars logging
    # steps between them), ``unknown`` (one step, or two with nothing between: steps lost between them unseen)
    step_stride_from: dict[str, str]
    rows_by_split: dict[str, int]  # readable sample rows per split
    empty_steps: dict[str, list[int]]  # split -> steps whose files hold no row (a step all filtered out)
    roles: list[str]
    # Whether ``roles`` are all the roles the data hold: False where the data may hold others (plain inspect of
    # files with a nested ``roles`` column, whose names footers do not carry: ``--deep`` reads them).
    roles_complete: bool
    numeric_source: str  # "footers" or "data" (``deep``)
    numeric: dict[str, Counts]
    exceptions: int | None  # None: a file's footer does not tell (no statistics), and its text is never read
    scalars: ScalarSummary
    bytes: int
    unmatched: list[str]
    problems: list[Problem]
    fidelity: list[dict[str, str]]
    writers: dict[str, Any] | None = None  # ``EndState.as_json()`` and its ``summary``; None: nothing to tell
    # Of ``problems``, those only this inspection tells that doctor has no finding of its own for: steps beyond
    # the int64 range. ``doctor`` reports them too. Not in the JSON (they are in ``problems``).
    step_errors: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if not p.is_warning)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.is_warning)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, in the order of the JSON output."""
        return {
            "run": self.run,
            "name": self.name,
            "layouts": {k: v.as_dict() for k, v in self.layouts.items()},
            "files": [dict(f) for f in self.files],
            "schema_versions": dict(self.schema_versions),
            "rows": self.rows,
            "rows_by_kind": dict(self.rows_by_kind),
            "steps": dict(self.steps),
            "step_gaps": dict(self.step_gaps),
            "step_stride": dict(self.step_stride),
            "step_stride_from": dict(self.step_stride_from),
            "rows_by_split": dict(self.rows_by_split),
            "empty_steps": {k: list(v) for k, v in self.empty_steps.items()},
            "roles": list(self.roles),
            "roles_complete": self.roles_complete,
            "numeric_source": self.numeric_source,
            "numeric": {k: v.as_dict() for k, v in self.numeric.items()},
            "exceptions": self.exceptions,
            "scalars": self.scalars.as_dict(),
            "bytes": self.bytes,
            "unmatched": list(self.unmatched),
            "problems": [p.as_dict() for p in self.problems],
            "errors": self.errors,
            "warnings": self.warnings,
            "fidelity": [dict(f) for f in self.fidelity],
            "writers": self.writers,
        }

    # ``report["errors"]``, ``report.get(...)``: the JSON form's values, for callers (``cli/inspect_cmd.py``)
    # written against the dict this was; new code reads the fields.
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)


def scalar_stride(steps: Iterable[int]) -> int:
    """The stride of scalar steps: the gcd of the differences between consecutive steps, leaving out the first
    difference where it does not divide the gcd of the others (a first log at step 1, then every 10) and the last
    where it is no multiple of the gcd of the rest (a final log off the cadence), two differences at least kept. Not
    ``step_gaps``' rule, which keeps the first: its gcd called 1, 10, 20, ..., 100 a run of stride 1 with gaps
    2-9, 11-19, ... Nor the most common difference, nor the inner differences alone: 0, 10, 30, 50, 70 (20, 40 and
    60 lost) read as stride 20 with no gap (reviews). Three steps whose second difference is no multiple of the
    first (1, 10, 20: a first log at step 1; 0, 10, 15: a final one) take the larger: their gcd, 1, called 17 steps
    lost; with one step more the rule above tells which end is off."""
    s = sorted({int(x) for x in steps})
    diffs = [b - a for a, b in zip(s, s[1:], strict=False)]
    if not diffs:
        return 1

    def gcd(d: list[int]) -> int:
        return reduce(math.gcd, d) or 1

    best = gcd(diffs)
    if len(diffs) == 2 and diffs[1] % diffs[0]:
        best = max(diffs)
    if len(diffs) >= 3:
        first_off = gcd(diffs[1:])  # the first difference does not divide the others' stride: a first log
        if first_off % diffs[0]:
            best = max(best, first_off)
        last_off = gcd(diffs[:-1])  # the last is no multiple of the others' stride: a final log
        if diffs[-1] % last_off:
            best = max(best, last_off)
    if len(diffs) >= 4:
        inner = gcd(diffs[1:-1])  # both
        if inner % diffs[0] and diffs[-1] % inner:
            best = max(best, inner)
    # A few lines off the cadence mid-run (a resume logging at step 505 of a run every 10) are no stride of 5: the
    # most common difference (the smaller of equals) where at most one in twenty differences is no multiple of it.
    tally = Counter(diffs)
    mode = min(tally, key=lambda x: (-tally[x], x))
    odd = sum(n for x, n in tally.items() if x % mode)
    if odd > 0 and odd * 20 <= len(diffs) and mode > best:
        best = mode
    return best


def gaps_at(steps: Iterable[int], every: int) -> list[list[int]]:
    """The missing steps between ``steps`` held at stride ``every`` (``[[first_missing, last_missing], ...]``): the
    steps of the cadence (those of the second step's remainder modulo ``every``; of the first's, where there are
    two) that none holds between two steps held. A first log off the cadence (1, then 20, 30, ... every 10) misses
    step 10, not 11; where every step is on one cadence this is counting from each step held, as ``step_gaps``."""
    s = sorted({int(x) for x in steps})
    if not s:
        return []
    phase = s[1 if len(s) > 2 else 0] % every
    out = []
    for a, b in zip(s, s[1:], strict=False):
        first = a + (phase - a - 1) % every + 1  # the cadence's first step after ``a``
        last = b - 1 - (b - 1 - phase) % every  # and its last before ``b``
        if first <= last:
            out.append([first, last])
    return out


@dataclass
class KeyCadence:
    """Scalar keys that share a stride and the steps they missed at it (``key_cadences``)."""

    stride: int
    gaps: list[list[int]]  # ``[[first_lost, last_lost], ...]`` at ``stride``, as ``gaps_at``
    keys: list[str]  # sorted
    file: str | None = None  # the scalars file whose records those steps are missing from

    def as_dict(self, names: int = 5) -> dict[str, Any]:
        out = {"stride": self.stride, "gaps": self.gaps, "keys": len(self.keys), "names": self.keys[:names]}
        return {**out, "file": self.file}


def _segment_gcd(values: Any, lo: Any, hi: Any) -> Any:
    """``gcd(values[lo[i]:hi[i]])`` for each ``i`` (0 where ``lo[i] >= hi[i]``), in one ``np.gcd.reduceat``."""
    import numpy as np

    out = np.zeros(len(lo), dtype=np.int64)
    ok = lo < hi
    if ok.any():
        padded = np.append(values, 0)  # ``hi`` may be ``len(values)``: reduceat's indices must be below the length
        idx = np.empty(2 * int(ok.sum()), dtype=np.int64)
        idx[0::2], idx[1::2] = lo[ok], hi[ok]
        out[ok] = np.gcd.reduceat(padded, idx)[0::2]
    return out


def key_cadences(frame: pl.DataFrame) -> tuple[dict[str, int], list[KeyCadence]]:
    """Each scalar key's stride (``scalar_stride``, of its own steps in a file) and the steps whose records its
    file lost, from rows of ``key``, ``step`` and ``source`` (the file; without it, one file), ``<key>__count``
    weights among them (their records are records): ``({key: stride}, the lost steps grouped by file, stride and
    steps, with the keys whose cadence held them)``.

    A file's record is lost at a step where a key of the file, at its own cadence (``gaps_at``: its stride, the
    phase of its second step, between its first and last step in the file), had a value due and the file has no
    record at all: a line lost, a process or an evaluation job down for a while (its own file), whatever other
    files logged there. Not a key left out of records its file wrote at that step: a key written where something
    happened (StatsTracker's ``<key>/nonfinite``, at the steps that had NaN), a key every 10 beside one every 25, or
    one that skipped a step others were logged at, is no lost record (reviews: thresholds on how evenly a key
    was logged called a third of a run's lines lost "logged at some steps only", and a NaN count at 80 % of the
    steps 40 lost steps). An evaluation written as a record of its own in the file that also holds the train
    records of that step is not told from one never written.

    Vectorised over every key at once (a JaxARC run logs thousands): the gcds of each key's step differences, with
    and without its first and last, in one ``reduceat`` each; then the intervals of missed steps, one of each
    distinct interval of a file, against the file's record steps. ``test_inspect_audit18`` holds it to a plain
    Python reading of this rule."""
    import numpy as np

    rows = (
        frame.lazy()
        .select(
            pl.col("key").cast(pl.String),
            pl.col("step").cast(pl.Int64),
            (pl.col("source").cast(pl.String) if "source" in frame.columns else pl.lit("")).alias("source"),
        )
        .filter(pl.col("key").is_not_null() & pl.col("step").is_not_null())
        .collect()
    )
    weight = pl.col("key").str.ends_with("__count")
    metrics = rows.filter(~weight)
    if metrics.is_empty():
        return {}, []
    by_file = {src: steps for src, steps in rows.group_by("source").agg(pl.col("step").unique().sort()).iter_rows()}
    streams, members = _streams(metrics)
    pairs = (
        metrics.join(streams, on=["key", "source"])
        .group_by("stream", "key")
        .agg(pl.col("step").unique().sort())
        .sort("stream", "key")
    )
    records: dict[str, list[int]] = {}
    for lbl, srcs in members.items():
        records[lbl] = by_file[srcs[0]] if len(srcs) == 1 else sorted({x for src in srcs for x in by_file[src]})
    names, sources = pairs["key"].to_list(), pairs["stream"].to_list()
    steps = pairs["step"].explode().to_numpy()
    held = pairs["step"].list.len().to_numpy().astype(np.int64)  # UInt32: int64 with uint64 sums is float
    if int(steps.max()) > 2**61 or int(steps.min()) < -(2**61):  # near int64's ends (a stride could wrap): Python
        lists = pairs["step"].to_list()
        every_of = [scalar_stride(v) for v in lists]
        raw = [(i, a, b) for i, v in enumerate(lists) for a, b in gaps_at(v, every_of[i])]
        owner = [i for i, _, _ in raw]
        lo, hi = [a for _, a, _ in raw], [b for _, _, b in raw]
    else:
        best, own, low, high = _vector_gaps(steps, held)
        every_of = best.tolist()
        owner, lo, hi = own.tolist(), low.tolist(), high.tolist()
    strides: dict[str, int] = {}
    for name, st in zip(names, every_of, strict=True):
        strides.setdefault(name, int(st))  # a key in several files: its first file's
    # Each distinct interval of a file once (keys logged together miss the same steps), against its records.
    lost_of: dict[tuple[str, int, int, int], list[list[int]]] = {}
    found: dict[tuple[str, int], list[list[int]]] = {}
    for i, a, b in zip(owner, lo, hi, strict=True):
        src, st = sources[i], int(every_of[i])
        key = (src, st, int(a), int(b))
        lost = lost_of.get(key)
        if lost is None:
            lost = lost_of[key] = _not_recorded(records[src], st, int(a), int(b))
        if lost:
            found.setdefault((src, i), []).extend(lost)
    groups: dict[tuple[str, int, tuple[tuple[int, int], ...]], list[str]] = {}
    for (src, i), gaps in found.items():
        groups.setdefault((src, int(every_of[i]), tuple((a, b) for a, b in gaps)), []).append(names[i])
    cadences = [
        KeyCadence(st, [list(x) for x in g], sorted(ks), _stream_name(members[src]))
        for (src, st, g), ks in groups.items()
    ]
    cadences.sort(key=lambda c: (c.gaps[0][0], c.file or "", -len(c.keys), c.stride))
    return strides, cadences


def _streams(metrics: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """Each key's files as streams of records: files whose steps follow one another (a run resumed into a new
    file, a log rotated, a file per step) are one stream, judged together; files whose spans overlap (processes
    writing at once) are streams of their own. ``(key, source, stream)`` rows, and each stream's files. A review:
    judged file by file, a file per step never lost a step, and the steps lost between two files of a resumed
    run were due in neither."""
    spans = (
        metrics.group_by("key", "source")
        .agg(pl.col("step").min().alias("lo"), pl.col("step").max().alias("hi"))
        .sort("key", "lo", "hi", "source")
    )
    out_key: list[str] = []
    out_src: list[str] = []
    out_stream: list[str] = []
    members: dict[str, list[str]] = {}
    current: str | None = None
    open_: list[list[Any]] = []  # [last step, sources] per stream of the current key

    def flush() -> None:
        for _, srcs in open_:
            lbl = "\x1f".join(srcs)
            members.setdefault(lbl, srcs)
            out_key.extend([current or ""] * len(srcs))
            out_src.extend(srcs)
            out_stream.extend([lbl] * len(srcs))

    for key, src, lo, hi in spans.iter_rows():
        if key != current:
            flush()
            current, open_ = key, []
        for stream in open_:
            if stream[0] < lo:  # follows this stream's last step: the same stream
                stream[0] = hi
                stream[1].append(src)
                break
        else:
            open_.append([hi, [src]])
    flush()
    schema = {"key": pl.String, "source": pl.String, "stream": pl.String}
    return pl.DataFrame({"key": out_key, "source": out_src, "stream": out_stream}, schema=schema), members


def _mode_stride(d: Any, owner: Any, m: Any, best: Any) -> Any:
    """``scalar_stride``'s last rule for every key at once: the most common difference (the smaller of equals)
    where at most one in twenty of the key's differences is no multiple of it, and it is larger."""
    import numpy as np

    if not len(d):
        return best
    order = np.lexsort((d, owner))
    od, oo = d[order], owner[order]
    start = np.flatnonzero(np.concatenate(([True], (od[1:] != od[:-1]) | (oo[1:] != oo[:-1]))))
    counts = np.diff(np.append(start, len(od)))
    run_owner, run_d = oo[start], od[start]
    top = np.zeros(len(best), dtype=np.int64)
    np.maximum.at(top, run_owner, counts)
    first = np.full(len(best), np.iinfo(np.int64).max, dtype=np.int64)
    hit = counts == top[run_owner]
    np.minimum.at(first, run_owner[hit], run_d[hit])  # the smallest of the most common differences
    mode = np.where(first < np.iinfo(np.int64).max, first, 1)
    odd = np.bincount(owner, weights=(d % mode[owner] != 0).astype(float), minlength=len(best))
    take = (odd > 0) & (odd * 20 <= m) & (mode > best)
    return np.where(take, mode, best)


def _stream_name(files: list[str]) -> str | None:
    """A stream's files as said: the file, or the first and last of several."""
    if len(files) == 1:
        return files[0] or None
    return f"{files[0]} ... {files[-1]} ({len(files)} files)"


def _not_recorded(records: list[int], every: int, lo: int, hi: int) -> list[list[int]]:
    """The steps ``lo``, ``lo + every``, ..., ``hi`` at which ``records`` (sorted) holds none, as runs: by the
    records inside the range, never step by step (``gaps_without``'s, for one range of steps already sorted)."""
    out: list[list[int]] = []
    start = lo
    inside = records[bisect.bisect_left(records, lo) : bisect.bisect_right(records, hi)]
    for x in (x for x in inside if (x - lo) % every == 0):
        if x > start:
            out.append([start, x - every])
        start = x + every
    if start <= hi:
        out.append([start, hi])
    return out


def _vector_gaps(steps: Any, held: Any) -> tuple[Any, Any, Any, Any]:
    """``scalar_stride`` and ``gaps_at`` of every key at once, from the keys' sorted steps one after another
    (``held`` of each): each key's stride, and each gap's key, first and last missed step."""
    import numpy as np

    n = len(held)
    code = np.repeat(np.arange(n), held)
    diffs = np.diff(steps)
    same = code[1:] == code[:-1]
    d = diffs[same]  # each key's differences, contiguous, in key order
    owner = code[1:][same]
    before = steps[:-1][same]  # the step each difference starts from
    m = np.bincount(owner, minlength=n)  # differences per key
    start = np.concatenate(([0], np.cumsum(m)[:-1])).astype(np.int64)
    end = start + m
    whole = _segment_gcd(d, start, end)
    best = np.where(whole == 0, 1, whole)
    three = m >= 3
    first = d[np.minimum(start, max(len(d) - 1, 0))] if len(d) else np.zeros(n, dtype=np.int64)
    last = d[np.maximum(end - 1, 0)] if len(d) else np.zeros(n, dtype=np.int64)
    safe = lambda x: np.where(x == 0, 1, x)  # noqa: E731 (a gcd of nothing: used only where m says it is not)
    take = (m == 2) & (last % safe(first) != 0)  # three steps: the larger difference
    best = np.where(take, np.maximum(first, last), best)
    first_off = _segment_gcd(d, start + 1, end)  # the first difference does not divide the others' stride
    take = three & (first_off % safe(first) != 0)
    best = np.where(take, np.maximum(best, first_off), best)
    last_off = _segment_gcd(d, start, end - 1)  # the last is no multiple of the others' stride
    take = three & (last % safe(last_off) != 0)
    best = np.where(take, np.maximum(best, last_off), best)
    inner = _segment_gcd(d, start + 1, end - 1)  # both
    take = (m >= 4) & (inner % safe(first) != 0) & (last % safe(inner) != 0)
    best = np.where(take, np.maximum(best, inner), best)
    best = _mode_stride(d, owner, m, best)

    every = best[owner]
    # ``gaps_at``: the cadence of each key's second step (of its first, where it has two).
    at = np.concatenate(([0], np.cumsum(held)[:-1])) + np.where(held > 2, 1, 0)
    phase = (steps[np.minimum(at, len(steps) - 1)] % best)[owner]
    after = before + d
    lo = before + (phase - before - 1) % every + 1  # the cadence's first step after each step held
    hi = after - 1 - (after - 1 - phase) % every  # and its last before the next
    gap = lo <= hi
    return best, owner[gap], lo[gap], hi[gap]


def lost_step_runs(cadences: list[KeyCadence], every: int) -> list[list[int]]:
    """The steps some key lost (``key_cadences``), as runs ``[first, last]`` of steps ``every`` apart: read at
    ``every`` (inspect's ``scalars.stride``), each run is exactly steps lost, and the runs together are every step
    lost, each once, whatever the stride of the key that lost it (an eval key every 100 that lost 200 and 300 is
    ``[200, 200], [300, 300]`` beside a stride of 1, not ``[200, 300]``, 101 steps). The runs are those of each
    phase (the step modulo ``every``): its lost steps, sorted, cut wherever two are not ``every`` apart; runs of
    two phases may interleave (keys at even and at odd steps, both every 2, that lost 8-38 and 9-39 are ``[8, 38],
    [9, 39]``, not 32 runs of one step).

    By ranges, never step by step: a key that lost steps 4 to 2**62 at the stride read is one run, worked out from
    its ends (every lost step made into an array cost 1.6 GB and a minute for a gap of 20 million steps, and failed
    beyond, an audit), and so is a key of a stride that divides ``every`` (each of its phases). A key of another
    stride has its lost steps listed one by one only where no run of the stride read holds them (an eval key every
    2 beside a stride of 1 whose keys lost the same steps adds nothing); there each is a run of its own anyway."""
    every = max(1, int(every))
    ranges: list[tuple[int, int]] = []  # steps a, a + every, ..., b
    others: list[tuple[int, int, int]] = []  # steps a, a + step, ..., b: step a multiple of every, above it
    for c in cadences:
        stride = max(1, int(c.stride))
        for a, b in c.gaps:
            a, b = int(a), int(b)
            if a == b or stride == every:
                ranges.append((a, b))
                continue
            # Split by phase: each phase's steps are ``lcm`` apart (a stride dividing ``every``: ranges).
            lcm = stride * every // math.gcd(stride, every)
            for k in range(min(lcm // stride, (b - a) // stride + 1)):
                first = a + k * stride
                last = first + (b - first) // lcm * lcm
                (ranges.append((first, last)) if lcm == every else others.append((first, last, lcm)))
    by_phase = _phase_runs(ranges, every)
    single: list[tuple[int, int]] = []
    for a, b, step in others:
        runs = by_phase.get(a % every, [])
        i = bisect.bisect_left(runs, a, key=lambda r: r[1])  # the first run that ends at a or after
        x = a
        while x <= b:
            while i < len(runs) and runs[i][1] < x:
                i += 1
            if i < len(runs) and runs[i][0] <= x:  # held by a run (one phase: every step of it between its ends)
                x += ((runs[i][1] - x) // step + 1) * step
                continue
            last = b if i == len(runs) else min(b, x + (runs[i][0] - 1 - x) // step * step)
            single += [(y, y) for y in range(x, last + 1, step)]  # the steps of no run: one run each, listed
            x = last + step
    if single:
        by_phase = _phase_runs(ranges + single, every)
    return sorted(r for runs in by_phase.values() for r in runs)


def _phase_runs(spans: list[tuple[int, int]], every: int) -> dict[int, list[list[int]]]:
    """Per phase (the step modulo ``every``), the union of ``spans`` (each ``(a, b)`` the steps ``a, a + every,
    ..., b``) as sorted runs ``[first, last]``, merged where they overlap or touch. The cost is that of the spans,
    never of the steps between."""
    by_phase: dict[int, list[list[int]]] = {}
    for a, b in sorted(spans):
        runs = by_phase.setdefault(a % every, [])
        if runs and a <= runs[-1][1] + every:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    return by_phase


def step_gaps(steps: list[int], known: list[int] | None = None) -> tuple[int, list[list[int]]]:
    """The stride of a split's steps and the runs of missing steps between its first and last, as
    ``[[first_missing, last_missing], ...]``.

    The stride is the gcd of the differences between the steps (runs that log every N steps are not gappy),
    leaving out the last step where every other step lies on a stride of at least two differences and the
    last does not: a schedule of every N steps plus the final one (eval at 0, 8, 16 and 20) has stride 8 and
    no gaps, not stride 4 with gaps at 4 and 12. Not so of the first step: 0, 1, 3, 5, 7, 9 is a run that lost
    every other step (a review), not a stride of 2 after a first step off it. A missing step is one of the
    stride's steps (counted from each step held) before the next step held. Scalar keys: ``scalar_stride``.

    ``known`` are all steps named by files, readable or not: they set the stride, so that an unreadable
    file leaves a gap rather than doubling the stride. ``doctor`` and ``watch`` use this same rule.

    Two steps have one difference, which tells no stride: their difference is taken (eval at 0 and 8 is no
    gap), and ``inspect`` says the stride is not known (files of steps 0 and 9 only may be a schedule of every
    9 steps, or a run that lost 1-8). The scalars' steps do not tell it: trainers log scalars more often than
    they save samples (every 10 steps and every 50, the Flink team's notes), and a baseline evaluation at step
    0 and a final one beside a train split saved every 10 steps are not 99 lost steps."""
    uniq = sorted(set(steps))
    if len(uniq) < 2:
        return 1, []
    every = sorted(set(uniq) | set(known or []))
    diffs = [b - a for a, b in zip(every, every[1:], strict=False)]
    stride = reduce(math.gcd, diffs) or 1
    if len(diffs) >= 3:
        head = reduce(math.gcd, diffs[:-1]) or 1
        if head > stride:  # the last step is off the stride the others keep: a final step, not the stride
            stride = head
    gaps: list[list[int]] = []
    for a, b in zip(uniq, uniq[1:], strict=False):
        last_missing = a + stride * ((b - a - 1) // stride)  # the stride's last step before ``b``
        if last_missing > a:
            gaps.append([a + stride, last_missing])
    return stride, gaps


# What told a split's stride (``RunInspection.step_stride_from``).
STRIDE_FROM_STEPS = "steps"  # three steps or more: the gcd of their differences
STRIDE_UNKNOWN = "unknown"  # one step, or two and nothing between: the stride shown is 1 or their difference


def _numeric_stats(run: Run) -> tuple[dict[str, Counts], list[str]]:
    """count / null / NaN / ±inf of the sample reward, each role's reward and KL, each reward component
    (``component/<name>``: over every sample, ``null`` those without a value), and every other numeric
    sample column the footers list (``num_turns``, a trainer's own figures: what plain ``inspect`` shows,
    so that ``--deep`` is never a smaller table); and the role names the data hold, in order of first sight.
    Reads those columns' data (projection pushdown), never text: this is ``inspect --deep``."""
    out: list[tuple[str, str, Counts]] = []  # (kind, key, counts): ``_keyed`` names them
    extras = list(_extra_numeric(run))
    mixed = list(_extra_numeric(run, mixed=True))
    [r_df, roles, parts] = run.collect(lambda: [_reward_query(run, extras), _roles_query(run), _components_query(run)])
    r = r_df.row(0, named=True)
    if r["count"]:
        reward = Counts(int(r["count"] or 0), int(r["null"] or 0), int(r["nan"] or 0), int(r["inf"] or 0))
        out.append((KIND_COLUMN, "reward", reward))
    seen: list[str] = []
    for row in roles.iter_rows(named=True):
        seen.append(str(row["role"]))
        for metric in ("reward", "kl"):
            counts = Counts(
                int(row["count"]), int(row[f"{metric}_null"]), int(row[f"{metric}_nan"]), int(row[f"{metric}_inf"])
            )
            out.append((KIND_ROLE, f"{row['role']}/{metric}", counts))
    for row in parts.iter_rows(named=True):  # a component's NaN is left out of its mean: count it here
        counts = Counts(int(row["count"]), int(row["null"]), int(row["nan"]), int(row["inf"]))
        out.append((KIND_COMPONENT, f"component/{row['name']}", counts))
    # Rows and nulls as ``_footer_numeric`` counts them: only the files that hold the column (the scan fills it
    # with nulls elsewhere); NaN and ±inf from the data, where only a value can be either. Counted after the
    # data were read, so that a file found unreadable there is left out here too.
    footer = _footer_numeric(run)
    for i, name in enumerate(extras):
        counts = footer.get(name, Counts())
        out.append(
            (KIND_COLUMN, name, Counts(counts.count, counts.null, int(r[f"x{i}_nan"] or 0), int(r[f"x{i}_inf"] or 0)))
        )
    for name in mixed:
        counts = footer.get(name, Counts())
        nan, inf = _mixed_nan_inf(run, name)
        out.append((KIND_COLUMN, name, Counts(counts.count, counts.null, nan, inf)))
    return _keyed(out), seen


# What a key of ``--deep``'s numeric table stands for: a role's reward or KL (``solver/reward``), a reward
# component (``component/<name>``), a sample column (``reward``, ``num_turns``, a trainer's own).
KIND_ROLE, KIND_COMPONENT, KIND_COLUMN = "role", "component", "column"


def _keyed(entries: list[tuple[str, str, Counts]]) -> dict[str, Counts]:
    """The numeric table from ``(kind, key, counts)`` entries, in their order. A key that entries of two kinds
    share (a role named ``component`` and a component ``reward``: ``component/reward``; a column
    ``solver/reward`` beside role solver's) is written by kind for each, ``role:solver/reward``,
    ``component:reward``, ``column:solver/reward`` (``--where``'s ``role:`` and ``component:``): one flat key
    made the later entry overwrite the earlier, its figures shown for the other."""
    qualified = {KIND_ROLE: "role:{}", KIND_COMPONENT: "component:{}", KIND_COLUMN: "column:{}"}
    names = [key for _, key, _ in entries]
    for _ in range(len(entries)):  # a qualified name may meet a column named so: qualified in turn
        kinds: dict[str, set[str]] = {}
        for (kind, _, _), name in zip(entries, names, strict=True):
            kinds.setdefault(name, set()).add(kind)
        shared = {name for name, k in kinds.items() if len(k) > 1}
        if not shared:
            break
        names = [
            qualified[kind].format(key.removeprefix("component/") if kind == KIND_COMPONENT else key)
            if name in shared
            else name
            for (kind, key, _), name in zip(entries, names, strict=True)
        ]
    return {name: counts for (_, _, counts), name in zip(entries, names, strict=True)}


def _extra_numeric(run: Run, *, mixed: bool = False) -> dict[str, Counts]:
    """The numeric sample columns besides the canonical ones that the samples scan carries (under the name
    the files give them), with their footer counts. A layout's own per-role columns (Flink's
    ``solver_reward``) are not in the scan: ``--deep`` counts them as ``solver/reward``. ``mixed``: instead,
    those that the footers count as numbers and the scan reads as another type (a step that wrote the column as
    text: the scan's type is then text), which plain inspect lists over the files where they are numbers."""
    scan = run.samples.collect_schema()
    canonical = set(S.SAMPLE_COLUMNS) | NOT_COUNTED
    return {
        name: counts
        for name, counts in _footer_numeric(run).items()
        if name not in canonical and name in scan and scan[name].is_numeric() != mixed
    }


def _mixed_nan_inf(run: Run, name: str) -> tuple[int, int]:
    """NaN and ±inf of an extra column over the files where it is a number (``_extra_numeric(mixed=True)``):
    none where those are all integers; else read from those files alone (a text ``"nan"`` elsewhere is no NaN)."""
    files = [
        f
        for f in run.files
        if f.kind == "samples" and f.readable and name in f.columns and _is_number_type(f.columns[name])
    ]
    floats = [f for f in files if not f.columns[name].startswith(("int", "uint", "Int", "UInt"))]
    if not floats:
        return 0, 0
    sub = Run(root=run.root, files=floats, ctx=run.ctx)
    value = pl.col(name).cast(pl.Float64)
    [df] = sub.collect(
        lambda: [sub.samples.select(value.is_nan().sum().alias("nan"), value.is_infinite().sum().alias("inf"))]
    )
    return int(df["nan"][0] or 0), int(df["inf"][0] or 0)


# Layouts whose sample ids are the writer's own, unique within a run (format.md): a repeated one is a row read
# twice (a file copied under another shard's name, a step written twice).
UNIQUE_ID_LAYOUTS = ("runlog", "flink")


def repeated_ids(run: Run) -> None:
    """``--deep``: sample ids that occur more than once, in layouts whose ids are unique within a run, said
    as one warning (how many, and the first with the files that hold it). Reads the id column only."""
    if (problem := repeated_ids_problem(run)) is not None:
        run.ctx.problems.append(problem)


def repeated_ids_problem(run: Run) -> Problem | None:
    """``repeated_ids``' warning, not said: ``inspect --deep`` reads the run again where a read found a file
    unreadable, and says the warning of the last read once."""
    files = [f for f in run.files if f.kind == "samples" and f.readable and f.layout in UNIQUE_ID_LAYOUTS]
    if not files:
        return None
    sub = Run(root=run.root, files=files, ctx=run.ctx)

    def query() -> list[pl.LazyFrame]:
        ids = sub.samples.select("sample_id", "source").filter(pl.col("sample_id").is_not_null())
        repeated = ids.group_by("sample_id").agg(pl.len().alias("n"), pl.col("source").unique().sort())
        return [repeated.filter(pl.col("n") > 1).sort("sample_id")]

    [rep] = sub.collect(query)
    if not rep.height:
        return None
    first = rep.row(0, named=True)
    where = ", ".join(first["source"][:3]) + (" ..." if len(first["source"]) > 3 else "")
    extra = rep["n"].sum() - rep.height
    return Problem(
        first["source"][0],
        WARNING,
        f"{rep.height} sample id(s) occur more than once ({extra} extra row(s); first: {first['sample_id']!r}, "
        f"{first['n']} times, in {where}): rows read twice (a copied file?), which are "
        "counted twice, or distinct samples given one id (ids are meant to be unique within a run)",
    )


def _read_keys(run: Run) -> None:
    """``--deep``: read the key columns of every sample (``KEY_COLUMNS``: numbers and short ids), values and
    all (a maximum: a null count may be told by the levels alone), so that a file whose data there is corrupt
    behind an intact footer is found and left out here, as summarize and doctor leave it out. Never a text: only
    the key columns every sample file holds as columns of its own (a Flink file derives its ``group_id`` from
    its trajectory text, and its step and split from its name: none is read there)."""
    files = [f for f in run.files if f.kind == "samples" and f.readable]
    keys = [c for c in KEY_COLUMNS if files and all(c in f.columns for f in files)]
    if keys:
        run.collect(lambda: [run.samples.select(pl.col(c).max() for c in keys)])


def _reward_query(run: Run, extras: list[str]) -> pl.LazyFrame:
    """The reward's counts, and the NaN and ±inf of each of ``extras`` (``x0_nan``, ``x0_inf``, ...; 0 for an
    integer column)."""
    counts = []
    for i, name in enumerate(extras):
        as_float = pl.col(name).cast(pl.Float64)
        counts += [as_float.is_nan().sum().alias(f"x{i}_nan"), as_float.is_infinite().sum().alias(f"x{i}_inf")]
    return run.samples.select(
        pl.len().alias("count"),
        pl.col("reward").is_null().sum().alias("null"),
        pl.col("reward").is_nan().sum().alias("nan"),
        pl.col("reward").is_infinite().sum().alias("inf"),
        *counts,
    )


def _components_query(run: Run) -> pl.LazyFrame:
    """Per reward component (``name``): the samples, and of them those without a value (the component
    absent or null), NaN and ±inf. From the layouts' wide view (one column per component) where every
    layout has one, else from the samples' component lists."""
    names = run.component_names()
    wide = run.numeric_wide({}, names, []) if names else None
    if wide is not None:
        return pl.concat(
            [
                wide.select(
                    pl.lit(name).alias("name"),
                    pl.len().cast(pl.Int64).alias("count"),
                    (v := pl.col(f"component/{name}")).is_null().sum().cast(pl.Int64).alias("null"),
                    v.is_nan().sum().cast(pl.Int64).alias("nan"),
                    v.is_infinite().sum().cast(pl.Int64).alias("inf"),
                )
                for name in names
            ]
        )
    samples = run.samples.select(pl.len().cast(pl.Int64).alias("count"))
    value = pl.col("value")
    per_name = (
        first_components(run.samples.select("reward_components"))
        .group_by("name")
        .agg(
            value.is_not_null().sum().cast(pl.Int64).alias("values"),
            value.is_nan().sum().cast(pl.Int64).alias("nan"),
            value.is_infinite().sum().cast(pl.Int64).alias("inf"),
        )
    )
    return (
        per_name.join(samples, how="cross")
        .select("name", "count", (pl.col("count") - pl.col("values")).alias("null"), "nan", "inf")
        .sort("name")
    )


def first_components(lf: pl.LazyFrame) -> pl.LazyFrame:
    """``lf``'s rows (a ``reward_components`` column and any others), one row per sample and component name
    (``name``, ``value``): where a sample names a component twice, its first entry, as every summary reads it
    (``formats.base.component_value``). Counting both entries made ``inspect --deep`` count two values where
    summarize counts one, and the W&B upload log their mean."""
    return (
        lf.with_row_index("__sample__")
        .explode("reward_components")
        .filter(pl.col("reward_components").is_not_null())
        .unnest("reward_components")
        .filter(pl.col("name").is_not_null())
        .unique(subset=["__sample__", "name"], keep="first", maintain_order=True)
        .drop("__sample__")
    )


def _roles_query(run: Run) -> pl.LazyFrame:
    """Per-role null/NaN counts. The role rows come from ``Run.numeric``, each layout's fastest route."""
    return (
        run.numeric({}, [])
        .filter(pl.col("role").is_not_null())
        .group_by("role", maintain_order=True)
        .agg(
            pl.len().alias("count"),
            pl.col("reward").is_null().sum().alias("reward_null"),
            pl.col("reward").is_nan().sum().alias("reward_nan"),
            pl.col("reward").is_infinite().sum().alias("reward_inf"),
            pl.col("kl").is_null().sum().alias("kl_null"),
            pl.col("kl").is_nan().sum().alias("kl_nan"),
            pl.col("kl").is_infinite().sum().alias("kl_inf"),
        )
    )


def _exceptions(run: Run) -> int | None:
    """Failed trajectories, from footer null counts (Parquet) or the already-parsed frames (JSONL, CSV). None
    where a Parquet file of one row or more has no statistics of its exception column in its footer: that
    column is text (a traceback may be megabytes), which inspect never reads, so the count is not known
    (summarize reads it)."""
    total = 0
    for f in run.files:
        # A file of no row holds no exception (a step whose rollouts were all filtered out): pyarrow writes no
        # statistics for its empty row group, which made the whole run's count "not known".
        if f.kind != "samples" or not f.readable or f.rows == 0:
            continue
        col = next((c for c in EXCEPTION_COLUMNS if c in f.columns), None)
        if f.fmt != "parquet":
            # The parsed frame: a layout's mapped rows hold the canonical ``exception`` (its file lists no
            # columns), a CSV's its own.
            frame = f.frame
            name = col if frame is not None and col in frame.columns else "exception"
            if frame is not None and name in frame.columns:
                total += frame.height - frame.get_column(name).null_count()
        elif col is not None and col in f.null_counts and f.rows is not None:
            total += f.rows - f.null_counts[col]
        elif col is not None and f.columns[col] != "null":  # (a column of the null type holds no exception)
            return None
    return total


def _footer_numeric(run: Run) -> dict[str, Counts]:
    """values / null of every numeric sample column, from footer statistics (Parquet) or the parsed
    frame (JSONL, CSV). NaN is not in Parquet statistics: it is None here; ``--deep`` counts it. A Parquet
    file whose footer has no statistics for a numeric column (a writer that writes none) has that column
    read (numbers only, a few bytes a row), so that its rows are counted like any other file's."""
    out: dict[str, Counts] = {}
    # Rows of columns of the ``null`` type (every value null: an extra column no row of a step had a number for,
    # which pyarrow writes with that type): the file holds the column, every row null. Counted where the column
    # is a number in another file, so that a text column null in one file does not show as numeric.
    empty: Counter[str] = Counter()
    for f in run.files:
        if f.kind != "samples" or not f.readable or f.rows is None:
            continue
        if f.fmt in ("jsonl", "csv") and f.frame is not None:
            _add_frame_numeric(out, f.frame, empty)
            continue
        for col, t in f.columns.items():
            if t == "null" and col not in NOT_COUNTED and col not in EXCEPTION_COLUMNS:
                empty[col] += f.rows
        nulls = dict(f.null_counts)
        if f.fmt == "parquet":
            unknown = [c for c, t in f.columns.items() if c not in nulls and _counted(c, t)]
            if unknown:
                read = _read_null_counts(run, f, unknown)
                if read is None:
                    continue  # found unreadable: left out, as everywhere in the report
                nulls.update(read)
        for col, n_null in nulls.items():
            if col not in f.columns or not _counted(col, f.columns[col]):
                continue
            entry = out.setdefault(col, Counts(nan=None, inf=None))
            entry.count += f.rows
            entry.null += n_null
    for col, rows in empty.items():
        if col in out:
            out[col].count += rows
            out[col].null += rows
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "reward", kv[0])))


def _counted(col: str, type_name: str) -> bool:
    """Whether the numeric table counts a footer column: a number, not the step, the bookkeeping (``NOT_COUNTED``)
    or the exception."""
    return col not in EXCEPTION_COLUMNS and col not in NOT_COUNTED and _is_number_type(type_name)


def _read_null_counts(run: Run, f: Any, columns: list[str]) -> dict[str, int] | None:
    """The null counts of some numeric columns of one Parquet file, read from its data; None where they cannot
    be read (corrupt data behind an intact footer): the file is then said unreadable and left out."""
    from ..formats.common import read_parquet_columns

    # Kept for the run read: the report counts the footers' columns more than once (the table, --deep's extras),
    # and a file without statistics must not be read again each time (on an object store, the whole object).
    kept: dict[tuple[str, tuple[str, ...]], dict[str, int]] = run.ctx.cache.setdefault("inspect_null_counts", {})
    key = (f.path, tuple(columns))
    if key in kept:
        return kept[key]
    try:
        table = read_parquet_columns(f, columns)
    except Exception as exc:  # noqa: BLE001  (a corrupt column is a problem of that file)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        run.ctx.problem(
            f.path,
            UNREADABLE,
            f"corrupt data in {', '.join(columns)} (the footer is intact, without statistics): {reason}; file skipped",
        )
        f.readable = False
        return None
    kept[key] = {name: table.column(name).null_count for name in columns}
    return kept[key]


def _add_frame_numeric(out: dict[str, Counts], frame: Any, empty: Counter[str]) -> None:
    """A JSONL/CSV file is parsed in memory already: its NaN counts cost nothing, so they are exact. A column of
    the ``Null`` type (every value null) goes to ``empty``: counted where another file has it as a number."""
    for col, dtype in frame.schema.items():
        if col in NOT_COUNTED:
            continue
        if dtype == pl.Null:
            empty[col] += frame.height
            continue
        if not dtype.is_numeric():
            continue
        s = frame.get_column(col)
        entry = out.setdefault(col, Counts())
        entry.count += s.len()
        entry.null += s.null_count()
        if entry.nan is not None:
            entry.nan += int(s.is_nan().sum()) if dtype.is_float() else 0
        if entry.inf is not None:
            entry.inf += int(s.is_infinite().sum()) if dtype.is_float() else 0


def _is_number_type(t: str) -> bool:
    return t in ("double", "float", "halffloat") or t.startswith(("int", "uint", "Float", "Int", "UInt"))


def version_label(version: int | None, readable: bool) -> str:
    """A file's entry in ``by_version``, as the table's version column shows it: its version (``2``; a
    manifest's too, so that the counts add up to ``files``), ``2 (skipped)`` for a file of a known version
    that was not read (a newer or unknown version, a column missing), ``unreadable`` where no version could be
    read, ``-`` for a layout without versions."""
    if version is None:
        return "-" if readable else "unreadable"
    return str(version) if readable else f"{version} (skipped)"


def _unlisted_steps(run: Run) -> dict[str, set[int]]:
    """Split -> the steps named by sample files the listing found but could not list or read, which have no
    ``FileInfo`` (a broken link, a named pipe: each an error of its own, ``listing.walk``): such a step is that
    file's error, not a step no file holds. Told from the path alone, by the run's layouts' names."""
    listed = {f.path for f in run.files}
    out: dict[str, set[int]] = {}
    for p in run.problems:
        if p.is_warning or p.path in listed or not p.path.lower().endswith(DATA_SUFFIXES):
            continue
        cand = Candidate(run.root, Path(p.path), 0, p.path)  # nothing is opened: a name is all a layout reads here
        for lay in run.layouts:
            keys = lay.name_keys(cand)
            if keys is not None and keys[0] is not None and keys[1] is not None:
                out.setdefault(keys[0], set()).add(keys[1])
                break
    return out


def gaps_without(gaps: list[list[int]], stride: int, steps: Iterable[int]) -> list[list[int]]:
    """The ``gaps`` (``[first, last]`` runs of the stride's steps) less ``steps``, as ranges again; by the steps
    inside each range, never step by step (a gap may span millions of steps). Also ``watch``'s."""
    order = sorted(steps)
    return [run for a, b in gaps for run in _not_recorded(order, stride, a, b)]


def _verdict_warnings(
    run: Run,
    gaps: dict[str, list[list[int]]],
    strides: dict[str, int],
    named: dict[str, set[int]],
) -> list[Problem]:
    """What the report's tables show that the verdict must count too (a warning each, so that ``--strict``
    fails on them, as ``doctor`` does): a split's missing steps that no file names (lost steps, files deleted:
    a step whose file is unreadable is that file's error already), and a closed writer whose files here end
    before what it wrote (``writers.incomplete``). Every gap the table shows is counted, by ``step_gaps``' rule
    alone, as doctor's ``step_gaps`` warning counts it: the table and the verdict never disagree."""
    out = []
    for split, ranges in gaps.items():
        stride = max(1, strides.get(split, 1))
        runs = gaps_without(ranges, stride, named.get(split, set()))
        if not runs:
            continue
        lost = sum((b - a) // stride + 1 for a, b in runs)
        out.append(
            Problem(
                ".", WARNING, f"split {split!r}: {lost} step(s) missing ({_shown(runs, stride)}): no file holds them"
            )
        )
    end = run.end_state
    for p, what, have, last in end.incomplete if end.known else []:
        held = "none" if have is None else f"step {have}"
        out.append(
            Problem(
                end.states[p].path,
                WARNING,
                f"process {p} closed its writer having written {what} up to step {last}, but its files here hold "
                f"{held}: copied in part, or files deleted",
            )
        )
    if not out:  # (a step lost, a writer incomplete, is said already: its rows are no news)
        out += _rows_lost(run)
    # A process that did not close, behind others that closed a while ago: killed, the later steps hold only the
    # others' rows (doctor's ``writer_not_closed`` warning, in its words). Steps after a process's last file are
    # no gap of the split, and ``_missing_shards`` says only the steps between its own.
    # Discovery says it too (every command does): once.
    said = {p.message for p in run.problems if is_stopped(p)}
    for p, where in end.stopped_behind(time.time()).items() if end.known else []:
        path = end.states[p].path if p in end.states else "."
        if (text := stopped_text(end, p, where)) not in said:
            out.append(Problem(path, WARNING, text))
    return out


def _rows_lost(run: Run) -> list[Problem]:
    """A warning per process that closed its writer having written more sample rows (its state file's
    ``rows_written``) than its files here hold (their footers' rows): a step file rewritten with fewer rows, which
    nothing else says (the caller asks only where no step is missing and no writer is incomplete). Not where the
    writer's count cannot be taken as the files' (a state rewritten since the listing, ``newer``; a writer's own
    failure, whose error says what it lost; a run of which some files were not opened), nor of a process whose
    loss is said already: a sample file of it here that could not be read (that file's error), a step missing
    between its own (``native._missing_shards``). The count is the last writer's of the process alone (a resumed
    run's files also hold earlier writers' rows), so more rows than it wrote are no loss."""
    end = run.end_state
    if not end.known or run.skipped:
        return []
    held: Counter[int] = Counter()
    said: set[int] = set()  # processes whose loss is said already
    for f in run.files:
        if f.layout != NATIVE or f.kind != "samples" or f.process is None:
            continue
        if f.readable:
            held[f.process] += f.rows or 0
        else:
            said.add(f.process)
    # A step file listed but not opened (a named pipe, a broken link: an error of its own, with no ``FileInfo``).
    listed = {f.path for f in run.files}
    for problem in run.problems:
        if not problem.is_warning and problem.path not in listed and (m := SAMPLE_RE.search(problem.path)):
            said.add(int(m["proc"]))
    # A process with no file for a step between its own of a split: its missing shards are said (by name).
    by_split: dict[str, dict[int, set[int]]] = {}
    for f in run.files:
        if f.layout == NATIVE and (m := SAMPLE_RE.search(f.path)):
            by_split.setdefault(m["split"], {}).setdefault(int(m["step"]), set()).add(int(m["proc"]))
    for steps in by_split.values():
        for proc in set().union(*steps.values()):
            have = [s for s in sorted(steps) if proc in steps[s]]
            if len(have) != sum(1 for s in steps if have[0] <= s <= have[-1]):
                said.add(proc)
    out = []
    for p, st in sorted(end.states.items()):
        wrote = st.rows_written
        if not st.closed or st.newer or st.error or wrote is None or p in said or held[p] >= wrote:
            continue
        out.append(
            Problem(
                st.path,
                WARNING,
                f"process {p} closed its writer having written {wrote:,} sample row(s), but its sample files here "
                f"hold {held[p]:,}: a file rewritten with fewer rows, or files deleted",
            )
        )
    return out


def _shown(runs: list[list[int]], stride: int, limit: int = 6) -> str:
    """``1-8, 12``: the first ``limit`` runs of steps (``every N`` where the stride is N)."""
    every = f" every {stride}" if stride > 1 else ""
    shown = ", ".join(f"{a}" if a == b else f"{a}-{b}{every}" for a, b in runs[:limit])
    return shown + (", ..." if len(runs) > limit else "")


KEY_NULLS = ("split", "step")  # the columns whose null rows count under no split or step (``_not_told``)


def _not_told(f: Any) -> bool:
    """Whether a sample file's rows are not all of the one split and the steps its name and footer tell: it tells
    no split or step, or its footer counts nulls in its ``split`` or ``step`` column (rows a reader counts under
    no split or step: filed under the name's, a train file's row of no split made train 80 rows where 79 are), or
    does not count them: a Parquet file written without statistics (``write_statistics=False``), whose null count
    is unknown, not zero (``FileInfo.null_counts`` leaves such a column out)."""
    if f.split is None or not f.all_steps():
        return True
    unknown = f.fmt == "parquet" and bool(f.rows)  # a column the footer counts no nulls of: unknown
    return any(f.null_counts.get(c) or (unknown and c in f.columns and c not in f.null_counts) for c in KEY_NULLS)


def _rows_per_split_step(run: Run, files: list[Any]) -> dict[tuple[str | None, int | None], int]:
    """Rows per (split, step) of sample files whose name and footer tell no one split or step (a train file with
    eval rows), read from their split and step columns, as every other command counts them."""
    sub = Run(root=run.root, files=files, ctx=run.ctx)
    [df] = sub.collect(lambda: [sub.samples.group_by("split", "step").agg(pl.len().alias("n"))])
    return {(split, step): int(n) for split, step, n in df.iter_rows()}


def _beyond_range(beyond: dict[str, list[int]]) -> list[Problem]:
    """An error per file whose steps lie beyond the 64-bit integer range the format stores a step in (a
    ``uint64`` step column): not a step any writer could have logged, left out of the steps and gaps (one
    made billions of steps "missing")."""
    out = []
    for path, found in sorted(beyond.items()):
        shown = ", ".join(map(str, sorted(set(found))[:3])) + (", ..." if len(set(found)) > 3 else "")
        out.append(
            Problem(
                path,
                WRONG_TYPE,
                f"step {shown} is beyond the 64-bit integer range a step is stored in (at most 2**63 - 1): left "
                "out of its split's steps and gaps",
            )
        )
    return out


def inspect_run(run: Run, *, deep: bool = False) -> RunInspection:
    """The inspect report (``as_dict()`` is the JSON output; the table is drawn from it).

    By default it reads footers and JSONL lines only (and the numeric columns of a Parquet file whose footer
    has no statistics of them); never a text column. ``deep`` also reads the numeric columns (never the text)
    to count NaN per role, which Parquet statistics do not record, and the key columns (``KEY_COLUMNS``), so
    that a corrupt page there is found as every other command finds it.
    """
    # Reading data (--deep; numeric columns without statistics; the step and split columns of a file whose name
    # and footer do not tell them) can find a corrupt file and mark it unreadable, at any of those reads, after
    # others counted it: the reads are made again until none finds a new one, so that every figure below (rows,
    # versions, layouts, steps and gaps, the numeric table) and the files and problems leave out the same files.
    for _ in range(len(run.files) + 1):  # a pass after the first follows one that found a file unreadable
        left = run.left_out()
        numeric: dict[str, Counts] = {}
        data_roles: list[str] = []
        repeated: Problem | None = None
        mixed_rows: dict[tuple[str | None, int | None], int] = {}
        # Frames built afresh: a file marked unreadable outside a collect (``_read_null_counts``) leaves
        # a frame built before it holding that file.
        view = Run(root=run.root, files=run.files, ctx=run.ctx, unmatched=run.unmatched)
        has_samples = any(f.kind == "samples" and f.readable for f in view.files)
        if has_samples and deep:
            _read_keys(view)
            numeric, data_roles = _numeric_stats(view)
            repeated = repeated_ids_problem(view)
        elif has_samples:
            numeric = _footer_numeric(view)
        # Readable sample files whose name and footer tell no one split (or no step): a file of rows of two splits
        # (a train file with eval rows: each split counts as its own, docs/format.md), or of rows without a split
        # or step (null: the footer's null count says so; the name told the rest's). Their splits and steps are
        # read from their split and step columns, as every other command counts them.
        mixed = [f for f in view.files if f.kind == "samples" and f.readable and _not_told(f)]
        if mixed:
            mixed_rows = _rows_per_split_step(view, mixed)
        if run.left_out() == left:
            break
    if repeated is not None:
        run.ctx.problems.append(repeated)
    exceptions = _exceptions(run)

    files = run.files
    versions: Counter[str] = Counter(
        str(f.schema_version) for f in files if f.schema_version is not None and f.kind != "manifest"
    )
    layouts: dict[str, LayoutFiles] = {}
    for f in files:
        entry = layouts.setdefault(f.layout, LayoutFiles())
        entry.files += 1
        entry.bytes += f.bytes
        entry.rows += (f.rows or 0) if f.readable else 0
        entry.by_version[version_label(f.schema_version, f.readable)] += 1
    for lay in run.layouts:
        if lay.name in layouts:
            layouts[lay.name].description = lay.description

    steps_by_split: dict[str, set[int]] = {}
    named_by_split: dict[str, set[int]] = {}
    scalar_steps: set[int] = set()
    rows_by_kind: Counter[str] = Counter()
    rows_by_split: Counter[str] = Counter()
    # Rows per (split, step) of the one-step files (a step whose files hold no row is said, not a gap), and the
    # steps whose rows other files hold too (multi-step files, whose steps come from their rows) or that an
    # unreadable file names (its error speaks for it).
    step_rows: Counter[tuple[str, int]] = Counter()
    not_empty: set[tuple[str, int]] = set()
    # Steps beyond the 64-bit integer range the format stores a step in (a ``uint64`` column): left out of the
    # steps and gaps (one such step made billions of steps "missing"), and said per file.
    beyond: dict[str, list[int]] = {}

    def in_range(path: str, found: list[int]) -> list[int]:
        ok = [x for x in found if STEP_MIN <= x <= STEP_MAX]
        if len(ok) < len(found):
            beyond.setdefault(path, []).extend(x for x in found if not STEP_MIN <= x <= STEP_MAX)
        return ok

    for name, found in _unlisted_steps(run).items():
        named_by_split.setdefault(name, set()).update(found)
    for f in files:
        own = in_range(f.path, f.all_steps()) if f.kind == "samples" else f.all_steps()
        if f.kind == "samples" and (f.split is not None or not f.readable):
            named_by_split.setdefault(f.split or "?", set()).update(own)
            if not f.readable:
                not_empty.update((f.split or "?", x) for x in own)
        if not f.readable or f.kind == "manifest":
            continue
        rows_by_kind[f.kind] += f.rows or 0
        if f.kind == "samples" and f.split is not None and not _not_told(f):
            rows_by_split[f.split] += f.rows or 0
            steps_by_split.setdefault(f.split, set()).update(own)
            if f.step is not None and f.steps is None:
                step_rows[(f.split, f.step)] += f.rows or 0
            else:
                not_empty.update((f.split, x) for x in own)
        elif f.kind == "scalars":
            scalar_steps.update(own)
    # The mixed files' splits, steps and rows, read above (they were filed under a split "?", and the folder's
    # split called its step missing). Rows of no split (null) are counted, as "?", but are no split of their own:
    # no steps, stride or gaps (a few such rows at steps 1, 2 and 5 made "split '?': 2 step(s) missing (3-4)").
    for (told, step), n in mixed_rows.items():
        rows_by_split[told or "?"] += n
        if told is not None and step is not None:  # (read as the samples' int64 step: never beyond its range)
            steps_by_split.setdefault(told, set()).add(step)
            named_by_split.setdefault(told, set()).add(step)
            not_empty.add((told, step))
    empty_steps: dict[str, list[int]] = {}
    for (split, step), n in sorted(step_rows.items()):
        if n == 0 and (split, step) not in not_empty:
            empty_steps.setdefault(split, []).append(step)

    steps: dict[str, list[int]] = {}
    gaps: dict[str, list[list[int]]] = {}
    strides: dict[str, int] = {}
    stride_from: dict[str, str] = {}
    for split in sorted(steps_by_split):
        s = steps_by_split[split]
        if not s:
            continue
        steps[split] = [min(s), max(s)]
        known = sorted(named_by_split.get(split, ()))
        strides[split], gaps[split] = step_gaps(sorted(s), known)
        stride_from[split] = STRIDE_FROM_STEPS if len(s | set(known)) >= 3 else STRIDE_UNKNOWN

    scalars = ScalarSummary(records=rows_by_kind.get("scalars", 0))
    if any(f.kind == "scalars" and f.readable for f in files):
        from .scalars import DEFAULT_ALIASES, aliased_key

        # Counted as summarize --scalars shows them: the records with a step, keys renamed by the alias table
        # (``grad_global_norm`` and ``grad/global_norm`` are one metric there, and one here).
        weight = pl.col("key").str.ends_with("__count")
        # One read of the records' keys, steps and files, for the counts and each file's lost records.
        logged = (
            run.scalars.filter(pl.col("step").is_not_null())
            .select(aliased_key(DEFAULT_ALIASES), "step", "source")
            .unique()
            .collect()
        )
        keys = logged.select(
            pl.col("key").filter(~weight).n_unique().alias("keys"), pl.col("key").filter(weight).n_unique().alias("w")
        )
        scalars.keys, scalars.weights = int(keys.item(0, 0)), int(keys.item(0, 1))
        if scalar_steps:
            scalars.steps = [min(scalar_steps), max(scalar_steps)]
            # Each key by its own cadence (the keys' steps together made false gaps of mixed cadences), each file by
            # its own records (a process down while others wrote was unseen); ``stride`` the cadence of most keys.
            key_strides, cadences = key_cadences(logged)
            if key_strides:
                tally = Counter(key_strides.values())
                scalars.stride = min(tally, key=lambda x: (-tally[x], x))
            else:  # steps only on ``__count`` weights' records
                scalars.stride = scalar_stride(scalar_steps)
            scalars.step_gaps = lost_step_runs(cadences, scalars.stride)
            scalars.key_gaps = cadences

    roles = run.role_names()
    roles += [r for r in data_roles if r not in roles]
    beyond_problems = _beyond_range(beyond)
    return RunInspection(
        run=str(run.root),
        name=run.name,
        layouts=layouts,
        files=[f.as_dict() for f in files],
        schema_versions=dict(sorted(versions.items())),
        rows=sum(rows_by_kind.values()),
        rows_by_kind=dict(rows_by_kind),
        steps=steps,
        step_gaps=gaps,
        step_stride=strides,
        step_stride_from=stride_from,
        rows_by_split=dict(sorted(rows_by_split.items())),
        empty_steps=empty_steps,
        roles=roles,
        # Footers carry no role names (a native file's roles are in its data): plain inspect knows only the
        # manifest's where any file has a ``roles`` column.
        roles_complete=deep or not any(f.kind == "samples" and f.readable and "roles" in f.columns for f in files),
        numeric_source="data" if deep else "footers",
        numeric=numeric,
        exceptions=exceptions,
        scalars=scalars,
        bytes=sum(f.bytes for f in files),
        unmatched=list(run.unmatched),
        problems=[
            *run.problems,
            *beyond_problems,
            *_verdict_warnings(run, gaps, strides, named_by_split),
        ],
        step_errors=beyond_problems,
        fidelity=[dict(n) for n in run.fidelity],
        writers={**run.end_state.as_json(), "summary": run.end_state.summary()} if run.end_state.known else None,
    )
