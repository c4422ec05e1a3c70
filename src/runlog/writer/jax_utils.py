"""The writer's only contact with JAX. JAX is optional: nothing here imports it unless the caller already has.

Why "unless already imported": a trainer that uses JAX has imported it long before it logs anything, so
``sys.modules`` tells us whether a value can be a JAX array at all without paying JAX's import time (seconds)
in trainers that do not use it.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from fractions import Fraction
from typing import Any

from ..errors import UsageError

INSTALL_HINT = "JAX is not installed: pip install jax (or, in runlog's folder, pip install -e '.[jax]')"


def jax_loaded() -> bool:
    """True when the process has imported JAX (then values may be JAX arrays)."""
    return "jax" in sys.modules


def require_jax() -> Any:
    """Import JAX or raise a ``UsageError`` that says how to install it."""
    try:
        import jax
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError(INSTALL_HINT) from exc
    return jax


_ARRAY_TYPES: dict[type, bool] = {}


def is_jax_array(x: Any) -> bool:
    """True for a JAX array, without importing JAX. Cached per type: the ``isinstance`` check against
    ``jax.Array`` costs about 250 ns, a dict lookup a fifth of that, and a call may look at thousands of values."""
    if not jax_loaded():
        return False
    t = type(x)
    hit = _ARRAY_TYPES.get(t)
    if hit is None:
        hit = _ARRAY_TYPES[t] = isinstance(x, sys.modules["jax"].Array)
    return hit


def any_jax_type(types: Any) -> bool:
    """Whether any of these types is a JAX array type."""
    if not jax_loaded():
        return False
    for t in types:
        hit = _ARRAY_TYPES.get(t)
        if hit is None:
            hit = _ARRAY_TYPES[t] = issubclass(t, sys.modules["jax"].Array)
        if hit:
            return True
    return False


@functools.cache
def _copy_fn() -> Any:
    jax = require_jax()
    return jax.jit(lambda *xs: [x.copy() for x in xs])


def device_copy(arrays: list[Any]) -> list[Any]:
    """Copies of ``arrays`` made on their devices by one jitted dispatch per device layout (usually one).

    Asynchronous: the copy is queued behind whatever computes the arrays, and the call returns at once. Once
    it is queued, the trainer may donate or overwrite the originals: the runtime orders the donation after
    this read, and the copies belong to the writer. A new combination of shapes compiles once (a few ms).
    """
    groups: dict[Any, list[int]] = {}
    for i, a in enumerate(arrays):
        if not a.is_fully_addressable:
            raise UsageError(
                f"a JAX array of shape {tuple(a.shape)} spans several processes; log this process's rows "
                "(its addressable shards) from each process"
            )
        groups.setdefault(a.sharding, []).append(i)
    out: list[Any] = [None] * len(arrays)
    fn = _copy_fn()
    for idx in groups.values():
        for i, c in zip(idx, fn(*[arrays[i] for i in idx]), strict=True):
            out[i] = c
    return out


@functools.cache
def _pack_fn() -> Any:
    jax = require_jax()
    jnp = jax.numpy
    return jax.jit(lambda *xs: jnp.concatenate([jnp.ravel(x) for x in xs]))


_MANY = 16  # from this many arrays in one call, the one-device fast path of ``DeviceFetch``
_BUCKET_FROM = 8  # a pack of more arrays than this, all of one shape, is padded to a bucket size (``_bucket``)
_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")


def _bucket(n: int) -> int:
    """``n`` rounded up to a multiple of a quarter of the power of two below it (at most 25% more): four sizes per
    power of two, so row counts of 990, 1000 and 1017 share one compiled pack (1,024 arguments)."""
    if n <= _BUCKET_FROM:
        return n
    step = 1 << max(0, n.bit_length() - 3)
    return -(-n // step) * step


def _one_device() -> bool:
    """Whether this process is alone and has one device (then every array is on that device, addressable)."""
    jax = sys.modules["jax"]
    return bool(jax.process_count() == 1 and jax.local_device_count() == 1)


class DeviceFetch:
    """Host copies of one call's JAX arrays: packed on the device from the caller's thread, moved to host on
    the writer's.

    On the caller, without waiting for the device: the arrays that live on one device are packed, per device
    and dtype, into one new flat buffer by one jitted dispatch (a copy, so the caller may donate the originals
    at once): one transfer later for a call's many small columns rather than one each. Arrays sharded over
    several devices are copied with ``device_copy`` (unless ``copy=False``: arrays that nobody else holds,
    such as the outputs of the tracker's own reductions). On the writer's thread, ``get()`` starts every
    buffer's transfer to host, waits for them (the only place that waits) and gives each array back, as
    numpy, in its shape.

    The transfers are started on the writer's thread, not the caller's: on an H200 (a sandboxed one, where
    each CUDA runtime call costs 0.1-0.2 ms) ``copy_to_host_async()`` on the caller added 0.14 ms to each
    call, and starting it early gains the trainer nothing (the writer waits for the step either way).
    """

    __slots__ = ("buffers", "layout")

    def __init__(self, arrays: list[Any], *, copy: bool = True) -> None:
        groups: dict[Any, list[int]] = {}
        spread: list[int] = []
        if len(arrays) >= _MANY and _one_device():
            # Many arrays (row dicts of JAX scalars) in a process of one device: every array is on it, so only the
            # dtypes group them (read in C); no per-array sharding checks (about 3 us each).
            for i, d in enumerate(map(_DTYPE, arrays)):
                groups.setdefault(d, []).append(i)
            arrays_list: Any = ()
        else:
            arrays_list = arrays
        for i, a in enumerate(arrays_list):
            if not a.is_fully_addressable:
                raise UsageError(
                    f"a JAX array of shape {tuple(a.shape)} spans several processes; log this process's rows "
                    "(its addressable shards) from each process"
                )
            devices = a.sharding.device_set
            if len(devices) == 1:
                groups.setdefault((next(iter(devices)), a.dtype), []).append(i)
            else:
                spread.append(i)
        self.buffers: list[Any] = []
        self.layout: list[tuple[int, int, int, tuple[int, ...]]] = [(0, 0, 0, ())] * len(arrays)
        for idx in groups.values():
            if len(idx) == 1 and not copy:
                self._add(idx, [arrays[idx[0]]], packed=False, arrays=arrays)
                continue
            group = [arrays[i] for i in idx]
            shapes = set(map(_SHAPE, group)) if len(group) > _BUCKET_FROM else None
            if shapes is not None and len(shapes) == 1:
                # Arrays of one shape (row dicts of scalars): their count is padded (with the first one again) to
                # one of a few sizes per power of two, so that a row count that changes from step to step does
                # not compile the pack function each time; the padding is never read back.
                shape = tuple(next(iter(shapes)))
                size = math.prod(shape)
                padded = group + [group[0]] * (_bucket(len(group)) - len(group))
                b = len(self.buffers)
                self.buffers.append(_pack_fn()(*padded))
                for j, i in enumerate(idx):
                    self.layout[i] = (b, j * size, (j + 1) * size, shape)
            else:
                self._add(idx, [_pack_fn()(*group)], packed=True, arrays=arrays)
        if spread:
            own = [arrays[i] for i in spread]
            for i, c in zip(spread, device_copy(own) if copy else own, strict=True):
                self._add([i], [c], packed=False, arrays=arrays)

    def _add(self, idx: list[int], buffer: list[Any], *, packed: bool, arrays: list[Any]) -> None:
        b = len(self.buffers)
        self.buffers.extend(buffer)
        start = 0
        for i in idx:
            size = int(arrays[i].size) if packed else -1
            self.layout[i] = (b, start, start + size, tuple(arrays[i].shape))
            start += max(size, 0)

    def __len__(self) -> int:
        return len(self.layout)

    def get(self) -> list[Any]:
        import numpy as np

        for a in self.buffers:
            a.copy_to_host_async()  # all transfers in flight before the first wait
        hosts = []
        for a in self.buffers:
            h = np.asarray(a)
            if h.dtype.kind == "V":
                h = plain_dtype(h)  # bfloat16 / float8 / int4: numpy and Arrow know float32 / int8
            hosts.append(h)
        out = []
        for b, start, stop, shape in self.layout:
            h = hosts[b]
            out.append(h if stop < 0 else h[start:stop].reshape(shape))
        return out


def plain_dtype(h: Any) -> Any:
    """A numpy array of an ``ml_dtypes`` type (bfloat16, float8, float4/6, and the narrow ints int4, uint2...),
    which is what ``np.asarray`` gives for such a JAX array, cast to one Arrow knows: the narrow ints to int8 /
    uint8 (values kept exactly), the floats to float32 (exact for all of them). Any other array: a copy."""
    import numpy as np

    if not h.dtype.type.__module__.startswith("ml_dtypes"):
        return h.copy()
    name = h.dtype.name
    if name.startswith("uint"):
        return h.astype(np.uint8)
    if name.startswith("int"):
        return h.astype(np.int8)
    return h.astype(np.float32)


def backend_initialised() -> bool:
    """Whether JAX has already created its backends.

    Calling ``jax.process_index()`` before ``jax.distributed.initialize()`` would fix the process to a
    single-host backend and break the later multi-host initialisation, so the writer asks only when the
    backends exist already.
    """
    if not jax_loaded():
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", None))
    except Exception:  # noqa: BLE001 - a private API: when it moves, fall back to "not initialised"
        return False


def default_process_index() -> int:
    """``jax.process_index()`` when JAX is initialised (its backends, or ``jax.distributed``), else 0."""
    if backend_initialised() or kv_client() is not None:
        return int(sys.modules["jax"].process_index())
    return 0


def default_process_count() -> int:
    """``jax.process_count()`` when JAX is initialised (its backends, or ``jax.distributed``), else 1."""
    if backend_initialised() or kv_client() is not None:
        return int(sys.modules["jax"].process_count())
    return 1


KV_TIMEOUT_S = 1800.0


def kv_client() -> Any | None:
    """The client of ``jax.distributed``'s key-value store (set by ``jax.distributed.initialize``), or None."""
    if not jax_loaded():
        return None
    try:
        from jax._src import distributed

        client = distributed.global_state.client
    except Exception:  # noqa: BLE001 - a private API: when it moves, the caller falls back to ``allgather``
        return None
    return client if hasattr(client, "blocking_key_value_get_bytes") else None


def kv_allgather(vector: Any, *, key: str, process_index: int, process_count: int, forget: str | None = None) -> Any:
    """Gather a small float64 vector from every process through the coordinator's key-value store.

    No device and no collective: each process publishes ``{key}/p{index}`` and reads the others' (waiting for
    them), so it can run on any thread, in any order relative to the trainer's collectives. ``forget`` is this
    process's key of an earlier gather that every process has read (removed to keep the store small).
    """
    import numpy as np

    client = kv_client()
    if client is None:
        raise UsageError("jax.distributed is not initialised: no key-value store to gather through")
    local = np.ascontiguousarray(vector, dtype=np.float64)
    client.key_value_set_bytes(f"{key}/p{process_index}", local.tobytes())
    rows = []
    for p in range(process_count):
        raw = (
            local.tobytes()
            if p == process_index
            else client.blocking_key_value_get_bytes(f"{key}/p{p}", int(KV_TIMEOUT_S * 1000))
        )
        rows.append(np.frombuffer(raw, dtype=np.float64))
    if forget is not None:
        client.key_value_delete(f"{forget}/p{process_index}")
    if len({r.size for r in rows}) != 1:
        return np.zeros((process_count, 0))  # a different layout: the caller reports it
    return np.stack(rows)


def allgather(vector: Any) -> Any:
    """Gather a small float64 host vector from every process: shape ``[process_count, len(vector)]``.

    A device collective that waits for the device: used only where no key-value store exists (see
    ``kv_allgather``), on the caller's thread.
    """
    require_jax()
    import numpy as np
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(vector, dtype=np.float64)))


#: The most elements one device reduction counts: its counts are int32 sums (JAX's default integer), exact up
#: to 2**31 - 1; a larger array is summarised in slices of this many elements, combined on the host.
SUMMARY_CHUNK = 2**30
#: Integers travel in the float vector as two halves, ``v = hi * 2**16 + lo`` with ``0 <= lo < 2**16``: exact in
#: float32 for 32-bit integers (counts, int32 minima and maxima), and in float64 (JAX's float under
#: ``jax_enable_x64``) for 64-bit ones. A float32 holds integers exactly only up to 2**24.
_HALF = 2**16
#: The two device vectors, told apart on the host by their length (``host_summary``). A float array:
#: ``[n_hi, n_lo, bad_hi, bad_lo, pivot, centre, residual (3), m2, min, max]``. An integer (or
#: bool) array: ``[n_hi, n_lo, bad_hi, bad_lo, limb_bits, a1 (2), a0 (2), b1 (2), b0 (2), residual, m2, min (2),
#: max (2)]``, each ``(2)`` an integer in halves.
FLOAT_SUMMARY_SIZE = 12
INT_SUMMARY_SIZE = 19


def _halves(jnp: Any, v: Any, dtype: Any) -> list[Any]:
    """An integer array of one element as ``[hi, lo]`` in ``dtype`` (``v = hi * 2**16 + lo``, both exact)."""
    return [(v >> 16).astype(dtype), (v & (_HALF - 1)).astype(dtype)]


def _minus(a: Any, b: Any) -> tuple[Any, Any]:
    """``a - b`` in floating point and what it rounded away, exactly (Knuth's TwoSum): ``a - b = s + err``."""
    s = a - b
    bv = s - a
    av = s - bv
    return s, (a - av) - (b + bv)


def _split_sum(jnp: Any, e: Any) -> list[Any]:
    """``sum(e)`` of a float array as three floats whose float64 sum is far closer than a float sum's.

    ``e`` is split into multiples of a power of two ``g`` so coarse that no partial sum of them can round
    (``n * max|e| < 2**mantissa * g``, whatever the order the device adds them in), and what is left (under
    ``g / 2`` each) is split the same way once more; only the last remainders are summed with rounding. A
    float32 sum of ``n`` centred values rounds at about eps times their spread: a mean near 0 came back with
    the wrong sign (1e-8 of the std for 10,000 values on XLA:CPU), and one split left 1e-8 of the std at ten
    million values 1e4 stds from zero."""
    info = jnp.finfo(e.dtype)
    bits = max(e.size, 1).bit_length()  # static: the size, at least the count
    out = []
    for _ in range(2):
        top = jnp.frexp(jnp.max(jnp.abs(e)))[1] + bits
        g = jnp.clip(jnp.ldexp(jnp.ones((), e.dtype), top - info.nmant), info.tiny, info.max)
        high = jnp.round(e / g) * g
        out.append(jnp.sum(high))
        e = e - high  # exact: high is e rounded to a multiple of g
    return [*out, jnp.sum(e)]


def _float_summary(jnp: Any, x: Any, m: Any) -> Any:
    """The float vector (``FLOAT_SUMMARY_SIZE``) of a float array ``x`` (flat, JAX's default float) under ``m``.

    Shifted by a pivot (the first value counted) and centred, rather than a raw sum and sum of squares: in float32
    (JAX's default) a sum of values far from zero rounds away their spread (``1e4 + N(0, 0.01)``: the mean off
    by more than the std). On the host the mean is ``pivot + centre + residual / n`` in float64: ``centre`` is
    the float mean of the values minus the pivot, and ``residual`` the sum of their deviations from it (in two
    parts, ``_split_sum``), which gives back what the float sum rounded away (about eps times n times the
    pivot: with a mean near 0, such as centred advantages, that was the whole mean, its sign included). Each
    subtraction's rounding is added to the residual too (``_minus``): a pivot or centre of finer bits than the
    differences rounds them all the same way. The residual also corrects the centred squares (``m2 -
    residual**2 / n``, the corrected two-pass formula of Chan, Golub and LeVeque).
    """
    i32 = jnp.int32
    if x.size == 0:  # static: the shape is known when tracing
        n = bad = jnp.zeros((), i32)
        rest = [jnp.zeros((), x.dtype)] * 8  # unused for a count of 0 (host_summary)
    else:
        finite = jnp.isfinite(x)
        ok = m & finite
        n = jnp.sum(ok, dtype=i32)
        first = jnp.argmax(ok)  # the first value counted (0 when none is, then unused)
        pivot = jnp.where(ok[first], x[first], 0.0).astype(x.dtype)
        d, d_err = _minus(jnp.where(ok, x, pivot), pivot)  # no inf or NaN in the arithmetic: masked out after
        centre = jnp.sum(jnp.where(ok, d, 0.0)) / jnp.maximum(n, 1).astype(x.dtype)
        e, e_err = _minus(d, centre)
        e = jnp.where(ok, e, 0.0)
        high, middle, low = _split_sum(jnp, e)
        low = low + jnp.sum(jnp.where(ok, d_err + e_err, 0.0))
        lo = jnp.min(jnp.where(ok, x, jnp.inf))
        hi = jnp.max(jnp.where(ok, x, -jnp.inf))
        bad = jnp.sum(m & ~finite, dtype=i32)
        rest = [pivot, centre, high, middle, low, jnp.sum(e * e), lo, hi]
    return jnp.stack([*_halves(jnp, n, x.dtype), *_halves(jnp, bad, x.dtype), *rest])


def _int_summary(jnp: Any, x: Any, m: Any | None) -> Any:
    """The integer vector (``INT_SUMMARY_SIZE``) of an integer or bool array ``x`` (flat) under ``m`` (None: no
    mask; a mask of constant ones made XLA constant-fold the first counted value's ``argmax`` for seconds).

    Cast to float32 first (as before), the values lost their low bits above 2**24: the max of ``[16777217, 5]``
    was 16777216, and 2**31 - 1 came back as 2**31. So min and max are taken in the integer type and shipped in
    halves, and the sum is exact: each value is split into two limbs of ``w`` bits (16, or 32 for 64-bit
    integers), summed in JAX's default integer (int32, or int64 under ``jax_enable_x64``) over blocks small
    enough not to overflow, the block sums split again and summed: ``sum = (a1 * 2**w + a0) * 2**w + b1 * 2**w
    + b0``, added up on the host in Python integers. The centred squares (the std) are float sums of the values
    minus the first one counted, formed from the limbs (one rounding each), with the residual correction of
    ``_float_summary``.
    """
    acc = jnp.dtype(jnp.result_type(int))  # int32, or int64 under jax_enable_x64
    f = jnp.dtype(jnp.result_type(float))
    bits = 8 * acc.itemsize
    w = bits // 2
    block = 2 ** (bits - w - 1)  # a block sum of limbs below 2**w fits: (2**w - 1) * block < 2**(bits - 1)
    if x.dtype == jnp.bool_ or x.dtype.itemsize < acc.itemsize:
        x = x.astype(acc)
    n = jnp.sum(m, dtype=jnp.int32) if m is not None else jnp.asarray(x.size, jnp.int32)
    head = [*_halves(jnp, n, f), jnp.zeros((), f), jnp.zeros((), f), jnp.asarray(w, f)]  # an integer is finite
    if x.size == 0:  # static: the shape is known when tracing
        return jnp.stack(head + [jnp.zeros((), f)] * (INT_SUMMARY_SIZE - len(head)))
    keep = (lambda a, other: a) if m is None else (lambda a, other: jnp.where(m, a, other))
    hi = keep((x >> w).astype(acc), 0)
    lo = keep((x & (2**w - 1)).astype(acc), 0)

    def exact_sum(limbs: Any) -> list[Any]:
        # Block sums (exact), split into limbs again and summed: exact for up to 2**30 elements (SUMMARY_CHUNK).
        size = limbs.size
        full = size // block * block
        sums = [limbs[:full].reshape(-1, block).sum(axis=1, dtype=acc)] if full else []
        if full < size:
            sums.append(limbs[full:].sum(keepdims=True, dtype=acc))
        s = jnp.concatenate(sums)
        return [jnp.sum(s >> w, dtype=acc), jnp.sum(s & (2**w - 1), dtype=acc)]

    sums = [h for part in (*exact_sum(hi), *exact_sum(lo)) for h in _halves(jnp, part, f)]
    first = 0 if m is None else jnp.argmax(m)
    d = keep((hi - hi[first]).astype(f) * float(2**w) + (lo - lo[first]).astype(f), 0.0)
    centre = jnp.sum(d) / jnp.maximum(n, 1).astype(f)
    e = keep(d - centre, 0.0)
    info = jnp.iinfo(x.dtype)
    least = jnp.min(keep(x, jnp.asarray(info.max, x.dtype)))
    most = jnp.max(keep(x, jnp.asarray(info.min, x.dtype)))
    return jnp.stack([*head, *sums, jnp.sum(e), jnp.sum(e * e), *_halves(jnp, least, f), *_halves(jnp, most, f)])


@functools.cache
def _summary_fn() -> Any:
    """A jitted reduction ``(values, mask) -> vector`` on the device (``FLOAT_SUMMARY_SIZE`` or
    ``INT_SUMMARY_SIZE`` numbers, in JAX's default float; ``host_summary`` reads either).

    An empty array (a step whose rollouts were all filtered out) gives count 0, as the numpy path does. The
    counts are int32 sums, carried in halves (a float32 rounds odd numbers above 2**24).
    """
    jax = require_jax()
    jnp = jax.numpy

    @jax.jit
    def summarise(values: Any, mask: Any) -> Any:
        v = jnp.ravel(values)
        m = None if mask is None else jnp.ravel(mask).astype(bool)
        if v.dtype == jnp.bool_ or jnp.issubdtype(v.dtype, jnp.integer):  # static: the dtype is known
            return _int_summary(jnp, v, m)
        return _float_summary(jnp, v.astype(jnp.result_type(float)), jnp.ones(v.shape, bool) if m is None else m)

    return summarise


def device_summary(values: Any, mask: Any | None = None) -> list[Any]:
    """Summaries of a JAX array, computed where it lives by asynchronous dispatches; each stays on the device
    (no sync) and is a new buffer, so donating ``values`` afterwards does not affect it. One summary per slice
    of ``SUMMARY_CHUNK`` elements (one for any array below a billion elements), so that the counts (and an
    integer array's sums) are exact; ``host_summary`` reads each one on the host."""
    size = getattr(values, "size", None)
    if not isinstance(size, int) or size <= SUMMARY_CHUNK:
        return [_summary_fn()(values, mask)]
    flat = values.reshape(-1)
    flat_mask = None if mask is None else mask.reshape(-1)
    return [
        _summary_fn()(flat[i : i + SUMMARY_CHUNK], None if flat_mask is None else flat_mask[i : i + SUMMARY_CHUNK])
        for i in range(0, size, SUMMARY_CHUNK)
    ]


def host_summary(h: Any) -> Any:
    """A device summary's host copy as ``[count, pivot, shift, m2, min, max, nonfinite]`` in float64 (the mean is
    ``pivot + shift``: ``stats_tracker._PIVOT`` says why not a sum).

    The integers (counts, an integer array's sum limbs, minimum and maximum) are joined from their halves in
    Python integers, exactly; an integer array's pivot is their exact sum over the count as float64, and its
    shift what that rounding left, from the exact fraction: the pair is the mean to far finer than one float64,
    which combining it with another part needs (a review: carried as the one float64, ``[b, b+1, b+1]`` and
    ``[b]`` in two calls gave a std 2e-5 off at b = 1e12 and 18 % off at 1e17 under ``jax_enable_x64``; the
    mean, one part alone, renders as ``pivot + shift``: the exact mean rounded once). A float array's shift is
    ``centre + residual / n``: ``residual`` gives back what the float sum rounded away. ``m2`` is the centred
    squares less ``residual**2 / n`` (the corrected two-pass formula)."""
    import numpy as np

    v = np.asarray(h, dtype=np.float64)

    def join(i: int) -> int:
        return int(v[i]) * _HALF + int(v[i + 1])

    n, bad = join(0), join(2)
    if v.size == FLOAT_SUMMARY_SIZE:
        pivot, centre, high, middle, low, m2, lo, hi = (float(a) for a in v[4:])
        residual = high + middle + low
    elif v.size == INT_SUMMARY_SIZE:
        w = int(v[4])
        a1, a0, b1, b0 = join(5), join(7), join(9), join(11)
        total = (((a1 << w) + a0) << w) + (b1 << w) + b0
        residual, m2 = float(v[13]), float(v[14])
        lo, hi = float(join(15)), float(join(17))
    else:
        raise ValueError(f"a device summary of {v.size} numbers; expected {FLOAT_SUMMARY_SIZE} or {INT_SUMMARY_SIZE}")
    if n == 0:
        return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, float(bad)])
    if v.size == FLOAT_SUMMARY_SIZE:
        shift = centre + residual / n
    else:  # the exact sum over the count rounded, and the rest of the exact mean (docs/writer.md)
        mean = Fraction(total, n)
        pivot = float(mean)
        shift = float(mean - Fraction(pivot))
    m2 = max(m2 - residual * residual / n, 0.0)
    return np.array([float(n), pivot, shift, m2, lo, hi, float(bad)])
