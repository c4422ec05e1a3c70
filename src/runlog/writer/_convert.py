"""Samples as the trainer has them -> one Arrow table of the native schema (docs/format.md, schema v2).

Two halves, on two threads:

* ``snapshot`` runs on the caller's (training) thread and does only what must happen before the call returns,
  without waiting for the device: the JAX arrays among the columns (or among the values of the row dicts;
  never a walk into lists of strings or messages) are copied on their device by one asynchronous dispatch (a
  donated buffer may be gone after the call; ``jax_utils.DeviceFetch``);
  numpy columns, every numpy array among the values of a list column and those an object-array column holds
  are copied (trainers reuse buffers), containers are shallow-copied.
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
* ``messages``: OpenAI chat messages per row, or their JSON text (normalised by ``runlog.chat.from_openai_chat``);
* anything else is kept as a free extra column with the type pyarrow infers.
"""

from __future__ import annotations

import contextlib
import json
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from typing import Any, TypedDict

import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..chat import from_openai_chat, messages_in_text
from ..errors import UsageError
from . import jax_utils

COMPONENT_PREFIX = "component/"
_CANONICAL = {f.name: f.type for f in S.NATIVE_SAMPLE_SCHEMA}
_STRING_COLUMNS = ("sample_id", "group_id", "env_name", "prompt", "completion", "trajectory", "exception")
_STR_OR_NONE = {str, type(None)}
_METADATA = {b"runlog.schema_version": str(S.CURRENT_VERSION).encode()}
_SURROGATE = re.compile("[\ud800-\udfff]")
_GET_REWARD = operator.itemgetter("reward")
_DICT = frozenset({dict})
_NUMBER_TYPES = {int, float, bool, type(None)}  # and numpy numbers, JAX arrays: see ``_number_type``
_NUMBER_KINDS = frozenset("fiub")  # numpy dtype kinds that are numbers (bool included)
Warn = Callable[[str], None]
# What Arrow (and the conversions before it) raise for values that no column of the type asked for can hold.
_ARROW_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError)


class SampleError(UsageError):
    """Samples the writer cannot turn into the native format (a missing ``reward``, a bad shape)."""


# ---------------------------------------------------------------------------------------------------------
# Caller thread
# ---------------------------------------------------------------------------------------------------------
def _is_polars_frame(x: Any) -> bool:
    return type(x).__module__.startswith("polars") and hasattr(x, "to_arrow")


def _is_polars_series(x: Any) -> bool:
    return type(x).__module__.startswith("polars") and hasattr(x, "dtype") and hasattr(x, "to_arrow")


def _check_polars_number(dtype: Any, name: str) -> None:
    """A polars column of numbers, told from its dtype, named as polars names it (``String``, not Arrow's
    ``large_string``, which the user never wrote)."""
    if not (dtype.is_numeric() or str(dtype) in ("Boolean", "Null")):
        raise SampleError(f"{name} is a polars column of {dtype}; {_numbers(name)}")


def _is_numpy(x: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(x, np.ndarray)


def _host_copy(a: Any) -> Any:
    """A numpy array's copy; bfloat16 / float8 / int4 (``ml_dtypes``, what ``np.asarray`` of a JAX array gives)
    as float32 / int8, which Arrow knows (one vectorised cast, done as the copy). An object array (one array per
    row: the numpy form of ragged values) is copied with the arrays it holds: its own ``copy()`` copies only the
    references, and the trainer's reused buffer would be written instead of what it logged."""
    if a.dtype.kind == "V":
        return jax_utils.plain_dtype(a)
    if a.dtype.kind == "f" and a.dtype.itemsize > 8:
        return a.astype("float64")  # a longdouble, which Arrow has no type for: rounded to float64 (the copy)
    out = a.copy()
    if a.dtype.kind == "O":
        flat = out.reshape(-1)  # a view: the copy is contiguous
        if _holds_arrays(set(map(type, flat))):
            for i, x in enumerate(flat):
                if _is_numpy(x):
                    flat[i] = _host_copy(x)
    return out


def _holds_arrays(types: set[type]) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and any(issubclass(t, np.ndarray) for t in types)


def _copy_values(values: Sequence[Any]) -> list[Any]:
    """A list column's copy in which every numpy array among its values is copied (``_host_copy``), wherever it
    is: per-sample views of a batch buffer the trainer reuses, whether the first row is one or None (a row
    without tokens). Which values are arrays is told by their types, collected in C (about 4 us per 256 values,
    so text columns pay little). Arrays further down in a value (a Python list of arrays, a dict) are not
    looked for: that would cost a check per token of a column of token-id lists (docs/writer.md)."""
    if not _holds_arrays(set(map(type, values))):
        return list(values)
    return [_host_copy(x) if _is_numpy(x) else x for x in values]


def snapshot(samples: Any) -> tuple[Any, int, list[str]]:
    """A copy of ``samples`` that the caller may reuse or donate at once: (payload, rows, column names).

    The payload is ``(data, fetch)``: ``fetch`` is None, or the places of the JAX arrays in ``data`` and their
    ``DeviceFetch``; ``resolve`` puts the host arrays in place on the writer's thread.
    """
    if isinstance(samples, pa.Table):
        if "reward" in samples.column_names:
            _check_number_column(samples.column("reward"), "reward")
        return (samples, None), samples.num_rows, samples.column_names
    if _is_polars_frame(samples):
        if "reward" in samples.columns:
            _check_polars_number(samples.schema["reward"], "reward")
        return (samples, None), samples.height, list(samples.columns)
    places: list[tuple[Any, ...]] = []
    arrays: list[Any] = []
    if isinstance(samples, Mapping):
        cols = dict(samples)
        for k, v in cols.items():
            if _is_numpy(v):
                cols[k] = _host_copy(v)
            elif isinstance(v, (list, tuple)):
                # One numpy array per row (per-sample views of a batch buffer the trainer reuses): each copied, as
                # a numpy column is, at whatever row (a first row of None is a row without tokens).
                cols[k] = v = _copy_values(v)
                # One JAX array per row (ragged per-token values, or 0-d values): each is fetched like a column.
                # Told by the first value (a walk of every list would cost the text columns ~10 us per 512
                # values); a JAX value after other values is moved to host on the writer's thread (``_pylist``).
                if v and jax_utils.is_jax_array(v[0]):
                    for i, x in enumerate(v):
                        if jax_utils.is_jax_array(x):
                            places.append((k, i))
                            arrays.append(x)
            elif isinstance(v, Mapping):  # reward_components as {name: column}
                sub = dict(v)
                for kk, vv in sub.items():
                    if _is_numpy(vv):
                        sub[kk] = _host_copy(vv)
                    elif isinstance(vv, (list, tuple)):
                        sub[kk] = _copy_values(vv)
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
        if "reward" in cols:
            _check_number_column(cols["reward"], "reward")
        return (cols, _fetch(places, arrays)), n, list(cols)
    if isinstance(samples, Sequence) and not isinstance(samples, (str, bytes)):
        rows = list(samples)
        reward_types = None
        # One pass in C: every row a dict holding 'reward' (the only required key), and the rewards' types. Plain
        # dicts only: a ``defaultdict``'s ``[]`` would add a missing reward to the caller's row, and write it.
        if set(map(type, rows)) <= _DICT:
            with contextlib.suppress(KeyError):
                reward_types = set(map(type, map(_GET_REWARD, rows)))
        if reward_types is None:  # a row that is not a plain dict, or has no reward: say which
            _check_rows(rows)
            reward_types = {type(r["reward"]) for r in rows}
        if not reward_types <= _NUMBER_TYPES or int in reward_types:
            _check_number_values([r["reward"] for r in rows], reward_types, "reward")
        # The types of the rows' values, collected in C: a per-value Python check would cost more than the call.
        if jax_utils.jax_loaded() and jax_utils.any_jax_type(
            set(map(type, chain.from_iterable([r.values() for r in rows])))
        ):
            for i, r in enumerate(rows):
                for k, v in r.items():
                    if jax_utils.is_jax_array(v):
                        places.append((i, k))
                        arrays.append(v)
        # Every row's keys (one pass in C): a key that only a later row has is checked like the first row's.
        names = _row_keys(rows)
        check_names(names, "column", SampleError)
        return (rows, _fetch(places, arrays)), len(rows), names
    raise SampleError(
        f"samples is a {type(samples).__name__}; expected a list of dicts, a dict of columns, "
        "a pyarrow.Table or a polars.DataFrame"
    )


def _row_keys(rows: list[Any]) -> list[str]:
    """The keys of all the rows, the first row's in its order, then those only later rows have (in the order they
    first appear). The set of them is one C pass (``set.union``: a third of ``dict.fromkeys``'s time over 512 row
    dicts); the order is worked out only when some row has a key the first has not."""
    if not rows:
        return []
    first = list(rows[0])
    if len(rows) == 1:
        return first
    every = set().union(*rows)
    if len(every) == len(first):
        return first
    return list(dict.fromkeys(chain.from_iterable(rows)))


_KNOWN_NUMBER_TYPES: dict[type, bool] = {}


def is_number_type(t: type) -> bool:
    """Whether values of type ``t`` are numbers Arrow writes as a float64 ``reward`` (cached per type): a numpy
    ``timedelta64`` is no number (numpy makes it an integer type, and its unit would be dropped), nor is a
    complex number."""
    hit = _KNOWN_NUMBER_TYPES.get(t)
    if hit is None:
        np = sys.modules.get("numpy")
        hit = t in _NUMBER_TYPES or jax_utils.any_jax_type([t])
        if not hit and np is not None:
            hit = issubclass(t, (np.number, np.bool_)) and not issubclass(t, (np.complexfloating, np.timedelta64))
        _KNOWN_NUMBER_TYPES[t] = hit
    return hit


_number_type = is_number_type


_NDIM = operator.attrgetter("ndim")
_DTYPE_KIND = operator.attrgetter("dtype.kind")
_JAX_NUMBER_KINDS = frozenset("fiubV")  # "V": bfloat16, float8, int4 (ml_dtypes), all numbers


def _numbers(name: str) -> str:
    if name == "reward":
        return "rewards are numbers (None where a trajectory failed; text is never parsed)"
    return "rewards, KL values and reward components are numbers (None where there is none; text is never parsed)"


def _check_number_values(values: list[Any], types: set[type], name: str, *, rows: bool = True) -> None:
    """Refuse a value of column ``name`` that is not a number (None, NaN and inf are numbers here): text is never
    parsed, a dict or a list is not a number, and a JAX or numpy array is one only when it is 0-d and real
    (its shape and dtype are known without a transfer). ``values``: one per row (numbering the rows in the
    message); ``types``: their types. A Python int beyond the float64 range (which no double holds) is refused
    too: the writer writes these as float64."""
    if int in types:
        _check_float_range(values, types, name, rows=rows)
    if types <= _NUMBER_TYPES:
        return
    if all(_number_type(t) for t in types):
        jax_types = {t for t in types if jax_utils.any_jax_type([t])}
        if not jax_types:
            return
        if jax_types == types and set(map(_NDIM, values)) == {0} and set(map(_DTYPE_KIND, values)) <= _JAX_NUMBER_KINDS:
            return  # every value a 0-d real JAX array (rows built by indexing a batch), checked in C
    np = sys.modules.get("numpy")
    for i, v in enumerate(values):
        t = type(v)
        where = f"{name} of row {i}" if rows else name
        is_jax = jax_utils.is_jax_array(v)
        if is_jax or (np is not None and isinstance(v, np.ndarray)):
            kinds = _JAX_NUMBER_KINDS if is_jax else _NUMBER_KINDS
            if v.ndim == 0 and v.dtype.kind in kinds:
                continue  # a 0-d array (what a JAX scalar becomes on the host)
            what = "JAX" if is_jax else "numpy"
            raise SampleError(
                f"{where} is a {what} array of {v.dtype} and shape {tuple(v.shape)}; {_numbers(name)}: "
                "one real number per row (a 0-d array), or give the column as one array of shape (rows,)"
            )
        if _number_type(t):
            continue
        raise SampleError(f"{where} is a {t.__name__} ({v!r:.40}); {_numbers(name)}")


_FLOAT_RANGE = 2**1023  # above this, ``float()`` of a Python int may overflow: checked one by one


def _check_float_range(values: list[Any], types: set[type], name: str, *, rows: bool = True) -> None:
    """Refuse a Python int that float64 cannot hold (``float()`` overflows): the writer would fail on it. An int
    beyond 2**53 is fine: written as ``float()`` rounds it. One pass in C unless some int is that large."""
    ints = values if types == {int} else [v for v in values if type(v) is int]
    if not ints or (max(ints) <= _FLOAT_RANGE and min(ints) >= -_FLOAT_RANGE):
        return
    for i, v in enumerate(values):
        if type(v) is int:
            try:
                float(v)
            except OverflowError:
                where = f"{name} of row {i}" if rows else name
                raise SampleError(
                    f"{where} is an int of {v.bit_length()} bits, beyond the float64 range (about 1.8e308): "
                    "rewards, KL values and reward components are written as float64"
                ) from None


_ARROW_NUMBER_TESTS = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_boolean,
    pa.types.is_null,
    pa.types.is_decimal,
)


def _check_number_column(col: Any, name: str) -> None:
    """A column of numbers (``reward``, a per-role reward or KL, a reward component): checked from the dtype and
    shape where there are some (a JAX array's are known without a transfer: its values are never read here),
    else from the values' types (one pass in C). A column of shape ``(rows, 1)`` (a reward model's output) is
    taken as ``(rows,)``."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        t = col.type
        if not any(f(t) for f in _ARROW_NUMBER_TESTS):
            raise SampleError(f"{name} is a column of {t}; {_numbers(name)}")
        return
    if _is_polars_series(col):
        _check_polars_number(col.dtype, name)
        return
    is_jax = jax_utils.is_jax_array(col)
    if is_jax or (_is_numpy(col) and col.dtype.kind != "O"):
        what = "JAX" if is_jax else "numpy"
        if col.dtype.kind not in (_JAX_NUMBER_KINDS if is_jax else _NUMBER_KINDS):
            raise SampleError(f"{name} is a {what} column of {col.dtype}; {_numbers(name)}")
        if col.ndim != 1 and tuple(col.shape[1:]) != (1,):
            rows = col.shape[0] if col.ndim else "rows"
            raise SampleError(
                f"{name} is a {what} array of shape {tuple(col.shape)}; expected one number per row: shape "
                f"({rows},) (or ({rows}, 1), taken as ({rows},))"
            )
        return
    values = list(col)
    _check_number_values(values, set(map(type, values)), name)


def check_call(data: Any, columns: list[str], *, step: int, split: str, roles: Sequence[str] | None) -> None:
    """What ``build_table`` would refuse on the writer's thread, checked on the caller's, so that a bad call fails
    at the call and never stops the writer: both forms of roles or of reward components, a ``step``, ``split``
    or ``schema_version`` column that differs from the call, a ``roles`` or ``reward_components`` cell of
    another shape, a per-role reward or KL or a reward component that is not a number (text is never parsed; a
    JAX array's shape and dtype are looked at, never its values), a role the constructor's ``roles`` did not
    declare. Column names are those of the call (for a list of row dicts, the keys of every row). Values held
    by JAX arrays are not read here (that would wait for the device)."""
    names = list(columns)
    flat = flat_role_names(names, roles)
    if "roles" in names and flat:
        raise SampleError(
            f"both a 'roles' column and flat per-role columns ({', '.join(f'{r}_reward/_kl' for r in flat)}); "
            "give one of the two"
        )
    components = [c for c in names if c.startswith(COMPONENT_PREFIX)]
    if "reward_components" in names and components:
        raise SampleError(
            f"both a 'reward_components' column and flat columns ({', '.join(components)}); give one of the two"
        )
    for name, expected in (("schema_version", S.CURRENT_VERSION), ("step", step), ("split", split)):
        if name in names:
            values = _host_values(data, name)
            if values is not None:
                _check_constant_values(name, values, expected)
    numbers = [name for name in [*(f"{r}_{k}" for r in flat for k in ("reward", "kl")), *components] if name in names]
    if numbers and not _plain_number_rows(data, numbers):
        for name in numbers:
            _check_number_column(_column_as_given(data, name), name)
    if "roles" in names:
        cells = _host_values(data, "roles", canonical=_CANONICAL["roles"])
        if cells is not None:
            _check_role_cells(cells, roles)
    if "reward_components" in names:
        cells = _host_values(data, "reward_components", canonical=_CANONICAL["reward_components"])
        if isinstance(cells, Mapping):  # {name: column}
            check_names([k for k in cells if isinstance(k, str)], "reward component", SampleError)
            for k, col in cells.items():
                _check_number_column(col, f"reward_components[{k!r}]")
        elif cells is not None:
            _check_component_cells(cells)


_PLAIN_NUMBERS = frozenset({float, type(None), bool})


def _plain_number_rows(data: Any, names: list[str]) -> bool:
    """Whether ``data`` is a list of row dicts that each hold every column of ``names``, all of whose values are
    Python floats, bools or None: the common case of per-role rewards and KL, checked in one pass in C over the
    rows (a pass per column cost 30-40 us each over 512 row dicts, after the trainer's step has evicted them from
    the caches). False sends the columns to ``_check_number_column`` one by one (which names the column of a bad
    value, and checks the range of ints), as for rows that are not plain dicts: a ``defaultdict``'s ``[]`` would
    add the column to the caller's row, with its default, and that would be written in place of a null."""
    if not isinstance(data, list) or not set(map(type, data)) <= _DICT:
        return False
    get = operator.itemgetter(*names)
    try:
        values = map(get, data) if len(names) == 1 else chain.from_iterable(map(get, data))
        return set(map(type, values)) <= _PLAIN_NUMBERS
    except (KeyError, TypeError):  # a row without one of them (a null there), or not a dict
        return False


def _column_as_given(data: Any, name: str) -> Any:
    """Column ``name`` as the call gave it (a JAX or numpy array, an Arrow column, a list; for row dicts the
    rows' values), for ``_check_number_column``. A polars column stays one, so that a refusal names its polars
    dtype."""
    if _is_polars_frame(data):
        return data.get_column(name)
    if isinstance(data, pa.Table):
        return data.column(name)
    if isinstance(data, dict):
        return data[name]
    return [r.get(name) for r in data]


def _host_values(data: Any, name: str, canonical: pa.DataType | None = None) -> Any:
    """The values of column ``name`` as a list (or a ``{name: column}`` dict), or None when they need not or
    cannot be read here: an Arrow column of the canonical type, or a JAX array (on the device)."""
    if _is_polars_frame(data):
        data = data.select(name).to_arrow()
    if isinstance(data, pa.Table):
        col = data.column(name)
        return None if canonical is not None and col.type == canonical else col.to_pylist()
    if isinstance(data, dict):
        col = data[name]
        if jax_utils.is_jax_array(col):
            return None
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            return None if canonical is not None and col.type == canonical else col.to_pylist()
        if isinstance(col, Mapping):
            return col
        return _pylist(col)
    return [r.get(name) for r in data]


def _check_constant_values(name: str, values: list[Any], expected: Any) -> None:
    try:
        found = {v for v in values if v is not None and not jax_utils.is_jax_array(v)}
    except TypeError:
        raise SampleError(f"the rows' {name} column holds values that are not {type(expected).__name__}") from None
    if found and found != {expected}:
        raise SampleError(
            f"the rows' {name} column holds {sorted(map(str, found))}, but the call is for {name} {expected!r}"
        )


_GET_ROLE = operator.itemgetter("role")
_GET_ROLE_REWARD = operator.methodcaller("get", "reward")
_GET_KL = operator.methodcaller("get", "kl")
_GET_VALUE = operator.methodcaller("get", "value")
_NONE = type(None)


def _check_role_cells(cells: list[Any], roles: Sequence[str] | None) -> None:
    """Each ``roles`` cell: its shape, its role names (str; one of ``roles`` when the constructor declared them)
    and its values (numbers). The common forms are checked in a few passes in C."""
    _check_cells(cells, "roles", "role", "a list of {role, reward, kl} or a {role: {reward, kl}} dict")
    types = set(map(type, cells))
    if types <= {dict, _NONE}:  # {role: {reward, kl}} or {role: reward}
        full = [c for c in cells if c] if _NONE in types else cells
        names = set(chain.from_iterable(full))
        inner = list(chain.from_iterable(map(dict.values, full)))
        if set(map(type, inner)) <= {dict}:
            values = [*map(_GET_ROLE_REWARD, inner), *map(_GET_KL, inner)]
        else:
            values = [x for v in inner for x in ((v.get("reward"), v.get("kl")) if isinstance(v, Mapping) else (v,))]
    else:  # lists of {role, reward, kl} (or other mappings): the slow way
        given: list[Any] = []
        values = []
        for cell in cells:
            if cell is None:
                continue
            entries = (
                [{"role": r, **(v if isinstance(v, Mapping) else {"reward": v})} for r, v in cell.items()]
                if isinstance(cell, Mapping)
                else list(cell)
            )
            given += map(_GET_ROLE, entries)
            values += [*map(_GET_ROLE_REWARD, entries), *map(_GET_KL, entries)]
        check_names(given, "role", SampleError)
        names = set(given)
    check_names(names, "role", SampleError)
    if roles is not None:
        undeclared = sorted(set(names).difference(roles))
        if undeclared:
            raise SampleError(
                f"role{'s' if len(undeclared) > 1 else ''} {', '.join(map(repr, undeclared))} in the 'roles' column "
                f"{'are' if len(undeclared) > 1 else 'is'} not among the roles this writer was given ({roles!r}): "
                "RunWriter(roles=...) is the run's list of roles"
            )
    _check_number_values(values, set(map(type, values)), "a role's reward or kl in the 'roles' column", rows=False)


def _check_component_cells(cells: list[Any]) -> None:
    """Each ``reward_components`` cell: its shape and its values (numbers)."""
    _check_cells(cells, "reward_components", "name", "a {name: value} dict or a list of {name, value}")
    types = set(map(type, cells))
    if types <= {dict, _NONE}:
        full = [c for c in cells if c] if _NONE in types else cells
        values = list(chain.from_iterable(map(dict.values, full)))
        names = list(chain.from_iterable(full))
    else:
        values, names = [], []
        for cell in cells:
            if cell is None:
                continue
            values += list(cell.values()) if isinstance(cell, Mapping) else list(map(_GET_VALUE, cell))
            names += list(cell) if isinstance(cell, Mapping) else [d["name"] for d in cell]
    # A name with a lone surrogate is refused, as a role name is (it would be written as U+FFFD: another name).
    check_names([n for n in names if isinstance(n, str)], "reward component", SampleError)
    _check_number_values(values, set(map(type, values)), "a value in the 'reward_components' column", rows=False)


def _check_cells(cells: list[Any], column: str, key: str, expected: str) -> None:
    """Each cell of a nested column is None, a dict, or a list of dicts that each have ``key``."""
    if {type(c) for c in cells} <= {dict, type(None)}:  # the common case, in one pass without ABC checks
        return
    for i, cell in enumerate(cells):
        if cell is None or isinstance(cell, Mapping):
            continue
        if isinstance(cell, (str, bytes)) or not hasattr(cell, "__iter__"):
            raise SampleError(f"{column} of row {i} is a {type(cell).__name__}; expected {expected}")
        for d in cell:
            if not isinstance(d, Mapping) or key not in d:
                raise SampleError(f"{column} of row {i}: an entry without a {key!r} key ({d!r:.50}); each is a dict")


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
    if _is_numpy(col) and col.dtype.kind != "O":
        return _plain_value(col)
    out = list(col)  # an object array's values too: numpy ones among them made Python ones below
    np = sys.modules.get("numpy")
    # The values' types collected in C (a per-value Python check costs ~1 ms per 1,000 values).
    types = set(map(type, out))
    if np is not None and jax_utils.any_jax_type(types):
        # JAX values the call did not copy (a list whose first value is not one): moved to host here, on the
        # writer's thread (bfloat16 and other ml_dtypes as float32 / int8, as everywhere).
        out = [jax_utils.plain_dtype(np.asarray(v)) if jax_utils.is_jax_array(v) else v for v in out]
        types = set(map(type, out))
    if np is not None and any(issubclass(t, (np.ndarray, np.generic)) for t in types):
        # Rows whose JAX values were moved to host hold 0-d numpy arrays; Arrow wants Python scalars or lists.
        out = [_plain_value(v) if isinstance(v, (np.ndarray, np.generic)) else v for v in out]
    return out


def _plain_value(v: Any) -> Any:
    """A numpy value as Python values (``tolist``); a longdouble, which ``tolist`` keeps one and Arrow has no type
    for, as float64 (rounded to it)."""
    if v.dtype.kind in "fc" and v.dtype.itemsize > (8 if v.dtype.kind == "f" else 16):
        v = v.astype("float64" if v.dtype.kind == "f" else "complex128")
    return v.tolist()


def _num(v: Any) -> float | None:
    """A reward, KL or component value as a float. Text is never parsed (the call refuses it; this is the
    writer thread's own guard)."""
    if v is None:
        return None
    if isinstance(v, (str, bytes)):
        raise SampleError(f"{v!r:.40} is a {type(v).__name__}; {_numbers('')}")
    return float(v)


def _typed(col: Any, typ: pa.DataType, name: str, *, clean: bool = False) -> pa.Array | pa.ChunkedArray:
    """A column as the given Arrow type: Arrow input cast when it can be, everything else built by pyarrow.
    Text with lone surrogates (which UTF-8 cannot hold) is written with U+FFFD in their place."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        if col.type == typ:
            return col
        if not pa.types.is_nested(typ):
            return _cast(col, typ)
        col = col.to_pylist()
    try:
        if _is_numpy(col) and col.ndim == 1 and col.dtype.kind != "O":  # (an object array: its values, below)
            arr = pa.array(col)
            return arr if arr.type == typ else _cast(arr, typ)
        if pa.types.is_string(typ):
            values = _pylist(col)
            if set(map(type, values)) <= _STR_OR_NONE:  # already text: no per-value conversion
                return pa.array(values, type=typ)
            return pa.array([None if v is None else str(v) for v in values], type=typ)
        values = _pylist(col)
        try:
            return pa.array(values, type=typ)
        except (OverflowError, pa.ArrowInvalid):
            if not pa.types.is_floating(typ):
                raise
            # Python ints beyond int64 (which Arrow refuses as a double): as ``float()`` rounds them; the call
            # refused those beyond the float64 range (``_check_float_range``).
            return pa.array([v if v is None or isinstance(v, float) else float(v) for v in values], type=typ)
    except UnicodeError as exc:
        if clean:
            raise SampleError(f"column {name!r} cannot be written as {typ}: {exc}") from exc
        return _typed(without_surrogates(_pylist(col)), typ, name, clean=True)
    except _ARROW_REFUSED as exc:
        raise SampleError(f"column {name!r} cannot be written as {typ}: {exc}") from exc


def _cast(arr: Any, typ: pa.DataType) -> Any:
    """An Arrow column as ``typ``; integers as floats rounded to the nearest (an int64 above 2**53 as numpy's
    ``astype(float)`` and ``float()`` round it: Arrow's checked cast refuses it)."""
    if pa.types.is_floating(typ) and pa.types.is_integer(arr.type):
        return arr.cast(typ, safe=False)
    return arr.cast(typ)


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
            if not all(isinstance(d, Mapping) and "role" in d for d in items):
                raise SampleError(f"a 'roles' entry without a 'role' key: {items!r:.80}; each is {{role, reward, kl}}")
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
    """One row's components; a null value is left out, and a row left with none is null, as in the
    ``{name: column}`` and flat ``component/<name>`` forms (docs/writer.md)."""
    if cell is None:
        return None
    if isinstance(cell, Mapping):
        return [{"name": str(k), "value": _num(v)} for k, v in cell.items() if v is not None] or None
    if not all(isinstance(d, Mapping) and "name" in d for d in cell):
        raise SampleError(f"a 'reward_components' entry without a 'name' key: {cell!r:.80}; each is {{name, value}}")
    return [{"name": str(d["name"]), "value": _num(d["value"])} for d in cell if d.get("value") is not None] or None


def _fold_components(cols: dict[str, Any], n: int) -> list[Any] | None:
    flat = [c for c in cols if isinstance(c, str) and c.startswith(COMPONENT_PREFIX)]
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


def _messages(col: Any) -> tuple[Any, int]:
    """The ``messages`` column as canonical message lists, and how many of its cells were plain text. A cell of
    text that is a JSON message list (``json.dumps(messages)``, as trainers log it) is read as that list; other
    text is one user message, as ``from_openai_chat`` reads it (counted: the caller warns)."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)) and col.type == _CANONICAL["messages"]:
        return col, 0
    out: list[Any] = []
    plain = 0
    for cell in _pylist(col):
        if isinstance(cell, str):
            parsed = messages_in_text(cell)
            plain += parsed is None
            out.append(from_openai_chat(cell if parsed is None else parsed))
        else:
            out.append(None if cell is None else from_openai_chat(cell))
    return out, plain


def _ids_filled(col: Any, prefix: str, offset: int) -> tuple[Any, int]:
    """A ``sample_id`` column with each null (``None``; a list-of-dicts row without the key) replaced by the id
    the writer generates for a missing column (``prefix`` and the row's number in its step), and how many were
    null. A null id was written as given and readers found it only later (``inspect``: rows without a
    sample_id). A column without nulls is returned as it is (a null count, or one type scan)."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        if col.null_count == 0:
            return col, 0
        values = col.to_pylist()
    elif _is_numpy(col) and col.dtype.kind != "O":
        return col, 0
    else:
        if type(None) not in set(map(type, col)):
            return col, 0
        values = list(col)
    nulls = sum(v is None for v in values)
    return [f"{prefix}{offset + i}" if v is None else v for i, v in enumerate(values)], nulls


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
    warn: Warn | None = None,
    warn_once: Callable[[str, str], None] | None = None,
) -> tuple[pa.Table, list[str]]:
    """One Arrow table of the native schema (plus extras) and the role names found in it. An extra column
    whose values no one Arrow type holds (``3`` and ``"three"``) is written as text, said with ``warn``; a
    text column (``completion``, ``group_id``...) given values that are not text (``5``) is written as their
    text, said with ``warn_once(key, message)`` (once per column: int group ids would say it every step)."""
    cols = _columns(payload)
    if isinstance(payload, dict):
        _squeeze_number_columns(cols, roles)
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
    else:
        cols["sample_id"], nulls = _ids_filled(cols["sample_id"], f"{split}-s{step}-p{process}-", offset)
        if nulls and warn_once is not None:
            warn_once(
                "null-ids",
                f"{nulls} of the {n} rows given for {split} step {step} in one call have a null sample_id: given a "
                f"generated one ({split}-s{step}-p{process}-<row>), as when the column is missing (readers take a "
                "sample by its id; said once per writer)",
            )
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
            value, plain = _messages(cols.pop(name)) if name in cols else (None, 0)
            if plain and warn_once is not None:
                warn_once(
                    "plain:messages",
                    f"column 'messages' of {split} step {step} holds plain text in {plain} row(s), not a message "
                    "list (nor one as JSON text): each such text is written as one user message; give a list of "
                    "{role, content} dicts (said once per writer)",
                )
        else:
            value = cols.pop(name, None)
        if value is not None and name in _STRING_COLUMNS:
            value, invalid = _decoded(value)
            other = _not_text(value)
            if other and warn_once is not None:
                warn_once(
                    f"text:{name}",
                    f"column {name!r} of {split} step {step} holds {other}, not text: written as their text "
                    f"(str(), so 5 as '5'); give text to have what is written be what you logged (said once per "
                    "column)",
                )
            if invalid and warn_once is not None:
                warn_once(
                    f"utf8:{name}",
                    f"column {name!r} of {split} step {step} holds {invalid} bytes value(s) that are not valid "
                    "UTF-8: written as text with U+FFFD in place of each invalid byte sequence (bytes that are "
                    "valid UTF-8 are written as the text they hold; said once per column)",
                )
        arrays[name] = pa.nulls(n, typ) if value is None else _typed(value, typ, name)
    fields = [pa.field(k, _CANONICAL[k]) for k in _CANONICAL]
    for name, col in cols.items():
        arr = _extra(col, name, f"{split} step {step}", warn)
        if type(name) is not str or not name.isascii():  # keys of later rows, not checked at the call
            name = without_surrogates(str(name))
        arrays[name] = arr
        fields.append(pa.field(name, arr.type))
    for name, arr in arrays.items():
        if len(arr) != n:
            raise SampleError(f"column {name!r} has {len(arr)} values, expected {n}")
    table = pa.Table.from_arrays(list(arrays.values()), schema=pa.schema(fields, metadata=_METADATA))
    return table, role_names


_BINARY_TESTS = [
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_fixed_size_binary,
    *([pa.types.is_binary_view] if hasattr(pa.types, "is_binary_view") else []),
]


def _decoded(col: Any) -> tuple[Any, int]:
    """A text column with its bytes (a tokenizer's ``decode`` that returns bytes, a numpy ``S`` array, an Arrow
    binary column) decoded as UTF-8, and how many of them were not valid UTF-8 (decoded with U+FFFD, as a lone
    surrogate is written): ``str()`` wrote ``b'caf\\xc3\\xa9'``, text the model never produced, which the
    format and diversity metrics then measured. Anything without bytes is returned as it is (one type scan)."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if not any(test(t) for test in _BINARY_TESTS):
            return col, 0
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return col.cast(pa.string()), 0
        values = col.to_pylist()
    elif _is_numpy(col) and col.dtype.kind == "S":
        values = col.tolist()
    else:
        if _is_numpy(col) and col.dtype.kind != "O":
            return col, 0
        if not any(issubclass(t, (bytes, bytearray)) for t in set(map(type, col))):
            return col, 0
        values = col.tolist() if _is_numpy(col) else list(col)
    out: list[Any] = []
    invalid = 0
    for v in values:
        if isinstance(v, (bytes, bytearray)):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                invalid += 1
                v = v.decode("utf-8", "replace")
        out.append(v)
    return out, invalid


def _not_text(col: Any) -> str | None:
    """What a text column holds that is not text (``values of type int``, ``an int64 column``), or None."""
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        t = col.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or t == pa.string_view():
            return None
        return f"an Arrow column of {col.type}"
    if _is_numpy(col) and col.dtype.kind != "O":
        return None if col.dtype.kind == "U" else f"a numpy column of {col.dtype}"
    types = set(map(type, col)) - _STR_OR_NONE
    return f"values of type {', '.join(sorted(t.__name__ for t in types))}" if types else None


def _squeeze_number_columns(cols: dict[str, Any], roles: Sequence[str] | None) -> None:
    """The number columns of a dict of columns given as ``(rows, 1)`` arrays (a reward model's output; the call
    refused any other 2-D shape), now on the host, as ``(rows,)``."""
    names = [n for n in cols if isinstance(n, str)]
    flat = flat_role_names(names, roles)
    numbers = ["reward", *(f"{r}_{k}" for r in flat for k in ("reward", "kl"))]
    numbers += [n for n in names if n.startswith(COMPONENT_PREFIX)]
    for name in numbers:
        col: Any = cols.get(name)
        if _is_numpy(col) and col.ndim == 2:
            cols[name] = col.reshape(-1)
    rc = cols.get("reward_components")
    if isinstance(rc, dict):
        for k, col in rc.items():
            if _is_numpy(col) and col.ndim == 2:
                rc[k] = col.reshape(-1)


def _extra(col: Any, name: str, where: str = "", warn: Warn | None = None) -> pa.Array | pa.ChunkedArray:
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col
    try:
        try:
            if _is_numpy(col):
                return pa.array(col) if col.ndim == 1 else pa.array(list(col))
            ragged = _ragged_numbers(col)
            if ragged is not None:
                return ragged
            return pa.array(_pylist(col))
        except UnicodeError:  # lone surrogates: written as U+FFFD
            return pa.array(without_surrogates(_pylist(col)))
        except OverflowError:  # Python ints beyond int64 (a 64-bit hash, ``xxh64(...).intdigest()``)
            unsigned = _unsigned(_pylist(col))
            if unsigned is None:
                raise
            return unsigned
    except _ARROW_REFUSED as exc:
        # Numpy values inside lists and dicts (a longdouble, which Arrow has no type for: as float64): as Python
        # values, and tried again. Plain values of several types (free-form metadata: 3 in one row, "three" in
        # another): kept, as text. Anything else (an object Arrow does not know) stays an error: its text would be
        # a repr.
        values = [_python_value(v) for v in _pylist(col)]
        with contextlib.suppress(
            pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError
        ):
            return pa.array(values)
        if not all(map(_plain, values)):
            raise SampleError(f"extra column {name!r} cannot be written to Parquet: {exc}") from exc
        types = sorted({type(v).__name__ for v in values if v is not None})
        try:
            text = _text_array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            raise SampleError(f"extra column {name!r} cannot be written to Parquet: {exc}") from exc
        if warn is not None:
            what = (
                "integers beyond 64 bits"
                if isinstance(exc, OverflowError)
                else f"values of types {' and '.join(types)}"
            )
            warn(
                f"extra column {name!r} of {where} holds {what}, which no one Parquet column type holds: written as "
                "text for that step (JSON for numbers, lists and dicts)"
            )
        return text


def _ragged_numbers(col: Any) -> pa.Array | None:
    """A list with one 1-D numeric array per row (per-token log-probs, ``[logp[i, :n_i] for i in ...]``; None for a
    row without one), all of one dtype: a list column of that dtype, from the arrays' memory. Through Python
    values (``tolist``) it was a list of float64 (twice the bytes of float32 log-probs, and a Python float per
    token). bfloat16 and other ``ml_dtypes`` arrays are float32 / int8 here, as everywhere. None for anything
    else (rows of other kinds or of several dtypes, a 0-d or 2-D array): written as before."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(col, list) or not col:
        return None
    rows: list[Any] = []
    for v in col:
        if v is None:
            rows.append(None)
            continue
        if jax_utils.is_jax_array(v):
            v = np.asarray(v)
        if not isinstance(v, np.ndarray) or v.ndim != 1:
            return None
        if v.dtype.type.__module__.startswith("ml_dtypes"):
            v = jax_utils.plain_dtype(v)
        elif v.dtype.kind == "f" and v.dtype.itemsize > 8:
            v = v.astype("float64")  # a longdouble, which Arrow has no type for: rounded to float64
        rows.append(v)
    dtypes = {r.dtype for r in rows if r is not None}
    if len(dtypes) != 1:
        return None
    (dtype,) = dtypes
    if dtype.kind not in "biuf" or dtype.byteorder == ">":
        return None
    present = [r for r in rows if r is not None]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([0 if r is None else len(r) for r in rows], out=offsets[1:])
    values = pa.array(np.concatenate(present) if present else np.empty(0, dtype))
    mask = pa.array([r is None for r in rows]) if len(present) < len(rows) else None
    if offsets[-1] > np.iinfo(np.int32).max:
        return pa.LargeListArray.from_arrays(pa.array(offsets), values, mask=mask)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values, mask=mask)


_PLAIN = (str, int, float, bool, type(None))
_UINT64_MAX = 2**64 - 1


def _unsigned(values: list[Any]) -> pa.Array | None:
    """Python ints (and None) of which some are beyond int64 but all in 0..2**64-1 (unsigned 64-bit hashes), as a
    ``uint64`` column, exactly; None for anything else (written as text by the caller)."""
    if not set(map(type, values)) <= {int, type(None)}:
        return None
    ints = [v for v in values if v is not None]
    if not ints or min(ints) < 0 or max(ints) > _UINT64_MAX:
        return None
    return pa.array(values, pa.uint64())


def _python_value(v: Any) -> Any:
    """``v`` with the numpy values in it, in lists and dicts too, as Python ones (``_plain_value``: a longdouble as
    float64): Arrow knows no longdouble, wherever it is."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(v, (np.ndarray, np.generic)):
        v = _plain_value(v)
        return v if isinstance(v, _PLAIN) else _python_value(v)  # an object array's values may be numpy ones
    if isinstance(v, (list, tuple)):
        return [_python_value(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _python_value(x) for k, x in v.items()}
    return v


def _plain(v: Any) -> bool:
    """A JSON-like value: text, a number, a bool, None, or lists and str-keyed dicts of them."""
    if isinstance(v, _PLAIN):
        return True
    if isinstance(v, (list, tuple)):
        return all(map(_plain, v))
    if isinstance(v, Mapping):
        return all(isinstance(k, str) for k in v) and all(map(_plain, v.values()))
    return False


def _as_text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, allow_nan=True)


def _text_array(values: list[Any]) -> pa.Array:
    text = [_as_text(v) for v in values]
    try:
        return pa.array(text, pa.string())
    except UnicodeError:
        return pa.array(without_surrogates(text), pa.string())


def concat(tables: list[pa.Table], *, where: str = "", warn: Warn | None = None) -> pa.Table:
    """The chunks of one step as one table (extra columns may differ between chunks: missing ones are null). An
    extra column with types no one type holds (``int64`` in one call, ``string`` in the next) is written as
    text in every chunk, said with ``warn``."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive").replace_schema_metadata(_METADATA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        error = exc
    types: dict[str, list[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if f.type not in types.setdefault(f.name, []):
                types[f.name].append(f.type)
    clash = []
    for name, ts in types.items():
        if len(ts) > 1:
            try:
                unified = pa.unify_schemas(
                    [pa.schema([pa.field(name, t)]) for t in ts], promote_options="permissive"
                ).field(name)
                # The types unify, but the values may not fit the unified type (an int64 above 2**53 as a double,
                # a uint64 above 2**63 as an int64): the same as types that do not unify, written as text.
                for t in tables:
                    if name in t.column_names:
                        t.column(name).cast(unified.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                clash.append(name)
    if not clash or any(name in _CANONICAL for name in clash):
        raise SampleError(f"the calls of {where} cannot be written as one table: {error}") from error
    fixed = []
    for t in tables:
        for name in clash:
            if name in t.column_names and not pa.types.is_string(t.schema.field(name).type):
                i = t.column_names.index(name)
                t = t.set_column(i, pa.field(name, pa.string()), _text_array(t.column(i).to_pylist()))
        fixed.append(t)
    if warn is not None:
        for name in clash:
            shown = " and ".join(str(t) for t in types[name] if not pa.types.is_null(t))
            warn(
                f"extra column {name!r} of {where} is {shown} in different calls, which no one Parquet column "
                "type holds: written as text for that step (JSON for numbers, lists and dicts)"
            )
    return pa.concat_tables(fixed, promote_options="permissive").replace_schema_metadata(_METADATA)


def duplicate_ids(table: pa.Table, shown: int = 3) -> list[str]:
    """The first few ``sample_id`` values that more than one row of a step holds (none, almost always: one
    distinct count in C decides)."""
    ids = table.column("sample_id")
    if pc.count_distinct(ids, mode="only_valid").as_py() == len(ids) - ids.null_count:
        return []
    counts = pc.value_counts(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
    return [v["values"] for v in counts.to_pylist() if v["counts"] > 1 and v["values"] is not None][:shown]


# ---------------------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------------------
def scalar_value(key: str, v: Any, step: int | None = None) -> float | int:
    """A scalar as the number written to the scalars line, or a ``UsageError`` naming ``key`` (and ``step``).

    A Python int beyond the float64 range (``10**400``) is refused: readers take every value as a float64, and
    JSON holds the int digit for digit, so the line would hold a number no reader can take (runlog's readers
    read it as infinity, said in a warning), where the call can still be fixed."""
    if not isinstance(v, (bool, int, float)) and hasattr(v, "item") and getattr(v, "size", 1) == 1:
        kind = getattr(getattr(v, "dtype", None), "kind", None)
        if kind in ("m", "M"):  # ``item()`` made a nanosecond timedelta64 an int of nanoseconds, unsaid
            hint = "a duration: give it as a number in the unit you mean, x / np.timedelta64(1, 's') for seconds"
            raise UsageError(
                f"scalar {key!r} is a numpy {v.dtype} ({hint if kind == 'm' else 'a date'}); scalars are numbers"
            )
        v = v.item()  # numpy / host JAX scalar or 1-element array (an object array's may be a Python int)
        if kind == "f" and not isinstance(v, float):
            v = float(v)  # a longdouble (``item()`` keeps it one): written as float64, rounded to it
    if isinstance(v, (bool, int, float)):
        if isinstance(v, int) and not -_FLOAT_RANGE <= v <= _FLOAT_RANGE:
            _check_scalar_range(key, v, step)
        return v
    raise UsageError(
        f"scalar {key!r} is a {type(v).__name__}; scalars are numbers (use StatsTracker.summary for arrays)"
    )


def _check_scalar_range(key: str, v: int, step: int | None) -> None:
    try:
        float(v)
    except OverflowError:
        at = "" if step is None else f" of step {step}"
        raise UsageError(
            f"scalar {key!r}{at} is an int of {v.bit_length()} bits, beyond the float64 range (about 1.8e308): "
            "scalars are read as float64 (give a float, or a smaller unit)"
        ) from None


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts flattened with ``/`` (the format's key convention). Two values for one key
    (``{"a": {"b": 1}, "a/b": 2}``) are refused, naming the key, rather than one silently kept."""
    out: dict[str, Any] = {}
    _flatten_into(out, metrics, prefix)
    return out


def _flatten_into(out: dict[str, Any], metrics: Mapping[str, Any], prefix: str) -> None:
    check_names(metrics, "scalar key")  # a bytes, tuple or None key would be written as its repr
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten_into(out, v, key + "/")
        elif key in out:
            raise UsageError(f"scalar key {key!r} is given twice (nested dicts are flattened with '/')")
        else:
            out[key] = v
