"""The percentile bootstrap of a diff: seeded streams, replicates of column means, intervals, verdicts.

A replicate resamples a column's units (samples, prompt groups, prompts, steps) with replacement, as many as
there are, and takes the mean of the valid values drawn. A unit may stand for several values (a prompt group's
samples, resampled together: ``weights``): it is then given as their mean and their number, and a replicate is
the mean over the values of the units drawn (each unit's mean weighed by its number). Two exact routes to the
same replicates:

- **Few distinct values** (a 0/1 column such as zero_adv_frac, a binary reward): how often each distinct
  value (and NaN) is drawn is multinomial with the values' frequencies, so a replicate is one multinomial
  draw of a few counts instead of ``n`` draws of units.
- **Otherwise**: a count matrix (how often each unit is drawn, per replicate), built in cache-sized chunks
  and shared by every such column of the same length, times the values.

Rounding is no difference: a replicate is computed relative to a reference (by value: the least value; by
count matrix: the column's mean, in units of its spread), so that a constant column gives its value back
exactly and a column far from 0 keeps its spread in float32 sums (``valid_mean`` takes the point likewise).

Each column's replicates are a bootstrap of its own values; columns of one call may share draws (they are
correlated), which no interval depends on: every interval is of a difference between runs, whose streams are
independent (``rng``), or of one column.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

# Unit draws per chunk of the count matrix (int64 indices, then counts): a few MB, so that drawing and counting
# stay in cache; much smaller chunks make the product slow (a BLAS call per few dozen replicates).
CHUNK_CELLS = 1 << 20
# From this many units on, the count matrix is counted one replicate at a time (cache-sized rows).
ROW_BY_ROW = 256
# A column with at most this many distinct finite values is resampled by value (multinomial), not by unit.
DISCRETE_VALUES = 64
# An interval needs at least this many valid units on each side.
MIN_UNITS = 2
# A difference within this many units of the last place (``np.finfo(float).eps``, relative) of the larger magnitude
# of the two values compared is rounding, not a difference: a tie (``rounding``, ``verdict``). Sums of the same
# values in another order, or a shard's mean taken as ``v * w / w``, differ by an ulp or two.
TIE_ULPS = 8
# The sign-flip test (``sign_flip_p``) is exact (every one of the 2^n sign assignments) up to this many
# differences, and a seeded Monte Carlo of ``FLIPS`` assignments beyond.
EXACT_FLIPS = 16  # two blocks of 8 (``sign_flip_p``)
FLIPS = 10_000
# The two-sample permutation test (``permutation_p``) is exact (every split of the units between the runs) up to
# this many splits, and a seeded Monte Carlo of ``PERMS`` splits beyond (or 20 / (1 - level), if more: its least p
# is 1 / (1 + PERMS)), run only where the interval excludes 0 (where it decides the verdict: a Monte Carlo of
# 10,000 splits of 160 units took 0.25 s a figure). It is run where the two runs have at most
# ``PERMUTED_UNITS`` units together, or the smaller side at most ``FEW_UNITS``: its cost grows with the units, and
# beyond, a bootstrap is near its level (null pairs of 40 and 80 prompts a side: 5 % called at 95 % by the interval
# alone, against 32, 22 and 13 % at 2, 3 and 4 a side).
EXACT_SPLITS = 1 << 16
PERMS = 2_000
PERMUTED_UNITS = 200
FEW_UNITS = 20


def rng_for(seed: int, *parts: Any) -> np.random.Generator:
    """A generator seeded by ``seed`` and ``parts`` (a run index, a split, a window): each resampling has its
    own stream, so an interval does not depend on what else was computed, nor in which order."""
    words = [int(seed) & 0xFFFFFFFF]
    for p in parts:
        words.append(p & 0xFFFFFFFF if isinstance(p, int) else zlib.crc32(repr(p).encode()))
    return np.random.default_rng(np.random.SeedSequence(words))


def bootstrap_means(
    values: np.ndarray, boot: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """``boot`` bootstrap replicates of the mean of each column of ``values`` (rows: the units resampled, with
    replacement; NaN: a unit without a valid value in that column, which a replicate leaves out, so each
    column's replicate is the mean of its valid resampled values). ``weights`` (the shape of ``values``, or
    None: 1 each): how many values each unit's value is the mean of (a prompt group's samples), so that a
    replicate is the mean over the values drawn, not over the units. Shape ``(boot, columns)``; NaN where a
    replicate drew no valid value. Deterministic given ``rng``'s state (module docstring: the two routes)."""
    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float).reshape(x.shape)
    n, m = x.shape
    out = np.full((boot, m), np.nan)
    if n == 0:
        return out
    by_unit = []
    for j in range(m):
        distinct = _distinct(x[:, j], w[:, j])
        if distinct is None:
            by_unit.append(j)
        else:
            out[:, j] = _by_value(x[:, j], distinct, boot, rng)
    if by_unit:
        out[:, by_unit] = _by_unit(x[:, by_unit], w[:, by_unit], boot, rng)
    return out


def _distinct(col: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The column's distinct (finite value, weight) pairs (weight: 1 each by default), sorted by value then
    weight (as two arrays), and the pair of each finite unit, when there are at most ``DISCRETE_VALUES``; else
    None."""
    finite = np.isfinite(col)
    weight = np.ones_like(col) if weight is None else weight
    keys = col[finite] + 1j * weight[finite]  # a complex number sorts by its real part, then its imaginary one
    if len(keys) == 0:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    # A cheap look first: a continuous column shows many values among its first few hundred.
    if len(np.unique(keys[: 4 * DISCRETE_VALUES])) > DISCRETE_VALUES:
        return None
    distinct, which = np.unique(keys, return_inverse=True)
    if len(distinct) > DISCRETE_VALUES:
        return None
    return distinct.real.copy(), distinct.imag.copy(), which.ravel()


def _by_value(
    col: np.ndarray, distinct: tuple[np.ndarray, np.ndarray, np.ndarray], boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Replicates of a column with few distinct (value, weight) pairs: the counts of each pair (and of NaN,
    the last category) in a resample of ``n`` units are multinomial with the pairs' frequencies."""
    n = len(col)
    values, weights, which = distinct
    if len(values) == 0:
        return np.full(boot, np.nan)
    p = np.append(np.bincount(which, minlength=len(values)), n - len(which)) / n
    draws = rng.multinomial(n, p, size=boot)[:, : len(values)].astype(float)
    hits = draws @ weights
    # Relative to the least value: a constant column gives that value back exactly (as ``valid_mean`` does),
    # not ``hits * v / hits``, whose rounding would be a difference between two runs of the same values.
    ref = values[0]
    # Values near the float64 limit (1e308 beside -1e308) overflow here: replicates that are not finite, which
    # ``interval`` leaves out (the caller says so), not a raw RuntimeWarning on stderr.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        sums = draws @ (weights * (values - ref))
        return np.where(hits > 0, ref + sums / np.where(hits > 0, hits, 1.0), np.nan)


def _by_unit(x: np.ndarray, w: np.ndarray, boot: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates by a count matrix shared by the columns of ``x`` (``w``: the units' weights), chunk by
    chunk."""
    n, m = x.shape
    valid = np.isfinite(x)
    weight = np.where(valid, w, 0.0)
    # One product gives each replicate's weighted sums (the first m columns) and its numbers of valid values
    # drawn (one column per distinct pattern of weights: of invalid units, of group sizes; a column whose every
    # unit is one valid value has n every time). float32 holds the counts exactly, and the sums to 7 digits,
    # more than an interval's ends are shown with.
    hit_col = np.full(m, -1)
    seen: dict[bytes, int] = {}
    for j in np.flatnonzero(~(weight == 1.0).all(axis=0)):
        hit_col[j] = m + seen.setdefault(weight[:, j].tobytes(), len(seen))
    patterns = weight[:, [int(np.flatnonzero(hit_col == m + k)[0]) for k in range(len(seen))]]
    # float32 values centred on each column's mean and scaled by its spread: a replicate is then exact to 7
    # digits of the spread (not of the magnitude: 12345678.9 + noise keeps its noise; 1e300 does not overflow).
    ref, scale = _centre_and_scale(x, valid)
    scaled = np.where(valid, weight * (np.where(valid, x, 0.0) - ref) / scale, 0.0)
    both = np.hstack([scaled, patterns]).astype(np.float32)
    out = np.empty((boot, m))
    chunk = max(1, CHUNK_CELLS // n)
    counts = np.empty((min(chunk, boot), n), dtype=np.float32)
    offsets = (np.arange(chunk, dtype=np.int64) * n)[:, None] if n < ROW_BY_ROW else None
    for b0 in range(0, boot, chunk):
        b = min(chunk, boot - b0)
        idx = rng.integers(0, n, size=(b, n))  # int64: what bincount counts without a copy
        if offsets is None:
            # One replicate's counts at a time: a row stays in cache, where one bincount over the whole chunk
            # (indices offset by row) scatters over megabytes, 4x slower at 5,000 units.
            for r in range(b):
                counts[r] = np.bincount(idx[r], minlength=n)
        else:  # few units: one call for the chunk (a call per replicate would cost more than the counting)
            idx += offsets[:b]
            counts[:b] = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        prod = (counts[:b] @ both).astype(float)
        sums = prod[:, :m]
        hits = np.where(hit_col >= 0, prod[:, np.maximum(hit_col, 0)], float(n))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b0 : b0 + b] = np.where(hits > 0, ref + scale * (sums / np.where(hits > 0, hits, 1.0)), np.nan)
    return out


def _centre_and_scale(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the mean of its valid values and the largest distance of one from it (1 where none)."""
    m = x.shape[1]
    ref, scale = np.zeros(m), np.ones(m)
    for j in range(m):
        v = x[valid[:, j], j]
        if len(v):
            c = valid_mean(v)
            ref[j] = c if c is not None and np.isfinite(c) else 0.0
            with np.errstate(over="ignore"):
                spread = float(np.max(np.abs(v - ref[j])))
            if spread > 0 and np.isfinite(spread):
                scale[j] = spread
            elif spread > 0:  # a range wider than the floats: halves, exactly
                ref[j] = 0.0
                scale[j] = float(np.max(np.abs(v)))
    return ref, scale


def interval(reps: np.ndarray, level: float, *units: int) -> tuple[float | None, float | None]:
    """The percentile interval of ``reps`` at ``level``; None, None when no replicate is finite, or when a
    side has fewer than ``MIN_UNITS`` valid units (``units``: each side's): resampling one value gives it back
    every time, an interval of width 0 that would call any difference certain."""
    if any(n < MIN_UNITS for n in units):
        return None, None
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return None, None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)


def rounding(*magnitudes: Any) -> float:
    """The round-off of values of these magnitudes: ``TIE_ULPS`` ulps of the largest (0 where none is finite, or
    all are 0). A difference of two values within it is a tie: what summing the same values in another order, or
    a weighted mean of one value (``0.1 * 3 / 3``), leaves behind."""
    finite = [abs(float(m)) for m in magnitudes if m is not None and math.isfinite(m)]
    return TIE_ULPS * float(np.finfo(float).eps) * max(finite, default=0.0)


def verdict(
    lo: float | None,
    hi: float | None,
    up: str = "ahead",
    down: str = "behind",
    of: Sequence[float | None] = (),
) -> str | None:
    """``up`` when the interval lies above 0, ``down`` below, else ``tie`` (None without an interval). ``of``: the
    values compared (the two means): an interval whose end lies within their ``rounding`` of 0 covers 0 (a constant
    column's width-0 interval of ``0.1 - 0.10000000000000002`` is no difference)."""
    if lo is None or hi is None:
        return None
    tol = rounding(*of)
    if lo > tol:
        return up
    if hi < -tol:
        return down
    return "tie"


def sign_flip_p(d: np.ndarray, rng: np.random.Generator | None = None) -> float:
    """The two-sided p-value of a paired randomisation (sign-flip) test of the mean of the differences ``d``
    (finite): under no difference, each prompt's difference is as likely to have either sign, so the share of the
    2^n sign assignments whose ``|sum|`` reaches the observed one is exact (a zero difference flips to itself).
    Exact up to ``EXACT_FLIPS`` differences; beyond, ``FLIPS`` assignments drawn from ``rng`` (a seeded stream:
    deterministic; default seed 0), the observed one counted among them ((1 + k) / (1 + FLIPS): never 0).

    Why beside the bootstrap interval: a percentile bootstrap of a mean of 2 to 10 prompts is far too narrow
    (three prompts all won gave an interval above 0, though their signs alone have a chance of 1 in 4 under no
    difference; null pairs of 3 to 10 prompts were called ahead or behind 18-25 % of the time at 95 %). The
    least p of n differences is 2 / 2^n: below 6 prompts, no verdict at 95 % (``min_flip_prompts``)."""
    x = np.asarray(d, dtype=float)
    x = np.sort(x[x != 0])
    n = len(x)
    if n == 0:
        return 1.0
    # An assignment is a byte per 8 differences (a bit set: that one flipped), and the sum it gives is the total
    # less twice the sum of those it flips, looked up per byte (``flipped``: per block of 8, the sum each of the
    # 256 bytes flips; the padding's zeros flip to themselves, so every assignment of the n is drawn as often).
    blocks = (n + 7) // 8
    padded = np.zeros(blocks * 8)
    padded[:n] = x
    bit = (np.arange(256)[:, None] >> np.arange(8)) & 1
    flipped = padded.reshape(blocks, 8) @ bit.T.astype(float)  # (blocks, 256)
    total = float(np.sum(x))
    # The same magnitudes summed in another order (the observed sum, and its mirror looked up) differ by rounding,
    # up to a few n ulps of the sum of the magnitudes: an assignment within that of the observed sum reaches it
    # (the test errs towards a larger p, never a smaller one).
    reach = abs(total) - 4 * (n + TIE_ULPS) * float(np.finfo(float).eps) * float(np.sum(np.abs(x)))
    if n <= EXACT_FLIPS:  # every assignment: one block's 256 bytes, or two blocks' 65,536 pairs of bytes
        sums = flipped[0] if blocks == 1 else (flipped[0][:, None] + flipped[1][None, :]).ravel()
        return float(np.count_nonzero(np.abs(total - 2.0 * sums) >= reach) / len(sums))
    rng = np.random.default_rng(0) if rng is None else rng
    hits = 0
    rows = max(1, min(FLIPS, CHUNK_CELLS // blocks))  # a few MB at a time
    for start in range(0, FLIPS, rows):
        b = min(rows, FLIPS - start)
        drawn = rng.integers(0, 256, size=(b, blocks), dtype=np.uint8)
        sums = total - 2.0 * flipped[np.arange(blocks), drawn].sum(axis=1)
        hits += int(np.count_nonzero(np.abs(sums) >= reach))
    return (1 + hits) / (1 + FLIPS)


def min_flip_prompts(level: float) -> int:
    """The fewest non-zero differences whose sign-flip test can reach ``p <= 1 - level`` (all of one sign: p = 2 /
    2^n): 6 at 95 %, 8 at 99 %. Fewer can give no paired verdict whatever their values."""
    n = 1
    while 2.0 / 2**n > 1 - level + 1e-12:
        n += 1
    return n


def least_permutation_p(n_a: int, n_b: int) -> float:
    """The least two-sided p a permutation test of ``n_a`` and ``n_b`` units can give: the observed split of the
    units between the runs is one of C(n_a + n_b, n_a), and with ``n_a == n_b`` its mirror (the runs swapped, the
    difference negated) reaches it too. Where it is above ``1 - level``, no data of so few units can back a
    verdict: 3 and 3 units give 2 / C(6, 3) = 0.1, 4 and 4 give 2 / 70 = 0.029 (``backed_verdict``)."""
    return (2 if n_a == n_b else 1) / math.comb(n_a + n_b, n_a)


def permutation_p(
    a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray, rng: np.random.Generator, draws: int = PERMS
) -> float | None:
    """The two-sided p-value of a two-sample permutation test of the difference of the runs' means: under no
    difference, the units (``a``, ``b``: each unit's mean, finite; ``wa``, ``wb``: how many values it is the mean
    of, as the bootstrap weighs them) are exchangeable between the runs, so the share of the splits of them into
    two sets of their sizes whose difference of weighted means reaches the observed one in magnitude is the p.
    Exact (every split) up to ``EXACT_SPLITS`` splits; beyond, ``draws`` splits drawn from ``rng`` (seeded:
    deterministic), the observed one counted among them ((1 + k) / (1 + draws): never 0, and a valid p whatever
    the number of draws). None where it is not run: ``draws`` 0 beyond the exact route, or more than
    ``PERMUTED_UNITS`` units together and more than ``FEW_UNITS`` on each side (the bootstrap alone decides there).

    Why beside the bootstrap interval: a percentile bootstrap of the means of a few units is far too narrow (a
    side of two prompts of equal means has no spread at all; null pairs of 2, 3 and 4 prompts a side were called
    ahead or behind 32, 22 and 13 % of the time at 95 %, each run its own prompts)."""
    n_a, n_b = len(a), len(b)
    n, k = n_a + n_b, min(n_a, n_b)
    if k == 0 or (n > PERMUTED_UNITS and k > FEW_UNITS):
        return None
    # The smaller side is the subset drawn (the other is the rest): values centred on the pooled mean, so that
    # values far from 0 (12345678.9 + noise) keep their differences in the sums.
    small = (a, wa) if n_a <= n_b else (b, wb)
    rest = (b, wb) if n_a <= n_b else (a, wa)
    x = np.concatenate([small[0], rest[0]])
    w = np.concatenate([small[1], rest[1]]).astype(float)
    ref = valid_mean(x)
    x = x - (ref if ref is not None and math.isfinite(ref) else 0.0)
    wx = w * x
    total_w, total_wx = float(np.sum(w)), float(np.sum(wx))

    def gap(sw: np.ndarray, swx: np.ndarray) -> np.ndarray:  # |mean of the subset - mean of the rest|
        return np.abs(swx / sw - (total_wx - swx) / (total_w - sw))

    observed = float(gap(np.array([np.sum(w[:k])]), np.array([np.sum(wx[:k])]))[0])
    # Sums of the same values in another order differ by rounding: a split within a few n ulps of the values'
    # magnitude of the observed difference reaches it (the test errs towards a larger p, never a smaller one).
    reach = observed - 4 * (n + TIE_ULPS) * float(np.finfo(float).eps) * float(np.max(np.abs(x)))
    splits = math.comb(n, k)
    if splits <= EXACT_SPLITS:
        idx = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), np.int64, splits * k)
        idx = idx.reshape(splits, k)
        return float(np.count_nonzero(gap(w[idx].sum(axis=1), wx[idx].sum(axis=1)) >= reach) / splits)
    if draws <= 0:
        return None
    hits = 0
    rows = max(1, min(draws, CHUNK_CELLS // n))  # a few MB at a time
    for start in range(0, draws, rows):
        idx = _subsets(n, k, min(rows, draws - start), rng)
        hits += int(np.count_nonzero(gap(w[idx].sum(axis=1), wx[idx].sum(axis=1)) >= reach))
    return (1 + hits) / (1 + draws)


def _subsets(n: int, k: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` subsets of ``k`` of ``range(n)``, each drawn uniformly, as the rows of an index matrix. Few of
    many (k^2 <= n): k draws with replacement, the rows with a repeat drawn again (each is uniform given no repeat;
    fewer than 4 in 10 repeat); else the k least of n random keys per row."""
    if k * k <= n:
        out = np.sort(rng.integers(0, n, size=(rows, k)), axis=1)
        again = np.flatnonzero((np.diff(out, axis=1) == 0).any(axis=1))
        while len(again):
            out[again] = np.sort(rng.integers(0, n, size=(len(again), k)), axis=1)
            again = again[(np.diff(out[again], axis=1) == 0).any(axis=1)]
        return out
    return np.argpartition(rng.random((rows, n)), k - 1, axis=1)[:, :k]


def backed_verdict(
    lo: float | None,
    hi: float | None,
    level: float,
    units: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    words: tuple[str, str] = ("ahead", "behind"),
    of: Sequence[float | None] = (),
) -> tuple[str | None, float | None, str | None]:
    """The verdict of an unpaired difference (``verdict`` of its interval), backed by a permutation test of the
    runs' units (``units``: per run, the units' means and weights; ``permutation_p``), and its p; and why it is
    not the interval's alone: ``"few"`` where so few units could never reach ``p <= 1 - level``
    (``least_permutation_p``: no verdict, None), ``"unsure"`` where the interval excludes 0 but the test's p is
    above ``1 - level`` (``tie``); else None. Without an interval: no verdict, no p. The p is exact wherever the
    splits are few (``EXACT_SPLITS``); the Monte Carlo's is drawn only where the interval excludes 0 and the units
    could reach the level (elsewhere the verdict does not depend on it: None)."""
    word = verdict(lo, hi, *words, of=of)
    if word is None:
        return None, None, None
    (a, wa), (b, wb) = units
    few = least_permutation_p(len(a), len(b)) > 1 - level + 1e-12
    draws = max(PERMS, math.ceil(20 / (1 - level))) if word != "tie" and not few else 0
    p = permutation_p(a, wa, b, wb, rng, draws)
    if few:
        return None, p, "few"
    if word != "tie" and p is not None and p > 1 - level:
        return "tie", p, "unsure"
    return word, p, None


# What a diff's units are, said where too few of them give no verdict (``few_units_notes``).
UNITS_ARE = "the prompts, prompt groups, or samples where no group is known, that the interval resamples"


def few_units_notes(who: str, few: dict[tuple[int, int], list[str]], level: float, units_are: str) -> list[str]:
    """Per number of units on each side (``few``: the figures that have them), why those figures have no verdict:
    a permutation test of so few units cannot reach ``p <= 1 - level`` (``least_permutation_p``), so
    neither can any honest test; the means and interval are kept."""
    out = []
    for (n_a, n_b), what in few.items():
        share = "2" if n_a == n_b else "1"
        out.append(
            f"{who}: {', '.join(what)}: {n_a} and {n_b} unit(s) ({units_are}): too few for a verdict at {level:.0%} "
            f"(a permutation test of {n_a} and {n_b} units cannot reach p <= {1 - level:.2g}: its least p is "
            f"{share} / C({n_a + n_b}, {min(n_a, n_b)}) = {least_permutation_p(n_a, n_b):.3g}): no verdict (the "
            "means and interval are kept; a percentile bootstrap of so few units is too narrow)"
        )
    return out


def valid_count(x: np.ndarray) -> int:
    """The column's valid values: not NaN (±inf are values, as ``summarize``'s ``reward_count`` counts them)."""
    return int(np.count_nonzero(~np.isnan(x)))


def valid_mean(x: np.ndarray) -> float | None:
    """The mean of the column's valid values (``valid_count``), as ``summarize`` takes it: ±inf are values, so
    the mean of a column holding them is +inf, -inf, or NaN where it holds both; None without a valid value.

    Computed so that rounding is no difference: relative to the least value (a constant column gives that
    value back exactly, whatever the number of values: 1e300 + 0.001 stays 1e300, and identical KL values in
    runs of different sizes have a difference of exactly 0), the sum of the distances pairwise (numpy), the
    result within the values' range. The values are summed in sorted order, so that equal data in any order (a
    shard written in another order, a run re-read from an object store) gives the same mean, bit for bit."""
    v = np.sort(x[~np.isnan(x)])
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        with np.errstate(invalid="ignore"):
            return float(lo + hi)  # -inf + (finite or -inf), (finite or inf) + inf, or both signs: NaN
    if lo == hi:
        return lo
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(v - lo))
        if not np.isfinite(total):  # distances beyond the floats' range: the values scaled down, exactly
            k = 2.0**-64
            return float(min(max(float(np.sum(v * k) / len(v)) / k, lo), hi))
    return float(min(max(lo + total / len(v), lo), hi))
