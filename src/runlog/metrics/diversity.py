"""Diversity of sets of texts: distinct-n (two definitions), n-gram entropy, Self-BLEU, self-repetition,
compression ratios, unique fraction and lengths. Definitions and references: docs/metrics.md.

Each metric equals its reference implementation (tests/test_metrics_diversity.py checks them to 1e-9):

- ``distinct_n``: distinct n-grams of the set / all n-grams of the set (DialoGPT ``cal_entropy`` "div");
- ``distinct_li2016_n``: distinct n-grams of the set / all tokens of the set (Li et al. 2016); null, as
  ``distinct_n``, where the set has no n-gram of that order;
- ``entropy_n``: entropy (natural log) of the pooled n-gram distribution (DialoGPT ``cal_entropy``);
- ``self_bleu_n``: Texygen's Self-BLEU with nltk ``sentence_bleu`` (method1 smoothing), each text against
  all the other texts of its set, averaged;
- ``self_repetition``: ``diversity.self_repetition_score(n=4)`` (Shaib et al. 2024);
- ``compression_ratio``: ``diversity.compression_ratio(texts, "xz")`` before its rounding to 3 decimals;
  ``compression_ratio_gzip``: the same with ``gzip.compress(mtime=0)``, which is deterministic.

The work for many sets is done at once (``diversity_by_set``): one tokenisation, one n-gram engine pass.
"""

from __future__ import annotations

import gzip
import lzma
import math
import operator
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._lazy import pl
from ._ngrams import SetStats, ngram_stats
from ._tokens import tokenize

ORDERS = (1, 2, 3, 4)
BLEU_ORDERS = (2, 3, 4)
EPSILON = 0.1  # nltk SmoothingFunction().method1's default epsilon

NGRAM_COLUMNS = (
    [f"distinct_{n}" for n in ORDERS]
    + [f"distinct_li2016_{n}" for n in ORDERS]
    + [f"entropy_{n}" for n in ORDERS]
    + [f"self_bleu_{n}" for n in BLEU_ORDERS]
    + ["self_repetition"]
)
BASIC_COLUMNS = ["texts", "unique_frac", "len_mean", "len_median"]
COMPRESSION_COLUMNS = ["compression_ratio", "compression_ratio_gzip"]


def closest_ref_lengths(lengths: np.ndarray, set_of_text: np.ndarray) -> np.ndarray:
    """nltk's ``closest_ref_length`` for every text against the *other* texts of its set: the length
    nearest to its own, ties to the shorter; -1 for a text alone in its set."""
    m = lengths.size
    out = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return out
    order = np.lexsort((lengths, set_of_text))
    ls, ss = lengths[order], set_of_text[order]
    same_prev = np.zeros(m, bool)
    same_prev[1:] = ss[1:] == ss[:-1]
    same_next = np.zeros(m, bool)
    same_next[:-1] = same_prev[1:]
    prev_len = np.where(same_prev, np.roll(ls, 1), -1)
    next_len = np.where(same_next, np.roll(ls, -1), -1)
    equal = (same_prev & (prev_len == ls)) | (same_next & (next_len == ls))
    d_prev = np.where(same_prev, ls - prev_len, np.iinfo(np.int64).max)
    d_next = np.where(same_next, next_len - ls, np.iinfo(np.int64).max)
    pick = np.where(d_prev <= d_next, prev_len, next_len)  # ties to the shorter reference
    res = np.where(equal, ls, pick)
    res = np.where(same_prev | same_next, res, -1)
    out[order] = res
    return out


def self_bleu_per_text(stats: SetStats, n: int) -> np.ndarray:
    """nltk ``sentence_bleu(others, text, weights=(1/n,)*n, smoothing_function=method1)`` per text; NaN
    for a text alone in its set (nltk raises there: there is no reference)."""
    lengths = stats.lengths
    ref = closest_ref_lengths(lengths, stats.set_of_text)
    hyp = lengths.astype(np.float64)
    log_sum = np.zeros(lengths.size)
    for i in range(1, n + 1):
        num = stats.clipped[i].astype(np.float64)
        den = np.maximum(1, lengths - i + 1).astype(np.float64)
        p = np.where(num > 0, num, EPSILON) / den
        log_sum = log_sum + (1.0 / n) * np.log(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        bp = np.where(hyp > ref, 1.0, np.exp(1.0 - ref / hyp))
    bp = np.where(hyp == 0, 0.0, bp)
    bleu = np.where(stats.clipped[1] == 0, 0.0, bp * np.exp(log_sum))
    return np.where(ref < 0, np.nan, bleu)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _set_mean(values: np.ndarray, sets: np.ndarray, n_sets: int) -> np.ndarray:
    ok = ~np.isnan(values)
    s = np.bincount(sets[ok], weights=values[ok], minlength=n_sets)
    c = np.bincount(sets[ok], minlength=n_sets)
    return _ratio(s, c)


def _compress(text_bytes: bytes) -> tuple[int, int, int]:
    return len(text_bytes), len(lzma.compress(text_bytes)), len(gzip.compress(text_bytes, mtime=0))


def compression_sizes(texts: pl.Series, set_of_text: np.ndarray, n_sets: int, threads: int = 2) -> np.ndarray:
    """(original, xz, gzip) byte sizes of each set's texts joined by one space, as the ``diversity``
    package writes them. lzma and zlib release the GIL, so sets are compressed on ``threads`` threads."""
    frame = pl.DataFrame({"s": set_of_text, "t": texts}).group_by("s", maintain_order=True).agg(pl.col("t"))
    joined = {s: " ".join(t).encode("utf-8") for s, t in frame.iter_rows()}
    sizes = np.zeros((n_sets, 3), dtype=np.int64)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for s, res in zip(joined, pool.map(_compress, joined.values()), strict=True):
            sizes[s] = res
    return sizes


# Texts measured in one pass of the n-gram engine at most: past it, the sets are measured in slices of whole
# sets (each set's figures are its own texts'), so that memory stays bounded (the engine's arrays take about
# 3 KB a text of 500 characters: the per-role texts of a million-sample run would take 10 GB at once).
CHUNK_TEXTS = 200_000


def diversity_by_set(
    texts: pl.Series,
    set_of_text: np.ndarray,
    n_sets: int,
    *,
    compression: bool = False,
    threads: int = 2,
) -> pl.DataFrame:
    """Every diversity metric for ``n_sets`` sets at once; row s describes the texts with
    ``set_of_text == s``. Metrics that are undefined for a set (no n-grams, a set of one text for
    Self-BLEU, no text at all) are null. More than ``CHUNK_TEXTS`` texts are measured in slices of whole sets
    (``_sliced``)."""
    set_of_text = np.asarray(set_of_text, dtype=np.int64)
    if len(set_of_text) > CHUNK_TEXTS:
        return _sliced(texts, set_of_text, n_sets, compression, threads)
    return _by_set(texts, set_of_text, n_sets, compression, threads)


def _sliced(texts: pl.Series, set_of_text: np.ndarray, n_sets: int, compression: bool, threads: int) -> pl.DataFrame:
    """``_by_set`` over runs of consecutive set numbers holding at most ``CHUNK_TEXTS`` texts (a set larger than
    that alone), each set's texts in their order: the same figures, within rounding (a set's sums may add its
    n-grams in another order)."""
    sizes = np.bincount(set_of_text, minlength=n_sets)
    order = np.argsort(set_of_text, kind="stable")  # the texts of each set together, in their order
    ends = np.cumsum(sizes)
    parts = []
    first = 0
    while first < n_sets:
        last = int(np.searchsorted(ends, ends[first] - sizes[first] + CHUNK_TEXTS, side="right"))
        last = max(last, first + 1)  # a set larger than a slice is a slice of its own
        lo, hi = int(ends[first] - sizes[first]), int(ends[last - 1])
        rows = order[lo:hi]
        part = _by_set(texts.gather(rows), set_of_text[rows] - first, last - first, compression, threads)
        parts.append(part.with_columns(pl.col("s") + first))
        first = last
    return pl.concat(parts)


def _by_set(texts: pl.Series, set_of_text: np.ndarray, n_sets: int, compression: bool, threads: int) -> pl.DataFrame:
    tokens = tokenize(texts)
    stats = ngram_stats(tokens, set_of_text, n_sets, max_n=4, clipped=True, rep_n=4)
    lengths = tokens.lengths
    n_texts = np.bincount(set_of_text, minlength=n_sets)
    words = np.bincount(set_of_text, weights=lengths, minlength=n_sets)
    cols: dict[str, np.ndarray] = {}
    for n in ORDERS:
        total = stats.total[n].astype(np.float64)
        cols[f"distinct_{n}"] = _ratio(stats.unique[n].astype(np.float64), total)
        # Null where the set has no n-gram of this order, as distinct_n (not 0 / tokens = 0, which reads as
        # total collapse and, averaged over groups, would pull the mean down where distinct_n skips the group).
        cols[f"distinct_li2016_{n}"] = np.where(total > 0, _ratio(stats.unique[n].astype(np.float64), words), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = np.log(total) - stats.clogc[n] / total
        cols[f"entropy_{n}"] = np.where(total > 0, np.maximum(ent, 0.0), np.nan)
    for n in BLEU_ORDERS:
        cols[f"self_bleu_{n}"] = _set_mean(self_bleu_per_text(stats, n), set_of_text, n_sets)
    rep_sum = stats.rep_sum
    assert rep_sum is not None  # asked for with rep_n
    cols["self_repetition"] = _ratio(np.bincount(set_of_text, weights=np.log(rep_sum + 1.0), minlength=n_sets), n_texts)
    frame = pl.DataFrame({"s": set_of_text, "t": texts, "len": lengths})
    basic = frame.group_by("s").agg(
        pl.len().alias("texts"),
        (pl.col("t").n_unique() / pl.len()).alias("unique_frac"),
        pl.col("len").mean().alias("len_mean"),
        pl.col("len").median().cast(pl.Float64).alias("len_median"),
    )
    out = pl.DataFrame({"s": np.arange(n_sets, dtype=np.int64), **cols})
    out = out.join(basic, on="s", how="left").with_columns(pl.col("texts").fill_null(0).cast(pl.Int64))
    if compression:
        sizes = compression_sizes(texts, set_of_text, n_sets, threads)
        out = out.with_columns(
            pl.Series("compression_ratio", _ratio(sizes[:, 0].astype(float), sizes[:, 1].astype(float))),
            pl.Series("compression_ratio_gzip", _ratio(sizes[:, 0].astype(float), sizes[:, 2].astype(float))),
        )
    metric_cols = BASIC_COLUMNS + NGRAM_COLUMNS + (COMPRESSION_COLUMNS if compression else [])
    return out.sort("s").select("s", *metric_cols).fill_nan(None)


# ---------------------------------------------------------------------------------------------------------
# One set of texts: the same numbers for a plain list (what the tests compare with the references)
# ---------------------------------------------------------------------------------------------------------
def _texts(texts: Iterable[str | None]) -> list[str]:
    """``texts`` as the metrics read them, the way ``runlog metrics`` reads a run's: a missing text (None, a float
    NaN of any width, Python's or NumPy's, or pandas' NA: a missing value of a frame's column) is no text and is
    skipped, not measured as an empty one (``""`` is a text: a generation cut off before its first word). A bare
    ``str`` (or bytes) is refused: iterated, it would be measured as one text per character; any other value than a
    string is refused too."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(
            f"texts must be a sequence of strings, not a bare {type(texts).__name__} (one text: pass [text])"
        )
    out = []
    for i, t in enumerate(texts):
        # Any float NaN, NumPy's of every width too (``np.float32("nan")`` is no Python float; a float64 is).
        if t is None or (isinstance(t, (float, np.floating)) and math.isnan(t)) or type(t).__name__ == "NAType":
            continue  # pandas' NA too
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is not a string: {t!r:.40} (of type {type(t).__name__})")
        out.append(t)
    return out


def _whole(n: object) -> int:
    """``n`` as a whole number (a Python or NumPy integer, not a bool), else -1."""
    if isinstance(n, bool):
        return -1
    try:
        return operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        return -1


def _order(n: object, orders: Sequence[int], what: str) -> int:
    """``n`` checked against the orders a metric has (``distinct_n``: 1 to 4, ``self_bleu_n``: 2 to 4): a
    ValueError naming them, never a KeyError of a column name."""
    k = _whole(n)
    if k not in orders:
        said = "a whole number of 1 or more" if isinstance(orders, range) else f"one of {', '.join(map(str, orders))}"
        raise ValueError(f"{what}: n={n!r} is not supported; n is {said}")
    return k


def _one(texts: Iterable[str | None], compression: bool = False) -> dict[str, float | None]:
    read = _texts(texts)
    frame = diversity_by_set(
        pl.Series(read, dtype=pl.String), np.zeros(len(read), np.int64), 1, compression=compression
    )
    return frame.drop("s").row(0, named=True)


def diversity_metrics(texts: Iterable[str | None], *, compression: bool = False) -> dict[str, float | None]:
    """Every metric of one set of texts, as a dict (column name -> value). A missing text (None, NaN) is skipped,
    as ``runlog metrics`` skips a sample without a text: ``texts`` counts the texts measured. A bare ``str`` is
    a TypeError (pass ``[text]``). The single-set functions below read ``texts`` the same way."""
    return _one(texts, compression)


def distinct_n(texts: Iterable[str | None], n: int) -> float | None:
    """Distinct n-grams / all n-grams of the set (DialoGPT "div"); n-grams never cross two texts. n: 1 to 4."""
    return _one(texts)[f"distinct_{_order(n, ORDERS, 'distinct_n')}"]


def distinct_li2016_n(texts: Iterable[str | None], n: int) -> float | None:
    """Distinct n-grams of the set / all tokens of the set (Li et al. 2016); None where ``distinct_n`` is:
    no n-gram of that order (texts all shorter than n, or no text). n: 1 to 4."""
    return _one(texts)[f"distinct_li2016_{_order(n, ORDERS, 'distinct_li2016_n')}"]


def entropy_n(texts: Iterable[str | None], n: int) -> float | None:
    """Entropy (natural log) of the set's pooled n-gram counts. n: 1 to 4."""
    return _one(texts)[f"entropy_{_order(n, ORDERS, 'entropy_n')}"]


def self_bleu_n(texts: Iterable[str | None], n: int) -> float | None:
    """Texygen Self-BLEU-n with nltk semantics; None for fewer than two texts. n: 2 to 4."""
    return _one(texts)[f"self_bleu_{_order(n, BLEU_ORDERS, 'self_bleu_n')}"]


def self_bleu_scores(texts: Iterable[str | None], n: int) -> list[float]:
    """Per-text nltk ``sentence_bleu`` against the other texts (NaN for a lone text), one per text measured (a
    missing text skipped, as ``diversity_metrics`` skips it); n: 1 or more."""
    read = _texts(texts)
    k = _order(n, range(1, max(2, _whole(n) + 1)), "self_bleu_scores")
    tokens = tokenize(pl.Series(read, dtype=pl.String))
    sets = np.zeros(len(read), np.int64)
    stats = ngram_stats(tokens, sets, 1, max_n=k, clipped=True, rep_n=None)
    return self_bleu_per_text(stats, k).tolist()


def self_repetition(texts: Iterable[str | None]) -> float | None:
    """``diversity.self_repetition_score(texts, n=4)`` in linear time."""
    return _one(texts)["self_repetition"]


def compression_ratio(texts: Iterable[str | None], algorithm: str = "xz") -> float | None:
    """Original size / compressed size of the texts joined by spaces. ``xz`` equals
    ``diversity.compression_ratio(texts, "xz")`` before its rounding; ``gzip`` is deterministic."""
    if algorithm not in ("xz", "gzip"):
        raise ValueError("algorithm must be 'xz' or 'gzip'")
    row = _one(texts, compression=True)
    return row["compression_ratio" if algorithm == "xz" else "compression_ratio_gzip"]
