"""Samples as the trainer has them -> one Arrow table of the native schema (docs/format.md, schema v2).

Two halves, on two threads:

* ``snapshot`` runs on the caller's (training) thread and does only what must happen before the call returns,
  without waiting for the device: the JAX arrays among the columns (or among the values of the row dicts;
  never a walk into lists of strings or messages) are copied on their device by one asynchronous dispatch (a
  donated buffer may be gone after the call; ``jax_utils.DeviceFetch``);
  numpy columns are copied (trainers reuse buffers), containers are shallow-copied.
* ``resolve`` then ``build_table`` run on the writer's background thread: the copies are moved to host
  (the only wait for the device), then flat per-role columns, reward components and OpenAI-style messages
  are folded into the canonical nested columns, typed, extra columns kept.

What is accepted (documented in docs/writer.md):

* the rows: a list of dicts, a dict of columns, a ``pyarrow.Table`` or a ``polars.DataFrame``;
* ``reward`` (required), ``sample_id`` (generated when missing), ``group_id``, ``env_name``, ``prompt``,
  ``completion``, ``trajectory``, ``exception``;
* per-role values: the canonical ``roles`` column (a list of ``{role, reward, kl}`` or a ``{role: {reward,
  kl}}`` dict per row), or flat ``<role>_reward`` / ``<role>_kl`` columns (the Flink v1 convention);
* reward components: a ``reward_components`` column holding a ``{name: value}`` dict or a ``[{name, value}]``
  list per row, or (dict-of-columns input) a ``{name: column}`` dict, or flat ``component/<name>`` columns;
* ``messages``: OpenAI chat messages per row (normalised by ``runlog.chat.from_openai_chat``);
* anything else is kept as a free extra column with the type pyarrow infers.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any, TypedDict

import pyarrow as pa

from .. import schema as S
from ..chat import from_openai_chat
from ..errors import UsageError
from . import jax_utils

COMPONENT_PREFIX = "component/"
_CANONICAL = {f.name: f.type for f in S.NATIVE_SAMPLE_SCHEMA}
_STRING_COLUMNS = ("sample_id", "group_id", "env_name", "prompt", "completion", "trajectory", "exception")
_STR_OR_NONE = {str, type(None)}
_METADATA = {b"runlog.schema_version": str(S.CURRENT_VERSION).encode()}
_SURROGATE = re.compile("[\ud800-\udfff]")


class SampleError(UsageError):
    """Samples the writer cannot turn into the native format (a missing ``reward``, a bad shape)."""


# ---------------------------------------------------------------------------------------------------------
# Caller thread
# ---------------------------------------------------------------------------------------------------------
def _is_polars_frame(x: Any) -> bool:
    return type(x).__module__.startswith("polars") and hasattr(x, "to_arrow")


def _is_numpy(x: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def _host_copy(a: Any) -> Any:
    """A numpy column's copy; bfloat16 / float8 / int4 (``ml_dtypes``, what ``np.asarray`` of a JAX array gives)
    as float32 / int8, which Arrow knows (one vectorised cast, done as the copy)."""
    return jax_utils.plain_dtype(a) if a.dtype.kind == "V" else a.copy()


def snapshot(samples: Any) -> tuple[Any, int, list[str]]:
    """A copy of ``samples`` that the caller may reuse or donate at once: (payload, rows, column names).

    The payload is ``(data, fetch)``: ``fetch`` is None, or the places of the JAX arrays in ``data`` and their
    ``DeviceFetch``; ``resolve`` puts the host arrays in place on the writer's thread.
    """
    if isinstance(samples, pa.Table):
        return (samples, None), samples.num_rows, samples.column_names
    if _is_polars_frame(samples):
        return (samples, None), samples.height, list(samples.columns)
    places: list[tuple[Any, ...]] = []
    arrays: list[Any] = []
    if isinstance(samples, Mapping):
        cols = dict(samples)
        for k, v in cols.items():
            if _is_numpy(v):
                cols[k] = _host_copy(v)
            elif isinstance(v, list):
                cols[k] = list(v)
            elif isinstance(v, Mapping):  # reward_components as {name: column}
                sub = dict(v)
                for kk, vv in sub.items():
                    if _is_numpy(vv):
                        sub[kk] = _host_copy(vv)
                    elif jax_utils.is_jax_array(vv):
                        places.append((k, kk))
                        arrays.append(vv)
                cols[k] = sub
            elif jax_utils.is_jax_array(v):
                places.append((k,))
                arrays.append(v)
        # Every column, and every column of a {name: column} dict, has one value per row.
        sizes = {
            **{k: _length(k, v) for k, v in cols.items() if not isinstance(v, Mapping)},
            **{
                f"{k}[{kk!r}]": _length(f"{k}[{kk!r}]", vv)
                for k, v in cols.items()
                if isinstance(v, Mapping)
                for kk, vv in v.items()
            },
        }
        lengths = set(sizes.values())
        if len(lengths) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise SampleError(f"columns have different lengths: {sorted(lengths)} ({detail})")
        n = lengths.pop() if lengths else 0
        check_names(cols, "column", SampleError)
        return (cols, _fetch(places, arrays)), n, list(cols)
    if isinstance(samples, Sequence) and not isinstance(samples, (str, bytes)):
        rows = list(samples)
        try:  # one pass in C: every row a dict holding 'reward' (the only required key)
            whole = all(map(dict.__contains__, rows, repeat("reward")))
        except TypeError:  # a row that is not a dict: say which
            whole = False
        if not whole:
            _check_rows(rows)
        # The types of the rows' values, collected in C: a per-value Python check would cost more than the call.
        if jax_utils.jax_loaded() and jax_utils.any_jax_type(
            set(map(type, chain.from_iterable([r.values() for r in rows])))
        ):
            for i, r in enumerate(rows):
                for k, v in r.items():
                    if jax_utils.is_jax_array(v):
                        places.append((i, k))
                        arrays.append(v)
        if rows:
            check_names(rows[0], "column", SampleError)  # the other rows' new keys are made safe on the writer's thread
        return (rows, _fetch(places, arrays)), len(rows), list(rows[0]) if rows else []
    raise SampleError(
        f"samples is a {type(samples).__name__}; expected a list of dicts, a dict of columns, "
        "a pyarrow.Table or a polars.DataFrame"
    )


def check_names(names: Any, what: str, error: type[UsageError] = UsageError) -> None:
    """Refuse a name that is not a str, or that holds a lone surrogate (it cannot be written as UTF-8, and
    would come back as another name). One join and one encode in C for all the names."""
    try:
        "".join(names).encode()
        return
    except (TypeError, UnicodeEncodeError):
        pass
    for k in names:
        if not isinstance(k, str):
            raise error(f"{what} name {k!r} is a {type(k).__name__}; names are str")
        if _SURROGATE.search(k):
            raise error(f"{what} name {k!r} holds a lone surrogate, which UTF-8 cannot hold")


def without_surrogates(v: Any) -> Any:
    """``v`` with every lone surrogate of its strings (and of the keys of its dicts, in lists and dicts) replaced
    by U+FFFD; a valid pair written as two surrogates becomes its character. Used only when Arrow refused a
    column's text, so text without surrogates never pays for it."""
    if isinstance(v, str):
        return v.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _SURROGATE.search(v) else v
    if isinstance(v, Mapping):
        return {without_surrogates(k): without_surrogates(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [without_surrogates(x) for x in v]
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, np.ndarray) and v.dtype.kind in "UO":
        return without_surrogates(v.tolist())
    return v


def _check_rows(rows: list[Any]) -> None:
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise SampleError(f"samples is a list of {type(r).__name__}; expected a list of dicts")
        if "reward" not in r:
            raise SampleError(
                f"row {i} has no 'reward' (every row needs one: None where the trajectory failed); its keys: "
                f"{sorted(map(str, r))}"
            )


def _length(name: str, col: Any) -> int:
    if isinstance(col, (str, bytes)):
        raise SampleError(
            f"column {name} is a {type(col).__name__}, not a column: a dict of columns holds one value per row "
            "(a constant is not broadcast: give [value] * rows)"
        )
    try:
        return len(col)
    except TypeError:
        raise SampleError(
            f"column {name} is a {type(col).__name__}, not a column (a dict of columns holds one value per row)"
        ) from None


def _fetch(places: list[tuple[Any, ...]], arrays: list[Any]) -> tuple[list[tuple[Any, ...]], Any] | None:
    return (places, jax_utils.DeviceFetch(arrays)) if arrays else None


def resolve(payload: tuple[Any, Any]) -> Any:
    """The snapshot's data with its JAX arrays replaced by their host copies (waits for them: writer thread).

    Rows holding JAX values are copied before the replacement: the caller's dicts are never changed.
    """
    data, fetch = payload
    if fetch is None:
        return data
    places, device = fetch
    copied: set[int] = set()
    for place, value in zip(places, device.get(), strict=True):
        if isinstance(data, dict):
            if len(place) == 1:
                data[place[0]] = value
            else:
                data[place[0]][place[1]] = value  # our own copy of the sub-dict
        else:
            i, k = place
            if i not in copied:
                data[i] = dict(data[i])
                copied.add(i)
            data[i][k] = value
    return data


# ---------------------------------------------------------------------------------------------------------
# Background thread
# ---------------------------------------------------------------------------------------------------------
def _columns(payload: Any) -> dict[str, Any]:
    if _is_polars_frame(payload):
        payload = payload.to_arrow()
    if isinstance(payload, pa.Table):
        return {name: payload.column(name) for name in payload.column_names}
    if isinstance(payload, dict):
        return payload
    keys: dict[str, None] = {}
    for r in payload:
        keys.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in payload] for k in keys}


def _pylist(col: Any) -> list[Any]:
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col.to_pylist()
    if _is_numpy(col):
        return col.tolist()
    out = list(col)
    np = sys.modules.get("numpy")
    # The values' types collected in C (a per-value Python check costs ~1 ms per 1,000 values).
    if np is not None and any(issubclass(t, (np.ndarray, np.generic)) for t in set(map(type, out))):
        # Rows whose JAX values were moved to host hold 0-d numpy arrays; Arrow wants Python scalars or lists.
        out = [v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v for v in out]
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    return float(v)


def _typed(col: Any, typ: pa.DataType, name: str, *, clean: bool = False) -> pa.Array | pa.ChunkedArray:
    """A column as the given Arrow type: Arrow input cast when it can be, everything else built by pyarrow.
    Text with lone surrogates (which UTF-8 cannot hold) is written with U+FFFD in their place."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        if col.type == typ:
            return col
        if not pa.types.is_nested(typ):
            return col.cast(typ)
        col = col.to_pylist()
    try:
        if _is_numpy(col) and col.ndim == 1:
            arr = pa.array(col)
            return arr if arr.type == typ else arr.cast(typ)
        if pa.types.is_string(typ):
            values = _pylist(col)
            if set(map(type, values)) <= _STR_OR_NONE:  # already text: no per-value conversion
                return pa.array(values, type=typ)
            return pa.array([None if v is None else str(v) for v in values], type=typ)
        return pa.array(_pylist(col), type=typ)
    except UnicodeError as exc:
        if clean:
            raise SampleError(f"column {name!r} cannot be written as {typ}: {exc}") from exc
        return _typed(without_surrogates(_pylist(col)), typ, name, clean=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SampleError(f"column {name!r} cannot be written as {typ}: {exc}") from exc


def flat_role_names(columns: Sequence[str], roles: Sequence[str] | None) -> list[str]:
    """The roles whose flat ``<role>_reward`` / ``<role>_kl`` columns are present.

    With ``roles`` given only those names are folded (so ``length_reward`` stays an extra column); without,
    every ``<x>_reward`` / ``<x>_kl`` column is taken as a role, as the Flink v1 reader does.
    """
    if roles is not None:
        return [r for r in roles if f"{r}_reward" in columns or f"{r}_kl" in columns]
    return S.flink_role_names(list(columns))


class _RoleValues(TypedDict):
    """One element of the canonical ``roles`` column."""

    role: str
    reward: float | None
    kl: float | None


def _fold_roles(
    cols: dict[str, Any], n: int, roles: Sequence[str] | None
) -> tuple[list[Any] | pa.Array | None, list[str]]:
    flat = flat_role_names(list(cols), roles)
    if "roles" in cols:
        if flat:
            raise SampleError(
                f"both a 'roles' column and flat per-role columns ({', '.join(flat)}); give one of the two"
            )
        out: list[Any] = []
        seen: list[str] = []
        for cell in _pylist(cols.pop("roles")):
            if cell is None:
                out.append(None)
                continue
            if isinstance(cell, Mapping):  # {role: {reward, kl}} or {role: reward}
                items = [{"role": r, **(v if isinstance(v, Mapping) else {"reward": v})} for r, v in cell.items()]
            else:
                items = list(cell)
            structs = [
                _RoleValues(role=str(d["role"]), reward=_num(d.get("reward")), kl=_num(d.get("kl"))) for d in items
            ]
            seen.extend(s["role"] for s in structs if s["role"] not in seen)
            out.append(structs)
        return out, seen
    if not flat:
        return None, []
    columnar = _fold_roles_columnar(cols, n, flat)
    if columnar is not None:
        return columnar, flat
    rewards = {r: _pylist(cols.pop(f"{r}_reward")) if f"{r}_reward" in cols else [None] * n for r in flat}
    kls = {r: _pylist(cols.pop(f"{r}_kl")) if f"{r}_kl" in cols else [None] * n for r in flat}
    return [[{"role": r, "reward": _num(rewards[r][i]), "kl": _num(kls[r][i])} for r in flat] for i in range(n)], flat


def _fold_roles_columnar(cols: dict[str, Any], n: int, flat: list[str]) -> pa.Array | None:
    """The ``roles`` column built from flat numeric numpy columns without a Python loop over the rows (the
    common case of a trainer's per-role arrays, JAX ones included once on the host): None for anything else,
    which takes the row-by-row path. Values are kept as they are (NaN stays NaN); a role's missing column is
    null, as on the row path."""
    names = [f"{r}_{k}" for r in flat for k in ("reward", "kl")]
    present = [c for c in names if c in cols]
    np = sys.modules.get("numpy")
    if np is None or not all(
        _is_numpy(cols[c]) and cols[c].ndim == 1 and cols[c].dtype.kind in "fiub" for c in present
    ):
        return None
    width = len(flat)
    fields = []
    for k in ("reward", "kl"):
        grid = np.empty((n, width), dtype=np.float64)
        missing = np.zeros((n, width), dtype=bool)
        for j, r in enumerate(flat):
            c = cols.pop(f"{r}_{k}", None)
            if c is None:
                missing[:, j] = True
                grid[:, j] = 0.0
            else:
                grid[:, j] = c
        fields.append(pa.array(grid.ravel(), pa.float64(), mask=missing.ravel() if missing.any() else None))
    role = pa.array(flat * n, pa.string())
    items = pa.StructArray.from_arrays([role, *fields], fields=list(_CANONICAL["roles"].value_type))
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, items, type=_CANONICAL["roles"])


def _components_cell(cell: Any) -> list[dict[str, Any]] | None:
    if cell is None:
        return None
    if isinstance(cell, Mapping):
        return [{"name": str(k), "value": _num(v)} for k, v in cell.items()]
    return [{"name": str(d["name"]), "value": _num(d.get("value"))} for d in cell]


def _fold_components(cols: dict[str, Any], n: int) -> list[Any] | None:
    flat = [c for c in cols if c.startswith(COMPONENT_PREFIX)]
    if "reward_components" in cols:
        if flat:
            raise SampleError("both a 'reward_components' column and flat 'component/<name>' columns; give one")
        rc = cols.pop("reward_components")
        if isinstance(rc, Mapping):  # dict of columns: {name: column}; a null value is left out (docs/writer.md)
            by_name = {str(k): _pylist(v) for k, v in rc.items()}
            return [
                [{"name": k, "value": _num(v[i])} for k, v in by_name.items() if v[i] is not None] or None
                for i in range(n)
            ]
        if isinstance(rc, (pa.Array, pa.ChunkedArray)) and rc.type == _CANONICAL["reward_components"]:
            return rc
        return [_components_cell(c) for c in _pylist(rc)]
    if not flat:
        return None
    by_name = {c[len(COMPONENT_PREFIX) :]: _pylist(cols.pop(c)) for c in flat}
    return [
        [{"name": k, "value": _num(v[i])} for k, v in by_name.items() if v[i] is not None] or None for i in range(n)
    ]


def _messages(col: Any) -> Any:
    if isinstance(col, (pa.Array, pa.ChunkedArray)) and col.type == _CANONICAL["messages"]:
        return col
    return [None if cell is None else from_openai_chat(cell) for cell in _pylist(col)]


def _check_constant(cols: dict[str, Any], name: str, expected: Any) -> None:
    if name not in cols:
        return
    values = {v for v in _pylist(cols.pop(name)) if v is not None}
    if values and values != {expected}:
        raise SampleError(f"the rows' {name} column holds {sorted(map(str, values))}, but the call is for {expected!r}")


def build_table(
    payload: Any,
    *,
    step: int,
    split: str,
    process: int,
    offset: int,
    roles: Sequence[str] | None,
) -> tuple[pa.Table, list[str]]:
    """One Arrow table of the native schema (plus extras) and the role names found in it."""
    cols = _columns(payload)
    n = len(next(iter(v for v in cols.values() if not isinstance(v, Mapping)), []))
    if "reward" not in cols:
        raise SampleError("samples have no 'reward' column (required; null where a trajectory failed)")
    _check_constant(cols, "schema_version", S.CURRENT_VERSION)
    _check_constant(cols, "step", step)
    _check_constant(cols, "split", split)
    role_cells, role_names = _fold_roles(cols, n, roles)
    components = _fold_components(cols, n)
    if "sample_id" not in cols:
        cols["sample_id"] = [f"{split}-s{step}-p{process}-{offset + i}" for i in range(n)]
    arrays: dict[str, Any] = {
        "schema_version": pa.array([S.CURRENT_VERSION] * n, pa.int32()),
        "step": pa.array([step] * n, pa.int64()),
        "split": pa.array([split] * n, pa.string()),
    }
    for name, typ in _CANONICAL.items():
        if name in arrays:
            continue
        if name == "roles":
            value = role_cells
        elif name == "reward_components":
            value = components
        elif name == "messages":
            value = _messages(cols.pop(name)) if name in cols else None
        else:
            value = cols.pop(name, None)
        arrays[name] = pa.nulls(n, typ) if value is None else _typed(value, typ, name)
    fields = [pa.field(k, _CANONICAL[k]) for k in _CANONICAL]
    for name, col in cols.items():
        arr = _extra(col, name)
        if type(name) is not str or not name.isascii():  # keys of later rows, not checked at the call
            name = without_surrogates(str(name))
        arrays[name] = arr
        fields.append(pa.field(name, arr.type))
    for name, arr in arrays.items():
        if len(arr) != n:
            raise SampleError(f"column {name!r} has {len(arr)} values, expected {n}")
    table = pa.Table.from_arrays(list(arrays.values()), schema=pa.schema(fields, metadata=_METADATA))
    return table, role_names


def _extra(col: Any, name: str) -> pa.Array | pa.ChunkedArray:
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col
    try:
        try:
            if _is_numpy(col):
                return pa.array(col) if col.ndim == 1 else pa.array(list(col))
            return pa.array(_pylist(col))
        except UnicodeError:  # lone surrogates: written as U+FFFD
            return pa.array(without_surrogates(_pylist(col)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SampleError(f"extra column {name!r} cannot be written to Parquet: {exc}") from exc


def concat(tables: list[pa.Table]) -> pa.Table:
    """The chunks of one step as one table (extra columns may differ between chunks: missing ones are null)."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive").replace_schema_metadata(_METADATA)


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------
def scalar_value(key: str, v: Any) -> float | int:
    if isinstance(v, (bool, int, float)):
        return v
    if hasattr(v, "item") and getattr(v, "size", 1) == 1:  # numpy / host JAX scalar or 1-element array
        v = v.item()
        if isinstance(v, (bool, int, float)):
            return v
    raise UsageError(
        f"scalar {key!r} is a {type(v).__name__}; scalars are numbers (use StatsTracker.summary for arrays)"
    )


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened with ``/`` (the format's key convention). Two values for one key
    (``{"a": {"b": 1}, "a/b": 2}``) are refused, naming the key, rather than one silently kept."""
    out: dict[str, Any] = {}
    _flatten_into(out, metrics, prefix)
    return out


def _flatten_into(out: dict[str, Any], metrics: Mapping[str, Any], prefix: str) -> None:
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten_into(out, v, key + "/")
        elif key in out:
            raise UsageError(f"scalar key {key!r} is given twice (nested dicts are flattened with '/')")
        else:
            out[key] = v
