"""runlog's own layout (schema v2): ``run.json``, per-step sample Parquet per split and process, scalars JSONL.

run.json
samples/{split}/step_{step:08d}.p{process}.parquet
scalars.p{process}.jsonl
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from .. import schema as S
from .._lazy import LazyModule, pl
from ..errors import RunlogError, said_trouble
from ..storage import ObjectPath
from .base import (
    BAD_MANIFEST,
    MISSING_COLUMNS,
    UNREADABLE,
    WRONG_TYPE,
    Candidate,
    FileInfo,
    Layout,
    RunContext,
    register,
)
from .common import (
    STEP_RANGE,
    exception_as_read,
    exception_column,
    exception_kind,
    footer_int_range,
    gate_version,
    group_by_signature,
    may_hold_null_texts,
    parquet_footer,
    probe_exceptions,
    probe_parquet,
    read_parquet_columns,
    read_step_column,
    read_version_column,
    scan_parquet,
    source_column,
    step_expr,
    stepless_reason,
    unusable_step,
    warn_exception_texts,
    whole_number,
)
from .scalars_jsonl import probe_flat_scalars

pa: Any = LazyModule("pyarrow")  # imported on first use (a cached run needs none)

SAMPLE_RE = re.compile(r"(?:^|/)samples/(?P<split>[^/]+)/step_(?P<step>\d+)\.p(?P<proc>\d+)\.parquet$")
SCALARS_RE = re.compile(r"(?:^|/)scalars\.p(?P<proc>\d+)\.jsonl$")
STEP_NAME_RE = re.compile(r"step_\d+\.p\d+\.parquet$")
MANIFEST = "run.json"
META_VERSION_KEY = b"runlog.schema_version"
# The native layout began at schema v2 (v0 and v1 are Flink's): a native file that says v0 or v1 is unknown.
NATIVE_VERSIONS = tuple(v for v in S.KNOWN_VERSIONS if v >= 2)


def _check_named_step(info: FileInfo, ctx: RunContext, read: list[int] | None = None) -> None:
    """A sample file's rows are read by their own ``step`` column: where they are not all of the step its
    name tells (a file copied or renamed by hand), say so, and let the file stand for its rows' step (or for
    their several steps), so that whatever groups files by step (the stored partials, prompt groups, gaps)
    sees what a read of the rows sees. From the footer's statistics; where they are missing (or say several
    steps), a local file's ``step`` column itself is read (a few bytes a row), or ``read``: the steps of its rows
    ``_check_step_values`` read (rows whose step is no integer step aside: they are left out). Where the rows'
    steps cannot be told (an object without statistics, a column that cannot be read), the file stands for no
    one step: nothing is grouped by its name."""
    assert info.step is not None
    if not info.rows:
        return
    rng = footer_int_range(info, "step") if read is None else None
    if rng == (info.step, info.step):
        return
    steps = read
    if steps is None and rng is not None and rng[0] == rng[1]:
        steps = [rng[0]]
    elif steps is None and not isinstance(info.abspath, ObjectPath):  # an object would be fetched whole
        steps = _step_values(info)
    if steps is None:
        if rng is not None:
            ctx.warn(
                info.path,
                f"named step {info.step} but its rows are of steps {rng[0]} to {rng[1]}: "
                + _counted(list(rng), span=True),
            )
        else:
            stats = info.footer is not None and "step" in info.footer.ranges
            why = (
                "its footer has no statistics of the step column (an object is not read whole to tell)"
                if isinstance(info.abspath, ObjectPath) and not stats
                else "its step column holds values that are not whole steps (NaN, 3.5), or cannot be read"
            )
            ctx.warn(
                info.path,
                f"named step {info.step}, but {why}: it stands for no one step (its rows count at their own "
                "steps; summaries of this run are not kept per step)",
            )
        info.step = None
        return
    if steps == [info.step]:
        return
    if not steps:
        rows = "no step"
    elif len(steps) == 1:
        rows = f"step {steps[0]}"
    else:
        rows = f"steps {', '.join(map(str, steps[:5]))}{', ...' if len(steps) > 5 else ''}"
    ctx.warn(info.path, f"named step {info.step} but its rows are of {rows}: {_counted(steps)}")
    info.step = steps[0] if len(steps) == 1 else None
    info.steps = steps if len(steps) > 1 else None


def _counted(steps: list[int], *, span: bool = False) -> str:
    """Where a file's rows of ``steps`` (or of the ``span`` from the first to the last) count: at their own steps,
    but those beyond the 64-bit range a step is stored in (a ``uint64`` column's 2**63) are read with no step
    (``step_expr``), never at their own."""
    beyond = sorted(s for s in steps if not STEP_RANGE[0] <= s <= STEP_RANGE[1])
    if not beyond:
        return "they count at their own steps"
    if len(beyond) == len(steps):
        what, others = "they are", ""
    else:
        shown = ", ".join(map(str, beyond[:3])) + (", ..." if len(beyond) > 3 else "")
        what = f"those above {STEP_RANGE[1]} are" if span else f"those of step {shown} are"
        others = ", the others count at their own steps"
    return (
        f"{what} beyond the 64-bit integer range a step is stored in, read with no step (null; `inspect` reports "
        f"them){others}"
    )


def _missing_shards(files: list[FileInfo], ctx: RunContext) -> None:
    """Steps of a split without the file of a process that wrote that split's steps before and after them (a
    shard lost in a copy, a host whose write failed, or fewer hosts for a while): those steps hold none of
    that process's samples, which their other shards cannot tell. Said once per split and process, under
    the split's folder, from the files' names (a file present but unreadable is said as such, not here). The
    steps after a process's last file are not said (fewer hosts after a resume, or a run still written)."""
    by_split: dict[tuple[str, str], dict[int, set[int]]] = {}
    for f in files:
        m = SAMPLE_RE.search(f.path)
        if m:
            folder = f.path[: m.end("split")]  # ``samples/train``, below any prefix
            by_split.setdefault((folder, m["split"]), {}).setdefault(int(m["step"]), set()).add(int(m["proc"]))
    for (folder, split), steps in sorted(by_split.items()):
        order = sorted(steps)
        for proc in sorted(set().union(*steps.values())):
            have = [s for s in order if proc in steps[s]]
            holes = [s for s in order if have[0] < s < have[-1] and proc not in steps[s]]
            if holes:
                shown = ", ".join(map(str, holes[:8])) + (f", ... ({len(holes)} steps)" if len(holes) > 8 else "")
                ctx.warn(
                    folder,
                    f"process {proc} wrote steps {have[0]} to {have[-1]} of split {split!r} but no file for step(s) "
                    f"{shown}: those steps hold none of its samples (their other shards are read)",
                )


def _check_named_split(info: FileInfo, ctx: RunContext) -> None:
    """As ``_check_named_step``, for the split its folder tells: rows are read by their own ``split`` column,
    so a file under ``samples/train2/`` whose rows say ``train`` counts as train. Say so, and let the file
    stand for its rows' split, so that inspect's splits and gaps are summarize's. From the footer's
    statistics; without them, a local file's ``split`` column is read (an object's is left as it is)."""
    if not info.rows or info.split is None:
        return
    splits = _split_stats(info)
    if splits is None and not isinstance(info.abspath, ObjectPath):
        splits = _split_values(info)
    if not splits or splits == [info.split]:
        return
    folder = f"in the folder of split {info.split!r} but its rows are of"
    if len(splits) == 1:
        ctx.warn(info.path, f"{folder} split {splits[0]!r}: they count as {splits[0]!r}")
        info.split = splits[0]
        return
    shown = ", ".join(repr(x) for x in splits[:5]) + (", ..." if len(splits) > 5 else "")
    ctx.warn(info.path, f"{folder} splits {shown}: each counts as its own")
    info.split = None  # no one split: the run's splits are read from the rows (``views.run_splits``)


def _split_stats(info: FileInfo) -> list[str] | None:
    """The one split every row group's statistics say, as a list, or None where they do not tell one."""
    md = parquet_footer(info).metadata
    if md is None:
        return None
    index = next((i for i in range(md.num_columns) if md.schema.column(i).path == "split"), None)
    if index is None:
        return None
    seen: set[Any] = set()
    for rg in range(md.num_row_groups):
        st = md.row_group(rg).column(index).statistics
        if st is None or not st.has_min_max or st.min != st.max or (st.has_null_count and st.null_count):
            return None
        seen.add(st.min)
    if len(seen) != 1:
        return None
    [value] = seen
    return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)]


def _distinct(info: FileInfo, column: str) -> list[Any] | None:
    """The distinct values of one column of a local file's rows (nulls left out), or None if it cannot be
    read."""
    import pyarrow.compute as pc

    try:
        return pc.unique(read_parquet_columns(info, [column]).column(0).drop_null()).to_pylist()
    except (OSError, pa.ArrowException, ValueError, RunlogError):
        return None


def _split_values(info: FileInfo) -> list[str] | None:
    values = _distinct(info, "split")
    return None if values is None else sorted(str(v) for v in values)


def _step_values(info: FileInfo) -> list[int] | None:
    """The distinct steps of a local file's rows, or None if they cannot be told (unreadable; NaN, 3.5: no
    step a file could stand for)."""
    values = _distinct(info, "step")
    steps = None if values is None else [whole_number(v) for v in values]
    return None if steps is None or None in steps else sorted({s for s in steps if s is not None})


def _check_step_values(info: FileInfo, step_type: Any, ctx: RunContext) -> list[int] | None:
    """A step column that is not an integer one (a float, a bool: a writer other than RunWriter) may hold values
    that are no integer step (7.5, NaN, ``true``), which polars' cast read as 7, null and 1: a row counted at a
    step it does not name, or at none without a word. Such rows are left out (``NativeLayout.scan_samples``), said
    here as an error with their count and values. A local file's column is read: the distinct steps of its other
    rows are returned (for ``_check_named_step``). The column is read, an object's too (that column alone, a few
    bytes a row: ``read_step_column``; only a file whose step column is no integer one, never RunWriter's): the
    footer's statistics cannot settle it, as they leave NaN out (a column of 3.0 and NaN has min = max = 3.0).
    None where the column is an integer one, or could not be read."""
    if pa.types.is_integer(step_type) or pa.types.is_null(step_type) or not info.rows:
        return None
    try:
        table = read_step_column(info)
    except (OSError, pa.ArrowException, ValueError, RunlogError, pl.exceptions.PolarsError):
        return None  # the read of the rows says what is wrong with the file
    dtype = table.schema["step"]
    bad = table.filter(unusable_step("step", dtype))["step"]
    steps = sorted(set(table.select(step_expr("step", dtype))["step"].drop_nulls().to_list()))
    if bad.len():
        values: list[str] = []
        for v in bad.to_list():  # in the order the rows hold them, each once (NaN equals no NaN: by its text)
            shown = stepless_reason("step", v).removeprefix("step ")
            if shown not in values:
                values.append(shown)
        listed = ", ".join(values[:3]) + (", ..." if len(values) > 3 else "")
        named = f"named step {info.step}, but " if info.step is not None else ""
        ctx.problem(
            info.path,
            WRONG_TYPE,
            f"{named}its step column holds values that are not whole steps ({listed}): {bad.len():,} of its "
            f"{info.rows:,} rows, left out (no step to count them at: never at the step their value rounds to)",
        )
        if not steps and info.step is not None:
            info.step = None  # no row left to stand for: said above, not again by ``_check_named_step``
    return steps


@functools.cache
def _expected() -> dict[str, Any]:
    """The Arrow type of each native column (built on first use: pyarrow is imported lazily)."""
    return {f.name: f.type for f in S.NATIVE_SAMPLE_SCHEMA}


@register
class NativeLayout(Layout):
    name = "runlog"
    description = "runlog native layout (schema v2): run.json, samples/{split}/step_N.pP.parquet, scalars.pP.jsonl"
    priority = 10
    formats = (".parquet", ".jsonl", ".json")
    cache_probes = True
    one_file_per_step = True
    own_folders = r"samples/[^/]+"

    def detect(self, cand: Candidate) -> bool:
        if cand.name == MANIFEST:
            return True
        if cand.suffix == ".parquet":
            return cand.name.startswith("step_") and bool(SAMPLE_RE.search(cand.rel))
        return cand.name.startswith("scalars.") and bool(SCALARS_RE.search(cand.rel))

    def near_miss(self, cand: Candidate) -> str | None:
        """A step file of a native run given by a folder inside the run (``RUN/samples``, ``RUN/samples/train``):
        the split is the name of the folder under ``samples/``, so the path given must be the run's own."""
        if cand.suffix == ".parquet" and STEP_NAME_RE.match(cand.name) and not SAMPLE_RE.search(cand.rel):
            return (
                "a runlog step file outside a samples/SPLIT/ folder (its split is that folder's name): pass the "
                "folder of its run, the one holding samples/ and run.json"
            )
        return None

    def name_keys(self, cand: Candidate) -> tuple[str | None, int | None] | None:
        m = SAMPLE_RE.search(cand.rel) if cand.suffix == ".parquet" else None
        return (m["split"], int(m["step"])) if m else None

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        if cand.name == MANIFEST or cand.suffix == ".json":
            return self._probe_manifest(cand, ctx)
        if cand.suffix == ".jsonl":
            return self._probe_scalars(cand, ctx)
        return self._probe_samples(cand, ctx)

    # -- manifest ----------------------------------------------------------------------------------------
    def _probe_manifest(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "json", "manifest", cand.size, rows=None)
        reason: str | None
        try:
            manifest = json.loads(cand.abspath.read_bytes())
        except UnicodeDecodeError as exc:
            manifest, reason = None, f"invalid UTF-8 at byte {exc.start}"
        except OSError as exc:
            manifest, reason = None, f"cannot read file ({str(exc).splitlines()[0][:200] if str(exc) else exc})"
            said_trouble()  # it may read next time: an answer saying so is not kept
        except (ValueError, RecursionError) as exc:
            manifest, reason = None, f"not valid JSON ({str(exc).splitlines()[0][:200]})"
        else:
            reason = None if isinstance(manifest, dict) else "not a JSON object"
        if reason is not None:
            ctx.problem(cand.rel, BAD_MANIFEST, f"unreadable manifest: {reason}")
            info.readable = False
            return info
        version = manifest.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            ctx.problem(cand.rel, BAD_MANIFEST, f"manifest schema_version is {version!r}, not an integer")
            info.readable = False
            return info
        info.schema_version = version
        if not gate_version(info, ctx, version, known=NATIVE_VERSIONS):
            return info
        if manifest.get("format", S.FORMAT_NAME) != S.FORMAT_NAME:
            ctx.warn(cand.rel, f"manifest format is {manifest.get('format')!r}, expected {S.FORMAT_NAME!r}")
        ctx.manifest = manifest
        return info

    # -- samples -----------------------------------------------------------------------------------------
    def _probe_samples(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = probe_parquet(cand, ctx, layout=self.name)
        m = SAMPLE_RE.search(cand.rel)
        if m:
            info.split, info.step, info.process = m["split"], int(m["step"]), int(m["proc"])
        if not info.readable:
            return info
        meta = parquet_footer(info).metadata.metadata or {}
        version: int | None = None
        if META_VERSION_KEY in meta:
            try:
                version = int(meta[META_VERSION_KEY])
            except ValueError:
                # Said, not dropped without a word: the column (if any) tells the version instead.
                shown = meta[META_VERSION_KEY][:40].decode("utf-8", "replace")
                ctx.warn(cand.rel, f"its {META_VERSION_KEY.decode()} metadata is {shown!r}, not a number: ignored")
        if "schema_version" in info.columns:
            # The column tells every row's version: from the footer's statistics, else (a local file, or one
            # with no version in its metadata) the column itself, a few bytes a row.
            rng = footer_int_range(info, "schema_version")
            read = rng is None and (version is None or not isinstance(info.abspath, ObjectPath))
            if read:
                rng = read_version_column(info)
            if read and rng is None and info.rows:
                reason = "its schema_version column holds no integer version (null, NaN, text); file skipped"
            elif rng is not None and rng[0] != rng[1]:
                reason = f"mixed schema versions {rng[0]}..{rng[1]} inside one file; file skipped"
            elif rng is not None and version is not None and version != rng[0]:
                reason = f"its schema_version column says v{rng[0]}, its metadata v{version}; file skipped"
            else:
                reason = None
            if reason is not None:
                ctx.problem(cand.rel, UNREADABLE, reason)
                info.readable = False
                # The version it states, for schema_versions (the highest, where metadata and column disagree).
                stated = [v for v in (version, rng[1] if rng is not None else None) if v is not None]
                info.schema_version = max(stated) if stated else None
                return info
            if version is None and rng is not None:
                version = rng[1]
            nulls = info.null_counts.get("schema_version", 0)
            if nulls and rng is not None and info.rows and nulls < info.rows:
                ctx.warn(
                    cand.rel,
                    f"{nulls:,} of its {info.rows:,} rows have no schema_version (null): read as v{version}, the "
                    "version of its other rows",
                )
        if version is None:
            ctx.problem(cand.rel, MISSING_COLUMNS, "no schema_version (column or file metadata); file skipped")
            info.readable = False
            return info
        info.schema_version = version
        if not gate_version(info, ctx, version, known=NATIVE_VERSIONS):
            return info
        missing = [c for c in S.NATIVE_REQUIRED if c not in info.columns]
        if missing:
            ctx.problem(cand.rel, MISSING_COLUMNS, f"missing required column(s) {', '.join(missing)}; file skipped")
            info.readable = False
            return info
        # A required column that holds nulls (a writer other than RunWriter): those rows are a population of their
        # own (a null split is neither train nor eval; upload-wandb keys it apart), said from the footer's counts.
        for col in ("step", "split", "sample_id"):
            n = info.null_counts.get(col, 0)
            if n and info.rows:
                ctx.warn(cand.rel, f"{n:,} of its {info.rows:,} rows have no {col} (null, in a required column)")
        arrow_schema = parquet_footer(info).arrow_schema
        expected = _expected()
        bad = [
            why
            for f in arrow_schema
            if f.name in expected
            and (why := _mismatch(f.type, expected[f.name], f.name, REQUIRED_FIELDS.get(f.name, ()), f.name in NESTED))
            # Bytes in the exception column are its text encoded: read as UTF-8, as Flink's ``exception_info``.
            and not (f.name == "exception" and exception_kind(str(f.type)) == "binary")
        ]
        if bad:
            ctx.problem(cand.rel, WRONG_TYPE, "wrong column type: " + "; ".join(bad) + "; file skipped")
            info.readable = False
        else:
            row_steps = _check_step_values(info, arrow_schema.field("step").type, ctx)
            if info.step is not None:
                _check_named_step(info, ctx, row_steps)
            _check_named_split(info, ctx)
            probe_exceptions(info, "exception", ctx)
        return info

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """A sample file without an optional column that other sample files of the run have (runlog's writer
        writes every column, null where there is nothing): its rows read as null there, and a file without
        ``roles`` has no per-role data (its rows count under no role). Said, as format.md's problem table has
        it: a warning."""
        samples = [f for f in files if f.kind == "samples" and f.readable and f.fmt == "parquet"]
        optional = [c for c in S.NATIVE_COLUMNS if c not in S.NATIVE_REQUIRED]
        schemas = {id(f.columns): f.columns for f in samples}  # files of one schema share their mapping
        have = {c for cols in schemas.values() for c in cols if c in optional}
        lacks = {k: [c for c in optional if c in have and c not in cols] for k, cols in schemas.items()}
        for f in samples:
            lacking = lacks[id(f.columns)]
            if lacking:
                effect = ": its rows have no per-role data" if "roles" in lacking else ""
                ctx.warn(
                    f.path,
                    f"missing optional column(s) {', '.join(lacking)} that other files of the run have; read as "
                    f"null{effect}",
                )
        _missing_shards([f for f in files if f.kind == "samples" and f.fmt == "parquet"], ctx)
        warn_exception_texts(samples, ctx)

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        parquet = [f for f in files if f.kind == "samples" and f.readable]
        if not parquet:
            return None
        frames = []
        for group in group_by_signature(parquet):
            lf = scan_parquet(group, include_file_paths="source")
            if (read := exception_column(group, "exception")) is not None:
                lf = lf.with_columns(read)  # bytes as UTF-8 text (``probe_exceptions``)
            lf = S.migrate(lf, group[0].schema_version or S.CURRENT_VERSION)
            step_type = lf.collect_schema().get("step")
            if step_type is not None and not step_type.is_integer():
                # A float or bool step column: its rows whose step is no integer step are left out (said by the
                # probe, ``_check_step_values``), the others read exactly (polars' cast reads 7.5 as 7, true as 1).
                lf = lf.filter(~unusable_step("step", step_type)).with_columns(step_expr("step", step_type))
            lf = lf.with_columns(
                source_column(group),
                pl.lit(self.name).alias("layout"),
                pl.col("schema_version").cast(pl.Int32),
            )
            lf = S.conform_samples(lf)
            if may_hold_null_texts(group, "exception"):  # as the probe counted them, or could not
                lf = lf.with_columns(exception_as_read(pl.col("exception")).alias("exception"))
            frames.append(lf)
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def roles(self, files: list[FileInfo], ctx: RunContext) -> list[str]:
        roles = (ctx.manifest or {}).get("roles") or []
        return [str(r) for r in roles] if isinstance(roles, list) else []

    # -- scalars -----------------------------------------------------------------------------------------
    def _probe_scalars(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "jsonl", "scalars", cand.size)
        m = SCALARS_RE.search(cand.rel)
        info.process = int(m["proc"]) if m else None
        probe_flat_scalars(cand, ctx, info, self.name, repeats="replace")
        # A scalars file states no version of its own (its lines hold none): left without one, so that
        # ``schema_versions`` counts only the files that state theirs.
        return info

    def scan_scalars(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        frames = [f.frame for f in files if f.kind == "scalars" and f.readable and f.frame is not None]
        return pl.concat(frames).lazy() if frames else None


# Struct fields every element of these nested columns must have (format.md's types): without one, its values
# would be read as null without a word (a ``roles`` struct whose fields are named ``name, score``). A role's
# ``kl`` may be left out (a trainer without a reference model: read as null), and so may the fields of
# ``messages`` (a conversation without ``reasoning`` is common).
REQUIRED_FIELDS = {"roles": ("role", "reward"), "reward_components": ("name", "value")}
# The nested columns whose fields are checked (their numbers are read by every summary). ``messages`` is not:
# other writers' conversations hold content parts, struct arguments..., which reading conforms or renders, and a
# file must not be skipped, rewards and all, over the shape of a text.
NESTED = frozenset(REQUIRED_FIELDS)


def _mismatch(
    found: pa.DataType, expected: pa.DataType, where: str, required: tuple[str, ...] = (), nested: bool = True
) -> str | None:
    """Why a column (or a field ``where`` inside one) is not of the expected kind, or None where it is: same
    kind of column (widths, large/view variants and dictionary encoding allowed), and, inside nested columns,
    the same for each field the format names (extra fields are ignored; ``required`` ones must be there), so
    that reading the file cannot fail on a field of another kind (a struct where a number belongs) for the
    whole run, found here from the footer instead."""
    t = pa.types
    if found == expected or t.is_null(found):
        return None
    if t.is_dictionary(found):
        found = found.value_type
    wrong = f"{where} is {found}, expected {expected}"
    if t.is_integer(expected) or t.is_floating(expected):
        return None if t.is_integer(found) or t.is_floating(found) or t.is_boolean(found) else wrong
    if t.is_string(expected):
        if t.is_string(found) or t.is_large_string(found) or t.is_string_view(found):
            return None
        # Inside a nested column, whole numbers read as their text (role ids 0, 1, 2 were read so before).
        return None if "." in where and t.is_integer(found) else wrong
    if t.is_list(expected):
        lists = (t.is_list, t.is_large_list, t.is_list_view, t.is_large_list_view)
        if not any(is_list(found) for is_list in lists):
            return wrong
        return _mismatch(found.value_type, expected.value_type, f"{where}[]", required) if nested else None
    if t.is_struct(expected):
        if not t.is_struct(found):
            return wrong
        have = {found.field(i).name: found.field(i).type for i in range(found.num_fields)}
        absent = [name for name in required if name not in have]
        if absent:
            return f"{where} has no field {', '.join(absent)} (its fields: {', '.join(have) or 'none'})"
        for i in range(expected.num_fields):
            field = expected.field(i)
            if field.name in have and (why := _mismatch(have[field.name], field.type, f"{where}.{field.name}")):
                return why
        return None
    return wrong
