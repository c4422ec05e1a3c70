"""Flink debug data (seed 000), schema v0 and v1, Parquet or the CSV written when Parquet failed.

    flink_logs/batch_debug_data_{train|eval}_{step}[_{suffix}].parquet   (or .csv)

v0 columns: env_name, trajectory, agent_trajectories, exception_info, reward, reward_metrics,
reward_text_info, unique_sample_id. v1 adds schema_version (=1), role_assignments and flat per-role
``<role>_reward`` / ``<role>_kl`` columns. Step and split come from the file name.

Conversations (``flink_messages``): ``messages``, ``prompt``, ``completion`` and a derived ``group_id`` (the
samples of one split and step with the same prompt) are parsed from ``agent_trajectories``, or from the
rendered ``trajectory`` where that JSON is absent or unparseable, when ``Run.samples`` is collected; the raw
columns are kept. The numeric view never reads ``agent_trajectories``: its ``prompt`` (read only when a
summary asks for prompt groups) is the first user block of the rendered ``trajectory``, found by polars'
native string functions. Each probed file lists ``prompt`` among its columns (type ``string``, derived)
so that summaries know prompt groups exist without reading data.
"""

from __future__ import annotations

import functools
import io
import re
from typing import Any

from .. import schema as S
from .._lazy import pl
from ..errors import RunlogError
from ..storage import is_url
from ..textparse import parse_number_dict
from .base import (
    MISSING_COLUMNS,
    UNKNOWN_VERSION,
    UNREADABLE,
    WRONG_TYPE,
    Candidate,
    FileInfo,
    Layout,
    RunContext,
    register,
    run_files,
)
from .common import (
    count_exception_texts,
    exception_as_read,
    exception_column,
    gate_version,
    group_by_signature,
    keep_exception_texts,
    may_hold_null_texts,
    per_file_value,
    probe_exceptions,
    probe_parquet,
    scan_parquet,
    source_column,
    version_column,
    warn_exception_texts,
)
from .flink_text import GROUP_NOTE, TEXT_SOURCES, prompt_expr, with_conversations, with_prompt

NAME_RE = re.compile(r"batch_debug_data_(?P<split>train|eval)_(?P<step>\d+)(?:_(?P<suffix>[^/]*))?\.(?:parquet|csv)$")
V0_COLUMNS = (
    "env_name",
    "trajectory",
    "agent_trajectories",
    "exception_info",
    "reward",
    "reward_metrics",
    "reward_text_info",
    "unique_sample_id",
)
REQUIRED = ("reward", "unique_sample_id")
FLINK_VERSIONS = (0, 1)  # the versions a Flink file can say (docs/format.md, "Schema versions")
NUMERIC_TYPES = (
    "double",
    "float",
    "halffloat",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "null",
    "f64",
    "f32",
    "i64",
    "i32",
)


def _csv_frame(f: FileInfo) -> pl.DataFrame:
    """The frame a readable CSV file's probe parsed (``_probe_csv`` keeps it: the CSV is read once)."""
    if f.frame is None:  # pragma: no cover  (a readable probed CSV file always has one)
        raise RunlogError(f"{f.path}: CSV file without its parsed frame")
    return f.frame


def _is_numeric_type(t: str) -> bool:
    return t.lower() in NUMERIC_TYPES or t.startswith(("Float", "Int", "UInt")) or t == "Null"


@register
class FlinkLayout(Layout):
    name = "flink"
    description = "Flink debug data: flink_logs/batch_debug_data_{train|eval}_{step}[_suffix].parquet|csv (v0, v1)"
    priority = 20
    formats = (".parquet", ".csv")
    own_folders = "flink_logs"
    cache_probes = True
    one_file_per_step = True
    # The raw conversation, and the group id found from its prompt (``with_conversations``): both fail to read
    # where the text does (a file whose trajectory is not UTF-8), and the file's numbers are still counted.
    text_columns = ("agent_trajectories", "group_id")

    def detect(self, cand: Candidate) -> bool:
        return cand.name.startswith("batch_debug_data_") and bool(NAME_RE.search(cand.name))

    def name_keys(self, cand: Candidate) -> tuple[str | None, int | None] | None:
        m = NAME_RE.search(cand.name)
        return (m["split"], int(m["step"])) if m else None

    def probe(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        csv = cand.suffix == ".csv"
        info = self._probe_csv(cand, ctx) if csv else probe_parquet(cand, ctx, layout=self.name)
        m = NAME_RE.search(cand.name)
        if m:
            info.split, info.step = m["split"], int(m["step"])
        if not info.readable:
            return info
        version = 0
        if "schema_version" in info.columns and info.rows == 0:
            version = 1  # no value to read: the column itself is v1's (v0 has none); a file of no rows, said below
        elif "schema_version" in info.columns:
            rng, error = (self._csv_version(info), None) if info.fmt == "csv" else version_column(info)
            if error is not None:
                message = f"corrupt data in schema_version (the footer is intact, without statistics): {error}"
                ctx.problem(cand.rel, UNREADABLE, f"{message}; file skipped")
                info.readable = False
                return info
            if rng is None:
                ctx.problem(cand.rel, MISSING_COLUMNS, "schema_version column is empty; file skipped")
                info.readable = False
                return info
            lo, hi = rng
            if lo != hi:
                ctx.problem(cand.rel, UNREADABLE, f"mixed schema versions {lo}..{hi} inside one file; file skipped")
                info.readable = False
                return info
            version = hi
        info.schema_version = version
        if version not in FLINK_VERSIONS and version <= S.CURRENT_VERSION:
            # v2 is runlog's native layout, not a Flink schema: read as Flink, its columns would be guessed.
            ctx.problem(
                cand.rel,
                UNKNOWN_VERSION,
                f"unknown schema version {version} for a Flink file (Flink files are v0 or v1; v2 is runlog's "
                "native layout); file skipped",
            )
            info.readable = False
            return info
        if not gate_version(info, ctx, version):
            return info
        self._check_columns(info, ctx)
        if info.readable and info.fmt == "parquet":
            # Its stringified nulls read as null, its empty texts as failures: as native and CSV files' are; bytes
            # read as UTF-8 text, a column of another type (an error code) as none, said.
            probe_exceptions(info, "exception_info", ctx)
        if version == 0 and info.readable:
            ctx.note(self.name, "v0 files have no per-role data: their rows have no role (shown as (unknown))")
        if info.readable and any(c in info.columns for c in TEXT_SOURCES):
            info.columns = with_prompt(info.columns, ctx)
            ctx.note(self.name, GROUP_NOTE)
        return info

    def _probe_csv(self, cand: Candidate, ctx: RunContext) -> FileInfo:
        info = FileInfo(cand.rel, cand.abspath, self.name, "csv", "samples", cand.size)
        try:
            data = cand.abspath.read_bytes() if is_url(cand.abspath) else None
            # glob=False: a folder named ``exp[lr=1e-6]`` is a name, not a pattern.
            df = pl.read_csv(
                cand.abspath if data is None else io.BytesIO(data),
                infer_schema_length=10_000,
                null_values=["", "None", "null"],
                glob=False,
            )
            texts = None
            if "exception_info" in df.columns:
                # Read again as written: the fill values above would make a quoted empty text "" (a failure
                # without a message, as in Parquet) null, and leave the stringified nulls uncounted. An empty
                # field is CSV's null (pandas writes None so).
                texts = pl.read_csv(
                    cand.abspath if data is None else io.BytesIO(data),
                    columns=["exception_info"],
                    infer_schema=False,
                    glob=False,
                ).to_series()
                if len(texts) != df.height:  # pragma: no cover  (one parse of one file)
                    raise ValueError("its exception_info column read with another number of rows")
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            ctx.problem(cand.rel, UNREADABLE, f"unreadable CSV: {str(exc).splitlines()[0][:300]}")
            info.readable = False
            return info
        # A NaN reward was written as "nan": keep it NaN (not null) so it is counted as NaN.
        if "reward" in df.columns and df.schema["reward"] == pl.String:
            df = df.with_columns(pl.col("reward").cast(pl.Float64, strict=False))
        if "prompt" not in df.columns and any(c in df.columns for c in TEXT_SOURCES):
            df = df.with_columns(prompt_expr(df.schema))  # summaries find prompt groups from the parsed frame
        ctx.warn(cand.rel, "CSV fallback file (Parquet writing failed during training); read from CSV")
        if df.schema.get("reward_metrics") == pl.String:
            bad = [t for t in df["reward_metrics"].drop_nulls().to_list() if parse_number_dict(t) is None]
            if bad:
                ctx.warn(
                    cand.rel,
                    f"{len(bad)} reward_metrics cell(s) are not a dict of numbers (first: {bad[0][:60]!r}); "
                    "their reward components are left empty",
                )
        if texts is not None:
            df = df.with_columns(exception_as_read(pl.lit(texts)).alias("exception_info"))
        info.rows = df.height
        info.columns = {c: str(t) for c, t in df.schema.items()}
        info.null_counts = {c: int(df[c].null_count()) for c in df.columns}
        info.frame = df
        if texts is not None:
            keep_exception_texts(info, "exception_info", count_exception_texts(texts), nulls_read=True)
        return info

    @staticmethod
    def _csv_version(info: FileInfo) -> tuple[int, int] | None:
        col = _csv_frame(info)["schema_version"].cast(pl.Int64, strict=False).drop_nulls()
        lo, hi = col.min(), col.max()
        return (lo, hi) if isinstance(lo, int) and isinstance(hi, int) else None  # None: no version given

    def _check_columns(self, info: FileInfo, ctx: RunContext) -> None:
        missing, absent, bad, halves = self._column_verdict(info, ctx)
        if missing:
            ctx.problem(info.path, MISSING_COLUMNS, f"missing required column(s) {', '.join(missing)}; file skipped")
            info.readable = False
            return
        if absent:
            ctx.warn(info.path, f"missing column(s) {', '.join(absent)} of the Flink v{info.schema_version} schema")
        for have, lack, what in halves:
            # Its values there are nulls the file never held (a judge that logs no KL): counted as null, said why.
            ctx.warn(info.path, f"{have} without {lack}: the role's {what} counts as null in this file")
        if bad and info.fmt == "parquet":
            ctx.problem(
                info.path, WRONG_TYPE, "wrong column type (expected a number): " + "; ".join(bad) + "; file skipped"
            )
            info.readable = False

    @staticmethod
    def _column_verdict(
        info: FileInfo, ctx: RunContext
    ) -> tuple[list[str], list[str], list[str], list[tuple[str, str, str]]]:
        """(missing required, absent optional, wrongly typed numeric) columns, and the roles with one of their two
        columns (``(present, absent, "KL" | "reward")``); worked out once per distinct column mapping (files of one
        footer schema share theirs)."""
        memo = ctx.cache.setdefault("flink_columns", {})
        hit = memo.get(id(info.columns))
        if hit is not None and hit[0] is info.columns:
            return hit[1]
        cols = info.columns
        missing = [c for c in REQUIRED if c not in cols]
        absent = [c for c in V0_COLUMNS if c not in cols and c not in REQUIRED]
        numeric = ["reward"] + [c for c in cols if c.endswith(("_reward", "_kl"))]
        bad = [f"{c} is {cols[c]}" for c in numeric if c in cols and not _is_numeric_type(cols[c])]
        halves = []
        if info.schema_version == 1:
            for r in S.flink_role_names([c for c in cols if c != "reward"]):
                if f"{r}_reward" not in cols:
                    halves.append((f"{r}_kl", f"{r}_reward", "reward"))
                elif f"{r}_kl" not in cols:
                    halves.append((f"{r}_reward", f"{r}_kl", "KL"))
        verdict = (missing, absent, bad, halves)
        if len(memo) < 256:
            memo[id(cols)] = (cols, verdict)
        return verdict

    def check_run(self, files: list[FileInfo], ctx: RunContext) -> None:
        """The exception texts that are not what they seem (``common.warn_exception_texts``), said once."""
        warn_exception_texts([f for f in files if f.kind == "samples" and f.readable], ctx)

    def roles(self, files: list[FileInfo], ctx: RunContext) -> list[str]:
        names: list[str] = []
        for f in files:
            if f.readable:
                for r in _file_roles(f, ctx):
                    if r not in names:
                        names.append(r)
        return names

    def _groups(self, files: list[FileInfo], ctx: RunContext) -> list[tuple[list[FileInfo], pl.LazyFrame]]:
        """Each group of same-version, same-columns files with its raw (unmigrated) lazy frame, whose ``source``
        is still each file's path as scanned (``_canonical`` makes it run-relative)."""
        readable = [f for f in files if f.readable]
        # One summarize asks for these frames three times (components, the wide check, the query): building a
        # scan of 2,000 paths costs ~8 ms, so they are kept per set of files (a quarantined file changes it).
        memo = ctx.cache.setdefault("flink_groups", {})
        key = tuple((id(f), f.repaired is not None) for f in readable)  # a file read again repaired: a new scan
        hit = memo.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], readable, strict=True)):
            return hit[1]
        out = []
        for group in group_by_signature(readable):
            if group[0].fmt == "csv":
                lf = pl.concat(
                    [_csv_frame(f).lazy().with_columns(pl.lit(str(f.abspath)).alias("source")) for f in group],
                    how="diagonal_relaxed",
                )
            else:
                lf = scan_parquet(group, include_file_paths="source")
            out.append((group, lf))
        if len(memo) < 16:
            memo[key] = (readable, out)
        return out

    def _canonical(self, group: list[FileInfo], lf: pl.LazyFrame) -> pl.LazyFrame:
        version = group[0].schema_version or 0
        if group[0].fmt == "parquet" and (read := exception_column(group, "exception_info")) is not None:
            lf = lf.with_columns(read)  # bytes as UTF-8 text, another type as none (``probe_exceptions``)
        lf = S.migrate(lf, version)
        lf = lf.with_columns(
            pl.lit(version, dtype=pl.Int32).alias("schema_version"),
            pl.lit(self.name).alias("layout"),
            per_file_value(group, "step", pl.Int64()).alias("step"),
            per_file_value(group, "split", pl.String()).alias("split"),
        )
        if may_hold_null_texts(group, "exception_info"):  # as the probe counted them, or could not
            lf = lf.with_columns(exception_as_read(pl.col("exception")).alias("exception"))
        return lf.with_columns(source_column(group))

    def scan_samples(self, files: list[FileInfo], ctx: RunContext) -> pl.LazyFrame | None:
        """A file whose ``agent_trajectories`` cannot be read (``FileInfo.unread``) and that has a rendered
        ``trajectory`` is a group of its own, its conversation parsed from that string alone: the source of
        the numeric view's prompt (``prompt_expr``), which ``Run._failing_columns`` tests the prompt groups
        on; its other texts are null."""
        apart = [f for f in files if "agent_trajectories" in f.unread and "trajectory" in f.columns]
        whole = [f for f in files if f not in apart]
        parts = [(g, lf, False) for g, lf in self._groups(whole, ctx)] if whole else []
        parts += [(g, lf, True) for f in apart for g, lf in self._groups([f], ctx)]
        frames = [
            with_conversations(S.conform_samples(self._canonical(group, lf)), ctx, json_unread=unread)
            for group, lf, unread in parts
        ]
        if not frames:
            return None
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def component_names(self, files: list[FileInfo], ctx: RunContext) -> list[str]:
        """From the footer's ``reward_metrics`` struct type: no data read (CSV: from the parsed cells). The
        probed column types answer without building a scan (a repeated summary needs no other); a type they
        do not spell plainly is asked of polars."""
        probed = probed_component_names([f for f in files if f.readable])
        if probed is not None:
            return probed
        names: list[str] = []
        for _group, lf in self._groups(files, ctx):
            for n in _metric_fields(lf):
                if n not in names:
                    names.append(n)
        return names

    def _numeric_frames(
        self, files: list[FileInfo], ctx: RunContext, carry: dict[str, pl.Expr], components: list[str]
    ) -> list[tuple[pl.LazyFrame, list[str]]]:
        """Per file group: a canonical frame with ``component/<name>`` floats straight from the struct
        fields and hidden ``__<role>__reward__`` / ``__<role>__kl__`` copies of the flat role columns. A file
        whose text cannot be read (``FileInfo.unread``) is a group of its own, that text null: the prompt
        found from its trajectory would fail the read (its samples are then in no prompt group)."""
        whole = [f for f in files if not f.unread]
        parts: list[tuple[list[FileInfo], pl.LazyFrame, tuple[str, ...]]] = []
        parts += [(g, lf, ()) for g, lf in self._groups(whole, ctx)] if whole else []
        parts += [(g, lf, f.unread) for f in files if f.unread for g, lf in self._groups([f], ctx)]
        out = []
        for group, raw, unread in parts:
            schema = raw.collect_schema()
            fields = _metric_fields(raw)
            hidden = []
            for n in components:
                if n not in fields:
                    hidden.append(pl.lit(None, dtype=pl.Float64).alias(f"component/{n}"))
                elif _is_map(schema["reward_metrics"]):
                    value = pl.col("reward_metrics").map.get(n)
                    hidden.append(value.cast(pl.Float64).alias(f"component/{n}"))
                elif schema["reward_metrics"] == pl.String:
                    hidden.append(
                        pl.col("reward_metrics")
                        .map_elements(functools.partial(_number_in, n), return_dtype=pl.Float64)
                        .alias(f"component/{n}")
                    )
                else:
                    hidden.append(pl.col("reward_metrics").struct.field(n).cast(pl.Float64).alias(f"component/{n}"))
            if "prompt" in unread:
                hidden.append(pl.lit(None, dtype=pl.String).alias("prompt"))
            elif "prompt" not in schema:
                hidden.append(prompt_expr(schema))  # read only when a summary carries prompt groups
            roles = S.flink_role_names([c for c in schema.names() if c != "reward"])
            for r in roles:
                for m in ("reward", "kl"):
                    src = f"{r}_{m}"
                    expr = pl.col(src).cast(pl.Float64, strict=False) if src in schema else pl.lit(None, pl.Float64)
                    hidden.append(expr.alias(f"__{r}__{m}__"))
            lf = S.conform_samples(self._canonical(group, raw.with_columns(hidden)))
            if unread:
                canonical = lf.collect_schema()
                lf = lf.with_columns(pl.lit(None, dtype=canonical[c]).alias(c) for c in unread if c in canonical)
            out.append((lf, roles))
        return out

    def scan_numeric(
        self, files: list[FileInfo], ctx: RunContext, carry: dict[str, pl.Expr], components: list[str]
    ) -> pl.LazyFrame | None:
        """Role rows straight from the flat ``<role>_reward/_kl`` columns (an unpivot, several times faster
        than building and exploding the nested ``roles``), components straight from the struct fields."""
        frames = []
        for lf, roles in self._numeric_frames(files, ctx, carry, components):
            keep = [*[e.alias(k) for k, e in carry.items()], *[pl.col(f"component/{n}") for n in components]]
            if not roles:
                frames.append(
                    lf.select(
                        *keep,
                        pl.lit(None, dtype=pl.String).alias("role"),
                        pl.col("reward").cast(pl.Float64),
                        pl.lit(None, dtype=pl.Float64).alias("kl"),
                    )
                )
                continue
            per_role = [pl.struct(reward=pl.col(f"__{r}__reward__"), kl=pl.col(f"__{r}__kl__")).alias(r) for r in roles]
            index = [*carry, *[f"component/{n}" for n in components]]
            frames.append(
                lf.select(*keep, *per_role).unpivot(on=roles, index=index, variable_name="role").unnest("value")
            )
        if not frames:
            return None
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def scan_numeric_wide(
        self,
        files: list[FileInfo],
        ctx: RunContext,
        carry: dict[str, pl.Expr],
        components: list[str],
        roles: list[str],
    ) -> pl.LazyFrame | None:
        """Also ``__has_role:<r>`` per role: whether the file holds that role's columns. A role that sits out a
        step has no column in its file, and its null values there are no values logged, not nulls logged (the
        long view, ``scan_numeric``, has no row for it): summaries mask each role by it (``aggregate.plan_wide``)."""
        frames = []
        for lf, present in self._numeric_frames(files, ctx, carry, components):
            cols = [*[e.alias(k) for k, e in carry.items()], *[pl.col(f"component/{n}") for n in components]]
            for r in roles:
                for m in ("reward", "kl"):
                    src = pl.col(f"__{r}__{m}__") if r in present else pl.lit(None, dtype=pl.Float64)
                    cols.append(src.alias(f"role:{r}:{m}"))
                cols.append(pl.lit(r in present).alias(f"__has_role:{r}"))
            cols.append(pl.lit(bool(present)).alias("__has_roles"))
            cols.append(pl.col("reward").cast(pl.Float64).alias("__sample_reward"))
            frames.append(lf.select(cols))
        if not frames:
            return None
        return pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]

    def wide_roles_everywhere(self, files: list[FileInfo], ctx: RunContext) -> bool:
        """Every file holds every role of the whole run (``run_files``: the roles a summary asks the wide view
        for, also of a part of the run): only then may a summary count every row for every role (the lean wide
        view); a file where a role sat out holds no value of it, which the masked view leaves out."""
        whole = set(self.roles(run_files(files, ctx, self.name), ctx))
        schemas = {id(f.columns): f for f in files if f.readable}  # files of one footer schema share their roles
        return bool(whole) and all(whole <= set(_file_roles(f, ctx)) for f in schemas.values())


def _file_roles(f: FileInfo, ctx: RunContext) -> list[str]:
    """The role names of a file's flat columns; worked out once per distinct column mapping (files of one
    footer schema share theirs)."""
    memo = ctx.cache.setdefault("flink_roles", {})
    hit = memo.get(id(f.columns))
    if hit is not None and hit[0] is f.columns:
        return hit[1]
    roles = S.flink_role_names([c for c in f.columns if c != "reward"])
    if len(memo) < 256:
        memo[id(f.columns)] = (f.columns, roles)
    return roles


def _number_in(name: str, text: str | None) -> float | None:
    """The value of ``name`` in a ``reward_metrics`` string (``{'acc': 1.0}``), or None."""
    return (parse_number_dict(text) or {}).get(name)


_STRUCT = re.compile(r"struct<(.*)>")
_FIELD = re.compile(r"([A-Za-z0-9_./-]+): ([a-z0-9]+)")
_NUMERIC_ARROW = re.compile(r"u?int(?:8|16|32|64)|halffloat|float|double|bool")


def probed_component_names(files: list[FileInfo]) -> list[str] | None:
    """The numeric field names of ``reward_metrics`` as polars would give them (``_metric_fields``), read from
    the probed Arrow type strings (``struct<correct: double, format: double>``), in first-seen order; None
    when a file is not Parquet or a type is anything but a flat struct of plainly named primitive fields (a
    string of cells, a nested or non-nullable field, a decimal): the caller then asks polars."""
    names: list[str] = []
    seen: set[int] = set()
    for f in files:
        if f.fmt != "parquet":
            return None
        if id(f.columns) in seen:
            continue
        seen.add(id(f.columns))
        dtype = f.columns.get("reward_metrics")
        if dtype is None:
            continue
        struct = _STRUCT.fullmatch(dtype)
        if struct is None:
            return None
        for part in struct.group(1).split(", ") if struct.group(1) else []:
            field = _FIELD.fullmatch(part)
            if field is None:
                return None
            name, typ = field.groups()
            if _NUMERIC_ARROW.fullmatch(typ):
                if name not in names:
                    names.append(name)
            elif typ not in ("string", "large_string", "null", "binary"):
                return None  # a type polars might count as numeric (a date is not, a decimal is): ask it
    return names


def _is_map(dtype: Any) -> bool:
    """Whether ``dtype`` is polars' map type (polars 2 reads an Arrow ``map<string, double>`` as one; older
    versions as a list of key/value structs, which no Flink writer gives as ``reward_metrics``)."""
    map_type = getattr(pl, "Map", None)
    return map_type is not None and isinstance(dtype, map_type)


def _metric_fields(lf: pl.LazyFrame) -> list[str]:
    """Numeric field names of ``reward_metrics`` from the schema (struct), or parsed from CSV text cells."""
    schema = lf.collect_schema()
    dtype = schema.get("reward_metrics")
    if isinstance(dtype, pl.Struct):
        return [f.name for f in dtype.fields if f.dtype.is_numeric() or f.dtype == pl.Boolean]
    if _is_map(dtype):
        # An Arrow map (polars 2's own type): its keys are in the data, read as the text cells' are. Its values
        # are read with ``map.get`` (``_numeric_frames``); a map of other values than numbers holds none.
        if not (dtype.value.is_numeric() or dtype.value == pl.Boolean):  # type: ignore[union-attr]
            return []
        keys = pl.col("reward_metrics").map.keys().explode().drop_nulls().unique(maintain_order=True)
        return [str(k) for k in lf.select(keys).collect().to_series().to_list()]
    if dtype == pl.String:
        cells = lf.select(pl.col("reward_metrics").drop_nulls().unique()).collect().to_series().to_list()
        names: list[str] = []
        for cell in cells:
            for n in parse_number_dict(cell) or {}:
                if n not in names:
                    names.append(n)
        return names
    return []
