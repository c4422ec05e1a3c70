"""Every schema version runlog knows, the canonical types, and the ordered migrations.

``docs/format.md`` is the prose authority; this module is the executable one and the two are kept in
agreement by ``tests/test_docs.py``.

Versions:
    0  Flink ``BatchDebugData`` (seed 000): no ``schema_version`` column, no per-role data.
    1  Flink debate extension: ``schema_version=1``, ``role_assignments``, ``<role>_reward``, ``<role>_kl``.
    2  runlog native: canonical columns, nested ``roles`` / ``reward_components`` / ``messages``.

Older versions are migrated on read by small ordered functions (``MIGRATIONS``), each taking a polars
LazyFrame of version ``v`` to version ``v + 1``. A version newer than ``CURRENT_VERSION`` is refused, file by
file, by the one version gate (``formats.common.gate_version``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._lazy import pl

CURRENT_VERSION = 2
KNOWN_VERSIONS = (0, 1, 2)
FORMAT_NAME = "runlog"
# How every output names the null role (the samples without per-role data: Flink v0 files, single-agent
# layouts): one label in tables, plots, the report and diff, so that a reader meets one name for one thing.
NULL_ROLE_LABEL = "(unknown)"


# ---------------------------------------------------------------------------------------------------------
# Arrow types of the native (v2) sample files. Written down in docs/format.md; never change them in place:
# a change is a new schema version with a migration.
# ---------------------------------------------------------------------------------------------------------
# Built on first use, like the polars types below, so that reading a run whose footers are cached does
# not import pyarrow at all; ``schema.NATIVE_SAMPLE_SCHEMA`` etc. still work through ``__getattr__``.
_ARROW_NAMES = frozenset(
    {"ARROW_REWARD_COMPONENTS", "ARROW_ROLES", "ARROW_TOOL_CALL", "ARROW_MESSAGE", "NATIVE_SAMPLE_SCHEMA"}
)


@functools.cache
def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    ARROW_REWARD_COMPONENTS = pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())]))
    ARROW_ROLES = pa.list_(pa.struct([("role", pa.string()), ("reward", pa.float64()), ("kl", pa.float64())]))
    ARROW_TOOL_CALL = pa.struct([("id", pa.string()), ("name", pa.string()), ("arguments", pa.string())])
    ARROW_MESSAGE = pa.struct(
        [
            ("role", pa.string()),
            ("name", pa.string()),
            ("content", pa.string()),
            ("reasoning", pa.string()),
            ("tool_calls", pa.list_(ARROW_TOOL_CALL)),
            ("tool_call_id", pa.string()),
        ]
    )

    NATIVE_SAMPLE_SCHEMA = pa.schema(
        [
            ("schema_version", pa.int32()),
            ("step", pa.int64()),
            ("split", pa.string()),
            ("sample_id", pa.string()),
            ("group_id", pa.string()),
            ("env_name", pa.string()),
            ("reward", pa.float64()),
            ("reward_components", ARROW_REWARD_COMPONENTS),
            ("roles", ARROW_ROLES),
            ("messages", pa.list_(ARROW_MESSAGE)),
            ("prompt", pa.string()),
            ("completion", pa.string()),
            ("trajectory", pa.string()),
            ("exception", pa.string()),
        ]
    )
    return {
        "ARROW_REWARD_COMPONENTS": ARROW_REWARD_COMPONENTS,
        "ARROW_ROLES": ARROW_ROLES,
        "ARROW_TOOL_CALL": ARROW_TOOL_CALL,
        "ARROW_MESSAGE": ARROW_MESSAGE,
        "NATIVE_SAMPLE_SCHEMA": NATIVE_SAMPLE_SCHEMA,
    }


# Columns a native sample file must have; the others are optional (null when absent).
NATIVE_REQUIRED = ("schema_version", "step", "split", "sample_id", "reward")
# Every column of ``NATIVE_SAMPLE_SCHEMA``, by name alone (known without importing pyarrow).
NATIVE_COLUMNS = (
    "schema_version",
    "step",
    "split",
    "sample_id",
    "group_id",
    "env_name",
    "reward",
    "reward_components",
    "roles",
    "messages",
    "prompt",
    "completion",
    "trajectory",
    "exception",
)

# ---------------------------------------------------------------------------------------------------------
# The canonical in-memory model (polars). Every reader produces these columns (plus free extra columns).
# ---------------------------------------------------------------------------------------------------------
# Columns that hold model text: numeric questions never select them (lazy projection keeps them unread).
TEXT_COLUMNS = frozenset({"prompt", "completion", "trajectory", "messages", "exception"})
# Numbers that are bookkeeping, not a measure of the sample (``prompt_turns``: where the generation starts in its
# messages, read with the texts): ``--where`` does not offer them, ``inspect`` does not count them as values.
NOT_VALUES = frozenset({"schema_version", "prompt_turns"})

# The polars types are built on first use (``runlog._lazy``): ``schema.SAMPLE_COLUMNS`` etc. still work as
# module attributes through ``__getattr__`` below.
_POLARS_NAMES = frozenset(
    {
        "PL_REWARD_COMPONENTS",
        "PL_ROLES",
        "PL_TOOL_CALL",
        "PL_MESSAGE",
        "PL_MESSAGES",
        "SAMPLE_COLUMNS",
        "ROLE_COLUMNS",
        "SCALAR_COLUMNS",
    }
)


@functools.cache
def _polars_types() -> dict[str, Any]:
    components = pl.List(pl.Struct({"name": pl.String, "value": pl.Float64}))
    roles = pl.List(pl.Struct({"role": pl.String, "reward": pl.Float64, "kl": pl.Float64}))
    tool_call = pl.Struct({"id": pl.String, "name": pl.String, "arguments": pl.String})
    message = pl.Struct(
        {
            "role": pl.String,
            "name": pl.String,
            "content": pl.String,
            "reasoning": pl.String,
            "tool_calls": pl.List(tool_call),
            "tool_call_id": pl.String,
        }
    )
    messages = pl.List(message)
    return {
        "PL_REWARD_COMPONENTS": components,
        "PL_ROLES": roles,
        "PL_TOOL_CALL": tool_call,
        "PL_MESSAGE": message,
        "PL_MESSAGES": messages,
        # Every reader produces these columns (plus free extra columns), in this order.
        "SAMPLE_COLUMNS": {
            "layout": pl.String(),
            "source": pl.String(),
            "schema_version": pl.Int32(),
            "step": pl.Int64(),
            "split": pl.String(),
            "sample_id": pl.String(),
            "group_id": pl.String(),
            "env_name": pl.String(),
            "reward": pl.Float64(),
            "reward_components": components,
            "roles": roles,
            "exception": pl.String(),
            "prompt": pl.String(),
            "completion": pl.String(),
            "trajectory": pl.String(),
            "messages": messages,
            # How many leading ``messages`` are the prompt (the request as sent: system, few-shot examples, the
            # question), the rest being what the rollout generated; null where a layout cannot tell (the texts
            # are then read from every turn). The text metrics read the policy's turns and tool calls from the
            # generated ones only: a few-shot assistant turn of the prompt is not the policy's.
            "prompt_turns": pl.Int32(),
        },
        "ROLE_COLUMNS": {
            "step": pl.Int64(),
            "split": pl.String(),
            "sample_id": pl.String(),
            "group_id": pl.String(),
            "role": pl.String(),
            "reward": pl.Float64(),
            "kl": pl.Float64(),
        },
        "SCALAR_COLUMNS": {
            "step": pl.Int64(),
            "time": pl.Float64(),
            "key": pl.String(),
            "value": pl.Float64(),
            "source": pl.String(),
            # The record's index in its file (a JSONL line among the records read): pairs a value with the
            # ``<key>__count`` weight of its own record when one file logs a step twice.
            "record": pl.Int64(),
        },
    }


def __getattr__(name: str) -> Any:
    if name in _POLARS_NAMES:
        return _polars_types()[name]
    if name in _ARROW_NAMES:
        return _arrow_types()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def empty_samples() -> pl.LazyFrame:
    return pl.LazyFrame(schema=_polars_types()["SAMPLE_COLUMNS"])


def empty_scalars() -> pl.LazyFrame:
    return pl.LazyFrame(schema=_polars_types()["SCALAR_COLUMNS"])


def conform_samples(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add missing canonical columns as typed nulls and cast present ones, keeping extra columns last."""
    present = lf.collect_schema()
    exprs = []
    columns = _polars_types()["SAMPLE_COLUMNS"]
    for name, dtype in columns.items():
        if name == "prompt_turns" and name in present:
            exprs.append(_prompt_turns(present[name]))
        elif name in present:
            exprs.append(pl.col(name) if present[name] == dtype else pl.col(name).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    extras = [pl.col(c) for c in present.names() if c not in columns]
    return lf.select(exprs + extras)


def _prompt_turns(dtype: pl.DataType) -> pl.Expr:
    """``prompt_turns`` as written (a native file's own column may hold anything): a whole number of messages,
    0 or more (past 2**31 - 1, that: every message); any other value (2.5, a negative count, true, text) reads
    as null, every turn then read."""
    c = pl.col("prompt_turns")
    if dtype.is_integer():
        whole = c
    elif dtype.is_float():
        whole = pl.when(c.is_finite() & (c == c.floor())).then(c)
    else:
        whole = pl.lit(None, dtype=pl.Int64)
    # A count past Int32 is every message (no sample holds 2**31 of them): the prompt's whole.
    return pl.when(whole >= 0).then(whole.clip(upper_bound=2**31 - 1)).cast(pl.Int32).alias("prompt_turns")


def conform_scalars(lf: pl.LazyFrame) -> pl.LazyFrame:
    present = lf.collect_schema()
    return lf.select(
        [
            (pl.col(n).cast(t, strict=False) if n in present else pl.lit(None, dtype=t).alias(n))
            for n, t in _polars_types()["SCALAR_COLUMNS"].items()
        ]
    )


# ---------------------------------------------------------------------------------------------------------
# Migrations (the version gate itself is ``formats.common.gate_version``: it records a problem per file)
# ---------------------------------------------------------------------------------------------------------
Migration = Callable[["pl.LazyFrame"], "pl.LazyFrame"]
MIGRATIONS: dict[int, Migration] = {}


def migration(from_version: int) -> Callable[[Migration], Migration]:
    def register(fn: Migration) -> Migration:
        MIGRATIONS[from_version] = fn
        return fn

    return register


def _struct_or_map_to_components(col: str, dtype: pl.DataType) -> pl.Expr:
    """A Flink ``reward_metrics`` cell (struct, map or JSON text) as canonical ``[{name, value}]``."""
    c = pl.col(col)
    if isinstance(dtype, pl.Struct):
        numeric = [f for f in dtype.fields if f.dtype.is_numeric() or f.dtype == pl.Boolean]
        if not numeric:
            return pl.lit(None, dtype=_polars_types()["PL_REWARD_COMPONENTS"])
        items = [
            pl.struct(pl.lit(f.name).alias("name"), c.struct.field(f.name).cast(pl.Float64).alias("value"))
            for f in numeric
        ]
        return (
            pl.when(c.is_null())
            .then(pl.lit(None, dtype=_polars_types()["PL_REWARD_COMPONENTS"]))
            .otherwise(
                pl.concat_list(items).list.eval(pl.element().filter(pl.element().struct.field("value").is_not_null()))
            )
        )
    map_type = getattr(pl, "Map", None)
    if map_type is not None and isinstance(dtype, map_type):
        # polars 2 reads an Arrow map as its own type (older ones as the list of key/value structs below): its
        # entries are that list. Left unread, every value of a map column was lost, unsaid.
        c = c.map.entries()
        dtype = pl.List(pl.Struct({"key": dtype.key, "value": dtype.value}))
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        names = [f.name for f in dtype.inner.fields]
        if len(names) == 2:  # Arrow map<string, number> arrives as list<struct<key, value>>
            k, v = names
            return c.list.eval(
                pl.struct(
                    pl.element().struct.field(k).cast(pl.String).alias("name"),
                    pl.element().struct.field(v).cast(pl.Float64, strict=False).alias("value"),
                )
            )
    if dtype == pl.String:
        return c.map_elements(_components_from_text, return_dtype=_polars_types()["PL_REWARD_COMPONENTS"])
    return pl.lit(None, dtype=_polars_types()["PL_REWARD_COMPONENTS"])


def _components_from_text(text: str | None) -> list[dict] | None:
    """Parse a dict written as JSON or as a Python repr (CSV fallback) without ever evaluating it."""
    from .textparse import parse_number_dict

    parsed = parse_number_dict(text)
    if parsed is None:
        return None
    return [{"name": k, "value": v} for k, v in parsed.items()]


@migration(0)
def v0_to_v1(lf: pl.LazyFrame) -> pl.LazyFrame:
    """v0 has no per-role data. v1 adds ``role_assignments``; it stays null: runlog never invents roles."""
    if "role_assignments" in lf.collect_schema():
        return lf
    return lf.with_columns(pl.lit(None, dtype=pl.String).alias("role_assignments"))


@migration(1)
def v1_to_v2(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Flink column names to canonical ones; flat ``<role>_reward/_kl`` columns to the nested ``roles``."""
    schema = lf.collect_schema()
    names = schema.names()
    renames = {
        "unique_sample_id": "sample_id",
        "exception_info": "exception",
    }
    exprs: list[pl.Expr] = []
    for old, new in renames.items():
        if old in schema:
            exprs.append(pl.col(old).cast(pl.String).alias(new))
    if "reward" in schema:
        exprs.append(pl.col("reward").cast(pl.Float64, strict=False).alias("reward"))
    if "reward_metrics" in schema:
        exprs.append(
            _struct_or_map_to_components("reward_metrics", schema["reward_metrics"]).alias("reward_components")
        )
    roles = flink_role_names(names)
    if roles:
        items = [
            pl.struct(
                pl.lit(r).alias("role"),
                (
                    pl.col(f"{r}_reward").cast(pl.Float64, strict=False)
                    if f"{r}_reward" in schema
                    else pl.lit(None, dtype=pl.Float64)
                ).alias("reward"),
                (
                    pl.col(f"{r}_kl").cast(pl.Float64, strict=False)
                    if f"{r}_kl" in schema
                    else pl.lit(None, dtype=pl.Float64)
                ).alias("kl"),
            )
            for r in roles
        ]
        exprs.append(pl.concat_list(items).alias("roles"))
    drop = set(renames) | {"reward_metrics"} | {f"{r}_{m}" for r in roles for m in ("reward", "kl")}
    keep = [pl.col(c) for c in names if c not in drop and c != "reward"]
    return lf.select(keep + exprs)


def flink_role_names(columns: list[str]) -> list[str]:
    """Role names from flat Flink v1 columns ``<role>_reward`` / ``<role>_kl``, in first-seen order."""
    roles: list[str] = []
    for c in columns:
        for suffix in ("_reward", "_kl"):
            if c.endswith(suffix) and len(c) > len(suffix):
                r = c[: -len(suffix)]
                if r not in roles and r not in {"reward", "total"}:
                    roles.append(r)
    return roles


def migrate(lf: pl.LazyFrame, from_version: int) -> pl.LazyFrame:
    """Apply the ordered migrations from ``from_version`` up to ``CURRENT_VERSION``.

    The ``schema_version`` column is left to the reader, which sets it to the version found on disk, so
    that analyses can still tell (for example) v0 rows, which have no per-role data, from v2 rows.
    """
    for v in range(from_version, CURRENT_VERSION):
        lf = MIGRATIONS[v](lf)
    return lf


def whole_number(value: Any) -> int | None:
    """An integer value (a whole float too), or None for anything else (NaN, 3.5, text, a bool, None)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
