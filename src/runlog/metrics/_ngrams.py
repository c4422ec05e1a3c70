"""The n-gram engine behind every diversity metric: all sets of texts at once, sort-based, near-linear.

Exactness comes from never hashing an n-gram: n-grams get dense integer ids by repeated ranking,
``id_n(p) = rank(id_{n-1}(p), token(p + n - 1))``, where ``id_1(p) = rank(set(p), token(p))``. Each id names
an n-gram *within its set*, so per-set counts are plain ``bincount``s. Ranking packs the pair into one
``uint64`` and arg-sorts it (polars' parallel stable sort), which is the only super-linear step: one sort
per order.

Because the sort is stable, the texts of one n-gram come out in text order, so the same sorted runs give,
per n-gram of a set, each text's count. The
clipped count of text j in nltk's ``modified_precision`` is ``min(c_j(g), max over the other texts of
c(g))``: that is ``c_j(g)`` unless j is the *only* text holding the largest count, in which case it is the
second-largest count (0 when no other text has g). So one pass gives every text's clipped numerator: its
n-gram total minus, over the n-grams it alone tops, ``top1 - top2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._lazy import pl
from ._tokens import Tokens


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (uint64), equal keys kept in position order: the texts of one n-gram then
    come out in text order, so one sort gives both the n-gram runs and the (n-gram, text) runs."""
    frame = pl.DataFrame({"k": pl.Series(keys, dtype=pl.UInt64)})
    return frame.select(pl.arg_sort_by("k", maintain_order=True)).to_series().to_numpy()


def _starts(change: np.ndarray) -> np.ndarray:
    """Start indices of the runs of a sorted array, given ``change[i] = a[i+1] != a[i]``."""
    out = np.empty(int(change.sum()) + 1, dtype=np.int64)
    out[0] = 0
    out[1:] = np.flatnonzero(change) + 1
    return out


@dataclass
class SetStats:
    """Per-set and per-text n-gram statistics for orders 1..max_n.

    ``total[n]``, ``unique[n]``, ``clogc[n]`` are per set (n-grams, distinct n-grams, sum of c*log c over
    distinct n-grams); ``clipped[n]`` is per text (nltk's clipped numerator against the other texts of its
    set); ``rep_sum`` per text is the self-repetition sum for ``rep_n``.
    """

    lengths: np.ndarray
    set_of_text: np.ndarray
    n_sets: int
    total: dict[int, np.ndarray] = field(default_factory=dict)
    unique: dict[int, np.ndarray] = field(default_factory=dict)
    clogc: dict[int, np.ndarray] = field(default_factory=dict)
    clipped: dict[int, np.ndarray] = field(default_factory=dict)
    rep_sum: np.ndarray | None = None


def ngram_stats(
    tokens: Tokens,
    set_of_text: np.ndarray,
    n_sets: int,
    *,
    max_n: int = 4,
    clipped: bool = True,
    rep_n: int | None = 4,
) -> SetStats:
    """Compute ``SetStats`` for texts grouped into sets (``set_of_text[i]`` in ``0..n_sets-1``)."""
    lengths = tokens.lengths
    m = lengths.size
    out = SetStats(lengths=lengths, set_of_text=set_of_text, n_sets=n_sets)
    n_tok = tokens.ids.size
    text_of_tok = np.repeat(np.arange(m, dtype=np.int64), lengths)
    # Tokens left in the text from each position (1 for the last token): position p starts an n-gram
    # when remaining[p] >= n.
    starts = np.zeros(m, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    remaining = lengths[text_of_tok] - (np.arange(n_tok, dtype=np.int64) - starts[text_of_tok])
    vb = _bits(tokens.vocab)
    set_of_tok = set_of_text[text_of_tok] if n_tok else np.zeros(0, np.int64)
    ids = tokens.ids.astype(np.uint64)
    prev = np.zeros(0, dtype=np.int64)
    prev_u = 0
    for n in range(1, max_n + 1):
        pos = np.flatnonzero(remaining >= n)
        if pos.size == 0:
            for d in (out.total, out.unique):
                d[n] = np.zeros(n_sets, dtype=np.int64)
            out.clogc[n] = np.zeros(n_sets)
            if clipped:
                out.clipped[n] = np.zeros(m, dtype=np.int64)
            if rep_n == n:
                out.rep_sum = np.zeros(m)
            prev, prev_u = np.zeros(n_tok, dtype=np.int64), 0
            continue
        if n == 1:
            if _bits(n_sets) + vb > 64:
                raise ValueError("too many sets and distinct tokens to pack into 64 bits")
            keys = (set_of_tok.astype(np.uint64) << np.uint64(vb)) | ids
        else:
            if _bits(prev_u) + vb > 64:
                raise ValueError("too many distinct n-grams to pack into 64 bits")
            keys = (prev[pos].astype(np.uint64) << np.uint64(vb)) | ids[pos + n - 1]
        order = _stable_order(keys)
        ks = keys[order]
        tx = text_of_tok[pos[order]]
        new_g = ks[1:] != ks[:-1]
        g_start = _starts(new_g)
        u = g_start.size
        counts = np.diff(np.append(g_start, ks.size))
        set_of_g = set_of_text[tx[g_start]]
        out.total[n] = np.bincount(set_of_g, weights=counts, minlength=n_sets).astype(np.int64)
        out.unique[n] = np.bincount(set_of_g, minlength=n_sets)
        cf = counts.astype(np.float64)
        out.clogc[n] = np.bincount(set_of_g, weights=cf * np.log(cf), minlength=n_sets)
        if clipped or rep_n == n:
            pair_start = _starts(new_g | (tx[1:] != tx[:-1]))
            _per_text(out, n, pair_start, ks.size, new_g, tx, m, clipped, rep_n == n)
        if n < max_n:
            rank_sorted = np.empty(ks.size, dtype=np.int64)
            rank_sorted[0] = 0
            np.cumsum(new_g, out=rank_sorted[1:])
            prev = np.zeros(n_tok, dtype=np.int64)
            prev[pos[order]] = rank_sorted
            prev_u = u
    return out


def _per_text(
    out: SetStats,
    n: int,
    pair_start: np.ndarray,
    size: int,
    new_g: np.ndarray,
    tx: np.ndarray,
    m: int,
    clipped: bool,
    rep: bool,
) -> None:
    """Per-text clipped numerators (Self-BLEU) and self-repetition sums from the sorted runs."""
    pair_count = np.diff(np.append(pair_start, size))
    pt = tx[pair_start]
    # The pair's n-gram is new where the n-gram changes at the pair's first position.
    first = np.ones(pair_start.size, dtype=bool)
    first[1:] = new_g[pair_start[1:] - 1]
    g_start = np.flatnonzero(first)
    g_size = np.diff(np.append(g_start, pair_start.size))  # texts holding the n-gram
    g_of_pair = np.cumsum(first) - 1
    if clipped:
        top1 = np.maximum.reduceat(pair_count, g_start)
        is_top = pair_count == top1[g_of_pair]
        n_top = np.add.reduceat(is_top.astype(np.int64), g_start)
        top2 = np.maximum.reduceat(np.where(is_top, 0, pair_count), g_start)
        alone = is_top & (n_top[g_of_pair] == 1)
        deficit = np.bincount(pt[alone], weights=(top1 - top2)[g_of_pair[alone]], minlength=m)
        per_text = np.bincount(pt, weights=pair_count, minlength=m)
        out.clipped[n] = (per_text - deficit).astype(np.int64)
    if rep:
        # diversity's self_repetition_score: per text, over its distinct n-grams, the number of *other*
        # texts that contain each.
        out.rep_sum = np.bincount(pt, weights=(g_size - 1)[g_of_pair], minlength=m)
