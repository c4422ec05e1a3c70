"""The n-gram engine behind every diversity metric: all sets of texts at once, sort-based, near-linear.

Exactness comes from never hashing an n-gram. Texts are laid out set after set, so each set's tokens are
contiguous and have a *local position* (0 .. set size - 1). An n-gram of a set is named by the local position
of its first occurrence in the set (``F_n``), which is exact and needs few bits. The n-grams of order n are
grouped by sorting the key ``(set, F_{n-1}(p), token(p + n - 1))``: equal keys are equal n-grams of one set.
The key carries the local position ``p`` in its low bits, so one plain value sort (polars, parallel) gives
the runs *and* the positions, each run in position order (hence in text order); where the packed key would
not fit 64 bits the key without the position is arg-sorted stably instead (same runs, same order).

Only repeated n-grams are sorted after order 1: an n-gram that occurs once in its set (a *singleton*) makes
every longer n-gram starting at the same position a singleton too, and a singleton's contribution is known
without looking at it (one distinct n-gram, ``c log c = 0``, no clipped match, no repetition). So order n
sorts only the positions whose (n-1)-gram is repeated in its set.

The clipped count of text j in nltk's ``modified_precision`` is ``min(c_j(g), max over the other texts of
c(g))``: that is ``c_j(g)`` unless j is the *only* text holding the largest count, in which case it is the
second-largest count (0 when no other text has g). So each text's clipped numerator is the number of its
n-gram occurrences in repeated n-grams minus, over the repeated n-grams it alone tops, ``top1 - top2``; only
n-grams that some text holds more than once can have a lone top holder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._lazy import pl
from ._tokens import Tokens

# Widest packed sort key; tests lower it to exercise the stable arg-sort path.
_KEY_BITS = 64
# Up to this many tokens (and texts, and sets) indices are 32-bit; tests lower it to exercise the 64-bit path.
_NARROW = 2**31


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Indices that sort ``keys`` (uint64), equal keys kept in input order."""
    frame = pl.DataFrame({"k": pl.Series(keys, dtype=pl.UInt64)})
    return frame.select(pl.arg_sort_by("k", maintain_order=True)).to_series().to_numpy()


def _sort_values(values: np.ndarray) -> np.ndarray:
    """``values`` (uint64) sorted ascending (polars' parallel sort; the values are distinct)."""
    return pl.Series(values, dtype=pl.UInt64).sort().to_numpy()


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


def _set_major(
    ids: np.ndarray, lengths: np.ndarray, set_of_text: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Texts reordered so that each set's texts are contiguous: (ids, lengths, set_of_text, perm), perm None
    when they already are."""
    m = lengths.size
    if m < 2 or not np.any(set_of_text[1:] < set_of_text[:-1]):
        return ids, lengths, set_of_text, None
    perm = np.argsort(set_of_text, kind="stable")
    old_start = np.zeros(m, dtype=np.int64)
    np.cumsum(lengths[:-1], out=old_start[1:])
    new_len = lengths[perm]
    new_start = np.zeros(m, dtype=np.int64)
    np.cumsum(new_len[:-1], out=new_start[1:])
    src = np.arange(ids.size, dtype=np.int64) + np.repeat(old_start[perm] - new_start, new_len)
    return ids[src], new_len, set_of_text[perm], perm


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
    set_of_text = np.asarray(set_of_text, dtype=np.int64)
    out = SetStats(lengths=tokens.lengths, set_of_text=set_of_text, n_sets=n_sets)
    ids, lengths, sets, perm = _set_major(tokens.ids, np.asarray(tokens.lengths, np.int64), set_of_text)
    _engine(out, ids, lengths, sets, n_sets, tokens.vocab, max_n, clipped, rep_n)
    if perm is not None:
        for n in out.clipped:
            back = np.empty_like(out.clipped[n])
            back[perm] = out.clipped[n]
            out.clipped[n] = back
        if out.rep_sum is not None:
            back = np.empty_like(out.rep_sum)
            back[perm] = out.rep_sum
            out.rep_sum = back
    return out


def _engine(
    out: SetStats,
    ids: np.ndarray,
    lengths: np.ndarray,
    sets: np.ndarray,
    n_sets: int,
    vocab: int,
    max_n: int,
    clipped: bool,
    rep_n: int | None,
) -> None:
    """Fill ``out`` for texts laid out set after set (``sets`` non-decreasing).

    The key of the n-gram at position p is ``hi = (set, F_{n-1}(p), token(p + n - 1))`` (F_0 = 0), with
    ``lp`` (p's local position) as the tie-break that keeps each run in position order."""
    m = lengths.size
    n_tok = ids.size
    # Indices of one width, so that mixed arithmetic stays in it; uint32 ORs into uint64 keys as it is,
    # int64 (never negative here) through a view.
    ut: type[np.integer[Any]] = np.uint32 if max(n_tok, m, n_sets) < _NARROW else np.int64
    text_of_tok = np.repeat(np.arange(m, dtype=ut), lengths)
    text_start = np.zeros(m, dtype=np.int64)
    np.cumsum(lengths[:-1], out=text_start[1:])
    text_end = (text_start + lengths).astype(ut)
    set_tok = np.bincount(sets, weights=lengths, minlength=n_sets).astype(np.int64)
    set_start = np.zeros(n_sets, dtype=np.int64)
    np.cumsum(set_tok[:-1], out=set_start[1:])
    set_start = set_start.astype(ut)
    bp = _bits(max(int(set_tok.max(initial=0)) - 1, 0))  # local positions, and F_n (a local position)
    bs = _bits(n_sets - 1)
    vb = _bits(vocab - 1)
    if bs + bp + vb > 64:
        raise ValueError("too many sets, tokens per set and distinct tokens to pack n-gram keys into 64 bits")
    packed = bs + bp + vb + bp <= _KEY_BITS
    u64 = np.uint64
    set_shift = u64(bp + vb)
    mask_p = u64((1 << bp) - 1)

    # Order 1: every position, in position order.
    set_of_tok = sets.astype(ut)[text_of_tok]
    hi = set_of_tok.astype(u64)
    hi <<= set_shift
    hi |= ids
    lp = np.arange(n_tok, dtype=ut)
    lp -= set_start[set_of_tok]
    pos = None
    del set_of_tok
    for n in range(1, max_n + 1):
        grams = np.maximum(lengths - n + 1, 0)
        out.total[n] = np.bincount(sets, weights=grams, minlength=n_sets).astype(np.int64)
        if lp.size == 0:
            out.unique[n] = out.total[n].copy()
            out.clogc[n] = np.zeros(n_sets)
            if clipped:
                out.clipped[n] = np.zeros(m, dtype=np.int64)
            if rep_n == n:
                out.rep_sum = np.zeros(m)
            continue
        if packed:
            hi <<= u64(bp)
            hi |= lp if ut is np.uint32 else lp.view(u64)
            del lp
            v = _sort_values(hi)
            del hi
            new_g = _run_starts(v, mask_p)
        else:
            if pos is not None:  # the stable sort needs the positions in order
                o = np.argsort(pos, kind="stable")
                hi, lp = hi[o], lp[o]
            o = _stable_order(hi)
            v, ls = hi[o], lp[o]  # v: the key without the position, ls beside it
            new_g = _run_starts(v, u64(0))
            del hi, lp, o
        size = v.size
        g_start = np.flatnonzero(new_g)
        del new_g
        counts = np.diff(g_start, append=size)
        # Keep only repeated n-grams (runs of two or more).
        rep_run = counts >= 2
        keep = np.repeat(rep_run, counts)
        c = counts[rep_run]
        del g_start, counts, rep_run
        v = v[keep]
        if not packed:
            ls = ls[keep]
        del keep
        r_start = np.zeros(c.size, dtype=np.int64)
        np.cumsum(c[:-1], out=r_start[1:])
        low = u64(bp) if packed else u64(0)  # bits below the key proper
        set_r = (v >> (low + set_shift)).astype(ut)
        set_of_run = set_r[r_start]
        cf = c.astype(np.float64)
        rep_elems = np.bincount(set_of_run, weights=cf, minlength=n_sets)
        out.unique[n] = out.total[n] - rep_elems.astype(np.int64) + np.bincount(set_of_run, minlength=n_sets)
        out.clogc[n] = np.bincount(set_of_run, weights=cf * np.log(cf), minlength=n_sets)
        if packed:
            ls = (v & mask_p).astype(ut)
        pos = set_start[set_r]
        pos += ls
        del set_r
        tx = text_of_tok[pos]
        if clipped or rep_n == n:
            _per_text(out, n, tx, r_start, c, m, clipped, rep_n == n)
        if n < max_n:
            nxt = text_end[tx]
            nxt -= pos
            nxt = nxt > n  # the position starts an (n+1)-gram
            fprev = np.repeat(ls[r_start], c)[nxt]
            pos, lp, v = pos[nxt], ls[nxt], v[nxt]
            # (set, F_n, next token): keep the set bits, put F_n and the token after the n-gram below them.
            v >>= low + set_shift
            v <<= set_shift
            hi = fprev.astype(u64)
            del fprev
            hi <<= u64(vb)
            hi |= v
            del v
            hi |= ids[pos + n]
        del tx, ls


def _run_starts(v: np.ndarray, mask: np.uint64, chunk: int = 1 << 22) -> np.ndarray:
    """``new[i]``: sorted ``v[i]`` starts a run of equal ``v >> bits`` (``mask`` = the low bits ignored),
    computed in chunks so that no full-size temporary is allocated."""
    new = np.empty(v.size, dtype=bool)
    new[0] = True
    buf = np.empty(min(chunk, max(v.size - 1, 0)), dtype=np.uint64)
    for a in range(1, v.size, chunk):
        b = min(a + chunk, v.size)
        t = buf[: b - a]
        np.bitwise_xor(v[a:b], v[a - 1 : b - 1], out=t)
        np.greater(t, mask, out=new[a:b])
    return new


def _per_text(
    out: SetStats, n: int, tx: np.ndarray, r_start: np.ndarray, c: np.ndarray, m: int, clipped: bool, rep: bool
) -> None:
    """Per-text clipped numerators (Self-BLEU) and self-repetition sums from the runs of repeated n-grams
    (``tx``: the text of each occurrence, runs starting at ``r_start`` with ``c`` occurrences each)."""
    size = tx.size
    if size == 0:
        if clipped:
            out.clipped[n] = np.zeros(m, dtype=np.int64)
        if rep:
            out.rep_sum = np.zeros(m)
        return
    first = np.zeros(size, dtype=bool)
    first[r_start] = True
    # An occurrence that repeats the text of the previous occurrence of the same n-gram.
    dup = np.zeros(size, dtype=bool)
    np.equal(tx[1:], tx[:-1], out=dup[1:])
    dup &= ~first
    dup_at = np.flatnonzero(dup)
    run_of_dup = np.searchsorted(r_start, dup_at, side="right") - 1
    if clipped:
        held = np.bincount(tx, minlength=m)
        # Float: bincount with weights sums floats (numpy's stubs say integers).
        deficit: np.ndarray = np.zeros(m)
        if dup_at.size:
            # Runs where some text holds the n-gram twice: the only ones that can have a lone top holder.
            multi = np.zeros(c.size, dtype=bool)
            multi[run_of_dup] = True
            sel = np.repeat(multi, c)
            t_sub, d_sub, f_sub = tx[sel], dup[sel], first[sel]
            pair_start = np.flatnonzero(~d_sub)
            pair_count = np.diff(pair_start, append=t_sub.size)
            pt = t_sub[pair_start]
            pfirst = f_sub[pair_start]
            g_start = np.flatnonzero(pfirst)
            g_of_pair = np.cumsum(pfirst) - 1
            top1 = np.maximum.reduceat(pair_count, g_start)
            is_top = pair_count == top1[g_of_pair]
            n_top = np.add.reduceat(is_top.astype(np.int64), g_start)
            top2 = np.maximum.reduceat(np.where(is_top, 0, pair_count), g_start)
            alone = is_top & (n_top[g_of_pair] == 1)
            deficit = np.bincount(pt[alone], weights=(top1 - top2)[g_of_pair[alone]], minlength=m)
        out.clipped[n] = (held - deficit).astype(np.int64)
    if rep:
        # diversity's self_repetition_score: per text, over its distinct n-grams, the number of *other*
        # texts that contain each.
        texts_in_run = c - np.bincount(run_of_dup, minlength=c.size)
        w = np.repeat((texts_in_run - 1).astype(np.float64), c)
        nd = ~dup
        out.rep_sum = np.bincount(tx[nd], weights=w[nd], minlength=m)
