"""The derived ``prompt`` of Flink rows is found in searches without captures (``flink_text._first_group``):
the same text as one extraction with the capture group, on random transcripts made of the pieces that
matter (headers with and without attributes, ChatML markers, newlines, lookalikes, non-ASCII text)."""

from __future__ import annotations

import random

import polars as pl
import pytest

from runlog.formats.flink_text import (
    _CHATML_PROMPT,
    _CHATML_SPLIT,
    _HEADER_PROMPT,
    _HEADER_SPLIT,
    _first_group,
    prompt_expr,
)

PIECES = [
    "<|user|>",
    "<|user name=alice|>",
    "<|user k=v é=ü|>",
    "<|user bad|>",
    "<|user x=a|b|>",
    "<|assistant name=solver|>",
    "<|system|>",
    "<|_tool-1 id=é7|>",
    "<|1bad|>",
    "<|user",
    "|>",
    "<|",
    "|",
    "<|im_start|>user\n",
    "<|im_start|>user \t\n",
    "<|im_start|>user",
    "<|im_start|>",
    "<|im_end|>",
    "\n",
    "\n",
    "\n",
    "\r\n",
    " ",
    "\t",
    "user",
    "What is 2+2?",
    "é漢字",
    "<think>",
    "</answer>",
]


def _transcripts(seed: int, n: int) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = [None, ""]
    for _ in range(n):
        out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14))))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_prompt_without_captures_is_the_captured_group(seed):
    texts = pl.DataFrame({"trajectory": _transcripts(seed, 3000)}, schema={"trajectory": pl.String})
    t = pl.col("trajectory")
    got = texts.select(
        _first_group(t, *_HEADER_SPLIT).alias("header"),
        _first_group(t, *_CHATML_SPLIT).alias("chatml"),
        prompt_expr(texts.schema).alias("prompt"),
    )
    want = texts.select(
        t.str.extract(_HEADER_PROMPT, 1).alias("header"), t.str.extract(_CHATML_PROMPT, 1).alias("chatml")
    )
    for name in ("header", "chatml"):
        diff = [(x, a, b) for x, a, b in zip(texts["trajectory"], got[name], want[name], strict=True) if a != b]
        assert not diff, f"{name}: {diff[:3]}"
    assert got["header"].null_count() < len(texts) - 100  # the pieces make real matches, not only misses
    assert got["chatml"].null_count() < len(texts) - 100
    one = pl.coalesce(want["header"], want["chatml"]).str.strip_chars("\n")
    expected = pl.select(pl.when(one != "").then(one)).to_series()
    assert got["prompt"].to_list() == expected.to_list()
