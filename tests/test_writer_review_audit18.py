"""Review of 4bf8072 (audit 18, the writer). ``StatsTracker``: a JAX integer array's mean carried as one float64,
so two parts combined lost its fraction above 2**53 / n (``[b, b+1, b+1]`` and ``[b]`` under ``jax_enable_x64``:
std 2e-5 off at b = 1e12, 18 % at 1e17; one call gave 0.5); finite values near ±1e308 gave a NaN mean and std
(numpy: mean 0.0). The scalars reader: a ``time`` it cannot read (an int beyond float64, text) became null without
a word. ``config``: durations, decimals, ranges and numpy integer keys were refused (and a ``timedelta64[ns]``
written as an int of nanoseconds, unsaid).

Every expected figure is computed here (``Fraction``, numpy), never with runlog's code."""

from __future__ import annotations

import datetime
import json
import math
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runlog import RunWriter, open_run
from runlog.errors import UsageError
from runlog.writer import StatsTracker

# -- StatsTracker: JAX integer parts ---------------------------------------------------------------------------

_X64_SCRIPT = """
import jax
jax.config.update("jax_enable_x64", True)
import json, math
from fractions import Fraction
import numpy as np, jax.numpy as jnp
from runlog.writer import StatsTracker

def two_processes(a, b):
    store = {}
    def tracker(i):
        def gather(local):
            store[i] = local
            return np.stack([store.get(0, local), store.get(1, local)])
        return StatsTracker(process_count=2, process_index=i, gather=gather)
    t0, t1 = tracker(0), tracker(1)
    t1.summary("x", jnp.asarray(b)); t1.export()
    t0.summary("x", jnp.asarray(a))
    return t0.export()

def two_calls(a, b):
    t = StatsTracker(); t.summary("x", jnp.asarray(a)); t.summary("x", jnp.asarray(b))
    return t.export()

out = []
for base in (10**12, 10**15, 10**17, -(10**17)):
    a = np.array([base, base + 1, base + 1], np.int64)
    b = np.array([base], np.int64)
    values = [Fraction(int(v)) for v in np.concatenate([a, b])]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    for how in (two_calls, two_processes):
        o = how(a, b)
        out.append([base, how.__name__, o["x/std"], std, o["x/mean"], float(mean)])
print(json.dumps(out))
"""


def test_jax_integer_parts_combine_without_losing_the_std(tmp_path: Path) -> None:
    """Under ``jax_enable_x64``, two int64 parts near 1e12 to 1e17 (two ``summary`` calls, or two processes of a
    global reduction): the std is the exact 0.5 (it was 2e-5 to 18 % off), the mean the exact mean rounded
    once."""
    pytest.importorskip("jax")
    script = tmp_path / "x64.py"
    script.write_text(_X64_SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    for base, how, std, exact_std, mean, exact_mean in json.loads(r.stdout):
        assert std == exact_std == 0.5, (base, how, std)
        assert mean == exact_mean, (base, how, mean, exact_mean)


def test_a_jax_integer_mean_is_the_exact_mean_rounded_once() -> None:
    """One part alone: the mean is the exact sum over the count rounded once (``Fraction``), with int32 values
    whose sum is exact in float64 the same as ``float(sum) / n``."""
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(11)
    x = rng.integers(-(2**31), 2**31 - 1, 4_001, dtype=np.int32)
    t = StatsTracker()
    t.summary("x", jax.numpy.asarray(x))
    out = t.export()
    exact = sum(int(v) for v in x)
    from fractions import Fraction

    assert out["x/mean"] == float(Fraction(exact, x.size)) == float(exact) / x.size


# -- StatsTracker: values near the float64 limit ---------------------------------------------------------------


def _two_processes(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    store: dict[int, Any] = {}

    def tracker(i: int) -> StatsTracker:
        def gather(local: Any) -> Any:
            store[i] = local
            return np.stack([store.get(0, local), store.get(1, local)])

        return StatsTracker(process_count=2, process_index=i, gather=gather)

    t0, t1 = tracker(0), tracker(1)
    t1.summary("x", b)
    t1.export()
    t0.summary("x", a)
    return t0.export()


@pytest.mark.parametrize(
    "values",
    [[1e308, -1e308], [-1e308, 1e308, 5.0], [1.7e308, 1.7e308, -1.7e308], [-1.5e308, 1e308, -1e308, 1.5e308]],
)
def test_finite_values_whose_differences_overflow_give_the_exact_mean(values: list[float]) -> None:
    """The exact mean rounded once (numpy's where its sum does not overflow: ``1.7e308`` twice is infinity to it),
    the std infinity as numpy's (the squares overflow); count, min and max exact, nothing counted as non-finite.
    The mean and std were NaN."""
    from fractions import Fraction

    x = np.array(values)
    t = StatsTracker()
    t.summary("x", x)
    with np.errstate(over="ignore"):
        std = float(np.std(x))
    out = t.export()
    assert out["x/mean"] == float(sum(map(Fraction, values), Fraction(0)) / len(values)), out
    assert out["x/std"] == std == math.inf, out
    assert (out["x/count"], out["x/min"], out["x/max"]) == (x.size, x.min(), x.max())
    assert "x/nonfinite" not in out


@pytest.mark.parametrize("combine", ["calls", "processes"])
def test_parts_whose_means_differ_beyond_float64_combine_to_their_mean(combine: str) -> None:
    """``[1e308, 1e308]`` and ``[-1e308]``: the mean 1e308 / 3 (within an ulp), the std infinity; was -inf or
    NaN."""
    a, b = np.array([1e308, 1e308]), np.array([-1e308])
    if combine == "calls":
        t = StatsTracker()
        t.summary("x", a)
        t.summary("x", b)
        out = t.export()
    else:
        out = _two_processes(a, b)
    assert out["x/mean"] == pytest.approx(1e308 / 3, rel=4e-16) and out["x/std"] == math.inf, out
    assert out["x/count"] == 3


def test_the_pivoted_precision_is_kept_beside_the_fallback() -> None:
    """``1e8 + N(0, 0.01)`` in one call: the std within 1e-13 of the exact one (the fallback is only taken where
    the differences overflow)."""
    from fractions import Fraction

    x = 1e8 + np.random.default_rng(2).normal(size=50) * 0.01
    fx = [Fraction(float(v)) for v in x]
    mean = sum(fx, Fraction(0)) / len(fx)
    std = math.sqrt(sum((v - mean) ** 2 for v in fx) / len(fx))
    t = StatsTracker()
    t.summary("x", x)
    out = t.export()
    assert abs(out["x/std"] - std) <= 1e-13 * std and abs(out["x/mean"] - float(mean)) <= 2**-52 * float(mean)


# -- the scalars reader: a time it cannot read -----------------------------------------------------------------


def test_a_time_that_is_no_number_is_said_once_per_file(tmp_path: Path) -> None:
    """Two lines with ``"time": 10**400`` and one with a text time: one warning with the count and the first line;
    their metrics kept, their time null (it was null without a word)."""
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": s, "time": 1.7e9 + s, "loss": float(s)}) for s in range(3)]
    lines += [
        json.dumps({"step": 3, "time": 10**400, "loss": 3.0}),
        '{"step": 4, "time": "late", "loss": 4.0}',
        json.dumps({"step": 5, "time": -(10**400), "loss": 5.0}),
    ]
    (run / "scalars.p0.jsonl").write_text("\n".join(lines) + "\n")
    r = open_run(run)
    frame = r.scalars.collect().sort("step")
    assert frame["value"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert frame["time"].to_list() == [1.7e9, 1.7e9 + 1, 1.7e9 + 2, None, None, None]
    said = [(p.path, p.message) for p in r.warnings if "read without a time" in p.message]
    assert said == [
        (
            "scalars.p0.jsonl",
            "3 record(s) hold a time that is no number of the float64 range, read without a time (their metrics "
            "kept; first: line 4, 'time': an int of 1329 bits, beyond the float64 range)",
        )
    ], said


def test_a_null_time_is_no_time_and_unsaid(tmp_path: Path) -> None:
    """A null is no value, as for a metric: nothing to say."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "scalars.p0.jsonl").write_text('{"step": 0, "time": null, "loss": 1.0}\n{"step": 1, "loss": 2.0}\n')
    r = open_run(run)
    assert not [p for p in r.warnings if "time" in p.message]


# -- config ----------------------------------------------------------------------------------------------------


def _written(tmp_path: Path, config: Any) -> Any:
    path = tmp_path / "run"
    with RunWriter(path, name="r", config=config, durable=False, clock=lambda: 1.7e9):
        pass
    return json.loads((path / "run.json").read_text())["config"]


def test_durations_are_written_as_their_seconds(tmp_path: Path) -> None:
    """``timedelta`` and numpy ``timedelta64`` (any fixed unit, arrays too) as seconds; a ``timedelta64[ns]`` was
    written as its count of nanoseconds (5 for 5 ns), a ``timedelta`` refused."""
    config = {
        "timeout": datetime.timedelta(minutes=30),
        "tick": datetime.timedelta(microseconds=1),
        "ns": np.timedelta64(5, "ns"),
        "hours": np.array([1, 2], dtype="m8[h]"),
        "tens": np.timedelta64(3, "10ms"),
        "zero_d": np.array(np.timedelta64(3, "ms")),
        "none": np.timedelta64("NaT", "s"),
        "long": np.timedelta64(2**62 + 1, "ns"),
    }
    assert _written(tmp_path, config) == {
        "timeout": 1800.0,
        "tick": 1e-6,
        "ns": 5e-9,
        "hours": [3600.0, 7200.0],
        "tens": 0.03,
        "zero_d": 0.003,
        "none": "NaN",
        "long": float((2**62 + 1) / 10**9),  # exact division rounded once: Python's int / int
    }


@pytest.mark.parametrize("value, unit", [(np.timedelta64(3, "M"), "'M'"), (np.timedelta64(3), "'generic'")])
def test_durations_without_a_fixed_length_are_refused(tmp_path: Path, value: Any, unit: str) -> None:
    with pytest.raises(UsageError, match=f"config\\['d'\\] is .* a duration in {unit} units"):
        _written(tmp_path, {"d": value})
    assert not (tmp_path / "run").exists()


def test_decimals_keep_every_digit(tmp_path: Path) -> None:
    """An integer as an int, a decimal float64 spells as that float, any other as its text."""
    config = {
        "lr": Decimal("0.1"),
        "fine": Decimal("0.1000000000000000000001"),
        "n": Decimal("3E+2"),
        "neg": Decimal("-7"),
        "three": Decimal("3.0"),
        "big": Decimal("1E+30"),
        "huge": Decimal("1E+400"),
        "nan": Decimal("NaN"),
        "minf": Decimal("-Infinity"),
    }
    assert _written(tmp_path, config) == {
        "lr": 0.1,
        "fine": "0.1000000000000000000001",
        "n": 300,
        "neg": -7,
        "three": 3.0,
        "big": 1e30,
        "huge": "1E+400",
        "nan": "NaN",
        "minf": "-Infinity",
    }


def test_ranges_are_written_as_lists(tmp_path: Path) -> None:
    assert _written(tmp_path, {"layers": range(3), "down": range(10, 0, -3)}) == {
        "layers": [0, 1, 2],
        "down": [10, 7, 4, 1],
    }


def test_a_long_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"config\['r'\] is range\(0, 1000000\) of 1,000,000 numbers"):
        _written(tmp_path, {"r": range(10**6)})


def test_numpy_keys_become_their_json_text(tmp_path: Path) -> None:
    """``np.int64(3)`` as ``"3"`` (it was refused: "config keys are str"), with the check of keys of one text."""
    config = {"layers": {np.int64(3): "attn", np.int32(4): "mlp"}, np.bool_(True): 1, np.float32(0.5): 2}
    assert _written(tmp_path, config) == {"layers": {"3": "attn", "4": "mlp"}, "true": 1, "0.5": 2}
    with pytest.raises(UsageError, match=r"has the keys np.int64\(1\) and '1', which are both '1' in JSON"):
        _written(tmp_path, {np.int64(1): "a", "1": "b"})
