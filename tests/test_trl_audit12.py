"""TRL completion logs now say where the generation starts (``prompt_turns``: the prompt's messages): a
conversational prompt's few-shot assistant turn was joined to every completion by ``--text assistant``
(adherence 0.0 where 2 of 3 completions follow the format).

The expected figures come from the Parquet written here, never from runlog's code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STRICT = re.compile(r"(?s)\s*<think>.*?</think>\s*<answer>.*?</answer>\s*")
PROMPT = [
    {"role": "system", "content": "Think, then answer."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},  # a few-shot example answer, without the tags
    {"role": "user", "content": "3+3?"},
]
COMPLETIONS = ["<think>3 and 3</think><answer>6</answer>", "<think>x</think><answer>6</answer>", "six"]


def test_conversational_prompt_turns(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "run" / "completions" / "completions_00010.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table(
        {
            "step": [10] * 3,
            "prompt": [PROMPT] * 3,
            "completion": [[{"role": "assistant", "content": c}] for c in COMPLETIONS],
            "reward": [1.0, 1.0, 0.0],
        }
    )
    pq.write_table(table, path)
    raw = pq.read_table(path).to_pylist()
    texts = [" ".join(m["content"] for m in r["completion"] if m["role"] == "assistant") for r in raw]
    r = cli("metrics", "format", str(tmp_path / "run"), "--spec", "think-answer-strict", "--text", "assistant",
            "--format", "json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["texts"] == 3
    assert row["adherence"] == sum(bool(STRICT.fullmatch(t)) for t in texts) / 3


def test_text_prompt_is_one_turn(cli, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "run" / "completions" / "completions_00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(
        pa.table({"step": [1, 1], "prompt": ["a", "b"], "completion": COMPLETIONS[:2], "r": [1.0, 0.5]}), path
    )
    r = cli("metrics", "format", str(tmp_path / "run"), "--spec", "think-answer-strict", "--format", "json")
    (row,) = json.loads(r.stdout)
    assert (row["texts"], row["adherence"]) == (2, 1.0)
