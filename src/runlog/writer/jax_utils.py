"""The writer's only contact with JAX. JAX is optional: nothing here imports it unless the caller already has.

Why "unless already imported": a trainer that uses JAX has imported it long before it logs anything, so
``sys.modules`` tells us whether a value can be a JAX array at all without paying JAX's import time (seconds)
in trainers that do not use it.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from ..errors import UsageError

INSTALL_HINT = "JAX is not installed: pip install 'runlog[jax]' (or pip install jax)"


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


def is_jax_array(x: Any) -> bool:
    """True for a JAX array, without importing JAX."""
    if not jax_loaded():
        return False
    return isinstance(x, sys.modules["jax"].Array)


def device_get(tree: Any) -> Any:
    """Move every JAX array in a pytree to host in one ``jax.device_get`` (one batched transfer)."""
    if not jax_loaded():
        return tree
    return sys.modules["jax"].device_get(tree)


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
    """``jax.process_index()`` when JAX is initialised, else 0."""
    if backend_initialised():
        return int(sys.modules["jax"].process_index())
    return 0


def default_process_count() -> int:
    """``jax.process_count()`` when JAX is initialised, else 1."""
    if backend_initialised():
        return int(sys.modules["jax"].process_count())
    return 1


def allgather(vector: Any) -> Any:
    """Gather a small float64 host vector from every process: shape ``[process_count, len(vector)]``."""
    require_jax()
    import numpy as np
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(vector, dtype=np.float64)))


@functools.cache
def _summary_fn() -> Any:
    """A jitted reduction ``(values, mask) -> [count, sum, m2, min, max, nonfinite]`` that runs on the device.

    Centred second moment (``m2``) rather than a raw sum of squares: in float32 (JAX's default) the raw form
    loses the variance of values far from zero.
    """
    jax = require_jax()
    jnp = jax.numpy

    @jax.jit
    def summarise(values: Any, mask: Any) -> Any:
        x = jnp.ravel(values).astype(jnp.result_type(float))
        m = jnp.ravel(mask).astype(bool)
        finite = jnp.isfinite(x)
        ok = m & finite
        n = jnp.sum(ok)
        s = jnp.sum(jnp.where(ok, x, 0.0))
        mean = s / jnp.maximum(n, 1)
        m2 = jnp.sum(jnp.where(ok, (x - mean) ** 2, 0.0))
        lo = jnp.min(jnp.where(ok, x, jnp.inf))
        hi = jnp.max(jnp.where(ok, x, -jnp.inf))
        bad = jnp.sum(m & ~finite)
        return jnp.stack([n.astype(x.dtype), s, m2, lo, hi, bad.astype(x.dtype)])

    return summarise


def device_summary(values: Any, mask: Any | None = None) -> Any:
    """Six numbers about a JAX array, computed where it lives; the result stays on the device (no sync)."""
    jnp = require_jax().numpy
    if mask is None:
        mask = jnp.ones(jnp.shape(values), dtype=bool)
    return _summary_fn()(values, mask)
