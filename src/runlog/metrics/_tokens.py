"""Whitespace tokenisation of many texts at once, exactly as Python's ``str.split()`` (no argument).

The references (nltk-based Self-BLEU, DialoGPT's ``cal_entropy``, the ``diversity`` package) all tokenise
with ``str.split()``. A Python loop over a million texts costs ~20 s, so this module reproduces the same
split on the UTF-8 bytes of all texts at once with numpy, and maps tokens to dense integer ids with
pyarrow's dictionary encoding (exact: it compares the bytes, it does not trust a hash).

``str.split()`` splits on every character for which ``str.isspace()`` is true: ASCII ``\\t\\n\\v\\f\\r``,
space and the four separators ``\\x1c-\\x1f``, plus 19 non-ASCII characters (``WHITESPACE``; a test checks
the list against the running Python). The non-ASCII ones are first replaced by a space, which changes no
token; then a byte is whitespace exactly when it is one of the ASCII ones, because UTF-8 never uses bytes
below 0x80 inside a multi-byte character.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._lazy import pl

ASCII_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
NON_ASCII_WHITESPACE = (
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE = ASCII_WHITESPACE + NON_ASCII_WHITESPACE
_NON_ASCII_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in NON_ASCII_WHITESPACE) + "]"
_CLASS_BODY = "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE)
# Rust-regex classes of one whitespace / non-whitespace character as ``str.isspace()`` defines it, for polars
# expressions. Rust's ``\s`` is Unicode White_Space, which lacks the separators ``\x1c-\x1f``: runlog's own
# rules use these classes, so that "only whitespace" means what the tokeniser (and docs/metrics.md) mean.
SPACE_CLASS = "[" + _CLASS_BODY + "]"
NON_SPACE_CLASS = "[^" + _CLASS_BODY + "]"
# One token (a run of non-whitespace), for counting tokens inside polars expressions.
TOKEN_PATTERN = NON_SPACE_CLASS + "+"

_LUT = np.zeros(256, dtype=bool)
for _c in ASCII_WHITESPACE:
    _LUT[ord(_c)] = True
_KEEP = ~_LUT


@dataclass
class Tokens:
    """Tokens of M texts: ``ids[k]`` is the dense id of the k-th token (texts one after another),
    ``lengths[i]`` the number of tokens of text i, ``vocab`` the number of distinct tokens."""

    ids: np.ndarray
    lengths: np.ndarray
    vocab: int

    @property
    def starts(self) -> np.ndarray:
        out = np.zeros(len(self.lengths), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=out[1:])
        return out


def _arrow_strings(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64, bytes uint8) of a string Series, nulls as empty strings."""
    import pyarrow as pa

    arr = texts.fill_null("").to_arrow()
    arr = arr.cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def tokenize(texts: pl.Series) -> Tokens:
    """Tokenise every text as ``text.split()`` would, returning dense token ids (see the module doc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = texts.cast(pl.String)
    if texts.str.contains(_NON_ASCII_CLASS).any():
        texts = texts.str.replace_all(_NON_ASCII_CLASS, " ")
    offsets, data = _arrow_strings(texts)
    base = int(offsets[0])
    end = int(offsets[-1])
    data = data[base:end]
    rel = offsets - base
    m = len(rel) - 1
    if data.size == 0:
        return Tokens(np.zeros(0, np.uint32), np.zeros(m, np.int64), 0)
    keep = _KEEP[data]  # not whitespace
    # A token starts on a non-space byte that follows a space or begins a text; it ends before a space, a
    # text's first byte, or the end of the data.
    text_starts = rel[:-1][rel[:-1] < data.size]
    edge = np.empty_like(keep)
    edge[0] = True
    np.logical_not(keep[:-1], out=edge[1:])
    edge[text_starts] = True
    starts = np.flatnonzero(np.logical_and(keep, edge, out=edge))
    np.logical_not(keep[1:], out=edge[:-1])
    edge[-1] = True
    edge[text_starts[text_starts > 0] - 1] = True
    ends = np.flatnonzero(np.logical_and(keep, edge, out=edge))
    del edge
    lengths = np.diff(np.searchsorted(starts, rel)).astype(np.int64)
    # Drop the spaces: the tokens then lie back to back and one offsets array describes all of them.
    packed = data[keep]
    del keep
    ends += 1
    ends -= starts  # token lengths in bytes
    del starts
    small = packed.size < 2**31  # 32-bit offsets: half the memory
    tok_offsets = np.empty(ends.size + 1, dtype=np.int32 if small else np.int64)
    tok_offsets[0] = 0
    np.cumsum(ends, dtype=tok_offsets.dtype, out=tok_offsets[1:])
    del ends
    cls = pa.StringArray if small else pa.LargeStringArray
    arr = cls.from_buffers(tok_offsets.size - 1, pa.py_buffer(tok_offsets), pa.py_buffer(packed))
    enc = pc.dictionary_encode(arr)
    del arr, tok_offsets, packed
    ids = enc.indices.to_numpy(zero_copy_only=False)
    ids = ids.view(np.uint32) if ids.dtype == np.int32 else ids.astype(np.uint32)  # indices are >= 0
    return Tokens(ids, lengths, len(enc.dictionary))
