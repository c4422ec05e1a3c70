"""``StatsTracker``: record metrics anywhere in a step, commit them once (the AReaL pattern, seed 002).

Why a tracker and not ``writer.log_scalars`` everywhere: components record where the numbers are (a reward
function, the loss, a rollout worker) without knowing about steps, processes or sinks; the trainer commits
once per step. Arrays are summarised where they live: for a JAX array the mean/std/min/max/count are
computed on the device by one jitted reduction and stay there; ``commit`` with a ``RunWriter`` starts their
copies to host and hands the step to the writer's background thread, which completes them, reduces across
processes and writes. Neither recording nor committing waits for the device, and the host receives twelve
numbers per summary (nineteen for an integer array), never the array.

Naming (seed 002): ``/`` separators; namespaces ``train/``, ``eval/``, ``time/``, ``throughput/``; summary
suffixes ``mean, std, min, max, count``; ``k__count`` is the weight of ``k`` when shards are merged.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from functools import partial
from typing import Any, Literal

from ..errors import UsageError
from . import _convert, jax_utils
from .errors import StepOrderError
from .run_writer import RunWriter, _step

# Per summary key on the host, seven numbers: count, pivot, shift, m2 (centred sum of squares), min, max, non-finite
# count. The mean is ``pivot + shift``, never a raw sum over the count: the pivot is one of the values (an integer
# JAX array's: its exact mean rounded; a combination's: the larger part's pivot) and the shift is small beside it,
# so the pair holds the mean of ``1e8 + N(0, 0.01)`` to far finer than float64's spacing at 1e8 (1.5e-8), which
# Chan et al.'s combination needs: the difference of two parts' means, taken from raw sums, kept only about 1e-8
# of it, and the std of the combined parts lost six digits (a device summary carries more:
# ``jax_utils.host_summary`` turns it into these seven).
_N, _PIVOT, _SHIFT, _M2, _MIN, _MAX, _BAD = range(7)

Gather = Callable[[Any], Any]


def _np() -> Any:
    try:
        import numpy as np
    except ImportError as exc:  # pragma: no cover - numpy comes with every array library
        raise UsageError("StatsTracker.summary needs numpy: pip install numpy") from exc
    return np


def _host_summary(key: str, values: Any, mask: Any | None) -> Any:
    np = _np()
    if values is None or isinstance(values, (str, bytes, Mapping)):
        raise UsageError(f"summary {key!r}: values are a {type(values).__name__}, not an array of numbers")
    try:
        x = _host_numbers(np, key, values).ravel()
        m = np.ones(x.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).ravel()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"summary {key!r}: values and mask must be arrays of numbers ({exc})") from None
    if m.shape != x.shape:
        raise UsageError(f"mask has {m.size} elements, values have {x.size}")
    if x.dtype.kind in "iub":
        return _host_int_summary(np, x[m])
    finite = np.isfinite(x)
    ok = m & finite
    sel = x[ok]
    bad = float((m & ~finite).sum())
    if not sel.size:
        return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, bad])
    pivot = float(sel[0])
    with np.errstate(over="ignore", invalid="ignore"):
        shift, m2 = _pivoted(np, sel, pivot)
        if not math.isfinite(shift):
            # Finite values whose differences or sums overflow (near +-1e308): ``[1e308, -1e308]`` gave a NaN mean
            # (numpy: 0.0). Scaled by a power of two (exact) so that no sum of ``n`` of them can overflow, the
            # mean taken about 0 (a pivot among such values is no help: their differences overflow) and scaled
            # back: numpy's mean where its sum does not overflow. The squares may overflow, as numpy's do (std inf).
            k = 2 + sel.size.bit_length()
            y = np.ldexp(sel, -k)
            mean = float(y.mean())
            pivot, shift, m2 = 0.0, math.ldexp(mean, k), float(np.ldexp(((y - mean) ** 2).sum(), 2 * k))
    return np.array([float(sel.size), pivot, shift, m2, float(sel.min()), float(sel.max()), bad])


_SUMMARY_KINDS = frozenset("fiub")  # numpy dtype kinds that ``summary`` takes (bool included, as on the device)


def _host_numbers(np: Any, key: str, values: Any) -> Any:
    """``values`` as a numpy array of numbers: integers (and bools) kept as they are, for an exact sum
    (``_host_int_summary``), floats as float64 (a longdouble rounded to it; bfloat16 and other ``ml_dtypes``
    widened). Durations and dates (``timedelta64``, ``datetime64``: their unit would be dropped), text (never
    parsed) and complex numbers are refused, as ``scalar`` refuses them; a list of Python numbers is numpy's
    array of it (ints beyond 64 bits as float64)."""
    x = np.asarray(values)
    kind = x.dtype.kind
    if kind == "V" and x.dtype.type.__module__.startswith("ml_dtypes"):
        x = jax_utils.plain_dtype(x)
        kind = x.dtype.kind
    if kind == "O":
        types = set(map(type, x.ravel().tolist()))
        odd = sorted(t.__name__ for t in types if not _convert.is_number_type(t))
        if odd:
            import numbers

            text = [t for t in types if issubclass(t, (str, bytes))]
            # float() only for what is a number of another type (Fraction, Decimal), not for a dict or a list.
            numeric = [t for t in types if issubclass(t, numbers.Number) and not _convert.is_number_type(t)]
            hints = ["text is never parsed"] if text else []
            if numeric:
                hints.append(f"convert {', '.join(sorted(t.__name__ for t in numeric))} with float()")
            hint = "; ".join(hints) or "give numbers"
            raise UsageError(f"summary {key!r}: values hold {', '.join(odd)}: ints, floats and bools only ({hint})")
        return np.asarray(x, dtype=np.float64)
    if kind not in _SUMMARY_KINDS:
        what = {
            "m": "durations, not numbers (their unit would be dropped): give numbers, such as "
            "x / np.timedelta64(1, 's') for seconds",
            "M": "dates, not numbers",
            "U": "text, not numbers (text is never parsed)",
            "S": "bytes, not numbers (text is never parsed)",
        }
        raise UsageError(f"summary {key!r}: values are an array of {x.dtype}: {what.get(kind, 'not real numbers')}")
    return x if kind in "iub" else np.asarray(x, dtype=np.float64)


def _host_int_summary(np: Any, sel: Any) -> Any:
    """The summary of integer (or bool) values, as exact as a JAX integer array's (``jax_utils.host_summary``):
    their sum is exact (in Python integers), so the mean is the exact sum over the count rounded once (the pivot)
    with what that rounding left (the shift); the spread is taken from the values less their minimum, which are
    exact in uint64 whatever the values, and in float64 while the values span less than 2**53. Through float64,
    ``[1e17, 1e17 + 1, 1e17 + 2]`` had a std of 0 (each value rounded to a multiple of 16)."""
    if not sel.size:
        return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0.0])
    n = int(sel.size)
    lo, hi = int(sel.min()), int(sel.max())
    # The offsets from the minimum, exact in uint64 (the difference of two 64-bit integers fits in 64 bits):
    # numpy's modular subtraction gives them whatever the signs.
    u = sel.astype(np.int64).view(np.uint64) if sel.dtype.kind == "i" else sel.astype(np.uint64)
    d = u - np.uint64(lo % 2**64)
    # Their sum, exact: in two 32-bit halves, each summed in uint64 (no overflow below 2**32 values).
    total = (
        lo * n
        + (int((d >> np.uint64(32)).sum(dtype=np.uint64)) << 32)
        + int((d & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    )
    mean = Fraction(total, n)
    pivot = float(mean)
    shift = float(mean - Fraction(pivot))
    centre = float(mean - lo)  # the mean's offset from the minimum
    e = d.astype(np.float64) - centre
    residual = float(e.sum())
    m2 = max(float((e * e).sum()) - residual * residual / n, 0.0)
    return np.array([float(n), pivot, shift, m2, float(lo), float(hi), 0.0])


def _pivoted(np: Any, sel: Any, pivot: float) -> tuple[float, float]:
    """The shift of the values' mean from ``pivot`` (the first value, as the device takes), and their centred
    sum of squares: the differences of values close to the pivot are exact, and the corrected two-pass formula
    (Chan, Golub and LeVeque) gives back what the centre's rounding left."""
    d = sel - pivot
    centre = float(d.mean())
    e = d - centre
    residual = float(e.sum())
    n = float(sel.size)
    return centre + residual / n, max(float((e * e).sum()) - residual * residual / n, 0.0)


def _combine(a: Any, b: Any) -> Any:
    """Chan et al.'s pairwise update: two partial summaries as one, without losing the variance. The parts'
    means differ by ``delta``, taken from their pivots and shifts (exact for pivots within a factor of two of
    each other), and the combined mean keeps the larger part's pivot: its shift stays small, and fine."""
    np = _np()
    na, nb = a[_N], b[_N]
    n = na + nb
    if na == 0 or nb == 0:
        out = (b if na == 0 else a).copy()
        out[_BAD] = a[_BAD] + b[_BAD]
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        delta = (b[_PIVOT] - a[_PIVOT]) + (b[_SHIFT] - a[_SHIFT])  # mean(b) - mean(a)
        if nb > na:
            pivot, shift = b[_PIVOT], b[_SHIFT] - delta * (na / n)
        else:
            pivot, shift = a[_PIVOT], a[_SHIFT] + delta * (nb / n)
        m2 = a[_M2] + b[_M2] + delta * delta * (na * nb / n)
        if not math.isfinite(shift):
            # means whose difference overflows (near +-1e308): their weighted mean cannot, nor can it be
            # taken about either pivot; the spread of the means overflows the squares (m2 inf, as numpy's)
            pivot, shift = (a[_PIVOT] + a[_SHIFT]) * (na / n) + (b[_PIVOT] + b[_SHIFT]) * (nb / n), 0.0
    return np.array([n, pivot, shift, m2, min(a[_MIN], b[_MIN]), max(a[_MAX], b[_MAX]), a[_BAD] + b[_BAD]])


def _combine_all(parts: Any, lo: float, hi: float) -> Any:
    """The processes' summaries of one key (rows of count, pivot, shift, m2, non-finite count) as one, by Chan et
    al.'s formula for many parts: every mean taken about the pivot of the process with the most values (exact
    differences of pivots close to it), so that the spread of the means keeps what the pivots and shifts hold."""
    np = _np()
    n_p, piv_p, shift_p, m2_p, bad_p = (parts[:, j] for j in range(5))
    n = float(n_p.sum())
    bad = float(bad_p.sum())
    if n == 0:
        return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, bad])
    has = n_p > 0
    pivot = float(piv_p[int(np.argmax(n_p))])
    with np.errstate(over="ignore", invalid="ignore"):
        # Each process's mean less the pivot (0 for an empty process, whose pivot is no value of its own).
        offset = np.where(has, (np.where(has, piv_p, pivot) - pivot) + shift_p, 0.0)
        shift = float((n_p * offset).sum()) / n
        m2 = float(m2_p.sum()) + float((n_p * (offset - shift) ** 2).sum())
        if not math.isfinite(shift):
            # means that differ by more than float64 holds (near +-1e308): their weighted mean, as ``_combine``,
            # and their spread about it
            means = np.where(has, piv_p + shift_p, 0.0)
            pivot, shift = float(((n_p / n) * means).sum()), 0.0
            m2 = float(m2_p.sum()) + float((n_p * (means - pivot) ** 2).sum())
    return np.array([n, pivot, shift, m2, lo, hi, bad])


class StatsTracker:
    """Collect scalars, array summaries and timings during a step; ``export`` or ``commit`` them once.

    ``reduce="global"`` (default) combines every process's numbers when ``jax.process_count() > 1`` with one
    small all-gather of counts, means (as pivot and shift), centred sums of squares, minima and maxima (never
    the arrays; combined with Chan et al.'s formula), so that every process exports the global values (a
    timing: the processes' mean, and the slowest under ``MAX_PROCESS``) and ``commit`` writes them from process 0
    only.
    ``reduce="local"`` exports each process's own numbers, with ``__count`` weights (every scalar's, one value or
    several), for per-process scalar shards that readers merge. ``gather`` replaces the JAX all-gather (tests,
    other frameworks): it takes a 1-D float64 vector and returns a ``[process_count, len]`` array; with a
    ``RunWriter`` it is called on the writer's background thread. ``clock`` times ``record_timing`` (inject one
    for reproducible timings). Not thread-safe: record from the training thread.
    """

    _instances = itertools.count()  # same order on every process (SPMD): names this tracker's gathers

    def __init__(
        self,
        *,
        reduce: Literal["global", "local"] = "global",
        process_count: int | None = None,
        process_index: int | None = None,
        gather: Gather | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if reduce not in ("global", "local"):
            raise UsageError(f"reduce must be 'global' or 'local', not {reduce!r}")
        self.reduce = reduce
        self._process_count = process_count
        self._process_index = process_index
        self._gather = gather
        self._clock = clock
        self._scope: list[str] = []
        self._scalars: dict[str, list[Any]] = {}  # key -> values in call order (floats, or device copies)
        self._summaries: dict[str, list[Any]] = {}  # key -> partial summaries (host arrays or device arrays)
        self._timings: dict[str, float] = {}
        self.last_step: int | None = None
        self._id = next(StatsTracker._instances)
        self._gathers = 0

    @property
    def process_count(self) -> int:
        return self._process_count if self._process_count is not None else jax_utils.default_process_count()

    @property
    def process_index(self) -> int:
        return self._process_index if self._process_index is not None else jax_utils.default_process_index()

    # -- recording ----------------------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key or key.startswith("/") or key.endswith("/") or "//" in key:
            # as ``log_scalars`` refuses them: an empty '/'-separated part names no metric
            raise UsageError(f"metric key {key!r} has an empty name or '/'-separated part; use names separated by '/'")
        if not key.isascii():
            _convert.check_names([key], "metric key")
        return "/".join([*self._scope, key])

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Prefix every key recorded inside the block with ``name/`` (scopes nest)."""
        self._key(name)
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def scalar(self, **values: Any) -> None:
        """Record numbers; a key recorded several times in a step exports their mean (and ``__count``). JAX
        scalars are copied on their device (one dispatch per call; they may be donated afterwards) and stay
        there until the step is committed: no wait for the device."""
        recorded: dict[str, Any] = {}  # in the caller's order: it is the order of the keys in the scalars line
        device: dict[str, Any] = {}
        for k, v in values.items():
            key = self._key(k)
            if jax_utils.is_jax_array(v):
                if v.size != 1:
                    raise UsageError(f"scalar {key!r} is a JAX array of shape {tuple(v.shape)}; use summary()")
                device[key] = recorded[key] = v
            else:
                recorded[key] = float(_convert.scalar_value(key, v))  # a number, never parsed from text
        if device:
            recorded.update(zip(device, jax_utils.device_copy(list(device.values())), strict=True))
        for key, v in recorded.items():
            self._scalars.setdefault(key, []).append(v)

    def summary(self, key: str, values: Any) -> None:
        """Record an array as ``key/mean, /std, /min, /max, /count``; NaN and inf are left out and counted
        under ``key/nonfinite``. A JAX array is reduced on its device."""
        self._add_summary(key, values, None)

    def masked(self, key: str, values: Any, mask: Any) -> None:
        """Like ``summary`` over the elements where ``mask`` is true (token-level metrics with padding)."""
        self._add_summary(key, values, mask)

    def _add_summary(self, key: str, values: Any, mask: Any | None) -> None:
        full = self._key(key)
        if jax_utils.is_jax_array(values) or jax_utils.is_jax_array(mask):
            _check_device_shapes(full, values, mask)
            parts = jax_utils.device_summary(values, mask)  # stays on the device: no sync here
        else:
            parts = [_host_summary(full, values, mask)]
        self._summaries.setdefault(full, []).extend(parts)

    @contextlib.contextmanager
    def record_timing(self, key: str) -> Iterator[None]:
        """Time the block into ``time/<scope>/<key>_s`` (summed when repeated in a step; across processes, their
        mean, and the slowest process's under ``time/<scope>/<key>_s/max_process`` with global reduction)."""
        full = "time/" + self._key(key) + "_s"
        t0 = self._clock()
        try:
            yield
        finally:
            self._timings[full] = self._timings.get(full, 0.0) + (self._clock() - t0)

    # -- export -------------------------------------------------------------------------------------------
    def export(self, *, reset: bool = True) -> dict[str, float]:
        """Everything recorded since the last reset, as flat ``{key: number}`` with ``__count`` weights.

        Waits for the device (it returns the numbers); ``commit`` with a ``RunWriter`` does not."""
        self._check_keys()
        recorded = self._take(reset)
        return self._compute(recorded, jax_utils.DeviceFetch(_device_parts(recorded), copy=False), self._gatherer())

    def reset(self) -> None:
        """Forget everything recorded (``export`` does this by default)."""
        self._scalars.clear()
        self._summaries.clear()
        self._timings.clear()

    def commit(
        self,
        step: int,
        writer: Any | None = None,
        *,
        table: bool = False,
        console: Any | None = None,
    ) -> Mapping[str, float]:
        """Export (and reset) the step and log its scalars with ``writer``; optionally print a compact table.
        A step lower than the last commit raises ``StepOrderError`` before anything is reset.

        With a ``RunWriter`` the step is handed to the writer's background thread: the copies to host of its
        device numbers are started here, and completed, reduced across processes and written there, in order
        with the samples. The call never waits for the device; it returns a ``PendingStats`` mapping, which
        waits for the numbers only when read (``table=True`` reads it). With any other writer (an object with
        ``log_scalars``) or none, the numbers are computed here and returned as a dict.

        With global reduction on several processes every process must call ``commit`` (the reduction is
        collective); only process 0 writes.
        """
        step = _step(step)
        if self.last_step is not None and step < self.last_step:
            raise StepOrderError(
                f"commit for step {step} after step {self.last_step}: steps must not go backwards "
                "(a resumed run needs a new StatsTracker, or commit the step it resumed from)"
            )
        reserved = {"step", "time"} & (set(self._scalars) | set(self._timings))
        if reserved:
            raise UsageError(f"metric key {sorted(reserved)[0]!r} is reserved (the writer sets it)")
        self._check_keys()
        # Nothing is reset (and ``last_step`` is not moved) until the step is handed over: a commit refused by
        # the writer (``QueueFullError``, ``WriterError``, ``WriterClosedError``) leaves the tracker as it was,
        # so that the retry writes the step's values (docs/writer.md, the queue).
        recorded = self._take(False)
        gathers = self._gathers
        try:
            fetch = jax_utils.DeviceFetch(_device_parts(recorded), copy=False)
            gather = self._gatherer()
            writes = self.reduce == "local" or self.process_count == 1 or self.process_index == 0
            stats: Mapping[str, float]
            if isinstance(writer, RunWriter) and gather is not jax_utils.allgather:
                stats = writer._log_stats(step, partial(self._compute, recorded, fetch, gather), write=writes)
            else:  # no background thread to hand it to, or a device collective that must stay on this thread
                stats = self._compute(recorded, fetch, gather)
                if writer is not None and writes:
                    writer.log_scalars(step, stats)
        except BaseException:
            self._gathers = gathers  # the retry takes this gather's name, as the other processes do
            raise
        self.reset()
        self.last_step = step
        if table and writes:
            print_table(step, stats, console=console)
        return stats

    # -- internals ----------------------------------------------------------------------------------------
    def _check_keys(self) -> None:
        """Refuse a step whose exported keys collide (``scalar(**{"x/mean": 1})`` and ``summary("x", ...)``):
        one value would silently replace the other. Checked on the key names, before anything is reset."""
        seen: dict[str, str] = {}

        def add(name: str, source: str) -> None:
            if name in seen:
                raise UsageError(
                    f"metric key {name!r} would be exported twice, by {seen[name]} and by {source}; rename one"
                )
            seen[name] = source

        slowest = self.reduce == "global" and self.process_count > 1
        for k, values in self._scalars.items():
            add(k, f"scalar {k!r}")
            if len(values) > 1 or self.reduce == "local":
                add(f"{k}__count", f"scalar {k!r} (its weight)")
        for k in self._summaries:
            for suffix in _SUMMARY_SUFFIXES:
                add(f"{k}/{suffix}", f"summary {k!r}")
        for k in self._timings:
            add(k, f"timing {k!r}")
            if slowest:
                add(k + MAX_PROCESS, f"timing {k!r} (its slowest process)")

    def _take(self, reset: bool) -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, float]]:
        recorded = (
            {k: list(v) for k, v in self._scalars.items()},
            {k: list(v) for k, v in self._summaries.items()},
            dict(self._timings),
        )
        if reset:
            self.reset()
        return recorded

    def _gatherer(self) -> Gather | None:
        """What combines the processes' numbers: None (one process, or ``reduce="local"``), the ``gather``
        given, a gather through ``jax.distributed``'s key-value store (any thread; named by this tracker and
        its count of gathers, which every process advances in the same order), or the device all-gather."""
        if self.reduce != "global" or self.process_count <= 1:
            return None
        if self._gather is not None:
            return self._gather
        if jax_utils.kv_client() is None:
            return jax_utils.allgather
        n = self._gathers
        self._gathers += 1
        base = f"runlog/stats/t{self._id}/g"
        return partial(
            jax_utils.kv_allgather,
            key=f"{base}{n}",
            process_index=self.process_index,
            process_count=self.process_count,
            forget=f"{base}{n - 2}" if n >= 2 else None,
        )

    def _compute(
        self,
        recorded: tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, float]],
        fetch: Any,
        gather: Gather | None,
    ) -> dict[str, float]:
        """The step's numbers from what ``_take`` returned: host copies completed (waits for the device),
        partial summaries combined, processes reduced, keys rendered."""
        scalars_in, summaries_in, timings = recorded
        host = iter(fetch.get())
        scalars: dict[str, tuple[float, float]] = {}
        for k, values in scalars_in.items():
            total = 0.0
            for v in values:
                total += v if isinstance(v, float) else float(next(host))
            scalars[k] = (total, float(len(values)))
        summaries: dict[str, Any] = {}
        for k, parts in summaries_in.items():
            np = _np()  # only with summaries to reduce
            device = [jax_utils.host_summary(next(host)) for p in parts if jax_utils.is_jax_array(p)]
            ordered = [p for p in parts if not jax_utils.is_jax_array(p)] + device
            acc = np.asarray(ordered[0], dtype=np.float64)
            for p in ordered[1:]:
                acc = _combine(acc, np.asarray(p, dtype=np.float64))
            summaries[k] = acc
        if gather is not None:
            scalars, summaries, timings = self._reduce_across_processes(scalars, summaries, timings, gather)
        return _render(scalars, summaries, timings, weigh_all=self.reduce == "local")

    def _reduce_across_processes(
        self,
        scalars: dict[str, tuple[float, float]],
        summaries: dict[str, Any],
        timings: dict[str, float],
        gather: Gather,
    ) -> tuple[dict[str, tuple[float, float]], dict[str, Any], dict[str, float]]:
        """One all-gather of ``[sums..., summaries..., minima..., maxima..., key-layout hash]`` and a host reduction.

        Summaries travel as count, pivot, shift and centred sum of squares (float64), combined with Chan et al.'s
        formula as the local path does: a raw sum of squares would lose the variance of values far from zero, and
        means taken from raw sums their differences (``_PIVOT``). A timing is the mean of the processes' (what
        readers make of ``reduce="local"`` shards, which hold no weight for it, and what AReaL records), so that
        one training gives one number in both modes; the slowest process's goes under its own key
        (``MAX_PROCESS``).
        Every process must record the same keys (the SPMD rule); the hash turns a violation into an error
        instead of numbers silently mixed up.
        """
        np = _np()
        s_keys, m_keys, t_keys = sorted(scalars), sorted(summaries), sorted(timings)
        sums: list[float] = []
        for k in s_keys:
            sums += list(scalars[k])
        sums += [timings[k] for k in t_keys]
        parts_local: list[float] = []
        for k in m_keys:
            a = summaries[k]
            parts_local += [a[_N], a[_PIVOT], a[_SHIFT], a[_M2], a[_BAD]]
        mins = [summaries[k][_MIN] for k in m_keys]
        maxs = [summaries[k][_MAX] for k in m_keys] + [timings[k] for k in t_keys]
        layout = "\0".join(["s", *s_keys, "m", *m_keys, "t", *t_keys])
        local = np.array([*sums, *parts_local, *mins, *maxs, float(zlib.crc32(layout.encode()))], dtype=np.float64)
        gathered = np.asarray(gather(local), dtype=np.float64)
        if gathered.ndim != 2 or gathered.shape[1] != local.size or len(set(gathered[:, -1].tolist())) != 1:
            raise UsageError(
                "processes recorded different metric keys this step; every process must record the same keys "
                "(or use StatsTracker(reduce='local'))"
            )
        ns, nparts, nm = len(sums), len(parts_local), len(mins)
        total = gathered[:, :ns].sum(axis=0)
        lo = gathered[:, ns + nparts : ns + nparts + nm].min(axis=0)
        hi = gathered[:, ns + nparts + nm : -1].max(axis=0)
        out_s = {k: (float(total[2 * i]), float(total[2 * i + 1])) for i, k in enumerate(s_keys)}
        out_m: dict[str, Any] = {}
        if m_keys:
            parts = gathered[:, ns : ns + nparts].reshape(gathered.shape[0], len(m_keys), 5)
            for i, k in enumerate(m_keys):
                out_m[k] = _combine_all(parts[:, i, :], lo[i], hi[i])
        out_t: dict[str, float] = {}
        timed = 2 * len(s_keys)  # where the timings start
        for i, k in enumerate(t_keys):
            out_t[k] = float(total[timed + i]) / gathered.shape[0]
            out_t[k + MAX_PROCESS] = float(hi[len(m_keys) + i])
        return out_s, out_m, out_t


_SUMMARY_SUFFIXES = ("mean", "std", "min", "max", "count", "mean__count", "nonfinite")
#: The suffix of a timing's slowest process, written beside the timing (the processes' mean) by a global
#: reduction over several processes: named for what it is the maximum of (a step's repeats are summed, not
#: maxed), and never written by ``reduce="local"``, whose shards' readers could not take a maximum of a mean.
MAX_PROCESS = "/max_process"


def _element_count(key: str, x: Any, what: str) -> int:
    """The number of elements of an array (its ``size``: no device sync), or a usage error saying ``what``."""
    size = getattr(x, "size", None)
    if size is None:
        try:
            size = _np().size(x)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"summary {key!r}: {what} ({exc})") from None
    return int(size)


def _check_device_shapes(key: str, values: Any, mask: Any | None) -> None:
    """The element counts of a JAX summary's values and mask, compared from their shapes (no device sync)."""
    size = _element_count(key, values, "values must be an array of numbers")
    if mask is None:
        return
    msize = _element_count(key, mask, "mask must be an array of booleans")
    if int(msize) != int(size):
        raise UsageError(f"mask has {msize} elements, values have {size}")


def _device_parts(recorded: tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, float]]) -> list[Any]:
    """The device arrays of a step, in the order ``StatsTracker._compute`` takes their host copies."""
    scalars, summaries, _ = recorded
    out = [v for values in scalars.values() for v in values if not isinstance(v, float)]
    out += [p for parts in summaries.values() for p in parts if jax_utils.is_jax_array(p)]
    return out


def _render(
    scalars: Mapping[str, tuple[float, float]],
    summaries: Mapping[str, Any],
    timings: Mapping[str, float],
    *,
    weigh_all: bool = False,
) -> dict[str, float]:
    """The exported keys. ``weigh_all`` (``reduce="local"``: shards that readers merge) writes ``k__count`` for
    a scalar of one value too: readers weigh a value without one as one value anyway, but a shard with a weight
    beside one without looks like foreign data to them (``runlog summarize --scalars`` says so in a note)."""
    out: dict[str, float] = {}
    nan = float("nan")
    for k, (s, c) in scalars.items():
        out[k] = s / c if c else nan
        if c > 1 or weigh_all:
            out[f"{k}__count"] = c
    for k, a in summaries.items():
        n = float(a[_N])
        out[f"{k}/mean"] = float(a[_PIVOT]) + float(a[_SHIFT]) if n else nan
        out[f"{k}/std"] = (float(a[_M2]) / n) ** 0.5 if n else nan
        out[f"{k}/min"] = float(a[_MIN]) if n else nan
        out[f"{k}/max"] = float(a[_MAX]) if n else nan
        out[f"{k}/count"] = n
        out[f"{k}/mean__count"] = n
        if a[_BAD]:
            out[f"{k}/nonfinite"] = float(a[_BAD])
    out.update(timings)
    return out


def print_table(step: int, stats: Mapping[str, float], *, console: Any | None = None) -> None:
    """A compact two-column rich table of one step's stats (``__count`` weights left out)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"step {step}", box=None, pad_edge=False, show_header=False)
    t.add_column("key", style="cyan")
    t.add_column("value", justify="right")
    for k in sorted(stats):
        if not k.endswith("__count"):
            t.add_row(k, f"{stats[k]:.6g}")
    (console or Console()).print(t)
